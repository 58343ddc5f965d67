//! Commands of the `Template` aggregate. A template's text is the tenant's, not a person's:
//! no envelopes here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::{TemplateButton, TemplateCategory, TemplateHeader};

/// A request to change a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum TemplateCommand {
    /// Submit a template for WhatsApp's review (again only after a rejection, and changed).
    SubmitTemplate(SubmitTemplate),
    /// Record WhatsApp's approval of the pending template.
    ApproveTemplate {
        provider_template_id: String,
        at: DateTime<Utc>,
    },
    /// Record WhatsApp's rejection of the pending template.
    RejectTemplate { reason: String, at: DateTime<Utc> },
    /// Record that WhatsApp took the pending version for review under its id.
    RecordSentForReview {
        provider_template_id: String,
        at: DateTime<Utc>,
    },
    /// Record WhatsApp's pause of the approved template.
    PauseTemplate { reason: Option<String>, at: DateTime<Utc> },
    /// Record WhatsApp's disabling of the template.
    DisableTemplate { reason: Option<String>, at: DateTime<Utc> },
}

/// A template as written by the tenant. Stream id: `<tenant>:tpl_<name>_<language>` (the
/// caller builds it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubmitTemplate {
    pub name: String,
    pub language: String,
    pub category: TemplateCategory,
    /// The body, with variables `{{1}}`, `{{2}}`…
    pub body: String,
    pub buttons: Vec<TemplateButton>,
    pub at: DateTime<Utc>,
    /// A header: a text (with at most one variable) or a media.
    #[serde(default)]
    pub header: Option<TemplateHeader>,
    /// A footer of at most 60 characters.
    #[serde(default)]
    pub footer: Option<String>,
}
