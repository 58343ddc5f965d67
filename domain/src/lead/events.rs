//! Events of the `Lead` aggregate. Names are contracts: never renamed once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::scoring::ScoreReason;
use super::values::{BudgetRange, LeadSource, LostReason, Money, Priority, PropertyType, Stage};
use crate::pii::Envelope;

/// Facts about a lead.
// Events and commands are moved once and serialized; boxing the large variant would buy
// nothing and change nothing on the wire.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum LeadEvent {
    /// A lead was captured; it starts at `stage` (always `new`). Always followed by
    /// `LeadScored`.
    LeadCaptured {
        capture_ref: String,
        source: LeadSource,
        contact_id: Option<String>,
        name: Option<Envelope>,
        phone: Option<Envelope>,
        email: Option<Envelope>,
        raw: Envelope,
        interest: Option<String>,
        priority: Priority,
        property_type: Option<PropertyType>,
        estimated_system_size_w: Option<u32>,
        budget: Option<BudgetRange>,
        stage: Stage,
        at: DateTime<Utc>,
    },
    /// Another capture of the same prospect was attached to this open lead. `captures` is the
    /// lead's number of captures after it (2 for the first duplicate).
    DuplicateCaptureAttached {
        capture_ref: String,
        source: LeadSource,
        contact_id: Option<String>,
        name: Option<Envelope>,
        phone: Option<Envelope>,
        email: Option<Envelope>,
        raw: Envelope,
        interest: Option<String>,
        priority: Priority,
        property_type: Option<PropertyType>,
        estimated_system_size_w: Option<u32>,
        budget: Option<BudgetRange>,
        captures: u32,
        at: DateTime<Utc>,
    },
    /// The lead's score changed (or was first computed): the new value and its reasons.
    LeadScored {
        score: u8,
        reasons: Vec<ScoreReason>,
        at: DateTime<Utc>,
    },
    /// The lead was assigned to a sales user.
    LeadAssigned {
        user_id: String,
        previous_user_id: Option<String>,
        at: DateTime<Utc>,
    },
    /// The lead was left unassigned.
    LeadUnassigned {
        previous_user_id: String,
        at: DateTime<Utc>,
    },
    /// The lead moved one stage forward along the open pipeline.
    LeadAdvanced { from: Stage, to: Stage, at: DateTime<Utc> },
    /// The lead was lost at stage `from`.
    LeadLost {
        from: Stage,
        reason: LostReason,
        note: Option<Envelope>,
        at: DateTime<Utc>,
    },
    /// A lost lead was reopened at stage `to` (always `contacted`).
    LeadReopened { to: Stage, at: DateTime<Utc> },
    /// The lead was won from `negotiation` and converted into the customer `customer_id`.
    LeadWon {
        customer_id: String,
        order_ref: Option<String>,
        value: Option<Money>,
        at: DateTime<Utc>,
    },
}

impl LeadEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "LeadCaptured",
        "DuplicateCaptureAttached",
        "LeadScored",
        "LeadAssigned",
        "LeadUnassigned",
        "LeadAdvanced",
        "LeadLost",
        "LeadReopened",
        "LeadWon",
    ];
}

impl DomainEvent for LeadEvent {
    fn event_type(&self) -> String {
        match self {
            Self::LeadCaptured { .. } => "LeadCaptured",
            Self::DuplicateCaptureAttached { .. } => "DuplicateCaptureAttached",
            Self::LeadScored { .. } => "LeadScored",
            Self::LeadAssigned { .. } => "LeadAssigned",
            Self::LeadUnassigned { .. } => "LeadUnassigned",
            Self::LeadAdvanced { .. } => "LeadAdvanced",
            Self::LeadLost { .. } => "LeadLost",
            Self::LeadReopened { .. } => "LeadReopened",
            Self::LeadWon { .. } => "LeadWon",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
