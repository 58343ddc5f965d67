//! The `chronicle` binary as people run it, in real processes: the README's run command
//! (`serve --demo` on the embedded PostgreSQL), the admin commands, a delivery for a number no
//! tenant owns yet, and a server killed mid-projection and restarted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;

mod webdriver;

const APP_SECRET: &str = "run-command-app-secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// One server at a time: each runs its own PostgreSQL, and `serve --demo` loads a few thousand
/// events before it listens; side by side on two cores they starved each other's progress.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A data directory with its own embedded cluster, stopped and removed when dropped (also when
/// a test fails). Holds [`ONE_AT_A_TIME`] for its life.
struct Sandbox {
    dir: PathBuf,
    pg_port: u16,
    bind: String,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Sandbox {
    fn new(name: &str) -> Self {
        // Each test has a thread of its own (a current-thread runtime): waiting here blocks only
        // this test. A test that failed holding the turn leaves it usable.
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = std::env::temp_dir().join(format!("chronicle-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self {
            dir,
            pg_port: free_port(),
            bind: format!("127.0.0.1:{}", free_port()),
            _turn: turn,
        }
    }

    /// A sandbox serving `serve --demo` (healthy), with the token it printed for the demo's
    /// first tenant.
    async fn demo(name: &str) -> (Self, Server, String) {
        let sandbox = Self::new(name);
        let log = sandbox.dir.join("server.log");
        let (server, token) = sandbox.serve(&["--demo"], &log);
        let token = token.expect("the server prints a token for the demo tenant");
        sandbox.wait_for_health().await;
        (sandbox, server, token)
    }

    fn chronicle(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
        command
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env("CHRONICLE_DATA_DIR", &self.dir)
            .env("CHRONICLE_EMBEDDED_PG_PORT", self.pg_port.to_string())
            .env("CHRONICLE_BIND", &self.bind)
            .env("WHATSAPP_APP_SECRET", APP_SECRET)
            .env("CHRONICLE_LOG_FORMAT", "json");
        command
    }

    /// Starts `serve [args]`, logging to `log`; returns the server and, with `--demo`, the token.
    fn serve(&self, args: &[&str], log: &Path) -> (Server, Option<String>) {
        self.serve_with(args, log, &[])
    }

    /// `serve` with extra environment variables.
    fn serve_with(&self, args: &[&str], log: &Path, env: &[(&str, &str)]) -> (Server, Option<String>) {
        let mut child = self
            .chronicle()
            .envs(env.iter().copied())
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("the chronicle binary starts");
        let stdout = child.stdout.take().expect("stdout");
        // Read stdout to its end on a thread of its own (a closed pipe would fail the server's
        // later prints), handing over the first token it prints.
        let (tokens, token) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tokens = Some(tokens);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(found) = line.trim().strip_prefix("Authorization: Bearer ") {
                    if let Some(tokens) = tokens.take() {
                        let _ = tokens.send(found.to_string());
                    }
                }
            }
        });
        let token = if args.contains(&"--demo") {
            token.recv_timeout(Duration::from_secs(600)).ok()
        } else {
            None
        };
        (Server(child), token)
    }

    fn admin(&self, args: &[&str]) -> String {
        let output = self.chronicle().arg("admin").args(args).output().expect("admin runs");
        assert!(
            output.status.success(),
            "admin {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// `chronicle sandbox <args>` against the running server: (success, stdout, stderr).
    fn sandbox_cli(&self, args: &[&str]) -> (bool, String, String) {
        let output = self
            .chronicle()
            .arg("sandbox")
            .args(args)
            .output()
            .expect("sandbox runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).trim().to_string(),
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        )
    }

    async fn owner_pool(&self) -> PgPool {
        PgPool::connect(&format!("postgres://postgres@127.0.0.1:{}/chronicle", self.pg_port))
            .await
            .expect("owner pool")
    }

    async fn wait_for_health(&self) {
        // A bound on progress, not speed: `serve --demo` loads a few thousand events through
        // the command path before it listens, and tests run several servers side by side.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Ok(r) = reqwest::get(format!("http://{}/health", self.bind)).await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the server did not become healthy within 300 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn graphql(&self, token: &str, query: &str) -> Value {
        reqwest::Client::new()
            .post(format!("http://{}/graphql", self.bind))
            .bearer_auth(token)
            .json(&json!({ "query": query }))
            .send()
            .await
            .expect("graphql")
            .json()
            .await
            .unwrap_or_default()
    }

    /// A GraphQL multipart request (an upload) whose `$file` is the given file.
    async fn graphql_upload(&self, token: &str, query: &str, variables: Value, file: (&str, &str, &[u8])) -> Value {
        let mut variables = variables;
        variables["file"] = Value::Null;
        let operations = json!({"query": query, "variables": variables}).to_string();
        let (content_type, body) = chronicle_commands::http::multipart_body(
            &[("operations", &operations), ("map", r#"{"0": ["variables.file"]}"#)],
            ("0", file.0, file.1, file.2),
        );
        reqwest::Client::new()
            .post(format!("http://{}/graphql", self.bind))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("graphql upload")
            .json()
            .await
            .unwrap_or_default()
    }

    async fn post_delivery(&self, body: &Value) -> reqwest::StatusCode {
        let bytes = serde_json::to_vec(body).unwrap();
        let signature = chronicle_commands::intake::whatsapp::sign(APP_SECRET.as_bytes(), &bytes);
        reqwest::Client::new()
            .post(format!("http://{}/webhooks/whatsapp", self.bind))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(bytes)
            .send()
            .await
            .expect("webhook")
            .status()
    }
}

/// A running server, killed (SIGKILL) when dropped, also when a test fails.
struct Server(Child);

impl Server {
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()?;
        self.0.wait().map(|_| ())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.chronicle().args(["admin", "stop-db"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    // A bound on progress, not a measure of speed: generous, since this debug build shares two
    // cores with PostgreSQL (and runs under libfaketime in scripts/test-shifted-clock.sh, where
    // every clock read is intercepted): the crash test came within a few seconds of 60 s there.
    let deadline = Instant::now() + Duration::from_secs(180);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 180 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn delivery(number: &str, from: &str, first: u32, count: u32) -> Value {
    let messages: Vec<Value> = (first..first + count)
        .map(|i| {
            json!({"from": from, "id": format!("wamid.run.{number}.{i}"), "timestamp": (1_790_000_000 + i).to_string(),
                        "type": "text", "text": {"body": format!("message {i}")}})
        })
        .collect();
    json!({"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "1555", "phone_number_id": number},
        "contacts": [{"profile": {"name": "Run Test"}, "wa_id": from}], "messages": messages}}]}]})
}

#[tokio::test]
async fn serve_demo_starts_its_own_postgres_and_serves_the_demo_inbox() {
    let sandbox = Sandbox::new("run");
    let log = sandbox.dir.join("server.log");
    let (mut server, token) = sandbox.serve(&["--demo"], &log);
    let token = token.expect("the server prints a token for the demo tenant");
    sandbox.wait_for_health().await;

    let query =
        "{ viewer { tenantId } conversations(first: 10) { edges { node { contactName lastMessage { text } } } } }";
    let deadline = Instant::now() + Duration::from_secs(60);
    let reply = loop {
        let reply = sandbox.graphql(&token, query).await;
        if reply["data"]["conversations"]["edges"].as_array().map(Vec::len) == Some(10) {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "the demo inbox was not served within 60 s: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The generator's installer, the tenant the printed token (and GraphiQL) opens with.
    assert_eq!(reply["data"]["viewer"]["tenantId"], "installer-1");
    assert!(reply.to_string().contains("\"contactName\":\""), "{reply}");
    // The demo's owner signs in with the printed password, and the printed token is theirs.
    let signed: Value = reqwest::Client::new()
        .post(format!("http://{}/auth/sign-in", sandbox.bind))
        .json(&serde_json::json!({"tenant": "installer-1", "email": "owner@installer-1.demo", "password": "demo owner passphrase"}))
        .send()
        .await
        .expect("signing in")
        .json()
        .await
        .expect("a session");
    let access = signed["accessToken"].as_str().unwrap_or_default().to_string();
    let me = sandbox.graphql(&access, "{ viewer { role account { email } } }").await;
    assert_eq!(
        me["data"]["viewer"]["account"]["email"], "owner@installer-1.demo",
        "{me}"
    );
    let printed = sandbox.graphql(&token, "{ viewer { account { email } } }").await;
    assert_eq!(
        printed["data"]["viewer"]["account"]["email"], "owner@installer-1.demo",
        "{printed}"
    );

    let page = reqwest::get(format!("http://{}/graphql", sandbox.bind))
        .await
        .expect("GraphiQL");
    assert!(page
        .text()
        .await
        .unwrap_or_default()
        .to_lowercase()
        .contains("graphiql"));
    let health: Value = reqwest::get(format!("http://{}/health", sandbox.bind))
        .await
        .expect("health")
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(health["postgres"], "ok");

    // A delivery for a number no tenant owns is kept, with a log line for operators...
    assert_eq!(
        sandbox
            .post_delivery(&delivery("777000777", "263771000555", 0, 2))
            .await,
        reqwest::StatusCode::OK
    );
    eventually("the operator log line", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { text.contains("no tenant owns") && text.contains("777000777") }
    })
    .await;
    // ...and processed once an operator maps the number, with the admin commands.
    sandbox.admin(&["create-tenant", "late-tenant", "--name", "Late Tenant"]);
    let mapped = sandbox.admin(&[
        "map-number",
        "--tenant",
        "late-tenant",
        "--phone-number-id",
        "777000777",
    ]);
    assert!(mapped.contains("2 kept deliveries released"), "{mapped}");
    let late_token = sandbox.admin(&[
        "mint-token",
        "--tenant",
        "late-tenant",
        "--user",
        "ops",
        "--role",
        "agent",
    ]);
    eventually("the kept messages reach the late tenant's inbox", || {
        let fetched = sandbox.graphql(&late_token, "{ conversations { edges { node { messageCount } } } }");
        async move { fetched.await["data"]["conversations"]["edges"][0]["node"]["messageCount"] == 2 }
    })
    .await;

    // The tenant's first owner: invited by the operator, who hands over the invitation; the
    // owner accepts it with a password on the running server and signs in.
    let invited = sandbox.admin(&[
        "invite-user",
        "--tenant",
        "late-tenant",
        "--email",
        "boss@late.test",
        "--name",
        "The Boss",
    ]);
    let invitation = invited
        .lines()
        .find_map(|line| line.strip_prefix("invitation: "))
        .unwrap_or_else(|| panic!("no invitation printed: {invited}"))
        .trim()
        .to_string();
    let http = reqwest::Client::new();
    let accepted = http
        .post(format!("http://{}/auth/accept-invitation", sandbox.bind))
        .json(&serde_json::json!({"token": invitation, "password": "the boss's own passphrase"}))
        .send()
        .await
        .expect("accepting");
    assert_eq!(accepted.status(), reqwest::StatusCode::OK);
    let signed: serde_json::Value = http
        .post(format!("http://{}/auth/sign-in", sandbox.bind))
        .json(&serde_json::json!({"tenant": "late-tenant", "email": "boss@late.test", "password": "the boss's own passphrase"}))
        .send()
        .await
        .expect("signing in")
        .json()
        .await
        .expect("a session");
    let access = signed["accessToken"].as_str().unwrap_or_default().to_string();
    let viewer = sandbox
        .graphql(&access, "{ viewer { role account { email name } } }")
        .await;
    assert_eq!(
        viewer["data"]["viewer"],
        serde_json::json!({"role": "owner", "account": {"email": "boss@late.test", "name": "The Boss"}}),
        "{viewer}"
    );
    // Operators' tokens are bounded (people sign in; programs use API keys).
    let long = sandbox
        .chronicle()
        .args([
            "admin",
            "mint-token",
            "--tenant",
            "late-tenant",
            "--user",
            "ops",
            "--ttl-hours",
            "1000",
        ])
        .output()
        .expect("runs");
    assert!(!long.status.success());
    assert!(
        String::from_utf8_lossy(&long.stderr).contains("at most 168"),
        "{}",
        String::from_utf8_lossy(&long.stderr)
    );

    let _ = server.kill();
}

#[tokio::test]
async fn a_server_killed_mid_projection_resumes_and_equals_a_rebuild() {
    let sandbox = Sandbox::new("crash");
    let log = sandbox.dir.join("server.log");
    sandbox.admin(&["create-tenant", "crash-test", "--name", "Crash Test"]);
    sandbox.admin(&["map-number", "--tenant", "crash-test", "--phone-number-id", "888000888"]);
    let (mut server, _) = sandbox.serve(&[], &log);
    sandbox.wait_for_health().await;
    for (i, from) in ["263771000601", "263771000602", "263771000603"].into_iter().enumerate() {
        assert_eq!(
            sandbox
                .post_delivery(&delivery("888000888", from, i as u32 * 1000, 600))
                .await,
            reqwest::StatusCode::OK
        );
    }
    let owner = sandbox.owner_pool().await;
    let total = 1800_i64;
    eventually("every delivery appended and projected", || {
        let owner = owner.clone();
        async move {
            let applied: Option<i64> = sqlx::query_scalar(
                "SELECT events_applied FROM projector_checkpoints WHERE projector = 'conversations'",
            )
            .fetch_optional(&owner)
            .await
            .unwrap_or_default();
            applied == Some(total)
        }
    })
    .await;
    let _ = server.kill();

    // Rewind the projector (as a rebuild starts), then kill the server mid-way through.
    sqlx::query("DELETE FROM conversations").execute(&owner).await.unwrap();
    sqlx::query("DELETE FROM message_statuses")
        .execute(&owner)
        .await
        .unwrap();
    sqlx::query("DELETE FROM projector_checkpoints")
        .execute(&owner)
        .await
        .unwrap();
    // Small batches, so the kill lands between two of them.
    let log2 = sandbox.dir.join("server2.log");
    let (mut server, _) = sandbox.serve_with(&[], &log2, &[("CHRONICLE_PROJECTOR_BATCH_SIZE", "20")]);
    let mut applied_at_kill: i64 = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while applied_at_kill == 0 && Instant::now() < deadline {
        applied_at_kill =
            sqlx::query_scalar("SELECT events_applied FROM projector_checkpoints WHERE projector = 'conversations'")
                .fetch_optional(&owner)
                .await
                .unwrap_or_default()
                .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().expect("SIGKILL");
    eprintln!("killed with {applied_at_kill} of {total} events applied");
    assert!(applied_at_kill > 0, "the restarted server applied nothing within 60 s");

    let (mut server, _) = sandbox.serve(&[], &log);
    eventually("the restarted server catches up", || {
        let owner = owner.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT events_applied FROM projector_checkpoints WHERE projector = 'conversations'",
            )
            .fetch_optional(&owner)
            .await
            .unwrap_or_default()
                == Some(total)
        }
    })
    .await;
    let _ = server.kill();

    let rows = |pool: PgPool| async move {
        sqlx::query_scalar::<_, String>(
            "SELECT row_to_json(c)::text FROM (SELECT conversation_id, contact_phone, contact_name, status, last_message_ref,
                    last_message_text, last_message_at, unread_count, message_count, window_expires_at
               FROM conversations ORDER BY conversation_id) c",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let resumed = rows(owner.clone()).await;
    assert_eq!(resumed.len(), 3);
    assert!(
        resumed.iter().all(|r| r.contains("\"message_count\":600")),
        "{resumed:?}"
    );

    // A rebuild from zero, in process, with the same master key, gives the same rows.
    let secrets: Value = serde_json::from_slice(&std::fs::read(sandbox.dir.join("dev-secrets.json")).unwrap()).unwrap();
    let master = chronicle_domain::pii::MasterKey::from_base64(secrets["master_key"].as_str().unwrap()).unwrap();
    let projector = std::sync::Arc::new(chronicle_projections::conversations::ConversationsProjector::new(
        master,
    ));
    chronicle_projections::runtime::ProjectorRunner::new(
        owner.clone(),
        projector,
        chronicle_projections::wake::Wakeups::manual(),
        chronicle_projections::runtime::RunnerConfig::default(),
    )
    .rebuild()
    .await
    .unwrap();
    assert_eq!(rows(owner.clone()).await, resumed);
    owner.close().await;
}

#[test]
fn production_mode_without_secrets_exits_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env_remove("CHRONICLE_JWT_SECRET")
        .args(["admin", "mint-token", "--tenant", "acme", "--user", "u"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CHRONICLE_JWT_SECRET"), "{stderr}");
}

/// The README's first step in a real browser: GraphiQL from `serve --demo`, with Chromium's
/// network limited to loopback (no CDN), the schema in the explorer, and a query typed into the
/// editor answered with the demo's data through the pre-filled token.
#[tokio::test]
async fn graphiql_works_offline_in_a_real_browser_with_the_demo_token_filled_in() {
    let (sandbox, _server, token) = Sandbox::demo("graphiql").await;
    let origin = format!("http://{}", sandbox.bind);
    let browser = webdriver::Browser::start_loopback_only().await;
    browser.goto(&format!("{origin}/graphql")).await;
    let within = Duration::from_secs(60);

    // The schema loads (introspection), and the explorer lists the Query type's fields.
    let docs = browser
        .wait_for(".graphiql-sidebar button[aria-label*='Documentation Explorer']", within)
        .await;
    browser.click(&docs).await;
    let query_type = browser
        .wait_for(
            ".graphiql-doc-explorer-root-type + a.graphiql-doc-explorer-type-name",
            within,
        )
        .await;
    browser.click(&query_type).await;
    let fields = browser
        .wait_for_text(".graphiql-doc-explorer-field-name", within, |text| {
            text.contains("conversations") && text.contains("viewer")
        })
        .await;
    assert!(fields.contains("leads"), "{fields}");

    // No token is typed anywhere: the headers editor starts with the demo tenant's.
    // A query typed into the editor (select all, then type over it) returns data.
    let editor = browser
        .wait_for(".graphiql-query-editor .CodeMirror textarea", within)
        .await;
    browser.type_into(&editor, "\u{E009}a\u{E000}").await;
    browser
        .type_into(&editor, "{ conversations(first: 3) { edges { node { contactName ")
        .await;
    // The editor closes brackets itself: typing the closing ones steps over them.
    browser.type_into(&editor, "} } } }").await;
    let run = browser.wait_for(".graphiql-execute-button", within).await;
    browser.click(&run).await;
    let result = browser
        .wait_for_text(".result-window", within, |text| text.contains("contactName"))
        .await;
    assert!(!result.contains("\"errors\""), "{result}");
    assert!(result.contains("\"contactName\": \""), "the demo's data: {result}");

    // Nothing came from anywhere but this server.
    let resources = browser
        .script(
            "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])",
            json!([]),
        )
        .await;
    let resources: Vec<String> = serde_json::from_value(resources).unwrap_or_default();
    assert!(resources.len() >= 4, "{resources:?}");
    for resource in &resources {
        assert!(
            resource.starts_with(&origin) || resource.starts_with(&origin.replace("http", "ws")),
            "loaded from elsewhere: {resource}"
        );
    }

    // The page served in development mode carries the token; the browser used it above.
    let page = reqwest::get(format!("{origin}/graphql")).await.expect("page");
    assert_eq!(
        page.headers().get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert!(page.text().await.unwrap_or_default().contains(&token));
}

/// The conversation node (`conversations` query) whose phone is `phone`, once it is there.
async fn conversation_of(sandbox: &Sandbox, token: &str, phone: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let reply = sandbox
            .graphql(
                token,
                "{ conversations(first: 100) { edges { node { id contactPhone freeFormAllowed } } } }",
            )
            .await;
        let edges = reply["data"]["conversations"]["edges"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(edge) = edges.into_iter().find(|e| e["node"]["contactPhone"] == phone) {
            return edge["node"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no conversation of {phone} within 180 s: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The outbound message `out:<key>` of a conversation, once `check` holds for it.
async fn outbound_message(
    sandbox: &Sandbox,
    token: &str,
    conversation: &str,
    key: &str,
    check: fn(&Value) -> bool,
) -> Value {
    let query = format!(
        "{{ conversation(id: \"{conversation}\") {{ messages(first: 200) {{ edges {{ node {{
            id state status errorCode errorTitle statusTimeline {{ status }} }} }} }} }} }}"
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let reply = sandbox.graphql(token, &query).await;
        let edges = reply["data"]["conversation"]["messages"]["edges"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(edge) = edges.into_iter().find(|e| e["node"]["id"] == format!("out:{key}")) {
            if check(&edge["node"]) {
                return edge["node"].clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "message out:{key} not as expected within 180 s: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The main wallet's balance (milli-tokens).
async fn balance(sandbox: &Sandbox, token: &str) -> Option<i64> {
    sandbox.graphql(token, "{ wallet { balance } }").await["data"]["wallet"]["balance"].as_i64()
}

/// Development mode's WhatsApp Cloud API sandbox, from `serve --demo` with no Graph API
/// configured: a send is accepted by the sandbox and its statuses come back through Chronicle's
/// own signed webhook; a customer plays in with `chronicle sandbox inbound`; a number
/// configured to fail records the provider's code and refunds the metered send.
#[tokio::test]
async fn in_development_mode_sends_go_to_the_whatsapp_sandbox_and_statuses_come_back() {
    let (sandbox, _server, token) = Sandbox::demo("wa-sandbox").await;

    // A customer writes in (the sandbox's signed delivery to our own webhook)...
    let (ok, message_id, stderr) = sandbox.sandbox_cli(&[
        "inbound",
        "--tenant",
        "installer-1",
        "--from",
        "+263771000999",
        "--name",
        "Sandbox Sam",
        "--text",
        "Do you install on Saturdays?",
    ]);
    assert!(ok, "{stderr}");
    assert!(message_id.starts_with("wamid.sandbox.in."), "{message_id}");
    let sam = conversation_of(&sandbox, &token, "+263771000999").await;
    assert_eq!(sam["freeFormAllowed"], true, "{sam}");
    let conversation = sam["id"].as_str().unwrap().to_string();

    // ...and the reply goes out: the sandbox accepts it and calls back sent, delivered, read.
    let reply = sandbox
        .graphql(
            &token,
            &format!(
                "mutation {{ sendMessage(conversationId: \"{conversation}\", text: \"Yes, from 8 to 12\",
                   idempotencyKey: \"sandbox-reply-1\") {{ __typename }} }}"
            ),
        )
        .await;
    assert!(reply.get("errors").is_none(), "{reply}");
    let sent = outbound_message(&sandbox, &token, &conversation, "sandbox-reply-1", |m| {
        m["statusTimeline"].as_array().map(Vec::len) == Some(3)
    })
    .await;
    assert_eq!(sent["state"], "sent", "{sent}");
    let timeline: Vec<&str> = sent["statusTimeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["status"].as_str())
        .collect();
    assert_eq!(timeline, ["sent", "delivered", "read"]);
    // They arrived through the webhook intake (which takes only signed bodies): each status
    // event was caused by a row of the WhatsApp webhook inbox.
    let pool = sandbox.owner_pool().await;
    let through_inbox: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e JOIN webhook_inbox w ON e.metadata->>'causation_id' = 'inbox:' || w.inbox_id
          WHERE e.aggregate_id = $1 AND e.event_type = 'DeliveryStatusRecorded'
            AND w.provider = 'whatsapp' AND w.kind = 'status' AND w.state = 'done'",
    )
    .bind(format!("installer-1:{conversation}"))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(through_inbox, 3);

    // Marking the conversation read sends WhatsApp a read receipt, which the sandbox accepts.
    let read = sandbox
        .graphql(
            &token,
            &format!("mutation {{ markConversationRead(conversationId: \"{conversation}\") {{ id }} }}"),
        )
        .await;
    assert!(read.get("errors").is_none(), "{read}");
    let mut receipt = String::new();
    for _ in 0..150 {
        receipt = sqlx::query_scalar("SELECT state FROM read_receipts WHERE stream_id = $1")
            .bind(format!("installer-1:{conversation}"))
            .fetch_optional(&pool)
            .await
            .unwrap()
            .unwrap_or_default();
        if receipt == "sent" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(receipt, "sent");

    // A photo uploaded through Chronicle (the sandbox takes the file's upload, then the message
    // by its id), and reply buttons: both accepted, with their statuses back.
    let uploaded = sandbox
        .graphql_upload(
            &token,
            "mutation($id: String!, $file: Upload!) { uploadMedia(conversationId: $id, file: $file) { id } }",
            json!({"id": conversation}),
            ("kit.png", "image/png", b"\x89PNG\r\n\x1a\nsandbox-kit"),
        )
        .await;
    let media_ref = uploaded["data"]["uploadMedia"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(media_ref.starts_with("media_"), "{uploaded}");
    let rich = sandbox
        .graphql(
            &token,
            &format!(
                "mutation {{
                   sendMedia(conversationId: \"{conversation}\", kind: IMAGE, mediaRef: \"{media_ref}\",
                             caption: \"Your kit\", idempotencyKey: \"sandbox-photo-1\") {{ id }}
                   sendInteractive(conversationId: \"{conversation}\", body: \"Which day?\",
                                   buttons: [{{id: \"sat\", title: \"Saturday\"}}, {{id: \"mon\", title: \"Monday\"}}],
                                   idempotencyKey: \"sandbox-days-1\") {{ id }}
                 }}"
            ),
        )
        .await;
    assert!(rich.get("errors").is_none(), "{rich}");
    for key in ["sandbox-photo-1", "sandbox-days-1"] {
        let sent = outbound_message(&sandbox, &token, &conversation, key, |m| {
            m["statusTimeline"].as_array().map(Vec::len) == Some(3)
        })
        .await;
        assert_eq!(sent["state"], "sent", "{key}: {sent}");
    }

    // Templates go to the sandbox's review: approved, or rejected when the name says so.
    let submitted = sandbox
        .graphql(
            &token,
            "mutation {
               a: submitTemplate(input: {name: \"sandbox_check\", language: \"en\", category: UTILITY,
                                         body: \"Hello {{1}}\", footer: \"Sandbox\"}) { id }
               b: submitTemplate(input: {name: \"reject_me\", language: \"en\", category: UTILITY,
                                         body: \"Hello {{1}}\"}) { id }
             }",
        )
        .await;
    assert!(submitted.get("errors").is_none(), "{submitted}");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let reply = sandbox
            .graphql(
                &token,
                "{ templates(first: 100) { nodes { name status rejectionReason providerTemplateId } } }",
            )
            .await;
        let nodes = reply["data"]["templates"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let of = |name: &str| nodes.iter().find(|n| n["name"] == name).cloned().unwrap_or_default();
        let (check, reject) = (of("sandbox_check"), of("reject_me"));
        if check["status"] == "APPROVED" && reject["status"] == "REJECTED" {
            assert!(
                check["providerTemplateId"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("sandbox-tpl-")),
                "{check}"
            );
            assert_eq!(reject["rejectionReason"], "INVALID_FORMAT");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "templates not reviewed within 180 s: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A number configured to fail (ending in 131047): the failure is recorded with WhatsApp's
    // code and the metered send is refunded.
    let setup = sandbox
        .graphql(
            &token,
            "mutation { setPrice(feature: \"message\", unitPrice: 1000) { prices { feature } }
                        purchaseTokens(reference: \"sandbox-test\", amount: 10000) { __typename } }",
        )
        .await;
    assert!(setup.get("errors").is_none(), "{setup}");
    let (ok, _, stderr) = sandbox.sandbox_cli(&[
        "inbound",
        "--tenant",
        "installer-1",
        "--from",
        "+263770131047",
        "--text",
        "Hello?",
    ]);
    assert!(ok, "{stderr}");
    let failing = conversation_of(&sandbox, &token, "+263770131047").await;
    let failing = failing["id"].as_str().unwrap().to_string();
    assert_eq!(balance(&sandbox, &token).await, Some(10000));
    let reply = sandbox
        .graphql(
            &token,
            &format!(
                "mutation {{ sendMessage(conversationId: \"{failing}\", text: \"We are here\",
                   idempotencyKey: \"sandbox-fail-1\") {{ __typename }} }}"
            ),
        )
        .await;
    assert!(reply.get("errors").is_none(), "{reply}");
    let failed = outbound_message(&sandbox, &token, &failing, "sandbox-fail-1", |m| m["state"] == "failed").await;
    assert_eq!(failed["errorCode"], 131047, "{failed}");
    eventually("the refund of the failed send", || {
        let balance = balance(&sandbox, &token);
        async move { balance.await == Some(10000) }
    })
    .await;
    let refunds = sandbox
        .graphql(
            &token,
            "{ walletLedger(first: 20) { edges { node { kind amount reference } } } }",
        )
        .await;
    let lines: Vec<Value> = refunds["data"]["walletLedger"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["node"].clone())
        .collect();
    let charged = lines.iter().any(|l| l["amount"] == 1000 && l["kind"] != "refund");
    let refunded = lines.iter().any(|l| l["amount"] == 1000 && l["kind"] == "refund");
    assert!(charged && refunded, "the send was charged, then refunded: {refunds}");

    // The demo's campaign (the agency's, scheduled to start at once) runs to completion through
    // the sandbox: every recipient sent, or failed for a reason of its own (opted out).
    let agency = sandbox.admin(&["mint-token", "--tenant", "agency-1", "--user", "ops", "--role", "owner"]);
    let query =
        "{ campaign(id: \"demo_launch\") { status recipients(first: 500) { edges { node { status reason } } } } }";
    let deadline = Instant::now() + Duration::from_secs(180);
    let campaign = loop {
        let reply = sandbox.graphql(&agency, query).await;
        if reply["data"]["campaign"]["status"] == "COMPLETED" {
            break reply["data"]["campaign"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the demo campaign did not complete within 180 s: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let recipients: Vec<Value> = campaign["recipients"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["node"].clone())
        .collect();
    assert!(recipients.len() >= 10, "{campaign}");
    let reached = recipients
        .iter()
        .filter(|r| ["SENT", "DELIVERED", "READ"].contains(&r["status"].as_str().unwrap_or_default()))
        .count();
    assert!(reached > 0, "some recipients were sent the template: {campaign}");
    for recipient in &recipients {
        if recipient["status"] == "FAILED" {
            assert!(
                recipient["reason"].as_str().unwrap_or_default().contains("opted out"),
                "{campaign}"
            );
        }
    }

    // Production has no sandbox: the CLI says so (with a valid production configuration).
    let output = sandbox
        .chronicle()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("CHRONICLE_JWT_SECRET", "j".repeat(32))
        .env("CHRONICLE_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .env("WHATSAPP_VERIFY_TOKEN", "v")
        .args([
            "sandbox",
            "inbound",
            "--tenant",
            "installer-1",
            "--from",
            "+263771000999",
            "--text",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("only in development mode"), "{stderr}");
}

/// A payment request's status (`PAID`, …) as the API reads it back.
async fn request_status(sandbox: &Sandbox, token: &str, id: &str) -> String {
    let reply = sandbox
        .graphql(token, &format!("{{ paymentRequest(id: \"{id}\") {{ status }} }}"))
        .await;
    reply["data"]["paymentRequest"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until the payment request `id` reads `PAID`.
async fn until_paid(sandbox: &Sandbox, token: &str, id: &str, what: &str) {
    eventually(what, || {
        let status = request_status(sandbox, token, id);
        async move { status.await == "PAID" }
    })
    .await;
}

/// `requestPayment` with `fields` (GraphQL input fields after the key); the receipt.
async fn request_payment(sandbox: &Sandbox, token: &str, key: &str, fields: &str) -> Value {
    let reply = sandbox
        .graphql(
            token,
            &format!(
                "mutation {{ requestPayment(input: {{ idempotencyKey: \"{key}\", {fields} }}) {{
                   id status paymentUrl providerRequestId }} }}"
            ),
        )
        .await;
    assert!(reply.get("errors").is_none(), "{key}: {reply}");
    reply["data"]["requestPayment"].clone()
}

/// Development mode's payment sandboxes, from `serve --demo` with no provider configured: the
/// demo tenants have Paynow, M-Pesa and Stripe set up; a Paynow checkout paid on its page, a
/// Paynow Express prompt, an M-Pesa STK push and a Stripe Checkout paid on its page each end
/// in a paid request through the provider's signed callback; a request sent on WhatsApp to a
/// number the WhatsApp sandbox refuses is refunded.
#[tokio::test]
async fn in_development_mode_payment_requests_run_end_to_end_through_the_payment_sandboxes() {
    let (sandbox, _server, token) = Sandbox::demo("pay-sandbox").await;
    let http = reqwest::Client::new();
    let contact_of = |phone: &'static str, tenant: &'static str, token: String| {
        let sandbox = &sandbox;
        async move {
            let (ok, _, stderr) = sandbox.sandbox_cli(&[
                "inbound",
                "--tenant",
                tenant,
                "--from",
                phone,
                "--text",
                "How do I pay?",
            ]);
            assert!(ok, "{stderr}");
            conversation_of(sandbox, &token, phone).await["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let zimbabwean = contact_of("+263771000777", "installer-1", token.clone()).await;
    let kenyan = contact_of("+254708000111", "installer-1", token.clone()).await;

    // Paynow web checkout: the customer pays on the sandbox's page.
    let web = request_payment(
        &sandbox,
        &token,
        "pn-web",
        &format!("provider: PAYNOW, target: {{ description: \"Deposit\" }}, amountMinor: 5000, currency: \"USD\", contactId: \"{zimbabwean}\""),
    )
    .await;
    assert_eq!(web["status"], "sent", "{web}");
    let page = web["paymentUrl"].as_str().unwrap().to_string();
    assert!(http
        .get(&page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("Pay"));
    let paid = http.post(&page).form(&[("action", "pay")]).send().await.unwrap();
    assert!(paid.status().is_success());
    let id = web["id"].as_str().unwrap().to_string();
    until_paid(&sandbox, &token, &id, "the Paynow checkout paid").await;
    // Paid through Paynow's hashed result callback, not the sweeper's own poll.
    let pool = sandbox.owner_pool().await;
    let correlation: String = sqlx::query_scalar(
        "SELECT metadata->>'correlation_id' FROM events
          WHERE event_type = 'PaymentRequestPaid' AND aggregate_id = $1",
    )
    .bind(format!("installer-1:{id}"))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!correlation.starts_with("paynow-poll:"), "{correlation}");

    // Paynow Express: the customer approves the EcoCash prompt on their phone.
    let express = request_payment(
        &sandbox,
        &token,
        "pn-eco",
        &format!("provider: PAYNOW, mobileMoney: ECOCASH, target: {{ description: \"Deposit\" }}, amountMinor: 2500, currency: \"USD\", contactId: \"{zimbabwean}\""),
    )
    .await;
    assert_eq!(express["status"], "sent", "{express}");
    let id = express["id"].as_str().unwrap().to_string();
    until_paid(&sandbox, &token, &id, "the EcoCash prompt paid").await;

    // M-Pesa: the STK push is answered with the PIN, Daraja confirms.
    let mpesa = request_payment(
        &sandbox,
        &token,
        "mpesa-1",
        &format!("provider: MPESA, target: {{ walletId: \"main\" }}, amountMinor: 10000, currency: \"KES\", contactId: \"{kenyan}\""),
    )
    .await;
    assert_eq!(mpesa["status"], "sent", "{mpesa}");
    let id = mpesa["id"].as_str().unwrap().to_string();
    until_paid(&sandbox, &token, &id, "the M-Pesa prompt paid").await;

    // Stripe Checkout: paid on the sandbox's page, `checkout.session.completed` signed.
    let checkout = request_payment(
        &sandbox,
        &token,
        "stripe-1",
        &format!("provider: STRIPE, target: {{ description: \"Deposit\" }}, amountMinor: 5000, currency: \"USD\", contactId: \"{zimbabwean}\""),
    )
    .await;
    let page = checkout["paymentUrl"].as_str().unwrap().to_string();
    assert!(http.post(&page).send().await.unwrap().status().is_success());
    let id = checkout["id"].as_str().unwrap().to_string();
    until_paid(&sandbox, &token, &id, "the Stripe checkout paid").await;

    // On WhatsApp, through the agency's approved template: to a number WhatsApp refuses, the
    // metered send is refunded; to another it goes out.
    let agency = sandbox.admin(&["mint-token", "--tenant", "agency-1", "--user", "ops", "--role", "owner"]);
    let setup = sandbox
        .graphql(
            &agency,
            "mutation { setPrice(feature: \"message\", unitPrice: 1000) { prices { feature } }
                        purchaseTokens(reference: \"pay-sandbox\", amount: 10000) { __typename } }",
        )
        .await;
    assert!(setup.get("errors").is_none(), "{setup}");
    let refused = contact_of("+263770131026", "agency-1", agency.clone()).await;
    let reachable = contact_of("+263771000888", "agency-1", agency.clone()).await;
    let message =
        "message: { template: \"demo_launch_offer\", language: \"en\", parameters: [\"Pay {amount} here: {link}\"] }";
    for (key, contact) in [("wa-refused", &refused), ("wa-sent", &reachable)] {
        let receipt = request_payment(
            &sandbox,
            &agency,
            key,
            &format!("provider: PAYNOW, target: {{ walletId: \"main\" }}, amountMinor: 1000, currency: \"USD\", contactId: \"{contact}\", {message}"),
        )
        .await;
        assert_eq!(receipt["status"], "sent", "{receipt}");
    }
    // The agency's wallet moves with its demo campaign too: the two sends are read by their
    // own metered actions and outbox rows.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let outbox: Vec<String> = sqlx::query_scalar(
            "SELECT state FROM outbox WHERE tenant_id = 'agency-1' AND idempotency_key LIKE 'payment-request:%' ORDER BY state",
        )
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        let metered: Vec<(String, bool, i64)> = sqlx::query_as(
            "SELECT action_reference, refunded, amount FROM metered_actions
              WHERE tenant_id = 'agency-1' AND action_reference LIKE 'message:%:payment-request:%'
              ORDER BY action_reference",
        )
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        let refunded: Vec<(bool, i64)> = metered
            .iter()
            .map(|(action, refunded, amount)| (action.contains(&refused) && *refunded, *amount))
            .collect();
        let refunds_right = metered.len() == 2
            && metered
                .iter()
                .all(|(action, refunded, amount)| *amount == 1000 && *refunded == action.contains(&refused));
        if outbox == ["failed", "sent"] && refunds_right {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refused send refunded and the other sent: not within 180 s: {outbox:?}, {refunded:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
