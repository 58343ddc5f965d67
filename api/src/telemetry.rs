//! Tracing, set up once, on standard error (standard output is for what a command prints): pretty for people, JSON for machines (`CHRONICLE_LOG_FORMAT`), filtered
//! by `RUST_LOG` (default `info`). Spans carry `tenant.id` and `correlation.id`; personal data
//! and secrets are never fields.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call twice (the second call does nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let result = match format {
        LogFormat::Pretty => fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .with_target(false)
            .try_init(),
        LogFormat::Json => fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .with_current_span(true)
            .try_init(),
    };
    drop(result);
}
