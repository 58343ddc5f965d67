//! The per-stream sha-256 hash chain of the event log, computed exactly as the database computes
//! it, and the verification of a whole log (or one tenant's) against it.
//!
//! # The chain
//!
//! The `events_before_insert` trigger (migration `20261122000002_event_store_extensions.sql`)
//! sets every event's `hash` to `chronicle_event_hash(previous, aggregate_type, aggregate_id,
//! sequence, event_type, event_version, payload::text, metadata::text)`:
//!
//! ```text
//! sha256( previous-hash-or-nothing
//!       || field(aggregate_type) || field(aggregate_id) || int8-big-endian(sequence)
//!       || field(event_type) || field(event_version) || field(payload) || field(metadata) )
//! field(v) = int8-big-endian(byte length of v) || UTF-8 bytes of v
//! ```
//!
//! where `previous` is the stored hash of the event with sequence `n - 1` in the same stream
//! when `n > 1`, and nothing when `n <= 1`. `payload` and `metadata` are `json` (not `jsonb`)
//! columns, so `::text` gives back the exact text that was stored and the hash is reproducible
//! byte for byte. [`event_hash`] is the same function in Rust. (The byte length and the UTF-8
//! bytes agree because the database's encoding is UTF-8; in any other server encoding the SQL
//! function itself would hash lengths and bytes of different encodings.)
//!
//! # Verification
//!
//! [`verify`] streams the events in primary-key order (stream by stream, sequence by sequence),
//! recomputes every link and reports each one that does not hold as a [`BrokenLink`]:
//!
//! - [`BrokenKind::HashMismatch`]: the stored hash differs from the one recomputed from the
//!   event's columns and its predecessor's stored hash: the event was altered after it was
//!   appended (or its hash was).
//! - [`BrokenKind::MissingPredecessor`]: the event's sequence is `n > 1` but `n - 1` is not
//!   stored (a gap in the middle of a stream, or a stream whose first stored event is not 1):
//!   events were deleted. The event's own hash cannot be checked, since the hash it was chained
//!   from is gone; the chain resumes from its stored hash.
//! - [`BrokenKind::UnchainedSequence`]: the sequence is below 1. postgres-es numbers a stream
//!   from 1, and the trigger chains nothing before sequence 1, so such an event is outside every
//!   chain: removing it could never be detected.
//!
//! ## After a broken link, the chain continues from the *stored* hash
//!
//! Event `n + 1`'s stored hash was computed by the trigger from event `n`'s hash as it was at
//! the time, which is still the stored one unless the forger rewrote it too. So:
//!
//! - a forger who changes event `n`'s payload (or type, version, metadata) and leaves its hash:
//!   event `n` mismatches; continuing from its stored hash, `n + 1` and everything after it
//!   verify, so the tampered event is reported once, by name. Continuing from the *recomputed*
//!   hash instead would report every event after it as well, burying the one that was changed.
//! - a forger who also rewrites event `n`'s hash to match its new contents: event `n` now
//!   verifies, but `n + 1` no longer chains from it, so `n + 1` is reported. The break is found,
//!   one event later; the chain alone cannot tell which of the two was touched.
//! - a forger who rewrites the hashes of the whole rest of the stream, or deletes a stream's
//!   last events or a whole stream, leaves a chain that verifies: detecting that needs the
//!   stream heads anchored outside the database (not done here).
//!
//! Verification runs in one read-only, repeatable-read transaction, so the up-front count used
//! for progress and the events streamed afterwards come from the same snapshot, and a stream
//! being appended to while it is read is seen consistently.

use futures::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use std::fmt;

/// How often [`verify`] reports progress, in events.
pub const PROGRESS_EVERY: u64 = 1_000;

/// The hash the database's `chronicle_event_hash(...)` computes for these inputs.
///
/// `previous` is the stored hash of the previous event in the stream, or `None` for a stream's
/// first event (sequence 1). `payload_text` and `metadata_text` are the columns as text
/// (`payload::text`, `metadata::text`), byte for byte as stored.
#[allow(clippy::too_many_arguments)] // mirrors the SQL function's signature, field by field
pub fn event_hash(
    previous: Option<&[u8]>,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    event_type: &str,
    event_version: &str,
    payload_text: &str,
    metadata_text: &str,
) -> [u8; 32] {
    fn field(hasher: &mut Sha256, value: &str) {
        // `octet_length(value)::bigint` then the UTF-8 bytes. A `usize` length always fits
        // an `i64`/`u64` on the platforms Rust supports; `int8send` writes it big-endian.
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value.as_bytes());
    }

    let mut hasher = Sha256::new();
    if let Some(previous) = previous {
        hasher.update(previous);
    }
    field(&mut hasher, aggregate_type);
    field(&mut hasher, aggregate_id);
    hasher.update(sequence.to_be_bytes());
    field(&mut hasher, event_type);
    field(&mut hasher, event_version);
    field(&mut hasher, payload_text);
    field(&mut hasher, metadata_text);
    hasher.finalize().into()
}

/// Progress of a running [`verify`]: reported once before the first event, every
/// [`PROGRESS_EVERY`] events, and once at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Events checked so far.
    pub checked: u64,
    /// Events to check in all (counted up front, in the same snapshot as the events).
    pub total: u64,
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Streams (aggregate type and id) seen.
    pub streams: u64,
    /// Events checked.
    pub events: u64,
    /// Every link that does not hold, in stream and sequence order. Empty when the log is
    /// intact.
    pub broken: Vec<BrokenLink>,
}

impl VerifyReport {
    /// Whether every link held.
    pub fn is_intact(&self) -> bool {
        self.broken.is_empty()
    }
}

/// One event at which the chain does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub global_position: i64,
    /// What is wrong.
    #[serde(flatten)]
    pub kind: BrokenKind,
}

/// What is wrong at a [`BrokenLink`]. Serialized with a `kind` tag in snake case
/// (`"hash_mismatch"`, `"missing_predecessor"`, `"unchained_sequence"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BrokenKind {
    /// The stored hash differs from the one recomputed from the event's columns and the stored
    /// hash of its predecessor (hex).
    HashMismatch { stored: String, recomputed: String },
    /// Sequences `missing_from..=missing_to` are not stored before this event: a gap in the
    /// stream, or (with `missing_from == 1`) a stream whose first events are gone.
    MissingPredecessor { missing_from: i64, missing_to: i64 },
    /// The sequence is below 1, outside every chain (postgres-es numbers streams from 1).
    UnchainedSequence,
}

impl fmt::Display for BrokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokenKind::HashMismatch { stored, recomputed } => write!(
                f,
                "hash mismatch: the event was altered after it was appended \
                 (stored hash {}, recomputed {})",
                short(stored),
                short(recomputed)
            ),
            BrokenKind::MissingPredecessor {
                missing_from,
                missing_to,
            } if missing_from == missing_to => write!(
                f,
                "missing predecessor: sequence {missing_from} is not in the log \
                 (deleted?); this event's hash cannot be checked"
            ),
            BrokenKind::MissingPredecessor {
                missing_from,
                missing_to,
            } => write!(
                f,
                "missing predecessor: sequences {missing_from} to {missing_to} are not in the \
                 log (deleted?); this event's hash cannot be checked"
            ),
            BrokenKind::UnchainedSequence => write!(
                f,
                "unchained sequence: streams begin at sequence 1 and nothing below it is \
                 chained, so its removal would go unnoticed"
            ),
        }
    }
}

fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

impl fmt::Display for BrokenLink {
    /// One line: the stream, the sequence, the global position and what is wrong.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} sequence {} (global position {}): {}",
            self.aggregate_type, self.aggregate_id, self.sequence, self.global_position, self.kind
        )
    }
}

/// One stored event, as [`verify`] reads it.
struct StoredEvent<'r> {
    aggregate_type: &'r str,
    aggregate_id: &'r str,
    sequence: i64,
    global_position: i64,
    event_type: &'r str,
    event_version: &'r str,
    payload: &'r str,
    metadata: &'r str,
    hash: &'r [u8],
}

/// The chain-walking state, fed events in primary-key order. Holds one stream's position at a
/// time, so memory stays flat however long the log is.
#[derive(Default)]
struct ChainWalker {
    report: VerifyReport,
    /// The current stream, `None` before the first event.
    stream: Option<(String, String)>,
    /// The previous event of the current stream: its sequence and stored hash.
    previous: Option<(i64, Vec<u8>)>,
}

impl ChainWalker {
    fn check(&mut self, event: &StoredEvent<'_>) {
        let same_stream = self
            .stream
            .as_ref()
            .is_some_and(|(t, id)| t.as_str() == event.aggregate_type && id.as_str() == event.aggregate_id);
        if !same_stream {
            self.stream = Some((event.aggregate_type.to_owned(), event.aggregate_id.to_owned()));
            self.previous = None;
            self.report.streams += 1;
        }
        self.report.events += 1;

        // The hash this event was chained from, as the trigger chose it: nothing up to sequence
        // 1, else the stored hash of sequence n - 1 (`None` in the outer option when that
        // event is not stored and the link cannot be checked).
        let chained_from: Option<Option<&[u8]>> = if event.sequence < 1 {
            self.broken(event, BrokenKind::UnchainedSequence);
            Some(None)
        } else if event.sequence == 1 {
            Some(None)
        } else {
            match &self.previous {
                Some((seq, hash)) if seq.checked_add(1) == Some(event.sequence) => Some(Some(hash.as_slice())),
                previous => {
                    // The previous stored sequence is below this one (primary-key order), so
                    // the missing range is non-empty; streams start at 1.
                    let missing_from = match previous {
                        Some((seq, _)) => seq.saturating_add(1).max(1),
                        None => 1,
                    };
                    let kind = BrokenKind::MissingPredecessor {
                        missing_from,
                        missing_to: event.sequence - 1,
                    };
                    self.broken(event, kind);
                    None
                }
            }
        };

        if let Some(previous) = chained_from {
            let recomputed = event_hash(
                previous,
                event.aggregate_type,
                event.aggregate_id,
                event.sequence,
                event.event_type,
                event.event_version,
                event.payload,
                event.metadata,
            );
            if recomputed.as_slice() != event.hash {
                let kind = BrokenKind::HashMismatch {
                    stored: hex::encode(event.hash),
                    recomputed: hex::encode(recomputed),
                };
                self.broken(event, kind);
            }
        }

        // Continue from the stored hash (see the module docs): one altered event is reported
        // once, not with every event after it.
        match &mut self.previous {
            Some((seq, hash)) => {
                *seq = event.sequence;
                hash.clear();
                hash.extend_from_slice(event.hash);
            }
            None => self.previous = Some((event.sequence, event.hash.to_vec())),
        }
    }

    fn broken(&mut self, event: &StoredEvent<'_>, kind: BrokenKind) {
        self.report.broken.push(BrokenLink {
            aggregate_type: event.aggregate_type.to_owned(),
            aggregate_id: event.aggregate_id.to_owned(),
            sequence: event.sequence,
            global_position: event.global_position,
            kind,
        });
    }
}

const COLUMNS: &str = "aggregate_type, aggregate_id, sequence, global_position, event_type, \
     event_version, payload::text AS payload, metadata::text AS metadata, hash";

/// Verifies the hash chain of every stream in the log, or of one tenant's streams, streaming
/// the events (memory stays flat), and reports every broken link (see the module docs).
///
/// `progress` is called before the first event, every [`PROGRESS_EVERY`] events and at the
/// end. Errors are the database's (connection, query); a broken chain is not an error but a
/// [`VerifyReport`] with [`VerifyReport::broken`] links.
pub async fn verify(
    pool: &PgPool,
    tenant: Option<&str>,
    mut progress: impl FnMut(VerifyProgress),
) -> Result<VerifyReport, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;

    let (count_sql, events_sql) = match tenant {
        None => (
            "SELECT count(*) FROM events".to_owned(),
            format!(
                "SELECT {COLUMNS} FROM events \
                 ORDER BY aggregate_type, aggregate_id, sequence"
            ),
        ),
        Some(_) => (
            "SELECT count(*) FROM events WHERE tenant_id = $1".to_owned(),
            format!(
                "SELECT {COLUMNS} FROM events WHERE tenant_id = $1 \
                 ORDER BY aggregate_type, aggregate_id, sequence"
            ),
        ),
    };

    let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
    if let Some(tenant) = tenant {
        count = count.bind(tenant);
    }
    let total = u64::try_from(count.fetch_one(&mut *tx).await?).unwrap_or(0);
    progress(VerifyProgress { checked: 0, total });

    let mut walker = ChainWalker::default();
    {
        let mut query = sqlx::query(&events_sql);
        if let Some(tenant) = tenant {
            query = query.bind(tenant);
        }
        let mut rows = query.fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let event = StoredEvent {
                aggregate_type: row.try_get("aggregate_type")?,
                aggregate_id: row.try_get("aggregate_id")?,
                sequence: row.try_get("sequence")?,
                global_position: row.try_get("global_position")?,
                event_type: row.try_get("event_type")?,
                event_version: row.try_get("event_version")?,
                payload: row.try_get("payload")?,
                metadata: row.try_get("metadata")?,
                hash: row.try_get("hash")?,
            };
            walker.check(&event);
            if walker.report.events % PROGRESS_EVERY == 0 {
                progress(VerifyProgress {
                    checked: walker.report.events,
                    total: total.max(walker.report.events),
                });
            }
        }
    }
    // Read-only: nothing to keep.
    tx.rollback().await?;

    let report = walker.report;
    progress(VerifyProgress {
        checked: report.events,
        total: total.max(report.events),
    });
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The arguments of `chronicle_event_hash`, in order.
    type Sample = (
        Option<Vec<u8>>,
        &'static str,
        &'static str,
        i64,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    );

    /// Inputs exercising empty fields, non-ASCII text (multi-byte UTF-8, so byte lengths differ
    /// from character counts), whitespace kept verbatim by `json`, and large sequences.
    fn samples() -> Vec<Sample> {
        vec![
            (
                None,
                "conversation",
                "acme:conv-1",
                1,
                "ConversationOpened",
                "1.0",
                r#"{"channel":"whatsapp"}"#,
                r#"{"tenant_id":"acme"}"#,
            ),
            (
                Some(vec![0xab; 32]),
                "contact",
                "açme:contäct-é",
                2,
                "NoteAdded",
                "2.1",
                r#"{"note" :  "Grüße, 世界 🚀",   "n": 1.50}"#,
                r#"{ "tenant_id": "açme", "actor": "José" }"#,
            ),
            (Some(vec![0x00, 0x01, 0xff]), "", "", i64::MAX, "", "", "null", "{}"),
            (None, "wallet", "t:w", 0, "Opened", "1", "[]", "{\"tenant_id\":\"t\"}"),
        ]
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn event_hash_equals_the_databases_chronicle_event_hash(pool: PgPool) {
        for (previous, at, id, seq, et, ev, payload, metadata) in samples() {
            let from_db: Vec<u8> = sqlx::query_scalar("SELECT chronicle_event_hash($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(previous.as_deref())
                .bind(at)
                .bind(id)
                .bind(seq)
                .bind(et)
                .bind(ev)
                .bind(payload)
                .bind(metadata)
                .fetch_one(&pool)
                .await
                .unwrap();
            let ours = event_hash(previous.as_deref(), at, id, seq, et, ev, payload, metadata);
            assert_eq!(from_db, ours.to_vec(), "inputs: {at:?} {id:?} {seq} {payload:?}");
        }
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn the_triggers_hashes_are_reproduced_and_a_clean_log_verifies(pool: PgPool) {
        // Odd spacing and non-ASCII text: `json` keeps the text as written.
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) VALUES \
             ('contact', 'açme:c-1', 1, 'Created', '1.0', '{ \"name\" : \"Zoë 世界\" }', \
              '{\"tenant_id\":\"açme\"}'), \
             ('contact', 'açme:c-1', 2, 'Renamed', '1.0', '{\"name\":\"Ünal\",  \"x\": [1, 2]}', \
              '{\"tenant_id\":\"açme\", \"actor\": \"🚀\"}'), \
             ('contact', 'açme:c-2', 1, 'Created', '1.0', '{}', '{\"tenant_id\":\"açme\"}')",
        )
        .execute(&pool)
        .await
        .unwrap();

        let rows = sqlx::query(
            "SELECT aggregate_id, sequence, payload::text AS p, metadata::text AS m, hash \
             FROM events ORDER BY aggregate_id, sequence",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut previous: Option<Vec<u8>> = None;
        for row in &rows {
            let id: &str = row.get("aggregate_id");
            let seq: i64 = row.get("sequence");
            let stored: Vec<u8> = row.get("hash");
            let prev = if seq == 1 { None } else { previous.as_deref() };
            let ours = event_hash(
                prev,
                "contact",
                id,
                seq,
                if seq == 1 { "Created" } else { "Renamed" },
                "1.0",
                row.get("p"),
                row.get("m"),
            );
            assert_eq!(stored, ours.to_vec(), "{id} #{seq}");
            previous = Some(stored);
        }

        let mut calls = Vec::new();
        let report = verify(&pool, None, |p| calls.push(p)).await.unwrap();
        assert_eq!(
            report,
            VerifyReport {
                streams: 2,
                events: 3,
                broken: vec![]
            }
        );
        assert_eq!(calls.first(), Some(&VerifyProgress { checked: 0, total: 3 }));
        assert_eq!(calls.last(), Some(&VerifyProgress { checked: 3, total: 3 }));
    }

    fn event<'a>(id: &'a str, sequence: i64, payload: &'a str, hash: &'a [u8]) -> StoredEvent<'a> {
        StoredEvent {
            aggregate_type: "t",
            aggregate_id: id,
            sequence,
            global_position: sequence * 10,
            event_type: "E",
            event_version: "1",
            payload,
            metadata: "{}",
            hash,
        }
    }

    /// A stream of `n` events with their correct hashes, payloads "p1", "p2", ...
    fn chain(n: i64) -> Vec<(i64, String, [u8; 32])> {
        let mut out: Vec<(i64, String, [u8; 32])> = Vec::new();
        for seq in 1..=n {
            let payload = format!("p{seq}");
            let prev = out.last().map(|(_, _, h)| h.as_slice());
            let hash = event_hash(prev, "t", "s", seq, "E", "1", &payload, "{}");
            out.push((seq, payload, hash));
        }
        out
    }

    fn walk(events: &[(i64, String, [u8; 32])]) -> VerifyReport {
        let mut walker = ChainWalker::default();
        for (seq, payload, hash) in events {
            walker.check(&event("s", *seq, payload, hash));
        }
        walker.report
    }

    #[test]
    fn an_altered_payload_is_reported_once_not_with_every_later_event() {
        let mut events = chain(5);
        events[1].1 = "forged".to_owned();
        let report = walk(&events);
        assert_eq!(report.events, 5);
        assert_eq!(report.broken.len(), 1);
        assert_eq!(report.broken[0].sequence, 2);
        assert!(matches!(report.broken[0].kind, BrokenKind::HashMismatch { .. }));
    }

    #[test]
    fn a_rehashed_forgery_is_caught_at_the_next_event() {
        let mut events = chain(4);
        events[1].1 = "forged".to_owned();
        events[1].2 = event_hash(Some(&events[0].2), "t", "s", 2, "E", "1", "forged", "{}");
        let report = walk(&events);
        assert_eq!(report.broken.len(), 1);
        assert_eq!(report.broken[0].sequence, 3);
    }

    #[test]
    fn gaps_and_missing_first_events_are_missing_predecessors() {
        let events = chain(6);
        let holed: Vec<_> = events
            .iter()
            .filter(|(seq, _, _)| ![1, 2, 4].contains(seq))
            .cloned()
            .collect();
        let report = walk(&holed);
        let kinds: Vec<_> = report.broken.iter().map(|b| (b.sequence, b.kind.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                (
                    3,
                    BrokenKind::MissingPredecessor {
                        missing_from: 1,
                        missing_to: 2
                    }
                ),
                (
                    5,
                    BrokenKind::MissingPredecessor {
                        missing_from: 4,
                        missing_to: 4
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_sequence_zero_is_outside_the_chain_and_sequence_one_still_starts_it() {
        let zero = event_hash(None, "t", "s", 0, "E", "1", "p0", "{}");
        let mut events = vec![(0, "p0".to_owned(), zero)];
        events.extend(chain(2));
        let report = walk(&events);
        assert_eq!(report.streams, 1);
        assert_eq!(report.broken.len(), 1);
        assert_eq!(report.broken[0].sequence, 0);
        assert_eq!(report.broken[0].kind, BrokenKind::UnchainedSequence);
    }

    #[test]
    fn streams_are_counted_and_restart_their_chains() {
        let a = chain(2);
        let mut walker = ChainWalker::default();
        for id in ["s1", "s2"] {
            for (seq, payload, _) in &a {
                let prev = if *seq == 1 {
                    None
                } else {
                    walker.previous.as_ref().map(|(_, h)| h.clone())
                };
                let hash = event_hash(prev.as_deref(), "t", id, *seq, "E", "1", payload, "{}");
                walker.check(&event(id, *seq, payload, &hash));
            }
        }
        assert_eq!(walker.report.streams, 2);
        assert_eq!(walker.report.events, 4);
        assert!(walker.report.is_intact());
    }
}
