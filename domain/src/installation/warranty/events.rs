//! Events of the `Warranty` aggregate. Names are contracts: never renamed once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::pii::Envelope;

/// Facts about a warranty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum WarrantyEvent {
    /// The warranty was registered, active; carries the derived end of its period.
    WarrantyRegistered {
        installation_id: String,
        serial: String,
        kind: String,
        customer_id: String,
        warranty_months: u32,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        by: String,
        at: DateTime<Utc>,
    },
    /// The warranty was voided: no claim can be filed on it any more.
    WarrantyVoided {
        reason: Envelope,
        by: String,
        at: DateTime<Utc>,
    },
}

impl WarrantyEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &["WarrantyRegistered", "WarrantyVoided"];
}

impl DomainEvent for WarrantyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::WarrantyRegistered { .. } => "WarrantyRegistered",
            Self::WarrantyVoided { .. } => "WarrantyVoided",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
