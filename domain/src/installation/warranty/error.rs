//! Refusals of the `Warranty` aggregate, named after the rule they enforce.

/// Why a warranty command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarrantyError {
    /// Only a registered warranty can be changed.
    #[error("no such warranty")]
    UnknownWarranty,
    /// Ids, serials and kinds must not be blank.
    #[error("{field} must not be blank")]
    Blank { field: &'static str },
    /// A warranty runs for 1 to `MAX_WARRANTY_MONTHS` months.
    #[error("a warranty period is 1 to {max} months; got {months}")]
    InvalidWarrantyPeriod { months: u32, max: u32 },
}

impl WarrantyError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownWarranty => "UNKNOWN_WARRANTY",
            Self::Blank { .. } => "BLANK_FIELD",
            Self::InvalidWarrantyPeriod { .. } => "INVALID_WARRANTY_PERIOD",
        }
    }
}
