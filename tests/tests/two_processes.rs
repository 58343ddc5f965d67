//! Subscriptions across API processes (issue 13): two API processes over one database and one
//! Redis, each serving on its own port. Events appended through one reach a subscriber of the
//! other in order, each once; and again with Redis killed half-way and started again (delivery
//! goes on by polling meanwhile, and both processes find Redis again by themselves).
//!
//! The Redis server here is the test's own (a `redis-server` on a free port), so killing it
//! disturbs no other test.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chronicle_api::auth::Role;
use chronicle_api::config::Secret;
use chronicle_tests::ws;
use chronicle_tests::TestApp;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A private Redis server, killed when dropped.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut redis = Self { port, child: None };
        redis.run();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn run(&mut self) {
        // On the real clock even when the tests run under libfaketime
        // (scripts/test-shifted-clock.sh): Redis stalls under it, and the shared Redis of
        // scripts/services.sh runs on the real clock too.
        let child = Command::new("redis-server")
            .env_remove("LD_PRELOAD")
            .env_remove("FAKETIME")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server: {e}"));
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not listen on {}", self.port);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// How many connections subscribe to the wake-up channel.
    async fn subscribers(&self) -> i64 {
        let Ok(client) = redis::Client::open(self.url()) else {
            return 0;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return 0;
        };
        let reply: Result<(String, i64), _> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(chronicle_projections::wake::REDIS_CHANNEL)
            .query_async(&mut conn)
            .await;
        reply.map(|(_, n)| n).unwrap_or(0)
    }
}

impl Redis {
    /// How many client connections last ran `PUBLISH` (the writer's announcer, reconnected).
    async fn publishers(&self) -> usize {
        let Ok(client) = redis::Client::open(self.url()) else {
            return 0;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return 0;
        };
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        list.lines().filter(|line| line.contains("cmd=publish")).count()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn app_with_redis(pool: &sqlx::PgPool, redis: &Redis) -> TestApp {
    let mut settings = chronicle_tests::settings(false);
    settings.redis_url = Some(Secret::new(redis.url()));
    TestApp::with_settings(pool.clone(), settings).await
}

async fn ws_subscribe(address: std::net::SocketAddr, token: &str, after: Option<&str>) -> Socket {
    let mut socket = ws::connect(&format!("http://{address}"), token).await;
    ws::subscribe_events(&mut socket, "1", after, None, "cursor position").await;
    socket
}

/// The next event's position (connection_ack and keep-alives skipped).
async fn next_position(socket: &mut Socket) -> i64 {
    loop {
        let message = match tokio::time::timeout(Duration::from_secs(30), socket.next()).await {
            Err(_) => panic!("no event within 30 s"),
            Ok(None) => panic!("the subscription ended"),
            Ok(Some(Err(e))) => panic!("{e}"),
            Ok(Some(Ok(message))) => message,
        };
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap_or_default();
            match value["type"].as_str() {
                Some("next") => {
                    assert!(value["payload"]["errors"].is_null(), "{value}");
                    return value["payload"]["data"]["events"]["position"].as_i64().unwrap_or(0);
                }
                Some("connection_ack" | "ping" | "pong") => continue,
                _ => panic!("unexpected {value}"),
            }
        }
    }
}

/// Appends `count` leads through the process at `address`, eight requests at a time; calls
/// `halfway` once half are acknowledged.
async fn append_through(address: std::net::SocketAddr, token: &str, tag: &str, count: usize, halfway: impl FnOnce()) {
    let http = reqwest::Client::new();
    let url = format!("http://{address}/graphql");
    let query = "mutation($k: String!, $p: String!) { captureLead(input: { idempotencyKey: $k, phone: $p }) { id } }";
    let mut halfway = Some(halfway);
    let mut n = 0;
    while n < count {
        let batch: Vec<_> = (n..(n + 8).min(count))
            .map(|i| {
                let body = json!({"query": query, "variables": {"k": format!("{tag}{i}"), "p": format!("+1555{}{i:06}", tag.len())}});
                http.post(&url).bearer_auth(token).json(&body).send()
            })
            .collect();
        for response in futures::future::join_all(batch).await {
            let reply: Value = response
                .unwrap_or_else(|e| panic!("{e}"))
                .json()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(reply["errors"].is_null(), "{reply}");
        }
        n = (n + 8).min(count);
        if n >= count / 2 {
            if let Some(f) = halfway.take() {
                f();
            }
        }
    }
}

async fn positions(pool: &sqlx::PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT global_position FROM events WHERE tenant_id = 'acme' ORDER BY tx_id, global_position")
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn events_appended_through_one_process_reach_a_subscriber_of_another_with_and_without_redis(pool: sqlx::PgPool) {
    let mut redis = Redis::start();
    let writer = app_with_redis(&pool, &redis).await;
    writer.tenant_with_number("acme", "15550001111").await;
    let reader = app_with_redis(&pool, &redis).await;
    let writer_address = writer.serve().await;
    let reader_address = reader.serve().await;
    let token = writer.token("acme", Role::Owner);
    let mut socket = ws_subscribe(reader_address, &token, None).await;

    // 1,000 leads through the writer: the reader's subscriber gets every event, in order, once.
    append_through(writer_address, &token, "a", 1_000, || {}).await;
    let expected = positions(&pool).await;
    assert!(expected.len() >= 1_000);
    let mut received = Vec::with_capacity(expected.len());
    while received.len() < expected.len() {
        received.push(next_position(&mut socket).await);
    }
    assert_eq!(received, expected);

    // 1,000 more, with Redis killed half-way and started again after the writes.
    append_through(writer_address, &token, "bb", 1_000, || redis.kill()).await;
    redis.run();
    let expected = positions(&pool).await;
    while received.len() < expected.len() {
        received.push(next_position(&mut socket).await);
    }
    assert_eq!(received, expected, "every event once, in order, through the outage");

    // Both processes subscribe to Redis again by themselves, and what is appended now reaches
    // the reader too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while redis.subscribers().await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the processes did not resubscribe to Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    append_through(writer_address, &token, "ccc", 10, || {}).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while redis.publishers().await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer did not publish on Redis again"
        );
        append_through(writer_address, &token, "dddd", 1, || {}).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expected = positions(&pool).await;
    while received.len() < expected.len() {
        received.push(next_position(&mut socket).await);
    }
    assert_eq!(received, expected);
}
