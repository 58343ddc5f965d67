//! The `WebhookEndpoint` aggregate (issue 13): an integrator's receiver of the tenant's events,
//! managed through GraphQL. Stream id: `<tenant>:whk_<id>`, aggregate type `WebhookEndpoint`.
//!
//! The log records who created an endpoint for which URL and event types, every secret
//! rotation (never the secret), and every disabling (by a person, or automatically after
//! persistent failure, with the reason) and enabling. The secrets and the delivery state live
//! beside the log (`commands::webhooks`, decision 0016).
//!
//! Rules held here:
//! - a URL is `https://` or `http://`, at most 2,000 characters (whether its host may be a
//!   private address is the caller's check: it depends on the deployment);
//! - event types are deduplicated and sorted; none means every type;
//! - a description is at most 200 characters;
//! - a stream holds one endpoint; a deleted endpoint takes no command;
//! - disabling a disabled endpoint, or enabling an enabled one, changes nothing.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// The longest URL of an endpoint.
pub const MAX_URL_CHARS: usize = 2_000;
/// The longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 200;

/// A request to change a webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum WebhookCommand {
    /// Create the endpoint (its secret is kept beside the log by the caller).
    CreateWebhookEndpoint {
        url: String,
        event_types: Vec<String>,
        description: Option<String>,
        at: DateTime<Utc>,
    },
    /// A new secret; the previous one still signs until `previous_valid_until`.
    RotateWebhookSecret {
        previous_valid_until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Stop delivering (`automatic`: after persistent failure).
    DisableWebhookEndpoint {
        reason: String,
        automatic: bool,
        at: DateTime<Utc>,
    },
    /// Deliver again, from where delivery stopped.
    EnableWebhookEndpoint { at: DateTime<Utc> },
    /// Delete the endpoint: nothing more is delivered to it.
    DeleteWebhookEndpoint { at: DateTime<Utc> },
}

/// Facts about a webhook endpoint. Names are contracts: never renamed once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum WebhookEvent {
    /// The endpoint was created (enabled). `event_types` empty: every type.
    WebhookEndpointCreated {
        url: String,
        event_types: Vec<String>,
        description: Option<String>,
        at: DateTime<Utc>,
    },
    /// Its secret was replaced; the previous one signs too until `previous_valid_until`.
    WebhookSecretRotated {
        previous_valid_until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Delivery stopped: by a person, or automatically after persistent failure.
    WebhookEndpointDisabled {
        reason: String,
        automatic: bool,
        at: DateTime<Utc>,
    },
    /// Delivery resumed from where it stopped.
    WebhookEndpointEnabled { at: DateTime<Utc> },
    /// The endpoint was deleted.
    WebhookEndpointDeleted { at: DateTime<Utc> },
}

impl WebhookEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &[
        "WebhookEndpointCreated",
        "WebhookSecretRotated",
        "WebhookEndpointDisabled",
        "WebhookEndpointEnabled",
        "WebhookEndpointDeleted",
    ];
}

impl DomainEvent for WebhookEvent {
    fn event_type(&self) -> String {
        match self {
            Self::WebhookEndpointCreated { .. } => "WebhookEndpointCreated",
            Self::WebhookSecretRotated { .. } => "WebhookSecretRotated",
            Self::WebhookEndpointDisabled { .. } => "WebhookEndpointDisabled",
            Self::WebhookEndpointEnabled { .. } => "WebhookEndpointEnabled",
            Self::WebhookEndpointDeleted { .. } => "WebhookEndpointDeleted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}

/// Why a webhook command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// A URL is http(s) and at most 2,000 characters.
    #[error("a webhook URL is an http:// or https:// URL of at most {MAX_URL_CHARS} characters")]
    InvalidWebhookUrl,
    /// A description is at most 200 characters.
    #[error("a webhook description is at most {MAX_DESCRIPTION_CHARS} characters")]
    DescriptionTooLong,
    /// A stream holds one endpoint.
    #[error("this webhook endpoint already exists")]
    WebhookAlreadyExists,
    /// Commands need an existing, undeleted endpoint.
    #[error("there is no such webhook endpoint")]
    UnknownWebhook,
    /// A grace period ends after the rotation.
    #[error("the previous secret's grace period must end after the rotation")]
    GraceInThePast,
    /// A tenant has at most [`MAX_ENDPOINTS_PER_TENANT`] endpoints (deleted ones not counted).
    #[error("a tenant has at most {limit} webhook endpoints: delete one first")]
    TooManyWebhooks { limit: i64 },
}

/// The most endpoints (not deleted) one tenant may have: every endpoint costs the dispatcher a
/// pass over the tenant's log.
pub const MAX_ENDPOINTS_PER_TENANT: i64 = 25;

impl WebhookError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidWebhookUrl => "INVALID_WEBHOOK_URL",
            Self::DescriptionTooLong => "DESCRIPTION_TOO_LONG",
            Self::WebhookAlreadyExists => "WEBHOOK_ALREADY_EXISTS",
            Self::UnknownWebhook => "UNKNOWN_WEBHOOK",
            Self::GraceInThePast => "GRACE_IN_THE_PAST",
            Self::TooManyWebhooks { .. } => "TOO_MANY_WEBHOOKS",
        }
    }
}

/// Whether `url` is an http(s) URL of acceptable length (no parsing beyond the scheme and a
/// host: the caller resolves and checks the host).
pub fn check_url(url: &str) -> Result<(), WebhookError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(WebhookError::InvalidWebhookUrl)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if url.chars().count() > MAX_URL_CHARS || host.is_empty() || url.chars().any(char::is_whitespace) {
        return Err(WebhookError::InvalidWebhookUrl);
    }
    Ok(())
}

/// A webhook endpoint of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookEndpoint {
    created: bool,
    deleted: bool,
    enabled: bool,
    url: String,
    event_types: Vec<String>,
}

impl WebhookEndpoint {
    /// Whether it exists (created, not deleted).
    pub fn exists(&self) -> bool {
        self.created && !self.deleted
    }

    /// Whether deliveries run.
    pub fn is_enabled(&self) -> bool {
        self.exists() && self.enabled
    }

    fn decide(&self, command: WebhookCommand) -> Result<Option<WebhookEvent>, WebhookError> {
        if let WebhookCommand::CreateWebhookEndpoint {
            url,
            event_types,
            description,
            at,
        } = command
        {
            if self.created {
                return Err(WebhookError::WebhookAlreadyExists);
            }
            let url = url.trim().to_string();
            check_url(&url)?;
            let description = description.map(|d| d.trim().to_string()).filter(|d| !d.is_empty());
            if description
                .as_ref()
                .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
            {
                return Err(WebhookError::DescriptionTooLong);
            }
            let mut event_types: Vec<String> = event_types.into_iter().map(|t| t.trim().to_string()).collect();
            event_types.sort_unstable();
            event_types.dedup();
            return Ok(Some(WebhookEvent::WebhookEndpointCreated {
                url,
                event_types,
                description,
                at,
            }));
        }
        if !self.exists() {
            return Err(WebhookError::UnknownWebhook);
        }
        Ok(match command {
            WebhookCommand::CreateWebhookEndpoint { .. } => None,
            WebhookCommand::RotateWebhookSecret {
                previous_valid_until,
                at,
            } => {
                if previous_valid_until < at {
                    return Err(WebhookError::GraceInThePast);
                }
                Some(WebhookEvent::WebhookSecretRotated {
                    previous_valid_until,
                    at,
                })
            }
            WebhookCommand::DisableWebhookEndpoint { reason, automatic, at } => {
                self.enabled.then_some(WebhookEvent::WebhookEndpointDisabled {
                    reason: reason.trim().to_string(),
                    automatic,
                    at,
                })
            }
            WebhookCommand::EnableWebhookEndpoint { at } => {
                (!self.enabled).then_some(WebhookEvent::WebhookEndpointEnabled { at })
            }
            WebhookCommand::DeleteWebhookEndpoint { at } => Some(WebhookEvent::WebhookEndpointDeleted { at }),
        })
    }
}

impl Aggregate for WebhookEndpoint {
    const TYPE: &'static str = "WebhookEndpoint";
    type Command = WebhookCommand;
    type Event = WebhookEvent;
    type Error = WebhookError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(event) = self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            WebhookEvent::WebhookEndpointCreated { url, event_types, .. } => {
                self.created = true;
                self.enabled = true;
                self.url = url;
                self.event_types = event_types;
            }
            WebhookEvent::WebhookSecretRotated { .. } => {}
            WebhookEvent::WebhookEndpointDisabled { .. } => self.enabled = false,
            WebhookEvent::WebhookEndpointEnabled { .. } => self.enabled = true,
            WebhookEvent::WebhookEndpointDeleted { .. } => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type F = TestFramework<WebhookEndpoint>;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap_or_default()
    }

    fn create(url: &str) -> WebhookCommand {
        WebhookCommand::CreateWebhookEndpoint {
            url: url.into(),
            event_types: vec!["LeadWon".into(), " LeadCaptured".into(), "LeadWon".into()],
            description: Some("  ".into()),
            at: at(0),
        }
    }

    fn created() -> WebhookEvent {
        WebhookEvent::WebhookEndpointCreated {
            url: "https://crm.example/hook".into(),
            event_types: vec!["LeadCaptured".into(), "LeadWon".into()],
            description: None,
            at: at(0),
        }
    }

    #[test]
    fn an_endpoint_is_created_enabled_with_its_types_sorted_and_a_bad_url_is_refused() {
        F::with(())
            .given_no_previous_events()
            .when(create(" https://crm.example/hook "))
            .then_expect_events(vec![created()]);
        for url in ["ftp://x", "https://", "https://a b", "crm.example/hook"] {
            F::with(())
                .given_no_previous_events()
                .when(create(url))
                .then_expect_error(WebhookError::InvalidWebhookUrl);
        }
        F::with(())
            .given_no_previous_events()
            .when(WebhookCommand::CreateWebhookEndpoint {
                url: "https://x.example".into(),
                event_types: vec![],
                description: Some("d".repeat(201)),
                at: at(0),
            })
            .then_expect_error(WebhookError::DescriptionTooLong);
        F::with(())
            .given(vec![created()])
            .when(create("https://crm.example/hook"))
            .then_expect_error(WebhookError::WebhookAlreadyExists);
    }

    #[test]
    fn disabling_and_enabling_change_only_what_is_not_already_so_and_a_deleted_endpoint_takes_nothing() {
        let disable = || WebhookCommand::DisableWebhookEndpoint {
            reason: "8 failures".into(),
            automatic: true,
            at: at(5),
        };
        F::with(())
            .given(vec![created()])
            .when(disable())
            .then_expect_events(vec![WebhookEvent::WebhookEndpointDisabled {
                reason: "8 failures".into(),
                automatic: true,
                at: at(5),
            }]);
        F::with(())
            .given(vec![
                created(),
                WebhookEvent::WebhookEndpointDisabled {
                    reason: "x".into(),
                    automatic: false,
                    at: at(1),
                },
            ])
            .when(disable())
            .then_expect_events(vec![]);
        F::with(())
            .given(vec![created()])
            .when(WebhookCommand::EnableWebhookEndpoint { at: at(6) })
            .then_expect_events(vec![]);
        F::with(())
            .given(vec![created(), WebhookEvent::WebhookEndpointDeleted { at: at(2) }])
            .when(WebhookCommand::EnableWebhookEndpoint { at: at(6) })
            .then_expect_error(WebhookError::UnknownWebhook);
        F::with(())
            .given_no_previous_events()
            .when(disable())
            .then_expect_error(WebhookError::UnknownWebhook);
        F::with(())
            .given(vec![created()])
            .when(WebhookCommand::RotateWebhookSecret {
                previous_valid_until: at(-1),
                at: at(0),
            })
            .then_expect_error(WebhookError::GraceInThePast);
    }
}
