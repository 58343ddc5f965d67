//! Orders, installations and payouts from end to end (issue 4): every service command's success
//! and refusals; the process manager that opens one installation per paid order (even when its
//! worker runs twice); commissioning refused with exactly what is missing, then commissioned,
//! with the payout, warranties and the customer's notification that follow; the read models
//! (orders, installations, a technician's calendar, counts, payouts with totals, the timeline)
//! against figures computed from the events; roles and tenant isolation through GraphQL.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chronicle_api::auth::Role;
use chronicle_commands::error::CommandError;
use chronicle_commands::installation::{
    installation_id_for_order, payout_id_for, InstallationService, InstallationWorker, OpenRequest,
};
use chronicle_domain::installation::{
    payout_for, photo_requirements, required_checklist, InstallationEvent, InstallationStatus, InstallationType,
    LineItem, PaymentProvider,
};
use chronicle_domain::metadata::CommandMetadata;
use chronicle_domain::tenant::TenantId;
use chronicle_tests::*;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

const NUMBER: &str = "555000555";
const CUSTOMER: &str = "ct_customer_1";

fn hash(tag: u8) -> String {
    format!("{tag:02x}").repeat(32)
}

fn md(tenant: &TenantId, user: &str) -> CommandMetadata {
    chronicle_tests::user_metadata(tenant.as_str(), user, "admin")
}

fn service(app: &TestApp) -> InstallationService {
    InstallationService::new(app.state.commands.clone(), app.keys())
}

fn worker(app: &TestApp) -> InstallationWorker {
    InstallationWorker::new(app.state.commands.clone(), app.keys())
}

/// Projects, works the process managers, projects again.
async fn settle(app: &TestApp) {
    app.project().await;
    worker(app)
        .drain()
        .await
        .unwrap_or_else(|e| panic!("process managers: {e}"));
    app.project().await;
}

fn item(sku: &str, quantity: u32, price: i64, installable: Option<InstallationType>) -> LineItem {
    LineItem {
        capacity_w: None,
        sku: sku.into(),
        description: format!("{sku} (catalogue)"),
        quantity,
        unit_price_minor: price,
        currency: "USD".into(),
        installable,
    }
}

fn solar_order() -> Vec<LineItem> {
    vec![
        item("solar-kit-5kw", 1, 250_000, Some(InstallationType::Solar)),
        item("cable-roll", 2, 5_000, None),
    ]
}

/// The refusal code of a command's outcome ("" when it succeeded).
fn refusal<T: std::fmt::Debug>(result: Result<T, CommandError>) -> String {
    match result {
        Ok(_) => String::new(),
        Err(e) => e.code().to_string(),
    }
}

fn gql_code(reply: &Value) -> &str {
    reply["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

async fn ok(app: &TestApp, tenant: &str, role: Role, query: &str, variables: Value) -> Value {
    let reply = app.gql(tenant, role, query, variables).await;
    assert!(reply["errors"].is_null(), "{reply}");
    reply["data"].clone()
}

/// A paid solar order, its installation opened by the process manager; returns (order, isr).
async fn paid_solar_order(app: &TestApp, tenant: &TenantId) -> (String, String) {
    let svc = service(app);
    let m = md(tenant, "ops-1");
    let order = svc
        .place_order(CUSTOMER, solar_order(), None, None, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.record_payment(&order, PaymentProvider::Cash, "rcpt-1", 260_000, "USD", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    settle(app).await;
    let isr = installation_id_for_order(tenant, &order);
    (order, isr)
}

/// Takes an installation to in-progress with technician `tech-1` (unassigned again after the
/// start unless `technician`).
async fn ready_to_commission(app: &TestApp, tenant: &TenantId, isr: &str, technician: bool) {
    let svc = service(app);
    let m = md(tenant, "ops-1");
    svc.assign_technician(isr, "tech-1", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.start_work(isr, &m).await.unwrap_or_else(|e| panic!("{e}"));
    if !technician {
        svc.unassign_technician(isr, "tech-1", &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.count(sql).await
}

// ---------------------------------------------------------------------------------------------
// Process manager (a): a paid order opens an installation

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_paid_order_with_installable_items_opens_exactly_one_installation_even_when_the_worker_runs_twice(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let svc = service(&app);
    let m = md(&tenant, "ops-1");
    let order = svc
        .place_order(CUSTOMER, solar_order(), None, None, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.record_payment(&order, PaymentProvider::Cash, "rcpt-1", 100_000, "USD", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    // Part-paid: nothing to open yet.
    assert_eq!(worker(&app).drain().await.map(|p| p.opened).ok(), Some(0));
    svc.record_payment(&order, PaymentProvider::Cash, "rcpt-2", 160_000, "USD", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let first = worker(&app).drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.opened, 1);
    // Run again, and again as if the row were replayed from scratch: still one installation.
    assert_eq!(worker(&app).drain().await.map(|p| p.opened).ok(), Some(0));
    sqlx::query("UPDATE installation_openings SET state = 'new', not_before = now()")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (worker(&app), worker(&app));
    let (ra, rb) = tokio::join!(a.drain(), b.drain());
    assert!(ra.is_ok() && rb.is_ok());
    app.project().await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE event_type = 'InstallationOpened'"
        )
        .await,
        1
    );
    let isr = installation_id_for_order(&tenant, &order);
    let data = ok(
        &app,
        "acme",
        Role::Admin,
        "query($id: String!, $order: String!) { installation(id: $id) { id type status orderId customerId
            systemSizeW checklist { done required } } order(id: $order) { status paid totalMinor paidMinor } }",
        json!({"id": isr, "order": order}),
    )
    .await;
    assert_eq!(data["installation"]["type"], "SOLAR");
    assert_eq!(data["installation"]["status"], "PENDING");
    assert_eq!(data["installation"]["orderId"], order.as_str());
    assert_eq!(data["installation"]["customerId"], CUSTOMER);
    assert_eq!(data["installation"]["systemSizeW"], 5_000);
    assert_eq!(
        data["installation"]["checklist"]["required"],
        required_checklist(InstallationType::Solar).len()
    );
    assert_eq!(data["order"]["status"], "PAID");
    assert_eq!(data["order"]["paid"], true);
    assert_eq!(data["order"]["paidMinor"], 260_000);
    // Technicians (users of the tenant) can be assigned to it.
    let tech = app.user("acme", Role::Technician).await;
    let data = ok(
        &app,
        "acme",
        Role::Admin,
        "mutation($id: String!, $tech: String!) { assignTechnician(installationId: $id, technicianId: $tech) { id } }",
        json!({"id": isr, "tech": tech}),
    )
    .await;
    assert_eq!(data["assignTechnician"]["id"], isr);
    app.project().await;
    let data = ok(
        &app,
        "acme",
        Role::Technician,
        "query($id: String!) { installation(id: $id) { technicians assignedTechnicians { id name } } }",
        json!({"id": isr}),
    )
    .await;
    assert_eq!(data["installation"]["technicians"], json!([tech]));
    // The read model shows the technician's name from the user directory.
    let name: String = sqlx::query_scalar("SELECT name FROM user_accounts WHERE user_id = $1")
        .bind(&tech)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        data["installation"]["assignedTechnicians"],
        json!([{"id": tech, "name": name}])
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn with_the_servers_background_tasks_a_paid_order_ends_in_an_installation_without_any_other_call(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let tasks = chronicle_api::app::spawn_background(&app.state, shutdown);
    let svc = service(&app);
    let m = md(&tenant, "ops-1");
    let order = svc
        .place_order(CUSTOMER, solar_order(), None, None, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.record_payment(&order, PaymentProvider::Cash, "rcpt-1", 260_000, "USD", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let isr = installation_id_for_order(&tenant, &order);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM installations WHERE installation_id = $1")
            .bind(&isr)
            .fetch_optional(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if status.as_deref() == Some("pending") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no installation after 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    svc.assign_technician(&isr, "tech-1", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_opening_that_fails_for_now_is_retried_after_its_backoff_and_then_opens(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let svc = service(&app);
    let m = md(&tenant, "ops-1");
    let order = svc
        .place_order(CUSTOMER, solar_order(), None, None, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.record_payment(&order, PaymentProvider::Cash, "rcpt-1", 260_000, "USD", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    // The key store is down: sealing the site address fails. (The customer's key, made when
    // the contact was registered, is taken away, so that sealing has to create one.)
    for sql in [
        "DELETE FROM contact_keys",
        "CREATE FUNCTION keys_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'down'; END $$",
        "CREATE TRIGGER keys_down BEFORE INSERT ON contact_keys FOR EACH ROW EXECUTE FUNCTION keys_down()",
    ] {
        sqlx::query(sql)
            .execute(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let pass = worker(&app).drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((pass.opened, pass.retry), (0, 1));
    let (attempts, waiting, error): (i32, bool, Option<String>) = sqlx::query_as(
        "SELECT attempts, not_before > now() + interval '1 second', last_error FROM installation_openings",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((attempts, waiting, error.is_some()), (1, true, true));
    // Not due yet: nothing happens.
    assert_eq!(worker(&app).drain().await.map(|p| p.worked()).ok(), Some(0));
    sqlx::query("DROP TRIGGER keys_down ON contact_keys")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("UPDATE installation_openings SET not_before = now()")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(worker(&app).drain().await.map(|p| p.opened).ok(), Some(1));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE event_type = 'InstallationOpened'"
        )
        .await,
        1
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_paid_order_without_installable_items_opens_no_installation(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let svc = service(&app);
    let m = md(&tenant, "ops-1");
    let order = svc
        .place_order(CUSTOMER, vec![item("cable-roll", 2, 5_000, None)], None, None, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.record_payment(&order, PaymentProvider::Cash, "rcpt-1", 10_000, "USD", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    settle(&app).await;
    assert_eq!(count(&app, "SELECT count(*) FROM installation_openings").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE event_type = 'InstallationOpened'"
        )
        .await,
        0
    );
}

// ---------------------------------------------------------------------------------------------
// Service commands: successes and refusals

/// Issue 17: `placeOrder` had no idempotency key (a retried request placed two orders) and
/// accepted a customer that does not exist.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_order_is_placed_once_per_idempotency_key_and_only_for_a_contact_of_the_tenant(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", NUMBER).await;
    app.tenant_with_number("globex", "666000666").await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    app.register_contact("globex", CUSTOMER, "+263771234568").await;
    const PLACE: &str = "mutation($c: String!, $k: String, $q: Int!) {
      placeOrder(customerId: $c, idempotencyKey: $k, items: [{ sku: \"panel\", description: \"Panel\",
                 quantity: $q, unitPriceMinor: 100, currency: \"USD\" }]) { id } }";
    let placed = || async {
        app.count("SELECT count(*) FROM events WHERE event_type = 'OrderPlaced'")
            .await
    };
    // A customer who is no contact of the tenant (globex's customer is not acme's either).
    let reply = app
        .gql("acme", Role::Agent, PLACE, json!({"c": "ct_nobody", "k": null, "q": 1}))
        .await;
    assert_eq!(gql_code(&reply), "UNKNOWN_CUSTOMER", "{reply}");
    assert_eq!(
        reply["errors"][0]["message"],
        "ct_nobody is not a contact of this tenant"
    );
    assert_eq!(placed().await, 0);
    // A retried request with its key answers the order it placed and records nothing again.
    let first = ok(
        &app,
        "acme",
        Role::Agent,
        PLACE,
        json!({"c": CUSTOMER, "k": "cart-42", "q": 1}),
    )
    .await;
    let again = ok(
        &app,
        "acme",
        Role::Agent,
        PLACE,
        json!({"c": CUSTOMER, "k": "cart-42", "q": 1}),
    )
    .await;
    let id = first["placeOrder"]["id"].as_str().unwrap_or_default().to_string();
    assert!(id.starts_with("order_k"), "{first}");
    assert_eq!(again["placeOrder"]["id"], id.as_str());
    assert_eq!(placed().await, 1);
    // The key with other items is refused, nothing recorded.
    let reply = app
        .gql(
            "acme",
            Role::Agent,
            PLACE,
            json!({"c": CUSTOMER, "k": "cart-42", "q": 2}),
        )
        .await;
    assert_eq!(gql_code(&reply), "IDEMPOTENCY_KEY_REUSED", "{reply}");
    assert_eq!(placed().await, 1);
    // Another tenant's same key is its own order.
    let other = ok(
        &app,
        "globex",
        Role::Agent,
        PLACE,
        json!({"c": CUSTOMER, "k": "cart-42", "q": 2}),
    )
    .await;
    assert!(other["placeOrder"]["id"].is_string(), "{other}");
    assert_eq!(placed().await, 2);
    // Without a key every request is an order.
    for _ in 0..2 {
        ok(
            &app,
            "acme",
            Role::Agent,
            PLACE,
            json!({"c": CUSTOMER, "k": null, "q": 1}),
        )
        .await;
    }
    assert_eq!(placed().await, 4);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn order_commands_succeed_and_each_refusal_carries_its_code(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let svc = service(&app);
    let m = md(&tenant, "ops-1");
    // place
    assert_eq!(
        refusal(svc.place_order(CUSTOMER, vec![], None, None, &m).await),
        "EMPTY_ORDER"
    );
    let mut mixed = solar_order();
    mixed[1].currency = "KES".into();
    assert_eq!(
        refusal(svc.place_order(CUSTOMER, mixed, None, None, &m).await),
        "MIXED_CURRENCIES"
    );
    assert_eq!(
        refusal(
            svc.place_order(CUSTOMER, vec![item("free", 1, 0, None)], None, None, &m)
                .await
        ),
        "ZERO_TOTAL"
    );
    let order = svc
        .place_order(CUSTOMER, solar_order(), None, None, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(order.starts_with("order_") && uuid::Uuid::parse_str(&order[6..]).is_ok());
    // fulfil before payment
    assert_eq!(
        refusal(svc.fulfil_order(&order, &m).await),
        "FULFILMENT_REQUIRES_PAYMENT"
    );
    // pay
    assert_eq!(
        refusal(
            svc.record_payment(&order, PaymentProvider::Cash, "r1", 999_999, "USD", &m)
                .await
        ),
        "OVERPAYMENT"
    );
    assert_eq!(
        refusal(
            svc.record_payment(&order, PaymentProvider::Cash, "r1", 1_000, "KES", &m)
                .await
        ),
        "PAYMENT_CURRENCY_MISMATCH"
    );
    assert_eq!(
        refusal(
            svc.record_payment("order_nope", PaymentProvider::Cash, "r1", 1, "USD", &m)
                .await
        ),
        "UNKNOWN_ORDER"
    );
    svc.record_payment(&order, PaymentProvider::Cash, "r1", 260_000, "USD", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // fulfil
    svc.fulfil_order(&order, &m).await.unwrap_or_else(|e| panic!("{e}"));
    // cancel
    assert_eq!(
        refusal(svc.cancel_order(&order, Some("changed mind"), &m).await),
        "CANCEL_AFTER_FULFILMENT"
    );
    assert_eq!(refusal(svc.cancel_order("order_nope", None, &m).await), "UNKNOWN_ORDER");
    let other = svc
        .place_order(CUSTOMER, solar_order(), None, None, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.cancel_order(&other, Some("Customer moved to Bulawayo"), &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        refusal(
            svc.record_payment(&other, PaymentProvider::Cash, "r9", 1, "USD", &m)
                .await
        ),
        "PAYMENT_AFTER_CANCELLATION"
    );
    // The reason is sealed: never in the log in the clear.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE payload::text LIKE '%Bulawayo%'"
        )
        .await,
        0
    );
    app.project().await;
    let data = ok(
        &app,
        "acme",
        Role::Finance,
        "{ orders { edges { node { id status totalMinor paidMinor outstandingMinor payments { provider reference } } } } }",
        json!({}),
    )
    .await;
    let statuses: BTreeMap<String, String> = data["orders"]["edges"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|e| {
            (
                e["node"]["id"].as_str().unwrap_or("").to_string(),
                e["node"]["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(statuses.get(&order).map(String::as_str), Some("FULFILLED"));
    assert_eq!(statuses.get(&other).map(String::as_str), Some("CANCELLED"));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn installation_commands_succeed_and_each_refusal_carries_its_code(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let svc = service(&app);
    let m = md(&tenant, "ops-1");
    let open = |size: u32, customer: &str| OpenRequest {
        installation_type: InstallationType::Starlink,
        customer_id: customer.into(),
        order_id: "order_external".into(),
        site_address: "12 Samora Machel Ave, Harare".into(),
        system_size_w: size,
    };
    assert_eq!(
        refusal(svc.open_installation(open(0, CUSTOMER), &m).await),
        "ZERO_SYSTEM_SIZE"
    );
    assert_eq!(refusal(svc.open_installation(open(100, " "), &m).await), "BLANK_FIELD");
    let isr = svc
        .open_installation(open(100, CUSTOMER), &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(isr.starts_with("isr_") && uuid::Uuid::parse_str(&isr[4..]).is_ok());
    assert_eq!(
        count(&app, "SELECT count(*) FROM events WHERE payload::text LIKE '%Samora%'").await,
        0,
        "the site address is sealed"
    );
    // unknown installation
    assert_eq!(
        refusal(svc.assign_technician("isr_nope", "t", &m).await),
        "UNKNOWN_INSTALLATION"
    );
    assert_eq!(
        refusal(svc.reschedule("isr_nope", Utc::now(), "rain", &m).await),
        "UNKNOWN_INSTALLATION"
    );
    // technicians
    assert_eq!(refusal(svc.assign_technician(&isr, " ", &m).await), "BLANK_FIELD");
    assert_eq!(refusal(svc.unassign_technician(&isr, "", &m).await), "BLANK_FIELD");
    assert_eq!(refusal(svc.start_work(&isr, &m).await), "NO_TECHNICIAN_ASSIGNED");
    svc.assign_technician(&isr, "tech-1", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.assign_technician(&isr, "tech-2", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.unassign_technician(&isr, "tech-2", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // scheduling
    let day = Utc
        .with_ymd_and_hms(2026, 12, 1, 8, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    assert_eq!(refusal(svc.reschedule(&isr, day, "rain", &m).await), "NOT_SCHEDULED");
    svc.schedule(&isr, day, &m).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        refusal(svc.schedule(&isr, day + Duration::days(1), &m).await),
        "ALREADY_SCHEDULED"
    );
    svc.reschedule(&isr, day + Duration::days(2), "Customer travelling", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // field work before start
    assert_eq!(
        refusal(svc.complete_checklist_item(&isr, "site_survey", &m).await),
        "NOT_IN_PROGRESS"
    );
    assert_eq!(
        refusal(svc.install_component(&isr, "SN1", "dish", 12, &m).await),
        "NOT_IN_PROGRESS"
    );
    assert_eq!(refusal(svc.commission(&isr, &m).await), "NOT_IN_PROGRESS");
    assert_eq!(refusal(svc.activate(&isr, &m).await), "STATUS_MOVE_NOT_ALLOWED");
    assert_eq!(
        refusal(svc.decommission(&isr, None, &m).await),
        "STATUS_MOVE_NOT_ALLOWED"
    );
    svc.start_work(&isr, &m).await.unwrap_or_else(|e| panic!("{e}"));
    // checklist, photos, components
    assert_eq!(
        refusal(svc.complete_checklist_item(&isr, "panels_installed", &m).await),
        "UNKNOWN_CHECKLIST_ITEM"
    );
    assert_eq!(
        refusal(svc.attach_photo(&isr, "dish", "NOT-A-HASH", &m).await),
        "INVALID_CONTENT_HASH"
    );
    assert_eq!(
        refusal(svc.install_component(&isr, " ", "dish", 12, &m).await),
        "BLANK_FIELD"
    );
    for item in required_checklist(InstallationType::Starlink) {
        svc.complete_checklist_item(&isr, item, &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (i, kind) in photo_requirements(InstallationType::Starlink).iter().enumerate() {
        svc.attach_photo(&isr, kind, &hash(i as u8), &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    svc.install_component(&isr, "SN-DISH-1", "dish", 12, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // commission, activate, decommission
    svc.commission(&isr, &m).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        refusal(svc.assign_technician(&isr, "tech-3", &m).await),
        "WORK_ALREADY_COMMISSIONED"
    );
    svc.activate(&isr, &m).await.unwrap_or_else(|e| panic!("{e}"));
    svc.decommission(&isr, Some("Customer relocated"), &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refusal(svc.activate(&isr, &m).await), "STATUS_MOVE_NOT_ALLOWED");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE payload::text LIKE '%travelling%' OR payload::text LIKE '%relocated%'"
        )
        .await,
        0,
        "reasons are sealed"
    );
    app.project().await;
    let data = ok(
        &app,
        "acme",
        Role::Admin,
        "query($id: String!) { installation(id: $id) { status siteAddress technicians scheduledAt
            components { serial kind warrantyMonths } photos { kind } decommissionedAt } }",
        json!({"id": isr}),
    )
    .await;
    let node = &data["installation"];
    assert_eq!(node["status"], "DECOMMISSIONED");
    assert_eq!(node["siteAddress"], "12 Samora Machel Ave, Harare");
    assert_eq!(node["technicians"], json!(["tech-1"]));
    assert_eq!(
        node["scheduledAt"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
        Some((day + Duration::days(2)).fixed_offset())
    );
    assert_eq!(
        node["components"],
        json!([{"serial": "SN-DISH-1", "kind": "dish", "warrantyMonths": 12}])
    );
    assert!(!node["decommissionedAt"].is_null());
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn payout_commands_succeed_and_each_refusal_carries_its_code(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let svc = service(&app);
    let m = md(&tenant, "ops-1");
    let (_, isr) = paid_solar_order(&app, &tenant).await;
    ready_to_commission(&app, &tenant, &isr, true).await;
    for item in required_checklist(InstallationType::Solar) {
        svc.complete_checklist_item(&isr, item, &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (i, kind) in photo_requirements(InstallationType::Solar).iter().enumerate() {
        svc.attach_photo(&isr, kind, &hash(i as u8), &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    svc.commission(&isr, &m).await.unwrap_or_else(|e| panic!("{e}"));
    settle(&app).await;
    let payout = payout_id_for(&tenant, &isr);
    assert_eq!(refusal(svc.approve_payout("payout_nope", &m).await), "UNKNOWN_PAYOUT");
    assert_eq!(
        refusal(svc.mark_payout_paid(&payout, "EFT-1", &m).await),
        "PAYMENT_REQUIRES_APPROVAL"
    );
    assert_eq!(
        refusal(svc.approve_payout(&payout, &md(&tenant, "tech-1")).await),
        "SELF_APPROVAL"
    );
    svc.approve_payout(&payout, &m).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refusal(svc.mark_payout_paid(&payout, " ", &m).await), "BLANK_FIELD");
    svc.mark_payout_paid(&payout, "EFT-1", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        refusal(svc.mark_payout_paid(&payout, "EFT-2", &m).await),
        "ALREADY_PAID"
    );
    app.project().await;
    let data = ok(
        &app,
        "acme",
        Role::Finance,
        "{ payouts(status: PAID) { nodes { id status amountMinor paidReference approvedBy }
            totals { status currency count totalMinor } } }",
        json!({}),
    )
    .await;
    let amount = payout_for(5_000, None);
    assert_eq!(
        data["payouts"]["nodes"],
        json!([{"id": payout, "status": "PAID", "amountMinor": amount, "paidReference": "EFT-1",
                "approvedBy": "ops-1"}])
    );
    assert_eq!(
        data["payouts"]["totals"],
        json!([{"status": "PAID", "currency": "USD", "count": 1, "totalMinor": amount}])
    );
}

// ---------------------------------------------------------------------------------------------
// Done when: commissioning refused with what is missing; then commissioned, payout and warranties

const COMMISSION: &str = "mutation($id: String!) { commissionInstallation(installationId: $id) { id } }";

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn commissioning_with_something_missing_is_refused_listing_exactly_what_and_with_everything_it_commissions_and_pays(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let (_, isr) = paid_solar_order(&app, &tenant).await;
    let vars = json!({"id": isr});
    // No technician (assigned to start, then unassigned), no checklist item, no photo.
    ready_to_commission(&app, &tenant, &isr, false).await;
    let reply = app.gql("acme", Role::Admin, COMMISSION, vars.clone()).await;
    assert_eq!(gql_code(&reply), "COMMISSIONING_INCOMPLETE", "{reply}");
    let message = reply["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("commissioning incomplete: checklist items ")
            && message.ends_with("no technician assigned")
            && !message.contains('[')
            && !message.contains('"'),
        "{message}"
    );
    let ext = &reply["errors"][0]["extensions"];
    assert_eq!(
        ext["missingChecklistItems"],
        json!(required_checklist(InstallationType::Solar))
    );
    assert_eq!(ext["missingPhotos"], json!(photo_requirements(InstallationType::Solar)));
    assert_eq!(ext["noTechnician"], true);
    // Everything but one checklist item and one photo, with a technician: the caller, who may
    // then work on it.
    let tech = app.user("acme", Role::Technician).await;
    app.act_as("acme", Role::Technician, &tech);
    ok(
        &app,
        "acme",
        Role::Admin,
        "mutation($id: String!, $tech: String!) { assignTechnician(installationId: $id, technicianId: $tech) { id } }",
        json!({"id": isr, "tech": tech}),
    )
    .await;
    let items = required_checklist(InstallationType::Solar);
    let photos = photo_requirements(InstallationType::Solar);
    for item in &items[..items.len() - 1] {
        ok(
            &app,
            "acme",
            Role::Technician,
            "mutation($id: String!, $item: String!) { completeChecklistItem(installationId: $id, item: $item) { id } }",
            json!({"id": isr, "item": item}),
        )
        .await;
    }
    for (i, kind) in photos[..photos.len() - 1].iter().enumerate() {
        ok(
            &app,
            "acme",
            Role::Technician,
            "mutation($id: String!, $kind: String!, $sha: String!) {
                attachInstallationPhoto(installationId: $id, kind: $kind, sha256: $sha) { id } }",
            json!({"id": isr, "kind": kind, "sha": hash(i as u8)}),
        )
        .await;
    }
    let reply = app.gql("acme", Role::Technician, COMMISSION, vars.clone()).await;
    assert_eq!(gql_code(&reply), "COMMISSIONING_INCOMPLETE", "{reply}");
    let ext = &reply["errors"][0]["extensions"];
    assert_eq!(ext["missingChecklistItems"], json!([items[items.len() - 1]]));
    assert_eq!(ext["missingPhotos"], json!([photos[photos.len() - 1]]));
    assert_eq!(ext["noTechnician"], false);
    // The read model shows the same progress.
    app.project().await;
    let data = ok(
        &app,
        "acme",
        Role::Technician,
        "query($id: String!) { installation(id: $id) { status checklist { done required missingItems } missingPhotos } }",
        vars.clone(),
    )
    .await;
    assert_eq!(
        data["installation"]["checklist"],
        json!({"done": items.len() - 1, "required": items.len(), "missingItems": [items[items.len() - 1]]})
    );
    assert_eq!(data["installation"]["missingPhotos"], json!([photos[photos.len() - 1]]));
    // With everything present it commissions.
    ok(
        &app,
        "acme",
        Role::Technician,
        "mutation($id: String!, $item: String!) { completeChecklistItem(installationId: $id, item: $item) { id } }",
        json!({"id": isr, "item": items[items.len() - 1]}),
    )
    .await;
    ok(
        &app,
        "acme",
        Role::Technician,
        "mutation($id: String!, $kind: String!, $sha: String!) {
            attachInstallationPhoto(installationId: $id, kind: $kind, sha256: $sha) { id } }",
        json!({"id": isr, "kind": photos[photos.len() - 1], "sha": hash(200)}),
    )
    .await;
    for (serial, kind, months) in [
        ("PNL-1", "panel", 120),
        ("INV-1", "inverter", 60),
        ("BOLT-1", "bracket", 0),
    ] {
        ok(
            &app,
            "acme",
            Role::Technician,
            "mutation($id: String!, $serial: String!, $kind: String!, $months: Int!) {
                installComponent(installationId: $id, serial: $serial, kind: $kind, warrantyMonths: $months) { id } }",
            json!({"id": isr, "serial": serial, "kind": kind, "months": months}),
        )
        .await;
    }
    let data = ok(&app, "acme", Role::Technician, COMMISSION, vars.clone()).await;
    assert!(data["commissionInstallation"]["id"].as_str().is_some());
    settle(&app).await;
    // A second run of the process managers does nothing more.
    assert_eq!(worker(&app).drain().await.map(|p| p.worked()).ok(), Some(0));
    let data = ok(
        &app,
        "acme",
        Role::Admin,
        "query($id: String!) { installation(id: $id) { status commissionedAt checklist { done required } } }",
        vars.clone(),
    )
    .await;
    assert_eq!(data["installation"]["status"], "COMMISSIONED");
    assert_eq!(
        data["installation"]["checklist"],
        json!({"done": items.len(), "required": items.len()})
    );
    // The payout read model shows the computed payout (5 kW → the medium tier).
    let data = ok(
        &app,
        "acme",
        Role::Finance,
        "{ payouts(status: PENDING) { nodes { id installationId technicianIds systemSizeW tier amountMinor currency status }
            totals { status currency count totalMinor } } }",
        json!({}),
    )
    .await;
    let amount = payout_for(5_000, None);
    assert_eq!(
        data["payouts"]["nodes"],
        json!([{"id": payout_id_for(&tenant, &isr), "installationId": isr, "technicianIds": [tech],
                "systemSizeW": 5000, "tier": "medium", "amountMinor": amount, "currency": "USD",
                "status": "PENDING"}])
    );
    assert_eq!(
        data["payouts"]["totals"],
        json!([{"status": "PENDING", "currency": "USD", "count": 1, "totalMinor": amount}])
    );
    // Issue 17: the technician it pays reads it (list and totals); another technician reads none.
    let mine = "{ payouts { nodes { id } totals { count } } }";
    let data = ok(&app, "acme", Role::Technician, mine, json!({})).await;
    assert_eq!(data["payouts"]["nodes"], json!([{"id": payout_id_for(&tenant, &isr)}]));
    assert_eq!(data["payouts"]["totals"], json!([{"count": 1}]));
    let other = chronicle_api::auth::mint(
        JWT_SECRET,
        &tenant,
        "tech-9",
        Role::Technician,
        chrono::Duration::hours(1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (_, reply) = app.graphql(Some(&other), mine, json!({})).await;
    assert!(reply.get("errors").is_none(), "{reply}");
    assert_eq!(reply["data"]["payouts"]["nodes"], json!([]));
    assert_eq!(reply["data"]["payouts"]["totals"], json!([]));
    // A warranty per component with a warranty period, registered once.
    let mut registered: Vec<(String, i64)> = sqlx::query_as(
        "SELECT payload::jsonb->'WarrantyRegistered'->>'serial', (payload::jsonb->'WarrantyRegistered'->>'warranty_months')::bigint
           FROM events WHERE event_type = 'WarrantyRegistered'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    registered.sort();
    assert_eq!(registered, vec![("INV-1".to_string(), 60), ("PNL-1".to_string(), 120)]);
    // The warranty read model (engineer H3's) shows them, active, through GraphQL.
    let data = ok(
        &app,
        "acme",
        Role::Admin,
        "query($id: String!) { warranties(filter: { installationId: $id }) { nodes {
            installationId serial kind warrantyMonths status customerId } } }",
        vars.clone(),
    )
    .await;
    assert_eq!(
        data["warranties"]["nodes"],
        json!([
            {"installationId": isr, "serial": "INV-1", "kind": "inverter", "warrantyMonths": 60, "status": "ACTIVE",
             "customerId": CUSTOMER},
            {"installationId": isr, "serial": "PNL-1", "kind": "panel", "warrantyMonths": 120, "status": "ACTIVE",
             "customerId": CUSTOMER},
        ])
    );
    // Every step is idempotent: worked again from scratch, nothing new is recorded.
    sqlx::query(
        "UPDATE installation_commissionings SET payout_state = 'new', warranty_state = 'new', notify_state = 'new'",
    )
    .execute(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let before = count(&app, "SELECT count(*) FROM events").await;
    settle(&app).await;
    assert_eq!(count(&app, "SELECT count(*) FROM events").await, before);
    // The customer never wrote on WhatsApp: the notification is recorded as skipped.
    let (state, reason): (String, Option<String>) =
        sqlx::query_as("SELECT notify_state, notify_reason FROM installation_commissionings")
            .fetch_one(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (state.as_str(), reason.as_deref()),
        ("skipped", Some("UNKNOWN_CONVERSATION"))
    );
}

/// A customer who wrote on WhatsApp (so has a conversation); returns the contact id.
async fn customer_who_wrote(app: &TestApp) -> String {
    let body = delivery(
        NUMBER,
        &[("263771000123", "Tendai")],
        vec![text_message(
            "263771000123",
            &wamid("263771000123", 1),
            Utc::now().timestamp() - 60,
            "When is my installation?",
        )],
        vec![],
    );
    assert_eq!(app.post_delivery(&body).await.0, StatusCode::OK);
    app.drain().await;
    app.project().await;
    sqlx::query_scalar("SELECT contact_id FROM conversations")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_customer_who_wrote_on_whatsapp_is_notified_of_the_commissioning_with_the_approved_template(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let customer = customer_who_wrote(&app).await;
    for mutation in [
        "mutation { submitTemplate(input: { name: \"installation_commissioned\", language: \"en_US\",
                    category: UTILITY, body: \"Your installation is commissioned.\" }) { id } }",
        "mutation { approveTemplate(name: \"installation_commissioned\", language: \"en_US\", providerTemplateId: \"wa-9\") { id } }",
    ] {
        ok(&app, "acme", Role::Owner, mutation, json!({})).await;
    }
    let svc = service(&app);
    let m = md(&tenant, "ops-1");
    let isr = svc
        .open_installation(
            OpenRequest {
                installation_type: InstallationType::CustomFurniture,
                customer_id: customer.clone(),
                order_id: "order_x".into(),
                site_address: String::new(),
                system_size_w: 1_000,
            },
            &m,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ready_to_commission(&app, &tenant, &isr, true).await;
    for item in required_checklist(InstallationType::CustomFurniture) {
        svc.complete_checklist_item(&isr, item, &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (i, kind) in photo_requirements(InstallationType::CustomFurniture).iter().enumerate() {
        svc.attach_photo(&isr, kind, &hash(i as u8), &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    svc.commission(&isr, &m).await.unwrap_or_else(|e| panic!("{e}"));
    settle(&app).await;
    settle(&app).await;
    let state: String = sqlx::query_scalar("SELECT notify_state FROM installation_commissionings")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state, "queued");
    let key = format!("installation-commissioned:{isr}");
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'OutboundMessageQueued'
            AND payload::jsonb->'OutboundMessageQueued'->>'idempotency_key' = $1",
    )
    .bind(&key)
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(queued, 1);
    // No installation payout currency from an order outside the log: the default, USD.
    let currency: String = sqlx::query_scalar("SELECT currency FROM payouts")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(currency, "USD");
}

// ---------------------------------------------------------------------------------------------
// Read models against the events

/// An installation as folded from its events: (type, status, technicians, starts_at).
type Folded = (InstallationType, InstallationStatus, Vec<String>, Option<DateTime<Utc>>);

/// Folds the log's installation events per stream.
async fn installations_from_events(app: &TestApp) -> BTreeMap<String, Folded> {
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "SELECT aggregate_id, payload::jsonb FROM events WHERE aggregate_type = 'InstallationRecord'
          ORDER BY aggregate_id, sequence",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut folded = BTreeMap::new();
    for (stream, payload) in rows {
        let event: InstallationEvent = serde_json::from_value(payload).unwrap_or_else(|e| panic!("{e}"));
        let entry =
            folded
                .entry(stream)
                .or_insert((InstallationType::Solar, InstallationStatus::Pending, vec![], None));
        match event {
            InstallationEvent::InstallationOpened { installation_type, .. } => entry.0 = installation_type,
            InstallationEvent::TechnicianAssigned { technicians, .. }
            | InstallationEvent::TechnicianUnassigned { technicians, .. } => entry.2 = technicians,
            InstallationEvent::InstallationScheduled { starts_at, .. }
            | InstallationEvent::InstallationRescheduled { starts_at, .. } => entry.3 = Some(starts_at),
            InstallationEvent::InstallationStatusChanged { to, .. } => entry.1 = to,
            InstallationEvent::InstallationCommissioned { .. } => entry.1 = InstallationStatus::Commissioned,
            _ => {}
        }
    }
    folded
}

fn type_name(t: InstallationType) -> String {
    t.as_str().to_uppercase()
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_calendar_and_the_counts_equal_the_figures_computed_from_the_events(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let svc = service(&app);
    let m = md(&tenant, "ops-1");
    let base = Utc
        .with_ymd_and_hms(2026, 12, 1, 7, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let plan: Vec<(InstallationType, &[&str], Option<i64>, bool)> = vec![
        (InstallationType::Solar, &["tech-1"], Some(0), true),
        (InstallationType::Solar, &["tech-1", "tech-2"], Some(1), false),
        (InstallationType::Starlink, &["tech-2"], Some(1), true),
        (InstallationType::Hybrid, &["tech-1"], Some(3), false),
        (InstallationType::CustomFurniture, &[], None, false),
        (InstallationType::Starlink, &["tech-3"], Some(40), false),
    ];
    for (i, (t, techs, day, start)) in plan.iter().enumerate() {
        let isr = svc
            .open_installation(
                OpenRequest {
                    installation_type: *t,
                    customer_id: format!("ct_{i}"),
                    order_id: format!("order_{i}"),
                    site_address: String::new(),
                    system_size_w: 1_000,
                },
                &m,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for tech in techs.iter() {
            svc.assign_technician(&isr, tech, &m)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        if let Some(d) = day {
            svc.schedule(&isr, base + Duration::days(*d) + Duration::hours(i as i64), &m)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        if *start {
            svc.start_work(&isr, &m).await.unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // One rescheduled across days, one technician unassigned after scheduling.
    let folded = installations_from_events(&app).await;
    let hybrid = folded
        .iter()
        .find(|(_, v)| v.0 == InstallationType::Hybrid)
        .map(|(k, _)| k.trim_start_matches("acme:").to_string())
        .unwrap_or_default();
    svc.reschedule(&hybrid, base + Duration::days(2), "weather", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.assign_technician(&hybrid, "tech-2", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.unassign_technician(&hybrid, "tech-1", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let folded = installations_from_events(&app).await;

    // Counts per type and status.
    let mut expected_counts: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (t, s, _, _) in folded.values() {
        *expected_counts
            .entry((type_name(*t), s.as_str().to_uppercase()))
            .or_default() += 1;
    }
    let data = ok(
        &app,
        "acme",
        Role::Auditor,
        "{ installationCounts { type status count } }",
        json!({}),
    )
    .await;
    let counts: BTreeMap<(String, String), i64> = data["installationCounts"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|c| {
            (
                (
                    c["type"].as_str().unwrap_or("").to_string(),
                    c["status"].as_str().unwrap_or("").to_string(),
                ),
                c["count"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(counts, expected_counts);

    // The calendar over the first month, every technician, then one.
    let (from, to) = (base - Duration::hours(7), base + Duration::days(31));
    let mut expected: BTreeMap<(String, NaiveDate), Vec<String>> = BTreeMap::new();
    for (stream, (_, _, techs, starts)) in &folded {
        let Some(starts) = starts.filter(|s| *s >= from && *s < to) else {
            continue;
        };
        for tech in techs {
            expected
                .entry((tech.clone(), starts.date_naive()))
                .or_default()
                .push(stream.trim_start_matches("acme:").to_string());
        }
    }
    for list in expected.values_mut() {
        list.sort();
    }
    let calendar = |technician: Option<&str>| {
        let app = &app;
        let technician = technician.map(str::to_string);
        async move {
            let data = ok(
                app,
                "acme",
                Role::Technician,
                "query($t: String, $from: DateTime!, $to: DateTime!) {
                    technicianCalendar(technician: $t, from: $from, to: $to) { technician day installations { id } } }",
                json!({"t": technician, "from": from.to_rfc3339(), "to": to.to_rfc3339()}),
            )
            .await;
            let mut got: BTreeMap<(String, NaiveDate), Vec<String>> = BTreeMap::new();
            for day in data["technicianCalendar"].as_array().unwrap_or(&vec![]) {
                let mut ids: Vec<String> = day["installations"]
                    .as_array()
                    .unwrap_or(&vec![])
                    .iter()
                    .map(|i| i["id"].as_str().unwrap_or("").to_string())
                    .collect();
                ids.sort();
                let date = NaiveDate::parse_from_str(day["day"].as_str().unwrap_or(""), "%Y-%m-%d")
                    .unwrap_or_else(|e| panic!("{e}"));
                got.insert((day["technician"].as_str().unwrap_or("").to_string(), date), ids);
            }
            got
        }
    };
    assert_eq!(calendar(None).await, expected);
    assert!(expected.len() >= 4, "{expected:?}");
    let only_tech2: BTreeMap<_, _> = expected
        .iter()
        .filter(|((t, _), _)| t == "tech-2")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(calendar(Some("tech-2")).await, only_tech2);

    // The installations list filters by status, type, technician and period.
    let data = ok(
        &app,
        "acme",
        Role::Admin,
        "query($from: DateTime!, $to: DateTime!) {
            inProgress: installations(status: IN_PROGRESS) { edges { node { id } } }
            starlink: installations(type: STARLINK) { edges { node { id } } }
            tech1: installations(technician: \"tech-1\") { edges { node { id } } }
            firstDay: installations(from: $from, to: $to) { edges { node { id } } } }",
        json!({"from": base.to_rfc3339(), "to": (base + Duration::days(1)).to_rfc3339()}),
    )
    .await;
    let ids = |key: &str| -> Vec<String> {
        let mut v: Vec<String> = data[key]["edges"]
            .as_array()
            .unwrap_or(&vec![])
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap_or("").to_string())
            .collect();
        v.sort();
        v
    };
    let expect = |keep: &dyn Fn(&Folded) -> bool| {
        let mut v: Vec<String> = folded
            .iter()
            .filter(|(_, x)| keep(x))
            .map(|(k, _)| k.trim_start_matches("acme:").to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids("inProgress"), expect(&|x| x.1 == InstallationStatus::InProgress));
    assert_eq!(ids("starlink"), expect(&|x| x.0 == InstallationType::Starlink));
    assert_eq!(ids("tech1"), expect(&|x| x.2.contains(&"tech-1".to_string())));
    assert_eq!(
        ids("firstDay"),
        expect(&|x| x.3.is_some_and(|s| s >= base && s < base + Duration::days(1)))
    );
}

/// Issue 17: one serial number could be installed on two installations, giving two active
/// warranties to two customers. Another installation is refused; the same one may record it
/// again (a repeat records nothing); a serial whose install was refused stays free.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_serial_number_is_installed_on_one_installation_only(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let svc = service(&app);
    let m = md(&tenant, "ops-1");
    let (_, first) = paid_solar_order(&app, &tenant).await;
    let (_, second) = paid_solar_order(&app, &tenant).await;
    let (_, not_started) = paid_solar_order(&app, &tenant).await;
    let day = Utc
        .with_ymd_and_hms(2026, 12, 5, 9, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    for isr in [&first, &second] {
        svc.assign_technician(isr, "tech-1", &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        svc.schedule(isr, day, &m).await.unwrap_or_else(|e| panic!("{e}"));
        svc.start_work(isr, &m).await.unwrap_or_else(|e| panic!("{e}"));
    }
    svc.install_component(&first, "PNL-77", "panel", 120, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let refused = svc.install_component(&second, "PNL-77", "panel", 120, &m).await;
    assert_eq!(
        refused.as_ref().err().map(ToString::to_string),
        Some(format!("serial PNL-77 is already installed on {first}"))
    );
    assert_eq!(refusal(refused), "SERIAL_ON_ANOTHER_INSTALLATION");
    assert_eq!(
        refusal(svc.install_component(&second, " PNL-77 ", "panel", 120, &m).await),
        "SERIAL_ON_ANOTHER_INSTALLATION"
    );
    svc.install_component(&first, "PNL-77", "panel", 120, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE event_type = 'ComponentInstalled' AND payload->'ComponentInstalled'->>'serial' = 'PNL-77'"
        )
        .await,
        1
    );
    // Refused for another reason (not started): the serial is not taken.
    assert_eq!(
        refusal(svc.install_component(&not_started, "PNL-88", "panel", 120, &m).await),
        "NOT_IN_PROGRESS"
    );
    svc.install_component(&second, "PNL-88", "panel", 120, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A claim whose installation never recorded the serial (its command was lost): it holds
    // for ten minutes, then another installation takes it over.
    sqlx::query("INSERT INTO component_serials (tenant_id, serial, installation_id) VALUES ('acme', 'PNL-99', $1)")
        .bind(&not_started)
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        refusal(svc.install_component(&second, "PNL-99", "panel", 120, &m).await),
        "SERIAL_ON_ANOTHER_INSTALLATION"
    );
    sqlx::query("UPDATE component_serials SET claimed_at = now() - interval '11 minutes' WHERE serial = 'PNL-99'")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.install_component(&second, "PNL-99", "panel", 120, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A claim backed by the log never goes stale.
    sqlx::query("UPDATE component_serials SET claimed_at = now() - interval '1 day'")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        refusal(svc.install_component(&first, "PNL-99", "panel", 120, &m).await),
        "SERIAL_ON_ANOTHER_INSTALLATION"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_timeline_lists_every_event_of_the_installation_in_order_without_personal_data(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let svc = service(&app);
    let m = md(&tenant, "ops-1");
    let (_, isr) = paid_solar_order(&app, &tenant).await;
    let day = Utc
        .with_ymd_and_hms(2026, 12, 5, 9, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    svc.assign_technician(&isr, "tech-1", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.schedule(&isr, day, &m).await.unwrap_or_else(|e| panic!("{e}"));
    svc.reschedule(&isr, day + Duration::days(1), "Mrs Moyo is in hospital", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.start_work(&isr, &m).await.unwrap_or_else(|e| panic!("{e}"));
    svc.complete_checklist_item(&isr, "site_survey", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.attach_photo(&isr, "site_before", &hash(1), &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    svc.install_component(&isr, "PNL-9", "panel", 120, &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let expected: Vec<(i64, String)> =
        sqlx::query_as("SELECT sequence, event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(tenant.stream_id(&isr))
            .fetch_all(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(expected.len(), 8);
    let data = ok(
        &app,
        "acme",
        Role::Auditor,
        "query($id: String!) { installation(id: $id) { timeline { sequence eventType at actor summary } } }",
        json!({"id": isr}),
    )
    .await;
    let timeline = data["installation"]["timeline"].as_array().cloned().unwrap_or_default();
    let got: Vec<(i64, String)> = timeline
        .iter()
        .map(|e| {
            (
                e["sequence"].as_i64().unwrap_or(0),
                e["eventType"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(timeline[0]["actor"], "system:installation-pm");
    assert_eq!(timeline[1]["actor"], "user:ops-1:admin");
    assert_eq!(timeline[1]["summary"], "Technician tech-1 assigned (1 on the team)");
    let text = serde_json::to_string(&timeline).unwrap_or_default();
    assert!(text.contains("reason recorded") && !text.contains("Moyo") && !text.contains("hospital"));
}

// ---------------------------------------------------------------------------------------------
// Roles and tenants

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn roles_limit_who_sells_works_and_pays(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let (_, isr) = paid_solar_order(&app, &tenant).await;
    let place =
        "mutation { placeOrder(customerId: \"ct_customer_1\", items: [{ sku: \"s\", description: \"d\", quantity: 1,
                  unitPriceMinor: 100, currency: \"USD\" }]) { id } }";
    assert_eq!(
        gql_code(&app.gql("acme", Role::Technician, place, json!({})).await),
        "FORBIDDEN"
    );
    assert_eq!(
        gql_code(&app.gql("acme", Role::Finance, place, json!({})).await),
        "FORBIDDEN"
    );
    let data = ok(&app, "acme", Role::Agent, place, json!({})).await;
    assert!(data["placeOrder"]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("order_")));
    let assign = "mutation($id: String!) { assignTechnician(installationId: $id, technicianId: \"t\") { id } }";
    assert_eq!(
        gql_code(&app.gql("acme", Role::Technician, assign, json!({"id": isr})).await),
        "FORBIDDEN"
    );
    assert_eq!(
        gql_code(&app.gql("acme", Role::Agent, COMMISSION, json!({"id": isr})).await),
        "FORBIDDEN"
    );
    // A technician works only on installations they are assigned to.
    let tech = app.user("acme", Role::Technician).await;
    app.act_as("acme", Role::Technician, &tech);
    let start = "mutation($id: String!) { startInstallationWork(installationId: $id) { id } }";
    assert_eq!(
        gql_code(&app.gql("acme", Role::Technician, start, json!({"id": isr})).await),
        "FORBIDDEN"
    );
    ok(
        &app,
        "acme",
        Role::Admin,
        "mutation($id: String!, $tech: String!) { assignTechnician(installationId: $id, technicianId: $tech) { id } }",
        json!({"id": isr, "tech": tech}),
    )
    .await;
    let data = ok(&app, "acme", Role::Technician, start, json!({"id": isr})).await;
    assert!(data["startInstallationWork"]["id"].as_str().is_some());
    assert_eq!(
        gql_code(
            &app.gql(
                "acme",
                Role::Agent,
                "mutation { approvePayout(payoutId: \"payout_x\") { id } }",
                json!({})
            )
            .await
        ),
        "FORBIDDEN"
    );
    assert_eq!(
        gql_code(
            &app.gql("acme", Role::Agent, "{ payouts { totals { count } } }", json!({}))
                .await
        ),
        "FORBIDDEN"
    );
    assert_eq!(
        gql_code(
            &app.gql("acme", Role::Integrator, "{ installationCounts { count } }", json!({}))
                .await
        ),
        "FORBIDDEN"
    );
    let (status, _) = app.graphql(None, "{ installationCounts { count } }", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A refusal through GraphQL carries its code.
    let reply = app
        .gql(
            "acme",
            Role::Agent,
            "mutation { placeOrder(customerId: \"ct_1\", items: []) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(gql_code(&reply), "EMPTY_ORDER");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn one_tenant_never_sees_or_changes_another_tenants_orders_installations_or_payouts(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let acme = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let _globex = app.tenant_with_number("globex", "666000666").await;
    let (order, isr) = paid_solar_order(&app, &acme).await;
    let svc = service(&app);
    let m = md(&acme, "ops-1");
    ready_to_commission(&app, &acme, &isr, true).await;
    for item in required_checklist(InstallationType::Solar) {
        svc.complete_checklist_item(&isr, item, &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (i, kind) in photo_requirements(InstallationType::Solar).iter().enumerate() {
        svc.attach_photo(&isr, kind, &hash(i as u8), &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    svc.commission(&isr, &m).await.unwrap_or_else(|e| panic!("{e}"));
    settle(&app).await;
    let query = "query($id: String!, $order: String!) {
        installation(id: $id) { id timeline { sequence } } order(id: $order) { id }
        orders { edges { node { id } } } installations { edges { node { id } } }
        installationCounts { count } payouts { nodes { id } totals { count } } }";
    let vars = json!({"id": isr, "order": order});
    let mine = ok(&app, "acme", Role::Owner, query, vars.clone()).await;
    assert_eq!(mine["installation"]["id"], isr.as_str());
    assert_eq!(mine["payouts"]["nodes"].as_array().map(Vec::len), Some(1));
    let theirs = ok(&app, "globex", Role::Owner, query, vars).await;
    assert_eq!(
        theirs,
        json!({"installation": null, "order": null, "orders": {"edges": []}, "installations": {"edges": []},
               "installationCounts": [], "payouts": {"nodes": [], "totals": []}})
    );
    // globex's commands address globex's streams only: acme's installation is unknown there
    // (and acme's users are unknown to globex).
    let acme_tech = app.user("acme", Role::Technician).await;
    let globex_tech = app.user("globex", Role::Technician).await;
    let assign =
        "mutation($id: String!, $tech: String!) { assignTechnician(installationId: $id, technicianId: $tech) { id } }";
    let reply = app
        .gql("globex", Role::Owner, assign, json!({"id": isr, "tech": acme_tech}))
        .await;
    assert_eq!(gql_code(&reply), "UNKNOWN_USER");
    let reply = app
        .gql("globex", Role::Owner, assign, json!({"id": isr, "tech": globex_tech}))
        .await;
    assert_eq!(gql_code(&reply), "UNKNOWN_INSTALLATION");
    // Row-level security: the application role scoped to globex sees no acme row.
    let mut tx = app.state.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("SELECT set_config('chronicle.tenant_id', 'globex', true)")
        .execute(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for table in ["orders", "installations", "installation_timeline", "payouts"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 0, "{table}");
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn erasing_the_customer_clears_the_site_address_from_the_installations_read_model(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let customer = customer_who_wrote(&app).await;
    let isr = service(&app)
        .open_installation(
            OpenRequest {
                installation_type: InstallationType::Solar,
                customer_id: customer.clone(),
                order_id: "order_y".into(),
                site_address: "7 Borrowdale Road".into(),
                system_size_w: 3_000,
            },
            &md(&tenant, "ops-1"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let address = "query($id: String!) { installation(id: $id) { siteAddress customerId } }";
    let data = ok(&app, "acme", Role::Admin, address, json!({"id": isr})).await;
    assert_eq!(data["installation"]["siteAddress"], "7 Borrowdale Road");
    ok(
        &app,
        "acme",
        Role::Owner,
        "mutation($c: String!) { eraseContact(contactId: $c) { id } }",
        json!({"c": customer}),
    )
    .await;
    app.project().await;
    let data = ok(&app, "acme", Role::Admin, address, json!({"id": isr})).await;
    assert_eq!(data["installation"]["siteAddress"], Value::Null);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM installations WHERE site_address LIKE '%Borrowdale%'"
        )
        .await,
        0
    );
}

// ---------------------------------------------------------------------------------------------
// Quality bonus: granted while pending, replacing any earlier one; the read model shows the total

const GRANT: &str =
    "mutation($id: String!, $amount: Int!) { grantQualityBonus(payoutId: $id, amountMinor: $amount) { id } }";

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_owner_grants_a_quality_bonus_to_a_pending_payout_which_then_totals_tier_plus_bonus_and_none_after_approval(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let svc = service(&app);
    let m = md(&tenant, "ops-1");
    let (_, isr) = paid_solar_order(&app, &tenant).await;
    ready_to_commission(&app, &tenant, &isr, true).await;
    for item in required_checklist(InstallationType::Solar) {
        svc.complete_checklist_item(&isr, item, &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (i, kind) in photo_requirements(InstallationType::Solar).iter().enumerate() {
        svc.attach_photo(&isr, kind, &hash(i as u8), &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    svc.commission(&isr, &m).await.unwrap_or_else(|e| panic!("{e}"));
    settle(&app).await;
    let payout = payout_id_for(&tenant, &isr);
    let read = "{ payouts { nodes { id status baseMinor bonusMinor amountMinor }
                  totals { status currency count totalMinor } } }";

    // A technician can neither grant through GraphQL nor, as the payout's own technician, at all.
    let reply = app
        .gql("acme", Role::Technician, GRANT, json!({"id": payout, "amount": 1_500}))
        .await;
    assert_eq!(gql_code(&reply), "FORBIDDEN");
    assert_eq!(
        refusal(svc.grant_quality_bonus(&payout, 1_500, &md(&tenant, "tech-1")).await),
        "SELF_GRANT"
    );
    let reply = app
        .gql("acme", Role::Owner, GRANT, json!({"id": payout, "amount": 0}))
        .await;
    assert_eq!(gql_code(&reply), "QUALITY_BONUS_OUT_OF_RANGE");

    // The owner grants 2 000, then replaces it with 1 500: the total is the tier plus 1 500.
    let data = ok(&app, "acme", Role::Owner, GRANT, json!({"id": payout, "amount": 2_000})).await;
    assert!(data["grantQualityBonus"]["id"].as_str().is_some());
    ok(&app, "acme", Role::Admin, GRANT, json!({"id": payout, "amount": 1_500})).await;
    app.project().await;
    let base = payout_for(5_000, None);
    let total = payout_for(5_000, Some(1_500));
    assert_eq!(total, base + 1_500);
    let data = ok(&app, "acme", Role::Finance, read, json!({})).await;
    assert_eq!(
        data["payouts"]["nodes"],
        json!([{"id": payout, "status": "PENDING", "baseMinor": base, "bonusMinor": 1_500, "amountMinor": total}])
    );
    assert_eq!(
        data["payouts"]["totals"],
        json!([{"status": "PENDING", "currency": "USD", "count": 1, "totalMinor": total}])
    );

    // Once approved, no bonus: refused with its code, and the approved total is tier + bonus.
    svc.approve_payout(&payout, &m).await.unwrap_or_else(|e| panic!("{e}"));
    let reply = app
        .gql("acme", Role::Owner, GRANT, json!({"id": payout, "amount": 3_000}))
        .await;
    assert_eq!(gql_code(&reply), "PAYOUT_NOT_PENDING");
    app.project().await;
    let data = ok(&app, "acme", Role::Finance, read, json!({})).await;
    assert_eq!(
        data["payouts"]["totals"],
        json!([{"status": "APPROVED", "currency": "USD", "count": 1, "totalMinor": total}])
    );
    svc.mark_payout_paid(&payout, "EFT-1", &m)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let paid: i64 = sqlx::query_scalar(
        "SELECT (payload->'PayoutPaid'->>'amount_minor')::bigint FROM events WHERE event_type = 'PayoutPaid'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(paid, total);
}

// ---------------------------------------------------------------------------------------------
// Sizes from the items, site addresses from the order, and corrections

const CORRECT: &str = "mutation($id: String!, $address: String, $size: Int, $reason: String!) {
    correctInstallation(installationId: $id, siteAddress: $address, systemSizeW: $size, reason: $reason) { id } }";

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_order_gives_its_installation_the_site_address_and_the_size_of_its_panels_and_staff_correct_both(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    let tenant = app.tenant_with_number("acme", NUMBER).await;
    app.register_contact("acme", CUSTOMER, "+263771234567").await;
    let events = || async { app.count("SELECT count(*) FROM events").await };
    // Ten 550 W panels and a 5 kW inverter (which adds no capacity), with the site address.
    const PLACE: &str = "mutation($c: String!, $address: String, $panel: Int) {
      placeOrder(customerId: $c, siteAddress: $address, items: [
        { sku: \"panel-550w\", description: \"550 W panel\", quantity: 10, unitPriceMinor: 12000, currency: \"USD\",
          installable: SOLAR, capacityW: $panel },
        { sku: \"inverter-5kw\", description: \"5 kW inverter\", quantity: 1, unitPriceMinor: 90000, currency: \"USD\",
          installable: SOLAR }]) { id } }";
    // A stated capacity of zero, or a negative one, is refused and nothing is stored.
    let before = events().await;
    let reply = app
        .gql("acme", Role::Agent, PLACE, json!({"c": CUSTOMER, "panel": 0}))
        .await;
    assert_eq!(gql_code(&reply), "ZERO_CAPACITY", "{reply}");
    let reply = app
        .gql("acme", Role::Agent, PLACE, json!({"c": CUSTOMER, "panel": -550}))
        .await;
    assert_eq!(gql_code(&reply), "INVALID_INPUT", "{reply}");
    assert_eq!(events().await, before);

    let data = ok(
        &app,
        "acme",
        Role::Agent,
        PLACE,
        json!({"c": CUSTOMER, "address": " 12 Samora Machel Ave, Harare ", "panel": 550}),
    )
    .await;
    let order = data["placeOrder"]["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        count(&app, "SELECT count(*) FROM events WHERE payload::text LIKE '%Samora%'").await,
        0,
        "the site address is sealed in the log"
    );
    service(&app)
        .record_payment(
            &order,
            PaymentProvider::Cash,
            "rcpt-1",
            210_000,
            "USD",
            &md(&tenant, "ops-1"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    settle(&app).await;
    let isr = installation_id_for_order(&tenant, &order);
    const SHOW: &str = "query($id: String!) { installation(id: $id) { systemSizeW siteAddress status } }";
    let data = ok(&app, "acme", Role::Admin, SHOW, json!({"id": isr})).await;
    assert_eq!(
        data["installation"],
        json!({"systemSizeW": 5500, "siteAddress": "12 Samora Machel Ave, Harare", "status": "PENDING"}),
        "the size is the panels' 10 × 550 W, the address the order's"
    );

    // Refusals, each storing nothing.
    let before = events().await;
    let refused = [
        (
            Role::Admin,
            json!({"id": isr, "reason": "recount"}),
            "NOTHING_TO_CORRECT",
        ),
        (
            Role::Admin,
            json!({"id": isr, "size": 0, "reason": "recount"}),
            "ZERO_SYSTEM_SIZE",
        ),
        (
            Role::Admin,
            json!({"id": isr, "size": -1, "reason": "recount"}),
            "INVALID_INPUT",
        ),
        (
            Role::Admin,
            json!({"id": isr, "size": 6050, "reason": "  "}),
            "BLANK_FIELD",
        ),
        (
            Role::Admin,
            json!({"id": isr, "address": " ", "reason": "typo"}),
            "BLANK_FIELD",
        ),
        (
            Role::Admin,
            json!({"id": isr, "address": "x".repeat(4_001), "reason": "typo"}),
            "INVALID_INPUT",
        ),
        (
            Role::Admin,
            json!({"id": "isr_nope", "size": 6050, "reason": "recount"}),
            "UNKNOWN_INSTALLATION",
        ),
        (
            Role::Agent,
            json!({"id": isr, "size": 6050, "reason": "recount"}),
            "FORBIDDEN",
        ),
        (
            Role::Technician,
            json!({"id": isr, "size": 6050, "reason": "recount"}),
            "FORBIDDEN",
        ),
    ];
    for (role, vars, code) in refused {
        let reply = app.gql("acme", role, CORRECT, vars.clone()).await;
        assert_eq!(gql_code(&reply), code, "{vars}: {reply}");
    }
    assert_eq!(events().await, before, "no refusal stored anything");
    // The size it already has changes nothing.
    ok(
        &app,
        "acme",
        Role::Admin,
        CORRECT,
        json!({"id": isr, "size": 5500, "reason": "recount"}),
    )
    .await;
    assert_eq!(events().await, before);

    // Eleven panels went up: the size and the address are corrected, with a reason.
    ok(
        &app,
        "acme",
        Role::Admin,
        CORRECT,
        json!({"id": isr, "size": 6050, "address": "14 Samora Machel Ave, Harare",
               "reason": "an eleventh panel on site; the gate is number 14"}),
    )
    .await;
    assert_eq!(events().await, before + 1);
    // A retried request (the same address and size), or the address alone again, records
    // nothing more.
    ok(
        &app,
        "acme",
        Role::Admin,
        CORRECT,
        json!({"id": isr, "size": 6050, "address": " 14 Samora Machel Ave, Harare",
               "reason": "an eleventh panel on site; the gate is number 14"}),
    )
    .await;
    ok(
        &app,
        "acme",
        Role::Admin,
        CORRECT,
        json!({"id": isr, "address": "14 Samora Machel Ave, Harare", "reason": "the gate is number 14"}),
    )
    .await;
    assert_eq!(events().await, before + 1, "a retried correction records nothing");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE payload::text LIKE '%eleventh%' OR payload::text LIKE '%14 Samora%'"
        )
        .await,
        0,
        "the reason and the address are sealed"
    );
    app.project().await;
    let data = ok(&app, "acme", Role::Admin, SHOW, json!({"id": isr})).await;
    assert_eq!(data["installation"]["systemSizeW"], 6050);
    assert_eq!(data["installation"]["siteAddress"], "14 Samora Machel Ave, Harare");
    let data = ok(
        &app,
        "acme",
        Role::Admin,
        "query($id: String!) { installation(id: $id) { timeline { eventType summary } } }",
        json!({"id": isr}),
    )
    .await;
    let summaries: Vec<String> = data["installation"]["timeline"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|n| n["summary"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        summaries.contains(&"Corrected: site address, system size 5500 W → 6050 W (reason recorded)".to_string()),
        "{summaries:?}"
    );

    // Commissioned: the payout's tier comes from the corrected size (6 050 W: large, not the
    // 5 500 W medium).
    let svc = service(&app);
    let m = md(&tenant, "ops-1");
    ready_to_commission(&app, &tenant, &isr, true).await;
    for item in required_checklist(InstallationType::Solar) {
        svc.complete_checklist_item(&isr, item, &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (i, kind) in photo_requirements(InstallationType::Solar).iter().enumerate() {
        svc.attach_photo(&isr, kind, &hash(i as u8), &m)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    svc.commission(&isr, &m).await.unwrap_or_else(|e| panic!("{e}"));
    settle(&app).await;
    let data = ok(
        &app,
        "acme",
        Role::Finance,
        "{ payouts { nodes { installationId systemSizeW tier amountMinor } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data["payouts"]["nodes"],
        json!([{"installationId": isr, "systemSizeW": 6050, "tier": "large", "amountMinor": payout_for(6_050, None)}])
    );

    // After commissioning the size is fixed; the address may still be corrected, until
    // decommissioning.
    let before = events().await;
    let reply = app
        .gql(
            "acme",
            Role::Admin,
            CORRECT,
            json!({"id": isr, "size": 7000, "reason": "late recount"}),
        )
        .await;
    assert_eq!(gql_code(&reply), "SIZE_FIXED_AFTER_COMMISSIONING", "{reply}");
    assert_eq!(events().await, before);
    ok(
        &app,
        "acme",
        Role::Owner,
        CORRECT,
        json!({"id": isr, "address": "16 Samora Machel Ave, Harare", "reason": "renumbered street"}),
    )
    .await;
    svc.decommission(&isr, None, &m).await.unwrap_or_else(|e| panic!("{e}"));
    let before = events().await;
    let reply = app
        .gql(
            "acme",
            Role::Admin,
            CORRECT,
            json!({"id": isr, "address": "18 Samora", "reason": "moved"}),
        )
        .await;
    assert_eq!(gql_code(&reply), "INSTALLATION_DECOMMISSIONED", "{reply}");
    assert_eq!(events().await, before);
    app.project().await;
    let data = ok(&app, "acme", Role::Admin, SHOW, json!({"id": isr})).await;
    assert_eq!(data["installation"]["siteAddress"], "16 Samora Machel Ave, Harare");

    // A rebuild of the read model gives the same row.
    let live = chronicle_tests::table_rows(&app.pool, false).await;
    app.rebuild("installations").await;
    assert_eq!(chronicle_tests::table_rows(&app.pool, false).await, live);
}
