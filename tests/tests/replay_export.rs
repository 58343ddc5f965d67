//! `chronicle-replay export --contact` (issue 11): a data-subject access request holds every
//! personal field Chronicle holds about the contact, and after the contact is erased, none.

use chronicle_api::auth::Role;
use chronicle_domain::pii::MasterKey;
use chronicle_replay::export::{export, ExportArgs};
use chronicle_replay::history::{history, HistoryArgs, PERSONAL};
use chronicle_replay::DatabaseArgs;
use chronicle_tests::*;
use chrono::Utc;
use serde_json::{json, Value};
use sqlx::PgPool;

fn database() -> DatabaseArgs {
    DatabaseArgs {
        database_url: None,
        data_dir: ".chronicle".into(),
    }
}

fn master() -> MasterKey {
    MasterKey::from_base64(MASTER_KEY).unwrap_or_else(|e| panic!("{e}"))
}

async fn export_of(app: &TestApp, tenant: &str, contact: Option<&str>) -> String {
    let args = ExportArgs {
        tenant: tenant.to_owned(),
        contact: contact.map(str::to_owned),
        out: None,
        database: database(),
    };
    let document = export(&app.pool, &args, master())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    serde_json::to_string(&document).unwrap_or_default()
}

/// `value` as it stands inside a JSON string.
fn escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_owned()
}

/// Pairs of (hidden, revealed) payloads: every value shown as [personal] when hidden.
fn personal_values(hidden: &Value, revealed: &Value, out: &mut Vec<String>) {
    match (hidden, revealed) {
        (Value::String(h), Value::String(r)) if h == PERSONAL => out.push(r.clone()),
        (Value::Object(h), Value::Object(r)) => {
            for (key, inner) in h {
                if let Some(other) = r.get(key) {
                    personal_values(inner, other, out);
                }
            }
        }
        (Value::Array(h), Value::Array(r)) => {
            for (a, b) in h.iter().zip(r) {
                personal_values(a, b, out);
            }
        }
        _ => {}
    }
}

/// Every personal field held about `contact`: the personal fields of the events of its streams
/// (opened) and the plaintext personal columns of the read models.
async fn held_about(app: &TestApp, tenant: &str, contact: &str) -> Vec<String> {
    let streams: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT aggregate_id FROM events WHERE tenant_id = $1 AND (aggregate_id = $1 || ':' || $2 \
            OR payload::text LIKE '%' || $2 || '%')",
    )
    .bind(tenant)
    .bind(contact)
    .fetch_all(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut rows = [Vec::new(), Vec::new()];
    for (reveal, rows) in [false, true].into_iter().zip(rows.iter_mut()) {
        let args = HistoryArgs {
            streams: streams.clone(),
            reveal,
            ..HistoryArgs::of_tenant(tenant, database())
        };
        history(&app.pool, &args, reveal.then(master), |row| {
            rows.push(row.payload);
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut values = Vec::new();
    for (hidden, revealed) in rows[0].iter().zip(&rows[1]) {
        personal_values(hidden, revealed, &mut values);
    }
    let columns: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT unnest(ARRAY[name, phone, email]) FROM contacts WHERE tenant_id = $1 AND contact_id = $2 \
         UNION ALL SELECT unnest(ARRAY[contact_name, contact_phone, last_message_text]) FROM conversations \
           WHERE tenant_id = $1 AND conversation_id = $2 \
         UNION ALL SELECT content FROM messages WHERE tenant_id = $1 AND conversation_id = $2 \
         UNION ALL SELECT unnest(ARRAY[name, phone, email, lost_note]) FROM leads \
           WHERE tenant_id = $1 AND (contact_id = $2 OR customer_id = $2) \
         UNION ALL SELECT site_address FROM installations WHERE tenant_id = $1 AND customer_id = $2",
    )
    .bind(tenant)
    .bind(contact)
    .fetch_all(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    values.extend(columns.into_iter().flatten());
    values.retain(|v| v.chars().count() >= 5);
    values.sort();
    values.dedup();
    values
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_contacts_export_holds_every_personal_field_about_them_and_after_erasure_none(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.load_demo().await;
    app.project().await;

    // A customer with an installation, and a contact whose lead names them.
    let installed: String = sqlx::query_scalar(
        "SELECT customer_id FROM installations WHERE tenant_id = 'installer-1' ORDER BY customer_id LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let with_lead: String = sqlx::query_scalar(
        "SELECT contact_id FROM leads WHERE tenant_id = 'solar-1' AND contact_id IS NOT NULL \
            AND name IS NOT NULL ORDER BY contact_id LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    for (tenant, contact) in [("installer-1", installed.as_str()), ("solar-1", with_lead.as_str())] {
        let held = held_about(&app, tenant, contact).await;
        assert!(held.len() >= 3, "{tenant} {contact}: {held:?}");
        let before = export_of(&app, tenant, Some(contact)).await;
        for value in &held {
            assert!(
                before.contains(&escaped(value)),
                "{tenant} {contact}: the export lacks {value:?}"
            );
        }
        assert!(!before.contains("aes256gcm"), "an envelope in the export");
        let document: Value = serde_json::from_str(&before).unwrap_or_default();
        assert!(
            document["read_models"]["contacts"]
                .as_array()
                .is_some_and(|r| r.len() == 1),
            "{document}"
        );
        assert!(document["read_models"].get("contact_keys").is_none());

        let reply = app
            .gql(
                tenant,
                Role::Owner,
                "mutation($id: String!) { eraseContact(contactId: $id) { id } }",
                json!({"id": contact}),
            )
            .await;
        assert!(reply.get("errors").is_none(), "{reply}");
        app.project().await;

        let after = export_of(&app, tenant, Some(contact)).await;
        for value in &held {
            assert!(
                !after.contains(&escaped(value)),
                "{tenant} {contact}: {value:?} is still exported"
            );
        }
        assert!(after.contains("[erased]"), "{after}");
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_tenants_export_holds_its_events_and_rows_and_no_other_tenants(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.load_demo().await;
    app.project().await;
    let text = export_of(&app, "solar-1", None).await;
    let document: Value = serde_json::from_str(&text).unwrap_or_default();
    let events = app
        .count("SELECT count(*) FROM events WHERE tenant_id = 'solar-1'")
        .await;
    assert_eq!(document["events"].as_array().map(Vec::len), Some(events as usize));
    let tables = document["read_models"].as_object().cloned().unwrap_or_default();
    assert!(tables.contains_key("contacts") && tables.contains_key("leads") && tables.contains_key("messages"));
    for (table, rows) in &tables {
        for row in rows.as_array().into_iter().flatten() {
            assert_eq!(row["tenant_id"], "solar-1", "{table}: {row}");
        }
    }
    assert!(!text.contains("installer-1:"), "another tenant's stream in the export");
    assert!(!text.contains("wrapped_key") && !text.contains("aes256gcm"));
}

/// A lead holds a second capture from another number (attached by its e-mail): sealed for that
/// other contact. An export about the lead's contact never opens it.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_contacts_export_never_opens_another_contacts_fields_in_a_shared_stream(pool: PgPool) {
    use chronicle_commands::leads::{CaptureOutcome, LeadInput, Leads};
    use chronicle_domain::lead::{LeadSource, Priority};
    use chronicle_domain::phone::PhoneNumber;

    let app = TestApp::new(pool).await;
    let leads = Leads::new(app.state.commands.clone(), app.keys());
    let input = |capture_ref: &str, name: &str, phone: &str| LeadInput {
        capture_ref: capture_ref.into(),
        source: LeadSource::WebForm,
        name: Some(name.into()),
        phone: Some(PhoneNumber::parse(phone).unwrap_or_else(|e| panic!("{e}"))),
        email: Some("shared@example.com".into()),
        raw: json!({"message": "a quote please"}).to_string(),
        interest: None,
        priority: Priority::Normal,
        property_type: None,
        estimated_system_size_w: None,
        budget: None,
        at: Utc::now(),
    };
    let meta = system_metadata("acme");
    let first = leads
        .capture(input("form:1", "Alice Alpha", "+263771000001"), &meta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = leads
        .capture(input("form:2", "Bobby Bravo", "+263772000002"), &meta)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second.outcome, CaptureOutcome::Attached);
    assert_eq!(first.lead_id, second.lead_id);
    app.project().await;
    let alice: String = sqlx::query_scalar("SELECT contact_id FROM leads WHERE tenant_id = 'acme' AND lead_id = $1")
        .bind(&first.lead_id)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let exported = export_of(&app, "acme", Some(&alice)).await;
    let document: Value = serde_json::from_str(&exported).unwrap_or_default();
    // The events: Alice's fields opened, the attached capture's shown as another contact's.
    // (The `leads` read-model row shows the latest capture's name and phone, Bob's, and is
    // exported as the row keyed to Alice: the lead takes its captures' details by design. The
    // row records that it holds Bob's, and Bob's erasure clears them: below.)
    let events = document["events"].to_string();
    assert!(events.contains("Alice Alpha"), "{events}");
    assert!(
        !events.contains("Bobby Bravo"),
        "another contact's name in the export: {events}"
    );
    assert!(
        !events.contains("+263772000002"),
        "another contact's phone in the export"
    );
    assert!(events.contains("[other contact]"), "{events}");

    // Bob's erasure clears the details the lead's row took from his capture.
    let bob: String = sqlx::query_scalar(
        "SELECT payload -> 'DuplicateCaptureAttached' ->> 'contact_id' FROM events \
          WHERE event_type = 'DuplicateCaptureAttached'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(bob, alice);
    let row = || async {
        sqlx::query_as::<_, (Option<String>, Option<String>, Option<String>)>(
            "SELECT name, phone, email FROM leads WHERE tenant_id = 'acme' AND lead_id = $1",
        )
        .bind(&first.lead_id)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(
        row().await.0.as_deref(),
        Some("Bobby Bravo"),
        "the row shows the latest capture's name"
    );
    let reply = app
        .gql(
            "acme",
            Role::Owner,
            "mutation($id: String!) { eraseContact(contactId: $id) { id } }",
            json!({"id": bob}),
        )
        .await;
    assert!(reply.get("errors").is_none(), "{reply}");
    app.project().await;
    assert_eq!(row().await, (None, None, None));
    let exported = export_of(&app, "acme", Some(&alice)).await;
    assert!(
        !exported.contains("Bobby Bravo") && !exported.contains("+263772000002"),
        "{exported}"
    );
}
