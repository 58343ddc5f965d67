//! Tenant digests: one hash over the heads of all of a tenant's streams, as of a log cursor, for
//! an auditor to keep outside the database (issue 11).
//!
//! # Why
//!
//! Each stream's hash chain ([`crate::chain`]) proves that no event *inside* a stream was
//! altered, inserted or removed. It cannot prove that a stream's last events are still there, or
//! that a whole stream was not dropped: a chain cut at its tail still verifies. A digest taken
//! today and kept elsewhere closes that hole: `verify --digest D` later proves that everything
//! `D` covered is unchanged and has only been appended to since.
//!
//! # What a digest covers
//!
//! The tenant's events up to a log [`Cursor`] `C` (the tenant's last readable event when the
//! digest was taken), in the log's final order (DESIGN.md, "Reading the whole log without
//! gaps"): an event is covered when `(tx_id, global_position) <= C`. That set never changes by
//! appending: a transaction still running when the digest was taken, and every later one, has a
//! transaction id above `C`'s.
//!
//! # The hash (version 1)
//!
//! The *head* of a stream is its covered event with the highest sequence: `(aggregate_type,
//! aggregate_id, sequence, hash)`, where `hash` is the event's stored chain hash, which covers
//! the whole stream up to it. Heads are ordered by `aggregate_type`, then `aggregate_id`, both
//! compared as UTF-8 bytes (no collation). The digest is
//!
//! ```text
//! sha256( field("chronicle tenant digest v1") || field(tenant)
//!       || int8-big-endian(C.tx_id) || int8-big-endian(C.global_position)
//!       || int8-big-endian(number of heads)
//!       || for each head: field(aggregate_type) || field(aggregate_id)
//!                         || int8-big-endian(sequence) || field(hash bytes) )
//! field(v) = int8-big-endian(byte length of v) || bytes of v
//! ```
//!
//! and is written `td1:<tenant>:<cursor>:<64 hex digits>` ([`TenantDigest`]'s `Display`; a
//! tenant id never contains `:`, which separates it from the stream id in `aggregate_id`).
//!
//! # Checking
//!
//! [`check`] recomputes the heads as of the digest's cursor and compares. It also looks for
//! events *after* the cursor that sit inside the covered part of a stream (a sequence at or
//! below the covered head): an append never does that. With the heads list written when the
//! digest was taken ([`DigestReport::heads`], JSON lines), it names every stream whose head
//! changed, disappeared or appeared. What a digest does not prove: that the chains below the
//! heads are intact (that is [`crate::chain::verify`]'s part, run beside it), nor anything about
//! the order of events of different streams relative to each other (no chain spans streams),
//! nor the columns the chain does not hash: `recorded_at`, `tx_id` and `global_position` may be
//! rewritten inside covered history undetected (a digest's cursor is taken at face value), so
//! time ranges (`history --since`, `state --at`) rest on the database's integrity, not on the
//! chain.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};

use crate::log::{self, Cursor, LogFilter};

/// The version prefix of a digest's string form.
const PREFIX: &str = "td1";
/// The domain-separation label hashed first.
const LABEL: &str = "chronicle tenant digest v1";

/// A stream's last covered event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHead {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    /// The event's stored chain hash, hex.
    pub hash: String,
}

impl fmt::Display for StreamHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sequence {} (hash {})",
            self.sequence,
            self.hash.get(..16).unwrap_or(&self.hash)
        )
    }
}

/// A tenant digest: the tenant, the cursor it covers, and the hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantDigest {
    pub tenant: String,
    pub cursor: Cursor,
    pub sha256: [u8; 32],
}

impl fmt::Display for TenantDigest {
    /// `td1:<tenant>:<cursor>:<hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}:{}:{}:{}",
            self.tenant,
            self.cursor,
            hex::encode(self.sha256)
        )
    }
}

impl Serialize for TenantDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why a string is not a [`TenantDigest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    #[error("not a tenant digest: expected td1:<tenant>:<cursor>:<64 hex digits>")]
    Shape,
    #[error("not a tenant digest: unknown version {0:?} (this tool writes td1)")]
    Version(String),
    #[error("not a tenant digest: the tenant is empty")]
    EmptyTenant,
    #[error("not a tenant digest: {0}")]
    Cursor(#[from] log::CursorError),
    #[error("not a tenant digest: the hash must be 64 hex digits")]
    Hash,
}

impl FromStr for TenantDigest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split(':');
        let (Some(version), Some(tenant), Some(cursor), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(DigestParseError::Shape);
        };
        if version != PREFIX {
            return Err(DigestParseError::Version(version.to_owned()));
        }
        if tenant.is_empty() {
            return Err(DigestParseError::EmptyTenant);
        }
        let cursor = Cursor::from_str(cursor)?;
        let bytes = hex::decode(hash).map_err(|_| DigestParseError::Hash)?;
        let sha256: [u8; 32] = bytes.try_into().map_err(|_| DigestParseError::Hash)?;
        Ok(TenantDigest {
            tenant: tenant.to_owned(),
            cursor,
            sha256,
        })
    }
}

/// A digest as taken: the digest and what it covers.
#[derive(Clone, Debug, Serialize)]
pub struct DigestReport {
    pub digest: TenantDigest,
    pub tenant: String,
    /// The cursor covered (also inside the digest), as the API shows cursors.
    pub cursor: String,
    /// The `global_position` of the cursor's event (0 for a tenant without events).
    pub position: i64,
    /// Streams and events covered.
    pub streams: u64,
    pub events: u64,
    /// The heads hashed, in digest order (written to a heads file on request; not in the
    /// JSON report, which stays short).
    #[serde(skip)]
    pub heads: Vec<StreamHead>,
}

/// A stream whose head differs from the one recorded with the digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeadChange {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The head recorded with the digest; `None` when the stream had no covered event then.
    pub was: Option<StreamHead>,
    /// The head now, as of the same cursor; `None` when no covered event of it is left.
    pub now: Option<StreamHead>,
}

impl fmt::Display for HeadChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.aggregate_type, self.aggregate_id)?;
        match (&self.was, &self.now) {
            (Some(was), Some(now)) if now.sequence < was.sequence => write!(
                f,
                "head was {was}, now {now}: events covered by the digest were removed from its tail"
            ),
            (Some(was), Some(now)) => write!(f, "head was {was}, now {now}: covered history was rewritten"),
            (Some(was), None) => write!(
                f,
                "head was {was}; no covered event of the stream is left: it was removed"
            ),
            (None, Some(now)) => write!(
                f,
                "not covered by the digest, yet it now has events before its cursor (head {now}): inserted"
            ),
            (None, None) => write!(f, "unchanged"),
        }
    }
}

/// An event after the digest's cursor whose sequence lies inside the part of its stream the
/// digest covered: not an append, an insertion into covered history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InsertedEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub global_position: i64,
    /// The covered head's sequence of that stream.
    pub covered_head: i64,
}

impl fmt::Display for InsertedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} sequence {} (global position {}): recorded after the digest, yet inside the \
             history it covered (up to sequence {})",
            self.aggregate_type, self.aggregate_id, self.sequence, self.global_position, self.covered_head
        )
    }
}

/// The outcome of [`check`].
#[derive(Clone, Debug, Serialize)]
pub struct DigestCheck {
    pub digest: TenantDigest,
    /// Whether the heads as of the digest's cursor hash to the digest.
    pub matches: bool,
    /// Streams whose head changed (only when the heads recorded with the digest were given).
    pub changed: Vec<HeadChange>,
    /// Events recorded after the cursor inside covered history.
    pub inserted: Vec<InsertedEvent>,
}

impl DigestCheck {
    /// Whether everything the digest covered is unchanged and only appended to since.
    pub fn holds(&self) -> bool {
        self.matches && self.changed.is_empty() && self.inserted.is_empty()
    }
}

/// Why [`check`] could not check.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The heads file given does not hash to the digest: it belongs to another digest.
    #[error(
        "the heads file does not belong to this digest (its heads hash to {found}, the digest \
         says {expected})"
    )]
    HeadsOfAnotherDigest { expected: String, found: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The digest of `tenant`'s heads as of `cursor` (see the module docs). `heads` may come in any
/// order; they are hashed in digest order.
pub fn digest_of(tenant: &str, cursor: Cursor, heads: &[StreamHead]) -> [u8; 32] {
    let mut ordered: Vec<&StreamHead> = heads.iter().collect();
    ordered.sort_by(|a, b| {
        (a.aggregate_type.as_bytes(), a.aggregate_id.as_bytes())
            .cmp(&(b.aggregate_type.as_bytes(), b.aggregate_id.as_bytes()))
    });
    let mut hasher = Sha256::new();
    field(&mut hasher, LABEL.as_bytes());
    field(&mut hasher, tenant.as_bytes());
    hasher.update(cursor.tx_id.to_be_bytes());
    hasher.update(cursor.position.to_be_bytes());
    hasher.update((ordered.len() as u64).to_be_bytes());
    for head in ordered {
        field(&mut hasher, head.aggregate_type.as_bytes());
        field(&mut hasher, head.aggregate_id.as_bytes());
        hasher.update(head.sequence.to_be_bytes());
        // A head read from the database always has hex; one from a heads file that is not hex
        // hashes as its text, which can only make the digest differ.
        match hex::decode(&head.hash) {
            Ok(bytes) => field(&mut hasher, &bytes),
            Err(_) => field(&mut hasher, head.hash.as_bytes()),
        }
    }
    hasher.finalize().into()
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

/// How long [`take`] waits for the tenant's committed events to become readable (an open
/// write anywhere in the cluster holds them back) before it digests what is readable.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes `tenant`'s digest now: its last readable event's cursor and the heads as of it, read
/// in one snapshot.
///
/// Committed events held back by an open write (DESIGN.md, "Reading the whole log without
/// gaps") are waited for, up to [`SETTLE`], so the digest covers everything committed when it
/// was asked for; past that it covers what is readable, and says so by its position.
pub async fn take(pool: &PgPool, tenant: &str) -> Result<DigestReport, sqlx::Error> {
    let filter = LogFilter::tenant(tenant);
    let deadline = std::time::Instant::now() + SETTLE;
    let mut delay = log::BLOCKED_RETRY_MIN;
    let (cursor, heads, events) = loop {
        let mut tx = pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let cursor = log::head(&mut *tx, &filter).await?.unwrap_or(Cursor::START);
        if log::any_committed_after(&mut *tx, cursor, &filter).await? && std::time::Instant::now() < deadline {
            tx.rollback().await?;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(log::BLOCKED_RETRY_MAX);
            continue;
        }
        let (heads, events) = heads_at(&mut tx, tenant, cursor).await?;
        tx.rollback().await?;
        break (cursor, heads, events);
    };
    let digest = TenantDigest {
        tenant: tenant.to_owned(),
        cursor,
        sha256: digest_of(tenant, cursor, &heads),
    };
    Ok(DigestReport {
        tenant: tenant.to_owned(),
        cursor: cursor.to_string(),
        position: cursor.position,
        streams: heads.len() as u64,
        events,
        digest,
        heads,
    })
}

/// The tenants that have events, in byte order.
pub async fn tenants(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT tenant_id FROM events GROUP BY tenant_id ORDER BY tenant_id COLLATE \"C\"")
        .fetch_all(pool)
        .await
}

/// Checks `digest` against the log: the heads as of its cursor must hash to it, and no event
/// recorded since may sit inside covered history. With `recorded` (the heads written when the
/// digest was taken) the streams that changed are named.
pub async fn check(
    pool: &PgPool,
    digest: &TenantDigest,
    recorded: Option<&[StreamHead]>,
) -> Result<DigestCheck, CheckError> {
    if let Some(recorded) = recorded {
        let found = digest_of(&digest.tenant, digest.cursor, recorded);
        if found != digest.sha256 {
            return Err(CheckError::HeadsOfAnotherDigest {
                expected: hex::encode(digest.sha256),
                found: hex::encode(found),
            });
        }
    }

    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let (heads, _) = heads_at(&mut tx, &digest.tenant, digest.cursor).await?;
    let inserted = inserted_after(&mut tx, &digest.tenant, digest.cursor).await?;
    tx.rollback().await?;

    let matches = digest_of(&digest.tenant, digest.cursor, &heads) == digest.sha256;
    let changed = match recorded {
        Some(recorded) => head_changes(recorded, &heads),
        None => Vec::new(),
    };
    Ok(DigestCheck {
        digest: digest.clone(),
        matches,
        changed,
        inserted,
    })
}

/// Streams whose head differs between `was` and `now`, in digest order.
fn head_changes(was: &[StreamHead], now: &[StreamHead]) -> Vec<HeadChange> {
    use std::collections::BTreeMap;
    let key = |h: &StreamHead| -> (Vec<u8>, Vec<u8>) {
        (h.aggregate_type.as_bytes().to_vec(), h.aggregate_id.as_bytes().to_vec())
    };
    type Pair<'a> = (Option<&'a StreamHead>, Option<&'a StreamHead>);
    let mut both: BTreeMap<(Vec<u8>, Vec<u8>), Pair<'_>> = BTreeMap::new();
    for head in was {
        both.entry(key(head)).or_default().0 = Some(head);
    }
    for head in now {
        both.entry(key(head)).or_default().1 = Some(head);
    }
    both.into_values()
        .filter(|(was, now)| was != now)
        .filter_map(|(was, now)| {
            let any = was.or(now)?;
            Some(HeadChange {
                aggregate_type: any.aggregate_type.clone(),
                aggregate_id: any.aggregate_id.clone(),
                was: was.cloned(),
                now: now.cloned(),
            })
        })
        .collect()
}

/// The heads of `tenant`'s streams as of `cursor`, in digest order, and the number of events
/// covered.
async fn heads_at(db: &mut PgConnection, tenant: &str, cursor: Cursor) -> Result<(Vec<StreamHead>, u64), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, max(sequence) AS sequence, count(*) AS events \
           FROM events \
          WHERE tenant_id = $1 AND (tx_id, global_position) <= ($2::text::xid8, $3) \
          GROUP BY aggregate_type, aggregate_id",
    )
    .bind(tenant)
    .bind(cursor.tx_id.to_string())
    .bind(cursor.position)
    .fetch_all(&mut *db)
    .await?;
    let mut events = 0u64;
    let mut keys: Vec<(String, String, i64)> = Vec::with_capacity(rows.len());
    for row in &rows {
        events += u64::try_from(row.try_get::<i64, _>("events")?).unwrap_or(0);
        keys.push((
            row.try_get("aggregate_type")?,
            row.try_get("aggregate_id")?,
            row.try_get("sequence")?,
        ));
    }
    // The heads' hashes, by primary key (one statement for all of them).
    let (types, ids, seqs): (Vec<String>, Vec<String>, Vec<i64>) = keys.into_iter().fold(
        (Vec::new(), Vec::new(), Vec::new()),
        |(mut t, mut i, mut s), (a, b, c)| {
            t.push(a);
            i.push(b);
            s.push(c);
            (t, i, s)
        },
    );
    let rows = sqlx::query(
        "SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.hash \
           FROM unnest($1::text[], $2::text[], $3::int8[]) AS h(aggregate_type, aggregate_id, sequence) \
           JOIN events e USING (aggregate_type, aggregate_id, sequence)",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&seqs)
    .fetch_all(&mut *db)
    .await?;
    let mut heads = Vec::with_capacity(rows.len());
    for row in rows {
        let hash: Vec<u8> = row.try_get("hash")?;
        heads.push(StreamHead {
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            hash: hex::encode(hash),
        });
    }
    heads.sort_by(|a, b| {
        (a.aggregate_type.as_bytes(), a.aggregate_id.as_bytes())
            .cmp(&(b.aggregate_type.as_bytes(), b.aggregate_id.as_bytes()))
    });
    Ok((heads, events))
}

/// Events after `cursor` whose sequence is at or below their stream's covered head.
async fn inserted_after(
    db: &mut PgConnection,
    tenant: &str,
    cursor: Cursor,
) -> Result<Vec<InsertedEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "WITH covered AS ( \
             SELECT aggregate_type, aggregate_id, max(sequence) AS head FROM events \
              WHERE tenant_id = $1 AND (tx_id, global_position) <= ($2::text::xid8, $3) \
              GROUP BY aggregate_type, aggregate_id) \
         SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.global_position, c.head \
           FROM events e JOIN covered c USING (aggregate_type, aggregate_id) \
          WHERE e.tenant_id = $1 AND (e.tx_id, e.global_position) > ($2::text::xid8, $3) \
            AND e.sequence <= c.head \
          ORDER BY e.aggregate_type, e.aggregate_id, e.sequence",
    )
    .bind(tenant)
    .bind(cursor.tx_id.to_string())
    .bind(cursor.position)
    .fetch_all(&mut *db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(InsertedEvent {
                aggregate_type: row.try_get("aggregate_type")?,
                aggregate_id: row.try_get("aggregate_id")?,
                sequence: row.try_get("sequence")?,
                global_position: row.try_get("global_position")?,
                covered_head: row.try_get("head")?,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn head(t: &str, id: &str, seq: i64, hash: &str) -> StreamHead {
        StreamHead {
            aggregate_type: t.into(),
            aggregate_id: id.into(),
            sequence: seq,
            hash: hash.into(),
        }
    }

    #[test]
    fn a_digest_round_trips_through_its_text() {
        let digest = TenantDigest {
            tenant: "acme".into(),
            cursor: Cursor::new(1234, 99),
            sha256: [7; 32],
        };
        let text = digest.to_string();
        assert!(text.starts_with("td1:acme:c1."), "{text}");
        assert_eq!(text.parse::<TenantDigest>().unwrap(), digest);
        assert_eq!("td1:acme".parse::<TenantDigest>(), Err(DigestParseError::Shape));
        assert_eq!(
            format!("td2:acme:{}:{}", Cursor::START, "00".repeat(32)).parse::<TenantDigest>(),
            Err(DigestParseError::Version("td2".into()))
        );
        assert_eq!(
            format!("td1:acme:{}:abc", Cursor::START).parse::<TenantDigest>(),
            Err(DigestParseError::Hash)
        );
        assert!(matches!(
            format!("td1:acme:nope:{}", "00".repeat(32)).parse::<TenantDigest>(),
            Err(DigestParseError::Cursor(_))
        ));
    }

    #[test]
    fn the_digest_is_independent_of_input_order_and_sensitive_to_every_part() {
        let a = head("conversation", "acme:c1", 4, "aa");
        let b = head("wallet", "acme:w1", 2, "bb");
        let cursor = Cursor::new(10, 20);
        let d = digest_of("acme", cursor, &[a.clone(), b.clone()]);
        assert_eq!(d, digest_of("acme", cursor, &[b.clone(), a.clone()]));
        assert_ne!(d, digest_of("globex", cursor, &[a.clone(), b.clone()]));
        assert_ne!(d, digest_of("acme", Cursor::new(10, 21), &[a.clone(), b.clone()]));
        assert_ne!(d, digest_of("acme", cursor, std::slice::from_ref(&a)));
        assert_ne!(
            d,
            digest_of("acme", cursor, &[head("conversation", "acme:c1", 3, "aa"), b.clone()])
        );
        assert_ne!(
            d,
            digest_of("acme", cursor, &[head("conversation", "acme:c1", 4, "ab"), b.clone()])
        );
        // Field boundaries are part of the hash: moving a byte between type and id changes it.
        assert_ne!(
            digest_of("acme", cursor, &[head("ab", "c", 1, "aa")]),
            digest_of("acme", cursor, &[head("a", "bc", 1, "aa")])
        );
    }

    #[test]
    fn head_changes_name_shortened_rewritten_removed_and_added_streams() {
        let was = vec![
            head("a", "t:1", 4, "aa"),
            head("a", "t:2", 2, "bb"),
            head("a", "t:3", 1, "cc"),
            head("a", "t:4", 1, "dd"),
        ];
        let now = vec![
            head("a", "t:1", 3, "a0"),
            head("a", "t:2", 2, "b0"),
            head("a", "t:4", 1, "dd"),
            head("a", "t:5", 1, "ee"),
        ];
        let changes = head_changes(&was, &now);
        let ids: Vec<&str> = changes.iter().map(|c| c.aggregate_id.as_str()).collect();
        assert_eq!(ids, vec!["t:1", "t:2", "t:3", "t:5"]);
        assert!(
            changes[0].to_string().contains("removed from its tail"),
            "{}",
            changes[0]
        );
        assert!(changes[1].to_string().contains("rewritten"), "{}", changes[1]);
        assert!(changes[2].to_string().contains("it was removed"), "{}", changes[2]);
        assert!(changes[3].to_string().contains("inserted"), "{}", changes[3]);
    }
}
