//! The token wallets' read models, written only by [`WalletsProjector`] from `Wallet` events:
//!
//! - `wallet_balances`: balance, reserved and available per wallet ([`balance`], [`list_balances`]);
//! - `wallet_ledger`: one row per wallet event (operation) with its postings, the running
//!   balances after it, the feature it paid for and a reason in words ([`ledger`], filtered by
//!   wallet, kind and period, paginated by log position); usage per feature per day is a query
//!   over it ([`usage`]: debits and captures, less refunds, by the day of each line);
//! - `wallet_reservations`: every reservation with what was captured and released
//!   ([`reservations`]).
//!
//! The events carry their postings and balances, so nothing here recomputes a rule. Writes are
//! idempotent: ledger lines are keyed by log position, balances and reservations are set to
//! absolute values guarded by `last_position`.
//!
//! Reasons: a refund whose reference reads `refund:<why>:…` (metering's and campaigns'
//! convention) shows `<why>`; a capture shows its reservation's purpose as its feature, and a
//! refund its debit's (or capture's) feature. Wallet data is the tenant's billing, not personal
//! data: nothing is sealed.

use chronicle_domain::tenant::TenantId;
use chronicle_domain::wallet::{Request, WalletEvent};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};

use crate::log::StoredEvent;
use crate::page::{after_time, cursor, read_cursor, time_cursor, BadCursor, Page};
use crate::runtime::{Fold, ProjectionError};
use crate::shared::{begin_for_tenant, payload};

/// The projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "wallets";

/// Folds `Wallet` events into `wallet_balances`, `wallet_ledger` and `wallet_reservations`.
#[derive(Debug, Default)]
pub struct WalletsProjector;

/// A ledger line before it is written.
struct Line {
    kind: &'static str,
    reference: Option<String>,
    feature: Option<String>,
    reason: String,
    amount: i64,
}

/// The why of a refund reference `refund:<why>:…`.
fn refund_reason(reference: &str) -> Option<&str> {
    let rest = reference.strip_prefix("refund:")?;
    let (why, _) = rest.split_once(':')?;
    (!why.is_empty()).then_some(why)
}

impl WalletsProjector {
    async fn feature_of(
        db: &mut PgConnection,
        event: &StoredEvent,
        wallet_id: &str,
        reference: &str,
    ) -> Result<Option<String>, ProjectionError> {
        let feature: Option<Option<String>> = sqlx::query_scalar(
            "SELECT feature FROM wallet_ledger
              WHERE tenant_id = $1 AND wallet_id = $2 AND reference = $3 AND kind IN ('debit', 'capture')
              ORDER BY global_position LIMIT 1",
        )
        .bind(&event.tenant_id)
        .bind(wallet_id)
        .bind(reference)
        .fetch_optional(&mut *db)
        .await?;
        Ok(feature.flatten())
    }

    async fn purpose_of(
        db: &mut PgConnection,
        event: &StoredEvent,
        wallet_id: &str,
        reservation: &str,
    ) -> Result<Option<String>, ProjectionError> {
        Ok(sqlx::query_scalar(
            "SELECT purpose FROM wallet_reservations WHERE tenant_id = $1 AND wallet_id = $2 AND reservation = $3",
        )
        .bind(&event.tenant_id)
        .bind(wallet_id)
        .bind(reservation)
        .fetch_optional(&mut *db)
        .await?)
    }

    /// Sets a reservation's absolute figures after a capture, release or expiry.
    #[allow(clippy::too_many_arguments)]
    async fn close_or_capture(
        db: &mut PgConnection,
        event: &StoredEvent,
        wallet_id: &str,
        reservation: &str,
        captured: i64,
        released: i64,
        state: &str,
        closed_at: Option<DateTime<Utc>>,
    ) -> Result<(), ProjectionError> {
        sqlx::query(
            "UPDATE wallet_reservations SET captured = $4, released = $5, state = $6, closed_at = $7, last_position = $8
              WHERE tenant_id = $1 AND wallet_id = $2 AND reservation = $3 AND last_position < $8",
        )
        .bind(&event.tenant_id)
        .bind(wallet_id)
        .bind(reservation)
        .bind(captured)
        .bind(released)
        .bind(state)
        .bind(closed_at)
        .bind(event.global_position)
        .execute(&mut *db)
        .await?;
        Ok(())
    }
}

impl Fold for WalletsProjector {
    const NAME: &'static str = NAME;
    const EVENT_TYPES: &'static [&'static str] = WalletEvent::TYPES;
    const AGGREGATES: &'static [&'static str] = &["Wallet"];
    const TABLES: &'static [&'static str] = &["wallet_ledger", "wallet_balances", "wallet_reservations"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let parsed: WalletEvent = payload(event)?;
        let prefix = format!("{}:wallet_", event.tenant_id);
        let Some(wallet_id) = event.aggregate_id.strip_prefix(&prefix).map(str::to_string) else {
            return Err(ProjectionError::Handler {
                position: event.global_position,
                reason: format!("{} is not a wallet stream", event.aggregate_id),
            });
        };
        let balances = parsed.balances();
        let postings = serde_json::to_value(parsed.postings()).map_err(|e| ProjectionError::Decode {
            position: event.global_position,
            source: e,
        })?;
        let balance_change: i64 = parsed
            .postings()
            .iter()
            .filter(|p| p.account.is_wallet())
            .fold(0i64, |sum, p| sum.saturating_add(p.amount));
        let mut opened: Option<(Option<String>, DateTime<Utc>)> = None;
        let (line, at) = match parsed {
            WalletEvent::WalletOpened {
                reference,
                parent_id,
                at,
                ..
            } => {
                let reason = match &parent_id {
                    Some(parent) => format!("sub-wallet of {parent} opened"),
                    None => "wallet opened".to_string(),
                };
                opened = Some((parent_id, at));
                let line = Line {
                    kind: "open",
                    reference: Some(reference),
                    feature: None,
                    reason,
                    amount: 0,
                };
                (line, at)
            }
            WalletEvent::TokensPurchased {
                reference,
                amount,
                source,
                at,
                ..
            } => (
                Line {
                    kind: "purchase",
                    reference: Some(reference),
                    feature: None,
                    reason: format!("purchase from {source}"),
                    amount,
                },
                at,
            ),
            WalletEvent::TokensDebited {
                reference,
                amount,
                feature,
                at,
                ..
            } => (
                Line {
                    kind: "debit",
                    reference: Some(reference),
                    reason: format!("charge for {feature}"),
                    feature: Some(feature),
                    amount,
                },
                at,
            ),
            WalletEvent::DebitRefused {
                reference,
                request,
                required,
                available,
                at,
                ..
            } => {
                let feature = match &request {
                    Request::Debit { feature, .. } => Some(feature.clone()),
                    Request::Reserve { purpose, .. } => Some(purpose.clone()),
                    _ => None,
                };
                let line = Line {
                    kind: "refused",
                    reference: Some(reference),
                    feature,
                    reason: format!(
                        "{} refused: insufficient balance ({required} required, {available} available)",
                        request.operation()
                    ),
                    amount: required,
                };
                (line, at)
            }
            WalletEvent::TokensReserved {
                reference,
                amount,
                expires_at,
                purpose,
                at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO wallet_reservations (tenant_id, wallet_id, reservation, purpose, amount, expires_at,
                            reserved_at, last_position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (tenant_id, wallet_id, reservation) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&wallet_id)
                .bind(&reference)
                .bind(&purpose)
                .bind(amount)
                .bind(expires_at)
                .bind(at)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
                let line = Line {
                    kind: "reserve",
                    reference: Some(reference),
                    reason: format!("reservation for {purpose} until {}", expires_at.to_rfc3339()),
                    feature: Some(purpose),
                    amount,
                };
                (line, at)
            }
            WalletEvent::ReservationCaptured {
                reference,
                reservation,
                amount,
                remaining,
                at,
                ..
            } => {
                let purpose = Self::purpose_of(db, event, &wallet_id, &reservation).await?;
                let reserved: Option<i64> = sqlx::query_scalar(
                    "SELECT amount FROM wallet_reservations WHERE tenant_id = $1 AND wallet_id = $2 AND reservation = $3",
                )
                .bind(&event.tenant_id)
                .bind(&wallet_id)
                .bind(&reservation)
                .fetch_optional(&mut *db)
                .await?;
                if let Some(reserved) = reserved {
                    let (state, closed) = if remaining == 0 {
                        ("captured", Some(at))
                    } else {
                        ("open", None)
                    };
                    Self::close_or_capture(
                        db,
                        event,
                        &wallet_id,
                        &reservation,
                        reserved - remaining,
                        0,
                        state,
                        closed,
                    )
                    .await?;
                }
                let line = Line {
                    kind: "capture",
                    reference: Some(reference),
                    reason: format!(
                        "capture of reservation {reservation} for {}",
                        purpose.as_deref().unwrap_or("an unknown purpose")
                    ),
                    feature: purpose,
                    amount,
                };
                (line, at)
            }
            WalletEvent::ReservationReleased {
                reference,
                reservation,
                amount,
                captured,
                at,
                ..
            } => {
                let purpose = Self::purpose_of(db, event, &wallet_id, &reservation).await?;
                Self::close_or_capture(db, event, &wallet_id, &reservation, captured, amount, "released", Some(at))
                    .await?;
                let line = Line {
                    kind: "release",
                    reference: Some(reference),
                    reason: format!("release of reservation {reservation} ({captured} captured)"),
                    feature: purpose,
                    amount,
                };
                (line, at)
            }
            WalletEvent::ReservationExpired {
                reservation,
                amount,
                captured,
                expires_at,
                at,
                ..
            } => {
                let purpose = Self::purpose_of(db, event, &wallet_id, &reservation).await?;
                Self::close_or_capture(db, event, &wallet_id, &reservation, captured, amount, "expired", Some(at))
                    .await?;
                let line = Line {
                    kind: "expire",
                    reference: Some(reservation.clone()),
                    reason: format!(
                        "reservation {reservation} expired at {} ({captured} captured)",
                        expires_at.to_rfc3339()
                    ),
                    feature: purpose,
                    amount,
                };
                (line, at)
            }
            WalletEvent::TokensRefunded {
                reference,
                debit,
                amount,
                at,
                ..
            } => {
                let feature = Self::feature_of(db, event, &wallet_id, &debit).await?;
                let why = refund_reason(&reference).unwrap_or("refund");
                let reason = format!(
                    "{why} (refund of {debit}, {})",
                    feature.as_deref().unwrap_or("no feature")
                );
                (
                    Line {
                        kind: "refund",
                        reference: Some(reference),
                        feature,
                        reason,
                        amount,
                    },
                    at,
                )
            }
            WalletEvent::TokensTransferredOut {
                reference,
                to_wallet,
                amount,
                at,
                ..
            } => (
                Line {
                    kind: "transfer_out",
                    reference: Some(reference),
                    feature: None,
                    reason: format!("transfer to {to_wallet}"),
                    amount,
                },
                at,
            ),
            WalletEvent::TokensTransferredIn {
                reference,
                from_wallet,
                amount,
                at,
                ..
            } => (
                Line {
                    kind: "transfer_in",
                    reference: Some(reference),
                    feature: None,
                    reason: format!("transfer from {from_wallet}"),
                    amount,
                },
                at,
            ),
            WalletEvent::ThresholdsConfigured {
                reference,
                low_balance_alert,
                auto_refill,
                at,
                ..
            } => {
                let alert = low_balance_alert.map_or("none".to_string(), |t| t.to_string());
                let refill = auto_refill.map_or("none".to_string(), |r| format!("{} below {}", r.amount, r.threshold));
                (
                    Line {
                        kind: "thresholds",
                        reference: Some(reference),
                        feature: None,
                        reason: format!("thresholds set: alert below {alert}, auto-refill {refill}"),
                        amount: 0,
                    },
                    at,
                )
            }
            WalletEvent::LowBalanceAlerted {
                trigger,
                threshold,
                at,
                ..
            } => (
                Line {
                    kind: "low_balance_alert",
                    reference: Some(trigger.clone()),
                    feature: None,
                    reason: format!("available fell below {threshold} after {trigger}"),
                    amount: 0,
                },
                at,
            ),
            WalletEvent::AutoRefillRequested {
                trigger,
                threshold,
                amount,
                purchase_reference,
                at,
                ..
            } => (
                Line {
                    kind: "auto_refill_requested",
                    reference: Some(purchase_reference.clone()),
                    feature: None,
                    reason: format!(
                        "auto-refill of {amount} requested as {purchase_reference}: available fell below {threshold} after {trigger}"
                    ),
                    amount,
                },
                at,
            ),
        };
        sqlx::query(
            "INSERT INTO wallet_ledger (tenant_id, global_position, wallet_id, kind, reference, feature, reason, amount,
                    balance_change, postings, balance, reserved, available, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (tenant_id, global_position) DO NOTHING",
        )
        .bind(&event.tenant_id)
        .bind(event.global_position)
        .bind(&wallet_id)
        .bind(line.kind)
        .bind(&line.reference)
        .bind(&line.feature)
        .bind(&line.reason)
        .bind(line.amount)
        .bind(balance_change)
        .bind(postings)
        .bind(balances.balance)
        .bind(balances.reserved)
        .bind(balances.available)
        .bind(at)
        .execute(&mut *db)
        .await?;
        let (parent_id, opened_at) = match opened {
            Some((parent, at)) => (parent, Some(at)),
            None => (None, None),
        };
        sqlx::query(
            "INSERT INTO wallet_balances AS w (tenant_id, wallet_id, parent_id, balance, reserved, available, opened_at,
                    updated_at, last_position)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant_id, wallet_id) DO UPDATE SET
                    parent_id = coalesce(EXCLUDED.parent_id, w.parent_id),
                    opened_at = coalesce(EXCLUDED.opened_at, w.opened_at),
                    balance = EXCLUDED.balance, reserved = EXCLUDED.reserved, available = EXCLUDED.available,
                    updated_at = EXCLUDED.updated_at, last_position = EXCLUDED.last_position
              WHERE w.last_position < EXCLUDED.last_position",
        )
        .bind(&event.tenant_id)
        .bind(&wallet_id)
        .bind(parent_id)
        .bind(balances.balance)
        .bind(balances.reserved)
        .bind(balances.available)
        .bind(opened_at)
        .bind(at)
        .bind(event.global_position)
        .execute(&mut *db)
        .await?;
        Ok(())
    }
}

/// One wallet's balances.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WalletBalanceRow {
    pub wallet_id: String,
    pub parent_id: Option<String>,
    pub balance: i64,
    pub reserved: i64,
    pub available: i64,
    pub opened_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// One wallet of the tenant.
pub async fn balance(
    pool: &PgPool,
    tenant: &TenantId,
    wallet_id: &str,
) -> Result<Option<WalletBalanceRow>, sqlx::Error> {
    Ok(balance_rows(pool, tenant, Some(wallet_id), None, 1).await?.pop())
}

/// One tenant's wallets, the main wallet first, then sub-wallets by id: `first` (1 to 100)
/// after the cursor `after`.
pub async fn list_balances(
    pool: &PgPool,
    tenant: &TenantId,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<WalletBalanceRow>, BadCursor>, sqlx::Error> {
    let after = match after.map(read_cursor::<i32, String>).transpose() {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let rows = balance_rows(pool, tenant, None, after, first + 1).await?;
    Ok(Ok(Page::from_rows(rows, first, |r| {
        cursor(i32::from(r.parent_id.is_some()), &r.wallet_id)
    })))
}

/// Wallet balances in list order (main first, then by id), after `(rank, id)`, at most `limit`.
async fn balance_rows(
    pool: &PgPool,
    tenant: &TenantId,
    wallet_id: Option<&str>,
    after: Option<(i32, String)>,
    limit: i64,
) -> Result<Vec<WalletBalanceRow>, sqlx::Error> {
    let (after_rank, after_id) = after.unzip();
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT wallet_id, parent_id, balance, reserved, available, opened_at, updated_at
           FROM wallet_balances
          WHERE tenant_id = $1 AND ($2::text IS NULL OR wallet_id = $2)
            AND ($3::int IS NULL OR ((parent_id IS NOT NULL)::int, wallet_id) > ($3, $4))
          ORDER BY parent_id IS NOT NULL, wallet_id
          LIMIT $5",
    )
    .bind(tenant.as_str())
    .bind(wallet_id)
    .bind(after_rank)
    .bind(after_id)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(WalletBalanceRow {
                wallet_id: r.try_get("wallet_id")?,
                parent_id: r.try_get("parent_id")?,
                balance: r.try_get("balance")?,
                reserved: r.try_get("reserved")?,
                available: r.try_get("available")?,
                opened_at: r.try_get("opened_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .collect()
}

/// One ledger line: an operation on a wallet with its postings and the balances after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LedgerRow {
    /// The event's log position (also the page cursor).
    pub position: i64,
    pub wallet_id: String,
    pub kind: String,
    pub reference: Option<String>,
    pub feature: Option<String>,
    pub reason: String,
    pub amount: i64,
    pub balance_change: i64,
    /// `[{"account", "amount"}]`, summing to zero.
    pub postings: Value,
    /// The running balance after this line.
    pub balance: i64,
    pub reserved: i64,
    pub available: i64,
    pub at: DateTime<Utc>,
}

/// What a ledger page selects.
#[derive(Debug, Clone, Default)]
pub struct LedgerFilter {
    pub wallet_id: Option<String>,
    pub kind: Option<String>,
    /// Lines at or after.
    pub from: Option<DateTime<Utc>>,
    /// Lines before.
    pub to: Option<DateTime<Utc>>,
}

/// A page of ledger lines, oldest first.
#[derive(Debug, Clone)]
pub struct LedgerPage {
    pub rows: Vec<LedgerRow>,
    pub has_next_page: bool,
}

/// The tenant's ledger lines matching `filter`, oldest first, `first` of them after the line
/// at position `after`.
pub async fn ledger(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &LedgerFilter,
    first: i64,
    after: Option<i64>,
) -> Result<LedgerPage, sqlx::Error> {
    let first = first.clamp(1, 500);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT global_position, wallet_id, kind, reference, feature, reason, amount, balance_change, postings,
                balance, reserved, available, at
           FROM wallet_ledger
          WHERE tenant_id = $1
            AND ($2::text IS NULL OR wallet_id = $2)
            AND ($3::text IS NULL OR kind = $3)
            AND ($4::timestamptz IS NULL OR at >= $4)
            AND ($5::timestamptz IS NULL OR at < $5)
            AND ($6::bigint IS NULL OR global_position > $6)
          ORDER BY global_position
          LIMIT $7",
    )
    .bind(tenant.as_str())
    .bind(filter.wallet_id.as_deref())
    .bind(filter.kind.as_deref())
    .bind(filter.from)
    .bind(filter.to)
    .bind(after)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut rows = rows
        .iter()
        .map(|r| {
            Ok(LedgerRow {
                position: r.try_get("global_position")?,
                wallet_id: r.try_get("wallet_id")?,
                kind: r.try_get("kind")?,
                reference: r.try_get("reference")?,
                feature: r.try_get("feature")?,
                reason: r.try_get("reason")?,
                amount: r.try_get("amount")?,
                balance_change: r.try_get("balance_change")?,
                postings: r.try_get("postings")?,
                balance: r.try_get("balance")?,
                reserved: r.try_get("reserved")?,
                available: r.try_get("available")?,
                at: r.try_get("at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let has_next_page = rows.len() as i64 > first;
    rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
    Ok(LedgerPage { rows, has_next_page })
}

/// Consumption of one feature on one day (UTC), in milli-tokens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageRow {
    pub feature: String,
    pub day: NaiveDate,
    /// Debits and captures.
    pub charged: i64,
    pub refunded: i64,
    /// `charged − refunded`.
    pub net: i64,
    /// How many debits and captures.
    pub operations: i64,
}

/// The tenant's usage per feature per day (UTC) for lines in `[from, to)`, every wallet, by
/// day then feature: `first` (1 to 500) after the cursor `after`.
pub async fn usage(
    pool: &PgPool,
    tenant: &TenantId,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<UsageRow>, BadCursor>, sqlx::Error> {
    let (after_day, after_feature) = match after.map(read_cursor::<NaiveDate, String>).transpose() {
        Ok(a) => a.unzip(),
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 500);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT feature, (at AT TIME ZONE 'UTC')::date AS day,
                coalesce(sum(amount) FILTER (WHERE kind IN ('debit', 'capture')), 0)::bigint AS charged,
                coalesce(sum(amount) FILTER (WHERE kind = 'refund'), 0)::bigint AS refunded,
                count(*) FILTER (WHERE kind IN ('debit', 'capture')) AS operations
           FROM wallet_ledger
          WHERE tenant_id = $1 AND feature IS NOT NULL AND kind IN ('debit', 'capture', 'refund')
            AND ($2::timestamptz IS NULL OR at >= $2)
            AND ($3::timestamptz IS NULL OR at < $3)
            AND ($4::date IS NULL OR at >= $4::date::timestamp AT TIME ZONE 'UTC')
          GROUP BY 1, 2
         HAVING $4::date IS NULL OR ((at AT TIME ZONE 'UTC')::date, feature) > ($4, $5)
          ORDER BY 2, 1
          LIMIT $6",
    )
    .bind(tenant.as_str())
    .bind(from)
    .bind(to)
    .bind(after_day)
    .bind(after_feature)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let rows = rows
        .iter()
        .map(|r| {
            let charged: i64 = r.try_get("charged")?;
            let refunded: i64 = r.try_get("refunded")?;
            Ok(UsageRow {
                feature: r.try_get("feature")?,
                day: r.try_get("day")?,
                charged,
                refunded,
                net: charged - refunded,
                operations: r.try_get("operations")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Ok(Page::from_rows(rows, first, |r| cursor(r.day, &r.feature))))
}

/// One reservation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReservationRow {
    pub wallet_id: String,
    pub reservation: String,
    pub purpose: String,
    pub amount: i64,
    pub captured: i64,
    pub released: i64,
    /// `amount − captured − released`.
    pub remaining: i64,
    pub expires_at: DateTime<Utc>,
    /// open, captured, released or expired.
    pub state: String,
    pub reserved_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// The tenant's reservations, soonest expiry first: only open ones unless `all`.
pub async fn reservations(
    pool: &PgPool,
    tenant: &TenantId,
    all: bool,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<ReservationRow>, BadCursor>, sqlx::Error> {
    let (after_at, after_id) = match after_time(after) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT wallet_id, reservation, purpose, amount, captured, released, expires_at, state, reserved_at, closed_at
           FROM wallet_reservations
          WHERE tenant_id = $1 AND ($2 OR state = 'open')
            AND ($3::timestamptz IS NULL OR (expires_at, wallet_id || chr(31) || reservation) > ($3, $4))
          ORDER BY expires_at, wallet_id || chr(31) || reservation
          LIMIT $5",
    )
    .bind(tenant.as_str())
    .bind(all)
    .bind(after_at)
    .bind(after_id)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let rows = rows
        .iter()
        .map(|r| {
            let amount: i64 = r.try_get("amount")?;
            let captured: i64 = r.try_get("captured")?;
            let released: i64 = r.try_get("released")?;
            Ok(ReservationRow {
                wallet_id: r.try_get("wallet_id")?,
                reservation: r.try_get("reservation")?,
                purpose: r.try_get("purpose")?,
                amount,
                captured,
                released,
                remaining: amount - captured - released,
                expires_at: r.try_get("expires_at")?,
                state: r.try_get("state")?,
                reserved_at: r.try_get("reserved_at")?,
                closed_at: r.try_get("closed_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    // A reservation is named by its wallet and reference (two wallets may reuse a reference).
    Ok(Ok(Page::from_rows(rows, first, |r| {
        time_cursor(r.expires_at, format!("{}\u{1f}{}", r.wallet_id, r.reservation))
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refund_reference_names_its_reason() {
        assert_eq!(
            refund_reason("refund:provider_refused:message:ct_1:k"),
            Some("provider_refused")
        );
        assert_eq!(refund_reason("refund::x"), None);
        assert_eq!(refund_reason("r-1"), None);
    }
}
