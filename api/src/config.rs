//! Configuration from the environment, validated once at start with clear messages. Secrets are
//! wrapped so they never reach a log line.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `DATABASE_URL` | PostgreSQL to use | none: a private cluster under `CHRONICLE_DATA_DIR` |
//! | `REDIS_URL` | Redis for cross-process wake-ups | none: LISTEN/NOTIFY |
//! | `CHRONICLE_BIND` | address to serve on | `127.0.0.1:8080` |
//! | `CHRONICLE_DATA_DIR` | project-local state (embedded cluster, dev secrets) | `.chronicle` |
//! | `CHRONICLE_JWT_SECRET` | HS256 secret of access tokens (≥ 32 bytes) | dev: generated |
//! | `CHRONICLE_JWT_PREVIOUS_SECRET` | during a key rotation: the former `CHRONICLE_JWT_SECRET`, still accepted (never used to sign) until `CHRONICLE_JWT_PREVIOUS_UNTIL` | none |
//! | `CHRONICLE_JWT_PREVIOUS_UNTIL` | when the previous key stops being accepted (RFC 3339; set it at least one access-token life after the rotation) | required with the previous secret |
//! | `CHRONICLE_ACCESS_TOKEN_TTL_SECS` | an access token's life (also how long a deactivated user's last token keeps working) | `600` |
//! | `CHRONICLE_REFRESH_TOKEN_TTL_SECS` | a refresh token's life (each refresh starts a new one) | `2592000` (30 days) |
//! | `CHRONICLE_MAX_MINTED_TOKEN_HOURS` | the longest token `chronicle admin mint-token` mints | `168` |
//! | `CHRONICLE_SIGN_IN_FREE_ATTEMPTS` | failed sign-ins of an account before each attempt must wait | `3` |
//! | `CHRONICLE_SIGN_IN_DELAY_MS` | the first wait after the free failures, doubled per failure | `1000` |
//! | `CHRONICLE_SIGN_IN_LOCK_AFTER` | failed sign-ins after which the account is locked (a client address gets five times these counts) | `10` |
//! | `CHRONICLE_SIGN_IN_LOCK_SECS` | how long a lock lasts | `900` |
//! | `CHRONICLE_CLIENT_IP_HEADER` | behind a proxy: the header holding the client's address (its last entry), e.g. `x-forwarded-for`, for the per-address sign-in limit | none: the TCP peer |
//! | `CHRONICLE_MASTER_KEY` | base64 of the 32-byte key wrapping contacts' data keys | dev: generated |
//! | `WHATSAPP_APP_SECRET` | Meta app secret, signs webhook deliveries | dev: generated |
//! | `WHATSAPP_VERIFY_TOKEN` | the webhook verification handshake token | dev: generated |
//! | `TWILIO_AUTH_TOKEN` | the platform's Twilio auth token (call webhook signatures) | dev: generated; production: unset turns the call webhook off (503) |
//! | `CHRONICLE_PUBLIC_URL` | the public base URL providers call (signed by Twilio) | `http://<CHRONICLE_BIND>` |
//! | `WHATSAPP_GRAPH_BASE_URL` | the WhatsApp Cloud API base the sender and media fetcher use; `sandbox` (development only) is Chronicle's own stand-in | production: `https://graph.facebook.com/v21.0`; development: `sandbox` |
//! | `WHATSAPP_ACCESS_TOKEN` | the Graph API access token of outbound messages | dev: generated; production: unset turns sending off (messages stay queued) |
//! | `WHATSAPP_SEND_TIMEOUT_SECS` | timeout of one send request (a timed-out send goes to an operator, never resent) | `15` |
//! | `WHATSAPP_SEND_MAX_ATTEMPTS` | attempts on 5xx, 429 or connection failures before a send is recorded failed | `8` |
//! | `WHATSAPP_SEND_BACKOFF_MS` | the first retry's delay, doubled per attempt (capped at 5 min) | `2000` |
//! | `PAYNOW_BASE_URL` | Paynow's base URL; initiations go under it and poll URLs must lie under it; `sandbox` (development only) is Chronicle's own stand-in | production: `https://www.paynow.co.zw/Interface`; development: `sandbox` unless any of the three names a real provider |
//! | `DARAJA_BASE_URL` | Safaricom Daraja's base URL (M-Pesa STK pushes and status queries); `sandbox` as above | production: `https://api.safaricom.co.ke`; development: `sandbox` |
//! | `STRIPE_BASE_URL` | Stripe's API base URL (Checkout Sessions of payment requests); `sandbox` as above | production: `https://api.stripe.com`; development: `sandbox` |
//! | `CHRONICLE_TOKEN_RATES` | milli-tokens per minor unit credited by wallet top-ups, `USD=1000,KES=8` | `USD=1000` |
//! | `CHRONICLE_LOG_FORMAT` | `pretty` or `json` | `pretty` |
//! | `CHRONICLE_PROJECTOR_BATCH_SIZE` | events per projector batch (one transaction each) | `500` |
//! | `CHRONICLE_WS_INIT_TIMEOUT_MS` | how long a WebSocket may wait before `connection_init` (then closed 4408) | `10000` |
//! | `CHRONICLE_WS_KEEP_ALIVE_MS` | how often the server pings a WebSocket | `15000` |
//! | `CHRONICLE_WS_MAX_SUBSCRIPTIONS` | operations one WebSocket runs at once | `100` |
//! | `CHRONICLE_SUBSCRIBER_BUFFER` | events a live subscription may fall behind the log (the fan-out's size, rounded up to a power of two; a burst beyond it is read from history) | `4096` |
//! | `CHRONICLE_SUBSCRIBER_GRACE_MS` | how long a subscription may stay that far behind before it is closed (`SUBSCRIBER_TOO_SLOW`, naming its last cursor) | `30000` |
//! | `CHRONICLE_WEBHOOK_MAX_ATTEMPTS` | failed attempts in a row before a webhook endpoint is disabled | `10` |
//! | `CHRONICLE_WEBHOOK_BACKOFF_MS` | the delay after a webhook's first failure, doubled per failure, with jitter | `5000` |
//! | `CHRONICLE_WEBHOOK_MAX_BACKOFF_MS` | the longest delay between webhook attempts (a later `Retry-After` wins, up to a day) | `3600000` |
//! | `CHRONICLE_WEBHOOK_TIMEOUT_MS` | how long one webhook request may take | `10000` |
//! | `CHRONICLE_WEBHOOKS_ALLOW_PRIVATE` | `1`: webhook URLs may name private and loopback addresses (always so in development) | off |
//! | `CHRONICLE_SNAPSHOT_CONVERSATION` | snapshot a conversation every N events; 0 turns it off | `100` |
//!
//! With no `DATABASE_URL` Chronicle runs in development mode: any secret not set is generated
//! once and kept in `CHRONICLE_DATA_DIR/dev-secrets.json` (mode 0600), so tokens and data keys
//! survive restarts. With a `DATABASE_URL`, every secret must be set.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chronicle_domain::pii::MasterKey;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// A secret string: shown as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the database comes from.
#[derive(Debug, Clone)]
pub enum Database {
    /// A server given by `DATABASE_URL`.
    Url(Secret),
    /// The private cluster under the data directory.
    Embedded,
}

/// The log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Every setting of the server.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: Database,
    pub redis_url: Option<Secret>,
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub jwt_secret: Secret,
    /// During a key rotation: the previous signing key and until when it is accepted.
    pub jwt_previous: Option<(Secret, chrono::DateTime<chrono::Utc>)>,
    /// Access and refresh tokens' lives, and the sign-in limits.
    pub sessions: crate::sessions::SessionSettings,
    pub master_key: MasterKey,
    pub whatsapp_app_secret: Secret,
    pub whatsapp_verify_token: Secret,
    /// The Graph API base of outbound messages (unused when the sandbox is on).
    pub whatsapp_graph_base_url: String,
    /// Development mode's WhatsApp Cloud API sandbox (`crate::sandbox`) stands in for the
    /// Graph API: on in development mode unless `WHATSAPP_GRAPH_BASE_URL` names a real one.
    pub whatsapp_sandbox: bool,
    /// Development mode's payment provider sandboxes (`crate::payment_sandbox`) stand in for
    /// Paynow, Daraja and Stripe: on when none of their base URLs names a real provider.
    pub payment_sandbox: bool,
    /// The Graph API token; `None` turns the sender off.
    pub whatsapp_access_token: Option<Secret>,
    /// How the sender paces requests and retries.
    pub whatsapp_send: WhatsAppSendSettings,
    /// Twilio's auth token (one platform account); `None` turns the call webhook off.
    pub twilio_auth_token: Option<Secret>,
    /// The public base URL (no trailing `/`) webhooks are signed against.
    pub public_url: String,
    pub log_format: LogFormat,
    /// Snapshot settings per aggregate.
    pub snapshots: chronicle_commands::dispatch::SnapshotPolicy,
    /// Events per projector batch.
    pub projector_batch_size: i64,
    /// Payment providers' base URLs and wallet top-up rates.
    pub payments: chronicle_commands::payments::PaymentsConfig,
    /// How GraphQL WebSocket connections are kept.
    pub websocket: crate::http::graphql_ws::WebSocketSettings,
    /// How webhooks are delivered.
    pub webhooks: crate::webhooks::WebhookSettings,
}

/// How the WhatsApp sender paces requests and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhatsAppSendSettings {
    pub timeout: std::time::Duration,
    pub max_attempts: i32,
    pub backoff: std::time::Duration,
}

fn number_setting(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    match lookup(name) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| ConfigError::Invalid {
                name,
                reason: format!("{text:?} is not a number from {} to {}", range.start(), range.end()),
            }),
    }
}

/// A setting that is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is required when DATABASE_URL is set (production mode); {hint}")]
    Missing { name: &'static str, hint: &'static str },
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("could not read or write {path}: {source}")]
    DevSecrets { path: PathBuf, source: std::io::Error },
}

#[derive(Serialize, Deserialize, Default)]
struct DevSecrets {
    jwt_secret: Option<String>,
    master_key: Option<String>,
    whatsapp_app_secret: Option<String>,
    whatsapp_verify_token: Option<String>,
    #[serde(default)]
    twilio_auth_token: Option<String>,
    #[serde(default)]
    whatsapp_access_token: Option<String>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Settings {
    /// The keys access tokens are signed and checked with.
    pub fn token_keys(&self) -> crate::auth::TokenKeys {
        let keys = crate::auth::TokenKeys::new(self.jwt_secret.expose());
        match &self.jwt_previous {
            Some((previous, until)) => keys.with_previous(previous.expose(), *until),
            None => keys,
        }
    }

    /// Development mode: no `DATABASE_URL`, the embedded cluster, generated secrets.
    pub fn is_development(&self) -> bool {
        matches!(self.database, Database::Embedded)
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(env)
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let database = match lookup("DATABASE_URL") {
            Some(url) => Database::Url(Secret::new(url)),
            None => Database::Embedded,
        };
        let data_dir = PathBuf::from(lookup("CHRONICLE_DATA_DIR").unwrap_or_else(|| ".chronicle".into()));
        let bind = lookup("CHRONICLE_BIND")
            .unwrap_or_else(|| "127.0.0.1:8080".into())
            .parse()
            .map_err(|e| ConfigError::Invalid {
                name: "CHRONICLE_BIND",
                reason: format!("{e} (expected host:port)"),
            })?;
        let log_format = match lookup("CHRONICLE_LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "CHRONICLE_LOG_FORMAT",
                    reason: format!("{other:?}: use pretty or json"),
                })
            }
        };

        let snapshots = chronicle_commands::dispatch::SnapshotPolicy {
            wallet: chronicle_commands::dispatch::SnapshotPolicy::default().wallet,
            conversation: match lookup("CHRONICLE_SNAPSHOT_CONVERSATION") {
                None => chronicle_commands::dispatch::SnapshotPolicy::default().conversation,
                Some(text) => match text.trim().parse::<usize>() {
                    Ok(0) => None,
                    Ok(n) => Some(n),
                    Err(_) => {
                        return Err(ConfigError::Invalid {
                            name: "CHRONICLE_SNAPSHOT_CONVERSATION",
                            reason: format!("{text:?} is not a number of events (0 turns snapshots off)"),
                        })
                    }
                },
            },
        };
        let projector_batch_size = match lookup("CHRONICLE_PROJECTOR_BATCH_SIZE") {
            None => 500,
            Some(text) => text
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| ConfigError::Invalid {
                    name: "CHRONICLE_PROJECTOR_BATCH_SIZE",
                    reason: format!("{text:?} is not a number of events from 1 to 100000"),
                })?,
        };
        let dev = matches!(database, Database::Embedded);
        let mut dev_secrets = if dev {
            load_dev_secrets(&data_dir)?
        } else {
            DevSecrets::default()
        };
        let mut changed = false;
        let mut secret = |name: &'static str,
                          hint: &'static str,
                          slot: fn(&mut DevSecrets) -> &mut Option<String>,
                          make: fn() -> String| {
            if let Some(v) = lookup(name) {
                return Ok(v);
            }
            if !dev {
                return Err(ConfigError::Missing { name, hint });
            }
            let entry = slot(&mut dev_secrets);
            if entry.is_none() {
                *entry = Some(make());
                changed = true;
            }
            Ok(entry.clone().unwrap_or_default())
        };
        let jwt = secret(
            "CHRONICLE_JWT_SECRET",
            "at least 32 random bytes",
            |s| &mut s.jwt_secret,
            random_token,
        )?;
        let master = secret(
            "CHRONICLE_MASTER_KEY",
            "base64 of 32 random bytes (e.g. `openssl rand -base64 32`)",
            |s| &mut s.master_key,
            || MasterKey::generate(&mut OsRng).to_base64(),
        )?;
        let app_secret = secret(
            "WHATSAPP_APP_SECRET",
            "the Meta app secret",
            |s| &mut s.whatsapp_app_secret,
            random_token,
        )?;
        let verify = secret(
            "WHATSAPP_VERIFY_TOKEN",
            "the token set in the Meta webhook settings",
            |s| &mut s.whatsapp_verify_token,
            random_token,
        )?;
        // Optional in production (a platform without telephony); generated in development.
        let twilio_auth_token = match lookup("TWILIO_AUTH_TOKEN") {
            Some(token) => Some(token),
            None if dev => Some(secret(
                "TWILIO_AUTH_TOKEN",
                "the Twilio account's auth token",
                |s| &mut s.twilio_auth_token,
                random_token,
            )?),
            None => None,
        };
        // Optional in production (sending off, messages stay queued); generated in development.
        let whatsapp_access_token = match lookup("WHATSAPP_ACCESS_TOKEN") {
            Some(token) => Some(token),
            None if dev => Some(secret(
                "WHATSAPP_ACCESS_TOKEN",
                "the Graph API access token",
                |s| &mut s.whatsapp_access_token,
                random_token,
            )?),
            None => None,
        };
        if changed {
            save_dev_secrets(&data_dir, &dev_secrets)?;
        }
        // Development mode with no Graph API configured uses the sandbox (`crate::sandbox`);
        // production never does.
        let graph_setting = lookup("WHATSAPP_GRAPH_BASE_URL");
        let whatsapp_sandbox = match graph_setting.as_deref().map(str::trim) {
            None => dev,
            Some("sandbox") if dev => true,
            Some("sandbox") => {
                return Err(ConfigError::Invalid {
                    name: "WHATSAPP_GRAPH_BASE_URL",
                    reason: "the WhatsApp sandbox runs only in development mode (without DATABASE_URL)".into(),
                })
            }
            Some(_) => false,
        };
        let whatsapp_graph_base_url = graph_setting
            .filter(|_| !whatsapp_sandbox)
            .unwrap_or_else(|| "https://graph.facebook.com/v21.0".into())
            .trim_end_matches('/')
            .to_string();
        if !(whatsapp_graph_base_url.starts_with("https://") || whatsapp_graph_base_url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                name: "WHATSAPP_GRAPH_BASE_URL",
                reason: format!("{whatsapp_graph_base_url:?} is not an http(s) URL"),
            });
        }
        let whatsapp_send = WhatsAppSendSettings {
            timeout: std::time::Duration::from_secs(number_setting(
                &lookup,
                "WHATSAPP_SEND_TIMEOUT_SECS",
                15,
                1..=300,
            )?),
            max_attempts: i32::try_from(number_setting(&lookup, "WHATSAPP_SEND_MAX_ATTEMPTS", 8, 1..=100)?)
                .unwrap_or(8),
            backoff: std::time::Duration::from_millis(number_setting(
                &lookup,
                "WHATSAPP_SEND_BACKOFF_MS",
                2000,
                0..=600_000,
            )?),
        };
        if jwt.len() < 32 {
            return Err(ConfigError::Invalid {
                name: "CHRONICLE_JWT_SECRET",
                reason: "shorter than 32 bytes".into(),
            });
        }
        let master_key = MasterKey::from_base64(&master).map_err(|e| ConfigError::Invalid {
            name: "CHRONICLE_MASTER_KEY",
            reason: e.to_string(),
        })?;
        let (payments, payment_sandbox) = payments_setting(&lookup, dev)?;
        let websocket = crate::http::graphql_ws::WebSocketSettings {
            init_timeout: std::time::Duration::from_millis(number_setting(
                &lookup,
                "CHRONICLE_WS_INIT_TIMEOUT_MS",
                10_000,
                100..=600_000,
            )?),
            keep_alive: std::time::Duration::from_millis(number_setting(
                &lookup,
                "CHRONICLE_WS_KEEP_ALIVE_MS",
                15_000,
                100..=3_600_000,
            )?),
            max_subscriptions: usize::try_from(number_setting(
                &lookup,
                "CHRONICLE_WS_MAX_SUBSCRIPTIONS",
                100,
                1..=10_000,
            )?)
            .unwrap_or(100),
            subscriber_buffer: usize::try_from(number_setting(
                &lookup,
                "CHRONICLE_SUBSCRIBER_BUFFER",
                chronicle_projections::live::FAN_OUT_BUFFER as u64,
                16..=1_000_000,
            )?)
            .unwrap_or(chronicle_projections::live::FAN_OUT_BUFFER),
            subscriber_grace: std::time::Duration::from_millis(number_setting(
                &lookup,
                "CHRONICLE_SUBSCRIBER_GRACE_MS",
                30_000,
                1..=3_600_000,
            )?),
        };
        let webhooks = crate::webhooks::WebhookSettings {
            max_attempts: i32::try_from(number_setting(&lookup, "CHRONICLE_WEBHOOK_MAX_ATTEMPTS", 10, 1..=100)?)
                .unwrap_or(10),
            backoff: std::time::Duration::from_millis(number_setting(
                &lookup,
                "CHRONICLE_WEBHOOK_BACKOFF_MS",
                5_000,
                1..=3_600_000,
            )?),
            max_backoff: std::time::Duration::from_millis(number_setting(
                &lookup,
                "CHRONICLE_WEBHOOK_MAX_BACKOFF_MS",
                3_600_000,
                1..=86_400_000,
            )?),
            timeout: std::time::Duration::from_millis(number_setting(
                &lookup,
                "CHRONICLE_WEBHOOK_TIMEOUT_MS",
                10_000,
                100..=120_000,
            )?),
            allow_private: matches!(database, Database::Embedded)
                || lookup("CHRONICLE_WEBHOOKS_ALLOW_PRIVATE")
                    .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes")),
            ..crate::webhooks::WebhookSettings::default()
        };
        let jwt_previous = match (
            lookup("CHRONICLE_JWT_PREVIOUS_SECRET"),
            lookup("CHRONICLE_JWT_PREVIOUS_UNTIL"),
        ) {
            (None, None) => None,
            (Some(previous), Some(until)) => {
                if previous.len() < 32 {
                    return Err(ConfigError::Invalid {
                        name: "CHRONICLE_JWT_PREVIOUS_SECRET",
                        reason: "must be at least 32 bytes, like CHRONICLE_JWT_SECRET".into(),
                    });
                }
                let until = chrono::DateTime::parse_from_rfc3339(until.trim())
                    .map_err(|e| ConfigError::Invalid {
                        name: "CHRONICLE_JWT_PREVIOUS_UNTIL",
                        reason: format!("{until:?} is not an RFC 3339 time ({e})"),
                    })?
                    .with_timezone(&chrono::Utc);
                Some((Secret::new(previous), until))
            }
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    name: "CHRONICLE_JWT_PREVIOUS_UNTIL",
                    reason: "required with CHRONICLE_JWT_PREVIOUS_SECRET (when the previous key stops being accepted)"
                        .into(),
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    name: "CHRONICLE_JWT_PREVIOUS_SECRET",
                    reason: "CHRONICLE_JWT_PREVIOUS_UNTIL is set without the previous secret".into(),
                })
            }
        };
        let secs = |n: u64| std::time::Duration::from_secs(n);
        let sessions = crate::sessions::SessionSettings {
            access_ttl: secs(number_setting(
                &lookup,
                "CHRONICLE_ACCESS_TOKEN_TTL_SECS",
                600,
                1..=86_400,
            )?),
            refresh_ttl: secs(number_setting(
                &lookup,
                "CHRONICLE_REFRESH_TOKEN_TTL_SECS",
                30 * 86_400,
                60..=366 * 86_400,
            )?),
            max_minted_ttl: secs(3600 * number_setting(&lookup, "CHRONICLE_MAX_MINTED_TOKEN_HOURS", 168, 1..=8_760)?),
            limits: crate::sessions::SignInLimits {
                free_attempts: u32::try_from(number_setting(&lookup, "CHRONICLE_SIGN_IN_FREE_ATTEMPTS", 3, 0..=100)?)
                    .unwrap_or(3),
                delay: std::time::Duration::from_millis(number_setting(
                    &lookup,
                    "CHRONICLE_SIGN_IN_DELAY_MS",
                    1_000,
                    1..=600_000,
                )?),
                lock_after: u32::try_from(number_setting(&lookup, "CHRONICLE_SIGN_IN_LOCK_AFTER", 10, 1..=1_000)?)
                    .unwrap_or(10),
                lock_for: secs(number_setting(&lookup, "CHRONICLE_SIGN_IN_LOCK_SECS", 900, 1..=86_400)?),
                ..crate::sessions::SignInLimits::default()
            },
            client_ip_header: lookup("CHRONICLE_CLIENT_IP_HEADER").map(|h| h.trim().to_ascii_lowercase()),
        };
        Ok(Self {
            database,
            redis_url: lookup("REDIS_URL").map(Secret::new),
            bind,
            data_dir,
            jwt_secret: Secret::new(jwt),
            jwt_previous,
            sessions,
            master_key,
            whatsapp_app_secret: Secret::new(app_secret),
            whatsapp_verify_token: Secret::new(verify),
            whatsapp_graph_base_url,
            whatsapp_sandbox,
            payment_sandbox,
            whatsapp_access_token: whatsapp_access_token.map(Secret::new),
            whatsapp_send,
            twilio_auth_token: twilio_auth_token.map(Secret::new),
            public_url: lookup("CHRONICLE_PUBLIC_URL")
                .unwrap_or_else(|| format!("http://{bind}"))
                .trim_end_matches('/')
                .to_string(),
            log_format,
            snapshots,
            projector_batch_size,
            payments,
            websocket,
            webhooks,
        })
    }
}

/// The payment providers' settings (`PAYNOW_BASE_URL`, `DARAJA_BASE_URL`, `STRIPE_BASE_URL`,
/// `CHRONICLE_TOKEN_RATES`), and whether development mode's payment sandboxes stand in for the
/// providers (`dev` with none of the three naming a real provider; `sandbox` is refused in
/// production).
fn payments_setting(
    lookup: &impl Fn(&str) -> Option<String>,
    dev: bool,
) -> Result<(chronicle_commands::payments::PaymentsConfig, bool), ConfigError> {
    let mut config = chronicle_commands::payments::PaymentsConfig::default();
    let (mut real, mut sandboxed) = (false, false);
    for (name, slot) in [
        ("PAYNOW_BASE_URL", &mut config.paynow_base_url),
        ("DARAJA_BASE_URL", &mut config.daraja_base_url),
        ("STRIPE_BASE_URL", &mut config.stripe_base_url),
    ] {
        if let Some(url) = lookup(name) {
            if url.trim() == "sandbox" {
                if !dev {
                    return Err(ConfigError::Invalid {
                        name,
                        reason: "the payment sandboxes run only in development mode (without DATABASE_URL)".into(),
                    });
                }
                sandboxed = true;
                continue;
            }
            real = true;
            let url = url.trim().trim_end_matches('/').to_string();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!("{url:?} is not an http(s) URL"),
                });
            }
            *slot = url;
        }
    }
    if let Some(rates) = lookup("CHRONICLE_TOKEN_RATES") {
        config.token_rates =
            chronicle_commands::payments::parse_token_rates(&rates).map_err(|reason| ConfigError::Invalid {
                name: "CHRONICLE_TOKEN_RATES",
                reason,
            })?;
    }
    if sandboxed && real {
        return Err(ConfigError::Invalid {
            name: "PAYNOW_BASE_URL",
            reason: "PAYNOW_BASE_URL, DARAJA_BASE_URL and STRIPE_BASE_URL are either all real providers or \
                     the sandboxes (`sandbox` or unset): the payment sandboxes run together"
                .into(),
        });
    }
    Ok((config, dev && !real))
}

fn dev_secrets_path(dir: &std::path::Path) -> PathBuf {
    dir.join("dev-secrets.json")
}

fn load_dev_secrets(dir: &std::path::Path) -> Result<DevSecrets, ConfigError> {
    let path = dev_secrets_path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ConfigError::Invalid {
            name: "dev-secrets.json",
            reason: format!("{}: {e}", path.display()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DevSecrets::default()),
        Err(source) => Err(ConfigError::DevSecrets { path, source }),
    }
}

fn save_dev_secrets(dir: &std::path::Path, secrets: &DevSecrets) -> Result<(), ConfigError> {
    let path = dev_secrets_path(dir);
    let io = |source| ConfigError::DevSecrets {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let json = serde_json::to_vec_pretty(secrets).map_err(|e| io(std::io::Error::other(e)))?;
    // Created private (0600) from the first byte: it holds the master key.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    use std::io::Write;
    options.open(&path).and_then(|mut f| f.write_all(&json)).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(map: HashMap<&'static str, String>) -> impl Fn(&str) -> Option<String> {
        move |k| map.get(k).cloned()
    }

    #[test]
    fn production_mode_names_the_missing_secret() {
        let map = HashMap::from([("DATABASE_URL", "postgres://x/y".to_string())]);
        let err = Settings::from_lookup(lookup(map))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("CHRONICLE_JWT_SECRET"), "{err}");
    }

    #[test]
    fn development_mode_generates_secrets_once_and_reuses_them() {
        let dir = std::env::temp_dir().join(format!("chronicle-config-{}", uuid::Uuid::new_v4()));
        let map = HashMap::from([("CHRONICLE_DATA_DIR", dir.display().to_string())]);
        let first = Settings::from_lookup(lookup(map.clone())).map(|s| s.jwt_secret);
        let second = Settings::from_lookup(lookup(map)).map(|s| s.jwt_secret);
        assert!(first.is_ok());
        assert_eq!(first.ok(), second.ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_bad_bind_address_or_log_format_is_explained() {
        let map = HashMap::from([
            ("CHRONICLE_BIND", "nowhere".to_string()),
            ("DATABASE_URL", "postgres://x".to_string()),
        ]);
        let err = Settings::from_lookup(lookup(map))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("CHRONICLE_BIND"), "{err}");
        let map = HashMap::from([
            ("CHRONICLE_LOG_FORMAT", "xml".to_string()),
            ("DATABASE_URL", "postgres://x".to_string()),
        ]);
        let err = Settings::from_lookup(lookup(map))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("CHRONICLE_LOG_FORMAT"), "{err}");
    }

    #[test]
    fn snapshots_are_configurable_per_aggregate() {
        let base = [
            ("DATABASE_URL", "postgres://x".to_string()),
            ("CHRONICLE_JWT_SECRET", "j".repeat(32)),
            (
                "CHRONICLE_MASTER_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string(),
            ),
            ("WHATSAPP_APP_SECRET", "a".into()),
            ("WHATSAPP_VERIFY_TOKEN", "v".into()),
        ];
        let with = |value: Option<&str>| {
            let mut map: HashMap<&'static str, String> = HashMap::from(base.clone());
            if let Some(v) = value {
                map.insert("CHRONICLE_SNAPSHOT_CONVERSATION", v.to_string());
            }
            Settings::from_lookup(lookup(map))
                .map(|s| s.snapshots.conversation)
                .map_err(|e| e.to_string())
        };
        assert_eq!(with(None), Ok(Some(100)));
        assert_eq!(with(Some("25")), Ok(Some(25)));
        assert_eq!(with(Some("0")), Ok(None));
        assert!(with(Some("many")).is_err_and(|e| e.contains("CHRONICLE_SNAPSHOT_CONVERSATION")));
    }

    #[test]
    fn the_twilio_token_is_optional_in_production_and_the_public_url_defaults_to_the_bind_address() {
        let base = HashMap::from([
            ("DATABASE_URL", "postgres://x".to_string()),
            ("CHRONICLE_JWT_SECRET", "j".repeat(32)),
            (
                "CHRONICLE_MASTER_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string(),
            ),
            ("WHATSAPP_APP_SECRET", "a".into()),
            ("WHATSAPP_VERIFY_TOKEN", "v".into()),
            ("CHRONICLE_BIND", "127.0.0.1:9000".into()),
        ]);
        let without = Settings::from_lookup(lookup(base.clone())).map(|s| (s.twilio_auth_token, s.public_url));
        assert!(matches!(without, Ok((None, ref url)) if url == "http://127.0.0.1:9000"));
        let mut with = base;
        with.insert("TWILIO_AUTH_TOKEN", "tw".into());
        with.insert("CHRONICLE_PUBLIC_URL", "https://chronicle.example/".into());
        let with = Settings::from_lookup(lookup(with)).map(|s| (s.twilio_auth_token, s.public_url));
        assert!(matches!(with, Ok((Some(t), ref url)) if t.expose() == "tw" && url == "https://chronicle.example"));
    }

    #[test]
    fn the_whatsapp_sender_defaults_to_the_graph_api_and_its_token_is_optional_in_production() {
        let base = HashMap::from([
            ("DATABASE_URL", "postgres://x".to_string()),
            ("CHRONICLE_JWT_SECRET", "j".repeat(32)),
            (
                "CHRONICLE_MASTER_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string(),
            ),
            ("WHATSAPP_APP_SECRET", "a".into()),
            ("WHATSAPP_VERIFY_TOKEN", "v".into()),
        ]);
        let Ok(settings) = Settings::from_lookup(lookup(base.clone())) else {
            panic!("valid settings")
        };
        assert_eq!(settings.whatsapp_graph_base_url, "https://graph.facebook.com/v21.0");
        assert!(settings.whatsapp_access_token.is_none());
        assert_eq!(settings.whatsapp_send.max_attempts, 8);
        let mut with = base.clone();
        with.insert("WHATSAPP_ACCESS_TOKEN", "tok".into());
        with.insert("WHATSAPP_GRAPH_BASE_URL", "http://127.0.0.1:9/v1/".into());
        with.insert("WHATSAPP_SEND_BACKOFF_MS", "0".into());
        let Ok(settings) = Settings::from_lookup(lookup(with)) else {
            panic!("valid settings")
        };
        assert_eq!(settings.whatsapp_graph_base_url, "http://127.0.0.1:9/v1");
        assert_eq!(
            settings.whatsapp_access_token.map(|t| t.expose().to_string()),
            Some("tok".into())
        );
        assert_eq!(settings.whatsapp_send.backoff, std::time::Duration::ZERO);
        let mut bad = base;
        bad.insert("WHATSAPP_SEND_MAX_ATTEMPTS", "0".into());
        let err = Settings::from_lookup(lookup(bad))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("WHATSAPP_SEND_MAX_ATTEMPTS"), "{err}");
    }

    #[test]
    fn the_payment_sandboxes_are_on_in_development_unless_a_real_provider_is_named() {
        let dir = std::env::temp_dir().join(format!("chronicle-config-{}", uuid::Uuid::new_v4()));
        let dev = HashMap::from([("CHRONICLE_DATA_DIR", dir.display().to_string())]);
        let on = |map: HashMap<&'static str, String>| Settings::from_lookup(lookup(map)).map(|s| s.payment_sandbox);
        assert!(matches!(on(dev.clone()), Ok(true)));
        let mut named = dev.clone();
        named.insert("STRIPE_BASE_URL", "sandbox".into());
        assert!(matches!(on(named), Ok(true)));
        let mut real = dev;
        real.insert("PAYNOW_BASE_URL", "https://www.paynow.co.zw/Interface".into());
        assert!(matches!(on(real.clone()), Ok(false)));
        let mut mixed = real;
        mixed.insert("STRIPE_BASE_URL", "sandbox".into());
        assert!(on(mixed).is_err(), "a sandbox beside a real provider is refused");
        let _ = std::fs::remove_dir_all(dir);
        let production = HashMap::from([
            ("DATABASE_URL", "postgres://x".to_string()),
            ("CHRONICLE_JWT_SECRET", "j".repeat(32)),
            (
                "CHRONICLE_MASTER_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string(),
            ),
            ("WHATSAPP_APP_SECRET", "a".into()),
            ("WHATSAPP_VERIFY_TOKEN", "v".into()),
        ]);
        assert!(matches!(on(production.clone()), Ok(false)));
        let mut refused = production;
        refused.insert("DARAJA_BASE_URL", "sandbox".into());
        let err = on(refused).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("DARAJA_BASE_URL"), "{err}");
    }

    #[test]
    fn the_whatsapp_sandbox_is_on_in_development_only_and_production_refuses_it() {
        let dir = std::env::temp_dir().join(format!("chronicle-config-{}", uuid::Uuid::new_v4()));
        let dev = HashMap::from([("CHRONICLE_DATA_DIR", dir.display().to_string())]);
        let sandbox = |map: HashMap<&'static str, String>| {
            Settings::from_lookup(lookup(map)).map(|s| (s.whatsapp_sandbox, s.whatsapp_graph_base_url))
        };
        // Development: on by default and with `sandbox`; off when a real Graph API is named.
        assert!(matches!(sandbox(dev.clone()), Ok((true, _))));
        let mut named = dev.clone();
        named.insert("WHATSAPP_GRAPH_BASE_URL", "sandbox".into());
        assert!(matches!(sandbox(named), Ok((true, _))));
        let mut real = dev;
        real.insert("WHATSAPP_GRAPH_BASE_URL", "http://127.0.0.1:9/v21.0".into());
        assert!(matches!(sandbox(real), Ok((false, ref url)) if url == "http://127.0.0.1:9/v21.0"));
        let _ = std::fs::remove_dir_all(dir);
        // Production: off, and `sandbox` is a configuration error.
        let production = HashMap::from([
            ("DATABASE_URL", "postgres://x".to_string()),
            ("CHRONICLE_JWT_SECRET", "j".repeat(32)),
            (
                "CHRONICLE_MASTER_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string(),
            ),
            ("WHATSAPP_APP_SECRET", "a".into()),
            ("WHATSAPP_VERIFY_TOKEN", "v".into()),
        ]);
        assert!(
            matches!(sandbox(production.clone()), Ok((false, ref url)) if url == "https://graph.facebook.com/v21.0")
        );
        let mut refused = production;
        refused.insert("WHATSAPP_GRAPH_BASE_URL", "sandbox".into());
        let err = sandbox(refused).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("WHATSAPP_GRAPH_BASE_URL") && err.contains("development mode"),
            "{err}"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "[redacted]");
    }
}
