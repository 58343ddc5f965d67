//! Commands of the `Lead` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::{BudgetRange, LeadSource, LostReason, Money, Priority, PropertyType, Stage};
use crate::pii::Envelope;

/// A request to change a lead.
// Events and commands are moved once and serialized; boxing the large variant would buy
// nothing and change nothing on the wire.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum LeadCommand {
    /// Capture a new lead in this (new) stream. Idempotent by `capture_ref`.
    CaptureLead(Capture),
    /// Attach a second capture of the same prospect (the write side matched its phone or e-mail
    /// to this open lead). Idempotent by `capture_ref`.
    AttachDuplicateCapture(Capture),
    /// Assign the lead to a sales user; assigning to the current assignee changes nothing.
    AssignLead { user_id: String, at: DateTime<Utc> },
    /// Leave the lead unassigned; on an unassigned lead, changes nothing.
    UnassignLead { at: DateTime<Utc> },
    /// Move the lead one stage forward along the open pipeline (`new` … `negotiation`).
    /// Advancing to the current stage changes nothing.
    AdvanceLead { to: Stage, at: DateTime<Utc> },
    /// Close the lead as lost, from any open stage.
    MarkLeadLost {
        reason: LostReason,
        /// Free text about why (sealed); required when the reason is `other`.
        note: Option<Envelope>,
        at: DateTime<Utc>,
    },
    /// Reopen a lost lead at `contacted`.
    ReopenLead { at: DateTime<Utc> },
    /// Close the lead as won from `negotiation`, converting it into a customer. Repeating it
    /// for the same customer changes nothing.
    WinLead {
        /// The customer the lead became (an id, not personal data).
        customer_id: String,
        /// The order that won it, when there is one.
        order_ref: Option<String>,
        /// The value that won it, when known.
        value: Option<Money>,
        at: DateTime<Utc>,
    },
}

/// One capture of a prospect, as received from a source, personal fields already sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Capture {
    /// The caller's idempotency key (the submission id, WhatsApp message id, import row…).
    pub capture_ref: String,
    pub source: LeadSource,
    /// The contact's keyed-hash id, when the prospect is (or became) a contact.
    pub contact_id: Option<String>,
    /// The prospect's name (sealed).
    pub name: Option<Envelope>,
    /// The prospect's phone number (sealed).
    pub phone: Option<Envelope>,
    /// The prospect's e-mail address (sealed).
    pub email: Option<Envelope>,
    /// The data exactly as received (form fields, calculator inputs and results, chat
    /// transcript…) as JSON text (sealed).
    pub raw: Envelope,
    /// The product line asked about (`solar`, `starlink`…); not personal data.
    pub interest: Option<String>,
    pub priority: Priority,
    pub property_type: Option<PropertyType>,
    /// The estimated system size in watts (kW × 1000), 1 W to 10 MW.
    pub estimated_system_size_w: Option<u32>,
    pub budget: Option<BudgetRange>,
    /// When the capture was received.
    pub at: DateTime<Utc>,
}
