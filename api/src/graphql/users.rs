//! Users (issue 14): the directory (`users`, `user`), and the mutations owners and admins run
//! on people (`inviteUser`, `renewInvitation`, `changeUserRole`, `deactivateUser`,
//! `reactivateUser`, `issuePasswordReset`) and each user runs on their own second factor
//! (`beginTwoFactorEnrolment`, `confirmTwoFactor`, `disableTwoFactor`). Sign-in itself is
//! HTTP (`crate::http::auth`). Tokens and recovery codes are answered once and never stored.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, InputObject, Object, SimpleObject};
use chronicle_commands::users::{self, Invite, IssuedToken, UserRow};
use chronicle_projections::page::{self, Page};
use chrono::{DateTime, Utc};

use super::receipt::{receipt, Receipt};
use super::{allowed, caller, commands, keys, metadata, page_size, pool};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

/// A person who signs in to the tenant (never a secret).
#[derive(SimpleObject, Clone, Debug)]
pub struct User {
    /// `usr_…`: what the user mutations take, and the user of `user:<id>:<role>` actors.
    pub id: String,
    /// What they sign in with, lower-cased.
    pub email: String,
    /// Their name, as assignments and read models show it.
    pub name: String,
    /// owner, admin, agent, technician, finance, auditor or integrator.
    pub role: String,
    /// `invited` (not yet accepted), `active` or `deactivated`.
    pub status: String,
    /// Whether the user signs in with a second factor (TOTP).
    pub two_factor: bool,
    /// When they were invited.
    pub invited_at: DateTime<Utc>,
    /// Who invited them (`user:<id>:<role>`, or `system:admin-cli`).
    pub invited_by: String,
    /// When their account last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.user_id,
            email: row.email,
            name: row.name,
            role: row.role,
            status: row.status,
            two_factor: row.two_factor,
            invited_at: row.invited_at,
            invited_by: row.invited_by,
            updated_at: row.updated_at,
        }
    }
}

/// Someone work is assigned to: their user id and, from the directory, their name.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct AssignedUser {
    /// The user id (`usr_…`).
    pub id: String,
    /// Their name in the user directory; null for an id that names no user of the tenant
    /// (work assigned before assignments were checked against the directory).
    pub name: Option<String>,
}

/// Loads users' names in one query per batch of a response (every assignee of a page at
/// once), by (tenant, user id). No cache across requests: a renamed user shows at once.
pub struct UserNames {
    pub pool: sqlx::PgPool,
}

impl async_graphql::dataloader::Loader<(String, String)> for UserNames {
    type Value = String;
    type Error = std::sync::Arc<sqlx::Error>;

    async fn load(
        &self,
        keys: &[(String, String)],
    ) -> Result<std::collections::HashMap<(String, String), String>, Self::Error> {
        let (tenants, ids): (Vec<String>, Vec<String>) = keys.iter().cloned().unzip();
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT a.tenant_id, a.user_id, a.name FROM user_accounts a \
             JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, user_id) \
               ON a.tenant_id = k.tenant_id AND a.user_id = k.user_id",
        )
        .bind(&tenants)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(std::sync::Arc::new)?;
        Ok(rows
            .into_iter()
            .map(|(tenant, user, name)| ((tenant, user), name))
            .collect())
    }
}

/// The assigned users `ids` of the caller's tenant, with their names (batched).
pub(crate) async fn assigned(ctx: &Context<'_>, ids: &[String]) -> async_graphql::Result<Vec<AssignedUser>> {
    let caller = caller(ctx).gql()?;
    // Names are the directory's: a caller who may not read it (an API key without the scope)
    // sees the ids only.
    if !caller.may(Permission::ReadUsers) {
        return Ok(ids
            .iter()
            .map(|id| AssignedUser {
                id: id.clone(),
                name: None,
            })
            .collect());
    }
    let loader = ctx
        .data::<async_graphql::dataloader::DataLoader<UserNames>>()
        .map_err(|_| ApiError::Unavailable("no user directory in the schema".into()))
        .gql()?;
    let keys: Vec<(String, String)> = ids.iter().map(|id| (caller.tenant.to_string(), id.clone())).collect();
    let names = loader
        .load_many(keys.clone())
        .await
        .map_err(|e| ApiError::Unexpected(format!("reading users' names: {e}").into()))
        .gql()?;
    Ok(keys
        .into_iter()
        .map(|key| AssignedUser {
            name: names.get(&key).cloned(),
            id: key.1,
        })
        .collect())
}

/// What `inviteUser` asks for.
#[derive(InputObject)]
pub struct InviteUserInput {
    /// Their e-mail address: what they sign in with (unique in the tenant).
    pub email: String,
    /// Their name, 1 to 100 characters.
    pub name: String,
    /// owner, admin, agent, technician, finance, auditor or integrator. An admin cannot give
    /// `owner` (`ROLE_ABOVE_ISSUER`).
    pub role: String,
}

/// A second factor being set up, for the user's authenticator app.
#[derive(SimpleObject, Clone, Debug)]
pub struct TwoFactorEnrolment {
    /// The secret in base32, for typing into the app.
    pub secret: String,
    /// `otpauth://totp/…`: the same as a QR code's content.
    pub otpauth_uri: String,
}

/// The roles that manage users (the permission table's `ManageUsers`), for the write side's
/// own check under its lock.
fn managers() -> Vec<&'static str> {
    Permission::ManageUsers.role_names()
}

/// Counts a failed proof of a signed-in person (password or code when changing their second
/// factor) like a failed sign-in, and refuses while they must wait.
async fn paced<T>(
    ctx: &Context<'_>,
    caller: &Caller,
    work: impl std::future::Future<Output = Result<T, chronicle_commands::users::AuthError>>,
) -> Result<T, ApiError> {
    use chronicle_commands::users::AuthError;
    let limiter = ctx
        .data::<crate::sessions::SignInLimiter>()
        .map_err(|_| ApiError::Unavailable("no sign-in limiter in the schema".into()))?;
    // The same count as the account's sign-ins: a stolen access token gives no extra guesses.
    let subject = match users::find(pool(ctx)?, &caller.tenant, &caller.user_id).await? {
        Some(user) => crate::sessions::Subject::Account {
            tenant: caller.tenant.to_string(),
            email: user.email,
        },
        None => crate::sessions::Subject::User {
            tenant: caller.tenant.to_string(),
            user_id: caller.user_id.clone(),
        },
    };
    let unavailable = |e: crate::sessions::LimiterUnavailable| ApiError::Unavailable(e.to_string());
    let wait = limiter
        .attempt(std::slice::from_ref(&subject))
        .await
        .map_err(unavailable)?;
    if !wait.is_zero() {
        return Err(ApiError::TooManySignInAttempts { retry_after: wait });
    }
    match work.await {
        Ok(value) => {
            limiter.succeeded(&subject).await.map_err(unavailable)?;
            Ok(value)
        }
        Err(AuthError::Refused(refusal)) => Err(ApiError::from(AuthError::Refused(refusal))),
        Err(e) => {
            limiter.refund(&subject).await.map_err(unavailable)?;
            Err(ApiError::from(e))
        }
    }
}

/// A role name, checked (`UNKNOWN_ROLE`).
fn role_named(name: &str) -> Result<Role, ApiError> {
    Role::parse(name.trim()).ok_or_else(|| {
        ApiError::bad_request(
            "UNKNOWN_ROLE",
            format!("{name:?} is not a role (owner, admin, agent, technician, finance, auditor, integrator)"),
        )
    })
}

/// An admin cannot give the owner role, nor change an owner (`ROLE_ABOVE_ISSUER`).
fn may_touch(caller: &Caller, role: Role) -> Result<(), ApiError> {
    if caller.role == Role::Owner || role != Role::Owner {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "ROLE_ABOVE_ISSUER",
            format!("the {} role cannot give or change the owner role", caller.role.as_str()),
        ))
    }
}

/// The tenant's user `id` (`UNKNOWN_USER`), whom `caller` may change.
async fn target(ctx: &Context<'_>, caller: &Caller, id: &str) -> Result<UserRow, ApiError> {
    let row = users::find(pool(ctx)?, &caller.tenant, id.trim())
        .await?
        .ok_or_else(|| {
            ApiError::Command(chronicle_commands::error::CommandError::Rejected(
                chronicle_commands::error::DomainError::User(chronicle_domain::user::UserError::UnknownUser),
            ))
        })?;
    let role = Role::parse(&row.role).unwrap_or(Role::Owner);
    may_touch(caller, role)?;
    Ok(row)
}

fn token_receipt(issued: IssuedToken, user: Option<UserRow>) -> Receipt {
    let mut answer = Receipt::new(issued.user_id.clone());
    answer.secret = Some(issued.token);
    answer.user = user.map(User::from);
    answer
}

/// The caller as a person with an account (`UNKNOWN_USER` for operator-minted tokens of users
/// that do not exist; `FORBIDDEN` for API keys).
fn person<'a>(ctx: &'a Context<'_>) -> Result<&'a Caller, ApiError> {
    let caller = caller(ctx)?;
    if caller.key.is_some() {
        return Err(ApiError::Forbidden(
            "an API key has no second factor: this is for people signed in".into(),
        ));
    }
    Ok(caller)
}

/// The users queries.
#[derive(Default)]
pub struct UsersQuery;

#[Object]
impl UsersQuery {
    /// The tenant's users, oldest invitation first. Every role but integrator (`FORBIDDEN`):
    /// it is who work can be assigned to.
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, desc = "Page size: 1 to 200, default 50 (`PAGE_TOO_LARGE` above 200).")] first: i32,
        #[graphql(desc = "The `cursor` of the last user of the previous page; null for the first.")] after: Option<
            String,
        >,
        #[graphql(desc = "Only users with this status: `invited`, `active` or `deactivated`.")] status: Option<String>,
    ) -> async_graphql::Result<Connection<String, User>> {
        let caller = allowed(ctx, Permission::ReadUsers, "read the user directory").gql()?;
        let limit = page_size(first, 200).gql()?;
        let status = status.map(|s| s.trim().to_ascii_lowercase());
        if let Some(s) = status.as_deref() {
            if !matches!(s, "invited" | "active" | "deactivated") {
                return Err(ApiError::bad_request(
                    "INVALID_INPUT",
                    format!("{s:?} is not a status (invited, active, deactivated)"),
                ))
                .gql();
            }
        }
        let from = match page::after_time(after.as_deref()) {
            Ok((Some(at), Some(id))) => Some((at, id)),
            Ok(_) => None,
            Err(e) => return Err(ApiError::bad_request("BAD_CURSOR", e.to_string())).gql(),
        };
        let rows = users::list(pool(ctx).gql()?, &caller.tenant, status.as_deref(), from, limit + 1)
            .await
            .map_err(ApiError::from)
            .gql()?;
        let page = Page::from_rows(rows, limit, |row| page::time_cursor(row.invited_at, &row.user_id));
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        connection.edges.extend(
            page.rows
                .into_iter()
                .map(|(cursor, row)| Edge::new(cursor, User::from(row))),
        );
        Ok(connection)
    }

    /// One user of the tenant, or null. Every role but integrator (`FORBIDDEN`).
    async fn user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id (`usr_…`).")] id: String,
    ) -> async_graphql::Result<Option<User>> {
        let caller = allowed(ctx, Permission::ReadUsers, "read the user directory").gql()?;
        Ok(users::find(pool(ctx).gql()?, &caller.tenant, id.trim())
            .await
            .map_err(ApiError::from)
            .gql()?
            .map(User::from))
    }
}

/// The users mutations.
#[derive(Default)]
pub struct UsersMutation;

#[Object]
impl UsersMutation {
    /// Invites a person with a role and answers the invitation token, this once (the receipt's
    /// `secret`, valid 7 days; the person sends it with a password to
    /// `POST /auth/accept-invitation`). Owners and admins (`FORBIDDEN`). Refused, with nothing
    /// stored, with `UNKNOWN_ROLE`, `ROLE_ABOVE_ISSUER`, `INVALID_EMAIL`, `INVALID_USER_NAME` or
    /// `EMAIL_TAKEN`.
    async fn invite_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Who to invite, and with which role.")] input: InviteUserInput,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageUsers, "manage users").gql()?;
            let role = role_named(&input.role).gql()?;
            may_touch(caller, role).gql()?;
            let issued = commands(ctx)
                .gql()?
                .invite_user(
                    Invite {
                        email: input.email,
                        name: input.name,
                        role: role.as_str().to_string(),
                    },
                    &metadata(ctx, caller),
                    &managers(),
                )
                .await
                .map_err(ApiError::from)
                .gql()?;
            let row = users::find(pool(ctx).gql()?, &caller.tenant, &issued.user_id)
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(token_receipt(issued, row))
        })
        .await
    }

    /// Gives a pending invitation a new token (the receipt's `secret`, answered once) and 7
    /// more days; the old token stops working. Owners and admins; `INVITATION_NOT_PENDING`
    /// once accepted, `UNKNOWN_USER`, `ROLE_ABOVE_ISSUER`.
    async fn renew_invitation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id (`usr_…`).")] id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageUsers, "manage users").gql()?;
            let row = target(ctx, caller, &id).await.gql()?;
            let issued = commands(ctx)
                .gql()?
                .renew_invitation(&row.user_id, &metadata(ctx, caller), &managers())
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(token_receipt(issued, None))
        })
        .await
    }

    /// Gives a user another role (their next access token carries it). Owners and admins; an
    /// admin cannot give or take the owner role (`ROLE_ABOVE_ISSUER`). `LAST_OWNER` when it
    /// would leave the tenant without an active owner; `USER_DEACTIVATED`, `UNKNOWN_USER`,
    /// `UNKNOWN_ROLE`.
    async fn change_user_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id (`usr_…`).")] id: String,
        #[graphql(desc = "The new role.")] role: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageUsers, "manage users").gql()?;
            let role = role_named(&role).gql()?;
            may_touch(caller, role).gql()?;
            let row = target(ctx, caller, &id).await.gql()?;
            commands(ctx)
                .gql()?
                .change_user_role(&row.user_id, role.as_str(), &metadata(ctx, caller), &managers())
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(Receipt::new(row.user_id))
        })
        .await
    }

    /// Deactivates a user: refused at sign-in from now on, every refresh token revoked at
    /// once; an access token already issued works until it expires (minutes). Owners and
    /// admins; `LAST_OWNER` for the last active owner, `UNKNOWN_USER`, `ROLE_ABOVE_ISSUER`.
    /// Deactivating a deactivated user changes nothing.
    async fn deactivate_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id (`usr_…`).")] id: String,
        #[graphql(desc = "Why, for the audit history (e.g. \"left the company\").")] reason: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageUsers, "manage users").gql()?;
            let row = target(ctx, caller, &id).await.gql()?;
            commands(ctx)
                .gql()?
                .deactivate_user(&row.user_id, reason, &metadata(ctx, caller), &managers())
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(Receipt::new(row.user_id))
        })
        .await
    }

    /// Lets a deactivated user back in (they sign in again; no session survives the
    /// deactivation). Owners and admins; `UNKNOWN_USER`, `ROLE_ABOVE_ISSUER`. Reactivating an
    /// active user changes nothing.
    async fn reactivate_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id (`usr_…`).")] id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageUsers, "manage users").gql()?;
            let row = target(ctx, caller, &id).await.gql()?;
            commands(ctx)
                .gql()?
                .reactivate_user(&row.user_id, &metadata(ctx, caller), &managers())
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(Receipt::new(row.user_id))
        })
        .await
    }

    /// Issues a one-time password reset and answers its token, this once (the receipt's
    /// `secret`, valid 24 hours), for the admin to hand to the user, who sends it with a new
    /// password to `POST /auth/reset-password`. Owners and admins; `USER_NOT_ACTIVE` before
    /// the invitation is accepted, `USER_DEACTIVATED`, `UNKNOWN_USER`, `ROLE_ABOVE_ISSUER`.
    async fn issue_password_reset(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id (`usr_…`).")] id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageUsers, "manage users").gql()?;
            let row = target(ctx, caller, &id).await.gql()?;
            let issued = commands(ctx)
                .gql()?
                .issue_password_reset(&row.user_id, &metadata(ctx, caller), &managers())
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(token_receipt(issued, None))
        })
        .await
    }

    /// Starts turning on a second factor for the caller, who confirms it is them with their
    /// password: a new TOTP secret for their authenticator app (the receipt's
    /// `twoFactorEnrolment`), pending until `confirmTwoFactor` sees a code from it. Any
    /// signed-in person (`FORBIDDEN` with an API key); `INVALID_CREDENTIALS` for a wrong
    /// password (paced like sign-in: `TOO_MANY_SIGN_IN_ATTEMPTS`), `TWO_FACTOR_ALREADY_ENABLED`,
    /// `USER_NOT_ACTIVE`, `UNKNOWN_USER`.
    async fn begin_two_factor_enrolment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The caller's password.")] password: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = person(ctx).gql()?;
            let issuer = format!("Chronicle ({})", caller.tenant);
            let commands = commands(ctx).gql()?;
            let master = keys(ctx).gql()?.master();
            let enrolment = paced(
                ctx,
                caller,
                commands.begin_two_factor(master, &caller.tenant, &caller.user_id, &password, &issuer),
            )
            .await
            .gql()?;
            let mut answer = Receipt::new(caller.user_id.clone());
            answer.two_factor_enrolment = Some(TwoFactorEnrolment {
                secret: enrolment.secret,
                otpauth_uri: enrolment.otpauth_uri,
            });
            Ok(answer)
        })
        .await
    }

    /// Turns the caller's pending second factor on with a current code from the app, and
    /// answers ten recovery codes, this once (the receipt's `recoveryCodes`). From now on
    /// sign-in asks for a code. `INVALID_SECOND_FACTOR` for a wrong code (paced like sign-in);
    /// `TWO_FACTOR_NOT_ENABLED` when no enrolment is pending.
    async fn confirm_two_factor(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A six-digit code from the authenticator app.")] code: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = person(ctx).gql()?;
            let commands = commands(ctx).gql()?;
            let master = keys(ctx).gql()?.master();
            let metadata = metadata(ctx, caller);
            let codes = paced(
                ctx,
                caller,
                commands.confirm_two_factor(master, &caller.user_id, &code, &metadata),
            )
            .await
            .gql()?;
            let mut answer = Receipt::new(caller.user_id.clone());
            answer.recovery_codes = Some(codes);
            Ok(answer)
        })
        .await
    }

    /// Turns the caller's second factor off, with their password and a current code from the
    /// app (its recovery codes stop working). `INVALID_CREDENTIALS`, `INVALID_SECOND_FACTOR`
    /// (both paced like sign-in), `TWO_FACTOR_NOT_ENABLED`.
    async fn disable_two_factor(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The caller's password.")] password: String,
        #[graphql(desc = "A six-digit code from the authenticator app.")] code: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = person(ctx).gql()?;
            let commands = commands(ctx).gql()?;
            let master = keys(ctx).gql()?.master();
            let metadata = metadata(ctx, caller);
            paced(
                ctx,
                caller,
                commands.disable_two_factor(master, &caller.user_id, &password, &code, &metadata),
            )
            .await
            .gql()?;
            Ok(Receipt::new(caller.user_id.clone()))
        })
        .await
    }

    /// Turns another user's second factor off (they lost their authenticator and their
    /// recovery codes): they sign in with their password alone until they turn it on again.
    /// Owners and admins (`FORBIDDEN`); `TWO_FACTOR_NOT_ENABLED`, `UNKNOWN_USER`,
    /// `ROLE_ABOVE_ISSUER` (an admin and an owner's).
    async fn reset_two_factor(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id (`usr_…`).")] id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageUsers, "manage users").gql()?;
            let row = target(ctx, caller, &id).await.gql()?;
            commands(ctx)
                .gql()?
                .reset_two_factor(&row.user_id, &metadata(ctx, caller), &managers())
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(Receipt::new(row.user_id))
        })
        .await
    }
}
