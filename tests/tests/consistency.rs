//! Read-your-writes through the running server (issue 12): every mutation answers a `Receipt`
//! with the cursor of what it appended, and a query sent with that cursor (the
//! `Chronicle-At-Least` header or `extensions.consistency`) sees the write. Over a real HTTP
//! client against a served app whose projectors and workers run in the background, as in
//! production.

use std::collections::BTreeSet;

use chronicle_api::auth::Role;
use chronicle_api::graphql::consistency::ALL_PROJECTORS;
use chronicle_projections::log::Cursor;
use chronicle_tests::{delivery, error_code, text_message, wamid, TestApp};
use serde_json::{json, Value};

/// A GraphQL client of the served app.
struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    async fn post(&self, body: Value, at_least: Option<(&str, Option<&str>)>) -> (u16, Value) {
        let mut request = self.http.post(&self.url).bearer_auth(&self.token).json(&body);
        if let Some((cursor, timeout)) = at_least {
            request = request.header("Chronicle-At-Least", cursor);
            if let Some(timeout) = timeout {
                request = request.header("Chronicle-Timeout-Ms", timeout);
            }
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_else(|e| panic!("{e}")))
    }

    /// Runs a mutation and returns its receipt (the field `name` of `data`).
    async fn mutate(&self, query: &str, variables: Value, name: &str) -> Value {
        let (_, reply) = self.post(json!({"query": query, "variables": variables}), None).await;
        assert!(reply["errors"].is_null(), "{name}: {reply}");
        reply["data"][name].clone()
    }

    /// Runs a query waiting for `cursor`: by header when `by_header`, else in the request's
    /// extensions.
    async fn read(&self, query: &str, variables: Value, cursor: &str, by_header: bool) -> Value {
        let (status, reply) = if by_header {
            self.post(json!({"query": query, "variables": variables}), Some((cursor, None)))
                .await
        } else {
            let body = json!({"query": query, "variables": variables,
                              "extensions": {"consistency": {"atLeast": cursor, "timeoutMs": 10_000}}});
            self.post(body, None).await
        };
        assert_eq!(status, 200, "{reply}");
        assert!(reply["errors"].is_null(), "{reply}");
        reply["data"].clone()
    }
}

/// A served app with its projectors and workers running, a tenant `acme` with one WhatsApp
/// conversation, and a client acting as its owner. Returns the conversation's id.
async fn running(pool: sqlx::PgPool) -> (TestApp, Client, String, tokio::sync::watch::Sender<bool>) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "555000001").await;
    let phone = "263771000001";
    let (status, reply) = app
        .post_delivery(&delivery(
            "555000001",
            &[(phone, "Tendai")],
            vec![text_message(
                phone,
                &wamid(phone, 1),
                chrono::Utc::now().timestamp(),
                "Hi",
            )],
            vec![],
        ))
        .await;
    assert_eq!(status, axum::http::StatusCode::OK, "{reply}");
    app.drain().await;
    let conversation: String = sqlx::query_scalar("SELECT contact_id FROM contact_keys WHERE tenant_id = 'acme'")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    chronicle_api::app::spawn_background(&app.state, shutdown);
    let addr = app.serve().await;
    let client = Client {
        http: reqwest::Client::new(),
        url: format!("http://{addr}/graphql"),
        token: app.token("acme", Role::Owner),
    };
    (app, client, conversation, stop)
}

const CAPTURE: &str = "mutation($k: String!, $phone: String!) {
  captureLead(input: { idempotencyKey: $k, phone: $phone, name: \"Prospect\" }) { id ids cursor appended status } }";
const PLACE: &str = "mutation($c: String!) {
  placeOrder(customerId: $c, items: [{ sku: \"panel\", description: \"Panel\", quantity: 1, unitPriceMinor: 100,
                                       currency: \"USD\" }]) { id cursor appended } }";
const PURCHASE: &str = "mutation($r: String!) {
  purchaseTokens(reference: $r, amount: 1000) { id cursor appended wallet { balance } } }";
const ASSIGN: &str = "mutation($id: String!, $agent: String!) {
  assignConversation(conversationId: $id, agentId: $agent) { id cursor appended } }";

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_thousand_mutations_across_areas_each_read_at_once_with_their_cursor_see_their_write(pool: sqlx::PgPool) {
    let (app, client, conversation, stop) = running(pool).await;
    // Conversations are assigned to users: two agents, taking turns, so each assignment changes.
    let agents = [app.user("acme", Role::Agent).await, app.user("acme", Role::Agent).await];
    let mut purchased = 0;
    for i in 0..1000 {
        let by_header = i % 2 == 0;
        let (receipt, seen) = match i % 4 {
            0 => {
                let r = client
                    .mutate(
                        CAPTURE,
                        json!({"k": format!("k{i}"), "phone": format!("+2637{:08}", i)}),
                        "captureLead",
                    )
                    .await;
                let data = client
                    .read(
                        "query($id: ID!) { lead(id: $id) { id } }",
                        json!({"id": r["id"]}),
                        r["cursor"].as_str().unwrap_or_default(),
                        by_header,
                    )
                    .await;
                (r.clone(), data["lead"]["id"] == r["id"])
            }
            1 => {
                let r = client.mutate(PLACE, json!({"c": &conversation}), "placeOrder").await;
                let data = client
                    .read(
                        "query($id: String!) { order(id: $id) { id } }",
                        json!({"id": r["id"]}),
                        r["cursor"].as_str().unwrap_or_default(),
                        by_header,
                    )
                    .await;
                (r.clone(), data["order"]["id"] == r["id"])
            }
            2 => {
                let r = client
                    .mutate(PURCHASE, json!({"r": format!("pay-{i}")}), "purchaseTokens")
                    .await;
                purchased += 1000;
                assert_eq!(r["wallet"]["balance"], purchased, "{r}");
                let data = client
                    .read(
                        "{ wallet { balance } }",
                        json!({}),
                        r["cursor"].as_str().unwrap_or_default(),
                        by_header,
                    )
                    .await;
                (r.clone(), data["wallet"]["balance"] == purchased)
            }
            _ => {
                let agent = agents[(i / 4) % 2].clone();
                let r = client
                    .mutate(
                        ASSIGN,
                        json!({"id": conversation, "agent": agent}),
                        "assignConversation",
                    )
                    .await;
                let data = client
                    .read(
                        "query($id: String!) { conversation(id: $id) { assignee } }",
                        json!({"id": conversation}),
                        r["cursor"].as_str().unwrap_or_default(),
                        by_header,
                    )
                    .await;
                (r.clone(), data["conversation"]["assignee"] == agent.as_str())
            }
        };
        assert_eq!(receipt["appended"].as_i64().map(|n| n >= 1), Some(true), "{receipt}");
        assert!(
            seen,
            "mutation {i} ({receipt}) was not seen by the read that waited for its cursor"
        );
    }
    let _ = stop.send(true);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_query_waiting_for_a_cursor_that_never_arrives_times_out_with_consistency_timeout(pool: sqlx::PgPool) {
    let (_app, client, _conversation, stop) = running(pool).await;
    let never = Cursor::new(u64::MAX >> 2, i64::MAX).to_string();
    let started = std::time::Instant::now();
    let (status, reply) = client
        .post(
            json!({"query": "{ leads(first: 1) { totalCount } }"}),
            Some((&never, Some("300"))),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(error_code(&reply), "CONSISTENCY_TIMEOUT", "{reply}");
    assert!(reply["data"].is_null(), "{reply}");
    let message = reply["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("leads") && message.contains(&never), "{message}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    // In the request's extensions too.
    let (_, reply) = client
        .post(
            json!({"query": "{ wallet { balance } }",
                   "extensions": {"consistency": {"atLeast": never, "timeoutMs": 50}}}),
            None,
        )
        .await;
    assert_eq!(error_code(&reply), "CONSISTENCY_TIMEOUT", "{reply}");
    // A query that reads no read model (the caller) does not wait.
    let (_, reply) = client
        .post(json!({"query": "{ viewer { role } }"}), Some((&never, Some("50"))))
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    let _ = stop.send(true);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_malformed_requirement_is_refused_before_the_query_runs(pool: sqlx::PgPool) {
    let (_app, client, _conversation, stop) = running(pool).await;
    let query = json!({"query": "{ wallet { balance } }"});
    let (_, reply) = client.post(query.clone(), Some(("c1.nope", None))).await;
    assert_eq!(error_code(&reply), "BAD_CURSOR", "{reply}");
    let cursor = Cursor::new(1, 1).to_string();
    for timeout in ["0", "60001", "soon"] {
        let (_, reply) = client.post(query.clone(), Some((&cursor, Some(timeout)))).await;
        assert_eq!(error_code(&reply), "BAD_TIMEOUT", "{timeout}: {reply}");
    }
    for consistency in [
        json!("c1"),
        json!({"atLeast": 5}),
        json!({"atLeast": cursor, "timeoutMs": "x"}),
    ] {
        let (_, reply) = client
            .post(
                json!({"query": "{ wallet { balance } }", "extensions": {"consistency": consistency}}),
                None,
            )
            .await;
        assert!(
            ["BAD_CURSOR", "BAD_TIMEOUT"].contains(&error_code(&reply)),
            "{consistency}: {reply}"
        );
    }
    let _ = stop.send(true);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_repeated_idempotent_mutation_answers_its_first_outcomes_cursor(pool: sqlx::PgPool) {
    let (_app, client, _conversation, stop) = running(pool).await;
    let vars = json!({"k": "form-1", "phone": "+263771234567"});
    let first = client.mutate(CAPTURE, vars.clone(), "captureLead").await;
    let again = client.mutate(CAPTURE, vars, "captureLead").await;
    assert_eq!(
        (first["status"].clone(), again["status"].clone()),
        (json!("captured"), json!("repeated"))
    );
    assert_eq!(again["cursor"], first["cursor"], "{first} {again}");
    assert!(first["appended"].as_i64() >= Some(1), "{first}");
    assert_eq!(again["appended"], 0, "{again}");

    let first = client.mutate(PURCHASE, json!({"r": "pay-1"}), "purchaseTokens").await;
    let again = client.mutate(PURCHASE, json!({"r": "pay-1"}), "purchaseTokens").await;
    assert_eq!(again["cursor"], first["cursor"], "{first} {again}");
    assert_eq!(again["appended"], 0);
    assert_eq!(again["wallet"]["balance"], 1000);
    // A new write moves the cursor on.
    let next = client.mutate(PURCHASE, json!({"r": "pay-2"}), "purchaseTokens").await;
    let (a, b): (Cursor, Cursor) = (
        first["cursor"].as_str().unwrap_or_default().parse().unwrap_or_default(),
        next["cursor"].as_str().unwrap_or_default().parse().unwrap_or_default(),
    );
    assert!(b > a, "{first} {next}");
    let _ = stop.send(true);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn every_mutation_answers_a_receipt_and_every_projector_is_known_to_the_wait(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    let reply = app
        .gql(
            "acme",
            Role::Owner,
            "{ __type(name: \"Mutation\") { fields { name type { kind ofType { name } } } } }",
            json!({}),
        )
        .await;
    let fields = reply["data"]["__type"]["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(fields.len() > 70, "{reply}");
    for field in &fields {
        assert_eq!(
            (field["type"]["kind"].as_str(), field["type"]["ofType"]["name"].as_str()),
            (Some("NON_NULL"), Some("Receipt")),
            "{field}"
        );
    }
    let running: BTreeSet<&str> = chronicle_api::app::projectors(&app.state)
        .iter()
        .map(|p| p.name())
        .collect();
    let known: BTreeSet<&str> = ALL_PROJECTORS.iter().copied().collect();
    assert_eq!(running, known);
}
