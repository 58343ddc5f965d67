//! Events of the `ServiceRequest` aggregate. Names are contracts: never renamed once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::Priority;
use crate::pii::Envelope;

/// Facts about a service request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ServiceEvent {
    /// The request was opened; carries the derived SLA due time.
    ServiceRequestOpened {
        ticket_number: u64,
        kind: String,
        priority: Priority,
        customer_id: String,
        installation_id: Option<String>,
        description: Envelope,
        sla_due_at: DateTime<Utc>,
        by: String,
        at: DateTime<Utc>,
    },
    /// A technician was assigned (`previous`: the one replaced, if any).
    ServiceRequestAssigned {
        technician_id: String,
        previous: Option<String>,
        by: String,
        at: DateTime<Utc>,
    },
    /// The SLA was breached: decided once, at `at` (at or after `sla_due_at`).
    ServiceSlaBreached {
        sla_due_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The request was resolved; carries whether its SLA was breached.
    ServiceRequestResolved {
        resolution: Envelope,
        breached: bool,
        by: String,
        at: DateTime<Utc>,
    },
    ServiceRequestClosed {
        by: String,
        at: DateTime<Utc>,
    },
}

impl ServiceEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "ServiceRequestOpened",
        "ServiceRequestAssigned",
        "ServiceSlaBreached",
        "ServiceRequestResolved",
        "ServiceRequestClosed",
    ];
}

impl DomainEvent for ServiceEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ServiceRequestOpened { .. } => "ServiceRequestOpened",
            Self::ServiceRequestAssigned { .. } => "ServiceRequestAssigned",
            Self::ServiceSlaBreached { .. } => "ServiceSlaBreached",
            Self::ServiceRequestResolved { .. } => "ServiceRequestResolved",
            Self::ServiceRequestClosed { .. } => "ServiceRequestClosed",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
