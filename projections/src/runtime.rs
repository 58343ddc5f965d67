//! The projector runtime: folds the log into read models, batch by batch, each batch committed
//! together with the projector's checkpoint (DESIGN.md, "Projections").
//!
//! # A batch ([`ProjectorRunner::run_once`])
//!
//! One transaction, on one connection:
//!
//! 1. read the checkpoint (`projector_checkpoints`, no lock yet);
//! 2. read up to `batch_size` events after it with [`log::read_after`];
//! 3. create the checkpoint row if missing, lock it (`FOR UPDATE`) and check it still holds the
//!    cursor read in 1 (otherwise another runner moved it: roll back and start over);
//! 4. [`Projector::apply`] the events, update the checkpoint, commit.
//!
//! Rows and checkpoint commit together or not at all, so the effect is exactly once and a crash
//! anywhere resumes from the last committed checkpoint.
//!
//! Why read before writing or locking: the readable end of the log is
//! `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction id still running, and a
//! transaction that has been given an id (any write, including `SELECT ... FOR UPDATE`, which
//! marks the row with its id) counts itself among the running ones. Had the batch locked its
//! checkpoint first, every read would stop below its own id: events committed by transactions
//! that got their ids a moment later would be deferred to the next batch. Nothing would be lost
//! (the order is still final), but a batch could come back empty while events are readable, so
//! a caught-up runner would wait for the next wake-up or poll. Reading first, while the
//! transaction has no id, reads everything committed so far. Locking after reading and checking
//! the checkpoint did not move keeps two concurrent `run_once` (say a runner and a `rebuild`
//! from the replay tool) from applying the same events twice: the second one to lock sees the
//! first one's checkpoint and starts over.
//!
//! # Runners ([`ProjectorRunner::run`])
//!
//! One active runner per projector across processes: a runner holds the session-level advisory
//! lock `hashtext('chronicle.projector.' || name)` on a connection of its own for as long as it
//! is active; others stand by and try again every poll interval. The lock is for efficiency (one
//! runner doing the work); correctness does not depend on it, since the checkpoint check above
//! also holds if a lock connection dies and two runners briefly overlap. An active runner
//! catches up, then waits for a wake-up ([`crate::wake`]) or the poll interval. When committed
//! events lie beyond its checkpoint that it could not read yet, held back by an open write
//! ([`log::any_committed_after`]), it looks again after a short, growing delay instead of a
//! whole poll interval, since the wake-up for them has already come. Errors are logged once
//! per outage and retried with backoff.
//!
//! # Rebuilds
//!
//! In place ([`ProjectorRunner::rebuild`]): one transaction deletes the projector's rows
//! ([`Projector::reset`]) and rewinds its checkpoint, then the runner catches up from the start;
//! queries see an empty or partial read model meanwhile (tests and the demo loader use it).
//! While the API serves, rebuild blue/green instead ([`crate::rebuild`], `chronicle-replay
//! rebuild`): new tables beside the live ones, swapped in one transaction when caught up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prometheus::{Gauge, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use sqlx::postgres::PgConnection;
use sqlx::{Connection as _, PgPool, Row as _};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::log::{self, Cursor, LogFilter, StoredEvent};
use crate::wake::{WakeReceiver, Wakeups};

static PROGRESS: std::sync::LazyLock<tokio::sync::Notify> = std::sync::LazyLock::new(tokio::sync::Notify::new);

/// Woken (`notify_waiters`) whenever a projector runner of this process commits a batch, so a
/// reader waiting for the read models to reach a cursor looks again at once instead of at its
/// next poll. Runners in other processes do not wake it: waiters poll too.
pub fn progress() -> &'static tokio::sync::Notify {
    &PROGRESS
}

/// Why a projector or the runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The projector's handler refused an event.
    #[error("projector failed on the event at global position {position}: {reason}")]
    Handler {
        /// The event's `global_position`.
        position: i64,
        /// Why.
        reason: String,
    },
    /// An event's payload or metadata is not what the projector expects.
    #[error("event at global position {position} could not be decoded: {source}")]
    Decode {
        /// The event's `global_position`.
        position: i64,
        /// The decoding error.
        source: serde_json::Error,
    },
}

/// A read model's writer: a name, the event types it reads, and how it applies them.
///
/// Dyn-compatible, so runners hold `Arc<dyn Projector>`.
pub trait Projector: Send + Sync + 'static {
    /// The projector's name: the key of its checkpoint and of its advisory lock. Never change
    /// it for a deployed projector (it would rebuild from zero under the new name).
    fn name(&self) -> &'static str;

    /// Event types read; empty = all.
    fn event_types(&self) -> &'static [&'static str];

    /// Applies a batch inside the runtime's transaction (rows + checkpoint commit together).
    ///
    /// `events` are in log order, borrowed (a rebuild hands several projectors their part of
    /// one batch without copying it). An error rolls the whole batch back, checkpoint included.
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [&'a StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;

    /// Every table this projector writes, feeds included, and no other: a rebuild clears
    /// them ([`Projector::reset`]) or builds new ones beside them ([`crate::rebuild`]). A
    /// projector writing a table it does not list would write the live table during a
    /// blue/green rebuild (the rebuild tests compare every table).
    fn tables(&self) -> &'static [&'static str];

    /// Deletes every row this projector wrote (for a rebuild from zero), feeds included: every
    /// row of its [`Projector::tables`], of every tenant.
    fn reset<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(crate::shared::clear_tables(tx, self.tables()))
    }

    /// The feeds among this projector's tables: the `*_feed` tables a worker of `commands`
    /// copies into its own work list (`commands::workers::Admission`, decision 0013). A feed
    /// is rebuilt like any read model; the worker's mark keeps a rebuild from repeating work.
    /// A projector that feeds no worker answers none.
    fn feeds(&self) -> &'static [&'static str] {
        &[]
    }
}

/// A projector that applies its events one at a time, the shape of most read models: implement
/// this and the [`Projector`] around it (its name and types, the batch loop in one transaction
/// that sees every tenant's rows, the reset that clears its tables, its feeds) comes from here.
/// Projectors that fold a batch as a whole (conversations, messages, contacts, …) implement
/// [`Projector`] themselves.
pub trait Fold: Send + Sync + 'static {
    /// The projector's name: the key of its checkpoint and of its advisory lock. Never change
    /// it for a deployed projector.
    const NAME: &'static str;
    /// The event types it reads.
    const EVENT_TYPES: &'static [&'static str];
    /// The aggregate types whose events it applies; events of other aggregates among its event
    /// types are skipped. Empty: every one.
    const AGGREGATES: &'static [&'static str] = &[];
    /// Its tables: a rebuild deletes every tenant's rows of them.
    const TABLES: &'static [&'static str];
    /// The feeds among its tables (see [`Projector::feeds`]).
    const FEEDS: &'static [&'static str] = &[];

    /// Applies one event inside the batch's transaction.
    fn apply_one(
        &self,
        tx: &mut PgConnection,
        event: &StoredEvent,
    ) -> impl std::future::Future<Output = Result<(), ProjectionError>> + Send;
}

impl<T: Fold> Projector for T {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        T::EVENT_TYPES
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [&'a StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            crate::shared::all_tenants(tx).await?;
            for event in events {
                if T::AGGREGATES.is_empty() || T::AGGREGATES.contains(&event.aggregate_type.as_str()) {
                    self.apply_one(tx, event).await?;
                }
            }
            Ok(())
        })
    }

    fn tables(&self) -> &'static [&'static str] {
        T::TABLES
    }

    fn feeds(&self) -> &'static [&'static str] {
        T::FEEDS
    }
}

/// How a runner reads and waits.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Events per batch (one transaction each). Default 500.
    pub batch_size: i64,
    /// How long a caught-up runner waits without a wake-up before it reads anyway, and how
    /// often a standby runner tries to become active. Default 1 s.
    pub poll_interval: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// The first delay after an error, doubled up to [`MAX_ERROR_BACKOFF`].
const MIN_ERROR_BACKOFF: Duration = Duration::from_millis(250);
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(30);

/// The prefix of a projector's advisory lock key (`hashtext(prefix || name)`).
const LOCK_PREFIX: &str = "chronicle.projector.";

/// Runs one projector: batches, catch-up, the active/standby loop, rebuilds.
pub struct ProjectorRunner {
    pool: PgPool,
    projector: Arc<dyn Projector>,
    wakeups: Wakeups,
    config: RunnerConfig,
    metrics: Option<ProjectorMetrics>,
    active: watch::Sender<bool>,
}

impl std::fmt::Debug for ProjectorRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectorRunner")
            .field("projector", &self.projector.name())
            .field("config", &self.config)
            .field("active", &*self.active.borrow())
            .finish()
    }
}

/// What one catch-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CaughtUp {
    applied: usize,
    /// Committed events exist that are not readable yet (an open write holds them back).
    blocked: bool,
}

impl ProjectorRunner {
    /// A runner of `projector` over the log in `pool`'s database.
    pub fn new(pool: PgPool, projector: Arc<dyn Projector>, wakeups: Wakeups, config: RunnerConfig) -> Self {
        let (active, _) = watch::channel(false);
        ProjectorRunner {
            pool,
            projector,
            wakeups,
            config,
            metrics: None,
            active,
        }
    }

    /// Updates `metrics` (events applied, lag) as it runs.
    pub fn with_metrics(mut self, metrics: ProjectorMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The projector's name.
    pub fn name(&self) -> &'static str {
        self.projector.name()
    }

    /// Whether this runner currently holds its projector's lock (in [`ProjectorRunner::run`]).
    pub fn is_active(&self) -> bool {
        *self.active.borrow()
    }

    /// Follows whether this runner holds its projector's lock; take it before `run` consumes
    /// the runner.
    pub fn activity(&self) -> watch::Receiver<bool> {
        self.active.subscribe()
    }

    fn filter(&self) -> LogFilter {
        LogFilter::all().with_types(self.projector.event_types().iter().copied())
    }

    /// Applies one batch: the events after the checkpoint, up to `batch_size`, and the moved
    /// checkpoint, in one transaction. Returns how many events it applied (0: caught up).
    pub async fn run_once(&self) -> Result<usize, ProjectionError> {
        let span = tracing::info_span!(
            "projector_batch",
            projector = self.projector.name(),
            batch.events = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self.apply_batch().instrument(span.clone()).await;
        if let Ok(applied) = result {
            span.record("batch.events", applied);
        }
        span.record("duration_ms", started.elapsed().as_secs_f64() * 1000.0);
        if let (Ok(applied), Some(metrics)) = (&result, &self.metrics) {
            let applied = u64::try_from(*applied).unwrap_or(u64::MAX);
            metrics
                .events_applied
                .with_label_values(&[self.projector.name()])
                .inc_by(applied);
        }
        result
    }

    async fn apply_batch(&self) -> Result<usize, ProjectionError> {
        let name = self.projector.name();
        let filter = self.filter();
        loop {
            let mut tx = self.pool.begin().await?;
            // 1. Where we are (no lock: locking would give this transaction an id, see the
            //    module docs).
            let seen = read_checkpoint(&mut tx, name, false).await?;
            let start = seen.unwrap_or(Cursor::START);
            // 2. Read while this transaction holds no id. A projector of some event types only
            //    first takes the log's readable head (any type): every event at or below it
            //    was committed before this statement's snapshot, so the read that follows sees
            //    all of them. When that read is not a full batch, nothing of its types lies
            //    between the checkpoint and that head beyond what it returned, and the
            //    checkpoint moves past the other types' events too: without this, a projector
            //    of rare types would scan every event since its last match on each wake-up.
            let horizon = if filter.event_types.is_some() {
                log::head(&mut *tx, &LogFilter::all()).await?
            } else {
                None
            };
            let limit = self.config.batch_size.max(1);
            let events = log::read_after(&mut *tx, start, &filter, limit).await?;
            let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= limit;
            let mut last = events.last().map(|e| e.cursor);
            if let Some(head) = horizon.filter(|head| !full && *head > start) {
                last = Some(last.map_or(head, |l| l.max(head)));
            }
            let Some(last) = last else {
                tx.rollback().await?;
                return Ok(0);
            };
            // 3. Lock the checkpoint and check nobody moved it meanwhile.
            ensure_checkpoint(&mut tx, name).await?;
            let locked = read_checkpoint(&mut tx, name, true).await?;
            if locked.unwrap_or(Cursor::START) != seen.unwrap_or(Cursor::START) {
                tracing::debug!(projector = name, "checkpoint moved by another runner; reading again");
                tx.rollback().await?;
                continue;
            }
            // 4. Apply, move the checkpoint, commit together.
            if !events.is_empty() {
                let borrowed: Vec<&StoredEvent> = events.iter().collect();
                self.projector.apply(&mut tx, &borrowed).await?;
            }
            let applied = events.len();
            move_checkpoint(&mut tx, name, last, Applied::Add(applied)).await?;
            tx.commit().await?;
            PROGRESS.notify_waiters();
            return Ok(applied);
        }
    }

    /// Runs batches until one applies nothing. Returns the events applied.
    pub async fn catch_up(&self) -> Result<usize, ProjectionError> {
        let mut total = 0;
        loop {
            let applied = self.run_once().await?;
            if applied == 0 {
                return Ok(total);
            }
            total += applied;
        }
    }

    /// Catches up, stopping early on shutdown, and says whether events wait behind an open
    /// write.
    async fn catch_up_until(&self, shutdown: &watch::Receiver<bool>) -> Result<CaughtUp, ProjectionError> {
        let mut applied = 0;
        loop {
            if shutdown_requested(shutdown) {
                return Ok(CaughtUp {
                    applied,
                    blocked: false,
                });
            }
            let n = self.run_once().await?;
            if n == 0 {
                break;
            }
            applied += n;
        }
        // Anything committed beyond the checkpoint that the last (empty) batch could not read?
        let mut conn = self.pool.acquire().await?;
        let checkpoint = read_checkpoint(&mut conn, self.projector.name(), false)
            .await?
            .unwrap_or(Cursor::START);
        let blocked = log::any_committed_after(&mut *conn, checkpoint, &self.filter()).await?;
        Ok(CaughtUp { applied, blocked })
    }

    /// Rebuilds the read model in place: deletes the projector's rows and rewinds its
    /// checkpoint in one transaction, then catches up from the start. Returns the events
    /// applied. Queries see the read model empty meanwhile: while the API serves, use
    /// [`crate::rebuild`] (see the module docs).
    pub async fn rebuild(&self) -> Result<usize, ProjectionError> {
        let name = self.projector.name();
        let mut tx = self.pool.begin().await?;
        ensure_checkpoint(&mut tx, name).await?;
        // Serializes with any batch in flight: it either committed before (and is undone by
        // the reset) or sees the rewound checkpoint and starts over.
        read_checkpoint(&mut tx, name, true).await?;
        self.projector.reset(&mut tx).await?;
        sqlx::query(
            "UPDATE projector_checkpoints \
             SET last_tx_id = '0'::xid8, last_position = 0, events_applied = 0, updated_at = now() \
             WHERE projector = $1",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(projector = name, "projector reset; rebuilding from the start");
        self.catch_up().await
    }

    /// Updates the lag gauges and the oldest-open-write gauge, if this runner has metrics.
    /// [`ProjectorRunner::run`] does it after every catch-up.
    pub async fn refresh_metrics(&self) -> Result<(), sqlx::Error> {
        let Some(metrics) = &self.metrics else {
            return Ok(());
        };
        let name = self.projector.name();
        let lag = lag(&self.pool, name, self.projector.event_types()).await?;
        metrics.lag_events.with_label_values(&[name]).set(lag.events);
        metrics.lag_seconds.with_label_values(&[name]).set(lag.seconds);
        metrics
            .oldest_open_write_seconds
            .set(oldest_open_write_seconds(&self.pool).await?);
        Ok(())
    }

    /// Runs until `shutdown` turns `true` (or its sender is dropped): stands by until it holds
    /// the projector's advisory lock, then catches up and follows the log, woken by the
    /// wake-ups or the poll interval. Never panics; errors are logged once per outage and
    /// retried with backoff.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.projector.name();
        let key = format!("{LOCK_PREFIX}{name}");
        let mut errors = ErrorReport::new(name);
        let mut standby_conn: Option<PgConnection> = None;
        let mut announced_standby = false;
        while !shutdown_requested(&shutdown) {
            // Standby: try to take the lock, on a connection of our own (a session lock on a
            // pooled connection would outlive us if this task were dropped).
            let mut conn = match standby_conn.take() {
                Some(conn) => conn,
                None => match PgConnection::connect_with(&self.pool.connect_options()).await {
                    Ok(conn) => conn,
                    Err(error) => {
                        let pause = errors.failed("connecting for the projector lock", &error);
                        wait_or_shutdown(&mut shutdown, pause).await;
                        continue;
                    }
                },
            };
            let acquired = sqlx::query("SELECT pg_try_advisory_lock(hashtext($1))")
                .bind(&key)
                .fetch_one(&mut conn)
                .await
                .and_then(|row| row.try_get::<bool, _>(0));
            match acquired {
                Err(error) => {
                    let pause = errors.failed("taking the projector lock", &error);
                    drop(conn);
                    wait_or_shutdown(&mut shutdown, pause).await;
                    continue;
                }
                Ok(false) => {
                    errors.recovered();
                    if !announced_standby {
                        tracing::info!(projector = name, "another runner is active; standing by");
                        announced_standby = true;
                    }
                    standby_conn = Some(conn);
                    wait_or_shutdown(&mut shutdown, self.config.poll_interval).await;
                    continue;
                }
                Ok(true) => {}
            }
            errors.recovered();
            announced_standby = false;
            tracing::info!(projector = name, "runner active");
            // Subscribed before the first catch-up, so no wake-up between them is lost.
            let mut wake = self.wakeups.subscribe();
            self.active.send_replace(true);
            self.follow(&mut conn, &mut wake, &mut shutdown, &mut errors).await;
            self.active.send_replace(false);
            // Release explicitly; closing the session would release it anyway.
            let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
                .bind(&key)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
            tracing::info!(projector = name, "runner no longer active");
        }
        if let Some(conn) = standby_conn {
            let _ = conn.close().await;
        }
    }

    /// The active loop: returns on shutdown or when the lock connection is lost.
    async fn follow(
        &self,
        lock_conn: &mut PgConnection,
        wake: &mut WakeReceiver,
        shutdown: &mut watch::Receiver<bool>,
        errors: &mut ErrorReport,
    ) {
        let name = self.projector.name();
        let mut blocked_retry = log::BLOCKED_RETRY_MIN;
        while !shutdown_requested(shutdown) {
            // Still holding the lock? (If its session died, another runner may take over; the
            // checkpoint check keeps a brief overlap harmless, but stop being active.)
            if let Err(error) = lock_conn.ping().await {
                tracing::warn!(projector = name, %error, "lost the projector lock's connection");
                return;
            }
            let pause = match self.catch_up_until(shutdown).await {
                Ok(caught_up) => {
                    errors.recovered();
                    if let Err(error) = self.refresh_metrics().await {
                        tracing::debug!(projector = name, %error, "lag metrics not updated");
                    }
                    if caught_up.blocked {
                        let pause = blocked_retry.min(self.config.poll_interval);
                        blocked_retry = (blocked_retry * 2).min(log::BLOCKED_RETRY_MAX);
                        pause
                    } else {
                        blocked_retry = log::BLOCKED_RETRY_MIN;
                        self.config.poll_interval
                    }
                }
                Err(error) => {
                    let pause = errors.failed("applying a batch", &error);
                    wait_or_shutdown(shutdown, pause).await;
                    continue;
                }
            };
            tokio::select! {
                _ = wake.wait(None, pause) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Logs the first error of an outage at `error` level (later ones at `debug`), the recovery at
/// `info`, and computes the backoff.
struct ErrorReport {
    projector: &'static str,
    failing: bool,
    backoff: Duration,
}

impl ErrorReport {
    fn new(projector: &'static str) -> Self {
        ErrorReport {
            projector,
            failing: false,
            backoff: MIN_ERROR_BACKOFF,
        }
    }

    fn failed(&mut self, doing: &str, error: &dyn std::fmt::Display) -> Duration {
        if self.failing {
            tracing::debug!(projector = self.projector, %error, "still failing: {doing}");
        } else {
            tracing::error!(projector = self.projector, %error, "projector runner failed: {doing}; retrying with backoff");
            self.failing = true;
        }
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_ERROR_BACKOFF);
        pause
    }

    fn recovered(&mut self) {
        if self.failing {
            tracing::info!(projector = self.projector, "projector runner recovered");
        }
        self.failing = false;
        self.backoff = MIN_ERROR_BACKOFF;
    }
}

fn shutdown_requested(shutdown: &watch::Receiver<bool>) -> bool {
    // A dropped sender means nobody can ever ask again: stop.
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

async fn wait_or_shutdown(shutdown: &mut watch::Receiver<bool>, pause: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = shutdown.changed() => {}
    }
}

/// How a moved checkpoint counts the events applied.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Applied {
    /// A batch: added to the count.
    Add(usize),
    /// A rebuild swapped in: the count of the new tables.
    Set(u64),
}

/// Moves `name`'s checkpoint to `to` (in the caller's transaction, its row locked).
pub(crate) async fn move_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    to: Cursor,
    applied: Applied,
) -> Result<(), sqlx::Error> {
    let (count, replace) = match applied {
        Applied::Add(n) => (i64::try_from(n).unwrap_or(i64::MAX), false),
        Applied::Set(n) => (i64::try_from(n).unwrap_or(i64::MAX), true),
    };
    sqlx::query(
        "UPDATE projector_checkpoints \
         SET last_tx_id = $2::text::xid8, last_position = $3, \
             events_applied = CASE WHEN $5 THEN $4 ELSE events_applied + $4 END, updated_at = now() \
         WHERE projector = $1",
    )
    .bind(name)
    .bind(to.tx_id.to_string())
    .bind(to.position)
    .bind(count)
    .bind(replace)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn ensure_checkpoint(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO projector_checkpoints (projector) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

async fn read_checkpoint(conn: &mut PgConnection, name: &str, for_update: bool) -> Result<Option<Cursor>, sqlx::Error> {
    let sql = if for_update {
        "SELECT last_tx_id::text AS tx, last_position FROM projector_checkpoints \
         WHERE projector = $1 FOR UPDATE"
    } else {
        "SELECT last_tx_id::text AS tx, last_position FROM projector_checkpoints \
         WHERE projector = $1"
    };
    let row = sqlx::query(sql).bind(name).fetch_optional(conn).await?;
    match row {
        None => Ok(None),
        Some(row) => {
            let tx: String = row.try_get("tx")?;
            let tx = tx.parse::<u64>().map_err(|e| sqlx::Error::ColumnDecode {
                index: "last_tx_id".to_owned(),
                source: Box::new(e),
            })?;
            Ok(Some(Cursor::new(tx, row.try_get("last_position")?)))
        }
    }
}

/// How far a projector is behind the readable log.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Lag {
    /// Readable events after its checkpoint (of its types).
    pub events: i64,
    /// Age of the oldest of them (by `recorded_at`), in seconds; 0 when there are none.
    pub seconds: f64,
}

/// How far `projector` (reading `event_types`, empty = all) is behind the readable log. A
/// projector without a checkpoint yet is behind by the whole log.
pub async fn lag(pool: &PgPool, projector: &str, event_types: &[&str]) -> Result<Lag, sqlx::Error> {
    let types: Option<Vec<String>> = if event_types.is_empty() {
        None
    } else {
        Some(event_types.iter().map(|t| (*t).to_owned()).collect())
    };
    let row = sqlx::query(
        "WITH cp AS ( \
             SELECT coalesce((SELECT last_tx_id FROM projector_checkpoints WHERE projector = $1), \
                             '0'::xid8) AS tx, \
                    coalesce((SELECT last_position FROM projector_checkpoints WHERE projector = $1), \
                             0) AS pos) \
         SELECT count(*)::bigint AS events, \
                coalesce(greatest(extract(epoch FROM clock_timestamp() - min(e.recorded_at)), 0), \
                         0)::float8 AS seconds \
         FROM events e, cp \
         WHERE e.tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
           AND (e.tx_id, e.global_position) > (cp.tx, cp.pos) \
           AND ($2::text[] IS NULL OR e.event_type = ANY($2))",
    )
    .bind(projector)
    .bind(types)
    .fetch_one(pool)
    .await?;
    Ok(Lag {
        events: row.try_get("events")?,
        seconds: row.try_get("seconds")?,
    })
}

/// Age in seconds of the oldest open transaction in the cluster that holds a transaction id
/// (has written something), 0 when there is none. Every reader of the log waits behind it.
///
/// Sees other roles' sessions only with `pg_read_all_stats` (or superuser); without it,
/// their transactions are not counted.
pub async fn oldest_open_write_seconds(pool: &PgPool) -> Result<f64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT coalesce(max(greatest(extract(epoch FROM clock_timestamp() - xact_start), 0)), \
                         0)::float8 \
         FROM pg_stat_activity \
         WHERE backend_xid IS NOT NULL AND xact_start IS NOT NULL",
    )
    .fetch_one(pool)
    .await?;
    row.try_get(0)
}

/// The runtime's Prometheus metrics. Cheap to clone; give it to runners with
/// [`ProjectorRunner::with_metrics`].
#[derive(Clone, Debug)]
pub struct ProjectorMetrics {
    /// `chronicle_projector_lag_events{projector}`.
    pub lag_events: IntGaugeVec,
    /// `chronicle_projector_lag_seconds{projector}`.
    pub lag_seconds: GaugeVec,
    /// `chronicle_projector_events_applied_total{projector}`.
    pub events_applied: IntCounterVec,
    /// `chronicle_log_oldest_open_write_seconds`.
    pub oldest_open_write_seconds: Gauge,
}

/// Creates the runtime's metrics and registers them in `registry` (fails if they already are).
pub fn register_metrics(registry: &Registry) -> Result<ProjectorMetrics, prometheus::Error> {
    let lag_events = IntGaugeVec::new(
        Opts::new(
            "chronicle_projector_lag_events",
            "Readable events after the projector's checkpoint.",
        ),
        &["projector"],
    )?;
    let lag_seconds = GaugeVec::new(
        Opts::new(
            "chronicle_projector_lag_seconds",
            "Age of the oldest readable event the projector has not applied.",
        ),
        &["projector"],
    )?;
    let events_applied = IntCounterVec::new(
        Opts::new(
            "chronicle_projector_events_applied_total",
            "Events applied by the projector's runners in this process.",
        ),
        &["projector"],
    )?;
    let oldest_open_write_seconds = Gauge::new(
        "chronicle_log_oldest_open_write_seconds",
        "Age of the oldest open transaction holding a transaction id; every log reader waits behind it.",
    )?;
    registry.register(Box::new(lag_events.clone()))?;
    registry.register(Box::new(lag_seconds.clone()))?;
    registry.register(Box::new(events_applied.clone()))?;
    registry.register(Box::new(oldest_open_write_seconds.clone()))?;
    Ok(ProjectorMetrics {
        lag_events,
        lag_seconds,
        events_applied,
        oldest_open_write_seconds,
    })
}
