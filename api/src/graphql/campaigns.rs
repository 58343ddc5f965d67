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

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chronicle_commands::campaigns::{CampaignConfig, CampaignService};
use chronicle_commands::keystore::KeyStore;
use chronicle_domain::campaign::{
    campaign_local_id, valid_campaign_id, Campaign, CampaignStatus as DomainStatus, NewCampaign, MAX_RECIPIENTS,
};
use chronicle_projections::campaigns::{self as read, CampaignRow, RecipientRow};
use chrono::{DateTime, Utc};

use super::contacts::commands;
use super::{caller, metadata, pool, require};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, IntoGraphql};

/// Whether the role may read campaigns.
pub fn reads_campaigns(role: Role) -> bool {
    matches!(
        role,
        Role::Owner | Role::Admin | Role::Agent | Role::Finance | Role::Auditor
    )
}

/// Whether the role may create, schedule, pause, resume and cancel campaigns.
pub fn runs_campaigns(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin)
}

fn allowed<'a>(ctx: &'a Context<'_>, check: fn(Role) -> bool, what: &str) -> Result<&'a Caller, ApiError> {
    let caller = caller(ctx)?;
    require(check(caller.role), caller, what)?;
    Ok(caller)
}

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
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
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
    Pending,
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
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
    pub total: i32,
    pub pending: i32,
    pub queued: i32,
    pub sent: i32,
    pub delivered: i32,
    pub read: i32,
    pub failed: i32,
    pub cancelled: i32,
}

/// One recipient of a campaign.
#[derive(SimpleObject)]
pub struct CampaignRecipient {
    /// The contact id.
    pub contact_id: String,
    /// 0-based place in the sending order.
    pub position: i32,
    pub status: RecipientStatus,
    pub batch: Option<i32>,
    /// Why it failed (a refusal's code, or the provider's code and title).
    pub reason: Option<String>,
    /// Milli-tokens refunded for it.
    pub refunded: i64,
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

#[Object]
impl CampaignNode {
    async fn id(&self) -> &str {
        &self.row.campaign_id
    }

    async fn name(&self) -> &str {
        &self.row.name
    }

    async fn template_name(&self) -> &str {
        &self.row.template_name
    }

    async fn language(&self) -> &str {
        &self.row.language
    }

    async fn variables(&self) -> &[String] {
        &self.row.variables
    }

    /// How the segment was chosen.
    async fn segment(&self) -> &str {
        &self.row.segment
    }

    async fn status(&self) -> CampaignStatus {
        CampaignStatus::parse(&self.row.status)
    }

    async fn created_by(&self) -> &str {
        &self.row.created_by
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }

    async fn start_at(&self) -> Option<DateTime<Utc>> {
        self.row.start_at
    }

    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.row.started_at
    }

    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.row.finished_at
    }

    /// Milli-tokens per recipient (0: free).
    async fn unit_price(&self) -> i64 {
        self.row.unit_price
    }

    /// Milli-tokens held by the reservation (recipients × unit price).
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

    async fn batches(&self) -> i32 {
        self.row.batches
    }

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

    /// The recipients in sending order, optionally of one status.
    async fn recipients(
        &self,
        ctx: &Context<'_>,
        status: Option<RecipientStatus>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 500))] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, CampaignRecipient>> {
        let caller = allowed(ctx, reads_campaigns, "read campaigns").gql()?;
        let page = read::recipients(
            pool(ctx).gql()?,
            &caller.tenant,
            &self.row.campaign_id,
            status.map(RecipientStatus::as_str),
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
                .map(|(cursor, row)| Edge::new(cursor, CampaignRecipient::from(row))),
        );
        Ok(connection)
    }
}

#[derive(Default)]
pub struct CampaignsQuery;

#[Object]
impl CampaignsQuery {
    /// The tenant's campaigns, newest first.
    async fn campaigns(
        &self,
        ctx: &Context<'_>,
        status: Option<CampaignStatus>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, CampaignNode>> {
        let caller = allowed(ctx, reads_campaigns, "read campaigns").gql()?;
        let page = read::list(
            pool(ctx).gql()?,
            &caller.tenant,
            status.map(CampaignStatus::as_str),
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
                .map(|(cursor, row)| Edge::new(cursor, CampaignNode { row })),
        );
        Ok(connection)
    }

    /// One campaign of the tenant, or null.
    async fn campaign(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Option<CampaignNode>> {
        let caller = allowed(ctx, reads_campaigns, "read campaigns").gql()?;
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
    /// 1 to 64 of a-z, 0-9, `_`, `-`; creating the same campaign again changes nothing.
    pub id: String,
    pub name: String,
    pub template_name: String,
    pub language: String,
    /// The template's body parameters, the same for every recipient (not personal data).
    #[graphql(default)]
    pub variables: Vec<String>,
    /// Contacts to include.
    #[graphql(default)]
    pub contact_ids: Vec<String>,
    /// Include the contacts carrying every one of these tags (not erased, not opted out).
    #[graphql(default)]
    pub tags: Vec<String>,
    /// Contacts to leave out.
    #[graphql(default)]
    pub exclude_contact_ids: Vec<String>,
}

/// What a campaign mutation did, from the write side.
#[derive(SimpleObject)]
pub struct CampaignReceipt {
    pub campaign_id: String,
    pub status: CampaignStatus,
    pub recipients: i32,
    /// Milli-tokens per recipient (0: free).
    pub unit_price: i64,
    /// Milli-tokens held on the main wallet for the campaign.
    pub reserved: i64,
    /// The campaign stream's last log position after the command.
    pub position: Option<i64>,
}

async fn receipt(
    ctx: &Context<'_>,
    caller: &Caller,
    campaign: &Campaign,
    id: &str,
) -> Result<CampaignReceipt, ApiError> {
    let position: Option<i64> = sqlx::query_scalar("SELECT max(global_position) FROM events WHERE aggregate_id = $1")
        .bind(caller.tenant.stream_id(&campaign_local_id(id)))
        .fetch_one(pool(ctx)?)
        .await?;
    Ok(CampaignReceipt {
        campaign_id: id.to_string(),
        status: CampaignStatus::from_domain(campaign.status()),
        recipients: i32::try_from(campaign.counts().total).unwrap_or(i32::MAX),
        unit_price: campaign.unit_price(),
        reserved: campaign.reservation().map_or(0, |(_, amount)| amount),
        position,
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
    /// Creates a draft campaign with its segment resolved now (see the module docs).
    async fn create_campaign(
        &self,
        ctx: &Context<'_>,
        input: CreateCampaignInput,
    ) -> async_graphql::Result<CampaignReceipt> {
        let caller = allowed(ctx, runs_campaigns, "run campaigns").gql()?;
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
        receipt(ctx, caller, &campaign, &id).await.gql()
    }

    /// Schedules a draft to start at `startAt` (now when absent): reserves its price on the
    /// main wallet first (`INSUFFICIENT_BALANCE` otherwise, and nothing is scheduled).
    async fn schedule_campaign(
        &self,
        ctx: &Context<'_>,
        id: String,
        start_at: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<CampaignReceipt> {
        let caller = allowed(ctx, runs_campaigns, "run campaigns").gql()?;
        let id = campaign_id(&id).gql()?;
        let campaign = service(ctx)
            .gql()?
            .schedule(id, start_at.unwrap_or_else(Utc::now), &metadata(ctx, caller))
            .await
            .gql()?;
        receipt(ctx, caller, &campaign, id).await.gql()
    }

    /// Stops starting batches (messages already queued still go out).
    async fn pause_campaign(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<CampaignReceipt> {
        let caller = allowed(ctx, runs_campaigns, "run campaigns").gql()?;
        let id = campaign_id(&id).gql()?;
        let service = service(ctx).gql()?;
        service.pause(id, &caller.user_id, &metadata(ctx, caller)).await.gql()?;
        let campaign = service.load(&caller.tenant, id).await.gql()?;
        receipt(ctx, caller, &campaign, id).await.gql()
    }

    /// Carries on after a pause.
    async fn resume_campaign(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<CampaignReceipt> {
        let caller = allowed(ctx, runs_campaigns, "run campaigns").gql()?;
        let id = campaign_id(&id).gql()?;
        let service = service(ctx).gql()?;
        service
            .resume(id, &caller.user_id, &metadata(ctx, caller))
            .await
            .gql()?;
        let campaign = service.load(&caller.tenant, id).await.gql()?;
        receipt(ctx, caller, &campaign, id).await.gql()
    }

    /// Cancels: pending recipients are never sent anything and the rest of the reservation is
    /// released.
    async fn cancel_campaign(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<CampaignReceipt> {
        let caller = allowed(ctx, runs_campaigns, "run campaigns").gql()?;
        let id = campaign_id(&id).gql()?;
        let service = service(ctx).gql()?;
        service
            .cancel(id, &caller.user_id, &metadata(ctx, caller))
            .await
            .gql()?;
        let campaign = service.load(&caller.tenant, id).await.gql()?;
        receipt(ctx, caller, &campaign, id).await.gql()
    }
}
