//! The wallet process manager's worker: [`WalletSweeper`] works the lists the `wallet_work`
//! projector keeps (`chronicle_projections::wallet_work`, migration 0053) with the shared
//! polling loop ([`crate::workers`]), by the database's clock. It never reads the log: the
//! projector does, and the sweeper only writes commands.
//!
//! - Transfers: an open `TokensTransferredOut` whose `TokensTransferredIn` has not landed
//!   after a grace period ([`DEFAULT_TRANSFER_GRACE`], so the inline retry of
//!   [`WalletService::transfer`] goes first) gets its second half, `TransferIn` under the same
//!   reference. The target's idempotency by reference makes a repeated pass, two sweepers or a
//!   race with the inline retry credit it once. A refused second half is kept (`refused`) with
//!   the reason and logged as an error: the tokens stay in transit for an operator.
//! - Expiries: each wallet with an open reservation past its expiry by the database's clock
//!   gets `ExpireReservations { at: <database now> }`; the aggregate releases each expired
//!   reservation once (`ReservationExpired`), so the read models show it closed without
//!   waiting for the wallet's next operation.
//! - Alerts: each `LowBalanceAlerted` / `AutoRefillRequested` is raised once to the operators
//!   (a structured warning carrying tenant, wallet, kind, threshold and available; no personal
//!   data) and marked `raised`. Finance sees them in the `wallet_alerts` read model (GraphQL
//!   `walletAlerts`); an auto-refill stays `pending` there until finance buys the amount under
//!   the request's purchase reference (`refill:<trigger>`), since no stored payment method
//!   exists to charge.
//!
//! Rows are claimed with `FOR UPDATE SKIP LOCKED` and a one-minute lease (`not_before`), which
//! also spaces retries after a transient failure.

use std::collections::BTreeMap;
use std::time::Duration;

use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use tracing::Instrument;

use crate::dispatch::Commands;
use crate::error::CommandError;
use crate::wallets::WalletService;
use crate::workers::{Admission, LeaseClaim};

/// How long a transfer's second half is left to the inline retry before the sweeper runs it.
pub const DEFAULT_TRANSFER_GRACE: Duration = Duration::from_secs(30);

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalletSweepPass {
    /// Transfers whose second half the sweeper ran (or found done).
    pub transfers_completed: u32,
    /// Wallets sent `ExpireReservations`.
    pub wallets_expired: u32,
    /// Alerts and auto-refill requests raised.
    pub alerts_raised: u32,
    /// Rows refused by an aggregate (kept with the reason).
    pub refused: u32,
    /// Rows left for a later pass after a transient failure.
    pub retry: u32,
}

impl WalletSweepPass {
    /// Rows (or wallets) worked.
    pub fn worked(&self) -> u32 {
        self.transfers_completed + self.wallets_expired + self.alerts_raised + self.refused + self.retry
    }

    fn add(&mut self, other: Self) {
        self.transfers_completed += other.transfers_completed;
        self.wallets_expired += other.wallets_expired;
        self.alerts_raised += other.alerts_raised;
        self.refused += other.refused;
        self.retry += other.retry;
    }
}

/// The wallets' sweeper (see the module docs).
#[derive(Clone, Debug)]
pub struct WalletSweeper {
    pool: PgPool,
    wallets: WalletService,
    transfer_grace: Duration,
    /// Alerts, from the projector's `wallet_alert_feed` into `wallet_alert_work`.
    alerts: Admission,
}

fn system_metadata(tenant: &str, correlation: String) -> Result<CommandMetadata, CommandError> {
    let tenant_id = TenantId::parse(tenant).map_err(|e| CommandError::InvalidInput(e.to_string()))?;
    Ok(CommandMetadata {
        tenant_id,
        actor: Actor::System {
            component: "wallet-sweeper".into(),
        },
        causation_id: correlation.clone(),
        correlation_id: correlation,
    })
}

/// The sweeper's names in `work_leases`.
const TRANSFER_WORKER: &str = "wallet-transfers";
const EXPIRY_WORKER: &str = "wallet-expiries";

impl WalletSweeper {
    /// A sweeper over `commands`' pool, with the [`DEFAULT_TRANSFER_GRACE`].
    pub fn new(commands: Commands) -> Self {
        Self {
            pool: commands.pool().clone(),
            wallets: WalletService::new(commands),
            transfer_grace: DEFAULT_TRANSFER_GRACE,
            alerts: Admission::new(
                "wallet_alert_feed",
                "INSERT INTO wallet_alert_work (tenant_id, global_position, wallet_id, kind, threshold, available)
                 SELECT tenant_id, position, wallet_id, kind, threshold, available FROM new ORDER BY position
                 ON CONFLICT (tenant_id, global_position) DO NOTHING",
            ),
        }
    }

    /// The same sweeper, finishing transfers whose source half is at least `grace` old.
    pub fn with_transfer_grace(mut self, grace: Duration) -> Self {
        self.transfer_grace = grace;
        self
    }

    /// One pass: up to `limit` transfers, due reservations and alerts each.
    pub async fn run_once(&self, limit: i64) -> Result<WalletSweepPass, CommandError> {
        let mut pass = WalletSweepPass::default();
        self.sweep_transfers(limit, &mut pass).await?;
        self.sweep_expiries(limit, &mut pass).await?;
        self.sweep_alerts(limit, &mut pass).await?;
        Ok(pass)
    }

    /// Runs passes until one finds nothing but retries.
    pub async fn drain(&self) -> Result<WalletSweepPass, CommandError> {
        let mut total = WalletSweepPass::default();
        loop {
            let pass = self.run_once(100).await?;
            total.add(pass);
            if pass.worked() == pass.retry {
                return Ok(total);
            }
        }
    }

    /// Runs until `shutdown` turns true, a pass every `poll` (at once after a busy one).
    pub async fn run(self, poll: Duration, shutdown: tokio::sync::watch::Receiver<bool>) {
        crate::workers::poll_until_shutdown("wallet-sweeper", poll, shutdown, || async {
            let pass = self.run_once(100).await?;
            if pass.worked() > 0 {
                tracing::info!(
                    transfers_completed = pass.transfers_completed,
                    wallets_expired = pass.wallets_expired,
                    alerts_raised = pass.alerts_raised,
                    refused = pass.refused,
                    retry = pass.retry,
                    "wallet sweeper pass"
                );
            }
            Ok(pass.worked() > pass.retry && pass.worked() >= 100)
        })
        .await
    }

    async fn sweep_transfers(&self, limit: i64, pass: &mut WalletSweepPass) -> Result<(), CommandError> {
        let grace = self.transfer_grace.as_secs_f64();
        let rows = LeaseClaim::on_feed(
            TRANSFER_WORKER,
            "wallet_open_transfers",
            "tenant_id, from_wallet, reference",
            None,
            "state = 'open' AND out_at <= now() - make_interval(secs => $2)",
            "out_at",
            "tenant_id, from_wallet, reference, to_wallet, amount",
        )
        .query()
        .bind(limit)
        .bind(grace)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let tenant: String = row.try_get("tenant_id")?;
            let from: String = row.try_get("from_wallet")?;
            let reference: String = row.try_get("reference")?;
            let to: String = row.try_get("to_wallet")?;
            let amount: i64 = row.try_get("amount")?;
            let correlation = format!("transfer:{reference}");
            let span = tracing::info_span!("wallet.transfer_sweep", tenant.id = %tenant, wallet.id = %to, correlation.id = %correlation);
            let result = async {
                let metadata = system_metadata(&tenant, correlation.clone())?;
                self.wallets
                    .transfer_in(&from, &to, &reference, amount, &metadata)
                    .await
            }
            .instrument(span)
            .await;
            // The lease (a minute) covers the time until the projector marks the row done.
            let (give_up, error) = match result {
                Ok(_) => {
                    pass.transfers_completed += 1;
                    (false, None)
                }
                Err(e @ CommandError::Rejected(_)) | Err(e @ CommandError::InvalidInput(_)) => {
                    tracing::error!(tenant.id = %tenant, wallet.reference = %reference, reason = %e,
                        "a transfer's second half was refused; the tokens stay in transit");
                    pass.refused += 1;
                    (true, Some(e.to_string()))
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %tenant, wallet.reference = %reference, reason = %e,
                        "a transfer's second half will be retried");
                    pass.retry += 1;
                    (false, Some(e.to_string()))
                }
            };
            LeaseClaim::record(
                &self.pool,
                TRANSFER_WORKER,
                &[&tenant, &from, &reference],
                error.as_deref(),
                give_up,
            )
            .await?;
        }
        Ok(())
    }

    async fn sweep_expiries(&self, limit: i64, pass: &mut WalletSweepPass) -> Result<(), CommandError> {
        let rows = LeaseClaim::on_feed(
            EXPIRY_WORKER,
            "wallet_open_reservations",
            "tenant_id, wallet_id, reservation",
            None,
            "state = 'open' AND expires_at <= now()",
            "expires_at",
            "tenant_id, wallet_id, reservation, now() AS db_now",
        )
        .query()
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        // One command per wallet: it expires every due reservation of the wallet at once.
        let mut wallets: BTreeMap<(String, String), (DateTime<Utc>, Vec<String>)> = BTreeMap::new();
        for row in rows {
            let tenant: String = row.try_get("tenant_id")?;
            let wallet_id: String = row.try_get("wallet_id")?;
            let reservation: String = row.try_get("reservation")?;
            let now: DateTime<Utc> = row.try_get("db_now")?;
            wallets
                .entry((tenant, wallet_id))
                .or_insert_with(|| (now, Vec::new()))
                .1
                .push(reservation);
        }
        for ((tenant, wallet_id), (now, reservations)) in wallets {
            let correlation = format!("reservation-sweep:{wallet_id}:{}", now.timestamp_millis());
            let span = tracing::info_span!("wallet.expiry_sweep", tenant.id = %tenant, wallet.id = %wallet_id, correlation.id = %correlation);
            let result = async {
                let metadata = system_metadata(&tenant, correlation.clone())?;
                self.wallets.expire_reservations_at(&wallet_id, now, &metadata).await
            }
            .instrument(span)
            .await;
            let error = match result {
                Ok(_) => {
                    pass.wallets_expired += 1;
                    None
                }
                Err(e @ CommandError::Rejected(_)) | Err(e @ CommandError::InvalidInput(_)) => {
                    tracing::warn!(tenant.id = %tenant, wallet.id = %wallet_id, reason = %e, "reservation expiry refused");
                    pass.refused += 1;
                    Some(e.to_string())
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %tenant, wallet.id = %wallet_id, reason = %e, "reservation expiry will be retried");
                    pass.retry += 1;
                    Some(e.to_string())
                }
            };
            // Every reservation due by `now` is closed by the command (or was already); the
            // projector records it when the events arrive, and the lease (a minute) covers the
            // time until then. A refusal is tried again after the lease.
            for reservation in &reservations {
                LeaseClaim::record(
                    &self.pool,
                    EXPIRY_WORKER,
                    &[&tenant, &wallet_id, reservation],
                    error.as_deref(),
                    false,
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn sweep_alerts(&self, limit: i64, pass: &mut WalletSweepPass) -> Result<(), CommandError> {
        self.alerts.run(&self.pool).await?;
        let rows = sqlx::query(
            "UPDATE wallet_alert_work SET state = 'raised', raised_at = now(), attempts = attempts + 1
              WHERE (tenant_id, global_position) IN (
                    SELECT tenant_id, global_position FROM wallet_alert_work
                     WHERE state = 'new' AND not_before <= now()
                     ORDER BY global_position
                     LIMIT $1
                       FOR UPDATE SKIP LOCKED)
          RETURNING tenant_id, global_position, wallet_id, kind, threshold, available",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let tenant: String = row.try_get("tenant_id")?;
            let position: i64 = row.try_get("global_position")?;
            let wallet_id: String = row.try_get("wallet_id")?;
            let kind: String = row.try_get("kind")?;
            let threshold: i64 = row.try_get("threshold")?;
            let available: i64 = row.try_get("available")?;
            tracing::warn!(
                tenant.id = %tenant,
                correlation.id = %format!("wallet-alert:{position}"),
                wallet.id = %wallet_id,
                wallet.alert = %kind,
                threshold,
                available,
                "a wallet's available balance fell below its threshold"
            );
            pass.alerts_raised += 1;
        }
        Ok(())
    }
}
