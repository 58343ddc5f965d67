//! `viewer`: who the token says the caller is.

use async_graphql::{Context, Object, SimpleObject};

use super::caller;
use crate::error::IntoGraphql;

/// The authenticated caller.
#[derive(SimpleObject)]
pub struct Viewer {
    /// The tenant every query, mutation and subscription of this token acts on.
    pub tenant_id: String,
    /// The token's subject: the caller's user id.
    pub user_id: String,
    /// owner, admin, agent, technician, finance, auditor or integrator.
    pub role: String,
    /// The caller's account in the user directory (name, e-mail, second factor); null for an
    /// API key or an operator-minted token of someone who is not a user.
    pub account: Option<super::users::User>,
}

/// The `viewer` query.
#[derive(Default)]
pub struct ViewerQuery;

#[Object]
impl ViewerQuery {
    /// The caller named by the access token (any role; no token is `UNAUTHENTICATED`).
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        let caller = caller(ctx).gql()?;
        let account = match &caller.key {
            Some(_) => None,
            None => chronicle_commands::users::find(super::pool(ctx).gql()?, &caller.tenant, &caller.user_id)
                .await
                .map_err(crate::error::ApiError::from)
                .gql()?
                .map(super::users::User::from),
        };
        Ok(Viewer {
            account,
            tenant_id: caller.tenant.to_string(),
            user_id: caller.user_id.clone(),
            role: caller.role.as_str().into(),
        })
    }
}
