//! Technician payouts on the read side: the `payouts` projector ([`PayoutsProjector`]) and its
//! queries ([`list_payouts`], [`payout_totals`]).

use super::*;

// Payouts

/// Folds `Payout` events into `payouts`.
#[derive(Debug, Default)]
pub struct PayoutsProjector;

impl Fold for PayoutsProjector {
    const NAME: &'static str = PAYOUTS_NAME;
    const EVENT_TYPES: &'static [&'static str] = PayoutEvent::TYPES;
    const AGGREGATES: &'static [&'static str] = &["Payout"];
    const TABLES: &'static [&'static str] = &["payouts"];

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

/// One tenant's payouts (of one status, or all; of one technician, or all), latest computed
/// first: `first` (1 to 100) after the cursor `after`.
pub async fn list_payouts(
    pool: &PgPool,
    tenant: &TenantId,
    status: Option<&str>,
    technician: Option<&str>,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<PayoutRow>, BadCursor>, sqlx::Error> {
    let (after_at, after_id) = match after_time(after) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT payout_id, installation_id, technician_ids, system_size_w, tier, base_minor, bonus_minor,
                amount_minor, currency, status, computed_at, approved_at, approved_by, paid_at, paid_reference
           FROM payouts
          WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
            AND ($6::text IS NULL OR $6 = ANY (technician_ids))
            AND ($3::timestamptz IS NULL OR (computed_at, payout_id) < ($3, $4))
          ORDER BY computed_at DESC, payout_id DESC
          LIMIT $5",
    )
    .bind(tenant.as_str())
    .bind(status)
    .bind(after_at)
    .bind(after_id)
    .bind(first + 1)
    .bind(technician)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let rows = rows
        .iter()
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
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Ok(Page::from_rows(rows, first, |r| {
        time_cursor(r.computed_at, &r.payout_id)
    })))
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
    technician: Option<&str>,
) -> Result<Vec<PayoutTotal>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT status, currency, count(*) AS n, coalesce(sum(amount_minor), 0)::bigint AS total
           FROM payouts
          WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
            AND ($3::text IS NULL OR $3 = ANY (technician_ids))
          GROUP BY status, currency ORDER BY status, currency",
    )
    .bind(tenant.as_str())
    .bind(status)
    .bind(technician)
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
