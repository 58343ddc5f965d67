//! Stripe-style signed webhooks: the header `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=…]`
//! carries HMAC-SHA256 over `<t>.<raw body>` under the endpoint's signing secret. A request is
//! accepted when any `v1` matches (several appear while a secret is being rolled) and `t` is
//! within [`TOLERANCE_SECS`] of the server's clock (an old, replayed delivery is refused).
//!
//! Only `payment_intent.succeeded` counts: its `data.object` gives the payment intent id (the
//! provider reference), `amount` (already minor units), `currency` (lowercase on the wire) and
//! `metadata.reference`, the merchant reference we set when creating the intent. Other event
//! types are answered 200 and ignored. No status call is needed: the signature is the proof.

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
    if (now.timestamp() - seconds).abs() > TOLERANCE_SECS {
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

/// A succeeded payment intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripePayment {
    pub payment_intent: String,
    pub amount_minor: i64,
    /// Uppercase ISO 4217.
    pub currency: String,
    /// `metadata.reference` (empty when absent: the payment is kept unmatched).
    pub merchant_reference: String,
}

/// Reads a verified event: `Some` for `payment_intent.succeeded`, `None` for other types.
pub fn parse_event(payload: &[u8]) -> Result<Option<StripePayment>, CallbackError> {
    let event: Event =
        serde_json::from_slice(payload).map_err(|e| CallbackError::Malformed(format!("not a Stripe event: {e}")))?;
    if event.kind != "payment_intent.succeeded" {
        return Ok(None);
    }
    let intent: PaymentIntent = serde_json::from_value(event.data.object)
        .map_err(|e| CallbackError::Malformed(format!("not a payment intent: {e}")))?;
    let merchant_reference = match intent.metadata.get("reference") {
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    Ok(Some(StripePayment {
        payment_intent: intent.id,
        amount_minor: intent.amount_received.unwrap_or(intent.amount),
        currency: intent.currency.to_ascii_uppercase(),
        merchant_reference,
    }))
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
            Ok(Some(StripePayment {
                payment_intent: "pi_1".into(),
                amount_minor: 2500,
                currency: "USD".into(),
                merchant_reference: "order_9".into(),
            }))
        );
        assert_eq!(
            parse_event(br#"{"type":"charge.refunded","data":{"object":{}}}"#),
            Ok(None)
        );
    }
}
