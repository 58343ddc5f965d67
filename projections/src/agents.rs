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

use std::collections::{HashMap, HashSet};

use chronicle_domain::conversation::{ConversationEvent, ConversationStatus};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool, Row};

use crate::log::StoredEvent;
use crate::runtime::{ProjectionError, Projector};
use crate::shared::{all_tenants, begin_for_tenant, payload};

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
#[derive(Debug, Clone)]
struct State {
    episode: i32,
    episode_open: bool,
    assignee: Option<String>,
    last_position: i64,
}

impl State {
    /// A conversation with no row yet.
    const NEW: State = State {
        episode: 0,
        episode_open: false,
        assignee: None,
        last_position: 0,
    };
}

/// A conversation's key: (tenant, conversation id).
type Key = (String, String);

/// The writes of one batch, folded in memory and written with one statement per kind.
///
/// Applied one event at a time, each event read its conversation's state row, wrote at most one
/// episode or assignment row and wrote the state row back. Here the states are read once
/// (locked), the events fold into them in log order, and the writes go out set-based:
///
/// - the final state of each conversation touched (the last event's, as one by one);
/// - new episodes, then first responses, then resolutions: an episode is opened before it is
///   answered and answered before it is resolved (it closes then), so running the three kinds
///   in that order is the log's order for each episode row. Only the first response of an
///   episode can take effect (`first_response_at IS NULL`), so only it is kept;
/// - assignments, keyed by position (distinct rows).
#[derive(Default)]
struct Writes {
    states: HashMap<Key, State>,
    /// Conversations whose state changed, in first-touched order.
    touched: Vec<Key>,
    touched_set: HashSet<Key>,
    episodes: Vec<(Key, i32, DateTime<Utc>, i64)>,
    first_responses: Vec<(Key, i32, DateTime<Utc>, String, i64)>,
    first_response_seen: HashSet<(Key, i32)>,
    resolutions: Vec<(Key, i32, DateTime<Utc>, String, String, i64)>,
    assignments: Vec<(Key, i64, String, DateTime<Utc>)>,
}

impl AgentPerformanceProjector {
    /// Folds one event into `writes` (the in-memory image of the rows), exactly as it used to be
    /// applied alone.
    fn fold(writes: &mut Writes, key: Key, pos: i64, parsed: ConversationEvent) {
        let mut state = writes.states.get(&key).cloned().unwrap_or(State::NEW);
        // The guard: an event already applied to this conversation changes nothing.
        if state.last_position >= pos {
            return;
        }
        match parsed {
            ConversationEvent::MessageReceived { sent_at, .. } if !state.episode_open => {
                state.episode += 1;
                state.episode_open = true;
                writes.episodes.push((key.clone(), state.episode, sent_at, pos));
            }
            ConversationEvent::OutboundMessageQueued { requested_by, at, .. }
                if state.episode_open && is_person(&requested_by) =>
            {
                // Only an episode's first response can take effect (`first_response_at IS NULL`).
                let first = writes.first_response_seen.insert((key.clone(), state.episode));
                if first {
                    writes
                        .first_responses
                        .push((key.clone(), state.episode, at, requested_by, pos));
                }
            }
            ConversationEvent::ConversationStatusChanged {
                to: ConversationStatus::Resolved,
                by,
                at,
                ..
            } if state.episode_open => {
                state.episode_open = false;
                let agent = state.assignee.clone().unwrap_or_else(|| by.clone());
                writes
                    .resolutions
                    .push((key.clone(), state.episode, at, by, agent, pos));
            }
            ConversationEvent::ConversationAssigned { agent_id, at, .. } => {
                writes.assignments.push((key.clone(), pos, agent_id.clone(), at));
                state.assignee = Some(agent_id);
            }
            ConversationEvent::ConversationUnassigned { .. } => state.assignee = None,
            // Everything else moves no figure; the position is still recorded.
            _ => {}
        }
        state.last_position = pos;
        if writes.touched_set.insert(key.clone()) {
            writes.touched.push(key.clone());
        }
        writes.states.insert(key, state);
    }

    /// Reads (and locks) the state rows of `keys`.
    async fn load(db: &mut PgConnection, keys: &[Key]) -> Result<HashMap<Key, State>, ProjectionError> {
        let rows = sqlx::query(
            "SELECT s.tenant_id, s.conversation_id, s.episode, s.episode_open, s.assignee, s.last_position
               FROM agent_conversation_state s
               JOIN unnest($1::text[], $2::text[]) AS w(t, c) ON s.tenant_id = w.t AND s.conversation_id = w.c
                FOR UPDATE OF s",
        )
        .bind(keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.1.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *db)
        .await?;
        let mut states = HashMap::with_capacity(rows.len());
        for r in rows {
            states.insert(
                (r.try_get("tenant_id")?, r.try_get("conversation_id")?),
                State {
                    episode: r.try_get("episode")?,
                    episode_open: r.try_get("episode_open")?,
                    assignee: r.try_get("assignee")?,
                    last_position: r.try_get("last_position")?,
                },
            );
        }
        Ok(states)
    }

    /// Writes the folded batch: at most five statements.
    async fn write(db: &mut PgConnection, w: Writes) -> Result<(), ProjectionError> {
        if !w.episodes.is_empty() {
            sqlx::query(
                "INSERT INTO agent_conversation_episodes (tenant_id, conversation_id, episode, started_at, last_position)
                 SELECT t, c, e, s, p
                   FROM unnest($1::text[], $2::text[], $3::int4[], $4::timestamptz[], $5::int8[])
                        WITH ORDINALITY AS u(t, c, e, s, p, n)
                  ORDER BY n
                 ON CONFLICT (tenant_id, conversation_id, episode) DO NOTHING",
            )
            .bind(w.episodes.iter().map(|r| r.0 .0.as_str()).collect::<Vec<_>>())
            .bind(w.episodes.iter().map(|r| r.0 .1.as_str()).collect::<Vec<_>>())
            .bind(w.episodes.iter().map(|r| r.1).collect::<Vec<_>>())
            .bind(w.episodes.iter().map(|r| r.2).collect::<Vec<_>>())
            .bind(w.episodes.iter().map(|r| r.3).collect::<Vec<_>>())
            .execute(&mut *db)
            .await?;
        }
        if !w.first_responses.is_empty() {
            let rows = &w.first_responses;
            sqlx::query(
                "UPDATE agent_conversation_episodes e
                    SET first_response_at = u.a, first_response_by = u.b, last_position = u.p
                   FROM unnest($1::text[], $2::text[], $3::int4[], $4::timestamptz[], $5::text[], $6::int8[])
                        AS u(t, c, ep, a, b, p)
                  WHERE e.tenant_id = u.t AND e.conversation_id = u.c AND e.episode = u.ep
                    AND e.first_response_at IS NULL AND e.last_position < u.p",
            )
            .bind(rows.iter().map(|r| r.0 .0.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.0 .1.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.4).collect::<Vec<_>>())
            .execute(&mut *db)
            .await?;
        }
        if !w.resolutions.is_empty() {
            let rows = &w.resolutions;
            sqlx::query(
                "UPDATE agent_conversation_episodes e
                    SET resolved_at = u.a, resolved_by = u.b, resolution_agent = u.g, last_position = u.p
                   FROM unnest($1::text[], $2::text[], $3::int4[], $4::timestamptz[], $5::text[], $6::text[],
                               $7::int8[]) AS u(t, c, ep, a, b, g, p)
                  WHERE e.tenant_id = u.t AND e.conversation_id = u.c AND e.episode = u.ep
                    AND e.last_position < u.p",
            )
            .bind(rows.iter().map(|r| r.0 .0.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.0 .1.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.4.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.5).collect::<Vec<_>>())
            .execute(&mut *db)
            .await?;
        }
        if !w.assignments.is_empty() {
            let rows = &w.assignments;
            sqlx::query(
                "INSERT INTO agent_assignments (tenant_id, position, conversation_id, agent_id, at)
                 SELECT t, p, c, g, a
                   FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::timestamptz[])
                        WITH ORDINALITY AS u(t, p, c, g, a, n)
                  ORDER BY n
                 ON CONFLICT (tenant_id, position) DO NOTHING",
            )
            .bind(rows.iter().map(|r| r.0 .0.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.0 .1.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.3).collect::<Vec<_>>())
            .execute(&mut *db)
            .await?;
        }
        if !w.touched.is_empty() {
            let states: Vec<(&Key, &State)> = w
                .touched
                .iter()
                .filter_map(|k| w.states.get(k).map(|s| (k, s)))
                .collect();
            sqlx::query(
                "INSERT INTO agent_conversation_state AS s (tenant_id, conversation_id, episode, episode_open, assignee,
                                                           last_position)
                 SELECT t, c, e, o, a, p
                   FROM unnest($1::text[], $2::text[], $3::int4[], $4::bool[], $5::text[], $6::int8[])
                        WITH ORDINALITY AS u(t, c, e, o, a, p, n)
                  ORDER BY n
                 ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET
                        episode = EXCLUDED.episode, episode_open = EXCLUDED.episode_open,
                        assignee = EXCLUDED.assignee, last_position = EXCLUDED.last_position
                  WHERE s.last_position < EXCLUDED.last_position",
            )
            .bind(states.iter().map(|(k, _)| k.0.as_str()).collect::<Vec<_>>())
            .bind(states.iter().map(|(k, _)| k.1.as_str()).collect::<Vec<_>>())
            .bind(states.iter().map(|(_, s)| s.episode).collect::<Vec<_>>())
            .bind(states.iter().map(|(_, s)| s.episode_open).collect::<Vec<_>>())
            .bind(states.iter().map(|(_, s)| s.assignee.as_deref()).collect::<Vec<_>>())
            .bind(states.iter().map(|(_, s)| s.last_position).collect::<Vec<_>>())
            .execute(&mut *db)
            .await?;
        }
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
        events: &'a [&'a StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            all_tenants(tx).await?;
            let mut folded = Vec::with_capacity(events.len());
            let mut keys = Vec::new();
            let mut seen = HashSet::new();
            for event in events.iter().filter(|e| e.aggregate_type == "Conversation") {
                let handler_error = |reason: String| ProjectionError::Handler {
                    position: event.global_position,
                    reason,
                };
                let parsed: ConversationEvent = payload(event)?;
                let tenant = TenantId::parse(&event.tenant_id).map_err(|e| handler_error(e.to_string()))?;
                let conversation_id = event
                    .aggregate_id
                    .strip_prefix(&format!("{}:", event.tenant_id))
                    .unwrap_or(&event.aggregate_id)
                    .to_string();
                let key: Key = (tenant.as_str().to_string(), conversation_id);
                if seen.insert(key.clone()) {
                    keys.push(key.clone());
                }
                folded.push((key, event.global_position, parsed));
            }
            if folded.is_empty() {
                return Ok(());
            }
            let mut writes = Writes {
                states: Self::load(tx, &keys).await?,
                ..Writes::default()
            };
            for (key, pos, parsed) in folded {
                Self::fold(&mut writes, key, pos, parsed);
            }
            Self::write(tx, writes).await
        })
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "agent_conversation_state",
            "agent_conversation_episodes",
            "agent_assignments",
        ]
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
    let mut tx = begin_for_tenant(pool, tenant).await?;
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
