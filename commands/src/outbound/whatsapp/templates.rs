//! Template submissions: each submitted version of a template (`TemplateSubmitted`) goes to
//! Meta's review, `POST /{waba-id}/message_templates` with its name, language, category and
//! components (header, body, footer, buttons), on the tenant's WhatsApp Business Account
//! (`whatsapp_accounts`, `chronicle admin map-account`). The `templates` projector writes a
//! `template_submission_feed` row per version; the sender copies it into its own
//! `template_submissions` ([`Admission`]: a rebuild submits nothing again) and, in each pass,
//! submits the due ones:
//!
//! - Meta takes it (2xx with its id): `TemplateSentForReview` with the id; its decision arrives
//!   later as a `message_template_status_update` webhook (`crate::intake::inbox`), or at once
//!   when the answer already says `APPROVED` / `REJECTED`.
//! - A later version (after a rejection, or once disabled) is an edit of the template WhatsApp
//!   has under this name and language (`POST /{its id}` with the new components), recorded sent
//!   for review under the same id.
//! - Meta already has a template of this name and language (made in its Business Manager, or an
//!   earlier try reached it without an answer): its id is read from the account's list
//!   (`GET /{waba-id}/message_templates?name=…`) and the template is edited as above.
//! - Meta refuses it (another 4xx about the template): `TemplateRejected` with Meta's message as
//!   the reason; a changed template can be submitted again.
//! - Unavailable (5xx, 429 and Meta's rate-limit codes, no connection, a timeout): tried again
//!   with the sender's backoff, for as long as it takes (at the longest backoff once past
//!   `max_attempts`). Refused access (401, 403, 404, Meta's token and permission codes) or no
//!   account mapped: an operator's matter, tried again every minute at least, never recorded
//!   as the template's rejection.
//! - A version that is no longer pending, or not the latest, or already sent for review, is
//!   `superseded`: nothing to submit.
//!
//! Variables need examples for Meta's review: the body's `{{n}}` and a text header's `{{1}}` are
//! given `sample n`. A media header goes without an example file (Meta's resumable upload of an
//! example is not done here), which Meta may refuse: the refusal is recorded as above.

use std::time::Duration;

use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::template::{ButtonKind, Template, TemplateCommand, TemplateHeader, TemplateStatus};
use chronicle_domain::tenant::TenantId;
use chrono::Utc;
use serde_json::{json, Value};
use sqlx::Row;
use tracing::Instrument;

use super::{WhatsAppSender, COMPONENT};
use crate::error::CommandError;
use crate::http::is_retryable;
use crate::workers::{Admission, Queue, Stale};

/// The sender's queue of template submissions.
pub(super) fn queue() -> Queue {
    Queue::new(
        "template_submissions",
        "submission_id",
        "submitting",
        "submission_id, tenant_id, template_id, version, attempts, correlation_id",
        Stale::Retry,
        "found submitting after its sender stopped; submitted again (Meta answers a second submission as a duplicate)",
    )
}

/// The submissions' intake from the `templates` projector's feed.
pub(super) fn admission() -> Admission {
    Admission::new(
        "template_submission_feed",
        "INSERT INTO template_submissions (tenant_id, template_id, version, correlation_id)
         SELECT tenant_id, template_id, version, correlation_id FROM new ORDER BY position
         ON CONFLICT (tenant_id, template_id, version) DO NOTHING",
    )
}

/// What the Graph API answered.
enum Answer {
    /// 2xx, with its body.
    Accepted(Value),
    /// A refusal of the request itself (a 4xx that is not about access or rate), with its body.
    Refused(Value),
}

/// How one submission ended.
enum Outcome {
    /// Meta took it (or had it already).
    Submitted(Option<String>),
    /// Meta refused it: recorded as a rejection.
    Refused,
    /// Nothing to submit.
    Superseded,
    /// Not now: tried again later.
    Retry(String),
    /// Not before the tenant's configuration is made (no account mapped).
    Wait(String),
}

/// The Graph API body of a submission: name, language, category and components.
pub fn render_submission(template: &Template) -> Value {
    let samples = |n: usize| (1..=n).map(|i| format!("sample {i}")).collect::<Vec<_>>();
    let mut components = Vec::new();
    match template.header() {
        Some(TemplateHeader::Text { text }) => {
            let mut header = json!({"type": "HEADER", "format": "TEXT", "text": text});
            if chronicle_domain::template::variable_count(text).unwrap_or(0) > 0 {
                header["example"] = json!({"header_text": samples(1)});
            }
            components.push(header);
        }
        Some(TemplateHeader::Media { format }) => {
            components.push(json!({"type": "HEADER", "format": format.as_str().to_ascii_uppercase()}));
        }
        None => {}
    }
    let mut body = json!({"type": "BODY", "text": template.body()});
    if template.variable_count() > 0 {
        body["example"] = json!({"body_text": [samples(template.variable_count())]});
    }
    components.push(body);
    if let Some(footer) = template.footer() {
        components.push(json!({"type": "FOOTER", "text": footer}));
    }
    if !template.buttons().is_empty() {
        let buttons: Vec<Value> = template
            .buttons()
            .iter()
            .map(|b| match b.kind {
                ButtonKind::QuickReply => json!({"type": "QUICK_REPLY", "text": b.text}),
                ButtonKind::Url => json!({"type": "URL", "text": b.text, "url": b.value}),
                ButtonKind::PhoneNumber => json!({"type": "PHONE_NUMBER", "text": b.text, "phone_number": b.value}),
            })
            .collect();
        components.push(json!({"type": "BUTTONS", "buttons": buttons}));
    }
    json!({
        "name": template.name(),
        "language": template.language(),
        "category": template.category().map(|c| c.as_str().to_ascii_uppercase()),
        "components": components,
    })
}

/// Whether Meta's error says it has a template of this name and language already.
fn duplicate(body: &Value) -> bool {
    let subcode = body["error"]["error_subcode"].as_i64();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase()
        + &body["error"]["error_user_msg"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
    matches!(subcode, Some(2_388_023 | 2_388_024)) || message.contains("already exists")
}

impl WhatsAppSender {
    /// Copies new submissions from the feed, puts stale claims back, and submits up to
    /// `batch_size` due ones. Answers how many were claimed and how many Meta took.
    pub(super) async fn submit_templates(&self) -> Result<(usize, usize), CommandError> {
        self.template_admission.run(&self.pool).await?;
        self.templates
            .release_stale(&self.pool, self.config.stale_after)
            .await?;
        let (mut claimed, mut submitted) = (0, 0);
        while claimed < usize::try_from(self.config.batch_size).unwrap_or(1) {
            let Some(row) = self.templates.claim_one(&self.pool).await? else {
                break;
            };
            claimed += 1;
            let submission_id: i64 = row.try_get("submission_id")?;
            let attempts: i32 = row.try_get("attempts")?;
            let tenant: String = row.try_get("tenant_id")?;
            let correlation: String = row.try_get("correlation_id")?;
            let span = tracing::info_span!(
                "outbound.template_submission",
                tenant.id = %tenant,
                correlation.id = %correlation,
                submission.id = submission_id,
                submission.attempt = attempts,
            );
            let outcome = Box::pin(self.submit_template(&row).instrument(span.clone())).await;
            let _entered = span.enter();
            match outcome {
                Ok(Outcome::Submitted(note)) => {
                    submitted += 1;
                    tracing::info!("template submitted for WhatsApp's review");
                    self.settle_submission(submission_id, "submitted", note.as_deref(), 0.0)
                        .await?;
                }
                Ok(Outcome::Refused) => {
                    self.settle_submission(submission_id, "refused", None, 0.0).await?;
                }
                Ok(Outcome::Superseded) => {
                    self.settle_submission(submission_id, "superseded", None, 0.0).await?;
                }
                Ok(Outcome::Wait(error)) => {
                    // A configuration to be made (an account to map): a minute at least.
                    let delay = self.config.delay(attempts).max(Duration::from_secs(60)).as_secs_f64();
                    tracing::warn!(error = %error, retry_in_s = delay, "template not submitted yet");
                    self.settle_submission(submission_id, "pending", Some(&error), delay)
                        .await?;
                }
                Ok(Outcome::Retry(error)) => {
                    // Tried for as long as it takes: past `max_attempts`, at the longest backoff.
                    let delay = if attempts >= self.config.max_attempts {
                        self.config.max_backoff
                    } else {
                        self.config.delay(attempts)
                    }
                    .as_secs_f64();
                    tracing::warn!(error = %error, retry_in_s = delay, "template not submitted; trying again");
                    self.settle_submission(submission_id, "pending", Some(&error), delay)
                        .await?;
                }
                Err(e) => {
                    // Left `submitting`: back to pending once stale.
                    tracing::error!(error = %e, "a template submission could not be settled");
                }
            }
        }
        Ok((claimed, submitted))
    }

    async fn submit_template(&self, row: &sqlx::postgres::PgRow) -> Result<Outcome, CommandError> {
        let tenant = TenantId::parse(&row.try_get::<String, _>("tenant_id")?)
            .map_err(|e| CommandError::InvalidInput(e.to_string()))?;
        let template_id: String = row.try_get("template_id")?;
        let version: i32 = row.try_get("version")?;
        let template = self.commands.load_template(&tenant, &template_id).await?;
        let current = i64::from(template.version()) == i64::from(version);
        if !current || template.status() != Some(TemplateStatus::Pending) || template.provider_template_id().is_some() {
            return Ok(Outcome::Superseded);
        }
        let Some(waba) = crate::tenants::account_of_tenant(&self.pool, &tenant).await? else {
            return Ok(Outcome::Wait(
                "no WhatsApp Business Account is mapped to the tenant (chronicle admin map-account)".into(),
            ));
        };
        let metadata = CommandMetadata {
            tenant_id: tenant.clone(),
            actor: Actor::System {
                component: COMPONENT.into(),
            },
            correlation_id: row.try_get("correlation_id")?,
            causation_id: format!("template-submission-{}", row.try_get::<i64, _>("submission_id")?),
        };
        let body = render_submission(&template);
        // A later version edits the template WhatsApp has under this name and language.
        if let Some(meta_id) = template.meta_id() {
            return self.edit_template(&template_id, meta_id, &body, &metadata).await;
        }
        let answer = match self.post(&format!("{waba}/message_templates"), &body).await {
            Ok(answer) => answer,
            Err(outcome) => return Ok(outcome),
        };
        match answer {
            Answer::Accepted(answer) => {
                let id = match &answer["id"] {
                    Value::String(id) if !id.is_empty() => id.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Ok(Outcome::Retry("an answer without a template id".into())),
                };
                if !self.record_sent(&template_id, &id, &metadata).await? {
                    return Ok(Outcome::Superseded);
                }
                // A decision in the answer itself (Meta decides some at once).
                let decided = match answer["status"].as_str() {
                    Some("APPROVED") => Some(TemplateCommand::ApproveTemplate {
                        provider_template_id: id,
                        at: Utc::now(),
                    }),
                    Some("REJECTED") => Some(TemplateCommand::RejectTemplate {
                        reason: "REJECTED".into(),
                        at: Utc::now(),
                    }),
                    _ => None,
                };
                if let Some(command) = decided {
                    match self.commands.template(&template_id, command, &metadata).await {
                        Ok(_) | Err(CommandError::Rejected(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(Outcome::Submitted(None))
            }
            // WhatsApp has a template of this name and language already (made in its Business
            // Manager, or an earlier try reached it without an answer): it becomes this one.
            Answer::Refused(answer) if duplicate(&answer) => {
                match self.existing(&waba, template.name(), template.language()).await {
                    Ok(Some(meta_id)) => self.edit_template(&template_id, &meta_id, &body, &metadata).await,
                    Ok(None) => Ok(Outcome::Retry(
                        "WhatsApp says the template exists but does not list it yet".into(),
                    )),
                    Err(outcome) => Ok(outcome),
                }
            }
            Answer::Refused(answer) => self.refused(&template_id, &answer, &metadata).await,
        }
    }

    /// Submits `body`'s components as the new content of WhatsApp's template `meta_id`
    /// (`POST /{meta_id}`), and records the version sent for review under that id.
    async fn edit_template(
        &self,
        template_id: &str,
        meta_id: &str,
        body: &Value,
        metadata: &CommandMetadata,
    ) -> Result<Outcome, CommandError> {
        let edit = json!({"category": body["category"], "components": body["components"]});
        match self.post(meta_id, &edit).await {
            Ok(Answer::Accepted(_)) => {
                if self.record_sent(template_id, meta_id, metadata).await? {
                    Ok(Outcome::Submitted(None))
                } else {
                    Ok(Outcome::Superseded)
                }
            }
            Ok(Answer::Refused(answer)) => self.refused(template_id, &answer, metadata).await,
            Err(outcome) => Ok(outcome),
        }
    }

    /// WhatsApp's id of the account's template `name` in `language`, from its list.
    async fn existing(&self, waba: &str, name: &str, language: &str) -> Result<Option<String>, Outcome> {
        let url = self.graph.url(&format!(
            "{waba}/message_templates?name={name}&fields=id,name,language,status"
        ));
        let response = match self.graph.get(&url).send().await {
            Ok(r) => r,
            Err(_) => return Err(Outcome::Retry("the template list could not be read".into())),
        };
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(Outcome::Retry(format!(
                "the template list answered HTTP {}",
                status.as_u16()
            )));
        }
        Ok(answer["data"].as_array().and_then(|templates| {
            templates
                .iter()
                .find(|t| t["name"] == name && t["language"] == language)
                .and_then(|t| match &t["id"] {
                    Value::String(id) => Some(id.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
        }))
    }

    /// A POST to the Graph API: its answer, or what to do when there is none to go by (no
    /// connection, a timeout, 5xx, a rate limit: try again; the platform's credentials or the
    /// account refused: wait for an operator).
    async fn post(&self, path: &str, body: &Value) -> Result<Answer, Outcome> {
        let response = match self.graph.post_json(path, body).send().await {
            Ok(response) => response,
            Err(e) if e.is_connect() => return Err(Outcome::Retry("could not connect to the Graph API".into())),
            Err(e) if e.is_timeout() => return Err(Outcome::Retry("the Graph API did not answer in time".into())),
            Err(_) => {
                return Err(Outcome::Retry(
                    "the request failed before the Graph API answered".into(),
                ))
            }
        };
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Answer::Accepted(answer));
        }
        let code = answer["error"]["code"].as_i64();
        if is_retryable(status) || matches!(code, Some(4 | 17 | 32 | 613 | 80008 | 130429)) {
            return Err(Outcome::Retry(format!(
                "HTTP {} (code {})",
                status.as_u16(),
                code.unwrap_or(0)
            )));
        }
        // Not the template's fault: the token, its permissions, or the account's id.
        if matches!(status.as_u16(), 401 | 403 | 404) || matches!(code, Some(10 | 190 | 200..=299)) {
            tracing::error!(
                http.status = status.as_u16(),
                provider.code = ?code,
                "the Graph API refused the platform's access to the WhatsApp Business Account; template submissions wait"
            );
            return Err(Outcome::Wait(format!(
                "the Graph API refused access to the account (HTTP {}, code {})",
                status.as_u16(),
                code.unwrap_or(0)
            )));
        }
        Ok(Answer::Refused(answer))
    }

    /// Records the version sent for review under `meta_id`; `false` when the template refuses
    /// (the version is no longer the one to record).
    async fn record_sent(
        &self,
        template_id: &str,
        meta_id: &str,
        metadata: &CommandMetadata,
    ) -> Result<bool, CommandError> {
        let command = TemplateCommand::RecordSentForReview {
            provider_template_id: meta_id.to_string(),
            at: Utc::now(),
        };
        match self.commands.template(template_id, command, metadata).await {
            Ok(_) => Ok(true),
            Err(CommandError::Rejected(e)) => {
                tracing::warn!(error = %e, "the template's review could not be recorded on it");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Records WhatsApp's refusal of a submission as the version's rejection.
    async fn refused(
        &self,
        template_id: &str,
        answer: &Value,
        metadata: &CommandMetadata,
    ) -> Result<Outcome, CommandError> {
        let message = answer["error"]["error_user_msg"]
            .as_str()
            .or_else(|| answer["error"]["message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| "no reason given".into());
        let code = answer["error"]["code"]
            .as_i64()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        let command = TemplateCommand::RejectTemplate {
            reason: format!("refused by WhatsApp{code}: {message}"),
            at: Utc::now(),
        };
        match self.commands.template(template_id, command, metadata).await {
            Ok(_) => Ok(Outcome::Refused),
            Err(CommandError::Rejected(_)) => Ok(Outcome::Superseded),
            Err(e) => Err(e),
        }
    }

    async fn settle_submission(
        &self,
        submission_id: i64,
        state: &str,
        error: Option<&str>,
        retry_in_s: f64,
    ) -> Result<(), CommandError> {
        sqlx::query(
            "UPDATE template_submissions SET state = $2, claimed_at = NULL, updated_at = now(),
                    last_error = coalesce($3, last_error), next_attempt_at = now() + make_interval(secs => $4)
              WHERE submission_id = $1 AND state = 'submitting'",
        )
        .bind(submission_id)
        .bind(state)
        .bind(error)
        .bind(retry_in_s)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronicle_domain::template::{HeaderFormat, TemplateButton, TemplateCategory, TemplateEvent};

    fn template(header: Option<TemplateHeader>) -> Template {
        let mut template = Template::default();
        let submitted = TemplateEvent::TemplateSubmitted {
            name: "kit_ready".into(),
            language: "en".into(),
            category: TemplateCategory::Utility,
            body: "Hi {{1}}, your kit ships {{2}}.".into(),
            buttons: vec![
                TemplateButton {
                    kind: ButtonKind::QuickReply,
                    text: "Thanks".into(),
                    value: None,
                },
                TemplateButton {
                    kind: ButtonKind::Url,
                    text: "Track".into(),
                    value: Some("https://example.com/track".into()),
                },
            ],
            variable_count: 2,
            version: 1,
            at: Utc::now(),
            header,
            footer: Some("Solar Co".into()),
        };
        cqrs_es::Aggregate::apply(&mut template, submitted);
        template
    }

    #[test]
    fn a_submission_carries_every_component_with_examples_for_its_variables() {
        let body = render_submission(&template(Some(TemplateHeader::Text {
            text: "Order {{1}}".into(),
        })));
        assert_eq!(body["name"], "kit_ready");
        assert_eq!(body["category"], "UTILITY");
        let components = body["components"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            components[0],
            json!({"type": "HEADER", "format": "TEXT", "text": "Order {{1}}", "example": {"header_text": ["sample 1"]}})
        );
        assert_eq!(components[1]["example"]["body_text"], json!([["sample 1", "sample 2"]]));
        assert_eq!(components[2], json!({"type": "FOOTER", "text": "Solar Co"}));
        assert_eq!(
            components[3]["buttons"][1],
            json!({"type": "URL", "text": "Track", "url": "https://example.com/track"})
        );
        let media = render_submission(&template(Some(TemplateHeader::Media {
            format: HeaderFormat::Image,
        })));
        assert_eq!(media["components"][0], json!({"type": "HEADER", "format": "IMAGE"}));
    }

    #[test]
    fn metas_duplicate_answer_is_recognized() {
        assert!(duplicate(&json!({"error": {"code": 100, "error_subcode": 2388024}})));
        assert!(duplicate(
            &json!({"error": {"message": "Message template \"kit_ready\" already exists in en"}})
        ));
        assert!(!duplicate(
            &json!({"error": {"code": 100, "message": "Invalid parameter"}})
        ));
    }
}
