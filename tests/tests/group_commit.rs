//! Group commit in the application (issue 19): concurrent commands of different callers are
//! appended by one statement and commit in one transaction, and each is still stored all or
//! none and refused alone on its own conflict or refusal.

use chronicle_commands::committer::GroupCommitter;
use cqrs_es::persist::{PersistenceError, SerializedEvent};
use futures::future::join_all;
use serde_json::json;
use sqlx::PgPool;

fn event(stream: &str, sequence: usize, tenant: &str) -> SerializedEvent {
    SerializedEvent::new(
        stream.to_owned(),
        sequence,
        "TestStream".to_owned(),
        "Happened".to_owned(),
        "1".to_owned(),
        json!({ "n": sequence }),
        json!({ "tenant_id": tenant }),
    )
}

fn events(stream: &str, sequences: std::ops::RangeInclusive<usize>) -> Vec<SerializedEvent> {
    sequences.map(|s| event(stream, s, "acme")).collect()
}

async fn stored(pool: &PgPool, stream: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
        .bind(stream)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("reading the log: {e}"))
}

async fn transactions(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(DISTINCT tx_id::text) FROM events")
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("reading the log: {e}"))
}

fn is_conflict<T: std::fmt::Debug>(result: &Result<T, PersistenceError>) -> bool {
    matches!(result, Err(PersistenceError::OptimisticLockError))
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn concurrent_commands_of_different_callers_commit_in_one_transaction(pool: PgPool) {
    let committer = GroupCommitter::new(pool.clone());
    let streams: Vec<String> = (0..20).map(|i| format!("acme:s{i}")).collect();
    // All twenty are queued before a committer task runs (the test's runtime has one thread).
    let results = join_all(streams.iter().map(|s| committer.append("TestStream", events(s, 1..=2)))).await;
    for (stream, result) in streams.iter().zip(&results) {
        let positions = result.as_ref().unwrap();
        assert_eq!(positions.len(), 2, "{stream}: both events stored");
        assert!(positions[0].1 < positions[1].1, "in position order");
        assert_eq!(stored(&pool, stream).await, vec![1, 2]);
    }
    assert!(
        transactions(&pool).await < 20,
        "twenty commands waiting together commit in fewer transactions"
    );
    // The hash chain holds across a shared statement: every event's hash (first ones included)
    // is chronicle_event_hash of its predecessor's and its own fields.
    let broken: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e LEFT JOIN events p ON p.aggregate_id = e.aggregate_id \
           AND p.sequence = e.sequence - 1 \
          WHERE e.hash IS DISTINCT FROM chronicle_event_hash(p.hash, e.aggregate_type, e.aggregate_id, e.sequence, \
                e.event_type, e.event_version, e.payload::text, e.metadata::text)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(broken, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_command_that_lost_its_sequence_is_refused_alone_and_the_others_are_stored(pool: PgPool) {
    let committer = GroupCommitter::new(pool.clone());
    committer
        .append("TestStream", events("acme:taken", 1..=1))
        .await
        .unwrap();
    let results = join_all([
        committer.append("TestStream", events("acme:a", 1..=1)),
        committer.append("TestStream", events("acme:taken", 1..=1)),
        committer.append("TestStream", events("acme:b", 1..=3)),
    ])
    .await;
    assert!(results[0].is_ok());
    assert!(is_conflict(&results[1]), "{:?}", results[1]);
    assert!(results[2].is_ok());
    assert_eq!(stored(&pool, "acme:taken").await, vec![1]);
    assert_eq!(stored(&pool, "acme:b").await, vec![1, 2, 3]);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_command_whose_events_would_be_stored_only_in_part_is_stored_not_at_all(pool: PgPool) {
    let committer = GroupCommitter::new(pool.clone());
    committer
        .append("TestStream", events("acme:half", 1..=2))
        .await
        .unwrap();
    // Sequences 2 and 3: 2 is taken, 3 is free. Storing 3 alone would be a lie.
    let results = join_all([
        committer.append("TestStream", events("acme:c", 1..=1)),
        committer.append("TestStream", events("acme:half", 2..=3)),
        committer.append("TestStream", events("acme:d", 1..=1)),
    ])
    .await;
    assert!(results[0].is_ok());
    assert!(is_conflict(&results[1]), "{:?}", results[1]);
    assert!(results[2].is_ok());
    assert_eq!(stored(&pool, "acme:half").await, vec![1, 2]);
    assert_eq!(stored(&pool, "acme:c").await, vec![1]);
    assert_eq!(stored(&pool, "acme:d").await, vec![1]);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_command_the_database_refuses_fails_alone_with_its_own_error(pool: PgPool) {
    let committer = GroupCommitter::new(pool.clone());
    // No tenant in the metadata: the log's trigger refuses the row.
    let untenanted = vec![event("acme:bad", 1, "")];
    let results = join_all([
        committer.append("TestStream", events("acme:e", 1..=1)),
        committer.append("TestStream", untenanted),
        committer.append("TestStream", events("acme:f", 1..=1)),
    ])
    .await;
    assert!(results[0].is_ok());
    match &results[1] {
        Err(PersistenceError::UnknownError(e)) => assert!(e.to_string().contains("no tenant_id"), "{e}"),
        other => panic!("the refused command's own error, got {other:?}"),
    }
    assert!(results[2].is_ok());
    assert!(stored(&pool, "acme:bad").await.is_empty());
    assert_eq!(stored(&pool, "acme:f").await, vec![1]);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn two_commands_on_one_stream_at_once_store_one_and_refuse_the_other(pool: PgPool) {
    let committer = GroupCommitter::new(pool.clone());
    let results = join_all([
        committer.append("TestStream", events("acme:same", 1..=1)),
        committer.append("TestStream", events("acme:same", 1..=1)),
        committer.append("TestStream", events("acme:other", 1..=1)),
    ])
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
    assert_eq!(results.iter().filter(|r| is_conflict(r)).count(), 1);
    assert!(results[2].is_ok());
    assert_eq!(stored(&pool, "acme:same").await, vec![1]);
}
