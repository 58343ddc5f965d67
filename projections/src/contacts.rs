//! The `contacts` read model: one row per contact with its profile (plaintext, opened from the
//! log's envelopes with the contact's data key), tags, custom fields, consent and the time of
//! its last inbound message. Written only by [`ContactsProjector`]; read by [`list`] and
//! [`get`].
//!
//! Erasure: on `ContactErased` the row's personal columns are cleared and the row is marked
//! erased (every projector holding a person's data clears its own rows on that event:
//! `shared::erased_contact`). The write side destroys the data key, so a rebuild after an
//! erasure projects those fields empty.

use std::collections::HashMap;

use chronicle_domain::contact::{ContactEvent, FieldChange};
use chronicle_domain::pii::{Envelope, MasterKey};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};

use crate::log::StoredEvent;
use crate::page::{read_cursor, time_cursor, BadCursor, Page};
use crate::runtime::{ProjectionError, Projector};
pub(crate) use crate::shared::{all_tenants, data_key, KeyCache};
use crate::shared::{begin_for_tenant, payload};

/// The projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "contacts";

/// The event types read: every contact event, and inbound messages (last contact time).
const EVENT_TYPES: &[&str] = &[
    "ContactRegistered",
    "ContactProfileUpdated",
    "ContactTagged",
    "ContactUntagged",
    "ContactCustomFieldSet",
    "ContactCustomFieldRemoved",
    "ContactOptedIn",
    "ContactOptedOut",
    "ContactErased",
    "MessageReceived",
];

/// The stream's local part (`<tenant>:<local>` → `<local>`).
pub(crate) fn local_id(event: &StoredEvent) -> String {
    event
        .aggregate_id
        .strip_prefix(&format!("{}:", event.tenant_id))
        .unwrap_or(&event.aggregate_id)
        .to_string()
}

pub(crate) fn tenant_of(event: &StoredEvent) -> Result<TenantId, ProjectionError> {
    TenantId::parse(&event.tenant_id).map_err(|e| ProjectionError::Handler {
        position: event.global_position,
        reason: e.to_string(),
    })
}

/// Folds `Contact` events (and inbound messages' times) into `contacts`.
pub struct ContactsProjector {
    master: MasterKey,
}

impl ContactsProjector {
    /// A projector opening envelopes with data keys unwrapped by `master`.
    pub fn new(master: MasterKey) -> Self {
        Self { master }
    }

    /// Notes an inbound message's time for its contact's `last_contact_at`, written by
    /// [`flush_messages`] (one statement for the batch).
    fn note_message(pending: &mut HashMap<(String, String), DateTime<Utc>>, event: &StoredEvent) {
        let contact_id = event.payload["MessageReceived"]["contact_id"]
            .as_str()
            .unwrap_or_default();
        let sent_at = event.payload["MessageReceived"]["sent_at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        if contact_id.is_empty() {
            return;
        }
        let at = sent_at.unwrap_or(event.recorded_at);
        pending
            .entry((event.tenant_id.clone(), contact_id.to_string()))
            .and_modify(|latest| *latest = (*latest).max(at))
            .or_insert(at);
    }

    async fn apply_one(
        &self,
        db: &mut PgConnection,
        keys: &mut KeyCache,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let parsed: ContactEvent = payload(event)?;
        let tenant = tenant_of(event)?;
        let contact_id = local_id(event);
        let key = data_key(db, &self.master, keys, &tenant, &contact_id).await?;
        let open = |e: &Envelope| key.as_ref().and_then(|k| k.open(&tenant, &contact_id, e).ok());
        let position = event.global_position;
        let at = event.recorded_at;
        // Every update below is guarded by the row's last position: applying twice is a no-op.
        let update = |sql: &'static str| {
            sqlx::query(sql)
                .bind(tenant.as_str().to_string())
                .bind(contact_id.clone())
                .bind(position)
                .bind(at)
        };
        match parsed {
            ContactEvent::ContactRegistered {
                handle,
                phone,
                provider_user_id,
                name,
                source,
                at: registered_at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO contacts (tenant_id, contact_id, handle_kind, phone, provider_user_id, name, source,
                            created_at, updated_at, last_position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (tenant_id, contact_id) DO NOTHING",
                )
                .bind(tenant.as_str())
                .bind(&contact_id)
                .bind(handle.as_str())
                .bind(phone.as_ref().and_then(open))
                .bind(provider_user_id.as_ref().and_then(open))
                .bind(name.as_ref().and_then(open))
                .bind(source.as_str())
                .bind(registered_at)
                .bind(at)
                .bind(position)
                .execute(&mut *db)
                .await?;
            }
            ContactEvent::ContactProfileUpdated {
                phone,
                provider_user_id,
                name,
                email,
                ..
            } => {
                let change = |c: Option<FieldChange<Envelope>>| match c {
                    None => (false, None),
                    Some(FieldChange::Cleared) => (true, None),
                    Some(FieldChange::Set(e)) => (true, open(&e)),
                };
                let (set_name, name) = change(name);
                let (set_email, email) = change(email);
                update(
                    "UPDATE contacts SET
                            phone = coalesce($5, phone),
                            provider_user_id = coalesce($6, provider_user_id),
                            name = CASE WHEN $7 THEN $8 ELSE name END,
                            email = CASE WHEN $9 THEN $10 ELSE email END,
                            updated_at = $4, last_position = $3
                      WHERE tenant_id = $1 AND contact_id = $2 AND last_position < $3",
                )
                .bind(phone.as_ref().and_then(open))
                .bind(provider_user_id.as_ref().and_then(open))
                .bind(set_name)
                .bind(name)
                .bind(set_email)
                .bind(email)
                .execute(&mut *db)
                .await?;
            }
            ContactEvent::ContactTagged { tag, .. } => {
                update(
                    "UPDATE contacts SET tags = array_append(array_remove(tags, $5), $5), updated_at = $4,
                            last_position = $3
                      WHERE tenant_id = $1 AND contact_id = $2 AND last_position < $3",
                )
                .bind(tag)
                .execute(&mut *db)
                .await?;
            }
            ContactEvent::ContactUntagged { tag, .. } => {
                update(
                    "UPDATE contacts SET tags = array_remove(tags, $5), updated_at = $4, last_position = $3
                      WHERE tenant_id = $1 AND contact_id = $2 AND last_position < $3",
                )
                .bind(tag)
                .execute(&mut *db)
                .await?;
            }
            ContactEvent::ContactCustomFieldSet { key: field, value, .. } => {
                update(
                    "UPDATE contacts SET custom_fields = custom_fields || jsonb_build_object($5::text, $6::text),
                            updated_at = $4, last_position = $3
                      WHERE tenant_id = $1 AND contact_id = $2 AND last_position < $3",
                )
                .bind(field)
                .bind(open(&value))
                .execute(&mut *db)
                .await?;
            }
            ContactEvent::ContactCustomFieldRemoved { key: field, .. } => {
                update(
                    "UPDATE contacts SET custom_fields = custom_fields - $5::text, updated_at = $4, last_position = $3
                      WHERE tenant_id = $1 AND contact_id = $2 AND last_position < $3",
                )
                .bind(field)
                .execute(&mut *db)
                .await?;
            }
            ContactEvent::ContactOptedIn { source, at: consent_at }
            | ContactEvent::ContactOptedOut { source, at: consent_at } => {
                let status = if event.event_type == "ContactOptedIn" {
                    "opted_in"
                } else {
                    "opted_out"
                };
                update(
                    "UPDATE contacts SET consent_status = $5, consent_source = $6, consent_at = $7, updated_at = $4,
                            last_position = $3
                      WHERE tenant_id = $1 AND contact_id = $2 AND last_position < $3",
                )
                .bind(status)
                .bind(source.as_str())
                .bind(consent_at)
                .execute(&mut *db)
                .await?;
            }
            ContactEvent::ContactErased { at: erased_at, .. } => {
                // An erasure of a contact never registered here still leaves a row saying so.
                sqlx::query(
                    "INSERT INTO contacts AS c (tenant_id, contact_id, handle_kind, source, erased_at, created_at,
                            updated_at, last_position)
                     VALUES ($1, $2, 'phone', 'manual', $5, $4, $4, $3)
                     ON CONFLICT (tenant_id, contact_id) DO UPDATE SET
                            phone = NULL, provider_user_id = NULL, name = NULL, email = NULL,
                            custom_fields = '{}', erased_at = $5, updated_at = $4, last_position = $3
                      WHERE c.last_position < $3",
                )
                .bind(tenant.as_str())
                .bind(&contact_id)
                .bind(position)
                .bind(at)
                .bind(erased_at)
                .execute(&mut *db)
                .await?;
            }
        }
        Ok(())
    }
}

/// Moves each contact's `last_contact_at` to the latest of `pending`'s times, in one statement,
/// and empties it. Idempotent without a position guard: `greatest` of the same time changes
/// nothing, and `greatest` over a batch's times is the one-by-one `greatest` of each.
async fn flush_messages(
    db: &mut PgConnection,
    pending: &mut HashMap<(String, String), DateTime<Utc>>,
) -> Result<(), ProjectionError> {
    if pending.is_empty() {
        return Ok(());
    }
    let rows: Vec<((String, String), DateTime<Utc>)> = pending.drain().collect();
    sqlx::query(
        "UPDATE contacts c SET last_contact_at = greatest(c.last_contact_at, u.a)
           FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(t, k, a)
          WHERE c.tenant_id = u.t AND c.contact_id = u.k AND c.erased_at IS NULL",
    )
    .bind(rows.iter().map(|r| r.0 .0.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.0 .1.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
    .execute(&mut *db)
    .await?;
    Ok(())
}

impl Projector for ContactsProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        EVENT_TYPES
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [&'a StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            all_tenants(tx).await?;
            let mut keys = KeyCache::new();
            let contacts: Vec<(TenantId, String)> = events
                .iter()
                .filter(|e| e.aggregate_type == "Contact")
                .filter_map(|e| tenant_of(e).ok().map(|t| (t, local_id(e))))
                .collect();
            crate::shared::prefetch_keys(
                tx,
                &self.master,
                &mut keys,
                contacts.iter().map(|(t, c)| (t, c.as_str())),
            )
            .await?;
            // Inbound messages' times, folded per contact (the latest); written before any event
            // of a contact they touch, so the order of effects on each row is the log's.
            let mut messages = HashMap::new();
            for event in events {
                match event.aggregate_type.as_str() {
                    "Contact" => {
                        if messages.contains_key(&(event.tenant_id.clone(), local_id(event))) {
                            flush_messages(tx, &mut messages).await?;
                        }
                        self.apply_one(tx, &mut keys, event).await?
                    }
                    "Conversation" if event.event_type == "MessageReceived" => Self::note_message(&mut messages, event),
                    _ => {}
                }
            }
            flush_messages(tx, &mut messages).await?;
            Ok(())
        })
    }

    fn tables(&self) -> &'static [&'static str] {
        &["contacts"]
    }
}

/// One contact as dashboards see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContactRow {
    pub contact_id: String,
    pub handle_kind: String,
    pub phone: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub source: String,
    pub tags: Vec<String>,
    pub custom_fields: Value,
    pub consent_status: String,
    pub consent_source: Option<String>,
    pub consent_at: Option<DateTime<Utc>>,
    pub last_contact_at: Option<DateTime<Utc>>,
    pub erased: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Filters of [`list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactFilter {
    /// A substring of the name (case-insensitive) or of the phone number (digits compared).
    pub search: Option<String>,
    /// Only contacts carrying this tag (normalized by the caller).
    pub tag: Option<String>,
}

const COLUMNS: &str = "contact_id, handle_kind, phone, name, email, source, tags, custom_fields, consent_status,
     consent_source, consent_at, last_contact_at, erased_at, created_at, updated_at";

fn row(r: &sqlx::postgres::PgRow) -> Result<ContactRow, sqlx::Error> {
    Ok(ContactRow {
        contact_id: r.try_get("contact_id")?,
        handle_kind: r.try_get("handle_kind")?,
        phone: r.try_get("phone")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        source: r.try_get("source")?,
        tags: r.try_get("tags")?,
        custom_fields: r.try_get("custom_fields")?,
        consent_status: r.try_get("consent_status")?,
        consent_source: r.try_get("consent_source")?,
        consent_at: r.try_get("consent_at")?,
        last_contact_at: r.try_get("last_contact_at")?,
        erased: r.try_get::<Option<DateTime<Utc>>, _>("erased_at")?.is_some(),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Escapes `%`, `_` and `\` for a LIKE pattern.
fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The conditions of a [`ContactFilter`] ($1 the tenant, $2 and $3 the [`search_patterns`], $4
/// the tag), shared by [`list`] and [`count`].
const FILTERS: &str = "tenant_id = $1
            AND ($2::text IS NULL OR name ILIKE $2 OR ($3::text IS NOT NULL AND phone LIKE $3))
            AND ($4::text IS NULL OR tags @> ARRAY[$4::text])";

/// The LIKE patterns of a search: the name (case-insensitive substring) and the digits of a
/// phone number, each `None` when the search has none.
fn search_patterns(filter: &ContactFilter) -> (Option<String>, Option<String>) {
    let search = filter.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let name_pattern = search.map(|s| format!("%{}%", like_escape(s)));
    let digits: Option<String> = search
        .map(|s| s.chars().filter(char::is_ascii_digit).collect::<String>())
        .filter(|d| !d.is_empty());
    (name_pattern, digits.map(|d| format!("%{d}%")))
}

/// Lists one tenant's contacts, newest first, optionally searched and by tag, after a cursor.
/// Erased contacts are listed with their personal fields empty.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &ContactFilter,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<ContactRow>, BadCursor>, sqlx::Error> {
    let after = match after.map(read_cursor::<i64, String>).transpose() {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let (after_micros, after_id) = after.unwrap_or((i64::MAX, String::new()));
    let first = first.clamp(1, 100);
    let (name_pattern, phone_pattern) = search_patterns(filter);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS}
           FROM contacts
          WHERE {FILTERS}
            AND ((extract(epoch FROM created_at) * 1000000)::bigint, contact_id)
                < ($5::bigint, CASE WHEN $6 = '' THEN chr(1114111) ELSE $6 END)
          ORDER BY created_at DESC, contact_id DESC
          LIMIT $7"
    ))
    .bind(tenant.as_str())
    .bind(name_pattern)
    .bind(phone_pattern)
    .bind(filter.tag.as_deref())
    .bind(after_micros)
    .bind(&after_id)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Page::of(&rows, first, |r| {
        row(r).map(|c| (time_cursor(c.created_at, &c.contact_id), c))
    })?))
}

/// How many of one tenant's contacts [`list`] holds with `filter` (every page together).
pub async fn count(pool: &PgPool, tenant: &TenantId, filter: &ContactFilter) -> Result<i64, sqlx::Error> {
    let (name_pattern, phone_pattern) = search_patterns(filter);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let n = sqlx::query_scalar(&format!("SELECT count(*) FROM contacts WHERE {FILTERS}"))
        .bind(tenant.as_str())
        .bind(name_pattern)
        .bind(phone_pattern)
        .bind(filter.tag.as_deref())
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// One contact of a tenant.
pub async fn get(pool: &PgPool, tenant: &TenantId, contact_id: &str) -> Result<Option<ContactRow>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let found = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM contacts WHERE tenant_id = $1 AND contact_id = $2"
    ))
    .bind(tenant.as_str())
    .bind(contact_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    found.as_ref().map(row).transpose()
}
