//! The global log reader against real PostgreSQL: concurrent writers, a transaction held open,
//! rolled-back appends, tailing readers. Shows that `log::read_after` delivers every committed
//! event exactly once, in one order shared by every reader, and that the naive
//! `global_position > $last` reader loses an event whose transaction commits late.
//!
//! No timing assertions: the scenario's one delicate moment (the held transaction committing
//! only after a reader has gone past its position) is arranged by waiting on what the readers
//! report, not by sleeping.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle_projections::log::{self, naive, Cursor, LogFilter, StoredEvent};
use chronicle_projections::wake::Wakeups;
use futures::Stream;
use futures::StreamExt as _;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row as _};

const TENANT: &str = "t1";
const WRITERS: usize = 8;
/// How long the writers keep appending.
const WRITE_FOR: Duration = Duration::from_secs(4);
/// The writer that holds one transaction open after inserting.
const HOLDER: usize = 0;
/// The writer that appends three events per transaction (one statement).
const MULTI: usize = 3;
/// Small reader batches, so readers read often and are often at the end of the log.
const READ_BATCH: i64 = 7;
/// Upper bound on how long the held transaction waits for the readers (never reached unless
/// something is broken; the test then fails on its assertions, it does not hang).
const HOLD_AT_MOST: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReaderKind {
    /// `log::read_after`.
    Ordered,
    /// `naive::read_naive_after_position`.
    Naive,
}

impl ReaderKind {
    fn index(self) -> usize {
        match self {
            ReaderKind::Ordered => 0,
            ReaderKind::Naive => 1,
        }
    }
}

/// What writers and readers tell each other.
struct Shared {
    /// The highest global position of a committed event.
    committed_max_position: AtomicI64,
    /// The highest transaction id of a committed append.
    committed_max_tx: AtomicU64,
    /// Per reader kind: the highest `committed_max_position` known before a read that came
    /// back short (the reader had reached the end of what it can read).
    caught_up_past: [AtomicI64; 2],
    /// Every writer has finished (all its transactions ended).
    writers_done: AtomicBool,
}

/// One (stream, sequence) that committed.
type Key = (String, i64);

struct WriterReport {
    committed: Vec<Key>,
    /// The global position of the event whose transaction was held open.
    held_position: Option<i64>,
}

/// A pool of its own, larger than the test pool's five connections.
async fn big_pool(pool: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(16)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap()
}

/// Appends `count` events to `stream` from `sequence` in one statement, in `conn`'s
/// transaction. Returns (global_position, tx_id) of each.
async fn insert(
    conn: &mut sqlx::PgConnection,
    writer: usize,
    stream: &str,
    sequence: i64,
    count: i64,
    rolled_back: bool,
) -> Vec<(i64, u64)> {
    let rows = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         SELECT 'TestStream', $1, s, 'Appended', '1', \
                json_build_object('writer', $2::int, 'seq', s, 'rolled_back', $4::bool), \
                json_build_object('tenant_id', $5::text) \
         FROM generate_series($3::bigint, $3::bigint + $6::bigint - 1) AS s \
         ORDER BY s \
         RETURNING global_position, tx_id::text AS tx",
    )
    .bind(stream)
    .bind(i32::try_from(writer).unwrap())
    .bind(sequence)
    .bind(rolled_back)
    .bind(TENANT)
    .bind(count)
    .fetch_all(conn)
    .await
    .unwrap();
    rows.iter()
        .map(|r| {
            let tx: String = r.get("tx");
            (r.get("global_position"), tx.parse().unwrap())
        })
        .collect()
}

async fn writer(pool: PgPool, w: usize, shared: Arc<Shared>, hold_watches: ReaderKind) -> WriterReport {
    let stream = format!("{TENANT}:stream-{w}");
    let started = Instant::now();
    let mut sequence = 1i64;
    let mut attempt = 0u64;
    let mut committed = Vec::new();
    let mut held_position = None;
    while started.elapsed() < WRITE_FOR {
        attempt += 1;
        let count = if w == MULTI { 3 } else { 1 };
        // Odd writers roll back every 7th attempt, then retry the same sequence.
        let roll_back = w % 2 == 1 && attempt % 7 == 0;
        // The holder, a third of the way in, keeps one transaction open after inserting.
        let hold = w == HOLDER && held_position.is_none() && started.elapsed() >= WRITE_FOR / 3;
        let mut tx = pool.begin().await.unwrap();
        let rows = insert(&mut tx, w, &stream, sequence, count, roll_back).await;
        if roll_back {
            tx.rollback().await.unwrap();
            continue;
        }
        let max_position = rows.iter().map(|r| r.0).max().unwrap();
        let tx_id = rows[0].1;
        if hold {
            held_position = Some(max_position);
            // Hold for at least a second, and until a reader of the watched kind has read up
            // to the end of the log after some event numbered above ours had committed: from
            // then on, a reader that goes by position has passed us.
            let held_since = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let passed = shared.caught_up_past[hold_watches.index()].load(Ordering::SeqCst) > max_position;
                if (passed && held_since.elapsed() >= Duration::from_secs(1)) || held_since.elapsed() >= HOLD_AT_MOST {
                    break;
                }
            }
        }
        tx.commit().await.unwrap();
        for k in 0..count {
            committed.push((stream.clone(), sequence + k));
        }
        shared.committed_max_position.fetch_max(max_position, Ordering::SeqCst);
        shared.committed_max_tx.fetch_max(tx_id, Ordering::SeqCst);
        sequence += count;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    WriterReport {
        committed,
        held_position,
    }
}

async fn current_xmin(pool: &PgPool) -> u64 {
    let xmin: String = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(pool)
        .await
        .unwrap();
    xmin.parse().unwrap()
}

/// Tails the log until the writers are done and everything they committed has been offered.
async fn reader(pool: PgPool, kind: ReaderKind, shared: Arc<Shared>) -> Vec<StoredEvent> {
    let mut seen = Vec::new();
    let mut cursor = Cursor::START;
    let mut position = 0i64;
    loop {
        let done = shared.writers_done.load(Ordering::SeqCst);
        // Ordered reader: once done, the log is drained only when every committed append is
        // below xmin (other databases' transactions on this cluster may hold it back a while;
        // xmin never goes down, so a read after this check covers them all).
        let drained_if_empty = done
            && match kind {
                ReaderKind::Naive => true,
                ReaderKind::Ordered => current_xmin(&pool).await > shared.committed_max_tx.load(Ordering::SeqCst),
            };
        let known = shared.committed_max_position.load(Ordering::SeqCst);
        let batch = match kind {
            ReaderKind::Ordered => log::read_after(&pool, cursor, &LogFilter::all(), READ_BATCH)
                .await
                .unwrap(),
            ReaderKind::Naive => naive::read_naive_after_position(&pool, position, READ_BATCH)
                .await
                .unwrap(),
        };
        if (batch.len() as i64) < READ_BATCH {
            shared.caught_up_past[kind.index()].fetch_max(known, Ordering::SeqCst);
        }
        if batch.is_empty() {
            if drained_if_empty {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        for event in batch {
            cursor = event.cursor;
            position = event.global_position;
            seen.push(event);
        }
    }
}

struct Outcome {
    committed: Vec<Key>,
    held: Key,
    /// What each reader saw, in order.
    readers: Vec<(ReaderKind, Vec<StoredEvent>)>,
}

async fn run_scenario(pool: &PgPool, readers: &[ReaderKind], hold_watches: ReaderKind) -> Outcome {
    let pool = big_pool(pool).await;
    let shared = Arc::new(Shared {
        committed_max_position: AtomicI64::new(0),
        committed_max_tx: AtomicU64::new(0),
        caught_up_past: [AtomicI64::new(0), AtomicI64::new(0)],
        writers_done: AtomicBool::new(false),
    });
    let reader_tasks: Vec<_> = readers
        .iter()
        .map(|&kind| {
            let (pool, shared) = (pool.clone(), shared.clone());
            (kind, tokio::spawn(reader(pool, kind, shared)))
        })
        .collect();
    let writer_tasks: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(pool.clone(), w, shared.clone(), hold_watches)))
        .collect();
    let mut committed = Vec::new();
    let mut held = None;
    for task in writer_tasks {
        let report = task.await.unwrap();
        if let Some(position) = report.held_position {
            held = Some(position);
        }
        committed.extend(report.committed);
    }
    shared.writers_done.store(true, Ordering::SeqCst);
    let mut seen = Vec::new();
    for (kind, task) in reader_tasks {
        seen.push((kind, task.await.unwrap()));
    }
    let held_position = held.expect("the holder held a transaction open");
    let held_key: Key = sqlx::query("SELECT aggregate_id, sequence FROM events WHERE global_position = $1")
        .bind(held_position)
        .fetch_one(&pool)
        .await
        .map(|r| (r.get("aggregate_id"), r.get("sequence")))
        .unwrap();
    pool.close().await;
    for (kind, events) in &seen {
        eprintln!(
            "scenario: {} committed events, held {held_key:?}; a {kind:?} reader saw {}",
            committed.len(),
            events.len()
        );
    }
    Outcome {
        committed,
        held: held_key,
        readers: seen,
    }
}

fn keys(events: &[StoredEvent]) -> Vec<Key> {
    events.iter().map(|e| (e.aggregate_id.clone(), e.sequence)).collect()
}

/// Every committed event exactly once, and nothing else.
fn assert_exactly_committed(what: &str, events: &[StoredEvent], committed: &[Key]) {
    let got = keys(events);
    let unique: HashSet<&Key> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "{what}: an event was delivered twice");
    assert!(
        events
            .iter()
            .all(|e| e.payload["rolled_back"] == serde_json::Value::Bool(false)),
        "{what}: delivered a rolled-back append"
    );
    let expected: HashSet<&Key> = committed.iter().collect();
    let missing: Vec<_> = expected.difference(&unique).collect();
    let extra: Vec<_> = unique.difference(&expected).collect();
    assert!(
        missing.is_empty(),
        "{what}: missed {} events: {missing:?}",
        missing.len()
    );
    assert!(extra.is_empty(), "{what}: delivered events never committed: {extra:?}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn tailing_readers_see_every_committed_event_once_in_one_shared_order(pool: PgPool) {
    let outcome = run_scenario(&pool, &[ReaderKind::Ordered, ReaderKind::Ordered], ReaderKind::Ordered).await;

    // The final order, read at rest in one go.
    let full = log::read_after(&pool, Cursor::START, &LogFilter::all(), i64::MAX)
        .await
        .unwrap();
    assert_exactly_committed("the full read", &full, &outcome.committed);
    assert!(
        full.windows(2).all(|w| w[0].cursor < w[1].cursor),
        "the full read is in cursor order"
    );
    assert!(keys(&full).contains(&outcome.held));

    for (i, (_, seen)) in outcome.readers.iter().enumerate() {
        let what = format!("tailing reader {i}");
        assert_exactly_committed(&what, seen, &outcome.committed);
        assert_eq!(keys(seen), keys(&full), "{what} saw another order than the final one");
        assert_eq!(
            seen.iter().map(|e| e.cursor).collect::<Vec<_>>(),
            full.iter().map(|e| e.cursor).collect::<Vec<_>>(),
        );
    }
    assert_eq!(keys(&outcome.readers[0].1), keys(&outcome.readers[1].1));

    // Within a stream, the order is the sequence order.
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    for event in &full {
        let previous = last.insert(&event.aggregate_id, event.sequence).unwrap_or(0);
        assert_eq!(
            event.sequence,
            previous + 1,
            "stream {} out of order",
            event.aggregate_id
        );
    }
    // The scenario did exercise what it claims: rollbacks, gaps, several writers, a batch.
    let positions: BTreeSet<i64> = full.iter().map(|e| e.global_position).collect();
    let max_position = *positions.iter().next_back().unwrap();
    assert!(
        (positions.len() as i64) < max_position,
        "rolled-back appends leave gaps in global_position"
    );
    assert_eq!(last.len(), WRITERS);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_naive_position_reader_skips_an_event_whose_transaction_commits_late(pool: PgPool) {
    let outcome = run_scenario(&pool, &[ReaderKind::Naive, ReaderKind::Ordered], ReaderKind::Naive).await;
    let (_, naive_seen) = &outcome.readers[0];
    let (_, ordered_seen) = &outcome.readers[1];

    // Side by side, same interleaving: the ordered reader gets everything...
    assert_exactly_committed("the ordered reader", ordered_seen, &outcome.committed);

    // ...the naive one missed at least the held event.
    let seen: HashSet<Key> = keys(naive_seen).into_iter().collect();
    let missed: Vec<&Key> = outcome.committed.iter().filter(|k| !seen.contains(*k)).collect();
    assert!(
        !missed.is_empty(),
        "the naive reader should have skipped the late-committing event"
    );
    assert!(
        missed.contains(&&outcome.held),
        "the held event {:?} should be among the missed {missed:?}",
        outcome.held
    );
    assert_eq!(seen.len(), naive_seen.len(), "no duplicates either way");
}

/// Appends one event in its own transaction; returns its global position.
async fn append(pool: &PgPool, tenant: &str, stream: &str, sequence: i64, event_type: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         VALUES ('TestStream', $1, $2, $3, '1', '{}', json_build_object('tenant_id', $4::text)) \
         RETURNING global_position",
    )
    .bind(format!("{tenant}:{stream}"))
    .bind(sequence)
    .bind(event_type)
    .bind(tenant)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits until `n` events are readable (other databases' open transactions on the shared
/// cluster may hold the readable end back for a moment).
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

/// Reads everything matching `filter` in batches of `batch`.
async fn read_all(pool: &PgPool, filter: &LogFilter, batch: i64) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    let mut cursor = Cursor::START;
    loop {
        let events = log::read_after(pool, cursor, filter, batch).await.unwrap();
        if events.is_empty() {
            return out;
        }
        assert!(events.len() as i64 <= batch);
        cursor = events.last().unwrap().cursor;
        out.extend(events);
    }
}

async fn seed_two_tenants(pool: &PgPool) -> Vec<StoredEvent> {
    let types = ["Opened", "MessageReceived", "Closed"];
    let mut n = 0;
    for round in 1..=4i64 {
        for (tenant, stream) in [("t1", "a"), ("t2", "a"), ("t1", "b"), ("t2", "b")] {
            let event_type = types[usize::try_from((round + n) % 3).unwrap()];
            append(pool, tenant, stream, round, event_type).await;
            n += 1;
        }
    }
    wait_readable(pool, 16).await
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_tenant_filter_reads_only_that_tenant_in_log_order(pool: PgPool) {
    let all = seed_two_tenants(&pool).await;
    for tenant in ["t1", "t2"] {
        let expected: Vec<_> = all.iter().filter(|e| e.tenant_id == tenant).cloned().collect();
        assert_eq!(expected.len(), 8);
        assert_eq!(read_all(&pool, &LogFilter::tenant(tenant), 3).await, expected);
        assert_eq!(read_all(&pool, &LogFilter::tenant(tenant), 100).await, expected);
    }
    assert!(read_all(&pool, &LogFilter::tenant("nobody"), 5).await.is_empty());
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_event_type_filter_reads_only_those_types_alone_or_with_a_tenant(pool: PgPool) {
    let all = seed_two_tenants(&pool).await;
    let wanted = ["Opened", "Closed"];
    let expected: Vec<_> = all
        .iter()
        .filter(|e| wanted.contains(&e.event_type.as_str()))
        .cloned()
        .collect();
    assert!(!expected.is_empty() && expected.len() < all.len());
    assert_eq!(read_all(&pool, &LogFilter::all().with_types(wanted), 2).await, expected);

    let t2: Vec<_> = expected.iter().filter(|e| e.tenant_id == "t2").cloned().collect();
    assert!(!t2.is_empty());
    assert_eq!(
        read_all(&pool, &LogFilter::tenant("t2").with_types(wanted), 2).await,
        t2
    );
    // No types listed means every type.
    assert_eq!(
        read_all(&pool, &LogFilter::all().with_types(Vec::<String>::new()), 5).await,
        all
    );
    assert!(read_all(&pool, &LogFilter::all().with_types(["Nope"]), 5)
        .await
        .is_empty());
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn head_is_the_cursor_of_the_last_readable_event(pool: PgPool) {
    assert_eq!(log::head(&pool, &LogFilter::all()).await.unwrap(), None);
    let all = seed_two_tenants(&pool).await;
    assert_eq!(
        log::head(&pool, &LogFilter::all()).await.unwrap(),
        Some(all.last().unwrap().cursor)
    );
    let last_t1 = all.iter().rev().find(|e| e.tenant_id == "t1").unwrap();
    assert_eq!(
        log::head(&pool, &LogFilter::tenant("t1")).await.unwrap(),
        Some(last_t1.cursor)
    );
    let last_opened = all.iter().rev().find(|e| e.event_type == "Opened").unwrap();
    assert_eq!(
        log::head(&pool, &LogFilter::all().with_types(["Opened"]))
            .await
            .unwrap(),
        Some(last_opened.cursor)
    );
    // A cursor survives its string form and resumes where it was.
    let middle = all[7].cursor;
    let parsed: Cursor = middle.to_string().parse().unwrap();
    let rest = log::read_after(&pool, parsed, &LogFilter::all(), 100).await.unwrap();
    assert_eq!(rest, all[8..].to_vec());
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_open_write_holds_readers_back_until_it_ends(pool: PgPool) {
    append(&pool, "t1", "a", 1, "Opened").await;
    let before = wait_readable(&pool, 1).await;

    // A writes and stays open; B, later, writes and commits.
    let mut a = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         VALUES ('TestStream', 't1:a', 2, 'Held', '1', '{}', '{\"tenant_id\":\"t1\"}')",
    )
    .execute(&mut *a)
    .await
    .unwrap();
    let b_position = append(&pool, "t1", "b", 1, "AfterHeld").await;

    // B is committed and visible, yet not readable: A's id is below it.
    let after = log::read_after(&pool, before[0].cursor, &LogFilter::all(), 100)
        .await
        .unwrap();
    assert!(after.is_empty(), "read past an open write: {after:?}");
    // A reader at the end of what it can read learns that more is committed beyond it.
    let (cursor, pool_ref) = (before[0].cursor, &pool);
    let committed_after =
        |filter: LogFilter| async move { log::any_committed_after(pool_ref, cursor, &filter).await.unwrap() };
    assert!(committed_after(LogFilter::all()).await);
    assert!(committed_after(LogFilter::tenant("t1")).await);
    assert!(committed_after(LogFilter::all().with_types(["AfterHeld"])).await);
    assert!(!committed_after(LogFilter::tenant("t2")).await);
    assert!(
        !committed_after(LogFilter::all().with_types(["Held"])).await,
        "A is not committed"
    );
    // The naive reader reads B already, and would never come back for A's event.
    let naive_after = naive::read_naive_after_position(&pool, before[0].global_position, 100)
        .await
        .unwrap();
    assert_eq!(
        naive_after.iter().map(|e| e.global_position).collect::<Vec<_>>(),
        vec![b_position]
    );

    a.commit().await.unwrap();
    let all = wait_readable(&pool, 3).await;
    assert!(!log::any_committed_after(&pool, all[2].cursor, &LogFilter::all())
        .await
        .unwrap());
    assert_eq!(
        all.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        vec!["Opened", "Held", "AfterHeld"],
        "the late commit comes first: its transaction id is lower"
    );
    assert!(all[1].global_position < all[2].global_position);
    assert!(all[1].tx_id < all[2].tx_id);
}

async fn next_event<S>(stream: &mut S) -> StoredEvent
where
    S: Stream<Item = Result<StoredEvent, sqlx::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
        .expect("no database error")
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_log_stream_delivers_history_then_live_events_of_its_tenant(pool: PgPool) {
    append(&pool, "t1", "a", 1, "Opened").await;
    append(&pool, "t2", "a", 1, "Opened").await;
    append(&pool, "t1", "a", 2, "MessageReceived").await;
    wait_readable(&pool, 3).await;

    let wakeups = Wakeups::manual();
    let receiver = wakeups.subscribe();
    let stream = log::stream_after(pool.clone(), Cursor::START, LogFilter::tenant("t1"), 1, receiver);
    let mut stream = Box::pin(stream);
    let first = next_event(&mut stream).await;
    let second = next_event(&mut stream).await;
    assert_eq!((first.sequence, second.sequence), (1, 2));
    assert!(first.tenant_id == "t1" && second.tenant_id == "t1");

    // Live: another tenant's event is not delivered, this tenant's is.
    append(&pool, "t2", "a", 2, "Closed").await;
    wakeups.notify("t2");
    append(&pool, "t1", "a", 3, "Closed").await;
    wakeups.notify("t1");
    let third = next_event(&mut stream).await;
    assert_eq!(
        (third.tenant_id.as_str(), third.sequence, third.event_type.as_str()),
        ("t1", 3, "Closed")
    );
    assert!(second.cursor < third.cursor);
}
