//! Warranties on the read side: the `warranties` projector ([`WarrantiesProjector`], one row
//! per installed component's warranty: period, status, claim count; the claims it also folds
//! are in [`super::claims`]) and [`list_warranties`].

use super::*;

/// The event types read: every warranty and claim event.
const EVENT_TYPES: &[&str] = &[
    "WarrantyRegistered",
    "WarrantyVoided",
    "WarrantyClaimFiled",
    "WarrantyClaimReviewStarted",
    "WarrantyClaimDecided",
    "WarrantyClaimResolved",
];

/// Folds `Warranty` and `WarrantyClaim` events into `warranties` and `warranty_claims`.
#[derive(Debug, Default)]
pub struct WarrantiesProjector;

impl WarrantiesProjector {
    async fn apply_warranty(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let warranty_id = local_id(event);
        let position = event.global_position;
        match payload::<WarrantyEvent>(event)? {
            WarrantyEvent::WarrantyRegistered {
                installation_id,
                serial,
                kind,
                customer_id,
                warranty_months,
                starts_at,
                ends_at,
                at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO warranties (tenant_id, warranty_id, installation_id, serial, kind, customer_id,
                            warranty_months, starts_at, ends_at, status, registered_at, last_position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $11)
                     ON CONFLICT (tenant_id, warranty_id) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&warranty_id)
                .bind(installation_id)
                .bind(serial)
                .bind(kind)
                .bind(customer_id)
                .bind(i32::try_from(warranty_months).unwrap_or(i32::MAX))
                .bind(starts_at)
                .bind(ends_at)
                .bind(at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            WarrantyEvent::WarrantyVoided { at, .. } => {
                sqlx::query(
                    "UPDATE warranties SET status = 'voided', voided_at = $4, last_position = $3
                      WHERE tenant_id = $1 AND warranty_id = $2 AND last_position < $3",
                )
                .bind(&event.tenant_id)
                .bind(&warranty_id)
                .bind(position)
                .bind(at)
                .execute(&mut *db)
                .await?;
            }
        }
        Ok(())
    }
}

impl Fold for WarrantiesProjector {
    const NAME: &'static str = WARRANTIES_NAME;
    const EVENT_TYPES: &'static [&'static str] = EVENT_TYPES;
    const AGGREGATES: &'static [&'static str] = &["Warranty", "WarrantyClaim"];
    const TABLES: &'static [&'static str] = &["warranty_claims", "warranties"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        match event.aggregate_type.as_str() {
            "Warranty" => self.apply_warranty(db, event).await,
            _ => self.apply_claim(db, event).await,
        }
    }
}

/// One warranty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarrantyRow {
    pub warranty_id: String,
    pub installation_id: String,
    pub serial: String,
    pub kind: String,
    pub customer_id: String,
    pub warranty_months: i32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: String,
    pub registered_at: DateTime<Utc>,
    pub voided_at: Option<DateTime<Utc>>,
    pub claims: i32,
}

/// What warranties to list (every field optional; all given must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarrantyFilter {
    pub installation_id: Option<String>,
    pub customer_id: Option<String>,
    pub serial: Option<String>,
    /// `active` or `voided`.
    pub status: Option<String>,
    /// Only warranties whose period ends before this time.
    pub ends_before: Option<DateTime<Utc>>,
}

fn warranty_row(r: &PgRow) -> Result<WarrantyRow, sqlx::Error> {
    Ok(WarrantyRow {
        warranty_id: r.try_get("warranty_id")?,
        installation_id: r.try_get("installation_id")?,
        serial: r.try_get("serial")?,
        kind: r.try_get("kind")?,
        customer_id: r.try_get("customer_id")?,
        warranty_months: r.try_get("warranty_months")?,
        starts_at: r.try_get("starts_at")?,
        ends_at: r.try_get("ends_at")?,
        status: r.try_get("status")?,
        registered_at: r.try_get("registered_at")?,
        voided_at: r.try_get("voided_at")?,
        claims: r.try_get("claims")?,
    })
}

/// One tenant's warranties matching `filter`, ending soonest first: `first` (1 to 100) after
/// the cursor `after`.
pub async fn list_warranties(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &WarrantyFilter,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<WarrantyRow>, BadCursor>, sqlx::Error> {
    let (after_at, after_id) = match after_time(after) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT warranty_id, installation_id, serial, kind, customer_id, warranty_months, starts_at, ends_at,
                status, registered_at, voided_at, claims
           FROM warranties
          WHERE tenant_id = $1
            AND ($2::text IS NULL OR installation_id = $2)
            AND ($3::text IS NULL OR customer_id = $3)
            AND ($4::text IS NULL OR serial = $4)
            AND ($5::text IS NULL OR status = $5)
            AND ($6::timestamptz IS NULL OR ends_at < $6)
            AND ($7::timestamptz IS NULL OR (ends_at, warranty_id) > ($7, $8))
          ORDER BY ends_at, warranty_id
          LIMIT $9",
    )
    .bind(tenant.as_str())
    .bind(&filter.installation_id)
    .bind(&filter.customer_id)
    .bind(&filter.serial)
    .bind(&filter.status)
    .bind(filter.ends_before)
    .bind(after_at)
    .bind(after_id)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let rows = rows.iter().map(warranty_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Ok(Page::from_rows(rows, first, |r| {
        time_cursor(r.ends_at, &r.warranty_id)
    })))
}
