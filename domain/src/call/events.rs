//! Events of the `Call` aggregate. Names are contracts: never renamed once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::{CallDirection, CallOutcome, GiveUpReason};
use crate::pii::Envelope;

/// Facts about a call and its follow-up.
// Events and commands are moved once and serialized; boxing the large variant would buy
// nothing and change nothing on the wire.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum CallEvent {
    /// A call ended, as the provider reported it.
    CallCompleted {
        provider: String,
        provider_call_id: String,
        direction: CallDirection,
        contact_id: Option<String>,
        from: Envelope,
        to: Envelope,
        duration_s: u32,
        outcome: CallOutcome,
        agent_user_id: Option<String>,
        ended_at: DateTime<Utc>,
    },
    /// A WhatsApp template follow-up was scheduled for the call's contact. Carries the contact
    /// (from the call) so the sender and projections need not look the call up.
    FollowUpScheduled {
        rule_version: u32,
        contact_id: String,
        template_name: String,
        language: String,
        due_at: DateTime<Utc>,
    },
    /// An attempt sent the follow-up. Terminal.
    FollowUpSent {
        attempt: u32,
        /// WhatsApp's message id of the template message.
        provider_message_ref: String,
        at: DateTime<Utc>,
    },
    /// An attempt failed. `next_attempt_at` is the derived time of the next attempt (the later
    /// of the backoff and what the sender asked for), `None` when this failure ends the
    /// follow-up (a `FollowUpGaveUp` follows it in the same commit).
    FollowUpFailed {
        attempt: u32,
        error_code: Option<i64>,
        retryable: bool,
        next_attempt_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// The follow-up was given up after a failure that cannot be retried or the last allowed
    /// attempt. Terminal.
    FollowUpGaveUp {
        /// The attempt whose failure ended it.
        attempt: u32,
        reason: GiveUpReason,
        at: DateTime<Utc>,
    },
}

impl CallEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "CallCompleted",
        "FollowUpScheduled",
        "FollowUpSent",
        "FollowUpFailed",
        "FollowUpGaveUp",
    ];
}

impl DomainEvent for CallEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CallCompleted { .. } => "CallCompleted",
            Self::FollowUpScheduled { .. } => "FollowUpScheduled",
            Self::FollowUpSent { .. } => "FollowUpSent",
            Self::FollowUpFailed { .. } => "FollowUpFailed",
            Self::FollowUpGaveUp { .. } => "FollowUpGaveUp",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
