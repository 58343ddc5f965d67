//! The README's run command, end to end: `chronicle serve --demo` with no `DATABASE_URL` starts
//! its own PostgreSQL cluster in the data directory, loads the demo data, prints a token, and
//! serves GraphQL with it on localhost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn chronicle(data_dir: &std::path::Path, pg_port: u16, bind: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("CHRONICLE_DATA_DIR", data_dir)
        .env("CHRONICLE_EMBEDDED_PG_PORT", pg_port.to_string())
        .env("CHRONICLE_BIND", bind)
        .env("CHRONICLE_LOG_FORMAT", "json");
    command
}

#[tokio::test]
async fn serve_demo_starts_its_own_postgres_and_serves_the_demo_inbox() {
    let data_dir = std::env::temp_dir().join(format!("chronicle-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir).expect("temp dir");
    let (pg_port, http_port) = (free_port(), free_port());
    let bind = format!("127.0.0.1:{http_port}");

    let mut server = chronicle(&data_dir, pg_port, &bind)
        .args(["serve", "--demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the chronicle binary starts");
    let stdout = server.stdout.take().expect("stdout");
    let token = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.trim().strip_prefix("Authorization: Bearer ").map(str::to_string))
    })
    .await
    .expect("reader")
    .expect("the server prints a token for the demo tenant");

    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let reply: serde_json::Value = loop {
        let query = serde_json::json!({"query": "{ viewer { tenantId } conversations(first: 10) { edges { node { contactName lastMessage { text } } } } }"});
        let sent = client
            .post(format!("http://{bind}/graphql"))
            .bearer_auth(&token)
            .json(&query)
            .send()
            .await;
        if let Ok(response) = sent {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let edges = body["data"]["conversations"]["edges"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0);
            if edges == 4 {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "the demo inbox was not served within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(reply["data"]["viewer"]["tenantId"], "demo-solar");
    assert!(reply.to_string().contains("Tendai Moyo"), "{reply}");

    let page = client
        .get(format!("http://{bind}/graphql"))
        .send()
        .await
        .expect("GraphiQL");
    assert!(page
        .text()
        .await
        .unwrap_or_default()
        .to_lowercase()
        .contains("graphiql"));
    let health: serde_json::Value = client
        .get(format!("http://{bind}/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(health["postgres"], "ok");

    let _ = server.kill();
    let _ = server.wait();
    let stopped = chronicle(&data_dir, pg_port, &bind)
        .args(["admin", "stop-db"])
        .status()
        .expect("stop-db runs");
    assert!(stopped.success());
    let _ = std::fs::remove_dir_all(&data_dir);
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
