//! Media: `media(messageId)`, the fetch status of an inbound media message's file (status,
//! sha-256, size, MIME type; never the bytes, which `GET /media/{mediaRef}` serves). Readers of
//! the inbox only: owner, admin, agent, auditor. `uploadMedia` stores a file for an outbound
//! media message (`sendMedia`); `refetchMedia` fetches a failed inbound media again.

use async_graphql::{Context, Enum, Object, SimpleObject, Upload};
use chronicle_projections::media::{by_message, MediaRow};
use chrono::{DateTime, Utc};

use super::receipt::{receipt, Receipt};
use super::{allowed, caller, commands, metadata, pool};
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

/// A media ref as Chronicle gives them out: `media_` and 32 lowercase hex digits.
fn valid_media_ref(media_ref: &str) -> Result<&str, ApiError> {
    let media_ref = media_ref.trim();
    let valid = media_ref
        .strip_prefix("media_")
        .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    if valid {
        Ok(media_ref)
    } else {
        Err(ApiError::bad_request(
            "BAD_MEDIA_REF",
            format!("{media_ref:?} is not a media ref (`media_` and 32 hex digits)"),
        ))
    }
}

/// Where a media fetch stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum MediaStatus {
    /// Not fetched yet (possibly after retryable failures).
    Requested,
    /// Fetched, checked and stored.
    Stored,
    /// A failure not retried (a 4xx, a checksum mismatch) ended the fetch.
    Failed,
    /// Retryable failures reached the maximum.
    GaveUp,
}

impl MediaStatus {
    fn parse(status: &str) -> Self {
        match status {
            "stored" => Self::Stored,
            "failed" => Self::Failed,
            "gave_up" => Self::GaveUp,
            _ => Self::Requested,
        }
    }
}

/// An inbound media file's fetch.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "Media")]
pub struct MediaFile {
    /// The media's ref: `GET /media/{mediaRef}` serves its bytes.
    pub media_ref: String,
    /// The message's ref (`wm_` and 32 hex digits).
    pub message_id: String,
    /// The conversation the message arrived in.
    pub conversation_id: String,
    /// image, audio, video, document or sticker.
    pub kind: String,
    /// Where the fetch stands.
    pub status: MediaStatus,
    /// Lowercase hex sha-256 of the stored bytes.
    pub sha256: Option<String>,
    /// Size in bytes.
    pub size: Option<i64>,
    /// The MIME type: as announced with the message until stored, then as stored; null when
    /// none was announced and nothing is stored yet.
    pub mime_type: Option<String>,
    /// Failed attempts so far and the last failure's code (e.g. `http_404`, `checksum_mismatch`).
    pub failed_attempts: i32,
    /// The code of the last failed attempt (e.g. `http_404`, `checksum_mismatch`); null when no
    /// attempt failed.
    pub last_failure: Option<String>,
    /// When the fetch was requested (RFC 3339).
    pub requested_at: DateTime<Utc>,
    /// When the bytes were stored (RFC 3339); null unless `STORED`.
    pub stored_at: Option<DateTime<Utc>>,
}

impl MediaFile {
    fn from_row(row: MediaRow) -> Self {
        Self {
            media_ref: row.media_ref,
            message_id: row.message_ref,
            conversation_id: row.conversation_id,
            kind: row.kind,
            status: MediaStatus::parse(&row.status),
            sha256: row.sha256,
            size: row.size,
            mime_type: row.mime_type,
            failed_attempts: row.failed_attempts,
            last_failure: row.last_failure,
            requested_at: row.requested_at,
            stored_at: row.stored_at,
        }
    }
}

/// Media queries.
#[derive(Default)]
pub struct MediaQuery;

#[Object]
impl MediaQuery {
    /// The media of one of the caller's tenant's messages (its message ref); null when the
    /// message carries no media or its fetch was not requested yet. Owners, admins, agents and
    /// auditors (else `FORBIDDEN`).
    async fn media(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The inbound message's ref (`wm_` and 32 hex digits).")] message_id: String,
    ) -> async_graphql::Result<Option<MediaFile>> {
        let caller = caller(ctx).gql()?;
        if !caller.may(Permission::ReadInbox) {
            return Err(ApiError::Forbidden(format!(
                "the {} role cannot read media",
                caller.role.as_str()
            )))
            .gql();
        }
        let row = by_message(pool(ctx).gql()?, &caller.tenant, &message_id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(MediaFile::from_row))
    }
}

/// Media mutations.
#[derive(Default)]
pub struct MediaMutation;

#[Object]
impl MediaMutation {
    /// Uploads a file for an outbound media message (`sendMedia(mediaRef)`) to a conversation's
    /// contact, as a GraphQL multipart request (`multipart/form-data`: `operations`, `map`, one
    /// file; the GraphQL multipart request specification). The file is stored like inbound
    /// media: sealed under the contact's data key, its sha-256, size and type recorded
    /// (`MediaUploaded`), never the bytes in the log; `GET /media/{mediaRef}` serves it back.
    /// Owner, admin, agent (anyone else gets `FORBIDDEN`). Refused: `BAD_CONVERSATION_ID`,
    /// `UNKNOWN_CONVERSATION`, `CONTACT_ERASED`, `INVALID_INPUT` (an empty file, or one that
    /// cannot be read), `MEDIA_TYPE_NOT_SUPPORTED` (a type WhatsApp sends as no kind of media:
    /// JPEG, PNG, WebP stickers, AAC/AMR/MP3/M4A/OGG audio, MP4/3GP video, text, PDF and Office
    /// documents), `MEDIA_TOO_LARGE` (over 16 MiB, or the kind's limit: images 5 MiB,
    /// stickers 500 KiB; larger documents go by link); `PAYLOAD_TOO_LARGE` for a request over
    /// 17 MiB. Nothing is stored when refused. The receipt's `id` is the upload's media ref.
    async fn upload_media(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The conversation's id (its contact's id, `ct_…`) the file will be sent in; another form is refused with `BAD_CONVERSATION_ID`."
        )]
        conversation_id: String,
        #[graphql(desc = "The file: its part's Content-Type is its MIME type (e.g. `image/jpeg`).")] file: Upload,
        #[graphql(
            desc = "The file's MIME type, when the part's own Content-Type is missing or generic (`application/octet-stream`)."
        )]
        mime_type: Option<String>,
        #[graphql(
            desc = "Your key for this upload, at most 200 characters: the same key (and the same file) again stores nothing more and answers the same media ref; another file under a used key is refused with `MEDIA_ALREADY_STORED`."
        )]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        let caller = allowed(ctx, Permission::WorkInbox, "upload media").gql()?;
        let idempotency_key = idempotency_key.map(|k| k.trim().to_string()).filter(|k| !k.is_empty());
        if idempotency_key.as_ref().is_some_and(|k| k.chars().count() > 200) {
            return Err(ApiError::bad_request(
                "BAD_IDEMPOTENCY_KEY",
                "an idempotency key is at most 200 characters",
            ))
            .gql();
        }
        let conversation_id = super::inbox::valid_id(&conversation_id).gql()?.to_string();
        // `Upload::value` indexes the request's files without a check: a JSON request (no
        // files) naming file 0 would panic there.
        if *file >= ctx.query_env.uploads.len() {
            return Err(ApiError::bad_request(
                "INVALID_INPUT",
                "the request carries no such file: send the file as a multipart request",
            ))
            .gql();
        }
        let value = file
            .value(ctx)
            .map_err(|e| ApiError::bad_request("INVALID_INPUT", format!("the uploaded file cannot be read: {e}")))
            .gql()?;
        let declared = mime_type
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .or_else(|| {
                value
                    .content_type
                    .clone()
                    .filter(|m| !m.eq_ignore_ascii_case("application/octet-stream"))
            })
            .unwrap_or_else(|| "application/octet-stream".into());
        let bytes = tokio::task::spawn_blocking(move || {
            // The file from its start (another alias of the field may have read this handle).
            let mut file = value.content;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes).map(|_| bytes)
        })
        .await
        .map_err(|e| ApiError::bad_request("INVALID_INPUT", format!("the uploaded file cannot be read: {e}")))
        .gql()?
        .map_err(|e| ApiError::bad_request("INVALID_INPUT", format!("the uploaded file cannot be read: {e}")))
        .gql()?;
        let metadata = metadata(ctx, caller);
        receipt(async {
            let uploaded = chronicle_commands::outbound::media::upload(
                commands(ctx).gql()?,
                super::keys(ctx).gql()?,
                &conversation_id,
                &bytes,
                &declared,
                idempotency_key.as_deref(),
                &metadata,
            )
            .await
            .gql()?;
            Ok(Receipt::new(uploaded.media_ref))
        })
        .await
    }

    /// Fetches again a media whose fetch failed (`FAILED`: a 4xx, a checksum mismatch) or was
    /// given up after retries (`GAVE_UP`): WhatsApp keeps media for a while, and what failed may
    /// be there now. The decision is recorded on the media with who took it, and the fetch
    /// starts over (attempts from 1); `media(messageId)` shows it `REQUESTED` again, then its new
    /// outcome. Owner and admin only (others get `FORBIDDEN`). Refusals: `BAD_MEDIA_REF`,
    /// `MEDIA_NOT_REQUESTED` (no such media of the tenant), `MEDIA_ALREADY_STORED`,
    /// `MEDIA_FETCH_IN_PROGRESS` (it is still being fetched or retried),
    /// `MISSING_IDEMPOTENCY_KEY`, `BAD_IDEMPOTENCY_KEY` (over 200 characters). The same key again records nothing. Returns a receipt for the
    /// media.
    async fn refetch_media(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The media's ref (`mediaRef` of `media(messageId)`: `media_` and 32 hex digits).")]
        media_ref: String,
        #[graphql(
            desc = "Your key for this request, at most 200 characters: the same key again records nothing more."
        )]
        idempotency_key: String,
    ) -> async_graphql::Result<Receipt> {
        let caller = allowed(ctx, Permission::ManageMessagingSettings, "fetch media again").gql()?;
        let media_ref = valid_media_ref(&media_ref).gql()?;
        if idempotency_key.trim().len() > 200 {
            return Err(ApiError::bad_request(
                "BAD_IDEMPOTENCY_KEY",
                "an idempotency key of at most 200 characters is required",
            ))
            .gql();
        }
        let metadata = metadata(ctx, caller);
        receipt(async {
            chronicle_commands::media::refetch(commands(ctx).gql()?, media_ref, idempotency_key.trim(), &metadata)
                .await
                .gql()?;
            Ok(Receipt::new(media_ref))
        })
        .await
    }
}
