//! Commands of the `Conversation` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::{DeliveryStatus, MessageKind, ProviderError};
use crate::pii::Envelope;

/// A request to change a conversation.
// Events and commands are moved once and serialized; boxing the large variant would buy
// nothing and change nothing on the wire.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConversationCommand {
    /// Record an inbound WhatsApp message (idempotent by WhatsApp message id).
    ReceiveMessage(InboundMessage),
    /// Record a delivery status of an outbound message (forward-only, idempotent).
    RecordDeliveryStatus(StatusUpdate),
}

/// An inbound message, its personal fields already sealed under the contact's data key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// The keyed hash of WhatsApp's message id (`wm_…`, see `IdKey::message_ref`), the
    /// natural dedupe key. WhatsApp's ids embed the contact's phone number, so the raw id is
    /// personal data and only travels sealed.
    pub message_ref: String,
    /// WhatsApp's message id (`wamid…`), sealed.
    pub provider_message_id: Envelope,
    /// The contact's keyed-hash id.
    pub contact_id: String,
    /// The tenant's WhatsApp Business phone-number id that received it.
    pub business_number_id: String,
    /// The contact's phone number (sealed).
    pub contact_phone: Envelope,
    /// The contact's WhatsApp profile name (sealed), when sent.
    pub contact_name: Option<Envelope>,
    pub kind: MessageKind,
    /// The message's content as JSON text (sealed): text body, caption, media reference,
    /// location, reply…
    pub content: Option<Envelope>,
    /// The provider's timestamp of the message.
    pub sent_at: DateTime<Utc>,
}

/// A delivery status reported by WhatsApp for an outbound message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The keyed hash of the WhatsApp id of the message the status is about.
    pub message_ref: String,
    pub contact_id: String,
    pub status: DeliveryStatus,
    /// The provider's timestamp of the status.
    pub at: DateTime<Utc>,
    pub error: Option<ProviderError>,
}
