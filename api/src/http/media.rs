//! `GET /media/{media_ref}`: the bytes of a stored inbound media file, opened with the
//! contact's data key, for the caller's tenant only. Owner, admin and agent (the people who
//! answer customers); any other role gets 403. 404 when the tenant has no such media stored,
//! 410 when the contact was erased (the stored bytes are noise without the key).

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chronicle_commands::media::{read_media, MediaRead};
use serde_json::json;
use tracing::Instrument;

use crate::app::AppState;
use crate::auth::Role;
use crate::error::ApiError;
use crate::http::graphql::Authenticated;

/// The media route.
pub fn router() -> Router<AppState> {
    Router::new().route("/media/{media_ref}", get(media))
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response()
}

async fn media(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(media_ref): Path<String>,
) -> Result<Response, ApiError> {
    let key_may = caller.has_scope(chronicle_domain::api_key::ApiKeyScope::InboxRead);
    if !matches!(caller.role, Role::Owner | Role::Admin | Role::Agent) || !key_may {
        return Err(ApiError::Forbidden(format!(
            "the {} role cannot read media",
            caller.role.as_str()
        )));
    }
    let span = tracing::info_span!("media.read", tenant.id = %caller.tenant);
    let read = read_media(&state.pool, &state.master_key, &caller.tenant, &media_ref)
        .instrument(span)
        .await?;
    match read {
        MediaRead::Found(blob) => {
            let mime = HeaderValue::from_str(&blob.mime_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
            let mut response = blob.bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, mime);
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            if let Ok(digest) = HeaderValue::from_str(&format!("sha-256={}", blob.sha256)) {
                headers.insert("x-content-sha256", digest);
            }
            Ok(response)
        }
        MediaRead::NotFound => Ok(refusal(StatusCode::NOT_FOUND, "NOT_FOUND", "no such media")),
        MediaRead::Erased => Ok(refusal(
            StatusCode::GONE,
            "CONTACT_ERASED",
            "the contact was erased; the media is unreadable",
        )),
    }
}
