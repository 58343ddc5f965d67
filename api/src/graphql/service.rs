//! The after-sales area of the schema (issue 4): warranties and their claims, service requests
//! with their SLA, maintenance contracts.
//!
//! Queries: `warranties(filter)`, `warrantyClaims(status, warrantyId)`,
//! `serviceRequests(status, priority, breached, first, after)` (a connection, newest ticket
//! first), `maintenanceContracts(status, customerId)`. Mutations: file, review, decide and
//! resolve a warranty claim; open, assign, resolve and close a service request; start, renew,
//! switch auto-renewal of and cancel a maintenance contract.
//!
//! Every resolver takes the tenant from the caller only. Roles: everyone but integrators reads;
//! owners, admins and agents file claims, open and close requests; owners and admins review and
//! decide claims and assign requests; technicians (and owners, admins) resolve requests;
//! owners, admins and finance run maintenance contracts. Refusals carry the domain rule's code
//! in `extensions.code` (e.g. `OUTSIDE_WARRANTY_PERIOD`).

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chronicle_commands::dispatch::Commands;
use chronicle_commands::installation::{NewServiceRequest, ServiceDesk};
use chronicle_commands::keystore::KeyStore;
use chronicle_domain::installation::{ClaimDecision, Priority as DomainPriority, StartMaintenanceContract};
use chronicle_projections::installation::{self as warranty_model, ClaimRow, WarrantyFilter, WarrantyRow};
use chronicle_projections::installation::{
    self as service_model, MaintenanceContractRow, ServiceFilter, ServiceQueryError, ServiceRequestRow,
};
use chrono::{DateTime, Utc};

use super::{caller, metadata, pool, require};
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

// ---------------------------------------------------------------------------------------------
// Roles

// ---------------------------------------------------------------------------------------------
// Types

/// A warranty's status. Expiry is not a status: a warranty past `endsAt` stays `ACTIVE`, and
/// claims are checked against its period when filed.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum WarrantyStatus {
    /// Registered and not voided: claims may be filed within its period.
    Active,
    /// Voided: no claim can be filed under it any more.
    Voided,
}

impl WarrantyStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Voided => "voided",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "voided" {
            Self::Voided
        } else {
            Self::Active
        }
    }
}

/// The warranty of one installed component, registered when its installation is
/// commissioned (read model: a moment behind the log).
#[derive(SimpleObject)]
pub struct Warranty {
    /// `warranty_<installation id>/<serial>`.
    pub id: String,
    /// The installation the component was installed in (`isr_…`).
    pub installation_id: String,
    /// The component's serial number.
    pub serial: String,
    /// What the component is, as recorded at installation (`panel`, `inverter`, `battery`, …).
    pub kind: String,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// The length of the warranty period in calendar months (1 to 300).
    pub warranty_months: i32,
    /// Start of the period (RFC 3339, UTC): the installation's commissioning time.
    pub starts_at: DateTime<Utc>,
    /// Exclusive end of the period: `startsAt` plus `warrantyMonths` calendar months (RFC 3339).
    pub ends_at: DateTime<Utc>,
    /// `ACTIVE` or `VOIDED` (an expired warranty is still `ACTIVE`: compare `endsAt`).
    pub status: WarrantyStatus,
    /// When the warranty was registered (RFC 3339).
    pub registered_at: DateTime<Utc>,
    /// When it was voided (RFC 3339); null while it is active.
    pub voided_at: Option<DateTime<Utc>>,
    /// Claims filed under it.
    pub claims: i32,
}

impl From<WarrantyRow> for Warranty {
    fn from(r: WarrantyRow) -> Self {
        Self {
            id: r.warranty_id,
            installation_id: r.installation_id,
            serial: r.serial,
            kind: r.kind,
            customer_id: r.customer_id,
            warranty_months: r.warranty_months,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            status: WarrantyStatus::parse(&r.status),
            registered_at: r.registered_at,
            voided_at: r.voided_at,
            claims: r.claims,
        }
    }
}

/// Which warranties to list: every field is optional, and all given must match.
#[derive(InputObject, Default)]
pub struct WarrantyFilterInput {
    /// Only warranties of this installation (`isr_…`, exact match).
    pub installation_id: Option<String>,
    /// Only warranties of this customer's contact id (`ct_…`, exact match).
    pub customer_id: Option<String>,
    /// Only warranties of components with this serial number (exact match).
    pub serial: Option<String>,
    /// Only warranties with this status.
    pub status: Option<WarrantyStatus>,
    /// Only warranties whose period ends before this time.
    pub ends_before: Option<DateTime<Utc>>,
}

/// A claim's status: `SUBMITTED → UNDER_REVIEW → APPROVED | REJECTED → RESOLVED`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ClaimStatus {
    /// Filed, waiting for a review to start.
    Submitted,
    /// A review has started; waiting for the decision.
    UnderReview,
    /// The review approved the claim; waiting for its resolution.
    Approved,
    /// The review rejected the claim; waiting for its resolution.
    Rejected,
    /// Resolved after the decision (final).
    Resolved,
}

impl ClaimStatus {
    const ALL: [Self; 5] = [
        Self::Submitted,
        Self::UnderReview,
        Self::Approved,
        Self::Rejected,
        Self::Resolved,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::UnderReview => "under_review",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Resolved => "resolved",
        }
    }

    fn parse(s: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or(Self::Submitted)
    }
}

/// A review's decision.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ClaimDecisionInput {
    /// Approve the claim (it moves to `APPROVED`).
    Approved,
    /// Reject the claim (it moves to `REJECTED`).
    Rejected,
}

/// A warranty claim (its description, notes and resolution stay sealed; read model: a moment
/// behind the log).
#[derive(SimpleObject)]
pub struct WarrantyClaim {
    /// The claim's id, `claim_…`.
    pub id: String,
    /// The warranty it was filed under (`warranty_<installation id>/<serial>`).
    pub warranty_id: String,
    /// The installation of the component (`isr_…`).
    pub installation_id: String,
    /// The component's serial number.
    pub serial: String,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// The exclusive end of the warranty's period when the claim was filed (RFC 3339).
    pub warranty_ends_at: DateTime<Utc>,
    /// Where the claim stands.
    pub status: ClaimStatus,
    /// When the claim was filed (RFC 3339).
    pub filed_at: DateTime<Utc>,
    /// Who filed it: a user id, `api_key:<key id>` or a system component.
    pub filed_by: String,
    /// When the review started (RFC 3339); null while `SUBMITTED`.
    pub review_started_at: Option<DateTime<Utc>>,
    /// When it was approved or rejected (RFC 3339); null until decided.
    pub decided_at: Option<DateTime<Utc>>,
    /// Who decided it (as `filedBy`); null until decided.
    pub decided_by: Option<String>,
    /// When it was resolved (RFC 3339); null until resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

impl From<ClaimRow> for WarrantyClaim {
    fn from(r: ClaimRow) -> Self {
        Self {
            id: r.claim_id,
            warranty_id: r.warranty_id,
            installation_id: r.installation_id,
            serial: r.serial,
            customer_id: r.customer_id,
            warranty_ends_at: r.warranty_ends_at,
            status: ClaimStatus::parse(&r.status),
            filed_at: r.filed_at,
            filed_by: r.filed_by,
            review_started_at: r.review_started_at,
            decided_at: r.decided_at,
            decided_by: r.decided_by,
            resolved_at: r.resolved_at,
        }
    }
}

/// A service request's priority (its SLA: urgent 4 h, high 8 h, normal 24 h, low 72 h).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ServicePriority {
    /// Due 4 hours after opening.
    Urgent,
    /// Due 8 hours after opening.
    High,
    /// Due 24 hours after opening.
    Normal,
    /// Due 72 hours after opening.
    Low,
}

impl ServicePriority {
    fn domain(self) -> DomainPriority {
        match self {
            Self::Urgent => DomainPriority::Urgent,
            Self::High => DomainPriority::High,
            Self::Normal => DomainPriority::Normal,
            Self::Low => DomainPriority::Low,
        }
    }

    fn parse(s: &str) -> Self {
        match DomainPriority::parse(s) {
            Some(DomainPriority::Urgent) => Self::Urgent,
            Some(DomainPriority::High) => Self::High,
            Some(DomainPriority::Low) => Self::Low,
            _ => Self::Normal,
        }
    }
}

/// A service request's status: `OPEN → ASSIGNED → RESOLVED → CLOSED` (`OPEN → RESOLVED` too).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ServiceStatus {
    /// Opened, no technician assigned yet (the SLA runs).
    Open,
    /// A technician is assigned (the SLA runs).
    Assigned,
    /// Resolved; waiting to be closed (the SLA no longer runs).
    Resolved,
    /// Closed (final).
    Closed,
}

impl ServiceStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Assigned => "assigned",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
        }
    }

    fn parse(s: &str) -> Self {
        [Self::Open, Self::Assigned, Self::Resolved, Self::Closed]
            .into_iter()
            .find(|x| x.as_str() == s)
            .unwrap_or(Self::Open)
    }
}

/// A service ticket (its description and resolution stay sealed; read model: a moment behind
/// the log).
#[derive(SimpleObject)]
pub struct ServiceRequest {
    /// `sr_<ticket number>`.
    pub id: String,
    /// The tenant's sequential ticket number (1, 2, 3, …).
    pub ticket_number: i64,
    /// `SR-000042`.
    pub ticket: String,
    /// What kind of request it is, as given when opened (`repair`, `inspection`, `question`, …).
    pub kind: String,
    /// The priority, which set the SLA due time.
    pub priority: ServicePriority,
    /// Where the request stands.
    pub status: ServiceStatus,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// The installation concerned (`isr_…`); null when none was given.
    pub installation_id: Option<String>,
    /// The user id of the technician assigned last; null until one is assigned.
    pub technician_id: Option<String>,
    /// When the request was opened (RFC 3339).
    pub opened_at: DateTime<Utc>,
    /// Opened plus the priority's SLA.
    pub sla_due_at: DateTime<Utc>,
    /// Whether the SLA was breached (decided once, in the log: by the SLA sweeper shortly after
    /// `slaDueAt` passes on a pending request, or when it is resolved late).
    pub breached: bool,
    /// When the breach was recorded (RFC 3339); null unless `breached`.
    pub breached_at: Option<DateTime<Utc>>,
    /// When a technician was last assigned (RFC 3339); null until assigned.
    pub assigned_at: Option<DateTime<Utc>>,
    /// When the request was resolved (RFC 3339); null until resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// When the request was closed (RFC 3339); null until closed.
    pub closed_at: Option<DateTime<Utc>>,
}

impl From<ServiceRequestRow> for ServiceRequest {
    fn from(r: ServiceRequestRow) -> Self {
        Self {
            id: r.request_id,
            ticket_number: r.ticket_number,
            ticket: r.ticket,
            kind: r.kind,
            priority: ServicePriority::parse(&r.priority),
            status: ServiceStatus::parse(&r.status),
            customer_id: r.customer_id,
            installation_id: r.installation_id,
            technician_id: r.technician_id,
            opened_at: r.opened_at,
            sla_due_at: r.sla_due_at,
            breached: r.breached,
            breached_at: r.breached_at,
            assigned_at: r.assigned_at,
            resolved_at: r.resolved_at,
            closed_at: r.closed_at,
        }
    }
}

/// A maintenance contract's status (lapsed: `endsAt` in the past).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ContractStatus {
    /// Not cancelled (it may still have lapsed: compare `endsAt`).
    Active,
    /// Cancelled: no longer renewed or changed.
    Cancelled,
}

impl ContractStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A maintenance contract (read model: a moment behind the log).
#[derive(SimpleObject)]
pub struct MaintenanceContract {
    /// The contract's id, `mc_…`.
    pub id: String,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// The installation maintained (`isr_…`); null when the contract names none.
    pub installation_id: Option<String>,
    /// Start of the first term (RFC 3339).
    pub starts_at: DateTime<Utc>,
    /// End of the current term (RFC 3339); each renewal moves it forward from the old end.
    pub ends_at: DateTime<Utc>,
    /// The length of the first term in calendar months (renewals may use other terms).
    pub term_months: i32,
    /// Integer minor units.
    pub annual_value_minor: i64,
    /// ISO 4217 currency code of `annualValueMinor` (e.g. `USD`).
    pub currency: String,
    /// Whether the contract renews itself for 12 months once `endsAt` passes (always false once
    /// cancelled).
    pub auto_renew: bool,
    /// `ACTIVE` or `CANCELLED`.
    pub status: ContractStatus,
    /// How many renewals were recorded.
    pub renewals: i32,
    /// The reference of the latest renewal (an invoice or payment reference, or
    /// `auto:<old end>` for an automatic one); null if never renewed.
    pub last_renewal_reference: Option<String>,
    /// When the latest renewal was recorded (RFC 3339); null if never renewed.
    pub renewed_at: Option<DateTime<Utc>>,
    /// When the contract was cancelled (RFC 3339); null unless cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl From<MaintenanceContractRow> for MaintenanceContract {
    fn from(r: MaintenanceContractRow) -> Self {
        Self {
            id: r.contract_id,
            customer_id: r.customer_id,
            installation_id: r.installation_id,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            term_months: r.term_months,
            annual_value_minor: r.annual_value_minor,
            currency: r.currency,
            auto_renew: r.auto_renew,
            status: if r.status == "cancelled" {
                ContractStatus::Cancelled
            } else {
                ContractStatus::Active
            },
            renewals: r.renewals,
            last_renewal_reference: r.last_renewal_reference,
            renewed_at: r.renewed_at,
            cancelled_at: r.cancelled_at,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Queries

#[derive(Default)]
pub struct ServiceQuery;

#[Object]
impl ServiceQuery {
    /// The caller's tenant's warranties, ending soonest first (at most 500). Readable by
    /// owners, admins, agents, technicians, finance and auditors; integrators get `FORBIDDEN`.
    async fn warranties(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which warranties to list; null lists every warranty (up to 500).")] filter: Option<
            WarrantyFilterInput,
        >,
    ) -> async_graphql::Result<Vec<Warranty>> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::ReadAfterSales), caller, "read warranties").gql()?;
        let filter = filter.unwrap_or_default();
        let filter = WarrantyFilter {
            installation_id: filter.installation_id,
            customer_id: filter.customer_id,
            serial: filter.serial,
            status: filter.status.map(|s| s.as_str().to_string()),
            ends_before: filter.ends_before,
        };
        let rows = warranty_model::list_warranties(pool(ctx).gql()?, &caller.tenant, &filter)
            .await
            .gql()?;
        Ok(rows.into_iter().map(Warranty::from).collect())
    }

    /// The caller's tenant's warranty claims, latest filed first (at most 500). Readable by
    /// everyone but integrators (`FORBIDDEN`).
    async fn warranty_claims(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only claims with this status; null for every status.")] status: Option<ClaimStatus>,
        #[graphql(
            desc = "Only claims under this warranty (`warranty_<installation id>/<serial>`); null for all warranties."
        )]
        warranty_id: Option<String>,
    ) -> async_graphql::Result<Vec<WarrantyClaim>> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ReadAfterSales),
            caller,
            "read warranty claims",
        )
        .gql()?;
        let rows = warranty_model::list_claims(
            pool(ctx).gql()?,
            &caller.tenant,
            status.map(ClaimStatus::as_str),
            warranty_id.as_deref(),
        )
        .await
        .gql()?;
        Ok(rows.into_iter().map(WarrantyClaim::from).collect())
    }

    /// The caller's tenant's service requests, newest ticket first. Readable by everyone but
    /// integrators (`FORBIDDEN`); a malformed `after` is `BAD_CURSOR`.
    async fn service_requests(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only requests with this status; null for every status.")] status: Option<ServiceStatus>,
        #[graphql(desc = "Only requests with this priority; null for every priority.")] priority: Option<
            ServicePriority,
        >,
        #[graphql(desc = "true: only requests whose SLA breach was recorded; false: only the others; null: both.")]
        breached: Option<bool>,
        #[graphql(
            default = 20,
            validator(minimum = 1, maximum = 100),
            desc = "Page size: 1 to 100 requests, default 20."
        )]
        first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page (opaque); null for the first page.")]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, ServiceRequest>> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ReadAfterSales),
            caller,
            "read service requests",
        )
        .gql()?;
        let filter = ServiceFilter {
            status: status.map(|s| s.as_str().to_string()),
            priority: priority.map(|p| p.domain().as_str().to_string()),
            breached,
        };
        let page = service_model::list_service_requests(
            pool(ctx).gql()?,
            &caller.tenant,
            &filter,
            i64::from(first),
            after.as_deref(),
        )
        .await
        .map_err(|e| match e {
            ServiceQueryError::Cursor(e) => ApiError::bad_request("BAD_CURSOR", e.to_string()),
            ServiceQueryError::Database(e) => ApiError::from(e),
        })
        .gql()?;
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        connection.edges.extend(
            page.rows
                .into_iter()
                .map(|(cursor, row)| Edge::new(cursor, ServiceRequest::from(row))),
        );
        Ok(connection)
    }

    /// The caller's tenant's maintenance contracts, ending soonest first (at most 500). Readable
    /// by everyone but integrators (`FORBIDDEN`).
    async fn maintenance_contracts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only contracts with this status; null for every status.")] status: Option<ContractStatus>,
        #[graphql(desc = "Only contracts of this customer's contact id (`ct_…`); null for every customer.")]
        customer_id: Option<String>,
    ) -> async_graphql::Result<Vec<MaintenanceContract>> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ReadAfterSales),
            caller,
            "read maintenance contracts",
        )
        .gql()?;
        let rows = service_model::list_maintenance_contracts(
            pool(ctx).gql()?,
            &caller.tenant,
            status.map(ContractStatus::as_str),
            customer_id.as_deref(),
        )
        .await
        .gql()?;
        Ok(rows.into_iter().map(MaintenanceContract::from).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// What a mutation changed.
#[derive(SimpleObject)]
pub struct ServiceChange {
    /// The claim, request or contract id.
    pub id: String,
}

/// The ticket a request was opened as.
#[derive(SimpleObject)]
pub struct OpenedServiceRequest {
    /// `sr_<ticket number>`.
    pub id: String,
    /// The tenant's sequential ticket number (1, 2, 3, …).
    pub ticket_number: i64,
    /// `SR-000042`.
    pub ticket: String,
}

/// A claim to file.
#[derive(InputObject)]
pub struct FileWarrantyClaimInput {
    /// The warranty to claim under (`warranty_<installation id>/<serial>`).
    pub warranty_id: String,
    /// What is wrong (sealed before it is stored; 1 to 4000 characters, not blank).
    pub description: String,
    /// The caller's id for the claim (`claim_` then 1 to 100 of `A-Za-z0-9_-`, else
    /// `BAD_CLAIM_ID`): repeating a filing with it records nothing. Generated when absent.
    pub claim_id: Option<String>,
}

/// A service request to open.
#[derive(InputObject)]
pub struct OpenServiceRequestInput {
    /// `repair`, `inspection`, `question`, … (free text, not blank).
    pub kind: String,
    /// The priority: sets the SLA due time (urgent 4 h, high 8 h, normal 24 h, low 72 h).
    pub priority: ServicePriority,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// The installation concerned (`isr_…`), if any; not blank when given.
    pub installation_id: Option<String>,
    /// What the customer reports (sealed before it is stored; 1 to 4000 characters, not blank).
    pub description: String,
    /// The caller's key (1 to 200 bytes): opening again with it returns the first ticket.
    pub idempotency_key: Option<String>,
}

/// A maintenance contract to start.
#[derive(InputObject)]
pub struct StartMaintenanceContractInput {
    /// The caller's id for the contract (`mc_` then 1 to 100 of `A-Za-z0-9_-`, else
    /// `BAD_CONTRACT_ID`): repeating a start with it records nothing. Generated when absent.
    pub contract_id: Option<String>,
    /// The customer's contact id (`ct_…`, not blank).
    pub customer_id: String,
    /// The installation maintained (`isr_…`), if any; not blank when given.
    pub installation_id: Option<String>,
    /// Start of the first term (RFC 3339); may be in the past or the future.
    pub starts_at: DateTime<Utc>,
    /// The first term in calendar months, 1 to 60 (default 12); the contract ends this many
    /// months after `startsAt`.
    #[graphql(default = 12)]
    pub term_months: i32,
    /// The annual value in integer minor units of `currency` (0 or more).
    pub annual_value_minor: i64,
    /// ISO 4217 code: three uppercase letters (else `INVALID_CURRENCY`).
    pub currency: String,
    /// Whether the contract renews itself for 12 months when its end passes (default false).
    #[graphql(default = false)]
    pub auto_renew: bool,
}

#[derive(Default)]
pub struct ServiceMutation;

fn desk(ctx: &Context<'_>) -> Result<ServiceDesk, ApiError> {
    let commands = ctx
        .data::<Commands>()
        .map_err(|_| ApiError::Unavailable("no command dispatcher in the schema".into()))?;
    let keys = ctx
        .data::<KeyStore>()
        .map_err(|_| ApiError::Unavailable("no key store in the schema".into()))?;
    Ok(ServiceDesk::new(commands.clone(), keys.clone()))
}

/// A caller-chosen id: `<prefix>` then 1 to 100 of `A-Za-z0-9_-`; a fresh one when absent.
fn local_id(prefix: &'static str, given: Option<String>, code: &'static str) -> Result<String, ApiError> {
    let Some(id) = given else {
        return Ok(format!("{prefix}{}", uuid::Uuid::new_v4().simple()));
    };
    let valid = id.strip_prefix(prefix).is_some_and(|rest| {
        (1..=100).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if valid {
        Ok(id)
    } else {
        Err(ApiError::bad_request(
            code,
            format!("an id is {prefix} and 1 to 100 of A-Z, a-z, 0-9, _ and -"),
        ))
    }
}

/// A request id: `sr_` and a ticket number.
fn request_id(id: &str) -> Result<String, ApiError> {
    match id.strip_prefix("sr_").map(str::parse::<u64>) {
        Some(Ok(n)) if n > 0 => Ok(id.to_string()),
        _ => Err(ApiError::bad_request(
            "BAD_SERVICE_REQUEST_ID",
            "a service request id is sr_ and its ticket number",
        )),
    }
}

fn claim_id(id: String) -> Result<String, ApiError> {
    local_id("claim_", Some(id), "BAD_CLAIM_ID")
}

fn contract_id(id: String) -> Result<String, ApiError> {
    local_id("mc_", Some(id), "BAD_CONTRACT_ID")
}

fn months(value: i32) -> Result<u32, ApiError> {
    u32::try_from(value).map_err(|_| ApiError::bad_request("BAD_TERM", "a term is a positive number of months"))
}

#[Object]
impl ServiceMutation {
    /// Files a claim under a warranty: refused with `WARRANTY_NOT_ACTIVE` or
    /// `OUTSIDE_WARRANTY_PERIOD` when the warranty does not cover it now.
    ///
    /// Owners, admins and agents (else `FORBIDDEN`). `WARRANTY_NOT_ACTIVE` also answers an
    /// unknown warranty id; other refusals: `BAD_CLAIM_ID`, `INVALID_INPUT` (blank or over-long
    /// description). Answers the claim's id; the claim starts `SUBMITTED`.
    async fn file_warranty_claim(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The warranty, the description and optionally the claim's own id.")]
        input: FileWarrantyClaimInput,
    ) -> async_graphql::Result<ServiceChange> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::FrontDesk), caller, "file warranty claims").gql()?;
        let id = local_id("claim_", input.claim_id, "BAD_CLAIM_ID").gql()?;
        desk(ctx)
            .gql()?
            .file_claim(
                &metadata(ctx, caller),
                &id,
                &input.warranty_id,
                &input.description,
                Utc::now(),
            )
            .await
            .gql()?;
        Ok(ServiceChange { id })
    }

    /// Starts the review of a submitted claim (`SUBMITTED → UNDER_REVIEW`; a claim already under
    /// review records nothing). Owners and admins (else `FORBIDDEN`); refused with
    /// `BAD_CLAIM_ID`, `UNKNOWN_CLAIM` or `CLAIM_MOVE_NOT_ALLOWED`. Answers the claim's id.
    async fn start_warranty_claim_review(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The claim's id (`claim_…`).")] claim_id: String,
    ) -> async_graphql::Result<ServiceChange> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ManageAfterSales),
            caller,
            "review warranty claims",
        )
        .gql()?;
        let id = self::claim_id(claim_id).gql()?;
        desk(ctx)
            .gql()?
            .review_claim(&metadata(ctx, caller), &id, Utc::now())
            .await
            .gql()?;
        Ok(ServiceChange { id })
    }

    /// Decides a claim under review, with an optional note (sealed).
    ///
    /// Owners and admins (else `FORBIDDEN`). Repeating the same decision records nothing;
    /// refused with `BAD_CLAIM_ID`, `UNKNOWN_CLAIM`, `CLAIM_MOVE_NOT_ALLOWED` (not under review)
    /// or `INVALID_INPUT` (blank or over-long note). Answers the claim's id.
    async fn decide_warranty_claim(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The claim's id (`claim_…`).")] claim_id: String,
        #[graphql(desc = "Approve or reject.")] decision: ClaimDecisionInput,
        #[graphql(desc = "Why, for the record (sealed; 1 to 4000 characters, not blank); null for no note.")]
        note: Option<String>,
    ) -> async_graphql::Result<ServiceChange> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ManageAfterSales),
            caller,
            "decide warranty claims",
        )
        .gql()?;
        let id = self::claim_id(claim_id).gql()?;
        let decision = match decision {
            ClaimDecisionInput::Approved => ClaimDecision::Approved,
            ClaimDecisionInput::Rejected => ClaimDecision::Rejected,
        };
        desk(ctx)
            .gql()?
            .decide_claim(&metadata(ctx, caller), &id, decision, note.as_deref(), Utc::now())
            .await
            .gql()?;
        Ok(ServiceChange { id })
    }

    /// Resolves a decided claim (the resolution is sealed).
    ///
    /// `APPROVED | REJECTED → RESOLVED`; an already resolved claim records nothing. Owners and
    /// admins (else `FORBIDDEN`); refused with `BAD_CLAIM_ID`, `UNKNOWN_CLAIM`,
    /// `CLAIM_MOVE_NOT_ALLOWED` (not decided yet) or `INVALID_INPUT`. Answers the claim's id.
    async fn resolve_warranty_claim(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The claim's id (`claim_…`).")] claim_id: String,
        #[graphql(desc = "What was done (sealed; 1 to 4000 characters, not blank).")] resolution: String,
    ) -> async_graphql::Result<ServiceChange> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ManageAfterSales),
            caller,
            "resolve warranty claims",
        )
        .gql()?;
        let id = self::claim_id(claim_id).gql()?;
        desk(ctx)
            .gql()?
            .resolve_claim(&metadata(ctx, caller), &id, &resolution, Utc::now())
            .await
            .gql()?;
        Ok(ServiceChange { id })
    }

    /// Opens a service request under the tenant's next ticket number; its SLA runs from now.
    ///
    /// Owners, admins and agents (else `FORBIDDEN`). Refused with `BLANK_FIELD` (blank kind,
    /// customer or installation id) or `INVALID_INPUT` (blank or over-long description, bad
    /// idempotency key). Answers the ticket; the request starts `OPEN`.
    async fn open_service_request(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "What to open: kind, priority, customer, description, optional installation and idempotency key."
        )]
        input: OpenServiceRequestInput,
    ) -> async_graphql::Result<OpenedServiceRequest> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::FrontDesk), caller, "open service requests").gql()?;
        let opened = desk(ctx)
            .gql()?
            .open_request(
                &metadata(ctx, caller),
                NewServiceRequest {
                    kind: input.kind,
                    priority: input.priority.domain(),
                    customer_id: input.customer_id,
                    installation_id: input.installation_id,
                    description: input.description,
                    idempotency_key: input.idempotency_key,
                    at: Utc::now(),
                },
            )
            .await
            .gql()?;
        Ok(OpenedServiceRequest {
            id: opened.request_id,
            ticket_number: i64::try_from(opened.number).unwrap_or(i64::MAX),
            ticket: opened.ticket,
        })
    }

    /// Assigns (or reassigns) a technician to a pending request.
    ///
    /// The request becomes `ASSIGNED`; the same technician again records nothing. Owners and
    /// admins (else `FORBIDDEN`); refused with `BAD_SERVICE_REQUEST_ID`,
    /// `UNKNOWN_SERVICE_REQUEST`, `BLANK_FIELD` or `SERVICE_MOVE_NOT_ALLOWED` (resolved or
    /// closed). Answers the request's id.
    async fn assign_service_request(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The request's id, `sr_<ticket number>`.")] request_id: String,
        #[graphql(desc = "The technician's user id (not blank; not checked against the user list).")]
        technician_id: String,
    ) -> async_graphql::Result<ServiceChange> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ManageAfterSales),
            caller,
            "assign service requests",
        )
        .gql()?;
        let id = self::request_id(&request_id).gql()?;
        desk(ctx)
            .gql()?
            .assign_request(&metadata(ctx, caller), &id, &technician_id, Utc::now())
            .await
            .gql()?;
        Ok(ServiceChange { id })
    }

    /// Resolves a pending request (after its due time the breach is recorded first).
    ///
    /// `OPEN | ASSIGNED → RESOLVED`; an already resolved request records nothing. Owners,
    /// admins and technicians (else `FORBIDDEN`); refused with `BAD_SERVICE_REQUEST_ID`,
    /// `UNKNOWN_SERVICE_REQUEST`, `SERVICE_MOVE_NOT_ALLOWED` (closed) or `INVALID_INPUT`.
    /// Answers the request's id.
    async fn resolve_service_request(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The request's id, `sr_<ticket number>`.")] request_id: String,
        #[graphql(desc = "What was done (sealed; 1 to 4000 characters, not blank).")] resolution: String,
    ) -> async_graphql::Result<ServiceChange> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ResolveServiceRequests),
            caller,
            "resolve service requests",
        )
        .gql()?;
        let id = self::request_id(&request_id).gql()?;
        desk(ctx)
            .gql()?
            .resolve_request(&metadata(ctx, caller), &id, &resolution, Utc::now())
            .await
            .gql()?;
        Ok(ServiceChange { id })
    }

    /// Closes a resolved request.
    ///
    /// `RESOLVED → CLOSED`; an already closed request records nothing. Owners, admins and
    /// agents (else `FORBIDDEN`); refused with `BAD_SERVICE_REQUEST_ID`,
    /// `UNKNOWN_SERVICE_REQUEST` or `SERVICE_MOVE_NOT_ALLOWED` (not resolved yet). Answers the
    /// request's id.
    async fn close_service_request(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The request's id, `sr_<ticket number>`.")] request_id: String,
    ) -> async_graphql::Result<ServiceChange> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::FrontDesk), caller, "close service requests").gql()?;
        let id = self::request_id(&request_id).gql()?;
        desk(ctx)
            .gql()?
            .close_request(&metadata(ctx, caller), &id, Utc::now())
            .await
            .gql()?;
        Ok(ServiceChange { id })
    }

    /// Starts a maintenance contract.
    ///
    /// Owners, admins and finance (else `FORBIDDEN`). Refused with `BAD_CONTRACT_ID`,
    /// `BAD_TERM` (negative term), `INVALID_TERM` (not 1 to 60 months), `NEGATIVE_VALUE`,
    /// `INVALID_CURRENCY` or `BLANK_FIELD`. Answers the contract's id.
    async fn start_maintenance_contract(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contract's facts: customer, start, term, value, currency, auto-renewal.")]
        input: StartMaintenanceContractInput,
    ) -> async_graphql::Result<ServiceChange> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::RunMaintenanceContracts),
            caller,
            "start maintenance contracts",
        )
        .gql()?;
        let id = local_id("mc_", input.contract_id, "BAD_CONTRACT_ID").gql()?;
        let metadata = metadata(ctx, caller);
        let start = StartMaintenanceContract {
            customer_id: input.customer_id,
            installation_id: input.installation_id,
            starts_at: input.starts_at,
            term_months: months(input.term_months).gql()?,
            annual_value_minor: input.annual_value_minor,
            currency: input.currency,
            auto_renew: input.auto_renew,
            by: caller.user_id.clone(),
            at: Utc::now(),
        };
        desk(ctx).gql()?.start_contract(&metadata, &id, start).await.gql()?;
        Ok(ServiceChange { id })
    }

    /// Renews a contract for `termMonths` from its current end, under `reference` (an invoice
    /// or payment reference): repeating a reference records nothing.
    ///
    /// Owners, admins and finance (else `FORBIDDEN`). Refused with `BAD_CONTRACT_ID`,
    /// `UNKNOWN_CONTRACT`, `CONTRACT_CANCELLED`, `BLANK_FIELD` (blank reference), `BAD_TERM` or
    /// `INVALID_TERM`. Answers the contract's id.
    async fn renew_maintenance_contract(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contract's id (`mc_…`).")] contract_id: String,
        #[graphql(desc = "The renewal's invoice or payment reference (not blank): one renewal per reference.")]
        reference: String,
        #[graphql(default = 12, desc = "The renewal term in calendar months, 1 to 60 (default 12).")] term_months: i32,
    ) -> async_graphql::Result<ServiceChange> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::RunMaintenanceContracts),
            caller,
            "renew maintenance contracts",
        )
        .gql()?;
        let id = self::contract_id(contract_id).gql()?;
        desk(ctx)
            .gql()?
            .renew_contract(
                &metadata(ctx, caller),
                &id,
                &reference,
                months(term_months).gql()?,
                Utc::now(),
            )
            .await
            .gql()?;
        Ok(ServiceChange { id })
    }

    /// Switches a contract's automatic renewal on or off.
    ///
    /// The current setting again records nothing. Owners, admins and finance (else
    /// `FORBIDDEN`); refused with `BAD_CONTRACT_ID`, `UNKNOWN_CONTRACT` or `CONTRACT_CANCELLED`.
    /// Answers the contract's id.
    async fn set_maintenance_auto_renewal(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contract's id (`mc_…`).")] contract_id: String,
        #[graphql(desc = "true: renew for 12 months each time the end passes; false: let it lapse.")] auto_renew: bool,
    ) -> async_graphql::Result<ServiceChange> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::RunMaintenanceContracts),
            caller,
            "change maintenance contracts",
        )
        .gql()?;
        let id = self::contract_id(contract_id).gql()?;
        desk(ctx)
            .gql()?
            .set_auto_renewal(&metadata(ctx, caller), &id, auto_renew, Utc::now())
            .await
            .gql()?;
        Ok(ServiceChange { id })
    }

    /// Cancels a contract, with an optional reason (sealed).
    ///
    /// Also switches auto-renewal off; cancelling again records nothing. Owners, admins and
    /// finance (else `FORBIDDEN`); refused with `BAD_CONTRACT_ID`, `UNKNOWN_CONTRACT` or
    /// `INVALID_INPUT` (blank or over-long reason). Answers the contract's id.
    async fn cancel_maintenance_contract(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contract's id (`mc_…`).")] contract_id: String,
        #[graphql(desc = "Why (sealed; 1 to 4000 characters, not blank); null for no reason.")] reason: Option<String>,
    ) -> async_graphql::Result<ServiceChange> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::RunMaintenanceContracts),
            caller,
            "cancel maintenance contracts",
        )
        .gql()?;
        let id = self::contract_id(contract_id).gql()?;
        desk(ctx)
            .gql()?
            .cancel_contract(&metadata(ctx, caller), &id, reason.as_deref(), Utc::now())
            .await
            .gql()?;
        Ok(ServiceChange { id })
    }
}
