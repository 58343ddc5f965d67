//! Events of the `MaintenanceContract` aggregate. Names are contracts: never renamed once
//! stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::pii::Envelope;

/// Facts about a maintenance contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum MaintenanceEvent {
    /// The contract started; carries the derived end.
    MaintenanceContractStarted {
        customer_id: String,
        installation_id: Option<String>,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        term_months: u32,
        annual_value_minor: i64,
        currency: String,
        auto_renew: bool,
        by: String,
        at: DateTime<Utc>,
    },
    /// The contract was renewed from `previous_ends_at` to `ends_at`; `renewals` counts them.
    MaintenanceContractRenewed {
        reference: String,
        term_months: u32,
        previous_ends_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        renewals: u32,
        by: String,
        at: DateTime<Utc>,
    },
    MaintenanceAutoRenewalChanged {
        auto_renew: bool,
        by: String,
        at: DateTime<Utc>,
    },
    MaintenanceContractCancelled {
        reason: Option<Envelope>,
        by: String,
        at: DateTime<Utc>,
    },
}

impl MaintenanceEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "MaintenanceContractStarted",
        "MaintenanceContractRenewed",
        "MaintenanceAutoRenewalChanged",
        "MaintenanceContractCancelled",
    ];
}

impl DomainEvent for MaintenanceEvent {
    fn event_type(&self) -> String {
        match self {
            Self::MaintenanceContractStarted { .. } => "MaintenanceContractStarted",
            Self::MaintenanceContractRenewed { .. } => "MaintenanceContractRenewed",
            Self::MaintenanceAutoRenewalChanged { .. } => "MaintenanceAutoRenewalChanged",
            Self::MaintenanceContractCancelled { .. } => "MaintenanceContractCancelled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
