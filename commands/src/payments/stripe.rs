//! Stripe: Checkout Sessions for payment requests, and signed webhooks.
//!
//! # Asking
//!
//! [`create_checkout_session`] opens a Checkout Session (`POST /v1/checkout/sessions`, form
//! encoded, the tenant's secret key as Bearer, `<tenant>:<request id>` as `Idempotency-Key`)
//! for one line of the amount asked, with the payment request's id as `client_reference_id`,
//! and the tenant and request ids in the session's `metadata` and in its payment intent's
//! (`payment_intent_data[metadata]`), so both webhook events below name them (two tenants
//! sharing one Stripe account never take each other's payments). Stripe answers the session's
//! `id` (`cs_…`) and `url`, the page the customer pays on.
//!
//! Every parameter is a function of the stored request, so a retry after Stripe was
//! unreachable sends the same form and Stripe's idempotency answers the same session. Stripe
//! takes a session's `expires_at` from 30 minutes to 24 hours ahead: it is the request's expiry
//! brought into 45 minutes to 23.5 hours after the request was recorded (a payment after the
//! request's own expiry is refused by the request and kept for finance), which leaves a retry
//! 15 minutes. Stripe answering that the key is in use (two calls at once) or was used with
//! other parameters is not a refusal: the request stays open and the call may be repeated.
//! Cancelling a request expires its session ([`expire_checkout_session`]).
//!
//! # Webhooks
//!
//! The header `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=…]` carries HMAC-SHA256 over
//! `<t>.<raw body>` under the endpoint's signing secret. A request is accepted when any `v1`
//! matches (several appear while a secret is being rolled) and `t` is within
//! [`TOLERANCE_SECS`] of the server's clock (an old, replayed delivery is refused). The signature
//! is the proof: no status call is needed.
//!
//! [`parse_event`] reads:
//!
//! - `checkout.session.completed` with `payment_status: "paid"` and `metadata.request_id`: a
//!   payment of the request its session belongs to (`amount_total`, `currency`, the
//!   `payment_intent` as the reference); a session Chronicle did not open (no `request_id`) is
//!   ignored;
//! - `payment_intent.succeeded`: with `metadata.request_id`, a payment of that request (the
//!   same reference, so the two events of one payment count once); without it, a payment
//!   matched by `metadata.reference` (the older way, for intents Chronicle did not create);
//! - anything else: ignored (answered 200).
//!
//! A payment's time is the event's `created` (when Stripe saw it), not when it reached us: a
//! delivery delayed by an outage still pays a request that was open at that time.

use chronicle_domain::crypto::{constant_time_eq, hmac_sha256};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::CallbackError;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";

/// How far `t` may be from now, either way.
pub const TOLERANCE_SECS: i64 = 300;

fn mac(secret: &str, timestamp: &str, payload: &[u8]) -> [u8; 32] {
    hmac_sha256(secret.as_bytes(), &[timestamp.as_bytes(), b".", payload])
}

/// The `Stripe-Signature` value for a payload at `timestamp` (for simulators and tests).
pub fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let digest = mac(secret, &timestamp.to_string(), payload);
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Checks a `Stripe-Signature` header against the raw body at `now`.
pub fn verify_signature(
    secret: &str,
    header: Option<&str>,
    payload: &[u8],
    now: DateTime<Utc>,
) -> Result<(), CallbackError> {
    let header = header.ok_or_else(|| CallbackError::BadSignature("the Stripe-Signature header is missing".into()))?;
    let mut timestamp: Option<&str> = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = Some(value),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| CallbackError::BadSignature("the signature has no timestamp".into()))?;
    let seconds: i64 = timestamp
        .parse()
        .map_err(|_| CallbackError::BadSignature("the signature's timestamp is not a number".into()))?;
    if now.timestamp().abs_diff(seconds) > TOLERANCE_SECS.unsigned_abs() {
        return Err(CallbackError::BadSignature(format!(
            "the signature's timestamp is more than {TOLERANCE_SECS} s from now"
        )));
    }
    if signatures.is_empty() {
        return Err(CallbackError::BadSignature("the signature has no v1 value".into()));
    }
    let expected = mac(secret, timestamp, payload);
    let matched = signatures
        .iter()
        .filter_map(|s| hex::decode(s).ok())
        .any(|bytes| constant_time_eq(&expected, &bytes));
    if matched {
        Ok(())
    } else {
        Err(CallbackError::BadSignature(
            "no v1 signature matches the payload".into(),
        ))
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    /// When Stripe created the event (Unix seconds).
    #[serde(default)]
    created: Option<i64>,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct PaymentIntent {
    id: String,
    #[serde(default)]
    amount_received: Option<i64>,
    amount: i64,
    currency: String,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Session {
    id: String,
    #[serde(default)]
    amount_total: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    payment_status: Option<String>,
    #[serde(default)]
    payment_intent: Option<String>,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A succeeded payment intent that names no payment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripePayment {
    pub payment_intent: String,
    pub amount_minor: i64,
    /// Uppercase ISO 4217.
    pub currency: String,
    /// `metadata.reference` (empty when absent: the payment is kept unmatched).
    pub merchant_reference: String,
}

/// A payment that names a payment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPayment {
    /// `metadata.request_id`.
    pub request_id: String,
    /// `metadata.tenant_id` (absent on sessions opened before it was set).
    pub tenant_id: Option<String>,
    /// When Stripe saw the payment (the event's `created`).
    pub at: Option<DateTime<Utc>>,
    /// The Checkout Session, for `checkout.session.completed`.
    pub session_id: Option<String>,
    /// The payment's reference: the payment intent (the session's id when it names none).
    pub reference: String,
    pub amount_minor: i64,
    /// Uppercase ISO 4217.
    pub currency: String,
}

/// What a verified event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeEvent {
    /// A payment of a payment request.
    RequestPaid(RequestPayment),
    /// A payment intent that names no request.
    Payment(StripePayment),
    /// Nothing to record, and why.
    Ignored(String),
}

fn text(metadata: &std::collections::BTreeMap<String, serde_json::Value>, key: &str) -> Option<String> {
    match metadata.get(key) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Reads a verified event (see the module docs).
pub fn parse_event(payload: &[u8]) -> Result<StripeEvent, CallbackError> {
    let event: Event =
        serde_json::from_slice(payload).map_err(|e| CallbackError::Malformed(format!("not a Stripe event: {e}")))?;
    let at = event
        .created
        .and_then(|seconds| DateTime::<Utc>::from_timestamp(seconds, 0));
    match event.kind.as_str() {
        "payment_intent.succeeded" => {
            let intent: PaymentIntent = serde_json::from_value(event.data.object)
                .map_err(|e| CallbackError::Malformed(format!("not a payment intent: {e}")))?;
            let amount_minor = intent.amount_received.unwrap_or(intent.amount);
            let currency = intent.currency.to_ascii_uppercase();
            Ok(match text(&intent.metadata, "request_id") {
                Some(request_id) => StripeEvent::RequestPaid(RequestPayment {
                    request_id,
                    tenant_id: text(&intent.metadata, "tenant_id"),
                    at,
                    session_id: None,
                    reference: intent.id,
                    amount_minor,
                    currency,
                }),
                None => StripeEvent::Payment(StripePayment {
                    merchant_reference: text(&intent.metadata, "reference").unwrap_or_default(),
                    payment_intent: intent.id,
                    amount_minor,
                    currency,
                }),
            })
        }
        "checkout.session.completed" => {
            let session: Session = serde_json::from_value(event.data.object)
                .map_err(|e| CallbackError::Malformed(format!("not a Checkout Session: {e}")))?;
            if session.payment_status.as_deref() != Some("paid") {
                return Ok(StripeEvent::Ignored(
                    "the Checkout Session is complete but not paid yet".into(),
                ));
            }
            let Some(request_id) = text(&session.metadata, "request_id") else {
                return Ok(StripeEvent::Ignored(
                    "the Checkout Session names no payment request".into(),
                ));
            };
            let (Some(amount_minor), Some(currency)) = (session.amount_total, session.currency) else {
                return Err(CallbackError::Malformed(
                    "the Checkout Session has no amount_total or currency".into(),
                ));
            };
            Ok(StripeEvent::RequestPaid(RequestPayment {
                request_id,
                tenant_id: text(&session.metadata, "tenant_id"),
                at,
                reference: session.payment_intent.unwrap_or_else(|| session.id.clone()),
                session_id: Some(session.id),
                amount_minor,
                currency: currency.to_ascii_uppercase(),
            }))
        }
        other => Ok(StripeEvent::Ignored(format!("a {other} event is not a payment"))),
    }
}

/// What a Checkout Session is opened for.
#[derive(Debug, Clone)]
pub struct CheckoutRequest<'a> {
    /// The tenant: in the idempotency key and the metadata.
    pub tenant: &'a str,
    /// The payment request (`preq_…`): idempotency key, client reference and metadata.
    pub request_id: &'a str,
    pub amount_minor: i64,
    /// ISO 4217 (sent lowercase).
    pub currency: &'a str,
    /// The line's name on the payment page.
    pub description: &'a str,
    /// Where Stripe sends the customer after paying.
    pub success_url: &'a str,
    /// The request's expiry (brought into Stripe's 30 minutes to 24 hours).
    pub expires_at: DateTime<Utc>,
    /// When the request was recorded: what the session's expiry is counted from.
    pub requested_at: DateTime<Utc>,
}

/// An opened Checkout Session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// `cs_…`
    pub session_id: String,
    /// The page the customer pays on.
    pub url: String,
}

/// Why a session was not opened: Stripe refused it (its error `code`, or `type`, or the HTTP
/// status: the request fails), or could not be reached or answered 429 or 5xx (try again with
/// the same request).
pub type CheckoutError = super::InitiationError;

#[derive(Deserialize)]
struct StripeErrorBody {
    error: StripeErrorDetail,
}

#[derive(Deserialize)]
struct StripeErrorDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct SessionAnswer {
    id: String,
    #[serde(default)]
    url: Option<String>,
}

/// The session's `expires_at`: the request's expiry, from 45 minutes to 23.5 hours after the
/// request was recorded (Stripe accepts 30 minutes to 24 hours from the call: a retry has 15
/// minutes).
pub fn session_expiry(expires_at: DateTime<Utc>, requested_at: DateTime<Utc>) -> i64 {
    let earliest = requested_at + chrono::Duration::minutes(45);
    let latest = requested_at + chrono::Duration::minutes(23 * 60 + 30);
    expires_at.clamp(earliest, latest).timestamp()
}

/// The idempotency key of a request's session.
pub fn idempotency_key(tenant: &str, request_id: &str) -> String {
    format!("{tenant}:{request_id}")
}

/// Whether `url` has the scheme, host and port of `base_url`, and that is a loopback address
/// (development's sandbox; a real Stripe's pages are https).
fn same_origin(url: &str, base_url: &str) -> bool {
    match (reqwest::Url::parse(url), reqwest::Url::parse(base_url)) {
        (Ok(a), Ok(b)) if matches!(b.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

/// The form of a Checkout Session for `request` (the fields Stripe's API documents): a
/// function of the request alone, so a retry sends the same form.
pub fn checkout_form(request: &CheckoutRequest<'_>) -> Vec<(&'static str, String)> {
    vec![
        ("mode", "payment".into()),
        ("line_items[0][quantity]", "1".into()),
        (
            "line_items[0][price_data][currency]",
            request.currency.to_ascii_lowercase(),
        ),
        (
            "line_items[0][price_data][unit_amount]",
            request.amount_minor.to_string(),
        ),
        (
            "line_items[0][price_data][product_data][name]",
            request.description.into(),
        ),
        ("client_reference_id", request.request_id.into()),
        ("metadata[request_id]", request.request_id.into()),
        ("metadata[tenant_id]", request.tenant.into()),
        ("payment_intent_data[metadata][request_id]", request.request_id.into()),
        ("payment_intent_data[metadata][tenant_id]", request.tenant.into()),
        ("success_url", request.success_url.into()),
        (
            "expires_at",
            session_expiry(request.expires_at, request.requested_at).to_string(),
        ),
    ]
}

/// Opens a Checkout Session at `base_url` (see the module docs).
pub async fn create_checkout_session(
    client: &reqwest::Client,
    base_url: &str,
    secret_key: &str,
    request: &CheckoutRequest<'_>,
) -> Result<Checkout, CheckoutError> {
    let form = serde_urlencoded::to_string(checkout_form(request))
        .map_err(|e| CheckoutError::Unavailable(format!("the session form: {e}")))?;
    let response = send(
        client
            .post(format!("{base_url}/v1/checkout/sessions"))
            .bearer_auth(secret_key)
            .header("Idempotency-Key", idempotency_key(request.tenant, request.request_id))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form),
    )
    .await?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| CheckoutError::Unavailable(format!("Stripe's answer was cut: {e}")))?;
    if !status.is_success() {
        let error = serde_json::from_slice::<StripeErrorBody>(&body).ok().map(|b| b.error);
        let kind = error.as_ref().and_then(|e| e.kind.clone()).unwrap_or_default();
        let code = error
            .and_then(|e| e.code)
            .or_else(|| Some(kind.clone()).filter(|k| !k.is_empty()))
            .unwrap_or_else(|| status.as_u16().to_string());
        // The key in use by a call still running, or used with other parameters: not a
        // refusal of the payment; the request stays open.
        if status == reqwest::StatusCode::CONFLICT || kind == "idempotency_error" {
            return Err(CheckoutError::Unavailable(format!(
                "Stripe is still answering, or answered differently, the same request ({code})"
            )));
        }
        return Err(CheckoutError::Refused { code });
    }
    let answer: SessionAnswer = serde_json::from_slice(&body)
        .map_err(|e| CheckoutError::Unavailable(format!("Stripe's answer is not a Checkout Session: {e}")))?;
    match answer.url {
        // A page on https, or on the API's own origin (development's sandbox on loopback).
        Some(url) if !answer.id.trim().is_empty() && (url.starts_with("https://") || same_origin(&url, base_url)) => {
            Ok(Checkout {
                session_id: answer.id,
                url,
            })
        }
        _ => Err(CheckoutError::Unavailable(
            "Stripe's Checkout Session has no payment page URL".into(),
        )),
    }
}

/// Expires an open Checkout Session (`POST /v1/checkout/sessions/{id}/expire`): its page stops
/// taking payments. A session Stripe will not expire (400: already complete or expired) counts
/// as done; a refused key or an unknown session (401, 403, 404) is `Refused`; an unreachable
/// Stripe (or 429, 5xx) is `Unavailable`.
pub async fn expire_checkout_session(
    client: &reqwest::Client,
    base_url: &str,
    secret_key: &str,
    session_id: &str,
) -> Result<(), CheckoutError> {
    let encoded: String = session_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let response = send(
        client
            .post(format!("{base_url}/v1/checkout/sessions/{encoded}/expire"))
            .bearer_auth(secret_key),
    )
    .await?;
    let status = response.status();
    if matches!(status.as_u16(), 401 | 403 | 404) {
        return Err(CheckoutError::Refused {
            code: status.as_u16().to_string(),
        });
    }
    Ok(())
}

/// Sends a call to Stripe: unreachable, 429 or 5xx is `Unavailable` (the call may be
/// repeated); any other answer is the caller's to read.
async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, CheckoutError> {
    let response = request
        .send()
        .await
        .map_err(|e| CheckoutError::Unavailable(format!("Stripe cannot be reached: {e}")))?;
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(CheckoutError::Unavailable(format!("Stripe answered {status}")));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000, 0).single().unwrap()
    }

    #[test]
    fn a_signature_within_tolerance_is_accepted_and_any_v1_may_match() {
        let body = br#"{"type":"x"}"#;
        let good = sign("whsec_1", now().timestamp() - 10, body);
        assert_eq!(verify_signature("whsec_1", Some(&good), body, now()), Ok(()));
        let (t, v1) = good.split_once(",").unwrap();
        let rolled = format!("{t},v1={},{v1}", "ab".repeat(32));
        assert_eq!(verify_signature("whsec_1", Some(&rolled), body, now()), Ok(()));
    }

    #[test]
    fn an_old_a_wrong_or_a_missing_signature_is_refused() {
        let body = br#"{"type":"x"}"#;
        let old = sign("whsec_1", now().timestamp() - 301, body);
        assert!(verify_signature("whsec_1", Some(&old), body, now()).is_err());
        let wrong = sign("whsec_2", now().timestamp(), body);
        assert!(verify_signature("whsec_1", Some(&wrong), body, now()).is_err());
        let tampered = sign("whsec_1", now().timestamp(), body);
        assert!(verify_signature("whsec_1", Some(&tampered), br#"{"type":"y"}"#, now()).is_err());
        assert!(verify_signature("whsec_1", None, body, now()).is_err());
        assert!(verify_signature("whsec_1", Some("v1=00"), body, now()).is_err());
    }

    #[test]
    fn a_succeeded_payment_intent_is_read_and_other_events_are_ignored() {
        let body = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","amount":2500,"currency":"usd","metadata":{"reference":"order_9"}}}}"#;
        assert_eq!(
            parse_event(body),
            Ok(StripeEvent::Payment(StripePayment {
                payment_intent: "pi_1".into(),
                amount_minor: 2500,
                currency: "USD".into(),
                merchant_reference: "order_9".into(),
            }))
        );
        assert!(matches!(
            parse_event(br#"{"type":"charge.refunded","data":{"object":{}}}"#),
            Ok(StripeEvent::Ignored(_))
        ));
    }

    #[test]
    fn both_events_of_a_requested_payment_name_the_request_and_the_same_reference() {
        let session = br#"{"type":"checkout.session.completed","created":1790000000,"data":{"object":{"id":"cs_1","object":"checkout.session","amount_total":2500,"currency":"usd","payment_status":"paid","payment_intent":"pi_1","client_reference_id":"preq_x","metadata":{"request_id":"preq_x","tenant_id":"acme"}}}}"#;
        let intent = br#"{"type":"payment_intent.succeeded","created":1790000000,"data":{"object":{"id":"pi_1","amount":2500,"amount_received":2500,"currency":"usd","metadata":{"request_id":"preq_x","tenant_id":"acme"}}}}"#;
        let from_session = RequestPayment {
            request_id: "preq_x".into(),
            tenant_id: Some("acme".into()),
            at: Some(now()),
            session_id: Some("cs_1".into()),
            reference: "pi_1".into(),
            amount_minor: 2500,
            currency: "USD".into(),
        };
        assert_eq!(parse_event(session), Ok(StripeEvent::RequestPaid(from_session.clone())));
        assert_eq!(
            parse_event(intent),
            Ok(StripeEvent::RequestPaid(RequestPayment {
                session_id: None,
                ..from_session
            }))
        );
        let not_ours = br#"{"type":"checkout.session.completed","data":{"object":{"id":"cs_2","amount_total":2500,"currency":"usd","payment_status":"paid","client_reference_id":"preq_x","metadata":{}}}}"#;
        assert!(
            matches!(parse_event(not_ours), Ok(StripeEvent::Ignored(_))),
            "a session Chronicle did not open"
        );
        let unpaid = br#"{"type":"checkout.session.completed","data":{"object":{"id":"cs_1","amount_total":2500,"currency":"usd","payment_status":"unpaid","metadata":{"request_id":"preq_x"}}}}"#;
        assert!(matches!(parse_event(unpaid), Ok(StripeEvent::Ignored(_))));
        let no_amount = br#"{"type":"checkout.session.completed","data":{"object":{"id":"cs_1","payment_status":"paid","metadata":{"request_id":"preq_x"}}}}"#;
        assert!(parse_event(no_amount).is_err());
    }

    #[test]
    fn a_session_lives_between_45_minutes_and_23_and_a_half_hours_after_the_request() {
        let soon = now() + chrono::Duration::minutes(5);
        assert_eq!(session_expiry(soon, now()), now().timestamp() + 45 * 60);
        let later = now() + chrono::Duration::days(10);
        assert_eq!(session_expiry(later, now()), now().timestamp() + (23 * 60 + 30) * 60);
        let within = now() + chrono::Duration::hours(3);
        assert_eq!(session_expiry(within, now()), within.timestamp());
    }

    #[test]
    fn the_form_is_a_function_of_the_request_alone() {
        let request = CheckoutRequest {
            tenant: "acme",
            request_id: "preq_x",
            amount_minor: 2500,
            currency: "USD",
            description: "Order 1",
            success_url: "https://chronicle.example/payments/done",
            expires_at: now() + chrono::Duration::hours(2),
            requested_at: now(),
        };
        assert_eq!(checkout_form(&request), checkout_form(&request.clone()));
        let form = checkout_form(&request);
        let get = |name: &str| form.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("line_items[0][price_data][currency]"), Some("usd"));
        assert_eq!(get("metadata[tenant_id]"), Some("acme"));
        assert_eq!(get("payment_intent_data[metadata][tenant_id]"), Some("acme"));
        assert_eq!(idempotency_key("acme", "preq_x"), "acme:preq_x");
    }

    #[test]
    fn a_timestamp_at_the_end_of_the_range_is_refused_not_a_panic() {
        let body = br#"{"type":"x"}"#;
        let header = format!("t={},v1=00", i64::MIN);
        assert!(verify_signature("whsec_1", Some(&header), body, now()).is_err());
    }
}
