//! The WhatsApp Cloud API sandbox of development mode: a stand-in for Meta's Graph API, served
//! by Chronicle itself on loopback, so the whole loop (message in, reply out, statuses back,
//! campaigns, call follow-ups, inbound media) works on one machine with no network.
//!
//! It is on only in development mode (no `DATABASE_URL`) when no Graph API is configured
//! (`WHATSAPP_GRAPH_BASE_URL` unset, or set to `sandbox`); production refuses `sandbox` at
//! start. When on, the sender and the media fetcher use `http://<loopback>:<port>` +
//! [`GRAPH_PATH`] as their Graph API base, and the routes below are mounted:
//!
//! | route | answers like |
//! |---|---|
//! | `POST /sandbox/graph/v21.0/{phone_number_id}/messages` | the Cloud API's send (text, template, media by id or link, reply buttons, lists): a `wamid`, or the documented error of a number configured to fail |
//! | `POST /sandbox/graph/v21.0/{phone_number_id}/media` | the media upload (multipart): the file's id |
//! | `POST /sandbox/graph/v21.0/{waba_id}/message_templates` | a template's submission: its id, PENDING; a moment later its review comes back as a signed `message_template_status_update` (REJECTED with `INVALID_FORMAT` when the name starts with `reject`, APPROVED otherwise) |
//! | `GET /sandbox/graph/v21.0/{media_id}` | the media URL lookup (`url`, `mime_type`, `sha256`, `file_size`) |
//! | `GET /sandbox/media/{media_id}` | the media download |
//! | `POST /sandbox/inbound` | (Chronicle's own) a customer writing in, as a signed webhook delivery |
//!
//! After accepting a message it delivers the statuses `sent`, `delivered` and `read` to
//! Chronicle's own `POST /webhooks/whatsapp`, signed with the app secret as Meta signs them, a
//! moment apart. Recipients whose number ends in one of the codes of [`FAILURES`] are refused
//! with that code (e.g. `+263 77 013 1047` fails with 131047, outside the 24-hour window),
//! so failure paths (recorded failure, refund of a metered send) can be tried too. Media the
//! sandbox did not receive (say the demo's) is served as a small placeholder image.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::config::Secret;
use crate::error::ApiError;
use crate::http::graphql::Authenticated;
use crate::permissions::Permission;

/// The Graph API base path the sandbox answers under (the sender appends `/{number}/messages`).
pub const GRAPH_PATH: &str = "/sandbox/graph/v21.0";

/// Numbers configured to fail: a recipient whose digits end in the code gets the Cloud API's
/// documented error for it (HTTP 400): code, title, details.
pub const FAILURES: [(i64, &str, &str); 3] = [
    (
        131026,
        "Message undeliverable",
        "Unable to deliver message. Reasons can include: the recipient phone number is not a WhatsApp phone number.",
    ),
    (
        131047,
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
    ),
    (
        131049,
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    ),
];

/// A 1×1 PNG, served for media the sandbox never received.
const PLACEHOLDER_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d,
    0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The sandbox: where it is, whom it calls back, what media it holds.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    /// `http://<loopback>:<port>`: Chronicle's own listener.
    origin: String,
    app_secret: Secret,
    access_token: Secret,
    http: reqwest::Client,
    media: Mutex<HashMap<String, (String, Vec<u8>)>>,
    counter: AtomicU64,
    status_gap: Duration,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

/// Why the sandbox refused to play an inbound message.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the tenant has no WhatsApp number mapped (chronicle admin map-number)")]
    NoNumber,
    #[error("{0}")]
    BadInput(String),
    #[error("Chronicle's webhook refused the delivery: {0}")]
    Webhook(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::NoNumber => ApiError::bad_request("NO_WHATSAPP_NUMBER", e.to_string()),
            SandboxError::BadInput(m) => ApiError::bad_request("BAD_SANDBOX_INPUT", m),
            SandboxError::Webhook(m) => ApiError::Unavailable(m),
            SandboxError::Database(e) => ApiError::from(e),
        }
    }
}

/// A customer writing in.
#[derive(Debug, Clone, Deserialize)]
pub struct Inbound {
    /// The customer's number (E.164, `+` optional).
    pub from: String,
    /// Their WhatsApp profile name.
    #[serde(default)]
    pub name: Option<String>,
    /// The text, or an image's caption.
    #[serde(default)]
    pub text: Option<String>,
    /// An image's bytes, base64.
    #[serde(default)]
    pub image_base64: Option<String>,
    /// The image's type (default `image/jpeg`).
    #[serde(default)]
    pub mime_type: Option<String>,
}

/// `http://<address>:<port>` of a server listening on `bind`, as this machine reaches it (an
/// unspecified bind address is reached on loopback).
pub fn local_origin(bind: SocketAddr) -> String {
    let host = match bind.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    format!("http://{host}:{}", bind.port())
}

impl Sandbox {
    /// The sandbox of a server listening on `bind`, calling its webhook back with `app_secret`
    /// and accepting `access_token` as the Graph API's token.
    pub fn new(bind: SocketAddr, app_secret: Secret, access_token: Secret) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| anyhow::anyhow!("building the sandbox's HTTP client: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                origin: local_origin(bind),
                app_secret,
                access_token,
                http,
                media: Mutex::new(HashMap::new()),
                counter: AtomicU64::new(0),
                status_gap: Duration::from_millis(300),
            }),
        })
    }

    /// The Graph API base URL the sender and the media fetcher use.
    pub fn graph_base_url(&self) -> String {
        format!("{}{GRAPH_PATH}", self.inner.origin)
    }

    fn next_id(&self, prefix: &str) -> String {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let nonce: u32 = rand::random();
        format!("{prefix}{n}.{nonce:08x}")
    }

    /// Posts a Graph webhook body to Chronicle's own `/webhooks/whatsapp`, signed with the app
    /// secret, and returns Chronicle's answer.
    async fn deliver(&self, value: Value) -> Result<(), SandboxError> {
        self.deliver_change("sandbox-waba", "messages", value).await
    }

    /// Posts one change (`field`, `value`) of the account `waba_id`, signed, to Chronicle's own
    /// webhook.
    async fn deliver_change(&self, waba_id: &str, field: &str, value: Value) -> Result<(), SandboxError> {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": waba_id,
            "time": chrono::Utc::now().timestamp(), "changes": [{"field": field, "value": value}]}]});
        let bytes = serde_json::to_vec(&body).map_err(|e| SandboxError::BadInput(e.to_string()))?;
        let signature = chronicle_commands::intake::whatsapp::sign(self.inner.app_secret.expose().as_bytes(), &bytes);
        let response = self
            .inner
            .http
            .post(format!("{}/webhooks/whatsapp", self.inner.origin))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(bytes)
            .send()
            .await
            .map_err(|e| SandboxError::Webhook(e.to_string()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            Err(SandboxError::Webhook(format!("{status}: {text}")))
        }
    }

    /// Plays `inbound` arriving at the tenant's WhatsApp number: a signed delivery to
    /// Chronicle's own webhook. Returns the message's `wamid`.
    pub async fn inbound(&self, pool: &sqlx::PgPool, tenant: &str, inbound: Inbound) -> Result<String, SandboxError> {
        let from: String = inbound.from.chars().filter(char::is_ascii_digit).collect();
        if from.len() < 8 || from.len() > 15 {
            return Err(SandboxError::BadInput(format!(
                "{:?} is not a phone number (8 to 15 digits, E.164)",
                inbound.from
            )));
        }
        let number: Option<String> = sqlx::query_scalar(
            "SELECT phone_number_id FROM whatsapp_numbers WHERE tenant_id = $1 ORDER BY mapped_at, phone_number_id LIMIT 1",
        )
        .bind(tenant)
        .fetch_optional(pool)
        .await?;
        let number = number.ok_or(SandboxError::NoNumber)?;
        let id = self.next_id("wamid.sandbox.in.");
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let mut message = json!({"from": from, "id": id, "timestamp": timestamp});
        match (&inbound.image_base64, &inbound.text) {
            (Some(image), caption) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(image.trim())
                    .map_err(|e| SandboxError::BadInput(format!("the image is not base64: {e}")))?;
                if bytes.is_empty() || bytes.len() > 5 * 1024 * 1024 {
                    return Err(SandboxError::BadInput("an image is 1 byte to 5 MiB".into()));
                }
                let mime = inbound.mime_type.clone().unwrap_or_else(|| "image/jpeg".into());
                let media_id = self.next_id("sandbox-media-");
                let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
                self.inner
                    .media
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(media_id.clone(), (mime.clone(), bytes));
                message["type"] = json!("image");
                message["image"] = json!({"id": media_id, "mime_type": mime, "sha256": sha});
                if let Some(caption) = caption {
                    if caption.chars().count() > 1024 {
                        return Err(SandboxError::BadInput(
                            "an image caption is at most 1024 characters".into(),
                        ));
                    }
                    message["image"]["caption"] = json!(caption);
                }
            }
            (None, Some(text)) if !text.trim().is_empty() => {
                if text.chars().count() > 4096 {
                    return Err(SandboxError::BadInput(
                        "a WhatsApp text is at most 4096 characters".into(),
                    ));
                }
                message["type"] = json!("text");
                message["text"] = json!({"body": text});
            }
            _ => return Err(SandboxError::BadInput("give a text or an image".into())),
        }
        let name = inbound
            .name
            .clone()
            .unwrap_or_else(|| format!("Sandbox {}", &from[from.len() - 4..]));
        self.deliver(json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": number},
            "contacts": [{"profile": {"name": name}, "wa_id": from}],
            "messages": [message],
        }))
        .await?;
        Ok(id)
    }

    /// Delivers sent, delivered and read for an accepted message, a moment apart.
    fn play_statuses(&self, number: String, to: String, wamid: String) {
        let sandbox = self.clone();
        tokio::spawn(async move {
            for status in ["sent", "delivered", "read"] {
                tokio::time::sleep(sandbox.inner.status_gap).await;
                let value = json!({
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550000000", "phone_number_id": number},
                    "statuses": [{"id": wamid, "status": status, "timestamp": chrono::Utc::now().timestamp().to_string(),
                                  "recipient_id": to}],
                });
                let mut delivered = false;
                for attempt in 1..=3u64 {
                    match sandbox.deliver(value.clone()).await {
                        Ok(()) => {
                            delivered = true;
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, attempt, status, "sandbox: status callback not taken; retrying");
                            tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                        }
                    }
                }
                if !delivered {
                    tracing::error!(status, "sandbox: status callback given up");
                    return;
                }
            }
        });
    }

    /// Decides a submitted template a moment later, as Meta's review would: rejected
    /// (`INVALID_FORMAT`) when its name starts with `reject`, approved otherwise; delivered as a
    /// signed `message_template_status_update` of the account.
    fn review_template(&self, waba_id: String, template_id: String, name: String, language: String) {
        let sandbox = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(sandbox.inner.status_gap).await;
            let rejected = name.starts_with("reject");
            let value = json!({
                "event": if rejected { "REJECTED" } else { "APPROVED" },
                "message_template_id": template_id,
                "message_template_name": name,
                "message_template_language": language,
                "reason": if rejected { "INVALID_FORMAT" } else { "NONE" },
            });
            for attempt in 1..=3u64 {
                match sandbox
                    .deliver_change(&waba_id, "message_template_status_update", value.clone())
                    .await
                {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, attempt, "sandbox: template review not taken; retrying");
                        tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                    }
                }
            }
            tracing::error!("sandbox: template review given up");
        });
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::auth::bearer)
            .unwrap_or_default();
        chronicle_domain::crypto::constant_time_eq(presented.as_bytes(), self.inner.access_token.expose().as_bytes())
    }
}

/// A Graph API error body.
fn graph_error(status: StatusCode, code: i64, title: &str, details: &str) -> Response {
    let body = json!({"error": {
        "message": format!("(#{code}) {title}"),
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details},
        "fbtrace_id": "sandbox",
    }});
    (status, Json(body)).into_response()
}

/// Who may play a customer writing in: the roles that work the inbox (owner, admin, agent).
pub fn may_play_inbound(caller: &crate::auth::Caller) -> bool {
    caller.may(Permission::ReadInbox) && caller.may(Permission::WriteContacts)
}

/// The Graph API's answer to a request without the access token.
fn unauthorized() -> Response {
    graph_error(
        StatusCode::UNAUTHORIZED,
        190,
        "Invalid OAuth access token",
        "Invalid OAuth access token - Cannot parse access token",
    )
}

/// The sandbox's routes (mounted by `crate::http::router` only when the sandbox is on).
pub fn router() -> Router<AppState> {
    Router::new()
        .route(&format!("{GRAPH_PATH}/{{number}}/messages"), post(send))
        // The account's id sits where a number's does (one route parameter per position).
        .route(
            &format!("{GRAPH_PATH}/{{number}}/message_templates"),
            post(submit_template),
        )
        .route(&format!("{GRAPH_PATH}/{{media_id}}"), get(describe_media))
        .route("/sandbox/media/{media_id}", get(download_media))
        .route("/sandbox/inbound", post(play_inbound))
}

/// The sandbox's media upload route, mounted apart from the others by `crate::http::router`:
/// it takes bodies as large as Chronicle's own uploads.
pub fn upload_router() -> Router<AppState> {
    Router::new().route(&format!("{GRAPH_PATH}/{{number}}/media"), post(upload_media))
}

/// The answer of a sandbox route when the sandbox is off (the routes are not mounted then).
fn off() -> Response {
    (StatusCode::NOT_FOUND, "the WhatsApp sandbox is off").into_response()
}

async fn send(State(state): State<AppState>, Path(number): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(sandbox) = state.sandbox.as_ref() else {
        return off();
    };
    if !sandbox.authorized(&headers) {
        return unauthorized();
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            "Invalid parameter",
            "The request body is not JSON.",
        );
    };
    // A read receipt (marking a conversation read): accepted as the Graph API does.
    if payload["messaging_product"] == "whatsapp" && payload["status"] == "read" {
        return if payload["message_id"].as_str().is_some_and(|id| !id.is_empty()) {
            Json(json!({"success": true})).into_response()
        } else {
            graph_error(
                StatusCode::BAD_REQUEST,
                100,
                "Invalid parameter",
                "A read receipt names the message_id it marks read.",
            )
        };
    }
    let to: String = payload["to"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let kind = payload["type"].as_str().unwrap_or_default();
    if payload["messaging_product"] != "whatsapp" || to.is_empty() || !SENDABLE.contains(&kind) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            "Invalid parameter",
            "messaging_product must be whatsapp, `to` a phone number and `type` text, template, image, audio, video, document, sticker or interactive.",
        );
    }
    if let Some(problem) = refusal_of(kind, &payload) {
        return graph_error(StatusCode::BAD_REQUEST, 100, "Invalid parameter", problem);
    }
    if let Some((code, title, details)) = FAILURES.iter().find(|(code, _, _)| to.ends_with(&code.to_string())) {
        return graph_error(StatusCode::BAD_REQUEST, *code, title, details);
    }
    let wamid = sandbox.next_id("wamid.sandbox.out.");
    sandbox.play_statuses(number, to.clone(), wamid.clone());
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": payload["to"], "wa_id": to}],
        "messages": [{"id": wamid}],
    }))
    .into_response()
}

/// `POST {GRAPH_PATH}/{waba_id}/message_templates`: the template submission, answered like
/// Meta (`id`, `status: PENDING`, `category`), then reviewed a moment later
/// ([`Sandbox::review_template`]).
async fn submit_template(
    State(state): State<AppState>,
    Path(waba_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(sandbox) = state.sandbox.as_ref() else {
        return off();
    };
    if !sandbox.authorized(&headers) {
        return unauthorized();
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            "Invalid parameter",
            "The request body is not JSON.",
        );
    };
    let text = |name: &str| payload[name].as_str().filter(|v| !v.is_empty()).map(str::to_string);
    let has_body = payload["components"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "BODY" && c["text"].as_str().is_some_and(|t| !t.is_empty()))
    });
    let (Some(name), Some(language), Some(category)) = (text("name"), text("language"), text("category")) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            "Invalid parameter",
            "A template has a name, a language and a category.",
        );
    };
    if !has_body {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            "Invalid parameter",
            "A template has a BODY component.",
        );
    }
    let id = sandbox.next_id("sandbox-tpl-");
    sandbox.review_template(waba_id, id.clone(), name, language);
    Json(json!({"id": id, "status": "PENDING", "category": category})).into_response()
}

/// The message types the sandbox accepts.
const SENDABLE: [&str; 8] = [
    "text",
    "template",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "interactive",
];

/// What the Cloud API would refuse in a media or interactive message's object, or `None`: a
/// media object names its file by `id` (one the sandbox received) or `link`; an interactive
/// message is `button` (1 to 3 replies) or `list` (1 to 10 rows) with a body.
fn refusal_of(kind: &str, payload: &Value) -> Option<&'static str> {
    match kind {
        "image" | "audio" | "video" | "document" | "sticker" => {
            let object = &payload[kind];
            let has_id = object["id"].as_str().is_some_and(|id| !id.is_empty());
            let has_link = object["link"].as_str().is_some_and(|l| l.starts_with("http"));
            (has_id == has_link).then_some("A media message names its file by `id` or by `link`, not both.")
        }
        "interactive" => {
            let interactive = &payload["interactive"];
            let body = interactive["body"]["text"]
                .as_str()
                .is_some_and(|t| !t.trim().is_empty());
            let count = |v: &Value| v.as_array().map_or(0, Vec::len);
            let choices_ok = match interactive["type"].as_str() {
                Some("button") => (1..=3).contains(&count(&interactive["action"]["buttons"])),
                Some("list") => {
                    let rows: usize = interactive["action"]["sections"]
                        .as_array()
                        .map_or(0, |sections| sections.iter().map(|s| count(&s["rows"])).sum());
                    (1..=10).contains(&rows)
                }
                _ => false,
            };
            (!(body && choices_ok)).then_some(
                "An interactive message has a body and 1 to 3 reply buttons (`button`) or 1 to 10 rows (`list`).",
            )
        }
        _ => None,
    }
}

/// `POST {GRAPH_PATH}/{number}/media`: the Cloud API's media upload (multipart: `messaging_product`,
/// `type`, `file`). Keeps the file (served back by its id, like inbound media) and answers its id.
async fn upload_media(
    State(state): State<AppState>,
    Path(_number): Path<String>,
    headers: HeaderMap,
    mut form: axum::extract::Multipart,
) -> Response {
    let Some(sandbox) = state.sandbox.as_ref() else {
        return off();
    };
    if !sandbox.authorized(&headers) {
        return unauthorized();
    }
    let mut product = None;
    let mut file: Option<(String, Vec<u8>)> = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_string();
                let content_type = field.content_type().unwrap_or("application/octet-stream").to_string();
                let Ok(bytes) = field.bytes().await else {
                    return graph_error(
                        StatusCode::BAD_REQUEST,
                        100,
                        "Invalid parameter",
                        "A part could not be read.",
                    );
                };
                match name.as_str() {
                    "messaging_product" => product = Some(String::from_utf8_lossy(&bytes).to_string()),
                    "file" => file = Some((content_type, bytes.to_vec())),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(_) => {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    100,
                    "Invalid parameter",
                    "The body is not multipart form data.",
                )
            }
        }
    }
    let (Some("whatsapp"), Some((mime, bytes))) = (product.as_deref(), file) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            "Invalid parameter",
            "An upload has messaging_product=whatsapp and a `file` part.",
        );
    };
    if bytes.is_empty() {
        return graph_error(StatusCode::BAD_REQUEST, 100, "Invalid parameter", "The file is empty.");
    }
    let media_id = sandbox.next_id("sandbox.media.");
    sandbox
        .inner
        .media
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(media_id.clone(), (mime, bytes));
    Json(json!({"id": media_id})).into_response()
}

fn media_of(sandbox: &Sandbox, media_id: &str) -> (String, Vec<u8>) {
    sandbox
        .inner
        .media
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(media_id)
        .cloned()
        .unwrap_or_else(|| ("image/png".to_string(), PLACEHOLDER_PNG.to_vec()))
}

async fn describe_media(State(state): State<AppState>, Path(media_id): Path<String>, headers: HeaderMap) -> Response {
    let Some(sandbox) = state.sandbox.as_ref() else {
        return off();
    };
    if !sandbox.authorized(&headers) {
        return unauthorized();
    }
    let (mime, bytes) = media_of(sandbox, &media_id);
    Json(json!({
        "messaging_product": "whatsapp",
        "url": format!("{}/sandbox/media/{media_id}", sandbox.inner.origin),
        "mime_type": mime,
        "sha256": hex::encode(Sha256::digest(&bytes)),
        "file_size": bytes.len(),
        "id": media_id,
    }))
    .into_response()
}

async fn download_media(State(state): State<AppState>, Path(media_id): Path<String>, headers: HeaderMap) -> Response {
    let Some(sandbox) = state.sandbox.as_ref() else {
        return off();
    };
    if !sandbox.authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "the sandbox's media needs the access token").into_response();
    }
    let (mime, bytes) = media_of(sandbox, &media_id);
    let content_type = HeaderValue::from_str(&mime).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
}

async fn play_inbound(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Json(inbound): Json<Inbound>,
) -> Response {
    let Some(sandbox) = state.sandbox.as_ref() else {
        return off();
    };
    if !may_play_inbound(&caller) {
        return ApiError::Forbidden(format!(
            "the {} role cannot play sandbox messages",
            caller.role.as_str()
        ))
        .into_response();
    }
    match sandbox.inbound(&state.pool, caller.tenant.as_str(), inbound).await {
        Ok(id) => Json(json!({"messageId": id})).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
