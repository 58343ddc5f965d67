//! Events of the `WarrantyClaim` aggregate. Names are contracts: never renamed once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::{ClaimDecision, ClaimStatus};
use crate::pii::Envelope;

/// Facts about a warranty claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ClaimEvent {
    /// The claim was filed, submitted; carries the warranty's facts for read models.
    WarrantyClaimFiled {
        warranty_id: String,
        installation_id: String,
        serial: String,
        customer_id: String,
        warranty_ends_at: DateTime<Utc>,
        description: Envelope,
        by: String,
        at: DateTime<Utc>,
    },
    /// `submitted → under_review`.
    WarrantyClaimReviewStarted { by: String, at: DateTime<Utc> },
    /// `under_review → approved | rejected`; carries the status moved to.
    WarrantyClaimDecided {
        decision: ClaimDecision,
        status: ClaimStatus,
        note: Option<Envelope>,
        by: String,
        at: DateTime<Utc>,
    },
    /// `approved | rejected → resolved`.
    WarrantyClaimResolved {
        resolution: Envelope,
        by: String,
        at: DateTime<Utc>,
    },
}

impl ClaimEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "WarrantyClaimFiled",
        "WarrantyClaimReviewStarted",
        "WarrantyClaimDecided",
        "WarrantyClaimResolved",
    ];
}

impl DomainEvent for ClaimEvent {
    fn event_type(&self) -> String {
        match self {
            Self::WarrantyClaimFiled { .. } => "WarrantyClaimFiled",
            Self::WarrantyClaimReviewStarted { .. } => "WarrantyClaimReviewStarted",
            Self::WarrantyClaimDecided { .. } => "WarrantyClaimDecided",
            Self::WarrantyClaimResolved { .. } => "WarrantyClaimResolved",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
