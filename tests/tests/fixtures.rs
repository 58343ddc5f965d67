//! The generator's datasets load through the command path and in bulk, and both verify.

use chronicle_fixtures::generator::{generate, Scale};
use chronicle_projections::chain::verify;
use chronicle_tests::*;
use sqlx::PgPool;

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_generated_dataset_loaded_through_commands_verifies_and_projects(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let dataset = generate(11, Scale::SMALL);
    let leads = chronicle_commands::leads::Leads::new(
        app.state.commands.clone(),
        chronicle_commands::keystore::KeyStore::new(app.state.pool.clone(), app.state.master_key.clone()),
    );
    chronicle_fixtures::load::through_commands(
        &app.state.pool,
        &app.state.id_key,
        &app.state.inbox,
        &leads,
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

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_conversations_read_model_is_the_same_one_event_at_a_time_or_folded_per_batch(pool: PgPool) {
    use chronicle_projections::conversations::ConversationsProjector;
    use chronicle_projections::runtime::{ProjectorRunner, RunnerConfig};
    let app = TestApp::new(pool).await;
    let dataset = generate(5, Scale::SMALL);
    let leads = chronicle_commands::leads::Leads::new(
        app.state.commands.clone(),
        chronicle_commands::keystore::KeyStore::new(app.state.pool.clone(), app.state.master_key.clone()),
    );
    chronicle_fixtures::load::through_commands(
        &app.state.pool,
        &app.state.id_key,
        &app.state.inbox,
        &leads,
        &dataset,
        |_, _| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let rows = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT row_to_json(c)::text FROM (SELECT * FROM conversations ORDER BY tenant_id, conversation_id) c",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap_or_default()
    };
    let runner = |batch_size: i64| {
        ProjectorRunner::new(
            app.state.pool.clone(),
            std::sync::Arc::new(ConversationsProjector::new(app.state.master_key.clone())),
            app.state.wakeups.clone(),
            RunnerConfig {
                batch_size,
                ..RunnerConfig::default()
            },
        )
    };
    // (`project` finishes anything an open transaction elsewhere in the cluster held back.)
    runner(1).rebuild().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let one_by_one = rows().await;
    runner(500).rebuild().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    assert_eq!(rows().await, one_by_one);
    assert_eq!(one_by_one.len(), 40);
}
