//! Calls on the write side: recording what the telephony webhook reports, and the follow-up
//! process manager.
//!
//! # Recording ([`CallIntake::record`])
//!
//! A verified, parsed Twilio status callback ([`crate::intake::telephony`]), stored in the
//! webhook inbox and taken from it by the inbox worker, that says the call ended becomes `RecordCompletedCall` on the call's stream (`call_stream_local_id`). The party
//! that is not the tenant (the caller of an inbound call, the callee of an outbound one) is the
//! contact: when it is an E.164 number, the contact id is made from it and the contact is
//! registered (source `call`; a repeat changes nothing), and both numbers are sealed under the
//! contact's data key. Other addresses (anonymous, `client:`, `sip:`) get no contact and are
//! sealed under a key of the call's own. The Call aggregate keeps the first report of a call id
//! and ignores repeats, so a callback delivered twice is recorded once. Reports of calls still
//! in progress change nothing.
//!
//! # Follow-ups ([`FollowUpWorker`])
//!
//! `CallCompleted` events with a contact land in the `call_follow_up_feed` (projector
//! `chronicle_projections::calls::CallFollowUpsProjector`), which the worker copies into its own
//! `call_follow_ups` ([`Admission`]). The worker claims new rows, loads
//! the tenant's `AutomationRules` from the log, asks [`AutomationRules::follow_up_for`] and sends
//! `ScheduleFollowUp` to the call when a rule applies (the Call aggregate checks that it is
//! completed, has a contact and has no follow-up yet). When the follow-up is due, the worker
//! queues the template on the contact's conversation through [`crate::outbound::queue`]
//! (`QueueOutboundMessage`, idempotency key `call-follow-up:<call id>:<attempt>`); the outbound
//! sender sends it; the projector feeds the conversation's `OutboundMessageSent` / `Failed`
//! for that key (`call_follow_up_outcome_feed`), the worker copies it into the row and records it on the call
//! (`RecordFollowUpAttempt`). A retryable failure is tried again after
//! [`follow_up_backoff`], up to [`MAX_FOLLOW_UP_ATTEMPTS`]; the Call aggregate gives up after
//! the last or a failure that cannot be retried. A conversation that refuses the template (the
//! contact never wrote on WhatsApp, or opted out) is a failure that cannot be retried.
//! Templates are sent without body parameters.
//! Follow-up sends are metered like a user's (`crate::metering`, feature `message`): a tenant
//! whose main wallet cannot pay records the attempt as failed, not retryable.

use chronicle_domain::call::automation::AUTOMATION_STREAM_LOCAL_ID;
use chronicle_domain::call::{
    call_stream_local_id, follow_up_backoff, AttemptOutcome, AutomationRules, AutomationRulesCommand,
    AutomationRulesEvent, CallCommand, CallError, CallOutcome, CompletedCall, MAX_FOLLOW_UP_ATTEMPTS,
};
use chronicle_domain::contact::ContactSource;
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::phone::PhoneNumber;
use chronicle_domain::tenant::TenantId;
use chronicle_domain::wallet::WalletError;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use rand::rngs::OsRng;
use sqlx::PgPool;
use tracing::Instrument;

use crate::contacts::{ContactService, Handle};
use crate::dispatch::Commands;
use crate::error::{CommandError, DomainError};
use crate::intake::telephony::{CallStatusReport, PROVIDER};
use crate::keystore::KeyStore;
use crate::outbound::{require_sendable_template, send_metered, Outgoing};
use crate::workers::{Admission, LeaseClaim};

/// What recording a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The call ended: `RecordCompletedCall` ran (a repeat appends nothing).
    Completed {
        call_id: String,
        contact_id: Option<String>,
    },
    /// The call has not ended yet: nothing to record.
    InProgress,
}

/// Records telephony reports as commands.
#[derive(Clone, Debug)]
pub struct CallIntake {
    commands: Commands,
    contacts: ContactService,
}

impl CallIntake {
    /// An intake appending through `commands`, registering and sealing through `contacts`.
    pub fn new(commands: Commands, contacts: ContactService) -> Self {
        Self { commands, contacts }
    }

    /// Records one report for `tenant` (see the module docs).
    pub async fn record(
        &self,
        report: &CallStatusReport,
        received_at: DateTime<Utc>,
        metadata: &CommandMetadata,
    ) -> Result<Recorded, CommandError> {
        let Some(outcome) = report.outcome() else {
            return Ok(Recorded::InProgress);
        };
        let tenant = &metadata.tenant_id;
        let direction = report.direction.direction();
        let ended_at = report.timestamp.unwrap_or(received_at);
        let call_id = call_stream_local_id(PROVIDER, &report.call_sid);
        let party = match direction {
            chronicle_domain::call::CallDirection::Inbound => &report.from,
            chronicle_domain::call::CallDirection::Outbound => &report.to,
        };
        let contact_id = match PhoneNumber::parse(party) {
            Ok(phone) => Some(
                self.contacts
                    .register(&Handle::Phone(phone), None, ContactSource::Call, ended_at, metadata)
                    .await?,
            ),
            Err(_) => None,
        };
        let key_id = contact_id.clone().unwrap_or_else(|| call_id.clone());
        let key = self.contacts.keys().key_for(tenant, &key_id).await?;
        let seal = |plain: &str| key.seal(tenant, &key_id, plain, &mut OsRng);
        let command = CallCommand::RecordCompletedCall(CompletedCall {
            provider: PROVIDER.to_string(),
            provider_call_id: report.call_sid.clone(),
            direction,
            contact_id: contact_id.clone(),
            from: seal(&report.from),
            to: seal(&report.to),
            duration_s: report.duration_s.unwrap_or(0),
            outcome,
            agent_user_id: None,
            ended_at,
        });
        self.commands.call(&call_id, command, metadata).await?;
        Ok(Recorded::Completed { call_id, contact_id })
    }
}

/// Sets (or disables) the tenant's call follow-up rule. The rule's own refusals come first
/// (`INVALID_DELAY`, `NO_OUTCOMES`, …: the command is decided on the present rules without
/// recording anything); then an enabled rule's template is checked as the follow-ups will send
/// it, without body parameters: `UNKNOWN_TEMPLATE`, `TEMPLATE_NOT_APPROVED` or
/// `WRONG_PARAMETER_COUNT` (it has variables), before anything is recorded rather than on every
/// call it would follow up.
pub async fn set_automation(
    commands: &Commands,
    command: AutomationRulesCommand,
    metadata: &CommandMetadata,
) -> Result<crate::dispatch::Appended, CommandError> {
    if let AutomationRulesCommand::SetCallFollowUpRule {
        enabled: true,
        template_name,
        language,
        ..
    } = &command
    {
        let mut present = automation_rules(commands.pool(), &metadata.tenant_id).await?;
        let sink = cqrs_es::event_sink::EventSink::default();
        present
            .handle(command.clone(), &(), &sink)
            .await
            .map_err(|e| CommandError::Rejected(DomainError::AutomationRules(e)))?;
        // Setting the rule in force again records nothing and needs no check.
        if !sink.collect().await.is_empty() {
            require_sendable_template(commands, &metadata.tenant_id, template_name, language, &[]).await?;
        }
    }
    commands.automation(command, metadata).await
}

/// Loads a tenant's automation rules from the log (a short stream: one event per change).
pub async fn automation_rules(pool: &PgPool, tenant: &TenantId) -> Result<AutomationRules, CommandError> {
    let rows: Vec<(String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT event_type, event_version, payload::jsonb FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
    )
    .bind(AutomationRules::TYPE)
    .bind(tenant.stream_id(AUTOMATION_STREAM_LOCAL_ID))
    .fetch_all(pool)
    .await?;
    let mut rules = AutomationRules::default();
    for (event_type, version, mut payload) in rows {
        chronicle_domain::upcast::upcast(&event_type, &version, &mut payload);
        let event: AutomationRulesEvent =
            serde_json::from_value(payload).map_err(|e| CommandError::Unexpected(Box::new(e)))?;
        rules.apply(event);
    }
    Ok(rules)
}

/// What one pass of the follow-up worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowUpPass {
    /// Calls whose follow-up was scheduled.
    pub scheduled: usize,
    /// Calls no rule applies to.
    pub no_rule: usize,
    /// Follow-up templates queued on a conversation (one per attempt).
    pub queued: usize,
    /// Attempt outcomes recorded on calls.
    pub recorded: usize,
    /// Rows refused by an aggregate (kept with the reason).
    pub refused: usize,
    /// Rows left for a later pass after a transient failure.
    pub retry: usize,
}

impl FollowUpPass {
    /// Rows worked in the pass.
    pub fn worked(&self) -> usize {
        self.scheduled + self.no_rule + self.queued + self.recorded + self.refused + self.retry
    }

    fn add(&mut self, other: FollowUpPass) {
        self.scheduled += other.scheduled;
        self.no_rule += other.no_rule;
        self.queued += other.queued;
        self.recorded += other.recorded;
        self.refused += other.refused;
        self.retry += other.retry;
    }
}

/// The call follow-up process manager's worker (see the module docs).
#[derive(Clone, Debug)]
pub struct FollowUpWorker {
    pool: PgPool,
    commands: Commands,
    keys: KeyStore,
    /// Completed calls, then the outcomes of follow-up messages, from the projector's feeds.
    admissions: [Admission; 2],
}

/// A claimed row of `call_follow_ups`.
#[derive(Clone, sqlx::FromRow)]
struct WorkRow {
    #[sqlx(rename = "tenant_id")]
    tenant: String,
    call_id: String,
    contact_id: String,
    outcome: String,
    ended_at: DateTime<Utc>,
    template_name: Option<String>,
    language: Option<String>,
    attempt: i32,
    send_state: String,
    #[sqlx(rename = "send_message_ref")]
    message_ref: Option<String>,
    #[sqlx(rename = "send_error_code")]
    error_code: Option<i64>,
    #[sqlx(rename = "send_retryable")]
    retryable: Option<bool>,
    send_at: Option<DateTime<Utc>>,
    event_position: i64,
}

/// Which rows a step claims.
#[derive(Clone, Copy)]
enum Step {
    /// New rows: ask the rules.
    Decide,
    /// Scheduled, due, nothing in flight: queue the template.
    Send,
    /// An outcome arrived: record it on the call.
    Record,
}

impl Step {
    fn condition(self) -> &'static str {
        match self {
            Self::Decide => "state = 'new'",
            Self::Send => "state = 'scheduled' AND send_state = 'idle' AND due_at <= now()",
            Self::Record => "state = 'scheduled' AND send_state IN ('sent', 'failed')",
        }
    }
}

type Outcome = Result<(), CommandError>;

impl FollowUpWorker {
    /// A worker over `commands`' pool, sealing template parameters with `keys`.
    pub fn new(commands: Commands, keys: KeyStore) -> Self {
        Self {
            pool: commands.pool().clone(),
            commands,
            keys,
            admissions: [
                Admission::new(
                    "call_follow_up_feed",
                    "INSERT INTO call_follow_ups (tenant_id, call_id, contact_id, outcome, ended_at, event_position)
                     SELECT tenant_id, call_id, contact_id, outcome, ended_at, position FROM new ORDER BY position
                     ON CONFLICT (tenant_id, call_id) DO NOTHING",
                ),
                // An outcome counts only for the row waiting for it (a row is marked queued
                // before its message is queued, so the outcome always finds it waiting).
                Admission::new(
                    "call_follow_up_outcome_feed",
                    "UPDATE call_follow_ups w
                        SET send_state = n.send_state, send_message_ref = n.send_message_ref,
                            send_error_code = n.send_error_code, send_retryable = n.send_retryable,
                            send_at = n.send_at, not_before = now()
                       FROM new n
                      WHERE w.tenant_id = n.tenant_id AND w.message_key = n.message_key AND w.send_state = 'queued'",
                ),
            ],
        }
    }

    /// Works every ready row until none is left; returns the totals.
    pub async fn drain(&self) -> Result<FollowUpPass, CommandError> {
        let mut total = FollowUpPass::default();
        loop {
            let pass = self.run_once(100).await?;
            total.add(pass);
            if pass.worked() == pass.retry {
                return Ok(total);
            }
        }
    }

    /// One pass: copies what the feeds gained, then decides new rows, queues due follow-ups, records outcomes (up to `limit` rows
    /// each).
    pub async fn run_once(&self, limit: i64) -> Result<FollowUpPass, CommandError> {
        for admission in &self.admissions {
            admission.run(&self.pool).await?;
        }
        let mut pass = FollowUpPass::default();
        for step in [Step::Decide, Step::Send, Step::Record] {
            for row in self.claim(step, limit).await? {
                let span = tracing::info_span!("call.follow_up", tenant.id = %row.tenant, call.id = %row.call_id, correlation.id = %format!("call-follow-up:{}", row.call_id));
                let result = match step {
                    Step::Decide => self.decide(&row, &mut pass).instrument(span).await,
                    Step::Send => self.send(&row, &mut pass).instrument(span).await,
                    Step::Record => self.record(&row, &mut pass).instrument(span).await,
                };
                match result {
                    Ok(()) => {}
                    Err(e @ CommandError::Rejected(_)) | Err(e @ CommandError::InvalidInput(_)) => {
                        tracing::warn!(tenant.id = %row.tenant, call.id = %row.call_id, reason = %e, "call follow-up refused");
                        pass.refused += 1;
                        self.update(
                            &row,
                            "state = 'refused', last_error = $3, decided_at = now()",
                            Some(e.to_string()),
                        )
                        .await?;
                    }
                    Err(e) => {
                        tracing::warn!(tenant.id = %row.tenant, call.id = %row.call_id, reason = %e, "call follow-up will be retried");
                        pass.retry += 1;
                        // The lease (a minute) spaces the retry; the step is idempotent.
                        self.update(&row, "last_error = $3", Some(e.to_string())).await?;
                    }
                }
            }
        }
        Ok(pass)
    }

    async fn claim(&self, step: Step, limit: i64) -> Result<Vec<WorkRow>, CommandError> {
        let mut rows: Vec<WorkRow> = LeaseClaim::new(
            "call_follow_ups",
            "tenant_id, call_id",
            step.condition(),
            "event_position",
            "tenant_id, call_id, contact_id, outcome, ended_at, template_name, language, attempt, send_state, \
             send_message_ref, send_error_code, send_retryable, send_at, event_position",
        )
        .fetch(&self.pool, limit)
        .await?;
        rows.sort_by_key(|r| r.event_position);
        Ok(rows)
    }

    /// Sets `assignments` on the row (`$3`: an optional text) and releases its lease.
    async fn update(&self, row: &WorkRow, assignments: &str, text: Option<String>) -> Result<(), CommandError> {
        sqlx::query(&format!(
            "UPDATE call_follow_ups SET {assignments}, not_before = now() WHERE tenant_id = $1 AND call_id = $2"
        ))
        .bind(&row.tenant)
        .bind(&row.call_id)
        .bind(text)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn metadata(row: &WorkRow) -> Result<CommandMetadata, CommandError> {
        Ok(CommandMetadata {
            tenant_id: TenantId::parse(&row.tenant).map_err(|e| CommandError::InvalidInput(e.to_string()))?,
            actor: Actor::System {
                component: "call-follow-up".into(),
            },
            correlation_id: format!("call-follow-up:{}", row.call_id),
            causation_id: format!("event:{}", row.event_position),
        })
    }

    /// Asks the tenant's rules; schedules the follow-up when one applies.
    async fn decide(&self, row: &WorkRow, pass: &mut FollowUpPass) -> Outcome {
        let metadata = Self::metadata(row)?;
        let outcome = CallOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == row.outcome)
            .ok_or_else(|| CommandError::InvalidInput(format!("unknown call outcome {:?}", row.outcome)))?;
        let rules = automation_rules(&self.pool, &metadata.tenant_id).await?;
        let Some(plan) = rules.follow_up_for(outcome, row.ended_at) else {
            pass.no_rule += 1;
            return self
                .update(row, "state = 'no_rule', decided_at = now(), last_error = $3", None)
                .await;
        };
        let (template, language, due_at) = (plan.template_name.clone(), plan.language.clone(), plan.due_at);
        let scheduled = self
            .commands
            .call(&row.call_id, CallCommand::ScheduleFollowUp(plan), &metadata)
            .await;
        match scheduled {
            // Decided before (a replay, or under an older rule version): the call keeps its
            // first follow-up, which this row may not know: nothing more to do here.
            Err(CommandError::Rejected(DomainError::Call(CallError::FollowUpAlreadyScheduled { .. }))) => {
                pass.scheduled += 1;
                self.update(row, "state = 'done', decided_at = now(), last_error = $3", None)
                    .await
            }
            Err(e) => Err(e),
            Ok(_) => {
                pass.scheduled += 1;
                sqlx::query(
                    "UPDATE call_follow_ups SET state = 'scheduled', template_name = $3, language = $4, due_at = $5,
                            decided_at = now(), last_error = NULL, not_before = now()
                      WHERE tenant_id = $1 AND call_id = $2",
                )
                .bind(&row.tenant)
                .bind(&row.call_id)
                .bind(template)
                .bind(language)
                .bind(due_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    }

    /// Queues the template for the next attempt on the contact's conversation (the outbound
    /// sender sends it). A refusal by the conversation (no conversation yet, the contact opted
    /// out) is recorded on the call as a failed attempt that cannot be retried.
    async fn send(&self, row: &WorkRow, pass: &mut FollowUpPass) -> Outcome {
        let metadata = Self::metadata(row)?;
        let attempt = row.attempt.saturating_add(1);
        let key = format!("call-follow-up:{}:{attempt}", row.call_id);
        // Marked before queueing: the outcome can only be matched to a row that names its key.
        sqlx::query(
            "UPDATE call_follow_ups SET attempt = $3, send_state = 'queued', message_key = $4
              WHERE tenant_id = $1 AND call_id = $2",
        )
        .bind(&row.tenant)
        .bind(&row.call_id)
        .bind(attempt)
        .bind(&key)
        .execute(&self.pool)
        .await?;
        let outgoing = Outgoing::Template {
            name: row.template_name.clone().unwrap_or_default(),
            language: row.language.clone().unwrap_or_default(),
            parameters: Vec::new(),
            header: None,
        };
        // Metered like a user's send (the one metered send of `outbound`): paid before it is
        // queued, refunded if the conversation refuses it; a wallet that cannot pay fails the
        // attempt for good.
        let queued = send_metered(&self.commands, &self.keys, &row.contact_id, &key, outgoing, &metadata).await;
        match queued {
            Ok(_) => {
                pass.queued += 1;
                self.update(row, "last_error = $3", None).await
            }
            Err(
                e @ CommandError::Rejected(
                    DomainError::Conversation(_) | DomainError::Wallet(WalletError::InsufficientBalance { .. }),
                ),
            ) => {
                tracing::info!(reason = %e, "the follow-up cannot be sent on WhatsApp; recorded as failed");
                let failure = WorkRow {
                    attempt,
                    send_state: "failed".into(),
                    retryable: Some(false),
                    error_code: None,
                    send_at: Some(Utc::now()),
                    ..row.clone()
                };
                self.update(row, "last_error = $3", Some(e.to_string())).await?;
                self.record(&failure, pass).await
            }
            Err(e) => {
                // Put the attempt back: the same key is queued again next time.
                sqlx::query(
                    "UPDATE call_follow_ups SET attempt = $3, send_state = 'idle' WHERE tenant_id = $1 AND call_id = $2",
                )
                .bind(&row.tenant)
                .bind(&row.call_id)
                .bind(row.attempt)
                .execute(&self.pool)
                .await?;
                Err(e)
            }
        }
    }

    /// Records an attempt's outcome on the call, then waits for the retry or finishes.
    async fn record(&self, row: &WorkRow, pass: &mut FollowUpPass) -> Outcome {
        let metadata = Self::metadata(row)?;
        let attempt = u32::try_from(row.attempt).unwrap_or(0);
        let at = row.send_at.unwrap_or_else(Utc::now);
        let outcome = if row.send_state == "sent" {
            AttemptOutcome::Sent {
                provider_message_ref: row.message_ref.clone().unwrap_or_default(),
            }
        } else {
            AttemptOutcome::Failed {
                error_code: row.error_code,
                retryable: row.retryable.unwrap_or(false),
                next_attempt_at: None,
            }
        };
        self.commands
            .call(
                &row.call_id,
                CallCommand::RecordFollowUpAttempt { attempt, outcome, at },
                &metadata,
            )
            .await?;
        pass.recorded += 1;
        let retry = row.send_state != "sent" && row.retryable == Some(true) && attempt < MAX_FOLLOW_UP_ATTEMPTS;
        if retry {
            // The Call aggregate derives the same time (`follow_up_backoff`) in `FollowUpFailed`.
            sqlx::query(
                "UPDATE call_follow_ups SET send_state = 'idle', due_at = $3, not_before = now()
                  WHERE tenant_id = $1 AND call_id = $2",
            )
            .bind(&row.tenant)
            .bind(&row.call_id)
            .bind(at + follow_up_backoff(attempt))
            .execute(&self.pool)
            .await?;
            Ok(())
        } else {
            self.update(row, "state = 'done', last_error = coalesce($3, last_error)", None)
                .await
        }
    }
}
