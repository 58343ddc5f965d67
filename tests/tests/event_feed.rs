//! The event feed for integrators (issue 13), through a real HTTP and WebSocket client against
//! the served app: the event contract (plain data, personal fields opened only with the
//! personal scope, absent and marked after erasure, never ciphertext), history by page with
//! filters, and the hand-off from pages to the live subscription with no gap or duplicate
//! while writers append, and a dropped subscriber resuming from its last cursor.

use std::time::Duration;

use chronicle_api::auth::Role;
use chronicle_domain::aggregates::aggregate_of_event;
use chronicle_tests::{delivery, error_code, text_message, wamid, ws, TestApp};
use futures::StreamExt;
use rand::Rng;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PAGE: &str = "query($first: Int!, $after: String, $filter: EventLogFilter) {
  eventLog(first: $first, after: $after, filter: $filter) {
    edges { cursor node { cursor position eventType eventVersion aggregateType aggregateId sequence
                          recordedAt actor correlationId data personalData } }
    pageInfo { hasNextPage endCursor } } }";

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn new(app: &TestApp) -> Self {
        let address = app.serve().await;
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{address}"),
        }
    }

    async fn post(&self, credential: &str, query: &str, variables: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(credential)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        response.json().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// A key issued by the tenant's owner.
    async fn key(&self, owner: &str, scopes: &[&str]) -> String {
        let reply = self
            .post(
                owner,
                "mutation($input: IssueApiKeyInput!) { issueApiKey(input: $input) { secret } }",
                json!({"input": {"name": "feed", "scopes": scopes}}),
            )
            .await;
        assert!(reply["errors"].is_null(), "{reply}");
        reply["data"]["issueApiKey"]["secret"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// One page of the event log.
    async fn page(&self, credential: &str, first: i32, after: Option<&str>, filter: Value) -> Value {
        self.post(
            credential,
            PAGE,
            json!({"first": first, "after": after, "filter": filter}),
        )
        .await
    }

    /// Every page of the event log after `after`: the events and the last `endCursor`.
    async fn all_pages(&self, credential: &str, first: i32, filter: Value) -> (Vec<Value>, Option<String>) {
        let mut after: Option<String> = None;
        let mut events = Vec::new();
        loop {
            let reply = self.page(credential, first, after.as_deref(), filter.clone()).await;
            assert!(reply["errors"].is_null(), "{reply}");
            let log = &reply["data"]["eventLog"];
            for edge in log["edges"].as_array().cloned().unwrap_or_default() {
                assert_eq!(edge["cursor"], edge["node"]["cursor"]);
                events.push(edge["node"].clone());
            }
            if let Some(end) = log["pageInfo"]["endCursor"].as_str() {
                after = Some(end.to_string());
            }
            if log["pageInfo"]["hasNextPage"] != true {
                return (events, after);
            }
        }
    }
}

/// Posts one inbound WhatsApp text and processes it.
async fn inbound(app: &TestApp, phone: &str, name: &str, n: u32, text: &str) {
    let now = chrono::Utc::now().timestamp();
    let body = delivery(
        "15550001111",
        &[(phone, name)],
        vec![text_message(phone, &wamid(phone, n), now, text)],
        vec![],
    );
    let (status, reply) = app.post_delivery(&body).await;
    assert_eq!(status, 200, "{reply}");
    app.drain().await;
}

/// Whether `value` holds a ciphertext envelope anywhere.
fn has_envelope(value: &Value) -> bool {
    match value {
        Value::Object(map) => (map.contains_key("enc") && map.contains_key("c")) || map.values().any(has_envelope),
        Value::Array(items) => items.iter().any(has_envelope),
        _ => false,
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn personal_fields_are_opened_only_with_the_personal_scope_and_absent_after_erasure(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let client = Client::new(&app).await;
    let owner = app.token("acme", Role::Owner);
    inbound(&app, "263771000001", "Tendai Moyo", 1, "my panels are dusty").await;
    let plain_key = client.key(&owner, &["events:read"]).await;
    let personal_key = client.key(&owner, &["events:read", "events:read_personal"]).await;
    let received = json!({"eventTypes": ["MessageReceived"]});

    let (events, _) = client.all_pages(&plain_key, 10, received.clone()).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let withheld = &events[0];
    assert_eq!(withheld["personalData"], "WITHHELD", "{withheld}");
    assert_eq!(withheld["eventVersion"], "1.0");
    assert_eq!(withheld["sequence"], 1);
    let text = withheld.to_string();
    for secret in ["Tendai", "dusty", "263771000001"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(!has_envelope(withheld), "{withheld}");
    let data = &withheld["data"];
    assert!(
        data.get("contact_name").is_none() && data.get("content").is_none(),
        "{data}"
    );
    assert_eq!(data["kind"], "text", "the rest of the data is plain: {data}");
    let contact_id = data["contact_id"].as_str().unwrap_or_default().to_string();
    assert_eq!(withheld["aggregateId"], json!(format!("acme:{contact_id}")));

    let (events, _) = client.all_pages(&personal_key, 10, received.clone()).await;
    let opened = &events[0];
    assert_eq!(opened["personalData"], "OPENED", "{opened}");
    assert_eq!(opened["data"]["contact_name"], "Tendai Moyo");
    assert_eq!(opened["data"]["content"], json!({"body": "my panels are dusty"}));
    assert!(
        opened["data"]["contact_phone"]
            .as_str()
            .unwrap_or_default()
            .contains("263771000001"),
        "{opened}"
    );
    assert!(!has_envelope(opened), "{opened}");

    // The same contract on the live subscription.
    let mut socket = ws_connect(&client.base, &personal_key).await;
    subscribe(&mut socket, "1", None, Some(&["MessageReceived"])).await;
    let live = next_event(&mut socket).await;
    assert_eq!(live["data"]["content"]["body"], "my panels are dusty", "{live}");

    // Erased: neither key reads the fields, and the event says why.
    let erased = client
        .post(
            &owner,
            "mutation($id: String!) { eraseContact(contactId: $id) { id } }",
            json!({"id": contact_id}),
        )
        .await;
    assert!(erased["errors"].is_null(), "{erased}");
    for key in [&plain_key, &personal_key] {
        let (events, _) = client.all_pages(key, 10, received.clone()).await;
        let gone = &events[0];
        assert_eq!(gone["personalData"], "ERASED", "{gone}");
        let text = gone.to_string();
        for secret in ["Tendai", "dusty", "263771000001"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(!has_envelope(gone), "{gone}");
    }
    // A subscriber opened after the erasure reads it erased too.
    let mut socket = ws_connect(&client.base, &personal_key).await;
    subscribe(&mut socket, "2", None, Some(&["MessageReceived"])).await;
    let live = next_event(&mut socket).await;
    assert_eq!(live["personalData"], "ERASED", "{live}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn pages_filter_as_asked_and_unknown_names_are_errors(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    app.tenant_with_number("globex", "15550002222").await;
    let client = Client::new(&app).await;
    let owner = app.token("acme", Role::Owner);
    for n in 0..5 {
        inbound(&app, &format!("26377100001{n}"), "Customer", n, "hello").await;
    }
    for n in 0..3 {
        let reply = client
            .post(
                &owner,
                "mutation($k: String!, $p: String!) { captureLead(input: { idempotencyKey: $k, phone: $p }) { id } }",
                json!({"k": format!("k{n}"), "p": format!("+1555000900{n}")}),
            )
            .await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
    let globex = app.token("globex", Role::Owner);
    let reply = client
        .post(
            &globex,
            "mutation { captureLead(input: { idempotencyKey: \"g\", phone: \"+15550009999\" }) { id } }",
            json!({}),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");

    // Everything of the tenant, in pages of 2, equals the log read directly.
    let (all, _) = client.all_pages(&owner, 2, Value::Null).await;
    let expected: Vec<(i64, String)> = sqlx::query_as(
        "SELECT global_position, event_type FROM events WHERE tenant_id = 'acme' ORDER BY tx_id, global_position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(i64, String)> = all
        .iter()
        .map(|e| {
            (
                e["position"].as_i64().unwrap_or(0),
                e["eventType"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(all
        .iter()
        .all(|e| e["aggregateId"].as_str().unwrap_or("").starts_with("acme:")));
    assert!(all
        .iter()
        .all(|e| aggregate_of_event(e["eventType"].as_str().unwrap_or("")) == e["aggregateType"].as_str()));

    // Each filter keeps what it says.
    let count = |filter: Value| {
        let client = &client;
        let owner = &owner;
        async move { client.all_pages(owner, 100, filter).await.0 }
    };
    let leads = count(json!({"aggregateTypes": ["Lead"]})).await;
    assert!(!leads.is_empty() && leads.iter().all(|e| e["aggregateType"] == "Lead"));
    let one_stream = all[0]["aggregateId"].as_str().unwrap_or_default().to_string();
    let local = one_stream.trim_start_matches("acme:").to_string();
    for stream in [one_stream.clone(), local] {
        let only = count(json!({"streams": [stream]})).await;
        assert!(!only.is_empty() && only.iter().all(|e| e["aggregateId"] == json!(one_stream)));
    }
    let middle = &all[all.len() / 2];
    let through = count(json!({"through": middle["cursor"]})).await;
    assert_eq!(through.len(), all.len() / 2 + 1);
    let since = middle["recordedAt"].as_str().unwrap_or_default();
    let later = count(json!({"since": since})).await;
    let earlier = count(json!({"until": since})).await;
    assert_eq!(later.len() + earlier.len(), all.len());
    let reply = client
        .page(&owner, 1, None, json!({"eventTypes": ["LeadCaptured"]}))
        .await;
    assert_eq!(
        reply["data"]["eventLog"]["edges"][0]["node"]["eventType"],
        "LeadCaptured"
    );
    assert_eq!(reply["data"]["eventLog"]["pageInfo"]["hasNextPage"], true);

    // Unknown names are errors, not empty pages.
    for (filter, code) in [
        (
            json!({"eventTypes": ["LeadCaptured", "LeadTeleported"]}),
            "UNKNOWN_EVENT_TYPE",
        ),
        (json!({"aggregateTypes": ["Spaceship"]}), "UNKNOWN_AGGREGATE_TYPE"),
        (json!({"through": "not-a-cursor"}), "BAD_CURSOR"),
    ] {
        let reply = client.page(&owner, 10, None, filter.clone()).await;
        assert_eq!(error_code(&reply), code, "{filter}: {reply}");
    }
    let reply = client.page(&owner, 1001, None, Value::Null).await;
    assert_eq!(error_code(&reply), "PAGE_TOO_LARGE");
    let mut socket = ws_connect(&client.base, &owner).await;
    ack(&mut socket).await;
    ws::send(
        &mut socket,
        json!({"id": "x", "type": "subscribe", "payload": {"query": "subscription { events(types: [\"Nope\"]) { cursor } }"}}),
    )
    .await;
    let refused = ws_next(&mut socket).await;
    assert!(refused.to_string().contains("UNKNOWN_EVENT_TYPE"), "{refused}");

    // Who may read it: not agents, not keys without events:read.
    let agent = app.token("acme", Role::Agent);
    assert_eq!(
        error_code(&client.page(&agent, 1, None, Value::Null).await),
        "FORBIDDEN"
    );
    let leads_key = client.key(&owner, &["leads:read"]).await;
    assert_eq!(
        error_code(&client.page(&leads_key, 1, None, Value::Null).await),
        "FORBIDDEN"
    );

    // The catalogue answers every type with its aggregate.
    let catalogue = client
        .post(&owner, "{ eventTypes { eventType aggregateType } }", json!({}))
        .await;
    let listed = catalogue["data"]["eventTypes"].as_array().cloned().unwrap_or_default();
    assert!(listed.contains(&json!({"eventType": "MessageReceived", "aggregateType": "Conversation"})));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn every_event_type_the_demo_stores_is_in_the_catalogue(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.load_demo().await;
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT DISTINCT aggregate_type, event_type FROM events ORDER BY 1, 2")
            .fetch_all(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(stored.len() > 40, "the demo stores many types: {stored:?}");
    for (aggregate, event_type) in stored {
        assert_eq!(
            aggregate_of_event(&event_type),
            Some(aggregate.as_str()),
            "{event_type} of {aggregate} is missing from the catalogue"
        );
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn pages_then_a_subscription_while_writers_append_receive_every_event_once(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let client = Client::new(&app).await;
    let owner = app.token("acme", Role::Owner);
    let key = client.key(&owner, &["events:read"]).await;
    let capture = "mutation($k: String!, $p: String!) { captureLead(input: { idempotencyKey: $k, phone: $p }) { id } }";
    for n in 0..40 {
        let reply = client
            .post(
                &owner,
                capture,
                json!({"k": format!("before{n}"), "p": format!("+155500{n:05}")}),
            )
            .await;
        assert!(reply["errors"].is_null(), "{reply}");
    }

    // Writers append while the reader pages and then subscribes.
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let http = client.http.clone();
            let url = format!("{}/graphql", client.base);
            let owner = owner.clone();
            tokio::spawn(async move {
                for n in 0..30 {
                    let body = json!({"query": capture, "variables": {"k": format!("w{w}n{n}"), "p": format!("+1556{w}{n:05}")}});
                    let reply: Value = http
                        .post(&url)
                        .bearer_auth(&owner)
                        .json(&body)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{e}"))
                        .json()
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert!(reply["errors"].is_null(), "{reply}");
                }
            })
        })
        .collect();
    let (paged, end) = client.all_pages(&key, 7, Value::Null).await;
    let mut received: Vec<i64> = paged.iter().map(|e| e["position"].as_i64().unwrap_or(0)).collect();
    let mut socket = ws_connect(&client.base, &key).await;
    subscribe_without_first(&mut socket, "live", end.as_deref()).await;
    for writer in writers {
        writer.await.unwrap_or_else(|e| panic!("{e}"));
    }
    let total = app.count("SELECT count(*) FROM events WHERE tenant_id = 'acme'").await;
    while (received.len() as i64) < total {
        let event = next_event(&mut socket).await;
        received.push(event["position"].as_i64().unwrap_or(0));
    }
    let expected: Vec<i64> = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE tenant_id = 'acme' ORDER BY tx_id, global_position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(received, expected, "every event once, in log order");
    assert!(quiet(&mut socket).await, "nothing more after the last event");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_subscriber_dropped_at_a_random_point_resumes_with_exactly_the_rest(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let client = Client::new(&app).await;
    let owner = app.token("acme", Role::Owner);
    let key = client.key(&owner, &["events:read"]).await;
    for n in 0..25 {
        let reply = client
            .post(
                &owner,
                "mutation($k: String!, $p: String!) { captureLead(input: { idempotencyKey: $k, phone: $p }) { id } }",
                json!({"k": format!("k{n}"), "p": format!("+155500{n:05}")}),
            )
            .await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
    let expected: Vec<i64> = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE tenant_id = 'acme' ORDER BY tx_id, global_position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..3 {
        let cut = rand::thread_rng().gen_range(1..expected.len());
        let mut received = Vec::new();
        let mut last_cursor = None;
        let mut socket = ws_connect(&client.base, &key).await;
        subscribe_without_first(&mut socket, "a", None).await;
        while received.len() < cut {
            let event = next_event(&mut socket).await;
            received.push(event["position"].as_i64().unwrap_or(0));
            last_cursor = event["cursor"].as_str().map(str::to_string);
        }
        drop(socket);
        let mut socket = ws_connect(&client.base, &key).await;
        subscribe_without_first(&mut socket, "b", last_cursor.as_deref()).await;
        while received.len() < expected.len() {
            let event = next_event(&mut socket).await;
            received.push(event["position"].as_i64().unwrap_or(0));
        }
        assert_eq!(received, expected, "cut after {cut}");
        assert!(quiet(&mut socket).await);
    }
}

async fn ws_connect(base: &str, credential: &str) -> Socket {
    ws::connect(base, credential).await
}

async fn ws_next(socket: &mut Socket) -> Value {
    ws::next(socket).await
}

async fn ack(socket: &mut Socket) {
    ws::ack(socket).await;
}

const EVENT_FIELDS: &str = "cursor position eventType aggregateId data personalData";

async fn subscribe_without_first(socket: &mut Socket, id: &str, after: Option<&str>) {
    ack(socket).await;
    ws::subscribe_events(socket, id, after, None, EVENT_FIELDS).await;
}

async fn subscribe(socket: &mut Socket, id: &str, after: Option<&str>, types: Option<&[&str]>) {
    ack(socket).await;
    ws::subscribe_events(socket, id, after, types, EVENT_FIELDS).await;
}

/// The next event of the subscription.
async fn next_event(socket: &mut Socket) -> Value {
    let message = ws_next(socket).await;
    assert_eq!(message["type"], "next", "{message}");
    assert!(message["payload"]["errors"].is_null(), "{message}");
    message["payload"]["data"]["events"].clone()
}

/// Whether nothing but keep-alives arrives for a second.
async fn quiet(socket: &mut Socket) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return true,
            Ok(Some(Ok(Message::Text(text)))) => {
                let value: Value = serde_json::from_str(&text).unwrap_or_default();
                if value["type"] != "ping" && value["type"] != "pong" {
                    return false;
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(_) => return false,
        }
    }
}
