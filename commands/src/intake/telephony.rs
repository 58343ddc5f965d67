//! Telephony call-status webhooks (Twilio-style): the `X-Twilio-Signature` check and the
//! parsing of a status callback's form parameters into a [`CallStatusReport`]. Pure: no IO.
//!
//! Twilio signs a request with HMAC-SHA1 under the account's auth token, over the full URL it
//! requested (scheme, host, path and query, exactly as configured) followed by every POST
//! parameter's name and value, sorted by name (byte order; a repeated name's values sorted and
//! each distinct value once), and sends the base64 digest in `X-Twilio-Signature`. Because
//! proxies may add or drop the default port, the check also tries the URL with the scheme's
//! default port toggled, as Twilio's own libraries do.
//!
//! Parameters are the decoded form pairs of the raw body (`+` in a number is `%2B` on the
//! wire and `+` here). JSON bodies (`bodySHA256`) are not used by call-status callbacks and are
//! not handled.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chronicle_domain::call::{CallDirection, CallOutcome};
use chronicle_domain::crypto::{constant_time_eq, hmac_sha1};
use chrono::{DateTime, Utc};

/// The provider name in the inbox and in `RecordCompletedCall`.
pub const PROVIDER: &str = "twilio";

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// Why a request's signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelephonySignatureError {
    #[error("the X-Twilio-Signature header is missing")]
    Missing,
    #[error("the X-Twilio-Signature header is not the base64 of a 20-byte HMAC-SHA1")]
    Malformed,
    #[error("the X-Twilio-Signature signature does not match the URL and parameters")]
    Mismatch,
}

/// The string Twilio signs: the URL, then each parameter's name and value in name order.
fn signed_content(full_url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut content =
        String::with_capacity(full_url.len() + sorted.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>());
    content.push_str(full_url);
    for (name, value) in sorted {
        content.push_str(name);
        content.push_str(value);
    }
    content
}

fn mac(auth_token: &str, full_url: &str, params: &[(String, String)]) -> [u8; 20] {
    hmac_sha1(auth_token.as_bytes(), &[signed_content(full_url, params).as_bytes()])
}

/// The URL with the scheme's default port added when absent, or removed when present; `None`
/// for other schemes and other ports (those are signed as they are).
fn with_default_port_toggled(full_url: &str) -> Option<String> {
    let (scheme, rest) = full_url.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let (userinfo, host_port) = authority.split_at(host_start);
    // A colon after the last `]` separates the port (IPv6 literals are bracketed).
    let port_colon = host_port.rfind(':').filter(|colon| !host_port[*colon..].contains(']'));
    let toggled = match port_colon {
        Some(colon) if &host_port[colon + 1..] == default_port => host_port[..colon].to_string(),
        Some(_) => return None,
        None => format!("{host_port}:{default_port}"),
    };
    Some(format!("{scheme}://{userinfo}{toggled}{tail}"))
}

/// Checks `X-Twilio-Signature` against the URL Twilio requested and the POST parameters, in
/// constant time for each candidate URL (as given, then with the default port toggled).
pub fn verify_twilio_signature(
    auth_token: &str,
    full_url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), TelephonySignatureError> {
    let header = header.ok_or(TelephonySignatureError::Missing)?;
    let expected = STANDARD
        .decode(header.trim())
        .map_err(|_| TelephonySignatureError::Malformed)?;
    if expected.len() != 20 {
        return Err(TelephonySignatureError::Malformed);
    }
    let candidates = std::iter::once(full_url.to_string()).chain(with_default_port_toggled(full_url));
    for url in candidates {
        if constant_time_eq(&mac(auth_token, &url, params), &expected) {
            return Ok(());
        }
    }
    Err(TelephonySignatureError::Mismatch)
}

/// The `X-Twilio-Signature` value for a request (for senders, simulators and tests).
pub fn sign_twilio(auth_token: &str, full_url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, full_url, params))
}

/// A call's status as Twilio reports it in `CallStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwilioCallStatus {
    Queued,
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl TwilioCallStatus {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "queued" => Self::Queued,
            "initiated" => Self::Initiated,
            "ringing" => Self::Ringing,
            "in-progress" => Self::InProgress,
            "completed" => Self::Completed,
            "busy" => Self::Busy,
            "no-answer" => Self::NoAnswer,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            _ => return None,
        })
    }

    /// The status as Twilio spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Whether the call has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Busy | Self::NoAnswer | Self::Failed | Self::Canceled
        )
    }
}

/// A call's direction as Twilio reports it in `Direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwilioDirection {
    /// The contact called the tenant's number.
    Inbound,
    /// Placed through the REST API.
    OutboundApi,
    /// A child leg placed by `<Dial>` during another call (see `parent_call_sid`).
    OutboundDial,
}

impl TwilioDirection {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "inbound" => Self::Inbound,
            "outbound-api" => Self::OutboundApi,
            "outbound-dial" => Self::OutboundDial,
            _ => return None,
        })
    }

    /// The direction as Twilio spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::OutboundApi => "outbound-api",
            Self::OutboundDial => "outbound-dial",
        }
    }

    /// The domain's direction.
    pub fn direction(self) -> CallDirection {
        match self {
            Self::Inbound => CallDirection::Inbound,
            Self::OutboundApi | Self::OutboundDial => CallDirection::Outbound,
        }
    }
}

/// A call-status callback, parsed and checked. `from` and `to` are personal data: seal them
/// before they go anywhere; `Debug` hides them.
#[derive(Clone, PartialEq, Eq)]
pub struct CallStatusReport {
    /// `CallSid`, the provider's call id.
    pub call_sid: String,
    pub status: TwilioCallStatus,
    pub direction: TwilioDirection,
    /// `From` as sent: an E.164 number, or a `client:`/`sip:` address, or an anonymous caller.
    pub from: String,
    /// `To` as sent.
    pub to: String,
    /// `CallDuration` in seconds; present on `completed`, optional otherwise.
    pub duration_s: Option<u32>,
    /// `Timestamp`, when sent (RFC 2822).
    pub timestamp: Option<DateTime<Utc>>,
    /// `AnsweredBy` when answering machine detection is on (`human`, `machine_start`, …).
    pub answered_by: Option<String>,
    /// `ParentCallSid` of a child leg.
    pub parent_call_sid: Option<String>,
}

impl fmt::Debug for CallStatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallStatusReport")
            .field("call_sid", &self.call_sid)
            .field("status", &self.status)
            .field("direction", &self.direction)
            .field("from", &"(redacted)")
            .field("to", &"(redacted)")
            .field("duration_s", &self.duration_s)
            .field("timestamp", &self.timestamp)
            .field("answered_by", &self.answered_by)
            .field("parent_call_sid", &self.parent_call_sid)
            .finish()
    }
}

impl CallStatusReport {
    /// How the call ended, for `RecordCompletedCall`; `None` while it has not ended. A
    /// completed call answered by a machine is a voicemail.
    pub fn outcome(&self) -> Option<CallOutcome> {
        Some(match self.status {
            TwilioCallStatus::Completed
                if self
                    .answered_by
                    .as_deref()
                    .is_some_and(|by| by.starts_with("machine_") || by == "fax") =>
            {
                CallOutcome::Voicemail
            }
            TwilioCallStatus::Completed => CallOutcome::Completed,
            TwilioCallStatus::Busy => CallOutcome::Busy,
            TwilioCallStatus::NoAnswer => CallOutcome::NoAnswer,
            TwilioCallStatus::Failed => CallOutcome::Failed,
            TwilioCallStatus::Canceled => CallOutcome::Canceled,
            TwilioCallStatus::Queued
            | TwilioCallStatus::Initiated
            | TwilioCallStatus::Ringing
            | TwilioCallStatus::InProgress => return None,
        })
    }

    /// The inbox's dedupe key: `call:<CallSid>:<CallStatus>` (one row per status of a call,
    /// whatever how often Twilio delivers it).
    pub fn dedupe_key(&self) -> String {
        format!("call:{}:{}", self.call_sid, self.status.as_str())
    }
}

/// One missing or invalid field of a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The form parameter, e.g. `CallSid`.
    pub field: &'static str,
    pub reason: String,
}

/// Why a callback was refused (answered 400, nothing stored): every problem found, each with
/// its field and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed call status callback: {}", describe(.problems))]
pub struct MalformedCallStatus {
    pub problems: Vec<FieldProblem>,
}

fn describe(problems: &[FieldProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads form parameters, collecting every problem rather than stopping at the first.
struct Reader<'a> {
    params: &'a [(String, String)],
    problems: Vec<FieldProblem>,
}

impl<'a> Reader<'a> {
    fn problem(&mut self, field: &'static str, reason: impl Into<String>) {
        self.problems.push(FieldProblem {
            field,
            reason: reason.into(),
        });
    }

    /// The field's value, trimmed; `None` when absent or blank. Repeating a name with another
    /// value is a problem.
    fn optional(&mut self, field: &'static str) -> Option<&'a str> {
        let mut values = self
            .params
            .iter()
            .filter(|(name, _)| name == field)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty());
        let first = values.next()?;
        if values.any(|other| other != first) {
            self.problem(field, "given more than once with different values");
            return None;
        }
        Some(first)
    }

    fn required(&mut self, field: &'static str) -> Option<&'a str> {
        let value = self.optional(field);
        if value.is_none() && !self.problems.iter().any(|p| p.field == field) {
            self.problem(field, "missing");
        }
        value
    }
}

/// The longest provider id accepted (Twilio's are 34 characters).
const MAX_SID_LEN: usize = 64;

fn is_sid(value: &str) -> bool {
    value.len() <= MAX_SID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses a call-status callback's form parameters: `CallSid`, `CallStatus`, `Direction`
/// (`inbound`, `outbound-api`, `outbound-dial`), `From`, `To`, `CallDuration` (required when
/// the call completed), and optionally `Timestamp` (RFC 2822), `AnsweredBy`, `ParentCallSid`.
pub fn parse_call_status(params: &[(String, String)]) -> Result<CallStatusReport, MalformedCallStatus> {
    let mut r = Reader {
        params,
        problems: Vec::new(),
    };

    let call_sid = r.required("CallSid");
    if call_sid.is_some_and(|sid| !is_sid(sid)) {
        r.problem("CallSid", "not a call id (up to 64 of A-Z, a-z, 0-9, '_' and '-')");
    }
    let status_text = r.required("CallStatus");
    let status = status_text.and_then(TwilioCallStatus::parse);
    if let (Some(text), None) = (status_text, status) {
        r.problem(
            "CallStatus",
            format!(
                "{text:?} is not one of queued, initiated, ringing, in-progress, completed, busy, no-answer, failed, canceled"
            ),
        );
    }
    let direction_text = r.required("Direction");
    let direction = direction_text.and_then(TwilioDirection::parse);
    if let (Some(text), None) = (direction_text, direction) {
        r.problem(
            "Direction",
            format!("{text:?} is not one of inbound, outbound-api, outbound-dial"),
        );
    }
    let from = r.required("From");
    let to = r.required("To");

    let duration_text = r.optional("CallDuration");
    let duration_s = duration_text.and_then(|text| text.parse::<u32>().ok());
    if let (Some(text), None) = (duration_text, duration_s) {
        r.problem("CallDuration", format!("{text:?} is not a whole number of seconds"));
    }
    if duration_text.is_none()
        && status == Some(TwilioCallStatus::Completed)
        && !r.problems.iter().any(|p| p.field == "CallDuration")
    {
        r.problem("CallDuration", "missing on a completed call");
    }

    let timestamp_text = r.optional("Timestamp");
    let timestamp = timestamp_text.and_then(|text| DateTime::parse_from_rfc2822(text).ok());
    if let (Some(text), None) = (timestamp_text, timestamp) {
        r.problem("Timestamp", format!("{text:?} is not an RFC 2822 date"));
    }

    let answered_by = r.optional("AnsweredBy");
    let parent_call_sid = r.optional("ParentCallSid");
    if parent_call_sid.is_some_and(|sid| !is_sid(sid)) {
        r.problem(
            "ParentCallSid",
            "not a call id (up to 64 of A-Z, a-z, 0-9, '_' and '-')",
        );
    }

    match (call_sid, status, direction, from, to) {
        (Some(call_sid), Some(status), Some(direction), Some(from), Some(to)) if r.problems.is_empty() => {
            Ok(CallStatusReport {
                call_sid: call_sid.to_string(),
                status,
                direction,
                from: from.to_string(),
                to: to.to_string(),
                duration_s,
                timestamp: timestamp.map(|t| t.with_timezone(&Utc)),
                answered_by: answered_by.map(str::to_string),
                parent_call_sid: parent_call_sid.map(str::to_string),
            })
        }
        _ => Err(MalformedCallStatus { problems: r.problems }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// Twilio's documented example (twilio-python and twilio-php `RequestValidator` tests).
    const DOC_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const DOC_TOKEN: &str = "12345";

    fn doc_params() -> Vec<(String, String)> {
        // Deliberately not in name order: the signature sorts them.
        pairs(&[
            ("Digits", "1234"),
            ("To", "+18005551212"),
            ("From", "+14158675309"),
            ("Caller", "+14158675309"),
            ("CallSid", "CA1234567890ABCDE"),
        ])
    }

    #[test]
    fn twilios_documented_example_is_reproduced_and_accepted() {
        assert_eq!(
            sign_twilio(DOC_TOKEN, DOC_URL, &doc_params()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert_eq!(
            verify_twilio_signature(DOC_TOKEN, DOC_URL, &doc_params(), Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
            Ok(())
        );
    }

    #[test]
    fn twilios_security_guide_example_is_reproduced() {
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(sign_twilio(DOC_TOKEN, DOC_URL, &params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    }

    #[test]
    fn repeated_names_sign_each_distinct_value_once_in_order() {
        // Twilio's documented vector for repeated parameters.
        let params = pairs(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        assert_eq!(sign_twilio(DOC_TOKEN, DOC_URL, &params), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    }

    #[test]
    fn a_tampered_value_url_extra_parameter_or_token_is_a_mismatch() {
        let signature = sign_twilio(DOC_TOKEN, DOC_URL, &doc_params());
        let mut tampered = doc_params();
        tampered[0].1 = "9999".into();
        let mut extra = doc_params();
        extra.push(("CallStatus".into(), "completed".into()));
        let cases = [
            (DOC_TOKEN, DOC_URL, tampered),
            (DOC_TOKEN, DOC_URL, extra),
            (DOC_TOKEN, "https://mycompany.com/myapp.php?foo=1&bar=3", doc_params()),
            (DOC_TOKEN, "https://evil.example/myapp.php?foo=1&bar=2", doc_params()),
            ("54321", DOC_URL, doc_params()),
        ];
        for (token, url, params) in cases {
            assert_eq!(
                verify_twilio_signature(token, url, &params, Some(&signature)),
                Err(TelephonySignatureError::Mismatch),
                "{url}"
            );
        }
    }

    #[test]
    fn a_missing_or_malformed_signature_is_refused() {
        let params = doc_params();
        assert_eq!(
            verify_twilio_signature(DOC_TOKEN, DOC_URL, &params, None),
            Err(TelephonySignatureError::Missing)
        );
        for bad in [
            "",
            "not base64!",
            "c2hvcnQ=",
            "RSOYDt4T1cUTdK1PDd93/VVr8B8",
            "sha256=abc",
        ] {
            assert_eq!(
                verify_twilio_signature(DOC_TOKEN, DOC_URL, &params, Some(bad)),
                Err(TelephonySignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_signature_over_the_url_with_or_without_the_default_port_is_accepted() {
        let params = pairs(&[("CallSid", "CA1")]);
        let with_port = sign_twilio("t0k3n", "https://hooks.example:443/calls/status?t=acme", &params);
        assert_eq!(
            verify_twilio_signature(
                "t0k3n",
                "https://hooks.example/calls/status?t=acme",
                &params,
                Some(&with_port)
            ),
            Ok(())
        );
        let without_port = sign_twilio("t0k3n", "http://hooks.example/calls/status", &params);
        assert_eq!(
            verify_twilio_signature(
                "t0k3n",
                "http://hooks.example:80/calls/status",
                &params,
                Some(&without_port)
            ),
            Ok(())
        );
        let other_port = sign_twilio("t0k3n", "https://hooks.example:8443/calls/status", &params);
        assert_eq!(
            verify_twilio_signature(
                "t0k3n",
                "https://hooks.example/calls/status",
                &params,
                Some(&other_port)
            ),
            Err(TelephonySignatureError::Mismatch)
        );
    }

    #[test]
    fn the_default_port_is_toggled_only_in_the_authority() {
        assert_eq!(
            with_default_port_toggled("https://u:p@hooks.example/a:443?b=c:d").as_deref(),
            Some("https://u:p@hooks.example:443/a:443?b=c:d")
        );
        assert_eq!(
            with_default_port_toggled("https://[::1]:443/x").as_deref(),
            Some("https://[::1]/x")
        );
        assert_eq!(
            with_default_port_toggled("https://[::1]/x").as_deref(),
            Some("https://[::1]:443/x")
        );
        assert_eq!(
            with_default_port_toggled("HTTP://hooks.example?x=1").as_deref(),
            Some("HTTP://hooks.example:80?x=1")
        );
        assert_eq!(with_default_port_toggled("https://hooks.example:8443/x"), None);
        assert_eq!(with_default_port_toggled("wss://hooks.example/x"), None);
        assert_eq!(with_default_port_toggled("no scheme"), None);
    }

    fn completed_callback() -> Vec<(String, String)> {
        pairs(&[
            ("AccountSid", "AC0123"),
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("CallStatus", "completed"),
            ("Direction", "inbound"),
            ("From", "+263771234567"),
            ("To", "+263242700000"),
            ("CallDuration", "95"),
            ("Timestamp", "Tue, 10 Nov 2026 09:15:30 +0200"),
        ])
    }

    fn without(params: &[(String, String)], field: &str) -> Vec<(String, String)> {
        params.iter().filter(|(n, _)| n != field).cloned().collect()
    }

    fn with(params: &[(String, String)], field: &str, value: &str) -> Vec<(String, String)> {
        let mut out = without(params, field);
        out.push((field.to_string(), value.to_string()));
        out
    }

    fn problems(params: &[(String, String)]) -> Vec<&'static str> {
        match parse_call_status(params) {
            Ok(report) => panic!("expected a refusal, got {report:?}"),
            Err(e) => e.problems.iter().map(|p| p.field).collect(),
        }
    }

    #[test]
    fn a_completed_call_callback_is_parsed() {
        let Ok(report) = parse_call_status(&completed_callback()) else {
            panic!("valid")
        };
        assert_eq!(report.call_sid, "CA0123456789abcdef0123456789abcdef");
        assert_eq!(report.status, TwilioCallStatus::Completed);
        assert_eq!(report.direction.direction(), CallDirection::Inbound);
        assert_eq!(report.from, "+263771234567");
        assert_eq!(report.to, "+263242700000");
        assert_eq!(report.duration_s, Some(95));
        assert_eq!(report.timestamp, Utc.with_ymd_and_hms(2026, 11, 10, 7, 15, 30).single());
        assert_eq!(report.outcome(), Some(CallOutcome::Completed));
        assert_eq!(report.dedupe_key(), "call:CA0123456789abcdef0123456789abcdef:completed");
    }

    #[test]
    fn final_statuses_map_to_outcomes_and_others_to_none() {
        let cases = [
            ("busy", Some(CallOutcome::Busy)),
            ("no-answer", Some(CallOutcome::NoAnswer)),
            ("failed", Some(CallOutcome::Failed)),
            ("canceled", Some(CallOutcome::Canceled)),
            ("ringing", None),
            ("in-progress", None),
            ("queued", None),
            ("initiated", None),
        ];
        for (status, outcome) in cases {
            let params = without(&with(&completed_callback(), "CallStatus", status), "CallDuration");
            let report = parse_call_status(&params).map_err(|e| e.to_string());
            assert_eq!(report.as_ref().map(CallStatusReport::outcome), Ok(outcome), "{status}");
            assert_eq!(report.map(|r| r.status.is_final()), Ok(outcome.is_some()), "{status}");
        }
    }

    #[test]
    fn a_completed_call_answered_by_a_machine_is_a_voicemail() {
        let params = with(&completed_callback(), "AnsweredBy", "machine_end_beep");
        assert_eq!(
            parse_call_status(&params).map(|r| r.outcome()),
            Ok(Some(CallOutcome::Voicemail))
        );
        let params = with(&completed_callback(), "AnsweredBy", "human");
        assert_eq!(
            parse_call_status(&params).map(|r| r.outcome()),
            Ok(Some(CallOutcome::Completed))
        );
    }

    #[test]
    fn outbound_directions_map_to_outbound_and_child_legs_keep_their_parent() {
        let params = with(
            &with(&completed_callback(), "Direction", "outbound-dial"),
            "ParentCallSid",
            "CAparent",
        );
        let Ok(report) = parse_call_status(&params) else {
            panic!("valid")
        };
        assert_eq!(report.direction, TwilioDirection::OutboundDial);
        assert_eq!(report.direction.direction(), CallDirection::Outbound);
        assert_eq!(report.parent_call_sid.as_deref(), Some("CAparent"));
        let params = with(&completed_callback(), "Direction", "outbound-api");
        assert_eq!(
            parse_call_status(&params).map(|r| r.direction.direction()),
            Ok(CallDirection::Outbound)
        );
    }

    #[test]
    fn each_missing_required_field_is_named() {
        for field in ["CallSid", "CallStatus", "Direction", "From", "To", "CallDuration"] {
            assert_eq!(problems(&without(&completed_callback(), field)), vec![field]);
        }
        assert_eq!(
            problems(&with(&completed_callback(), "From", "  ")),
            vec!["From"],
            "a blank value is missing"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let params = pairs(&[("CallStatus", "exploded"), ("Direction", "sideways")]);
        assert_eq!(
            problems(&params),
            vec!["CallSid", "CallStatus", "Direction", "From", "To"]
        );
        let Err(e) = parse_call_status(&params) else {
            panic!("invalid")
        };
        assert!(e.to_string().contains("CallStatus: \"exploded\" is not one of"));
    }

    #[test]
    fn invalid_values_are_refused_with_their_reason() {
        let cases = [
            ("CallSid", "CA 12; drop"),
            ("CallStatus", "done"),
            ("Direction", "trunking-originating"),
            ("CallDuration", "-3"),
            ("CallDuration", "12.5"),
            ("CallDuration", "99999999999"),
            ("Timestamp", "2026-11-10T09:15:30Z"),
            ("ParentCallSid", "CA/../x"),
        ];
        for (field, value) in cases {
            assert_eq!(
                problems(&with(&completed_callback(), field, value)),
                vec![field],
                "{value}"
            );
        }
    }

    #[test]
    fn a_field_repeated_with_another_value_is_refused_and_a_plain_repeat_is_not() {
        let mut params = completed_callback();
        params.push(("CallStatus".into(), "busy".into()));
        let Err(e) = parse_call_status(&params) else {
            panic!("conflicting")
        };
        assert_eq!(e.problems.len(), 1);
        assert_eq!(e.problems[0].field, "CallStatus");
        assert_eq!(e.problems[0].reason, "given more than once with different values");
        let mut params = completed_callback();
        params.push(("CallStatus".into(), "completed".into()));
        assert!(parse_call_status(&params).is_ok());
    }

    #[test]
    fn the_duration_and_timestamp_are_optional_before_completion() {
        let params = without(
            &without(&with(&completed_callback(), "CallStatus", "no-answer"), "CallDuration"),
            "Timestamp",
        );
        let Ok(report) = parse_call_status(&params) else {
            panic!("valid")
        };
        assert_eq!(report.duration_s, None);
        assert_eq!(report.timestamp, None);
    }

    #[test]
    fn debug_output_hides_the_numbers() {
        let Ok(report) = parse_call_status(&completed_callback()) else {
            panic!("valid")
        };
        let debug = format!("{report:?}");
        assert!(!debug.contains("771234567") && !debug.contains("242700000"), "{debug}");
        assert!(debug.contains("CA0123456789abcdef"));
    }
}
