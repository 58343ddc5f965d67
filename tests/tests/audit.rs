//! The hash chain over events the real slice wrote (postgres-es appends, snapshots on): it
//! verifies, and a payload altered behind the application's back is named by stream and
//! sequence.

use chronicle_projections::chain::{verify, BrokenKind};
use chronicle_tests::*;
use sqlx::PgPool;

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_slices_own_events_verify_and_a_tampered_one_is_named(pool: PgPool) {
    let mut settings = settings(false);
    settings.snapshots.conversation = Some(2);
    let app = TestApp::with_settings(pool, settings).await;
    app.tenant_with_number("acme", "999000999").await;
    let messages = (0..5)
        .map(|i| {
            text_message(
                "263771000021",
                &wamid("263771000021", i),
                1_790_000_000 + i as i64,
                "hello",
            )
        })
        .collect();
    let statuses = vec![status(
        &wamid("263771000021", 50),
        "sent",
        1_790_000_100,
        "263771000021",
    )];
    app.post_delivery(&delivery("999000999", &[("263771000021", "Ann")], messages, statuses))
        .await;
    app.drain().await;

    let clean = verify(&app.pool, Some("acme"), |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stored = app.count("SELECT count(*) FROM events WHERE tenant_id = 'acme'").await;
    assert!(stored >= 6, "five messages and a status at least");
    assert_eq!((clean.events as i64, clean.is_intact()), (stored, true), "{clean:?}");

    // As a superuser could: guard off, alter the third event's payload, guard on.
    sqlx::raw_sql(
        "ALTER TABLE events DISABLE TRIGGER events_refuse_update;
         UPDATE events SET payload = '{\"forged\": true}' WHERE sequence = 3 AND aggregate_type = 'Conversation';
         ALTER TABLE events ENABLE TRIGGER events_refuse_update;",
    )
    .execute(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let stream: String =
        sqlx::query_scalar("SELECT aggregate_id FROM events WHERE sequence = 3 AND aggregate_type = 'Conversation'")
            .fetch_one(&app.pool)
            .await
            .unwrap_or_default();
    let report = verify(&app.pool, None, |_| {}).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.broken.len(), 1, "{report:?}");
    let broken = &report.broken[0];
    assert_eq!((broken.aggregate_id.as_str(), broken.sequence), (stream.as_str(), 3));
    assert!(matches!(broken.kind, BrokenKind::HashMismatch { .. }), "{broken:?}");
}
