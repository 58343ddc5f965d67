//! The one error type of the API, mapped once at the boundary: both an HTTP response and a
//! GraphQL error with `extensions.code`. The caller's fault gets a 4xx and its code; anything
//! unexpected is logged once with its cause chain and answered as an opaque `INTERNAL`.

use async_graphql::ErrorExtensions;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chronicle_commands::error::CommandError;
use serde_json::json;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401 `UNAUTHENTICATED`: no credential, or an invalid one.
    #[error("{0}")]
    Unauthenticated(String),
    /// 401 with a code: a sign-in, refresh or token refused (`crate::http::auth`).
    #[error("{message}")]
    SignInRefused { code: &'static str, message: String },
    /// 429 `TOO_MANY_SIGN_IN_ATTEMPTS`: too many failed sign-ins of the account or address;
    /// `Retry-After` says when to try again.
    #[error("too many failed sign-ins: try again in {} seconds", retry_after.as_secs_f64().ceil())]
    TooManySignInAttempts { retry_after: std::time::Duration },
    /// 403 `FORBIDDEN`: the caller's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 400 with a code: malformed input, refused before anything is stored.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// From the write side: 422 for a domain refusal (its rule's code; 402 for
    /// `INSUFFICIENT_BALANCE`), 409 `CONFLICT`, 400 `INVALID_INPUT`, 500 `INTERNAL`.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// 503 `CONSISTENCY_TIMEOUT`: the read models a query reads did not reach the cursor it
    /// asked for (`atLeast`) within its timeout.
    #[error("{0}")]
    ConsistencyTimeout(String),
    /// 503 `UNAVAILABLE`: a dependency is down.
    #[error("{0}")]
    Unavailable(String),
    /// `SUBSCRIBER_TOO_SLOW` (subscriptions only; 503 if it ever reached HTTP): the subscriber
    /// fell too far behind the log and its subscription was closed. `extensions.lastCursor`
    /// is the cursor of the last event it was given: resume after it.
    #[error(
        "this subscription fell more than {buffer} events behind the log and was closed; resume with \
         events(after: \"{last_cursor}\") or read on with eventLog(after: \"{last_cursor}\")"
    )]
    SubscriberTooSlow { last_cursor: String, buffer: usize },
    /// 500 `INTERNAL`: anything else. The cause is logged, never shown.
    #[error("internal error")]
    Unexpected(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<chronicle_commands::payments::CallbackError> for ApiError {
    fn from(e: chronicle_commands::payments::CallbackError) -> Self {
        use chronicle_commands::payments::CallbackError;
        match e {
            CallbackError::Command(e) => Self::Command(e),
            CallbackError::NotConfigured { .. } => Self::bad_request("PROVIDER_NOT_CONFIGURED", e.to_string()),
            CallbackError::Upstream(reason) => {
                Self::Unavailable(format!("the payment provider cannot be reached: {reason}"))
            }
            other => Self::Unexpected(Box::new(other)),
        }
    }
}

impl From<chronicle_commands::users::AuthError> for ApiError {
    fn from(e: chronicle_commands::users::AuthError) -> Self {
        use chronicle_commands::users::AuthError;
        match e {
            AuthError::Refused(refusal) => Self::SignInRefused {
                code: refusal.code(),
                message: refusal.to_string(),
            },
            AuthError::Command(e) => Self::Command(e),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unexpected(Box::new(e))
    }
}

impl From<chronicle_projections::live::LiveError> for ApiError {
    fn from(e: chronicle_projections::live::LiveError) -> Self {
        use chronicle_projections::live::LiveError;
        match e {
            LiveError::Database(e) => Self::from(e),
            LiveError::FellBehind { last_delivered, buffer } => Self::SubscriberTooSlow {
                last_cursor: last_delivered.to_string(),
                buffer,
            },
        }
    }
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(_) | Self::SignInRefused { .. } => StatusCode::UNAUTHORIZED,
            Self::TooManySignInAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            // An insufficient balance is the one refusal HTTP has a status of its own for.
            Self::Command(CommandError::Rejected(chronicle_commands::error::DomainError::Wallet(
                chronicle_domain::wallet::WalletError::InsufficientBalance { .. },
            ))) => StatusCode::PAYMENT_REQUIRED,
            Self::Command(CommandError::Rejected(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Command(CommandError::Conflict) => StatusCode::CONFLICT,
            Self::Command(CommandError::InvalidInput(_)) => StatusCode::BAD_REQUEST,
            Self::Command(CommandError::Unexpected(_)) | Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) | Self::ConsistencyTimeout(_) | Self::SubscriberTooSlow { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::SignInRefused { code, .. } => code,
            Self::TooManySignInAttempts { .. } => "TOO_MANY_SIGN_IN_ATTEMPTS",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::BadRequest { code, .. } => code,
            Self::Command(e) => e.code(),
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::SubscriberTooSlow { .. } => "SUBSCRIBER_TOO_SLOW",
            Self::ConsistencyTimeout(_) => "CONSISTENCY_TIMEOUT",
            Self::Unexpected(_) => "INTERNAL",
        }
    }

    /// The message shown to the caller: opaque for internal failures.
    fn public_message(&self) -> String {
        match self {
            Self::Unexpected(_) | Self::Command(CommandError::Unexpected(_)) => "internal error".to_string(),
            other => other.to_string(),
        }
    }

    /// Logs an unexpected failure once, with its cause chain.
    fn log_if_unexpected(&self) {
        let source: Option<&(dyn std::error::Error + 'static)> = match self {
            Self::Unexpected(e) | Self::Command(CommandError::Unexpected(e)) => Some(e.as_ref()),
            _ => None,
        };
        if let Some(mut cause) = source {
            let mut chain = cause.to_string();
            while let Some(next) = cause.source() {
                chain.push_str(": ");
                chain.push_str(&next.to_string());
                cause = next;
            }
            tracing::error!(error.chain = %chain, "request failed unexpectedly");
        }
    }

    /// A 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_if_unexpected();
        let mut body = json!({ "error": { "code": self.code(), "message": self.public_message() } });
        let retry_after = match &self {
            Self::TooManySignInAttempts { retry_after } => {
                body["error"]["retryAfterMs"] = json!(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX));
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            _ => None,
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        self.log_if_unexpected();
        async_graphql::Error::new(self.public_message()).extend_with(|_, ext| {
            ext.set("code", self.code());
            // INSUFFICIENT_BALANCE carries the amounts (milli-tokens) the caller must know.
            if let Self::Command(CommandError::Rejected(chronicle_commands::error::DomainError::Wallet(
                chronicle_domain::wallet::WalletError::InsufficientBalance { required, available },
            ))) = self
            {
                ext.set("required", *required);
                ext.set("available", *available);
            }
            if let Self::SubscriberTooSlow { last_cursor, .. } = self {
                ext.set("lastCursor", last_cursor.as_str());
            }
        })
    }
}

/// Turns an API result into a GraphQL result whose error carries `extensions.code`. (The
/// blanket `From<Display>` of async-graphql would drop the code, so resolvers call this.)
pub trait IntoGraphql<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T, E: Into<ApiError>> IntoGraphql<T> for Result<T, E> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|e| e.into().extend())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronicle_commands::error::DomainError;
    use chronicle_domain::wallet::WalletError;

    #[test]
    fn an_insufficient_balance_is_402_and_other_refusals_422() {
        let short = ApiError::Command(CommandError::Rejected(DomainError::Wallet(
            WalletError::InsufficientBalance {
                required: 5,
                available: 1,
            },
        )));
        assert_eq!(short.status(), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(short.code(), "INSUFFICIENT_BALANCE");
        let response = short.into_response();
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        let other = ApiError::Command(CommandError::Rejected(DomainError::Wallet(
            WalletError::NonPositiveAmount { amount: 0 },
        )));
        assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
