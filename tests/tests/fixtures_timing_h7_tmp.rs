//! Temporary timing probe (H7), removed after measuring.

use std::time::Instant;

use chronicle_fixtures::generator::{generate, Scale};
use chronicle_fixtures::load::{through_commands, CommandPath};
use chronicle_tests::*;
use sqlx::PgPool;

fn scale() -> (String, Scale) {
    match std::env::var("H7_SCALE").ok().as_deref() {
        Some(n) if n != "small" => (n.to_string(), Scale::events(n.parse().unwrap_or(10_000))),
        _ => ("small".into(), Scale::SMALL),
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn timing_command_path(pool: PgPool) {
    if std::env::var("H7_MODE").ok().as_deref() != Some("commands") { return; }
    let app = TestApp::new(pool).await;
    let (name, s) = scale();
    let t = Instant::now();
    let dataset = generate(42, s);
    let gen = t.elapsed();
    let keys = chronicle_commands::keystore::KeyStore::new(app.state.pool.clone(), app.state.master_key.clone());
    let path = CommandPath { ids: &app.state.id_key, inbox: &app.state.inbox, commands: &app.state.commands, keys: &keys, follow_ups: &app.state.follow_ups };
    let t = Instant::now();
    let loaded = through_commands(path, &dataset, || async { app.project().await; Ok(()) }, |_, _| {}).await.unwrap_or_else(|e| panic!("{e:#}"));
    let load = t.elapsed();
    let events = app.count("SELECT count(*) FROM events").await;
    let t = Instant::now();
    let report = chronicle_projections::chain::verify(&app.pool, None, |_| {}).await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("H7 commands {name}: generate {gen:?}, load {load:?} ({events} events, {:.0} ev/s), verify {:?} intact={} {loaded:?}",
        events as f64 / load.as_secs_f64(), t.elapsed(), report.is_intact());
    let kinds: Vec<(String, i64)> = sqlx::query_as("SELECT aggregate_type, count(*) FROM events GROUP BY 1 ORDER BY 1").fetch_all(&app.pool).await.unwrap_or_default();
    eprintln!("H7 kinds {kinds:?}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn timing_bulk(pool: PgPool) {
    if std::env::var("H7_MODE").ok().as_deref() != Some("bulk") { return; }
    let app = TestApp::new(pool).await;
    let (name, s) = scale();
    let t = Instant::now();
    let dataset = generate(42, s);
    let gen = t.elapsed();
    let t = Instant::now();
    let stats = chronicle_fixtures::load::bulk(&app.state.pool, &app.state.master_key, &dataset, |_, _| {}).await.unwrap_or_else(|e| panic!("{e:#}"));
    let load = t.elapsed();
    let t = Instant::now();
    let report = chronicle_projections::chain::verify(&app.pool, None, |_| {}).await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("H7 bulk {name}: generate {gen:?}, load {load:?} ({} events, {:.0} ev/s, est {}), verify {:?} intact={} refused={}",
        stats.events, stats.events as f64 / load.as_secs_f64(), dataset.estimated_events(), t.elapsed(), report.is_intact(), stats.refused);
    let kinds: Vec<(String, i64)> = sqlx::query_as("SELECT aggregate_type, count(*) FROM events GROUP BY 1 ORDER BY 1").fetch_all(&app.pool).await.unwrap_or_default();
    eprintln!("H7 kinds {kinds:?}");
}
