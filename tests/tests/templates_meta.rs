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
    /// Edits: (Meta's template id, body).
    edits: Arc<Mutex<Vec<(String, Value)>>>,
    messages: Arc<Mutex<Vec<Value>>>,
    script: Arc<Mutex<Vec<(u16, Value)>>>,
    /// What the account's template list holds: (id, name, language).
    listed: Arc<Mutex<Vec<(String, String, String)>>>,
}

/// Meta's id of the `n`th template the loopback Graph API created (from 0).
fn meta_id(n: usize) -> String {
    format!("{}{n}", &META_ID[..META_ID.len() - 1])
}

async fn edit(
    State(graph): State<Graph>,
    Path((_version, id)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Json<Value> {
    graph.edits.lock().unwrap_or_else(|e| e.into_inner()).push((id, body));
    Json(json!({"success": true}))
}

async fn list(State(graph): State<Graph>) -> Json<Value> {
    let data: Vec<Value> = graph
        .listed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(id, name, language)| json!({"id": id, "name": name, "language": language, "status": "APPROVED"}))
        .collect();
    Json(json!({"data": data}))
}

async fn submit(
    State(graph): State<Graph>,
    Path((_version, waba)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let n = {
        let mut submissions = graph.submissions.lock().unwrap_or_else(|e| e.into_inner());
        submissions.push((waba, body));
        submissions.len() - 1
    };
    let scripted = {
        let mut script = graph.script.lock().unwrap_or_else(|e| e.into_inner());
        (!script.is_empty()).then(|| script.remove(0))
    };
    let (status, reply) = scripted.unwrap_or((
        200,
        json!({"id": meta_id(n), "status": "PENDING", "category": "UTILITY"}),
    ));
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
            .route("/{version}/{waba}/message_templates", post(submit).get(list))
            .route("/{version}/{id}", post(edit))
            .route("/{version}/{number}/messages", post(message))
            .with_state(self.clone());
        format!("{}/v21.0", serve_loopback(app).await)
    }

    fn submissions(&self) -> Vec<(String, Value)> {
        self.submissions.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn edits(&self) -> Vec<(String, Value)> {
        self.edits.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
    review_of(waba, event, name, &meta_id(0), reason, time)
}

/// Meta's review of its template `id`.
fn review_of(waba: &str, event: &str, name: &str, id: &str, reason: Option<&str>, time: i64) -> Value {
    let mut value = json!({"event": event, "message_template_id": id.parse::<i64>().unwrap_or_default(),
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
    assert_eq!(shown["providerTemplateId"], meta_id(0));
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
    // A late decision about the earlier version, before this one went for review, changes
    // nothing.
    Box::pin(app.project()).await;
    deliver_review(&app, WABA, "APPROVED", None, now + 4).await;
    assert_eq!(template(&app).await["status"], "PENDING");
    work(&app, &base).await;
    // The next version edits the template WhatsApp has under this name and language.
    assert_eq!(graph.submissions().len(), 1);
    let edits = graph.edits();
    assert_eq!(edits.len(), 1, "{edits:?}");
    assert_eq!(edits[0].0, meta_id(0));
    assert_eq!(
        edits[0].1["components"][2],
        json!({"type": "FOOTER", "text": "Solar Co"})
    );
    let shown = template(&app).await;
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["status"], "PENDING");
    assert_eq!(shown["providerTemplateId"], meta_id(0));
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
    let rejected = review_of(
        WABA,
        "REJECTED",
        "kit_ready",
        &meta_id(2),
        Some("INVALID_FORMAT"),
        chrono::Utc::now().timestamp(),
    );
    let (status, _) = Box::pin(app.post_delivery(&rejected)).await;
    assert_eq!(status, StatusCode::OK);
    Box::pin(app.drain()).await;
    Box::pin(app.project()).await;
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
    let (status, _) = Box::pin(app.post_delivery(&review_of(
        WABA,
        "APPROVED",
        "plain",
        &meta_id(1),
        None,
        chrono::Utc::now().timestamp(),
    )))
    .await;
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

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn updates_about_other_templates_or_tenants_change_nothing_and_appeals_and_duplicates_are_understood(
    pool: PgPool,
) {
    Box::pin(scenario_ids(pool)).await;
}

async fn scenario_ids(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::default();
    let base = graph.serve().await;
    tenant_with_customer(&app, true).await;
    // Another tenant with a template of the same name, on its own account.
    let globex = app.tenant_with_number("globex", "555000999").await;
    tenants::map_whatsapp_account(&app.pool, &globex, "104200300999")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // An id that is a mapped number is not an account (and the other way round).
    assert!(tenants::map_whatsapp_account(&app.pool, &globex, NUMBER).await.is_err());
    assert!(tenants::map_whatsapp_number(&app.pool, &globex, WABA).await.is_err());
    let reply = gql(&app, Role::Owner, SUBMIT, json!({"input": kit_ready()})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    let reply = Box::pin(app.gql("globex", Role::Owner, SUBMIT, json!({"input": kit_ready()}))).await;
    assert!(reply["errors"].is_null(), "{reply}");
    work(&app, &base).await;
    assert_eq!(graph.submissions().len(), 2);
    let acme_id = graph
        .submissions()
        .iter()
        .position(|(waba, _)| waba == WABA)
        .map(meta_id)
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    // A review naming another template id (of the same name) changes nothing.
    let (status, _) =
        Box::pin(app.post_delivery(&review_of(WABA, "APPROVED", "kit_ready", "111222333", None, now))).await;
    assert_eq!(status, StatusCode::OK);
    Box::pin(app.drain()).await;
    Box::pin(app.project()).await;
    assert_eq!(template(&app).await["status"], "PENDING");
    // acme's account's review changes acme's template only.
    let (status, _) = Box::pin(app.post_delivery(&review_of(
        WABA,
        "REJECTED",
        "kit_ready",
        &acme_id,
        Some("TAG_CONTENT_MISMATCH"),
        now,
    )))
    .await;
    assert_eq!(status, StatusCode::OK);
    Box::pin(app.drain()).await;
    Box::pin(app.project()).await;
    assert_eq!(template(&app).await["status"], "REJECTED");
    let theirs = Box::pin(app.gql("globex", Role::Owner, TEMPLATES, json!({}))).await;
    assert_eq!(theirs["data"]["templates"]["nodes"][0]["status"], "PENDING", "{theirs}");
    // An appeal that succeeds: the rejected version is approved.
    let (status, _) =
        Box::pin(app.post_delivery(&review_of(WABA, "APPROVED", "kit_ready", &acme_id, None, now + 1))).await;
    assert_eq!(status, StatusCode::OK);
    Box::pin(app.drain()).await;
    Box::pin(app.project()).await;
    assert_eq!(template(&app).await["status"], "APPROVED");

    // A template WhatsApp already has (made in its Business Manager): read from the list and
    // edited, never left waiting for a review that does not come.
    let duplicate = json!({"error": {"message": "Message template \"welcome\" already exists in English", "code": 100,
                                     "error_subcode": 2388024}});
    *graph.script.lock().unwrap_or_else(|e| e.into_inner()) = vec![(400, duplicate)];
    graph
        .listed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(("555666777".into(), "welcome".into(), "en".into()));
    let welcome =
        json!({"name": "welcome", "language": "en", "category": "MARKETING", "body": "Welcome to Acme Solar!"});
    let reply = gql(&app, Role::Owner, SUBMIT, json!({"input": welcome})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    work(&app, &base).await;
    assert!(graph
        .edits()
        .iter()
        .any(|(id, body)| id == "555666777" && body["category"] == "MARKETING"));
    let reply = gql(
        &app,
        Role::Owner,
        "{ templates(first: 10) { nodes { name status providerTemplateId } } }",
        json!({}),
    )
    .await;
    let welcome = reply["data"]["templates"]["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|t| t["name"] == "welcome").cloned())
        .unwrap_or_default();
    assert_eq!(welcome["providerTemplateId"], "555666777", "{reply}");
    assert_eq!(welcome["status"], "PENDING");

    // The platform's access refused: not the template's rejection; it waits.
    let denied = json!({"error": {"message": "Error validating access token", "code": 190}});
    *graph.script.lock().unwrap_or_else(|e| e.into_inner()) = vec![(401, denied)];
    let hello = json!({"name": "hello", "language": "en", "category": "UTILITY", "body": "Hello!"});
    let reply = gql(&app, Role::Owner, SUBMIT, json!({"input": hello})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    work(&app, &base).await;
    let (state, error): (String, Option<String>) =
        sqlx::query_as("SELECT state, last_error FROM template_submissions WHERE template_id = 'tpl_hello_en'")
            .fetch_one(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state, "pending");
    assert!(error.unwrap_or_default().contains("refused access"));
    assert_eq!(
        app.count("SELECT count(*) FROM templates WHERE template_id = 'tpl_hello_en' AND status = 'pending'")
            .await,
        1
    );
}
