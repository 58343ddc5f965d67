//! Per-tenant payment provider credentials in `payment_providers` (migration 0060): secrets
//! sealed with AES-256-GCM under a fresh data key bound to (tenant, `payment-provider:<name>`),
//! that key wrapped by the master key (the scheme of `contact_keys`, see
//! `chronicle_domain::pii`); the M-Pesa callback path secret compared in constant time against
//! its SHA-256, and kept sealed with the other secrets for the STK push's callback URL. Set through the admin GraphQL mutation `setPaymentProvider`.

use std::collections::BTreeMap;

use chronicle_domain::payment_provider::{payment_provider_local_id, ConfigureProvider, PaymentProviderCommand};
use chronicle_domain::pii::{DataKey, Envelope, MasterKey};
use chronicle_domain::tenant::TenantId;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

use super::mpesa::DarajaCredentials;
use chronicle_domain::crypto::constant_time_eq;

use super::CallbackError;
use crate::error::CommandError;

/// What a tenant configures for one provider. `Debug` shows no secret.
#[derive(Clone)]
pub enum ProviderCredentials {
    /// Paynow: the integration id and key, and the integration's currency (`USD`, `ZWG`).
    Paynow {
        integration_id: String,
        integration_key: String,
        currency: String,
        /// The merchant's Paynow login e-mail, for Express requests to customers without one.
        auth_email: Option<String>,
    },
    /// M-Pesa through Daraja, and the secret of the callback path (`…/mpesa/<secret>`).
    Mpesa {
        daraja: DarajaCredentials,
        callback_secret: String,
    },
    /// Stripe: the webhook endpoint's signing secret, and the secret key (`sk_…` or a
    /// restricted `rk_…`) payment requests open Checkout Sessions with (without it, Stripe
    /// payments are only received, never requested).
    Stripe {
        endpoint_secret: String,
        secret_key: Option<String>,
    },
}

impl std::fmt::Debug for ProviderCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderCredentials")
            .field("provider", &self.provider())
            .finish_non_exhaustive()
    }
}

impl ProviderCredentials {
    /// The provider's name as stored.
    pub fn provider(&self) -> &'static str {
        match self {
            Self::Paynow { .. } => "paynow",
            Self::Mpesa { .. } => "mpesa",
            Self::Stripe { .. } => "stripe",
        }
    }

    /// (settings, secrets, callback secret) as stored.
    fn split(
        &self,
    ) -> (
        BTreeMap<&'static str, String>,
        BTreeMap<&'static str, String>,
        Option<&str>,
    ) {
        match self {
            Self::Paynow {
                integration_id,
                integration_key,
                currency,
                auth_email,
            } => {
                let mut settings = BTreeMap::from([
                    ("integration_id", integration_id.clone()),
                    ("currency", currency.clone()),
                ]);
                if let Some(email) = auth_email {
                    settings.insert("auth_email", email.clone());
                }
                (
                    settings,
                    BTreeMap::from([("integration_key", integration_key.clone())]),
                    None,
                )
            }
            Self::Mpesa {
                daraja,
                callback_secret,
            } => (
                BTreeMap::from([("short_code", daraja.short_code.clone())]),
                // The callback secret is sealed too (beside its hash, which callbacks are checked
                // against): an STK push names the callback URL, secret path included.
                BTreeMap::from([
                    ("consumer_key", daraja.consumer_key.clone()),
                    ("consumer_secret", daraja.consumer_secret.clone()),
                    ("passkey", daraja.passkey.clone()),
                    ("callback_secret", callback_secret.clone()),
                ]),
                Some(callback_secret.as_str()),
            ),
            Self::Stripe {
                endpoint_secret,
                secret_key,
            } => {
                let mut secrets = BTreeMap::from([("endpoint_secret", endpoint_secret.clone())]);
                if let Some(key) = secret_key {
                    secrets.insert("secret_key", key.clone());
                }
                (BTreeMap::new(), secrets, None)
            }
        }
    }
}

fn binding(provider: &str) -> String {
    format!("payment-provider:{provider}")
}

/// SHA-256 of a callback path secret, as stored.
pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn invalid(message: &str) -> CommandError {
    CommandError::InvalidInput(message.to_string())
}

/// Sets (or replaces) a tenant's credentials for one provider, and records the change in the
/// log (`PaymentProviderConfigured` on `<tenant>:payprov_<provider>`: who, the settings that are
/// not secret, the names of the secrets and which were replaced; never a secret). The row is
/// written in a transaction committed only once the event is appended, so the log never misses
/// a change that took effect; a failed append leaves the old credentials in place.
pub async fn set_provider(
    commands: &crate::dispatch::Commands,
    master: &MasterKey,
    credentials: &ProviderCredentials,
    metadata: &chronicle_domain::metadata::CommandMetadata,
) -> Result<(), CommandError> {
    let pool = commands.pool();
    let tenant = &metadata.tenant_id;
    let (settings, secrets, callback_secret) = credentials.split();
    if secrets.values().chain(settings.values()).any(|v| v.trim().is_empty()) {
        return Err(invalid("every credential field must be set"));
    }
    if let ProviderCredentials::Stripe {
        secret_key: Some(key), ..
    } = credentials
    {
        if !(key.starts_with("sk_") || key.starts_with("rk_")) {
            return Err(invalid(
                "a Stripe secret key starts with sk_ (or rk_ for a restricted key)",
            ));
        }
    }
    if let ProviderCredentials::Paynow {
        currency, auth_email, ..
    } = credentials
    {
        if !chronicle_domain::installation::order::is_currency_code(currency) {
            return Err(invalid("the Paynow currency must be an ISO 4217 code"));
        }
        if auth_email.as_deref().is_some_and(|e| {
            e.len() > 254 || e.chars().filter(|&c| c == '@').count() != 1 || e.contains(char::is_whitespace)
        }) {
            return Err(invalid("the Paynow auth e-mail must be an e-mail address"));
        }
    }
    if callback_secret
        .is_some_and(|s| s.len() < 16 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(invalid(
            "the M-Pesa callback secret needs at least 16 characters from A-Z, a-z, 0-9, - and _",
        ));
    }
    let provider = credentials.provider();
    let key = DataKey::generate(&mut OsRng);
    let secrets_json = serde_json::to_string(&secrets).map_err(|e| CommandError::Unexpected(Box::new(e)))?;
    let sealed = key.seal(tenant, &binding(provider), &secrets_json, &mut OsRng);
    let wrapped = master.wrap(&key, tenant, &binding(provider), &mut OsRng);
    let mut tx = pool.begin().await?;
    // One change of a tenant's provider at a time: the secrets replaced are read after the
    // lock, so two admins setting it at once each compare with what the other left.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("payment-provider:{tenant}:{provider}"))
        .execute(&mut *tx)
        .await?;
    // Which secrets change: compared with the stored ones, opened under the master key. A row
    // that cannot be opened (a master key rotated without it, a damaged envelope) is replaced
    // whole: setting the provider again is how it is mended.
    let previous = match open(pool, master, tenant, provider).await {
        Ok(previous) => previous,
        Err(e) => {
            tracing::warn!(tenant.id = %tenant, payment.provider = provider, error = %e, "the stored credentials cannot be opened; replacing them whole");
            None
        }
    };
    let secrets_replaced: Vec<String> = secrets
        .iter()
        .filter(|(name, value)| {
            previous
                .as_ref()
                .and_then(|p| p.secrets.get(**name))
                .is_none_or(|old| !constant_time_eq(old.as_bytes(), value.as_bytes()))
        })
        .map(|(name, _)| name.to_string())
        .collect();
    sqlx::query(
        "INSERT INTO payment_providers (tenant_id, provider, settings, wrapped_key, sealed_secrets, callback_secret_sha256)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id, provider) DO UPDATE
            SET settings = EXCLUDED.settings, wrapped_key = EXCLUDED.wrapped_key,
                sealed_secrets = EXCLUDED.sealed_secrets,
                callback_secret_sha256 = EXCLUDED.callback_secret_sha256, updated_at = now()",
    )
    .bind(tenant.as_str())
    .bind(provider)
    .bind(serde_json::to_value(&settings).map_err(|e| CommandError::Unexpected(Box::new(e)))?)
    .bind(wrapped)
    .bind(serde_json::to_value(&sealed).map_err(|e| CommandError::Unexpected(Box::new(e)))?)
    .bind(callback_secret.map(secret_hash))
    .execute(&mut *tx)
    .await?;
    let by = crate::installation::by_of(metadata);
    let command = PaymentProviderCommand::Configure(ConfigureProvider {
        provider: provider.to_string(),
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        secrets: secrets.keys().map(|k| k.to_string()).collect(),
        secrets_replaced,
        by,
        at: chrono::Utc::now(),
    });
    commands
        .payment_provider(&payment_provider_local_id(provider), command, metadata)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A stored row, opened.
struct Opened {
    settings: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    callback_secret_sha256: Option<Vec<u8>>,
}

async fn open(
    pool: &PgPool,
    master: &MasterKey,
    tenant: &TenantId,
    provider: &'static str,
) -> Result<Option<Opened>, CallbackError> {
    let row = sqlx::query(
        "SELECT settings, wrapped_key, sealed_secrets, callback_secret_sha256
           FROM payment_providers WHERE tenant_id = $1 AND provider = $2",
    )
    .bind(tenant.as_str())
    .bind(provider)
    .fetch_optional(pool)
    .await
    .map_err(|e| CallbackError::Command(e.into()))?;
    let Some(row) = row else { return Ok(None) };
    let unexpected = |e: Box<dyn std::error::Error + Send + Sync>| CallbackError::Command(CommandError::Unexpected(e));
    let get = |name: &str| -> Result<serde_json::Value, CallbackError> {
        row.try_get(name).map_err(|e| CallbackError::Command(e.into()))
    };
    let settings: BTreeMap<String, String> =
        serde_json::from_value(get("settings")?).map_err(|e| unexpected(Box::new(e)))?;
    let envelope: Envelope = serde_json::from_value(get("sealed_secrets")?).map_err(|e| unexpected(Box::new(e)))?;
    let wrapped: Vec<u8> = row
        .try_get("wrapped_key")
        .map_err(|e| CallbackError::Command(e.into()))?;
    let callback_secret_sha256: Option<Vec<u8>> = row
        .try_get("callback_secret_sha256")
        .map_err(|e| CallbackError::Command(e.into()))?;
    let key = master
        .unwrap_key(&wrapped, tenant, &binding(provider))
        .map_err(|e| unexpected(Box::new(e)))?;
    let plain = key
        .open(tenant, &binding(provider), &envelope)
        .map_err(|e| unexpected(Box::new(e)))?;
    let secrets: BTreeMap<String, String> = serde_json::from_str(&plain).map_err(|e| unexpected(Box::new(e)))?;
    Ok(Some(Opened {
        settings,
        secrets,
        callback_secret_sha256,
    }))
}

fn take(map: &BTreeMap<String, String>, name: &str) -> Result<String, CallbackError> {
    map.get(name).cloned().ok_or_else(|| {
        CallbackError::Command(CommandError::Unexpected(
            format!("stored payment credentials lack {name}").into(),
        ))
    })
}

/// A tenant's Paynow integration: (integration key, currency).
pub async fn paynow(pool: &PgPool, master: &MasterKey, tenant: &TenantId) -> Result<(String, String), CallbackError> {
    let opened = open(pool, master, tenant, "paynow")
        .await?
        .ok_or(CallbackError::NotConfigured { provider: "paynow" })?;
    Ok((
        take(&opened.secrets, "integration_key")?,
        take(&opened.settings, "currency")?,
    ))
}

/// A tenant's Paynow integration, as an initiation needs it.
pub async fn paynow_integration(
    pool: &PgPool,
    master: &MasterKey,
    tenant: &TenantId,
) -> Result<super::paynow::Integration, CallbackError> {
    let opened = open(pool, master, tenant, "paynow")
        .await?
        .ok_or(CallbackError::NotConfigured { provider: "paynow" })?;
    Ok(super::paynow::Integration {
        id: take(&opened.settings, "integration_id")?,
        key: take(&opened.secrets, "integration_key")?,
        currency: take(&opened.settings, "currency")?,
        auth_email: opened.settings.get("auth_email").cloned(),
    })
}

/// A tenant's Stripe endpoint secret.
pub async fn stripe(pool: &PgPool, master: &MasterKey, tenant: &TenantId) -> Result<String, CallbackError> {
    let opened = open(pool, master, tenant, "stripe")
        .await?
        .ok_or(CallbackError::NotConfigured { provider: "stripe" })?;
    take(&opened.secrets, "endpoint_secret")
}

/// A provider as a tenant configured it, without its secrets: what an admin reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredProvider {
    /// `paynow`, `mpesa` or `stripe`.
    pub provider: String,
    /// What is not secret (Paynow integration id and currency, M-Pesa short code).
    pub settings: BTreeMap<String, String>,
    /// The names of the secrets set (never their values).
    pub secrets: Vec<String>,
    /// Whether `requestPayment` can initiate with it (M-Pesa with its callback secret sealed,
    /// Stripe with a secret key; Paynow always).
    pub requestable: bool,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// The providers `tenant` configured, by name.
pub async fn configured(
    pool: &PgPool,
    master: &MasterKey,
    tenant: &TenantId,
) -> Result<Vec<ConfiguredProvider>, CallbackError> {
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT provider, updated_at FROM payment_providers WHERE tenant_id = $1 ORDER BY provider")
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await
            .map_err(|e| CallbackError::Command(e.into()))?;
    let mut configured = Vec::with_capacity(rows.len());
    for (provider, updated_at) in rows {
        let name: &'static str = match provider.as_str() {
            "paynow" => "paynow",
            "mpesa" => "mpesa",
            _ => "stripe",
        };
        let Some(opened) = open(pool, master, tenant, name).await? else {
            continue;
        };
        let secrets: Vec<String> = opened.secrets.keys().cloned().collect();
        let requestable = match name {
            "mpesa" => opened.secrets.contains_key("callback_secret"),
            "stripe" => opened.secrets.contains_key("secret_key"),
            _ => true,
        };
        configured.push(ConfiguredProvider {
            provider,
            settings: opened.settings,
            secrets,
            requestable,
            updated_at,
        });
    }
    Ok(configured)
}

/// A tenant's Stripe secret key, to open Checkout Sessions; [`CallbackError::NotConfigured`]
/// when Stripe is not configured, or configured without a secret key.
pub async fn stripe_secret_key(pool: &PgPool, master: &MasterKey, tenant: &TenantId) -> Result<String, CallbackError> {
    let opened = open(pool, master, tenant, "stripe")
        .await?
        .ok_or(CallbackError::NotConfigured { provider: "stripe" })?;
    opened
        .secrets
        .get("secret_key")
        .cloned()
        .ok_or(CallbackError::NotConfigured { provider: "stripe" })
}

/// A tenant's Daraja credentials, once the callback path's secret matched (in constant time);
/// [`CallbackError::WrongSecretPath`] otherwise, also when M-Pesa is not configured (a probe
/// learns nothing about which tenants use M-Pesa).
pub async fn mpesa(
    pool: &PgPool,
    master: &MasterKey,
    tenant: &TenantId,
    path_secret: &str,
) -> Result<DarajaCredentials, CallbackError> {
    let opened = open(pool, master, tenant, "mpesa")
        .await?
        .ok_or(CallbackError::WrongSecretPath)?;
    let stored = opened.callback_secret_sha256.as_deref().unwrap_or_default();
    if !constant_time_eq(&secret_hash(path_secret), stored) {
        return Err(CallbackError::WrongSecretPath);
    }
    Ok(DarajaCredentials {
        short_code: take(&opened.settings, "short_code")?,
        consumer_key: take(&opened.secrets, "consumer_key")?,
        consumer_secret: take(&opened.secrets, "consumer_secret")?,
        passkey: take(&opened.secrets, "passkey")?,
    })
}

/// A tenant's Daraja credentials and callback path secret, to initiate an STK push.
/// [`CallbackError::NotConfigured`] when M-Pesa is not configured, or was configured before
/// payment requests existed (its callback secret was kept only as a hash: set it again).
pub async fn mpesa_for_push(
    pool: &PgPool,
    master: &MasterKey,
    tenant: &TenantId,
) -> Result<(DarajaCredentials, String), CallbackError> {
    let opened = open(pool, master, tenant, "mpesa")
        .await?
        .ok_or(CallbackError::NotConfigured { provider: "mpesa" })?;
    let callback_secret = opened
        .secrets
        .get("callback_secret")
        .cloned()
        .ok_or(CallbackError::NotConfigured { provider: "mpesa" })?;
    Ok((
        DarajaCredentials {
            short_code: take(&opened.settings, "short_code")?,
            consumer_key: take(&opened.secrets, "consumer_key")?,
            consumer_secret: take(&opened.secrets, "consumer_secret")?,
            passkey: take(&opened.secrets, "passkey")?,
        },
        callback_secret,
    ))
}
