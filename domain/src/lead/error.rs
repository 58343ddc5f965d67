//! Refusals of the `Lead` aggregate, named after the rule they enforce.

use super::values::Stage;

/// Why a lead command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeadError {
    /// A capture must carry the caller's reference, the key that makes it idempotent.
    #[error("a capture reference is required")]
    MissingCaptureRef,
    /// A stream holds one lead: a second capture is attached as a duplicate, not captured.
    #[error("this lead is already captured; attach the capture as a duplicate instead")]
    LeadAlreadyCaptured,
    /// Every command but `CaptureLead` needs a captured lead.
    #[error("no lead has been captured in this stream")]
    LeadNotFound,
    /// Won and lost leads are closed: only a lost lead may be reopened.
    #[error("the lead is closed ({})", stage.as_str())]
    LeadClosed { stage: Stage },
    /// A budget is `0 ≤ min ≤ max` in an ISO 4217 currency.
    #[error("a budget needs 0 ≤ min ≤ max and an ISO 4217 currency code")]
    InvalidBudget,
    /// An estimated system size is 1 W to 10 MW.
    #[error("an estimated system size must be between 1 W and 10 MW; got {watts} W")]
    InvalidSystemSize { watts: u32 },
    /// An assignment names the user.
    #[error("a user id is required")]
    MissingUserId,
    /// The pipeline moves one stage at a time.
    #[error("a lead moves one stage at a time: {} cannot go to {}", from.as_str(), to.as_str())]
    StageSkipped { from: Stage, to: Stage },
    /// The pipeline only moves forward (reopening a lost lead aside).
    #[error("a lead only moves forward: {} cannot go back to {}", from.as_str(), to.as_str())]
    StageMovesBackward { from: Stage, to: Stage },
    /// `won` and `lost` are reached with `WinLead` and `MarkLeadLost`, which carry the customer
    /// and the reason.
    #[error("a lead is closed as {} with its own command, not advanced there", to.as_str())]
    AdvanceCannotClose { to: Stage },
    /// Only a lost lead can be reopened.
    #[error("only a lost lead can be reopened; this one is {}", stage.as_str())]
    LeadNotLost { stage: Stage },
    /// The reason `other` says nothing by itself: it needs a note.
    #[error("a lead lost for another reason needs a note saying why")]
    LostReasonNeedsNote,
    /// Winning converts the lead into a customer, so it names one.
    #[error("a customer id is required to win a lead")]
    MissingCustomerId,
    /// The value that won a lead is a non-negative amount in an ISO 4217 currency.
    #[error("a won value needs a non-negative amount and an ISO 4217 currency code")]
    InvalidWinValue,
}

impl LeadError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingCaptureRef => "MISSING_CAPTURE_REF",
            Self::LeadAlreadyCaptured => "LEAD_ALREADY_CAPTURED",
            Self::LeadNotFound => "LEAD_NOT_FOUND",
            Self::LeadClosed { .. } => "LEAD_CLOSED",
            Self::InvalidBudget => "INVALID_BUDGET",
            Self::InvalidSystemSize { .. } => "INVALID_SYSTEM_SIZE",
            Self::MissingUserId => "MISSING_USER_ID",
            Self::StageSkipped { .. } => "STAGE_SKIPPED",
            Self::StageMovesBackward { .. } => "STAGE_MOVES_BACKWARD",
            Self::AdvanceCannotClose { .. } => "ADVANCE_CANNOT_CLOSE",
            Self::LeadNotLost { .. } => "LEAD_NOT_LOST",
            Self::LostReasonNeedsNote => "LOST_REASON_NEEDS_NOTE",
            Self::MissingCustomerId => "MISSING_CUSTOMER_ID",
            Self::InvalidWinValue => "INVALID_WIN_VALUE",
        }
    }
}
