//! The inbox: `conversations`, a Relay connection of the caller's tenant's conversations,
//! newest message first, filtered by status.

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chronicle_projections::conversations::{list, ConversationRow, ListFilter};
use chrono::{DateTime, Utc};

use super::{caller, connection_with, page_size, pool, Counted};
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

/// A conversation's status.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ConversationStatus {
    /// Being worked on. A new inbound message moves a conversation of any status back here.
    Open,
    /// Waiting (on the contact or a colleague); set by a user, moves back to OPEN or on to
    /// RESOLVED.
    Pending,
    /// Done; a user may reopen it (OPEN) or close it (CLOSED).
    Resolved,
    /// Final for users: only a new inbound message from the contact reopens it.
    Closed,
}

impl ConversationStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Pending => "pending",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "pending" => Self::Pending,
            "resolved" => Self::Resolved,
            "closed" => Self::Closed,
            _ => Self::Open,
        }
    }
}

/// Filters of `conversations`; the filters given all apply (AND).
#[derive(InputObject, Default)]
pub struct ConversationFilter {
    /// Only conversations with this status.
    pub status: Option<ConversationStatus>,
    /// Only conversations assigned to this agent (user id).
    pub assignee: Option<String>,
    /// Only conversations assigned to nobody (true); false or null does not filter.
    pub unassigned: Option<bool>,
    /// Only conversations with this tag (trimmed and lower-cased before matching).
    pub tag: Option<String>,
}

/// The latest message of a conversation, either way: the customer's (by the provider's time)
/// or the business's (by the time it was queued).
#[derive(SimpleObject)]
pub struct LastMessage {
    /// The message's id: for an inbound message its reference (a keyed hash of WhatsApp's id,
    /// which embeds the phone number); for an outbound one `out:` and its idempotency key, as
    /// in `conversation.messages`.
    pub id: String,
    /// Who wrote it.
    pub direction: LastMessageDirection,
    /// Inbound: text, image, audio, video, document, location, …; outbound: free_form or
    /// template.
    pub kind: String,
    /// A short preview of its content.
    pub text: Option<String>,
    /// The provider's timestamp of the message (RFC 3339).
    pub at: DateTime<Utc>,
}

/// Who wrote a conversation's last message.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum LastMessageDirection {
    /// The customer.
    Inbound,
    /// The business (an agent, a campaign, an automation).
    Outbound,
}

/// A WhatsApp conversation with one contact.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Conversation {
    /// The conversation's id, which is its contact's id (`ct_` and 32 hex digits).
    pub id: String,
    /// The contact's id (the same as `id`).
    pub contact_id: String,
    /// E.164; absent after the contact was erased.
    pub contact_phone: Option<String>,
    /// The contact's WhatsApp profile name; null when WhatsApp never sent one or the contact was
    /// erased.
    pub contact_name: Option<String>,
    /// The conversation's working status.
    pub status: ConversationStatus,
    /// The latest inbound message; null when there is none.
    pub last_message: Option<LastMessage>,
    /// Inbound messages since the conversation was last marked read (`markConversationRead`);
    /// every inbound message until then.
    pub unread_count: i32,
    /// The number of inbound messages (outbound messages are not counted).
    pub message_count: i32,
    /// When the 24-hour customer service window closes.
    pub window_expires_at: Option<DateTime<Utc>>,
    /// Whether a free-form message may be sent now (inside the window).
    pub free_form_allowed: bool,
    /// When Chronicle recorded the conversation's first inbound message (RFC 3339).
    pub created_at: DateTime<Utc>,
    /// When Chronicle last recorded an inbound message or a status change on it (RFC 3339).
    pub updated_at: DateTime<Utc>,
    /// The agent it is assigned to.
    pub assignee: Option<String>,
    /// The conversation's tags (lower-case), in the order they were added.
    pub tags: Vec<String>,
}

impl From<ConversationRow> for Conversation {
    fn from(row: ConversationRow) -> Self {
        let last_message = match (row.last_message_ref, row.last_message_at) {
            (Some(id), Some(at)) => Some(LastMessage {
                direction: if row.last_direction.as_deref() == Some("outbound") {
                    LastMessageDirection::Outbound
                } else {
                    LastMessageDirection::Inbound
                },
                id,
                kind: row.last_message_kind.unwrap_or_else(|| "unsupported".into()),
                text: row.last_message_text,
                at,
            }),
            _ => None,
        };
        Self {
            id: row.conversation_id,
            contact_id: row.contact_id,
            contact_phone: row.contact_phone,
            contact_name: row.contact_name,
            status: ConversationStatus::parse(&row.status),
            last_message,
            unread_count: row.unread_count,
            message_count: row.message_count,
            free_form_allowed: row.window_expires_at.is_some_and(|t| t > Utc::now()),
            window_expires_at: row.window_expires_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            assignee: row.assignee,
            tags: row.tags,
        }
    }
}

#[derive(Default)]
pub struct ConversationsQuery;

#[Object]
impl ConversationsQuery {
    /// The caller's tenant's conversations, newest message first (either way) (owner, admin, agent,
    /// auditor; anyone else gets `FORBIDDEN`).
    async fn conversations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(
            desc = "The cursor of the last conversation of the previous page (`pageInfo.endCursor`); null for the first page. A malformed cursor is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
        #[graphql(desc = "Which conversations to list; null lists all.")] filter: Option<ConversationFilter>,
    ) -> async_graphql::Result<Connection<String, Conversation, Counted>> {
        let caller = caller(ctx).gql()?;
        let first = page_size(first, 100).gql()?;
        if !caller.may(Permission::ReadInbox) {
            return Err(ApiError::Forbidden(format!(
                "the {} role cannot read the inbox",
                caller.role.as_str()
            )))
            .gql();
        }
        let filter = filter.unwrap_or_default();
        let filter = ListFilter {
            status: filter.status.map(|s| s.as_str().to_string()),
            assignee: filter.assignee,
            unassigned: filter.unassigned.unwrap_or(false),
            tag: filter.tag.map(|t| t.trim().to_lowercase()),
        };
        let pool = pool(ctx).gql()?;
        let page = list(pool, &caller.tenant, &filter, first, after.as_deref()).await;
        let (pool, tenant) = (pool.clone(), caller.tenant.clone());
        let count =
            Counted::new(async move { chronicle_projections::conversations::count(&pool, &tenant, &filter).await });
        connection_with(after.is_some(), page, Conversation::from, count)
    }
}

#[async_graphql::ComplexObject]
impl Conversation {
    /// The agent it is assigned to, with their name from the user directory; null when
    /// unassigned.
    async fn assigned_to(
        &self,
        ctx: &async_graphql::Context<'_>,
    ) -> async_graphql::Result<Option<super::users::AssignedUser>> {
        match &self.assignee {
            Some(id) => Ok(super::users::assigned(ctx, std::slice::from_ref(id)).await?.pop()),
            None => Ok(None),
        }
    }
}
