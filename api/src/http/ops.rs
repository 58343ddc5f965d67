//! `/health` (PostgreSQL, and Redis when configured) and `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chronicle_projections::runtime::{lag, oldest_open_write_seconds};
use serde_json::json;

use crate::app::{projectors, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/events/catalogue", get(catalogue))
}

/// The event catalogue (`chronicle_domain::catalogue`): every event type with the JSON Schema
/// of its data in the event contract. Public, like API documentation: it holds no data.
async fn catalogue() -> impl IntoResponse {
    static CATALOGUE: std::sync::LazyLock<serde_json::Value> =
        std::sync::LazyLock::new(chronicle_domain::catalogue::catalogue);
    axum::Json(CATALOGUE.clone())
}

/// 200 when every dependency answers, 503 naming the one that does not. The cause is logged,
/// not shown: this endpoint is unauthenticated.
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let postgres = match sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool).await {
        Ok(_) => "ok",
        Err(e) => {
            tracing::error!(error = %e, "health check: PostgreSQL does not answer");
            "unavailable"
        }
    };
    let redis = match &state.redis {
        None => "not configured",
        Some(connection) => {
            let mut connection = connection.clone();
            match redis::cmd("PING").query_async::<String>(&mut connection).await {
                Ok(_) => "ok",
                Err(e) => {
                    tracing::error!(error = %e, "health check: Redis does not answer");
                    "unavailable"
                }
            }
        }
    };
    let healthy = postgres == "ok" && (redis == "ok" || redis == "not configured");
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "status": if healthy { "ok" } else { "unavailable" }, "postgres": postgres, "redis": redis })),
    )
}

/// Refreshes the lag gauges, then renders every metric.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    for projector in projectors(&state) {
        match lag(&state.pool, projector.name(), projector.event_types()).await {
            Ok(l) => {
                state
                    .metrics
                    .projectors
                    .lag_events
                    .with_label_values(&[projector.name()])
                    .set(l.events);
                state
                    .metrics
                    .projectors
                    .lag_seconds
                    .with_label_values(&[projector.name()])
                    .set(l.seconds);
            }
            Err(e) => tracing::warn!(error = %e, projector = projector.name(), "could not measure projector lag"),
        }
    }
    match oldest_open_write_seconds(&state.pool).await {
        Ok(s) => state.metrics.projectors.oldest_open_write_seconds.set(s),
        Err(e) => tracing::warn!(error = %e, "could not measure open writes"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
