//! Events of the `AutomationRules` aggregate. Names are contracts: never renamed once stored.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::call::CallOutcome;

/// Facts about a tenant's automation rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum AutomationRulesEvent {
    /// The call follow-up rule was set. `version` is the rule's new revision (1, 2, …), which
    /// follow-ups scheduled under it record.
    CallFollowUpRuleSet {
        version: u32,
        enabled: bool,
        delay_minutes: u32,
        outcomes: BTreeSet<CallOutcome>,
        template_name: String,
        language: String,
        at: DateTime<Utc>,
    },
    /// The call follow-up rule was disabled; `version` is the rule's new revision.
    CallFollowUpRuleDisabled { version: u32, at: DateTime<Utc> },
}

impl AutomationRulesEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &["CallFollowUpRuleSet", "CallFollowUpRuleDisabled"];
}

impl DomainEvent for AutomationRulesEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CallFollowUpRuleSet { .. } => "CallFollowUpRuleSet",
            Self::CallFollowUpRuleDisabled { .. } => "CallFollowUpRuleDisabled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
