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
            Self::PaymentRequiresApproval => "PAYMENT_REQUIRES_APPROVAL",
            Self::AlreadyPaid { .. } => "ALREADY_PAID",
        }
    }
}
