//! Campaigns from end to end against real PostgreSQL and a loopback Graph API: a broadcast to N
//! recipients with M failures charges the wallet for N − M at the price list's rate with a
//! reason on every ledger line; pause, resume and cancel release the rest of the reservation
//! (captured + released = reserved); a wallet that cannot pay refuses scheduling through
//! GraphQL with `INSUFFICIENT_BALANCE`; roles and tenants are kept apart.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chronicle_api::auth::Role;
use chronicle_commands::campaigns::{CampaignConfig, CampaignRunner};
use chronicle_commands::metering::{features, Metering};
use chronicle_commands::outbound::whatsapp::WhatsAppSender;
use chronicle_commands::wallets::{WalletService, MAIN_WALLET};
use chronicle_tests::error_code as code;
use chronicle_tests::system_metadata as meta;
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const NUMBER: &str = "555000555";
/// Milli-tokens per recipient in the tenant's price list.
const PRICE: i64 = 30;

/// A ledger line: kind, reference, feature, amount, reason.
type LedgerLine = (String, Option<String>, Option<String>, i64, String);

fn phone(n: usize) -> String {
    format!("26377200{n:04}")
}

/// A loopback Graph API: 200 with a fresh message id, except a definitive 400 (131026,
/// undeliverable) for the numbers in `refuse`. Keeps every number it was asked to send to.
#[derive(Clone, Default)]
struct Graph {
    refuse: Arc<BTreeSet<String>>,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn graph_messages(State(graph): State<Graph>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let to = body["to"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('+')
        .to_string();
    let n = {
        let mut seen = graph.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.push(to.clone());
        seen.len()
    };
    if graph.refuse.contains(&to) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "Message undeliverable", "type": "OAuthException", "code": 131026}})),
        );
    }
    let id = wamid(&to, u32::try_from(n).unwrap_or(0) + 900);
    (
        StatusCode::OK,
        Json(json!({"messaging_product": "whatsapp", "messages": [{"id": id}]})),
    )
}

impl Graph {
    async fn serve(&self) -> String {
        let app = Router::new()
            .route("/{version}/{number}/messages", post(graph_messages))
            .with_state(self.clone());
        format!("{}/v21.0", chronicle_tests::serve_loopback(app).await)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn runner(app: &TestApp, tick: Duration) -> CampaignRunner {
    CampaignRunner::new(
        app.state.commands.clone(),
        app.keys(),
        CampaignConfig {
            recipients_per_second: 2,
            tick,
            reservation_days: 30,
        },
    )
}

/// `acme` with `n` customers who wrote on WhatsApp, the `promo` template approved and the
/// broadcast price set; returns the contact ids in phone order.
async fn setting(app: &TestApp, tenant_id: &str, number: &str, n: usize) -> Vec<String> {
    app.tenant_with_number(tenant_id, number).await;
    let now = chrono::Utc::now().timestamp();
    for i in 0..n {
        let p = phone(i);
        let body = delivery(
            number,
            &[(p.as_str(), "Customer")],
            vec![text_message(&p, &wamid(&p, 1), now - 600, "Hello")],
            vec![],
        );
        assert_eq!(app.post_delivery(&body).await.0, StatusCode::OK);
    }
    app.drain().await;
    let token = app.token(tenant_id, Role::Owner);
    for mutation in [
        "mutation { submitTemplate(input: { name: \"promo\", language: \"en\", category: MARKETING,
                     body: \"Our {{1}} sale starts today.\" }) { id } }",
        "mutation { approveTemplate(name: \"promo\", language: \"en\", providerTemplateId: \"wa-promo\") { id } }",
    ] {
        let (_, reply) = app.graphql(Some(&token), mutation, json!({})).await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
    Metering::new(app.state.commands.clone())
        .set_price(&tenant(tenant_id), features::BROADCAST_RECIPIENT, Some(PRICE), "test")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let mut ids = Vec::new();
    for i in 0..n {
        let id: String =
            sqlx::query_scalar("SELECT contact_id FROM contacts WHERE tenant_id = $1 AND phone LIKE '%' || $2")
                .bind(tenant_id)
                .bind(phone(i))
                .fetch_one(&app.pool)
                .await
                .unwrap_or_else(|e| panic!("contact {i}: {e}"));
        ids.push(id);
    }
    ids
}

/// Credits `amount` to the tenant's main wallet.
async fn fund(app: &TestApp, tenant_id: &str, amount: i64) -> WalletService {
    let wallets = WalletService::new(app.state.commands.clone());
    let m = meta(tenant_id);
    wallets.ensure_main(&m).await.unwrap_or_else(|e| panic!("{e}"));
    wallets
        .purchase(MAIN_WALLET, "pay-1", amount, "finance", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
}

const CREATE: &str = "mutation($id: String!, $contacts: [String!]!) {
  createCampaign(input: { id: $id, name: \"Black Friday\", templateName: \"promo\", language: \"en\",
                          variables: [\"Black Friday\"], contactIds: $contacts }) { id status campaign { recipients } } }";

const SCHEDULE: &str = "mutation($id: String!) {
  scheduleCampaign(id: $id) { id status campaign { unitPrice reserved } position } }";

const CAMPAIGN: &str = "query($id: String!) {
  campaign(id: $id) { id status unitPrice reserved charged refunded released batches
    counts { total pending queued sent delivered read failed cancelled }
    recipients(first: 100) { edges { node { contactId position status batch reason refunded } } } } }";

async fn campaign(app: &TestApp, tenant_id: &str, id: &str) -> Value {
    let reply = app.gql(tenant_id, Role::Auditor, CAMPAIGN, json!({"id": id})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    reply["data"]["campaign"].clone()
}

/// Runs projectors, the runner and the sender until the campaign has a final status for
/// every recipient (bounded).
async fn run_to_the_end(app: &TestApp, runner: &CampaignRunner, sender: &WhatsAppSender, id: &str) -> Value {
    for _ in 0..12 {
        app.project().await;
        runner.drain().await.unwrap_or_else(|e| panic!("runner: {e}"));
        app.project().await;
        sender.drain().await.unwrap_or_else(|e| panic!("sender: {e}"));
        app.project().await;
        runner.drain().await.unwrap_or_else(|e| panic!("runner: {e}"));
        app.project().await;
        let c = campaign(app, "acme", id).await;
        if c["status"] == "COMPLETED" {
            return c;
        }
    }
    panic!("the campaign did not complete: {}", campaign(app, "acme", id).await);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_broadcast_to_n_recipients_with_m_failures_charges_n_minus_m_and_every_ledger_line_says_why(pool: PgPool) {
    let app = TestApp::new(pool).await;
    // Five customers who wrote; two refused by WhatsApp; one contact with no conversation.
    let mut recipients = setting(&app, "acme", NUMBER, 5).await;
    let nowhere = "ct_00000000000000000000000000000000".to_string();
    app.register_contact("acme", &nowhere, "+263770000099").await;
    recipients.push(nowhere.clone());
    let (n, m) = (6i64, 3i64);
    let graph = Graph {
        refuse: Arc::new([phone(1), phone(3)].into_iter().collect()),
        ..Graph::default()
    };
    let sender = app.sender(&graph.serve().await);
    let wallets = fund(&app, "acme", 10_000).await;

    let created = app
        .gql("acme", Role::Admin, CREATE, json!({"id": "bf", "contacts": recipients}))
        .await;
    assert_eq!(
        created["data"]["createCampaign"]["campaign"]["recipients"], 6,
        "{created}"
    );
    assert_eq!(created["data"]["createCampaign"]["status"], "DRAFT");
    let scheduled = app.gql("acme", Role::Owner, SCHEDULE, json!({"id": "bf"})).await;
    assert_eq!(
        scheduled["data"]["scheduleCampaign"]["campaign"]["reserved"],
        n * PRICE,
        "{scheduled}"
    );
    assert_eq!(scheduled["data"]["scheduleCampaign"]["campaign"]["unitPrice"], PRICE);
    let held = wallets
        .balances(&tenant("acme"), MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((held.balance, held.reserved), (10_000, n * PRICE));

    let runner = runner(&app, Duration::ZERO);
    let done = run_to_the_end(&app, &runner, &sender, "bf").await;

    // Every reachable recipient was sent once; the refused ones are not retried.
    let mut seen = graph.seen();
    seen.sort();
    assert_eq!(seen, (0..5).map(phone).collect::<Vec<_>>());
    let counts = &done["counts"];
    assert_eq!(
        (counts["total"].as_i64(), counts["failed"].as_i64()),
        (Some(n), Some(m)),
        "{done}"
    );
    assert_eq!(counts["sent"].as_i64(), Some(n - m), "{done}");
    assert_eq!(
        (counts["pending"].as_i64(), counts["queued"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(done["batches"], 3, "two recipients per batch");
    assert_eq!(
        (done["charged"].as_i64(), done["refunded"].as_i64()),
        (Some(n * PRICE), Some(m * PRICE))
    );
    let failed: Vec<&Value> = done["recipients"]["edges"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| &e["node"])
                .filter(|r| r["status"] == "FAILED")
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().all(|r| r["refunded"] == PRICE), "{failed:?}");
    let nowhere_row = failed
        .iter()
        .find(|r| r["contactId"] == nowhere.as_str())
        .unwrap_or_else(|| panic!("{failed:?}"));
    assert!(
        nowhere_row["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("UNKNOWN_CONVERSATION")),
        "{nowhere_row}"
    );
    assert!(failed
        .iter()
        .filter(|r| r["contactId"] != nowhere.as_str())
        .all(|r| r["reason"].as_str().is_some_and(|r| r.starts_with("131026"))));

    // The wallet aggregate: charged for N − M at the price list's rate, nothing left held.
    let after = wallets
        .balances(&tenant("acme"), MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after.balance, 10_000 - (n - m) * PRICE);
    assert_eq!((after.reserved, after.available), (0, 10_000 - (n - m) * PRICE));

    // Every ledger line says why; each refund names the campaign and its recipient.
    let lines: Vec<LedgerLine> = sqlx::query_as(
        "SELECT kind, reference, feature, amount, reason FROM wallet_ledger
          WHERE tenant_id = 'acme' AND wallet_id = 'main' ORDER BY global_position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(lines.iter().all(|l| !l.4.trim().is_empty()), "{lines:?}");
    let of = |kind: &str| lines.iter().filter(|l| l.0 == kind).collect::<Vec<_>>();
    let captures = of("capture");
    assert_eq!(captures.len(), 3, "{lines:?}");
    assert!(captures
        .iter()
        .all(|l| l.2.as_deref() == Some("broadcast_recipient") && l.4.contains("broadcast_recipient")));
    assert_eq!(captures.iter().map(|l| l.3.abs()).sum::<i64>(), n * PRICE);
    let refunds = of("refund");
    assert_eq!(refunds.len(), 3, "{lines:?}");
    for refund in &refunds {
        assert_eq!(refund.3.abs(), PRICE);
        assert!(refund.4.contains("recipient_failed"), "{refund:?}");
        let reference = refund.1.clone().unwrap_or_default();
        assert!(reference.starts_with("refund:recipient_failed:bf:ct_"), "{reference}");
        assert!(failed
            .iter()
            .any(|r| reference.ends_with(r["contactId"].as_str().unwrap_or("?"))));
    }
    let reservations: Vec<(i64, i64, i64, String)> =
        sqlx::query_as("SELECT amount, captured, released, state FROM wallet_reservations WHERE tenant_id = 'acme'")
            .fetch_all(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reservations, vec![(n * PRICE, n * PRICE, 0, "captured".to_string())]);

    // WhatsApp's delivery statuses of a campaign message move its recipient on (counts from
    // the events), and charge nothing more.
    let first = graph
        .seen()
        .iter()
        .position(|to| *to == phone(0))
        .unwrap_or_else(|| panic!("phone 0 was sent to"));
    let message_id = wamid(&phone(0), u32::try_from(first).unwrap_or(0) + 901);
    let now = chrono::Utc::now().timestamp();
    let statuses = delivery(
        NUMBER,
        &[],
        vec![],
        vec![
            status(&message_id, "delivered", now, &phone(0)),
            status(&message_id, "read", now + 1, &phone(0)),
        ],
    );
    assert_eq!(app.post_delivery(&statuses).await.0, StatusCode::OK);
    app.drain().await;
    let read = run_to_the_end(&app, &runner, &sender, "bf").await;
    assert_eq!(
        (read["counts"]["read"].as_i64(), read["counts"]["sent"].as_i64()),
        (Some(1), Some(n - m - 1)),
        "{read}"
    );
    let first_row = read["recipients"]["edges"][0]["node"].clone();
    assert_eq!(
        (first_row["contactId"].as_str(), first_row["status"].as_str()),
        (Some(recipients[0].as_str()), Some("READ"))
    );

    // Running everything again changes nothing: no message, charge or refund twice.
    run_to_the_end(&app, &runner, &sender, "bf").await;
    assert_eq!(graph.seen().len(), 5);
    let again = wallets
        .balances(&tenant("acme"), MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, after);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn pausing_stops_new_batches_and_cancelling_releases_the_rest_so_captured_plus_released_is_reserved(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let recipients = setting(&app, "acme", NUMBER, 5).await;
    let wallets = fund(&app, "acme", 1_000).await;
    // One batch of two per hour: each drain runs at most one batch.
    let runner = runner(&app, Duration::from_secs(3600));
    let control = |name: &str| format!("mutation($id: String!) {{ {name}(id: $id) {{ status }} }}");

    app.gql(
        "acme",
        Role::Admin,
        CREATE,
        json!({"id": "spring", "contacts": recipients}),
    )
    .await;
    app.gql("acme", Role::Admin, SCHEDULE, json!({"id": "spring"})).await;
    app.project().await;
    runner.drain().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    assert_eq!(campaign(&app, "acme", "spring").await["batches"], 1);

    let paused = app
        .gql("acme", Role::Admin, &control("pauseCampaign"), json!({"id": "spring"}))
        .await;
    assert_eq!(paused["data"]["pauseCampaign"]["status"], "PAUSED", "{paused}");
    app.project().await;
    runner.drain().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let while_paused = campaign(&app, "acme", "spring").await;
    assert_eq!(
        (while_paused["status"].as_str(), while_paused["batches"].as_i64()),
        (Some("PAUSED"), Some(1)),
        "no batch while paused"
    );

    let resumed = app
        .gql("acme", Role::Owner, &control("resumeCampaign"), json!({"id": "spring"}))
        .await;
    assert_eq!(resumed["data"]["resumeCampaign"]["status"], "RUNNING", "{resumed}");
    app.project().await;
    runner.drain().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    assert_eq!(campaign(&app, "acme", "spring").await["batches"], 2);

    let cancelled = app
        .gql("acme", Role::Admin, &control("cancelCampaign"), json!({"id": "spring"}))
        .await;
    assert_eq!(
        cancelled["data"]["cancelCampaign"]["status"], "CANCELLED",
        "{cancelled}"
    );
    app.project().await;
    runner.drain().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;

    let done = campaign(&app, "acme", "spring").await;
    assert_eq!(done["counts"]["cancelled"], 1, "{done}");
    assert_eq!(done["counts"]["queued"], 4, "{done}");
    assert_eq!(
        (done["charged"].as_i64(), done["released"].as_i64()),
        (Some(4 * PRICE), Some(PRICE))
    );
    let (amount, captured, released, state): (i64, i64, i64, String) =
        sqlx::query_as("SELECT amount, captured, released, state FROM wallet_reservations WHERE tenant_id = 'acme'")
            .fetch_one(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(captured + released, amount, "captured + released = reserved");
    assert_eq!((amount, captured, state.as_str()), (5 * PRICE, 4 * PRICE, "released"));
    let after = wallets
        .balances(&tenant("acme"), MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((after.balance, after.reserved), (1_000 - 4 * PRICE, 0));
    // A cancelled campaign cannot resume.
    let reply = app
        .gql("acme", Role::Admin, &control("resumeCampaign"), json!({"id": "spring"}))
        .await;
    assert_eq!(code(&reply), "CAMPAIGN_FINISHED", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn scheduling_on_a_wallet_that_cannot_pay_is_refused_with_insufficient_balance_and_nothing_runs(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let recipients = setting(&app, "acme", NUMBER, 3).await;
    let wallets = fund(&app, "acme", 50).await;
    app.gql(
        "acme",
        Role::Admin,
        CREATE,
        json!({"id": "big", "contacts": recipients}),
    )
    .await;

    let reply = app.gql("acme", Role::Admin, SCHEDULE, json!({"id": "big"})).await;
    assert_eq!(code(&reply), "INSUFFICIENT_BALANCE", "{reply}");
    assert_eq!(reply["errors"][0]["extensions"]["required"], 3 * PRICE);
    assert_eq!(reply["errors"][0]["extensions"]["available"], 50);
    app.project().await;
    runner(&app, Duration::ZERO)
        .drain()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    assert_eq!(campaign(&app, "acme", "big").await["status"], "DRAFT");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type IN ('CampaignScheduled', 'OutboundMessageQueued')")
            .await,
        0,
        "not scheduled, nothing queued"
    );
    let held = wallets
        .balances(&tenant("acme"), MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((held.balance, held.reserved), (50, 0));

    // Topped up, the same campaign schedules (a new reservation reference: the refused one
    // stays refused).
    wallets
        .purchase(MAIN_WALLET, "pay-2", 1_000, "finance", &meta("acme"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reply = app.gql("acme", Role::Admin, SCHEDULE, json!({"id": "big"})).await;
    assert_eq!(reply["data"]["scheduleCampaign"]["status"], "SCHEDULED", "{reply}");
    assert_eq!(reply["data"]["scheduleCampaign"]["campaign"]["reserved"], 3 * PRICE);
    let held = wallets
        .balances(&tenant("acme"), MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(held.reserved, 3 * PRICE);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn each_tenant_sees_and_runs_only_its_own_campaigns_and_only_owners_and_admins_run_them(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let recipients = setting(&app, "acme", NUMBER, 2).await;
    app.tenant_with_number("beta", "666000666").await;
    fund(&app, "acme", 1_000).await;
    app.gql(
        "acme",
        Role::Admin,
        CREATE,
        json!({"id": "acme-only", "contacts": recipients}),
    )
    .await;
    app.project().await;

    // Another tenant neither sees nor controls it.
    let list = app
        .gql(
            "beta",
            Role::Owner,
            "{ campaigns { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(list["data"]["campaigns"]["edges"], json!([]), "{list}");
    let one = app.gql("beta", Role::Owner, CAMPAIGN, json!({"id": "acme-only"})).await;
    assert_eq!(one["data"]["campaign"], Value::Null, "{one}");
    let reply = app.gql("beta", Role::Owner, SCHEDULE, json!({"id": "acme-only"})).await;
    assert_eq!(code(&reply), "UNKNOWN_CAMPAIGN", "{reply}");
    // The owner's own tenant does.
    let list = app
        .gql(
            "acme",
            Role::Finance,
            "{ campaigns { edges { node { id status } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        list["data"]["campaigns"]["edges"][0]["node"]["id"], "acme-only",
        "{list}"
    );

    // Agents read but do not run campaigns; technicians do neither.
    let reply = app.gql("acme", Role::Agent, SCHEDULE, json!({"id": "acme-only"})).await;
    assert_eq!(code(&reply), "FORBIDDEN", "{reply}");
    let reply = app
        .gql("acme", Role::Agent, CREATE, json!({"id": "x", "contacts": recipients}))
        .await;
    assert_eq!(code(&reply), "FORBIDDEN", "{reply}");
    let reply = app
        .gql("acme", Role::Technician, CAMPAIGN, json!({"id": "acme-only"}))
        .await;
    assert_eq!(code(&reply), "FORBIDDEN", "{reply}");
    let agent = app.gql("acme", Role::Agent, CAMPAIGN, json!({"id": "acme-only"})).await;
    assert_eq!(agent["data"]["campaign"]["status"], "DRAFT", "{agent}");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'CampaignScheduled'")
            .await,
        0
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_campaign_whose_stream_outgrows_a_snapshot_completes_with_every_recipient_charged_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let recipients = setting(&app, "acme", NUMBER, 110).await;
    let graph = Graph::default();
    let sender = app.sender(&graph.serve().await);
    let wallets = fund(&app, "acme", 100_000).await;
    app.gql(
        "acme",
        Role::Admin,
        CREATE,
        json!({"id": "big", "contacts": recipients}),
    )
    .await;
    app.gql("acme", Role::Admin, SCHEDULE, json!({"id": "big"})).await;
    let runner = CampaignRunner::new(
        app.state.commands.clone(),
        app.keys(),
        CampaignConfig {
            recipients_per_second: 50,
            tick: Duration::ZERO,
            reservation_days: 30,
        },
    );
    let done = run_to_the_end(&app, &runner, &sender, "big").await;
    assert_eq!(done["counts"]["sent"], 110, "{done}");
    assert_eq!(done["batches"], 3);
    assert_eq!(graph.seen().len(), 110, "one message per recipient");
    // Recipients page in sending order.
    let page = "query($after: String) { campaign(id: \"big\") { recipients(first: 50, after: $after) {
        pageInfo { hasNextPage endCursor } edges { node { position status } } } } }";
    let (mut after, mut positions) = (Value::Null, Vec::new());
    loop {
        let reply = app.gql("acme", Role::Agent, page, json!({"after": after})).await;
        let connection = &reply["data"]["campaign"]["recipients"];
        for edge in connection["edges"].as_array().cloned().unwrap_or_default() {
            assert_eq!(edge["node"]["status"], "SENT");
            positions.push(edge["node"]["position"].as_i64().unwrap_or(-1));
        }
        if connection["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(positions, (0..110).collect::<Vec<i64>>());
    assert!(
        app.count("SELECT count(*) FROM snapshots WHERE aggregate_type = 'Campaign'")
            .await
            > 0,
        "the campaign's stream was snapshotted"
    );
    let after = wallets
        .balances(&tenant("acme"), MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((after.balance, after.reserved), (100_000 - 110 * PRICE, 0));
}

/// Issue 17: unknown contacts and templates that cannot be sent were accepted when a campaign
/// was made and failed when it ran. Each is refused at creation, with nothing recorded.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_campaign_naming_unknown_contacts_or_a_template_that_cannot_be_sent_is_refused_when_it_is_made(pool: PgPool) {
    use chronicle_tests::{error_code, error_message};
    let app = TestApp::new(pool).await;
    let recipients = setting(&app, "acme", NUMBER, 2).await;
    let before = app.count("SELECT count(*) FROM events").await;
    let create = |id: &str, template: &str, variables: Value, contacts: Value| {
        let query = format!(
            "mutation($contacts: [String!]!, $variables: [String!]!) {{ createCampaign(input: {{ id: \"{id}\",
               name: \"x\", templateName: \"{template}\", language: \"en\", variables: $variables,
               contactIds: $contacts }}) {{ status }} }}"
        );
        let app = &app;
        async move {
            app.gql(
                "acme",
                Role::Admin,
                &query,
                json!({"contacts": contacts, "variables": variables}),
            )
            .await
        }
    };
    // Unknown contacts, named (the first five) and counted.
    let mut with_strangers = recipients.clone();
    with_strangers.extend((0..7).map(|i| format!("ct_{i:032x}")));
    let reply = create("c1", "promo", json!(["Black Friday"]), json!(with_strangers)).await;
    assert_eq!(error_code(&reply), "UNKNOWN_CONTACTS", "{reply}");
    assert_eq!(
        error_message(&reply),
        "7 recipient(s) are not contacts of this tenant: ct_00000000000000000000000000000000, \
         ct_00000000000000000000000000000001, ct_00000000000000000000000000000002, \
         ct_00000000000000000000000000000003, ct_00000000000000000000000000000004, …"
    );
    // A template the tenant does not have; one submitted but not approved; the approved one
    // with the wrong number of variables.
    let reply = create("c2", "no_such", json!([]), json!(recipients)).await;
    assert_eq!(error_code(&reply), "UNKNOWN_TEMPLATE", "{reply}");
    let (_, reply) = app
        .graphql(
            Some(&app.token("acme", Role::Owner)),
            "mutation { submitTemplate(input: { name: \"pending_one\", language: \"en\", category: MARKETING,
                         body: \"Soon\" }) { id } }",
            json!({}),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    let templates = app.count("SELECT count(*) FROM events").await;
    let reply = create("c3", "pending_one", json!([]), json!(recipients)).await;
    assert_eq!(error_code(&reply), "TEMPLATE_NOT_APPROVED", "{reply}");
    let reply = create("c4", "promo", json!([]), json!(recipients)).await;
    assert_eq!(error_code(&reply), "WRONG_PARAMETER_COUNT", "{reply}");
    let reply = create("c5", "promo", json!(["a", "b"]), json!(recipients)).await;
    assert_eq!(error_code(&reply), "WRONG_PARAMETER_COUNT", "{reply}");
    // A malformed name can never be a template.
    let reply = create("c7", "Promo Now", json!(["Black Friday"]), json!(recipients)).await;
    assert_eq!(error_code(&reply), "UNKNOWN_TEMPLATE", "{reply}");
    // The campaign's own refusals come first.
    let reply = create("c8", "no_such", json!([]), json!([])).await;
    assert_eq!(error_code(&reply), "NO_RECIPIENTS", "{reply}");
    assert_eq!(
        app.count("SELECT count(*) FROM events").await,
        templates,
        "nothing recorded"
    );
    assert!(templates > before);
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE aggregate_type = 'Campaign'")
            .await,
        0
    );
    // Known contacts and a sendable template: made.
    let reply = create("c6", "promo", json!(["Black Friday"]), json!(recipients)).await;
    assert_eq!(reply["data"]["createCampaign"]["status"], "DRAFT", "{reply}");
    // A retried creation answers the draft (it records nothing, so nothing is checked again).
    let reply = create("c6", "promo", json!(["Black Friday"]), json!(recipients)).await;
    assert_eq!(reply["data"]["createCampaign"]["status"], "DRAFT", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_opted_out_recipient_fails_with_its_reason_and_is_refunded_and_an_unapproved_template_is_refused_up_front(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let recipients = setting(&app, "acme", NUMBER, 2).await;
    let stop = delivery(
        NUMBER,
        &[(phone(1).as_str(), "Customer")],
        vec![text_message(
            &phone(1),
            &wamid(&phone(1), 2),
            chrono::Utc::now().timestamp() - 60,
            "STOP",
        )],
        vec![],
    );
    assert_eq!(app.post_delivery(&stop).await.0, StatusCode::OK);
    app.drain().await;
    let graph = Graph::default();
    let sender = app.sender(&graph.serve().await);
    let wallets = fund(&app, "acme", 1_000).await;
    let runner = runner(&app, Duration::ZERO);

    app.gql(
        "acme",
        Role::Admin,
        CREATE,
        json!({"id": "optout", "contacts": recipients}),
    )
    .await;
    app.gql("acme", Role::Admin, SCHEDULE, json!({"id": "optout"})).await;
    let done = run_to_the_end(&app, &runner, &sender, "optout").await;
    let rows = done["recipients"]["edges"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows[0]["node"]["status"], "SENT", "{done}");
    assert_eq!(rows[1]["node"]["status"], "FAILED");
    assert!(rows[1]["node"]["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("CONTACT_OPTED_OUT")));
    assert_eq!(graph.seen(), vec![phone(0)], "nothing reaches the opted-out contact");

    // Issue 17: a campaign naming a template that was never approved used to be created and
    // fail every recipient when it ran; it is refused when it is made.
    let unapproved = "mutation($contacts: [String!]!) { createCampaign(input: { id: \"draft-tpl\", name: \"x\",
        templateName: \"never_approved\", language: \"en\", contactIds: $contacts }) { status } }";
    let refused = app
        .gql("acme", Role::Admin, unapproved, json!({"contacts": recipients}))
        .await;
    assert_eq!(chronicle_tests::error_code(&refused), "UNKNOWN_TEMPLATE", "{refused}");
    assert_eq!(graph.seen().len(), 1, "nothing sent for the unapproved template");
    // Charged only for the one message that went out.
    let after = wallets
        .balances(&tenant("acme"), MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((after.balance, after.reserved), (1_000 - PRICE, 0));
}
