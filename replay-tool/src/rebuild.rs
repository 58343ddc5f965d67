//! `chronicle-replay rebuild [PROJECTOR ...]`: read models rebuilt from zero beside the live
//! ones while the API keeps serving, compared with them and swapped in one transaction
//! ([`chronicle_projections::rebuild`]).
//!
//! Prints, per table, the rows and checksum of the live table and of the rebuilt one (compared
//! at the same log cursor), then the events read and their rate. Exit codes: 0 when every
//! rebuilt table equals the live one; 1 when one differs (the live read model had drifted from
//! the log: with the swap, the rebuilt one is in place now; with `--compare-only`, the live one
//! is left as it was); 2 when it could not run.

use std::io::{self, Write};
use std::time::Instant;

use chronicle_domain::pii::MasterKey;
use chronicle_domain::tenant::TenantId;
use chronicle_projections::rebuild::{self, RebuildOptions, RebuildProgress, RebuildReport};
use chronicle_projections::runtime::Projector;
use clap::{Args, ValueEnum};
use sqlx::PgPool;

use crate::{CliError, DatabaseArgs, Outcome};

/// How `rebuild` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RebuildFormat {
    /// A table for people.
    Table,
    /// One JSON object (the whole report).
    Json,
}

/// `chronicle-replay rebuild`.
#[derive(Debug, Clone, Args)]
pub struct RebuildArgs {
    /// The projectors to rebuild, by name (every one when none is named; --list names them).
    #[arg(value_name = "PROJECTOR")]
    pub projectors: Vec<String>,

    /// Print every projector with its tables, and exit.
    #[arg(long)]
    pub list: bool,

    /// Build the new tables and compare them with the live ones, but leave the live ones in
    /// place (nothing is swapped).
    #[arg(long)]
    pub compare_only: bool,

    /// Events read from the log per batch (one transaction for every projector's rows of it).
    #[arg(long, value_name = "N", default_value_t = 5_000,
          value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub batch_size: i64,

    /// Output format.
    #[arg(long, value_enum, default_value_t = RebuildFormat::Table)]
    pub format: RebuildFormat,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Why `rebuild` cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RebuildCliError {
    #[error("no projector named {given:?}; the projectors are: {known}")]
    UnknownProjector { given: String, known: String },
    #[error(
        "rebuild needs the master key (read models show opened personal fields): set \
         CHRONICLE_MASTER_KEY (base64 of the 32-byte key the server runs with)"
    )]
    NoMasterKey,
    #[error("the master key is invalid: {0}")]
    BadMasterKey(String),
    #[error(
        "the master key does not open the contacts' keys: it is not the key this database's server \
         runs with (rebuilt read models would lose every personal field); nothing was changed"
    )]
    WrongMasterKey,
    #[error(transparent)]
    Rebuild(#[from] rebuild::RebuildError),
}

/// The projectors `args` names (every one when it names none), in the server's order.
pub fn chosen(
    all: Vec<std::sync::Arc<dyn Projector>>,
    names: &[String],
) -> Result<Vec<std::sync::Arc<dyn Projector>>, RebuildCliError> {
    if names.is_empty() {
        return Ok(all);
    }
    for name in names {
        if !all.iter().any(|p| p.name() == name) {
            return Err(RebuildCliError::UnknownProjector {
                given: name.clone(),
                known: all.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
            });
        }
    }
    Ok(all
        .into_iter()
        .filter(|p| names.iter().any(|n| n == p.name()))
        .collect())
}

/// `rebuild` against an open pool: runs it (with a progress bar on stderr when it is a
/// terminal) and prints the report.
pub async fn rebuild_command(pool: &PgPool, args: &RebuildArgs, out: &mut impl Write) -> Result<Outcome, CliError> {
    if args.list {
        // Names and tables only: any key builds the list.
        for projector in &chronicle_projections::projectors(&MasterKey::from_bytes([0; 32])) {
            writeln!(out, "{:<20} {}", projector.name(), projector.tables().join(", "))?;
        }
        out.flush()?;
        return Ok(Outcome::Ok);
    }
    let master = match crate::history::master_key(&args.database) {
        Ok(master) => master,
        Err(CliError::History(crate::history::HistoryError::BadMasterKey(reason))) => {
            return Err(RebuildCliError::BadMasterKey(reason).into())
        }
        Err(CliError::History(_)) => return Err(RebuildCliError::NoMasterKey.into()),
        Err(other) => return Err(other),
    };
    check_master_key(pool, &master).await?;
    let projectors = chosen(chronicle_projections::projectors(&master), &args.projectors)?;
    let options = RebuildOptions {
        batch_size: args.batch_size,
        swap: !args.compare_only,
    };
    let started = Instant::now();
    let mut bar = None;
    let mut on_progress = |step: RebuildProgress| match step {
        RebuildProgress::Started { total } => {
            bar = Some(crate::progress_bar("replaying", total));
        }
        RebuildProgress::Replayed { read } => {
            if let Some(bar) = &bar {
                bar.set_position(read);
            }
        }
        RebuildProgress::Swapping => {
            if let Some(bar) = &bar {
                bar.set_message("comparing and swapping");
            }
        }
    };
    let report = rebuild::rebuild(pool, &projectors, &options, &mut on_progress)
        .await
        .map_err(RebuildCliError::from)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "rebuild done");
    match args.format {
        RebuildFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &report).map_err(io::Error::from)?;
            writeln!(out)?;
        }
        RebuildFormat::Table => write_table(out, &report)?,
    }
    out.flush()?;
    Ok(if report.differing().is_empty() {
        Outcome::Ok
    } else {
        Outcome::Broken
    })
}

/// Refuses a master key that opens none of the contacts' keys (the first held one is tried):
/// with it, every personal field of the rebuilt read models would come out empty, as if every
/// contact had been erased.
pub async fn check_master_key(pool: &PgPool, master: &MasterKey) -> Result<(), CliError> {
    let row: Option<(String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT tenant_id, contact_id, wrapped_key FROM contact_keys ORDER BY tenant_id, contact_id LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let Some((tenant, contact, wrapped)) = row else {
        return Ok(());
    };
    let opens = TenantId::parse(&tenant).is_ok_and(|tenant| master.unwrap_key(&wrapped, &tenant, &contact).is_ok());
    if opens {
        Ok(())
    } else {
        Err(RebuildCliError::WrongMasterKey.into())
    }
}

/// The report for people: one line per table, then the totals.
pub fn write_table(out: &mut impl Write, report: &RebuildReport) -> io::Result<()> {
    writeln!(
        out,
        "{:<20} {:<32} {:>10} {:>10}  {:<12} {:<12}  result",
        "projector", "table", "live rows", "rebuilt", "live sum", "rebuilt sum"
    )?;
    for t in &report.tables {
        let result = if !t.compared {
            format!(
                "not compared (the live projector was {} event(s) behind)",
                t.live_behind_by
            )
        } else if t.equal() {
            "equal".to_owned()
        } else {
            "DIFFERS".to_owned()
        };
        writeln!(
            out,
            "{:<20} {:<32} {:>10} {:>10}  {:<12} {:<12}  {result}",
            t.projector,
            t.table,
            t.live_rows,
            t.rebuilt_rows,
            &t.live_checksum[..t.live_checksum.len().min(12)],
            &t.rebuilt_checksum[..t.rebuilt_checksum.len().min(12)],
        )?;
    }
    writeln!(out)?;
    writeln!(out, "{:<20} {:>10} {:>10}", "projector", "events", "seconds")?;
    for p in &report.projectors {
        writeln!(
            out,
            "{:<20} {:>10} {:>10.2}",
            p.projector, p.events_applied, p.apply_seconds
        )?;
    }
    writeln!(
        out,
        "{:<20} {:>10} {:>10.2}",
        "(reading the log)", report.events_read, report.read_seconds
    )?;
    let differing = report.differing().len();
    writeln!(
        out,
        "{} projector(s), {} table(s), {} event(s) read once in {:.1} s ({:.0} events/s), at cursor {}",
        report.projectors.len(),
        report.tables.len(),
        report.events_read,
        report.seconds,
        report.events_per_second(),
        report.cursor
    )?;
    let what = if report.swapped {
        "swapped in: the rebuilt tables now serve"
    } else {
        "compared only: the live tables were left in place"
    };
    match differing {
        0 => writeln!(out, "{what}; every table equals the live one")?,
        n => writeln!(
            out,
            "{what}; {n} table(s) DIFFER from the live ones (the live read model had drifted from the log)"
        )?,
    }
    Ok(())
}
