//! Commands of the `MaintenanceContract` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pii::Envelope;

/// A request to change a maintenance contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum MaintenanceCommand {
    /// Start the contract (once; a repeat records nothing).
    Start(StartMaintenanceContract),
    /// Renew for `term_months` from the current end, under a reference (a payment, an invoice,
    /// `auto:<old end>` for the automatic renewal); a reference already seen records nothing.
    Renew {
        reference: String,
        term_months: u32,
        by: String,
        at: DateTime<Utc>,
    },
    /// Switch automatic renewal on or off (the same setting again records nothing).
    SetAutoRenewal {
        auto_renew: bool,
        by: String,
        at: DateTime<Utc>,
    },
    /// Cancel the contract (reason sealed).
    Cancel {
        reason: Option<Envelope>,
        by: String,
        at: DateTime<Utc>,
    },
}

/// The facts a contract starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StartMaintenanceContract {
    /// The customer's contact id (a keyed hash, `ct_…`).
    pub customer_id: String,
    /// The installation maintained, if any (`isr_<id>`).
    pub installation_id: Option<String>,
    pub starts_at: DateTime<Utc>,
    /// 1 to [`super::MAX_TERM_MONTHS`].
    pub term_months: u32,
    /// The annual value in minor units (not negative).
    pub annual_value_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    pub auto_renew: bool,
    pub by: String,
    pub at: DateTime<Utc>,
}
