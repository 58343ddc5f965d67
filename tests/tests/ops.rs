//! `/health`, `/metrics`, and wake-ups through Redis.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chronicle_tests::*;
use sqlx::PgPool;

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap_or_else(|e| panic!("{e}"))
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn health_checks_postgres_and_redis_when_configured(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let (status, body) = app.send(get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["postgres"], "ok");
    assert_eq!(body["redis"], "not configured");

    let with_redis = TestApp::with_settings(pool, settings(true)).await;
    let (status, body) = with_redis.send(get("/health")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["redis"], "ok");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn health_reports_503_when_postgres_is_gone(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.state.pool.close().await;
    let (status, body) = app.send(get("/health")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["postgres"], "unavailable");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn metrics_show_requests_appends_and_projector_lag(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "444000444").await;
    let body = delivery(
        "444000444",
        &[],
        vec![text_message("263771000011", "wamid.m1", 1_790_000_000, "hi")],
        vec![],
    );
    app.post_delivery(&body).await;
    app.drain().await;
    let (status, text) = app.send(get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("chronicle_http_requests_total{method=\"POST\",route=\"/webhooks/whatsapp\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("chronicle_commands_total{aggregate=\"Conversation\",outcome=\"appended\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("chronicle_projector_lag_events{projector=\"conversations\"}"),
        "{text}"
    );
    assert!(text.contains("chronicle_log_oldest_open_write_seconds"), "{text}");
    assert!(!text.contains("263771000011"), "no personal data in metrics");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn with_redis_configured_an_append_wakes_readers_through_redis(pool: PgPool) {
    let app = TestApp::with_settings(pool, settings(true)).await;
    app.tenant_with_number("redis-wake-tenant", "555000555").await;
    let mut wake = app.state.wakeups.subscribe();
    // Give the subscriber a moment to be registered with Redis before publishing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = delivery(
        "555000555",
        &[],
        vec![text_message("263771000011", "wamid.r1", 1_790_000_000, "hi")],
        vec![],
    );
    app.post_delivery(&body).await;
    app.drain().await;
    let woken = wake.wait(Some("redis-wake-tenant"), Duration::from_secs(30)).await;
    assert!(
        matches!(woken, chronicle_projections::wake::Woken::Notified),
        "{woken:?}"
    );
}
