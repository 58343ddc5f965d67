//! One aggregate type's store: load, decide, append, with an in-process cache of the
//! aggregates recently used, so a command on a stream this process used lately costs one
//! statement (its append) whatever the stream's length.
//!
//! The cache is only ever a guess of the stream's present state, and a wrong guess cannot
//! store anything:
//!
//! - a command decided on a stale state appends at a sequence another writer already used:
//!   the primary key refuses it (the optimistic-lock conflict), the entry is dropped, and the
//!   dispatcher's retry loads the stream afresh;
//! - a refusal or a no-op (a repeat) decided on a cached state is only answered after checking
//!   that the stream's head is still the cached one (one indexed lookup); if another writer
//!   moved it, the command is decided again on the stream loaded afresh.
//!
//! Snapshots (every `n` events, per aggregate type) are taken of the state after the command
//! that crosses the boundary, and stored with that command's events in postgres-es's
//! transaction; loading reads the snapshot and the events after it in one statement
//! ([`ChronicleEventRepository::get_snapshot`]). cqrs-es 0.5's own snapshot path applies the
//! command's events a second time to an aggregate its `handle` already applied them to (its
//! `EventSink` applies as it writes), which is why the write path is here and not in
//! `cqrs_es::CqrsFramework`.

use std::collections::HashMap;
use std::sync::Mutex;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope};

use crate::repository::ChronicleEventRepository;

/// Aggregates kept per aggregate type and generation by default (see [`AggregateCache`]).
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

/// A stream's state as this process last saw it.
struct State<A> {
    aggregate: A,
    /// The sequence of the stream's last event folded into `aggregate`.
    sequence: usize,
    /// The number of the stream's latest snapshot (postgres-es's `current_snapshot`).
    snapshot: Option<usize>,
}

/// The young and the old generation of [`AggregateCache`], by stream id.
type Generations<A> = (HashMap<String, State<A>>, HashMap<String, State<A>>);

/// Recently used aggregates, in two generations: entries go into the young one; when it is
/// full it becomes the old one (the previous old one is dropped). At most `2 × capacity`
/// entries; an entry used in the last `capacity` insertions is never dropped.
struct AggregateCache<A> {
    capacity: usize,
    generations: Mutex<Generations<A>>,
}

impl<A> AggregateCache<A> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            generations: Mutex::new((HashMap::new(), HashMap::new())),
        }
    }

    /// Takes a stream's entry out, so two commands of this process on one stream never decide
    /// on the same cached state (the second loads from the database).
    fn take(&self, stream: &str) -> Option<State<A>> {
        let mut generations = self.generations.lock().ok()?;
        let (young, old) = &mut *generations;
        young.remove(stream).or_else(|| old.remove(stream))
    }

    /// Keeps a stream's state, unless a later one of the same stream is kept already.
    fn put(&self, stream: &str, state: State<A>) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut generations) = self.generations.lock() else {
            return;
        };
        let (young, old) = &mut *generations;
        let newer_kept = young
            .get(stream)
            .or_else(|| old.get(stream))
            .is_some_and(|kept| kept.sequence > state.sequence);
        if newer_kept {
            return;
        }
        old.remove(stream);
        if young.len() >= self.capacity && !young.contains_key(stream) {
            *old = std::mem::take(young);
        }
        young.insert(stream.to_owned(), state);
    }
}

/// Whether appending `appending` events after sequence `sequence` crosses a snapshot boundary
/// (every `size` events).
fn snapshot_due(size: usize, sequence: usize, appending: usize) -> bool {
    let size = size.max(1);
    size - sequence % size <= appending
}

fn unexpected<E: std::error::Error + Send + Sync + 'static, T: std::error::Error>(error: E) -> AggregateError<T> {
    AggregateError::UnexpectedError(Box::new(error))
}

/// One aggregate type's store (see the module docs).
pub(crate) struct Store<A: Aggregate> {
    repo: ChronicleEventRepository,
    snapshot: Option<usize>,
    cache: AggregateCache<A>,
}

impl<A> Store<A>
where
    A: Aggregate<Services = ()> + Clone,
{
    /// A store over `repo`, snapshotting every `snapshot` events (never with `None`), keeping
    /// up to `2 × cache` aggregates in memory (none with 0).
    pub(crate) fn new(repo: ChronicleEventRepository, snapshot: Option<usize>, cache: usize) -> Self {
        Self {
            repo,
            snapshot,
            cache: AggregateCache::new(cache),
        }
    }

    /// The stream's present state, read from the database (never from the cache).
    pub(crate) async fn load_aggregate(&self, stream: &str) -> Result<A, AggregateError<A::Error>> {
        Ok(self.load(stream).await?.aggregate)
    }

    async fn load(&self, stream: &str) -> Result<State<A>, AggregateError<A::Error>> {
        let mut state = State {
            aggregate: A::default(),
            sequence: 0,
            snapshot: None,
        };
        let events: Vec<SerializedEvent> = match self.snapshot {
            None => self.repo.get_events::<A>(stream).await?,
            Some(_) => match self.repo.snapshot_and_events::<A>(stream).await? {
                (None, events) => events,
                (Some(snapshot), events) => {
                    state.snapshot = Some(snapshot.current_snapshot);
                    match serde_json::from_value::<A>(snapshot.aggregate) {
                        Ok(aggregate) => {
                            state.aggregate = aggregate;
                            state.sequence = snapshot.current_sequence;
                            events
                        }
                        // The aggregate's shape changed since the snapshot: fold every event
                        // (the next snapshot replaces it).
                        Err(_) => self.repo.get_events::<A>(stream).await?,
                    }
                }
            },
        };
        for event in events {
            let envelope: EventEnvelope<A> = event.try_into()?;
            state.sequence = envelope.sequence;
            state.aggregate.apply(envelope.payload);
        }
        Ok(state)
    }

    /// Decides `command` on the state and returns its events, applied to the state already
    /// (the domain's `handle` decides first and then writes, so a refusal leaves it as it was).
    async fn decide(state: &mut State<A>, command: A::Command) -> Result<Vec<A::Event>, A::Error> {
        let sink = EventSink::default();
        state.aggregate.handle(command, &(), &sink).await?;
        Ok(sink.collect().await)
    }

    /// Runs `command` on `stream` and appends what it decided, with `metadata` on every event.
    /// The positions appended are recorded by the repository in the calling task
    /// ([`crate::repository::collect_positions`]).
    pub(crate) async fn execute(
        &self,
        stream: &str,
        command: A::Command,
        metadata: &HashMap<String, String>,
    ) -> Result<(), AggregateError<A::Error>>
    where
        A::Command: Clone,
    {
        let (mut state, cached) = match self.cache.take(stream) {
            Some(state) => (state, true),
            None => (self.load(stream).await?, false),
        };
        let mut decided = Self::decide(&mut state, command.clone()).await;
        let appends = matches!(&decided, Ok(events) if !events.is_empty());
        if cached && !appends && self.repo.head::<A>(stream).await? != state.sequence {
            // A refusal or a no-op stands only on the stream's present state.
            state = self.load(stream).await?;
            decided = Self::decide(&mut state, command).await;
        }
        let events = decided.map_err(AggregateError::UserError)?;
        if events.is_empty() {
            self.cache.put(stream, state);
            return Ok(());
        }
        let appending = events.len();
        let serialized = events
            .into_iter()
            .zip(state.sequence + 1..)
            .map(|(payload, sequence)| {
                SerializedEvent::try_from(&EventEnvelope::<A> {
                    aggregate_id: stream.to_owned(),
                    sequence,
                    payload,
                    metadata: metadata.clone(),
                })
            })
            .collect::<Result<Vec<_>, PersistenceError>>()?;
        let next_snapshot = match self.snapshot {
            Some(size) if snapshot_due(size, state.sequence, appending) => {
                let number = state.snapshot.map_or(1, |n| n + 1);
                let payload = serde_json::to_value(&state.aggregate).map_err(unexpected)?;
                Some((stream.to_owned(), payload, number))
            }
            _ => None,
        };
        let snapshot_number = next_snapshot.as_ref().map(|(_, _, number)| *number);
        // A conflict (another writer first) drops the state: the retry loads afresh.
        self.repo.persist::<A>(&serialized, next_snapshot).await?;
        state.sequence += appending;
        if snapshot_number.is_some() {
            state.snapshot = snapshot_number;
        }
        self.cache.put(stream, state);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_due_when_the_append_reaches_the_next_multiple() {
        assert!(!snapshot_due(100, 0, 1));
        assert!(!snapshot_due(100, 98, 1));
        assert!(snapshot_due(100, 99, 1));
        assert!(snapshot_due(100, 98, 2));
        assert!(!snapshot_due(100, 100, 1));
        assert!(snapshot_due(2, 1, 1));
        assert!(snapshot_due(1, 5, 1));
    }

    #[test]
    fn the_cache_keeps_the_later_state_and_drops_the_oldest_generation() {
        let cache: AggregateCache<u32> = AggregateCache::new(2);
        let state = |n| State {
            aggregate: n,
            sequence: n as usize,
            snapshot: None,
        };
        cache.put("a", state(5));
        cache.put("a", state(3));
        assert_eq!(
            cache.take("a").map(|s| s.sequence),
            Some(5),
            "an earlier state never replaces a later one"
        );
        assert!(cache.take("a").is_none(), "taken out");
        cache.put("a", state(1));
        cache.put("b", state(1));
        cache.put("c", state(1));
        // "a" and "b" moved to the old generation; "d" retires them.
        cache.put("d", state(1));
        cache.put("e", state(1));
        assert!(cache.take("a").is_none());
        assert!(cache.take("e").is_some());
        let none: AggregateCache<u32> = AggregateCache::new(0);
        none.put("a", state(1));
        assert!(none.take("a").is_none(), "capacity 0 keeps nothing");
    }
}
