//! Wake-ups after commit (issue 19): no notification inside an appending transaction; readers
//! of this process are woken at once, readers of other processes by a notification the writer
//! sends after commit, and neither needs the poll.

use std::time::{Duration, Instant};

use chronicle_commands::dispatch::{Commands, SnapshotPolicy};
use chronicle_domain::conversation::ConversationCommand;
use chronicle_domain::metadata::CommandMetadata;
use chronicle_projections::wake::{Wakeups, Woken};
use sqlx::PgPool;

/// A poll interval no test waits out: a wake-up that arrives came from a notification.
const NO_POLL: Duration = Duration::from_secs(60);

fn message(id: &str, contact: &str) -> ConversationCommand {
    chronicle_tests::inbound_message(id, contact, 0)
}

fn metadata() -> CommandMetadata {
    chronicle_tests::user_metadata("acme", "u1", "agent")
}

fn url_of(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    )
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn no_trigger_on_the_log_sends_a_notification_inside_the_appending_transaction(pool: PgPool) {
    let notifying: Vec<String> = sqlx::query_scalar(
        "SELECT t.tgname::text FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
          WHERE t.tgrelid = 'events'::regclass AND p.prosrc ILIKE '%notify%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        notifying.is_empty(),
        "triggers that notify inside appends: {notifying:?}"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_append_wakes_this_processes_readers_at_once(pool: PgPool) {
    let wakeups = Wakeups::manual();
    let mut receiver = wakeups.subscribe();
    let local = wakeups.clone();
    let commands = Commands::new(pool.clone(), SnapshotPolicy::default())
        .with_local_wake(std::sync::Arc::new(move |tenant: &str| local.notify(tenant)));
    commands
        .conversation("ct_1", message("wm_1", "ct_1"), &metadata())
        .await
        .unwrap();
    // Sent before the command returned: no waiting at all.
    assert_eq!(receiver.wait(Some("acme"), Duration::ZERO).await, Woken::Notified);
    // A repeat appends nothing and wakes nobody.
    commands
        .conversation("ct_1", message("wm_1", "ct_1"), &metadata())
        .await
        .unwrap();
    assert_eq!(
        receiver.wait(Some("acme"), Duration::from_millis(50)).await,
        Woken::PollElapsed
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_append_in_another_process_wakes_this_ones_readers_without_polling(pool: PgPool) {
    let wakeups = Wakeups::postgres(&pool).await.unwrap();
    let mut receiver = wakeups.subscribe();
    let started = Instant::now();
    // Another process: a small writer that appends through `Commands` and exits.
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle-append-once"))
        .arg(url_of(&pool))
        .output()
        .await
        .unwrap();
    assert!(
        child.status.success(),
        "the other process failed: {}",
        String::from_utf8_lossy(&child.stderr)
    );
    // The poll is a minute away: only the other process's notification can wake us now.
    assert_eq!(receiver.wait(Some("acme"), NO_POLL).await, Woken::Notified);
    assert!(started.elapsed() < NO_POLL);
    let appended: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = 'acme:ct_child'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(appended, 1, "the wake-up came after the append had committed");
}
