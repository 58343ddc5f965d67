//! Commands of the `Contact` aggregate. Personal fields arrive sealed ([`Envelope`]) under
//! the contact's data key; the aggregate never sees plaintext.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::{present, ConsentSource, ContactHandleKind, ContactSource};
use crate::pii::Envelope;

/// A request to change a contact.
// Events and commands are moved once and serialized; boxing the large variant would buy
// nothing and change nothing on the wire.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ContactCommand {
    /// Register a contact; a repeat registers nothing but the facts that were missing.
    RegisterContact(RegisterContact),
    /// Set, clear or leave the name and email.
    UpdateContactProfile(UpdateContactProfile),
    /// Add a tag (normalized; a tag already there changes nothing).
    TagContact { tag: String },
    /// Remove a tag (a tag not there changes nothing).
    UntagContact { tag: String },
    /// Set a custom field's value (sealed: values may be personal).
    SetCustomField { key: String, value: Envelope },
    /// Remove a custom field (a field not there changes nothing).
    RemoveCustomField { key: String },
    /// Record an opt-in (repeating the current state changes nothing).
    OptIn { source: ConsentSource, at: DateTime<Utc> },
    /// Record an opt-out (repeating the current state changes nothing).
    OptOut { source: ConsentSource, at: DateTime<Utc> },
    /// Erase the contact (GDPR); the write side then destroys the contact's data key.
    EraseContact(EraseContact),
}

/// A contact as first seen (an inbound message, an import, a lead, a call, a user).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RegisterContact {
    /// The keyed-hash id the caller made from `handle` ([`crate::pii::IdKey::contact_id`]).
    pub contact_id: String,
    /// What the id was made from; that field must be present.
    pub handle: ContactHandleKind,
    /// The E.164 number (sealed).
    pub phone: Option<Envelope>,
    /// WhatsApp's business-scoped user id (sealed), when the number is withheld.
    pub provider_user_id: Option<Envelope>,
    /// The name (sealed), e.g. WhatsApp's profile name.
    pub name: Option<Envelope>,
    pub source: ContactSource,
    pub at: DateTime<Utc>,
}

/// Profile changes: for each field, absent = leave, `None` = clear, `Some` = set. Sealed
/// values are compared as ciphertext: the same envelope again changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UpdateContactProfile {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub name: Option<Option<Envelope>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub email: Option<Option<Envelope>>,
    pub at: DateTime<Utc>,
}

/// A request to be forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EraseContact {
    /// Who asked: a user id, an API key id, or `contact` when the person asked themselves.
    pub requested_by: String,
    pub at: DateTime<Utc>,
}
