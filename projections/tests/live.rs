//! The live log's fan-out: many subscribers, each getting every matching event exactly once,
//! in log order, history first then live, whatever moment they joined.

use std::time::Duration;

use chronicle_projections::live::LiveLog;
use chronicle_projections::log::{Cursor, LogFilter};
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
