//! Commands of the `Wallet` aggregate. Every one but `ExpireReservations` carries the caller's
//! `reference` (its idempotency key) and its log time `at`. Amounts are milli-tokens.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::AutoRefill;

/// A request to change a wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum WalletCommand {
    /// Open the wallet: a tenant's main wallet (`parent_id: None`) or a sub-wallet of it.
    Open {
        reference: String,
        wallet_id: String,
        parent_id: Option<String>,
        at: DateTime<Utc>,
    },
    /// Credit a confirmed payment; the reference is the payment provider's (or finance's).
    Purchase {
        reference: String,
        amount: i64,
        /// Where the payment came from (`mpesa`, `finance`…).
        source: String,
        at: DateTime<Utc>,
    },
    /// Pay for a billable action. Refused for insufficient balance *with* a recorded
    /// `DebitRefused`.
    Debit {
        reference: String,
        amount: i64,
        /// The billable feature, so every ledger line says why (`message`, `broadcast`…).
        feature: String,
        at: DateTime<Utc>,
    },
    /// Hold tokens for a scheduled action until `expires_at` (log time). The reference names
    /// the reservation.
    Reserve {
        reference: String,
        amount: i64,
        expires_at: DateTime<Utc>,
        purpose: String,
        at: DateTime<Utc>,
    },
    /// Turn part or all of what is left of a reservation into a debit.
    Capture {
        reference: String,
        reservation: String,
        amount: i64,
        at: DateTime<Utc>,
    },
    /// Return what is left of a reservation and close it.
    Release {
        reference: String,
        reservation: String,
        at: DateTime<Utc>,
    },
    /// Return part or all of a debit or capture (`debit` is its reference) for a failed action.
    Refund {
        reference: String,
        debit: String,
        amount: i64,
        at: DateTime<Utc>,
    },
    /// The source half of a transfer: refused (recorded) unless the whole amount is available.
    TransferOut {
        reference: String,
        to_wallet: String,
        amount: i64,
        at: DateTime<Utc>,
    },
    /// The target half of a transfer, keyed by the transfer's reference (idempotent).
    TransferIn {
        reference: String,
        from_wallet: String,
        amount: i64,
        at: DateTime<Utc>,
    },
    /// Set (or clear, with `None`) the low-balance alert and auto-refill thresholds.
    ConfigureThresholds {
        reference: String,
        low_balance_alert: Option<i64>,
        auto_refill: Option<AutoRefill>,
        at: DateTime<Utc>,
    },
    /// Release every reservation whose expiry is at or before `at` (a sweeper's command; every
    /// other command does the same first, so an expired hold never blocks a debit).
    ExpireReservations { at: DateTime<Utc> },
}
