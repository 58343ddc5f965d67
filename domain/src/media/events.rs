//! Events of the `Media` aggregate. Names are contracts: never renamed once stored. No
//! personal data: neither the bytes, nor their URL, nor WhatsApp's media id.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::values::MediaKind;

/// Facts about a media object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum MediaEvent {
    /// A fetch was requested. `expected_sha256` is normalized to lowercase hex.
    MediaFetchRequested {
        media_ref: String,
        conversation_id: String,
        contact_id: String,
        message_ref: String,
        kind: MediaKind,
        mime_type: Option<String>,
        expected_sha256: Option<String>,
        at: DateTime<Utc>,
    },
    /// The bytes are stored; `sha256` is the lowercase hex of the bytes received, `attempts`
    /// the number of attempts it took (failed ones included).
    MediaStored {
        sha256: String,
        size: u64,
        mime_type: String,
        storage_key: String,
        attempts: u32,
        at: DateTime<Utc>,
    },
    /// An attempt failed. Not retryable: the fetch ended.
    MediaFetchFailed {
        attempt: u32,
        code: String,
        retryable: bool,
        next_attempt_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// The last allowed attempt failed: the fetch ended.
    MediaFetchGaveUp {
        attempts: u32,
        code: String,
        at: DateTime<Utc>,
    },
    /// An operator asked for a failed or given-up fetch to be tried again: the fetch starts
    /// over (attempts counted from 1 again). `after` is the failure it follows.
    MediaRefetchRequested {
        key: String,
        by: String,
        after: String,
        at: DateTime<Utc>,
    },
    /// A file was uploaded through Chronicle for an outbound message of `conversation_id`; its
    /// bytes are stored sealed under the contact's data key (`storage_key`). `sha256` is the
    /// lowercase hex of the bytes, `by` who uploaded it.
    MediaUploaded {
        media_ref: String,
        conversation_id: String,
        contact_id: String,
        sha256: String,
        size: u64,
        mime_type: String,
        storage_key: String,
        by: String,
        at: DateTime<Utc>,
    },
}

impl MediaEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "MediaFetchRequested",
        "MediaStored",
        "MediaFetchFailed",
        "MediaFetchGaveUp",
        "MediaRefetchRequested",
        "MediaUploaded",
    ];
}

impl DomainEvent for MediaEvent {
    fn event_type(&self) -> String {
        match self {
            Self::MediaFetchRequested { .. } => "MediaFetchRequested",
            Self::MediaStored { .. } => "MediaStored",
            Self::MediaFetchFailed { .. } => "MediaFetchFailed",
            Self::MediaFetchGaveUp { .. } => "MediaFetchGaveUp",
            Self::MediaRefetchRequested { .. } => "MediaRefetchRequested",
            Self::MediaUploaded { .. } => "MediaUploaded",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}
