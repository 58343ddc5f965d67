//! Refusals of the `Template` aggregate, named after the rule they enforce.

use super::values::{ButtonKind, TemplateStatus};

/// Why a template command (or a render) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Names are `^[a-z0-9_]{1,512}$`.
    #[error("a template name is 1 to 512 characters of a-z, 0-9 and '_'; got {name:?}")]
    InvalidTemplateName { name: String },
    /// Languages are WhatsApp's codes: `en`, `en_US`, `pt_BR`.
    #[error("a template language is a code like en, en_US or pt_BR; got {language:?}")]
    InvalidLanguage { language: String },
    /// A body is 1 to 1024 characters, not blank.
    #[error("a template body is 1 to 1024 characters and not blank; got {chars} characters")]
    InvalidBody { chars: usize },
    /// Variables are numbered `{{1}}`, `{{2}}`… without gaps.
    #[error("template variables are numbered {{{{1}}}}, {{{{2}}}}… without gaps; found {}", .found.join(", "))]
    VariablesNotContiguous { found: Vec<String> },
    /// A template has at most 10 buttons.
    #[error("a template has at most 10 buttons; got {count}")]
    TooManyButtons { count: usize },
    /// A template has at most 2 URL buttons and 1 phone number button.
    #[error("a template has at most {max} {} button(s)", kind.as_str())]
    TooManyButtonsOfKind { kind: ButtonKind, max: usize },
    /// A button's text is 1 to 25 characters.
    #[error("button {index}: the text is 1 to 25 characters")]
    InvalidButtonText { index: usize },
    /// A quick reply has no value, a URL button an http(s) URL, a phone number button a number.
    #[error("button {index}: the value does not fit the button's kind")]
    InvalidButtonValue { index: usize },
    /// A stream holds one template (name and language); another is refused.
    #[error("this stream holds the template {name} ({language}); another name or language is refused")]
    NotThisTemplate { name: String, language: String },
    /// A pending or approved template cannot be changed; only a rejected one is resubmitted.
    #[error("the template is {} and cannot be changed", status.as_str())]
    TemplateLocked { status: TemplateStatus },
    /// A rejected template is resubmitted only with a change.
    #[error("the template was rejected; change it before submitting it again")]
    UnchangedSinceRejection,
    /// Approval and rejection are about a submitted template.
    #[error("the template was never submitted")]
    TemplateNotSubmitted,
    /// Only a pending template is approved or rejected.
    #[error("the template is {}, not pending", status.as_str())]
    TemplateNotPending { status: TemplateStatus },
    /// An approval carries WhatsApp's template id.
    #[error("an approval needs the provider's template id")]
    MissingProviderTemplateId,
    /// Only an approved template is sent (rendered).
    #[error("the template is not approved")]
    TemplateNotApproved,
    /// A render needs one parameter per variable.
    #[error("the template has {expected} variable(s); got {got} parameter(s)")]
    WrongParameterCount { expected: usize, got: usize },
    /// A header is a text of 1 to 60 characters with at most one variable, or a media.
    #[error("{reason}")]
    InvalidHeader { reason: String },
    /// A footer is 1 to 60 characters without variables.
    #[error("a template footer is 1 to 60 characters without variables")]
    InvalidFooter,
    /// Pausing and disabling are about an approved (or paused) template.
    #[error("the template is {}, not approved", status.as_str())]
    TemplateNotLive { status: TemplateStatus },
    /// WhatsApp's review of the pending version is recorded once per id.
    #[error("the pending version was sent for review as {provider_template_id} already")]
    AlreadySentForReview { provider_template_id: String },
    /// A send gives the header exactly what it needs (a text for a header with `{{1}}`, a
    /// media link for a media header), and nothing for any other header.
    #[error("{detail}")]
    HeaderParameterMismatch { detail: String },
    /// A send, a campaign or a follow-up rule names a template the tenant has.
    #[error("there is no template {name} ({language}); create it and have it approved first")]
    UnknownTemplate { name: String, language: String },
}

impl TemplateError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidTemplateName { .. } => "INVALID_TEMPLATE_NAME",
            Self::InvalidLanguage { .. } => "INVALID_LANGUAGE",
            Self::InvalidBody { .. } => "INVALID_BODY",
            Self::VariablesNotContiguous { .. } => "VARIABLES_NOT_CONTIGUOUS",
            Self::TooManyButtons { .. } => "TOO_MANY_BUTTONS",
            Self::TooManyButtonsOfKind { .. } => "TOO_MANY_BUTTONS_OF_KIND",
            Self::InvalidButtonText { .. } => "INVALID_BUTTON_TEXT",
            Self::InvalidButtonValue { .. } => "INVALID_BUTTON_VALUE",
            Self::NotThisTemplate { .. } => "NOT_THIS_TEMPLATE",
            Self::TemplateLocked { .. } => "TEMPLATE_LOCKED",
            Self::UnchangedSinceRejection => "UNCHANGED_SINCE_REJECTION",
            Self::TemplateNotSubmitted => "TEMPLATE_NOT_SUBMITTED",
            Self::TemplateNotPending { .. } => "TEMPLATE_NOT_PENDING",
            Self::MissingProviderTemplateId => "MISSING_PROVIDER_TEMPLATE_ID",
            Self::TemplateNotApproved => "TEMPLATE_NOT_APPROVED",
            Self::WrongParameterCount { .. } => "WRONG_PARAMETER_COUNT",
            Self::InvalidHeader { .. } => "INVALID_HEADER",
            Self::InvalidFooter => "INVALID_FOOTER",
            Self::TemplateNotLive { .. } => "TEMPLATE_NOT_LIVE",
            Self::AlreadySentForReview { .. } => "ALREADY_SENT_FOR_REVIEW",
            Self::HeaderParameterMismatch { .. } => "HEADER_PARAMETER_MISMATCH",
            Self::UnknownTemplate { .. } => "UNKNOWN_TEMPLATE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_screaming_snake_case_and_distinct() {
        let all = [
            TemplateError::InvalidTemplateName { name: "X".into() },
            TemplateError::InvalidLanguage { language: "x".into() },
            TemplateError::InvalidBody { chars: 0 },
            TemplateError::VariablesNotContiguous {
                found: vec!["2".into()],
            },
            TemplateError::TooManyButtons { count: 11 },
            TemplateError::TooManyButtonsOfKind {
                kind: ButtonKind::Url,
                max: 2,
            },
            TemplateError::InvalidButtonText { index: 0 },
            TemplateError::InvalidButtonValue { index: 0 },
            TemplateError::NotThisTemplate {
                name: "a".into(),
                language: "en".into(),
            },
            TemplateError::TemplateLocked {
                status: TemplateStatus::Pending,
            },
            TemplateError::UnchangedSinceRejection,
            TemplateError::TemplateNotSubmitted,
            TemplateError::TemplateNotPending {
                status: TemplateStatus::Approved,
            },
            TemplateError::MissingProviderTemplateId,
            TemplateError::TemplateNotApproved,
            TemplateError::WrongParameterCount { expected: 1, got: 0 },
            TemplateError::UnknownTemplate {
                name: "a".into(),
                language: "en".into(),
            },
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(TemplateError::code).collect();
        assert_eq!(codes.len(), all.len());
        assert!(codes
            .iter()
            .all(|c| c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_')));
        assert_eq!(
            TemplateError::VariablesNotContiguous {
                found: vec!["2".into()]
            }
            .to_string(),
            "template variables are numbered {{1}}, {{2}}… without gaps; found 2"
        );
    }
}
