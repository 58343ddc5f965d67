//! The event contract (issue 13): events as integrators receive them, from the `events`
//! subscription, the `eventLog` query and (later) webhooks, in one documented, versioned shape.
//!
//! An event of the contract carries its type and version, its stream and aggregate type, its
//! cursor and position, when it was recorded, who did it (`actor`), its correlation and
//! causation ids, and its `data`: the payload as plain JSON, without the aggregate's enum
//! wrapper (the log stores `{"MessageReceived": {…}}`; the contract's data is the `{…}`).
//!
//! Personal fields (names, phone numbers, texts: ciphertext envelopes in the log) are never
//! shown as envelopes. They are opened for a reader allowed personal data, and omitted (the
//! field is absent from `data`) otherwise; [`PersonalData`] tells which: `none` (the event has
//! no personal field), `opened`, `withheld` (the reader may not see them), `erased` (the
//! contact was erased: absent for everyone). See [`crate::personal`].

use chronicle_domain::pii::MasterKey;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;

use crate::log::StoredEvent;
use crate::personal::{has_envelope, Field, PersonalKeys};

/// The version of the contract's envelope (the fields around `data`).
pub const CONTRACT_VERSION: &str = "1";

/// What happened to an event's personal fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonalData {
    /// The event holds no personal field.
    None,
    /// Every personal field is opened in `data`.
    Opened,
    /// Personal fields are omitted from `data`: the reader is not allowed personal data.
    Withheld,
    /// Personal fields are omitted from `data`: the contact was erased.
    Erased,
}

/// One event of the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContractEvent {
    /// Resume after this event with it.
    pub cursor: String,
    /// The event's unique number in the whole log (events come in cursor order).
    pub position: i64,
    /// The event type, e.g. `MessageReceived`.
    pub event_type: String,
    /// The version of the event type's data, e.g. `1.0`.
    pub event_version: String,
    /// The kind of stream, e.g. `Conversation`.
    pub aggregate_type: String,
    /// The stream: `<tenant>:<local id>`.
    pub aggregate_id: String,
    /// The event's number within its stream, from 1.
    pub sequence: i64,
    /// When the event was written to the log.
    pub recorded_at: DateTime<Utc>,
    /// `user:<id>:<role>`, `api_key:<id>` or `system:<component>`.
    pub actor: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    /// The event's data as plain JSON, personal fields opened or omitted.
    pub data: Value,
    /// What happened to its personal fields.
    pub personal_data: PersonalData,
}

/// Turns stored events into contract events for one reader of one tenant.
pub struct Contract {
    keys: PersonalKeys,
    reveal: bool,
}

impl Contract {
    /// A reader of `tenant`'s events that sees personal data when `reveal` (and `master` opens
    /// the contacts' keys).
    pub fn new(pool: PgPool, tenant: TenantId, master: Option<MasterKey>, reveal: bool) -> Self {
        Self {
            keys: PersonalKeys::new(pool, tenant, master),
            reveal,
        }
    }

    /// Notes the contacts of an event read but not shaped (filtered out): see
    /// [`PersonalKeys::observe`].
    pub fn observe(&mut self, event: &StoredEvent) {
        self.keys.observe(event);
    }

    /// The contract's form of `event`.
    pub async fn shape(&mut self, event: StoredEvent) -> Result<ContractEvent, sqlx::Error> {
        self.keys.observe(&event);
        let (payload, personal_data) = if has_envelope(&event.payload) {
            let mut erased = false;
            let mut withheld = false;
            let payload = self
                .keys
                .redact(&event, self.reveal, |field| match field {
                    Field::Opened(plain) => Some(Value::String(plain)),
                    Field::Erased => {
                        erased = true;
                        None
                    }
                    Field::Withheld | Field::Unreadable | Field::OtherContact => {
                        withheld = true;
                        None
                    }
                })
                .await?;
            let personal = if erased {
                PersonalData::Erased
            } else if withheld {
                PersonalData::Withheld
            } else {
                PersonalData::Opened
            };
            (payload, personal)
        } else {
            (event.payload.clone(), PersonalData::None)
        };
        let meta = |k: &str| event.metadata.get(k).and_then(Value::as_str).map(str::to_string);
        let mut data = unwrap_variant(payload, &event.event_type);
        embed_json_content(&mut data);
        Ok(ContractEvent {
            cursor: event.cursor.to_string(),
            position: event.global_position,
            actor: meta("actor"),
            correlation_id: meta("correlation_id"),
            causation_id: meta("causation_id"),
            data,
            personal_data,
            event_type: event.event_type,
            event_version: event.event_version,
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            recorded_at: event.recorded_at,
        })
    }
}

/// A message's `content` is sealed as the JSON of the provider's message part (`{"body": …}`
/// for a text): opened, it is data, not a string holding JSON.
fn embed_json_content(data: &mut Value) {
    if let Some(content) = data.get_mut("content") {
        if let Some(Ok(parsed @ Value::Object(_))) = content.as_str().map(serde_json::from_str::<Value>) {
            *content = parsed;
        }
    }
}

/// The data inside the aggregate's enum wrapper: `{"T": {…}}` gives `{…}`, a unit variant
/// (stored as the string `"T"`) gives `{}`, a tuple variant's value is kept as it is.
fn unwrap_variant(payload: Value, event_type: &str) -> Value {
    match payload {
        Value::Object(mut map) if map.len() == 1 && map.contains_key(event_type) => {
            map.remove(event_type).unwrap_or(Value::Null)
        }
        Value::String(name) if name == event_type => Value::Object(serde_json::Map::new()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn opened_message_content_is_embedded_as_json() {
        let mut data = json!({"content": "{\"body\": \"hi\"}", "kind": "text"});
        embed_json_content(&mut data);
        assert_eq!(data, json!({"content": {"body": "hi"}, "kind": "text"}));
        let mut plain = json!({"content": "not json"});
        embed_json_content(&mut plain);
        assert_eq!(plain, json!({"content": "not json"}));
    }

    #[test]
    fn the_data_is_the_payload_without_its_variant_wrapper() {
        assert_eq!(
            unwrap_variant(json!({"LeadWon": {"order_id": "o1"}}), "LeadWon"),
            json!({"order_id": "o1"})
        );
        assert_eq!(unwrap_variant(json!("TemplateLocked"), "TemplateLocked"), json!({}));
        assert_eq!(
            unwrap_variant(json!({"Other": {"a": 1}}), "LeadWon"),
            json!({"Other": {"a": 1}})
        );
    }
}
