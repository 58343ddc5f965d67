//! The `media` projector and its query.
//!
//! - `MessageReceived` of a media kind (image, audio, video, document, sticker) becomes a row of
//!   the `media_job_feed` (migration 20261206000083), which the media fetcher
//!   (`commands::media`) copies into its own `media_jobs` queue and works. The projector opens the sealed content with the contact's data
//!   key only to read WhatsApp's media id and make its keyed ref; the row keeps the content
//!   sealed exactly as in the event. A contact whose key was erased queues nothing.
//! - The `Media` events fold into the `media_files` read model (migration 20261122000047): the
//!   fetch status, sha-256, size and MIME type of each media object, read by [`by_message`]; a
//!   settled fetch settles its feed row too (`settled`, its `position` moved), so a job the
//!   fetcher lost track of is settled from the log, never fetched again.
//!
//! Idempotent: feed rows are inserted with `ON CONFLICT DO NOTHING`, read-model rows are guarded
//! by `last_position`. [`Projector::reset`] deletes the read model and the feed; the fetcher's
//! `media_jobs` are its own (decision 0013).

use std::collections::HashMap;

use chronicle_domain::conversation::ConversationEvent;
use chronicle_domain::media::{MediaEvent, MediaKind};
use chronicle_domain::pii::{DataKey, IdKey, MasterKey};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};

use crate::log::StoredEvent;
use crate::runtime::{ProjectionError, Projector};
use crate::shared::{all_tenants, begin_for_tenant, payload};

/// The projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "media";

/// The provider name of media refs (`IdKey::media_ref`).
pub const PROVIDER: &str = "whatsapp";

/// The event types the projector reads.
const TYPES: &[&str] = &[
    "MessageReceived",
    "MediaFetchRequested",
    "MediaStored",
    "MediaFetchFailed",
    "MediaFetchGaveUp",
    "MediaRefetchRequested",
];

/// Queues inbound media for the fetcher and folds `Media` events into `media_files`.
pub struct MediaProjector {
    master: MasterKey,
    ids: IdKey,
}

impl MediaProjector {
    /// A projector opening envelopes with data keys unwrapped by `master`.
    pub fn new(master: MasterKey) -> Self {
        Self {
            ids: master.id_key(),
            master,
        }
    }

    async fn key(
        &self,
        db: &mut PgConnection,
        cache: &mut HashMap<(String, String), Option<DataKey>>,
        tenant: &TenantId,
        contact_id: &str,
    ) -> Result<Option<DataKey>, ProjectionError> {
        crate::shared::data_key(db, &self.master, cache, tenant, contact_id).await
    }

    async fn message(
        &self,
        db: &mut PgConnection,
        keys: &mut HashMap<(String, String), Option<DataKey>>,
        event: &StoredEvent,
        tenant: &TenantId,
        parsed: ConversationEvent,
    ) -> Result<(), ProjectionError> {
        let ConversationEvent::MessageReceived {
            message_ref,
            contact_id,
            kind,
            content: Some(content),
            ..
        } = parsed
        else {
            return Ok(());
        };
        let Some(media_kind) = MediaKind::from_whatsapp(kind.as_str()) else {
            return Ok(());
        };
        let Some(key) = self.key(db, keys, tenant, &contact_id).await? else {
            // Erased: the media id is unreadable, there is nothing to fetch.
            return Ok(());
        };
        let media_id = key
            .open(tenant, &contact_id, &content)
            .ok()
            .and_then(|json| serde_json::from_str::<Value>(&json).ok())
            .and_then(|v| v["id"].as_str().map(str::to_string))
            .filter(|id| !id.trim().is_empty());
        let Some(media_id) = media_id else {
            tracing::warn!(tenant.id = %tenant, position = event.global_position, "a media message without a media id");
            return Ok(());
        };
        let media_ref = self.ids.media_ref(tenant, PROVIDER, &media_id);
        let conversation_id = local_id(event);
        let content = serde_json::to_value(&content).map_err(|source| ProjectionError::Decode {
            position: event.global_position,
            source,
        })?;
        sqlx::query(
            "INSERT INTO media_job_feed (tenant_id, media_ref, conversation_id, contact_id, message_ref, kind, content,
                                         correlation_id, event_position, position)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (tenant_id, media_ref) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(&media_ref)
        .bind(&conversation_id)
        .bind(&contact_id)
        .bind(&message_ref)
        .bind(media_kind.as_str())
        .bind(content)
        .bind(event.metadata["correlation_id"].as_str().unwrap_or_default())
        .bind(event.global_position)
        .execute(&mut *db)
        .await?;
        Ok(())
    }

    async fn media(
        &self,
        db: &mut PgConnection,
        event: &StoredEvent,
        tenant: &TenantId,
    ) -> Result<(), ProjectionError> {
        let parsed: MediaEvent = payload(event)?;
        let media_ref = local_id(event);
        let position = event.global_position;
        match parsed {
            MediaEvent::MediaFetchRequested {
                conversation_id,
                contact_id,
                message_ref,
                kind,
                mime_type,
                expected_sha256,
                at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO media_files (tenant_id, media_ref, message_ref, conversation_id, contact_id, kind,
                                              status, expected_sha256, mime_type, requested_at, updated_at, last_position)
                     VALUES ($1, $2, $3, $4, $5, $6, 'requested', $7, $8, $9, $9, $10)
                     ON CONFLICT (tenant_id, media_ref) DO NOTHING",
                )
                .bind(tenant.as_str())
                .bind(&media_ref)
                .bind(message_ref)
                .bind(conversation_id)
                .bind(contact_id)
                .bind(kind.as_str())
                .bind(expected_sha256)
                .bind(mime_type)
                .bind(at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            MediaEvent::MediaStored {
                sha256,
                size,
                mime_type,
                attempts,
                at,
                ..
            } => {
                sqlx::query(
                    "UPDATE media_files SET status = 'stored', sha256 = $3, size = $4, mime_type = $5,
                            failed_attempts = $6, next_attempt_at = NULL, stored_at = $7, updated_at = $7,
                            last_position = $8
                      WHERE tenant_id = $1 AND media_ref = $2 AND last_position < $8",
                )
                .bind(tenant.as_str())
                .bind(&media_ref)
                .bind(sha256)
                .bind(i64::try_from(size).unwrap_or(i64::MAX))
                .bind(mime_type)
                .bind(i32::try_from(attempts.saturating_sub(1)).unwrap_or(i32::MAX))
                .bind(at)
                .bind(position)
                .execute(&mut *db)
                .await?;
                settle(db, event, tenant, &media_ref, "stored", None).await?;
            }
            MediaEvent::MediaFetchFailed {
                attempt,
                code,
                retryable,
                next_attempt_at,
                at,
            } => {
                failed(
                    db,
                    tenant,
                    &media_ref,
                    retryable,
                    attempt,
                    &code,
                    next_attempt_at,
                    at,
                    position,
                )
                .await?;
                if !retryable {
                    settle(db, event, tenant, &media_ref, "failed", Some(&code)).await?;
                }
            }
            MediaEvent::MediaFetchGaveUp { attempts, code, at } => {
                failed(db, tenant, &media_ref, false, attempts, &code, None, at, position).await?;
                // Guarded like every update: once a refetch follows, a given-up status is history.
                sqlx::query(
                    "UPDATE media_files SET status = 'gave_up' WHERE tenant_id = $1 AND media_ref = $2 AND last_position <= $3",
                )
                .bind(tenant.as_str())
                .bind(&media_ref)
                .bind(position)
                .execute(&mut *db)
                .await?;
                settle(db, event, tenant, &media_ref, "failed", Some(&code)).await?;
            }
            // Uploads are outbound files: their message shows them (`messages.attachment`);
            // `media_files` is the fetch of inbound media. (Not among the projector's types.)
            MediaEvent::MediaUploaded { .. } => {}
            MediaEvent::MediaRefetchRequested { at, .. } => {
                // An operator's decision: the fetch starts over, attempts from 1; the feed row
                // is open again, to settle with the new outcome.
                sqlx::query(
                    "UPDATE media_files SET status = 'requested', failed_attempts = 0, next_attempt_at = NULL,
                            updated_at = $3, last_position = $4
                      WHERE tenant_id = $1 AND media_ref = $2 AND last_position < $4",
                )
                .bind(tenant.as_str())
                .bind(&media_ref)
                .bind(at)
                .bind(position)
                .execute(&mut *db)
                .await?;
                sqlx::query(
                    "UPDATE media_job_feed SET settled = NULL, settled_error = NULL, position = $3
                      WHERE tenant_id = $1 AND media_ref = $2 AND position < $3",
                )
                .bind(tenant.as_str())
                .bind(&media_ref)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
            }
        }
        Ok(())
    }
}

/// The stream's local id (after `<tenant>:`).
fn local_id(event: &StoredEvent) -> String {
    event
        .aggregate_id
        .strip_prefix(&format!("{}:", event.tenant_id))
        .unwrap_or(&event.aggregate_id)
        .to_string()
}

#[allow(clippy::too_many_arguments)]
async fn failed(
    db: &mut PgConnection,
    tenant: &TenantId,
    media_ref: &str,
    retryable: bool,
    attempt: u32,
    code: &str,
    next_attempt_at: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
    position: i64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE media_files SET status = CASE WHEN $3 THEN status ELSE 'failed' END, failed_attempts = $4,
                last_failure = $5, next_attempt_at = $6, updated_at = $7, last_position = $8
          WHERE tenant_id = $1 AND media_ref = $2 AND last_position < $8",
    )
    .bind(tenant.as_str())
    .bind(media_ref)
    .bind(retryable)
    .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
    .bind(code)
    .bind(next_attempt_at)
    .bind(at)
    .bind(position)
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// Marks a feed row with the outcome the log recorded (its first one).
async fn settle(
    db: &mut PgConnection,
    event: &StoredEvent,
    tenant: &TenantId,
    media_ref: &str,
    state: &str,
    error: Option<&str>,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE media_job_feed SET settled = $3, settled_error = $4, position = $5
          WHERE tenant_id = $1 AND media_ref = $2 AND settled IS NULL",
    )
    .bind(tenant.as_str())
    .bind(media_ref)
    .bind(state)
    .bind(error)
    .bind(event.global_position)
    .execute(&mut *db)
    .await?;
    Ok(())
}

impl Projector for MediaProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        TYPES
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [&'a StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            all_tenants(tx).await?;
            let mut keys = HashMap::new();
            for event in events {
                let tenant = TenantId::parse(&event.tenant_id).map_err(|e| ProjectionError::Handler {
                    position: event.global_position,
                    reason: e.to_string(),
                })?;
                match event.aggregate_type.as_str() {
                    "Conversation" => {
                        let parsed: ConversationEvent = payload(event)?;
                        self.message(tx, &mut keys, event, &tenant, parsed).await?;
                    }
                    "Media" => self.media(tx, event, &tenant).await?,
                    _ => {}
                }
            }
            Ok(())
        })
    }

    fn tables(&self) -> &'static [&'static str] {
        // The fetcher's queue is its own (see the module docs); the read model and the feed are
        // rebuilt.
        &["media_files", "media_job_feed"]
    }

    fn feeds(&self) -> &'static [&'static str] {
        &["media_job_feed"]
    }
}

/// One media object as dashboards see it (never its bytes).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MediaRow {
    pub media_ref: String,
    pub message_ref: String,
    pub conversation_id: String,
    pub kind: String,
    /// `requested`, `stored`, `failed` or `gave_up`.
    pub status: String,
    pub sha256: Option<String>,
    pub size: Option<i64>,
    pub mime_type: Option<String>,
    pub failed_attempts: i32,
    pub last_failure: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub stored_at: Option<DateTime<Utc>>,
}

/// The media of a tenant's message (by its message ref), if any.
pub async fn by_message(pool: &PgPool, tenant: &TenantId, message_ref: &str) -> Result<Option<MediaRow>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let row = sqlx::query(
        "SELECT media_ref, message_ref, conversation_id, kind, status, sha256, size, mime_type, failed_attempts,
                last_failure, requested_at, stored_at
           FROM media_files WHERE tenant_id = $1 AND message_ref = $2
          ORDER BY requested_at LIMIT 1",
    )
    .bind(tenant.as_str())
    .bind(message_ref)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.map(|r| {
        Ok(MediaRow {
            media_ref: r.try_get("media_ref")?,
            message_ref: r.try_get("message_ref")?,
            conversation_id: r.try_get("conversation_id")?,
            kind: r.try_get("kind")?,
            status: r.try_get("status")?,
            sha256: r.try_get("sha256")?,
            size: r.try_get("size")?,
            mime_type: r.try_get("mime_type")?,
            failed_attempts: r.try_get("failed_attempts")?,
            last_failure: r.try_get("last_failure")?,
            requested_at: r.try_get("requested_at")?,
            stored_at: r.try_get("stored_at")?,
        })
    })
    .transpose()
}
