//! Refusals of the `WarrantyClaim` aggregate, named after the rule they enforce.

use chrono::{DateTime, Utc};

/// Why a warranty claim command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Only a filed claim can be changed.
    #[error("no such warranty claim")]
    UnknownClaim,
    /// A claim is filed only on a registered, active (not voided) warranty.
    #[error("warranty {warranty_id} is not active")]
    WarrantyNotActive { warranty_id: String },
    /// A claim is filed only within the warranty's period.
    #[error("the claim falls outside the warranty period ({starts_at} to {ends_at})")]
    OutsideWarrantyPeriod {
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    },
    /// Status moves follow `submitted → under_review → approved | rejected → resolved`.
    #[error("a claim cannot move from {from} to {to}")]
    ClaimMoveNotAllowed { from: &'static str, to: &'static str },
}

impl ClaimError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownClaim => "UNKNOWN_CLAIM",
            Self::WarrantyNotActive { .. } => "WARRANTY_NOT_ACTIVE",
            Self::OutsideWarrantyPeriod { .. } => "OUTSIDE_WARRANTY_PERIOD",
            Self::ClaimMoveNotAllowed { .. } => "CLAIM_MOVE_NOT_ALLOWED",
        }
    }
}
