//! Refusals of the `Wallet` aggregate, named after the rule they enforce.

use chrono::{DateTime, Utc};

/// Why a wallet command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    /// Available (balance − reserved) never goes below zero. Recorded as `DebitRefused` when a
    /// debit, reservation or transfer out is refused for it (see [`super::refusal`]).
    #[error("insufficient token balance: {required} milli-tokens required, {available} available")]
    InsufficientBalance { required: i64, available: i64 },
    /// A reference already used for a different request.
    #[error("reference {reference} was already used for a different request")]
    IdempotencyConflict { reference: String },
    /// Every operation carries a reference.
    #[error("a reference is required")]
    MissingReference,
    /// Amounts are positive milli-tokens.
    #[error("amounts must be positive; got {amount}")]
    NonPositiveAmount { amount: i64 },
    /// A balance would leave the range of `i64` milli-tokens.
    #[error("the amount would overflow the wallet's balance")]
    AmountTooLarge,
    /// Only an opened wallet takes operations.
    #[error("no such wallet")]
    UnknownWallet,
    /// A wallet is opened once.
    #[error("wallet {wallet_id} is already open")]
    WalletAlreadyOpen { wallet_id: String },
    /// A sub-wallet's parent is another wallet.
    #[error("a wallet cannot be its own parent")]
    SubWalletOfItself,
    /// A transfer moves tokens between two different wallets.
    #[error("a transfer needs two different wallets")]
    TransferToSameWallet,
    /// A reservation expires after it is made.
    #[error("a reservation must expire after it is made ({expires_at} is not after {at})")]
    ExpiryNotAfterStart {
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Captures and releases name a reservation of this wallet.
    #[error("no reservation {reservation}")]
    UnknownReservation { reservation: String },
    /// A reservation fully captured, released or expired takes no more captures or releases.
    #[error("reservation {reservation} is closed")]
    ReservationClosed { reservation: String },
    /// A capture never exceeds what is left of its reservation.
    #[error("capture of {requested} exceeds the {remaining} left in the reservation")]
    CaptureExceedsReservation { requested: i64, remaining: i64 },
    /// Refunds name a debit or capture of this wallet.
    #[error("no debit {debit}")]
    UnknownDebit { debit: String },
    /// Refunds of a debit never exceed it, cumulatively.
    #[error("refund of {requested} exceeds the {refundable} still refundable")]
    RefundExceedsDebit { requested: i64, refundable: i64 },
    /// Thresholds are zero or more milli-tokens.
    #[error("thresholds must not be negative; got {threshold}")]
    InvalidThreshold { threshold: i64 },
    /// Names (wallet ids, features, sources) must not be blank.
    #[error("{field} must not be blank")]
    Blank { field: &'static str },
}

impl WalletError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InsufficientBalance { .. } => "INSUFFICIENT_BALANCE",
            Self::IdempotencyConflict { .. } => "IDEMPOTENCY_CONFLICT",
            Self::MissingReference => "MISSING_REFERENCE",
            Self::NonPositiveAmount { .. } => "NON_POSITIVE_AMOUNT",
            Self::AmountTooLarge => "AMOUNT_TOO_LARGE",
            Self::UnknownWallet => "UNKNOWN_WALLET",
            Self::WalletAlreadyOpen { .. } => "WALLET_ALREADY_OPEN",
            Self::SubWalletOfItself => "SUB_WALLET_OF_ITSELF",
            Self::TransferToSameWallet => "TRANSFER_TO_SAME_WALLET",
            Self::ExpiryNotAfterStart { .. } => "EXPIRY_NOT_AFTER_START",
            Self::UnknownReservation { .. } => "UNKNOWN_RESERVATION",
            Self::ReservationClosed { .. } => "RESERVATION_CLOSED",
            Self::CaptureExceedsReservation { .. } => "CAPTURE_EXCEEDS_RESERVATION",
            Self::UnknownDebit { .. } => "UNKNOWN_DEBIT",
            Self::RefundExceedsDebit { .. } => "REFUND_EXCEEDS_DEBIT",
            Self::InvalidThreshold { .. } => "INVALID_THRESHOLD",
            Self::Blank { .. } => "BLANK_FIELD",
        }
    }
}
