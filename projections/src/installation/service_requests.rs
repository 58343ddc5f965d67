//! Service requests on the read side: the `service` projector ([`ServiceProjector`]: ticket,
//! kind, priority, status, technician, SLA due time and breach flag as decided in the log; the
//! contracts it also folds are in [`super::maintenance`]) and [`list_service_requests`]
//! (filtered, paginated by ticket number, newest first).

use super::*;

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
}

impl Fold for ServiceProjector {
    const NAME: &'static str = SERVICE_NAME;
    const EVENT_TYPES: &'static [&'static str] = EVENT_TYPES;
    const AGGREGATES: &'static [&'static str] = &["ServiceRequest", "MaintenanceContract"];
    const TABLES: &'static [&'static str] = &["service_requests", "maintenance_contracts"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        match event.aggregate_type.as_str() {
            "ServiceRequest" => self.apply_request(db, event).await,
            _ => self.apply_contract(db, event).await,
        }
    }
}

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
    /// Requests of this customer (contact id): their service history.
    pub customer: Option<String>,
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

/// The conditions of a [`ServiceFilter`] ($1 the tenant, $2 to $5 the status, priority, breach
/// and customer), shared by [`list_service_requests`] and [`count_service_requests`].
const FILTERS: &str = "tenant_id = $1
            AND ($2::text IS NULL OR status = $2)
            AND ($3::text IS NULL OR priority = $3)
            AND ($4::boolean IS NULL OR breached = $4)
            AND ($5::text IS NULL OR customer_id = $5)";

/// One tenant's service requests matching `filter`, newest ticket first: `first` (1 to 100)
/// after the cursor `after`.
pub async fn list_service_requests(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &ServiceFilter,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<ServiceRequestRow>, BadCursor>, sqlx::Error> {
    let before = match decode_cursor(after) {
        Ok(before) => before,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(&format!(
        "SELECT request_id, ticket_number, ticket, kind, priority, status, customer_id, installation_id,
                technician_id, opened_at, sla_due_at, breached, breached_at, assigned_at, resolved_at, closed_at
           FROM service_requests
          WHERE {FILTERS} AND ticket_number < $6
          ORDER BY ticket_number DESC
          LIMIT $7"
    ))
    .bind(tenant.as_str())
    .bind(&filter.status)
    .bind(&filter.priority)
    .bind(filter.breached)
    .bind(&filter.customer)
    .bind(before)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let rows = rows.iter().map(request_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Ok(Page::from_rows(rows, first, |row| encode_cursor(row.ticket_number))))
}

/// How many of one tenant's service requests [`list_service_requests`] holds with `filter`
/// (every page together).
pub async fn count_service_requests(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &ServiceFilter,
) -> Result<i64, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let n = sqlx::query_scalar(&format!("SELECT count(*) FROM service_requests WHERE {FILTERS}"))
        .bind(tenant.as_str())
        .bind(&filter.status)
        .bind(&filter.priority)
        .bind(filter.breached)
        .bind(&filter.customer)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n)
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
