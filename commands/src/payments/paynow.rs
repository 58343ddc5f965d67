//! Paynow (Zimbabwe) result callbacks: a form-encoded POST to the result URL with `reference`
//! (our merchant reference), `paynowreference`, `amount`, `status`, `pollurl` and `hash`.
//!
//! The hash is the uppercase hex SHA-512 of every value except `hash`, concatenated in the
//! order received, followed by the tenant's integration key. A good hash is not enough to count
//! the payment: Chronicle then polls the `pollurl` (which must lie on the configured Paynow
//! base URL: any other host, scheme, port or path is refused, so a forged callback cannot make
//! the server call an address of its choosing) and counts the payment only if the poll answers
//! a paid status (`Paid`, `Awaiting Delivery`, `Delivered`) with a good hash too. Amounts and
//! references are taken from the poll's answer.

use reqwest::Url;
use sha2::{Digest, Sha512};

use chronicle_domain::crypto::constant_time_eq;

use super::{amount_to_minor, CallbackError};
use crate::http::form::parse_form;

/// Statuses under which Paynow holds the customer's money for the merchant.
const PAID_STATUSES: &[&str] = &["paid", "awaiting delivery", "delivered"];

/// Statuses under which the transaction ended without payment (lowercase).
pub const NOT_PAID_STATUSES: &[&str] = &["cancelled", "failed"];

/// The hash Paynow sends: uppercase hex SHA-512 over the values (except `hash`), in order,
/// then the integration key.
pub fn paynow_hash(pairs: &[(String, String)], integration_key: &str) -> String {
    let mut sha = Sha512::new();
    for (name, value) in pairs {
        if !name.eq_ignore_ascii_case("hash") {
            sha.update(value.as_bytes());
        }
    }
    sha.update(integration_key.as_bytes());
    hex::encode_upper(sha.finalize())
}

/// Checks the `hash` field of a callback or poll answer, in constant time.
pub fn verify_hash(pairs: &[(String, String)], integration_key: &str) -> Result<(), CallbackError> {
    let given = field(pairs, "hash").ok_or(CallbackError::BadHash)?;
    let expected = paynow_hash(pairs, integration_key);
    if constant_time_eq(given.trim().to_ascii_uppercase().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(CallbackError::BadHash)
    }
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A callback or poll answer whose hash checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaynowStatus {
    /// Our merchant reference (`reference`).
    pub merchant_reference: String,
    /// Paynow's reference (`paynowreference`).
    pub paynow_reference: String,
    pub amount_minor: i64,
    pub status: String,
    pub poll_url: String,
}

impl PaynowStatus {
    /// Reads the fields of checked pairs.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, CallbackError> {
        let get = |name: &'static str| {
            field(pairs, name)
                .map(str::to_string)
                .ok_or_else(|| CallbackError::Malformed(format!("the Paynow field {name} is missing")))
        };
        let amount = get("amount")?;
        Ok(Self {
            merchant_reference: get("reference")?,
            paynow_reference: get("paynowreference")?,
            amount_minor: amount_to_minor(&amount)
                .ok_or_else(|| CallbackError::Malformed(format!("the Paynow amount {amount:?} is not an amount")))?,
            status: get("status")?,
            poll_url: get("pollurl")?,
        })
    }

    /// Whether Paynow holds the money for the merchant.
    pub fn is_paid(&self) -> bool {
        PAID_STATUSES.contains(&self.status.trim().to_ascii_lowercase().as_str())
    }
}

/// Checks that `poll_url` lies on `base_url`: same scheme, host and port, and a path under the
/// base's path; no user info. Returns the parsed URL to call.
pub fn checked_poll_url(poll_url: &str, base_url: &str) -> Result<Url, CallbackError> {
    let refused = || CallbackError::PollUrlRefused;
    let url = Url::parse(poll_url).map_err(|_| refused())?;
    let base = Url::parse(base_url).map_err(|_| refused())?;
    if url.scheme() != base.scheme()
        || url.host_str() != base.host_str()
        || url.port_or_known_default() != base.port_or_known_default()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(refused());
    }
    let base_path = base.path().trim_end_matches('/');
    let path = url.path();
    if !(path == base_path || path.starts_with(&format!("{base_path}/"))) || path.contains("/../") {
        return Err(refused());
    }
    Ok(url)
}

/// Polls Paynow for the status of a payment: POSTs to the checked poll URL and checks the
/// answer's hash. A network failure or a 5xx is transient (the provider will call again).
pub async fn poll(client: &reqwest::Client, url: Url, integration_key: &str) -> Result<PaynowStatus, CallbackError> {
    let response = client
        .post(url)
        .send()
        .await
        .map_err(|e| CallbackError::Upstream(format!("polling Paynow failed: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(CallbackError::Upstream(format!("polling Paynow answered {status}")));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| CallbackError::Upstream(format!("reading Paynow's poll answer failed: {e}")))?;
    let pairs =
        parse_form(&body).ok_or_else(|| CallbackError::Upstream("Paynow's poll answer is not a form".into()))?;
    if let Some(error) = field(&pairs, "error") {
        return Err(CallbackError::Upstream(format!(
            "Paynow's poll answered an error: {error}"
        )));
    }
    verify_hash(&pairs, integration_key).map_err(|_| CallbackError::PollHashMismatch)?;
    PaynowStatus::from_pairs(&pairs)
}

/// A tenant's Paynow integration, as an initiation needs it. `Debug` shows no key.
#[derive(Clone)]
pub struct Integration {
    pub id: String,
    pub key: String,
    /// The integration's currency (`USD`, `ZWG`): requests through it are in this currency.
    pub currency: String,
    /// The merchant's Paynow login e-mail, sent as `authemail` with Express requests (Paynow
    /// requires one for Express; in its test mode it must be the merchant's).
    pub auth_email: Option<String>,
}

impl std::fmt::Debug for Integration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integration")
            .field("id", &self.id)
            .field("currency", &self.currency)
            .finish_non_exhaustive()
    }
}

/// One transaction to initiate: a web checkout, or an Express (mobile money) prompt when
/// `mobile` is set. `Debug` shows no phone number.
#[derive(Clone)]
pub struct Initiate<'a> {
    /// Our reference: the payment request's id.
    pub reference: &'a str,
    pub amount_minor: i64,
    pub additional_info: &'a str,
    pub return_url: &'a str,
    pub result_url: &'a str,
    pub auth_email: Option<&'a str>,
    /// (subscriber number as Paynow takes it, `ecocash` or `onemoney`).
    pub mobile: Option<(&'a str, &'a str)>,
}

impl std::fmt::Debug for Initiate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiate")
            .field("reference", &self.reference)
            .field("amount_minor", &self.amount_minor)
            .field("method", &self.mobile.map(|(_, method)| method))
            .finish_non_exhaustive()
    }
}

/// What Paynow answered to an accepted initiation (its hash checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initiated {
    /// Where the customer pays (web checkout only).
    pub browser_url: Option<String>,
    /// Where the transaction's status is polled; on the configured base.
    pub poll_url: String,
    /// What the customer is told to do (Express only).
    pub instructions: Option<String>,
}

/// Why an initiation was not accepted: Paynow answered `status=Error` (its reason, shortened)
/// or a 4xx (final), or could not be reached, failed (5xx), or answered something unreadable or
/// with a wrong hash (unknown; try again later).
pub type InitiateError = super::InitiationError;

/// `amount_minor` as Paynow's decimal amount (`150.00`).
pub fn paynow_amount(amount_minor: i64) -> String {
    format!("{}.{:02}", amount_minor / 100, (amount_minor % 100).abs())
}

/// The form an initiation posts, hash last (its fields in Paynow's documented order).
pub fn initiation_form(integration: &Integration, initiate: &Initiate<'_>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = vec![
        ("id".into(), integration.id.clone()),
        ("reference".into(), initiate.reference.into()),
        ("amount".into(), paynow_amount(initiate.amount_minor)),
        ("additionalinfo".into(), initiate.additional_info.into()),
        ("returnurl".into(), initiate.return_url.into()),
        ("resulturl".into(), initiate.result_url.into()),
    ];
    if let Some(email) = initiate.auth_email {
        pairs.push(("authemail".into(), email.into()));
    }
    if let Some((phone, method)) = initiate.mobile {
        pairs.push(("phone".into(), phone.into()));
        pairs.push(("method".into(), method.into()));
    }
    pairs.push(("status".into(), "Message".into()));
    let hash = paynow_hash(&pairs, &integration.key);
    pairs.push(("hash".into(), hash));
    pairs
}

/// Paynow's error text as a short code: lowercase letters and `_`, at most 80 characters.
/// Digits are dropped: the text is not signed, and an echoed phone number must not reach the
/// log.
fn error_code(text: &str) -> String {
    let mut code: String = text
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    while code.contains("__") {
        code = code.replace("__", "_");
    }
    let code = code.trim_matches('_').to_string();
    if code.is_empty() {
        "error".into()
    } else {
        code
    }
}

/// Initiates a transaction (`{base}/initiatetransaction`, or `{base}/remotetransaction` for
/// Express) and checks the answer's hash and poll URL.
pub async fn initiate(
    client: &reqwest::Client,
    base_url: &str,
    integration: &Integration,
    initiate: &Initiate<'_>,
) -> Result<Initiated, InitiateError> {
    let path = if initiate.mobile.is_some() {
        "remotetransaction"
    } else {
        "initiatetransaction"
    };
    let url = format!("{}/{path}", base_url.trim_end_matches('/'));
    let form = initiation_form(integration, initiate);
    let response = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(crate::http::form::encode_form(&form))
        .send()
        .await
        .map_err(|e| InitiateError::Unavailable(format!("Paynow could not be reached: {e}")))?;
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(InitiateError::Unavailable(format!("Paynow answered {status}")));
    }
    if !status.is_success() {
        return Err(InitiateError::Refused {
            code: format!("http_{}", status.as_u16()),
        });
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| InitiateError::Unavailable(format!("reading Paynow's answer failed: {e}")))?;
    let pairs = parse_form(&body).ok_or_else(|| InitiateError::Unavailable("Paynow's answer is not a form".into()))?;
    let answered = field(&pairs, "status").unwrap_or_default().trim().to_ascii_lowercase();
    if answered == "error" {
        // Errors carry no hash: nothing in them is trusted beyond "not accepted".
        return Err(InitiateError::Refused {
            code: error_code(field(&pairs, "error").unwrap_or("error")),
        });
    }
    if answered != "ok" {
        return Err(InitiateError::Unavailable(format!(
            "Paynow answered the status {answered:?}"
        )));
    }
    verify_hash(&pairs, &integration.key)
        .map_err(|_| InitiateError::Unavailable("Paynow's answer has a wrong hash".into()))?;
    let poll_url =
        field(&pairs, "pollurl").ok_or_else(|| InitiateError::Unavailable("Paynow's answer has no poll URL".into()))?;
    let poll_url = checked_poll_url(poll_url, base_url)
        .map_err(|_| InitiateError::Unavailable("Paynow's poll URL is off its base URL".into()))?;
    let browser_url = match field(&pairs, "browserurl") {
        Some(url) => Some(checked_browser_url(url, base_url)?),
        None if initiate.mobile.is_none() => {
            return Err(InitiateError::Unavailable("Paynow's answer has no payment page".into()))
        }
        None => None,
    };
    Ok(Initiated {
        browser_url,
        poll_url: poll_url.to_string(),
        instructions: field(&pairs, "instructions").map(str::to_string),
    })
}

/// The payment page must be Paynow's: same scheme, host and port as the base URL.
fn checked_browser_url(url: &str, base_url: &str) -> Result<String, InitiateError> {
    let off = || InitiateError::Unavailable("Paynow's payment page is off its host".into());
    let page = Url::parse(url).map_err(|_| off())?;
    let base = Url::parse(base_url).map_err(|_| off())?;
    if page.scheme() != base.scheme()
        || page.host_str() != base.host_str()
        || page.port_or_known_default() != base.port_or_known_default()
    {
        return Err(off());
    }
    Ok(page.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::form::encode_form;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_hash_covers_the_values_in_order_then_the_key() {
        let mut p = pairs(&[("reference", "order_1"), ("amount", "10.00"), ("status", "Paid")]);
        let expected = {
            let mut sha = Sha512::new();
            sha.update(b"order_110.00PaidKEY");
            hex::encode_upper(sha.finalize())
        };
        assert_eq!(paynow_hash(&p, "KEY"), expected);
        p.push(("hash".into(), expected.clone()));
        assert_eq!(verify_hash(&p, "KEY"), Ok(()));
        assert_eq!(verify_hash(&p, "OTHER"), Err(CallbackError::BadHash));
        let reordered = pairs(&[
            ("amount", "10.00"),
            ("reference", "order_1"),
            ("status", "Paid"),
            ("hash", &expected),
        ]);
        assert_eq!(verify_hash(&reordered, "KEY"), Err(CallbackError::BadHash));
    }

    #[test]
    fn a_poll_url_off_the_configured_base_is_refused() {
        let base = "https://www.paynow.co.zw/Interface";
        assert!(checked_poll_url("https://www.paynow.co.zw/Interface/CheckPayment/?guid=1", base).is_ok());
        for bad in [
            "https://evil.example/Interface/CheckPayment/?guid=1",
            "http://www.paynow.co.zw/Interface/CheckPayment/?guid=1",
            "https://www.paynow.co.zw:8443/Interface/CheckPayment/",
            "https://www.paynow.co.zw/Other/CheckPayment/",
            "https://user@www.paynow.co.zw/Interface/x",
            "https://www.paynow.co.zw.evil.example/Interface/x",
            "http://169.254.169.254/latest/meta-data",
            "not a url",
        ] {
            assert_eq!(checked_poll_url(bad, base), Err(CallbackError::PollUrlRefused), "{bad}");
        }
    }

    #[test]
    fn an_initiation_form_is_hashed_in_paynows_order_with_express_fields_before_status() {
        let integration = Integration {
            id: "1201".into(),
            key: "KEY".into(),
            currency: "USD".into(),
            auth_email: None,
        };
        let initiate = Initiate {
            reference: "preq_1",
            amount_minor: 15_005,
            additional_info: "Order order_1",
            return_url: "https://c/payments/done",
            result_url: "https://c/webhooks/payments/acme/paynow",
            auth_email: Some("m@example.com"),
            mobile: Some(("0771111111", "ecocash")),
        };
        let form = initiation_form(&integration, &initiate);
        let names: Vec<&str> = form.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "id",
                "reference",
                "amount",
                "additionalinfo",
                "returnurl",
                "resulturl",
                "authemail",
                "phone",
                "method",
                "status",
                "hash"
            ]
        );
        assert_eq!(form[2].1, "150.05");
        assert_eq!(verify_hash(&form, "KEY"), Ok(()));
        assert_eq!(paynow_amount(7), "0.07");
        assert_eq!(error_code("Invalid amount field!"), "invalid_amount_field");
        assert_eq!(error_code("  "), "error");
        assert_eq!(error_code("Invalid phone 0771111111"), "invalid_phone");
    }

    #[test]
    fn forms_round_trip_through_encoding() {
        let p = pairs(&[("pollurl", "https://x/y?guid=a&b=c d"), ("amount", "1.50")]);
        assert_eq!(parse_form(encode_form(&p).as_bytes()), Some(p));
    }

    #[test]
    fn paid_statuses_are_the_ones_paynow_holds_money_under() {
        let mut s = PaynowStatus {
            merchant_reference: "r".into(),
            paynow_reference: "1".into(),
            amount_minor: 1,
            status: "Paid".into(),
            poll_url: String::new(),
        };
        assert!(s.is_paid());
        s.status = "Awaiting Delivery".into();
        assert!(s.is_paid());
        s.status = "Cancelled".into();
        assert!(!s.is_paid());
        s.status = "Created".into();
        assert!(!s.is_paid());
    }
}
