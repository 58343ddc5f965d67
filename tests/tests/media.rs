//! Inbound WhatsApp media from end to end: a media message → `MessageReceived` → the `media`
//! projector's `media_jobs` → the media fetcher → a loopback Graph API server in the test
//! (`GET /{media-id}` → URL, `GET <url>` → bytes) → the bytes sealed in `media_blobs` and
//! `MediaStored` with their sha-256 in the log → the `media_files` read model, GraphQL
//! `media(messageId)` and `GET /media/{mediaRef}`. Retries of 5xx, 4xx failures with their
//! code, checksum mismatches, roles, erasure, and nothing of the media in the log in the clear.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chronicle_api::app::router;
use chronicle_api::auth::Role;
use chronicle_commands::media::{FetcherConfig, MediaFetcher};
use chronicle_domain::media::MAX_FETCH_ATTEMPTS;
use chronicle_tests::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tower::ServiceExt;

const NUMBER: &str = "555000111";
const CUSTOMER: &str = "263771000001";
const TOKEN: &str = "test-graph-token";
const MEDIA_ID: &str = "1234567890123456";
const PHOTO: &[u8] = b"\xff\xd8\xff\xe0 a photo of the roof where the panels go \xff\xd9";

/// A loopback Graph API: `GET /v21.0/{media-id}` answers the scripted statuses in order, then
/// 200 with the download URL; `GET /files/{media-id}` serves `bytes`. Counts requests per path
/// and keeps each request's Authorization header.
#[derive(Clone)]
struct Graph {
    script: Arc<Mutex<Vec<u16>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    authorizations: Arc<Mutex<Vec<String>>>,
    bytes: Arc<Vec<u8>>,
    base: Arc<Mutex<String>>,
}

impl Graph {
    fn new(script: Vec<u16>, bytes: &[u8]) -> Self {
        Self {
            script: Arc::new(Mutex::new(script)),
            hits: Arc::default(),
            authorizations: Arc::default(),
            bytes: Arc::new(bytes.to_vec()),
            base: Arc::default(),
        }
    }

    fn seen(&self, path: &str, headers: &HeaderMap) {
        *self
            .hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(path.to_string())
            .or_default() += 1;
        self.authorizations.lock().unwrap_or_else(|e| e.into_inner()).push(
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
        );
    }

    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Serves on 127.0.0.1:0; returns the Graph base URL (`http://…/v21.0`).
    async fn serve(&self) -> String {
        let app = Router::new()
            .route("/v21.0/{media_id}", get(describe))
            .route("/files/{media_id}", get(download))
            .with_state(self.clone());
        // The base is read only when a request comes, after it is set here.
        let base = chronicle_tests::serve_loopback(app).await;
        *self.base.lock().unwrap_or_else(|e| e.into_inner()) = base.clone();
        format!("{base}/v21.0")
    }
}

async fn describe(State(graph): State<Graph>, Path(media_id): Path<String>, headers: HeaderMap) -> Response {
    graph.seen(&format!("/v21.0/{media_id}"), &headers);
    let scripted = {
        let mut script = graph.script.lock().unwrap_or_else(|e| e.into_inner());
        (!script.is_empty()).then(|| script.remove(0))
    };
    if let Some(status) = scripted {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": {"message": "scripted", "type": "OAuthException", "code": 100}});
        return (status, Json(body)).into_response();
    }
    let base = graph.base.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Json(json!({
        "url": format!("{base}/files/{media_id}?signature=secret"),
        "mime_type": "image/jpeg",
        "sha256": hex::encode(Sha256::digest(graph.bytes.as_slice())),
        "file_size": graph.bytes.len(),
        "id": media_id,
        "messaging_product": "whatsapp",
    }))
    .into_response()
}

async fn download(State(graph): State<Graph>, Path(media_id): Path<String>, headers: HeaderMap) -> Response {
    graph.seen(&format!("/files/{media_id}"), &headers);
    ([(header::CONTENT_TYPE, "image/jpeg")], graph.bytes.as_ref().clone()).into_response()
}

fn fetcher(app: &TestApp, base_url: &str) -> MediaFetcher {
    let mut config = FetcherConfig::new(base_url, TOKEN);
    config.backoff = Duration::ZERO;
    config.request_timeout = Duration::from_secs(5);
    MediaFetcher::new(app.state.commands.clone(), app.state.master_key.clone(), config)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// An inbound image message announcing `announced` (base64 sha-256, as WhatsApp sends it).
fn image_message(n: u32, announced: &str) -> Value {
    json!({"from": CUSTOMER, "id": wamid(CUSTOMER, n), "timestamp": chrono::Utc::now().timestamp().to_string(),
           "type": "image",
           "image": {"id": MEDIA_ID, "mime_type": "image/jpeg", "sha256": announced, "caption": "Kitchen roof, north side"}})
}

fn announced(bytes: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(bytes))
}

/// Serves `graph`, posts an image from the customer, processes it and projects (its fetch is
/// queued, not worked). Returns the Graph base URL.
async fn deliver_image(app: &TestApp, graph: &Graph, announced_sha: &str) -> String {
    let base = graph.serve().await;
    app.tenant_with_number("acme", NUMBER).await;
    let body = delivery(
        NUMBER,
        &[(CUSTOMER, "Tendai Moyo")],
        vec![image_message(1, announced_sha)],
        vec![],
    );
    let (status, _) = app.post_delivery(&body).await;
    assert_eq!(status, StatusCode::OK);
    app.drain().await;
    app.project().await;
    base
}

/// Posts an image from the customer, processes it, queues and works its fetch, projects.
async fn receive_image(app: &TestApp, graph: &Graph, announced_sha: &str) -> MediaFetcher {
    let base = deliver_image(app, graph, announced_sha).await;
    let fetcher = fetcher(app, &base);
    fetcher.drain().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    fetcher
}

async fn one(app: &TestApp, sql: &str) -> Value {
    sqlx::query_scalar::<_, Value>(sql)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

const MEDIA_QUERY: &str = "query($id: String!) {
  media(messageId: $id) { mediaRef status sha256 size mimeType failedAttempts lastFailure }
}";

async fn media_of_message(app: &TestApp, role: Role) -> Value {
    let message_ref: String = sqlx::query_scalar("SELECT message_ref FROM media_jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let token = app.token("acme", role);
    let (status, reply) = app.graphql(Some(&token), MEDIA_QUERY, json!({"id": message_ref})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply
}

async fn get_media(app: &TestApp, tenant_id: &str, role: Role, media_ref: &str) -> (StatusCode, Vec<u8>) {
    let request = Request::get(format!("/media/{media_ref}"))
        .header("authorization", format!("Bearer {}", app.token(tenant_id, role)))
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let response = router(app.state.clone())
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {});
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1024 * 1024)
        .await
        .unwrap_or_default();
    (status, bytes.to_vec())
}

async fn media_ref(app: &TestApp) -> String {
    sqlx::query_scalar("SELECT media_ref FROM media_jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_inbound_image_is_fetched_once_and_stored_sealed_with_its_sha256(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::new(vec![], PHOTO);
    let fetcher = receive_image(&app, &graph, &announced(PHOTO)).await;
    let sha = hex::encode(Sha256::digest(PHOTO));

    assert_eq!(graph.hits(&format!("/v21.0/{MEDIA_ID}")), 1);
    assert_eq!(graph.hits(&format!("/files/{MEDIA_ID}")), 1);
    let authorizations = graph.authorizations.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        authorizations.iter().all(|a| a == &format!("Bearer {TOKEN}")),
        "{authorizations:?}"
    );

    assert_eq!(app.count_events("MediaFetchRequested").await, 1);
    assert_eq!(app.count_events("MediaStored").await, 1);
    let stored = one(
        &app,
        "SELECT payload -> 'MediaStored' FROM events WHERE event_type = 'MediaStored'",
    )
    .await;
    assert_eq!(stored["sha256"], sha);
    assert_eq!(stored["size"], PHOTO.len());
    assert_eq!(stored["attempts"], 1);

    let (blob_sha, ciphertext): (String, Vec<u8>) = sqlx::query_as("SELECT sha256, ciphertext FROM media_blobs")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(blob_sha, sha);
    assert!(
        !ciphertext.windows(20).any(|w| PHOTO.windows(20).any(|p| p == w)),
        "stored in the clear"
    );

    // The same delivery again, and more passes: nothing is fetched twice.
    let body = delivery(
        NUMBER,
        &[(CUSTOMER, "Tendai Moyo")],
        vec![image_message(1, &announced(PHOTO))],
        vec![],
    );
    app.post_delivery(&body).await;
    app.drain().await;
    app.project().await;
    fetcher.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(graph.hits(&format!("/v21.0/{MEDIA_ID}")), 1);
    assert_eq!(app.count("SELECT count(*) FROM media_jobs").await, 1);
    assert_eq!(app.count_events("MediaStored").await, 1);

    let reply = media_of_message(&app, Role::Agent).await;
    let media = &reply["data"]["media"];
    assert_eq!(media["status"], "STORED", "{reply}");
    assert_eq!(media["sha256"], sha);
    assert_eq!(media["size"], PHOTO.len());
    assert_eq!(media["mimeType"], "image/jpeg");
    assert_eq!(media["mediaRef"], media_ref(&app).await);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_graph_api_answering_500_twice_is_retried_and_the_media_stored_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::new(vec![500, 503], PHOTO);
    receive_image(&app, &graph, &announced(PHOTO)).await;

    assert_eq!(graph.hits(&format!("/v21.0/{MEDIA_ID}")), 3);
    assert_eq!(graph.hits(&format!("/files/{MEDIA_ID}")), 1);
    assert_eq!(app.count_events("MediaFetchFailed").await, 2);
    assert_eq!(app.count_events("MediaStored").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM media_blobs").await, 1);
    let failure = one(
        &app,
        "SELECT payload -> 'MediaFetchFailed' FROM events WHERE event_type = 'MediaFetchFailed' ORDER BY sequence LIMIT 1",
    )
    .await;
    assert_eq!(failure["retryable"], true);
    assert!(failure["code"].as_str().unwrap_or_default().starts_with("http_500"));
    let reply = media_of_message(&app, Role::Owner).await;
    assert_eq!(reply["data"]["media"]["status"], "STORED", "{reply}");
    assert_eq!(reply["data"]["media"]["failedAttempts"], 2);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_graph_api_answering_500_every_time_is_given_up_after_the_maximum_attempts(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::new(vec![500; 10], PHOTO);
    receive_image(&app, &graph, &announced(PHOTO)).await;

    assert_eq!(graph.hits(&format!("/v21.0/{MEDIA_ID}")), MAX_FETCH_ATTEMPTS as usize);
    assert_eq!(
        app.count_events("MediaFetchFailed").await,
        i64::from(MAX_FETCH_ATTEMPTS) - 1
    );
    assert_eq!(app.count_events("MediaFetchGaveUp").await, 1);
    assert_eq!(app.count_events("MediaStored").await, 0);
    let reply = media_of_message(&app, Role::Agent).await;
    assert_eq!(reply["data"]["media"]["status"], "GAVE_UP", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_404_is_recorded_as_a_failure_with_its_code_and_not_retried(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::new(vec![404], PHOTO);
    let fetcher = receive_image(&app, &graph, &announced(PHOTO)).await;
    fetcher.drain().await.unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(graph.hits(&format!("/v21.0/{MEDIA_ID}")), 1);
    assert_eq!(graph.hits(&format!("/files/{MEDIA_ID}")), 0);
    let failure = one(
        &app,
        "SELECT payload -> 'MediaFetchFailed' FROM events WHERE event_type = 'MediaFetchFailed'",
    )
    .await;
    assert_eq!(failure["code"], "http_404:100");
    assert_eq!(failure["retryable"], false);
    assert_eq!(app.count_events("MediaStored").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM media_blobs").await, 0);
    let reply = media_of_message(&app, Role::Agent).await;
    assert_eq!(reply["data"]["media"]["status"], "FAILED", "{reply}");
    assert_eq!(reply["data"]["media"]["lastFailure"], "http_404:100");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn bytes_other_than_whatsapp_announced_are_a_checksum_failure_and_never_stored(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::new(vec![], PHOTO);
    receive_image(&app, &graph, &announced(b"some other file")).await;

    assert_eq!(graph.hits(&format!("/files/{MEDIA_ID}")), 1);
    let failure = one(
        &app,
        "SELECT payload -> 'MediaFetchFailed' FROM events WHERE event_type = 'MediaFetchFailed'",
    )
    .await;
    assert_eq!(failure["code"], "checksum_mismatch");
    assert_eq!(failure["retryable"], false);
    assert_eq!(app.count_events("MediaStored").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM media_blobs").await, 0);
    let reply = media_of_message(&app, Role::Agent).await;
    assert_eq!(reply["data"]["media"]["status"], "FAILED", "{reply}");
    assert_eq!(reply["data"]["media"]["lastFailure"], "checksum_mismatch");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_media_route_serves_the_bytes_to_an_agent_and_refuses_a_technician(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::new(vec![], PHOTO);
    receive_image(&app, &graph, &announced(PHOTO)).await;
    let media_ref = media_ref(&app).await;

    let (status, bytes) = get_media(&app, "acme", Role::Agent, &media_ref).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, PHOTO);
    let (status, _) = get_media(&app, "acme", Role::Owner, &media_ref).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get_media(&app, "acme", Role::Technician, &media_ref).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get_media(&app, "beta", Role::Agent, &media_ref).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let anonymous = Request::get(format!("/media/{media_ref}"))
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, _) = app.send(anonymous).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let reply = media_of_message(&app, Role::Technician).await;
    assert_eq!(reply["errors"][0]["extensions"]["code"], "FORBIDDEN", "{reply}");
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn erasing_the_contact_s_key_makes_the_stored_media_unreadable(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::new(vec![], PHOTO);
    receive_image(&app, &graph, &announced(PHOTO)).await;
    let media_ref = media_ref(&app).await;
    let contact_id: String = sqlx::query_scalar("SELECT contact_id FROM media_jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    chronicle_commands::contacts::destroy_key(&app.pool, &tenant("acme"), &contact_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, bytes) = get_media(&app, "acme", Role::Agent, &media_ref).await;
    assert_eq!(status, StatusCode::GONE);
    assert_ne!(bytes, PHOTO);
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_log_never_holds_the_media_bytes_url_id_or_caption_in_the_clear(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::new(vec![500], PHOTO);
    receive_image(&app, &graph, &announced(PHOTO)).await;
    assert_eq!(app.count_events("MediaStored").await, 1);

    let log: Vec<String> = sqlx::query_scalar("SELECT payload::text || metadata::text FROM events")
        .fetch_all(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let log = log.join("\n");
    let clear_text = String::from_utf8_lossy(PHOTO).to_string();
    for secret in [
        MEDIA_ID,
        "/files/",
        "signature=secret",
        "Kitchen roof",
        "a photo of the roof",
        &STANDARD.encode(PHOTO),
        &hex::encode(PHOTO),
        &clear_text,
    ] {
        assert!(!log.contains(secret), "the log holds {secret:?}");
    }
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn a_fetch_left_fetching_by_a_stopped_fetcher_is_fetched_again_and_stored_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let graph = Graph::new(vec![], PHOTO);
    let base = graph.serve().await;
    app.tenant_with_number("acme", NUMBER).await;
    let body = delivery(
        NUMBER,
        &[(CUSTOMER, "Tendai Moyo")],
        vec![image_message(1, &announced(PHOTO))],
        vec![],
    );
    app.post_delivery(&body).await;
    app.drain().await;
    app.project().await;
    // A fetcher took the job, claimed it an hour ago and stopped before settling it.
    let fetcher = fetcher(&app, &base);
    fetcher.admit().await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("UPDATE media_jobs SET state = 'fetching', attempts = 1, claimed_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fetcher.release_stale().await.unwrap_or_else(|e| panic!("{e}")), 1);
    let (state, error): (String, Option<String>) = sqlx::query_as("SELECT state, last_error FROM media_jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state, "pending");
    assert_eq!(error.as_deref(), Some("found fetching after its fetcher stopped"));
    fetcher.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(graph.hits(&format!("/v21.0/{MEDIA_ID}")), 1);
    assert_eq!(app.count_events("MediaStored").await, 1);
    // A claim younger than the stale time is left alone.
    sqlx::query("UPDATE media_jobs SET state = 'fetching', claimed_at = now()")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fetcher.release_stale().await.unwrap_or_else(|e| panic!("{e}")), 0);
}

const REFETCH: &str = "mutation($media: String!, $key: String!) {
  refetchMedia(mediaRef: $media, idempotencyKey: $key) { id }
}";

async fn refetch(app: &TestApp, role: Role, media: &str, key: &str) -> Value {
    let token = app.token("acme", role);
    let (status, reply) = app
        .graphql(Some(&token), REFETCH, json!({"media": media, "key": key}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn an_operator_fetches_a_failed_media_again_and_it_is_stored(pool: PgPool) {
    let app = TestApp::new(pool).await;
    // WhatsApp answers 404 the first time (the media not there yet), then serves it.
    let graph = Graph::new(vec![404], PHOTO);
    let fetcher = receive_image(&app, &graph, &announced(PHOTO)).await;
    let media = media_ref(&app).await;
    assert_eq!(
        media_of_message(&app, Role::Agent).await["data"]["media"]["status"],
        "FAILED"
    );

    // An agent may not; an admin may.
    let refused = refetch(&app, Role::Agent, &media, "again-1").await;
    assert_eq!(error_code(&refused), "FORBIDDEN", "{refused}");
    assert_eq!(app.count_events("MediaRefetchRequested").await, 0);
    let reply = refetch(&app, Role::Admin, &media, "again-1").await;
    assert_eq!(reply["data"]["refetchMedia"]["id"], media.as_str(), "{reply}");
    app.project().await;
    let shown = media_of_message(&app, Role::Agent).await;
    assert_eq!(shown["data"]["media"]["status"], "REQUESTED", "{shown}");
    assert_eq!(shown["data"]["media"]["failedAttempts"], 0, "{shown}");
    let decided = one(
        &app,
        "SELECT payload -> 'MediaRefetchRequested' FROM events WHERE event_type = 'MediaRefetchRequested'",
    )
    .await;
    assert_eq!(decided["after"], "http_404:100");
    assert_eq!(decided["by"], "user-1");

    // The fetcher fetches it again, from attempt 1, and stores it.
    fetcher.drain().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    assert_eq!(graph.hits(&format!("/v21.0/{MEDIA_ID}")), 2);
    assert_eq!(app.count_events("MediaStored").await, 1);
    let stored = one(
        &app,
        "SELECT payload -> 'MediaStored' FROM events WHERE event_type = 'MediaStored'",
    )
    .await;
    assert_eq!(stored["attempts"], 1);
    let shown = media_of_message(&app, Role::Agent).await;
    assert_eq!(shown["data"]["media"]["status"], "STORED", "{shown}");
    let (status, bytes) = get_media(&app, "acme", Role::Agent, &media).await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, PHOTO));
    assert_eq!(
        app.count("SELECT count(*) FROM media_job_feed WHERE settled = 'stored'")
            .await,
        1
    );

    // The same key again records nothing; another one on a stored media is refused.
    let again = refetch(&app, Role::Admin, &media, "again-1").await;
    assert!(again.get("errors").is_none(), "{again}");
    assert_eq!(app.count_events("MediaRefetchRequested").await, 1);
    let stored_refusal = refetch(&app, Role::Admin, &media, "again-2").await;
    assert_eq!(error_code(&stored_refusal), "MEDIA_ALREADY_STORED", "{stored_refusal}");
    // A rebuild of the projection ends where the live one is.
    app.rebuild("media").await;
    assert_eq!(
        media_of_message(&app, Role::Agent).await["data"]["media"]["status"],
        "STORED"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM media_job_feed WHERE settled = 'stored'")
            .await,
        1
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn fetching_again_is_refused_for_an_unknown_a_malformed_or_an_ongoing_media(pool: PgPool) {
    let app = TestApp::new(pool).await;
    // A 500 first: retried, so the fetch is still going when the operator asks.
    let graph = Graph::new(vec![500], PHOTO);
    let base = deliver_image(&app, &graph, &announced(PHOTO)).await;
    let mut config = FetcherConfig::new(&base, TOKEN);
    config.backoff = Duration::from_secs(3_600);
    config.max_backoff = Duration::from_secs(3_600);
    let slow = MediaFetcher::new(app.state.commands.clone(), app.state.master_key.clone(), config)
        .unwrap_or_else(|e| panic!("{e}"));
    slow.run_once().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    let media = media_ref(&app).await;

    let ongoing = refetch(&app, Role::Owner, &media, "k1").await;
    assert_eq!(error_code(&ongoing), "MEDIA_FETCH_IN_PROGRESS", "{ongoing}");
    let unknown = refetch(&app, Role::Owner, &format!("media_{}", "0".repeat(32)), "k1").await;
    assert_eq!(error_code(&unknown), "MEDIA_NOT_REQUESTED", "{unknown}");
    let malformed = refetch(&app, Role::Owner, "media_../x", "k1").await;
    assert_eq!(error_code(&malformed), "BAD_MEDIA_REF", "{malformed}");
    let no_key = refetch(&app, Role::Owner, &media, " ").await;
    assert_eq!(error_code(&no_key), "MISSING_IDEMPOTENCY_KEY", "{no_key}");
    assert_eq!(app.count_events("MediaRefetchRequested").await, 0);
    // The fetcher's row is as it was: pending, its next attempt in an hour.
    assert_eq!(
        app.count("SELECT count(*) FROM media_jobs WHERE state = 'pending' AND attempts = 1 AND next_attempt_at > now() + interval '30 minutes'")
            .await,
        1
    );
}

#[sqlx::test(migrator = "chronicle_projections::MIGRATOR")]
async fn the_log_decides_a_refetch_an_old_failure_copied_late_or_a_repeated_key_never_undoes_or_redoes_it(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    // 404, then 404 again after the first refetch, then the media.
    let graph = Graph::new(vec![404, 404], PHOTO);
    let base = deliver_image(&app, &graph, &announced(PHOTO)).await;
    let fetcher = fetcher(&app, &base);
    fetcher.drain().await.unwrap_or_else(|e| panic!("{e}"));
    let media = media_ref(&app).await;
    let describe = format!("/v21.0/{MEDIA_ID}");
    assert_eq!(graph.hits(&describe), 1);

    // While the fetcher's row is not settled yet (its failure in the log, the row still being
    // worked), a refetch is refused: an outcome of that fetch may still be on its way.
    sqlx::query("UPDATE media_jobs SET state = 'fetching'")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let early = refetch(&app, Role::Owner, &media, "k1").await;
    assert_eq!(error_code(&early), "MEDIA_FETCH_IN_PROGRESS", "{early}");
    sqlx::query("UPDATE media_jobs SET state = 'failed'")
        .execute(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(app.count_events("MediaRefetchRequested").await, 0);

    // The failure is projected into the feed but not copied by the fetcher yet when the
    // operator decides; the late copy of the old failure must not undo the decision.
    app.project().await;
    let reply = refetch(&app, Role::Owner, &media, "k1").await;
    assert!(reply.get("errors").is_none(), "{reply}");
    fetcher.admit().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    fetcher.drain().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    assert_eq!(graph.hits(&describe), 2, "fetched again once");
    assert_eq!(
        media_of_message(&app, Role::Agent).await["data"]["media"]["status"],
        "FAILED"
    );

    // The same key again records nothing and fetches nothing, however often the fetcher runs.
    let again = refetch(&app, Role::Owner, &media, "k1").await;
    assert!(again.get("errors").is_none(), "{again}");
    app.project().await;
    fetcher.drain().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(graph.hits(&describe), 2, "a repeated key fetched again");
    assert_eq!(app.count_events("MediaRefetchRequested").await, 1);

    // A new decision fetches it, from attempt 1, and it is stored.
    let second = refetch(&app, Role::Owner, &media, "k2").await;
    assert!(second.get("errors").is_none(), "{second}");
    app.project().await;
    fetcher.drain().await.unwrap_or_else(|e| panic!("{e}"));
    app.project().await;
    assert_eq!(graph.hits(&describe), 3);
    assert_eq!(
        media_of_message(&app, Role::Agent).await["data"]["media"]["status"],
        "STORED"
    );
    assert_eq!(app.count_events("MediaRefetchRequested").await, 2);
    assert_eq!(
        app.count("SELECT count(*) FROM media_jobs WHERE state = 'stored'")
            .await,
        1
    );
    // A key over 200 characters is refused as malformed.
    let long = refetch(&app, Role::Owner, &media, &"k".repeat(201)).await;
    assert_eq!(error_code(&long), "BAD_IDEMPOTENCY_KEY", "{long}");
}
