//! Refusals of the `Media` aggregate, named after the rule they enforce.

/// Why a media command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// A media fetch is requested under the keyed-hash ref the caller made.
    #[error("a media ref is required")]
    MissingMediaRef,
    /// A media's stream holds one media object; requesting another ref on it is refused.
    #[error("this stream holds another media than {media_ref}")]
    MediaRefMismatch { media_ref: String },
    /// Outcomes are recorded for a fetch that was requested.
    #[error("no fetch of this media was requested")]
    MediaNotRequested,
    /// A sha-256 is 32 bytes, as hex or base64.
    #[error("a sha-256 is 32 bytes as hex or base64")]
    InvalidSha256,
    /// Stored media is stored once; other bytes, or a failure, cannot follow.
    #[error("the media is already stored")]
    MediaAlreadyStored,
    /// A fetch that failed for good or was given up takes no further outcome.
    #[error("the media fetch already ended without the media")]
    MediaFetchEnded,
    /// Failed attempts are numbered from 1 to [`super::MAX_FETCH_ATTEMPTS`].
    #[error("failed attempts are numbered from 1 to {max}", max = super::MAX_FETCH_ATTEMPTS)]
    InvalidAttempt,
    /// A retryable failure says when the next attempt is due.
    #[error("a retryable failure needs the time of the next attempt")]
    RetryNeedsANextAttemptTime,
    /// A failure carries the provider's or the fetcher's code.
    #[error("a failure needs a code")]
    FailureNeedsACode,
    #[error("the media is still being fetched (only a failed or given-up fetch is tried again)")]
    MediaFetchInProgress,
    #[error("a request to fetch again needs an idempotency key")]
    MissingIdempotencyKey,
}

impl MediaError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingMediaRef => "MISSING_MEDIA_REF",
            Self::MediaRefMismatch { .. } => "MEDIA_REF_MISMATCH",
            Self::MediaNotRequested => "MEDIA_NOT_REQUESTED",
            Self::InvalidSha256 => "INVALID_SHA256",
            Self::MediaAlreadyStored => "MEDIA_ALREADY_STORED",
            Self::MediaFetchEnded => "MEDIA_FETCH_ENDED",
            Self::InvalidAttempt => "INVALID_ATTEMPT",
            Self::RetryNeedsANextAttemptTime => "RETRY_NEEDS_A_NEXT_ATTEMPT_TIME",
            Self::FailureNeedsACode => "FAILURE_NEEDS_A_CODE",
            Self::MediaFetchInProgress => "MEDIA_FETCH_IN_PROGRESS",
            Self::MissingIdempotencyKey => "MISSING_IDEMPOTENCY_KEY",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_screaming_snake_case_and_distinct() {
        let all = [
            MediaError::MissingMediaRef,
            MediaError::MediaRefMismatch { media_ref: "m".into() },
            MediaError::MediaNotRequested,
            MediaError::InvalidSha256,
            MediaError::MediaAlreadyStored,
            MediaError::MediaFetchEnded,
            MediaError::InvalidAttempt,
            MediaError::RetryNeedsANextAttemptTime,
            MediaError::FailureNeedsACode,
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(MediaError::code).collect();
        assert_eq!(codes.len(), all.len());
        assert!(codes.iter().all(|c| c
            .chars()
            .all(|ch| ch.is_ascii_uppercase() || ch == '_' || ch.is_ascii_digit())));
    }
}
