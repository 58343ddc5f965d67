//! `chronicle-bench`: Chronicle's speed and memory, each figure beside a baseline measured in
//! the same run on the same PostgreSQL (issue 6). Results go to `<out>/results.json`,
//! `<out>/results.md` (target, figure, baseline, ratio; a miss is shown, not hidden) and
//! `<out>/appends.svg` (the append curve).
//!
//! ```sh
//! scripts/bench.sh                 # full scale (1 M events, 64 clients, 1,000 subscribers)
//! scripts/bench.sh --scale smoke   # a few thousand events: the CI smoke run, asserts nothing
//! ```
//!
//! It needs `DATABASE_URL` (a server where it may create the `chronicle_bench` database; the
//! test services of `scripts/services.sh` do) and `pgbench` from the PostgreSQL packages.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chronicle_api::app::{application_pool, build_state, projectors, router, AppState};
use chronicle_api::auth::{mint, Role};
use chronicle_commands::dispatch::{Commands, SnapshotPolicy};
use chronicle_domain::conversation::{Conversation, ConversationCommand, InboundMessage, MessageKind};
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::pii::DataKey;
use chronicle_domain::tenant::TenantId;
use chronicle_fixtures::generator::{generate, Scale};
use chrono::{TimeZone, Utc};
use futures::{SinkExt, StreamExt};
use rand::rngs::OsRng;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The sizes of one run.
#[derive(Debug, Clone, Serialize)]
struct Plan {
    name: &'static str,
    events: usize,
    append_seconds: u64,
    append_clients: Vec<usize>,
    stream_lengths: Vec<usize>,
    graphql_seconds: u64,
    graphql_clients: usize,
    subscribers: usize,
    subscription_events: usize,
}

impl Plan {
    fn of(name: &str) -> anyhow::Result<Plan> {
        Ok(match name {
            "smoke" => Plan {
                name: "smoke",
                events: 3_000,
                append_seconds: 1,
                append_clients: vec![1, 4],
                stream_lengths: vec![10, 100, 1_000],
                graphql_seconds: 1,
                graphql_clients: 4,
                subscribers: 20,
                subscription_events: 10,
            },
            "full" => Plan {
                name: "full",
                events: 1_000_000,
                append_seconds: 10,
                append_clients: vec![1, 4, 16, 64],
                stream_lengths: vec![10, 1_000, 100_000],
                graphql_seconds: 15,
                graphql_clients: 16,
                subscribers: 1_000,
                subscription_events: 50,
            },
            other => bail!("unknown scale {other:?}: use smoke or full"),
        })
    }
}

/// One row of the results table.
#[derive(Debug, Clone, Serialize)]
struct Figure {
    name: String,
    value: f64,
    unit: String,
    baseline: Option<f64>,
    baseline_name: String,
    /// value ÷ baseline (or baseline ÷ value where lower is better: see `target`).
    ratio: Option<f64>,
    target: String,
    met: Option<bool>,
}

fn figure(name: &str, value: f64, unit: &str) -> Figure {
    Figure {
        name: name.into(),
        value,
        unit: unit.into(),
        baseline: None,
        baseline_name: String::new(),
        ratio: None,
        target: String::new(),
        met: None,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v
}

struct Bench {
    plan: Plan,
    admin_url: String,
    owner: PgPool,
    state: AppState,
    figures: Vec<Figure>,
    curves: BTreeMap<String, Vec<(f64, f64)>>,
    /// The server's durability settings, shown with the results (users run fsync and
    /// synchronous_commit on; the test cluster turns both off, which hides the commit's cost).
    durability: String,
}

fn say(what: &str) {
    eprintln!("bench: {what}");
}

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap_or_else(|e| panic!("{e}"))
}

fn settings() -> anyhow::Result<chronicle_api::config::Settings> {
    Ok(chronicle_api::config::Settings::from_lookup(|name| match name {
        "DATABASE_URL" => Some("postgres://set-by-the-bench".into()),
        "CHRONICLE_JWT_SECRET" => Some("bench-jwt-secret-bench-jwt-secret-000".into()),
        "CHRONICLE_MASTER_KEY" => Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
        "WHATSAPP_APP_SECRET" => Some("bench".into()),
        "WHATSAPP_VERIFY_TOKEN" => Some("bench".into()),
        "WHATSAPP_ACCESS_TOKEN" => Some("bench".into()),
        "TWILIO_AUTH_TOKEN" => Some("bench".into()),
        _ => None,
    })?)
}

impl Bench {
    async fn new(plan: Plan) -> anyhow::Result<Bench> {
        let admin_url =
            std::env::var("DATABASE_URL").context("DATABASE_URL is required (source scripts/services.sh)")?;
        let admin = PgConnectOptions::from_str(&admin_url)?;
        let mut conn = PgConnection::connect_with(&admin).await?;
        let (fsync, synchronous_commit): (String, String) =
            sqlx::query_as("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
                .fetch_one(&mut conn)
                .await?;
        let durability = format!("fsync {fsync}, synchronous_commit {synchronous_commit}");
        if fsync != "on" || synchronous_commit == "off" {
            say(&format!(
                "warning: the server runs with {durability}; users run both on, and these figures hide the cost of a durable commit"
            ));
        }
        sqlx::query("DROP DATABASE IF EXISTS chronicle_bench WITH (FORCE)")
            .execute(&mut conn)
            .await?;
        sqlx::query("CREATE DATABASE chronicle_bench")
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let bench_options = admin.clone().database("chronicle_bench");
        let owner = PgPool::connect_with(bench_options.clone()).await?;
        chronicle_projections::MIGRATOR.run(&owner).await?;
        let state = build_state(application_pool(bench_options.clone()).await?, &settings()?).await?;
        Ok(Bench {
            plan,
            admin_url,
            owner,
            state,
            figures: Vec::new(),
            curves: BTreeMap::new(),
            durability,
        })
    }

    fn pgbench(&self, script: &str, clients: usize, seconds: u64) -> anyhow::Result<f64> {
        let path = std::env::temp_dir().join(format!("chronicle-bench-{}.sql", std::process::id()));
        std::fs::write(&path, script)?;
        let bin = ["/usr/lib/postgresql/15/bin/pgbench", "pgbench"]
            .into_iter()
            .find(|p| Process::new(p).arg("--version").output().is_ok())
            .context("pgbench not found (apt-get install postgresql-15)")?;
        let url = self.bench_url();
        let output = Process::new(bin)
            .args([
                "-n",
                "-c",
                &clients.to_string(),
                "-j",
                &clients.min(2).to_string(),
                "-T",
                &seconds.to_string(),
            ])
            .arg("-f")
            .arg(&path)
            .arg(&url)
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let tps = text
            .lines()
            .find(|l| l.starts_with("tps ="))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| {
                format!(
                    "pgbench gave no tps: {text} {}",
                    String::from_utf8_lossy(&output.stderr)
                )
            })?;
        Ok(tps)
    }

    fn bench_url(&self) -> String {
        let mut url = self.admin_url.clone();
        if let Some(slash) = url.rfind('/') {
            url.truncate(slash + 1);
        }
        url.push_str("chronicle_bench");
        url
    }

    fn message(key: &DataKey, t: &TenantId, contact: &str, n: u64) -> ConversationCommand {
        let seal = |s: &str| key.seal(t, contact, s, &mut OsRng);
        ConversationCommand::ReceiveMessage(InboundMessage {
            message_ref: format!("wm_bench_{contact}_{n}"),
            provider_message_id: seal("wamid.bench"),
            contact_id: contact.to_string(),
            business_number_id: "1000000001".into(),
            contact_phone: seal("+263771000000"),
            contact_name: Some(seal("Bench Contact")),
            kind: MessageKind::Text,
            content: Some(seal("{\"body\":\"hello from the benchmark\"}")),
            sent_at: Utc
                .timestamp_opt(1_767_600_000 + n as i64, 0)
                .single()
                .unwrap_or_default(),
        })
    }

    fn metadata(t: &TenantId) -> CommandMetadata {
        CommandMetadata {
            tenant_id: t.clone(),
            actor: Actor::System {
                component: "bench".into(),
            },
            correlation_id: "bench".into(),
            causation_id: "bench".into(),
        }
    }

    /// 1. Commands per second on independent streams, beside the same one-event commands
    ///    through stock cqrs-es + postgres-es on the library's own tables (the peer), and beside
    ///    pgbench's single-row INSERTs into a plain table and into Chronicle's `events` (its
    ///    triggers and indexes), so each layer's cost is visible.
    async fn appends(&mut self) -> anyhow::Result<()> {
        let t = tenant("bench-appends");
        let key = DataKey::generate(&mut OsRng);
        let envelope = |s: &str| key.seal(&t, "ct_x", s, &mut OsRng);
        let sample = serde_json::to_string(
            &json!({"MessageReceived": {"message_ref": "wm_x", "contact_phone": envelope("+263771000000"), "content": envelope("hello")}}),
        )?;
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_raw (aggregate_type text, aggregate_id text, sequence bigint, event_type text, event_version text, payload json, metadata json)")
            .execute(&self.owner)
            .await?;
        sqlx::query("CREATE SEQUENCE IF NOT EXISTS bench_raw_ids")
            .execute(&self.owner)
            .await?;
        let metadata = "{\"tenant_id\":\"bench-raw\",\"actor\":\"system:bench\",\"correlation_id\":\"bench\",\"causation_id\":\"bench\"}";
        // An aggregate type and event type no projector reads: these rows only measure the
        // INSERT, and must not reach the read models the later sections build.
        let insert_into = |table: &str| {
            format!(
                "INSERT INTO {table} (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('BenchRaw', 'bench-raw:' || nextval('bench_raw_ids'), 1, 'BenchRawInserted', '1.0', '{}', '{metadata}');\n",
                sample.replace('\'', "''")
            )
        };
        let plain_script = insert_into("bench_raw");
        let events_script = insert_into("events");
        let stock = StockPeer::new(&self.admin_url).await?;
        let commands = self.state.commands.clone();
        for &clients in &self.plan.append_clients.clone() {
            say(&format!("appends: {clients} clients"));
            let seconds = self.plan.append_seconds;
            let rate = {
                let (commands, t, key) = (commands.clone(), t.clone(), key.clone());
                drive(clients, seconds, move |c, n| {
                    let (commands, t, key) = (commands.clone(), t.clone(), key.clone());
                    async move {
                        let contact = format!("ct_c{clients}_{c}_{n}");
                        let command = Bench::message(&key, &t, &contact, n);
                        commands
                            .conversation(&contact, command, &Bench::metadata(&t))
                            .await
                            .is_ok()
                    }
                })
                .await
            };
            say(&format!("appends: {clients} clients, the stock peer"));
            let peer = {
                let (stock, sample) = (stock.clone(), serde_json::from_str::<Value>(&sample)?);
                drive(clients, seconds, move |c, n| {
                    let (stock, sample) = (stock.clone(), sample.clone());
                    async move { stock.command(&format!("bench-stock:c{clients}_{c}_{n}"), sample).await }
                })
                .await
            };
            let raw = self.pgbench(&plain_script, clients, seconds)?;
            let raw_events = self.pgbench(&events_script, clients, seconds)?;
            for (curve, value) in [
                ("Chronicle commands/s", rate),
                ("stock cqrs-es + postgres-es commands/s", peer),
                ("pgbench INSERT into events tx/s", raw_events),
                ("pgbench INSERT tx/s", raw),
            ] {
                self.curves
                    .entry(curve.into())
                    .or_default()
                    .push((clients as f64, value));
            }
            let mut f = figure(&format!("appends, {clients} clients"), rate, "commands/s");
            f.baseline = Some(raw);
            f.baseline_name = "pgbench single-row INSERT into a plain table, tx/s".into();
            f.ratio = Some(rate / raw);
            if clients == 16 {
                f.target = "≥ 0.5× raw".into();
                f.met = Some(rate / raw >= 0.5);
            }
            self.figures.push(f);
            let mut f = figure(
                &format!("appends beside stock postgres-es, {clients} clients"),
                rate,
                "commands/s",
            );
            f.baseline = Some(peer);
            f.baseline_name = "stock cqrs-es + postgres-es 0.5, one event per command, commands/s".into();
            f.ratio = Some(rate / peer);
            if clients == 16 {
                f.target = "≥ 1.5× stock".into();
                f.met = Some(rate / peer >= 1.5);
            }
            self.figures.push(f);
            let mut f = figure(
                &format!("pgbench INSERT into Chronicle's events, {clients} clients"),
                raw_events,
                "tx/s",
            );
            f.baseline = Some(raw);
            f.baseline_name = "the same INSERT into a plain table, tx/s".into();
            f.ratio = Some(raw_events / raw);
            self.figures.push(f);
        }
        Ok(())
    }

    /// 2. A command's latency at several stream lengths (snapshots on).
    async fn stream_length(&mut self) -> anyhow::Result<()> {
        let t = tenant("bench-streams");
        let key = DataKey::generate(&mut OsRng);
        let commands = Commands::new(
            self.state.pool.clone(),
            SnapshotPolicy {
                conversation: Some(100),
                ..SnapshotPolicy::default()
            },
        );
        let mut latencies = Vec::new();
        for &length in &self.plan.stream_lengths.clone() {
            say(&format!("stream length {length}"));
            let contact = format!("ct_len_{length}");
            let stream = t.stream_id(&contact);
            // Build the stream in bulk from the aggregate's own decisions.
            let mut aggregate = Conversation::default();
            let mut rows: Vec<(i64, String, Value)> = Vec::new();
            let metadata = serde_json::to_value(Bench::metadata(&t).to_map())?;
            // One event short of the length, so the first command below lands on a multiple of
            // the snapshot size and writes the snapshot (cqrs-es snapshots when a commit crosses
            // one); a stream built by commands would have had one all along.
            for n in 1..length as u64 {
                let sink = cqrs_es::event_sink::EventSink::<Conversation>::default();
                cqrs_es::Aggregate::handle(&mut aggregate, Bench::message(&key, &t, &contact, n), &(), &sink)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                for event in sink.collect().await {
                    rows.push((
                        n as i64,
                        cqrs_es::DomainEvent::event_type(&event),
                        serde_json::to_value(&event)?,
                    ));
                }
                if rows.len() >= 1000 || n + 1 == length as u64 {
                    let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) ",
                    );
                    q.push_values(rows.iter(), |mut b, (seq, ty, payload)| {
                        b.push_bind("Conversation")
                            .push_bind(&stream)
                            .push_bind(*seq)
                            .push_bind(ty)
                            .push_bind("1.0")
                            .push_bind(sqlx::types::Json(payload))
                            .push_bind(sqlx::types::Json(&metadata));
                    });
                    q.build().execute(&self.owner).await?;
                    rows.clear();
                }
            }
            // The first command loads the whole stream and writes the snapshot; then measure.
            let mut next = length as u64 - 1;
            for _ in 0..2 {
                next += 1;
                commands
                    .conversation(&contact, Bench::message(&key, &t, &contact, next), &Bench::metadata(&t))
                    .await?;
            }
            let mut samples = Vec::new();
            for _ in 0..30 {
                next += 1;
                let started = Instant::now();
                commands
                    .conversation(&contact, Bench::message(&key, &t, &contact, next), &Bench::metadata(&t))
                    .await?;
                samples.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            let p50 = percentile(&sorted(samples), 50.0);
            latencies.push((length, p50));
            self.curves
                .entry("command latency ms".into())
                .or_default()
                .push((length as f64, p50));
        }
        let shortest = latencies.first().map(|l| l.1).unwrap_or(f64::NAN);
        for (length, p50) in latencies {
            let mut f = figure(&format!("command latency, stream of {length}"), p50, "ms p50");
            f.baseline = Some(shortest);
            f.baseline_name = format!("latency at {}", self.plan.stream_lengths[0]);
            f.ratio = Some(p50 / shortest);
            if Some(&length) == self.plan.stream_lengths.last() {
                f.target = "≤ 1.2× the shortest".into();
                f.met = Some(p50 / shortest <= 1.2);
            }
            self.figures.push(f);
        }
        Ok(())
    }

    async fn raw_read_seconds(&self) -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut rows = sqlx::query(
            "SELECT global_position, tx_id::text, tenant_id, aggregate_type, aggregate_id, sequence, event_type,
                    event_version, payload, metadata, recorded_at FROM events ORDER BY tx_id, global_position",
        )
        .fetch(&self.owner);
        let mut n = 0u64;
        while let Some(row) = rows.next().await {
            row?;
            n += 1;
        }
        say(&format!("raw read of {n} events"));
        Ok(started.elapsed().as_secs_f64())
    }

    /// 3 and 4. Projection catch-up from zero and `verify`, beside a raw read of the rows.
    async fn log_scans(&mut self) -> anyhow::Result<()> {
        say(&format!("bulk-loading about {} events", self.plan.events));
        let dataset = generate(42, Scale::events(self.plan.events));
        let master = settings()?.master_key;
        let mut last = Instant::now();
        chronicle_fixtures::load::bulk(&self.state.pool, &master, &dataset, |done, total| {
            if last.elapsed() > Duration::from_secs(5) {
                say(&format!("  {done} / ~{total} events"));
                last = Instant::now();
            }
        })
        .await?;
        sqlx::query("ANALYZE events").execute(&self.owner).await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.owner)
            .await?;
        let raw = self.raw_read_seconds().await?;

        // Every projection rebuilt from zero as an operator does it (`chronicle-replay
        // rebuild`): new tables beside the live ones, one read of the log for every projector,
        // compared and swapped in at the end.
        say("projection catch-up from zero (every projection rebuilt)");
        sqlx::query("DELETE FROM projector_checkpoints")
            .execute(&self.owner)
            .await?;
        let report = chronicle_projections::rebuild::rebuild(
            &self.owner,
            &projectors(&self.state),
            &chronicle_projections::rebuild::RebuildOptions::default(),
            &mut |_| {},
        )
        .await?;
        let rebuild = report.seconds;
        let mut f = figure(
            &format!("projection catch-up, {total} events"),
            total as f64 / rebuild,
            "events/s",
        );
        f.baseline = Some(total as f64 / raw);
        f.baseline_name = "raw read of the rows, events/s".into();
        f.ratio = Some(rebuild / raw);
        f.target = "time ≤ 3× raw read".into();
        f.met = Some(rebuild / raw <= 3.0);
        self.figures.push(f);
        let mut parts: Vec<(String, f64)> = vec![("reading the log".into(), report.read_seconds)];
        parts.extend(
            report
                .projectors
                .iter()
                .map(|p| (format!("the `{}` projector", p.projector), p.apply_seconds)),
        );
        let accounted: f64 = parts.iter().map(|(_, s)| s).sum();
        parts.push((
            "building, comparing and swapping the tables".into(),
            (rebuild - accounted).max(0.0),
        ));
        for (name, seconds) in parts {
            let mut f = figure(&format!("  of which {name}"), seconds, "s");
            f.baseline = Some(raw);
            f.baseline_name = "raw read, s".into();
            f.ratio = Some(seconds / raw);
            self.figures.push(f);
        }

        say("verify");
        let started = Instant::now();
        let report = chronicle_projections::chain::verify(&self.owner, None, |_| {}).await?;
        let verify = started.elapsed().as_secs_f64();
        if !report.is_intact() {
            bail!(
                "the generated log does not verify: {} broken links",
                report.broken.len()
            );
        }
        let mut f = figure(
            &format!("verify, {} events", report.events),
            report.events as f64 / verify,
            "events/s",
        );
        f.baseline = Some(total as f64 / raw);
        f.baseline_name = "raw read of the rows, events/s".into();
        f.ratio = Some(verify / raw);
        f.target = "time ≤ 2× raw read".into();
        f.met = Some(verify / raw <= 2.0);
        self.figures.push(f);
        Ok(())
    }

    /// 5. GraphQL dashboard query under load, beside the same SQL through pgbench.
    async fn graphql(&mut self, address: std::net::SocketAddr) -> anyhow::Result<()> {
        say("GraphQL under load");
        // The read models the phase before built get what autovacuum would give them in a
        // while, before the clock starts: planner statistics (without them a prepared query's
        // plan depends on whether autoanalyze happened to run yet, which moved this figure by
        // 2× between runs of one binary) and a vacuum of the two tables the query reads (hint
        // bits and the visibility map, so the first reads do not write).
        if let Err(e) = sqlx::query("ANALYZE").execute(&self.owner).await {
            say(&format!("no ANALYZE before the GraphQL phase: {e}"));
        }
        if let Err(e) = sqlx::query("VACUUM conversations, conversation_details")
            .execute(&self.owner)
            .await
        {
            say(&format!("no VACUUM before the GraphQL phase: {e}"));
        }
        // What the phases before wrote is flushed first, so that its checkpoint does not land
        // in the middle of this one and the figure does not depend on how much they wrote.
        // (CHECKPOINT needs a superuser or pg_checkpoint; without it the phase runs anyway.)
        if let Err(e) = sqlx::query("CHECKPOINT").execute(&self.owner).await {
            say(&format!("no checkpoint before the GraphQL phase: {e}"));
        }
        let tenants: Vec<String> =
            sqlx::query_scalar("SELECT tenant_id FROM tenants WHERE tenant_id NOT LIKE 'bench-%' ORDER BY 1")
                .fetch_all(&self.owner)
                .await?;
        let secret = "bench-jwt-secret-bench-jwt-secret-000";
        let tokens: Vec<String> = tenants
            .iter()
            .map(|t| mint(secret, &tenant(t), "bench", Role::Agent, chrono::Duration::hours(2)))
            .collect::<Result<_, _>>()?;
        let query = json!({"query": "{ conversations(first: 20) { edges { node { id contactName unreadCount lastMessage { text at } } } } }"});
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..self.plan.graphql_clients {
            let (stop, tokens, query) = (stop.clone(), tokens.clone(), query.clone());
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut samples = Vec::new();
                let mut n = c;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let t0 = Instant::now();
                    let ok = client
                        .post(format!("http://{address}/graphql"))
                        .bearer_auth(&tokens[n % tokens.len()])
                        .json(&query)
                        .send()
                        .await
                        .map(|r| r.status().is_success())
                        .unwrap_or(false);
                    if ok {
                        samples.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                samples
            }));
        }
        tokio::time::sleep(Duration::from_secs(self.plan.graphql_seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        for task in tasks {
            samples.extend(task.await?);
        }
        let qps = samples.len() as f64 / started.elapsed().as_secs_f64();
        let samples = sorted(samples);
        let first = tenants.first().cloned().unwrap_or_default();
        let script = format!(
            "BEGIN;\nSELECT set_config('chronicle.tenant_id', '{first}', true);\nSELECT conversation_id, contact_name, unread_count, last_message_text, last_message_at FROM conversations WHERE tenant_id = '{first}' ORDER BY last_message_at DESC NULLS LAST, conversation_id DESC LIMIT 21;\nCOMMIT;\n"
        );
        let raw = self.pgbench(&script, self.plan.graphql_clients, self.plan.graphql_seconds)?;
        let mut f = figure(
            &format!("GraphQL conversations, {} clients", self.plan.graphql_clients),
            qps,
            "queries/s",
        );
        f.baseline = Some(raw);
        f.baseline_name = "the same SQL through pgbench, tx/s".into();
        f.ratio = Some(qps / raw);
        f.target = "≥ 0.5× raw".into();
        f.met = Some(qps / raw >= 0.5);
        self.figures.push(f);
        self.figures
            .push(figure("GraphQL conversations p50", percentile(&samples, 50.0), "ms"));
        self.figures
            .push(figure("GraphQL conversations p99", percentile(&samples, 99.0), "ms"));
        Ok(())
    }

    /// 6. Subscriptions: append-to-receipt latency with many concurrent subscribers.
    async fn subscriptions(&mut self, address: std::net::SocketAddr) -> anyhow::Result<()> {
        say(&format!("{} subscribers", self.plan.subscribers));
        let t = tenant("bench-live");
        chronicle_commands::tenants::create_tenant(&self.state.pool, &t, "Bench live").await?;
        let token = mint(
            "bench-jwt-secret-bench-jwt-secret-000",
            &t,
            "bench",
            Role::Integrator,
            chrono::Duration::hours(2),
        )?;
        let expected = self.plan.subscription_events;
        let mut tasks = Vec::new();
        let ready = Arc::new(AtomicU64::new(0));
        let warmed = Arc::new(AtomicU64::new(0));
        for _ in 0..self.plan.subscribers {
            let (token, ready, warmed) = (token.clone(), ready.clone(), warmed.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let Ok(mut request) = format!("ws://{address}/graphql/ws").into_client_request() else { return latencies };
                if let Ok(v) = "graphql-transport-ws".parse() {
                    request.headers_mut().insert("sec-websocket-protocol", v);
                }
                let Ok((mut socket, _)) = tokio_tungstenite::connect_async(request).await else { return latencies };
                let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
                let _ = socket.send(Message::Text(init.to_string().into())).await;
                let _ = socket.next().await;
                let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { events { recordedAt } }"}});
                let _ = socket.send(Message::Text(sub.to_string().into())).await;
                ready.fetch_add(1, Ordering::Relaxed);
                // The warm-up event, not measured: once it arrives, this subscription has read
                // its history and is taking live events.
                loop {
                    let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(Duration::from_secs(120), socket.next()).await else {
                        return latencies;
                    };
                    let value: Value = serde_json::from_str(&text).unwrap_or_default();
                    if value["payload"]["data"]["events"]["recordedAt"].is_string() {
                        break;
                    }
                }
                warmed.fetch_add(1, Ordering::Relaxed);
                while latencies.len() < expected {
                    let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(Duration::from_secs(30), socket.next()).await else {
                        break;
                    };
                    let value: Value = serde_json::from_str(&text).unwrap_or_default();
                    if let Some(at) = value["payload"]["data"]["events"]["recordedAt"].as_str() {
                        if let Ok(at) = chrono::DateTime::parse_from_rfc3339(at) {
                            let ms = (Utc::now() - at.with_timezone(&Utc)).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                            latencies.push(ms);
                        }
                    }
                }
                latencies
            }));
        }
        while ready.load(Ordering::Relaxed) < self.plan.subscribers as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let key = DataKey::generate(&mut OsRng);
        // Measure only once every subscription is established: append one warm-up event and
        // wait until every subscriber has it (so each has read its history and is live), and
        // until the server's live tail delivers it.
        let warm_up = "ct_live_warm_up";
        let started = Instant::now();
        self.state
            .commands
            .conversation(warm_up, Bench::message(&key, &t, warm_up, 0), &Bench::metadata(&t))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while warmed.load(Ordering::Relaxed) < self.plan.subscribers as u64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        say(&format!(
            "{} of {} subscribers live after {:.0} ms",
            warmed.load(Ordering::Relaxed),
            self.plan.subscribers,
            started.elapsed().as_secs_f64() * 1000.0
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        for n in 0..expected as u64 {
            let contact = format!("ct_live_{n}");
            self.state
                .commands
                .conversation(&contact, Bench::message(&key, &t, &contact, n), &Bench::metadata(&t))
                .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await?);
        }
        let all = sorted(all);
        let received = all.len();
        let mut p99 = figure(
            &format!(
                "subscription append-to-receipt p99, {} subscribers",
                self.plan.subscribers
            ),
            percentile(&all, 99.0),
            "ms",
        );
        p99.target = "≤ 50 ms".into();
        p99.met = Some(percentile(&all, 99.0) <= 50.0);
        self.figures.push(figure(
            &format!(
                "subscription append-to-receipt p50, {} subscribers",
                self.plan.subscribers
            ),
            percentile(&all, 50.0),
            "ms",
        ));
        self.figures.push(p99);
        self.figures.push(figure(
            "subscription events received",
            received as f64,
            &format!("of {}", expected * self.plan.subscribers),
        ));
        Ok(())
    }

    /// 7. The server's resident size, idle and under load (the real `chronicle` binary).
    async fn memory(&mut self) -> anyhow::Result<()> {
        let exe = std::env::current_exe()?.with_file_name("chronicle");
        if !exe.exists() {
            bail!(
                "{} not found: build it first (cargo build -p chronicle-api --bin chronicle)",
                exe.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = Process::new(&exe)
            .arg("serve")
            .env("DATABASE_URL", self.bench_url())
            .env_remove("REDIS_URL")
            .env("CHRONICLE_BIND", format!("127.0.0.1:{port}"))
            .env("CHRONICLE_JWT_SECRET", "bench-jwt-secret-bench-jwt-secret-000")
            .env("CHRONICLE_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            .env("WHATSAPP_APP_SECRET", "bench")
            .env("WHATSAPP_VERIFY_TOKEN", "bench")
            .env("WHATSAPP_ACCESS_TOKEN", "bench")
            .env("TWILIO_AUTH_TOKEN", "bench")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let rss = |pid: u32| -> f64 {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
                .map(|kb| kb / 1024.0)
                .unwrap_or(f64::NAN)
        };
        let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !reqwest::get(format!("http://{address}/health"))
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
        {
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the server did not start");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = rss(child.id());
        let pid = child.id();
        let peak = Arc::new(std::sync::Mutex::new(idle));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    let now = rss(pid);
                    if let Ok(mut p) = peak.lock() {
                        if now > *p {
                            *p = now;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let before = self.figures.len();
        self.graphql(address).await?;
        self.figures.truncate(before);
        sampler.abort();
        let _ = child.kill();
        let _ = child.wait();
        let mut f = figure("server resident size, idle", idle, "MB");
        f.target = "≤ 50 MB".into();
        f.met = Some(idle <= 50.0);
        self.figures.push(f);
        let loaded = peak.lock().map(|p| *p).unwrap_or(f64::NAN);
        self.figures
            .push(figure("server resident size, under GraphQL load (peak)", loaded, "MB"));
        Ok(())
    }

    fn write(&self, out: &Path, elapsed: Duration) -> anyhow::Result<()> {
        std::fs::create_dir_all(out)?;
        let json = json!({"scale": self.plan, "figures": self.figures, "curves": self.curves,
                          "elapsed_seconds": elapsed.as_secs(), "durability": self.durability, "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)}});
        std::fs::write(out.join("results.json"), serde_json::to_vec_pretty(&json)?)?;
        let mut md = format!(
            "Scale `{}` ({} events), {} cores, {} s in all, PostgreSQL with {}. Each figure beside a baseline measured in the same run on the same PostgreSQL.\n\n| figure | value | baseline | ratio | target | met |\n|---|---|---|---|---|---|\n",
            self.plan.name,
            self.plan.events,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            elapsed.as_secs(),
            self.durability
        );
        for f in &self.figures {
            md.push_str(&format!(
                "| {} | {:.1} {} | {} | {} | {} | {} |\n",
                f.name,
                f.value,
                f.unit,
                f.baseline
                    .map(|b| format!("{b:.1} ({})", f.baseline_name))
                    .unwrap_or_default(),
                f.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
                f.target,
                match f.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                }
            ));
        }
        std::fs::write(out.join("results.md"), md)?;
        std::fs::write(out.join("appends.svg"), svg(&self.curves))?;
        Ok(())
    }
}

/// A small line chart of the append curves (clients on x, rate on y).
fn svg(curves: &BTreeMap<String, Vec<(f64, f64)>>) -> String {
    let series: Vec<(&String, &Vec<(f64, f64)>)> = curves.iter().filter(|(k, _)| !k.contains("latency")).collect();
    let max_y = series
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(1.0_f64, f64::max);
    let max_x = series
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.0))
        .fold(1.0_f64, f64::max);
    let (w, h, pad) = (640.0, 360.0, 50.0);
    let x = |v: f64| pad + (v.max(1.0).log2() / max_x.max(2.0).log2()) * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v / max_y * (h - 2.0 * pad);
    let colors = ["#1f77b4", "#d62728", "#2ca02c"];
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>"
    );
    out.push_str(&format!(
        "<line x1='{pad}' y1='{}' x2='{}' y2='{}' stroke='black'/>",
        h - pad,
        w - pad,
        h - pad
    ));
    out.push_str(&format!(
        "<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{}' stroke='black'/>",
        h - pad
    ));
    out.push_str(&format!(
        "<text x='{}' y='{}'>clients (log2)</text><text x='5' y='20'>per second (max {max_y:.0})</text>",
        w / 2.0,
        h - 10.0
    ));
    for (i, (name, points)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(px, py)| format!("{:.1},{:.1}", x(*px), y(*py)))
            .collect();
        out.push_str(&format!(
            "<polyline fill='none' stroke='{color}' stroke-width='2' points='{}'/>",
            path.join(" ")
        ));
        for (px, py) in points.iter() {
            out.push_str(&format!(
                "<circle cx='{:.1}' cy='{:.1}' r='3' fill='{color}'/><text x='{:.1}' y='{:.1}'>{px}</text>",
                x(*px),
                y(*py),
                x(*px),
                h - pad + 15.0
            ));
        }
        out.push_str(&format!(
            "<text x='{}' y='{}' fill='{color}'>{name}</text>",
            w - 230.0,
            pad + 15.0 * i as f64
        ));
    }
    out.push_str("</svg>");
    out
}

/// Runs `work(client, n)` from `clients` tasks for `seconds` and returns the successes per
/// second.
async fn drive<F, Fut>(clients: usize, seconds: u64, work: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (work, done, stop) = (work.clone(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if work(c, n).await {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The peer: stock cqrs-es + postgres-es 0.5 as their documentation sets them up (the
/// library's own `events` and `snapshots` tables from postgres-es's `db/init.sql`, in a
/// database of their own on the same server, `postgres_cqrs` with its default pool of 10), doing
/// one-event commands on fresh streams with the same payload as Chronicle's.
#[derive(Clone)]
struct StockPeer {
    cqrs: Arc<postgres_es::PostgresCqrs<StockStream>>,
}

impl StockPeer {
    async fn new(admin_url: &str) -> anyhow::Result<StockPeer> {
        let admin = PgConnectOptions::from_str(admin_url)?;
        let mut conn = PgConnection::connect_with(&admin).await?;
        sqlx::query("DROP DATABASE IF EXISTS chronicle_bench_stock WITH (FORCE)")
            .execute(&mut conn)
            .await?;
        sqlx::query("CREATE DATABASE chronicle_bench_stock")
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let pool = PgPool::connect_with(admin.database("chronicle_bench_stock")).await?;
        sqlx::raw_sql(
            "CREATE TABLE events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
               sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL, \
               event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL, \
               PRIMARY KEY (aggregate_type, aggregate_id, sequence)); \
             CREATE TABLE snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
               last_sequence bigint CHECK (last_sequence >= 0) NOT NULL, \
               current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL, payload json NOT NULL, \
               PRIMARY KEY (aggregate_type, aggregate_id, last_sequence));",
        )
        .execute(&pool)
        .await?;
        pool.close().await;
        let url = {
            let mut url = admin_url.to_owned();
            if let Some(slash) = url.rfind('/') {
                url.truncate(slash + 1);
            }
            url.push_str("chronicle_bench_stock");
            url
        };
        let pool = postgres_es::default_postgress_pool(&url).await;
        Ok(StockPeer {
            cqrs: Arc::new(postgres_es::postgres_cqrs(pool, vec![], ())),
        })
    }

    async fn command(&self, stream: &str, payload: Value) -> bool {
        let metadata = std::collections::HashMap::from([
            ("tenant_id".to_owned(), "bench-stock".to_owned()),
            ("actor".to_owned(), "system:bench".to_owned()),
            ("correlation_id".to_owned(), "bench".to_owned()),
            ("causation_id".to_owned(), "bench".to_owned()),
        ]);
        self.cqrs.execute_with_metadata(stream, payload, metadata).await.is_ok()
    }
}

/// The peer's aggregate: every command is one event carrying the command's payload.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct StockStream {
    events: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
struct StockEvent {
    body: Value,
}

impl cqrs_es::DomainEvent for StockEvent {
    fn event_type(&self) -> String {
        "MessageReceived".into()
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

impl cqrs_es::Aggregate for StockStream {
    const TYPE: &'static str = "StockStream";
    type Command = Value;
    type Event = StockEvent;
    type Error = Never;
    type Services = ();

    async fn handle(
        &mut self,
        command: Value,
        _services: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Never> {
        sink.write(StockEvent { body: command }, self).await;
        Ok(())
    }

    fn apply(&mut self, _event: StockEvent) {
        self.events += 1;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut scale = "full".to_string();
    let mut out = PathBuf::from("bench-results");
    let mut only: Option<String> = None;
    let mut events: Option<usize> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--scale" => scale = args.next().context("--scale needs smoke or full")?,
            "--out" => out = PathBuf::from(args.next().context("--out needs a directory")?),
            "--events" => events = Some(args.next().context("--events needs a number")?.parse::<usize>()?),
            "--only" => {
                only = Some(
                    args.next()
                        .context("--only needs appends, streams, scans, graphql, subscriptions or memory")?,
                )
            }
            "-h" | "--help" => {
                println!("chronicle-bench [--scale smoke|full] [--out DIR] [--only appends|streams|scans|graphql|subscriptions|memory] [--events N]\n\nMeasures appends, stream length, projection catch-up, verify, GraphQL, subscriptions and memory, each beside a baseline from the same run. Needs DATABASE_URL and pgbench.");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    let mut plan = Plan::of(&scale)?;
    if let Some(events) = events {
        plan.events = events;
    }
    let started = Instant::now();
    let mut bench = Bench::new(plan).await?;
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if run("appends") {
        bench.appends().await?;
    }
    if run("streams") {
        bench.stream_length().await?;
    }
    if run("scans") || run("graphql") || run("memory") {
        bench.log_scans().await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = router(bench.state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    if run("graphql") {
        bench.graphql(address).await?;
    }
    if run("subscriptions") {
        bench.subscriptions(address).await?;
    }
    if run("memory") {
        bench.memory().await?;
    }
    bench.write(&out, started.elapsed())?;
    println!("{}", std::fs::read_to_string(out.join("results.md"))?);
    Ok(())
}
