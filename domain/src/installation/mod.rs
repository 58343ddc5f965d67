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
//! - [`warranty`]: the `Warranty` aggregate (stream `<tenant>:warranty_<isr_id>/<serial>`): the
//!   warranty of one installed component, registered once at commissioning, voidable.
//! - [`claim`]: the `WarrantyClaim` aggregate (stream `<tenant>:claim_<id>`): filed only on an
//!   active warranty within its period, `submitted → under_review → approved | rejected → resolved`.
//! - [`service`]: the `ServiceRequest` aggregate (stream `<tenant>:sr_<ticket number>`): a ticket
//!   with a priority and its SLA due time, assignment, resolution, a breach decided once.
//! - [`maintenance`]: the `MaintenanceContract` aggregate (stream `<tenant>:mc_<id>`): term,
//!   annual value, renewal from the old end (idempotent by reference), auto-renewal.
//!
//! How they meet (process managers live outside this crate): an `OrderPaid` event lists the
//! installable line items, from which an installation is opened; `InstallationCommissioned`
//! carries the components with their warranty periods, the system size and the technicians,
//! from which warranties are registered and a payout is computed.

pub mod claim;
pub mod isr;
pub mod maintenance;
pub mod order;
pub mod payout;
pub mod service;
pub mod sizing;
pub mod warranty;

pub use claim::{ClaimCommand, ClaimDecision, ClaimError, ClaimEvent, ClaimStatus, FileClaim, WarrantyClaim};
pub use isr::{
    photo_requirements, required_checklist, Component, InstallationCommand, InstallationError, InstallationEvent,
    InstallationRecord, InstallationStatus, InstallationType,
};
pub use maintenance::{
    ContractStatus, MaintenanceCommand, MaintenanceContract, MaintenanceError, MaintenanceEvent,
    StartMaintenanceContract,
};
pub use order::{LineItem, Order, OrderCommand, OrderError, OrderEvent, OrderStatus, PaymentProvider};
pub use payout::{payout_for, Payout, PayoutCommand, PayoutError, PayoutEvent, PayoutStatus, PayoutTier};
pub use service::{
    service_request_local_id, ticket_label, OpenServiceRequest, Priority, ServiceCommand, ServiceError, ServiceEvent,
    ServiceRequest, ServiceStatus,
};
pub use sizing::{installation_type_of, system_size_of};
pub use warranty::{
    warranty_local_id, RegisterWarranty, Warranty, WarrantyCommand, WarrantyError, WarrantyEvent, WarrantyStatus,
    WarrantyTerms,
};
