//! Agent performance for dashboards: `agentPerformance(from, to)`, per agent: conversations
//! handled and resolved, first response and resolution times (average and median, seconds).
//! The rules behind each figure are in `chronicle_projections::agents`.
//!
//! Readable by owner, admin and auditor (every agent of the tenant) and by an agent, who gets
//! only their own row (the figures of colleagues are a manager's business); anyone else gets
//! `FORBIDDEN`. A period with `to` not after `from` is `BAD_PERIOD`.

use async_graphql::{Context, Object, SimpleObject};
use chronicle_projections::agents::{self as model, AgentFigures, Durations};
use chrono::{DateTime, Utc};

use super::{caller, pool};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, IntoGraphql};

/// Whose rows the caller may read: `Ok(None)` every agent's, `Ok(Some(id))` only their own.
fn readable_agent(caller: &Caller) -> Result<Option<&str>, ApiError> {
    // An API key reads agents' figures only with the inbox scope (they are the inbox's work).
    if !caller.has_scope(chronicle_domain::api_key::ApiKeyScope::InboxRead) {
        return Err(ApiError::Forbidden(
            "an API key reads agent performance only with the inbox:read scope".into(),
        ));
    }
    // The inbox's readers (the permission table); an agent only their own row.
    if !caller.may(crate::permissions::Permission::ReadInbox) {
        return Err(ApiError::Forbidden(format!(
            "the {} role cannot read agent performance",
            caller.role.as_str()
        )));
    }
    Ok((caller.role == Role::Agent).then_some(caller.user_id.as_str()))
}

/// Average and median of a set of durations, in seconds; null when there are none.
#[derive(SimpleObject)]
pub struct DurationFigures {
    /// How many durations the figures are over.
    pub count: i64,
    /// The arithmetic mean, in seconds; null when `count` is 0.
    pub average: Option<f64>,
    /// The middle value; with an even count, the mean of the two middle values. In seconds;
    /// null when `count` is 0.
    pub median: Option<f64>,
}

impl From<Durations> for DurationFigures {
    fn from(d: Durations) -> Self {
        Self {
            count: d.count,
            average: d.average,
            median: d.median,
        }
    }
}

/// One agent's figures for a period.
#[derive(SimpleObject)]
pub struct AgentPerformance {
    /// The agent's user id.
    pub agent_id: String,
    /// Distinct conversations assigned to the agent in the period, or whose resolution in the
    /// period is attributed to them.
    pub conversations_handled: i64,
    /// Resolutions in the period attributed to the agent (the assignee when resolved, else the
    /// one who resolved); a conversation resolved again after reopening counts again.
    pub conversations_resolved: i64,
    /// From a conversation episode's first inbound message to the agent's first reply (the time
    /// they sent it), for replies made in the period.
    pub first_response_seconds: DurationFigures,
    /// From an episode's first inbound message to its resolution, for resolutions in the
    /// period.
    pub resolution_seconds: DurationFigures,
}

impl From<AgentFigures> for AgentPerformance {
    fn from(f: AgentFigures) -> Self {
        Self {
            agent_id: f.agent_id,
            conversations_handled: f.conversations_handled,
            conversations_resolved: f.conversations_resolved,
            first_response_seconds: f.first_response.into(),
            resolution_seconds: f.resolution.into(),
        }
    }
}

#[derive(Default)]
pub struct AgentsQuery;

#[Object]
impl AgentsQuery {
    /// Each agent's figures for facts at or after `from` and before `to`, by agent id. An agent
    /// caller gets their own row only.
    ///
    /// Owners, admins and auditors read every agent; technicians, finance and integrators get
    /// `FORBIDDEN`. Only agents with at least one assignment, first response or resolution in
    /// the period have a row (an empty list when none). `to` not after `from` is `BAD_PERIOD`.
    async fn agent_performance(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Start of the period, inclusive (RFC 3339).")] from: DateTime<Utc>,
        #[graphql(desc = "End of the period, exclusive (RFC 3339); must be after `from`.")] to: DateTime<Utc>,
    ) -> async_graphql::Result<Vec<AgentPerformance>> {
        let caller = caller(ctx).gql()?;
        let agent = readable_agent(caller).gql()?;
        if to <= from {
            return Err(ApiError::bad_request("BAD_PERIOD", "`to` must be after `from`")).gql();
        }
        let figures = model::performance(pool(ctx).gql()?, &caller.tenant, from, to, agent)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(figures.into_iter().map(AgentPerformance::from).collect())
    }
}
