//! The webhook inbox: items are stored (deduplicated by the provider's key) before the webhook
//! is answered, then claimed and processed into commands. A row is marked done only after its
//! events are appended; a crash leaves the claim to expire and the row is retried, and the
//! aggregates' idempotency makes the retry harmless.
//!
//! Deliveries for a WhatsApp phone-number id that no tenant owns yet are not lost: they are
//! kept as `unmapped`, logged once for operators, and released to `pending` when the number is
//! mapped ([`crate::tenants::map_whatsapp_number`]).
//!
//! An inbound message also registers its sender as a `Contact` (sealed number and WhatsApp
//! profile name; a repeat only fills in what was missing) before the message is recorded, and
//! a text that is a consent keyword (`STOP`, `UNSUBSCRIBE`, `START`, see
//! [`crate::contacts::consent_keyword`]) then opts the contact out or in with source
//! `whatsapp_keyword`. When WhatsApp withholds the number and sends its business-scoped user id
//! instead (`from_user_id` on the message, `user_id` on the contact; `recipient_user_id` on a
//! status), the contact id is made from that id (`ContactHandle::ProviderUser`). A contact that
//! was erased is not registered again: its contact commands are skipped and the data key its
//! sealing created is destroyed at once, so the message is recorded but unreadable.
//!
//! Telephony call-status callbacks use the same table (provider `twilio`, kind
//! [`CALL_STATUS_KIND`], stored by [`store_call_status`]): the tenant comes from the verified
//! callback's path (kept in the payload), not from a phone-number mapping, and processing runs
//! [`crate::calls::CallIntake::record`].

use std::collections::HashMap;

use chronicle_domain::contact::{ConsentSource, ContactCommand, ContactError, ContactSource};
use chronicle_domain::conversation::{
    ConversationCommand, ConversationError, DeliveryStatus, InboundMessage, MessageKind, ProviderError, StatusUpdate,
};
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::phone::PhoneNumber;
use chronicle_domain::pii::IdKey;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, TimeZone, Utc};
use rand::rngs::OsRng;
use serde_json::Value;
use sqlx::{PgPool, Row};
use tracing::Instrument;

use super::telephony::{parse_call_status, CallStatusReport, PROVIDER as TELEPHONY_PROVIDER};
use super::whatsapp::{DeliveryItem, PROVIDER, TEMPLATE_STATUS_KIND};
use crate::calls::CallIntake;
use crate::contacts::{consent_keyword, ConsentKeyword, ContactService, Handle};
use crate::dispatch::Commands;
use crate::error::{CommandError, DomainError};
use crate::keystore::KeyStore;
use crate::tenants::tenant_of_number;

/// Transient failures (database, Redis, conflicts) are retried forever with backoff capped at
/// this many seconds; only refusals (bad input, a rule) park a row as `failed`.
pub const MAX_BACKOFF_SECONDS: i32 = 300;

/// Every this many attempts a row still failing is logged as an error (not only a warning).
pub const ALERT_EVERY_ATTEMPTS: i32 = 10;

/// What storing a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stored {
    /// Items new to the inbox.
    pub new: usize,
    /// Items already there (a repeated delivery).
    pub duplicates: usize,
}

/// Stores a delivery's items in one transaction: all or nothing. Dedupe keys are stored as
/// keyed hashes (`ids`): provider ids can embed phone numbers, and the key outlives the
/// payload, which is cleared once processed.
pub async fn store(
    pool: &PgPool,
    ids: &IdKey,
    items: &[DeliveryItem],
    correlation_id: &str,
) -> Result<Stored, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut stored = Stored::default();
    for item in items {
        let inserted = sqlx::query(
            "INSERT INTO webhook_inbox (provider, dedupe_key, phone_number_id, kind, correlation_id, payload)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (provider, dedupe_key) DO NOTHING",
        )
        .bind(PROVIDER)
        .bind(ids.dedupe_key(PROVIDER, &item.dedupe_key))
        .bind(&item.phone_number_id)
        .bind(item.kind.as_str())
        .bind(correlation_id)
        .bind(&item.payload)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            stored.new += 1;
        } else {
            stored.duplicates += 1;
        }
    }
    tx.commit().await?;
    Ok(stored)
}

/// The inbox kind of a telephony call-status callback.
pub const CALL_STATUS_KIND: &str = "call_status";

/// Stores a verified, parsed call-status callback for `tenant` (the form parameters as
/// received, personal data included until processed), deduplicated by `CallSid` and status.
/// Returns whether it was new.
pub async fn store_call_status(
    pool: &PgPool,
    ids: &IdKey,
    tenant: &TenantId,
    report: &CallStatusReport,
    params: &[(String, String)],
    correlation_id: &str,
) -> Result<bool, sqlx::Error> {
    let payload = serde_json::json!({
        "tenant": tenant.as_str(),
        "params": params,
        "received_at": Utc::now(),
    });
    let inserted = sqlx::query(
        "INSERT INTO webhook_inbox (provider, dedupe_key, phone_number_id, kind, correlation_id, payload)
         VALUES ($1, $2, NULL, $3, $4, $5)
         ON CONFLICT (provider, dedupe_key) DO NOTHING",
    )
    .bind(TELEPHONY_PROVIDER)
    .bind(ids.dedupe_key(TELEPHONY_PROVIDER, &report.dedupe_key()))
    .bind(CALL_STATUS_KIND)
    .bind(correlation_id)
    .bind(payload)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// What one processing pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Processed {
    pub done: usize,
    pub unmapped: usize,
    pub failed: usize,
    pub retry: usize,
}

impl Processed {
    /// Rows claimed in the pass.
    pub fn claimed(&self) -> usize {
        self.done + self.unmapped + self.failed + self.retry
    }
}

/// Turns inbox rows into commands.
#[derive(Clone, Debug)]
pub struct InboxProcessor {
    pool: PgPool,
    commands: Commands,
    keys: KeyStore,
    ids: IdKey,
    contacts: ContactService,
    calls: CallIntake,
}

/// One command of an inbox item's processing, in order.
enum Step {
    Contact(ContactCommand),
    Conversation(ConversationCommand),
}

struct Claimed {
    inbox_id: i64,
    phone_number_id: Option<String>,
    kind: String,
    correlation_id: String,
    payload: Value,
    attempts: i32,
    /// Received in the last ten minutes.
    recent: bool,
}

/// How many times a status for a contact without a conversation is tried (with the inbox's
/// backoff), and for ten minutes after it arrived at least, before it is taken as a status of
/// a message sent outside Chronicle to someone who never wrote, and not recorded (decision
/// 0020).
pub const STATUS_WITHOUT_CONVERSATION_TRIES: i32 = 4;

enum Outcome {
    Done,
    Failed(String),
    Retry(String),
}

impl InboxProcessor {
    /// A processor appending through `commands`, sealing personal fields with `keys`.
    pub fn new(commands: Commands, keys: KeyStore) -> Self {
        let ids = keys.master().id_key();
        Self {
            pool: commands.pool().clone(),
            contacts: ContactService::new(commands.clone(), keys.clone()),
            calls: CallIntake::new(commands.clone(), ContactService::new(commands.clone(), keys.clone())),
            commands,
            keys,
            ids,
        }
    }

    /// Processes pending rows until none is left; returns the totals. First releases rows kept
    /// as `unmapped` whose number has been mapped since (a mapping that raced with the pass
    /// that parked them would otherwise leave them kept).
    pub async fn drain(&self) -> Result<Processed, CommandError> {
        release_mapped(&self.pool).await?;
        let mut total = Processed::default();
        loop {
            let pass = self.process_pending(100).await?;
            total.done += pass.done;
            total.unmapped += pass.unmapped;
            total.failed += pass.failed;
            total.retry += pass.retry;
            if pass.claimed() == 0 || pass.claimed() == pass.retry {
                return Ok(total);
            }
        }
    }

    /// Claims up to `limit` pending rows (skipping rows another worker holds) and processes
    /// them in arrival order.
    pub async fn process_pending(&self, limit: i64) -> Result<Processed, CommandError> {
        let rows = sqlx::query(
            "UPDATE webhook_inbox SET claimed_until = now() + interval '60 seconds', attempts = attempts + 1
              WHERE inbox_id IN (
                    SELECT inbox_id FROM webhook_inbox
                     WHERE state = 'pending' AND (claimed_until IS NULL OR claimed_until < now())
                     ORDER BY inbox_id
                     LIMIT $1
                       FOR UPDATE SKIP LOCKED)
          RETURNING inbox_id, phone_number_id, kind, correlation_id, payload, attempts,
                    received_at > now() - interval '10 minutes' AS recent",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed: Vec<Claimed> = rows
            .into_iter()
            .map(|r| Claimed {
                inbox_id: r.get("inbox_id"),
                phone_number_id: r.get("phone_number_id"),
                kind: r.get("kind"),
                correlation_id: r.get("correlation_id"),
                payload: r.get::<Option<Value>, _>("payload").unwrap_or(Value::Null),
                attempts: r.get("attempts"),
                recent: r.get("recent"),
            })
            .collect();
        claimed.sort_by_key(|c| c.inbox_id);

        let mut tenants: HashMap<String, Option<TenantId>> = HashMap::new();
        let mut processed = Processed::default();
        for row in claimed {
            let number = row.phone_number_id.clone().unwrap_or_default();
            let tenant = if row.kind == CALL_STATUS_KIND {
                // The tenant named by the signed callback's path.
                row.payload["tenant"].as_str().and_then(|t| TenantId::parse(t).ok())
            } else {
                None
            };
            let tenant = match tenant {
                Some(t) => Some(t),
                None if row.kind == CALL_STATUS_KIND => {
                    self.fail(row.inbox_id, "the call-status row names no tenant").await?;
                    processed.failed += 1;
                    continue;
                }
                None if row.kind == TEMPLATE_STATUS_KIND => {
                    // The account's id decides the tenant of a template update.
                    let cached = format!("waba:{number}");
                    match tenants.get(&cached) {
                        Some(t) => t.clone(),
                        None => {
                            let t = crate::tenants::tenant_of_account(&self.pool, &number).await?;
                            tenants.insert(cached, t.clone());
                            t
                        }
                    }
                }
                None => match tenants.get(&number) {
                    Some(t) => t.clone(),
                    None => {
                        let t = tenant_of_number(&self.pool, &number).await?;
                        tenants.insert(number.clone(), t.clone());
                        t
                    }
                },
            };
            let Some(tenant) = tenant else {
                self.park_unmapped(&row, &number).await?;
                processed.unmapped += 1;
                continue;
            };
            let span = tracing::info_span!("inbox.item", inbox.id = row.inbox_id, tenant.id = %tenant, correlation.id = %row.correlation_id);
            match Box::pin(self.process_row(&tenant, &row).instrument(span)).await {
                Outcome::Done => {
                    sqlx::query(
                        "UPDATE webhook_inbox SET state = 'done', payload = NULL, processed_at = now(),
                                last_error = NULL, claimed_until = NULL WHERE inbox_id = $1",
                    )
                    .bind(row.inbox_id)
                    .execute(&self.pool)
                    .await?;
                    processed.done += 1;
                }
                Outcome::Failed(reason) => {
                    tracing::warn!(inbox.id = row.inbox_id, tenant.id = %tenant, reason = %reason, "inbox item refused; kept as failed");
                    self.fail(row.inbox_id, &reason).await?;
                    processed.failed += 1;
                }
                Outcome::Retry(reason) => {
                    if row.attempts % ALERT_EVERY_ATTEMPTS == 0 {
                        tracing::error!(inbox.id = row.inbox_id, tenant.id = %tenant, reason = %reason, attempts = row.attempts, "inbox item keeps failing; still retrying");
                    } else {
                        tracing::warn!(inbox.id = row.inbox_id, tenant.id = %tenant, reason = %reason, "inbox item will be retried");
                    }
                    sqlx::query(
                        "UPDATE webhook_inbox SET last_error = $2,
                                claimed_until = now() + make_interval(secs => least($3, power(2, least(attempts, 20)))::double precision)
                          WHERE inbox_id = $1",
                    )
                    .bind(row.inbox_id)
                    .bind(&reason)
                    .bind(MAX_BACKOFF_SECONDS)
                    .execute(&self.pool)
                    .await?;
                    processed.retry += 1;
                }
            }
        }
        Ok(processed)
    }

    async fn fail(&self, inbox_id: i64, reason: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE webhook_inbox SET state = 'failed', last_error = $2, claimed_until = NULL WHERE inbox_id = $1",
        )
        .bind(inbox_id)
        .bind(reason)
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    /// Keeps a row whose number no tenant owns. The `NOT EXISTS` re-checks the mapping inside
    /// the statement, so a mapping committed meanwhile leaves the row pending instead.
    async fn park_unmapped(&self, row: &Claimed, number: &str) -> Result<(), sqlx::Error> {
        let parked = sqlx::query(
            "UPDATE webhook_inbox SET state = 'unmapped', claimed_until = NULL
              WHERE inbox_id = $1
                AND CASE WHEN kind = 'template_status'
                         THEN NOT EXISTS (SELECT 1 FROM whatsapp_accounts WHERE waba_id = $2)
                         ELSE NOT EXISTS (SELECT 1 FROM whatsapp_numbers WHERE phone_number_id = $2) END",
        )
        .bind(row.inbox_id)
        .bind(number)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if parked == 1 && row.kind == TEMPLATE_STATUS_KIND {
            tracing::warn!(
                inbox.id = row.inbox_id,
                whatsapp.waba_id = %number,
                "template status update for a WhatsApp Business Account no tenant owns: kept as unmapped; \
                 map it with `chronicle admin map-account --tenant <id> --waba-id {number}` and it will be processed"
            );
        } else if parked == 1 {
            tracing::warn!(
                inbox.id = row.inbox_id,
                whatsapp.phone_number_id = %number,
                "WhatsApp delivery for a phone-number id no tenant owns: kept as unmapped; \
                 map it with `chronicle admin map-number --tenant <id> --phone-number-id {number}` and it will be processed"
            );
        } else {
            sqlx::query("UPDATE webhook_inbox SET claimed_until = NULL WHERE inbox_id = $1")
                .bind(row.inbox_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Records WhatsApp's review of a template (`message_template_status_update`) on the
    /// template's stream (`tpl_<name>_<language>`): `APPROVED` and `REINSTATED` approve it
    /// (with Meta's id), `REJECTED` rejects it with Meta's reason, `PAUSED` pauses it, `DISABLED`
    /// (and `PENDING_DELETION`, `DELETED`) disable it. Other events (`FLAGGED`, `IN_APPEAL`,
    /// `PENDING`) change nothing a send depends on and are done. An update the template refuses
    /// (a template this tenant never submitted, one not pending) is kept as failed.
    async fn process_template_status(&self, tenant: &TenantId, row: &Claimed) -> Outcome {
        use chronicle_domain::template::TemplateCommand;
        let update = &row.payload["update"];
        let text = |name: &str| update[name].as_str().map(str::to_string);
        let (Some(event), Some(name), Some(language)) = (
            text("event"),
            text("message_template_name"),
            text("message_template_language"),
        ) else {
            return Outcome::Failed("the template update names no event, template or language".into());
        };
        let provider_id = match &update["message_template_id"] {
            serde_json::Value::Number(n) => n.to_string(),
            other => other.as_str().unwrap_or_default().to_string(),
        };
        let reason = text("reason").filter(|r| !r.trim().is_empty() && r != "NONE");
        let at = Utc::now();
        let command = match event.as_str() {
            "APPROVED" | "REINSTATED" => TemplateCommand::ApproveTemplate {
                provider_template_id: provider_id.clone(),
                at,
            },
            "REJECTED" => TemplateCommand::RejectTemplate {
                reason: reason.unwrap_or_else(|| "REJECTED".into()),
                at,
            },
            "PAUSED" => TemplateCommand::PauseTemplate { reason, at },
            "DISABLED" | "PENDING_DELETION" | "DELETED" => TemplateCommand::DisableTemplate { reason, at },
            other => {
                tracing::info!(template.event = %other, "a template update that changes nothing a send depends on");
                return Outcome::Done;
            }
        };
        // Only an update about the template WhatsApp knows under this name and language, and
        // about the version it was sent: another id, or a decision about an earlier version that
        // arrives before the current one was sent for review, changes nothing.
        let stream = format!("tpl_{name}_{language}");
        let template = match self.commands.load_template(tenant, &stream).await {
            Ok(t) => t,
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        if template.meta_id().is_some_and(|known| known != provider_id) {
            tracing::warn!(template.event = %event, "a template update about another WhatsApp template id; not applied");
            return Outcome::Done;
        }
        let unsent = template.status() == Some(chronicle_domain::template::TemplateStatus::Pending)
            && template.provider_template_id().is_none();
        if unsent && template.meta_id() == Some(provider_id.as_str()) {
            tracing::warn!(template.event = %event, "a template update about an earlier version; not applied");
            return Outcome::Done;
        }
        let metadata = CommandMetadata {
            tenant_id: tenant.clone(),
            actor: Actor::System {
                component: "whatsapp-webhook".into(),
            },
            correlation_id: row.correlation_id.clone(),
            causation_id: format!("inbox:{}", row.inbox_id),
        };
        match self.commands.template(&stream, command, &metadata).await {
            Ok(_) => Outcome::Done,
            Err(e @ CommandError::Rejected(_)) | Err(e @ CommandError::InvalidInput(_)) => {
                Outcome::Failed(e.to_string())
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    /// Records a call-status callback as a call.
    async fn process_call_status(&self, tenant: &TenantId, row: &Claimed) -> Outcome {
        let params: Vec<(String, String)> = match serde_json::from_value(row.payload["params"].clone()) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(format!("the call-status row's parameters do not read: {e}")),
        };
        let report = match parse_call_status(&params) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let received_at = row.payload["received_at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
        let metadata = CommandMetadata {
            tenant_id: tenant.clone(),
            actor: Actor::System {
                component: "telephony-webhook".into(),
            },
            correlation_id: row.correlation_id.clone(),
            causation_id: format!("inbox:{}", row.inbox_id),
        };
        match self.calls.record(&report, received_at, &metadata).await {
            Ok(_) => Outcome::Done,
            Err(e @ CommandError::Rejected(_)) | Err(e @ CommandError::InvalidInput(_)) => {
                Outcome::Failed(e.to_string())
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    async fn process_row(&self, tenant: &TenantId, row: &Claimed) -> Outcome {
        // Boxed: each kind's processing is a large future of its own.
        if row.kind == CALL_STATUS_KIND {
            return Box::pin(self.process_call_status(tenant, row)).await;
        }
        if row.kind == TEMPLATE_STATUS_KIND {
            return Box::pin(self.process_template_status(tenant, row)).await;
        }
        let metadata = CommandMetadata {
            tenant_id: tenant.clone(),
            actor: Actor::System {
                component: "whatsapp-webhook".into(),
            },
            correlation_id: row.correlation_id.clone(),
            causation_id: format!("inbox:{}", row.inbox_id),
        };
        let business_number = row.phone_number_id.clone().unwrap_or_default();
        let built = match row.kind.as_str() {
            "message" => self.message_command(tenant, &business_number, &row.payload).await,
            "status" => self.status_command(tenant, &row.payload),
            other => Err(CommandError::InvalidInput(format!("unknown inbox item kind {other:?}"))),
        };
        let (contact_id, steps) = match built {
            Ok(Some(pair)) => pair,
            Ok(None) => return Outcome::Done,
            Err(e @ CommandError::InvalidInput(_)) | Err(e @ CommandError::Rejected(_)) => {
                return Outcome::Failed(e.to_string())
            }
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        for step in steps {
            let result = match step {
                Step::Contact(command) => match self.contacts.run(&contact_id, command, &metadata).await.map(drop) {
                    // An erased contact is not registered again nor given consent; the
                    // conversation still records what arrived.
                    Err(CommandError::Rejected(DomainError::Contact(ContactError::ContactErased))) => {
                        tracing::debug!("contact was erased; contact command skipped");
                        Ok(())
                    }
                    other => other,
                },
                Step::Conversation(command) => self
                    .commands
                    .conversation(&contact_id, command, &metadata)
                    .await
                    .map(drop),
            };
            match result {
                Ok(()) => {}
                // A status never opens a conversation (decision 0020): with nobody who wrote, it
                // is of a message sent outside Chronicle to someone without a thread. Nothing is
                // recorded; the delivery is done.
                // (The contact's first message may still be waiting for a retry of its own: a few
                // tries first.)
                Err(CommandError::Rejected(DomainError::Conversation(ConversationError::UnknownConversation)))
                    if row.kind == "status" && (row.attempts < STATUS_WITHOUT_CONVERSATION_TRIES || row.recent) =>
                {
                    return Outcome::Retry("no conversation with this contact yet".into());
                }
                Err(CommandError::Rejected(DomainError::Conversation(ConversationError::UnknownConversation)))
                    if row.kind == "status" =>
                {
                    tracing::warn!("a status of a message sent outside Chronicle to a contact without a conversation; not recorded");
                }
                Err(e @ CommandError::Rejected(_)) | Err(e @ CommandError::InvalidInput(_)) => {
                    return Outcome::Failed(e.to_string())
                }
                Err(e) => return Outcome::Retry(e.to_string()),
            }
        }
        Outcome::Done
    }

    /// The contact of a number, or, when the number is withheld, of WhatsApp's business-scoped
    /// user id.
    fn handle_of(number: &str, user_id: Option<&str>) -> Result<Handle, CommandError> {
        match (
            PhoneNumber::parse(number),
            user_id.map(str::trim).filter(|u| !u.is_empty()),
        ) {
            (Ok(phone), _) => Ok(Handle::Phone(phone)),
            (Err(_), Some(user_id)) => Ok(Handle::ProviderUser {
                provider: PROVIDER.to_string(),
                user_id: user_id.to_string(),
            }),
            (Err(e), None) => Err(CommandError::InvalidInput(format!(
                "the sender's number is not usable and no WhatsApp user id was sent: {e}"
            ))),
        }
    }

    async fn message_command(
        &self,
        tenant: &TenantId,
        business_number: &str,
        payload: &Value,
    ) -> Result<Option<(String, Vec<Step>)>, CommandError> {
        let message = &payload["message"];
        let text = |name: &str| {
            message
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let user_id = message
            .get("from_user_id")
            .or_else(|| payload["contact"].get("user_id"))
            .and_then(Value::as_str);
        let handle = Self::handle_of(&text("from"), user_id)?;
        let contact_id = self.contacts.contact_id(tenant, &handle);
        let sent_at = provider_time(&text("timestamp"))?;
        let profile_name = payload["contact"]["profile"]["name"].as_str();
        let (_, registration) = self
            .contacts
            .registration(tenant, &handle, profile_name, ContactSource::Whatsapp, sent_at)
            .await?;
        let key = self.keys.key_for(tenant, &contact_id).await?;
        let seal = |plain: &str| key.seal(tenant, &contact_id, plain, &mut OsRng);
        let kind_name = text("type");
        let content = message
            .get(kind_name.as_str())
            .filter(|v| !v.is_null())
            .map(|v| seal(&v.to_string()));
        let contact_name = payload["contact"]["profile"]["name"]
            .as_str()
            .filter(|n| !n.trim().is_empty())
            .map(seal);
        let wamid = text("id");
        // Without a number (withheld), the conversation's phone envelope seals an empty value.
        let phone = match &handle {
            Handle::Phone(phone) => phone.as_str(),
            Handle::ProviderUser { .. } => "",
        };
        let keyword = (kind_name == "text")
            .then(|| message["text"]["body"].as_str().and_then(consent_keyword))
            .flatten();
        let command = ConversationCommand::ReceiveMessage(InboundMessage {
            message_ref: self.ids.message_ref(tenant, PROVIDER, &wamid),
            provider_message_id: seal(&wamid),
            contact_id: contact_id.clone(),
            business_number_id: business_number.to_string(),
            contact_phone: seal(phone),
            contact_name,
            kind: MessageKind::from_whatsapp(&kind_name),
            content,
            sent_at,
        });
        let mut steps = vec![Step::Contact(registration), Step::Conversation(command)];
        steps.extend(keyword.map(|keyword| {
            let source = ConsentSource::WhatsappKeyword;
            Step::Contact(match keyword {
                ConsentKeyword::OptOut => ContactCommand::OptOut { source, at: sent_at },
                ConsentKeyword::OptIn => ContactCommand::OptIn { source, at: sent_at },
            })
        }));
        Ok(Some((contact_id, steps)))
    }

    fn status_command(&self, tenant: &TenantId, payload: &Value) -> Result<Option<(String, Vec<Step>)>, CommandError> {
        let status = &payload["status"];
        let text = |name: &str| status.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(delivery) = DeliveryStatus::from_whatsapp(&text("status")) else {
            // Statuses Chronicle does not track (e.g. "deleted", "warning") change nothing.
            return Ok(None);
        };
        let handle = Self::handle_of(
            &text("recipient_id"),
            status.get("recipient_user_id").and_then(Value::as_str),
        )?;
        let contact_id = self.contacts.contact_id(tenant, &handle);
        let error = status["errors"].get(0).map(|e| ProviderError {
            code: e["code"].as_i64().unwrap_or_default(),
            title: e["title"].as_str().unwrap_or_default().to_string(),
        });
        let command = ConversationCommand::RecordDeliveryStatus(StatusUpdate {
            message_ref: self.ids.message_ref(tenant, PROVIDER, &text("id")),
            contact_id: contact_id.clone(),
            status: delivery,
            at: provider_time(&text("timestamp"))?,
            error,
        });
        Ok(Some((contact_id, vec![Step::Conversation(command)])))
    }
}

/// Releases `unmapped` rows whose number is mapped now. Returns how many.
pub async fn release_mapped(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE webhook_inbox i SET state = 'pending', claimed_until = NULL
          WHERE i.state = 'unmapped'
            AND CASE WHEN i.kind = 'template_status'
                     THEN EXISTS (SELECT 1 FROM whatsapp_accounts a WHERE a.waba_id = i.phone_number_id)
                     ELSE EXISTS (SELECT 1 FROM whatsapp_numbers w WHERE w.phone_number_id = i.phone_number_id) END",
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// Puts rows parked as `failed` back to pending (after the cause was fixed). Returns how many.
pub async fn requeue_failed(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE webhook_inbox SET state = 'pending', claimed_until = NULL, attempts = 0 WHERE state = 'failed'",
    )
    .execute(pool)
    .await?
    .rows_affected())
}

fn provider_time(seconds: &str) -> Result<DateTime<Utc>, CommandError> {
    seconds
        .parse::<i64>()
        .ok()
        .and_then(|s| Utc.timestamp_opt(s, 0).single())
        .ok_or_else(|| CommandError::InvalidInput(format!("{seconds:?} is not a provider timestamp")))
}
