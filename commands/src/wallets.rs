//! The token wallets' write side: [`WalletService`] opens a tenant's wallets and runs every
//! wallet operation through [`Commands::wallet`], answering each with a typed outcome.
//!
//! # Wallet ids
//!
//! A wallet's stream is `<tenant>:wallet_<id>` ([`wallet_local_id`]). A tenant's MAIN wallet
//! has the id [`MAIN_WALLET`] (`main`), so its stream is `<tenant>:wallet_main`; metering
//! always charges it. Sub-wallets have any other id of 1 to 64 characters from `a-z`, `0-9`,
//! `_` and `-`, and the main wallet as their parent. Opening is idempotent: the reference of
//! an open is `open:<id>`.
//!
//! # Outcomes
//!
//! Every operation answers `Ok(`[`WalletReceipt`]`)` (the wallet's balances after it) or an
//! error. A refusal the aggregate *records* for finance (insufficient balance on a debit,
//! reservation or transfer out: a `DebitRefused` event) is `Ok` from the dispatcher; the
//! service reads the reference's outcome back from the aggregate and answers
//! `Err(CommandError::Rejected(DomainError::Wallet(WalletError::InsufficientBalance { required,
//! available })))`, code `INSUFFICIENT_BALANCE`. The same reference with the same request
//! answers the first outcome again (a refused one too: retry a refused operation under a new
//! reference).
//!
//! Write conflicts on one wallet (many callers debiting at once) are retried here beyond the
//! dispatcher's own retries: every command carries a reference the aggregate remembers, so a
//! retry can never take effect twice.
//!
//! # Transfers
//!
//! [`WalletService::transfer`] runs `TransferOut` on the source (all or nothing, refusal
//! recorded) and then `TransferIn` on the target under the same reference, retrying the
//! second half inline. A transfer whose second half is still missing (the process stopped in
//! between, or every retry failed) is finished by the wallet sweeper
//! ([`crate::wallet_sweeper::WalletSweeper`]) from the `wallet_open_transfers` work list that
//! the `wallet_work` projector keeps: the write side never scans the log across streams.
//!
//! # Expiries, alerts and auto-refills
//!
//! The same sweeper sends `ExpireReservations` (log time = the database's clock) to wallets
//! with past-due reservations, and raises low-balance alerts and auto-refill requests once.
//! An auto-refill cannot charge anything (no stored payment method exists): finance sees it
//! `pending` in `walletAlerts` and completes it with an ordinary purchase under the reference
//! the domain named (`refill:<trigger>`); the request then shows `fulfilled`.

use std::time::Duration;

use chronicle_domain::metadata::CommandMetadata;
use chronicle_domain::tenant::TenantId;
use chronicle_domain::wallet::{Balances, Wallet, WalletCommand, WalletError};
use chrono::{DateTime, Utc};

use crate::dispatch::Commands;
use crate::error::{CommandError, DomainError};

/// The id of a tenant's main wallet (stream `<tenant>:wallet_main`).
pub const MAIN_WALLET: &str = "main";

/// Conflict retries on top of the dispatcher's own, with a jittered backoff.
const EXTRA_CONFLICT_RETRIES: u32 = 40;

/// Attempts of a transfer's second half before it is left to the wallet sweeper.
const TRANSFER_IN_ATTEMPTS: u32 = 5;

/// The local stream id of the wallet `wallet_id` (`wallet_<id>`).
pub fn wallet_local_id(wallet_id: &str) -> String {
    format!("wallet_{wallet_id}")
}

/// Checks a wallet id: 1 to 64 characters from `a-z`, `0-9`, `_`, `-`.
pub fn valid_wallet_id(wallet_id: &str) -> Result<&str, CommandError> {
    let ok = !wallet_id.is_empty()
        && wallet_id.len() <= 64
        && wallet_id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(wallet_id)
    } else {
        Err(CommandError::InvalidInput(format!(
            "{wallet_id:?} is not a wallet id (1 to 64 of a-z, 0-9, _ and -)"
        )))
    }
}

/// The outcome of a wallet operation that took effect (or had taken effect under the same
/// reference): the wallet's balances after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletReceipt {
    pub wallet_id: String,
    pub reference: String,
    pub balances: Balances,
}

/// The wallets' write side over a [`Commands`] dispatcher.
#[derive(Debug, Clone)]
pub struct WalletService {
    commands: Commands,
}

impl WalletService {
    pub fn new(commands: Commands) -> Self {
        Self { commands }
    }

    /// The dispatcher this service writes through.
    pub fn commands(&self) -> &Commands {
        &self.commands
    }

    /// Opens the tenant's main wallet unless it is open already (reference `open:main`).
    pub async fn ensure_main(&self, metadata: &CommandMetadata) -> Result<WalletReceipt, CommandError> {
        let local = wallet_local_id(MAIN_WALLET);
        let wallet = self.commands.load_wallet(&metadata.tenant_id, &local).await?;
        if wallet.wallet_id().is_some() {
            return Ok(WalletReceipt {
                wallet_id: MAIN_WALLET.to_string(),
                reference: format!("open:{MAIN_WALLET}"),
                balances: wallet.balances(),
            });
        }
        let opened = self.open(MAIN_WALLET, None, metadata).await;
        match opened {
            // Opened by someone else in between: a different reference cannot have been used,
            // but stay safe.
            Err(CommandError::Rejected(DomainError::Wallet(WalletError::WalletAlreadyOpen { .. }))) => {
                let wallet = self.commands.load_wallet(&metadata.tenant_id, &local).await?;
                Ok(WalletReceipt {
                    wallet_id: MAIN_WALLET.to_string(),
                    reference: format!("open:{MAIN_WALLET}"),
                    balances: wallet.balances(),
                })
            }
            other => other,
        }
    }

    /// Opens a sub-wallet of the tenant's main wallet (opening the main wallet first if needed).
    pub async fn open_sub_wallet(
        &self,
        wallet_id: &str,
        metadata: &CommandMetadata,
    ) -> Result<WalletReceipt, CommandError> {
        let wallet_id = valid_wallet_id(wallet_id)?;
        if wallet_id == MAIN_WALLET {
            return Err(CommandError::Rejected(WalletError::SubWalletOfItself.into()));
        }
        self.ensure_main(metadata).await?;
        self.open(wallet_id, Some(MAIN_WALLET.to_string()), metadata).await
    }

    async fn open(
        &self,
        wallet_id: &str,
        parent_id: Option<String>,
        metadata: &CommandMetadata,
    ) -> Result<WalletReceipt, CommandError> {
        let reference = format!("open:{wallet_id}");
        let command = WalletCommand::Open {
            reference: reference.clone(),
            wallet_id: wallet_id.to_string(),
            parent_id,
            at: Utc::now(),
        };
        self.run(wallet_id, &reference, command, metadata).await
    }

    /// Credits a confirmed payment (`reference`: the provider's or finance's, credited once).
    pub async fn purchase(
        &self,
        wallet_id: &str,
        reference: &str,
        amount: i64,
        source: &str,
        metadata: &CommandMetadata,
    ) -> Result<WalletReceipt, CommandError> {
        let command = WalletCommand::Purchase {
            reference: reference.to_string(),
            amount,
            source: source.to_string(),
            at: Utc::now(),
        };
        self.run(wallet_id, reference, command, metadata).await
    }

    /// Pays `amount` for a billable `feature`; `INSUFFICIENT_BALANCE` (recorded) if it can't.
    pub async fn debit(
        &self,
        wallet_id: &str,
        reference: &str,
        amount: i64,
        feature: &str,
        metadata: &CommandMetadata,
    ) -> Result<WalletReceipt, CommandError> {
        let command = WalletCommand::Debit {
            reference: reference.to_string(),
            amount,
            feature: feature.to_string(),
            at: Utc::now(),
        };
        self.run(wallet_id, reference, command, metadata).await
    }

    /// Holds `amount` until `expires_at` (log time); `reference` names the reservation. The
    /// `purpose` should be the billable feature: usage attributes captures to it.
    pub async fn reserve(
        &self,
        wallet_id: &str,
        reference: &str,
        amount: i64,
        expires_at: DateTime<Utc>,
        purpose: &str,
        metadata: &CommandMetadata,
    ) -> Result<WalletReceipt, CommandError> {
        let command = WalletCommand::Reserve {
            reference: reference.to_string(),
            amount,
            expires_at,
            purpose: purpose.to_string(),
            at: Utc::now(),
        };
        self.run(wallet_id, reference, command, metadata).await
    }

    /// Turns `amount` of the reservation `reservation` into a debit.
    pub async fn capture(
        &self,
        wallet_id: &str,
        reference: &str,
        reservation: &str,
        amount: i64,
        metadata: &CommandMetadata,
    ) -> Result<WalletReceipt, CommandError> {
        let command = WalletCommand::Capture {
            reference: reference.to_string(),
            reservation: reservation.to_string(),
            amount,
            at: Utc::now(),
        };
        self.run(wallet_id, reference, command, metadata).await
    }

    /// Returns what is left of the reservation `reservation` and closes it.
    pub async fn release(
        &self,
        wallet_id: &str,
        reference: &str,
        reservation: &str,
        metadata: &CommandMetadata,
    ) -> Result<WalletReceipt, CommandError> {
        let command = WalletCommand::Release {
            reference: reference.to_string(),
            reservation: reservation.to_string(),
            at: Utc::now(),
        };
        self.run(wallet_id, reference, command, metadata).await
    }

    /// Returns `amount` of the debit or capture `debit` (cumulatively at most what it charged).
    /// A reference `refund:<why>:…` shows `<why>` as the ledger line's reason.
    pub async fn refund(
        &self,
        wallet_id: &str,
        reference: &str,
        debit: &str,
        amount: i64,
        metadata: &CommandMetadata,
    ) -> Result<WalletReceipt, CommandError> {
        let command = WalletCommand::Refund {
            reference: reference.to_string(),
            debit: debit.to_string(),
            amount,
            at: Utc::now(),
        };
        self.run(wallet_id, reference, command, metadata).await
    }

    /// Sets (or clears) the low-balance alert and auto-refill thresholds.
    pub async fn configure_thresholds(
        &self,
        wallet_id: &str,
        reference: &str,
        low_balance_alert: Option<i64>,
        auto_refill: Option<chronicle_domain::wallet::AutoRefill>,
        metadata: &CommandMetadata,
    ) -> Result<WalletReceipt, CommandError> {
        let command = WalletCommand::ConfigureThresholds {
            reference: reference.to_string(),
            low_balance_alert,
            auto_refill,
            at: Utc::now(),
        };
        self.run(wallet_id, reference, command, metadata).await
    }

    /// Releases the wallet's reservations whose expiry is at or before now (log time), as
    /// `ReservationExpired` (every other command does the same first; this is for a sweeper,
    /// so the read models show them closed without waiting for the next operation).
    pub async fn expire_reservations(
        &self,
        wallet_id: &str,
        metadata: &CommandMetadata,
    ) -> Result<Balances, CommandError> {
        self.expire_reservations_at(wallet_id, Utc::now(), metadata).await
    }

    /// As [`Self::expire_reservations`], with the log time `at` given (the sweeper passes the
    /// database's clock).
    pub async fn expire_reservations_at(
        &self,
        wallet_id: &str,
        at: DateTime<Utc>,
        metadata: &CommandMetadata,
    ) -> Result<Balances, CommandError> {
        let wallet_id = valid_wallet_id(wallet_id)?;
        let local = wallet_local_id(wallet_id);
        let mut conflicts = 0;
        loop {
            let command = WalletCommand::ExpireReservations { at };
            match self.commands.wallet(&local, command, metadata).await {
                Ok(_) => break,
                Err(CommandError::Conflict) if conflicts < EXTRA_CONFLICT_RETRIES => {
                    conflicts += 1;
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(conflicts.min(10)))).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self.commands.load_wallet(&metadata.tenant_id, &local).await?.balances())
    }

    /// Moves `amount` from `from` to `to` (two wallets of the tenant), all or nothing: the
    /// source's half is refused (recorded) unless the whole amount is available; then the
    /// target's half runs under the same reference, retried. Answers the source's receipt.
    pub async fn transfer(
        &self,
        from: &str,
        to: &str,
        reference: &str,
        amount: i64,
        metadata: &CommandMetadata,
    ) -> Result<WalletReceipt, CommandError> {
        let from = valid_wallet_id(from)?;
        let to = valid_wallet_id(to)?;
        if from == to {
            return Err(CommandError::Rejected(WalletError::TransferToSameWallet.into()));
        }
        let target = self
            .commands
            .load_wallet(&metadata.tenant_id, &wallet_local_id(to))
            .await?;
        if target.wallet_id().is_none() {
            return Err(CommandError::Rejected(WalletError::UnknownWallet.into()));
        }
        let command = WalletCommand::TransferOut {
            reference: reference.to_string(),
            to_wallet: to.to_string(),
            amount,
            at: Utc::now(),
        };
        let receipt = self.run(from, reference, command, metadata).await?;
        self.transfer_in(from, to, reference, amount, metadata).await?;
        Ok(receipt)
    }

    /// The target half of a transfer (idempotent by the transfer's reference), retried.
    pub(crate) async fn transfer_in(
        &self,
        from: &str,
        to: &str,
        reference: &str,
        amount: i64,
        metadata: &CommandMetadata,
    ) -> Result<WalletReceipt, CommandError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let command = WalletCommand::TransferIn {
                reference: reference.to_string(),
                from_wallet: from.to_string(),
                amount,
                at: Utc::now(),
            };
            match self.run(to, reference, command, metadata).await {
                Ok(receipt) => return Ok(receipt),
                // A refusal will not change on a retry.
                Err(e @ CommandError::Rejected(_)) | Err(e @ CommandError::InvalidInput(_)) => {
                    tracing::error!(wallet.reference = reference, error = %e, "a transfer's second half was refused");
                    return Err(e);
                }
                Err(e) if attempt >= TRANSFER_IN_ATTEMPTS => {
                    tracing::error!(wallet.reference = reference, error = %e,
                        "a transfer's second half failed; left for the wallet sweeper");
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(wallet.reference = reference, error = %e, "a transfer's second half failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
            }
        }
    }

    /// The wallet's balances, from its stream (zero for a wallet never opened).
    pub async fn balances(&self, tenant: &TenantId, wallet_id: &str) -> Result<Balances, CommandError> {
        let wallet_id = valid_wallet_id(wallet_id)?;
        Ok(self.load(tenant, wallet_id).await?.balances())
    }

    /// The wallet's state, from its stream.
    pub async fn load(&self, tenant: &TenantId, wallet_id: &str) -> Result<Wallet, CommandError> {
        self.commands.load_wallet(tenant, &wallet_local_id(wallet_id)).await
    }

    /// Runs `command` on the wallet, retrying write conflicts, then answers the outcome the
    /// aggregate remembers for `reference`.
    async fn run(
        &self,
        wallet_id: &str,
        reference: &str,
        command: WalletCommand,
        metadata: &CommandMetadata,
    ) -> Result<WalletReceipt, CommandError> {
        let wallet_id = valid_wallet_id(wallet_id)?;
        let local = wallet_local_id(wallet_id);
        let mut conflicts = 0;
        loop {
            match self.commands.wallet(&local, command.clone(), metadata).await {
                Ok(_) => break,
                Err(CommandError::Conflict) if conflicts < EXTRA_CONFLICT_RETRIES => {
                    conflicts += 1;
                    let jitter = rand::random::<u64>() % 10;
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(conflicts.min(10)) + jitter)).await;
                }
                Err(e) => return Err(e),
            }
        }
        let wallet = self.commands.load_wallet(&metadata.tenant_id, &local).await?;
        match wallet.outcome(reference) {
            Some(Err(refused)) => Err(CommandError::Rejected(DomainError::Wallet(refused))),
            Some(Ok(())) | None => Ok(WalletReceipt {
                wallet_id: wallet_id.to_string(),
                reference: reference.to_string(),
                balances: wallet.balances(),
            }),
        }
    }
}
