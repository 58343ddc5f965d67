//! `chronicle-replay history`: a tenant's history in log order, filtered, as a readable table or
//! as JSON, JSON lines or CSV.
//!
//! Events are read in the log's final order ([`chronicle_projections::log`]); a cursor printed
//! here is one the API and subscriptions accept. Filters: streams, aggregate types, event types,
//! actor, a time range (`recorded_at`) and a cursor range.
//!
//! # Personal fields
//!
//! A personal field is a ciphertext envelope in the log (DESIGN.md, "Personal data in an
//! immutable log"). History never prints an envelope. Each one is shown as:
//!
//! - its plaintext, with `--reveal`, when the contact's key exists and opens it (the master key
//!   comes from `CHRONICLE_MASTER_KEY`, or from `chronicle serve`'s development secrets under the
//!   data directory when the embedded cluster is used);
//! - `[personal]` without `--reveal`;
//! - `[erased]` when the contact's key was destroyed by an erasure;
//! - `[unreadable]` when a key exists but does not open it (another master key);
//! - `[other contact]` in an export about one contact, for a field sealed for someone else
//!   (a lead's duplicate capture from another number): an export opens only its contact's.
//!
//! The envelope is bound to its tenant and contact; how the contact is found is
//! [`chronicle_projections::personal`]'s, shared with the API's event contract.

use std::collections::BTreeSet;
use std::io::{self, Write};

use chronicle_domain::pii::MasterKey;
use chronicle_domain::tenant::TenantId;
use chronicle_projections::log::{self, Cursor, LogFilter};
use chronicle_projections::personal::{Field, PersonalKeys};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use crate::{CliError, DatabaseArgs};

/// How `history` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people (payloads shortened to fit).
    Table,
    /// One JSON array.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line (RFC 4180); the payload as JSON text.
    Csv,
}

/// `chronicle-replay history`.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// The tenant whose history to print.
    #[arg(long, value_name = "TENANT")]
    pub tenant: String,

    /// Only this stream (`<tenant>:<id>` or just `<id>`); repeat for several.
    #[arg(long = "stream", value_name = "STREAM")]
    pub streams: Vec<String>,

    /// Only this aggregate type (Conversation, Wallet, ...); repeat for several.
    #[arg(long = "type", value_name = "TYPE")]
    pub aggregate_types: Vec<String>,

    /// Only this event type (MessageReceived, TokensDebited, ...); repeat for several.
    #[arg(long = "event", value_name = "EVENT_TYPE")]
    pub event_types: Vec<String>,

    /// Only events whose command was run by this actor: as stored (`user:alice:agent`,
    /// `system:whatsapp-webhook`, `api_key:k1`) or a prefix of it ending at a colon
    /// (`user:alice`, `system`).
    #[arg(long, value_name = "ACTOR")]
    pub actor: Option<String>,

    /// Only events recorded at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,

    /// Only events recorded before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,

    /// Only events after this log cursor (as printed by an earlier run, the API or a
    /// subscription).
    #[arg(long, value_name = "CURSOR", value_parser = parse_cursor)]
    pub after: Option<Cursor>,

    /// Only events at or before this log cursor.
    #[arg(long, value_name = "CURSOR", value_parser = parse_cursor)]
    pub through: Option<Cursor>,

    /// Print at most this many events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,

    /// Open personal fields with the contacts' keys (needs the master key: CHRONICLE_MASTER_KEY,
    /// or the development secrets of the embedded cluster's data directory).
    #[arg(long)]
    pub reveal: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

impl HistoryArgs {
    /// All of `tenant`'s history, as JSON lines, nothing revealed: the starting point for
    /// callers that set their filters field by field.
    pub fn of_tenant(tenant: &str, database: DatabaseArgs) -> Self {
        Self {
            tenant: tenant.to_owned(),
            streams: Vec::new(),
            aggregate_types: Vec::new(),
            event_types: Vec::new(),
            actor: None,
            since: None,
            until: None,
            after: None,
            through: None,
            limit: None,
            reveal: false,
            format: Format::Jsonl,
            database,
        }
    }
}

pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| format!("not an RFC 3339 time (like 2026-12-01T12:00:00Z): {error}"))
}

pub(crate) fn parse_cursor(text: &str) -> Result<Cursor, String> {
    text.trim().parse::<Cursor>().map_err(|error| error.to_string())
}

/// Why `history` cannot run.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("not a tenant id: {0}")]
    Tenant(String),
    #[error(
        "--reveal needs the master key: set CHRONICLE_MASTER_KEY (base64 of the 32-byte key the \
         server runs with)"
    )]
    NoMasterKey,
    #[error("the master key is invalid: {0}")]
    BadMasterKey(String),
}

/// One event as history prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryRow {
    pub cursor: String,
    pub global_position: i64,
    pub recorded_at: DateTime<Utc>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub actor: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    /// The payload, every personal field replaced as the module docs say.
    pub payload: Value,
}

/// What a personal field shows when it is not revealed.
pub const PERSONAL: &str = "[personal]";
/// What a personal field of an erased contact shows.
pub const ERASED: &str = "[erased]";
/// What a personal field shows when a key exists but does not open it.
pub const UNREADABLE: &str = "[unreadable]";
/// What another contact's personal field shows in an export about one contact.
pub const OTHER_CONTACT: &str = "[other contact]";

/// What a personal field shows in history and exports.
fn marker(field: Field) -> Option<Value> {
    Some(Value::String(match field {
        Field::Opened(plain) => plain,
        Field::Withheld => PERSONAL.to_owned(),
        Field::Erased => ERASED.to_owned(),
        Field::Unreadable => UNREADABLE.to_owned(),
        Field::OtherContact => OTHER_CONTACT.to_owned(),
    }))
}

/// The master key for `--reveal`: CHRONICLE_MASTER_KEY, or the development secrets beside the
/// embedded cluster when no database URL was given.
pub fn master_key(database: &DatabaseArgs) -> Result<MasterKey, CliError> {
    let text = match std::env::var("CHRONICLE_MASTER_KEY") {
        Ok(text) if !text.trim().is_empty() => text,
        _ if database.database_url.as_deref().is_none_or(|u| u.trim().is_empty()) => {
            let path = database.data_dir.join("dev-secrets.json");
            let secrets: Value = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .ok_or(HistoryError::NoMasterKey)?;
            secrets["master_key"]
                .as_str()
                .map(str::to_owned)
                .ok_or(HistoryError::NoMasterKey)?
        }
        _ => return Err(HistoryError::NoMasterKey.into()),
    };
    MasterKey::from_base64(&text).map_err(|error| HistoryError::BadMasterKey(error.to_string()).into())
}

/// Whether `actor` (as stored) is the one asked for: equal, or starting with it and a colon.
fn actor_matches(stored: Option<&str>, wanted: &str) -> bool {
    let wanted = wanted.trim_end_matches(':');
    stored
        .is_some_and(|stored| stored == wanted || stored.strip_prefix(wanted).is_some_and(|rest| rest.starts_with(':')))
}

/// Reads the tenant's history as `args` asks and hands each row to `emit`, in log order.
/// Returns the number of rows. `master` opens personal fields when `args.reveal` asks for it
/// ([`master_key`] finds the one the server runs with).
pub async fn history(
    pool: &PgPool,
    args: &HistoryArgs,
    master: Option<MasterKey>,
    emit: impl FnMut(HistoryRow) -> io::Result<()>,
) -> Result<u64, CliError> {
    history_of(pool, args, master, None, emit).await
}

/// [`history`], opening only `only_contact`'s personal fields when it is given (an export about
/// one person never opens another's).
pub(crate) async fn history_of(
    pool: &PgPool,
    args: &HistoryArgs,
    master: Option<MasterKey>,
    only_contact: Option<&str>,
    mut emit: impl FnMut(HistoryRow) -> io::Result<()>,
) -> Result<u64, CliError> {
    let tenant = TenantId::parse(args.tenant.trim()).map_err(|e| HistoryError::Tenant(e.to_string()))?;
    if args.reveal && master.is_none() {
        return Err(HistoryError::NoMasterKey.into());
    }
    let streams: BTreeSet<String> = args
        .streams
        .iter()
        .map(|s| {
            let s = s.trim();
            if s.starts_with(&format!("{}:", tenant.as_str())) {
                s.to_owned()
            } else {
                tenant.stream_id(s)
            }
        })
        .collect();
    let types: BTreeSet<&str> = args.aggregate_types.iter().map(|t| t.trim()).collect();
    let mut filter = LogFilter::tenant(tenant.as_str());
    if !args.event_types.is_empty() {
        filter = filter.with_types(args.event_types.iter().map(|t| t.trim().to_owned()));
    }
    let mut keys = PersonalKeys::new(pool.clone(), tenant.clone(), master).only_contact(only_contact);

    let mut after = args.after.unwrap_or(Cursor::START);
    let bar = crate::progress_bar("reading", log::count_after(pool, tenant.as_str(), after).await?);
    let mut printed = 0u64;
    'read: loop {
        let batch = log::read_after(pool, after, &filter, 1_000).await?;
        let Some(last) = batch.last() else { break };
        after = last.cursor;
        for event in batch {
            bar.inc(1);
            keys.observe(&event);
            if args.through.is_some_and(|through| event.cursor > through) {
                break 'read;
            }
            if !streams.is_empty() && !streams.contains(&event.aggregate_id) {
                continue;
            }
            if !types.is_empty() && !types.contains(event.aggregate_type.as_str()) {
                continue;
            }
            if args.since.is_some_and(|since| event.recorded_at < since)
                || args.until.is_some_and(|until| event.recorded_at >= until)
            {
                continue;
            }
            let text = |key: &str| event.metadata.get(key).and_then(Value::as_str).map(str::to_owned);
            let actor = text("actor");
            if let Some(wanted) = &args.actor {
                if !actor_matches(actor.as_deref(), wanted) {
                    continue;
                }
            }
            if args.limit.is_some_and(|limit| printed >= limit) {
                break 'read;
            }
            let payload = keys.redact(&event, args.reveal, marker).await?;
            let row = HistoryRow {
                cursor: event.cursor.to_string(),
                global_position: event.global_position,
                recorded_at: event.recorded_at,
                correlation_id: text("correlation_id"),
                causation_id: text("causation_id"),
                actor,
                aggregate_type: event.aggregate_type,
                aggregate_id: event.aggregate_id,
                sequence: event.sequence,
                event_type: event.event_type,
                event_version: event.event_version,
                payload,
            };
            emit(row)?;
            printed += 1;
        }
    }
    bar.finish_and_clear();
    Ok(printed)
}

/// `history` against an open pool, printing in the format asked for.
pub async fn history_command(pool: &PgPool, args: &HistoryArgs, out: &mut impl Write) -> Result<(), CliError> {
    let master = if args.reveal {
        Some(master_key(&args.database)?)
    } else {
        None
    };
    let columns = [
        "cursor",
        "global_position",
        "recorded_at",
        "aggregate_type",
        "aggregate_id",
        "sequence",
        "event_type",
        "event_version",
        "actor",
        "correlation_id",
        "causation_id",
        "payload",
    ];
    match args.format {
        Format::Json => {
            writeln!(out, "[")?;
            let mut first = true;
            history(pool, args, master.clone(), |row| {
                if !first {
                    writeln!(out, ",")?;
                }
                first = false;
                serde_json::to_writer(&mut *out, &row).map_err(io::Error::from)
            })
            .await?;
            if !first {
                writeln!(out)?;
            }
            writeln!(out, "]")?;
        }
        Format::Jsonl => {
            history(pool, args, master.clone(), |row| {
                serde_json::to_writer(&mut *out, &row).map_err(io::Error::from)?;
                writeln!(out)
            })
            .await?;
        }
        Format::Csv => {
            write!(out, "{}\r\n", columns.join(","))?;
            history(pool, args, master.clone(), |row| {
                let fields = [
                    row.cursor,
                    row.global_position.to_string(),
                    row.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
                    row.aggregate_type,
                    row.aggregate_id,
                    row.sequence.to_string(),
                    row.event_type,
                    row.event_version,
                    row.actor.unwrap_or_default(),
                    row.correlation_id.unwrap_or_default(),
                    row.causation_id.unwrap_or_default(),
                    row.payload.to_string(),
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                write!(out, "{}\r\n", line.join(","))
            })
            .await?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:>9}  {:<20}  {:<42}  {:>5}  {:<28}  {:<24}  payload",
                "position", "recorded at (UTC)", "stream", "seq", "event", "actor"
            )?;
            let n = history(pool, args, master.clone(), |row| {
                let stream = format!("{} {}", row.aggregate_type, row.aggregate_id);
                writeln!(
                    out,
                    "{:>9}  {:<20}  {:<42}  {:>5}  {:<28}  {:<24}  {}",
                    row.global_position,
                    row.recorded_at.format("%Y-%m-%d %H:%M:%S"),
                    shorten(&stream, 42),
                    row.sequence,
                    shorten(&row.event_type, 28),
                    shorten(row.actor.as_deref().unwrap_or("-"), 24),
                    shorten(&row.payload.to_string(), 120)
                )
            })
            .await?;
            writeln!(out, "{n} events")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
pub(crate) fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// `text` cut to `width` characters, with an ellipsis when cut.
fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_match_whole_or_by_prefix_at_a_colon() {
        assert!(actor_matches(Some("user:alice:agent"), "user:alice:agent"));
        assert!(actor_matches(Some("user:alice:agent"), "user:alice"));
        assert!(actor_matches(Some("user:alice:agent"), "user"));
        assert!(actor_matches(Some("user:alice:agent"), "user:alice:"));
        assert!(!actor_matches(Some("user:alice:agent"), "user:ali"));
        assert!(!actor_matches(Some("user:alicia:agent"), "user:alice"));
        assert!(!actor_matches(None, "user"));
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field(r#"{"k":"v"}"#), r#""{""k"":""v""}""#);
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn long_cells_are_shortened_with_an_ellipsis() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdef", 5), "abcd…");
    }
}
