//! The generator's datasets load through the command path and in bulk, both verify, and both
//! write the same events per stream for every kind the generator covers.

use std::collections::BTreeMap;

use chronicle_fixtures::generator::{generate, Dataset, Scale};
use chronicle_fixtures::load::{through_commands, Loaded};
use chronicle_projections::chain::verify;
use chronicle_tests::*;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

/// Loads `dataset` into `app` through the command path, projections caught up.
async fn load_through_commands(app: &TestApp, dataset: &Dataset) -> Loaded {
    let keys = app.keys();
    let loaded = through_commands(
        app.command_path(&keys),
        dataset,
        || async {
            app.project().await;
            Ok(())
        },
        |_, _| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    app.project().await;
    loaded
}

async fn count_of(app: &TestApp, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Issue 17: the generated statuses named messages in no thread, so every status timeline was
/// empty. Every reply now has its timeline, no status stands for a message sent elsewhere, and
/// no conversation stream lacks the message that opened it.
async fn every_reply_shows_its_statuses(app: &TestApp, dataset: &Dataset) {
    app.project().await;
    assert_eq!(
        app.count(
            "SELECT count(*) FROM messages m WHERE m.direction = 'outbound' AND m.idempotency_key LIKE 'fixture-reply:%'
                AND EXISTS (SELECT 1 FROM message_timeline t WHERE t.tenant_id = m.tenant_id AND t.message_ref = m.message_ref)"
        )
        .await,
        dataset.replies.len() as i64
    );
    assert_eq!(
        app.count("SELECT count(*) FROM messages WHERE kind = 'external'").await,
        0
    );
    assert_eq!(
        app.count(
            "SELECT count(DISTINCT aggregate_id) FROM events e WHERE e.aggregate_type = 'Conversation'
                AND NOT EXISTS (SELECT 1 FROM events r WHERE r.aggregate_type = 'Conversation'
                                   AND r.aggregate_id = e.aggregate_id AND r.event_type = 'MessageReceived')"
        )
        .await,
        0
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_generated_dataset_loaded_through_commands_verifies_and_projects(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let dataset = generate(11, Scale::SMALL);
    let loaded = load_through_commands(&app, &dataset).await;
    let report = verify(&app.pool, None, |_| {}).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    assert!(
        report.events as usize >= dataset.items() - dataset.deliveries.len(),
        "{report:?}"
    );
    assert_eq!(app.count("SELECT count(*) FROM conversations").await, 40);
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_inbox WHERE state <> 'done'")
            .await,
        0
    );
    // Every kind of business activity reached the log through its commands.
    for event_type in [
        "CallCompleted",
        "FollowUpScheduled",
        "OrderPlaced",
        "PaymentRecorded",
        "OrderPaid",
        "InstallationOpened",
        "InstallationCommissioned",
        "PayoutComputed",
        "TokensPurchased",
        "TokensDebited",
        "DebitRefused",
        "TokensReserved",
        "ReservationCaptured",
        "ReservationReleased",
        "TokensTransferredIn",
        "TokensRefunded",
        "CampaignCreated",
        "CampaignScheduled",
        "CampaignBatchDispatched",
        "CampaignRecipientRead",
        "CampaignCompleted",
    ] {
        assert!(count_of(&app, event_type).await > 0, "no {event_type}");
    }
    // Every campaign's batches were captured from its reservation, and every failed recipient
    // refunded.
    assert_eq!(
        count_of(&app, "CampaignBatchStarted").await,
        app.count(
            "SELECT count(*) FROM events WHERE event_type = 'ReservationCaptured'
                AND payload::jsonb -> 'ReservationCaptured' ->> 'reference' LIKE 'campaign:%'"
        )
        .await
    );
    assert_eq!(
        count_of(&app, "CampaignRecipientFailed").await,
        count_of(&app, "TokensRefunded").await
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE aggregate_type = 'Call' AND event_type = 'CallCompleted'")
            .await,
        dataset.calls.len() as i64
    );
    // The follow-up worker queued the template on the conversations of callers who write on
    // WhatsApp, and gave up on the others.
    assert!(
        loaded.follow_ups.scheduled > 0 && loaded.follow_ups.queued > 0,
        "{loaded:?}"
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM events WHERE event_type = 'OutboundMessageQueued'
                AND payload::jsonb -> 'OutboundMessageQueued' ->> 'idempotency_key' LIKE 'call-follow-up:%'"
        )
        .await,
        loaded.follow_ups.queued as i64
    );
    every_reply_shows_its_statuses(&app, &dataset).await;
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_bulk_loaded_dataset_verifies_and_projects_like_the_command_path(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let dataset = generate(11, Scale::SMALL);
    let stats = chronicle_fixtures::load::bulk(&app.state.pool, &app.state.master_key, &dataset, |_, _| {})
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    // Every generated command is one its aggregate takes.
    assert_eq!(stats.refused, 0, "{stats:?}");
    let report = verify(&app.pool, None, |_| {}).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events, stats.events);
    let streams: i64 = app
        .count("SELECT count(DISTINCT (aggregate_type, aggregate_id)) FROM events")
        .await;
    assert_eq!(stats.streams, streams as u64);
    app.project().await;
    let names: i64 = app
        .count("SELECT count(*) FROM conversations WHERE contact_name IS NOT NULL AND last_message_text IS NOT NULL")
        .await;
    assert_eq!(names, 40, "envelopes sealed in bulk open in the projection");
    // The bulk load covers every kind too, so a large scale has every kind of event.
    for event_type in [
        "LeadCaptured",
        "CallCompleted",
        "OrderPaid",
        "InstallationCommissioned",
        "PayoutPaid",
        "DebitRefused",
        "ReservationCaptured",
        "CampaignCompleted",
    ] {
        assert!(count_of(&app, event_type).await > 0, "no {event_type}");
    }
    // The duplicate index is left as the command path leaves it.
    assert_eq!(
        app.count("SELECT count(*) FROM lead_captures").await,
        dataset.leads.len() as i64
    );
    every_reply_shows_its_statuses(&app, &dataset).await;
}

/// Replaces every sealed envelope by a marker (their nonces differ from load to load) and drops
/// `clock_keys` (times a worker takes from the clock).
fn masked(value: &Value, clock_keys: &[&str]) -> Value {
    match value {
        Value::Object(map) if map.contains_key("enc") && map.contains_key("c") => Value::String("<sealed>".into()),
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !clock_keys.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), masked(v, clock_keys)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| masked(v, clock_keys)).collect()),
        other => other.clone(),
    }
}

type Streams = BTreeMap<String, Vec<(String, Value)>>;

/// Every stream of the aggregate types: its events' types and payloads, in sequence order.
async fn streams(pool: &PgPool, types: &[&str]) -> Streams {
    let rows: Vec<(String, String, String, Value)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, event_type, payload::jsonb FROM events
          WHERE aggregate_type = ANY($1) ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .bind(types.iter().map(|t| t.to_string()).collect::<Vec<_>>())
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Streams::new();
    for (aggregate_type, aggregate_id, event_type, payload) in rows {
        // A follow-up attempt's time, and the time its template was queued, are the worker's clock.
        let clock_keys: &[&str] = if aggregate_type == "Call" || event_type == "OutboundMessageQueued" {
            &["at", "next_attempt_at"]
        } else {
            &[]
        };
        out.entry(format!("{aggregate_type} {aggregate_id}"))
            .or_default()
            .push((event_type, masked(&payload, clock_keys)));
    }
    out
}

/// A second, migrated database beside the test's (the log is append-only, so two loads of one
/// dataset need two databases); dropped first if a failed run left it.
async fn second_database(pool: &PgPool) -> (PgPool, String) {
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Test databases' names are long: a short one derived from it (identifiers stop at 63).
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&current, &mut hasher);
    let name = format!("fixtures_bulk_{:016x}", std::hash::Hasher::finish(&hasher));
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let options: PgConnectOptions = pool.connect_options().as_ref().clone().database(&name);
    let second = sqlx::postgres::PgPoolOptions::new()
        .max_connections(5)
        .connect_with(options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    chronicle_projections::MIGRATOR
        .run(&second)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (second, name)
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_command_path_and_the_bulk_load_write_the_same_events_per_stream(pool: PgPool) {
    let dataset = generate(3, Scale::SMALL);
    let (second, name) = second_database(&pool).await;
    let owner = pool.clone();
    let commands = TestApp::new(pool).await;
    load_through_commands(&commands, &dataset).await;

    let bulk = TestApp::new(second.clone()).await;
    chronicle_fixtures::load::bulk(&bulk.state.pool, &bulk.state.master_key, &dataset, |_, _| {})
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    // Follow-ups are the process manager's after a bulk load too.
    bulk.project().await;
    bulk.state
        .workers
        .follow_ups
        .drain()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let report = verify(&bulk.pool, None, |_| {}).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");

    let kinds = [
        "Conversation",
        "Contact",
        "Lead",
        "Template",
        "AutomationRules",
        "Call",
        "Order",
        "InstallationRecord",
        "Payout",
        "Wallet",
        "Campaign",
    ];
    let by_commands = streams(&commands.pool, &kinds).await;
    let by_bulk = streams(&bulk.pool, &kinds).await;
    for kind in kinds {
        assert!(
            by_commands.keys().any(|k| k.starts_with(&format!("{kind} "))),
            "no {kind} stream"
        );
    }
    assert_eq!(
        by_commands.keys().collect::<Vec<_>>(),
        by_bulk.keys().collect::<Vec<_>>()
    );
    for (stream, events) in &by_commands {
        assert_eq!(Some(events), by_bulk.get(stream), "{stream}");
    }

    drop(bulk);
    second.close().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&owner)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_conversations_read_model_is_the_same_one_event_at_a_time_or_folded_per_batch(pool: PgPool) {
    use chronicle_projections::conversations::ConversationsProjector;
    use chronicle_projections::runtime::{ProjectorRunner, RunnerConfig};
    let app = TestApp::new(pool).await;
    let dataset = generate(5, Scale::SMALL);
    load_through_commands(&app, &dataset).await;
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
    // Clothing customers who called without ever writing on WhatsApp get no conversation.
    assert_eq!(one_by_one.len(), 40);
}

/// Loads the demo into `app`; whether it loaded.
async fn load_demo(app: &TestApp) -> bool {
    let summary = app.load_demo().await;
    assert_eq!(summary.tenants.len(), 5);
    assert_eq!(summary.tenants[0].id.as_str(), chronicle_fixtures::demo::DEMO_TENANT);
    summary.loaded
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_demo_fills_every_area_of_every_business_once_and_a_second_load_changes_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    assert!(load_demo(&app).await);
    let events = app.count("SELECT count(*) FROM events").await;
    assert!((1_500..10_000).contains(&events), "a few thousand events: {events}");
    for (aggregate_type, tenant) in [
        ("Conversation", "installer-1"),
        ("Conversation", "solar-1"),
        ("Conversation", "clothing-1"),
        ("Conversation", "events-1"),
        ("Conversation", "agency-1"),
        ("Lead", "solar-1"),
        ("Template", "clothing-1"),
        ("Call", "clothing-1"),
        ("Order", "installer-1"),
        ("InstallationRecord", "installer-1"),
        ("Payout", "installer-1"),
        ("Payment", "installer-1"),
        ("ServiceRequest", "installer-1"),
        ("Wallet", "events-1"),
        ("Wallet", "agency-1"),
        ("Campaign", "agency-1"),
        ("Template", "agency-1"),
    ] {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1 AND tenant_id = $2")
            .bind(aggregate_type)
            .bind(tenant)
            .fetch_one(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 0, "no {aggregate_type} events for {tenant}");
    }
    // The demo's payment matched its order; the campaign waits for the runner.
    assert_eq!(
        app.count(
            "SELECT count(*) FROM events WHERE event_type = 'PaymentMatchedToOrder' AND tenant_id = 'installer-1'"
        )
        .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'CampaignScheduled' AND aggregate_id = 'agency-1:campaign_demo_launch'")
            .await,
        1
    );
    assert!(!load_demo(&app).await, "a second load finds the demo and loads nothing");
    assert_eq!(app.count("SELECT count(*) FROM events").await, events);
    let report = verify(&app.pool, None, |_| {}).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_installation_process_manager_finds_the_generated_installations_and_payouts_made(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let dataset = generate(11, Scale::SMALL);
    load_through_commands(&app, &dataset).await;
    let opened = count_of(&app, "InstallationOpened").await;
    let computed = count_of(&app, "PayoutComputed").await;
    assert!(opened > 0 && computed > 0);
    // Each paid order's installation and each commissioned one's payout use the streams the
    // process manager derives, so running it after the load opens and computes nothing new.
    let worker = chronicle_commands::installation::InstallationWorker::new(app.state.commands.clone(), app.keys());
    worker.drain().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    worker.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count_of(&app, "InstallationOpened").await, opened);
    assert_eq!(count_of(&app, "PayoutComputed").await, computed);
}
