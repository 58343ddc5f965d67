//! Commands of the `Call` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::{AttemptOutcome, CallDirection, CallOutcome, PlannedFollowUp};
use crate::pii::Envelope;

/// A request to change a call.
// Events and commands are moved once and serialized; boxing the large variant would buy
// nothing and change nothing on the wire.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum CallCommand {
    /// Record a call the provider reports as ended (idempotent by the provider's call id).
    RecordCompletedCall(CompletedCall),
    /// Schedule the WhatsApp follow-up an automation rule decided for this call (idempotent by
    /// rule version). Sent by the follow-up process manager, which decides whether a rule
    /// applies ([`crate::call::AutomationRules::follow_up_for`]); the aggregate checks only
    /// the call's state.
    ScheduleFollowUp(PlannedFollowUp),
    /// Record what one attempt to send the follow-up came to (idempotent by attempt number).
    RecordFollowUpAttempt {
        /// 1 for the first attempt; strictly increasing.
        attempt: u32,
        outcome: AttemptOutcome,
        /// When the attempt ended.
        at: DateTime<Utc>,
    },
}

/// A call that ended, as the telephony provider reported it, its numbers already sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CompletedCall {
    /// The provider, e.g. `twilio`.
    pub provider: String,
    /// The provider's call id (Twilio's `CallSid`), the natural dedupe key.
    pub provider_call_id: String,
    pub direction: CallDirection,
    /// The contact on the other end, when the number is known to the tenant.
    pub contact_id: Option<String>,
    /// The calling number (sealed).
    pub from: Envelope,
    /// The called number (sealed).
    pub to: Envelope,
    /// Talk time in seconds; 0 for a call never answered.
    pub duration_s: u32,
    pub outcome: CallOutcome,
    /// The tenant's user who took or placed the call, when known.
    pub agent_user_id: Option<String>,
    /// The provider's time of the call's end.
    pub ended_at: DateTime<Utc>,
}
