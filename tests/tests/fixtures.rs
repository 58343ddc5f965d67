//! The generator's datasets load through the command path and in bulk, and both verify.

use chronicle_fixtures::generator::{generate, Scale};
use chronicle_projections::chain::verify;
use chronicle_tests::*;
use sqlx::PgPool;

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_generated_dataset_loaded_through_commands_verifies_and_projects(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let dataset = generate(11, Scale::SMALL);
    chronicle_fixtures::load::through_commands(
        &app.state.pool,
        &app.state.id_key,
        &app.state.inbox,
        &dataset,
        |_, _| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let report = verify(&app.pool, None, |_| {}).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    assert!(
        report.events as usize >= dataset.items() - dataset.deliveries.len(),
        "{report:?}"
    );
    app.project().await;
    assert_eq!(app.count("SELECT count(*) FROM conversations").await, 40);
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_inbox WHERE state <> 'done'")
            .await,
        0
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_bulk_loaded_dataset_verifies_and_projects_like_the_command_path(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let dataset = generate(11, Scale::SMALL);
    let stats = chronicle_fixtures::load::bulk(&app.state.pool, &app.state.master_key, &dataset, |_, _| {})
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(stats.streams, 40);
    let report = verify(&app.pool, None, |_| {}).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events, stats.events);
    app.project().await;
    let names: i64 = app
        .count("SELECT count(*) FROM conversations WHERE contact_name IS NOT NULL AND last_message_text IS NOT NULL")
        .await;
    assert_eq!(names, 40, "envelopes sealed in bulk open in the projection");
}
