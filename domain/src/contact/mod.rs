//! The `Contact` aggregate: a person a tenant reaches on WhatsApp, with profile, tags, custom
//! fields, consent and erasure (DOMAIN.md, "Contacts and conversations").
//!
//! Stream id: `<tenant>:<contact id>`, aggregate type `Contact`. The contact id is a keyed hash
//! the caller makes ([`crate::pii::IdKey::contact_id`]) of the E.164 number, or of WhatsApp's
//! business-scoped user id when the number is withheld; the domain never derives it. Phone,
//! provider user id, name, email and custom field values arrive and are stored only as
//! [`crate::pii::Envelope`]s.
//!
//! Rules held here:
//! - a contact is registered with the handle its id was made from (phone or provider user id);
//!   registering again changes nothing, except to fill in facts that were missing (a name, a
//!   number), which is a `ContactProfileUpdated`; the first source and handle stand;
//! - profile changes set, clear or leave the name and email, and record only what changed
//!   (sealed values are compared as ciphertext);
//! - tags are normalized (trimmed, lowercase, spaces folded; 1 to 50 letters, digits, `-`, `_`
//!   and spaces), unique, and at most 50; tagging twice or removing an absent tag changes
//!   nothing;
//! - custom field keys are `^[a-z][a-z0-9_]{0,39}$`, at most 100 fields; setting the same
//!   sealed value again or removing an absent field changes nothing;
//! - consent is the last effective opt-in or opt-out, with its source and time; repeating the
//!   current state changes nothing; an opted-out contact receives nothing but the opt-out
//!   confirmation ([`Contact::may_receive`]);
//! - erasure (GDPR) is always possible, even for a contact never registered here; after it the
//!   write side destroys the data key, every command but a repeated erasure (which changes
//!   nothing) is refused, and the contact receives nothing;
//! - every command but registration and erasure needs a registered contact.

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::Contact;
pub use commands::{ContactCommand, EraseContact, RegisterContact, UpdateContactProfile};
pub use error::ContactError;
pub use events::ContactEvent;
pub use values::{
    Consent, ConsentSource, ContactHandleKind, ContactSource, CustomFieldKey, FieldChange, OutboundKind, Tag,
    MAX_CUSTOM_FIELDS, MAX_CUSTOM_FIELD_KEY_CHARS, MAX_TAGS, MAX_TAG_CHARS,
};
