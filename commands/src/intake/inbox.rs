//! The webhook inbox: items are stored (deduplicated by the provider's key) before the webhook
//! is answered, then claimed and processed into commands. A row is marked done only after its
//! events are appended; a crash leaves the claim to expire and the row is retried, and the
//! aggregates' idempotency makes the retry harmless.
//!
//! Deliveries for a WhatsApp phone-number id that no tenant owns yet are not lost: they are
//! kept as `unmapped`, logged once for operators, and released to `pending` when the number is
//! mapped ([`crate::tenants::map_whatsapp_number`]).

use std::collections::HashMap;

use chronicle_domain::conversation::{
    ConversationCommand, DeliveryStatus, InboundMessage, MessageKind, ProviderError, StatusUpdate,
};
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::phone::PhoneNumber;
use chronicle_domain::pii::{ContactHandle, IdKey};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, TimeZone, Utc};
use rand::rngs::OsRng;
use serde_json::Value;
use sqlx::{PgPool, Row};
use tracing::Instrument;

use super::whatsapp::{DeliveryItem, PROVIDER};
use crate::dispatch::Commands;
use crate::error::CommandError;
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
}

struct Claimed {
    inbox_id: i64,
    phone_number_id: Option<String>,
    kind: String,
    correlation_id: String,
    payload: Value,
    attempts: i32,
}

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
          RETURNING inbox_id, phone_number_id, kind, correlation_id, payload, attempts",
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
            })
            .collect();
        claimed.sort_by_key(|c| c.inbox_id);

        let mut tenants: HashMap<String, Option<TenantId>> = HashMap::new();
        let mut processed = Processed::default();
        for row in claimed {
            let number = row.phone_number_id.clone().unwrap_or_default();
            let tenant = match tenants.get(&number) {
                Some(t) => t.clone(),
                None => {
                    let t = tenant_of_number(&self.pool, &number).await?;
                    tenants.insert(number.clone(), t.clone());
                    t
                }
            };
            let Some(tenant) = tenant else {
                self.park_unmapped(&row, &number).await?;
                processed.unmapped += 1;
                continue;
            };
            let span = tracing::info_span!("inbox.item", inbox.id = row.inbox_id, tenant.id = %tenant, correlation.id = %row.correlation_id);
            match self.process_row(&tenant, &row).instrument(span).await {
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
                AND NOT EXISTS (SELECT 1 FROM whatsapp_numbers WHERE phone_number_id = $2)",
        )
        .bind(row.inbox_id)
        .bind(number)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if parked == 1 {
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

    async fn process_row(&self, tenant: &TenantId, row: &Claimed) -> Outcome {
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
        let (contact_id, command) = match built {
            Ok(Some(pair)) => pair,
            Ok(None) => return Outcome::Done,
            Err(e @ CommandError::InvalidInput(_)) | Err(e @ CommandError::Rejected(_)) => {
                return Outcome::Failed(e.to_string())
            }
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        match self.commands.conversation(&contact_id, command, &metadata).await {
            Ok(()) => Outcome::Done,
            Err(e @ CommandError::Rejected(_)) | Err(e @ CommandError::InvalidInput(_)) => {
                Outcome::Failed(e.to_string())
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    fn contact_of(&self, tenant: &TenantId, number: &str) -> Result<(PhoneNumber, String), CommandError> {
        let phone = PhoneNumber::parse(number)
            .map_err(|e| CommandError::InvalidInput(format!("the sender's number is not usable: {e}")))?;
        let contact_id = self.ids.contact_id(tenant, ContactHandle::Phone(&phone));
        Ok((phone, contact_id))
    }

    async fn message_command(
        &self,
        tenant: &TenantId,
        business_number: &str,
        payload: &Value,
    ) -> Result<Option<(String, ConversationCommand)>, CommandError> {
        let message = &payload["message"];
        let text = |name: &str| {
            message
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (phone, contact_id) = self.contact_of(tenant, &text("from"))?;
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
        let command = ConversationCommand::ReceiveMessage(InboundMessage {
            message_ref: self.ids.message_ref(tenant, PROVIDER, &wamid),
            provider_message_id: seal(&wamid),
            contact_id: contact_id.clone(),
            business_number_id: business_number.to_string(),
            contact_phone: seal(phone.as_str()),
            contact_name,
            kind: MessageKind::from_whatsapp(&kind_name),
            content,
            sent_at: provider_time(&text("timestamp"))?,
        });
        Ok(Some((contact_id, command)))
    }

    fn status_command(
        &self,
        tenant: &TenantId,
        payload: &Value,
    ) -> Result<Option<(String, ConversationCommand)>, CommandError> {
        let status = &payload["status"];
        let text = |name: &str| status.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(delivery) = DeliveryStatus::from_whatsapp(&text("status")) else {
            // Statuses Chronicle does not track (e.g. "deleted", "warning") change nothing.
            return Ok(None);
        };
        let (_, contact_id) = self.contact_of(tenant, &text("recipient_id"))?;
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
        Ok(Some((contact_id, command)))
    }
}

/// Releases `unmapped` rows whose number is mapped now. Returns how many.
pub async fn release_mapped(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE webhook_inbox i SET state = 'pending', claimed_until = NULL
          WHERE i.state = 'unmapped'
            AND EXISTS (SELECT 1 FROM whatsapp_numbers w WHERE w.phone_number_id = i.phone_number_id)",
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
