//! The global log reader: every event after a [`Cursor`], in one order that is final and shared
//! by every reader, never skipping an event whose transaction commits late.
//!
//! # Why not `global_position > $last`
//!
//! `global_position` is taken from an identity sequence when a row is inserted, not when its
//! transaction commits. Two writers A and B: A inserts (position 10) and stays open, B inserts
//! (position 11) and commits, a reader reads 11 and remembers it, then A commits: a reader that
//! continues after position 11 never sees 10. [`naive::read_naive_after_position`] is that
//! reader, kept only so the tests can show it loses events.
//!
//! # The order used here (DESIGN.md, "Reading the whole log without gaps")
//!
//! ```sql
//! WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
//!   AND (tx_id, global_position) > ($last_tx, $last_position)
//! ORDER BY tx_id, global_position
//! ```
//!
//! `tx_id` is the writing transaction's id (`pg_current_xact_id()`, a 64-bit `xid8` that never
//! wraps). `pg_snapshot_xmin` of the statement's snapshot is the oldest transaction id still
//! running anywhere in the cluster: every transaction below it has ended (committed, and so
//! visible to this statement, or rolled back, and so absent), and every transaction that starts
//! writing later gets a higher id. So the set of rows below `xmin` never changes again, and
//! reading it in `(tx_id, global_position)` order gives an order that is final: a later read,
//! with a higher `xmin`, only ever finds rows after the cursor. A cursor is therefore the pair
//! `(tx_id, global_position)` of the last event read, shown to clients as an opaque string
//! ([`Cursor`]'s `Display`/`FromStr`).
//!
//! The price: an open transaction that has written anything (and so holds a transaction id)
//! holds every reader back until it ends, including writes to other tables, in other databases
//! of the cluster, and prepared (two-phase) transactions. Write transactions must stay short; the runtime exposes the age of
//! the oldest one as a metric (`runtime::oldest_open_write_seconds`).
//!
//! A consequence for tailing readers: the wake-up for an event comes at its commit, but the
//! event may not be readable yet (an older writer is still open), and that older writer may
//! never send a wake-up of its own (it need not write events at all). So a reader that finds
//! nothing to read asks [`any_committed_after`] its cursor; when committed events do lie
//! beyond it, it looks again soon instead of sleeping for a whole poll interval. That check
//! must be about the reader's cursor, not about `xmin`: the blocking writer may have ended
//! between the empty read and the check, and "is anything blocked now?" would then answer no
//! while the event was never read.
//!
//! # Plans (measured)
//!
//! `EXPLAIN` on PostgreSQL 15 after `ANALYZE`, 66,000 events in 6,600 transactions of 10,
//! generic and custom plans alike:
//!
//! - One tenant among ~100 (the realistic shape): `Limit -> Index Scan using
//!   events_tenant_log_order` with `Index Cond: ((tenant_id = $3) AND (tx_id <
//!   pg_snapshot_xmin(pg_current_snapshot())) AND (ROW(tx_id, global_position) >
//!   ROW(($1)::xid8, $2)))`: the scan starts at the cursor, stops at `xmin`, no sort node.
//! - When the table held only 4 tenants of equal size (6,000 events), the planner instead chose
//!   `Index Scan using events_log_order` with `Filter: (tenant_id = $3)`: that index's heap
//!   order correlates perfectly, and a quarter of its rows match, so for a `LIMIT` it is as
//!   cheap. Both plans are ordered scans from the cursor; neither sorts.
//! - Every tenant: `Index Scan using events_log_order`, the same `Index Cond` minus the tenant.
//! - `event_type = ANY($n)` is a `Filter` on those scans (no index on event types: a projector
//!   of rare types scans past the others).
//! - [`head`]: `Index Only Scan Backward` on either index, `LIMIT 1`.
//!
//! The transaction id is selected as `tx_id::text AS tx_id_text`. An alias `tx_id` would be
//! a trap: `ORDER BY tx_id` resolves to the output column first, and the first `EXPLAIN` showed
//! `Sort Key: ((tx_id)::text)`, a textual order (`"10" < "9"`) and a sort of the whole table.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use crate::wake::WakeReceiver;

/// A position in the global log: the `(tx_id, global_position)` of the last event read.
///
/// Ordered as the log is ordered (transaction id first). Shown to clients as an opaque, stable
/// string (`Display`), parsed back with `FromStr`; serialized as that string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor {
    /// The writing transaction's id (`xid8`) of the last event read.
    pub tx_id: u64,
    /// The `global_position` of the last event read.
    pub position: i64,
}

/// The version prefix of the cursor's string form.
const CURSOR_PREFIX: &str = "c1.";

impl Cursor {
    /// Before the first event of the log.
    pub const START: Cursor = Cursor { tx_id: 0, position: 0 };

    /// A cursor at the given transaction id and position.
    pub const fn new(tx_id: u64, position: i64) -> Self {
        Cursor { tx_id, position }
    }

    fn to_bytes(self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.tx_id.to_be_bytes());
        bytes[8..].copy_from_slice(&self.position.to_be_bytes());
        bytes
    }
}

impl fmt::Display for Cursor {
    /// `c1.` followed by the base64url (no padding) of the 16 big-endian bytes of
    /// `tx_id` then `position`: 25 characters, URL-safe.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{CURSOR_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.to_bytes()))
    }
}

/// Why a string is not a [`Cursor`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// The string does not start with a known version prefix.
    #[error("not a log cursor (unknown or missing version prefix)")]
    UnknownVersion,
    /// The body is not base64url without padding.
    #[error("not a log cursor (malformed encoding)")]
    Encoding,
    /// The body does not decode to 16 bytes.
    #[error("not a log cursor (decodes to {0} bytes, expected 16)")]
    Length(usize),
    /// The position is negative, which no event has.
    #[error("not a log cursor (negative position)")]
    NegativePosition,
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s.strip_prefix(CURSOR_PREFIX).ok_or(CursorError::UnknownVersion)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| CursorError::Encoding)?;
        let bytes: [u8; 16] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CursorError::Length(bytes.len()))?;
        let mut tx = [0u8; 8];
        let mut pos = [0u8; 8];
        tx.copy_from_slice(&bytes[..8]);
        pos.copy_from_slice(&bytes[8..]);
        let cursor = Cursor {
            tx_id: u64::from_be_bytes(tx),
            position: i64::from_be_bytes(pos),
        };
        if cursor.position < 0 {
            return Err(CursorError::NegativePosition);
        }
        // One string per cursor: the engine refuses non-zero trailing bits, which would
        // otherwise let two strings decode to the same bytes.
        Ok(cursor)
    }
}

impl Serialize for Cursor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One event as stored in the log, with its place in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Where this event is in the log: resume after it with [`read_after`].
    pub cursor: Cursor,
    /// The event's unique number (not its place in the read order; see the module docs).
    pub global_position: i64,
    /// The tenant the event belongs to.
    pub tenant_id: String,
    /// postgres-es's aggregate type.
    pub aggregate_type: String,
    /// The stream (begins with `<tenant_id>:`).
    pub aggregate_id: String,
    /// The event's sequence number in its stream.
    pub sequence: i64,
    /// postgres-es's event type.
    pub event_type: String,
    /// The version of the event type's data: the current one (the log keeps the version an
    /// event was stored at; it is upcast when read, see `chronicle_domain::upcast`).
    pub event_version: String,
    /// The payload as stored, upcast to the current version of its type (personal fields are
    /// ciphertext envelopes).
    pub payload: serde_json::Value,
    /// The command's metadata (tenant, actor, correlation and causation ids).
    pub metadata: serde_json::Value,
    /// When the row was inserted (`clock_timestamp()`, not the commit time).
    pub recorded_at: DateTime<Utc>,
    /// The writing transaction's id.
    pub tx_id: u64,
}

/// Which events a read returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only this tenant's events; `None` for every tenant.
    pub tenant_id: Option<String>,
    /// Only these event types; `None` or an empty list for every type.
    pub event_types: Option<Vec<String>>,
    /// Only these aggregate types; `None` or an empty list for every type.
    pub aggregate_types: Option<Vec<String>>,
    /// Only these streams (`<tenant>:<local id>`); `None` or an empty list for every stream.
    pub streams: Option<Vec<String>>,
    /// Only events recorded at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events recorded before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only events at or before this cursor (a read ends there).
    pub through: Option<Cursor>,
}

impl LogFilter {
    /// Every event of every tenant.
    pub fn all() -> Self {
        Self::default()
    }

    /// Every event of one tenant.
    pub fn tenant(tenant_id: impl Into<String>) -> Self {
        LogFilter {
            tenant_id: Some(tenant_id.into()),
            ..LogFilter::default()
        }
    }

    /// Restricts to these event types (an empty list means every type).
    pub fn with_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let types: Vec<String> = types.into_iter().map(Into::into).collect();
        self.event_types = if types.is_empty() { None } else { Some(types) };
        self
    }

    fn types(&self) -> Option<&[String]> {
        self.event_types.as_deref().filter(|t| !t.is_empty())
    }

    /// Only events of these aggregate types, in these streams, recorded in `[since, until)`
    /// and at or before `through`, as each is given.
    pub fn narrowed(
        mut self,
        aggregate_types: Vec<String>,
        streams: Vec<String>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        through: Option<Cursor>,
    ) -> Self {
        self.aggregate_types = (!aggregate_types.is_empty()).then_some(aggregate_types);
        self.streams = (!streams.is_empty()).then_some(streams);
        self.since = since;
        self.until = until;
        self.through = through;
        self
    }

    /// Whether `event` passes the filter (what [`read_after`] would select, in memory).
    pub fn matches(&self, event: &StoredEvent) -> bool {
        let listed = |list: &Option<Vec<String>>, value: &String| {
            list.as_deref()
                .filter(|l| !l.is_empty())
                .is_none_or(|l| l.contains(value))
        };
        self.tenant_id.as_deref().is_none_or(|t| t == event.tenant_id)
            && listed(&self.event_types, &event.event_type)
            && listed(&self.aggregate_types, &event.aggregate_type)
            && listed(&self.streams, &event.aggregate_id)
            && self.since.is_none_or(|since| event.recorded_at >= since)
            && self.until.is_none_or(|until| event.recorded_at < until)
            && self.through.is_none_or(|through| event.cursor <= through)
    }

    /// Appends ` AND tenant_id = $n AND event_type = ANY($m) …` as the filter requires.
    fn push_conditions(&self, q: &mut QueryBuilder<'_, Postgres>) {
        if let Some(tenant) = &self.tenant_id {
            q.push(" AND tenant_id = ").push_bind(tenant.clone());
        }
        if let Some(types) = self.types() {
            q.push(" AND event_type = ANY(").push_bind(types.to_vec()).push(")");
        }
        if let Some(types) = self.aggregate_types.as_ref().filter(|t| !t.is_empty()) {
            q.push(" AND aggregate_type = ANY(").push_bind(types.clone()).push(")");
        }
        if let Some(streams) = self.streams.as_ref().filter(|s| !s.is_empty()) {
            q.push(" AND aggregate_id = ANY(").push_bind(streams.clone()).push(")");
        }
        if let Some(since) = self.since {
            q.push(" AND recorded_at >= ").push_bind(since);
        }
        if let Some(until) = self.until {
            q.push(" AND recorded_at < ").push_bind(until);
        }
        if let Some(through) = self.through {
            q.push(" AND (tx_id, global_position) <= (")
                .push_bind(through.tx_id.to_string())
                .push("::text::xid8, ")
                .push_bind(through.position)
                .push(")");
        }
    }
}

/// The columns of [`StoredEvent`], in the order [`decode_event`] reads them.
const EVENT_COLUMNS: &str = "SELECT global_position, tenant_id, aggregate_type, aggregate_id, \
     sequence, event_type, event_version, payload, metadata, recorded_at, tx_id::text AS tx_id_text \
     FROM events";

/// The readable part of the log: every transaction below the oldest running one has ended.
const READABLE: &str = "tx_id < pg_snapshot_xmin(pg_current_snapshot())";

fn parse_xid8(text: &str, column: &str) -> Result<u64, sqlx::Error> {
    text.parse::<u64>().map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    })
}

fn decode_event(row: &PgRow) -> Result<StoredEvent, sqlx::Error> {
    let global_position: i64 = row.try_get("global_position")?;
    let tx_text: String = row.try_get("tx_id_text")?;
    let tx_id = parse_xid8(&tx_text, "tx_id")?;
    // Every reader of the log meets the current version of each event type (the log keeps
    // what was stored; `chronicle_domain::upcast`).
    let event_type: String = row.try_get("event_type")?;
    let mut event_version: String = row.try_get("event_version")?;
    let mut payload: serde_json::Value = row.try_get("payload")?;
    if let Some(version) = chronicle_domain::upcast::upcast(&event_type, &event_version, &mut payload) {
        event_version = version.to_string();
    }
    Ok(StoredEvent {
        cursor: Cursor::new(tx_id, global_position),
        global_position,
        tenant_id: row.try_get("tenant_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type,
        event_version,
        payload,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
        tx_id,
    })
}

/// Reads up to `limit` events after `after`, in the log's final order (see the module docs).
///
/// Returns fewer than `limit` (possibly none) when it reaches the end of the readable log; the
/// last event's `cursor` is where to continue. Run on a transaction's connection, it reads with
/// that statement's snapshot: call it before the transaction writes anything (a transaction
/// holding an id holds the readable end down to itself).
pub async fn read_after<'e, E>(
    db: E,
    after: Cursor,
    filter: &LogFilter,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    let mut q = QueryBuilder::<Postgres>::new(EVENT_COLUMNS);
    q.push(" WHERE ")
        .push(READABLE)
        .push(" AND (tx_id, global_position) > (")
        .push_bind(after.tx_id.to_string())
        .push("::text::xid8, ")
        .push_bind(after.position)
        .push(")");
    filter.push_conditions(&mut q);
    q.push(" ORDER BY tx_id, global_position LIMIT ")
        .push_bind(limit.max(0));
    let rows = q.build().fetch_all(db).await?;
    rows.iter().map(decode_event).collect()
}

/// Up to which point [`stream_events`] reads a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Every committed event.
    Now,
    /// The events at or before this cursor in the log's order.
    Cursor(Cursor),
    /// The events recorded at or before this time (`recorded_at`).
    Time(DateTime<Utc>),
}

/// One stream's events in sequence order, up to `as_of`: what an aggregate is folded from.
pub async fn stream_events<'e, E>(
    db: E,
    aggregate_type: &str,
    aggregate_id: &str,
    as_of: AsOf,
) -> Result<Vec<StoredEvent>, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    let mut q = QueryBuilder::<Postgres>::new(EVENT_COLUMNS);
    q.push(" WHERE aggregate_type = ")
        .push_bind(aggregate_type.to_owned())
        .push(" AND aggregate_id = ")
        .push_bind(aggregate_id.to_owned());
    match as_of {
        AsOf::Now => {}
        AsOf::Cursor(cursor) => {
            q.push(" AND (tx_id, global_position) <= (")
                .push_bind(cursor.tx_id.to_string())
                .push("::text::xid8, ")
                .push_bind(cursor.position)
                .push(")");
        }
        AsOf::Time(time) => {
            q.push(" AND recorded_at <= ").push_bind(time);
        }
    }
    q.push(" ORDER BY sequence");
    let rows = q.build().fetch_all(db).await?;
    rows.iter().map(decode_event).collect()
}

/// The wrapped data key of a contact (`contact_keys`), `None` when it was destroyed by an
/// erasure (or never made). For readers outside the projectors (the replay tool's history and
/// export), which open envelopes themselves.
pub async fn wrapped_contact_key<'e, E>(db: E, tenant: &str, contact_id: &str) -> Result<Option<Vec<u8>>, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query_scalar("SELECT wrapped_key FROM contact_keys WHERE tenant_id = $1 AND contact_id = $2")
        .bind(tenant)
        .bind(contact_id)
        .fetch_optional(db)
        .await
}

/// How many events of `tenant` lie after `after` (committed; for a progress bar's length).
pub async fn count_after<'e, E>(db: E, tenant: &str, after: Cursor) -> Result<u64, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE tenant_id = $1 AND (tx_id, global_position) > ($2::text::xid8, $3)",
    )
    .bind(tenant)
    .bind(after.tx_id.to_string())
    .bind(after.position)
    .fetch_one(db)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The aggregate types that have a stream with this id (normally one).
pub async fn stream_types<'e, E>(db: E, aggregate_id: &str) -> Result<Vec<String>, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    // No index leads with aggregate_id: this scans the log (pass the type to avoid it).
    sqlx::query_scalar("SELECT DISTINCT aggregate_type FROM events WHERE aggregate_id = $1 ORDER BY 1")
        .bind(aggregate_id)
        .fetch_all(db)
        .await
}

/// The cursor of the last readable event matching `filter`, or `None` when there is none.
///
/// A reader at this cursor has nothing left to read right now (useful for lag).
pub async fn head<'e, E>(db: E, filter: &LogFilter) -> Result<Option<Cursor>, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    let mut q = QueryBuilder::<Postgres>::new("SELECT tx_id::text AS tx_id_text, global_position FROM events WHERE ");
    q.push(READABLE);
    filter.push_conditions(&mut q);
    q.push(" ORDER BY tx_id DESC, global_position DESC LIMIT 1");
    let row = q.build().fetch_optional(db).await?;
    match row {
        None => Ok(None),
        Some(row) => {
            let tx_text: String = row.try_get("tx_id_text")?;
            Ok(Some(Cursor::new(
                parse_xid8(&tx_text, "tx_id")?,
                row.try_get("global_position")?,
            )))
        }
    }
}

/// The tenant's event at `position`, if it has one.
pub async fn event_at<'e, E>(db: E, tenant: &str, position: i64) -> Result<Option<StoredEvent>, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    let mut q = QueryBuilder::<Postgres>::new(EVENT_COLUMNS);
    q.push(" WHERE tenant_id = ")
        .push_bind(tenant.to_owned())
        .push(" AND global_position = ")
        .push_bind(position);
    let row = q.build().fetch_optional(db).await?;
    row.as_ref().map(decode_event).transpose()
}

/// Whether any committed event matching `filter` lies after `after`, readable or not.
///
/// After a [`read_after`] at `after` came back empty, `true` means events are held back by an
/// open write (or committed since the read): look again soon rather than at the next poll
/// (see the module docs). `false` means everything committed has been read.
pub async fn any_committed_after<'e, E>(db: E, after: Cursor, filter: &LogFilter) -> Result<bool, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    // Not `SELECT EXISTS (...)`: after five executions PostgreSQL switches to a generic plan,
    // which guesses a third of the log lies after any cursor and scans the whole table for the
    // EXISTS (91-180 ms on a 334 k-event log, on every idle poll). Ordered with LIMIT 1 it walks
    // the log-order index from the cursor and stops at the first row.
    let mut q = QueryBuilder::<Postgres>::new("SELECT 1 FROM events WHERE (tx_id, global_position) > (");
    q.push_bind(after.tx_id.to_string())
        .push("::text::xid8, ")
        .push_bind(after.position)
        .push(")");
    filter.push_conditions(&mut q);
    q.push(" ORDER BY tx_id, global_position LIMIT 1");
    Ok(q.build().fetch_optional(db).await?.is_some())
}

/// The first delay before looking again at events held back by an open write; doubled on
/// each try, up to [`BLOCKED_RETRY_MAX`] (or the poll interval, if shorter).
pub const BLOCKED_RETRY_MIN: Duration = Duration::from_millis(20);

/// The longest delay between looks at events held back by an open write: the open write may
/// end at any moment and nothing will announce it.
pub const BLOCKED_RETRY_MAX: Duration = Duration::from_millis(500);

/// How long [`stream_after`] waits for a wake-up before it looks again anyway.
pub const STREAM_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The events after `after`, history first, then live, forever.
///
/// Reads batches of `batch` until the readable log is exhausted, then waits for a wake-up for
/// the filter's tenant (any tenant's when the filter has none) or [`STREAM_POLL_INTERVAL`], and
/// reads again; sooner when committed events are held back by an open write
/// ([`any_committed_after`]). Subscribe `wake` before calling (as `Wakeups::subscribe` does when called
/// first) so that no wake-up between the history and the wait is lost. A database error is
/// yielded and ends the stream; resume from the last event's cursor.
pub fn stream_after(
    pool: PgPool,
    after: Cursor,
    filter: LogFilter,
    batch: i64,
    mut wake: WakeReceiver,
) -> impl Stream<Item = Result<StoredEvent, sqlx::Error>> + Send + 'static {
    let batch = batch.max(1);
    async_stream::try_stream! {
        let mut cursor = after;
        let mut blocked_retry = BLOCKED_RETRY_MIN;
        loop {
            let events = read_after(&pool, cursor, &filter, batch).await?;
            if events.is_empty() {
                let pause = if any_committed_after(&pool, cursor, &filter).await? {
                    let pause = blocked_retry;
                    blocked_retry = (blocked_retry * 2).min(BLOCKED_RETRY_MAX);
                    pause
                } else {
                    blocked_retry = BLOCKED_RETRY_MIN;
                    STREAM_POLL_INTERVAL
                };
                wake.wait(filter.tenant_id.as_deref(), pause).await;
                continue;
            }
            blocked_retry = BLOCKED_RETRY_MIN;
            for event in events {
                cursor = event.cursor;
                yield event;
            }
        }
    }
}

/// The naive reader, which loses events. Do not use.
#[doc(hidden)]
pub mod naive {
    use super::{decode_event, StoredEvent, EVENT_COLUMNS};

    /// WRONG: reads `global_position > $1 ORDER BY global_position`.
    ///
    /// An event whose transaction commits after a higher-numbered event was read is skipped
    /// forever (see the module docs of [`crate::log`]). Kept only so the ordering test can show
    /// that it does; read with [`crate::log::read_after`].
    pub async fn read_naive_after_position<'e, E>(
        db: E,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, sqlx::Error>
    where
        E: sqlx::PgExecutor<'e>,
    {
        let sql = format!("{EVENT_COLUMNS} WHERE global_position > $1 ORDER BY global_position LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(after_position)
            .bind(limit.max(0))
            .fetch_all(db)
            .await?;
        rows.iter().map(decode_event).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_string_form() {
        for cursor in [
            Cursor::START,
            Cursor::new(1, 1),
            Cursor::new(748, 123_456),
            Cursor::new(u64::MAX, i64::MAX),
        ] {
            let text = cursor.to_string();
            assert!(text.starts_with("c1."), "{text}");
            assert_eq!(text.len(), 25, "{text}");
            assert_eq!(text.parse::<Cursor>(), Ok(cursor));
        }
    }

    #[test]
    fn a_cursor_serializes_as_its_string_form() {
        let cursor = Cursor::new(9, 42);
        let json = serde_json::to_string(&cursor).unwrap();
        assert_eq!(json, format!("\"{cursor}\""));
        assert_eq!(serde_json::from_str::<Cursor>(&json).unwrap(), cursor);
        assert!(serde_json::from_str::<Cursor>("\"nope\"").is_err());
    }

    #[test]
    fn malformed_cursors_are_rejected_with_a_reason() {
        let good = Cursor::new(5, 6).to_string();
        let body = &good[3..];
        assert_eq!("".parse::<Cursor>(), Err(CursorError::UnknownVersion));
        assert_eq!(body.parse::<Cursor>(), Err(CursorError::UnknownVersion));
        assert_eq!(format!("c2.{body}").parse::<Cursor>(), Err(CursorError::UnknownVersion));
        assert_eq!("c1.!!!!".parse::<Cursor>(), Err(CursorError::Encoding));
        assert_eq!(format!("{good}=").parse::<Cursor>(), Err(CursorError::Encoding));
        assert_eq!("c1.AAAA".parse::<Cursor>(), Err(CursorError::Length(3)));
        assert_eq!(format!("{good}AAAA").parse::<Cursor>(), Err(CursorError::Length(19)));
        let negative = format!("c1.{}", URL_SAFE_NO_PAD.encode(Cursor::new(1, -1).to_bytes()));
        assert_eq!(negative.parse::<Cursor>(), Err(CursorError::NegativePosition));
        // Non-canonical trailing bits: 16 bytes leave 4 unused bits in the last character,
        // so "...AB" would decode to the same bytes as "...AA"; one string per cursor only.
        let start = Cursor::START.to_string();
        assert_eq!(start, format!("c1.{}", "A".repeat(22)));
        let non_canonical = format!("c1.{}B", "A".repeat(21));
        assert_eq!(non_canonical.parse::<Cursor>(), Err(CursorError::Encoding));
    }

    #[test]
    fn cursors_order_as_the_log_does() {
        assert!(Cursor::START < Cursor::new(1, 0));
        assert!(Cursor::new(1, 900) < Cursor::new(2, 3));
        assert!(Cursor::new(2, 3) < Cursor::new(2, 4));
    }

    #[test]
    fn an_empty_type_list_means_every_type() {
        assert_eq!(LogFilter::all().with_types(Vec::<String>::new()), LogFilter::all());
        let f = LogFilter::tenant("t1").with_types(["A", "B"]);
        assert_eq!(f.tenant_id.as_deref(), Some("t1"));
        assert_eq!(f.types(), Some(&["A".to_owned(), "B".to_owned()][..]));
        let raw = LogFilter {
            event_types: Some(vec![]),
            ..LogFilter::default()
        };
        assert_eq!(raw.types(), None);
    }
}
