//! Calls from end to end: Twilio's signed call-status callback (good, bad and malformed
//! signatures and bodies), a callback delivered twice recorded once, the calls read model and
//! its filters, and the follow-up process manager scheduling per the tenant's rule (delay and
//! outcomes) and sending it as a template through the outbound sender to a loopback Graph API,
//! with the roles allowed to read calls and set the rule.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use chronicle_api::auth::Role;
use chronicle_api::config::Secret;
use chronicle_commands::intake::telephony::sign_twilio;
use chronicle_commands::outbound::whatsapp::WhatsAppSender;
use chronicle_tests::error_code as code;
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const TWILIO_TOKEN: &str = "test-twilio-auth-token";
const NUMBER: &str = "444000444";
const BUSINESS: &str = "+15550001111";
const CUSTOMER: &str = "+263771000009";

async fn app_with_twilio(pool: PgPool) -> TestApp {
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

/// When the calls of these tests ended: an hour before the test process started, in whole
/// seconds (Twilio's `Timestamp` has no fraction). Relative to the clock, never a fixed date, so
/// a follow-up due a week later is never already due on the day the suite runs.
fn call_time() -> chrono::DateTime<chrono::Utc> {
    static AT: std::sync::OnceLock<chrono::DateTime<chrono::Utc>> = std::sync::OnceLock::new();
    *AT.get_or_init(|| {
        let now = chrono::Utc::now() - chrono::Duration::hours(1);
        chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
    })
}

/// `call_time() + offset`, as GraphQL prints a time (RFC 3339, `+00:00`).
fn call_time_plus(offset: chrono::Duration) -> String {
    (call_time() + offset).to_rfc3339()
}

fn call_params(sid: &str, status: &str, direction: &str, duration: Option<&str>) -> Vec<(String, String)> {
    let (from, to) = if direction == "inbound" {
        (CUSTOMER, BUSINESS)
    } else {
        (BUSINESS, CUSTOMER)
    };
    let mut params = vec![
        ("AccountSid".to_string(), "AC0123".to_string()),
        ("CallSid".to_string(), sid.to_string()),
        ("CallStatus".to_string(), status.to_string()),
        ("Direction".to_string(), direction.to_string()),
        ("From".to_string(), from.to_string()),
        ("To".to_string(), to.to_string()),
        ("Timestamp".to_string(), call_time().to_rfc2822()),
    ];
    if let Some(d) = duration {
        params.push(("CallDuration".to_string(), d.to_string()));
    }
    params
}

/// Posts a callback for `tenant`, signed with `token` over the public URL (None: unsigned).
async fn post_call(
    app: &TestApp,
    tenant: &str,
    params: &[(String, String)],
    token: Option<&str>,
) -> (StatusCode, Value) {
    let path = format!("/webhooks/telephony/twilio/{tenant}");
    let body: String = params
        .iter()
        .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut request = Request::post(path.as_str()).header("content-type", "application/x-www-form-urlencoded");
    if let Some(token) = token {
        let signature = sign_twilio(token, &format!("https://chronicle.example{path}"), params);
        request = request.header("X-Twilio-Signature", signature);
    }
    app.send(request.body(Body::from(body)).unwrap_or_else(|e| panic!("{e}")))
        .await
}

const CALLS: &str = "query($filter: CallFilter) {
  calls(first: 20, filter: $filter) {
    edges { node { id providerCallId direction contactId from to durationSeconds outcome endedAt
                   followUp { status templateName language ruleVersion dueAt attempts giveUpReason sendTries lastSendError nextAttemptAt } } }
  }
}";

async fn calls(app: &TestApp, role: Role, filter: Value) -> Vec<Value> {
    let token = app.token("acme", role);
    let (_, reply) = app.graphql(Some(&token), CALLS, json!({ "filter": filter })).await;
    assert!(reply["errors"].is_null(), "{reply}");
    reply["data"]["calls"]["edges"]
        .as_array()
        .map(|edges| edges.iter().map(|e| e["node"].clone()).collect())
        .unwrap_or_default()
}

const SET_RULE: &str = "mutation($outcomes: [CallOutcome!]!, $delay: Int!) {
  setCallFollowUpRule(rule: { delayMinutes: $delay, outcomes: $outcomes, templateName: \"missed_call\",
                              language: \"en_US\" }) { id } }";

async fn set_rule(app: &TestApp, role: Role, outcomes: Value, delay: i64) -> Value {
    let token = app.token("acme", role);
    app.graphql(Some(&token), SET_RULE, json!({"outcomes": outcomes, "delay": delay}))
        .await
        .1
}

/// Processes stored callbacks, projects, works follow-ups, projects again.
async fn settle(app: &TestApp) {
    app.drain().await;
    app.project().await;
    app.state
        .workers
        .follow_ups
        .drain()
        .await
        .unwrap_or_else(|e| panic!("follow-ups: {e}"));
    app.project().await;
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_signed_completed_call_is_recorded_with_its_contact_and_listed(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    let (status, reply) = post_call(
        &app,
        "acme",
        &call_params("CA001", "completed", "inbound", Some("125")),
        Some(TWILIO_TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["new"], true);
    settle(&app).await;
    assert_eq!(
        app.count(
            "SELECT count(*) FROM webhook_inbox WHERE provider = 'twilio' AND state = 'done' AND payload IS NULL"
        )
        .await,
        1,
        "the callback went through the inbox, which forgot its numbers once processed"
    );
    let all = calls(&app, Role::Agent, json!(null)).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let call = &all[0];
    assert_eq!(
        (
            call["providerCallId"].as_str(),
            call["direction"].as_str(),
            call["outcome"].as_str()
        ),
        (Some("CA001"), Some("INBOUND"), Some("COMPLETED"))
    );
    assert_eq!(
        (call["from"].as_str(), call["to"].as_str()),
        (Some(CUSTOMER), Some(BUSINESS))
    );
    assert_eq!(call["durationSeconds"], 125);
    assert_eq!(call["endedAt"], call_time_plus(chrono::Duration::zero()));
    assert_eq!(call["followUp"]["status"], "NOT_SCHEDULED");
    assert!(
        call["contactId"].as_str().is_some_and(|c| c.starts_with("ct_")),
        "{call}"
    );
    // The caller became a contact (source `call`); numbers are sealed in the log.
    assert_eq!(
        app.count(
            "SELECT count(*) FROM events WHERE event_type = 'ContactRegistered' AND payload::text LIKE '%\"call\"%'"
        )
        .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE payload::text LIKE '%263771000009%'")
            .await,
        0
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_callback_with_a_wrong_or_missing_signature_is_refused_with_401_and_nothing_is_stored(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    let params = call_params("CA002", "completed", "inbound", Some("10"));
    let (status, reply) = post_call(&app, "acme", &params, Some("another-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    let (status, _) = post_call(&app, "acme", &params, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Signed for another tenant's path: the path is signed too.
    let mut tampered = params.clone();
    tampered[1].1 = "CA003".into();
    let path = "/webhooks/telephony/twilio/acme";
    let signature = sign_twilio(TWILIO_TOKEN, &format!("https://chronicle.example{path}"), &params);
    let body: String = tampered
        .iter()
        .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let (status, _) = app
        .send(
            Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("X-Twilio-Signature", signature)
                .body(Body::from(body))
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a changed parameter breaks the signature"
    );
    assert_eq!(app.count("SELECT count(*) FROM webhook_inbox").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM contact_keys").await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_malformed_callback_is_refused_with_400_naming_every_bad_field(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    let mut params = call_params("CA004", "exploded", "sideways", None);
    params.retain(|(n, _)| n != "From");
    let (status, reply) = post_call(&app, "acme", &params, Some(TWILIO_TOKEN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["error"]["code"], "MALFORMED_CALL_STATUS");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    for field in ["CallStatus", "Direction", "From"] {
        assert!(message.contains(field), "{message}");
    }
    let (status, reply) = post_call(
        &app,
        "nobody",
        &call_params("CA005", "completed", "inbound", Some("1")),
        Some(TWILIO_TOKEN),
    )
    .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("UNKNOWN_TENANT"))
    );
    assert_eq!(app.count("SELECT count(*) FROM webhook_inbox").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_webhook_is_off_without_a_twilio_token(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", NUMBER).await;
    let (status, _) = post_call(
        &app,
        "acme",
        &call_params("CA006", "completed", "inbound", Some("1")),
        Some(TWILIO_TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_call_delivered_twice_is_recorded_once_and_progress_reports_record_nothing(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    let ringing = call_params("CA007", "ringing", "inbound", None);
    let (status, _) = post_call(&app, "acme", &ringing, Some(TWILIO_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    app.drain().await;
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
    let completed = call_params("CA007", "completed", "inbound", Some("42"));
    let mut new = Vec::new();
    for _ in 0..2 {
        let (status, reply) = post_call(&app, "acme", &completed, Some(TWILIO_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        new.push(reply["new"].as_bool());
    }
    assert_eq!(new, [Some(true), Some(false)]);
    app.drain().await;
    // Past the inbox too (its rows gone): the Call aggregate keeps the first report.
    sqlx::query("DELETE FROM webhook_inbox")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, _) = post_call(&app, "acme", &completed, Some(TWILIO_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    app.drain().await;
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'CallCompleted'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'ContactRegistered'")
            .await,
        1
    );
    settle(&app).await;
    assert_eq!(calls(&app, Role::Owner, json!(null)).await.len(), 1);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_follow_up_is_scheduled_the_rules_delay_after_the_call_for_the_outcomes_it_names(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    approve_missed_call(&app).await;
    // Seven days: not due yet, so the follow-ups stay pending (sending is tested below).
    let reply = set_rule(&app, Role::Admin, json!(["NO_ANSWER", "BUSY"]), 7 * 24 * 60).await;
    assert_eq!(reply["data"]["setCallFollowUpRule"]["id"], "automation", "{reply}");
    for (sid, status, duration) in [
        ("CA010", "no-answer", "0"),
        ("CA011", "completed", "300"),
        ("CA012", "busy", "0"),
    ] {
        let (code, reply) = post_call(
            &app,
            "acme",
            &call_params(sid, status, "outbound-api", Some(duration)),
            Some(TWILIO_TOKEN),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{reply}");
    }
    settle(&app).await;
    let all = calls(&app, Role::Agent, json!(null)).await;
    let by_sid = |sid: &str| {
        all.iter()
            .find(|c| c["providerCallId"] == sid)
            .cloned()
            .unwrap_or_default()
    };
    let missed = by_sid("CA010");
    assert_eq!(missed["followUp"]["status"], "PENDING", "{missed}");
    assert_eq!(missed["followUp"]["dueAt"], call_time_plus(chrono::Duration::days(7)));
    assert_eq!(
        (
            missed["followUp"]["templateName"].as_str(),
            missed["followUp"]["language"].as_str()
        ),
        (Some("missed_call"), Some("en_US"))
    );
    assert_eq!(missed["followUp"]["ruleVersion"], 1);
    assert_eq!(by_sid("CA012")["followUp"]["status"], "PENDING");
    assert_eq!(by_sid("CA011")["followUp"]["status"], "NOT_SCHEDULED");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'FollowUpScheduled'")
            .await,
        2
    );
    // Deciding again schedules nothing more.
    settle(&app).await;
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'FollowUpScheduled'")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT count(*) FROM call_follow_ups WHERE state = 'no_rule'")
            .await,
        1
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn without_a_rule_or_with_it_disabled_no_follow_up_is_scheduled(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    post_call(
        &app,
        "acme",
        &call_params("CA020", "no-answer", "inbound", Some("0")),
        Some(TWILIO_TOKEN),
    )
    .await;
    settle(&app).await;
    approve_missed_call(&app).await;
    assert_eq!(
        set_rule(&app, Role::Owner, json!(["NO_ANSWER"]), 5).await["data"]["setCallFollowUpRule"]["id"],
        "automation"
    );
    let token = app.token("acme", Role::Owner);
    let (_, reply) = app
        .graphql(Some(&token), "mutation { disableCallFollowUpRule { id } }", json!({}))
        .await;
    assert_eq!(reply["data"]["disableCallFollowUpRule"]["id"], "automation", "{reply}");
    post_call(
        &app,
        "acme",
        &call_params("CA021", "no-answer", "inbound", Some("0")),
        Some(TWILIO_TOKEN),
    )
    .await;
    settle(&app).await;
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'FollowUpScheduled'")
            .await,
        0
    );
    let (_, rule) = app
        .graphql(
            Some(&token),
            "{ callFollowUpRule { version enabled delayMinutes outcomes templateName language } }",
            json!({}),
        )
        .await;
    assert_eq!(
        rule["data"]["callFollowUpRule"],
        json!({"version": 2, "enabled": false, "delayMinutes": 5, "outcomes": ["NO_ANSWER"],
               "templateName": "missed_call", "language": "en_US"})
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_bad_rule_is_refused_by_name_and_only_owners_and_admins_set_it(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    assert_eq!(
        code(&set_rule(&app, Role::Agent, json!(["BUSY"]), 5).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(&set_rule(&app, Role::Auditor, json!(["BUSY"]), 5).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(&set_rule(&app, Role::Owner, json!(["BUSY"]), 0).await),
        "INVALID_DELAY"
    );
    // Issue 17: −5 was refused as "a follow-up delay of 0 minutes".
    let negative = set_rule(&app, Role::Owner, json!(["BUSY"]), -5).await;
    assert_eq!(code(&negative), "INVALID_DELAY");
    assert_eq!(
        negative["errors"][0]["message"],
        "a follow-up delay of -5 minutes is outside 1 to 10080 (7 days)"
    );
    assert_eq!(code(&set_rule(&app, Role::Owner, json!([]), 5).await), "NO_OUTCOMES");
    let token = app.token("acme", Role::Agent);
    let (_, reply) = app
        .graphql(Some(&token), "mutation { disableCallFollowUpRule { id } }", json!({}))
        .await;
    assert_eq!(code(&reply), "FORBIDDEN");
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

/// Issue 17: a rule naming a template that does not exist, is not approved or has variables
/// was accepted and failed on every call it followed up. Now refused when it is set.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_rule_naming_a_template_that_cannot_be_sent_is_refused_when_it_is_set(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    let token = app.token("acme", Role::Owner);
    let rule = |template: &str, enabled: bool| {
        json!({"rule": {"enabled": enabled, "delayMinutes": 5, "outcomes": ["NO_ANSWER"],
                         "templateName": template, "language": "en_US"}})
    };
    const SET: &str = "mutation($rule: CallFollowUpRuleInput!) { setCallFollowUpRule(rule: $rule) { id } }";
    let set = |variables: Value| {
        let (app, token) = (&app, &token);
        async move { app.graphql(Some(token), SET, variables).await.1 }
    };
    // No such template.
    let reply = set(rule("missed_call", true)).await;
    assert_eq!(code(&reply), "UNKNOWN_TEMPLATE", "{reply}");
    assert_eq!(
        reply["errors"][0]["message"],
        "there is no template missed_call (en_US); create it and have it approved first"
    );
    // Submitted, not approved yet; and an approved one with a variable (follow-ups send none).
    for mutation in [
        "mutation { submitTemplate(input: { name: \"missed_call\", language: \"en_US\", category: UTILITY,
                     body: \"Sorry we missed your call.\" }) { id } }",
        "mutation { submitTemplate(input: { name: \"missed_call_named\", language: \"en_US\", category: UTILITY,
                     body: \"Sorry we missed your call, {{1}}.\" }) { id } }",
        "mutation { approveTemplate(name: \"missed_call_named\", language: \"en_US\", providerTemplateId: \"wa-2\") { id } }",
    ] {
        let (_, reply) = app.graphql(Some(&token), mutation, json!({})).await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
    let templates_only = app.count("SELECT count(*) FROM events").await;
    assert_eq!(code(&set(rule("missed_call", true)).await), "TEMPLATE_NOT_APPROVED");
    assert_eq!(
        code(&set(rule("missed_call_named", true)).await),
        "WRONG_PARAMETER_COUNT"
    );
    // The rule's own refusals still come first.
    let mut bad_delay = rule("nothing_here", true);
    bad_delay["rule"]["delayMinutes"] = json!(0);
    assert_eq!(code(&set(bad_delay).await), "INVALID_DELAY");
    assert_eq!(
        app.count("SELECT count(*) FROM events").await,
        templates_only,
        "nothing recorded"
    );
    // A disabled rule sends nothing, so it may name a template still in review.
    let reply = set(rule("missed_call", false)).await;
    assert!(reply["errors"].is_null(), "{reply}");
    // Approved and without variables: accepted.
    let (_, reply) = app
        .graphql(
            Some(&token),
            "mutation { approveTemplate(name: \"missed_call\", language: \"en_US\", providerTemplateId: \"wa-1\") { id } }",
            json!({}),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    let reply = set(rule("missed_call", true)).await;
    assert_eq!(reply["data"]["setCallFollowUpRule"]["id"], "automation", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn calls_are_filtered_by_outcome_direction_and_period_and_auditors_read_them(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    for (sid, status, direction) in [
        ("CA030", "completed", "inbound"),
        ("CA031", "no-answer", "inbound"),
        ("CA032", "busy", "outbound-dial"),
    ] {
        post_call(
            &app,
            "acme",
            &call_params(sid, status, direction, Some("3")),
            Some(TWILIO_TOKEN),
        )
        .await;
    }
    settle(&app).await;
    assert_eq!(calls(&app, Role::Auditor, json!(null)).await.len(), 3);
    assert_eq!(
        calls(&app, Role::Auditor, json!({"outcome": "NO_ANSWER"})).await.len(),
        1
    );
    assert_eq!(
        calls(&app, Role::Auditor, json!({"direction": "OUTBOUND"})).await.len(),
        1
    );
    assert_eq!(
        calls(
            &app,
            Role::Auditor,
            json!({
                "from": call_time_plus(-chrono::Duration::hours(1)),
                "to": call_time_plus(chrono::Duration::hours(1))
            })
        )
        .await
        .len(),
        3
    );
    assert!(calls(
        &app,
        Role::Auditor,
        json!({"from": call_time_plus(chrono::Duration::days(1))})
    )
    .await
    .is_empty());
    let technician = app.token("acme", Role::Technician);
    let (_, reply) = app.graphql(Some(&technician), CALLS, json!({})).await;
    assert_eq!(code(&reply), "FORBIDDEN", "{reply}");
}

/// A loopback Graph API: answers the scripted (status, body) replies in order, then 200 with a
/// message id; keeps every request body.
#[derive(Clone, Default)]
struct Graph {
    seen: Arc<Mutex<Vec<Value>>>,
    script: Arc<Mutex<Vec<(u16, Value)>>>,
}

async fn graph_messages(State(graph): State<Graph>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    graph.seen.lock().unwrap_or_else(|e| e.into_inner()).push(body);
    let (status, reply) = {
        let mut script = graph.script.lock().unwrap_or_else(|e| e.into_inner());
        if script.is_empty() {
            (
                200,
                json!({"messaging_product": "whatsapp", "messages": [{"id": wamid("263771000009", 700)}]}),
            )
        } else {
            script.remove(0)
        }
    };
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(reply))
}

impl Graph {
    async fn serve(&self) -> String {
        let app = Router::new()
            .route("/{version}/{number}/messages", post(graph_messages))
            .with_state(self.clone());
        format!("{}/v21.0", chronicle_tests::serve_loopback(app).await)
    }

    fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The customer wrote on WhatsApp; the `missed_call` template is approved; the rule follows
/// up missed calls after a minute.
async fn follow_up_setting(app: &TestApp) {
    let body = delivery(
        NUMBER,
        &[("263771000009", "Chipo")],
        vec![text_message(
            "263771000009",
            &wamid("263771000009", 1),
            chrono::Utc::now().timestamp() - 600,
            "Call me back please",
        )],
        vec![],
    );
    assert_eq!(app.post_delivery(&body).await.0, StatusCode::OK);
    app.drain().await;
    approve_missed_call(app).await;
    assert_eq!(
        set_rule(app, Role::Owner, json!(["NO_ANSWER"]), 1).await["data"]["setCallFollowUpRule"]["id"],
        "automation"
    );
}

/// The `missed_call` template (no variables), submitted and approved: what a rule names.
async fn approve_missed_call(app: &TestApp) {
    let token = app.token("acme", Role::Owner);
    for mutation in [
        "mutation { submitTemplate(input: { name: \"missed_call\", language: \"en_US\", category: UTILITY,
                     body: \"Sorry we missed your call. Reply here and we will help.\" }) { id } }",
        "mutation { approveTemplate(name: \"missed_call\", language: \"en_US\", providerTemplateId: \"wa-1\") { id } }",
    ] {
        let (_, reply) = app.graphql(Some(&token), mutation, json!({})).await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
}

/// Runs the whole loop once: schedule and queue, send, record.
async fn follow_up_round(app: &TestApp, sender: &WhatsAppSender) {
    settle(app).await;
    sender.drain().await.unwrap_or_else(|e| panic!("sending: {e}"));
    settle(app).await;
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_due_follow_up_is_sent_once_as_the_rules_template_and_recorded_on_the_call(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    follow_up_setting(&app).await;
    let graph = Graph::default();
    let sender = app.sender(&graph.serve().await);
    post_call(
        &app,
        "acme",
        &call_params("CA040", "no-answer", "inbound", Some("0")),
        Some(TWILIO_TOKEN),
    )
    .await;
    follow_up_round(&app, &sender).await;
    follow_up_round(&app, &sender).await;

    let seen = graph.seen();
    assert_eq!(seen.len(), 1, "sent exactly once: {seen:?}");
    assert_eq!(seen[0]["type"], "template");
    assert_eq!(seen[0]["template"]["name"], "missed_call");
    assert_eq!(
        seen[0]["to"].as_str().map(|t| t.trim_start_matches('+')),
        Some("263771000009")
    );
    let call = calls(&app, Role::Agent, json!(null))
        .await
        .into_iter()
        .next()
        .unwrap_or_default();
    assert_eq!(call["followUp"]["status"], "SENT", "{call}");
    assert_eq!(call["followUp"]["attempts"], 1);
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'FollowUpSent' AND payload::text LIKE '%wm_%'")
            .await,
        1,
        "the call records the message's keyed reference, never WhatsApp's id"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_follow_up_the_provider_refuses_is_given_up_with_the_providers_code(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    follow_up_setting(&app).await;
    let graph = Graph {
        script: Arc::new(Mutex::new(vec![(
            400,
            json!({"error": {"message": "Message undeliverable", "type": "OAuthException", "code": 131026}}),
        )])),
        ..Graph::default()
    };
    let sender = app.sender(&graph.serve().await);
    post_call(
        &app,
        "acme",
        &call_params("CA041", "no-answer", "inbound", Some("0")),
        Some(TWILIO_TOKEN),
    )
    .await;
    follow_up_round(&app, &sender).await;
    follow_up_round(&app, &sender).await;
    assert_eq!(graph.seen().len(), 1);
    let call = calls(&app, Role::Agent, json!(null))
        .await
        .into_iter()
        .next()
        .unwrap_or_default();
    assert_eq!(call["followUp"]["status"], "GAVE_UP", "{call}");
    // Issue 17: a follow-up given up said not why.
    assert_eq!(call["followUp"]["giveUpReason"], "NOT_RETRYABLE", "{call}");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'FollowUpFailed' AND (payload->'FollowUpFailed'->>'error_code')::bigint = 131026")
            .await,
        1
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_caller_who_never_wrote_on_whatsapp_cannot_get_a_follow_up_and_it_is_given_up(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    follow_up_setting(&app).await;
    let graph = Graph::default();
    let sender = app.sender(&graph.serve().await);
    let mut params = call_params("CA042", "no-answer", "inbound", Some("0"));
    params[4].1 = "+263771000077".into();
    post_call(&app, "acme", &params, Some(TWILIO_TOKEN)).await;
    follow_up_round(&app, &sender).await;
    assert!(graph.seen().is_empty());
    let call = calls(&app, Role::Agent, json!(null))
        .await
        .into_iter()
        .next()
        .unwrap_or_default();
    assert_eq!(call["followUp"]["status"], "GAVE_UP", "{call}");
    assert_eq!(
        app.count("SELECT count(*) FROM call_follow_ups WHERE state = 'done' AND last_error LIKE '%conversation%'")
            .await,
        1
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_follow_up_that_fails_for_now_waits_for_its_backoff_before_the_next_attempt(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    follow_up_setting(&app).await;
    let graph = Graph {
        script: Arc::new(Mutex::new(vec![(503, json!({"error": {"message": "busy"}})); 20])),
        ..Graph::default()
    };
    let sender = app.sender(&graph.serve().await);
    post_call(
        &app,
        "acme",
        &call_params("CA043", "no-answer", "inbound", Some("0")),
        Some(TWILIO_TOKEN),
    )
    .await;
    follow_up_round(&app, &sender).await;
    let tried = graph.seen().len();
    assert!(tried >= 1, "the sender tried");
    follow_up_round(&app, &sender).await;
    assert_eq!(graph.seen().len(), tried, "nothing is sent again before the backoff");
    let token = app.token("acme", Role::Agent);
    let (_, reply) = app
        .graphql(
            Some(&token),
            "{ calls(first: 1) { edges { node { followUp { status attempts nextAttemptAt } } } } }",
            json!({}),
        )
        .await;
    let follow_up = &reply["data"]["calls"]["edges"][0]["node"]["followUp"];
    assert_eq!(follow_up["status"], "PENDING", "{reply}");
    assert_eq!(follow_up["attempts"], 1);
    let next = follow_up["nextAttemptAt"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("{reply}"));
    let wait = next.signed_duration_since(chrono::Utc::now());
    assert!(
        wait > chrono::Duration::seconds(30) && wait <= chrono::Duration::minutes(1),
        "{wait}"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_contact_who_sent_stop_gets_no_follow_up(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    follow_up_setting(&app).await;
    let stop = delivery(
        NUMBER,
        &[("263771000009", "Chipo")],
        vec![text_message(
            "263771000009",
            &wamid("263771000009", 2),
            chrono::Utc::now().timestamp() - 300,
            "STOP",
        )],
        vec![],
    );
    assert_eq!(app.post_delivery(&stop).await.0, StatusCode::OK);
    app.drain().await;
    let graph = Graph::default();
    let sender = app.sender(&graph.serve().await);
    post_call(
        &app,
        "acme",
        &call_params("CA044", "no-answer", "inbound", Some("0")),
        Some(TWILIO_TOKEN),
    )
    .await;
    follow_up_round(&app, &sender).await;
    follow_up_round(&app, &sender).await;
    assert!(graph.seen().is_empty(), "{:?}", graph.seen());
    let call = calls(&app, Role::Agent, json!(null))
        .await
        .into_iter()
        .next()
        .unwrap_or_default();
    assert_eq!(call["followUp"]["status"], "GAVE_UP", "{call}");
}

/// The call's follow-up and its message in the conversation, as an agent reads them.
async fn follow_up_and_message(app: &TestApp) -> (Value, Value) {
    let call = calls(app, Role::Agent, json!(null))
        .await
        .into_iter()
        .next()
        .unwrap_or_default();
    let contact = call["contactId"].as_str().unwrap_or_default().to_string();
    let token = app.token("acme", Role::Agent);
    let (_, reply) = app
        .graphql(
            Some(&token),
            "query($id: String!) { conversation(id: $id) { messages(first: 50) { edges { node {
                idempotencyKey state sendTries lastSendError nextTryAt } } } } }",
            json!({"id": contact}),
        )
        .await;
    let message = reply["data"]["conversation"]["messages"]["edges"]
        .as_array()
        .and_then(|edges| {
            edges.iter().find(|e| {
                e["node"]["idempotencyKey"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("call-follow-up:"))
            })
        })
        .map(|e| e["node"].clone())
        .unwrap_or_else(|| panic!("no follow-up message: {reply}"));
    (call["followUp"].clone(), message)
}

/// Makes the sender's waiting rows due now (the time its backoff would take).
async fn due_now(app: &TestApp) {
    sqlx::query("UPDATE outbox SET next_attempt_at = now() WHERE state = 'pending'")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_follow_up_whose_message_the_sender_keeps_trying_shows_sending_with_each_try(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    follow_up_setting(&app).await;
    let busy = (
        503,
        json!({"error": {"message": "Service temporarily unavailable", "code": 2}}),
    );
    let graph = Graph {
        script: Arc::new(Mutex::new(vec![busy.clone(), busy.clone(), busy])),
        ..Graph::default()
    };
    // A sender that waits a minute between tries, as in production it waits seconds.
    let mut config = sender_config(&graph.serve().await, "graph-token");
    config.backoff = std::time::Duration::from_secs(60);
    let sender = app.sender_with(config);
    post_call(
        &app,
        "acme",
        &call_params("CA050", "no-answer", "inbound", Some("0")),
        Some(TWILIO_TOKEN),
    )
    .await;
    // Queued, not tried yet: SENDING with no try.
    settle(&app).await;
    let (follow_up, message) = follow_up_and_message(&app).await;
    assert_eq!(
        (
            follow_up["status"].clone(),
            follow_up["attempts"].clone(),
            follow_up["sendTries"].clone()
        ),
        (json!("SENDING"), json!(0), json!(0)),
        "{follow_up}"
    );
    assert_eq!(message["state"], "queued");
    // Issue 17: three tries refused for now showed PENDING with 0 attempts.
    for tries in 1..=3 {
        sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
        settle(&app).await;
        let (follow_up, message) = follow_up_and_message(&app).await;
        assert_eq!(follow_up["status"], "SENDING", "{follow_up}");
        assert_eq!(follow_up["sendTries"], tries, "{follow_up}");
        assert_eq!(
            follow_up["lastSendError"], "2: Service temporarily unavailable",
            "{follow_up}"
        );
        let next = follow_up["nextAttemptAt"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .unwrap_or_else(|| panic!("{follow_up}"));
        assert!(next > chrono::Utc::now(), "the sender's next try is ahead: {next}");
        assert_eq!(
            (
                message["state"].clone(),
                message["sendTries"].clone(),
                message["nextTryAt"].clone()
            ),
            (json!("retrying"), json!(tries), follow_up["nextAttemptAt"].clone()),
            "{message}"
        );
        due_now(&app).await;
    }
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'OutboundSendRetried'")
            .await,
        3
    );
    // The fourth try is accepted: sent after one attempt of four tries.
    sender.drain().await.unwrap_or_else(|e| panic!("{e}"));
    settle(&app).await;
    let (follow_up, message) = follow_up_and_message(&app).await;
    assert_eq!(
        (
            follow_up["status"].clone(),
            follow_up["attempts"].clone(),
            follow_up["sendTries"].clone()
        ),
        (json!("SENT"), json!(1), json!(3)),
        "{follow_up}"
    );
    assert_eq!(follow_up["nextAttemptAt"], Value::Null);
    assert_eq!(
        (message["state"].clone(), message["nextTryAt"].clone()),
        (json!("sent"), Value::Null)
    );
    assert_eq!(graph.seen().len(), 4);
    // A rebuild of both read models gives the same rows.
    let live = table_rows(&app.pool, false).await;
    app.rebuild_only(&["calls", "messages"]).await;
    assert_eq!(table_rows(&app.pool, false).await, live);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_follow_up_whose_message_may_have_reached_whatsapp_awaits_an_operator_who_sends_it_again(pool: PgPool) {
    let app = app_with_twilio(pool).await;
    follow_up_setting(&app).await;
    // A 200 without a message id: the sender cannot tell whether WhatsApp took it.
    let graph = Graph {
        script: Arc::new(Mutex::new(vec![(200, json!({"messaging_product": "whatsapp"}))])),
        ..Graph::default()
    };
    let sender = app.sender(&graph.serve().await);
    post_call(
        &app,
        "acme",
        &call_params("CA051", "no-answer", "inbound", Some("0")),
        Some(TWILIO_TOKEN),
    )
    .await;
    follow_up_round(&app, &sender).await;
    follow_up_round(&app, &sender).await;
    let (follow_up, message) = follow_up_and_message(&app).await;
    assert_eq!(follow_up["status"], "AWAITING_OPERATOR", "{follow_up}");
    assert!(
        follow_up["lastSendError"]
            .as_str()
            .is_some_and(|e| e.contains("may have been sent")),
        "{follow_up}"
    );
    assert_eq!(message["state"], "needs_operator", "{message}");
    assert_eq!(graph.seen().len(), 1, "never sent again by itself");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'OutboundSendUncertain'")
            .await,
        1
    );
    // An operator sends it again: SENDING, its tries from 0, then SENT.
    let key = message["idempotencyKey"].as_str().unwrap_or_default().to_string();
    let call = calls(&app, Role::Agent, json!(null))
        .await
        .into_iter()
        .next()
        .unwrap_or_default();
    let admin = app.token("acme", Role::Admin);
    let (_, reply) = app
        .graphql(
            Some(&admin),
            "mutation($id: String!, $key: String!) { resendMessage(conversationId: $id, idempotencyKey: $key) { id } }",
            json!({"id": call["contactId"], "key": key}),
        )
        .await;
    assert!(reply["errors"].is_null(), "{reply}");
    settle(&app).await;
    let (follow_up, message) = follow_up_and_message(&app).await;
    assert_eq!(
        (follow_up["status"].clone(), follow_up["sendTries"].clone()),
        (json!("SENDING"), json!(0)),
        "{follow_up}"
    );
    assert_eq!(message["state"], "queued", "{message}");
    follow_up_round(&app, &sender).await;
    let (follow_up, message) = follow_up_and_message(&app).await;
    assert_eq!(follow_up["status"], "SENT", "{follow_up}");
    assert_eq!(message["state"], "sent", "{message}");
    assert_eq!(graph.seen().len(), 2);
}
