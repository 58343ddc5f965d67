//! Events of the `Conversation` aggregate. Names are contracts: never renamed once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::{ConversationStatus, DeliveryStatus, MessageKind, OutboundBody};
use crate::pii::Envelope;

/// Facts about a conversation.
// Events and commands are moved once and serialized; boxing the large variant would buy
// nothing and change nothing on the wire.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// WhatsApp reported a delivery status of an outbound message. Every status is a fact
    /// recorded once, whatever order it arrives in; `current` is the derived furthest status.
    DeliveryStatusRecorded {
        message_ref: String,
        status: DeliveryStatus,
        at: DateTime<Utc>,
        error_code: Option<i64>,
        error_title: Option<String>,
        /// Derived: the message's furthest status with this one (a `delivered` arriving after
        /// `read` is recorded, and `current` stays `read`). Since version 1.1; events stored at
        /// 1.0 before it existed are read with `current` = `status` (they are upcast).
        current: DeliveryStatus,
        /// Derived: the failure is WhatsApp's 131047, the 24-hour window had closed. Since
        /// version 1.1 (false in 1.0 events stored before it existed).
        window_closed: bool,
        /// Derived: no message Chronicle sent in this conversation had this id when the status
        /// was recorded: one sent outside Chronicle (the WhatsApp Business app, another tool on
        /// the number), or Chronicle's own whose acceptance is recorded later (decision 0020).
        /// False in events stored before it existed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        external: bool,
    },
    /// An outbound message was queued for the sender. Carries the recipient (sealed) and the
    /// business number last written to, so the sender needs nothing but the outbox row.
    OutboundMessageQueued {
        idempotency_key: String,
        contact_id: String,
        to: Envelope,
        business_number_id: Option<String>,
        body: OutboundBody,
        requested_by: String,
        at: DateTime<Utc>,
    },
    /// The provider accepted an outbound message.
    OutboundMessageSent {
        idempotency_key: String,
        message_ref: String,
        provider_message_id: Envelope,
        at: DateTime<Utc>,
    },
    /// An outbound message was not sent (terminal).
    OutboundMessageFailed {
        idempotency_key: String,
        code: Option<i64>,
        title: String,
        retryable: bool,
        at: DateTime<Utc>,
    },
    /// A person moved the conversation to another status.
    ConversationStatusChanged {
        from: ConversationStatus,
        to: ConversationStatus,
        by: String,
        at: DateTime<Utc>,
    },
    ConversationAssigned {
        agent_id: String,
        by: String,
        at: DateTime<Utc>,
    },
    ConversationUnassigned {
        previous_agent_id: String,
        by: String,
        at: DateTime<Utc>,
    },
    ConversationTagged {
        tag: String,
        by: String,
        at: DateTime<Utc>,
    },
    ConversationUntagged {
        tag: String,
        by: String,
        at: DateTime<Utc>,
    },
    /// An internal note (sealed), never sent to the contact.
    NoteAdded {
        note_id: String,
        text: Envelope,
        by: String,
        at: DateTime<Utc>,
    },
    HandoverRequested {
        reason: Option<Envelope>,
        by: String,
        at: DateTime<Utc>,
    },
    /// The sender's try `attempt` of a queued message was not accepted for now; it tries again
    /// at `next_try_at` (not an outcome: the message is still queued).
    OutboundSendRetried {
        idempotency_key: String,
        attempt: u32,
        code: Option<i64>,
        title: String,
        next_try_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The sender cannot tell whether a queued message reached WhatsApp and left it for an
    /// operator (`OutboundResendAuthorized` sends it again); `reason` has no personal data.
    OutboundSendUncertain {
        idempotency_key: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// An operator decided that the outbound message `idempotency_key`, left without an
    /// outcome, is sent again (the sender had handed it over: it may have reached WhatsApp).
    OutboundResendAuthorized {
        idempotency_key: String,
        by: String,
        at: DateTime<Utc>,
    },
    /// The conversation was read up to the inbound message `up_to` (its message ref): the
    /// inbox's unread count starts again from zero, and WhatsApp is told the message was read
    /// (a read receipt for `message_id`, WhatsApp's id of it, sealed, from the business number
    /// it was sent to; both absent when the state that decided did not hold them, and then no
    /// receipt is sent).
    ConversationRead {
        up_to: String,
        #[serde(default)]
        message_id: Option<Envelope>,
        #[serde(default)]
        business_number_id: Option<String>,
        by: String,
        at: DateTime<Utc>,
    },
}

impl ConversationEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "MessageReceived",
        "DeliveryStatusRecorded",
        "OutboundMessageQueued",
        "OutboundMessageSent",
        "OutboundMessageFailed",
        "ConversationStatusChanged",
        "ConversationAssigned",
        "ConversationUnassigned",
        "ConversationTagged",
        "ConversationUntagged",
        "NoteAdded",
        "HandoverRequested",
        "ConversationRead",
        "OutboundResendAuthorized",
        "OutboundSendRetried",
        "OutboundSendUncertain",
    ];
}

impl DomainEvent for ConversationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::MessageReceived { .. } => "MessageReceived",
            Self::DeliveryStatusRecorded { .. } => "DeliveryStatusRecorded",
            Self::OutboundMessageQueued { .. } => "OutboundMessageQueued",
            Self::OutboundMessageSent { .. } => "OutboundMessageSent",
            Self::OutboundMessageFailed { .. } => "OutboundMessageFailed",
            Self::ConversationStatusChanged { .. } => "ConversationStatusChanged",
            Self::ConversationAssigned { .. } => "ConversationAssigned",
            Self::ConversationUnassigned { .. } => "ConversationUnassigned",
            Self::ConversationTagged { .. } => "ConversationTagged",
            Self::ConversationUntagged { .. } => "ConversationUntagged",
            Self::NoteAdded { .. } => "NoteAdded",
            Self::HandoverRequested { .. } => "HandoverRequested",
            Self::ConversationRead { .. } => "ConversationRead",
            Self::OutboundResendAuthorized { .. } => "OutboundResendAuthorized",
            Self::OutboundSendRetried { .. } => "OutboundSendRetried",
            Self::OutboundSendUncertain { .. } => "OutboundSendUncertain",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
