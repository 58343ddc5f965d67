//! Events of the `Contact` aggregate. Names are contracts: never renamed once stored.
//! Personal fields are envelopes; tags and custom field keys are the tenant's vocabulary.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::{ConsentSource, ContactHandleKind, ContactSource, FieldChange};
use crate::pii::Envelope;

/// Facts about a contact.
// Events and commands are moved once and serialized; boxing the large variant would buy
// nothing and change nothing on the wire.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ContactEvent {
    /// A contact was registered.
    ContactRegistered {
        contact_id: String,
        handle: ContactHandleKind,
        phone: Option<Envelope>,
        provider_user_id: Option<Envelope>,
        name: Option<Envelope>,
        source: ContactSource,
        at: DateTime<Utc>,
    },
    /// The profile changed; only the changed fields are present. `phone` and
    /// `provider_user_id` are only ever filled in (by a later registration), never cleared.
    ContactProfileUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone: Option<Envelope>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider_user_id: Option<Envelope>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<FieldChange<Envelope>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<FieldChange<Envelope>>,
        at: DateTime<Utc>,
    },
    /// A tag (normalized) was added; `tag_count` is the number of tags after it.
    ContactTagged { tag: String, tag_count: usize },
    /// A tag was removed; `tag_count` is the number of tags after it.
    ContactUntagged { tag: String, tag_count: usize },
    /// A custom field was set; `field_count` is the number of fields after it.
    ContactCustomFieldSet {
        key: String,
        value: Envelope,
        field_count: usize,
    },
    /// A custom field was removed; `field_count` is the number of fields after it.
    ContactCustomFieldRemoved { key: String, field_count: usize },
    /// The contact opted in.
    ContactOptedIn { source: ConsentSource, at: DateTime<Utc> },
    /// The contact opted out: from now on they receive nothing but the confirmation.
    ContactOptedOut { source: ConsentSource, at: DateTime<Utc> },
    /// The contact was erased (GDPR); the write side destroys the data key, which turns every
    /// envelope of this contact into noise. Nothing follows.
    ContactErased { requested_by: String, at: DateTime<Utc> },
}

impl ContactEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "ContactRegistered",
        "ContactProfileUpdated",
        "ContactTagged",
        "ContactUntagged",
        "ContactCustomFieldSet",
        "ContactCustomFieldRemoved",
        "ContactOptedIn",
        "ContactOptedOut",
        "ContactErased",
    ];
}

impl DomainEvent for ContactEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ContactRegistered { .. } => "ContactRegistered",
            Self::ContactProfileUpdated { .. } => "ContactProfileUpdated",
            Self::ContactTagged { .. } => "ContactTagged",
            Self::ContactUntagged { .. } => "ContactUntagged",
            Self::ContactCustomFieldSet { .. } => "ContactCustomFieldSet",
            Self::ContactCustomFieldRemoved { .. } => "ContactCustomFieldRemoved",
            Self::ContactOptedIn { .. } => "ContactOptedIn",
            Self::ContactOptedOut { .. } => "ContactOptedOut",
            Self::ContactErased { .. } => "ContactErased",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
