//! Every list of the schema is paginated (issue 12): walked from introspection, each list of
//! records is a Relay connection whose `first` documents its maximum ("1 to N") and refuses
//! N + 1 with `PAGE_TOO_LARGE`; the few lists that are not connections are parts of one record
//! or aggregates bounded by construction, named below with their bound.

use std::collections::{BTreeMap, BTreeSet};

use chronicle_api::auth::Role;
use chronicle_tests::TestApp;
use serde_json::{json, Value};

/// Lists of objects that are not connections, each with why it needs no pages.
const NOT_PAGED: [(&str, &str); 25] = [
    ("Query.leadFunnel", "one entry per lead source (an enum) plus the total"),
    (
        "Query.paymentProviders",
        "one row per payment provider the tenant configured (three at most)",
    ),
    (
        "Query.eventTypes",
        "the catalogue of event types: fixed by the code, not by data",
    ),
    (
        "Query.agentPerformance",
        "one row per agent of the tenant with activity in the period",
    ),
    (
        "Query.technicianCalendar",
        "per technician and day of a period of at most 93 days",
    ),
    (
        "Query.installationCounts",
        "one row per installation type and status (two enums)",
    ),
    ("Query.priceList", "one row per metered feature"),
    ("Customer.lifetimeValue", "one entry per currency the customer paid in"),
    ("CalendarDay.installations", "one technician's installations of one day"),
    ("ConversationThread.notes", "part of one conversation"),
    (
        "InteractiveMessage.buttons",
        "part of one message: at most three reply buttons",
    ),
    (
        "InteractiveMessage.sections",
        "part of one message: at most ten sections",
    ),
    ("ListSection.rows", "part of one message: at most ten rows in a list"),
    ("Installation.photos", "part of one installation"),
    ("Installation.assignedTechnicians", "part of one installation"),
    ("Installation.components", "part of one installation"),
    ("Installation.timeline", "part of one installation"),
    ("Lead.scoreReasons", "part of one lead's score"),
    ("LeadSourceFunnel.stages", "one row per lead stage (an enum)"),
    ("LedgerLine.postings", "part of one ledger line"),
    ("Order.items", "part of one order"),
    ("Order.payments", "part of one order"),
    ("ThreadMessage.statusTimeline", "part of one message"),
    ("Receipt.prices", "one row per metered feature"),
    ("PayoutConnection.totals", "one row per payout status and currency"),
];

/// How to reach a connection that is not a root field: a query with `FIELD` where the nested
/// connection goes, and the tenant of the demo that has a parent.
const NESTED: [(&str, &str, &str); 5] = [
    (
        "Customer.orders",
        "installer-1",
        "{ customers(first: 1) { nodes { FIELD } } }",
    ),
    (
        "Customer.installations",
        "installer-1",
        "{ customers(first: 1) { nodes { FIELD } } }",
    ),
    (
        "Customer.serviceRequests",
        "installer-1",
        "{ customers(first: 1) { nodes { FIELD } } }",
    ),
    (
        "ConversationThread.messages",
        "clothing-1",
        "query($id: String!) { conversation(id: $id) { FIELD } }",
    ),
    (
        "CampaignNode.recipients",
        "agency-1",
        "{ campaigns(first: 1) { nodes { FIELD } } }",
    ),
];

const INTROSPECTION: &str = "{ __schema { queryType { name } mutationType { name } subscriptionType { name }
  types { name kind fields { name
    args { name description defaultValue type { kind name ofType { kind name ofType { kind name } } } }
    type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }";

/// The named type under NON_NULL and LIST wrappers, and whether a LIST was among them.
fn unwrap(ty: &Value) -> (String, String, bool) {
    let mut t = ty;
    let mut list = false;
    while t["kind"] == "NON_NULL" || t["kind"] == "LIST" {
        list |= t["kind"] == "LIST";
        t = &t["ofType"];
    }
    (
        t["name"].as_str().unwrap_or_default().to_string(),
        t["kind"].as_str().unwrap_or_default().to_string(),
        list,
    )
}

/// The documented maximum of a `first` argument: its description says "1 to N".
fn documented_maximum(description: &str) -> Option<i64> {
    let rest = &description[description.find("1 to ")? + 5..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == ',').collect();
    digits.replace(',', "").parse().ok()
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn every_list_is_a_connection_that_refuses_a_page_over_its_documented_maximum(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.load_demo().await;
    let schema = app.gql("solar-1", Role::Owner, INTROSPECTION, json!({})).await;
    let schema = &schema["data"]["__schema"];
    let roots: BTreeSet<String> = ["queryType", "mutationType", "subscriptionType"]
        .iter()
        .filter_map(|r| schema[*r]["name"].as_str().map(str::to_string))
        .collect();
    let query_root = schema["queryType"]["name"].as_str().unwrap_or("Query").to_string();

    // Every list of objects, and every connection with its documented maximum.
    let mut unpaged = BTreeSet::new();
    let mut connections: BTreeMap<String, i64> = BTreeMap::new();
    for ty in schema["types"].as_array().cloned().unwrap_or_default() {
        let type_name = ty["name"].as_str().unwrap_or_default().to_string();
        if ty["kind"] != "OBJECT"
            || type_name.starts_with("__")
            || (roots.contains(&type_name) && type_name != query_root)
        {
            continue;
        }
        let shown = if type_name == query_root {
            "Query".to_string()
        } else {
            type_name.clone()
        };
        for field in ty["fields"].as_array().cloned().unwrap_or_default() {
            let name = field["name"].as_str().unwrap_or_default();
            let (inner, kind, list) = unwrap(&field["type"]);
            let path = format!("{shown}.{name}");
            if kind == "OBJECT" && inner.ends_with("Connection") && !list {
                let args = field["args"].as_array().cloned().unwrap_or_default();
                let first = args.iter().find(|a| a["name"] == "first");
                let after = args.iter().find(|a| a["name"] == "after");
                assert!(
                    first.is_some() && after.is_some(),
                    "{path}: a connection without first/after"
                );
                let description = first.and_then(|f| f["description"].as_str()).unwrap_or_default();
                let maximum = documented_maximum(description)
                    .unwrap_or_else(|| panic!("{path}: `first` does not document its maximum: {description:?}"));
                assert!(
                    description.contains("PAGE_TOO_LARGE"),
                    "{path}: `first` does not say what is refused: {description:?}"
                );
                connections.insert(path, maximum);
            } else if list && kind == "OBJECT" && !name.eq("edges") && !name.eq("nodes") {
                unpaged.insert(path);
            }
        }
    }
    let allowed: BTreeSet<String> = NOT_PAGED.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(
        unpaged, allowed,
        "lists of records must be connections; a part of one record or a bounded aggregate is named in NOT_PAGED"
    );
    assert!(connections.len() >= 24, "{connections:?}");

    // Each root connection refuses N + 1 and accepts N; a list of one record's parts is asked
    // of a record the demo tenant has (a webhook made here: nothing runs to deliver to it).
    let created = app
        .gql(
            "solar-1",
            Role::Owner,
            "mutation { createWebhook(input: { url: \"http://127.0.0.1:9/hook\" }) { id } }",
            json!({}),
        )
        .await;
    let webhook = created["data"]["createWebhook"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!webhook.is_empty(), "{created}");
    for (path, maximum) in &connections {
        let Some(field) = path.strip_prefix("Query.") else {
            continue;
        };
        let field = match field {
            "webhookDeliveries" => format!("webhookDeliveries(webhookId: \"{webhook}\", "),
            other => format!("{other}("),
        };
        {
            let token = app.token("solar-1", Role::Owner);
            let over = format!("{{ {field}first: {}) {{ edges {{ cursor }} }} }}", maximum + 1);
            let (_, reply) = app.graphql(Some(&token), &over, json!({})).await;
            assert_eq!(
                reply["errors"][0]["extensions"]["code"], "PAGE_TOO_LARGE",
                "{path}: {reply}"
            );
            let message = reply["errors"][0]["message"].as_str().unwrap_or_default();
            assert!(message.contains(&format!("at most {maximum}")), "{path}: {message}");
            let at = format!("{{ {field}first: {maximum}) {{ edges {{ cursor }} }} }}");
            let (_, reply) = app.graphql(Some(&token), &at, json!({})).await;
            assert!(reply.get("errors").is_none(), "{path} at its maximum: {reply}");
        }
    }

    // Each nested connection too, through a parent of the demo.
    let nested: BTreeSet<&str> = connections
        .keys()
        .map(String::as_str)
        .filter(|p| !p.starts_with("Query."))
        .collect();
    assert_eq!(
        nested,
        NESTED.iter().map(|(p, _, _)| *p).collect::<BTreeSet<_>>(),
        "a nested connection needs a way in (NESTED)"
    );
    for (path, tenant, query) in NESTED {
        let maximum = connections[path];
        let field = path.split('.').nth(1).unwrap_or_default();
        let token = app.token(tenant, Role::Owner);
        let variables = if query.contains("$id") {
            let (_, list) = app
                .graphql(Some(&token), "{ conversations(first: 1) { nodes { id } } }", json!({}))
                .await;
            json!({"id": list["data"]["conversations"]["nodes"][0]["id"]})
        } else {
            json!({})
        };
        let over = query.replace(
            "FIELD",
            &format!("{field}(first: {}) {{ edges {{ cursor }} }}", maximum + 1),
        );
        let (_, reply) = app.graphql(Some(&token), &over, variables.clone()).await;
        assert_eq!(
            reply["errors"][0]["extensions"]["code"], "PAGE_TOO_LARGE",
            "{path}: {reply}"
        );
        let at = query.replace("FIELD", &format!("{field}(first: {maximum}) {{ edges {{ cursor }} }}"));
        let (_, reply) = app.graphql(Some(&token), &at, variables).await;
        assert!(reply.get("errors").is_none(), "{path} at its maximum: {reply}");
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_new_connections_page_through_every_row_once(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.load_demo().await;
    let installations =
        chronicle_commands::installation::InstallationWorker::new(app.state.commands.clone(), app.keys());
    installations.drain().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    // What the demo has none of: maintenance contracts and warranty claims.
    let finance = app.token("installer-1", Role::Finance);
    for i in 0..7 {
        let start = format!(
            "mutation {{ startMaintenanceContract(input: {{ contractId: \"mc_{i}\",
            customerId: \"ct_customer_{i}\", startsAt: \"2026-0{}-15T00:00:00Z\", termMonths: 12,
            annualValueMinor: 1000, currency: \"USD\" }}) {{ id }} }}",
            1 + i % 3
        );
        let (_, reply) = app.graphql(Some(&finance), &start, json!({})).await;
        assert!(reply.get("errors").is_none(), "{reply}");
    }
    // Claims under warranties of our own, running from yesterday (the demo's are dated).
    let agent = app.token("installer-1", Role::Agent);
    let tenant = chronicle_domain::tenant::TenantId::parse("installer-1").unwrap_or_else(|e| panic!("{e}"));
    for i in 0..5 {
        let serial = format!("SN-LIST-{i}");
        let id = chronicle_domain::installation::warranty_local_id("isr_list", &serial);
        let starts_at = chrono::Utc::now() - chrono::Duration::days(1);
        app.state
            .commands
            .warranty(
                &id,
                chronicle_domain::installation::WarrantyCommand::Register(
                    chronicle_domain::installation::RegisterWarranty {
                        installation_id: "isr_list".into(),
                        serial,
                        kind: "inverter".into(),
                        customer_id: "ct_customer_1".into(),
                        warranty_months: 12,
                        starts_at,
                        by: "commissioning".into(),
                        at: starts_at,
                    },
                ),
                &chronicle_tests::user_metadata(tenant.as_str(), "ops-1", "admin"),
            )
            .await
            .unwrap_or_else(|e| panic!("registering: {e}"));
        app.project().await;
        let file = "mutation($w: String!, $c: String) {
            fileWarrantyClaim(input: { warrantyId: $w, description: \"It stopped\", claimId: $c }) { id } }";
        let (_, reply) = app
            .graphql(Some(&agent), file, json!({"w": id, "c": format!("claim_{i}")}))
            .await;
        assert!(reply.get("errors").is_none(), "{reply}");
    }
    app.project().await;
    // (tenant, field, a node field that identifies it)
    let lists = [
        ("installer-1", "warranties", "id"),
        ("installer-1", "payouts", "id"),
        ("installer-1", "maintenanceContracts", "id"),
        ("installer-1", "warrantyClaims", "id"),
        ("clothing-1", "templates", "name language"),
        ("events-1", "wallets", "id"),
        ("events-1", "usage", "day feature"),
        ("agency-1", "reservations(all: true)", "reference"),
    ];
    for (tenant, field, key) in lists {
        let token = app.token(tenant, Role::Owner);
        let name = field.split('(').next().unwrap_or(field);
        let args = field.find('(').map_or("", |i| &field[i + 1..field.len() - 1]);
        let whole = walk(&app, &token, name, args, key, 100).await;
        assert!(!whole.is_empty(), "{tenant} {name}: the demo has none");
        let distinct: BTreeSet<String> = whole.iter().map(Value::to_string).collect();
        assert_eq!(distinct.len(), whole.len(), "{tenant} {name}: a row twice");
        assert_eq!(
            walk(&app, &token, name, args, key, 3).await,
            whole,
            "{tenant} {name}: pages of 3 differ from pages of 100"
        );
        // A cursor that this list did not give out is BAD_CURSOR.
        let sep = if args.is_empty() { "" } else { ", " };
        let bad = format!("{{ {name}({args}{sep}first: 2, after: \"not-a-cursor\") {{ nodes {{ {key} }} }} }}");
        let (_, reply) = app.graphql(Some(&token), &bad, json!({})).await;
        assert_eq!(reply["errors"][0]["extensions"]["code"], "BAD_CURSOR", "{bad}: {reply}");
    }
}

/// Every node of a list (its `key` fields), read `size` at a time through `after`.
async fn walk(app: &TestApp, token: &str, name: &str, args: &str, key: &str, size: usize) -> Vec<Value> {
    let sep = if args.is_empty() { "" } else { ", " };
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let query = format!(
            "query($after: String) {{ {name}({args}{sep}first: {size}, after: $after) {{ edges {{ cursor node {{ {key} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
        );
        let (_, reply) = app.graphql(Some(token), &query, json!({"after": after})).await;
        assert!(reply.get("errors").is_none(), "{query}: {reply}");
        let page = &reply["data"][name];
        let edges = page["edges"].as_array().cloned().unwrap_or_default();
        assert!(edges.len() <= size, "{name}: a page over its size");
        rows.extend(edges.into_iter().map(|e| e["node"].clone()));
        if page["pageInfo"]["hasNextPage"] != true {
            return rows;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_string);
        assert!(rows.len() < 100_000, "{name}: paging does not end");
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn total_count_counts_every_page_with_the_same_filters(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.load_demo().await;
    let lists = [
        ("clothing-1", "conversations", ""),
        ("clothing-1", "conversations", "filter: { status: OPEN }"),
        ("solar-1", "leads", ""),
        ("solar-1", "leads", "filter: { stage: QUALIFIED }"),
        ("installer-1", "contacts", ""),
        ("installer-1", "contacts", "tag: \"vip\""),
        ("installer-1", "installations", ""),
        ("installer-1", "installations", "status: COMMISSIONED"),
        ("installer-1", "orders", ""),
        ("installer-1", "serviceRequests", ""),
        ("installer-1", "payments", ""),
        ("installer-1", "unmatchedPayments", ""),
    ];
    let mut counted = 0;
    for (tenant, name, args) in lists {
        let token = app.token(tenant, Role::Owner);
        let nodes = walk(&app, &token, name, args, "id", 7).await;
        let parens = if args.is_empty() {
            String::new()
        } else {
            format!("({args})")
        };
        let query = format!("{{ {name}{parens} {{ totalCount }} }}");
        let (_, reply) = app.graphql(Some(&token), &query, json!({})).await;
        assert!(reply.get("errors").is_none(), "{query}: {reply}");
        assert_eq!(
            reply["data"][name]["totalCount"].as_u64(),
            Some(nodes.len() as u64),
            "{tenant} {name}({args})"
        );
        counted += nodes.len();
    }
    assert!(counted > 0, "the demo has rows to count");
}
