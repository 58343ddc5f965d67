//! M-Pesa (Safaricom Daraja) STK push callbacks. The callback is JSON with no signature, so it
//! is accepted only on the tenant's secret callback path (`…/mpesa/<secret>`, the secret
//! stored as SHA-256 and compared in constant time; see [`super::credentials`]) and then
//! confirmed by an STK push status query to the configured Daraja base URL before it counts
//! (`ResultCode` 0 for the same `CheckoutRequestID`).
//!
//! Nothing in the callback body is trusted beyond the `CheckoutRequestID`: the secret path can
//! leak, the body is unsigned, and the status query confirms only that the push was paid, not
//! the amount or the receipt number. So a callback counts only for an STK push Chronicle sent
//! for a payment request ([`stk_push`], `super::requests`): the request names the amount, what
//! it pays for and that it is paid once. The payer's phone number in the callback is personal
//! data and is never stored or logged: it is not read.
//!
//! The status query: `GET {base}/oauth/v1/generate?grant_type=client_credentials` with the
//! consumer key and secret (basic auth) for a token, then `POST
//! {base}/mpesa/stkpushquery/v1/query` with the short code, `Password` = base64(short code +
//! passkey + timestamp), `Timestamp` (`YYYYMMDDHHmmss`, East Africa Time) and the
//! `CheckoutRequestID`. A failed call, or Daraja's "still being processed" answer, is transient.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;

use super::{amount_to_minor, CallbackError};

/// M-Pesa's currency.
pub const CURRENCY: &str = "KES";

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Body")]
    body: Body,
}

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "stkCallback")]
    stk_callback: StkCallback,
}

#[derive(Deserialize)]
struct StkCallback {
    #[serde(rename = "CheckoutRequestID")]
    checkout_request_id: String,
    #[serde(rename = "ResultCode")]
    result_code: serde_json::Value,
    #[serde(rename = "CallbackMetadata", default)]
    metadata: Option<CallbackMetadata>,
}

#[derive(Deserialize)]
struct CallbackMetadata {
    #[serde(rename = "Item", default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Value", default)]
    value: serde_json::Value,
}

/// An STK callback, read (without the payer's phone number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StkResult {
    /// The customer paid: `receipt` is the M-Pesa receipt number (the provider reference).
    Paid {
        checkout_request_id: String,
        receipt: String,
        amount_minor: i64,
    },
    /// The push failed or was cancelled (`ResultCode` ≠ 0): nothing to count.
    NotPaid {
        checkout_request_id: String,
        result_code: i64,
    },
}

impl StkResult {
    /// The STK push this callback reports on.
    pub fn checkout_request_id(&self) -> &str {
        match self {
            Self::Paid {
                checkout_request_id, ..
            }
            | Self::NotPaid {
                checkout_request_id, ..
            } => checkout_request_id,
        }
    }
}

fn code_of(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads an STK callback body.
pub fn parse_callback(body: &[u8]) -> Result<StkResult, CallbackError> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| CallbackError::Malformed(format!("not an STK callback: {e}")))?;
    let callback = envelope.body.stk_callback;
    let result_code =
        code_of(&callback.result_code).ok_or_else(|| CallbackError::Malformed("ResultCode is not a number".into()))?;
    if result_code != 0 {
        return Ok(StkResult::NotPaid {
            checkout_request_id: callback.checkout_request_id,
            result_code,
        });
    }
    let items = callback.metadata.map(|m| m.items).unwrap_or_default();
    let item = |name: &str| items.iter().find(|i| i.name == name).map(|i| &i.value);
    let receipt = match item("MpesaReceiptNumber") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(CallbackError::Malformed("MpesaReceiptNumber is missing".into())),
    };
    let amount_minor = match item("Amount") {
        Some(serde_json::Value::Number(n)) => amount_to_minor(&n.to_string()),
        Some(serde_json::Value::String(s)) => amount_to_minor(s),
        _ => None,
    }
    .ok_or_else(|| CallbackError::Malformed("Amount is missing or not an amount".into()))?;
    Ok(StkResult::Paid {
        checkout_request_id: callback.checkout_request_id,
        receipt,
        amount_minor,
    })
}

/// A tenant's Daraja credentials.
#[derive(Clone)]
pub struct DarajaCredentials {
    pub short_code: String,
    pub consumer_key: String,
    pub consumer_secret: String,
    pub passkey: String,
}

impl std::fmt::Debug for DarajaCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DarajaCredentials")
            .field("short_code", &self.short_code)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
}

#[derive(Deserialize)]
struct QueryAnswer {
    #[serde(rename = "CheckoutRequestID", default)]
    checkout_request_id: Option<String>,
    #[serde(rename = "ResultCode", default)]
    result_code: serde_json::Value,
}

/// The STK query's `Timestamp`: East Africa Time (UTC+3), `YYYYMMDDHHmmss`.
pub fn daraja_timestamp(now: DateTime<Utc>) -> String {
    let eat = FixedOffset::east_opt(3 * 3600).unwrap_or_else(|| unreachable!("3 h is a valid offset"));
    now.with_timezone(&eat).format("%Y%m%d%H%M%S").to_string()
}

/// The STK query's `Password`: base64 of short code, passkey and timestamp.
pub fn daraja_password(short_code: &str, passkey: &str, timestamp: &str) -> String {
    STANDARD.encode(format!("{short_code}{passkey}{timestamp}"))
}

/// An OAuth access token for `credentials`.
async fn token(
    client: &reqwest::Client,
    base_url: &str,
    credentials: &DarajaCredentials,
) -> Result<String, CallbackError> {
    let upstream = |what: &str, e: &dyn std::fmt::Display| CallbackError::Upstream(format!("{what}: {e}"));
    let token: Token = client
        .get(format!("{base_url}/oauth/v1/generate?grant_type=client_credentials"))
        .basic_auth(&credentials.consumer_key, Some(&credentials.consumer_secret))
        .send()
        .await
        .map_err(|e| upstream("the Daraja token request failed", &e))?
        .error_for_status()
        .map_err(|e| upstream("Daraja refused a token", &e))?
        .json()
        .await
        .map_err(|e| upstream("Daraja's token answer is not a token", &e))?;
    Ok(token.access_token)
}

/// What an STK push asks of the customer.
#[derive(Debug, Clone)]
pub struct StkPush<'a> {
    /// The payer's number, digits only with the country code (`2547…`). Personal data: sent to
    /// Daraja, never logged or stored by this call.
    pub phone: &'a str,
    /// Whole shillings.
    pub amount: i64,
    /// Where Daraja posts the result (the tenant's secret callback path).
    pub callback_url: &'a str,
    /// Shown to the customer (Daraja takes at most 12 characters).
    pub account_reference: &'a str,
    /// Daraja takes at most 13 characters.
    pub description: &'a str,
}

/// Why an STK push was not accepted: Daraja refused it (4xx, or a `ResponseCode` other than 0:
/// its code, final), or could not be reached or failed (5xx: unknown; try again later).
pub type PushError = super::InitiationError;

#[derive(Deserialize)]
struct PushAnswer {
    #[serde(rename = "CheckoutRequestID", default)]
    checkout_request_id: Option<String>,
    #[serde(rename = "ResponseCode", default)]
    response_code: serde_json::Value,
    #[serde(rename = "errorCode", default)]
    error_code: Option<String>,
}

/// Sends an STK push (`POST {base}/mpesa/stkpush/v1/processrequest`, transaction type
/// `CustomerPayBillOnline` to the short code) and returns Daraja's `CheckoutRequestID`.
pub async fn stk_push(
    client: &reqwest::Client,
    base_url: &str,
    credentials: &DarajaCredentials,
    push: &StkPush<'_>,
    now: DateTime<Utc>,
) -> Result<String, PushError> {
    let token = token(client, base_url, credentials)
        .await
        .map_err(|e| PushError::Unavailable(e.to_string()))?;
    let timestamp = daraja_timestamp(now);
    let truncate = |text: &str, n: usize| text.chars().take(n).collect::<String>();
    let response = client
        .post(format!("{base_url}/mpesa/stkpush/v1/processrequest"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "BusinessShortCode": credentials.short_code,
            "Password": daraja_password(&credentials.short_code, &credentials.passkey, &timestamp),
            "Timestamp": timestamp,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": push.amount,
            "PartyA": push.phone,
            "PartyB": credentials.short_code,
            "PhoneNumber": push.phone,
            "CallBackURL": push.callback_url,
            "AccountReference": truncate(push.account_reference, 12),
            "TransactionDesc": truncate(push.description, 13),
        }))
        .send()
        .await
        .map_err(|e| PushError::Unavailable(format!("the STK push failed: {e}")))?;
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(PushError::Unavailable(format!("the STK push answered {status}")));
    }
    let answer: PushAnswer = response
        .json()
        .await
        .map_err(|e| PushError::Unavailable(format!("the STK push answer is not JSON: {e}")))?;
    if !status.is_success() {
        return Err(PushError::Refused {
            code: answer.error_code.unwrap_or_else(|| status.as_u16().to_string()),
        });
    }
    match (code_of(&answer.response_code), answer.checkout_request_id) {
        (Some(0), Some(id)) if !id.trim().is_empty() => Ok(id),
        (Some(code), _) if code != 0 => Err(PushError::Refused { code: code.to_string() }),
        _ => Err(PushError::Unavailable(
            "the STK push answer has no CheckoutRequestID".into(),
        )),
    }
}

/// Asks Daraja whether the STK push `checkout_request_id` was paid: `Ok(true)` for
/// `ResultCode` 0, `Ok(false)` for a final failure, `Err(Upstream)` when Daraja cannot say yet.
pub async fn query_paid(
    client: &reqwest::Client,
    base_url: &str,
    credentials: &DarajaCredentials,
    checkout_request_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, CallbackError> {
    let upstream = |what: &str, e: &dyn std::fmt::Display| CallbackError::Upstream(format!("{what}: {e}"));
    let token = token(client, base_url, credentials).await?;
    let timestamp = daraja_timestamp(now);
    let response = client
        .post(format!("{base_url}/mpesa/stkpushquery/v1/query"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "BusinessShortCode": credentials.short_code,
            "Password": daraja_password(&credentials.short_code, &credentials.passkey, &timestamp),
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_request_id,
        }))
        .send()
        .await
        .map_err(|e| upstream("the STK status query failed", &e))?;
    let status = response.status();
    if !status.is_success() {
        // Daraja answers 500 ("The transaction is being processed") until the push settles.
        return Err(CallbackError::Upstream(format!(
            "the STK status query answered {status}"
        )));
    }
    let answer: QueryAnswer = response
        .json()
        .await
        .map_err(|e| upstream("the STK status answer is not JSON", &e))?;
    if answer
        .checkout_request_id
        .as_deref()
        .is_some_and(|id| id != checkout_request_id)
    {
        return Ok(false);
    }
    match code_of(&answer.result_code) {
        Some(0) => Ok(true),
        Some(_) => Ok(false),
        None => Err(CallbackError::Upstream(
            "the STK status answer has no ResultCode".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_paid_callback_gives_receipt_and_amount_and_a_failed_one_its_code() {
        let paid = br#"{"Body":{"stkCallback":{"MerchantRequestID":"m1","CheckoutRequestID":"ws_CO_1","ResultCode":0,"ResultDesc":"ok",
            "CallbackMetadata":{"Item":[{"Name":"Amount","Value":150.5},{"Name":"MpesaReceiptNumber","Value":"NLJ7RT61SV"},
            {"Name":"TransactionDate","Value":20191219102115},{"Name":"PhoneNumber","Value":254708374149}]}}}}"#;
        assert_eq!(
            parse_callback(paid),
            Ok(StkResult::Paid {
                checkout_request_id: "ws_CO_1".into(),
                receipt: "NLJ7RT61SV".into(),
                amount_minor: 15_050,
            })
        );
        let failed =
            br#"{"Body":{"stkCallback":{"CheckoutRequestID":"ws_CO_2","ResultCode":1032,"ResultDesc":"cancelled"}}}"#;
        assert_eq!(
            parse_callback(failed),
            Ok(StkResult::NotPaid {
                checkout_request_id: "ws_CO_2".into(),
                result_code: 1032
            })
        );
        assert!(parse_callback(b"{}").is_err());
    }

    #[test]
    fn the_query_password_is_base64_of_code_passkey_and_east_africa_time() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 21, 30, 5).single().unwrap();
        assert_eq!(daraja_timestamp(now), "20261123003005");
        assert_eq!(
            daraja_password("174379", "pk", "20261123003005"),
            STANDARD.encode("174379pk20261123003005")
        );
    }
}
