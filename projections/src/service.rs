//! Service requests and maintenance contracts on the read side (issue 4; migrations 0066,
//! 0068).
//!
//! - [`ServiceProjector`] → `service_requests` (ticket, kind, priority, status, technician, SLA
//!   due time and breach flag as decided in the log) and `maintenance_contracts` (term, end,
//!   value, auto-renewal, renewals). Queries: [`list_service_requests`] (filtered, paginated by
//!   ticket number, newest first), [`list_maintenance_contracts`].
//! - [`ServiceWorkProjector`] → the work lists of the write side's sweepers:
//!   `service_sla_watch` (pending requests and their due times) and `maintenance_renewals`
//!   (each contract's end, auto-renewal and status).
//!
//! No personal data is projected (descriptions and resolutions stay sealed in the log). Every
//! update is guarded by the row's `last_position` (or is a pure function of the event), so a
//! batch applied twice changes nothing; queries run in a transaction scoped to one tenant
//! (`shared::begin_for_tenant`).

use chronicle_domain::installation::{ticket_label, MaintenanceEvent, ServiceEvent};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::contacts::local_id;
use crate::log::StoredEvent;
use crate::page::{cursor, read_cursor, BadCursor, Page};
use crate::runtime::{ProjectionError, Projector};
use crate::shared::{all_tenants, begin_for_tenant, clear_tables, payload};

/// The `service` projector's name (service requests and maintenance contracts). Never renamed.
pub const NAME: &str = "service";
/// The `service_work` projector's name (the sweepers' work lists). Never renamed.
pub const WORK_NAME: &str = "service_work";

/// The event types read by both projectors.
const EVENT_TYPES: &[&str] = &[
    "ServiceRequestOpened",
    "ServiceRequestAssigned",
    "ServiceSlaBreached",
    "ServiceRequestResolved",
    "ServiceRequestClosed",
    "MaintenanceContractStarted",
    "MaintenanceContractRenewed",
    "MaintenanceAutoRenewalChanged",
    "MaintenanceContractCancelled",
];

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Folds `ServiceRequest` and `MaintenanceContract` events into `service_requests` and
/// `maintenance_contracts`.
#[derive(Debug, Default)]
pub struct ServiceProjector;

impl ServiceProjector {
    /// `UPDATE service_requests SET <assignments>, last_position = $3 …` guarded by position;
    /// `$4` is bound to `at`, and a technician given replaces the row's.
    async fn update_request(
        db: &mut PgConnection,
        event: &StoredEvent,
        assignments: &str,
        at: DateTime<Utc>,
        technician_id: Option<String>,
    ) -> Result<(), ProjectionError> {
        sqlx::query(&format!(
            "UPDATE service_requests SET {assignments}, technician_id = coalesce($5, technician_id), last_position = $3
              WHERE tenant_id = $1 AND request_id = $2 AND last_position < $3"
        ))
        .bind(&event.tenant_id)
        .bind(local_id(event))
        .bind(event.global_position)
        .bind(at)
        .bind(technician_id)
        .execute(&mut *db)
        .await?;
        Ok(())
    }

    async fn apply_request(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        match payload::<ServiceEvent>(event)? {
            ServiceEvent::ServiceRequestOpened {
                ticket_number,
                kind,
                priority,
                customer_id,
                installation_id,
                sla_due_at,
                by,
                at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO service_requests (tenant_id, request_id, ticket_number, ticket, kind, priority, status,
                            customer_id, installation_id, opened_at, opened_by, sla_due_at, last_position)
                     VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9, $10, $11, $12)
                     ON CONFLICT (tenant_id, request_id) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(local_id(event))
                .bind(to_i64(ticket_number))
                .bind(ticket_label(ticket_number))
                .bind(kind)
                .bind(priority.as_str())
                .bind(customer_id)
                .bind(installation_id)
                .bind(at)
                .bind(by)
                .bind(sla_due_at)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
            }
            ServiceEvent::ServiceRequestAssigned { technician_id, at, .. } => {
                Self::update_request(
                    db,
                    event,
                    "status = 'assigned', assigned_at = $4",
                    at,
                    Some(technician_id),
                )
                .await?;
            }
            ServiceEvent::ServiceSlaBreached { at, .. } => {
                Self::update_request(db, event, "breached = true, breached_at = $4", at, None).await?;
            }
            ServiceEvent::ServiceRequestResolved { at, .. } => {
                Self::update_request(db, event, "status = 'resolved', resolved_at = $4", at, None).await?;
            }
            ServiceEvent::ServiceRequestClosed { at, .. } => {
                Self::update_request(db, event, "status = 'closed', closed_at = $4", at, None).await?;
            }
        }
        Ok(())
    }

    async fn apply_contract(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let contract_id = local_id(event);
        let position = event.global_position;
        match payload::<MaintenanceEvent>(event)? {
            MaintenanceEvent::MaintenanceContractStarted {
                customer_id,
                installation_id,
                starts_at,
                ends_at,
                term_months,
                annual_value_minor,
                currency,
                auto_renew,
                at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO maintenance_contracts (tenant_id, contract_id, customer_id, installation_id, starts_at,
                            ends_at, term_months, annual_value_minor, currency, auto_renew, status, started_at,
                            last_position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'active', $11, $12)
                     ON CONFLICT (tenant_id, contract_id) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&contract_id)
                .bind(customer_id)
                .bind(installation_id)
                .bind(starts_at)
                .bind(ends_at)
                .bind(to_i32(term_months))
                .bind(annual_value_minor)
                .bind(currency)
                .bind(auto_renew)
                .bind(at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            MaintenanceEvent::MaintenanceContractRenewed {
                reference,
                ends_at,
                renewals,
                at,
                ..
            } => {
                sqlx::query(
                    "UPDATE maintenance_contracts SET ends_at = $4, renewals = $5, last_renewal_reference = $6,
                            renewed_at = $7, last_position = $3
                      WHERE tenant_id = $1 AND contract_id = $2 AND last_position < $3",
                )
                .bind(&event.tenant_id)
                .bind(&contract_id)
                .bind(position)
                .bind(ends_at)
                .bind(to_i32(renewals))
                .bind(reference)
                .bind(at)
                .execute(&mut *db)
                .await?;
            }
            MaintenanceEvent::MaintenanceAutoRenewalChanged { auto_renew, .. } => {
                sqlx::query(
                    "UPDATE maintenance_contracts SET auto_renew = $4, last_position = $3
                      WHERE tenant_id = $1 AND contract_id = $2 AND last_position < $3",
                )
                .bind(&event.tenant_id)
                .bind(&contract_id)
                .bind(position)
                .bind(auto_renew)
                .execute(&mut *db)
                .await?;
            }
            MaintenanceEvent::MaintenanceContractCancelled { at, .. } => {
                sqlx::query(
                    "UPDATE maintenance_contracts SET status = 'cancelled', auto_renew = false, cancelled_at = $4,
                            last_position = $3
                      WHERE tenant_id = $1 AND contract_id = $2 AND last_position < $3",
                )
                .bind(&event.tenant_id)
                .bind(&contract_id)
                .bind(position)
                .bind(at)
                .execute(&mut *db)
                .await?;
            }
        }
        Ok(())
    }
}

impl Projector for ServiceProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        EVENT_TYPES
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            all_tenants(tx).await?;
            for event in events {
                match event.aggregate_type.as_str() {
                    "ServiceRequest" => self.apply_request(tx, event).await?,
                    "MaintenanceContract" => self.apply_contract(tx, event).await?,
                    _ => {}
                }
            }
            Ok(())
        })
    }

    fn reset<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(clear_tables(tx, &["service_requests", "maintenance_contracts"]))
    }
}

/// Folds `ServiceRequest` and `MaintenanceContract` events into the sweepers' work lists
/// `service_sla_watch` and `maintenance_renewals` (migration 0068).
#[derive(Debug, Default)]
pub struct ServiceWorkProjector;

impl ServiceWorkProjector {
    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let id = local_id(event);
        let tenant = &event.tenant_id;
        let position = event.global_position;
        if event.aggregate_type == "ServiceRequest" {
            match payload::<ServiceEvent>(event)? {
                ServiceEvent::ServiceRequestOpened { sla_due_at, .. } => {
                    sqlx::query(
                        "INSERT INTO service_sla_watch (tenant_id, request_id, sla_due_at, event_position)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, request_id) DO NOTHING",
                    )
                    .bind(tenant)
                    .bind(&id)
                    .bind(sla_due_at)
                    .bind(position)
                    .execute(&mut *db)
                    .await?;
                }
                // Decided: breached once, or resolved (in time or with the breach first).
                ServiceEvent::ServiceSlaBreached { .. } | ServiceEvent::ServiceRequestResolved { .. } => {
                    sqlx::query("UPDATE service_sla_watch SET state = 'done' WHERE tenant_id = $1 AND request_id = $2")
                        .bind(tenant)
                        .bind(&id)
                        .execute(&mut *db)
                        .await?;
                }
                ServiceEvent::ServiceRequestAssigned { .. } | ServiceEvent::ServiceRequestClosed { .. } => {}
            }
            return Ok(());
        }
        if event.aggregate_type != "MaintenanceContract" {
            return Ok(());
        }
        let assignments = match payload::<MaintenanceEvent>(event)? {
            MaintenanceEvent::MaintenanceContractStarted {
                ends_at, auto_renew, ..
            } => {
                sqlx::query(
                    "INSERT INTO maintenance_renewals (tenant_id, contract_id, ends_at, auto_renew, status, last_position)
                     VALUES ($1, $2, $3, $4, 'active', $5) ON CONFLICT (tenant_id, contract_id) DO NOTHING",
                )
                .bind(tenant)
                .bind(&id)
                .bind(ends_at)
                .bind(auto_renew)
                .bind(position)
                .execute(&mut *db)
                .await?;
                return Ok(());
            }
            MaintenanceEvent::MaintenanceContractRenewed { ends_at, .. } => (Some(ends_at), None, "active"),
            MaintenanceEvent::MaintenanceAutoRenewalChanged { auto_renew, .. } => (None, Some(auto_renew), "active"),
            MaintenanceEvent::MaintenanceContractCancelled { .. } => (None, Some(false), "cancelled"),
        };
        sqlx::query(
            "UPDATE maintenance_renewals
                SET ends_at = coalesce($4, ends_at), auto_renew = coalesce($5, auto_renew), status = $6,
                    last_position = $3
              WHERE tenant_id = $1 AND contract_id = $2 AND last_position < $3",
        )
        .bind(tenant)
        .bind(&id)
        .bind(position)
        .bind(assignments.0)
        .bind(assignments.1)
        .bind(assignments.2)
        .execute(&mut *db)
        .await?;
        Ok(())
    }
}

impl Projector for ServiceWorkProjector {
    fn name(&self) -> &'static str {
        WORK_NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        EVENT_TYPES
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            all_tenants(tx).await?;
            for event in events {
                self.apply_one(tx, event).await?;
            }
            Ok(())
        })
    }

    fn reset<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(clear_tables(tx, &["service_sla_watch", "maintenance_renewals"]))
    }
}

// ---------------------------------------------------------------------------------------------
// Queries

fn encode_cursor(ticket_number: i64) -> String {
    cursor("sr", ticket_number)
}

fn decode_cursor(cursor: Option<&str>) -> Result<i64, BadCursor> {
    let Some(cursor) = cursor else {
        return Ok(i64::MAX);
    };
    match read_cursor::<String, i64>(cursor)? {
        (kind, ticket_number) if kind == "sr" => Ok(ticket_number),
        _ => Err(BadCursor),
    }
}

/// One service request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequestRow {
    pub request_id: String,
    pub ticket_number: i64,
    pub ticket: String,
    pub kind: String,
    pub priority: String,
    pub status: String,
    pub customer_id: String,
    pub installation_id: Option<String>,
    pub technician_id: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub sla_due_at: DateTime<Utc>,
    pub breached: bool,
    pub breached_at: Option<DateTime<Utc>>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// Which service requests to list (every field optional; all given must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFilter {
    pub status: Option<String>,
    pub priority: Option<String>,
    pub breached: Option<bool>,
}

fn request_row(r: &PgRow) -> Result<ServiceRequestRow, sqlx::Error> {
    Ok(ServiceRequestRow {
        request_id: r.try_get("request_id")?,
        ticket_number: r.try_get("ticket_number")?,
        ticket: r.try_get("ticket")?,
        kind: r.try_get("kind")?,
        priority: r.try_get("priority")?,
        status: r.try_get("status")?,
        customer_id: r.try_get("customer_id")?,
        installation_id: r.try_get("installation_id")?,
        technician_id: r.try_get("technician_id")?,
        opened_at: r.try_get("opened_at")?,
        sla_due_at: r.try_get("sla_due_at")?,
        breached: r.try_get("breached")?,
        breached_at: r.try_get("breached_at")?,
        assigned_at: r.try_get("assigned_at")?,
        resolved_at: r.try_get("resolved_at")?,
        closed_at: r.try_get("closed_at")?,
    })
}

/// Why a page of service requests could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ServiceQueryError {
    #[error(transparent)]
    Cursor(#[from] BadCursor),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// One tenant's service requests matching `filter`, newest ticket first: `first` (1 to 100)
/// after the cursor `after`.
pub async fn list_service_requests(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &ServiceFilter,
    first: i64,
    after: Option<&str>,
) -> Result<Page<ServiceRequestRow>, ServiceQueryError> {
    let before = decode_cursor(after)?;
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT request_id, ticket_number, ticket, kind, priority, status, customer_id, installation_id,
                technician_id, opened_at, sla_due_at, breached, breached_at, assigned_at, resolved_at, closed_at
           FROM service_requests
          WHERE tenant_id = $1 AND ticket_number < $2
            AND ($3::text IS NULL OR status = $3)
            AND ($4::text IS NULL OR priority = $4)
            AND ($5::boolean IS NULL OR breached = $5)
          ORDER BY ticket_number DESC
          LIMIT $6",
    )
    .bind(tenant.as_str())
    .bind(before)
    .bind(&filter.status)
    .bind(&filter.priority)
    .bind(filter.breached)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut rows = rows
        .iter()
        .map(|r| request_row(r).map(|row| (encode_cursor(row.ticket_number), row)))
        .collect::<Result<Vec<_>, _>>()?;
    let has_next_page = rows.len() as i64 > first;
    rows.truncate(usize::try_from(first).unwrap_or(100));
    Ok(Page { rows, has_next_page })
}

/// One maintenance contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceContractRow {
    pub contract_id: String,
    pub customer_id: String,
    pub installation_id: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub term_months: i32,
    pub annual_value_minor: i64,
    pub currency: String,
    pub auto_renew: bool,
    pub status: String,
    pub renewals: i32,
    pub last_renewal_reference: Option<String>,
    pub renewed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// One tenant's maintenance contracts (of one status and/or customer, or all), ending soonest
/// first, at most 500.
pub async fn list_maintenance_contracts(
    pool: &PgPool,
    tenant: &TenantId,
    status: Option<&str>,
    customer_id: Option<&str>,
) -> Result<Vec<MaintenanceContractRow>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT contract_id, customer_id, installation_id, starts_at, ends_at, term_months, annual_value_minor,
                currency, auto_renew, status, renewals, last_renewal_reference, renewed_at, cancelled_at
           FROM maintenance_contracts
          WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR customer_id = $3)
          ORDER BY ends_at, contract_id
          LIMIT 500",
    )
    .bind(tenant.as_str())
    .bind(status)
    .bind(customer_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(MaintenanceContractRow {
                contract_id: r.try_get("contract_id")?,
                customer_id: r.try_get("customer_id")?,
                installation_id: r.try_get("installation_id")?,
                starts_at: r.try_get("starts_at")?,
                ends_at: r.try_get("ends_at")?,
                term_months: r.try_get("term_months")?,
                annual_value_minor: r.try_get("annual_value_minor")?,
                currency: r.try_get("currency")?,
                auto_renew: r.try_get("auto_renew")?,
                status: r.try_get("status")?,
                renewals: r.try_get("renewals")?,
                last_renewal_reference: r.try_get("last_renewal_reference")?,
                renewed_at: r.try_get("renewed_at")?,
                cancelled_at: r.try_get("cancelled_at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        assert_eq!(decode_cursor(Some(&encode_cursor(42))), Ok(42));
        assert_eq!(decode_cursor(None), Ok(i64::MAX));
        assert_eq!(decode_cursor(Some("not a cursor")), Err(BadCursor));
    }
}
