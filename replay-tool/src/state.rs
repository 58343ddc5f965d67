//! `chronicle-replay state`: any aggregate's state as of a cursor or a time, folded from the
//! log with the domain's own `apply` (the same code the write side folds with), as JSON.
//!
//! The write side may start from a snapshot; this never does: it folds every event of the
//! stream up to the point asked for, so it also shows what a snapshot should have held.

use chronicle_projections::log::{self, AsOf, Cursor, StoredEvent};
use chrono::{DateTime, Utc};
use clap::Args;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, EventEnvelope};
use serde::Serialize;
use sqlx::PgPool;
use std::io::Write;

use crate::history::{parse_cursor, parse_time};
use crate::{CliError, DatabaseArgs};

/// `chronicle-replay state`.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// The stream: `<tenant>:<id>`, as in the log's `aggregate_id` (and in `history`).
    #[arg(value_name = "STREAM")]
    pub stream: String,

    /// The aggregate type (Conversation, Wallet, Order, ...). Found from the log when only one
    /// type has a stream with this id.
    #[arg(long = "type", value_name = "TYPE")]
    pub aggregate_type: Option<String>,

    /// The state as of this log cursor (c1.…, as the API, subscriptions and `history` show
    /// them): the events at or before it in the log's order.
    #[arg(long, value_name = "CURSOR", value_parser = parse_cursor, conflicts_with = "at")]
    pub cursor: Option<Cursor>,

    /// The state as of this time (RFC 3339, e.g. 2026-12-01T12:00:00Z): the events recorded at
    /// or before it.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<DateTime<Utc>>,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Up to where the state was folded, as printed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AsOfReport {
    /// Every committed event.
    Now,
    /// A log cursor.
    Cursor(String),
    /// A time.
    Time(DateTime<Utc>),
}

/// What `state` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StateReport {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub as_of: AsOfReport,
    /// Events folded.
    pub events: u64,
    /// The sequence of the last event folded (0 when none).
    pub sequence: i64,
    /// The cursor and time of the last event folded.
    pub last_cursor: Option<String>,
    pub last_recorded_at: Option<DateTime<Utc>>,
    /// The aggregate, serialized as the write side serializes it (snapshots).
    pub state: serde_json::Value,
}

/// Why a stream could not be folded.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no aggregate has the type {0:?} (known: {known})", known = chronicle_domain::aggregates::AGGREGATE_TYPES.join(", "))]
    UnknownType(String),
    #[error("the log has no stream {0:?}")]
    NoStream(String),
    #[error("several aggregate types have a stream {stream:?} ({types}): pass --type")]
    AmbiguousStream { stream: String, types: String },
    #[error("{aggregate_type} {stream} sequence {sequence} ({event_type}) cannot be read as a {aggregate_type} event: {reason}")]
    Undecodable {
        aggregate_type: String,
        stream: String,
        sequence: i64,
        event_type: String,
        reason: String,
    },
    #[error("the aggregate cannot be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Folds `events` (one stream's, in sequence order) into the aggregate `aggregate_type` names,
/// serialized as JSON.
pub fn fold(aggregate_type: &str, events: &[StoredEvent]) -> Result<serde_json::Value, StateError> {
    chronicle_domain::for_aggregate_type!(
        aggregate_type,
        A => fold_as::<A>(events),
        else Err(StateError::UnknownType(aggregate_type.to_owned()))
    )
}

fn fold_as<A: Aggregate>(events: &[StoredEvent]) -> Result<serde_json::Value, StateError> {
    let mut aggregate = A::default();
    for event in events {
        let serialized = SerializedEvent::new(
            event.aggregate_id.clone(),
            usize::try_from(event.sequence).unwrap_or_default(),
            event.aggregate_type.clone(),
            event.event_type.clone(),
            event.event_version.clone(),
            event.payload.clone(),
            event.metadata.clone(),
        );
        let envelope: EventEnvelope<A> =
            serialized
                .try_into()
                .map_err(|error: cqrs_es::persist::PersistenceError| StateError::Undecodable {
                    aggregate_type: event.aggregate_type.clone(),
                    stream: event.aggregate_id.clone(),
                    sequence: event.sequence,
                    event_type: event.event_type.clone(),
                    reason: error.to_string(),
                })?;
        aggregate.apply(envelope.payload);
    }
    Ok(serde_json::to_value(&aggregate)?)
}

/// The state of `args.stream` as `args` asks.
pub async fn state(pool: &PgPool, args: &StateArgs) -> Result<StateReport, CliError> {
    let stream = args.stream.trim();
    let aggregate_type = match &args.aggregate_type {
        Some(given) => {
            if !chronicle_domain::aggregates::AGGREGATE_TYPES.contains(&given.as_str()) {
                return Err(StateError::UnknownType(given.clone()).into());
            }
            given.clone()
        }
        None => {
            let types = log::stream_types(pool, stream).await?;
            match types.as_slice() {
                [] => return Err(StateError::NoStream(stream.to_owned()).into()),
                [one] => one.clone(),
                several => {
                    return Err(StateError::AmbiguousStream {
                        stream: stream.to_owned(),
                        types: several.join(", "),
                    }
                    .into())
                }
            }
        }
    };
    let (as_of, report_as_of) = match (args.cursor, args.at) {
        (Some(cursor), _) => (AsOf::Cursor(cursor), AsOfReport::Cursor(cursor.to_string())),
        (None, Some(time)) => (AsOf::Time(time), AsOfReport::Time(time)),
        (None, None) => (AsOf::Now, AsOfReport::Now),
    };
    let events = match as_of {
        // The stream's prefix recorded by then: `recorded_at` is not covered by the hash chain
        // and a clock may step back, so the fold stops at the first event recorded later
        // rather than skipping it and folding what follows.
        AsOf::Time(time) => log::stream_events(pool, &aggregate_type, stream, AsOf::Now)
            .await?
            .into_iter()
            .take_while(|e| e.recorded_at <= time)
            .collect(),
        other => log::stream_events(pool, &aggregate_type, stream, other).await?,
    };
    if events.is_empty()
        && log::stream_events(pool, &aggregate_type, stream, AsOf::Now)
            .await?
            .is_empty()
    {
        return Err(StateError::NoStream(format!("{aggregate_type} {stream}")).into());
    }
    let state = fold(&aggregate_type, &events)?;
    let last = events.last();
    Ok(StateReport {
        aggregate_type,
        aggregate_id: stream.to_owned(),
        as_of: report_as_of,
        events: events.len() as u64,
        sequence: last.map_or(0, |e| e.sequence),
        last_cursor: last.map(|e| e.cursor.to_string()),
        last_recorded_at: last.map(|e| e.recorded_at),
        state,
    })
}

/// `state` against an open pool: prints the report as JSON.
pub async fn state_command(pool: &PgPool, args: &StateArgs, out: &mut impl Write) -> Result<(), CliError> {
    let report = state(pool, args).await?;
    serde_json::to_writer_pretty(&mut *out, &report).map_err(std::io::Error::from)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
