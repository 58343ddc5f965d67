//! Value types of calls and their follow-ups: direction, outcome, the follow-up plan handed
//! over by the automation rules, attempt outcomes, and the retry backoff.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The longest call Chronicle believes: 24 hours, in seconds. A longer duration is a provider
/// or parsing error, refused rather than stored.
pub const MAX_CALL_DURATION_S: u32 = 24 * 60 * 60;

/// How many times a follow-up is tried before Chronicle gives up on it.
pub const MAX_FOLLOW_UP_ATTEMPTS: u32 = 5;

/// The local part of a call's stream id: `call_` and 32 hex digits of SHA-256 over the provider
/// and its call id. The caller prefixes the tenant (`TenantId::stream_id`). A provider's call id
/// is not personal data; hashing only keeps stream ids short and of one alphabet whatever the
/// provider's id looks like.
pub fn call_stream_local_id(provider: &str, provider_call_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(provider.as_bytes());
    hasher.update([0]);
    hasher.update(provider_call_id.as_bytes());
    let digest = hasher.finalize();
    format!("call_{}", hex::encode(&digest[..16]))
}

/// Who placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    /// The contact called the tenant.
    Inbound,
    /// The tenant (an agent or an API call) called the contact.
    Outbound,
}

impl CallDirection {
    /// The direction as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Answered by a person and hung up normally.
    Completed,
    NoAnswer,
    Busy,
    /// The provider could not connect the call.
    Failed,
    /// Hung up by the caller before it was answered.
    Canceled,
    /// Answered by a machine.
    Voicemail,
}

impl CallOutcome {
    /// Every outcome, in a stable order.
    pub const ALL: [CallOutcome; 6] = [
        Self::Completed,
        Self::NoAnswer,
        Self::Busy,
        Self::Failed,
        Self::Canceled,
        Self::Voicemail,
    ];

    /// The outcome as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::NoAnswer => "no_answer",
            Self::Busy => "busy",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Voicemail => "voicemail",
        }
    }
}

/// A follow-up decided by a tenant's automation rule for one call: which template, in which
/// language, when. A phone call does not open WhatsApp's 24-hour window, so a follow-up is
/// always an approved template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlannedFollowUp {
    /// The version of the rule that decided it.
    pub rule_version: u32,
    pub template_name: String,
    pub language: String,
    /// When the first attempt is due.
    pub due_at: DateTime<Utc>,
}

/// What one follow-up send attempt came to, as the sender reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum AttemptOutcome {
    /// WhatsApp accepted the template message.
    Sent {
        /// WhatsApp's message id (`wamid…`) of the template message.
        provider_message_ref: String,
    },
    /// The send failed.
    Failed {
        /// The provider's error code, when it gave one (e.g. 131026: undeliverable).
        error_code: Option<i64>,
        /// Whether trying again may succeed (a timeout, a rate limit) or not (an invalid
        /// number, a paused template).
        retryable: bool,
        /// The earliest time the sender or the provider wants the next attempt (a rate limit's
        /// Retry-After). The recorded next attempt is the later of this and the backoff.
        next_attempt_at: Option<DateTime<Utc>>,
    },
}

/// Why a follow-up was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GiveUpReason {
    /// The last failure cannot be cured by retrying.
    NotRetryable,
    /// [`MAX_FOLLOW_UP_ATTEMPTS`] attempts failed.
    MaxAttempts,
}

impl GiveUpReason {
    /// The reason as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotRetryable => "not_retryable",
            Self::MaxAttempts => "max_attempts",
        }
    }
}

/// Where a call's follow-up stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FollowUpStatus {
    /// No rule scheduled one (yet).
    #[default]
    NotScheduled,
    /// Scheduled, or failed and waiting for its next attempt.
    Pending,
    /// Sent; terminal.
    Sent,
    /// Given up; terminal.
    GaveUp,
}

impl FollowUpStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotScheduled => "not_scheduled",
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::GaveUp => "gave_up",
        }
    }
}

/// How long to wait after failed attempt number `attempt` before the next one: 1 minute, 5
/// minutes, 15 minutes, then 1 hour for every later attempt. Attempt 0 (which is never
/// recorded) is treated as the first.
pub fn follow_up_backoff(attempt: u32) -> Duration {
    match attempt {
        0 | 1 => Duration::minutes(1),
        2 => Duration::minutes(5),
        3 => Duration::minutes(15),
        _ => Duration::hours(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_grows_at_each_step_and_is_capped_at_an_hour() {
        assert_eq!(follow_up_backoff(0), Duration::minutes(1));
        assert_eq!(follow_up_backoff(1), Duration::minutes(1));
        assert_eq!(follow_up_backoff(2), Duration::minutes(5));
        assert_eq!(follow_up_backoff(3), Duration::minutes(15));
        assert_eq!(follow_up_backoff(4), Duration::hours(1));
        assert_eq!(follow_up_backoff(5), Duration::hours(1));
        assert_eq!(follow_up_backoff(u32::MAX), Duration::hours(1));
    }

    #[test]
    fn the_backoff_never_shrinks() {
        for attempt in 1..=MAX_FOLLOW_UP_ATTEMPTS + 3 {
            assert!(
                follow_up_backoff(attempt + 1) >= follow_up_backoff(attempt),
                "{attempt}"
            );
        }
    }

    #[test]
    fn call_stream_ids_are_stable_per_provider_and_call() {
        let a = call_stream_local_id("twilio", "CA0123");
        assert_eq!(a, call_stream_local_id("twilio", "CA0123"));
        assert_ne!(a, call_stream_local_id("twilio", "CA0124"));
        assert_ne!(a, call_stream_local_id("other", "CA0123"));
        assert!(a.starts_with("call_") && a.len() == 37);
        assert!(a[5..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn outcomes_serialize_as_their_stored_names() {
        for outcome in CallOutcome::ALL {
            assert_eq!(
                serde_json::to_value(outcome).ok(),
                Some(serde_json::Value::String(outcome.as_str().into()))
            );
        }
        assert_eq!(
            serde_json::to_value(CallDirection::Outbound).ok(),
            Some(serde_json::Value::String("outbound".into()))
        );
    }
}
