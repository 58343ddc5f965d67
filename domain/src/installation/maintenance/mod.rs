//! The `MaintenanceContract` aggregate: a customer's paid maintenance of an installed system.
//!
//! Stream id: `<tenant>:mc_<id>` (the id comes from the caller).
//!
//! Rules held here:
//! - a contract starts once with the customer id, an optional installation, a start, a term of
//!   1 to [`MAX_TERM_MONTHS`] months, an annual value in integer minor units (not negative) with
//!   an ISO 4217 currency, and whether it renews automatically. `MaintenanceContractStarted`
//!   carries the derived end (`start + term`). Starting again records nothing;
//! - a renewal names a reference and a term; it extends from the old end (not from today), so
//!   early and late renewals never lose or double a day. A reference already seen records
//!   nothing: the first renewal under a reference stands. `MaintenanceContractRenewed` carries
//!   the previous end, the new end and the renewal count;
//! - auto-renewal is switched on and off; a cancelled contract is neither renewed nor switched
//!   ([`MaintenanceError::ContractCancelled`]); cancelling twice records nothing.

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::MaintenanceContract;
pub use commands::{MaintenanceCommand, StartMaintenanceContract};
pub use error::MaintenanceError;
pub use events::MaintenanceEvent;
pub use values::{contract_end, ContractStatus, MAX_TERM_MONTHS};
