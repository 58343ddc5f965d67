//! The WhatsApp Cloud API webhook: `GET` answers the verification handshake; `POST` checks
//! `X-Hub-Signature-256` over the raw body, stores every message and status of the delivery in
//! the inbox (deduplicated), answers 200 at once, and wakes the inbox worker.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chronicle_commands::intake::inbox;
use chronicle_commands::intake::whatsapp::{parse_delivery, verify_signature};
use chronicle_domain::crypto::constant_time_eq;
use serde_json::json;

use super::CorrelationId;
use crate::app::AppState;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/whatsapp", get(handshake).post(deliver))
}

/// `hub.mode=subscribe&hub.verify_token=…&hub.challenge=…` → the challenge, if the token is ours.
async fn handshake(State(state): State<AppState>, Query(params): Query<HashMap<String, String>>) -> Response {
    let mode = params.get("hub.mode").map(String::as_str);
    let token = params.get("hub.verify_token").map(String::as_str);
    match (mode, token, params.get("hub.challenge")) {
        (Some("subscribe"), Some(token), Some(challenge))
            if constant_time_eq(token.as_bytes(), state.whatsapp_verify_token.expose().as_bytes()) =>
        {
            (StatusCode::OK, challenge.clone()).into_response()
        }
        (Some("subscribe"), _, Some(_)) => {
            ApiError::Forbidden("the verify token does not match WHATSAPP_VERIFY_TOKEN".into()).into_response()
        }
        _ => ApiError::bad_request(
            "BAD_HANDSHAKE",
            "expected hub.mode=subscribe, hub.verify_token and hub.challenge",
        )
        .into_response(),
    }
}

async fn deliver(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let signature = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok());
    if let Err(e) = verify_signature(state.whatsapp_app_secret.expose().as_bytes(), &body, signature) {
        tracing::warn!(reason = %e, "WhatsApp delivery refused: bad signature");
        return Err(ApiError::Unauthenticated(e.to_string()));
    }
    let items = parse_delivery(&body).map_err(|e| ApiError::bad_request("MALFORMED_DELIVERY", e.to_string()))?;
    let stored = inbox::store(&state.pool, &state.id_key, &items, &correlation.0).await?;
    tracing::info!(
        items = items.len(),
        new = stored.new,
        duplicates = stored.duplicates,
        "WhatsApp delivery stored"
    );
    if stored.new > 0 {
        state.workers.inbox_kick.notify_one();
    }
    Ok((
        StatusCode::OK,
        Json(json!({ "received": items.len(), "new": stored.new, "duplicates": stored.duplicates })),
    )
        .into_response())
}
