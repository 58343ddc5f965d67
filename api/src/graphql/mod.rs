//! The GraphQL schema: one module per area, merged here. Limits ([`limits::Limited`], the
//! executor the routes run): depth 12 and
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
pub mod api_keys;
pub mod calls;
pub mod campaigns;
pub mod consistency;
pub mod contacts;
pub mod conversations;
pub mod customers;
pub mod events;
pub mod inbox;
pub mod installation;
pub mod leads;
pub mod limits;
pub mod media;
pub mod payments;
pub mod receipt;
pub mod sandbox;
pub mod users;
pub mod viewer;
pub mod wallets;
pub mod webhooks;

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
    installation::InstallationQuery,
    customers::CustomersQuery,
    wallets::WalletsQuery,
    api_keys::ApiKeysQuery,
    users::UsersQuery,
    events::EventsQuery,
    webhooks::WebhooksQuery,
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
    media::MediaMutation,
    payments::PaymentsMutation,
    installation::InstallationMutation,
    wallets::WalletsMutation,
    sandbox::SandboxMutation,
    api_keys::ApiKeysMutation,
    users::UsersMutation,
    webhooks::WebhooksMutation,
);

/// Every subscription, by area.
#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(events::EventsSubscription);

/// The schema type.
pub type ChronicleSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Describes the `…Connection` types async-graphql generates for paginated lists (it gives
/// them a name only).
fn describe_connections(
    builder: async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot>,
) -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    use async_graphql::connection::Connection;
    builder
        .override_output_type_description::<Connection<String, users::User>>("A page of the tenant's users: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, api_keys::ApiKey>>("A page of API keys: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, events::LogEvent>>("A page of the event log: `edges` (each with its `cursor`), `nodes`, and `pageInfo`; continue with `after: pageInfo.endCursor`, by page or with the `events` subscription.")
        .override_output_type_description::<Connection<String, webhooks::Webhook>>("A page of webhook endpoints: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, webhooks::WebhookDelivery>>("A page of a webhook's delivery log: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, customers::Customer, Counted>>("A page of customers: `edges` (each with its `cursor`), `nodes`, `totalCount`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, calls::Call>>("A page of calls: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, campaigns::CampaignNode>>("A page of campaigns: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, campaigns::CampaignRecipient>>("A page of a campaign's recipients: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, contacts::Contact, Counted>>("A page of contacts: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, conversations::Conversation, Counted>>("A page of conversations: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, installation::Installation, Counted>>("A page of installations: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, leads::Lead, Counted>>("A page of leads: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, wallets::LedgerLine>>("A page of wallet ledger lines: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, installation::Order, Counted>>("A page of orders: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, payments::PaymentRequest>>("A page of payment requests: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, payments::Payment, Counted>>("A page of payments: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, installation::ServiceRequest, Counted>>("A page of service requests: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, inbox::ThreadMessage>>("A page of a conversation's messages: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, wallets::WalletAlert>>("A page of wallet alerts: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, wallets::FeatureUsage>>("A page of usage rows (one per day and feature): `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, installation::MaintenanceContract>>("A page of maintenance contracts: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, payments::RefusedPaymentCallback>>("A page of refused payment callbacks: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, contacts::Template>>("A page of templates: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, wallets::TokenReservation>>("A page of token reservations: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, wallets::WalletBalance>>("A page of wallets: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, installation::WarrantyClaim>>("A page of warranty claims: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, installation::Warranty>>("A page of warranties: `edges` (each with its `cursor`), `nodes`, and `pageInfo` to ask for the next page with `after: pageInfo.endCursor`.")
        .override_output_type_description::<Connection<String, installation::Payout, installation::PayoutTotals>>("A page of payouts: `edges` (each with its `cursor`), `nodes`, `pageInfo` to ask for the next page with `after: pageInfo.endCursor`, and `totals` over every payout the filter keeps.")
}

/// Builds the schema; the pool, wake-ups, the command dispatcher and the contacts' key store
/// are schema data, the caller is request data.
// Each argument is a different piece of the schema's data, named where it is built.
#[allow(clippy::too_many_arguments)]
pub fn build_schema(
    pool: PgPool,
    wakeups: Wakeups,
    live: chronicle_projections::live::LiveLog,
    commands: Commands,
    keys: KeyStore,
    payments: chronicle_commands::payments::PaymentIntake,
    sandbox: Option<crate::sandbox::Sandbox>,
    webhooks: crate::webhooks::Dispatcher,
    sign_in_limiter: crate::sessions::SignInLimiter,
) -> ChronicleSchema {
    describe_connections(Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    ))
    .data(pool.clone())
    .data(wakeups)
    .data(live)
    .data(commands)
    .data(webhooks)
    .data(keys)
    .data(payments)
    .data(sandbox)
    .data(sign_in_limiter)
    .data(async_graphql::dataloader::DataLoader::new(
        users::UserNames { pool: pool.clone() },
        tokio::spawn,
    ))
    .finish()
}

/// The authenticated caller of the operation.
pub fn caller<'a>(ctx: &'a Context<'_>) -> Result<&'a Caller, ApiError> {
    ctx.data_opt::<Caller>()
        .ok_or_else(|| ApiError::Unauthenticated("an access token is required".into()))
}

/// The write side's dispatcher, from schema data.
pub(crate) fn commands<'a>(ctx: &'a Context<'_>) -> Result<&'a chronicle_commands::dispatch::Commands, ApiError> {
    ctx.data::<chronicle_commands::dispatch::Commands>()
        .map_err(|_| ApiError::Unavailable("no command dispatcher in the schema".into()))
}

/// The contacts' key store, from schema data.
pub(crate) fn keys<'a>(ctx: &'a Context<'_>) -> Result<&'a chronicle_commands::keystore::KeyStore, ApiError> {
    ctx.data::<chronicle_commands::keystore::KeyStore>()
        .map_err(|_| ApiError::Unavailable("no key store in the schema".into()))
}

/// The read side's pool, from schema data.
pub fn pool<'a>(ctx: &'a Context<'_>) -> Result<&'a PgPool, ApiError> {
    ctx.data::<PgPool>()
        .map_err(|_| ApiError::Unavailable("no database in the schema".into()))
}

/// A refusal for a caller whose role may not do `what` (`FORBIDDEN`), or nothing.
/// The caller, if their role holds `permission` (the one table, `crate::permissions`);
/// `FORBIDDEN` naming the role and `what` otherwise.
pub(crate) fn allowed<'a>(
    ctx: &'a Context<'_>,
    permission: crate::permissions::Permission,
    what: &str,
) -> Result<&'a Caller, ApiError> {
    let caller = caller(ctx)?;
    require(caller.may(permission), caller, what)?;
    Ok(caller)
}

/// The user an assignment names: an active user of the caller's tenant whose role holds
/// `work`, the permission the assigned work needs (an agent works conversations and leads, a
/// technician installations and service requests). Refused with `UNKNOWN_USER`,
/// `USER_DEACTIVATED`, `USER_NOT_ACTIVE` (an invitation not yet accepted) or
/// `ROLE_NOT_ALLOWED`; the caller's own permission is checked before.
pub(crate) async fn assignee(
    ctx: &Context<'_>,
    caller: &Caller,
    user_id: &str,
    work: crate::permissions::Permission,
    what: &str,
) -> Result<chronicle_commands::users::UserRow, ApiError> {
    use chronicle_commands::error::{CommandError, DomainError};
    use chronicle_domain::user::UserError;
    let refused = |e: UserError| ApiError::Command(CommandError::Rejected(DomainError::User(e)));
    let user = chronicle_commands::users::find(pool(ctx)?, &caller.tenant, user_id.trim())
        .await?
        .ok_or_else(|| refused(UserError::UnknownUser))?;
    match user.status.as_str() {
        "active" => {}
        "deactivated" => return Err(refused(UserError::UserDeactivated)),
        _ => return Err(refused(UserError::UserNotActive)),
    }
    let holds = crate::auth::Role::parse(&user.role).is_some_and(|role| role.may(work));
    if !holds {
        return Err(refused(UserError::RoleNotAllowed {
            role: user.role.clone(),
            work: what.to_string(),
        }));
    }
    Ok(user)
}

/// A read model's page as a GraphQL connection: a failed read is answered like any resolver's,
/// a cursor the read model refused is `BAD_CURSOR`, each row becomes a node through `node`;
/// `after` says whether the client asked from a cursor (`hasPreviousPage`).
pub(crate) fn connection<R, T, E>(
    after: bool,
    page: Result<Result<chronicle_projections::page::Page<R>, E>, sqlx::Error>,
    node: impl FnMut(R) -> T,
) -> async_graphql::Result<async_graphql::connection::Connection<String, T>>
where
    T: async_graphql::OutputType,
    E: std::fmt::Display,
{
    connection_with(after, page, node, async_graphql::connection::EmptyFields)
}

/// [`connection`] with fields of the whole list beside `edges` (`totalCount`, `totals`).
pub(crate) fn connection_with<R, T, E, F>(
    after: bool,
    page: Result<Result<chronicle_projections::page::Page<R>, E>, sqlx::Error>,
    node: impl FnMut(R) -> T,
    fields: F,
) -> async_graphql::Result<async_graphql::connection::Connection<String, T, F>>
where
    T: async_graphql::OutputType,
    E: std::fmt::Display,
    F: async_graphql::ObjectType,
{
    use crate::error::IntoGraphql;
    let page = page
        .map_err(ApiError::from)
        .gql()?
        .map_err(|e| ApiError::bad_request("BAD_CURSOR", e.to_string()))
        .gql()?;
    let mut node = node;
    let mut connection =
        async_graphql::connection::Connection::with_additional_fields(after, page.has_next_page, fields);
    connection.edges.extend(
        page.rows
            .into_iter()
            .map(|(cursor, row)| async_graphql::connection::Edge::new(cursor, node(row))),
    );
    Ok(connection)
}

/// A page size asked for with `first`, checked against the list's documented maximum:
/// `PAGE_TOO_LARGE` above it, `BAD_PAGE_SIZE` below 1.
pub(crate) fn page_size(first: i32, max: i32) -> Result<i64, ApiError> {
    if first > max {
        Err(ApiError::bad_request(
            "PAGE_TOO_LARGE",
            format!("`first` is at most {max} for this list (asked for {first}): ask for the next page with `after`"),
        ))
    } else if first < 1 {
        Err(ApiError::bad_request(
            "BAD_PAGE_SIZE",
            format!("`first` is at least 1 (asked for {first})"),
        ))
    } else {
        Ok(i64::from(first))
    }
}

/// What a counted connection adds: `totalCount`, counted (one `count(*)` with the list's
/// filters) only when a query selects it.
pub struct Counted(
    futures::future::Shared<futures::future::BoxFuture<'static, Result<i64, std::sync::Arc<sqlx::Error>>>>,
);

impl Counted {
    /// The count a query runs if it selects `totalCount` (a future runs only when awaited).
    pub(crate) fn new(count: impl std::future::Future<Output = Result<i64, sqlx::Error>> + Send + 'static) -> Self {
        use futures::FutureExt;
        Self(count.map(|r| r.map_err(std::sync::Arc::new)).boxed().shared())
    }
}

#[async_graphql::Object]
impl Counted {
    /// How many records the list holds with the same filters, every page together.
    async fn total_count(&self) -> async_graphql::Result<i64> {
        use crate::error::IntoGraphql;
        self.0
            .clone()
            .await
            .map_err(|e| ApiError::Unexpected(Box::new(e)))
            .gql()
    }
}

pub(crate) fn require(allowed: bool, caller: &Caller, what: &str) -> Result<(), ApiError> {
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(match &caller.key {
            Some(key) => format!(
                "the API key {} cannot {what}: its role ({}) or its scopes do not allow it",
                key.key_id,
                caller.role.as_str()
            ),
            _ => format!("the {} role cannot {what}", caller.role.as_str()),
        }))
    }
}

/// The metadata of a command a GraphQL caller runs: their tenant and user, the request's
/// correlation id (a fresh one when the request has none), caused by this GraphQL request.
pub(crate) fn metadata(ctx: &Context<'_>, caller: &Caller) -> CommandMetadata {
    let correlation = ctx
        .data_opt::<CorrelationId>()
        .map(|c| c.0.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let actor = match &caller.key {
        Some(key) => Actor::ApiKey {
            key_id: key.key_id.clone(),
        },
        None => Actor::User {
            user_id: caller.user_id.clone(),
            role: caller.role.as_str().to_string(),
        },
    };
    CommandMetadata {
        tenant_id: caller.tenant.clone(),
        actor,
        causation_id: format!("graphql:{correlation}"),
        correlation_id: correlation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every type, field, argument, input field and enum value of the schema a client sees
    /// that has no description, as `Type.field(arg)` paths.
    fn undescribed() -> Vec<String> {
        let schema = describe_connections(Schema::build(
            QueryRoot::default(),
            MutationRoot::default(),
            SubscriptionRoot::default(),
        ))
        .finish();
        let reply = futures::executor::block_on(schema.execute(
            "{ __schema { types { name kind description
                 fields(includeDeprecated: true) { name description args { name description } }
                 inputFields { name description }
                 enumValues(includeDeprecated: true) { name description } } } }",
        ));
        let data = reply.data.into_json().unwrap_or_default();
        let builtin = ["String", "Int", "Float", "Boolean", "ID"];
        let mut missing = Vec::new();
        let empty = |v: &serde_json::Value| v.as_str().map(str::trim).unwrap_or_default().is_empty();
        for t in data["__schema"]["types"].as_array().into_iter().flatten() {
            let name = t["name"].as_str().unwrap_or_default();
            if name.starts_with("__") || builtin.contains(&name) {
                continue;
            }
            if empty(&t["description"]) {
                missing.push(name.to_string());
            }
            for f in t["fields"].as_array().into_iter().flatten() {
                let field = format!("{name}.{}", f["name"].as_str().unwrap_or_default());
                if empty(&f["description"]) {
                    missing.push(field.clone());
                }
                for a in f["args"].as_array().into_iter().flatten() {
                    if empty(&a["description"]) {
                        missing.push(format!("{field}({})", a["name"].as_str().unwrap_or_default()));
                    }
                }
            }
            for key in ["inputFields", "enumValues"] {
                for f in t[key].as_array().into_iter().flatten() {
                    if empty(&f["description"]) {
                        missing.push(format!("{name}.{}", f["name"].as_str().unwrap_or_default()));
                    }
                }
            }
        }
        missing
    }

    #[test]
    fn every_type_field_argument_and_value_has_a_description() {
        let missing = undescribed();
        assert!(
            missing.is_empty(),
            "{} parts of the schema have no description (a doc comment, or `#[graphql(desc)]`):\n{}",
            missing.len(),
            missing.join("\n")
        );
    }
}
