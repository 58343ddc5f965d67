//! Commands of the `Payment` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::installation::PaymentProvider;

/// A request to change a payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PaymentCommand {
    /// Record a payment its provider confirmed (once; a repeat records nothing).
    Confirm(ConfirmPayment),
    /// The payment paid the order `order_id` (the order recorded it).
    MatchToOrder { order_id: String, at: DateTime<Utc> },
    /// The payment topped up the wallet `wallet_id` with `milli_tokens` (the wallet credited it).
    MatchToWallet {
        wallet_id: String,
        milli_tokens: i64,
        at: DateTime<Utc>,
    },
    /// Nothing took the payment; `reason` is a stable code (`UNRECOGNISED_REFERENCE`, the
    /// refusing aggregate's code…). Kept for finance.
    LeaveUnmatched { reason: String, at: DateTime<Utc> },
    /// Finance matched an unmatched payment to the order `order_id` (the order recorded it).
    MatchManually {
        order_id: String,
        by: String,
        at: DateTime<Utc>,
    },
}

/// A payment as its provider confirmed it (the callbacks verify hashes or signatures and ask
/// the provider's status API before sending this).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConfirmPayment {
    pub provider: PaymentProvider,
    /// The provider's own reference: the dedupe key together with the provider.
    pub reference: String,
    /// The reference we gave the provider (`order_<id>`, `wallet_<id>`…), as it came back.
    pub merchant_reference: String,
    pub amount_minor: i64,
    pub currency: String,
    pub at: DateTime<Utc>,
}
