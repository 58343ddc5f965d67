//! What every projector shares: the row-level-security scope of its transaction, and the
//! contacts' data keys it opens envelopes with (cached per batch).

use std::collections::HashMap;

use chronicle_domain::pii::{DataKey, MasterKey};
use chronicle_domain::tenant::TenantId;
use sqlx::PgConnection;

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

/// Lets this transaction write every tenant's rows (row-level security, migration 0007). Only
/// projectors do this; queries use [`for_tenant`].
pub(crate) async fn all_tenants(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('chronicle.tenant_id', '*', true)")
        .execute(&mut *tx)
        .await
        .map(|_| ())
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
