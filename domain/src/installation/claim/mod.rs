//! The `WarrantyClaim` aggregate: a customer's claim under one component's warranty.
//!
//! Stream id: `<tenant>:claim_<id>` (the id comes from the caller).
//!
//! Rules held here:
//! - a claim is filed once against the [`WarrantyTerms`] of its warranty as they stand at
//!   filing (the write side loads them from the `Warranty` aggregate): only on an active
//!   warranty ([`ClaimError::WarrantyNotActive`]) and only within its period
//!   `[starts_at, ends_at)` ([`ClaimError::OutsideWarrantyPeriod`]). The description is sealed.
//!   Filing again records nothing: the first filing stands;
//! - status `submitted → under_review → approved | rejected → resolved`
//!   ([`ClaimStatus::may_move_to`]); a decision is made under review, by someone, with an
//!   optional sealed note; a resolution is sealed. Repeating the move the claim already made
//!   records nothing; any other move is [`ClaimError::ClaimMoveNotAllowed`].
//!
//! [`WarrantyTerms`]: crate::installation::warranty::WarrantyTerms

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::WarrantyClaim;
pub use commands::{ClaimCommand, FileClaim};
pub use error::ClaimError;
pub use events::ClaimEvent;
pub use values::{ClaimDecision, ClaimStatus};
