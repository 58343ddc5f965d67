//! Calls: the `calls` connection (filtered by outcome, direction and period, with each call's
//! follow-up status), the tenant's `callFollowUpRule`, and the mutations that set or disable
//! it. Reads: owner, admin, agent, auditor; the rule: owner and admin.

use std::collections::BTreeSet;

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chronicle_commands::calls::automation_rules;
use chronicle_domain::call::{AutomationRulesCommand, CallOutcome as DomainOutcome};
use chronicle_projections::calls::{list, CallFilter as ReadFilter, CallRow};
use chrono::{DateTime, Utc};

use super::receipt::{receipt, Receipt};
use super::{allowed, commands, connection, metadata, page_size, pool};
use crate::error::IntoGraphql;
use crate::permissions::Permission;

/// How a call ended.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CallOutcome {
    /// Answered by a person and hung up normally.
    Completed,
    /// Rang without being answered.
    NoAnswer,
    /// The line was busy.
    Busy,
    /// The provider could not connect the call.
    Failed,
    /// Hung up by the caller before it was answered.
    Canceled,
    /// Answered by a machine (voicemail or fax).
    Voicemail,
}

impl CallOutcome {
    fn domain(self) -> DomainOutcome {
        match self {
            Self::Completed => DomainOutcome::Completed,
            Self::NoAnswer => DomainOutcome::NoAnswer,
            Self::Busy => DomainOutcome::Busy,
            Self::Failed => DomainOutcome::Failed,
            Self::Canceled => DomainOutcome::Canceled,
            Self::Voicemail => DomainOutcome::Voicemail,
        }
    }

    fn from_domain(outcome: DomainOutcome) -> Self {
        match outcome {
            DomainOutcome::Completed => Self::Completed,
            DomainOutcome::NoAnswer => Self::NoAnswer,
            DomainOutcome::Busy => Self::Busy,
            DomainOutcome::Failed => Self::Failed,
            DomainOutcome::Canceled => Self::Canceled,
            DomainOutcome::Voicemail => Self::Voicemail,
        }
    }

    fn parse(s: &str) -> Self {
        DomainOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .map(Self::from_domain)
            .unwrap_or(Self::Failed)
    }
}

/// Who placed a call.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CallDirection {
    /// The contact called the tenant.
    Inbound,
    /// The tenant (an agent or an API call) called the contact.
    Outbound,
}

impl CallDirection {
    fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// Where a call's follow-up stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum FollowUpStatus {
    /// No follow-up was scheduled (yet): no enabled rule names the call's outcome, or the call
    /// has no contact.
    NotScheduled,
    /// Scheduled and waiting for its first attempt, or for a retry after a failed one.
    Pending,
    /// An attempt's message is queued and the sender is trying it (`sendTries` so far,
    /// `lastSendError`, the next try at `nextAttemptAt`).
    Sending,
    /// The sender cannot tell whether the attempt's message reached WhatsApp and left it for an
    /// operator (`resendMessage` sends it again; `lastSendError` says what happened).
    AwaitingOperator,
    /// WhatsApp accepted the follow-up template; final.
    Sent,
    /// Given up after a failure that cannot be retried or after 5 failed attempts; final.
    GaveUp,
}

/// Filters of `calls`.
#[derive(InputObject, Default)]
pub struct CallFilter {
    /// Only calls with this outcome.
    pub outcome: Option<CallOutcome>,
    /// Only calls in this direction.
    pub direction: Option<CallDirection>,
    /// Calls that ended at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Calls that ended before this time.
    pub to: Option<DateTime<Utc>>,
}

/// A call's WhatsApp follow-up.
#[derive(SimpleObject)]
pub struct CallFollowUp {
    /// Where the follow-up stands.
    pub status: FollowUpStatus,
    /// The WhatsApp template sent as the follow-up; null until one is scheduled.
    pub template_name: Option<String>,
    /// The template's language code, e.g. `en_US`; null until one is scheduled.
    pub language: Option<String>,
    /// The version of the follow-up rule that scheduled it; null until one is scheduled.
    pub rule_version: Option<i32>,
    /// When the first attempt is due: the call's end plus the rule's delay (RFC 3339); null
    /// until one is scheduled.
    pub due_at: Option<DateTime<Utc>>,
    /// How many send attempts were recorded so far (0 before the first, at most 5). Each
    /// attempt queues one message, which the sender may try several times (`sendTries`).
    pub attempts: i32,
    /// How many times the sender has tried the current attempt's message without an answer
    /// it can settle (5xx, 429, timeouts); 0 before the first try and after a resend.
    pub send_tries: i32,
    /// The error of the sender's last try (`<code>: <title>`), or why it left the message for an
    /// operator; null before any. No personal data.
    pub last_send_error: Option<String>,
    /// The provider's error code of the latest failed attempt; null when no attempt failed or
    /// the failure had no code.
    pub last_error_code: Option<i64>,
    /// When the next attempt is due, or while `SENDING` the sender's next try (RFC 3339); null
    /// when none is scheduled, once sent and once given up.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why it was given up: `NOT_RETRYABLE` (the last failure cannot be cured by retrying: its
    /// code is `lastErrorCode`) or `MAX_ATTEMPTS` (5 attempts failed); null unless `GAVE_UP`.
    pub give_up_reason: Option<GiveUpReason>,
}

/// Why a follow-up was given up.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum GiveUpReason {
    /// The last failure cannot be cured by retrying (WhatsApp refused the message for good).
    NotRetryable,
    /// Every allowed attempt (5) failed.
    MaxAttempts,
}

/// A call that ended (whatever its outcome), as the telephony provider reported it.
#[derive(SimpleObject)]
pub struct Call {
    /// The call's id: `call_` and 32 hex digits, derived from the provider and its call id.
    pub id: String,
    /// The telephony provider that reported the call, e.g. `twilio`.
    pub provider: String,
    /// The provider's call id (Twilio's `CallSid`).
    pub provider_call_id: String,
    /// Who placed the call.
    pub direction: CallDirection,
    /// The contact on the other end (`ct_…`); null when that party's address is not a phone
    /// number (an anonymous caller, a SIP or client address).
    pub contact_id: Option<String>,
    /// Absent after the contact was erased.
    pub from: Option<String>,
    /// The called number or address as the provider reported it (E.164 for a phone number);
    /// absent after the contact was erased.
    pub to: Option<String>,
    /// Talk time in seconds; 0 for a call never answered.
    pub duration_seconds: i32,
    /// How the call ended.
    pub outcome: CallOutcome,
    /// When the call ended: the provider's timestamp, or the time the report was received when
    /// the provider sent none (RFC 3339).
    pub ended_at: DateTime<Utc>,
    /// The call's WhatsApp follow-up (status `NOT_SCHEDULED` when there is none).
    pub follow_up: CallFollowUp,
}

impl Call {
    /// The call as shown, from its row. (Not `From`: the `from` field's resolver would shadow
    /// `From::from`.)
    fn from_row(row: CallRow) -> Self {
        Self {
            id: row.call_id,
            provider: row.provider,
            provider_call_id: row.provider_call_id,
            direction: if row.direction == "outbound" {
                CallDirection::Outbound
            } else {
                CallDirection::Inbound
            },
            contact_id: row.contact_id,
            from: row.from_number,
            to: row.to_number,
            duration_seconds: row.duration_s,
            outcome: CallOutcome::parse(&row.outcome),
            ended_at: row.ended_at,
            follow_up: CallFollowUp {
                status: match row.follow_up_status.as_str() {
                    "pending" => FollowUpStatus::Pending,
                    "sending" => FollowUpStatus::Sending,
                    "awaiting_operator" => FollowUpStatus::AwaitingOperator,
                    "sent" => FollowUpStatus::Sent,
                    "gave_up" => FollowUpStatus::GaveUp,
                    _ => FollowUpStatus::NotScheduled,
                },
                template_name: row.follow_up_template,
                language: row.follow_up_language,
                rule_version: row.follow_up_rule_version,
                due_at: row.follow_up_due_at,
                attempts: row.follow_up_attempts,
                send_tries: row.follow_up_send_tries,
                last_send_error: row.follow_up_last_send_error,
                last_error_code: row.follow_up_last_error,
                next_attempt_at: row.follow_up_next_at,
                give_up_reason: match row.follow_up_give_up_reason.as_deref() {
                    Some("not_retryable") => Some(GiveUpReason::NotRetryable),
                    Some("max_attempts") => Some(GiveUpReason::MaxAttempts),
                    _ => None,
                },
            },
        }
    }
}

/// The tenant's call follow-up rule.
#[derive(SimpleObject)]
pub struct CallFollowUpRule {
    /// The rule's revision; follow-ups record the version that scheduled them.
    pub version: i32,
    /// Whether the rule schedules follow-ups; a disabled rule keeps its settings.
    pub enabled: bool,
    /// Minutes between a call's end and its follow-up's first attempt (1 to 10080).
    pub delay_minutes: i32,
    /// The call outcomes that get a follow-up, each once, in the order COMPLETED, NO_ANSWER,
    /// BUSY, FAILED, CANCELED, VOICEMAIL.
    pub outcomes: Vec<CallOutcome>,
    /// The WhatsApp template sent as the follow-up (without body parameters).
    pub template_name: String,
    /// The template's language code, e.g. `en_US`.
    pub language: String,
}

/// The rule to set.
#[derive(InputObject)]
pub struct CallFollowUpRuleInput {
    /// Whether the rule schedules follow-ups (default true).
    #[graphql(default = true)]
    pub enabled: bool,
    /// 1 to 10080 (7 days).
    pub delay_minutes: i32,
    /// At least one.
    pub outcomes: Vec<CallOutcome>,
    /// An approved template's name: 1 to 512 of `a-z`, `0-9` and `_` (approval is not checked
    /// here; an unapproved template makes each follow-up fail).
    pub template_name: String,
    /// e.g. `en_US`: 2 or 3 lower-case letters, optionally `_` and a 2-letter upper-case region.
    pub language: String,
}

#[derive(Default)]
pub struct CallsQuery;

#[Object]
impl CallsQuery {
    /// The caller's tenant's calls, latest first (owner, admin, agent, auditor; anyone else gets
    /// `FORBIDDEN`).
    async fn calls(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which calls to list; null lists all.")] filter: Option<CallFilter>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(
            desc = "The cursor of the last call of the previous page (`pageInfo.endCursor`); null for the first page. A malformed cursor is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Call>> {
        let caller = allowed(ctx, Permission::ReadContacts, "read calls").gql()?;
        let first = page_size(first, 100).gql()?;
        let filter = filter.unwrap_or_default();
        let filter = ReadFilter {
            outcome: filter.outcome.map(|o| o.domain().as_str().to_string()),
            direction: filter.direction.map(|d| d.as_str().to_string()),
            from: filter.from,
            to: filter.to,
        };
        let page = list(pool(ctx).gql()?, &caller.tenant, &filter, first, after.as_deref()).await;
        connection(after.is_some(), page, Call::from_row)
    }

    /// The tenant's call follow-up rule, enabled or not; null until one was set (read from the
    /// log: it is one short stream). Owner, admin, agent, auditor; anyone else gets `FORBIDDEN`.
    async fn call_follow_up_rule(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<CallFollowUpRule>> {
        let caller = allowed(ctx, Permission::ReadContacts, "read automation rules").gql()?;
        let rules = automation_rules(pool(ctx).gql()?, &caller.tenant).await.gql()?;
        Ok(rules.call_follow_up_rule().map(|rule| CallFollowUpRule {
            version: i32::try_from(rules.version()).unwrap_or(i32::MAX),
            enabled: rule.enabled,
            delay_minutes: i32::try_from(rule.delay_minutes).unwrap_or(i32::MAX),
            outcomes: rule.outcomes.iter().copied().map(CallOutcome::from_domain).collect(),
            template_name: rule.template_name.clone(),
            language: rule.language.clone(),
        }))
    }
}

#[derive(Default)]
pub struct CallsMutation;

#[Object]
impl CallsMutation {
    /// Sets the tenant's call follow-up rule (owner, admin; anyone else gets `FORBIDDEN`) as a
    /// new rule version; setting the rule in force again changes nothing. Refused with
    /// `INVALID_DELAY`, `NO_OUTCOMES`, `INVALID_TEMPLATE_NAME` or `INVALID_LANGUAGE`; an enabled
    /// rule's template must be one the tenant has (`UNKNOWN_TEMPLATE`), approved
    /// (`TEMPLATE_NOT_APPROVED`) and without variables, since follow-ups send it without
    /// parameters (`WRONG_PARAMETER_COUNT`). Returns a receipt for the tenant's `automation` rules.
    async fn set_call_follow_up_rule(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The whole rule; it replaces the current one.")] rule: CallFollowUpRuleInput,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageMessagingSettings, "set automation rules").gql()?;
            // A negative delay is refused by the rule's own code, with the delay it was given.
            let delay_minutes = u32::try_from(rule.delay_minutes).map_err(|_| {
                crate::error::ApiError::Command(chronicle_commands::error::CommandError::Rejected(
                    chronicle_domain::call::AutomationRulesError::InvalidDelay {
                        delay_minutes: i64::from(rule.delay_minutes),
                    }
                    .into(),
                ))
            });
            let command = AutomationRulesCommand::SetCallFollowUpRule {
                enabled: rule.enabled,
                delay_minutes: delay_minutes.gql()?,
                outcomes: rule
                    .outcomes
                    .into_iter()
                    .map(CallOutcome::domain)
                    .collect::<BTreeSet<_>>(),
                template_name: rule.template_name,
                language: rule.language,
                at: Utc::now(),
            };
            chronicle_commands::calls::set_automation(commands(ctx).gql()?, command, &metadata(ctx, caller))
                .await
                .gql()?;
            Ok(Receipt::new("automation"))
        })
        .await
    }

    /// Disables the call follow-up rule, keeping its settings (owner, admin; anyone else gets
    /// `FORBIDDEN`). Without an enabled rule nothing changes. Returns a receipt for the tenant's `automation` rules.
    async fn disable_call_follow_up_rule(&self, ctx: &Context<'_>) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageMessagingSettings, "set automation rules").gql()?;
            commands(ctx)
                .gql()?
                .automation(
                    AutomationRulesCommand::DisableCallFollowUpRule { at: Utc::now() },
                    &metadata(ctx, caller),
                )
                .await
                .gql()?;
            Ok(Receipt::new("automation"))
        })
        .await
    }
}
