//! Refusals of the `Call` aggregate, named after the rule they enforce.

/// Why a call command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// A call must name the provider that reported it.
    #[error("the telephony provider is required")]
    MissingProvider,
    /// A call must carry the provider's call id, its dedupe key.
    #[error("the provider's call id is required")]
    MissingProviderCallId,
    /// A call lasts at most 24 hours; a longer duration is an error upstream.
    #[error("a call of {duration_s} s is implausible (at most 24 hours)")]
    ImplausibleDuration { duration_s: u32 },
    /// A call stream holds one provider call; another call id on it is a routing error.
    #[error("call {provider_call_id} does not belong to this call's stream")]
    CallIdMismatch { provider_call_id: String },
    /// A follow-up is scheduled only after the call was recorded as completed.
    #[error("the call has not been recorded as completed")]
    CallNotCompleted,
    /// A follow-up needs a contact to send to; a call from an unknown number has none.
    #[error("the call has no contact to follow up")]
    FollowUpWithoutContact,
    /// A call gets one follow-up; another rule version cannot schedule a second.
    #[error("a follow-up was already scheduled by rule version {rule_version}")]
    FollowUpAlreadyScheduled { rule_version: u32 },
    /// An attempt is recorded only for a scheduled follow-up.
    #[error("no follow-up is scheduled for this call")]
    FollowUpNotScheduled,
    /// A sent attempt names the provider's message.
    #[error("a sent follow-up needs the provider's message reference")]
    MissingProviderMessageRef,
    /// Attempt numbers start at 1 and strictly increase.
    #[error("attempt {attempt} does not follow attempt {last_attempt}")]
    AttemptOutOfOrder { attempt: u32, last_attempt: u32 },
    /// No attempt past the limit exists.
    #[error("attempt {attempt} is beyond the limit of {max} attempts")]
    AttemptBeyondLimit { attempt: u32, max: u32 },
    /// A sent follow-up is final.
    #[error("the follow-up was already sent")]
    FollowUpAlreadySent,
    /// A follow-up given up is final.
    #[error("the follow-up was given up")]
    FollowUpAbandoned,
}

impl CallError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingProvider => "MISSING_PROVIDER",
            Self::MissingProviderCallId => "MISSING_PROVIDER_CALL_ID",
            Self::ImplausibleDuration { .. } => "IMPLAUSIBLE_DURATION",
            Self::CallIdMismatch { .. } => "CALL_ID_MISMATCH",
            Self::CallNotCompleted => "CALL_NOT_COMPLETED",
            Self::FollowUpWithoutContact => "FOLLOW_UP_WITHOUT_CONTACT",
            Self::FollowUpAlreadyScheduled { .. } => "FOLLOW_UP_ALREADY_SCHEDULED",
            Self::FollowUpNotScheduled => "FOLLOW_UP_NOT_SCHEDULED",
            Self::MissingProviderMessageRef => "MISSING_PROVIDER_MESSAGE_REF",
            Self::AttemptOutOfOrder { .. } => "ATTEMPT_OUT_OF_ORDER",
            Self::AttemptBeyondLimit { .. } => "ATTEMPT_BEYOND_LIMIT",
            Self::FollowUpAlreadySent => "FOLLOW_UP_ALREADY_SENT",
            Self::FollowUpAbandoned => "FOLLOW_UP_ABANDONED",
        }
    }
}
