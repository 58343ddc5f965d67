//! GraphQL over WebSocket by the `graphql-transport-ws` protocol (issue 12), through a real
//! WebSocket client against the served app: every close code (4400, 4401, 4403, 4406, 4408,
//! 4409, 4429), request errors as `error` messages, keep-alive pings, the cap on operations per
//! connection, and the legacy `graphql-ws` protocol still served.

use std::time::Duration;

use chronicle_api::auth::Role;
use chronicle_tests::TestApp;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const EVENTS: &str = "subscription { events { position eventType } }";

async fn connect(address: std::net::SocketAddr, protocol: Option<&str>) -> Socket {
    let mut request = format!("ws://{address}/graphql/ws")
        .into_client_request()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(protocol) = protocol {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            protocol.parse().unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("sending {message}: {e}"));
}

/// The next message, pings and pongs included.
async fn next_raw(socket: &mut Socket) -> Result<Value, (u16, String)> {
    loop {
        let message = match tokio::time::timeout(Duration::from_secs(20), socket.next()).await {
            Err(_) => panic!("no message within 20 s"),
            Ok(None) => return Err((0, "ended".into())),
            Ok(Some(Err(e))) => return Err((0, e.to_string())),
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Text(text) => return Ok(serde_json::from_str(&text).unwrap_or_default()),
            Message::Close(Some(frame)) => return Err((u16::from(frame.code), frame.reason.to_string())),
            Message::Close(None) => return Err((1005, String::new())),
            _ => continue,
        }
    }
}

/// The next message that is not a ping or pong.
async fn next(socket: &mut Socket) -> Value {
    loop {
        match next_raw(socket).await {
            Ok(v) if v["type"] == "ping" || v["type"] == "pong" => continue,
            Ok(v) => return v,
            Err(closed) => panic!("closed: {closed:?}"),
        }
    }
}

/// The close code and reason the server ends with.
async fn closed(socket: &mut Socket) -> (u16, String) {
    loop {
        match next_raw(socket).await {
            Ok(v) if v["type"] == "ping" || v["type"] == "pong" => continue,
            Ok(v) => panic!("a message instead of a close: {v}"),
            Err(closed) => return closed,
        }
    }
}

async fn initialised(app: &TestApp, address: std::net::SocketAddr) -> Socket {
    let mut socket = connect(address, Some("graphql-transport-ws")).await;
    let token = app.token("acme", Role::Integrator);
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "connection_ack");
    socket
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn every_close_code_of_the_protocol(pool: sqlx::PgPool) {
    let mut app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    app.state.websocket.init_timeout = Duration::from_millis(300);
    let address = app.serve().await;
    let token = app.token("acme", Role::Integrator);

    // 4401: subscribe before connection_init.
    let mut socket = connect(address, Some("graphql-transport-ws")).await;
    send(
        &mut socket,
        json!({"id": "1", "type": "subscribe", "payload": {"query": EVENTS}}),
    )
    .await;
    assert_eq!(closed(&mut socket).await, (4401, "Unauthorized".into()));

    // 4403: no token, and a refused token.
    let mut socket = connect(address, Some("graphql-transport-ws")).await;
    send(&mut socket, json!({"type": "connection_init", "payload": {}})).await;
    let (code, reason) = closed(&mut socket).await;
    assert_eq!(code, 4403);
    assert!(reason.starts_with("Forbidden: an access token is required"), "{reason}");
    let mut socket = connect(address, Some("graphql-transport-ws")).await;
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": {"Authorization": "Bearer not.a.token"}}),
    )
    .await;
    let (code, reason) = closed(&mut socket).await;
    assert_eq!(code, 4403);
    assert_eq!(reason, "Forbidden: the access token is not a valid token");

    // 4408: no connection_init within the configured timeout.
    let mut socket = connect(address, Some("graphql-transport-ws")).await;
    assert_eq!(
        closed(&mut socket).await,
        (4408, "Connection initialisation timeout".into())
    );

    // 4429: a second connection_init.
    let mut socket = initialised(&app, address).await;
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": {"token": token}}),
    )
    .await;
    assert_eq!(
        closed(&mut socket).await,
        (4429, "Too many initialisation requests".into())
    );

    // 4409: a subscription id already running.
    let mut socket = initialised(&app, address).await;
    send(
        &mut socket,
        json!({"id": "same", "type": "subscribe", "payload": {"query": EVENTS}}),
    )
    .await;
    send(
        &mut socket,
        json!({"id": "same", "type": "subscribe", "payload": {"query": EVENTS}}),
    )
    .await;
    let (code, reason) = closed(&mut socket).await;
    assert_eq!((code, reason.as_str()), (4409, "Subscriber for same already exists"));

    // 4400: messages that are not the protocol's.
    for bad in [
        Message::Text("not json".into()),
        Message::Text(
            json!({"type": "subscribe", "payload": {"query": EVENTS}})
                .to_string()
                .into(),
        ),
        Message::Text(
            json!({"id": "1", "type": "subscribe", "payload": {"query": 7}})
                .to_string()
                .into(),
        ),
        Message::Text(json!({"id": "1", "type": "next", "payload": {}}).to_string().into()),
        Message::Binary(vec![1, 2, 3].into()),
    ] {
        let mut socket = initialised(&app, address).await;
        socket.send(bad.clone()).await.unwrap_or_else(|e| panic!("{e}"));
        let (code, reason) = closed(&mut socket).await;
        assert_eq!(code, 4400, "{bad:?}: {reason}");
        assert!(reason.starts_with("Invalid message received"), "{reason}");
    }

    // 4406: neither subprotocol offered.
    let mut socket = connect(address, None).await;
    let (code, _) = closed(&mut socket).await;
    assert_eq!(code, 4406);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn operations_answer_next_complete_or_one_error(pool: sqlx::PgPool) {
    let mut app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    app.state.websocket.max_subscriptions = 2;
    let address = app.serve().await;
    let mut socket = initialised(&app, address).await;

    // A query: one next, then complete.
    send(
        &mut socket,
        json!({"id": "q", "type": "subscribe", "payload": {"query": "{ viewer { tenantId } }"}}),
    )
    .await;
    let answer = next(&mut socket).await;
    assert_eq!(answer["type"], "next", "{answer}");
    assert_eq!(answer["payload"]["data"]["viewer"]["tenantId"], "acme");
    assert_eq!(next(&mut socket).await, json!({"id": "q", "type": "complete"}));

    // Request errors: one `error` message with coded errors, and no complete.
    for (query, code) in [
        ("subscription { noSuchField }", "GRAPHQL_VALIDATION_FAILED"),
        ("subscription {", "GRAPHQL_PARSE_FAILED"),
    ] {
        send(
            &mut socket,
            json!({"id": "bad", "type": "subscribe", "payload": {"query": query}}),
        )
        .await;
        let answer = next(&mut socket).await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["id"], "bad");
        assert_eq!(answer["payload"][0]["extensions"]["code"], code, "{answer}");
    }
    // The id is free again (no 4409): the error ended the operation.
    send(
        &mut socket,
        json!({"id": "bad", "type": "subscribe", "payload": {"query": "{ viewer { role } }"}}),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "next");
    assert_eq!(next(&mut socket).await["type"], "complete");

    // At most two at once: the third is refused with an error, the connection stays open.
    send(
        &mut socket,
        json!({"id": "a", "type": "subscribe", "payload": {"query": EVENTS}}),
    )
    .await;
    send(
        &mut socket,
        json!({"id": "b", "type": "subscribe", "payload": {"query": EVENTS}}),
    )
    .await;
    send(
        &mut socket,
        json!({"id": "c", "type": "subscribe", "payload": {"query": EVENTS}}),
    )
    .await;
    let answer = next(&mut socket).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["id"], "c");
    assert_eq!(answer["payload"][0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS");
    // Completing one makes room; its id can be used again.
    send(&mut socket, json!({"id": "a", "type": "complete"})).await;
    send(
        &mut socket,
        json!({"id": "c", "type": "subscribe", "payload": {"query": "{ viewer { role } }"}}),
    )
    .await;
    let answer = next(&mut socket).await;
    assert_eq!(
        (answer["id"].clone(), answer["type"].clone()),
        (json!("c"), json!("next")),
        "{answer}"
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_server_pings_and_answers_pings(pool: sqlx::PgPool) {
    let mut app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    app.state.websocket.keep_alive = Duration::from_millis(200);
    let address = app.serve().await;
    let mut socket = initialised(&app, address).await;
    // The server's keep-alive ping.
    let ping = next_raw(&mut socket).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(ping, json!({"type": "ping"}));
    send(&mut socket, json!({"type": "pong"})).await;
    // A client's ping is answered with a pong carrying its payload.
    send(&mut socket, json!({"type": "ping", "payload": {"at": 1}})).await;
    loop {
        let message = next_raw(&mut socket).await.unwrap_or_else(|e| panic!("{e:?}"));
        if message["type"] == "pong" {
            assert_eq!(message["payload"], json!({"at": 1}));
            break;
        }
        assert_eq!(message["type"], "ping", "{message}");
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_legacy_graphql_ws_protocol_is_still_served(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    let address = app.serve().await;
    let mut socket = connect(address, Some("graphql-ws")).await;
    let token = app.token("acme", Role::Integrator);
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "connection_ack");
    send(
        &mut socket,
        json!({"id": "1", "type": "start", "payload": {"query": "{ viewer { tenantId } }"}}),
    )
    .await;
    loop {
        let message = next(&mut socket).await;
        if message["type"] == "ka" {
            continue;
        }
        assert_eq!(message["type"], "data", "{message}");
        assert_eq!(message["payload"]["data"]["viewer"]["tenantId"], "acme");
        break;
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_id_used_again_after_complete_gets_only_its_new_operations_messages(pool: sqlx::PgPool) {
    let app = TestApp::new(pool).await;
    app.tenant_with_number("acme", "15550001111").await;
    // History for the events subscription to stream: one delivery of 30 messages.
    let now = chrono::Utc::now().timestamp();
    let messages = (0..30)
        .map(|i| {
            chronicle_tests::text_message(
                "263771000001",
                &chronicle_tests::wamid("263771000001", i),
                now - 60 + i64::from(i),
                "hello",
            )
        })
        .collect();
    app.post_delivery(&chronicle_tests::delivery(
        "15550001111",
        &[("263771000001", "Tendai")],
        messages,
        vec![],
    ))
    .await;
    app.drain().await;
    let address = app.serve().await;
    for round in 0..5 {
        let mut socket = initialised(&app, address).await;
        // Start the history, stop it at once, and run a query under the same id.
        send(
            &mut socket,
            json!({"id": "r", "type": "subscribe", "payload": {"query": EVENTS}}),
        )
        .await;
        send(&mut socket, json!({"id": "r", "type": "complete"})).await;
        send(
            &mut socket,
            json!({"id": "r", "type": "subscribe", "payload": {"query": "{ viewer { tenantId } }"}}),
        )
        .await;
        // Events of the first run may arrive until the server reads its `complete`; once the
        // second run has answered, the first run's leftovers must not follow, nor end it.
        let mut answered = false;
        loop {
            let message = next(&mut socket).await;
            assert_eq!(message["id"], "r", "round {round}: {message}");
            match message["type"].as_str() {
                Some("next") if message["payload"]["data"]["events"].is_object() => {
                    assert!(
                        !answered,
                        "round {round}: the completed run's event came after the new run's answer: {message}"
                    );
                }
                Some("next") => {
                    assert_eq!(message["payload"]["data"]["viewer"]["tenantId"], "acme", "{message}");
                    answered = true;
                }
                Some("complete") => {
                    assert!(answered, "round {round}: the new run was completed before it answered");
                    break;
                }
                _ => panic!("round {round}: {message}"),
            }
        }
    }
}
