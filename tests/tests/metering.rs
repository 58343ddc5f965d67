//! Metering from end to end: the tenant's price list, charges before the action runs, refusals
//! with `INSUFFICIENT_BALANCE` that send nothing (a loopback Graph API server that receives no
//! request), refunds of sends the conversation refuses and of messages the provider refuses
//! (4xx) with the reason in the ledger, and tenants without a price list left unmetered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chronicle_api::auth::Role;
use chronicle_commands::error::{CommandError, DomainError};
use chronicle_commands::metering::{features, Charge, Metering, RefundReason};
use chronicle_commands::outbound::whatsapp::WhatsAppSender;
use chronicle_commands::wallets::{WalletService, MAIN_WALLET};
use chronicle_domain::wallet::WalletError;
use chronicle_projections::wallets::{self as read, LedgerFilter};
use chronicle_tests::error_code as code;
use chronicle_tests::system_metadata as meta;
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const NUMBER: &str = "555000222";
const CUSTOMER: &str = "263771000009";

/// A loopback Graph API answering every request with the scripted reply; counts requests.
#[derive(Clone)]
struct Graph {
    requests: Arc<Mutex<Vec<Value>>>,
    reply: (u16, Value),
}

async fn messages(State(graph): State<Graph>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    graph.requests.lock().unwrap_or_else(|e| e.into_inner()).push(body);
    let (status, reply) = graph.reply.clone();
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(reply))
}

impl Graph {
    fn answering(status: u16, reply: Value) -> Self {
        Self {
            requests: Arc::new(Mutex::new(Vec::new())),
            reply: (status, reply),
        }
    }

    fn accepting() -> Self {
        Self::answering(200, json!({"messages": [{"id": wamid(CUSTOMER, 900)}]}))
    }

    async fn serve(&self) -> String {
        let app = Router::new()
            .route("/{version}/{number}/messages", post(messages))
            .with_state(self.clone());
        format!("{}/v21.0", chronicle_tests::serve_loopback(app).await)
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn sender(app: &TestApp, base_url: &str) -> WhatsAppSender {
    let mut config = sender_config(base_url, "graph-token");
    config.request_timeout = Duration::from_secs(5);
    app.sender_with(config)
}

/// A tenant `acme` whose customer wrote `hours_ago` hours ago; returns the conversation id.
async fn conversation(app: &TestApp, hours_ago: i64) -> String {
    app.tenant_with_number("acme", NUMBER).await;
    let at = chrono::Utc::now().timestamp() - hours_ago * 3600;
    let body = delivery(
        NUMBER,
        &[(CUSTOMER, "Rudo Banda")],
        vec![text_message(
            CUSTOMER,
            &wamid(CUSTOMER, 1),
            at,
            "Do you install on Saturdays?",
        )],
        vec![],
    );
    let (status, _) = app.post_delivery(&body).await;
    assert_eq!(status, StatusCode::OK);
    app.drain().await;
    app.project().await;
    sqlx::query_scalar("SELECT conversation_id FROM conversations")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

const SEND_MESSAGE: &str = "mutation($id: String!, $text: String!, $key: String!) {
  sendMessage(conversationId: $id, text: $text, idempotencyKey: $key) { id position }
}";

async fn set_price(app: &TestApp, feature: &str, unit_price: i64) {
    Metering::new(app.state.commands.clone())
        .set_price(&tenant("acme"), feature, Some(unit_price), "finance-1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn fund(app: &TestApp, amount: i64) {
    let wallets = WalletService::new(app.state.commands.clone());
    wallets
        .ensure_main(&meta("acme"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wallets
        .purchase(MAIN_WALLET, "pay-1", amount, "finance", &meta("acme"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn available(app: &TestApp) -> i64 {
    WalletService::new(app.state.commands.clone())
        .balances(&tenant("acme"), MAIN_WALLET)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .available
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_send_on_an_empty_wallet_answers_insufficient_balance_with_both_amounts_and_sends_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::accepting();
    let base = graph.serve().await;
    let id = conversation(&app, 1).await;
    set_price(&app, features::MESSAGE, 1_500).await;
    let reply = app
        .gql(
            "acme",
            Role::Agent,
            SEND_MESSAGE,
            json!({"id": id, "text": "Yes, Saturdays too", "key": "k-1"}),
        )
        .await;
    assert_eq!(code(&reply), "INSUFFICIENT_BALANCE", "{reply}");
    assert_eq!(reply["errors"][0]["extensions"]["required"], 1_500, "{reply}");
    assert_eq!(reply["errors"][0]["extensions"]["available"], 0, "{reply}");
    assert!(reply["data"].is_null() || reply["data"]["sendMessage"].is_null());
    // A template send is refused the same way, before its template is even looked at.
    let template = "mutation($id: String!) {
      sendTemplate(conversationId: $id, name: \"any\", language: \"en\", idempotencyKey: \"k-2\") { position }
    }";
    let reply = app.gql("acme", Role::Agent, template, json!({"id": id})).await;
    assert_eq!(code(&reply), "INSUFFICIENT_BALANCE", "{reply}");
    assert_eq!(reply["errors"][0]["extensions"]["required"], 1_500, "{reply}");
    assert_eq!(reply["errors"][0]["extensions"]["available"], 0, "{reply}");
    // Nothing queued, nothing sent; the refusal is recorded for finance.
    app.project().await;
    sender(&app, &base).drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(graph.count(), 0);
    assert_eq!(app.count_events("OutboundMessageQueued").await, 0);
    assert_eq!(app.count_events("OutboundMessageSent").await, 0);
    assert_eq!(app.count_events("DebitRefused").await, 2);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_metered_send_is_paid_before_it_is_queued_and_charged_once_per_key(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::accepting();
    let base = graph.serve().await;
    let id = conversation(&app, 1).await;
    set_price(&app, features::MESSAGE, 1_500).await;
    fund(&app, 10_000).await;
    for _ in 0..2 {
        let reply = app
            .gql(
                "acme",
                Role::Agent,
                SEND_MESSAGE,
                json!({"id": id, "text": "On my way", "key": "k-1"}),
            )
            .await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
    assert_eq!(available(&app).await, 8_500);
    app.project().await;
    sender(&app, &base).drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(graph.count(), 1);
    assert_eq!(app.count_events("TokensDebited").await, 1);
    app.project().await;
    let usage = chronicle_tests::page_rows(read::usage(&app.state.pool, &tenant("acme"), None, None, 500, None).await);
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (usage[0].feature.as_str(), usage[0].net, usage[0].operations),
        ("message", 1_500, 1)
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_metered_message_the_provider_refuses_is_refunded_and_the_ledger_says_why(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::answering(
        400,
        json!({"error": {"code": 131026, "message": "Message undeliverable", "error_data": {"details": "not on WhatsApp"}}}),
    );
    let base = graph.serve().await;
    let id = conversation(&app, 1).await;
    set_price(&app, features::MESSAGE, 2_000).await;
    fund(&app, 5_000).await;
    let reply = app
        .gql(
            "acme",
            Role::Agent,
            SEND_MESSAGE,
            json!({"id": id, "text": "Hello", "key": "k-9"}),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    assert_eq!(available(&app).await, 3_000);
    app.project().await;
    let pass = sender(&app, &base).drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.failed, 1);
    assert_eq!(graph.count(), 1);
    assert_eq!(available(&app).await, 5_000);
    assert_eq!(app.count_events("TokensRefunded").await, 1);
    let (state, refunded): (String, bool) =
        sqlx::query_as("SELECT state, refunded FROM metered_actions WHERE tenant_id = 'acme'")
            .fetch_one(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((state.as_str(), refunded), ("refunded", true));
    app.project().await;
    let page = read::ledger(
        &app.state.pool,
        &tenant("acme"),
        &LedgerFilter {
            kind: Some("refund".into()),
            ..LedgerFilter::default()
        },
        10,
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.rows.len(), 1);
    let line = &page.rows[0];
    assert_eq!((line.amount, line.feature.as_deref()), (2_000, Some("message")));
    assert!(line.reason.starts_with("provider_refused"), "{}", line.reason);
    assert_eq!(line.balance, 5_000);
    // A second drain settles nothing more and refunds nothing more.
    sender(&app, &base).drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(app.count_events("TokensRefunded").await, 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_send_the_conversation_refuses_is_refunded(pool: PgPool) {
    let app = TestApp::new(pool).await;
    // Written 30 hours ago: a free-form send is outside the service window.
    let id = conversation(&app, 30).await;
    set_price(&app, features::MESSAGE, 1_000).await;
    fund(&app, 4_000).await;
    let reply = app
        .gql(
            "acme",
            Role::Agent,
            SEND_MESSAGE,
            json!({"id": id, "text": "Hi again", "key": "k-2"}),
        )
        .await;
    assert_eq!(code(&reply), "OUTSIDE_SERVICE_WINDOW", "{reply}");
    assert_eq!(app.count_events("OutboundMessageQueued").await, 0);
    assert_eq!(app.count_events("TokensDebited").await, 1);
    assert_eq!(app.count_events("TokensRefunded").await, 1);
    assert_eq!(available(&app).await, 4_000);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_tenant_without_a_price_list_is_unmetered(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::accepting();
    let base = graph.serve().await;
    let id = conversation(&app, 1).await;
    let reply = app
        .gql(
            "acme",
            Role::Agent,
            SEND_MESSAGE,
            json!({"id": id, "text": "Free", "key": "k-1"}),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    app.project().await;
    sender(&app, &base).drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(graph.count(), 1);
    let wallet_events: i64 = app
        .count("SELECT count(*) FROM events WHERE aggregate_type = 'Wallet'")
        .await;
    assert_eq!(wallet_events, 0);
    let metering = Metering::new(app.state.commands.clone());
    assert_eq!(
        metering
            .price_of(&tenant("acme"), features::REPORT)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );
    assert_eq!(
        metering
            .charge(features::REPORT, 3, "report-1", &meta("acme"))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        Charge::Unmetered
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn charges_are_priced_by_quantity_and_refunded_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    set_price(&app, features::BROADCAST_RECIPIENT, 300).await;
    fund(&app, 2_000).await;
    let metering = Metering::new(app.state.commands.clone());
    let m = meta("acme");
    assert_eq!(
        metering
            .price_of(&tenant("acme"), features::BROADCAST_RECIPIENT)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        Some(300)
    );
    let charge = metering
        .charge(features::BROADCAST_RECIPIENT, 5, "b-1", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        charge,
        Charge::Debited {
            wallet_id: MAIN_WALLET.into(),
            reference: "b-1".into(),
            amount: 1_500,
            fresh: true
        }
    );
    // A retry of the same action is charged once.
    let again = metering
        .charge(features::BROADCAST_RECIPIENT, 5, "b-1", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        again,
        Charge::Debited {
            fresh: false,
            amount: 1_500,
            ..
        }
    ));
    assert_eq!(available(&app).await, 500);
    match metering.charge(features::BROADCAST_RECIPIENT, 2, "b-2", &m).await {
        Err(CommandError::Rejected(DomainError::Wallet(WalletError::InsufficientBalance { required, available }))) => {
            assert_eq!((required, available), (600, 500));
        }
        other => panic!("expected INSUFFICIENT_BALANCE, got {other:?}"),
    }
    assert_eq!(
        metering
            .refund("b-1", RefundReason::SendFailed, &m)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        Some(1_500)
    );
    assert_eq!(
        metering
            .refund("b-1", RefundReason::ProviderRefused, &m)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );
    // Nothing was charged for a refused action, nor for one never charged.
    assert_eq!(
        metering
            .refund("b-2", RefundReason::SendFailed, &m)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );
    assert_eq!(
        metering
            .refund("nope", RefundReason::SendFailed, &m)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );
    assert_eq!(available(&app).await, 2_000);
    // Refusals of the price list and of a charge.
    assert!(matches!(
        metering.set_price(&tenant("acme"), "message", Some(-1), "x").await,
        Err(CommandError::InvalidInput(_))
    ));
    assert!(matches!(
        metering.set_price(&tenant("acme"), "Bad Feature", Some(1), "x").await,
        Err(CommandError::InvalidInput(_))
    ));
    assert!(matches!(
        metering.charge(features::BROADCAST_RECIPIENT, 0, "b-3", &m).await,
        Err(CommandError::InvalidInput(_))
    ));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn finance_sets_prices_through_graphql_and_agents_cannot(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let set = "mutation($feature: String!, $price: Int) { setPrice(feature: $feature, unitPrice: $price) { prices { feature unitPrice } } }";
    let reply = app
        .gql(
            "acme",
            Role::Finance,
            set,
            json!({"feature": "message", "price": 1_200}),
        )
        .await;
    assert_eq!(
        reply["data"]["setPrice"]["prices"],
        json!([{"feature": "message", "unitPrice": 1_200}]),
        "{reply}"
    );
    let reply = app
        .gql("acme", Role::Agent, set, json!({"feature": "message", "price": 1}))
        .await;
    assert_eq!(code(&reply), "FORBIDDEN", "{reply}");
    let reply = app
        .gql("acme", Role::Admin, set, json!({"feature": "message", "price": -5}))
        .await;
    assert_eq!(code(&reply), "INVALID_INPUT", "{reply}");
    // Issue 17: a price for a feature Chronicle does not meter was stored.
    let reply = app
        .gql("acme", Role::Finance, set, json!({"feature": "bogus", "price": 100}))
        .await;
    assert_eq!(code(&reply), "INVALID_INPUT", "{reply}");
    assert!(
        reply["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("message, broadcast_recipient, report")),
        "{reply}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM price_list WHERE feature = 'bogus'")
            .await,
        0
    );
    let reply = app
        .gql("acme", Role::Auditor, "{ priceList { feature unitPrice } }", json!({}))
        .await;
    assert_eq!(
        reply["data"]["priceList"],
        json!([{"feature": "message", "unitPrice": 1_200}])
    );
    // Removing the price makes the feature unmetered again.
    let reply = app
        .gql("acme", Role::Owner, set, json!({"feature": "message", "price": null}))
        .await;
    assert_eq!(reply["data"]["setPrice"]["prices"], json!([]), "{reply}");
}

mod follow_ups {
    //! Call follow-up templates are metered like a user's send.

    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use chronicle_api::config::Secret;
    use chronicle_commands::intake::telephony::sign_twilio;

    const TWILIO_TOKEN: &str = "test-twilio-auth-token";
    const CALLER: &str = "+263771000009";

    async fn app(pool: PgPool) -> TestApp {
        let mut settings = settings(false);
        settings.twilio_auth_token = Some(Secret::new(TWILIO_TOKEN));
        settings.public_url = "https://chronicle.example".into();
        let app = TestApp::with_settings(pool, settings).await;
        app.tenant_with_number("acme", NUMBER).await;
        app
    }

    fn encode(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// A missed call from the customer, signed as Twilio would.
    async fn missed_call(app: &TestApp, sid: &str) {
        let params: Vec<(String, String)> = [
            ("AccountSid", "AC0123"),
            ("CallSid", sid),
            ("CallStatus", "no-answer"),
            ("Direction", "inbound"),
            ("From", CALLER),
            ("To", "+15550001111"),
            ("Timestamp", "Sun, 22 Nov 2026 10:00:00 +0000"),
            ("CallDuration", "0"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let path = "/webhooks/telephony/twilio/acme";
        let body = params
            .iter()
            .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let signature = sign_twilio(TWILIO_TOKEN, &format!("https://chronicle.example{path}"), &params);
        let request = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", signature)
            .body(Body::from(body))
            .unwrap_or_else(|e| panic!("{e}"));
        let (status, reply) = app.send(request).await;
        assert!(status.is_success(), "{status} {reply}");
    }

    /// The customer wrote on WhatsApp, the template is approved, missed calls are followed up.
    async fn setting(app: &TestApp) {
        let body = delivery(
            NUMBER,
            &[(CUSTOMER, "Chipo")],
            vec![text_message(
                CUSTOMER,
                &wamid(CUSTOMER, 1),
                chrono::Utc::now().timestamp() - 600,
                "Call me back please",
            )],
            vec![],
        );
        assert_eq!(app.post_delivery(&body).await.0, StatusCode::OK);
        app.drain().await;
        for mutation in [
            "mutation { submitTemplate(input: { name: \"missed_call\", language: \"en_US\", category: UTILITY,
                         body: \"Sorry we missed your call.\" }) { id } }",
            "mutation { approveTemplate(name: \"missed_call\", language: \"en_US\", providerTemplateId: \"wa-1\") { id } }",
            "mutation { setCallFollowUpRule(rule: { delayMinutes: 1, outcomes: [NO_ANSWER], templateName: \"missed_call\",
                         language: \"en_US\" }) { id } }",
        ] {
            let reply = app.gql("acme", Role::Owner, mutation, json!({})).await;
            assert!(reply["errors"].is_null(), "{reply}");
        }
    }

    async fn round(app: &TestApp, sender: &WhatsAppSender) {
        for _ in 0..2 {
            app.drain().await;
            app.project().await;
            app.state
                .workers
                .follow_ups
                .drain()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            app.project().await;
            sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
        }
        app.project().await;
        app.state
            .workers
            .follow_ups
            .drain()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
    async fn a_follow_up_is_charged_once_from_the_main_wallet(pool: PgPool) {
        let app = app(pool).await;
        setting(&app).await;
        set_price(&app, features::MESSAGE, 700).await;
        fund(&app, 1_000).await;
        let graph = Graph::accepting();
        let sender = sender(&app, &graph.serve().await);
        missed_call(&app, "CA100").await;
        round(&app, &sender).await;
        assert_eq!(graph.count(), 1);
        assert_eq!(app.count_events("TokensDebited").await, 1);
        assert_eq!(available(&app).await, 300);
    }

    #[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
    async fn a_follow_up_the_wallet_cannot_pay_is_not_sent_and_is_given_up(pool: PgPool) {
        let app = app(pool).await;
        setting(&app).await;
        set_price(&app, features::MESSAGE, 700).await;
        let graph = Graph::accepting();
        let sender = sender(&app, &graph.serve().await);
        missed_call(&app, "CA101").await;
        round(&app, &sender).await;
        assert_eq!(graph.count(), 0);
        assert_eq!(app.count_events("OutboundMessageQueued").await, 0);
        assert_eq!(app.count_events("DebitRefused").await, 1);
        assert_eq!(app.count_events("FollowUpFailed").await, 1);
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_repeated_key_refused_by_the_conversation_keeps_the_charge_of_the_message_it_queued(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 1).await;
    set_price(&app, features::MESSAGE, 1_000).await;
    fund(&app, 3_000).await;
    let reply = app
        .gql(
            "acme",
            Role::Agent,
            SEND_MESSAGE,
            json!({"id": id, "text": "First", "key": "k-1"}),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    // The same key with another text: whatever the conversation answers, the first message
    // was queued, so its charge stands and nothing is charged twice.
    let _ = app
        .gql(
            "acme",
            Role::Agent,
            SEND_MESSAGE,
            json!({"id": id, "text": "Second", "key": "k-1"}),
        )
        .await;
    assert_eq!(app.count_events("OutboundMessageQueued").await, 1);
    assert_eq!(app.count_events("TokensDebited").await, 1);
    assert_eq!(app.count_events("TokensRefunded").await, 0);
    assert_eq!(available(&app).await, 2_000);
}

/// Issue 17: a template send with the wrong number of parameters was accepted and charged.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_template_send_with_the_wrong_number_of_parameters_is_refused_before_it_is_charged(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 30).await;
    set_price(&app, features::MESSAGE, 1_000).await;
    fund(&app, 4_000).await;
    let token = app.token("acme", Role::Owner);
    for mutation in [
        "mutation { submitTemplate(input: { name: \"kit_follow_up\", language: \"en\", category: UTILITY,
                     body: \"Hello {{1}}, your kit ships {{2}}.\" }) { id } }",
        "mutation { approveTemplate(name: \"kit_follow_up\", language: \"en\", providerTemplateId: \"wa-1\") { id } }",
    ] {
        let (_, reply) = app.graphql(Some(&token), mutation, json!({})).await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
    let send = "mutation($id: String!, $p: [String!]!, $key: String!) {
      sendTemplate(conversationId: $id, name: \"kit_follow_up\", language: \"en\", parameters: $p,
                   idempotencyKey: $key) { id } }";
    for (i, parameters) in [json!(["Tendai"]), json!(["a", "b", "c", "d"]), json!([])]
        .iter()
        .enumerate()
    {
        let reply = app
            .gql(
                "acme",
                Role::Agent,
                send,
                json!({"id": id, "p": parameters, "key": format!("bad-{i}")}),
            )
            .await;
        assert_eq!(code(&reply), "WRONG_PARAMETER_COUNT", "{parameters}: {reply}");
    }
    assert_eq!(app.count_events("OutboundMessageQueued").await, 0);
    assert_eq!(app.count_events("TokensDebited").await, 0);
    assert_eq!(available(&app).await, 4_000);
    // Two parameters for two variables: queued and charged once.
    let reply = app
        .gql(
            "acme",
            Role::Agent,
            send,
            json!({"id": id, "p": ["Tendai", "Friday"], "key": "good"}),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    assert_eq!(app.count_events("OutboundMessageQueued").await, 1);
    assert_eq!(available(&app).await, 3_000);
}

/// Issue 17: a send to an erased contact was accepted and charged, then failed and refunded.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_send_to_an_erased_contact_is_refused_before_it_is_charged(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = conversation(&app, 1).await;
    set_price(&app, features::MESSAGE, 1_000).await;
    fund(&app, 4_000).await;
    let erase = "mutation($id: String!) { eraseContact(contactId: $id) { id } }";
    let reply = app.gql("acme", Role::Owner, erase, json!({"id": id})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    let reply = app
        .gql(
            "acme",
            Role::Agent,
            SEND_MESSAGE,
            json!({"id": id, "text": "Hello?", "key": "k-1"}),
        )
        .await;
    assert_eq!(code(&reply), "CONTACT_ERASED", "{reply}");
    assert_eq!(app.count_events("OutboundMessageQueued").await, 0);
    assert_eq!(app.count_events("TokensDebited").await, 0);
    assert_eq!(available(&app).await, 4_000);
}
