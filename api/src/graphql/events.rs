//! `events(after:)`: the caller's tenant's events, history first then live, each with its
//! cursor; resume from the last cursor seen, with no gap and no duplicate.

use async_graphql::{Context, Json, SimpleObject, Subscription};
use chronicle_projections::live::LiveLog;
use chronicle_projections::log::{Cursor, LogFilter, StoredEvent};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};

use chronicle_commands::api_keys::{self, KeyRefusal};
use futures::FutureExt;

use super::{caller, pool};
use crate::auth::KeyAccess;
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

/// One event of the log, as integrators see it. Personal fields are ciphertext envelopes.
#[derive(SimpleObject)]
pub struct LogEvent {
    /// Resume after this event with `events(after: cursor)`.
    pub cursor: String,
    /// The event's number in the whole log: unique, but events are delivered in cursor order,
    /// which may differ from position order.
    pub position: i64,
    /// The event's type, e.g. `ServiceRequestOpened` (the names `types` filters on).
    pub event_type: String,
    /// The version of the event type's payload schema, e.g. `1.0`.
    pub event_version: String,
    /// The kind of stream it belongs to, e.g. `ServiceRequest`, `Wallet`.
    pub aggregate_type: String,
    /// The stream: `<tenant id>:<local id>` (e.g. `acme:sr_42`).
    pub aggregate_id: String,
    /// The event's sequence number within its stream.
    pub sequence: i64,
    /// When the event was written to the log (RFC 3339).
    pub recorded_at: DateTime<Utc>,
    /// The event's payload as stored (JSON); personal fields are ciphertext envelopes.
    pub payload: Json<serde_json::Value>,
    /// Shared by everything done for one request or delivery; null if not recorded.
    pub correlation_id: Option<String>,
    /// What caused the command (e.g. `graphql:<correlation id>`); null if not recorded.
    pub causation_id: Option<String>,
    /// Who did it: `user:<user id>:<role>`, `api_key:<key id>` or `system:<component>`; null if
    /// not recorded.
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

/// The `events` subscription.
#[derive(Default)]
pub struct EventsSubscription;

#[Subscription]
impl EventsSubscription {
    /// The tenant's events after `after` (from the start when absent), optionally only some
    /// event types: history first, then live.
    ///
    /// Owners, admins, auditors and integrators (else `FORBIDDEN`; an API key needs the
    /// `events:read` scope); a malformed `after` is `BAD_CURSOR`. The stream ends when the
    /// access token expires: reconnect with a fresh token and resume from the last cursor. With
    /// an API key it ends with an `UNAUTHENTICATED` error when the key is revoked or expires.
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Resume after the event with this `cursor`; null to start from the tenant's first event.")]
        after: Option<String>,
        #[graphql(desc = "Only events of these types (exact `eventType` names); null or empty for every type.")]
        types: Option<Vec<String>>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LogEvent>>> {
        let caller = caller(ctx).gql()?;
        if !caller.may(Permission::ReadEventStream) {
            return Err(ApiError::Forbidden(match &caller.key {
                Some(key) => format!("the API key {} cannot read the event stream: it needs the events:read scope and a role that reads it", key.key_id),
                None => format!("the {} role cannot read the event stream", caller.role.as_str()),
            }))
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
        let events = stream.map(|item| item.map(LogEvent::from).map_err(ApiError::from).gql());
        // An access token's stream ends when the token expires: the client reconnects with a
        // fresh token and resumes from its last cursor. An API key's ends, with an error naming
        // why, when the key is revoked or expires.
        let ending = ending(caller.expires_at, caller.key.clone(), pool(ctx).gql()?.clone()).shared();
        let last = futures::stream::once(ending.clone()).filter_map(|end| async move {
            end.map(|refusal| Err(ApiError::Unauthenticated(refusal.to_string())).gql())
        });
        Ok(events.take_until(ending).chain(last))
    }
}

/// How often an open subscription made with an API key checks that the key is still usable.
pub const KEY_CHECK_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolves when the caller's subscription must end: at the access token's expiry (`None`: a
/// silent end), or when the API key is revoked or expires (the refusal to send).
async fn ending(expires_at: i64, key: Option<KeyAccess>, pool: sqlx::PgPool) -> Option<KeyRefusal> {
    let until_expiry = move || {
        let remaining = expires_at.saturating_sub(chrono::Utc::now().timestamp()).max(0);
        // At most a year: a key without expiry never wakes this before a revocation does.
        std::time::Duration::from_secs(u64::try_from(remaining).unwrap_or(0).min(366 * 86_400))
    };
    let Some(key) = key else {
        tokio::time::sleep(until_expiry()).await;
        return None;
    };
    let expiry = tokio::time::sleep(until_expiry());
    tokio::pin!(expiry);
    let mut ticks = tokio::time::interval(KEY_CHECK_PERIOD);
    loop {
        tokio::select! {
            () = &mut expiry => return Some(KeyRefusal::Expired),
            _ = ticks.tick() => {
                // A failed check (the database briefly away) keeps the stream: the next tick
                // checks again.
                if let Ok(Some(refusal)) = api_keys::refusal_at(&pool, &key.key_id, chrono::Utc::now()).await {
                    return Some(refusal);
                }
            }
        }
    }
}
