//! The `ApiKey` aggregate's commands, events, refusals, state and command handling.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::values::{ApiKeyScope, MAX_KEY_NAME_CHARS};

/// A request to change an API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ApiKeyCommand {
    /// Issue the key (its secret's hash is kept beside the log by the caller).
    IssueApiKey(IssueApiKey),
    /// Revoke the key: refused on its next request.
    RevokeApiKey { reason: Option<String>, at: DateTime<Utc> },
}

/// A key as the issuer asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IssueApiKey {
    /// What the key is for, e.g. "Zoho sync".
    pub name: String,
    /// The visible start of the key (`chr_<id>`), so people can tell keys apart.
    pub prefix: String,
    /// The role the key acts with (a role name of DOMAIN.md).
    pub role: String,
    pub scopes: Vec<ApiKeyScope>,
    /// After this the key is refused; `None` for a key that does not expire.
    pub expires_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

/// Facts about an API key. Names are contracts: never renamed once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ApiKeyEvent {
    /// The key was issued (the secret is not here: only its holder and a hash beside the log
    /// know it). Scopes are sorted, without repeats.
    ApiKeyIssued {
        name: String,
        prefix: String,
        role: String,
        scopes: Vec<ApiKeyScope>,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// The key was revoked.
    ApiKeyRevoked { reason: Option<String>, at: DateTime<Utc> },
}

impl ApiKeyEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &["ApiKeyIssued", "ApiKeyRevoked"];
}

impl DomainEvent for ApiKeyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ApiKeyIssued { .. } => "ApiKeyIssued",
            Self::ApiKeyRevoked { .. } => "ApiKeyRevoked",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}

/// Why an API key command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// A key's name is 1 to 100 characters, not blank.
    #[error("a key's name is 1 to {MAX_KEY_NAME_CHARS} characters and not blank; got {chars} characters")]
    InvalidApiKeyName { chars: usize },
    /// A key has at least one scope.
    #[error("a key needs at least one scope")]
    NoScopes,
    /// An expiry is in the future.
    #[error("a key's expiry must be after the moment it is issued")]
    ExpiryNotInFuture,
    /// A stream holds one key.
    #[error("this key was already issued")]
    ApiKeyAlreadyIssued,
    /// Only an issued key is revoked.
    #[error("there is no such API key")]
    UnknownApiKey,
}

impl ApiKeyError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidApiKeyName { .. } => "INVALID_API_KEY_NAME",
            Self::NoScopes => "NO_SCOPES",
            Self::ExpiryNotInFuture => "EXPIRY_NOT_IN_FUTURE",
            Self::ApiKeyAlreadyIssued => "API_KEY_ALREADY_ISSUED",
            Self::UnknownApiKey => "UNKNOWN_API_KEY",
        }
    }
}

/// An API key of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiKey {
    issued: bool,
    name: String,
    prefix: String,
    role: String,
    scopes: Vec<ApiKeyScope>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether the key was issued.
    pub fn is_issued(&self) -> bool {
        self.issued
    }

    /// When the key was revoked, if it was.
    pub fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.revoked_at
    }

    /// The key's scopes, sorted.
    pub fn scopes(&self) -> &[ApiKeyScope] {
        &self.scopes
    }

    /// The key's role.
    pub fn role(&self) -> &str {
        &self.role
    }

    fn issue(&self, cmd: IssueApiKey) -> Result<ApiKeyEvent, ApiKeyError> {
        if self.issued {
            return Err(ApiKeyError::ApiKeyAlreadyIssued);
        }
        let name = cmd.name.trim().to_string();
        let chars = name.chars().count();
        if name.is_empty() || chars > MAX_KEY_NAME_CHARS {
            return Err(ApiKeyError::InvalidApiKeyName {
                chars: cmd.name.chars().count(),
            });
        }
        let mut scopes = cmd.scopes;
        scopes.sort_unstable();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(ApiKeyError::NoScopes);
        }
        if cmd.expires_at.is_some_and(|expiry| expiry <= cmd.at) {
            return Err(ApiKeyError::ExpiryNotInFuture);
        }
        Ok(ApiKeyEvent::ApiKeyIssued {
            name,
            prefix: cmd.prefix,
            role: cmd.role,
            scopes,
            expires_at: cmd.expires_at,
            at: cmd.at,
        })
    }

    fn revoke(&self, reason: Option<String>, at: DateTime<Utc>) -> Result<Option<ApiKeyEvent>, ApiKeyError> {
        if !self.issued {
            return Err(ApiKeyError::UnknownApiKey);
        }
        if self.revoked_at.is_some() {
            return Ok(None);
        }
        let reason = reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
        Ok(Some(ApiKeyEvent::ApiKeyRevoked { reason, at }))
    }
}

impl Aggregate for ApiKey {
    const TYPE: &'static str = "ApiKey";
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type Error = ApiKeyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            ApiKeyCommand::IssueApiKey(cmd) => Some(self.issue(cmd)?),
            ApiKeyCommand::RevokeApiKey { reason, at } => self.revoke(reason, at)?,
        };
        if let Some(event) = event {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ApiKeyEvent::ApiKeyIssued {
                name,
                prefix,
                role,
                scopes,
                expires_at,
                ..
            } => {
                self.issued = true;
                self.name = name;
                self.prefix = prefix;
                self.role = role;
                self.scopes = scopes;
                self.expires_at = expires_at;
            }
            ApiKeyEvent::ApiKeyRevoked { at, .. } => self.revoked_at = Some(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap_or_default()
    }

    fn issue(scopes: Vec<ApiKeyScope>, expires_at: Option<DateTime<Utc>>) -> ApiKeyCommand {
        ApiKeyCommand::IssueApiKey(IssueApiKey {
            name: " Zoho sync ".into(),
            prefix: "chr_abc".into(),
            role: "integrator".into(),
            scopes,
            expires_at,
            at: at(0),
        })
    }

    fn issued() -> ApiKeyEvent {
        ApiKeyEvent::ApiKeyIssued {
            name: "Zoho sync".into(),
            prefix: "chr_abc".into(),
            role: "integrator".into(),
            scopes: vec![ApiKeyScope::EventsRead, ApiKeyScope::LeadsWrite],
            expires_at: Some(at(60)),
            at: at(0),
        }
    }

    type F = TestFramework<ApiKey>;

    #[test]
    fn a_key_is_issued_with_its_scopes_sorted_and_folded() {
        F::with(())
            .given_no_previous_events()
            .when(issue(
                vec![
                    ApiKeyScope::LeadsWrite,
                    ApiKeyScope::EventsRead,
                    ApiKeyScope::LeadsWrite,
                ],
                Some(at(60)),
            ))
            .then_expect_events(vec![issued()]);
    }

    #[test]
    fn a_key_without_scopes_a_blank_or_long_name_or_a_past_expiry_is_refused() {
        F::with(())
            .given_no_previous_events()
            .when(issue(vec![], None))
            .then_expect_error(ApiKeyError::NoScopes);
        F::with(())
            .given_no_previous_events()
            .when(issue(vec![ApiKeyScope::EventsRead], Some(at(0))))
            .then_expect_error(ApiKeyError::ExpiryNotInFuture);
        let named = |name: String| {
            ApiKeyCommand::IssueApiKey(IssueApiKey {
                name,
                prefix: "chr_abc".into(),
                role: "integrator".into(),
                scopes: vec![ApiKeyScope::EventsRead],
                expires_at: None,
                at: at(0),
            })
        };
        F::with(())
            .given_no_previous_events()
            .when(named("  ".into()))
            .then_expect_error(ApiKeyError::InvalidApiKeyName { chars: 2 });
        F::with(())
            .given_no_previous_events()
            .when(named("k".repeat(101)))
            .then_expect_error(ApiKeyError::InvalidApiKeyName { chars: 101 });
    }

    #[test]
    fn a_stream_holds_one_key() {
        F::with(())
            .given(vec![issued()])
            .when(issue(vec![ApiKeyScope::EventsRead], None))
            .then_expect_error(ApiKeyError::ApiKeyAlreadyIssued);
    }

    #[test]
    fn revoking_needs_an_issued_key_and_a_second_revocation_changes_nothing() {
        let revoke = || ApiKeyCommand::RevokeApiKey {
            reason: Some(" leaked ".into()),
            at: at(5),
        };
        F::with(())
            .given_no_previous_events()
            .when(revoke())
            .then_expect_error(ApiKeyError::UnknownApiKey);
        F::with(())
            .given(vec![issued()])
            .when(revoke())
            .then_expect_events(vec![ApiKeyEvent::ApiKeyRevoked {
                reason: Some("leaked".into()),
                at: at(5),
            }]);
        F::with(())
            .given(vec![
                issued(),
                ApiKeyEvent::ApiKeyRevoked {
                    reason: None,
                    at: at(5),
                },
            ])
            .when(revoke())
            .then_expect_events(vec![]);
    }
}
