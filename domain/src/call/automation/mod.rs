//! The `AutomationRules` aggregate: a tenant's automation settings, today the rule that turns
//! a completed call into a WhatsApp follow-up.
//!
//! Stream id: `<tenant>:automation` ([`AUTOMATION_STREAM_LOCAL_ID`]), one per tenant.
//!
//! Rules held here:
//! - a follow-up delay is 1 minute to 7 days; a rule names at least one call outcome, a valid
//!   WhatsApp template name (`^[a-z0-9_]{1,512}$`) and a language code (`en`, `en_US`);
//! - every change makes a new rule version (1, 2, …); setting the rule in force again, or
//!   disabling a rule that is not enabled, changes nothing;
//! - a call gets a follow-up only while the rule is enabled and names the call's outcome, due
//!   the rule's delay after the call ended ([`AutomationRules::follow_up_for`], read by the
//!   follow-up process manager, which then sends `ScheduleFollowUp` to the call).

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::AutomationRules;
pub use commands::AutomationRulesCommand;
pub use error::AutomationRulesError;
pub use events::AutomationRulesEvent;
pub use values::{
    is_valid_language, is_valid_template_name, CallFollowUpRule, AUTOMATION_STREAM_LOCAL_ID,
    MAX_FOLLOW_UP_DELAY_MINUTES, MIN_FOLLOW_UP_DELAY_MINUTES,
};
