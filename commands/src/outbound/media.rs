//! Files uploaded through Chronicle for outbound media messages (`uploadMedia`), stored like
//! inbound media: the bytes sealed under the contact's data key in `media_blobs`, the fact in
//! the log (`MediaUploaded` on the media's stream, with its sha-256, size and type, never the
//! bytes). A send names the upload by its media ref; the WhatsApp sender uploads the bytes to
//! the Graph API (`POST /{phone-number-id}/media`) just before it sends the message.

use chronicle_domain::conversation::rich::{check_file, essence, kinds_for};
use chronicle_domain::conversation::ConversationError;
use chronicle_domain::media::{MediaCommand, MediaKind, RecordMediaUploaded};
use chronicle_domain::metadata::CommandMetadata;
use chrono::Utc;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{require_conversation, require_not_erased};
use crate::dispatch::Commands;
use crate::error::CommandError;
use crate::keystore::KeyStore;

/// The largest file accepted through Chronicle (WhatsApp's audio and video limit); larger
/// documents, up to WhatsApp's 100 MB, are sent by link.
pub const UPLOAD_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The "provider" of upload refs made from an idempotency key (`IdKey::media_ref`): no
/// WhatsApp media id can give the same ref.
const UPLOAD_PROVIDER: &str = "chronicle-upload";

/// An upload as the log knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub media_ref: String,
    pub contact_id: String,
    pub mime_type: String,
    pub size: u64,
}

/// Stores `bytes` (of `mime_type`) for a message to the contact `contact_id` and returns its
/// media ref. Refused: `UNKNOWN_CONVERSATION`, `CONTACT_ERASED`, `INVALID_INPUT` (an empty
/// file), `MEDIA_TYPE_NOT_SUPPORTED` (a type WhatsApp sends as no kind of media),
/// `MEDIA_TOO_LARGE` (over [`UPLOAD_MAX_BYTES`], or over the limit of every kind its type can
/// be sent as). Nothing is stored when refused.
///
/// With an `idempotency_key` the media ref is the keyed hash of the contact and the key: the
/// same key and file again store nothing and answer the same ref (a retried request);
/// another file under the key is refused (`MEDIA_ALREADY_STORED`). Without one, every upload
/// is new.
pub async fn upload(
    commands: &Commands,
    keys: &KeyStore,
    contact_id: &str,
    bytes: &[u8],
    mime_type: &str,
    idempotency_key: Option<&str>,
    metadata: &CommandMetadata,
) -> Result<Uploaded, CommandError> {
    require_conversation(commands, metadata, contact_id).await?;
    require_not_erased(commands, metadata, contact_id).await?;
    if bytes.is_empty() {
        return Err(CommandError::InvalidInput("the file is empty".into()));
    }
    let mime = essence(mime_type);
    let kinds = kinds_for(&mime);
    if kinds.is_empty() {
        return Err(CommandError::Rejected(
            ConversationError::MediaTypeNotSupported {
                kind: "any kind of media",
                mime_type: mime,
            }
            .into(),
        ));
    }
    let size = bytes.len() as u64;
    // Within the limit of at least one kind it can be sent as, and of uploads.
    if bytes.len() > UPLOAD_MAX_BYTES || kinds.iter().all(|k| check_file(*k, &mime, size).is_err()) {
        let largest = kinds
            .iter()
            .map(|k| chronicle_domain::conversation::rich::accepted_types(*k).1)
            .max()
            .unwrap_or(0)
            .min(UPLOAD_MAX_BYTES as u64);
        return Err(CommandError::Rejected(
            ConversationError::MediaTooLarge {
                kind: kinds.first().map_or("media", |k| k.as_str()),
                max_bytes: largest,
            }
            .into(),
        ));
    }
    let tenant = &metadata.tenant_id;
    let sha256 = hex::encode(Sha256::digest(bytes));
    let media_ref = match idempotency_key {
        Some(key) => keys
            .master()
            .id_key()
            .media_ref(tenant, UPLOAD_PROVIDER, &format!("{contact_id}:{key}")),
        None => {
            let mut random = [0u8; 16];
            OsRng.fill_bytes(&mut random);
            format!("media_{}", hex::encode(random))
        }
    };
    if idempotency_key.is_some() {
        let stored: Option<Option<String>> = sqlx::query_scalar(
            "SELECT payload -> 'MediaUploaded' ->> 'sha256' FROM events
              WHERE aggregate_type = 'Media' AND aggregate_id = $1 AND event_type = 'MediaUploaded' LIMIT 1",
        )
        .bind(tenant.stream_id(&media_ref))
        .fetch_optional(commands.pool())
        .await?;
        match stored {
            Some(Some(stored)) if stored == sha256 => {
                return Ok(Uploaded {
                    media_ref,
                    contact_id: contact_id.to_string(),
                    mime_type: mime,
                    size,
                })
            }
            Some(_) => {
                return Err(CommandError::Rejected(
                    chronicle_domain::media::MediaError::MediaAlreadyStored.into(),
                ))
            }
            None => {}
        }
    }
    let key = keys.key_for(tenant, contact_id).await?;
    let sealed = key.seal_bytes(tenant, contact_id, bytes, &mut OsRng);
    // The bytes first: the log never names an upload whose bytes are not stored. (An upload
    // whose record then fails leaves a row no message can name; the caller tries again.)
    let mut tx = commands.pool().begin().await?;
    sqlx::query("SELECT set_config('chronicle.tenant_id', $1, true)")
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?;
    let stored = sqlx::query(
        "INSERT INTO media_blobs (tenant_id, media_ref, contact_id, ciphertext, sha256, size, mime_type)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, media_ref) DO UPDATE SET
                ciphertext = EXCLUDED.ciphertext, size = EXCLUDED.size, mime_type = EXCLUDED.mime_type,
                stored_at = now()
          WHERE media_blobs.sha256 = EXCLUDED.sha256",
    )
    .bind(tenant.as_str())
    .bind(&media_ref)
    .bind(contact_id)
    .bind(sealed)
    .bind(&sha256)
    .bind(i64::try_from(size).unwrap_or(i64::MAX))
    .bind(&mime)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if stored == 0 {
        // Another file under this key (a first try stored it and failed to record it, or a
        // concurrent upload): the key names that one.
        return Err(CommandError::Rejected(
            chronicle_domain::media::MediaError::MediaAlreadyStored.into(),
        ));
    }
    tx.commit().await?;
    let command = MediaCommand::RecordMediaUploaded(RecordMediaUploaded {
        media_ref: media_ref.clone(),
        conversation_id: contact_id.to_string(),
        contact_id: contact_id.to_string(),
        sha256,
        size,
        mime_type: mime.clone(),
        storage_key: format!("media_blobs:{media_ref}"),
        by: metadata.actor.id().to_string(),
        at: Utc::now(),
    });
    commands.media(&media_ref, command, metadata).await?;
    Ok(Uploaded {
        media_ref,
        contact_id: contact_id.to_string(),
        mime_type: mime,
        size,
    })
}

/// The upload `media_ref` of the tenant, from the log (`MediaUploaded`), or `None`.
pub async fn uploaded(
    commands: &Commands,
    metadata: &CommandMetadata,
    media_ref: &str,
) -> Result<Option<Uploaded>, CommandError> {
    let row: Option<(Option<String>, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT payload -> 'MediaUploaded' ->> 'contact_id', payload -> 'MediaUploaded' ->> 'mime_type',
                (payload -> 'MediaUploaded' ->> 'size')::bigint
           FROM events
          WHERE aggregate_type = 'Media' AND aggregate_id = $1 AND event_type = 'MediaUploaded'
          LIMIT 1",
    )
    .bind(metadata.tenant_id.stream_id(media_ref))
    .fetch_optional(commands.pool())
    .await?;
    Ok(match row {
        Some((Some(contact_id), Some(mime_type), Some(size))) => Some(Uploaded {
            media_ref: media_ref.to_string(),
            contact_id,
            mime_type,
            size: u64::try_from(size).unwrap_or(0),
        }),
        _ => None,
    })
}

/// Refuses a send of upload `media_ref` as `kind` to `contact_id`: `UNKNOWN_MEDIA` unless it
/// was uploaded for this contact, `MEDIA_TYPE_NOT_SUPPORTED` / `MEDIA_TOO_LARGE` when its file
/// is not one WhatsApp sends as `kind`.
pub async fn require_sendable_upload(
    commands: &Commands,
    metadata: &CommandMetadata,
    contact_id: &str,
    media_ref: &str,
    kind: MediaKind,
) -> Result<(), CommandError> {
    let unknown = || {
        CommandError::Rejected(
            ConversationError::UnknownMedia {
                media_ref: media_ref.to_string(),
            }
            .into(),
        )
    };
    let valid = media_ref
        .strip_prefix("media_")
        .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()));
    if !valid {
        return Err(unknown());
    }
    let upload = uploaded(commands, metadata, media_ref).await?.ok_or_else(unknown)?;
    if upload.contact_id != contact_id {
        return Err(unknown());
    }
    check_file(kind, &upload.mime_type, upload.size).map_err(|e| CommandError::Rejected(e.into()))
}
