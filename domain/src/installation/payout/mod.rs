//! The `Payout` aggregate: what a technician team is paid for one commissioned installation.
//!
//! Stream id: `<tenant>:payout_<id>` (the id comes from the caller, e.g. the process manager
//! reacting to `InstallationCommissioned`).
//!
//! Rules held here:
//! - the amount is [`payout_for`]: a base by system-size tier ([`PayoutTier`]:
//!   ≤ 3 000 W → 5 000, ≤ 6 000 W → 8 000, ≤ 10 000 W → 12 000, above → 20 000 minor units)
//!   plus the optional quality bonus, added once. A pure function, so the payout read model
//!   and the process manager never recompute it: `PayoutComputed` carries the tier, the base,
//!   the bonus and the amount;
//! - a payout is computed once per stream (a repeat records nothing) for a named installation,
//!   at least one technician ([`PayoutError::NoTechnician`]), a system size above zero and an
//!   ISO 4217 currency;
//! - `pending → approved → paid`: approving needs someone who is not paid by it
//!   ([`PayoutError::SelfApproval`]); paying needs approval first
//!   ([`PayoutError::PaymentRequiresApproval`]) and a reference; a paid payout is paid once
//!   ([`PayoutError::AlreadyPaid`] for another reference, nothing recorded for the same one);
//! - a quality bonus is granted only while pending ([`PayoutError::PayoutNotPending`]), by
//!   someone the payout does not pay ([`PayoutError::SelfGrant`]), between 1 and
//!   [`MAX_QUALITY_BONUS_MINOR`] ([`PayoutError::QualityBonusOutOfRange`]); it replaces any
//!   earlier bonus (the same bonus again records nothing) and `QualityBonusGranted` carries the
//!   new total `base + bonus`.

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::Payout;
pub use commands::{ComputePayout, PayoutCommand};
pub use error::PayoutError;
pub use events::PayoutEvent;
pub use values::{payout_for, PayoutStatus, PayoutTier, MAX_QUALITY_BONUS_MINOR, TIER_BOUNDARIES_W};
