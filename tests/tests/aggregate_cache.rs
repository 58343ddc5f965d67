//! The in-process cache of recently used aggregates (issue 19): a command on a cached stream
//! costs its append alone, and a cache that another writer made stale can never store or
//! answer anything the stream's present state would not. Snapshots hold exactly the events
//! they say they fold.

use chronicle_commands::dispatch::{Appended, Commands, SnapshotPolicy};
use chronicle_commands::error::CommandError;
use chronicle_domain::conversation::{Conversation, ConversationCommand, ConversationStatus};
use chronicle_domain::metadata::CommandMetadata;
use chrono::{TimeZone, Utc};
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, EventEnvelope};
use serde_json::Value;
use sqlx::PgPool;

fn message(id: &str, second: i64) -> ConversationCommand {
    chronicle_tests::inbound_message(id, "ct_1", second)
}

fn status(to: ConversationStatus) -> ConversationCommand {
    ConversationCommand::SetStatus {
        status: to,
        by: "u1".into(),
        at: Utc.timestamp_opt(1_790_000_100, 0).single().unwrap_or_default(),
    }
}

fn metadata() -> CommandMetadata {
    chronicle_tests::user_metadata("acme", "u1", "agent")
}

/// Two writers over one database, as two API processes would be: each has its own cache.
fn two_writers(pool: &PgPool) -> (Commands, Commands) {
    let policy = SnapshotPolicy {
        conversation: None,
        wallet: None,
    };
    (Commands::new(pool.clone(), policy), Commands::new(pool.clone(), policy))
}

async fn run(commands: &Commands, command: ConversationCommand) -> Result<Appended, CommandError> {
    commands.conversation("ct_1", command, &metadata()).await
}

async fn event_types(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM events WHERE aggregate_id = 'acme:ct_1' ORDER BY sequence")
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("reading the log: {e}"))
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_command_decided_on_a_stale_cache_is_caught_by_the_primary_key_and_decided_again(pool: PgPool) {
    let (a, b) = two_writers(&pool);
    run(&a, message("wm_1", 1)).await.unwrap();
    // B receives wm_2; A's cache still says the stream ends at wm_1.
    run(&b, message("wm_2", 2)).await.unwrap();
    // To A's cache wm_2 is new: its append collides with B's, and on the present state it is a
    // repeat, which stores nothing.
    let repeat = run(&a, message("wm_2", 2)).await.unwrap();
    assert!(repeat.positions.is_empty(), "a repeat on the present state");
    assert_eq!(event_types(&pool).await.len(), 2, "no duplicate from the stale cache");
    // And A's cache is current again: its next command appends after B's event.
    let next = run(&a, message("wm_3", 3)).await.unwrap();
    assert_eq!(next.positions.len(), 1);
    assert_eq!(event_types(&pool).await.len(), 3);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_no_op_on_a_stale_cache_is_decided_again_on_the_present_state(pool: PgPool) {
    let (a, b) = two_writers(&pool);
    run(&a, message("wm_1", 1)).await.unwrap();
    run(&b, status(ConversationStatus::Pending)).await.unwrap();
    // A's cache says "open", so "open" looks like no change; the stream says "pending".
    let reopened = run(&a, status(ConversationStatus::Open)).await.unwrap();
    assert_eq!(reopened.positions.len(), 1, "decided on the present state");
    assert_eq!(
        event_types(&pool).await,
        [
            "MessageReceived",
            "ConversationStatusChanged",
            "ConversationStatusChanged"
        ]
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_refusal_on_a_stale_cache_is_decided_again_on_the_present_state(pool: PgPool) {
    let (a, b) = two_writers(&pool);
    run(&a, message("wm_1", 1)).await.unwrap();
    run(&a, status(ConversationStatus::Resolved)).await.unwrap();
    run(&b, status(ConversationStatus::Open)).await.unwrap();
    // To A's cache the conversation is resolved, from which "pending" is refused; it is open.
    let pending = run(&a, status(ConversationStatus::Pending)).await.unwrap();
    assert_eq!(pending.positions.len(), 1, "decided on the present state");
    // A refusal that holds on the present state is still a refusal.
    run(&b, status(ConversationStatus::Resolved)).await.unwrap();
    run(&b, status(ConversationStatus::Closed)).await.unwrap();
    let refused = run(&a, status(ConversationStatus::Pending)).await;
    assert!(matches!(refused, Err(CommandError::Rejected(_))), "{refused:?}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn every_snapshot_is_the_fold_of_exactly_the_events_it_covers(pool: PgPool) {
    // A snapshot every 3 events, commands of one and of two events crossing the boundaries.
    let commands = Commands::new(
        pool.clone(),
        SnapshotPolicy {
            conversation: Some(3),
            wallet: None,
        },
    );
    for n in 0..10 {
        run(&commands, message(&format!("wm_{n}"), n)).await.unwrap();
        let to = if n % 2 == 0 {
            ConversationStatus::Pending
        } else {
            ConversationStatus::Open
        };
        run(&commands, status(to)).await.unwrap();
    }
    let snapshots: Vec<(i64, Value)> = sqlx::query_as(
        "SELECT last_sequence, payload::jsonb::json FROM snapshots WHERE aggregate_id = 'acme:ct_1' ORDER BY last_sequence",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!snapshots.is_empty(), "snapshots were taken");
    let rows: Vec<(String, String, i64, String, String, Value, Value)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload::jsonb::json, metadata::jsonb::json \
           FROM events WHERE aggregate_id = 'acme:ct_1' ORDER BY sequence",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (last_sequence, payload) in snapshots {
        let mut folded = Conversation::default();
        for (kind, id, sequence, event_type, version, payload, metadata) in rows.iter().cloned() {
            if sequence > last_sequence {
                break;
            }
            let serialized = SerializedEvent::new(id, sequence as usize, kind, event_type, version, payload, metadata);
            let envelope: EventEnvelope<Conversation> = serialized.try_into().unwrap();
            folded.apply(envelope.payload);
        }
        assert_eq!(
            serde_json::to_value(&folded).unwrap(),
            payload,
            "the snapshot at {last_sequence} folds the events up to it, each once"
        );
    }
    // And a writer that starts from the snapshot decides as one that folded everything.
    let fresh = Commands::new(
        pool.clone(),
        SnapshotPolicy {
            conversation: Some(3),
            wallet: None,
        },
    );
    let repeat = run(&fresh, message("wm_9", 9)).await.unwrap();
    assert!(repeat.positions.is_empty());
}
