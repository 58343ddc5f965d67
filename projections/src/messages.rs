//! The `messages` read model: every message of a conversation, inbound and outbound, in order,
//! with its plaintext content opened from the log's envelopes, and each outbound message's
//! delivery status timeline (provider timestamps); beside it the conversation's working state
//! (status, assignee, tags, window, handover) and its internal notes. Written only by
//! [`MessagesProjector`] (migrations 20261122000011 and 20261122000012); read by
//! [`conversation`], [`messages`] and [`timelines`].
//!
//! Order and repeats: rows are keyed by what the log keys them by (message ref, idempotency
//! key, note id, status), so an event applied twice changes nothing; the conversation's order
//! is the message's own time (the provider's timestamp for inbound messages, the queueing time
//! for outbound ones), then log position, so a message delivered late still sorts where it was
//! written. Delivery statuses are already forward-only in the log (the aggregate drops a late
//! or repeated one), and a status may arrive before the sender recorded the message as sent:
//! the timeline is keyed by the message's reference and joined at query time.

use std::collections::{HashMap, HashSet};

use chronicle_domain::conversation::rich::{Interactive, MediaSource};
use chronicle_domain::conversation::{ConversationEvent, OutboundBody};
use chronicle_domain::pii::{DataKey, Envelope, MasterKey};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool, Row};

use crate::log::StoredEvent;
use crate::page::{read_cursor, time_cursor, BadCursor, Page};
use crate::runtime::{ProjectionError, Projector};
use crate::shared::{all_tenants, begin_for_tenant, clear_person, erased_contact, payload, with_erasure};

/// The projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "messages";

/// Folds `Conversation` events into `messages`, `message_timeline`, `conversation_details` and
/// `conversation_notes`.
pub struct MessagesProjector {
    master: MasterKey,
}

use crate::shared::KeyCache;

impl MessagesProjector {
    /// A projector opening envelopes with data keys unwrapped by `master`.
    pub fn new(master: MasterKey) -> Self {
        Self { master }
    }

    async fn key(
        &self,
        db: &mut PgConnection,
        cache: &mut KeyCache,
        tenant: &TenantId,
        contact_id: &str,
    ) -> Result<Option<DataKey>, ProjectionError> {
        crate::shared::data_key(db, &self.master, cache, tenant, contact_id).await
    }

    async fn open(
        &self,
        db: &mut PgConnection,
        cache: &mut KeyCache,
        tenant: &TenantId,
        contact_id: &str,
        envelope: &Envelope,
    ) -> Result<Option<String>, ProjectionError> {
        let key = self.key(db, cache, tenant, contact_id).await?;
        Ok(key.and_then(|k| k.open(tenant, contact_id, envelope).ok()))
    }

    /// Applies one parsed event. Inbound messages and delivery statuses go to `pending` (written
    /// together by [`Pending::flush`]); any other event flushes `pending` first, so the order of
    /// effects is the log's.
    async fn apply_one(
        &self,
        db: &mut PgConnection,
        keys: &mut KeyCache,
        pending: &mut Pending,
        event: &StoredEvent,
        parsed: ConversationEvent,
    ) -> Result<(), ProjectionError> {
        let tenant = TenantId::parse(&event.tenant_id).map_err(|e| ProjectionError::Handler {
            position: event.global_position,
            reason: e.to_string(),
        })?;
        let conversation_id = event
            .aggregate_id
            .strip_prefix(&format!("{}:", event.tenant_id))
            .unwrap_or(&event.aggregate_id)
            .to_string();
        let position = event.global_position;
        if !matches!(
            parsed,
            ConversationEvent::MessageReceived { .. }
                | ConversationEvent::DeliveryStatusRecorded { external: false, .. }
        ) {
            pending.flush(db).await?;
        }
        match parsed {
            ConversationEvent::MessageReceived {
                message_ref,
                contact_id,
                kind,
                content,
                sent_at,
                window_expires_at,
                ..
            } => {
                // What a person reads, not WhatsApp's object for the kind (the log keeps that).
                let content = match &content {
                    Some(envelope) => self
                        .open(db, keys, &tenant, &contact_id, envelope)
                        .await?
                        .and_then(|json| crate::shared::inbound_text(kind.as_str(), &json)),
                    None => None,
                };
                pending.received(
                    tenant.as_str(),
                    &conversation_id,
                    &contact_id,
                    &message_ref,
                    kind.as_str(),
                    content,
                    sent_at,
                    window_expires_at,
                    position,
                );
            }
            ConversationEvent::DeliveryStatusRecorded {
                message_ref,
                status,
                at,
                error_code,
                error_title,
                window_closed,
                external,
                ..
            } => {
                if external {
                    // A message sent outside Chronicle (decision 0020): the thread shows it,
                    // without content, at its earliest status; Chronicle's own message with this
                    // id, accepted later, takes its place (`OutboundMessageSent`).
                    sqlx::query(
                        "INSERT INTO messages AS m (tenant_id, conversation_id, message_id, direction, message_ref, kind,
                                                    at, state, position, last_position)
                         VALUES ($1, $2, 'ext:' || $3, 'outbound', $3, 'external', $4, 'sent', $5, $5)
                         ON CONFLICT (tenant_id, conversation_id, message_id) DO UPDATE
                            SET at = LEAST(m.at, EXCLUDED.at), last_position = EXCLUDED.last_position
                          WHERE m.last_position < EXCLUDED.last_position",
                    )
                    .bind(tenant.as_str())
                    .bind(&conversation_id)
                    .bind(&message_ref)
                    .bind(at)
                    .bind(position)
                    .execute(&mut *db)
                    .await?;
                }
                pending.status(
                    tenant.as_str(),
                    &conversation_id,
                    &message_ref,
                    status.as_str(),
                    at,
                    error_code,
                    error_title,
                    window_closed,
                    position,
                );
            }
            ConversationEvent::OutboundMessageQueued {
                idempotency_key,
                contact_id,
                body,
                requested_by,
                at,
                ..
            } => {
                let mut attachment = None;
                let (content, name, language) = match &body {
                    OutboundBody::FreeForm { text } => {
                        (self.open(db, keys, &tenant, &contact_id, text).await?, None, None)
                    }
                    OutboundBody::Template {
                        name,
                        language,
                        parameters,
                        ..
                    } => (
                        self.open(db, keys, &tenant, &contact_id, parameters).await?,
                        Some(name.clone()),
                        Some(language.clone()),
                    ),
                    OutboundBody::Media {
                        kind,
                        source,
                        caption,
                        filename,
                    } => {
                        let caption = match caption {
                            Some(c) => self.open(db, keys, &tenant, &contact_id, c).await?,
                            None => None,
                        };
                        let filename = match filename {
                            Some(f) => self.open(db, keys, &tenant, &contact_id, f).await?,
                            None => None,
                        };
                        let mut file = serde_json::json!({"kind": kind.as_str(), "filename": filename});
                        match source {
                            MediaSource::Upload { media_ref } => file["mediaRef"] = media_ref.clone().into(),
                            MediaSource::Link { url } => {
                                file["link"] = self.open(db, keys, &tenant, &contact_id, url).await?.into();
                            }
                        }
                        attachment = Some(file);
                        (caption, None, None)
                    }
                    OutboundBody::Interactive { content, .. } => {
                        let opened = self.open(db, keys, &tenant, &contact_id, content).await?;
                        let message = opened.and_then(|json| serde_json::from_str::<Interactive>(&json).ok());
                        let body = message.as_ref().map(|m| m.body.clone());
                        attachment = message.and_then(|m| serde_json::to_value(m).ok());
                        (body, None, None)
                    }
                };
                sqlx::query(
                    "INSERT INTO messages (tenant_id, conversation_id, message_id, direction, idempotency_key, kind,
                                           content, template_name, template_language, at, state, requested_by,
                                           position, last_position, attachment)
                     VALUES ($1, $2, 'out:' || $3, 'outbound', $3, $4, $5, $6, $7, $8, 'queued', $9, $10, $10, $11)
                     ON CONFLICT (tenant_id, conversation_id, message_id) DO NOTHING",
                )
                .bind(tenant.as_str())
                .bind(&conversation_id)
                .bind(&idempotency_key)
                .bind(body.kind())
                .bind(content)
                .bind(name)
                .bind(language)
                .bind(at)
                .bind(requested_by)
                .bind(position)
                .bind(attachment)
                .execute(&mut *db)
                .await?;
            }
            ConversationEvent::OutboundMessageSent {
                idempotency_key,
                message_ref,
                at,
                ..
            } => {
                // A status that beat this record made the message look sent outside Chronicle:
                // the thread's stand-in goes, its statuses follow the id to this message.
                sqlx::query(
                    "DELETE FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND message_id = 'ext:' || $3",
                )
                .bind(tenant.as_str())
                .bind(&conversation_id)
                .bind(&message_ref)
                .execute(&mut *db)
                .await?;
                sqlx::query(
                    "UPDATE messages SET state = 'sent', message_ref = $4, sent_at = $5, next_try_at = NULL, last_position = $6
                      WHERE tenant_id = $1 AND conversation_id = $2 AND message_id = 'out:' || $3
                        AND last_position < $6",
                )
                .bind(tenant.as_str())
                .bind(&conversation_id)
                .bind(&idempotency_key)
                .bind(&message_ref)
                .bind(at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            ConversationEvent::OutboundMessageFailed {
                idempotency_key,
                code,
                title,
                retryable,
                ..
            } => {
                sqlx::query(
                    "UPDATE messages SET state = 'failed', error_code = $4, error_title = $5, retryable = $6,
                            next_try_at = NULL, last_position = $7
                      WHERE tenant_id = $1 AND conversation_id = $2 AND message_id = 'out:' || $3
                        AND last_position < $7",
                )
                .bind(tenant.as_str())
                .bind(&conversation_id)
                .bind(&idempotency_key)
                .bind(code)
                .bind(title)
                .bind(retryable)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            ConversationEvent::ConversationStatusChanged { to, .. } => {
                update_details(
                    db,
                    &tenant,
                    &conversation_id,
                    position,
                    "status = $4",
                    Some(to.as_str()),
                )
                .await?;
            }
            ConversationEvent::ConversationAssigned { agent_id, .. } => {
                update_details(
                    db,
                    &tenant,
                    &conversation_id,
                    position,
                    "assignee = $4, handover_requested_at = NULL, handover_reason = NULL",
                    Some(&agent_id),
                )
                .await?;
            }
            ConversationEvent::ConversationUnassigned { .. } => {
                update_details(db, &tenant, &conversation_id, position, "assignee = NULL", None).await?;
            }
            ConversationEvent::ConversationTagged { tag, .. } => {
                update_details(
                    db,
                    &tenant,
                    &conversation_id,
                    position,
                    "tags = array_append(array_remove(tags, $4), $4)",
                    Some(&tag),
                )
                .await?;
            }
            ConversationEvent::ConversationUntagged { tag, .. } => {
                update_details(
                    db,
                    &tenant,
                    &conversation_id,
                    position,
                    "tags = array_remove(tags, $4)",
                    Some(&tag),
                )
                .await?;
            }
            ConversationEvent::NoteAdded { note_id, text, by, at } => {
                let contact_id = contact_of(db, &tenant, &conversation_id).await?;
                let text = match contact_id {
                    Some(contact_id) => self.open(db, keys, &tenant, &contact_id, &text).await?,
                    None => None,
                };
                sqlx::query(
                    "INSERT INTO conversation_notes (tenant_id, conversation_id, note_id, text, author, at, position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (tenant_id, conversation_id, note_id) DO NOTHING",
                )
                .bind(tenant.as_str())
                .bind(&conversation_id)
                .bind(&note_id)
                .bind(text)
                .bind(by)
                .bind(at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            // Read receipts change the inbox's unread count (`conversations`), not a message.
            ConversationEvent::ConversationRead { .. } => {}
            // The sender's progress on a message without an outcome.
            ConversationEvent::OutboundSendRetried {
                idempotency_key,
                attempt,
                code,
                title,
                next_try_at,
                ..
            } => {
                sqlx::query(
                    "UPDATE messages SET state = 'retrying', send_tries = $4, last_send_error = $5, next_try_at = $6,
                            last_position = $7
                      WHERE tenant_id = $1 AND conversation_id = $2 AND message_id = 'out:' || $3
                        AND state IN ('queued', 'retrying') AND last_position < $7",
                )
                .bind(tenant.as_str())
                .bind(&conversation_id)
                .bind(&idempotency_key)
                .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
                .bind(send_error(code, &title))
                .bind(next_try_at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            ConversationEvent::OutboundSendUncertain {
                idempotency_key,
                reason,
                ..
            } => {
                sqlx::query(
                    "UPDATE messages SET state = 'needs_operator', last_send_error = $4, next_try_at = NULL,
                            last_position = $5
                      WHERE tenant_id = $1 AND conversation_id = $2 AND message_id = 'out:' || $3
                        AND state IN ('queued', 'retrying') AND last_position < $5",
                )
                .bind(tenant.as_str())
                .bind(&conversation_id)
                .bind(&idempotency_key)
                .bind(reason)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            // Sent again: queued, its tries counted from 1 again.
            ConversationEvent::OutboundResendAuthorized { idempotency_key, .. } => {
                sqlx::query(
                    "UPDATE messages SET state = 'queued', send_tries = 0, last_send_error = NULL, next_try_at = NULL,
                            last_position = $4
                      WHERE tenant_id = $1 AND conversation_id = $2 AND message_id = 'out:' || $3
                        AND state = 'needs_operator' AND last_position < $4",
                )
                .bind(tenant.as_str())
                .bind(&conversation_id)
                .bind(&idempotency_key)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            ConversationEvent::HandoverRequested { reason, at, .. } => {
                let contact_id = contact_of(db, &tenant, &conversation_id).await?;
                let reason = match (contact_id, reason) {
                    (Some(contact_id), Some(reason)) => self.open(db, keys, &tenant, &contact_id, &reason).await?,
                    _ => None,
                };
                sqlx::query(
                    "UPDATE conversation_details SET handover_requested_at = $3, handover_reason = $4, last_position = $5
                      WHERE tenant_id = $1 AND conversation_id = $2 AND last_position < $5",
                )
                .bind(tenant.as_str())
                .bind(&conversation_id)
                .bind(at)
                .bind(reason)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
        }
        Ok(())
    }
}

/// Inbound messages and delivery statuses of a batch not written yet, folded into three
/// set-based statements. They commute with each other (distinct rows, or one details row per
/// conversation folded below), so writing them together has exactly the effect of writing them
/// one by one; every other event flushes them first.
#[derive(Default)]
struct Pending {
    /// `messages` rows of inbound messages, first occurrence of each key kept (the rest would
    /// do nothing).
    inbound: Vec<InboundRow>,
    inbound_keys: HashSet<(String, String, String)>,
    /// One `conversation_details` upsert per conversation: the first message's contact, the
    /// last one's window and position. Applied one by one, each later upsert overwrites the
    /// window and position of the earlier ones, and the guard passes for the last one exactly
    /// when it passes for any (positions grow), so the folded upsert ends in the same row.
    details: Vec<DetailsRow>,
    details_index: HashMap<(String, String), usize>,
    /// `message_timeline` rows, first occurrence of each key kept.
    timeline: Vec<TimelineRow>,
    timeline_keys: HashSet<(String, String, String)>,
}

struct InboundRow {
    tenant_id: String,
    conversation_id: String,
    message_ref: String,
    kind: &'static str,
    content: Option<String>,
    at: DateTime<Utc>,
    position: i64,
}

struct DetailsRow {
    tenant_id: String,
    conversation_id: String,
    contact_id: String,
    window_expires_at: DateTime<Utc>,
    position: i64,
}

struct TimelineRow {
    tenant_id: String,
    conversation_id: String,
    message_ref: String,
    status: &'static str,
    at: DateTime<Utc>,
    error_code: Option<i64>,
    error_title: Option<String>,
    window_closed: bool,
    position: i64,
}

impl Pending {
    #[allow(clippy::too_many_arguments)]
    fn received(
        &mut self,
        tenant_id: &str,
        conversation_id: &str,
        contact_id: &str,
        message_ref: &str,
        kind: &'static str,
        content: Option<String>,
        at: DateTime<Utc>,
        window_expires_at: DateTime<Utc>,
        position: i64,
    ) {
        let key = (
            tenant_id.to_string(),
            conversation_id.to_string(),
            format!("in:{message_ref}"),
        );
        if self.inbound_keys.insert(key) {
            self.inbound.push(InboundRow {
                tenant_id: tenant_id.to_string(),
                conversation_id: conversation_id.to_string(),
                message_ref: message_ref.to_string(),
                kind,
                content,
                at,
                position,
            });
        }
        let key = (tenant_id.to_string(), conversation_id.to_string());
        match self.details_index.get(&key) {
            Some(&i) => {
                if let Some(row) = self.details.get_mut(i) {
                    row.window_expires_at = window_expires_at;
                    row.position = position;
                }
            }
            None => {
                self.details_index.insert(key, self.details.len());
                self.details.push(DetailsRow {
                    tenant_id: tenant_id.to_string(),
                    conversation_id: conversation_id.to_string(),
                    contact_id: contact_id.to_string(),
                    window_expires_at,
                    position,
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn status(
        &mut self,
        tenant_id: &str,
        conversation_id: &str,
        message_ref: &str,
        status: &'static str,
        at: DateTime<Utc>,
        error_code: Option<i64>,
        error_title: Option<String>,
        window_closed: bool,
        position: i64,
    ) {
        let key = (tenant_id.to_string(), message_ref.to_string(), status.to_string());
        if self.timeline_keys.insert(key) {
            self.timeline.push(TimelineRow {
                tenant_id: tenant_id.to_string(),
                conversation_id: conversation_id.to_string(),
                message_ref: message_ref.to_string(),
                status,
                at,
                error_code,
                error_title,
                window_closed,
                position,
            });
        }
    }

    /// Writes what is pending (at most three statements) and empties it.
    async fn flush(&mut self, db: &mut PgConnection) -> Result<(), ProjectionError> {
        if !self.inbound.is_empty() {
            let rows = std::mem::take(&mut self.inbound);
            sqlx::query(
                "INSERT INTO messages (tenant_id, conversation_id, message_id, direction, message_ref, kind, content,
                                       at, state, position, last_position)
                 SELECT t, c, 'in:' || r, 'inbound', r, k, b, a, 'received', p, p
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                               $7::int8[]) WITH ORDINALITY AS u(t, c, r, k, b, a, p, n)
                  ORDER BY n
                 ON CONFLICT (tenant_id, conversation_id, message_id) DO NOTHING",
            )
            .bind(rows.iter().map(|r| r.tenant_id.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.conversation_id.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.message_ref.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.kind).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.content.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
            .execute(&mut *db)
            .await?;
            self.inbound_keys.clear();
        }
        if !self.details.is_empty() {
            let rows = std::mem::take(&mut self.details);
            sqlx::query(
                "INSERT INTO conversation_details AS d (tenant_id, conversation_id, contact_id, status,
                                                        window_expires_at, last_position)
                 SELECT t, c, ct, 'open', w, p
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int8[])
                        WITH ORDINALITY AS u(t, c, ct, w, p, n)
                  ORDER BY n
                 ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET
                        status = 'open', window_expires_at = EXCLUDED.window_expires_at,
                        last_position = EXCLUDED.last_position
                  WHERE d.last_position < EXCLUDED.last_position",
            )
            .bind(rows.iter().map(|r| r.tenant_id.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.conversation_id.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.contact_id.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.window_expires_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
            .execute(&mut *db)
            .await?;
            self.details_index.clear();
        }
        if !self.timeline.is_empty() {
            let rows = std::mem::take(&mut self.timeline);
            sqlx::query(
                "INSERT INTO message_timeline (tenant_id, conversation_id, message_ref, status, at, error_code,
                                               error_title, window_closed, position)
                 SELECT t, c, r, s, a, ec, et, w, p
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::int8[],
                               $7::text[], $8::bool[], $9::int8[]) WITH ORDINALITY AS u(t, c, r, s, a, ec, et, w, p, n)
                  ORDER BY n
                 ON CONFLICT (tenant_id, message_ref, status) DO NOTHING",
            )
            .bind(rows.iter().map(|r| r.tenant_id.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.conversation_id.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.message_ref.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.error_code).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.error_title.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.window_closed).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
            .execute(&mut *db)
            .await?;
            self.timeline_keys.clear();
        }
        Ok(())
    }
}

/// The contact of a conversation, from its details row.
async fn contact_of(
    db: &mut PgConnection,
    tenant: &TenantId,
    conversation_id: &str,
) -> Result<Option<String>, ProjectionError> {
    Ok(
        sqlx::query_scalar("SELECT contact_id FROM conversation_details WHERE tenant_id = $1 AND conversation_id = $2")
            .bind(tenant.as_str())
            .bind(conversation_id)
            .fetch_optional(&mut *db)
            .await?,
    )
}

/// Applies `set` (which may use `$4`) to the conversation's details row, once per event.
async fn update_details(
    db: &mut PgConnection,
    tenant: &TenantId,
    conversation_id: &str,
    position: i64,
    set: &'static str,
    value: Option<&str>,
) -> Result<(), ProjectionError> {
    let sql = format!(
        "UPDATE conversation_details SET {set}, last_position = $3
          WHERE tenant_id = $1 AND conversation_id = $2 AND last_position < $3"
    );
    let query = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(conversation_id)
        .bind(position);
    let query = match value {
        Some(value) => query.bind(value),
        None => query,
    };
    query.execute(&mut *db).await?;
    Ok(())
}

/// The event types read: ConversationEvent::TYPES's and the contact's erasure.
static TYPES_READ: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| with_erasure(ConversationEvent::TYPES));

impl Projector for MessagesProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        TYPES_READ.as_slice()
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [&'a StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            all_tenants(tx).await?;
            let mut parsed = Vec::with_capacity(events.len());
            for event in events.iter().filter(|e| e.aggregate_type == "Conversation") {
                let p: ConversationEvent = payload(event)?;
                parsed.push((event, p));
            }
            // Every data key the batch opens messages with, in one statement.
            let mut wanted = Vec::new();
            for (event, p) in &parsed {
                let contact_id = match p {
                    ConversationEvent::MessageReceived { contact_id, .. }
                    | ConversationEvent::OutboundMessageQueued { contact_id, .. } => contact_id,
                    _ => continue,
                };
                if let Ok(tenant) = TenantId::parse(&event.tenant_id) {
                    wanted.push((tenant, contact_id.as_str()));
                }
            }
            let mut keys = KeyCache::new();
            crate::shared::prefetch_keys(tx, &self.master, &mut keys, wanted.iter().map(|(t, c)| (t, *c))).await?;
            let mut pending = Pending::default();
            let mut parsed = parsed.into_iter().peekable();
            for event in events {
                if let Some((tenant, contact_id)) = erased_contact(event) {
                    // What came before the erasure is written first, then cleared.
                    pending.flush(tx).await?;
                    clear_person(
                        tx,
                        &tenant,
                        &contact_id,
                        &[
                            "UPDATE messages SET content = NULL, attachment = NULL WHERE tenant_id = $1 AND conversation_id = $2",
                            "UPDATE conversation_notes SET text = NULL WHERE tenant_id = $1 AND conversation_id = $2",
                            "UPDATE conversation_details SET handover_reason = NULL
                              WHERE tenant_id = $1 AND conversation_id = $2",
                        ],
                    )
                    .await?;
                    continue;
                }
                if let Some((_, p)) = parsed.next_if(|(e, _)| std::ptr::eq(*e, event)) {
                    self.apply_one(tx, &mut keys, &mut pending, event, p).await?;
                }
            }
            pending.flush(tx).await?;
            Ok(())
        })
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "messages",
            "message_timeline",
            "conversation_details",
            "conversation_notes",
        ]
    }
}

/// A conversation's working state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConversationDetail {
    pub conversation_id: String,
    pub contact_id: String,
    pub status: String,
    pub assignee: Option<String>,
    pub tags: Vec<String>,
    pub window_expires_at: Option<DateTime<Utc>>,
    pub handover_requested_at: Option<DateTime<Utc>>,
    pub handover_reason: Option<String>,
    pub notes: Vec<Note>,
}

/// An internal note.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Note {
    pub note_id: String,
    pub text: Option<String>,
    pub author: String,
    pub at: DateTime<Utc>,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MessageRow {
    pub message_id: String,
    pub direction: String,
    pub message_ref: Option<String>,
    pub idempotency_key: Option<String>,
    pub kind: String,
    pub content: Option<String>,
    /// An outbound media message's file (`kind`, `mediaRef` or `link`, `filename`) or an
    /// interactive message (`header`, `body`, `footer`, `choices`); null otherwise.
    pub attachment: Option<serde_json::Value>,
    pub template_name: Option<String>,
    pub template_language: Option<String>,
    pub at: DateTime<Utc>,
    pub state: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub requested_by: Option<String>,
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
    pub retryable: Option<bool>,
    /// The sender's tries of an outbound message not yet settled (0 before the first).
    pub send_tries: i32,
    /// The error of the sender's last try, or why it was left for an operator.
    pub last_send_error: Option<String>,
    /// When the sender tries again (state `retrying`).
    pub next_try_at: Option<DateTime<Utc>>,
}

/// One status an outbound message reached.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TimelineEntry {
    pub status: String,
    pub at: DateTime<Utc>,
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
    pub window_closed: bool,
}

/// A conversation's working state and notes, or `None` if the tenant has no such conversation.
pub async fn conversation(
    pool: &PgPool,
    tenant: &TenantId,
    conversation_id: &str,
) -> Result<Option<ConversationDetail>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let Some(row) = sqlx::query(
        "SELECT conversation_id, contact_id, status, assignee, tags, window_expires_at, handover_requested_at,
                handover_reason
           FROM conversation_details WHERE tenant_id = $1 AND conversation_id = $2",
    )
    .bind(tenant.as_str())
    .bind(conversation_id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let notes = sqlx::query(
        "SELECT note_id, text, author, at FROM conversation_notes
          WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY at, position",
    )
    .bind(tenant.as_str())
    .bind(conversation_id)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| -> Result<Note, sqlx::Error> {
        Ok(Note {
            note_id: r.try_get("note_id")?,
            text: r.try_get("text")?,
            author: r.try_get("author")?,
            at: r.try_get("at")?,
        })
    })
    .collect::<Result<Vec<_>, _>>()?;
    tx.commit().await?;
    Ok(Some(ConversationDetail {
        conversation_id: row.try_get("conversation_id")?,
        contact_id: row.try_get("contact_id")?,
        status: row.try_get("status")?,
        assignee: row.try_get("assignee")?,
        tags: row.try_get("tags")?,
        window_expires_at: row.try_get("window_expires_at")?,
        handover_requested_at: row.try_get("handover_requested_at")?,
        handover_reason: row.try_get("handover_reason")?,
        notes,
    }))
}

/// A conversation's messages, oldest first, after a cursor.
pub async fn messages(
    pool: &PgPool,
    tenant: &TenantId,
    conversation_id: &str,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<MessageRow>, BadCursor>, sqlx::Error> {
    let after = match after.map(read_cursor::<i64, i64>).transpose() {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let (after_micros, after_position) = after.unwrap_or((i64::MIN, i64::MIN));
    let first = first.clamp(1, 200);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT message_id, direction, message_ref, idempotency_key, kind, content, template_name,
                template_language, at, state, sent_at, requested_by, error_code, error_title, retryable, position,
                send_tries, last_send_error, next_try_at, attachment
           FROM messages
          WHERE tenant_id = $1 AND conversation_id = $2
            AND ((extract(epoch FROM at) * 1000000)::bigint, position) > ($3::bigint, $4::bigint)
          ORDER BY at, position
          LIMIT $5",
    )
    .bind(tenant.as_str())
    .bind(conversation_id)
    .bind(after_micros)
    .bind(after_position)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Page::of(
        &rows,
        first,
        |r| -> Result<(String, MessageRow), sqlx::Error> {
            let position: i64 = r.try_get("position")?;
            let row = MessageRow {
                message_id: r.try_get("message_id")?,
                direction: r.try_get("direction")?,
                message_ref: r.try_get("message_ref")?,
                idempotency_key: r.try_get("idempotency_key")?,
                kind: r.try_get("kind")?,
                content: r.try_get("content")?,
                attachment: r.try_get("attachment")?,
                template_name: r.try_get("template_name")?,
                template_language: r.try_get("template_language")?,
                at: r.try_get("at")?,
                state: r.try_get("state")?,
                sent_at: r.try_get("sent_at")?,
                requested_by: r.try_get("requested_by")?,
                error_code: r.try_get("error_code")?,
                error_title: r.try_get("error_title")?,
                retryable: r.try_get("retryable")?,
                send_tries: r.try_get("send_tries")?,
                last_send_error: r.try_get("last_send_error")?,
                next_try_at: r.try_get("next_try_at")?,
            };
            Ok((time_cursor(row.at, position), row))
        },
    )?))
}

/// The status timelines of messages by reference, each in the order sent, delivered, read,
/// failed.
pub async fn timelines(
    pool: &PgPool,
    tenant: &TenantId,
    message_refs: &[String],
) -> Result<HashMap<String, Vec<TimelineEntry>>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT message_ref, status, at, error_code, error_title, window_closed FROM message_timeline
          WHERE tenant_id = $1 AND message_ref = ANY($2)
          ORDER BY message_ref, array_position(ARRAY['sent', 'delivered', 'read', 'failed'], status), at",
    )
    .bind(tenant.as_str())
    .bind(message_refs)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut out: HashMap<String, Vec<TimelineEntry>> = HashMap::new();
    for r in rows {
        out.entry(r.try_get("message_ref")?).or_default().push(TimelineEntry {
            status: r.try_get("status")?,
            at: r.try_get("at")?,
            error_code: r.try_get("error_code")?,
            error_title: r.try_get("error_title")?,
            window_closed: r.try_get("window_closed")?,
        });
    }
    Ok(out)
}

/// A send error as shown: `<code>: <title>`, or the title alone.
pub fn send_error(code: Option<i64>, title: &str) -> String {
    match code {
        Some(code) => format!("{code}: {title}"),
        None => title.to_string(),
    }
}
