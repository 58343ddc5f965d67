//! The GraphQL schema: one module per area, merged here. Limits ([`limits`]): depth 12 and
//! complexity 1000 for data fields; introspection has a budget of its own, so the standard
//! introspection query of graphql-js is accepted.

use async_graphql::{Context, MergedObject, MergedSubscription, Schema};
use chronicle_commands::dispatch::Commands;
use chronicle_commands::keystore::KeyStore;
use chronicle_projections::wake::Wakeups;
use sqlx::PgPool;

use chronicle_domain::metadata::{Actor, CommandMetadata};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::CorrelationId;

pub mod agents;
pub mod calls;
pub mod campaigns;
pub mod contacts;
pub mod conversations;
pub mod events;
pub mod inbox;
pub mod installations;
pub mod leads;
pub mod limits;
pub mod media;
pub mod payments;
pub mod service;
pub mod viewer;
pub mod wallets;

/// Every query, by area.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    viewer::ViewerQuery,
    conversations::ConversationsQuery,
    leads::LeadsQuery,
    contacts::ContactsQuery,
    calls::CallsQuery,
    campaigns::CampaignsQuery,
    inbox::InboxQuery,
    agents::AgentsQuery,
    media::MediaQuery,
    payments::PaymentsQuery,
    installations::InstallationsQuery,
    wallets::WalletsQuery,
    service::ServiceQuery,
);

/// Every mutation, by area.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    leads::LeadsMutation,
    contacts::ContactsMutation,
    calls::CallsMutation,
    campaigns::CampaignsMutation,
    inbox::InboxMutation,
    payments::PaymentsMutation,
    installations::InstallationsMutation,
    wallets::WalletsMutation,
    service::ServiceMutation,
);

/// Every subscription, by area.
#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(events::EventsSubscription);

/// The schema type.
pub type ChronicleSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Builds the schema; the pool, wake-ups, the command dispatcher and the contacts' key store
/// are schema data, the caller is request data.
pub fn build_schema(
    pool: PgPool,
    wakeups: Wakeups,
    live: chronicle_projections::live::LiveLog,
    commands: Commands,
    keys: KeyStore,
    payments: chronicle_commands::payments::PaymentIntake,
) -> ChronicleSchema {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .data(pool)
    .data(wakeups)
    .data(live)
    .data(commands)
    .data(keys)
    .data(payments)
    .extension(limits::QueryLimits)
    .finish()
}

/// The authenticated caller of the operation.
pub fn caller<'a>(ctx: &'a Context<'_>) -> Result<&'a Caller, ApiError> {
    ctx.data_opt::<Caller>()
        .ok_or_else(|| ApiError::Unauthenticated("an access token is required".into()))
}

/// The pool, from schema data.
pub fn pool<'a>(ctx: &'a Context<'_>) -> Result<&'a PgPool, ApiError> {
    ctx.data::<PgPool>()
        .map_err(|_| ApiError::Unavailable("no database in the schema".into()))
}

/// A refusal for a caller whose role may not do `what` (`FORBIDDEN`), or nothing.
pub(crate) fn require(allowed: bool, caller: &Caller, what: &str) -> Result<(), ApiError> {
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "the {} role cannot {what}",
            caller.role.as_str()
        )))
    }
}

/// The metadata of a command a GraphQL caller runs: their tenant and user, the request's
/// correlation id (a fresh one when the request has none), caused by this GraphQL request.
pub(crate) fn metadata(ctx: &Context<'_>, caller: &Caller) -> CommandMetadata {
    let correlation = ctx
        .data_opt::<CorrelationId>()
        .map(|c| c.0.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    CommandMetadata {
        tenant_id: caller.tenant.clone(),
        actor: Actor::User {
            user_id: caller.user_id.clone(),
            role: caller.role.as_str().to_string(),
        },
        causation_id: format!("graphql:{correlation}"),
        correlation_id: correlation,
    }
}
