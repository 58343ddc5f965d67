//! Value types of token wallets: amounts in milli-tokens, ledger accounts and postings, the
//! balances every event carries, and the request fingerprint that idempotency compares.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Milli-tokens per token: every amount in this module is an integer number of milli-tokens
/// (`i64`), so 1 token is `1000` and no rounding ever happens in the domain.
pub const MILLI_PER_TOKEN: i64 = 1000;

/// A ledger account touched by a wallet operation. The first two belong to the wallet; the
/// others are the platform's side of each double entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Account {
    /// Tokens the wallet may spend.
    WalletAvailable,
    /// Tokens held by open reservations.
    WalletReserved,
    /// The platform's sales: the counter entry of a purchase.
    PlatformSales,
    /// The platform's consumption: the counter entry of a debit or capture (and of a refund).
    PlatformConsumption,
    /// Tokens between two wallets of a tenant: credited by a transfer out, debited by the
    /// matching transfer in.
    TransfersInTransit,
}

impl Account {
    /// Whether the account is one of the wallet's own (its balance is their sum).
    pub fn is_wallet(self) -> bool {
        matches!(self, Self::WalletAvailable | Self::WalletReserved)
    }

    /// The account as stored in read models.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WalletAvailable => "wallet_available",
            Self::WalletReserved => "wallet_reserved",
            Self::PlatformSales => "platform_sales",
            Self::PlatformConsumption => "platform_consumption",
            Self::TransfersInTransit => "transfers_in_transit",
        }
    }
}

/// One line of a double entry: `amount` milli-tokens added to `account` (negative: taken from
/// it). The postings of one event always sum to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Posting {
    pub account: Account,
    pub amount: i64,
}

impl Posting {
    /// Whether `postings` sum to zero (the double-entry identity).
    pub fn balanced(postings: &[Posting]) -> bool {
        postings
            .iter()
            .try_fold(0i64, |sum, p| sum.checked_add(p.amount))
            .is_some_and(|sum| sum == 0)
    }
}

/// A wallet's balances after an event, in milli-tokens: `balance = available + reserved`.
/// Derived values carried by every event so projections never recompute them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Balances {
    /// Everything the wallet holds: available plus reserved.
    pub balance: i64,
    /// Held by open reservations.
    pub reserved: i64,
    /// What may be spent: `balance − reserved`, never below zero.
    pub available: i64,
}

/// Auto-refill: when available drops below `threshold`, ask for a purchase of `amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AutoRefill {
    pub threshold: i64,
    pub amount: i64,
}

/// What a reference was first used for, without its log time: a repeat with an equal request
/// returns the first outcome; a different one is an idempotency conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "operation", rename_all = "snake_case")]
pub enum Request {
    Open {
        wallet_id: String,
        parent_id: Option<String>,
    },
    Purchase {
        amount: i64,
        source: String,
    },
    Debit {
        amount: i64,
        feature: String,
    },
    Reserve {
        amount: i64,
        expires_at: DateTime<Utc>,
        purpose: String,
    },
    Capture {
        reservation: String,
        amount: i64,
    },
    Release {
        reservation: String,
    },
    Refund {
        debit: String,
        amount: i64,
    },
    TransferOut {
        to_wallet: String,
        amount: i64,
    },
    TransferIn {
        from_wallet: String,
        amount: i64,
    },
    ConfigureThresholds {
        low_balance_alert: Option<i64>,
        auto_refill: Option<AutoRefill>,
    },
}

impl Request {
    /// The operation's name, as stored in read models (`debit`, `reserve`…).
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Open { .. } => "open",
            Self::Purchase { .. } => "purchase",
            Self::Debit { .. } => "debit",
            Self::Reserve { .. } => "reserve",
            Self::Capture { .. } => "capture",
            Self::Release { .. } => "release",
            Self::Refund { .. } => "refund",
            Self::TransferOut { .. } => "transfer_out",
            Self::TransferIn { .. } => "transfer_in",
            Self::ConfigureThresholds { .. } => "configure_thresholds",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_that_cancel_out_are_balanced() {
        let postings = [
            Posting {
                account: Account::WalletAvailable,
                amount: -1500,
            },
            Posting {
                account: Account::PlatformConsumption,
                amount: 1500,
            },
        ];
        assert!(Posting::balanced(&postings));
        assert!(!Posting::balanced(&postings[..1]));
        assert!(Posting::balanced(&[]));
    }

    #[test]
    fn postings_that_overflow_are_not_balanced() {
        let postings = [
            Posting {
                account: Account::WalletAvailable,
                amount: i64::MAX,
            },
            Posting {
                account: Account::PlatformSales,
                amount: i64::MAX,
            },
        ];
        assert!(!Posting::balanced(&postings));
    }

    #[test]
    fn only_the_available_and_reserved_accounts_are_the_wallets() {
        assert!(Account::WalletAvailable.is_wallet());
        assert!(Account::WalletReserved.is_wallet());
        assert!(!Account::PlatformSales.is_wallet());
        assert!(!Account::TransfersInTransit.is_wallet());
        assert_eq!(MILLI_PER_TOKEN, 1000);
    }
}
