//! GraphiQL on `GET /graphql`, with its scripts and styles served from the binary under
//! `/graphql/assets/` (see `api/assets/graphiql/README.md`), so the page works on a machine
//! whose only network is this server. In development mode with `--demo` the headers editor
//! starts with the demo tenant's token, when the page is asked for by a loopback name.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
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

/// Whether the request names this machine by a loopback name (`localhost`, `127.0.0.1`,
/// `[::1]`, any port): the demo token is put in the page only then, so a page another host
/// serves (DNS rebinding) or a neighbour on the network (a non-loopback bind) never gets it.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1")
}

pub async fn page(State(state): State<AppState>, request_headers: HeaderMap) -> Response {
    let token = state
        .graphiql_token
        .as_deref()
        .filter(|_| loopback_host(&request_headers))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(header::HOST, v);
        }
        headers
    }

    #[test]
    fn the_demo_token_goes_only_to_pages_asked_for_by_a_loopback_name() {
        for loopback in [
            "localhost:8080",
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]:8080",
            "localhost",
        ] {
            assert!(loopback_host(&host(loopback)), "{loopback}");
        }
        for other in [
            "evil.example:8080",
            "192.168.1.20:8080",
            "localhost.evil.example",
            "[fe80::1]:80",
            "",
        ] {
            assert!(!loopback_host(&host(other)), "{other}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }
}
