//! The `Call` aggregate's state and its command handling.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{CallCommand, CompletedCall};
use super::error::CallError;
use super::events::CallEvent;
use super::values::{
    follow_up_backoff, AttemptOutcome, CallOutcome, FollowUpStatus, GiveUpReason, PlannedFollowUp, MAX_CALL_DURATION_S,
    MAX_FOLLOW_UP_ATTEMPTS,
};

/// One telephony call and the WhatsApp follow-up it may trigger.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Call {
    completed: Option<CallFacts>,
    follow_up: Option<FollowUp>,
}

/// What the aggregate keeps of a completed call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct CallFacts {
    provider: String,
    provider_call_id: String,
    outcome: CallOutcome,
    contact_id: Option<String>,
    ended_at: DateTime<Utc>,
}

/// What the aggregate keeps of the follow-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct FollowUp {
    rule_version: u32,
    status: FollowUpStatus,
    /// When the next attempt is due; `None` once terminal.
    next_attempt_at: Option<DateTime<Utc>>,
    last: Option<RecordedAttempt>,
}

/// The last attempt recorded, to recognise a repeated report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct RecordedAttempt {
    attempt: u32,
    result: RecordedResult,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
enum RecordedResult {
    Sent { provider_message_ref: String },
    Failed { error_code: Option<i64>, retryable: bool },
}

impl RecordedAttempt {
    /// Whether a report is this attempt again. A failure's requested next attempt is not
    /// compared: the recorded one is derived, and the first report stands.
    fn is_repeated_by(&self, attempt: u32, outcome: &AttemptOutcome) -> bool {
        self.attempt == attempt
            && match (&self.result, outcome) {
                (
                    RecordedResult::Sent { provider_message_ref },
                    AttemptOutcome::Sent {
                        provider_message_ref: reported,
                    },
                ) => provider_message_ref == reported,
                (
                    RecordedResult::Failed { error_code, retryable },
                    AttemptOutcome::Failed {
                        error_code: reported_code,
                        retryable: reported_retryable,
                        ..
                    },
                ) => error_code == reported_code && retryable == reported_retryable,
                _ => false,
            }
    }
}

impl Call {
    /// How the call ended, once recorded.
    pub fn outcome(&self) -> Option<CallOutcome> {
        self.completed.as_ref().map(|c| c.outcome)
    }

    /// The contact on the other end, when known.
    pub fn contact_id(&self) -> Option<&str> {
        self.completed.as_ref().and_then(|c| c.contact_id.as_deref())
    }

    /// When the call ended, once recorded.
    pub fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.completed.as_ref().map(|c| c.ended_at)
    }

    /// Where the follow-up stands.
    pub fn follow_up_status(&self) -> FollowUpStatus {
        self.follow_up.as_ref().map(|f| f.status).unwrap_or_default()
    }

    /// When the next follow-up attempt is due: the scheduled time, then after each retryable
    /// failure its backoff; `None` when nothing is pending.
    pub fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.follow_up.as_ref().and_then(|f| f.next_attempt_at)
    }

    /// The number of the last follow-up attempt recorded (0 before the first).
    pub fn last_attempt(&self) -> u32 {
        self.follow_up
            .as_ref()
            .and_then(|f| f.last.as_ref())
            .map_or(0, |last| last.attempt)
    }

    fn decide(&self, command: CallCommand) -> Result<Vec<CallEvent>, CallError> {
        match command {
            CallCommand::RecordCompletedCall(call) => self.record_call(call),
            CallCommand::ScheduleFollowUp(plan) => self.schedule(plan),
            CallCommand::RecordFollowUpAttempt { attempt, outcome, at } => self.record_attempt(attempt, outcome, at),
        }
    }

    fn record_call(&self, call: CompletedCall) -> Result<Vec<CallEvent>, CallError> {
        if call.provider.trim().is_empty() {
            return Err(CallError::MissingProvider);
        }
        if call.provider_call_id.trim().is_empty() {
            return Err(CallError::MissingProviderCallId);
        }
        if let Some(known) = &self.completed {
            return if known.provider == call.provider && known.provider_call_id == call.provider_call_id {
                Ok(vec![])
            } else {
                Err(CallError::CallIdMismatch {
                    provider_call_id: call.provider_call_id,
                })
            };
        }
        if call.duration_s > MAX_CALL_DURATION_S {
            return Err(CallError::ImplausibleDuration {
                duration_s: call.duration_s,
            });
        }
        Ok(vec![CallEvent::CallCompleted {
            provider: call.provider,
            provider_call_id: call.provider_call_id,
            direction: call.direction,
            contact_id: call.contact_id,
            from: call.from,
            to: call.to,
            duration_s: call.duration_s,
            outcome: call.outcome,
            agent_user_id: call.agent_user_id,
            ended_at: call.ended_at,
        }])
    }

    fn schedule(&self, plan: PlannedFollowUp) -> Result<Vec<CallEvent>, CallError> {
        let call = self.completed.as_ref().ok_or(CallError::CallNotCompleted)?;
        if let Some(existing) = &self.follow_up {
            return if existing.rule_version == plan.rule_version {
                Ok(vec![])
            } else {
                Err(CallError::FollowUpAlreadyScheduled {
                    rule_version: existing.rule_version,
                })
            };
        }
        let contact_id = call.contact_id.clone().ok_or(CallError::FollowUpWithoutContact)?;
        Ok(vec![CallEvent::FollowUpScheduled {
            rule_version: plan.rule_version,
            contact_id,
            template_name: plan.template_name,
            language: plan.language,
            due_at: plan.due_at,
        }])
    }

    fn record_attempt(
        &self,
        attempt: u32,
        outcome: AttemptOutcome,
        at: DateTime<Utc>,
    ) -> Result<Vec<CallEvent>, CallError> {
        let follow_up = self.follow_up.as_ref().ok_or(CallError::FollowUpNotScheduled)?;
        if let AttemptOutcome::Sent { provider_message_ref } = &outcome {
            if provider_message_ref.trim().is_empty() {
                return Err(CallError::MissingProviderMessageRef);
            }
        }
        if follow_up
            .last
            .as_ref()
            .is_some_and(|last| last.is_repeated_by(attempt, &outcome))
        {
            return Ok(vec![]);
        }
        match follow_up.status {
            FollowUpStatus::Sent => return Err(CallError::FollowUpAlreadySent),
            FollowUpStatus::GaveUp => return Err(CallError::FollowUpAbandoned),
            FollowUpStatus::NotScheduled | FollowUpStatus::Pending => {}
        }
        let last_attempt = self.last_attempt();
        if attempt <= last_attempt {
            return Err(CallError::AttemptOutOfOrder { attempt, last_attempt });
        }
        if attempt > MAX_FOLLOW_UP_ATTEMPTS {
            return Err(CallError::AttemptBeyondLimit {
                attempt,
                max: MAX_FOLLOW_UP_ATTEMPTS,
            });
        }
        match outcome {
            AttemptOutcome::Sent { provider_message_ref } => Ok(vec![CallEvent::FollowUpSent {
                attempt,
                provider_message_ref,
                at,
            }]),
            AttemptOutcome::Failed {
                error_code,
                retryable,
                next_attempt_at: requested,
            } => {
                let gave_up = if !retryable {
                    Some(GiveUpReason::NotRetryable)
                } else if attempt >= MAX_FOLLOW_UP_ATTEMPTS {
                    Some(GiveUpReason::MaxAttempts)
                } else {
                    None
                };
                let next_attempt_at = match gave_up {
                    Some(_) => None,
                    None => {
                        let backoff = at + follow_up_backoff(attempt);
                        Some(requested.map_or(backoff, |requested| requested.max(backoff)))
                    }
                };
                let mut events = vec![CallEvent::FollowUpFailed {
                    attempt,
                    error_code,
                    retryable,
                    next_attempt_at,
                    at,
                }];
                if let Some(reason) = gave_up {
                    events.push(CallEvent::FollowUpGaveUp { attempt, reason, at });
                }
                Ok(events)
            }
        }
    }
}

impl Aggregate for Call {
    const TYPE: &'static str = "Call";
    type Command = CallCommand;
    type Event = CallEvent;
    type Error = CallError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CallEvent::CallCompleted {
                provider,
                provider_call_id,
                contact_id,
                outcome,
                ended_at,
                ..
            } => {
                self.completed.get_or_insert(CallFacts {
                    provider,
                    provider_call_id,
                    outcome,
                    contact_id,
                    ended_at,
                });
            }
            CallEvent::FollowUpScheduled {
                rule_version, due_at, ..
            } => {
                self.follow_up.get_or_insert(FollowUp {
                    rule_version,
                    status: FollowUpStatus::Pending,
                    next_attempt_at: Some(due_at),
                    last: None,
                });
            }
            CallEvent::FollowUpSent {
                attempt,
                provider_message_ref,
                ..
            } => {
                if let Some(follow_up) = self.follow_up.as_mut() {
                    follow_up.status = FollowUpStatus::Sent;
                    follow_up.next_attempt_at = None;
                    follow_up.last = Some(RecordedAttempt {
                        attempt,
                        result: RecordedResult::Sent { provider_message_ref },
                    });
                }
            }
            CallEvent::FollowUpFailed {
                attempt,
                error_code,
                retryable,
                next_attempt_at,
                ..
            } => {
                if let Some(follow_up) = self.follow_up.as_mut() {
                    follow_up.next_attempt_at = next_attempt_at;
                    follow_up.last = Some(RecordedAttempt {
                        attempt,
                        result: RecordedResult::Failed { error_code, retryable },
                    });
                }
            }
            CallEvent::FollowUpGaveUp { .. } => {
                if let Some(follow_up) = self.follow_up.as_mut() {
                    follow_up.status = FollowUpStatus::GaveUp;
                    follow_up.next_attempt_at = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::CallDirection;
    use crate::pii::Envelope;
    use chrono::{Duration, TimeZone};
    use cqrs_es::test::TestFramework;
    use cqrs_es::DomainEvent;
    use proptest::prelude::*;

    type Given = TestFramework<Call>;

    fn env(tag: &str) -> Envelope {
        Envelope {
            enc: "aes256gcm.v1".into(),
            nonce: format!("n-{tag}"),
            ciphertext: format!("c-{tag}"),
        }
    }

    /// 2026-11-01 09:00 UTC plus some minutes.
    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).single().unwrap_or_default() + Duration::minutes(minutes)
    }

    fn call(sid: &str) -> CompletedCall {
        CompletedCall {
            provider: "twilio".into(),
            provider_call_id: sid.into(),
            direction: CallDirection::Inbound,
            contact_id: Some("ct_a".into()),
            from: env("from"),
            to: env("to"),
            duration_s: 95,
            outcome: CallOutcome::Completed,
            agent_user_id: Some("u_agent".into()),
            ended_at: at(0),
        }
    }

    fn completed(c: CompletedCall) -> CallEvent {
        CallEvent::CallCompleted {
            provider: c.provider,
            provider_call_id: c.provider_call_id,
            direction: c.direction,
            contact_id: c.contact_id,
            from: c.from,
            to: c.to,
            duration_s: c.duration_s,
            outcome: c.outcome,
            agent_user_id: c.agent_user_id,
            ended_at: c.ended_at,
        }
    }

    fn plan(rule_version: u32) -> PlannedFollowUp {
        PlannedFollowUp {
            rule_version,
            template_name: "missed_call_follow_up".into(),
            language: "en_US".into(),
            due_at: at(10),
        }
    }

    fn scheduled(rule_version: u32) -> CallEvent {
        CallEvent::FollowUpScheduled {
            rule_version,
            contact_id: "ct_a".into(),
            template_name: "missed_call_follow_up".into(),
            language: "en_US".into(),
            due_at: at(10),
        }
    }

    /// A completed call with a follow-up scheduled by rule version 1.
    fn pending() -> Vec<CallEvent> {
        vec![completed(call("CA1")), scheduled(1)]
    }

    fn sent(reference: &str) -> AttemptOutcome {
        AttemptOutcome::Sent {
            provider_message_ref: reference.into(),
        }
    }

    fn failed(retryable: bool) -> AttemptOutcome {
        AttemptOutcome::Failed {
            error_code: Some(131_000),
            retryable,
            next_attempt_at: None,
        }
    }

    fn attempt(n: u32, outcome: AttemptOutcome, minute: i64) -> CallCommand {
        CallCommand::RecordFollowUpAttempt {
            attempt: n,
            outcome,
            at: at(minute),
        }
    }

    fn failed_event(n: u32, retryable: bool, next: Option<DateTime<Utc>>, minute: i64) -> CallEvent {
        CallEvent::FollowUpFailed {
            attempt: n,
            error_code: Some(131_000),
            retryable,
            next_attempt_at: next,
            at: at(minute),
        }
    }

    fn sent_event(n: u32, reference: &str, minute: i64) -> CallEvent {
        CallEvent::FollowUpSent {
            attempt: n,
            provider_message_ref: reference.into(),
            at: at(minute),
        }
    }

    /// Failed retryable attempts 1..=n, each at minute 10 + k, as recorded.
    fn failures(n: u32) -> Vec<CallEvent> {
        (1..=n)
            .map(|k| {
                let minute = 10 + i64::from(k);
                failed_event(k, true, Some(at(minute) + follow_up_backoff(k)), minute)
            })
            .collect()
    }

    // --- RecordCompletedCall ---

    #[test]
    fn a_completed_call_is_recorded() {
        Given::with(())
            .given_no_previous_events()
            .when(CallCommand::RecordCompletedCall(call("CA1")))
            .then_expect_events(vec![completed(call("CA1"))]);
    }

    #[test]
    fn the_same_call_reported_twice_is_recorded_once_and_the_first_report_stands() {
        let mut again = call("CA1");
        again.duration_s = 12;
        again.outcome = CallOutcome::Busy;
        Given::with(())
            .given(vec![completed(call("CA1"))])
            .when(CallCommand::RecordCompletedCall(again))
            .then_expect_events(vec![]);
    }

    #[test]
    fn another_call_on_this_calls_stream_is_refused() {
        Given::with(())
            .given(vec![completed(call("CA1"))])
            .when(CallCommand::RecordCompletedCall(call("CA2")))
            .then_expect_error(CallError::CallIdMismatch {
                provider_call_id: "CA2".into(),
            });
    }

    #[test]
    fn the_same_call_id_from_another_provider_is_refused() {
        let mut other = call("CA1");
        other.provider = "vonage".into();
        Given::with(())
            .given(vec![completed(call("CA1"))])
            .when(CallCommand::RecordCompletedCall(other))
            .then_expect_error(CallError::CallIdMismatch {
                provider_call_id: "CA1".into(),
            });
    }

    #[test]
    fn a_call_longer_than_a_day_is_refused() {
        let mut long = call("CA1");
        long.duration_s = MAX_CALL_DURATION_S + 1;
        Given::with(())
            .given_no_previous_events()
            .when(CallCommand::RecordCompletedCall(long))
            .then_expect_error(CallError::ImplausibleDuration {
                duration_s: MAX_CALL_DURATION_S + 1,
            });
    }

    #[test]
    fn a_call_of_exactly_a_day_is_recorded() {
        let mut long = call("CA1");
        long.duration_s = MAX_CALL_DURATION_S;
        Given::with(())
            .given_no_previous_events()
            .when(CallCommand::RecordCompletedCall(long.clone()))
            .then_expect_events(vec![completed(long)]);
    }

    #[test]
    fn a_call_without_a_provider_call_id_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(CallCommand::RecordCompletedCall(call(" ")))
            .then_expect_error(CallError::MissingProviderCallId);
    }

    #[test]
    fn a_call_without_a_provider_is_refused() {
        let mut anonymous = call("CA1");
        anonymous.provider = String::new();
        Given::with(())
            .given_no_previous_events()
            .when(CallCommand::RecordCompletedCall(anonymous))
            .then_expect_error(CallError::MissingProvider);
    }

    // --- ScheduleFollowUp ---

    #[test]
    fn a_completed_call_with_a_contact_gets_its_follow_up_scheduled() {
        Given::with(())
            .given(vec![completed(call("CA1"))])
            .when(CallCommand::ScheduleFollowUp(plan(1)))
            .then_expect_events(vec![scheduled(1)]);
    }

    #[test]
    fn a_follow_up_before_the_call_completed_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(CallCommand::ScheduleFollowUp(plan(1)))
            .then_expect_error(CallError::CallNotCompleted);
    }

    #[test]
    fn scheduling_again_under_the_same_rule_version_changes_nothing() {
        Given::with(())
            .given(pending())
            .when(CallCommand::ScheduleFollowUp(plan(1)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_second_follow_up_under_another_rule_version_is_refused() {
        Given::with(())
            .given(pending())
            .when(CallCommand::ScheduleFollowUp(plan(2)))
            .then_expect_error(CallError::FollowUpAlreadyScheduled { rule_version: 1 });
    }

    #[test]
    fn a_call_from_an_unknown_number_cannot_be_followed_up() {
        let mut unknown = call("CA1");
        unknown.contact_id = None;
        Given::with(())
            .given(vec![completed(unknown)])
            .when(CallCommand::ScheduleFollowUp(plan(1)))
            .then_expect_error(CallError::FollowUpWithoutContact);
    }

    // --- RecordFollowUpAttempt ---

    #[test]
    fn a_sent_attempt_ends_the_follow_up() {
        Given::with(())
            .given(pending())
            .when(attempt(1, sent("wamid.F1"), 10))
            .then_expect_events(vec![sent_event(1, "wamid.F1", 10)]);
    }

    #[test]
    fn a_retryable_failure_is_retried_after_the_backoff() {
        Given::with(())
            .given(pending())
            .when(attempt(1, failed(true), 10))
            .then_expect_events(vec![failed_event(1, true, Some(at(11)), 10)]);
        Given::with(())
            .given(pending())
            .and(failures(1))
            .when(attempt(2, failed(true), 12))
            .then_expect_events(vec![failed_event(2, true, Some(at(17)), 12)]);
    }

    #[test]
    fn a_later_retry_time_asked_by_the_provider_is_kept_and_an_earlier_one_is_not() {
        let later = AttemptOutcome::Failed {
            error_code: Some(130_429),
            retryable: true,
            next_attempt_at: Some(at(40)),
        };
        let expected = |next| CallEvent::FollowUpFailed {
            attempt: 1,
            error_code: Some(130_429),
            retryable: true,
            next_attempt_at: Some(next),
            at: at(10),
        };
        Given::with(())
            .given(pending())
            .when(attempt(1, later, 10))
            .then_expect_events(vec![expected(at(40))]);
        let earlier = AttemptOutcome::Failed {
            error_code: Some(130_429),
            retryable: true,
            next_attempt_at: Some(at(10)),
        };
        Given::with(())
            .given(pending())
            .when(attempt(1, earlier, 10))
            .then_expect_events(vec![expected(at(11))]);
    }

    #[test]
    fn a_failure_that_cannot_be_retried_gives_up() {
        Given::with(())
            .given(pending())
            .when(attempt(1, failed(false), 10))
            .then_expect_events(vec![
                failed_event(1, false, None, 10),
                CallEvent::FollowUpGaveUp {
                    attempt: 1,
                    reason: GiveUpReason::NotRetryable,
                    at: at(10),
                },
            ]);
    }

    #[test]
    fn the_last_allowed_attempt_failing_gives_up() {
        Given::with(())
            .given(pending())
            .and(failures(MAX_FOLLOW_UP_ATTEMPTS - 1))
            .when(attempt(MAX_FOLLOW_UP_ATTEMPTS, failed(true), 30))
            .then_expect_events(vec![
                failed_event(MAX_FOLLOW_UP_ATTEMPTS, true, None, 30),
                CallEvent::FollowUpGaveUp {
                    attempt: MAX_FOLLOW_UP_ATTEMPTS,
                    reason: GiveUpReason::MaxAttempts,
                    at: at(30),
                },
            ]);
    }

    #[test]
    fn the_last_allowed_attempt_may_still_succeed() {
        Given::with(())
            .given(pending())
            .and(failures(MAX_FOLLOW_UP_ATTEMPTS - 1))
            .when(attempt(MAX_FOLLOW_UP_ATTEMPTS, sent("wamid.F5"), 30))
            .then_expect_events(vec![sent_event(MAX_FOLLOW_UP_ATTEMPTS, "wamid.F5", 30)]);
    }

    #[test]
    fn a_repeated_attempt_report_changes_nothing() {
        Given::with(())
            .given(pending())
            .and(failures(1))
            .when(attempt(1, failed(true), 50))
            .then_expect_events(vec![]);
        Given::with(())
            .given(pending())
            .and(vec![sent_event(1, "wamid.F1", 10)])
            .when(attempt(1, sent("wamid.F1"), 50))
            .then_expect_events(vec![]);
        Given::with(())
            .given(pending())
            .and(vec![
                failed_event(1, false, None, 10),
                CallEvent::FollowUpGaveUp {
                    attempt: 1,
                    reason: GiveUpReason::NotRetryable,
                    at: at(10),
                },
            ])
            .when(attempt(1, failed(false), 50))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_attempt_before_a_follow_up_was_scheduled_is_refused() {
        Given::with(())
            .given(vec![completed(call("CA1"))])
            .when(attempt(1, sent("wamid.F1"), 10))
            .then_expect_error(CallError::FollowUpNotScheduled);
    }

    #[test]
    fn an_attempt_not_after_the_last_one_is_refused() {
        Given::with(())
            .given(pending())
            .and(failures(2))
            .when(attempt(1, failed(true), 20))
            .then_expect_error(CallError::AttemptOutOfOrder {
                attempt: 1,
                last_attempt: 2,
            });
        Given::with(())
            .given(pending())
            .and(failures(2))
            .when(attempt(2, sent("wamid.F2"), 20))
            .then_expect_error(CallError::AttemptOutOfOrder {
                attempt: 2,
                last_attempt: 2,
            });
        Given::with(())
            .given(pending())
            .when(attempt(0, sent("wamid.F0"), 20))
            .then_expect_error(CallError::AttemptOutOfOrder {
                attempt: 0,
                last_attempt: 0,
            });
    }

    #[test]
    fn an_attempt_beyond_the_limit_is_refused() {
        Given::with(())
            .given(pending())
            .and(failures(2))
            .when(attempt(MAX_FOLLOW_UP_ATTEMPTS + 1, sent("wamid.F6"), 20))
            .then_expect_error(CallError::AttemptBeyondLimit {
                attempt: MAX_FOLLOW_UP_ATTEMPTS + 1,
                max: MAX_FOLLOW_UP_ATTEMPTS,
            });
    }

    #[test]
    fn an_attempt_after_the_follow_up_was_sent_is_refused() {
        Given::with(())
            .given(pending())
            .and(vec![sent_event(1, "wamid.F1", 10)])
            .when(attempt(2, sent("wamid.F2"), 20))
            .then_expect_error(CallError::FollowUpAlreadySent);
    }

    #[test]
    fn an_attempt_after_the_follow_up_was_given_up_is_refused() {
        Given::with(())
            .given(pending())
            .and(vec![
                failed_event(1, false, None, 10),
                CallEvent::FollowUpGaveUp {
                    attempt: 1,
                    reason: GiveUpReason::NotRetryable,
                    at: at(10),
                },
            ])
            .when(attempt(2, sent("wamid.F2"), 20))
            .then_expect_error(CallError::FollowUpAbandoned);
    }

    #[test]
    fn a_sent_attempt_without_a_message_reference_is_refused() {
        Given::with(())
            .given(pending())
            .when(attempt(1, sent(""), 10))
            .then_expect_error(CallError::MissingProviderMessageRef);
    }

    // --- State read by the process manager and projections ---

    #[test]
    fn the_state_tracks_the_follow_up_from_schedule_to_send() {
        let mut state = Call::default();
        assert_eq!(state.follow_up_status(), FollowUpStatus::NotScheduled);
        for event in pending() {
            state.apply(event);
        }
        assert_eq!(state.outcome(), Some(CallOutcome::Completed));
        assert_eq!(state.contact_id(), Some("ct_a"));
        assert_eq!(state.ended_at(), Some(at(0)));
        assert_eq!(state.follow_up_status(), FollowUpStatus::Pending);
        assert_eq!(state.next_attempt_at(), Some(at(10)));
        for event in failures(2) {
            state.apply(event);
        }
        assert_eq!(state.last_attempt(), 2);
        assert_eq!(state.next_attempt_at(), Some(at(12) + follow_up_backoff(2)));
        state.apply(sent_event(3, "wamid.F3", 30));
        assert_eq!(state.follow_up_status(), FollowUpStatus::Sent);
        assert_eq!(state.next_attempt_at(), None);
    }

    #[test]
    fn every_event_type_is_listed_and_versioned() {
        let events = [
            completed(call("CA1")),
            scheduled(1),
            sent_event(1, "w", 1),
            failed_event(1, true, None, 1),
            CallEvent::FollowUpGaveUp {
                attempt: 1,
                reason: GiveUpReason::MaxAttempts,
                at: at(1),
            },
        ];
        let types: Vec<String> = events.iter().map(DomainEvent::event_type).collect();
        assert_eq!(types, CallEvent::TYPES);
        assert!(events.iter().all(|e| e.event_version() == "1.0"));
    }

    #[test]
    fn error_codes_are_distinct_screaming_snake_case() {
        let errors = [
            CallError::MissingProvider,
            CallError::MissingProviderCallId,
            CallError::ImplausibleDuration { duration_s: 0 },
            CallError::CallIdMismatch {
                provider_call_id: String::new(),
            },
            CallError::CallNotCompleted,
            CallError::FollowUpWithoutContact,
            CallError::FollowUpAlreadyScheduled { rule_version: 1 },
            CallError::FollowUpNotScheduled,
            CallError::MissingProviderMessageRef,
            CallError::AttemptOutOfOrder {
                attempt: 0,
                last_attempt: 0,
            },
            CallError::AttemptBeyondLimit { attempt: 0, max: 0 },
            CallError::FollowUpAlreadySent,
            CallError::FollowUpAbandoned,
        ];
        let codes: std::collections::BTreeSet<&str> = errors.iter().map(CallError::code).collect();
        assert_eq!(codes.len(), errors.len());
        assert!(codes
            .iter()
            .all(|c| c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')));
    }

    // --- Properties over random command sequences ---

    /// Which attempt number a generated attempt uses, relative to the last one recorded.
    #[derive(Debug, Clone)]
    enum Step {
        Next,
        Repeat,
        Skip(u32),
        Any(u32),
    }

    #[derive(Debug, Clone)]
    enum Op {
        Complete {
            same_call: bool,
            contact: bool,
        },
        Schedule {
            rule_version: u32,
        },
        Attempt {
            step: Step,
            kind: u8,
            requested: Option<i64>,
        },
    }

    fn any_op() -> impl Strategy<Value = Op> {
        let step = prop_oneof![
            6 => Just(Step::Next),
            2 => Just(Step::Repeat),
            1 => (2u32..4).prop_map(Step::Skip),
            1 => (0u32..9).prop_map(Step::Any),
        ];
        prop_oneof![
            1 => (any::<bool>(), prop::bool::weighted(0.9))
                .prop_map(|(same_call, contact)| Op::Complete { same_call, contact }),
            1 => (1u32..3).prop_map(|rule_version| Op::Schedule { rule_version }),
            6 => (step, 0u8..4, prop::option::of(0i64..180))
                .prop_map(|(step, kind, requested)| Op::Attempt { step, kind, requested }),
        ]
    }

    fn command(op: &Op, state: &Call, now: DateTime<Utc>) -> CallCommand {
        match op {
            Op::Complete { same_call, contact } => {
                let mut c = call(if *same_call { "CA1" } else { "CA2" });
                if !contact {
                    c.contact_id = None;
                }
                CallCommand::RecordCompletedCall(c)
            }
            Op::Schedule { rule_version } => CallCommand::ScheduleFollowUp(plan(*rule_version)),
            Op::Attempt { step, kind, requested } => {
                let last = state.last_attempt();
                let n = match step {
                    Step::Next => last + 1,
                    Step::Repeat => last,
                    Step::Skip(k) => last + k,
                    Step::Any(n) => *n,
                };
                let outcome = match kind {
                    0 => sent("wamid.F"),
                    k => AttemptOutcome::Failed {
                        error_code: Some(131_000),
                        retryable: *k != 3,
                        next_attempt_at: requested.map(|m| now + Duration::minutes(m)),
                    },
                };
                CallCommand::RecordFollowUpAttempt {
                    attempt: n,
                    outcome,
                    at: now,
                }
            }
        }
    }

    /// The reference model of a failure's arithmetic: whether it ends the follow-up, and when
    /// the next attempt is due otherwise.
    fn expected_failure(
        attempt: u32,
        retryable: bool,
        requested: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> (Option<GiveUpReason>, Option<DateTime<Utc>>) {
        if !retryable {
            return (Some(GiveUpReason::NotRetryable), None);
        }
        if attempt == MAX_FOLLOW_UP_ATTEMPTS {
            return (Some(GiveUpReason::MaxAttempts), None);
        }
        let backoff = now + follow_up_backoff(attempt);
        (
            None,
            Some(requested.map_or(backoff, |r| if r > backoff { r } else { backoff })),
        )
    }

    proptest! {
        #[test]
        fn follow_ups_are_sent_at_most_once_in_increasing_attempts_and_nothing_follows_the_end(
            ops in proptest::collection::vec(any_op(), 1..40)
        ) {
            let mut state = Call::default();
            let mut log: Vec<CallEvent> = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                let now = at(i64::try_from(i).unwrap_or(0) * 7);
                let cmd = command(op, &state, now);
                let before = state.clone();
                let Ok(events) = state.decide(cmd.clone()) else {
                    continue;
                };
                // The arithmetic of a recorded failure matches the reference model.
                if let (
                    CallCommand::RecordFollowUpAttempt {
                        attempt,
                        outcome: AttemptOutcome::Failed { retryable, next_attempt_at: requested, .. },
                        ..
                    },
                    Some(CallEvent::FollowUpFailed { next_attempt_at, .. }),
                ) = (&cmd, events.first())
                {
                    let (gave_up, next) = expected_failure(*attempt, *retryable, *requested, now);
                    prop_assert_eq!(*next_attempt_at, next);
                    let gave_up_event = events.get(1).and_then(|e| match e {
                        CallEvent::FollowUpGaveUp { reason, .. } => Some(*reason),
                        _ => None,
                    });
                    prop_assert_eq!(gave_up_event, gave_up);
                    prop_assert_eq!(events.len(), if gave_up.is_some() { 2 } else { 1 });
                }
                for event in events {
                    state.apply(event.clone());
                    log.push(event);
                }
                // Nothing is recorded after a terminal state.
                if matches!(before.follow_up_status(), FollowUpStatus::Sent | FollowUpStatus::GaveUp) {
                    prop_assert_eq!(state.clone(), before);
                }

                // Invariants over the whole log, after every step.
                let count = |name: &str| log.iter().filter(|e| e.event_type() == name).count();
                prop_assert!(count("CallCompleted") <= 1);
                prop_assert!(count("FollowUpScheduled") <= 1);
                prop_assert!(count("FollowUpSent") <= 1);
                prop_assert!(count("FollowUpGaveUp") <= 1);
                let mut last_attempt = 0;
                let mut ended = false;
                let mut scheduled_seen = false;
                for event in &log {
                    match event {
                        CallEvent::CallCompleted { .. } => {}
                        CallEvent::FollowUpScheduled { .. } => scheduled_seen = true,
                        CallEvent::FollowUpSent { attempt, .. } | CallEvent::FollowUpFailed { attempt, .. } => {
                            prop_assert!(scheduled_seen);
                            prop_assert!(!ended, "an attempt after the follow-up ended");
                            prop_assert!(*attempt > last_attempt, "attempts strictly increase");
                            prop_assert!(*attempt <= MAX_FOLLOW_UP_ATTEMPTS);
                            last_attempt = *attempt;
                            ended = matches!(event, CallEvent::FollowUpSent { .. });
                        }
                        CallEvent::FollowUpGaveUp { attempt, .. } => {
                            prop_assert!(!ended);
                            prop_assert_eq!(*attempt, last_attempt);
                            ended = true;
                        }
                    }
                }
                if count("FollowUpScheduled") > 0 {
                    prop_assert_eq!(log.first().map(DomainEvent::event_type), Some("CallCompleted".to_string()));
                }
            }
        }
    }
}
