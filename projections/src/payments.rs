//! Payments: the `payments` read model (one row per payment a provider confirmed, with what it
//! was matched to or why it was left unmatched), written by [`PaymentsProjector`], read by
//! [`list`] and [`get`]. Finance works the unmatched ones (`status = 'unmatched'`).
//!
//! Rows hold no personal data: provider references, merchant references and amounts. Each
//! update is guarded by `last_position`, so replaying a batch changes nothing.

use chronicle_domain::payment::PaymentEvent;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

use crate::contacts::{local_id, tenant_of};
use crate::log::StoredEvent;
use crate::page::{read_cursor, time_cursor, BadCursor, Page};
use crate::runtime::{Fold, ProjectionError};
use crate::shared::{begin_for_tenant, payload};

/// The projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "payments";

fn parse(event: &StoredEvent) -> Result<PaymentEvent, ProjectionError> {
    payload(event)
}

/// Folds `Payment` events into `payments`.
#[derive(Debug, Default)]
pub struct PaymentsProjector;

/// A decision about a payment, as columns.
struct Decision<'a> {
    status: &'static str,
    kind: Option<&'static str>,
    matched_id: Option<&'a str>,
    milli_tokens: Option<i64>,
    reason: Option<&'a str>,
    by: Option<&'a str>,
    at: DateTime<Utc>,
}

async fn decide(
    db: &mut PgConnection,
    event: &StoredEvent,
    payment_id: &str,
    d: Decision<'_>,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE payments
            SET status = $3, matched_kind = $4, matched_id = $5, milli_tokens = $6, unmatched_reason = $7,
                matched_by = $8, decided_at = $9, last_position = $10
          WHERE tenant_id = $1 AND payment_id = $2 AND last_position < $10",
    )
    .bind(&event.tenant_id)
    .bind(payment_id)
    .bind(d.status)
    .bind(d.kind)
    .bind(d.matched_id)
    .bind(d.milli_tokens)
    .bind(d.reason)
    .bind(d.by)
    .bind(d.at)
    .bind(event.global_position)
    .execute(&mut *db)
    .await?;
    Ok(())
}

impl Fold for PaymentsProjector {
    const NAME: &'static str = NAME;
    const EVENT_TYPES: &'static [&'static str] = PaymentEvent::TYPES;
    const AGGREGATES: &'static [&'static str] = &["Payment"];
    const TABLES: &'static [&'static str] = &["payments"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        tenant_of(event)?;
        let payment_id = local_id(event);
        match parse(event)? {
            PaymentEvent::PaymentConfirmed {
                provider,
                reference,
                merchant_reference,
                amount_minor,
                currency,
                at,
            } => {
                sqlx::query(
                    "INSERT INTO payments (tenant_id, payment_id, provider, reference, merchant_reference, amount_minor,
                                           currency, status, confirmed_at, last_position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'confirmed', $8, $9)
                     ON CONFLICT (tenant_id, payment_id) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&payment_id)
                .bind(provider.as_str())
                .bind(&reference)
                .bind(&merchant_reference)
                .bind(amount_minor)
                .bind(&currency)
                .bind(at)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
            }
            PaymentEvent::PaymentMatchedToOrder { order_id, at, .. } => {
                let d = Decision {
                    status: "matched",
                    kind: Some("order"),
                    matched_id: Some(&order_id),
                    milli_tokens: None,
                    reason: None,
                    by: None,
                    at,
                };
                decide(db, event, &payment_id, d).await?;
            }
            PaymentEvent::PaymentMatchedToWallet {
                wallet_id,
                milli_tokens,
                at,
                ..
            } => {
                let d = Decision {
                    status: "matched",
                    kind: Some("wallet"),
                    matched_id: Some(&wallet_id),
                    milli_tokens: Some(milli_tokens),
                    reason: None,
                    by: None,
                    at,
                };
                decide(db, event, &payment_id, d).await?;
            }
            PaymentEvent::PaymentLeftUnmatched { reason, at, .. } => {
                let d = Decision {
                    status: "unmatched",
                    kind: None,
                    matched_id: None,
                    milli_tokens: None,
                    reason: Some(&reason),
                    by: None,
                    at,
                };
                decide(db, event, &payment_id, d).await?;
            }
            PaymentEvent::PaymentMatchedManually { order_id, by, at, .. } => {
                let d = Decision {
                    status: "matched",
                    kind: Some("order"),
                    matched_id: Some(&order_id),
                    milli_tokens: None,
                    reason: None,
                    by: Some(&by),
                    at,
                };
                decide(db, event, &payment_id, d).await?;
            }
        }
        Ok(())
    }
}

/// One payment as finance sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PaymentRow {
    pub payment_id: String,
    pub provider: String,
    pub reference: String,
    pub merchant_reference: String,
    pub amount_minor: i64,
    pub currency: String,
    /// `confirmed`, `matched` or `unmatched`.
    pub status: String,
    /// `order` or `wallet`, when matched.
    pub matched_kind: Option<String>,
    pub matched_id: Option<String>,
    pub milli_tokens: Option<i64>,
    pub unmatched_reason: Option<String>,
    /// Who matched it by hand (finance), if anyone.
    pub matched_by: Option<String>,
    pub confirmed_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// Filters of [`list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    pub status: Option<String>,
    pub provider: Option<String>,
}

const COLUMNS: &str = "payment_id, provider, reference, merchant_reference, amount_minor, currency, status,
                       matched_kind, matched_id, milli_tokens, unmatched_reason, matched_by, confirmed_at, decided_at";

fn row_of(r: &sqlx::postgres::PgRow) -> Result<PaymentRow, sqlx::Error> {
    Ok(PaymentRow {
        payment_id: r.try_get("payment_id")?,
        provider: r.try_get("provider")?,
        reference: r.try_get("reference")?,
        merchant_reference: r.try_get("merchant_reference")?,
        amount_minor: r.try_get("amount_minor")?,
        currency: r.try_get("currency")?,
        status: r.try_get("status")?,
        matched_kind: r.try_get("matched_kind")?,
        matched_id: r.try_get("matched_id")?,
        milli_tokens: r.try_get("milli_tokens")?,
        unmatched_reason: r.try_get("unmatched_reason")?,
        matched_by: r.try_get("matched_by")?,
        confirmed_at: r.try_get("confirmed_at")?,
        decided_at: r.try_get("decided_at")?,
    })
}

/// The conditions of a [`PaymentFilter`] ($1 the tenant, $2 the status, $3 the provider),
/// shared by [`list`] and [`count`].
const FILTERS: &str = "tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR provider = $3)";

/// Lists one tenant's payments, latest confirmation first, filtered, after a cursor.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &PaymentFilter,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<PaymentRow>, BadCursor>, sqlx::Error> {
    let after = match after.map(read_cursor::<i64, String>).transpose() {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let (after_micros, after_id) = after.unwrap_or((i64::MAX, String::new()));
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS}
           FROM payments
          WHERE {FILTERS}
            AND ((extract(epoch FROM confirmed_at) * 1000000)::bigint, payment_id)
                < ($4::bigint, CASE WHEN $5 = '' THEN chr(1114111) ELSE $5 END)
          ORDER BY confirmed_at DESC, payment_id DESC
          LIMIT $6"
    ))
    .bind(tenant.as_str())
    .bind(filter.status.as_deref())
    .bind(filter.provider.as_deref())
    .bind(after_micros)
    .bind(&after_id)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Page::of(
        &rows,
        first,
        |r| -> Result<(String, PaymentRow), sqlx::Error> {
            let row = row_of(r)?;
            let cursor = time_cursor(row.confirmed_at, &row.payment_id);
            Ok((cursor, row))
        },
    )?))
}

/// How many of one tenant's payments [`list`] holds with `filter` (every page together).
pub async fn count(pool: &PgPool, tenant: &TenantId, filter: &PaymentFilter) -> Result<i64, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let n = sqlx::query_scalar(&format!("SELECT count(*) FROM payments WHERE {FILTERS}"))
        .bind(tenant.as_str())
        .bind(filter.status.as_deref())
        .bind(filter.provider.as_deref())
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// One payment of a tenant.
pub async fn get(pool: &PgPool, tenant: &TenantId, payment_id: &str) -> Result<Option<PaymentRow>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM payments WHERE tenant_id = $1 AND payment_id = $2"
    ))
    .bind(tenant.as_str())
    .bind(payment_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.as_ref().map(row_of).transpose()
}
