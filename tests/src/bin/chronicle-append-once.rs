//! `chronicle-append-once DATABASE_URL`: another process that writes, for the wake-up tests
//! (tests/tests/wakeups.rs). Appends one inbound WhatsApp message to the conversation
//! `acme:ct_child` through `Commands`, as the API would, waits until the append has been
//! announced to other processes, and exits (status 1 with the reason on failure).

use std::time::Duration;

use chronicle_commands::dispatch::{Commands, SnapshotPolicy};
use sqlx::PgPool;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: chronicle-append-once DATABASE_URL"))?;
    let pool = PgPool::connect(&url).await?;
    let commands = Commands::new(pool, SnapshotPolicy::default());
    commands
        .conversation(
            "ct_child",
            chronicle_tests::inbound_message("wm_child", "ct_child", 0),
            &chronicle_tests::user_metadata("acme", "u1", "agent"),
        )
        .await?;
    commands.flush_announcements(Duration::from_secs(10)).await;
    Ok(())
}
