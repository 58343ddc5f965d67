//! Events of the `Template` aggregate. Names are contracts: never renamed once stored.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::{TemplateButton, TemplateCategory, TemplateHeader};

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
        /// The header (a text or a media), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<TemplateHeader>,
        /// The footer, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        footer: Option<String>,
    },
    /// The pending version was submitted to WhatsApp (`POST /{waba-id}/message_templates`),
    /// which took it for review under `provider_template_id`.
    TemplateSentForReview {
        provider_template_id: String,
        version: u32,
        at: DateTime<Utc>,
    },
    /// WhatsApp paused the approved template (its quality fell): not sent until reinstated.
    TemplatePaused {
        reason: Option<String>,
        version: u32,
        at: DateTime<Utc>,
    },
    /// WhatsApp disabled the template: never sent again (a changed one is submitted anew).
    TemplateDisabled {
        reason: Option<String>,
        version: u32,
        at: DateTime<Utc>,
    },
    /// WhatsApp approved the pending version (or reinstated a paused one).
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
    pub const TYPES: &'static [&'static str] = &[
        "TemplateSubmitted",
        "TemplateApproved",
        "TemplateRejected",
        "TemplateSentForReview",
        "TemplatePaused",
        "TemplateDisabled",
    ];
}

impl DomainEvent for TemplateEvent {
    fn event_type(&self) -> String {
        match self {
            Self::TemplateSubmitted { .. } => "TemplateSubmitted",
            Self::TemplateApproved { .. } => "TemplateApproved",
            Self::TemplateRejected { .. } => "TemplateRejected",
            Self::TemplateSentForReview { .. } => "TemplateSentForReview",
            Self::TemplatePaused { .. } => "TemplatePaused",
            Self::TemplateDisabled { .. } => "TemplateDisabled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
