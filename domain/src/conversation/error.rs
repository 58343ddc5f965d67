//! Refusals of the `Conversation` aggregate, named after the rule they enforce.

/// Why a conversation command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    /// A message or status must name the WhatsApp message it is about.
    #[error("a WhatsApp message id is required")]
    MissingMessageId,
    /// A conversation is with one contact; a message or status of another contact is refused.
    #[error("message {message_ref} belongs to another contact than this conversation's")]
    MessageFromAnotherContact { message_ref: String },
}

impl ConversationError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingMessageId => "MISSING_MESSAGE_ID",
            Self::MessageFromAnotherContact { .. } => "MESSAGE_FROM_ANOTHER_CONTACT",
        }
    }
}
