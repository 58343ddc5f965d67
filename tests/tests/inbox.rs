//! The conversation view and its mutations from end to end: messages in order with their
//! status timelines, read models that do not depend on how often or in which order WhatsApp
//! delivers, status moves, assignment, tags, notes, handover, "window closed" failures, roles
//! and tenant isolation.

use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chronicle_api::app::projectors;
use chronicle_api::auth::Role;
use chronicle_commands::outbound::whatsapp::{SenderConfig, WhatsAppSender};
use chronicle_projections::runtime::{ProjectorRunner, RunnerConfig};
use chronicle_tests::error_code as code;
use chronicle_tests::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const CUSTOMER: &str = "263771000001";

/// The id the loopback Graph API gives a message sent from `number` (WhatsApp's ids are
/// unique across numbers, and the webhook inbox relies on it).
fn sent_wamid(number: &str) -> String {
    wamid(CUSTOMER, 900 + number.parse::<u32>().unwrap_or_default() % 1000)
}

/// A loopback Graph API that accepts every message with [`sent_wamid`]; returns its base URL.
async fn graph() -> String {
    let app = Router::new().route(
        "/{version}/{number}/messages",
        post(|Path((_, number)): Path<(String, String)>| async move {
            Json(json!({"messaging_product": "whatsapp", "messages": [{"id": sent_wamid(&number)}]}))
        }),
    );
    format!("{}/v21.0", chronicle_tests::serve_loopback(app).await)
}

async fn send_all(app: &TestApp, base: &str) {
    app.project().await;
    let mut config = SenderConfig::new(base, "token");
    config.backoff = Duration::ZERO;
    WhatsAppSender::new(app.state.commands.clone(), app.keys(), config)
        .unwrap_or_else(|e| panic!("{e}"))
        .drain()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
}

async fn post_and_drain(app: &TestApp, body: &Value) {
    let (status, reply) = app.post_delivery(body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    app.drain().await;
}

/// The customer's first message to `number`, `hours_ago`.
fn hello(number: &str, at: i64) -> Value {
    delivery(
        number,
        &[(CUSTOMER, "Tendai Moyo")],
        vec![text_message(
            CUSTOMER,
            &wamid(CUSTOMER, number.parse::<u32>().unwrap_or_default() % 1000),
            at,
            "Is the 5kW kit in stock?",
        )],
        vec![],
    )
}

fn statuses(number: &str, items: &[(&str, i64)]) -> Value {
    delivery(
        number,
        &[],
        vec![],
        items
            .iter()
            .map(|(s, at)| status(&sent_wamid(number), s, *at, CUSTOMER))
            .collect(),
    )
}

async fn mutate(app: &TestApp, tenant_id: &str, role: Role, query: &str, variables: Value) -> Value {
    let token = app.token(tenant_id, role);
    let (status, reply) = app.graphql(Some(&token), query, variables).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply
}

async fn conversation_id(app: &TestApp, tenant_id: &str) -> String {
    sqlx::query_scalar("SELECT conversation_id FROM conversations WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Submits and approves the tenant's `kit_follow_up` template (English).
async fn approve_template(app: &TestApp, tenant_id: &str) {
    use chronicle_domain::metadata::{Actor, CommandMetadata};
    use chronicle_domain::template::{SubmitTemplate, TemplateCategory, TemplateCommand};
    let metadata = CommandMetadata {
        tenant_id: tenant(tenant_id),
        actor: Actor::System {
            component: "test".into(),
        },
        correlation_id: "test".into(),
        causation_id: "test".into(),
    };
    for command in [
        TemplateCommand::SubmitTemplate(SubmitTemplate {
            name: "kit_follow_up".into(),
            language: "en".into(),
            category: TemplateCategory::Utility,
            body: "Hello {{1}}, your kit ships {{2}}.".into(),
            buttons: vec![],
            at: chrono::Utc::now(),
            header: None,
            footer: None,
        }),
        TemplateCommand::ApproveTemplate {
            provider_template_id: "wa-tpl-1".into(),
            at: chrono::Utc::now(),
        },
    ] {
        app.state
            .commands
            .template("tpl_kit_follow_up_en", command, &metadata)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

const SEND_TEMPLATE: &str = "mutation($id: String!, $key: String!) {
  sendTemplate(conversationId: $id, name: \"kit_follow_up\", language: \"en\", parameters: [\"Tendai\", \"Friday\"],
               idempotencyKey: $key) { id position }
}";

const MARK_READ: &str = "mutation($id: String!) { markConversationRead(conversationId: $id) { id } }";

const CONVERSATION: &str = "query($id: String!) {
  conversation(id: $id) {
    id contactId status assignee tags windowExpiresAt freeFormAllowed handoverRequestedAt handoverReason
    notes { id text author at }
    messages(first: 50) {
      edges { node { id direction kind content templateName state status messageRef
                     errorCode statusTimeline { status at errorCode windowClosed } } }
      pageInfo { hasNextPage }
    }
  }
}";

/// Every read-model row of a tenant's conversation, without what names the tenant or the
/// stream, log positions, and the clock of this machine (outbound queueing and send times).
async fn read_models(app: &TestApp, tenant_id: &str) -> Value {
    sqlx::query_scalar(
        "SELECT jsonb_build_object(
           'conversations', (SELECT jsonb_agg((to_jsonb(c) - 'tenant_id' - 'conversation_id' - 'contact_id'
                                              - 'last_message_ref' - 'created_at' - 'updated_at' - 'last_position'
                                              - 'last_message_at')
                                             || jsonb_build_object('last_message_at',
                                                    CASE WHEN c.last_direction = 'inbound' THEN c.last_message_at END))
                               FROM conversations c WHERE c.tenant_id = $1),
           'message_statuses', (SELECT jsonb_agg(to_jsonb(s) - 'tenant_id' - 'conversation_id' - 'message_ref'
                                                 - 'last_position')
                                  FROM message_statuses s WHERE s.tenant_id = $1),
           'messages', (SELECT jsonb_agg((to_jsonb(m) - 'tenant_id' - 'conversation_id' - 'message_id' - 'message_ref'
                                          - 'idempotency_key' - 'position' - 'last_position' - 'sent_at' - 'at')
                                         || jsonb_build_object('at', CASE WHEN m.direction = 'inbound' THEN m.at END)
                                         ORDER BY m.at, m.position)
                          FROM messages m WHERE m.tenant_id = $1),
           'conversation_details', (SELECT jsonb_agg(to_jsonb(d) - 'tenant_id' - 'conversation_id' - 'contact_id'
                                                     - 'last_position')
                                      FROM conversation_details d WHERE d.tenant_id = $1),
           'furthest_status', (SELECT jsonb_build_object('status', t.status, 'at', t.at) FROM message_timeline t
                                WHERE t.tenant_id = $1
                                ORDER BY array_position(ARRAY['sent', 'delivered', 'read', 'failed'], t.status) DESC
                                LIMIT 1),
           'timeline', (SELECT jsonb_agg(jsonb_build_object('status', t.status, 'at', t.at)
                                         ORDER BY array_position(ARRAY['sent', 'delivered', 'read', 'failed'], t.status))
                          FROM message_timeline t WHERE t.tenant_id = $1))",
    )
    .bind(tenant_id)
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_delivery_posted_twice_and_statuses_out_of_order_leave_the_same_read_models(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let base = graph().await;
    let now = chrono::Utc::now().timestamp();
    let (sent, delivered, read) = (now + 1, now + 2, now + 3);
    for (tenant_id, number) in [("clean", "100000001"), ("shuffled", "200000002")] {
        app.tenant_with_number(tenant_id, number).await;
        approve_template(&app, tenant_id).await;
        post_and_drain(&app, &hello(number, now - 60)).await;
        if tenant_id == "shuffled" {
            post_and_drain(&app, &hello(number, now - 60)).await;
        }
        app.project().await;
        let id = conversation_id(&app, tenant_id).await;
        let reply = mutate(
            &app,
            tenant_id,
            Role::Agent,
            SEND_TEMPLATE,
            json!({"id": id, "key": "tpl-1"}),
        )
        .await;
        assert!(reply["errors"].is_null(), "{reply}");
        send_all(&app, &base).await;
        let order: &[(&str, i64)] = if tenant_id == "clean" {
            &[("sent", sent), ("delivered", delivered), ("read", read)]
        } else {
            &[("read", read), ("delivered", delivered), ("sent", sent), ("read", read)]
        };
        for item in order {
            post_and_drain(&app, &statuses(number, &[*item])).await;
        }
        app.project().await;
    }
    let clean = read_models(&app, "clean").await;
    let shuffled = read_models(&app, "shuffled").await;
    assert_eq!(clean, shuffled);
    // And the shared state is the one the clean order says.
    assert_eq!(clean["message_statuses"][0]["status"], "read");
    assert_eq!(clean["conversations"][0]["message_count"], 1);
    assert_eq!(clean["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(clean["furthest_status"]["status"], "read");
    // Every status is kept with its provider time, whatever order it arrived in.
    let statuses: Vec<&str> = clean["timeline"]
        .as_array()
        .map(|t| t.iter().filter_map(|e| e["status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, ["sent", "delivered", "read"]);
}

/// Issue 17: `unreadCount` never went down (nothing marked a conversation read) and WhatsApp
/// was never sent a read receipt. `markConversationRead` does both, once per new message.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn marking_a_conversation_read_clears_its_unread_count_and_sends_one_read_receipt(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let number = "100000010";
    app.tenant_with_number("acme", number).await;
    let now = chrono::Utc::now().timestamp();
    let texts = |messages: &[(u32, i64, &str)]| {
        delivery(
            number,
            &[(CUSTOMER, "Tendai Moyo")],
            messages
                .iter()
                .map(|(n, at, body)| text_message(CUSTOMER, &wamid(CUSTOMER, *n), *at, body))
                .collect(),
            vec![],
        )
    };
    post_and_drain(&app, &texts(&[(21, now - 60, "one"), (22, now - 30, "two")])).await;
    app.project().await;
    let id = conversation_id(&app, "acme").await;
    let unread = || async {
        mutate(
            &app,
            "acme",
            Role::Agent,
            "{ conversations(first: 1) { edges { node { unreadCount } } } }",
            json!({}),
        )
        .await["data"]["conversations"]["edges"][0]["node"]["unreadCount"]
            .clone()
    };
    assert_eq!(unread().await, 2);
    // A Graph API that records what it is sent.
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>> = Default::default();
    let recorder = seen.clone();
    let graph = Router::new().route(
        "/{version}/{number}/messages",
        post(
            move |Path((_, number)): Path<(String, String)>, Json(body): Json<Value>| {
                let recorder = recorder.clone();
                async move {
                    recorder
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((number, body));
                    Json(json!({"success": true}))
                }
            },
        ),
    );
    let base = format!("{}/v21.0", serve_loopback(graph).await);
    let seen = move || seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();

    let reply = mutate(&app, "acme", Role::Agent, MARK_READ, json!({"id": id})).await;
    assert_eq!(reply["data"]["markConversationRead"]["id"], id.as_str(), "{reply}");
    send_all(&app, &base).await;
    assert_eq!(unread().await, 0);
    let receipt = json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid(CUSTOMER, 22)});
    assert_eq!(seen(), vec![(number.to_string(), receipt)]);

    // Nothing new: nothing recorded, nothing sent again (also after a rebuild of the feed).
    mutate(&app, "acme", Role::Agent, MARK_READ, json!({"id": id})).await;
    app.rebuild("outbox").await;
    send_all(&app, &base).await;
    assert_eq!(seen().len(), 1);
    assert_eq!(app.count_events("ConversationRead").await, 1);

    // A new message is unread until the next time; its receipt names it.
    post_and_drain(&app, &texts(&[(23, now - 10, "three")])).await;
    app.project().await;
    assert_eq!(unread().await, 1);
    mutate(&app, "acme", Role::Owner, MARK_READ, json!({"id": id})).await;
    send_all(&app, &base).await;
    assert_eq!(unread().await, 0);
    assert_eq!(seen().len(), 2);
    assert_eq!(seen()[1].1["message_id"], wamid(CUSTOMER, 23));

    // Refusals: an auditor only reads; an unknown conversation.
    let reply = mutate(&app, "acme", Role::Auditor, MARK_READ, json!({"id": id})).await;
    assert_eq!(code(&reply), "FORBIDDEN", "{reply}");
    let reply = mutate(
        &app,
        "acme",
        Role::Agent,
        MARK_READ,
        json!({"id": format!("ct_{:032x}", 7)}),
    )
    .await;
    assert_eq!(code(&reply), "UNKNOWN_CONVERSATION", "{reply}");
    let reply = mutate(&app, "acme", Role::Agent, MARK_READ, json!({"id": "not-an-id"})).await;
    assert_eq!(code(&reply), "BAD_CONVERSATION_ID", "{reply}");
    assert_eq!(app.count_events("ConversationRead").await, 2);
}

/// A read receipt WhatsApp does not take at once is retried with the sender's backoff; one it
/// refuses is given up with the reason, never sent again.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_read_receipt_is_retried_after_a_transient_failure_and_given_up_after_a_refusal(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let number = "100000011";
    app.tenant_with_number("acme", number).await;
    post_and_drain(&app, &hello(number, chrono::Utc::now().timestamp() - 60)).await;
    app.project().await;
    let id = conversation_id(&app, "acme").await;
    // 503 first, then accepted; the second conversation's receipt is refused (400).
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let graph = Router::new().route(
        "/{version}/{number}/messages",
        post(move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                match n {
                    0 => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": {"code": 2}}))),
                    1 => (StatusCode::OK, Json(json!({"success": true}))),
                    _ => (StatusCode::BAD_REQUEST, Json(json!({"error": {"code": 131009}}))),
                }
            }
        }),
    );
    let base = format!("{}/v21.0", serve_loopback(graph).await);
    mutate(&app, "acme", Role::Agent, MARK_READ, json!({"id": id})).await;
    send_all(&app, &base).await;
    let state = || async {
        sqlx::query_as::<_, (String, i32, Option<String>)>(
            "SELECT state, attempts, last_error FROM read_receipts ORDER BY receipt_id",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(
        state().await,
        vec![("sent".to_string(), 2, Some("HTTP 503, code 2".to_string()))]
    );
    // A refusal: failed at once, not retried.
    let second = delivery(
        number,
        &[(CUSTOMER, "Tendai Moyo")],
        vec![text_message(
            CUSTOMER,
            &wamid(CUSTOMER, 99),
            chrono::Utc::now().timestamp() - 1,
            "again",
        )],
        vec![],
    );
    post_and_drain(&app, &second).await;
    app.project().await;
    mutate(&app, "acme", Role::Agent, MARK_READ, json!({"id": id})).await;
    send_all(&app, &base).await;
    send_all(&app, &base).await;
    let states = state().await;
    assert_eq!(states.len(), 2, "{states:?}");
    assert_eq!(
        states[1],
        ("failed".to_string(), 1, Some("HTTP 400, code 131009".to_string()))
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    // A business number no longer the tenant's sends no receipt for it.
    let third = delivery(
        number,
        &[(CUSTOMER, "Tendai Moyo")],
        vec![text_message(
            CUSTOMER,
            &wamid(CUSTOMER, 98),
            chrono::Utc::now().timestamp(),
            "hello?",
        )],
        vec![],
    );
    post_and_drain(&app, &third).await;
    app.project().await;
    mutate(&app, "acme", Role::Agent, MARK_READ, json!({"id": id})).await;
    sqlx::query("DELETE FROM whatsapp_numbers WHERE tenant_id = 'acme'")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    send_all(&app, &base).await;
    let states = state().await;
    assert_eq!(
        states[2],
        (
            "failed".to_string(),
            1,
            Some("the business number is no longer the tenant's".to_string())
        )
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// Issue 17: `lastMessage` ignored outbound messages (the inbox showed the customer's last
/// words after the reply). It is the latest message either way, with its direction.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_last_message_is_the_latest_either_way(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let base = graph().await;
    let number = "100000012";
    app.tenant_with_number("acme", number).await;
    approve_template(&app, "acme").await;
    let now = chrono::Utc::now().timestamp();
    post_and_drain(&app, &hello(number, now - 120)).await;
    app.project().await;
    let id = conversation_id(&app, "acme").await;
    const LAST: &str = "{ conversations(first: 1) { edges { node { lastMessage { id direction kind text } } } } }";
    let last = || async {
        mutate(&app, "acme", Role::Agent, LAST, json!({})).await["data"]["conversations"]["edges"][0]["node"]
            ["lastMessage"]
            .clone()
    };
    assert_eq!(last().await["direction"], "INBOUND");
    assert_eq!(last().await["text"], "Is the 5kW kit in stock?");
    mutate(
        &app,
        "acme",
        Role::Agent,
        SEND_TEMPLATE,
        json!({"id": id, "key": "tpl-9"}),
    )
    .await;
    send_all(&app, &base).await;
    assert_eq!(
        last().await,
        json!({"id": "out:tpl-9", "direction": "OUTBOUND", "kind": "template", "text": "[template] kit_follow_up"})
    );
    let reply = text_message(CUSTOMER, &wamid(CUSTOMER, 77), now + 2, "Great, Friday works");
    post_and_drain(
        &app,
        &delivery(number, &[(CUSTOMER, "Tendai Moyo")], vec![reply], vec![]),
    )
    .await;
    app.project().await;
    assert_eq!(last().await["direction"], "INBOUND");
    assert_eq!(last().await["text"], "Great, Friday works");
}

/// Issue 17: an inbound message's `content` was WhatsApp's object for its kind as JSON text
/// (`{"body": "…"}`) while outbound content is plain text. It reads as text now, for each kind,
/// and the inbox's last-message preview agrees.
#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn inbound_content_reads_as_the_text_a_person_sees_for_each_kind(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let number = "100000009";
    app.tenant_with_number("acme", number).await;
    let now = chrono::Utc::now().timestamp();
    let message = |n: u32, at: i64, kind: &str, object: Value| {
        let mut m = json!({"from": CUSTOMER, "id": wamid(CUSTOMER, n), "timestamp": at.to_string(), "type": kind});
        m[kind] = object;
        m
    };
    let body = delivery(
        number,
        &[(CUSTOMER, "Tendai Moyo")],
        vec![
            message(1, now - 50, "text", json!({"body": "Is the 5kW kit in stock?"})),
            message(
                2,
                now - 40,
                "image",
                json!({"id": "media-1", "mime_type": "image/jpeg", "caption": "My roof"}),
            ),
            message(
                3,
                now - 30,
                "image",
                json!({"id": "media-2", "mime_type": "image/jpeg"}),
            ),
            message(
                4,
                now - 20,
                "location",
                json!({"latitude": -17.8, "longitude": 31.05, "name": "Site A"}),
            ),
            message(
                5,
                now - 10,
                "document",
                json!({"id": "media-3", "filename": "quote.pdf"}),
            ),
        ],
        vec![],
    );
    post_and_drain(&app, &body).await;
    app.project().await;
    let id = conversation_id(&app, "acme").await;
    let reply = mutate(&app, "acme", Role::Agent, CONVERSATION, json!({"id": id})).await;
    let contents: Vec<Value> = reply["data"]["conversation"]["messages"]["edges"]
        .as_array()
        .map(|e| e.iter().map(|e| e["node"]["content"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        contents,
        vec![
            json!("Is the 5kW kit in stock?"),
            json!("My roof"),
            Value::Null,
            json!("Site A"),
            json!("quote.pdf")
        ],
        "{reply}"
    );
    let inbox = mutate(
        &app,
        "acme",
        Role::Agent,
        "{ conversations(first: 5) { edges { node { lastMessage { kind text } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        inbox["data"]["conversations"]["edges"][0]["node"]["lastMessage"],
        json!({"kind": "document", "text": "[document] quote.pdf"}),
        "{inbox}"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_conversation_shows_its_messages_in_order_with_each_status_timeline(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let base = graph().await;
    let number = "100000001";
    app.tenant_with_number("acme", number).await;
    approve_template(&app, "acme").await;
    let now = chrono::Utc::now().timestamp();
    post_and_drain(&app, &hello(number, now - 120)).await;
    app.project().await;
    let id = conversation_id(&app, "acme").await;
    mutate(
        &app,
        "acme",
        Role::Agent,
        SEND_TEMPLATE,
        json!({"id": id, "key": "tpl-1"}),
    )
    .await;
    send_all(&app, &base).await;
    post_and_drain(
        &app,
        &statuses(number, &[("sent", now + 1), ("delivered", now + 2), ("read", now + 3)]),
    )
    .await;
    app.project().await;
    // An auditor reads.
    let reply = mutate(&app, "acme", Role::Auditor, CONVERSATION, json!({"id": id})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    let conversation = &reply["data"]["conversation"];
    assert_eq!(conversation["status"], "OPEN");
    assert_eq!(conversation["freeFormAllowed"], true);
    let edges = conversation["messages"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(edges.len(), 2, "{reply}");
    let (first, second) = (&edges[0]["node"], &edges[1]["node"]);
    assert_eq!(first["direction"], "INBOUND");
    assert!(first["content"].as_str().unwrap_or_default().contains("5kW kit"));
    assert_eq!(second["direction"], "OUTBOUND");
    assert_eq!(second["kind"], "template");
    assert_eq!(second["templateName"], "kit_follow_up");
    assert_eq!(second["content"], "[\"Tendai\",\"Friday\"]");
    assert_eq!(
        (second["state"].clone(), second["status"].clone()),
        (json!("sent"), json!("read"))
    );
    let timeline: Vec<(String, String)> = second["statusTimeline"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap_or_default().into(),
                e["at"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    let at = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap_or_default().to_rfc3339();
    assert_eq!(
        timeline,
        vec![
            ("sent".to_string(), at(now + 1)),
            ("delivered".to_string(), at(now + 2)),
            ("read".to_string(), at(now + 3))
        ]
    );

    // Rebuilt from the log, the read model is the same, timeline included.
    let everything = |app: &TestApp| {
        let pool = app.pool.clone();
        async move {
            let rows: Value = sqlx::query_scalar(
                "SELECT jsonb_build_array(
                   (SELECT jsonb_agg(to_jsonb(m) ORDER BY m.message_id) FROM messages m),
                   (SELECT jsonb_agg(to_jsonb(t) ORDER BY t.message_ref, t.status) FROM message_timeline t),
                   (SELECT jsonb_agg(to_jsonb(d)) FROM conversation_details d))",
            )
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            rows
        }
    };
    let before = everything(&app).await;
    for projector in projectors(&app.state).into_iter().filter(|p| p.name() == "messages") {
        ProjectorRunner::new(
            app.state.pool.clone(),
            projector,
            app.state.wakeups.clone(),
            RunnerConfig::default(),
        )
        .rebuild()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    app.project().await;
    assert_eq!(before, everything(&app).await);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_failure_with_131047_is_shown_as_window_closed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let base = graph().await;
    let number = "100000001";
    app.tenant_with_number("acme", number).await;
    approve_template(&app, "acme").await;
    let now = chrono::Utc::now().timestamp();
    post_and_drain(&app, &hello(number, now - 30 * 3600)).await;
    app.project().await;
    let id = conversation_id(&app, "acme").await;
    mutate(
        &app,
        "acme",
        Role::Agent,
        SEND_TEMPLATE,
        json!({"id": id, "key": "tpl-1"}),
    )
    .await;
    send_all(&app, &base).await;
    let mut failed = status(&sent_wamid(number), "failed", now + 1, CUSTOMER);
    failed["errors"] = json!([{"code": 131047, "title": "Re-engagement message"}]);
    post_and_drain(&app, &delivery(number, &[], vec![], vec![failed])).await;
    app.project().await;
    let reply = mutate(&app, "acme", Role::Agent, CONVERSATION, json!({"id": id})).await;
    let node = &reply["data"]["conversation"]["messages"]["edges"][1]["node"];
    assert_eq!(node["status"], "failed", "{reply}");
    assert_eq!(node["statusTimeline"][0]["errorCode"], 131047);
    assert_eq!(node["statusTimeline"][0]["windowClosed"], true);
    assert_eq!(reply["data"]["conversation"]["freeFormAllowed"], false);
}

const WORK: &str = "mutation($id: String!) {
  requestHandover(conversationId: $id, reason: \"wants a person\") { position }
  tagConversation(conversationId: $id, tag: \"VIP\") { position }
  addNote(conversationId: $id, text: \"Called back about the battery\", noteId: \"n-1\") { position }
  setConversationStatus(conversationId: $id, status: PENDING) { position }
}";

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn agents_work_a_conversation_and_the_view_follows(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let number = "100000001";
    app.tenant_with_number("acme", number).await;
    let now = chrono::Utc::now().timestamp();
    post_and_drain(&app, &hello(number, now - 60)).await;
    app.project().await;
    let id = conversation_id(&app, "acme").await;
    let reply = mutate(&app, "acme", Role::Agent, WORK, json!({"id": id})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    assert!(
        reply["data"]["setConversationStatus"]["position"].as_i64()
            > reply["data"]["tagConversation"]["position"].as_i64()
    );
    app.project().await;
    let view = mutate(&app, "acme", Role::Agent, CONVERSATION, json!({"id": id})).await;
    let c = &view["data"]["conversation"];
    assert_eq!(c["status"], "PENDING", "{view}");
    assert_eq!(c["tags"], json!(["vip"]));
    assert_eq!(c["notes"][0]["text"], "Called back about the battery");
    assert_eq!(c["notes"][0]["author"], "user-1");
    assert_eq!(c["handoverReason"], "wants a person");
    assert!(c["handoverRequestedAt"].is_string());
    // The note is sealed in the log.
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE payload::text LIKE '%battery%'")
            .await,
        0
    );

    // Assignment answers the handover; closing needs resolving first.
    let agent = app.user("acme", Role::Agent).await;
    let reply = mutate(
        &app,
        "acme",
        Role::Admin,
        "mutation($id: String!, $agent: String) { assignConversation(conversationId: $id, agentId: $agent) { position } }",
        json!({"id": id, "agent": agent}),
    )
    .await;
    assert!(reply["errors"].is_null(), "{reply}");
    let set = |status: &str| {
        format!(
            "mutation($id: String!) {{ setConversationStatus(conversationId: $id, status: {status}) {{ position }} }}"
        )
    };
    let reply = mutate(&app, "acme", Role::Agent, &set("CLOSED"), json!({"id": id})).await;
    assert_eq!(code(&reply), "STATUS_MOVE_NOT_ALLOWED", "{reply}");
    for status in ["RESOLVED", "CLOSED"] {
        let reply = mutate(&app, "acme", Role::Agent, &set(status), json!({"id": id})).await;
        assert!(reply["errors"].is_null(), "{reply}");
    }
    app.project().await;
    let view = mutate(&app, "acme", Role::Agent, CONVERSATION, json!({"id": id})).await;
    let c = &view["data"]["conversation"];
    assert_eq!(
        (c["status"].clone(), c["assignee"].clone()),
        (json!("CLOSED"), json!(agent))
    );
    assert!(c["handoverRequestedAt"].is_null());

    // A new message from the customer reopens it.
    post_and_drain(
        &app,
        &delivery(
            number,
            &[(CUSTOMER, "Tendai Moyo")],
            vec![text_message(CUSTOMER, &wamid(CUSTOMER, 2000), now, "Hello again")],
            vec![],
        ),
    )
    .await;
    app.project().await;
    let view = mutate(&app, "acme", Role::Agent, CONVERSATION, json!({"id": id})).await;
    assert_eq!(view["data"]["conversation"]["status"], "OPEN");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_auditor_reads_a_conversation_but_cannot_work_it(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let number = "100000001";
    app.tenant_with_number("acme", number).await;
    post_and_drain(&app, &hello(number, chrono::Utc::now().timestamp() - 60)).await;
    app.project().await;
    let id = conversation_id(&app, "acme").await;
    let before = app.count("SELECT count(*) FROM events").await;
    for mutation in [
        "mutation($id: String!) { requestHandover(conversationId: $id) { position } }",
        "mutation($id: String!) { tagConversation(conversationId: $id, tag: \"x\") { position } }",
        "mutation($id: String!) { addNote(conversationId: $id, text: \"x\") { position } }",
        "mutation($id: String!) { setConversationStatus(conversationId: $id, status: PENDING) { position } }",
        "mutation($id: String!) { assignConversation(conversationId: $id, agentId: \"a\") { position } }",
        "mutation($id: String!) { untagConversation(conversationId: $id, tag: \"x\") { position } }",
    ] {
        let reply = mutate(&app, "acme", Role::Auditor, mutation, json!({"id": id})).await;
        assert_eq!(code(&reply), "FORBIDDEN", "{mutation}: {reply}");
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, before);
    let reply = mutate(&app, "acme", Role::Auditor, CONVERSATION, json!({"id": id})).await;
    assert_eq!(reply["data"]["conversation"]["id"], json!(id), "{reply}");
    let reply = mutate(&app, "acme", Role::Technician, CONVERSATION, json!({"id": id})).await;
    assert_eq!(code(&reply), "FORBIDDEN", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn another_tenant_neither_sees_nor_changes_a_conversation(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let number = "100000001";
    app.tenant_with_number("acme", number).await;
    app.tenant_with_number("beta", "200000002").await;
    post_and_drain(&app, &hello(number, chrono::Utc::now().timestamp() - 60)).await;
    app.project().await;
    let id = conversation_id(&app, "acme").await;
    let reply = mutate(&app, "beta", Role::Owner, CONVERSATION, json!({"id": id})).await;
    assert!(reply["data"]["conversation"].is_null(), "{reply}");
    let reply = mutate(
        &app,
        "beta",
        Role::Owner,
        "mutation($id: String!) { tagConversation(conversationId: $id, tag: \"x\") { position } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(code(&reply), "UNKNOWN_CONVERSATION", "{reply}");
    let reply = mutate(
        &app,
        "beta",
        Role::Owner,
        "mutation($id: String!) { addNote(conversationId: $id, text: \"x\") { position } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(code(&reply), "UNKNOWN_CONVERSATION", "{reply}");
    let beta_keys = app
        .count("SELECT count(*) FROM contact_keys WHERE tenant_id = 'beta'")
        .await;
    assert_eq!(
        beta_keys, 0,
        "no data key is made for a conversation that does not exist"
    );
    let reply = mutate(&app, "acme", Role::Owner, CONVERSATION, json!({"id": "not an id"})).await;
    assert_eq!(code(&reply), "BAD_CONVERSATION_ID", "{reply}");
}

/// The thread's messages as (id prefix, kind, state, the statuses of its timeline).
async fn thread(app: &TestApp, id: &str) -> Vec<(String, String, String, Vec<String>)> {
    let reply = mutate(app, "acme", Role::Agent, CONVERSATION, json!({"id": id})).await;
    assert!(reply["errors"].is_null(), "{reply}");
    reply["data"]["conversation"]["messages"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let node = &e["node"];
            let prefix = node["id"]
                .as_str()
                .unwrap_or_default()
                .split(':')
                .next()
                .unwrap_or_default();
            (
                prefix.to_string(),
                node["kind"].as_str().unwrap_or_default().to_string(),
                node["state"].as_str().unwrap_or_default().to_string(),
                node["statusTimeline"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|s| s["status"].as_str().unwrap_or_default().to_string())
                    .collect(),
            )
        })
        .collect()
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_status_of_a_message_sent_outside_chronicle_shows_in_the_thread_and_never_opens_one(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let number = "100000001";
    app.tenant_with_number("acme", number).await;
    let now = chrono::Utc::now().timestamp();
    let events = || async { app.count("SELECT count(*) FROM events").await };
    // Someone who never wrote gets a message from the WhatsApp Business app: its statuses open
    // no conversation, and the delivery is done.
    let before = events().await;
    post_and_drain(
        &app,
        &delivery(
            number,
            &[],
            vec![],
            vec![status(&wamid("263771000099", 7), "sent", now, "263771000099")],
        ),
    )
    .await;
    // (Tried a few times and for ten minutes first, with the inbox's backoff: the contact's
    // first message may still be on its way.)
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_inbox WHERE state = 'pending' AND last_error LIKE '%no conversation%'")
            .await,
        1
    );
    for _ in 1..chronicle_commands::intake::inbox::STATUS_WITHOUT_CONVERSATION_TRIES {
        sqlx::query("UPDATE webhook_inbox SET claimed_until = NULL, received_at = now() - interval '11 minutes'")
            .execute(&app.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        app.drain().await;
    }
    assert_eq!(events().await, before, "nothing recorded");
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_inbox WHERE state <> 'done'")
            .await,
        0,
        "the delivery is done, not parked"
    );
    // The customer writes; the business answers from the phone app (not through Chronicle).
    post_and_drain(&app, &hello(number, now - 120)).await;
    let elsewhere = wamid(CUSTOMER, 555);
    post_and_drain(
        &app,
        &delivery(
            number,
            &[],
            vec![],
            vec![
                status(&elsewhere, "delivered", now + 2, CUSTOMER),
                status(&elsewhere, "sent", now + 1, CUSTOMER),
            ],
        ),
    )
    .await;
    app.project().await;
    let id = conversation_id(&app, "acme").await;
    assert_eq!(
        thread(&app, &id).await,
        vec![
            ("in".into(), "text".into(), "received".into(), vec![]),
            (
                "ext".into(),
                "external".into(),
                "sent".into(),
                vec!["sent".into(), "delivered".into()]
            ),
        ]
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'DeliveryStatusRecorded' AND (payload -> 'DeliveryStatusRecorded' ->> 'external')::boolean")
            .await,
        2
    );
    // A rebuild gives the same thread.
    let live = table_rows(&app.pool, false).await;
    app.rebuild_only(&["messages", "conversations"]).await;
    assert_eq!(table_rows(&app.pool, false).await, live);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_status_that_beats_the_senders_record_ends_on_chronicles_own_message(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let base = graph().await;
    let number = "100000001";
    app.tenant_with_number("acme", number).await;
    let now = chrono::Utc::now().timestamp();
    post_and_drain(&app, &hello(number, now - 120)).await;
    app.project().await;
    let id = conversation_id(&app, "acme").await;
    let reply = mutate(
        &app,
        "acme",
        Role::Agent,
        "mutation($id: String!) { sendMessage(conversationId: $id, text: \"It is in stock\", idempotencyKey: \"m-1\") { id } }",
        json!({"id": id}),
    )
    .await;
    assert!(reply["errors"].is_null(), "{reply}");
    // WhatsApp's `sent` webhook arrives before the sender has recorded WhatsApp's answer.
    post_and_drain(&app, &statuses(number, &[("sent", now + 60)])).await;
    app.project().await;
    assert_eq!(
        thread(&app, &id).await.iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
        vec!["in", "out", "ext"],
        "until the record, the status looks like a message sent elsewhere"
    );
    send_all(&app, &base).await;
    post_and_drain(&app, &statuses(number, &[("delivered", now + 61)])).await;
    app.project().await;
    assert_eq!(
        thread(&app, &id).await,
        vec![
            ("in".into(), "text".into(), "received".into(), vec![]),
            (
                "out".into(),
                "free_form".into(),
                "sent".into(),
                vec!["sent".into(), "delivered".into()]
            ),
        ],
        "one message, with both statuses"
    );
    let live = table_rows(&app.pool, false).await;
    app.rebuild_only(&["messages", "conversations"]).await;
    assert_eq!(table_rows(&app.pool, false).await, live);
}
