//! The write side of leads: capture with duplicate detection, and every other lead command with
//! the bookkeeping of the duplicate index (DOMAIN.md, "Leads and sales").
//!
//! # Duplicate detection
//!
//! `lead_identities` maps the keyed hashes ([`IdKey::contact_id`]) of a prospect's phone number
//! and e-mail address to the lead they last belonged to, with whether that lead is open. A
//! capture:
//!
//! 1. seals its personal fields (name, phone, e-mail, the raw data) with the data key of the
//!    contact it names: the phone number's contact, else the e-mail address's;
//! 2. in one transaction, claims its capture reference in `lead_captures` (a repeat answers with
//!    the first outcome and sends nothing), then locks the identity rows of its phone and e-mail,
//!    creating them if new, in a fixed order (so two captures never deadlock);
//! 3. sends `AttachDuplicateCapture` to the open lead its phone (else its e-mail) maps to, or,
//!    when none is open (or the aggregate says the lead has closed meanwhile), `CaptureLead` to
//!    a new stream whose id derives from the capture reference (so even a retry after a crash
//!    lands on the same stream, where the aggregate's own dedupe makes it a no-op);
//! 4. points the identity rows at the lead and commits.
//!
//! The locked rows serialize captures of one prospect: two identical captures at once make one
//! lead and one duplicate. Winning or losing a lead through [`Leads::run`] marks its rows closed;
//! reopening it marks the rows that still point at it open again.
//!
//! The transaction holds a pooled connection while the command runs on another; the pool (20
//! connections) bounds how many captures can be decided at once.

use chronicle_domain::lead::{BudgetRange, Capture, Lead, LeadCommand, LeadError, LeadSource, Priority, PropertyType};
use chronicle_domain::metadata::CommandMetadata;
use chronicle_domain::phone::PhoneNumber;
use chronicle_domain::pii::{ContactHandle, DataKey, IdKey};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateError, EventStore};
use postgres_es::PostgresEventRepository;
use rand::rngs::OsRng;
use sqlx::Row;
use tracing::Instrument;

use crate::dispatch::Commands;
use crate::error::{CommandError, DomainError};
use crate::keystore::KeyStore;

/// A prospect as received, personal fields still in the clear (they are sealed here, before
/// anything is stored).
#[derive(Clone, PartialEq)]
pub struct LeadInput {
    /// The caller's idempotency key: a form's submission id, a manual capture's key.
    pub capture_ref: String,
    pub source: LeadSource,
    pub name: Option<String>,
    pub phone: Option<PhoneNumber>,
    /// Normalized with [`normalize_email`].
    pub email: Option<String>,
    /// The data exactly as received, as JSON text.
    pub raw: String,
    pub interest: Option<String>,
    pub priority: Priority,
    pub property_type: Option<PropertyType>,
    pub estimated_system_size_w: Option<u32>,
    pub budget: Option<BudgetRange>,
    pub at: DateTime<Utc>,
}

impl std::fmt::Debug for LeadInput {
    /// Personal fields are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeadInput")
            .field("capture_ref", &self.capture_ref)
            .field("source", &self.source)
            .field("has_phone", &self.phone.is_some())
            .field("has_email", &self.email.is_some())
            .finish_non_exhaustive()
    }
}

/// What a capture did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureOutcome {
    /// A new lead was captured.
    Captured,
    /// The capture was attached to the prospect's open lead.
    Attached,
    /// The capture reference was seen before: nothing new, the first outcome's lead.
    Repeated,
}

impl CaptureOutcome {
    /// The outcome as shown to callers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Captured => "captured",
            Self::Attached => "attached",
            Self::Repeated => "repeated",
        }
    }
}

/// The lead a capture went to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The lead's local id (`lead_<uuid>`).
    pub lead_id: String,
    pub outcome: CaptureOutcome,
}

/// Normalizes an e-mail address (trimmed, lower-case) and checks its shape: one `@`, a local
/// part, a domain with a dot, no spaces, at most 254 characters.
pub fn normalize_email(address: &str) -> Result<String, CommandError> {
    let email = address.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid {
        Ok(email)
    } else {
        Err(CommandError::InvalidInput("not an e-mail address".into()))
    }
}

/// Whether `id` has the shape of a lead's local id.
pub fn is_lead_id(id: &str) -> bool {
    id.strip_prefix("lead_")
        .is_some_and(|u| uuid::Uuid::parse_str(u).is_ok())
}

/// The lead commands.
#[derive(Clone, Debug)]
pub struct Leads {
    commands: Commands,
    keys: KeyStore,
    ids: IdKey,
}

impl Leads {
    /// Lead commands over a dispatcher and the contacts' key store.
    pub fn new(commands: Commands, keys: KeyStore) -> Self {
        let ids = keys.master().id_key();
        Self { commands, keys, ids }
    }

    /// The stream id (local part) of the lead a capture reference makes when it makes one:
    /// stable, so a retried capture finds its stream again.
    pub fn new_lead_id(&self, tenant: &TenantId, capture_ref: &str) -> String {
        let digest = self.ids.dedupe_key("lead", &format!("{tenant}\u{0}{capture_ref}"));
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(digest.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
        }
        format!("lead_{}", uuid::Uuid::from_bytes(bytes))
    }

    /// The contact id (and data-key subject) of a prospect: its phone's, else its e-mail's.
    fn contact_ids(&self, tenant: &TenantId, input: &LeadInput) -> (Option<String>, Option<String>) {
        let phone = input
            .phone
            .as_ref()
            .map(|p| self.ids.contact_id(tenant, ContactHandle::Phone(p)));
        let email = input
            .email
            .as_deref()
            .map(|e| self.ids.contact_id(tenant, ContactHandle::Email(e)));
        (phone, email)
    }

    async fn seal(&self, tenant: &TenantId, contact_id: &str, input: &LeadInput) -> Result<Capture, CommandError> {
        let key: DataKey = self.keys.key_for(tenant, contact_id).await?;
        let seal = |text: &str| key.seal(tenant, contact_id, text, &mut OsRng);
        Ok(Capture {
            capture_ref: input.capture_ref.clone(),
            source: input.source,
            contact_id: Some(contact_id.to_string()),
            name: input.name.as_deref().map(seal),
            phone: input.phone.as_ref().map(|p| seal(p.as_str())),
            email: input.email.as_deref().map(seal),
            raw: seal(&input.raw),
            interest: input.interest.clone(),
            priority: input.priority,
            property_type: input.property_type,
            estimated_system_size_w: input.estimated_system_size_w,
            budget: input.budget.clone(),
            at: input.at,
        })
    }

    /// Captures a prospect: attaches it to its open lead (same phone or e-mail in the tenant) or
    /// captures a new lead. Idempotent by the capture reference.
    pub async fn capture(&self, input: LeadInput, metadata: &CommandMetadata) -> Result<Captured, CommandError> {
        let span = tracing::info_span!(
            "lead.capture",
            tenant.id = %metadata.tenant_id,
            correlation.id = %metadata.correlation_id,
            lead.source = input.source.as_str(),
        );
        self.capture_inner(input, metadata).instrument(span).await
    }

    async fn capture_inner(&self, input: LeadInput, metadata: &CommandMetadata) -> Result<Captured, CommandError> {
        let tenant = &metadata.tenant_id;
        if input.capture_ref.trim().is_empty() {
            return Err(DomainError::Lead(LeadError::MissingCaptureRef).into());
        }
        let (phone_id, email_id) = self.contact_ids(tenant, &input);
        let Some(contact_id) = phone_id.clone().or_else(|| email_id.clone()) else {
            return Err(CommandError::InvalidInput(
                "a lead needs a phone number or an e-mail address".into(),
            ));
        };
        let capture = self.seal(tenant, &contact_id, &input).await?;
        let fresh_id = self.new_lead_id(tenant, &input.capture_ref);

        let mut tx = self.commands.pool().begin().await?;
        // 1. The capture reference: a repeat answers with the first outcome. A concurrent
        //    capture with the same reference waits here until the first commits.
        let claimed = sqlx::query(
            "INSERT INTO lead_captures AS c (tenant_id, capture_ref, lead_id, outcome) VALUES ($1, $2, $3, 'captured')
             ON CONFLICT (tenant_id, capture_ref) DO UPDATE SET capture_ref = c.capture_ref
             RETURNING lead_id, (xmax = 0) AS inserted",
        )
        .bind(tenant.as_str())
        .bind(&input.capture_ref)
        .bind(&fresh_id)
        .fetch_one(&mut *tx)
        .await?;
        if !claimed.try_get::<bool, _>("inserted")? {
            tx.rollback().await?;
            let lead_id: String = claimed.try_get("lead_id")?;
            self.commands
                .note_stream_head(<Lead as cqrs_es::Aggregate>::TYPE, &tenant.stream_id(&lead_id))
                .await;
            return Ok(Captured {
                lead_id,
                outcome: CaptureOutcome::Repeated,
            });
        }

        // 2. Lock the prospect's identities, in a fixed order.
        let mut identities: Vec<&String> = phone_id.iter().chain(email_id.iter()).collect();
        identities.sort();
        identities.dedup();
        let mut rows = Vec::new();
        for identity in &identities {
            let row = sqlx::query(
                "INSERT INTO lead_identities AS i (tenant_id, identity_hash, lead_id, open) VALUES ($1, $2, $3, false)
                 ON CONFLICT (tenant_id, identity_hash) DO UPDATE SET identity_hash = i.identity_hash
                 RETURNING lead_id, open",
            )
            .bind(tenant.as_str())
            .bind(identity.as_str())
            .bind(&fresh_id)
            .fetch_one(&mut *tx)
            .await?;
            rows.push((
                identity.to_string(),
                row.try_get::<String, _>("lead_id")?,
                row.try_get::<bool, _>("open")?,
            ));
        }
        let open_lead_of = |id: &Option<String>| {
            id.as_ref()
                .and_then(|id| rows.iter().find(|(h, _, open)| h == id && *open))
                .map(|(_, lead, _)| lead.clone())
        };
        let target = open_lead_of(&phone_id).or_else(|| open_lead_of(&email_id));

        // 3. Attach to the open lead, or capture a new one.
        let mut outcome = None;
        if let Some(lead_id) = &target {
            match self
                .commands
                .lead(lead_id, LeadCommand::AttachDuplicateCapture(capture.clone()), metadata)
                .await
            {
                Ok(_) => outcome = Some((lead_id.clone(), CaptureOutcome::Attached)),
                // The index was stale: the lead closed without the index hearing of it.
                Err(CommandError::Rejected(DomainError::Lead(LeadError::LeadClosed { .. }))) => {}
                Err(e) => return Err(e),
            }
        }
        let (lead_id, outcome) = match outcome {
            Some(done) => done,
            None => {
                self.commands
                    .lead(&fresh_id, LeadCommand::CaptureLead(capture), metadata)
                    .await?;
                (fresh_id, CaptureOutcome::Captured)
            }
        };

        // 4. Point the identities at the lead. An attach leaves an identity that belongs to
        //    another open lead alone (a phone of one lead, an e-mail of another).
        sqlx::query("UPDATE lead_captures SET lead_id = $3, outcome = $4 WHERE tenant_id = $1 AND capture_ref = $2")
            .bind(tenant.as_str())
            .bind(&input.capture_ref)
            .bind(&lead_id)
            .bind(outcome.as_str())
            .execute(&mut *tx)
            .await?;
        for (identity, _, open) in &rows {
            if outcome == CaptureOutcome::Captured || !open {
                sqlx::query(
                    "UPDATE lead_identities SET lead_id = $3, open = true, updated_at = now()
                      WHERE tenant_id = $1 AND identity_hash = $2",
                )
                .bind(tenant.as_str())
                .bind(identity)
                .bind(&lead_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        tracing::info!(lead.id = %lead_id, outcome = outcome.as_str(), "lead capture recorded");
        Ok(Captured { lead_id, outcome })
    }

    /// Runs a command on a lead (not a capture: use [`Self::capture`]) and keeps the duplicate
    /// index in step: a won or lost lead takes no more duplicates; a reopened one does again.
    pub async fn run(
        &self,
        lead_id: &str,
        command: LeadCommand,
        metadata: &CommandMetadata,
    ) -> Result<(), CommandError> {
        if matches!(
            command,
            LeadCommand::CaptureLead(_) | LeadCommand::AttachDuplicateCapture(_)
        ) {
            return Err(CommandError::InvalidInput(
                "captures go through Leads::capture, which detects duplicates".into(),
            ));
        }
        let open = match &command {
            LeadCommand::WinLead { .. } | LeadCommand::MarkLeadLost { .. } => Some(false),
            LeadCommand::ReopenLead { .. } => Some(true),
            _ => None,
        };
        self.commands.lead(lead_id, command, metadata).await?;
        if let Some(open) = open {
            sqlx::query(
                "UPDATE lead_identities SET open = $3, updated_at = now() WHERE tenant_id = $1 AND lead_id = $2",
            )
            .bind(metadata.tenant_id.as_str())
            .bind(lead_id)
            .bind(open)
            .execute(self.commands.pool())
            .await?;
        }
        Ok(())
    }

    /// Seals a free-text note about a lead's prospect (the reason a lead was lost) with the data
    /// key of the lead's contact.
    pub async fn seal_note(
        &self,
        tenant: &TenantId,
        lead: &Lead,
        note: &str,
    ) -> Result<chronicle_domain::pii::Envelope, CommandError> {
        let contact_id = lead
            .contact_id()
            .ok_or_else(|| CommandError::InvalidInput("the lead has no contact to seal a note for".into()))?;
        let key = self.keys.key_for(tenant, contact_id).await?;
        Ok(key.seal(tenant, contact_id, note, &mut OsRng))
    }

    /// The current state of a lead, loaded from its stream; `None` if nothing was captured in it.
    pub async fn load(&self, tenant: &TenantId, lead_id: &str) -> Result<Option<Lead>, CommandError> {
        let store: PersistedEventStore<PostgresEventRepository, Lead> =
            PersistedEventStore::new_event_store(PostgresEventRepository::new(self.commands.pool().clone()))
                .with_upcasters(crate::repository::upcasters());
        match store.load_aggregate(&tenant.stream_id(lead_id)).await {
            Ok(context) => Ok(Some(context.aggregate).filter(Lead::is_captured)),
            Err(AggregateError::UserError(e)) => Err(DomainError::Lead(e).into()),
            Err(AggregateError::AggregateConflict) => Err(CommandError::Conflict),
            Err(AggregateError::DatabaseConnectionError(e))
            | Err(AggregateError::DeserializationError(e))
            | Err(AggregateError::UnexpectedError(e)) => Err(CommandError::Unexpected(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_mail_addresses_are_normalized_and_malformed_ones_refused() {
        assert_eq!(
            normalize_email("  Tendai@Example.COM ").ok(),
            Some("tendai@example.com".into())
        );
        for bad in [
            "",
            "tendai",
            "@example.com",
            "tendai@",
            "tendai@example",
            "a b@example.com",
            "a@b@c.com",
            "a@.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn lead_ids_are_lead_and_a_uuid() {
        assert!(is_lead_id("lead_6f1c1f9e-7c7b-4a53-9d44-0c1e8a1d2b3c"));
        assert!(!is_lead_id("lead_x"));
        assert!(!is_lead_id("ct_6f1c1f9e7c7b4a539d440c1e8a1d2b3c"));
    }
}
