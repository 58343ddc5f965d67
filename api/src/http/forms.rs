//! Lead intake from a tenant's website: `POST /intake/leads/{source}` for `web_form`, `chatbot`
//! and `calculator` submissions (see `chronicle_commands::intake::forms` for the fields).
//!
//! - 401 `UNAUTHENTICATED`: no `X-Intake-Key`, or one that names no tenant (or was revoked).
//! - 400 with a code and the reason: an unknown source or a malformed submission; nothing is
//!   stored.
//! - 201 `{"leadId", "outcome": "captured" | "attached"}` for a new capture; 200 with
//!   `"repeated"` for a submission id seen before (idempotent: nothing new is stored).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use chronicle_commands::intake::forms::{parse_source, parse_submission, tenant_of_key, KEY_HEADER};
use chronicle_commands::leads::{CaptureOutcome, Leads};
use chronicle_domain::metadata::{Actor, CommandMetadata};
use serde_json::json;
use tracing::Instrument;

use super::CorrelationId;
use crate::app::AppState;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().route("/intake/leads/{source}", post(submit))
}

async fn submit(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = headers
        .get(KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::Unauthenticated("an intake key is required (X-Intake-Key)".into()))?;
    let tenant = tenant_of_key(&state.pool, key.trim())
        .await?
        .ok_or_else(|| ApiError::Unauthenticated("the intake key is not valid".into()))?;
    let span =
        tracing::info_span!("lead.intake", tenant.id = %tenant, correlation.id = %correlation.0, lead.source = %source);
    async move {
        let source = parse_source(&source).map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?;
        let idempotency_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
        let input = parse_submission(source, &body, idempotency_key, chrono::Utc::now()).map_err(|e| {
            tracing::info!(reason = %e, "lead submission refused");
            ApiError::bad_request(e.code(), e.to_string())
        })?;
        let leads = Leads::new(state.commands.clone(), state.keys.clone());
        let metadata = CommandMetadata {
            tenant_id: tenant,
            actor: Actor::System {
                component: format!("intake:{}", source.as_str()),
            },
            correlation_id: correlation.0.clone(),
            causation_id: format!("intake:{}", input.capture_ref),
        };
        let captured = leads.capture(input, &metadata).await?;
        let status = if captured.outcome == CaptureOutcome::Repeated {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok((
            status,
            Json(json!({ "leadId": captured.lead_id, "outcome": captured.outcome.as_str() })),
        )
            .into_response())
    }
    .instrument(span)
    .await
}
