//! Events of the `Wallet` aggregate. Names are contracts: never renamed once stored.
//!
//! Every event carries its `postings` (the double entry: they sum to zero; empty for events
//! that move no tokens) and the wallet's `balances` after it, so the ledger and balance
//! projections copy facts and never recompute rules.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::{AutoRefill, Balances, Posting, Request};

/// Facts about a wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum WalletEvent {
    /// The wallet was opened (a sub-wallet names its parent).
    WalletOpened {
        reference: String,
        wallet_id: String,
        parent_id: Option<String>,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
    /// A confirmed payment was credited: available +amount, platform sales −amount.
    TokensPurchased {
        reference: String,
        amount: i64,
        source: String,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
    /// A billable action was paid: available −amount, platform consumption +amount.
    TokensDebited {
        reference: String,
        amount: i64,
        feature: String,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
    /// A debit, reservation or transfer out was refused for insufficient balance. Recorded for
    /// finance; moves nothing. `request` is what was asked.
    DebitRefused {
        reference: String,
        request: Request,
        required: i64,
        available: i64,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
    /// Tokens were held until `expires_at`: available −amount, reserved +amount.
    TokensReserved {
        reference: String,
        amount: i64,
        expires_at: DateTime<Utc>,
        purpose: String,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
    /// Part of a reservation became a debit: reserved −amount, consumption +amount.
    /// `remaining` is what is left of the reservation (zero closes it).
    ReservationCaptured {
        reference: String,
        reservation: String,
        amount: i64,
        remaining: i64,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
    /// The rest of a reservation was returned and the reservation closed: reserved −amount,
    /// available +amount. `captured` is what it had captured (captured + amount = reserved).
    ReservationReleased {
        reference: String,
        reservation: String,
        amount: i64,
        captured: i64,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
    /// A reservation reached its expiry (log time) and the rest was returned, as a release.
    ReservationExpired {
        reservation: String,
        amount: i64,
        captured: i64,
        expires_at: DateTime<Utc>,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
    /// Part or all of a debit or capture was returned: consumption −amount, available +amount.
    /// `refunded_total` is everything refunded of that debit so far.
    TokensRefunded {
        reference: String,
        debit: String,
        amount: i64,
        refunded_total: i64,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
    /// The source half of a transfer: available −amount, in transit +amount.
    TokensTransferredOut {
        reference: String,
        to_wallet: String,
        amount: i64,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
    /// The target half of a transfer: in transit −amount, available +amount.
    TokensTransferredIn {
        reference: String,
        from_wallet: String,
        amount: i64,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
    /// The alert and auto-refill thresholds were set (both re-armed).
    ThresholdsConfigured {
        reference: String,
        low_balance_alert: Option<i64>,
        auto_refill: Option<AutoRefill>,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
    /// Available went below the alert threshold (once per crossing). `trigger` is the
    /// reference of the operation that crossed it.
    LowBalanceAlerted {
        trigger: String,
        threshold: i64,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
    /// Available went below the auto-refill threshold (once per crossing): the write side buys
    /// `amount` under `purchase_reference` (derived from `trigger`, so a retry buys once).
    AutoRefillRequested {
        trigger: String,
        threshold: i64,
        amount: i64,
        purchase_reference: String,
        postings: Vec<Posting>,
        balances: Balances,
        at: DateTime<Utc>,
    },
}

impl WalletEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "WalletOpened",
        "TokensPurchased",
        "TokensDebited",
        "DebitRefused",
        "TokensReserved",
        "ReservationCaptured",
        "ReservationReleased",
        "ReservationExpired",
        "TokensRefunded",
        "TokensTransferredOut",
        "TokensTransferredIn",
        "ThresholdsConfigured",
        "LowBalanceAlerted",
        "AutoRefillRequested",
    ];

    /// The event's double entry (sums to zero; empty when no tokens move).
    pub fn postings(&self) -> &[Posting] {
        match self {
            Self::WalletOpened { postings, .. }
            | Self::TokensPurchased { postings, .. }
            | Self::TokensDebited { postings, .. }
            | Self::DebitRefused { postings, .. }
            | Self::TokensReserved { postings, .. }
            | Self::ReservationCaptured { postings, .. }
            | Self::ReservationReleased { postings, .. }
            | Self::ReservationExpired { postings, .. }
            | Self::TokensRefunded { postings, .. }
            | Self::TokensTransferredOut { postings, .. }
            | Self::TokensTransferredIn { postings, .. }
            | Self::ThresholdsConfigured { postings, .. }
            | Self::LowBalanceAlerted { postings, .. }
            | Self::AutoRefillRequested { postings, .. } => postings,
        }
    }

    /// The wallet's balances after the event.
    pub fn balances(&self) -> Balances {
        match self {
            Self::WalletOpened { balances, .. }
            | Self::TokensPurchased { balances, .. }
            | Self::TokensDebited { balances, .. }
            | Self::DebitRefused { balances, .. }
            | Self::TokensReserved { balances, .. }
            | Self::ReservationCaptured { balances, .. }
            | Self::ReservationReleased { balances, .. }
            | Self::ReservationExpired { balances, .. }
            | Self::TokensRefunded { balances, .. }
            | Self::TokensTransferredOut { balances, .. }
            | Self::TokensTransferredIn { balances, .. }
            | Self::ThresholdsConfigured { balances, .. }
            | Self::LowBalanceAlerted { balances, .. }
            | Self::AutoRefillRequested { balances, .. } => *balances,
        }
    }
}

impl DomainEvent for WalletEvent {
    fn event_type(&self) -> String {
        match self {
            Self::WalletOpened { .. } => "WalletOpened",
            Self::TokensPurchased { .. } => "TokensPurchased",
            Self::TokensDebited { .. } => "TokensDebited",
            Self::DebitRefused { .. } => "DebitRefused",
            Self::TokensReserved { .. } => "TokensReserved",
            Self::ReservationCaptured { .. } => "ReservationCaptured",
            Self::ReservationReleased { .. } => "ReservationReleased",
            Self::ReservationExpired { .. } => "ReservationExpired",
            Self::TokensRefunded { .. } => "TokensRefunded",
            Self::TokensTransferredOut { .. } => "TokensTransferredOut",
            Self::TokensTransferredIn { .. } => "TokensTransferredIn",
            Self::ThresholdsConfigured { .. } => "ThresholdsConfigured",
            Self::LowBalanceAlerted { .. } => "LowBalanceAlerted",
            Self::AutoRefillRequested { .. } => "AutoRefillRequested",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
