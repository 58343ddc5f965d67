//! Value types of conversations.

use serde::{Deserialize, Serialize};

use crate::pii::Envelope;

/// The customer service window opened by each inbound message, in hours.
pub const SERVICE_WINDOW_HOURS: i64 = 24;

/// A conversation's status: `open → pending → resolved → closed`; a new inbound message
/// reopens it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    #[default]
    Open,
    Pending,
    Resolved,
    Closed,
}

impl ConversationStatus {
    /// The status as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Pending => "pending",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
        }
    }
}

impl ConversationStatus {
    /// Whether a person may move a conversation from `self` to `next` (inbound messages reopen
    /// on their own, see the aggregate). Allowed: `open ↔ pending`; `open | pending → resolved`;
    /// `resolved → open` (an agent reopens); `resolved → closed`. Closed is final for people:
    /// only a new inbound message reopens it. Staying in the same status is not a move (the
    /// command records nothing).
    pub fn may_move_to(self, next: Self) -> bool {
        matches!(
            (self, next),
            (Self::Open, Self::Pending)
                | (Self::Pending, Self::Open)
                | (Self::Open, Self::Resolved)
                | (Self::Pending, Self::Resolved)
                | (Self::Resolved, Self::Open)
                | (Self::Resolved, Self::Closed)
        )
    }

    /// From its stored name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "open" => Some(Self::Open),
            "pending" => Some(Self::Pending),
            "resolved" => Some(Self::Resolved),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// WhatsApp's error code for a message sent outside the 24-hour window
/// ("Re-engagement message").
pub const WINDOW_CLOSED_ERROR: i64 = 131047;

/// What an outbound message says. Personal content is sealed under the contact's data key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutboundBody {
    /// A free-form text: allowed only inside the 24-hour window.
    FreeForm { text: Envelope },
    /// An approved template by name and language; its body parameters as a sealed JSON array
    /// of strings. Allowed outside the window.
    Template {
        name: String,
        language: String,
        parameters: Envelope,
        /// The header's parameter, for a template whose header has `{{1}}` or is a media.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<HeaderParameter>,
    },
    /// An image, audio, video, document or sticker, by link or uploaded through Chronicle,
    /// with a caption (images, videos, documents) and a file name (documents), both sealed.
    /// Allowed only inside the 24-hour window.
    Media {
        kind: crate::media::MediaKind,
        source: super::rich::MediaSource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<Envelope>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<Envelope>,
    },
    /// Reply buttons or a list (`interactive`: the sealed JSON of a checked
    /// [`super::rich::Interactive`]). Allowed only inside the 24-hour window.
    Interactive {
        kind: super::rich::InteractiveKind,
        content: Envelope,
    },
}

/// What a send puts in a template's header (sealed: it may be personal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HeaderParameter {
    /// The text of a text header's `{{1}}`.
    Text { text: Envelope },
    /// The link to a media header's file.
    Media {
        format: crate::template::HeaderFormat,
        link: Envelope,
    },
}

impl OutboundBody {
    /// `free_form`, `template`, the media's kind (`image`, `audio`, `video`, `document`,
    /// `sticker`) or `interactive`, as stored and shown.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::FreeForm { .. } => "free_form",
            Self::Template { .. } => "template",
            Self::Media { kind, .. } => kind.as_str(),
            Self::Interactive { .. } => "interactive",
        }
    }

    /// Whether only the 24-hour window allows it (everything but a template).
    pub fn needs_window(&self) -> bool {
        !matches!(self, Self::Template { .. })
    }
}

/// The contact's messaging consent as the write side knows it when it queues a message (from
/// the Contact aggregate or its read model; the conversation does not own consent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// No opt-out recorded (WhatsApp contacts who wrote to the business may be answered).
    #[default]
    Unknown,
    OptedIn,
    OptedOut,
}

/// The kind of an inbound WhatsApp message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Text,
    Image,
    Audio,
    Video,
    Document,
    Sticker,
    Location,
    Contacts,
    Interactive,
    Button,
    Reaction,
    /// A type WhatsApp sends that Chronicle does not interpret yet; kept, not dropped.
    Unsupported,
}

impl MessageKind {
    /// From WhatsApp's `type` field.
    pub fn from_whatsapp(kind: &str) -> Self {
        match kind {
            "text" => Self::Text,
            "image" => Self::Image,
            "audio" | "voice" => Self::Audio,
            "video" => Self::Video,
            "document" => Self::Document,
            "sticker" => Self::Sticker,
            "location" => Self::Location,
            "contacts" => Self::Contacts,
            "interactive" => Self::Interactive,
            "button" => Self::Button,
            "reaction" => Self::Reaction,
            _ => Self::Unsupported,
        }
    }

    /// The kind as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Document => "document",
            Self::Sticker => "sticker",
            Self::Location => "location",
            Self::Contacts => "contacts",
            Self::Interactive => "interactive",
            Self::Button => "button",
            Self::Reaction => "reaction",
            Self::Unsupported => "unsupported",
        }
    }
}

/// A delivery status of an outbound message, as WhatsApp reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl DeliveryStatus {
    /// From WhatsApp's `status` field; `None` for statuses Chronicle does not track.
    pub fn from_whatsapp(status: &str) -> Option<Self> {
        match status {
            "sent" => Some(Self::Sent),
            "delivered" => Some(Self::Delivered),
            "read" => Some(Self::Read),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
        }
    }

    /// Whether a message at `self` may move to `next`: forward only along
    /// sent → delivered → read; failed only before delivery, and terminal.
    pub fn may_advance_to(current: Option<Self>, next: Self) -> bool {
        match (current, next) {
            (None, _) => true,
            (Some(Self::Failed), _) => false,
            (Some(cur), Self::Failed) => cur == Self::Sent,
            (Some(cur), next) => next.rank() > cur.rank(),
        }
    }

    fn rank(self) -> u8 {
        match self {
            Self::Sent => 1,
            Self::Delivered => 2,
            Self::Read => 3,
            Self::Failed => 4,
        }
    }
}

/// The provider's error on a failed delivery (for example 131047: the 24-hour window closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProviderError {
    pub code: i64,
    pub title: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_status() -> impl Strategy<Value = DeliveryStatus> {
        prop_oneof![
            Just(DeliveryStatus::Sent),
            Just(DeliveryStatus::Delivered),
            Just(DeliveryStatus::Read),
            Just(DeliveryStatus::Failed),
        ]
    }

    /// Folds statuses arriving in any order the way the aggregate does.
    fn fold(statuses: &[DeliveryStatus]) -> Option<DeliveryStatus> {
        statuses.iter().fold(None, |cur, next| {
            if DeliveryStatus::may_advance_to(cur, *next) {
                Some(*next)
            } else {
                cur
            }
        })
    }

    proptest! {
        #[test]
        fn statuses_never_move_backwards_and_failed_is_terminal(statuses in proptest::collection::vec(any_status(), 0..12)) {
            let mut cur: Option<DeliveryStatus> = None;
            for next in &statuses {
                let before = cur;
                if DeliveryStatus::may_advance_to(cur, *next) { cur = Some(*next); }
                if before == Some(DeliveryStatus::Failed) { prop_assert_eq!(cur, before); }
                if let (Some(b), Some(c)) = (before, cur) {
                    if c != DeliveryStatus::Failed { prop_assert!(c.rank() >= b.rank()); }
                }
            }
        }

        #[test]
        fn any_order_of_sent_delivered_read_ends_read(perm in Just(vec![DeliveryStatus::Sent, DeliveryStatus::Delivered, DeliveryStatus::Read]).prop_shuffle(), dup in 0usize..3) {
            let mut seq = perm.clone();
            seq.push(perm[dup]);
            prop_assert_eq!(fold(&seq), Some(DeliveryStatus::Read));
        }
    }

    #[test]
    fn a_duplicate_status_changes_nothing() {
        assert!(!DeliveryStatus::may_advance_to(
            Some(DeliveryStatus::Delivered),
            DeliveryStatus::Delivered
        ));
    }

    #[test]
    fn a_delivered_message_does_not_fail_afterwards() {
        assert!(!DeliveryStatus::may_advance_to(
            Some(DeliveryStatus::Delivered),
            DeliveryStatus::Failed
        ));
        assert!(DeliveryStatus::may_advance_to(
            Some(DeliveryStatus::Sent),
            DeliveryStatus::Failed
        ));
    }
}

/// How many recent message references a conversation remembers for deduplication.
pub const RECENT_MESSAGE_REFS: usize = 4096;

/// The most recent message references of a conversation, oldest evicted first: a bounded
/// dedupe window, so a conversation's state (and its snapshot, and so a command's cost) stays
/// flat however long the conversation grows. WhatsApp repeats a delivery within hours; older
/// repeats are stopped earlier by the webhook inbox, which dedupes by the provider's key forever.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct RecentRefs {
    order: std::collections::VecDeque<String>,
    set: std::collections::HashSet<String>,
}

impl RecentRefs {
    /// Whether `reference` is among the recent ones.
    pub fn contains(&self, reference: &str) -> bool {
        self.set.contains(reference)
    }

    /// Remembers `reference`, forgetting the oldest past [`RECENT_MESSAGE_REFS`].
    pub fn insert(&mut self, reference: String) {
        if self.set.insert(reference.clone()) {
            self.order.push_back(reference);
            while self.order.len() > RECENT_MESSAGE_REFS {
                if let Some(oldest) = self.order.pop_front() {
                    self.set.remove(&oldest);
                }
            }
        }
    }

    /// The latest one remembered (the conversation's latest inbound message).
    pub fn latest(&self) -> Option<&str> {
        self.order.back().map(String::as_str)
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl From<Vec<String>> for RecentRefs {
    fn from(references: Vec<String>) -> Self {
        let mut recent = RecentRefs::default();
        for r in references {
            recent.insert(r);
        }
        recent
    }
}

impl From<RecentRefs> for Vec<String> {
    fn from(recent: RecentRefs) -> Self {
        recent.order.into_iter().collect()
    }
}

#[cfg(test)]
mod recent_tests {
    use super::*;

    #[test]
    fn the_dedupe_window_is_bounded_and_forgets_the_oldest_first() {
        let mut recent = RecentRefs::default();
        for n in 0..RECENT_MESSAGE_REFS + 10 {
            recent.insert(format!("wm_{n}"));
        }
        assert_eq!(recent.len(), RECENT_MESSAGE_REFS);
        assert!(!recent.contains("wm_9"));
        assert!(recent.contains("wm_10"));
        assert!(recent.contains(&format!("wm_{}", RECENT_MESSAGE_REFS + 9)));
    }

    #[test]
    fn the_dedupe_window_survives_a_snapshot_round_trip_in_order() {
        let mut recent = RecentRefs::default();
        for r in ["b", "a", "c", "a"] {
            recent.insert(r.to_string());
        }
        let json = serde_json::to_string(&recent).unwrap_or_default();
        assert_eq!(json, r#"["b","a","c"]"#);
        let back: RecentRefs = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, recent);
    }
}
