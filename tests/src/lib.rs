//! Cross-crate integration, fault and end-to-end tests against real PostgreSQL and Redis. This
//! library is the harness they share: an application over a test's fresh database, with fixed
//! secrets, requests sent in-process, and a real server on a loopback port for WebSockets.

#![forbid(unsafe_code)]

pub mod ws;

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chronicle_api::app::{application_pool, build_state, projectors, router, AppState};
use chronicle_api::auth::{mint, Role};
use chronicle_api::config::Settings;
use chronicle_commands::intake::whatsapp::sign;
use chronicle_commands::outbound::whatsapp::{SenderConfig, WhatsAppSender};
use chronicle_commands::tenants;
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::tenant::TenantId;
use chronicle_projections::runtime::{ProjectorRunner, RunnerConfig};
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;

/// The app secret deliveries are signed with in tests.
pub const APP_SECRET: &str = "test-app-secret";
/// The webhook verification token in tests.
pub const VERIFY_TOKEN: &str = "test-verify-token";
/// The JWT secret in tests.
pub const JWT_SECRET: &str = "test-jwt-secret-test-jwt-secret-0123";
/// The master key in tests (base64 of 32 bytes).
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// An application over one test database.
pub struct TestApp {
    pub pool: PgPool,
    pub state: AppState,
    /// Who [`TestApp::token`] names per (tenant, role): `user-1` unless [`TestApp::act_as`]
    /// chose a user of the directory.
    acting: std::sync::Mutex<std::collections::HashMap<(String, &'static str), String>>,
}

/// Settings of a test app (`redis`: whether to use the REDIS_URL of scripts/services.sh).
pub fn settings(redis: bool) -> Settings {
    let redis_url = if redis { std::env::var("REDIS_URL").ok() } else { None };
    Settings::from_lookup(move |name| match name {
        "DATABASE_URL" => Some("postgres://unused-in-tests".into()),
        "REDIS_URL" => redis_url.clone(),
        "CHRONICLE_JWT_SECRET" => Some(JWT_SECRET.into()),
        "CHRONICLE_MASTER_KEY" => Some(MASTER_KEY.into()),
        "WHATSAPP_APP_SECRET" => Some(APP_SECRET.into()),
        "WHATSAPP_VERIFY_TOKEN" => Some(VERIFY_TOKEN.into()),
        "CHRONICLE_BIND" => Some("127.0.0.1:0".into()),
        // Receivers in tests are on loopback; quick retries keep webhook tests short.
        "CHRONICLE_WEBHOOKS_ALLOW_PRIVATE" => Some("1".into()),
        "CHRONICLE_WEBHOOK_BACKOFF_MS" => Some("50".into()),
        "CHRONICLE_WEBHOOK_MAX_BACKOFF_MS" => Some("400".into()),
        "CHRONICLE_WEBHOOK_MAX_ATTEMPTS" => Some("5".into()),
        "CHRONICLE_WEBHOOK_TIMEOUT_MS" => Some("3000".into()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("test settings: {e}"))
}

/// The `extensions.code` of a GraphQL reply's first error ("" when there is none).
pub fn error_code(reply: &serde_json::Value) -> &str {
    reply["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

/// The message of the first GraphQL error of a reply (empty when there is none).
pub fn error_message(reply: &serde_json::Value) -> &str {
    reply["errors"][0]["message"].as_str().unwrap_or("")
}

/// A sender's configuration for tests: `base_url`, `token`, retries without delay.
pub fn sender_config(base_url: &str, token: &str) -> SenderConfig {
    let mut config = SenderConfig::new(base_url, token);
    config.backoff = std::time::Duration::ZERO;
    config
}

/// A sealed-looking personal field, for write-side tests whose commands never open it.
pub fn placeholder_envelope() -> chronicle_domain::pii::Envelope {
    chronicle_domain::pii::Envelope {
        enc: "aes256gcm.v1".into(),
        nonce: "bm9uY2U".into(),
        ciphertext: "Y2lwaGVy".into(),
    }
}

/// An inbound WhatsApp text from `contact` with the message ref `id`, sent `second` seconds
/// after a fixed instant (2026-09-21), every personal field a [`placeholder_envelope`].
pub fn inbound_message(id: &str, contact: &str, second: i64) -> chronicle_domain::conversation::ConversationCommand {
    use chrono::TimeZone as _;
    chronicle_domain::conversation::ConversationCommand::ReceiveMessage(
        chronicle_domain::conversation::InboundMessage {
            message_ref: id.into(),
            provider_message_id: placeholder_envelope(),
            contact_id: contact.into(),
            business_number_id: "pn".into(),
            contact_phone: placeholder_envelope(),
            contact_name: None,
            kind: chronicle_domain::conversation::MessageKind::Text,
            content: Some(placeholder_envelope()),
            sent_at: chrono::Utc
                .timestamp_opt(1_790_000_000 + second, 0)
                .single()
                .unwrap_or_default(),
        },
    )
}

/// The metadata of a command sent by the system component `test` in `tenant_id`.
pub fn system_metadata(tenant_id: &str) -> CommandMetadata {
    CommandMetadata {
        tenant_id: tenant(tenant_id),
        actor: Actor::System {
            component: "test".into(),
        },
        correlation_id: "test".into(),
        causation_id: "test".into(),
    }
}

/// Metadata for a command by the user `user_id` acting as `role` of `tenant_id` (a fresh
/// correlation id per call).
pub fn user_metadata(tenant_id: &str, user_id: &str, role: &str) -> CommandMetadata {
    CommandMetadata {
        tenant_id: tenant(tenant_id),
        actor: Actor::User {
            user_id: user_id.into(),
            role: role.into(),
        },
        correlation_id: format!("test-{}", uuid::Uuid::new_v4()),
        causation_id: "test".into(),
    }
}

/// A parsed tenant id.
pub fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap_or_else(|e| panic!("{e}"))
}

impl TestApp {
    /// An app over `pool` (already migrated by `#[sqlx::test]`), with LISTEN/NOTIFY wake-ups.
    pub async fn new(pool: PgPool) -> Self {
        Self::with_settings(pool, settings(false)).await
    }

    /// An app over `pool` with the given settings.
    ///
    /// The app gets its own pool, acting as the application role exactly as the server does;
    /// `pool` (the test's, as the owner) stays for the test's own checks and for what only an
    /// owner may do.
    pub async fn with_settings(pool: PgPool, settings: Settings) -> Self {
        let app_pool = application_pool(pool.connect_options().as_ref().clone())
            .await
            .unwrap_or_else(|e| panic!("connecting the app: {e:#}"));
        let state = build_state(app_pool, &settings)
            .await
            .unwrap_or_else(|e| panic!("building the app: {e:#}"));
        Self {
            pool,
            state,
            acting: std::sync::Mutex::default(),
        }
    }

    /// Creates a tenant and maps a WhatsApp phone-number id to it.
    pub async fn tenant_with_number(&self, id: &str, number: &str) -> TenantId {
        let t = tenant(id);
        tenants::create_tenant(&self.state.pool, &t, id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tenants::map_whatsapp_number(&self.state.pool, &t, number)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        t
    }

    /// From now on, [`TestApp::token`] (and so `gql`) of `role` in `tenant_id` names `user_id`
    /// (e.g. a technician made by [`TestApp::user`], so work can be assigned to the caller).
    pub fn act_as(&self, tenant_id: &str, role: Role, user_id: &str) {
        if let Ok(mut acting) = self.acting.lock() {
            acting.insert((tenant_id.to_string(), role.as_str()), user_id.to_string());
        }
    }

    /// A token for a user of a tenant: `user-1`, or the user chosen by [`TestApp::act_as`].
    pub fn token(&self, tenant_id: &str, role: Role) -> String {
        let user = self
            .acting
            .lock()
            .ok()
            .and_then(|acting| acting.get(&(tenant_id.to_string(), role.as_str())).cloned())
            .unwrap_or_else(|| "user-1".to_string());
        mint(JWT_SECRET, &tenant(tenant_id), &user, role, chrono::Duration::hours(1)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A token for the user `user_id` of a tenant (one made by [`TestApp::user`], or any id).
    pub fn token_as(&self, tenant_id: &str, user_id: &str, role: Role) -> String {
        mint(
            JWT_SECRET,
            &tenant(tenant_id),
            user_id,
            role,
            chrono::Duration::hours(1),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Adds an active user of `tenant_id` with `role` through the write path (invited by the
    /// operator, accepted with a password), so work can be assigned to them; answers their id
    /// (`usr_…`).
    pub async fn user(&self, tenant_id: &str, role: Role) -> String {
        let commands = &self.state.commands;
        let n = uuid::Uuid::new_v4().simple().to_string();
        let invited = commands
            .invite_user(
                chronicle_commands::users::Invite {
                    email: format!("{}-{}@{tenant_id}.test", role.as_str(), &n[..8]),
                    name: format!("{} {}", role.as_str(), &n[..4]),
                    role: role.as_str().to_string(),
                },
                &system_metadata(tenant_id),
                &["owner", "admin"],
            )
            .await
            .unwrap_or_else(|e| panic!("inviting a {} user: {e}", role.as_str()));
        commands
            .accept_invitation(&invited.token, "a test user's passphrase", "test")
            .await
            .unwrap_or_else(|e| panic!("accepting an invitation: {e}"));
        invited.user_id
    }

    /// Sends a request in-process; returns status and body (JSON, or a string value).
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = router(self.state.clone())
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
            .await
            .unwrap_or_default();
        let body =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, body)
    }

    /// Posts a WhatsApp delivery with the given signature header (None: no header).
    pub async fn post_delivery_signed(&self, body: &[u8], signature: Option<String>) -> (StatusCode, Value) {
        let mut request = Request::post("/webhooks/whatsapp").header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        self.send(
            request
                .body(Body::from(body.to_vec()))
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await
    }

    /// Posts a correctly signed WhatsApp delivery.
    pub async fn post_delivery(&self, body: &Value) -> (StatusCode, Value) {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let signature = sign(APP_SECRET.as_bytes(), &bytes);
        self.post_delivery_signed(&bytes, Some(signature)).await
    }

    /// Processes the inbox until nothing is pending.
    pub async fn drain(&self) {
        self.state
            .workers
            .inbox
            .drain()
            .await
            .unwrap_or_else(|e| panic!("draining the inbox: {e}"));
    }

    /// The contacts' key store of the application.
    pub fn keys(&self) -> chronicle_commands::keystore::KeyStore {
        self.state.keys.clone()
    }

    /// The application's write side as the fixtures' loaders take it.
    pub fn command_path<'a>(
        &'a self,
        keys: &'a chronicle_commands::keystore::KeyStore,
    ) -> chronicle_fixtures::load::CommandPath<'a> {
        chronicle_fixtures::load::CommandPath {
            ids: &self.state.id_key,
            inbox: &self.state.workers.inbox,
            commands: &self.state.commands,
            keys,
            follow_ups: &self.state.workers.follow_ups,
        }
    }

    /// Loads the demo of `serve --demo` (`chronicle_fixtures::demo`) through the command path,
    /// projections caught up (`loaded` is `false` when it was there already).
    pub async fn load_demo(&self) -> chronicle_fixtures::demo::DemoSummary {
        let keys = self.keys();
        let summary = chronicle_fixtures::demo::load(
            self.command_path(&keys),
            &self.state.payments,
            || async {
                self.project().await;
                Ok(())
            },
            |_, _| {},
        )
        .await
        .unwrap_or_else(|e| panic!("loading the demo: {e:#}"));
        self.project().await;
        summary
    }

    /// Runs every projector until it has applied every event committed before the call.
    ///
    /// One catch-up is not enough: the gap-free reader holds back events behind any open write
    /// transaction of the cluster (other tests' databases included), so this repeats until no
    /// committed event of the projector's types is left after its checkpoint.
    pub async fn project(&self) {
        self.project_only(&[]).await;
    }

    /// [`TestApp::project`] for the projectors named (every one when empty).
    pub async fn project_only(&self, names: &[&str]) {
        for projector in projectors(&self.state) {
            if !names.is_empty() && !names.contains(&projector.name()) {
                continue;
            }
            let runner = ProjectorRunner::new(
                self.state.pool.clone(),
                projector.clone(),
                self.state.wakeups.clone(),
                RunnerConfig::default(),
            );
            let types: Vec<String> = projector.event_types().iter().map(|t| t.to_string()).collect();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                runner.catch_up().await.unwrap_or_else(|e| panic!("projecting: {e}"));
                let behind: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM events e
                      WHERE e.event_type = ANY($2)
                        AND (e.tx_id, e.global_position) > coalesce(
                              (SELECT (c.last_tx_id, c.last_position) FROM projector_checkpoints c WHERE c.projector = $1),
                              ('0'::xid8, 0::bigint))",
                )
                .bind(projector.name())
                .bind(&types)
                .fetch_one(&self.pool)
                .await
                .unwrap_or_else(|e| panic!("measuring the projector: {e}"));
                if behind == 0 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} is still {behind} events behind after 60 s",
                    projector.name()
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }

    /// Rebuilds the projectors named `names` (every one when empty) from zero, as an operator
    /// would: each one's tables and feeds cleared and its checkpoint rewound in one
    /// transaction; then projects everything (see [`TestApp::project`]).
    pub async fn rebuild_only(&self, names: &[&str]) {
        for projector in projectors(&self.state) {
            if !names.is_empty() && !names.contains(&projector.name()) {
                continue;
            }
            ProjectorRunner::new(
                self.state.pool.clone(),
                projector.clone(),
                self.state.wakeups.clone(),
                RunnerConfig::default(),
            )
            .rebuild()
            .await
            .unwrap_or_else(|e| panic!("rebuilding {}: {e}", projector.name()));
        }
        self.project().await;
    }

    /// Rebuilds the projector `name` from zero (see [`TestApp::rebuild_only`]).
    pub async fn rebuild(&self, name: &str) {
        assert!(
            projectors(&self.state).iter().any(|p| p.name() == name),
            "no projector {name}"
        );
        self.rebuild_only(&[name]).await;
    }

    /// Posts a GraphQL query with a token.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> (StatusCode, Value) {
        let mut request = Request::post("/graphql").header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = json!({ "query": query, "variables": variables }).to_string();
        self.send(request.body(Body::from(body)).unwrap_or_else(|e| panic!("{e}")))
            .await
    }

    /// Sends a GraphQL multipart request (an upload): `variables` with `$file` set to null, and
    /// the file (name, MIME type, bytes) mapped to `variables.file`.
    pub async fn graphql_upload(
        &self,
        token: &str,
        query: &str,
        variables: Value,
        file: (&str, &str, &[u8]),
    ) -> (StatusCode, Value) {
        let (content_type, body) = multipart_body(query, variables, file);
        let request = Request::post("/graphql")
            .header("content-type", content_type)
            .header("authorization", format!("Bearer {token}"));
        self.send(request.body(Body::from(body)).unwrap_or_else(|e| panic!("{e}")))
            .await
    }

    /// Serves the app on a loopback port (for WebSockets); the server stops with the test.
    pub async fn serve(&self) -> SocketAddr {
        listen_loopback(router(self.state.clone())).await
    }

    /// Posts a GraphQL query as `role` of `tenant_id` and returns the reply (errors included),
    /// checking that it was answered 200.
    pub async fn gql(&self, tenant_id: &str, role: Role, query: &str, variables: Value) -> Value {
        let token = self.token(tenant_id, role);
        let (status, reply) = self.graphql(Some(&token), query, variables).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        reply
    }

    /// Registers a contact of `tenant_id` under a chosen id (`ct_…`), its phone sealed under
    /// the contact's own key as the write side does: for tests that name customers or
    /// recipients, which must be contacts of the tenant.
    pub async fn register_contact(&self, tenant_id: &str, contact_id: &str, phone: &str) {
        use chronicle_domain::contact::{ContactCommand, ContactHandleKind, ContactSource, RegisterContact};
        let t = tenant(tenant_id);
        let key = self
            .keys()
            .key_for(&t, contact_id)
            .await
            .unwrap_or_else(|e| panic!("contact key: {e}"));
        let command = ContactCommand::RegisterContact(RegisterContact {
            contact_id: contact_id.into(),
            handle: ContactHandleKind::Phone,
            phone: Some(key.seal(&t, contact_id, phone, &mut rand::rngs::OsRng)),
            provider_user_id: None,
            name: None,
            source: ContactSource::Manual,
            at: chrono::Utc::now(),
        });
        self.state
            .commands
            .contact(contact_id, command, &system_metadata(tenant_id))
            .await
            .unwrap_or_else(|e| panic!("register {contact_id}: {e}"));
    }

    /// How many events of a type the log holds, across tenants.
    pub async fn count_events(&self, event_type: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A WhatsApp sender of the application with `config`.
    pub fn sender_with(&self, config: SenderConfig) -> WhatsAppSender {
        WhatsAppSender::new(self.state.commands.clone(), self.keys(), config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A WhatsApp sender to `base_url` with the token `graph-token` that retries at once.
    pub fn sender(&self, base_url: &str) -> WhatsAppSender {
        self.sender_with(sender_config(base_url, "graph-token"))
    }

    /// Counts rows of a query returning one bigint.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// Serves `app` on a loopback port until the test ends; answers its address. The one way a
/// test stands up an HTTP peer (a Graph API, a payment provider, the app itself).
/// Every public table's rows as JSON, sorted, but the projectors' checkpoints (their counters
/// and times move with a rebuild): what "the system is as it was" compares. With `versions`,
/// each row also carries its `xmin`, so a row rewritten with the same values shows too.
pub async fn table_rows(pool: &PgPool, versions: bool) -> std::collections::BTreeMap<String, Vec<Value>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables
          WHERE schemaname = 'public' AND tablename NOT IN ('_sqlx_migrations', 'projector_checkpoints')
          ORDER BY tablename",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let row = if versions {
        "to_jsonb(t) || jsonb_build_object('xmin', t.xmin::text)"
    } else {
        "to_jsonb(t)"
    };
    let mut all = std::collections::BTreeMap::new();
    for name in names {
        let rows: Vec<Value> = sqlx::query_scalar(&format!(
            "SELECT r FROM (SELECT {row} AS r FROM {name} t) s ORDER BY r::text"
        ))
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("reading {name}: {e}"));
        all.insert(name, rows);
    }
    all
}

pub async fn listen_loopback(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("binding a loopback port: {e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        // With the peer's address, as `chronicle serve` gives it (the sign-in limiter reads it).
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    address
}

/// [`listen_loopback`], answering the base URL (`http://127.0.0.1:<port>`).
pub async fn serve_loopback(app: axum::Router) -> String {
    format!("http://{}", listen_loopback(app).await)
}

/// A WhatsApp message id shaped like the real ones: base64 of a structure that embeds the
/// contact's phone number (so tests catch ids leaking numbers into the log).
pub fn wamid(phone: &str, n: u32) -> String {
    use base64::Engine;
    let mut raw = vec![0x18, phone.len() as u8];
    raw.extend_from_slice(phone.as_bytes());
    raw.extend_from_slice(&[0x15, 0x02, 0x00, 0x12, 0x18, 0x14]);
    raw.extend_from_slice(format!("3EB0{n:016X}").as_bytes());
    format!("wamid.{}", base64::engine::general_purpose::STANDARD.encode(raw))
}

/// A WhatsApp message object.
pub fn text_message(from: &str, id: &str, timestamp: i64, body: &str) -> Value {
    json!({"from": from, "id": id, "timestamp": timestamp.to_string(), "type": "text", "text": {"body": body}})
}

/// A WhatsApp status object.
pub fn status(id: &str, status: &str, timestamp: i64, recipient: &str) -> Value {
    json!({"id": id, "status": status, "timestamp": timestamp.to_string(), "recipient_id": recipient})
}

/// A WhatsApp delivery to `number` with contacts (wa_id, name), messages and statuses.
pub fn delivery(number: &str, contacts: &[(&str, &str)], messages: Vec<Value>, statuses: Vec<Value>) -> Value {
    let contacts: Vec<Value> = contacts
        .iter()
        .map(|(wa, name)| json!({"profile": {"name": name}, "wa_id": wa}))
        .collect();
    json!({"object": "whatsapp_business_account", "entry": [{"id": "waba-1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": number},
        "contacts": contacts, "messages": messages, "statuses": statuses}}]}]})
}

/// The rows of a read model's page (its cursors dropped), panicking on a failed read.
pub fn page_rows<T, E: std::fmt::Display>(
    page: Result<Result<chronicle_projections::page::Page<T>, E>, sqlx::Error>,
) -> Vec<T> {
    page.unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .rows
        .into_iter()
        .map(|(_, row)| row)
        .collect()
}

/// The GraphQL-over-WebSocket subprotocol the API serves.
pub fn ws_protocol() -> &'static str {
    chronicle_api::http::graphql_ws::TRANSPORT_WS
}

/// A GraphQL multipart request's Content-Type and body (the GraphQL multipart request
/// specification): `operations` (the query, `variables` with `file` null), `map`
/// (`{"0": ["variables.file"]}`) and the file part `0`.
pub fn multipart_body(query: &str, mut variables: Value, file: (&str, &str, &[u8])) -> (String, Vec<u8>) {
    variables["file"] = Value::Null;
    let operations = json!({"query": query, "variables": variables}).to_string();
    let (filename, mime, bytes) = file;
    chronicle_commands::http::multipart_body(
        &[("operations", &operations), ("map", r#"{"0": ["variables.file"]}"#)],
        ("0", filename, mime, bytes),
    )
}
