//! Users, sign-in and sessions (issue 14): the write side of the `User` aggregate and the
//! credentials kept beside the log (`user_accounts`, `refresh_tokens`; decision 0018).
//!
//! - An owner or admin invites a person with a role: the `UserInvited` event, then the
//!   account row with the SHA-256 of an invitation token (`inv_…`) shown once to the inviter.
//! - The person accepts with the token and a password (the password rule of
//!   `chronicle_domain::user`, hashed with argon2id): `InvitationAccepted`.
//! - Sign-in checks e-mail and password (an unknown e-mail costs the same hash), then the
//!   second factor when the user has one (a TOTP code, good once, or a recovery code, good
//!   once), and starts a session: a refresh token (`rft_…`) of a new family. The caller mints
//!   the short access token (the API holds the signing keys).
//! - A refresh marks its token used and issues the next of the family; presenting a used
//!   token again revokes the family (`RefreshTokenReused`). Sign-out revokes the family.
//! - Deactivation and a password reset revoke every family of the user at once.
//!
//! Every change an owner or admin makes runs under a per-tenant advisory lock: e-mail
//! uniqueness and "a tenant keeps an active owner" (`LastOwner`) span users, and the acting
//! user is read again there (a demoted or deactivated admin's access token lives on for
//! minutes; their power does not). The event is appended under the lock and the account row
//! written in the lock's transaction, committing after the event, so a refused command leaves
//! nothing. Should that commit fail after the append, the log is one step ahead of the row: a
//! retry with the same token (accepting, resetting, confirming a second factor) sees the
//! aggregate refuse the step it already took and repairs the row instead of failing.
//!
//! Sessions and the second factor serialise on the account row (`FOR UPDATE`): a refresh or a
//! new session checks, in the transaction that writes its token, that the account is active
//! and (at sign-in) its password the one just verified, so no token outlives the commit of a
//! deactivation or a reset.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::pii::DataKey;
use chronicle_domain::tenant::TenantId;
use chronicle_domain::totp;
use chronicle_domain::user::{check_password, normalize_email, UserCommand, UserError};
use chrono::{DateTime, Duration, Utc};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};

use crate::api_keys::fresh_id;
use crate::dispatch::{Appended, Commands};
use crate::error::{CommandError, DomainError};

/// How long an invitation holds.
pub const INVITATION_TTL_DAYS: i64 = 7;
/// How long a password reset holds.
pub const RESET_TTL_HOURS: i64 = 24;
/// Recovery codes given when a second factor is turned on.
pub const RECOVERY_CODES: usize = 10;

/// What an inviter asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub email: String,
    pub name: String,
    /// A role name of DOMAIN.md; the caller checks it is a role the inviter may give.
    pub role: String,
}

/// A one-time token just issued (an invitation or a password reset): the only time it is
/// seen.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The user it is for (`usr_…`).
    pub user_id: String,
    /// The token to hand over (never stored, never logged).
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub appended: Appended,
}

impl std::fmt::Display for IssuedToken {
    /// The user's id only: the token never reaches a log line by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.user_id)
    }
}

/// A user as the directory shows them (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub status: String,
    pub two_factor: bool,
    pub invited_at: DateTime<Utc>,
    pub invited_by: String,
    pub updated_at: DateTime<Utc>,
}

/// Who a session is for, once signed in or refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub tenant: TenantId,
    pub user_id: String,
    pub role: String,
}

/// A refresh token just issued.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    /// `rft_…`: the only copy.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// A second factor presented at sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondFactor {
    /// A TOTP code from the user's authenticator.
    Code(String),
    /// One of the user's recovery codes.
    RecoveryCode(String),
}

/// A second factor being set up: the secret for the authenticator app, pending until a code
/// from it is confirmed.
#[derive(Debug, Clone)]
pub struct TwoFactorEnrolment {
    /// The secret in base32, as authenticator apps take it when typed.
    pub secret: String,
    /// `otpauth://totp/…`, for a QR code.
    pub otpauth_uri: String,
}

/// Why a sign-in, a refresh or a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    /// Unknown e-mail or wrong password (one answer for both).
    #[error("the e-mail address or the password is wrong")]
    InvalidCredentials,
    /// The user has a second factor: present a code or a recovery code.
    #[error("this account signs in with a second factor: send `code` (or `recoveryCode`)")]
    SecondFactorRequired,
    /// The code or recovery code is wrong, expired or was used already.
    #[error("the second-factor code is wrong or was used already")]
    InvalidSecondFactor,
    /// The user was deactivated.
    #[error("this account is deactivated")]
    AccountDeactivated,
    /// The invitation or reset token is unknown (or was replaced or used).
    #[error("the token is not valid (unknown, replaced or used)")]
    InvalidToken,
    /// The refresh token is unknown, expired or signed out.
    #[error("the refresh token is not valid (unknown, expired or signed out)")]
    InvalidRefreshToken,
    /// The refresh token was used already: the whole session was ended.
    #[error("the refresh token was used already; the session has been ended, sign in again")]
    RefreshTokenReused,
}

impl AuthRefusal {
    /// The stable code shown to callers.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "INVALID_CREDENTIALS",
            Self::SecondFactorRequired => "SECOND_FACTOR_REQUIRED",
            Self::InvalidSecondFactor => "INVALID_SECOND_FACTOR",
            Self::AccountDeactivated => "ACCOUNT_DEACTIVATED",
            Self::InvalidToken => "INVALID_TOKEN",
            Self::InvalidRefreshToken => "INVALID_REFRESH_TOKEN",
            Self::RefreshTokenReused => "REFRESH_TOKEN_REUSED",
        }
    }
}

/// Why a sign-in or token operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Refused: the caller's fault.
    #[error(transparent)]
    Refused(#[from] AuthRefusal),
    /// A command it runs was refused or failed.
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl From<sqlx::Error> for AuthError {
    fn from(e: sqlx::Error) -> Self {
        Self::Command(CommandError::from(e))
    }
}

/// A stored moment that may be unset.
/// A stored moment that may be unset.
type Moment = Option<DateTime<Utc>>;
/// Stored key or ciphertext bytes that may be unset.
type Sealed = Option<Vec<u8>>;

fn sha256(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// `<prefix>_<43 base64url characters>`: 256 random bits.
fn fresh_token(prefix: &str) -> String {
    use base64::Engine;
    let mut random = [0u8; 32];
    OsRng.fill_bytes(&mut random);
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    )
}

/// Password hashes computed at once, at most (each takes 19 MiB and tens of milliseconds): a
/// flood of sign-ins queues here instead of exhausting memory.
fn hashing() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        tokio::sync::Semaphore::new(2 * cores)
    })
}

fn rejected(e: UserError) -> CommandError {
    CommandError::Rejected(DomainError::User(e))
}

fn unexpected(e: impl std::error::Error + Send + Sync + 'static) -> CommandError {
    CommandError::Unexpected(Box::new(e))
}

/// The binding of a user's sealed TOTP secret (the data key and the ciphertext are bound to
/// the tenant and this).
fn totp_binding(user_id: &str) -> String {
    format!("user-totp:{user_id}")
}

/// Hashes a password with argon2id (OWASP's parameters: 19 MiB, 2 passes), off the async
/// threads: it takes tens of milliseconds on purpose.
pub async fn hash_password(password: &str) -> Result<String, CommandError> {
    let password = password.to_string();
    let _permit = hashing().acquire().await.map_err(unexpected)?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| CommandError::Unexpected(format!("hashing a password: {e}").into()))
    })
    .await
    .map_err(unexpected)?
}

/// A hash of a password nobody knows, verified against when the e-mail is unknown so the
/// answer takes as long as for a wrong password. Made at start by [`prepare`].
async fn decoy_hash() -> Result<&'static str, CommandError> {
    static DECOY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DECOY
        .get_or_try_init(|| async { hash_password(&fresh_token("decoy")).await })
        .await
        .map(String::as_str)
}

/// Makes what sign-in needs ready before the first request (the decoy hash), so the first
/// unknown e-mail is answered in the same time as every other.
pub async fn prepare() -> Result<(), CommandError> {
    decoy_hash().await.map(drop)
}

/// Whether `password` matches the PHC string `hash` (constant time inside argon2).
async fn password_matches(hash: &str, password: &str) -> Result<bool, CommandError> {
    let (hash, password) = (hash.to_string(), password.to_string());
    let _permit = hashing().acquire().await.map_err(unexpected)?;
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    })
    .await
    .map_err(unexpected)
}

/// A recovery code: 10 base32 characters in two groups (`abcde-fghij`, 50 bits).
fn fresh_recovery_code() -> String {
    let id = fresh_id();
    format!("{}-{}", &id[..5], &id[5..10])
}

/// A recovery code as stored: SHA-256 over the user and the code, without dash or case.
fn recovery_hash(user_id: &str, code: &str) -> Vec<u8> {
    let code: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    sha256(&format!("{user_id}:{code}"))
}

/// How long a user change waits for another of the same tenant (or account) before answering
/// `CONFLICT` (try again).
const LOCK_TIMEOUT: &str = "5s";

/// A lock wait that ran out is a conflict, anything else a failure.
fn lock_error(e: sqlx::Error) -> CommandError {
    match &e {
        // lock_not_available (a lock_timeout ran out), deadlock_detected, serialization_failure.
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("55P03" | "40P01" | "40001")) => {
            CommandError::Conflict
        }
        _ => CommandError::from(e),
    }
}

async fn begin_bounded(pool: &PgPool) -> Result<Transaction<'static, Postgres>, CommandError> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Takes the per-tenant lock every change to users holds until its transaction ends.
async fn lock_tenant(pool: &PgPool, tenant: &TenantId) -> Result<Transaction<'static, Postgres>, CommandError> {
    let mut tx = begin_bounded(pool).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("chronicle:users:{tenant}"))
        .execute(&mut *tx)
        .await
        .map_err(lock_error)?;
    Ok(tx)
}

/// A one-time token kept in the account row: an invitation or a password reset.
#[derive(Clone, Copy)]
enum OneTimeToken {
    Invitation,
    Reset,
}

impl OneTimeToken {
    /// The token's prefix and the row's columns of its hash and expiry.
    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Invitation => ("inv", "invitation_sha256", "invitation_expires_at"),
            Self::Reset => ("rst", "reset_sha256", "reset_expires_at"),
        }
    }
}

/// What a sign-in verified, re-checked when its session is written.
struct Verified<'a> {
    password_hash: &'a str,
    /// Whether a second factor was checked.
    second_factor: bool,
}

/// An account row held by [`lock_account`] until its transaction ends.
#[derive(sqlx::FromRow)]
struct Held {
    role: String,
    status: String,
    password_hash: Option<String>,
    email: String,
    wrapped_key: Sealed,
    totp_sealed: Sealed,
    totp_pending_sealed: Sealed,
    totp_last_step: Option<i64>,
}

/// Locks one account row (`FOR UPDATE`): what sessions and the second factor serialise on.
/// Deactivation and resets update the same row, so they wait for each other. Every writer
/// takes the account row before any of the user's refresh tokens, so they never deadlock.
async fn lock_account(
    pool: &PgPool,
    tenant: &TenantId,
    user_id: &str,
) -> Result<(Transaction<'static, Postgres>, Option<Held>), CommandError> {
    let mut tx = begin_bounded(pool).await?;
    let held: Option<Held> = sqlx::query_as(
        "SELECT role, status, password_hash, email, wrapped_key, totp_sealed, totp_pending_sealed, totp_last_step \
         FROM user_accounts WHERE tenant_id = $1 AND user_id = $2 FOR UPDATE",
    )
    .bind(tenant.as_str())
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(lock_error)?;
    Ok((tx, held))
}

/// The metadata of a command a user runs on their own account (accepting, resetting, using a
/// recovery code), found by a token rather than by an access token.
fn own_metadata(tenant: &TenantId, user_id: &str, role: &str, correlation_id: &str) -> CommandMetadata {
    CommandMetadata {
        tenant_id: tenant.clone(),
        actor: Actor::User {
            user_id: user_id.to_string(),
            role: role.to_string(),
        },
        correlation_id: correlation_id.to_string(),
        causation_id: format!("auth:{correlation_id}"),
    }
}

fn tenant_of(text: &str) -> Result<TenantId, CommandError> {
    TenantId::parse(text).map_err(|e| CommandError::Unexpected(format!("a stored tenant id: {e}").into()))
}

/// The roles that may manage users (owners and admins), passed in by the API from its
/// permission table so the table stays the one place that says so.
pub type Managers<'a> = &'a [&'a str];

/// A manager other than an owner may neither give the owner role nor change an owner
/// (`ROLE_ABOVE_ISSUER`).
fn may_touch(acting_role: &str, target_role: Option<&str>, new_role: Option<&str>) -> Result<(), CommandError> {
    if acting_role != "owner" && (target_role == Some("owner") || new_role == Some("owner")) {
        return Err(rejected(UserError::RoleAboveIssuer));
    }
    Ok(())
}

/// The aggregate refused a step the log already holds (`already`): an earlier attempt's row
/// write was lost after its event, and this retry repairs the row. Other outcomes pass through.
fn repairing(result: Result<Appended, CommandError>, already: &UserError, user_id: &str) -> Result<(), CommandError> {
    match result {
        Ok(_) => Ok(()),
        Err(CommandError::Rejected(DomainError::User(e))) if &e == already => {
            tracing::warn!(user.id = %user_id, step = e.code(), "an account row behind its log is repaired");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

impl Commands {
    /// The acting user's role as of now, read under the tenant lock: a user of the directory
    /// must still be active and still hold a managing role, else `CALLER_NO_LONGER_ALLOWED`
    /// (a demoted or deactivated admin's access token lives on for minutes; their power does
    /// not). An operator's token of someone outside the directory acts with its claimed role,
    /// the command line as an owner; API keys never manage users.
    async fn acting_role(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        metadata: &CommandMetadata,
        managers: Managers<'_>,
    ) -> Result<String, CommandError> {
        let role = match &metadata.actor {
            Actor::User { user_id, role } => {
                let row: Option<(String, String)> =
                    sqlx::query_as("SELECT role, status FROM user_accounts WHERE tenant_id = $1 AND user_id = $2")
                        .bind(metadata.tenant_id.as_str())
                        .bind(user_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                match row {
                    Some((current, status)) if status == "active" => current,
                    Some(_) => return Err(rejected(UserError::CallerNoLongerAllowed)),
                    None => role.clone(),
                }
            }
            Actor::System { .. } => return Ok("owner".to_string()),
            Actor::ApiKey { .. } => return Err(rejected(UserError::CallerNoLongerAllowed)),
        };
        if managers.contains(&role.as_str()) {
            Ok(role)
        } else {
            Err(rejected(UserError::CallerNoLongerAllowed))
        }
    }

    /// Takes the tenant lock for a change an owner or admin makes to the user `user_id` (giving
    /// them `new_role`, if any): the acting user re-read, the target found (`UNKNOWN_USER`),
    /// `ROLE_ABOVE_ISSUER` checked. Answers the lock's transaction and the target's role and
    /// status.
    async fn managing(
        &self,
        metadata: &CommandMetadata,
        managers: Managers<'_>,
        user_id: &str,
        new_role: Option<&str>,
    ) -> Result<(Transaction<'static, Postgres>, String, String), CommandError> {
        let mut tx = lock_tenant(self.pool(), &metadata.tenant_id).await?;
        let acting = self.acting_role(&mut tx, metadata, managers).await?;
        let (role, status) = self.existing(&mut tx, &metadata.tenant_id, user_id).await?;
        may_touch(&acting, Some(&role), new_role)?;
        Ok((tx, role, status))
    }

    /// Invites a person: the `UserInvited` event, then the account with the invitation's hash.
    /// Refused with `EMAIL_TAKEN` when another user of the tenant has the address,
    /// `ROLE_ABOVE_ISSUER` when an admin gives the owner role.
    pub async fn invite_user(
        &self,
        invite: Invite,
        metadata: &CommandMetadata,
        managers: Managers<'_>,
    ) -> Result<IssuedToken, CommandError> {
        let tenant = &metadata.tenant_id;
        let email = normalize_email(&invite.email).map_err(rejected)?;
        let mut tx = lock_tenant(self.pool(), tenant).await?;
        let acting = self.acting_role(&mut tx, metadata, managers).await?;
        may_touch(&acting, None, Some(&invite.role))?;
        let taken: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM user_accounts WHERE tenant_id = $1 AND email = $2)")
                .bind(tenant.as_str())
                .bind(&email)
                .fetch_one(&mut *tx)
                .await?;
        if taken {
            return Err(rejected(UserError::EmailTaken));
        }
        let user_id = format!("usr_{}", fresh_id());
        let token = fresh_token("inv");
        let at = Utc::now();
        let expires_at = at + Duration::days(INVITATION_TTL_DAYS);
        let appended = self
            .user(
                &user_id,
                UserCommand::InviteUser {
                    email: email.clone(),
                    name: invite.name.clone(),
                    role: invite.role.clone(),
                    expires_at,
                    at,
                },
                metadata,
            )
            .await?;
        sqlx::query(
            "INSERT INTO user_accounts (user_id, tenant_id, email, name, role, status, invitation_sha256, \
               invitation_expires_at, invited_at, invited_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'invited', $6, $7, $8, $9, $8)",
        )
        .bind(&user_id)
        .bind(tenant.as_str())
        .bind(&email)
        .bind(invite.name.trim())
        .bind(&invite.role)
        .bind(sha256(&token))
        .bind(expires_at)
        .bind(at)
        .bind(metadata.actor.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(IssuedToken {
            user_id,
            token,
            expires_at,
            appended,
        })
    }

    /// Renews a pending invitation: a new token and expiry; the old token stops working.
    pub async fn renew_invitation(
        &self,
        user_id: &str,
        metadata: &CommandMetadata,
        managers: Managers<'_>,
    ) -> Result<IssuedToken, CommandError> {
        let ttl = Duration::days(INVITATION_TTL_DAYS);
        self.issue_one_time(
            user_id,
            metadata,
            managers,
            OneTimeToken::Invitation,
            ttl,
            |expires_at, at| UserCommand::RenewInvitation { expires_at, at },
        )
        .await
    }

    /// Issues a one-time token for the tenant's user `user_id` under the tenant lock (the
    /// acting user re-read, `ROLE_ABOVE_ISSUER` checked): `command` is appended, then the
    /// token's hash and expiry are stored in the row, replacing an earlier one.
    async fn issue_one_time(
        &self,
        user_id: &str,
        metadata: &CommandMetadata,
        managers: Managers<'_>,
        kind: OneTimeToken,
        ttl: Duration,
        command: impl FnOnce(DateTime<Utc>, DateTime<Utc>) -> UserCommand,
    ) -> Result<IssuedToken, CommandError> {
        let tenant = &metadata.tenant_id;
        let (mut tx, _, _) = self.managing(metadata, managers, user_id, None).await?;
        let (prefix, hash_column, expiry_column) = kind.columns();
        let token = fresh_token(prefix);
        let at = Utc::now();
        let expires_at = at + ttl;
        let appended = self.user(user_id, command(expires_at, at), metadata).await?;
        sqlx::query(&format!(
            "UPDATE user_accounts SET {hash_column} = $3, {expiry_column} = $4, updated_at = $5 \
             WHERE tenant_id = $1 AND user_id = $2"
        ))
        .bind(tenant.as_str())
        .bind(user_id)
        .bind(sha256(&token))
        .bind(expires_at)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(IssuedToken {
            user_id: user_id.to_string(),
            token,
            expires_at,
            appended,
        })
    }

    /// The e-mail address of the account a one-time token names (`INVALID_TOKEN` if none), for
    /// the password rule before the slow hash.
    async fn email_of_token(&self, kind: OneTimeToken, token: &str) -> Result<String, AuthError> {
        let (_, column, _) = kind.columns();
        let email: Option<String> = sqlx::query_scalar(&format!("SELECT email FROM user_accounts WHERE {column} = $1"))
            .bind(sha256(token.trim()))
            .fetch_optional(self.pool())
            .await?;
        Ok(email.ok_or(AuthRefusal::InvalidToken)?)
    }

    /// The account a one-time token (invitation or reset, by its column) names, checked again
    /// under the tenant lock so a token replaced meanwhile is refused (`INVALID_TOKEN`).
    async fn by_token(
        &self,
        kind: OneTimeToken,
        expired: UserError,
        token: &str,
    ) -> Result<(Transaction<'static, Postgres>, TenantId, String, String, String), AuthError> {
        let (_, column, expiry) = kind.columns();
        let hash = sha256(token.trim());
        let found: Option<(String, String, String, String)> = sqlx::query_as(&format!(
            "SELECT tenant_id, user_id, role, email FROM user_accounts WHERE {column} = $1"
        ))
        .bind(&hash)
        .fetch_optional(self.pool())
        .await?;
        let (tenant, user_id, role, email) = found.ok_or(AuthRefusal::InvalidToken)?;
        let tenant = tenant_of(&tenant)?;
        let mut tx = lock_tenant(self.pool(), &tenant).await?;
        let still: Option<(bool, bool)> = sqlx::query_as(&format!(
            "SELECT {column} = $3, {expiry} > now() FROM user_accounts WHERE tenant_id = $1 AND user_id = $2"
        ))
        .bind(tenant.as_str())
        .bind(&user_id)
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        match still {
            Some((true, true)) => {}
            // Expired here, whatever the log says: a token never outlives its expiry, not even
            // on the repair path.
            Some((true, false)) => return Err(rejected(expired).into()),
            _ => return Err(AuthRefusal::InvalidToken.into()),
        }
        Ok((tx, tenant, user_id, role, email))
    }

    /// Accepts an invitation with a new password: the account becomes active. Refused with
    /// `INVALID_TOKEN` (unknown, replaced or used), `INVITATION_EXPIRED`, `WEAK_PASSWORD`.
    pub async fn accept_invitation(
        &self,
        token: &str,
        password: &str,
        correlation_id: &str,
    ) -> Result<Account, AuthError> {
        let email = self.email_of_token(OneTimeToken::Invitation, token).await?;
        check_password(password, &email).map_err(rejected)?;
        let hash = hash_password(password).await?;
        let (mut tx, tenant, user_id, role, _) = self
            .by_token(OneTimeToken::Invitation, UserError::InvitationExpired, token)
            .await?;
        let at = Utc::now();
        let metadata = own_metadata(&tenant, &user_id, &role, correlation_id);
        repairing(
            self.user(&user_id, UserCommand::AcceptInvitation { at }, &metadata)
                .await,
            &UserError::InvitationNotPending,
            &user_id,
        )?;
        sqlx::query(
            "UPDATE user_accounts SET status = 'active', accepted = true, password_hash = $3, \
               invitation_sha256 = NULL, invitation_expires_at = NULL, updated_at = $4 \
             WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(&user_id)
        .bind(hash)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Account { tenant, user_id, role })
    }

    /// Changes a user's role. Refused with `LAST_OWNER` when it would leave the tenant without
    /// an active owner, `ROLE_ABOVE_ISSUER` when an admin gives or takes the owner role.
    pub async fn change_user_role(
        &self,
        user_id: &str,
        role: &str,
        metadata: &CommandMetadata,
        managers: Managers<'_>,
    ) -> Result<Appended, CommandError> {
        let tenant = &metadata.tenant_id;
        let (mut tx, current, status) = self.managing(metadata, managers, user_id, Some(role)).await?;
        if current == "owner" && role != "owner" && status == "active" {
            self.keep_an_owner(&mut tx, tenant, user_id).await?;
        }
        let at = Utc::now();
        let appended = self
            .user(
                user_id,
                UserCommand::ChangeUserRole {
                    role: role.to_string(),
                    at,
                },
                metadata,
            )
            .await?;
        sqlx::query("UPDATE user_accounts SET role = $3, updated_at = $4 WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_str())
            .bind(user_id)
            .bind(role)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(appended)
    }

    /// Deactivates a user: refused at sign-in and every refresh token revoked at once (their
    /// access tokens run out within their short life). Refused with `LAST_OWNER` for the last
    /// active owner. Deactivating a deactivated user changes nothing.
    pub async fn deactivate_user(
        &self,
        user_id: &str,
        reason: Option<String>,
        metadata: &CommandMetadata,
        managers: Managers<'_>,
    ) -> Result<Appended, CommandError> {
        let tenant = &metadata.tenant_id;
        let (mut tx, role, status) = self.managing(metadata, managers, user_id, None).await?;
        if role == "owner" && status == "active" {
            self.keep_an_owner(&mut tx, tenant, user_id).await?;
        }
        let at = Utc::now();
        // Sessions end with the transaction that records the deactivation (a refresh waits on
        // this row); the event is appended before the commit, so a refused command ends nothing.
        sqlx::query(
            "UPDATE user_accounts SET status = 'deactivated', reset_sha256 = NULL, reset_expires_at = NULL, \
               updated_at = $3 WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(user_id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        revoke_all(&mut tx, user_id, at).await?;
        let appended = self
            .user(user_id, UserCommand::DeactivateUser { reason, at }, metadata)
            .await?;
        tx.commit().await?;
        Ok(appended)
    }

    /// Reactivates a deactivated user (back to active, or invited if they never accepted).
    pub async fn reactivate_user(
        &self,
        user_id: &str,
        metadata: &CommandMetadata,
        managers: Managers<'_>,
    ) -> Result<Appended, CommandError> {
        let tenant = &metadata.tenant_id;
        let (mut tx, _, _) = self.managing(metadata, managers, user_id, None).await?;
        let at = Utc::now();
        let appended = self.user(user_id, UserCommand::ReactivateUser { at }, metadata).await?;
        sqlx::query(
            "UPDATE user_accounts SET status = CASE WHEN accepted THEN 'active' ELSE 'invited' END, updated_at = $3 \
             WHERE tenant_id = $1 AND user_id = $2 AND status = 'deactivated'",
        )
        .bind(tenant.as_str())
        .bind(user_id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(appended)
    }

    /// Issues a one-time password reset (`rst_…`) for an active user, to the admin who hands it
    /// over. A newer reset replaces an older one.
    pub async fn issue_password_reset(
        &self,
        user_id: &str,
        metadata: &CommandMetadata,
        managers: Managers<'_>,
    ) -> Result<IssuedToken, CommandError> {
        let ttl = Duration::hours(RESET_TTL_HOURS);
        self.issue_one_time(
            user_id,
            metadata,
            managers,
            OneTimeToken::Reset,
            ttl,
            |expires_at, at| UserCommand::IssuePasswordReset { expires_at, at },
        )
        .await
    }

    /// Sets a new password with a reset token; every session of the user ends. Refused with
    /// `INVALID_TOKEN`, `PASSWORD_RESET_EXPIRED`, `USER_DEACTIVATED` or `WEAK_PASSWORD`.
    pub async fn reset_password(
        &self,
        token: &str,
        password: &str,
        correlation_id: &str,
    ) -> Result<Account, AuthError> {
        let email = self.email_of_token(OneTimeToken::Reset, token).await?;
        check_password(password, &email).map_err(rejected)?;
        let hash = hash_password(password).await?;
        let (mut tx, tenant, user_id, role, _) = self
            .by_token(OneTimeToken::Reset, UserError::PasswordResetExpired, token)
            .await?;
        let at = Utc::now();
        sqlx::query(
            "UPDATE user_accounts SET password_hash = $3, reset_sha256 = NULL, reset_expires_at = NULL, updated_at = $4 \
             WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(&user_id)
        .bind(hash)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        revoke_all(&mut tx, &user_id, at).await?;
        let metadata = own_metadata(&tenant, &user_id, &role, correlation_id);
        repairing(
            self.user(&user_id, UserCommand::CompletePasswordReset { at }, &metadata)
                .await,
            &UserError::PasswordResetNotPending,
            &user_id,
        )?;
        tx.commit().await?;
        Ok(Account { tenant, user_id, role })
    }

    /// Checks e-mail, password and second factor, and starts a session (the first refresh token
    /// of a new family). An unknown e-mail is checked against a decoy hash, so it is answered
    /// like a wrong password and in the same time.
    // Each argument is a different piece of the sign-in request or its setting.
    #[allow(clippy::too_many_arguments)]
    pub async fn sign_in(
        &self,
        master: &chronicle_domain::pii::MasterKey,
        tenant: &TenantId,
        email: &str,
        password: &str,
        second: Option<SecondFactor>,
        correlation_id: &str,
        ttl: Duration,
    ) -> Result<(Account, RefreshToken), AuthError> {
        type Row = (String, String, String, Option<String>, bool);
        let row: Option<Row> = match normalize_email(email) {
            Ok(email) => {
                sqlx::query_as(
                    "SELECT user_id, role, status, password_hash, totp_sealed IS NOT NULL \
                     FROM user_accounts WHERE tenant_id = $1 AND email = $2",
                )
                .bind(tenant.as_str())
                .bind(&email)
                .fetch_optional(self.pool())
                .await?
            }
            Err(_) => None,
        };
        let hash = match row.as_ref().and_then(|r| r.3.as_deref()) {
            Some(hash) => hash,
            None => decoy_hash().await?,
        };
        let matches = password_matches(hash, password).await?;
        let Some((user_id, role, status, Some(verified), two_factor)) = row.filter(|_| matches) else {
            return Err(AuthRefusal::InvalidCredentials.into());
        };
        if status != "active" {
            return Err(AuthRefusal::AccountDeactivated.into());
        }
        if two_factor {
            match second {
                None => return Err(AuthRefusal::SecondFactorRequired.into()),
                Some(SecondFactor::Code(code)) => self.use_code(master, tenant, &user_id, &code).await?,
                Some(SecondFactor::RecoveryCode(code)) => {
                    self.use_recovery_code(tenant, &user_id, &role, &code, correlation_id)
                        .await?;
                }
            }
        }
        let account = Account {
            tenant: tenant.clone(),
            user_id,
            role,
        };
        let (refresh, role) = self
            .open_session(
                &account,
                &format!("fam_{}", fresh_id()),
                ttl,
                Some(Verified {
                    password_hash: &verified,
                    second_factor: two_factor,
                }),
            )
            .await?;
        Ok((Account { role, ..account }, refresh))
    }

    /// Starts a session for an account that just proved itself another way (an accepted
    /// invitation, a completed reset): the first refresh token of a new family.
    pub async fn start_session(&self, account: &Account, ttl: Duration) -> Result<RefreshToken, AuthError> {
        self.open_session(account, &format!("fam_{}", fresh_id()), ttl, None)
            .await
            .map(|(refresh, _)| refresh)
    }

    /// Writes a refresh token of `family` while holding the account row, and answers the role
    /// as of then (what the access token carries): the account must be active and, after a
    /// sign-in, its password still the one just checked and its second factor still as checked
    /// (a reset, deactivation or second factor turned on meanwhile wins).
    async fn open_session(
        &self,
        account: &Account,
        family: &str,
        ttl: Duration,
        verified: Option<Verified<'_>>,
    ) -> Result<(RefreshToken, String), AuthError> {
        let (mut tx, held) = lock_account(self.pool(), &account.tenant, &account.user_id).await?;
        let held = held.ok_or(AuthRefusal::InvalidCredentials)?;
        if held.status != "active" {
            return Err(AuthRefusal::AccountDeactivated.into());
        }
        if let Some(verified) = verified {
            if held.password_hash.as_deref() != Some(verified.password_hash) {
                return Err(AuthRefusal::InvalidCredentials.into());
            }
            if held.totp_sealed.is_some() && !verified.second_factor {
                return Err(AuthRefusal::SecondFactorRequired.into());
            }
        }
        let refresh = insert_refresh(&mut tx, account, family, ttl).await?;
        tx.commit().await?;
        Ok((refresh, held.role))
    }

    /// Trades a refresh token for the next of its family (and the account, with its current
    /// role, for the access token). One transaction holding the token's row and the account's:
    /// of two refreshes of one token the second sees it used and ends the family (the first's
    /// new token with it); a deactivation or reset either waits for the refresh and then
    /// revokes what it issued, or commits first and the refresh is refused.
    pub async fn refresh(&self, token: &str, ttl: Duration) -> Result<(Account, RefreshToken), AuthError> {
        let hash = sha256(token.trim());
        let now = Utc::now();
        // Whose token, read without a lock; then the account row, then the token (the order
        // every writer follows).
        let owner: Option<(String, String)> =
            sqlx::query_as("SELECT tenant_id, user_id FROM refresh_tokens WHERE token_sha256 = $1")
                .bind(&hash)
                .fetch_optional(self.pool())
                .await?;
        let Some((tenant, user_id)) = owner else {
            return Err(AuthRefusal::InvalidRefreshToken.into());
        };
        let tenant = tenant_of(&tenant)?;
        let (mut tx, held) = lock_account(self.pool(), &tenant, &user_id).await?;
        let found: Option<(String, Moment, Moment, DateTime<Utc>)> = sqlx::query_as(
            "SELECT family_id, used_at, revoked_at, expires_at FROM refresh_tokens \
             WHERE token_sha256 = $1 AND user_id = $2 FOR UPDATE",
        )
        .bind(&hash)
        .bind(&user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(lock_error)?;
        let Some((family, used_at, revoked_at, expires_at)) = found else {
            return Err(AuthRefusal::InvalidRefreshToken.into());
        };
        if used_at.is_some() {
            if revoked_at.is_none() {
                tracing::warn!(refresh.family = %family, "a used refresh token was presented again: the family is revoked");
            }
            revoke_family(&mut tx, &family, now).await?;
            tx.commit().await?;
            return Err(AuthRefusal::RefreshTokenReused.into());
        }
        let family_ended: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NOT NULL)",
        )
        .bind(&family)
        .fetch_one(&mut *tx)
        .await?;
        if revoked_at.is_some() || family_ended || expires_at <= now {
            return Err(AuthRefusal::InvalidRefreshToken.into());
        }
        let role = match held {
            Some(held) if held.status == "active" => held.role,
            _ => {
                revoke_family(&mut tx, &family, now).await?;
                tx.commit().await?;
                return Err(AuthRefusal::AccountDeactivated.into());
            }
        };
        sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE token_sha256 = $1")
            .bind(&hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let account = Account { tenant, user_id, role };
        let next = insert_refresh(&mut tx, &account, &family, ttl).await?;
        tx.commit().await?;
        Ok((account, next))
    }

    /// Ends the session of a refresh token (its whole family). Unknown tokens change nothing.
    pub async fn sign_out(&self, token: &str) -> Result<(), CommandError> {
        let owner: Option<(String, String, String)> =
            sqlx::query_as("SELECT tenant_id, user_id, family_id FROM refresh_tokens WHERE token_sha256 = $1")
                .bind(sha256(token.trim()))
                .fetch_optional(self.pool())
                .await?;
        let Some((tenant, user_id, family)) = owner else {
            return Ok(());
        };
        let (mut tx, _) = lock_account(self.pool(), &tenant_of(&tenant)?, &user_id).await?;
        revoke_family(&mut tx, &family, Utc::now()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts setting up a second factor for the caller, who proves it is them with their
    /// password (a stolen access token alone cannot enrol another authenticator): a fresh
    /// secret, pending until [`Commands::confirm_two_factor`] sees a code from it.
    pub async fn begin_two_factor(
        &self,
        master: &chronicle_domain::pii::MasterKey,
        tenant: &TenantId,
        user_id: &str,
        password: &str,
        issuer: &str,
    ) -> Result<TwoFactorEnrolment, AuthError> {
        let hash = self.verified_hash(tenant, user_id, password).await?;
        let (mut tx, held) = lock_account(self.pool(), tenant, user_id).await?;
        let held = held.ok_or_else(|| rejected(UserError::UnknownUser))?;
        if held.password_hash.as_deref() != Some(hash.as_str()) {
            return Err(AuthRefusal::InvalidCredentials.into());
        }
        if held.status != "active" {
            return Err(rejected(UserError::UserNotActive).into());
        }
        if held.totp_sealed.is_some() {
            return Err(rejected(UserError::TwoFactorAlreadyEnabled).into());
        }
        let binding = totp_binding(user_id);
        let (key, wrapped) = match held.wrapped_key {
            Some(wrapped) => (
                master.unwrap_key(&wrapped, tenant, &binding).map_err(unexpected)?,
                wrapped,
            ),
            None => {
                let key = DataKey::generate(&mut OsRng);
                let wrapped = master.wrap(&key, tenant, &binding, &mut OsRng);
                (key, wrapped)
            }
        };
        let mut secret = [0u8; totp::SECRET_BYTES];
        OsRng.fill_bytes(&mut secret);
        let sealed = key.seal_bytes(tenant, &binding, &secret, &mut OsRng);
        sqlx::query(
            "UPDATE user_accounts SET wrapped_key = $3, totp_pending_sealed = $4, updated_at = now() \
             WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(user_id)
        .bind(wrapped)
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(TwoFactorEnrolment {
            secret: totp::base32(&secret),
            otpauth_uri: totp::otpauth_uri(issuer, &held.email, &secret),
        })
    }

    /// Turns the pending second factor on with a code from it; answers the recovery codes
    /// (the only time they are seen). `INVALID_SECOND_FACTOR` for a wrong code,
    /// `TWO_FACTOR_NOT_ENABLED` when nothing is pending.
    pub async fn confirm_two_factor(
        &self,
        master: &chronicle_domain::pii::MasterKey,
        user_id: &str,
        code: &str,
        metadata: &CommandMetadata,
    ) -> Result<Vec<String>, AuthError> {
        let tenant = &metadata.tenant_id;
        let (mut tx, held) = lock_account(self.pool(), tenant, user_id).await?;
        let held = held.ok_or_else(|| rejected(UserError::UnknownUser))?;
        let (Some(wrapped), Some(pending)) = (held.wrapped_key, held.totp_pending_sealed) else {
            return Err(rejected(UserError::TwoFactorNotEnabled).into());
        };
        if held.totp_sealed.is_some() {
            return Err(rejected(UserError::TwoFactorAlreadyEnabled).into());
        }
        let secret = open_secret(master, tenant, user_id, &wrapped, &pending)?;
        let step = totp::verify(&secret, code, Utc::now().timestamp(), None).ok_or(AuthRefusal::InvalidSecondFactor)?;
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| fresh_recovery_code()).collect();
        let hashes: Vec<Vec<u8>> = codes.iter().map(|c| recovery_hash(user_id, c)).collect();
        repairing(
            self.user(user_id, UserCommand::EnableTwoFactor { at: Utc::now() }, metadata)
                .await,
            &UserError::TwoFactorAlreadyEnabled,
            user_id,
        )?;
        sqlx::query(
            "UPDATE user_accounts SET totp_sealed = totp_pending_sealed, totp_pending_sealed = NULL, \
               totp_last_step = $3, recovery_sha256 = $4, updated_at = now() \
             WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(user_id)
        .bind(step)
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(codes)
    }

    /// Turns the caller's second factor off, with their password and a current code (recorded
    /// as used). `INVALID_CREDENTIALS`, `INVALID_SECOND_FACTOR`, `TWO_FACTOR_NOT_ENABLED`.
    pub async fn disable_two_factor(
        &self,
        master: &chronicle_domain::pii::MasterKey,
        user_id: &str,
        password: &str,
        code: &str,
        metadata: &CommandMetadata,
    ) -> Result<(), AuthError> {
        let tenant = &metadata.tenant_id;
        let hash = self.verified_hash(tenant, user_id, password).await?;
        let (mut tx, held) = lock_account(self.pool(), tenant, user_id).await?;
        let held = held.ok_or_else(|| rejected(UserError::UnknownUser))?;
        if held.password_hash.as_deref() != Some(hash.as_str()) {
            return Err(AuthRefusal::InvalidCredentials.into());
        }
        let (Some(wrapped), Some(sealed)) = (held.wrapped_key, held.totp_sealed) else {
            return Err(rejected(UserError::TwoFactorNotEnabled).into());
        };
        let secret = open_secret(master, tenant, user_id, &wrapped, &sealed)?;
        totp::verify(&secret, code, Utc::now().timestamp(), held.totp_last_step)
            .ok_or(AuthRefusal::InvalidSecondFactor)?;
        // The row holds a second factor: a refusal that it is off means the log is ahead.
        repairing(
            self.user(user_id, UserCommand::DisableTwoFactor { at: Utc::now() }, metadata)
                .await,
            &UserError::TwoFactorNotEnabled,
            user_id,
        )?;
        clear_two_factor(&mut tx, tenant, user_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Turns a user's second factor off for them (an owner or admin, when the user lost their
    /// authenticator and recovery codes): they sign in with their password alone until they
    /// turn it on again. `TWO_FACTOR_NOT_ENABLED`, `UNKNOWN_USER`, `ROLE_ABOVE_ISSUER`.
    pub async fn reset_two_factor(
        &self,
        user_id: &str,
        metadata: &CommandMetadata,
        managers: Managers<'_>,
    ) -> Result<(), CommandError> {
        let tenant = &metadata.tenant_id;
        let (mut tx, _, _) = self.managing(metadata, managers, user_id, None).await?;
        let on: bool = sqlx::query_scalar(
            "SELECT totp_sealed IS NOT NULL FROM user_accounts WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        let appended = self
            .user(user_id, UserCommand::DisableTwoFactor { at: Utc::now() }, metadata)
            .await;
        if on {
            // The row holds a second factor: a refusal that it is off means the log is ahead.
            repairing(appended, &UserError::TwoFactorNotEnabled, user_id)?;
        } else {
            appended?;
        }
        clear_two_factor(&mut tx, tenant, user_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks a TOTP code at sign-in and records its step, so the same code (or an older one)
    /// is refused afterwards, whichever of two racing sign-ins comes first.
    async fn use_code(
        &self,
        master: &chronicle_domain::pii::MasterKey,
        tenant: &TenantId,
        user_id: &str,
        code: &str,
    ) -> Result<(), AuthError> {
        let found: (Sealed, Sealed, Option<i64>) = sqlx::query_as(
            "SELECT wrapped_key, totp_sealed, totp_last_step FROM user_accounts WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(user_id)
        .fetch_one(self.pool())
        .await?;
        let (Some(wrapped), Some(sealed), last) = found else {
            return Err(AuthRefusal::InvalidSecondFactor.into());
        };
        let secret = open_secret(master, tenant, user_id, &wrapped, &sealed)?;
        let step = totp::verify(&secret, code, Utc::now().timestamp(), last).ok_or(AuthRefusal::InvalidSecondFactor)?;
        let recorded = sqlx::query(
            "UPDATE user_accounts SET totp_last_step = $3 \
             WHERE tenant_id = $1 AND user_id = $2 AND (totp_last_step IS NULL OR totp_last_step < $3)",
        )
        .bind(tenant.as_str())
        .bind(user_id)
        .bind(step)
        .execute(self.pool())
        .await?;
        if recorded.rows_affected() == 1 {
            Ok(())
        } else {
            Err(AuthRefusal::InvalidSecondFactor.into())
        }
    }

    /// Uses up a recovery code at sign-in (`RecoveryCodeUsed`, with how many are left).
    async fn use_recovery_code(
        &self,
        tenant: &TenantId,
        user_id: &str,
        role: &str,
        code: &str,
        correlation_id: &str,
    ) -> Result<(), AuthError> {
        let remaining: Option<i32> = sqlx::query_scalar(
            "UPDATE user_accounts SET recovery_sha256 = array_remove(recovery_sha256, $3), updated_at = now() \
             WHERE tenant_id = $1 AND user_id = $2 AND $3 = ANY (recovery_sha256) \
             RETURNING coalesce(cardinality(recovery_sha256), 0)",
        )
        .bind(tenant.as_str())
        .bind(user_id)
        .bind(recovery_hash(user_id, code))
        .fetch_optional(self.pool())
        .await?;
        let remaining = remaining.ok_or(AuthRefusal::InvalidSecondFactor)?;
        let metadata = own_metadata(tenant, user_id, role, correlation_id);
        self.user(
            user_id,
            UserCommand::UseRecoveryCode {
                remaining: u32::try_from(remaining).unwrap_or(0),
                at: Utc::now(),
            },
            &metadata,
        )
        .await?;
        Ok(())
    }

    /// The user's password hash if `password` matches it (`INVALID_CREDENTIALS` otherwise),
    /// verified without holding any lock (the caller compares it again under the row lock).
    async fn verified_hash(&self, tenant: &TenantId, user_id: &str, password: &str) -> Result<String, AuthError> {
        let hash: Option<Option<String>> =
            sqlx::query_scalar("SELECT password_hash FROM user_accounts WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant.as_str())
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?;
        let hash = hash
            .ok_or_else(|| rejected(UserError::UnknownUser))?
            .unwrap_or_default();
        if password_matches(&hash, password).await? {
            Ok(hash)
        } else {
            Err(AuthRefusal::InvalidCredentials.into())
        }
    }

    /// The role and status of the tenant's user, or `UNKNOWN_USER`.
    async fn existing(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: &TenantId,
        user_id: &str,
    ) -> Result<(String, String), CommandError> {
        let found: Option<(String, String)> =
            sqlx::query_as("SELECT role, status FROM user_accounts WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant.as_str())
                .bind(user_id)
                .fetch_optional(&mut **tx)
                .await?;
        found.ok_or_else(|| rejected(UserError::UnknownUser))
    }

    /// Refuses with `LAST_OWNER` unless another active owner remains besides `user_id`.
    async fn keep_an_owner(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: &TenantId,
        user_id: &str,
    ) -> Result<(), CommandError> {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM user_accounts \
             WHERE tenant_id = $1 AND role = 'owner' AND status = 'active' AND user_id <> $2",
        )
        .bind(tenant.as_str())
        .bind(user_id)
        .fetch_one(&mut **tx)
        .await?;
        if others == 0 {
            Err(rejected(UserError::LastOwner))
        } else {
            Ok(())
        }
    }
}

/// Writes a refresh token of `family`; expired tokens of the user are deleted on the way
/// (used tokens stay while they could still be presented, so reuse is still recognised).
async fn insert_refresh(
    tx: &mut Transaction<'static, Postgres>,
    account: &Account,
    family: &str,
    ttl: Duration,
) -> Result<RefreshToken, CommandError> {
    let token = fresh_token("rft");
    let now = Utc::now();
    let expires_at = now + ttl;
    sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1 AND expires_at < $2")
        .bind(&account.user_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO refresh_tokens (token_sha256, family_id, tenant_id, user_id, issued_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(sha256(&token))
    .bind(family)
    .bind(account.tenant.as_str())
    .bind(&account.user_id)
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(RefreshToken { token, expires_at })
}

async fn clear_two_factor(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &TenantId,
    user_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE user_accounts SET totp_sealed = NULL, totp_pending_sealed = NULL, totp_last_step = NULL, \
           recovery_sha256 = '{}', updated_at = now() WHERE tenant_id = $1 AND user_id = $2",
    )
    .bind(tenant.as_str())
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .map(drop)
}

fn open_secret(
    master: &chronicle_domain::pii::MasterKey,
    tenant: &TenantId,
    user_id: &str,
    wrapped: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CommandError> {
    let binding = totp_binding(user_id);
    let key = master.unwrap_key(wrapped, tenant, &binding).map_err(unexpected)?;
    key.open_bytes(tenant, &binding, sealed).map_err(unexpected)
}

async fn revoke_family(
    tx: &mut Transaction<'static, Postgres>,
    family: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
        .bind(family)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map(drop)
}

async fn revoke_all(
    tx: &mut Transaction<'static, Postgres>,
    user_id: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user_id)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map(drop)
}

const USER_COLUMNS: &str = "user_id, email, name, role, status, totp_sealed IS NOT NULL AS two_factor, invited_at, \
                            invited_by, updated_at";

/// A page of the tenant's users, oldest invitation first: `limit` users after the user at
/// (`after_at`, `after_id`), optionally only those with `status`.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    status: Option<&str>,
    after: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let (at, id) = after.unzip();
    sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM user_accounts WHERE tenant_id = $1 \
           AND ($2::text IS NULL OR status = $2) \
           AND ($3::timestamptz IS NULL OR (invited_at, user_id) > ($3, $4)) \
         ORDER BY invited_at, user_id LIMIT $5"
    ))
    .bind(tenant.as_str())
    .bind(status)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The id of the tenant's user with `email` (any case), if there is one.
pub async fn find_by_email(pool: &PgPool, tenant: &TenantId, email: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM user_accounts WHERE tenant_id = $1 AND email = lower($2)")
        .bind(tenant.as_str())
        .bind(email.trim())
        .fetch_optional(pool)
        .await
}

/// The tenant's user `user_id`, if it has them.
pub async fn find(pool: &PgPool, tenant: &TenantId, user_id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM user_accounts WHERE tenant_id = $1 AND user_id = $2"
    ))
    .bind(tenant.as_str())
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_256_bit_and_recovery_codes_compare_without_dash_or_case() {
        let token = fresh_token("rft");
        assert!(token.starts_with("rft_") && token.len() == 4 + 43, "{token}");
        assert_ne!(fresh_token("rft"), token);
        let code = fresh_recovery_code();
        assert_eq!(code.len(), 11);
        assert_eq!(
            recovery_hash("usr_a", &code),
            recovery_hash("usr_a", &code.replace('-', "").to_uppercase())
        );
        assert_ne!(recovery_hash("usr_a", &code), recovery_hash("usr_b", &code));
    }

    #[tokio::test]
    async fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password("correct horse battery staple").await.unwrap_or_default();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(password_matches(&hash, "correct horse battery staple")
            .await
            .unwrap_or(false));
        assert!(!password_matches(&hash, "correct horse battery stapl")
            .await
            .unwrap_or(true));
        assert!(!password_matches("not a hash", "x").await.unwrap_or(true));
    }
}
