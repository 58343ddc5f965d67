//! `chronicle-replay verify` against real PostgreSQL: a fresh database per test with the
//! shared migrations, events appended with postgres-es's own seven-column INSERT, tampering
//! done as a superuser would (triggers disabled for the statement), and the real binary run
//! where the exit code and the printed report matter.
//!
//! Also the event store's own guarantees the verification rests on: the application cannot
//! update, delete or truncate events, and every event belongs to the tenant its stream is
//! named after.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chronicle_projections::chain::{self, BrokenKind};
use chronicle_replay::{verify_command, DatabaseArgs, Outcome, VerifyArgs};
use sqlx::PgPool;
use std::process::Output;

/// Appends one event as postgres-es does: only the seven columns it knows.
async fn append(pool: &PgPool, aggregate_type: &str, aggregate_id: &str, sequence: i64) {
    let tenant = aggregate_id.split(':').next().unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata) VALUES ($1, $2, $3, $4, '1.0', $5::json, $6::json)",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .bind(format!("{aggregate_type}Event{sequence}"))
    .bind(format!(
        r#"{{"n": {sequence},  "text": "héllo wörld ✓", "stream": "{aggregate_id}"}}"#
    ))
    .bind(format!(
        r#"{{"tenant_id":"{tenant}","actor":"user:1","correlation_id":"c-{sequence}"}}"#
    ))
    .execute(pool)
    .await
    .unwrap();
}

/// A log of four streams in two tenants, 11 events:
/// acme's conversation conv-1 (4 events) and conv-2 (2), acme's contact contact-1 (2, appended
/// in one statement), and globex's wallet wallet-1 (3).
async fn seed(pool: &PgPool) {
    for seq in 1..=4 {
        append(pool, "conversation", "acme:conv-1", seq).await;
    }
    for seq in 1..=3 {
        append(pool, "wallet", "globex:wallet-1", seq).await;
    }
    for seq in 1..=2 {
        append(pool, "conversation", "acme:conv-2", seq).await;
    }
    // Two events of one stream in one statement, as postgres-es appends a command's events.
    sqlx::query(
        r#"INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
               payload, metadata) VALUES
           ('contact', 'acme:contact-1', 1, 'ContactCreated', '1.0',
            '{"name": {"ciphertext": "q83v", "key": "k1"}}', '{"tenant_id":"acme"}'),
           ('contact', 'acme:contact-1', 2, 'ContactRenamed', '1.0',
            '{"name": {"ciphertext": "3q2+", "key": "k1"}}', '{"tenant_id":"acme"}')"#,
    )
    .execute(pool)
    .await
    .unwrap();
}

/// Runs `statement` with the append-only trigger `trigger` disabled, in one transaction, as a
/// superuser bypassing the application would.
async fn as_superuser(pool: &PgPool, trigger: &str, statement: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!("ALTER TABLE events DISABLE TRIGGER {trigger}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let affected = sqlx::query(statement).execute(&mut *tx).await.unwrap().rows_affected();
    assert_eq!(affected, 1, "{statement}");
    sqlx::query(&format!("ALTER TABLE events ENABLE TRIGGER {trigger}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn global_position(pool: &PgPool, aggregate_id: &str, sequence: i64) -> i64 {
    sqlx::query_scalar("SELECT global_position FROM events WHERE aggregate_id = $1 AND sequence = $2")
        .bind(aggregate_id)
        .bind(sequence)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Every stored row, every column, in log order: to show that a refused change changed nothing.
async fn all_rows(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT coalesce(string_agg(e::text, E'\\n' ORDER BY global_position), '') FROM events e")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The URL of this test's own database (the password, if the server wants one, comes from the
/// inherited PGPASSWORD).
fn database_url(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap()
    )
}

/// Runs the real `chronicle-replay` binary with DATABASE_URL set to `url`.
async fn replay(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle-replay"))
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn verify_args(tenant: Option<&str>) -> VerifyArgs {
    VerifyArgs {
        tenant: tenant.map(str::to_owned),
        database: DatabaseArgs {
            database_url: None,
            data_dir: ".chronicle".into(),
        },
        json: false,
        digest: None,
        heads: None,
        heads_out: None,
    }
}

/// Runs `verify` through the library entry point, returning the outcome and the text printed.
async fn verify_text(pool: &PgPool, tenant: Option<&str>) -> (Outcome, String) {
    let mut out = Vec::new();
    let outcome = verify_command(pool, &verify_args(tenant), &mut out).await.unwrap();
    (outcome, String::from_utf8(out).unwrap())
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_clean_log_of_several_streams_verifies_ok(pool: PgPool) {
    seed(&pool).await;

    let (outcome, text) = verify_text(&pool, None).await;
    assert_eq!(outcome, Outcome::Ok);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "verified 11 events in 4 streams: OK");
    // An intact log: each tenant's digest follows, tenants in byte order.
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].starts_with("digest td1:acme:c1.") && lines[1].ends_with("8 events in 3 streams)"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("digest td1:globex:c1.") && lines[2].ends_with("3 events in 1 streams)"),
        "{text}"
    );

    let output = replay(&database_url(&pool), &["verify"]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(stdout(&output), text);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_empty_log_verifies_ok(pool: PgPool) {
    let (outcome, text) = verify_text(&pool, None).await;
    assert_eq!(outcome, Outcome::Ok);
    assert_eq!(text, "verified 0 events in 0 streams: OK\n");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn tampered_payload_is_named_by_stream_and_sequence(pool: PgPool) {
    seed(&pool).await;
    as_superuser(
        &pool,
        "events_refuse_update",
        r#"UPDATE events SET payload = '{"x":"forged"}'
            WHERE aggregate_id = 'acme:conv-1' AND sequence = 2"#,
    )
    .await;
    let position = global_position(&pool, "acme:conv-1", 2).await;

    // Exactly that event: the chain continues from its stored hash, so events 3 and 4 of the
    // stream, chained from the hash it had when appended, still verify.
    let report = chain::verify(&pool, None, |_| {}).await.unwrap();
    assert_eq!((report.streams, report.events), (4, 11));
    assert_eq!(report.broken.len(), 1, "{:?}", report.broken);
    let link = &report.broken[0];
    assert_eq!(
        (
            link.aggregate_type.as_str(),
            link.aggregate_id.as_str(),
            link.sequence,
            link.global_position
        ),
        ("conversation", "acme:conv-1", 2, position)
    );
    assert!(matches!(link.kind, BrokenKind::HashMismatch { .. }));

    let output = replay(&database_url(&pool), &["verify"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stdout(&output);
    let broken: Vec<&str> = text.lines().filter(|l| l.starts_with("BROKEN")).collect();
    assert_eq!(broken.len(), 1, "{text}");
    assert!(
        broken[0].contains("conversation acme:conv-1 sequence 2 ")
            && broken[0].contains(&format!("global position {position}"))
            && broken[0].contains("hash mismatch"),
        "{text}"
    );
    assert!(
        text.ends_with("verified 11 events in 4 streams: 1 broken link\n"),
        "{text}"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_json_report_names_the_tampered_event(pool: PgPool) {
    seed(&pool).await;
    as_superuser(
        &pool,
        "events_refuse_update",
        r#"UPDATE events SET metadata = '{"tenant_id":"acme","actor":"user:2"}'
            WHERE aggregate_id = 'acme:contact-1' AND sequence = 1"#,
    )
    .await;

    let output = replay(&database_url(&pool), &["verify", "--json"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["tenant"], serde_json::Value::Null);
    assert_eq!(json["events"], 11);
    assert_eq!(json["streams"], 4);
    let broken = json["broken"].as_array().unwrap();
    assert_eq!(broken.len(), 1, "{json}");
    assert_eq!(broken[0]["aggregate_type"], "contact");
    assert_eq!(broken[0]["aggregate_id"], "acme:contact-1");
    assert_eq!(broken[0]["sequence"], 1);
    assert_eq!(
        broken[0]["global_position"],
        global_position(&pool, "acme:contact-1", 1).await
    );
    assert_eq!(broken[0]["kind"], "hash_mismatch");
    assert_ne!(broken[0]["stored"], broken[0]["recomputed"]);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_deleted_event_in_the_middle_of_a_stream_is_reported_as_a_gap(pool: PgPool) {
    seed(&pool).await;
    as_superuser(
        &pool,
        "events_refuse_delete",
        "DELETE FROM events WHERE aggregate_id = 'acme:conv-1' AND sequence = 2",
    )
    .await;
    // And a stream that lost its first event.
    as_superuser(
        &pool,
        "events_refuse_delete",
        "DELETE FROM events WHERE aggregate_id = 'globex:wallet-1' AND sequence = 1",
    )
    .await;

    let report = chain::verify(&pool, None, |_| {}).await.unwrap();
    assert_eq!(report.events, 9);
    let found: Vec<(&str, i64, &BrokenKind)> = report
        .broken
        .iter()
        .map(|b| (b.aggregate_id.as_str(), b.sequence, &b.kind))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "acme:conv-1",
                3,
                &BrokenKind::MissingPredecessor {
                    missing_from: 2,
                    missing_to: 2
                }
            ),
            (
                "globex:wallet-1",
                2,
                &BrokenKind::MissingPredecessor {
                    missing_from: 1,
                    missing_to: 1
                }
            ),
        ]
    );

    let (outcome, text) = verify_text(&pool, None).await;
    assert_eq!(outcome, Outcome::Broken);
    assert!(
        text.contains("conversation acme:conv-1 sequence 3 ")
            && text.contains("missing predecessor: sequence 2 is not in the log"),
        "{text}"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_forger_who_rehashes_the_tampered_event_is_caught_at_the_next_event(pool: PgPool) {
    seed(&pool).await;
    // The forged event's hash is made to match its new payload; the next event's hash was
    // chained from the original and no longer follows.
    as_superuser(
        &pool,
        "events_refuse_update",
        r#"UPDATE events e SET payload = '{"x":"forged"}',
               hash = chronicle_event_hash(
                   (SELECT p.hash FROM events p
                     WHERE p.aggregate_type = e.aggregate_type
                       AND p.aggregate_id = e.aggregate_id AND p.sequence = e.sequence - 1),
                   e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                   e.event_version, '{"x":"forged"}', e.metadata::text)
            WHERE aggregate_id = 'acme:conv-1' AND sequence = 2"#,
    )
    .await;

    let report = chain::verify(&pool, None, |_| {}).await.unwrap();
    assert_eq!(report.broken.len(), 1, "{:?}", report.broken);
    assert_eq!(report.broken[0].aggregate_id, "acme:conv-1");
    assert_eq!(report.broken[0].sequence, 3);
    assert!(matches!(report.broken[0].kind, BrokenKind::HashMismatch { .. }));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn tenant_option_restricts_verification_to_that_tenant(pool: PgPool) {
    seed(&pool).await;
    as_superuser(
        &pool,
        "events_refuse_update",
        r#"UPDATE events SET payload = '{"amount":1000000}'
            WHERE aggregate_id = 'globex:wallet-1' AND sequence = 2"#,
    )
    .await;
    let url = database_url(&pool);

    let acme = replay(&url, &["verify", "--tenant", "acme"]).await;
    assert_eq!(acme.status.code(), Some(0), "{acme:?}");
    let text = stdout(&acme);
    assert!(
        text.starts_with("verified 8 events in 3 streams of tenant acme: OK\ndigest td1:acme:"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");

    let globex = replay(&url, &["verify", "--tenant", "globex"]).await;
    assert_eq!(globex.status.code(), Some(1), "{globex:?}");
    let text = stdout(&globex);
    assert!(
        text.contains("wallet globex:wallet-1 sequence 2 ")
            && text.ends_with("verified 3 events in 1 streams of tenant globex: 1 broken link\n"),
        "{text}"
    );

    let everything = replay(&url, &["verify"]).await;
    assert_eq!(everything.status.code(), Some(1), "{everything:?}");

    // A tenant with no events has nothing to break.
    let (outcome, text) = verify_text(&pool, Some("initech")).await;
    assert_eq!(outcome, Outcome::Ok);
    assert!(
        text.starts_with("verified 0 events in 0 streams of tenant initech: OK\n"),
        "{text}"
    );
    assert!(text.contains("up to position 0: 0 events in 0 streams)"), "{text}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn update_delete_and_truncate_by_the_application_are_refused(pool: PgPool) {
    seed(&pool).await;
    let before = all_rows(&pool).await;

    for statement in [
        r#"UPDATE events SET payload = '{"x":"forged"}' WHERE aggregate_id = 'acme:conv-1'"#,
        "UPDATE events SET hash = '\\x00' WHERE sequence = 1",
        "DELETE FROM events WHERE aggregate_id = 'acme:conv-1' AND sequence = 4",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let error = sqlx::query(statement).execute(&pool).await.unwrap_err();
        let db = error.as_database_error().unwrap();
        assert!(db.message().contains("append-only"), "{statement}: {db}");
        assert_eq!(db.code().as_deref(), Some("42501"), "{statement}");
    }

    assert_eq!(all_rows(&pool).await, before);
    let (outcome, _) = verify_text(&pool, None).await;
    assert_eq!(outcome, Outcome::Ok);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_application_role_may_only_read_and_append(pool: PgPool) {
    seed(&pool).await;
    let before = all_rows(&pool).await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE chronicle_app")
        .execute(&mut *tx)
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(count, 11);
    sqlx::query(
        r#"INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
               payload, metadata)
           VALUES ('conversation', 'acme:conv-2', 3, 'Closed', '1.0', '{}', '{"tenant_id":"acme"}')"#,
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    // Changing the log is not granted at all, and the triggers cannot be switched off.
    for statement in [
        r#"UPDATE events SET payload = '{"x":"forged"}' WHERE aggregate_id = 'acme:conv-1'"#,
        "DELETE FROM events WHERE aggregate_id = 'acme:conv-1'",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER events_refuse_update",
    ] {
        sqlx::query("SAVEPOINT attempt").execute(&mut *tx).await.unwrap();
        let error = sqlx::query(statement).execute(&mut *tx).await.unwrap_err();
        let db = error.as_database_error().unwrap();
        assert_eq!(db.code().as_deref(), Some("42501"), "{statement}: {db}");
        assert!(
            db.message().contains("permission denied") || db.message().contains("must be owner"),
            "{statement}: {db}"
        );
        sqlx::query("ROLLBACK TO SAVEPOINT attempt")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.rollback().await.unwrap();

    assert_eq!(all_rows(&pool).await, before);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_event_whose_aggregate_id_does_not_start_with_its_tenant_is_refused(pool: PgPool) {
    for aggregate_id in ["globex:conv-1", "acme-conv-1", "acmeconv:1", "conv-1"] {
        let error = sqlx::query(
            r#"INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                   event_version, payload, metadata)
               VALUES ('conversation', $1, 1, 'Opened', '1.0', '{}', '{"tenant_id":"acme"}')"#,
        )
        .bind(aggregate_id)
        .execute(&pool)
        .await
        .unwrap_err();
        let db = error.as_database_error().unwrap();
        assert_eq!(
            db.constraint(),
            Some("events_stream_belongs_to_tenant"),
            "{aggregate_id}: {db}"
        );
    }
    assert_eq!(all_rows(&pool).await, "");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_event_without_tenant_id_in_its_metadata_is_refused(pool: PgPool) {
    for metadata in [
        "{}",
        r#"{"tenant_id":""}"#,
        r#"{"tenant_id":null}"#,
        r#"{"actor":"user:1"}"#,
    ] {
        let error = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) \
             VALUES ('conversation', 'acme:conv-1', 1, 'Opened', '1.0', '{}', $1::json)",
        )
        .bind(metadata)
        .execute(&pool)
        .await
        .unwrap_err();
        let db = error.as_database_error().unwrap();
        assert!(db.message().contains("no tenant_id"), "{metadata}: {db}");
        assert_eq!(db.code().as_deref(), Some("23514"), "{metadata}");
    }
    assert_eq!(all_rows(&pool).await, "");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_event_that_does_not_follow_a_stored_event_is_refused(pool: PgPool) {
    append(&pool, "conversation", "acme:conv-1", 1).await;
    let error = sqlx::query(
        r#"INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
               payload, metadata)
           VALUES ('conversation', 'acme:conv-1', 3, 'Closed', '1.0', '{}', '{"tenant_id":"acme"}')"#,
    )
    .execute(&pool)
    .await
    .unwrap_err();
    let db = error.as_database_error().unwrap();
    assert!(db.message().contains("does not follow"), "{db}");
}

#[tokio::test]
async fn a_missing_database_url_is_a_usage_error_with_a_clear_message() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle-replay"))
        .arg("verify")
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--database-url") && stderr.contains("DATABASE_URL"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn an_unreachable_database_exits_2_without_showing_the_password() {
    let output = replay("postgres://auditor:s3cr3t-pw@127.0.0.1:1/chronicle", &["verify"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to the database at auditor@127.0.0.1:1/chronicle"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn an_unknown_option_is_a_usage_error() {
    let output = replay("postgres://127.0.0.1:1/x", &["verify", "--tenat", "acme"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn columns_the_database_owns_cannot_be_forged_by_an_insert(pool: PgPool) {
    // A writer naming another tenant, an old transaction id, an old time and a made-up hash
    // gets the metadata's tenant, its own transaction id, the current time and the real hash.
    let mut tx = pool.begin().await.unwrap();
    let own_tx: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        r#"INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload,
                               metadata, tenant_id, tx_id, recorded_at, hash)
           VALUES ('conversation', 'acme:conv-9', 1, 'Opened', '1.0', '{}', '{"tenant_id":"acme"}',
                   'globex', '3'::xid8, '2001-01-01', '\xdeadbeef')"#,
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (tenant, tx_id, recent, hash_ok): (String, String, bool, bool) = sqlx::query_as(
        "SELECT tenant_id, tx_id::text, recorded_at > now() - interval '1 minute',
                hash = chronicle_event_hash(NULL, aggregate_type, aggregate_id, sequence, event_type,
                                            event_version, payload::text, metadata::text)
           FROM events WHERE aggregate_id = 'acme:conv-9'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (tenant.as_str(), tx_id.as_str(), recent, hash_ok),
        ("acme", own_tx.as_str(), true, true)
    );
}

/// With no database URL the tool finds `chronicle serve`'s embedded cluster as `chronicle
/// admin` does (`CHRONICLE_DATA_DIR`, `CHRONICLE_EMBEDDED_PG_PORT`), starting it if stopped;
/// a directory with no cluster is a clear usage error that names it.
#[tokio::test]
async fn without_a_database_url_the_embedded_cluster_of_chronicle_serve_is_used() {
    let dir = std::env::temp_dir().join(format!("chronicle-replay-embedded-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let run = |dir: &std::path::Path| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle-replay"))
            .arg("verify")
            .env_remove("DATABASE_URL")
            .env("CHRONICLE_DATA_DIR", dir)
            .env("CHRONICLE_EMBEDDED_PG_PORT", port.to_string())
            .output()
    };

    // No cluster yet: exit 2, naming the directory, and nothing created there.
    let output = run(&dir).await.unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("DATABASE_URL") && stderr.contains("embedded cluster"),
        "{stderr}"
    );
    assert!(!dir.join("pg").join("PG_VERSION").exists());

    // The cluster `chronicle serve` would have made, with a stream in it, then stopped.
    let cluster = chronicle_projections::embedded::EmbeddedPostgres::with_port(&dir, port).unwrap();
    let url = cluster.ensure_running().await.unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    chronicle_projections::MIGRATOR.run(&pool).await.unwrap();
    append(&pool, "Conversation", "embedded:c1", 1).await;
    append(&pool, "Conversation", "embedded:c1", 2).await;
    pool.close().await;
    cluster.stop().unwrap();
    assert!(!cluster.is_running());

    let output = run(&dir).await.unwrap();
    let report = stdout(&output);
    let stopped = cluster.stop();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(report.contains("verified 2 events in 1 streams"), "{report}");
    stopped.unwrap();
}

/// Runs `statements` in one transaction with the `triggers` disabled, as a superuser bypassing
/// the application would; each statement must touch exactly one row.
async fn as_superuser_all(pool: &PgPool, triggers: &[&str], statements: &[&str]) {
    let mut tx = pool.begin().await.unwrap();
    for trigger in triggers {
        sqlx::query(&format!("ALTER TABLE events DISABLE TRIGGER {trigger}"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    for statement in statements {
        let affected = sqlx::query(statement).execute(&mut *tx).await.unwrap().rows_affected();
        assert_eq!(affected, 1, "{statement}");
    }
    for trigger in triggers {
        sqlx::query(&format!("ALTER TABLE events ENABLE TRIGGER {trigger}"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

/// A digest of acme taken by the real binary, with its heads file.
struct Taken {
    digest: String,
    heads: std::path::PathBuf,
    _dir: TempDir,
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("chronicle-replay-digest-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn take_digest(url: &str, tenant: &str) -> Taken {
    let dir = TempDir::new();
    let heads = dir.0.join("heads.jsonl");
    let output = replay(
        url,
        &["verify", "--tenant", tenant, "--heads-out", heads.to_str().unwrap()],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = stdout(&output);
    let digest = text
        .lines()
        .find_map(|l| l.strip_prefix("digest "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no digest printed: {text}"))
        .to_owned();
    assert!(digest.starts_with(&format!("td1:{tenant}:")), "{digest}");
    Taken {
        digest,
        heads,
        _dir: dir,
    }
}

/// `verify --digest` (with the heads file when `with_heads`): exit code and text.
async fn check_digest(url: &str, taken: &Taken, with_heads: bool) -> (Option<i32>, String) {
    let mut args = vec!["verify", "--digest", taken.digest.as_str()];
    if with_heads {
        args.extend(["--heads", taken.heads.to_str().unwrap()]);
    }
    let output = replay(url, &args).await;
    (output.status.code(), stdout(&output))
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_digest_holds_after_plain_appends(pool: PgPool) {
    seed(&pool).await;
    let url = database_url(&pool);
    let taken = take_digest(&url, "acme").await;

    // The digest line says what it covers.
    let output = replay(&url, &["verify", "--tenant", "acme"]).await;
    let position: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events WHERE tenant_id = 'acme'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        stdout(&output).contains(&format!(
            "digest {} (tenant acme, up to position {position}: 8 events in 3 streams)",
            taken.digest
        )),
        "{output:?}"
    );

    // Appends: a stream grows, a new stream begins, another tenant changes.
    append(&pool, "conversation", "acme:conv-1", 5).await;
    append(&pool, "conversation", "acme:conv-3", 1).await;
    append(&pool, "wallet", "globex:wallet-1", 4).await;

    for with_heads in [false, true] {
        let (code, text) = check_digest(&url, &taken, with_heads).await;
        assert_eq!(code, Some(0), "{text}");
        assert!(
            text.starts_with("verified 10 events in 4 streams of tenant acme: OK\n"),
            "{text}"
        );
        assert!(text.contains("digest holds"), "{text}");
        assert!(!text.contains("CHANGED") && !text.contains("INSERTED"), "{text}");
    }

    // The JSON report carries the check.
    let output = replay(&url, &["verify", "--digest", &taken.digest, "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["digest_check"]["digest"], taken.digest.as_str());
    assert_eq!(json["digest_check"]["matches"], true);
}

/// Each kind of corruption, planted as a superuser would with the guard triggers disabled:
/// `verify` names it by stream and sequence (a removed tail through the heads recorded with the
/// digest), and `verify --digest` fails, with and without the heads file.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_changed_payload_fails_the_digest_check_and_is_named(pool: PgPool) {
    seed(&pool).await;
    let url = database_url(&pool);
    let taken = take_digest(&url, "acme").await;
    as_superuser_all(
        &pool,
        &["events_refuse_update"],
        &[r#"UPDATE events SET payload = '{"x":"forged"}' WHERE aggregate_id = 'acme:conv-1' AND sequence = 2"#],
    )
    .await;
    for with_heads in [false, true] {
        let (code, text) = check_digest(&url, &taken, with_heads).await;
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.contains("BROKEN conversation acme:conv-1 sequence 2 ") && text.contains("hash mismatch"),
            "{text}"
        );
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_deleted_event_fails_the_digest_check_and_is_named(pool: PgPool) {
    seed(&pool).await;
    let url = database_url(&pool);
    let taken = take_digest(&url, "acme").await;
    as_superuser_all(
        &pool,
        &["events_refuse_delete"],
        &["DELETE FROM events WHERE aggregate_id = 'acme:conv-1' AND sequence = 2"],
    )
    .await;
    for with_heads in [false, true] {
        let (code, text) = check_digest(&url, &taken, with_heads).await;
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.contains("BROKEN conversation acme:conv-1 sequence 3 ")
                && text.contains("missing predecessor: sequence 2"),
            "{text}"
        );
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_inserted_event_fails_the_digest_check_and_is_named(pool: PgPool) {
    seed(&pool).await;
    let url = database_url(&pool);
    let taken = take_digest(&url, "acme").await;
    // A forger makes room at sequence 3 and inserts an event there, chained properly from
    // sequence 2 and dated into the covered past (sequence 2's transaction).
    as_superuser_all(
        &pool,
        &["events_refuse_update", "events_before_insert"],
        &[
            "UPDATE events SET sequence = 5 WHERE aggregate_id = 'acme:conv-1' AND sequence = 4",
            "UPDATE events SET sequence = 4 WHERE aggregate_id = 'acme:conv-1' AND sequence = 3",
            r#"INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                   payload, metadata, tenant_id, tx_id, recorded_at, hash)
               SELECT aggregate_type, aggregate_id, 3, 'Forged', event_version, '{"forged":true}',
                   metadata, tenant_id, tx_id, recorded_at,
                   chronicle_event_hash(hash, aggregate_type, aggregate_id, 3, 'Forged',
                       event_version, '{"forged":true}', metadata::text)
                 FROM events WHERE aggregate_id = 'acme:conv-1' AND sequence = 2"#,
        ],
    )
    .await;

    let (code, text) = check_digest(&url, &taken, false).await;
    assert_eq!(code, Some(1), "{text}");
    // The renumbered event no longer chains: named. The stream's head moved: the digest fails.
    assert!(
        text.contains("BROKEN conversation acme:conv-1 sequence 4 ") && text.contains("hash mismatch"),
        "{text}"
    );
    assert!(text.contains("DIGEST MISMATCH"), "{text}");
    assert!(!text.contains("BROKEN conversation acme:conv-1 sequence 3 "), "{text}");

    let (code, text) = check_digest(&url, &taken, true).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("CHANGED conversation acme:conv-1: head was sequence 4 ") && text.contains("now sequence 5 "),
        "{text}"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_event_inserted_after_the_digest_inside_covered_history_is_named(pool: PgPool) {
    seed(&pool).await;
    let url = database_url(&pool);
    let taken = take_digest(&url, "acme").await;
    // A forger removes a covered event and records a replacement through the normal path: the
    // replacement is written now, after the digest's cursor, yet below the covered head.
    as_superuser_all(
        &pool,
        &["events_refuse_delete"],
        &["DELETE FROM events WHERE aggregate_id = 'acme:conv-2' AND sequence = 1"],
    )
    .await;
    append(&pool, "conversation", "acme:conv-2", 1).await;

    let (code, text) = check_digest(&url, &taken, true).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("INSERTED conversation acme:conv-2 sequence 1 ")
            && text.contains("inside the history it covered (up to sequence 2)"),
        "{text}"
    );
    assert!(text.contains("DIGEST BROKEN"), "{text}");
    // The replacement has the removed event's very content, so every chain link holds: only the
    // digest sees that it was recorded again.
    assert!(
        text.starts_with("verified 8 events in 3 streams of tenant acme: OK\n"),
        "{text}"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_reordered_pair_fails_the_digest_check_and_is_named(pool: PgPool) {
    seed(&pool).await;
    let url = database_url(&pool);
    let taken = take_digest(&url, "acme").await;
    as_superuser_all(
        &pool,
        &["events_refuse_update"],
        &[
            "UPDATE events SET sequence = 1000 WHERE aggregate_id = 'acme:conv-1' AND sequence = 2",
            "UPDATE events SET sequence = 2 WHERE aggregate_id = 'acme:conv-1' AND sequence = 3",
            "UPDATE events SET sequence = 3 WHERE aggregate_id = 'acme:conv-1' AND sequence = 1000",
        ],
    )
    .await;
    for with_heads in [false, true] {
        let (code, text) = check_digest(&url, &taken, with_heads).await;
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.contains("BROKEN conversation acme:conv-1 sequence 2 ")
                && text.contains("BROKEN conversation acme:conv-1 sequence 3 "),
            "{text}"
        );
    }
}

/// The chains cannot see a cut tail or a removed stream; the digest can, and its heads name them.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_removed_tail_or_stream_passes_the_chains_but_fails_the_digest_and_is_named(pool: PgPool) {
    seed(&pool).await;
    let url = database_url(&pool);
    let taken = take_digest(&url, "acme").await;
    as_superuser_all(
        &pool,
        &["events_refuse_delete"],
        &[
            "DELETE FROM events WHERE aggregate_id = 'acme:conv-1' AND sequence = 4",
            "DELETE FROM events WHERE aggregate_id = 'acme:contact-1' AND sequence = 2",
            "DELETE FROM events WHERE aggregate_id = 'acme:contact-1' AND sequence = 1",
        ],
    )
    .await;

    // Every remaining link holds.
    let plain = replay(&url, &["verify", "--tenant", "acme"]).await;
    assert_eq!(plain.status.code(), Some(0), "{plain:?}");

    let (code, text) = check_digest(&url, &taken, false).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("DIGEST MISMATCH") && text.contains("--heads"), "{text}");

    let (code, text) = check_digest(&url, &taken, true).await;
    assert_eq!(code, Some(1), "{text}");
    let changed: Vec<&str> = text.lines().filter(|l| l.starts_with("CHANGED")).collect();
    assert_eq!(changed.len(), 2, "{text}");
    assert!(
        changed[0].starts_with("CHANGED contact acme:contact-1: head was sequence 2 ")
            && changed[0].contains("it was removed"),
        "{text}"
    );
    assert!(
        changed[1].starts_with("CHANGED conversation acme:conv-1: head was sequence 4 ")
            && changed[1].contains("now sequence 3 ")
            && changed[1].contains("removed from its tail"),
        "{text}"
    );

    // Appending again to the cut stream does not hide the cut.
    append(&pool, "conversation", "acme:conv-1", 4).await;
    let (code, text) = check_digest(&url, &taken, false).await;
    assert_eq!(code, Some(1), "{text}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn digest_usage_errors_are_clear_and_exit_2(pool: PgPool) {
    seed(&pool).await;
    let url = database_url(&pool);
    let taken = take_digest(&url, "acme").await;
    let globex = take_digest(&url, "globex").await;

    let malformed = replay(&url, &["verify", "--digest", "td1:acme"]).await;
    assert_eq!(malformed.status.code(), Some(2), "{malformed:?}");
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("not a tenant digest"));

    let other_tenant = replay(&url, &["verify", "--digest", &taken.digest, "--tenant", "globex"]).await;
    assert_eq!(other_tenant.status.code(), Some(2), "{other_tenant:?}");
    assert!(String::from_utf8_lossy(&other_tenant.stderr).contains("differ"));

    // The heads file of another digest is refused, not used to name streams.
    let wrong_heads = replay(
        &url,
        &[
            "verify",
            "--digest",
            &taken.digest,
            "--heads",
            globex.heads.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(wrong_heads.status.code(), Some(2), "{wrong_heads:?}");
    assert!(
        String::from_utf8_lossy(&wrong_heads.stderr).contains("holds no heads for the digest"),
        "{wrong_heads:?}"
    );

    // A heads file edited to match a changed log does not hash to the digest.
    let edited = std::fs::read_to_string(&taken.heads)
        .unwrap()
        .replace("\"sequence\":4", "\"sequence\":3");
    std::fs::write(&taken.heads, edited).unwrap();
    let (code, _) = check_digest(&url, &taken, true).await;
    assert_eq!(code, Some(2));
}
