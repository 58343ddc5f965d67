//! Personal fields of events, opened for readers of the log: the replay tool's `history` and
//! `export`, and the API's event contract (issue 13).
//!
//! A personal field is a ciphertext envelope in the log (DESIGN.md, "Personal data in an
//! immutable log"): an object of exactly `enc`, `n` and `c`, sealed under the data key of one
//! contact of one tenant. No reader ever shows an envelope: each is replaced by what the reader
//! decides from a [`Field`] (its plaintext, a marker, or nothing at all).
//!
//! The contact an envelope is sealed for is found from the event (the stream's own id for
//! contacts and conversations, any `contact_id` or `customer_id` in the payload) or from the
//! stream's other events (an order's cancellation reason is sealed for the customer its
//! placement named). A contact whose key row is gone was erased.
//!
//! Keys are looked up once each and kept for [`KEY_RECHECK`]: a key destroyed by an erasure
//! stops opening fields for a long-lived reader (a subscription) within that time.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chronicle_domain::pii::{DataKey, Envelope, MasterKey};
use chronicle_domain::tenant::TenantId;
use serde_json::Value;
use sqlx::PgPool;

use crate::log::{self, AsOf, StoredEvent};

/// How long a looked-up key (or its absence) is trusted before it is looked up again.
pub const KEY_RECHECK: Duration = Duration::from_secs(1);

/// Streams whose contacts are remembered at most; past it the memory is dropped (and streams
/// are read again when one of their envelopes needs it), so a long subscription stays small.
const MAX_REMEMBERED_STREAMS: usize = 50_000;

/// What one envelope turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Opened: the plaintext.
    Opened(String),
    /// Not opened because the reader did not ask for personal data (or may not see it).
    Withheld,
    /// Sealed for a contact whose key was destroyed by an erasure.
    Erased,
    /// A key exists but does not open it (another master key).
    Unreadable,
    /// Sealed for another contact than the one the reader is about (an export of one person).
    OtherContact,
}

/// The contacts' keys of one tenant, looked up once each, and the contacts of each stream.
pub struct PersonalKeys {
    pool: PgPool,
    tenant: TenantId,
    master: Option<MasterKey>,
    /// contact id -> (when looked up, the key: `None`: no key row, i.e. erased; `Some(None)`:
    /// a row that does not unwrap under this master key, or not asked to unwrap).
    cache: HashMap<String, (Instant, Option<Option<DataKey>>)>,
    /// stream -> contact ids named by its events so far (read from its first event, or read
    /// whole from the database when first met part way).
    stream_contacts: HashMap<(String, String), BTreeSet<String>>,
    /// Open only this contact's fields (an export about one person): another contact's
    /// envelope in the same stream is [`Field::OtherContact`].
    only_contact: Option<String>,
}

impl PersonalKeys {
    /// The keys of `tenant`'s contacts; `master` unwraps them (`None`: nothing is opened, but
    /// erased fields are still told from withheld ones).
    pub fn new(pool: PgPool, tenant: TenantId, master: Option<MasterKey>) -> Self {
        Self {
            pool,
            tenant,
            master,
            cache: HashMap::new(),
            stream_contacts: HashMap::new(),
            only_contact: None,
        }
    }

    /// Opens only `contact_id`'s fields.
    pub fn only_contact(mut self, contact_id: Option<&str>) -> Self {
        self.only_contact = contact_id.map(str::to_owned);
        self
    }

    async fn key(&mut self, contact_id: &str) -> Result<Option<Option<DataKey>>, sqlx::Error> {
        if let Some((at, found)) = self.cache.get(contact_id) {
            if at.elapsed() < KEY_RECHECK {
                return Ok(found.clone());
            }
        }
        let wrapped = log::wrapped_contact_key(&self.pool, self.tenant.as_str(), contact_id).await?;
        let key = wrapped.map(|w| {
            self.master
                .as_ref()
                .and_then(|m| m.unwrap_key(&w, &self.tenant, contact_id).ok())
        });
        self.cache.insert(contact_id.to_owned(), (Instant::now(), key.clone()));
        Ok(key)
    }

    /// Notes the contacts `event` names, for streams read from their first event: a reader
    /// that starts at the beginning of the log then never asks the database for a stream's
    /// events. Call it for every event read, before any filter, so no event of such a stream
    /// is missed.
    pub fn observe(&mut self, event: &StoredEvent) {
        let stream = (event.aggregate_type.clone(), event.aggregate_id.clone());
        match self.stream_contacts.get_mut(&stream) {
            Some(known) => contact_ids(&event.payload, known),
            None if event.sequence == 1 => {
                if self.stream_contacts.len() >= MAX_REMEMBERED_STREAMS {
                    self.stream_contacts.clear();
                }
                let mut known = BTreeSet::new();
                contact_ids(&event.payload, &mut known);
                self.stream_contacts.insert(stream, known);
            }
            // First seen part way (a reader starting after a cursor): `candidates` reads the
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
            for other in log::stream_events(&self.pool, &stream.0, &stream.1, AsOf::Now).await? {
                contact_ids(&other.payload, &mut of_stream);
            }
            if self.stream_contacts.len() >= MAX_REMEMBERED_STREAMS {
                self.stream_contacts.clear();
            }
            self.stream_contacts.insert(stream.clone(), of_stream);
        }
        if let Some(of_stream) = self.stream_contacts.get(&stream) {
            found.extend(of_stream.iter().cloned());
        }
        Ok(found.into_iter().collect())
    }

    /// `event`'s payload with every envelope replaced by what `replace` makes of its [`Field`]
    /// (opened only when `reveal`): `Some(value)` puts the value in its place, `None` removes
    /// the field from its object (or leaves `null` in an array).
    pub async fn redact(
        &mut self,
        event: &StoredEvent,
        reveal: bool,
        mut replace: impl FnMut(Field) -> Option<Value>,
    ) -> Result<Value, sqlx::Error> {
        let mut payload = event.payload.clone();
        if !has_envelope(&payload) {
            return Ok(payload);
        }
        if let Some(only) = self.only_contact.clone() {
            let key = self.key(&only).await?;
            replace_envelopes(&mut payload, &mut |envelope: &Envelope| {
                replace(match &key {
                    None => Field::Erased,
                    Some(Some(key)) if reveal => match key.open(&self.tenant, &only, envelope) {
                        Ok(plain) => Field::Opened(plain),
                        Err(_) => Field::OtherContact,
                    },
                    Some(_) => Field::Withheld,
                })
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
        let tenant = &self.tenant;
        replace_envelopes(&mut payload, &mut |envelope: &Envelope| {
            if !any_key {
                return replace(Field::Erased);
            }
            if !reveal {
                return replace(Field::Withheld);
            }
            for (contact, key) in &keys {
                if let Some(Some(key)) = key {
                    if let Ok(plain) = key.open(tenant, contact, envelope) {
                        return replace(Field::Opened(plain));
                    }
                }
            }
            // Not opened by any key that is left: sealed for an erased contact if there is
            // one, else for a key this master key cannot unwrap.
            replace(if any_erased { Field::Erased } else { Field::Unreadable })
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

/// Whether `value` holds an envelope at any depth.
pub fn has_envelope(value: &Value) -> bool {
    if as_envelope(value).is_some() {
        return true;
    }
    match value {
        Value::Object(map) => map.values().any(has_envelope),
        Value::Array(items) => items.iter().any(has_envelope),
        _ => false,
    }
}

/// Replaces every envelope under `value`: `Some` puts the value in its place, `None` removes
/// an object's field (or leaves `null` in an array, or at the top).
pub fn replace_envelopes(value: &mut Value, open: &mut impl FnMut(&Envelope) -> Option<Value>) {
    if let Some(envelope) = as_envelope(value) {
        *value = open(&envelope).unwrap_or(Value::Null);
        return;
    }
    match value {
        Value::Object(map) => {
            let mut removed = Vec::new();
            for (key, inner) in map.iter_mut() {
                if let Some(envelope) = as_envelope(inner) {
                    match open(&envelope) {
                        Some(replacement) => *inner = replacement,
                        None => removed.push(key.clone()),
                    }
                } else {
                    replace_envelopes(inner, open);
                }
            }
            for key in removed {
                map.remove(&key);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|inner| replace_envelopes(inner, open)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelopes_are_found_and_replaced_or_removed_at_any_depth_and_nothing_else_is() {
        let envelope = json!({"enc": "aes256gcm.v1", "n": "bm9uY2U", "c": "Y2lwaGVy"});
        let not_one = json!({"enc": "aes256gcm.v1", "n": "bm9uY2U", "c": "Y2lwaGVy", "extra": 1});
        let mut payload = json!({"Event": {
            "name": envelope, "deep": {"list": [envelope, 3]}, "similar": not_one, "n": 1}});
        assert!(has_envelope(&payload));
        let mut kept = payload.clone();
        replace_envelopes(&mut kept, &mut |_| Some(json!("[personal]")));
        assert_eq!(
            kept,
            json!({"Event": {"name": "[personal]", "deep": {"list": ["[personal]", 3]}, "similar": not_one, "n": 1}})
        );
        assert!(!has_envelope(&kept));
        let mut ids = BTreeSet::new();
        contact_ids(
            &json!({"a": {"contact_id": "ct_1"}, "b": [{"customer_id": "ct_2"}], "contact_id": ""}),
            &mut ids,
        );
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            vec!["ct_1".to_owned(), "ct_2".to_owned()]
        );
        replace_envelopes(&mut payload, &mut |_| None);
        assert_eq!(
            payload,
            json!({"Event": {"deep": {"list": [null, 3]}, "similar": not_one, "n": 1}})
        );
    }
}
