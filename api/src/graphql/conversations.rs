//! The inbox: `conversations`, a Relay connection of the caller's tenant's conversations,
//! newest message first, filtered by status.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chronicle_projections::conversations::{list, ConversationRow, ListFilter};
use chrono::{DateTime, Utc};

use super::{caller, pool};
use crate::error::{ApiError, IntoGraphql};

/// A conversation's status.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ConversationStatus {
    Open,
    Pending,
    Resolved,
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

/// Filters of `conversations`.
#[derive(InputObject, Default)]
pub struct ConversationFilter {
    /// Only conversations with this status.
    pub status: Option<ConversationStatus>,
    /// Only conversations assigned to this agent (user id).
    pub assignee: Option<String>,
    /// Only conversations assigned to nobody.
    pub unassigned: Option<bool>,
    /// Only conversations with this tag.
    pub tag: Option<String>,
}

/// The last message of a conversation.
#[derive(SimpleObject)]
pub struct LastMessage {
    /// The message's reference (a keyed hash of WhatsApp's id, which embeds the phone number).
    pub id: String,
    /// text, image, audio, video, document, location, …
    pub kind: String,
    /// A short preview of its content.
    pub text: Option<String>,
    pub at: DateTime<Utc>,
}

/// A WhatsApp conversation with one contact.
#[derive(SimpleObject)]
pub struct Conversation {
    pub id: String,
    pub contact_id: String,
    /// E.164; absent after the contact was erased.
    pub contact_phone: Option<String>,
    pub contact_name: Option<String>,
    pub status: ConversationStatus,
    pub last_message: Option<LastMessage>,
    pub unread_count: i32,
    pub message_count: i32,
    /// When the 24-hour customer service window closes.
    pub window_expires_at: Option<DateTime<Utc>>,
    /// Whether a free-form message may be sent now (inside the window).
    pub free_form_allowed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The agent it is assigned to.
    pub assignee: Option<String>,
    pub tags: Vec<String>,
}

impl From<ConversationRow> for Conversation {
    fn from(row: ConversationRow) -> Self {
        let last_message = match (row.last_message_ref, row.last_message_at) {
            (Some(id), Some(at)) => Some(LastMessage {
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
    /// The caller's tenant's conversations, newest message first.
    async fn conversations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
        after: Option<String>,
        filter: Option<ConversationFilter>,
    ) -> async_graphql::Result<Connection<String, Conversation>> {
        let caller = caller(ctx).gql()?;
        if !caller.role.reads_inbox() {
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
        let page = list(
            pool(ctx).gql()?,
            &caller.tenant,
            &filter,
            i64::from(first),
            after.as_deref(),
        )
        .await
        .map_err(ApiError::from)
        .gql()?
        .map_err(|e| ApiError::bad_request("BAD_CURSOR", e.to_string()))
        .gql()?;
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        connection.edges.extend(
            page.rows
                .into_iter()
                .map(|(cursor, row)| Edge::new(cursor, Conversation::from(row))),
        );
        Ok(connection)
    }
}
