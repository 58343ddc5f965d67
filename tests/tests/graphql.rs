//! GraphQL from end to end: the walking slice (webhook → command → events → projector → read
//! model → query), tenant isolation of queries and subscriptions, roles, and personal data.

use std::time::Duration;

use axum::http::StatusCode;
use chronicle_api::auth::Role;
use chronicle_tests::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const ACME_NUMBER: &str = "111000111";
const BETA_NUMBER: &str = "222000222";

const CONVERSATIONS: &str = "query($status: ConversationStatus, $after: String) {
  conversations(first: 10, after: $after, filter: { status: $status }) {
    edges { cursor node { id contactId contactPhone contactName status unreadCount messageCount
                          windowExpiresAt freeFormAllowed lastMessage { id kind text at } } }
    pageInfo { hasNextPage endCursor }
  }
}";

/// Acme: two contacts (three messages); Beta: one contact.
async fn two_tenants(app: &TestApp) {
    app.tenant_with_number("acme", ACME_NUMBER).await;
    app.tenant_with_number("beta", BETA_NUMBER).await;
    let now = chrono::Utc::now().timestamp();
    let acme = delivery(
        ACME_NUMBER,
        &[("263771000001", "Tendai Moyo"), ("263771000002", "Rudo Chikwanha")],
        vec![
            text_message(
                "263771000001",
                &wamid("263771000001", 1),
                now - 7200,
                "Is the 5kW kit in stock?",
            ),
            text_message(
                "263771000001",
                &wamid("263771000001", 2),
                now - 3600,
                "And the battery?",
            ),
            text_message(
                "263771000002",
                &wamid("263771000002", 3),
                now - 60,
                "Inverter error E07",
            ),
        ],
        vec![],
    );
    let beta = delivery(
        BETA_NUMBER,
        &[("254711000009", "Wanjiru Kamau")],
        vec![text_message(
            "254711000009",
            &wamid("254711000009", 4),
            now - 30,
            "Campaign report please",
        )],
        vec![status(
            &wamid("254711000009", 99),
            "delivered",
            now - 20,
            "254711000009",
        )],
    );
    assert_eq!(app.post_delivery(&acme).await.0, StatusCode::OK);
    assert_eq!(app.post_delivery(&beta).await.0, StatusCode::OK);
    app.drain().await;
    app.project().await;
}

fn nodes(reply: &Value) -> Vec<Value> {
    reply["data"]["conversations"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["node"].clone())
        .collect()
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_webhook_message_reaches_the_conversations_query(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_tenants(&app).await;
    let (status, reply) = app
        .graphql(Some(&app.token("acme", Role::Agent)), CONVERSATIONS, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let nodes = nodes(&reply);
    assert_eq!(nodes.len(), 2, "{reply}");
    // Newest message first.
    assert_eq!(nodes[0]["contactName"], "Rudo Chikwanha");
    assert_eq!(nodes[0]["contactPhone"], "+263771000002");
    assert_eq!(nodes[0]["lastMessage"]["text"], "Inverter error E07");
    assert_eq!(nodes[1]["contactName"], "Tendai Moyo");
    assert_eq!(nodes[1]["unreadCount"], 2);
    assert_eq!(nodes[1]["messageCount"], 2);
    assert_eq!(nodes[1]["lastMessage"]["text"], "And the battery?");
    assert_eq!(nodes[1]["status"], "OPEN");
    assert_eq!(nodes[1]["freeFormAllowed"], true);
    // The window runs 24 hours from the latest inbound message.
    let expires = chrono::DateTime::parse_from_rfc3339(nodes[1]["windowExpiresAt"].as_str().unwrap_or_default()).ok();
    let last = chrono::DateTime::parse_from_rfc3339(nodes[1]["lastMessage"]["at"].as_str().unwrap_or_default()).ok();
    assert_eq!(expires.zip(last).map(|(e, l)| (e - l).num_hours()), Some(24));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn conversations_page_with_cursors_and_filter_by_status(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_tenants(&app).await;
    let token = app.token("acme", Role::Owner);
    let first_page = "query($after: String) { conversations(first: 1, after: $after) {
        edges { cursor node { contactName } } pageInfo { hasNextPage endCursor } } }";
    let (_, page1) = app.graphql(Some(&token), first_page, json!({})).await;
    assert_eq!(
        page1["data"]["conversations"]["pageInfo"]["hasNextPage"], true,
        "{page1}"
    );
    let end = page1["data"]["conversations"]["pageInfo"]["endCursor"].clone();
    let (_, page2) = app.graphql(Some(&token), first_page, json!({ "after": end })).await;
    assert_eq!(
        page2["data"]["conversations"]["edges"][0]["node"]["contactName"],
        "Tendai Moyo"
    );
    assert_eq!(page2["data"]["conversations"]["pageInfo"]["hasNextPage"], false);

    let (_, resolved) = app
        .graphql(Some(&token), CONVERSATIONS, json!({ "status": "RESOLVED" }))
        .await;
    assert_eq!(nodes(&resolved).len(), 0);
    let (_, open) = app
        .graphql(Some(&token), CONVERSATIONS, json!({ "status": "OPEN" }))
        .await;
    assert_eq!(nodes(&open).len(), 2);

    let (_, bad) = app
        .graphql(Some(&token), CONVERSATIONS, json!({ "after": "not-a-cursor" }))
        .await;
    assert_eq!(bad["errors"][0]["extensions"]["code"], "BAD_CURSOR", "{bad}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn with_tenant_as_token_no_query_returns_tenant_bs_data(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_tenants(&app).await;
    let (_, acme) = app
        .graphql(Some(&app.token("acme", Role::Owner)), CONVERSATIONS, json!({}))
        .await;
    let (_, beta) = app
        .graphql(Some(&app.token("beta", Role::Owner)), CONVERSATIONS, json!({}))
        .await;
    assert!(acme["errors"].is_null(), "{acme}");
    let names = |v: &Value| {
        nodes(v)
            .iter()
            .map(|n| n["contactName"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&acme), ["Rudo Chikwanha", "Tendai Moyo"]);
    assert_eq!(names(&beta), ["Wanjiru Kamau"]);
    // A page cursor taken from tenant B's listing shows nothing of B to tenant A.
    let beta_cursor = beta["data"]["conversations"]["edges"][0]["cursor"].clone();
    let (_, crossed) = app
        .graphql(
            Some(&app.token("acme", Role::Owner)),
            CONVERSATIONS,
            json!({ "after": beta_cursor }),
        )
        .await;
    assert!(!crossed.to_string().contains("Wanjiru"), "{crossed}");
    // The schema has no tenant argument to try: the tenant comes from the token only.
    let (_, by_arg) = app
        .graphql(
            Some(&app.token("acme", Role::Owner)),
            "{ conversations(tenantId: \"beta\") { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert!(
        by_arg["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("tenantId"),
        "{by_arg}"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn graphql_without_a_valid_token_is_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_tenants(&app).await;
    let (status, reply) = app.graphql(None, CONVERSATIONS, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{reply}");
    let forged = chronicle_api::auth::mint(
        "a-different-secret-a-different-secret",
        &tenant("beta"),
        "x",
        Role::Owner,
        chrono::Duration::hours(1),
    )
    .unwrap_or_default();
    let (status, _) = app.graphql(Some(&forged), CONVERSATIONS, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_technician_cannot_read_the_inbox(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_tenants(&app).await;
    let (_, reply) = app
        .graphql(Some(&app.token("acme", Role::Technician)), CONVERSATIONS, json!({}))
        .await;
    assert_eq!(reply["errors"][0]["extensions"]["code"], "FORBIDDEN", "{reply}");
    assert!(!reply.to_string().contains("Tendai"));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn no_phone_number_name_or_message_text_is_stored_in_the_log_in_the_clear(pool: PgPool) {
    // Snapshots every 2 events, so snapshot rows exist and are checked too.
    let mut settings = settings(false);
    settings.snapshots.conversation = Some(2);
    let app = TestApp::with_settings(pool, settings).await;
    two_tenants(&app).await;
    // GraphQL shows them to the tenant...
    let (_, reply) = app
        .graphql(Some(&app.token("acme", Role::Owner)), CONVERSATIONS, json!({}))
        .await;
    let shown = reply.to_string();
    for visible in ["+263771000001", "Tendai Moyo", "And the battery?"] {
        assert!(shown.contains(visible), "{visible} should be shown: {shown}");
    }
    // ...while no column of any event or snapshot holds them.
    let raw: Vec<String> = sqlx::query_scalar(
        "SELECT concat_ws('|', aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text,
                         metadata::text, global_position, tenant_id, recorded_at, tx_id, encode(hash, 'hex'))
           FROM events
         UNION ALL
         SELECT concat_ws('|', aggregate_type, aggregate_id, payload::text) FROM snapshots",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap_or_default();
    let snapshots = app.count("SELECT count(*) FROM snapshots").await;
    assert!(snapshots >= 1, "a snapshot row exists to be checked");
    let conversation_events = app
        .count("SELECT count(*) FROM events WHERE aggregate_type = 'Conversation'")
        .await;
    let inbox = app
        .count("SELECT count(*) FROM webhook_inbox WHERE state = 'done'")
        .await;
    assert_eq!(
        (conversation_events, inbox),
        (5, 5),
        "every message and status was appended"
    );
    // Contacts were registered too; their events are checked like every other.
    let events = app.count("SELECT count(*) FROM events").await;
    assert_eq!(raw.len() as i64, events + snapshots);
    let mut everything = raw.join("\n");
    // The inbox keeps only keyed hashes of its dedupe keys once processed.
    let inbox: Vec<String> = sqlx::query_scalar("SELECT concat_ws('|', dedupe_key, payload::text) FROM webhook_inbox")
        .fetch_all(&app.pool)
        .await
        .unwrap_or_default();
    everything.push_str(&inbox.join("\n"));
    for secret in [
        "263771000001",
        "771000001",
        "263771000002",
        "254711000009",
        "Tendai",
        "Moyo",
        "Rudo",
        "Wanjiru",
        "5kW kit",
        "battery",
        "Inverter error",
        "Campaign report",
    ] {
        assert!(!everything.contains(secret), "{secret:?} found in the clear in the log");
    }
    for (phone, n) in [
        ("263771000001", 1),
        ("263771000001", 2),
        ("263771000002", 3),
        ("254711000009", 4),
        ("254711000009", 99),
    ] {
        let id = wamid(phone, n);
        let tail = &id["wamid.".len()..];
        assert!(
            !everything.contains(tail),
            "WhatsApp id {id} (which embeds a phone number) found in the log"
        );
    }
}

async fn ws_connect(
    address: std::net::SocketAddr,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = format!("ws://{address}/graphql/ws")
        .into_client_request()
        .unwrap_or_else(|e| panic!("{e}"));
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap_or_else(|e| panic!("{e}")),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ack = next_json(&mut socket).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    socket
}

async fn next_json<S>(socket: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = match tokio::time::timeout(Duration::from_secs(20), socket.next()).await {
            Err(_) => panic!("no message within 20 s"),
            Ok(None) => panic!("socket closed"),
            Ok(Some(Err(e))) => panic!("{e}"),
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap_or_default();
                if value["type"] == "ping" || value["type"] == "pong" {
                    continue;
                }
                return value;
            }
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

async fn subscribe(socket: &mut (impl SinkExt<Message> + Unpin), after: Option<&str>) {
    let query = "subscription($after: String) { events(after: $after) { cursor position eventType aggregateId correlationId } }";
    let message = json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"after": after}}});
    if socket.send(Message::Text(message.to_string().into())).await.is_err() {
        panic!("could not subscribe");
    }
}

async fn take_events<S>(socket: &mut S, n: usize) -> Vec<Value>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut events = Vec::new();
    while events.len() < n {
        let message = next_json(socket).await;
        assert_eq!(message["type"], "next", "{message}");
        assert!(message["payload"]["errors"].is_null(), "{message}");
        events.push(message["payload"]["data"]["events"].clone());
    }
    events
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_events_subscription_streams_history_then_live_for_the_tokens_tenant_only(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_tenants(&app).await;
    let address = app.serve().await;
    let mut socket = ws_connect(address, &app.token("acme", Role::Integrator)).await;
    subscribe(&mut socket, None).await;
    let acme_events = app.count("SELECT count(*) FROM events WHERE tenant_id = 'acme'").await as usize;
    let history = take_events(&mut socket, acme_events).await;
    assert!(
        history
            .iter()
            .all(|e| e["aggregateId"].as_str().unwrap_or_default().starts_with("acme:")),
        "{history:?}"
    );

    // Live: one event for beta (must not arrive), then one for acme (must).
    let now = chrono::Utc::now().timestamp();
    app.post_delivery(&delivery(
        BETA_NUMBER,
        &[],
        vec![text_message("254711000009", "wamid.b2", now, "more")],
        vec![],
    ))
    .await;
    app.drain().await;
    app.post_delivery(&delivery(
        ACME_NUMBER,
        &[],
        vec![text_message("263771000002", "wamid.a4", now, "live one")],
        vec![],
    ))
    .await;
    app.drain().await;
    let live = take_events(&mut socket, 1).await;
    assert!(
        live[0]["aggregateId"].as_str().unwrap_or_default().starts_with("acme:"),
        "{live:?}"
    );
    assert_eq!(live[0]["eventType"], "MessageReceived");

    // Resuming after the second event yields exactly the third and the live one.
    let all: Vec<Value> = history.iter().chain(live.iter()).cloned().collect();
    let positions: Vec<i64> = all.iter().map(|e| e["position"].as_i64().unwrap_or_default()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let mut resumed = ws_connect(address, &app.token("acme", Role::Integrator)).await;
    subscribe(&mut resumed, all[1]["cursor"].as_str()).await;
    let rest = take_events(&mut resumed, all.len() - 2).await;
    assert_eq!(rest, all[2..].to_vec());
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_subscription_without_a_token_is_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let address = app.serve().await;
    let mut request = format!("ws://{address}/graphql/ws")
        .into_client_request()
        .unwrap_or_else(|e| panic!("{e}"));
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap_or_else(|e| panic!("{e}")),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    socket
        .send(Message::Text(
            json!({"type": "connection_init", "payload": {}}).to_string().into(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap_or_else(|_| panic!("no answer"));
    match answer {
        Some(Ok(Message::Close(Some(frame)))) => assert!(frame.reason.contains("access token"), "{frame:?}"),
        Some(Ok(Message::Text(text))) => assert!(!text.contains("connection_ack"), "{text}"),
        other => assert!(
            matches!(other, None | Some(Err(_)) | Some(Ok(Message::Close(None)))),
            "{other:?}"
        ),
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_auditor_subscribes_but_an_agent_cannot(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_tenants(&app).await;
    let address = app.serve().await;
    let mut socket = ws_connect(address, &app.token("acme", Role::Agent)).await;
    subscribe(&mut socket, None).await;
    let answer = next_json(&mut socket).await;
    assert_eq!(
        answer["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{answer}"
    );
    assert!(answer["payload"]["data"].is_null(), "{answer}");
    let mut auditor = ws_connect(address, &app.token("acme", Role::Auditor)).await;
    subscribe(&mut auditor, None).await;
    assert_eq!(take_events(&mut auditor, 3).await.len(), 3);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn oversized_graphql_bodies_are_refused_and_anonymous_ones_before_reading(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let huge = format!(
        "{{\"query\": \"{{ viewer {{ tenantId }} }}\", \"padding\": \"{}\"}}",
        "x".repeat(5 * 1024 * 1024)
    );
    let request = |token: Option<String>, declared: bool| {
        let mut r = axum::http::Request::post("/graphql").header("content-type", "application/json");
        if declared {
            r = r.header("content-length", huge.len().to_string());
        }
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.body(axum::body::Body::from(huge.clone()))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    // A declared length over the limit is refused before anything else.
    let (status, _) = app.send(request(None, true)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = app.send(request(Some(app.token("acme", Role::Owner)), true)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // A streamed body without a length: an anonymous caller is refused before it is read; an
    // authenticated one is cut off at the limit, not buffered whole.
    let (status, _) = app.send(request(None, false)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, reply) = app.send(request(Some(app.token("acme", Role::Owner)), false)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
    assert_eq!(reply["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn row_level_security_shows_the_application_one_tenant_even_without_a_filter(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_tenants(&app).await;
    assert_eq!(
        app.count("SELECT count(*) FROM conversations").await,
        3,
        "the owner sees every row"
    );
    let unscoped: i64 = sqlx::query_scalar("SELECT count(*) FROM conversations")
        .fetch_one(&app.state.pool)
        .await
        .unwrap_or(-1);
    assert_eq!(unscoped, 0, "a transaction that named no tenant sees nothing");
    let mut tx = app.state.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    chronicle_projections::conversations::for_tenant(&mut tx, &tenant("beta"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tenants: Vec<String> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM conversations")
        .fetch_all(&mut *tx)
        .await
        .unwrap_or_default();
    assert_eq!(tenants, ["beta"]);
    let forged = sqlx::query(
        "INSERT INTO conversations (tenant_id, conversation_id, contact_id, created_at, updated_at, last_position)
         VALUES ('acme', 'ct_x', 'ct_x', now(), now(), 1)",
    )
    .execute(&mut *tx)
    .await;
    assert!(
        forged.is_err(),
        "a row of another tenant cannot be written in a beta-scoped transaction"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_subscription_ends_when_its_token_expires(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_tenants(&app).await;
    let address = app.serve().await;
    let short = chronicle_api::auth::mint(
        JWT_SECRET,
        &tenant("acme"),
        "u",
        Role::Integrator,
        chrono::Duration::seconds(3),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut socket = ws_connect(address, &short).await;
    subscribe(&mut socket, None).await;
    let acme_events = app.count("SELECT count(*) FROM events WHERE tenant_id = 'acme'").await as usize;
    assert_eq!(take_events(&mut socket, acme_events).await.len(), acme_events);
    let end = next_json(&mut socket).await;
    assert_eq!(end["type"], "complete", "{end}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_status_change_moves_the_conversation_between_inbox_filters(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_tenants(&app).await;
    let token = app.token("acme", Role::Agent);
    let (_, open) = app
        .graphql(Some(&token), CONVERSATIONS, json!({ "status": "OPEN" }))
        .await;
    let id = nodes(&open)[0]["id"].clone();
    let (_, moved) = app
        .graphql(
            Some(&token),
            "mutation($id: String!) { setConversationStatus(conversationId: $id, status: RESOLVED) { position } }",
            json!({ "id": id }),
        )
        .await;
    assert!(moved["errors"].is_null(), "{moved}");
    app.project().await;
    let (_, resolved) = app
        .graphql(Some(&token), CONVERSATIONS, json!({ "status": "RESOLVED" }))
        .await;
    assert_eq!(
        nodes(&resolved).iter().map(|n| n["id"].clone()).collect::<Vec<_>>(),
        vec![id.clone()]
    );
    let (_, open) = app
        .graphql(Some(&token), CONVERSATIONS, json!({ "status": "OPEN" }))
        .await;
    assert!(nodes(&open).iter().all(|n| n["id"] != id));
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_inbox_filters_by_assignee_unassigned_and_tag(pool: PgPool) {
    let app = TestApp::new(pool).await;
    two_tenants(&app).await;
    let token = app.token("acme", Role::Agent);
    let (_, all) = app.graphql(Some(&token), CONVERSATIONS, json!({})).await;
    let ids: Vec<Value> = nodes(&all).iter().map(|n| n["id"].clone()).collect();
    let agent = app.user("acme", Role::Agent).await;
    let (_, assigned) = app
        .graphql(
            Some(&token),
            "mutation($id: String!, $agent: String) { assignConversation(conversationId: $id, agentId: $agent) { position } }",
            json!({ "id": ids[0], "agent": agent }),
        )
        .await;
    assert!(assigned["errors"].is_null(), "{assigned}");
    let (_, tagged) = app
        .graphql(
            Some(&token),
            "mutation($id: String!) { tagConversation(conversationId: $id, tag: \"vip\") { position } }",
            json!({ "id": ids[1] }),
        )
        .await;
    assert!(tagged["errors"].is_null(), "{tagged}");
    app.project().await;
    let query = "query($f: ConversationFilter) { conversations(filter: $f) { edges { node { id assignee assignedTo { id name } tags } } } }";
    let ids_of = |v: &Value| nodes(v).iter().map(|n| n["id"].clone()).collect::<Vec<_>>();
    let (_, mine) = app
        .graphql(Some(&token), query, json!({ "f": { "assignee": agent } }))
        .await;
    assert_eq!(ids_of(&mine), vec![ids[0].clone()], "{mine}");
    assert_eq!(nodes(&mine)[0]["assignee"], agent.as_str());
    // With the agent's name from the user directory.
    let name: String = sqlx::query_scalar("SELECT name FROM user_accounts WHERE user_id = $1")
        .bind(&agent)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(nodes(&mine)[0]["assignedTo"], json!({"id": agent, "name": name}));
    let (_, nobody) = app
        .graphql(Some(&token), query, json!({ "f": { "unassigned": true } }))
        .await;
    assert_eq!(ids_of(&nobody), vec![ids[1].clone()], "{nobody}");
    let (_, vip) = app.graphql(Some(&token), query, json!({ "f": { "tag": "VIP" } })).await;
    assert_eq!(ids_of(&vip), vec![ids[1].clone()], "{vip}");
}

/// The introspection queries of graphql-js, as GraphiQL, Apollo and code generators send them.
const INTROSPECTION_QUERIES: [(&str, &str); 3] = [
    (
        "graphql-js 16, every option",
        include_str!("../fixtures/introspection/introspection-graphql-js-16.graphql"),
    ),
    (
        "graphql-js 16, no descriptions",
        include_str!("../fixtures/introspection/introspection-graphql-js-16-no-descriptions.graphql"),
    ),
    (
        "graphql-js 17, every option",
        include_str!("../fixtures/introspection/introspection-graphql-js-17.graphql"),
    ),
];

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_standard_introspection_queries_are_answered(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", ACME_NUMBER).await;
    let token = app.token("acme", Role::Agent);
    for (name, query) in INTROSPECTION_QUERIES {
        let (status, reply) = app.graphql(Some(&token), query, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{name}: {reply}");
        assert!(reply.get("errors").is_none(), "{name}: {reply}");
        let types = reply["data"]["__schema"]["types"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let root = &reply["data"]["__schema"]["queryType"]["name"];
        let query_type = types.iter().find(|t| &t["name"] == root);
        let fields = query_type.and_then(|t| t["fields"].as_array()).map(Vec::len);
        assert!(
            fields.unwrap_or(0) > 10,
            "{name}: the Query type lists its fields: {reply}"
        );
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn deep_complex_and_recursive_introspection_queries_are_still_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", ACME_NUMBER).await;
    let token = app.token("acme", Role::Agent);
    // Data fields: 12 levels are checked further (here: unknown fields), 13 are refused first.
    let nest = |levels: usize| (1..levels).fold(String::from("a"), |inner, _| format!("a {{ {inner} }}"));
    let (_, reply) = app
        .graphql(Some(&token), &format!("{{ {} }}", nest(12)), json!({}))
        .await;
    assert!(!error_message(&reply).contains("too deep"), "{reply}");
    let (_, reply) = app
        .graphql(Some(&token), &format!("{{ {} }}", nest(13)), json!({}))
        .await;
    assert!(error_message(&reply).contains("nested too deep"), "{reply}");
    // Complexity: 1,001 data fields.
    let wide: String = (0..1001).map(|i| format!("f{i}: __typename ")).collect();
    let (_, reply) = app.graphql(Some(&token), &format!("{{ {wide} }}"), json!({})).await;
    assert!(error_message(&reply).contains("too complex"), "{reply}");
    // Introspection that multiplies the answer by the schema's size at every level.
    let recursive = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }";
    let (_, reply) = app.graphql(Some(&token), recursive, json!({})).await;
    assert!(reply["data"].is_null(), "{reply}");
    assert!(error_message(&reply).contains("too many lists"), "{reply}");
    // Introspection nested deeper than any client needs.
    let of_type = (0..16).fold(String::from("name"), |inner, _| format!("ofType {{ {inner} }}"));
    let (_, reply) = app
        .graphql(
            Some(&token),
            &format!("{{ __type(name: \"Query\") {{ {of_type} }} }}"),
            json!({}),
        )
        .await;
    assert!(error_message(&reply).contains("nested too deep"), "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn production_has_no_whatsapp_sandbox(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", ACME_NUMBER).await;
    let token = app.token("acme", Role::Owner);
    let (_, reply) = app
        .graphql(
            Some(&token),
            "mutation { sandboxInbound(from: \"+263771000999\", text: \"hi\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&reply), "SANDBOX_OFF", "{reply}");
    for (method, path) in [
        ("POST", "/sandbox/inbound"),
        ("POST", "/sandbox/graph/v21.0/111000111/messages"),
        ("GET", "/sandbox/graph/v21.0/media-1"),
        ("GET", "/sandbox/media/media-1"),
    ] {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let (status, _) = app.send(request).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_query_limits_hold_over_websocket_too(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", ACME_NUMBER).await;
    let address = app.serve().await;
    let mut socket = ws_connect(address, &app.token("acme", Role::Integrator)).await;
    let deep = (1..13).fold(String::from("a"), |inner, _| format!("a {{ {inner} }}"));
    let message =
        json!({"id": "deep", "type": "subscribe", "payload": {"query": format!("subscription {{ {deep} }}")}});
    if socket.send(Message::Text(message.to_string().into())).await.is_err() {
        panic!("could not subscribe");
    }
    let reply = next_json(&mut socket).await;
    let text = reply.to_string();
    assert!(text.contains("nested too deep"), "{reply}");
}
