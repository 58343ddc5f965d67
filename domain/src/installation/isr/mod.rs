//! The `InstallationRecord` aggregate: the installation system record (ISR) of one job.
//!
//! Stream id: `<tenant>:isr_<id>` (the id comes from the caller, e.g. the process manager that
//! opens an installation for a paid order).
//!
//! Rules held here:
//! - an installation is opened once with its type, customer id, order id, site address (sealed)
//!   and system size in watts (more than zero); opening it again records nothing;
//! - status `pending → in_progress → commissioned → active → decommissioned`
//!   ([`InstallationStatus::may_move_to`]); work starts only with a technician assigned
//!   ([`InstallationError::NoTechnicianAssigned`]);
//! - technicians are assigned and unassigned, and the job scheduled and rescheduled (with a
//!   sealed reason), only before commissioning ([`InstallationError::WorkAlreadyCommissioned`]);
//!   repeats record nothing; rescheduling needs a schedule ([`InstallationError::NotScheduled`]),
//!   scheduling twice at another time is a reschedule ([`InstallationError::AlreadyScheduled`]);
//! - checklist items, photos (kind and sha-256 of the content) and serialized components are
//!   recorded only while in progress ([`InstallationError::NotInProgress`]); the checklist of a
//!   type is [`required_checklist`], the photos it needs [`photo_requirements`]; an item not on
//!   the type's checklist is refused; a repeated item, photo or serial records nothing;
//! - commissioning needs every required checklist item, every required photo kind and at least
//!   one technician; otherwise [`InstallationError::CommissioningIncomplete`] lists exactly what
//!   is missing. `InstallationCommissioned` carries the components (with warranty months), the
//!   system size and the technicians, for warranties and the payout;
//! - activation follows commissioning; decommissioning follows commissioning or activation.

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::InstallationRecord;
pub use commands::{InstallationCommand, OpenInstallation};
pub use error::InstallationError;
pub use events::InstallationEvent;
pub use values::{
    is_sha256_hex, photo_requirements, required_checklist, Component, InstallationStatus, InstallationType,
};
