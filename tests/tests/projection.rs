//! The `conversations` projector under faults: killed between batches and restarted, it
//! resumes from its checkpoint, and its read model equals a rebuild from zero.

use std::sync::Arc;

use chronicle_api::app::projectors;
use chronicle_projections::conversations::ConversationsProjector;
use chronicle_projections::runtime::{ProjectorRunner, RunnerConfig};
use chronicle_tests::*;
use sqlx::PgPool;

const NUMBER: &str = "333000333";

async fn read_model(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT row_to_json(c)::text FROM (
            SELECT tenant_id, conversation_id, contact_id, contact_phone, contact_name, status, last_message_ref,
                   last_message_kind, last_message_text, last_message_at, last_direction, unread_count,
                   message_count, window_expires_at, created_at, updated_at, last_position
              FROM conversations ORDER BY tenant_id, conversation_id) c
         UNION ALL
         SELECT row_to_json(s)::text FROM (SELECT * FROM message_statuses ORDER BY tenant_id, message_ref) s",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn deliver_round(app: &TestApp, round: i64) {
    let base = 1_790_000_000 + round * 1000;
    let contacts = ["263771000011", "263771000012", "263771000013"];
    let messages = (0..9)
        .map(|i| {
            text_message(
                contacts[i % 3],
                &format!("wamid.r{round}.{i}"),
                base + i as i64,
                &format!("round {round} message {i}"),
            )
        })
        .collect();
    let statuses = vec![
        status(&format!("wamid.out.{round}"), "sent", base + 20, contacts[0]),
        status(&format!("wamid.out.{round}"), "read", base + 22, contacts[0]),
    ];
    let body = delivery(
        NUMBER,
        &[
            ("263771000011", "Ann"),
            ("263771000012", "Ben"),
            ("263771000013", "Cat"),
        ],
        messages,
        statuses,
    );
    app.post_delivery(&body).await;
    app.drain().await;
}

fn small_batches(app: &TestApp) -> ProjectorRunner {
    let projector = Arc::new(ConversationsProjector::new(
        chronicle_domain::pii::MasterKey::from_base64(MASTER_KEY).unwrap_or_else(|e| panic!("{e}")),
    ));
    ProjectorRunner::new(
        app.state.pool.clone(),
        projector,
        app.state.wakeups.clone(),
        RunnerConfig {
            batch_size: 4,
            ..RunnerConfig::default()
        },
    )
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_projector_killed_between_batches_resumes_from_its_checkpoint_and_equals_a_rebuild(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", NUMBER).await;
    deliver_round(&app, 1).await;

    // Apply two batches of four, then "kill" the runner (drop it mid-log).
    let first = small_batches(&app);
    let mut applied = 0;
    while applied < 8 {
        applied += first.run_once().await.unwrap_or_else(|e| panic!("{e}"));
    }
    drop(first);
    let checkpoint: i64 =
        sqlx::query_scalar("SELECT events_applied FROM projector_checkpoints WHERE projector = 'conversations'")
            .fetch_one(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checkpoint, 8);

    // More events arrive while it is down; a new runner resumes.
    deliver_round(&app, 2).await;
    app.project().await;
    let resumed = read_model(&app.pool).await;
    let total_events = app
        .count("SELECT count(*) FROM events WHERE aggregate_type = 'Conversation'")
        .await;
    let applied_total: i64 =
        sqlx::query_scalar("SELECT events_applied FROM projector_checkpoints WHERE projector = 'conversations'")
            .fetch_one(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(applied_total, total_events, "every event applied exactly once");

    // A rebuild from zero gives the same rows.
    for projector in projectors(&app.state) {
        ProjectorRunner::new(
            app.state.pool.clone(),
            projector,
            app.state.wakeups.clone(),
            RunnerConfig::default(),
        )
        .rebuild()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    app.project().await;
    let rebuilt = read_model(&app.pool).await;
    assert_eq!(resumed, rebuilt);
    // And the counts are the ones the log implies: 6 messages per contact, none twice.
    let counts: Vec<i32> = sqlx::query_scalar("SELECT message_count FROM conversations ORDER BY conversation_id")
        .fetch_all(&app.pool)
        .await
        .unwrap_or_default();
    assert_eq!(counts, vec![6, 6, 6]);
    let reference = app.state.id_key.message_ref(&tenant("acme"), "whatsapp", "wamid.out.2");
    let status: String = sqlx::query_scalar("SELECT status FROM message_statuses WHERE message_ref = $1")
        .bind(reference)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_default();
    assert_eq!(status, "read");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn statuses_arriving_read_before_delivered_before_sent_end_as_read(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", NUMBER).await;
    let recipient = "263771000011";
    // The recipient wrote first (a status never opens a conversation, decision 0020).
    let hello = delivery(
        NUMBER,
        &[(recipient, "Rudo")],
        vec![text_message(recipient, "wamid.in.x", 1_790_000_000, "hi")],
        vec![],
    );
    app.post_delivery(&hello).await;
    app.drain().await;
    let body = delivery(
        NUMBER,
        &[],
        vec![],
        vec![
            status("wamid.out.x", "read", 1_790_000_030, recipient),
            status("wamid.out.x", "delivered", 1_790_000_020, recipient),
            status("wamid.out.x", "sent", 1_790_000_010, recipient),
            status("wamid.out.x", "read", 1_790_000_030, recipient),
        ],
    );
    app.post_delivery(&body).await;
    app.drain().await;
    app.project().await;
    // Each status is a fact recorded once (the repeated read adds nothing); the current
    // status is the furthest.
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'DeliveryStatusRecorded'")
            .await,
        3
    );
    let reference = app.state.id_key.message_ref(&tenant("acme"), "whatsapp", "wamid.out.x");
    let status: String = sqlx::query_scalar("SELECT status FROM message_statuses WHERE message_ref = $1")
        .bind(reference)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_default();
    assert_eq!(status, "read");
}
