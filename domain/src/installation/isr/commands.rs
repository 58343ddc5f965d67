//! Commands of the `InstallationRecord` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::InstallationType;
use crate::pii::Envelope;

/// A request to change an installation system record.
// Events and commands are moved once and serialized; boxing the large variant would buy
// nothing and change nothing on the wire.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum InstallationCommand {
    /// Open the record (once; a repeat records nothing).
    Open(OpenInstallation),
    /// Assign a technician (already assigned: records nothing). Before commissioning only.
    AssignTechnician {
        technician_id: String,
        by: String,
        at: DateTime<Utc>,
    },
    /// Unassign a technician (not assigned: records nothing). Before commissioning only.
    UnassignTechnician {
        technician_id: String,
        by: String,
        at: DateTime<Utc>,
    },
    /// Schedule the job for the first time (the same time again records nothing).
    Schedule {
        starts_at: DateTime<Utc>,
        by: String,
        at: DateTime<Utc>,
    },
    /// Move a scheduled job to another time, with a reason (sealed: it often names the
    /// customer's circumstances).
    Reschedule {
        starts_at: DateTime<Utc>,
        reason: Envelope,
        by: String,
        at: DateTime<Utc>,
    },
    /// Start the work on site: `pending → in_progress`; needs a technician.
    StartWork { by: String, at: DateTime<Utc> },
    /// Tick an item of the type's checklist (while in progress).
    CompleteChecklistItem {
        item: String,
        by: String,
        at: DateTime<Utc>,
    },
    /// Attach a photo by kind and the sha-256 (lowercase hex) of its content (while in
    /// progress). The same kind and hash again records nothing.
    AttachPhoto {
        kind: String,
        sha256: String,
        by: String,
        at: DateTime<Utc>,
    },
    /// Record a serialized component installed (while in progress; a known serial records
    /// nothing).
    InstallComponent {
        serial: String,
        kind: String,
        warranty_months: u32,
        by: String,
        at: DateTime<Utc>,
    },
    /// Commission: `in_progress → commissioned`, refused with what is missing.
    Commission { by: String, at: DateTime<Utc> },
    /// Activate: `commissioned → active`.
    Activate { by: String, at: DateTime<Utc> },
    /// Correct what the installation was opened with, with a reason (sealed): the site address
    /// (any time before decommissioning) and the system size (before commissioning: the payout
    /// and warranties are decided from it then). At least one of the two; the size it already
    /// has records nothing.
    CorrectDetails {
        site_address: Option<Envelope>,
        system_size_w: Option<u32>,
        reason: Envelope,
        by: String,
        at: DateTime<Utc>,
    },
    /// Decommission: `commissioned | active → decommissioned` (reason sealed).
    Decommission {
        reason: Option<Envelope>,
        by: String,
        at: DateTime<Utc>,
    },
}

/// The facts an installation is opened with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OpenInstallation {
    pub installation_type: InstallationType,
    /// The customer's contact id (a keyed hash, `ct_…`).
    pub customer_id: String,
    pub order_id: String,
    /// The site address, sealed under the customer's data key.
    pub site_address: Envelope,
    /// The system size in watts (more than zero; for furniture, the nominal size the payout
    /// tiers use).
    pub system_size_w: u32,
    pub by: String,
    pub at: DateTime<Utc>,
}
