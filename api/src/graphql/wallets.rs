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

use super::receipt::{receipt, Balances, Receipt};
use super::{allowed, commands, connection, metadata, page_size, pool};
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

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
    /// A sub-wallet's parent (always `main`); null for the main wallet.
    pub parent_id: Option<String>,
    /// Milli-tokens held: available + reserved.
    pub balance: i64,
    /// Milli-tokens held by open reservations.
    pub reserved: i64,
    /// Milli-tokens that may be spent.
    pub available: i64,
    /// When the wallet was opened (RFC 3339); null only if its opening is not in the read model.
    pub opened_at: Option<DateTime<Utc>>,
    /// The log time of the latest operation on the wallet (RFC 3339).
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
    /// Milli-tokens added to the account (negative: taken from it).
    pub amount: i64,
}

/// One operation on a wallet with its postings and the running balances after it.
#[derive(SimpleObject)]
pub struct LedgerLine {
    /// The event's log position.
    pub position: i64,
    /// The wallet's id (`main` or a sub-wallet's).
    pub wallet_id: String,
    /// purchase, debit, refused, reserve, capture, release, expire, refund, transfer_out,
    /// transfer_in, open, thresholds, low_balance_alert, auto_refill_requested.
    pub kind: String,
    /// The operation's reference (for `expire` and `low_balance_alert`: the reservation or the
    /// triggering reference; for `auto_refill_requested`: the purchase reference to use).
    pub reference: Option<String>,
    /// The billable feature paid for (debits, captures, refunds, refusals).
    pub feature: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// The operation's amount (a refusal: what was required).
    pub amount: i64,
    /// The change of the wallet's balance.
    pub balance_change: i64,
    /// The double-entry postings of the operation (they sum to zero; empty for lines that move
    /// nothing).
    pub postings: Vec<LedgerPosting>,
    /// The running balance after this line.
    pub balance: i64,
    /// Milli-tokens held by open reservations after this line.
    pub reserved: i64,
    /// Milli-tokens available to spend after this line.
    pub available: i64,
    /// The operation's log time (RFC 3339).
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
    /// The billable feature (`message`, `broadcast_recipient`, `report`, …).
    pub feature: String,
    /// The UTC day (`YYYY-MM-DD`).
    pub day: NaiveDate,
    /// Debited and captured, milli-tokens.
    pub charged: i64,
    /// Refunded that day (of this feature's charges), milli-tokens.
    pub refunded: i64,
    /// `charged` minus `refunded`, milli-tokens.
    pub net: i64,
    /// How many debits and captures.
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
    /// The wallet holding the reservation.
    pub wallet_id: String,
    /// The reservation's reference.
    pub reference: String,
    /// What the tokens are held for (by convention the billable feature its captures count as).
    pub purpose: String,
    /// Milli-tokens reserved.
    pub amount: i64,
    /// Milli-tokens captured (spent) from it so far.
    pub captured: i64,
    /// Milli-tokens returned to available when it was released or expired.
    pub released: i64,
    /// Milli-tokens still held: `amount − captured − released`.
    pub remaining: i64,
    /// When what is left is released automatically (RFC 3339).
    pub expires_at: DateTime<Utc>,
    /// open, captured, released or expired.
    pub state: String,
    /// When the reservation was made (RFC 3339).
    pub reserved_at: DateTime<Utc>,
    /// When it was fully captured, released or expired (RFC 3339); null while open.
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
#[derive(SimpleObject, Clone, Debug)]
pub struct FeaturePrice {
    /// The billable feature (`message`, `broadcast_recipient`, `report`, …).
    pub feature: String,
    /// Milli-tokens per unit.
    pub unit_price: i64,
    /// The user id who set the price last.
    pub updated_by: String,
    /// When the price was set last (RFC 3339).
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
    /// The wallet whose available balance fell below the threshold.
    pub wallet_id: String,
    /// `low_balance_alert` or `auto_refill`.
    pub kind: String,
    /// The reference of the operation that crossed the threshold.
    pub trigger: String,
    /// The threshold crossed, milli-tokens.
    pub threshold: i64,
    /// Available after the crossing.
    pub available: i64,
    /// Auto-refills: the milli-tokens to buy.
    pub refill_amount: Option<i64>,
    /// Auto-refills: the reference to buy them under with `purchaseTokens`.
    pub purchase_reference: Option<String>,
    /// `raised` (alerts), `pending` or `fulfilled` (auto-refills).
    pub status: String,
    /// Auto-refills: the milli-tokens actually purchased under `purchaseReference`; null until
    /// fulfilled.
    pub fulfilled_amount: Option<i64>,
    /// Auto-refills: the log time of that purchase (RFC 3339); null until fulfilled.
    pub fulfilled_at: Option<DateTime<Utc>>,
    /// When the threshold was crossed (RFC 3339).
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
    /// The threshold in milli-tokens (0 or more, else `INVALID_THRESHOLD`).
    pub below: i64,
    /// The milli-tokens to request each time (above 0, else `NON_POSITIVE_AMOUNT`).
    pub amount: i64,
}

#[derive(Default)]
pub struct WalletsQuery;

#[Object]
impl WalletsQuery {
    /// One wallet of the caller's tenant (default: the main wallet), or null if never opened.
    /// Owners, admins, finance and auditors (else `FORBIDDEN`).
    async fn wallet(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default = "main",
            desc = "The wallet's id (default `main`): 1 to 64 of a-z, 0-9, _ and -, else `BAD_WALLET_ID`."
        )]
        id: String,
    ) -> async_graphql::Result<Option<WalletBalance>> {
        let caller = allowed(ctx, Permission::ReadWallets, "read wallets").gql()?;
        let id = wallet_id(&id).gql()?;
        let row = read::balance(pool(ctx).gql()?, &caller.tenant, id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(WalletBalance::from))
    }

    /// The caller's tenant's wallets, the main wallet first, then sub-wallets by id, a page at
    /// a time. Owners, admins, finance and auditors (else `FORBIDDEN`).
    async fn wallets(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page (opaque); null for the first page.")]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, WalletBalance>> {
        let caller = allowed(ctx, Permission::ReadWallets, "read wallets").gql()?;
        let first = page_size(first, 100).gql()?;
        let page = read::list_balances(pool(ctx).gql()?, &caller.tenant, first, after.as_deref()).await;
        connection(after.is_some(), page, WalletBalance::from)
    }

    /// The ledger, oldest first: optionally one wallet, one kind, lines in `[from, to)`.
    /// Owners, admins, finance and auditors (else `FORBIDDEN`); a cursor that is not a line's
    /// position is `BAD_CURSOR`.
    #[allow(clippy::too_many_arguments)]
    async fn wallet_ledger(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only this wallet's lines (`main` or a sub-wallet id, else `BAD_WALLET_ID`); null for all.")]
        wallet_id: Option<String>,
        #[graphql(
            desc = "Only lines of this kind (exact, e.g. `debit`; see `LedgerLine.kind`); null or blank for all."
        )]
        kind: Option<String>,
        #[graphql(desc = "Only lines at or after this time (RFC 3339); null for no lower bound.")] from: Option<
            DateTime<Utc>,
        >,
        #[graphql(desc = "Only lines before this time (RFC 3339, exclusive); null for no upper bound.")] to: Option<
            DateTime<Utc>,
        >,
        #[graphql(default = 50, desc = "Page size: 1 to 500, default 50 (`PAGE_TOO_LARGE` above 500).")] first: i32,
        #[graphql(
            desc = "The `cursor` of the last edge of the previous page (a line's `position`); null for the first page."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, LedgerLine>> {
        let caller = allowed(ctx, Permission::ReadWallets, "read wallets").gql()?;
        let first = page_size(first, 500).gql()?;
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
        let page = read::ledger(pool(ctx).gql()?, &caller.tenant, &filter, first, after_position)
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

    /// Consumption per feature per day (UTC) in `[from, to)`, every wallet, by day then feature,
    /// a page at a time. Owners, admins, finance and auditors (else `FORBIDDEN`).
    async fn usage(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Count lines at or after this time (RFC 3339); null for no lower bound.")] from: Option<
            DateTime<Utc>,
        >,
        #[graphql(desc = "Count lines before this time (RFC 3339, exclusive); null for no upper bound.")] to: Option<
            DateTime<Utc>,
        >,
        #[graphql(
            default = 100,
            desc = "Page size: 1 to 500, default 100 (`PAGE_TOO_LARGE` above 500)."
        )]
        first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page (opaque); null for the first page.")]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, FeatureUsage>> {
        let caller = allowed(ctx, Permission::ReadWallets, "read wallets").gql()?;
        let first = page_size(first, 500).gql()?;
        let page = read::usage(pool(ctx).gql()?, &caller.tenant, from, to, first, after.as_deref()).await;
        connection(after.is_some(), page, FeatureUsage::from)
    }

    /// Reservations, soonest expiry first: the open ones, or all with `all: true`, a page at a
    /// time. Owners, admins, finance and auditors (else `FORBIDDEN`).
    async fn reservations(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default = false,
            desc = "true: closed reservations too (captured, released, expired); false (default): open ones only."
        )]
        all: bool,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page (opaque); null for the first page.")]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, TokenReservation>> {
        let caller = allowed(ctx, Permission::ReadWallets, "read wallets").gql()?;
        let first = page_size(first, 100).gql()?;
        let page = read::reservations(pool(ctx).gql()?, &caller.tenant, all, first, after.as_deref()).await;
        connection(after.is_some(), page, TokenReservation::from)
    }

    /// Low-balance alerts and auto-refill requests, newest first. Owners, admins, finance and
    /// auditors (else `FORBIDDEN`); a cursor that is not an alert's position is `BAD_CURSOR`.
    async fn wallet_alerts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, desc = "Page size: 1 to 500, default 50 (`PAGE_TOO_LARGE` above 500).")] first: i32,
        #[graphql(desc = "The previous page's last edge `cursor` (an alert's `position`); null for the first page.")]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, WalletAlert>> {
        let caller = allowed(ctx, Permission::ReadWallets, "read wallets").gql()?;
        let first = page_size(first, 500).gql()?;
        let after_position = match after.as_deref() {
            Some(cursor) => Some(
                cursor
                    .parse::<i64>()
                    .map_err(|_| ApiError::bad_request("BAD_CURSOR", format!("{cursor:?} is not an alert cursor")))
                    .gql()?,
            ),
            None => None,
        };
        let page = work::alerts(pool(ctx).gql()?, &caller.tenant, first, after_position)
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

    /// The tenant's price list, by feature name (a feature without an entry, or priced 0, is
    /// unmetered). Owners, admins, finance and auditors (else `FORBIDDEN`).
    async fn price_list(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<FeaturePrice>> {
        let caller = allowed(ctx, Permission::ReadWallets, "read wallets").gql()?;
        let prices = Metering::new(commands(ctx).gql()?.clone())
            .prices(&caller.tenant)
            .await
            .gql()?;
        Ok(prices.into_iter().map(FeaturePrice::from).collect())
    }
}

/// A wallet mutation's receipt: the wallet, the operation's reference (`open:<id>` for an
/// opening) and the balances after it (write side).
fn wallet_receipt(r: WalletReceipt) -> Receipt {
    Receipt::new(r.wallet_id).with_wallet(
        r.reference,
        Balances {
            balance: r.balances.balance,
            reserved: r.balances.reserved,
            available: r.balances.available,
        },
    )
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
    ///
    /// Owners and finance (else `FORBIDDEN`). The same reference with the same amount and
    /// source answers the first outcome; anything else under it is `IDEMPOTENCY_CONFLICT`. Also
    /// refused: `BAD_WALLET_ID`, `BAD_REFERENCE`, `UNKNOWN_WALLET` (a sub-wallet not opened),
    /// `NON_POSITIVE_AMOUNT`, `AMOUNT_TOO_LARGE`, `BLANK_FIELD` (blank source). Buying under an
    /// auto-refill's `purchaseReference` marks it `fulfilled`. Answers the wallet's balances.
    async fn purchase_tokens(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = "main", desc = "The wallet to credit (default `main`).")] wallet_id: String,
        #[graphql(desc = "The payment's reference, 1 to 200 bytes after trimming: the idempotency key.")]
        reference: String,
        #[graphql(desc = "Milli-tokens to credit (1 token = 1000), above 0.")] amount: i64,
        #[graphql(
            default = "finance",
            desc = "Where the payment came from, shown in the ledger (default `finance`; e.g. `mpesa`)."
        )]
        source: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::PurchaseTokens, "credit purchases").gql()?;
            let id = self::wallet_id(&wallet_id).gql()?;
            let reference = self::reference(&reference).gql()?;
            let source = source.trim();
            let metadata = metadata(ctx, caller);
            let wallets = service(ctx).gql()?;
            if id == MAIN_WALLET {
                wallets.ensure_main(&metadata).await.gql()?;
            }
            let receipt = wallets.purchase(id, reference, amount, source, &metadata).await.gql()?;
            Ok(wallet_receipt(receipt))
        })
        .await
    }

    /// Sets a feature's unit price in milli-tokens, or removes it (`unitPrice` null: the
    /// feature becomes unmetered). The receipt's `id` is the feature and `prices` the whole price
    /// list.
    ///
    /// Owners, admins and finance (else `FORBIDDEN`); a feature Chronicle does not meter or a
    /// negative price is `INVALID_INPUT`. Takes effect at once (no log event).
    async fn set_price(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The metered feature: `message` (a message a user sends), `broadcast_recipient` (one recipient of a campaign) or `report`; anything else is `INVALID_INPUT`."
        )]
        feature: String,
        #[graphql(desc = "Milli-tokens per unit, 0 or more (0 charges nothing); null removes the entry.")]
        unit_price: Option<i64>,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageWallets, "set prices").gql()?;
            let metering = Metering::new(commands(ctx).gql()?.clone());
            metering
                .set_price(&caller.tenant, feature.trim(), unit_price, &caller.user_id)
                .await
                .gql()?;
            let prices = metering.prices(&caller.tenant).await.gql()?;
            let mut answer = Receipt::new(feature.trim());
            answer.prices = Some(prices.into_iter().map(FeaturePrice::from).collect());
            Ok(answer)
        })
        .await
    }

    /// Opens a sub-wallet of the main wallet (idempotent), opening the main wallet first if
    /// needed. Owners, admins and finance (else `FORBIDDEN`); refused with `BAD_WALLET_ID` or
    /// `SUB_WALLET_OF_ITSELF` (`main`). Answers the sub-wallet's balances.
    async fn open_sub_wallet(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new wallet's id: 1 to 64 of a-z, 0-9, _ and -, not `main`.")] wallet_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageWallets, "open wallets").gql()?;
            let id = self::wallet_id(&wallet_id).gql()?;
            let receipt = service(ctx)
                .gql()?
                .open_sub_wallet(id, &metadata(ctx, caller))
                .await
                .gql()?;
            Ok(wallet_receipt(receipt))
        })
        .await
    }

    /// Sets the wallet's low-balance alert threshold and auto-refill (null clears either; both
    /// re-armed, so a wallet already below alerts at once). `reference` makes a retry
    /// idempotent (default: a fresh one). Answers the wallet's balances.
    ///
    /// Owners, admins and finance (else `FORBIDDEN`). Refused with `BAD_WALLET_ID`,
    /// `BAD_REFERENCE`, `UNKNOWN_WALLET`, `INVALID_THRESHOLD`, `NON_POSITIVE_AMOUNT` or
    /// `IDEMPOTENCY_CONFLICT` (a reference reused with other settings).
    async fn configure_wallet_thresholds(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default = "main",
            desc = "The wallet to configure (default `main`, opened if needed)."
        )]
        wallet_id: String,
        #[graphql(desc = "Alert when available falls below this many milli-tokens (0 or more); null: no alert.")]
        low_balance_alert: Option<i64>,
        #[graphql(desc = "Request a purchase when available falls below a threshold; null: no auto-refill.")]
        auto_refill: Option<AutoRefillInput>,
        #[graphql(desc = "The idempotency key, 1 to 200 bytes after trimming; null: a fresh `thresholds:<uuid>`.")]
        reference: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageWallets, "configure wallet thresholds").gql()?;
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
            Ok(wallet_receipt(receipt))
        })
        .await
    }

    /// Moves `amount` milli-tokens between two wallets of the tenant, all or nothing.
    /// Answers the source wallet's balances.
    ///
    /// Owners, admins and finance (else `FORBIDDEN`). `INSUFFICIENT_BALANCE` (with `required`
    /// and `available` in the error's extensions) when the source cannot pay it all; also
    /// `BAD_WALLET_ID`, `BAD_REFERENCE`, `TRANSFER_TO_SAME_WALLET`, `UNKNOWN_WALLET`,
    /// `NON_POSITIVE_AMOUNT`, `IDEMPOTENCY_CONFLICT`. A retry under the same reference answers
    /// the first outcome, a refusal included.
    async fn transfer_tokens(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The source wallet's id (opened).")] from: String,
        #[graphql(desc = "The target wallet's id (opened, not the source).")] to: String,
        #[graphql(desc = "The transfer's idempotency key, 1 to 200 bytes after trimming.")] reference: String,
        #[graphql(desc = "Milli-tokens to move (1 token = 1000), above 0.")] amount: i64,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageWallets, "transfer tokens").gql()?;
            let from = wallet_id(&from).gql()?;
            let to = wallet_id(&to).gql()?;
            let reference = self::reference(&reference).gql()?;
            let receipt = service(ctx)
                .gql()?
                .transfer(from, to, reference, amount, &metadata(ctx, caller))
                .await
                .gql()?;
            Ok(wallet_receipt(receipt))
        })
        .await
    }
}
