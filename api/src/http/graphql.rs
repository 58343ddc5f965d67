//! GraphQL over HTTP (`POST /graphql`, GraphiQL on `GET /graphql`) and over WebSocket
//! (`/graphql/ws`: `graphql-transport-ws` and the legacy `graphql-ws`). Every operation needs an
//! access token: the `Authorization: Bearer` header, or for WebSockets the `connection_init`
//! payload's `Authorization` (or `token`) field. The caller it names is the request's data.

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Data, Executor};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::{FromRequestParts, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use tracing::Instrument;

use super::CorrelationId;
use crate::app::AppState;
use crate::auth::{bearer, verify, Caller};
use crate::error::ApiError;
use crate::graphql::consistency::Consistency;
use crate::graphql::limits::{refused, Limited};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/graphql", get(super::graphiql::page).post(execute))
        .route("/graphql/ws", get(subscriptions))
}

fn caller_from_headers(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::Unauthenticated("an access token is required (Authorization: Bearer <token>)".into())
        })?;
    let token = bearer(header)
        .ok_or_else(|| ApiError::Unauthenticated("the Authorization header is not a Bearer token".into()))?;
    verify(state.jwt_secret.expose(), token)
}

/// The authenticated caller, extracted from the headers before anything reads the body, so
/// an anonymous request is refused without its body being buffered.
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        caller_from_headers(state, &parts.headers).map(Authenticated)
    }
}

async fn execute(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let span = tracing::info_span!("graphql", tenant.id = %caller.tenant, user.id = %caller.user_id, correlation.id = %correlation.0);
    let mut request = request.into_inner().data(caller).data(correlation);
    // The consistency headers, unless the request's own extensions ask already.
    match Consistency::from_headers(&headers) {
        Ok(Some(c)) if !request.extensions.0.contains_key("consistency") => {
            request.extensions.0.insert("consistency".into(), c.to_value());
        }
        Ok(_) => {}
        Err(e) => return GraphQLResponse::from(refused(e)).into_response(),
    }
    let executor = Limited(state.schema.clone(), state.pool.clone());
    GraphQLResponse::from(executor.execute(request).instrument(span).await).into_response()
}

fn token_from_init(payload: &serde_json::Value) -> Option<String> {
    let field = |name: &str| payload.get(name).and_then(|v| v.as_str()).map(str::to_string);
    field("Authorization")
        .or_else(|| field("authorization"))
        .map(|h| bearer(&h).map(str::to_string).unwrap_or(h))
        .or_else(|| field("token"))
        .or_else(|| payload.get("headers").and_then(token_from_init_headers))
}

fn token_from_init_headers(headers: &serde_json::Value) -> Option<String> {
    let header = headers
        .get("Authorization")
        .or_else(|| headers.get("authorization"))?
        .as_str()?;
    Some(bearer(header).unwrap_or(header).to_string())
}

async fn subscriptions(
    State(state): State<AppState>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    // A token in the upgrade request's headers is accepted too (non-browser clients).
    let header_caller = caller_from_headers(&state, &headers).ok();
    let schema = Limited(state.schema.clone(), state.pool.clone());
    let secret = state.jwt_secret.clone();
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |stream| {
        GraphQLWebSocket::new(stream, schema, protocol)
            .on_connection_init(move |payload| async move {
                let caller = match token_from_init(&payload) {
                    Some(token) => {
                        verify(secret.expose(), &token).map_err(|e| async_graphql::Error::new(e.to_string()))?
                    }
                    None => header_caller.ok_or_else(|| {
                        async_graphql::Error::new(
                            "an access token is required in the connection_init payload (Authorization)",
                        )
                    })?,
                };
                let mut data = Data::default();
                data.insert(caller);
                Ok(data)
            })
            .serve()
    })
}
