//! WhatsApp Cloud API webhooks: the `X-Hub-Signature-256` check over the raw body, and the
//! parsing of a delivery into inbox items, one per message and per status, every item of every
//! entry and change (Meta batches them).

use chronicle_domain::crypto::{constant_time_eq, hmac_sha256};
use serde_json::{json, Value};

/// The provider name in the inbox.
pub const PROVIDER: &str = "whatsapp";

/// Why a delivery's signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not of the form sha256=<64 hex digits>")]
    Malformed,
    #[error("the X-Hub-Signature-256 signature does not match the body")]
    Mismatch,
}

/// Checks `sha256=<hex HMAC-SHA256(app secret, raw body)>` in constant time.
pub fn verify_signature(app_secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_sig = header.trim().strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    if constant_time_eq(&hmac_sha256(app_secret, &[body]), &expected) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The signature header value for a body (for senders and tests).
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(app_secret, &[body])))
}

/// Why a delivery body was refused (answered 400, nothing stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed WhatsApp delivery: {0}")]
pub struct MalformedDelivery(pub String);

/// What an inbox item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Message,
    Status,
    /// A `message_template_status_update` of the WhatsApp Business Account; its row keeps the
    /// account's id (`entry.id`) where a message's keeps the phone-number id.
    TemplateStatus,
}

impl ItemKind {
    /// As stored in `webhook_inbox.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Status => "status",
            Self::TemplateStatus => TEMPLATE_STATUS_KIND,
        }
    }
}

/// One message or status of a delivery, as it will be kept in the inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryItem {
    /// `message:<wamid>` or `status:<wamid>:<status>:<timestamp>`.
    pub dedupe_key: String,
    pub phone_number_id: String,
    pub kind: ItemKind,
    /// `{"message": …, "contact": …}` or `{"status": …}`.
    pub payload: Value,
}

fn field<'a>(value: &'a Value, name: &str, context: &str) -> Result<&'a str, MalformedDelivery> {
    match value.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::Number(_)) if name == "timestamp" => Err(MalformedDelivery(format!(
            "{context}: `timestamp` must be a string of seconds"
        ))),
        _ => Err(MalformedDelivery(format!(
            "{context}: `{name}` is missing or not a non-empty string"
        ))),
    }
}

/// 9999-12-31T23:59:59Z: provider times past it are refused, so no later date arithmetic can
/// overflow.
const LATEST_TIMESTAMP: i64 = 253_402_300_799;

/// One of two fields must be a non-empty string.
fn either_field<'a>(value: &'a Value, first: &str, second: &str, context: &str) -> Result<&'a str, MalformedDelivery> {
    field(value, first, context)
        .or_else(|_| field(value, second, context))
        .map_err(|_| {
            MalformedDelivery(format!(
                "{context}: neither `{first}` nor `{second}` is a non-empty string"
            ))
        })
}

fn timestamp(value: &Value, context: &str) -> Result<i64, MalformedDelivery> {
    let text = field(value, "timestamp", context)?;
    text.parse::<i64>()
        .ok()
        .filter(|t| (1..=LATEST_TIMESTAMP).contains(t))
        .ok_or_else(|| {
            MalformedDelivery(format!(
                "{context}: `timestamp` is not a number of seconds before year 10000"
            ))
        })
}

fn array<'a>(value: &'a Value, name: &str, context: &str) -> Result<&'a [Value], MalformedDelivery> {
    match value.get(name) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(MalformedDelivery(format!("{context}: `{name}` is not an array"))),
    }
}

/// The inbox kind of a template status update.
pub const TEMPLATE_STATUS_KIND: &str = "template_status";

/// A `message_template_status_update` change: the account's id (`entry.id`), the template's
/// id, name and language, and the event (`APPROVED`, `REJECTED`, `PAUSED`, …) are required.
/// Its dedupe key is the template, the event and the delivery's time (`entry.time`), so a
/// repeated delivery is kept once and a later change of the same kind is kept again.
fn template_status(entry: &Value, change: &Value, ectx: &str, ctx: &str) -> Result<DeliveryItem, MalformedDelivery> {
    let waba_id = field(entry, "id", ectx)?;
    let value = change
        .get("value")
        .ok_or_else(|| MalformedDelivery(format!("{ctx}: `value` is missing")))?;
    let vctx = format!("{ctx}.value");
    let event = field(value, "event", &vctx)?;
    let template_id = match value.get("message_template_id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(MalformedDelivery(format!("{vctx}: `message_template_id` is missing"))),
    };
    field(value, "message_template_name", &vctx)?;
    field(value, "message_template_language", &vctx)?;
    let time = entry.get("time").map(Value::to_string).unwrap_or_default();
    Ok(DeliveryItem {
        dedupe_key: format!("template:{template_id}:{event}:{time}"),
        phone_number_id: waba_id.to_string(),
        kind: ItemKind::TemplateStatus,
        payload: json!({ "update": value }),
    })
}

/// Parses a delivery into its items, refusing the whole delivery if any part is malformed (so
/// a 400 never leaves half a delivery stored).
pub fn parse_delivery(body: &[u8]) -> Result<Vec<DeliveryItem>, MalformedDelivery> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| MalformedDelivery(format!("the body is not JSON ({e})")))?;
    match root.get("object").and_then(Value::as_str) {
        Some("whatsapp_business_account") => {}
        Some(other) => {
            return Err(MalformedDelivery(format!(
                "`object` is {other:?}, not \"whatsapp_business_account\""
            )))
        }
        None => return Err(MalformedDelivery("`object` is missing".into())),
    }
    let entries = match root.get("entry") {
        Some(Value::Array(entries)) => entries,
        _ => return Err(MalformedDelivery("`entry` is missing or not an array".into())),
    };
    let mut items = Vec::new();
    for (e, entry) in entries.iter().enumerate() {
        for (c, change) in array(entry, "changes", &format!("entry[{e}]"))?.iter().enumerate() {
            let ctx = format!("entry[{e}].changes[{c}]");
            if change.get("field").and_then(Value::as_str) == Some("message_template_status_update") {
                items.push(template_status(entry, change, &format!("entry[{e}]"), &ctx)?);
                continue;
            }
            if change.get("field").and_then(Value::as_str) != Some("messages") {
                continue; // account updates and other fields are not inbox items
            }
            let value = change
                .get("value")
                .ok_or_else(|| MalformedDelivery(format!("{ctx}: `value` is missing")))?;
            let phone_number_id = value
                .get("metadata")
                .map(|m| field(m, "phone_number_id", &format!("{ctx}.value.metadata")))
                .transpose()?
                .ok_or_else(|| MalformedDelivery(format!("{ctx}.value: `metadata.phone_number_id` is missing")))?;
            let contacts = array(value, "contacts", &format!("{ctx}.value"))?;
            for (m, message) in array(value, "messages", &format!("{ctx}.value"))?.iter().enumerate() {
                let mctx = format!("{ctx}.value.messages[{m}]");
                let id = field(message, "id", &mctx)?;
                // The sender: its number, or, where WhatsApp withholds it, its business-scoped
                // user id.
                either_field(message, "from", "from_user_id", &mctx)?;
                field(message, "type", &mctx)?;
                timestamp(message, &mctx)?;
                let from = message.get("from").and_then(Value::as_str);
                let from_user = message.get("from_user_id").and_then(Value::as_str);
                let contact = contacts
                    .iter()
                    .find(|c| {
                        (from.is_some() && c.get("wa_id").and_then(Value::as_str) == from)
                            || (from_user.is_some() && c.get("user_id").and_then(Value::as_str) == from_user)
                    })
                    .cloned()
                    .unwrap_or(Value::Null);
                items.push(DeliveryItem {
                    dedupe_key: format!("message:{id}"),
                    phone_number_id: phone_number_id.to_string(),
                    kind: ItemKind::Message,
                    payload: json!({ "message": message, "contact": contact }),
                });
            }
            for (s, status) in array(value, "statuses", &format!("{ctx}.value"))?.iter().enumerate() {
                let sctx = format!("{ctx}.value.statuses[{s}]");
                let id = field(status, "id", &sctx)?;
                let state = field(status, "status", &sctx)?;
                either_field(status, "recipient_id", "recipient_user_id", &sctx)?;
                let at = timestamp(status, &sctx)?;
                items.push(DeliveryItem {
                    dedupe_key: format!("status:{id}:{state}:{at}"),
                    phone_number_id: phone_number_id.to_string(),
                    kind: ItemKind::Status,
                    payload: json!({ "status": status }),
                });
            }
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"app-secret";

    #[test]
    fn a_signature_over_the_raw_body_is_accepted() {
        let body = br#"{"a":1}"#;
        assert_eq!(verify_signature(SECRET, body, Some(&sign(SECRET, body))), Ok(()));
    }

    #[test]
    fn missing_malformed_and_wrong_signatures_are_refused() {
        let body = br#"{"a":1}"#;
        assert_eq!(verify_signature(SECRET, body, None), Err(SignatureError::Missing));
        assert_eq!(
            verify_signature(SECRET, body, Some("md5=abc")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(SECRET, body, Some("sha256=zz")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(b"other", body, Some(&sign(SECRET, body))),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(SECRET, br#"{"a":2}"#, Some(&sign(SECRET, body))),
            Err(SignatureError::Mismatch)
        );
    }

    fn delivery(messages: Value, statuses: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "waba", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550000000", "phone_number_id": "111"},
                "contacts": [{"profile": {"name": "Rudo"}, "wa_id": "263771000001"}],
                "messages": messages, "statuses": statuses
            }}]}]
        }))
        .unwrap_or_default()
    }

    #[test]
    fn every_message_and_status_of_a_delivery_becomes_an_item() {
        let body = delivery(
            json!([
                {"from": "263771000001", "id": "wamid.1", "timestamp": "1700000000", "type": "text", "text": {"body": "hi"}},
                {"from": "263771000001", "id": "wamid.2", "timestamp": "1700000001", "type": "image", "image": {"id": "media-1"}}
            ]),
            json!([{"id": "wamid.out", "status": "delivered", "timestamp": "1700000002", "recipient_id": "263771000001"}]),
        );
        let items = parse_delivery(&body).unwrap_or_default();
        let keys: Vec<_> = items.iter().map(|i| i.dedupe_key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "message:wamid.1",
                "message:wamid.2",
                "status:wamid.out:delivered:1700000002"
            ]
        );
        assert_eq!(items[0].payload["contact"]["profile"]["name"], "Rudo");
        assert!(items.iter().all(|i| i.phone_number_id == "111"));
    }

    #[test]
    fn a_message_without_an_id_refuses_the_whole_delivery() {
        let body = delivery(
            json!([{"from": "263771000001", "timestamp": "1700000000", "type": "text"}]),
            json!([]),
        );
        let err = parse_delivery(&body).err().map(|e| e.0).unwrap_or_default();
        assert!(err.contains("messages[0]") && err.contains("`id`"), "{err}");
    }

    #[test]
    fn a_sender_whose_number_is_withheld_is_taken_by_user_id() {
        let body = serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "waba", "changes": [{"field": "messages", "value": {
                "metadata": {"phone_number_id": "111"},
                "contacts": [{"profile": {"name": "Anon"}, "user_id": "US.13491208655302741918"}],
                "messages": [{"from_user_id": "US.13491208655302741918", "id": "wamid.u1", "timestamp": "1700000000", "type": "text", "text": {"body": "hi"}}],
                "statuses": [{"id": "wamid.o1", "status": "read", "timestamp": "1700000001", "recipient_user_id": "US.13491208655302741918"}]
            }}]}]
        }))
        .unwrap_or_default();
        let items = parse_delivery(&body).unwrap_or_default();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].payload["contact"]["profile"]["name"], "Anon");
        let none = delivery(
            json!([{"id": "wamid.x", "timestamp": "1700000000", "type": "text"}]),
            json!([]),
        );
        let err = parse_delivery(&none).err().map(|e| e.0).unwrap_or_default();
        assert!(err.contains("from_user_id"), "{err}");
    }

    #[test]
    fn timestamps_past_year_9999_are_refused() {
        let body = delivery(
            json!([{"from": "263771000001", "id": "wamid.1", "timestamp": "9223372036854775807", "type": "text"}]),
            json!([]),
        );
        let err = parse_delivery(&body).err().map(|e| e.0).unwrap_or_default();
        assert!(err.contains("timestamp"), "{err}");
    }

    #[test]
    fn non_json_and_foreign_objects_are_refused_with_a_reason() {
        assert!(parse_delivery(b"not json").is_err());
        assert!(parse_delivery(br#"{"object":"page","entry":[]}"#).is_err());
        assert!(parse_delivery(br#"{"object":"whatsapp_business_account"}"#).is_err());
        assert_eq!(
            parse_delivery(br#"{"object":"whatsapp_business_account","entry":[]}"#),
            Ok(vec![])
        );
    }
}
