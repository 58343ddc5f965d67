//! Commands of the `ServiceRequest` aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::Priority;
use crate::pii::Envelope;

/// A request to change a service request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ServiceCommand {
    /// Open the request (once; a repeat records nothing).
    Open(OpenServiceRequest),
    /// Assign (or reassign) a technician while the request is pending; the same technician
    /// again records nothing.
    Assign {
        technician_id: String,
        by: String,
        at: DateTime<Utc>,
    },
    /// Resolve a pending request (after the due time this records the breach first).
    Resolve {
        resolution: Envelope,
        by: String,
        at: DateTime<Utc>,
    },
    /// Close a resolved request.
    Close { by: String, at: DateTime<Utc> },
    /// The sweeper's check, at the database's clock: records the breach of a pending request
    /// whose SLA is due.
    CheckSla { at: DateTime<Utc> },
}

/// The facts a request is opened with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OpenServiceRequest {
    /// The tenant's ticket number (above zero), handed out by the write side.
    pub ticket_number: u64,
    /// What kind of request: `repair`, `inspection`, `question`, … (free, non-blank).
    pub kind: String,
    pub priority: Priority,
    /// The customer's contact id (a keyed hash, `ct_…`).
    pub customer_id: String,
    /// The installation concerned, if any (`isr_<id>`).
    pub installation_id: Option<String>,
    /// What the customer reports, sealed under their data key.
    pub description: Envelope,
    pub by: String,
    pub at: DateTime<Utc>,
}
