//! Commands of the `AutomationRules` aggregate.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::call::CallOutcome;

/// A request to change a tenant's automation rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum AutomationRulesCommand {
    /// Set (create or replace) the call follow-up rule. Setting the rule in force again changes
    /// nothing.
    SetCallFollowUpRule {
        enabled: bool,
        /// Minutes between a call's end and its follow-up, 1 to 10080 (7 days).
        delay_minutes: u32,
        /// The call outcomes the rule applies to; at least one.
        outcomes: BTreeSet<CallOutcome>,
        /// An approved WhatsApp template's name (`^[a-z0-9_]{1,512}$`).
        template_name: String,
        /// The template's language code, e.g. `en_US`.
        language: String,
        at: DateTime<Utc>,
    },
    /// Disable the call follow-up rule, keeping its settings. Disabling a rule that is not
    /// enabled changes nothing.
    DisableCallFollowUpRule { at: DateTime<Utc> },
}
