//! Refusals of the `AutomationRules` aggregate, named after the rule they enforce.

/// Why an automation rules command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutomationRulesError {
    /// A follow-up delay is 1 minute to 7 days.
    #[error("a follow-up delay of {delay_minutes} minutes is outside 1 to 10080 (7 days)")]
    InvalidDelay { delay_minutes: i64 },
    /// A follow-up rule applies to at least one call outcome.
    #[error("a follow-up rule needs at least one call outcome")]
    NoOutcomes,
    /// A WhatsApp template name is 1 to 512 of a-z, 0-9 and '_'.
    #[error("{template_name:?} is not a WhatsApp template name (1 to 512 of a-z, 0-9 and '_')")]
    InvalidTemplateName { template_name: String },
    /// A template language is a code such as `en` or `en_US`.
    #[error("{language:?} is not a template language code such as en or en_US")]
    InvalidLanguage { language: String },
}

impl AutomationRulesError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidDelay { .. } => "INVALID_DELAY",
            Self::NoOutcomes => "NO_OUTCOMES",
            Self::InvalidTemplateName { .. } => "INVALID_TEMPLATE_NAME",
            Self::InvalidLanguage { .. } => "INVALID_LANGUAGE",
        }
    }
}
