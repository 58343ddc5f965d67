//! Events of the `Campaign` aggregate. Names are contracts: never renamed once stored.
//!
//! Every event carries the campaign's [`RecipientCounts`] after it (derived), so the read
//! models copy counts and never recount.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::{CampaignStatus, RecipientCounts, RefundDue};

/// Facts about a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum CampaignEvent {
    /// A draft campaign was created with its recipients (deduplicated, in sending order).
    CampaignCreated {
        campaign_id: String,
        name: String,
        template_name: String,
        language: String,
        variables: Vec<String>,
        segment: String,
        recipients: Vec<String>,
        created_by: String,
        counts: RecipientCounts,
        at: DateTime<Utc>,
    },
    /// The campaign was scheduled. `reserved` = recipients × `unit_price`, held on the wallet
    /// under `reservation` (`None` for a free campaign).
    CampaignScheduled {
        start_at: DateTime<Utc>,
        unit_price: i64,
        reserved: i64,
        reservation: Option<String>,
        counts: RecipientCounts,
        at: DateTime<Utc>,
    },
    /// The start time came and the campaign began running.
    CampaignStarted { counts: RecipientCounts, at: DateTime<Utc> },
    /// A batch of recipients was run: queued, and `charged` (= recipients × unit price)
    /// captured from the reservation under `capture` (`None` when free).
    CampaignBatchStarted {
        batch: u32,
        recipients: Vec<String>,
        unit_price: i64,
        charged: i64,
        capture: Option<String>,
        counts: RecipientCounts,
        at: DateTime<Utc>,
    },
    /// Every message of the batch was handed to its conversation.
    CampaignBatchDispatched {
        batch: u32,
        counts: RecipientCounts,
        at: DateTime<Utc>,
    },
    /// The provider accepted a recipient's message.
    CampaignRecipientSent {
        recipient: String,
        counts: RecipientCounts,
        at: DateTime<Utc>,
    },
    /// A recipient's message was delivered.
    CampaignRecipientDelivered {
        recipient: String,
        counts: RecipientCounts,
        at: DateTime<Utc>,
    },
    /// A recipient read the message.
    CampaignRecipientRead {
        recipient: String,
        counts: RecipientCounts,
        at: DateTime<Utc>,
    },
    /// A recipient's message failed; `refund` is what they are owed (`None` when free).
    CampaignRecipientFailed {
        recipient: String,
        batch: u32,
        reason: String,
        refund: Option<RefundDue>,
        counts: RecipientCounts,
        at: DateTime<Utc>,
    },
    CampaignPaused {
        by: String,
        counts: RecipientCounts,
        at: DateTime<Utc>,
    },
    /// Resumed to `status` (scheduled if it had not started, running otherwise).
    CampaignResumed {
        by: String,
        status: CampaignStatus,
        counts: RecipientCounts,
        at: DateTime<Utc>,
    },
    /// Cancelled: `cancelled` pending recipients will never be run; `released` milli-tokens
    /// of the reservation are returned under `release` (`None` when nothing is held).
    CampaignCancelled {
        by: String,
        cancelled: u32,
        release: Option<String>,
        released: i64,
        counts: RecipientCounts,
        at: DateTime<Utc>,
    },
    /// Every recipient has a final status. `released` is what was left of the reservation
    /// (normally zero: every recipient was charged), returned under `release`.
    CampaignCompleted {
        release: Option<String>,
        released: i64,
        counts: RecipientCounts,
        at: DateTime<Utc>,
    },
}

impl CampaignEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "CampaignCreated",
        "CampaignScheduled",
        "CampaignStarted",
        "CampaignBatchStarted",
        "CampaignBatchDispatched",
        "CampaignRecipientSent",
        "CampaignRecipientDelivered",
        "CampaignRecipientRead",
        "CampaignRecipientFailed",
        "CampaignPaused",
        "CampaignResumed",
        "CampaignCancelled",
        "CampaignCompleted",
    ];

    /// The campaign's counts after the event.
    pub fn counts(&self) -> RecipientCounts {
        match self {
            Self::CampaignCreated { counts, .. }
            | Self::CampaignScheduled { counts, .. }
            | Self::CampaignStarted { counts, .. }
            | Self::CampaignBatchStarted { counts, .. }
            | Self::CampaignBatchDispatched { counts, .. }
            | Self::CampaignRecipientSent { counts, .. }
            | Self::CampaignRecipientDelivered { counts, .. }
            | Self::CampaignRecipientRead { counts, .. }
            | Self::CampaignRecipientFailed { counts, .. }
            | Self::CampaignPaused { counts, .. }
            | Self::CampaignResumed { counts, .. }
            | Self::CampaignCancelled { counts, .. }
            | Self::CampaignCompleted { counts, .. } => *counts,
        }
    }
}

impl DomainEvent for CampaignEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CampaignCreated { .. } => "CampaignCreated",
            Self::CampaignScheduled { .. } => "CampaignScheduled",
            Self::CampaignStarted { .. } => "CampaignStarted",
            Self::CampaignBatchStarted { .. } => "CampaignBatchStarted",
            Self::CampaignBatchDispatched { .. } => "CampaignBatchDispatched",
            Self::CampaignRecipientSent { .. } => "CampaignRecipientSent",
            Self::CampaignRecipientDelivered { .. } => "CampaignRecipientDelivered",
            Self::CampaignRecipientRead { .. } => "CampaignRecipientRead",
            Self::CampaignRecipientFailed { .. } => "CampaignRecipientFailed",
            Self::CampaignPaused { .. } => "CampaignPaused",
            Self::CampaignResumed { .. } => "CampaignResumed",
            Self::CampaignCancelled { .. } => "CampaignCancelled",
            Self::CampaignCompleted { .. } => "CampaignCompleted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
