//! Orders, installations and payouts (issue 4): `orders`, `order`, `installations` (filtered
//! by status, type, technician and scheduled period), `installation` with its checklist progress
//! and `timeline`, `technicianCalendar`, `payouts` with totals, `installationCounts`, and one
//! mutation per command.
//!
//! Roles: orders are read by owner, admin, agent, finance, auditor and placed, cancelled and
//! fulfilled by owner, admin, agent; cash payments are recorded by owner, admin, finance.
//! Installations are read by every role but integrator; opened, staffed, scheduled and
//! decommissioned by owner and admin; the field work (start, checklist, photos, components,
//! commissioning, activation) is done by owner, admin and the technicians assigned to it. Payouts are read by owner,
//! admin, finance, auditor and approved and paid by owner, admin, finance.
//!
//! A refused commissioning answers `COMMISSIONING_INCOMPLETE` with `extensions`
//! `missingChecklistItems`, `missingPhotos` and `noTechnician`: exactly what is missing.
//! Mutations answer with an id or `true`; the read models catch up a moment later.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{ComplexObject, Context, Enum, ErrorExtensions, InputObject, Object, SimpleObject};
use chronicle_commands::error::{CommandError, DomainError};
use chronicle_commands::installations::{InstallationService, OpenRequest};
use chronicle_commands::keystore::KeyStore;
use chronicle_domain::installation::{
    photo_requirements, required_checklist, InstallationError, InstallationStatus as DomainStatus,
    InstallationType as DomainType, LineItem, PaymentProvider,
};
use chronicle_projections::installations::{
    self as read, CalendarDay as CalendarRow, InstallationFilter as ReadFilter, InstallationRow, OrderRow, PayoutRow,
};
use chrono::{DateTime, NaiveDate, Utc};

use super::contacts::commands;
use super::{caller, metadata, pool, require};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, IntoGraphql};

/// Whether the role may read orders.
fn reads_orders(role: Role) -> bool {
    matches!(
        role,
        Role::Owner | Role::Admin | Role::Agent | Role::Finance | Role::Auditor
    )
}

/// Whether the role may place, cancel and fulfil orders.
fn sells(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin | Role::Agent)
}

/// Whether the role may handle money: cash payments, payouts.
fn handles_money(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin | Role::Finance)
}

/// Whether the role may read installations, calendars and counts.
fn reads_installations(role: Role) -> bool {
    !matches!(role, Role::Integrator)
}

/// Whether the role may open, staff, schedule and decommission installations.
fn manages_installations(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin)
}

/// Whether the role may do the field work of an installation.
fn works_installations(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin | Role::Technician)
}

/// Whether the role may grant a payout's quality bonus (a management decision: not finance).
fn grants_quality_bonuses(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin)
}

/// Whether the role may read payouts.
fn reads_payouts(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin | Role::Finance | Role::Auditor)
}

/// Field work: owner and admin on any installation, a technician only on an installation they
/// are assigned to (read from the installation's own stream, not a read model).
async fn require_field_work(
    ctx: &Context<'_>,
    caller: &Caller,
    installation_id: &str,
    what: &str,
) -> Result<InstallationService, ApiError> {
    require(works_installations(caller.role), caller, what)?;
    let service = service(ctx)?;
    if caller.role == Role::Technician {
        let team = service.team(&caller.tenant, installation_id).await?;
        if !team.contains(&caller.user_id) {
            return Err(ApiError::Forbidden(format!(
                "a technician can only {what} on an installation they are assigned to"
            )));
        }
    }
    Ok(service)
}

fn service(ctx: &Context<'_>) -> Result<InstallationService, ApiError> {
    let keys = ctx
        .data::<KeyStore>()
        .map_err(|_| ApiError::Unavailable("no key store in the schema".into()))?;
    Ok(InstallationService::new(commands(ctx)?.clone(), keys.clone()))
}

/// Maps a command's outcome: a refused commissioning lists what is missing in `extensions`;
/// everything else as every resolver does.
fn answer<T>(result: Result<T, CommandError>) -> async_graphql::Result<T> {
    match result {
        Err(CommandError::Rejected(DomainError::Installation(InstallationError::CommissioningIncomplete {
            missing_checklist_items,
            missing_photos,
            no_technician,
        }))) => {
            let error = ApiError::Command(CommandError::Rejected(DomainError::Installation(
                InstallationError::CommissioningIncomplete {
                    missing_checklist_items: missing_checklist_items.clone(),
                    missing_photos: missing_photos.clone(),
                    no_technician,
                },
            )));
            Err(error.extend().extend_with(|_, ext| {
                ext.set("missingChecklistItems", missing_checklist_items.clone());
                ext.set("missingPhotos", missing_photos.clone());
                ext.set("noTechnician", no_technician);
            }))
        }
        other => other.gql(),
    }
}

fn non_negative(value: i32, field: &'static str) -> Result<u32, ApiError> {
    u32::try_from(value).map_err(|_| ApiError::bad_request("INVALID_INPUT", format!("{field} must not be negative")))
}

fn non_negative_i64(value: i64, field: &'static str) -> Result<u32, ApiError> {
    u32::try_from(value)
        .map_err(|_| ApiError::bad_request("INVALID_INPUT", format!("{field} must be between 0 and {}", u32::MAX)))
}

/// What is installed.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum InstallationType {
    Solar,
    Starlink,
    Hybrid,
    CustomFurniture,
}

impl InstallationType {
    fn domain(self) -> DomainType {
        match self {
            Self::Solar => DomainType::Solar,
            Self::Starlink => DomainType::Starlink,
            Self::Hybrid => DomainType::Hybrid,
            Self::CustomFurniture => DomainType::CustomFurniture,
        }
    }

    fn parse(name: &str) -> Self {
        match DomainType::parse(name) {
            Some(DomainType::Starlink) => Self::Starlink,
            Some(DomainType::Hybrid) => Self::Hybrid,
            Some(DomainType::CustomFurniture) => Self::CustomFurniture,
            _ => Self::Solar,
        }
    }
}

/// Where an installation stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum InstallationStatus {
    Pending,
    InProgress,
    Commissioned,
    Active,
    Decommissioned,
}

impl InstallationStatus {
    fn domain(self) -> DomainStatus {
        match self {
            Self::Pending => DomainStatus::Pending,
            Self::InProgress => DomainStatus::InProgress,
            Self::Commissioned => DomainStatus::Commissioned,
            Self::Active => DomainStatus::Active,
            Self::Decommissioned => DomainStatus::Decommissioned,
        }
    }

    fn parse(name: &str) -> Self {
        match DomainStatus::parse(name) {
            Some(DomainStatus::InProgress) => Self::InProgress,
            Some(DomainStatus::Commissioned) => Self::Commissioned,
            Some(DomainStatus::Active) => Self::Active,
            Some(DomainStatus::Decommissioned) => Self::Decommissioned,
            _ => Self::Pending,
        }
    }
}

/// Where an order stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum OrderStatus {
    Placed,
    Paid,
    Fulfilled,
    Cancelled,
}

impl OrderStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Paid => "paid",
            Self::Fulfilled => "fulfilled",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(name: &str) -> Self {
        match name {
            "paid" => Self::Paid,
            "fulfilled" => Self::Fulfilled,
            "cancelled" => Self::Cancelled,
            _ => Self::Placed,
        }
    }
}

/// Where a payout stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PayoutStatus {
    Pending,
    Approved,
    Paid,
}

impl PayoutStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Paid => "paid",
        }
    }

    fn parse(name: &str) -> Self {
        match name {
            "approved" => Self::Approved,
            "paid" => Self::Paid,
            _ => Self::Pending,
        }
    }
}

/// A line of an order.
#[derive(SimpleObject)]
pub struct OrderItem {
    pub sku: String,
    pub description: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub currency: String,
    /// What installing it means, if it is installed on site.
    pub installable: Option<InstallationType>,
}

/// A payment recorded on an order.
#[derive(SimpleObject)]
pub struct OrderPayment {
    pub provider: String,
    pub reference: String,
    pub amount_minor: i64,
    pub at: DateTime<Utc>,
}

/// An order. Amounts in integer minor units of `currency`.
#[derive(SimpleObject)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub status: OrderStatus,
    pub currency: String,
    pub total_minor: i64,
    pub paid_minor: i64,
    pub outstanding_minor: i64,
    pub paid: bool,
    pub items: Vec<OrderItem>,
    pub installable: bool,
    pub payments: Vec<OrderPayment>,
    pub placed_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub fulfilled_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl Order {
    fn from_row(row: OrderRow) -> Self {
        let status = OrderStatus::parse(&row.status);
        Self {
            id: row.order_id,
            customer_id: row.customer_id,
            paid: row.paid_at.is_some(),
            status,
            currency: row.currency,
            total_minor: row.total_minor,
            paid_minor: row.paid_minor,
            outstanding_minor: row.outstanding_minor,
            items: row
                .items
                .into_iter()
                .map(|i| OrderItem {
                    sku: i.sku,
                    description: i.description,
                    quantity: i64::from(i.quantity),
                    unit_price_minor: i.unit_price_minor,
                    currency: i.currency,
                    installable: i.installable.as_deref().map(InstallationType::parse),
                })
                .collect(),
            installable: row.installable,
            payments: row
                .payments
                .into_iter()
                .map(|p| OrderPayment {
                    provider: p.provider,
                    reference: p.reference,
                    amount_minor: p.amount_minor,
                    at: p.at,
                })
                .collect(),
            placed_at: row.placed_at,
            paid_at: row.paid_at,
            fulfilled_at: row.fulfilled_at,
            cancelled_at: row.cancelled_at,
        }
    }
}

/// Checklist progress: `done` of `required`, and what is still missing.
#[derive(SimpleObject)]
pub struct ChecklistProgress {
    pub done: i32,
    pub required: i32,
    /// Completed items, in the order completed.
    pub completed_items: Vec<String>,
    /// Required items not completed yet, in checklist order.
    pub missing_items: Vec<String>,
}

/// A photo attached to an installation (the content is stored elsewhere, named by its hash).
#[derive(SimpleObject)]
pub struct InstallationPhoto {
    pub kind: String,
    pub sha256: String,
    pub at: DateTime<Utc>,
}

/// A serialized component installed.
#[derive(SimpleObject)]
pub struct InstalledComponent {
    pub serial: String,
    pub kind: String,
    pub warranty_months: i64,
    pub at: DateTime<Utc>,
}

/// One event of an installation's history.
#[derive(SimpleObject)]
pub struct TimelineEntry {
    pub sequence: i64,
    pub event_type: String,
    pub at: DateTime<Utc>,
    /// `user:<id>:<role>` or `system:<component>`.
    pub actor: String,
    /// A human summary; personal data (reasons, addresses) is never shown here.
    pub summary: String,
}

/// An installation system record.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Installation {
    pub id: String,
    pub order_id: String,
    pub customer_id: String,
    #[graphql(name = "type")]
    pub installation_type: InstallationType,
    pub status: InstallationStatus,
    pub system_size_w: i64,
    /// Absent when not recorded yet or after the customer was erased.
    pub site_address: Option<String>,
    pub technicians: Vec<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub checklist: ChecklistProgress,
    pub photos: Vec<InstallationPhoto>,
    /// Required photo kinds not attached yet.
    pub missing_photos: Vec<String>,
    pub components: Vec<InstalledComponent>,
    pub opened_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub commissioned_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
    pub decommissioned_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl Installation {
    fn from_row(row: InstallationRow) -> Self {
        let domain_type = DomainType::parse(&row.installation_type);
        let missing_items = domain_type
            .map(required_checklist)
            .unwrap_or_default()
            .iter()
            .filter(|item| !row.checklist_done.iter().any(|d| d == **item))
            .map(|item| item.to_string())
            .collect();
        let missing_photos = domain_type
            .map(photo_requirements)
            .unwrap_or_default()
            .iter()
            .filter(|kind| !row.photos.iter().any(|p| p.kind == **kind))
            .map(|kind| kind.to_string())
            .collect();
        Self {
            id: row.installation_id,
            order_id: row.order_id,
            customer_id: row.customer_id,
            installation_type: InstallationType::parse(&row.installation_type),
            status: InstallationStatus::parse(&row.status),
            system_size_w: row.system_size_w,
            site_address: row.site_address,
            technicians: row.technicians,
            scheduled_at: row.scheduled_at,
            checklist: ChecklistProgress {
                done: i32::try_from(row.checklist_done.len()).unwrap_or(i32::MAX),
                required: row.checklist_required,
                completed_items: row.checklist_done,
                missing_items,
            },
            photos: row
                .photos
                .into_iter()
                .map(|p| InstallationPhoto {
                    kind: p.kind,
                    sha256: p.sha256,
                    at: p.at,
                })
                .collect(),
            missing_photos,
            components: row
                .components
                .into_iter()
                .map(|c| InstalledComponent {
                    serial: c.serial,
                    kind: c.kind,
                    warranty_months: i64::from(c.warranty_months),
                    at: c.at,
                })
                .collect(),
            opened_at: row.opened_at,
            started_at: row.started_at,
            commissioned_at: row.commissioned_at,
            activated_at: row.activated_at,
            decommissioned_at: row.decommissioned_at,
            updated_at: row.updated_at,
        }
    }
}

#[ComplexObject]
impl Installation {
    /// Every event of the installation, in order, with time, actor and a summary.
    async fn timeline(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TimelineEntry>> {
        let caller = caller(ctx).gql()?;
        let entries = read::timeline(pool(ctx).gql()?, &caller.tenant, &self.id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(entries
            .into_iter()
            .map(|e| TimelineEntry {
                sequence: e.sequence,
                event_type: e.event_type,
                at: e.at,
                actor: e.actor,
                summary: e.summary,
            })
            .collect())
    }
}

/// A technician's installations on one day (UTC).
#[derive(SimpleObject)]
pub struct CalendarDay {
    pub technician: String,
    pub day: NaiveDate,
    pub installations: Vec<Installation>,
}

impl CalendarDay {
    fn from_row(row: CalendarRow) -> Self {
        Self {
            technician: row.technician,
            day: row.day,
            installations: row.installations.into_iter().map(Installation::from_row).collect(),
        }
    }
}

/// How many installations have a type and status.
#[derive(SimpleObject)]
pub struct InstallationCount {
    #[graphql(name = "type")]
    pub installation_type: InstallationType,
    pub status: InstallationStatus,
    pub count: i64,
}

/// A technician payout.
#[derive(SimpleObject)]
pub struct Payout {
    pub id: String,
    pub installation_id: String,
    pub technician_ids: Vec<String>,
    pub system_size_w: i64,
    /// small, medium, large, commercial.
    pub tier: String,
    pub base_minor: i64,
    pub bonus_minor: i64,
    pub amount_minor: i64,
    pub currency: String,
    pub status: PayoutStatus,
    pub computed_at: DateTime<Utc>,
    pub approved_at: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub paid_reference: Option<String>,
}

impl Payout {
    fn from_row(row: PayoutRow) -> Self {
        Self {
            id: row.payout_id,
            installation_id: row.installation_id,
            technician_ids: row.technician_ids,
            system_size_w: row.system_size_w,
            tier: row.tier,
            base_minor: row.base_minor,
            bonus_minor: row.bonus_minor,
            amount_minor: row.amount_minor,
            currency: row.currency,
            status: PayoutStatus::parse(&row.status),
            computed_at: row.computed_at,
            approved_at: row.approved_at,
            approved_by: row.approved_by,
            paid_at: row.paid_at,
            paid_reference: row.paid_reference,
        }
    }
}

/// The count and total of payouts with a status, per currency.
#[derive(SimpleObject)]
pub struct PayoutTotal {
    pub status: PayoutStatus,
    pub currency: String,
    pub count: i64,
    pub total_minor: i64,
}

/// Payouts with their totals.
#[derive(SimpleObject)]
pub struct PayoutList {
    /// Latest computed first (at most 500).
    pub nodes: Vec<Payout>,
    pub totals: Vec<PayoutTotal>,
}

/// A line item to order.
#[derive(InputObject)]
pub struct OrderItemInput {
    pub sku: String,
    pub description: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub currency: String,
    pub installable: Option<InstallationType>,
}

/// An installation opened by hand.
#[derive(InputObject)]
pub struct OpenInstallationInput {
    #[graphql(name = "type")]
    pub installation_type: InstallationType,
    pub customer_id: String,
    pub order_id: String,
    #[graphql(default)]
    pub site_address: String,
    pub system_size_w: i64,
}

#[derive(Default)]
pub struct InstallationsQuery;

#[Object]
impl InstallationsQuery {
    /// The tenant's orders, latest first.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        status: Option<OrderStatus>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Order>> {
        let caller = caller(ctx).gql()?;
        require(reads_orders(caller.role), caller, "read orders").gql()?;
        let page = read::list_orders(
            pool(ctx).gql()?,
            &caller.tenant,
            status.map(OrderStatus::as_str),
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
                .map(|(cursor, row)| Edge::new(cursor, Order::from_row(row))),
        );
        Ok(connection)
    }

    /// One order of the tenant.
    async fn order(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Option<Order>> {
        let caller = caller(ctx).gql()?;
        require(reads_orders(caller.role), caller, "read orders").gql()?;
        let row = read::order(pool(ctx).gql()?, &caller.tenant, &id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(Order::from_row))
    }

    /// The tenant's installations, latest opened first; `from`/`to` keep those scheduled in
    /// `[from, to)`.
    #[allow(clippy::too_many_arguments)]
    async fn installations(
        &self,
        ctx: &Context<'_>,
        status: Option<InstallationStatus>,
        #[graphql(name = "type")] installation_type: Option<InstallationType>,
        technician: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Installation>> {
        let caller = caller(ctx).gql()?;
        require(reads_installations(caller.role), caller, "read installations").gql()?;
        let filter = ReadFilter {
            status: status.map(|s| s.domain().as_str().to_string()),
            installation_type: installation_type.map(|t| t.domain().as_str().to_string()),
            technician,
            from,
            to,
        };
        let page = read::list_installations(
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
                .map(|(cursor, row)| Edge::new(cursor, Installation::from_row(row))),
        );
        Ok(connection)
    }

    /// One installation of the tenant, with checklist progress and timeline.
    async fn installation(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Option<Installation>> {
        let caller = caller(ctx).gql()?;
        require(reads_installations(caller.role), caller, "read installations").gql()?;
        let row = read::installation(pool(ctx).gql()?, &caller.tenant, &id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(Installation::from_row))
    }

    /// A technician's calendar (every technician's without `technician`): per technician and
    /// day, the installations scheduled in `[from, to)` (at most 93 days).
    async fn technician_calendar(
        &self,
        ctx: &Context<'_>,
        technician: Option<String>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> async_graphql::Result<Vec<CalendarDay>> {
        let caller = caller(ctx).gql()?;
        require(reads_installations(caller.role), caller, "read calendars").gql()?;
        if to <= from || to - from > chrono::Duration::days(93) {
            return Err(ApiError::bad_request(
                "INVALID_PERIOD",
                "`to` must be after `from`, at most 93 days later",
            ))
            .gql();
        }
        let days = read::technician_calendar(pool(ctx).gql()?, &caller.tenant, technician.as_deref(), from, to)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(days.into_iter().map(CalendarDay::from_row).collect())
    }

    /// Payouts (of one status, or all) with their counts and totals per status and currency.
    async fn payouts(&self, ctx: &Context<'_>, status: Option<PayoutStatus>) -> async_graphql::Result<PayoutList> {
        let caller = caller(ctx).gql()?;
        require(reads_payouts(caller.role), caller, "read payouts").gql()?;
        let pool = pool(ctx).gql()?;
        let status = status.map(PayoutStatus::as_str);
        let rows = read::list_payouts(pool, &caller.tenant, status)
            .await
            .map_err(ApiError::from)
            .gql()?;
        let totals = read::payout_totals(pool, &caller.tenant, status)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(PayoutList {
            nodes: rows.into_iter().map(Payout::from_row).collect(),
            totals: totals
                .into_iter()
                .map(|t| PayoutTotal {
                    status: PayoutStatus::parse(&t.status),
                    currency: t.currency,
                    count: t.count,
                    total_minor: t.total_minor,
                })
                .collect(),
        })
    }

    /// Installations per type and status (pairs that occur), for dashboards.
    async fn installation_counts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<InstallationCount>> {
        let caller = caller(ctx).gql()?;
        require(reads_installations(caller.role), caller, "read installations").gql()?;
        let counts = read::installation_counts(pool(ctx).gql()?, &caller.tenant)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(counts
            .into_iter()
            .map(|c| InstallationCount {
                installation_type: InstallationType::parse(&c.installation_type),
                status: InstallationStatus::parse(&c.status),
                count: c.count,
            })
            .collect())
    }
}

#[derive(Default)]
pub struct InstallationsMutation;

#[Object]
impl InstallationsMutation {
    /// Places an order for a customer (a contact id); returns the order id.
    async fn place_order(
        &self,
        ctx: &Context<'_>,
        customer_id: String,
        items: Vec<OrderItemInput>,
    ) -> async_graphql::Result<String> {
        let caller = caller(ctx).gql()?;
        require(sells(caller.role), caller, "place orders").gql()?;
        let items = items
            .into_iter()
            .map(|i| {
                Ok(LineItem {
                    sku: i.sku,
                    description: i.description,
                    quantity: non_negative(i.quantity, "quantity")?,
                    unit_price_minor: i.unit_price_minor,
                    currency: i.currency,
                    installable: i.installable.map(InstallationType::domain),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()
            .gql()?;
        answer(
            service(ctx)
                .gql()?
                .place_order(&customer_id, items, &metadata(ctx, caller))
                .await,
        )
    }

    /// Records a cash payment (owner, admin, finance); provider payments arrive by callback.
    async fn record_cash_payment(
        &self,
        ctx: &Context<'_>,
        order_id: String,
        reference: String,
        amount_minor: i64,
        currency: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(handles_money(caller.role), caller, "record payments").gql()?;
        answer(
            service(ctx)
                .gql()?
                .record_payment(
                    &order_id,
                    PaymentProvider::Cash,
                    &reference,
                    amount_minor,
                    &currency,
                    &metadata(ctx, caller),
                )
                .await,
        )?;
        Ok(true)
    }

    /// Cancels an order not yet fulfilled (the reason is stored sealed).
    async fn cancel_order(
        &self,
        ctx: &Context<'_>,
        order_id: String,
        reason: Option<String>,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(sells(caller.role), caller, "cancel orders").gql()?;
        answer(
            service(ctx)
                .gql()?
                .cancel_order(&order_id, reason.as_deref(), &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Marks a paid order fulfilled.
    async fn fulfil_order(&self, ctx: &Context<'_>, order_id: String) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(sells(caller.role), caller, "fulfil orders").gql()?;
        answer(
            service(ctx)
                .gql()?
                .fulfil_order(&order_id, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Opens an installation by hand (a paid order opens one by itself); returns its id.
    async fn open_installation(
        &self,
        ctx: &Context<'_>,
        input: OpenInstallationInput,
    ) -> async_graphql::Result<String> {
        let caller = caller(ctx).gql()?;
        require(manages_installations(caller.role), caller, "open installations").gql()?;
        let request = OpenRequest {
            installation_type: input.installation_type.domain(),
            customer_id: input.customer_id,
            order_id: input.order_id,
            site_address: input.site_address,
            system_size_w: non_negative_i64(input.system_size_w, "systemSizeW").gql()?,
        };
        answer(
            service(ctx)
                .gql()?
                .open_installation(request, &metadata(ctx, caller))
                .await,
        )
    }

    /// Assigns a technician (by user id).
    async fn assign_technician(
        &self,
        ctx: &Context<'_>,
        installation_id: String,
        technician_id: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(manages_installations(caller.role), caller, "assign technicians").gql()?;
        answer(
            service(ctx)
                .gql()?
                .assign_technician(&installation_id, &technician_id, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Unassigns a technician.
    async fn unassign_technician(
        &self,
        ctx: &Context<'_>,
        installation_id: String,
        technician_id: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(manages_installations(caller.role), caller, "unassign technicians").gql()?;
        answer(
            service(ctx)
                .gql()?
                .unassign_technician(&installation_id, &technician_id, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Schedules the job for the first time.
    async fn schedule_installation(
        &self,
        ctx: &Context<'_>,
        installation_id: String,
        starts_at: DateTime<Utc>,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(manages_installations(caller.role), caller, "schedule installations").gql()?;
        answer(
            service(ctx)
                .gql()?
                .schedule(&installation_id, starts_at, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Moves a scheduled job, with a reason (stored sealed).
    async fn reschedule_installation(
        &self,
        ctx: &Context<'_>,
        installation_id: String,
        starts_at: DateTime<Utc>,
        reason: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(manages_installations(caller.role), caller, "reschedule installations").gql()?;
        answer(
            service(ctx)
                .gql()?
                .reschedule(&installation_id, starts_at, &reason, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Starts the work on site (needs a technician).
    async fn start_installation_work(&self, ctx: &Context<'_>, installation_id: String) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        let service = require_field_work(ctx, caller, &installation_id, "start installation work")
            .await
            .gql()?;
        answer(service.start_work(&installation_id, &metadata(ctx, caller)).await)?;
        Ok(true)
    }

    /// Ticks an item of the type's checklist.
    async fn complete_checklist_item(
        &self,
        ctx: &Context<'_>,
        installation_id: String,
        item: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        let service = require_field_work(ctx, caller, &installation_id, "complete checklist items")
            .await
            .gql()?;
        answer(
            service
                .complete_checklist_item(&installation_id, &item, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Attaches a photo by kind and the sha-256 (lowercase hex) of its content.
    async fn attach_installation_photo(
        &self,
        ctx: &Context<'_>,
        installation_id: String,
        kind: String,
        sha256: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        let service = require_field_work(ctx, caller, &installation_id, "attach photos")
            .await
            .gql()?;
        answer(
            service
                .attach_photo(&installation_id, &kind, &sha256, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Records a serialized component installed, with its warranty period in months.
    async fn install_component(
        &self,
        ctx: &Context<'_>,
        installation_id: String,
        serial: String,
        kind: String,
        #[graphql(default = 0)] warranty_months: i32,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        let months = non_negative(warranty_months, "warrantyMonths").gql()?;
        let service = require_field_work(ctx, caller, &installation_id, "install components")
            .await
            .gql()?;
        answer(
            service
                .install_component(&installation_id, &serial, &kind, months, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Commissions; refused with `COMMISSIONING_INCOMPLETE` listing what is missing.
    async fn commission_installation(&self, ctx: &Context<'_>, installation_id: String) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        let service = require_field_work(ctx, caller, &installation_id, "commission installations")
            .await
            .gql()?;
        answer(service.commission(&installation_id, &metadata(ctx, caller)).await)?;
        Ok(true)
    }

    /// Activates a commissioned installation.
    async fn activate_installation(&self, ctx: &Context<'_>, installation_id: String) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        let service = require_field_work(ctx, caller, &installation_id, "activate installations")
            .await
            .gql()?;
        answer(service.activate(&installation_id, &metadata(ctx, caller)).await)?;
        Ok(true)
    }

    /// Decommissions (the reason is stored sealed).
    async fn decommission_installation(
        &self,
        ctx: &Context<'_>,
        installation_id: String,
        reason: Option<String>,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(manages_installations(caller.role), caller, "decommission installations").gql()?;
        answer(
            service(ctx)
                .gql()?
                .decommission(&installation_id, reason.as_deref(), &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Approves a pending payout (not by a technician it pays).
    async fn approve_payout(&self, ctx: &Context<'_>, payout_id: String) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(handles_money(caller.role), caller, "approve payouts").gql()?;
        answer(
            service(ctx)
                .gql()?
                .approve_payout(&payout_id, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Grants (or replaces) the quality bonus of a pending payout, in minor units of its
    /// currency (owner and admin; not a technician it pays). Refused once approved
    /// (`PAYOUT_NOT_PENDING`), for zero or above the maximum (`QUALITY_BONUS_OUT_OF_RANGE`).
    async fn grant_quality_bonus(
        &self,
        ctx: &Context<'_>,
        payout_id: String,
        amount_minor: i64,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(grants_quality_bonuses(caller.role), caller, "grant quality bonuses").gql()?;
        let amount_minor = non_negative_i64(amount_minor, "amountMinor").gql()?;
        answer(
            service(ctx)
                .gql()?
                .grant_quality_bonus(&payout_id, amount_minor, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Records that an approved payout was paid under finance's reference.
    async fn mark_payout_paid(
        &self,
        ctx: &Context<'_>,
        payout_id: String,
        reference: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(handles_money(caller.role), caller, "pay payouts").gql()?;
        answer(
            service(ctx)
                .gql()?
                .mark_payout_paid(&payout_id, &reference, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }
}
