//! Outbound messaging: the senders that work the `outbox` table (copied from the `outbox_feed`,
//! which the `outbox` projector fills from `OutboundMessageQueued`) and record each outcome
//! back in the log through [`crate::dispatch::Commands`].
//!
//! The write side never reads projections' code: a sender reads the feed TABLE, the one
//! contract between the two sides, as the inbox worker reads `webhook_inbox`.
//!
//! - [`whatsapp`]: the WhatsApp Cloud API sender (`POST {base}/{phone-number-id}/messages`).
//! - [`media`]: files uploaded through Chronicle for outbound media messages.
//! - [`queue`] queues a message; [`send_metered`] is the metered send, the one use case behind
//!   the `sendMessage` / `sendTemplate` / `sendMedia` / `sendInteractive` mutations and the call
//!   follow-ups: charge, queue, refund a refusal.

pub mod media;
pub mod whatsapp;

use chronicle_domain::conversation::rich::{present, Interactive, MediaMessage, MediaSource};
use chronicle_domain::conversation::{
    Consent, ConversationCommand, ConversationError, HeaderParameter, OutboundBody, OutboundRequest,
};
use chronicle_domain::metadata::CommandMetadata;
use chrono::Utc;
use rand::rngs::OsRng;

use crate::dispatch::{Appended, Commands};
use crate::error::CommandError;
use crate::keystore::KeyStore;
use crate::metering::{features, message_action, Charge, Metering};

/// The contact's consent as the write side knows it: the latest opt-in or opt-out in the
/// contact's own stream (`Contact` events), `Unknown` if there is none. The write side reads
/// its own log, never a read model, so a message queued right after an opt-out is refused.
pub async fn consent_of(
    commands: &Commands,
    metadata: &CommandMetadata,
    contact_id: &str,
) -> Result<Consent, CommandError> {
    let latest: Option<String> = sqlx::query_scalar(
        "SELECT event_type FROM events
          WHERE aggregate_type = 'Contact' AND aggregate_id = $1
            AND event_type IN ('ContactOptedIn', 'ContactOptedOut')
          ORDER BY sequence DESC LIMIT 1",
    )
    .bind(metadata.tenant_id.stream_id(contact_id))
    .fetch_optional(commands.pool())
    .await?;
    Ok(match latest.as_deref() {
        Some("ContactOptedOut") => Consent::OptedOut,
        Some(_) => Consent::OptedIn,
        None => Consent::Unknown,
    })
}

/// Whether the tenant's template `name` in `language` is approved: its stream's latest review
/// (`Template` events, stream `tpl_<name>_<language>`) is an approval. Read from the log, as
/// [`consent_of`].
pub async fn template_approved(
    commands: &Commands,
    metadata: &CommandMetadata,
    name: &str,
    language: &str,
) -> Result<bool, CommandError> {
    let latest: Option<String> = sqlx::query_scalar(
        "SELECT event_type FROM events
          WHERE aggregate_type = 'Template' AND aggregate_id = $1
          ORDER BY sequence DESC LIMIT 1",
    )
    .bind(metadata.tenant_id.stream_id(&format!("tpl_{name}_{language}")))
    .fetch_optional(commands.pool())
    .await?;
    Ok(latest.as_deref() == Some("TemplateApproved"))
}

/// Refuses with `UnknownConversation` unless the conversation with `contact_id` has events, so
/// no data key is created for a conversation that does not exist before sealing for it.
pub async fn require_conversation(
    commands: &Commands,
    metadata: &CommandMetadata,
    contact_id: &str,
) -> Result<(), CommandError> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events WHERE aggregate_type = 'Conversation' AND aggregate_id = $1)",
    )
    .bind(metadata.tenant_id.stream_id(contact_id))
    .fetch_one(commands.pool())
    .await?;
    if exists {
        Ok(())
    } else {
        Err(CommandError::Rejected(ConversationError::UnknownConversation.into()))
    }
}

/// Refuses with `CONTACT_ERASED` a send to a contact whose personal data was erased (its
/// `Contact` stream holds `ContactErased`): nothing can be sealed for it, nothing is charged.
pub async fn require_not_erased(
    commands: &Commands,
    metadata: &CommandMetadata,
    contact_id: &str,
) -> Result<(), CommandError> {
    let erased: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events
                         WHERE aggregate_type = 'Contact' AND aggregate_id = $1 AND event_type = 'ContactErased')",
    )
    .bind(metadata.tenant_id.stream_id(contact_id))
    .fetch_one(commands.pool())
    .await?;
    if erased {
        Err(CommandError::Rejected(
            chronicle_domain::contact::ContactError::ContactErased.into(),
        ))
    } else {
        Ok(())
    }
}

/// What a caller asks to send, in the clear (sealed here, before it reaches the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Text(String),
    Template {
        name: String,
        language: String,
        parameters: Vec<String>,
        /// The header's parameter: the text of a text header's `{{1}}`, or a media header's
        /// link; `None` for a template whose header takes none.
        header: Option<String>,
    },
    /// An image, audio, video, document or sticker, by link or by an upload's media ref.
    Media(MediaMessage),
    /// Reply buttons or a list.
    Interactive(Interactive),
}

/// Refuses, before anything is charged or recorded, a media or interactive message WhatsApp
/// would not take ([`MediaMessage::check`], [`Interactive::check`], and for an upload
/// [`media::require_sendable_upload`]). Texts and templates are checked where they are queued.
pub async fn check_outgoing(
    commands: &Commands,
    metadata: &CommandMetadata,
    contact_id: &str,
    outgoing: &Outgoing,
) -> Result<(), CommandError> {
    match outgoing {
        Outgoing::Media(message) => {
            message.check().map_err(|e| CommandError::Rejected(e.into()))?;
            if let Some(media_ref) = present(&message.media_ref) {
                media::require_sendable_upload(commands, metadata, contact_id, media_ref, message.kind).await?;
            }
            Ok(())
        }
        Outgoing::Interactive(message) => message.check().map_err(|e| CommandError::Rejected(e.into())),
        Outgoing::Text(_) | Outgoing::Template { .. } => Ok(()),
    }
}

/// Refuses with `WRONG_PARAMETER_COUNT` a send of an approved template whose parameters are
/// not one per variable (`{{1}}`, `{{2}}`, …), and with `HEADER_PARAMETER_MISMATCH` one whose
/// header parameter does not fit its header; a template that is not approved is left to the
/// conversation (`TEMPLATE_NOT_APPROVED`). Answers the approved template.
pub async fn check_parameters(
    commands: &Commands,
    metadata: &CommandMetadata,
    name: &str,
    language: &str,
    parameters: &[String],
    header: Option<&str>,
) -> Result<Option<chronicle_domain::template::Template>, CommandError> {
    let template = commands
        .load_template(&metadata.tenant_id, &format!("tpl_{name}_{language}"))
        .await?;
    if template.status() != Some(chronicle_domain::template::TemplateStatus::Approved) {
        return Ok(None);
    }
    template
        .render(parameters)
        .and_then(|_| template.check_header_parameter(header))
        .map_err(|e| CommandError::Rejected(e.into()))?;
    Ok(Some(template))
}

/// Sends again, on an operator's word, a message the WhatsApp sender handed to an operator
/// (`needs_operator`: its request may or may not have reached WhatsApp, so the sender never
/// repeats it by itself). The decision is recorded on the conversation
/// (`OutboundResendAuthorized`, with who decided) and the sender's row goes back to pending, to
/// be sent and settled like any message. Refused: `UNKNOWN_OUTBOUND_MESSAGE`,
/// `OUTBOUND_MESSAGE_SETTLED` (the log has its outcome), `NOT_AWAITING_OPERATOR` (the sender
/// still has it: queued, retrying or being sent), `CONTACT_OPTED_OUT` (the contact opted out
/// since it was queued). The operator takes the risk the sender would
/// not: if the first request did reach WhatsApp, the customer gets the message twice.
pub async fn resend(
    commands: &Commands,
    contact_id: &str,
    idempotency_key: &str,
    metadata: &CommandMetadata,
) -> Result<Appended, CommandError> {
    let stream = metadata.tenant_id.stream_id(contact_id);
    // The sender's row is held for the whole decision: two operators at once decide one after
    // the other, and the second finds the row pending again (NOT_AWAITING_OPERATOR). The
    // sender claims only pending rows, skipping held ones, so it never waits on this.
    let mut tx = commands.pool().begin().await?;
    let row: Option<(String, bool, Option<String>, chrono::DateTime<Utc>)> = sqlx::query_as(
        "SELECT state, uncertain_recorded, last_error, updated_at FROM outbox
          WHERE tenant_id = $1 AND stream_id = $2 AND idempotency_key = $3 FOR UPDATE",
    )
    .bind(metadata.tenant_id.as_str())
    .bind(&stream)
    .bind(idempotency_key)
    .fetch_optional(&mut *tx)
    .await?;
    let state = row.as_ref().map(|r| r.0.clone());
    let by = metadata.actor.id().to_string();
    let command = ConversationCommand::AuthorizeResend {
        idempotency_key: idempotency_key.to_string(),
        by,
        at: Utc::now(),
    };
    // The log's refusals first (no such message, or it has an outcome), decided on the
    // conversation's present state without recording; then the sender's.
    let mut present = commands.load_conversation(&metadata.tenant_id, contact_id).await?;
    let sink = cqrs_es::event_sink::EventSink::default();
    cqrs_es::Aggregate::handle(&mut present, command.clone(), &(), &sink)
        .await
        .map_err(|e| CommandError::Rejected(e.into()))?;
    if state.as_deref() != Some("needs_operator") {
        return Err(CommandError::Rejected(
            ConversationError::NotAwaitingOperator {
                idempotency_key: idempotency_key.to_string(),
                state: state.unwrap_or_else(|| "not taken by the sender yet".into()),
            }
            .into(),
        ));
    }
    // The contact may have opted out since the message was queued.
    if consent_of(commands, metadata, contact_id).await? == Consent::OptedOut {
        return Err(CommandError::Rejected(ConversationError::ContactOptedOut.into()));
    }
    // The sender's hand-over first, if its own pass has not recorded it yet: the log says the
    // message was left for an operator before it says an operator sent it again.
    if let Some((_, false, reason, handed_over)) = &row {
        let uncertain = ConversationCommand::RecordOutboundUncertain {
            idempotency_key: idempotency_key.to_string(),
            reason: reason
                .clone()
                .unwrap_or_else(|| "left for an operator by the sender".into()),
            at: *handed_over,
        };
        // The sender's fact, in the sender's name.
        let sender = CommandMetadata {
            actor: chronicle_domain::metadata::Actor::System {
                component: whatsapp::COMPONENT.into(),
            },
            ..metadata.clone()
        };
        commands.conversation(contact_id, uncertain, &sender).await?;
    }
    let appended = commands.conversation(contact_id, command, metadata).await?;
    // A fresh start: the attempts spent before the operator's decision do not count.
    sqlx::query(
        "UPDATE outbox SET state = 'pending', attempts = 0, claimed_at = NULL, next_attempt_at = now(),
                updated_at = now(), last_error = 'sent again on an operator''s decision', uncertain_recorded = false
          WHERE tenant_id = $1 AND stream_id = $2 AND idempotency_key = $3 AND state = 'needs_operator'",
    )
    .bind(metadata.tenant_id.as_str())
    .bind(&stream)
    .bind(idempotency_key)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(appended)
}

/// Refuses, before anything is recorded, a template that cannot be sent as named: one the
/// tenant does not have (`UNKNOWN_TEMPLATE`), one not approved now (`TEMPLATE_NOT_APPROVED`),
/// or `parameters` that do not fill its variables (`WRONG_PARAMETER_COUNT`). For what is sent
/// later (a campaign, a call follow-up rule), so that a mistake is refused when it is made and
/// not when it runs.
pub async fn require_sendable_template(
    commands: &Commands,
    tenant: &chronicle_domain::tenant::TenantId,
    name: &str,
    language: &str,
    parameters: &[String],
) -> Result<(), CommandError> {
    use chronicle_domain::template::TemplateError;
    let template = commands
        .load_template(tenant, &format!("tpl_{name}_{language}"))
        .await?;
    if template.status().is_none() {
        return Err(CommandError::Rejected(
            TemplateError::UnknownTemplate {
                name: name.to_string(),
                language: language.to_string(),
            }
            .into(),
        ));
    }
    // A campaign or a follow-up rule gives no header parameter: a template whose header needs
    // one cannot be sent by them.
    template
        .render(parameters)
        .and_then(|_| template.check_header_parameter(None))
        .map_err(|e| CommandError::Rejected(e.into()))
}

/// Queues a message on the conversation with `contact_id`: seals its content under the
/// contact's data key, reads the contact's consent, and runs `QueueOutboundMessage`. The
/// `outbox` projector and the sender take it from there.
pub async fn queue(
    commands: &Commands,
    keys: &KeyStore,
    contact_id: &str,
    idempotency_key: &str,
    outgoing: Outgoing,
    metadata: &CommandMetadata,
) -> Result<Appended, CommandError> {
    require_conversation(commands, metadata, contact_id).await?;
    let tenant = &metadata.tenant_id;
    let key = keys.key_for(tenant, contact_id).await?;
    let seal = |plain: &str| key.seal(tenant, contact_id, plain, &mut OsRng);
    let mut approved = false;
    let body = match outgoing {
        Outgoing::Text(text) => {
            if text.trim().is_empty() {
                return Err(CommandError::InvalidInput("a message needs text".into()));
            }
            OutboundBody::FreeForm { text: seal(&text) }
        }
        Outgoing::Template {
            name,
            language,
            parameters,
            header,
        } => {
            approved = template_approved(commands, metadata, &name, &language).await?;
            let mut header_parameter = None;
            if approved {
                let template =
                    check_parameters(commands, metadata, &name, &language, &parameters, header.as_deref()).await?;
                let given = header.as_deref().map(str::trim).filter(|h| !h.is_empty());
                header_parameter = match (template.as_ref().and_then(|t| t.header()), given) {
                    (Some(chronicle_domain::template::TemplateHeader::Media { format }), Some(link)) => {
                        Some(HeaderParameter::Media {
                            format: *format,
                            link: seal(link),
                        })
                    }
                    (Some(chronicle_domain::template::TemplateHeader::Text { .. }), Some(text)) => {
                        Some(HeaderParameter::Text { text: seal(text) })
                    }
                    _ => None,
                };
            }
            let parameters =
                serde_json::to_string(&parameters).map_err(|e| CommandError::InvalidInput(e.to_string()))?;
            OutboundBody::Template {
                name,
                language,
                parameters: seal(&parameters),
                header: header_parameter,
            }
        }
        Outgoing::Media(message) => {
            check_outgoing(commands, metadata, contact_id, &Outgoing::Media(message.clone())).await?;
            let source = match (present(&message.link), present(&message.media_ref)) {
                (Some(link), _) => MediaSource::Link { url: seal(link) },
                (None, Some(media_ref)) => MediaSource::Upload {
                    media_ref: media_ref.to_string(),
                },
                // `check` refused it already.
                (None, None) => return Err(CommandError::Rejected(ConversationError::MediaSource.into())),
            };
            OutboundBody::Media {
                kind: message.kind,
                source,
                caption: present(&message.caption).map(seal),
                filename: present(&message.filename).map(seal),
            }
        }
        Outgoing::Interactive(message) => {
            message.check().map_err(|e| CommandError::Rejected(e.into()))?;
            let kind = message.kind();
            let json = serde_json::to_string(&message).map_err(|e| CommandError::InvalidInput(e.to_string()))?;
            OutboundBody::Interactive {
                kind,
                content: seal(&json),
            }
        }
    };
    let consent = consent_of(commands, metadata, contact_id).await?;
    let requested_by = match &metadata.actor {
        chronicle_domain::metadata::Actor::User { user_id, .. } => user_id.clone(),
        other => other.to_string(),
    };
    let command = ConversationCommand::QueueOutboundMessage(OutboundRequest {
        idempotency_key: idempotency_key.to_string(),
        body,
        requested_by,
        consent,
        opt_out_confirmation: false,
        template_approved: approved,
        at: Utc::now(),
    });
    commands.conversation(contact_id, command, metadata).await
}

/// A metered send (feature `message`, one unit): the conversation must exist
/// (`UNKNOWN_CONVERSATION`, nothing charged); the tenant's main wallet pays first (unmetered
/// without a price; `INSUFFICIENT_BALANCE` queues nothing); the message is [`queue`]d; a send
/// the conversation refuses (or whose input is invalid) is refunded, unless a message with the
/// same key went out before. Returns what was appended to the conversation.
///
/// The charge is idempotent per (contact, key) and the refund happens once, so a caller that
/// gets an error because the refund itself failed retries with the same key and the refund is
/// made then.
pub async fn send_metered(
    commands: &Commands,
    keys: &KeyStore,
    contact_id: &str,
    idempotency_key: &str,
    outgoing: Outgoing,
    metadata: &CommandMetadata,
) -> Result<Appended, CommandError> {
    require_conversation(commands, metadata, contact_id).await?;
    require_not_erased(commands, metadata, contact_id).await?;
    // A media or interactive message WhatsApp would not take is refused before it is charged.
    check_outgoing(commands, metadata, contact_id, &outgoing).await?;
    // A template send with the wrong number of parameters is refused before it is charged.
    if let Outgoing::Template {
        name,
        language,
        parameters,
        header,
    } = &outgoing
    {
        check_parameters(commands, metadata, name, language, parameters, header.as_deref()).await?;
    }
    let metering = Metering::new(commands.clone());
    let charge = metering
        .charge(
            features::MESSAGE,
            1,
            &message_action(contact_id, idempotency_key),
            metadata,
        )
        .await?;
    let queued = queue(commands, keys, contact_id, idempotency_key, outgoing, metadata).await;
    if let Err(e @ (CommandError::Rejected(_) | CommandError::InvalidInput(_))) = &queued {
        if matches!(charge, Charge::Debited { .. }) {
            tracing::info!(error = %e, "a metered send was refused; refunding");
            metering
                .refund_refused_send(contact_id, idempotency_key, metadata)
                .await?;
        }
    }
    queued
}
