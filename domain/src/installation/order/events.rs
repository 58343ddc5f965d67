//! Events of the `Order` aggregate. Names are contracts: never renamed once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::{LineItem, PaymentProvider};
use crate::pii::Envelope;

/// Facts about an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum OrderEvent {
    /// The order was placed; `total_minor` is derived from the items.
    OrderPlaced {
        customer_id: String,
        items: Vec<LineItem>,
        currency: String,
        total_minor: i64,
        /// Where it is installed, sealed under the customer's data key (orders placed before
        /// it was asked for have none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        site_address: Option<Envelope>,
        by: String,
        at: DateTime<Utc>,
    },
    /// A payment was recorded; carries the derived amounts paid and outstanding after it.
    PaymentRecorded {
        provider: PaymentProvider,
        reference: String,
        amount_minor: i64,
        currency: String,
        paid_minor: i64,
        outstanding_minor: i64,
        at: DateTime<Utc>,
    },
    /// Payments cover the total. Lists the installable items so the process manager opens
    /// installations without reading the order again.
    OrderPaid {
        customer_id: String,
        total_minor: i64,
        paid_minor: i64,
        currency: String,
        installable_items: Vec<LineItem>,
        at: DateTime<Utc>,
    },
    OrderFulfilled {
        by: String,
        at: DateTime<Utc>,
    },
    /// The order was cancelled; `paid_minor` is what had been paid (owed back by finance).
    OrderCancelled {
        reason: Option<Envelope>,
        paid_minor: i64,
        currency: String,
        by: String,
        at: DateTime<Utc>,
    },
}

impl OrderEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "OrderPlaced",
        "PaymentRecorded",
        "OrderPaid",
        "OrderFulfilled",
        "OrderCancelled",
    ];
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        match self {
            Self::OrderPlaced { .. } => "OrderPlaced",
            Self::PaymentRecorded { .. } => "PaymentRecorded",
            Self::OrderPaid { .. } => "OrderPaid",
            Self::OrderFulfilled { .. } => "OrderFulfilled",
            Self::OrderCancelled { .. } => "OrderCancelled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
