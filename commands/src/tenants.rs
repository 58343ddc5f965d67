//! The tenant registry and the WhatsApp phone-number ids mapped to tenants: configuration
//! written by operators (`chronicle admin`), read by webhook intake to route deliveries.

use chronicle_domain::tenant::TenantId;
use sqlx::PgPool;

use crate::error::CommandError;

/// Creates a tenant, or renames it if it exists. Returns whether it was new.
pub async fn create_tenant(pool: &PgPool, tenant: &TenantId, name: &str) -> Result<bool, CommandError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(CommandError::InvalidInput("a tenant needs a name".into()));
    }
    let inserted: bool = sqlx::query_scalar(
        "INSERT INTO tenants (tenant_id, name) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET name = EXCLUDED.name
         RETURNING (xmax = 0)",
    )
    .bind(tenant.as_str())
    .bind(name)
    .fetch_one(pool)
    .await?;
    Ok(inserted)
}

/// Whether a tenant exists.
pub async fn tenant_exists(pool: &PgPool, tenant: &TenantId) -> Result<bool, CommandError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE tenant_id = $1)")
            .bind(tenant.as_str())
            .fetch_one(pool)
            .await?,
    )
}

/// Maps a WhatsApp Business phone-number id to a tenant, and releases the deliveries kept for
/// it while it was unmapped (they become pending and are processed by the inbox worker).
/// Returns how many kept deliveries were released. A number already mapped to another tenant
/// is refused: moving a number between tenants is an operator decision, not a side effect.
pub async fn map_whatsapp_number(pool: &PgPool, tenant: &TenantId, phone_number_id: &str) -> Result<u64, CommandError> {
    let phone_number_id = phone_number_id.trim();
    if phone_number_id.is_empty() || !phone_number_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(CommandError::InvalidInput(format!(
            "{phone_number_id:?} is not a WhatsApp phone-number id"
        )));
    }
    if !tenant_exists(pool, tenant).await? {
        return Err(CommandError::InvalidInput(format!(
            "no tenant {tenant}; create it first"
        )));
    }
    let other: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM whatsapp_accounts WHERE waba_id = $1)")
        .bind(phone_number_id)
        .fetch_one(pool)
        .await?;
    if other {
        return Err(CommandError::InvalidInput(format!(
            "{phone_number_id} is a mapped WhatsApp Business Account id, not a phone-number id"
        )));
    }
    let mut tx = pool.begin().await?;
    let owner: Option<String> =
        sqlx::query_scalar("SELECT tenant_id FROM whatsapp_numbers WHERE phone_number_id = $1 FOR UPDATE")
            .bind(phone_number_id)
            .fetch_optional(&mut *tx)
            .await?;
    match owner {
        Some(other) if other != tenant.as_str() => {
            return Err(CommandError::InvalidInput(format!(
                "phone-number id {phone_number_id} is already mapped to tenant {other}"
            )))
        }
        Some(_) => {}
        None => {
            // A concurrent mapping of the same number may win the insert: then it is refused
            // like any number owned by another tenant (or accepted if it mapped the same one).
            let winner: String = sqlx::query_scalar(
                "WITH ins AS (INSERT INTO whatsapp_numbers (phone_number_id, tenant_id) VALUES ($1, $2)
                              ON CONFLICT (phone_number_id) DO NOTHING RETURNING tenant_id)
                 SELECT tenant_id FROM ins
                 UNION ALL
                 SELECT tenant_id FROM whatsapp_numbers WHERE phone_number_id = $1
                 LIMIT 1",
            )
            .bind(phone_number_id)
            .bind(tenant.as_str())
            .fetch_one(&mut *tx)
            .await?;
            if winner != tenant.as_str() {
                return Err(CommandError::InvalidInput(format!(
                    "phone-number id {phone_number_id} is already mapped to tenant {winner}"
                )));
            }
        }
    }
    let released = sqlx::query(
        "UPDATE webhook_inbox SET state = 'pending', claimed_until = NULL
          WHERE state = 'unmapped' AND phone_number_id = $1 AND kind <> 'template_status'",
    )
    .bind(phone_number_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(released)
}

/// Maps a WhatsApp Business Account id to `tenant` (its templates are submitted there, and its
/// template status updates are the tenant's), and releases the template updates kept for it.
/// Refused when the tenant does not exist or the account is another tenant's. Returns how many
/// kept updates were released.
pub async fn map_whatsapp_account(pool: &PgPool, tenant: &TenantId, waba_id: &str) -> Result<u64, CommandError> {
    let waba_id = waba_id.trim();
    if waba_id.is_empty()
        || waba_id.len() > 64
        || !waba_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(CommandError::InvalidInput(format!(
            "{waba_id:?} is not a WhatsApp Business Account id (digits, as Meta shows it)"
        )));
    }
    if !tenant_exists(pool, tenant).await? {
        return Err(CommandError::InvalidInput(format!(
            "no tenant {tenant}; create it first"
        )));
    }
    let other: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM whatsapp_numbers WHERE phone_number_id = $1)")
        .bind(waba_id)
        .fetch_one(pool)
        .await?;
    if other {
        return Err(CommandError::InvalidInput(format!(
            "{waba_id} is a mapped phone-number id, not a WhatsApp Business Account id"
        )));
    }
    let mut tx = pool.begin().await?;
    let owner: String = sqlx::query_scalar(
        "WITH ins AS (INSERT INTO whatsapp_accounts (waba_id, tenant_id) VALUES ($1, $2)
                      ON CONFLICT (waba_id) DO NOTHING RETURNING tenant_id)
         SELECT tenant_id FROM ins
         UNION ALL
         SELECT tenant_id FROM whatsapp_accounts WHERE waba_id = $1
         LIMIT 1",
    )
    .bind(waba_id)
    .bind(tenant.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if owner != tenant.as_str() {
        return Err(CommandError::InvalidInput(format!(
            "WhatsApp Business Account {waba_id} is already mapped to tenant {owner}"
        )));
    }
    let released = sqlx::query(
        "UPDATE webhook_inbox SET state = 'pending', claimed_until = NULL
          WHERE state = 'unmapped' AND kind = 'template_status' AND phone_number_id = $1",
    )
    .bind(waba_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // Submissions waiting for an account go now.
    sqlx::query("UPDATE template_submissions SET next_attempt_at = now() WHERE tenant_id = $1 AND state = 'pending'")
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(released)
}

/// The tenant a WhatsApp Business Account id is mapped to.
pub async fn tenant_of_account(pool: &PgPool, waba_id: &str) -> Result<Option<TenantId>, CommandError> {
    let tenant: Option<String> = sqlx::query_scalar("SELECT tenant_id FROM whatsapp_accounts WHERE waba_id = $1")
        .bind(waba_id)
        .fetch_optional(pool)
        .await?;
    match tenant {
        None => Ok(None),
        Some(t) => TenantId::parse(&t)
            .map(Some)
            .map_err(|e| CommandError::InvalidInput(e.to_string())),
    }
}

/// The tenant's WhatsApp Business Account id (the first mapped), where its templates go.
pub async fn account_of_tenant(pool: &PgPool, tenant: &TenantId) -> Result<Option<String>, CommandError> {
    Ok(sqlx::query_scalar(
        "SELECT waba_id FROM whatsapp_accounts WHERE tenant_id = $1 ORDER BY mapped_at, waba_id LIMIT 1",
    )
    .bind(tenant.as_str())
    .fetch_optional(pool)
    .await?)
}

/// The tenant a WhatsApp phone-number id is mapped to.
pub async fn tenant_of_number(pool: &PgPool, phone_number_id: &str) -> Result<Option<TenantId>, CommandError> {
    let tenant: Option<String> =
        sqlx::query_scalar("SELECT tenant_id FROM whatsapp_numbers WHERE phone_number_id = $1")
            .bind(phone_number_id)
            .fetch_optional(pool)
            .await?;
    match tenant {
        None => Ok(None),
        Some(t) => TenantId::parse(&t)
            .map(Some)
            .map_err(|e| CommandError::Unexpected(Box::new(e))),
    }
}
