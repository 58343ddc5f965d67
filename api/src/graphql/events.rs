//! The tenant's event log for integrators and auditors (issue 13), in the event contract's
//! shape ([`chronicle_projections::contract`]): `eventLog` pages through history, `events`
//! subscribes (history first, then live). Both read in the log's one gap-free order, so a
//! program catches up by pages and then subscribes from the last page's `endCursor` with no
//! gap and no duplicate.
//!
//! Personal fields are opened for callers allowed personal data
//! ([`Permission::ReadPersonalEvents`]: an API key needs `events:read_personal`), omitted
//! otherwise, and absent for everyone after an erasure; never shown as ciphertext.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, Json, Object, SimpleObject, Subscription};
use chronicle_commands::api_keys::{self, KeyRefusal};
use chronicle_domain::aggregates::{aggregate_of_event, AGGREGATE_TYPES, EVENT_TYPES};
use chronicle_projections::contract::{self, Contract, ContractEvent};
use chronicle_projections::live::LiveLog;
use chronicle_projections::log::{self, Cursor, LogFilter};
use chrono::{DateTime, Utc};
use futures::{FutureExt, Stream, StreamExt};

use super::{caller, keys, page_size, pool};
use crate::auth::{Caller, KeyAccess};
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

/// The largest page of `eventLog`.
pub const MAX_EVENT_PAGE: i32 = 1_000;

/// What happened to an event's personal fields (names, phone numbers, texts).
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum PersonalData {
    /// The event holds no personal field.
    None,
    /// Every personal field is opened in `data`.
    Opened,
    /// Personal fields are omitted from `data`: the caller may not read personal data (an API
    /// key needs the `events:read_personal` scope).
    Withheld,
    /// Personal fields are omitted from `data`: the contact was erased.
    Erased,
}

impl From<contract::PersonalData> for PersonalData {
    fn from(p: contract::PersonalData) -> Self {
        match p {
            contract::PersonalData::None => Self::None,
            contract::PersonalData::Opened => Self::Opened,
            contract::PersonalData::Withheld => Self::Withheld,
            contract::PersonalData::Erased => Self::Erased,
        }
    }
}

/// One event of the log, in the event contract's shape (version 1).
#[derive(SimpleObject)]
pub struct LogEvent {
    /// Resume after this event (`events(after:)`, `eventLog(after:)`).
    pub cursor: String,
    /// The event's number in the whole log: unique, but events are delivered in cursor order,
    /// which may differ from position order.
    pub position: i64,
    /// The event's type, e.g. `ServiceRequestOpened` (the names `eventTypes` lists).
    pub event_type: String,
    /// The version of the event type's data, e.g. `1.0`.
    pub event_version: String,
    /// The kind of stream it belongs to, e.g. `ServiceRequest`, `Wallet`.
    pub aggregate_type: String,
    /// The stream: `<tenant id>:<local id>` (e.g. `acme:sr_42`).
    pub aggregate_id: String,
    /// The event's sequence number within its stream, from 1.
    pub sequence: i64,
    /// When the event was written to the log (RFC 3339).
    pub recorded_at: DateTime<Utc>,
    /// The event's data as plain JSON (the payload without its type wrapper): personal fields
    /// opened, or omitted as `personalData` says.
    pub data: Json<serde_json::Value>,
    /// What happened to the event's personal fields.
    pub personal_data: PersonalData,
    /// Shared by everything done for one request or delivery; null if not recorded.
    pub correlation_id: Option<String>,
    /// What caused the command (e.g. `graphql:<correlation id>`); null if not recorded.
    pub causation_id: Option<String>,
    /// Who did it: `user:<user id>:<role>`, `api_key:<key id>` or `system:<component>`; null if
    /// not recorded.
    pub actor: Option<String>,
}

impl From<ContractEvent> for LogEvent {
    fn from(e: ContractEvent) -> Self {
        Self {
            cursor: e.cursor,
            position: e.position,
            event_type: e.event_type,
            event_version: e.event_version,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            recorded_at: e.recorded_at,
            data: Json(e.data),
            personal_data: e.personal_data.into(),
            correlation_id: e.correlation_id,
            causation_id: e.causation_id,
            actor: e.actor,
        }
    }
}

/// Which events `eventLog` answers. Every list empty or absent means no restriction.
#[derive(InputObject, Default)]
pub struct EventLogFilter {
    /// Only these event types (exact names from `eventTypes`); an unknown name is
    /// `UNKNOWN_EVENT_TYPE`.
    pub event_types: Option<Vec<String>>,
    /// Only these aggregate types (e.g. `Order`); an unknown name is `UNKNOWN_AGGREGATE_TYPE`.
    pub aggregate_types: Option<Vec<String>>,
    /// Only these streams: `<tenant>:<local id>` or just the local id.
    pub streams: Option<Vec<String>>,
    /// Only events recorded at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events recorded before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only events at or before this cursor (a cursor range is `after` .. `through`).
    pub through: Option<String>,
}

/// An event type of the catalogue.
#[derive(SimpleObject)]
pub struct EventTypeInfo {
    /// The event type, e.g. `LeadCaptured`.
    pub event_type: String,
    /// The aggregate type whose streams hold it, e.g. `Lead`.
    pub aggregate_type: String,
}

/// The caller, if they may read the event log (`FORBIDDEN` naming why otherwise).
fn reader<'a>(ctx: &'a Context<'_>) -> Result<&'a Caller, ApiError> {
    let caller = caller(ctx)?;
    if caller.may(Permission::ReadEventStream) {
        return Ok(caller);
    }
    Err(ApiError::Forbidden(match &caller.key {
        Some(key) => format!(
            "the API key {} cannot read the event log: it needs the events:read scope and a role that reads it",
            key.key_id
        ),
        None => format!("the {} role cannot read the event log", caller.role.as_str()),
    }))
}

/// The event types named, each checked against the catalogue.
fn known_event_types(types: Vec<String>) -> Result<Vec<String>, ApiError> {
    types
        .into_iter()
        .map(|t| {
            let t = t.trim().to_string();
            if aggregate_of_event(&t).is_some() {
                Ok(t)
            } else {
                Err(ApiError::bad_request(
                    "UNKNOWN_EVENT_TYPE",
                    format!("{t:?} is not an event type (the `eventTypes` query lists them)"),
                ))
            }
        })
        .collect()
}

fn cursor_of(text: &str, what: &str) -> Result<Cursor, ApiError> {
    text.trim()
        .parse::<Cursor>()
        .map_err(|e| ApiError::bad_request("BAD_CURSOR", format!("{what}: {e}")))
}

/// The contract for `caller`: personal data opened only when they may read it.
fn contract_for(ctx: &Context<'_>, caller: &Caller) -> Result<Contract, ApiError> {
    let reveal = caller.may(Permission::ReadPersonalEvents);
    Ok(Contract::new(
        pool(ctx)?.clone(),
        caller.tenant.clone(),
        Some(keys(ctx)?.master().clone()),
        reveal,
    ))
}

/// The event log queries.
#[derive(Default)]
pub struct EventsQuery;

#[Object]
impl EventsQuery {
    /// The tenant's events in the log's order, a page at a time: `first` events after the
    /// cursor `after` (from the tenant's first event when absent) that pass `filter`. The same
    /// order as the `events` subscription: subscribe with `after: pageInfo.endCursor` of the
    /// last page to continue with no gap and no duplicate. An event still being written by an
    /// open transaction appears on a later page, never skipped.
    ///
    /// Owners, admins, auditors and integrators (else `FORBIDDEN`; an API key needs
    /// `events:read`). Refused with `BAD_CURSOR`, `UNKNOWN_EVENT_TYPE`,
    /// `UNKNOWN_AGGREGATE_TYPE`, `PAGE_TOO_LARGE` (above 1,000) or `BAD_PAGE_SIZE`.
    async fn event_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default = 100,
            desc = "Page size: 1 to 1000, default 100 (`PAGE_TOO_LARGE` above 1000)."
        )]
        first: i32,
        #[graphql(
            desc = "The cursor of the last event already read (an event's `cursor` or `pageInfo.endCursor`); null to start from the beginning."
        )]
        after: Option<String>,
        #[graphql(desc = "Which events; null for all of the tenant's.")] filter: Option<EventLogFilter>,
    ) -> async_graphql::Result<Connection<String, LogEvent>> {
        let caller = reader(ctx).gql()?;
        let limit = page_size(first, MAX_EVENT_PAGE).gql()?;
        let after_cursor = match &after {
            Some(text) => cursor_of(text, "after").gql()?,
            None => Cursor::START,
        };
        let filter = filter.unwrap_or_default();
        let event_types = known_event_types(filter.event_types.unwrap_or_default()).gql()?;
        let aggregate_types: Vec<String> = filter
            .aggregate_types
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                let t = t.trim().to_string();
                if AGGREGATE_TYPES.contains(&t.as_str()) {
                    Ok(t)
                } else {
                    Err(ApiError::bad_request(
                        "UNKNOWN_AGGREGATE_TYPE",
                        format!("{t:?} is not an aggregate type ({})", AGGREGATE_TYPES.join(", ")),
                    ))
                }
            })
            .collect::<Result<_, _>>()
            .gql()?;
        let prefix = format!("{}:", caller.tenant.as_str());
        let streams: Vec<String> = filter
            .streams
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let s = s.trim();
                if s.starts_with(&prefix) {
                    s.to_string()
                } else {
                    caller.tenant.stream_id(s)
                }
            })
            .collect();
        let through = match &filter.through {
            Some(text) => Some(cursor_of(text, "through").gql()?),
            None => None,
        };
        let log_filter = LogFilter::tenant(caller.tenant.as_str())
            .with_types(event_types)
            .narrowed(aggregate_types, streams, filter.since, filter.until, through);
        let pool = pool(ctx).gql()?;
        // One more than asked, to tell whether another page follows.
        let mut events = log::read_after(pool, after_cursor, &log_filter, limit + 1)
            .await
            .map_err(ApiError::from)
            .gql()?;
        let has_next = events.len() as i64 > limit;
        events.truncate(usize::try_from(limit).unwrap_or(0));
        let mut contract = contract_for(ctx, caller).gql()?;
        let mut connection = Connection::new(after.is_some(), has_next);
        for event in events {
            let shaped = contract.shape(event).await.map_err(ApiError::from).gql()?;
            connection
                .edges
                .push(Edge::new(shaped.cursor.clone(), LogEvent::from(shaped)));
        }
        Ok(connection)
    }

    /// Every event type of the catalogue with its aggregate type, for `eventLog`'s and
    /// `events`' filters. Anyone signed in.
    async fn event_types(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<EventTypeInfo>> {
        caller(ctx).gql()?;
        Ok(EVENT_TYPES
            .iter()
            .flat_map(|(aggregate, types)| {
                types.iter().map(|t| EventTypeInfo {
                    event_type: (*t).to_string(),
                    aggregate_type: (*aggregate).to_string(),
                })
            })
            .collect())
    }
}

/// The `events` subscription.
#[derive(Default)]
pub struct EventsSubscription;

#[Subscription]
impl EventsSubscription {
    /// The tenant's events after `after` (from the start when absent), optionally only some
    /// event types: history first, then live, in the contract's shape.
    ///
    /// Owners, admins, auditors and integrators (else `FORBIDDEN`; an API key needs the
    /// `events:read` scope); a malformed `after` is `BAD_CURSOR`, an unknown type
    /// `UNKNOWN_EVENT_TYPE`. The stream ends when the access token expires: reconnect with a
    /// fresh token and resume from the last cursor. With an API key it ends with an
    /// `UNAUTHENTICATED` error when the key is revoked or expires. A subscriber that falls too
    /// far behind the log (it reads slower than events are appended) is closed with a
    /// `SUBSCRIBER_TOO_SLOW` error whose `extensions.lastCursor` is the cursor of the last
    /// event it was given: resume after it.
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Resume after the event with this `cursor`; null to start from the tenant's first event.")]
        after: Option<String>,
        #[graphql(desc = "Only events of these types (exact `eventType` names); null or empty for every type.")]
        types: Option<Vec<String>>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LogEvent>>> {
        let caller = reader(ctx).gql()?;
        let cursor = match after {
            None => Cursor::START,
            Some(text) => cursor_of(&text, "after").gql()?,
        };
        let mut filter = LogFilter::tenant(caller.tenant.to_string());
        if let Some(types) = types {
            filter = filter.with_types(known_event_types(types).gql()?);
        }
        let live = ctx
            .data::<LiveLog>()
            .map_err(|_| ApiError::Unavailable("no live log".into()))
            .gql()?;
        // `then` runs one event's future at a time, so the lock is never contended: it only
        // lets each future borrow the contract (its key cache) in turn.
        let contract = std::sync::Arc::new(tokio::sync::Mutex::new(contract_for(ctx, caller).gql()?));
        let events = live.stream(cursor, filter).then(move |item| {
            let contract = contract.clone();
            async move {
                match item {
                    Ok(event) => contract
                        .lock()
                        .await
                        .shape(event)
                        .await
                        .map(LogEvent::from)
                        .map_err(ApiError::from),
                    Err(e) => Err(ApiError::from(e)),
                }
                .gql()
            }
        });
        // An access token's stream ends when the token expires: the client reconnects with a
        // fresh token and resumes from its last cursor. An API key's ends, with an error naming
        // why, when the key is revoked or expires.
        // The events end first (an error ended them: too slow, or the log could not be read)
        // or the ending does; only the ending's refusal follows the events.
        let ending = ending(caller.expires_at, caller.key.clone(), pool(ctx).gql()?.clone()).shared();
        let ended = ending.clone();
        let last = futures::stream::once(async move { ended.now_or_never().flatten() }).filter_map(|end| async move {
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
    // A key without expiry (`i64::MAX`) only ends by revocation.
    let expiry = async move {
        if expires_at == i64::MAX {
            std::future::pending::<()>().await;
        }
        loop {
            tokio::time::sleep(until_expiry()).await;
            if chrono::Utc::now().timestamp() >= expires_at {
                return;
            }
        }
    };
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
