//! Group commit in the application: the events of concurrent commands of different callers
//! appended by one statement, so they share one transaction and one flush of the WAL.
//!
//! Each command's append is a request on a queue. A few committer tasks take every request
//! waiting when they come for work (up to [`MAX_REQUESTS`] requests or [`MAX_ROWS`] events)
//! and append them in one plain `INSERT` (rows in key order, so concurrent batches take their
//! key locks in the same order and never deadlock). If any row conflicts, that statement stores
//! nothing, and the batch goes again through `chronicle_append_batch` (migration
//! `20261206000084`), which stores each command's events all or none:
//!
//! - a command whose first event's `(aggregate_type, aggregate_id, sequence)` exists already
//!   lost to a concurrent writer: it is answered with the optimistic-lock conflict, alone (the
//!   dispatcher reloads and retries it), and the others are stored;
//! - a command of which some events would be stored and others not aborts the statement
//!   (SQLSTATE `CH001`); the batch is sent again without it, and it is answered with the
//!   conflict;
//! - any other refusal of a batch by the database (a trigger's refusal: nothing was stored)
//!   sends each of its commands again alone, so each command is refused for its own reason
//!   only; a lost connection is reported to every command of the batch as a connection error,
//!   never sent again (the batch may have committed before the answer was lost).
//!
//! Two commands on the same stream never share a batch (the second would be a conflict anyway,
//! and a stored row must belong to exactly one command): the later one goes in the next batch.
//! When nothing else is waiting, a batch is one command: no command waits for company.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cqrs_es::persist::{PersistenceError, SerializedEvent};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// At most this many commands in one batch.
pub const MAX_REQUESTS: usize = 64;

/// At most this many events in one batch (a batch is never split below one command).
pub const MAX_ROWS: usize = 1024;

/// Committer tasks per dispatcher: while one batch is being flushed, the next one forms.
pub const COMMITTERS: usize = 3;

/// SQLSTATE of `chronicle_append_batch` when a command would be stored only in part.
const PARTIAL: &str = "CH001";

/// SQLSTATE of a unique violation (the primary key: a concurrent writer).
const UNIQUE_VIOLATION: &str = "23505";

/// What a stored event's row says of its place in the log: `(tx_id as text, global_position)`.
pub type Position = (String, i64);

/// What a request is answered: its events' places in the log, or why none were stored.
type Answer = Result<Vec<Position>, PersistenceError>;

/// A request's reply channel with its answer.
type Answered = (oneshot::Sender<Answer>, Answer);

/// One command's events, and where to answer.
struct Request {
    aggregate_type: String,
    events: Vec<SerializedEvent>,
    reply: oneshot::Sender<Answer>,
}

impl Request {
    fn stream(&self) -> (&str, &str) {
        let id = self.events.first().map_or("", |e| e.aggregate_id.as_str());
        (self.aggregate_type.as_str(), id)
    }
}

/// Stops the committer tasks when the last handle is dropped.
struct Tasks(Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The queue of appends and its committer tasks (started on the first append, in the runtime
/// that makes it). Cheap to clone.
#[derive(Clone)]
pub struct GroupCommitter {
    pool: PgPool,
    sender: mpsc::UnboundedSender<Request>,
    receiver: Arc<Mutex<Option<mpsc::UnboundedReceiver<Request>>>>,
    started: Arc<AtomicBool>,
    tasks: Arc<Mutex<Option<Tasks>>>,
}

impl std::fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitter").finish_non_exhaustive()
    }
}

impl GroupCommitter {
    /// A committer appending to the `events` table of `pool`'s database.
    pub fn new(pool: PgPool) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            pool,
            sender,
            receiver: Arc::new(Mutex::new(Some(receiver))),
            started: Arc::default(),
            tasks: Arc::default(),
        }
    }

    /// Appends one command's events (all of one stream, in sequence order) and returns their
    /// places in the log in position order; [`PersistenceError::OptimisticLockError`] when a
    /// concurrent writer stored the stream's next event first.
    pub async fn append(
        &self,
        aggregate_type: &str,
        events: Vec<SerializedEvent>,
    ) -> Result<Vec<Position>, PersistenceError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.start();
        let (reply, answer) = oneshot::channel();
        let request = Request {
            aggregate_type: aggregate_type.to_owned(),
            events,
            reply,
        };
        if let Err(mpsc::error::SendError(request)) = self.sender.send(request) {
            // The committer tasks are gone (their runtime shut down): append in this task.
            let mut answers = run_batch(&self.pool, vec![request]).await;
            return answers.pop().map_or(Ok(Vec::new()), |(_, result)| result);
        }
        answer.await.map_err(|_| {
            PersistenceError::UnknownError(
                "the committer stopped before answering (is the runtime shutting down?)".into(),
            )
        })?
    }

    fn start(&self) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(receiver) = self.receiver.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let handles = (0..COMMITTERS)
            .map(|_| tokio::spawn(commit_loop(self.pool.clone(), receiver.clone())).abort_handle())
            .collect();
        if let Ok(mut tasks) = self.tasks.lock() {
            *tasks = Some(Tasks(handles));
        }
    }
}

/// A batch being formed: at most one request per stream; the others wait for the next batch.
#[derive(Default)]
struct Forming {
    batch: Vec<Request>,
    rows: usize,
    streams: HashSet<(String, String)>,
    later: Vec<Request>,
}

impl Forming {
    fn take(&mut self, request: Request) {
        let (kind, id) = request.stream();
        if self.streams.insert((kind.to_owned(), id.to_owned())) {
            self.rows += request.events.len();
            self.batch.push(request);
        } else {
            self.later.push(request);
        }
    }
}

/// One committer: takes what is waiting, appends it, answers, and comes back for more.
async fn commit_loop(pool: PgPool, receiver: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Request>>>) {
    let mut held_back: Vec<Request> = Vec::new();
    loop {
        let mut forming = Forming::default();
        for request in held_back.drain(..) {
            forming.take(request);
        }
        // With requests held back, never wait for the queue: another committer may be holding
        // it while it waits for new requests, which may never come.
        let queue = if forming.batch.is_empty() {
            Some(receiver.lock().await)
        } else {
            receiver.try_lock().ok()
        };
        if let Some(mut queue) = queue {
            if forming.batch.is_empty() {
                match queue.recv().await {
                    Some(request) => forming.take(request),
                    None => return,
                }
            }
            while forming.batch.len() < MAX_REQUESTS && forming.rows < MAX_ROWS {
                match queue.try_recv() {
                    Ok(request) => forming.take(request),
                    Err(_) => break,
                }
            }
        }
        let Forming { batch, later, .. } = forming;
        held_back = later;
        if batch.is_empty() {
            continue;
        }
        for (reply, result) in run_batch(&pool, batch).await {
            // The caller may have given up (its future was dropped): nothing to tell.
            let _ = reply.send(result);
        }
    }
}

/// Appends a batch and returns each request's answer.
async fn run_batch(pool: &PgPool, mut batch: Vec<Request>) -> Vec<Answered> {
    let mut answers = Vec::with_capacity(batch.len());
    // Most batches meet no conflict: one plain INSERT. Only when one of them conflicts is the
    // batch sent through the slower statement that sorts conflicts out.
    match insert_all(pool, &batch).await {
        Ok(stored) => return answer_each(batch, stored, answers),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNIQUE_VIOLATION) && batch.len() > 1 => {}
        Err(error @ sqlx::Error::Database(_)) => return refused(pool, error, batch, answers).await,
        Err(error) => return lost(error, batch, answers),
    }
    loop {
        if batch.is_empty() {
            return answers;
        }
        match append_resolving_conflicts(pool, &batch).await {
            Ok(stored) => return answer_each(batch, stored, answers),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(PARTIAL) => {
                let partial: HashSet<usize> = e
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|pg| pg.detail())
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|n| n.trim().parse().ok())
                    .collect();
                if partial.is_empty() {
                    // Cannot tell which: every command alone.
                    return alone(pool, batch, answers).await;
                }
                let mut rest = Vec::with_capacity(batch.len());
                for (index, request) in batch.into_iter().enumerate() {
                    if partial.contains(&index) {
                        answers.push((request.reply, Err(PersistenceError::OptimisticLockError)));
                    } else {
                        rest.push(request);
                    }
                }
                batch = rest;
            }
            // The database refused the statement, so nothing of it was stored: each command
            // again alone, to be refused for its own reason only.
            Err(error @ sqlx::Error::Database(_)) => return refused(pool, error, batch, answers).await,
            // The connection failed: the batch may have committed before the answer was lost.
            // Sending it again would find its own rows and call them a conflict (and the
            // command would run again), so every command is told of the failure instead.
            Err(error) => return lost(error, batch, answers),
        }
    }
}

/// Answers each request of a stored batch from the rows stored for it.
fn answer_each(
    batch: Vec<Request>,
    mut stored: HashMap<usize, Vec<Position>>,
    mut answers: Vec<Answered>,
) -> Vec<Answered> {
    for (index, request) in batch.into_iter().enumerate() {
        let result = own_positions(&request, stored.remove(&index));
        answers.push((request.reply, result));
    }
    answers
}

/// The database refused a batch's statement: one command is answered with the refusal, several
/// go again one by one.
async fn refused(
    pool: &PgPool,
    error: sqlx::Error,
    mut batch: Vec<Request>,
    mut answers: Vec<Answered>,
) -> Vec<Answered> {
    if batch.len() == 1 {
        let request = batch.remove(0);
        answers.push((request.reply, Err(persistence_error(error))));
        return answers;
    }
    alone(pool, batch, answers).await
}

/// The batch's connection failed: it may have committed before the answer was lost. Sending
/// it again would find its own rows and call them a conflict (and the command would run
/// again), so every command is told of the failure instead.
fn lost(error: sqlx::Error, batch: Vec<Request>, mut answers: Vec<Answered>) -> Vec<Answered> {
    let message = error.to_string();
    for request in batch {
        let error = sqlx::Error::Protocol(format!("the append's outcome is unknown: {message}"));
        answers.push((request.reply, Err(PersistenceError::ConnectionError(Box::new(error)))));
    }
    answers
}

/// Appends each request of a failed batch on its own, so each is answered for itself.
async fn alone(pool: &PgPool, batch: Vec<Request>, mut answers: Vec<Answered>) -> Vec<Answered> {
    for request in batch {
        let result = match insert_all(pool, std::slice::from_ref(&request)).await {
            Ok(mut stored) => own_positions(&request, stored.remove(&0)),
            Err(error) => Err(persistence_error(error)),
        };
        answers.push((request.reply, result));
    }
    answers
}

/// A request's answer from the rows stored for it: all its events, in position order, or
/// none (a conflict: nothing of a command is stored unless all of it is).
fn own_positions(request: &Request, stored: Option<Vec<Position>>) -> Answer {
    match stored {
        Some(mut positions) if positions.len() == request.events.len() => {
            positions.sort_unstable_by_key(|(_, position)| *position);
            Ok(positions)
        }
        _ => Err(PersistenceError::OptimisticLockError),
    }
}

/// The arrays of a batch's rows, one per column, in key order per request.
struct Columns<'a> {
    requests: Vec<i32>,
    types: Vec<&'a str>,
    ids: Vec<&'a str>,
    sequences: Vec<i64>,
    event_types: Vec<&'a str>,
    versions: Vec<&'a str>,
    payloads: Vec<&'a serde_json::Value>,
    metadata: Vec<&'a serde_json::Value>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a [Request]) -> Self {
        let rows: usize = batch.iter().map(|r| r.events.len()).sum();
        let mut columns = Columns {
            requests: Vec::with_capacity(rows),
            types: Vec::with_capacity(rows),
            ids: Vec::with_capacity(rows),
            sequences: Vec::with_capacity(rows),
            event_types: Vec::with_capacity(rows),
            versions: Vec::with_capacity(rows),
            payloads: Vec::with_capacity(rows),
            metadata: Vec::with_capacity(rows),
        };
        for (index, request) in batch.iter().enumerate() {
            // At most MAX_REQUESTS requests: the index fits.
            let index = i32::try_from(index).unwrap_or(i32::MAX);
            for event in &request.events {
                columns.requests.push(index);
                columns.types.push(request.aggregate_type.as_str());
                columns.ids.push(event.aggregate_id.as_str());
                columns
                    .sequences
                    .push(i64::try_from(event.sequence).unwrap_or(i64::MAX));
                columns.event_types.push(event.event_type.as_str());
                columns.versions.push(event.event_version.as_str());
                columns.payloads.push(&event.payload);
                columns.metadata.push(&event.metadata);
            }
        }
        columns
    }
}

/// The fast path: every row of the batch in one plain `INSERT` (in key order, so concurrent
/// batches take their key locks in the same order). A conflict anywhere fails the whole
/// statement (unique violation) and stores nothing; the caller then resolves conflicts with
/// [`append_resolving_conflicts`]. The stored rows by request index.
async fn insert_all(pool: &PgPool, batch: &[Request]) -> Result<HashMap<usize, Vec<Position>>, sqlx::Error> {
    let columns = Columns::of(batch);
    let stored: Vec<(String, String, String, i64)> = sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload::json, metadata::json \
           FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) \
                AS t(aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
          ORDER BY aggregate_type, aggregate_id, sequence \
         RETURNING aggregate_type, aggregate_id, tx_id::text, global_position",
    )
    .bind(&columns.types)
    .bind(&columns.ids)
    .bind(&columns.sequences)
    .bind(&columns.event_types)
    .bind(&columns.versions)
    .bind(&columns.payloads)
    .bind(&columns.metadata)
    .fetch_all(pool)
    .await?;
    // One request per stream in a batch: the stream names the request.
    let index: HashMap<(&str, &str), usize> = batch
        .iter()
        .enumerate()
        .map(|(i, request)| (request.stream(), i))
        .collect();
    let mut by_request: HashMap<usize, Vec<Position>> = HashMap::new();
    for (aggregate_type, aggregate_id, tx_id, position) in stored {
        if let Some(i) = index.get(&(aggregate_type.as_str(), aggregate_id.as_str())) {
            by_request.entry(*i).or_default().push((tx_id, position));
        }
    }
    Ok(by_request)
}

/// One call of `chronicle_append_batch` (conflicting commands skipped, partial ones refused):
/// the stored rows by request index.
async fn append_resolving_conflicts(
    pool: &PgPool,
    batch: &[Request],
) -> Result<HashMap<usize, Vec<Position>>, sqlx::Error> {
    let columns = Columns::of(batch);
    let stored: Vec<(i32, i64, String, i64)> = sqlx::query_as(
        "SELECT request, sequence, tx_id, global_position \
           FROM chronicle_append_batch($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&columns.requests)
    .bind(&columns.types)
    .bind(&columns.ids)
    .bind(&columns.sequences)
    .bind(&columns.event_types)
    .bind(&columns.versions)
    .bind(&columns.payloads)
    .bind(&columns.metadata)
    .fetch_all(pool)
    .await?;
    let mut by_request: HashMap<usize, Vec<Position>> = HashMap::new();
    for (request, _sequence, tx_id, position) in stored {
        if let Ok(index) = usize::try_from(request) {
            by_request.entry(index).or_default().push((tx_id, position));
        }
    }
    Ok(by_request)
}

/// postgres-es's mapping: a unique violation is a concurrent append (optimistic lock).
pub(crate) fn persistence_error(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(db)
            if db.code().as_deref() == Some(UNIQUE_VIOLATION) || db.code().as_deref() == Some(PARTIAL) =>
        {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => PersistenceError::ConnectionError(Box::new(error)),
        _ => PersistenceError::UnknownError(Box::new(error)),
    }
}
