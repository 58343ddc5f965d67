//! Rebuilding every projection, the workers' feeds included, leaves the system as it was and
//! repeats no side effect (issue 18, decision 0013).
//!
//! The demo is loaded and every background worker runs until nothing more happens, against a
//! loopback Graph API that counts what it is asked. Then every projector is rebuilt from zero
//! and every worker runs again: the log gains no event, the Graph API gets no request, and
//! every table (read models, feeds, the workers' own tables, the log) holds the same rows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chronicle_api::app::projectors;
use chronicle_commands::campaigns::CampaignConfig;
use chronicle_commands::media::FetcherConfig;
use chronicle_commands::workers::{WorkerSettings, Workers};
use chronicle_tests::{delivery, sender_config, serve_loopback, table_rows, wamid, TestApp};
use serde_json::{json, Value};
use sqlx::PgPool;

const TOKEN: &str = "graph-token";

/// A Graph API on loopback that accepts every send and serves every media object, counting
/// the requests.
#[derive(Clone, Default)]
struct Graph {
    sends: Arc<AtomicUsize>,
    media: Arc<AtomicUsize>,
    base: Arc<std::sync::Mutex<String>>,
}

async fn send(State(graph): State<Graph>, Path(_number): Path<String>) -> Json<Value> {
    let n = graph.sends.fetch_add(1, Ordering::SeqCst);
    Json(json!({"messaging_product": "whatsapp", "messages": [{"id": format!("wamid.rebuild.{n}")}]}))
}

async fn describe(State(graph): State<Graph>, Path(media_id): Path<String>) -> Json<Value> {
    graph.media.fetch_add(1, Ordering::SeqCst);
    let base = graph.base.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Json(json!({"url": format!("{base}/files/{media_id}"), "mime_type": "image/png", "id": media_id}))
}

async fn download(State(graph): State<Graph>) -> impl IntoResponse {
    graph.media.fetch_add(1, Ordering::SeqCst);
    ([(header::CONTENT_TYPE, "image/png")], b"not really a png".to_vec())
}

impl Graph {
    /// Serves on 127.0.0.1:0; returns the Graph base URL.
    async fn serve(&self) -> String {
        let app = Router::new()
            .route("/v21.0/{number}/messages", post(send))
            .route("/v21.0/{media_id}", get(describe))
            .route("/files/{media_id}", get(download))
            .with_state(self.clone());
        let base = serve_loopback(app).await;
        *self.base.lock().unwrap_or_else(|e| e.into_inner()) = base.clone();
        format!("{base}/v21.0")
    }

    fn requests(&self) -> (usize, usize) {
        (self.sends.load(Ordering::SeqCst), self.media.load(Ordering::SeqCst))
    }
}

fn workers(app: &TestApp, base: &str) -> Workers {
    let mut fetcher = FetcherConfig::new(base, TOKEN);
    fetcher.backoff = Duration::ZERO;
    fetcher.request_timeout = Duration::from_secs(5);
    let settings = WorkerSettings {
        sender: Some(sender_config(base, TOKEN)),
        fetcher: Some(fetcher),
        campaigns: CampaignConfig {
            recipients_per_second: 1_000,
            tick: Duration::ZERO,
            ..CampaignConfig::default()
        },
        payments: None,
    };
    Workers::new(&app.state.commands, &app.keys(), settings).unwrap_or_else(|e| panic!("{e}"))
}

/// Projects and runs every worker until a round appends no event; answers the rounds.
async fn run_until_quiet(app: &TestApp, workers: &Workers) -> usize {
    for round in 1..=30 {
        let before = app.count("SELECT count(*) FROM events").await;
        app.project().await;
        workers.inbox.drain().await.unwrap_or_else(|e| panic!("inbox: {e}"));
        workers
            .follow_ups
            .drain()
            .await
            .unwrap_or_else(|e| panic!("follow-ups: {e}"));
        workers
            .installations
            .drain()
            .await
            .unwrap_or_else(|e| panic!("installations: {e}"));
        workers
            .campaigns
            .drain()
            .await
            .unwrap_or_else(|e| panic!("campaigns: {e}"));
        if let Some(sender) = &workers.sender {
            sender.drain().await.unwrap_or_else(|e| panic!("sender: {e}"));
        }
        if let Some(media) = &workers.media {
            media.drain().await.unwrap_or_else(|e| panic!("media: {e}"));
        }
        workers
            .wallet_sweeper
            .drain()
            .await
            .unwrap_or_else(|e| panic!("wallets: {e}"));
        workers
            .service_sweeper
            .drain()
            .await
            .unwrap_or_else(|e| panic!("service: {e}"));
        workers
            .request_expiry
            .run_once(1_000)
            .await
            .unwrap_or_else(|e| panic!("payment requests: {e}"));
        app.project().await;
        if app.count("SELECT count(*) FROM events").await == before {
            return round;
        }
    }
    panic!("the workers were still appending after 30 rounds");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn rebuilding_every_projection_feeds_included_changes_nothing_and_repeats_no_side_effect(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.load_demo().await;
    // The demo has no media: a customer of another tenant sends a photo.
    app.tenant_with_number("rebuild-1", "555000999").await;
    let customer = "263771000999";
    let image = json!({"from": customer, "id": wamid(customer, 1), "timestamp": chrono::Utc::now().timestamp().to_string(),
                       "type": "image", "image": {"id": "998877665544", "mime_type": "image/png"}});
    let (status, _) = app
        .post_delivery(&delivery("555000999", &[(customer, "Rudo")], vec![image], vec![]))
        .await;
    assert_eq!(status, axum::http::StatusCode::OK);
    let graph = Graph::default();
    let base = graph.serve().await;
    let workers = workers(&app, &base);
    run_until_quiet(&app, &workers).await;
    let (sends, media) = graph.requests();
    let before = table_rows(&app.pool, false).await;
    // The demo gives every worker something to do, so the rebuild has work to not repeat.
    for (table, at_least) in [
        ("outbox", 1),
        ("call_follow_ups", 1),
        ("campaign_runs", 1),
        ("campaign_outcomes", 1),
        ("installation_openings", 1),
        ("installation_commissionings", 1),
        ("media_jobs", 1),
    ] {
        let rows = before.get(table).map_or(0, Vec::len);
        assert!(rows >= at_least, "{table} has {rows} rows after the demo ran");
    }
    assert!(sends > 0 && media > 0, "sends {sends}, media {media}");

    app.rebuild_only(&[]).await;
    run_until_quiet(&app, &workers).await;

    assert_eq!(graph.requests(), (sends, media), "the rebuild sent or fetched again");
    let after = table_rows(&app.pool, false).await;
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    let changed: Vec<&String> = before.keys().filter(|t| before[*t] != after[*t]).collect();
    for table in &changed {
        let (b, a) = (&before[*table], &after[*table]);
        let first = b.iter().zip(a.iter()).find(|(x, y)| x != y);
        eprintln!(
            "{table}: {} rows before, {} after; first difference: {first:?}",
            b.len(),
            a.len()
        );
    }
    assert!(changed.is_empty(), "tables changed by the rebuild: {changed:?}");
    // Every feed a worker reads is declared by the projector that writes it.
    let declared: Vec<&str> = projectors(&app.state)
        .iter()
        .flat_map(|p| p.feeds().iter().copied())
        .collect();
    let feeds: Vec<&String> = after.keys().filter(|t| t.ends_with("_feed")).collect();
    assert_eq!(feeds.len(), declared.len(), "{feeds:?} vs {declared:?}");
    for feed in feeds {
        assert!(declared.contains(&feed.as_str()), "{feed} is declared by no projector");
    }
}
