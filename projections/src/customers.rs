//! Customers on the read side (issue 17): the `customers` projector ([`CustomersProjector`]:
//! who became a customer, when, and how: a lead won for them, or their first order) and its
//! queries ([`list_customers`], [`customer`]; a customer's orders, installations and service
//! requests are those lists filtered by customer).
//!
//! A customer is a contact of the tenant (their keyed id, `ct_…`) for whom a lead was won
//! (`LeadWon`) or an order placed (`OrderPlaced`), since the first of the two. Nothing personal
//! is kept: the name is read from `contacts` (cleared by an erasure). The figures are read from
//! their own read models when asked, so they are never out of step with them: the orders
//! placed, the installations, the open service requests, and the lifetime value (the payments
//! received on the customer's orders, per currency: a cancelled order keeps what it was paid).

use chronicle_domain::installation::OrderEvent;
use chronicle_domain::lead::LeadEvent;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::contacts::local_id;
use crate::installation::decode_time_cursor;
use crate::log::StoredEvent;
use crate::page::{time_cursor, BadCursor, Page};
use crate::runtime::{Fold, ProjectionError};
use crate::shared::{begin_for_tenant, payload};

/// The `customers` projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "customers";

/// Folds `LeadWon` and `OrderPlaced` into `customers`.
#[derive(Debug, Default)]
pub struct CustomersProjector;

impl Fold for CustomersProjector {
    const NAME: &'static str = NAME;
    const EVENT_TYPES: &'static [&'static str] = &["LeadWon", "OrderPlaced"];
    const AGGREGATES: &'static [&'static str] = &["Lead", "Order"];
    const TABLES: &'static [&'static str] = &["customers"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        // (customer, when, the lead won or none, whether it is an order)
        let (customer_id, at, lead, order) = match event.aggregate_type.as_str() {
            "Lead" => match payload::<LeadEvent>(event)? {
                LeadEvent::LeadWon { customer_id, at, .. } => (customer_id, at, Some(local_id(event)), false),
                _ => return Ok(()),
            },
            "Order" => match payload::<OrderEvent>(event)? {
                OrderEvent::OrderPlaced { customer_id, at, .. } => (customer_id, at, None, true),
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        if customer_id.trim().is_empty() {
            return Ok(());
        }
        // The earliest lead won and the earliest order stay; `since` is the earlier of the two.
        // A row is fed by several streams (a lead, any number of orders), whose events reach
        // the projector in commit order, not by position: the update takes the earliest times
        // whatever the order it sees them in (and applying one twice changes nothing), so it
        // needs no position guard.
        sqlx::query(
            "INSERT INTO customers AS c (tenant_id, customer_id, since, won_lead_id, won_at, first_order_at,
                                         last_position)
             VALUES ($1, $2, $3, $4, CASE WHEN $4::text IS NULL THEN NULL ELSE $3 END,
                     CASE WHEN $5 THEN $3 END, $6)
             ON CONFLICT (tenant_id, customer_id) DO UPDATE SET
                    since = LEAST(c.since, EXCLUDED.since),
                    won_lead_id = CASE WHEN EXCLUDED.won_at IS NOT NULL
                                        AND (c.won_at IS NULL OR EXCLUDED.won_at < c.won_at
                                             OR (EXCLUDED.won_at = c.won_at AND EXCLUDED.won_lead_id < c.won_lead_id))
                                       THEN EXCLUDED.won_lead_id ELSE c.won_lead_id END,
                    won_at = LEAST(c.won_at, EXCLUDED.won_at),
                    first_order_at = LEAST(c.first_order_at, EXCLUDED.first_order_at),
                    last_position = GREATEST(c.last_position, EXCLUDED.last_position)",
        )
        .bind(&event.tenant_id)
        .bind(&customer_id)
        .bind(at)
        .bind(lead)
        .bind(order)
        .bind(event.global_position)
        .execute(&mut *db)
        .await?;
        Ok(())
    }
}

/// What was received from a customer in one currency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Value {
    pub currency: String,
    pub amount_minor: i64,
}

/// A customer as the CRM shows one.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CustomerRow {
    pub customer_id: String,
    /// From `contacts`; none after an erasure.
    pub name: Option<String>,
    pub since: DateTime<Utc>,
    pub won_lead_id: Option<String>,
    pub won_at: Option<DateTime<Utc>>,
    pub first_order_at: Option<DateTime<Utc>>,
    pub orders: i64,
    pub installations: i64,
    pub open_service_requests: i64,
    /// Payments received on their orders, per currency (sorted by currency).
    pub lifetime_value: Vec<Value>,
}

const CUSTOMER_COLUMNS: &str = "c.customer_id, ct.name, c.since, c.won_lead_id, c.won_at, c.first_order_at,
    (SELECT count(*) FROM orders o WHERE o.tenant_id = c.tenant_id AND o.customer_id = c.customer_id) AS orders,
    (SELECT count(*) FROM installations i WHERE i.tenant_id = c.tenant_id AND i.customer_id = c.customer_id)
        AS installations,
    (SELECT count(*) FROM service_requests s
      WHERE s.tenant_id = c.tenant_id AND s.customer_id = c.customer_id AND s.status NOT IN ('resolved', 'closed'))
        AS open_service_requests,
    (SELECT coalesce(jsonb_agg(jsonb_build_object('currency', v.currency, 'amount_minor', v.paid) ORDER BY v.currency),
                     '[]'::jsonb)
       FROM (SELECT o.currency, sum(o.paid_minor)::bigint AS paid FROM orders o
              WHERE o.tenant_id = c.tenant_id AND o.customer_id = c.customer_id AND o.paid_minor > 0
              GROUP BY o.currency) v) AS lifetime_value";

const CUSTOMER_FROM: &str =
    "FROM customers c LEFT JOIN contacts ct ON ct.tenant_id = c.tenant_id AND ct.contact_id = c.customer_id";

fn customer_row(r: &PgRow) -> Result<CustomerRow, sqlx::Error> {
    let value: serde_json::Value = r.try_get("lifetime_value")?;
    Ok(CustomerRow {
        customer_id: r.try_get("customer_id")?,
        name: r.try_get("name")?,
        since: r.try_get("since")?,
        won_lead_id: r.try_get("won_lead_id")?,
        won_at: r.try_get("won_at")?,
        first_order_at: r.try_get("first_order_at")?,
        orders: r.try_get("orders")?,
        installations: r.try_get("installations")?,
        open_service_requests: r.try_get("open_service_requests")?,
        lifetime_value: serde_json::from_value(value).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

/// One tenant's customers, latest first, after a cursor.
pub async fn list_customers(
    pool: &PgPool,
    tenant: &TenantId,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<CustomerRow>, BadCursor>, sqlx::Error> {
    let (after_micros, after_id) = match decode_time_cursor(after) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(&format!(
        "SELECT {CUSTOMER_COLUMNS} {CUSTOMER_FROM}
          WHERE c.tenant_id = $1
            AND ((extract(epoch FROM c.since) * 1000000)::bigint, c.customer_id)
                < ($2::bigint, CASE WHEN $3 = '' THEN chr(1114111) ELSE $3 END)
          ORDER BY c.since DESC, c.customer_id DESC
          LIMIT $4"
    ))
    .bind(tenant.as_str())
    .bind(after_micros)
    .bind(&after_id)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Page::of(&rows, first, |r| {
        customer_row(r).map(|c| (time_cursor(c.since, &c.customer_id), c))
    })?))
}

/// How many customers the tenant has.
pub async fn count_customers(pool: &PgPool, tenant: &TenantId) -> Result<i64, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let count = sqlx::query_scalar("SELECT count(*) FROM customers WHERE tenant_id = $1")
        .bind(tenant.as_str())
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(count)
}

/// One customer of the tenant, or `None`.
pub async fn customer(pool: &PgPool, tenant: &TenantId, customer_id: &str) -> Result<Option<CustomerRow>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let row = sqlx::query(&format!(
        "SELECT {CUSTOMER_COLUMNS} {CUSTOMER_FROM} WHERE c.tenant_id = $1 AND c.customer_id = $2"
    ))
    .bind(tenant.as_str())
    .bind(customer_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.as_ref().map(customer_row).transpose()
}
