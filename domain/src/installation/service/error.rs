//! Refusals of the `ServiceRequest` aggregate, named after the rule they enforce.

use chrono::{DateTime, Utc};

/// Why a service request command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// Only an opened request can be changed.
    #[error("no such service request")]
    UnknownServiceRequest,
    /// Ids and kinds must not be blank.
    #[error("{field} must not be blank")]
    Blank { field: &'static str },
    /// Ticket numbers start at 1.
    #[error("a ticket number is above zero")]
    ZeroTicketNumber,
    /// Status moves follow `open → assigned → resolved → closed`.
    #[error("a service request cannot move from {from} to {to}")]
    ServiceMoveNotAllowed { from: &'static str, to: &'static str },
    /// A breach is recorded only at or after the due time.
    #[error("the SLA is not due until {sla_due_at}")]
    SlaNotYetDue { sla_due_at: DateTime<Utc> },
}

impl ServiceError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownServiceRequest => "UNKNOWN_SERVICE_REQUEST",
            Self::Blank { .. } => "BLANK_FIELD",
            Self::ZeroTicketNumber => "ZERO_TICKET_NUMBER",
            Self::ServiceMoveNotAllowed { .. } => "SERVICE_MOVE_NOT_ALLOWED",
            Self::SlaNotYetDue { .. } => "SLA_NOT_YET_DUE",
        }
    }
}
