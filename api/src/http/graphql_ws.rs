//! GraphQL over WebSocket on `/graphql/ws`.
//!
//! The `graphql-transport-ws` subprotocol (the protocol of the `graphql-ws` library, which
//! Apollo, urql and the other current clients speak) is served here, by its specification:
//!
//! - the client sends `connection_init` first, with its token in the payload's
//!   `Authorization` (`Bearer …` or the bare token), `authorization`, `token` or
//!   `headers.Authorization` (or in the upgrade request's `Authorization` header); the server
//!   answers `connection_ack`, or closes with **4403** when the token is missing or refused;
//! - no `connection_init` within [`WebSocketSettings::init_timeout`]: close **4408**; a second
//!   `connection_init`: close **4429**; a `subscribe` before the acknowledgement: close
//!   **4401**; a `subscribe` whose id is running already: close **4409**; a message that is not
//!   JSON text of a known type with the fields its type requires: close **4400**;
//! - each operation answers `next` messages then `complete`; a request that fails before it
//!   runs (the document does not parse or validate, its variables do not coerce, a limit or a
//!   consistency requirement refuses it) answers one `error` message with the errors, and no
//!   `complete`; a client's `complete` stops an operation;
//! - at most [`WebSocketSettings::max_subscriptions`] operations run at once on one connection:
//!   one more is answered an `error` with code `TOO_MANY_SUBSCRIPTIONS` (the connection stays
//!   open);
//! - the server sends a `ping` every [`WebSocketSettings::keep_alive`] and answers each `ping`
//!   with a `pong`.
//!
//! The legacy `graphql-ws` subprotocol (subscriptions-transport-ws) is still served, by
//! async-graphql's implementation; an API key is checked again before each of its operations
//! too (a revoked or expired key's operation answers `UNAUTHENTICATED`). A client offering
//! neither is closed with 4406.

use std::collections::HashMap;
use std::time::Duration;

use async_graphql::{Data, Executor};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::Instrument;

use super::graphql::{caller_from_headers, code_request_errors, is_request_error, Params};
use super::CorrelationId;
use crate::app::AppState;
use crate::auth::{bearer, Caller};
use crate::error::ApiError;
use crate::graphql::limits::{refused, Limited};

/// The current subprotocol.
pub const TRANSPORT_WS: &str = "graphql-transport-ws";
/// The legacy subprotocol (subscriptions-transport-ws).
pub const LEGACY_WS: &str = "graphql-ws";

/// How WebSocket connections are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSocketSettings {
    /// How long a connection may go without `connection_init` (then 4408).
    pub init_timeout: Duration,
    /// How often the server pings.
    pub keep_alive: Duration,
    /// The most operations one connection runs at once.
    pub max_subscriptions: usize,
    /// How far a live subscription may fall behind the log, in events (the live log's
    /// fan-out)...
    pub subscriber_buffer: usize,
    /// ...and for how long, before it is closed with `SUBSCRIBER_TOO_SLOW`.
    pub subscriber_grace: Duration,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            init_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(15),
            max_subscriptions: 100,
            subscriber_buffer: chronicle_projections::live::FAN_OUT_BUFFER,
            subscriber_grace: chronicle_projections::live::SLOW_GRACE,
        }
    }
}

/// `GET /graphql/ws`: the upgrade, then the subprotocol the client offered.
pub async fn upgrade(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    legacy: Result<GraphQLProtocol, StatusCode>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // A token in the upgrade request's headers is accepted too (non-browser clients).
    let header_caller = caller_from_headers(&state, &headers).await.ok();
    let connection = Connection {
        executor: Limited(state.schema.clone(), state.pool.clone()),
        state: state.clone(),
        header_caller,
        correlation,
        settings: state.websocket,
    };
    upgrade
        .max_message_size(super::MAX_BODY_BYTES)
        .protocols([TRANSPORT_WS, LEGACY_WS])
        .on_upgrade(move |socket| async move {
            let protocol = socket.protocol().and_then(|p| p.to_str().ok()).map(str::to_string);
            match (protocol.as_deref(), legacy) {
                (Some(TRANSPORT_WS), _) => connection.serve(socket).await,
                (Some(LEGACY_WS), Ok(legacy)) => connection.serve_legacy(socket, legacy).await,
                _ => {
                    close(
                        socket,
                        4406,
                        "Subprotocol not acceptable (graphql-transport-ws or graphql-ws)",
                    )
                    .await;
                }
            }
        })
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: close_reason(reason).into(),
        })))
        .await
        .ok();
}

/// A close frame's reason is at most 123 bytes.
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

/// What a connection needs.
struct Connection {
    executor: Limited,
    /// What credentials in `connection_init` are checked against.
    state: AppState,
    header_caller: Option<Caller>,
    correlation: CorrelationId,
    settings: WebSocketSettings,
}

/// A message of the client, by the protocol.
#[derive(Debug, PartialEq)]
enum ClientMessage {
    ConnectionInit(Value),
    Ping(Option<Value>),
    Pong,
    Subscribe { id: String, payload: Value },
    Complete { id: String },
}

impl ClientMessage {
    /// Parses a text frame; `Err` is the 4400 close reason.
    fn parse(text: &str) -> Result<Self, String> {
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(text) else {
            return Err("Invalid message received: not a JSON object".into());
        };
        let id = |message: &mut serde_json::Map<String, Value>| match message.remove("id") {
            Some(Value::String(id)) if !id.is_empty() => Ok(id),
            _ => Err("Invalid message received: \"id\" must be a non-empty string".to_string()),
        };
        let object_or_null = |value: Option<Value>, what: &str| match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Value::Object(map))),
            Some(_) => Err(format!(
                "Invalid message received: the {what} payload must be an object"
            )),
        };
        match message.get("type").and_then(Value::as_str) {
            Some("connection_init") => Ok(Self::ConnectionInit(
                object_or_null(message.remove("payload"), "connection_init")?.unwrap_or(json!({})),
            )),
            Some("ping") => Ok(Self::Ping(object_or_null(message.remove("payload"), "ping")?)),
            Some("pong") => Ok(Self::Pong),
            Some("subscribe") => {
                let id = id(&mut message)?;
                match message.remove("payload") {
                    Some(payload @ Value::Object(_)) => Ok(Self::Subscribe { id, payload }),
                    _ => Err("Invalid message received: subscribe needs an object payload".into()),
                }
            }
            Some("complete") => Ok(Self::Complete { id: id(&mut message)? }),
            Some(other) => Err(close_reason(&format!(
                "Invalid message received: unexpected type \"{other}\""
            ))),
            None => Err("Invalid message received: no \"type\"".into()),
        }
    }
}

/// One run of an operation: its id and a number no other run of the connection has, so what
/// a completed run left in the channel is never taken for a later run with the same id.
type Run = (String, u64);

/// What an operation's task hands the connection to send.
enum Out {
    /// A `next` message of the run.
    Next(Run, String),
    /// The `error` message that ends the run.
    Error(Run, String),
    /// The run is done: `complete`.
    Done(Run),
}

/// How long one message may take to reach a client before the connection is dropped (a client
/// that stopped reading must not hold the connection and its operations).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one message; `false` when the client is gone or did not take it in time.
async fn send<S>(sink: &mut S, message: Message) -> bool
where
    S: futures::Sink<Message> + Unpin,
{
    matches!(tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await, Ok(Ok(())))
}

fn token_from_init(payload: &Value) -> Option<String> {
    let field = |name: &str| payload.get(name).and_then(Value::as_str).map(str::to_string);
    field("Authorization")
        .or_else(|| field("authorization"))
        .map(|h| bearer(&h).map(str::to_string).unwrap_or(h))
        .or_else(|| field("token"))
        .or_else(|| payload.get("headers").and_then(token_from_init_headers))
}

fn token_from_init_headers(headers: &Value) -> Option<String> {
    let header = headers
        .get("Authorization")
        .or_else(|| headers.get("authorization"))?
        .as_str()?;
    Some(bearer(header).unwrap_or(header).to_string())
}

/// The caller a `connection_init` payload names (or the upgrade request's header did).
async fn authenticate(state: &AppState, header_caller: Option<&Caller>, payload: &Value) -> Result<Caller, ApiError> {
    match token_from_init(payload) {
        Some(token) => super::graphql::authenticate(state, &token).await,
        None => header_caller.cloned().ok_or_else(|| {
            ApiError::Unauthenticated(
                "an access token is required in the connection_init payload (Authorization)".into(),
            )
        }),
    }
}

impl Connection {
    /// Serves `graphql-transport-ws` until either side closes.
    async fn serve(self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let (tx, mut rx) = mpsc::channel::<Out>(64);
        let mut caller: Option<Caller> = None;
        let mut initialised = false;
        let init_deadline = tokio::time::sleep(self.settings.init_timeout);
        tokio::pin!(init_deadline);
        let period = self.settings.keep_alive.max(Duration::from_millis(100));
        let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut running: HashMap<String, (u64, AbortHandle)> = HashMap::new();
        let mut runs: u64 = 0;
        // Whether the run is the one running under its id.
        let current =
            |running: &HashMap<String, (u64, AbortHandle)>, (id, n): &Run| running.get(id).is_some_and(|(m, _)| m == n);
        let text = |value: Value| Message::Text(value.to_string().into());
        let close: Option<(u16, String)> = loop {
            tokio::select! {
                () = &mut init_deadline, if !initialised => {
                    break Some((4408, "Connection initialisation timeout".into()));
                }
                _ = keep_alive.tick() => {
                    if !send(&mut sink, text(json!({"type": "ping"}))).await {
                        break None;
                    }
                }
                Some(out) = rx.recv() => {
                    let message = match out {
                        Out::Next(run, message) => current(&running, &run).then_some(message),
                        Out::Error(run, message) => current(&running, &run).then(|| {
                            running.remove(&run.0);
                            message
                        }),
                        Out::Done(run) => current(&running, &run).then(|| {
                            running.remove(&run.0);
                            json!({"id": run.0, "type": "complete"}).to_string()
                        }),
                    };
                    if let Some(message) = message {
                        if !send(&mut sink, Message::Text(message.into())).await {
                            break None;
                        }
                    }
                }
                message = stream.next() => {
                    let frame = match message {
                        Some(Ok(Message::Text(frame))) => frame,
                        Some(Ok(Message::Binary(_))) => {
                            break Some((4400, "Invalid message received: messages are JSON text".into()));
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
                    };
                    let message = match ClientMessage::parse(frame.as_str()) {
                        Ok(message) => message,
                        Err(reason) => break Some((4400, reason)),
                    };
                    match message {
                        ClientMessage::ConnectionInit(payload) => {
                            if initialised {
                                break Some((4429, "Too many initialisation requests".into()));
                            }
                            initialised = true;
                            match authenticate(&self.state, self.header_caller.as_ref(), &payload).await {
                                Ok(who) => caller = Some(who),
                                Err(e) => break Some((4403, format!("Forbidden: {e}"))),
                            }
                            if !send(&mut sink, text(json!({"type": "connection_ack"}))).await {
                                break None;
                            }
                        }
                        ClientMessage::Ping(payload) => {
                            let pong = match payload {
                                Some(payload) => json!({"type": "pong", "payload": payload}),
                                None => json!({"type": "pong"}),
                            };
                            if !send(&mut sink, text(pong)).await {
                                break None;
                            }
                        }
                        ClientMessage::Pong => {}
                        ClientMessage::Subscribe { id, payload } => {
                            let Some(caller) = &caller else {
                                break Some((4401, "Unauthorized".into()));
                            };
                            // An API key is checked again at each operation: one revoked (or
                            // expired) since connection_init ends the connection.
                            if let Some(key) = &caller.key {
                                match chronicle_commands::api_keys::refusal_at(
                                    &self.state.pool,
                                    &key.key_id,
                                    chrono::Utc::now(),
                                )
                                .await
                                {
                                    Ok(None) => {}
                                    Ok(Some(refusal)) => break Some((4403, close_reason(&format!("Forbidden: {refusal}")))),
                                    Err(_) => break Some((4403, "Forbidden: the API key could not be checked".into())),
                                }
                            }
                            if running.contains_key(&id) {
                                break Some((4409, close_reason(&format!("Subscriber for {id} already exists"))));
                            }
                            let params = match Params::from_json(payload) {
                                Ok(params) => params,
                                Err(e) => break Some((4400, close_reason(&format!("Invalid message received: {e}")))),
                            };
                            if running.len() >= self.settings.max_subscriptions {
                                let error = ApiError::bad_request(
                                    "TOO_MANY_SUBSCRIPTIONS",
                                    format!(
                                        "at most {} operations run at once on one connection: complete one first",
                                        self.settings.max_subscriptions
                                    ),
                                );
                                let message = json!({"id": id, "type": "error", "payload": refused(error).errors});
                                if !send(&mut sink, text(message)).await {
                                    break None;
                                }
                                continue;
                            }
                            runs += 1;
                            let task = tokio::spawn(operation(
                                (id.clone(), runs),
                                params,
                                caller.clone(),
                                self.correlation.clone(),
                                self.executor.clone(),
                                tx.clone(),
                            ));
                            running.insert(id, (runs, task.abort_handle()));
                        }
                        ClientMessage::Complete { id } => {
                            if let Some((_, task)) = running.remove(&id) {
                                task.abort();
                            }
                        }
                    }
                }
            }
        };
        for (_, task) in running.values() {
            task.abort();
        }
        if let Some((code, reason)) = close {
            send(
                &mut sink,
                Message::Close(Some(CloseFrame {
                    code,
                    reason: close_reason(&reason).into(),
                })),
            )
            .await;
        }
    }

    /// Serves the legacy `graphql-ws` subprotocol (async-graphql's implementation).
    async fn serve_legacy(self, socket: WebSocket, protocol: GraphQLProtocol) {
        let Connection {
            executor,
            state,
            header_caller,
            ..
        } = self;
        GraphQLWebSocket::new(socket, KeyChecked(executor), protocol)
            .on_connection_init(move |payload| async move {
                let caller = authenticate(&state, header_caller.as_ref(), &payload)
                    .await
                    .map_err(|e| async_graphql::Error::new(e.to_string()))?;
                let mut data = Data::default();
                data.insert(caller);
                Ok(data)
            })
            .serve()
            .await;
    }
}

/// The legacy protocol's executor: an API key is checked again before each operation, as the
/// current protocol does at each `subscribe`. An operation of a key revoked (or expired) since
/// `connection_init` answers `UNAUTHENTICATED` and runs nothing.
#[derive(Clone)]
struct KeyChecked(Limited);

impl Executor for KeyChecked {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        self.0.execute(request).await
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<std::sync::Arc<Data>>,
    ) -> futures::stream::BoxStream<'static, async_graphql::Response> {
        let key = session_data
            .as_ref()
            .and_then(|data| data.get(&std::any::TypeId::of::<Caller>()))
            .and_then(|caller| caller.downcast_ref::<Caller>())
            .and_then(|caller| caller.key.clone());
        let Some(key) = key else {
            return self.0.execute_stream(request, session_data);
        };
        let executor = self.0.clone();
        futures::stream::once(async move {
            let refusal =
                match chronicle_commands::api_keys::refusal_at(&executor.1, &key.key_id, chrono::Utc::now()).await {
                    Ok(refusal) => refusal.map(|r| r.to_string()),
                    Err(_) => Some("the API key could not be checked".to_string()),
                };
            (executor, request, refusal)
        })
        .flat_map(move |(executor, request, refusal)| match refusal {
            None => executor.execute_stream(request, session_data.clone()),
            Some(why) => futures::stream::once(async move { refused(ApiError::Unauthenticated(why)) }).boxed(),
        })
        .boxed()
    }
}

/// Runs one operation, handing its messages to the connection.
async fn operation(
    run: Run,
    params: Params,
    caller: Caller,
    correlation: CorrelationId,
    executor: Limited,
    tx: mpsc::Sender<Out>,
) {
    let id = run.0.clone();
    let span = tracing::info_span!("graphql.ws", tenant.id = %caller.tenant, user.id = %caller.user_id, correlation.id = %correlation.0, operation.id = %id);
    async move {
        let mut request = match params.into_request() {
            Ok(request) => request.data(caller).data(correlation),
            Err(e) => {
                let message = json!({"id": id, "type": "error", "payload": refused(e).errors});
                tx.send(Out::Error(run, message.to_string())).await.ok();
                return;
            }
        };
        let parsed = request.parsed_query().is_ok();
        let mut responses = executor.execute_stream(request, None);
        let mut first = true;
        while let Some(mut response) = responses.next().await {
            if first && is_request_error(&response) {
                code_request_errors(&mut response, parsed);
                let message = json!({"id": id, "type": "error", "payload": response.errors});
                tx.send(Out::Error(run, message.to_string())).await.ok();
                return;
            }
            first = false;
            let message = json!({"id": id, "type": "next", "payload": response});
            if tx.send(Out::Next(run.clone(), message.to_string())).await.is_err() {
                return;
            }
        }
        tx.send(Out::Done(run)).await.ok();
    }
    .instrument(span)
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_by_the_protocol() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"connection_init"}"#),
            Ok(ClientMessage::ConnectionInit(json!({})))
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"subscribe","id":"1","payload":{"query":"{a}"}}"#),
            Ok(ClientMessage::Subscribe {
                id: "1".into(),
                payload: json!({"query": "{a}"})
            })
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"pong","payload":{}}"#),
            Ok(ClientMessage::Pong)
        );
        for bad in [
            "not json",
            "[]",
            r#"{"type":"subscribe","payload":{"query":"{a}"}}"#,
            r#"{"type":"subscribe","id":"1"}"#,
            r#"{"type":"complete"}"#,
            r#"{"type":"connection_init","payload":"x"}"#,
            r#"{"type":"next","id":"1","payload":{}}"#,
            r#"{"id":"1"}"#,
        ] {
            let refused = ClientMessage::parse(bad);
            assert!(refused.as_ref().is_err_and(|r| r.len() <= 123), "{bad}: {refused:?}");
        }
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let long = "é".repeat(100);
        let reason = close_reason(&long);
        assert!(reason.len() <= 123);
        assert!(long.starts_with(&reason));
    }
}
