//! Commands of the `Order` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::{LineItem, PaymentProvider};
use crate::pii::Envelope;

/// A request to change an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum OrderCommand {
    /// Place the order (once; a repeat records nothing).
    Place(PlaceOrder),
    /// Record a confirmed payment (once per provider and reference).
    RecordPayment(RecordPayment),
    /// Mark a paid order fulfilled (delivered or handed over).
    Fulfil { by: String, at: DateTime<Utc> },
    /// Cancel an order not yet fulfilled (the reason is sealed free text).
    Cancel {
        reason: Option<Envelope>,
        by: String,
        at: DateTime<Utc>,
    },
}

/// What a customer orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlaceOrder {
    /// The customer's contact id (a keyed hash, `ct_…`).
    pub customer_id: String,
    pub items: Vec<LineItem>,
    /// Where the order is installed, sealed under the customer's data key; the installation a
    /// paid order opens starts with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_address: Option<Envelope>,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// A payment confirmed by its provider (the callbacks verify signatures and poll status
/// before sending this).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecordPayment {
    pub provider: PaymentProvider,
    /// The provider's reference (Paynow reference, M-Pesa receipt, Stripe payment intent,
    /// cash receipt number): the dedupe key together with the provider.
    pub reference: String,
    pub amount_minor: i64,
    pub currency: String,
    pub at: DateTime<Utc>,
}
