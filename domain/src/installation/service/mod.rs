//! The `ServiceRequest` aggregate: a customer's service ticket (a fault, an inspection, a
//! question about an installed system).
//!
//! Stream id: `<tenant>:<service_request_local_id(ticket_number)>`, i.e. `<tenant>:sr_<n>`: the
//! write side hands out ticket numbers per tenant (1, 2, 3, …), shown as
//! [`ticket_label`] (`SR-000042`).
//!
//! Rules held here:
//! - a request is opened once with its ticket number (above zero), kind, [`Priority`], the
//!   customer id, an optional installation and a sealed description; `ServiceRequestOpened`
//!   carries the derived SLA due time, `opened + priority's SLA` ([`sla_due_at`]). Opening
//!   again records nothing;
//! - status `open → assigned → resolved → closed` ([`ServiceStatus::may_move_to`]); a
//!   technician is assigned (and reassigned) until resolution; the resolution is sealed;
//! - the SLA is breached once, decided by the time in the log: the sweeper's `CheckSla` at or
//!   after the due time records `ServiceSlaBreached` (before it: [`ServiceError::SlaNotYetDue`]);
//!   a resolution after the due time records the breach first. A breach is never recorded
//!   twice, and never after a resolution in time.

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::ServiceRequest;
pub use commands::{OpenServiceRequest, ServiceCommand};
pub use error::ServiceError;
pub use events::ServiceEvent;
pub use values::{service_request_local_id, sla_due_at, ticket_label, Priority, ServiceStatus};
