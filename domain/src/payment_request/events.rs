//! Events of the `PaymentRequest` aggregate. Names are contracts: never renamed once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::commands::{MobileMoney, PaymentTarget};
use crate::installation::PaymentProvider;

/// Why a confirmed callback did not pay its request. Kept for finance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackRefusal {
    /// Another amount or currency than the request's.
    AmountMismatch,
    /// The request was already paid under another provider reference.
    AlreadyPaid,
    /// The request was cancelled.
    RequestCancelled,
    /// The provider had reported the request not paid.
    RequestFailed,
    /// The callback came after the request's expiry.
    RequestExpired,
}

impl CallbackRefusal {
    /// The stable code shown to finance.
    pub fn code(self) -> &'static str {
        match self {
            Self::AmountMismatch => "AMOUNT_MISMATCH",
            Self::AlreadyPaid => "REQUEST_ALREADY_PAID",
            Self::RequestCancelled => "REQUEST_CANCELLED",
            Self::RequestFailed => "REQUEST_FAILED",
            Self::RequestExpired => "REQUEST_EXPIRED",
        }
    }

    /// Whether the money the provider confirmed is real and of the amount asked, so it is kept
    /// as a payment for finance (left unmatched with this reason): a late or cancelled request
    /// paid in full. An amount the request did not ask for, or a second payment of a paid
    /// request, is not a payment the provider vouched for (M-Pesa's status query confirms the
    /// push, not the amount or the receipt): it is kept only as a refused callback.
    pub fn keeps_payment(self) -> bool {
        matches!(self, Self::RequestCancelled | Self::RequestExpired)
    }
}

/// Facts about a payment request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PaymentRequestEvent {
    PaymentRequested {
        target: PaymentTarget,
        provider: PaymentProvider,
        amount_minor: i64,
        currency: String,
        expires_at: DateTime<Utc>,
        contact_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mobile_money: Option<MobileMoney>,
        by: String,
        at: DateTime<Utc>,
    },
    /// The provider accepted the initiation (M-Pesa's `CheckoutRequestID`, …).
    PaymentRequestSent {
        provider_request_id: String,
        /// The page the customer pays on (Stripe Checkout, Paynow); absent for a prompt sent to
        /// the customer's phone (M-Pesa).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payment_url: Option<String>,
        at: DateTime<Utc>,
    },
    PaymentRequestInitiationFailed {
        reason: String,
        at: DateTime<Utc>,
    },
    /// The request is paid, by the provider's reference.
    PaymentRequestPaid {
        provider_reference: String,
        amount_minor: i64,
        currency: String,
        at: DateTime<Utc>,
    },
    /// A confirmed callback that did not pay the request, with why.
    PaymentRequestCallbackRefused {
        reason: CallbackRefusal,
        provider_reference: String,
        amount_minor: i64,
        currency: String,
        at: DateTime<Utc>,
    },
    /// The provider reports the customer did not pay.
    PaymentRequestFailed {
        result_code: String,
        at: DateTime<Utc>,
    },
    /// The request went to the customer on WhatsApp (the template, and its parameters as
    /// written, sealed under the contact's data key).
    PaymentRequestMessaged {
        template: String,
        language: String,
        parameters: crate::pii::Envelope,
        remind_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// The reminder before expiry went to the customer.
    PaymentRequestReminded {
        at: DateTime<Utc>,
    },
    PaymentRequestCancelled {
        by: String,
        at: DateTime<Utc>,
    },
    PaymentRequestExpired {
        at: DateTime<Utc>,
    },
}

impl PaymentRequestEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "PaymentRequested",
        "PaymentRequestSent",
        "PaymentRequestInitiationFailed",
        "PaymentRequestPaid",
        "PaymentRequestCallbackRefused",
        "PaymentRequestFailed",
        "PaymentRequestCancelled",
        "PaymentRequestExpired",
        "PaymentRequestMessaged",
        "PaymentRequestReminded",
    ];
}

impl DomainEvent for PaymentRequestEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PaymentRequested { .. } => "PaymentRequested",
            Self::PaymentRequestSent { .. } => "PaymentRequestSent",
            Self::PaymentRequestInitiationFailed { .. } => "PaymentRequestInitiationFailed",
            Self::PaymentRequestPaid { .. } => "PaymentRequestPaid",
            Self::PaymentRequestCallbackRefused { .. } => "PaymentRequestCallbackRefused",
            Self::PaymentRequestFailed { .. } => "PaymentRequestFailed",
            Self::PaymentRequestCancelled { .. } => "PaymentRequestCancelled",
            Self::PaymentRequestExpired { .. } => "PaymentRequestExpired",
            Self::PaymentRequestMessaged { .. } => "PaymentRequestMessaged",
            Self::PaymentRequestReminded { .. } => "PaymentRequestReminded",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
