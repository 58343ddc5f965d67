//! The `Conversation` aggregate: one WhatsApp thread between a tenant and one contact.
//!
//! Stream id: `<tenant>:<contact id>` (the contact id is a keyed hash, see [`crate::pii`]), so
//! a contact's messages always land in one stream and the id reveals nothing.
//!
//! Rules held here:
//! - an inbound message is stored once, whatever how often WhatsApp delivers it (its WhatsApp
//!   message id is the natural dedupe key);
//! - each inbound message opens or extends the 24-hour customer service window from the
//!   provider's timestamp;
//! - a message on a resolved or closed conversation reopens it;
//! - delivery statuses only move forward (sent → delivered → read), failed is terminal, and a
//!   duplicate or late status changes nothing; a failure with WhatsApp's error 131047 is
//!   recorded as "window closed";
//! - statuses move `open ↔ pending`, `open | pending → resolved`, `resolved → open | closed`
//!   ([`ConversationStatus::may_move_to`]); closed is final for people, only an inbound message
//!   reopens it;
//! - assignment, tags, internal notes (sealed) and handover requests are idempotent: a repeat
//!   records nothing; a handover request stays pending until someone is assigned;
//! - outbound messages are queued under the caller's idempotency key (a repeated key records
//!   nothing); a free-form message (a text, a media or an interactive message, [`rich`]) is
//!   refused outside the 24-hour window
//!   ([`ConversationError::OutsideServiceWindow`]), an approved template is not (one not
//!   approved is refused, [`ConversationError::TemplateNotApproved`]); an opted-out contact
//!   receives nothing but an opt-out confirmation ([`ConversationError::ContactOptedOut`]). The
//!   command carries the contact's consent and the template's approval as the write side read
//!   them (the Contact and Template aggregates own them; the conversation only enforces them);
//! - an outbound message has one outcome, sent or failed; a repeated outcome records nothing.

mod aggregate;
mod commands;
mod error;
mod events;
pub mod rich;
mod values;

pub use aggregate::Conversation;
pub use commands::{
    ConversationCommand, InboundMessage, OutboundFailed, OutboundRequest, OutboundRetry, OutboundSent, StatusUpdate,
};
pub use error::ConversationError;
pub use events::ConversationEvent;
pub use values::{
    Consent, ConversationStatus, DeliveryStatus, HeaderParameter, MessageKind, OutboundBody, ProviderError,
    SERVICE_WINDOW_HOURS, WINDOW_CLOSED_ERROR,
};
