//! Templates with Meta from end to end: `submitTemplate` → the WhatsApp sender submits it to
//! the tenant's WhatsApp Business Account on a loopback Graph API (`POST
//! /{waba-id}/message_templates`) and records Meta's id; Meta's decisions arrive as signed
//! `message_template_status_update` webhooks (approved, rejected with its reason, paused,
//! reinstated, disabled) and decide what `sendTemplate` may send; headers and footers, with the
//! header's parameter on send.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chronicle_api::auth::Role;
use chronicle_commands::tenants;
use chronicle_tests::error_code as code;
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const NUMBER: &str = "555000444";
const WABA: &str = "104200300400";
const CUSTOMER: &str = "263771000066";
const META_ID: &str = "987654321012345";

/// A loopback Graph API: template submissions answer the scripted replies in order, then
/// Meta's id and PENDING; messages are accepted.
#[derive(Clone, Default)]
struct Graph {
    submissions: Arc<Mutex<Vec<(String, Value)>>>,
    messages: Arc<Mutex<Vec<Value>>>,
    script: Arc<Mutex<Vec<(u16, Value)>>>,
}

async fn submit(
    State(graph): State<Graph>,
    Path((_version, waba)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    graph
        .submissions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((waba, body));
    let scripted = {
        let mut script = graph.script.lock().unwrap_or_else(|e| e.into_inner());
        (!script.is_empty()).then(|| script.remove(0))
    };
    let (status, reply) = scripted.unwrap_or((200, json!({"id": META_ID, "status": "PENDING", "category": "UTILITY"})));
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(reply))
}

async fn message(State(graph): State<Graph>, Json(body): Json<Value>) -> Json<Value> {
    graph.messages.lock().unwrap_or_else(|e| e.into_inner()).push(body);
    Json(json!({"messaging_product": "whatsapp", "messages": [{"id": wamid(CUSTOMER, 900)}]}))
}

impl Graph {
    fn scripted(replies: Vec<(u16, Value)>) -> Self {
        Self {
            script: Arc::new(Mutex::new(replies)),
            ..Self::default()
        }
    }

    async fn serve(&self) -> String {
        let app = Router::new()
            .route("/{version}/{waba}/message_templates", post(submit))
            .route("/{version}/{number}/messages", post(message))
            .with_state(self.clone());
        format!("{}/v21.0", serve_loopback(app).await)
    }

    fn submissions(&self) -> Vec<(String, Value)> {
        self.submissions.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn messages(&self) -> Vec<Value> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn gql(app: &TestApp, role: Role, query: &str, variables: Value) -> Value {
    Box::pin(app.gql("acme", role, query, variables)).await
}

/// Projects, works the sender's queues through the loopback Graph API, projects again.
async fn work(app: &TestApp, base: &str) {
    Box::pin(app.project()).await;
    let mut config = sender_config(base, "graph-token");
    config.backoff = Duration::ZERO;
    config.request_timeout = Duration::from_secs(5);
    Box::pin(app.sender_with(config).drain())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Box::pin(app.project()).await;
}

/// Tenant `acme` with its number, its account (unless `account` is false) and a customer who
/// wrote an hour ago; returns the conversation id.
async fn tenant_with_customer(app: &TestApp, account: bool) -> String {
    let t = app.tenant_with_number("acme", NUMBER).await;
    if account {
        tenants::map_whatsapp_account(&app.pool, &t, WABA)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let at = chrono::Utc::now().timestamp() - 3600;
    let body = delivery(
        NUMBER,
        &[(CUSTOMER, "Farai Chuma")],
        vec![text_message(
            CUSTOMER,
            &wamid(CUSTOMER, 1),
            at,
            "When does my kit ship?",
        )],
        vec![],
    );
    let (status, reply) = Box::pin(app.post_delivery(&body)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    Box::pin(app.drain()).await;
    Box::pin(app.project()).await;
    sqlx::query_scalar("SELECT conversation_id FROM conversations")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Meta's review of a template, as its webhook delivers it.
fn review(waba: &str, event: &str, name: &str, reason: Option<&str>, time: i64) -> Value {
    let mut value = json!({"event": event, "message_template_id": META_ID.parse::<i64>().unwrap_or_default(),
                           "message_template_name": name, "message_template_language": "en"});
    if let Some(reason) = reason {
        value["reason"] = json!(reason);
    }
    json!({"object": "whatsapp_business_account", "entry": [{"id": waba, "time": time,
        "changes": [{"field": "message_template_status_update", "value": value}]}]})
}

async fn deliver_review(app: &TestApp, waba: &str, event: &str, reason: Option<&str>, time: i64) {
    let (status, reply) = Box::pin(app.post_delivery(&review(waba, event, "kit_ready", reason, time))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    Box::pin(app.drain()).await;
    Box::pin(app.project()).await;
}

const SUBMIT: &str = "mutation($input: SubmitTemplateInput!) { submitTemplate(input: $input) { id } }";

fn kit_ready() -> Value {
    json!({"name": "kit_ready", "language": "en", "category": "UTILITY",
           "body": "Hi {{1}}, your kit ships {{2}}.",
           "header": {"text": "Order {{1}}"}, "footer": "Solar Co, Harare",
           "buttons": [{"kind": "QUICK_REPLY", "text": "Thanks"}]})
}

const TEMPLATES: &str = "{ templates(first: 10) { nodes { id status providerTemplateId rejectionReason statusReason
                                                           header footer version } } }";

async fn template(app: &TestApp) -> Value {
    let reply = gql(app, Role::Owner, TEMPLATES, json!({})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    reply["data"]["templates"]["nodes"][0].clone()
}

const SEND: &str = "mutation($id: String!, $key: String!, $header: String) {
  sendTemplate(conversationId: $id, name: \"kit_ready\", language: \"en\", parameters: [\"Farai\", \"Friday\"],
               headerParameter: $header, idempotencyKey: $key) { id }
}";

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_template_goes_to_metas_review_and_metas_webhooks_decide_what_may_be_sent(pool: PgPool) {
    Box::pin(scenario_review(pool)).await;
}

async fn scenario_review(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::default();
    let base = graph.serve().await;
    let id = tenant_with_customer(&app, true).await;
    let reply = gql(&app, Role::Owner, SUBMIT, json!({"input": kit_ready()})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    work(&app, &base).await;

    // Submitted to the tenant's account with every component, examples for the variables.
    let submissions = graph.submissions();
    assert_eq!(submissions.len(), 1, "{submissions:?}");
    let (waba, body) = &submissions[0];
    assert_eq!(waba, WABA);
    assert_eq!(body["name"], "kit_ready");
    assert_eq!(body["language"], "en");
    assert_eq!(body["category"], "UTILITY");
    assert_eq!(
        body["components"],
        json!([
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}", "example": {"header_text": ["sample 1"]}},
            {"type": "BODY", "text": "Hi {{1}}, your kit ships {{2}}.", "example": {"body_text": [["sample 1", "sample 2"]]}},
            {"type": "FOOTER", "text": "Solar Co, Harare"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Thanks"}]}
        ])
    );
    let shown = template(&app).await;
    assert_eq!(shown["status"], "PENDING", "{shown}");
    assert_eq!(shown["providerTemplateId"], META_ID);
    assert_eq!(shown["header"], json!({"type": "text", "text": "Order {{1}}"}));
    assert_eq!(shown["footer"], "Solar Co, Harare");
    assert_eq!(app.count_events("TemplateSentForReview").await, 1);
    // Another pass submits nothing again.
    work(&app, &base).await;
    assert_eq!(graph.submissions().len(), 1);
    // Pending: not sendable.
    let reply = gql(
        &app,
        Role::Agent,
        SEND,
        json!({"id": id, "key": "s-0", "header": "K-1042"}),
    )
    .await;
    assert_eq!(code(&reply), "TEMPLATE_NOT_APPROVED", "{reply}");

    let now = chrono::Utc::now().timestamp();
    deliver_review(&app, WABA, "APPROVED", None, now).await;
    assert_eq!(template(&app).await["status"], "APPROVED");
    // The header's parameter is required, and goes out in the header component.
    let reply = gql(&app, Role::Agent, SEND, json!({"id": id, "key": "s-1"})).await;
    assert_eq!(code(&reply), "HEADER_PARAMETER_MISMATCH", "{reply}");
    let reply = gql(
        &app,
        Role::Agent,
        SEND,
        json!({"id": id, "key": "s-1", "header": "K-1042"}),
    )
    .await;
    assert!(reply["errors"].is_null(), "{reply}");
    work(&app, &base).await;
    let sent = graph.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["template"]["components"],
        json!([
            {"type": "header", "parameters": [{"type": "text", "text": "K-1042"}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Farai"}, {"type": "text", "text": "Friday"}]}
        ])
    );

    // Paused: refused until reinstated.
    deliver_review(&app, WABA, "PAUSED", Some("Low quality rating"), now + 1).await;
    let shown = template(&app).await;
    assert_eq!(shown["status"], "PAUSED", "{shown}");
    assert_eq!(shown["statusReason"], "Low quality rating");
    let reply = gql(
        &app,
        Role::Agent,
        SEND,
        json!({"id": id, "key": "s-2", "header": "K-1043"}),
    )
    .await;
    assert_eq!(code(&reply), "TEMPLATE_NOT_APPROVED", "{reply}");
    deliver_review(&app, WABA, "REINSTATED", None, now + 2).await;
    assert_eq!(template(&app).await["status"], "APPROVED");
    let reply = gql(
        &app,
        Role::Agent,
        SEND,
        json!({"id": id, "key": "s-2", "header": "K-1043"}),
    )
    .await;
    assert!(reply["errors"].is_null(), "{reply}");

    // Disabled: never again; a changed template may be submitted as the next version.
    deliver_review(&app, WABA, "DISABLED", None, now + 3).await;
    assert_eq!(template(&app).await["status"], "DISABLED");
    let reply = gql(
        &app,
        Role::Agent,
        SEND,
        json!({"id": id, "key": "s-3", "header": "K-1044"}),
    )
    .await;
    assert_eq!(code(&reply), "TEMPLATE_NOT_APPROVED", "{reply}");
    let mut changed = kit_ready();
    changed["footer"] = json!("Solar Co");
    let reply = gql(&app, Role::Owner, SUBMIT, json!({"input": changed})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    work(&app, &base).await;
    assert_eq!(graph.submissions().len(), 2);
    assert_eq!(template(&app).await["version"], 2);
    // A repeated delivery of a review is kept once.
    let before = app.count("SELECT count(*) FROM webhook_inbox").await;
    let (status, _) = Box::pin(app.post_delivery(&review(WABA, "DISABLED", "kit_ready", None, now + 3))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.count("SELECT count(*) FROM webhook_inbox").await, before);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn meta_rejects_with_its_reason_and_a_refused_submission_is_a_rejection(pool: PgPool) {
    Box::pin(scenario_rejections(pool)).await;
}

async fn scenario_rejections(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let refusal = json!({"error": {"message": "Invalid parameter", "code": 100,
                                   "error_user_msg": "The footer can't contain variables."}});
    let graph = Graph::scripted(vec![
        (503, json!({"error": {"message": "unavailable", "code": 2}})),
        (400, refusal),
    ]);
    let base = graph.serve().await;
    tenant_with_customer(&app, true).await;
    let reply = gql(&app, Role::Owner, SUBMIT, json!({"input": kit_ready()})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    work(&app, &base).await;
    // Unavailable, tried again; then refused: recorded as rejected with Meta's message.
    assert_eq!(graph.submissions().len(), 2);
    let shown = template(&app).await;
    assert_eq!(shown["status"], "REJECTED", "{shown}");
    assert_eq!(
        shown["rejectionReason"],
        "refused by WhatsApp (100): The footer can't contain variables."
    );
    // A changed version goes to review and Meta's webhook rejects it with its reason.
    let mut changed = kit_ready();
    changed["footer"] = json!("Solar Co");
    let reply = gql(&app, Role::Owner, SUBMIT, json!({"input": changed})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    work(&app, &base).await;
    assert_eq!(graph.submissions().len(), 3);
    deliver_review(
        &app,
        WABA,
        "REJECTED",
        Some("INVALID_FORMAT"),
        chrono::Utc::now().timestamp(),
    )
    .await;
    let shown = template(&app).await;
    assert_eq!(shown["status"], "REJECTED", "{shown}");
    assert_eq!(shown["rejectionReason"], "INVALID_FORMAT");
    assert_eq!(shown["version"], 2);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn without_an_account_submissions_wait_and_reviews_are_kept_until_it_is_mapped(pool: PgPool) {
    Box::pin(scenario_unmapped(pool)).await;
}

async fn scenario_unmapped(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::default();
    let base = graph.serve().await;
    tenant_with_customer(&app, false).await;
    let reply = gql(&app, Role::Owner, SUBMIT, json!({"input": kit_ready()})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    work(&app, &base).await;
    assert!(graph.submissions().is_empty());
    let (state, error): (String, Option<String>) = sqlx::query_as("SELECT state, last_error FROM template_submissions")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state, "pending");
    assert!(error.unwrap_or_default().contains("map-account"));
    // A review of an account no tenant owns is kept, not lost.
    let (status, _) = Box::pin(app.post_delivery(&review(
        WABA,
        "APPROVED",
        "kit_ready",
        None,
        chrono::Utc::now().timestamp(),
    )))
    .await;
    assert_eq!(status, StatusCode::OK);
    Box::pin(app.drain()).await;
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_inbox WHERE kind = 'template_status' AND state = 'unmapped'")
            .await,
        1
    );
    // Mapped: the submission goes out, and the kept review is processed.
    let released = tenants::map_whatsapp_account(&app.pool, &tenant("acme"), WABA)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(released, 1);
    work(&app, &base).await;
    assert_eq!(graph.submissions().len(), 1);
    Box::pin(app.drain()).await;
    Box::pin(app.project()).await;
    assert_eq!(template(&app).await["status"], "APPROVED");
    // One account, one tenant.
    app.tenant_with_number("globex", "555000999").await;
    let taken = tenants::map_whatsapp_account(&app.pool, &tenant("globex"), WABA).await;
    assert!(taken.is_err(), "{taken:?}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn headers_and_footers_follow_whatsapps_rules_and_a_media_header_takes_a_link(pool: PgPool) {
    Box::pin(scenario_headers(pool)).await;
}

async fn scenario_headers(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::default();
    let base = graph.serve().await;
    let id = tenant_with_customer(&app, true).await;
    let cases = [
        (json!({"header": {"text": "Order {{1}} for {{2}}"}}), "INVALID_HEADER"),
        (json!({"header": {"text": "x".repeat(61)}}), "INVALID_HEADER"),
        (json!({"header": {"text": "Order", "media": "IMAGE"}}), "INVALID_INPUT"),
        (json!({"header": {}}), "INVALID_INPUT"),
        (json!({"footer": "Thanks {{1}}"}), "INVALID_FOOTER"),
        (json!({"footer": "x".repeat(61)}), "INVALID_FOOTER"),
    ];
    for (i, (overrides, expected)) in cases.into_iter().enumerate() {
        let mut input = kit_ready();
        input["name"] = json!(format!("bad_{i}"));
        for (k, v) in overrides.as_object().cloned().unwrap_or_default() {
            input[k] = v;
        }
        let reply = gql(&app, Role::Owner, SUBMIT, json!({"input": input})).await;
        assert_eq!(code(&reply), expected, "{input}: {reply}");
    }
    assert_eq!(app.count_events("TemplateSubmitted").await, 0);

    // A media header: each send links its file.
    let photo = json!({"name": "kit_photo", "language": "en", "category": "UTILITY", "body": "Your kit, {{1}}.",
                       "header": {"media": "IMAGE"}});
    let reply = gql(&app, Role::Owner, SUBMIT, json!({"input": photo})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    work(&app, &base).await;
    assert_eq!(
        graph.submissions()[0].1["components"][0],
        json!({"type": "HEADER", "format": "IMAGE"})
    );
    let (status, reply) = Box::pin(app.post_delivery(&review(
        WABA,
        "APPROVED",
        "kit_photo",
        None,
        chrono::Utc::now().timestamp(),
    )))
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    Box::pin(app.drain()).await;
    let send = "mutation($id: String!, $key: String!, $header: String) {
      sendTemplate(conversationId: $id, name: \"kit_photo\", language: \"en\", parameters: [\"Farai\"],
                   headerParameter: $header, idempotencyKey: $key) { id }
    }";
    let reply = gql(
        &app,
        Role::Agent,
        send,
        json!({"id": id, "key": "p-1", "header": "kit.jpg"}),
    )
    .await;
    assert_eq!(code(&reply), "HEADER_PARAMETER_MISMATCH", "{reply}");
    let reply = gql(&app, Role::Agent, send, json!({"id": id, "key": "p-1"})).await;
    assert_eq!(code(&reply), "HEADER_PARAMETER_MISMATCH", "{reply}");
    let link = "https://files.example.com/kit-1042.jpg";
    let reply = gql(&app, Role::Agent, send, json!({"id": id, "key": "p-1", "header": link})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    work(&app, &base).await;
    assert_eq!(
        graph.messages()[0]["template"]["components"][0],
        json!({"type": "header", "parameters": [{"type": "image", "image": {"link": link}}]})
    );
    // The link is sealed in the log.
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE payload::text LIKE '%kit-1042%'")
            .await,
        0
    );
    // A template without a header variable takes no header parameter.
    let plain = json!({"name": "plain", "language": "en", "category": "UTILITY", "body": "Hello {{1}}"});
    let reply = gql(&app, Role::Owner, SUBMIT, json!({"input": plain})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    work(&app, &base).await;
    let (status, _) =
        Box::pin(app.post_delivery(&review(WABA, "APPROVED", "plain", None, chrono::Utc::now().timestamp()))).await;
    assert_eq!(status, StatusCode::OK);
    Box::pin(app.drain()).await;
    let send_plain = "mutation($id: String!) {
      sendTemplate(conversationId: $id, name: \"plain\", language: \"en\", parameters: [\"Farai\"],
                   headerParameter: \"extra\", idempotencyKey: \"q-1\") { id }
    }";
    let reply = gql(&app, Role::Agent, send_plain, json!({"id": id})).await;
    assert_eq!(code(&reply), "HEADER_PARAMETER_MISMATCH", "{reply}");
    // Campaigns and follow-up rules give no header parameter: a template whose header needs one
    // is refused for them when they are made.
    let refused = chronicle_commands::outbound::require_sendable_template(
        &app.state.commands,
        &tenant("acme"),
        "kit_photo",
        "en",
        &["Farai".to_string()],
    )
    .await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("header")),
        "{refused:?}"
    );
}
