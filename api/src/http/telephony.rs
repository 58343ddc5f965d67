//! The telephony webhook: `POST /webhooks/telephony/twilio/{tenant_id}`, Twilio's call-status
//! callback for the tenant the path names. One platform Twilio account signs every callback
//! with `TWILIO_AUTH_TOKEN`; the signature covers `CHRONICLE_PUBLIC_URL` + the path (and query)
//! and every form parameter, so the tenant in the path is signed too.
//!
//! Answers: 503 when no token is configured; 400 `MALFORMED_FORM` for a body that is not a
//! form; 401 for a missing or wrong signature (nothing stored); 400 `UNKNOWN_TENANT`; 400
//! `MALFORMED_CALL_STATUS` naming every bad field (nothing stored); otherwise the callback is
//! stored in the webhook inbox (deduplicated by `CallSid` and status), answered 200 at once,
//! and processed by the inbox worker (`chronicle_commands::intake::inbox`), so a crash means a
//! retry, never a lost call. A call still in progress records nothing; a repeated callback
//! records nothing more (the inbox drops the repeat, and the Call aggregate keeps the first
//! report of a `CallSid`).

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use chronicle_commands::http::form::parse_form;
use chronicle_commands::intake::inbox::store_call_status;
use chronicle_commands::intake::telephony::{parse_call_status, verify_twilio_signature, SIGNATURE_HEADER};
use chronicle_commands::tenants::tenant_exists;
use chronicle_domain::tenant::TenantId;
use serde_json::json;

use super::CorrelationId;
use crate::app::AppState;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/telephony/twilio/{tenant_id}", post(call_status))
}

async fn call_status(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    Path(tenant_id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(token) = state.twilio_auth_token.as_ref() else {
        return Err(ApiError::Unavailable(
            "the telephony webhook is off: TWILIO_AUTH_TOKEN is not set".into(),
        ));
    };
    let params = parse_form(&body).ok_or_else(|| {
        ApiError::bad_request(
            "MALFORMED_FORM",
            "the body is not an application/x-www-form-urlencoded form",
        )
    })?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
    let url = format!("{}{path}", state.public_url);
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if let Err(e) = verify_twilio_signature(token.expose(), &url, &params, signature) {
        tracing::warn!(reason = %e, "telephony callback refused: bad signature");
        return Err(ApiError::Unauthenticated(e.to_string()));
    }
    let tenant = match TenantId::parse(&tenant_id) {
        Ok(t) if tenant_exists(&state.pool, &t).await? => t,
        _ => {
            return Err(ApiError::bad_request(
                "UNKNOWN_TENANT",
                "the path names no tenant of this platform",
            ))
        }
    };
    let report =
        parse_call_status(&params).map_err(|e| ApiError::bad_request("MALFORMED_CALL_STATUS", e.to_string()))?;
    let new = store_call_status(&state.pool, &state.id_key, &tenant, &report, &params, &correlation.0).await?;
    tracing::info!(tenant.id = %tenant, call.status = report.status.as_str(), new, "telephony callback stored");
    if new {
        state.workers.inbox_kick.notify_one();
    }
    Ok((StatusCode::OK, Json(json!({ "received": true, "new": new }))).into_response())
}
