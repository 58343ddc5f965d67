//! Leads and the sales pipeline: the `leads` connection (filters, sorting), `lead(id)`, the
//! `leadFunnel`, and the lead mutations.
//!
//! Who may do what (DOMAIN.md roles): owner and admin read and change every lead; an agent reads
//! every lead, captures leads (a new lead they capture is assigned to them) and changes only the
//! leads assigned to them; an auditor reads but never writes; finance, technician and integrator
//! neither read nor write leads. A refusal is `FORBIDDEN`.

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chronicle_commands::dispatch::Commands;
use chronicle_commands::error::{CommandError, DomainError};
use chronicle_commands::keystore::KeyStore;
use chronicle_commands::leads::{is_lead_id, normalize_email, LeadInput, Leads};
use chronicle_domain::lead::{
    BudgetRange, Lead as LeadState, LeadCommand, LeadError, LeadSource as Source, LostReason, Money, Priority,
    PropertyType, Stage,
};
use chronicle_domain::phone::PhoneNumber;
use chronicle_projections::leads::{self as model, LeadFilter as ModelFilter, LeadRow, SortField};
use chrono::{DateTime, Utc};

use super::receipt::{receipt, Receipt};
use super::{caller, connection_with, metadata, page_size, pool, Counted};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

/// A lead's stage in the pipeline.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum LeadStage {
    /// Just captured, not worked yet (the first stage).
    New,
    /// The prospect was contacted (after NEW); a reopened lead restarts here.
    Contacted,
    /// The prospect was qualified (after CONTACTED).
    Qualified,
    /// A proposal was sent (after QUALIFIED).
    ProposalSent,
    /// Terms are being negotiated (after PROPOSAL_SENT); the only stage `winLead` accepts.
    Negotiation,
    /// Closed as won with `winLead`: converted into a customer. Final.
    Won,
    /// Closed as lost with `markLeadLost`, from any open stage; `reopenLead` reopens it.
    Lost,
}

impl LeadStage {
    fn domain(self) -> Stage {
        match self {
            Self::New => Stage::New,
            Self::Contacted => Stage::Contacted,
            Self::Qualified => Stage::Qualified,
            Self::ProposalSent => Stage::ProposalSent,
            Self::Negotiation => Stage::Negotiation,
            Self::Won => Stage::Won,
            Self::Lost => Stage::Lost,
        }
    }

    fn from_domain(stage: Stage) -> Self {
        match stage {
            Stage::New => Self::New,
            Stage::Contacted => Self::Contacted,
            Stage::Qualified => Self::Qualified,
            Stage::ProposalSent => Self::ProposalSent,
            Stage::Negotiation => Self::Negotiation,
            Stage::Won => Self::Won,
            Stage::Lost => Self::Lost,
        }
    }

    fn parse(s: &str) -> Self {
        Self::from_domain(Stage::parse(s).unwrap_or_default())
    }
}

/// Where a lead came from.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum LeadSource {
    /// An inbound WhatsApp conversation.
    Whatsapp,
    /// A website form (contact, service or quote request).
    WebForm,
    /// The website chatbot.
    Chatbot,
    /// The website calculator (the visitor priced a system): the highest-scoring source.
    Calculator,
    /// A phone call.
    Call,
    /// An e-mail.
    Email,
    /// A bulk import (spreadsheet, another CRM).
    Import,
    /// Entered by hand by a user.
    Manual,
}

impl LeadSource {
    const PAIRS: [(Self, Source); 8] = [
        (Self::Whatsapp, Source::Whatsapp),
        (Self::WebForm, Source::WebForm),
        (Self::Chatbot, Source::Chatbot),
        (Self::Calculator, Source::Calculator),
        (Self::Call, Source::Call),
        (Self::Email, Source::Email),
        (Self::Import, Source::Import),
        (Self::Manual, Source::Manual),
    ];

    fn domain(self) -> Source {
        Self::PAIRS
            .iter()
            .find(|(g, _)| *g == self)
            .map_or(Source::Manual, |(_, d)| *d)
    }

    fn parse(s: &str) -> Option<Self> {
        let source = Source::parse(s)?;
        Self::PAIRS.iter().find(|(_, d)| *d == source).map(|(g, _)| *g)
    }
}

/// Why a lead was lost.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum LeadLostReason {
    /// The prospect never answered.
    NoResponse,
    /// The price was too high for them.
    PriceTooHigh,
    /// They have no budget.
    NoBudget,
    /// They bought from a competitor.
    ChoseCompetitor,
    /// They are not interested (any more).
    NotInterested,
    /// Not now; maybe later.
    BadTiming,
    /// The site is outside the area served.
    OutOfServiceArea,
    /// The site or need does not fit what is sold.
    NotAFit,
    /// Anything else: `markLeadLost` then requires a non-blank `note` (`LOST_REASON_NEEDS_NOTE`).
    Other,
}

impl LeadLostReason {
    fn domain(self) -> LostReason {
        match self {
            Self::NoResponse => LostReason::NoResponse,
            Self::PriceTooHigh => LostReason::PriceTooHigh,
            Self::NoBudget => LostReason::NoBudget,
            Self::ChoseCompetitor => LostReason::ChoseCompetitor,
            Self::NotInterested => LostReason::NotInterested,
            Self::BadTiming => LostReason::BadTiming,
            Self::OutOfServiceArea => LostReason::OutOfServiceArea,
            Self::NotAFit => LostReason::NotAFit,
            Self::Other => LostReason::Other,
        }
    }
}

/// How urgently a lead should be worked.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Default)]
pub enum LeadPriority {
    /// Lowest priority.
    Low,
    /// The default priority.
    #[default]
    Normal,
    /// High priority (adds 10 points to the score).
    High,
    /// Highest priority (adds 15 points to the score).
    Urgent,
}

impl LeadPriority {
    fn domain(self) -> Priority {
        match self {
            Self::Low => Priority::Low,
            Self::Normal => Priority::Normal,
            Self::High => Priority::High,
            Self::Urgent => Priority::Urgent,
        }
    }
}

/// The kind of property an installation is for.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum LeadPropertyType {
    /// A home.
    Residential,
    /// Business premises.
    Commercial,
    /// A farm.
    Agricultural,
    /// An industrial site.
    Industrial,
}

impl LeadPropertyType {
    fn domain(self) -> PropertyType {
        match self {
            Self::Residential => PropertyType::Residential,
            Self::Commercial => PropertyType::Commercial,
            Self::Agricultural => PropertyType::Agricultural,
            Self::Industrial => PropertyType::Industrial,
        }
    }
}

/// Filters of `leads`; every field narrows.
#[derive(InputObject, Default)]
pub struct LeadFilter {
    /// Only leads currently in this stage.
    pub stage: Option<LeadStage>,
    /// Only leads whose first capture came from this source.
    pub source: Option<LeadSource>,
    /// Only leads assigned to this sales user id (exact match).
    pub assignee: Option<String>,
    /// Only leads with a score of at least this (0-100, inclusive).
    pub score_min: Option<i32>,
    /// Only leads with a score of at most this (0-100, inclusive).
    pub score_max: Option<i32>,
    /// Only leads created at or after this time (RFC 3339).
    pub created_from: Option<DateTime<Utc>>,
    /// Only leads created before this time (RFC 3339, exclusive).
    pub created_to: Option<DateTime<Utc>>,
}

/// What `leads` sorts by.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Default)]
pub enum LeadSortField {
    /// The time the lead was captured (the default).
    #[default]
    CreatedAt,
    /// The lead score, 0-100.
    Score,
    /// The time of the lead's last change.
    UpdatedAt,
}

/// A sort direction.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Default)]
pub enum LeadSortDirection {
    /// Smallest first: oldest, or lowest score.
    Asc,
    /// Largest first: newest, or highest score (the default).
    #[default]
    Desc,
}

/// The order of `leads` (ties broken by id in the same direction).
#[derive(InputObject, Default)]
pub struct LeadSort {
    /// What to sort by; default CREATED_AT.
    #[graphql(default)]
    pub field: LeadSortField,
    /// The direction; default DESC.
    #[graphql(default)]
    pub direction: LeadSortDirection,
}

/// One factor of a score and the points it added.
#[derive(SimpleObject, serde::Deserialize)]
pub struct LeadScoreReason {
    /// The factor, snake_case: `high_intent_source`, `conversational_source`, `inbound_source`,
    /// `listed_source`, `budget_given`, `system_size_given`, `reachable_by_phone`,
    /// `reachable_by_email`, `property_type_given`, `interest_stated`, `repeated_captures`,
    /// `high_priority` or `urgent_priority`.
    pub factor: String,
    /// The points the factor added to the score.
    pub points: i32,
}

/// A stated budget, in minor units.
#[derive(SimpleObject)]
pub struct LeadBudget {
    /// The lower bound, in minor units of `currency` (cents for USD).
    pub min_minor: i64,
    /// The upper bound, in minor units of `currency`; at least `minMinor`.
    pub max_minor: i64,
    /// The ISO 4217 currency code, e.g. `USD`.
    pub currency: String,
}

/// An amount of money in minor units.
#[derive(SimpleObject)]
pub struct LeadMoney {
    /// The amount, in minor units of `currency` (cents for USD); never negative.
    pub amount_minor: i64,
    /// The ISO 4217 currency code, e.g. `USD`.
    pub currency: String,
}

/// A prospect in the sales pipeline.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Lead {
    /// The lead's id: `lead_` and a UUID.
    pub id: ID,
    /// The id of the prospect's contact (`ct_` and 32 hex digits: its phone number's, else its
    /// e-mail address's); null when unknown.
    pub contact_id: Option<String>,
    /// The lead's current stage.
    pub stage: LeadStage,
    /// The source of the lead's first capture (null only for a source this API does not know).
    pub source: Option<LeadSource>,
    /// The lead score, 0-100: the sum of the points in `scoreReasons`, capped at 100.
    pub score: i32,
    /// The factors that make up the score, with their points.
    pub score_reasons: Vec<LeadScoreReason>,
    /// The id of the sales user the lead is assigned to; null when unassigned.
    pub assignee: Option<String>,
    /// The prospect's name, from the latest capture that gave one; null when none was given,
    /// and after the contact was erased.
    pub name: Option<String>,
    /// The prospect's phone number in E.164 (`+263771234567`), from the latest capture that gave
    /// one; null when none was given, and after the contact was erased.
    pub phone: Option<String>,
    /// The prospect's e-mail address (lower-case), from the latest capture that gave one; null
    /// when none was given, and after the contact was erased.
    pub email: Option<String>,
    /// The product line asked about (`solar`, `starlink`…), from the latest capture that named
    /// one; null when none did.
    pub interest: Option<String>,
    /// The highest priority any capture stated: `low`, `normal`, `high` or `urgent`.
    pub priority: String,
    /// The property type from the latest capture that stated one: `residential`, `commercial`,
    /// `agricultural` or `industrial`; null when none did.
    pub property_type: Option<String>,
    /// Estimated system size in watts (1 W to 10 MW), from the latest capture that stated one;
    /// null when none did.
    pub system_size_w: Option<i32>,
    /// The budget from the latest capture that stated one; null when none did.
    pub budget: Option<LeadBudget>,
    /// How many captures (the first and every duplicate attached).
    pub captures: i32,
    /// The customer the lead was won as; null unless the lead is WON.
    pub customer_id: Option<String>,
    /// The order that won the lead, as given to `winLead`; null when none was given.
    pub won_order_ref: Option<String>,
    /// The value that won the lead, as given to `winLead`; null when none was given.
    pub won_value: Option<LeadMoney>,
    /// Why the lead was lost, snake_case (`no_response`, `price_too_high`, …, `other`); null
    /// unless the lead is LOST.
    pub lost_reason: Option<String>,
    /// The free-text note given when the lead was marked lost; null when none was given or the
    /// lead is not LOST.
    pub lost_note: Option<String>,
    /// When the lead was first captured (RFC 3339).
    pub created_at: DateTime<Utc>,
    /// When the lead last changed (RFC 3339).
    pub updated_at: DateTime<Utc>,
}

impl From<LeadRow> for Lead {
    fn from(row: LeadRow) -> Self {
        let budget = match (row.budget_min, row.budget_max, row.budget_currency) {
            (Some(min_minor), Some(max_minor), Some(currency)) => Some(LeadBudget {
                min_minor,
                max_minor,
                currency,
            }),
            _ => None,
        };
        let won_value = match (row.won_value_minor, row.won_currency) {
            (Some(amount_minor), Some(currency)) => Some(LeadMoney { amount_minor, currency }),
            _ => None,
        };
        Self {
            id: ID(row.lead_id),
            contact_id: row.contact_id,
            stage: LeadStage::parse(&row.stage),
            source: LeadSource::parse(&row.source),
            score: row.score,
            score_reasons: serde_json::from_value(row.score_reasons).unwrap_or_default(),
            assignee: row.assignee,
            name: row.name,
            phone: row.phone,
            email: row.email,
            interest: row.interest,
            priority: row.priority,
            property_type: row.property_type,
            system_size_w: row.system_size_w,
            budget,
            captures: row.captures,
            customer_id: row.customer_id,
            won_order_ref: row.won_order_ref,
            won_value,
            lost_reason: row.lost_reason,
            lost_note: row.lost_note,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The figures of one stage in a period.
#[derive(SimpleObject)]
pub struct LeadStageFigures {
    /// The stage these figures are about.
    pub stage: LeadStage,
    /// Moves into the stage (captures into NEW, reopenings into CONTACTED).
    pub entered: i64,
    /// Moves on to the next stage (NEGOTIATION → WON).
    pub advanced: i64,
    /// Moves to LOST.
    pub lost: i64,
    /// advanced / entered, a ratio of moves in the period (not a cohort, so it can exceed 1);
    /// null when nothing entered, and for WON and LOST.
    pub conversion: Option<f64>,
}

/// The funnel of one source (`source: null`: every source together).
#[derive(SimpleObject)]
pub struct LeadSourceFunnel {
    /// The source these figures are about; null for every source together.
    pub source: Option<LeadSource>,
    /// One entry per stage, in pipeline order (NEW … WON), then LOST.
    pub stages: Vec<LeadStageFigures>,
}

#[derive(Default)]
pub struct LeadsQuery;

/// Refuses roles that may not read leads.
fn may_read(caller: &Caller) -> Result<(), ApiError> {
    if caller.may(Permission::ReadLeads) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "the {} role cannot read leads",
            caller.role.as_str()
        )))
    }
}

#[Object]
impl LeadsQuery {
    /// The caller's tenant's leads, filtered and sorted (default: newest first). Readable by
    /// owner, admin, agent and auditor; other roles get `FORBIDDEN`; a malformed `after` gets
    /// `BAD_CURSOR`.
    async fn leads(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Narrows the list; every field given must match. Absent: every lead.")] filter: Option<
            LeadFilter,
        >,
        #[graphql(desc = "The order; absent: CREATED_AT, DESC. Ties are broken by lead id.")] sort: Option<LeadSort>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(
            desc = "The `cursor` of the last edge of the previous page (with the same filter and sort); absent: the first page."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Lead, Counted>> {
        let caller = caller(ctx).gql()?;
        let first = page_size(first, 100).gql()?;
        may_read(caller).gql()?;
        let filter = filter.unwrap_or_default();
        let sort = sort.unwrap_or_default();
        let model_filter = ModelFilter {
            stage: filter.stage.map(|s| s.domain().as_str().to_string()),
            source: filter.source.map(|s| s.domain().as_str().to_string()),
            assignee: filter.assignee,
            score_min: filter.score_min,
            score_max: filter.score_max,
            created_from: filter.created_from,
            created_to: filter.created_to,
        };
        let field = match sort.field {
            LeadSortField::CreatedAt => SortField::CreatedAt,
            LeadSortField::Score => SortField::Score,
            LeadSortField::UpdatedAt => SortField::UpdatedAt,
        };
        let pool = pool(ctx).gql()?;
        let page = model::list(
            pool,
            &caller.tenant,
            &model_filter,
            field,
            sort.direction == LeadSortDirection::Desc,
            first,
            after.as_deref(),
        )
        .await;
        let (pool, tenant) = (pool.clone(), caller.tenant.clone());
        let count = Counted::new(async move { model::count(&pool, &tenant, &model_filter).await });
        connection_with(after.is_some(), page, Lead::from, count)
    }

    /// One lead of the caller's tenant; null when there is none with this id (or it is not
    /// projected yet). Readable by owner, admin, agent and auditor; others get `FORBIDDEN`.
    async fn lead(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The lead's id (`lead_` and a UUID).")] id: ID,
    ) -> async_graphql::Result<Option<Lead>> {
        let caller = caller(ctx).gql()?;
        may_read(caller).gql()?;
        let row = model::get(pool(ctx).gql()?, &caller.tenant, &id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(Lead::from))
    }

    /// The funnel of moves made at or after `from` and before `to`: every source together
    /// first, then each source with moves in the period (or only `source`). Readable by owner,
    /// admin, agent and auditor (others get `FORBIDDEN`); `to` not after `from` gets `BAD_PERIOD`.
    async fn lead_funnel(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The start of the period, inclusive (RFC 3339).")] from: DateTime<Utc>,
        #[graphql(desc = "The end of the period, exclusive (RFC 3339); must be after `from`.")] to: DateTime<Utc>,
        #[graphql(
            desc = "Only this source: both the first (every-source) entry and the per-source entry count its moves only."
        )]
        source: Option<LeadSource>,
    ) -> async_graphql::Result<Vec<LeadSourceFunnel>> {
        let caller = caller(ctx).gql()?;
        may_read(caller).gql()?;
        if to <= from {
            return Err(ApiError::bad_request("BAD_PERIOD", "`to` must be after `from`")).gql();
        }
        let source = source.map(|s| s.domain().as_str());
        let funnels = model::funnel(pool(ctx).gql()?, &caller.tenant, from, to, source)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(funnels
            .into_iter()
            .map(|f| LeadSourceFunnel {
                source: f.source.as_deref().and_then(LeadSource::parse),
                stages: f
                    .stages
                    .into_iter()
                    .map(|s| LeadStageFigures {
                        stage: LeadStage::from_domain(s.stage),
                        entered: s.entered,
                        advanced: s.advanced,
                        lost: s.lost,
                        conversion: s.conversion,
                    })
                    .collect(),
            })
            .collect())
    }
}

/// A budget range in minor units.
#[derive(InputObject)]
pub struct LeadBudgetInput {
    /// The lower bound in minor units of `currency` (cents for USD); at least 0, else
    /// `INVALID_BUDGET`.
    pub min_minor: i64,
    /// The upper bound in minor units of `currency`; at least `minMinor`, else `INVALID_BUDGET`.
    pub max_minor: i64,
    /// An ISO 4217 code, three capital letters (`USD`); else `INVALID_BUDGET`.
    pub currency: String,
}

/// An amount in minor units.
#[derive(InputObject)]
pub struct LeadMoneyInput {
    /// The amount in minor units of `currency` (cents for USD); at least 0, else
    /// `INVALID_WIN_VALUE`.
    pub amount_minor: i64,
    /// An ISO 4217 code, three capital letters (`USD`); else `INVALID_WIN_VALUE`.
    pub currency: String,
}

/// A lead entered by hand (or imported). A phone number or an e-mail address is required.
#[derive(InputObject)]
pub struct CaptureLeadInput {
    /// The caller's key, non-blank and at most 200 bytes (else `INVALID_INPUT`): repeating a
    /// capture with the same key and source returns the first outcome (`repeated`).
    pub idempotency_key: String,
    /// Where the lead came from; default MANUAL.
    #[graphql(default_with = "LeadSource::Manual")]
    pub source: LeadSource,
    /// The prospect's name; blank counts as absent.
    pub name: Option<String>,
    /// E.164 (`+263771234567`; the `+` is optional and spaces, dashes, dots and parentheses are
    /// ignored): 8 to 15 digits, else `INVALID_INPUT`. Blank counts as absent.
    pub phone: Option<String>,
    /// The prospect's e-mail address, stored lower-case; a malformed one gets `INVALID_INPUT`.
    /// Blank counts as absent.
    pub email: Option<String>,
    /// The product line asked about (`solar`, `starlink`…).
    pub interest: Option<String>,
    /// How urgently to work the lead; default NORMAL.
    #[graphql(default)]
    pub priority: LeadPriority,
    /// The kind of property the installation is for.
    pub property_type: Option<LeadPropertyType>,
    /// Estimated system size in watts: 1 to 10,000,000 (`INVALID_SYSTEM_SIZE` for 0 or more,
    /// `INVALID_INPUT` for a negative number).
    pub system_size_w: Option<i32>,
    /// The budget the prospect stated.
    pub budget: Option<LeadBudgetInput>,
    /// Free text about the prospect (sealed in the log with the rest of the raw data).
    pub notes: Option<String>,
}

#[derive(Default)]
pub struct LeadsMutation;

fn leads(ctx: &Context<'_>) -> Result<Leads, ApiError> {
    let commands = ctx
        .data::<Commands>()
        .map_err(|_| ApiError::Unavailable("no command dispatcher in the schema".into()))?;
    let keys = ctx
        .data::<KeyStore>()
        .map_err(|_| ApiError::Unavailable("no key store in the schema".into()))?;
    Ok(Leads::new(commands.clone(), keys.clone()))
}

/// Refuses roles that may not write leads.
fn may_write(caller: &Caller) -> Result<(), ApiError> {
    if caller.may(Permission::WorkLeads) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "the {} role cannot change leads",
            caller.role.as_str()
        )))
    }
}

fn lead_id(id: &ID) -> Result<String, ApiError> {
    if is_lead_id(id) {
        Ok(id.to_string())
    } else {
        Err(ApiError::bad_request("BAD_LEAD_ID", "a lead id is lead_ and a UUID"))
    }
}

/// Loads a lead the caller may change: owners and admins any lead, agents the leads assigned to
/// them.
async fn workable(leads: &Leads, caller: &Caller, id: &ID) -> Result<(String, LeadState), ApiError> {
    may_write(caller)?;
    let id = lead_id(id)?;
    let lead = leads
        .load(&caller.tenant, &id)
        .await?
        .ok_or(CommandError::Rejected(DomainError::Lead(LeadError::LeadNotFound)))?;
    if !caller.may(Permission::ManageLeads) && lead.assignee() != Some(caller.user_id.as_str()) {
        return Err(ApiError::Forbidden(
            "an agent may only change the leads assigned to them".into(),
        ));
    }
    Ok((id, lead))
}

fn done(id: String) -> Receipt {
    Receipt::new(id).outcome("done")
}

#[Object]
impl LeadsMutation {
    /// Captures a lead by hand; a prospect with an open lead (same phone or e-mail) gets this
    /// capture attached to it instead. Owner, admin and agent (a new lead an agent captures is
    /// assigned to them); others get `FORBIDDEN`. Refusals: `INVALID_INPUT` (no phone and no
    /// e-mail, or a malformed field), `INVALID_BUDGET`, `INVALID_SYSTEM_SIZE`, `CONFLICT`.
    async fn capture_lead(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The prospect; a phone number or an e-mail address is required.")] input: CaptureLeadInput,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = caller(ctx).gql()?;
            may_write(caller).gql()?;
            let leads = leads(ctx).gql()?;
            let bad = |m: &str| ApiError::Command(CommandError::InvalidInput(m.to_string()));
            if input.idempotency_key.trim().is_empty() || input.idempotency_key.len() > 200 {
                return Err(bad("an idempotency key of 1 to 200 characters is required")).gql();
            }
            let phone = input
                .phone
                .as_deref()
                .filter(|p| !p.trim().is_empty())
                .map(|p| PhoneNumber::parse(p).map_err(|e| bad(&e.to_string())))
                .transpose()
                .gql()?;
            let email = input
                .email
                .as_deref()
                .filter(|e| !e.trim().is_empty())
                .map(normalize_email)
                .transpose()
                .map_err(ApiError::from)
                .gql()?;
            let system_size_w = input
                .system_size_w
                .map(|w| u32::try_from(w).map_err(|_| bad("systemSizeW must be positive")))
                .transpose()
                .gql()?;
            let raw = serde_json::json!({
                "name": input.name, "phone": input.phone, "email": input.email, "interest": input.interest,
                "notes": input.notes, "system_size_w": input.system_size_w,
            })
            .to_string();
            let source = input.source.domain();
            let captured = leads
                .capture(
                    LeadInput {
                        capture_ref: format!("{}:{}", source.as_str(), input.idempotency_key.trim()),
                        source,
                        name: input.name.filter(|n| !n.trim().is_empty()),
                        phone,
                        email,
                        raw,
                        interest: input.interest,
                        priority: input.priority.domain(),
                        property_type: input.property_type.map(LeadPropertyType::domain),
                        estimated_system_size_w: system_size_w,
                        budget: input.budget.map(|b| BudgetRange {
                            min_minor: b.min_minor,
                            max_minor: b.max_minor,
                            currency: b.currency,
                        }),
                        at: Utc::now(),
                    },
                    &metadata(ctx, caller),
                )
                .await
                .map_err(ApiError::from)
                .gql()?;
            // A new lead an agent captures is theirs to work.
            if caller.role == Role::Agent && captured.outcome == chronicle_commands::leads::CaptureOutcome::Captured {
                leads
                    .run(
                        &captured.lead_id,
                        LeadCommand::AssignLead {
                            user_id: caller.user_id.clone(),
                            at: Utc::now(),
                        },
                        &metadata(ctx, caller),
                    )
                    .await
                    .map_err(ApiError::from)
                    .gql()?;
            }
            Ok(Receipt::new(captured.lead_id).outcome(captured.outcome.as_str().to_string()))
        })
        .await
    }

    /// Assigns a lead to a sales user (assigning to the current assignee changes nothing). Owner
    /// and admin for any lead, an agent only for a lead assigned to them; others get `FORBIDDEN`.
    /// Refusals: `BAD_LEAD_ID`, `LEAD_NOT_FOUND`, `LEAD_CLOSED`, `MISSING_USER_ID`, `CONFLICT`.
    async fn assign_lead(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The lead's id (`lead_` and a UUID).")] id: ID,
        #[graphql(
            desc = "The user id (`usr_…`) of the sales user to assign it to: an active user whose role works leads (owner, admin, agent), else `UNKNOWN_USER`, `USER_DEACTIVATED`, `USER_NOT_ACTIVE` or `ROLE_NOT_ALLOWED`."
        )]
        user_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = caller(ctx).gql()?;
            let leads = leads(ctx).gql()?;
            let (id, _) = workable(&leads, caller, &id).await.gql()?;
            let user_id = super::assignee(ctx, caller, &user_id, Permission::WorkLeads, "work leads")
                .await
                .gql()?
                .user_id;
            leads
                .run(
                    &id,
                    LeadCommand::AssignLead {
                        user_id,
                        at: Utc::now(),
                    },
                    &metadata(ctx, caller),
                )
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(done(id))
        })
        .await
    }

    /// Moves a lead one stage forward (up to NEGOTIATION; use winLead and markLeadLost to close);
    /// advancing to the current stage changes nothing. Owner and admin for any lead, an agent only
    /// for a lead assigned to them; others get `FORBIDDEN`. Refusals: `BAD_LEAD_ID`,
    /// `LEAD_NOT_FOUND`, `LEAD_CLOSED`, `ADVANCE_CANNOT_CLOSE`, `STAGE_MOVES_BACKWARD`,
    /// `STAGE_SKIPPED`, `CONFLICT`.
    async fn advance_lead(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The lead's id (`lead_` and a UUID).")] id: ID,
        #[graphql(desc = "The stage right after the current one (CONTACTED … NEGOTIATION).")] to: LeadStage,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = caller(ctx).gql()?;
            let leads = leads(ctx).gql()?;
            let (id, _) = workable(&leads, caller, &id).await.gql()?;
            leads
                .run(
                    &id,
                    LeadCommand::AdvanceLead {
                        to: to.domain(),
                        at: Utc::now(),
                    },
                    &metadata(ctx, caller),
                )
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(done(id))
        })
        .await
    }

    /// Closes a lead as lost from any open stage, with a reason (and a note, required for
    /// OTHER). Owner and admin for any lead, an agent only for a lead assigned to them; others
    /// get `FORBIDDEN`. Refusals: `BAD_LEAD_ID`, `LEAD_NOT_FOUND`, `LEAD_CLOSED`,
    /// `LOST_REASON_NEEDS_NOTE`, `INVALID_INPUT` (a note on a lead without a contact), `CONFLICT`.
    async fn mark_lead_lost(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The lead's id (`lead_` and a UUID).")] id: ID,
        #[graphql(desc = "Why the lead was lost.")] reason: LeadLostReason,
        #[graphql(desc = "Free text about why, stored sealed as personal data; blank counts as absent.")] note: Option<
            String,
        >,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = caller(ctx).gql()?;
            let leads = leads(ctx).gql()?;
            let (id, lead) = workable(&leads, caller, &id).await.gql()?;
            let note = match note.filter(|n| !n.trim().is_empty()) {
                Some(n) => Some(
                    leads
                        .seal_note(&caller.tenant, &lead, &n)
                        .await
                        .map_err(ApiError::from)
                        .gql()?,
                ),
                None => None,
            };
            leads
                .run(
                    &id,
                    LeadCommand::MarkLeadLost {
                        reason: reason.domain(),
                        note,
                        at: Utc::now(),
                    },
                    &metadata(ctx, caller),
                )
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(done(id))
        })
        .await
    }

    /// Reopens a lost lead at CONTACTED. Owner and admin for any lead, an agent only for a lead
    /// assigned to them; others get `FORBIDDEN`. Refusals: `BAD_LEAD_ID`, `LEAD_NOT_FOUND`,
    /// `LEAD_CLOSED` (a won lead), `LEAD_NOT_LOST` (an open lead), `CONFLICT`.
    async fn reopen_lead(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The lead's id (`lead_` and a UUID).")] id: ID,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = caller(ctx).gql()?;
            let leads = leads(ctx).gql()?;
            let (id, _) = workable(&leads, caller, &id).await.gql()?;
            leads
                .run(&id, LeadCommand::ReopenLead { at: Utc::now() }, &metadata(ctx, caller))
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(done(id))
        })
        .await
    }

    /// Wins a lead in NEGOTIATION, converting it into a customer (`customerId`, or one derived
    /// from the lead, so a retry converts into the same customer and changes nothing). Owner and
    /// admin for any lead, an agent only for a lead assigned to them; others get `FORBIDDEN`.
    /// Refusals: `BAD_LEAD_ID`, `LEAD_NOT_FOUND`, `LEAD_CLOSED`, `STAGE_SKIPPED` (not in
    /// NEGOTIATION), `INVALID_WIN_VALUE`, `CONFLICT`.
    async fn win_lead(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The lead's id (`lead_` and a UUID).")] id: ID,
        #[graphql(
            desc = "The customer's id; absent or blank: the lead's contact (`ct_…`: the customer then has a read model, `customer(id)`), or `cus_` and the lead's UUID for a lead without one."
        )]
        customer_id: Option<String>,
        #[graphql(desc = "The order that won the lead, if any.")] order_ref: Option<String>,
        #[graphql(desc = "The value that won the lead, if known.")] value: Option<LeadMoneyInput>,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = caller(ctx).gql()?;
            let leads = leads(ctx).gql()?;
            let (id, lead) = workable(&leads, caller, &id).await.gql()?;
            let customer_id = customer_id
                .filter(|c| !c.trim().is_empty())
                .or_else(|| lead.contact_id().map(str::to_string))
                .unwrap_or_else(|| format!("cus_{}", id.trim_start_matches("lead_")));
            leads
                .run(
                    &id,
                    LeadCommand::WinLead {
                        customer_id,
                        order_ref,
                        value: value.map(|v| Money {
                            amount_minor: v.amount_minor,
                            currency: v.currency,
                        }),
                        at: Utc::now(),
                    },
                    &metadata(ctx, caller),
                )
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(done(id))
        })
        .await
    }
}

#[async_graphql::ComplexObject]
impl Lead {
    /// The sales user it is assigned to, with their name from the user directory; null when
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
