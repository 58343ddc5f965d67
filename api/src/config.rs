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
//! | `CHRONICLE_MASTER_KEY` | base64 of the 32-byte key wrapping contacts' data keys | dev: generated |
//! | `WHATSAPP_APP_SECRET` | Meta app secret, signs webhook deliveries | dev: generated |
//! | `WHATSAPP_VERIFY_TOKEN` | the webhook verification handshake token | dev: generated |
//! | `CHRONICLE_LOG_FORMAT` | `pretty` or `json` | `pretty` |
//! | `CHRONICLE_PROJECTOR_BATCH_SIZE` | events per projector batch (one transaction each) | `500` |
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
    pub master_key: MasterKey,
    pub whatsapp_app_secret: Secret,
    pub whatsapp_verify_token: Secret,
    pub log_format: LogFormat,
    /// Snapshot settings per aggregate.
    pub snapshots: chronicle_commands::dispatch::SnapshotPolicy,
    /// Events per projector batch.
    pub projector_batch_size: i64,
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
        if changed {
            save_dev_secrets(&data_dir, &dev_secrets)?;
        }
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
        Ok(Self {
            database,
            redis_url: lookup("REDIS_URL").map(Secret::new),
            bind,
            data_dir,
            jwt_secret: Secret::new(jwt),
            master_key,
            whatsapp_app_secret: Secret::new(app_secret),
            whatsapp_verify_token: Secret::new(verify),
            log_format,
            snapshots,
            projector_batch_size,
        })
    }
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
    fn secrets_never_show_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "[redacted]");
    }
}
