//! Commands of the `Warranty` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pii::Envelope;

/// A request to change a warranty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum WarrantyCommand {
    /// Register the warranty of an installed component (once; a repeat records nothing).
    Register(RegisterWarranty),
    /// Void an active warranty (tampering, unpaid order, …); the reason is sealed because it
    /// often describes the customer's circumstances. Voiding twice records nothing.
    Void {
        reason: Envelope,
        by: String,
        at: DateTime<Utc>,
    },
}

/// The facts a warranty is registered with (from `InstallationCommissioned`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RegisterWarranty {
    /// The installation's local id (`isr_<id>`).
    pub installation_id: String,
    /// The component's serial number.
    pub serial: String,
    /// What the component is (`panel`, `inverter`, …).
    pub kind: String,
    /// The customer's contact id (a keyed hash, `ct_…`).
    pub customer_id: String,
    /// The warranty period in months, 1 to [`super::MAX_WARRANTY_MONTHS`].
    pub warranty_months: u32,
    /// When the warranty starts: the commissioning time.
    pub starts_at: DateTime<Utc>,
    pub by: String,
    pub at: DateTime<Utc>,
}
