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
//! The envelope is bound to its tenant and contact; the contact is found from the event (the
//! stream's own id for contacts and conversations, any `contact_id` or `customer_id` in the
//! payload) or from the
//! stream's other events (an order's cancellation reason is sealed for the customer its
//! placement named).

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Write};

use chronicle_domain::pii::{DataKey, Envelope, MasterKey};
use chronicle_domain::tenant::TenantId;
use chronicle_projections::log::{self, AsOf, Cursor, LogFilter, StoredEvent};
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

/// The contacts' keys, looked up once each.
struct Keys<'p> {
    pool: &'p PgPool,
    tenant: TenantId,
    master: Option<MasterKey>,
    /// contact id -> the key (`None`: no key row, i.e. erased; `Some(None)`: a row that does
    /// not unwrap under this master key, or not asked to unwrap).
    cache: HashMap<String, Option<Option<DataKey>>>,
    /// stream -> contact ids named by its events so far (read from its first event, or read
    /// whole from the database when first met part way).
    stream_contacts: HashMap<(String, String), BTreeSet<String>>,
    /// Open only this contact's fields (an export about one person): another contact's
    /// envelope in the same stream shows as [`OTHER_CONTACT`].
    only_contact: Option<String>,
}

impl Keys<'_> {
    async fn key(&mut self, contact_id: &str) -> Result<Option<Option<DataKey>>, sqlx::Error> {
        if let Some(found) = self.cache.get(contact_id) {
            return Ok(found.clone());
        }
        let wrapped = log::wrapped_contact_key(self.pool, self.tenant.as_str(), contact_id).await?;
        let key = wrapped.map(|w| {
            self.master
                .as_ref()
                .and_then(|m| m.unwrap_key(&w, &self.tenant, contact_id).ok())
        });
        self.cache.insert(contact_id.to_owned(), key.clone());
        Ok(key)
    }

    /// Notes the contacts `event` names, for streams read from their first event: a history
    /// read from the start of the log then never asks the database for a stream's events again.
    /// Called for every event read, before any filter, so no event of such a stream is missed.
    fn observe(&mut self, event: &StoredEvent) {
        let stream = (event.aggregate_type.clone(), event.aggregate_id.clone());
        match self.stream_contacts.get_mut(&stream) {
            Some(known) => contact_ids(&event.payload, known),
            None if event.sequence == 1 => {
                let mut known = BTreeSet::new();
                contact_ids(&event.payload, &mut known);
                self.stream_contacts.insert(stream, known);
            }
            // First seen part way (a history starting after a cursor): `candidates` reads the
            // stream when one of its envelopes needs a key.
            None => {}
        }
    }

    /// The contacts an envelope of `event` may be sealed for.
    async fn candidates(&mut self, event: &StoredEvent) -> Result<Vec<String>, sqlx::Error> {
        let mut found = BTreeSet::new();
        if matches!(event.aggregate_type.as_str(), "Contact" | "Conversation") {
            if let Some((_, local)) = event.aggregate_id.split_once(':') {
                found.insert(local.to_owned());
            }
        }
        contact_ids(&event.payload, &mut found);
        let stream = (event.aggregate_type.clone(), event.aggregate_id.clone());
        if !self.stream_contacts.contains_key(&stream) {
            let mut of_stream = BTreeSet::new();
            for other in log::stream_events(self.pool, &stream.0, &stream.1, AsOf::Now).await? {
                contact_ids(&other.payload, &mut of_stream);
            }
            self.stream_contacts.insert(stream.clone(), of_stream);
        }
        if let Some(of_stream) = self.stream_contacts.get(&stream) {
            found.extend(of_stream.iter().cloned());
        }
        Ok(found.into_iter().collect())
    }

    /// `payload` with every envelope replaced (see the module docs).
    async fn redact(&mut self, event: &StoredEvent, reveal: bool) -> Result<Value, sqlx::Error> {
        let mut payload = event.payload.clone();
        if !has_envelope(&payload) {
            return Ok(payload);
        }
        if let Some(only) = self.only_contact.clone() {
            let key = self.key(&only).await?;
            replace_envelopes(&mut payload, &mut |envelope: &Envelope| match &key {
                None => ERASED.to_owned(),
                Some(Some(key)) if reveal => match key.open(&self.tenant, &only, envelope) {
                    Ok(plain) => plain,
                    Err(_) => OTHER_CONTACT.to_owned(),
                },
                Some(_) => PERSONAL.to_owned(),
            });
            return Ok(payload);
        }
        let candidates = self.candidates(event).await?;
        let mut keys = Vec::with_capacity(candidates.len());
        for contact in &candidates {
            keys.push((contact.clone(), self.key(contact).await?));
        }
        let any_erased = keys.iter().any(|(_, key)| key.is_none());
        let any_key = keys.iter().any(|(_, key)| key.is_some());
        replace_envelopes(&mut payload, &mut |envelope: &Envelope| {
            if !any_key {
                return ERASED.to_owned();
            }
            if !reveal {
                return PERSONAL.to_owned();
            }
            for (contact, key) in &keys {
                if let Some(Some(key)) = key {
                    if let Ok(plain) = key.open(&self.tenant, contact, envelope) {
                        return plain;
                    }
                }
            }
            // Not opened by any key that is left: sealed for an erased contact if there is
            // one, else for a key this master key cannot unwrap.
            if any_erased {
                ERASED.to_owned()
            } else {
                UNREADABLE.to_owned()
            }
        });
        Ok(payload)
    }
}

/// Every string under a key named `contact_id` or `customer_id` (any depth).
fn contact_ids(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("contact_id" | "customer_id", Value::String(id)) if !id.is_empty() => {
                        found.insert(id.clone());
                    }
                    _ => contact_ids(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| contact_ids(item, found)),
        _ => {}
    }
}

/// An envelope as it stands in a payload: an object of exactly `enc`, `n` and `c`.
fn as_envelope(value: &Value) -> Option<Envelope> {
    let map = value.as_object()?;
    if map.len() == 3 && map.contains_key("enc") && map.contains_key("n") && map.contains_key("c") {
        serde_json::from_value(value.clone()).ok()
    } else {
        None
    }
}

fn has_envelope(value: &Value) -> bool {
    if as_envelope(value).is_some() {
        return true;
    }
    match value {
        Value::Object(map) => map.values().any(has_envelope),
        Value::Array(items) => items.iter().any(has_envelope),
        _ => false,
    }
}

fn replace_envelopes(value: &mut Value, open: &mut impl FnMut(&Envelope) -> String) {
    if let Some(envelope) = as_envelope(value) {
        *value = Value::String(open(&envelope));
        return;
    }
    match value {
        Value::Object(map) => map.values_mut().for_each(|inner| replace_envelopes(inner, open)),
        Value::Array(items) => items.iter_mut().for_each(|inner| replace_envelopes(inner, open)),
        _ => {}
    }
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
    let mut keys = Keys {
        pool,
        tenant: tenant.clone(),
        master,
        cache: HashMap::new(),
        stream_contacts: HashMap::new(),
        only_contact: only_contact.map(str::to_owned),
    };

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
            let payload = keys.redact(&event, args.reveal).await?;
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
    fn envelopes_are_found_and_replaced_at_any_depth_and_nothing_else_is() {
        let envelope = serde_json::json!({"enc": "aes256gcm.v1", "n": "bm9uY2U", "c": "Y2lwaGVy"});
        let mut payload = serde_json::json!({
            "name": envelope,
            "items": [{"note": envelope, "sku": "P-1"}],
            "look_alike": {"enc": "x", "n": "y", "c": "z", "extra": 1},
            "contact_id": "ct_1",
        });
        assert!(has_envelope(&payload));
        replace_envelopes(&mut payload, &mut |_| PERSONAL.to_owned());
        assert_eq!(payload["name"], PERSONAL);
        assert_eq!(payload["items"][0]["note"], PERSONAL);
        assert_eq!(payload["items"][0]["sku"], "P-1");
        assert_eq!(payload["look_alike"]["extra"], 1);
        assert!(!has_envelope(&payload));
        let mut ids = BTreeSet::new();
        contact_ids(&payload, &mut ids);
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec!["ct_1".to_owned()]);
    }

    #[test]
    fn long_cells_are_shortened_with_an_ellipsis() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdef", 5), "abcd…");
    }
}
