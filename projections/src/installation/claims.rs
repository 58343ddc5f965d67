//! Warranty claims on the read side: `warranty_claims` (one row per claim: status, decision,
//! times), folded by the `warranties` projector (`WarrantiesProjector::apply_claim`), and
//! [`list_claims`].

use super::*;

impl WarrantiesProjector {
    pub(super) async fn apply_claim(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let claim_id = local_id(event);
        let position = event.global_position;
        let tenant = &event.tenant_id;
        match payload::<ClaimEvent>(event)? {
            ClaimEvent::WarrantyClaimFiled {
                warranty_id,
                installation_id,
                serial,
                customer_id,
                warranty_ends_at,
                by,
                at,
                ..
            } => {
                let inserted = sqlx::query(
                    "INSERT INTO warranty_claims (tenant_id, claim_id, warranty_id, installation_id, serial, customer_id,
                            warranty_ends_at, status, filed_at, filed_by, last_position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'submitted', $8, $9, $10)
                     ON CONFLICT (tenant_id, claim_id) DO NOTHING",
                )
                .bind(tenant)
                .bind(&claim_id)
                .bind(&warranty_id)
                .bind(installation_id)
                .bind(serial)
                .bind(customer_id)
                .bind(warranty_ends_at)
                .bind(at)
                .bind(by)
                .bind(position)
                .execute(&mut *db)
                .await?
                .rows_affected();
                if inserted > 0 {
                    sqlx::query("UPDATE warranties SET claims = claims + 1 WHERE tenant_id = $1 AND warranty_id = $2")
                        .bind(tenant)
                        .bind(&warranty_id)
                        .execute(&mut *db)
                        .await?;
                }
            }
            ClaimEvent::WarrantyClaimReviewStarted { at, .. } => {
                sqlx::query(
                    "UPDATE warranty_claims SET status = 'under_review', review_started_at = $4, last_position = $3
                      WHERE tenant_id = $1 AND claim_id = $2 AND last_position < $3",
                )
                .bind(tenant)
                .bind(&claim_id)
                .bind(position)
                .bind(at)
                .execute(&mut *db)
                .await?;
            }
            ClaimEvent::WarrantyClaimDecided {
                decision,
                status,
                by,
                at,
                ..
            } => {
                sqlx::query(
                    "UPDATE warranty_claims SET status = $4, decision = $5, decided_at = $6, decided_by = $7,
                            last_position = $3
                      WHERE tenant_id = $1 AND claim_id = $2 AND last_position < $3",
                )
                .bind(tenant)
                .bind(&claim_id)
                .bind(position)
                .bind(status.as_str())
                .bind(decision.status().as_str())
                .bind(at)
                .bind(by)
                .execute(&mut *db)
                .await?;
            }
            ClaimEvent::WarrantyClaimResolved { at, .. } => {
                sqlx::query(
                    "UPDATE warranty_claims SET status = 'resolved', resolved_at = $4, last_position = $3
                      WHERE tenant_id = $1 AND claim_id = $2 AND last_position < $3",
                )
                .bind(tenant)
                .bind(&claim_id)
                .bind(position)
                .bind(at)
                .execute(&mut *db)
                .await?;
            }
        }
        Ok(())
    }
}

/// One warranty claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRow {
    pub claim_id: String,
    pub warranty_id: String,
    pub installation_id: String,
    pub serial: String,
    pub customer_id: String,
    pub warranty_ends_at: DateTime<Utc>,
    pub status: String,
    pub filed_at: DateTime<Utc>,
    pub filed_by: String,
    pub review_started_at: Option<DateTime<Utc>>,
    pub decision: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// One tenant's warranty claims (of one status and/or warranty, or all), latest filed first:
/// `first` (1 to 100) after the cursor `after`.
pub async fn list_claims(
    pool: &PgPool,
    tenant: &TenantId,
    status: Option<&str>,
    warranty_id: Option<&str>,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<ClaimRow>, BadCursor>, sqlx::Error> {
    let (after_at, after_id) = match after_time(after) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT claim_id, warranty_id, installation_id, serial, customer_id, warranty_ends_at, status, filed_at,
                filed_by, review_started_at, decision, decided_at, decided_by, resolved_at
           FROM warranty_claims
          WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR warranty_id = $3)
            AND ($4::timestamptz IS NULL OR (filed_at, claim_id) < ($4, $5))
          ORDER BY filed_at DESC, claim_id DESC
          LIMIT $6",
    )
    .bind(tenant.as_str())
    .bind(status)
    .bind(warranty_id)
    .bind(after_at)
    .bind(after_id)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(ClaimRow {
                claim_id: r.try_get("claim_id")?,
                warranty_id: r.try_get("warranty_id")?,
                installation_id: r.try_get("installation_id")?,
                serial: r.try_get("serial")?,
                customer_id: r.try_get("customer_id")?,
                warranty_ends_at: r.try_get("warranty_ends_at")?,
                status: r.try_get("status")?,
                filed_at: r.try_get("filed_at")?,
                filed_by: r.try_get("filed_by")?,
                review_started_at: r.try_get("review_started_at")?,
                decision: r.try_get("decision")?,
                decided_at: r.try_get("decided_at")?,
                decided_by: r.try_get("decided_by")?,
                resolved_at: r.try_get("resolved_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Ok(Page::from_rows(rows, first, |r| {
        time_cursor(r.filed_at, &r.claim_id)
    })))
}
