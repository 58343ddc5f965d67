//! Telephony: the `Call` aggregate (a completed call and the WhatsApp follow-up it may
//! trigger) and, in [`automation`], the tenant's `AutomationRules` that decide follow-ups.
//!
//! Stream id: `<tenant>:call_<hash>` ([`call_stream_local_id`] over the provider and its call
//! id), one stream per provider call.
//!
//! Rules held here:
//! - a completed call is recorded once, however often the provider reports it (the provider's
//!   call id is the natural dedupe key; the first report stands), and a call stream holds one
//!   provider call only;
//! - a call lasts at most 24 hours;
//! - a follow-up is scheduled only after the call completed, only for a known contact, and once
//!   per call (the same rule version again changes nothing); whether a rule applies to the
//!   call's outcome is decided by the process manager from
//!   [`AutomationRules::follow_up_for`];
//! - a phone call does not open WhatsApp's 24-hour window, so a follow-up is always an approved
//!   template, recorded by name and language;
//! - attempts are numbered from 1, strictly increasing, at most [`MAX_FOLLOW_UP_ATTEMPTS`]; a
//!   repeated report of the last attempt changes nothing;
//! - a sent follow-up is final; a failure is retried after [`follow_up_backoff`] (or later if
//!   the provider asks), unless it cannot be retried or was the last allowed attempt, when the
//!   follow-up is given up, which is final too.

pub mod automation;

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::Call;
pub use automation::{AutomationRules, AutomationRulesCommand, AutomationRulesError, AutomationRulesEvent};
pub use commands::{CallCommand, CompletedCall};
pub use error::CallError;
pub use events::CallEvent;
pub use values::{
    call_stream_local_id, follow_up_backoff, AttemptOutcome, CallDirection, CallOutcome, FollowUpStatus, GiveUpReason,
    PlannedFollowUp, MAX_CALL_DURATION_S, MAX_FOLLOW_UP_ATTEMPTS,
};
