//! Refusals of the `Order` aggregate, named after the rule they enforce.

/// Why an order command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Only a placed order can be paid, fulfilled or cancelled.
    #[error("no such order")]
    UnknownOrder,
    /// Ids, SKUs and references must not be blank.
    #[error("{field} must not be blank")]
    Blank { field: &'static str },
    /// An order has at least one line item.
    #[error("an order needs at least one line item")]
    EmptyOrder,
    /// Every item of an order is priced in one currency.
    #[error("an order is in one currency; got {}", .currencies.join(", "))]
    MixedCurrencies { currencies: Vec<String> },
    /// Currencies are ISO 4217 codes.
    #[error("{currency:?} is not an ISO 4217 currency code")]
    InvalidCurrency { currency: String },
    /// A line's quantity is above zero.
    #[error("the quantity of {sku} must be above zero")]
    ZeroQuantity { sku: String },
    /// A unit price is not below zero.
    #[error("the unit price of {sku} must not be negative")]
    NegativePrice { sku: String },
    /// The total fits in 64-bit minor units.
    #[error("the order total is too large")]
    TotalOverflow,
    /// An order costs something (a free hand-over is not an order).
    #[error("an order's total must be above zero")]
    ZeroTotal,
    /// A stated capacity is above zero watts (an item that adds none states none).
    #[error("the capacity of {sku} must be above zero watts; leave it out for an item that adds none")]
    ZeroCapacity { sku: String },
    /// A payment is above zero.
    #[error("a payment must be above zero")]
    NonPositivePayment,
    /// A payment is in the order's currency.
    #[error("the order is in {expected}, the payment in {got}")]
    PaymentCurrencyMismatch { expected: String, got: String },
    /// A cancelled order takes no payment (the callbacks keep it as unmatched, for finance).
    #[error("the order is cancelled and takes no payment")]
    PaymentAfterCancellation,
    /// An order never holds more than its total (see the module's overpayment policy).
    #[error("the payment of {amount_minor} exceeds the {outstanding_minor} outstanding")]
    Overpayment { amount_minor: i64, outstanding_minor: i64 },
    /// Only a paid order is fulfilled.
    #[error("a {status} order cannot be fulfilled; it must be paid first")]
    FulfilmentRequiresPayment { status: &'static str },
    /// A fulfilled order is not cancelled (a return is another process).
    #[error("a fulfilled order cannot be cancelled")]
    CancelAfterFulfilment,
    /// An order is placed for a contact of the tenant (checked by the write side before the
    /// order is recorded).
    #[error("{customer_id} is not a contact of this tenant")]
    UnknownCustomer { customer_id: String },
    /// An idempotency key places one order: repeating it with the same customer and items
    /// changes nothing; with others it is refused.
    #[error("this idempotency key already placed an order with another customer or other items")]
    IdempotencyKeyReused,
}

impl OrderError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownOrder => "UNKNOWN_ORDER",
            Self::Blank { .. } => "BLANK_FIELD",
            Self::EmptyOrder => "EMPTY_ORDER",
            Self::MixedCurrencies { .. } => "MIXED_CURRENCIES",
            Self::InvalidCurrency { .. } => "INVALID_CURRENCY",
            Self::ZeroQuantity { .. } => "ZERO_QUANTITY",
            Self::NegativePrice { .. } => "NEGATIVE_PRICE",
            Self::TotalOverflow => "TOTAL_OVERFLOW",
            Self::ZeroTotal => "ZERO_TOTAL",
            Self::ZeroCapacity { .. } => "ZERO_CAPACITY",
            Self::NonPositivePayment => "NON_POSITIVE_PAYMENT",
            Self::PaymentCurrencyMismatch { .. } => "PAYMENT_CURRENCY_MISMATCH",
            Self::PaymentAfterCancellation => "PAYMENT_AFTER_CANCELLATION",
            Self::Overpayment { .. } => "OVERPAYMENT",
            Self::FulfilmentRequiresPayment { .. } => "FULFILMENT_REQUIRES_PAYMENT",
            Self::CancelAfterFulfilment => "CANCEL_AFTER_FULFILMENT",
            Self::UnknownCustomer { .. } => "UNKNOWN_CUSTOMER",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
        }
    }
}
