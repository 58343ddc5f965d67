//! Commands of the `Campaign` aggregate. Time comes in each command (`at`); the write side
//! resolves the segment, prices it and reserves the tokens, and reports each recipient's
//! outcome.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::RecipientOutcome;

/// A request to change a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum CampaignCommand {
    /// Create the campaign (a draft). Repeating the same request changes nothing.
    CreateCampaign(NewCampaign),
    /// Schedule a draft to start at `start_at`, at `unit_price` milli-tokens per recipient. A
    /// priced campaign records the reservation it needs (recipients × unit price), which the
    /// write side has made on the wallet before under `reservation` (see
    /// `reservation_reference`); a free one needs none (and ignores it). Repeating the same
    /// request changes nothing.
    ScheduleCampaign {
        start_at: DateTime<Utc>,
        unit_price: i64,
        reservation: Option<String>,
        at: DateTime<Utc>,
    },
    /// Start a scheduled campaign once its start time has come.
    StartCampaign { at: DateTime<Utc> },
    /// Put the next `size` pending recipients in a batch (charged from the reservation). One
    /// batch at a time: the previous one must have been dispatched.
    RunBatch { size: u32, at: DateTime<Utc> },
    /// Every message of the batch was handed to its conversation (or failed at once).
    MarkBatchDispatched { batch: u32, at: DateTime<Utc> },
    /// The sender's (or the dispatcher's) outcome for one recipient.
    RecordRecipientOutcome {
        recipient: String,
        outcome: RecipientOutcome,
        at: DateTime<Utc>,
    },
    /// Stop starting batches (messages already queued still go out).
    PauseCampaign { by: String, at: DateTime<Utc> },
    /// Carry on after a pause.
    ResumeCampaign { by: String, at: DateTime<Utc> },
    /// Stop for good: pending recipients are cancelled and the rest of the reservation
    /// released.
    CancelCampaign { by: String, at: DateTime<Utc> },
}

/// A new campaign: a template sent to a segment already resolved to contact ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewCampaign {
    /// `[a-z0-9_-]{1,64}`; the stream is `campaign_<id>`.
    pub campaign_id: String,
    pub name: String,
    pub template_name: String,
    pub language: String,
    /// The template's body parameters, the same for every recipient (marketing text, never
    /// personal data: it is stored in the clear).
    pub variables: Vec<String>,
    /// How the segment was chosen (e.g. `tags: vip`), for people reading the campaign.
    pub segment: String,
    /// The recipients' contact ids (keyed hashes), in sending order; repeats are dropped.
    pub recipients: Vec<String>,
    pub created_by: String,
    pub at: DateTime<Utc>,
}
