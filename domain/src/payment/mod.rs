//! The `Payment` aggregate: one payment reported by a provider (Paynow, M-Pesa, Stripe),
//! confirmed, then matched to what it paid for, or kept unmatched for finance.
//!
//! Stream id: `<tenant>:<local id>` with the local id from [`payment_local_id`]: `pay_` and the
//! first 32 hex digits of SHA-256 over the provider's name, a zero byte and the provider's
//! reference. One stream per provider + provider reference, so a payment is recorded once
//! however often its callback is delivered. Provider references (a Paynow reference, an M-Pesa
//! receipt, a Stripe payment intent) are not personal data; the hash only keeps ids short and
//! free of separators.
//!
//! Rules held here:
//! - a payment is confirmed once, with its amount in integer minor units (above zero), an ISO
//!   4217 currency, and the merchant reference we gave the provider; a confirmation delivered
//!   again records nothing, whatever it carries (the first stands);
//! - a confirmed payment is decided once: matched to an order, matched to a wallet top-up (with
//!   the milli-tokens credited), or left unmatched with the reason's code (kept for finance,
//!   never dropped). Repeating the same decision records nothing; a different one is refused
//!   ([`PaymentError::AlreadyMatched`], [`PaymentError::AlreadyUnmatched`]);
//! - finance matches an unmatched payment to an order by hand, once
//!   ([`PaymentError::NotUnmatched`] for a payment not left unmatched); repeating the same
//!   manual match records nothing;
//! - nothing is decided about a payment never confirmed ([`PaymentError::UnknownPayment`]).

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::Payment;
pub use commands::{ConfirmPayment, PaymentCommand};
pub use error::PaymentError;
pub use events::PaymentEvent;
pub use values::{payment_local_id, PaymentMatch, PaymentStatus};
