//! Blue/green rebuilds: read models rebuilt from zero beside the live ones while queries go on,
//! compared with them and swapped in one transaction (the replay tool's `rebuild`, issue 11).
//!
//! The in-place rebuild of [`crate::runtime::ProjectorRunner::rebuild`] empties the tables and
//! refills them: queries see an empty or partial read model meanwhile. This one does not:
//!
//! 1. **One at a time.** A rebuild holds the session advisory lock `chronicle.rebuild` on a
//!    connection of its own; a second one is refused ([`RebuildError::AlreadyRunning`]).
//! 2. **New tables beside the live ones**, in the schema [`SHADOW_SCHEMA`]: for every table of
//!    every projector rebuilt ([`Projector::tables`]), the live table's columns, defaults,
//!    checks, identity and storage (`LIKE … INCLUDING ALL EXCLUDING INDEXES`), then its
//!    primary key, unique and exclusion constraints and its other indexes under the same names,
//!    its row-level security flags and policies, its grants, options and owner. A table the
//!    swap could not carry over whole (a trigger, a rule, a view over it, a foreign key from
//!    or to it, column grants, not a plain table, and the rest listed here) is refused before
//!    anything is built
//!    ([`RebuildError::Unsupported`]): a trigger, a rule, a view, a function, a publication or
//!    another table's policy over it, a foreign key, column grants, extended statistics, a
//!    default drawing from a sequence (the sequence would stay with the replaced table).
//! 3. **One read of the log for all of them.** A connection whose `search_path` puts the
//!    shadow schema first (the projectors' unqualified SQL then writes the new tables, and
//!    reads any other table, contacts' keys for instance, where it lives) reads the log once,
//!    in batches of [`RebuildOptions::batch_size`] in log order, and hands each projector the
//!    events of its types, every projector's rows of a batch committed together. The live
//!    runners go on meanwhile; nothing of theirs is touched. The reads follow the runtime's
//!    rule (read while the transaction holds no id; see [`crate::runtime`]), so no event is
//!    skipped.
//! 4. **The swap, in one transaction.** It checks it still holds the rebuild's lock, locks the
//!    projectors' checkpoint rows (a live batch in flight commits first; the next one sees the
//!    moved checkpoint and reads again), then brings both sides to one cursor: the new tables
//!    through the rest of the readable log, and a live projector that is a little behind (at
//!    most [`LIVE_CATCH_UP_LIMIT`] events) through the events it lacks. At that cursor each
//!    pair of tables is compared ([`TableComparison`]: rows and a checksum of their text); the
//!    tables of a projector that never ran or is further behind are not compared (its runner
//!    would wait as long as a rebuild). Then every table is locked, the live tables move to
//!    [`REPLACED_SCHEMA`], the new ones into `public`, and the checkpoints to the cursor;
//!    commit. Queries see the old tables until the commit and the new ones after: prepared
//!    statements name tables, so PostgreSQL plans them again on the new ones. The locks are
//!    taken with a short `lock_timeout`, and all of them within a short `statement_timeout`:
//!    when queries hold a table, the transaction rolls back (the replay's position with it),
//!    the new tables catch up a little more outside it, and it tries again without comparing
//!    again, so a query waits at most that long and none fails. (The short timeouts also keep
//!    the rebuild from ever being the one a deadlock would cancel: it gives up first.) The
//!    live runners of the projectors rebuilt wait while an attempt holds their checkpoints:
//!    for the first one, as long as the comparison takes.
//! 5. The replaced tables are dropped, one by one and without `CASCADE` (anything else that
//!    depended on one would make the drop fail, not disappear), then their schema.
//!
//! With [`RebuildOptions::swap`] off, steps 1 to 4 run without the move and the transaction is
//! rolled back: the live tables are compared with a fresh fold of the log and left as they are.
//!
//! Feeds are rebuilt like any table: the workers' marks keep them from doing work twice
//! (decision 0013). Nothing here sends anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::postgres::PgConnection;
use sqlx::{Connection as _, PgPool, Row as _};

use crate::log::{self, Cursor, LogFilter, StoredEvent};
use crate::runtime::{ProjectionError, Projector};

/// The schema the new tables are built in.
pub const SHADOW_SCHEMA: &str = "chronicle_rebuild";
/// The schema the live tables are moved to by the swap, dropped after it.
pub const REPLACED_SCHEMA: &str = "chronicle_replaced";

/// The advisory lock held for the whole rebuild (`hashtext` of it).
const LOCK_KEY: &str = "chronicle.rebuild";
/// How long the swap waits for a table that queries hold before it tries again.
const SWAP_LOCK_TIMEOUT: &str = "250ms";
/// How long the swap waits for all of its table locks together before it tries again.
const SWAP_LOCKS_TIMEOUT: &str = "500ms";
/// How many times the swap tries before giving up ([`RebuildError::SwapContended`]).
const SWAP_ATTEMPTS: u32 = 40;

/// How a rebuild runs.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// Events read per batch (one transaction for every projector's rows of it). Default 5,000.
    pub batch_size: i64,
    /// Swap the new tables in (default); off: compare only, leave the live tables as they are.
    pub swap: bool,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        RebuildOptions {
            batch_size: 5_000,
            swap: true,
        }
    }
}

/// Where a running rebuild is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildProgress {
    /// The log holds about `total` events of the projectors' types: the length of the bar.
    Started {
        /// Readable events of the rebuilt projectors' types when the rebuild began.
        total: u64,
    },
    /// `read` events of the log applied to the new tables so far.
    Replayed {
        /// Events read (and applied) so far.
        read: u64,
    },
    /// Caught up: comparing and swapping.
    Swapping,
}

/// One table compared with the one it replaces, at the same cursor of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableComparison {
    /// The projector that writes it.
    pub projector: String,
    /// The table.
    pub table: String,
    /// Whether the live table was compared: not when its projector had never run or was more
    /// than [`LIVE_CATCH_UP_LIMIT`] events behind (bringing it up to date in the swap would hold
    /// its runner for as long as a rebuild); the `live_*` fields are then as found.
    pub compared: bool,
    /// Events of its projector's types the live table lacked at the swap (applied to it before
    /// comparing when it was compared).
    pub live_behind_by: u64,
    /// Rows of the live table.
    pub live_rows: i64,
    /// Rows of the rebuilt table.
    pub rebuilt_rows: i64,
    /// Checksum of the live table's rows (md5 over the sorted md5s of each row's text).
    pub live_checksum: String,
    /// The same over the rebuilt table.
    pub rebuilt_checksum: String,
}

impl TableComparison {
    /// Whether the rebuilt table holds exactly the live one's rows (a table not compared counts
    /// as equal: nothing was found).
    pub fn equal(&self) -> bool {
        !self.compared || (self.live_rows == self.rebuilt_rows && self.live_checksum == self.rebuilt_checksum)
    }
}

/// A live projector further behind than this many events at the swap is not brought up to
/// date there (nor compared): its runner would wait for as long as a rebuild.
pub const LIVE_CATCH_UP_LIMIT: i64 = 10_000;

/// One projector's part of a rebuild.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectorRebuilt {
    /// The projector.
    pub projector: String,
    /// Events of its types applied to its new tables.
    pub events_applied: u64,
    /// Seconds spent in its `apply` (decoding, opening personal fields, writing rows).
    pub apply_seconds: f64,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebuildReport {
    /// The projectors rebuilt, in the order they were applied.
    pub projectors: Vec<ProjectorRebuilt>,
    /// Every table, compared with the live one at [`RebuildReport::cursor`].
    pub tables: Vec<TableComparison>,
    /// Events of the log read (once, for every projector).
    pub events_read: u64,
    /// Seconds spent reading the log (the rest is the projectors', the tables' and the swap's).
    pub read_seconds: f64,
    /// The log cursor the new tables (and the checkpoints, when swapped) stand at.
    pub cursor: Cursor,
    /// Whether the new tables replaced the live ones.
    pub swapped: bool,
    /// Seconds from start to end.
    pub seconds: f64,
    /// Swap transactions rolled back because queries held a table (then tried again).
    pub swap_retries: u32,
}

impl RebuildReport {
    /// The tables whose rebuilt rows differ from the live ones (the live read model had
    /// drifted from the log).
    pub fn differing(&self) -> Vec<&TableComparison> {
        self.tables.iter().filter(|t| !t.equal()).collect()
    }

    /// Events read per second.
    pub fn events_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events_read as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Why a rebuild did not complete. Nothing live was changed unless the swap committed (it is
/// the last step).
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Another rebuild holds the lock.
    #[error("another rebuild is running (it holds the `chronicle.rebuild` lock); try again when it is done")]
    AlreadyRunning,
    /// Nothing to rebuild.
    #[error("no projector to rebuild")]
    NothingToRebuild,
    /// A table the swap could not carry over whole.
    #[error("table {table} cannot be rebuilt beside the live one: {reason}")]
    Unsupported {
        /// The table.
        table: String,
        /// What it has that the swap would lose.
        reason: String,
    },
    /// Queries held the tables at every attempt.
    #[error("the swap could not lock the tables in {0} attempts (queries held them each time); nothing was swapped")]
    SwapContended(u32),
    /// The connection holding the rebuild's lock was lost: another rebuild may have started.
    #[error("the rebuild lost its lock (its connection closed); nothing was swapped, run it again")]
    LockLost,
    /// A projector failed on an event.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Rebuilds `projectors` beside their live tables and, with [`RebuildOptions::swap`], swaps the
/// new tables in (see the module docs). `progress` is called as the rebuild moves.
pub async fn rebuild(
    pool: &PgPool,
    projectors: &[Arc<dyn Projector>],
    options: &RebuildOptions,
    progress: &mut (dyn FnMut(RebuildProgress) + Send),
) -> Result<RebuildReport, RebuildError> {
    if projectors.is_empty() {
        return Err(RebuildError::NothingToRebuild);
    }
    let started = Instant::now();
    let mut lock = PgConnection::connect_with(&pool.connect_options()).await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind(LOCK_KEY)
        .fetch_one(&mut lock)
        .await?;
    if !locked {
        let _ = lock.close().await;
        return Err(RebuildError::AlreadyRunning);
    }
    let lock_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut lock)
        .await?;
    let result = rebuild_locked(&mut lock, lock_pid, pool, projectors, options, progress, started).await;
    // Whatever happened, no new or replaced table is left behind (a rebuild that crashed
    // leaves them to the next one, which drops them first).
    if let Err(error) = drop_schemas(&mut lock).await {
        tracing::warn!(%error, "the rebuild's schemas were not dropped; the next rebuild drops them");
    }
    let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(LOCK_KEY)
        .execute(&mut lock)
        .await;
    let _ = lock.close().await;
    result
}

async fn rebuild_locked(
    lock: &mut PgConnection,
    lock_pid: i32,
    pool: &PgPool,
    projectors: &[Arc<dyn Projector>],
    options: &RebuildOptions,
    progress: &mut (dyn FnMut(RebuildProgress) + Send),
    started: Instant,
) -> Result<RebuildReport, RebuildError> {
    // Tables, each once, with its projector.
    let mut tables: Vec<(&'static str, &'static str)> = Vec::new();
    for projector in projectors {
        for table in projector.tables() {
            check_identifier(table)?;
            if !tables.iter().any(|(t, _)| t == table) {
                tables.push((table, projector.name()));
            }
        }
    }
    // The new tables, in one transaction (one commit to flush, not one per statement).
    let mut ddl = lock.begin().await?;
    drop_schemas(&mut ddl).await?;
    for (table, _) in &tables {
        check_supported(&mut ddl, table).await?;
    }
    sqlx::query(&format!("CREATE SCHEMA {SHADOW_SCHEMA}"))
        .execute(&mut *ddl)
        .await?;
    for (table, _) in &tables {
        create_shadow(&mut ddl, table).await?;
    }
    ddl.commit().await?;
    tracing::info!(
        tables = tables.len(),
        seconds = started.elapsed().as_secs_f64(),
        "rebuild: new tables built beside the live ones"
    );

    let mut fill = PgConnection::connect_with(&pool.connect_options()).await?;
    sqlx::query(&format!("SET search_path = {SHADOW_SCHEMA}, public"))
        .execute(&mut fill)
        .await?;
    // The fill's commits need not wait for the disk: until the swap nothing depends on them
    // (a crash leaves new tables the next rebuild drops), and the swap commits synchronously,
    // which flushes everything written before it.
    sqlx::query("SET synchronous_commit = off").execute(&mut fill).await?;
    let mut replay = Replay::new(projectors, options.batch_size);
    let total: i64 = {
        let mut q = sqlx::QueryBuilder::new("SELECT count(*) FROM events WHERE true");
        if let Some(types) = &replay.filter.event_types {
            q.push(" AND event_type = ANY(").push_bind(types.clone()).push(")");
        }
        q.build_query_scalar::<i64>().fetch_one(&mut fill).await?
    };
    progress(RebuildProgress::Started {
        total: u64::try_from(total).unwrap_or(0),
    });
    // Fill until a batch comes back short: close to the head, the rest goes in the swap.
    loop {
        let full = replay.batch(&mut fill, None).await?;
        progress(RebuildProgress::Replayed {
            read: replay.state.read,
        });
        if !full {
            break;
        }
    }
    tracing::info!(
        events = replay.state.read,
        seconds = started.elapsed().as_secs_f64(),
        "rebuild: new tables filled; analyzing them"
    );
    // VACUUM, not only ANALYZE: the insert threshold would otherwise start autovacuum on the
    // new tables now, and its lock would hold up the swap.
    for (table, _) in &tables {
        sqlx::query(&format!("VACUUM (ANALYZE) {SHADOW_SCHEMA}.{table}"))
            .execute(&mut fill)
            .await?;
    }
    progress(RebuildProgress::Swapping);
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "rebuild: comparing and swapping"
    );

    let names: Vec<&'static str> = projectors.iter().map(|p| p.name()).collect();
    for name in &names {
        crate::runtime::ensure_checkpoint(&mut fill, name).await?;
    }
    let mut retries = 0;
    let mut compared: Option<Vec<TableComparison>> = None;
    let (comparisons, cursor) = loop {
        // A swap rolled back undoes what it applied to the new tables: the replay's position
        // goes back with it.
        let saved = replay.state.clone();
        let attempt = Swap {
            tables: &tables,
            names: &names,
            swap: options.swap,
            lock_pid,
            compared: compared.as_deref(),
        };
        match attempt.run(&mut fill, &mut replay).await {
            Ok(done) => break done,
            Err(SwapFailure::Contended { comparisons }) => {
                replay.state = saved;
                if compared.is_none() {
                    compared = comparisons;
                }
                retries += 1;
                if retries >= SWAP_ATTEMPTS {
                    return Err(RebuildError::SwapContended(retries));
                }
                tracing::debug!(attempt = retries, "tables held by queries; the swap tries again");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(retries.min(10)))).await;
                // Whatever the log gained meanwhile goes in now, outside the swap.
                replay.batch(&mut fill, None).await?;
            }
            Err(SwapFailure::Failed(error)) => return Err(error),
        }
    };
    let _ = fill.close().await;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        swapped = options.swap,
        retries,
        "rebuild: compared{}",
        if options.swap { " and swapped" } else { "" }
    );
    if options.swap {
        crate::runtime::progress().notify_waiters();
    }
    Ok(RebuildReport {
        projectors: projectors
            .iter()
            .map(|p| ProjectorRebuilt {
                projector: p.name().to_owned(),
                events_applied: replay.state.applied.get(p.name()).copied().unwrap_or(0),
                apply_seconds: replay.state.seconds.get(p.name()).copied().unwrap_or(0.0),
            })
            .collect(),
        tables: comparisons,
        events_read: replay.state.read,
        read_seconds: replay.state.read_seconds,
        cursor,
        swapped: options.swap,
        seconds: started.elapsed().as_secs_f64(),
        swap_retries: retries,
    })
}

/// The shared read of the log and where it stands.
struct Replay<'p> {
    projectors: &'p [Arc<dyn Projector>],
    filter: LogFilter,
    batch_size: i64,
    state: ReplayState,
}

/// Where a replay stands: restored when a transaction that moved it rolls back.
#[derive(Debug, Clone, Default)]
struct ReplayState {
    /// The new tables hold everything up to here.
    cursor: Cursor,
    read: u64,
    read_seconds: f64,
    applied: BTreeMap<&'static str, u64>,
    seconds: BTreeMap<&'static str, f64>,
}

impl<'p> Replay<'p> {
    fn new(projectors: &'p [Arc<dyn Projector>], batch_size: i64) -> Self {
        // The union of the projectors' types; one reading every type reads every event.
        let mut types: Vec<&'static str> = Vec::new();
        let mut every = false;
        for projector in projectors {
            if projector.event_types().is_empty() {
                every = true;
            }
            types.extend(projector.event_types());
        }
        types.sort_unstable();
        types.dedup();
        let filter = if every {
            LogFilter::all()
        } else {
            LogFilter::all().with_types(types)
        };
        Replay {
            projectors,
            filter,
            batch_size: batch_size.max(1),
            state: ReplayState::default(),
        }
    }

    /// Reads the next batch (up to `through` when given) and applies it to every projector in
    /// its own transaction. Answers whether the batch was full (more may be readable).
    async fn batch(&mut self, conn: &mut PgConnection, through: Option<Cursor>) -> Result<bool, RebuildError> {
        let mut tx = conn.begin().await?;
        let full = self.batch_in(&mut tx, through).await?;
        tx.commit().await?;
        Ok(full)
    }

    /// [`Replay::batch`] inside a transaction of the caller's.
    async fn batch_in(&mut self, tx: &mut PgConnection, through: Option<Cursor>) -> Result<bool, RebuildError> {
        // As the runtime does: the readable head first (any type), so the cursor moves past
        // other types' events when nothing of ours is left before it.
        let horizon = if through.is_none() && self.filter.event_types.is_some() {
            log::head(&mut *tx, &LogFilter::all()).await?
        } else {
            None
        };
        let mut filter = self.filter.clone();
        filter.through = through;
        let reading = Instant::now();
        let events = log::read_after(&mut *tx, self.state.cursor, &filter, self.batch_size).await?;
        self.state.read_seconds += reading.elapsed().as_secs_f64();
        let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= self.batch_size;
        if !events.is_empty() {
            self.apply(tx, &events).await?;
        }
        if let Some(last) = events.last() {
            self.state.cursor = last.cursor;
        }
        if let Some(head) = horizon.filter(|head| !full && *head > self.state.cursor) {
            self.state.cursor = head;
        }
        Ok(full)
    }

    async fn apply(&mut self, tx: &mut PgConnection, events: &[StoredEvent]) -> Result<(), RebuildError> {
        // Each projector gets its part of the batch borrowed, never copied (payloads are JSON
        // trees: copying them for every projector cost a sixth of a rebuild).
        let mut mine: Vec<&StoredEvent> = Vec::with_capacity(events.len());
        for projector in self.projectors {
            let types = projector.event_types();
            mine.clear();
            mine.extend(
                events
                    .iter()
                    .filter(|e| types.is_empty() || types.contains(&e.event_type.as_str())),
            );
            let slice: &[&StoredEvent] = &mine;
            if slice.is_empty() {
                continue;
            }
            let started = Instant::now();
            projector.apply(&mut *tx, slice).await?;
            *self.state.seconds.entry(projector.name()).or_default() += started.elapsed().as_secs_f64();
            *self.state.applied.entry(projector.name()).or_default() += u64::try_from(slice.len()).unwrap_or(u64::MAX);
        }
        self.state.read += u64::try_from(events.len()).unwrap_or(u64::MAX);
        Ok(())
    }
}

/// How a swap attempt failed.
enum SwapFailure {
    /// Queries held a table (lock or statement timeout): rolled back, try again. The
    /// comparisons, when made before the locks, are kept for the next attempt.
    Contended { comparisons: Option<Vec<TableComparison>> },
    /// Anything else.
    Failed(RebuildError),
}

impl<E: Into<RebuildError>> From<E> for SwapFailure {
    fn from(error: E) -> Self {
        let error = error.into();
        if contended(&error) {
            SwapFailure::Contended { comparisons: None }
        } else {
            SwapFailure::Failed(error)
        }
    }
}

/// A lock timeout (55P03) or the statement timeout around the table locks (57014), wherever
/// it surfaced (a projector's statement included).
fn contended(error: &RebuildError) -> bool {
    let database = match error {
        RebuildError::Database(e) | RebuildError::Projection(ProjectionError::Database(e)) => e,
        _ => return false,
    };
    matches!(database, sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("55P03" | "57014")))
}

/// One attempt at the swap transaction (module docs, step 4).
struct Swap<'a> {
    tables: &'a [(&'static str, &'static str)],
    names: &'a [&'static str],
    swap: bool,
    /// The backend holding the rebuild's advisory lock.
    lock_pid: i32,
    /// Comparisons made by an earlier attempt: not made again (they hold every live runner).
    compared: Option<&'a [TableComparison]>,
}

impl Swap<'_> {
    /// Answers the comparisons and the cursor both sides stand at; with `swap` off the
    /// transaction is rolled back after the comparison.
    async fn run(
        &self,
        conn: &mut PgConnection,
        replay: &mut Replay<'_>,
    ) -> Result<(Vec<TableComparison>, Cursor), SwapFailure> {
        let mut tx = conn.begin().await?;
        let result = self.inside(&mut tx, replay).await;
        match result {
            Ok((comparisons, target)) if self.swap => {
                tx.commit().await?;
                Ok((comparisons, target))
            }
            Ok(done) => {
                tx.rollback().await?;
                Ok(done)
            }
            Err(failure) => {
                // Rolled back when dropped; an explicit rollback reports a dead connection.
                let _ = tx.rollback().await;
                Err(failure)
            }
        }
    }

    async fn inside(
        &self,
        tx: &mut PgConnection,
        replay: &mut Replay<'_>,
    ) -> Result<(Vec<TableComparison>, Cursor), SwapFailure> {
        sqlx::query(&format!("SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"))
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL synchronous_commit TO DEFAULT")
            .execute(&mut *tx)
            .await?;
        crate::shared::all_tenants(tx).await?;
        // Still the only rebuild? (A lost lock connection lets another one start.)
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = $1 AND granted)",
        )
        .bind(self.lock_pid)
        .fetch_one(&mut *tx)
        .await?;
        if !held {
            return Err(SwapFailure::Failed(RebuildError::LockLost));
        }
        // The live checkpoints, locked: no live batch of these projectors commits until we do.
        let rows = sqlx::query(
            "SELECT projector, last_tx_id::text AS tx, last_position FROM projector_checkpoints \
             WHERE projector = ANY($1) ORDER BY projector FOR UPDATE",
        )
        .bind(self.names)
        .fetch_all(&mut *tx)
        .await?;
        let mut live: BTreeMap<String, Cursor> = BTreeMap::new();
        for row in rows {
            let tx_text: String = row.try_get("tx")?;
            let tx_id = tx_text.parse::<u64>().map_err(|e| sqlx::Error::ColumnDecode {
                index: "last_tx_id".to_owned(),
                source: Box::new(e),
            })?;
            live.insert(
                row.try_get("projector")?,
                Cursor::new(tx_id, row.try_get("last_position")?),
            );
        }
        // The new tables: the rest of the readable log (this transaction now has an id, so what
        // commits after it is left to the live runners, after the cursor set below).
        while replay.batch_in(tx, None).await? {}
        // One cursor for both sides: the furthest of the new tables and every live checkpoint
        // (a live projector is never moved back).
        let target = live
            .values()
            .copied()
            .chain([replay.state.cursor])
            .max()
            .unwrap_or(replay.state.cursor);
        while replay.state.cursor < target {
            if !replay.batch_in(tx, Some(target)).await? {
                replay.state.cursor = target;
            }
        }
        let comparisons = match self.compared {
            Some(earlier) => earlier.to_vec(),
            None => self.compare(tx, replay, &live, target).await?,
        };
        if !self.swap {
            return Ok((comparisons, target));
        }
        // Swap: every table locked first, the wait for all of them bounded as a whole (a query
        // holding one makes the attempt fail fast and try again), then moved.
        let list = self
            .tables
            .iter()
            .map(|(t, _)| format!("public.{t}, {SHADOW_SCHEMA}.{t}"))
            .collect::<Vec<_>>()
            .join(", ");
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {REPLACED_SCHEMA}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("SET LOCAL statement_timeout = '{SWAP_LOCKS_TIMEOUT}'"))
            .execute(&mut *tx)
            .await?;
        if let Err(error) = sqlx::query(&format!("LOCK TABLE {list} IN ACCESS EXCLUSIVE MODE"))
            .execute(&mut *tx)
            .await
        {
            return Err(match SwapFailure::from(error) {
                SwapFailure::Contended { .. } => SwapFailure::Contended {
                    comparisons: Some(comparisons),
                },
                failed => failed,
            });
        }
        sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut *tx).await?;
        for (table, _) in self.tables {
            sqlx::query(&format!("ALTER TABLE public.{table} SET SCHEMA {REPLACED_SCHEMA}"))
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!("ALTER TABLE {SHADOW_SCHEMA}.{table} SET SCHEMA public"))
                .execute(&mut *tx)
                .await?;
        }
        for name in self.names {
            let applied = replay.state.applied.get(name).copied().unwrap_or(0);
            crate::runtime::move_checkpoint(tx, name, target, crate::runtime::Applied::Set(applied)).await?;
        }
        Ok((comparisons, target))
    }

    /// Brings each live projector that is a little behind to `target` (we hold its checkpoint,
    /// as its runner would) and compares every pair of tables at `target`.
    async fn compare(
        &self,
        tx: &mut PgConnection,
        replay: &Replay<'_>,
        live: &BTreeMap<String, Cursor>,
        target: Cursor,
    ) -> Result<Vec<TableComparison>, SwapFailure> {
        sqlx::query("SET LOCAL search_path = public").execute(&mut *tx).await?;
        let mut behind: BTreeMap<&'static str, i64> = BTreeMap::new();
        for projector in replay.projectors {
            let from = live.get(projector.name()).copied().unwrap_or(Cursor::START);
            let mut filter = LogFilter::all().with_types(projector.event_types().iter().copied());
            filter.through = Some(target);
            let lacking = if from >= target {
                0
            } else {
                count_after(tx, from, &filter, LIVE_CATCH_UP_LIMIT + 1).await?
            };
            behind.insert(projector.name(), lacking);
            // Never run (or rewound to the start), or far behind: left to its runner.
            if lacking == 0 || from == Cursor::START || lacking > LIVE_CATCH_UP_LIMIT {
                continue;
            }
            let mut at = from;
            loop {
                let events = log::read_after(&mut *tx, at, &filter, 5_000).await?;
                let Some(last) = events.last() else { break };
                at = last.cursor;
                let borrowed: Vec<&StoredEvent> = events.iter().collect();
                projector.apply(&mut *tx, &borrowed).await?;
            }
        }
        sqlx::query(&format!("SET LOCAL search_path = {SHADOW_SCHEMA}, public"))
            .execute(&mut *tx)
            .await?;
        let mut comparisons = Vec::new();
        for (table, projector) in self.tables {
            let lacking = behind.get(projector).copied().unwrap_or(0);
            let from = live.get(*projector).copied().unwrap_or(Cursor::START);
            let compared = lacking == 0 || (from != Cursor::START && lacking <= LIVE_CATCH_UP_LIMIT);
            let (live_rows, live_checksum) = checksum(tx, "public", table).await?;
            let (rebuilt_rows, rebuilt_checksum) = checksum(tx, SHADOW_SCHEMA, table).await?;
            comparisons.push(TableComparison {
                projector: (*projector).to_owned(),
                table: (*table).to_owned(),
                compared,
                live_behind_by: u64::try_from(lacking).unwrap_or(0),
                live_rows,
                rebuilt_rows,
                live_checksum,
                rebuilt_checksum,
            });
        }
        Ok(comparisons)
    }
}

/// Readable events after `after` that pass `filter`, counted up to `limit`.
async fn count_after(tx: &mut PgConnection, after: Cursor, filter: &LogFilter, limit: i64) -> Result<i64, sqlx::Error> {
    // read_after's rows are not needed, only how many there are (bounded).
    let mut q =
        sqlx::QueryBuilder::new("SELECT count(*) FROM (SELECT 1 FROM events WHERE (tx_id, global_position) > (");
    q.push_bind(after.tx_id.to_string())
        .push("::text::xid8, ")
        .push_bind(after.position)
        .push(")");
    if let Some(types) = filter.event_types.as_ref().filter(|t| !t.is_empty()) {
        q.push(" AND event_type = ANY(").push_bind(types.clone()).push(")");
    }
    if let Some(through) = filter.through {
        q.push(" AND (tx_id, global_position) <= (")
            .push_bind(through.tx_id.to_string())
            .push("::text::xid8, ")
            .push_bind(through.position)
            .push(")");
    }
    q.push(" LIMIT ").push_bind(limit).push(") bounded");
    q.build_query_scalar::<i64>().fetch_one(&mut *tx).await
}

/// Rows and checksum of `schema.table`: md5 over the sorted md5s of each row's text form, so
/// the order rows are stored in does not matter.
async fn checksum(tx: &mut PgConnection, schema: &str, table: &str) -> Result<(i64, String), sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT count(*)::bigint AS n, md5(coalesce(string_agg(h, '' ORDER BY h), '')) AS sum \
         FROM (SELECT md5(t::text) AS h FROM {schema}.{table} t) rows"
    ))
    .fetch_one(&mut *tx)
    .await?;
    Ok((row.try_get("n")?, row.try_get("sum")?))
}

/// Drops the new tables not swapped in (all of the shadow schema is the rebuild's own) and the
/// replaced ones, these one by one without CASCADE: should anything outside depend on one, the
/// drop fails and says so rather than take that along.
async fn drop_schemas(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE"))
        .execute(&mut *conn)
        .await?;
    let replaced: Vec<String> = sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1")
        .bind(REPLACED_SCHEMA)
        .fetch_all(&mut *conn)
        .await?;
    for table in replaced {
        sqlx::query(&format!(
            "DROP TABLE {REPLACED_SCHEMA}.\"{}\"",
            table.replace('"', "\"\"")
        ))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {REPLACED_SCHEMA}"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Table names come from the projectors' code; they are written into DDL, so only plain
/// lower-case identifiers pass.
fn check_identifier(table: &str) -> Result<(), RebuildError> {
    let plain = !table.is_empty()
        && table.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        Ok(())
    } else {
        Err(RebuildError::Unsupported {
            table: table.to_owned(),
            reason: "not a plain lower-case identifier".to_owned(),
        })
    }
}

/// Refuses a table the swap could not carry over whole (module docs, step 2).
async fn check_supported(conn: &mut PgConnection, table: &str) -> Result<(), RebuildError> {
    let unsupported = |reason: &str| RebuildError::Unsupported {
        table: table.to_owned(),
        reason: reason.to_owned(),
    };
    let row = sqlx::query(
        "SELECT c.relkind::text AS kind, c.relispartition AS partition, c.relhassubclass AS parent, \
                EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal) AS triggers, \
                EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid) AS rules, \
                EXISTS (SELECT 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid \
                         WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = c.oid \
                           AND r.ev_class <> c.oid) AS views, \
                EXISTS (SELECT 1 FROM pg_constraint k WHERE k.contype = 'f' \
                           AND (k.conrelid = c.oid OR k.confrelid = c.oid)) AS foreign_keys, \
                EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL) \
                  AS column_grants, \
                EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) AS child, \
                EXISTS (SELECT 1 FROM pg_attrdef d WHERE d.adrelid = c.oid \
                           AND pg_get_expr(d.adbin, d.adrelid) LIKE '%nextval(%') AS sequence_default, \
                EXISTS (SELECT 1 FROM pg_statistic_ext x WHERE x.stxrelid = c.oid) AS statistics, \
                EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = c.oid AND d.refclassid = 'pg_class'::regclass \
                           AND (d.classid IN ('pg_proc'::regclass, 'pg_publication_rel'::regclass) \
                                OR (d.classid = 'pg_policy'::regclass \
                                    AND (SELECT p.polrelid FROM pg_policy p WHERE p.oid = d.objid) <> c.oid))) \
                  AS dependents \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relname = $1",
    )
    .bind(table)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Err(unsupported("no such table in the public schema"));
    };
    let kind: String = row.try_get("kind")?;
    if kind != "r" || row.try_get::<bool, _>("partition")? || row.try_get::<bool, _>("parent")? {
        return Err(unsupported("not a plain table (partitioned, a partition or inherited)"));
    }
    if row.try_get::<bool, _>("child")? {
        return Err(unsupported("it inherits from another table"));
    }
    for (flag, reason) in [
        ("triggers", "it has triggers"),
        ("rules", "it has rules"),
        ("views", "a view or rule reads it"),
        ("foreign_keys", "a foreign key refers to it or from it"),
        ("column_grants", "it has column-level grants"),
        (
            "sequence_default",
            "a column's default draws from a sequence, which would stay with the replaced table",
        ),
        ("statistics", "it has extended statistics"),
        (
            "dependents",
            "a function, publication or another table's policy refers to it",
        ),
    ] {
        if row.try_get::<bool, _>(flag)? {
            return Err(unsupported(reason));
        }
    }
    Ok(())
}

/// Builds `SHADOW_SCHEMA.table` as the live `public.table` is (module docs, step 2).
async fn create_shadow(conn: &mut PgConnection, table: &str) -> Result<(), RebuildError> {
    let live = format!("public.{table}");
    let mut ddl = vec![format!(
        "CREATE TABLE {SHADOW_SCHEMA}.{table} (LIKE {live} INCLUDING ALL EXCLUDING INDEXES)"
    )];
    // Primary key, unique and exclusion constraints, under their names (their indexes too).
    ddl.extend(
        sqlx::query_scalar::<_, String>(
            "SELECT format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', $2::text, $3::text, conname, \
                           pg_get_constraintdef(oid)) \
             FROM pg_constraint WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x') \
             ORDER BY conname",
        )
        .bind(&live)
        .bind(SHADOW_SCHEMA)
        .bind(table)
        .fetch_all(&mut *conn)
        .await?,
    );
    // Every other index, under its name.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
         WHERE i.indrelid = $1::regclass \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k \
                            WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid) \
         ORDER BY i.indexrelid::regclass::text",
    )
    .bind(&live)
    .fetch_all(&mut *conn)
    .await?;
    let on_live = format!(" ON {live} ");
    for index in indexes {
        if index.matches(&on_live).count() != 1 {
            return Err(RebuildError::Unsupported {
                table: table.to_owned(),
                reason: format!("an index whose definition could not be moved: {index}"),
            });
        }
        ddl.push(index.replacen(&on_live, &format!(" ON {SHADOW_SCHEMA}.{table} "), 1));
    }
    // Row-level security, options and owner.
    let row = sqlx::query(
        "SELECT c.relrowsecurity AS rls, c.relforcerowsecurity AS force, \
                array_to_string(c.reloptions, ', ') AS options, \
                c.relowner::regrole::text AS owner, c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) AS mine \
         FROM pg_class c WHERE c.oid = $1::regclass",
    )
    .bind(&live)
    .fetch_one(&mut *conn)
    .await?;
    if row.try_get::<bool, _>("rls")? {
        ddl.push(format!("ALTER TABLE {SHADOW_SCHEMA}.{table} ENABLE ROW LEVEL SECURITY"));
    }
    if row.try_get::<bool, _>("force")? {
        ddl.push(format!("ALTER TABLE {SHADOW_SCHEMA}.{table} FORCE ROW LEVEL SECURITY"));
    }
    if let Some(options) = row.try_get::<Option<String>, _>("options")?.filter(|o| !o.is_empty()) {
        ddl.push(format!("ALTER TABLE {SHADOW_SCHEMA}.{table} SET ({options})"));
    }
    if !row.try_get::<bool, _>("mine")? {
        let owner: String = row.try_get("owner")?;
        ddl.push(format!("ALTER TABLE {SHADOW_SCHEMA}.{table} OWNER TO {owner}"));
    }
    // Policies.
    ddl.extend(
        sqlx::query_scalar::<_, String>(
            "SELECT format('CREATE POLICY %I ON %I.%I AS %s FOR %s TO %s%s%s', p.polname, $2::text, $3::text, \
                    CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END, \
                    CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' \
                                  WHEN 'd' THEN 'DELETE' ELSE 'ALL' END, \
                    (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE r::regrole::text END, ', ') \
                       FROM unnest(p.polroles) r), \
                    CASE WHEN p.polqual IS NULL THEN '' \
                         ELSE ' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')' END, \
                    CASE WHEN p.polwithcheck IS NULL THEN '' \
                         ELSE ' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')' END) \
             FROM pg_policy p WHERE p.polrelid = $1::regclass ORDER BY p.polname",
        )
        .bind(&live)
        .bind(SHADOW_SCHEMA)
        .bind(table)
        .fetch_all(&mut *conn)
        .await?,
    );
    // Grants (the owner's own are implicit).
    ddl.extend(
        sqlx::query_scalar::<_, String>(
            "SELECT format('GRANT %s ON %I.%I TO %s%s', a.privilege_type, $2::text, $3::text, \
                    CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, \
                    CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) \
             FROM pg_class c, aclexplode(c.relacl) a \
             WHERE c.oid = $1::regclass AND a.grantee <> c.relowner \
             ORDER BY 1",
        )
        .bind(&live)
        .bind(SHADOW_SCHEMA)
        .bind(table)
        .fetch_all(&mut *conn)
        .await?,
    );
    for statement in ddl {
        sqlx::query(&statement).execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_are_table_names() {
        assert!(check_identifier("conversation_details").is_ok());
        assert!(check_identifier("_t2").is_ok());
        for bad in ["", "2t", "Contacts", "a;drop", "public.t", "a b", "\"t\""] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_comparison_is_equal_only_with_the_same_rows_and_checksum() {
        let same = TableComparison {
            projector: "p".into(),
            table: "t".into(),
            compared: true,
            live_behind_by: 0,
            live_rows: 2,
            rebuilt_rows: 2,
            live_checksum: "a".into(),
            rebuilt_checksum: "a".into(),
        };
        assert!(same.equal());
        let mut other = same.clone();
        other.rebuilt_checksum = "b".into();
        assert!(!other.equal());
        let mut fewer = same;
        fewer.rebuilt_rows = 1;
        assert!(!fewer.equal());
        // Not compared: nothing found, nothing differing.
        let mut skipped = fewer;
        skipped.compared = false;
        assert!(skipped.equal());
    }
}
