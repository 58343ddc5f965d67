//! The event catalogue (issue 13): every event type with its aggregate type, version and the
//! JSON Schema of its data as integrators receive it (the event contract's `data`), generated
//! from the Rust types of the events with `schemars`.
//!
//! The contract's data is an event's payload without the enum wrapper, so the schema of an
//! event type is its variant's schema. Personal fields are envelopes in the log and opened
//! values or absent in the contract: their schema accepts any value, is marked
//! `x-chronicle-personal`, and such fields are never `required`.
//!
//! Served by the API at `GET /events/catalogue` and written to `docs/events/catalogue.json`
//! (a test keeps the file equal to this).

use serde_json::{json, Map, Value};

/// The JSON Schema dialect of the catalogue.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The catalogue: `{"$schema", "title", "contractVersion", "eventTypes": {<type>: {
/// "aggregateType", "version", "schema", "changes"?}}}`, types in name order. `version` is the
/// current version of the type's data (every event is read at it, whatever version it was
/// stored at); `changes` lists the upcasts that brought older versions to it
/// (`crate::upcast`), absent when the type never changed.
pub fn catalogue() -> Value {
    let mut types = Map::new();
    add::<crate::api_key::ApiKeyEvent>("ApiKey", &mut types);
    add::<crate::call::AutomationRulesEvent>("AutomationRules", &mut types);
    add::<crate::call::CallEvent>("Call", &mut types);
    add::<crate::campaign::CampaignEvent>("Campaign", &mut types);
    add::<crate::contact::ContactEvent>("Contact", &mut types);
    add::<crate::conversation::ConversationEvent>("Conversation", &mut types);
    add::<crate::installation::InstallationEvent>("InstallationRecord", &mut types);
    add::<crate::lead::LeadEvent>("Lead", &mut types);
    add::<crate::installation::MaintenanceEvent>("MaintenanceContract", &mut types);
    add::<crate::media::MediaEvent>("Media", &mut types);
    add::<crate::installation::OrderEvent>("Order", &mut types);
    add::<crate::payment::PaymentEvent>("Payment", &mut types);
    add::<crate::payment_provider::PaymentProviderEvent>("PaymentProviderConfig", &mut types);
    add::<crate::payment_request::PaymentRequestEvent>("PaymentRequest", &mut types);
    add::<crate::installation::PayoutEvent>("Payout", &mut types);
    add::<crate::installation::ServiceEvent>("ServiceRequest", &mut types);
    add::<crate::template::TemplateEvent>("Template", &mut types);
    add::<crate::user::UserEvent>("User", &mut types);
    add::<crate::wallet::WalletEvent>("Wallet", &mut types);
    add::<crate::installation::WarrantyEvent>("Warranty", &mut types);
    add::<crate::installation::ClaimEvent>("WarrantyClaim", &mut types);
    add::<crate::webhook::WebhookEvent>("WebhookEndpoint", &mut types);
    let sorted: Map<String, Value> = {
        let mut entries: Vec<(String, Value)> = types.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.into_iter().collect()
    };
    json!({
        "$schema": DIALECT,
        "title": "Chronicle's event catalogue",
        "description": "Every event type with its aggregate type, the current version of its data (events stored at an older version are upcast and read at it; `changes` says what changed) and the JSON Schema of its data in the event contract (version 1). Personal fields (x-chronicle-personal) are present only for readers allowed personal data.",
        "contractVersion": "1",
        "eventTypes": sorted,
    })
}

/// Adds each variant of the event enum `E` of `aggregate` to `types`.
fn add<E: schemars::JsonSchema>(aggregate: &str, types: &mut Map<String, Value>) {
    let root = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<E>()
        .to_value();
    let mut defs = root.get("$defs").cloned();
    if let Some(defs) = defs.as_mut() {
        relax(defs);
    }
    let variants = root
        .get("oneOf")
        .or_else(|| root.get("anyOf"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| vec![root.clone()]);
    for variant in variants {
        let mut found: Vec<(String, Value)> = Vec::new();
        if let Some(properties) = variant.get("properties").and_then(Value::as_object) {
            for (name, schema) in properties {
                found.push((name.clone(), schema.clone()));
            }
        }
        let unit_names = variant
            .get("enum")
            .and_then(Value::as_array)
            .cloned()
            .or_else(|| variant.get("const").map(|c| vec![c.clone()]))
            .unwrap_or_default();
        for name in unit_names.iter().filter_map(Value::as_str) {
            found.push((name.to_string(), json!({"type": "object"})));
        }
        for (name, mut schema) in found {
            relax(&mut schema);
            if let (Some(object), Some(defs)) = (schema.as_object_mut(), defs.as_ref()) {
                object.insert("$defs".into(), defs.clone());
            }
            if let Some(object) = schema.as_object_mut() {
                object.insert("$schema".into(), json!(DIALECT));
                object.insert("title".into(), json!(name));
            }
            let mut entry = json!({
                "aggregateType": aggregate,
                "version": crate::upcast::current_version(&name),
                "schema": schema,
            });
            let changes: Vec<Value> = crate::upcast::history(&name)
                .map(|step| json!({"from": step.from, "to": step.to, "change": step.change}))
                .collect();
            if !changes.is_empty() {
                entry["changes"] = Value::Array(changes);
            }
            types.insert(name, entry);
        }
    }
}

/// Whether a property's schema is a personal field (directly, or as one choice of several:
/// an optional personal field).
fn is_personal(schema: &Value) -> bool {
    if schema.get("x-chronicle-personal") == Some(&Value::Bool(true)) {
        return true;
    }
    ["anyOf", "oneOf"].iter().any(|key| {
        schema
            .get(*key)
            .and_then(Value::as_array)
            .is_some_and(|choices| choices.iter().any(is_personal))
    })
}

/// Personal fields are never required (they are absent for readers without personal data).
fn relax(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let personal: Vec<String> = map
                .get("properties")
                .and_then(Value::as_object)
                .map(|properties| {
                    properties
                        .iter()
                        .filter(|(_, schema)| is_personal(schema))
                        .map(|(name, _)| name.clone())
                        .collect()
                })
                .unwrap_or_default();
            if let Some(Value::Array(required)) = map.get_mut("required") {
                required.retain(|name| name.as_str().is_none_or(|n| !personal.iter().any(|p| p == n)));
            }
            for inner in map.values_mut() {
                relax(inner);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(relax),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_of_the_domain_has_a_schema_and_nothing_else_does() {
        let catalogue = catalogue();
        let listed: Vec<&str> = catalogue["eventTypes"]
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut expected: Vec<&str> = crate::aggregates::EVENT_TYPES
            .iter()
            .flat_map(|(_, types)| types.iter().copied())
            .collect();
        expected.sort_unstable();
        assert_eq!(listed, expected);
        for (aggregate, types) in crate::aggregates::EVENT_TYPES {
            for t in *types {
                assert_eq!(catalogue["eventTypes"][t]["aggregateType"], json!(aggregate), "{t}");
            }
        }
    }

    #[test]
    fn personal_fields_are_marked_and_never_required() {
        let catalogue = catalogue();
        let received = &catalogue["eventTypes"]["MessageReceived"]["schema"];
        assert_eq!(
            received["properties"]["contact_phone"]["x-chronicle-personal"], true,
            "{received}"
        );
        let required: Vec<&str> = received["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(required.contains(&"contact_id"), "{required:?}");
        assert!(
            !required.contains(&"contact_phone") && !required.contains(&"content"),
            "{required:?}"
        );
    }
}
