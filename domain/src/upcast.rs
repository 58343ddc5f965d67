//! Upcasters (issue 13): an event type whose shape changes keeps its old stored versions
//! readable.
//!
//! The log is never rewritten: an event stays as it was stored, with the version of its type
//! at that time (`events.event_version`). Everything that reads an event (the aggregates'
//! loads, the projectors, the event contract integrators read, the replay tool) brings it to
//! the current version of its type first, through [`upcast`], so each of them, and each
//! integrator's parser, only ever meets the current shape.
//!
//! A change of an event type's shape is one [`Upcast`] in [`UPCASTS`]: the version it takes
//! events from, the version it gives, what changed (published in the event catalogue) and the
//! function that rewrites a stored payload. Upcasts of one type are chained in list order, so
//! an event stored at 1.0 goes through 1.0 → 1.1 → 1.2. The domain writes new events at
//! [`current_version`] of their type (every aggregate's `event_version`).
//!
//! An upcast works on the stored form of the payload, the aggregate's enum as serde writes it
//! (`{"DeliveryStatusRecorded": {…}}`), and must accept every payload stored at its `from`
//! version, including payloads that already have the new shape (a field added with
//! `#[serde(default)]` before its version was raised).

use serde_json::Value;

/// The version of an event type that no upcast has changed.
pub const BASE_VERSION: &str = "1.0";

/// One change of an event type's shape.
#[derive(Debug, Clone, Copy)]
pub struct Upcast {
    /// The event type (`events.event_type`).
    pub event_type: &'static str,
    /// The version of the events it rewrites.
    pub from: &'static str,
    /// The version they have afterwards.
    pub to: &'static str,
    /// What changed, for the catalogue.
    pub change: &'static str,
    apply: fn(&mut Value),
}

/// Every change of an event type's shape, oldest first.
pub const UPCASTS: &[Upcast] = &[Upcast {
    event_type: "DeliveryStatusRecorded",
    from: "1.0",
    to: "1.1",
    change: "`current` (the message's furthest status) and `window_closed` are always present. \
             Events stored at 1.0 before they existed lack them: `current` is then `status`, \
             and `window_closed` is false.",
    apply: delivery_status_recorded_1_1,
}];

/// The version of `event_type` that the domain writes today.
pub fn current_version(event_type: &str) -> &'static str {
    UPCASTS
        .iter()
        .rev()
        .find(|u| u.event_type == event_type)
        .map_or(BASE_VERSION, |u| u.to)
}

/// The changes `event_type` went through, oldest first (none for most types).
pub fn history(event_type: &str) -> impl Iterator<Item = &'static Upcast> + '_ {
    UPCASTS.iter().filter(move |u| u.event_type == event_type)
}

/// Brings a stored event of `event_type` at `version` to the current version of its type:
/// rewrites `payload` (the stored form) in place and answers the version it now has. `None`:
/// nothing to do (the event is at the current version, or at one no upcast starts from, such
/// as a newer version written by a newer release during a rolling deploy), and the event keeps
/// its stored version.
pub fn upcast(event_type: &str, version: &str, payload: &mut Value) -> Option<&'static str> {
    let mut at: Option<&'static str> = None;
    for step in history(event_type) {
        if at.unwrap_or(version) == step.from {
            (step.apply)(payload);
            at = Some(step.to);
        }
    }
    at
}

/// The body inside the enum wrapper of a stored payload.
fn body<'a>(payload: &'a mut Value, event_type: &str) -> Option<&'a mut serde_json::Map<String, Value>> {
    payload.get_mut(event_type)?.as_object_mut()
}

/// `DeliveryStatusRecorded` 1.0 → 1.1: `current` and `window_closed` always present.
fn delivery_status_recorded_1_1(payload: &mut Value) {
    let Some(body) = body(payload, "DeliveryStatusRecorded") else {
        return;
    };
    if body.get("current").is_none_or(Value::is_null) {
        let status = body.get("status").cloned().unwrap_or(Value::Null);
        body.insert("current".into(), status);
    }
    if !body.get("window_closed").is_some_and(Value::is_boolean) {
        body.insert("window_closed".into(), Value::Bool(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{ConversationEvent, DeliveryStatus};
    use serde_json::json;

    fn stored_1_0_without_current() -> Value {
        json!({"DeliveryStatusRecorded": {
            "message_ref": "wamid.1", "status": "delivered", "at": "2026-01-01T10:00:00Z",
            "error_code": null, "error_title": null
        }})
    }

    #[test]
    fn a_delivery_status_stored_before_current_existed_reads_as_1_1_with_current_equal_to_status() {
        let mut payload = stored_1_0_without_current();
        assert_eq!(upcast("DeliveryStatusRecorded", "1.0", &mut payload), Some("1.1"));
        let body = &payload["DeliveryStatusRecorded"];
        assert_eq!(body["current"], json!("delivered"));
        assert_eq!(body["window_closed"], json!(false));
        let event: ConversationEvent = serde_json::from_value(payload).expect("the 1.1 shape");
        match event {
            ConversationEvent::DeliveryStatusRecorded {
                status,
                current,
                window_closed,
                ..
            } => {
                assert_eq!(status, DeliveryStatus::Delivered);
                assert_eq!(current, DeliveryStatus::Delivered);
                assert!(!window_closed);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_1_0_event_that_already_had_the_new_fields_keeps_them() {
        let mut payload = json!({"DeliveryStatusRecorded": {
            "message_ref": "wamid.1", "status": "delivered", "at": "2026-01-01T10:00:00Z",
            "error_code": null, "error_title": null, "current": "read", "window_closed": true
        }});
        assert_eq!(upcast("DeliveryStatusRecorded", "1.0", &mut payload), Some("1.1"));
        assert_eq!(payload["DeliveryStatusRecorded"]["current"], json!("read"));
        assert_eq!(payload["DeliveryStatusRecorded"]["window_closed"], json!(true));
    }

    #[test]
    fn events_at_their_current_version_and_other_types_are_left_as_they_are() {
        let mut payload = stored_1_0_without_current();
        let before = payload.clone();
        assert_eq!(upcast("DeliveryStatusRecorded", "1.1", &mut payload), None);
        assert_eq!(payload, before, "a 1.1 event is not rewritten");
        assert_eq!(
            upcast("DeliveryStatusRecorded", "1.7", &mut payload),
            None,
            "a newer version stays"
        );
        assert_eq!(payload, before);
        let mut other = json!({"NoteAdded": {"text": "x"}});
        let before = other.clone();
        assert_eq!(upcast("NoteAdded", "1.0", &mut other), None);
        assert_eq!(other, before);
    }

    #[test]
    fn the_domain_writes_each_type_at_its_current_version() {
        use cqrs_es::DomainEvent;
        let event = ConversationEvent::DeliveryStatusRecorded {
            external: false,
            message_ref: "wamid.1".into(),
            status: DeliveryStatus::Sent,
            at: chrono::DateTime::UNIX_EPOCH,
            error_code: None,
            error_title: None,
            current: DeliveryStatus::Sent,
            window_closed: false,
        };
        assert_eq!(event.event_version(), "1.1");
        assert_eq!(current_version("MessageReceived"), BASE_VERSION);
    }

    #[test]
    fn upcasts_of_a_type_chain_from_version_to_version() {
        for step in UPCASTS {
            assert_ne!(step.from, step.to, "{} goes nowhere", step.event_type);
            let later = history(step.event_type).skip_while(|u| u.from != step.from).nth(1);
            if let Some(next) = later {
                assert_eq!(
                    next.from, step.to,
                    "{}: {} is not followed by its own version",
                    step.event_type, step.to
                );
            }
        }
    }
}
