//! Events of the `Payout` aggregate. Names are contracts: never renamed once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::PayoutTier;

/// Facts about a payout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PayoutEvent {
    /// The payout was computed, pending approval; carries the tier, base, bonus and amount
    /// (`amount = base + bonus`) so read models never recompute them.
    PayoutComputed {
        installation_id: String,
        technician_ids: Vec<String>,
        system_size_w: u32,
        tier: PayoutTier,
        base_minor: i64,
        bonus_minor: i64,
        amount_minor: i64,
        currency: String,
        by: String,
        at: DateTime<Utc>,
    },
    PayoutApproved {
        by: String,
        at: DateTime<Utc>,
    },
    /// The quality bonus of a pending payout was granted, replacing any earlier one; carries the
    /// bonus and the new total (`amount = base + bonus`) so read models never recompute them.
    QualityBonusGranted {
        bonus_minor: i64,
        amount_minor: i64,
        by: String,
        at: DateTime<Utc>,
    },
    /// The payout was paid; carries the amount and currency for finance's read model.
    PayoutPaid {
        reference: String,
        amount_minor: i64,
        currency: String,
        by: String,
        at: DateTime<Utc>,
    },
}

impl PayoutEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] =
        &["PayoutComputed", "PayoutApproved", "QualityBonusGranted", "PayoutPaid"];
}

impl DomainEvent for PayoutEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PayoutComputed { .. } => "PayoutComputed",
            Self::PayoutApproved { .. } => "PayoutApproved",
            Self::QualityBonusGranted { .. } => "QualityBonusGranted",
            Self::PayoutPaid { .. } => "PayoutPaid",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
