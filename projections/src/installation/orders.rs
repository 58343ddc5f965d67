//! Orders on the read side: the `orders` projector ([`OrdersProjector`]: status, items,
//! totals, payments) and its queries ([`list_orders`], [`order`]).

use super::*;

// Orders

/// Folds `Order` events into `orders`.
#[derive(Debug, Default)]
pub struct OrdersProjector;

impl Fold for OrdersProjector {
    const NAME: &'static str = ORDERS_NAME;
    const EVENT_TYPES: &'static [&'static str] = OrderEvent::TYPES;
    const AGGREGATES: &'static [&'static str] = &["Order"];
    const TABLES: &'static [&'static str] = &["orders"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let order_id = local_id(event);
        let position = event.global_position;
        let guarded = |set: &str| {
            format!("UPDATE orders SET {set}, last_position = $3 WHERE tenant_id = $1 AND order_id = $2 AND last_position < $3")
        };
        match payload::<OrderEvent>(event)? {
            OrderEvent::OrderPlaced {
                customer_id,
                items,
                currency,
                total_minor,
                at,
                ..
            } => {
                let installable = items.iter().any(|i| i.installable.is_some());
                sqlx::query(
                    "INSERT INTO orders (tenant_id, order_id, customer_id, status, currency, total_minor,
                            outstanding_minor, items, installable, placed_at, last_position)
                     VALUES ($1, $2, $3, 'placed', $4, $5, $5, $6, $7, $8, $9)
                     ON CONFLICT (tenant_id, order_id) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&order_id)
                .bind(customer_id)
                .bind(currency)
                .bind(total_minor)
                .bind(to_json(event, &items)?)
                .bind(installable)
                .bind(at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            OrderEvent::PaymentRecorded {
                provider,
                reference,
                amount_minor,
                paid_minor,
                outstanding_minor,
                at,
                ..
            } => {
                let payment = json!({"provider": provider.as_str(), "reference": reference,
                                     "amount_minor": amount_minor, "at": at});
                sqlx::query(&guarded(
                    "paid_minor = $4, outstanding_minor = $5, payments = payments || jsonb_build_array($6::jsonb)",
                ))
                .bind(&event.tenant_id)
                .bind(&order_id)
                .bind(position)
                .bind(paid_minor)
                .bind(outstanding_minor)
                .bind(payment)
                .execute(&mut *db)
                .await?;
            }
            OrderEvent::OrderPaid { at, .. } => {
                sqlx::query(&guarded("status = 'paid', paid_at = $4"))
                    .bind(&event.tenant_id)
                    .bind(&order_id)
                    .bind(position)
                    .bind(at)
                    .execute(&mut *db)
                    .await?;
            }
            OrderEvent::OrderFulfilled { at, .. } => {
                sqlx::query(&guarded("status = 'fulfilled', fulfilled_at = $4"))
                    .bind(&event.tenant_id)
                    .bind(&order_id)
                    .bind(position)
                    .bind(at)
                    .execute(&mut *db)
                    .await?;
            }
            OrderEvent::OrderCancelled { at, .. } => {
                sqlx::query(&guarded("status = 'cancelled', cancelled_at = $4"))
                    .bind(&event.tenant_id)
                    .bind(&order_id)
                    .bind(position)
                    .bind(at)
                    .execute(&mut *db)
                    .await?;
            }
        }
        Ok(())
    }
}

/// A payment recorded on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRow {
    pub provider: String,
    pub reference: String,
    pub amount_minor: i64,
    pub at: DateTime<Utc>,
}

/// A line item as placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRow {
    pub sku: String,
    pub description: String,
    pub quantity: u32,
    pub unit_price_minor: i64,
    pub currency: String,
    pub installable: Option<String>,
}

/// One order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub order_id: String,
    pub customer_id: String,
    pub status: String,
    pub currency: String,
    pub total_minor: i64,
    pub paid_minor: i64,
    pub outstanding_minor: i64,
    pub items: Vec<ItemRow>,
    pub installable: bool,
    pub payments: Vec<PaymentRow>,
    pub placed_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub fulfilled_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

const ORDER_COLUMNS: &str =
    "order_id, customer_id, status, currency, total_minor, paid_minor, outstanding_minor, items,
    installable, payments, placed_at, paid_at, fulfilled_at, cancelled_at";

fn order_row(r: &PgRow) -> Result<OrderRow, sqlx::Error> {
    Ok(OrderRow {
        order_id: r.try_get("order_id")?,
        customer_id: r.try_get("customer_id")?,
        status: r.try_get("status")?,
        currency: r.try_get("currency")?,
        total_minor: r.try_get("total_minor")?,
        paid_minor: r.try_get("paid_minor")?,
        outstanding_minor: r.try_get("outstanding_minor")?,
        items: json_column(r, "items")?,
        installable: r.try_get("installable")?,
        payments: json_column(r, "payments")?,
        placed_at: r.try_get("placed_at")?,
        paid_at: r.try_get("paid_at")?,
        fulfilled_at: r.try_get("fulfilled_at")?,
        cancelled_at: r.try_get("cancelled_at")?,
    })
}

/// Lists one tenant's orders, latest first, optionally of one status and of one customer,
/// after a cursor.
pub async fn list_orders(
    pool: &PgPool,
    tenant: &TenantId,
    status: Option<&str>,
    customer: Option<&str>,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<OrderRow>, BadCursor>, sqlx::Error> {
    let (after_micros, after_id) = match decode_time_cursor(after) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders
          WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($6::text IS NULL OR customer_id = $6)
            AND ((extract(epoch FROM placed_at) * 1000000)::bigint, order_id)
                < ($3::bigint, CASE WHEN $4 = '' THEN chr(1114111) ELSE $4 END)
          ORDER BY placed_at DESC, order_id DESC
          LIMIT $5"
    ))
    .bind(tenant.as_str())
    .bind(status)
    .bind(after_micros)
    .bind(&after_id)
    .bind(first + 1)
    .bind(customer)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Page::of(&rows, first, |r| {
        order_row(r).map(|o| (time_cursor(o.placed_at, &o.order_id), o))
    })?))
}

/// How many of one tenant's orders [`list_orders`] holds (of one status, or all).
pub async fn count_orders(
    pool: &PgPool,
    tenant: &TenantId,
    status: Option<&str>,
    customer: Option<&str>,
) -> Result<i64, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let n = sqlx::query_scalar(
        "SELECT count(*) FROM orders
          WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR customer_id = $3)",
    )
    .bind(tenant.as_str())
    .bind(status)
    .bind(customer)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(n)
}

/// One order of a tenant.
pub async fn order(pool: &PgPool, tenant: &TenantId, order_id: &str) -> Result<Option<OrderRow>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let row = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE tenant_id = $1 AND order_id = $2"
    ))
    .bind(tenant.as_str())
    .bind(order_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.as_ref().map(order_row).transpose()
}
