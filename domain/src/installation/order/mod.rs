//! The `Order` aggregate: what a customer bought and how it was paid.
//!
//! Stream id: `<tenant>:order_<id>` (the id comes from the caller).
//!
//! Rules held here:
//! - an order is placed once with at least one line item ([`OrderError::EmptyOrder`]), every
//!   item in one currency ([`OrderError::MixedCurrencies`]), an ISO 4217 code of three capital
//!   letters ([`OrderError::InvalidCurrency`]), a quantity above zero and a unit price not
//!   below zero in integer minor units; the total is derived (Σ quantity × unit price) and
//!   must be above zero ([`OrderError::ZeroTotal`]); placing it again records nothing;
//! - payments come from a provider (Paynow, M-Pesa, Stripe, cash) and are recorded once per
//!   `(provider, reference)`: a repeat records nothing, whatever its amount (the first outcome
//!   stands). Each `PaymentRecorded` carries the amounts paid and outstanding after it; the
//!   payment that covers the total also records `OrderPaid`, which lists the installable line
//!   items (the process manager opens installations from them);
//! - **overpayment policy**: a payment larger than the amount outstanding is refused
//!   ([`OrderError::Overpayment`], which states both amounts), so `paid ≤ total` always holds
//!   and a paid order takes no new payment. The money is not lost: the payment callbacks keep
//!   any payment the order refuses as an unmatched payment for finance to refund or
//!   reallocate, exactly like a payment that matches no order;
//! - a payment is in the order's currency ([`OrderError::PaymentCurrencyMismatch`]) and above
//!   zero; a cancelled order takes no payment ([`OrderError::PaymentAfterCancellation`]);
//! - `placed → paid → fulfilled`, or `placed | paid → cancelled`: fulfilment needs the order
//!   paid ([`OrderError::FulfilmentRequiresPayment`]); a fulfilled order cannot be cancelled
//!   ([`OrderError::CancelAfterFulfilment`]); `OrderCancelled` carries the amount already paid
//!   (what finance owes back). Repeating a fulfilment or cancellation records nothing.

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::Order;
pub use commands::{OrderCommand, PlaceOrder, RecordPayment};
pub use error::OrderError;
pub use events::OrderEvent;
pub use values::{is_currency_code, LineItem, OrderStatus, PaymentProvider};
