//! Routes: GraphQL (`/graphql`, GraphiQL on GET with its assets under `/graphql/assets/`,
//! subscriptions on `/graphql/ws`), the WhatsApp
//! webhook, `/health` and `/metrics`. Each module has its own `router()`, merged here.

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tracing::Instrument;

use crate::app::AppState;

pub mod auth;
pub mod forms;
pub mod graphiql;
pub mod graphql;
pub mod graphql_ws;
pub mod media;
pub mod ops;
pub mod payments;
pub mod telephony;
pub mod whatsapp;

/// The largest request body accepted anywhere (WhatsApp deliveries are far smaller).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The header carrying a request's correlation id (taken from the caller, or made).
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// A request's correlation id, in its extensions.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// Gives every request a correlation id and a span carrying it, and echoes it back.
async fn correlate(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request.extensions_mut().insert(CorrelationId(id.clone()));
    // The matched route template, not the path: a path may carry a secret (M-Pesa callbacks).
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    let span = tracing::info_span!("http.request", method = %request.method(), route = %route, correlation.id = %id);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}

/// The router of every route.
pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    // Development mode's WhatsApp sandbox only: production has none of its routes.
    let (sandbox, sandbox_uploads) = if state.sandbox.is_some() {
        (
            crate::sandbox::router(),
            crate::sandbox::upload_router()
                .layer(DefaultBodyLimit::max(graphql::MAX_UPLOAD_BODY_BYTES))
                .layer(RequestBodyLimitLayer::new(graphql::MAX_UPLOAD_BODY_BYTES)),
        )
    } else {
        (Router::new(), Router::new())
    };
    // GraphQL reads its own bodies (its 413 is a GraphQL error, see `graphql`).
    let payment_sandbox = if state.payment_sandbox.is_some() {
        crate::payment_sandbox::router()
    } else {
        Router::new()
    };
    let rest = Router::new()
        .merge(sandbox)
        .merge(payment_sandbox)
        .merge(graphiql::router())
        .merge(whatsapp::router())
        .merge(forms::router())
        .merge(auth::router())
        .merge(ops::router())
        .merge(telephony::router())
        .merge(media::router())
        .merge(payments::router())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Also bounds bodies read as streams, not only `Bytes`.
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES));
    Router::new()
        .merge(graphql::router())
        .merge(sandbox_uploads)
        .merge(rest)
        .layer(middleware::from_fn_with_state(metrics, crate::metrics::track))
        .layer(middleware::from_fn(correlate))
        .with_state(state)
}
