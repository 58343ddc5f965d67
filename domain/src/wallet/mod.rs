//! The `Wallet` aggregate: a tenant's token wallet or one of its sub-wallets.
//!
//! Stream id: `<tenant>:wallet_<id>`; a tenant's main wallet and each sub-wallet are separate
//! streams. Amounts are integer milli-tokens (`i64`, [`MILLI_PER_TOKEN`] to a token).
//!
//! Rules held here:
//! - available = balance − reserved, never below zero: a debit, reservation or transfer out
//!   that cannot be paid is refused with [`WalletError::InsufficientBalance`]
//!   (`INSUFFICIENT_BALANCE`, required and available amounts);
//! - that refusal matters to finance, so it is *recorded*: the command succeeds with one
//!   [`WalletEvent::DebitRefused`] event (moving nothing), and the write side answers the
//!   caller with [`refusal`]`(&events)` (or [`Wallet::outcome`] after the command). Every other
//!   refusal is an `Err` from `handle` and stores nothing;
//! - every operation carries a reference, remembered forever: the same reference with the same
//!   request (log time aside) returns the first outcome and records nothing (a success: `Ok`
//!   without events; a recorded refusal: the same `InsufficientBalance` again, so a refused
//!   debit is retried under a new reference); a different request is refused as
//!   [`WalletError::IdempotencyConflict`]. A purchase's reference is the payment provider's, so
//!   a payment is credited once;
//! - the ledger is double-entry: every event carries its [`Posting`]s between [`Account`]s,
//!   summing to zero (empty when nothing moves), and the [`Balances`] after it;
//! - a capture never exceeds what is left of its reservation; a fully captured, released or
//!   expired reservation is closed, and captured + released = reserved for every closed one;
//! - reservations expire by LOG TIME: every command first releases, as
//!   [`WalletEvent::ReservationExpired`], the open reservations whose `expires_at` is at or
//!   before its `at` (so an expired hold never blocks a debit and cannot be captured), and
//!   [`WalletCommand::ExpireReservations`] does only that, for a sweeper. A repeated reference
//!   records nothing, not even expiries;
//! - a refund never exceeds its debit (or capture), cumulatively;
//! - a transfer is all or nothing: `TransferOut` on the source is refused (recorded) unless the
//!   whole amount is available and moves it to the in-transit account; `TransferIn` on the
//!   target, keyed by the same transfer reference, is idempotent; the write side runs both;
//! - a low-balance alert and an auto-refill request are emitted once when available goes below
//!   their threshold, and re-armed when available is back at or above it. Configuring arms
//!   both, so a wallet already below alerts on that command. The refill names a purchase
//!   reference derived from the triggering reference (`refill:<reference>`).

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::{refusal, Wallet};
pub use commands::WalletCommand;
pub use error::WalletError;
pub use events::WalletEvent;
pub use values::{Account, AutoRefill, Balances, Posting, Request, MILLI_PER_TOKEN};
