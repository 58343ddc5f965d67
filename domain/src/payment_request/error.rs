//! Refusals of the `PaymentRequest` aggregate, named after the rule they enforce.

/// Why a payment request command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentRequestError {
    /// Nothing is recorded about a request never made.
    #[error("no such payment request")]
    UnknownRequest,
    /// Ids, references and reasons must not be blank.
    #[error("{field} must not be blank")]
    Blank { field: &'static str },
    /// A request asks for more than zero.
    #[error("a payment request must ask for more than zero; got {amount_minor}")]
    NonPositiveAmount { amount_minor: i64 },
    /// Currencies are ISO 4217 codes.
    #[error("{currency:?} is not an ISO 4217 currency code")]
    InvalidCurrency { currency: String },
    /// A provider takes only its own currencies (M-Pesa: KES).
    #[error("{provider} takes payments in {expected}, not {currency}")]
    ProviderCurrency {
        provider: &'static str,
        expected: String,
        currency: String,
    },
    /// M-Pesa takes whole shillings.
    #[error("{provider} takes whole units only; {amount_minor} minor units is not")]
    NotWholeUnits { provider: &'static str, amount_minor: i64 },
    /// Cash is recorded on the order, not requested through a provider.
    #[error("{provider} payments are not requested through a provider")]
    NotRequestable { provider: &'static str },
    /// Mobile money prompts (EcoCash, OneMoney) go through Paynow Express only.
    #[error("{provider} does not prompt {method} wallets; mobile money goes through Paynow")]
    MobileMoneyNotOffered {
        provider: &'static str,
        method: &'static str,
    },
    /// Only a request the provider accepted (sent, not closed) goes to the customer.
    #[error("the request is {status}; only a sent request goes to the customer")]
    NotSent { status: &'static str },
    /// A reminder follows the message that asked for one.
    #[error("no reminder was asked for this request")]
    NoReminder,
    /// A request expires after the moment it is made.
    #[error("the expiry must be after the request is made")]
    ExpiryNotAfterRequest,
    /// A request id is used for one request.
    #[error("this request id was already used for another request")]
    AlreadyRequested,
    /// The provider's id is recorded once, while the request awaits initiation.
    #[error("the request is {status}; it does not await initiation")]
    NotAwaitingInitiation { status: &'static str },
    /// A paid request is not cancelled (refund it instead).
    #[error("the request is paid; it cannot be cancelled")]
    AlreadyPaid,
    /// A closed request (paid, failed, expired, cancelled) does not change.
    #[error("the request is {status}")]
    Closed { status: &'static str },
    /// A request is expired only after its expiry.
    #[error("the request does not expire before {expires_at}")]
    NotYetExpired { expires_at: String },
}

impl PaymentRequestError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownRequest => "UNKNOWN_PAYMENT_REQUEST",
            Self::Blank { .. } => "BLANK_FIELD",
            Self::NonPositiveAmount { .. } => "NON_POSITIVE_PAYMENT",
            Self::InvalidCurrency { .. } => "INVALID_CURRENCY",
            Self::ProviderCurrency { .. } => "PROVIDER_CURRENCY",
            Self::NotWholeUnits { .. } => "NOT_WHOLE_UNITS",
            Self::NotRequestable { .. } => "PROVIDER_NOT_REQUESTABLE",
            Self::MobileMoneyNotOffered { .. } => "MOBILE_MONEY_NOT_OFFERED",
            Self::NotSent { .. } => "PAYMENT_REQUEST_NOT_SENT",
            Self::NoReminder => "NO_REMINDER",
            Self::ExpiryNotAfterRequest => "EXPIRY_NOT_AFTER_REQUEST",
            Self::AlreadyRequested => "PAYMENT_REQUEST_ID_TAKEN",
            Self::NotAwaitingInitiation { .. } => "NOT_AWAITING_INITIATION",
            Self::AlreadyPaid => "PAYMENT_REQUEST_PAID",
            Self::Closed { .. } => "PAYMENT_REQUEST_CLOSED",
            Self::NotYetExpired { .. } => "PAYMENT_REQUEST_NOT_EXPIRED",
        }
    }
}
