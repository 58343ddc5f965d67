//! The write side against real PostgreSQL: conflicts retried, snapshots that keep the rules,
//! refusals reported with their rule's code, metadata on every event.

use chronicle_commands::dispatch::{Commands, SnapshotPolicy};
use chronicle_commands::error::CommandError;
use chronicle_domain::conversation::{ConversationCommand, ConversationError};
use chronicle_domain::metadata::CommandMetadata;
use chronicle_tests::tenant;
use sqlx::PgPool;

fn message(id: &str, contact: &str, second: i64) -> ConversationCommand {
    chronicle_tests::inbound_message(id, contact, second)
}

/// The correlation and causation ids are checked on the events (below).
fn metadata() -> CommandMetadata {
    CommandMetadata {
        correlation_id: "corr-1".into(),
        causation_id: "req-1".into(),
        ..chronicle_tests::user_metadata("acme", "u1", "agent")
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn concurrent_commands_on_one_stream_are_retried_not_failed(pool: PgPool) {
    let commands = Commands::new(
        pool.clone(),
        SnapshotPolicy {
            conversation: None,
            wallet: None,
        },
    );
    let mut tasks = Vec::new();
    for i in 0..8 {
        let commands = commands.clone();
        tasks.push(tokio::spawn(async move {
            commands
                .conversation("ct_same", message(&format!("wamid.c{i}"), "ct_same", i), &metadata())
                .await
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(
            task.await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.code().to_string())),
        );
    }
    // Every command either landed or, after every retry, reported CONFLICT; never INTERNAL.
    assert!(
        outcomes
            .iter()
            .all(|o| o.is_ok() || o.as_ref().err().map(String::as_str) == Some("CONFLICT")),
        "{outcomes:?}"
    );
    let landed = outcomes.iter().filter(|o| o.is_ok()).count() as i64;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = 'acme:ct_same'")
        .fetch_one(&pool)
        .await
        .unwrap_or_default();
    assert_eq!(stored, landed);
    // Each conflict means another of the 8 committed, so with 10 retries every one lands.
    assert_eq!(landed, 8, "{outcomes:?}");
    let sequences: Vec<i64> =
        sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = 'acme:ct_same' ORDER BY sequence")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    assert_eq!(sequences, (1..=landed).collect::<Vec<_>>());
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_snapshotted_conversation_still_refuses_repeats_and_other_contacts(pool: PgPool) {
    let commands = Commands::new(
        pool.clone(),
        SnapshotPolicy {
            conversation: Some(2),
            wallet: None,
        },
    );
    for i in 0..5 {
        commands
            .conversation("ct_a", message(&format!("wamid.s{i}"), "ct_a", i), &metadata())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let snapshots: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshots WHERE aggregate_id = 'acme:ct_a'")
        .fetch_one(&pool)
        .await
        .unwrap_or_default();
    assert_eq!(snapshots, 1, "a snapshot row was written");
    // A repeat of the first message, loaded from the snapshot, adds nothing.
    commands
        .conversation("ct_a", message("wamid.s0", "ct_a", 0), &metadata())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = 'acme:ct_a'")
        .fetch_one(&pool)
        .await
        .unwrap_or_default();
    assert_eq!(stored, 5);
    // A message of another contact on this stream is refused by the rule, with its code.
    let refused = commands
        .conversation("ct_a", message("wamid.x", "ct_b", 9), &metadata())
        .await;
    match refused {
        Err(CommandError::Rejected(e)) => {
            assert_eq!(
                e,
                ConversationError::MessageFromAnotherContact {
                    message_ref: "wamid.x".into()
                }
                .into()
            );
            assert_eq!(e.code(), "MESSAGE_FROM_ANOTHER_CONTACT");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn every_event_carries_tenant_actor_correlation_and_causation(pool: PgPool) {
    let commands = Commands::new(pool.clone(), SnapshotPolicy::default());
    commands
        .conversation("ct_a", message("wamid.m", "ct_a", 0), &metadata())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let row: (String, String, String, String, String) = sqlx::query_as(
        "SELECT tenant_id, metadata->>'actor', metadata->>'correlation_id', metadata->>'causation_id', aggregate_id FROM events",
    )
    .fetch_one(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        row,
        (
            "acme".into(),
            "user:u1:agent".into(),
            "corr-1".into(),
            "req-1".into(),
            "acme:ct_a".into()
        )
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_server_acts_as_the_application_role_which_can_only_append_to_the_log(pool: PgPool) {
    let app = chronicle_tests::TestApp::new(pool).await;
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&app.state.pool)
        .await
        .unwrap_or_default();
    assert_eq!(user, "chronicle_app");
    app.state
        .commands
        .conversation("ct_a", message("wamid.r", "ct_a", 0), &metadata())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for forbidden in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "ALTER TABLE events DISABLE TRIGGER events_refuse_update",
        "TRUNCATE events",
    ] {
        let refused = sqlx::query(forbidden).execute(&app.state.pool).await;
        let code = refused
            .err()
            .and_then(|e| e.as_database_error().and_then(|d| d.code().map(|c| c.to_string())));
        assert_eq!(
            code.as_deref(),
            Some("42501"),
            "{forbidden} must be refused for lack of privilege"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
}

/// The positions in the log of a stream's events, in sequence order.
async fn positions_of(pool: &PgPool, stream: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT global_position FROM events WHERE aggregate_id = $1 ORDER BY sequence")
        .bind(stream)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_command_returns_the_stream_and_log_positions_it_appended_with_or_without_snapshots(pool: PgPool) {
    // A snapshot every 2 events: commits that move the snapshot take postgres-es's path.
    let commands = Commands::new(
        pool.clone(),
        SnapshotPolicy {
            conversation: Some(2),
            wallet: None,
        },
    );
    let stream = tenant("acme").stream_id("ct_pos");
    let mut returned = Vec::new();
    for i in 0..5 {
        let appended = commands
            .conversation("ct_pos", message(&format!("wamid.p{i}"), "ct_pos", i), &metadata())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(appended.stream, stream);
        assert!(!appended.positions.is_empty(), "message {i} appended nothing");
        returned.extend(appended.positions);
    }
    assert_eq!(returned, positions_of(&pool, &stream).await);
    let snapshots: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshots WHERE aggregate_id = $1")
        .bind(&stream)
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snapshots, 1, "the snapshot path was not taken");

    // A repeat decides nothing: nothing appended, no position.
    let repeat = commands
        .conversation("ct_pos", message("wamid.p0", "ct_pos", 0), &metadata())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(repeat.positions.is_empty());
    assert_eq!(repeat.last_position(), None);
    assert_eq!(returned, positions_of(&pool, &stream).await);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_lease_claim_gives_each_row_to_one_worker_until_its_lease_ends(pool: PgPool) {
    use chronicle_commands::workers::LeaseClaim;
    use sqlx::Row;
    sqlx::query(
        "CREATE TABLE lease_items (tenant_id text, item_id int, ready boolean, attempts int NOT NULL DEFAULT 0,
                                   not_before timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, item_id))",
    )
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(
        "INSERT INTO lease_items (tenant_id, item_id, ready)
         SELECT 'acme', i, i % 5 <> 0 FROM generate_series(1, 40) AS i",
    )
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let claim = LeaseClaim::new(
        "lease_items",
        "tenant_id, item_id",
        "ready",
        "item_id",
        "item_id, attempts",
    );
    // Four workers at once, ten rows each at most: every ready row exactly once.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (pool, claim) = (pool.clone(), claim.clone());
        tasks.push(tokio::spawn(async move {
            let rows = claim
                .query()
                .bind(10_i64)
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            rows.iter()
                .map(|r| (r.get::<i32, _>("item_id"), r.get::<i32, _>("attempts")))
                .collect::<Vec<_>>()
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let mut ids: Vec<i32> = claimed.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    let ready: Vec<i32> = (1..=40).filter(|i| i % 5 != 0).collect();
    assert_eq!(ids, ready, "each ready row once, no row that is not ready");
    assert!(claimed.iter().all(|(_, attempts)| *attempts == 1));
    // Leased: nothing more to claim until the lease ends.
    let again = claim
        .query()
        .bind(100_i64)
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.is_empty());
    // A lease that ended (a stopped worker): the row comes back, its attempt counted again.
    sqlx::query("UPDATE lease_items SET not_before = now() - interval '1 second' WHERE item_id = 7")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let back = claim
        .query()
        .bind(100_i64)
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].get::<i32, _>("item_id"), 7);
    assert_eq!(back[0].get::<i32, _>("attempts"), 2);
}
