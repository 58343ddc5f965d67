//! `viewer`: who the token says the caller is.

use async_graphql::{Context, Object, SimpleObject};

use super::caller;
use crate::error::IntoGraphql;

/// The authenticated caller.
#[derive(SimpleObject)]
pub struct Viewer {
    pub tenant_id: String,
    pub user_id: String,
    pub role: String,
}

#[derive(Default)]
pub struct ViewerQuery;

#[Object]
impl ViewerQuery {
    /// The caller named by the access token.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        let caller = caller(ctx).gql()?;
        Ok(Viewer {
            tenant_id: caller.tenant.to_string(),
            user_id: caller.user_id.clone(),
            role: caller.role.as_str().into(),
        })
    }
}
