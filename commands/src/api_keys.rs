//! API keys for programs (issue 13): issued by owners and admins with a role and scopes, shown
//! once, stored hashed, revoked at once, expiring, with their last use tracked.
//!
//! A key reads `chr_<16 base32 characters>_<43 base64url characters>`: the first part is the
//! key's id (`key_<16 characters>`) behind a visible prefix (`chr_<16 characters>`) people use
//! to tell keys apart; the second is 256 random bits. The `ApiKey` aggregate records the
//! issue and the revocation as events (without the secret); the credential table
//! `api_key_credentials` (decision 0015) keeps the secret's SHA-256 with the role, scopes,
//! expiry and revocation a request is checked against.
//!
//! Order of writes: an issue appends its event first and stores the credential after, so a
//! key exists for a request only once its issue is in the log (a failure between leaves an
//! event for a key nobody holds and that no request can use); a revocation marks the
//! credential first and appends its event after, so a key is refused from the moment its
//! revocation is attempted, and a retried revocation appends the event a failure left out.

use chronicle_domain::api_key::{ApiKeyCommand, ApiKeyError, ApiKeyScope, IssueApiKey};
use chronicle_domain::crypto::constant_time_eq;
use chronicle_domain::metadata::CommandMetadata;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::dispatch::{Appended, Commands};
use crate::error::{CommandError, DomainError};

/// How stale `last_used_at` may be: a key used more often costs no write per request.
pub const LAST_USED_RESOLUTION_SECS: i64 = 60;

/// What an issuer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequest {
    pub name: String,
    /// A role name of DOMAIN.md; the caller checks it is a role and that the issuer may give it.
    pub role: String,
    pub scopes: Vec<ApiKeyScope>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key just issued: the only time its secret is seen.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// `key_<16 characters>`, the stream's local id and the key's name in `api_key:<id>` actors.
    pub key_id: String,
    /// `chr_<16 characters>`: the visible start of the key.
    pub prefix: String,
    /// The whole key, to be handed to the program (never stored, never logged).
    pub secret: String,
    pub appended: Appended,
}

impl std::fmt::Display for IssuedKey {
    /// The key's id only: the secret never reaches a log line by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key_id)
    }
}

/// A key as a request presents it, once checked: who is calling and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCredential {
    pub key_id: String,
    pub tenant: TenantId,
    pub role: String,
    pub scopes: Vec<ApiKeyScope>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a presented key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    /// Not a key of this form, no such key, or the wrong secret (one answer for all three).
    #[error("the API key is not valid")]
    NotValid,
    /// The key was revoked.
    #[error("the API key was revoked")]
    Revoked,
    /// The key's expiry has passed.
    #[error("the API key has expired")]
    Expired,
}

/// A key as listed to the tenant's owners and admins (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyRow {
    pub key_id: String,
    pub name: String,
    pub role: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub issued_at: DateTime<Utc>,
    pub issued_by: String,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl KeyRow {
    /// The visible start of the key.
    pub fn prefix(&self) -> String {
        prefix_of(&self.key_id)
    }
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// 16 characters of lower-case base32 from 10 random bytes (80 bits: ids never collide): the
/// id of an API key (`key_…`) and of a webhook endpoint (`whk_…`).
pub(crate) fn fresh_id() -> String {
    let mut bytes = [0u8; 10];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut bits: u128 = 0;
    for b in bytes {
        bits = (bits << 8) | u128::from(b);
    }
    (0..16)
        .rev()
        .map(|i| char::from(BASE32[((bits >> (i * 5)) & 31) as usize]))
        .collect()
}

fn prefix_of(key_id: &str) -> String {
    format!("chr_{}", key_id.trim_start_matches("key_"))
}

fn sha256(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// The key id and secret of a presented key, if it has the form of one.
fn split(presented: &str) -> Option<(String, &str)> {
    let rest = presented.strip_prefix("chr_")?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == 16 && id.bytes().all(|b| BASE32.contains(&b));
    let secret_ok = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then(|| (format!("key_{id}"), secret))
}

/// Whether `presented` has the form of an API key (rather than an access token).
pub fn looks_like_key(presented: &str) -> bool {
    presented.starts_with("chr_")
}

impl Commands {
    /// Issues a key: the `ApiKeyIssued` event, then the credential. The returned secret is the
    /// only copy.
    pub async fn issue_api_key(
        &self,
        request: KeyRequest,
        metadata: &CommandMetadata,
    ) -> Result<IssuedKey, CommandError> {
        use base64::Engine;
        let key_id = format!("key_{}", fresh_id());
        let prefix = prefix_of(&key_id);
        let mut random = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let secret_part = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
        let secret = format!("{prefix}_{secret_part}");
        let at = Utc::now();
        let appended = self
            .api_key(
                &key_id,
                ApiKeyCommand::IssueApiKey(IssueApiKey {
                    name: request.name.clone(),
                    prefix: prefix.clone(),
                    role: request.role.clone(),
                    scopes: request.scopes.clone(),
                    expires_at: request.expires_at,
                    at,
                }),
                metadata,
            )
            .await?;
        let mut scopes: Vec<String> = request.scopes.iter().map(|s| s.as_str().to_string()).collect();
        scopes.sort_unstable();
        scopes.dedup();
        // The name as the event holds it (the aggregate trims it).
        let name = request.name.trim().to_string();
        sqlx::query(
            "INSERT INTO api_key_credentials \
               (key_id, tenant_id, secret_sha256, name, role, scopes, expires_at, issued_at, issued_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&key_id)
        .bind(metadata.tenant_id.as_str())
        .bind(sha256(&secret_part))
        .bind(&name)
        .bind(&request.role)
        .bind(&scopes)
        .bind(request.expires_at)
        .bind(at)
        .bind(metadata.actor.to_string())
        .execute(self.pool())
        .await?;
        Ok(IssuedKey {
            key_id,
            prefix,
            secret,
            appended,
        })
    }

    /// Revokes the tenant's key `key_id`: refused from now on (the credential is marked
    /// first), then the `ApiKeyRevoked` event. Revoking a revoked key changes nothing.
    pub async fn revoke_api_key(
        &self,
        key_id: &str,
        reason: Option<String>,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let marked = sqlx::query(
            "UPDATE api_key_credentials SET revoked_at = coalesce(revoked_at, now()), \
                    revoked_by = coalesce(revoked_by, $3) \
             WHERE key_id = $1 AND tenant_id = $2",
        )
        .bind(key_id)
        .bind(metadata.tenant_id.as_str())
        .bind(metadata.actor.to_string())
        .execute(self.pool())
        .await?;
        if marked.rows_affected() == 0 {
            return Err(CommandError::Rejected(DomainError::ApiKey(ApiKeyError::UnknownApiKey)));
        }
        self.api_key(key_id, ApiKeyCommand::RevokeApiKey { reason, at: Utc::now() }, metadata)
            .await
    }
}

/// Checks a presented key: its form, its secret (compared in constant time), its revocation
/// and expiry as of `now`. Records its use (at most once a minute).
pub async fn authenticate(pool: &PgPool, presented: &str, now: DateTime<Utc>) -> Result<KeyCredential, KeyError> {
    let (key_id, secret) = split(presented).ok_or(KeyError::Refused(KeyRefusal::NotValid))?;
    type Row = (
        String,
        Vec<u8>,
        String,
        Vec<String>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT tenant_id, secret_sha256, role, scopes, expires_at, revoked_at \
         FROM api_key_credentials WHERE key_id = $1",
    )
    .bind(&key_id)
    .fetch_optional(pool)
    .await?;
    let Some((tenant, hash, role, scopes, expires_at, revoked_at)) = row else {
        return Err(KeyError::Refused(KeyRefusal::NotValid));
    };
    if !constant_time_eq(&hash, &sha256(secret)) {
        return Err(KeyError::Refused(KeyRefusal::NotValid));
    }
    if revoked_at.is_some() {
        return Err(KeyError::Refused(KeyRefusal::Revoked));
    }
    if expires_at.is_some_and(|expiry| expiry <= now) {
        return Err(KeyError::Refused(KeyRefusal::Expired));
    }
    let tenant = TenantId::parse(&tenant).map_err(|_| KeyError::Refused(KeyRefusal::NotValid))?;
    sqlx::query(
        "UPDATE api_key_credentials SET last_used_at = $2 \
         WHERE key_id = $1 AND (last_used_at IS NULL OR last_used_at < $2 - make_interval(secs => $3))",
    )
    .bind(&key_id)
    .bind(now)
    .bind(LAST_USED_RESOLUTION_SECS as f64)
    .execute(pool)
    .await?;
    Ok(KeyCredential {
        key_id,
        tenant,
        role,
        // A scope the table holds is one the aggregate accepted: an unknown name (a scope
        // retired since) grants nothing.
        scopes: scopes.iter().filter_map(|s| ApiKeyScope::parse(s)).collect(),
        expires_at,
    })
}

/// Why the key `key_id` would be refused at `now`, or `None` while it is usable: what an
/// open subscription checks to end when its key is revoked or expires. A key that is no
/// longer stored is `NotValid`.
pub async fn refusal_at(pool: &PgPool, key_id: &str, now: DateTime<Utc>) -> Result<Option<KeyRefusal>, sqlx::Error> {
    type Row = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let row: Option<Row> = sqlx::query_as("SELECT revoked_at, expires_at FROM api_key_credentials WHERE key_id = $1")
        .bind(key_id)
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        None => Some(KeyRefusal::NotValid),
        Some((Some(_), _)) => Some(KeyRefusal::Revoked),
        Some((None, Some(expiry))) if expiry <= now => Some(KeyRefusal::Expired),
        Some(_) => None,
    })
}

/// A page of the tenant's keys, newest first (revoked ones included): `limit` keys issued
/// before the key at (`before_at`, `before_id`), or the newest when both are `None`.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    before: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<KeyRow>, sqlx::Error> {
    let (at, id) = before.unzip();
    sqlx::query_as(
        "SELECT key_id, name, role, scopes, expires_at, issued_at, issued_by, revoked_at, revoked_by, last_used_at \
         FROM api_key_credentials WHERE tenant_id = $1 \
           AND ($2::timestamptz IS NULL OR (issued_at, key_id) < ($2, $3)) \
         ORDER BY issued_at DESC, key_id DESC LIMIT $4",
    )
    .bind(tenant.as_str())
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The tenant's key `key_id`, if it has it.
pub async fn find(pool: &PgPool, tenant: &TenantId, key_id: &str) -> Result<Option<KeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT key_id, name, role, scopes, expires_at, issued_at, issued_by, revoked_at, revoked_by, last_used_at \
         FROM api_key_credentials WHERE tenant_id = $1 AND key_id = $2",
    )
    .bind(tenant.as_str())
    .bind(key_id)
    .fetch_optional(pool)
    .await
}

/// Why [`authenticate`] did not return a credential.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key was refused: the caller's fault.
    #[error(transparent)]
    Refused(#[from] KeyRefusal),
    /// The database failed.
    #[error("the API key could not be checked: {0}")]
    Database(#[from] sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sixteen_base32_characters_and_keys_split_back_into_id_and_secret() {
        let id = fresh_id();
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| BASE32.contains(&b)), "{id}");
        assert_ne!(fresh_id(), id);
        let secret = "A".repeat(43);
        assert_eq!(
            split(&format!("chr_{id}_{secret}")),
            Some((format!("key_{id}"), secret.as_str()))
        );
        assert_eq!(split(&format!("chr_{id}_{}", "A".repeat(42))), None);
        assert_eq!(split(&format!("chr_{}_{secret}", id.to_uppercase())), None);
        assert_eq!(split("eyJhbGciOi.x.y"), None);
        assert_eq!(prefix_of(&format!("key_{id}")), format!("chr_{id}"));
    }
}
