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
//!   duplicate or late status changes nothing.

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::Conversation;
pub use commands::{ConversationCommand, InboundMessage, StatusUpdate};
pub use error::ConversationError;
pub use events::ConversationEvent;
pub use values::{ConversationStatus, DeliveryStatus, MessageKind, ProviderError, SERVICE_WINDOW_HOURS};
