//! Commands of the `PaymentRequest` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::installation::PaymentProvider;

/// A request to change a payment request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PaymentRequestCommand {
    /// Ask a customer to pay (a repeat with the same values records nothing).
    Request(RequestPayment),
    /// The provider accepted the initiation and gave its id for it.
    RecordSent {
        provider_request_id: String,
        /// The page the customer pays on (Stripe Checkout, Paynow), when the provider gave one.
        payment_url: Option<String>,
        at: DateTime<Utc>,
    },
    /// The provider refused the initiation (`reason`: its code or message, no personal data).
    RecordInitiationFailed { reason: String, at: DateTime<Utc> },
    /// The provider confirmed a payment for this request (callback checked with the provider).
    RecordCallback(PaidCallback),
    /// The provider confirmed the customer did not pay (declined, timed out: its result code).
    RecordNotPaid { result_code: String, at: DateTime<Utc> },
    /// The request was sent to the customer on WhatsApp through an approved template (its
    /// message queued, metered like any send). Once: a repeat records nothing.
    RecordMessaged { message: RequestMessage, at: DateTime<Utc> },
    /// The reminder before expiry went out. Once.
    RecordReminded { at: DateTime<Utc> },
    /// Staff cancelled the request.
    Cancel { by: String, at: DateTime<Utc> },
    /// The request's expiry passed with no payment (`at`: the clock of whoever noticed).
    Expire { at: DateTime<Utc> },
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestPayment {
    pub target: PaymentTarget,
    pub provider: PaymentProvider,
    pub amount_minor: i64,
    pub currency: String,
    pub expires_at: DateTime<Utc>,
    /// The customer asked (their contact id; their phone number stays sealed in the contact).
    pub contact_id: Option<String>,
    /// Paynow Express: the mobile money wallet prompted on the customer's phone (EcoCash or
    /// OneMoney) instead of a payment page. Only with Paynow, and only with a contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_money: Option<MobileMoney>,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// The mobile money wallets Paynow Express prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MobileMoney {
    Ecocash,
    Onemoney,
}

impl MobileMoney {
    /// The name Paynow's `method` field takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ecocash => "ecocash",
            Self::Onemoney => "onemoney",
        }
    }
}

/// What a paid request pays for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentTarget {
    /// An order (`order_…`): a deposit, the balance or the whole, by the amount asked.
    Order { order_id: String },
    /// A top-up of the tenant's wallet `wallet_id` (`main` or a sub-wallet).
    Wallet { wallet_id: String },
    /// A free amount, for the purpose described (no personal data).
    Free { description: String },
}

impl PaymentTarget {
    /// The merchant reference the payment is matched by (`order_…`, `wallet_…`, or the request's
    /// own id for a free amount, which nothing else takes, so finance sees it).
    pub fn merchant_reference(&self, request_id: &str) -> String {
        match self {
            Self::Order { order_id } => order_id.clone(),
            Self::Wallet { wallet_id } => format!("wallet_{wallet_id}"),
            Self::Free { .. } => request_id.to_string(),
        }
    }
}

/// A payment the provider confirmed for a request, as its callback carried it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PaidCallback {
    /// The provider's reference for the money (M-Pesa receipt, Paynow reference, intent id).
    pub provider_reference: String,
    pub amount_minor: i64,
    pub currency: String,
    pub at: DateTime<Utc>,
}

/// How a request is sent to the customer on WhatsApp: an approved template whose parameters
/// may hold the placeholders `{amount}`, `{link}`, `{expires}` and `{reference}`, filled from
/// the request when each message is sent; and when to remind before the expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestMessage {
    pub template: String,
    pub language: String,
    /// The parameters as staff wrote them (a JSON array, placeholders unfilled), sealed under
    /// the contact's data key: staff may write the customer's name, and erasing the contact
    /// shreds it.
    pub parameters: crate::pii::Envelope,
    /// When the reminder goes out (the same template again), if one was asked for and there
    /// was time for it.
    pub remind_at: Option<DateTime<Utc>>,
}
