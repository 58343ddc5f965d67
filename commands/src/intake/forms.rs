//! Lead submissions from a tenant's website: web forms, the chatbot and the (solar) calculator,
//! posted to `POST /intake/leads/{source}` with the tenant's intake key.
//!
//! - Intake keys: `lik_` and 64 hex digits of randomness, created by an operator
//!   (`chronicle admin create-intake-key`) and shown once; `lead_intake_keys` stores only their
//!   SHA-256, which names the tenant.
//! - A submission is a JSON object. Known fields are read and checked ([`parse_submission`]);
//!   the whole object is kept as the raw data (sealed by the lead commands). Any malformed field
//!   refuses the submission with its reason before anything is stored.
//! - Idempotent by the submission id (the `Idempotency-Key` header, else the `submission_id`
//!   field): the capture reference is `<source>:<submission id>`, so a repeated post answers
//!   with the first outcome's lead.
//!
//! Fields: `submission_id`, `name`, `phone`, `email` (a phone or an e-mail is required),
//! `interest`, `priority` (`low|normal|high|urgent`), `property_type`
//! (`residential|commercial|agricultural|industrial`), `system_size_kw` (a positive number up to
//! 10 000), `budget` (`{"min": minor units, "max": minor units, "currency": "USD"}`),
//! `submitted_at` (RFC 3339, default now). A calculator submission must carry a system size or a
//! budget: that is what makes it high intent.

use chronicle_domain::lead::{BudgetRange, LeadSource, Priority, PropertyType, MAX_SYSTEM_SIZE_W};
use chronicle_domain::phone::PhoneNumber;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::error::CommandError;
use crate::leads::{normalize_email, LeadInput};

/// The header carrying a tenant's intake key.
pub const KEY_HEADER: &str = "x-intake-key";

/// The sources that post to the intake endpoint.
pub const SOURCES: [LeadSource; 3] = [LeadSource::WebForm, LeadSource::Chatbot, LeadSource::Calculator];

/// The longest submission id accepted.
const MAX_SUBMISSION_ID: usize = 200;

/// Why a submission is refused (400, nothing stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmissionError {
    #[error("unknown intake source {0:?}: use web_form, chatbot or calculator")]
    UnknownSource(String),
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("a submission id is required (header Idempotency-Key or field submission_id, at most 200 characters)")]
    MissingSubmissionId,
    #[error("field {field} is malformed: {reason}")]
    BadField { field: &'static str, reason: &'static str },
    #[error("a submission needs a phone number or an e-mail address")]
    NoContact,
    #[error("a calculator submission needs system_size_kw or budget")]
    CalculatorWithoutFigures,
}

impl SubmissionError {
    /// The stable code of the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownSource(_) => "UNKNOWN_INTAKE_SOURCE",
            Self::NotAnObject => "NOT_A_JSON_OBJECT",
            Self::MissingSubmissionId => "MISSING_SUBMISSION_ID",
            Self::BadField { .. } => "MALFORMED_FIELD",
            Self::NoContact => "NO_CONTACT_DETAILS",
            Self::CalculatorWithoutFigures => "CALCULATOR_WITHOUT_FIGURES",
        }
    }
}

/// The intake source named in the path.
pub fn parse_source(name: &str) -> Result<LeadSource, SubmissionError> {
    LeadSource::parse(name)
        .filter(|s| SOURCES.contains(s))
        .ok_or_else(|| SubmissionError::UnknownSource(name.chars().take(40).collect()))
}

fn bad(field: &'static str, reason: &'static str) -> SubmissionError {
    SubmissionError::BadField { field, reason }
}

/// An optional non-empty string field (at most `max` characters).
fn text(body: &Map<String, Value>, field: &'static str, max: usize) -> Result<Option<String>, SubmissionError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.trim().to_string())),
        Some(Value::String(_)) => Err(bad(field, "too long")),
        Some(_) => Err(bad(field, "must be a string")),
    }
}

/// Parses a submission into a lead capture (personal fields still clear; the lead commands
/// seal them).
pub fn parse_submission(
    source: LeadSource,
    body: &[u8],
    idempotency_key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<LeadInput, SubmissionError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| SubmissionError::NotAnObject)?;
    let Value::Object(fields) = &value else {
        return Err(SubmissionError::NotAnObject);
    };
    let submission_id = match idempotency_key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(key) => Some(key.to_string()),
        None => text(fields, "submission_id", MAX_SUBMISSION_ID).map_err(|_| SubmissionError::MissingSubmissionId)?,
    }
    .filter(|id| id.chars().count() <= MAX_SUBMISSION_ID && !id.chars().any(char::is_control))
    .ok_or(SubmissionError::MissingSubmissionId)?;

    let name = text(fields, "name", 200)?;
    let phone = text(fields, "phone", 40)?
        .map(|p| PhoneNumber::parse(&p).map_err(|_| bad("phone", "not a phone number in E.164 form")))
        .transpose()?;
    let email = text(fields, "email", 254)?
        .map(|e| normalize_email(&e).map_err(|_| bad("email", "not an e-mail address")))
        .transpose()?;
    if phone.is_none() && email.is_none() {
        return Err(SubmissionError::NoContact);
    }
    let interest = text(fields, "interest", 100)?;
    let priority = match text(fields, "priority", 20)? {
        None => Priority::Normal,
        Some(p) => Priority::parse(&p).ok_or(bad("priority", "use low, normal, high or urgent"))?,
    };
    let property_type = text(fields, "property_type", 20)?
        .map(|p| {
            PropertyType::parse(&p).ok_or(bad(
                "property_type",
                "use residential, commercial, agricultural or industrial",
            ))
        })
        .transpose()?;
    let estimated_system_size_w = match fields.get("system_size_kw") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let kw = n.as_f64().ok_or(bad("system_size_kw", "must be a number"))?;
            let watts = (kw * 1000.0).round();
            if !(1.0..=f64::from(MAX_SYSTEM_SIZE_W)).contains(&watts) {
                return Err(bad("system_size_kw", "must be more than 0 and at most 10000 kW"));
            }
            // In 1..=10_000_000 (checked above), so the conversion is exact.
            Some(watts as u32)
        }
        Some(_) => return Err(bad("system_size_kw", "must be a number")),
    };
    let budget = match fields.get("budget") {
        None | Some(Value::Null) => None,
        Some(Value::Object(b)) => {
            let minor = |name: &str| b.get(name).and_then(Value::as_i64);
            let budget = BudgetRange {
                min_minor: minor("min").ok_or(bad("budget", "min must be an integer amount in minor units"))?,
                max_minor: minor("max").ok_or(bad("budget", "max must be an integer amount in minor units"))?,
                currency: b
                    .get("currency")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            };
            if !budget.is_valid() {
                return Err(bad("budget", "needs 0 ≤ min ≤ max and an ISO 4217 currency code"));
            }
            Some(budget)
        }
        Some(_) => return Err(bad("budget", "must be an object {min, max, currency}")),
    };
    if source == LeadSource::Calculator && estimated_system_size_w.is_none() && budget.is_none() {
        return Err(SubmissionError::CalculatorWithoutFigures);
    }
    let at = match text(fields, "submitted_at", 40)? {
        None => now,
        Some(t) => DateTime::parse_from_rfc3339(&t)
            .map_err(|_| bad("submitted_at", "must be an RFC 3339 time"))?
            .with_timezone(&Utc),
    };
    if at > now + Duration::minutes(5) {
        return Err(bad("submitted_at", "is in the future"));
    }
    Ok(LeadInput {
        capture_ref: format!("{}:{submission_id}", source.as_str()),
        source,
        name,
        phone,
        email,
        raw: value.to_string(),
        interest,
        priority,
        property_type,
        estimated_system_size_w,
        budget,
        at,
    })
}

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates an intake key for a tenant and returns it: the only time it is ever shown.
pub async fn create_intake_key(pool: &PgPool, tenant: &TenantId) -> Result<String, CommandError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = format!("lik_{}", hex::encode(bytes));
    sqlx::query("INSERT INTO lead_intake_keys (key_hash, tenant_id, key_prefix) VALUES ($1, $2, $3)")
        .bind(hash_key(&key))
        .bind(tenant.as_str())
        .bind(key.chars().take(12).collect::<String>())
        .execute(pool)
        .await?;
    Ok(key)
}

/// The tenant whose (unrevoked) intake key this is, recording its use.
pub async fn tenant_of_key(pool: &PgPool, key: &str) -> Result<Option<TenantId>, CommandError> {
    if !key.starts_with("lik_") || key.len() != 68 {
        return Ok(None);
    }
    let tenant: Option<String> = sqlx::query_scalar(
        "UPDATE lead_intake_keys SET last_used_at = now()
          WHERE key_hash = $1 AND revoked_at IS NULL
         RETURNING tenant_id",
    )
    .bind(hash_key(key))
    .fetch_optional(pool)
    .await?;
    Ok(tenant.and_then(|t| TenantId::parse(&t).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn parse(source: LeadSource, body: Value, key: Option<&str>) -> Result<LeadInput, SubmissionError> {
        parse_submission(source, body.to_string().as_bytes(), key, now())
    }

    #[test]
    fn a_calculator_submission_reads_size_budget_and_keeps_the_raw_object() {
        let body = json!({"submission_id": "s-1", "name": "Tendai", "phone": "+263 77 123 4567",
                          "system_size_kw": 5.5, "budget": {"min": 100000, "max": 500000, "currency": "USD"},
                          "roof": "tin"});
        let Ok(input) = parse(LeadSource::Calculator, body, None) else {
            panic!("valid")
        };
        assert_eq!(input.capture_ref, "calculator:s-1");
        assert_eq!(input.estimated_system_size_w, Some(5500));
        assert_eq!(input.phone.as_ref().map(PhoneNumber::as_str), Some("+263771234567"));
        assert!(input.raw.contains("\"roof\":\"tin\""));
    }

    #[test]
    fn the_idempotency_key_header_wins_over_the_field() {
        let body = json!({"submission_id": "s-1", "email": "A@B.co"});
        let input = parse(LeadSource::WebForm, body, Some("hdr-9")).ok();
        assert_eq!(input.as_ref().map(|i| i.capture_ref.as_str()), Some("web_form:hdr-9"));
        assert_eq!(input.and_then(|i| i.email), Some("a@b.co".to_string()));
    }

    #[test]
    fn malformed_submissions_are_refused_with_their_reason() {
        let cases = [
            (json!(["not", "an", "object"]), SubmissionError::NotAnObject.code()),
            (json!({"phone": "+263771234567"}), "MISSING_SUBMISSION_ID"),
            (json!({"submission_id": "s", "name": "x"}), "NO_CONTACT_DETAILS"),
            (json!({"submission_id": "s", "phone": "call me"}), "MALFORMED_FIELD"),
            (json!({"submission_id": "s", "email": "nope"}), "MALFORMED_FIELD"),
            (
                json!({"submission_id": "s", "email": "a@b.co", "priority": "asap"}),
                "MALFORMED_FIELD",
            ),
            (
                json!({"submission_id": "s", "email": "a@b.co", "system_size_kw": 0}),
                "MALFORMED_FIELD",
            ),
            (
                json!({"submission_id": "s", "email": "a@b.co", "system_size_kw": "5"}),
                "MALFORMED_FIELD",
            ),
            (
                json!({"submission_id": "s", "email": "a@b.co", "budget": {"min": 5, "max": 1, "currency": "USD"}}),
                "MALFORMED_FIELD",
            ),
            (
                json!({"submission_id": "s", "email": "a@b.co", "submitted_at": "2999-01-01T00:00:00Z"}),
                "MALFORMED_FIELD",
            ),
        ];
        for (body, code) in cases {
            let got = parse(LeadSource::WebForm, body.clone(), None).map(|_| ());
            assert_eq!(got.map_err(|e| e.code()), Err(code), "{body}");
        }
        assert_eq!(
            parse(
                LeadSource::Calculator,
                json!({"submission_id": "s", "email": "a@b.co"}),
                None
            )
            .map(|_| ()),
            Err(SubmissionError::CalculatorWithoutFigures)
        );
    }

    #[test]
    fn only_web_form_chatbot_and_calculator_post_to_intake() {
        assert_eq!(parse_source("calculator"), Ok(LeadSource::Calculator));
        assert_eq!(parse_source("chatbot"), Ok(LeadSource::Chatbot));
        assert_eq!(parse_source("web_form"), Ok(LeadSource::WebForm));
        assert!(parse_source("manual").is_err());
        assert!(parse_source("whatever").is_err());
    }
}
