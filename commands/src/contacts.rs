//! Contacts on the write side: registration (from inbound messages, calls, users), profile,
//! tags, custom fields, consent (including WhatsApp keywords) and erasure, with every personal
//! field sealed under the contact's data key before it becomes a command.
//!
//! Erasure ([`ContactService::erase`]) is two steps, in this order: `EraseContact` appends
//! `ContactErased` (the log keeps the fact, never the person); the contact's data key is
//! destroyed (`DELETE FROM contact_keys`), which turns every envelope of the contact in the log
//! into noise. The read models are the projectors' alone: each projector holding a person's
//! data (`contacts`, `conversations`, `messages` with notes and handover reasons, `calls`,
//! `leads`, `installations`) clears its own rows on `ContactErased`, and a rebuild projects
//! them empty since the key is gone. The hash chain is untouched: the events are not changed,
//! only made unreadable.
//!
//! Consent keywords: an inbound WhatsApp text whose whole body is `STOP` or `UNSUBSCRIBE`
//! (any case, surrounding spaces and punctuation ignored) opts the contact out, `START` opts
//! them back in, both with source `whatsapp_keyword` ([`consent_keyword`]).

use chronicle_domain::contact::{
    ConsentSource, ContactCommand, ContactError, ContactHandleKind, ContactSource, EraseContact, RegisterContact,
    UpdateContactProfile,
};
use chronicle_domain::metadata::CommandMetadata;
use chronicle_domain::phone::PhoneNumber;
use chronicle_domain::pii::{ContactHandle, Envelope, IdKey};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use rand::rngs::OsRng;
use sqlx::PgPool;

use crate::dispatch::{Appended, Commands};
use crate::error::{CommandError, DomainError};
use crate::keystore::KeyStore;

/// The ids among `contact_ids` that name no contact of `tenant`, in the order given: ids with
/// neither a `Contact` stream (a contact registered by a form, a call or a user) nor a
/// `Conversation` stream (a contact who wrote on WhatsApp). One statement over the log's
/// primary key, however many ids. Commands that name contacts (a campaign's recipients, an
/// order's customer) refuse these up front rather than fail when they run.
pub async fn unknown_contacts(
    pool: &PgPool,
    tenant: &TenantId,
    contact_ids: &[String],
) -> Result<Vec<String>, CommandError> {
    if contact_ids.is_empty() {
        return Ok(Vec::new());
    }
    let streams: Vec<String> = contact_ids.iter().map(|id| tenant.stream_id(id)).collect();
    let unknown: Vec<String> = sqlx::query_scalar(
        "SELECT u.id FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(id, stream, n)
          WHERE NOT EXISTS (SELECT 1 FROM events e
                             WHERE e.aggregate_type IN ('Contact', 'Conversation') AND e.aggregate_id = u.stream)
          ORDER BY u.n",
    )
    .bind(contact_ids)
    .bind(&streams)
    .fetch_all(pool)
    .await?;
    Ok(unknown)
}

/// What a contact is reached by, in the clear (sealed before it goes anywhere).
#[derive(Clone, PartialEq, Eq)]
pub enum Handle {
    /// An E.164 number.
    Phone(PhoneNumber),
    /// A provider's user id where the number is withheld (WhatsApp's business-scoped user id).
    ProviderUser { provider: String, user_id: String },
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Phone(_) => f.write_str("Handle::Phone(redacted)"),
            Self::ProviderUser { provider, .. } => write!(f, "Handle::ProviderUser({provider}, redacted)"),
        }
    }
}

/// A consent keyword found in an inbound text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentKeyword {
    /// `STOP`, `UNSUBSCRIBE`.
    OptOut,
    /// `START`.
    OptIn,
}

/// The consent keyword a text message is, if it is one: the whole body, case and surrounding
/// whitespace and punctuation ignored. "Stop!" is a keyword; "please stop calling" is not.
pub fn consent_keyword(text: &str) -> Option<ConsentKeyword> {
    let word = text
        .trim()
        .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .to_ascii_uppercase();
    match word.as_str() {
        "STOP" | "UNSUBSCRIBE" => Some(ConsentKeyword::OptOut),
        "START" => Some(ConsentKeyword::OptIn),
        _ => None,
    }
}

/// The write side of contacts.
#[derive(Clone, Debug)]
pub struct ContactService {
    pool: PgPool,
    commands: Commands,
    keys: KeyStore,
    ids: IdKey,
}

impl ContactService {
    /// A service appending through `commands`, sealing with `keys`.
    pub fn new(commands: Commands, keys: KeyStore) -> Self {
        Self {
            pool: commands.pool().clone(),
            ids: keys.master().id_key(),
            commands,
            keys,
        }
    }

    /// The key store (for callers sealing other fields of the same contact).
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The contact id of a handle within a tenant (a keyed hash).
    pub fn contact_id(&self, tenant: &TenantId, handle: &Handle) -> String {
        match handle {
            Handle::Phone(phone) => self.ids.contact_id(tenant, ContactHandle::Phone(phone)),
            Handle::ProviderUser { provider, user_id } => self
                .ids
                .contact_id(tenant, ContactHandle::ProviderUser { provider, user_id }),
        }
    }

    async fn seal(&self, tenant: &TenantId, contact_id: &str, plain: &str) -> Result<Envelope, CommandError> {
        let key = self.keys.key_for(tenant, contact_id).await?;
        Ok(key.seal(tenant, contact_id, plain, &mut OsRng))
    }

    /// A profile change with its value sealed: leave, clear (also for a blank value), or set.
    async fn seal_change(
        &self,
        tenant: &TenantId,
        contact_id: &str,
        change: Option<Option<&str>>,
    ) -> Result<Option<Option<Envelope>>, CommandError> {
        match change.map(|v| v.map(str::trim).filter(|v| !v.is_empty())) {
            None => Ok(None),
            Some(None) => Ok(Some(None)),
            Some(Some(v)) => Ok(Some(Some(self.seal(tenant, contact_id, v).await?))),
        }
    }

    /// The command to register a contact (sealing phone, user id and name), and its id.
    pub async fn registration(
        &self,
        tenant: &TenantId,
        handle: &Handle,
        name: Option<&str>,
        source: ContactSource,
        at: DateTime<Utc>,
    ) -> Result<(String, ContactCommand), CommandError> {
        let contact_id = self.contact_id(tenant, handle);
        let (kind, phone, provider_user_id) = match handle {
            Handle::Phone(phone) => (
                ContactHandleKind::Phone,
                Some(self.seal(tenant, &contact_id, phone.as_str()).await?),
                None,
            ),
            Handle::ProviderUser { user_id, .. } => (
                ContactHandleKind::ProviderUser,
                None,
                Some(self.seal(tenant, &contact_id, user_id).await?),
            ),
        };
        let name = match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => Some(self.seal(tenant, &contact_id, n).await?),
            None => None,
        };
        let command = ContactCommand::RegisterContact(RegisterContact {
            contact_id: contact_id.clone(),
            handle: kind,
            phone,
            provider_user_id,
            name,
            source,
            at,
        });
        Ok((contact_id, command))
    }

    /// Registers a contact (a repeat only fills in missing facts); returns its id.
    pub async fn register(
        &self,
        handle: &Handle,
        name: Option<&str>,
        source: ContactSource,
        at: DateTime<Utc>,
        metadata: &CommandMetadata,
    ) -> Result<String, CommandError> {
        let (contact_id, command) = self.registration(&metadata.tenant_id, handle, name, source, at).await?;
        self.run(&contact_id, command, metadata).await?;
        Ok(contact_id)
    }

    /// Runs a contact command. A command refused because the contact was erased drops a data
    /// key its sealing may have created meanwhile, so an erased contact keeps no key.
    pub async fn run(
        &self,
        contact_id: &str,
        command: ContactCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let result = self.commands.contact(contact_id, command, metadata).await;
        if matches!(
            result,
            Err(CommandError::Rejected(DomainError::Contact(
                ContactError::ContactErased
            )))
        ) {
            destroy_key(&self.pool, &metadata.tenant_id, contact_id).await?;
        }
        result
    }

    /// Sets, clears (`Some(None)`) or leaves (`None`) the name and email.
    pub async fn update_profile(
        &self,
        contact_id: &str,
        name: Option<Option<&str>>,
        email: Option<Option<&str>>,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let tenant = &metadata.tenant_id;
        let name = self.seal_change(tenant, contact_id, name).await?;
        let email = self.seal_change(tenant, contact_id, email).await?;
        let command = ContactCommand::UpdateContactProfile(UpdateContactProfile {
            name,
            email,
            at: Utc::now(),
        });
        self.run(contact_id, command, metadata).await
    }

    /// Sets a custom field (its value sealed: values may be personal).
    pub async fn set_custom_field(
        &self,
        contact_id: &str,
        key: &str,
        value: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let value = self.seal(&metadata.tenant_id, contact_id, value).await?;
        let command = ContactCommand::SetCustomField {
            key: key.to_string(),
            value,
        };
        self.run(contact_id, command, metadata).await
    }

    /// Records an opt-in or opt-out.
    pub async fn consent(
        &self,
        contact_id: &str,
        keyword: ConsentKeyword,
        source: ConsentSource,
        at: DateTime<Utc>,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = match keyword {
            ConsentKeyword::OptOut => ContactCommand::OptOut { source, at },
            ConsentKeyword::OptIn => ContactCommand::OptIn { source, at },
        };
        self.run(contact_id, command, metadata).await
    }

    /// Erases a contact: `EraseContact`, then the data key is destroyed (the projectors clear
    /// their rows on `ContactErased`). Repeating it changes nothing more.
    pub async fn erase(
        &self,
        contact_id: &str,
        requested_by: &str,
        metadata: &CommandMetadata,
    ) -> Result<(), CommandError> {
        let command = ContactCommand::EraseContact(EraseContact {
            requested_by: requested_by.to_string(),
            at: Utc::now(),
        });
        self.commands.contact(contact_id, command, metadata).await?;
        destroy_key(&self.pool, &metadata.tenant_id, contact_id).await?;
        tracing::info!(tenant.id = %metadata.tenant_id, contact.id = %contact_id, "contact erased; data key destroyed");
        Ok(())
    }
}

/// Destroys a contact's data key: every envelope sealed under it becomes unreadable.
pub async fn destroy_key(pool: &PgPool, tenant: &TenantId, contact_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM contact_keys WHERE tenant_id = $1 AND contact_id = $2")
        .bind(tenant.as_str())
        .bind(contact_id)
        .execute(pool)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_unsubscribe_and_start_are_keywords_whatever_their_case_and_punctuation() {
        assert_eq!(consent_keyword("STOP"), Some(ConsentKeyword::OptOut));
        assert_eq!(consent_keyword("  stop! "), Some(ConsentKeyword::OptOut));
        assert_eq!(consent_keyword("Unsubscribe"), Some(ConsentKeyword::OptOut));
        assert_eq!(consent_keyword("start"), Some(ConsentKeyword::OptIn));
    }

    #[test]
    fn a_sentence_containing_a_keyword_is_not_a_keyword() {
        assert_eq!(consent_keyword("please stop calling me"), None);
        assert_eq!(consent_keyword("start the installation"), None);
        assert_eq!(consent_keyword(""), None);
    }
}
