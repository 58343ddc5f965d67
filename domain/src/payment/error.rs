//! Refusals of the `Payment` aggregate, named after the rule they enforce.

/// Why a payment command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// Only a confirmed payment is matched or left unmatched.
    #[error("no such payment")]
    UnknownPayment,
    /// References, ids and names must not be blank.
    #[error("{field} must not be blank")]
    Blank { field: &'static str },
    /// A payment is above zero.
    #[error("a payment must be above zero; got {amount_minor}")]
    NonPositiveAmount { amount_minor: i64 },
    /// Currencies are ISO 4217 codes.
    #[error("{currency:?} is not an ISO 4217 currency code")]
    InvalidCurrency { currency: String },
    /// A wallet top-up credits some tokens.
    #[error("a top-up must credit tokens; got {milli_tokens} milli-tokens")]
    NonPositiveTokens { milli_tokens: i64 },
    /// A payment is matched once.
    #[error("the payment is already matched to {target}")]
    AlreadyMatched { target: String },
    /// A payment left unmatched is matched only by finance, by hand.
    #[error("the payment was left unmatched ({reason}); finance matches it by hand")]
    AlreadyUnmatched { reason: String },
    /// Finance matches by hand only a payment left unmatched.
    #[error("only an unmatched payment is matched by hand; this one is {status}")]
    NotUnmatched { status: &'static str },
}

impl PaymentError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownPayment => "UNKNOWN_PAYMENT",
            Self::Blank { .. } => "BLANK_FIELD",
            Self::NonPositiveAmount { .. } => "NON_POSITIVE_PAYMENT",
            Self::InvalidCurrency { .. } => "INVALID_CURRENCY",
            Self::NonPositiveTokens { .. } => "NON_POSITIVE_TOKENS",
            Self::AlreadyMatched { .. } => "PAYMENT_ALREADY_MATCHED",
            Self::AlreadyUnmatched { .. } => "PAYMENT_ALREADY_UNMATCHED",
            Self::NotUnmatched { .. } => "PAYMENT_NOT_UNMATCHED",
        }
    }
}
