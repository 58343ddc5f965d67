//! The `Warranty` aggregate: the warranty of one serialized component installed on site.
//!
//! Stream id: `<tenant>:<warranty_local_id(installation_id, serial)>`, i.e.
//! `<tenant>:warranty_<installation_id>/<serial>` ([`warranty_local_id`]; installation ids
//! never contain `/`). One stream per installed component, so registering the same component's
//! warranty again lands on the same stream.
//!
//! Rules held here:
//! - a warranty is registered once for an installation, a component serial and kind, the
//!   customer id and a period of 1 to [`MAX_WARRANTY_MONTHS`] months starting at commissioning
//!   ([`WarrantyError::InvalidWarrantyPeriod`] otherwise; a component with zero months has no
//!   warranty). `WarrantyRegistered` carries the derived end (`starts_at + months`). Registering
//!   again records nothing: the first registration stands;
//! - a warranty is `active` until voided (with a sealed reason); voiding twice records nothing;
//! - [`Warranty::terms`] is what a claim is checked against: active, and the claim's time within
//!   `[starts_at, ends_at)` ([`WarrantyTerms::covers`]).

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::Warranty;
pub use commands::{RegisterWarranty, WarrantyCommand};
pub use error::WarrantyError;
pub use events::WarrantyEvent;
pub use values::{warranty_ends_at, warranty_local_id, WarrantyStatus, WarrantyTerms, MAX_WARRANTY_MONTHS};
