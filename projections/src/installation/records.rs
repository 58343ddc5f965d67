//! Installation records on the read side: the `installations` projector
//! ([`InstallationsProjector`]: type, status, technicians, schedule, checklist progress, photos,
//! components, the site address opened with the customer's data key, and the
//! `installation_timeline`) and its queries ([`list_installations`], [`installation`],
//! [`timeline`], [`technician_calendar`], [`installation_counts`]).

use super::*;

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
    "InstallationDetailsCorrected",
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
            E::InstallationDetailsCorrected {
                site_address,
                system_size_w,
                at,
                ..
            } => {
                // A new address is opened with the customer's key (gone after an erasure: the
                // address stays empty).
                let address = match site_address {
                    Some(sealed) => {
                        let customer: Option<String> = sqlx::query_scalar(
                            "SELECT customer_id FROM installations WHERE tenant_id = $1 AND installation_id = $2",
                        )
                        .bind(tenant.as_str())
                        .bind(&installation_id)
                        .fetch_optional(&mut *db)
                        .await?;
                        match customer {
                            Some(customer) => Some(
                                data_key(db, &self.master, keys, &tenant, &customer)
                                    .await?
                                    .and_then(|k| k.open(&tenant, &customer, &sealed).ok())
                                    .filter(|a| !a.trim().is_empty()),
                            ),
                            None => None,
                        }
                    }
                    None => None,
                };
                // `$5`: whether the address changes (to `$6`, perhaps none); `$7` the new size.
                sqlx::query(&guarded(
                    "site_address = CASE WHEN $5 THEN $6 ELSE site_address END,
                     system_size_w = COALESCE($7, system_size_w)",
                ))
                .bind(tenant.as_str())
                .bind(&installation_id)
                .bind(position)
                .bind(at)
                .bind(address.is_some())
                .bind(address.flatten())
                .bind(system_size_w.map(i64::from))
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
        E::InstallationDetailsCorrected {
            site_address,
            system_size_w,
            previous_size_w,
            at,
            ..
        } => {
            let mut changes = Vec::new();
            if site_address.is_some() {
                changes.push("site address".to_string());
            }
            if let Some(size) = system_size_w {
                match previous_size_w {
                    Some(previous) => changes.push(format!("system size {previous} W → {size} W")),
                    None => changes.push(format!("system size → {size} W")),
                }
            }
            (*at, format!("Corrected: {} (reason recorded)", changes.join(", ")))
        }
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
        events: &'a [&'a StoredEvent],
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

    fn tables(&self) -> &'static [&'static str] {
        &["installation_timeline", "installations"]
    }
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
    /// Installations of this customer (contact id).
    pub customer: Option<String>,
}

/// The conditions of an [`InstallationFilter`] ($1 the tenant, $2 to $7 the filter's fields in
/// order), shared by [`list_installations`] and [`count_installations`].
const INSTALLATION_FILTERS: &str = "i.tenant_id = $1
            AND ($2::text IS NULL OR i.status = $2)
            AND ($3::text IS NULL OR i.installation_type = $3)
            AND ($4::text IS NULL OR $4 = ANY (i.technicians))
            AND ($5::timestamptz IS NULL OR i.scheduled_at >= $5)
            AND ($6::timestamptz IS NULL OR i.scheduled_at < $6)
            AND ($7::text IS NULL OR i.customer_id = $7)";

/// Lists one tenant's installations, latest opened first, filtered, after a cursor. A date
/// range keeps only scheduled installations in it.
pub async fn list_installations(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &InstallationFilter,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<InstallationRow>, BadCursor>, sqlx::Error> {
    let (after_micros, after_id) = match decode_time_cursor(after) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(&format!(
        "SELECT {INSTALLATION_COLUMNS} FROM installations i
          WHERE {INSTALLATION_FILTERS}
            AND ((extract(epoch FROM i.opened_at) * 1000000)::bigint, i.installation_id)
                < ($8::bigint, CASE WHEN $9 = '' THEN chr(1114111) ELSE $9 END)
          ORDER BY i.opened_at DESC, i.installation_id DESC
          LIMIT $10"
    ))
    .bind(tenant.as_str())
    .bind(filter.status.as_deref())
    .bind(filter.installation_type.as_deref())
    .bind(filter.technician.as_deref())
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.customer.as_deref())
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

/// How many of one tenant's installations [`list_installations`] holds with `filter` (every
/// page together).
pub async fn count_installations(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &InstallationFilter,
) -> Result<i64, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let n = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM installations i WHERE {INSTALLATION_FILTERS}"
    ))
    .bind(tenant.as_str())
    .bind(&filter.status)
    .bind(&filter.installation_type)
    .bind(&filter.technician)
    .bind(filter.from)
    .bind(filter.to)
    .bind(&filter.customer)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(n)
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
