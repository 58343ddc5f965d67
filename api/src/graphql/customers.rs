//! Customers (issue 17): `customers` (a connection, latest first) and `customer(id)`, with each
//! customer's orders, installations, service history and lifetime value. Read by owner, admin,
//! agent, finance and auditor (the roles that read orders).

use async_graphql::connection::Connection;
use async_graphql::{ComplexObject, Context, Object, SimpleObject};
use chronicle_projections::customers::{self as customers_read, CustomerRow};
use chronicle_projections::installation::{InstallationFilter, ServiceFilter};
use chrono::{DateTime, Utc};

use super::installation::{
    installations_page, orders_page, service_requests_page, Installation, Order, ServiceRequest,
};
use super::{allowed, connection_with, page_size, pool, Counted};
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

/// What a customer paid in one currency.
#[derive(SimpleObject)]
pub struct CustomerValue {
    /// ISO 4217 code.
    pub currency: String,
    /// Integer minor units (cents) received in this currency.
    pub amount_minor: i64,
}

/// A contact of the tenant who became a customer: a lead was won for them (`winLead`) or an
/// order placed for them (`placeOrder`), whichever came first. Fields from other areas answer
/// null to a caller who may not read that area (a finance user reads no names or leads).
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Customer {
    /// The contact's id (`ct_…`); the same id their conversation, orders and installations
    /// carry.
    pub id: String,
    /// When they became a customer (RFC 3339, UTC).
    pub since: DateTime<Utc>,
    /// When their first order was placed; null before any.
    pub first_order_at: Option<DateTime<Utc>>,
    /// How many orders were placed for them (any status).
    pub order_count: i64,
    /// The payments received on their orders, one entry per currency (sorted by code; empty
    /// before any payment). A cancelled order keeps what it was paid.
    pub lifetime_value: Vec<CustomerValue>,
    #[graphql(skip)]
    pub name: Option<String>,
    #[graphql(skip)]
    pub won_lead_id: Option<String>,
    #[graphql(skip)]
    pub won_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    pub installation_count: i64,
    #[graphql(skip)]
    pub open_service_request_count: i64,
}

/// `value` when the caller holds `permission`, else null.
fn if_allowed<T: Clone>(ctx: &Context<'_>, permission: Permission, value: &T) -> Option<T> {
    super::caller(ctx)
        .ok()
        .filter(|caller| caller.may(permission))
        .map(|_| value.clone())
}

impl Customer {
    fn from_row(row: CustomerRow) -> Self {
        Self {
            id: row.customer_id,
            name: row.name,
            since: row.since,
            won_lead_id: row.won_lead_id,
            won_at: row.won_at,
            first_order_at: row.first_order_at,
            order_count: row.orders,
            installation_count: row.installations,
            open_service_request_count: row.open_service_requests,
            lifetime_value: row
                .lifetime_value
                .into_iter()
                .map(|v| CustomerValue {
                    currency: v.currency,
                    amount_minor: v.amount_minor,
                })
                .collect(),
        }
    }
}

#[ComplexObject]
impl Customer {
    /// The contact's name; null when unknown, after their data was erased, or for a caller who
    /// may not read contacts.
    async fn name(&self, ctx: &Context<'_>) -> Option<String> {
        if_allowed(ctx, Permission::ReadContacts, &self.name).flatten()
    }

    /// The first lead won for them (`lead_…`); null for a customer who ordered without one, or
    /// for a caller who may not read leads.
    async fn won_lead_id(&self, ctx: &Context<'_>) -> Option<String> {
        if_allowed(ctx, Permission::ReadLeads, &self.won_lead_id).flatten()
    }

    /// When that lead was won; null without one, or for a caller who may not read leads.
    async fn won_at(&self, ctx: &Context<'_>) -> Option<DateTime<Utc>> {
        if_allowed(ctx, Permission::ReadLeads, &self.won_at).flatten()
    }

    /// How many installations they have (any status); null for a caller who may not read
    /// installations.
    async fn installation_count(&self, ctx: &Context<'_>) -> Option<i64> {
        if_allowed(ctx, Permission::ReadInstallations, &self.installation_count)
    }

    /// How many of their service requests are neither resolved nor closed; null for a caller
    /// who may not read after-sales.
    async fn open_service_request_count(&self, ctx: &Context<'_>) -> Option<i64> {
        if_allowed(ctx, Permission::ReadAfterSales, &self.open_service_request_count)
    }

    /// Their orders, latest placed first.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(
            desc = "The cursor of the last edge of the previous page; a malformed one is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Order, Counted>> {
        orders_page(ctx, None, Some(self.id.clone()), first, after).await
    }

    /// Their installations, latest opened first.
    async fn installations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(
            desc = "The cursor of the last edge of the previous page; a malformed one is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Installation, Counted>> {
        let filter = InstallationFilter {
            customer: Some(self.id.clone()),
            ..InstallationFilter::default()
        };
        installations_page(ctx, filter, first, after).await
    }

    /// Their service history: their service requests, newest ticket first.
    async fn service_requests(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(
            desc = "The cursor of the last edge of the previous page; a malformed one is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, ServiceRequest, Counted>> {
        let filter = ServiceFilter {
            customer: Some(self.id.clone()),
            ..ServiceFilter::default()
        };
        service_requests_page(ctx, filter, first, after).await
    }
}

#[derive(Default)]
pub struct CustomersQuery;

#[Object]
impl CustomersQuery {
    /// The tenant's customers, latest first. Owner, admin, agent, finance, auditor.
    async fn customers(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(
            desc = "The cursor of the last edge of the previous page; a malformed one is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Customer, Counted>> {
        let caller = allowed(ctx, Permission::ReadOrders, "read customers").gql()?;
        let first = page_size(first, 100).gql()?;
        let pool = pool(ctx).gql()?;
        let page = customers_read::list_customers(pool, &caller.tenant, first, after.as_deref()).await;
        let (pool, tenant) = (pool.clone(), caller.tenant.clone());
        let count = Counted::new(async move { customers_read::count_customers(&pool, &tenant).await });
        connection_with(after.is_some(), page, Customer::from_row, count)
    }

    /// One customer of the tenant (by their contact id); null when the contact is not a
    /// customer (no lead won, no order). Owner, admin, agent, finance, auditor.
    async fn customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contact's id (`ct_…`).")] id: String,
    ) -> async_graphql::Result<Option<Customer>> {
        let caller = allowed(ctx, Permission::ReadOrders, "read customers").gql()?;
        let row = customers_read::customer(pool(ctx).gql()?, &caller.tenant, &id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(Customer::from_row))
    }
}
