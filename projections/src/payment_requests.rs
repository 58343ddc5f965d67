//! Payment requests: the `payment_requests` read model (one row per request a tenant made, with
//! where it stands), written by [`PaymentRequestsProjector`] from the `PaymentRequest` streams,
//! read by [`list`] (filtered, paged, latest first) and [`get`].
//!
//! Rows hold no personal data: the contact is its keyed-hash id and a free amount's description
//! is the business's own text. Each update is guarded by `last_position`, so replaying a batch
//! changes nothing.

use chronicle_domain::payment_request::{PaymentRequestEvent, PaymentTarget};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

use crate::contacts::{local_id, tenant_of};
use crate::log::StoredEvent;
use crate::page::{read_cursor, time_cursor, BadCursor, Page};
use crate::runtime::{Fold, ProjectionError};
use crate::shared::{begin_for_tenant, payload};

/// The projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "payment_requests";

/// Folds `PaymentRequest` events into `payment_requests`.
#[derive(Debug, Default)]
pub struct PaymentRequestsProjector;

fn parse(event: &StoredEvent) -> Result<PaymentRequestEvent, ProjectionError> {
    payload(event)
}

/// Sets the columns of `set` (SQL assignments that may use `$4`, a text, and `$5`, the event's
/// time), once per event. (The `WHERE` names both parameters so their types are known whether
/// `set` uses them or not.)
async fn update(
    db: &mut PgConnection,
    event: &StoredEvent,
    request_id: &str,
    set: &str,
    text: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), ProjectionError> {
    sqlx::query(&format!(
        "UPDATE payment_requests SET {set}, last_position = $3
          WHERE tenant_id = $1 AND request_id = $2 AND last_position < $3
            AND ($4::text IS NULL OR TRUE) AND $5::timestamptz IS NOT NULL"
    ))
    .bind(&event.tenant_id)
    .bind(request_id)
    .bind(event.global_position)
    .bind(text)
    .bind(at)
    .execute(&mut *db)
    .await?;
    Ok(())
}

impl Fold for PaymentRequestsProjector {
    const NAME: &'static str = NAME;
    const EVENT_TYPES: &'static [&'static str] = PaymentRequestEvent::TYPES;
    const AGGREGATES: &'static [&'static str] = &["PaymentRequest"];
    const TABLES: &'static [&'static str] = &["payment_requests"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        tenant_of(event)?;
        let id = local_id(event);
        match parse(event)? {
            PaymentRequestEvent::PaymentRequested {
                target,
                provider,
                amount_minor,
                currency,
                expires_at,
                contact_id,
                by,
                at,
                ..
            } => {
                let (kind, target) = match target {
                    PaymentTarget::Order { order_id } => ("order", order_id),
                    PaymentTarget::Wallet { wallet_id } => ("wallet", wallet_id),
                    PaymentTarget::Free { description } => ("free", description),
                };
                sqlx::query(
                    "INSERT INTO payment_requests (tenant_id, request_id, provider, target_kind, target, amount_minor,
                                                   currency, contact_id, status, requested_by, requested_at, expires_at,
                                                   last_position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'requested', $9, $10, $11, $12)
                     ON CONFLICT (tenant_id, request_id) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&id)
                .bind(provider.as_str())
                .bind(kind)
                .bind(&target)
                .bind(amount_minor)
                .bind(&currency)
                .bind(contact_id.as_deref())
                .bind(&by)
                .bind(at)
                .bind(expires_at)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
            }
            PaymentRequestEvent::PaymentRequestSent {
                provider_request_id,
                payment_url,
                at,
            } => {
                sqlx::query(
                    "UPDATE payment_requests
                        SET status = 'sent', provider_request_id = $4, payment_url = $5, sent_at = $6,
                            failure = NULL, last_position = $3
                      WHERE tenant_id = $1 AND request_id = $2 AND last_position < $3",
                )
                .bind(&event.tenant_id)
                .bind(&id)
                .bind(event.global_position)
                .bind(&provider_request_id)
                .bind(payment_url.as_deref())
                .bind(at)
                .execute(&mut *db)
                .await?;
            }
            PaymentRequestEvent::PaymentRequestInitiationFailed { reason, at } => {
                // The provider refused the initiation: the request is failed for good, as the
                // aggregate holds (a new request is a new idempotency key).
                let set = "status = 'failed', failure = $4, closed_at = $5";
                update(db, event, &id, set, Some(&reason), at).await?;
            }
            PaymentRequestEvent::PaymentRequestPaid {
                provider_reference, at, ..
            } => {
                let set = "status = 'paid', provider_reference = $4, closed_at = $5";
                update(db, event, &id, set, Some(&provider_reference), at).await?;
            }
            PaymentRequestEvent::PaymentRequestCallbackRefused { at, .. } => {
                update(db, event, &id, "refused_callbacks = refused_callbacks + 1", None, at).await?;
            }
            PaymentRequestEvent::PaymentRequestFailed { result_code, at } => {
                let set = "status = 'failed', failure = $4, closed_at = $5";
                update(db, event, &id, set, Some(&result_code), at).await?;
            }
            PaymentRequestEvent::PaymentRequestCancelled { at, .. } => {
                update(db, event, &id, "status = 'cancelled', closed_at = $5", None, at).await?;
            }
            PaymentRequestEvent::PaymentRequestExpired { at } => {
                update(db, event, &id, "status = 'expired', closed_at = $5", None, at).await?;
            }
            PaymentRequestEvent::PaymentRequestMessaged {
                template,
                language,
                remind_at,
                at,
                ..
            } => {
                sqlx::query(
                    "UPDATE payment_requests
                        SET message_template = $4, messaged_at = $5, remind_at = $6, last_position = $3
                      WHERE tenant_id = $1 AND request_id = $2 AND last_position < $3",
                )
                .bind(&event.tenant_id)
                .bind(&id)
                .bind(event.global_position)
                .bind(format!("{template} ({language})"))
                .bind(at)
                .bind(remind_at)
                .execute(&mut *db)
                .await?;
            }
            PaymentRequestEvent::PaymentRequestReminded { at } => {
                update(db, event, &id, "reminded_at = $5", None, at).await?;
            }
        }
        Ok(())
    }
}

/// One payment request as finance and dashboards see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PaymentRequestRow {
    pub request_id: String,
    pub provider: String,
    /// `order`, `wallet` or `free`.
    pub target_kind: String,
    /// The order or wallet id, or the free amount's description.
    pub target: String,
    pub amount_minor: i64,
    pub currency: String,
    pub contact_id: Option<String>,
    /// `requested`, `sent`, `paid`, `failed`, `cancelled` or `expired`.
    pub status: String,
    pub provider_request_id: Option<String>,
    /// The page the customer pays on (Stripe Checkout, Paynow).
    pub payment_url: Option<String>,
    pub provider_reference: Option<String>,
    pub failure: Option<String>,
    pub refused_callbacks: i32,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The WhatsApp template it went to the customer with (`name (language)`), and when.
    pub message_template: Option<String>,
    pub messaged_at: Option<DateTime<Utc>>,
    /// When the reminder before expiry is due, and when it went out.
    pub remind_at: Option<DateTime<Utc>>,
    pub reminded_at: Option<DateTime<Utc>>,
}

/// Filters of [`list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    pub status: Option<String>,
    pub provider: Option<String>,
    /// `order`, `wallet` or `free`.
    pub target_kind: Option<String>,
    /// Requests of this order or wallet id.
    pub target: Option<String>,
}

const COLUMNS: &str = "request_id, provider, target_kind, target, amount_minor, currency, contact_id, status,
                       provider_request_id, payment_url, provider_reference, failure, refused_callbacks, requested_by,
                       requested_at, expires_at, sent_at, closed_at, message_template, messaged_at, remind_at,
                       reminded_at";

fn row_of(r: &sqlx::postgres::PgRow) -> Result<PaymentRequestRow, sqlx::Error> {
    Ok(PaymentRequestRow {
        request_id: r.try_get("request_id")?,
        provider: r.try_get("provider")?,
        target_kind: r.try_get("target_kind")?,
        target: r.try_get("target")?,
        amount_minor: r.try_get("amount_minor")?,
        currency: r.try_get("currency")?,
        contact_id: r.try_get("contact_id")?,
        status: r.try_get("status")?,
        provider_request_id: r.try_get("provider_request_id")?,
        payment_url: r.try_get("payment_url")?,
        provider_reference: r.try_get("provider_reference")?,
        failure: r.try_get("failure")?,
        refused_callbacks: r.try_get("refused_callbacks")?,
        requested_by: r.try_get("requested_by")?,
        requested_at: r.try_get("requested_at")?,
        expires_at: r.try_get("expires_at")?,
        sent_at: r.try_get("sent_at")?,
        closed_at: r.try_get("closed_at")?,
        message_template: r.try_get("message_template")?,
        messaged_at: r.try_get("messaged_at")?,
        remind_at: r.try_get("remind_at")?,
        reminded_at: r.try_get("reminded_at")?,
    })
}

/// Lists one tenant's payment requests, latest first, filtered, after a cursor.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &RequestFilter,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<PaymentRequestRow>, BadCursor>, sqlx::Error> {
    let after = match after.map(read_cursor::<i64, String>).transpose() {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let (after_micros, after_id) = after.unwrap_or((i64::MAX, String::new()));
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS}
           FROM payment_requests
          WHERE tenant_id = $1
            AND ($2::text IS NULL OR status = $2)
            AND ($3::text IS NULL OR provider = $3)
            AND ($4::text IS NULL OR target_kind = $4)
            AND ($5::text IS NULL OR target = $5)
            AND ((extract(epoch FROM requested_at) * 1000000)::bigint, request_id)
                < ($6::bigint, CASE WHEN $7 = '' THEN chr(1114111) ELSE $7 END)
          ORDER BY requested_at DESC, request_id DESC
          LIMIT $8"
    ))
    .bind(tenant.as_str())
    .bind(filter.status.as_deref())
    .bind(filter.provider.as_deref())
    .bind(filter.target_kind.as_deref())
    .bind(filter.target.as_deref())
    .bind(after_micros)
    .bind(&after_id)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Page::of(
        &rows,
        first,
        |r| -> Result<(String, PaymentRequestRow), sqlx::Error> {
            let row = row_of(r)?;
            let cursor = time_cursor(row.requested_at, &row.request_id);
            Ok((cursor, row))
        },
    )?))
}

/// One payment request of a tenant.
pub async fn get(pool: &PgPool, tenant: &TenantId, request_id: &str) -> Result<Option<PaymentRequestRow>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM payment_requests WHERE tenant_id = $1 AND request_id = $2"
    ))
    .bind(tenant.as_str())
    .bind(request_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.as_ref().map(row_of).transpose()
}
