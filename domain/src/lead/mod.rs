//! The `Lead` aggregate: a prospect captured from a source, scored, assigned to a sales user and
//! moved through the sales pipeline until it is won (converted into a customer) or lost.
//!
//! Stream id: `<tenant>:lead_<uuid>`, chosen by the caller. Duplicate detection across leads
//! (the same phone or e-mail in a tenant) belongs to the write side, which keeps an index of
//! open leads and sends a matching capture to that lead's stream as `AttachDuplicateCapture`;
//! when the lead is closed the aggregate refuses it and the write side captures a new lead.
//!
//! Rules held here:
//! - a stream holds one lead: `CaptureLead` on a captured lead is refused; captures and
//!   duplicates are idempotent by the caller's `capture_ref` (a repeat records nothing, even if
//!   the lead closed since);
//! - a capture's facts are plausible: a budget is `0 ≤ min ≤ max` in an ISO 4217 currency, an
//!   estimated system size is 1 W to 10 MW;
//! - duplicates attach only to open leads;
//! - the score (see [`score`]) is recomputed on every capture and `LeadScored` is recorded only
//!   when it changes (value or reasons);
//! - assignment records only changes; closed leads are not (un)assigned;
//! - the pipeline `new → contacted → qualified → proposal_sent → negotiation → won` moves
//!   forward one stage at a time; `won` only from `negotiation` through `WinLead` (which names
//!   the customer); `lost` from any open stage through `MarkLeadLost` (a reason code, and a
//!   sealed note when the reason is `other`); `reopen` only from `lost`, back to `contacted`;
//! - `won` and `lost` are closed: nothing but reopening a lost lead is accepted (a repeated
//!   `WinLead` for the same customer is a retry and records nothing).
//!
//! Personal data (name, phone, e-mail, the raw capture, the lost note) travels only as
//! [`crate::pii::Envelope`]s; the score reads only whether such facts are present.

mod aggregate;
mod commands;
mod error;
mod events;
mod scoring;
mod values;

pub use aggregate::Lead;
pub use commands::{Capture, LeadCommand};
pub use error::LeadError;
pub use events::LeadEvent;
pub use scoring::{score, LeadFacts, Score, ScoreFactor, ScoreReason, MAX_SCORE};
pub use values::{
    is_currency_code, BudgetRange, LeadSource, LostReason, Money, Priority, PropertyType, Stage, MAX_SYSTEM_SIZE_W,
};
