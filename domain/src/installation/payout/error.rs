//! Refusals of the `Payout` aggregate, named after the rule they enforce.

/// Why a payout command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutError {
    /// Only a computed payout can be approved or paid.
    #[error("no such payout")]
    UnknownPayout,
    /// Ids and references must not be blank.
    #[error("{field} must not be blank")]
    Blank { field: &'static str },
    /// A payout pays at least one technician.
    #[error("a payout needs at least one technician")]
    NoTechnician,
    /// A payout is for a system of more than zero watts.
    #[error("the system size must be more than zero watts")]
    ZeroSystemSize,
    /// Currencies are ISO 4217 codes.
    #[error("{currency:?} is not an ISO 4217 currency code")]
    InvalidCurrency { currency: String },
    /// Nobody approves their own payout.
    #[error("{approver} is paid by this payout and cannot approve it")]
    SelfApproval { approver: String },
    /// Nobody grants a quality bonus to a payout that pays them.
    #[error("{granter} is paid by this payout and cannot grant its quality bonus")]
    SelfGrant { granter: String },
    /// A quality bonus is more than zero and at most [`super::MAX_QUALITY_BONUS_MINOR`].
    #[error("a quality bonus must be between 1 and {max} minor units, not {amount_minor}")]
    QualityBonusOutOfRange { amount_minor: u32, max: u32 },
    /// A quality bonus is granted only while the payout is pending (before approval).
    #[error("the payout is {status} and no longer pending")]
    PayoutNotPending { status: &'static str },
    /// A payout is approved before it is paid.
    #[error("a pending payout must be approved before it is paid")]
    PaymentRequiresApproval,
    /// A payout is paid once.
    #[error("the payout was already paid under reference {reference}")]
    AlreadyPaid { reference: String },
}

impl PayoutError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownPayout => "UNKNOWN_PAYOUT",
            Self::Blank { .. } => "BLANK_FIELD",
            Self::NoTechnician => "NO_TECHNICIAN",
            Self::ZeroSystemSize => "ZERO_SYSTEM_SIZE",
            Self::InvalidCurrency { .. } => "INVALID_CURRENCY",
            Self::SelfApproval { .. } => "SELF_APPROVAL",
            Self::SelfGrant { .. } => "SELF_GRANT",
            Self::QualityBonusOutOfRange { .. } => "QUALITY_BONUS_OUT_OF_RANGE",
            Self::PayoutNotPending { .. } => "PAYOUT_NOT_PENDING",
            Self::PaymentRequiresApproval => "PAYMENT_REQUIRES_APPROVAL",
            Self::AlreadyPaid { .. } => "ALREADY_PAID",
        }
    }
}
