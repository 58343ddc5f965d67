//! Commands of the `WarrantyClaim` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::ClaimDecision;
use crate::installation::warranty::WarrantyTerms;
use crate::pii::Envelope;

/// A request to change a warranty claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ClaimCommand {
    /// File the claim (once; a repeat records nothing).
    File(FileClaim),
    /// Start reviewing a submitted claim.
    StartReview { by: String, at: DateTime<Utc> },
    /// Decide a claim under review, with an optional sealed note.
    Decide {
        decision: ClaimDecision,
        note: Option<Envelope>,
        by: String,
        at: DateTime<Utc>,
    },
    /// Resolve a decided claim (repair done, replacement shipped, rejection explained).
    Resolve {
        resolution: Envelope,
        by: String,
        at: DateTime<Utc>,
    },
}

/// What a claim is filed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileClaim {
    /// The warranty's terms as they stand now (`None`: no such warranty).
    pub warranty: Option<WarrantyTerms>,
    /// The warranty local id the caller named (kept when no warranty was found).
    pub warranty_id: String,
    /// What is wrong, sealed under the customer's data key.
    pub description: Envelope,
    pub by: String,
    pub at: DateTime<Utc>,
}
