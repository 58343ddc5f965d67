//! Per-contact data keys (DESIGN.md, "Personal data in an immutable log"): created on a
//! contact's first personal field, stored wrapped by the master key in `contact_keys`, and
//! destroyed on erasure.

use chronicle_domain::pii::{DataKey, MasterKey};
use chronicle_domain::tenant::TenantId;
use rand::rngs::OsRng;
use sqlx::PgPool;

use crate::error::CommandError;

/// Creates and loads contacts' data keys.
#[derive(Clone, Debug)]
pub struct KeyStore {
    pool: PgPool,
    master: MasterKey,
}

impl KeyStore {
    /// A key store over `contact_keys`, wrapping keys with `master`.
    pub fn new(pool: PgPool, master: MasterKey) -> Self {
        Self { pool, master }
    }

    /// The master key (also the source of the identifier key).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The contact's data key, created on first use. Safe under concurrency: a racing creator's
    /// key wins and both callers get it.
    pub async fn key_for(&self, tenant: &TenantId, contact_id: &str) -> Result<DataKey, CommandError> {
        if let Some(key) = self.load(tenant, contact_id).await? {
            return Ok(key);
        }
        let fresh = DataKey::generate(&mut OsRng);
        let wrapped = self.master.wrap(&fresh, tenant, contact_id, &mut OsRng);
        sqlx::query(
            "INSERT INTO contact_keys (tenant_id, contact_id, wrapped_key) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, contact_id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(contact_id)
        .bind(wrapped)
        .execute(&self.pool)
        .await?;
        self.load(tenant, contact_id)
            .await?
            .ok_or_else(|| CommandError::InvalidInput(format!("the data key of contact {contact_id} was erased")))
    }

    /// The contact's data key if it has one (never creates one: for opening what was sealed;
    /// `None` after the contact was erased).
    pub async fn existing(&self, tenant: &TenantId, contact_id: &str) -> Result<Option<DataKey>, CommandError> {
        self.load(tenant, contact_id).await
    }

    async fn load(&self, tenant: &TenantId, contact_id: &str) -> Result<Option<DataKey>, CommandError> {
        let wrapped: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT wrapped_key FROM contact_keys WHERE tenant_id = $1 AND contact_id = $2")
                .bind(tenant.as_str())
                .bind(contact_id)
                .fetch_optional(&self.pool)
                .await?;
        match wrapped {
            None => Ok(None),
            Some(w) => self
                .master
                .unwrap_key(&w, tenant, contact_id)
                .map(Some)
                .map_err(|e| CommandError::Unexpected(Box::new(e))),
        }
    }
}
