//! The live log's fan-out: many subscribers, each getting every matching event exactly once,
//! in log order, history first then live, whatever moment they joined.

use std::time::Duration;

use chronicle_projections::live::{LiveError, LiveLog};
use chronicle_projections::log::{Cursor, LogFilter, StoredEvent};
use chronicle_projections::wake::Wakeups;
use futures::StreamExt;
use sqlx::PgPool;

async fn append(pool: &PgPool, tenant: &str, stream: &str, sequence: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Conversation', $1, $2, 'MessageReceived', '1.0', '{}', json_build_object('tenant_id', $3::text))",
    )
    .bind(format!("{tenant}:{stream}"))
    .bind(sequence)
    .bind(tenant)
    .execute(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn every_subscriber_gets_every_matching_event_once_in_order(pool: PgPool) {
    for n in 1..=5 {
        append(&pool, "acme", "s1", n).await;
        append(&pool, "beta", "s1", n).await;
    }
    let wakeups = Wakeups::postgres(&pool).await.unwrap_or_else(|e| panic!("{e}"));
    let live = LiveLog::start(pool.clone(), wakeups)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // 40 subscribers join at different moments while events keep coming.
    let mut readers = Vec::new();
    for r in 0..40 {
        let stream = live.stream(Cursor::START, LogFilter::tenant("acme"));
        readers.push(tokio::spawn(async move {
            let mut stream = Box::pin(stream);
            let mut seen = Vec::new();
            while seen.len() < 25 {
                match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
                    Ok(Some(Ok(event))) => seen.push((event.tenant_id, event.sequence, event.global_position)),
                    other => panic!("reader {r}: {other:?}"),
                }
            }
            seen
        }));
        if r % 8 == 0 {
            let n = 6 + r as i64 / 8 * 4;
            for k in 0..4 {
                append(&pool, "acme", "s1", n + k).await;
                append(&pool, "beta", "s1", n + k).await;
            }
        }
    }
    for reader in readers {
        let seen = reader.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(seen.iter().all(|(t, _, _)| t == "acme"));
        let sequences: Vec<i64> = seen.iter().map(|(_, s, _)| *s).collect();
        assert_eq!(sequences, (1..=25).collect::<Vec<_>>());
    }
}

/// How long a subscriber may stay behind in these tests: far longer than a reader that keeps
/// up is ever behind, far shorter than the test's slow one.
const GRACE: Duration = Duration::from_millis(400);

type Events = std::pin::Pin<Box<dyn futures::Stream<Item = Result<StoredEvent, LiveError>> + Send>>;

async fn next(stream: &mut Events) -> Option<Result<StoredEvent, LiveError>> {
    tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .unwrap_or_else(|_| panic!("no event within 30 s"))
}

/// A subscriber of acme's events from the start, in its own task, that reads `count` events
/// and answers their sequences.
fn reader(live: &LiveLog, count: usize) -> tokio::task::JoinHandle<Vec<i64>> {
    let stream = live.stream(Cursor::START, LogFilter::tenant("acme"));
    tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        let mut seen = Vec::new();
        while seen.len() < count {
            match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
                Ok(Some(Ok(event))) => seen.push(event.sequence),
                other => panic!("the reader after {} events: {other:?}", seen.len()),
            }
        }
        seen
    })
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_subscriber_that_stays_behind_the_log_is_closed_naming_its_last_event_and_resumes_exactly(pool: PgPool) {
    append(&pool, "acme", "s1", 1).await;
    let wakeups = Wakeups::postgres(&pool).await.unwrap_or_else(|e| panic!("{e}"));
    let live = LiveLog::start_with(pool.clone(), wakeups, 32, GRACE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(live.buffer(), 32);
    // The slow subscriber takes its history (event 1), waits at the tail, takes event 2...
    let mut slow: Events = Box::pin(live.stream(Cursor::START, LogFilter::tenant("acme")));
    let first = next(&mut slow)
        .await
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("event 1"));
    assert_eq!(first.sequence, 1);
    let waiting = tokio::time::timeout(Duration::from_millis(200), slow.next()).await;
    assert!(waiting.is_err(), "nothing more yet: {waiting:?}");
    append(&pool, "acme", "s1", 2).await;
    let second = next(&mut slow)
        .await
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("event 2"));
    assert_eq!(second.sequence, 2);

    // ...then takes nothing while 100 more are appended. The appends finish and another
    // subscriber gets every event: neither waits for the slow one.
    let fast = reader(&live, 102);
    for n in 3..=102 {
        append(&pool, "acme", "s1", n).await;
    }
    assert_eq!(
        fast.await.unwrap_or_else(|e| panic!("{e}")),
        (1..=102).collect::<Vec<_>>()
    );

    // Once behind by more than the fan-out, it reads on from history (a burst is forgiven)...
    let third = next(&mut slow)
        .await
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("event 3"));
    assert_eq!(third.sequence, 3);
    // ...but it stays slow: for longer than the grace, and while 100 more are appended, it
    // takes no other event.
    tokio::time::sleep(GRACE * 2).await;
    let fast = reader(&live, 202);
    for n in 103..=202 {
        append(&pool, "acme", "s1", n).await;
    }
    assert_eq!(
        fast.await.unwrap_or_else(|e| panic!("{e}")),
        (1..=202).collect::<Vec<_>>()
    );

    // It gets what it had read already, then is closed, naming the last event it was given.
    let mut given = vec![third.clone()];
    let (last_delivered, buffer) = loop {
        match next(&mut slow).await {
            Some(Ok(event)) => given.push(event),
            Some(Err(LiveError::FellBehind { last_delivered, buffer })) => break (last_delivered, buffer),
            other => panic!("expected FellBehind, got {other:?}"),
        }
    };
    assert_eq!(buffer, 32);
    let last_given = given.last().unwrap_or_else(|| panic!("given events"));
    assert_eq!(
        last_delivered, last_given.cursor,
        "the reason names the last event given"
    );
    let sequences: Vec<i64> = given.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (3..=last_given.sequence).collect::<Vec<_>>(),
        "in order, no gap"
    );
    assert!(last_given.sequence < 202, "it was closed before it caught up");
    assert!(next(&mut slow).await.is_none(), "the stream ends with the error");

    // Resumed from there, it gets exactly the rest.
    let mut resumed: Events = Box::pin(live.stream(last_delivered, LogFilter::tenant("acme")));
    let mut rest = Vec::new();
    while rest.len() < usize::try_from(202 - last_given.sequence).unwrap_or(0) {
        let event = next(&mut resumed)
            .await
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("event"));
        rest.push(event.sequence);
    }
    assert_eq!(rest, (last_given.sequence + 1..=202).collect::<Vec<_>>());
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_first_catch_up_is_never_cut_short_however_long_it_stays_behind(pool: PgPool) {
    // 100 events of history, a fan-out of 16: appends during its first pass over history
    // overflow the subscriber's place in the ring before it was ever in it; it reads on, and
    // is not closed even when it stays behind for longer than the grace.
    for n in 1..=100 {
        append(&pool, "acme", "s1", n).await;
    }
    let wakeups = Wakeups::postgres(&pool).await.unwrap_or_else(|e| panic!("{e}"));
    let live = LiveLog::start_with(pool.clone(), wakeups, 16, GRACE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stream: Events = Box::pin(live.stream(Cursor::START, LogFilter::tenant("acme")));
    let mut seen = Vec::new();
    // Event 1 of its history; while it holds it, 50 more are appended and fanned out (another
    // subscriber has seen them all).
    seen.push(
        next(&mut stream)
            .await
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("event 1"))
            .sequence,
    );
    let fast = reader(&live, 150);
    for n in 101..=150 {
        append(&pool, "acme", "s1", n).await;
    }
    fast.await.unwrap_or_else(|e| panic!("{e}"));
    // It takes the rest of its first batch and one more: the ring overflowed for it, so it
    // reads history again (event 101).
    while seen.len() < 101 {
        seen.push(
            next(&mut stream)
                .await
                .and_then(Result::ok)
                .unwrap_or_else(|| panic!("event"))
                .sequence,
        );
    }
    // Then it stays behind for longer than the grace while 50 more are appended.
    let fast = reader(&live, 200);
    for n in 151..=200 {
        append(&pool, "acme", "s1", n).await;
    }
    fast.await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(GRACE * 2).await;
    while seen.len() < 200 {
        match next(&mut stream).await {
            Some(Ok(event)) => seen.push(event.sequence),
            other => panic!("after {} events: {other:?}", seen.len()),
        }
    }
    assert_eq!(seen, (1..=200).collect::<Vec<_>>());
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_subscriber_back_in_the_ring_after_a_burst_gets_the_full_grace_for_the_next_one(pool: PgPool) {
    append(&pool, "acme", "s1", 1).await;
    let wakeups = Wakeups::postgres(&pool).await.unwrap_or_else(|e| panic!("{e}"));
    let live = LiveLog::start_with(pool.clone(), wakeups, 32, GRACE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stream: Events = Box::pin(live.stream(Cursor::START, LogFilter::tenant("acme")));
    let mut seen = vec![
        next(&mut stream)
            .await
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("1"))
            .sequence,
    ];
    append(&pool, "acme", "s1", 2).await;
    seen.push(
        next(&mut stream)
            .await
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("2"))
            .sequence,
    );
    // A burst: it falls behind the ring, reads on from history and gets back into the ring.
    let mut appended = 2;
    for round in 0..2 {
        let fast = reader(&live, appended + 100);
        for n in appended + 1..=appended + 100 {
            append(&pool, "acme", "s1", i64::try_from(n).unwrap_or(0)).await;
        }
        appended += 100;
        fast.await.unwrap_or_else(|e| panic!("{e}"));
        while seen.len() < appended {
            match next(&mut stream).await {
                Some(Ok(event)) => seen.push(event.sequence),
                other => panic!("round {round}, after {} events: {other:?}", seen.len()),
            }
        }
        // Back in the ring: one more event comes from it.
        append(&pool, "acme", "s1", i64::try_from(appended + 1).unwrap_or(0)).await;
        appended += 1;
        seen.push(
            next(&mut stream)
                .await
                .and_then(Result::ok)
                .unwrap_or_else(|| panic!("live"))
                .sequence,
        );
        // Longer than the grace passes before the next burst: the next one is forgiven too.
        tokio::time::sleep(GRACE * 2).await;
    }
    assert_eq!(seen, (1..=i64::try_from(appended).unwrap_or(0)).collect::<Vec<_>>());
}
