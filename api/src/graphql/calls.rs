//! Calls: the `calls` connection (filtered by outcome, direction and period, with each call's
//! follow-up status), the tenant's `callFollowUpRule`, and the mutations that set or disable
//! it. Reads: owner, admin, agent, auditor; the rule: owner and admin.

use std::collections::BTreeSet;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chronicle_commands::calls::automation_rules;
use chronicle_domain::call::{AutomationRulesCommand, CallOutcome as DomainOutcome};
use chronicle_projections::calls::{list, CallFilter as ReadFilter, CallRow};
use chrono::{DateTime, Utc};

use super::contacts::commands;
use super::{caller, metadata, pool, require};
use crate::error::{ApiError, IntoGraphql};

/// How a call ended.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CallOutcome {
    Completed,
    NoAnswer,
    Busy,
    Failed,
    Canceled,
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
    Inbound,
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
    NotScheduled,
    Pending,
    Sent,
    GaveUp,
}

/// Filters of `calls`.
#[derive(InputObject, Default)]
pub struct CallFilter {
    pub outcome: Option<CallOutcome>,
    pub direction: Option<CallDirection>,
    /// Calls that ended at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Calls that ended before this time.
    pub to: Option<DateTime<Utc>>,
}

/// A call's WhatsApp follow-up.
#[derive(SimpleObject)]
pub struct CallFollowUp {
    pub status: FollowUpStatus,
    pub template_name: Option<String>,
    pub language: Option<String>,
    pub rule_version: Option<i32>,
    pub due_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub last_error_code: Option<i64>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A completed call.
#[derive(SimpleObject)]
pub struct Call {
    pub id: String,
    pub provider: String,
    pub provider_call_id: String,
    pub direction: CallDirection,
    pub contact_id: Option<String>,
    /// Absent after the contact was erased.
    pub from: Option<String>,
    pub to: Option<String>,
    pub duration_seconds: i32,
    pub outcome: CallOutcome,
    pub ended_at: DateTime<Utc>,
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
                    "sent" => FollowUpStatus::Sent,
                    "gave_up" => FollowUpStatus::GaveUp,
                    _ => FollowUpStatus::NotScheduled,
                },
                template_name: row.follow_up_template,
                language: row.follow_up_language,
                rule_version: row.follow_up_rule_version,
                due_at: row.follow_up_due_at,
                attempts: row.follow_up_attempts,
                last_error_code: row.follow_up_last_error,
                next_attempt_at: row.follow_up_next_at,
            },
        }
    }
}

/// The tenant's call follow-up rule.
#[derive(SimpleObject)]
pub struct CallFollowUpRule {
    /// The rule's revision; follow-ups record the version that scheduled them.
    pub version: i32,
    pub enabled: bool,
    pub delay_minutes: i32,
    pub outcomes: Vec<CallOutcome>,
    pub template_name: String,
    pub language: String,
}

/// The rule to set.
#[derive(InputObject)]
pub struct CallFollowUpRuleInput {
    #[graphql(default = true)]
    pub enabled: bool,
    /// 1 to 10080 (7 days).
    pub delay_minutes: i32,
    /// At least one.
    pub outcomes: Vec<CallOutcome>,
    /// An approved template's name.
    pub template_name: String,
    /// e.g. `en_US`.
    pub language: String,
}

#[derive(Default)]
pub struct CallsQuery;

#[Object]
impl CallsQuery {
    /// The caller's tenant's calls, latest first.
    async fn calls(
        &self,
        ctx: &Context<'_>,
        filter: Option<CallFilter>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Call>> {
        let caller = caller(ctx).gql()?;
        require(caller.role.reads_contacts(), caller, "read calls").gql()?;
        let filter = filter.unwrap_or_default();
        let filter = ReadFilter {
            outcome: filter.outcome.map(|o| o.domain().as_str().to_string()),
            direction: filter.direction.map(|d| d.as_str().to_string()),
            from: filter.from,
            to: filter.to,
        };
        let page = list(
            pool(ctx).gql()?,
            &caller.tenant,
            &filter,
            i64::from(first),
            after.as_deref(),
        )
        .await
        .map_err(ApiError::from)
        .gql()?
        .map_err(|e| ApiError::bad_request("BAD_CURSOR", e.to_string()))
        .gql()?;
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        connection.edges.extend(
            page.rows
                .into_iter()
                .map(|(cursor, row)| Edge::new(cursor, Call::from_row(row))),
        );
        Ok(connection)
    }

    /// The tenant's call follow-up rule, once set (read from the log: it is one short stream).
    async fn call_follow_up_rule(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<CallFollowUpRule>> {
        let caller = caller(ctx).gql()?;
        require(caller.role.reads_contacts(), caller, "read automation rules").gql()?;
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
    /// Sets the tenant's call follow-up rule (owner, admin). Returns true.
    async fn set_call_follow_up_rule(
        &self,
        ctx: &Context<'_>,
        rule: CallFollowUpRuleInput,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(caller.role.manages_messaging_settings(), caller, "set automation rules").gql()?;
        let command = AutomationRulesCommand::SetCallFollowUpRule {
            enabled: rule.enabled,
            // A negative delay is as invalid as a zero one: the aggregate names the rule.
            delay_minutes: u32::try_from(rule.delay_minutes).unwrap_or(0),
            outcomes: rule
                .outcomes
                .into_iter()
                .map(CallOutcome::domain)
                .collect::<BTreeSet<_>>(),
            template_name: rule.template_name,
            language: rule.language,
            at: Utc::now(),
        };
        commands(ctx)
            .gql()?
            .automation(command, &metadata(ctx, caller))
            .await
            .gql()?;
        Ok(true)
    }

    /// Disables the call follow-up rule, keeping its settings (owner, admin). Returns true.
    async fn disable_call_follow_up_rule(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let caller = caller(ctx).gql()?;
        require(caller.role.manages_messaging_settings(), caller, "set automation rules").gql()?;
        commands(ctx)
            .gql()?
            .automation(
                AutomationRulesCommand::DisableCallFollowUpRule { at: Utc::now() },
                &metadata(ctx, caller),
            )
            .await
            .gql()?;
        Ok(true)
    }
}
