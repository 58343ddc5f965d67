//! Calls: the `calls` read model (one row per completed call with its follow-up status,
//! written by [`CallsProjector`], read by [`list`]) and the feed of the follow-up process
//! manager (`call_follow_up_feed`, `call_follow_up_outcome_feed`, written by
//! [`CallFollowUpsProjector`], copied into its own `call_follow_ups` and worked by
//! `chronicle_commands::calls::FollowUpWorker`).
//!
//! A call's numbers are sealed under the data key of the call's contact, or, for a number that
//! is not a phone number (an anonymous caller, a SIP address), under a key of the call's own
//! (key id = the call's stream id); erasing the contact makes them unreadable.

use chronicle_domain::call::CallEvent;
use chronicle_domain::conversation::ConversationEvent;
use chronicle_domain::pii::MasterKey;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool, Row};

use crate::contacts::{all_tenants, data_key, local_id, tenant_of, KeyCache};
use crate::log::StoredEvent;
use crate::messages::send_error;
use crate::page::{read_cursor, time_cursor, BadCursor, Page};
use crate::runtime::{Fold, ProjectionError, Projector};
use crate::shared::{begin_for_tenant, clear_person, erased_contact, payload, with_erasure};

/// The `calls` projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "calls";

/// The follow-up work list projector's name. Never renamed.
pub const FOLLOW_UPS_NAME: &str = "call_follow_ups";

fn parse(event: &StoredEvent) -> Result<CallEvent, ProjectionError> {
    payload(event)
}

/// Folds `Call` events into `calls`.
pub struct CallsProjector {
    master: MasterKey,
}

impl CallsProjector {
    /// A projector opening the numbers with data keys unwrapped by `master`.
    pub fn new(master: MasterKey) -> Self {
        Self { master }
    }

    async fn apply_one(
        &self,
        db: &mut PgConnection,
        keys: &mut KeyCache,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let tenant = tenant_of(event)?;
        let call_id = local_id(event);
        let position = event.global_position;
        match parse(event)? {
            CallEvent::CallCompleted {
                provider,
                provider_call_id,
                direction,
                contact_id,
                from,
                to,
                duration_s,
                outcome,
                agent_user_id,
                ended_at,
            } => {
                let key_id = contact_id.clone().unwrap_or_else(|| call_id.clone());
                let key = data_key(db, &self.master, keys, &tenant, &key_id).await?;
                let open = |e| key.as_ref().and_then(|k| k.open(&tenant, &key_id, e).ok());
                sqlx::query(
                    "INSERT INTO calls (tenant_id, call_id, provider, provider_call_id, direction, contact_id,
                            from_number, to_number, duration_s, outcome, agent_user_id, ended_at, last_position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                     ON CONFLICT (tenant_id, call_id) DO NOTHING",
                )
                .bind(tenant.as_str())
                .bind(&call_id)
                .bind(provider)
                .bind(provider_call_id)
                .bind(direction.as_str())
                .bind(contact_id)
                .bind(open(&from))
                .bind(open(&to))
                .bind(i32::try_from(duration_s).unwrap_or(i32::MAX))
                .bind(outcome.as_str())
                .bind(agent_user_id)
                .bind(ended_at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            CallEvent::FollowUpScheduled {
                rule_version,
                template_name,
                language,
                due_at,
                ..
            } => {
                sqlx::query(
                    "UPDATE calls SET follow_up_status = 'pending', follow_up_rule_version = $3,
                            follow_up_template = $4, follow_up_language = $5, follow_up_due_at = $6,
                            follow_up_next_at = $6, last_position = $7
                      WHERE tenant_id = $1 AND call_id = $2 AND last_position < $7",
                )
                .bind(tenant.as_str())
                .bind(&call_id)
                .bind(i32::try_from(rule_version).unwrap_or(i32::MAX))
                .bind(template_name)
                .bind(language)
                .bind(due_at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            CallEvent::FollowUpSent {
                attempt,
                provider_message_ref,
                ..
            } => {
                sqlx::query(
                    "UPDATE calls SET follow_up_status = 'sent', follow_up_attempts = $3, follow_up_message_ref = $4,
                            follow_up_next_at = NULL, last_position = $5
                      WHERE tenant_id = $1 AND call_id = $2 AND last_position < $5",
                )
                .bind(tenant.as_str())
                .bind(&call_id)
                .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
                .bind(provider_message_ref)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            CallEvent::FollowUpFailed {
                attempt,
                error_code,
                next_attempt_at,
                ..
            } => {
                sqlx::query(
                    "UPDATE calls SET follow_up_attempts = $3, follow_up_last_error = $4, follow_up_next_at = $5,
                            follow_up_status = CASE WHEN follow_up_status IN ('sending', 'awaiting_operator')
                                                    THEN 'pending' ELSE follow_up_status END,
                            last_position = $6
                      WHERE tenant_id = $1 AND call_id = $2 AND last_position < $6",
                )
                .bind(tenant.as_str())
                .bind(&call_id)
                .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
                .bind(error_code)
                .bind(next_attempt_at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            CallEvent::FollowUpGaveUp { reason, .. } => {
                sqlx::query(
                    "UPDATE calls SET follow_up_status = 'gave_up', follow_up_next_at = NULL,
                            follow_up_give_up_reason = $4, last_position = $3
                      WHERE tenant_id = $1 AND call_id = $2 AND last_position < $3",
                )
                .bind(tenant.as_str())
                .bind(&call_id)
                .bind(position)
                .bind(reason.as_str())
                .execute(&mut *db)
                .await?;
            }
        }
        Ok(())
    }
}

/// The conversation events that say how a follow-up's message is being sent (those of
/// `call-follow-up:` keys are read).
const SENDING_TYPES: &[&str] = &[
    "OutboundMessageQueued",
    "OutboundSendRetried",
    "OutboundSendUncertain",
    "OutboundResendAuthorized",
];

/// The event types read: CallEvent::TYPES's, the sending of follow-up messages, and the
/// contact's erasure.
static TYPES_READ: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let mut types = with_erasure(CallEvent::TYPES);
    types.extend_from_slice(SENDING_TYPES);
    types
});

/// The call id of a follow-up message's idempotency key (`call-follow-up:<call id>:<attempt>`).
fn follow_up_call(key: &str) -> Option<&str> {
    key.strip_prefix(FOLLOW_UP_KEY_PREFIX)
        .and_then(|rest| rest.rsplit_once(':'))
        .map(|(call, _)| call)
        .filter(|call| !call.is_empty())
}

/// Shows on its call how a follow-up's message is being sent: `sending` once queued (its tries
/// and last error as the sender records them), `awaiting_operator` when the sender left it for
/// an operator, `sending` again when one sends it again. The follow-up's own events
/// (`FollowUpSent`, `FollowUpFailed`, `FollowUpGaveUp`) settle it.
async fn follow_up_sending(db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
    let body = &event.payload[event.event_type.as_str()];
    let Some(call_id) = body["idempotency_key"].as_str().and_then(follow_up_call) else {
        return Ok(());
    };
    // `$4` the tries, `$5` the error shown, `$6` the next try (the time the messages read
    // model shows, parsed the same way).
    let (set, from) = match event.event_type.as_str() {
        "OutboundMessageQueued" => (
            "follow_up_status = 'sending', follow_up_send_tries = 0, follow_up_last_send_error = NULL,
             follow_up_next_at = NULL",
            "'pending'",
        ),
        "OutboundSendRetried" => (
            "follow_up_send_tries = $4, follow_up_last_send_error = $5, follow_up_next_at = $6",
            "'sending'",
        ),
        "OutboundSendUncertain" => (
            "follow_up_status = 'awaiting_operator', follow_up_last_send_error = $5, follow_up_next_at = NULL",
            "'sending'",
        ),
        "OutboundResendAuthorized" => (
            "follow_up_status = 'sending', follow_up_send_tries = 0, follow_up_last_send_error = NULL",
            "'awaiting_operator'",
        ),
        _ => return Ok(()),
    };
    let (tries, error, next) = match payload::<ConversationEvent>(event)? {
        ConversationEvent::OutboundSendRetried {
            attempt,
            code,
            title,
            next_try_at,
            ..
        } => (
            i32::try_from(attempt).unwrap_or(i32::MAX),
            Some(send_error(code, &title)),
            Some(next_try_at),
        ),
        ConversationEvent::OutboundSendUncertain { reason, .. } => (0, Some(reason), None),
        _ => (0, None, None),
    };
    sqlx::query(&format!(
        "UPDATE calls SET {set}, last_position = $3
          WHERE tenant_id = $1 AND call_id = $2 AND last_position < $3 AND follow_up_status IN ({from})"
    ))
    .bind(&event.tenant_id)
    .bind(call_id)
    .bind(event.global_position)
    .bind(tries)
    .bind(error)
    .bind(next)
    .execute(&mut *db)
    .await?;
    Ok(())
}

impl Projector for CallsProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        TYPES_READ.as_slice()
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [&'a StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            all_tenants(tx).await?;
            let mut keys = KeyCache::new();
            for event in events {
                if let Some((tenant, contact_id)) = erased_contact(event) {
                    clear_person(
                        tx,
                        &tenant,
                        &contact_id,
                        &["UPDATE calls SET from_number = NULL, to_number = NULL WHERE tenant_id = $1 AND contact_id = $2"],
                    )
                    .await?;
                } else if event.aggregate_type == "Call" {
                    self.apply_one(tx, &mut keys, event).await?;
                } else if event.aggregate_type == "Conversation" {
                    follow_up_sending(tx, event).await?;
                }
            }
            Ok(())
        })
    }

    fn tables(&self) -> &'static [&'static str] {
        &["calls"]
    }
}

/// The follow-up process manager's feed: a `call_follow_up_feed` row for every completed call
/// with a contact, and a `call_follow_up_outcome_feed` row for the outcome of each follow-up
/// message (the conversation's `OutboundMessageSent` / `OutboundMessageFailed` of a
/// `call-follow-up:` key). The worker copies both into its own `call_follow_ups`.
#[derive(Debug, Default)]
pub struct CallFollowUpsProjector;

const FOLLOW_UP_TYPES: &[&str] = &["CallCompleted", "OutboundMessageSent", "OutboundMessageFailed"];

/// The idempotency keys of follow-up messages begin with this.
pub const FOLLOW_UP_KEY_PREFIX: &str = "call-follow-up:";

/// Feeds a follow-up message's outcome (its first one).
async fn follow_up_outcome(db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
    let sent = event.event_type == "OutboundMessageSent";
    let body = &event.payload[event.event_type.as_str()];
    let key = body["idempotency_key"].as_str().unwrap_or_default();
    if !key.starts_with(FOLLOW_UP_KEY_PREFIX) {
        return Ok(());
    }
    let at = body["at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(event.recorded_at);
    sqlx::query(
        "INSERT INTO call_follow_up_outcome_feed (tenant_id, message_key, send_state, send_message_ref,
                send_error_code, send_retryable, send_at, position)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, message_key) DO NOTHING",
    )
    .bind(&event.tenant_id)
    .bind(key)
    .bind(if sent { "sent" } else { "failed" })
    .bind(body["message_ref"].as_str())
    .bind(body["code"].as_i64())
    .bind(body["retryable"].as_bool())
    .bind(at)
    .bind(event.global_position)
    .execute(&mut *db)
    .await?;
    Ok(())
}

impl Fold for CallFollowUpsProjector {
    const NAME: &'static str = FOLLOW_UPS_NAME;
    const EVENT_TYPES: &'static [&'static str] = FOLLOW_UP_TYPES;
    const AGGREGATES: &'static [&'static str] = &["Conversation", "Call"];
    /// Clears the feeds; the worker's `call_follow_ups` keeps the decisions already taken, so a
    /// rebuild never decides a call twice (decision 0013).
    const TABLES: &'static [&'static str] = &["call_follow_up_feed", "call_follow_up_outcome_feed"];
    const FEEDS: &'static [&'static str] = &["call_follow_up_feed", "call_follow_up_outcome_feed"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        if event.aggregate_type == "Conversation" {
            return follow_up_outcome(db, event).await;
        }
        if let CallEvent::CallCompleted {
            contact_id: Some(contact_id),
            outcome,
            ended_at,
            ..
        } = parse(event)?
        {
            sqlx::query(
                "INSERT INTO call_follow_up_feed (tenant_id, call_id, contact_id, outcome, ended_at, position)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tenant_id, call_id) DO NOTHING",
            )
            .bind(&event.tenant_id)
            .bind(local_id(event))
            .bind(contact_id)
            .bind(outcome.as_str())
            .bind(ended_at)
            .bind(event.global_position)
            .execute(&mut *db)
            .await?;
        }
        Ok(())
    }
}

/// One call as dashboards see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallRow {
    pub call_id: String,
    pub provider: String,
    pub provider_call_id: String,
    pub direction: String,
    pub contact_id: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub duration_s: i32,
    pub outcome: String,
    pub agent_user_id: Option<String>,
    pub ended_at: DateTime<Utc>,
    pub follow_up_status: String,
    pub follow_up_template: Option<String>,
    pub follow_up_language: Option<String>,
    pub follow_up_rule_version: Option<i32>,
    pub follow_up_due_at: Option<DateTime<Utc>>,
    pub follow_up_attempts: i32,
    pub follow_up_last_error: Option<i64>,
    pub follow_up_next_at: Option<DateTime<Utc>>,
    /// Why the follow-up was given up (`not_retryable`, `max_attempts`); null otherwise.
    pub follow_up_give_up_reason: Option<String>,
    /// The sender's tries of the current attempt's message (status `sending`).
    pub follow_up_send_tries: i32,
    /// The error of the sender's last try, or why it left the message for an operator.
    pub follow_up_last_send_error: Option<String>,
}

/// Filters of [`list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    pub outcome: Option<String>,
    pub direction: Option<String>,
    /// Calls that ended at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Calls that ended before this time.
    pub to: Option<DateTime<Utc>>,
}

/// Lists one tenant's calls, latest end first, filtered, after a cursor.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &CallFilter,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<CallRow>, BadCursor>, sqlx::Error> {
    let after = match after.map(read_cursor::<i64, String>).transpose() {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let (after_micros, after_id) = after.unwrap_or((i64::MAX, String::new()));
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT call_id, provider, provider_call_id, direction, contact_id, from_number, to_number, duration_s,
                outcome, agent_user_id, ended_at, follow_up_status, follow_up_template, follow_up_language,
                follow_up_rule_version, follow_up_due_at, follow_up_attempts, follow_up_last_error, follow_up_next_at,
                follow_up_give_up_reason, follow_up_send_tries, follow_up_last_send_error
           FROM calls
          WHERE tenant_id = $1
            AND ($2::text IS NULL OR outcome = $2)
            AND ($3::text IS NULL OR direction = $3)
            AND ($4::timestamptz IS NULL OR ended_at >= $4)
            AND ($5::timestamptz IS NULL OR ended_at < $5)
            AND ((extract(epoch FROM ended_at) * 1000000)::bigint, call_id)
                < ($6::bigint, CASE WHEN $7 = '' THEN chr(1114111) ELSE $7 END)
          ORDER BY ended_at DESC, call_id DESC
          LIMIT $8",
    )
    .bind(tenant.as_str())
    .bind(filter.outcome.as_deref())
    .bind(filter.direction.as_deref())
    .bind(filter.from)
    .bind(filter.to)
    .bind(after_micros)
    .bind(&after_id)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Page::of(
        &rows,
        first,
        |r| -> Result<(String, CallRow), sqlx::Error> {
            let row = CallRow {
                call_id: r.try_get("call_id")?,
                provider: r.try_get("provider")?,
                provider_call_id: r.try_get("provider_call_id")?,
                direction: r.try_get("direction")?,
                contact_id: r.try_get("contact_id")?,
                from_number: r.try_get("from_number")?,
                to_number: r.try_get("to_number")?,
                duration_s: r.try_get("duration_s")?,
                outcome: r.try_get("outcome")?,
                agent_user_id: r.try_get("agent_user_id")?,
                ended_at: r.try_get("ended_at")?,
                follow_up_status: r.try_get("follow_up_status")?,
                follow_up_template: r.try_get("follow_up_template")?,
                follow_up_language: r.try_get("follow_up_language")?,
                follow_up_rule_version: r.try_get("follow_up_rule_version")?,
                follow_up_due_at: r.try_get("follow_up_due_at")?,
                follow_up_attempts: r.try_get("follow_up_attempts")?,
                follow_up_last_error: r.try_get("follow_up_last_error")?,
                follow_up_next_at: r.try_get("follow_up_next_at")?,
                follow_up_give_up_reason: r.try_get("follow_up_give_up_reason")?,
                follow_up_send_tries: r.try_get("follow_up_send_tries")?,
                follow_up_last_send_error: r.try_get("follow_up_last_send_error")?,
            };
            let cursor = time_cursor(row.ended_at, &row.call_id);
            Ok((cursor, row))
        },
    )?))
}
