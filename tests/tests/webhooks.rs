//! Webhooks (issue 13), against real HTTP receivers on loopback: signatures the Standard
//! Webhooks reference library accepts, retries with backoff that honour `Retry-After`, a
//! delivery log, disabling after persistent failure (an event), enabling that resumes with the
//! same event, log order per endpoint through a restart and with two dispatchers at once,
//! secret rotation, tests and redeliveries, and the refusals (roles, URLs, private targets).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chronicle_api::auth::Role;
use chronicle_tests::{error_code, error_message, listen_loopback, TestApp};
use serde_json::{json, Value};
use tokio::sync::watch;

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
    at: Instant,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    fn id(&self) -> String {
        self.headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

/// A receiver that answers each request with what `answer` says for its number (0-based).
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

type Answer = Arc<dyn Fn(usize) -> (StatusCode, Option<&'static str>) + Send + Sync>;

impl Receiver {
    async fn start(answer: Answer) -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let count = Arc::new(AtomicUsize::new(0));
        let store = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                let count = count.clone();
                let answer = answer.clone();
                async move {
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut got) = store.lock() {
                        got.push(Received {
                            headers,
                            body: body.to_vec(),
                            at: Instant::now(),
                        });
                    }
                    let (status, retry_after) = answer(n);
                    let mut response = (status, "ok").into_response();
                    if let Some(seconds) = retry_after {
                        response
                            .headers_mut()
                            .insert("retry-after", seconds.parse().unwrap_or_else(|e| panic!("{e:?}")));
                    }
                    response
                }
            }),
        );
        let address = listen_loopback(app).await;
        Self {
            url: format!("http://{address}/hook"),
            got,
        }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Waits until at least `n` requests came (30 s at most).
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{} of {n} requests within 30 s", got.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn always(status: StatusCode) -> Answer {
    Arc::new(move |_| (status, None))
}

/// Verifies a request with the Standard Webhooks library.
fn verifies(secret: &str, request: &Received) -> bool {
    let Ok(webhook) = standardwebhooks::Webhook::new(secret) else {
        return false;
    };
    webhook.verify(&request.body, &request.headers).is_ok()
}

/// Runs the app's dispatcher pass by pass until the receiver has `n` requests. (One pass right
/// after an append may not see it yet: the log is read only below the oldest write still open
/// anywhere in the cluster, and other tests write there too.)
async fn deliver_until(app: &TestApp, receiver: &Receiver, n: usize) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        app.state.webhooks.work_due().await.unwrap_or_else(|e| panic!("{e}"));
        let got = receiver.got();
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "{} of {n} requests within 30 s", got.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The app's dispatcher, running until the returned sender says stop.
fn run_dispatcher(app: &TestApp) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(app.state.webhooks.clone().run(shutdown));
    (stop, task)
}

async fn create(app: &TestApp, token: &str, url: &str, types: &[&str]) -> (String, String) {
    let (_, reply) = app
        .graphql(
            Some(token),
            "mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { id secret } }",
            json!({"input": {"url": url, "eventTypes": types, "description": "CRM sync"}}),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    let created = &reply["data"]["createWebhook"];
    (
        created["id"].as_str().unwrap_or_default().to_string(),
        created["secret"].as_str().unwrap_or_default().to_string(),
    )
}

async fn capture(app: &TestApp, token: &str, n: usize) {
    let (_, reply) = app
        .graphql(
            Some(token),
            "mutation($k: String!, $p: String!) { captureLead(input: { idempotencyKey: $k, phone: $p }) { id } }",
            json!({"k": format!("lead{n}"), "p": format!("+1555{n:07}")}),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
}

async fn deliveries(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let (_, reply) = app
        .graphql(
            Some(token),
            "query($id: String!) { webhookDeliveries(webhookId: $id, first: 500) { nodes {
                messageId eventType eventPosition attempt manual statusCode error succeeded latencyMs } } }",
            json!({"id": id}),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    let mut nodes = reply["data"]["webhookDeliveries"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    nodes.reverse();
    nodes
}

/// The delivery log once it holds at least `n` attempts (30 s at most): the receiver answers
/// before the dispatcher records the attempt, so a test that saw the request waits for its row.
async fn deliveries_at_least(app: &TestApp, token: &str, id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = deliveries(app, token, id).await;
        if log.len() >= n {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} attempts recorded within 30 s",
            log.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn webhook(app: &TestApp, token: &str) -> Value {
    let (_, reply) = app
        .graphql(
            Some(token),
            "{ webhooks { nodes { id enabled disabledReason failures deliveredThrough } } }",
            json!({}),
        )
        .await;
    reply["data"]["webhooks"]["nodes"][0].clone()
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_receiver_failing_three_times_gets_the_event_on_the_fourth_signed_for_the_reference_library(
    pool: sqlx::PgPool,
) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let owner = app.token("acme", Role::Owner);
    // Three failures (the second asks to wait a second), then success.
    let receiver = Receiver::start(Arc::new(|n| match n {
        0 | 2 => (StatusCode::INTERNAL_SERVER_ERROR, None),
        1 => (StatusCode::SERVICE_UNAVAILABLE, Some("1")),
        _ => (StatusCode::OK, None),
    }))
    .await;
    let (id, secret) = create(&app, &owner, &receiver.url, &["LeadCaptured"]).await;
    assert!(id.starts_with("whk_") && secret.starts_with("whsec_"), "{id} {secret}");
    let (stop, task) = run_dispatcher(&app);
    capture(&app, &owner, 1).await;

    let got = receiver.wait_for(4).await;
    let fourth = &got[3];
    assert!(verifies(&secret, fourth), "the reference library accepts the signature");
    assert!(
        got.iter().all(|r| r.id() == fourth.id()),
        "one webhook-id for every attempt"
    );
    assert!(
        !verifies("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", fourth),
        "another secret is refused"
    );
    let body = fourth.json();
    assert_eq!(body["type"], "LeadCaptured", "{body}");
    assert_eq!(body["data"]["eventType"], "LeadCaptured");
    assert_eq!(body["data"]["aggregateType"], "Lead");
    assert!(
        got[2].at.duration_since(got[1].at) >= Duration::from_millis(900),
        "Retry-After: 1 was honoured"
    );

    // The delivery log shows the four attempts.
    let log = deliveries_at_least(&app, &owner, &id, 4).await;
    let attempts: Vec<(i64, i64, bool)> = log
        .iter()
        .map(|d| {
            (
                d["attempt"].as_i64().unwrap_or(0),
                d["statusCode"].as_i64().unwrap_or(0),
                d["succeeded"] == true,
            )
        })
        .collect();
    assert_eq!(
        attempts,
        vec![(1, 500, false), (2, 503, false), (3, 500, false), (4, 200, true)]
    );
    assert!(log.iter().all(|d| d["messageId"] == json!(fourth.id())));
    // (The attempt is recorded before the checkpoint moves: wait for the move.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = loop {
        let state = webhook(&app, &owner).await;
        if state["failures"] == json!(0) || Instant::now() >= deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (state["enabled"].clone(), state["failures"].clone()),
        (json!(true), json!(0))
    );

    // Nothing else comes: another lead is another message.
    capture(&app, &owner, 2).await;
    let got = receiver.wait_for(5).await;
    assert_ne!(got[4].id(), fourth.id());
    stop.send(true).unwrap_or_default();
    let _ = task.await;
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_receiver_that_always_fails_gets_its_endpoint_disabled_and_enabling_resumes_with_the_same_event(
    pool: sqlx::PgPool,
) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let owner = app.token("acme", Role::Owner);
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = failing.clone();
    let receiver = Receiver::start(Arc::new(move |_| {
        if flag.load(Ordering::SeqCst) {
            (StatusCode::BAD_GATEWAY, None)
        } else {
            (StatusCode::NO_CONTENT, None)
        }
    }))
    .await;
    let (id, _) = create(&app, &owner, &receiver.url, &[]).await;
    let (stop, task) = run_dispatcher(&app);
    capture(&app, &owner, 1).await;

    // CHRONICLE_WEBHOOK_MAX_ATTEMPTS is 5 in the tests' settings.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = webhook(&app, &owner).await;
        if state["enabled"] == false {
            assert!(
                state["disabledReason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("5 failed attempts"),
                "{state}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not disabled within 30 s: {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.got().len(), 5);
    let (automatic, actor): (String, String) = sqlx::query_as(
        "SELECT payload -> 'WebhookEndpointDisabled' ->> 'automatic', metadata ->> 'actor' FROM events \
         WHERE event_type = 'WebhookEndpointDisabled'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((automatic.as_str(), actor.as_str()), ("true", "system:webhooks"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.got().len(), 5, "nothing is sent to a disabled endpoint");

    // Enabled again: the same event comes first, and is taken.
    failing.store(false, Ordering::SeqCst);
    let (_, reply) = app
        .graphql(
            Some(&owner),
            "mutation($id: String!) { enableWebhook(id: $id) { appended } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(reply["data"]["enableWebhook"]["appended"], 1, "{reply}");
    let got = receiver.wait_for(6).await;
    assert_eq!(got[5].id(), got[0].id());
    // (Then the events after it, each once: the endpoint takes every type — its own creation
    // came first — and its disabling and enabling come too.)
    let log = deliveries_at_least(&app, &owner, &id, 6).await;
    assert_eq!(log[5]["messageId"], json!(got[0].id()));
    assert_eq!(log[5]["succeeded"], true);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let types: Vec<String> = receiver
            .got()
            .iter()
            .map(|r| r.json()["type"].as_str().unwrap_or("").to_string())
            .collect();
        if types.iter().any(|t| t == "WebhookEndpointEnabled") {
            let ids: Vec<String> = receiver.got()[5..].iter().map(Received::id).collect();
            let mut unique = ids.clone();
            unique.dedup();
            assert_eq!(ids, unique, "each event once after the failures: {types:?}");
            assert_eq!(types[0], "WebhookEndpointCreated", "{types:?}");
            assert!(types.iter().any(|t| t == "WebhookEndpointDisabled"), "{types:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{types:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap_or_default();
    let _ = task.await;
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn deliveries_arrive_in_log_order_once_through_a_restart_and_with_two_dispatchers(pool: sqlx::PgPool) {
    let app = TestApp::new(pool.clone()).await;
    app.tenant_with_number("acme", "15550001111").await;
    let owner = app.token("acme", Role::Owner);
    let receiver = Receiver::start(always(StatusCode::OK)).await;
    let (_, secret) = create(&app, &owner, &receiver.url, &["LeadCaptured"]).await;
    for n in 0..30 {
        capture(&app, &owner, n).await;
    }
    // Two dispatchers at once (two API processes), then one stopped half-way and a fresh
    // process started over the same database.
    let other = TestApp::new(pool.clone()).await;
    let (stop_a, task_a) = run_dispatcher(&app);
    let (stop_b, task_b) = run_dispatcher(&other);
    receiver.wait_for(10).await;
    stop_a.send(true).unwrap_or_default();
    let _ = task_a.await;
    stop_b.send(true).unwrap_or_default();
    let _ = task_b.await;
    let restarted = TestApp::new(pool.clone()).await;
    let (stop_c, task_c) = run_dispatcher(&restarted);
    for n in 30..40 {
        capture(&app, &owner, n).await;
    }
    let expected: Vec<i64> = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE event_type = 'LeadCaptured' ORDER BY tx_id, global_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let got = receiver.wait_for(expected.len()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_all = receiver.got();
    assert_eq!(got_all.len(), got.len(), "nothing delivered twice");
    let positions: Vec<i64> = got_all
        .iter()
        .map(|r| r.json()["data"]["position"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(positions, expected, "in log order, each once");
    assert!(got_all.iter().all(|r| verifies(&secret, r)));
    stop_c.send(true).unwrap_or_default();
    let _ = task_c.await;
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn rotation_signs_with_both_secrets_and_tests_and_redeliveries_are_sent_at_once(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let integrator = app.token("acme", Role::Integrator);
    let receiver = Receiver::start(always(StatusCode::OK)).await;
    let (id, old_secret) = create(&app, &integrator, &receiver.url, &["LeadCaptured"]).await;

    // A test message, now.
    let (_, reply) = app
        .graphql(
            Some(&integrator),
            "mutation($id: String!) { testWebhook(id: $id) { delivery { statusCode succeeded manual eventType } } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        reply["data"]["testWebhook"]["delivery"],
        json!({"statusCode": 200, "succeeded": true, "manual": true, "eventType": "webhook.test"}),
        "{reply}"
    );
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].json()["type"], "webhook.test");
    assert!(verifies(&old_secret, &got[0]));

    // Rotated: deliveries carry both signatures during the grace period.
    let (_, reply) = app
        .graphql(
            Some(&integrator),
            "mutation($id: String!) { rotateWebhookSecret(id: $id, graceHours: 1) { secret } }",
            json!({"id": id}),
        )
        .await;
    let new_secret = reply["data"]["rotateWebhookSecret"]["secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(new_secret.starts_with("whsec_") && new_secret != old_secret, "{reply}");
    let owner = app.token("acme", Role::Owner);
    capture(&app, &owner, 1).await;
    let got = deliver_until(&app, &receiver, 2).await;
    // The checkpoint moves past the events the endpoint does not take (the rotation's own, and
    // whatever the capture appended besides LeadCaptured), up to the tenant's last event.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        app.state.webhooks.work_due().await.unwrap_or_else(|e| panic!("{e}"));
        let behind = app
            .count(
                "SELECT count(*) FROM events e, webhook_endpoints w \
                 WHERE e.tenant_id = 'acme' AND (e.tx_id, e.global_position) > (w.cursor_tx::xid8, w.cursor_position)",
            )
            .await;
        if behind == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{behind} events still after the checkpoint");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signatures = got[1]
        .headers
        .get("webhook-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    assert!(verifies(&new_secret, &got[1]) && verifies(&old_secret, &got[1]));

    // Redelivered by hand: the same message id, the checkpoint unmoved.
    let position = got[1].json()["data"]["position"].as_i64().unwrap_or(0);
    let (_, reply) = app
        .graphql(
            Some(&integrator),
            "mutation($id: String!, $p: Int!) { redeliverWebhook(id: $id, position: $p) { delivery { succeeded eventPosition } } }",
            json!({"id": id, "p": position}),
        )
        .await;
    assert_eq!(
        reply["data"]["redeliverWebhook"]["delivery"]["succeeded"], true,
        "{reply}"
    );
    let got = receiver.wait_for(3).await;
    assert_eq!(got[2].id(), got[1].id());
    let (_, reply) = app
        .graphql(
            Some(&integrator),
            "mutation($id: String!) { redeliverWebhook(id: $id, position: 999999) { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(error_code(&reply), "UNKNOWN_EVENT", "{reply}");

    // Deleted: nothing more, and it is unknown from then on.
    let (_, reply) = app
        .graphql(
            Some(&integrator),
            "mutation($id: String!) { deleteWebhook(id: $id) { appended } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(reply["data"]["deleteWebhook"]["appended"], 1, "{reply}");
    capture(&app, &owner, 2).await;
    for _ in 0..20 {
        app.state.webhooks.work_due().await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.got().len(), 3);
    let (_, reply) = app
        .graphql(
            Some(&integrator),
            "mutation($id: String!) { testWebhook(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(error_code(&reply), "UNKNOWN_WEBHOOK", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn refused_endpoints_store_nothing_and_private_targets_are_refused_in_production(pool: sqlx::PgPool) {
    let mut settings = chronicle_tests::settings(false);
    settings.webhooks.allow_private = false;
    let app = TestApp::with_settings(pool, settings).await;
    app.tenant_with_number("acme", "15550001111").await;
    let owner = app.token("acme", Role::Owner);
    let attempt = |url: &str, types: Value| {
        let app = &app;
        let owner = owner.clone();
        let input = json!({"url": url, "eventTypes": types});
        async move {
            app.graphql(
                Some(&owner),
                "mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { id } }",
                json!({"input": input}),
            )
            .await
            .1
        }
    };
    for (url, types, code) in [
        ("http://127.0.0.1:9/hook", json!([]), "WEBHOOK_TARGET_REFUSED"),
        ("http://10.0.0.7/hook", json!([]), "WEBHOOK_TARGET_REFUSED"),
        ("http://[::1]/hook", json!([]), "WEBHOOK_TARGET_REFUSED"),
        ("http://169.254.169.254/latest", json!([]), "WEBHOOK_TARGET_REFUSED"),
        ("http://localhost/hook", json!([]), "WEBHOOK_TARGET_REFUSED"),
        ("ftp://files.example/hook", json!([]), "INVALID_WEBHOOK_URL"),
        (
            "https://93.184.216.34/hook",
            json!(["LeadTeleported"]),
            "UNKNOWN_EVENT_TYPE",
        ),
    ] {
        let reply = attempt(url, types).await;
        assert_eq!(error_code(&reply), code, "{url}: {reply}");
    }
    assert_eq!(app.count("SELECT count(*) FROM webhook_endpoints").await, 0);
    assert_eq!(app.count_events("WebhookEndpointCreated").await, 0);

    for role in [Role::Agent, Role::Finance, Role::Auditor, Role::Technician] {
        let (_, reply) = app
            .graphql(
                Some(&app.token("acme", role)),
                "mutation { createWebhook(input: { url: \"https://93.184.216.34/hook\" }) { id } }",
                json!({}),
            )
            .await;
        assert_eq!(error_code(&reply), "FORBIDDEN", "{role:?}: {reply}");
    }
    // A public address is accepted (nothing is sent until an event comes).
    let reply = attempt("https://93.184.216.34/hook", json!(["LeadCaptured"])).await;
    assert!(reply["errors"].is_null(), "{reply}");
    assert_eq!(app.count_events("WebhookEndpointCreated").await, 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_tenant_has_at_most_25_endpoints_and_a_deleted_one_frees_its_place(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    app.tenant_with_number("beta", "15550002222").await;
    let owner = app.token("acme", Role::Owner);
    let mut ids = Vec::new();
    for n in 0..25 {
        let (id, _) = create(&app, &owner, &format!("https://93.184.216.34/hook/{n}"), &[]).await;
        ids.push(id);
    }
    let too_many = |token: String| {
        let app = &app;
        async move {
            app.graphql(
                Some(&token),
                "mutation { createWebhook(input: { url: \"https://93.184.216.34/one-more\" }) { id } }",
                json!({}),
            )
            .await
            .1
        }
    };
    let reply = too_many(owner.clone()).await;
    assert_eq!(error_code(&reply), "TOO_MANY_WEBHOOKS", "{reply}");
    assert!(error_message(&reply).contains("25"), "{reply}");
    assert_eq!(app.count_events("WebhookEndpointCreated").await, 25, "nothing recorded");
    assert_eq!(app.count("SELECT count(*) FROM webhook_endpoints").await, 25);
    // Another tenant has its own 25.
    let reply = too_many(app.token("beta", Role::Owner)).await;
    assert!(reply["errors"].is_null(), "{reply}");
    // Deleting one makes room for one.
    let (_, deleted) = app
        .graphql(
            Some(&owner),
            "mutation($id: ID!) { deleteWebhook(id: $id) { id } }",
            json!({"id": ids[0]}),
        )
        .await;
    assert!(deleted["errors"].is_null(), "{deleted}");
    let reply = too_many(owner.clone()).await;
    assert!(reply["errors"].is_null(), "{reply}");
    let reply = too_many(owner).await;
    assert_eq!(error_code(&reply), "TOO_MANY_WEBHOOKS", "{reply}");
}
