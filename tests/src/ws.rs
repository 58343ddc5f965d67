//! A GraphQL-over-WebSocket client for tests (`graphql-transport-ws`), over TCP or over an
//! in-memory pipe whose buffer the test chooses ([`connect_piped`]).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A WebSocket over TCP.
pub type TcpSocket = WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The request of `/graphql/ws` at `url`, offering `protocol`.
fn upgrade_request(url: &str, protocol: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = url.into_client_request().unwrap_or_else(|e| panic!("{e}"));
    request.headers_mut().insert(
        "sec-websocket-protocol",
        protocol.parse().unwrap_or_else(|e| panic!("{e}")),
    );
    request
}

/// Opens `/graphql/ws` of the app served at `base` (`http://…`) over TCP, offering
/// `protocol`; sends nothing.
pub async fn open(base: &str, protocol: &str) -> TcpSocket {
    let url = format!("{}/graphql/ws", base.replace("http://", "ws://"));
    let (socket, _) = tokio_tungstenite::connect_async(upgrade_request(&url, protocol))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    socket
}

/// Opens `/graphql/ws` of the app served at `base` (`http://…`) over TCP with
/// `graphql-transport-ws` and sends `connection_init` with `credential`.
pub async fn connect(base: &str, credential: &str) -> TcpSocket {
    let mut socket = open(base, crate::ws_protocol()).await;
    init(&mut socket, credential).await;
    socket
}

/// Serves `router` on one connection over an in-memory pipe of `capacity` bytes each way (no
/// kernel socket buffers: a client that stops reading holds the server back after exactly
/// that much), opens `/graphql/ws` on it and sends `connection_init` with `credential`.
pub async fn connect_piped(
    router: axum::Router,
    capacity: usize,
    credential: &str,
) -> WebSocketStream<tokio::io::DuplexStream> {
    let (client, server) = tokio::io::duplex(capacity);
    tokio::spawn(async move {
        let service = hyper_util::service::TowerToHyperService::new(router);
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(server), service)
            .with_upgrades()
            .await;
    });
    let (mut socket, _) = tokio_tungstenite::client_async(
        upgrade_request("ws://localhost/graphql/ws", crate::ws_protocol()),
        client,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    init(&mut socket, credential).await;
    socket
}

/// Sends `connection_init` with `credential` (both protocols' form).
pub async fn init<S: AsyncRead + AsyncWrite + Unpin>(socket: &mut WebSocketStream<S>, credential: &str) {
    send(
        socket,
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {credential}")}}),
    )
    .await;
}

/// Sends one protocol message.
pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(socket: &mut WebSocketStream<S>, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The next message that is not a keep-alive (`ping`, `pong`; the legacy protocol's `ka`),
/// within 20 s.
pub async fn next<S: AsyncRead + AsyncWrite + Unpin>(socket: &mut WebSocketStream<S>) -> Value {
    loop {
        let message = match tokio::time::timeout(Duration::from_secs(20), socket.next()).await {
            Err(_) => panic!("no message within 20 s"),
            Ok(None) => panic!("the connection ended"),
            Ok(Some(Err(e))) => panic!("{e}"),
            Ok(Some(Ok(message))) => message,
        };
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap_or_default();
            if !matches!(value["type"].as_str(), Some("ping" | "pong" | "ka")) {
                return value;
            }
        }
    }
}

/// Waits for `connection_ack`.
pub async fn ack<S: AsyncRead + AsyncWrite + Unpin>(socket: &mut WebSocketStream<S>) {
    let message = next(socket).await;
    assert_eq!(message["type"], "connection_ack", "{message}");
}

/// Starts the `events` subscription `id` after `after`, of `types` (all when `None`),
/// selecting `fields`.
pub async fn subscribe_events<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut WebSocketStream<S>,
    id: &str,
    after: Option<&str>,
    types: Option<&[&str]>,
    fields: &str,
) {
    let query = format!(
        "subscription($after: String, $types: [String!]) {{ events(after: $after, types: $types) {{ {fields} }} }}"
    );
    send(
        socket,
        json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": {"after": after, "types": types}}}),
    )
    .await;
}
