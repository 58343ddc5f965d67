//! Customers (issue 17: "a won lead becomes a customer with a read model (orders,
//! installations, service history, lifetime value), as the solar CRM expects"): who becomes a
//! customer (a lead won, an order placed), what the read model shows through GraphQL, who may
//! read it, and that a rebuild gives the same rows.

use axum::http::StatusCode;
use chronicle_api::auth::Role;
use chronicle_commands::installation::{installation_id_for_order, InstallationService, InstallationWorker};
use chronicle_domain::installation::PaymentProvider;
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const NUMBER: &str = "555000555";

async fn ok(app: &TestApp, role: Role, query: &str, variables: Value) -> Value {
    // Boxed: a whole request's future, several of them in one test, outgrow a debug test
    // thread's stack.
    let reply = Box::pin(app.gql("acme", role, query, variables)).await;
    assert!(reply["errors"].is_null(), "{reply}");
    reply["data"].clone()
}

/// Projects, works the installation process managers, projects again.
async fn settle(app: &TestApp) {
    app.project().await;
    InstallationWorker::new(app.state.commands.clone(), app.keys())
        .drain()
        .await
        .unwrap_or_else(|e| panic!("process managers: {e}"));
    app.project().await;
}

/// Moves a new lead stage by stage to negotiation (a lead is won from there).
async fn walk_to_negotiation(app: &TestApp, lead: &str) {
    for to in ["CONTACTED", "QUALIFIED", "PROPOSAL_SENT", "NEGOTIATION"] {
        ok(
            app,
            Role::Owner,
            "mutation($id: ID!, $to: LeadStage!) { advanceLead(id: $id, to: $to) { id } }",
            json!({"id": lead, "to": to}),
        )
        .await;
    }
}

const PLACE: &str =
    "mutation($c: String!, $items: [OrderItemInput!]!) { placeOrder(customerId: $c, items: $items) { id } }";
const WIN: &str = "mutation($id: ID!, $customer: String) { winLead(id: $id, customerId: $customer) { id } }";
const CAPTURE: &str = "mutation($input: CaptureLeadInput!) { captureLead(input: $input) { id } }";
const CUSTOMER: &str = "query($id: String!) { customer(id: $id) {
    id name since wonLeadId wonAt firstOrderAt orderCount installationCount openServiceRequestCount
    lifetimeValue { currency amountMinor }
    orders { totalCount nodes { id status paidMinor currency } }
    installations { totalCount nodes { id status systemSizeW } }
    serviceRequests { totalCount nodes { id status } } } }";
const CUSTOMERS: &str = "{ customers(first: 10) { totalCount edges { node { id wonLeadId orderCount
    lifetimeValue { currency amountMinor } } } } }";

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_won_lead_becomes_a_customer_with_orders_installations_service_history_and_lifetime_value(pool: PgPool) {
    // Boxed: the scenario's future is too large for a debug test thread's stack.
    Box::pin(won_lead_scenario(pool)).await;
}

async fn won_lead_scenario(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    // Tendai writes on WhatsApp (a contact with a name).
    let body = delivery(
        NUMBER,
        &[("263771000001", "Tendai Moyo")],
        vec![text_message(
            "263771000001",
            &wamid("263771000001", 1),
            chrono::Utc::now().timestamp() - 60,
            "I want solar",
        )],
        vec![],
    );
    assert_eq!(app.post_delivery(&body).await.0, StatusCode::OK);
    app.drain().await;
    app.project().await;
    let tendai: String = sqlx::query_scalar("SELECT contact_id FROM contacts")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A lead for Tendai, won: a customer.
    let lead = ok(
        &app,
        Role::Owner,
        CAPTURE,
        json!({"input": {"idempotencyKey": "k1", "name": "Tendai", "phone": "+263771000001", "interest": "solar"}}),
    )
    .await["captureLead"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    walk_to_negotiation(&app, &lead).await;
    ok(&app, Role::Owner, WIN, json!({"id": lead, "customer": tendai})).await;
    // A solar order paid in full (USD) opens an installation; a furniture order half paid (KES).
    let solar = ok(
        &app,
        Role::Agent,
        PLACE,
        json!({"c": tendai, "items": [{"sku": "panel-550w", "description": "550 W panel", "quantity": 10,
               "unitPriceMinor": 20000, "currency": "USD", "installable": "SOLAR", "capacityW": 550}]}),
    )
    .await["placeOrder"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let sofa = ok(
        &app,
        Role::Agent,
        PLACE,
        json!({"c": tendai, "items": [{"sku": "sofa", "description": "Sofa", "quantity": 1,
               "unitPriceMinor": 8000000, "currency": "KES"}]}),
    )
    .await["placeOrder"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let metadata = CommandMetadata {
        tenant_id: tenant.clone(),
        actor: Actor::System {
            component: "test".into(),
        },
        correlation_id: "c-1".into(),
        causation_id: "test".into(),
    };
    let service = InstallationService::new(app.state.commands.clone(), app.keys());
    for (order, reference, amount, currency) in [(&solar, "r-1", 200_000, "USD"), (&sofa, "r-2", 4_000_000, "KES")] {
        service
            .record_payment(order, PaymentProvider::Cash, reference, amount, currency, &metadata)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    ok(
        &app,
        Role::Agent,
        "mutation($c: String!) { openServiceRequest(input: { kind: \"repair\", priority: NORMAL, customerId: $c,
            description: \"The inverter beeps\" }) { id } }",
        json!({"c": tendai}),
    )
    .await;
    // Rudo bought without a lead (a customer too); Farai's lead is open (not a customer).
    app.register_contact("acme", "ct_rudo", "+263771000002").await;
    ok(
        &app,
        Role::Agent,
        PLACE,
        json!({"c": "ct_rudo", "items": [{"sku": "dish", "description": "Dish", "quantity": 1,
               "unitPriceMinor": 50000, "currency": "USD", "installable": "STARLINK"}]}),
    )
    .await;
    ok(
        &app,
        Role::Owner,
        CAPTURE,
        json!({"input": {"idempotencyKey": "k3", "name": "Farai", "phone": "+263771000003", "interest": "solar"}}),
    )
    .await;
    settle(&app).await;

    let data = ok(&app, Role::Auditor, CUSTOMER, json!({"id": tendai})).await;
    let customer = &data["customer"];
    assert_eq!(customer["name"], "Tendai Moyo");
    assert_eq!(customer["wonLeadId"], lead.as_str());
    assert_eq!(
        customer["since"], customer["wonAt"],
        "a customer since the lead was won"
    );
    assert_eq!(
        (
            customer["orderCount"].clone(),
            customer["installationCount"].clone(),
            customer["openServiceRequestCount"].clone()
        ),
        (json!(2), json!(1), json!(1))
    );
    assert_eq!(
        customer["lifetimeValue"],
        json!([{"currency": "KES", "amountMinor": 4_000_000}, {"currency": "USD", "amountMinor": 200_000}]),
        "what was received, per currency"
    );
    assert_eq!(customer["orders"]["totalCount"], 2);
    assert_eq!(
        customer["orders"]["nodes"],
        json!([{"id": sofa, "status": "PLACED", "paidMinor": 4_000_000, "currency": "KES"},
               {"id": solar, "status": "PAID", "paidMinor": 200_000, "currency": "USD"}])
    );
    assert_eq!(
        customer["installations"]["nodes"],
        json!([{"id": installation_id_for_order(&tenant, &solar), "status": "PENDING", "systemSizeW": 5500}])
    );
    assert_eq!(customer["serviceRequests"]["totalCount"], 1);
    assert_eq!(customer["serviceRequests"]["nodes"].as_array().map(Vec::len), Some(1));

    // Finance reads customers, but not contacts, leads' outcomes: those fields answer null.
    let data = ok(
        &app,
        Role::Finance,
        "query($id: String!) { customer(id: $id) { name wonLeadId wonAt installationCount
            openServiceRequestCount orderCount } }",
        json!({"id": tendai}),
    )
    .await;
    assert_eq!(
        data["customer"],
        json!({"name": null, "wonLeadId": null, "wonAt": null, "installationCount": 1,
               "openServiceRequestCount": 1, "orderCount": 2})
    );
    let data = ok(&app, Role::Finance, CUSTOMERS, json!({})).await;
    assert_eq!(data["customers"]["totalCount"], 2, "{data}");
    let rudo = data["customers"]["edges"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["node"]["id"] == "ct_rudo"))
        .map(|e| e["node"].clone())
        .unwrap_or_else(|| panic!("{data}"));
    assert_eq!(
        rudo,
        json!({"id": "ct_rudo", "wonLeadId": null, "orderCount": 1, "lifetimeValue": []}),
        "a customer by an order, nothing paid yet"
    );
    let data = ok(&app, Role::Agent, CUSTOMER, json!({"id": "ct_nobody"})).await;
    assert_eq!(data["customer"], Value::Null);

    // A lead won without naming the customer makes its contact the customer.
    let farai = ok(
        &app,
        Role::Owner,
        CAPTURE,
        json!({"input": {"idempotencyKey": "k4", "name": "Chipo", "phone": "+263771000004", "interest": "solar"}}),
    )
    .await["captureLead"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    walk_to_negotiation(&app, &farai).await;
    ok(&app, Role::Owner, WIN, json!({"id": farai})).await;
    app.project().await;
    let won_for: String = sqlx::query_scalar("SELECT customer_id FROM customers WHERE won_lead_id = $1")
        .bind(&farai)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(won_for.starts_with("ct_"), "{won_for}");

    // Who reads: the roles that read orders; technicians and integrators do not.
    for role in [Role::Technician, Role::Integrator] {
        let reply = Box::pin(app.gql("acme", role, CUSTOMERS, json!({}))).await;
        assert_eq!(error_code(&reply), "FORBIDDEN", "{role:?}: {reply}");
    }
    // Another tenant sees none of them.
    app.tenant_with_number("globex", "666000666").await;
    let reply = Box::pin(app.gql("globex", Role::Owner, CUSTOMERS, json!({}))).await;
    assert_eq!(reply["data"]["customers"]["totalCount"], 0, "{reply}");

    // A rebuild gives the same rows.
    let live = table_rows(&app.pool, false).await;
    app.rebuild("customers").await;
    assert_eq!(table_rows(&app.pool, false).await, live);
}
