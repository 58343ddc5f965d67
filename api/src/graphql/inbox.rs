//! The conversation view and the inbox's mutations: `conversation(id)` with its working state,
//! internal notes and messages (a Relay connection, oldest first, each outbound message with
//! its delivery status timeline), and `sendMessage`, `sendTemplate`, `sendMedia`, `sendInteractive`,
//! `markConversationRead`, `assignConversation`,
//! `setConversationStatus`, `tagConversation`, `untagConversation`, `addNote`,
//! `requestHandover`.
//!
//! Reading: owner, admin, agent, auditor (`Permission::ReadInbox`). Writing: owner, admin, agent;
//! anyone else gets `FORBIDDEN`. A conversation's id is its contact's id (its stream's local
//! id). Mutations answer with the conversation id and the stream's last log position after the
//! command (`position`), which a client can wait for on the events subscription; the read
//! models catch up a moment later. A send is queued, then sent by the outbox worker.
//!
//! Sends are metered (`chronicle_commands::metering`, feature `message`): a tenant with a price
//! pays from its main wallet before the message is queued; an empty wallet answers
//! `INSUFFICIENT_BALANCE` (with `required` and `available`) and nothing is queued; a send the
//! conversation refuses is refunded.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chronicle_commands::outbound::{require_conversation, send_metered, Outgoing};
use chronicle_domain::conversation::rich;
use chronicle_domain::conversation::{ConversationCommand, ConversationStatus as DomainStatus};
use chronicle_domain::media::MediaKind;
use chronicle_projections::messages::{self as read, ConversationDetail, MessageRow, TimelineEntry};
use chrono::{DateTime, Utc};
use rand::rngs::OsRng;

use super::conversations::ConversationStatus;
use super::receipt::{receipt, Receipt};
use super::{allowed, caller, commands, keys, metadata, page_size, pool};
use crate::auth::Caller;
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

fn reader<'a>(ctx: &'a Context<'_>) -> Result<&'a Caller, ApiError> {
    let caller = caller(ctx)?;
    if caller.may(Permission::ReadInbox) {
        Ok(caller)
    } else {
        Err(ApiError::Forbidden(format!(
            "the {} role cannot read the inbox",
            caller.role.as_str()
        )))
    }
}

fn writer<'a>(ctx: &'a Context<'_>) -> Result<&'a Caller, ApiError> {
    let caller = caller(ctx)?;
    if caller.may(Permission::WorkInbox) {
        Ok(caller)
    } else {
        Err(ApiError::Forbidden(format!(
            "the {} role cannot work conversations",
            caller.role.as_str()
        )))
    }
}

/// A conversation id is a contact id: `ct_` and hex digits (anything else names nothing).
pub(crate) fn valid_id(id: &str) -> Result<&str, ApiError> {
    let id = id.trim();
    let valid = id.len() <= 64
        && id.strip_prefix("ct_").is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if valid {
        Ok(id)
    } else {
        Err(ApiError::bad_request(
            "BAD_CONVERSATION_ID",
            format!("{id:?} is not a conversation id"),
        ))
    }
}

fn to_domain(status: ConversationStatus) -> DomainStatus {
    match status {
        ConversationStatus::Open => DomainStatus::Open,
        ConversationStatus::Pending => DomainStatus::Pending,
        ConversationStatus::Resolved => DomainStatus::Resolved,
        ConversationStatus::Closed => DomainStatus::Closed,
    }
}

fn from_stored(status: &str) -> ConversationStatus {
    match DomainStatus::parse(status) {
        Some(DomainStatus::Pending) => ConversationStatus::Pending,
        Some(DomainStatus::Resolved) => ConversationStatus::Resolved,
        Some(DomainStatus::Closed) => ConversationStatus::Closed,
        _ => ConversationStatus::Open,
    }
}

/// Which way a message went.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum MessageDirection {
    /// Sent by the contact to the tenant.
    Inbound,
    /// Sent by the tenant to the contact (queued by a user or an automation).
    Outbound,
}

/// One delivery status a message reached, with the provider's timestamp.
#[derive(SimpleObject, Clone)]
pub struct MessageStatusEntry {
    /// sent, delivered, read or failed.
    pub status: String,
    /// The provider's timestamp of the status (RFC 3339).
    pub at: DateTime<Utc>,
    /// The provider's error code of a failed status; null otherwise.
    pub error_code: Option<i64>,
    /// The provider's error title of a failed status; null otherwise.
    pub error_title: Option<String>,
    /// The failure was WhatsApp's 131047: the 24-hour window had closed.
    pub window_closed: bool,
}

impl From<TimelineEntry> for MessageStatusEntry {
    fn from(e: TimelineEntry) -> Self {
        Self {
            status: e.status,
            at: e.at,
            error_code: e.error_code,
            error_title: e.error_title,
            window_closed: e.window_closed,
        }
    }
}

/// A message of a conversation.
#[derive(SimpleObject)]
pub struct ThreadMessage {
    /// `in:<message ref>` or `out:<idempotency key>`.
    pub id: String,
    /// Which way the message went.
    pub direction: MessageDirection,
    /// The keyed hash of the provider's message id (outbound: once sent).
    pub message_ref: Option<String>,
    /// The idempotency key an outbound message was queued under; null for inbound messages.
    pub idempotency_key: Option<String>,
    /// inbound: text, image, …; outbound: free_form, template, image, audio, video, document,
    /// sticker (`media`), interactive (`interactive`), or external (a message sent outside
    /// Chronicle on the tenant's number, e.g. from the WhatsApp Business app: Chronicle knows
    /// only its delivery statuses, so it has no content; decision 0020).
    pub kind: String,
    /// The content as a person reads it: an inbound message's text (a text's body, a media
    /// message's caption, a document's file name, a location's name, a reply's title, a
    /// reaction's emoji; null when the kind carries none), an outbound message's text, a media
    /// message's caption, an interactive message's body, or a template's parameters (JSON
    /// array).
    pub content: Option<String>,
    /// The template's name of an outbound template message; null otherwise.
    pub template_name: Option<String>,
    /// The template's language code (e.g. `en_US`) of an outbound template message; null
    /// otherwise.
    pub template_language: Option<String>,
    /// The provider's time (inbound) or the time it was queued (outbound).
    pub at: DateTime<Utc>,
    /// inbound: received; outbound: queued, retrying (the sender's last try was not accepted
    /// for now: see `sendTries`, `lastSendError`, `nextTryAt`), needs_operator (the sender
    /// cannot tell whether it reached WhatsApp: `resendMessage` sends it again), sent or failed
    /// (the sender's outcome).
    pub state: String,
    /// The furthest delivery status (outbound), or the state when none arrived yet.
    pub status: String,
    /// When the provider accepted an outbound message (RFC 3339); null until then and for
    /// inbound messages.
    pub sent_at: Option<DateTime<Utc>>,
    /// Who queued an outbound message: a user id, or an actor name such as `system:<component>`
    /// for automations; null for inbound messages.
    pub requested_by: Option<String>,
    /// The provider's (or sender's) error of a failed send.
    pub error_code: Option<i64>,
    /// The provider's (or sender's) error title of a failed send; null otherwise.
    pub error_title: Option<String>,
    /// For a failed send: whether sending again later might succeed (nothing resends
    /// automatically); null otherwise.
    pub retryable: Option<bool>,
    /// The delivery statuses reached, in the order sent, delivered, read, failed.
    pub status_timeline: Vec<MessageStatusEntry>,
    /// How many times the sender tried an outbound message without an answer it could settle
    /// (counted from 1 again after a resend); 0 for inbound messages.
    pub send_tries: i32,
    /// The error of the sender's last try (`<code>: <title>`), or why it left the message for an
    /// operator; null otherwise.
    pub last_send_error: Option<String>,
    /// When the sender tries again (state `retrying`); null otherwise.
    pub next_try_at: Option<DateTime<Utc>>,
    /// The file of an outbound media message (`sendMedia`); null otherwise (an inbound media
    /// message's file is `media(messageId)`).
    pub media: Option<OutboundMediaFile>,
    /// The buttons or list of an outbound interactive message (`sendInteractive`); null
    /// otherwise.
    pub interactive: Option<InteractiveMessage>,
}

/// The file of an outbound media message.
#[derive(SimpleObject, Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundMediaFile {
    /// image, audio, video, document or sticker.
    pub kind: String,
    /// The upload's media ref (`GET /media/{mediaRef}` serves it) when the file was uploaded
    /// through Chronicle; null when sent by link.
    pub media_ref: Option<String>,
    /// The link WhatsApp downloads the file from; null when uploaded.
    pub link: Option<String>,
    /// A document's file name as the customer sees it; null otherwise.
    pub filename: Option<String>,
}

/// An interactive message as sent: its texts and the choices it offered.
#[derive(SimpleObject, Debug, Clone)]
pub struct InteractiveMessage {
    /// `BUTTON` (reply buttons) or `LIST`.
    pub kind: InteractiveKind,
    /// The header text; null when none.
    pub header: Option<String>,
    /// The body text.
    pub body: String,
    /// The footer text; null when none.
    pub footer: Option<String>,
    /// The reply buttons (one to three; empty for a list).
    pub buttons: Vec<ReplyButton>,
    /// The label of the button that opens a list; null for reply buttons.
    pub list_button: Option<String>,
    /// The list's sections (empty for reply buttons).
    pub sections: Vec<ListSection>,
}

/// Whether an interactive message offers reply buttons or a list.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum InteractiveKind {
    /// One to three reply buttons.
    Button,
    /// A list of up to ten rows.
    List,
}

/// A reply button.
#[derive(SimpleObject, InputObject, Debug, Clone)]
#[graphql(input_name = "ReplyButtonInput")]
pub struct ReplyButton {
    /// The id WhatsApp sends back when the customer taps it: 1 to 256 characters, unique in
    /// the message.
    pub id: String,
    /// What the customer sees: 1 to 20 characters, unique in the message.
    pub title: String,
}

/// A row of a list message.
#[derive(SimpleObject, InputObject, Debug, Clone)]
#[graphql(input_name = "ListRowInput")]
pub struct ListRow {
    /// The id WhatsApp sends back when the customer picks it: 1 to 200 characters, unique in
    /// the list.
    pub id: String,
    /// What the customer sees: 1 to 24 characters.
    pub title: String,
    /// A line under the title, at most 72 characters.
    pub description: Option<String>,
}

/// A section of a list message.
#[derive(SimpleObject, InputObject, Debug, Clone)]
#[graphql(input_name = "ListSectionInput")]
pub struct ListSection {
    /// The section's title, at most 24 characters: required when the list has several
    /// sections.
    pub title: Option<String>,
    /// The section's rows (at least one; at most ten in the whole list).
    pub rows: Vec<ListRow>,
}

/// A list message's choices.
#[derive(InputObject, Debug, Clone)]
pub struct ListInput {
    /// The label of the button that opens the list: 1 to 20 characters.
    pub button: String,
    /// One to ten sections, with at most ten rows in all.
    pub sections: Vec<ListSection>,
}

/// The kind of an outbound media message.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum OutboundMediaKind {
    /// JPEG or PNG, at most 5 MiB; with a caption.
    Image,
    /// AAC, AMR, MP3, M4A or OGG (Opus), at most 16 MiB; no caption.
    Audio,
    /// MP4 or 3GP, at most 16 MiB; with a caption.
    Video,
    /// Text, PDF or Office, at most 100 MiB (16 MiB uploaded); with a caption and a file name.
    Document,
    /// WebP, at most 500 KiB; no caption.
    Sticker,
}

impl From<OutboundMediaKind> for MediaKind {
    fn from(kind: OutboundMediaKind) -> Self {
        match kind {
            OutboundMediaKind::Image => MediaKind::Image,
            OutboundMediaKind::Audio => MediaKind::Audio,
            OutboundMediaKind::Video => MediaKind::Video,
            OutboundMediaKind::Document => MediaKind::Document,
            OutboundMediaKind::Sticker => MediaKind::Sticker,
        }
    }
}

impl InteractiveMessage {
    fn from_domain(message: rich::Interactive) -> Self {
        let (kind, buttons, list_button, sections) = match message.choices {
            rich::Choices::Buttons { buttons } => (
                InteractiveKind::Button,
                buttons
                    .into_iter()
                    .map(|b| ReplyButton {
                        id: b.id,
                        title: b.title,
                    })
                    .collect(),
                None,
                Vec::new(),
            ),
            rich::Choices::List { button, sections } => (
                InteractiveKind::List,
                Vec::new(),
                Some(button),
                sections
                    .into_iter()
                    .map(|s| ListSection {
                        title: s.title,
                        rows: s
                            .rows
                            .into_iter()
                            .map(|r| ListRow {
                                id: r.id,
                                title: r.title,
                                description: r.description,
                            })
                            .collect(),
                    })
                    .collect(),
            ),
        };
        Self {
            kind,
            header: message.header,
            body: message.body,
            footer: message.footer,
            buttons,
            list_button,
            sections,
        }
    }
}

impl ThreadMessage {
    fn new(row: MessageRow, timeline: Vec<MessageStatusEntry>) -> Self {
        let status = timeline
            .iter()
            .find(|e| e.status == "failed")
            .or_else(|| timeline.last())
            .map(|e| e.status.clone())
            .unwrap_or_else(|| row.state.clone());
        let outbound = row.direction == "outbound";
        let (media, interactive) = match (&row.attachment, row.kind.as_str()) {
            (Some(a), "interactive") if outbound => (
                None,
                serde_json::from_value::<rich::Interactive>(a.clone())
                    .ok()
                    .map(InteractiveMessage::from_domain),
            ),
            (Some(a), _) if outbound => (serde_json::from_value::<OutboundMediaFile>(a.clone()).ok(), None),
            _ => (None, None),
        };
        Self {
            id: row.message_id,
            direction: if row.direction == "inbound" {
                MessageDirection::Inbound
            } else {
                MessageDirection::Outbound
            },
            message_ref: row.message_ref,
            idempotency_key: row.idempotency_key,
            kind: row.kind,
            content: row.content,
            template_name: row.template_name,
            template_language: row.template_language,
            at: row.at,
            state: row.state,
            status,
            sent_at: row.sent_at,
            requested_by: row.requested_by,
            error_code: row.error_code,
            error_title: row.error_title,
            retryable: row.retryable,
            send_tries: row.send_tries,
            last_send_error: row.last_send_error,
            next_try_at: row.next_try_at,
            status_timeline: timeline,
            media,
            interactive,
        }
    }
}

/// An internal note.
#[derive(SimpleObject)]
pub struct ConversationNote {
    /// The note's id: the `noteId` given to `addNote`, or a generated UUID.
    pub id: String,
    /// The note's text; null when it can no longer be read (the contact's data was erased).
    pub text: Option<String>,
    /// The user id of the note's author.
    pub author: String,
    /// When the note was added (RFC 3339).
    pub at: DateTime<Utc>,
}

/// One conversation with its working state, notes and messages.
pub struct ConversationThread {
    detail: ConversationDetail,
}

/// One conversation with its working state, notes and messages.
#[Object]
impl ConversationThread {
    /// The conversation's id, which is its contact's id (`ct_` and 32 hex digits).
    async fn id(&self) -> &str {
        &self.detail.conversation_id
    }

    /// The contact's id (the same as `id`).
    async fn contact_id(&self) -> &str {
        &self.detail.contact_id
    }

    /// The conversation's working status.
    async fn status(&self) -> ConversationStatus {
        from_stored(&self.detail.status)
    }

    /// The assigned agent's user id.
    async fn assignee(&self) -> Option<&str> {
        self.detail.assignee.as_deref()
    }

    /// The conversation's tags (trimmed, lower-case), in the order they were added.
    async fn tags(&self) -> &[String] {
        &self.detail.tags
    }

    /// When the 24-hour customer service window closes.
    async fn window_expires_at(&self) -> Option<DateTime<Utc>> {
        self.detail.window_expires_at
    }

    /// Whether a free-form message may be sent now (inside the window); otherwise only a
    /// template.
    async fn free_form_allowed(&self) -> bool {
        self.detail.window_expires_at.is_some_and(|t| t > Utc::now())
    }

    /// When a human handover was requested, while no one has been assigned since.
    async fn handover_requested_at(&self) -> Option<DateTime<Utc>> {
        self.detail.handover_requested_at
    }

    /// The reason given with the pending handover request; null when none was given, no
    /// handover is pending, or the contact's data was erased.
    async fn handover_reason(&self) -> Option<&str> {
        self.detail.handover_reason.as_deref()
    }

    /// Internal notes, oldest first (never sent to the contact).
    async fn notes(&self) -> Vec<ConversationNote> {
        self.detail
            .notes
            .iter()
            .map(|n| ConversationNote {
                id: n.note_id.clone(),
                text: n.text.clone(),
                author: n.author.clone(),
                at: n.at,
            })
            .collect()
    }

    /// The messages, oldest first.
    async fn messages(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, desc = "Page size: 1 to 200, default 50 (`PAGE_TOO_LARGE` above 200).")] first: i32,
        #[graphql(
            desc = "The cursor of the last message of the previous page (`pageInfo.endCursor`); null for the first page. A malformed cursor is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, ThreadMessage>> {
        let caller = reader(ctx).gql()?;
        let first = page_size(first, 200).gql()?;
        let pool = pool(ctx).gql()?;
        let page = read::messages(
            pool,
            &caller.tenant,
            &self.detail.conversation_id,
            first,
            after.as_deref(),
        )
        .await
        .map_err(ApiError::from)
        .gql()?
        .map_err(|e| ApiError::bad_request("BAD_CURSOR", e.to_string()))
        .gql()?;
        let refs: Vec<String> = page.rows.iter().filter_map(|(_, r)| r.message_ref.clone()).collect();
        let mut timelines = read::timelines(pool, &caller.tenant, &refs)
            .await
            .map_err(ApiError::from)
            .gql()?;
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        connection.edges.extend(page.rows.into_iter().map(|(cursor, row)| {
            let timeline = match (&row.direction[..], &row.message_ref) {
                ("outbound", Some(r)) => timelines.remove(r).unwrap_or_default(),
                _ => Vec::new(),
            };
            let timeline = timeline.into_iter().map(MessageStatusEntry::from).collect();
            Edge::new(cursor, ThreadMessage::new(row, timeline))
        }));
        Ok(connection)
    }
}

#[derive(Default)]
pub struct InboxQuery;

#[Object]
impl InboxQuery {
    /// One conversation of the caller's tenant, or null (none with this id: a conversation exists
    /// once its contact wrote). Owner, admin, agent, auditor; anyone else gets `FORBIDDEN`.
    async fn conversation(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The conversation's id, which is its contact's id (`ct_…`); an id not of that form is refused with `BAD_CONVERSATION_ID`."
        )]
        id: String,
    ) -> async_graphql::Result<Option<ConversationThread>> {
        let caller = reader(ctx).gql()?;
        let id = valid_id(&id).gql()?;
        let detail = read::conversation(pool(ctx).gql()?, &caller.tenant, id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(detail.map(|detail| ConversationThread { detail }))
    }
}

async fn run(
    ctx: &Context<'_>,
    id: String,
    make: impl FnOnce(String) -> ConversationCommand,
) -> async_graphql::Result<Receipt> {
    let caller = writer(ctx).gql()?;
    let id = valid_id(&id).gql()?;
    let command = make(caller.user_id.clone());
    receipt(async {
        commands(ctx)
            .gql()?
            .conversation(id, command, &metadata(ctx, caller))
            .await
            .gql()?;
        Ok(Receipt::new(id))
    })
    .await
}

async fn send(
    ctx: &Context<'_>,
    id: String,
    idempotency_key: String,
    outgoing: Outgoing,
) -> async_graphql::Result<Receipt> {
    let caller = writer(ctx).gql()?;
    let id = valid_id(&id).gql()?;
    let key = checked_key(&idempotency_key).gql()?;
    let metadata = metadata(ctx, caller);
    receipt(async {
        send_metered(commands(ctx).gql()?, keys(ctx).gql()?, id, key, outgoing, &metadata)
            .await
            .gql()?;
        Ok(Receipt::new(id))
    })
    .await
}

/// A send's idempotency key, trimmed: 1 to 200 characters (else `BAD_IDEMPOTENCY_KEY`).
fn checked_key(idempotency_key: &str) -> Result<&str, ApiError> {
    let key = idempotency_key.trim();
    if key.is_empty() || key.len() > 200 {
        return Err(ApiError::bad_request(
            "BAD_IDEMPOTENCY_KEY",
            "an idempotency key of 1 to 200 characters is required",
        ));
    }
    Ok(key)
}

#[derive(Default)]
pub struct InboxMutation;

#[Object]
impl InboxMutation {
    /// Queues a free-form text. Refused outside the 24-hour window (`OUTSIDE_SERVICE_WINDOW`)
    /// and to an opted-out contact (`CONTACT_OPTED_OUT`). The same idempotency key never
    /// sends twice. Owner, admin, agent (anyone else gets `FORBIDDEN`); a metered tenant pays
    /// first from its main wallet (`INSUFFICIENT_BALANCE` queues nothing; a refused send is
    /// refunded). Returns the conversation id and its log position.
    async fn send_message(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The conversation's id (its contact's id, `ct_…`); another form is refused with `BAD_CONVERSATION_ID`, an unknown one with `UNKNOWN_CONVERSATION`."
        )]
        conversation_id: String,
        #[graphql(
            desc = "The text, at most 4096 characters (else `MESSAGE_TOO_LONG`); a blank text is refused with `INVALID_INPUT`."
        )]
        text: String,
        #[graphql(
            desc = "The caller's key for this send, 1 to 200 characters after trimming (else `BAD_IDEMPOTENCY_KEY`), unique per conversation: a repeated key queues and charges nothing again."
        )]
        idempotency_key: String,
    ) -> async_graphql::Result<Receipt> {
        if text.chars().count() > 4096 {
            return Err(ApiError::bad_request(
                "MESSAGE_TOO_LONG",
                "WhatsApp texts are at most 4096 characters",
            ))
            .gql();
        }
        send(ctx, conversation_id, idempotency_key, Outgoing::Text(text)).await
    }

    /// Queues an approved template with its body parameters and header parameter (allowed
    /// outside the window). Refused when the template is not approved now
    /// (`TEMPLATE_NOT_APPROVED`: pending, rejected, paused or disabled by WhatsApp), its
    /// parameters do not fit it (`WRONG_PARAMETER_COUNT`, `HEADER_PARAMETER_MISMATCH`), its name
    /// or language is blank (`INCOMPLETE_TEMPLATE`), or the contact opted out (`CONTACT_OPTED_OUT`). Owner,
    /// admin, agent (anyone else gets `FORBIDDEN`); metered like `sendMessage`
    /// (`INSUFFICIENT_BALANCE`). Returns the conversation id and its log position.
    #[allow(clippy::too_many_arguments)]
    async fn send_template(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The conversation's id (its contact's id, `ct_…`); another form is refused with `BAD_CONVERSATION_ID`, an unknown one with `UNKNOWN_CONVERSATION`."
        )]
        conversation_id: String,
        #[graphql(desc = "The template's name, exactly as approved.")] name: String,
        #[graphql(desc = "The template's language code, exactly as approved, e.g. `en_US`.")] language: String,
        #[graphql(
            default,
            desc = "The body parameters' texts, in order (`{{1}}`, `{{2}}`, …); default none."
        )]
        parameters: Vec<String>,
        #[graphql(
            desc = "The caller's key for this send, 1 to 200 characters after trimming (else `BAD_IDEMPOTENCY_KEY`), unique per conversation: a repeated key queues and charges nothing again."
        )]
        idempotency_key: String,
        #[graphql(
            desc = "The header's parameter: the text of a text header's `{{1}}`, or the http(s) link to a media header's file; required by such headers and refused by any other (`HEADER_PARAMETER_MISMATCH`)."
        )]
        header_parameter: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        send(
            ctx,
            conversation_id,
            idempotency_key,
            Outgoing::Template {
                name,
                language,
                parameters,
                header: header_parameter,
            },
        )
        .await
    }

    /// Queues an image, audio, video, document or sticker: a file uploaded through Chronicle
    /// (`uploadMedia`, by its `mediaRef`; the sender uploads it to WhatsApp first) or a public
    /// link WhatsApp downloads. A free-form message: refused outside the 24-hour window
    /// (`OUTSIDE_SERVICE_WINDOW`) and to an opted-out contact (`CONTACT_OPTED_OUT`). Refused
    /// before anything is charged: `MEDIA_SOURCE` (neither or both of `mediaRef` and `link`),
    /// `BAD_MEDIA_LINK`, `UNKNOWN_MEDIA` (no such upload for this conversation),
    /// `MEDIA_TYPE_NOT_SUPPORTED` / `MEDIA_TOO_LARGE` (the upload is not a file WhatsApp sends
    /// as `kind`), `CAPTION_NOT_ALLOWED` (audio, stickers), `FILENAME_NOT_ALLOWED` (anything
    /// but documents), `TEXT_TOO_LONG` (a caption over 1024 characters), `CONTACT_ERASED`.
    /// Owner, admin, agent (anyone else gets `FORBIDDEN`); metered like `sendMessage` (one
    /// `message`; `INSUFFICIENT_BALANCE` queues nothing; a refused send is refunded). The
    /// thread shows it with its `media`; statuses as for any send.
    #[allow(clippy::too_many_arguments)]
    async fn send_media(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The conversation's id (its contact's id, `ct_…`); another form is refused with `BAD_CONVERSATION_ID`, an unknown one with `UNKNOWN_CONVERSATION`."
        )]
        conversation_id: String,
        #[graphql(desc = "What WhatsApp shows it as.")] kind: OutboundMediaKind,
        #[graphql(desc = "An upload's media ref (`uploadMedia`'s receipt id); or give `link`.")] media_ref: Option<
            String,
        >,
        #[graphql(desc = "A public http(s) link to the file, at most 2048 characters; or give `mediaRef`.")]
        link: Option<String>,
        #[graphql(desc = "A caption (images, videos, documents), at most 1024 characters.")] caption: Option<String>,
        #[graphql(desc = "A document's file name as the customer sees it, at most 240 characters.")] filename: Option<
            String,
        >,
        #[graphql(
            desc = "The caller's key for this send, 1 to 200 characters after trimming (else `BAD_IDEMPOTENCY_KEY`), unique per conversation: a repeated key queues and charges nothing again."
        )]
        idempotency_key: String,
    ) -> async_graphql::Result<Receipt> {
        let message = rich::MediaMessage {
            kind: kind.into(),
            link,
            media_ref,
            caption,
            filename,
        };
        send(ctx, conversation_id, idempotency_key, Outgoing::Media(message)).await
    }

    /// Queues an interactive message: one to three reply buttons (`buttons`) or a list
    /// (`list`) under a body, with an optional text header and footer. WhatsApp sends the
    /// customer's choice back as a reply, shown in the thread with its title. A free-form
    /// message: refused outside the 24-hour window (`OUTSIDE_SERVICE_WINDOW`) and to an
    /// opted-out contact (`CONTACT_OPTED_OUT`). Refused before anything is charged:
    /// `INVALID_INPUT` (neither or both of `buttons` and `list`), `NO_CHOICES`,
    /// `TOO_MANY_BUTTONS` (over 3), `TOO_MANY_LIST_ROWS` (over 10 rows or sections),
    /// `DUPLICATE_CHOICE` (an id or button title used twice), `BLANK_FIELD`, `TEXT_TOO_LONG`
    /// (body 1024, header and footer 60, button titles 20, list button 20, section and row
    /// titles 24, row descriptions 72), `CONTACT_ERASED`. Owner, admin, agent (anyone else gets
    /// `FORBIDDEN`); metered like `sendMessage`.
    #[allow(clippy::too_many_arguments)]
    async fn send_interactive(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The conversation's id (its contact's id, `ct_…`); another form is refused with `BAD_CONVERSATION_ID`, an unknown one with `UNKNOWN_CONVERSATION`."
        )]
        conversation_id: String,
        #[graphql(desc = "The message's body text, 1 to 1024 characters.")] body: String,
        #[graphql(desc = "A header text, at most 60 characters.")] header: Option<String>,
        #[graphql(desc = "A footer text, at most 60 characters.")] footer: Option<String>,
        #[graphql(desc = "One to three reply buttons; or give `list`.")] buttons: Option<Vec<ReplyButton>>,
        #[graphql(desc = "A list of choices; or give `buttons`.")] list: Option<ListInput>,
        #[graphql(
            desc = "The caller's key for this send, 1 to 200 characters after trimming (else `BAD_IDEMPOTENCY_KEY`), unique per conversation: a repeated key queues and charges nothing again."
        )]
        idempotency_key: String,
    ) -> async_graphql::Result<Receipt> {
        // The caller's role, the conversation and the key before the message, as every send.
        writer(ctx).gql()?;
        valid_id(&conversation_id).gql()?;
        checked_key(&idempotency_key).gql()?;
        let choices = match (buttons, list) {
            (Some(buttons), None) => rich::Choices::Buttons {
                buttons: buttons
                    .into_iter()
                    .map(|b| rich::ReplyButton {
                        id: b.id,
                        title: b.title,
                    })
                    .collect(),
            },
            (None, Some(list)) => rich::Choices::List {
                button: list.button,
                sections: list
                    .sections
                    .into_iter()
                    .map(|s| rich::ListSection {
                        title: s.title,
                        rows: s
                            .rows
                            .into_iter()
                            .map(|r| rich::ListRow {
                                id: r.id,
                                title: r.title,
                                description: r.description,
                            })
                            .collect(),
                    })
                    .collect(),
            },
            _ => {
                return Err(ApiError::bad_request(
                    "INVALID_INPUT",
                    "an interactive message offers either `buttons` or a `list`, not both and not neither",
                ))
                .gql()
            }
        };
        let message = rich::Interactive {
            header,
            body,
            footer,
            choices,
        };
        send(ctx, conversation_id, idempotency_key, Outgoing::Interactive(message)).await
    }

    /// Assigns the conversation to an agent, or unassigns it (`agentId` null). Assigning ends a
    /// pending handover request; a repeat changes nothing. Owner, admin, agent (anyone else gets
    /// `FORBIDDEN`). Returns the conversation id and its log position.
    async fn assign_conversation(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The conversation's id (its contact's id, `ct_…`); another form is refused with `BAD_CONVERSATION_ID`, an unknown one with `UNKNOWN_CONVERSATION`."
        )]
        conversation_id: String,
        #[graphql(
            desc = "The user id (`usr_…`) of the agent to assign: an active user whose role works conversations (owner, admin, agent), else `UNKNOWN_USER`, `USER_DEACTIVATED`, `USER_NOT_ACTIVE` or `ROLE_NOT_ALLOWED`; null unassigns."
        )]
        agent_id: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        let caller = writer(ctx).gql()?;
        let agent_id = match agent_id {
            Some(agent) => Some(
                super::assignee(ctx, caller, &agent, Permission::WorkInbox, "work conversations")
                    .await
                    .gql()?
                    .user_id,
            ),
            None => None,
        };
        run(ctx, conversation_id, |by| ConversationCommand::Assign {
            agent_id,
            by,
            at: Utc::now(),
        })
        .await
    }

    /// Sends again a message the WhatsApp sender handed to an operator (its request may or may
    /// not have reached WhatsApp, so the sender never repeats it by itself; the outbox shows it
    /// as `needs_operator`). The decision is recorded in the log with who took it; if the first
    /// request did arrive, the customer gets the message twice. Owner and admin only (others
    /// get `FORBIDDEN`). Refusals: `UNKNOWN_OUTBOUND_MESSAGE`, `OUTBOUND_MESSAGE_SETTLED` (it was
    /// sent or failed), `NOT_AWAITING_OPERATOR` (the sender still has it), `CONTACT_OPTED_OUT`
    /// (the contact opted out since it was queued), `BAD_CONVERSATION_ID`,
    /// `UNKNOWN_CONVERSATION`. Returns a receipt for the conversation.
    async fn resend_message(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The conversation's id (its contact's id, `ct_…`).")] conversation_id: String,
        #[graphql(desc = "The idempotency key the message was queued under.")] idempotency_key: String,
    ) -> async_graphql::Result<Receipt> {
        let caller = allowed(ctx, Permission::ManageMessagingSettings, "send messages again").gql()?;
        let id = valid_id(&conversation_id).gql()?;
        let metadata = metadata(ctx, caller);
        receipt(async {
            chronicle_commands::outbound::resend(commands(ctx).gql()?, id, idempotency_key.trim(), &metadata)
                .await
                .gql()?;
            Ok(Receipt::new(id))
        })
        .await
    }

    /// Marks the conversation read up to its latest inbound message, as an agent opening it
    /// does: its `unreadCount` goes back to 0, and WhatsApp is sent a read receipt for that
    /// message (the customer sees blue ticks). With nothing new since the last time, or no
    /// inbound message yet, it changes nothing. Owner, admin, agent (anyone else gets
    /// `FORBIDDEN`). Returns the conversation id and its log position.
    async fn mark_conversation_read(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The conversation's id (its contact's id, `ct_…`); another form is refused with `BAD_CONVERSATION_ID`, an unknown one with `UNKNOWN_CONVERSATION`."
        )]
        conversation_id: String,
    ) -> async_graphql::Result<Receipt> {
        run(ctx, conversation_id, |by| ConversationCommand::MarkRead {
            by,
            at: Utc::now(),
        })
        .await
    }

    /// Moves the conversation: open ↔ pending, open | pending → resolved, resolved → open |
    /// closed (`STATUS_MOVE_NOT_ALLOWED` otherwise). Owner, admin, agent (anyone else gets
    /// `FORBIDDEN`). Returns the conversation id and its log position.
    async fn set_conversation_status(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The conversation's id (its contact's id, `ct_…`); another form is refused with `BAD_CONVERSATION_ID`, an unknown one with `UNKNOWN_CONVERSATION`."
        )]
        conversation_id: String,
        #[graphql(desc = "The status to move to; the current status again changes nothing.")]
        status: ConversationStatus,
    ) -> async_graphql::Result<Receipt> {
        run(ctx, conversation_id, |by| ConversationCommand::SetStatus {
            status: to_domain(status),
            by,
            at: Utc::now(),
        })
        .await
    }

    /// Adds a tag to the conversation; a tag already present changes nothing. Owner, admin,
    /// agent (anyone else gets `FORBIDDEN`). Returns the conversation id and its log position.
    async fn tag_conversation(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The conversation's id (its contact's id, `ct_…`); another form is refused with `BAD_CONVERSATION_ID`, an unknown one with `UNKNOWN_CONVERSATION`."
        )]
        conversation_id: String,
        #[graphql(desc = "The tag, stored trimmed and lower-case; a blank one is refused with `BLANK_FIELD`.")]
        tag: String,
    ) -> async_graphql::Result<Receipt> {
        run(ctx, conversation_id, |by| ConversationCommand::Tag {
            tag,
            by,
            at: Utc::now(),
        })
        .await
    }

    /// Removes a tag from the conversation; a tag not present changes nothing. Owner, admin,
    /// agent (anyone else gets `FORBIDDEN`). Returns the conversation id and its log position.
    async fn untag_conversation(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The conversation's id (its contact's id, `ct_…`); another form is refused with `BAD_CONVERSATION_ID`, an unknown one with `UNKNOWN_CONVERSATION`."
        )]
        conversation_id: String,
        #[graphql(desc = "The tag, matched trimmed and lower-case; a blank one is refused with `BLANK_FIELD`.")]
        tag: String,
    ) -> async_graphql::Result<Receipt> {
        run(ctx, conversation_id, |by| ConversationCommand::Untag {
            tag,
            by,
            at: Utc::now(),
        })
        .await
    }

    /// Adds an internal note (sealed in the log). `noteId` makes a retry idempotent. Owner,
    /// admin, agent (anyone else gets `FORBIDDEN`). Returns the conversation id and its log
    /// position.
    async fn add_note(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The conversation's id (its contact's id, `ct_…`); another form is refused with `BAD_CONVERSATION_ID`, an unknown one with `UNKNOWN_CONVERSATION`."
        )]
        conversation_id: String,
        #[graphql(
            desc = "The note's text; a blank one is refused with `EMPTY_NOTE`. Never sent to the contact."
        )]
        text: String,
        #[graphql(
            desc = "The caller's id for the note: a note id already added changes nothing; null generates one; a blank one is refused with `BLANK_FIELD`."
        )]
        note_id: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        let caller = writer(ctx).gql()?;
        let id = valid_id(&conversation_id).gql()?.to_string();
        if text.trim().is_empty() {
            return Err(ApiError::bad_request("EMPTY_NOTE", "a note needs text")).gql();
        }
        require_conversation(commands(ctx).gql()?, &metadata(ctx, caller), &id)
            .await
            .gql()?;
        let key = keys(ctx).gql()?.key_for(&caller.tenant, &id).await.gql()?;
        let sealed = key.seal(&caller.tenant, &id, &text, &mut OsRng);
        let note_id = note_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        run(ctx, id, |by| ConversationCommand::AddNote {
            note_id,
            text: sealed,
            by,
            at: Utc::now(),
        })
        .await
    }

    /// Asks for a human to take over; pending until someone is assigned (a second request
    /// meanwhile changes nothing). Owner, admin, agent (anyone else gets `FORBIDDEN`). Returns
    /// the conversation id and its log position.
    async fn request_handover(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The conversation's id (its contact's id, `ct_…`); another form is refused with `BAD_CONVERSATION_ID`, an unknown one with `UNKNOWN_CONVERSATION`."
        )]
        conversation_id: String,
        #[graphql(
            desc = "Why a human is needed (sealed in the log, shown as `handoverReason`); null or blank gives no reason."
        )]
        reason: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        let caller = writer(ctx).gql()?;
        let id = valid_id(&conversation_id).gql()?.to_string();
        let reason = match reason.filter(|r| !r.trim().is_empty()) {
            Some(reason) => {
                require_conversation(commands(ctx).gql()?, &metadata(ctx, caller), &id)
                    .await
                    .gql()?;
                let key = keys(ctx).gql()?.key_for(&caller.tenant, &id).await.gql()?;
                Some(key.seal(&caller.tenant, &id, &reason, &mut OsRng))
            }
            None => None,
        };
        run(ctx, id, |by| ConversationCommand::RequestHandover {
            reason,
            by,
            at: Utc::now(),
        })
        .await
    }
}
