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
//! - `chronicle-replay verify [--tenant T] [--database-url URL] [--json] [--heads-out FILE]`:
//!   recomputes every stream's sha-256 hash chain (see [`chronicle_projections::chain`]) and
//!   names each broken link by stream, sequence and global position; when every link holds,
//!   prints each verified tenant's digest ([`chronicle_projections::digest`]).
//! - `chronicle-replay verify --digest D [--heads FILE]`: verifies the digest's tenant and
//!   checks that everything `D` covered is unchanged and only appended to since, naming the
//!   streams whose heads changed when the heads file written with `D` is given.
//!
//! - `chronicle-replay history --tenant T [filters] [--reveal] [--format table|json|jsonl|csv]`:
//!   the tenant's events in log order, personal fields never as ciphertext ([`history`]).
//! - `chronicle-replay export --tenant T [--contact ID] [--out FILE]`: what is held about a
//!   tenant or a contact, events and read-model rows, as JSON ([`export`]).
//! - `chronicle-replay reconcile wallets --tenant T [--statement FILE] [--through C]`: wallets
//!   against the log's identities, the read models and a provider's statement ([`reconcile`]).
//! - `chronicle-replay state STREAM [--type T] [--cursor C | --at TIME]`: the aggregate's
//!   state folded from the log with the domain's code ([`state`]), as JSON.
//!
//! - `chronicle-replay rebuild [PROJECTOR ...] [--compare-only]`: read models rebuilt from zero
//!   beside the live ones while the API serves, compared table by table and swapped in one
//!   transaction ([`rebuild`]).
//!
//! Each subcommand has an argument struct that flattens [`DatabaseArgs`].
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | the command succeeded; for `verify`, every link holds |
//! | 1 | `verify` found broken links, or the digest checked does not hold; `reconcile` found breaks; `rebuild` found a rebuilt table differing from the live one |
//! | 3 | `reconcile`: the read models have not reached the cursor (run again) |
//! | 2 | usage error (clap), no database (no URL and no embedded cluster), invalid URL, connection or database error |

pub mod export;
pub mod history;
pub mod rebuild;
pub mod reconcile;
pub mod state;

use chronicle_projections::chain::{self, VerifyProgress, VerifyReport};
use chronicle_projections::digest::{self, DigestCheck, DigestReport, StreamHead, TenantDigest};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
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
    /// Verify the event log's per-stream hash chains, and take or check tenant digests.
    ///
    /// Recomputes every event's hash from its columns and its predecessor's stored hash, and
    /// looks for sequence gaps. Prints one line per broken link (stream, sequence, global
    /// position, what is wrong) and a summary. When every link holds it also prints each
    /// verified tenant's digest: one hash over the heads of all its streams, with the log
    /// position it covers. Keep it outside the database: `verify --digest D` later proves that
    /// everything D covered is unchanged and only appended to since, which also catches a
    /// stream whose last events were removed (the chains alone cannot). Exits 0 when every
    /// link (and the digest) holds, 1 when not, 2 when the log cannot be read.
    Verify(VerifyArgs),

    /// Print a tenant's history in log order.
    ///
    /// Filters by stream, aggregate type, event type, actor, time range (--since/--until) and
    /// cursor range (--after/--through). Prints a table, or JSON, JSON lines or CSV (--format).
    /// Personal fields are never printed as ciphertext: they show as [personal], as their
    /// plaintext with --reveal (which needs the master key), or as [erased] when the contact's
    /// key was destroyed.
    History(history::HistoryArgs),

    /// Export what is held about a tenant, or about one contact (--contact), as JSON.
    ///
    /// The events (personal fields opened: needs the master key) and the rows of every table
    /// of the tenant, or those keyed to the contact (contact, conversation or customer id):
    /// a data-subject access request. After an erasure nothing personal about the contact is
    /// left in it.
    Export(export::ExportArgs),

    /// Reconcile the log with the read models and with providers' statements.
    ///
    /// `reconcile wallets --tenant T [--statement FILE] [--through CURSOR] [--out DIR]` replays
    /// every wallet, checks the double-entry identities, compares the ledger and balance read
    /// models and matches a provider's statement (CSV: reference,amount,currency,date) with the
    /// recorded payments and purchases. Writes breaks.csv, wallets.csv and manifest.json (with
    /// each file's sha-256); exits 0 when reconciled (with or without pending items), 1 on
    /// breaks, 3 when the read models have not reached the cursor yet.
    #[command(subcommand)]
    Reconcile(reconcile::ReconcileCommand),

    /// Show any aggregate's state as of a cursor or a time, as JSON.
    ///
    /// Folds the stream's events with the domain's own code (never from a snapshot), up to the
    /// cursor (--cursor) or the time (--at) given, or every event. Prints the aggregate type,
    /// the stream, how many events were folded, the last one's sequence, cursor and time, and
    /// the state as the write side serializes it. Exits 2 when the stream does not exist or an
    /// event cannot be read.
    State(state::StateArgs),

    /// Rebuild read models from zero while the API keeps serving, and swap them in.
    ///
    /// For the projectors named (every one when none is), builds new tables beside the live
    /// ones (same columns, indexes, constraints, row-level security and grants), fills them
    /// from one read of the log shared by all of them (a progress bar on stderr), then in one
    /// transaction brings both to the same cursor, compares each pair (rows and a checksum),
    /// swaps the new tables in and moves the checkpoints. Queries go on throughout: at the swap
    /// they wait at most a fraction of a second. Work lists are rebuilt without running any
    /// side effect again. --compare-only leaves the live tables in place. Prints each table's
    /// rows and checksums, the events read and their rate. Exits 0 when every table equals the
    /// live one, 1 when one differs (the live read model had drifted from the log), 2 when it
    /// cannot run (another rebuild running, a database error).
    Rebuild(rebuild::RebuildArgs),
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

    /// Check a tenant digest printed by an earlier `verify` (td1:<tenant>:<cursor>:<hash>):
    /// the tenant's chains are verified and its stream heads as of the digest's cursor must
    /// hash to it, with nothing recorded since inside the history it covered.
    #[arg(long, value_name = "DIGEST", value_parser = parse_digest)]
    pub digest: Option<TenantDigest>,

    /// With --digest: the heads file written with that digest (--heads-out), so that every
    /// stream whose head changed is named.
    #[arg(long, value_name = "FILE", requires = "digest")]
    pub heads: Option<PathBuf>,

    /// Write the stream heads behind each digest taken to FILE (JSON lines), to name the
    /// streams that changed when the digest is checked later (--heads).
    #[arg(long, value_name = "FILE", conflicts_with = "digest")]
    pub heads_out: Option<PathBuf>,
}

fn parse_digest(text: &str) -> Result<TenantDigest, String> {
    text.parse::<TenantDigest>().map_err(|error| error.to_string())
}

/// How a command ended when it ran to completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing wrong: exit code 0.
    Ok,
    /// `verify` found broken links or a digest that does not hold, `reconcile` found breaks:
    /// exit code 1.
    Broken,
    /// `reconcile` could not compare: the read models have not reached the cursor (exit 3).
    Incomplete,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::Broken => ExitCode::from(1),
            Outcome::Incomplete => ExitCode::from(3),
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
    #[error("--tenant {given} and the digest's tenant {digest} differ: a digest is checked against its own tenant")]
    TenantNotTheDigests { given: String, digest: String },
    #[error("cannot read the heads file {path}: {reason}")]
    HeadsFile { path: String, reason: String },
    #[error("cannot write the heads file {path}: {source}")]
    HeadsOut {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    HeadsOfAnotherDigest(String),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    History(#[from] history::HistoryError),
    #[error(transparent)]
    Reconcile(#[from] reconcile::ReconcileError),
    #[error(transparent)]
    Rebuild(#[from] rebuild::RebuildCliError),
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
        Command::State(args) => state_main(args).await,
        Command::History(args) => history_main(args).await,
        Command::Export(args) => export_main(args).await,
        Command::Reconcile(reconcile::ReconcileCommand::Wallets(args)) => reconcile_main(args).await,
        Command::Rebuild(args) => rebuild_main(args).await,
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

async fn history_main(args: &history::HistoryArgs) -> Result<Outcome, CliError> {
    let pool = connect(&args.database).await?;
    let outcome = history::history_command(&pool, args, &mut io::BufWriter::new(io::stdout().lock())).await;
    pool.close().await;
    outcome.map(|()| Outcome::Ok)
}

async fn export_main(args: &export::ExportArgs) -> Result<Outcome, CliError> {
    let pool = connect(&args.database).await?;
    let outcome = export::export_command(&pool, args, &mut io::BufWriter::new(io::stdout().lock())).await;
    pool.close().await;
    outcome.map(|()| Outcome::Ok)
}

async fn reconcile_main(args: &reconcile::WalletsArgs) -> Result<Outcome, CliError> {
    let pool = connect(&args.database).await?;
    let verdict = reconcile::wallets_command(&pool, args, &mut io::stdout().lock()).await;
    pool.close().await;
    Ok(match verdict? {
        reconcile::Verdict::Reconciled | reconcile::Verdict::ReconciledWithPendingItems => Outcome::Ok,
        reconcile::Verdict::Breaks => Outcome::Broken,
        reconcile::Verdict::Incomplete => Outcome::Incomplete,
    })
}

async fn rebuild_main(args: &rebuild::RebuildArgs) -> Result<Outcome, CliError> {
    let pool = connect(&args.database).await?;
    let outcome = rebuild::rebuild_command(&pool, args, &mut io::stdout().lock()).await;
    pool.close().await;
    outcome
}

async fn state_main(args: &state::StateArgs) -> Result<Outcome, CliError> {
    let pool = connect(&args.database).await?;
    let outcome = state::state_command(&pool, args, &mut io::stdout().lock()).await;
    pool.close().await;
    outcome.map(|()| Outcome::Ok)
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
/// a terminal), takes each verified tenant's digest when every link held, or checks the digest
/// given, writes the report to `out` (text or JSON) and says whether everything held.
pub async fn verify_command(pool: &PgPool, args: &VerifyArgs, out: &mut impl Write) -> Result<Outcome, CliError> {
    // A digest is checked against its own tenant's chains.
    let tenant: Option<&str> = match (&args.digest, args.tenant.as_deref()) {
        (Some(digest), Some(given)) if given != digest.tenant => {
            return Err(CliError::TenantNotTheDigests {
                given: given.to_owned(),
                digest: digest.tenant.clone(),
            })
        }
        (Some(digest), _) => Some(digest.tenant.as_str()),
        (None, tenant) => tenant,
    };
    let recorded = match (&args.digest, &args.heads) {
        (Some(digest), Some(path)) => Some(read_heads(path, digest)?),
        _ => None,
    };

    // Digests are taken first, then the chains verified: every event a digest covers was
    // committed before the verification's snapshot, so the chains checked include all of it.
    let mut digests = Vec::new();
    if args.digest.is_none() {
        let tenants = match tenant {
            Some(tenant) => vec![tenant.to_owned()],
            None => digest::tenants(pool).await?,
        };
        for tenant in tenants {
            digests.push(digest::take(pool, &tenant).await?);
        }
    }

    let bar = progress_bar("verifying", 0);
    let report = chain::verify(pool, tenant, |p: VerifyProgress| {
        bar.set_length(p.total);
        bar.set_position(p.checked);
    })
    .await;
    bar.finish_and_clear();
    let report = report?;

    let mut check = None;
    match &args.digest {
        Some(digest) => {
            let checked = digest::check(pool, digest, recorded.as_deref())
                .await
                .map_err(|error| match error {
                    digest::CheckError::Database(error) => CliError::from(error),
                    other => CliError::HeadsOfAnotherDigest(other.to_string()),
                })?;
            check = Some(checked);
        }
        // A digest vouches for the history it covers: only given out when every link held.
        None if report.is_intact() => {
            if let Some(path) = &args.heads_out {
                write_heads(path, &digests)?;
            }
        }
        None => digests.clear(),
    }

    let verdict = Verdict {
        tenant,
        report: &report,
        digests: &digests,
        check: check.as_ref(),
    };
    if args.json {
        write_json(out, &verdict)?;
    } else {
        write_text(out, &verdict)?;
    }
    out.flush()?;
    Ok(if verdict.ok() { Outcome::Ok } else { Outcome::Broken })
}

/// What `verify` found: the chains, the digests taken, the digest checked.
#[derive(Debug, Clone, Copy)]
pub struct Verdict<'a> {
    pub tenant: Option<&'a str>,
    pub report: &'a VerifyReport,
    pub digests: &'a [DigestReport],
    pub check: Option<&'a DigestCheck>,
}

impl Verdict<'_> {
    /// Every link held, and the digest checked (if any) holds.
    pub fn ok(&self) -> bool {
        self.report.is_intact() && self.check.is_none_or(DigestCheck::holds)
    }
}

/// One line of a heads file: a digest's header, or one of its heads.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(untagged)]
enum HeadsLine {
    Digest { digest: String },
    Head(StreamHead),
}

/// Writes the heads behind each digest (JSON lines: the digest, then its heads in digest order).
fn write_heads(path: &std::path::Path, digests: &[DigestReport]) -> Result<(), CliError> {
    let failed = |source: io::Error| CliError::HeadsOut {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::create(path).map_err(failed)?;
    let mut file = io::BufWriter::new(file);
    for report in digests {
        let mut line = |value: &HeadsLine| -> io::Result<()> {
            serde_json::to_writer(&mut file, value)?;
            writeln!(file)
        };
        line(&HeadsLine::Digest {
            digest: report.digest.to_string(),
        })
        .map_err(failed)?;
        for head in &report.heads {
            line(&HeadsLine::Head(head.clone())).map_err(failed)?;
        }
    }
    file.flush().map_err(failed)
}

/// The heads recorded for `digest` in a heads file.
fn read_heads(path: &std::path::Path, digest: &TenantDigest) -> Result<Vec<StreamHead>, CliError> {
    let failed = |reason: String| CliError::HeadsFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|error| failed(error.to_string()))?;
    let wanted = digest.to_string();
    let mut heads = Vec::new();
    let mut in_section = false;
    let mut found = false;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: HeadsLine =
            serde_json::from_str(line).map_err(|error| failed(format!("line {}: {error}", number + 1)))?;
        match parsed {
            HeadsLine::Digest { digest } => {
                in_section = digest.trim() == wanted;
                found |= in_section;
            }
            HeadsLine::Head(head) if in_section => heads.push(head),
            HeadsLine::Head(_) => {}
        }
    }
    if !found {
        return Err(failed(format!("it holds no heads for the digest {wanted}")));
    }
    Ok(heads)
}

/// A progress bar on stderr, `<verb> [bar] n/total events, eta`, hidden when stderr is not a
/// terminal (a report piped to a file stays clean). Shared by every long-running command.
pub(crate) fn progress_bar(verb: &str, total: u64) -> ProgressBar {
    progress_bar_of(verb, total, "events")
}

/// [`progress_bar`] counting `unit` (tables, wallets) instead of events.
pub(crate) fn progress_bar_of(verb: &str, total: u64, unit: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let template = format!("{verb} {{wide_bar}} {{human_pos}}/{{human_len}} {unit}, eta {{eta}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// The text report: one line per broken link, then the summary, then the digest lines.
pub fn write_text(out: &mut impl Write, verdict: &Verdict<'_>) -> io::Result<()> {
    let (tenant, report) = (verdict.tenant, verdict.report);
    for link in &report.broken {
        writeln!(out, "BROKEN {link}")?;
    }
    let scope = match tenant {
        Some(tenant) => format!(" of tenant {tenant}"),
        None => String::new(),
    };
    let summary = match report.broken.len() {
        0 => "OK".to_owned(),
        1 => "1 broken link".to_owned(),
        n => format!("{n} broken links"),
    };
    writeln!(
        out,
        "verified {} events in {} streams{scope}: {summary}",
        report.events, report.streams
    )?;
    for taken in verdict.digests {
        writeln!(
            out,
            "digest {} (tenant {}, up to position {}: {} events in {} streams)",
            taken.digest, taken.tenant, taken.position, taken.events, taken.streams
        )?;
    }
    if let Some(check) = verdict.check {
        for change in &check.changed {
            writeln!(out, "CHANGED {change}")?;
        }
        for inserted in &check.inserted {
            writeln!(out, "INSERTED {inserted}")?;
        }
        let position = check.digest.cursor.position;
        if check.holds() {
            writeln!(
                out,
                "digest holds: everything it covered (up to position {position}) is unchanged and only appended to since"
            )?;
        } else if !check.matches {
            writeln!(
                out,
                "DIGEST MISMATCH: the tenant's stream heads as of position {position} no longer hash to \
                 the digest: covered history was changed or removed{}",
                if check.changed.is_empty() {
                    " (pass the heads file written with it, --heads, to name the streams)"
                } else {
                    ""
                }
            )?;
        } else {
            writeln!(
                out,
                "DIGEST BROKEN: events were recorded inside the history it covered (up to position {position})"
            )?;
        }
    }
    Ok(())
}

/// The JSON report: `{"ok", "tenant", "streams", "events", "broken": [...], "digests": [...],
/// "digest_check": {...} | null}`, each broken link with `aggregate_type`, `aggregate_id`,
/// `sequence`, `global_position`, `kind` and the kind's details; each digest with `digest`,
/// `tenant`, `cursor`, `position`, `streams`, `events`; the check with `digest`, `matches`,
/// `changed` and `inserted`.
pub fn write_json(out: &mut impl Write, verdict: &Verdict<'_>) -> io::Result<()> {
    #[derive(Serialize)]
    struct JsonReport<'a> {
        ok: bool,
        tenant: Option<&'a str>,
        #[serde(flatten)]
        report: &'a VerifyReport,
        digests: &'a [DigestReport],
        digest_check: Option<&'a DigestCheck>,
    }
    let json = JsonReport {
        ok: verdict.ok(),
        tenant: verdict.tenant,
        report: verdict.report,
        digests: verdict.digests,
        digest_check: verdict.check,
    };
    serde_json::to_writer_pretty(&mut *out, &json)?;
    writeln!(out)
}
