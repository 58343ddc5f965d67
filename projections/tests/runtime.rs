//! The projector runtime against real PostgreSQL and Redis: batches committed with their
//! checkpoint, resumption after a kill or a failed batch, rebuilds, one active runner per
//! projector, wake-ups by LISTEN/NOTIFY and by Redis, lag and metrics.
//!
//! The test projector copies each event into a table whose primary key is the event's global
//! position, so applying an event twice fails the batch: double application cannot go unseen.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle_projections::log::{self, Cursor, LogFilter, StoredEvent};
use chronicle_projections::runtime::{self, Lag, ProjectionError, Projector, ProjectorRunner, RunnerConfig};
use chronicle_projections::wake::{self, Wakeups};
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool, Row as _};
use tokio::sync::watch;

/// Copies events into `table`; fails on the event at `fail_at`, if set.
struct CopyProjector {
    name: &'static str,
    table: &'static str,
    types: &'static [&'static str],
    fail_at: Option<i64>,
}

impl CopyProjector {
    fn new(name: &'static str, table: &'static str) -> Self {
        CopyProjector {
            name,
            table,
            types: &[],
            fail_at: None,
        }
    }
}

impl Projector for CopyProjector {
    fn name(&self) -> &'static str {
        self.name
    }

    fn event_types(&self) -> &'static [&'static str] {
        self.types
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [&'a StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            for event in events {
                if Some(event.global_position) == self.fail_at {
                    return Err(ProjectionError::Handler {
                        position: event.global_position,
                        reason: "simulated crash".into(),
                    });
                }
                // A plain INSERT: a second application of an event violates the primary key.
                sqlx::query(&format!(
                    "INSERT INTO {} (global_position, tenant_id, aggregate_id, sequence, \
                                     event_type) VALUES ($1, $2, $3, $4, $5)",
                    self.table
                ))
                .bind(event.global_position)
                .bind(&event.tenant_id)
                .bind(&event.aggregate_id)
                .bind(event.sequence)
                .bind(&event.event_type)
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        })
    }

    fn tables(&self) -> &'static [&'static str] {
        // A handful of projectors per test process: leaking the one-entry list is harmless.
        Box::leak(Box::new([self.table]))
    }

    fn reset<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            sqlx::query(&format!("DELETE FROM {}", self.table))
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
    }
}

async fn create_table(pool: &PgPool, table: &str) {
    sqlx::query(&format!(
        "CREATE TABLE {table} (global_position bigint PRIMARY KEY, tenant_id text NOT NULL, \
         aggregate_id text NOT NULL, sequence bigint NOT NULL, event_type text NOT NULL)"
    ))
    .execute(pool)
    .await
    .unwrap();
}

type Row = (i64, String, String, i64, String);

async fn table_rows(pool: &PgPool, table: &str) -> Vec<Row> {
    sqlx::query(&format!(
        "SELECT global_position, tenant_id, aggregate_id, sequence, event_type FROM {table} \
         ORDER BY global_position"
    ))
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

fn rows_of(events: &[StoredEvent]) -> Vec<Row> {
    let mut rows: Vec<Row> = events
        .iter()
        .map(|e| {
            (
                e.global_position,
                e.tenant_id.clone(),
                e.aggregate_id.clone(),
                e.sequence,
                e.event_type.clone(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Appends `count` events, one transaction each, over two tenants and a few streams, with
/// types alternating between `Common` and `Rare`.
async fn append_events(pool: &PgPool, count: usize) {
    for _ in 0..count {
        let next: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(pool)
            .await
            .unwrap();
        let tenant = if next % 2 == 0 { "t1" } else { "t2" };
        let stream = format!("{tenant}:s{}", next % 3);
        let sequence: i64 = sqlx::query_scalar("SELECT count(*) + 1 FROM events WHERE aggregate_id = $1")
            .bind(&stream)
            .fetch_one(pool)
            .await
            .unwrap();
        let event_type = if next % 4 == 3 { "Rare" } else { "Common" };
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                 event_version, payload, metadata) \
             VALUES ('TestStream', $1, $2, $3, '1', '{}', json_build_object('tenant_id', $4::text))",
        )
        .bind(&stream)
        .bind(sequence)
        .bind(event_type)
        .bind(tenant)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// What a writer does after its append has committed: wake the listeners of `tenant`
/// (chronicle_commands::announce sends the same notification).
async fn notify_after_commit(pool: &PgPool, tenant: &str) {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(wake::PG_CHANNEL)
        .bind(tenant)
        .execute(pool)
        .await
        .unwrap();
}

/// Waits until `n` events are readable (other databases' transactions on the shared cluster
/// may hold the readable end back for a moment); returns them in log order.
async fn wait_readable(pool: &PgPool, n: usize) -> Vec<StoredEvent> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = log::read_after(pool, Cursor::START, &LogFilter::all(), i64::MAX)
            .await
            .unwrap();
        if all.len() >= n || Instant::now() > deadline {
            assert_eq!(all.len(), n, "events did not become readable");
            return all;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (bounded) until `table` has `n` rows.
async fn wait_rows(pool: &PgPool, table: &str, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let rows = table_rows(pool, table).await.len();
        if rows == n {
            return;
        }
        if Instant::now() >= deadline {
            // Say why: events held back by an open write elsewhere on the cluster are not the
            // runtime's fault.
            let readable = log::read_after(pool, Cursor::START, &LogFilter::all(), i64::MAX)
                .await
                .unwrap()
                .len();
            let blocked = log::any_committed_after(pool, Cursor::START, &LogFilter::all())
                .await
                .unwrap();
            let oldest = runtime::oldest_open_write_seconds(pool).await.unwrap();
            panic!(
                "{table} has {rows} rows, expected {n} within {within:?} \
                 ({readable} events readable, any committed: {blocked}, \
                 oldest open write {oldest:.1} s)"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn checkpoint(pool: &PgPool, name: &str) -> Option<(Cursor, i64)> {
    sqlx::query(
        "SELECT last_tx_id::text AS tx, last_position, events_applied FROM projector_checkpoints \
         WHERE projector = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await
    .unwrap()
    .map(|r| {
        let tx: String = r.get("tx");
        (
            Cursor::new(tx.parse().unwrap(), r.get("last_position")),
            r.get("events_applied"),
        )
    })
}

fn config(batch_size: i64, poll_interval: Duration) -> RunnerConfig {
    RunnerConfig {
        batch_size,
        poll_interval,
    }
}

fn runner(pool: &PgPool, projector: CopyProjector, cfg: RunnerConfig) -> ProjectorRunner {
    ProjectorRunner::new(pool.clone(), Arc::new(projector), Wakeups::manual(), cfg)
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_runner_applies_the_log_in_batches_and_checkpoints_each(pool: PgPool) {
    create_table(&pool, "copy_a").await;
    append_events(&pool, 23).await;
    let all = wait_readable(&pool, 23).await;

    let r = runner(
        &pool,
        CopyProjector::new("copy_a", "copy_a"),
        config(4, Duration::from_secs(1)),
    );
    assert_eq!(r.run_once().await.unwrap(), 4);
    let (cp, applied) = checkpoint(&pool, "copy_a").await.unwrap();
    assert_eq!((cp, applied), (all[3].cursor, 4));
    assert_eq!(table_rows(&pool, "copy_a").await, rows_of(&all[..4]));

    assert_eq!(r.catch_up().await.unwrap(), 19);
    assert_eq!(r.run_once().await.unwrap(), 0);
    assert_eq!(table_rows(&pool, "copy_a").await, rows_of(&all));
    let (cp, applied) = checkpoint(&pool, "copy_a").await.unwrap();
    assert_eq!(
        (Some(cp), applied),
        (log::head(&pool, &LogFilter::all()).await.unwrap(), 23)
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_projector_killed_between_batches_and_restarted_resumes_from_its_checkpoint(pool: PgPool) {
    create_table(&pool, "copy_a").await;
    create_table(&pool, "copy_b").await;
    append_events(&pool, 20).await;
    let all = wait_readable(&pool, 20).await;

    // Three batches, then the runner is gone (dropped mid-life: nothing but the database
    // remembers where it was).
    {
        let first = runner(
            &pool,
            CopyProjector::new("copy", "copy_a"),
            config(5, Duration::from_secs(1)),
        );
        for _ in 0..3 {
            assert_eq!(first.run_once().await.unwrap(), 5);
        }
    }
    assert_eq!(checkpoint(&pool, "copy").await.unwrap(), (all[14].cursor, 15));

    // A crash in the middle of the next batch: its third event fails after two were written.
    let crashing = CopyProjector {
        fail_at: Some(all[17].global_position),
        ..CopyProjector::new("copy", "copy_a")
    };
    let crashing = runner(&pool, crashing, config(5, Duration::from_secs(1)));
    match crashing.run_once().await {
        Err(ProjectionError::Handler { position, .. }) => {
            assert_eq!(position, all[17].global_position)
        }
        other => panic!("expected the simulated crash, got {other:?}"),
    }
    // The whole batch rolled back, the checkpoint did not move.
    assert_eq!(table_rows(&pool, "copy_a").await, rows_of(&all[..15]));
    assert_eq!(checkpoint(&pool, "copy").await.unwrap(), (all[14].cursor, 15));
    drop(crashing);

    // More events arrive while no runner runs; a new runner picks up where the log says.
    append_events(&pool, 10).await;
    let all = wait_readable(&pool, 30).await;
    let restarted = runner(
        &pool,
        CopyProjector::new("copy", "copy_a"),
        config(5, Duration::from_secs(1)),
    );
    assert_eq!(restarted.catch_up().await.unwrap(), 15);
    let resumed = table_rows(&pool, "copy_a").await;
    assert_eq!(resumed, rows_of(&all), "none lost, none doubled");
    assert_eq!(checkpoint(&pool, "copy").await.unwrap(), (all[29].cursor, 30));

    // The same as a projection from zero, by another instance into another table...
    let fresh = runner(
        &pool,
        CopyProjector::new("copy_fresh", "copy_b"),
        config(7, Duration::from_secs(1)),
    );
    assert_eq!(fresh.catch_up().await.unwrap(), 30);
    assert_eq!(table_rows(&pool, "copy_b").await, resumed);

    // ...and as a rebuild in place.
    assert_eq!(restarted.rebuild().await.unwrap(), 30);
    assert_eq!(table_rows(&pool, "copy_a").await, resumed);
    assert_eq!(checkpoint(&pool, "copy").await.unwrap(), (all[29].cursor, 30));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn concurrent_catch_ups_of_one_projector_never_apply_an_event_twice(pool: PgPool) {
    create_table(&pool, "copy_a").await;
    append_events(&pool, 40).await;
    // Several runners of the same projector without the lock (as a rebuild from the replay
    // tool beside a live runner would be), while more events arrive.
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let r = runner(
                &pool,
                CopyProjector::new("copy", "copy_a"),
                config(3, Duration::from_secs(1)),
            );
            tokio::spawn(async move {
                let mut total = 0;
                for _ in 0..20 {
                    total += r.catch_up().await.unwrap();
                    tokio::task::yield_now().await;
                }
                total
            })
        })
        .collect();
    append_events(&pool, 20).await;
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let all = wait_readable(&pool, 60).await;
    let last = runner(
        &pool,
        CopyProjector::new("copy", "copy_a"),
        config(3, Duration::from_secs(1)),
    );
    total += last.catch_up().await.unwrap();
    assert_eq!(total, 60, "every event applied exactly once across the runners");
    assert_eq!(table_rows(&pool, "copy_a").await, rows_of(&all));
    assert_eq!(checkpoint(&pool, "copy").await.unwrap().1, 60);
}

async fn wait_active(activity: &mut watch::Receiver<bool>, within: Duration) {
    tokio::time::timeout(within, activity.wait_for(|active| *active))
        .await
        .expect("a runner became active in time")
        .unwrap();
}

async fn advisory_locks_held(pool: &PgPool, name: &str) -> i64 {
    // A one-bigint advisory lock shows its key's high half as classid, low half as objid.
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted \
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND objid::bigint = (hashtext('chronicle.projector.' || $1)::bigint & 4294967295)",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn only_one_runner_per_projector_is_active_and_a_standby_takes_over(pool: PgPool) {
    create_table(&pool, "copy_a").await;
    append_events(&pool, 5).await;
    let poll = Duration::from_millis(100);
    let a = runner(&pool, CopyProjector::new("copy", "copy_a"), config(10, poll));
    let b = runner(&pool, CopyProjector::new("copy", "copy_a"), config(10, poll));
    let (mut a_active, mut b_active) = (a.activity(), b.activity());
    let (stop_a, a_shutdown) = watch::channel(false);
    let (stop_b, b_shutdown) = watch::channel(false);
    let a_task = tokio::spawn(a.run(a_shutdown));
    let b_task = tokio::spawn(b.run(b_shutdown));

    // One of them becomes active...
    let deadline = Duration::from_secs(30);
    tokio::time::timeout(deadline, async {
        loop {
            if *a_active.borrow() || *b_active.borrow() {
                return;
            }
            tokio::select! {
                _ = a_active.changed() => {}
                _ = b_active.changed() => {}
            }
        }
    })
    .await
    .expect("a runner became active");
    // ...and stays the only one over many standby polls.
    for _ in 0..10 {
        tokio::time::sleep(poll).await;
        assert!(
            !(*a_active.borrow() && *b_active.borrow()),
            "two runners active at once"
        );
        assert_eq!(advisory_locks_held(&pool, "copy").await, 1);
    }
    wait_rows(&pool, "copy_a", 5, Duration::from_secs(30)).await;

    // Stop the active one: the standby takes over and keeps the projection going.
    let (stop_first, first_task, mut second_active, stop_second, second_task) = if *a_active.borrow() {
        (stop_a, a_task, b_active, stop_b, b_task)
    } else {
        (stop_b, b_task, a_active, stop_a, a_task)
    };
    stop_first.send(true).unwrap();
    first_task.await.unwrap();
    wait_active(&mut second_active, Duration::from_secs(30)).await;
    assert_eq!(advisory_locks_held(&pool, "copy").await, 1);
    append_events(&pool, 3).await;
    wait_rows(&pool, "copy_a", 8, Duration::from_secs(30)).await;

    stop_second.send(true).unwrap();
    second_task.await.unwrap();
    assert!(!*second_active.borrow());
    assert_eq!(advisory_locks_held(&pool, "copy").await, 0);
    let all = wait_readable(&pool, 8).await;
    assert_eq!(table_rows(&pool, "copy_a").await, rows_of(&all));
}

/// Starts `run` with a 30 s poll interval and waits until it is active and idle.
async fn start_idle_runner(pool: &PgPool, wakeups: Wakeups) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let r = ProjectorRunner::new(
        pool.clone(),
        Arc::new(CopyProjector::new("copy", "copy_a")),
        wakeups,
        config(100, Duration::from_secs(30)),
    );
    let mut active = r.activity();
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(r.run(shutdown));
    wait_active(&mut active, Duration::from_secs(30)).await;
    (stop, task)
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_listen_notify_wake_up_applies_a_new_event_without_waiting_for_the_poll(pool: PgPool) {
    create_table(&pool, "copy_a").await;
    let wakeups = Wakeups::postgres(&pool).await.unwrap();
    let (stop, task) = start_idle_runner(&pool, wakeups).await;
    // The poll interval is 30 s: only the notification can bring the event in 10 s. Appends
    // notify nothing themselves; writers notify after commit (chronicle_commands::announce).
    append_events(&pool, 1).await;
    notify_after_commit(&pool, "t1").await;
    wait_rows(&pool, "copy_a", 1, Duration::from_secs(10)).await;
    append_events(&pool, 2).await;
    notify_after_commit(&pool, "t2").await;
    wait_rows(&pool, "copy_a", 3, Duration::from_secs(10)).await;
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_redis_wake_up_applies_a_new_event_without_waiting_for_the_poll(pool: PgPool) {
    let url = std::env::var("REDIS_URL").expect("REDIS_URL is set (eval \"$(scripts/services.sh)\")");
    create_table(&pool, "copy_a").await;
    let wakeups = Wakeups::redis(&url).await.unwrap();
    let (stop, task) = start_idle_runner(&pool, wakeups).await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // The poll interval is 30 s and nothing listens to PostgreSQL: only Redis can wake it.
    append_events(&pool, 1).await;
    wake::publish_redis(&mut conn, "t1").await.unwrap();
    wait_rows(&pool, "copy_a", 1, Duration::from_secs(10)).await;
    append_events(&pool, 1).await;
    wake::publish_redis(&mut conn, "t2").await.unwrap();
    wait_rows(&pool, "copy_a", 2, Duration::from_secs(10)).await;
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn listen_notify_wake_ups_survive_a_dropped_connection(pool: PgPool) {
    let wakeups = Wakeups::postgres(&pool).await.unwrap();
    let mut receiver = wakeups.subscribe();
    append_events(&pool, 1).await;
    notify_after_commit(&pool, "t2").await;
    assert_eq!(
        receiver.wait(None, Duration::from_secs(30)).await,
        wake::Woken::Notified
    );

    // Kill the listening session, as a failover or an idle reaper would.
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(killed, 1);
    // After reconnecting, everyone is woken (appends during the outage went unannounced)...
    assert_eq!(
        receiver.wait(Some("t1"), Duration::from_secs(30)).await,
        wake::Woken::Notified
    );
    // ...and appends wake again (the wake-up above is sent once LISTEN is back).
    append_events(&pool, 1).await;
    notify_after_commit(&pool, "t2").await;
    assert_eq!(
        receiver.wait(None, Duration::from_secs(30)).await,
        wake::Woken::Notified
    );
}

#[tokio::test]
async fn a_wake_receiver_wakes_for_its_tenant_and_otherwise_polls() {
    let wakeups = Wakeups::manual();
    let mut receiver = wakeups.subscribe();
    wakeups.notify("t2");
    assert_eq!(
        receiver.wait(Some("t1"), Duration::from_millis(50)).await,
        wake::Woken::PollElapsed
    );
    wakeups.notify("t2");
    wakeups.notify("t1");
    assert_eq!(
        receiver.wait(Some("t1"), Duration::from_secs(30)).await,
        wake::Woken::Notified
    );
    wakeups.notify_all();
    assert_eq!(
        receiver.wait(Some("t1"), Duration::from_secs(30)).await,
        wake::Woken::Notified
    );
    wakeups.notify("t9");
    assert_eq!(
        receiver.wait(None, Duration::from_secs(30)).await,
        wake::Woken::Notified
    );
    // A burst is one wake-up: the rest is drained.
    for _ in 0..5 {
        wakeups.notify("t1");
    }
    assert_eq!(
        receiver.wait(None, Duration::from_secs(30)).await,
        wake::Woken::Notified
    );
    assert_eq!(
        receiver.wait(None, Duration::from_millis(50)).await,
        wake::Woken::PollElapsed
    );
    // Falling behind the broadcast counts as a wake-up.
    for _ in 0..5000 {
        wakeups.notify("t2");
    }
    assert_eq!(
        receiver.wait(Some("t1"), Duration::from_secs(30)).await,
        wake::Woken::Notified
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn lag_counts_pending_events_until_the_projector_catches_up(pool: PgPool) {
    create_table(&pool, "copy_a").await;
    create_table(&pool, "copy_b").await;
    append_events(&pool, 8).await;
    let all = wait_readable(&pool, 8).await;
    let rare = all.iter().filter(|e| e.event_type == "Rare").count() as i64;
    assert!(rare > 0 && rare < 8);
    tokio::time::sleep(Duration::from_millis(20)).await;

    let lag = runtime::lag(&pool, "copy", &[]).await.unwrap();
    assert_eq!(lag.events, 8);
    assert!(lag.seconds > 0.0, "{lag:?}");
    let rare_lag = runtime::lag(&pool, "rare", &["Rare"]).await.unwrap();
    assert_eq!(rare_lag.events, rare);

    let r = runner(
        &pool,
        CopyProjector::new("copy", "copy_a"),
        config(3, Duration::from_secs(1)),
    );
    assert_eq!(r.run_once().await.unwrap(), 3);
    assert_eq!(runtime::lag(&pool, "copy", &[]).await.unwrap().events, 5);
    r.catch_up().await.unwrap();
    assert_eq!(runtime::lag(&pool, "copy", &[]).await.unwrap(), Lag::default());

    let rare_projector = CopyProjector {
        types: &["Rare"],
        ..CopyProjector::new("rare", "copy_b")
    };
    let rare_runner = runner(&pool, rare_projector, config(100, Duration::from_secs(1)));
    assert_eq!(rare_runner.catch_up().await.unwrap() as i64, rare);
    assert_eq!(runtime::lag(&pool, "rare", &["Rare"]).await.unwrap(), Lag::default());
    assert_eq!(table_rows(&pool, "copy_b").await.len() as i64, rare);
}

fn registered_names(registry: &prometheus::Registry) -> Vec<String> {
    registry.gather().iter().map(|f| f.name().to_owned()).collect()
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn metrics_report_applied_events_lag_and_the_oldest_open_write(pool: PgPool) {
    create_table(&pool, "copy_a").await;
    append_events(&pool, 6).await;
    wait_readable(&pool, 6).await;
    let registry = prometheus::Registry::new();
    let metrics = runtime::register_metrics(&registry).unwrap();
    assert!(runtime::register_metrics(&registry).is_err(), "registered once only");
    let r = runner(
        &pool,
        CopyProjector::new("copy", "copy_a"),
        config(4, Duration::from_secs(1)),
    )
    .with_metrics(metrics.clone());
    let lag_events = metrics.lag_events.with_label_values(&["copy"]);
    let lag_seconds = metrics.lag_seconds.with_label_values(&["copy"]);
    let applied = metrics.events_applied.with_label_values(&["copy"]);

    r.refresh_metrics().await.unwrap();
    assert_eq!(lag_events.get(), 6);
    assert!(lag_seconds.get() > 0.0);

    assert_eq!(r.catch_up().await.unwrap(), 6);
    r.refresh_metrics().await.unwrap();
    assert_eq!(applied.get(), 6);
    assert_eq!(lag_events.get(), 0);
    assert_eq!(lag_seconds.get(), 0.0);
    let names = registered_names(&registry);
    for name in [
        "chronicle_projector_lag_events",
        "chronicle_projector_lag_seconds",
        "chronicle_projector_events_applied_total",
        "chronicle_log_oldest_open_write_seconds",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
    }

    // An open transaction holding an id, for over a second: the gauge sees at least that.
    let mut open = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *open)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let oldest = runtime::oldest_open_write_seconds(&pool).await.unwrap();
    assert!(oldest >= 1.0, "oldest open write {oldest} s");
    r.refresh_metrics().await.unwrap();
    assert!(metrics.oldest_open_write_seconds.get() >= 1.0);
    open.rollback().await.unwrap();
}

async fn checkpoint_of(pool: &PgPool, name: &str) -> (String, i64) {
    sqlx::query_as("SELECT last_tx_id::text, last_position FROM projector_checkpoints WHERE projector = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_projector_of_rare_types_moves_its_checkpoint_past_other_events_without_skipping_a_late_commit(pool: PgPool) {
    create_table(&pool, "rare_copy").await;
    let mut projector = CopyProjector::new("rare_only", "rare_copy");
    projector.types = &["Rare"];
    let r = runner(&pool, projector, RunnerConfig::default());

    append_events(&pool, 22).await;
    let all = wait_readable(&pool, 22).await;
    assert_eq!(r.catch_up().await.unwrap(), 5);
    let last = all.last().unwrap();
    // Past the trailing Common events, so the next wake-up does not scan them again.
    assert_eq!(
        checkpoint_of(&pool, "rare_only").await,
        (last.tx_id.to_string(), last.global_position)
    );

    // A Rare event written by a transaction that stays open, then Common events committed after it.
    let mut held = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         VALUES ('TestStream', 't1:held', 1, 'Rare', '1', '{}', '{\"tenant_id\":\"t1\"}')",
    )
    .execute(&mut *held)
    .await
    .unwrap();
    append_events(&pool, 8).await;
    // Events committed after the open write are not readable yet (their ids are above it).
    assert_eq!(r.catch_up().await.unwrap(), 0);
    // The checkpoint stays below the open write, whatever it moved past.
    let (tx_text, _) = checkpoint_of(&pool, "rare_only").await;
    let held_tx: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *held)
        .await
        .unwrap();
    assert!(
        tx_text.parse::<u64>().unwrap() < held_tx.parse::<u64>().unwrap(),
        "checkpoint {tx_text} passed the open write {held_tx}"
    );
    held.commit().await.unwrap();
    let everything = wait_readable(&pool, 31).await;
    r.catch_up().await.unwrap();
    let rare: Vec<StoredEvent> = everything.into_iter().filter(|e| e.event_type == "Rare").collect();
    assert_eq!(
        table_rows(&pool, "rare_copy").await,
        rows_of(&rare),
        "every Rare event, once"
    );
}
