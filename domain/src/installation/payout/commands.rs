//! Commands of the `Payout` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A request to change a payout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PayoutCommand {
    /// Compute the payout of a commissioned installation (once).
    Compute(ComputePayout),
    /// Approve a pending payout (`pending → approved`).
    Approve { by: String, at: DateTime<Utc> },
    /// Grant (or replace) the quality bonus of a pending payout; the total becomes
    /// `base + amount_minor`.
    GrantQualityBonus {
        amount_minor: u32,
        by: String,
        at: DateTime<Utc>,
    },
    /// Record that an approved payout was paid, under finance's reference.
    MarkPaid {
        reference: String,
        by: String,
        at: DateTime<Utc>,
    },
}

/// What a payout is computed from (the facts of `InstallationCommissioned`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ComputePayout {
    pub installation_id: String,
    pub technician_ids: Vec<String>,
    pub system_size_w: u32,
    /// A quality bonus in minor units, when the job earned one.
    pub quality_bonus_minor: Option<u32>,
    /// ISO 4217 code of the tenant's payout currency.
    pub currency: String,
    pub by: String,
    pub at: DateTime<Utc>,
}
