//! What every projector shares: the row-level-security scope of its transaction, and the
//! contacts' data keys it opens envelopes with (cached per batch).

use std::collections::HashMap;

use chronicle_domain::pii::{DataKey, MasterKey};
use chronicle_domain::tenant::TenantId;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::runtime::ProjectionError;

/// Data keys looked up in one batch, by (tenant, contact id); `None`: erased.
pub(crate) type KeyCache = HashMap<(String, String), Option<DataKey>>;

/// The data key of a contact, unwrapped with `master`; `None` when it was erased (or does not
/// unwrap under this master key, which projects like an erased one: the fields stay empty rather
/// than the projector stopping).
pub(crate) async fn data_key(
    db: &mut PgConnection,
    master: &MasterKey,
    cache: &mut KeyCache,
    tenant: &TenantId,
    key_id: &str,
) -> Result<Option<DataKey>, ProjectionError> {
    let cache_key = (tenant.to_string(), key_id.to_string());
    if let Some(found) = cache.get(&cache_key) {
        return Ok(found.clone());
    }
    let wrapped: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT wrapped_key FROM contact_keys WHERE tenant_id = $1 AND contact_id = $2")
            .bind(tenant.as_str())
            .bind(key_id)
            .fetch_optional(&mut *db)
            .await?;
    let key = wrapped.and_then(|w| master.unwrap_key(&w, tenant, key_id).ok());
    cache.insert(cache_key, key.clone());
    Ok(key)
}

/// Looks up the data keys of every `(tenant, contact id)` in `wanted` that `cache` lacks, in one
/// statement, and caches them (`None`: erased or not unwrapping, as [`data_key`] would). Later
/// [`data_key`] calls for them are answered from the cache.
pub(crate) async fn prefetch_keys<'w>(
    db: &mut PgConnection,
    master: &MasterKey,
    cache: &mut KeyCache,
    wanted: impl IntoIterator<Item = (&'w TenantId, &'w str)>,
) -> Result<(), ProjectionError> {
    let mut tenants = Vec::new();
    let mut contacts = Vec::new();
    let mut asked = HashMap::new();
    for (tenant, contact_id) in wanted {
        let cache_key = (tenant.to_string(), contact_id.to_string());
        if cache.contains_key(&cache_key) || asked.contains_key(&cache_key) {
            continue;
        }
        tenants.push(cache_key.0.clone());
        contacts.push(cache_key.1.clone());
        asked.insert(cache_key, tenant.clone());
    }
    if tenants.is_empty() {
        return Ok(());
    }
    let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT k.tenant_id, k.contact_id, k.wrapped_key
           FROM contact_keys k JOIN unnest($1::text[], $2::text[]) AS w(tenant_id, contact_id)
             ON k.tenant_id = w.tenant_id AND k.contact_id = w.contact_id",
    )
    .bind(&tenants)
    .bind(&contacts)
    .fetch_all(&mut *db)
    .await?;
    let mut found = HashMap::with_capacity(rows.len());
    for (tenant_id, contact_id, wrapped) in rows {
        found.insert((tenant_id, contact_id), wrapped);
    }
    for (cache_key, tenant) in asked {
        let key = found
            .get(&cache_key)
            .and_then(|w| master.unwrap_key(w, &tenant, &cache_key.1).ok());
        cache.insert(cache_key, key);
    }
    Ok(())
}

/// Lets this transaction write every tenant's rows (row-level security, migration 0007). Only
/// projectors do this; queries use [`begin_for_tenant`].
pub(crate) async fn all_tenants(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('chronicle.tenant_id', '*', true)")
        .execute(&mut *tx)
        .await
        .map(|_| ())
}

/// Begins a transaction scoped to one tenant (as `for_tenant` does) in one round trip: `BEGIN`
/// and the `set_config` go out together as one simple query. The tenant is written into that
/// query as a literal, which [`TenantId`] makes safe (it is only `[a-z0-9_-]`, checked again
/// here: anything else takes the two-round-trip path with a bound parameter).
///
/// A read that ends by dropping the transaction instead of committing it (see
/// [`end_read`]) costs one round trip less again.
pub async fn begin_for_tenant(pool: &PgPool, tenant: &TenantId) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let id = tenant.as_str();
    if id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        pool.begin_with(format!("BEGIN; SELECT set_config('chronicle.tenant_id', '{id}', true)"))
            .await
    } else {
        let mut tx = pool.begin().await?;
        for_tenant(&mut tx, tenant).await?;
        Ok(tx)
    }
}

/// Ends a read-only transaction: dropping it queues its `ROLLBACK`, which reaches the server
/// together with the pool's check of the returned connection (one round trip, off the
/// caller's path) instead of a `COMMIT` of its own. A transaction that wrote nothing ends the
/// same either way; never use this after a write.
pub fn end_read(tx: Transaction<'static, Postgres>) {
    drop(tx);
}

/// Scopes this transaction's read-model access to one tenant (row-level security, migration
/// 0007), the second wall behind each query's own tenant filter.
pub async fn for_tenant(tx: &mut PgConnection, tenant: &TenantId) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('chronicle.tenant_id', $1, true)")
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await
        .map(|_| ())
}

/// An event's payload as the aggregate's event type `T`; a payload that does not decode stops
/// the projector at this event's position (a bug or a missing upcaster, never skipped).
pub(crate) fn payload<T: serde::de::DeserializeOwned>(event: &crate::log::StoredEvent) -> Result<T, ProjectionError> {
    serde_json::from_value(event.payload.clone()).map_err(|e| ProjectionError::Handler {
        position: event.global_position,
        reason: format!("the payload of a {} event does not decode: {e}", event.aggregate_type),
    })
}

/// The event on which every read model holding a person's data clears it (the contact's
/// `ContactErased`): each projector clears its own rows, nobody else writes them.
pub(crate) const CONTACT_ERASED: &str = "ContactErased";

/// `types` with [`CONTACT_ERASED`] added, for a projector that holds a person's data.
pub(crate) fn with_erasure(types: &[&'static str]) -> Vec<&'static str> {
    let mut all = types.to_vec();
    all.push(CONTACT_ERASED);
    all
}

/// The tenant and the contact id an erasure names, or `None` for any other event. (A contact's
/// id is also its conversation's id.)
pub(crate) fn erased_contact(event: &crate::log::StoredEvent) -> Option<(String, String)> {
    if event.event_type != CONTACT_ERASED || event.aggregate_type != "Contact" {
        return None;
    }
    let local = event
        .aggregate_id
        .strip_prefix(&format!("{}:", event.tenant_id))
        .unwrap_or(&event.aggregate_id);
    Some((event.tenant_id.clone(), local.to_string()))
}

/// Runs `statements` (each with `$1` the tenant and `$2` the contact id) for an erasure.
pub(crate) async fn clear_person(
    tx: &mut PgConnection,
    tenant: &str,
    contact_id: &str,
    statements: &[&str],
) -> Result<(), ProjectionError> {
    for statement in statements {
        sqlx::query(statement)
            .bind(tenant)
            .bind(contact_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// A projector's `reset`: every row of `tables`, of every tenant, deleted in the rebuild's
/// transaction.
pub(crate) async fn clear_tables(
    tx: &mut PgConnection,
    tables: &'static [&'static str],
) -> Result<(), ProjectionError> {
    all_tenants(tx).await?;
    for table in tables {
        sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
    }
    Ok(())
}

/// What a person reads in an inbound WhatsApp message, from the provider's object for its kind
/// (the log keeps that object whole, sealed): a text's body; an image's, video's, audio's or
/// sticker's caption, a document's caption or else its file name; a location's name, else its
/// address, else its coordinates; a quick reply button's text; an interactive reply's title; a
/// reaction's emoji; the names of shared contacts. `None` when the kind carries no text (an
/// image without a caption). Content that is not a JSON object is taken as the text itself.
pub fn inbound_text(kind: &str, content: &str) -> Option<String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(content) else {
        return Some(content.to_string());
    };
    if !value.is_object() && !value.is_array() {
        return value.as_str().map(str::to_string).or_else(|| Some(content.to_string()));
    }
    let text = |v: &serde_json::Value| v.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    match kind {
        "text" => text(&value["body"]),
        "image" | "video" | "audio" | "sticker" => text(&value["caption"]),
        "document" => text(&value["caption"]).or_else(|| text(&value["filename"])),
        "location" => text(&value["name"]).or_else(|| text(&value["address"])).or_else(|| {
            match (value["latitude"].as_f64(), value["longitude"].as_f64()) {
                (Some(lat), Some(long)) => Some(format!("{lat}, {long}")),
                _ => None,
            }
        }),
        "button" => text(&value["text"]),
        "interactive" => text(&value["button_reply"]["title"]).or_else(|| text(&value["list_reply"]["title"])),
        "reaction" => text(&value["emoji"]),
        "contacts" => {
            let names: Vec<String> = value
                .as_array()
                .map(|cards| {
                    cards
                        .iter()
                        .filter_map(|c| text(&c["name"]["formatted_name"]))
                        .collect()
                })
                .unwrap_or_default();
            (!names.is_empty()).then(|| names.join(", "))
        }
        _ => None,
    }
}

#[cfg(test)]
mod inbound_text_tests {
    use super::inbound_text;

    #[test]
    fn each_kind_reads_as_the_text_a_person_sees() {
        assert_eq!(
            inbound_text("text", r#"{"body":"Hello there"}"#).as_deref(),
            Some("Hello there")
        );
        assert_eq!(
            inbound_text("image", r#"{"id":"m1","mime_type":"image/jpeg","caption":"Roof"}"#).as_deref(),
            Some("Roof")
        );
        assert_eq!(inbound_text("image", r#"{"id":"m1","mime_type":"image/jpeg"}"#), None);
        assert_eq!(
            inbound_text("document", r#"{"id":"m2","filename":"quote.pdf"}"#).as_deref(),
            Some("quote.pdf")
        );
        assert_eq!(
            inbound_text("location", r#"{"latitude":-17.8,"longitude":31.05}"#).as_deref(),
            Some("-17.8, 31.05")
        );
        assert_eq!(
            inbound_text("location", r#"{"latitude":-17.8,"longitude":31.05,"name":"Site"}"#).as_deref(),
            Some("Site")
        );
        assert_eq!(
            inbound_text("button", r#"{"payload":"p","text":"Yes"}"#).as_deref(),
            Some("Yes")
        );
        assert_eq!(
            inbound_text(
                "interactive",
                r#"{"type":"list_reply","list_reply":{"id":"1","title":"Tuesday"}}"#
            )
            .as_deref(),
            Some("Tuesday")
        );
        assert_eq!(
            inbound_text("reaction", r#"{"message_id":"w","emoji":"👍"}"#).as_deref(),
            Some("👍")
        );
        assert_eq!(
            inbound_text(
                "contacts",
                r#"[{"name":{"formatted_name":"Ann"}},{"name":{"formatted_name":"Bo"}}]"#
            )
            .as_deref(),
            Some("Ann, Bo")
        );
        assert_eq!(inbound_text("text", "plain words").as_deref(), Some("plain words"));
        assert_eq!(inbound_text("unsupported", r#"{"errors":[]}"#), None);
    }
}
