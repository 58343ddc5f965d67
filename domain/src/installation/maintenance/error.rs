//! Refusals of the `MaintenanceContract` aggregate, named after the rule they enforce.

/// Why a maintenance contract command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaintenanceError {
    /// Only a started contract can be changed.
    #[error("no such maintenance contract")]
    UnknownContract,
    /// Ids and references must not be blank.
    #[error("{field} must not be blank")]
    Blank { field: &'static str },
    /// A term is 1 to `MAX_TERM_MONTHS` months.
    #[error("a term is 1 to {max} months; got {months}")]
    InvalidTerm { months: u32, max: u32 },
    /// An annual value is not negative.
    #[error("the annual value must not be negative")]
    NegativeValue,
    /// Currencies are ISO 4217 codes.
    #[error("{currency:?} is not an ISO 4217 currency code")]
    InvalidCurrency { currency: String },
    /// A cancelled contract is not renewed or changed.
    #[error("the contract is cancelled")]
    ContractCancelled,
}

impl MaintenanceError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownContract => "UNKNOWN_CONTRACT",
            Self::Blank { .. } => "BLANK_FIELD",
            Self::InvalidTerm { .. } => "INVALID_TERM",
            Self::NegativeValue => "NEGATIVE_VALUE",
            Self::InvalidCurrency { .. } => "INVALID_CURRENCY",
            Self::ContractCancelled => "CONTRACT_CANCELLED",
        }
    }
}
