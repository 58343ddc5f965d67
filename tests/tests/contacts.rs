//! Contacts and templates from end to end: registration from inbound WhatsApp messages
//! (including a withheld number), consent keywords, search by name, phone and tag, profile and
//! custom fields, erasure (key destroyed, read models cleared, the log still verifies), template
//! review, and the roles allowed to read and change each.

use axum::http::StatusCode;
use chronicle_api::auth::Role;
use chronicle_commands::intake::inbox;
use chronicle_commands::intake::whatsapp::{DeliveryItem, ItemKind};
use chronicle_projections::chain::verify;
use chronicle_tests::error_code as code;
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const NUMBER: &str = "333000333";

const CONTACTS: &str = "query($search: String, $tag: String) {
  contacts(first: 20, search: $search, tag: $tag) {
    edges { node { id handleKind phone name email source tags customFields consent consentSource consentAt
                   lastContactAt erased } }
  }
}";

/// Two contacts of acme wrote in: Tendai (two messages) and Rudo.
async fn two_contacts(app: &TestApp) {
    app.tenant_with_number("acme", NUMBER).await;
    let now = chrono::Utc::now().timestamp();
    let body = delivery(
        NUMBER,
        &[("263771000001", "Tendai Moyo"), ("263771000002", "Rudo Chikwanha")],
        vec![
            text_message("263771000001", &wamid("263771000001", 1), now - 600, "Hello"),
            text_message("263771000001", &wamid("263771000001", 2), now - 300, "Price of 5kW?"),
            text_message("263771000002", &wamid("263771000002", 3), now - 60, "Inverter beeps"),
        ],
        vec![],
    );
    assert_eq!(app.post_delivery(&body).await.0, StatusCode::OK);
    app.drain().await;
    app.project().await;
}

async fn say(app: &TestApp, from: &str, n: u32, text: &str) {
    let now = chrono::Utc::now().timestamp();
    let body = delivery(
        NUMBER,
        &[(from, "Tendai Moyo")],
        vec![text_message(from, &wamid(from, n), now, text)],
        vec![],
    );
    assert_eq!(app.post_delivery(&body).await.0, StatusCode::OK);
    app.drain().await;
    app.project().await;
}

async fn contacts(app: &TestApp, role: Role, search: Option<&str>, tag: Option<&str>) -> Vec<Value> {
    let token = app.token("acme", role);
    let (_, reply) = app
        .graphql(Some(&token), CONTACTS, json!({ "search": search, "tag": tag }))
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    reply["data"]["contacts"]["edges"]
        .as_array()
        .map(|edges| edges.iter().map(|e| e["node"].clone()).collect())
        .unwrap_or_default()
}

async fn contact_by_phone(app: &TestApp, phone: &str) -> Value {
    contacts(app, Role::Owner, Some(phone), None)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no contact with {phone}"))
}

async fn mutate(app: &TestApp, role: Role, mutation: &str, variables: Value) -> Value {
    let token = app.token("acme", role);
    let (_, reply) = app.graphql(Some(&token), mutation, variables).await;
    reply
}

const TAG: &str = "mutation($id: String!, $tag: String!) { tagContact(contactId: $id, tag: $tag) { id } }";
const ERASE: &str = "mutation($id: String!) { eraseContact(contactId: $id) { id } }";

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_inbound_message_registers_its_sender_once_with_name_phone_and_last_contact_time(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_contacts(&app).await;
    let all = contacts(&app, Role::Agent, None, None).await;
    assert_eq!(all.len(), 2, "{all:?}");
    let tendai = contact_by_phone(&app, "263771000001").await;
    assert_eq!(tendai["phone"], "+263771000001");
    assert_eq!(tendai["name"], "Tendai Moyo");
    assert_eq!(tendai["source"], "whatsapp");
    assert_eq!(tendai["handleKind"], "phone");
    assert_eq!(tendai["consent"], "UNKNOWN");
    assert!(tendai["lastContactAt"].is_string(), "{tendai}");
    // Two messages from Tendai, one registration.
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'ContactRegistered'")
            .await,
        2
    );
    // The log holds the name and number sealed only.
    let plain = app
        .count("SELECT count(*) FROM events WHERE payload::text LIKE '%Tendai%' OR payload::text LIKE '%263771000001%'")
        .await;
    assert_eq!(plain, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_message_from_a_withheld_number_registers_the_contact_by_whatsapps_user_id(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", NUMBER).await;
    let now = chrono::Utc::now().timestamp();
    let item = DeliveryItem {
        dedupe_key: "message:wamid.withheld".into(),
        phone_number_id: NUMBER.into(),
        kind: ItemKind::Message,
        payload: json!({
            "message": {"from_user_id": "ZW.1234567890abcdef", "id": "wamid.withheld", "timestamp": now.to_string(),
                        "type": "text", "text": {"body": "hi, number hidden"}},
            "contact": {"user_id": "ZW.1234567890abcdef", "profile": {"name": "Anon Buyer"}}
        }),
    };
    inbox::store(&app.state.pool, &app.state.id_key, &[item], "corr-withheld")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.drain().await;
    app.project().await;
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_inbox WHERE state = 'done'")
            .await,
        1
    );
    let all = contacts(&app, Role::Owner, Some("anon"), None).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["handleKind"], "provider_user");
    assert!(all[0]["phone"].is_null());
    assert_eq!(all[0]["name"], "Anon Buyer");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn stop_opts_the_contact_out_and_start_opts_them_back_in_by_whatsapp_keyword(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_contacts(&app).await;
    say(&app, "263771000001", 10, " Stop ").await;
    let tendai = contact_by_phone(&app, "263771000001").await;
    assert_eq!(
        (tendai["consent"].as_str(), tendai["consentSource"].as_str()),
        (Some("OPTED_OUT"), Some("whatsapp_keyword"))
    );
    // Not a keyword: a sentence with the word in it changes nothing.
    say(&app, "263771000001", 11, "please start the install").await;
    assert_eq!(contact_by_phone(&app, "263771000001").await["consent"], "OPTED_OUT");
    say(&app, "263771000001", 12, "START").await;
    assert_eq!(contact_by_phone(&app, "263771000001").await["consent"], "OPTED_IN");
    say(&app, "263771000001", 13, "unsubscribe").await;
    assert_eq!(contact_by_phone(&app, "263771000001").await["consent"], "OPTED_OUT");
    // The other contact is untouched.
    assert_eq!(contact_by_phone(&app, "263771000002").await["consent"], "UNKNOWN");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn contacts_are_found_by_name_phone_substring_and_tag(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_contacts(&app).await;
    let tendai = contact_by_phone(&app, "263771000001").await;
    let id = tendai["id"].as_str().unwrap_or_default().to_string();
    let reply = mutate(&app, Role::Agent, TAG, json!({"id": id, "tag": "  VIP  Client "})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    app.project().await;

    let by_name = contacts(&app, Role::Agent, Some("tend"), None).await;
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_name[0]["name"], "Tendai Moyo");
    let by_phone = contacts(&app, Role::Agent, Some("+263 771 000 002"), None).await;
    assert_eq!(by_phone.len(), 1);
    assert_eq!(by_phone[0]["name"], "Rudo Chikwanha");
    let by_tag = contacts(&app, Role::Agent, None, Some("vip client")).await;
    assert_eq!(by_tag.len(), 1);
    assert_eq!(by_tag[0]["tags"], json!(["vip client"]));
    assert!(contacts(&app, Role::Agent, Some("nobody"), None).await.is_empty());

    let untag = "mutation($id: String!, $tag: String!) { untagContact(contactId: $id, tag: $tag) { id } }";
    let reply = mutate(&app, Role::Agent, untag, json!({"id": id, "tag": "vip client"})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    app.project().await;
    assert!(contacts(&app, Role::Agent, None, Some("vip client")).await.is_empty());
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_bad_tag_and_a_tag_on_an_unknown_contact_are_refused_by_name(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_contacts(&app).await;
    let id = contact_by_phone(&app, "263771000001").await["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let reply = mutate(&app, Role::Agent, TAG, json!({"id": id, "tag": "no!good"})).await;
    assert_eq!(code(&reply), "INVALID_TAG", "{reply}");
    let reply = mutate(&app, Role::Agent, TAG, json!({"id": "ct_unknown", "tag": "vip"})).await;
    assert_eq!(code(&reply), "CONTACT_NOT_REGISTERED", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn profile_custom_fields_and_consent_set_by_an_agent_reach_the_read_model(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_contacts(&app).await;
    let id = contact_by_phone(&app, "263771000001").await["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let profile = "mutation($id: String!, $name: String, $email: String) {
        updateContactProfile(contactId: $id, name: $name, email: $email) { id } }";
    let field = "mutation($id: String!) { setCustomField(contactId: $id, key: \"roof_type\", value: \"tin\") { id } }";
    let opt_out = "mutation($id: String!) { optOut(contactId: $id) { id } }";
    for (mutation, variables) in [
        (
            profile,
            json!({"id": id, "name": "Tendai M.", "email": "tendai@example.com"}),
        ),
        (field, json!({"id": id})),
        (opt_out, json!({"id": id})),
    ] {
        let reply = mutate(&app, Role::Agent, mutation, variables).await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
    app.project().await;
    let tendai = contact_by_phone(&app, "263771000001").await;
    assert_eq!(tendai["name"], "Tendai M.");
    assert_eq!(tendai["email"], "tendai@example.com");
    assert_eq!(tendai["customFields"], json!({"roof_type": "tin"}));
    assert_eq!(
        (tendai["consent"].as_str(), tendai["consentSource"].as_str()),
        (Some("OPTED_OUT"), Some("agent"))
    );
    // `null` clears, absent leaves.
    let clear_email = "mutation($id: String!) { updateContactProfile(contactId: $id, email: null) { id } }";
    let reply = mutate(&app, Role::Agent, clear_email, json!({"id": id})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    app.project().await;
    let tendai = contact_by_phone(&app, "263771000001").await;
    assert_eq!(
        (tendai["name"].as_str(), tendai["email"].is_null()),
        (Some("Tendai M."), true)
    );
    let bad = "mutation($id: String!) { setCustomField(contactId: $id, key: \"Roof Type\", value: \"x\") { id } }";
    assert_eq!(
        code(&mutate(&app, Role::Agent, bad, json!({"id": id})).await),
        "INVALID_CUSTOM_FIELD_KEY"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn erasure_destroys_the_key_hides_the_person_everywhere_and_the_log_still_verifies(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_contacts(&app).await;
    let id = contact_by_phone(&app, "263771000001").await["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let reply = mutate(&app, Role::Admin, ERASE, json!({"id": id})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    app.project().await;

    let key_left = app
        .count(&format!("SELECT count(*) FROM contact_keys WHERE contact_id = '{id}'"))
        .await;
    assert_eq!(key_left, 0);
    let report = verify(&app.pool, Some("acme"), |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact() && report.events > 0, "{report:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'ContactErased'")
            .await,
        1
    );

    let all = contacts(&app, Role::Owner, None, None).await;
    let erased = all.iter().find(|c| c["id"] == id.as_str()).cloned().unwrap_or_default();
    assert_eq!(erased["erased"], true, "{erased}");
    assert!(erased["phone"].is_null() && erased["name"].is_null(), "{erased}");
    assert!(contacts(&app, Role::Owner, Some("tendai"), None).await.is_empty());
    let token = app.token("acme", Role::Owner);
    let (_, inbox) = app
        .graphql(
            Some(&token),
            "{ conversations(first: 10) { edges { node { contactId contactPhone contactName lastMessage { text } } } } }",
            json!({}),
        )
        .await;
    let conversation = inbox["data"]["conversations"]["edges"]
        .as_array()
        .and_then(|edges| edges.iter().find(|e| e["node"]["contactId"] == id.as_str()).cloned())
        .unwrap_or_default();
    assert!(conversation["node"]["contactPhone"].is_null(), "{inbox}");
    assert!(conversation["node"]["contactName"].is_null(), "{inbox}");
    assert!(conversation["node"]["lastMessage"]["text"].is_null(), "{inbox}");
    let readable = app
        .count(&format!(
            "SELECT count(*) FROM messages WHERE conversation_id = '{id}' AND content IS NOT NULL"
        ))
        .await;
    assert_eq!(readable, 0, "the conversation's messages are unreadable");

    // A rebuild from the log projects the erased contact empty too.
    sqlx::query("DELETE FROM contacts")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("DELETE FROM projector_checkpoints WHERE projector = 'contacts'")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let rebuilt = contacts(&app, Role::Owner, None, None).await;
    let erased = rebuilt
        .iter()
        .find(|c| c["id"] == id.as_str())
        .cloned()
        .unwrap_or_default();
    assert!(
        erased["phone"].is_null() && erased["name"].is_null() && erased["erased"] == true,
        "{erased}"
    );

    // Erased is final: changes are refused, a repeated erasure changes nothing.
    assert_eq!(
        code(&mutate(&app, Role::Agent, TAG, json!({"id": id, "tag": "vip"})).await),
        "CONTACT_ERASED"
    );
    let again = mutate(&app, Role::Owner, ERASE, json!({"id": id})).await;
    assert!(again["errors"].is_null(), "{again}");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'ContactErased'")
            .await,
        1
    );
    let keys_left = app
        .count(&format!("SELECT count(*) FROM contact_keys WHERE contact_id = '{id}'"))
        .await;
    assert_eq!(keys_left, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_auditor_reads_contacts_but_cannot_change_them_and_an_agent_cannot_erase(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_contacts(&app).await;
    assert_eq!(contacts(&app, Role::Auditor, None, None).await.len(), 2);
    let id = contact_by_phone(&app, "263771000001").await["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        code(&mutate(&app, Role::Auditor, TAG, json!({"id": id, "tag": "vip"})).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(&mutate(&app, Role::Agent, ERASE, json!({"id": id})).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(&mutate(&app, Role::Auditor, ERASE, json!({"id": id})).await),
        "FORBIDDEN"
    );
    let technician = app.token("acme", Role::Technician);
    let (_, reply) = app.graphql(Some(&technician), CONTACTS, json!({})).await;
    assert_eq!(code(&reply), "FORBIDDEN", "{reply}");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type IN ('ContactTagged', 'ContactErased')")
            .await,
        0
    );
}

const SUBMIT: &str = "mutation($name: String!, $body: String!) {
  submitTemplate(input: { name: $name, language: \"en_US\", category: UTILITY, body: $body,
                          buttons: [{ kind: QUICK_REPLY, text: \"Call me\" }] }) { id } }";
const TEMPLATES: &str = "query($status: TemplateStatus) {
  templates(status: $status) { nodes { id name language category body buttons variableCount version status
                               providerTemplateId rejectionReason } } }";

async fn templates(app: &TestApp, role: Role, status: Option<&str>) -> Vec<Value> {
    let token = app.token("acme", role);
    let (_, reply) = app.graphql(Some(&token), TEMPLATES, json!({ "status": status })).await;
    assert!(reply["errors"].is_null(), "{reply}");
    reply["data"]["templates"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_template_is_submitted_then_approved_or_rejected_and_listed_by_status(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", NUMBER).await;
    for name in ["missed_call", "promo"] {
        let reply = mutate(
            &app,
            Role::Admin,
            SUBMIT,
            json!({"name": name, "body": "Hi {{1}}, sorry we missed you."}),
        )
        .await;
        assert_eq!(
            reply["data"]["submitTemplate"]["id"],
            format!("tpl_{name}_en_US"),
            "{reply}"
        );
    }
    app.project().await;
    let pending = templates(&app, Role::Agent, Some("PENDING")).await;
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0]["variableCount"], 1);
    assert_eq!(pending[0]["buttons"][0]["kind"], "quick_reply");

    let approve =
        "mutation { approveTemplate(name: \"missed_call\", language: \"en_US\", providerTemplateId: \"meta-1\") { id } }";
    let reject =
        "mutation { rejectTemplate(name: \"promo\", language: \"en_US\", reason: \"too promotional\") { id } }";
    for mutation in [approve, reject] {
        let reply = mutate(&app, Role::Owner, mutation, json!({})).await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
    app.project().await;
    let approved = templates(&app, Role::Auditor, Some("APPROVED")).await;
    assert_eq!(approved.len(), 1);
    assert_eq!(
        (approved[0]["name"].as_str(), approved[0]["providerTemplateId"].as_str()),
        (Some("missed_call"), Some("meta-1"))
    );
    let rejected = templates(&app, Role::Auditor, Some("REJECTED")).await;
    assert_eq!(rejected[0]["rejectionReason"], "too promotional");
    assert_eq!(templates(&app, Role::Auditor, None).await.len(), 2);

    // Only a pending template is decided.
    let reply = mutate(&app, Role::Owner, approve, json!({})).await;
    assert!(
        reply["errors"].is_null(),
        "a repeated approval changes nothing: {reply}"
    );
    let reply = mutate(
        &app,
        Role::Owner,
        reject.replace("promo", "missed_call").as_str(),
        json!({}),
    )
    .await;
    assert_eq!(code(&reply), "TEMPLATE_NOT_PENDING", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn templates_are_managed_by_owners_and_admins_only_and_bad_ones_are_refused_by_rule(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", NUMBER).await;
    let variables = json!({"name": "missed_call", "body": "Hi {{1}}"});
    assert_eq!(
        code(&mutate(&app, Role::Agent, SUBMIT, variables.clone()).await),
        "FORBIDDEN"
    );
    assert_eq!(code(&mutate(&app, Role::Auditor, SUBMIT, variables).await), "FORBIDDEN");
    let bad_name = mutate(&app, Role::Owner, SUBMIT, json!({"name": "Missed Call", "body": "Hi"})).await;
    assert_eq!(code(&bad_name), "INVALID_TEMPLATE_NAME", "{bad_name}");
    let gap = mutate(&app, Role::Owner, SUBMIT, json!({"name": "gap", "body": "Hi {{2}}"})).await;
    assert_eq!(code(&gap), "VARIABLES_NOT_CONTIGUOUS", "{gap}");
    let approve =
        "mutation { approveTemplate(name: \"never\", language: \"en_US\", providerTemplateId: \"m\") { id } }";
    assert_eq!(
        code(&mutate(&app, Role::Owner, approve, json!({})).await),
        "TEMPLATE_NOT_SUBMITTED"
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn another_tenant_neither_sees_nor_changes_these_contacts(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_contacts(&app).await;
    app.tenant_with_number("beta", "999111999").await;
    let id = contact_by_phone(&app, "263771000001").await["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let beta = app.token("beta", Role::Owner);
    let (_, reply) = app.graphql(Some(&beta), CONTACTS, json!({})).await;
    assert_eq!(reply["data"]["contacts"]["edges"], json!([]), "{reply}");
    let (_, reply) = app.graphql(Some(&beta), TAG, json!({"id": id, "tag": "vip"})).await;
    assert_eq!(code(&reply), "CONTACT_NOT_REGISTERED", "{reply}");
    let (_, reply) = app.graphql(Some(&beta), ERASE, json!({"id": id})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    app.project().await;
    // Beta's erasure of that id is beta's own stream: acme's contact keeps its key and data.
    assert_eq!(contact_by_phone(&app, "263771000001").await["name"], "Tendai Moyo");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM contact_keys WHERE tenant_id = 'acme' AND contact_id = '{id}'"
        ))
        .await,
        1
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn erasure_is_cleared_by_each_read_models_own_projector_not_by_the_write_side(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_contacts(&app).await;
    let id = contact_by_phone(&app, "263771000001").await["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let capture = "mutation($input: CaptureLeadInput!) { captureLead(input: $input) { id status } }";
    let reply = mutate(
        &app,
        Role::Agent,
        capture,
        json!({"input": {"idempotencyKey": "erase-1", "name": "Tendai", "phone": "+263771000001", "interest": "solar"}}),
    )
    .await;
    assert!(reply["errors"].is_null(), "{reply}");
    let note =
        "mutation($id: String!) { addNote(conversationId: $id, text: \"Tendai's roof faces north\") { position } }";
    assert!(mutate(&app, Role::Agent, note, json!({"id": id})).await["errors"].is_null());
    let handover =
        "mutation($id: String!) { requestHandover(conversationId: $id, reason: \"Tendai asks for a person\") { position } }";
    assert!(mutate(&app, Role::Agent, handover, json!({"id": id})).await["errors"].is_null());
    app.project().await;

    let personal = |app: &TestApp| {
        let id = id.clone();
        let pool = app.pool.clone();
        async move {
            let one = |sql: String| {
                let pool = pool.clone();
                async move {
                    sqlx::query_scalar::<_, i64>(&sql)
                        .fetch_one(&pool)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"))
                }
            };
            [
                one(format!("SELECT count(*) FROM leads WHERE contact_id = '{id}' AND (name IS NOT NULL OR phone IS NOT NULL)")).await,
                one(format!("SELECT count(*) FROM conversation_notes WHERE conversation_id = '{id}' AND text IS NOT NULL")).await,
                one(format!("SELECT count(*) FROM conversation_details WHERE conversation_id = '{id}' AND handover_reason IS NOT NULL")).await,
                one(format!("SELECT count(*) FROM messages WHERE conversation_id = '{id}' AND content IS NOT NULL")).await,
                one(format!("SELECT count(*) FROM conversations WHERE contact_id = '{id}' AND contact_phone IS NOT NULL")).await,
                one(format!("SELECT count(*) FROM contacts WHERE contact_id = '{id}' AND phone IS NOT NULL")).await,
            ]
        }
    };
    assert!(
        personal(&app).await.iter().all(|n| *n > 0),
        "{:?}",
        personal(&app).await
    );

    let reply = mutate(&app, Role::Admin, ERASE, json!({"id": id})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    // The write side destroyed the key and wrote nothing into the read models…
    assert!(
        personal(&app).await.iter().all(|n| *n > 0),
        "{:?}",
        personal(&app).await
    );
    // …each projector clears its own rows on `ContactErased`.
    app.project().await;
    assert_eq!(personal(&app).await, [0, 0, 0, 0, 0, 0]);
    // The other contact keeps everything.
    let other = contact_by_phone(&app, "263771000002").await;
    assert_eq!(other["phone"], "+263771000002", "{other}");
}
