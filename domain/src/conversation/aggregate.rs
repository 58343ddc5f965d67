//! The `Conversation` aggregate's state and its command handling.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{ConversationCommand, InboundMessage, StatusUpdate};
use super::error::ConversationError;
use super::events::ConversationEvent;
use super::values::{ConversationStatus, DeliveryStatus, SERVICE_WINDOW_HOURS};

/// One WhatsApp thread between a tenant and a contact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    contact_id: Option<String>,
    status: ConversationStatus,
    /// WhatsApp ids of the inbound messages already stored (the dedupe keys).
    received: BTreeSet<String>,
    /// The latest delivery status of each outbound message.
    deliveries: BTreeMap<String, DeliveryStatus>,
    window_expires_at: Option<DateTime<Utc>>,
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
        let current = self.deliveries.get(&update.message_ref).copied();
        if !DeliveryStatus::may_advance_to(current, update.status) {
            return Ok(None);
        }
        Ok(Some(ConversationEvent::DeliveryStatusRecorded {
            message_ref: update.message_ref,
            status: update.status,
            at: update.at,
            error_code: update.error.as_ref().map(|e| e.code),
            error_title: update.error.map(|e| e.title),
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
                contact_id,
                window_expires_at,
                ..
            } => {
                self.contact_id.get_or_insert(contact_id);
                self.received.insert(message_ref);
                self.window_expires_at = Some(window_expires_at);
                self.status = ConversationStatus::Open;
            }
            ConversationEvent::DeliveryStatusRecorded {
                message_ref, status, ..
            } => {
                self.deliveries.insert(message_ref, status);
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

    fn status(id: &str, s: DeliveryStatus, hour: u32) -> StatusUpdate {
        StatusUpdate {
            message_ref: id.into(),
            contact_id: "ct_a".into(),
            status: s,
            at: at(hour),
            error: None,
        }
    }

    fn status_event(id: &str, s: DeliveryStatus, hour: u32) -> ConversationEvent {
        ConversationEvent::DeliveryStatusRecorded {
            message_ref: id.into(),
            status: s,
            at: at(hour),
            error_code: None,
            error_title: None,
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
    fn a_status_moving_forward_is_recorded() {
        Given::with(())
            .given(vec![status_event("wamid.out", DeliveryStatus::Sent, 8)])
            .when(ConversationCommand::RecordDeliveryStatus(status(
                "wamid.out",
                DeliveryStatus::Delivered,
                9,
            )))
            .then_expect_events(vec![status_event("wamid.out", DeliveryStatus::Delivered, 9)]);
    }

    #[test]
    fn a_late_delivered_after_read_changes_nothing() {
        Given::with(())
            .given(vec![status_event("wamid.out", DeliveryStatus::Read, 9)])
            .when(ConversationCommand::RecordDeliveryStatus(status(
                "wamid.out",
                DeliveryStatus::Delivered,
                8,
            )))
            .then_expect_events(vec![]);
    }

    #[test]
    fn nothing_follows_a_failed_status() {
        Given::with(())
            .given(vec![status_event("wamid.out", DeliveryStatus::Failed, 9)])
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
            .given_no_previous_events()
            .when(ConversationCommand::RecordDeliveryStatus(update))
            .then_expect_events(vec![ConversationEvent::DeliveryStatusRecorded {
                message_ref: "wamid.out".into(),
                status: DeliveryStatus::Failed,
                at: at(9),
                error_code: Some(131047),
                error_title: Some("Re-engagement message".into()),
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
