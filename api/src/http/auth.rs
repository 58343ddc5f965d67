//! Sign-in over HTTP (issue 14). JSON in, JSON out; every refusal is
//! `{"error": {"code", "message"}}`.
//!
//! - `POST /auth/sign-in` `{"tenant", "email", "password", "code"?, "recoveryCode"?}`: a session.
//!   401 `INVALID_CREDENTIALS` (unknown e-mail and wrong password alike),
//!   `SECOND_FACTOR_REQUIRED`, `INVALID_SECOND_FACTOR`, `ACCOUNT_DEACTIVATED`; 429
//!   `TOO_MANY_SIGN_IN_ATTEMPTS` with `Retry-After` (see `crate::sessions`).
//! - `POST /auth/refresh` `{"refreshToken"}`: the next session of the family. 401
//!   `INVALID_REFRESH_TOKEN`, `REFRESH_TOKEN_REUSED` (the family is ended),
//!   `ACCOUNT_DEACTIVATED`.
//! - `POST /auth/sign-out` `{"refreshToken"}`: 204; the family is ended.
//! - `POST /auth/accept-invitation` `{"token", "password"}`: the account becomes active; a
//!   session. 401 `INVALID_TOKEN`; 422 `INVITATION_EXPIRED`, `WEAK_PASSWORD`.
//! - `POST /auth/reset-password` `{"token", "password"}`: a new password, every session
//!   ended; a new session. 401 `INVALID_TOKEN`; 422 `PASSWORD_RESET_EXPIRED`, `WEAK_PASSWORD`.
//!
//! A session is `{"accessToken", "tokenType": "Bearer", "expiresIn", "refreshToken",
//! "refreshExpiresAt", "userId", "role", "tenant"}`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use chronicle_commands::users::{Account, AuthError, SecondFactor};
use chronicle_domain::tenant::TenantId;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

use super::CorrelationId;
use crate::app::AppState;
use crate::auth::{mint, Role};
use crate::error::ApiError;
use crate::sessions::Subject;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/sign-in", post(sign_in))
        .route("/auth/refresh", post(refresh))
        .route("/auth/sign-out", post(sign_out))
        .route("/auth/accept-invitation", post(accept_invitation))
        .route("/auth/reset-password", post(reset_password))
}

/// The longest password or token read (longer ones are refused before any hashing).
const MAX_FIELD_CHARS: usize = 1024;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SignIn {
    tenant: String,
    email: String,
    password: String,
    code: Option<String>,
    recovery_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenAndPassword {
    token: String,
    password: String,
}

/// Reads a JSON body: 400 `INVALID_INPUT` naming what is wrong.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("INVALID_INPUT", format!("the body is not the expected JSON: {e}")))
}

fn too_long(fields: &[&str]) -> Result<(), ApiError> {
    if fields.iter().any(|f| f.chars().count() > MAX_FIELD_CHARS) {
        return Err(ApiError::bad_request(
            "INVALID_INPUT",
            format!("a field is longer than {MAX_FIELD_CHARS} characters"),
        ));
    }
    Ok(())
}

fn refused(e: AuthError) -> ApiError {
    ApiError::from(e)
}

/// The client's address: the last hop of the configured header (set by the proxy in front),
/// else the TCP peer; `None` when neither is known (the address is then not limited).
fn client_address(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<String> {
    let forwarded = state.sessions.client_ip_header.as_ref().and_then(|name| {
        headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    });
    // A request without the header (one that did not come through the proxy) counts by its
    // TCP peer, never unlimited.
    forwarded.or_else(|| peer.map(|p| p.ip().to_string()))
}

/// Mints the access token and starts (or continues) a session's answer.
async fn session(
    state: &AppState,
    account: &Account,
    refresh: chronicle_commands::users::RefreshToken,
) -> Result<Response, ApiError> {
    let role = Role::parse(&account.role)
        .ok_or_else(|| ApiError::Unexpected(format!("a stored role is not a role: {}", account.role).into()))?;
    let ttl = state.sessions.access_ttl;
    let access = mint(
        state.token_keys.current(),
        &account.tenant,
        &account.user_id,
        role,
        chrono::Duration::from_std(ttl).map_err(|e| ApiError::Unexpected(Box::new(e)))?,
    )?;
    let mut response = Json(json!({
        "accessToken": access,
        "tokenType": "Bearer",
        "expiresIn": ttl.as_secs(),
        "refreshToken": refresh.token,
        "refreshExpiresAt": refresh.expires_at,
        "userId": account.user_id,
        "role": account.role,
        "tenant": account.tenant.as_str(),
    }))
    .into_response();
    // Tokens are never cached by a browser or a proxy.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn refresh_ttl(state: &AppState) -> Result<chrono::Duration, ApiError> {
    chrono::Duration::from_std(state.sessions.refresh_ttl).map_err(|e| ApiError::Unexpected(Box::new(e)))
}

async fn sign_in(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let request: SignIn = body(&bytes)?;
    too_long(&[&request.email, &request.password, &request.tenant])?;
    let tenant = TenantId::parse(request.tenant.trim())
        .map_err(|e| ApiError::bad_request("INVALID_INPUT", format!("tenant: {e}")))?;
    let span = tracing::info_span!("auth.sign_in", tenant.id = %tenant, correlation.id = %correlation.0);
    async move {
        // The address first: a paced address is refused before it touches the account's count
        // (an attacker cannot keep restarting a victim's wait).
        let account = Subject::Account {
            tenant: tenant.to_string(),
            email: request.email.clone(),
        };
        let mut subjects = Vec::new();
        if let Some(address) = client_address(&state, &headers, peer.map(|Extension(ConnectInfo(a))| a)) {
            subjects.push(Subject::Address(address));
        }
        subjects.push(account.clone());
        let limiter = &state.sign_in_limiter;
        let unavailable = |e: crate::sessions::LimiterUnavailable| ApiError::Unavailable(e.to_string());
        // Reserved before the password is checked (counted as a failure unless given back).
        let wait = limiter.attempt(&subjects).await.map_err(unavailable)?;
        if !wait.is_zero() {
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "sign-in attempt refused: too many failures"
            );
            return Err(ApiError::TooManySignInAttempts { retry_after: wait });
        }
        let second = match (request.code, request.recovery_code) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "INVALID_INPUT",
                    "send either `code` or `recoveryCode`, not both",
                ))
            }
            (Some(code), None) => Some(SecondFactor::Code(code)),
            (None, Some(code)) => Some(SecondFactor::RecoveryCode(code)),
            (None, None) => None,
        };
        let outcome = state
            .commands
            .sign_in(
                state.keys.master(),
                &tenant,
                &request.email,
                &request.password,
                second,
                &correlation.0,
                refresh_ttl(&state)?,
            )
            .await;
        let give_back = |subjects: &[Subject]| {
            let subjects = subjects.to_vec();
            async move {
                for subject in &subjects {
                    limiter.refund(subject).await?;
                }
                Ok::<(), crate::sessions::LimiterUnavailable>(())
            }
        };
        match outcome {
            Ok((signed_in, refresh)) => {
                limiter.succeeded(&account).await.map_err(unavailable)?;
                let addresses: Vec<Subject> = subjects.iter().filter(|s| **s != account).cloned().collect();
                give_back(&addresses).await.map_err(unavailable)?;
                let account = signed_in;
                tracing::info!(user.id = %account.user_id, "signed in");
                session(&state, &account, refresh).await
            }
            Err(AuthError::Refused(refusal)) => {
                // A missing second factor after the right password is not a guess; a wrong
                // or reused code is, and stays counted.
                if refusal == chronicle_commands::users::AuthRefusal::SecondFactorRequired {
                    give_back(&subjects).await.map_err(unavailable)?;
                }
                tracing::info!(refusal = refusal.code(), "sign-in refused");
                Err(refused(AuthError::Refused(refusal)))
            }
            Err(e) => {
                // Our failure, not the caller's guess.
                give_back(&subjects).await.map_err(unavailable)?;
                Err(refused(e))
            }
        }
    }
    .instrument(span)
    .await
}

async fn refresh(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let request: RefreshBody = body(&bytes)?;
    too_long(&[&request.refresh_token])?;
    let span = tracing::info_span!("auth.refresh", correlation.id = %correlation.0);
    async move {
        let (account, next) = state
            .commands
            .refresh(&request.refresh_token, refresh_ttl(&state)?)
            .await
            .map_err(refused)?;
        session(&state, &account, next).await
    }
    .instrument(span)
    .await
}

async fn sign_out(State(state): State<AppState>, bytes: Bytes) -> Result<Response, ApiError> {
    let request: RefreshBody = body(&bytes)?;
    too_long(&[&request.refresh_token])?;
    state.commands.sign_out(&request.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Which one-time token a request presents.
#[derive(Clone, Copy)]
enum OneTime {
    Invitation,
    Reset,
}

async fn accept_invitation(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    with_token(state, correlation, bytes, OneTime::Invitation).await
}

async fn reset_password(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    with_token(state, correlation, bytes, OneTime::Reset).await
}

/// Sets a password with a one-time token (an invitation accepted, a reset completed) and
/// starts a session.
async fn with_token(
    state: AppState,
    correlation: CorrelationId,
    bytes: Bytes,
    kind: OneTime,
) -> Result<Response, ApiError> {
    let request: TokenAndPassword = body(&bytes)?;
    too_long(&[&request.token, &request.password])?;
    let span = match kind {
        OneTime::Invitation => tracing::info_span!("auth.accept_invitation", correlation.id = %correlation.0),
        OneTime::Reset => tracing::info_span!("auth.reset_password", correlation.id = %correlation.0),
    };
    async move {
        let commands = &state.commands;
        let account = match kind {
            OneTime::Invitation => {
                commands
                    .accept_invitation(&request.token, &request.password, &correlation.0)
                    .await
            }
            OneTime::Reset => {
                commands
                    .reset_password(&request.token, &request.password, &correlation.0)
                    .await
            }
        }
        .map_err(refused)?;
        let refresh = commands
            .start_session(&account, refresh_ttl(&state)?)
            .await
            .map_err(refused)?;
        session(&state, &account, refresh).await
    }
    .instrument(span)
    .await
}
