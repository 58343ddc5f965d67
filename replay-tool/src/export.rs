//! `chronicle-replay export`: what Chronicle holds about a tenant, or about one contact (a
//! data-subject access request), as one JSON document.
//!
//! The document holds:
//!
//! - `events`: the events (as [`crate::history`] prints them, personal fields opened) of the
//!   tenant, or of the contact's streams: its contact and conversation streams and every stream
//!   with an event naming it (`contact_id`, `customer_id`, `recipient` or `recipients` anywhere
//!   in the payload: leads, calls, orders, installations, warranties, service requests,
//!   campaigns...). Only the contact's own personal fields are opened: another contact's field
//!   in the same stream shows as `[other contact]`;
//! - `read_models`: the rows of every table of the tenant (for a contact: every table with a
//!   `contact_id`, `conversation_id`, `customer_id` or `recipient` column holding the contact's
//!   id), found from
//!   the database's own catalogue, so a new read model is exported without a change here. Media
//!   references (`media_files`) are rows like any other. Left out: the contacts' data keys
//!   (`contact_keys`), binary columns (media bytes, wrapped keys) and columns whose name says
//!   they hold a secret (`*secret*`, `*wrapped*`, `*_hash`, `*_token`).
//!
//! After an erasure the contact's personal fields are `[erased]` in the events and its rows are
//! gone from the read models: the export then holds nothing personal about them.

use std::collections::BTreeMap;
use std::io::{self, Write};

use chronicle_domain::pii::MasterKey;
use chronicle_domain::tenant::TenantId;
use chronicle_projections::log::{self, LogFilter};
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgPool, Row};

use crate::history::{self, Format, HistoryArgs, HistoryError, HistoryRow};
use crate::{CliError, DatabaseArgs};

/// `chronicle-replay export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The tenant to export.
    #[arg(long, value_name = "TENANT")]
    pub tenant: String,

    /// Export only what is held about this contact (its id, `ct_…`, as the API shows it).
    #[arg(long, value_name = "CONTACT_ID")]
    pub contact: Option<String>,

    /// Write the document to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// The export document.
#[derive(Debug, Clone, Serialize)]
pub struct Export {
    pub tenant: String,
    pub contact: Option<String>,
    pub exported_at: DateTime<Utc>,
    /// The log cursor the events reach (the tenant's last readable event then).
    pub cursor: Option<String>,
    pub events: Vec<HistoryRow>,
    /// Table name -> rows (each a JSON object of its columns), tables in name order.
    pub read_models: BTreeMap<String, Vec<Value>>,
}

/// Columns that key a row to a contact.
const CONTACT_COLUMNS: [&str; 4] = ["contact_id", "conversation_id", "customer_id", "recipient"];

/// Whether a column is left out of an export: binary, or named as holding a secret.
fn secret_column(name: &str, data_type: &str) -> bool {
    data_type == "bytea"
        || name.contains("secret")
        || name.contains("wrapped")
        || name == "token"
        || name.ends_with("_token")
        || name.ends_with("_hash")
        || name == "hash"
}

/// What a sealed field of a read-model row (a worker's copy of an event's envelope, such as the
/// outbox's recipient and body) reads as in an export: its content is in the export's events,
/// opened there.
pub const SEALED_IN_ROW: &str = "[sealed: opened in the events]";

/// Replaces every sealed envelope (`{enc, n, c}`) inside a row by
/// [`SEALED_IN_ROW`]: an export holds personal data opened, never ciphertext.
fn mark_envelopes(value: &mut Value) {
    match value {
        Value::Object(map) if map.contains_key("enc") && map.contains_key("c") => {
            *value = Value::String(SEALED_IN_ROW.into());
        }
        Value::Object(map) => map.values_mut().for_each(mark_envelopes),
        Value::Array(items) => items.iter_mut().for_each(mark_envelopes),
        _ => {}
    }
}

/// Builds the export `args` asks for, opening personal fields with `master`.
pub async fn export(pool: &PgPool, args: &ExportArgs, master: MasterKey) -> Result<Export, CliError> {
    let tenant = TenantId::parse(args.tenant.trim()).map_err(|e| HistoryError::Tenant(e.to_string()))?;
    let contact = args.contact.as_deref().map(str::trim).filter(|c| !c.is_empty());
    let cursor = log::head(pool, &LogFilter::tenant(tenant.as_str())).await?;

    // The events: the tenant's, or those of the contact's streams.
    let streams = match contact {
        None => Vec::new(),
        Some(contact) => contact_streams(pool, &tenant, contact).await?,
    };
    let mut events = Vec::new();
    if contact.is_none() || !streams.is_empty() {
        let history_args = HistoryArgs {
            streams,
            through: cursor,
            reveal: true,
            format: Format::Json,
            ..HistoryArgs::of_tenant(tenant.as_str(), args.database.clone())
        };
        history::history_of(pool, &history_args, Some(master), contact, |row| {
            events.push(row);
            Ok(())
        })
        .await?;
    }

    let read_models = read_models(pool, &tenant, contact).await?;
    Ok(Export {
        tenant: tenant.to_string(),
        contact: contact.map(str::to_owned),
        exported_at: Utc::now(),
        cursor: cursor.map(|c| c.to_string()),
        events,
        read_models,
    })
}

/// The contact's streams: its own (contact, conversation) and every stream with an event that
/// names it.
async fn contact_streams(pool: &PgPool, tenant: &TenantId, contact: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT aggregate_id FROM events \
          WHERE tenant_id = $1 \
            AND (aggregate_id = $2 \
                 OR jsonb_path_exists(payload::jsonb, \
                        '$.** ? (@.contact_id == $c || @.customer_id == $c || @.recipient == $c \
                                 || @.recipients[*] == $c)', \
                        jsonb_build_object('c', $3::text))) \
          ORDER BY aggregate_id",
    )
    .bind(tenant.as_str())
    .bind(tenant.stream_id(contact))
    .bind(contact)
    .fetch_all(pool)
    .await
}

/// The rows of every table of the tenant (of the contact, when given).
async fn read_models(
    pool: &PgPool,
    tenant: &TenantId,
    contact: Option<&str>,
) -> Result<BTreeMap<String, Vec<Value>>, sqlx::Error> {
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text \
           FROM information_schema.columns c \
           JOIN information_schema.tables t USING (table_schema, table_name) \
          WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
            AND c.table_name NOT IN ('events', 'contact_keys', '_sqlx_migrations') \
          ORDER BY c.table_name, c.ordinal_position",
    )
    .fetch_all(pool)
    .await?;
    let mut tables: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (table, column, data_type) in columns {
        tables.entry(table).or_default().push((column, data_type));
    }

    let mut found = BTreeMap::new();
    // Read models are behind row-level security keyed on the caller's tenant: read as it.
    let mut tx = chronicle_projections::begin_for_tenant(pool, tenant).await?;
    let bar = crate::progress_bar_of(
        "reading read models",
        u64::try_from(tables.len()).unwrap_or(0),
        "tables",
    );
    for (table, columns) in tables {
        bar.inc(1);
        if !columns.iter().any(|(c, _)| c == "tenant_id") {
            continue;
        }
        // A contact id is text; a column of another type with one of these names holds
        // something else (a recipient's details as JSON).
        let keys: Vec<&str> = columns
            .iter()
            .filter(|(c, t)| CONTACT_COLUMNS.contains(&c.as_str()) && t == "text")
            .map(|(c, _)| c.as_str())
            .collect();
        if contact.is_some() && keys.is_empty() {
            continue;
        }
        let kept: Vec<String> = columns
            .iter()
            .filter(|(c, t)| !secret_column(c, t))
            .map(|(c, _)| quote_ident(c))
            .collect();
        let mut sql = format!(
            "SELECT jsonb_build_object({}) AS row FROM {} WHERE tenant_id = $1",
            kept.iter()
                .map(|c| format!("'{}', {c}", c.trim_matches('"').replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", "),
            quote_ident(&table)
        );
        if contact.is_some() {
            let any: Vec<String> = keys.iter().map(|k| format!("{} = $2", quote_ident(k))).collect();
            sql.push_str(&format!(" AND ({})", any.join(" OR ")));
        }
        sql.push_str(" ORDER BY 1");
        // jsonb_build_object takes at most 100 arguments (50 columns): no table comes near.
        let rows = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(contact.unwrap_or_default())
            .fetch_all(&mut *tx)
            .await?;
        let mut values: Vec<Value> = rows
            .iter()
            .map(|row| row.try_get::<Value, _>("row"))
            .collect::<Result<_, _>>()?;
        values.iter_mut().for_each(mark_envelopes);
        if !values.is_empty() {
            found.insert(table, values);
        }
    }
    tx.rollback().await?;
    bar.finish_and_clear();
    Ok(found)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `export` against an open pool: writes the document (to `--out` or `out`).
pub async fn export_command(pool: &PgPool, args: &ExportArgs, out: &mut impl Write) -> Result<(), CliError> {
    let master = history::master_key(&args.database)?;
    let document = export(pool, args, master).await?;
    match &args.out {
        Some(path) => {
            // Plaintext personal data: readable by its owner only.
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let file = options.open(path)?;
            let mut file = io::BufWriter::new(file);
            serde_json::to_writer_pretty(&mut file, &document).map_err(io::Error::from)?;
            writeln!(file)?;
            file.flush()?;
        }
        None => {
            serde_json::to_writer_pretty(&mut *out, &document).map_err(io::Error::from)?;
            writeln!(out)?;
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_bytes_are_left_out() {
        assert!(secret_column("wrapped_key", "bytea"));
        assert!(secret_column("client_secret", "text"));
        assert!(secret_column("password_hash", "text"));
        assert!(secret_column("access_token", "text"));
        assert!(secret_column("bytes", "bytea"));
        assert!(!secret_column("name", "text"));
        assert!(!secret_column("contact_phone", "text"));
        assert!(!secret_column("tokens", "bigint"), "token amounts are not secrets");
    }
}
