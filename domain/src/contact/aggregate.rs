//! The `Contact` aggregate's state and its command handling.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{ContactCommand, EraseContact, RegisterContact, UpdateContactProfile};
use super::error::ContactError;
use super::events::ContactEvent;
use super::values::{
    Consent, ConsentSource, ContactHandleKind, ContactSource, CustomFieldKey, FieldChange, OutboundKind, Tag,
    MAX_CUSTOM_FIELDS, MAX_TAGS,
};
use crate::pii::Envelope;

/// A person a tenant reaches on WhatsApp.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Contact {
    contact_id: Option<String>,
    handle: Option<ContactHandleKind>,
    source: Option<ContactSource>,
    phone: Option<Envelope>,
    provider_user_id: Option<Envelope>,
    name: Option<Envelope>,
    email: Option<Envelope>,
    /// Normalized tags.
    tags: BTreeSet<String>,
    /// Custom field values (sealed), by key.
    custom_fields: BTreeMap<String, Envelope>,
    consent: Consent,
    erased: bool,
}

impl Contact {
    /// The contact's id, once registered.
    pub fn contact_id(&self) -> Option<&str> {
        self.contact_id.as_deref()
    }

    /// Whether the contact was registered (and not erased since).
    pub fn is_registered(&self) -> bool {
        self.contact_id.is_some() && !self.erased
    }

    /// The contact's phone number, sealed under their data key (when their handle has one).
    pub fn phone(&self) -> Option<&Envelope> {
        self.phone.as_ref()
    }

    /// Whether the contact was erased.
    pub fn is_erased(&self) -> bool {
        self.erased
    }

    /// What the contact's id was made from.
    pub fn handle(&self) -> Option<ContactHandleKind> {
        self.handle
    }

    /// Where the contact first came from.
    pub fn source(&self) -> Option<ContactSource> {
        self.source
    }

    /// The contact's tags, normalized, in order.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().map(String::as_str)
    }

    /// The keys of the contact's custom fields, in order.
    pub fn custom_field_keys(&self) -> impl Iterator<Item = &str> {
        self.custom_fields.keys().map(String::as_str)
    }

    /// The contact's consent, derived from the last effective opt-in or opt-out.
    pub fn consent(&self) -> Consent {
        self.consent
    }

    /// Whether a message of `kind` may be sent to this contact.
    ///
    /// An opted-out contact receives nothing but the confirmation of the opt-out
    /// ([`OutboundKind::OptOutConfirmation`]); everything else is refused with
    /// [`ContactError::ContactOptedOut`]. An erased contact receives nothing
    /// ([`ContactError::ContactErased`]). Consent never stated does not block: the 24-hour
    /// window and template approval are the conversation's and the template's rules.
    pub fn may_receive(&self, kind: OutboundKind) -> Result<(), ContactError> {
        if self.erased {
            return Err(ContactError::ContactErased);
        }
        match (kind, self.consent) {
            (OutboundKind::OptOutConfirmation, _) => Ok(()),
            (_, Consent::OptedOut { .. }) => Err(ContactError::ContactOptedOut),
            _ => Ok(()),
        }
    }

    /// Refuses every command on an erased contact, and all but registration and erasure on
    /// one not registered yet.
    fn check_registered(&self) -> Result<(), ContactError> {
        if self.erased {
            Err(ContactError::ContactErased)
        } else if self.contact_id.is_none() {
            Err(ContactError::ContactNotRegistered)
        } else {
            Ok(())
        }
    }

    fn register(&self, cmd: RegisterContact) -> Result<Option<ContactEvent>, ContactError> {
        if self.erased {
            return Err(ContactError::ContactErased);
        }
        if cmd.contact_id.trim().is_empty() {
            return Err(ContactError::MissingContactId);
        }
        let handle_present = match cmd.handle {
            ContactHandleKind::Phone => cmd.phone.is_some(),
            ContactHandleKind::ProviderUser => cmd.provider_user_id.is_some(),
        };
        if !handle_present {
            return Err(ContactError::ContactNeedsAHandle);
        }
        let Some(known) = &self.contact_id else {
            return Ok(Some(ContactEvent::ContactRegistered {
                contact_id: cmd.contact_id,
                handle: cmd.handle,
                phone: cmd.phone,
                provider_user_id: cmd.provider_user_id,
                name: cmd.name,
                source: cmd.source,
                at: cmd.at,
            }));
        };
        if *known != cmd.contact_id {
            return Err(ContactError::ContactIdMismatch {
                contact_id: cmd.contact_id,
            });
        }
        // A repeat only fills in what was missing: sealed values cannot be compared by meaning,
        // and a name a user typed must not be overwritten by a later WhatsApp profile name.
        let phone = cmd.phone.filter(|_| self.phone.is_none());
        let provider_user_id = cmd.provider_user_id.filter(|_| self.provider_user_id.is_none());
        let name = cmd.name.filter(|_| self.name.is_none());
        if phone.is_none() && provider_user_id.is_none() && name.is_none() {
            return Ok(None);
        }
        Ok(Some(ContactEvent::ContactProfileUpdated {
            phone,
            provider_user_id,
            name: name.map(FieldChange::Set),
            email: None,
            at: cmd.at,
        }))
    }

    fn update_profile(&self, cmd: UpdateContactProfile) -> Result<Option<ContactEvent>, ContactError> {
        self.check_registered()?;
        let name = change(&self.name, cmd.name);
        let email = change(&self.email, cmd.email);
        if name.is_none() && email.is_none() {
            return Ok(None);
        }
        Ok(Some(ContactEvent::ContactProfileUpdated {
            phone: None,
            provider_user_id: None,
            name,
            email,
            at: cmd.at,
        }))
    }

    fn tag(&self, raw: &str) -> Result<Option<ContactEvent>, ContactError> {
        self.check_registered()?;
        let tag = Tag::parse(raw)?.into_string();
        if self.tags.contains(&tag) {
            return Ok(None);
        }
        if self.tags.len() >= MAX_TAGS {
            return Err(ContactError::TooManyTags);
        }
        Ok(Some(ContactEvent::ContactTagged {
            tag,
            tag_count: self.tags.len() + 1,
        }))
    }

    fn untag(&self, raw: &str) -> Result<Option<ContactEvent>, ContactError> {
        self.check_registered()?;
        let tag = Tag::parse(raw)?.into_string();
        if !self.tags.contains(&tag) {
            return Ok(None);
        }
        Ok(Some(ContactEvent::ContactUntagged {
            tag,
            tag_count: self.tags.len() - 1,
        }))
    }

    fn set_field(&self, key: &str, value: Envelope) -> Result<Option<ContactEvent>, ContactError> {
        self.check_registered()?;
        let key = CustomFieldKey::parse(key)?.into_string();
        let field_count = match self.custom_fields.get(&key) {
            Some(current) if *current == value => return Ok(None),
            Some(_) => self.custom_fields.len(),
            None if self.custom_fields.len() >= MAX_CUSTOM_FIELDS => return Err(ContactError::TooManyCustomFields),
            None => self.custom_fields.len() + 1,
        };
        Ok(Some(ContactEvent::ContactCustomFieldSet {
            key,
            value,
            field_count,
        }))
    }

    fn remove_field(&self, key: &str) -> Result<Option<ContactEvent>, ContactError> {
        self.check_registered()?;
        let key = CustomFieldKey::parse(key)?.into_string();
        if !self.custom_fields.contains_key(&key) {
            return Ok(None);
        }
        Ok(Some(ContactEvent::ContactCustomFieldRemoved {
            key,
            field_count: self.custom_fields.len() - 1,
        }))
    }

    fn opt_in(&self, source: ConsentSource, at: DateTime<Utc>) -> Result<Option<ContactEvent>, ContactError> {
        self.check_registered()?;
        Ok(match self.consent {
            Consent::OptedIn { .. } => None,
            _ => Some(ContactEvent::ContactOptedIn { source, at }),
        })
    }

    fn opt_out(&self, source: ConsentSource, at: DateTime<Utc>) -> Result<Option<ContactEvent>, ContactError> {
        self.check_registered()?;
        Ok(match self.consent {
            Consent::OptedOut { .. } => None,
            _ => Some(ContactEvent::ContactOptedOut { source, at }),
        })
    }

    /// Erasure is possible whether or not the contact was registered here: its data key may
    /// seal envelopes in other streams (its conversation), and destroying it must never wait.
    fn erase(&self, cmd: EraseContact) -> Result<Option<ContactEvent>, ContactError> {
        if self.erased {
            return Ok(None);
        }
        if cmd.requested_by.trim().is_empty() {
            return Err(ContactError::ErasureNeedsARequester);
        }
        Ok(Some(ContactEvent::ContactErased {
            requested_by: cmd.requested_by,
            at: cmd.at,
        }))
    }
}

/// The change a set / clear / leave request makes to a field, if any. Envelopes are compared
/// as ciphertext.
fn change(current: &Option<Envelope>, requested: Option<Option<Envelope>>) -> Option<FieldChange<Envelope>> {
    match (current, requested?) {
        (None, None) => None,
        (Some(_), None) => Some(FieldChange::Cleared),
        (Some(old), Some(new)) if *old == new => None,
        (_, Some(new)) => Some(FieldChange::Set(new)),
    }
}

impl Aggregate for Contact {
    const TYPE: &'static str = "Contact";
    type Command = ContactCommand;
    type Event = ContactEvent;
    type Error = ContactError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            ContactCommand::RegisterContact(cmd) => self.register(cmd)?,
            ContactCommand::UpdateContactProfile(cmd) => self.update_profile(cmd)?,
            ContactCommand::TagContact { tag } => self.tag(&tag)?,
            ContactCommand::UntagContact { tag } => self.untag(&tag)?,
            ContactCommand::SetCustomField { key, value } => self.set_field(&key, value)?,
            ContactCommand::RemoveCustomField { key } => self.remove_field(&key)?,
            ContactCommand::OptIn { source, at } => self.opt_in(source, at)?,
            ContactCommand::OptOut { source, at } => self.opt_out(source, at)?,
            ContactCommand::EraseContact(cmd) => self.erase(cmd)?,
        };
        if let Some(event) = event {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        if self.erased {
            // Nothing follows an erasure; a stray event changes nothing.
            return;
        }
        match event {
            ContactEvent::ContactRegistered {
                contact_id,
                handle,
                phone,
                provider_user_id,
                name,
                source,
                ..
            } => {
                self.contact_id = Some(contact_id);
                self.handle = Some(handle);
                self.source = Some(source);
                self.phone = phone;
                self.provider_user_id = provider_user_id;
                self.name = name;
            }
            ContactEvent::ContactProfileUpdated {
                phone,
                provider_user_id,
                name,
                email,
                ..
            } => {
                if phone.is_some() {
                    self.phone = phone;
                }
                if provider_user_id.is_some() {
                    self.provider_user_id = provider_user_id;
                }
                if let Some(name) = name {
                    self.name = name.into_value();
                }
                if let Some(email) = email {
                    self.email = email.into_value();
                }
            }
            ContactEvent::ContactTagged { tag, .. } => {
                self.tags.insert(tag);
            }
            ContactEvent::ContactUntagged { tag, .. } => {
                self.tags.remove(&tag);
            }
            ContactEvent::ContactCustomFieldSet { key, value, .. } => {
                self.custom_fields.insert(key, value);
            }
            ContactEvent::ContactCustomFieldRemoved { key, .. } => {
                self.custom_fields.remove(&key);
            }
            ContactEvent::ContactOptedIn { source, at } => self.consent = Consent::OptedIn { source, at },
            ContactEvent::ContactOptedOut { source, at } => self.consent = Consent::OptedOut { source, at },
            ContactEvent::ContactErased { .. } => {
                // The sealed fields are noise once the key is gone; drop them from the state too.
                // Consent stays: it is no personal data and the record of what was agreed.
                *self = Self {
                    contact_id: self.contact_id.take(),
                    handle: self.handle,
                    source: self.source,
                    consent: self.consent,
                    erased: true,
                    ..Self::default()
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use cqrs_es::DomainEvent;
    use proptest::prelude::*;

    type Given = TestFramework<Contact>;

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

    fn register(name: Option<&str>) -> RegisterContact {
        RegisterContact {
            contact_id: "ct_a".into(),
            handle: ContactHandleKind::Phone,
            phone: Some(env("phone")),
            provider_user_id: None,
            name: name.map(env),
            source: ContactSource::Whatsapp,
            at: at(8),
        }
    }

    fn registered(name: Option<&str>) -> ContactEvent {
        ContactEvent::ContactRegistered {
            contact_id: "ct_a".into(),
            handle: ContactHandleKind::Phone,
            phone: Some(env("phone")),
            provider_user_id: None,
            name: name.map(env),
            source: ContactSource::Whatsapp,
            at: at(8),
        }
    }

    fn erased() -> ContactEvent {
        ContactEvent::ContactErased {
            requested_by: "usr_1".into(),
            at: at(12),
        }
    }

    fn tagged(tag: &str, tag_count: usize) -> ContactEvent {
        ContactEvent::ContactTagged {
            tag: tag.into(),
            tag_count,
        }
    }

    fn field_set(key: &str, value: &str, field_count: usize) -> ContactEvent {
        ContactEvent::ContactCustomFieldSet {
            key: key.into(),
            value: env(value),
            field_count,
        }
    }

    fn profile(name: Option<FieldChange<Envelope>>, email: Option<FieldChange<Envelope>>) -> ContactCommand {
        ContactCommand::UpdateContactProfile(UpdateContactProfile {
            name: name.map(FieldChange::into_value),
            email: email.map(FieldChange::into_value),
            at: at(9),
        })
    }

    fn profile_updated(name: Option<FieldChange<Envelope>>, email: Option<FieldChange<Envelope>>) -> ContactEvent {
        ContactEvent::ContactProfileUpdated {
            phone: None,
            provider_user_id: None,
            name,
            email,
            at: at(9),
        }
    }

    fn tag(tag: &str) -> ContactCommand {
        ContactCommand::TagContact { tag: tag.into() }
    }

    fn opt_in(hour: u32) -> ContactCommand {
        ContactCommand::OptIn {
            source: ConsentSource::WebForm,
            at: at(hour),
        }
    }

    fn opt_out(hour: u32) -> ContactCommand {
        ContactCommand::OptOut {
            source: ConsentSource::WhatsappKeyword,
            at: at(hour),
        }
    }

    fn erase(by: &str) -> ContactCommand {
        ContactCommand::EraseContact(EraseContact {
            requested_by: by.into(),
            at: at(12),
        })
    }

    /// One command of every kind but registration and erasure.
    fn every_change() -> Vec<ContactCommand> {
        vec![
            profile(Some(FieldChange::Set(env("n"))), None),
            tag("vip"),
            ContactCommand::UntagContact { tag: "vip".into() },
            ContactCommand::SetCustomField {
                key: "roof".into(),
                value: env("tin"),
            },
            ContactCommand::RemoveCustomField { key: "roof".into() },
            opt_in(10),
            opt_out(10),
        ]
    }

    fn state(events: &[ContactEvent]) -> Contact {
        let mut contact = Contact::default();
        for event in events {
            contact.apply(event.clone());
        }
        contact
    }

    // RegisterContact

    #[test]
    fn a_new_contact_is_registered_with_its_handle_and_source() {
        Given::with(())
            .given_no_previous_events()
            .when(ContactCommand::RegisterContact(register(Some("Tendai"))))
            .then_expect_events(vec![registered(Some("Tendai"))]);
    }

    #[test]
    fn a_contact_whose_number_is_withheld_is_registered_by_provider_user_id() {
        let cmd = RegisterContact {
            handle: ContactHandleKind::ProviderUser,
            phone: None,
            provider_user_id: Some(env("bsuid")),
            ..register(None)
        };
        Given::with(())
            .given_no_previous_events()
            .when(ContactCommand::RegisterContact(cmd))
            .then_expect_events(vec![ContactEvent::ContactRegistered {
                contact_id: "ct_a".into(),
                handle: ContactHandleKind::ProviderUser,
                phone: None,
                provider_user_id: Some(env("bsuid")),
                name: None,
                source: ContactSource::Whatsapp,
                at: at(8),
            }]);
    }

    #[test]
    fn registering_a_known_contact_again_records_nothing() {
        let again = RegisterContact {
            name: Some(env("resealed-name")),
            source: ContactSource::Import,
            at: at(11),
            ..register(None)
        };
        Given::with(())
            .given(vec![registered(Some("Tendai"))])
            .when(ContactCommand::RegisterContact(again))
            .then_expect_events(vec![]);
    }

    #[test]
    fn registering_again_with_a_name_where_there_was_none_fills_it_in() {
        let again = RegisterContact {
            provider_user_id: Some(env("bsuid")),
            at: at(9),
            ..register(Some("Tendai"))
        };
        Given::with(())
            .given(vec![registered(None)])
            .when(ContactCommand::RegisterContact(again))
            .then_expect_events(vec![ContactEvent::ContactProfileUpdated {
                phone: None,
                provider_user_id: Some(env("bsuid")),
                name: Some(FieldChange::Set(env("Tendai"))),
                email: None,
                at: at(9),
            }]);
    }

    #[test]
    fn a_contact_without_phone_or_provider_user_id_is_refused() {
        let cmd = RegisterContact {
            phone: None,
            ..register(None)
        };
        Given::with(())
            .given_no_previous_events()
            .when(ContactCommand::RegisterContact(cmd))
            .then_expect_error(ContactError::ContactNeedsAHandle);
    }

    #[test]
    fn a_contact_missing_the_handle_its_id_was_made_from_is_refused() {
        let cmd = RegisterContact {
            phone: None,
            provider_user_id: Some(env("bsuid")),
            ..register(None)
        };
        Given::with(())
            .given_no_previous_events()
            .when(ContactCommand::RegisterContact(cmd))
            .then_expect_error(ContactError::ContactNeedsAHandle);
    }

    #[test]
    fn a_registration_without_a_contact_id_is_refused() {
        let cmd = RegisterContact {
            contact_id: " ".into(),
            ..register(None)
        };
        Given::with(())
            .given_no_previous_events()
            .when(ContactCommand::RegisterContact(cmd))
            .then_expect_error(ContactError::MissingContactId);
    }

    #[test]
    fn registering_another_contact_id_on_this_stream_is_refused() {
        let cmd = RegisterContact {
            contact_id: "ct_b".into(),
            ..register(None)
        };
        Given::with(())
            .given(vec![registered(None)])
            .when(ContactCommand::RegisterContact(cmd))
            .then_expect_error(ContactError::ContactIdMismatch {
                contact_id: "ct_b".into(),
            });
    }

    #[test]
    fn registering_an_erased_contact_is_refused() {
        Given::with(())
            .given(vec![registered(None), erased()])
            .when(ContactCommand::RegisterContact(register(Some("Tendai"))))
            .then_expect_error(ContactError::ContactErased);
    }

    // UpdateContactProfile

    #[test]
    fn a_profile_update_records_only_what_changed() {
        Given::with(())
            .given(vec![registered(Some("Tendai"))])
            .when(profile(
                Some(FieldChange::Set(env("Tendai"))),
                Some(FieldChange::Set(env("mail"))),
            ))
            .then_expect_events(vec![profile_updated(None, Some(FieldChange::Set(env("mail"))))]);
    }

    #[test]
    fn clearing_a_name_records_the_clearing() {
        Given::with(())
            .given(vec![registered(Some("Tendai"))])
            .when(profile(Some(FieldChange::Cleared), None))
            .then_expect_events(vec![profile_updated(Some(FieldChange::Cleared), None)]);
    }

    #[test]
    fn a_profile_update_that_changes_nothing_records_nothing() {
        Given::with(())
            .given(vec![registered(Some("Tendai"))])
            .when(profile(
                Some(FieldChange::Set(env("Tendai"))),
                Some(FieldChange::Cleared),
            ))
            .then_expect_events(vec![]);
    }

    #[test]
    fn updating_the_profile_of_an_unregistered_contact_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(profile(Some(FieldChange::Set(env("x"))), None))
            .then_expect_error(ContactError::ContactNotRegistered);
    }

    #[test]
    fn a_cleared_field_stays_cleared_and_a_set_one_is_kept() {
        let contact = state(&[
            registered(Some("Tendai")),
            profile_updated(Some(FieldChange::Cleared), Some(FieldChange::Set(env("mail")))),
        ]);
        assert_eq!(contact.name, None);
        assert_eq!(contact.email, Some(env("mail")));
        assert_eq!(contact.phone, Some(env("phone")));
    }

    // TagContact / UntagContact

    #[test]
    fn a_tag_is_normalized_and_counted() {
        Given::with(())
            .given(vec![registered(None), tagged("solar", 1)])
            .when(tag("  VIP  Client "))
            .then_expect_events(vec![tagged("vip client", 2)]);
    }

    #[test]
    fn tagging_twice_records_nothing() {
        Given::with(())
            .given(vec![registered(None), tagged("vip", 1)])
            .when(tag(" VIP"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_invalid_tag_is_refused() {
        Given::with(())
            .given(vec![registered(None)])
            .when(tag("vip!"))
            .then_expect_error(ContactError::InvalidTag { tag: "vip!".into() });
    }

    #[test]
    fn a_fifty_first_tag_is_refused_but_a_known_one_still_changes_nothing() {
        let mut history = vec![registered(None)];
        history.extend((1..=MAX_TAGS).map(|n| tagged(&format!("t{n}"), n)));
        Given::with(())
            .given(history.clone())
            .when(tag("one more"))
            .then_expect_error(ContactError::TooManyTags);
        Given::with(())
            .given(history)
            .when(tag("t7"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn tagging_an_unregistered_contact_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(tag("vip"))
            .then_expect_error(ContactError::ContactNotRegistered);
    }

    #[test]
    fn removing_a_tag_records_it_and_the_count_left() {
        Given::with(())
            .given(vec![registered(None), tagged("vip", 1), tagged("solar", 2)])
            .when(ContactCommand::UntagContact { tag: "VIP".into() })
            .then_expect_events(vec![ContactEvent::ContactUntagged {
                tag: "vip".into(),
                tag_count: 1,
            }]);
    }

    #[test]
    fn removing_an_absent_tag_records_nothing() {
        Given::with(())
            .given(vec![registered(None)])
            .when(ContactCommand::UntagContact { tag: "vip".into() })
            .then_expect_events(vec![]);
    }

    #[test]
    fn removing_an_invalid_tag_is_refused() {
        Given::with(())
            .given(vec![registered(None)])
            .when(ContactCommand::UntagContact { tag: "".into() })
            .then_expect_error(ContactError::InvalidTag { tag: "".into() });
    }

    #[test]
    fn untagging_an_unregistered_contact_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(ContactCommand::UntagContact { tag: "vip".into() })
            .then_expect_error(ContactError::ContactNotRegistered);
    }

    // SetCustomField / RemoveCustomField

    #[test]
    fn a_custom_field_is_set_and_counted() {
        Given::with(())
            .given(vec![registered(None), field_set("roof", "tin", 1)])
            .when(ContactCommand::SetCustomField {
                key: "system_kw".into(),
                value: env("5"),
            })
            .then_expect_events(vec![field_set("system_kw", "5", 2)]);
    }

    #[test]
    fn a_new_value_replaces_the_old_one_and_keeps_the_count() {
        Given::with(())
            .given(vec![registered(None), field_set("roof", "tin", 1)])
            .when(ContactCommand::SetCustomField {
                key: "roof".into(),
                value: env("tile"),
            })
            .then_expect_events(vec![field_set("roof", "tile", 1)]);
    }

    #[test]
    fn setting_the_same_sealed_value_again_records_nothing() {
        Given::with(())
            .given(vec![registered(None), field_set("roof", "tin", 1)])
            .when(ContactCommand::SetCustomField {
                key: "roof".into(),
                value: env("tin"),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_invalid_custom_field_key_is_refused() {
        Given::with(())
            .given(vec![registered(None)])
            .when(ContactCommand::SetCustomField {
                key: "Roof Type".into(),
                value: env("tin"),
            })
            .then_expect_error(ContactError::InvalidCustomFieldKey {
                key: "Roof Type".into(),
            });
    }

    #[test]
    fn a_hundred_and_first_custom_field_is_refused_but_a_known_one_may_change() {
        let mut history = vec![registered(None)];
        history.extend((1..=MAX_CUSTOM_FIELDS).map(|n| field_set(&format!("f{n}"), "v", n)));
        Given::with(())
            .given(history.clone())
            .when(ContactCommand::SetCustomField {
                key: "one_more".into(),
                value: env("v"),
            })
            .then_expect_error(ContactError::TooManyCustomFields);
        Given::with(())
            .given(history)
            .when(ContactCommand::SetCustomField {
                key: "f1".into(),
                value: env("w"),
            })
            .then_expect_events(vec![field_set("f1", "w", MAX_CUSTOM_FIELDS)]);
    }

    #[test]
    fn setting_a_custom_field_of_an_unregistered_contact_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(ContactCommand::SetCustomField {
                key: "roof".into(),
                value: env("tin"),
            })
            .then_expect_error(ContactError::ContactNotRegistered);
    }

    #[test]
    fn removing_a_custom_field_records_it_and_the_count_left() {
        Given::with(())
            .given(vec![registered(None), field_set("roof", "tin", 1)])
            .when(ContactCommand::RemoveCustomField { key: "roof".into() })
            .then_expect_events(vec![ContactEvent::ContactCustomFieldRemoved {
                key: "roof".into(),
                field_count: 0,
            }]);
    }

    #[test]
    fn removing_an_absent_custom_field_records_nothing() {
        Given::with(())
            .given(vec![registered(None)])
            .when(ContactCommand::RemoveCustomField { key: "roof".into() })
            .then_expect_events(vec![]);
    }

    #[test]
    fn removing_a_custom_field_with_an_invalid_key_is_refused() {
        Given::with(())
            .given(vec![registered(None)])
            .when(ContactCommand::RemoveCustomField { key: "9lives".into() })
            .then_expect_error(ContactError::InvalidCustomFieldKey { key: "9lives".into() });
    }

    #[test]
    fn removing_a_custom_field_of_an_unregistered_contact_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(ContactCommand::RemoveCustomField { key: "roof".into() })
            .then_expect_error(ContactError::ContactNotRegistered);
    }

    // OptIn / OptOut

    #[test]
    fn an_opt_in_is_recorded_with_its_source_and_time() {
        Given::with(())
            .given(vec![registered(None)])
            .when(opt_in(10))
            .then_expect_events(vec![ContactEvent::ContactOptedIn {
                source: ConsentSource::WebForm,
                at: at(10),
            }]);
    }

    #[test]
    fn opting_in_again_records_nothing() {
        Given::with(())
            .given(vec![
                registered(None),
                ContactEvent::ContactOptedIn {
                    source: ConsentSource::Import,
                    at: at(9),
                },
            ])
            .when(opt_in(10))
            .then_expect_events(vec![]);
    }

    #[test]
    fn opting_in_an_unregistered_contact_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(opt_in(10))
            .then_expect_error(ContactError::ContactNotRegistered);
    }

    #[test]
    fn an_opt_out_after_an_opt_in_is_recorded_with_its_source_and_time() {
        Given::with(())
            .given(vec![
                registered(None),
                ContactEvent::ContactOptedIn {
                    source: ConsentSource::WebForm,
                    at: at(9),
                },
            ])
            .when(opt_out(10))
            .then_expect_events(vec![ContactEvent::ContactOptedOut {
                source: ConsentSource::WhatsappKeyword,
                at: at(10),
            }]);
    }

    #[test]
    fn opting_out_again_records_nothing() {
        Given::with(())
            .given(vec![
                registered(None),
                ContactEvent::ContactOptedOut {
                    source: ConsentSource::Agent,
                    at: at(9),
                },
            ])
            .when(opt_out(10))
            .then_expect_events(vec![]);
    }

    #[test]
    fn opting_out_an_unregistered_contact_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(opt_out(10))
            .then_expect_error(ContactError::ContactNotRegistered);
    }

    #[test]
    fn consent_is_the_last_effective_opt_command() {
        assert_eq!(state(&[registered(None)]).consent(), Consent::Unknown);
        let contact = state(&[
            registered(None),
            ContactEvent::ContactOptedIn {
                source: ConsentSource::WebForm,
                at: at(9),
            },
            ContactEvent::ContactOptedOut {
                source: ConsentSource::WhatsappKeyword,
                at: at(10),
            },
        ]);
        assert_eq!(
            contact.consent(),
            Consent::OptedOut {
                source: ConsentSource::WhatsappKeyword,
                at: at(10)
            }
        );
        assert_eq!(contact.consent().as_str(), "opted_out");
    }

    #[test]
    fn an_opted_out_contact_receives_nothing_but_the_opt_out_confirmation() {
        let contact = state(&[
            registered(None),
            ContactEvent::ContactOptedOut {
                source: ConsentSource::WhatsappKeyword,
                at: at(10),
            },
        ]);
        assert_eq!(contact.may_receive(OutboundKind::OptOutConfirmation), Ok(()));
        assert_eq!(
            contact.may_receive(OutboundKind::FreeForm),
            Err(ContactError::ContactOptedOut)
        );
        assert_eq!(
            contact.may_receive(OutboundKind::Template),
            Err(ContactError::ContactOptedOut)
        );
    }

    #[test]
    fn a_contact_opted_in_or_never_asked_may_receive_messages() {
        let unknown = state(&[registered(None)]);
        assert_eq!(unknown.may_receive(OutboundKind::Template), Ok(()));
        let opted_in = state(&[
            registered(None),
            ContactEvent::ContactOptedIn {
                source: ConsentSource::WebForm,
                at: at(9),
            },
        ]);
        assert_eq!(opted_in.may_receive(OutboundKind::FreeForm), Ok(()));
    }

    // EraseContact

    #[test]
    fn erasing_a_contact_records_who_asked_and_forgets_its_sealed_fields() {
        Given::with(())
            .given(vec![registered(Some("Tendai")), tagged("vip", 1)])
            .when(erase("usr_1"))
            .then_expect_events(vec![erased()]);
        let contact = state(&[
            registered(Some("Tendai")),
            tagged("vip", 1),
            field_set("roof", "tin", 1),
            erased(),
        ]);
        assert!(contact.is_erased() && !contact.is_registered());
        assert_eq!((contact.phone.clone(), contact.name.clone()), (None, None));
        assert_eq!(contact.tags().count() + contact.custom_field_keys().count(), 0);
        assert_eq!(contact.contact_id(), Some("ct_a"));
    }

    #[test]
    fn a_contact_never_registered_here_can_still_be_erased() {
        Given::with(())
            .given_no_previous_events()
            .when(erase("usr_1"))
            .then_expect_events(vec![erased()]);
    }

    #[test]
    fn erasing_twice_records_nothing() {
        Given::with(())
            .given(vec![registered(None), erased()])
            .when(erase("usr_2"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_erasure_without_a_requester_is_refused() {
        Given::with(())
            .given(vec![registered(None)])
            .when(erase(" "))
            .then_expect_error(ContactError::ErasureNeedsARequester);
    }

    #[test]
    fn every_command_after_erasure_is_refused() {
        let mut commands = every_change();
        commands.push(ContactCommand::RegisterContact(register(None)));
        for command in commands {
            Given::with(())
                .given(vec![registered(None), erased()])
                .when(command)
                .then_expect_error(ContactError::ContactErased);
        }
    }

    #[test]
    fn every_change_to_an_unregistered_contact_is_refused() {
        for command in every_change() {
            Given::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(ContactError::ContactNotRegistered);
        }
    }

    #[test]
    fn an_erased_contact_receives_nothing() {
        let contact = state(&[registered(None), erased()]);
        assert_eq!(
            contact.may_receive(OutboundKind::OptOutConfirmation),
            Err(ContactError::ContactErased)
        );
    }

    #[test]
    fn an_event_after_an_erasure_changes_nothing() {
        let before = state(&[registered(None), erased()]);
        let mut after = before.clone();
        after.apply(tagged("vip", 1));
        after.apply(registered(Some("x")));
        assert_eq!(after, before);
    }

    // Contracts

    #[test]
    fn every_event_type_is_listed_and_named_after_its_variant() {
        let samples = vec![
            registered(None),
            profile_updated(Some(FieldChange::Cleared), None),
            tagged("vip", 1),
            ContactEvent::ContactUntagged {
                tag: "vip".into(),
                tag_count: 0,
            },
            field_set("roof", "tin", 1),
            ContactEvent::ContactCustomFieldRemoved {
                key: "roof".into(),
                field_count: 0,
            },
            ContactEvent::ContactOptedIn {
                source: ConsentSource::Api,
                at: at(9),
            },
            ContactEvent::ContactOptedOut {
                source: ConsentSource::Api,
                at: at(9),
            },
            erased(),
        ];
        let types: Vec<String> = samples.iter().map(DomainEvent::event_type).collect();
        assert_eq!(types, ContactEvent::TYPES);
        assert!(samples.iter().all(|e| e.event_version() == "1.0"));
        for event in samples {
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<ContactEvent>(&json).unwrap(), event);
        }
    }

    #[test]
    fn a_profile_update_stores_only_the_changed_fields() {
        let json = serde_json::to_value(profile_updated(Some(FieldChange::Cleared), None)).unwrap();
        let body = &json["ContactProfileUpdated"];
        assert_eq!(body["name"], serde_json::json!("cleared"));
        assert!(body.get("email").is_none() && body.get("phone").is_none());
    }

    // Properties

    #[derive(Debug, Clone)]
    enum Op {
        Tag(String),
        Untag(String),
        OptIn(ConsentSource, u32),
        OptOut(ConsentSource, u32),
        Erase,
    }

    fn any_source() -> impl Strategy<Value = ConsentSource> {
        prop_oneof![
            Just(ConsentSource::WhatsappKeyword),
            Just(ConsentSource::WebForm),
            Just(ConsentSource::Import),
            Just(ConsentSource::Agent),
            Just(ConsentSource::Api),
        ]
    }

    /// Tags from a pool of 60 (more than the limit), typed with random case and padding, and
    /// now and then an invalid one.
    fn any_raw_tag() -> impl Strategy<Value = String> {
        prop_oneof![
            9 => (0u32..60, any::<bool>(), any::<bool>()).prop_map(|(n, upper, pad)| {
                let t = format!("Tag {n}");
                let t = if upper { t.to_uppercase() } else { t.to_lowercase() };
                if pad { format!("  {t} ") } else { t }
            }),
            1 => Just("bad!".to_string()),
        ]
    }

    fn any_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            40 => any_raw_tag().prop_map(Op::Tag),
            10 => any_raw_tag().prop_map(Op::Untag),
            5 => (any_source(), 0u32..24).prop_map(|(s, h)| Op::OptIn(s, h)),
            5 => (any_source(), 0u32..24).prop_map(|(s, h)| Op::OptOut(s, h)),
            1 => Just(Op::Erase),
        ]
    }

    fn command(op: &Op) -> ContactCommand {
        match op {
            Op::Tag(t) => ContactCommand::TagContact { tag: t.clone() },
            Op::Untag(t) => ContactCommand::UntagContact { tag: t.clone() },
            Op::OptIn(source, h) => ContactCommand::OptIn {
                source: *source,
                at: at(*h),
            },
            Op::OptOut(source, h) => ContactCommand::OptOut {
                source: *source,
                at: at(*h),
            },
            Op::Erase => erase("usr_1"),
        }
    }

    /// The reference model: a set of normalized tags, the last effective opt command, erased.
    #[derive(Default)]
    struct Model {
        tags: BTreeSet<String>,
        consent: Consent,
        erased: bool,
    }

    impl Model {
        /// What the model expects: `Err` for a refusal, `Ok(changed)` otherwise.
        fn step(&mut self, op: &Op) -> Result<bool, ContactError> {
            if self.erased {
                return if matches!(op, Op::Erase) {
                    Ok(false)
                } else {
                    Err(ContactError::ContactErased)
                };
            }
            match op {
                Op::Tag(raw) => {
                    let tag = Tag::parse(raw)?.into_string();
                    if self.tags.contains(&tag) {
                        Ok(false)
                    } else if self.tags.len() == MAX_TAGS {
                        Err(ContactError::TooManyTags)
                    } else {
                        Ok(self.tags.insert(tag))
                    }
                }
                Op::Untag(raw) => Ok(self.tags.remove(Tag::parse(raw)?.as_str())),
                Op::OptIn(source, h) => Ok(!matches!(self.consent, Consent::OptedIn { .. }) && {
                    self.consent = Consent::OptedIn {
                        source: *source,
                        at: at(*h),
                    };
                    true
                }),
                Op::OptOut(source, h) => Ok(!self.consent.is_opted_out() && {
                    self.consent = Consent::OptedOut {
                        source: *source,
                        at: at(*h),
                    };
                    true
                }),
                Op::Erase => {
                    self.erased = true;
                    self.tags.clear();
                    Ok(true)
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn tags_consent_and_erasure_hold_after_every_command(ops in proptest::collection::vec(any_op(), 0..200)) {
            let mut history = vec![registered(None)];
            let mut contact = state(&history);
            let mut model = Model::default();
            let mut at_erasure: Option<Contact> = None;
            for op in &ops {
                let result = Given::with(()).given(history.clone()).when(command(op)).inspect_result();
                let expected = model.step(op);
                match (&result, &expected) {
                    (Ok(events), Ok(changed)) => prop_assert_eq!(events.len(), usize::from(*changed), "{:?}", op),
                    (Err(got), Err(want)) => prop_assert_eq!(got, want),
                    _ => prop_assert!(false, "{:?}: got {:?}, model {:?}", op, result, expected),
                }
                for event in result.unwrap_or_default() {
                    contact.apply(event.clone());
                    history.push(event);
                }
                let tags: Vec<&str> = contact.tags().collect();
                prop_assert!(tags.len() <= MAX_TAGS);
                prop_assert!(tags.iter().zip(tags.iter().skip(1)).all(|(a, b)| a < b), "unique and ordered");
                prop_assert_eq!(tags, model.tags.iter().map(String::as_str).collect::<Vec<_>>());
                prop_assert_eq!(contact.consent(), model.consent);
                prop_assert_eq!(contact.is_erased(), model.erased);
                match &at_erasure {
                    Some(frozen) => prop_assert_eq!(&contact, frozen),
                    None if contact.is_erased() => at_erasure = Some(contact.clone()),
                    None => {}
                }
            }
        }
    }
}
