//! Campaigns: queries `campaigns(status, first, after)` (newest first, with their counts) and
//! `campaign(id)` with its `recipients(status, first, after)` in sending order; mutations
//! `createCampaign`, `scheduleCampaign`, `pauseCampaign`, `resumeCampaign`, `cancelCampaign`.
//!
//! Reading: owner, admin, agent, finance, auditor. Running campaigns: owner and admin; anyone
//! else gets `FORBIDDEN`. A campaign's segment is resolved here, once, at creation: the given
//! contact ids plus the contacts carrying every given tag (not erased, not opted out), less the
//! exclusions. Scheduling reserves recipients × the price list's `broadcast_recipient` price on
//! the main wallet first: a wallet that cannot pay answers `INSUFFICIENT_BALANCE` with
//! `required` and `available` (milli-tokens) and the campaign stays a draft. Amounts are
//! milli-tokens. Mutations answer from the write side; queries read the read models a moment
//! behind the log.

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chronicle_commands::campaigns::{CampaignConfig, CampaignService};
use chronicle_commands::keystore::KeyStore;
use chronicle_domain::campaign::{
    valid_campaign_id, Campaign, CampaignStatus as DomainStatus, NewCampaign, MAX_RECIPIENTS,
};
use chronicle_projections::campaigns::{self as read, CampaignRow, RecipientRow};
use chrono::{DateTime, Utc};

use super::receipt::{receipt, CampaignReservation, Receipt};
use super::{allowed, commands, connection, metadata, page_size, pool};
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

fn campaign_id(id: &str) -> Result<&str, ApiError> {
    let id = id.trim();
    if valid_campaign_id(id) {
        Ok(id)
    } else {
        Err(ApiError::bad_request(
            "BAD_CAMPAIGN_ID",
            format!("{id:?} is not a campaign id (1 to 64 of a-z, 0-9, _ and -)"),
        ))
    }
}

fn service(ctx: &Context<'_>) -> Result<CampaignService, ApiError> {
    let keys = ctx
        .data::<KeyStore>()
        .map_err(|_| ApiError::Unavailable("no key store in the schema".into()))?;
    Ok(CampaignService::new(
        commands(ctx)?.clone(),
        keys.clone(),
        CampaignConfig::default(),
    ))
}

/// A campaign's status.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CampaignStatus {
    /// Created, not scheduled yet; nothing is reserved.
    Draft,
    /// Scheduled (its price reserved), waiting for `startAt`.
    Scheduled,
    /// Sending, one batch of recipients at a time.
    Running,
    /// Paused from SCHEDULED or RUNNING: no new batch starts until it is resumed.
    Paused,
    /// Every recipient has a final status; what was left of the reservation is released. Final.
    Completed,
    /// Stopped for good: pending recipients were never sent anything and the rest of the
    /// reservation is released. Final.
    Cancelled,
}

impl CampaignStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(stored: &str) -> Self {
        [
            Self::Draft,
            Self::Scheduled,
            Self::Running,
            Self::Paused,
            Self::Completed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == stored)
        .unwrap_or(Self::Draft)
    }

    fn from_domain(status: DomainStatus) -> Self {
        Self::parse(status.as_str())
    }
}

/// Where one recipient stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum RecipientStatus {
    /// Not put in a batch yet; nothing charged.
    Pending,
    /// In a batch: charged and handed to the recipient's conversation.
    Queued,
    /// The provider accepted the message.
    Sent,
    /// WhatsApp reported the message delivered.
    Delivered,
    /// WhatsApp reported the message read.
    Read,
    /// The message could not be queued or the provider refused it (see `reason`); refunded.
    Failed,
    /// Never sent anything (the campaign was cancelled while it was pending); nothing charged.
    Cancelled,
}

impl RecipientStatus {
    const ALL: [Self; 7] = [
        Self::Pending,
        Self::Queued,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Failed,
        Self::Cancelled,
    ];

    fn as_str(self) -> &'static str {
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

    fn parse(stored: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == stored)
            .unwrap_or(Self::Pending)
    }
}

/// Recipients per status.
#[derive(SimpleObject)]
pub struct CampaignCounts {
    /// Every recipient of the campaign (the sum of the other counts).
    pub total: i32,
    /// Recipients not put in a batch yet.
    pub pending: i32,
    /// Recipients charged and handed to their conversation, without an outcome yet.
    pub queued: i32,
    /// Recipients whose message the provider accepted (not delivered yet).
    pub sent: i32,
    /// Recipients whose message was delivered (not read yet).
    pub delivered: i32,
    /// Recipients whose message was read.
    pub read: i32,
    /// Recipients whose message failed (refunded).
    pub failed: i32,
    /// Recipients never sent anything because the campaign was cancelled.
    pub cancelled: i32,
}

/// One recipient of a campaign.
#[derive(SimpleObject)]
pub struct CampaignRecipient {
    /// The contact id.
    pub contact_id: String,
    /// 0-based place in the sending order.
    pub position: i32,
    /// Where the recipient stands.
    pub status: RecipientStatus,
    /// The number of the batch it was sent in (batches count from 1); null until it is run.
    pub batch: Option<i32>,
    /// Why it failed (a refusal's code, or the provider's code and title); null unless FAILED.
    pub reason: Option<String>,
    /// Milli-tokens refunded for it (0 unless it failed in a priced campaign).
    pub refunded: i64,
    /// When its status last changed (RFC 3339).
    pub updated_at: DateTime<Utc>,
}

impl From<RecipientRow> for CampaignRecipient {
    fn from(r: RecipientRow) -> Self {
        Self {
            contact_id: r.recipient,
            position: r.position,
            status: RecipientStatus::parse(&r.status),
            batch: r.batch,
            reason: r.reason,
            refunded: r.refunded,
            updated_at: r.updated_at,
        }
    }
}

/// A campaign with its counts and billing.
pub struct CampaignNode {
    row: CampaignRow,
}

/// A campaign (a template sent to a segment of contacts) with its counts and billing, from the
/// read model (a moment behind the log).
#[Object]
impl CampaignNode {
    /// The campaign's id (1 to 64 of a-z, 0-9, `_`, `-`), chosen at creation.
    async fn id(&self) -> &str {
        &self.row.campaign_id
    }

    /// The campaign's name, for people.
    async fn name(&self) -> &str {
        &self.row.name
    }

    /// The name of the WhatsApp template sent.
    async fn template_name(&self) -> &str {
        &self.row.template_name
    }

    /// The template's language code (e.g. `en`, `en_US`).
    async fn language(&self) -> &str {
        &self.row.language
    }

    /// The template's body parameters (`{{1}}`, `{{2}}`… in order), the same for every
    /// recipient.
    async fn variables(&self) -> &[String] {
        &self.row.variables
    }

    /// How the segment was chosen, for people (e.g. `3 contacts; tags: vip; 1 excluded`).
    async fn segment(&self) -> &str {
        &self.row.segment
    }

    /// The campaign's status.
    async fn status(&self) -> CampaignStatus {
        CampaignStatus::parse(&self.row.status)
    }

    /// The id of the user who created the campaign.
    async fn created_by(&self) -> &str {
        &self.row.created_by
    }

    /// When the campaign was created (RFC 3339).
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }

    /// When the campaign is scheduled to start (RFC 3339); null for a draft.
    async fn start_at(&self) -> Option<DateTime<Utc>> {
        self.row.start_at
    }

    /// When the campaign started running (RFC 3339); null until then.
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.row.started_at
    }

    /// When the campaign completed or was cancelled (RFC 3339); null until then.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.row.finished_at
    }

    /// Milli-tokens per recipient, set at scheduling (0: free, or not scheduled yet).
    async fn unit_price(&self) -> i64 {
        self.row.unit_price
    }

    /// Milli-tokens held by the reservation (recipients × unit price); 0 when free or not
    /// scheduled yet.
    async fn reserved(&self) -> i64 {
        self.row.reserved
    }

    /// Milli-tokens captured from the reservation, batch by batch.
    async fn charged(&self) -> i64 {
        self.row.charged
    }

    /// Milli-tokens refunded for failed recipients.
    async fn refunded(&self) -> i64 {
        self.row.refunded
    }

    /// Milli-tokens of the reservation returned (cancelled, or left at completion).
    async fn released(&self) -> i64 {
        self.row.released
    }

    /// How many batches have been started so far.
    async fn batches(&self) -> i32 {
        self.row.batches
    }

    /// The number of recipients in each status.
    async fn counts(&self) -> CampaignCounts {
        CampaignCounts {
            total: self.row.total,
            pending: self.row.pending,
            queued: self.row.queued,
            sent: self.row.sent,
            delivered: self.row.delivered,
            read: self.row.read,
            failed: self.row.failed,
            cancelled: self.row.cancelled,
        }
    }

    /// The recipients in sending order, optionally of one status. Readable by owner, admin,
    /// agent, finance and auditor (others get `FORBIDDEN`); a malformed `after` gets `BAD_CURSOR`.
    async fn recipients(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only recipients in this status; absent: every recipient.")] status: Option<RecipientStatus>,
        #[graphql(default = 50, desc = "Page size: 1 to 500, default 50 (`PAGE_TOO_LARGE` above 500).")] first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page; absent: the first page.")] after: Option<
            String,
        >,
    ) -> async_graphql::Result<Connection<String, CampaignRecipient>> {
        let caller = allowed(ctx, Permission::ReadCampaigns, "read campaigns").gql()?;
        let first = page_size(first, 500).gql()?;
        let page = read::recipients(
            pool(ctx).gql()?,
            &caller.tenant,
            &self.row.campaign_id,
            status.map(RecipientStatus::as_str),
            first,
            after.as_deref(),
        )
        .await;
        connection(after.is_some(), page, CampaignRecipient::from)
    }
}

#[derive(Default)]
pub struct CampaignsQuery;

#[Object]
impl CampaignsQuery {
    /// The tenant's campaigns, newest first. Readable by owner, admin, agent, finance and
    /// auditor (others get `FORBIDDEN`); a malformed `after` gets `BAD_CURSOR`.
    async fn campaigns(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only campaigns in this status; absent: every campaign.")] status: Option<CampaignStatus>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page; absent: the first page.")] after: Option<
            String,
        >,
    ) -> async_graphql::Result<Connection<String, CampaignNode>> {
        let caller = allowed(ctx, Permission::ReadCampaigns, "read campaigns").gql()?;
        let first = page_size(first, 100).gql()?;
        let page = read::list(
            pool(ctx).gql()?,
            &caller.tenant,
            status.map(CampaignStatus::as_str),
            first,
            after.as_deref(),
        )
        .await;
        connection(after.is_some(), page, |row| CampaignNode { row })
    }

    /// One campaign of the tenant, or null when there is none with this id (or it is not
    /// projected yet). Readable by owner, admin, agent, finance and auditor (others get
    /// `FORBIDDEN`); a malformed id gets `BAD_CAMPAIGN_ID`.
    async fn campaign(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The campaign's id: 1 to 64 of a-z, 0-9, `_` and `-`.")] id: String,
    ) -> async_graphql::Result<Option<CampaignNode>> {
        let caller = allowed(ctx, Permission::ReadCampaigns, "read campaigns").gql()?;
        let id = campaign_id(&id).gql()?;
        let row = read::campaign(pool(ctx).gql()?, &caller.tenant, id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(|row| CampaignNode { row }))
    }
}

/// A new campaign: a template to a segment.
#[derive(InputObject)]
pub struct CreateCampaignInput {
    /// 1 to 64 of a-z, 0-9, `_`, `-` (else `BAD_CAMPAIGN_ID`); creating the same campaign again
    /// changes nothing, another one under the same id gets `CAMPAIGN_ALREADY_EXISTS`.
    pub id: String,
    /// The campaign's name, for people; not blank (else `BLANK_FIELD`).
    pub name: String,
    /// The name of the WhatsApp template to send; not blank (else `BLANK_FIELD`). It is not
    /// checked here: recipients fail at sending time if it is not approved.
    pub template_name: String,
    /// The template's language code (e.g. `en`, `en_US`); not blank (else `BLANK_FIELD`).
    pub language: String,
    /// The template's body parameters, the same for every recipient (not personal data).
    #[graphql(default)]
    pub variables: Vec<String>,
    /// Contacts to include, first and in this order: contact ids (`ct_` then letters, digits,
    /// `_` or `-`, at most 64 characters; else `BAD_CONTACT_ID`). They are not checked for
    /// erasure or opt-out here.
    #[graphql(default)]
    pub contact_ids: Vec<String>,
    /// Include the contacts carrying every one of these tags (not erased, not opted out),
    /// oldest first. Tags are only trimmed, then compared with the contacts' lower-case tags.
    #[graphql(default)]
    pub tags: Vec<String>,
    /// Contacts to leave out (contact ids, as for `contactIds`).
    #[graphql(default)]
    pub exclude_contact_ids: Vec<String>,
}

/// A campaign mutation's receipt: the campaign's status and reservation after the command.
fn campaign_receipt(campaign: &Campaign, id: &str) -> Receipt {
    Receipt::new(id)
        .outcome_enum(CampaignStatus::from_domain(campaign.status()))
        .with_campaign(CampaignReservation {
            recipients: i32::try_from(campaign.counts().total).unwrap_or(i32::MAX),
            unit_price: campaign.unit_price(),
            reserved: campaign.reservation().map_or(0, |(_, amount)| amount),
        })
}

fn ids(list: &[String], field: &str) -> Result<Vec<String>, ApiError> {
    list.iter()
        .map(|id| {
            let id = id.trim();
            let valid = id.len() <= 64
                && id.strip_prefix("ct_").is_some_and(|rest| {
                    !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
            if valid {
                Ok(id.to_string())
            } else {
                Err(ApiError::bad_request(
                    "BAD_CONTACT_ID",
                    format!("{field}: {id:?} is not a contact id"),
                ))
            }
        })
        .collect()
}

#[derive(Default)]
pub struct CampaignsMutation;

#[Object]
impl CampaignsMutation {
    /// Creates a draft campaign with its recipients resolved now: `contactIds`, then the
    /// contacts carrying every tag in `tags` (not erased, not opted out), less
    /// `excludeContactIds`, repeats dropped. Owner and admin only (others get `FORBIDDEN`).
    /// Refusals: `BAD_CAMPAIGN_ID`, `BAD_CONTACT_ID`, `BLANK_FIELD`, `NO_RECIPIENTS`,
    /// `TOO_MANY_RECIPIENTS` (over 10,000), `CAMPAIGN_ALREADY_EXISTS`, `CONFLICT`;
    /// `UNKNOWN_CONTACTS` (a `contactIds` entry that is no contact of the tenant; the first five
    /// are named), and for the template: `UNKNOWN_TEMPLATE`, `TEMPLATE_NOT_APPROVED`,
    /// `WRONG_PARAMETER_COUNT` (`variables` must fill its variables). Nothing is recorded on a
    /// refusal. Scheduling checks the template again.
    async fn create_campaign(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The campaign: its id, template and segment.")] input: CreateCampaignInput,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::RunCampaigns, "run campaigns").gql()?;
            let id = campaign_id(&input.id).gql()?.to_string();
            let mut recipients = ids(&input.contact_ids, "contactIds").gql()?;
            let excluded = ids(&input.exclude_contact_ids, "excludeContactIds").gql()?;
            let tags: Vec<String> = input
                .tags
                .iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
            if !tags.is_empty() {
                let limit = i64::try_from(MAX_RECIPIENTS).unwrap_or(i64::MAX) + 1;
                recipients.extend(
                    read::segment_by_tags(pool(ctx).gql()?, &caller.tenant, &tags, limit)
                        .await
                        .map_err(ApiError::from)
                        .gql()?,
                );
            }
            recipients.retain(|r| !excluded.contains(r));
            let mut segment = Vec::new();
            if !input.contact_ids.is_empty() {
                segment.push(format!("{} contacts", input.contact_ids.len()));
            }
            if !tags.is_empty() {
                segment.push(format!("tags: {}", tags.join(", ")));
            }
            if !excluded.is_empty() {
                segment.push(format!("{} excluded", excluded.len()));
            }
            let new = NewCampaign {
                campaign_id: id.clone(),
                name: input.name,
                template_name: input.template_name,
                language: input.language,
                variables: input.variables,
                segment: segment.join("; "),
                recipients,
                created_by: caller.user_id.clone(),
                at: Utc::now(),
            };
            let service = service(ctx).gql()?;
            let meta = metadata(ctx, caller);
            service.create(new, &meta).await.gql()?;
            let campaign = service.load(&caller.tenant, &id).await.gql()?;
            Ok(campaign_receipt(&campaign, &id))
        })
        .await
    }

    /// Schedules a draft to start at `startAt` (now when absent): reserves recipients × the
    /// `broadcast_recipient` price on the main wallet first (`INSUFFICIENT_BALANCE`, with
    /// `required` and `available` milli-tokens in the extensions, otherwise, and it stays a
    /// draft). Repeating the same schedule changes nothing. Owner and admin only (others get
    /// `FORBIDDEN`). Other refusals: `BAD_CAMPAIGN_ID`, `UNKNOWN_CAMPAIGN`, `CAMPAIGN_NOT_DRAFT`,
    /// `AMOUNT_TOO_LARGE`, `CONFLICT`; and the template's, checked again since the draft was made
    /// (`UNKNOWN_TEMPLATE`, `TEMPLATE_NOT_APPROVED`, `WRONG_PARAMETER_COUNT`).
    async fn schedule_campaign(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The campaign's id: 1 to 64 of a-z, 0-9, `_` and `-`.")] id: String,
        #[graphql(desc = "When to start (RFC 3339); absent: now. A past time makes it due at once.")] start_at: Option<
            DateTime<Utc>,
        >,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::RunCampaigns, "run campaigns").gql()?;
            let id = campaign_id(&id).gql()?;
            let campaign = service(ctx)
                .gql()?
                .schedule(id, start_at.unwrap_or_else(Utc::now), &metadata(ctx, caller))
                .await
                .gql()?;
            Ok(campaign_receipt(&campaign, id))
        })
        .await
    }

    /// Pauses a SCHEDULED or RUNNING campaign: no new batch starts (messages already queued still
    /// go out); pausing a paused one changes nothing. Owner and admin only (others get
    /// `FORBIDDEN`). Refusals: `BAD_CAMPAIGN_ID`, `UNKNOWN_CAMPAIGN`, `CAMPAIGN_NOT_SCHEDULED` (a
    /// draft), `CAMPAIGN_FINISHED`, `CONFLICT`.
    async fn pause_campaign(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The campaign's id: 1 to 64 of a-z, 0-9, `_` and `-`.")] id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::RunCampaigns, "run campaigns").gql()?;
            let id = campaign_id(&id).gql()?;
            let service = service(ctx).gql()?;
            service.pause(id, &caller.user_id, &metadata(ctx, caller)).await.gql()?;
            let campaign = service.load(&caller.tenant, id).await.gql()?;
            Ok(campaign_receipt(&campaign, id))
        })
        .await
    }

    /// Carries on after a pause: back to RUNNING if it had started, else SCHEDULED; resuming a
    /// campaign that is not paused changes nothing. Owner and admin only (others get
    /// `FORBIDDEN`). Refusals: `BAD_CAMPAIGN_ID`, `UNKNOWN_CAMPAIGN`, `CAMPAIGN_NOT_SCHEDULED` (a
    /// draft), `CAMPAIGN_FINISHED`, `CONFLICT`.
    async fn resume_campaign(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The campaign's id: 1 to 64 of a-z, 0-9, `_` and `-`.")] id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::RunCampaigns, "run campaigns").gql()?;
            let id = campaign_id(&id).gql()?;
            let service = service(ctx).gql()?;
            service
                .resume(id, &caller.user_id, &metadata(ctx, caller))
                .await
                .gql()?;
            let campaign = service.load(&caller.tenant, id).await.gql()?;
            Ok(campaign_receipt(&campaign, id))
        })
        .await
    }

    /// Cancels a campaign that is not finished: pending recipients are never sent anything and
    /// the rest of the reservation is released; cancelling a cancelled one changes nothing.
    /// Owner and admin only (others get `FORBIDDEN`). Refusals: `BAD_CAMPAIGN_ID`,
    /// `UNKNOWN_CAMPAIGN`, `CAMPAIGN_FINISHED` (completed), `CONFLICT`.
    async fn cancel_campaign(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The campaign's id: 1 to 64 of a-z, 0-9, `_` and `-`.")] id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::RunCampaigns, "run campaigns").gql()?;
            let id = campaign_id(&id).gql()?;
            let service = service(ctx).gql()?;
            service
                .cancel(id, &caller.user_id, &metadata(ctx, caller))
                .await
                .gql()?;
            let campaign = service.load(&caller.tenant, id).await.gql()?;
            Ok(campaign_receipt(&campaign, id))
        })
        .await
    }
}
