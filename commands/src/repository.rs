//! Chronicle's event repository: postgres-es's tables and rows, with fewer round trips per
//! command (benchmarks, issue 6).
//!
//! postgres-es appends with `BEGIN`, one `INSERT` per event and `COMMIT`, and loads a snapshot
//! aggregate with a snapshot `SELECT` and then an events `SELECT` whose SQL text embeds the
//! snapshot's sequence (a new prepared statement for every sequence). [`ChronicleEventRepository`]:
//!
//! - appends a commit's events through the dispatcher's [`GroupCommitter`]: one statement
//!   (`chronicle_append_batch`) for the events of every command waiting at that moment, so
//!   concurrent commands of different callers share one transaction and one flush, each
//!   still stored all or none and refused alone on its own conflict; the hash-chain trigger
//!   still sees a command's earlier events (migration 0002), and the transaction id that
//!   orders the gap-free read is still the appending transaction's. No notification is sent
//!   inside it (readers are woken after commit: [`crate::announce`]);
//! - loads the snapshot and the events after it (all of them without a snapshot) in **one**
//!   statement, and hands those events to the event store's next `get_last_events` call for that
//!   stream and sequence (the store asks for them right after the snapshot); any other call
//!   reads them with a bound parameter;
//! - keeps the last snapshot of each stream it read or wrote (a few hundred at most), and asks
//!   the database for a snapshot's payload only when it is not the cached one: a long stream's
//!   snapshot is large (its bounded dedupe window), and a stream's snapshot at a given sequence
//!   never changes;
//! - leaves commits that also move the snapshot to postgres-es's transaction (the events and the
//!   snapshot's optimistic check must commit together; that is one commit in every snapshot
//!   size).

use std::collections::HashMap;
use std::sync::Mutex;

use cqrs_es::persist::{
    EventUpcaster, PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::committer::{persistence_error, GroupCommitter};

/// Events read together with a snapshot, waiting for the store's `get_last_events` call, by
/// (aggregate type, aggregate id, snapshot sequence).
type Prefetched = HashMap<(String, String, usize), Vec<SerializedEvent>>;

/// The last snapshot read or written per stream: (its last sequence, its payload). A stream's snapshot at a given sequence is always the same (it folds the same
/// events), so a load whose snapshot is still at the cached sequence is not sent the payload
/// again (a long stream's snapshot is large: its bounded dedupe window).
type Snapshots = HashMap<(String, String), (usize, Value)>;

/// At most this many cached snapshots; beyond it the cache starts over.
const MAX_SNAPSHOTS: usize = 256;

/// More prefetched entries than this (loads whose events were never asked for, e.g. after a
/// snapshot that did not deserialize) and the map is cleared: a miss only costs a query.
const MAX_PREFETCHED: usize = 1024;

/// The event repository of [`crate::dispatch::Commands`]: postgres-es's, with one-statement
/// appends and loads (see the module docs).
pub struct ChronicleEventRepository {
    pool: PgPool,
    committer: GroupCommitter,
    inner: PostgresEventRepository,
    prefetched: Mutex<Prefetched>,
    snapshots: Mutex<Snapshots>,
}

impl std::fmt::Debug for ChronicleEventRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChronicleEventRepository").finish_non_exhaustive()
    }
}

impl ChronicleEventRepository {
    /// A repository over the `events` and `snapshots` tables of `pool`'s database, with a
    /// group committer of its own.
    pub fn new(pool: PgPool) -> Self {
        Self::with_committer(pool.clone(), GroupCommitter::new(pool))
    }

    /// A repository appending through `committer` (a dispatcher shares one between every
    /// aggregate type, so their commands commit together).
    pub fn with_committer(pool: PgPool, committer: GroupCommitter) -> Self {
        Self {
            committer,
            inner: PostgresEventRepository::new(pool.clone()),
            pool,
            prefetched: Mutex::new(HashMap::new()),
            snapshots: Mutex::new(HashMap::new()),
        }
    }

    /// The sequence of the stream's last event (0 for an empty stream): one lookup of the
    /// primary key, to check that a cached state is still the stream's present one.
    pub(crate) async fn head<A: Aggregate>(&self, aggregate_id: &str) -> Result<usize, PersistenceError> {
        let head: Option<i64> =
            sqlx::query_scalar("SELECT max(sequence) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2")
                .bind(A::TYPE)
                .bind(aggregate_id)
                .fetch_one(&self.pool)
                .await
                .map_err(persistence_error)?;
        Ok(head.and_then(|h| usize::try_from(h).ok()).unwrap_or(0))
    }

    /// The stream's snapshot and the events after it (all of them without a snapshot), read in
    /// one statement and returned together, so two loads of one stream at once never exchange
    /// their events.
    pub(crate) async fn snapshot_and_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<(Option<SerializedSnapshot>, Vec<SerializedEvent>), PersistenceError> {
        // The snapshot (row `kind` 0; its payload only if it is not the one cached), then the
        // events after it (`kind` 1), in one statement. The events' range has two bounds the
        // planner cannot see, so it estimates a short range and reads the stream's index even
        // for a stream that is most of the table.
        let key = (A::TYPE.to_string(), aggregate_id.to_string());
        let cached = self
            .snapshots
            .lock()
            .ok()
            .and_then(|map| map.get(&key).map(|(sequence, _)| *sequence));
        let rows = sqlx::query(
            "WITH s AS (SELECT last_sequence, current_snapshot, payload FROM snapshots
                         WHERE aggregate_type = $1 AND aggregate_id = $2)
             SELECT 0 AS kind, last_sequence AS sequence, current_snapshot, NULL::text AS event_type,
                    NULL::text AS event_version,
                    CASE WHEN last_sequence IS NOT DISTINCT FROM $3 THEN NULL ELSE payload END AS payload,
                    NULL::json AS metadata
               FROM s
             UNION ALL
             SELECT 1, e.sequence, NULL, e.event_type, e.event_version, e.payload, e.metadata
               FROM (SELECT coalesce((SELECT last_sequence FROM s), 0) AS after) f
               JOIN events e ON e.aggregate_type = $1 AND e.aggregate_id = $2
                AND e.sequence > f.after AND e.sequence <= greatest(f.after, 9223372036854775807)
             ORDER BY kind, sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(cached.and_then(|c| i64::try_from(c).ok()))
        .fetch_all(&self.pool)
        .await
        .map_err(persistence_error)?;
        let mut snapshot = None;
        let mut events = Vec::new();
        for row in &rows {
            let kind: i32 = row.try_get("kind").map_err(persistence_error)?;
            let sequence: i64 = row.try_get("sequence").map_err(persistence_error)?;
            let sequence = usize::try_from(sequence).unwrap_or_default();
            let payload: Option<Value> = row.try_get("payload").map_err(persistence_error)?;
            if kind == 0 {
                let current: i64 = row.try_get("current_snapshot").map_err(persistence_error)?;
                let current = usize::try_from(current).unwrap_or_default();
                let aggregate = match payload {
                    Some(payload) => {
                        self.keep_snapshot(key.clone(), sequence, &payload);
                        payload
                    }
                    // Not sent: the cached one is this very snapshot.
                    None => match self.cached_snapshot(&key, sequence) {
                        Some(payload) => payload,
                        None => {
                            let snapshot = self.inner.get_snapshot::<A>(aggregate_id).await?;
                            let after = snapshot.as_ref().map_or(0, |s| s.current_sequence);
                            let events = self.events_after::<A>(aggregate_id, after).await?;
                            return Ok((snapshot, events));
                        }
                    },
                };
                snapshot = Some(SerializedSnapshot {
                    aggregate_id: aggregate_id.to_string(),
                    aggregate,
                    current_sequence: sequence,
                    current_snapshot: current,
                });
            } else {
                let payload = payload.unwrap_or(Value::Null);
                events.push(upcast(SerializedEvent::new(
                    aggregate_id.to_string(),
                    sequence,
                    A::TYPE.to_string(),
                    row.try_get("event_type").map_err(persistence_error)?,
                    row.try_get("event_version").map_err(persistence_error)?,
                    payload,
                    row.try_get("metadata").map_err(persistence_error)?,
                )));
            }
        }
        Ok((snapshot, events))
    }

    /// The stream's events after `last_sequence`, in order.
    pub(crate) async fn events_after<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
               FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
              ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(i64::try_from(last_sequence).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(persistence_error)?;
        rows.iter()
            .map(event_of)
            .collect::<Result<_, _>>()
            .map_err(persistence_error)
    }

    fn take_prefetched(&self, key: &(String, String, usize)) -> Option<Vec<SerializedEvent>> {
        self.prefetched.lock().ok().and_then(|mut map| map.remove(key))
    }

    fn cached_snapshot(&self, key: &(String, String), sequence: usize) -> Option<Value> {
        let map = self.snapshots.lock().ok()?;
        map.get(key)
            .filter(|(cached, _)| *cached == sequence)
            .map(|(_, payload)| payload.clone())
    }

    fn keep_snapshot(&self, key: (String, String), sequence: usize, payload: &Value) {
        if let Ok(mut map) = self.snapshots.lock() {
            if map.len() >= MAX_SNAPSHOTS && !map.contains_key(&key) {
                map.clear();
            }
            map.insert(key, (sequence, payload.clone()));
        }
    }

    fn keep_prefetched(&self, key: (String, String, usize), events: Vec<SerializedEvent>) {
        if let Ok(mut map) = self.prefetched.lock() {
            if map.len() >= MAX_PREFETCHED {
                map.clear();
            }
            map.insert(key, events);
        }
    }
}

tokio::task_local! {
    /// The positions appended by the command running in this task (see [`collect_positions`]).
    static APPENDED: std::cell::RefCell<Vec<i64>>;
}

tokio::task_local! {
    /// What the commands run in this task wrote (see [`track_writes`]).
    static WRITTEN: std::cell::RefCell<Written>;
}

/// Where an event lies in the log: its writing transaction's id (`tx_id`, `xid8`) and its
/// `global_position`. Ordered as the log is (transaction id first), like the read side's
/// `chronicle_projections::log::Cursor`, which the API builds from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogPoint {
    /// The writing transaction's id.
    pub tx_id: u64,
    /// The event's `global_position`.
    pub position: i64,
}

/// What the commands run inside [`track_writes`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    /// Events appended.
    pub appended: usize,
    /// The latest log point among the events appended and the heads of the streams a repeated
    /// command left unchanged (its earlier outcome): a reader that has reached it sees every
    /// outcome the caller was told about. `None` when no command touched a stream.
    pub last: Option<LogPoint>,
}

/// Runs `work` (any number of commands, in this task) and returns its result with what they
/// wrote: how many events, and the latest log point (see [`Written::last`]). The API wraps each
/// mutation in it to answer with a cursor the reads can wait for. Scopes nest: what an inner
/// one saw counts in the enclosing one too.
pub async fn track_writes<T>(work: impl std::future::Future<Output = T>) -> (T, Written) {
    let (result, written) = WRITTEN
        .scope(std::cell::RefCell::new(Written::default()), async move {
            let result = work.await;
            let written = WRITTEN.with(|cell| *cell.borrow());
            (result, written)
        })
        .await;
    if let Some(last) = written.last {
        note_written(last, written.appended);
    }
    (result, written)
}

/// Whether [`track_writes`] is watching this task (a repeat then looks up its stream's head).
pub(crate) fn tracking_writes() -> bool {
    WRITTEN.try_with(|_| ()).is_ok()
}

/// Records log points for [`track_writes`]: `appended` new events, the latest at `point`.
pub(crate) fn note_written(point: LogPoint, appended: usize) {
    let _ = WRITTEN.try_with(|cell| {
        let mut written = cell.borrow_mut();
        written.appended += appended;
        written.last = written.last.max(Some(point));
    });
}

/// Runs `execute` (one command through cqrs-es, which persists in the calling task) and returns
/// its result with the `global_position`s the repository appended meanwhile, in order.
pub async fn collect_positions<T>(execute: impl std::future::Future<Output = T>) -> (T, Vec<i64>) {
    APPENDED
        .scope(std::cell::RefCell::new(Vec::new()), async move {
            let result = execute.await;
            let positions = APPENDED.with(|cell| cell.take());
            (result, positions)
        })
        .await
}

/// Records appended events for [`collect_positions`] and [`track_writes`] (nothing outside
/// their scopes): `(tx_id as text, global_position)` rows, ordered by position.
fn record_positions(rows: Vec<(String, i64)>) {
    let points: Vec<LogPoint> = rows
        .iter()
        .filter_map(|(tx, position)| {
            tx.parse::<u64>().ok().map(|tx_id| LogPoint {
                tx_id,
                position: *position,
            })
        })
        .collect();
    if let Some(last) = points.iter().max() {
        note_written(*last, points.len());
    }
    let _ = APPENDED.try_with(|cell| cell.borrow_mut().extend(rows.iter().map(|(_, p)| *p)));
}

fn event_of(row: &PgRow) -> Result<SerializedEvent, sqlx::Error> {
    let sequence: i64 = row.try_get("sequence")?;
    Ok(upcast(SerializedEvent::new(
        row.try_get("aggregate_id")?,
        usize::try_from(sequence).unwrap_or_default(),
        row.try_get("aggregate_type")?,
        row.try_get("event_type")?,
        row.try_get("event_version")?,
        row.try_get("payload")?,
        row.try_get("metadata")?,
    )))
}

/// A stored event brought to the current version of its type (`chronicle_domain::upcast`):
/// every event an aggregate is loaded from goes through this.
pub(crate) fn upcast(mut event: SerializedEvent) -> SerializedEvent {
    if let Some(version) = chronicle_domain::upcast::upcast(&event.event_type, &event.event_version, &mut event.payload)
    {
        event.event_version = version.to_string();
    }
    event
}

/// The domain's upcasters as cqrs-es's [`EventUpcaster`], for the aggregates loaded through
/// `cqrs_es::persist::PersistedEventStore` ([`upcasters`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct DomainUpcaster;

impl EventUpcaster for DomainUpcaster {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        chronicle_domain::upcast::history(event_type).any(|step| step.from == event_version)
    }

    fn upcast(&self, event: SerializedEvent) -> SerializedEvent {
        upcast(event)
    }
}

/// The upcasters to give every `PersistedEventStore` (`with_upcasters`).
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(DomainUpcaster)]
}

impl PersistedEventRepository for ChronicleEventRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        Ok(self
            .inner
            .get_events::<A>(aggregate_id)
            .await?
            .into_iter()
            .map(upcast)
            .collect())
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let key = (A::TYPE.to_string(), aggregate_id.to_string(), last_sequence);
        if let Some(events) = self.take_prefetched(&key) {
            return Ok(events);
        }
        self.events_after::<A>(aggregate_id, last_sequence).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let (snapshot, events) = self.snapshot_and_events::<A>(aggregate_id).await?;
        // Without a snapshot the store asks for the events after sequence 0: all of them.
        let after = snapshot.as_ref().map_or(0, |s| s.current_sequence);
        self.keep_prefetched((A::TYPE.to_string(), aggregate_id.to_string(), after), events);
        Ok(snapshot)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if let Some((aggregate_id, payload, current)) = snapshot_update {
            let sequence = events.last().map(|e| e.sequence);
            let kept = sequence.map(|sequence| (aggregate_id.clone(), sequence, payload.clone()));
            self.inner
                .persist::<A>(events, Some((aggregate_id, payload, current)))
                .await?;
            if let (Some(first), Some(last)) = (events.first(), events.last()) {
                // postgres-es's append returns nothing: read the positions it was given. The
                // events are committed already, so a failed read is no failed command: the
                // caller gets no positions (and a receipt falls back to the stream's head).
                let positions = sqlx::query_as::<_, (String, i64)>(
                    "SELECT tx_id::text, global_position FROM events
                      WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence BETWEEN $3 AND $4
                      ORDER BY sequence",
                )
                .bind(A::TYPE)
                .bind(first.aggregate_id.as_str())
                .bind(i64::try_from(first.sequence).unwrap_or(i64::MAX))
                .bind(i64::try_from(last.sequence).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await;
                match positions {
                    Ok(positions) => record_positions(positions),
                    Err(e) => tracing::warn!(error = %e, "appended, but the events' positions could not be read back"),
                }
            }
            if let Some((aggregate_id, sequence, payload)) = kept {
                self.keep_snapshot((A::TYPE.to_string(), aggregate_id), sequence, &payload);
            }
            return Ok(());
        }
        if events.is_empty() {
            return Ok(());
        }
        let positions = self.committer.append(A::TYPE, events.to_vec()).await?;
        record_positions(positions);
        Ok(())
    }

    // The two replay streams are upcast by their reader: `ReplayStream::next` takes the
    // upcasters to apply (give it [`upcasters`]).
    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_all_events::<A>().await
    }
}
