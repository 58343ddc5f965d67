//! The `Media` aggregate's state and its command handling.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{
    MediaCommand, RecordMediaFetchFailed, RecordMediaFetched, RecordMediaUploaded, RequestMediaFetch,
    RequestMediaRefetch,
};
use super::error::MediaError;
use super::events::MediaEvent;
use super::values::{normalize_sha256, MediaKind, MediaStatus, CHECKSUM_MISMATCH, MAX_FETCH_ATTEMPTS};

/// One inbound media object and its fetch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Media {
    media_ref: Option<String>,
    kind: Option<MediaKind>,
    expected_sha256: Option<String>,
    status: MediaStatus,
    /// The number of the last failed attempt.
    failed_attempts: u32,
    sha256: Option<String>,
    last_failure: Option<String>,
    next_attempt_at: Option<DateTime<Utc>>,
    /// The keys of the refetches requested (a retried request records nothing).
    #[serde(default)]
    refetch_keys: Vec<String>,
}

impl Media {
    /// The media ref, once requested.
    pub fn media_ref(&self) -> Option<&str> {
        self.media_ref.as_deref()
    }

    /// Where the fetch stands.
    pub fn status(&self) -> MediaStatus {
        self.status
    }

    /// The kind of media, once requested.
    pub fn kind(&self) -> Option<MediaKind> {
        self.kind
    }

    /// The sha-256 WhatsApp announced (lowercase hex).
    pub fn expected_sha256(&self) -> Option<&str> {
        self.expected_sha256.as_deref()
    }

    /// The sha-256 of the stored bytes (lowercase hex).
    pub fn sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }

    /// The number of the last failed attempt (0: none failed).
    pub fn failed_attempts(&self) -> u32 {
        self.failed_attempts
    }

    /// The code of the last failure.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    /// When the next attempt is due after a retryable failure.
    pub fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.next_attempt_at
    }

    /// The event a command produces, if any, or why it is refused. Pure; `handle` writes it.
    pub fn decide(&self, command: MediaCommand) -> Result<Option<MediaEvent>, MediaError> {
        match command {
            MediaCommand::RequestMediaFetch(cmd) => self.request(cmd),
            MediaCommand::RecordMediaFetched(cmd) => self.fetched(cmd),
            MediaCommand::RecordMediaFetchFailed(cmd) => self.failed(cmd),
            MediaCommand::RequestMediaRefetch(cmd) => self.refetch(cmd),
            MediaCommand::RecordMediaUploaded(cmd) => self.uploaded(cmd),
        }
    }

    fn uploaded(&self, cmd: RecordMediaUploaded) -> Result<Option<MediaEvent>, MediaError> {
        if cmd.media_ref.trim().is_empty() {
            return Err(MediaError::MissingMediaRef);
        }
        let sha256 = normalize_sha256(&cmd.sha256)?;
        if let Some(known) = &self.media_ref {
            return match (known == &cmd.media_ref, self.status, self.sha256.as_deref()) {
                (true, MediaStatus::Stored, Some(stored)) if stored == sha256 => Ok(None),
                (true, _, _) => Err(MediaError::MediaAlreadyStored),
                (false, _, _) => Err(MediaError::MediaRefMismatch {
                    media_ref: cmd.media_ref,
                }),
            };
        }
        Ok(Some(MediaEvent::MediaUploaded {
            media_ref: cmd.media_ref,
            conversation_id: cmd.conversation_id,
            contact_id: cmd.contact_id,
            sha256,
            size: cmd.size,
            mime_type: cmd.mime_type,
            storage_key: cmd.storage_key,
            by: cmd.by,
            at: cmd.at,
        }))
    }

    fn refetch(&self, cmd: RequestMediaRefetch) -> Result<Option<MediaEvent>, MediaError> {
        let key = cmd.key.trim();
        if key.is_empty() {
            return Err(MediaError::MissingIdempotencyKey);
        }
        if self.refetch_keys.iter().any(|k| k == key) {
            return Ok(None);
        }
        match self.status {
            MediaStatus::Unknown => Err(MediaError::MediaNotRequested),
            MediaStatus::Stored => Err(MediaError::MediaAlreadyStored),
            MediaStatus::Requested => Err(MediaError::MediaFetchInProgress),
            MediaStatus::Failed | MediaStatus::GaveUp => Ok(Some(MediaEvent::MediaRefetchRequested {
                key: key.to_owned(),
                by: cmd.by,
                after: self.last_failure.clone().unwrap_or_default(),
                at: cmd.at,
            })),
        }
    }

    fn request(&self, cmd: RequestMediaFetch) -> Result<Option<MediaEvent>, MediaError> {
        if cmd.media_ref.trim().is_empty() {
            return Err(MediaError::MissingMediaRef);
        }
        if let Some(known) = &self.media_ref {
            return if *known == cmd.media_ref {
                Ok(None)
            } else {
                Err(MediaError::MediaRefMismatch {
                    media_ref: cmd.media_ref,
                })
            };
        }
        let expected_sha256 = cmd.expected_sha256.as_deref().map(normalize_sha256).transpose()?;
        Ok(Some(MediaEvent::MediaFetchRequested {
            media_ref: cmd.media_ref,
            conversation_id: cmd.conversation_id,
            contact_id: cmd.contact_id,
            message_ref: cmd.message_ref,
            kind: cmd.kind,
            mime_type: cmd.mime_type,
            expected_sha256,
            at: cmd.at,
        }))
    }

    fn fetched(&self, cmd: RecordMediaFetched) -> Result<Option<MediaEvent>, MediaError> {
        let sha256 = normalize_sha256(&cmd.sha256)?;
        match self.status {
            MediaStatus::Unknown => return Err(MediaError::MediaNotRequested),
            MediaStatus::Stored if self.sha256.as_deref() == Some(sha256.as_str()) => return Ok(None),
            MediaStatus::Stored => return Err(MediaError::MediaAlreadyStored),
            MediaStatus::Failed | MediaStatus::GaveUp => return Err(MediaError::MediaFetchEnded),
            MediaStatus::Requested => {}
        }
        let attempt = self.failed_attempts + 1;
        if let Some(expected) = &self.expected_sha256 {
            if *expected != sha256 {
                // Bytes other than those WhatsApp announced are never stored; fetching again
                // would serve the same bytes, so the fetch ends.
                return Ok(Some(MediaEvent::MediaFetchFailed {
                    attempt,
                    code: CHECKSUM_MISMATCH.to_string(),
                    retryable: false,
                    next_attempt_at: None,
                    at: cmd.at,
                }));
            }
        }
        Ok(Some(MediaEvent::MediaStored {
            sha256,
            size: cmd.size,
            mime_type: cmd.mime_type,
            storage_key: cmd.storage_key,
            attempts: attempt,
            at: cmd.at,
        }))
    }

    fn failed(&self, cmd: RecordMediaFetchFailed) -> Result<Option<MediaEvent>, MediaError> {
        match self.status {
            MediaStatus::Unknown => return Err(MediaError::MediaNotRequested),
            MediaStatus::Stored => return Err(MediaError::MediaAlreadyStored),
            MediaStatus::Failed | MediaStatus::GaveUp if cmd.attempt <= self.failed_attempts => return Ok(None),
            MediaStatus::Failed | MediaStatus::GaveUp => return Err(MediaError::MediaFetchEnded),
            MediaStatus::Requested => {}
        }
        if cmd.attempt == 0 || cmd.attempt > MAX_FETCH_ATTEMPTS {
            return Err(MediaError::InvalidAttempt);
        }
        if cmd.attempt <= self.failed_attempts {
            // A repeated outcome of an attempt already recorded.
            return Ok(None);
        }
        if cmd.code.trim().is_empty() {
            return Err(MediaError::FailureNeedsACode);
        }
        if cmd.retryable && cmd.attempt >= MAX_FETCH_ATTEMPTS {
            return Ok(Some(MediaEvent::MediaFetchGaveUp {
                attempts: cmd.attempt,
                code: cmd.code,
                at: cmd.at,
            }));
        }
        if cmd.retryable && cmd.next_attempt_at.is_none() {
            return Err(MediaError::RetryNeedsANextAttemptTime);
        }
        Ok(Some(MediaEvent::MediaFetchFailed {
            attempt: cmd.attempt,
            code: cmd.code,
            retryable: cmd.retryable,
            next_attempt_at: cmd.next_attempt_at.filter(|_| cmd.retryable),
            at: cmd.at,
        }))
    }
}

impl Aggregate for Media {
    const TYPE: &'static str = "Media";
    type Command = MediaCommand;
    type Event = MediaEvent;
    type Error = MediaError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(event) = self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        if let MediaEvent::MediaRefetchRequested { key, .. } = &event {
            // The one event that follows a failed fetch: it starts over.
            if matches!(self.status, MediaStatus::Failed | MediaStatus::GaveUp) {
                self.refetch_keys.push(key.clone());
                self.status = MediaStatus::Requested;
                self.failed_attempts = 0;
                self.next_attempt_at = None;
            }
            return;
        }
        if self.status.is_settled() {
            // Nothing follows a settled fetch; a stray event changes nothing.
            return;
        }
        match event {
            MediaEvent::MediaFetchRequested {
                media_ref,
                kind,
                expected_sha256,
                ..
            } => {
                self.media_ref = Some(media_ref);
                self.kind = Some(kind);
                self.expected_sha256 = expected_sha256;
                self.status = MediaStatus::Requested;
            }
            MediaEvent::MediaStored { sha256, attempts, .. } => {
                self.sha256 = Some(sha256);
                self.failed_attempts = attempts.saturating_sub(1);
                self.status = MediaStatus::Stored;
                self.next_attempt_at = None;
            }
            MediaEvent::MediaFetchFailed {
                attempt,
                code,
                retryable,
                next_attempt_at,
                ..
            } => {
                self.failed_attempts = attempt;
                self.last_failure = Some(code);
                self.next_attempt_at = next_attempt_at;
                if !retryable {
                    self.status = MediaStatus::Failed;
                }
            }
            MediaEvent::MediaFetchGaveUp { attempts, code, .. } => {
                self.failed_attempts = attempts;
                self.last_failure = Some(code);
                self.next_attempt_at = None;
                self.status = MediaStatus::GaveUp;
            }
            MediaEvent::MediaRefetchRequested { .. } => {}
            MediaEvent::MediaUploaded { media_ref, sha256, .. } => {
                // An upload is stored as it arrives: there is nothing to fetch.
                self.media_ref = Some(media_ref);
                self.sha256 = Some(sha256);
                self.status = MediaStatus::Stored;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use proptest::prelude::*;

    type Given = TestFramework<Media>;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const OTHER: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 8, minute, 0)
            .single()
            .unwrap_or_default()
    }

    fn request(expected: Option<&str>) -> RequestMediaFetch {
        RequestMediaFetch {
            media_ref: "media_a".into(),
            conversation_id: "ct_a".into(),
            contact_id: "ct_a".into(),
            message_ref: "wm_a".into(),
            kind: MediaKind::Image,
            mime_type: Some("image/jpeg".into()),
            expected_sha256: expected.map(str::to_string),
            at: at(0),
        }
    }

    fn requested(expected: Option<&str>) -> MediaEvent {
        MediaEvent::MediaFetchRequested {
            media_ref: "media_a".into(),
            conversation_id: "ct_a".into(),
            contact_id: "ct_a".into(),
            message_ref: "wm_a".into(),
            kind: MediaKind::Image,
            mime_type: Some("image/jpeg".into()),
            expected_sha256: expected.map(str::to_string),
            at: at(0),
        }
    }

    fn upload() -> RecordMediaUploaded {
        RecordMediaUploaded {
            media_ref: "media_u".into(),
            conversation_id: "ct_a".into(),
            contact_id: "ct_a".into(),
            sha256: SHA.to_uppercase(),
            size: 4,
            mime_type: "image/png".into(),
            storage_key: "media_blobs:media_u".into(),
            by: "usr_1".into(),
            at: at(1),
        }
    }

    fn uploaded() -> MediaEvent {
        MediaEvent::MediaUploaded {
            media_ref: "media_u".into(),
            conversation_id: "ct_a".into(),
            contact_id: "ct_a".into(),
            sha256: SHA.into(),
            size: 4,
            mime_type: "image/png".into(),
            storage_key: "media_blobs:media_u".into(),
            by: "usr_1".into(),
            at: at(1),
        }
    }

    #[test]
    fn an_upload_is_stored_once_and_nothing_else_follows_it() {
        Given::with(())
            .given_no_previous_events()
            .when(MediaCommand::RecordMediaUploaded(upload()))
            .then_expect_events(vec![uploaded()]);
        Given::with(())
            .given(vec![uploaded()])
            .when(MediaCommand::RecordMediaUploaded(upload()))
            .then_expect_events(vec![]);
        let other = RecordMediaUploaded {
            sha256: OTHER.into(),
            ..upload()
        };
        Given::with(())
            .given(vec![uploaded()])
            .when(MediaCommand::RecordMediaUploaded(other))
            .then_expect_error(MediaError::MediaAlreadyStored);
        Given::with(())
            .given(vec![requested(None)])
            .when(MediaCommand::RecordMediaUploaded(upload()))
            .then_expect_error(MediaError::MediaRefMismatch {
                media_ref: "media_u".into(),
            });
        Given::with(())
            .given(vec![uploaded()])
            .when(MediaCommand::RequestMediaRefetch(RequestMediaRefetch {
                key: "k".into(),
                by: "usr_1".into(),
                at: at(2),
            }))
            .then_expect_error(MediaError::MediaAlreadyStored);
    }

    fn fetched(sha: &str) -> MediaCommand {
        MediaCommand::RecordMediaFetched(RecordMediaFetched {
            sha256: sha.into(),
            size: 4,
            mime_type: "image/jpeg".into(),
            storage_key: "media_blobs:media_a".into(),
            at: at(5),
        })
    }

    fn stored(sha: &str, attempts: u32) -> MediaEvent {
        MediaEvent::MediaStored {
            sha256: sha.into(),
            size: 4,
            mime_type: "image/jpeg".into(),
            storage_key: "media_blobs:media_a".into(),
            attempts,
            at: at(5),
        }
    }

    fn failure(attempt: u32, retryable: bool) -> MediaCommand {
        MediaCommand::RecordMediaFetchFailed(RecordMediaFetchFailed {
            attempt,
            code: if retryable { "http_500" } else { "http_404" }.into(),
            retryable,
            next_attempt_at: retryable.then(|| at(10)),
            at: at(1),
        })
    }

    fn failed(attempt: u32, retryable: bool) -> MediaEvent {
        MediaEvent::MediaFetchFailed {
            attempt,
            code: if retryable { "http_500" } else { "http_404" }.into(),
            retryable,
            next_attempt_at: retryable.then(|| at(10)),
            at: at(1),
        }
    }

    fn refetch(key: &str) -> MediaCommand {
        MediaCommand::RequestMediaRefetch(RequestMediaRefetch {
            key: key.into(),
            by: "user-1".into(),
            at: at(30),
        })
    }

    fn refetched(key: &str, after: &str) -> MediaEvent {
        MediaEvent::MediaRefetchRequested {
            key: key.into(),
            by: "user-1".into(),
            after: after.into(),
            at: at(30),
        }
    }

    // RequestMediaRefetch

    #[test]
    fn a_failed_fetch_is_tried_again_on_request_from_attempt_one() {
        Given::with(())
            .given(vec![requested(None), failed(1, false)])
            .when(refetch("k1"))
            .then_expect_events(vec![refetched("k1", "http_404")]);
        // Then the fetch starts over: attempt 1 again, and it can be stored.
        Given::with(())
            .given(vec![requested(None), failed(1, false), refetched("k1", "http_404")])
            .when(failure(1, true))
            .then_expect_events(vec![failed(1, true)]);
        Given::with(())
            .given(vec![requested(None), failed(1, false), refetched("k1", "http_404")])
            .when(fetched(SHA))
            .then_expect_events(vec![stored(SHA, 1)]);
    }

    #[test]
    fn a_given_up_fetch_is_tried_again_and_the_same_key_records_nothing_more() {
        let mut history = vec![requested(None)];
        history.extend((1..MAX_FETCH_ATTEMPTS).map(|n| failed(n, true)));
        history.push(MediaEvent::MediaFetchGaveUp {
            attempts: MAX_FETCH_ATTEMPTS,
            code: "http_500".into(),
            at: at(1),
        });
        Given::with(())
            .given(history.clone())
            .when(refetch("k1"))
            .then_expect_events(vec![refetched("k1", "http_500")]);
        history.push(refetched("k1", "http_500"));
        Given::with(())
            .given(history.clone())
            .when(refetch("k1"))
            .then_expect_events(vec![]);
        // Another key while it is being fetched again: refused.
        Given::with(())
            .given(history)
            .when(refetch("k2"))
            .then_expect_error(MediaError::MediaFetchInProgress);
    }

    #[test]
    fn a_refetch_is_refused_for_a_stored_an_unrequested_or_an_ongoing_fetch_and_without_a_key() {
        Given::with(())
            .given(vec![requested(None), stored(SHA, 1)])
            .when(refetch("k1"))
            .then_expect_error(MediaError::MediaAlreadyStored);
        Given::with(())
            .given_no_previous_events()
            .when(refetch("k1"))
            .then_expect_error(MediaError::MediaNotRequested);
        Given::with(())
            .given(vec![requested(None), failed(1, true)])
            .when(refetch("k1"))
            .then_expect_error(MediaError::MediaFetchInProgress);
        Given::with(())
            .given(vec![requested(None), failed(1, false)])
            .when(refetch(" "))
            .then_expect_error(MediaError::MissingIdempotencyKey);
    }

    // RequestMediaFetch

    #[test]
    fn a_media_message_requests_a_fetch_with_its_announced_sha256_as_hex() {
        let base64 = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";
        Given::with(())
            .given_no_previous_events()
            .when(MediaCommand::RequestMediaFetch(request(Some(base64))))
            .then_expect_events(vec![requested(Some(SHA))]);
    }

    #[test]
    fn requesting_the_same_media_again_changes_nothing() {
        Given::with(())
            .given(vec![requested(None)])
            .when(MediaCommand::RequestMediaFetch(request(None)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn requesting_a_stored_media_again_changes_nothing() {
        Given::with(())
            .given(vec![requested(None), stored(SHA, 1)])
            .when(MediaCommand::RequestMediaFetch(request(None)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_request_without_a_media_ref_is_refused() {
        let mut cmd = request(None);
        cmd.media_ref = " ".into();
        Given::with(())
            .given_no_previous_events()
            .when(MediaCommand::RequestMediaFetch(cmd))
            .then_expect_error(MediaError::MissingMediaRef);
    }

    #[test]
    fn another_media_ref_on_the_stream_is_refused() {
        let mut cmd = request(None);
        cmd.media_ref = "media_b".into();
        Given::with(())
            .given(vec![requested(None)])
            .when(MediaCommand::RequestMediaFetch(cmd))
            .then_expect_error(MediaError::MediaRefMismatch {
                media_ref: "media_b".into(),
            });
    }

    #[test]
    fn a_request_with_a_malformed_sha256_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(MediaCommand::RequestMediaFetch(request(Some("not-a-hash"))))
            .then_expect_error(MediaError::InvalidSha256);
    }

    // RecordMediaFetched

    #[test]
    fn fetched_bytes_with_the_announced_sha256_are_stored() {
        Given::with(())
            .given(vec![requested(Some(SHA))])
            .when(fetched(&SHA.to_uppercase()))
            .then_expect_events(vec![stored(SHA, 1)]);
    }

    #[test]
    fn bytes_stored_after_two_retryable_failures_count_three_attempts() {
        Given::with(())
            .given(vec![requested(None), failed(1, true), failed(2, true)])
            .when(fetched(SHA))
            .then_expect_events(vec![stored(SHA, 3)]);
    }

    #[test]
    fn bytes_with_another_sha256_than_announced_are_a_failure_not_retried() {
        Given::with(())
            .given(vec![requested(Some(SHA))])
            .when(fetched(OTHER))
            .then_expect_events(vec![MediaEvent::MediaFetchFailed {
                attempt: 1,
                code: CHECKSUM_MISMATCH.into(),
                retryable: false,
                next_attempt_at: None,
                at: at(5),
            }]);
    }

    #[test]
    fn recording_the_same_bytes_again_changes_nothing() {
        Given::with(())
            .given(vec![requested(None), stored(SHA, 1)])
            .when(fetched(SHA))
            .then_expect_events(vec![]);
    }

    #[test]
    fn other_bytes_after_the_media_was_stored_are_refused() {
        Given::with(())
            .given(vec![requested(None), stored(SHA, 1)])
            .when(fetched(OTHER))
            .then_expect_error(MediaError::MediaAlreadyStored);
    }

    #[test]
    fn bytes_for_a_media_never_requested_are_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(fetched(SHA))
            .then_expect_error(MediaError::MediaNotRequested);
    }

    #[test]
    fn bytes_after_the_fetch_failed_for_good_are_refused() {
        Given::with(())
            .given(vec![requested(None), failed(1, false)])
            .when(fetched(SHA))
            .then_expect_error(MediaError::MediaFetchEnded);
    }

    #[test]
    fn bytes_with_a_malformed_sha256_are_refused() {
        Given::with(())
            .given(vec![requested(None)])
            .when(fetched("xyz"))
            .then_expect_error(MediaError::InvalidSha256);
    }

    // RecordMediaFetchFailed

    #[test]
    fn a_retryable_failure_is_recorded_with_its_next_attempt() {
        Given::with(())
            .given(vec![requested(None)])
            .when(failure(1, true))
            .then_expect_events(vec![failed(1, true)]);
    }

    #[test]
    fn a_failure_not_retryable_ends_the_fetch() {
        Given::with(())
            .given(vec![requested(None)])
            .when(failure(1, false))
            .then_expect_events(vec![failed(1, false)]);
        Given::with(())
            .given(vec![requested(None), failed(1, false)])
            .when(failure(2, true))
            .then_expect_error(MediaError::MediaFetchEnded);
    }

    #[test]
    fn the_last_allowed_retryable_failure_gives_the_fetch_up() {
        let mut history = vec![requested(None)];
        history.extend((1..MAX_FETCH_ATTEMPTS).map(|n| failed(n, true)));
        Given::with(())
            .given(history)
            .when(failure(MAX_FETCH_ATTEMPTS, true))
            .then_expect_events(vec![MediaEvent::MediaFetchGaveUp {
                attempts: MAX_FETCH_ATTEMPTS,
                code: "http_500".into(),
                at: at(1),
            }]);
    }

    #[test]
    fn a_repeated_attempt_number_changes_nothing() {
        Given::with(())
            .given(vec![requested(None), failed(1, true)])
            .when(failure(1, true))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![requested(None), failed(1, false)])
            .when(failure(1, false))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_failure_of_a_media_never_requested_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(failure(1, true))
            .then_expect_error(MediaError::MediaNotRequested);
    }

    #[test]
    fn a_failure_after_the_media_was_stored_is_refused() {
        Given::with(())
            .given(vec![requested(None), stored(SHA, 1)])
            .when(failure(2, true))
            .then_expect_error(MediaError::MediaAlreadyStored);
    }

    #[test]
    fn an_attempt_numbered_zero_or_past_the_maximum_is_refused() {
        Given::with(())
            .given(vec![requested(None)])
            .when(failure(0, true))
            .then_expect_error(MediaError::InvalidAttempt);
        Given::with(())
            .given(vec![requested(None)])
            .when(failure(MAX_FETCH_ATTEMPTS + 1, false))
            .then_expect_error(MediaError::InvalidAttempt);
    }

    #[test]
    fn a_retryable_failure_without_a_next_attempt_time_is_refused() {
        let MediaCommand::RecordMediaFetchFailed(mut cmd) = failure(1, true) else {
            unreachable!()
        };
        cmd.next_attempt_at = None;
        Given::with(())
            .given(vec![requested(None)])
            .when(MediaCommand::RecordMediaFetchFailed(cmd))
            .then_expect_error(MediaError::RetryNeedsANextAttemptTime);
    }

    #[test]
    fn a_failure_without_a_code_is_refused() {
        let MediaCommand::RecordMediaFetchFailed(mut cmd) = failure(1, false) else {
            unreachable!()
        };
        cmd.code = String::new();
        Given::with(())
            .given(vec![requested(None)])
            .when(MediaCommand::RecordMediaFetchFailed(cmd))
            .then_expect_error(MediaError::FailureNeedsACode);
    }

    #[test]
    fn a_stray_event_after_the_media_was_stored_changes_nothing() {
        let mut media = Media::default();
        media.apply(requested(None));
        media.apply(stored(SHA, 1));
        let before = media.clone();
        media.apply(failed(2, false));
        assert_eq!(media, before);
    }

    /// One step of a random history.
    #[derive(Debug, Clone)]
    enum Op {
        Request,
        Fetched { matching: bool },
        Failed { attempt: u32, retryable: bool },
    }

    fn any_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Request),
            any::<bool>().prop_map(|matching| Op::Fetched { matching }),
            (0u32..8, any::<bool>()).prop_map(|(attempt, retryable)| Op::Failed { attempt, retryable }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Against a reference model: at most one `MediaStored`, never after the fetch ended;
        /// attempts only move forward and never pass the maximum; nothing follows a settled
        /// fetch; checksum mismatches end it.
        #[test]
        fn attempt_sequences_keep_the_fetch_rules(expect in any::<bool>(), ops in proptest::collection::vec(any_op(), 0..40)) {
            let mut media = Media::default();
            let (mut requested_, mut status, mut failures, mut stored_count) = (false, MediaStatus::Unknown, 0u32, 0);
            for op in ops {
                let command = match &op {
                    Op::Request => MediaCommand::RequestMediaFetch(request(expect.then_some(SHA))),
                    Op::Fetched { matching } => fetched(if *matching { SHA } else { OTHER }),
                    Op::Failed { attempt, retryable } => failure(*attempt, *retryable),
                };
                let settled_before = media.status().is_settled();
                let before = media.clone();
                let outcome = media.decide(command);
                // The model's verdict.
                match (&op, requested_, status) {
                    (Op::Request, false, _) => { requested_ = true; status = MediaStatus::Requested; }
                    (Op::Request, true, _) => prop_assert_eq!(&outcome, &Ok(None)),
                    (_, false, _) => prop_assert_eq!(&outcome, &Err(MediaError::MediaNotRequested)),
                    (Op::Fetched { matching }, true, MediaStatus::Requested) => {
                        if expect && !matching { status = MediaStatus::Failed; } else { status = MediaStatus::Stored; stored_count += 1; }
                    }
                    (Op::Failed { attempt, retryable }, true, MediaStatus::Requested) => {
                        if *attempt == 0 || *attempt > MAX_FETCH_ATTEMPTS {
                            prop_assert_eq!(&outcome, &Err(MediaError::InvalidAttempt));
                        } else if *attempt <= failures {
                            prop_assert_eq!(&outcome, &Ok(None));
                        } else {
                            failures = *attempt;
                            if !retryable { status = MediaStatus::Failed; }
                            else if *attempt >= MAX_FETCH_ATTEMPTS { status = MediaStatus::GaveUp; }
                        }
                    }
                    (_, true, _) => prop_assert!(matches!(outcome, Ok(None) | Err(_))),
                }
                if let Ok(Some(event)) = outcome {
                    prop_assert!(!settled_before, "an event after a settled fetch: {:?}", event);
                    media.apply(event);
                } else {
                    prop_assert_eq!(&media, &before);
                }
                prop_assert_eq!(media.status(), status);
                prop_assert!(media.failed_attempts() <= MAX_FETCH_ATTEMPTS);
                prop_assert!(stored_count <= 1);
                prop_assert_eq!(media.sha256().is_some(), status == MediaStatus::Stored);
            }
        }
    }
}
