//! Outbound media and interactive messages from end to end, through GraphQL: `uploadMedia` (a
//! GraphQL multipart request) stores the file like inbound media; `sendMedia` and
//! `sendInteractive` are metered free-form sends; the sender uploads an uploaded file to a
//! loopback Graph API (`POST /{number}/media`, multipart) and sends it by the id it answers, or
//! sends a link, reply buttons or a list; the thread shows them with their statuses. Each
//! refusal is checked with nothing queued and nothing charged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use chronicle_api::auth::Role;
use chronicle_commands::metering::{features, Metering};
use chronicle_commands::wallets::{WalletService, MAIN_WALLET};
use chronicle_tests::error_code as code;
use chronicle_tests::system_metadata as meta;
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const NUMBER: &str = "555000333";
const CUSTOMER: &str = "263771000044";
const TOKEN: &str = "rich-graph-token";
/// A PNG's first bytes (the sandbox and Chronicle check types, not pixels).
const PNG: &[u8] = b"\x89PNG\r\n\x1a\nkit-photo-bytes";

/// One request the loopback Graph API received.
#[derive(Clone, Debug)]
enum Seen {
    /// `POST /{number}/media`: the form's text fields, the file's type and bytes.
    Upload {
        number: String,
        authorization: String,
        product: String,
        kind: String,
        file_type: String,
        bytes: Vec<u8>,
    },
    /// `POST /{number}/messages`.
    Message { body: Value },
}

/// A loopback Graph API: uploads answer the scripted replies in order, then a media id;
/// messages are accepted with a wamid.
#[derive(Clone, Default)]
struct Graph {
    seen: Arc<Mutex<Vec<Seen>>>,
    uploads: Arc<Mutex<Vec<(u16, Value)>>>,
}

async fn upload(
    State(graph): State<Graph>,
    Path((_version, number)): Path<(String, String)>,
    headers: HeaderMap,
    mut form: Multipart,
) -> (StatusCode, Json<Value>) {
    let (mut product, mut kind, mut file_type, mut bytes) = (String::new(), String::new(), String::new(), Vec::new());
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_string();
        let content_type = field.content_type().unwrap_or_default().to_string();
        let data = field.bytes().await.unwrap_or_default();
        match name.as_str() {
            "messaging_product" => product = String::from_utf8_lossy(&data).into(),
            "type" => kind = String::from_utf8_lossy(&data).into(),
            "file" => {
                file_type = content_type;
                bytes = data.to_vec();
            }
            _ => {}
        }
    }
    graph.seen.lock().unwrap_or_else(|e| e.into_inner()).push(Seen::Upload {
        number,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        product,
        kind,
        file_type,
        bytes,
    });
    let scripted = {
        let mut uploads = graph.uploads.lock().unwrap_or_else(|e| e.into_inner());
        (!uploads.is_empty()).then(|| uploads.remove(0))
    };
    let (status, reply) = scripted.unwrap_or((200, json!({"id": "wa-media-77"})));
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(reply))
}

async fn message(State(graph): State<Graph>, Json(body): Json<Value>) -> Json<Value> {
    graph
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Seen::Message { body });
    Json(json!({"messaging_product": "whatsapp", "messages": [{"id": wamid(CUSTOMER, 900)}]}))
}

impl Graph {
    fn scripted(uploads: Vec<(u16, Value)>) -> Self {
        Self {
            uploads: Arc::new(Mutex::new(uploads)),
            ..Self::default()
        }
    }

    async fn serve(&self) -> String {
        let app = Router::new()
            .route("/{version}/{number}/media", post(upload))
            .route("/{version}/{number}/messages", post(message))
            .with_state(self.clone());
        format!("{}/v21.0", serve_loopback(app).await)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn messages(&self) -> Vec<Value> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Message { body } => Some(body),
                Seen::Upload { .. } => None,
            })
            .collect()
    }
}

/// Prices a message at 1,000 and puts 10,000 in the tenant's main wallet; returns the wallets.
async fn metered(app: &TestApp) -> WalletService {
    Metering::new(app.state.commands.clone())
        .set_price(&tenant("acme"), features::MESSAGE, Some(1_000), "finance-1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let wallets = WalletService::new(app.state.commands.clone());
    wallets
        .ensure_main(&meta("acme"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
        .purchase(MAIN_WALLET, "pay-1", 10_000, "finance", &meta("acme"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
}

/// A GraphQL request as `role` of tenant `acme` (boxed: the request's future is large).
async fn gql(app: &TestApp, role: Role, query: &str, variables: Value) -> Value {
    Box::pin(app.gql("acme", role, query, variables)).await
}

/// Projects, sends everything due through the loopback Graph API, projects again.
async fn send_all(app: &TestApp, base: &str) {
    app.project().await;
    let mut config = sender_config(base, TOKEN);
    config.backoff = Duration::ZERO;
    config.request_timeout = Duration::from_secs(5);
    Box::pin(app.sender_with(config).drain())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
}

/// Tenant `acme` whose customer wrote `hours_ago` hours ago; returns the conversation id.
async fn conversation(app: &TestApp, hours_ago: i64) -> String {
    app.tenant_with_number("acme", NUMBER).await;
    let at = chrono::Utc::now().timestamp() - hours_ago * 3600;
    let body = delivery(
        NUMBER,
        &[(CUSTOMER, "Chipo Dube")],
        vec![text_message(
            CUSTOMER,
            &wamid(CUSTOMER, 1),
            at,
            "Can you send a photo of the kit?",
        )],
        vec![],
    );
    let (status, reply) = app.post_delivery(&body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    app.drain().await;
    app.project().await;
    sqlx::query_scalar("SELECT conversation_id FROM conversations")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

const UPLOAD: &str = "mutation($id: String!, $file: Upload!, $mime: String) {
  uploadMedia(conversationId: $id, file: $file, mimeType: $mime) { id }
}";

/// Uploads a file as `role`; returns the reply.
async fn upload_as(app: &TestApp, role: Role, id: &str, file: (&str, &str, &[u8])) -> Value {
    let token = app.token("acme", role);
    let (_, reply) = Box::pin(app.graphql_upload(&token, UPLOAD, json!({"id": id}), file)).await;
    reply
}

/// Uploads a file as an agent; returns its media ref.
async fn upload_ok(app: &TestApp, id: &str, file: (&str, &str, &[u8])) -> String {
    let reply = upload_as(app, Role::Agent, id, file).await;
    assert!(reply["errors"].is_null(), "{reply}");
    reply["data"]["uploadMedia"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

const SEND_MEDIA: &str = "mutation($id: String!, $kind: OutboundMediaKind!, $ref: String, $link: String,
                                  $caption: String, $filename: String, $key: String!) {
  sendMedia(conversationId: $id, kind: $kind, mediaRef: $ref, link: $link, caption: $caption, filename: $filename,
            idempotencyKey: $key) { id cursor }
}";

const SEND_INTERACTIVE: &str = "mutation($id: String!, $body: String!, $header: String, $footer: String,
                                        $buttons: [ReplyButtonInput!], $list: ListInput, $key: String!) {
  sendInteractive(conversationId: $id, body: $body, header: $header, footer: $footer, buttons: $buttons,
                  list: $list, idempotencyKey: $key) { id cursor }
}";

const THREAD: &str = "query($id: String!) { conversation(id: $id) { messages(first: 50) { nodes {
  id kind content state status statusTimeline { status }
  media { kind mediaRef link filename }
  interactive { kind header body footer buttons { id title } listButton sections { title rows { id title description } } }
} } } }";

async fn thread(app: &TestApp, id: &str) -> Vec<Value> {
    let reply = gql(app, Role::Agent, THREAD, json!({"id": id})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    reply["data"]["conversation"]["messages"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn message_with_key(app: &TestApp, id: &str, key: &str) -> Value {
    thread(app, id)
        .await
        .into_iter()
        .find(|m| m["id"] == format!("out:{key}"))
        .unwrap_or_else(|| panic!("no message out:{key}"))
}

fn buttons(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"id": format!("day-{i}"), "title": format!("Day {i}")}))
            .collect(),
    )
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_uploaded_image_is_uploaded_to_whatsapp_then_sent_by_its_id_and_shown_with_its_statuses(pool: PgPool) {
    Box::pin(scenario_an_uploaded_image_is_uploaded_to_whatsapp_then_sent_by_its_id_and_shown_with_its_statuses(pool))
        .await;
}

async fn scenario_an_uploaded_image_is_uploaded_to_whatsapp_then_sent_by_its_id_and_shown_with_its_statuses(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let graph = Graph::default();
    let base = graph.serve().await;
    let id = conversation(&app, 1).await;

    let media_ref = upload_ok(&app, &id, ("kit.png", "image/png", PNG)).await;
    assert!(media_ref.starts_with("media_") && media_ref.len() == 38, "{media_ref}");
    // Stored like inbound media: sealed bytes outside the log, the fact in it.
    assert_eq!(app.count_events("MediaUploaded").await, 1);
    let (sha, ciphertext, size): (String, Vec<u8>, i64) =
        sqlx::query_as("SELECT sha256, ciphertext, size FROM media_blobs WHERE media_ref = $1")
            .bind(&media_ref)
            .fetch_one(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sha, hex::encode(<sha2::Sha256 as sha2::Digest>::digest(PNG)));
    assert_eq!(size, PNG.len() as i64);
    assert!(!ciphertext.windows(PNG.len()).any(|w| w == PNG), "stored in the clear");
    // `GET /media/{mediaRef}` serves it back to the inbox's readers.
    let (served_status, served) = app
        .send(
            Request::get(format!("/media/{media_ref}"))
                .header("authorization", format!("Bearer {}", app.token("acme", Role::Agent)))
                .body(axum::body::Body::empty())
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await;
    assert_eq!(served_status, StatusCode::OK, "{served}");

    let reply = gql(
        &app,
        Role::Agent,
        SEND_MEDIA,
        json!({"id": id, "kind": "IMAGE", "ref": media_ref, "caption": "Your 5 kW kit", "key": "photo-1"}),
    )
    .await;
    assert!(reply["errors"].is_null(), "{reply}");
    send_all(&app, &base).await;

    let seen = graph.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    match &seen[0] {
        Seen::Upload {
            number,
            authorization,
            product,
            kind,
            file_type,
            bytes,
        } => {
            assert_eq!(number, NUMBER);
            assert_eq!(authorization, &format!("Bearer {TOKEN}"));
            assert_eq!(product, "whatsapp");
            assert_eq!(kind, "image/png");
            assert_eq!(file_type, "image/png");
            assert_eq!(bytes.as_slice(), PNG);
        }
        other => panic!("the upload first, then the message: {other:?}"),
    }
    let sent = &graph.messages()[0];
    assert_eq!(sent["type"], "image", "{sent}");
    assert_eq!(sent["to"], CUSTOMER);
    assert_eq!(sent["image"], json!({"id": "wa-media-77", "caption": "Your 5 kW kit"}));

    // Statuses attach as to any send.
    let statuses = delivery(
        NUMBER,
        &[],
        vec![],
        vec![status(
            &wamid(CUSTOMER, 900),
            "delivered",
            chrono::Utc::now().timestamp(),
            CUSTOMER,
        )],
    );
    app.post_delivery(&statuses).await;
    app.drain().await;
    app.project().await;
    let shown = message_with_key(&app, &id, "photo-1").await;
    assert_eq!(shown["kind"], "image", "{shown}");
    assert_eq!(shown["content"], "Your 5 kW kit");
    assert_eq!(shown["state"], "sent");
    assert_eq!(shown["status"], "delivered");
    assert_eq!(
        shown["media"],
        json!({"kind": "image", "mediaRef": media_ref, "link": null, "filename": null})
    );
    assert!(shown["interactive"].is_null());
    // The caption never enters the log in the clear.
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE payload::text LIKE '%5 kW kit%'")
            .await,
        0
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_linked_document_goes_out_with_its_link_caption_and_file_name(pool: PgPool) {
    Box::pin(scenario_a_linked_document_goes_out_with_its_link_caption_and_file_name(
        pool,
    ))
    .await;
}

async fn scenario_a_linked_document_goes_out_with_its_link_caption_and_file_name(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::default();
    let base = graph.serve().await;
    let id = conversation(&app, 2).await;
    let link = "https://files.example.com/quotes/q-1042.pdf";
    let reply = gql(
        &app,
        Role::Agent,
        SEND_MEDIA,
        json!({"id": id, "kind": "DOCUMENT", "link": link, "caption": "Your quote", "filename": "Quote 1042.pdf",
                   "key": "quote-1"}),
    )
    .await;
    assert!(reply["errors"].is_null(), "{reply}");
    send_all(&app, &base).await;
    let sent = graph.messages();
    assert_eq!(sent.len(), 1, "no upload for a link: {:?}", graph.seen());
    assert_eq!(
        sent[0]["document"],
        json!({"link": link, "caption": "Your quote", "filename": "Quote 1042.pdf"})
    );
    let shown = message_with_key(&app, &id, "quote-1").await;
    assert_eq!(shown["kind"], "document");
    assert_eq!(
        shown["media"],
        json!({"kind": "document", "mediaRef": null, "link": link, "filename": "Quote 1042.pdf"})
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE payload::text LIKE '%q-1042%'")
            .await,
        0
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn reply_buttons_and_lists_go_out_as_interactive_messages_and_the_customers_choice_comes_back(pool: PgPool) {
    Box::pin(scenario_reply_buttons_and_lists_go_out_as_interactive_messages_and_the_customers_choice_comes_back(pool))
        .await;
}

async fn scenario_reply_buttons_and_lists_go_out_as_interactive_messages_and_the_customers_choice_comes_back(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let graph = Graph::default();
    let base = graph.serve().await;
    let id = conversation(&app, 1).await;
    let reply = gql(
        &app,
        Role::Agent,
        SEND_INTERACTIVE,
        json!({"id": id, "body": "Which day suits you for the installation?", "header": "Installation",
                   "footer": "Reply any time", "buttons": buttons(3), "key": "days-1"}),
    )
    .await;
    assert!(reply["errors"].is_null(), "{reply}");
    let list = json!({"button": "See kits", "sections": [
        {"title": "Home", "rows": [{"id": "k3", "title": "3 kW", "description": "6 panels"}, {"id": "k5", "title": "5 kW"}]},
        {"title": "Business", "rows": [{"id": "k10", "title": "10 kW"}]}
    ]});
    let reply = gql(
        &app,
        Role::Agent,
        SEND_INTERACTIVE,
        json!({"id": id, "body": "Pick a kit", "list": list, "key": "kits-1"}),
    )
    .await;
    assert!(reply["errors"].is_null(), "{reply}");
    send_all(&app, &base).await;

    let sent = graph.messages();
    assert_eq!(sent.len(), 2);
    let days = &sent[0]["interactive"];
    assert_eq!(sent[0]["type"], "interactive");
    assert_eq!(days["type"], "button");
    assert_eq!(days["header"], json!({"type": "text", "text": "Installation"}));
    assert_eq!(days["body"]["text"], "Which day suits you for the installation?");
    assert_eq!(days["footer"]["text"], "Reply any time");
    assert_eq!(
        days["action"]["buttons"][2],
        json!({"type": "reply", "reply": {"id": "day-2", "title": "Day 2"}})
    );
    let kits = &sent[1]["interactive"];
    assert_eq!(kits["type"], "list");
    assert_eq!(kits["action"]["button"], "See kits");
    assert_eq!(
        kits["action"]["sections"][0],
        json!({"title": "Home", "rows": [{"id": "k3", "title": "3 kW", "description": "6 panels"}, {"id": "k5", "title": "5 kW"}]})
    );

    let shown = message_with_key(&app, &id, "days-1").await;
    assert_eq!(shown["kind"], "interactive");
    assert_eq!(shown["content"], "Which day suits you for the installation?");
    assert_eq!(shown["state"], "sent");
    assert!(shown["media"].is_null());
    assert_eq!(shown["interactive"]["kind"], "BUTTON");
    assert_eq!(shown["interactive"]["header"], "Installation");
    assert_eq!(shown["interactive"]["buttons"].as_array().map(Vec::len), Some(3));
    assert!(shown["interactive"]["listButton"].is_null());
    let shown = message_with_key(&app, &id, "kits-1").await;
    assert_eq!(shown["interactive"]["kind"], "LIST");
    assert_eq!(shown["interactive"]["listButton"], "See kits");
    assert_eq!(shown["interactive"]["sections"][1]["rows"][0]["title"], "10 kW");

    // The customer taps a button: the reply shows with the button's title.
    let tap = json!({"from": CUSTOMER, "id": wamid(CUSTOMER, 2), "timestamp": chrono::Utc::now().timestamp().to_string(),
                     "type": "interactive", "context": {"id": wamid(CUSTOMER, 900)},
                     "interactive": {"type": "button_reply", "button_reply": {"id": "day-2", "title": "Day 2"}}});
    app.post_delivery(&delivery(NUMBER, &[(CUSTOMER, "Chipo Dube")], vec![tap], vec![]))
        .await;
    app.drain().await;
    app.project().await;
    let inbound: Vec<Value> = thread(&app, &id)
        .await
        .into_iter()
        .filter(|m| m["kind"] == "interactive" && m["id"].as_str().is_some_and(|i| i.starts_with("in:")))
        .collect();
    assert_eq!(inbound.len(), 1, "{inbound:?}");
    assert_eq!(inbound[0]["content"], "Day 2");
}

/// A file to upload: name, MIME type, bytes.
type File = (&'static str, &'static str, Vec<u8>);

/// Sends as an agent and returns the error code.
async fn refused(app: &TestApp, query: &str, variables: Value) -> String {
    let reply = gql(app, Role::Agent, query, variables).await;
    code(&reply).to_string()
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn media_and_interactive_messages_keep_the_window_and_opt_out_rules(pool: PgPool) {
    Box::pin(scenario_media_and_interactive_messages_keep_the_window_and_opt_out_rules(pool)).await;
}

async fn scenario_media_and_interactive_messages_keep_the_window_and_opt_out_rules(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 30).await;
    let link = "https://files.example.com/kit.jpg";
    assert_eq!(
        refused(
            &app,
            SEND_MEDIA,
            json!({"id": id, "kind": "IMAGE", "link": link, "key": "m-1"})
        )
        .await,
        "OUTSIDE_SERVICE_WINDOW"
    );
    assert_eq!(
        refused(
            &app,
            SEND_INTERACTIVE,
            json!({"id": id, "body": "Pick", "buttons": buttons(2), "key": "i-1"})
        )
        .await,
        "OUTSIDE_SERVICE_WINDOW"
    );
    // The customer writes STOP (which also opens the window): nothing but an opt-out confirmation.
    let stop = delivery(
        NUMBER,
        &[(CUSTOMER, "Chipo Dube")],
        vec![text_message(
            CUSTOMER,
            &wamid(CUSTOMER, 3),
            chrono::Utc::now().timestamp(),
            "STOP",
        )],
        vec![],
    );
    app.post_delivery(&stop).await;
    app.drain().await;
    assert_eq!(
        refused(
            &app,
            SEND_MEDIA,
            json!({"id": id, "kind": "IMAGE", "link": link, "key": "m-2"})
        )
        .await,
        "CONTACT_OPTED_OUT"
    );
    assert_eq!(
        refused(
            &app,
            SEND_INTERACTIVE,
            json!({"id": id, "body": "Pick", "buttons": buttons(2), "key": "i-2"})
        )
        .await,
        "CONTACT_OPTED_OUT"
    );
    assert_eq!(app.count_events("OutboundMessageQueued").await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn each_media_refusal_is_named_after_its_rule_and_nothing_is_queued_or_charged(pool: PgPool) {
    Box::pin(scenario_each_media_refusal_is_named_after_its_rule_and_nothing_is_queued_or_charged(pool)).await;
}

async fn scenario_each_media_refusal_is_named_after_its_rule_and_nothing_is_queued_or_charged(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 1).await;
    let wallets = metered(&app).await;
    let pdf = upload_ok(&app, &id, ("quote.pdf", "application/pdf", b"%PDF-1.7 quote")).await;
    let link = "https://files.example.com/kit.jpg";
    let cases = [
        (json!({"kind": "IMAGE"}), "MEDIA_SOURCE"),
        (json!({"kind": "IMAGE", "link": link, "ref": pdf}), "MEDIA_SOURCE"),
        (
            json!({"kind": "IMAGE", "link": "ftp://files.example.com/kit.jpg"}),
            "BAD_MEDIA_LINK",
        ),
        (json!({"kind": "IMAGE", "link": "kit.jpg"}), "BAD_MEDIA_LINK"),
        (
            json!({"kind": "IMAGE", "ref": "media_0123456789abcdef0123456789abcdef"}),
            "UNKNOWN_MEDIA",
        ),
        (json!({"kind": "IMAGE", "ref": "not-a-ref"}), "UNKNOWN_MEDIA"),
        (json!({"kind": "IMAGE", "ref": pdf}), "MEDIA_TYPE_NOT_SUPPORTED"),
        (
            json!({"kind": "AUDIO", "link": link, "caption": "listen"}),
            "CAPTION_NOT_ALLOWED",
        ),
        (
            json!({"kind": "IMAGE", "link": link, "filename": "kit.jpg"}),
            "FILENAME_NOT_ALLOWED",
        ),
        (
            json!({"kind": "IMAGE", "link": link, "caption": "x".repeat(1025)}),
            "TEXT_TOO_LONG",
        ),
    ];
    for (i, (mut variables, expected)) in cases.into_iter().enumerate() {
        variables["id"] = json!(id);
        variables["key"] = json!(format!("bad-{i}"));
        assert_eq!(
            refused(&app, SEND_MEDIA, variables.clone()).await,
            expected,
            "{variables}"
        );
    }
    // An upload names its conversation: another conversation's upload is unknown here.
    let other = delivery(
        NUMBER,
        &[("263771000055", "Other")],
        vec![text_message(
            "263771000055",
            &wamid("263771000055", 1),
            chrono::Utc::now().timestamp(),
            "Hi",
        )],
        vec![],
    );
    app.post_delivery(&other).await;
    app.drain().await;
    app.project().await;
    let other_id: String = sqlx::query_scalar("SELECT conversation_id FROM conversations WHERE conversation_id <> $1")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let theirs = upload_ok(&app, &other_id, ("kit.png", "image/png", PNG)).await;
    assert_eq!(
        refused(
            &app,
            SEND_MEDIA,
            json!({"id": id, "kind": "IMAGE", "ref": theirs, "key": "theirs"})
        )
        .await,
        "UNKNOWN_MEDIA"
    );
    // Roles that do not work the inbox.
    for role in [Role::Auditor, Role::Finance, Role::Technician] {
        let reply = gql(
            &app,
            role,
            SEND_MEDIA,
            json!({"id": id, "kind": "IMAGE", "link": link, "key": "role"}),
        )
        .await;
        assert_eq!(code(&reply), "FORBIDDEN", "{role:?}: {reply}");
    }
    assert_eq!(app.count_events("OutboundMessageQueued").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM metered_actions").await, 0);
    // And a good one is charged once.
    let reply = gql(
        &app,
        Role::Agent,
        SEND_MEDIA,
        json!({"id": id, "kind": "DOCUMENT", "ref": pdf, "filename": "Quote.pdf", "key": "good"}),
    )
    .await;
    assert!(reply["errors"].is_null(), "{reply}");
    let balance = wallets
        .balances(&tenant("acme"), MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(balance.available, 9_000);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn each_upload_refusal_stores_nothing(pool: PgPool) {
    Box::pin(scenario_each_upload_refusal_stores_nothing(pool)).await;
}

async fn scenario_each_upload_refusal_stores_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 1).await;
    let cases: [(&str, File, &str); 4] = [
        (
            "an executable",
            ("setup.exe", "application/x-msdownload", b"MZ".to_vec()),
            "MEDIA_TYPE_NOT_SUPPORTED",
        ),
        (
            "a generic type with no type named",
            ("kit.bin", "application/octet-stream", PNG.to_vec()),
            "MEDIA_TYPE_NOT_SUPPORTED",
        ),
        ("an empty file", ("kit.png", "image/png", Vec::new()), "INVALID_INPUT"),
        (
            "a PNG over 5 MiB (images only)",
            ("big.png", "image/png", vec![7u8; 5 * 1024 * 1024 + 1]),
            "MEDIA_TOO_LARGE",
        ),
    ];
    for (what, (name, mime, bytes), expected) in &cases {
        let reply = upload_as(&app, Role::Agent, &id, (name, mime, bytes)).await;
        assert_eq!(code(&reply), *expected, "{what}: {reply}");
    }
    // Past 16 MiB a file is refused by its size; past the request's limit, while it is read.
    let token = app.token("acme", Role::Agent);
    let big = vec![7u8; 16 * 1024 * 1024 + 1];
    let reply = upload_as(&app, Role::Agent, &id, ("big.pdf", "application/pdf", &big)).await;
    assert_eq!(code(&reply), "MEDIA_TOO_LARGE", "{reply}");
    let huge = vec![7u8; 17 * 1024 * 1024 + 1];
    let (status, reply) = Box::pin(app.graphql_upload(
        &token,
        UPLOAD,
        json!({"id": id}),
        ("huge.pdf", "application/pdf", &huge),
    ))
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
    assert_eq!(code(&reply), "PAYLOAD_TOO_LARGE", "{reply}");
    let reply = upload_as(&app, Role::Agent, "ct_nobody", ("kit.png", "image/png", PNG)).await;
    assert_eq!(code(&reply), "UNKNOWN_CONVERSATION", "{reply}");
    let reply = upload_as(&app, Role::Agent, "not-a-conversation", ("kit.png", "image/png", PNG)).await;
    assert_eq!(code(&reply), "BAD_CONVERSATION_ID", "{reply}");
    // A role that may not upload has no multipart body read at all.
    let auditor = app.token("acme", Role::Auditor);
    let (status, reply) =
        Box::pin(app.graphql_upload(&auditor, UPLOAD, json!({"id": id}), ("kit.png", "image/png", PNG))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    assert_eq!(code(&reply), "FORBIDDEN", "{reply}");
    assert_eq!(app.count_events("MediaUploaded").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM media_blobs").await, 0);
    // A generic part with its type named by the caller is taken.
    let (status, reply) = Box::pin(app.graphql_upload(
        &token,
        UPLOAD,
        json!({"id": id, "mime": "image/png"}),
        ("kit.bin", "application/octet-stream", PNG),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert!(reply["errors"].is_null(), "{reply}");
    assert_eq!(app.count_events("MediaUploaded").await, 1);
    // A video of exactly 16 MiB is taken.
    let video = vec![0u8; 16 * 1024 * 1024];
    let reply = upload_as(&app, Role::Agent, &id, ("clip.mp4", "video/mp4", &video)).await;
    assert!(reply["errors"].is_null(), "{reply}");
    assert_eq!(app.count_events("MediaUploaded").await, 2);
}

const UPLOAD_WITH_KEY: &str = "mutation($id: String!, $file: Upload!, $key: String) {
  uploadMedia(conversationId: $id, file: $file, idempotencyKey: $key) { id }
}";

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_upload_retried_with_its_key_stores_once_and_a_send_retried_with_its_key_charges_once(pool: PgPool) {
    Box::pin(scenario_retries(pool)).await;
}

async fn scenario_retries(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 1).await;
    let token = app.token("acme", Role::Agent);
    let mut refs = Vec::new();
    for _ in 0..2 {
        let (_, reply) = Box::pin(app.graphql_upload(
            &token,
            UPLOAD_WITH_KEY,
            json!({"id": id, "key": "photo-upload-1"}),
            ("kit.png", "image/png", PNG),
        ))
        .await;
        assert!(reply["errors"].is_null(), "{reply}");
        refs.push(
            reply["data"]["uploadMedia"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(refs[0], refs[1]);
    assert_eq!(app.count_events("MediaUploaded").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM media_blobs").await, 1);
    let (_, reply) = Box::pin(app.graphql_upload(
        &token,
        UPLOAD_WITH_KEY,
        json!({"id": id, "key": "photo-upload-1"}),
        ("other.png", "image/png", b"\x89PNG other bytes"),
    ))
    .await;
    assert_eq!(code(&reply), "MEDIA_ALREADY_STORED", "{reply}");
    assert_eq!(app.count_events("MediaUploaded").await, 1);

    let wallets = metered(&app).await;
    for _ in 0..2 {
        let reply = gql(
            &app,
            Role::Agent,
            SEND_MEDIA,
            json!({"id": id, "kind": "IMAGE", "ref": refs[0], "key": "photo-1"}),
        )
        .await;
        assert!(reply["errors"].is_null(), "{reply}");
        let reply = gql(
            &app,
            Role::Agent,
            SEND_INTERACTIVE,
            json!({"id": id, "body": "Pick", "buttons": buttons(2), "key": "days-1"}),
        )
        .await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
    assert_eq!(app.count_events("OutboundMessageQueued").await, 2);
    let balance = wallets
        .balances(&tenant("acme"), MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(balance.available, 8_000);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn erasing_the_contact_clears_what_the_thread_shows_of_its_media_and_choices(pool: PgPool) {
    Box::pin(scenario_erasure(pool)).await;
}

async fn scenario_erasure(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 1).await;
    let media_ref = upload_ok(&app, &id, ("kit.png", "image/png", PNG)).await;
    let link = "https://files.example.com/kit.jpg";
    for (query, variables) in [
        (
            SEND_MEDIA,
            json!({"id": id, "kind": "IMAGE", "ref": media_ref, "caption": "Your kit", "key": "m-1"}),
        ),
        (
            SEND_MEDIA,
            json!({"id": id, "kind": "IMAGE", "link": link, "key": "m-2"}),
        ),
        (
            SEND_INTERACTIVE,
            json!({"id": id, "body": "Pick a day", "buttons": buttons(2), "key": "i-1"}),
        ),
    ] {
        let reply = gql(&app, Role::Agent, query, variables).await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
    app.project().await;
    assert_eq!(
        app.count("SELECT count(*) FROM messages WHERE attachment IS NOT NULL")
            .await,
        3
    );
    let reply = gql(
        &app,
        Role::Owner,
        "mutation($id: String!) { eraseContact(contactId: $id) { id } }",
        json!({"id": id}),
    )
    .await;
    assert!(reply["errors"].is_null(), "{reply}");
    app.project().await;
    assert_eq!(
        app.count("SELECT count(*) FROM messages WHERE attachment IS NOT NULL OR content LIKE '%kit%' OR content LIKE '%Pick%'")
            .await,
        0
    );
    let (status, _) = app
        .send(
            Request::get(format!("/media/{media_ref}"))
                .header("authorization", format!("Bearer {}", app.token("acme", Role::Agent)))
                .body(axum::body::Body::empty())
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await;
    assert_eq!(status, StatusCode::GONE);
    // The messages still queued are not sent: nothing can be opened.
    let graph = Graph::default();
    let base = graph.serve().await;
    send_all(&app, &base).await;
    assert!(graph.seen().is_empty(), "{:?}", graph.seen());
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn each_interactive_refusal_is_named_after_its_rule_and_nothing_is_queued(pool: PgPool) {
    Box::pin(scenario_each_interactive_refusal_is_named_after_its_rule_and_nothing_is_queued(pool)).await;
}

async fn scenario_each_interactive_refusal_is_named_after_its_rule_and_nothing_is_queued(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 1).await;
    let one_row = |n: usize| json!({"button": "Kits", "sections": [{"rows": (0..n).map(|i| json!({"id": format!("r{i}"), "title": format!("Row {i}")})).collect::<Vec<_>>()}]});
    let twice = json!([{"id": "a", "title": "Monday"}, {"id": "a", "title": "Tuesday"}]);
    let cases = [
        (json!({"body": "Pick"}), "INVALID_INPUT"),
        (
            json!({"body": "Pick", "buttons": buttons(1), "list": one_row(1)}),
            "INVALID_INPUT",
        ),
        (json!({"body": "Pick", "buttons": []}), "NO_CHOICES"),
        (json!({"body": "Pick", "list": one_row(0)}), "NO_CHOICES"),
        (json!({"body": "Pick", "buttons": buttons(4)}), "TOO_MANY_BUTTONS"),
        (json!({"body": "Pick", "list": one_row(11)}), "TOO_MANY_LIST_ROWS"),
        (json!({"body": "Pick", "buttons": twice}), "DUPLICATE_CHOICE"),
        (json!({"body": "  ", "buttons": buttons(1)}), "BLANK_FIELD"),
        (
            json!({"body": "Pick", "buttons": [{"id": "a", "title": "x".repeat(21)}]}),
            "TEXT_TOO_LONG",
        ),
        (
            json!({"body": "Pick", "header": "x".repeat(61), "buttons": buttons(1)}),
            "TEXT_TOO_LONG",
        ),
    ];
    for (i, (mut variables, expected)) in cases.into_iter().enumerate() {
        variables["id"] = json!(id);
        variables["key"] = json!(format!("bad-{i}"));
        assert_eq!(
            refused(&app, SEND_INTERACTIVE, variables.clone()).await,
            expected,
            "{variables}"
        );
    }
    let reply = gql(
        &app,
        Role::Auditor,
        SEND_INTERACTIVE,
        json!({"id": id, "body": "Pick", "buttons": buttons(1), "key": "role"}),
    )
    .await;
    assert_eq!(code(&reply), "FORBIDDEN", "{reply}");
    assert_eq!(app.count_events("OutboundMessageQueued").await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_upload_whatsapp_refuses_fails_the_message_and_one_it_could_not_take_is_tried_again(pool: PgPool) {
    Box::pin(scenario_an_upload_whatsapp_refuses_fails_the_message_and_one_it_could_not_take_is_tried_again(pool))
        .await;
}

async fn scenario_an_upload_whatsapp_refuses_fails_the_message_and_one_it_could_not_take_is_tried_again(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let unavailable = json!({"error": {"message": "Service temporarily unavailable", "code": 2}});
    let refusal = json!({"error": {"message": "(#100) Param file must be a file with one of the following types",
                                   "code": 100, "error_data": {"details": "unsupported file"}}});
    let graph = Graph::scripted(vec![(503, unavailable), (400, refusal)]);
    let base = graph.serve().await;
    let id = conversation(&app, 1).await;
    let wallets = metered(&app).await;
    let first = upload_ok(&app, &id, ("kit.png", "image/png", PNG)).await;
    let reply = gql(
        &app,
        Role::Agent,
        SEND_MEDIA,
        json!({"id": id, "kind": "IMAGE", "ref": first, "key": "photo-1"}),
    )
    .await;
    assert!(reply["errors"].is_null(), "{reply}");
    send_all(&app, &base).await;
    // 503: nothing reached the customer, tried again; 400: refused, recorded, not retried.
    let uploads = graph.seen().iter().filter(|s| matches!(s, Seen::Upload { .. })).count();
    assert_eq!(uploads, 2);
    assert!(graph.messages().is_empty());
    let shown = message_with_key(&app, &id, "photo-1").await;
    assert_eq!(shown["state"], "failed", "{shown}");
    assert_eq!(app.count_events("OutboundSendRetried").await, 1);
    assert_eq!(app.count_events("OutboundMessageFailed").await, 1);
    let (code, title): (Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT (payload -> 'OutboundMessageFailed' ->> 'code')::bigint, payload -> 'OutboundMessageFailed' ->> 'title'
           FROM events WHERE event_type = 'OutboundMessageFailed'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, Some(100));
    assert!(title.unwrap_or_default().contains("unsupported file"));
    // The message WhatsApp refused is refunded.
    let balance = wallets
        .balances(&tenant("acme"), MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(balance.available, 10_000);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_file_reference_that_is_not_a_number_is_a_bad_request_not_a_crash(pool: PgPool) {
    Box::pin(scenario_a_file_reference_that_is_not_a_number_is_a_bad_request_not_a_crash(pool)).await;
}

async fn scenario_a_file_reference_that_is_not_a_number_is_a_bad_request_not_a_crash(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 1).await;
    let token = app.token("acme", Role::Agent);
    // In the variables, and written in the document itself.
    let (_, reply) =
        Box::pin(app.graphql(Some(&token), UPLOAD, json!({"id": id, "file": "#__graphql_file__:abc"}))).await;
    assert_eq!(code(&reply), "BAD_REQUEST", "{reply}");
    let literal =
        format!("mutation {{ uploadMedia(conversationId: \"{id}\", file: \"#__graphql_file__:0x\") {{ id }} }}");
    let (_, reply) = Box::pin(app.graphql(Some(&token), &literal, json!({}))).await;
    assert_eq!(code(&reply), "BAD_REQUEST", "{reply}");
    // A JSON request naming a file it does not carry.
    let (_, reply) =
        Box::pin(app.graphql(Some(&token), UPLOAD, json!({"id": id, "file": "#__graphql_file__:0"}))).await;
    assert_eq!(code(&reply), "INVALID_INPUT", "{reply}");
    assert_eq!(app.count_events("MediaUploaded").await, 0);
}
