//! Agent performance from end to end: a seeded, deterministic data set driven through the real
//! paths (signed WhatsApp deliveries with provider timestamps for inbound messages, the command
//! dispatcher for assignments, replies and status moves with their business times), projected,
//! and read through `agentPerformance`; the test computes the same figures independently from
//! the `events` table and they must be equal, for several periods. Plus roles, idempotency and
//! a rebuild from zero.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chronicle_api::app::projectors;
use chronicle_api::auth::{mint, Role};
use chronicle_commands::keystore::KeyStore;
use chronicle_domain::conversation::{Consent, ConversationCommand, ConversationStatus, OutboundBody, OutboundRequest};
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_projections::runtime::{ProjectorRunner, RunnerConfig};
use chronicle_tests::error_code as code;
use chronicle_tests::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::OsRng;
use serde_json::{json, Value};
use sqlx::PgPool;

const AGENTS: [&str; 3] = ["agent-ana", "agent-ben", "agent-cy"];
const ADMIN: &str = "admin-1";
const TENANTS: [(&str, &str); 2] = [("acme", "5550001"), ("bolt", "5550002")];

/// splitmix64: a small deterministic generator, so the data set is the same on every run.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo) as u64) as i64
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 1, 8, 0, 0).single().unwrap_or_default()
}

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, d, 0, 0, 0).single().unwrap_or_default()
}

fn metadata(tenant_id: &str, actor: &str) -> CommandMetadata {
    match actor.strip_prefix("system:") {
        Some(component) => CommandMetadata {
            actor: Actor::System {
                component: component.into(),
            },
            ..chronicle_tests::system_metadata(tenant_id)
        },
        None => chronicle_tests::user_metadata(tenant_id, actor, "agent"),
    }
}

/// Drives one tenant's conversations: the generator's state and the app's paths.
struct Driver<'a> {
    app: &'a TestApp,
    keys: KeyStore,
    tenant_id: &'static str,
    number: &'static str,
    message_no: u32,
    send_no: u32,
}

impl Driver<'_> {
    /// A customer's text, as a signed WhatsApp delivery with the provider's timestamp.
    async fn inbound(&mut self, phone: &str, at: DateTime<Utc>) {
        self.message_no += 1;
        let body = delivery(
            self.number,
            &[(phone, "Customer")],
            vec![text_message(
                phone,
                &wamid(phone, self.message_no),
                at.timestamp(),
                "Do you install on Saturdays?",
            )],
            vec![],
        );
        let (status, reply) = self.app.post_delivery(&body).await;
        assert_eq!(status, axum::http::StatusCode::OK, "{reply}");
        self.app.drain().await;
    }

    async fn run(&self, conversation: &str, command: ConversationCommand, actor: &str) {
        self.app
            .state
            .commands
            .conversation(conversation, command, &metadata(self.tenant_id, actor))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// A reply queued by `by` at `at`: free-form text, or an approved template.
    async fn reply(&mut self, conversation: &str, by: &str, at: DateTime<Utc>, template: bool) {
        self.send_no += 1;
        let tenant = tenant(self.tenant_id);
        let key = self
            .keys
            .key_for(&tenant, conversation)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let body = if template {
            OutboundBody::Template {
                name: "kit_follow_up".into(),
                language: "en".into(),
                parameters: key.seal(&tenant, conversation, "[\"Tendai\"]", &mut OsRng),
                header: None,
            }
        } else {
            OutboundBody::FreeForm {
                text: key.seal(&tenant, conversation, "Yes, we do.", &mut OsRng),
            }
        };
        let command = ConversationCommand::QueueOutboundMessage(OutboundRequest {
            idempotency_key: format!("send-{}", self.send_no),
            body,
            requested_by: by.into(),
            consent: Consent::Unknown,
            opt_out_confirmation: false,
            template_approved: true,
            at,
        });
        self.run(conversation, command, by).await;
    }

    async fn assign(&self, conversation: &str, agent: Option<&str>, at: DateTime<Utc>) {
        let command = ConversationCommand::Assign {
            agent_id: agent.map(str::to_string),
            by: ADMIN.into(),
            at,
        };
        self.run(conversation, command, ADMIN).await;
    }

    async fn status(&self, conversation: &str, status: ConversationStatus, by: &str, at: DateTime<Utc>) {
        self.run(
            conversation,
            ConversationCommand::SetStatus {
                status,
                by: by.into(),
                at,
            },
            by,
        )
        .await;
    }

    async fn conversation_of_latest_message(&self) -> String {
        let stream: String = sqlx::query_scalar(
            "SELECT aggregate_id FROM events WHERE tenant_id = $1 AND event_type = 'MessageReceived'
              ORDER BY global_position DESC LIMIT 1",
        )
        .bind(self.tenant_id)
        .fetch_one(&self.app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        stream
            .strip_prefix(&format!("{}:", self.tenant_id))
            .unwrap_or(&stream)
            .to_string()
    }
}

/// Generates the data set: per tenant, several conversations, each with one to three episodes
/// of inbound messages, automatic replies (which are no agent's), assignments, re-assignments and
/// unassignments, agents' replies (text and templates), resolutions by assignees, by others and
/// by admins, agents reopening without a customer message, and episodes left unresolved; spread
/// over the first week of September 2026.
async fn generate(app: &TestApp, seed: u64) {
    let mut rng = Seeded(seed);
    for (t, (tenant_id, number)) in TENANTS.into_iter().enumerate() {
        app.tenant_with_number(tenant_id, number).await;
        let mut driver = Driver {
            app,
            keys: app.keys(),
            tenant_id,
            number,
            message_no: 0,
            send_no: 0,
        };
        for c in 0..8 {
            let phone = format!("2637710{t}{c:04}");
            let mut start = base_time() + Duration::seconds(rng.range(0, 5 * 86_400));
            let mut conversation = String::new();
            let mut assignee: Option<&str> = None;
            for _episode in 0..rng.range(1, 4) {
                let s = |secs: i64| start + Duration::seconds(secs);
                driver.inbound(&phone, start).await;
                if conversation.is_empty() {
                    conversation = driver.conversation_of_latest_message().await;
                }
                let conv = conversation.as_str();
                if rng.chance(30) {
                    driver.reply(conv, "system:auto_reply", s(rng.range(1, 30)), true).await;
                }
                if rng.chance(75) {
                    let agent = rng.pick(&AGENTS);
                    driver.assign(conv, Some(agent), s(rng.range(30, 600))).await;
                    assignee = Some(agent);
                }
                if rng.chance(40) {
                    driver.inbound(&phone, s(rng.range(600, 900))).await;
                }
                if rng.chance(85) {
                    let by = match assignee {
                        Some(a) if rng.chance(70) => a,
                        _ => rng.pick(&AGENTS),
                    };
                    let at = rng.range(900, 5_400);
                    let template = rng.chance(30);
                    driver.reply(conv, by, s(at), template).await;
                    if rng.chance(40) {
                        driver
                            .reply(conv, rng.pick(&AGENTS), s(at + rng.range(60, 600)), false)
                            .await;
                    }
                }
                if rng.chance(20) {
                    driver.assign(conv, None, s(rng.range(6_000, 6_900))).await;
                    assignee = None;
                } else if rng.chance(25) {
                    let agent = rng.pick(&AGENTS);
                    driver.assign(conv, Some(agent), s(rng.range(6_000, 6_900))).await;
                    assignee = Some(agent);
                }
                let mut last = 7_000;
                if rng.chance(80) {
                    let by = if rng.chance(25) { ADMIN } else { rng.pick(&AGENTS) };
                    last = rng.range(7_000, 80_000);
                    driver.status(conv, ConversationStatus::Resolved, by, s(last)).await;
                    if rng.chance(25) {
                        last += rng.range(60, 600);
                        driver
                            .status(conv, ConversationStatus::Open, rng.pick(&AGENTS), s(last))
                            .await;
                    }
                }
                start = s(last + rng.range(3_600, 2 * 86_400));
            }
        }
    }
    app.project().await;
}

/// One agent's figures, as compared: (agent, handled, resolved, response count, average,
/// median, resolution count, average, median).
type Figures = (
    String,
    i64,
    i64,
    i64,
    Option<f64>,
    Option<f64>,
    i64,
    Option<f64>,
    Option<f64>,
);

#[derive(Default)]
struct Episode {
    started_at: Option<DateTime<Utc>>,
    first_response: Option<(DateTime<Utc>, String)>,
    resolution: Option<(DateTime<Utc>, String)>,
    /// Who moved the conversation to resolved.
    resolver: Option<String>,
}

/// The tenant's facts, computed from the `events` table alone.
#[derive(Default)]
struct Facts {
    episodes: Vec<Episode>,
    /// (conversation, agent, at)
    assignments: Vec<(String, String, DateTime<Utc>)>,
    /// Conversation of each episode.
    episode_conversation: Vec<String>,
    /// Outbound messages queued by automations inside an episode (no agent's response).
    automatic_replies: usize,
}

fn time(payload: &Value, field: &str) -> DateTime<Utc> {
    serde_json::from_value(payload[field].clone()).unwrap_or_else(|e| panic!("{field}: {e}"))
}

fn text(payload: &Value, field: &str) -> String {
    payload[field].as_str().unwrap_or_default().to_string()
}

async fn facts_from_events(app: &TestApp, tenant_id: &str) -> Facts {
    let rows: Vec<(String, String, Value)> = sqlx::query_as(
        "SELECT aggregate_id, event_type, payload FROM events
          WHERE tenant_id = $1 AND aggregate_type = 'Conversation' ORDER BY global_position",
    )
    .bind(tenant_id)
    .fetch_all(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut facts = Facts::default();
    // Per conversation: the index of its open episode, and its assignee.
    let mut open: HashMap<String, Option<usize>> = HashMap::new();
    let mut assignee: HashMap<String, Option<String>> = HashMap::new();
    for (conversation, event_type, payload) in rows {
        let p = &payload[&event_type];
        let current = open.entry(conversation.clone()).or_default();
        match event_type.as_str() {
            "MessageReceived" if current.is_none() => {
                facts.episodes.push(Episode {
                    started_at: Some(time(p, "sent_at")),
                    ..Episode::default()
                });
                facts.episode_conversation.push(conversation.clone());
                *current = Some(facts.episodes.len() - 1);
            }
            "OutboundMessageQueued" => {
                let by = text(p, "requested_by");
                let person = !by.starts_with("system:") && !by.starts_with("api_key:");
                if current.is_some() && !person {
                    facts.automatic_replies += 1;
                }
                if let (Some(i), true) = (*current, person) {
                    let episode = &mut facts.episodes[i];
                    if episode.first_response.is_none() {
                        episode.first_response = Some((time(p, "at"), by));
                    }
                }
            }
            "ConversationStatusChanged" if text(p, "to") == "resolved" => {
                if let Some(i) = current.take() {
                    let agent = assignee
                        .get(&conversation)
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| text(p, "by"));
                    facts.episodes[i].resolution = Some((time(p, "at"), agent));
                    facts.episodes[i].resolver = Some(text(p, "by"));
                }
            }
            "ConversationAssigned" => {
                let agent = text(p, "agent_id");
                facts
                    .assignments
                    .push((conversation.clone(), agent.clone(), time(p, "at")));
                assignee.insert(conversation.clone(), Some(agent));
            }
            "ConversationUnassigned" => {
                assignee.insert(conversation.clone(), None);
            }
            _ => {}
        }
    }
    facts
}

/// Count, average and median of durations given in microseconds, as seconds.
fn average_and_median(mut micros: Vec<i64>) -> (i64, Option<f64>, Option<f64>) {
    if micros.is_empty() {
        return (0, None, None);
    }
    micros.sort_unstable();
    let seconds: Vec<f64> = micros.iter().map(|m| *m as f64 / 1e6).collect();
    let n = seconds.len();
    let average = seconds.iter().sum::<f64>() / n as f64;
    let median = if n % 2 == 1 {
        seconds[n / 2]
    } else {
        seconds[n / 2 - 1] + (seconds[n / 2] - seconds[n / 2 - 1]) / 2.0
    };
    (n as i64, Some(average), Some(median))
}

/// Microseconds from `from` to `to`, zero when `to` is earlier.
fn micros(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_microseconds().unwrap_or_default().max(0)
}

/// The figures of a period, by agent, computed from the facts.
fn expected(facts: &Facts, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Figures> {
    let within = |at: DateTime<Utc>| at >= from && at < to;
    let mut handled: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut responses: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut resolutions: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (conversation, agent, at) in &facts.assignments {
        if within(*at) {
            handled.entry(agent.clone()).or_default().insert(conversation.clone());
        }
    }
    for (episode, conversation) in facts.episodes.iter().zip(&facts.episode_conversation) {
        let started = episode.started_at.unwrap_or_default();
        if let Some((at, by)) = &episode.first_response {
            if within(*at) {
                responses.entry(by.clone()).or_default().push(micros(started, *at));
            }
        }
        if let Some((at, agent)) = &episode.resolution {
            if within(*at) {
                resolutions.entry(agent.clone()).or_default().push(micros(started, *at));
                handled.entry(agent.clone()).or_default().insert(conversation.clone());
            }
        }
    }
    let agents: BTreeSet<String> = handled.keys().chain(responses.keys()).cloned().collect();
    agents
        .into_iter()
        .map(|agent| {
            let (fr_n, fr_avg, fr_med) = average_and_median(responses.get(&agent).cloned().unwrap_or_default());
            let (rs_n, rs_avg, rs_med) = average_and_median(resolutions.get(&agent).cloned().unwrap_or_default());
            let n_handled = handled.get(&agent).map_or(0, |s| s.len() as i64);
            (agent, n_handled, rs_n, fr_n, fr_avg, fr_med, rs_n, rs_avg, rs_med)
        })
        .collect()
}

const PERFORMANCE: &str = "query($from: DateTime!, $to: DateTime!) {
  agentPerformance(from: $from, to: $to) {
    agentId conversationsHandled conversationsResolved
    firstResponseSeconds { count average median }
    resolutionSeconds { count average median }
  }
}";

fn token_for(tenant_id: &str, user_id: &str, role: Role) -> String {
    mint(JWT_SECRET, &tenant(tenant_id), user_id, role, Duration::hours(1)).unwrap_or_else(|e| panic!("{e}"))
}

async fn answer(app: &TestApp, token: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Value {
    let (_, reply) = app
        .graphql(Some(token), PERFORMANCE, json!({"from": from, "to": to}))
        .await;
    reply
}

async fn figures(app: &TestApp, token: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Figures> {
    let reply = answer(app, token, from, to).await;
    assert!(reply["errors"].is_null(), "{reply}");
    let rows = reply["data"]["agentPerformance"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    rows.iter()
        .map(|r| {
            let (fr, rs) = (&r["firstResponseSeconds"], &r["resolutionSeconds"]);
            (
                r["agentId"].as_str().unwrap_or_default().to_string(),
                r["conversationsHandled"].as_i64().unwrap_or(-1),
                r["conversationsResolved"].as_i64().unwrap_or(-1),
                fr["count"].as_i64().unwrap_or(-1),
                fr["average"].as_f64(),
                fr["median"].as_f64(),
                rs["count"].as_i64().unwrap_or(-1),
                rs["average"].as_f64(),
                rs["median"].as_f64(),
            )
        })
        .collect()
}

/// The periods compared: two halves of the generated week and all of it.
fn periods() -> [(DateTime<Utc>, DateTime<Utc>); 3] {
    [(day(1), day(4)), (day(4), day(15)), (day(1), day(30))]
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn agent_performance_for_a_generated_data_set_equals_the_figures_computed_from_the_events(pool: PgPool) {
    let app = TestApp::new(pool).await;
    generate(&app, 20_261_122).await;
    for (tenant_id, _) in TENANTS {
        let facts = facts_from_events(&app, tenant_id).await;
        // The data set exercises what the rules are about.
        let conversations: BTreeSet<&String> = facts.episode_conversation.iter().collect();
        assert_eq!(conversations.len(), 8, "{tenant_id}");
        assert!(facts.episodes.len() > 8, "{tenant_id}: some conversations reopened");
        assert!(
            facts.episodes.iter().any(|e| e.resolution.is_none()),
            "{tenant_id}: an unresolved episode"
        );
        assert!(facts.automatic_replies > 0, "{tenant_id}: automatic replies");
        let resolved: Vec<(&String, &String)> = facts
            .episodes
            .iter()
            .filter_map(|e| Some((&e.resolution.as_ref()?.1, e.resolver.as_ref()?)))
            .collect();
        assert!(
            resolved.iter().any(|(agent, resolver)| agent != resolver),
            "{tenant_id}: a resolution attributed to the assignee, not the resolver"
        );
        assert!(
            resolved.iter().any(|(agent, _)| agent.as_str() == ADMIN),
            "{tenant_id}: an unassigned conversation resolved by an admin"
        );
        let token = token_for(tenant_id, "owner-1", Role::Owner);
        let mut agents_seen = BTreeSet::new();
        for (from, to) in periods() {
            let want = expected(&facts, from, to);
            assert!(want.len() >= 2, "{tenant_id} {from}..{to}: several agents: {want:?}");
            agents_seen.extend(want.iter().map(|f| f.0.clone()));
            let got = figures(&app, &token, from, to).await;
            assert_eq!(got, want, "{tenant_id} {from}..{to}");
        }
        assert!(agents_seen.len() >= 3, "{tenant_id}: {agents_seen:?}");
        // Automatic replies are no agent's: no row names them.
        assert!(!agents_seen.iter().any(|a| a.starts_with("system:")), "{agents_seen:?}");
    }
    // The periods split the week: the halves' resolutions add up to the whole.
    let token = token_for("acme", "owner-1", Role::Owner);
    let count = |rows: &[Figures]| rows.iter().map(|r| r.2).sum::<i64>();
    let [first, second, all] = periods();
    let (a, b, whole) = (
        figures(&app, &token, first.0, first.1).await,
        figures(&app, &token, second.0, second.1).await,
        figures(&app, &token, all.0, all.1).await,
    );
    assert_eq!(count(&a) + count(&b), count(&whole));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_agent_sees_only_their_own_row_and_a_technician_is_forbidden(pool: PgPool) {
    let app = TestApp::new(pool).await;
    generate(&app, 7).await;
    let (from, to) = (day(1), day(30));
    let everyone = figures(&app, &token_for("acme", "owner-1", Role::Owner), from, to).await;
    assert!(everyone.len() >= 2, "{everyone:?}");
    for role in [Role::Admin, Role::Auditor] {
        assert_eq!(
            figures(&app, &token_for("acme", "someone", role), from, to).await,
            everyone
        );
    }
    let ana = figures(&app, &token_for("acme", "agent-ana", Role::Agent), from, to).await;
    let want: Vec<Figures> = everyone.iter().filter(|f| f.0 == "agent-ana").cloned().collect();
    assert_eq!(ana, want);
    assert_eq!(ana.len(), 1, "{everyone:?}");
    // An agent with no figures sees nothing, not their colleagues.
    assert!(figures(&app, &token_for("acme", "agent-new", Role::Agent), from, to)
        .await
        .is_empty());
    for role in [Role::Technician, Role::Finance, Role::Integrator] {
        let reply = answer(&app, &token_for("acme", "someone", role), from, to).await;
        assert_eq!(code(&reply), "FORBIDDEN", "{role:?}: {reply}");
        assert!(
            reply["data"].is_null() || reply["data"]["agentPerformance"].is_null(),
            "{reply}"
        );
    }
    let (status, reply) = app.graphql(None, PERFORMANCE, json!({"from": from, "to": to})).await;
    assert_eq!(status, axum::http::StatusCode::UNAUTHORIZED, "{reply}");
    // A period that ends before it starts is refused.
    let reply = answer(&app, &token_for("acme", "owner-1", Role::Owner), to, from).await;
    assert_eq!(code(&reply), "BAD_PERIOD", "{reply}");
    // Another tenant's owner sees their own agents only: none of acme's conversations.
    let bolt = figures(&app, &token_for("bolt", "owner-1", Role::Owner), from, to).await;
    let bolt_facts = facts_from_events(&app, "bolt").await;
    assert_eq!(bolt, expected(&bolt_facts, from, to));

    // Row-level security: the application role sees one tenant's rows, and none unscoped.
    for table in [
        "agent_conversation_episodes",
        "agent_assignments",
        "agent_conversation_state",
    ] {
        let mut tx = app.state.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
        let unscoped: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        chronicle_projections::conversations::for_tenant(&mut tx, &tenant("acme"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (acme, others): (i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*) FILTER (WHERE tenant_id = 'acme'), count(*) FILTER (WHERE tenant_id <> 'acme') FROM {table}"
        ))
        .fetch_one(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((unscoped, others), (0, 0), "{table}");
        assert!(acme > 0, "{table}");
    }
}

async fn agent_rows(app: &TestApp) -> Value {
    sqlx::query_scalar(
        "SELECT jsonb_build_object(
           'state', (SELECT jsonb_agg(to_jsonb(s) ORDER BY s.tenant_id, s.conversation_id) FROM agent_conversation_state s),
           'episodes', (SELECT jsonb_agg(to_jsonb(e) ORDER BY e.tenant_id, e.conversation_id, e.episode)
                          FROM agent_conversation_episodes e),
           'assignments', (SELECT jsonb_agg(to_jsonb(a) ORDER BY a.tenant_id, a.position) FROM agent_assignments a))",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn events_applied_twice_and_a_rebuild_from_zero_leave_the_same_rows(pool: PgPool) {
    let app = TestApp::new(pool).await;
    generate(&app, 42).await;
    let projected = agent_rows(&app).await;
    assert!(
        projected["episodes"].as_array().is_some_and(|e| e.len() > 12),
        "{projected}"
    );

    // Every event applied a second time (the checkpoint forgotten, the rows kept) changes nothing.
    sqlx::query(
        "UPDATE projector_checkpoints SET last_tx_id = '0'::xid8, last_position = 0 WHERE projector = 'agent_performance'",
    )
    .execute(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    assert_eq!(agent_rows(&app).await, projected);

    // A rebuild from zero gives the same rows.
    for projector in projectors(&app.state) {
        if projector.name() != "agent_performance" {
            continue;
        }
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
    assert_eq!(agent_rows(&app).await, projected);
}

/// Whether two sets of figures agree, durations to a microsecond (times from the clock have
/// microseconds, which floating point sums in any order).
fn close(got: &[Figures], want: &[Figures]) -> bool {
    let near = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6,
        (a, b) => a == b,
    };
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            (&g.0, g.1, g.2, g.3, g.6) == (&w.0, w.1, w.2, w.3, w.6)
                && near(g.4, w.4)
                && near(g.5, w.5)
                && near(g.7, w.7)
                && near(g.8, w.8)
        })
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn figures_of_conversations_worked_through_the_graphql_mutations_equal_those_computed_from_the_events(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let number = "5550009";
    app.tenant_with_number("acme", number).await;
    let (customer, now) = ("263771009999", Utc::now());
    let hello = |n: u32, at: DateTime<Utc>| {
        delivery(
            number,
            &[(customer, "Rudo")],
            vec![text_message(customer, &wamid(customer, n), at.timestamp(), "Hello?")],
            vec![],
        )
    };
    let (status, reply) = app.post_delivery(&hello(1, now - Duration::minutes(30))).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{reply}");
    app.drain().await;
    let id: String = sqlx::query_scalar("SELECT contact_id FROM contact_keys WHERE tenant_id = 'acme'")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let owner = token_for("acme", "owner-1", Role::Owner);
    // Ana and Ben are users of the tenant: work is assigned to users only.
    let (ana_id, ben_id) = (app.user("acme", Role::Agent).await, app.user("acme", Role::Agent).await);
    let (ana, ben) = (
        token_for("acme", &ana_id, Role::Agent),
        token_for("acme", &ben_id, Role::Agent),
    );
    let mutate = |token: String, mutation: &'static str| {
        let id = id.clone();
        let app = &app;
        async move {
            let (_, reply) = app.graphql(Some(&token), mutation, json!({"id": id})).await;
            assert!(reply["errors"].is_null(), "{mutation}: {reply}");
        }
    };
    // Episode 1: assigned to Ana, answered by Ben, resolved by Ben (Ana's resolution).
    let (_, assigned) = app
        .graphql(
            Some(&owner),
            "mutation($id: String!, $agent: String) { assignConversation(conversationId: $id, agentId: $agent) { position } }",
            json!({"id": id, "agent": ana_id}),
        )
        .await;
    assert!(assigned["errors"].is_null(), "{assigned}");
    mutate(
        ben.clone(),
        "mutation($id: String!) { sendMessage(conversationId: $id, text: \"On it\", idempotencyKey: \"r1\") { position } }",
    )
    .await;
    mutate(
        ben.clone(),
        "mutation($id: String!) { setConversationStatus(conversationId: $id, status: RESOLVED) { position } }",
    )
    .await;
    // Episode 2: the customer writes again; unassigned, answered and resolved by Ana.
    let (status, reply) = app.post_delivery(&hello(2, Utc::now() - Duration::seconds(5))).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{reply}");
    app.drain().await;
    mutate(
        owner.clone(),
        "mutation($id: String!) { assignConversation(conversationId: $id, agentId: null) { position } }",
    )
    .await;
    mutate(
        ana.clone(),
        "mutation($id: String!) { sendMessage(conversationId: $id, text: \"Again?\", idempotencyKey: \"r2\") { position } }",
    )
    .await;
    mutate(
        ana.clone(),
        "mutation($id: String!) { setConversationStatus(conversationId: $id, status: RESOLVED) { position } }",
    )
    .await;
    app.project().await;

    let (from, to) = (now - Duration::hours(1), Utc::now() + Duration::hours(1));
    let facts = facts_from_events(&app, "acme").await;
    assert_eq!(facts.episodes.len(), 2);
    let want = expected(&facts, from, to);
    let got = figures(&app, &owner, from, to).await;
    assert!(close(&got, &want), "{got:?} != {want:?}");
    let by_agent: Vec<(&str, i64, i64, i64)> = got.iter().map(|f| (f.0.as_str(), f.1, f.2, f.3)).collect();
    let mut rows = vec![(ana_id.as_str(), 1, 2, 1), (ben_id.as_str(), 0, 0, 1)];
    rows.sort_unstable();
    assert_eq!(by_agent, rows);
    let (ana_row, ben_row) = if ana_id < ben_id { (0, 1) } else { (1, 0) };
    // Ana's first resolution took at least the 30 minutes since the customer's first message.
    assert!(got[ana_row].8.is_some_and(|median| median > 0.0), "{got:?}");
    assert!(got[ana_row].7.is_some_and(|average| average >= 900.0), "{got:?}");
    // Ben reads his own row only.
    let bens = figures(&app, &ben, from, to).await;
    assert!(close(&bens, &want[ben_row..=ben_row]), "{bens:?}");
}
