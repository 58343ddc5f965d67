//! The `Media` aggregate: one inbound WhatsApp media object (image, audio, video, document,
//! sticker), fetched from the Graph API and stored as a separate, retried step with the sha-256
//! of the bytes actually received (issue 3, "Inbound").
//!
//! Stream id: `<tenant>:<media ref>`, aggregate type `Media`. The media ref is a keyed hash the
//! caller makes ([`crate::pii::IdKey::media_ref`], `media_` and 32 hex digits) of WhatsApp's
//! media id; the domain never derives it. The bytes, their URL and the caption never enter this
//! stream: the bytes are stored sealed under the contact's data key outside the log, and only
//! their hex sha-256, size, MIME type and storage key are recorded.
//!
//! Rules held here:
//! - a fetch is requested once per media ref; requesting it again changes nothing, whatever
//!   state the media is in; another ref on the same stream is refused;
//! - the bytes are stored once: a fetch whose sha-256 differs from the one WhatsApp announced
//!   is recorded as a `checksum_mismatch` failure that is not retried, never as stored;
//!   recording the same bytes again changes nothing, other bytes are refused;
//! - failed attempts are numbered from 1 and only move forward (a repeated attempt number
//!   changes nothing); a retryable failure names when the next attempt is due; the
//!   [`MAX_FETCH_ATTEMPTS`]th retryable failure gives the fetch up; a failure that is not
//!   retryable ends it at once;
//! - nothing follows a stored, failed or given-up media (but repeats, which change nothing);
//! - a file uploaded through Chronicle for an outbound message (`MediaUploaded`, a random
//!   `media_` ref of Chronicle's own) is stored from its first event: nothing is fetched, and
//!   the same upload again changes nothing.

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::Media;
pub use commands::{
    MediaCommand, RecordMediaFetchFailed, RecordMediaFetched, RecordMediaUploaded, RequestMediaFetch,
    RequestMediaRefetch,
};
pub use error::MediaError;
pub use events::MediaEvent;
pub use values::{normalize_sha256, MediaKind, MediaStatus, CHECKSUM_MISMATCH, MAX_FETCH_ATTEMPTS};
