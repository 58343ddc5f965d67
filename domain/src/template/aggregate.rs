//! The `Template` aggregate's state, its command handling and rendering.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{SubmitTemplate, TemplateCommand};
use super::error::TemplateError;
use super::events::TemplateEvent;
use super::values::{
    check_body, check_buttons, check_footer, check_header, check_language, check_name, fill, TemplateButton,
    TemplateCategory, TemplateHeader, TemplateStatus,
};

/// A WhatsApp message template of one tenant, in one language.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Template {
    name: String,
    language: String,
    category: Option<TemplateCategory>,
    body: String,
    buttons: Vec<TemplateButton>,
    variable_count: usize,
    /// 0 until submitted.
    version: u32,
    status: Option<TemplateStatus>,
    provider_template_id: Option<String>,
    rejection_reason: Option<String>,
    #[serde(default)]
    header: Option<TemplateHeader>,
    #[serde(default)]
    footer: Option<String>,
    /// Why WhatsApp paused or disabled it, while so.
    #[serde(default)]
    status_reason: Option<String>,
    /// WhatsApp's id of this name and language, kept across versions (a later version edits
    /// the same template at WhatsApp).
    #[serde(default)]
    meta_id: Option<String>,
}

impl Template {
    /// The status, once submitted.
    pub fn status(&self) -> Option<TemplateStatus> {
        self.status
    }

    /// The current version (1 for the first submission, 0 before).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The template's language.
    pub fn language(&self) -> &str {
        &self.language
    }

    /// The category, once submitted.
    pub fn category(&self) -> Option<TemplateCategory> {
        self.category
    }

    /// The body of the current version.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The buttons of the current version.
    pub fn buttons(&self) -> &[TemplateButton] {
        &self.buttons
    }

    /// The number of distinct variables of the current version.
    pub fn variable_count(&self) -> usize {
        self.variable_count
    }

    /// WhatsApp's id of the approved template.
    pub fn provider_template_id(&self) -> Option<&str> {
        self.provider_template_id.as_deref()
    }

    /// The header of the current version.
    pub fn header(&self) -> Option<&TemplateHeader> {
        self.header.as_ref()
    }

    /// The footer of the current version.
    pub fn footer(&self) -> Option<&str> {
        self.footer.as_deref()
    }

    /// WhatsApp's id of this name and language, once it gave one (kept across versions: a
    /// later version is an edit of the same template there).
    pub fn meta_id(&self) -> Option<&str> {
        self.meta_id.as_deref()
    }

    /// Why WhatsApp paused or disabled the template, while so.
    pub fn status_reason(&self) -> Option<&str> {
        self.status_reason.as_deref()
    }

    /// Refuses a send's header parameter that does not fit the header
    /// ([`TemplateError::HeaderParameterMismatch`]): a header with `{{1}}` needs a text, a media
    /// header an http(s) link, any other header (or none) nothing.
    pub fn check_header_parameter(&self, parameter: Option<&str>) -> Result<(), TemplateError> {
        let needed = self.header.as_ref().and_then(TemplateHeader::parameter);
        let parameter = parameter.map(str::trim).filter(|p| !p.is_empty());
        match (needed, parameter) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(TemplateError::HeaderParameterMismatch {
                detail: "this template's header takes no parameter".into(),
            }),
            (Some(what), None) => Err(TemplateError::HeaderParameterMismatch {
                detail: format!("this template's header needs {what}"),
            }),
            (Some(_), Some(link)) if matches!(self.header, Some(TemplateHeader::Media { .. })) => {
                if (link.starts_with("https://") || link.starts_with("http://")) && !link.contains(char::is_whitespace)
                {
                    Ok(())
                } else {
                    Err(TemplateError::HeaderParameterMismatch {
                        detail: "a media header's parameter is an http(s) link to the file".into(),
                    })
                }
            }
            (Some(_), Some(_)) => Ok(()),
        }
    }

    /// WhatsApp's reason of the last rejection, while rejected.
    pub fn rejection_reason(&self) -> Option<&str> {
        self.rejection_reason.as_deref()
    }

    /// The body with `{{n}}` filled by `params[n - 1]`, for the sender. Refused unless the
    /// template is approved ([`TemplateError::TemplateNotApproved`]) and there is exactly one
    /// parameter per variable ([`TemplateError::WrongParameterCount`]). Parameters are inserted
    /// as given, in one pass. The result may hold personal data: seal it before storing it.
    pub fn render(&self, params: &[String]) -> Result<String, TemplateError> {
        if self.status != Some(TemplateStatus::Approved) {
            return Err(TemplateError::TemplateNotApproved);
        }
        fill(&self.body, params)
    }

    fn submit(&self, cmd: SubmitTemplate) -> Result<Option<TemplateEvent>, TemplateError> {
        check_name(&cmd.name)?;
        check_language(&cmd.language)?;
        let variable_count = check_body(&cmd.body)?;
        let buttons = check_buttons(cmd.buttons)?;
        let header = check_header(cmd.header)?;
        let footer = check_footer(cmd.footer)?;
        let Some(status) = self.status else {
            return Ok(Some(TemplateEvent::TemplateSubmitted {
                name: cmd.name,
                language: cmd.language,
                category: cmd.category,
                body: cmd.body,
                buttons,
                variable_count,
                version: 1,
                at: cmd.at,
                header,
                footer,
            }));
        };
        if cmd.name != self.name || cmd.language != self.language {
            return Err(TemplateError::NotThisTemplate {
                name: self.name.clone(),
                language: self.language.clone(),
            });
        }
        let unchanged = self.category == Some(cmd.category)
            && self.body == cmd.body
            && self.buttons == buttons
            && self.header == header
            && self.footer == footer;
        match (status, unchanged) {
            (TemplateStatus::Pending | TemplateStatus::Approved | TemplateStatus::Paused, true) => Ok(None),
            (TemplateStatus::Pending | TemplateStatus::Approved | TemplateStatus::Paused, false) => {
                Err(TemplateError::TemplateLocked { status })
            }
            (TemplateStatus::Rejected | TemplateStatus::Disabled, true) => Err(TemplateError::UnchangedSinceRejection),
            (TemplateStatus::Rejected | TemplateStatus::Disabled, false) => {
                Ok(Some(TemplateEvent::TemplateSubmitted {
                    name: cmd.name,
                    language: cmd.language,
                    category: cmd.category,
                    body: cmd.body,
                    buttons,
                    variable_count,
                    version: self.version.saturating_add(1),
                    at: cmd.at,
                    header,
                    footer,
                }))
            }
        }
    }

    /// Where a decision may be recorded: `Ok(true)` from pending, `Ok(false)` when `repeat`
    /// is the decision already made.
    fn decidable(&self, repeat: TemplateStatus) -> Result<bool, TemplateError> {
        match self.status {
            None => Err(TemplateError::TemplateNotSubmitted),
            Some(TemplateStatus::Pending) => Ok(true),
            Some(status) if status == repeat => Ok(false),
            Some(status) => Err(TemplateError::TemplateNotPending { status }),
        }
    }

    fn approve(&self, provider_template_id: String, at: DateTime<Utc>) -> Result<Option<TemplateEvent>, TemplateError> {
        if provider_template_id.trim().is_empty() {
            return Err(TemplateError::MissingProviderTemplateId);
        }
        // WhatsApp reinstates a paused template by approving it again, and approves a rejected
        // one whose appeal succeeded (the version it reviewed: the id it was sent under).
        let reinstated = self.status == Some(TemplateStatus::Paused)
            || (self.status == Some(TemplateStatus::Rejected)
                && self.provider_template_id.as_deref() == Some(provider_template_id.as_str()));
        Ok(
            (reinstated || self.decidable(TemplateStatus::Approved)?).then_some(TemplateEvent::TemplateApproved {
                provider_template_id,
                version: self.version,
                at,
            }),
        )
    }

    fn sent_for_review(
        &self,
        provider_template_id: String,
        at: DateTime<Utc>,
    ) -> Result<Option<TemplateEvent>, TemplateError> {
        if provider_template_id.trim().is_empty() {
            return Err(TemplateError::MissingProviderTemplateId);
        }
        // Recorded once per version, whatever WhatsApp decided meanwhile (its decision may
        // arrive before the answer to the submission is recorded).
        match (self.status, &self.provider_template_id) {
            (None, _) => Err(TemplateError::TemplateNotSubmitted),
            (Some(_), Some(known)) if *known == provider_template_id => Ok(None),
            (Some(_), Some(known)) => Err(TemplateError::AlreadySentForReview {
                provider_template_id: known.clone(),
            }),
            (Some(_), None) => Ok(Some(TemplateEvent::TemplateSentForReview {
                provider_template_id,
                version: self.version,
                at,
            })),
        }
    }

    fn pause(&self, reason: Option<String>, at: DateTime<Utc>) -> Result<Option<TemplateEvent>, TemplateError> {
        match self.status {
            None => Err(TemplateError::TemplateNotSubmitted),
            Some(TemplateStatus::Paused) => Ok(None),
            Some(TemplateStatus::Approved) => Ok(Some(TemplateEvent::TemplatePaused {
                reason,
                version: self.version,
                at,
            })),
            Some(status) => Err(TemplateError::TemplateNotLive { status }),
        }
    }

    fn disable(&self, reason: Option<String>, at: DateTime<Utc>) -> Result<Option<TemplateEvent>, TemplateError> {
        match self.status {
            None => Err(TemplateError::TemplateNotSubmitted),
            Some(TemplateStatus::Disabled) => Ok(None),
            Some(TemplateStatus::Approved | TemplateStatus::Paused) => Ok(Some(TemplateEvent::TemplateDisabled {
                reason,
                version: self.version,
                at,
            })),
            Some(status) => Err(TemplateError::TemplateNotLive { status }),
        }
    }

    fn reject(&self, reason: String, at: DateTime<Utc>) -> Result<Option<TemplateEvent>, TemplateError> {
        Ok(self
            .decidable(TemplateStatus::Rejected)?
            .then_some(TemplateEvent::TemplateRejected {
                reason,
                version: self.version,
                at,
            }))
    }
}

impl Aggregate for Template {
    const TYPE: &'static str = "Template";
    type Command = TemplateCommand;
    type Event = TemplateEvent;
    type Error = TemplateError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            TemplateCommand::SubmitTemplate(cmd) => self.submit(cmd)?,
            TemplateCommand::ApproveTemplate {
                provider_template_id,
                at,
            } => self.approve(provider_template_id, at)?,
            TemplateCommand::RejectTemplate { reason, at } => self.reject(reason, at)?,
            TemplateCommand::RecordSentForReview {
                provider_template_id,
                at,
            } => self.sent_for_review(provider_template_id, at)?,
            TemplateCommand::PauseTemplate { reason, at } => self.pause(reason, at)?,
            TemplateCommand::DisableTemplate { reason, at } => self.disable(reason, at)?,
        };
        if let Some(event) = event {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            TemplateEvent::TemplateSubmitted {
                name,
                language,
                category,
                body,
                buttons,
                variable_count,
                version,
                header,
                footer,
                ..
            } => {
                self.name = name;
                self.language = language;
                self.category = Some(category);
                self.body = body;
                self.buttons = buttons;
                self.variable_count = variable_count;
                self.version = version;
                self.status = Some(TemplateStatus::Pending);
                self.provider_template_id = None;
                self.rejection_reason = None;
                self.header = header;
                self.footer = footer;
                self.status_reason = None;
            }
            TemplateEvent::TemplateApproved {
                provider_template_id, ..
            } => {
                self.status = Some(TemplateStatus::Approved);
                self.meta_id = Some(provider_template_id.clone());
                self.provider_template_id = Some(provider_template_id);
                self.status_reason = None;
            }
            TemplateEvent::TemplateRejected { reason, .. } => {
                self.status = Some(TemplateStatus::Rejected);
                self.rejection_reason = Some(reason);
            }
            TemplateEvent::TemplateSentForReview {
                provider_template_id, ..
            } => {
                self.meta_id = Some(provider_template_id.clone());
                self.provider_template_id = Some(provider_template_id);
            }
            TemplateEvent::TemplatePaused { reason, .. } => {
                self.status = Some(TemplateStatus::Paused);
                self.status_reason = reason;
            }
            TemplateEvent::TemplateDisabled { reason, .. } => {
                self.status = Some(TemplateStatus::Disabled);
                self.status_reason = reason;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::ButtonKind;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use cqrs_es::DomainEvent;
    use proptest::prelude::*;

    type Given = TestFramework<Template>;

    const BODY: &str = "Hi {{1}}, your installation is booked for {{2}}.";

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn yes() -> TemplateButton {
        TemplateButton {
            kind: ButtonKind::QuickReply,
            text: "Yes".into(),
            value: None,
        }
    }

    fn submit(body: &str) -> SubmitTemplate {
        SubmitTemplate {
            name: "booking_confirmed".into(),
            language: "en_US".into(),
            category: TemplateCategory::Utility,
            body: body.into(),
            buttons: vec![yes()],
            at: at(8),
            header: None,
            footer: None,
        }
    }

    fn submitted(body: &str, variable_count: usize, version: u32) -> TemplateEvent {
        TemplateEvent::TemplateSubmitted {
            name: "booking_confirmed".into(),
            language: "en_US".into(),
            category: TemplateCategory::Utility,
            body: body.into(),
            buttons: vec![yes()],
            variable_count,
            version,
            at: at(8),
            header: None,
            footer: None,
        }
    }

    fn approved(version: u32) -> TemplateEvent {
        TemplateEvent::TemplateApproved {
            provider_template_id: "wa_tpl_1".into(),
            version,
            at: at(9),
        }
    }

    fn rejected(version: u32) -> TemplateEvent {
        TemplateEvent::TemplateRejected {
            reason: "INVALID_FORMAT".into(),
            version,
            at: at(9),
        }
    }

    fn approve(id: &str) -> TemplateCommand {
        TemplateCommand::ApproveTemplate {
            provider_template_id: id.into(),
            at: at(9),
        }
    }

    fn reject() -> TemplateCommand {
        TemplateCommand::RejectTemplate {
            reason: "INVALID_FORMAT".into(),
            at: at(9),
        }
    }

    fn refused(cmd: SubmitTemplate, error: TemplateError) {
        Given::with(())
            .given_no_previous_events()
            .when(TemplateCommand::SubmitTemplate(cmd))
            .then_expect_error(error);
    }

    fn state(events: &[TemplateEvent]) -> Template {
        let mut template = Template::default();
        for event in events {
            template.apply(event.clone());
        }
        template
    }

    // SubmitTemplate

    fn paused() -> TemplateEvent {
        TemplateEvent::TemplatePaused {
            reason: Some("Low quality rating".into()),
            version: 1,
            at: at(10),
        }
    }

    fn disabled() -> TemplateEvent {
        TemplateEvent::TemplateDisabled {
            reason: None,
            version: 1,
            at: at(11),
        }
    }

    #[test]
    fn the_pending_version_is_sent_for_review_once_under_metas_id() {
        let sent = TemplateEvent::TemplateSentForReview {
            provider_template_id: "wa_tpl_1".into(),
            version: 1,
            at: at(9),
        };
        let record = |id: &str| TemplateCommand::RecordSentForReview {
            provider_template_id: id.into(),
            at: at(9),
        };
        Given::with(())
            .given(vec![submitted(BODY, 2, 1)])
            .when(record("wa_tpl_1"))
            .then_expect_events(vec![sent.clone()]);
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), sent.clone()])
            .when(record("wa_tpl_1"))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), sent.clone()])
            .when(record("wa_tpl_2"))
            .then_expect_error(TemplateError::AlreadySentForReview {
                provider_template_id: "wa_tpl_1".into(),
            });
        Given::with(())
            .given(vec![submitted(BODY, 2, 1)])
            .when(record(" "))
            .then_expect_error(TemplateError::MissingProviderTemplateId);
        Given::with(())
            .given_no_previous_events()
            .when(record("wa_tpl_1"))
            .then_expect_error(TemplateError::TemplateNotSubmitted);
        // Sent for review, it is still pending: not sendable, and a decision follows.
        let template = state(&[submitted(BODY, 2, 1), sent.clone()]);
        assert_eq!(template.status(), Some(TemplateStatus::Pending));
        assert_eq!(template.provider_template_id(), Some("wa_tpl_1"));
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), sent])
            .when(approve("wa_tpl_1"))
            .then_expect_events(vec![approved(1)]);
    }

    #[test]
    fn whatsapp_pauses_reinstates_and_disables_an_approved_template() {
        let pause = || TemplateCommand::PauseTemplate {
            reason: Some("Low quality rating".into()),
            at: at(10),
        };
        let disable = || TemplateCommand::DisableTemplate {
            reason: None,
            at: at(11),
        };
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), approved(1)])
            .when(pause())
            .then_expect_events(vec![paused()]);
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), approved(1), paused()])
            .when(pause())
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![submitted(BODY, 2, 1)])
            .when(pause())
            .then_expect_error(TemplateError::TemplateNotLive {
                status: TemplateStatus::Pending,
            });
        // Reinstated: approved again.
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), approved(1), paused()])
            .when(approve("wa_tpl_1"))
            .then_expect_events(vec![approved(1)]);
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), approved(1), paused()])
            .when(disable())
            .then_expect_events(vec![disabled()]);
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), rejected(1)])
            .when(disable())
            .then_expect_error(TemplateError::TemplateNotLive {
                status: TemplateStatus::Rejected,
            });
        let template = state(&[submitted(BODY, 2, 1), approved(1), paused()]);
        assert_eq!(template.status(), Some(TemplateStatus::Paused));
        assert_eq!(template.status_reason(), Some("Low quality rating"));
        assert_eq!(
            template.render(&["a".into(), "b".into()]),
            Err(TemplateError::TemplateNotApproved)
        );
        // Disabled is final for sends; a changed template is the next version.
        let mut changed = submit("Hello {{1}}, your kit ships {{2}}.");
        changed.footer = Some("Solar Co".into());
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), approved(1), disabled()])
            .when(TemplateCommand::SubmitTemplate(submit(BODY)))
            .then_expect_error(TemplateError::UnchangedSinceRejection);
        let template = state(&[submitted(BODY, 2, 1), approved(1), disabled()]);
        let mut sink_events = Vec::new();
        if let Ok(Some(event)) = template.submit(changed) {
            sink_events.push(event);
        }
        assert!(matches!(
            sink_events.first(),
            Some(TemplateEvent::TemplateSubmitted { version: 2, .. })
        ));
    }

    #[test]
    fn headers_and_footers_are_checked_and_a_send_gives_the_header_what_it_needs() {
        use crate::template::{HeaderFormat, TemplateHeader};
        let with = |header: Option<TemplateHeader>, footer: Option<&str>| SubmitTemplate {
            header,
            footer: footer.map(str::to_string),
            ..submit(BODY)
        };
        refused(
            with(
                Some(TemplateHeader::Text {
                    text: "{{1}} and {{2}}".into(),
                }),
                None,
            ),
            TemplateError::InvalidHeader {
                reason: "a header text has at most one variable, {{1}}".into(),
            },
        );
        refused(with(None, Some("Thanks {{1}}")), TemplateError::InvalidFooter);
        refused(with(None, Some(&"x".repeat(61))), TemplateError::InvalidFooter);
        let texted = state(&[TemplateEvent::TemplateSubmitted {
            name: "booking_confirmed".into(),
            language: "en_US".into(),
            category: TemplateCategory::Utility,
            body: BODY.into(),
            buttons: vec![yes()],
            variable_count: 2,
            version: 1,
            at: at(8),
            header: Some(TemplateHeader::Text {
                text: "Order {{1}}".into(),
            }),
            footer: None,
        }]);
        assert!(texted.check_header_parameter(Some("K-1")).is_ok());
        assert!(texted.check_header_parameter(None).is_err());
        let media = state(&[TemplateEvent::TemplateSubmitted {
            name: "booking_confirmed".into(),
            language: "en_US".into(),
            category: TemplateCategory::Utility,
            body: BODY.into(),
            buttons: vec![],
            variable_count: 2,
            version: 1,
            at: at(8),
            header: Some(TemplateHeader::Media {
                format: HeaderFormat::Image,
            }),
            footer: None,
        }]);
        assert!(media.check_header_parameter(Some("https://example.com/a.jpg")).is_ok());
        assert!(media.check_header_parameter(Some("a.jpg")).is_err());
        assert!(media.check_header_parameter(None).is_err());
        let plain = state(&[submitted(BODY, 2, 1)]);
        assert!(plain.check_header_parameter(None).is_ok());
        assert!(plain.check_header_parameter(Some("x")).is_err());
    }

    #[test]
    fn a_new_template_is_submitted_pending_with_its_variable_count() {
        Given::with(())
            .given_no_previous_events()
            .when(TemplateCommand::SubmitTemplate(submit(BODY)))
            .then_expect_events(vec![submitted(BODY, 2, 1)]);
        let template = state(&[submitted(BODY, 2, 1)]);
        assert_eq!(template.status(), Some(TemplateStatus::Pending));
        assert_eq!((template.version(), template.variable_count()), (1, 2));
    }

    #[test]
    fn buttons_are_stored_normalized() {
        let mut cmd = submit(BODY);
        cmd.buttons = vec![TemplateButton {
            kind: ButtonKind::PhoneNumber,
            text: " Call us ".into(),
            value: Some("263 77 123 4567".into()),
        }];
        let Ok(mut events) = Given::with(())
            .given_no_previous_events()
            .when(TemplateCommand::SubmitTemplate(cmd))
            .inspect_result()
        else {
            panic!("accepted")
        };
        let Some(TemplateEvent::TemplateSubmitted { buttons, .. }) = events.pop() else {
            panic!("submitted")
        };
        assert_eq!(buttons[0].text, "Call us");
        assert_eq!(buttons[0].value.as_deref(), Some("+263771234567"));
    }

    #[test]
    fn an_invalid_template_name_is_refused() {
        refused(
            SubmitTemplate {
                name: "Booking Confirmed".into(),
                ..submit(BODY)
            },
            TemplateError::InvalidTemplateName {
                name: "Booking Confirmed".into(),
            },
        );
    }

    #[test]
    fn an_invalid_language_is_refused() {
        refused(
            SubmitTemplate {
                language: "en-us".into(),
                ..submit(BODY)
            },
            TemplateError::InvalidLanguage {
                language: "en-us".into(),
            },
        );
    }

    #[test]
    fn an_empty_or_overlong_body_is_refused() {
        refused(submit(""), TemplateError::InvalidBody { chars: 0 });
        refused(submit(&"a".repeat(1025)), TemplateError::InvalidBody { chars: 1025 });
    }

    #[test]
    fn variables_with_a_gap_are_refused() {
        refused(
            submit("Hi {{1}}, see you on {{3}}"),
            TemplateError::VariablesNotContiguous {
                found: vec!["1".into(), "3".into()],
            },
        );
    }

    #[test]
    fn more_than_ten_buttons_are_refused() {
        refused(
            SubmitTemplate {
                buttons: vec![yes(); 11],
                ..submit(BODY)
            },
            TemplateError::TooManyButtons { count: 11 },
        );
    }

    #[test]
    fn a_third_url_button_is_refused() {
        let url = TemplateButton {
            kind: ButtonKind::Url,
            text: "Track".into(),
            value: Some("https://acme.example/t".into()),
        };
        refused(
            SubmitTemplate {
                buttons: vec![url.clone(), url.clone(), url],
                ..submit(BODY)
            },
            TemplateError::TooManyButtonsOfKind {
                kind: ButtonKind::Url,
                max: 2,
            },
        );
    }

    #[test]
    fn a_button_text_over_25_characters_is_refused() {
        let long = TemplateButton {
            text: "Yes please, book me in now".into(),
            ..yes()
        };
        refused(
            SubmitTemplate {
                buttons: vec![yes(), long],
                ..submit(BODY)
            },
            TemplateError::InvalidButtonText { index: 1 },
        );
    }

    #[test]
    fn a_url_button_without_a_url_is_refused() {
        let url = TemplateButton {
            kind: ButtonKind::Url,
            text: "Track".into(),
            value: None,
        };
        refused(
            SubmitTemplate {
                buttons: vec![url],
                ..submit(BODY)
            },
            TemplateError::InvalidButtonValue { index: 0 },
        );
    }

    #[test]
    fn resubmitting_the_same_template_while_pending_or_approved_records_nothing() {
        let mut again = submit(BODY);
        again.buttons[0].text = " Yes ".into();
        again.at = at(11);
        for history in [vec![submitted(BODY, 2, 1)], vec![submitted(BODY, 2, 1), approved(1)]] {
            Given::with(())
                .given(history)
                .when(TemplateCommand::SubmitTemplate(again.clone()))
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn changing_a_pending_or_approved_template_is_refused() {
        for (history, status) in [
            (vec![submitted(BODY, 2, 1)], TemplateStatus::Pending),
            (vec![submitted(BODY, 2, 1), approved(1)], TemplateStatus::Approved),
        ] {
            Given::with(())
                .given(history)
                .when(TemplateCommand::SubmitTemplate(submit("Hi {{1}}")))
                .then_expect_error(TemplateError::TemplateLocked { status });
        }
        Given::with(())
            .given(vec![submitted(BODY, 2, 1)])
            .when(TemplateCommand::SubmitTemplate(SubmitTemplate {
                category: TemplateCategory::Marketing,
                ..submit(BODY)
            }))
            .then_expect_error(TemplateError::TemplateLocked {
                status: TemplateStatus::Pending,
            });
    }

    #[test]
    fn a_changed_template_is_resubmitted_after_rejection_as_the_next_version() {
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), rejected(1)])
            .when(TemplateCommand::SubmitTemplate(submit("Hi {{1}}, you are booked.")))
            .then_expect_events(vec![submitted("Hi {{1}}, you are booked.", 1, 2)]);
        let template = state(&[submitted(BODY, 2, 1), rejected(1), submitted("Hi {{1}}", 1, 2)]);
        assert_eq!(template.status(), Some(TemplateStatus::Pending));
        assert_eq!(template.rejection_reason(), None);
    }

    #[test]
    fn an_unchanged_template_is_not_resubmitted_after_rejection() {
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), rejected(1)])
            .when(TemplateCommand::SubmitTemplate(submit(BODY)))
            .then_expect_error(TemplateError::UnchangedSinceRejection);
    }

    #[test]
    fn another_name_or_language_on_this_stream_is_refused() {
        for cmd in [
            SubmitTemplate {
                name: "other".into(),
                ..submit(BODY)
            },
            SubmitTemplate {
                language: "pt_BR".into(),
                ..submit(BODY)
            },
        ] {
            Given::with(())
                .given(vec![submitted(BODY, 2, 1), rejected(1)])
                .when(TemplateCommand::SubmitTemplate(cmd))
                .then_expect_error(TemplateError::NotThisTemplate {
                    name: "booking_confirmed".into(),
                    language: "en_US".into(),
                });
        }
    }

    // ApproveTemplate

    #[test]
    fn a_pending_template_is_approved_with_the_providers_id() {
        Given::with(())
            .given(vec![submitted(BODY, 2, 1)])
            .when(approve("wa_tpl_1"))
            .then_expect_events(vec![approved(1)]);
        let template = state(&[submitted(BODY, 2, 1), approved(1)]);
        assert_eq!(template.provider_template_id(), Some("wa_tpl_1"));
    }

    #[test]
    fn approving_again_records_nothing() {
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), approved(1)])
            .when(approve("wa_tpl_other"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn approving_a_rejected_template_is_refused() {
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), rejected(1)])
            .when(approve("wa_tpl_1"))
            .then_expect_error(TemplateError::TemplateNotPending {
                status: TemplateStatus::Rejected,
            });
    }

    #[test]
    fn approving_a_template_never_submitted_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(approve("wa_tpl_1"))
            .then_expect_error(TemplateError::TemplateNotSubmitted);
    }

    #[test]
    fn an_approval_without_the_providers_id_is_refused() {
        Given::with(())
            .given(vec![submitted(BODY, 2, 1)])
            .when(approve(" "))
            .then_expect_error(TemplateError::MissingProviderTemplateId);
    }

    // RejectTemplate

    #[test]
    fn a_pending_template_is_rejected_with_the_providers_reason() {
        Given::with(())
            .given(vec![submitted(BODY, 2, 1)])
            .when(reject())
            .then_expect_events(vec![rejected(1)]);
        let template = state(&[submitted(BODY, 2, 1), rejected(1)]);
        assert_eq!(template.rejection_reason(), Some("INVALID_FORMAT"));
    }

    #[test]
    fn rejecting_again_records_nothing() {
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), rejected(1)])
            .when(reject())
            .then_expect_events(vec![]);
    }

    #[test]
    fn rejecting_an_approved_template_is_refused() {
        Given::with(())
            .given(vec![submitted(BODY, 2, 1), approved(1)])
            .when(reject())
            .then_expect_error(TemplateError::TemplateNotPending {
                status: TemplateStatus::Approved,
            });
    }

    #[test]
    fn rejecting_a_template_never_submitted_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(reject())
            .then_expect_error(TemplateError::TemplateNotSubmitted);
    }

    // render

    #[test]
    fn an_approved_template_renders_with_one_parameter_per_variable() {
        let template = state(&[submitted(BODY, 2, 1), approved(1)]);
        let params = ["Tendai".to_string(), "Friday".to_string()];
        assert_eq!(
            template.render(&params),
            Ok("Hi Tendai, your installation is booked for Friday.".to_string())
        );
    }

    #[test]
    fn rendering_with_the_wrong_number_of_parameters_is_refused() {
        let template = state(&[submitted(BODY, 2, 1), approved(1)]);
        assert_eq!(
            template.render(&["Tendai".to_string()]),
            Err(TemplateError::WrongParameterCount { expected: 2, got: 1 })
        );
    }

    #[test]
    fn a_template_not_approved_does_not_render() {
        let params = ["Tendai".to_string(), "Friday".to_string()];
        for history in [
            vec![],
            vec![submitted(BODY, 2, 1)],
            vec![submitted(BODY, 2, 1), rejected(1)],
        ] {
            assert_eq!(state(&history).render(&params), Err(TemplateError::TemplateNotApproved));
        }
    }

    // Contracts

    #[test]
    fn every_event_type_is_listed_and_named_after_its_variant() {
        let sent = TemplateEvent::TemplateSentForReview {
            provider_template_id: "wa_tpl_1".into(),
            version: 1,
            at: at(9),
        };
        let samples = vec![
            submitted(BODY, 2, 1),
            approved(1),
            rejected(1),
            sent,
            paused(),
            disabled(),
        ];
        let types: Vec<String> = samples.iter().map(DomainEvent::event_type).collect();
        assert_eq!(types, TemplateEvent::TYPES);
        assert!(samples.iter().all(|e| e.event_version() == "1.0"));
        for event in samples {
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<TemplateEvent>(&json).unwrap(), event);
        }
    }

    // Properties

    #[derive(Debug, Clone)]
    enum Op {
        /// Submit one of three bodies.
        Submit(usize),
        Approve,
        Reject,
    }

    const BODIES: [&str; 3] = ["Hello", "Hi {{1}}", "Hi {{1}}, on {{2}}"];

    fn any_op() -> impl Strategy<Value = Op> {
        prop_oneof![(0usize..3).prop_map(Op::Submit), Just(Op::Approve), Just(Op::Reject),]
    }

    fn command(op: &Op) -> TemplateCommand {
        match op {
            Op::Submit(i) => TemplateCommand::SubmitTemplate(submit(BODIES[*i])),
            Op::Approve => approve("wa_tpl_1"),
            Op::Reject => reject(),
        }
    }

    /// The reference model: status, version and the body under review.
    #[derive(Default)]
    struct Model {
        status: Option<TemplateStatus>,
        version: u32,
        body: Option<usize>,
    }

    impl Model {
        /// What the model expects: `Err` for a refusal, `Ok(changed)` otherwise.
        fn step(&mut self, op: &Op) -> Result<bool, TemplateError> {
            use TemplateStatus::{Approved, Pending, Rejected};
            match (op, self.status) {
                (Op::Submit(i), None) => {
                    (self.status, self.version, self.body) = (Some(Pending), 1, Some(*i));
                    Ok(true)
                }
                (Op::Submit(i), Some(status @ (Pending | Approved))) => {
                    if self.body == Some(*i) {
                        Ok(false)
                    } else {
                        Err(TemplateError::TemplateLocked { status })
                    }
                }
                (Op::Submit(i), Some(Rejected)) => {
                    if self.body == Some(*i) {
                        return Err(TemplateError::UnchangedSinceRejection);
                    }
                    (self.status, self.version, self.body) = (Some(Pending), self.version + 1, Some(*i));
                    Ok(true)
                }
                (_, None) => Err(TemplateError::TemplateNotSubmitted),
                (Op::Approve, Some(Pending)) => Ok(self.status.replace(Approved).is_some()),
                (Op::Reject, Some(Pending)) => Ok(self.status.replace(Rejected).is_some()),
                (Op::Approve, Some(Approved)) | (Op::Reject, Some(Rejected)) => Ok(false),
                (_, Some(status)) => Err(TemplateError::TemplateNotPending { status }),
            }
        }
    }

    proptest! {
        #[test]
        fn status_and_version_follow_the_approval_rules(ops in proptest::collection::vec(any_op(), 0..40)) {
            let mut history: Vec<TemplateEvent> = Vec::new();
            let mut template = Template::default();
            let mut model = Model::default();
            for op in &ops {
                let before = template.clone();
                let result = Given::with(()).given(history.clone()).when(command(op)).inspect_result();
                let expected = model.step(op);
                match (&result, &expected) {
                    (Ok(events), Ok(changed)) => prop_assert_eq!(events.len(), usize::from(*changed), "{:?}", op),
                    (Err(got), Err(want)) => prop_assert_eq!(got, want),
                    _ => prop_assert!(false, "{:?}: got {:?}, model {:?}", op, result, expected),
                }
                for event in result.unwrap_or_default() {
                    template.apply(event.clone());
                    history.push(event);
                }
                prop_assert_eq!(template.status(), model.status);
                prop_assert_eq!(template.version(), model.version);
                prop_assert_eq!(template.body(), model.body.map_or("", |i| BODIES[i]));
                // Versions only grow, and only by a resubmission after a rejection.
                prop_assert!(template.version() >= before.version());
                if template.version() > before.version() && before.version() > 0 {
                    prop_assert_eq!(before.status(), Some(TemplateStatus::Rejected));
                }
                // Only an approved template renders.
                let params: Vec<String> = (0..template.variable_count()).map(|i| format!("p{i}")).collect();
                prop_assert_eq!(template.render(&params).is_ok(), template.status() == Some(TemplateStatus::Approved));
            }
        }
    }
}
