//! Events of the `InstallationRecord` aggregate. Names are contracts: never renamed once
//! stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::{Component, InstallationStatus, InstallationType};
use crate::pii::Envelope;

/// Facts about an installation.
// Events and commands are moved once and serialized; boxing the large variant would buy
// nothing and change nothing on the wire.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum InstallationEvent {
    /// The record was opened, pending.
    InstallationOpened {
        installation_type: InstallationType,
        customer_id: String,
        order_id: String,
        site_address: Envelope,
        system_size_w: u32,
        by: String,
        at: DateTime<Utc>,
    },
    /// Carries the derived team after the assignment.
    TechnicianAssigned {
        technician_id: String,
        technicians: Vec<String>,
        by: String,
        at: DateTime<Utc>,
    },
    /// Carries the derived team after the unassignment.
    TechnicianUnassigned {
        technician_id: String,
        technicians: Vec<String>,
        by: String,
        at: DateTime<Utc>,
    },
    InstallationScheduled {
        starts_at: DateTime<Utc>,
        by: String,
        at: DateTime<Utc>,
    },
    InstallationRescheduled {
        from: DateTime<Utc>,
        starts_at: DateTime<Utc>,
        reason: Envelope,
        by: String,
        at: DateTime<Utc>,
    },
    /// A status move (`pending → in_progress`, `commissioned → active`,
    /// `→ decommissioned`). Commissioning has its own event.
    InstallationStatusChanged {
        from: InstallationStatus,
        to: InstallationStatus,
        reason: Option<Envelope>,
        by: String,
        at: DateTime<Utc>,
    },
    /// Carries the derived checklist progress.
    ChecklistItemCompleted {
        item: String,
        completed: u32,
        required: u32,
        by: String,
        at: DateTime<Utc>,
    },
    PhotoAttached {
        kind: String,
        sha256: String,
        by: String,
        at: DateTime<Utc>,
    },
    ComponentInstalled {
        serial: String,
        kind: String,
        warranty_months: u32,
        by: String,
        at: DateTime<Utc>,
    },
    /// The opening's details were corrected: a new site address (sealed) and/or a new system
    /// size (with the size it replaces), and why (sealed).
    InstallationDetailsCorrected {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        site_address: Option<Envelope>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system_size_w: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_size_w: Option<u32>,
        reason: Envelope,
        by: String,
        at: DateTime<Utc>,
    },
    /// `in_progress → commissioned`, with everything the process manager needs to register
    /// warranties and compute the payout.
    InstallationCommissioned {
        installation_type: InstallationType,
        customer_id: String,
        order_id: String,
        system_size_w: u32,
        components: Vec<Component>,
        technicians: Vec<String>,
        by: String,
        at: DateTime<Utc>,
    },
}

impl InstallationEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "InstallationOpened",
        "TechnicianAssigned",
        "TechnicianUnassigned",
        "InstallationScheduled",
        "InstallationRescheduled",
        "InstallationStatusChanged",
        "ChecklistItemCompleted",
        "PhotoAttached",
        "ComponentInstalled",
        "InstallationCommissioned",
        "InstallationDetailsCorrected",
    ];
}

impl DomainEvent for InstallationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::InstallationOpened { .. } => "InstallationOpened",
            Self::TechnicianAssigned { .. } => "TechnicianAssigned",
            Self::TechnicianUnassigned { .. } => "TechnicianUnassigned",
            Self::InstallationScheduled { .. } => "InstallationScheduled",
            Self::InstallationRescheduled { .. } => "InstallationRescheduled",
            Self::InstallationStatusChanged { .. } => "InstallationStatusChanged",
            Self::ChecklistItemCompleted { .. } => "ChecklistItemCompleted",
            Self::PhotoAttached { .. } => "PhotoAttached",
            Self::ComponentInstalled { .. } => "ComponentInstalled",
            Self::InstallationCommissioned { .. } => "InstallationCommissioned",
            Self::InstallationDetailsCorrected { .. } => "InstallationDetailsCorrected",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
