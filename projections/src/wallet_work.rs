//! The wallet process manager's work lists and the `wallet_alerts` read model, written only by
//! [`WalletWorkProjector`] from `Wallet` events (migrations 0053 and 0054), worked by
//! `chronicle_commands::wallet_sweeper::WalletSweeper`:
//!
//! - `wallet_open_transfers`: every `TokensTransferredOut` stays `open` until the target's
//!   `TokensTransferredIn` with the same reference lands (`done`); the sweeper runs missing
//!   second halves;
//! - `wallet_open_reservations`: every reservation with its `expires_at` stays `open` until it
//!   is fully captured, released or expired (`closed`); the sweeper expires the past-due ones;
//! - `wallet_alert_feed`: every `LowBalanceAlerted` / `AutoRefillRequested`, which the sweeper
//!   copies into its own `wallet_alert_work` and raises once to the operators;
//! - `wallet_alerts` (read model, row-level security): the alerts and auto-refill requests as
//!   finance sees them ([`alerts`]). An auto-refill shows `pending` with its purchase reference
//!   (`refill:<trigger>`) and `fulfilled` once a `TokensPurchased` with that reference lands on
//!   the same wallet.
//!
//! The projector reads the log; the write side only reads these tables (the layout rule:
//! `projections` is the only reader of the log across streams). Every write is idempotent
//! (inserts keyed by the event, state changes that are pure functions of the event), so a
//! batch applied twice changes nothing. A rebuild clears them all; the sweeper's
//! `wallet_alert_work` is its own, so an alert that was raised is not raised again (decision
//! 0013).

use chronicle_domain::tenant::TenantId;
use chronicle_domain::wallet::WalletEvent;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

use crate::log::StoredEvent;
use crate::runtime::{Fold, ProjectionError};
use crate::shared::{begin_for_tenant, payload};

/// The projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "wallet_work";

/// The event types read.
const EVENT_TYPES: &[&str] = &[
    "TokensPurchased",
    "TokensReserved",
    "ReservationCaptured",
    "ReservationReleased",
    "ReservationExpired",
    "TokensTransferredOut",
    "TokensTransferredIn",
    "LowBalanceAlerted",
    "AutoRefillRequested",
];

/// Folds `Wallet` events into the sweeper's work lists and `wallet_alerts`.
#[derive(Debug, Default)]
pub struct WalletWorkProjector;

impl WalletWorkProjector {
    async fn close_reservation(
        db: &mut PgConnection,
        event: &StoredEvent,
        wallet_id: &str,
        reservation: &str,
    ) -> Result<(), ProjectionError> {
        sqlx::query(
            "UPDATE wallet_open_reservations SET state = 'closed'
              WHERE tenant_id = $1 AND wallet_id = $2 AND reservation = $3",
        )
        .bind(&event.tenant_id)
        .bind(wallet_id)
        .bind(reservation)
        .execute(&mut *db)
        .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn alert(
        db: &mut PgConnection,
        event: &StoredEvent,
        wallet_id: &str,
        kind: &str,
        trigger: &str,
        threshold: i64,
        available: i64,
        refill: Option<(i64, &str)>,
        at: DateTime<Utc>,
    ) -> Result<(), ProjectionError> {
        sqlx::query(
            "INSERT INTO wallet_alert_feed (tenant_id, position, wallet_id, kind, threshold, available)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, position) DO NOTHING",
        )
        .bind(&event.tenant_id)
        .bind(event.global_position)
        .bind(wallet_id)
        .bind(kind)
        .bind(threshold)
        .bind(available)
        .execute(&mut *db)
        .await?;
        let status = if refill.is_some() { "pending" } else { "raised" };
        sqlx::query(
            "INSERT INTO wallet_alerts (tenant_id, global_position, wallet_id, kind, trigger, threshold, available,
                    refill_amount, purchase_reference, status, at, last_position)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $2)
             ON CONFLICT (tenant_id, global_position) DO NOTHING",
        )
        .bind(&event.tenant_id)
        .bind(event.global_position)
        .bind(wallet_id)
        .bind(kind)
        .bind(trigger)
        .bind(threshold)
        .bind(available)
        .bind(refill.map(|r| r.0))
        .bind(refill.map(|r| r.1))
        .bind(status)
        .bind(at)
        .execute(&mut *db)
        .await?;
        Ok(())
    }
}

impl Fold for WalletWorkProjector {
    const NAME: &'static str = NAME;
    const EVENT_TYPES: &'static [&'static str] = EVENT_TYPES;
    const AGGREGATES: &'static [&'static str] = &["Wallet"];
    const TABLES: &'static [&'static str] = &[
        "wallet_open_transfers",
        "wallet_open_reservations",
        "wallet_alerts",
        "wallet_alert_feed",
    ];
    const FEEDS: &'static [&'static str] = &["wallet_alert_feed"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let parsed: WalletEvent = payload(event)?;
        let prefix = format!("{}:wallet_", event.tenant_id);
        let Some(wallet_id) = event.aggregate_id.strip_prefix(&prefix).map(str::to_string) else {
            return Err(ProjectionError::Handler {
                position: event.global_position,
                reason: format!("{} is not a wallet stream", event.aggregate_id),
            });
        };
        let available = parsed.balances().available;
        match parsed {
            WalletEvent::TokensTransferredOut {
                reference,
                to_wallet,
                amount,
                at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO wallet_open_transfers (tenant_id, from_wallet, reference, to_wallet, amount, out_at,
                            event_position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (tenant_id, from_wallet, reference) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&wallet_id)
                .bind(&reference)
                .bind(&to_wallet)
                .bind(amount)
                .bind(at)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
            }
            WalletEvent::TokensTransferredIn {
                reference, from_wallet, ..
            } => {
                sqlx::query(
                    "UPDATE wallet_open_transfers SET state = 'done'
                      WHERE tenant_id = $1 AND from_wallet = $2 AND reference = $3 AND to_wallet = $4",
                )
                .bind(&event.tenant_id)
                .bind(&from_wallet)
                .bind(&reference)
                .bind(&wallet_id)
                .execute(&mut *db)
                .await?;
            }
            WalletEvent::TokensReserved {
                reference, expires_at, ..
            } => {
                sqlx::query(
                    "INSERT INTO wallet_open_reservations (tenant_id, wallet_id, reservation, expires_at, event_position)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (tenant_id, wallet_id, reservation) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&wallet_id)
                .bind(&reference)
                .bind(expires_at)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
            }
            WalletEvent::ReservationCaptured {
                reservation, remaining, ..
            } => {
                if remaining == 0 {
                    Self::close_reservation(db, event, &wallet_id, &reservation).await?;
                }
            }
            WalletEvent::ReservationReleased { reservation, .. }
            | WalletEvent::ReservationExpired { reservation, .. } => {
                Self::close_reservation(db, event, &wallet_id, &reservation).await?;
            }
            WalletEvent::LowBalanceAlerted {
                trigger, threshold, at, ..
            } => {
                Self::alert(
                    db,
                    event,
                    &wallet_id,
                    "low_balance_alert",
                    &trigger,
                    threshold,
                    available,
                    None,
                    at,
                )
                .await?;
            }
            WalletEvent::AutoRefillRequested {
                trigger,
                threshold,
                amount,
                purchase_reference,
                at,
                ..
            } => {
                Self::alert(
                    db,
                    event,
                    &wallet_id,
                    "auto_refill",
                    &trigger,
                    threshold,
                    available,
                    Some((amount, &purchase_reference)),
                    at,
                )
                .await?;
            }
            WalletEvent::TokensPurchased {
                reference, amount, at, ..
            } => {
                if reference.starts_with("refill:") {
                    sqlx::query(
                        "UPDATE wallet_alerts SET status = 'fulfilled', fulfilled_amount = $4, fulfilled_at = $5,
                                last_position = $6
                          WHERE tenant_id = $1 AND wallet_id = $2 AND purchase_reference = $3
                            AND status = 'pending' AND last_position < $6",
                    )
                    .bind(&event.tenant_id)
                    .bind(&wallet_id)
                    .bind(&reference)
                    .bind(amount)
                    .bind(at)
                    .bind(event.global_position)
                    .execute(&mut *db)
                    .await?;
                }
            }
            WalletEvent::WalletOpened { .. }
            | WalletEvent::TokensDebited { .. }
            | WalletEvent::DebitRefused { .. }
            | WalletEvent::TokensRefunded { .. }
            | WalletEvent::ThresholdsConfigured { .. } => {}
        }
        Ok(())
    }
}

/// A low-balance alert or an auto-refill request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertRow {
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
    /// Auto-refills: the amount to buy.
    pub refill_amount: Option<i64>,
    /// Auto-refills: the purchase reference to buy it under (`refill:<trigger>`).
    pub purchase_reference: Option<String>,
    /// `raised` (alerts), `pending` or `fulfilled` (auto-refills).
    pub status: String,
    pub fulfilled_amount: Option<i64>,
    pub fulfilled_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

/// A page of alerts, newest first.
#[derive(Debug, Clone)]
pub struct AlertPage {
    pub rows: Vec<AlertRow>,
    pub has_next_page: bool,
}

/// The tenant's alerts and auto-refill requests, newest first, `first` of them after (older
/// than) the one at position `after`.
pub async fn alerts(
    pool: &PgPool,
    tenant: &TenantId,
    first: i64,
    after: Option<i64>,
) -> Result<AlertPage, sqlx::Error> {
    let first = first.clamp(1, 500);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT global_position, wallet_id, kind, trigger, threshold, available, refill_amount, purchase_reference,
                status, fulfilled_amount, fulfilled_at, at
           FROM wallet_alerts
          WHERE tenant_id = $1 AND ($2::bigint IS NULL OR global_position < $2)
          ORDER BY global_position DESC
          LIMIT $3",
    )
    .bind(tenant.as_str())
    .bind(after)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut rows = rows
        .iter()
        .map(|r| {
            Ok(AlertRow {
                position: r.try_get("global_position")?,
                wallet_id: r.try_get("wallet_id")?,
                kind: r.try_get("kind")?,
                trigger: r.try_get("trigger")?,
                threshold: r.try_get("threshold")?,
                available: r.try_get("available")?,
                refill_amount: r.try_get("refill_amount")?,
                purchase_reference: r.try_get("purchase_reference")?,
                status: r.try_get("status")?,
                fulfilled_amount: r.try_get("fulfilled_amount")?,
                fulfilled_at: r.try_get("fulfilled_at")?,
                at: r.try_get("at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let has_next_page = rows.len() as i64 > first;
    rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
    Ok(AlertPage { rows, has_next_page })
}
