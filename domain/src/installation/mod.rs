//! Orders and installations (DOMAIN.md, "Orders and installations"; issue 4): three pure
//! aggregates an installer business (solar, Starlink, hybrid, custom furniture) runs on.
//!
//! - [`order`]: the `Order` aggregate (stream `<tenant>:order_<id>`): line items, a total in
//!   integer minor units, payments from a provider, `placed → paid → fulfilled` or `cancelled`.
//! - [`isr`]: the `InstallationRecord` aggregate, the installation system record (stream
//!   `<tenant>:isr_<id>`): technicians, scheduling, checklist, photos, serialized components,
//!   commissioning, activation, decommissioning.
//! - [`payout`]: the `Payout` aggregate (stream `<tenant>:payout_<id>`): a technician payout
//!   computed by [`payout::payout_for`] (tiers by system size plus a quality bonus),
//!   `pending → approved → paid`.
//!
//! How they meet (process managers live outside this crate): an `OrderPaid` event lists the
//! installable line items, from which an installation is opened; `InstallationCommissioned`
//! carries the components with their warranty periods, the system size and the technicians,
//! from which warranties are registered and a payout is computed.

pub mod isr;
pub mod order;
pub mod payout;

pub use isr::{
    photo_requirements, required_checklist, Component, InstallationCommand, InstallationError, InstallationEvent,
    InstallationRecord, InstallationStatus, InstallationType,
};
pub use order::{LineItem, Order, OrderCommand, OrderError, OrderEvent, OrderStatus, PaymentProvider};
pub use payout::{payout_for, Payout, PayoutCommand, PayoutError, PayoutEvent, PayoutStatus, PayoutTier};
