//! Inbound webhooks (DESIGN.md, "Commands"): verified on the raw bytes, written to the inbox
//! table keyed by the provider's dedupe key, answered 2xx at once, then processed; an inbox row
//! is marked done only after its events are appended, so a crash means a retry, never a loss.
//!
//! - [`whatsapp`]: the WhatsApp Cloud API: signature, payload parsing into inbox items.
//! - [`forms`]: website lead submissions (web form, chatbot, calculator): intake keys and
//!   parsing into lead captures.
//! - [`inbox`]: storing items, claiming and processing them into commands.
//! - [`telephony`]: Twilio-style call-status webhooks: signature check and parsing.

pub mod forms;
pub mod inbox;
pub mod telephony;
pub mod whatsapp;
