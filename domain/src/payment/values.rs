//! Value types of payments: the stream id, the status, what a payment was matched to.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::installation::PaymentProvider;

/// The local stream id of the payment `reference` of `provider`: `pay_` and the first 32 hex
/// digits (128 bits) of SHA-256 over the provider's name, a zero byte and the reference.
pub fn payment_local_id(provider: PaymentProvider, reference: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(provider.as_str().as_bytes());
    hash.update([0u8]);
    hash.update(reference.as_bytes());
    format!("pay_{}", hex::encode(&hash.finalize()[..16]))
}

/// Where a payment is: `confirmed` (not yet decided) → `matched` | `unmatched`;
/// `unmatched → matched` by finance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// No confirmation yet (a fresh stream).
    #[default]
    Unknown,
    Confirmed,
    Matched,
    Unmatched,
}

impl PaymentStatus {
    /// The status as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Confirmed => "confirmed",
            Self::Matched => "matched",
            Self::Unmatched => "unmatched",
        }
    }
}

/// What a payment was matched to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMatch {
    Order { order_id: String },
    Wallet { wallet_id: String, milli_tokens: i64 },
}

impl std::fmt::Display for PaymentMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Order { order_id } => write!(f, "order {order_id}"),
            Self::Wallet { wallet_id, .. } => write!(f, "wallet {wallet_id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_id_depends_on_provider_and_reference_only() {
        let a = payment_local_id(PaymentProvider::Paynow, "PN-1");
        assert_eq!(a, payment_local_id(PaymentProvider::Paynow, "PN-1"));
        assert_ne!(a, payment_local_id(PaymentProvider::Mpesa, "PN-1"));
        assert_ne!(a, payment_local_id(PaymentProvider::Paynow, "PN-2"));
        assert!(a.starts_with("pay_") && a.len() == 4 + 32, "{a}");
    }
}
