//! Value types of campaigns: statuses of a campaign and of each recipient, the outcomes the
//! sender reports, the derived counts every event carries, the refund a failure owes, and the
//! references the write side uses on the wallet and the conversations (derived here, so every
//! retry uses the same ones).

use serde::{Deserialize, Serialize};

/// The most recipients one campaign may have (one `CampaignCreated` event lists them all).
pub const MAX_RECIPIENTS: usize = 10_000;

/// The local part of a campaign's stream id: `campaign_<id>`.
pub fn campaign_local_id(campaign_id: &str) -> String {
    format!("campaign_{campaign_id}")
}

/// Whether `id` is a campaign id: 1 to 64 characters of `a-z`, `0-9`, `_` and `-`.
pub fn valid_campaign_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The wallet reservation of a priced campaign's `attempt`-th scheduling attempt:
/// `campaign:<id>:reserve:<n>`. A wallet remembers a refused reference's refusal forever, so
/// after an insufficient balance the next attempt reserves under the next number.
pub fn reservation_reference(campaign_id: &str, attempt: u32) -> String {
    format!("campaign:{campaign_id}:reserve:{attempt}")
}

/// The capture of batch `batch` from the reservation: `campaign:<id>:batch:<n>`.
pub fn capture_reference(campaign_id: &str, batch: u32) -> String {
    format!("campaign:{campaign_id}:batch:{batch}")
}

/// The refund of a failed recipient: `refund:recipient_failed:<campaign>:<recipient>` (the
/// ledger reads the reason, `recipient_failed`, from it).
pub fn refund_reference(campaign_id: &str, recipient: &str) -> String {
    format!("refund:recipient_failed:{campaign_id}:{recipient}")
}

/// The release of what is left of the reservation: `campaign:<id>:release`.
pub fn release_reference(campaign_id: &str) -> String {
    format!("campaign:{campaign_id}:release")
}

/// The idempotency key of a recipient's message on their conversation:
/// `campaign:<id>:<recipient>` (one message per recipient, whatever the retries).
pub fn message_key(campaign_id: &str, recipient: &str) -> String {
    format!("campaign:{campaign_id}:{recipient}")
}

/// The prefix of every campaign message's idempotency key.
pub const MESSAGE_KEY_PREFIX: &str = "campaign:";

/// A campaign's status: `draft → scheduled → running → completed`; `paused` (from scheduled or
/// running, back by resuming) and `cancelled` (from anything not finished).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    #[default]
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl CampaignStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Completed or cancelled: nothing starts any more.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }
}

/// Where one recipient stands: `pending` (not run yet) → `queued` (in a batch: charged and
/// handed to their conversation) → `sent` → `delivered` → `read`; `failed` (refunded) from
/// queued or sent; `cancelled` (never run, nothing charged) from pending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecipientStatus {
    #[default]
    Pending,
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
    Cancelled,
}

impl RecipientStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the recipient is done with: the sender's outcome is known, or it was never run.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Queued)
    }

    /// Whether the recipient was run (put in a batch, so charged).
    pub fn was_run(self) -> bool {
        !matches!(self, Self::Pending | Self::Cancelled)
    }
}

/// What the sender (or the dispatcher) reports about one recipient's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RecipientOutcome {
    /// The provider accepted the message.
    Sent,
    /// WhatsApp reported it delivered (implies sent).
    Delivered,
    /// WhatsApp reported it read (implies delivered).
    Read,
    /// The message could not be queued (no conversation, opted out, template not approved) or
    /// the provider refused it. `reason` says why, in words or the provider's code.
    Failed { reason: String },
}

impl RecipientOutcome {
    /// The status the outcome moves a recipient to.
    pub fn status(&self) -> RecipientStatus {
        match self {
            Self::Sent => RecipientStatus::Sent,
            Self::Delivered => RecipientStatus::Delivered,
            Self::Read => RecipientStatus::Read,
            Self::Failed { .. } => RecipientStatus::Failed,
        }
    }
}

/// The refund a failed recipient is owed: `amount` milli-tokens back from the capture of its
/// batch, under `reference`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RefundDue {
    pub reference: String,
    /// The capture reference of the recipient's batch (what the refund returns part of).
    pub capture: String,
    pub amount: i64,
}

/// A campaign's counts after an event: recipients per status (summing to `total`), and the
/// milli-tokens charged (captured per batch) and refunded (failed recipients). Derived values,
/// so read models copy them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecipientCounts {
    pub total: u32,
    pub pending: u32,
    pub queued: u32,
    pub sent: u32,
    pub delivered: u32,
    pub read: u32,
    pub failed: u32,
    pub cancelled: u32,
    pub charged: i64,
    pub refunded: i64,
}

impl RecipientCounts {
    /// All `total` recipients pending, nothing charged.
    pub fn new(total: u32) -> Self {
        Self {
            total,
            pending: total,
            ..Self::default()
        }
    }

    fn slot(&mut self, status: RecipientStatus) -> &mut u32 {
        match status {
            RecipientStatus::Pending => &mut self.pending,
            RecipientStatus::Queued => &mut self.queued,
            RecipientStatus::Sent => &mut self.sent,
            RecipientStatus::Delivered => &mut self.delivered,
            RecipientStatus::Read => &mut self.read,
            RecipientStatus::Failed => &mut self.failed,
            RecipientStatus::Cancelled => &mut self.cancelled,
        }
    }

    /// The number of recipients in `status`.
    pub fn of(&self, status: RecipientStatus) -> u32 {
        let mut copy = *self;
        *copy.slot(status)
    }

    /// The counts after `n` recipients moved from `from` to `to` (saturating: counts never
    /// underflow, and the aggregate only moves recipients that are where it says).
    pub fn moved(mut self, from: RecipientStatus, to: RecipientStatus, n: u32) -> Self {
        let f = self.slot(from);
        *f = f.saturating_sub(n);
        let t = self.slot(to);
        *t = t.saturating_add(n);
        self
    }

    /// The sum over every status (equals `total` when the counts are consistent).
    pub fn sum(&self) -> u64 {
        [
            self.pending,
            self.queued,
            self.sent,
            self.delivered,
            self.read,
            self.failed,
            self.cancelled,
        ]
        .iter()
        .map(|n| u64::from(*n))
        .sum()
    }

    /// Every recipient has a final status (see [`RecipientStatus::is_final`]).
    pub fn all_final(&self) -> bool {
        self.pending == 0 && self.queued == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_recipients_keeps_the_sum_and_never_underflows() {
        let counts = RecipientCounts::new(3).moved(RecipientStatus::Pending, RecipientStatus::Queued, 2);
        assert_eq!((counts.pending, counts.queued, counts.sum()), (1, 2, 3));
        let counts = counts.moved(RecipientStatus::Sent, RecipientStatus::Read, 1);
        assert_eq!(counts.sent, 0);
        assert!(!counts.all_final());
        assert_eq!(counts.of(RecipientStatus::Queued), 2);
    }

    #[test]
    fn campaign_ids_are_short_lowercase_names() {
        assert!(valid_campaign_id("black-friday_2026"));
        assert!(!valid_campaign_id(""));
        assert!(!valid_campaign_id("Black Friday"));
        assert!(!valid_campaign_id(&"a".repeat(65)));
        assert!(!valid_campaign_id("a:b"));
    }

    #[test]
    fn references_name_the_campaign_and_the_recipient() {
        assert_eq!(campaign_local_id("bf"), "campaign_bf");
        assert_eq!(reservation_reference("bf", 1), "campaign:bf:reserve:1");
        assert_eq!(capture_reference("bf", 2), "campaign:bf:batch:2");
        assert_eq!(refund_reference("bf", "ct_1"), "refund:recipient_failed:bf:ct_1");
        assert_eq!(release_reference("bf"), "campaign:bf:release");
        assert_eq!(message_key("bf", "ct_1"), "campaign:bf:ct_1");
        assert!(message_key("bf", "ct_1").starts_with(MESSAGE_KEY_PREFIX));
    }

    #[test]
    fn only_pending_and_queued_recipients_are_not_final() {
        assert!(!RecipientStatus::Pending.is_final());
        assert!(!RecipientStatus::Queued.is_final());
        assert!(RecipientStatus::Sent.is_final());
        assert!(RecipientStatus::Cancelled.is_final());
        assert!(!RecipientStatus::Cancelled.was_run());
        assert!(RecipientStatus::Failed.was_run());
    }
}
