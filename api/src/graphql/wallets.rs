//! Token wallets: queries `wallet(id)`, `wallets`, `walletLedger(...)` (a Relay connection,
//! oldest first, with running balances), `usage(from, to)` per feature per day,
//! `reservations`, `priceList`, `walletAlerts(first, after)`; finance's mutations
//! `purchaseTokens`, `setPrice`, `openSubWallet`, `transferTokens`,
//! `configureWalletThresholds`.
//!
//! Amounts are milli-tokens (1 token = 1000) as `Int` (64-bit). The main wallet's id is
//! `main`. Reading: owner, admin, finance, auditor. Purchases: owner and finance. Prices,
//! sub-wallets and transfers: owner, admin and finance. Anyone else gets `FORBIDDEN`.
//! Queries read the `wallets` read models (a moment behind the log); mutations answer with the
//! wallet's balances from the write side after the operation.
//!
//! A purchase is idempotent by its `reference` (the payment's): the same reference and amount
//! credit once; a different amount under a used reference is `IDEMPOTENCY_CONFLICT`. A
//! transfer that the source cannot pay is `INSUFFICIENT_BALANCE` with `required` and
//! `available` in the error's extensions.
//!
//! Thresholds: `configureWalletThresholds(walletId, lowBalanceAlert, autoRefill { below,
//! amount })` (owner, admin, finance) sets or clears both (null clears). The wallet alerts
//! once each time available falls below a threshold and re-arms when it is back at or above
//! it; `walletAlerts` (newest first, from the `wallet_alerts` read model) lists the alerts
//! (`raised`) and auto-refill requests. An auto-refill cannot charge a card (no stored payment
//! method exists): it shows `pending` with its `purchaseReference` (`refill:<trigger>`), and
//! finance completes it with `purchaseTokens` under that reference; once the purchase is
//! projected the request shows `fulfilled`.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, InputObject, Object, SimpleObject};
use chronicle_commands::metering::{Metering, Price};
use chronicle_commands::wallets::{valid_wallet_id, WalletReceipt, WalletService, MAIN_WALLET};
use chronicle_domain::wallet::AutoRefill;
use chronicle_projections::wallet_work::{self as work, AlertRow};
use chronicle_projections::wallets::{
    self as read, LedgerFilter, LedgerRow, ReservationRow, UsageRow, WalletBalanceRow,
};
use chrono::{DateTime, NaiveDate, Utc};

use super::contacts::commands;
use super::{caller, metadata, pool, require};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, IntoGraphql};

/// Whether the role may read wallets, the ledger, usage and prices.
pub fn reads_wallets(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin | Role::Finance | Role::Auditor)
}

/// Whether the role may credit purchases.
pub fn purchases_tokens(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Finance)
}

/// Whether the role may set prices, open sub-wallets and transfer between wallets.
pub fn manages_wallets(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin | Role::Finance)
}

fn allowed<'a>(ctx: &'a Context<'_>, check: fn(Role) -> bool, what: &str) -> Result<&'a Caller, ApiError> {
    let caller = caller(ctx)?;
    require(check(caller.role), caller, what)?;
    Ok(caller)
}

fn wallet_id(id: &str) -> Result<&str, ApiError> {
    valid_wallet_id(id.trim()).map_err(|e| ApiError::bad_request("BAD_WALLET_ID", e.to_string()))
}

fn reference(reference: &str) -> Result<&str, ApiError> {
    let reference = reference.trim();
    if reference.is_empty() || reference.len() > 200 {
        return Err(ApiError::bad_request(
            "BAD_REFERENCE",
            "a reference of 1 to 200 characters is required",
        ));
    }
    Ok(reference)
}

/// A wallet's balances (read model).
#[derive(SimpleObject)]
pub struct WalletBalance {
    /// `main` or a sub-wallet's id.
    pub id: String,
    pub parent_id: Option<String>,
    /// Milli-tokens held: available + reserved.
    pub balance: i64,
    /// Milli-tokens held by open reservations.
    pub reserved: i64,
    /// Milli-tokens that may be spent.
    pub available: i64,
    pub opened_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<WalletBalanceRow> for WalletBalance {
    fn from(r: WalletBalanceRow) -> Self {
        Self {
            id: r.wallet_id,
            parent_id: r.parent_id,
            balance: r.balance,
            reserved: r.reserved,
            available: r.available,
            opened_at: r.opened_at,
            updated_at: r.updated_at,
        }
    }
}

/// One posting of a ledger line (double entry: a line's postings sum to zero).
#[derive(SimpleObject)]
pub struct LedgerPosting {
    /// wallet_available, wallet_reserved, platform_sales, platform_consumption,
    /// transfers_in_transit.
    pub account: String,
    pub amount: i64,
}

/// One operation on a wallet with its postings and the running balances after it.
#[derive(SimpleObject)]
pub struct LedgerLine {
    /// The event's log position.
    pub position: i64,
    pub wallet_id: String,
    /// purchase, debit, refused, reserve, capture, release, expire, refund, transfer_out,
    /// transfer_in, open, thresholds, low_balance_alert, auto_refill_requested.
    pub kind: String,
    pub reference: Option<String>,
    /// The billable feature paid for (debits, captures, refunds, refusals).
    pub feature: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// The operation's amount (a refusal: what was required).
    pub amount: i64,
    /// The change of the wallet's balance.
    pub balance_change: i64,
    pub postings: Vec<LedgerPosting>,
    /// The running balance after this line.
    pub balance: i64,
    pub reserved: i64,
    pub available: i64,
    pub at: DateTime<Utc>,
}

impl From<LedgerRow> for LedgerLine {
    fn from(r: LedgerRow) -> Self {
        let postings = r
            .postings
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|p| LedgerPosting {
                        account: p["account"].as_str().unwrap_or_default().to_string(),
                        amount: p["amount"].as_i64().unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            position: r.position,
            wallet_id: r.wallet_id,
            kind: r.kind,
            reference: r.reference,
            feature: r.feature,
            reason: r.reason,
            amount: r.amount,
            balance_change: r.balance_change,
            postings,
            balance: r.balance,
            reserved: r.reserved,
            available: r.available,
            at: r.at,
        }
    }
}

/// Consumption of one feature on one day (UTC).
#[derive(SimpleObject)]
pub struct FeatureUsage {
    pub feature: String,
    pub day: NaiveDate,
    /// Debited and captured, milli-tokens.
    pub charged: i64,
    pub refunded: i64,
    pub net: i64,
    pub operations: i64,
}

impl From<UsageRow> for FeatureUsage {
    fn from(r: UsageRow) -> Self {
        Self {
            feature: r.feature,
            day: r.day,
            charged: r.charged,
            refunded: r.refunded,
            net: r.net,
            operations: r.operations,
        }
    }
}

/// A reservation of tokens.
#[derive(SimpleObject)]
pub struct TokenReservation {
    pub wallet_id: String,
    /// The reservation's reference.
    pub reference: String,
    pub purpose: String,
    pub amount: i64,
    pub captured: i64,
    pub released: i64,
    pub remaining: i64,
    pub expires_at: DateTime<Utc>,
    /// open, captured, released or expired.
    pub state: String,
    pub reserved_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl From<ReservationRow> for TokenReservation {
    fn from(r: ReservationRow) -> Self {
        Self {
            wallet_id: r.wallet_id,
            reference: r.reservation,
            purpose: r.purpose,
            amount: r.amount,
            captured: r.captured,
            released: r.released,
            remaining: r.remaining,
            expires_at: r.expires_at,
            state: r.state,
            reserved_at: r.reserved_at,
            closed_at: r.closed_at,
        }
    }
}

/// A price list entry.
#[derive(SimpleObject)]
pub struct FeaturePrice {
    pub feature: String,
    /// Milli-tokens per unit.
    pub unit_price: i64,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

impl From<Price> for FeaturePrice {
    fn from(p: Price) -> Self {
        Self {
            feature: p.feature,
            unit_price: p.unit_price,
            updated_by: p.updated_by,
            updated_at: p.updated_at,
        }
    }
}

/// A low-balance alert or an auto-refill request (once per threshold crossing).
#[derive(SimpleObject)]
pub struct WalletAlert {
    /// The event's log position (also the page cursor).
    pub position: i64,
    pub wallet_id: String,
    /// `low_balance_alert` or `auto_refill`.
    pub kind: String,
    /// The reference of the operation that crossed the threshold.
    pub trigger: String,
    pub threshold: i64,
    /// Available after the crossing.
    pub available: i64,
    /// Auto-refills: the milli-tokens to buy.
    pub refill_amount: Option<i64>,
    /// Auto-refills: the reference to buy them under with `purchaseTokens`.
    pub purchase_reference: Option<String>,
    /// `raised` (alerts), `pending` or `fulfilled` (auto-refills).
    pub status: String,
    pub fulfilled_amount: Option<i64>,
    pub fulfilled_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

impl From<AlertRow> for WalletAlert {
    fn from(r: AlertRow) -> Self {
        Self {
            position: r.position,
            wallet_id: r.wallet_id,
            kind: r.kind,
            trigger: r.trigger,
            threshold: r.threshold,
            available: r.available,
            refill_amount: r.refill_amount,
            purchase_reference: r.purchase_reference,
            status: r.status,
            fulfilled_amount: r.fulfilled_amount,
            fulfilled_at: r.fulfilled_at,
            at: r.at,
        }
    }
}

/// Buy `amount` milli-tokens when available falls below `below`.
#[derive(InputObject)]
pub struct AutoRefillInput {
    pub below: i64,
    pub amount: i64,
}

#[derive(Default)]
pub struct WalletsQuery;

#[Object]
impl WalletsQuery {
    /// One wallet of the caller's tenant (default: the main wallet), or null if never opened.
    async fn wallet(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = "main")] id: String,
    ) -> async_graphql::Result<Option<WalletBalance>> {
        let caller = allowed(ctx, reads_wallets, "read wallets").gql()?;
        let id = wallet_id(&id).gql()?;
        let rows = read::balances(pool(ctx).gql()?, &caller.tenant, Some(id))
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(rows.into_iter().next().map(WalletBalance::from))
    }

    /// Every wallet of the caller's tenant, the main wallet first.
    async fn wallets(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WalletBalance>> {
        let caller = allowed(ctx, reads_wallets, "read wallets").gql()?;
        let rows = read::balances(pool(ctx).gql()?, &caller.tenant, None)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(rows.into_iter().map(WalletBalance::from).collect())
    }

    /// The ledger, oldest first: optionally one wallet, one kind, lines in `[from, to)`.
    #[allow(clippy::too_many_arguments)]
    async fn wallet_ledger(
        &self,
        ctx: &Context<'_>,
        wallet_id: Option<String>,
        kind: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 500))] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, LedgerLine>> {
        let caller = allowed(ctx, reads_wallets, "read wallets").gql()?;
        let wallet_id = match wallet_id {
            Some(id) => Some(self::wallet_id(&id).gql()?.to_string()),
            None => None,
        };
        let after_position = match after.as_deref() {
            Some(cursor) => Some(
                cursor
                    .parse::<i64>()
                    .map_err(|_| ApiError::bad_request("BAD_CURSOR", format!("{cursor:?} is not a ledger cursor")))
                    .gql()?,
            ),
            None => None,
        };
        let filter = LedgerFilter {
            wallet_id,
            kind: kind.map(|k| k.trim().to_string()).filter(|k| !k.is_empty()),
            from,
            to,
        };
        let page = read::ledger(
            pool(ctx).gql()?,
            &caller.tenant,
            &filter,
            i64::from(first),
            after_position,
        )
        .await
        .map_err(ApiError::from)
        .gql()?;
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        connection.edges.extend(
            page.rows
                .into_iter()
                .map(|row| Edge::new(row.position.to_string(), LedgerLine::from(row))),
        );
        Ok(connection)
    }

    /// Consumption per feature per day (UTC) in `[from, to)`, every wallet.
    async fn usage(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<Vec<FeatureUsage>> {
        let caller = allowed(ctx, reads_wallets, "read wallets").gql()?;
        let rows = read::usage(pool(ctx).gql()?, &caller.tenant, from, to)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(rows.into_iter().map(FeatureUsage::from).collect())
    }

    /// Reservations, soonest expiry first: the open ones, or all with `all: true`.
    async fn reservations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] all: bool,
    ) -> async_graphql::Result<Vec<TokenReservation>> {
        let caller = allowed(ctx, reads_wallets, "read wallets").gql()?;
        let rows = read::reservations(pool(ctx).gql()?, &caller.tenant, all)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(rows.into_iter().map(TokenReservation::from).collect())
    }

    /// Low-balance alerts and auto-refill requests, newest first.
    async fn wallet_alerts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 500))] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, WalletAlert>> {
        let caller = allowed(ctx, reads_wallets, "read wallets").gql()?;
        let after_position = match after.as_deref() {
            Some(cursor) => Some(
                cursor
                    .parse::<i64>()
                    .map_err(|_| ApiError::bad_request("BAD_CURSOR", format!("{cursor:?} is not an alert cursor")))
                    .gql()?,
            ),
            None => None,
        };
        let page = work::alerts(pool(ctx).gql()?, &caller.tenant, i64::from(first), after_position)
            .await
            .map_err(ApiError::from)
            .gql()?;
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        connection.edges.extend(
            page.rows
                .into_iter()
                .map(|row| Edge::new(row.position.to_string(), WalletAlert::from(row))),
        );
        Ok(connection)
    }

    /// The tenant's price list (a feature without an entry is unmetered).
    async fn price_list(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<FeaturePrice>> {
        let caller = allowed(ctx, reads_wallets, "read wallets").gql()?;
        let prices = Metering::new(commands(ctx).gql()?.clone())
            .prices(&caller.tenant)
            .await
            .gql()?;
        Ok(prices.into_iter().map(FeaturePrice::from).collect())
    }
}

/// What a wallet mutation did: the wallet's balances after it (write side).
#[derive(SimpleObject)]
pub struct WalletOperation {
    pub wallet_id: String,
    pub reference: String,
    pub balance: i64,
    pub reserved: i64,
    pub available: i64,
}

impl From<WalletReceipt> for WalletOperation {
    fn from(r: WalletReceipt) -> Self {
        Self {
            wallet_id: r.wallet_id,
            reference: r.reference,
            balance: r.balances.balance,
            reserved: r.balances.reserved,
            available: r.balances.available,
        }
    }
}

fn service(ctx: &Context<'_>) -> Result<WalletService, ApiError> {
    Ok(WalletService::new(commands(ctx)?.clone()))
}

#[derive(Default)]
pub struct WalletsMutation;

#[Object]
impl WalletsMutation {
    /// Credits a confirmed payment of `amount` milli-tokens to a wallet (default: main, opened
    /// if needed). Idempotent by `reference`.
    async fn purchase_tokens(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = "main")] wallet_id: String,
        reference: String,
        amount: i64,
        #[graphql(default = "finance")] source: String,
    ) -> async_graphql::Result<WalletOperation> {
        let caller = allowed(ctx, purchases_tokens, "credit purchases").gql()?;
        let id = self::wallet_id(&wallet_id).gql()?;
        let reference = self::reference(&reference).gql()?;
        let source = source.trim();
        let metadata = metadata(ctx, caller);
        let wallets = service(ctx).gql()?;
        if id == MAIN_WALLET {
            wallets.ensure_main(&metadata).await.gql()?;
        }
        let receipt = wallets.purchase(id, reference, amount, source, &metadata).await.gql()?;
        Ok(receipt.into())
    }

    /// Sets a feature's unit price in milli-tokens, or removes it (`unitPrice` null: the
    /// feature becomes unmetered). Answers the whole price list.
    async fn set_price(
        &self,
        ctx: &Context<'_>,
        feature: String,
        unit_price: Option<i64>,
    ) -> async_graphql::Result<Vec<FeaturePrice>> {
        let caller = allowed(ctx, manages_wallets, "set prices").gql()?;
        let metering = Metering::new(commands(ctx).gql()?.clone());
        metering
            .set_price(&caller.tenant, feature.trim(), unit_price, &caller.user_id)
            .await
            .gql()?;
        let prices = metering.prices(&caller.tenant).await.gql()?;
        Ok(prices.into_iter().map(FeaturePrice::from).collect())
    }

    /// Opens a sub-wallet of the main wallet (idempotent).
    async fn open_sub_wallet(&self, ctx: &Context<'_>, wallet_id: String) -> async_graphql::Result<WalletOperation> {
        let caller = allowed(ctx, manages_wallets, "open wallets").gql()?;
        let id = self::wallet_id(&wallet_id).gql()?;
        let receipt = service(ctx)
            .gql()?
            .open_sub_wallet(id, &metadata(ctx, caller))
            .await
            .gql()?;
        Ok(receipt.into())
    }

    /// Sets the wallet's low-balance alert threshold and auto-refill (null clears either; both
    /// re-armed, so a wallet already below alerts at once). `reference` makes a retry
    /// idempotent (default: a fresh one). Answers the wallet's balances.
    async fn configure_wallet_thresholds(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = "main")] wallet_id: String,
        low_balance_alert: Option<i64>,
        auto_refill: Option<AutoRefillInput>,
        reference: Option<String>,
    ) -> async_graphql::Result<WalletOperation> {
        let caller = allowed(ctx, manages_wallets, "configure wallet thresholds").gql()?;
        let id = self::wallet_id(&wallet_id).gql()?;
        let reference = match reference {
            Some(r) => self::reference(&r).gql()?.to_string(),
            None => format!("thresholds:{}", uuid::Uuid::new_v4()),
        };
        let metadata = metadata(ctx, caller);
        let wallets = service(ctx).gql()?;
        if id == MAIN_WALLET {
            wallets.ensure_main(&metadata).await.gql()?;
        }
        let auto_refill = auto_refill.map(|r| AutoRefill {
            threshold: r.below,
            amount: r.amount,
        });
        let receipt = wallets
            .configure_thresholds(id, &reference, low_balance_alert, auto_refill, &metadata)
            .await
            .gql()?;
        Ok(receipt.into())
    }

    /// Moves `amount` milli-tokens between two wallets of the tenant, all or nothing.
    /// Answers the source wallet's balances.
    async fn transfer_tokens(
        &self,
        ctx: &Context<'_>,
        from: String,
        to: String,
        reference: String,
        amount: i64,
    ) -> async_graphql::Result<WalletOperation> {
        let caller = allowed(ctx, manages_wallets, "transfer tokens").gql()?;
        let from = wallet_id(&from).gql()?;
        let to = wallet_id(&to).gql()?;
        let reference = self::reference(&reference).gql()?;
        let receipt = service(ctx)
            .gql()?
            .transfer(from, to, reference, amount, &metadata(ctx, caller))
            .await
            .gql()?;
        Ok(receipt.into())
    }
}
