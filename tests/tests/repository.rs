//! Chronicle's event repository (commands/src/repository.rs): one-statement appends keep the
//! log's guarantees (atomic, chained, one transaction, conflicts detected), and one-statement
//! loads return the snapshot and the events after it.

use chronicle_commands::repository::ChronicleEventRepository;
use chronicle_domain::conversation::Conversation;
use chronicle_projections::chain::verify;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use serde_json::json;
use sqlx::PgPool;

fn event(stream: &str, sequence: usize) -> SerializedEvent {
    SerializedEvent::new(
        stream.to_string(),
        sequence,
        "Conversation".into(),
        "ConversationTagged".into(),
        "1.0".into(),
        json!({"ConversationTagged": {"tag": format!("t{sequence}"), "by": "agent-1", "at": "2026-01-01T00:00:00Z"}}),
        json!({"tenant_id": "acme", "actor": "system:test", "correlation_id": "c", "causation_id": "c"}),
    )
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_commit_of_several_events_lands_in_one_transaction_and_chains(pool: PgPool) {
    let repo = ChronicleEventRepository::new(pool.clone());
    let stream = "acme:ct_1";
    repo.persist::<Conversation>(&[event(stream, 1), event(stream, 2), event(stream, 3)], None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    repo.persist::<Conversation>(&[event(stream, 4)], None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let transactions: Vec<i64> = sqlx::query_scalar(
        "SELECT count(DISTINCT tx_id)::bigint FROM events WHERE aggregate_id = $1 GROUP BY sequence <= 3 ORDER BY 1",
    )
    .bind(stream)
    .fetch_all(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        transactions,
        vec![1, 1],
        "the three events share one transaction, the fourth has its own"
    );
    let report = verify(&pool, Some("acme"), |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.events, report.is_intact()), (4, true), "{report:?}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_append_at_a_taken_sequence_is_a_conflict_and_writes_nothing(pool: PgPool) {
    let repo = ChronicleEventRepository::new(pool.clone());
    let stream = "acme:ct_2";
    repo.persist::<Conversation>(&[event(stream, 1)], None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let again = repo
        .persist::<Conversation>(&[event(stream, 2), event(stream, 1)], None)
        .await;
    assert!(matches!(again, Err(PersistenceError::OptimisticLockError)), "{again:?}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
        .bind(stream)
        .fetch_one(&pool)
        .await
        .unwrap_or_default();
    assert_eq!(stored, 1, "the refused commit left no event behind");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_load_returns_the_snapshot_and_the_events_after_it(pool: PgPool) {
    let ours = ChronicleEventRepository::new(pool.clone());
    let stream = "acme:ct_3";

    // No snapshot yet: nothing, then every event.
    ours.persist::<Conversation>(&[event(stream, 1), event(stream, 2)], None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ours
        .get_snapshot::<Conversation>(stream)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .is_none());
    let all = ours
        .get_last_events::<Conversation>(stream, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all, vec![event(stream, 1), event(stream, 2)]);

    // A snapshot at 3, then two more events.
    ours.persist::<Conversation>(
        &[event(stream, 3)],
        Some((stream.to_string(), json!({"state": "at 3"}), 1)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    ours.persist::<Conversation>(&[event(stream, 4), event(stream, 5)], None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let snapshot = ours
        .get_snapshot::<Conversation>(stream)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a snapshot"));
    assert_eq!(
        (
            snapshot.current_sequence,
            snapshot.current_snapshot,
            &snapshot.aggregate
        ),
        (3, 1, &json!({"state": "at 3"}))
    );
    // Handed over from the load, then (asked again) read with a bound parameter: the same.
    let after = ours
        .get_last_events::<Conversation>(stream, 3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let again = ours
        .get_last_events::<Conversation>(stream, 3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let direct = vec![event(stream, 4), event(stream, 5)];
    assert_eq!(after, direct);
    assert_eq!(again, direct);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_cached_snapshot_is_served_until_another_writer_moves_it(pool: PgPool) {
    let reader = ChronicleEventRepository::new(pool.clone());
    let writer = ChronicleEventRepository::new(pool.clone());
    let stream = "acme:ct_4";
    writer
        .persist::<Conversation>(&[event(stream, 1)], Some((stream.to_string(), json!({"at": 1}), 1)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(load(&reader, stream).await, Some((1, json!({"at": 1}))));
    assert_eq!(
        load(&reader, stream).await,
        Some((1, json!({"at": 1}))),
        "served from the cache"
    );

    // Another process (here another repository) moves the snapshot: the reader sees it.
    writer
        .persist::<Conversation>(&[event(stream, 2)], Some((stream.to_string(), json!({"at": 2}), 2)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(load(&reader, stream).await, Some((2, json!({"at": 2}))));
    assert_eq!(
        reader
            .get_last_events::<Conversation>(stream, 2)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        Vec::new()
    );
}

async fn load(repo: &ChronicleEventRepository, stream: &str) -> Option<(usize, serde_json::Value)> {
    repo.get_snapshot::<Conversation>(stream)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|s| (s.current_sequence, s.aggregate))
}
