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
    /// Only a conversation that exists (a contact wrote first) can be changed or written to.
    #[error("no such conversation")]
    UnknownConversation,
    /// Free-form messages only inside the 24-hour customer service window; outside it, only a
    /// template.
    #[error("the 24-hour customer service window is closed{}; send an approved template", closed_since(.closed_at))]
    OutsideServiceWindow {
        closed_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// An opted-out contact receives nothing but the confirmation of the opt-out.
    #[error("the contact opted out; only an opt-out confirmation may be sent")]
    ContactOptedOut,
    /// An outbound message needs an idempotency key.
    #[error("an idempotency key is required")]
    MissingIdempotencyKey,
    /// A template is named by name and language.
    #[error("a template needs a name and a language")]
    IncompleteTemplate,
    /// Only an approved template may be sent.
    #[error("template {name} ({language}) is not approved")]
    TemplateNotApproved { name: String, language: String },
    /// An outcome names a message that was never queued.
    #[error("no outbound message was queued with key {idempotency_key}")]
    UnknownOutboundMessage { idempotency_key: String },
    /// Status moves follow `open ↔ pending → resolved → closed` (see `ConversationStatus::may_move_to`).
    #[error("a conversation cannot move from {from} to {to}")]
    StatusMoveNotAllowed { from: &'static str, to: &'static str },
    /// A tag, agent or note id must not be blank.
    #[error("{field} must not be blank")]
    Blank { field: &'static str },
    /// Only a message without an outcome is sent again.
    #[error("the message queued with key {idempotency_key} was already {outcome}; it is not sent again")]
    OutboundMessageSettled {
        idempotency_key: String,
        outcome: &'static str,
    },
    /// Only a message the sender handed to an operator (it may have reached WhatsApp) is sent
    /// again on an operator's word; one still queued or being sent is the sender's.
    #[error("the message queued with key {idempotency_key} is {state}, not waiting for an operator")]
    NotAwaitingOperator { idempotency_key: String, state: String },
    /// A media message names its file once: by a link or by an uploaded file's media ref.
    #[error("a media message needs exactly one of a link and an uploaded file's media ref")]
    MediaSource,
    /// WhatsApp downloads linked media over http or https.
    #[error("a media link is an http:// or https:// URL with a host, without spaces, at most 2048 characters")]
    BadMediaLink,
    /// Captions go on images, videos and documents only.
    #[error("WhatsApp shows no caption on {kind} messages")]
    CaptionNotAllowed { kind: &'static str },
    /// A file name goes on documents only.
    #[error("only documents carry a file name, not {kind} messages")]
    FilenameNotAllowed { kind: &'static str },
    /// WhatsApp's length limits on the texts of a message.
    #[error("the {field} is longer than WhatsApp's {max} characters")]
    TextTooLong { field: &'static str, max: usize },
    /// Each kind of media takes the MIME types WhatsApp accepts for it.
    #[error("WhatsApp does not accept {mime_type} as {kind}")]
    MediaTypeNotSupported { kind: &'static str, mime_type: String },
    /// Each kind of media has WhatsApp's size limit.
    #[error("a {kind} file is at most {max_bytes} bytes on WhatsApp")]
    MediaTooLarge { kind: &'static str, max_bytes: u64 },
    /// The uploaded file a message names must be one uploaded for this conversation.
    #[error("no file {media_ref} was uploaded for this conversation")]
    UnknownMedia { media_ref: String },
    /// An interactive message offers at least one choice.
    #[error("an interactive message needs at least one button or list row")]
    NoChoices,
    /// WhatsApp shows at most three reply buttons.
    #[error("a message has at most {max} reply buttons")]
    TooManyButtons { max: usize },
    /// WhatsApp lists at most ten rows (in at most ten sections).
    #[error("a list message has at most {max} rows and {max} sections")]
    TooManyListRows { max: usize },
    /// The customer's answer names the choice by its id, and they tell choices by their title.
    #[error("{what} {value:?} is used twice")]
    DuplicateChoice { what: &'static str, value: String },
}

impl ConversationError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingMessageId => "MISSING_MESSAGE_ID",
            Self::MessageFromAnotherContact { .. } => "MESSAGE_FROM_ANOTHER_CONTACT",
            Self::UnknownConversation => "UNKNOWN_CONVERSATION",
            Self::OutsideServiceWindow { .. } => "OUTSIDE_SERVICE_WINDOW",
            Self::ContactOptedOut => "CONTACT_OPTED_OUT",
            Self::MissingIdempotencyKey => "MISSING_IDEMPOTENCY_KEY",
            Self::IncompleteTemplate => "INCOMPLETE_TEMPLATE",
            Self::TemplateNotApproved { .. } => "TEMPLATE_NOT_APPROVED",
            Self::UnknownOutboundMessage { .. } => "UNKNOWN_OUTBOUND_MESSAGE",
            Self::StatusMoveNotAllowed { .. } => "STATUS_MOVE_NOT_ALLOWED",
            Self::Blank { .. } => "BLANK_FIELD",
            Self::OutboundMessageSettled { .. } => "OUTBOUND_MESSAGE_SETTLED",
            Self::NotAwaitingOperator { .. } => "NOT_AWAITING_OPERATOR",
            Self::MediaSource => "MEDIA_SOURCE",
            Self::BadMediaLink => "BAD_MEDIA_LINK",
            Self::CaptionNotAllowed { .. } => "CAPTION_NOT_ALLOWED",
            Self::FilenameNotAllowed { .. } => "FILENAME_NOT_ALLOWED",
            Self::TextTooLong { .. } => "TEXT_TOO_LONG",
            Self::MediaTypeNotSupported { .. } => "MEDIA_TYPE_NOT_SUPPORTED",
            Self::MediaTooLarge { .. } => "MEDIA_TOO_LARGE",
            Self::UnknownMedia { .. } => "UNKNOWN_MEDIA",
            Self::NoChoices => "NO_CHOICES",
            Self::TooManyButtons { .. } => "TOO_MANY_BUTTONS",
            Self::TooManyListRows { .. } => "TOO_MANY_LIST_ROWS",
            Self::DuplicateChoice { .. } => "DUPLICATE_CHOICE",
        }
    }
}

/// When the window closed, in words (empty when the contact never wrote).
fn closed_since(closed_at: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    closed_at
        .map(|at| format!(" (since {})", at.format("%Y-%m-%d %H:%M UTC")))
        .unwrap_or_default()
}
