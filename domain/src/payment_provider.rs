//! The `PaymentProviderConfig` aggregate: a tenant's configuration of one payment provider, as
//! the audit trail sees it. Stream id: `<tenant>:payprov_<provider>` (`payprov_paynow`,
//! `payprov_mpesa`, `payprov_stripe`), aggregate type `PaymentProviderConfig`.
//!
//! The secrets themselves never enter the log: they are sealed beside it
//! (`commands::payments::credentials`, the `payment_providers` table). The log holds what an
//! auditor needs: who set which provider when, its settings that are not secret (Paynow's
//! integration id, currency and merchant e-mail; M-Pesa's short code), the names of the secrets
//! set, and which of them were replaced by a new value.
//!
//! Rules held here:
//! - the provider is `paynow`, `mpesa` or `stripe`, and the stream holds one provider;
//! - who set it is named;
//! - setting the same settings and secrets again records nothing (a retried call is safe).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// The providers a tenant configures.
pub const PROVIDERS: [&str; 3] = ["paynow", "mpesa", "stripe"];

/// The stream's local id of a provider's configuration.
pub fn payment_provider_local_id(provider: &str) -> String {
    format!("payprov_{provider}")
}

/// A request to change a provider's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PaymentProviderCommand {
    /// Set (or replace) the provider's configuration.
    Configure(ConfigureProvider),
}

/// A configuration as an admin set it (no secret values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConfigureProvider {
    pub provider: String,
    /// The settings that are not secret.
    pub settings: BTreeMap<String, String>,
    /// The names of the secrets set.
    pub secrets: Vec<String>,
    /// The names of the secrets whose value changed (all of them the first time).
    pub secrets_replaced: Vec<String>,
    /// Who set it (`user:<id>`, or the tool).
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Facts about a provider's configuration. Names are contracts: never renamed once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PaymentProviderEvent {
    /// The provider was configured (or its configuration replaced).
    PaymentProviderConfigured {
        provider: String,
        settings: BTreeMap<String, String>,
        secrets: Vec<String>,
        secrets_replaced: Vec<String>,
        by: String,
        at: DateTime<Utc>,
    },
}

impl PaymentProviderEvent {
    /// Every event type of this aggregate, as stored in `events.event_type`.
    pub const TYPES: &'static [&'static str] = &["PaymentProviderConfigured"];
}

impl DomainEvent for PaymentProviderEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PaymentProviderConfigured { .. } => "PaymentProviderConfigured",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version(&self.event_type()).to_string()
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentProviderError {
    /// Only the providers Chronicle speaks to.
    #[error("{provider:?} is not a payment provider Chronicle speaks to (paynow, mpesa, stripe)")]
    UnknownProvider { provider: String },
    /// One provider per stream.
    #[error("this stream holds the {configured} configuration, not {provider}'s")]
    OtherProvider { configured: String, provider: String },
    /// Who set it is named.
    #[error("who configured the provider must be named")]
    Anonymous,
}

impl PaymentProviderError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownProvider { .. } => "UNKNOWN_PAYMENT_PROVIDER",
            Self::OtherProvider { .. } => "OTHER_PAYMENT_PROVIDER",
            Self::Anonymous => "BLANK_FIELD",
        }
    }
}

/// A provider's configuration as the log knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentProviderConfig {
    provider: Option<String>,
    settings: BTreeMap<String, String>,
    secrets: Vec<String>,
    changes: u32,
}

impl PaymentProviderConfig {
    /// The provider, once configured.
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    /// The settings that are not secret.
    pub fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }

    /// How many times it was configured.
    pub fn changes(&self) -> u32 {
        self.changes
    }

    fn configure(&self, mut cmd: ConfigureProvider) -> Result<Option<PaymentProviderEvent>, PaymentProviderError> {
        if !PROVIDERS.contains(&cmd.provider.as_str()) {
            return Err(PaymentProviderError::UnknownProvider { provider: cmd.provider });
        }
        if let Some(configured) = &self.provider {
            if *configured != cmd.provider {
                return Err(PaymentProviderError::OtherProvider {
                    configured: configured.clone(),
                    provider: cmd.provider,
                });
            }
        }
        if cmd.by.trim().is_empty() {
            return Err(PaymentProviderError::Anonymous);
        }
        cmd.secrets.sort();
        cmd.secrets.dedup();
        cmd.secrets_replaced.sort();
        cmd.secrets_replaced.dedup();
        if self.provider.is_some()
            && self.settings == cmd.settings
            && self.secrets == cmd.secrets
            && cmd.secrets_replaced.is_empty()
        {
            return Ok(None);
        }
        Ok(Some(PaymentProviderEvent::PaymentProviderConfigured {
            provider: cmd.provider,
            settings: cmd.settings,
            secrets: cmd.secrets,
            secrets_replaced: cmd.secrets_replaced,
            by: cmd.by,
            at: cmd.at,
        }))
    }
}

impl Aggregate for PaymentProviderConfig {
    const TYPE: &'static str = "PaymentProviderConfig";
    type Command = PaymentProviderCommand;
    type Event = PaymentProviderEvent;
    type Error = PaymentProviderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            PaymentProviderCommand::Configure(cmd) => self.configure(cmd)?,
        };
        if let Some(event) = event {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PaymentProviderEvent::PaymentProviderConfigured {
                provider,
                settings,
                secrets,
                ..
            } => {
                self.provider = Some(provider);
                self.settings = settings;
                self.secrets = secrets;
                self.changes += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<PaymentProviderConfig>;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).single().unwrap_or_default()
    }

    fn configure(replaced: &[&str]) -> ConfigureProvider {
        ConfigureProvider {
            provider: "paynow".into(),
            settings: BTreeMap::from([("currency".to_string(), "USD".to_string())]),
            secrets: vec!["integration_key".into()],
            secrets_replaced: replaced.iter().map(|s| s.to_string()).collect(),
            by: "user:admin-1".into(),
            at: at(),
        }
    }

    fn configured(replaced: &[&str]) -> PaymentProviderEvent {
        let c = configure(replaced);
        PaymentProviderEvent::PaymentProviderConfigured {
            provider: c.provider,
            settings: c.settings,
            secrets: c.secrets,
            secrets_replaced: c.secrets_replaced,
            by: c.by,
            at: c.at,
        }
    }

    #[test]
    fn a_configuration_is_recorded_with_its_secrets_names_and_again_only_when_it_changes() {
        Given::with(())
            .given_no_previous_events()
            .when(PaymentProviderCommand::Configure(configure(&["integration_key"])))
            .then_expect_events(vec![configured(&["integration_key"])]);
        Given::with(())
            .given(vec![configured(&["integration_key"])])
            .when(PaymentProviderCommand::Configure(configure(&[])))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![configured(&["integration_key"])])
            .when(PaymentProviderCommand::Configure(configure(&["integration_key"])))
            .then_expect_events(vec![configured(&["integration_key"])]);
        let mut other_currency = configure(&[]);
        other_currency.settings.insert("currency".into(), "ZWG".into());
        let mut expected = configured(&[]);
        let PaymentProviderEvent::PaymentProviderConfigured { settings, .. } = &mut expected;
        settings.insert("currency".into(), "ZWG".into());
        Given::with(())
            .given(vec![configured(&["integration_key"])])
            .when(PaymentProviderCommand::Configure(other_currency))
            .then_expect_events(vec![expected]);
    }

    #[test]
    fn unknown_providers_other_providers_and_anonymous_changes_are_refused() {
        let mut unknown = configure(&[]);
        unknown.provider = "paypal".into();
        Given::with(())
            .given_no_previous_events()
            .when(PaymentProviderCommand::Configure(unknown))
            .then_expect_error(PaymentProviderError::UnknownProvider {
                provider: "paypal".into(),
            });
        let mut other = configure(&[]);
        other.provider = "stripe".into();
        Given::with(())
            .given(vec![configured(&["integration_key"])])
            .when(PaymentProviderCommand::Configure(other))
            .then_expect_error(PaymentProviderError::OtherProvider {
                configured: "paynow".into(),
                provider: "stripe".into(),
            });
        let mut anonymous = configure(&[]);
        anonymous.by = " ".into();
        Given::with(())
            .given_no_previous_events()
            .when(PaymentProviderCommand::Configure(anonymous))
            .then_expect_error(PaymentProviderError::Anonymous);
    }
}
