//! The media fetcher: inbound WhatsApp media (image, audio, video, document, sticker) fetched
//! from the Graph API and stored as a separate, retried step with its sha-256 recorded (issue 3,
//! "Inbound").
//!
//! The `media` projector feeds one `media_job_feed` row per media message, with the message's
//! content sealed as in the log; the fetcher copies the feed into its own `media_jobs` queue
//! ([`Admission`]) and claims due rows one at a time (a short
//! `FOR UPDATE SKIP LOCKED` statement committed before any network call), opens the content
//! with the contact's data key for WhatsApp's media id, and:
//!
//! 1. appends `RequestMediaFetch` on the media's stream (`<tenant>:<media ref>`; a repeat
//!    changes nothing);
//! 2. asks the Graph API for the media's URL (`GET {base}/{media-id}`, Bearer token), then
//!    downloads the bytes from it with the same token;
//! 3. computes the sha-256 of the bytes received; if it is the one WhatsApp announced (or none
//!    was), stores the bytes sealed under the contact's data key in `media_blobs` and records
//!    `RecordMediaFetched`; otherwise records it too, without storing, and the aggregate turns
//!    it into a `checksum_mismatch` failure that is not retried;
//! 4. a 5xx, a 429, a timeout or a connection failure is retried with backoff (doubling, capped)
//!    and recorded as a retryable `MediaFetchFailed`; the [`MAX_FETCH_ATTEMPTS`]th gives up; a
//!    4xx is recorded as a failure with its code (`http_404`, and the provider's code), never
//!    retried.
//!
//! Fetching is a read, safe to repeat: a row left `fetching` by a stopped fetcher goes back to
//! `pending` after `stale_after`, and an outcome that could not be recorded is fetched again.
//! Neither the bytes nor their URL nor the media id ever enter the log or the logs.

use std::fmt;
use std::time::Duration;

use chronicle_domain::media::{
    MediaCommand, MediaError, MediaKind, RecordMediaFetchFailed, RecordMediaFetched, RequestMediaFetch,
    RequestMediaRefetch, MAX_FETCH_ATTEMPTS,
};
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::pii::{DataKey, Envelope, MasterKey};
use chronicle_domain::tenant::TenantId;
use chrono::Utc;
use rand::rngs::OsRng;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use tracing::Instrument;

use crate::dispatch::Commands;
use crate::error::{CommandError, DomainError};
use crate::http::{backoff_delay, is_retryable, GraphApi};
use crate::workers::{Admission, Queue, Stale};

/// The actor recorded on media events.
pub const COMPONENT: &str = "media-fetcher";

/// How the fetcher reaches the Graph API and paces retries.
#[derive(Clone)]
pub struct FetcherConfig {
    /// The Graph API base, e.g. `https://graph.facebook.com/v21.0`.
    pub base_url: String,
    /// The system user's access token (Bearer). Never printed.
    pub access_token: String,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// The first retry's delay; doubled per attempt up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Rows claimed per pass.
    pub batch_size: i64,
    /// A row still `fetching` after this long belonged to a stopped fetcher.
    pub stale_after: Duration,
    /// The largest media accepted, in bytes (WhatsApp's own limit is 100 MB).
    pub max_bytes: usize,
}

impl fmt::Debug for FetcherConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetcherConfig")
            .field("base_url", &self.base_url)
            .field("access_token", &"[redacted]")
            .field("request_timeout", &self.request_timeout)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl FetcherConfig {
    /// Defaults for `base_url` and `access_token`: 30 s requests, backoff from 2 s to 5 min, 10
    /// rows per pass, claims stale after 5 min, media up to 100 MiB.
    pub fn new(base_url: impl Into<String>, access_token: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            access_token: access_token.into(),
            request_timeout: Duration::from_secs(30),
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            batch_size: 10,
            stale_after: Duration::from_secs(300),
            max_bytes: 100 * 1024 * 1024,
        }
    }

    fn delay(&self, attempts: u32) -> Duration {
        backoff_delay(self.backoff, self.max_backoff, attempts)
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchPass {
    pub claimed: usize,
    pub stored: usize,
    pub failed: usize,
    pub retry: usize,
    /// Rows whose outcome could not be recorded (fetched again once stale).
    pub unsettled: usize,
}

/// A claimed job.
#[derive(Debug)]
struct Job {
    job_id: i64,
    tenant: TenantId,
    media_ref: String,
    conversation_id: String,
    contact_id: String,
    message_ref: String,
    kind: MediaKind,
    content: Envelope,
    attempts: u32,
    correlation_id: String,
}

/// How one fetch ended.
enum Fetch {
    Bytes { bytes: Vec<u8>, mime_type: String },
    Refused(String),
    Retry(String),
}

/// The media fetcher.
#[derive(Clone)]
pub struct MediaFetcher {
    pool: PgPool,
    commands: Commands,
    master: MasterKey,
    graph: GraphApi,
    queue: Queue,
    admission: Admission,
    config: FetcherConfig,
}

impl fmt::Debug for MediaFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaFetcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MediaFetcher {
    /// A fetcher over the `media_jobs` of `commands`' pool, with data keys unwrapped by `master`.
    pub fn new(commands: Commands, master: MasterKey, config: FetcherConfig) -> Result<Self, CommandError> {
        let graph = GraphApi::new(&config.base_url, &config.access_token, config.request_timeout)
            .map_err(|e| CommandError::Unexpected(Box::new(e)))?;
        Ok(Self {
            pool: commands.pool().clone(),
            commands,
            master,
            graph,
            queue: Queue::new(
                "media_jobs",
                "job_id",
                "fetching",
                "job_id, tenant_id, media_ref, conversation_id, contact_id, message_ref, kind, content, attempts, \
                 correlation_id",
                Stale::Retry,
                "found fetching after its fetcher stopped",
            ),
            admission: Admission::new(
                "media_job_feed",
                "INSERT INTO media_jobs (tenant_id, media_ref, conversation_id, contact_id, message_ref, kind, content,
                                         correlation_id, event_position, state, last_error)
                 SELECT tenant_id, media_ref, conversation_id, contact_id, message_ref, kind, content, correlation_id,
                        event_position, coalesce(settled, 'pending'), settled_error
                   FROM new ORDER BY position
                 ON CONFLICT (tenant_id, media_ref) DO UPDATE
                    SET state = excluded.state, claimed_at = NULL, updated_at = now(),
                        last_error = coalesce(excluded.last_error, media_jobs.last_error),
                        -- Reopened by an operator (refetchMedia): a fresh start.
                        attempts = CASE WHEN excluded.state = 'pending' THEN 0 ELSE media_jobs.attempts END,
                        next_attempt_at = CASE WHEN excluded.state = 'pending' THEN now()
                                               ELSE media_jobs.next_attempt_at END
                  WHERE (excluded.state <> 'pending' AND media_jobs.state NOT IN ('stored', 'failed'))
                     OR (excluded.state = 'pending' AND media_jobs.state = 'failed')",
            ),
            config,
        })
    }

    /// Copies what the projector's feed gained into the fetcher's own table (every pass does it
    /// first). Returns how many feed rows were read.
    pub async fn admit(&self) -> Result<u64, CommandError> {
        Ok(self.admission.run(&self.pool).await?)
    }

    /// Puts rows left `fetching` by a stopped fetcher back to pending. Returns how many.
    pub async fn release_stale(&self) -> Result<u64, CommandError> {
        let released = self.queue.release_stale(&self.pool, self.config.stale_after).await?;
        if released > 0 {
            tracing::warn!(
                media.jobs = released,
                "media fetches left by a stopped fetcher; fetching again"
            );
        }
        Ok(released)
    }

    /// One pass: releases stale claims, then claims and works up to `batch_size` due rows, one
    /// at a time. A failure on one row is logged and does not stop the pass.
    pub async fn run_once(&self) -> Result<FetchPass, CommandError> {
        self.admit().await?;
        self.release_stale().await?;
        let mut pass = FetchPass::default();
        while pass.claimed < usize::try_from(self.config.batch_size).unwrap_or(1) {
            let Some(row) = self.queue.claim_one(&self.pool).await? else {
                break;
            };
            pass.claimed += 1;
            let job_id: i64 = row.try_get("job_id")?;
            let job = match decode(&row) {
                Ok(job) => job,
                Err(reason) => {
                    // A row this fetcher cannot read: never guess.
                    tracing::error!(media.job = job_id, reason = %reason, "an unreadable media job");
                    self.mark(job_id, "failed", Some(&reason)).await?;
                    pass.failed += 1;
                    continue;
                }
            };
            let span = tracing::info_span!(
                "media.fetch",
                tenant.id = %job.tenant,
                correlation.id = %job.correlation_id,
                media.job = job.job_id,
                media.attempt = job.attempts,
            );
            match self.work(&job).instrument(span).await {
                Ok(Settled::Stored) => pass.stored += 1,
                Ok(Settled::Failed) => pass.failed += 1,
                Ok(Settled::Retry) => pass.retry += 1,
                Err(e) => {
                    // The row stays `fetching` and is fetched again once stale.
                    tracing::error!(media.job = job_id, error = %e, "a media fetch could not be settled");
                    pass.unsettled += 1;
                }
            }
        }
        Ok(pass)
    }

    /// Passes until no due row is left (retries due later are left for later).
    pub async fn drain(&self) -> Result<FetchPass, CommandError> {
        let mut total = FetchPass::default();
        loop {
            let pass = self.run_once().await?;
            total.claimed += pass.claimed;
            total.stored += pass.stored;
            total.failed += pass.failed;
            total.retry += pass.retry;
            total.unsettled += pass.unsettled;
            if pass.claimed == 0 {
                return Ok(total);
            }
        }
    }

    /// Works the queue until `shutdown` turns true: a pass, then the next after `poll` (at
    /// once while rows keep coming). Failures are logged and retried on the next pass.
    pub async fn run(self, poll: Duration, shutdown: tokio::sync::watch::Receiver<bool>) {
        crate::workers::poll_until_shutdown("media", poll, shutdown, || async {
            let pass = self.run_once().await?;
            if pass.claimed > 0 {
                tracing::info!(
                    stored = pass.stored,
                    failed = pass.failed,
                    retry = pass.retry,
                    unsettled = pass.unsettled,
                    "media pass"
                );
            }
            Ok(pass.claimed as i64 >= self.config.batch_size)
        })
        .await
    }

    async fn work(&self, job: &Job) -> Result<Settled, CommandError> {
        let metadata = CommandMetadata {
            tenant_id: job.tenant.clone(),
            actor: Actor::System {
                component: COMPONENT.into(),
            },
            correlation_id: job.correlation_id.clone(),
            causation_id: format!("media-job-{}", job.job_id),
        };
        let key = load_key(&self.pool, &self.master, &job.tenant, &job.contact_id).await?;
        let media = key
            .as_ref()
            .and_then(|k| k.open(&job.tenant, &job.contact_id, &job.content).ok())
            .and_then(|json| serde_json::from_str::<Value>(&json).ok());
        let text = |name: &str| {
            media
                .as_ref()
                .and_then(|m| m[name].as_str())
                .map(str::to_string)
                .filter(|v| !v.trim().is_empty())
        };
        let request = RequestMediaFetch {
            media_ref: job.media_ref.clone(),
            conversation_id: job.conversation_id.clone(),
            contact_id: job.contact_id.clone(),
            message_ref: job.message_ref.clone(),
            kind: job.kind,
            mime_type: text("mime_type"),
            // An announced hash that is not one is no reason to lose the media: checked or not.
            expected_sha256: text("sha256").filter(|s| chronicle_domain::media::normalize_sha256(s).is_ok()),
            at: Utc::now(),
        };
        self.record(job, MediaCommand::RequestMediaFetch(request.clone()), &metadata)
            .await?;
        let (Some(key), Some(media_id)) = (key, text("id")) else {
            // Erased since the job was queued: the media id cannot be read any more.
            return self.fail(job, &metadata, "contact_erased".into(), false).await;
        };
        match self.fetch(&media_id).await {
            Fetch::Bytes { bytes, mime_type } => {
                let sha256 = hex::encode(Sha256::digest(&bytes));
                let expected = request
                    .expected_sha256
                    .as_deref()
                    .and_then(|s| chronicle_domain::media::normalize_sha256(s).ok());
                let matches = expected.as_deref().is_none_or(|e| e == sha256);
                if matches {
                    self.store(job, &key, &bytes, &sha256, &mime_type).await?;
                } else {
                    tracing::warn!("media bytes differ from the sha-256 WhatsApp announced; not stored");
                }
                let command = MediaCommand::RecordMediaFetched(RecordMediaFetched {
                    sha256,
                    size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                    mime_type,
                    storage_key: format!("media_blobs:{}", job.media_ref),
                    at: Utc::now(),
                });
                self.record(job, command, &metadata).await?;
                if matches {
                    self.mark(job.job_id, "stored", None).await?;
                    tracing::info!("media stored");
                    Ok(Settled::Stored)
                } else {
                    self.mark(job.job_id, "failed", Some(chronicle_domain::media::CHECKSUM_MISMATCH))
                        .await?;
                    Ok(Settled::Failed)
                }
            }
            Fetch::Refused(code) => {
                tracing::warn!(media.failure = %code, "the Graph API refused a media fetch");
                self.fail(job, &metadata, code, false).await
            }
            Fetch::Retry(code) => self.fail(job, &metadata, code, true).await,
        }
    }

    /// Records a failed attempt; a retryable one goes back to pending with backoff unless it
    /// was the last.
    async fn fail(
        &self,
        job: &Job,
        metadata: &CommandMetadata,
        code: String,
        retryable: bool,
    ) -> Result<Settled, CommandError> {
        let attempt = job.attempts.clamp(1, MAX_FETCH_ATTEMPTS);
        let last = attempt >= MAX_FETCH_ATTEMPTS;
        let delay = self.config.delay(attempt);
        let next = (retryable && !last)
            .then(|| Utc::now() + chrono::Duration::from_std(delay).unwrap_or_else(|_| chrono::Duration::seconds(300)));
        let command = MediaCommand::RecordMediaFetchFailed(RecordMediaFetchFailed {
            attempt,
            code: code.clone(),
            retryable,
            next_attempt_at: next,
            at: Utc::now(),
        });
        self.record(job, command, metadata).await?;
        if retryable && !last {
            sqlx::query(
                "UPDATE media_jobs SET state = 'pending', claimed_at = NULL, updated_at = now(), last_error = $2,
                        next_attempt_at = now() + make_interval(secs => $3)
                  WHERE job_id = $1 AND state = 'fetching'",
            )
            .bind(job.job_id)
            .bind(&code)
            .bind(delay.as_secs_f64())
            .execute(&self.pool)
            .await?;
            tracing::warn!(media.failure = %code, retry_in_ms = delay.as_millis() as u64, "media fetch failed; retrying");
            Ok(Settled::Retry)
        } else {
            if retryable {
                tracing::error!(media.failure = %code, attempts = attempt, "media fetch given up after retries");
            }
            self.mark(job.job_id, "failed", Some(&code)).await?;
            Ok(Settled::Failed)
        }
    }

    /// The media's URL from the Graph API, then its bytes.
    async fn fetch(&self, media_id: &str) -> Fetch {
        let described = match self.get(&self.graph.url(media_id)).await {
            Ok(response) => response,
            Err(fetch) => return fetch,
        };
        let described: Value = match described.json().await {
            Ok(v) => v,
            Err(_) => return Fetch::Retry("unreadable_media_description".into()),
        };
        let Some(download) = described["url"].as_str().filter(|u| !u.is_empty()) else {
            return Fetch::Refused("no_media_url".into());
        };
        let response = match self.get(download).await {
            Ok(response) => response,
            Err(fetch) => return fetch,
        };
        let mime_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| described["mime_type"].as_str().map(str::to_string))
            .unwrap_or_else(|| "application/octet-stream".into());
        if response
            .content_length()
            .is_some_and(|n| n > self.config.max_bytes as u64)
        {
            return Fetch::Refused("media_too_large".into());
        }
        match response.bytes().await {
            Ok(bytes) if bytes.len() > self.config.max_bytes => Fetch::Refused("media_too_large".into()),
            Ok(bytes) => Fetch::Bytes {
                bytes: bytes.to_vec(),
                mime_type,
            },
            Err(e) if e.is_timeout() => Fetch::Retry("timeout".into()),
            Err(_) => Fetch::Retry("broken_download".into()),
        }
    }

    /// One authenticated GET: the response of a 2xx, or how the attempt ended.
    async fn get(&self, url: &str) -> Result<reqwest::Response, Fetch> {
        let response = match self.graph.get(url).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Err(Fetch::Retry("timeout".into())),
            Err(e) if e.is_connect() => return Err(Fetch::Retry("connect".into())),
            Err(_) => return Err(Fetch::Retry("request_failed".into())),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let code = match body["error"]["code"].as_i64() {
            Some(provider) => format!("http_{}:{provider}", status.as_u16()),
            None => format!("http_{}", status.as_u16()),
        };
        if is_retryable(status) {
            Err(Fetch::Retry(code))
        } else {
            Err(Fetch::Refused(code))
        }
    }

    /// Stores the bytes sealed under the contact's key (a repeat overwrites the same media).
    async fn store(
        &self,
        job: &Job,
        key: &DataKey,
        bytes: &[u8],
        sha256: &str,
        mime_type: &str,
    ) -> Result<(), CommandError> {
        let sealed = key.seal_bytes(&job.tenant, &job.contact_id, bytes, &mut OsRng);
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT set_config('chronicle.tenant_id', $1, true)")
            .bind(job.tenant.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO media_blobs (tenant_id, media_ref, contact_id, ciphertext, sha256, size, mime_type)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, media_ref) DO UPDATE SET
                    ciphertext = EXCLUDED.ciphertext, sha256 = EXCLUDED.sha256, size = EXCLUDED.size,
                    mime_type = EXCLUDED.mime_type, stored_at = now()",
        )
        .bind(job.tenant.as_str())
        .bind(&job.media_ref)
        .bind(&job.contact_id)
        .bind(sealed)
        .bind(sha256)
        .bind(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
        .bind(mime_type)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Runs a media command, retrying transient failures a few times.
    async fn record(&self, job: &Job, command: MediaCommand, metadata: &CommandMetadata) -> Result<(), CommandError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.commands.media(&job.media_ref, command.clone(), metadata).await {
                Ok(_) => return Ok(()),
                Err(CommandError::Rejected(e)) => return Err(CommandError::Rejected(e)),
                Err(e) if tries >= 3 => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "recording a media outcome failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
            }
        }
    }

    async fn mark(&self, job_id: i64, state: &str, error: Option<&str>) -> Result<(), CommandError> {
        sqlx::query(
            "UPDATE media_jobs SET state = $2, claimed_at = NULL, updated_at = now(), last_error = coalesce($3, last_error)
              WHERE job_id = $1 AND state = 'fetching'",
        )
        .bind(job_id)
        .bind(state)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// How a claimed job ended.
enum Settled {
    Stored,
    Failed,
    Retry,
}

fn decode(row: &sqlx::postgres::PgRow) -> Result<Job, String> {
    let get_text = |name: &str| row.try_get::<String, _>(name).map_err(|e| e.to_string());
    let tenant = TenantId::parse(&get_text("tenant_id")?).map_err(|e| e.to_string())?;
    let content: Value = row.try_get("content").map_err(|e| e.to_string())?;
    let kind = get_text("kind")?;
    let attempts: i32 = row.try_get("attempts").map_err(|e| e.to_string())?;
    Ok(Job {
        job_id: row.try_get("job_id").map_err(|e| e.to_string())?,
        tenant,
        media_ref: get_text("media_ref")?,
        conversation_id: get_text("conversation_id")?,
        contact_id: get_text("contact_id")?,
        message_ref: get_text("message_ref")?,
        kind: MediaKind::from_whatsapp(&kind).ok_or_else(|| format!("not a media kind: {kind}"))?,
        content: serde_json::from_value(content).map_err(|e| format!("content: {e}"))?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        correlation_id: get_text("correlation_id")?,
    })
}

/// Fetches again, on an operator's word, a media whose fetch failed (a 4xx, a checksum
/// mismatch) or was given up after retries: WhatsApp keeps media for a while, and what failed
/// may be there now. The decision is recorded on the media (`MediaRefetchRequested`, with who
/// decided and the failure it follows); the `media` projector reopens the media's feed row, and
/// the fetcher's admission puts its own failed row back to pending with its attempts from zero
/// (the log decides, so a crash right after the decision loses nothing). Refused:
/// `MEDIA_NOT_REQUESTED` (no such media), `MEDIA_ALREADY_STORED`, `MEDIA_FETCH_IN_PROGRESS` (the
/// fetch is still going, or the fetcher has not settled its row yet), `MISSING_IDEMPOTENCY_KEY`.
/// The same key again records nothing.
pub async fn refetch(
    commands: &Commands,
    media_ref: &str,
    idempotency_key: &str,
    metadata: &CommandMetadata,
) -> Result<crate::dispatch::Appended, CommandError> {
    // The fetcher's row is held for the whole decision and must be settled `failed`: while it
    // is `fetching`, an outcome of the old round may still be on its way into the log.
    let mut tx = commands.pool().begin().await?;
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM media_jobs WHERE tenant_id = $1 AND media_ref = $2 FOR UPDATE")
            .bind(metadata.tenant_id.as_str())
            .bind(media_ref)
            .fetch_optional(&mut *tx)
            .await?;
    let by = match &metadata.actor {
        Actor::User { user_id, .. } => user_id.clone(),
        Actor::ApiKey { key_id } => key_id.clone(),
        Actor::System { component } => component.clone(),
    };
    let command = MediaCommand::RequestMediaRefetch(RequestMediaRefetch {
        key: idempotency_key.to_string(),
        by,
        at: Utc::now(),
    });
    // The log's own answer first (refusals, or a repeated key), decided without recording.
    let present = commands.load_media(&metadata.tenant_id, media_ref).await?;
    let decided = present
        .decide(command.clone())
        .map_err(|e| CommandError::Rejected(DomainError::Media(e)))?;
    if decided.is_some() && state.as_deref() != Some("failed") {
        return Err(CommandError::Rejected(DomainError::Media(
            MediaError::MediaFetchInProgress,
        )));
    }
    let appended = commands.media(media_ref, command, metadata).await?;
    tx.commit().await?;
    Ok(appended)
}

/// A contact's data key if it still exists (never created: reading must not revive an erased
/// contact's key).
async fn load_key(
    pool: &PgPool,
    master: &MasterKey,
    tenant: &TenantId,
    contact_id: &str,
) -> Result<Option<DataKey>, CommandError> {
    let wrapped: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT wrapped_key FROM contact_keys WHERE tenant_id = $1 AND contact_id = $2")
            .bind(tenant.as_str())
            .bind(contact_id)
            .fetch_optional(pool)
            .await?;
    Ok(wrapped.and_then(|w| master.unwrap_key(&w, tenant, contact_id).ok()))
}

/// A stored media object, opened.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaBlob {
    /// The contact whose data key sealed it.
    pub contact_id: String,
    pub bytes: Vec<u8>,
    pub mime_type: String,
    /// Lowercase hex sha-256 of `bytes`, as recorded.
    pub sha256: String,
}

impl fmt::Debug for MediaBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaBlob({} bytes, {})", self.bytes.len(), self.mime_type)
    }
}

/// What reading a stored media object found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaRead {
    Found(MediaBlob),
    /// No such media stored for the tenant.
    NotFound,
    /// The contact was erased: the bytes are noise.
    Erased,
}

/// Reads and opens a tenant's stored media (row-level security scoped to `tenant`).
pub async fn read_media(
    pool: &PgPool,
    master: &MasterKey,
    tenant: &TenantId,
    media_ref: &str,
) -> Result<MediaRead, CommandError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('chronicle.tenant_id', $1, true)")
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(
        "SELECT contact_id, ciphertext, sha256, mime_type FROM media_blobs WHERE tenant_id = $1 AND media_ref = $2",
    )
    .bind(tenant.as_str())
    .bind(media_ref)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let Some(row) = row else {
        return Ok(MediaRead::NotFound);
    };
    let contact_id: String = row.try_get("contact_id")?;
    let sealed: Vec<u8> = row.try_get("ciphertext")?;
    let Some(key) = load_key(pool, master, tenant, &contact_id).await? else {
        return Ok(MediaRead::Erased);
    };
    match key.open_bytes(tenant, &contact_id, &sealed) {
        Ok(bytes) => Ok(MediaRead::Found(MediaBlob {
            contact_id: contact_id.clone(),
            bytes,
            mime_type: row.try_get("mime_type")?,
            sha256: row.try_get("sha256")?,
        })),
        Err(_) => Ok(MediaRead::Erased),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut config = FetcherConfig::new("http://x", "t");
        config.backoff = Duration::from_secs(2);
        config.max_backoff = Duration::from_secs(10);
        assert_eq!(config.delay(1), Duration::from_secs(2));
        assert_eq!(config.delay(2), Duration::from_secs(4));
        assert_eq!(config.delay(4), Duration::from_secs(10));
        assert_eq!(config.delay(100), Duration::from_secs(10));
    }

    #[test]
    fn the_access_token_never_shows_in_debug_output() {
        let config = FetcherConfig::new("http://x", "secret-token");
        assert!(!format!("{config:?}").contains("secret-token"));
    }
}
