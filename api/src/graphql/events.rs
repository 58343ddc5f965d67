//! `events(after:)`: the caller's tenant's events, history first then live, each with its
//! cursor; resume from the last cursor seen, with no gap and no duplicate.

use async_graphql::{Context, Json, SimpleObject, Subscription};
use chronicle_projections::live::LiveLog;
use chronicle_projections::log::{Cursor, LogFilter, StoredEvent};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};

use super::caller;
use crate::error::{ApiError, IntoGraphql};

/// One event of the log, as integrators see it. Personal fields are ciphertext envelopes.
#[derive(SimpleObject)]
pub struct LogEvent {
    /// Resume after this event with `events(after: cursor)`.
    pub cursor: String,
    /// The event's number in the whole log.
    pub position: i64,
    pub event_type: String,
    pub event_version: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub recorded_at: DateTime<Utc>,
    pub payload: Json<serde_json::Value>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub actor: Option<String>,
}

impl From<StoredEvent> for LogEvent {
    fn from(e: StoredEvent) -> Self {
        let meta = |k: &str| e.metadata.get(k).and_then(|v| v.as_str()).map(str::to_string);
        Self {
            cursor: e.cursor.to_string(),
            correlation_id: meta("correlation_id"),
            causation_id: meta("causation_id"),
            actor: meta("actor"),
            position: e.global_position,
            event_type: e.event_type,
            event_version: e.event_version,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            recorded_at: e.recorded_at,
            payload: Json(e.payload),
        }
    }
}

#[derive(Default)]
pub struct EventsSubscription;

#[Subscription]
impl EventsSubscription {
    /// The tenant's events after `after` (from the start when absent), optionally only some
    /// event types: history first, then live.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        types: Option<Vec<String>>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LogEvent>>> {
        let caller = caller(ctx).gql()?;
        if !caller.role.reads_event_stream() {
            return Err(ApiError::Forbidden(format!(
                "the {} role cannot read the event stream",
                caller.role.as_str()
            )))
            .gql();
        }
        let cursor = match after {
            None => Cursor::START,
            Some(text) => text
                .parse::<Cursor>()
                .map_err(|e| ApiError::bad_request("BAD_CURSOR", e.to_string()))
                .gql()?,
        };
        let mut filter = LogFilter::tenant(caller.tenant.to_string());
        if let Some(types) = types {
            filter = filter.with_types(types);
        }
        let live = ctx
            .data::<LiveLog>()
            .map_err(|_| ApiError::Unavailable("no live log".into()))
            .gql()?;
        let stream = live.stream(cursor, filter);
        // The stream ends when the access token expires; the client reconnects with a fresh
        // token and resumes from its last cursor.
        let remaining = (caller.expires_at - chrono::Utc::now().timestamp()).max(0) as u64;
        let expiry = tokio::time::sleep(std::time::Duration::from_secs(remaining));
        Ok(stream
            .take_until(expiry)
            .map(|item| item.map(LogEvent::from).map_err(ApiError::from).gql()))
    }
}
