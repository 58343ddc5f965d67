//! The `agent_performance` read model: first response time, resolution time and conversations
//! handled, per agent and period. Written only by [`AgentPerformanceProjector`]; read by
//! [`performance`].
//!
//! # The rules (one place; the figures are SQL over the facts they store)
//!
//! - An **episode** of a conversation begins with an inbound message while no episode is open:
//!   the conversation's first message, or the first one after it was resolved. Its start is
//!   that message's provider timestamp (`sent_at`). It ends when the conversation moves to
//!   `resolved`. An agent reopening a resolved conversation (`resolved → open`) opens no
//!   episode: there is no customer message to measure from; the next inbound message does.
//! - **First response**: the episode's first `OutboundMessageQueued` whose `requested_by` is a
//!   person (not `system:…` or `api_key:…`: automations and integrations are not agents),
//!   attributed to that person. Its time is the event's `at`, the moment the agent sent it
//!   (queued it): what follows (the sender, the provider) is not the agent's doing, and a
//!   message the provider later refused was still the agent's answer.
//! - **Resolution**: from the episode's start to the `at` of the move to `resolved`, attributed
//!   to the agent assigned at that moment, else to the person who resolved it.
//! - **Conversations handled** by an agent in a period: the distinct conversations assigned to
//!   them in the period, together with those whose resolution in the period is theirs.
//!
//! Durations shorter than zero (a clock ahead of the provider's) count as zero. Every time is the
//! event's own business time, never the time it arrived or was projected.
//!
//! Idempotent: every write of a conversation is guarded by the last global position applied to
//! it (`agent_conversation_state.last_position`), and assignments are keyed by position.

use chronicle_domain::conversation::{ConversationEvent, ConversationStatus};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool, Row};

use crate::conversations::for_tenant;
use crate::log::StoredEvent;
use crate::runtime::{ProjectionError, Projector};
use crate::shared::all_tenants;

/// The projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "agent_performance";

/// Whether `requested_by` names a person (a user id) rather than Chronicle itself or an
/// integrator's key.
pub fn is_person(requested_by: &str) -> bool {
    !(requested_by.starts_with("system:") || requested_by.starts_with("api_key:") || requested_by.trim().is_empty())
}

/// Folds `Conversation` events into `agent_conversation_state`, `agent_conversation_episodes`
/// and `agent_assignments`.
pub struct AgentPerformanceProjector;

/// The working state of one conversation, as last written.
struct State {
    episode: i32,
    episode_open: bool,
    assignee: Option<String>,
    last_position: i64,
}

impl AgentPerformanceProjector {
    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let handler_error = |reason: String| ProjectionError::Handler {
            position: event.global_position,
            reason,
        };
        let parsed: ConversationEvent = serde_json::from_value(event.payload.clone())
            .map_err(|e| handler_error(format!("not a Conversation event: {e}")))?;
        let tenant = TenantId::parse(&event.tenant_id).map_err(|e| handler_error(e.to_string()))?;
        let t = tenant.as_str();
        let conversation_id = event
            .aggregate_id
            .strip_prefix(&format!("{}:", event.tenant_id))
            .unwrap_or(&event.aggregate_id)
            .to_string();
        let pos = event.global_position;

        let found = sqlx::query(
            "SELECT episode, episode_open, assignee, last_position FROM agent_conversation_state
              WHERE tenant_id = $1 AND conversation_id = $2 FOR UPDATE",
        )
        .bind(t)
        .bind(&conversation_id)
        .fetch_optional(&mut *db)
        .await?;
        let mut state = match found {
            Some(r) => State {
                episode: r.try_get("episode")?,
                episode_open: r.try_get("episode_open")?,
                assignee: r.try_get("assignee")?,
                last_position: r.try_get("last_position")?,
            },
            None => State {
                episode: 0,
                episode_open: false,
                assignee: None,
                last_position: 0,
            },
        };
        // The guard: an event already applied to this conversation changes nothing.
        if state.last_position >= pos {
            return Ok(());
        }

        match parsed {
            ConversationEvent::MessageReceived { sent_at, .. } if !state.episode_open => {
                state.episode += 1;
                state.episode_open = true;
                sqlx::query(
                    "INSERT INTO agent_conversation_episodes (tenant_id, conversation_id, episode, started_at, last_position)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (tenant_id, conversation_id, episode) DO NOTHING",
                )
                .bind(t)
                .bind(&conversation_id)
                .bind(state.episode)
                .bind(sent_at)
                .bind(pos)
                .execute(&mut *db)
                .await?;
            }
            ConversationEvent::OutboundMessageQueued { requested_by, at, .. }
                if state.episode_open && is_person(&requested_by) =>
            {
                sqlx::query(
                    "UPDATE agent_conversation_episodes
                        SET first_response_at = $4, first_response_by = $5, last_position = $6
                      WHERE tenant_id = $1 AND conversation_id = $2 AND episode = $3
                        AND first_response_at IS NULL AND last_position < $6",
                )
                .bind(t)
                .bind(&conversation_id)
                .bind(state.episode)
                .bind(at)
                .bind(&requested_by)
                .bind(pos)
                .execute(&mut *db)
                .await?;
            }
            ConversationEvent::ConversationStatusChanged {
                to: ConversationStatus::Resolved,
                by,
                at,
                ..
            } if state.episode_open => {
                state.episode_open = false;
                let agent = state.assignee.clone().unwrap_or_else(|| by.clone());
                sqlx::query(
                    "UPDATE agent_conversation_episodes
                        SET resolved_at = $4, resolved_by = $5, resolution_agent = $6, last_position = $7
                      WHERE tenant_id = $1 AND conversation_id = $2 AND episode = $3 AND last_position < $7",
                )
                .bind(t)
                .bind(&conversation_id)
                .bind(state.episode)
                .bind(at)
                .bind(&by)
                .bind(&agent)
                .bind(pos)
                .execute(&mut *db)
                .await?;
            }
            ConversationEvent::ConversationAssigned { agent_id, at, .. } => {
                sqlx::query(
                    "INSERT INTO agent_assignments (tenant_id, position, conversation_id, agent_id, at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (tenant_id, position) DO NOTHING",
                )
                .bind(t)
                .bind(pos)
                .bind(&conversation_id)
                .bind(&agent_id)
                .bind(at)
                .execute(&mut *db)
                .await?;
                state.assignee = Some(agent_id);
            }
            ConversationEvent::ConversationUnassigned { .. } => state.assignee = None,
            // Everything else moves no figure; the position is still recorded below.
            _ => {}
        }

        sqlx::query(
            "INSERT INTO agent_conversation_state AS s (tenant_id, conversation_id, episode, episode_open, assignee, last_position)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET
                    episode = EXCLUDED.episode, episode_open = EXCLUDED.episode_open,
                    assignee = EXCLUDED.assignee, last_position = EXCLUDED.last_position
              WHERE s.last_position < EXCLUDED.last_position",
        )
        .bind(t)
        .bind(&conversation_id)
        .bind(state.episode)
        .bind(state.episode_open)
        .bind(&state.assignee)
        .bind(pos)
        .execute(&mut *db)
        .await?;
        Ok(())
    }
}

impl Projector for AgentPerformanceProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        ConversationEvent::TYPES
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            all_tenants(tx).await?;
            for event in events {
                if event.aggregate_type == "Conversation" {
                    self.apply_one(tx, event).await?;
                }
            }
            Ok(())
        })
    }

    fn reset<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            all_tenants(tx).await?;
            sqlx::query("DELETE FROM agent_conversation_state")
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM agent_conversation_episodes")
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM agent_assignments").execute(&mut *tx).await?;
            Ok(())
        })
    }
}

/// Average and median of a set of durations, in seconds (`None` when the set is empty).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Durations {
    /// How many durations.
    pub count: i64,
    pub average: Option<f64>,
    /// The middle value; with an even count, the mean of the two middle values.
    pub median: Option<f64>,
}

/// One agent's figures for a period.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgentFigures {
    pub agent_id: String,
    /// Distinct conversations assigned to the agent in the period, or whose resolution in the
    /// period is attributed to them.
    pub conversations_handled: i64,
    /// Episodes resolved in the period attributed to the agent (a conversation resolved again
    /// after a reopening counts again).
    pub conversations_resolved: i64,
    /// First responses made by the agent in the period.
    pub first_response: Durations,
    /// Resolutions in the period attributed to the agent.
    pub resolution: Durations,
}

/// Every agent's figures (or only `agent`'s) for facts at or after `from` and before `to`: a
/// first response counts in the period it was made, a resolution in the period it happened, an
/// assignment in the period it was made. Ordered by agent id.
pub async fn performance(
    pool: &PgPool,
    tenant: &TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    agent: Option<&str>,
) -> Result<Vec<AgentFigures>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    for_tenant(&mut tx, tenant).await?;
    let rows = sqlx::query(
        "WITH fr AS (
              SELECT first_response_by AS agent_id,
                     greatest(0, extract(epoch FROM first_response_at - started_at))::float8 AS s
                FROM agent_conversation_episodes
               WHERE tenant_id = $1 AND first_response_at >= $2 AND first_response_at < $3),
              rs AS (
              SELECT resolution_agent AS agent_id, conversation_id,
                     greatest(0, extract(epoch FROM resolved_at - started_at))::float8 AS s
                FROM agent_conversation_episodes
               WHERE tenant_id = $1 AND resolved_at >= $2 AND resolved_at < $3),
              handled AS (
              SELECT agent_id, conversation_id FROM agent_assignments
               WHERE tenant_id = $1 AND at >= $2 AND at < $3
              UNION
              SELECT agent_id, conversation_id FROM rs),
              agents AS (
              SELECT agent_id FROM handled UNION SELECT agent_id FROM fr)
         SELECT a.agent_id,
                (SELECT count(*) FROM handled h WHERE h.agent_id = a.agent_id) AS handled,
                (SELECT count(*) FROM fr WHERE fr.agent_id = a.agent_id) AS fr_count,
                (SELECT avg(s) FROM fr WHERE fr.agent_id = a.agent_id) AS fr_average,
                (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s) FROM fr WHERE fr.agent_id = a.agent_id)
                    AS fr_median,
                (SELECT count(*) FROM rs WHERE rs.agent_id = a.agent_id) AS rs_count,
                (SELECT avg(s) FROM rs WHERE rs.agent_id = a.agent_id) AS rs_average,
                (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s) FROM rs WHERE rs.agent_id = a.agent_id)
                    AS rs_median
           FROM agents a
          WHERE $4::text IS NULL OR a.agent_id = $4
          ORDER BY a.agent_id",
    )
    .bind(tenant.as_str())
    .bind(from)
    .bind(to)
    .bind(agent)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            let resolved: i64 = r.try_get("rs_count")?;
            Ok(AgentFigures {
                agent_id: r.try_get("agent_id")?,
                conversations_handled: r.try_get("handled")?,
                conversations_resolved: resolved,
                first_response: Durations {
                    count: r.try_get("fr_count")?,
                    average: r.try_get("fr_average")?,
                    median: r.try_get("fr_median")?,
                },
                resolution: Durations {
                    count: resolved,
                    average: r.try_get("rs_average")?,
                    median: r.try_get("rs_median")?,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::is_person;

    #[test]
    fn automations_and_integrations_are_not_agents() {
        assert!(is_person("agent-ana"));
        assert!(is_person("user-1"));
        assert!(!is_person("system:call_follow_ups"));
        assert!(!is_person("api_key:key-1"));
        assert!(!is_person(" "));
    }
}
