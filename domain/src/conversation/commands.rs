//! Commands of the `Conversation` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::{Consent, ConversationStatus, DeliveryStatus, MessageKind, OutboundBody, ProviderError};
use crate::pii::Envelope;

/// A request to change a conversation.
// Events and commands are moved once and serialized; boxing the large variant would buy
// nothing and change nothing on the wire.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ConversationCommand {
    /// Record an inbound WhatsApp message (idempotent by WhatsApp message id).
    ReceiveMessage(InboundMessage),
    /// Record a delivery status of an outbound message (forward-only, idempotent).
    RecordDeliveryStatus(StatusUpdate),
    /// Queue an outbound message under the caller's idempotency key (a repeated key records
    /// nothing). Free-form text only inside the 24-hour window; nothing but an opt-out
    /// confirmation to an opted-out contact.
    QueueOutboundMessage(OutboundRequest),
    /// The sender's outcome: the provider accepted the message.
    RecordOutboundSent(OutboundSent),
    /// The sender's outcome: the provider refused the message, or sending was given up.
    RecordOutboundFailed(OutboundFailed),
    /// The sender's try of a queued message was not accepted for now (a 5xx, a 429, a timeout
    /// before the request went out) and it tries again at `next_try_at`. Not an outcome: a
    /// settled message, or a try already recorded, records nothing.
    RecordOutboundRetry(OutboundRetry),
    /// The sender cannot tell whether a queued message reached WhatsApp (the connection broke
    /// after the request went out): it leaves it for an operator (`AuthorizeResend`) and never
    /// sends it by itself. A settled message, or one already left, records nothing.
    RecordOutboundUncertain {
        idempotency_key: String,
        /// What happened, without personal data.
        reason: String,
        at: DateTime<Utc>,
    },
    /// Move the conversation to another status (see `ConversationStatus::may_move_to`).
    SetStatus {
        status: ConversationStatus,
        by: String,
        at: DateTime<Utc>,
    },
    /// Assign the conversation to an agent (`Some`) or unassign it (`None`).
    Assign {
        agent_id: Option<String>,
        by: String,
        at: DateTime<Utc>,
    },
    /// Add a tag (a tag already present records nothing).
    Tag { tag: String, by: String, at: DateTime<Utc> },
    /// Remove a tag (a tag not present records nothing).
    Untag { tag: String, by: String, at: DateTime<Utc> },
    /// Add an internal note (sealed; never sent to the contact). The note id is the caller's
    /// idempotency key.
    AddNote {
        note_id: String,
        text: Envelope,
        by: String,
        at: DateTime<Utc>,
    },
    /// An operator's word that a message the sender could not settle (it may or may not have
    /// reached WhatsApp) is to be sent again. Refused for a message with an outcome.
    AuthorizeResend {
        idempotency_key: String,
        by: String,
        at: DateTime<Utc>,
    },
    /// Mark the conversation read up to its latest inbound message (an agent opened it). With
    /// nothing new since the last time, or no inbound message at all, it records nothing.
    MarkRead { by: String, at: DateTime<Utc> },
    /// Ask for a human to take over (from a bot or an automation). Pending until someone is
    /// assigned; a second request meanwhile records nothing.
    RequestHandover {
        reason: Option<Envelope>,
        by: String,
        at: DateTime<Utc>,
    },
}

/// A request to send a message to the conversation's contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OutboundRequest {
    /// The caller's idempotency key: the same key never queues a second message.
    pub idempotency_key: String,
    pub body: OutboundBody,
    /// Who asked (user id, or a component name for automations).
    pub requested_by: String,
    /// The contact's consent, as the write side knows it.
    pub consent: Consent,
    /// Whether this message is the confirmation of an opt-out (the one message an opted-out
    /// contact may still receive).
    pub opt_out_confirmation: bool,
    /// For a template: whether the write side found it approved (the Template aggregate's
    /// latest review). Ignored for free-form text.
    pub template_approved: bool,
    pub at: DateTime<Utc>,
}

/// The provider accepted an outbound message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OutboundSent {
    pub idempotency_key: String,
    /// The keyed hash of the provider's message id (`IdKey::message_ref`), which the provider's
    /// delivery statuses will name.
    pub message_ref: String,
    /// The provider's message id, sealed.
    pub provider_message_id: Envelope,
    pub at: DateTime<Utc>,
}

/// An outbound message was not sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OutboundFailed {
    pub idempotency_key: String,
    /// The provider's error code, when it answered with one.
    pub code: Option<i64>,
    pub title: String,
    /// Whether sending again later might succeed (an operator decides; nothing resends
    /// automatically after a failure is recorded).
    pub retryable: bool,
    pub at: DateTime<Utc>,
}

/// A try of the sender that will be made again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OutboundRetry {
    pub idempotency_key: String,
    /// The sender's try number (from 1; starts over after an operator's resend).
    pub attempt: u32,
    /// The provider's error code, when it answered with one.
    pub code: Option<i64>,
    /// What went wrong, without personal data (the provider's title, or the sender's words).
    pub title: String,
    pub next_try_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// An inbound message, its personal fields already sealed under the contact's data key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatusUpdate {
    /// The keyed hash of the WhatsApp id of the message the status is about.
    pub message_ref: String,
    pub contact_id: String,
    pub status: DeliveryStatus,
    /// The provider's timestamp of the status.
    pub at: DateTime<Utc>,
    pub error: Option<ProviderError>,
}
