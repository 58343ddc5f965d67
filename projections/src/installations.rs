//! Orders, installations and payouts on the read side (issue 4; migrations 0070–0072).
//!
//! - [`OrdersProjector`] → `orders`: status, items, totals, payments ([`list_orders`],
//!   [`order`]).
//! - [`InstallationsProjector`] → `installations` (type, status, technicians, schedule, checklist
//!   progress, photos, components; the site address opened with the customer's data key) and
//!   `installation_timeline` (every event of an installation with its time, actor and a human
//!   summary that names no personal data). Queries: [`list_installations`], [`installation`],
//!   [`timeline`], [`technician_calendar`], [`installation_counts`].
//! - [`PayoutsProjector`] → `payouts` ([`list_payouts`], [`payout_totals`]).
//!
//! Every upsert is guarded by the row's `last_position`, so a batch applied twice changes
//! nothing; queries run in a transaction scoped to one tenant (`shared::begin_for_tenant`).

use chronicle_domain::installation::{
    required_checklist, InstallationEvent, InstallationStatus, OrderEvent, PayoutEvent,
};
use chronicle_domain::pii::MasterKey;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::contacts::{all_tenants, data_key, local_id, tenant_of, KeyCache};
use crate::log::StoredEvent;
use crate::page::{read_cursor, time_cursor, BadCursor, Page};
use crate::runtime::{ProjectionError, Projector};
use crate::shared::{begin_for_tenant, clear_tables, payload};

/// The `orders` projector's name. Never renamed.
pub const ORDERS_NAME: &str = "orders";
/// The `installations` projector's name (installations and their timeline). Never renamed.
pub const INSTALLATIONS_NAME: &str = "installations";
/// The `payouts` projector's name. Never renamed.
pub const PAYOUTS_NAME: &str = "payouts";

fn to_json<T: Serialize>(event: &StoredEvent, value: &T) -> Result<serde_json::Value, ProjectionError> {
    serde_json::to_value(value).map_err(|e| ProjectionError::Handler {
        position: event.global_position,
        reason: e.to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// Orders

/// Folds `Order` events into `orders`.
#[derive(Debug, Default)]
pub struct OrdersProjector;

impl OrdersProjector {
    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let order_id = local_id(event);
        let position = event.global_position;
        let guarded = |set: &str| {
            format!("UPDATE orders SET {set}, last_position = $3 WHERE tenant_id = $1 AND order_id = $2 AND last_position < $3")
        };
        match payload::<OrderEvent>(event)? {
            OrderEvent::OrderPlaced {
                customer_id,
                items,
                currency,
                total_minor,
                at,
                ..
            } => {
                let installable = items.iter().any(|i| i.installable.is_some());
                sqlx::query(
                    "INSERT INTO orders (tenant_id, order_id, customer_id, status, currency, total_minor,
                            outstanding_minor, items, installable, placed_at, last_position)
                     VALUES ($1, $2, $3, 'placed', $4, $5, $5, $6, $7, $8, $9)
                     ON CONFLICT (tenant_id, order_id) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&order_id)
                .bind(customer_id)
                .bind(currency)
                .bind(total_minor)
                .bind(to_json(event, &items)?)
                .bind(installable)
                .bind(at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            OrderEvent::PaymentRecorded {
                provider,
                reference,
                amount_minor,
                paid_minor,
                outstanding_minor,
                at,
                ..
            } => {
                let payment = json!({"provider": provider.as_str(), "reference": reference,
                                     "amount_minor": amount_minor, "at": at});
                sqlx::query(&guarded(
                    "paid_minor = $4, outstanding_minor = $5, payments = payments || jsonb_build_array($6::jsonb)",
                ))
                .bind(&event.tenant_id)
                .bind(&order_id)
                .bind(position)
                .bind(paid_minor)
                .bind(outstanding_minor)
                .bind(payment)
                .execute(&mut *db)
                .await?;
            }
            OrderEvent::OrderPaid { at, .. } => {
                sqlx::query(&guarded("status = 'paid', paid_at = $4"))
                    .bind(&event.tenant_id)
                    .bind(&order_id)
                    .bind(position)
                    .bind(at)
                    .execute(&mut *db)
                    .await?;
            }
            OrderEvent::OrderFulfilled { at, .. } => {
                sqlx::query(&guarded("status = 'fulfilled', fulfilled_at = $4"))
                    .bind(&event.tenant_id)
                    .bind(&order_id)
                    .bind(position)
                    .bind(at)
                    .execute(&mut *db)
                    .await?;
            }
            OrderEvent::OrderCancelled { at, .. } => {
                sqlx::query(&guarded("status = 'cancelled', cancelled_at = $4"))
                    .bind(&event.tenant_id)
                    .bind(&order_id)
                    .bind(position)
                    .bind(at)
                    .execute(&mut *db)
                    .await?;
            }
        }
        Ok(())
    }
}

impl Projector for OrdersProjector {
    fn name(&self) -> &'static str {
        ORDERS_NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        OrderEvent::TYPES
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            all_tenants(tx).await?;
            for event in events {
                if event.aggregate_type == "Order" {
                    self.apply_one(tx, event).await?;
                }
            }
            Ok(())
        })
    }

    fn reset<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(clear_tables(tx, &["orders"]))
    }
}

// ---------------------------------------------------------------------------------------------
// Installations and their timeline

/// The events the installations projector reads: every `InstallationRecord` event, and
/// `ContactErased` (the site address opened from an erased customer's envelope is cleared).
const INSTALLATION_TYPES: &[&str] = &[
    "InstallationOpened",
    "TechnicianAssigned",
    "TechnicianUnassigned",
    "InstallationScheduled",
    "InstallationRescheduled",
    "InstallationStatusChanged",
    "ChecklistItemCompleted",
    "PhotoAttached",
    "ComponentInstalled",
    "InstallationCommissioned",
    "ContactErased",
];

/// Folds `InstallationRecord` events into `installations` and `installation_timeline`.
pub struct InstallationsProjector {
    master: MasterKey,
}

impl InstallationsProjector {
    /// A projector opening site addresses with data keys unwrapped by `master`.
    pub fn new(master: MasterKey) -> Self {
        Self { master }
    }

    async fn apply_one(
        &self,
        db: &mut PgConnection,
        keys: &mut KeyCache,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let tenant = tenant_of(event)?;
        let installation_id = local_id(event);
        let position = event.global_position;
        let parsed = payload::<InstallationEvent>(event)?;
        let (at, summary) = summarize(&parsed);
        let actor = event.metadata["actor"].as_str().unwrap_or("unknown").to_string();
        sqlx::query(
            "INSERT INTO installation_timeline (tenant_id, installation_id, sequence, global_position, event_type,
                    at, actor, summary)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, installation_id, sequence) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(&installation_id)
        .bind(event.sequence)
        .bind(position)
        .bind(&event.event_type)
        .bind(at)
        .bind(actor)
        .bind(summary)
        .execute(&mut *db)
        .await?;
        let guarded = |set: &str| {
            format!(
                "UPDATE installations SET {set}, updated_at = $4, last_position = $3
                  WHERE tenant_id = $1 AND installation_id = $2 AND last_position < $3"
            )
        };
        use InstallationEvent as E;
        match parsed {
            E::InstallationOpened {
                installation_type,
                customer_id,
                order_id,
                site_address,
                system_size_w,
                at,
                ..
            } => {
                let key = data_key(db, &self.master, keys, &tenant, &customer_id).await?;
                let address = key
                    .as_ref()
                    .and_then(|k| k.open(&tenant, &customer_id, &site_address).ok())
                    .filter(|a| !a.trim().is_empty());
                let required = i32::try_from(required_checklist(installation_type).len()).unwrap_or(i32::MAX);
                sqlx::query(
                    "INSERT INTO installations (tenant_id, installation_id, order_id, customer_id, installation_type,
                            status, system_size_w, site_address, checklist_required, opened_at, updated_at,
                            last_position)
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $9, $10)
                     ON CONFLICT (tenant_id, installation_id) DO NOTHING",
                )
                .bind(tenant.as_str())
                .bind(&installation_id)
                .bind(order_id)
                .bind(customer_id)
                .bind(installation_type.as_str())
                .bind(i64::from(system_size_w))
                .bind(address)
                .bind(required)
                .bind(at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            E::TechnicianAssigned { technicians, at, .. } | E::TechnicianUnassigned { technicians, at, .. } => {
                sqlx::query(&guarded("technicians = $5"))
                    .bind(tenant.as_str())
                    .bind(&installation_id)
                    .bind(position)
                    .bind(at)
                    .bind(technicians)
                    .execute(&mut *db)
                    .await?;
            }
            E::InstallationScheduled { starts_at, at, .. } | E::InstallationRescheduled { starts_at, at, .. } => {
                sqlx::query(&guarded("scheduled_at = $5"))
                    .bind(tenant.as_str())
                    .bind(&installation_id)
                    .bind(position)
                    .bind(at)
                    .bind(starts_at)
                    .execute(&mut *db)
                    .await?;
            }
            E::InstallationStatusChanged { to, at, .. } => {
                let stamp = match to {
                    InstallationStatus::InProgress => ", started_at = $4",
                    InstallationStatus::Active => ", activated_at = $4",
                    InstallationStatus::Decommissioned => ", decommissioned_at = $4",
                    InstallationStatus::Commissioned => ", commissioned_at = $4",
                    InstallationStatus::Pending => "",
                };
                sqlx::query(&guarded(&format!("status = $5{stamp}")))
                    .bind(tenant.as_str())
                    .bind(&installation_id)
                    .bind(position)
                    .bind(at)
                    .bind(to.as_str())
                    .execute(&mut *db)
                    .await?;
            }
            E::ChecklistItemCompleted { item, at, .. } => {
                sqlx::query(&guarded("checklist_done = array_append(checklist_done, $5)"))
                    .bind(tenant.as_str())
                    .bind(&installation_id)
                    .bind(position)
                    .bind(at)
                    .bind(item)
                    .execute(&mut *db)
                    .await?;
            }
            E::PhotoAttached { kind, sha256, at, .. } => {
                sqlx::query(&guarded("photos = photos || jsonb_build_array($5::jsonb)"))
                    .bind(tenant.as_str())
                    .bind(&installation_id)
                    .bind(position)
                    .bind(at)
                    .bind(json!({"kind": kind, "sha256": sha256, "at": at}))
                    .execute(&mut *db)
                    .await?;
            }
            E::ComponentInstalled {
                serial,
                kind,
                warranty_months,
                at,
                ..
            } => {
                sqlx::query(&guarded("components = components || jsonb_build_array($5::jsonb)"))
                    .bind(tenant.as_str())
                    .bind(&installation_id)
                    .bind(position)
                    .bind(at)
                    .bind(json!({"serial": serial, "kind": kind, "warranty_months": warranty_months, "at": at}))
                    .execute(&mut *db)
                    .await?;
            }
            E::InstallationCommissioned { at, .. } => {
                sqlx::query(&guarded("status = 'commissioned', commissioned_at = $4"))
                    .bind(tenant.as_str())
                    .bind(&installation_id)
                    .bind(position)
                    .bind(at)
                    .execute(&mut *db)
                    .await?;
            }
        }
        Ok(())
    }
}

/// The time and a human summary of an installation event. Reasons and the site address are
/// sealed personal data: summaries only say they were recorded.
pub fn summarize(event: &InstallationEvent) -> (DateTime<Utc>, String) {
    use InstallationEvent as E;
    let time = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    match event {
        E::InstallationOpened {
            installation_type,
            order_id,
            system_size_w,
            at,
            ..
        } => (
            *at,
            format!(
                "Opened a {} installation of {system_size_w} W for order {order_id}",
                installation_type.as_str()
            ),
        ),
        E::TechnicianAssigned {
            technician_id,
            technicians,
            at,
            ..
        } => (
            *at,
            format!(
                "Technician {technician_id} assigned ({} on the team)",
                technicians.len()
            ),
        ),
        E::TechnicianUnassigned {
            technician_id,
            technicians,
            at,
            ..
        } => (
            *at,
            format!(
                "Technician {technician_id} unassigned ({} on the team)",
                technicians.len()
            ),
        ),
        E::InstallationScheduled { starts_at, at, .. } => (*at, format!("Scheduled for {}", time(starts_at))),
        E::InstallationRescheduled {
            from, starts_at, at, ..
        } => (
            *at,
            format!(
                "Rescheduled from {} to {} (reason recorded)",
                time(from),
                time(starts_at)
            ),
        ),
        E::InstallationStatusChanged {
            from, to, reason, at, ..
        } => (
            *at,
            format!(
                "Status changed from {} to {}{}",
                from.as_str(),
                to.as_str(),
                if reason.is_some() { " (reason recorded)" } else { "" }
            ),
        ),
        E::ChecklistItemCompleted {
            item,
            completed,
            required,
            at,
            ..
        } => (*at, format!("Checklist item {item} completed ({completed}/{required})")),
        E::PhotoAttached { kind, sha256, at, .. } => (
            *at,
            format!(
                "Photo {kind} attached (sha-256 {}…)",
                sha256.get(..12).unwrap_or(sha256)
            ),
        ),
        E::ComponentInstalled {
            serial,
            kind,
            warranty_months,
            at,
            ..
        } => (
            *at,
            format!("Component {kind} {serial} installed ({warranty_months}-month warranty)"),
        ),
        E::InstallationCommissioned {
            components,
            technicians,
            at,
            ..
        } => (
            *at,
            format!(
                "Commissioned with {} component(s) and {} technician(s)",
                components.len(),
                technicians.len()
            ),
        ),
    }
}

impl Projector for InstallationsProjector {
    fn name(&self) -> &'static str {
        INSTALLATIONS_NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        INSTALLATION_TYPES
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            all_tenants(tx).await?;
            let mut keys = KeyCache::new();
            for event in events {
                if event.aggregate_type == "InstallationRecord" {
                    self.apply_one(tx, &mut keys, event).await?;
                } else if event.aggregate_type == "Contact" && event.event_type == "ContactErased" {
                    // The customer's data key is destroyed: the opened address goes too.
                    sqlx::query(
                        "UPDATE installations SET site_address = NULL WHERE tenant_id = $1 AND customer_id = $2",
                    )
                    .bind(&event.tenant_id)
                    .bind(local_id(event))
                    .execute(&mut *tx)
                    .await?;
                }
            }
            Ok(())
        })
    }

    fn reset<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(clear_tables(tx, &["installation_timeline", "installations"]))
    }
}

// ---------------------------------------------------------------------------------------------
// Payouts

/// Folds `Payout` events into `payouts`.
#[derive(Debug, Default)]
pub struct PayoutsProjector;

impl PayoutsProjector {
    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let payout_id = local_id(event);
        let position = event.global_position;
        match payload::<PayoutEvent>(event)? {
            PayoutEvent::PayoutComputed {
                installation_id,
                technician_ids,
                system_size_w,
                tier,
                base_minor,
                bonus_minor,
                amount_minor,
                currency,
                at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO payouts (tenant_id, payout_id, installation_id, technician_ids, system_size_w, tier,
                            base_minor, bonus_minor, amount_minor, currency, status, computed_at, last_position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11, $12)
                     ON CONFLICT (tenant_id, payout_id) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&payout_id)
                .bind(installation_id)
                .bind(technician_ids)
                .bind(i64::from(system_size_w))
                .bind(tier.as_str())
                .bind(base_minor)
                .bind(bonus_minor)
                .bind(amount_minor)
                .bind(currency)
                .bind(at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            PayoutEvent::PayoutApproved { by, at } => {
                sqlx::query(
                    "UPDATE payouts SET status = 'approved', approved_at = $4, approved_by = $5, last_position = $3
                      WHERE tenant_id = $1 AND payout_id = $2 AND last_position < $3",
                )
                .bind(&event.tenant_id)
                .bind(&payout_id)
                .bind(position)
                .bind(at)
                .bind(by)
                .execute(&mut *db)
                .await?;
            }
            PayoutEvent::QualityBonusGranted {
                bonus_minor,
                amount_minor,
                ..
            } => {
                sqlx::query(
                    "UPDATE payouts SET bonus_minor = $4, amount_minor = $5, last_position = $3
                      WHERE tenant_id = $1 AND payout_id = $2 AND last_position < $3",
                )
                .bind(&event.tenant_id)
                .bind(&payout_id)
                .bind(position)
                .bind(bonus_minor)
                .bind(amount_minor)
                .execute(&mut *db)
                .await?;
            }
            PayoutEvent::PayoutPaid { reference, at, .. } => {
                sqlx::query(
                    "UPDATE payouts SET status = 'paid', paid_at = $4, paid_reference = $5, last_position = $3
                      WHERE tenant_id = $1 AND payout_id = $2 AND last_position < $3",
                )
                .bind(&event.tenant_id)
                .bind(&payout_id)
                .bind(position)
                .bind(at)
                .bind(reference)
                .execute(&mut *db)
                .await?;
            }
        }
        Ok(())
    }
}

impl Projector for PayoutsProjector {
    fn name(&self) -> &'static str {
        PAYOUTS_NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        PayoutEvent::TYPES
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            all_tenants(tx).await?;
            for event in events {
                if event.aggregate_type == "Payout" {
                    self.apply_one(tx, event).await?;
                }
            }
            Ok(())
        })
    }

    fn reset<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(clear_tables(tx, &["payouts"]))
    }
}

// ---------------------------------------------------------------------------------------------
// Queries

/// `(micros, id)` of a cursor; no cursor starts at the top.
fn decode_cursor(cursor: Option<&str>) -> Result<(i64, String), BadCursor> {
    let Some(cursor) = cursor else {
        return Ok((i64::MAX, String::new()));
    };
    read_cursor(cursor)
}

/// A payment recorded on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRow {
    pub provider: String,
    pub reference: String,
    pub amount_minor: i64,
    pub at: DateTime<Utc>,
}

/// A line item as placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRow {
    pub sku: String,
    pub description: String,
    pub quantity: u32,
    pub unit_price_minor: i64,
    pub currency: String,
    pub installable: Option<String>,
}

/// One order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub order_id: String,
    pub customer_id: String,
    pub status: String,
    pub currency: String,
    pub total_minor: i64,
    pub paid_minor: i64,
    pub outstanding_minor: i64,
    pub items: Vec<ItemRow>,
    pub installable: bool,
    pub payments: Vec<PaymentRow>,
    pub placed_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub fulfilled_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

const ORDER_COLUMNS: &str =
    "order_id, customer_id, status, currency, total_minor, paid_minor, outstanding_minor, items,
    installable, payments, placed_at, paid_at, fulfilled_at, cancelled_at";

fn json_column<T: serde::de::DeserializeOwned>(r: &PgRow, column: &str) -> Result<T, sqlx::Error> {
    let value: serde_json::Value = r.try_get(column)?;
    serde_json::from_value(value).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: Box::new(e),
    })
}

fn order_row(r: &PgRow) -> Result<OrderRow, sqlx::Error> {
    Ok(OrderRow {
        order_id: r.try_get("order_id")?,
        customer_id: r.try_get("customer_id")?,
        status: r.try_get("status")?,
        currency: r.try_get("currency")?,
        total_minor: r.try_get("total_minor")?,
        paid_minor: r.try_get("paid_minor")?,
        outstanding_minor: r.try_get("outstanding_minor")?,
        items: json_column(r, "items")?,
        installable: r.try_get("installable")?,
        payments: json_column(r, "payments")?,
        placed_at: r.try_get("placed_at")?,
        paid_at: r.try_get("paid_at")?,
        fulfilled_at: r.try_get("fulfilled_at")?,
        cancelled_at: r.try_get("cancelled_at")?,
    })
}

/// Lists one tenant's orders, latest first, optionally of one status, after a cursor.
pub async fn list_orders(
    pool: &PgPool,
    tenant: &TenantId,
    status: Option<&str>,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<OrderRow>, BadCursor>, sqlx::Error> {
    let (after_micros, after_id) = match decode_cursor(after) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders
          WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
            AND ((extract(epoch FROM placed_at) * 1000000)::bigint, order_id)
                < ($3::bigint, CASE WHEN $4 = '' THEN chr(1114111) ELSE $4 END)
          ORDER BY placed_at DESC, order_id DESC
          LIMIT $5"
    ))
    .bind(tenant.as_str())
    .bind(status)
    .bind(after_micros)
    .bind(&after_id)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Page::of(&rows, first, |r| {
        order_row(r).map(|o| (time_cursor(o.placed_at, &o.order_id), o))
    })?))
}

/// One order of a tenant.
pub async fn order(pool: &PgPool, tenant: &TenantId, order_id: &str) -> Result<Option<OrderRow>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let row = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE tenant_id = $1 AND order_id = $2"
    ))
    .bind(tenant.as_str())
    .bind(order_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.as_ref().map(order_row).transpose()
}

/// A photo attached to an installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoRow {
    pub kind: String,
    pub sha256: String,
    pub at: DateTime<Utc>,
}

/// A component installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentRow {
    pub serial: String,
    pub kind: String,
    pub warranty_months: u32,
    pub at: DateTime<Utc>,
}

/// One installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationRow {
    pub installation_id: String,
    pub order_id: String,
    pub customer_id: String,
    pub installation_type: String,
    pub status: String,
    pub system_size_w: i64,
    /// Absent when not recorded or after the customer was erased.
    pub site_address: Option<String>,
    pub technicians: Vec<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub checklist_done: Vec<String>,
    pub checklist_required: i32,
    pub photos: Vec<PhotoRow>,
    pub components: Vec<ComponentRow>,
    pub opened_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub commissioned_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
    pub decommissioned_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

const INSTALLATION_COLUMNS: &str = "i.installation_id, i.order_id, i.customer_id, i.installation_type, i.status,
    i.system_size_w, i.site_address, i.technicians, i.scheduled_at, i.checklist_done, i.checklist_required, i.photos,
    i.components, i.opened_at, i.started_at, i.commissioned_at, i.activated_at, i.decommissioned_at, i.updated_at";

fn installation_row(r: &PgRow) -> Result<InstallationRow, sqlx::Error> {
    Ok(InstallationRow {
        installation_id: r.try_get("installation_id")?,
        order_id: r.try_get("order_id")?,
        customer_id: r.try_get("customer_id")?,
        installation_type: r.try_get("installation_type")?,
        status: r.try_get("status")?,
        system_size_w: r.try_get("system_size_w")?,
        site_address: r.try_get("site_address")?,
        technicians: r.try_get("technicians")?,
        scheduled_at: r.try_get("scheduled_at")?,
        checklist_done: r.try_get("checklist_done")?,
        checklist_required: r.try_get("checklist_required")?,
        photos: json_column(r, "photos")?,
        components: json_column(r, "components")?,
        opened_at: r.try_get("opened_at")?,
        started_at: r.try_get("started_at")?,
        commissioned_at: r.try_get("commissioned_at")?,
        activated_at: r.try_get("activated_at")?,
        decommissioned_at: r.try_get("decommissioned_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Filters of [`list_installations`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallationFilter {
    pub status: Option<String>,
    pub installation_type: Option<String>,
    /// Installations this technician is assigned to.
    pub technician: Option<String>,
    /// Scheduled at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Scheduled before this time.
    pub to: Option<DateTime<Utc>>,
}

/// Lists one tenant's installations, latest opened first, filtered, after a cursor. A date
/// range keeps only scheduled installations in it.
pub async fn list_installations(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &InstallationFilter,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<InstallationRow>, BadCursor>, sqlx::Error> {
    let (after_micros, after_id) = match decode_cursor(after) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(&format!(
        "SELECT {INSTALLATION_COLUMNS} FROM installations i
          WHERE i.tenant_id = $1
            AND ($2::text IS NULL OR i.status = $2)
            AND ($3::text IS NULL OR i.installation_type = $3)
            AND ($4::text IS NULL OR $4 = ANY (i.technicians))
            AND ($5::timestamptz IS NULL OR i.scheduled_at >= $5)
            AND ($6::timestamptz IS NULL OR i.scheduled_at < $6)
            AND ((extract(epoch FROM i.opened_at) * 1000000)::bigint, i.installation_id)
                < ($7::bigint, CASE WHEN $8 = '' THEN chr(1114111) ELSE $8 END)
          ORDER BY i.opened_at DESC, i.installation_id DESC
          LIMIT $9"
    ))
    .bind(tenant.as_str())
    .bind(filter.status.as_deref())
    .bind(filter.installation_type.as_deref())
    .bind(filter.technician.as_deref())
    .bind(filter.from)
    .bind(filter.to)
    .bind(after_micros)
    .bind(&after_id)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Page::of(&rows, first, |r| {
        installation_row(r).map(|i| (time_cursor(i.opened_at, &i.installation_id), i))
    })?))
}

/// One installation of a tenant.
pub async fn installation(
    pool: &PgPool,
    tenant: &TenantId,
    installation_id: &str,
) -> Result<Option<InstallationRow>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let row = sqlx::query(&format!(
        "SELECT {INSTALLATION_COLUMNS} FROM installations i WHERE i.tenant_id = $1 AND i.installation_id = $2"
    ))
    .bind(tenant.as_str())
    .bind(installation_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.as_ref().map(installation_row).transpose()
}

/// One entry of an installation's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub sequence: i64,
    pub event_type: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub summary: String,
}

/// Every event of an installation, in stream order.
pub async fn timeline(
    pool: &PgPool,
    tenant: &TenantId,
    installation_id: &str,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT sequence, event_type, at, actor, summary FROM installation_timeline
          WHERE tenant_id = $1 AND installation_id = $2 ORDER BY sequence",
    )
    .bind(tenant.as_str())
    .bind(installation_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(TimelineEntry {
                sequence: r.try_get("sequence")?,
                event_type: r.try_get("event_type")?,
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                summary: r.try_get("summary")?,
            })
        })
        .collect()
}

/// A technician's installations on one day (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarDay {
    pub technician: String,
    pub day: NaiveDate,
    /// In start order.
    pub installations: Vec<InstallationRow>,
}

/// The calendar of one technician (or every technician) between `from` (inclusive) and `to`
/// (exclusive): per technician and day, the installations scheduled that day.
pub async fn technician_calendar(
    pool: &PgPool,
    tenant: &TenantId,
    technician: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<CalendarDay>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(&format!(
        "SELECT t.technician, (i.scheduled_at AT TIME ZONE 'UTC')::date AS day, {INSTALLATION_COLUMNS}
           FROM installations i CROSS JOIN LATERAL unnest(i.technicians) AS t(technician)
          WHERE i.tenant_id = $1 AND ($2::text IS NULL OR t.technician = $2)
            AND i.scheduled_at >= $3 AND i.scheduled_at < $4
          ORDER BY t.technician, day, i.scheduled_at, i.installation_id"
    ))
    .bind(tenant.as_str())
    .bind(technician)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut days: Vec<CalendarDay> = Vec::new();
    for r in &rows {
        let technician: String = r.try_get("technician")?;
        let day: NaiveDate = r.try_get("day")?;
        let row = installation_row(r)?;
        match days.last_mut() {
            Some(last) if last.technician == technician && last.day == day => last.installations.push(row),
            _ => days.push(CalendarDay {
                technician,
                day,
                installations: vec![row],
            }),
        }
    }
    Ok(days)
}

/// How many installations have a type and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationCount {
    pub installation_type: String,
    pub status: String,
    pub count: i64,
}

/// Installations per type and status (only pairs that occur), for dashboards.
pub async fn installation_counts(pool: &PgPool, tenant: &TenantId) -> Result<Vec<InstallationCount>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT installation_type, status, count(*) AS n FROM installations
          WHERE tenant_id = $1 GROUP BY installation_type, status ORDER BY installation_type, status",
    )
    .bind(tenant.as_str())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(InstallationCount {
                installation_type: r.try_get("installation_type")?,
                status: r.try_get("status")?,
                count: r.try_get("n")?,
            })
        })
        .collect()
}

/// One payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRow {
    pub payout_id: String,
    pub installation_id: String,
    pub technician_ids: Vec<String>,
    pub system_size_w: i64,
    pub tier: String,
    pub base_minor: i64,
    pub bonus_minor: i64,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
    pub computed_at: DateTime<Utc>,
    pub approved_at: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub paid_reference: Option<String>,
}

/// One tenant's payouts (of one status, or all), latest computed first, at most 500.
pub async fn list_payouts(
    pool: &PgPool,
    tenant: &TenantId,
    status: Option<&str>,
) -> Result<Vec<PayoutRow>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT payout_id, installation_id, technician_ids, system_size_w, tier, base_minor, bonus_minor,
                amount_minor, currency, status, computed_at, approved_at, approved_by, paid_at, paid_reference
           FROM payouts
          WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
          ORDER BY computed_at DESC, payout_id DESC
          LIMIT 500",
    )
    .bind(tenant.as_str())
    .bind(status)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(PayoutRow {
                payout_id: r.try_get("payout_id")?,
                installation_id: r.try_get("installation_id")?,
                technician_ids: r.try_get("technician_ids")?,
                system_size_w: r.try_get("system_size_w")?,
                tier: r.try_get("tier")?,
                base_minor: r.try_get("base_minor")?,
                bonus_minor: r.try_get("bonus_minor")?,
                amount_minor: r.try_get("amount_minor")?,
                currency: r.try_get("currency")?,
                status: r.try_get("status")?,
                computed_at: r.try_get("computed_at")?,
                approved_at: r.try_get("approved_at")?,
                approved_by: r.try_get("approved_by")?,
                paid_at: r.try_get("paid_at")?,
                paid_reference: r.try_get("paid_reference")?,
            })
        })
        .collect()
}

/// The count and total of payouts with a status in a currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutTotal {
    pub status: String,
    pub currency: String,
    pub count: i64,
    pub total_minor: i64,
}

/// Payout counts and totals per status and currency (of one status, or all).
pub async fn payout_totals(
    pool: &PgPool,
    tenant: &TenantId,
    status: Option<&str>,
) -> Result<Vec<PayoutTotal>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT status, currency, count(*) AS n, coalesce(sum(amount_minor), 0)::bigint AS total
           FROM payouts
          WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
          GROUP BY status, currency ORDER BY status, currency",
    )
    .bind(tenant.as_str())
    .bind(status)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(PayoutTotal {
                status: r.try_get("status")?,
                currency: r.try_get("currency")?,
                count: r.try_get("n")?,
                total_minor: r.try_get("total")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installations_projector_reads_every_installation_event_and_erasures() {
        for t in InstallationEvent::TYPES {
            assert!(INSTALLATION_TYPES.contains(t), "{t}");
        }
        assert_eq!(INSTALLATION_TYPES.len(), InstallationEvent::TYPES.len() + 1);
        assert!(INSTALLATION_TYPES.contains(&"ContactErased"));
    }
}
