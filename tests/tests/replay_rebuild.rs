//! `chronicle-replay rebuild` (issue 11): every projection rebuilt beside the live tables and
//! swapped in while the API serves: no query fails or sees anything but the read models as
//! they were, every table holds the same rows after, the tables keep their indexes,
//! constraints, policies and grants; drift is found (exit 1) and repaired, `--compare-only`
//! touches nothing; refusals leave nothing behind.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronicle_api::app::projectors;
use chronicle_api::auth::Role;
use chronicle_projections::rebuild::{self, RebuildError, RebuildOptions, RebuildProgress};
use chronicle_projections::runtime::{ProjectorRunner, RunnerConfig};
use chronicle_replay::rebuild::{rebuild_command, RebuildArgs, RebuildFormat};
use chronicle_replay::{DatabaseArgs, Outcome};
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::watch;

const INSTALLER: &str = "installer-1";
const AGENCY: &str = "agency-1";

/// Queries over most read models, per tenant.
const QUERIES: &[(&str, &str)] = &[
    (
        INSTALLER,
        "{ conversations(first: 50) { edges { node { id contactName unreadCount lastMessage { text } } } } }",
    ),
    (INSTALLER, "{ contacts(first: 50) { edges { node { id } } } }"),
    (INSTALLER, "{ leads(first: 50) { totalCount edges { node { id } } } }"),
    (INSTALLER, "{ installations { edges { node { id } } } }"),
    (INSTALLER, "{ warranties { nodes { id } } }"),
    (INSTALLER, "{ calls(first: 20) { edges { node { followUp { status attempts } } } } }"),
    (INSTALLER, "{ payouts { nodes { id status amountMinor } } }"),
    (
        AGENCY,
        "{ wallets { nodes { id balance } } walletLedger { edges { node { kind } } } reservations { nodes { reference } } }",
    ),
    (AGENCY, "{ campaigns { edges { node { id } } } }"),
    (AGENCY, "{ conversations(first: 50) { edges { node { id lastMessage { text } } } } }"),
];

/// What the public schema's tables are made of: columns in order, indexes, constraints,
/// row-level security, policies, grants and owners.
async fn schema(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname || ' col ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
                || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' '
                || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum)
           FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
           LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
          WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
         UNION ALL
         SELECT tablename || ' index ' || indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
         UNION ALL
         SELECT conrelid::regclass::text || ' constraint ' || conname || ' ' || pg_get_constraintdef(oid)
           FROM pg_constraint WHERE connamespace = 'public'::regnamespace
         UNION ALL
         SELECT tablename || ' policy ' || policyname || ' ' || permissive || ' ' || array_to_string(roles, ',')
                || ' ' || cmd || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '')
           FROM pg_policies WHERE schemaname = 'public'
         UNION ALL
         SELECT relname || ' table ' || relrowsecurity || ' ' || relforcerowsecurity || ' '
                || pg_get_userbyid(relowner) || ' ' || coalesce(array_to_string(relacl, ','), '')
                || ' ' || coalesce(array_to_string(reloptions, ','), '')
           FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn leftover_schemas(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname IN ($1, $2)")
        .bind(rebuild::SHADOW_SCHEMA)
        .bind(rebuild::REPLACED_SCHEMA)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The answers of [`QUERIES`] through the HTTP API at `address`.
async fn answers(
    client: &reqwest::Client,
    address: std::net::SocketAddr,
    tokens: &[String],
) -> Vec<Result<Value, String>> {
    let mut all = Vec::new();
    for ((_, query), token) in QUERIES.iter().zip(tokens) {
        let reply = client
            .post(format!("http://{address}/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": query }))
            .send()
            .await;
        all.push(match reply {
            Err(e) => Err(format!("{query}: {e}")),
            Ok(reply) if !reply.status().is_success() => Err(format!("{query}: HTTP {}", reply.status())),
            Ok(reply) => match reply.json::<Value>().await {
                Err(e) => Err(format!("{query}: {e}")),
                Ok(body) if body.get("errors").is_some() => Err(format!("{query}: {body}")),
                Ok(body) => Ok(body),
            },
        });
    }
    all
}

/// Live runners of every projector, as the server runs them, until `stop`.
fn spawn_runners(app: &TestApp, stop: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    projectors(&app.state)
        .into_iter()
        .map(|projector| {
            let runner = ProjectorRunner::new(
                app.state.pool.clone(),
                projector,
                app.state.wakeups.clone(),
                RunnerConfig {
                    batch_size: 500,
                    poll_interval: Duration::from_millis(100),
                },
            );
            tokio::spawn(runner.run(stop.clone()))
        })
        .collect()
}

/// Inbound messages `wamid.<tag>.<n>` from `contacts` contacts (`ct_<tag>_<i>`), one every
/// `pause_ms`, while `appending` holds and until at least `at_least` are sent. Answers how many.
fn spawn_inbound_writer(
    app: &TestApp,
    tag: &'static str,
    contacts: u32,
    appending: &Arc<AtomicBool>,
    at_least: u32,
    pause_ms: u64,
) -> tokio::task::JoinHandle<u32> {
    let (commands, appending) = (app.state.commands.clone(), appending.clone());
    tokio::spawn(async move {
        let mut n = 0u32;
        while appending.load(Ordering::SeqCst) || n < at_least {
            n += 1;
            let contact = format!("ct_{tag}_{}", n % contacts);
            commands
                .conversation(
                    &contact,
                    inbound_message(&format!("wamid.{tag}.{n}"), &contact, i64::from(n)),
                    &system_metadata(INSTALLER),
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
        n
    })
}

fn cli_args(data_dir: &std::path::Path) -> RebuildArgs {
    RebuildArgs {
        projectors: Vec::new(),
        list: false,
        compare_only: false,
        batch_size: 5_000,
        format: RebuildFormat::Json,
        database: DatabaseArgs {
            database_url: None,
            data_dir: data_dir.to_path_buf(),
        },
    }
}

/// A data directory holding the development secrets (the master key), as `chronicle serve`
/// leaves it: how the CLI finds the key without CHRONICLE_MASTER_KEY. Removed on drop.
struct DataDir(std::path::PathBuf);

impl DataDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn data_dir() -> DataDir {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "chronicle-rebuild-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.join("dev-secrets.json"),
        json!({ "master_key": MASTER_KEY }).to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    DataDir(dir)
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn rebuilding_every_projection_while_the_api_serves_fails_no_query_and_changes_no_table(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    app.load_demo().await;
    app.project().await;
    let tokens: Vec<String> = QUERIES.iter().map(|(t, _)| app.token(t, Role::Owner)).collect();
    let address = app.serve().await;
    let client = reqwest::Client::new();
    // Before: every query answers, with something in it.
    let before: Vec<Value> = answers(&client, address, &tokens)
        .await
        .into_iter()
        .map(|a| a.unwrap_or_else(|e| panic!("before the rebuild: {e}")))
        .collect();
    let rows_before = table_rows(&pool, false).await;
    let schema_before = schema(&pool).await;
    assert!(rows_before["conversations"].len() > 10 && rows_before["messages"].len() > 10);

    // The server's runners stay up, and three clients query without a pause.
    let (stop, stopped) = watch::channel(false);
    let runners = spawn_runners(&app, &stopped);
    let querying = Arc::new(AtomicBool::new(true));
    let (rounds, failures) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(std::sync::Mutex::new(Vec::new())),
    );
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (client, tokens, before) = (client.clone(), tokens.clone(), before.clone());
        let (querying, rounds, failures) = (querying.clone(), rounds.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            while querying.load(Ordering::SeqCst) {
                for (i, answer) in answers(&client, address, &tokens).await.into_iter().enumerate() {
                    let problem = match answer {
                        Err(e) => Some(e),
                        Ok(body) if body != before[i] => Some(format!("{}: answered {body}", QUERIES[i].1)),
                        Ok(_) => None,
                    };
                    if let Some(problem) = problem {
                        failures.lock().unwrap_or_else(|e| e.into_inner()).push(problem);
                    }
                }
                rounds.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during_start = rounds.load(Ordering::SeqCst);

    let mut steps = Vec::new();
    let report = rebuild::rebuild(
        &pool,
        &projectors(&app.state),
        &RebuildOptions {
            batch_size: 400,
            swap: true,
        },
        &mut |step| steps.push(step),
    )
    .await
    .unwrap_or_else(|e| panic!("rebuild: {e}"));
    let during = rounds.load(Ordering::SeqCst) - during_start;
    // Queries after the swap too (prepared statements planned again on the new tables).
    let after_swap = rounds.load(Ordering::SeqCst);
    while rounds.load(Ordering::SeqCst) < after_swap + 6 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    querying.store(false, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap_or_else(|e| panic!("{e}"));
    }
    stop.send_replace(true);
    for runner in runners {
        runner.await.unwrap_or_else(|e| panic!("{e}"));
    }

    let failures = failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        failures.is_empty(),
        "{} queries failed or differed: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(during >= 3, "only {during} rounds of queries ran during the rebuild");
    // The report: every projector, every table, equal; swapped; progress reported.
    assert!(report.swapped);
    assert_eq!(report.projectors.len(), projectors(&app.state).len());
    let listed: usize = projectors(&app.state).iter().map(|p| p.tables().len()).sum();
    assert_eq!(report.tables.len(), listed);
    assert!(report.differing().is_empty(), "{:#?}", report.differing());
    assert!(report.events_read > 0 && report.tables.iter().any(|t| t.rebuilt_rows > 0));
    assert!(matches!(steps.first(), Some(RebuildProgress::Started { total }) if *total > 0));
    assert!(
        steps
            .iter()
            .filter(|s| matches!(s, RebuildProgress::Replayed { .. }))
            .count()
            > 1
    );
    assert_eq!(steps.last(), Some(&RebuildProgress::Swapping));
    // Every table as before, the schema as before, nothing left behind.
    assert_eq!(table_rows(&pool, false).await, rows_before);
    assert_eq!(schema(&pool).await, schema_before);
    assert!(leftover_schemas(&pool).await.is_empty());
    let at: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT last_tx_id::text || '/' || last_position FROM projector_checkpoints WHERE projector = ANY($1)",
    )
    .bind(projectors(&app.state).iter().map(|p| p.name()).collect::<Vec<_>>())
    .fetch_all(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(at, vec![format!("{}/{}", report.cursor.tx_id, report.cursor.position)]);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_rebuild_beside_appends_and_live_runners_compares_at_one_cursor_and_the_log_goes_on(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    app.load_demo().await;
    let (stop, stopped) = watch::channel(false);
    let runners = spawn_runners(&app, &stopped);
    // Inbound messages keep arriving while the rebuild runs.
    let appending = Arc::new(AtomicBool::new(true));
    let writer = spawn_inbound_writer(&app, "rebuild", 7, &appending, 20, 5);
    let report = rebuild::rebuild(
        &pool,
        &projectors(&app.state),
        &RebuildOptions {
            batch_size: 300,
            swap: true,
        },
        &mut |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("rebuild: {e}"));
    appending.store(false, Ordering::SeqCst);
    let sent = writer.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(sent >= 20);
    // At the swap's cursor, the live and the rebuilt tables held the same rows.
    assert!(report.differing().is_empty(), "{:#?}", report.differing());
    // The live runners went on from the swapped tables: once caught up, a comparison with a
    // fresh fold of the whole log finds every table equal, and every message is there.
    app.project().await;
    stop.send_replace(true);
    for runner in runners {
        runner.await.unwrap_or_else(|e| panic!("{e}"));
    }
    app.project().await;
    let check = rebuild::rebuild(
        &pool,
        &projectors(&app.state),
        &RebuildOptions {
            batch_size: 5_000,
            swap: false,
        },
        &mut |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("compare: {e}"));
    assert!(check.differing().is_empty(), "{:#?}", check.differing());
    let messages = app
        .count("SELECT count(*) FROM messages WHERE message_ref LIKE 'wamid.rebuild.%'")
        .await;
    assert_eq!(messages, i64::from(sent));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn drift_is_reported_with_exit_1_repaired_by_the_swap_and_left_alone_by_compare_only(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    app.load_demo().await;
    app.project().await;
    let clean = table_rows(&pool, false).await;
    let dir = data_dir();

    // A clean read model: exit 0 (Outcome::Ok), every table equal.
    let mut out = Vec::new();
    let outcome = rebuild_command(&pool, &cli_args(dir.path()), &mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, Outcome::Ok, "{}", String::from_utf8_lossy(&out));
    assert_eq!(table_rows(&pool, false).await, clean);

    // Plant drift: a changed row, a deleted row.
    sqlx::query("UPDATE conversations SET unread_count = unread_count + 7 WHERE conversation_id = (SELECT min(conversation_id) FROM conversations)")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("DELETE FROM messages WHERE message_id = (SELECT min(message_id) FROM messages)")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let drifted = table_rows(&pool, false).await;
    assert_ne!(drifted, clean);
    let drifted_versions = table_rows(&pool, true).await;

    // --compare-only: exit 1, both tables named, nothing changed anywhere (a projector
    // writing a table it does not list would show here).
    let mut args = cli_args(dir.path());
    args.compare_only = true;
    let mut out = Vec::new();
    let outcome = rebuild_command(&pool, &args, &mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, Outcome::Broken);
    let report: Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}"));
    let differing: Vec<&str> = report["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["live_checksum"] != t["rebuilt_checksum"] || t["live_rows"] != t["rebuilt_rows"])
        .filter_map(|t| t["table"].as_str())
        .collect();
    assert_eq!(differing, vec!["conversations", "messages"]);
    assert_eq!(report["swapped"], json!(false));
    // Not a row of any table written, not even with the same values.
    assert_eq!(table_rows(&pool, true).await, drifted_versions);

    // The table report says so too.
    args.format = RebuildFormat::Table;
    let mut out = Vec::new();
    let outcome = rebuild_command(&pool, &args, &mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, Outcome::Broken);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("DIFFERS").count(), 2, "{text}");
    assert!(text.contains("2 table(s) DIFFER"), "{text}");

    // The swap: exit 1 (drift found), and the read models are the log's again.
    let mut out = Vec::new();
    let outcome = rebuild_command(&pool, &cli_args(dir.path()), &mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, Outcome::Broken);
    assert_eq!(table_rows(&pool, false).await, clean);
    // And again: nothing left to repair.
    let mut out = Vec::new();
    let outcome = rebuild_command(&pool, &cli_args(dir.path()), &mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, Outcome::Ok);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn one_projector_is_rebuilt_alone_and_refusals_leave_nothing_behind(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    app.load_demo().await;
    app.project().await;
    let dir = data_dir();
    let before = table_rows(&pool, false).await;
    let schema_before = schema(&pool).await;

    // One projector by name: only its tables are in the report.
    let mut args = cli_args(dir.path());
    args.projectors = vec!["leads".into()];
    let mut out = Vec::new();
    assert_eq!(
        rebuild_command(&pool, &args, &mut out)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        Outcome::Ok
    );
    let report: Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}"));
    let rebuilt: Vec<&str> = report["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["table"].as_str())
        .collect();
    assert_eq!(rebuilt, vec!["leads", "lead_stage_transitions"]);
    assert_eq!(table_rows(&pool, false).await, before);

    // --list names every projector and its tables.
    let mut args = cli_args(dir.path());
    args.list = true;
    let mut out = Vec::new();
    rebuild_command(&pool, &args, &mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listing = String::from_utf8_lossy(&out);
    for projector in projectors(&app.state) {
        assert!(listing.contains(projector.name()), "{listing}");
    }

    // An unknown name: refused, naming the known ones.
    let mut args = cli_args(dir.path());
    args.projectors = vec!["leeds".into()];
    let error = rebuild_command(&pool, &args, &mut Vec::new())
        .await
        .err()
        .unwrap_or_else(|| panic!("an unknown projector was accepted"));
    assert!(error.to_string().contains("no projector named \"leeds\""), "{error}");
    assert!(error.to_string().contains("conversations"), "{error}");

    // No master key: refused before anything is built (unless this run has one in its
    // environment, which the CLI would take).
    if std::env::var_os("CHRONICLE_MASTER_KEY").is_none() {
        let mut args = cli_args(std::path::Path::new("/nonexistent-chronicle-dir"));
        args.projectors = vec!["leads".into()];
        let error = rebuild_command(&pool, &args, &mut Vec::new())
            .await
            .err()
            .unwrap_or_else(|| panic!("ran without a master key"));
        assert!(error.to_string().contains("rebuild needs the master key"), "{error}");
    }

    // Another rebuild holds the lock: refused.
    let mut holder = pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("SELECT pg_advisory_lock(hashtext('chronicle.rebuild'))")
        .execute(&mut *holder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let refused = rebuild::rebuild(&pool, &projectors(&app.state), &RebuildOptions::default(), &mut |_| {}).await;
    assert!(matches!(refused, Err(RebuildError::AlreadyRunning)), "{refused:?}");
    sqlx::query("SELECT pg_advisory_unlock(hashtext('chronicle.rebuild'))")
        .execute(&mut *holder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(holder);

    // A table the swap could not carry over whole (here a trigger on it): refused, nothing
    // built, nothing changed.
    sqlx::query("CREATE FUNCTION touch_leads() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("CREATE TRIGGER leads_touch BEFORE UPDATE ON leads FOR EACH ROW EXECUTE FUNCTION touch_leads()")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let refused = rebuild::rebuild(&pool, &projectors(&app.state), &RebuildOptions::default(), &mut |_| {}).await;
    match refused {
        Err(RebuildError::Unsupported { table, reason }) => {
            assert_eq!(table, "leads");
            assert!(reason.contains("trigger"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    sqlx::query("DROP TRIGGER leads_touch ON leads")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(leftover_schemas(&pool).await.is_empty());
    assert_eq!(table_rows(&pool, false).await, before);
    assert_eq!(schema(&pool).await, schema_before);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_swap_held_up_by_a_query_tries_again_and_loses_nothing_applied_in_the_attempt(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    app.load_demo().await;
    app.project().await;
    let (stop, stopped) = watch::channel(false);
    let runners = spawn_runners(&app, &stopped);
    // A reader holds `leads` from before the swap until well into it, while messages keep
    // arriving: the first attempts apply new events to the new tables, then time out on the
    // lock and roll back.
    let swapping = Arc::new(tokio::sync::Notify::new());
    let holder = {
        let (pool, swapping) = (pool.clone(), swapping.clone());
        let mut tx = pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
        sqlx::query("LOCK TABLE leads IN ACCESS SHARE MODE")
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            swapping.notified().await;
            // Until the swap is seen waiting for the table, then through two of its attempts.
            let waiting = "SELECT count(*) FROM pg_locks
                            WHERE relation = 'public.leads'::regclass AND mode = 'AccessExclusiveLock' AND NOT granted";
            let mut seen = false;
            for _ in 0..3_000 {
                let n: i64 = sqlx::query_scalar(waiting)
                    .fetch_one(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                if n > 0 {
                    seen = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            tx.rollback().await.unwrap_or_else(|e| panic!("{e}"));
            seen
        })
    };
    let appending = Arc::new(AtomicBool::new(true));
    let writer = spawn_inbound_writer(&app, "retry", 5, &appending, 0, 10);
    let notify = swapping.clone();
    let report = rebuild::rebuild(
        &pool,
        &projectors(&app.state),
        &RebuildOptions::default(),
        &mut move |step| {
            if step == RebuildProgress::Swapping {
                notify.notify_one();
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("rebuild: {e}"));
    let seen = holder.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(seen, "the swap never waited for the table held");
    appending.store(false, Ordering::SeqCst);
    let sent = writer.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.swap_retries >= 1, "the swap was never held up");
    assert!(report.differing().is_empty(), "{:#?}", report.differing());
    // Once caught up, the swapped tables equal a fresh fold of the log: nothing the rolled-back
    // attempts applied was lost.
    stop.send_replace(true);
    for runner in runners {
        runner.await.unwrap_or_else(|e| panic!("{e}"));
    }
    app.project().await;
    let check = rebuild::rebuild(
        &pool,
        &projectors(&app.state),
        &RebuildOptions {
            swap: false,
            ..RebuildOptions::default()
        },
        &mut |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("compare: {e}"));
    assert!(check.differing().is_empty(), "{:#?}", check.differing());
    assert!(check.tables.iter().all(|t| t.compared));
    assert_eq!(
        app.count("SELECT count(*) FROM messages WHERE message_ref LIKE 'wamid.retry.%'")
            .await,
        i64::from(sent)
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_live_projector_a_little_behind_is_caught_up_and_compared_one_never_run_is_not(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    app.load_demo().await;
    app.project().await;
    let templates_before = table_rows(&pool, false).await["templates"].clone();
    assert!(!templates_before.is_empty());
    // `messages` behind by a few events; `templates` as if it had never run.
    for n in 0..5 {
        let contact = "ct_behind";
        app.state
            .commands
            .conversation(
                contact,
                inbound_message(&format!("wamid.behind.{n}"), contact, n),
                &system_metadata(INSTALLER),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let others: Vec<&str> = projectors(&app.state)
        .iter()
        .map(|p| p.name())
        .filter(|n| *n != "messages")
        .collect();
    app.project_only(&others).await;
    sqlx::query("DELETE FROM templates")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("DELETE FROM projector_checkpoints WHERE projector = 'templates'")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let report = rebuild::rebuild(&pool, &projectors(&app.state), &RebuildOptions::default(), &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("rebuild: {e}"));
    let table = |name: &str| {
        report
            .tables
            .iter()
            .find(|t| t.table == name)
            .unwrap_or_else(|| panic!("no {name} in the report"))
            .clone()
    };
    let messages = table("messages");
    assert!(messages.compared && messages.live_behind_by >= 5, "{messages:?}");
    assert!(messages.equal(), "{messages:?}");
    let templates = table("templates");
    assert!(!templates.compared, "{templates:?}");
    assert_eq!(templates.live_rows, 0);
    assert!(report.differing().is_empty(), "{:#?}", report.differing());
    // Swapped in: the never-run projector's table is whole again, the behind one has the new
    // messages, and both checkpoints stand at the report's cursor.
    assert_eq!(table_rows(&pool, false).await["templates"], templates_before);
    assert_eq!(
        app.count("SELECT count(*) FROM messages WHERE message_ref LIKE 'wamid.behind.%'")
            .await,
        5
    );
    assert_eq!(
        app.count("SELECT count(*) FROM projector_checkpoints WHERE projector IN ('templates', 'messages') AND last_position > 0")
            .await,
        2
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn another_master_key_is_refused_before_anything_is_built(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    app.load_demo().await;
    app.project().await;
    let before = table_rows(&pool, false).await;
    let dir = data_dir();
    std::fs::write(
        dir.path().join("dev-secrets.json"),
        json!({ "master_key": "AQECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" }).to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    if std::env::var_os("CHRONICLE_MASTER_KEY").is_some() {
        return; // the CLI would take the environment's key
    }
    let error = rebuild_command(&pool, &cli_args(dir.path()), &mut Vec::new())
        .await
        .err()
        .unwrap_or_else(|| panic!("another master key was accepted"));
    assert!(
        error.to_string().contains("does not open the contacts' keys"),
        "{error}"
    );
    assert_eq!(table_rows(&pool, false).await, before);
    assert!(leftover_schemas(&pool).await.is_empty());
}
