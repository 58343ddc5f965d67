//! Maintenance contracts on the read side: `maintenance_contracts` (term, end, value,
//! auto-renewal, renewals), folded by the `service` projector
//! (`ServiceProjector::apply_contract`), and [`list_maintenance_contracts`].

use super::*;

impl ServiceProjector {
    pub(super) async fn apply_contract(
        &self,
        db: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
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
/// first: `first` (1 to 100) after the cursor `after`.
pub async fn list_maintenance_contracts(
    pool: &PgPool,
    tenant: &TenantId,
    status: Option<&str>,
    customer_id: Option<&str>,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<MaintenanceContractRow>, BadCursor>, sqlx::Error> {
    let (after_at, after_id) = match after_time(after) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT contract_id, customer_id, installation_id, starts_at, ends_at, term_months, annual_value_minor,
                currency, auto_renew, status, renewals, last_renewal_reference, renewed_at, cancelled_at
           FROM maintenance_contracts
          WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR customer_id = $3)
            AND ($4::timestamptz IS NULL OR (ends_at, contract_id) > ($4, $5))
          ORDER BY ends_at, contract_id
          LIMIT $6",
    )
    .bind(tenant.as_str())
    .bind(status)
    .bind(customer_id)
    .bind(after_at)
    .bind(after_id)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let rows = rows
        .iter()
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
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Ok(Page::from_rows(rows, first, |r| {
        time_cursor(r.ends_at, &r.contract_id)
    })))
}
