//! Orders: `orders`, `order`; `placeOrder`, `recordCashPayment`, `cancelOrder`, `fulfilOrder`.

use super::*;

/// Where an order stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum OrderStatus {
    /// Placed and not fully paid yet (it may hold part payments).
    Placed,
    /// The payments cover the total.
    Paid,
    /// Paid, then delivered or handed over; final.
    Fulfilled,
    /// Cancelled before fulfilment, possibly after payments (`paidMinor` is what is owed back);
    /// final.
    Cancelled,
}

impl OrderStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Paid => "paid",
            Self::Fulfilled => "fulfilled",
            Self::Cancelled => "cancelled",
        }
    }

    pub(super) fn parse(name: &str) -> Self {
        match name {
            "paid" => Self::Paid,
            "fulfilled" => Self::Fulfilled,
            "cancelled" => Self::Cancelled,
            _ => Self::Placed,
        }
    }
}

/// A line of an order.
#[derive(SimpleObject)]
pub struct OrderItem {
    /// The product's stock-keeping unit, as ordered.
    pub sku: String,
    /// The product's catalogue description.
    pub description: String,
    /// How many units (above zero).
    pub quantity: i64,
    /// The price of one unit in integer minor units (cents) of `currency`; not negative.
    pub unit_price_minor: i64,
    /// ISO 4217 code (`USD`, `ZWG`, `KES`…): the order's currency.
    pub currency: String,
    /// What installing it means, if it is installed on site.
    pub installable: Option<InstallationType>,
}

/// A payment recorded on an order.
#[derive(SimpleObject)]
pub struct OrderPayment {
    /// Who took it: `paynow`, `mpesa`, `stripe` or `cash`.
    pub provider: String,
    /// The provider's reference (Paynow reference, M-Pesa receipt, Stripe payment intent, cash
    /// receipt number); recorded once per provider on an order.
    pub reference: String,
    /// The amount in integer minor units of the order's currency (above zero).
    pub amount_minor: i64,
    /// When the payment was recorded on the order (RFC 3339, UTC).
    pub at: DateTime<Utc>,
}

/// An order. Amounts in integer minor units of `currency`.
#[derive(SimpleObject)]
pub struct Order {
    /// The order id: `order_<uuid>`, or `order_k` and 32 hex digits when placed with an
    /// idempotency key.
    pub id: String,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// Where the order stands.
    pub status: OrderStatus,
    /// ISO 4217 code every amount of the order is in.
    pub currency: String,
    /// The total: Σ quantity × unit price over the items, in minor units (above zero).
    pub total_minor: i64,
    /// The sum of the payments recorded, in minor units (never above the total).
    pub paid_minor: i64,
    /// What is still owed: `totalMinor − paidMinor`, in minor units.
    pub outstanding_minor: i64,
    /// Whether the payments covered the total (`paidAt` is set); it stays true after fulfilment
    /// or cancellation.
    pub paid: bool,
    /// The line items, as placed.
    pub items: Vec<OrderItem>,
    /// Whether any item is installed on site (paying such an order opens an installation).
    pub installable: bool,
    /// The payments recorded, in the order they were recorded.
    pub payments: Vec<OrderPayment>,
    /// When the order was placed (RFC 3339, UTC).
    pub placed_at: DateTime<Utc>,
    /// When the payments covered the total (RFC 3339, UTC); null until then.
    pub paid_at: Option<DateTime<Utc>>,
    /// When the order was fulfilled (RFC 3339, UTC); null unless fulfilled.
    pub fulfilled_at: Option<DateTime<Utc>>,
    /// When the order was cancelled (RFC 3339, UTC); null unless cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl Order {
    pub(crate) fn from_row(row: OrderRow) -> Self {
        let status = OrderStatus::parse(&row.status);
        Self {
            id: row.order_id,
            customer_id: row.customer_id,
            paid: row.paid_at.is_some(),
            status,
            currency: row.currency,
            total_minor: row.total_minor,
            paid_minor: row.paid_minor,
            outstanding_minor: row.outstanding_minor,
            items: row
                .items
                .into_iter()
                .map(|i| OrderItem {
                    sku: i.sku,
                    description: i.description,
                    quantity: i64::from(i.quantity),
                    unit_price_minor: i.unit_price_minor,
                    currency: i.currency,
                    installable: i.installable.as_deref().map(InstallationType::parse),
                })
                .collect(),
            installable: row.installable,
            payments: row
                .payments
                .into_iter()
                .map(|p| OrderPayment {
                    provider: p.provider,
                    reference: p.reference,
                    amount_minor: p.amount_minor,
                    at: p.at,
                })
                .collect(),
            placed_at: row.placed_at,
            paid_at: row.paid_at,
            fulfilled_at: row.fulfilled_at,
            cancelled_at: row.cancelled_at,
        }
    }
}

/// A line item to order.
#[derive(InputObject)]
pub struct OrderItemInput {
    /// The product's stock-keeping unit; not blank (`BLANK_FIELD`).
    pub sku: String,
    /// The product's catalogue description (no personal data).
    pub description: String,
    /// How many units: above zero (`ZERO_QUANTITY`; negative: `INVALID_INPUT`).
    pub quantity: i32,
    /// The price of one unit in integer minor units (cents) of `currency`; not negative
    /// (`NEGATIVE_PRICE`).
    pub unit_price_minor: i64,
    /// ISO 4217 code of three capital letters (`INVALID_CURRENCY`), the same on every item
    /// (`MIXED_CURRENCIES`).
    pub currency: String,
    /// What installing it means, if it is installed on site; null for a product that is only
    /// delivered.
    pub installable: Option<InstallationType>,
    /// The capacity one unit adds to the installed system, in watts (a solar panel's peak
    /// watts); null for what adds none (an inverter, a battery, a mount). Above zero
    /// (`ZERO_CAPACITY`; negative: `INVALID_INPUT`). When any installable item states one, the
    /// installation's system size is the sum of quantity × capacity over the installable items;
    /// otherwise it is read from SKUs naming watts (`panel-550w`, `kit-5kw`), or the type's
    /// nominal size (corrected with `correctInstallation`).
    pub capacity_w: Option<i32>,
}

/// A page of the caller's tenant's orders, of one status and of one customer when given (the
/// `orders` list, and a customer's).
pub(crate) async fn orders_page(
    ctx: &Context<'_>,
    status: Option<&'static str>,
    customer: Option<String>,
    first: i32,
    after: Option<String>,
) -> async_graphql::Result<Connection<String, Order, Counted>> {
    let caller = allowed(ctx, Permission::ReadOrders, "read orders").gql()?;
    let first = page_size(first, 100).gql()?;
    let pool = pool(ctx).gql()?;
    let page = read::list_orders(
        pool,
        &caller.tenant,
        status,
        customer.as_deref(),
        first,
        after.as_deref(),
    )
    .await;
    let (pool, tenant) = (pool.clone(), caller.tenant.clone());
    let count = Counted::new(async move { read::count_orders(&pool, &tenant, status, customer.as_deref()).await });
    connection_with(after.is_some(), page, Order::from_row, count)
}

#[derive(Default)]
pub struct OrdersQuery;

#[Object]
impl OrdersQuery {
    /// The tenant's orders, latest placed first. Owner, admin, agent, finance, auditor.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only orders with this status; every status when null.")] status: Option<OrderStatus>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(
            desc = "The cursor of the last edge of the previous page; a malformed one is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Order, Counted>> {
        orders_page(ctx, status.map(OrderStatus::as_str), None, first, after).await
    }

    /// One order of the tenant; null when it has none with this id. Owner, admin, agent,
    /// finance, auditor.
    async fn order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order id (`order_…`).")] id: String,
    ) -> async_graphql::Result<Option<Order>> {
        let caller = allowed(ctx, Permission::ReadOrders, "read orders").gql()?;
        let row = read::order(pool(ctx).gql()?, &caller.tenant, &id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(Order::from_row))
    }
}

#[derive(Default)]
pub struct OrdersMutation;

#[Object]
impl OrdersMutation {
    /// Places an order for a customer (a contact of the tenant); returns the order id
    /// (`order_<uuid>`, or `order_k…` derived from an idempotency key). Owner, admin, agent.
    /// Refusals: `EMPTY_ORDER`, `MIXED_CURRENCIES`, `INVALID_CURRENCY`, `ZERO_QUANTITY`,
    /// `NEGATIVE_PRICE`, `ZERO_TOTAL`, `TOTAL_OVERFLOW`, `BLANK_FIELD`, `INVALID_INPUT` (a
    /// negative quantity or capacity, a site address over 4,000 characters), `ZERO_CAPACITY`,
    /// `UNKNOWN_CUSTOMER`, `IDEMPOTENCY_KEY_REUSED`.
    async fn place_order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer's contact id (`ct_…`); not blank.")] customer_id: String,
        #[graphql(desc = "The line items: at least one, all in one currency.")] items: Vec<OrderItemInput>,
        #[graphql(
            desc = "Where the order is installed (at most 4,000 characters; blank or null: none), stored sealed under the customer's data key. The installation a paid order opens starts with it; `correctInstallation` changes it."
        )]
        site_address: Option<String>,
        #[graphql(
            desc = "A key of the caller's choosing for this order (say, the id of the form or cart it comes from). A retried request with the same key answers the order it placed and records nothing again; the key with another customer or other items is refused with `IDEMPOTENCY_KEY_REUSED`. Without a key every request places a new order."
        )]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::Sell, "place orders").gql()?;
            let items = items
                .into_iter()
                .map(|i| {
                    Ok(LineItem {
                        sku: i.sku,
                        description: i.description,
                        quantity: non_negative(i.quantity, "quantity")?,
                        unit_price_minor: i.unit_price_minor,
                        currency: i.currency,
                        installable: i.installable.map(InstallationType::domain),
                        capacity_w: i.capacity_w.map(|w| non_negative(w, "capacity")).transpose()?,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()
                .gql()?;
            answer(
                service(ctx)
                    .gql()?
                    .place_order(
                        &customer_id,
                        items,
                        site_address.as_deref(),
                        idempotency_key.as_deref(),
                        &metadata(ctx, caller),
                    )
                    .await,
            )
            .map(|order_id| Receipt::new(order_id).touched(customer_id))
        })
        .await
    }

    /// Records a cash payment (owner, admin, finance); provider payments arrive by callback.
    /// The payment that covers the total marks the order paid. Refusals: `UNKNOWN_ORDER`,
    /// `OVERPAYMENT`, `PAYMENT_CURRENCY_MISMATCH`, `NON_POSITIVE_PAYMENT`,
    /// `PAYMENT_AFTER_CANCELLATION`, `BLANK_FIELD`. A reference already recorded changes nothing.
    /// Returns a receipt.
    async fn record_cash_payment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order (`order_…`).")] order_id: String,
        #[graphql(
            desc = "The cash receipt number; not blank. Recorded once per order: the same reference again changes nothing."
        )]
        reference: String,
        #[graphql(desc = "The amount received, in integer minor units: above zero, at most the amount outstanding.")]
        amount_minor: i64,
        #[graphql(desc = "ISO 4217 code; must be the order's currency.")] currency: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::HandleMoney, "record payments").gql()?;
            answer(
                service(ctx)
                    .gql()?
                    .record_payment(
                        &order_id,
                        PaymentProvider::Cash,
                        &reference,
                        amount_minor,
                        &currency,
                        &metadata(ctx, caller),
                    )
                    .await,
            )?;
            Ok(Receipt::new(order_id))
        })
        .await
    }

    /// Cancels an order not yet fulfilled (the reason is stored sealed). Owner, admin, agent.
    /// Refusals: `UNKNOWN_ORDER`, `CANCEL_AFTER_FULFILMENT`, `INVALID_INPUT` (a reason for a
    /// customer whose data was erased). Cancelling again changes nothing. Returns a receipt.
    async fn cancel_order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order (`order_…`).")] order_id: String,
        #[graphql(desc = "Why, optional free text sealed under the customer's data key (never shown in read models).")]
        reason: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::Sell, "cancel orders").gql()?;
            answer(
                service(ctx)
                    .gql()?
                    .cancel_order(&order_id, reason.as_deref(), &metadata(ctx, caller))
                    .await,
            )?;
            Ok(Receipt::new(order_id))
        })
        .await
    }

    /// Marks a paid order fulfilled. Owner, admin, agent. Refusals: `UNKNOWN_ORDER`,
    /// `FULFILMENT_REQUIRES_PAYMENT` (placed or cancelled). Repeating it changes nothing.
    /// Returns a receipt.
    async fn fulfil_order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order (`order_…`).")] order_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::Sell, "fulfil orders").gql()?;
            answer(
                service(ctx)
                    .gql()?
                    .fulfil_order(&order_id, &metadata(ctx, caller))
                    .await,
            )?;
            Ok(Receipt::new(order_id))
        })
        .await
    }
}
