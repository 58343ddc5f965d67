//! Warranties, warranty claims, service requests and maintenance contracts from end to end
//! (issue 4): every command's success and refusals through the real path (service desk or
//! GraphQL → commands → log → projectors → read models → GraphQL); per-tenant ticket numbers;
//! the SLA breach flagged once by the sweeper (database clock) and shown in GraphQL; a claim
//! outside its warranty period refused with its code through GraphQL; automatic renewal; roles
//! and tenant isolation.

use axum::http::StatusCode;
use chronicle_api::auth::Role;
use chronicle_commands::error::CommandError;
use chronicle_commands::installation::{NewServiceRequest, ServiceDesk, ServiceSweeper};
use chronicle_domain::installation::{
    warranty_local_id, Priority, RegisterWarranty, StartMaintenanceContract, WarrantyCommand,
};
use chronicle_domain::metadata::CommandMetadata;
use chronicle_domain::pii::Envelope;
use chronicle_domain::tenant::TenantId;
use chronicle_tests::error_code as code;
use chronicle_tests::*;
use chrono::{DateTime, Duration, Months, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

const CUSTOMER: &str = "ct_customer_1";

fn md(tenant: &TenantId) -> CommandMetadata {
    chronicle_tests::user_metadata(tenant.as_str(), "ops-1", "admin")
}

fn desk(app: &TestApp) -> ServiceDesk {
    ServiceDesk::new(app.state.commands.clone(), app.keys())
}

fn sweeper(app: &TestApp) -> ServiceSweeper {
    ServiceSweeper::new(app.state.commands.clone())
}

fn refusal(e: CommandError) -> &'static str {
    e.code()
}

async fn ok(app: &TestApp, tenant: &str, role: Role, query: &str, variables: Value) -> Value {
    let reply = app.gql(tenant, role, query, variables).await;
    assert!(reply["errors"].is_null(), "{reply}");
    reply["data"].clone()
}

/// Registers the warranty of `serial` in `isr_1`, starting at `starts_at`.
async fn register(app: &TestApp, tenant: &TenantId, serial: &str, months: u32, starts_at: DateTime<Utc>) -> String {
    let id = warranty_local_id("isr_1", serial);
    app.state
        .commands
        .warranty(
            &id,
            WarrantyCommand::Register(RegisterWarranty {
                installation_id: "isr_1".into(),
                serial: serial.into(),
                kind: "inverter".into(),
                customer_id: CUSTOMER.into(),
                warranty_months: months,
                starts_at,
                by: "commissioning".into(),
                at: starts_at,
            }),
            &md(tenant),
        )
        .await
        .unwrap_or_else(|e| panic!("registering: {e}"));
    id
}

fn request(priority: Priority, at: DateTime<Utc>) -> NewServiceRequest {
    NewServiceRequest {
        kind: "repair".into(),
        priority,
        customer_id: CUSTOMER.into(),
        installation_id: Some("isr_1".into()),
        description: "The inverter beeps at night".into(),
        idempotency_key: None,
        at,
    }
}

const FILE: &str = "mutation($w: String!, $d: String!, $c: String) {
    fileWarrantyClaim(input: { warrantyId: $w, description: $d, claimId: $c }) { id } }";
const CLAIMS: &str = "{ warrantyClaims { nodes { id warrantyId status customerId decidedBy resolvedAt } } }";
const REQUESTS: &str = "query($s: ServiceStatus, $p: ServicePriority, $b: Boolean, $f: Int = 20, $a: String) {
    serviceRequests(status: $s, priority: $p, breached: $b, first: $f, after: $a) {
      edges { cursor node { id ticketNumber ticket kind priority status technicianId assignedTechnician { id name } openedAt slaDueAt breached breachedAt } }
      pageInfo { hasNextPage } } }";

// ---------------------------------------------------------------------------------------------
// Warranties

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_warranty_registered_twice_is_recorded_once_and_listed_with_its_period(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let acme = app.tenant_with_number("acme", "555000001").await;
    let start = Utc::now() - Duration::days(10);
    let id = register(&app, &acme, "SN-INV-1", 24, start).await;
    register(&app, &acme, "SN-INV-1", 60, start + Duration::days(1)).await;
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'WarrantyRegistered'")
            .await,
        1
    );
    app.project().await;
    let data = ok(
        &app,
        "acme",
        Role::Agent,
        "query($i: String) { warranties(filter: { installationId: $i, status: ACTIVE }) { nodes {
            id serial kind customerId warrantyMonths startsAt endsAt status claims } } }",
        json!({ "i": "isr_1" }),
    )
    .await;
    let list = data["warranties"]["nodes"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{data}");
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["warrantyMonths"], 24);
    let ends: DateTime<Utc> = list[0]["endsAt"].as_str().unwrap().parse().unwrap();
    let expected = start.checked_add_months(Months::new(24)).unwrap();
    assert_eq!(ends.timestamp(), expected.timestamp());
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_warranty_without_a_period_is_refused_with_its_code(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let acme = app.tenant_with_number("acme", "555000001").await;
    let e = app
        .state
        .commands
        .warranty(
            &warranty_local_id("isr_1", "SN-0"),
            WarrantyCommand::Register(RegisterWarranty {
                installation_id: "isr_1".into(),
                serial: "SN-0".into(),
                kind: "cable".into(),
                customer_id: CUSTOMER.into(),
                warranty_months: 0,
                starts_at: Utc::now(),
                by: "commissioning".into(),
                at: Utc::now(),
            }),
            &md(&acme),
        )
        .await
        .unwrap_err();
    assert_eq!(refusal(e), "INVALID_WARRANTY_PERIOD");
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

// ---------------------------------------------------------------------------------------------
// Claims

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_claim_is_filed_reviewed_decided_and_resolved_through_graphql(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "555000001").await;
    let acme = tenant("acme");
    let warranty = register(&app, &acme, "SN-INV-1", 12, Utc::now() - Duration::days(30)).await;
    let vars = json!({ "w": warranty, "d": "Inverter dead since Tuesday", "c": "claim_1" });
    let filed = ok(&app, "acme", Role::Agent, FILE, vars.clone()).await;
    assert_eq!(filed["fileWarrantyClaim"]["id"], "claim_1");
    // Filing again with the same id records nothing.
    ok(&app, "acme", Role::Agent, FILE, vars).await;
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'WarrantyClaimFiled'")
            .await,
        1
    );
    // The description is sealed: the log never holds it in the clear.
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE payload::text LIKE '%Tuesday%'")
            .await,
        0
    );
    // Deciding before the review is refused.
    let reply = app
        .gql(
            "acme",
            Role::Admin,
            "mutation { decideWarrantyClaim(claimId: \"claim_1\", decision: APPROVED) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&reply), "CLAIM_MOVE_NOT_ALLOWED", "{reply}");
    ok(
        &app,
        "acme",
        Role::Admin,
        "mutation { startWarrantyClaimReview(claimId: \"claim_1\") { id } }",
        json!({}),
    )
    .await;
    ok(
        &app,
        "acme",
        Role::Admin,
        "mutation { decideWarrantyClaim(claimId: \"claim_1\", decision: APPROVED, note: \"Covered\") { id } }",
        json!({}),
    )
    .await;
    // A decision is not reversed.
    let reply = app
        .gql(
            "acme",
            Role::Admin,
            "mutation { decideWarrantyClaim(claimId: \"claim_1\", decision: REJECTED) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&reply), "CLAIM_MOVE_NOT_ALLOWED", "{reply}");
    ok(
        &app,
        "acme",
        Role::Admin,
        "mutation { resolveWarrantyClaim(claimId: \"claim_1\", resolution: \"Inverter replaced\") { id } }",
        json!({}),
    )
    .await;
    app.project().await;
    let data = ok(&app, "acme", Role::Auditor, CLAIMS, json!({})).await;
    let claim = &data["warrantyClaims"]["nodes"][0];
    assert_eq!(claim["status"], "RESOLVED", "{data}");
    assert_eq!(claim["warrantyId"], warranty);
    assert_eq!(claim["customerId"], CUSTOMER);
    assert_eq!(claim["decidedBy"], "user-1");
    let data = ok(
        &app,
        "acme",
        Role::Agent,
        "{ warranties { nodes { id claims } } }",
        json!({}),
    )
    .await;
    assert_eq!(data["warranties"]["nodes"][0]["claims"], 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_claim_outside_the_warranty_period_is_refused_with_its_code_through_graphql(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let acme = app.tenant_with_number("acme", "555000001").await;
    // A 12-month warranty that started 13 months ago has ended.
    let start = Utc::now().checked_sub_months(Months::new(13)).unwrap();
    let warranty = register(&app, &acme, "SN-OLD", 12, start).await;
    let reply = app
        .gql(
            "acme",
            Role::Agent,
            FILE,
            json!({ "w": warranty, "d": "Broken", "c": "claim_late" }),
        )
        .await;
    assert_eq!(code(&reply), "OUTSIDE_WARRANTY_PERIOD", "{reply}");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'WarrantyClaimFiled'")
            .await,
        0
    );
    app.project().await;
    let data = ok(&app, "acme", Role::Agent, CLAIMS, json!({})).await;
    assert_eq!(data["warrantyClaims"]["nodes"], json!([]));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_claim_on_an_unknown_or_voided_warranty_is_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let acme = app.tenant_with_number("acme", "555000001").await;
    let reply = app
        .gql(
            "acme",
            Role::Agent,
            FILE,
            json!({ "w": "warranty_isr_1/NOPE", "d": "Broken" }),
        )
        .await;
    assert_eq!(code(&reply), "WARRANTY_NOT_ACTIVE", "{reply}");
    let warranty = register(&app, &acme, "SN-VOID", 12, Utc::now() - Duration::days(1)).await;
    app.state
        .commands
        .warranty(
            &warranty,
            WarrantyCommand::Void {
                reason: Envelope {
                    enc: "aes256gcm.v1".into(),
                    nonce: "n".into(),
                    ciphertext: "c".into(),
                },
                by: "ops".into(),
                at: Utc::now(),
            },
            &md(&acme),
        )
        .await
        .unwrap();
    let reply = app
        .gql("acme", Role::Agent, FILE, json!({ "w": warranty, "d": "Broken" }))
        .await;
    assert_eq!(code(&reply), "WARRANTY_NOT_ACTIVE", "{reply}");
    // Voiding an unknown warranty is refused.
    let e = app
        .state
        .commands
        .warranty(
            "warranty_isr_9/X",
            WarrantyCommand::Void {
                reason: Envelope {
                    enc: "aes256gcm.v1".into(),
                    nonce: "n".into(),
                    ciphertext: "c".into(),
                },
                by: "ops".into(),
                at: Utc::now(),
            },
            &md(&acme),
        )
        .await
        .unwrap_err();
    assert_eq!(refusal(e), "UNKNOWN_WARRANTY");
    app.project().await;
    let data = ok(
        &app,
        "acme",
        Role::Agent,
        "{ warranties(filter: { status: VOIDED }) { nodes { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(data["warranties"]["nodes"][0]["id"], warranty);
    // Resolving or reviewing a claim that was never filed is refused.
    for mutation in [
        "mutation { startWarrantyClaimReview(claimId: \"claim_none\") { id } }",
        "mutation { resolveWarrantyClaim(claimId: \"claim_none\", resolution: \"x\") { id } }",
    ] {
        let reply = app.gql("acme", Role::Admin, mutation, json!({})).await;
        assert_eq!(code(&reply), "UNKNOWN_CLAIM", "{reply}");
    }
    let reply = app
        .gql(
            "acme",
            Role::Admin,
            "mutation { startWarrantyClaimReview(claimId: \"not-a-claim\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&reply), "BAD_CLAIM_ID", "{reply}");
}

// ---------------------------------------------------------------------------------------------
// Service requests

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn ticket_numbers_are_sequential_per_tenant_and_the_sla_runs_from_opening(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let acme = app.tenant_with_number("acme", "555000001").await;
    let globex = app.tenant_with_number("globex", "555000002").await;
    let now = Utc::now();
    let mut tickets = vec![];
    for _ in 0..3 {
        tickets.push(
            desk(&app)
                .open_request(&md(&acme), request(Priority::High, now))
                .await
                .unwrap(),
        );
    }
    let other = desk(&app)
        .open_request(&md(&globex), request(Priority::Low, now))
        .await
        .unwrap();
    assert_eq!(tickets.iter().map(|t| t.number).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(tickets[2].ticket, "SR-000003");
    assert_eq!(tickets[2].request_id, "sr_3");
    assert_eq!(other.number, 1);
    // A refused request spends no number.
    let mut blank = request(Priority::High, now);
    blank.kind = " ".into();
    assert_eq!(
        refusal(desk(&app).open_request(&md(&acme), blank).await.unwrap_err()),
        "BLANK_FIELD"
    );
    assert_eq!(
        desk(&app)
            .open_request(&md(&acme), request(Priority::Urgent, now))
            .await
            .unwrap()
            .number,
        4
    );
    app.project().await;
    let data = ok(&app, "acme", Role::Technician, REQUESTS, json!({ "f": 2 })).await;
    let edges = data["serviceRequests"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[0]["node"]["ticket"], "SR-000004");
    assert_eq!(data["serviceRequests"]["pageInfo"]["hasNextPage"], true);
    let opened: DateTime<Utc> = edges[0]["node"]["openedAt"].as_str().unwrap().parse().unwrap();
    let due: DateTime<Utc> = edges[0]["node"]["slaDueAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(due - opened, Duration::hours(4));
    let after = edges[1]["cursor"].as_str().unwrap();
    let data = ok(&app, "acme", Role::Technician, REQUESTS, json!({ "f": 10, "a": after })).await;
    let numbers: Vec<i64> = data["serviceRequests"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["ticketNumber"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![2, 1]);
    let data = ok(&app, "acme", Role::Agent, REQUESTS, json!({ "p": "URGENT" })).await;
    assert_eq!(data["serviceRequests"]["edges"].as_array().unwrap().len(), 1);
    let reply = app.gql("acme", Role::Agent, REQUESTS, json!({ "a": "garbage" })).await;
    assert_eq!(code(&reply), "BAD_CURSOR", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn opening_a_request_again_with_its_idempotency_key_returns_the_first_ticket(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "555000001").await;
    let open = "mutation($k: String) { openServiceRequest(input: { kind: \"repair\", priority: HIGH,
        customerId: \"ct_customer_1\", description: \"No power\", idempotencyKey: $k }) { id ticket { label } } }";
    let first = ok(&app, "acme", Role::Agent, open, json!({ "k": "whatsapp-msg-1" })).await;
    let again = ok(&app, "acme", Role::Agent, open, json!({ "k": "whatsapp-msg-1" })).await;
    let other = ok(&app, "acme", Role::Agent, open, json!({ "k": "whatsapp-msg-2" })).await;
    assert_eq!(first["openServiceRequest"]["ticket"]["label"], "SR-000001");
    assert_eq!(again, first);
    assert_eq!(other["openServiceRequest"]["ticket"]["label"], "SR-000002");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'ServiceRequestOpened'")
            .await,
        2
    );
    let reply = app.gql("acme", Role::Agent, open, json!({ "k": "" })).await;
    assert_eq!(code(&reply), "INVALID_INPUT", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_request_is_opened_assigned_resolved_and_closed_through_graphql_with_its_refusals(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "555000001").await;
    let data = ok(
        &app,
        "acme",
        Role::Agent,
        "mutation { openServiceRequest(input: { kind: \"repair\", priority: NORMAL, customerId: \"ct_customer_1\",
            description: \"Panel cracked by hail\" }) { id ticket { number label } } }",
        json!({}),
    )
    .await;
    assert_eq!(data["openServiceRequest"]["id"], "sr_1");
    assert_eq!(data["openServiceRequest"]["ticket"]["label"], "SR-000001");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE payload::text LIKE '%hail%'")
            .await,
        0
    );
    let reply = app
        .gql(
            "acme",
            Role::Agent,
            "mutation { openServiceRequest(input: { kind: \"\", priority: NORMAL, customerId: \"ct_customer_1\",
            description: \"x\" }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&reply), "BLANK_FIELD", "{reply}");
    // Closing before resolution is refused.
    let reply = app
        .gql(
            "acme",
            Role::Agent,
            "mutation { closeServiceRequest(requestId: \"sr_1\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&reply), "SERVICE_MOVE_NOT_ALLOWED", "{reply}");
    // Assigning an unknown request is refused; a malformed id is a bad request.
    let (tech_1, tech_2) = (
        app.user("acme", Role::Technician).await,
        app.user("acme", Role::Technician).await,
    );
    let assign = "mutation($r: String!, $t: String!) { assignServiceRequest(requestId: $r, technicianId: $t) { id } }";
    let reply = app
        .gql("acme", Role::Admin, assign, json!({"r": "sr_99", "t": tech_1}))
        .await;
    assert_eq!(code(&reply), "UNKNOWN_SERVICE_REQUEST", "{reply}");
    let reply = app
        .gql("acme", Role::Admin, assign, json!({"r": "isr_1", "t": tech_1}))
        .await;
    assert_eq!(code(&reply), "BAD_SERVICE_REQUEST_ID", "{reply}");
    ok(&app, "acme", Role::Admin, assign, json!({"r": "sr_1", "t": tech_1})).await;
    let reply = app
        .gql("acme", Role::Admin, assign, json!({"r": "sr_1", "t": " "}))
        .await;
    assert_eq!(code(&reply), "UNKNOWN_USER", "{reply}");
    ok(
        &app,
        "acme",
        Role::Technician,
        "mutation { resolveServiceRequest(requestId: \"sr_1\", resolution: \"Panel replaced\") { id } }",
        json!({}),
    )
    .await;
    let reply = app
        .gql("acme", Role::Admin, assign, json!({"r": "sr_1", "t": tech_2}))
        .await;
    assert_eq!(code(&reply), "SERVICE_MOVE_NOT_ALLOWED", "{reply}");
    ok(
        &app,
        "acme",
        Role::Agent,
        "mutation { closeServiceRequest(requestId: \"sr_1\") { id } }",
        json!({}),
    )
    .await;
    let reply = app
        .gql(
            "acme",
            Role::Technician,
            "mutation { resolveServiceRequest(requestId: \"sr_1\", resolution: \"again\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&reply), "SERVICE_MOVE_NOT_ALLOWED", "{reply}");
    app.project().await;
    let data = ok(&app, "acme", Role::Agent, REQUESTS, json!({ "s": "CLOSED" })).await;
    let node = &data["serviceRequests"]["edges"][0]["node"];
    assert_eq!(node["technicianId"], tech_1.as_str(), "{data}");
    let name: String = sqlx::query_scalar("SELECT name FROM user_accounts WHERE user_id = $1")
        .bind(&tech_1)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(node["assignedTechnician"], json!({"id": tech_1, "name": name}));
    assert_eq!(node["breached"], false);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_sweeper_flags_an_overdue_request_once_and_graphql_shows_the_breach(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let acme = app.tenant_with_number("acme", "555000001").await;
    let now = Utc::now();
    // Urgent (4 h) opened 5 h ago: overdue. Normal (24 h) opened now: not due. Urgent opened
    // 5 h ago but resolved after 1 h: resolved in time.
    let overdue = desk(&app)
        .open_request(&md(&acme), request(Priority::Urgent, now - Duration::hours(5)))
        .await
        .unwrap();
    let fresh = desk(&app)
        .open_request(&md(&acme), request(Priority::Normal, now))
        .await
        .unwrap();
    let done = desk(&app)
        .open_request(&md(&acme), request(Priority::Urgent, now - Duration::hours(5)))
        .await
        .unwrap();
    desk(&app)
        .resolve_request(
            &md(&acme),
            &done.request_id,
            "Fixed",
            now - Duration::hours(4) - Duration::minutes(30),
        )
        .await
        .unwrap();
    app.project().await;
    let pass = sweeper(&app).drain().await.unwrap();
    assert_eq!(pass.checked, 1, "{pass:?}");
    // A second sweep (the projector not caught up, the lease ended) records nothing more.
    sqlx::query("UPDATE work_leases SET not_before = now() WHERE worker = 'service-sla'")
        .execute(&app.pool)
        .await
        .unwrap();
    sweeper(&app).drain().await.unwrap();
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'ServiceSlaBreached'")
            .await,
        1
    );
    app.project().await;
    let data = ok(&app, "acme", Role::Agent, REQUESTS, json!({ "b": true })).await;
    let edges = data["serviceRequests"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{data}");
    assert_eq!(edges[0]["node"]["id"], overdue.request_id.as_str());
    assert!(edges[0]["node"]["breachedAt"].is_string());
    let data = ok(&app, "acme", Role::Agent, REQUESTS, json!({ "b": false })).await;
    let mut ids: Vec<&str> = data["serviceRequests"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![fresh.request_id.as_str(), done.request_id.as_str()]);
    // Resolving the breached request later keeps the single breach.
    desk(&app)
        .resolve_request(&md(&acme), &overdue.request_id, "Fixed late", Utc::now())
        .await
        .unwrap();
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'ServiceSlaBreached'")
            .await,
        1
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_request_resolved_after_its_due_time_is_breached_by_the_resolution(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let acme = app.tenant_with_number("acme", "555000001").await;
    let opened = desk(&app)
        .open_request(&md(&acme), request(Priority::High, Utc::now() - Duration::hours(9)))
        .await
        .unwrap();
    desk(&app)
        .resolve_request(&md(&acme), &opened.request_id, "Done", Utc::now())
        .await
        .unwrap();
    app.project().await;
    assert_eq!(sweeper(&app).drain().await.unwrap().checked, 0);
    let data = ok(
        &app,
        "acme",
        Role::Agent,
        REQUESTS,
        json!({ "b": true, "s": "RESOLVED" }),
    )
    .await;
    assert_eq!(data["serviceRequests"]["edges"].as_array().unwrap().len(), 1, "{data}");
}

// ---------------------------------------------------------------------------------------------
// Maintenance contracts

const CONTRACTS: &str =
    "{ maintenanceContracts { nodes { id endsAt status autoRenew renewals lastRenewalReference } } }";

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_contract_is_started_renewed_from_its_old_end_once_per_reference_and_cancelled(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "555000001").await;
    let start = "2026-01-15T00:00:00Z";
    let vars = json!({ "s": start });
    let started = "mutation($s: DateTime!) { startMaintenanceContract(input: { contractId: \"mc_1\",
        customerId: \"ct_customer_1\", startsAt: $s, termMonths: 12, annualValueMinor: 120000, currency: \"USD\" }) { id } }";
    ok(&app, "acme", Role::Finance, started, vars.clone()).await;
    ok(&app, "acme", Role::Finance, started, vars).await;
    let reply = app.gql(
        "acme",
        Role::Finance,
        "mutation($s: DateTime!) { startMaintenanceContract(input: { contractId: \"mc_2\", customerId: \"ct_customer_1\",
            startsAt: $s, termMonths: 12, annualValueMinor: 1, currency: \"usd\" }) { id } }",
        json!({ "s": start }),
    )
    .await;
    assert_eq!(code(&reply), "INVALID_CURRENCY", "{reply}");
    let renew = "mutation($r: String!, $m: Int!) { renewMaintenanceContract(contractId: \"mc_1\", reference: $r, termMonths: $m) { id } }";
    ok(&app, "acme", Role::Finance, renew, json!({ "r": "INV-1", "m": 12 })).await;
    // The same reference again records nothing, even with another term.
    ok(&app, "acme", Role::Finance, renew, json!({ "r": "INV-1", "m": 24 })).await;
    let reply = app
        .gql("acme", Role::Finance, renew, json!({ "r": "INV-2", "m": 0 }))
        .await;
    assert_eq!(code(&reply), "INVALID_TERM", "{reply}");
    let reply = app
        .gql(
            "acme",
            Role::Finance,
            "mutation { renewMaintenanceContract(contractId: \"mc_404\", reference: \"INV-9\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&reply), "UNKNOWN_CONTRACT", "{reply}");
    let reply = app
        .gql(
            "acme",
            Role::Admin,
            "mutation { cancelMaintenanceContract(contractId: \"mc_404\", reason: \"x\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&reply), "UNKNOWN_CONTRACT", "{reply}");
    app.project().await;
    let data = ok(&app, "acme", Role::Auditor, CONTRACTS, json!({})).await;
    let contract = &data["maintenanceContracts"]["nodes"][0];
    assert_eq!(contract["endsAt"], "2028-01-15T00:00:00+00:00", "{data}");
    assert_eq!(contract["renewals"], 1);
    assert_eq!(contract["lastRenewalReference"], "INV-1");
    ok(
        &app,
        "acme",
        Role::Admin,
        "mutation { setMaintenanceAutoRenewal(contractId: \"mc_1\", autoRenew: true) { id } }",
        json!({}),
    )
    .await;
    ok(
        &app,
        "acme",
        Role::Admin,
        "mutation { cancelMaintenanceContract(contractId: \"mc_1\", reason: \"Moved house\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE payload::text LIKE '%Moved house%'")
            .await,
        0
    );
    let reply = app
        .gql("acme", Role::Finance, renew, json!({ "r": "INV-3", "m": 12 }))
        .await;
    assert_eq!(code(&reply), "CONTRACT_CANCELLED", "{reply}");
    let reply = app
        .gql(
            "acme",
            Role::Admin,
            "mutation { setMaintenanceAutoRenewal(contractId: \"mc_1\", autoRenew: true) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&reply), "CONTRACT_CANCELLED", "{reply}");
    app.project().await;
    let data = ok(&app, "acme", Role::Auditor, CONTRACTS, json!({})).await;
    assert_eq!(data["maintenanceContracts"]["nodes"][0]["status"], "CANCELLED");
    assert_eq!(data["maintenanceContracts"]["nodes"][0]["autoRenew"], false);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_sweeper_renews_a_lapsed_auto_renewing_contract_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let acme = app.tenant_with_number("acme", "555000001").await;
    let start = Utc::now().checked_sub_months(Months::new(13)).unwrap();
    for (id, auto_renew) in [("mc_auto", true), ("mc_manual", false)] {
        desk(&app)
            .start_contract(
                &md(&acme),
                id,
                StartMaintenanceContract {
                    customer_id: CUSTOMER.into(),
                    installation_id: Some("isr_1".into()),
                    starts_at: start,
                    term_months: 12,
                    annual_value_minor: 50_000,
                    currency: "ZAR".into(),
                    auto_renew,
                    by: "sales".into(),
                    at: start,
                },
            )
            .await
            .unwrap();
    }
    app.project().await;
    assert_eq!(sweeper(&app).drain().await.unwrap().renewed, 1);
    // The projector has not caught up: a second pass (lease expired) renews nothing more.
    sqlx::query("UPDATE work_leases SET not_before = now() WHERE worker = 'maintenance-renewals'")
        .execute(&app.pool)
        .await
        .unwrap();
    sweeper(&app).drain().await.unwrap();
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'MaintenanceContractRenewed'")
            .await,
        1
    );
    app.project().await;
    assert_eq!(sweeper(&app).drain().await.unwrap().renewed, 0);
    let data = ok(&app, "acme", Role::Finance, CONTRACTS, json!({})).await;
    let contracts = data["maintenanceContracts"]["nodes"].as_array().unwrap();
    let auto = contracts.iter().find(|c| c["id"] == "mc_auto").unwrap();
    let ends: DateTime<Utc> = auto["endsAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        ends.timestamp(),
        start.checked_add_months(Months::new(24)).unwrap().timestamp()
    );
    assert!(auto["lastRenewalReference"].as_str().unwrap().starts_with("auto:"));
    let manual = contracts.iter().find(|c| c["id"] == "mc_manual").unwrap();
    assert_eq!(manual["renewals"], 0);
}

// ---------------------------------------------------------------------------------------------
// Roles and tenants

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn roles_are_checked_on_every_part_of_the_service_area(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "555000001").await;
    let forbidden = [
        (Role::Integrator, "{ warranties { nodes { id } } }"),
        (Role::Integrator, "{ serviceRequests { edges { cursor } } }"),
        (Role::Technician, "mutation { fileWarrantyClaim(input: { warrantyId: \"w\", description: \"d\" }) { id } }"),
        (Role::Agent, "mutation { decideWarrantyClaim(claimId: \"claim_1\", decision: APPROVED) { id } }"),
        (
            Role::Finance,
            "mutation { openServiceRequest(input: { kind: \"repair\", priority: LOW, customerId: \"ct_1\", description: \"d\" }) { id } }",
        ),
        (Role::Agent, "mutation { assignServiceRequest(requestId: \"sr_1\", technicianId: \"t\") { id } }"),
        (Role::Agent, "mutation { resolveServiceRequest(requestId: \"sr_1\", resolution: \"r\") { id } }"),
        (Role::Agent, "mutation { renewMaintenanceContract(contractId: \"mc_1\", reference: \"r\") { id } }"),
    ];
    for (role, query) in forbidden {
        let reply = app.gql("acme", role, query, json!({})).await;
        assert_eq!(code(&reply), "FORBIDDEN", "{role:?} {query}: {reply}");
    }
    let (status, reply) = app.graphql(None, "{ warranties { nodes { id } } }", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    assert_eq!(reply["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn one_tenant_never_sees_or_changes_another_tenants_after_sales(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let acme = app.tenant_with_number("acme", "555000001").await;
    app.tenant_with_number("globex", "555000002").await;
    let warranty = register(&app, &acme, "SN-A", 12, Utc::now() - Duration::days(1)).await;
    ok(
        &app,
        "acme",
        Role::Agent,
        FILE,
        json!({ "w": warranty, "d": "Broken", "c": "claim_a" }),
    )
    .await;
    let opened = desk(&app)
        .open_request(&md(&acme), request(Priority::Urgent, Utc::now() - Duration::hours(5)))
        .await
        .unwrap();
    ok(
        &app,
        "acme",
        Role::Finance,
        "mutation { startMaintenanceContract(input: { contractId: \"mc_a\", customerId: \"ct_customer_1\",
            startsAt: \"2026-01-01T00:00:00Z\", annualValueMinor: 1000, currency: \"USD\" }) { id } }",
        json!({}),
    )
    .await;
    app.project().await;
    sweeper(&app).drain().await.unwrap();
    app.project().await;
    for query in [
        "{ warranties { nodes { id } } }",
        "{ warrantyClaims { nodes { id } } }",
        "{ maintenanceContracts { nodes { id } } }",
    ] {
        let data = ok(&app, "globex", Role::Owner, query, json!({})).await;
        let list = &data.as_object().unwrap().values().next().unwrap()["nodes"];
        assert_eq!(list, &json!([]), "{query}: {data}");
        let data = ok(&app, "acme", Role::Owner, query, json!({})).await;
        let list = &data.as_object().unwrap().values().next().unwrap()["nodes"];
        assert_eq!(list.as_array().unwrap().len(), 1, "{query}: {data}");
    }
    let data = ok(&app, "globex", Role::Owner, REQUESTS, json!({})).await;
    assert_eq!(data["serviceRequests"]["edges"], json!([]));
    // Another tenant's ids name nothing in globex's streams.
    let reply = app
        .gql("globex", Role::Agent, FILE, json!({ "w": warranty, "d": "Mine now" }))
        .await;
    assert_eq!(code(&reply), "WARRANTY_NOT_ACTIVE", "{reply}");
    let globex_tech = app.user("globex", Role::Technician).await;
    let reply = app
        .gql(
            "globex",
            Role::Admin,
            "mutation($r: String!, $t: String!) { assignServiceRequest(requestId: $r, technicianId: $t) { id } }",
            json!({"r": opened.request_id, "t": globex_tech}),
        )
        .await;
    assert_eq!(code(&reply), "UNKNOWN_SERVICE_REQUEST", "{reply}");
    let reply = app
        .gql(
            "globex",
            Role::Admin,
            "mutation { startWarrantyClaimReview(claimId: \"claim_a\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&reply), "UNKNOWN_CLAIM", "{reply}");
    // Row-level security: the application role sees no rows without a tenant scope.
    let mut tx = app.state.pool.begin().await.unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM service_requests")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(visible, 0);
}
