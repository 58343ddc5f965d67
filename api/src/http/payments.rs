//! Payment callbacks, one route per tenant and provider:
//!
//! - `POST /webhooks/payments/{tenant_id}/paynow`: Paynow's result URL (form; SHA-512 hash,
//!   then the poll URL is polled before the payment counts);
//! - `POST /webhooks/payments/{tenant_id}/mpesa/{secret}`: Daraja's STK callback URL (no
//!   signature: the secret path, then the callback must belong to a payment request's STK push
//!   and be confirmed by an STK status query; anything else is kept for finance and answered
//!   200 `{"counted": false, "refused": CODE}` so Daraja stops retrying);
//! - `POST /webhooks/payments/{tenant_id}/stripe`: a Stripe-style signed webhook
//!   (`Stripe-Signature`, 300 s tolerance).
//!
//! Processing is synchronous (see `chronicle_commands::payments`). Answers: 200
//! `{"counted": true, "paymentId", "status", …}` for a recorded payment (a repeated delivery
//! answers the first outcome and records nothing more), 200 `{"counted": false, "reason"}` for a
//! verified callback that is not a payment to count (not paid, another event type); 4xx with a
//! code and the reason, storing nothing, for a bad hash (401 `BAD_HASH`), a bad or old signature
//! (401 `BAD_SIGNATURE`), a wrong secret path (404 `UNKNOWN_CALLBACK_PATH`), a poll URL off the
//! configured Paynow base (400 `POLL_URL_REFUSED`), a malformed body (400) or a provider the
//! tenant has not configured (404); 5xx when the provider's status call or the database failed,
//! so the provider delivers again. M-Pesa gets Daraja's `ResultCode`/`ResultDesc` shape too.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use chronicle_commands::payments::stripe::SIGNATURE_HEADER;
use chronicle_commands::payments::{CallbackError, CallbackOutcome};
use chronicle_domain::payment::PaymentMatch;
use chronicle_domain::tenant::TenantId;
use serde_json::{json, Value};
use tracing::Instrument;

use super::CorrelationId;
use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/payments/{tenant_id}/paynow", post(paynow))
        .route("/webhooks/payments/{tenant_id}/mpesa/{secret}", post(mpesa))
        .route("/webhooks/payments/{tenant_id}/stripe", post(stripe))
        .route("/payments/done", axum::routing::get(done))
}

/// `GET /payments/done`: where a provider's payment page sends the customer after paying
/// (Stripe Checkout's `success_url`). The payment itself counts only by the provider's signed
/// callback, never by a visit here.
async fn done() -> axum::response::Html<&'static str> {
    axum::response::Html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>Payment received</title></head><body \
         style=\"font-family: sans-serif; max-width: 32rem; margin: 4rem auto; text-align: center\">\
         <h1>Thank you</h1><p>Your payment is on its way to us. You can close this page.</p></body></html>",
    )
}

/// The JSON of an outcome.
fn outcome_body(outcome: &CallbackOutcome) -> Value {
    match outcome {
        CallbackOutcome::Ignored { reason } => json!({ "counted": false, "reason": reason }),
        CallbackOutcome::Refused { reason, request_id } => {
            json!({ "counted": false, "refused": reason, "requestId": request_id })
        }
        CallbackOutcome::Recorded {
            payment_id,
            status,
            matched,
            unmatched_reason,
        } => {
            let (kind, id) = match matched {
                Some(PaymentMatch::Order { order_id }) => (Some("order"), Some(order_id.as_str())),
                Some(PaymentMatch::Wallet { wallet_id, .. }) => (Some("wallet"), Some(wallet_id.as_str())),
                None => (None, None),
            };
            json!({
                "counted": true,
                "paymentId": payment_id,
                "status": status.as_str(),
                "matchedKind": kind,
                "matchedId": id,
                "unmatchedReason": unmatched_reason,
            })
        }
    }
}

/// Answers an error: logged once here (a failure of ours with its cause, a refusal as info).
fn error_response(error: &CallbackError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = if status.is_server_error() {
        tracing::error!(code = error.code(), error = %error, "payment callback failed; the provider will retry");
        match error {
            CallbackError::Upstream(_) | CallbackError::PollHashMismatch => error.to_string(),
            _ => "internal error".to_string(),
        }
    } else {
        tracing::info!(code = error.code(), reason = %error, "payment callback refused");
        error.to_string()
    };
    (
        status,
        Json(json!({ "error": { "code": error.code(), "message": message } })),
    )
        .into_response()
}

fn tenant_of(id: &str) -> Result<TenantId, CallbackError> {
    TenantId::parse(id).map_err(|_| CallbackError::UnknownTenant)
}

/// Runs a callback's work in its span and answers it (`mpesa`: with Daraja's acknowledgement
/// fields on success).
async fn answer(
    provider: &'static str,
    tenant_id: &str,
    correlation: &str,
    work: impl std::future::Future<Output = Result<CallbackOutcome, CallbackError>>,
) -> Response {
    let span = tracing::info_span!(
        "payment.callback",
        tenant.id = %tenant_id,
        correlation.id = %correlation,
        payment.provider = provider
    );
    async move {
        match work.await {
            Ok(outcome) => {
                let mut body = outcome_body(&outcome);
                if let (Some(map), "mpesa") = (body.as_object_mut(), provider) {
                    map.insert("ResultCode".into(), json!(0));
                    map.insert("ResultDesc".into(), json!("Accepted"));
                }
                (StatusCode::OK, Json(body)).into_response()
            }
            Err(e) => error_response(&e),
        }
    }
    .instrument(span)
    .await
}

async fn paynow(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    Path(tenant_id): Path<String>,
    body: Bytes,
) -> Response {
    answer("paynow", &tenant_id, &correlation.0, async {
        let tenant = tenant_of(&tenant_id)?;
        state.payments.paynow(&tenant, &body, &correlation.0).await
    })
    .await
}

async fn mpesa(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    Path((tenant_id, secret)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    answer("mpesa", &tenant_id, &correlation.0, async {
        let tenant = tenant_of(&tenant_id).map_err(|_| CallbackError::WrongSecretPath)?;
        state.payments.mpesa(&tenant, &secret, &body, &correlation.0).await
    })
    .await
}

async fn stripe(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer("stripe", &tenant_id, &correlation.0, async {
        let tenant = tenant_of(&tenant_id)?;
        let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
        state
            .payments
            .stripe(&tenant, signature, &body, chrono::Utc::now(), &correlation.0)
            .await
    })
    .await
}
