//! The `Conversation` aggregate's state and its command handling.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{
    ConversationCommand, InboundMessage, OutboundFailed, OutboundRequest, OutboundRetry, OutboundSent, StatusUpdate,
};
use super::error::ConversationError;
use super::events::ConversationEvent;
use super::values::{
    Consent, ConversationStatus, DeliveryStatus, OutboundBody, RecentRefs, SERVICE_WINDOW_HOURS, WINDOW_CLOSED_ERROR,
};
use crate::pii::Envelope;

/// Where an outbound message stands in its lifecycle, by idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Outbound {
    Queued,
    Sent,
    Failed,
}

/// The sender's progress on a queued message (see `Conversation::sending`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
struct SendProgress {
    tries: u32,
    uncertain: bool,
}

/// One WhatsApp thread between a tenant and a contact.
// `serde(default)`: snapshots taken before a field existed still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Conversation {
    contact_id: Option<String>,
    status: ConversationStatus,
    /// WhatsApp ids of the inbound messages already stored (the dedupe keys).
    received: RecentRefs,
    /// The latest delivery status of each outbound message.
    deliveries: BTreeMap<String, DeliveryStatus>,
    /// Every status already recorded for each outbound message (duplicates change nothing).
    #[serde(default)]
    delivery_facts: BTreeMap<String, BTreeSet<DeliveryStatus>>,
    window_expires_at: Option<DateTime<Utc>>,
    /// The contact's phone number (sealed) and the business number of the latest inbound
    /// message: where replies go.
    contact_phone: Option<Envelope>,
    business_number_id: Option<String>,
    assignee: Option<String>,
    tags: BTreeSet<String>,
    notes: BTreeSet<String>,
    handover_pending: bool,
    /// Outbound messages by idempotency key.
    outbound: BTreeMap<String, Outbound>,
    /// The sender's progress on each queued message without an outcome: the last try
    /// recorded, and whether it was left for an operator (forgotten once settled).
    #[serde(default)]
    sending: BTreeMap<String, SendProgress>,
    /// The message refs of the outbound messages WhatsApp accepted from Chronicle: a status of
    /// any other message is of one sent outside Chronicle (decision 0020). (Snapshots taken
    /// before it existed were dropped by migration ..96.)
    #[serde(default)]
    sent_refs: BTreeSet<String>,
    /// The inbound message (ref) the conversation was last marked read up to.
    read_up_to: Option<String>,
    /// WhatsApp's id (sealed) of the latest inbound message: what a read receipt names.
    latest_inbound_id: Option<Envelope>,
}

impl Conversation {
    /// The conversation's status.
    pub fn status(&self) -> ConversationStatus {
        self.status
    }

    /// When the 24-hour customer service window closes, if one was ever opened.
    pub fn window_expires_at(&self) -> Option<DateTime<Utc>> {
        self.window_expires_at
    }

    /// The assigned agent, if any.
    pub fn assignee(&self) -> Option<&str> {
        self.assignee.as_deref()
    }

    /// Whether a free-form message may be sent at `at` (inside the 24-hour window).
    pub fn free_form_allowed(&self, at: DateTime<Utc>) -> bool {
        self.window_expires_at.is_some_and(|closes| at < closes)
    }

    fn existing_contact(&self) -> Result<&str, ConversationError> {
        self.contact_id.as_deref().ok_or(ConversationError::UnknownConversation)
    }

    fn queue(&self, request: OutboundRequest) -> Result<Option<ConversationEvent>, ConversationError> {
        if request.idempotency_key.trim().is_empty() {
            return Err(ConversationError::MissingIdempotencyKey);
        }
        let contact_id = self.existing_contact()?.to_string();
        let to = self
            .contact_phone
            .clone()
            .ok_or(ConversationError::UnknownConversation)?;
        if self.outbound.contains_key(&request.idempotency_key) {
            return Ok(None);
        }
        if request.consent == Consent::OptedOut && !request.opt_out_confirmation {
            return Err(ConversationError::ContactOptedOut);
        }
        match &request.body {
            body if body.needs_window() && !self.free_form_allowed(request.at) => {
                return Err(ConversationError::OutsideServiceWindow {
                    closed_at: self.window_expires_at,
                })
            }
            OutboundBody::Template { name, language, .. } if name.trim().is_empty() || language.trim().is_empty() => {
                return Err(ConversationError::IncompleteTemplate)
            }
            OutboundBody::Template { name, language, .. } if !request.template_approved => {
                return Err(ConversationError::TemplateNotApproved {
                    name: name.clone(),
                    language: language.clone(),
                })
            }
            _ => {}
        }
        Ok(Some(ConversationEvent::OutboundMessageQueued {
            idempotency_key: request.idempotency_key,
            contact_id,
            to,
            business_number_id: self.business_number_id.clone(),
            body: request.body,
            requested_by: request.requested_by,
            at: request.at,
        }))
    }

    fn outcome_allowed(&self, idempotency_key: &str) -> Result<bool, ConversationError> {
        match self.outbound.get(idempotency_key) {
            None => Err(ConversationError::UnknownOutboundMessage {
                idempotency_key: idempotency_key.to_string(),
            }),
            Some(Outbound::Queued) => Ok(true),
            // One outcome per message: a repeated or contradicting outcome records nothing.
            Some(Outbound::Sent | Outbound::Failed) => Ok(false),
        }
    }

    fn sent(&self, sent: OutboundSent) -> Result<Option<ConversationEvent>, ConversationError> {
        if sent.message_ref.trim().is_empty() {
            return Err(ConversationError::MissingMessageId);
        }
        if !self.outcome_allowed(&sent.idempotency_key)? {
            return Ok(None);
        }
        Ok(Some(ConversationEvent::OutboundMessageSent {
            idempotency_key: sent.idempotency_key,
            message_ref: sent.message_ref,
            provider_message_id: sent.provider_message_id,
            at: sent.at,
        }))
    }

    fn failed(&self, failed: OutboundFailed) -> Result<Option<ConversationEvent>, ConversationError> {
        if !self.outcome_allowed(&failed.idempotency_key)? {
            return Ok(None);
        }
        Ok(Some(ConversationEvent::OutboundMessageFailed {
            idempotency_key: failed.idempotency_key,
            code: failed.code,
            title: failed.title,
            retryable: failed.retryable,
            at: failed.at,
        }))
    }

    fn retried(&self, retry: OutboundRetry) -> Result<Option<ConversationEvent>, ConversationError> {
        if !self.outcome_allowed(&retry.idempotency_key)? {
            return Ok(None);
        }
        let progress = self.sending.get(&retry.idempotency_key).copied().unwrap_or_default();
        // A try recorded again (a sender that stopped between recording and moving on).
        if retry.attempt <= progress.tries || progress.uncertain {
            return Ok(None);
        }
        Ok(Some(ConversationEvent::OutboundSendRetried {
            idempotency_key: retry.idempotency_key,
            attempt: retry.attempt,
            code: retry.code,
            title: retry.title,
            next_try_at: retry.next_try_at,
            at: retry.at,
        }))
    }

    fn uncertain(
        &self,
        idempotency_key: String,
        reason: String,
        at: DateTime<Utc>,
    ) -> Result<Option<ConversationEvent>, ConversationError> {
        if !self.outcome_allowed(&idempotency_key)? {
            return Ok(None);
        }
        if self.sending.get(&idempotency_key).is_some_and(|p| p.uncertain) {
            return Ok(None);
        }
        Ok(Some(ConversationEvent::OutboundSendUncertain {
            idempotency_key,
            reason,
            at,
        }))
    }

    fn set_status(
        &self,
        status: ConversationStatus,
        by: String,
        at: DateTime<Utc>,
    ) -> Result<Option<ConversationEvent>, ConversationError> {
        self.existing_contact()?;
        if status == self.status {
            return Ok(None);
        }
        if !self.status.may_move_to(status) {
            return Err(ConversationError::StatusMoveNotAllowed {
                from: self.status.as_str(),
                to: status.as_str(),
            });
        }
        Ok(Some(ConversationEvent::ConversationStatusChanged {
            from: self.status,
            to: status,
            by,
            at,
        }))
    }

    fn assign(
        &self,
        agent_id: Option<String>,
        by: String,
        at: DateTime<Utc>,
    ) -> Result<Option<ConversationEvent>, ConversationError> {
        self.existing_contact()?;
        match (agent_id, &self.assignee) {
            (Some(agent), _) if agent.trim().is_empty() => Err(ConversationError::Blank { field: "agent id" }),
            (Some(agent), Some(current)) if &agent == current => Ok(None),
            (Some(agent_id), _) => Ok(Some(ConversationEvent::ConversationAssigned { agent_id, by, at })),
            (None, None) => Ok(None),
            (None, Some(previous)) => Ok(Some(ConversationEvent::ConversationUnassigned {
                previous_agent_id: previous.clone(),
                by,
                at,
            })),
        }
    }

    fn tag(
        &self,
        tag: String,
        add: bool,
        by: String,
        at: DateTime<Utc>,
    ) -> Result<Option<ConversationEvent>, ConversationError> {
        self.existing_contact()?;
        let tag = tag.trim().to_lowercase();
        if tag.is_empty() {
            return Err(ConversationError::Blank { field: "tag" });
        }
        match (add, self.tags.contains(&tag)) {
            (true, false) => Ok(Some(ConversationEvent::ConversationTagged { tag, by, at })),
            (false, true) => Ok(Some(ConversationEvent::ConversationUntagged { tag, by, at })),
            _ => Ok(None),
        }
    }

    fn note(
        &self,
        note_id: String,
        text: Envelope,
        by: String,
        at: DateTime<Utc>,
    ) -> Result<Option<ConversationEvent>, ConversationError> {
        self.existing_contact()?;
        if note_id.trim().is_empty() {
            return Err(ConversationError::Blank { field: "note id" });
        }
        if self.notes.contains(&note_id) {
            return Ok(None);
        }
        Ok(Some(ConversationEvent::NoteAdded { note_id, text, by, at }))
    }

    fn handover(
        &self,
        reason: Option<Envelope>,
        by: String,
        at: DateTime<Utc>,
    ) -> Result<Option<ConversationEvent>, ConversationError> {
        self.existing_contact()?;
        if self.handover_pending {
            return Ok(None);
        }
        Ok(Some(ConversationEvent::HandoverRequested { reason, by, at }))
    }

    fn authorize_resend(
        &self,
        idempotency_key: String,
        by: String,
        at: DateTime<Utc>,
    ) -> Result<Option<ConversationEvent>, ConversationError> {
        self.existing_contact()?;
        match self.outbound.get(&idempotency_key) {
            None => Err(ConversationError::UnknownOutboundMessage { idempotency_key }),
            Some(Outbound::Sent) => Err(ConversationError::OutboundMessageSettled {
                idempotency_key,
                outcome: "sent",
            }),
            Some(Outbound::Failed) => Err(ConversationError::OutboundMessageSettled {
                idempotency_key,
                outcome: "failed",
            }),
            Some(Outbound::Queued) => Ok(Some(ConversationEvent::OutboundResendAuthorized {
                idempotency_key,
                by,
                at,
            })),
        }
    }

    fn mark_read(&self, by: String, at: DateTime<Utc>) -> Result<Option<ConversationEvent>, ConversationError> {
        self.existing_contact()?;
        let Some(latest) = self.received.latest() else {
            return Ok(None);
        };
        if self.read_up_to.as_deref() == Some(latest) {
            return Ok(None);
        }
        Ok(Some(ConversationEvent::ConversationRead {
            up_to: latest.to_string(),
            message_id: self.latest_inbound_id.clone(),
            business_number_id: self.business_number_id.clone(),
            by,
            at,
        }))
    }

    fn check_contact(&self, contact_id: &str, message_ref: &str) -> Result<(), ConversationError> {
        if message_ref.trim().is_empty() {
            return Err(ConversationError::MissingMessageId);
        }
        match &self.contact_id {
            Some(known) if known != contact_id => Err(ConversationError::MessageFromAnotherContact {
                message_ref: message_ref.to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn receive(&self, message: InboundMessage) -> Result<Option<ConversationEvent>, ConversationError> {
        self.check_contact(&message.contact_id, &message.message_ref)?;
        if self.received.contains(&message.message_ref) {
            return Ok(None);
        }
        // Provider timestamps are bounded at the edge; saturate anyway so no input can panic.
        let opened_until = message
            .sent_at
            .checked_add_signed(Duration::hours(SERVICE_WINDOW_HOURS))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let window_expires_at = match self.window_expires_at {
            Some(current) if current > opened_until => current,
            _ => opened_until,
        };
        let reopened = matches!(self.status, ConversationStatus::Resolved | ConversationStatus::Closed);
        Ok(Some(ConversationEvent::MessageReceived {
            message_ref: message.message_ref,
            provider_message_id: message.provider_message_id,
            contact_id: message.contact_id,
            business_number_id: message.business_number_id,
            contact_phone: message.contact_phone,
            contact_name: message.contact_name,
            kind: message.kind,
            content: message.content,
            sent_at: message.sent_at,
            window_expires_at,
            reopened,
        }))
    }

    fn record_status(&self, update: StatusUpdate) -> Result<Option<ConversationEvent>, ConversationError> {
        self.check_contact(&update.contact_id, &update.message_ref)?;
        // A status never opens a conversation: with nobody who wrote and nothing Chronicle
        // sent, it is of a message sent outside Chronicle to someone without a thread
        // (decision 0020).
        if self.contact_id.is_none() {
            return Err(ConversationError::UnknownConversation);
        }
        let current = self.deliveries.get(&update.message_ref).copied();
        let seen = self
            .delivery_facts
            .get(&update.message_ref)
            .is_some_and(|s| s.contains(&update.status));
        // Failed is terminal; a duplicate changes nothing; a delivered message does not fail.
        let ignored = current == Some(DeliveryStatus::Failed)
            || seen
            || (update.status == DeliveryStatus::Failed && current.is_some_and(|c| c != DeliveryStatus::Sent));
        if ignored {
            return Ok(None);
        }
        // A status arriving late (delivered after read) is still a fact with its provider time;
        // the message's current status only moves forward.
        let furthest = match current {
            Some(c) if !DeliveryStatus::may_advance_to(Some(c), update.status) => c,
            _ => update.status,
        };
        let external = !self.sent_refs.contains(&update.message_ref);
        Ok(Some(ConversationEvent::DeliveryStatusRecorded {
            message_ref: update.message_ref,
            status: update.status,
            current: furthest,
            at: update.at,
            window_closed: update.status == DeliveryStatus::Failed
                && update.error.as_ref().is_some_and(|e| e.code == WINDOW_CLOSED_ERROR),
            error_code: update.error.as_ref().map(|e| e.code),
            error_title: update.error.map(|e| e.title),
            external,
        }))
    }
}

impl Aggregate for Conversation {
    const TYPE: &'static str = "Conversation";
    type Command = ConversationCommand;
    type Event = ConversationEvent;
    type Error = ConversationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            ConversationCommand::ReceiveMessage(message) => self.receive(message)?,
            ConversationCommand::RecordDeliveryStatus(update) => self.record_status(update)?,
            ConversationCommand::QueueOutboundMessage(request) => self.queue(request)?,
            ConversationCommand::RecordOutboundSent(sent) => self.sent(sent)?,
            ConversationCommand::RecordOutboundFailed(failed) => self.failed(failed)?,
            ConversationCommand::RecordOutboundRetry(retry) => self.retried(retry)?,
            ConversationCommand::RecordOutboundUncertain {
                idempotency_key,
                reason,
                at,
            } => self.uncertain(idempotency_key, reason, at)?,
            ConversationCommand::SetStatus { status, by, at } => self.set_status(status, by, at)?,
            ConversationCommand::Assign { agent_id, by, at } => self.assign(agent_id, by, at)?,
            ConversationCommand::Tag { tag, by, at } => self.tag(tag, true, by, at)?,
            ConversationCommand::Untag { tag, by, at } => self.tag(tag, false, by, at)?,
            ConversationCommand::AddNote { note_id, text, by, at } => self.note(note_id, text, by, at)?,
            ConversationCommand::RequestHandover { reason, by, at } => self.handover(reason, by, at)?,
            ConversationCommand::MarkRead { by, at } => self.mark_read(by, at)?,
            ConversationCommand::AuthorizeResend {
                idempotency_key,
                by,
                at,
            } => self.authorize_resend(idempotency_key, by, at)?,
        };
        if let Some(event) = event {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ConversationEvent::MessageReceived {
                message_ref,
                provider_message_id,
                contact_id,
                window_expires_at,
                contact_phone,
                business_number_id,
                ..
            } => {
                self.latest_inbound_id = Some(provider_message_id);
                self.contact_id.get_or_insert(contact_id);
                self.received.insert(message_ref);
                self.window_expires_at = Some(window_expires_at);
                self.status = ConversationStatus::Open;
                self.contact_phone = Some(contact_phone);
                self.business_number_id = Some(business_number_id);
            }
            ConversationEvent::DeliveryStatusRecorded {
                message_ref,
                status,
                current,
                ..
            } => {
                self.delivery_facts
                    .entry(message_ref.clone())
                    .or_default()
                    .insert(status);
                self.deliveries.insert(message_ref, current);
            }
            ConversationEvent::OutboundMessageQueued { idempotency_key, .. } => {
                self.outbound.insert(idempotency_key, Outbound::Queued);
            }
            ConversationEvent::OutboundMessageSent {
                idempotency_key,
                message_ref,
                ..
            } => {
                self.sent_refs.insert(message_ref);
                self.sending.remove(&idempotency_key);
                self.outbound.insert(idempotency_key, Outbound::Sent);
            }
            ConversationEvent::OutboundMessageFailed { idempotency_key, .. } => {
                self.sending.remove(&idempotency_key);
                self.outbound.insert(idempotency_key, Outbound::Failed);
            }
            ConversationEvent::OutboundSendRetried {
                idempotency_key,
                attempt,
                ..
            } => {
                self.sending.entry(idempotency_key).or_default().tries = attempt;
            }
            ConversationEvent::OutboundSendUncertain { idempotency_key, .. } => {
                self.sending.entry(idempotency_key).or_default().uncertain = true;
            }
            ConversationEvent::ConversationStatusChanged { to, .. } => self.status = to,
            ConversationEvent::ConversationAssigned { agent_id, .. } => {
                self.assignee = Some(agent_id);
                self.handover_pending = false;
            }
            ConversationEvent::ConversationUnassigned { .. } => self.assignee = None,
            ConversationEvent::ConversationTagged { tag, .. } => {
                self.tags.insert(tag);
            }
            ConversationEvent::ConversationUntagged { tag, .. } => {
                self.tags.remove(&tag);
            }
            ConversationEvent::NoteAdded { note_id, .. } => {
                self.notes.insert(note_id);
            }
            ConversationEvent::HandoverRequested { .. } => self.handover_pending = true,
            ConversationEvent::ConversationRead { up_to, .. } => self.read_up_to = Some(up_to),
            // The message stays queued: the sender settles it as any other, its tries counted
            // from 1 again.
            ConversationEvent::OutboundResendAuthorized { idempotency_key, .. } => {
                self.sending.remove(&idempotency_key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{MessageKind, ProviderError};
    use crate::pii::Envelope;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Conversation>;

    fn env(tag: &str) -> Envelope {
        Envelope {
            enc: "aes256gcm.v1".into(),
            nonce: format!("n-{tag}"),
            ciphertext: format!("c-{tag}"),
        }
    }

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn inbound(id: &str, contact: &str, hour: u32) -> InboundMessage {
        InboundMessage {
            message_ref: id.into(),
            provider_message_id: env("wamid"),
            contact_id: contact.into(),
            business_number_id: "pn-1".into(),
            contact_phone: env("phone"),
            contact_name: Some(env("name")),
            kind: MessageKind::Text,
            content: Some(env(id)),
            sent_at: at(hour),
        }
    }

    fn received(id: &str, contact: &str, hour: u32, expires: DateTime<Utc>, reopened: bool) -> ConversationEvent {
        let m = inbound(id, contact, hour);
        ConversationEvent::MessageReceived {
            message_ref: m.message_ref,
            provider_message_id: m.provider_message_id,
            contact_id: m.contact_id,
            business_number_id: m.business_number_id,
            contact_phone: m.contact_phone,
            contact_name: m.contact_name,
            kind: m.kind,
            content: m.content,
            sent_at: m.sent_at,
            window_expires_at: expires,
            reopened,
        }
    }

    fn read(up_to: &str, hour: u32) -> ConversationEvent {
        ConversationEvent::ConversationRead {
            up_to: up_to.into(),
            message_id: Some(env("wamid")),
            business_number_id: Some("pn-1".into()),
            by: "agent-1".into(),
            at: at(hour),
        }
    }

    fn mark_read(hour: u32) -> ConversationCommand {
        ConversationCommand::MarkRead {
            by: "agent-1".into(),
            at: at(hour),
        }
    }

    #[test]
    fn marking_read_records_the_latest_inbound_message() {
        let expires = at(8) + Duration::hours(SERVICE_WINDOW_HOURS);
        Given::with(())
            .given(vec![
                received("wamid.1", "ct_a", 8, expires, false),
                received("wamid.2", "ct_a", 9, expires, false),
            ])
            .when(mark_read(10))
            .then_expect_events(vec![read("wamid.2", 10)]);
    }

    #[test]
    fn marking_read_again_with_nothing_new_records_nothing_and_a_new_message_is_unread_again() {
        let expires = at(8) + Duration::hours(SERVICE_WINDOW_HOURS);
        Given::with(())
            .given(vec![received("wamid.1", "ct_a", 8, expires, false), read("wamid.1", 9)])
            .when(mark_read(10))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![
                received("wamid.1", "ct_a", 8, expires, false),
                read("wamid.1", 9),
                received("wamid.3", "ct_a", 10, expires, false),
            ])
            .when(mark_read(11))
            .then_expect_events(vec![read("wamid.3", 11)]);
    }

    #[test]
    fn marking_an_unknown_conversation_read_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(mark_read(10))
            .then_expect_error(ConversationError::UnknownConversation);
    }

    fn status(id: &str, s: DeliveryStatus, hour: u32) -> StatusUpdate {
        StatusUpdate {
            message_ref: id.into(),
            contact_id: "ct_a".into(),
            status: s,
            at: at(hour),
            error: None,
        }
    }

    /// A conversation the contact opened, in which WhatsApp accepted Chronicle's message `id`.
    fn sent_message(id: &str) -> Vec<ConversationEvent> {
        vec![
            received("wamid.in", "ct_a", 7, at(7) + Duration::hours(24), false),
            ConversationEvent::OutboundMessageQueued {
                idempotency_key: "k-sent".into(),
                contact_id: "ct_a".into(),
                to: env("phone"),
                business_number_id: Some("pn-1".into()),
                body: OutboundBody::FreeForm { text: env("text") },
                requested_by: "user-1".into(),
                at: at(8),
            },
            ConversationEvent::OutboundMessageSent {
                idempotency_key: "k-sent".into(),
                message_ref: id.into(),
                provider_message_id: env("wamid-out"),
                at: at(8),
            },
        ]
    }

    fn with_sent(id: &str, events: Vec<ConversationEvent>) -> Vec<ConversationEvent> {
        let mut all = sent_message(id);
        all.extend(events);
        all
    }

    fn known_conversation(id: &str) -> Conversation {
        let mut conversation = Conversation::default();
        for event in sent_message(id) {
            conversation.apply(event);
        }
        conversation
    }

    fn status_event(id: &str, s: DeliveryStatus, hour: u32) -> ConversationEvent {
        late_status_event(id, s, s, hour)
    }

    fn late_status_event(id: &str, s: DeliveryStatus, current: DeliveryStatus, hour: u32) -> ConversationEvent {
        ConversationEvent::DeliveryStatusRecorded {
            external: false,
            message_ref: id.into(),
            status: s,
            current,
            at: at(hour),
            error_code: None,
            error_title: None,
            window_closed: false,
        }
    }

    #[test]
    fn a_first_message_opens_the_conversation_and_a_24_hour_window() {
        Given::with(())
            .given_no_previous_events()
            .when(ConversationCommand::ReceiveMessage(inbound("wamid.1", "ct_a", 8)))
            .then_expect_events(vec![received("wamid.1", "ct_a", 8, at(8) + Duration::hours(24), false)]);
    }

    #[test]
    fn a_later_message_extends_the_window() {
        Given::with(())
            .given(vec![received("wamid.1", "ct_a", 8, at(8) + Duration::hours(24), false)])
            .when(ConversationCommand::ReceiveMessage(inbound("wamid.2", "ct_a", 10)))
            .then_expect_events(vec![received(
                "wamid.2",
                "ct_a",
                10,
                at(10) + Duration::hours(24),
                false,
            )]);
    }

    #[test]
    fn a_message_delivered_late_does_not_shorten_the_window() {
        Given::with(())
            .given(vec![received(
                "wamid.2",
                "ct_a",
                10,
                at(10) + Duration::hours(24),
                false,
            )])
            .when(ConversationCommand::ReceiveMessage(inbound("wamid.1", "ct_a", 8)))
            .then_expect_events(vec![received(
                "wamid.1",
                "ct_a",
                8,
                at(10) + Duration::hours(24),
                false,
            )]);
    }

    #[test]
    fn a_repeated_message_id_stores_nothing() {
        Given::with(())
            .given(vec![received("wamid.1", "ct_a", 8, at(8) + Duration::hours(24), false)])
            .when(ConversationCommand::ReceiveMessage(inbound("wamid.1", "ct_a", 8)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_message_from_another_contact_is_refused() {
        Given::with(())
            .given(vec![received("wamid.1", "ct_a", 8, at(8) + Duration::hours(24), false)])
            .when(ConversationCommand::ReceiveMessage(inbound("wamid.9", "ct_b", 9)))
            .then_expect_error(ConversationError::MessageFromAnotherContact {
                message_ref: "wamid.9".into(),
            });
    }

    #[test]
    fn a_message_without_an_id_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(ConversationCommand::ReceiveMessage(inbound(" ", "ct_a", 8)))
            .then_expect_error(ConversationError::MissingMessageId);
    }

    #[test]
    fn a_message_on_a_resolved_conversation_reopens_it() {
        let mut conversation = Conversation::default();
        conversation.apply(received("wamid.1", "ct_a", 8, at(8) + Duration::hours(24), false));
        conversation.status = ConversationStatus::Resolved;
        let event = conversation.receive(inbound("wamid.2", "ct_a", 9));
        assert_eq!(
            event,
            Ok(Some(received("wamid.2", "ct_a", 9, at(9) + Duration::hours(24), true)))
        );
    }

    #[test]
    fn a_status_of_a_message_chronicle_did_not_send_is_recorded_as_external() {
        let mut event = status_event("wamid.elsewhere", DeliveryStatus::Delivered, 9);
        if let ConversationEvent::DeliveryStatusRecorded { external, .. } = &mut event {
            *external = true;
        }
        Given::with(())
            .given(sent_message("wamid.out"))
            .when(ConversationCommand::RecordDeliveryStatus(status(
                "wamid.elsewhere",
                DeliveryStatus::Delivered,
                9,
            )))
            .then_expect_events(vec![event]);
    }

    #[test]
    fn a_status_never_opens_a_conversation() {
        Given::with(())
            .given_no_previous_events()
            .when(ConversationCommand::RecordDeliveryStatus(status(
                "wamid.elsewhere",
                DeliveryStatus::Sent,
                9,
            )))
            .then_expect_error(ConversationError::UnknownConversation);
    }

    #[test]
    fn a_status_moving_forward_is_recorded() {
        Given::with(())
            .given(with_sent(
                "wamid.out",
                vec![status_event("wamid.out", DeliveryStatus::Sent, 8)],
            ))
            .when(ConversationCommand::RecordDeliveryStatus(status(
                "wamid.out",
                DeliveryStatus::Delivered,
                9,
            )))
            .then_expect_events(vec![status_event("wamid.out", DeliveryStatus::Delivered, 9)]);
    }

    #[test]
    fn a_late_delivered_after_read_is_recorded_without_moving_the_status_back() {
        Given::with(())
            .given(with_sent(
                "wamid.out",
                vec![status_event("wamid.out", DeliveryStatus::Read, 9)],
            ))
            .when(ConversationCommand::RecordDeliveryStatus(status(
                "wamid.out",
                DeliveryStatus::Delivered,
                8,
            )))
            .then_expect_events(vec![late_status_event(
                "wamid.out",
                DeliveryStatus::Delivered,
                DeliveryStatus::Read,
                8,
            )]);
    }

    #[test]
    fn a_status_reported_twice_is_recorded_once() {
        Given::with(())
            .given(with_sent(
                "wamid.out",
                vec![
                    status_event("wamid.out", DeliveryStatus::Read, 9),
                    late_status_event("wamid.out", DeliveryStatus::Delivered, DeliveryStatus::Read, 8),
                ],
            ))
            .when(ConversationCommand::RecordDeliveryStatus(status(
                "wamid.out",
                DeliveryStatus::Delivered,
                8,
            )))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_delivered_message_does_not_fail_afterwards() {
        Given::with(())
            .given(with_sent(
                "wamid.out",
                vec![status_event("wamid.out", DeliveryStatus::Delivered, 9)],
            ))
            .when(ConversationCommand::RecordDeliveryStatus(status(
                "wamid.out",
                DeliveryStatus::Failed,
                10,
            )))
            .then_expect_events(vec![]);
    }

    #[test]
    fn statuses_in_any_order_end_with_the_same_facts_and_current_status() {
        use std::collections::BTreeSet;
        let orders = [
            [DeliveryStatus::Sent, DeliveryStatus::Delivered, DeliveryStatus::Read],
            [DeliveryStatus::Read, DeliveryStatus::Delivered, DeliveryStatus::Sent],
            [DeliveryStatus::Delivered, DeliveryStatus::Read, DeliveryStatus::Sent],
        ];
        let mut outcomes = Vec::new();
        for order in orders {
            let mut conversation = known_conversation("wamid.out");
            let mut facts = BTreeSet::new();
            for s in order.iter().chain(order.iter()) {
                let hour = match s {
                    DeliveryStatus::Sent => 8,
                    DeliveryStatus::Delivered => 9,
                    _ => 10,
                };
                if let Ok(Some(event)) = conversation.record_status(status("wamid.out", *s, hour)) {
                    if let ConversationEvent::DeliveryStatusRecorded { status, at, .. } = &event {
                        facts.insert((*status, *at));
                    }
                    conversation.apply(event);
                }
            }
            outcomes.push((facts, conversation.deliveries.get("wamid.out").copied()));
        }
        assert!(outcomes.windows(2).all(|w| w[0] == w[1]), "{outcomes:?}");
        assert_eq!(outcomes[0].1, Some(DeliveryStatus::Read));
        assert_eq!(outcomes[0].0.len(), 3);
    }

    #[test]
    fn nothing_follows_a_failed_status() {
        Given::with(())
            .given(with_sent(
                "wamid.out",
                vec![status_event("wamid.out", DeliveryStatus::Failed, 9)],
            ))
            .when(ConversationCommand::RecordDeliveryStatus(status(
                "wamid.out",
                DeliveryStatus::Read,
                10,
            )))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_failed_status_keeps_the_providers_error() {
        let mut update = status("wamid.out", DeliveryStatus::Failed, 9);
        update.error = Some(ProviderError {
            code: 131047,
            title: "Re-engagement message".into(),
        });
        Given::with(())
            .given(sent_message("wamid.out"))
            .when(ConversationCommand::RecordDeliveryStatus(update))
            .then_expect_events(vec![ConversationEvent::DeliveryStatusRecorded {
                external: false,
                message_ref: "wamid.out".into(),
                status: DeliveryStatus::Failed,
                current: DeliveryStatus::Failed,
                at: at(9),
                error_code: Some(131047),
                error_title: Some("Re-engagement message".into()),
                window_closed: true,
            }]);
    }

    #[test]
    fn a_status_of_another_contacts_message_is_refused() {
        let mut update = status("wamid.out", DeliveryStatus::Sent, 9);
        update.contact_id = "ct_b".into();
        Given::with(())
            .given(vec![received("wamid.1", "ct_a", 8, at(8) + Duration::hours(24), false)])
            .when(ConversationCommand::RecordDeliveryStatus(update))
            .then_expect_error(ConversationError::MessageFromAnotherContact {
                message_ref: "wamid.out".into(),
            });
    }
}

#[cfg(test)]
mod inbox_tests {
    //! Outbound messages, status moves, assignment, tags, notes and handover.

    use super::*;
    use crate::conversation::{MessageKind, ProviderError};
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use proptest::prelude::*;

    type Given = TestFramework<Conversation>;

    fn env(tag: &str) -> Envelope {
        Envelope {
            enc: "aes256gcm.v1".into(),
            nonce: format!("n-{tag}"),
            ciphertext: format!("c-{tag}"),
        }
    }

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap_or_default() + Duration::hours(i64::from(hour))
    }

    /// A message from `ct_a` at 08:00: the window closes at 08:00 the next day (hour 32).
    fn opened() -> ConversationEvent {
        ConversationEvent::MessageReceived {
            message_ref: "wm_in1".into(),
            provider_message_id: env("wamid"),
            contact_id: "ct_a".into(),
            business_number_id: "pn-1".into(),
            contact_phone: env("phone"),
            contact_name: None,
            kind: MessageKind::Text,
            content: Some(env("hi")),
            sent_at: at(8),
            window_expires_at: at(32),
            reopened: false,
        }
    }

    fn free_form(key: &str, hour: u32) -> OutboundRequest {
        OutboundRequest {
            idempotency_key: key.into(),
            body: OutboundBody::FreeForm { text: env("text") },
            requested_by: "user-1".into(),
            consent: Consent::Unknown,
            opt_out_confirmation: false,
            template_approved: true,
            at: at(hour),
        }
    }

    fn template(key: &str, hour: u32) -> OutboundRequest {
        OutboundRequest {
            body: OutboundBody::Template {
                name: "follow_up".into(),
                language: "en".into(),
                parameters: env("params"),
                header: None,
            },
            ..free_form(key, hour)
        }
    }

    fn queued(request: &OutboundRequest) -> ConversationEvent {
        ConversationEvent::OutboundMessageQueued {
            idempotency_key: request.idempotency_key.clone(),
            contact_id: "ct_a".into(),
            to: env("phone"),
            business_number_id: Some("pn-1".into()),
            body: request.body.clone(),
            requested_by: request.requested_by.clone(),
            at: request.at,
        }
    }

    fn sent_cmd(key: &str) -> OutboundSent {
        OutboundSent {
            idempotency_key: key.into(),
            message_ref: "wm_out".into(),
            provider_message_id: env("wamid-out"),
            at: at(9),
        }
    }

    fn sent_event(key: &str) -> ConversationEvent {
        ConversationEvent::OutboundMessageSent {
            idempotency_key: key.into(),
            message_ref: "wm_out".into(),
            provider_message_id: env("wamid-out"),
            at: at(9),
        }
    }

    fn failed_cmd(key: &str) -> OutboundFailed {
        OutboundFailed {
            idempotency_key: key.into(),
            code: Some(131026),
            title: "Message undeliverable".into(),
            retryable: false,
            at: at(9),
        }
    }

    fn resend(key: &str) -> ConversationCommand {
        ConversationCommand::AuthorizeResend {
            idempotency_key: key.into(),
            by: "admin-1".into(),
            at: at(12),
        }
    }

    fn retry(key: &str, attempt: u32) -> ConversationCommand {
        ConversationCommand::RecordOutboundRetry(OutboundRetry {
            idempotency_key: key.into(),
            attempt,
            code: Some(503),
            title: "busy".into(),
            next_try_at: at(11),
            at: at(10),
        })
    }

    fn retried(key: &str, attempt: u32) -> ConversationEvent {
        ConversationEvent::OutboundSendRetried {
            idempotency_key: key.into(),
            attempt,
            code: Some(503),
            title: "busy".into(),
            next_try_at: at(11),
            at: at(10),
        }
    }

    fn uncertain(key: &str) -> ConversationCommand {
        ConversationCommand::RecordOutboundUncertain {
            idempotency_key: key.into(),
            reason: "the connection broke after the request".into(),
            at: at(10),
        }
    }

    fn uncertain_event(key: &str) -> ConversationEvent {
        ConversationEvent::OutboundSendUncertain {
            idempotency_key: key.into(),
            reason: "the connection broke after the request".into(),
            at: at(10),
        }
    }

    #[test]
    fn each_try_of_the_sender_is_recorded_once_while_the_message_has_no_outcome() {
        let request = free_form("k1", 10);
        Given::with(())
            .given(vec![opened(), queued(&request)])
            .when(retry("k1", 1))
            .then_expect_events(vec![retried("k1", 1)]);
        Given::with(())
            .given(vec![opened(), queued(&request), retried("k1", 1)])
            .when(retry("k1", 2))
            .then_expect_events(vec![retried("k1", 2)]);
        // The same try again, an earlier one, or any after the outcome: nothing.
        Given::with(())
            .given(vec![opened(), queued(&request), retried("k1", 2)])
            .when(retry("k1", 2))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![opened(), queued(&request), retried("k1", 1), sent_event("k1")])
            .when(retry("k1", 2))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![opened()])
            .when(retry("k1", 1))
            .then_expect_error(ConversationError::UnknownOutboundMessage {
                idempotency_key: "k1".into(),
            });
    }

    #[test]
    fn a_message_left_for_an_operator_is_recorded_once_and_its_tries_start_over_after_a_resend() {
        let request = free_form("k1", 10);
        Given::with(())
            .given(vec![opened(), queued(&request), retried("k1", 3)])
            .when(uncertain("k1"))
            .then_expect_events(vec![uncertain_event("k1")]);
        Given::with(())
            .given(vec![opened(), queued(&request), uncertain_event("k1")])
            .when(uncertain("k1"))
            .then_expect_events(vec![]);
        // No try is recorded while it waits for an operator.
        Given::with(())
            .given(vec![opened(), queued(&request), uncertain_event("k1")])
            .when(retry("k1", 4))
            .then_expect_events(vec![]);
        let resent = ConversationEvent::OutboundResendAuthorized {
            idempotency_key: "k1".into(),
            by: "admin-1".into(),
            at: at(12),
        };
        Given::with(())
            .given(vec![
                opened(),
                queued(&request),
                retried("k1", 3),
                uncertain_event("k1"),
                resent,
            ])
            .when(retry("k1", 1))
            .then_expect_events(vec![retried("k1", 1)]);
        Given::with(())
            .given(vec![opened(), queued(&request), sent_event("k1")])
            .when(uncertain("k1"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_operator_authorizes_sending_again_a_message_without_an_outcome() {
        let request = free_form("k1", 10);
        Given::with(())
            .given(vec![opened(), queued(&request)])
            .when(resend("k1"))
            .then_expect_events(vec![ConversationEvent::OutboundResendAuthorized {
                idempotency_key: "k1".into(),
                by: "admin-1".into(),
                at: at(12),
            }]);
    }

    #[test]
    fn sending_again_an_unknown_or_settled_message_is_refused() {
        let request = free_form("k1", 10);
        Given::with(())
            .given(vec![opened()])
            .when(resend("k1"))
            .then_expect_error(ConversationError::UnknownOutboundMessage {
                idempotency_key: "k1".into(),
            });
        Given::with(())
            .given(vec![opened(), queued(&request), sent_event("k1")])
            .when(resend("k1"))
            .then_expect_error(ConversationError::OutboundMessageSettled {
                idempotency_key: "k1".into(),
                outcome: "sent",
            });
        Given::with(())
            .given_no_previous_events()
            .when(resend("k1"))
            .then_expect_error(ConversationError::UnknownConversation);
    }

    #[test]
    fn a_free_form_message_inside_the_window_is_queued() {
        let request = free_form("k1", 10);
        Given::with(())
            .given(vec![opened()])
            .when(ConversationCommand::QueueOutboundMessage(request.clone()))
            .then_expect_events(vec![queued(&request)]);
    }

    #[test]
    fn a_free_form_message_outside_the_window_is_refused_by_the_window_rule() {
        Given::with(())
            .given(vec![opened()])
            .when(ConversationCommand::QueueOutboundMessage(free_form("k1", 33)))
            .then_expect_error(ConversationError::OutsideServiceWindow {
                closed_at: Some(at(32)),
            });
    }

    #[test]
    fn a_template_outside_the_window_is_queued() {
        let request = template("k1", 60);
        Given::with(())
            .given(vec![opened()])
            .when(ConversationCommand::QueueOutboundMessage(request.clone()))
            .then_expect_events(vec![queued(&request)]);
    }

    #[test]
    fn a_template_not_approved_is_refused() {
        let mut request = template("k1", 10);
        request.template_approved = false;
        Given::with(())
            .given(vec![opened()])
            .when(ConversationCommand::QueueOutboundMessage(request))
            .then_expect_error(ConversationError::TemplateNotApproved {
                name: "follow_up".into(),
                language: "en".into(),
            });
    }

    #[test]
    fn a_repeated_idempotency_key_queues_nothing() {
        let request = free_form("k1", 10);
        Given::with(())
            .given(vec![opened(), queued(&request)])
            .when(ConversationCommand::QueueOutboundMessage(free_form("k1", 11)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_message_without_an_idempotency_key_is_refused() {
        Given::with(())
            .given(vec![opened()])
            .when(ConversationCommand::QueueOutboundMessage(free_form(" ", 10)))
            .then_expect_error(ConversationError::MissingIdempotencyKey);
    }

    #[test]
    fn a_template_without_a_language_is_refused() {
        let mut request = template("k1", 10);
        request.body = OutboundBody::Template {
            name: "follow_up".into(),
            language: " ".into(),
            parameters: env("p"),
            header: None,
        };
        Given::with(())
            .given(vec![opened()])
            .when(ConversationCommand::QueueOutboundMessage(request))
            .then_expect_error(ConversationError::IncompleteTemplate);
    }

    #[test]
    fn nothing_can_be_sent_in_a_conversation_that_does_not_exist() {
        Given::with(())
            .given_no_previous_events()
            .when(ConversationCommand::QueueOutboundMessage(template("k1", 10)))
            .then_expect_error(ConversationError::UnknownConversation);
    }

    #[test]
    fn an_opted_out_contact_receives_no_message() {
        let mut request = template("k1", 10);
        request.consent = Consent::OptedOut;
        Given::with(())
            .given(vec![opened()])
            .when(ConversationCommand::QueueOutboundMessage(request))
            .then_expect_error(ConversationError::ContactOptedOut);
    }

    #[test]
    fn an_opted_out_contact_receives_the_opt_out_confirmation() {
        let mut request = free_form("k1", 10);
        request.consent = Consent::OptedOut;
        request.opt_out_confirmation = true;
        Given::with(())
            .given(vec![opened()])
            .when(ConversationCommand::QueueOutboundMessage(request.clone()))
            .then_expect_events(vec![queued(&request)]);
    }

    #[test]
    fn a_queued_message_is_recorded_as_sent_once() {
        let request = template("k1", 10);
        Given::with(())
            .given(vec![opened(), queued(&request)])
            .when(ConversationCommand::RecordOutboundSent(sent_cmd("k1")))
            .then_expect_events(vec![sent_event("k1")]);
        Given::with(())
            .given(vec![opened(), queued(&request), sent_event("k1")])
            .when(ConversationCommand::RecordOutboundSent(sent_cmd("k1")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_outcome_of_a_message_never_queued_is_refused() {
        Given::with(())
            .given(vec![opened()])
            .when(ConversationCommand::RecordOutboundSent(sent_cmd("nope")))
            .then_expect_error(ConversationError::UnknownOutboundMessage {
                idempotency_key: "nope".into(),
            });
        Given::with(())
            .given(vec![opened()])
            .when(ConversationCommand::RecordOutboundFailed(failed_cmd("nope")))
            .then_expect_error(ConversationError::UnknownOutboundMessage {
                idempotency_key: "nope".into(),
            });
    }

    #[test]
    fn a_sent_outcome_without_a_provider_id_is_refused() {
        let mut cmd = sent_cmd("k1");
        cmd.message_ref = String::new();
        Given::with(())
            .given(vec![opened(), queued(&template("k1", 10))])
            .when(ConversationCommand::RecordOutboundSent(cmd))
            .then_expect_error(ConversationError::MissingMessageId);
    }

    #[test]
    fn a_failure_keeps_the_providers_code_and_is_the_only_outcome() {
        let request = template("k1", 10);
        let failed = ConversationEvent::OutboundMessageFailed {
            idempotency_key: "k1".into(),
            code: Some(131026),
            title: "Message undeliverable".into(),
            retryable: false,
            at: at(9),
        };
        Given::with(())
            .given(vec![opened(), queued(&request)])
            .when(ConversationCommand::RecordOutboundFailed(failed_cmd("k1")))
            .then_expect_events(vec![failed.clone()]);
        Given::with(())
            .given(vec![opened(), queued(&request), failed])
            .when(ConversationCommand::RecordOutboundSent(sent_cmd("k1")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_failed_status_with_131047_is_recorded_as_window_closed() {
        let update = StatusUpdate {
            message_ref: "wm_out".into(),
            contact_id: "ct_a".into(),
            status: DeliveryStatus::Failed,
            at: at(40),
            error: Some(ProviderError {
                code: WINDOW_CLOSED_ERROR,
                title: "Re-engagement message".into(),
            }),
        };
        let mut other = update.clone();
        other.error = Some(ProviderError {
            code: 131026,
            title: "Undeliverable".into(),
        });
        let event = |code: i64, title: &str, closed: bool| ConversationEvent::DeliveryStatusRecorded {
            external: false,
            message_ref: "wm_out".into(),
            status: DeliveryStatus::Failed,
            current: DeliveryStatus::Failed,
            at: at(40),
            error_code: Some(code),
            error_title: Some(title.into()),
            window_closed: closed,
        };
        Given::with(())
            .given(vec![opened(), sent_event("k1")])
            .when(ConversationCommand::RecordDeliveryStatus(update))
            .then_expect_events(vec![event(131047, "Re-engagement message", true)]);
        Given::with(())
            .given(vec![opened(), sent_event("k1")])
            .when(ConversationCommand::RecordDeliveryStatus(other))
            .then_expect_events(vec![event(131026, "Undeliverable", false)]);
    }

    fn status_cmd(status: ConversationStatus) -> ConversationCommand {
        ConversationCommand::SetStatus {
            status,
            by: "user-1".into(),
            at: at(9),
        }
    }

    fn changed(from: ConversationStatus, to: ConversationStatus) -> ConversationEvent {
        ConversationEvent::ConversationStatusChanged {
            from,
            to,
            by: "user-1".into(),
            at: at(9),
        }
    }

    #[test]
    fn an_open_conversation_can_be_set_pending_and_resolved() {
        use ConversationStatus::*;
        Given::with(())
            .given(vec![opened()])
            .when(status_cmd(Pending))
            .then_expect_events(vec![changed(Open, Pending)]);
        Given::with(())
            .given(vec![opened(), changed(Open, Pending)])
            .when(status_cmd(Resolved))
            .then_expect_events(vec![changed(Pending, Resolved)]);
        Given::with(())
            .given(vec![opened(), changed(Open, Resolved)])
            .when(status_cmd(Closed))
            .then_expect_events(vec![changed(Resolved, Closed)]);
    }

    #[test]
    fn an_open_conversation_cannot_be_closed_without_being_resolved() {
        Given::with(())
            .given(vec![opened()])
            .when(status_cmd(ConversationStatus::Closed))
            .then_expect_error(ConversationError::StatusMoveNotAllowed {
                from: "open",
                to: "closed",
            });
    }

    #[test]
    fn a_closed_conversation_is_reopened_only_by_an_inbound_message() {
        use ConversationStatus::*;
        Given::with(())
            .given(vec![opened(), changed(Open, Resolved), changed(Resolved, Closed)])
            .when(status_cmd(Open))
            .then_expect_error(ConversationError::StatusMoveNotAllowed {
                from: "closed",
                to: "open",
            });
    }

    #[test]
    fn setting_the_current_status_records_nothing() {
        Given::with(())
            .given(vec![opened()])
            .when(status_cmd(ConversationStatus::Open))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_conversation_that_does_not_exist_cannot_change() {
        Given::with(())
            .given_no_previous_events()
            .when(status_cmd(ConversationStatus::Pending))
            .then_expect_error(ConversationError::UnknownConversation);
    }

    fn assign(agent: Option<&str>) -> ConversationCommand {
        ConversationCommand::Assign {
            agent_id: agent.map(str::to_string),
            by: "user-1".into(),
            at: at(9),
        }
    }

    fn assigned(agent: &str) -> ConversationEvent {
        ConversationEvent::ConversationAssigned {
            agent_id: agent.into(),
            by: "user-1".into(),
            at: at(9),
        }
    }

    #[test]
    fn a_conversation_is_assigned_reassigned_and_unassigned() {
        Given::with(())
            .given(vec![opened()])
            .when(assign(Some("agent-1")))
            .then_expect_events(vec![assigned("agent-1")]);
        Given::with(())
            .given(vec![opened(), assigned("agent-1")])
            .when(assign(Some("agent-2")))
            .then_expect_events(vec![assigned("agent-2")]);
        Given::with(())
            .given(vec![opened(), assigned("agent-1")])
            .when(assign(None))
            .then_expect_events(vec![ConversationEvent::ConversationUnassigned {
                previous_agent_id: "agent-1".into(),
                by: "user-1".into(),
                at: at(9),
            }]);
    }

    #[test]
    fn assigning_the_same_agent_again_records_nothing() {
        Given::with(())
            .given(vec![opened(), assigned("agent-1")])
            .when(assign(Some("agent-1")))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![opened()])
            .when(assign(None))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_blank_agent_is_refused() {
        Given::with(())
            .given(vec![opened()])
            .when(assign(Some(" ")))
            .then_expect_error(ConversationError::Blank { field: "agent id" });
    }

    fn tag(add: bool, tag: &str) -> ConversationCommand {
        let (tag, by, at) = (tag.to_string(), "user-1".to_string(), at(9));
        if add {
            ConversationCommand::Tag { tag, by, at }
        } else {
            ConversationCommand::Untag { tag, by, at }
        }
    }

    fn tagged(tag: &str) -> ConversationEvent {
        ConversationEvent::ConversationTagged {
            tag: tag.into(),
            by: "user-1".into(),
            at: at(9),
        }
    }

    #[test]
    fn tags_are_added_once_normalized_and_removed() {
        Given::with(())
            .given(vec![opened()])
            .when(tag(true, " VIP "))
            .then_expect_events(vec![tagged("vip")]);
        Given::with(())
            .given(vec![opened(), tagged("vip")])
            .when(tag(true, "vip"))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![opened(), tagged("vip")])
            .when(tag(false, "vip"))
            .then_expect_events(vec![ConversationEvent::ConversationUntagged {
                tag: "vip".into(),
                by: "user-1".into(),
                at: at(9),
            }]);
        Given::with(())
            .given(vec![opened()])
            .when(tag(false, "vip"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_blank_tag_is_refused() {
        Given::with(())
            .given(vec![opened()])
            .when(tag(true, "  "))
            .then_expect_error(ConversationError::Blank { field: "tag" });
    }

    fn note(id: &str) -> ConversationCommand {
        ConversationCommand::AddNote {
            note_id: id.into(),
            text: env("note"),
            by: "user-1".into(),
            at: at(9),
        }
    }

    #[test]
    fn a_note_is_added_once_per_note_id() {
        let added = ConversationEvent::NoteAdded {
            note_id: "n1".into(),
            text: env("note"),
            by: "user-1".into(),
            at: at(9),
        };
        Given::with(())
            .given(vec![opened()])
            .when(note("n1"))
            .then_expect_events(vec![added.clone()]);
        Given::with(())
            .given(vec![opened(), added])
            .when(note("n1"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_note_without_an_id_is_refused() {
        Given::with(())
            .given(vec![opened()])
            .when(note(""))
            .then_expect_error(ConversationError::Blank { field: "note id" });
    }

    fn handover() -> ConversationCommand {
        ConversationCommand::RequestHandover {
            reason: None,
            by: "bot".into(),
            at: at(9),
        }
    }

    fn handover_requested() -> ConversationEvent {
        ConversationEvent::HandoverRequested {
            reason: None,
            by: "bot".into(),
            at: at(9),
        }
    }

    #[test]
    fn a_handover_is_requested_once_until_someone_is_assigned() {
        Given::with(())
            .given(vec![opened()])
            .when(handover())
            .then_expect_events(vec![handover_requested()]);
        Given::with(())
            .given(vec![opened(), handover_requested()])
            .when(handover())
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![opened(), handover_requested(), assigned("agent-1")])
            .when(handover())
            .then_expect_events(vec![handover_requested()]);
    }

    #[test]
    fn a_handover_in_a_conversation_that_does_not_exist_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(handover())
            .then_expect_error(ConversationError::UnknownConversation);
    }

    fn any_status() -> impl Strategy<Value = ConversationStatus> {
        prop_oneof![
            Just(ConversationStatus::Open),
            Just(ConversationStatus::Pending),
            Just(ConversationStatus::Resolved),
            Just(ConversationStatus::Closed),
        ]
    }

    proptest! {
        /// Whatever people ask, in any order: closed is reached only through resolved, nothing
        /// leaves closed but an inbound message, and every recorded move is an allowed one.
        #[test]
        fn status_moves_follow_the_machine(asks in proptest::collection::vec((any_status(), any::<bool>()), 0..24)) {
            let mut conversation = Conversation::default();
            conversation.apply(opened());
            for (i, (ask, inbound)) in asks.into_iter().enumerate() {
                let before = conversation.status();
                if inbound {
                    let mut received = opened();
                    if let ConversationEvent::MessageReceived { message_ref, .. } = &mut received {
                        *message_ref = format!("wm_{i}");
                    }
                    conversation.apply(received);
                    prop_assert_eq!(conversation.status(), ConversationStatus::Open);
                    continue;
                }
                match conversation.set_status(ask, "u".into(), at(9)) {
                    Ok(Some(event)) => {
                        prop_assert!(before.may_move_to(ask));
                        prop_assert!(!(ask == ConversationStatus::Closed && before != ConversationStatus::Resolved));
                        conversation.apply(event);
                        prop_assert_eq!(conversation.status(), ask);
                    }
                    Ok(None) => prop_assert_eq!(before, ask),
                    Err(e) => {
                        prop_assert_eq!(e, ConversationError::StatusMoveNotAllowed { from: before.as_str(), to: ask.as_str() });
                        prop_assert_eq!(conversation.status(), before);
                        if before == ConversationStatus::Closed { prop_assert_ne!(ask, ConversationStatus::Closed); }
                    }
                }
            }
        }
    }
}
