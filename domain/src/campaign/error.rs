//! Refusals of the `Campaign` aggregate, named after the rule they enforce.

use chrono::{DateTime, Utc};

/// Why a campaign command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignError {
    /// Names (campaign name, template, language, recipients, reasons) must not be blank.
    #[error("{field} must not be blank")]
    Blank { field: &'static str },
    /// A campaign id is 1 to 64 characters of a-z, 0-9, '_' and '-'.
    #[error("{campaign_id:?} is not a campaign id (1 to 64 characters of a-z, 0-9, '_', '-')")]
    InvalidCampaignId { campaign_id: String },
    /// A campaign is sent to at least one recipient.
    #[error("a campaign needs at least one recipient")]
    NoRecipients,
    /// Every recipient named by id is a contact of the tenant (checked when the campaign is
    /// created, not when it runs); `ids` are the first few unknown ones, `count` all of them.
    #[error("{count} recipient(s) are not contacts of this tenant: {}{}", .ids.join(", "), if *.count > .ids.len() { ", …" } else { "" })]
    UnknownContacts { ids: Vec<String>, count: usize },
    /// At most `max` recipients per campaign.
    #[error("{count} recipients is more than the {max} a campaign may have")]
    TooManyRecipients { count: usize, max: usize },
    /// A campaign is created once; another request under its id is refused.
    #[error("campaign {campaign_id} already exists")]
    CampaignAlreadyExists { campaign_id: String },
    /// Only a created campaign takes commands.
    #[error("no such campaign")]
    UnknownCampaign,
    /// Prices are zero (free) or more milli-tokens.
    #[error("a unit price must not be negative; got {unit_price}")]
    NegativePrice { unit_price: i64 },
    /// A priced campaign is scheduled only with the wallet reservation that pays for it.
    #[error("a priced campaign needs its wallet reservation")]
    ReservationRequired,
    /// Recipients × unit price must fit in i64 milli-tokens.
    #[error("recipients × unit price overflows")]
    AmountTooLarge,
    /// Only a draft is scheduled (a repeat of the same schedule changes nothing).
    #[error("only a draft campaign can be scheduled; this one is {status}")]
    CampaignNotDraft { status: &'static str },
    /// Starting, pausing and resuming need a scheduled campaign.
    #[error("the campaign is {status}, not scheduled")]
    CampaignNotScheduled { status: &'static str },
    /// A campaign starts at or after its start time.
    #[error("the campaign starts at {start_at}")]
    NotDueYet { start_at: DateTime<Utc> },
    /// Batches run only while the campaign is running.
    #[error("the campaign is {status}, not running")]
    CampaignNotRunning { status: &'static str },
    /// A batch has at least one recipient.
    #[error("a batch needs a size of at least 1")]
    InvalidBatchSize,
    /// One batch at a time: the previous one must be dispatched first.
    #[error("batch {batch} has not been dispatched yet")]
    BatchInFlight { batch: u32 },
    /// Every recipient has been run.
    #[error("no recipient is left to run")]
    NothingPending,
    /// Dispatch names a batch that was started.
    #[error("no batch {batch}")]
    UnknownBatch { batch: u32 },
    /// Outcomes name a recipient of the campaign.
    #[error("{recipient} is not a recipient of this campaign")]
    UnknownRecipient { recipient: String },
    /// Outcomes are only for recipients that were run (in a batch).
    #[error("{recipient} has not been sent anything")]
    RecipientNotRun { recipient: String },
    /// A completed or cancelled campaign is final.
    #[error("the campaign is {status}")]
    CampaignFinished { status: &'static str },
}

impl CampaignError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Blank { .. } => "BLANK_FIELD",
            Self::InvalidCampaignId { .. } => "INVALID_CAMPAIGN_ID",
            Self::NoRecipients => "NO_RECIPIENTS",
            Self::UnknownContacts { .. } => "UNKNOWN_CONTACTS",
            Self::TooManyRecipients { .. } => "TOO_MANY_RECIPIENTS",
            Self::CampaignAlreadyExists { .. } => "CAMPAIGN_ALREADY_EXISTS",
            Self::UnknownCampaign => "UNKNOWN_CAMPAIGN",
            Self::NegativePrice { .. } => "NEGATIVE_PRICE",
            Self::ReservationRequired => "RESERVATION_REQUIRED",
            Self::AmountTooLarge => "AMOUNT_TOO_LARGE",
            Self::CampaignNotDraft { .. } => "CAMPAIGN_NOT_DRAFT",
            Self::CampaignNotScheduled { .. } => "CAMPAIGN_NOT_SCHEDULED",
            Self::NotDueYet { .. } => "NOT_DUE_YET",
            Self::CampaignNotRunning { .. } => "CAMPAIGN_NOT_RUNNING",
            Self::InvalidBatchSize => "INVALID_BATCH_SIZE",
            Self::BatchInFlight { .. } => "BATCH_IN_FLIGHT",
            Self::NothingPending => "NOTHING_PENDING",
            Self::UnknownBatch { .. } => "UNKNOWN_BATCH",
            Self::UnknownRecipient { .. } => "UNKNOWN_RECIPIENT",
            Self::RecipientNotRun { .. } => "RECIPIENT_NOT_RUN",
            Self::CampaignFinished { .. } => "CAMPAIGN_FINISHED",
        }
    }
}
