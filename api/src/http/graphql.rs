//! GraphQL over HTTP, by the GraphQL Foundation's GraphQL-over-HTTP specification (draft), on
//! `/graphql`; GraphiQL on `GET /graphql` without a query (unless `Accept` names a GraphQL
//! response type); subscriptions over
//! WebSocket on `/graphql/ws` ([`super::graphql_ws`]).
//!
//! - **Requests**: `POST` with a JSON body (`Content-Type: application/json`, UTF-8) of
//!   `query`, and optionally `operationName`, `variables` and `extensions`; or `GET` with the
//!   same as URL parameters (`variables` and `extensions` JSON-encoded), for queries only: a
//!   mutation over GET is answered 405 with `Allow: POST`. A file upload (`uploadMedia`) is a
//!   `multipart/form-data` POST by the GraphQL multipart request specification (`operations`,
//!   `map`, one file), within [`MAX_UPLOAD_BODY_BYTES`]. Any other content type is 415; a JSON
//!   body over [`MAX_GRAPHQL_BODY_BYTES`] is 413.
//! - **Responses**: `application/graphql-response+json` or `application/json`, whichever the
//!   `Accept` header prefers (`*/*` and no `Accept` at all: `application/json`; neither
//!   acceptable: 406). With `application/json` every GraphQL response is 200, request errors
//!   included. With `application/graphql-response+json` a request that fails before it runs
//!   (body not JSON, parameters of the wrong type, a document that does not parse or validate,
//!   variables that do not coerce, a refused consistency requirement) is 400 (503 for
//!   `CONSISTENCY_TIMEOUT`) and has no `data` entry; one that ran is 200.
//! - **Errors** are always GraphQL's `{"errors": [{"message", "extensions": {"code"}}]}`,
//!   authentication failures included (401 with `WWW-Authenticate: Bearer`), whatever the
//!   status.
//!
//! Every operation needs an access token in `Authorization: Bearer <token>`; the caller it
//! names is the request's data.

use async_graphql::parser::types::OperationType;
use async_graphql::Executor;
use axum::body::Body;
use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures::FutureExt;
use http_body_util::BodyExt;
use serde_json::{Map, Value};
use tracing::Instrument;

use super::CorrelationId;
use crate::app::AppState;
use crate::auth::{bearer, verify, Caller};
use crate::error::ApiError;
use crate::graphql::consistency::Consistency;
use crate::graphql::limits::{refused, Limited};

/// The largest GraphQL request body.
pub const MAX_GRAPHQL_BODY_BYTES: usize = super::MAX_BODY_BYTES;

/// The largest multipart (upload) request body: the largest file and 1 MiB for the rest.
pub const MAX_UPLOAD_BODY_BYTES: usize = chronicle_commands::outbound::media::UPLOAD_MAX_BYTES + 1024 * 1024;

/// The media type of the GraphQL-over-HTTP specification.
pub const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/graphql", get(get_graphql).post(post_graphql).fallback(other_method))
        .route("/graphql/ws", get(super::graphql_ws::upgrade))
}

/// The media type a response is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `application/graphql-response+json`: request errors are 4xx and have no `data`.
    GraphqlResponse,
    /// `application/json`: every GraphQL response is 200.
    Json,
}

impl Media {
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Media::Json => "application/json; charset=utf-8",
        })
    }
}

/// The media type to answer in, from the `Accept` header (RFC 9110: each media type takes the
/// quality of the most specific range that matches it). `application/graphql-response+json`
/// must be named; `application/json` is also matched by `application/*` and `*/*`. The one of
/// higher quality wins; at equal quality, the one named by the more specific range, then
/// `application/graphql-response+json`. No `Accept`: `application/json`; neither acceptable
/// (quality 0, or not matched): `None`.
pub fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let ranges: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    if ranges.is_empty() {
        return Some(Media::Json);
    }
    // Per media type: (specificity, quality) of the most specific matching range.
    let mut graphql_response: Option<(u8, u16)> = None;
    let mut json: Option<(u8, u16)> = None;
    for range in ranges {
        let mut parts = range.split(';');
        let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1000, |(_, v)| quality(v.trim()));
        let (slot, specificity) = match essence.as_str() {
            GRAPHQL_RESPONSE_JSON => (&mut graphql_response, 3),
            "application/json" => (&mut json, 3),
            "application/*" => (&mut json, 2),
            "*/*" => (&mut json, 1),
            _ => continue,
        };
        if slot.is_none_or(|(s, _)| specificity > s) {
            *slot = Some((specificity, quality));
        }
    }
    let candidates = [(graphql_response, Media::GraphqlResponse, 1), (json, Media::Json, 0)];
    candidates
        .into_iter()
        .filter_map(|(found, media, preference)| found.map(|(s, q)| (q, s, preference, media)))
        .filter(|(q, ..)| *q > 0)
        .max_by_key(|(q, s, preference, _)| (*q, *s, *preference))
        .map(|(.., media)| media)
}

/// A `q` parameter in thousandths (RFC 9110: at most three decimals, 0 to 1); unreadable: 1.
fn quality(text: &str) -> u16 {
    match text.parse::<f64>() {
        Ok(q) if (0.0..=1.0).contains(&q) => (q * 1000.0).round() as u16,
        _ => 1000,
    }
}

/// The parameters of a GraphQL-over-HTTP request, checked for their JSON types.
#[derive(Debug, Default, PartialEq)]
pub struct Params {
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: Option<Map<String, Value>>,
    pub extensions: Option<Map<String, Value>>,
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("BAD_REQUEST", message)
}

impl Params {
    /// From a POST body's JSON: an object with a string `query`; `operationName` a string,
    /// `variables` and `extensions` objects, each may be null or absent. Other keys are ignored.
    pub fn from_json(body: Value) -> Result<Self, ApiError> {
        let Value::Object(mut body) = body else {
            return Err(bad_request(
                "the request body must be a JSON object with a \"query\" (batches are not accepted)",
            ));
        };
        let query = match body.remove("query") {
            Some(Value::String(query)) => query,
            None | Some(Value::Null) => return Err(bad_request("the request has no \"query\"")),
            Some(other) => {
                return Err(bad_request(format!(
                    "\"query\" must be a string, not {}",
                    json_type(&other)
                )))
            }
        };
        let operation_name = match body.remove("operationName") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(name),
            Some(other) => {
                return Err(bad_request(format!(
                    "\"operationName\" must be a string or null, not {}",
                    json_type(&other)
                )))
            }
        };
        Ok(Params {
            query,
            operation_name,
            variables: map_param(body.remove("variables"), "variables")?,
            extensions: map_param(body.remove("extensions"), "extensions")?,
        })
    }

    /// From a GET request's URL parameters: `query`, `operationName`, and `variables` and
    /// `extensions` as JSON text.
    pub fn from_url(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
            .map_err(|_| bad_request("the URL's parameters are not form-encoded"))?;
        let mut body = Map::new();
        for (key, value) in pairs {
            let value = match key.as_str() {
                "query" | "operationName" => Value::String(value),
                "variables" | "extensions" if value.is_empty() => Value::Null,
                "variables" | "extensions" => serde_json::from_str(&value)
                    .map_err(|_| bad_request(format!("the \"{key}\" parameter is not JSON")))?,
                _ => continue,
            };
            if body.insert(key.clone(), value).is_some() {
                return Err(bad_request(format!("the \"{key}\" parameter is given twice")));
            }
        }
        Self::from_json(Value::Object(body))
    }

    /// The request async-graphql executes.
    pub(crate) fn into_request(self) -> Result<async_graphql::Request, ApiError> {
        let mut request = async_graphql::Request::new(self.query);
        if let Some(name) = self.operation_name {
            request = request.operation_name(name);
        }
        if let Some(variables) = self.variables {
            request = request.variables(async_graphql::Variables::from_json(Value::Object(variables)));
        }
        for (name, value) in self.extensions.unwrap_or_default() {
            let value = async_graphql::Value::from_json(value)
                .map_err(|_| bad_request(format!("the extension {name:?} is not a GraphQL value")))?;
            request.extensions.0.insert(name, value);
        }
        Ok(request)
    }
}

fn map_param(value: Option<Value>, name: &str) -> Result<Option<Map<String, Value>>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(bad_request(format!(
            "\"{name}\" must be an object or null, not {}",
            json_type(&other)
        ))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A response of `errors` only, for a failure before any GraphQL ran (no `data` entry).
fn error_response(media: Media, status: StatusCode, error: ApiError) -> Response {
    write(media, status, refused(error), false)
}

/// Writes a GraphQL response: `with_data` false leaves the `data` entry out.
fn write(media: Media, status: StatusCode, response: async_graphql::Response, with_data: bool) -> Response {
    let headers = response.http_headers.clone();
    let body = match serde_json::to_value(&response) {
        Ok(Value::Object(mut body)) => {
            if !with_data {
                body.remove("data");
            }
            Value::Object(body)
        }
        // A response always serializes to an object; answer an opaque error if it did not.
        _ => serde_json::json!({ "errors": [{ "message": "internal error", "extensions": { "code": "INTERNAL" } }] }),
    };
    let mut out = (status, body.to_string()).into_response();
    out.headers_mut().extend(headers);
    out.headers_mut().insert(header::CONTENT_TYPE, media.content_type());
    out
}

/// Whether a response is a request error: nothing ran (no data, and no error of a field).
pub(crate) fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// The status of a request error under `application/graphql-response+json`.
fn request_error_status(response: &async_graphql::Response) -> StatusCode {
    let code = response
        .errors
        .first()
        .and_then(|e| e.extensions.as_ref())
        .and_then(|x| x.get("code"));
    match code {
        Some(async_graphql::Value::String(code)) => match code.as_str() {
            "CONSISTENCY_TIMEOUT" | "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
            "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
            "FORBIDDEN" => StatusCode::FORBIDDEN,
            "INTERNAL" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        },
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Gives a stable code to the request errors async-graphql raises without one: a document
/// that does not parse is `GRAPHQL_PARSE_FAILED`, one that does not validate (or whose
/// variables do not coerce) `GRAPHQL_VALIDATION_FAILED`.
pub(crate) fn code_request_errors(response: &mut async_graphql::Response, parsed: bool) {
    let code = if parsed {
        "GRAPHQL_VALIDATION_FAILED"
    } else {
        "GRAPHQL_PARSE_FAILED"
    };
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", code);
        }
    }
}

/// The caller an `Authorization: Bearer` header names: an access token or an API key.
pub async fn caller_from_headers(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::Unauthenticated("an access token or API key is required (Authorization: Bearer <token>)".into())
        })?;
    let token = bearer(header)
        .ok_or_else(|| ApiError::Unauthenticated("the Authorization header is not a Bearer token".into()))?;
    authenticate(state, token).await
}

/// The caller of a presented credential: an API key (`chr_…`, checked against its stored
/// hash, revocation and expiry) or an access token (signature and expiry).
pub async fn authenticate(state: &AppState, presented: &str) -> Result<Caller, ApiError> {
    use chronicle_commands::api_keys::{self, KeyError};
    if api_keys::looks_like_key(presented) {
        match api_keys::authenticate(&state.pool, presented, chrono::Utc::now()).await {
            Ok(credential) => Caller::of_key(credential),
            Err(KeyError::Refused(refusal)) => Err(ApiError::Unauthenticated(refusal.to_string())),
            Err(KeyError::Database(e)) => Err(ApiError::from(e)),
        }
    } else {
        verify(&state.token_keys, presented)
    }
}

/// The authenticated caller of a REST route, extracted from the headers before anything
/// reads the body, so an anonymous request is refused without its body being buffered.
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        caller_from_headers(state, &parts.headers).await.map(Authenticated)
    }
}

/// The 401 of a request without a valid token, with its `WWW-Authenticate` challenge.
fn unauthenticated(media: Media, headers: &HeaderMap, error: ApiError) -> Response {
    let challenge = if headers.contains_key(header::AUTHORIZATION) {
        r#"Bearer realm="chronicle", error="invalid_token""#
    } else {
        r#"Bearer realm="chronicle""#
    };
    let mut response = error_response(media, StatusCode::UNAUTHORIZED, error);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

/// 406: the client accepts neither media type (answered in `application/json`).
fn not_acceptable() -> Response {
    error_response(
        Media::Json,
        StatusCode::NOT_ACCEPTABLE,
        ApiError::bad_request(
            "NOT_ACCEPTABLE",
            format!("responses are {GRAPHQL_RESPONSE_JSON} or application/json: the Accept header allows neither"),
        ),
    )
}

/// Whether a POST body is declared JSON in UTF-8.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let charset_ok = parts
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .all(|(_, v)| v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8"));
    essence.eq_ignore_ascii_case("application/json") && charset_ok
}

async fn post_graphql(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let multipart = multipart_content_type(&headers);
    let limit = if multipart {
        MAX_UPLOAD_BODY_BYTES
    } else {
        MAX_GRAPHQL_BODY_BYTES
    };
    if declared.is_some_and(|n| n > limit) {
        return too_large(media, limit);
    }
    // The caller before the body: an anonymous request is refused without being read.
    let caller = match caller_from_headers(&state, &headers).await {
        Ok(caller) => caller,
        Err(e) => return unauthenticated(media, &headers, e),
    };
    if multipart {
        // Only callers who may upload have a multipart body read at all, a few at a time.
        if !caller.may(crate::permissions::Permission::WorkInbox) {
            return error_response(
                media,
                StatusCode::FORBIDDEN,
                ApiError::Forbidden(format!(
                    "the {} role cannot upload files (multipart requests are uploads)",
                    caller.role.as_str()
                )),
            );
        }
        let Ok(_permit) = UPLOADS.acquire().await else {
            return error_response(
                media,
                StatusCode::SERVICE_UNAVAILABLE,
                ApiError::Unavailable("uploads are closed".into()),
            );
        };
        return match Box::pin(receive_multipart(&headers, body)).await {
            Ok(request) => {
                Box::pin(run(
                    state,
                    correlation,
                    caller,
                    &headers,
                    media,
                    Ok(request),
                    &Method::POST,
                ))
                .await
            }
            Err(MultipartRefusal::TooLarge) => too_large(media, limit),
            Err(MultipartRefusal::Bad(e)) => request_error(media, e),
        };
    }
    if !json_content_type(&headers) {
        return error_response(
            media,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::bad_request(
                "UNSUPPORTED_MEDIA_TYPE",
                "a GraphQL request is a JSON body (Content-Type: application/json, UTF-8), or a multipart/form-data upload (the GraphQL multipart request specification)",
            ),
        );
    }
    let bytes = match http_body_util::Limited::new(body, MAX_GRAPHQL_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(media, MAX_GRAPHQL_BODY_BYTES),
        Err(_) => {
            return request_error(media, bad_request("the request body could not be read"));
        }
    };
    if bytes.is_empty() {
        return request_error(media, bad_request("a POST request needs a JSON body with a \"query\""));
    }
    let params = match serde_json::from_slice::<Value>(&bytes) {
        Ok(json) => Params::from_json(json),
        Err(_) => Err(bad_request("the request body is not valid JSON")),
    };
    match params {
        Ok(params) => {
            Box::pin(run(
                state,
                correlation,
                caller,
                &headers,
                media,
                params.into_request(),
                &Method::POST,
            ))
            .await
        }
        Err(e) => request_error(media, e),
    }
}

/// Multipart (upload) requests read at once: each holds its body in memory while it is read.
static UPLOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Why a multipart request was not read.
enum MultipartRefusal {
    TooLarge,
    Bad(ApiError),
}

/// Whether the body is `multipart/form-data` (a GraphQL multipart request: an upload).
fn multipart_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"))
}

/// Reads a GraphQL multipart request (github.com/jaydenseric/graphql-multipart-request-spec):
/// its `operations` and `map` parts and one file of at most
/// [`chronicle_commands::outbound::media::UPLOAD_MAX_BYTES`], into a request whose `Upload`
/// variable holds the file. The body is read whole, within [`MAX_UPLOAD_BODY_BYTES`], before it
/// is parsed.
async fn receive_multipart(headers: &HeaderMap, body: Body) -> Result<async_graphql::Request, MultipartRefusal> {
    let bytes = match http_body_util::Limited::new(body, MAX_UPLOAD_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(MultipartRefusal::TooLarge),
        Err(_) => return Err(MultipartRefusal::Bad(bad_request("the request body could not be read"))),
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    // The stream's limit is the file's times the files' count: the body's own limit, so a file
    // of exactly the largest size fits beside the operations (its own size is checked by
    // `uploadMedia`, which answers MEDIA_TOO_LARGE).
    let options = async_graphql::http::MultipartOptions::default()
        .max_file_size(MAX_UPLOAD_BODY_BYTES)
        .max_num_files(1);
    let request = async_graphql::http::receive_body(content_type, futures::io::Cursor::new(bytes), options)
        .await
        .map_err(|e| match e {
            async_graphql::ParseRequestError::PayloadTooLarge => MultipartRefusal::TooLarge,
            e => MultipartRefusal::Bad(bad_request(format!("the multipart request could not be read: {e}"))),
        })?;
    // The operation itself stays within a JSON request's limit.
    let operation = request.query.len() + serde_json::to_string(&request.variables).map_or(0, |v| v.len());
    if operation > MAX_GRAPHQL_BODY_BYTES {
        return Err(MultipartRefusal::TooLarge);
    }
    Ok(request)
}

async fn get_graphql(
    state: State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let has_query = raw
        .as_deref()
        .is_some_and(|q| q.split('&').any(|p| p == "query" || p.starts_with("query=")));
    // Without a query, the page, unless the client names a GraphQL response type (a GraphQL
    // client that forgot its query gets a request error it can read).
    let names_json = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            let v = v.to_ascii_lowercase();
            v.contains(GRAPHQL_RESPONSE_JSON) || v.contains("application/json")
        });
    if !has_query && !names_json {
        return super::graphiql::page(state, headers).await;
    }
    let State(state) = state;
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let caller = match caller_from_headers(&state, &headers).await {
        Ok(caller) => caller,
        Err(e) => return unauthenticated(media, &headers, e),
    };
    match Params::from_url(raw.as_deref()) {
        Ok(params) => {
            Box::pin(run(
                state,
                correlation,
                caller,
                &headers,
                media,
                params.into_request(),
                &Method::GET,
            ))
            .await
        }
        Err(e) => request_error(media, e),
    }
}

/// Any method but GET and POST.
async fn other_method(headers: HeaderMap) -> Response {
    let media = negotiate(&headers).unwrap_or(Media::Json);
    let mut response = error_response(
        media,
        StatusCode::METHOD_NOT_ALLOWED,
        ApiError::bad_request("METHOD_NOT_ALLOWED", "GraphQL is served over GET (queries) and POST"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    response
}

fn too_large(media: Media, limit: usize) -> Response {
    error_response(
        media,
        StatusCode::PAYLOAD_TOO_LARGE,
        ApiError::bad_request(
            "PAYLOAD_TOO_LARGE",
            format!("a GraphQL request body is at most {limit} bytes"),
        ),
    )
}

/// A request error before execution: 200 in `application/json`, 400 in the new media type;
/// no `data` in either.
fn request_error(media: Media, error: ApiError) -> Response {
    let status = match media {
        Media::Json => StatusCode::OK,
        Media::GraphqlResponse => error.status(),
    };
    error_response(media, status, error)
}

/// Runs a request and writes its response.
async fn run(
    state: AppState,
    correlation: CorrelationId,
    caller: Caller,
    headers: &HeaderMap,
    media: Media,
    request: Result<async_graphql::Request, ApiError>,
    method: &Method,
) -> Response {
    let span = tracing::info_span!("graphql", tenant.id = %caller.tenant, user.id = %caller.user_id, correlation.id = %correlation.0);
    let mut request = match request {
        Ok(request) => request.data(caller).data(correlation),
        Err(e) => return request_error(media, e),
    };
    let wanted = request.operation_name.clone();
    let parsed = match request.parsed_query() {
        Ok(document) => Some(
            document
                .operations
                .iter()
                .find(|(name, _)| match &wanted {
                    Some(wanted) => name.is_some_and(|n| n.as_str() == wanted),
                    None => true,
                })
                .map(|(_, operation)| operation.node.ty),
        ),
        Err(_) => None,
    };
    // GET is for queries only (a GET must change nothing).
    if method == Method::GET {
        if let Some(Some(ty)) = parsed {
            if ty != OperationType::Query {
                let mut response = error_response(
                    media,
                    StatusCode::METHOD_NOT_ALLOWED,
                    ApiError::bad_request(
                        "METHOD_NOT_ALLOWED",
                        "only queries are served over GET: send mutations and subscriptions with POST",
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                return response;
            }
        }
    }
    // The consistency headers, unless the request's own extensions ask already.
    match Consistency::from_headers(headers) {
        Ok(Some(c)) if !request.extensions.0.contains_key("consistency") => {
            request.extensions.0.insert("consistency".into(), c.to_value());
        }
        Ok(_) => {}
        Err(e) => return request_error(media, e),
    }
    let executor = Limited(state.schema.clone(), state.pool.clone());
    // A panic while the request runs (a defect: ours, or a library's on an input it did not
    // expect) answers this request alone, as an internal error.
    let mut response = match std::panic::AssertUnwindSafe(Box::pin(executor.execute(request).instrument(span)))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            tracing::error!("a GraphQL request panicked while it ran; answered as malformed");
            return request_error(
                media,
                bad_request("the request could not be run: an argument is malformed"),
            );
        }
    };
    if !is_request_error(&response) {
        return write(media, StatusCode::OK, response, true);
    }
    code_request_errors(&mut response, parsed.is_some());
    let status = match media {
        Media::Json => StatusCode::OK,
        Media::GraphqlResponse => request_error_status(&response),
    };
    write(media, status, response, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
        );
        headers
    }

    #[test]
    fn the_accept_header_chooses_the_media_type() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(Media::Json));
        assert_eq!(negotiate(&accept("*/*")), Some(Media::Json));
        assert_eq!(negotiate(&accept("application/json")), Some(Media::Json));
        assert_eq!(
            negotiate(&accept("application/graphql-response+json")),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            negotiate(&accept("application/graphql-response+json, application/json;q=0.9")),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            negotiate(&accept("application/graphql-response+json;q=0.5, application/json")),
            Some(Media::Json)
        );
        assert_eq!(
            negotiate(&accept("application/json, application/graphql-response+json")),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(negotiate(&accept("text/html, */*;q=0.8")), Some(Media::Json));
        assert_eq!(negotiate(&accept("text/html")), None);
        assert_eq!(negotiate(&accept("application/json;q=0")), None);
        // An explicit q=0 is not undone by a wildcard (the most specific range decides).
        assert_eq!(negotiate(&accept("application/json;q=0, */*")), None);
        assert_eq!(
            negotiate(&accept(
                "application/json;q=0, */*, application/graphql-response+json;q=0.5"
            )),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(negotiate(&accept("application/*")), Some(Media::Json));
    }

    #[test]
    fn parameters_of_the_wrong_type_are_refused() {
        use serde_json::json;
        let ok =
            Params::from_json(json!({"query": "{ a }", "operationName": null, "variables": null, "extensions": {}}));
        assert!(ok.is_ok());
        for bad in [
            json!({"notquery": "{ a }"}),
            json!({"query": 0}),
            json!({"query": {"obj": "ect"}}),
            json!({"query": "{ a }", "operationName": false}),
            json!({"query": "{ a }", "variables": "string"}),
            json!({"query": "{ a }", "variables": ["array"]}),
            json!({"query": "{ a }", "extensions": 0}),
            json!([{"query": "{ a }"}]),
        ] {
            let refused = Params::from_json(bad.clone());
            assert!(
                matches!(
                    refused,
                    Err(ApiError::BadRequest {
                        code: "BAD_REQUEST",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        let from_url = Params::from_url(Some("query=%7B%20a%20%7D&variables=%7B%22x%22%3A1%7D"));
        assert_eq!(from_url.ok().and_then(|p| p.variables).map(|v| v.len()), Some(1));
        assert!(Params::from_url(Some("query=a&query=b")).is_err());
        assert!(Params::from_url(Some("query=a&variables=%7Bnot")).is_err());
    }
}
