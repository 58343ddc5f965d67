//! Events of the `Conversation` aggregate. Names are contracts: never renamed once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::{DeliveryStatus, MessageKind};
use crate::pii::Envelope;

/// Facts about a conversation.
// Events and commands are moved once and serialized; boxing the large variant would buy
// nothing and change nothing on the wire.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConversationEvent {
    /// An inbound message was received. Carries the derived window expiry and whether it
    /// reopened the conversation, so projections never recompute rules.
    MessageReceived {
        message_ref: String,
        provider_message_id: Envelope,
        contact_id: String,
        business_number_id: String,
        contact_phone: Envelope,
        contact_name: Option<Envelope>,
        kind: MessageKind,
        content: Option<Envelope>,
        sent_at: DateTime<Utc>,
        window_expires_at: DateTime<Utc>,
        reopened: bool,
    },
    /// An outbound message's delivery status moved forward.
    DeliveryStatusRecorded {
        message_ref: String,
        status: DeliveryStatus,
        at: DateTime<Utc>,
        error_code: Option<i64>,
        error_title: Option<String>,
    },
}

impl ConversationEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &["MessageReceived", "DeliveryStatusRecorded"];
}

impl DomainEvent for ConversationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::MessageReceived { .. } => "MessageReceived",
            Self::DeliveryStatusRecorded { .. } => "DeliveryStatusRecorded",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}
