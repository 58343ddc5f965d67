//! `chronicle-replay`: the auditor's and operator's tool over Chronicle's event log
//! (DESIGN.md, "The event store").
//!
//! The binary (`src/main.rs`) only parses the command line and calls [`run`]; everything else
//! lives here so tests can drive it.
//!
//! # Commands
//!
//! Every command finds the database as `chronicle admin` does: `--database-url` /
//! `DATABASE_URL`, or else the embedded cluster of `chronicle serve` under `--data-dir` /
//! `CHRONICLE_DATA_DIR` (default `.chronicle`).
//!
//! - `chronicle-replay verify [--tenant T] [--database-url URL] [--json]`: recomputes every
//!   stream's sha-256 hash chain (see [`chronicle_projections::chain`]) and names each broken
//!   link by stream, sequence and global position.
//!
//! Later subcommands (history, state as of, rebuild, reconcile, export) join [`Command`] as
//! variants of their own, each with an argument struct that flattens [`DatabaseArgs`].
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | the command succeeded; for `verify`, every link holds |
//! | 1 | `verify` found broken links |
//! | 2 | usage error (clap), no database (no URL and no embedded cluster), invalid URL, connection or database error |

use chronicle_projections::chain::{self, VerifyProgress, VerifyReport};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "chronicle-replay",
    version,
    about = "Audit and replay Chronicle's event log",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify the event log's per-stream hash chains.
    ///
    /// Recomputes every event's hash from its columns and its predecessor's stored hash, and
    /// looks for sequence gaps. Prints one line per broken link (stream, sequence, global
    /// position, what is wrong) and a summary; exits 0 when every link holds, 1 when some
    /// do not, 2 when the log cannot be read.
    Verify(VerifyArgs),
}

/// Where the event log is. Shared by every subcommand.
///
/// Found as `chronicle admin` finds it: the database URL when one is given, otherwise the
/// embedded cluster that `chronicle serve` (and `scripts/run.sh`) keeps under the data
/// directory, started if it is stopped.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL of Chronicle's database. Without one, the embedded cluster under
    /// --data-dir is used.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// The data directory of `chronicle serve` in development mode, whose embedded cluster
    /// (`<DIR>/pg`, port CHRONICLE_EMBEDDED_PG_PORT or 54329) is used when no database URL is
    /// given.
    #[arg(long, env = "CHRONICLE_DATA_DIR", default_value = ".chronicle", value_name = "DIR")]
    pub data_dir: std::path::PathBuf,
}

/// `chronicle-replay verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Verify only this tenant's streams.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How a command ended when it ran to completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing wrong: exit code 0.
    Ok,
    /// `verify` found broken links: exit code 1.
    Broken,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::Broken => ExitCode::from(1),
        }
    }
}

/// Why a command could not run to completion (exit code 2). The messages never contain a
/// password.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "no database given: pass --database-url URL or set DATABASE_URL, or run where `chronicle \
         serve` keeps its embedded cluster (none under {0}; --data-dir or CHRONICLE_DATA_DIR name \
         another directory)"
    )]
    NoDatabaseUrl(String),
    #[error("the embedded cluster: {0:#}")]
    Embedded(anyhow::Error),
    #[error("the database URL (--database-url or DATABASE_URL) is invalid: {0}")]
    InvalidDatabaseUrl(#[source] sqlx::Error),
    #[error(
        "the database URL (--database-url or DATABASE_URL) must start with postgres:// or \
         postgresql://"
    )]
    NotPostgresUrl,
    #[error("cannot connect to the database at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "the database has no event log (no `events` table): is it Chronicle's database, \
         with its migrations applied?"
    )]
    NoEventLog,
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
}

impl From<sqlx::Error> for CliError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => CliError::NoEventLog,
            _ => CliError::Database(error),
        }
    }
}

/// Runs a parsed command line, printing results to stdout and errors to stderr, and returns
/// the process's exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Verify(args) => verify_main(args).await,
    };
    match result {
        Ok(outcome) => outcome.into(),
        Err(error) => {
            // Nothing more useful to do if stderr is gone.
            let _ = writeln!(io::stderr(), "chronicle-replay: error: {error}");
            ExitCode::from(2)
        }
    }
}

async fn verify_main(args: &VerifyArgs) -> Result<Outcome, CliError> {
    let pool = connect(&args.database).await?;
    let outcome = verify_command(&pool, args, &mut io::stdout().lock()).await;
    pool.close().await;
    outcome
}

/// Connects to the database named by `--database-url` / `DATABASE_URL`, or else to the
/// embedded cluster under the data directory. A first connection is made directly, so an
/// unreachable server is reported at once with its reason rather than after the pool's
/// retries.
pub async fn connect(database: &DatabaseArgs) -> Result<PgPool, CliError> {
    let given = database
        .database_url
        .as_deref()
        .map(str::trim)
        .filter(|url| !url.is_empty());
    let embedded;
    let url = match given {
        Some(url) => url,
        None => {
            embedded = embedded_url(&database.data_dir).await?;
            embedded.as_str()
        }
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(CliError::NotPostgresUrl);
    }
    let options = PgConnectOptions::from_str(url)
        .map_err(CliError::InvalidDatabaseUrl)?
        .application_name("chronicle-replay")
        // A verification's one long query would otherwise be logged as a slow statement.
        .disable_statement_logging();
    let target = describe(&options);

    let probe = PgConnection::connect_with(&options)
        .await
        .map_err(|source| CliError::Connect {
            target: target.clone(),
            source,
        })?;
    // The probe only proves the server is there; closing it cleanly is a courtesy.
    let _ = probe.close().await;

    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|source| CliError::Connect { target, source })
}

/// The URL of the embedded cluster under `data_dir`, started if stopped; an error when
/// `chronicle serve` never created one there.
async fn embedded_url(data_dir: &std::path::Path) -> Result<String, CliError> {
    let cluster = chronicle_projections::embedded::EmbeddedPostgres::new(data_dir).map_err(CliError::Embedded)?;
    if !cluster.exists() {
        return Err(CliError::NoDatabaseUrl(cluster.data_dir.display().to_string()));
    }
    cluster.ensure_running().await.map_err(CliError::Embedded)
}

/// `user@host:port/database` (or the socket path), without the password.
fn describe(options: &PgConnectOptions) -> String {
    let place = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    format!(
        "{}@{}/{}",
        options.get_username(),
        place,
        options.get_database().unwrap_or("")
    )
}

/// `verify` against an open pool: verifies the chains (with a progress bar on stderr when it is
/// a terminal), writes the report to `out` (text or JSON) and says whether every link held.
pub async fn verify_command(pool: &PgPool, args: &VerifyArgs, out: &mut impl Write) -> Result<Outcome, CliError> {
    let bar = progress_bar();
    let report = chain::verify(pool, args.tenant.as_deref(), |p: VerifyProgress| {
        bar.set_length(p.total);
        bar.set_position(p.checked);
    })
    .await;
    bar.finish_and_clear();
    let report = report?;

    if args.json {
        write_json(out, args.tenant.as_deref(), &report)?;
    } else {
        write_text(out, args.tenant.as_deref(), &report)?;
    }
    out.flush()?;
    Ok(if report.is_intact() {
        Outcome::Ok
    } else {
        Outcome::Broken
    })
}

fn progress_bar() -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("verifying {wide_bar} {human_pos}/{human_len} events, eta {eta}") {
        bar.set_style(style);
    }
    bar
}

/// The text report: one line per broken link, then the summary.
pub fn write_text(out: &mut impl Write, tenant: Option<&str>, report: &VerifyReport) -> io::Result<()> {
    for link in &report.broken {
        writeln!(out, "BROKEN {link}")?;
    }
    let scope = match tenant {
        Some(tenant) => format!(" of tenant {tenant}"),
        None => String::new(),
    };
    let verdict = match report.broken.len() {
        0 => "OK".to_owned(),
        1 => "1 broken link".to_owned(),
        n => format!("{n} broken links"),
    };
    writeln!(
        out,
        "verified {} events in {} streams{scope}: {verdict}",
        report.events, report.streams
    )
}

/// The JSON report: `{"ok", "tenant", "streams", "events", "broken": [...]}`, each broken link
/// with `aggregate_type`, `aggregate_id`, `sequence`, `global_position`, `kind` and the kind's
/// details.
pub fn write_json(out: &mut impl Write, tenant: Option<&str>, report: &VerifyReport) -> io::Result<()> {
    #[derive(Serialize)]
    struct JsonReport<'a> {
        ok: bool,
        tenant: Option<&'a str>,
        #[serde(flatten)]
        report: &'a VerifyReport,
    }
    let json = JsonReport {
        ok: report.is_intact(),
        tenant,
        report,
    };
    serde_json::to_writer_pretty(&mut *out, &json)?;
    writeln!(out)
}
