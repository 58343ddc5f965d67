//! The `PaymentRequest` aggregate: Chronicle asking a customer to pay, through one provider, a
//! fixed amount for an order, a wallet top-up or a free purpose, before an expiry. A provider's
//! callback counts only when it matches a request: the amount and currency the request named,
//! while the request is open, once.
//!
//! Stream id: `<tenant>:<local id>`, the local id from [`payment_request_local_id`] (`preq_` and
//! 32 hex digits of SHA-256 over the caller's idempotency key), so a retried request finds the
//! first one.
//!
//! States: `requested` → `sent` (the provider accepted the initiation and gave its own id, e.g.
//! M-Pesa's `CheckoutRequestID`) → `paid` | `failed` (the provider reports the customer did not
//! pay) | `cancelled` | `expired`; `requested` → `failed` when the initiation is refused.
//!
//! Rules held here:
//! - a request names a positive amount in an ISO 4217 currency, an expiry after the moment it is
//!   made, and what it pays for; M-Pesa takes whole Kenyan shillings only
//!   ([`PaymentRequestError::ProviderCurrency`], [`PaymentRequestError::NotWholeUnits`]); cash is
//!   not requested through a provider. Requesting again with the same target, provider, amount,
//!   currency, contact and author records nothing (the first request's expiry stands); with
//!   other values it is refused ([`PaymentRequestError::AlreadyRequested`]);
//! - the provider's id is recorded once, while the request awaits initiation;
//! - a callback the provider confirmed as paid pays the request once
//!   ([`PaymentRequestEvent::PaymentRequestPaid`]) when its amount and currency are the
//!   request's, the request is open and not past its expiry. Otherwise it is refused and kept
//!   for finance with its reason ([`CallbackRefusal`]): another amount, a second payment for a
//!   paid request (another provider reference), a cancelled, failed or expired request. A
//!   delivery repeated with a reference already seen records nothing;
//! - a request past its expiry is expired once; a paid request cannot be cancelled.

mod aggregate;
mod commands;
mod error;
mod events;

pub use aggregate::{PaymentRequest, PaymentRequestStatus};
pub use commands::{MobileMoney, PaidCallback, PaymentRequestCommand, PaymentTarget, RequestMessage, RequestPayment};
pub use error::PaymentRequestError;
pub use events::{CallbackRefusal, PaymentRequestEvent};

use sha2::{Digest, Sha256};

/// The local stream id of the payment request made with `idempotency_key`: `preq_` and the
/// first 32 hex digits of SHA-256 over a fixed label, a zero byte and the key.
pub fn payment_request_local_id(idempotency_key: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"payment-request");
    hash.update([0u8]);
    hash.update(idempotency_key.as_bytes());
    format!("preq_{}", hex::encode(&hash.finalize()[..16]))
}

/// Whether `id` has the shape of a payment request's local id.
pub fn is_payment_request_id(id: &str) -> bool {
    id.strip_prefix("preq_")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_depends_on_the_idempotency_key_only() {
        let a = payment_request_local_id("k1");
        assert_eq!(a, payment_request_local_id("k1"));
        assert_ne!(a, payment_request_local_id("k2"));
        assert!(is_payment_request_id(&a), "{a}");
        assert!(!is_payment_request_id("preq_xyz"));
        assert!(!is_payment_request_id("pay_00000000000000000000000000000000"));
    }
}
