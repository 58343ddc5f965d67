//! GraphiQL on `GET /graphql`, with its scripts and styles served from the binary under
//! `/graphql/assets/` (see `api/assets/graphiql/README.md`), so the page works on a machine
//! whose only network is this server. In development mode with `--demo` the headers editor
//! starts with the demo tenant's token.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::AppState;

const PAGE: &str = include_str!("../../assets/graphiql/index.html");

/// The files under `/graphql/assets/`: name, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/graphiql/graphiql.min.css"),
    ),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/react-dom.production.min.js"),
    ),
];

/// The query the editor opens with.
const OPENING_QUERY: &str = "# Chronicle's GraphQL API. The Docs button (top left) lists every query and mutation.
{
  viewer { tenantId userId role }
  conversations(first: 5) {
    edges { node { contactName unreadCount lastMessage { kind text at } } }
  }
}
";

pub fn router() -> Router<AppState> {
    Router::new().route("/graphql/assets/{name}", get(asset))
}

pub async fn page(State(state): State<AppState>) -> Response {
    let token = state
        .graphiql_token
        .as_deref()
        .unwrap_or("<a token from `chronicle admin mint-token`>");
    let headers = serde_json::to_string_pretty(&serde_json::json!({ "Authorization": format!("Bearer {token}") }))
        .unwrap_or_default();
    let config = serde_json::json!({ "headers": headers, "query": OPENING_QUERY });
    // JSON inside a <script>: `<` escaped so no value can close the element.
    let config = config.to_string().replace('<', "\\u003c");
    let mut response = Html(PAGE.replace("/*CHRONICLE_CONFIG*/{}", &config)).into_response();
    // The page may hold a token: never cached.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such GraphiQL asset").into_response(),
    }
}
