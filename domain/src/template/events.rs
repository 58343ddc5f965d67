//! Events of the `Template` aggregate. Names are contracts: never renamed once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::{TemplateButton, TemplateCategory};

/// Facts about a template. Each carries the version it is about, so projections never
/// recount submissions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum TemplateEvent {
    /// A template (version 1, or the next after a rejection) was submitted and is pending.
    /// Buttons are normalized; `variable_count` is the number of distinct `{{n}}`.
    TemplateSubmitted {
        name: String,
        language: String,
        category: TemplateCategory,
        body: String,
        buttons: Vec<TemplateButton>,
        variable_count: usize,
        version: u32,
        at: DateTime<Utc>,
    },
    /// WhatsApp approved the pending version.
    TemplateApproved {
        provider_template_id: String,
        version: u32,
        at: DateTime<Utc>,
    },
    /// WhatsApp rejected the pending version.
    TemplateRejected {
        reason: String,
        version: u32,
        at: DateTime<Utc>,
    },
}

impl TemplateEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &["TemplateSubmitted", "TemplateApproved", "TemplateRejected"];
}

impl DomainEvent for TemplateEvent {
    fn event_type(&self) -> String {
        match self {
            Self::TemplateSubmitted { .. } => "TemplateSubmitted",
            Self::TemplateApproved { .. } => "TemplateApproved",
            Self::TemplateRejected { .. } => "TemplateRejected",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
