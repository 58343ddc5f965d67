//! Value types of warranty claims: the status machine and the decision.

use serde::{Deserialize, Serialize};

/// A claim's status: `submitted → under_review → approved | rejected → resolved`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    #[default]
    Submitted,
    UnderReview,
    Approved,
    Rejected,
    Resolved,
}

impl ClaimStatus {
    /// Every status.
    pub const ALL: [Self; 5] = [
        Self::Submitted,
        Self::UnderReview,
        Self::Approved,
        Self::Rejected,
        Self::Resolved,
    ];

    /// The status as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::UnderReview => "under_review",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Resolved => "resolved",
        }
    }

    /// From its stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The allowed moves: `submitted → under_review → approved | rejected → resolved`.
    pub fn may_move_to(self, next: Self) -> bool {
        matches!(
            (self, next),
            (Self::Submitted, Self::UnderReview)
                | (Self::UnderReview, Self::Approved)
                | (Self::UnderReview, Self::Rejected)
                | (Self::Approved, Self::Resolved)
                | (Self::Rejected, Self::Resolved)
        )
    }
}

/// What a review decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClaimDecision {
    Approved,
    Rejected,
}

impl ClaimDecision {
    /// The status the decision moves the claim to.
    pub fn status(self) -> ClaimStatus {
        match self {
            Self::Approved => ClaimStatus::Approved,
            Self::Rejected => ClaimStatus::Rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_is_final_and_every_status_round_trips() {
        for s in ClaimStatus::ALL {
            assert_eq!(ClaimStatus::parse(s.as_str()), Some(s));
            assert!(!ClaimStatus::Resolved.may_move_to(s));
            assert!(!s.may_move_to(ClaimStatus::Submitted));
        }
        assert!(!ClaimStatus::Submitted.may_move_to(ClaimStatus::Approved));
    }
}
