//! Outbound WhatsApp messages from end to end: GraphQL mutation → `OutboundMessageQueued` →
//! `outbox` projector → sender → a loopback Graph API server in the test → the outcome in the
//! log. The window rule, retries of 5xx, 4xx failures with the provider's code, timeouts and
//! crashed claims handed to operators (never resent), idempotency keys and roles.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use chronicle_api::auth::Role;
use chronicle_commands::outbound::whatsapp::{SenderConfig, WhatsAppSender};
use chronicle_tests::error_code as code;
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const NUMBER: &str = "555000111";
const CUSTOMER: &str = "263771000001";
const TOKEN: &str = "test-graph-token";

/// What the loopback Graph API saw: path, Authorization header, body, and the status it
/// answered.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    authorization: String,
    body: Value,
    answered: u16,
}

/// A loopback Graph API: answers the scripted replies in order, then 200 with a message id;
/// optionally sleeps before answering.
#[derive(Clone, Default)]
struct Graph {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<Vec<(u16, Value)>>>,
    delay: Duration,
}

async fn messages(
    State(graph): State<Graph>,
    Path((version, number)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let (status, reply) = {
        let mut script = graph.script.lock().unwrap_or_else(|e| e.into_inner());
        if script.is_empty() {
            (
                200,
                json!({"messaging_product": "whatsapp", "contacts": [{"input": CUSTOMER, "wa_id": CUSTOMER}],
                       "messages": [{"id": wamid(CUSTOMER, 900)}]}),
            )
        } else {
            script.remove(0)
        }
    };
    graph.seen.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
        path: format!("/{version}/{number}/messages"),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body,
        answered: status,
    });
    // Seen before the delay: a client that gives up still reached the server.
    if !graph.delay.is_zero() {
        tokio::time::sleep(graph.delay).await;
    }
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(reply))
}

impl Graph {
    fn scripted(replies: Vec<(u16, Value)>) -> Self {
        Self {
            script: Arc::new(Mutex::new(replies)),
            ..Self::default()
        }
    }

    /// Serves on 127.0.0.1:0; returns the base URL (`http://…/v21.0`).
    async fn serve(&self) -> String {
        let app = Router::new()
            .route("/{version}/{number}/messages", post(messages))
            .with_state(self.clone());
        format!("{}/v21.0", chronicle_tests::serve_loopback(app).await)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn sender(app: &TestApp, base_url: &str, timeout: Duration) -> WhatsAppSender {
    let mut config = sender_config(base_url, TOKEN);
    config.request_timeout = timeout;
    app.sender_with(config)
}

/// A tenant whose customer wrote `hours_ago` hours ago; returns the conversation id.
async fn conversation(app: &TestApp, hours_ago: i64) -> String {
    app.tenant_with_number("acme", NUMBER).await;
    let at = chrono::Utc::now().timestamp() - hours_ago * 3600;
    let body = delivery(
        NUMBER,
        &[(CUSTOMER, "Tendai Moyo")],
        vec![text_message(
            CUSTOMER,
            &wamid(CUSTOMER, 1),
            at,
            "Is the 5kW kit in stock?",
        )],
        vec![],
    );
    let (status, _) = app.post_delivery(&body).await;
    assert_eq!(status, StatusCode::OK);
    app.drain().await;
    approve_template(app, "acme").await;
    app.project().await;
    sqlx::query_scalar("SELECT conversation_id FROM conversations")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Submits and approves the tenant's `kit_follow_up` template (English).
async fn approve_template(app: &TestApp, tenant_id: &str) {
    use chronicle_domain::metadata::{Actor, CommandMetadata};
    use chronicle_domain::template::{SubmitTemplate, TemplateCategory, TemplateCommand};
    let metadata = CommandMetadata {
        tenant_id: tenant(tenant_id),
        actor: Actor::System {
            component: "test".into(),
        },
        correlation_id: "test".into(),
        causation_id: "test".into(),
    };
    for command in [
        TemplateCommand::SubmitTemplate(SubmitTemplate {
            name: "kit_follow_up".into(),
            language: "en".into(),
            category: TemplateCategory::Utility,
            body: "Hello {{1}}, your kit ships {{2}}.".into(),
            buttons: vec![],
            at: chrono::Utc::now(),
            header: None,
            footer: None,
        }),
        TemplateCommand::ApproveTemplate {
            provider_template_id: "wa-tpl-1".into(),
            at: chrono::Utc::now(),
        },
    ] {
        app.state
            .commands
            .template("tpl_kit_follow_up_en", command, &metadata)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

const SEND_MESSAGE: &str = "mutation($id: String!, $text: String!, $key: String!) {
  sendMessage(conversationId: $id, text: $text, idempotencyKey: $key) { id position }
}";

const SEND_TEMPLATE: &str = "mutation($id: String!, $key: String!) {
  sendTemplate(conversationId: $id, name: \"kit_follow_up\", language: \"en\", parameters: [\"Tendai\", \"Friday\"],
               idempotencyKey: $key) { id position }
}";

async fn as_role(app: &TestApp, role: Role, query: &str, variables: Value) -> Value {
    app.gql("acme", role, query, variables).await
}

async fn events_of(app: &TestApp, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn outbox_state(app: &TestApp) -> (String, i32) {
    sqlx::query_as("SELECT state, attempts FROM outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_free_form_send_outside_the_window_is_refused_with_the_rules_code(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 30).await;
    let reply = as_role(
        &app,
        Role::Agent,
        SEND_MESSAGE,
        json!({"id": id, "text": "Yes, in stock", "key": "k-1"}),
    )
    .await;
    assert_eq!(code(&reply), "OUTSIDE_SERVICE_WINDOW", "{reply}");
    // A message for people: when the window closed, no Rust debug text.
    let message = reply["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("the 24-hour customer service window is closed (since ") && !message.contains("Some("),
        "{message}"
    );
    assert_eq!(events_of(&app, "OutboundMessageQueued").await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_free_form_send_inside_the_window_reaches_whatsapp_as_text(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::default();
    let base = graph.serve().await;
    let id = conversation(&app, 1).await;
    let reply = as_role(
        &app,
        Role::Agent,
        SEND_MESSAGE,
        json!({"id": id, "text": "Yes, in stock", "key": "k-1"}),
    )
    .await;
    assert!(reply["errors"].is_null(), "{reply}");
    assert!(reply["data"]["sendMessage"]["position"].as_i64().is_some(), "{reply}");
    app.project().await;
    sender(&app, &base, Duration::from_secs(5))
        .drain()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = graph.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, format!("/v21.0/{NUMBER}/messages"));
    assert_eq!(seen[0].authorization, format!("Bearer {TOKEN}"));
    assert_eq!(seen[0].body["to"], CUSTOMER);
    assert_eq!(seen[0].body["type"], "text");
    assert_eq!(seen[0].body["text"]["body"], "Yes, in stock");
    // The log keeps the text sealed.
    let clear: i64 = app
        .count(
            "SELECT count(*) FROM events WHERE payload::text LIKE '%in stock%' OR payload::text LIKE '%263771000001%'",
        )
        .await;
    assert_eq!(clear, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_template_send_is_delivered_exactly_once_even_after_two_500s(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let unavailable =
        json!({"error": {"message": "Service temporarily unavailable", "code": 2, "type": "OAuthException"}});
    let graph = Graph::scripted(vec![(500, unavailable.clone()), (500, unavailable)]);
    let base = graph.serve().await;
    let id = conversation(&app, 30).await;
    let reply = as_role(&app, Role::Agent, SEND_TEMPLATE, json!({"id": id, "key": "tpl-1"})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    app.project().await;
    let sender = sender(&app, &base, Duration::from_secs(5));
    let pass = sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((pass.retry, pass.sent), (2, 1), "{pass:?}");
    // Again, and after the outcome is projected: nothing more is sent.
    app.project().await;
    sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    let seen = graph.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| s.answered == 200).count(), 1);
    assert_eq!(seen[2].body["type"], "template");
    assert_eq!(seen[2].body["template"]["name"], "kit_follow_up");
    assert_eq!(seen[2].body["template"]["language"]["code"], "en");
    assert_eq!(
        seen[2].body["template"]["components"][0]["parameters"][0]["text"],
        "Tendai"
    );
    assert_eq!(events_of(&app, "OutboundMessageSent").await, 1);
    assert_eq!(events_of(&app, "OutboundMessageFailed").await, 0);
    assert_eq!(outbox_state(&app).await, ("sent".to_string(), 3));
    // The message's reference is the keyed hash of the id WhatsApp answered.
    let expected = app
        .state
        .id_key
        .message_ref(&tenant("acme"), "whatsapp", &wamid(CUSTOMER, 900));
    let state: (String, Option<String>) =
        sqlx::query_as("SELECT state, message_ref FROM messages WHERE direction = 'outbound'")
            .fetch_one(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state, ("sent".to_string(), Some(expected)));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_4xx_is_recorded_as_a_failure_with_the_providers_code_and_not_retried(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::scripted(vec![(
        400,
        json!({"error": {"message": "(#132001) Template name does not exist in the translation", "type": "OAuthException",
                         "code": 132001, "error_data": {"messaging_product": "whatsapp", "details": "template name (kit_follow_up) does not exist in en"}}}),
    )]);
    let base = graph.serve().await;
    let id = conversation(&app, 30).await;
    as_role(&app, Role::Admin, SEND_TEMPLATE, json!({"id": id, "key": "tpl-1"})).await;
    app.project().await;
    let sender = sender(&app, &base, Duration::from_secs(5));
    sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(graph.seen().len(), 1);
    let failed: Value = sqlx::query_scalar(
        "SELECT payload::jsonb -> 'OutboundMessageFailed' FROM events WHERE event_type = 'OutboundMessageFailed'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(failed["code"], 132001);
    assert_eq!(failed["retryable"], false);
    assert!(failed["title"].as_str().unwrap_or_default().contains("does not exist"));
    assert_eq!(events_of(&app, "OutboundMessageSent").await, 0);
    assert_eq!(outbox_state(&app).await.0, "failed");
    app.project().await;
    let row: (String, Option<i64>) =
        sqlx::query_as("SELECT state, error_code FROM messages WHERE direction = 'outbound'")
            .fetch_one(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row, ("failed".to_string(), Some(132001)));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_request_that_timed_out_is_handed_to_an_operator_and_never_resent(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph {
        delay: Duration::from_millis(1500),
        ..Graph::default()
    };
    let base = graph.serve().await;
    let id = conversation(&app, 30).await;
    as_role(&app, Role::Agent, SEND_TEMPLATE, json!({"id": id, "key": "tpl-1"})).await;
    app.project().await;
    let sender = sender(&app, &base, Duration::from_millis(300));
    let pass = sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.needs_operator, 1, "{pass:?}");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        graph.seen().len(),
        1,
        "the server saw the request once, and never again"
    );
    assert_eq!(outbox_state(&app).await.0, "needs_operator");
    assert_eq!(events_of(&app, "OutboundMessageSent").await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_message_left_sending_by_a_crashed_sender_is_not_resent(pool: PgPool) {
    // Boxed: the scenario's future is large (debug builds poll it on the test's stack).
    Box::pin(crashed_sender(pool)).await;
}

async fn crashed_sender(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::default();
    let base = graph.serve().await;
    let id = conversation(&app, 30).await;
    as_role(&app, Role::Agent, SEND_TEMPLATE, json!({"id": id, "key": "tpl-1"})).await;
    app.project().await;
    // A sender took the message, claimed it an hour ago and died before settling it.
    let sender = sender(&app, &base, Duration::from_secs(5));
    sender.admit().await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("UPDATE outbox SET state = 'sending', attempts = 1, claimed_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(graph.seen().is_empty());
    assert_eq!(outbox_state(&app).await.0, "needs_operator");
    // The conversation records it once (a second pass adds nothing), and the thread shows it.
    sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    let uncertain = || async {
        app.count("SELECT count(*) FROM events WHERE event_type = 'OutboundSendUncertain'")
            .await
    };
    assert_eq!(uncertain().await, 1);
    app.project().await;
    assert_eq!(
        app.count(
            "SELECT count(*) FROM messages WHERE state = 'needs_operator' AND last_send_error LIKE '%sender stopped%'"
        )
        .await,
        1
    );
    // A sender that handed a message over and stopped before recording it: the next one's
    // pass records it (the row says whether the log has it).
    as_role(&app, Role::Agent, SEND_TEMPLATE, json!({"id": id, "key": "tpl-2"})).await;
    app.project().await;
    sender.admit().await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(
        "UPDATE outbox SET state = 'needs_operator', attempts = 1, last_error = 'the request failed after it may have been sent'
          WHERE idempotency_key = 'tpl-2'",
    )
    .execute(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let fresh = TestApp::new(app.pool.clone()).await;
    self::sender(&fresh, &base, Duration::from_secs(5))
        .drain()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(uncertain().await, 2);
    assert!(graph.seen().is_empty(), "never sent by itself");
}

/// Issue 17: operators had no command to send again a message left for an operator. An owner
/// or admin decides (recorded with who decided); the sender sends it and settles it as any
/// message; each refusal has its code and records nothing.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_operator_sends_again_a_message_left_for_an_operator(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::default();
    let base = graph.serve().await;
    let id = conversation(&app, 30).await;
    as_role(&app, Role::Agent, SEND_TEMPLATE, json!({"id": id, "key": "tpl-1"})).await;
    app.project().await;
    const RESEND: &str =
        "mutation($id: String!, $key: String!) { resendMessage(conversationId: $id, idempotencyKey: $key) { id } }";
    let resend = |role: Role, key: &str| {
        let (app, id, key) = (&app, id.clone(), key.to_string());
        async move { as_role(app, role, RESEND, json!({"id": id, "key": key})).await }
    };
    // Still the sender's (queued, not taken yet): refused.
    assert_eq!(code(&resend(Role::Owner, "tpl-1").await), "NOT_AWAITING_OPERATOR");
    // Taken by the sender (pending): still the sender's.
    let sender = sender(&app, &base, Duration::from_secs(5));
    sender.admit().await.unwrap_or_else(|e| panic!("{e}"));
    let reply = resend(Role::Owner, "tpl-1").await;
    assert_eq!(code(&reply), "NOT_AWAITING_OPERATOR", "{reply}");
    // A sender took it and died before settling it: handed to an operator.
    sqlx::query("UPDATE outbox SET state = 'sending', attempts = 1, claimed_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outbox_state(&app).await.0, "needs_operator");
    assert_eq!(code(&resend(Role::Agent, "tpl-1").await), "FORBIDDEN");
    assert_eq!(
        code(&resend(Role::Owner, "no-such-key").await),
        "UNKNOWN_OUTBOUND_MESSAGE"
    );
    // The customer opted out meanwhile: refused; opted in again: sent.
    let keyword = |n: u32, text: &str| {
        delivery(
            NUMBER,
            &[(CUSTOMER, "Tendai Moyo")],
            vec![text_message(
                CUSTOMER,
                &wamid(CUSTOMER, n),
                chrono::Utc::now().timestamp(),
                text,
            )],
            vec![],
        )
    };
    assert_eq!(app.post_delivery(&keyword(2, "STOP")).await.0, StatusCode::OK);
    app.drain().await;
    assert_eq!(code(&resend(Role::Owner, "tpl-1").await), "CONTACT_OPTED_OUT");
    assert_eq!(events_of(&app, "OutboundResendAuthorized").await, 0);
    assert_eq!(outbox_state(&app).await.0, "needs_operator");
    assert_eq!(app.post_delivery(&keyword(3, "START")).await.0, StatusCode::OK);
    app.drain().await;
    let reply = resend(Role::Admin, "tpl-1").await;
    assert_eq!(reply["data"]["resendMessage"]["id"], id.as_str(), "{reply}");
    assert_eq!(events_of(&app, "OutboundResendAuthorized").await, 1);
    let decided_by: String = sqlx::query_scalar(
        "SELECT payload->'OutboundResendAuthorized'->>'by' FROM events WHERE event_type = 'OutboundResendAuthorized'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decided_by, "user-1");
    assert_eq!(outbox_state(&app).await, ("pending".to_string(), 0));
    sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(graph.seen().len(), 1);
    assert_eq!(outbox_state(&app).await.0, "sent");
    assert_eq!(events_of(&app, "OutboundMessageSent").await, 1);
    // Sent: nothing to send again.
    assert_eq!(code(&resend(Role::Owner, "tpl-1").await), "OUTBOUND_MESSAGE_SETTLED");
    assert_eq!(events_of(&app, "OutboundResendAuthorized").await, 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_repeated_idempotency_key_queues_and_sends_one_message(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::default();
    let base = graph.serve().await;
    let id = conversation(&app, 30).await;
    for _ in 0..2 {
        let reply = as_role(&app, Role::Agent, SEND_TEMPLATE, json!({"id": id, "key": "tpl-1"})).await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
    app.project().await;
    sender(&app, &base, Duration::from_secs(5))
        .drain()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events_of(&app, "OutboundMessageQueued").await, 1);
    assert_eq!(graph.seen().len(), 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_outbox_rebuilt_from_the_log_sends_nothing_already_sent(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::default();
    let base = graph.serve().await;
    let id = conversation(&app, 30).await;
    as_role(&app, Role::Agent, SEND_TEMPLATE, json!({"id": id, "key": "tpl-1"})).await;
    app.project().await;
    let sender = sender(&app, &base, Duration::from_secs(5));
    sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    // The sender's outbox is lost (its rows and its mark in the feed) and copied again from the
    // projector's feed, itself rebuilt from the log.
    sqlx::query("DELETE FROM outbox")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("DELETE FROM work_admissions WHERE feed = 'outbox_feed'")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.rebuild("outbox").await;
    let pass = sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(graph.seen().len(), 1, "{pass:?}");
    assert_eq!(outbox_state(&app).await.0, "sent");
    // A row pending again (rebuilt while the outcome was not yet applied): the sender finds the
    // outcome in the log and settles the row without calling WhatsApp.
    sqlx::query("UPDATE outbox SET state = 'pending'")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pass = sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((pass.settled, pass.sent), (1, 0), "{pass:?}");
    assert_eq!(graph.seen().len(), 1);
    assert_eq!(outbox_state(&app).await.0, "sent");
    assert_eq!(events_of(&app, "OutboundMessageSent").await, 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_opted_out_contact_is_sent_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 1).await;
    let body = delivery(
        NUMBER,
        &[(CUSTOMER, "Tendai Moyo")],
        vec![text_message(
            CUSTOMER,
            &wamid(CUSTOMER, 2),
            chrono::Utc::now().timestamp(),
            "STOP",
        )],
        vec![],
    );
    app.post_delivery(&body).await;
    app.drain().await;
    let reply = as_role(&app, Role::Agent, SEND_TEMPLATE, json!({"id": id, "key": "tpl-1"})).await;
    assert_eq!(code(&reply), "CONTACT_OPTED_OUT", "{reply}");
    assert_eq!(events_of(&app, "OutboundMessageQueued").await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_template_that_is_not_approved_is_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 30).await;
    let reply = as_role(
        &app,
        Role::Agent,
        "mutation($id: String!) {
           sendTemplate(conversationId: $id, name: \"unknown\", language: \"en\", idempotencyKey: \"k\") { position }
         }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(code(&reply), "TEMPLATE_NOT_APPROVED", "{reply}");
    assert_eq!(events_of(&app, "OutboundMessageQueued").await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_auditor_cannot_send_and_nothing_is_queued(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 1).await;
    for (query, variables) in [
        (SEND_TEMPLATE, json!({"id": id, "key": "tpl-1"})),
        (SEND_MESSAGE, json!({"id": id, "text": "hi", "key": "k-1"})),
    ] {
        for role in [Role::Auditor, Role::Technician, Role::Finance, Role::Integrator] {
            let reply = as_role(&app, role, query, variables.clone()).await;
            assert_eq!(code(&reply), "FORBIDDEN", "{role:?}: {reply}");
        }
    }
    assert_eq!(events_of(&app, "OutboundMessageQueued").await, 0);
    let (_, reply) = app
        .graphql(None, SEND_MESSAGE, json!({"id": id, "text": "hi", "key": "k"}))
        .await;
    assert_eq!(reply["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_message_still_refused_by_5xx_after_the_last_attempt_is_recorded_failed_and_retryable(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let down = json!({"error": {"message": "Service unavailable", "code": 2}});
    let graph = Graph::scripted(vec![(503, down.clone()), (503, down.clone()), (503, down)]);
    let base = graph.serve().await;
    let id = conversation(&app, 30).await;
    as_role(&app, Role::Agent, SEND_TEMPLATE, json!({"id": id, "key": "tpl-1"})).await;
    app.project().await;
    let mut config = SenderConfig::new(base, TOKEN);
    config.backoff = Duration::ZERO;
    config.max_attempts = 3;
    let sender = WhatsAppSender::new(app.state.commands.clone(), app.keys(), config).unwrap_or_else(|e| panic!("{e}"));
    sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(graph.seen().len(), 3);
    let failed: Value = sqlx::query_scalar(
        "SELECT payload::jsonb -> 'OutboundMessageFailed' FROM events WHERE event_type = 'OutboundMessageFailed'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (failed["code"].clone(), failed["retryable"].clone()),
        (json!(2), json!(true))
    );
    assert_eq!(outbox_state(&app).await, ("failed".to_string(), 3));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn two_senders_working_one_outbox_send_each_message_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::default();
    let base = graph.serve().await;
    let id = conversation(&app, 30).await;
    for n in 0..6 {
        let reply = as_role(
            &app,
            Role::Agent,
            SEND_TEMPLATE,
            json!({"id": id, "key": format!("tpl-{n}")}),
        )
        .await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
    app.project().await;
    let (a, b) = (
        sender(&app, &base, Duration::from_secs(5)),
        sender(&app, &base, Duration::from_secs(5)),
    );
    // Boxed: two senders' futures side by side overflow a test thread's stack in debug builds.
    let (pa, pb) = tokio::join!(Box::pin(a.drain()), Box::pin(b.drain()));
    let (pa, pb) = (
        pa.unwrap_or_else(|e| panic!("{e}")),
        pb.unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(pa.sent + pb.sent, 6, "{pa:?} {pb:?}");
    assert_eq!(graph.seen().len(), 6);
    assert_eq!(events_of(&app, "OutboundMessageSent").await, 6);
    app.project().await;
    assert_eq!(
        app.count("SELECT count(*) FROM messages WHERE direction = 'outbound' AND state = 'sent'")
            .await,
        6
    );
}
