//! Migrations never change once they have landed: every migration the migrator carries has its
//! SHA-384 (the checksum sqlx records in `_sqlx_migrations`) written in
//! `migrations/landed.sha384`, and the file's figure must match. A database that applied a
//! migration refuses to start when the file later differs, so an edit here would break every
//! running deployment; change the schema with a new migration instead.

use std::collections::BTreeMap;

use chronicle_projections::MIGRATOR;

const LANDED: &str = include_str!("../../migrations/landed.sha384");

fn landed() -> BTreeMap<i64, String> {
    LANDED
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let mut fields = line.split_whitespace();
            let version = fields.next().and_then(|v| v.parse().ok());
            let checksum = fields.next().map(str::to_string);
            match (version, checksum) {
                (Some(v), Some(c)) => (v, c),
                _ => panic!("migrations/landed.sha384: malformed line {line:?}"),
            }
        })
        .collect()
}

#[test]
fn every_landed_migration_is_unchanged_and_every_migration_is_recorded() {
    let landed = landed();
    let mut problems = Vec::new();
    for migration in MIGRATOR.iter() {
        let checksum = hex::encode(&migration.checksum);
        let line = format!(
            "{} {checksum} {}_{}.sql",
            migration.version,
            migration.version,
            migration.description.replace(' ', "_")
        );
        match landed.get(&migration.version) {
            Some(recorded) if *recorded == checksum => {}
            Some(_) => problems.push(format!(
                "migration {} ({}) was edited after it landed; restore it and add a new migration",
                migration.version, migration.description
            )),
            None => problems.push(format!(
                "migration {} is not recorded; add the line: {line}",
                migration.version
            )),
        }
    }
    for version in landed.keys() {
        if !MIGRATOR.iter().any(|m| m.version == *version) {
            problems.push(format!(
                "migration {version} is recorded as landed but its file is gone"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Applies the migrator's migrations from `first` to `last` (both included), as `sqlx
/// migrate` would.
async fn migrate(pool: &sqlx::PgPool, first: i64, last: i64) {
    for migration in MIGRATOR.iter().filter(|m| (first..=last).contains(&m.version)) {
        sqlx::raw_sql(&migration.sql)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("migration {}: {e}", migration.version));
    }
}

/// A deployment that ran the projectors before the work lists were split (migration 83): what
/// the old projectors wrote stays in the workers' tables, each worker's mark starts at its
/// projector's checkpoint (so nothing is copied twice), and the projectors start over to fill
/// their feeds; states only the sweepers set go back to the log's view.
#[sqlx::test(migrations = false)]
async fn the_work_list_split_keeps_the_workers_rows_and_marks_them_copied(pool: sqlx::PgPool) {
    migrate(&pool, 0, 20261206000082).await;
    sqlx::raw_sql(
        "INSERT INTO projector_checkpoints (projector, last_position, events_applied) VALUES
              ('outbox', 42, 40), ('media', 7, 7), ('wallet_work', 9, 9), ('conversations', 50, 50);
         INSERT INTO outbox (tenant_id, stream_id, contact_id, idempotency_key, recipient, body, state,
                             correlation_id, queued_position)
              VALUES ('acme', 'acme:c1', 'c1', 'k1', '{}', '{}', 'sent', 'corr', 41);
         INSERT INTO maintenance_renewals (tenant_id, contract_id, ends_at, auto_renew, status, last_position)
              VALUES ('acme', 'mc_1', now(), true, 'refused', 3);",
    )
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    migrate(&pool, 20261206000083, 20261206000083).await;
    let marks: Vec<(String, i64)> = sqlx::query_as("SELECT feed, position FROM work_admissions ORDER BY feed")
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let marks: BTreeMap<String, i64> = marks.into_iter().collect();
    assert_eq!(marks.len(), 9, "{marks:?}");
    assert_eq!(marks["outbox_feed"], 42);
    assert_eq!(marks["media_job_feed"], 7);
    assert_eq!(marks["wallet_alert_feed"], 9);
    assert_eq!(marks["call_follow_up_feed"], 0);
    let checkpoints: Vec<(String, i64)> =
        sqlx::query_as("SELECT projector, last_position FROM projector_checkpoints ORDER BY projector")
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        checkpoints,
        vec![
            ("conversations".to_string(), 50),
            ("media".to_string(), 0),
            ("outbox".to_string(), 0),
            ("wallet_work".to_string(), 0),
        ]
    );
    let outbox: (String, i64) = sqlx::query_as("SELECT state, queued_position FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outbox, ("sent".to_string(), 41));
    let status: String = sqlx::query_scalar("SELECT status FROM maintenance_renewals")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "active");
}

/// Issue 17's read-model changes on a running deployment (migration 86): a follow-up given up
/// before the change gets its reason from the log, and the `messages` projector starts over
/// (its tables cleared, its checkpoint at the start) so that inbound content is written as
/// text; other projectors keep their checkpoints.
#[sqlx::test(migrations = false)]
async fn give_up_reasons_come_from_the_log_and_the_messages_projector_starts_over(pool: sqlx::PgPool) {
    migrate(&pool, 0, 20261206000085).await;
    sqlx::raw_sql(
        r#"INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                VALUES ('Call', 'acme:call_1', 1, 'FollowUpGaveUp', '1.0',
                        '{"FollowUpGaveUp": {"attempt": 5, "reason": "max_attempts", "at": "2026-12-01T10:00:00Z"}}',
                        '{"tenant_id": "acme"}');
           INSERT INTO calls (tenant_id, call_id, provider, provider_call_id, direction, duration_s, outcome,
                              ended_at, follow_up_status, last_position)
                VALUES ('acme', 'call_1', 'twilio', 'CA1', 'inbound', 0, 'no_answer', now(), 'gave_up', 1),
                       ('acme', 'call_2', 'twilio', 'CA2', 'inbound', 0, 'no_answer', now(), 'pending', 2);
           INSERT INTO projector_checkpoints (projector, last_position, events_applied)
                VALUES ('messages', 50, 50), ('conversations', 50, 50);
           INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
                VALUES ('Conversation', 'acme:ct_1', 100, 1, '{}'), ('Wallet', 'acme:main', 100, 1, '{}');
           INSERT INTO messages (tenant_id, conversation_id, message_id, direction, message_ref, kind, content, at, state, position, last_position)
                VALUES ('acme', 'ct_1', 'in:m1', 'inbound', 'm1', 'text', '{"body":"hi"}', now(), 'received', 40, 40);"#,
    )
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    migrate(&pool, 20261207000086, 20261207000087).await;
    // Migration 87: the conversations' snapshots go (they hold no latest message id).
    let snapshots: Vec<String> = sqlx::query_scalar("SELECT aggregate_type FROM snapshots")
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snapshots, vec!["Wallet".to_string()]);
    let reasons: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT call_id, follow_up_give_up_reason FROM calls ORDER BY call_id")
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        reasons,
        vec![
            ("call_1".to_string(), Some("max_attempts".to_string())),
            ("call_2".to_string(), None)
        ]
    );
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(messages, 0);
    let checkpoints: Vec<(String, i64)> =
        sqlx::query_as("SELECT projector, last_position FROM projector_checkpoints ORDER BY projector")
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        checkpoints,
        vec![("conversations".to_string(), 0), ("messages".to_string(), 0)]
    );
}

/// Migration 88 claims the serials installed before it: the first installation that recorded a
/// serial (trimmed of white space) keeps it, whatever its id; a blank serial claims nothing.
#[sqlx::test(migrations = false)]
async fn serials_installed_before_are_claimed_by_their_first_installation(pool: sqlx::PgPool) {
    migrate(&pool, 0, 20261207000087).await;
    sqlx::raw_sql(
        r#"INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
           VALUES ('InstallationRecord', 'acme:isr_2', 1, 'ComponentInstalled', '1.0',
                   '{"ComponentInstalled": {"serial": "SN-1", "kind": "panel", "warranty_months": 12, "by": "t", "at": "2026-12-01T10:00:00Z"}}',
                   '{"tenant_id": "acme"}'),
                  ('InstallationRecord', 'acme:isr_1', 1, 'ComponentInstalled', '1.0',
                   '{"ComponentInstalled": {"serial": " SN-1\t", "kind": "panel", "warranty_months": 12, "by": "t", "at": "2026-12-01T11:00:00Z"}}',
                   '{"tenant_id": "acme"}'),
                  ('InstallationRecord', 'acme:isr_1', 2, 'ComponentInstalled', '1.0',
                   '{"ComponentInstalled": {"serial": " ", "kind": "panel", "warranty_months": 12, "by": "t", "at": "2026-12-01T11:00:00Z"}}',
                   '{"tenant_id": "acme"}'),
                  ('InstallationRecord', 'beta:isr_9', 1, 'ComponentInstalled', '1.0',
                   '{"ComponentInstalled": {"serial": "SN-1", "kind": "panel", "warranty_months": 12, "by": "t", "at": "2026-12-01T11:00:00Z"}}',
                   '{"tenant_id": "beta"}');"#,
    )
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    migrate(&pool, 20261207000088, 20261207000088).await;
    let claims: Vec<(String, String, String)> =
        sqlx::query_as("SELECT tenant_id, serial, installation_id FROM component_serials ORDER BY tenant_id")
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        claims,
        vec![
            ("acme".to_string(), "SN-1".to_string(), "isr_2".to_string()),
            ("beta".to_string(), "SN-1".to_string(), "isr_9".to_string())
        ]
    );
}
