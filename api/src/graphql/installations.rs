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
use chronicle_commands::installation::{InstallationService, OpenRequest};
use chronicle_commands::keystore::KeyStore;
use chronicle_domain::installation::{
    photo_requirements, required_checklist, InstallationError, InstallationStatus as DomainStatus,
    InstallationType as DomainType, LineItem, PaymentProvider,
};
use chronicle_projections::installation::{
    self as read, CalendarDay as CalendarRow, InstallationFilter as ReadFilter, InstallationRow, OrderRow, PayoutRow,
};
use chrono::{DateTime, NaiveDate, Utc};

use super::{caller, commands, metadata, pool, require};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

/// Field work: owner and admin on any installation, a technician only on an installation they
/// are assigned to (read from the installation's own stream, not a read model).
async fn require_field_work(
    ctx: &Context<'_>,
    caller: &Caller,
    installation_id: &str,
    what: &str,
) -> Result<InstallationService, ApiError> {
    require(caller.role.may(Permission::WorkInstallations), caller, what)?;
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
    /// A solar PV system: panels and an inverter.
    Solar,
    /// A Starlink satellite internet kit: dish and router.
    Starlink,
    /// Solar with battery storage: panels, inverter, battery and changeover.
    Hybrid,
    /// Custom furniture, assembled and fitted on site.
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
    /// Opened; work not started yet (staffing and scheduling happen now).
    Pending,
    /// Work started on site; checklist items, photos and components are recorded now.
    InProgress,
    /// Every required checklist item and photo done, with a technician; the payout and warranties
    /// follow.
    Commissioned,
    /// Activated after commissioning: in service.
    Active,
    /// Taken out of service after commissioning or activation; final.
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
    /// Placed and not fully paid yet (it may hold part payments).
    Placed,
    /// The payments cover the total.
    Paid,
    /// Paid, then delivered or handed over; final.
    Fulfilled,
    /// Cancelled before fulfilment, possibly after payments (`paidMinor` is what is owed back);
    /// final.
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
    /// Computed at commissioning, awaiting approval; a quality bonus may still be granted.
    Pending,
    /// Approved by someone it does not pay; awaiting payment.
    Approved,
    /// Paid under finance's reference; final.
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
    /// The product's stock-keeping unit, as ordered.
    pub sku: String,
    /// The product's catalogue description.
    pub description: String,
    /// How many units (above zero).
    pub quantity: i64,
    /// The price of one unit in integer minor units (cents) of `currency`; not negative.
    pub unit_price_minor: i64,
    /// ISO 4217 code (`USD`, `ZWG`, `KES`…): the order's currency.
    pub currency: String,
    /// What installing it means, if it is installed on site.
    pub installable: Option<InstallationType>,
}

/// A payment recorded on an order.
#[derive(SimpleObject)]
pub struct OrderPayment {
    /// Who took it: `paynow`, `mpesa`, `stripe` or `cash`.
    pub provider: String,
    /// The provider's reference (Paynow reference, M-Pesa receipt, Stripe payment intent, cash
    /// receipt number); recorded once per provider on an order.
    pub reference: String,
    /// The amount in integer minor units of the order's currency (above zero).
    pub amount_minor: i64,
    /// When the payment was recorded on the order (RFC 3339, UTC).
    pub at: DateTime<Utc>,
}

/// An order. Amounts in integer minor units of `currency`.
#[derive(SimpleObject)]
pub struct Order {
    /// The order id, `order_<uuid>`.
    pub id: String,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// Where the order stands.
    pub status: OrderStatus,
    /// ISO 4217 code every amount of the order is in.
    pub currency: String,
    /// The total: Σ quantity × unit price over the items, in minor units (above zero).
    pub total_minor: i64,
    /// The sum of the payments recorded, in minor units (never above the total).
    pub paid_minor: i64,
    /// What is still owed: `totalMinor − paidMinor`, in minor units.
    pub outstanding_minor: i64,
    /// Whether the payments covered the total (`paidAt` is set); it stays true after fulfilment
    /// or cancellation.
    pub paid: bool,
    /// The line items, as placed.
    pub items: Vec<OrderItem>,
    /// Whether any item is installed on site (paying such an order opens an installation).
    pub installable: bool,
    /// The payments recorded, in the order they were recorded.
    pub payments: Vec<OrderPayment>,
    /// When the order was placed (RFC 3339, UTC).
    pub placed_at: DateTime<Utc>,
    /// When the payments covered the total (RFC 3339, UTC); null until then.
    pub paid_at: Option<DateTime<Utc>>,
    /// When the order was fulfilled (RFC 3339, UTC); null unless fulfilled.
    pub fulfilled_at: Option<DateTime<Utc>>,
    /// When the order was cancelled (RFC 3339, UTC); null unless cancelled.
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
    /// How many of the required checklist items are completed.
    pub done: i32,
    /// How many items the installation type's checklist has (every one is required for
    /// commissioning).
    pub required: i32,
    /// Completed items, in the order completed.
    pub completed_items: Vec<String>,
    /// Required items not completed yet, in checklist order.
    pub missing_items: Vec<String>,
}

/// A photo attached to an installation (the content is stored elsewhere, named by its hash).
#[derive(SimpleObject)]
pub struct InstallationPhoto {
    /// What the photo shows (`site_before`, `panels`, `dish`…; required kinds not attached yet are
    /// in `Installation.missingPhotos`).
    pub kind: String,
    /// The SHA-256 of the photo's content, 64 lowercase hex characters.
    pub sha256: String,
    /// When the photo was attached (RFC 3339, UTC).
    pub at: DateTime<Utc>,
}

/// A serialized component installed.
#[derive(SimpleObject)]
pub struct InstalledComponent {
    /// The component's serial number (unique within the installation).
    pub serial: String,
    /// What it is: `panel`, `inverter`, `battery`, `dish`, `router`… (free text).
    pub kind: String,
    /// The warranty period in months, registered at commissioning; 0 means no warranty.
    pub warranty_months: i64,
    /// When the component was recorded (RFC 3339, UTC).
    pub at: DateTime<Utc>,
}

/// One event of an installation's history.
#[derive(SimpleObject)]
pub struct TimelineEntry {
    /// The event's position in the installation's event stream (ascending).
    pub sequence: i64,
    /// The event's type: `InstallationOpened`, `TechnicianAssigned`, `InstallationStatusChanged`,
    /// `PhotoAttached`…
    pub event_type: String,
    /// When it happened (RFC 3339, UTC).
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
    /// The installation id, `isr_<uuid>`.
    pub id: String,
    /// The order it was opened for (when opened by hand, the order id given, possibly of another
    /// system).
    pub order_id: String,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// What is installed; it decides the checklist and the required photos.
    #[graphql(name = "type")]
    pub installation_type: InstallationType,
    /// Where the installation stands.
    pub status: InstallationStatus,
    /// The system size in watts (above zero); it decides the payout tier. Opened from an order:
    /// the watts its SKUs name, else the type's nominal size.
    pub system_size_w: i64,
    /// Absent when not recorded yet or after the customer was erased.
    pub site_address: Option<String>,
    /// User ids of the technicians assigned now, sorted.
    pub technicians: Vec<String>,
    /// When the job is scheduled to start (RFC 3339, UTC); null until scheduled.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Progress on the installation type's checklist.
    pub checklist: ChecklistProgress,
    /// The photos attached, in the order attached.
    pub photos: Vec<InstallationPhoto>,
    /// Required photo kinds not attached yet.
    pub missing_photos: Vec<String>,
    /// The serialized components installed, in the order recorded.
    pub components: Vec<InstalledComponent>,
    /// When the installation was opened (RFC 3339, UTC).
    pub opened_at: DateTime<Utc>,
    /// When work started on site (RFC 3339, UTC); null before.
    pub started_at: Option<DateTime<Utc>>,
    /// When it was commissioned (RFC 3339, UTC); null before.
    pub commissioned_at: Option<DateTime<Utc>>,
    /// When it was activated (RFC 3339, UTC); null before.
    pub activated_at: Option<DateTime<Utc>>,
    /// When it was decommissioned (RFC 3339, UTC); null unless decommissioned.
    pub decommissioned_at: Option<DateTime<Utc>>,
    /// When the record last changed (RFC 3339, UTC).
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
    /// The technician's user id.
    pub technician: String,
    /// The day, in UTC (`YYYY-MM-DD`).
    pub day: NaiveDate,
    /// The technician's installations scheduled to start that day, in start order.
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
    /// The installation type counted.
    #[graphql(name = "type")]
    pub installation_type: InstallationType,
    /// The status counted.
    pub status: InstallationStatus,
    /// How many of the tenant's installations have this type and status (above zero).
    pub count: i64,
}

/// A technician payout.
#[derive(SimpleObject)]
pub struct Payout {
    /// The payout id, `payout_<uuid>` (one per installation).
    pub id: String,
    /// The commissioned installation it pays for (`isr_…`).
    pub installation_id: String,
    /// User ids of the technicians it pays (the team at commissioning).
    pub technician_ids: Vec<String>,
    /// The installation's system size in watts, which decides the tier.
    pub system_size_w: i64,
    /// small, medium, large, commercial.
    pub tier: String,
    /// The tier's base amount in minor units of `currency`: small 5000, medium 8000, large 12000,
    /// commercial 20000.
    pub base_minor: i64,
    /// The quality bonus in minor units of `currency`; 0 when none was granted.
    pub bonus_minor: i64,
    /// What is paid: `baseMinor + bonusMinor`, in minor units of `currency`.
    pub amount_minor: i64,
    /// ISO 4217 code: the installation's order's currency (a configured default when the order is
    /// not in the log).
    pub currency: String,
    /// Where the payout stands.
    pub status: PayoutStatus,
    /// When it was computed, after commissioning (RFC 3339, UTC).
    pub computed_at: DateTime<Utc>,
    /// When it was approved (RFC 3339, UTC); null while pending.
    pub approved_at: Option<DateTime<Utc>>,
    /// The user id of who approved it; null while pending.
    pub approved_by: Option<String>,
    /// When it was marked paid (RFC 3339, UTC); null until then.
    pub paid_at: Option<DateTime<Utc>>,
    /// Finance's reference for the payment; null until paid.
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
    /// The status totalled.
    pub status: PayoutStatus,
    /// The ISO 4217 currency totalled.
    pub currency: String,
    /// How many payouts have this status and currency (all of them, not only the 500 listed).
    pub count: i64,
    /// The sum of their `amountMinor`, in minor units of `currency`.
    pub total_minor: i64,
}

/// Payouts with their totals.
#[derive(SimpleObject)]
pub struct PayoutList {
    /// Latest computed first (at most 500).
    pub nodes: Vec<Payout>,
    /// Counts and totals per status and currency, over every payout the filter keeps (not capped at
    /// 500).
    pub totals: Vec<PayoutTotal>,
}

/// A line item to order.
#[derive(InputObject)]
pub struct OrderItemInput {
    /// The product's stock-keeping unit; not blank (`BLANK_FIELD`).
    pub sku: String,
    /// The product's catalogue description (no personal data).
    pub description: String,
    /// How many units: above zero (`ZERO_QUANTITY`; negative: `INVALID_INPUT`).
    pub quantity: i32,
    /// The price of one unit in integer minor units (cents) of `currency`; not negative
    /// (`NEGATIVE_PRICE`).
    pub unit_price_minor: i64,
    /// ISO 4217 code of three capital letters (`INVALID_CURRENCY`), the same on every item
    /// (`MIXED_CURRENCIES`).
    pub currency: String,
    /// What installing it means, if it is installed on site; null for a product that is only
    /// delivered.
    pub installable: Option<InstallationType>,
}

/// An installation opened by hand.
#[derive(InputObject)]
pub struct OpenInstallationInput {
    /// What is installed.
    #[graphql(name = "type")]
    pub installation_type: InstallationType,
    /// The customer's contact id (`ct_…`); not blank.
    pub customer_id: String,
    /// The order it belongs to (it may be another system's id); not blank.
    pub order_id: String,
    /// The site's address, sealed under the customer's data key; empty (the default) leaves it
    /// unrecorded.
    #[graphql(default)]
    pub site_address: String,
    /// The system size in watts: above zero (`ZERO_SYSTEM_SIZE`; negative or above 4294967295:
    /// `INVALID_INPUT`).
    pub system_size_w: i64,
}

#[derive(Default)]
pub struct InstallationsQuery;

#[Object]
impl InstallationsQuery {
    /// The tenant's orders, latest placed first. Owner, admin, agent, finance, auditor.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only orders with this status; every status when null.")] status: Option<OrderStatus>,
        #[graphql(
            default = 20,
            validator(minimum = 1, maximum = 100),
            desc = "Page size: default 20, at least 1, at most 100."
        )]
        first: i32,
        #[graphql(
            desc = "The cursor of the last edge of the previous page; a malformed one is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Order>> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::ReadOrders), caller, "read orders").gql()?;
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

    /// One order of the tenant; null when it has none with this id. Owner, admin, agent,
    /// finance, auditor.
    async fn order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order id (`order_…`).")] id: String,
    ) -> async_graphql::Result<Option<Order>> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::ReadOrders), caller, "read orders").gql()?;
        let row = read::order(pool(ctx).gql()?, &caller.tenant, &id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(Order::from_row))
    }

    /// The tenant's installations, latest opened first; `from`/`to` keep those scheduled in
    /// `[from, to)`. Every role but integrator.
    #[allow(clippy::too_many_arguments)]
    async fn installations(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only installations with this status; all when null.")] status: Option<InstallationStatus>,
        #[graphql(name = "type", desc = "Only installations of this type; every type when null.")]
        installation_type: Option<InstallationType>,
        #[graphql(desc = "Only installations this technician (a user id) is assigned to.")] technician: Option<String>,
        #[graphql(
            desc = "Only installations scheduled at or after this time (RFC 3339); unscheduled ones are left out."
        )]
        from: Option<DateTime<Utc>>,
        #[graphql(desc = "Only installations scheduled before this time (RFC 3339); unscheduled ones are left out.")]
        to: Option<DateTime<Utc>>,
        #[graphql(
            default = 20,
            validator(minimum = 1, maximum = 100),
            desc = "Page size: default 20, at least 1, at most 100."
        )]
        first: i32,
        #[graphql(
            desc = "The cursor of the last edge of the previous page; a malformed one is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Installation>> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ReadInstallations),
            caller,
            "read installations",
        )
        .gql()?;
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

    /// One installation of the tenant, with checklist progress and timeline; null when it has
    /// none with this id. Every role but integrator.
    async fn installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation id (`isr_…`).")] id: String,
    ) -> async_graphql::Result<Option<Installation>> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ReadInstallations),
            caller,
            "read installations",
        )
        .gql()?;
        let row = read::installation(pool(ctx).gql()?, &caller.tenant, &id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(Installation::from_row))
    }

    /// A technician's calendar (every technician's without `technician`): per technician and
    /// day, the installations scheduled in `[from, to)` (at most 93 days), ordered by technician
    /// and day. Every role but integrator.
    async fn technician_calendar(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A technician's user id; every technician's calendar when null.")] technician: Option<String>,
        #[graphql(desc = "The start of the period, inclusive (RFC 3339).")] from: DateTime<Utc>,
        #[graphql(
            desc = "The end of the period, exclusive (RFC 3339): after `from` and at most 93 days later (`INVALID_PERIOD` otherwise)."
        )]
        to: DateTime<Utc>,
    ) -> async_graphql::Result<Vec<CalendarDay>> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::ReadInstallations), caller, "read calendars").gql()?;
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
    /// Owner, admin, finance, auditor.
    async fn payouts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only payouts with this status, in the list and the totals; every status when null.")] status: Option<PayoutStatus>,
    ) -> async_graphql::Result<PayoutList> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::ReadPayouts), caller, "read payouts").gql()?;
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

    /// Installations per type and status (pairs that occur), for dashboards. Every role but
    /// integrator.
    async fn installation_counts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<InstallationCount>> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ReadInstallations),
            caller,
            "read installations",
        )
        .gql()?;
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
    /// Places an order for a customer (a contact id); returns the order id (`order_<uuid>`).
    /// Owner, admin, agent. Refusals: `EMPTY_ORDER`, `MIXED_CURRENCIES`, `INVALID_CURRENCY`,
    /// `ZERO_QUANTITY`, `NEGATIVE_PRICE`, `ZERO_TOTAL`, `TOTAL_OVERFLOW`, `BLANK_FIELD`,
    /// `INVALID_INPUT` (a negative quantity).
    async fn place_order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer's contact id (`ct_…`); not blank.")] customer_id: String,
        #[graphql(desc = "The line items: at least one, all in one currency.")] items: Vec<OrderItemInput>,
    ) -> async_graphql::Result<String> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::Sell), caller, "place orders").gql()?;
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
    /// The payment that covers the total marks the order paid. Refusals: `UNKNOWN_ORDER`,
    /// `OVERPAYMENT`, `PAYMENT_CURRENCY_MISMATCH`, `NON_POSITIVE_PAYMENT`,
    /// `PAYMENT_AFTER_CANCELLATION`, `BLANK_FIELD`. A reference already recorded changes nothing.
    /// Returns `true`.
    async fn record_cash_payment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order (`order_…`).")] order_id: String,
        #[graphql(
            desc = "The cash receipt number; not blank. Recorded once per order: the same reference again changes nothing."
        )]
        reference: String,
        #[graphql(desc = "The amount received, in integer minor units: above zero, at most the amount outstanding.")]
        amount_minor: i64,
        #[graphql(desc = "ISO 4217 code; must be the order's currency.")] currency: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::HandleMoney), caller, "record payments").gql()?;
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

    /// Cancels an order not yet fulfilled (the reason is stored sealed). Owner, admin, agent.
    /// Refusals: `UNKNOWN_ORDER`, `CANCEL_AFTER_FULFILMENT`, `INVALID_INPUT` (a reason for a
    /// customer whose data was erased). Cancelling again changes nothing. Returns `true`.
    async fn cancel_order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order (`order_…`).")] order_id: String,
        #[graphql(desc = "Why, optional free text sealed under the customer's data key (never shown in read models).")]
        reason: Option<String>,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::Sell), caller, "cancel orders").gql()?;
        answer(
            service(ctx)
                .gql()?
                .cancel_order(&order_id, reason.as_deref(), &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Marks a paid order fulfilled. Owner, admin, agent. Refusals: `UNKNOWN_ORDER`,
    /// `FULFILMENT_REQUIRES_PAYMENT` (placed or cancelled). Repeating it changes nothing.
    /// Returns `true`.
    async fn fulfil_order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order (`order_…`).")] order_id: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::Sell), caller, "fulfil orders").gql()?;
        answer(
            service(ctx)
                .gql()?
                .fulfil_order(&order_id, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Opens an installation by hand (a paid order opens one by itself); returns its id
    /// (`isr_<uuid>`). Owner, admin. Refusals: `BLANK_FIELD`, `ZERO_SYSTEM_SIZE`,
    /// `INVALID_INPUT` (a negative size, or a customer whose data was erased).
    async fn open_installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What the installation is opened with.")] input: OpenInstallationInput,
    ) -> async_graphql::Result<String> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ManageInstallations),
            caller,
            "open installations",
        )
        .gql()?;
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

    /// Assigns a technician (by user id), before commissioning only. Owner, admin. Refusals:
    /// `WORK_ALREADY_COMMISSIONED`, `UNKNOWN_INSTALLATION`, `BLANK_FIELD`. Assigning again
    /// changes nothing. Returns `true`.
    async fn assign_technician(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(desc = "The technician's user id; not blank.")] technician_id: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ManageInstallations),
            caller,
            "assign technicians",
        )
        .gql()?;
        answer(
            service(ctx)
                .gql()?
                .assign_technician(&installation_id, &technician_id, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Unassigns a technician, before commissioning only. Owner, admin. Refusals:
    /// `WORK_ALREADY_COMMISSIONED`, `UNKNOWN_INSTALLATION`, `BLANK_FIELD`. A technician not
    /// assigned changes nothing. Returns `true`.
    async fn unassign_technician(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(desc = "The technician's user id; not blank.")] technician_id: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ManageInstallations),
            caller,
            "unassign technicians",
        )
        .gql()?;
        answer(
            service(ctx)
                .gql()?
                .unassign_technician(&installation_id, &technician_id, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Schedules the job for the first time. Owner, admin. Refusals: `ALREADY_SCHEDULED` (set
    /// for another time: reschedule instead), `WORK_ALREADY_COMMISSIONED`,
    /// `UNKNOWN_INSTALLATION`. The same time again changes nothing. Returns `true`.
    async fn schedule_installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(desc = "When the job starts (RFC 3339).")] starts_at: DateTime<Utc>,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ManageInstallations),
            caller,
            "schedule installations",
        )
        .gql()?;
        answer(
            service(ctx)
                .gql()?
                .schedule(&installation_id, starts_at, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Moves a scheduled job, with a reason (stored sealed). Owner, admin. Refusals:
    /// `NOT_SCHEDULED`, `WORK_ALREADY_COMMISSIONED`, `UNKNOWN_INSTALLATION`, `INVALID_INPUT`
    /// (the customer's data was erased). The current time again changes nothing. Returns `true`.
    async fn reschedule_installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(desc = "The new start time (RFC 3339).")] starts_at: DateTime<Utc>,
        #[graphql(
            desc = "Why it moved, sealed under the customer's data key; the timeline only says a reason was recorded."
        )]
        reason: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ManageInstallations),
            caller,
            "reschedule installations",
        )
        .gql()?;
        answer(
            service(ctx)
                .gql()?
                .reschedule(&installation_id, starts_at, &reason, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Starts the work on site (needs a technician): `pending → in_progress`. Owner, admin, or a
    /// technician assigned to it (`FORBIDDEN` otherwise). Refusals: `NO_TECHNICIAN_ASSIGNED`,
    /// `STATUS_MOVE_NOT_ALLOWED`, `UNKNOWN_INSTALLATION`. Already in progress: nothing changes.
    /// Returns `true`.
    async fn start_installation_work(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        let service = require_field_work(ctx, caller, &installation_id, "start installation work")
            .await
            .gql()?;
        answer(service.start_work(&installation_id, &metadata(ctx, caller)).await)?;
        Ok(true)
    }

    /// Ticks an item of the type's checklist, while in progress. Owner, admin, or a technician
    /// assigned to it (`FORBIDDEN` otherwise). Refusals: `UNKNOWN_CHECKLIST_ITEM`,
    /// `NOT_IN_PROGRESS`, `BLANK_FIELD`, `UNKNOWN_INSTALLATION`. An item already ticked changes
    /// nothing. Returns `true`.
    async fn complete_checklist_item(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(
            desc = "An item id of the type's checklist, e.g. `site_survey` (the open ones are in `checklist.missingItems`)."
        )]
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

    /// Attaches a photo by kind and the sha-256 (lowercase hex) of its content, while in
    /// progress. Owner, admin, or a technician assigned to it (`FORBIDDEN` otherwise). Refusals:
    /// `INVALID_CONTENT_HASH`, `NOT_IN_PROGRESS`, `BLANK_FIELD`, `UNKNOWN_INSTALLATION`. The same
    /// kind and hash again changes nothing. Returns `true`.
    async fn attach_installation_photo(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(
            desc = "What the photo shows, e.g. `site_before` (required kinds not attached yet are in `missingPhotos`); not blank."
        )]
        kind: String,
        #[graphql(
            desc = "The SHA-256 of the photo's content, 64 lowercase hex characters (`INVALID_CONTENT_HASH` otherwise)."
        )]
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

    /// Records a serialized component installed, with its warranty period in months, while in
    /// progress. Owner, admin, or a technician assigned to it (`FORBIDDEN` otherwise). Refusals:
    /// `NOT_IN_PROGRESS`, `BLANK_FIELD`, `UNKNOWN_INSTALLATION`, `INVALID_INPUT` (negative
    /// months). A serial already recorded changes nothing. Returns `true`.
    async fn install_component(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(desc = "The component's serial number; not blank.")] serial: String,
        #[graphql(desc = "What it is (`panel`, `inverter`, `battery`, `dish`, `router`…); not blank.")] kind: String,
        #[graphql(
            default = 0,
            desc = "The warranty period in months, registered at commissioning; default 0 (no warranty), not negative."
        )]
        warranty_months: i32,
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
    /// `in_progress → commissioned`; the payout, the components' warranties and the customer's
    /// notification follow. Owner, admin, or a technician assigned to it (`FORBIDDEN` otherwise).
    /// Also `NOT_IN_PROGRESS`, `UNKNOWN_INSTALLATION`. Already commissioned: nothing changes.
    /// Returns `true`.
    async fn commission_installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        let service = require_field_work(ctx, caller, &installation_id, "commission installations")
            .await
            .gql()?;
        answer(service.commission(&installation_id, &metadata(ctx, caller)).await)?;
        Ok(true)
    }

    /// Activates a commissioned installation: `commissioned → active`. Owner, admin, or a
    /// technician assigned to it (`FORBIDDEN` otherwise). Refusals: `STATUS_MOVE_NOT_ALLOWED`,
    /// `UNKNOWN_INSTALLATION`. Already active: nothing changes. Returns `true`.
    async fn activate_installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        let service = require_field_work(ctx, caller, &installation_id, "activate installations")
            .await
            .gql()?;
        answer(service.activate(&installation_id, &metadata(ctx, caller)).await)?;
        Ok(true)
    }

    /// Decommissions (the reason is stored sealed): `commissioned | active → decommissioned`,
    /// final. Owner, admin. Refusals: `STATUS_MOVE_NOT_ALLOWED`, `UNKNOWN_INSTALLATION`,
    /// `INVALID_INPUT` (a reason for a customer whose data was erased). Already decommissioned:
    /// nothing changes. Returns `true`.
    async fn decommission_installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(desc = "Why, optional free text sealed under the customer's data key.")] reason: Option<String>,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::ManageInstallations),
            caller,
            "decommission installations",
        )
        .gql()?;
        answer(
            service(ctx)
                .gql()?
                .decommission(&installation_id, reason.as_deref(), &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Approves a pending payout (not by a technician it pays). Owner, admin, finance.
    /// Refusals: `SELF_APPROVAL`, `UNKNOWN_PAYOUT`. An approved or paid payout is left as it is.
    /// Returns `true`.
    async fn approve_payout(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The payout (`payout_…`).")] payout_id: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::HandleMoney), caller, "approve payouts").gql()?;
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
    /// (`PAYOUT_NOT_PENDING`), for zero or above the maximum of 100000
    /// (`QUALITY_BONUS_OUT_OF_RANGE`); also `SELF_GRANT`, `UNKNOWN_PAYOUT`, `INVALID_INPUT`
    /// (negative). The same bonus again changes nothing. Returns `true`.
    async fn grant_quality_bonus(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The payout (`payout_…`).")] payout_id: String,
        #[graphql(
            desc = "The bonus in minor units of the payout's currency, 1 to 100000; it replaces any earlier bonus."
        )]
        amount_minor: i64,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(
            caller.role.may(Permission::GrantQualityBonuses),
            caller,
            "grant quality bonuses",
        )
        .gql()?;
        let amount_minor = non_negative_i64(amount_minor, "amountMinor").gql()?;
        answer(
            service(ctx)
                .gql()?
                .grant_quality_bonus(&payout_id, amount_minor, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }

    /// Records that an approved payout was paid under finance's reference. Owner, admin,
    /// finance. Refusals: `PAYMENT_REQUIRES_APPROVAL`, `ALREADY_PAID` (under another reference),
    /// `BLANK_FIELD`, `UNKNOWN_PAYOUT`. The same reference again changes nothing. Returns `true`.
    async fn mark_payout_paid(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The payout (`payout_…`).")] payout_id: String,
        #[graphql(desc = "Finance's reference for the payment (a bank or mobile-money transaction); not blank.")]
        reference: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(caller.role.may(Permission::HandleMoney), caller, "pay payouts").gql()?;
        answer(
            service(ctx)
                .gql()?
                .mark_payout_paid(&payout_id, &reference, &metadata(ctx, caller))
                .await,
        )?;
        Ok(true)
    }
}
