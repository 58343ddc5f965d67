//! Commands of the `Media` aggregate. No personal data: the media id arrives as a keyed hash
//! (`media_ref`), the bytes never arrive at all, only their hex sha-256.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::MediaKind;

/// A request about one media object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum MediaCommand {
    /// Ask for the media to be fetched (a repeat changes nothing).
    RequestMediaFetch(RequestMediaFetch),
    /// The bytes were fetched and stored.
    RecordMediaFetched(RecordMediaFetched),
    /// An attempt to fetch failed.
    RecordMediaFetchFailed(RecordMediaFetchFailed),
    /// An operator asks for a failed (or given up) fetch to be tried again.
    RequestMediaRefetch(RequestMediaRefetch),
    /// A file uploaded through Chronicle for an outbound message was stored.
    RecordMediaUploaded(RecordMediaUploaded),
}

/// A file uploaded through Chronicle (for an outbound media message) was stored sealed under
/// `storage_key`. On a fresh stream only; the same upload again records nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecordMediaUploaded {
    /// The media ref Chronicle gave the upload (`media_` and 32 hex digits).
    pub media_ref: String,
    /// The conversation it is for (its stream's local id: the contact id).
    pub conversation_id: String,
    pub contact_id: String,
    /// The sha-256 of the bytes (hex or base64).
    pub sha256: String,
    pub size: u64,
    pub mime_type: String,
    pub storage_key: String,
    /// Who uploaded it (a user id, an API key id).
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Fetch again a media whose fetch failed or was given up (an operator's decision: the
/// media may be available again, WhatsApp keeps media for a while). The same `key` again
/// records nothing (a retried request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestMediaRefetch {
    /// The request's idempotency key.
    pub key: String,
    /// Who decided (a user id, an API key id).
    pub by: String,
    pub at: DateTime<Utc>,
}

/// A media message arrived: fetch its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestMediaFetch {
    /// The keyed hash of WhatsApp's media id ([`crate::pii::IdKey::media_ref`]).
    pub media_ref: String,
    /// The conversation the message belongs to (its stream's local id).
    pub conversation_id: String,
    pub contact_id: String,
    /// The message's ref ([`crate::pii::IdKey::message_ref`]).
    pub message_ref: String,
    pub kind: MediaKind,
    /// The MIME type WhatsApp announced.
    pub mime_type: Option<String>,
    /// The sha-256 WhatsApp announced (hex or base64), if any.
    pub expected_sha256: Option<String>,
    pub at: DateTime<Utc>,
}

/// The bytes were fetched and stored (sealed) under `storage_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecordMediaFetched {
    /// The sha-256 of the bytes actually received (hex or base64).
    pub sha256: String,
    /// Their size in bytes.
    pub size: u64,
    /// The MIME type the provider served.
    pub mime_type: String,
    /// Where the sealed bytes are (e.g. `media_blobs:<media ref>`).
    pub storage_key: String,
    pub at: DateTime<Utc>,
}

/// One attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecordMediaFetchFailed {
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// Why: e.g. `http_404`, `http_500`, `timeout`, with the provider's code if any.
    pub code: String,
    /// Whether trying again may succeed.
    pub retryable: bool,
    /// When the next attempt is due (required when retryable).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}
