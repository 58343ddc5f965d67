//! Events of the `Payment` aggregate. Names are contracts: never renamed once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::installation::PaymentProvider;

/// Facts about a payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PaymentEvent {
    /// The provider confirmed the payment.
    PaymentConfirmed {
        provider: PaymentProvider,
        reference: String,
        merchant_reference: String,
        amount_minor: i64,
        currency: String,
        at: DateTime<Utc>,
    },
    /// The payment paid an order; carries the amount so projections need not look back.
    PaymentMatchedToOrder {
        order_id: String,
        amount_minor: i64,
        currency: String,
        at: DateTime<Utc>,
    },
    /// The payment topped up a wallet with `milli_tokens`.
    PaymentMatchedToWallet {
        wallet_id: String,
        milli_tokens: i64,
        amount_minor: i64,
        currency: String,
        at: DateTime<Utc>,
    },
    /// Nothing took the payment: kept for finance, with the reason's code.
    PaymentLeftUnmatched {
        reason: String,
        amount_minor: i64,
        currency: String,
        at: DateTime<Utc>,
    },
    /// Finance matched an unmatched payment to an order.
    PaymentMatchedManually {
        order_id: String,
        amount_minor: i64,
        currency: String,
        by: String,
        at: DateTime<Utc>,
    },
}

impl PaymentEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "PaymentConfirmed",
        "PaymentMatchedToOrder",
        "PaymentMatchedToWallet",
        "PaymentLeftUnmatched",
        "PaymentMatchedManually",
    ];
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PaymentConfirmed { .. } => "PaymentConfirmed",
            Self::PaymentMatchedToOrder { .. } => "PaymentMatchedToOrder",
            Self::PaymentMatchedToWallet { .. } => "PaymentMatchedToWallet",
            Self::PaymentLeftUnmatched { .. } => "PaymentLeftUnmatched",
            Self::PaymentMatchedManually { .. } => "PaymentMatchedManually",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
