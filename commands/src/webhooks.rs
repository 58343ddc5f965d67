//! Webhook endpoints (issue 13): created, rotated, disabled, enabled and deleted as events of the
//! `WebhookEndpoint` aggregate, with their secrets and delivery state beside the log
//! (`webhook_endpoints`, `webhook_deliveries`, decision 0016). The dispatcher (the API's
//! `webhooks` module) reads the log and calls the endpoints; everything it writes goes through
//! here.
//!
//! Secrets are Standard Webhooks secrets: `whsec_` and the base64 of 32 random bytes, shown once
//! (at creation and at each rotation), stored sealed under a data key that the master key wraps.
//!
//! Order of writes, as for API keys: creating appends the event first and stores the row after
//! (a failure between leaves an endpoint in the log that nothing delivers to); disabling and
//! deleting mark the row first and append after (delivery stops from the attempt on); enabling
//! appends first and marks after.

use base64::Engine;
use chronicle_domain::metadata::CommandMetadata;
use chronicle_domain::pii::{DataKey, Envelope, MasterKey};
use chronicle_domain::tenant::TenantId;
use chronicle_domain::webhook::{WebhookCommand, WebhookError, MAX_ENDPOINTS_PER_TENANT};
use chrono::{DateTime, Utc};
use rand::rngs::OsRng;
use rand::RngCore;
use sqlx::PgPool;

use crate::api_keys::fresh_id;
use crate::dispatch::{Appended, Commands};
use crate::error::{CommandError, DomainError};

/// A log position: `(tx_id, global_position)`, as the log's cursors order it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPoint {
    pub tx_id: u64,
    pub position: i64,
}

/// What a new endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEndpoint {
    pub url: String,
    /// Empty: every event type.
    pub event_types: Vec<String>,
    pub description: Option<String>,
    /// Deliver the events after this point (the log's head when it is created).
    pub start_after: LogPoint,
}

/// An endpoint as listed, and as the dispatcher works it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    pub endpoint_id: String,
    pub tenant: TenantId,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub cursor: LogPoint,
    pub failures: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

type RawRow = (
    String,
    String,
    String,
    Vec<String>,
    Option<String>,
    bool,
    Option<String>,
    String,
    i64,
    i32,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
    String,
);

const ROW_COLUMNS: &str = "endpoint_id, tenant_id, url, event_types, description, enabled, disabled_reason, \
     cursor_tx, cursor_position, failures, next_attempt_at, created_at, created_by";

fn row(raw: RawRow) -> Result<EndpointRow, sqlx::Error> {
    let (
        endpoint_id,
        tenant,
        url,
        event_types,
        description,
        enabled,
        disabled_reason,
        tx,
        position,
        failures,
        next_attempt_at,
        created_at,
        created_by,
    ) = raw;
    let decode = |e: String| sqlx::Error::Decode(e.into());
    Ok(EndpointRow {
        endpoint_id,
        tenant: TenantId::parse(&tenant).map_err(|e| decode(e.to_string()))?,
        url,
        event_types,
        description,
        enabled,
        disabled_reason,
        cursor: LogPoint {
            tx_id: tx.parse().map_err(|_| decode(format!("cursor_tx {tx:?}")))?,
            position,
        },
        failures,
        next_attempt_at,
        created_at,
        created_by,
    })
}

/// One attempt, as the dispatcher records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub endpoint_id: String,
    pub tenant: TenantId,
    pub message_id: String,
    pub event_type: String,
    /// The event delivered (`None` for a test delivery).
    pub event: Option<(LogPoint, String)>,
    pub attempt: i32,
    pub manual: bool,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: i32,
    pub succeeded: bool,
}

/// A recorded attempt, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryRow {
    pub delivery_id: i64,
    pub endpoint_id: String,
    pub message_id: String,
    pub event_type: String,
    pub event_position: Option<i64>,
    pub event_cursor: Option<String>,
    pub attempt: i32,
    pub manual: bool,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub latency_ms: i32,
    pub succeeded: bool,
    pub at: DateTime<Utc>,
}

/// A fresh Standard Webhooks secret: `whsec_` and the base64 of 32 random bytes.
fn fresh_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The URL as the log records it: without user information, query or fragment, where
/// receivers often put tokens (every reader of the log would see them). The table keeps it whole.
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => url.to_string(),
    }
}

fn binding(endpoint_id: &str) -> String {
    format!("webhook:{endpoint_id}")
}

fn unexpected(e: impl std::error::Error + Send + Sync + 'static) -> CommandError {
    CommandError::Unexpected(Box::new(e))
}

fn unknown() -> CommandError {
    CommandError::Rejected(DomainError::Webhook(WebhookError::UnknownWebhook))
}

impl Commands {
    /// Creates an endpoint: the `WebhookEndpointCreated` event, then the row with its sealed
    /// secret. Answers the endpoint's id and its secret (the only time it is seen). Refused
    /// with `TOO_MANY_WEBHOOKS` when the tenant has [`MAX_ENDPOINTS_PER_TENANT`] endpoints
    /// already (two creations at the same moment may both pass the count: the cap can be
    /// exceeded by the number of concurrent creations, never more).
    pub async fn create_webhook(
        &self,
        master: &MasterKey,
        new: NewEndpoint,
        metadata: &CommandMetadata,
    ) -> Result<(String, String, Appended), CommandError> {
        let existing: i64 =
            sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1 AND NOT deleted")
                .bind(metadata.tenant_id.as_str())
                .fetch_one(self.pool())
                .await?;
        if existing >= MAX_ENDPOINTS_PER_TENANT {
            return Err(CommandError::Rejected(DomainError::Webhook(
                WebhookError::TooManyWebhooks {
                    limit: MAX_ENDPOINTS_PER_TENANT,
                },
            )));
        }
        let endpoint_id = format!("whk_{}", fresh_id());
        let at = Utc::now();
        let appended = self
            .webhook(
                &endpoint_id,
                WebhookCommand::CreateWebhookEndpoint {
                    url: shown_url(new.url.trim()),
                    event_types: new.event_types.clone(),
                    description: new.description.clone(),
                    at,
                },
                metadata,
            )
            .await?;
        let tenant = &metadata.tenant_id;
        let secret = fresh_secret();
        let key = DataKey::generate(&mut OsRng);
        let sealed = key.seal(tenant, &binding(&endpoint_id), &secret, &mut OsRng);
        let wrapped = master.wrap(&key, tenant, &binding(&endpoint_id), &mut OsRng);
        let mut types: Vec<String> = new.event_types.iter().map(|t| t.trim().to_string()).collect();
        types.sort_unstable();
        types.dedup();
        sqlx::query(
            "INSERT INTO webhook_endpoints (endpoint_id, tenant_id, url, event_types, description, wrapped_key, \
               sealed_secret, cursor_tx, cursor_position, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&endpoint_id)
        .bind(tenant.as_str())
        .bind(new.url.trim())
        .bind(&types)
        .bind(new.description.as_deref().map(str::trim).filter(|d| !d.is_empty()))
        .bind(wrapped)
        .bind(serde_json::to_value(&sealed).map_err(unexpected)?)
        .bind(new.start_after.tx_id.to_string())
        .bind(new.start_after.position)
        .bind(metadata.actor.to_string())
        .execute(self.pool())
        .await?;
        Ok((endpoint_id, secret, appended))
    }

    /// Replaces an endpoint's secret; the previous one keeps signing (beside the new one) until
    /// `previous_valid_until`. Answers the new secret.
    pub async fn rotate_webhook_secret(
        &self,
        master: &MasterKey,
        endpoint_id: &str,
        previous_valid_until: DateTime<Utc>,
        metadata: &CommandMetadata,
    ) -> Result<(String, Appended), CommandError> {
        let tenant = &metadata.tenant_id;
        let wrapped: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT wrapped_key FROM webhook_endpoints WHERE endpoint_id = $1 AND tenant_id = $2 AND NOT deleted",
        )
        .bind(endpoint_id)
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await?;
        let wrapped = wrapped.ok_or_else(unknown)?;
        let appended = self
            .webhook(
                endpoint_id,
                WebhookCommand::RotateWebhookSecret {
                    previous_valid_until,
                    at: Utc::now(),
                },
                metadata,
            )
            .await?;
        let key = master
            .unwrap_key(&wrapped, tenant, &binding(endpoint_id))
            .map_err(unexpected)?;
        let secret = fresh_secret();
        let sealed = key.seal(tenant, &binding(endpoint_id), &secret, &mut OsRng);
        sqlx::query(
            "UPDATE webhook_endpoints SET previous_sealed = sealed_secret, previous_valid_until = $3, sealed_secret = $4 \
             WHERE endpoint_id = $1 AND tenant_id = $2",
        )
        .bind(endpoint_id)
        .bind(tenant.as_str())
        .bind(previous_valid_until)
        .bind(serde_json::to_value(&sealed).map_err(unexpected)?)
        .execute(self.pool())
        .await?;
        Ok((secret, appended))
    }

    /// Stops deliveries (marked first, then the event). `automatic`: after persistent failure.
    pub async fn disable_webhook(
        &self,
        endpoint_id: &str,
        reason: &str,
        automatic: bool,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let marked = sqlx::query(
            "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $3 \
             WHERE endpoint_id = $1 AND tenant_id = $2 AND NOT deleted",
        )
        .bind(endpoint_id)
        .bind(metadata.tenant_id.as_str())
        .bind(reason)
        .execute(self.pool())
        .await?;
        if marked.rows_affected() == 0 {
            return Err(unknown());
        }
        self.webhook(
            endpoint_id,
            WebhookCommand::DisableWebhookEndpoint {
                reason: reason.to_string(),
                automatic,
                at: Utc::now(),
            },
            metadata,
        )
        .await
    }

    /// Resumes deliveries from the endpoint's checkpoint, with its failures forgotten.
    pub async fn enable_webhook(
        &self,
        endpoint_id: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let appended = self
            .webhook(
                endpoint_id,
                WebhookCommand::EnableWebhookEndpoint { at: Utc::now() },
                metadata,
            )
            .await?;
        sqlx::query(
            "UPDATE webhook_endpoints SET enabled = true, disabled_reason = NULL, failures = 0, next_attempt_at = NULL \
             WHERE endpoint_id = $1 AND tenant_id = $2 AND NOT deleted",
        )
        .bind(endpoint_id)
        .bind(metadata.tenant_id.as_str())
        .execute(self.pool())
        .await?;
        Ok(appended)
    }

    /// Deletes an endpoint (marked first, then the event): nothing more is delivered to it.
    pub async fn delete_webhook(
        &self,
        endpoint_id: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let marked = sqlx::query(
            "UPDATE webhook_endpoints SET deleted = true, enabled = false \
             WHERE endpoint_id = $1 AND tenant_id = $2 AND NOT deleted",
        )
        .bind(endpoint_id)
        .bind(metadata.tenant_id.as_str())
        .execute(self.pool())
        .await?;
        if marked.rows_affected() == 0 {
            return Err(unknown());
        }
        self.webhook(
            endpoint_id,
            WebhookCommand::DeleteWebhookEndpoint { at: Utc::now() },
            metadata,
        )
        .await
    }
}

/// The tenant's endpoints, newest first, a page at a time (deleted ones left out).
pub async fn endpoints(
    pool: &PgPool,
    tenant: &TenantId,
    before: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let (at, id) = before.unzip();
    let raws: Vec<RawRow> = sqlx::query_as(&format!(
        "SELECT {ROW_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND NOT deleted \
           AND ($2::timestamptz IS NULL OR (created_at, endpoint_id) < ($2, $3)) \
         ORDER BY created_at DESC, endpoint_id DESC LIMIT $4"
    ))
    .bind(tenant.as_str())
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    raws.into_iter().map(row).collect()
}

/// The tenant's endpoint `endpoint_id` (not deleted), if any.
pub async fn endpoint(pool: &PgPool, tenant: &TenantId, endpoint_id: &str) -> Result<Option<EndpointRow>, sqlx::Error> {
    let raw: Option<RawRow> = sqlx::query_as(&format!(
        "SELECT {ROW_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND endpoint_id = $2 AND NOT deleted"
    ))
    .bind(tenant.as_str())
    .bind(endpoint_id)
    .fetch_optional(pool)
    .await?;
    raw.map(row).transpose()
}

/// Enabled endpoints whose next attempt is due at `now`, by id, `limit` after the id `after`
/// (a pass over every due endpoint pages through them all, so none waits behind others).
pub async fn due(
    pool: &PgPool,
    now: DateTime<Utc>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let raws: Vec<RawRow> = sqlx::query_as(&format!(
        "SELECT {ROW_COLUMNS} FROM webhook_endpoints \
         WHERE enabled AND NOT deleted AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
           AND ($2::text IS NULL OR endpoint_id > $2) \
         ORDER BY endpoint_id LIMIT $3"
    ))
    .bind(now)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    raws.into_iter().map(row).collect()
}

/// The secrets that sign a delivery to `endpoint_id` at `now`: the current one, and the
/// previous one while its grace period lasts (as raw bytes, without `whsec_`).
pub async fn signing_secrets(
    pool: &PgPool,
    master: &MasterKey,
    tenant: &TenantId,
    endpoint_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Vec<u8>>, CommandError> {
    type Row = (
        Vec<u8>,
        serde_json::Value,
        Option<serde_json::Value>,
        Option<DateTime<Utc>>,
    );
    let found: Option<Row> = sqlx::query_as(
        "SELECT wrapped_key, sealed_secret, previous_sealed, previous_valid_until FROM webhook_endpoints \
         WHERE endpoint_id = $1 AND tenant_id = $2",
    )
    .bind(endpoint_id)
    .bind(tenant.as_str())
    .fetch_optional(pool)
    .await?;
    let (wrapped, sealed, previous, valid_until) = found.ok_or_else(unknown)?;
    let key = master
        .unwrap_key(&wrapped, tenant, &binding(endpoint_id))
        .map_err(unexpected)?;
    let open = |value: serde_json::Value| -> Result<Vec<u8>, CommandError> {
        let envelope: Envelope = serde_json::from_value(value).map_err(unexpected)?;
        let secret = key.open(tenant, &binding(endpoint_id), &envelope).map_err(unexpected)?;
        base64::engine::general_purpose::STANDARD
            .decode(secret.trim_start_matches("whsec_"))
            .map_err(unexpected)
    };
    let mut secrets = vec![open(sealed)?];
    if let (Some(previous), Some(until)) = (previous, valid_until) {
        if until > now {
            secrets.push(open(previous)?);
        }
    }
    Ok(secrets)
}

/// Records an attempt in the delivery log.
pub async fn record_attempt(pool: &PgPool, attempt: &Attempt) -> Result<(), sqlx::Error> {
    let (position, cursor) = attempt
        .event
        .as_ref()
        .map(|(point, cursor)| (point.position, cursor.clone()))
        .unzip();
    sqlx::query(
        "INSERT INTO webhook_deliveries (endpoint_id, tenant_id, message_id, event_type, event_position, event_cursor, \
           attempt, manual, status_code, error, latency_ms, succeeded) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&attempt.endpoint_id)
    .bind(attempt.tenant.as_str())
    .bind(&attempt.message_id)
    .bind(&attempt.event_type)
    .bind(position)
    .bind(cursor)
    .bind(attempt.attempt)
    .bind(attempt.manual)
    .bind(attempt.status_code.map(i32::from))
    .bind(&attempt.error)
    .bind(attempt.latency_ms)
    .bind(attempt.succeeded)
    .execute(pool)
    .await?;
    Ok(())
}

/// Moves the endpoint's checkpoint to `to` (an event delivered, or the end of a stretch of the
/// log holding no event it wants) and forgets its failures. Only forward, and only from `from` (another dispatcher that moved
/// it meanwhile wins).
pub async fn advance(pool: &PgPool, endpoint_id: &str, from: LogPoint, to: LogPoint) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE webhook_endpoints SET cursor_tx = $4, cursor_position = $5, failures = 0, next_attempt_at = NULL \
         WHERE endpoint_id = $1 AND cursor_tx = $2 AND cursor_position = $3",
    )
    .bind(endpoint_id)
    .bind(from.tx_id.to_string())
    .bind(from.position)
    .bind(to.tx_id.to_string())
    .bind(to.position)
    .execute(pool)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// Notes a failed attempt: `failures` in a row, the next attempt not before `next_attempt_at`.
pub async fn failed(
    pool: &PgPool,
    endpoint_id: &str,
    failures: i32,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_endpoints SET failures = $2, next_attempt_at = $3 WHERE endpoint_id = $1")
        .bind(endpoint_id)
        .bind(failures)
        .bind(next_attempt_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// A page of an endpoint's delivery log, newest first.
pub async fn deliveries(
    pool: &PgPool,
    tenant: &TenantId,
    endpoint_id: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, endpoint_id, message_id, event_type, event_position, event_cursor, attempt, manual, \
                status_code, error, latency_ms, succeeded, at \
         FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2 \
           AND ($3::bigint IS NULL OR delivery_id < $3) \
         ORDER BY delivery_id DESC LIMIT $4",
    )
    .bind(tenant.as_str())
    .bind(endpoint_id)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_whsec_and_32_bytes_of_base64() {
        let secret = fresh_secret();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(secret.trim_start_matches("whsec_"))
            .unwrap_or_default();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(raw.len(), 32);
        assert_ne!(fresh_secret(), secret);
        assert_eq!(fresh_id().len(), 16);
    }

    #[test]
    fn the_logged_url_keeps_no_credentials_query_or_fragment() {
        assert_eq!(
            shown_url("https://user:pw@crm.example:8443/hook/1?token=s3cret#x"),
            "https://crm.example:8443/hook/1"
        );
        assert_eq!(shown_url("https://crm.example/hook"), "https://crm.example/hook");
    }
}
