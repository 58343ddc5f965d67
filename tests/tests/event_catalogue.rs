//! The event catalogue (issue 13): every event type the demo's generator stores validates, as
//! the event contract shapes it (personal fields opened, and withheld), against the JSON Schema
//! the catalogue publishes for it; the catalogue is served at `/events/catalogue` and written
//! to `docs/events/catalogue.json`, which must equal what the code generates
//! (`CHRONICLE_WRITE_CATALOGUE=1` rewrites it).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chronicle_domain::catalogue::catalogue;
use chronicle_domain::tenant::TenantId;
use chronicle_projections::contract::Contract;
use chronicle_projections::log::{self, Cursor, LogFilter};
use chronicle_tests::TestApp;

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events/catalogue.json");

#[test]
fn the_published_catalogue_is_the_generated_one() {
    let generated = serde_json::to_string_pretty(&catalogue()).unwrap_or_default() + "\n";
    if std::env::var("CHRONICLE_WRITE_CATALOGUE").is_ok_and(|v| v == "1") {
        std::fs::write(DOCS, &generated).unwrap_or_else(|e| panic!("writing {DOCS}: {e}"));
    }
    let published = std::fs::read_to_string(DOCS).unwrap_or_default();
    assert!(
        published == generated,
        "docs/events/catalogue.json is not what the code generates: run \
         CHRONICLE_WRITE_CATALOGUE=1 cargo test -p chronicle-tests --test event_catalogue"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn every_event_the_demo_stores_validates_against_its_published_schema(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.load_demo().await;

    let (status, served) = app
        .send(
            Request::get("/events/catalogue")
                .body(Body::empty())
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let published = catalogue();
    assert_eq!(served, published, "the endpoint serves the catalogue");

    let mut validators = BTreeMap::new();
    let mut versions = BTreeMap::new();
    for (event_type, entry) in published["eventTypes"].as_object().cloned().unwrap_or_default() {
        let validator = jsonschema::validator_for(&entry["schema"])
            .unwrap_or_else(|e| panic!("{event_type}: the published schema is not a valid schema: {e}"));
        validators.insert(event_type.clone(), validator);
        versions.insert(event_type, entry["version"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(
        versions["DeliveryStatusRecorded"], "1.1",
        "the upcast type's current version is published"
    );
    assert_eq!(
        published["eventTypes"]["DeliveryStatusRecorded"]["changes"][0]["from"], "1.0",
        "with the change from 1.0"
    );

    // The schemas do refuse what is not an event's data.
    let received = &validators["MessageReceived"];
    let fine = serde_json::json!({"message_ref": "m", "contact_id": "ct_1", "business_number_id": "b",
        "kind": "text", "sent_at": "2026-01-01T00:00:00Z", "window_expires_at": "2026-01-02T00:00:00Z", "reopened": false});
    assert!(received.is_valid(&fine), "{:?}", received.validate(&fine).err());
    let mut missing = fine.clone();
    missing.as_object_mut().map(|m| m.remove("contact_id"));
    assert!(!received.is_valid(&missing), "contact_id is required");
    let mut wrong = fine.clone();
    wrong["reopened"] = serde_json::json!("yes");
    assert!(!received.is_valid(&wrong), "reopened is a boolean");

    let tenants: Vec<String> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM events ORDER BY 1")
        .fetch_all(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut checked: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for tenant in tenants {
        let id = TenantId::parse(&tenant).unwrap_or_else(|e| panic!("{e}"));
        for reveal in [true, false] {
            let mut contract = Contract::new(app.pool.clone(), id.clone(), Some(app.state.master_key.clone()), reveal);
            let mut after = Cursor::START;
            loop {
                let batch = log::read_after(&app.pool, after, &LogFilter::tenant(&tenant), 1_000)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let Some(last) = batch.last() else { break };
                after = last.cursor;
                for event in batch {
                    let shaped = contract.shape(event).await.unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(
                        Some(&shaped.event_version),
                        versions.get(&shaped.event_type),
                        "{} is read at its published version",
                        shaped.event_type
                    );
                    let Some(validator) = validators.get(&shaped.event_type) else {
                        failures.push(format!("{} is not in the catalogue", shaped.event_type));
                        continue;
                    };
                    if let Err(error) = validator.validate(&shaped.data) {
                        failures.push(format!(
                            "{} (personal {}): {error} at {}: {}",
                            shaped.event_type,
                            if reveal { "opened" } else { "withheld" },
                            error.instance_path(),
                            shaped.data
                        ));
                    }
                    *checked.entry(shaped.event_type).or_default() += 1;
                }
            }
        }
    }
    failures.truncate(20);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked.len() > 40, "the demo stores many types: {checked:?}");
}
