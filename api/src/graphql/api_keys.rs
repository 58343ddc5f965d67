//! API keys for programs (issue 13): `apiKeys`, `issueApiKey`, `revokeApiKey`. Owners and
//! admins only, and never with an API key (`crate::permissions::Permission::ManageApiKeys`).
//! The secret is answered once, by `issueApiKey`; it is never stored or shown again.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, InputObject, Object, SimpleObject};
use chronicle_commands::api_keys::{self, KeyRequest, KeyRow};
use chronicle_domain::api_key::ApiKeyScope;
use chronicle_projections::page::{self, Page};
use chrono::{DateTime, Utc};

use super::receipt::{receipt, Receipt};
use super::{allowed, commands, metadata, page_size, pool};
use crate::auth::Role;
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

/// A key for a program, as its tenant's owners and admins see it (never its secret).
#[derive(SimpleObject, Clone, Debug)]
pub struct ApiKey {
    /// `key_…`: what `revokeApiKey` takes, and the actor `api_key:<id>` of what the key does.
    pub id: String,
    /// The visible start of the key (`chr_…`), to tell keys apart.
    pub prefix: String,
    /// What the key is for.
    pub name: String,
    /// The role the key acts with (`integrator`, `agent`, …).
    pub role: String,
    /// What the key may do beside its role (`events:read`, `leads:write`, …).
    pub scopes: Vec<String>,
    /// After this the key is refused; null: it does not expire.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// Who issued it (`user:<id>:<role>`).
    pub issued_by: String,
    /// When it was revoked; null while usable.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// When it was last used, to within a minute; null if never.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<KeyRow> for ApiKey {
    fn from(row: KeyRow) -> Self {
        Self {
            prefix: row.prefix(),
            id: row.key_id,
            name: row.name,
            role: row.role,
            scopes: row.scopes,
            expires_at: row.expires_at,
            issued_at: row.issued_at,
            issued_by: row.issued_by,
            revoked_at: row.revoked_at,
            revoked_by: row.revoked_by,
            last_used_at: row.last_used_at,
        }
    }
}

/// What `issueApiKey` asks for.
#[derive(InputObject)]
pub struct IssueApiKeyInput {
    /// What the key is for, e.g. "Zoho sync": 1 to 100 characters.
    pub name: String,
    /// The role the key acts with; `integrator` when absent. An admin cannot issue an owner's
    /// key (`ROLE_ABOVE_ISSUER`).
    pub role: Option<String>,
    /// At least one of: `events:read`, `events:read_personal`, `webhooks:manage`,
    /// `inbox:read`, `inbox:write`, `leads:read`, `leads:write`, `contacts:read`,
    /// `contacts:write`, `campaigns:read`, `wallets:read`, `payments:read`, `orders:read`,
    /// `orders:write`, `installations:read`. A key may do something only when its role and one
    /// of its scopes both allow it.
    pub scopes: Vec<String>,
    /// When the key stops working; null for a key that works until revoked.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The roles an issuer may give a key: an owner any, an admin any but owner.
fn may_give(issuer: Role, role: Role) -> bool {
    issuer == Role::Owner || role != Role::Owner
}

/// The scopes named, each checked (`UNKNOWN_SCOPE` naming it).
fn scopes(names: &[String]) -> Result<Vec<ApiKeyScope>, ApiError> {
    names
        .iter()
        .map(|name| {
            ApiKeyScope::parse(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = ApiKeyScope::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::bad_request(
                    "UNKNOWN_SCOPE",
                    format!("{name:?} is not a scope; scopes are {}", known.join(", ")),
                )
            })
        })
        .collect()
}

/// The `apiKeys` query.
#[derive(Default)]
pub struct ApiKeysQuery;

#[Object]
impl ApiKeysQuery {
    /// The tenant's API keys, newest first, revoked ones included. Owners and admins (else
    /// `FORBIDDEN`; never with an API key).
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, desc = "Page size: 1 to 200, default 50 (`PAGE_TOO_LARGE` above 200).")] first: i32,
        #[graphql(desc = "The `cursor` of the last key of the previous page; null for the newest.")] after: Option<
            String,
        >,
    ) -> async_graphql::Result<Connection<String, ApiKey>> {
        let caller = allowed(ctx, Permission::ManageApiKeys, "manage API keys").gql()?;
        let limit = page_size(first, 200).gql()?;
        let before = match page::after_time(after.as_deref()) {
            Ok((Some(at), Some(id))) => Some((at, id)),
            Ok(_) => None,
            Err(e) => return Err(ApiError::bad_request("BAD_CURSOR", e.to_string())).gql(),
        };
        let rows = api_keys::list(pool(ctx).gql()?, &caller.tenant, before, limit + 1)
            .await
            .map_err(ApiError::from)
            .gql()?;
        let page = Page::from_rows(rows, limit, |row| page::time_cursor(row.issued_at, &row.key_id));
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        connection.edges.extend(
            page.rows
                .into_iter()
                .map(|(cursor, row)| Edge::new(cursor, ApiKey::from(row))),
        );
        Ok(connection)
    }
}

/// The API key mutations.
#[derive(Default)]
pub struct ApiKeysMutation;

#[Object]
impl ApiKeysMutation {
    /// Issues a key for a program and answers its secret, this once (the receipt's `secret`,
    /// with the key in `apiKey`; `id` is the key's id). Owners and admins (else `FORBIDDEN`;
    /// never with an API key). Refused, with nothing stored, with `UNKNOWN_ROLE`,
    /// `ROLE_ABOVE_ISSUER`, `UNKNOWN_SCOPE`, `NO_SCOPES`, `INVALID_API_KEY_NAME` or
    /// `EXPIRY_NOT_IN_FUTURE`.
    async fn issue_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key's name, role, scopes and expiry.")] input: IssueApiKeyInput,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageApiKeys, "manage API keys").gql()?;
            let role_name = input.role.as_deref().map_or("integrator", str::trim);
            let role = Role::parse(role_name)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "UNKNOWN_ROLE",
                        format!("{role_name:?} is not a role (owner, admin, agent, technician, finance, auditor, integrator)"),
                    )
                })
                .gql()?;
            if !may_give(caller.role, role) {
                return Err(ApiError::bad_request(
                    "ROLE_ABOVE_ISSUER",
                    format!("the {} role cannot issue a key with the {} role", caller.role.as_str(), role.as_str()),
                ))
                .gql();
            }
            let request = KeyRequest {
                name: input.name,
                role: role.as_str().to_string(),
                scopes: scopes(&input.scopes).gql()?,
                expires_at: input.expires_at,
            };
            let issued = commands(ctx)
                .gql()?
                .issue_api_key(request, &metadata(ctx, caller))
                .await
                .map_err(ApiError::from)
                .gql()?;
            let row = api_keys::find(pool(ctx).gql()?, &caller.tenant, &issued.key_id)
                .await
                .map_err(ApiError::from)
                .gql()?
                .ok_or_else(|| ApiError::Unavailable("the issued key is not stored".into()))
                .gql()?;
            let mut answer = Receipt::new(issued.key_id.clone());
            answer.secret = Some(issued.secret);
            answer.api_key = Some(ApiKey::from(row));
            Ok(answer)
        })
        .await
    }

    /// Revokes a key: refused from its next request, and open subscriptions made with it end.
    /// Revoking a revoked key changes nothing. Owners and admins (else `FORBIDDEN`);
    /// `UNKNOWN_API_KEY` for a key the tenant does not have.
    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key's id (`key_…`).")] id: String,
        #[graphql(desc = "Why, for the audit history (e.g. \"leaked in a log\").")] reason: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageApiKeys, "manage API keys").gql()?;
            commands(ctx)
                .gql()?
                .revoke_api_key(id.trim(), reason, &metadata(ctx, caller))
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(Receipt::new(id.trim()))
        })
        .await
    }
}
