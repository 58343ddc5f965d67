//! Contacts and templates: the `contacts` connection (search by name or phone, by tag), one
//! `contact`, `templates` by status, and their mutations. Reads: owner, admin, agent, auditor.
//! Contact changes: owner, admin, agent; erasure: owner and admin. Templates are submitted and
//! their review recorded (standing in for Meta's review webhook) by owner and admin.
//!
//! Mutations answer with the id of what they changed; the read models catch up a moment later
//! (projections are asynchronous).

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object, SimpleObject};
use chronicle_commands::contacts::{ConsentKeyword, ContactService};
use chronicle_commands::dispatch::Commands;
use chronicle_commands::keystore::KeyStore;
use chronicle_domain::contact::{ConsentSource, ContactCommand, Tag};
use chronicle_domain::template::{ButtonKind, SubmitTemplate, TemplateButton, TemplateCategory, TemplateCommand};
use chronicle_projections::contacts::{self as read, ContactFilter, ContactRow};
use chronicle_projections::templates::{self as template_read, TemplateRow};
use chrono::{DateTime, Utc};

use super::{caller, metadata, pool, require};
use crate::auth::Caller;
use crate::error::{ApiError, IntoGraphql};

/// The write side's dispatcher, from schema data.
pub(crate) fn commands<'a>(ctx: &'a Context<'_>) -> Result<&'a Commands, ApiError> {
    ctx.data::<Commands>()
        .map_err(|_| ApiError::Unavailable("no command dispatcher in the schema".into()))
}

/// The contacts' write side over the schema's dispatcher and key store.
fn contacts_service(ctx: &Context<'_>) -> Result<ContactService, ApiError> {
    let keys = ctx
        .data::<KeyStore>()
        .map_err(|_| ApiError::Unavailable("no key store in the schema".into()))?;
    Ok(ContactService::new(commands(ctx)?.clone(), keys.clone()))
}

/// The caller, allowed to read contacts.
fn reader<'a>(ctx: &'a Context<'_>) -> Result<&'a Caller, ApiError> {
    let caller = caller(ctx)?;
    require(caller.role.reads_contacts(), caller, "read contacts")?;
    Ok(caller)
}

/// A contact's consent status.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ConsentStatus {
    Unknown,
    OptedIn,
    OptedOut,
}

/// A contact.
#[derive(SimpleObject)]
pub struct Contact {
    pub id: String,
    /// `phone`, or `provider_user` when WhatsApp withheld the number.
    pub handle_kind: String,
    /// E.164; absent after erasure.
    pub phone: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    /// Where the contact first came from: whatsapp, import, manual, lead, call.
    pub source: String,
    pub tags: Vec<String>,
    /// Custom fields as a JSON object.
    pub custom_fields: async_graphql::Json<serde_json::Value>,
    pub consent: ConsentStatus,
    /// How the last consent was given or withdrawn (e.g. `whatsapp_keyword`).
    pub consent_source: Option<String>,
    pub consent_at: Option<DateTime<Utc>>,
    /// The last inbound message's time.
    pub last_contact_at: Option<DateTime<Utc>>,
    /// Whether the contact was erased (every personal field is then empty).
    pub erased: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ContactRow> for Contact {
    fn from(row: ContactRow) -> Self {
        Self {
            id: row.contact_id,
            handle_kind: row.handle_kind,
            phone: row.phone,
            name: row.name,
            email: row.email,
            source: row.source,
            tags: row.tags,
            custom_fields: async_graphql::Json(row.custom_fields),
            consent: match row.consent_status.as_str() {
                "opted_in" => ConsentStatus::OptedIn,
                "opted_out" => ConsentStatus::OptedOut,
                _ => ConsentStatus::Unknown,
            },
            consent_source: row.consent_source,
            consent_at: row.consent_at,
            last_contact_at: row.last_contact_at,
            erased: row.erased,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A template's approval status.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TemplateStatus {
    Pending,
    Approved,
    Rejected,
}

impl TemplateStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "approved" => Self::Approved,
            "rejected" => Self::Rejected,
            _ => Self::Pending,
        }
    }
}

/// WhatsApp's template categories.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TemplateCategoryInput {
    Marketing,
    Utility,
    Authentication,
}

/// What a template button does.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TemplateButtonKind {
    QuickReply,
    Url,
    PhoneNumber,
}

/// A template button.
#[derive(InputObject)]
pub struct TemplateButtonInput {
    pub kind: TemplateButtonKind,
    pub text: String,
    /// The URL or the phone number; none for a quick reply.
    pub value: Option<String>,
}

/// A template to submit for review.
#[derive(InputObject)]
pub struct SubmitTemplateInput {
    /// `^[a-z0-9_]{1,512}$`.
    pub name: String,
    /// e.g. `en`, `en_US`.
    pub language: String,
    pub category: TemplateCategoryInput,
    /// The body, with variables `{{1}}`, `{{2}}`…
    pub body: String,
    #[graphql(default)]
    pub buttons: Vec<TemplateButtonInput>,
}

/// A WhatsApp message template and its review.
#[derive(SimpleObject)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub language: String,
    pub category: String,
    pub body: String,
    /// `[{kind, text, value}]`.
    pub buttons: async_graphql::Json<serde_json::Value>,
    pub variable_count: i32,
    pub version: i32,
    pub status: TemplateStatus,
    pub provider_template_id: Option<String>,
    pub rejection_reason: Option<String>,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

impl From<TemplateRow> for Template {
    fn from(row: TemplateRow) -> Self {
        Self {
            id: row.template_id,
            name: row.name,
            language: row.language,
            category: row.category,
            body: row.body,
            buttons: async_graphql::Json(row.buttons),
            variable_count: row.variable_count,
            version: row.version,
            status: TemplateStatus::parse(&row.status),
            provider_template_id: row.provider_template_id,
            rejection_reason: row.rejection_reason,
            submitted_at: row.submitted_at,
            decided_at: row.decided_at,
        }
    }
}

/// A template's stream: `tpl_<name>_<language>`.
fn template_id(name: &str, language: &str) -> String {
    format!("tpl_{name}_{language}")
}

#[derive(Default)]
pub struct ContactsQuery;

#[Object]
impl ContactsQuery {
    /// The caller's tenant's contacts, newest first: `search` matches a substring of the name
    /// (any case) or of the phone number (digits), `tag` a tag.
    async fn contacts(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        tag: Option<String>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Contact>> {
        let caller = reader(ctx).gql()?;
        let tag = tag
            .map(|t| Tag::parse(&t).map(Tag::into_string))
            .transpose()
            .map_err(|e| ApiError::bad_request("INVALID_TAG", e.to_string()))
            .gql()?;
        let filter = ContactFilter { search, tag };
        let page = read::list(
            pool(ctx).gql()?,
            &caller.tenant,
            &filter,
            i64::from(first),
            after.as_deref(),
        )
        .await
        .map_err(ApiError::from)
        .gql()?
        .map_err(|e| ApiError::bad_request("BAD_CURSOR", e.to_string()))
        .gql()?;
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        connection.edges.extend(
            page.rows
                .into_iter()
                .map(|(cursor, row)| Edge::new(cursor, Contact::from(row))),
        );
        Ok(connection)
    }

    /// One contact of the caller's tenant.
    async fn contact(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Option<Contact>> {
        let caller = reader(ctx).gql()?;
        let row = read::get(pool(ctx).gql()?, &caller.tenant, &id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(Contact::from))
    }

    /// The caller's tenant's templates by name and language, optionally with one status.
    async fn templates(
        &self,
        ctx: &Context<'_>,
        status: Option<TemplateStatus>,
    ) -> async_graphql::Result<Vec<Template>> {
        let caller = reader(ctx).gql()?;
        let rows = template_read::list(pool(ctx).gql()?, &caller.tenant, status.map(TemplateStatus::as_str))
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(rows.into_iter().map(Template::from).collect())
    }
}

#[derive(Default)]
pub struct ContactsMutation;

impl ContactsMutation {
    /// Runs a contact command for a caller allowed to change contacts.
    async fn change(ctx: &Context<'_>, contact_id: String, command: ContactCommand) -> async_graphql::Result<String> {
        let caller = caller(ctx).gql()?;
        require(caller.role.writes_contacts(), caller, "change contacts").gql()?;
        contacts_service(ctx)
            .gql()?
            .run(&contact_id, command, &metadata(ctx, caller))
            .await
            .gql()?;
        Ok(contact_id)
    }

    async fn consent(ctx: &Context<'_>, contact_id: String, keyword: ConsentKeyword) -> async_graphql::Result<String> {
        let caller = caller(ctx).gql()?;
        require(caller.role.writes_contacts(), caller, "change contacts").gql()?;
        contacts_service(ctx)
            .gql()?
            .consent(
                &contact_id,
                keyword,
                ConsentSource::Agent,
                Utc::now(),
                &metadata(ctx, caller),
            )
            .await
            .gql()?;
        Ok(contact_id)
    }

    async fn template(
        ctx: &Context<'_>,
        name: &str,
        language: &str,
        command: TemplateCommand,
    ) -> async_graphql::Result<String> {
        let caller = caller(ctx).gql()?;
        require(caller.role.manages_messaging_settings(), caller, "manage templates").gql()?;
        let id = template_id(name, language);
        commands(ctx)
            .gql()?
            .template(&id, command, &metadata(ctx, caller))
            .await
            .gql()?;
        Ok(id)
    }
}

#[Object]
impl ContactsMutation {
    /// Adds a tag to a contact (normalized: trimmed, lowercase). Returns the contact's id.
    async fn tag_contact(&self, ctx: &Context<'_>, contact_id: String, tag: String) -> async_graphql::Result<String> {
        Self::change(ctx, contact_id, ContactCommand::TagContact { tag }).await
    }

    /// Removes a tag from a contact.
    async fn untag_contact(&self, ctx: &Context<'_>, contact_id: String, tag: String) -> async_graphql::Result<String> {
        Self::change(ctx, contact_id, ContactCommand::UntagContact { tag }).await
    }

    /// Sets a custom field (`^[a-z][a-z0-9_]{0,39}$`); the value is sealed in the log.
    async fn set_custom_field(
        &self,
        ctx: &Context<'_>,
        contact_id: String,
        key: String,
        value: String,
    ) -> async_graphql::Result<String> {
        let caller = caller(ctx).gql()?;
        require(caller.role.writes_contacts(), caller, "change contacts").gql()?;
        contacts_service(ctx)
            .gql()?
            .set_custom_field(&contact_id, &key, &value, &metadata(ctx, caller))
            .await
            .gql()?;
        Ok(contact_id)
    }

    /// Removes a custom field.
    async fn remove_custom_field(
        &self,
        ctx: &Context<'_>,
        contact_id: String,
        key: String,
    ) -> async_graphql::Result<String> {
        Self::change(ctx, contact_id, ContactCommand::RemoveCustomField { key }).await
    }

    /// Records that the contact opted in (source `agent`).
    async fn opt_in(&self, ctx: &Context<'_>, contact_id: String) -> async_graphql::Result<String> {
        Self::consent(ctx, contact_id, ConsentKeyword::OptIn).await
    }

    /// Records that the contact opted out (source `agent`).
    async fn opt_out(&self, ctx: &Context<'_>, contact_id: String) -> async_graphql::Result<String> {
        Self::consent(ctx, contact_id, ConsentKeyword::OptOut).await
    }

    /// Sets (a value), clears (`null`) or leaves (absent) the name and email.
    async fn update_contact_profile(
        &self,
        ctx: &Context<'_>,
        contact_id: String,
        #[graphql(default)] name: MaybeUndefined<String>,
        #[graphql(default)] email: MaybeUndefined<String>,
    ) -> async_graphql::Result<String> {
        let caller = caller(ctx).gql()?;
        require(caller.role.writes_contacts(), caller, "change contacts").gql()?;
        fn change(field: &MaybeUndefined<String>) -> Option<Option<&str>> {
            match field {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(v) => Some(Some(v.as_str())),
            }
        }
        contacts_service(ctx)
            .gql()?
            .update_profile(&contact_id, change(&name), change(&email), &metadata(ctx, caller))
            .await
            .gql()?;
        Ok(contact_id)
    }

    /// Erases a contact (GDPR): the log keeps that it happened, the contact's data key is
    /// destroyed and the read models forget the person. Owner and admin only.
    async fn erase_contact(&self, ctx: &Context<'_>, contact_id: String) -> async_graphql::Result<String> {
        let caller = caller(ctx).gql()?;
        require(caller.role.erases_contacts(), caller, "erase contacts").gql()?;
        contacts_service(ctx)
            .gql()?
            .erase(&contact_id, &caller.user_id, &metadata(ctx, caller))
            .await
            .gql()?;
        Ok(contact_id)
    }

    /// Submits a template for WhatsApp's review. Returns the template's id.
    async fn submit_template(&self, ctx: &Context<'_>, input: SubmitTemplateInput) -> async_graphql::Result<String> {
        let command = TemplateCommand::SubmitTemplate(SubmitTemplate {
            name: input.name.clone(),
            language: input.language.clone(),
            category: match input.category {
                TemplateCategoryInput::Marketing => TemplateCategory::Marketing,
                TemplateCategoryInput::Utility => TemplateCategory::Utility,
                TemplateCategoryInput::Authentication => TemplateCategory::Authentication,
            },
            body: input.body,
            buttons: input
                .buttons
                .into_iter()
                .map(|b| TemplateButton {
                    kind: match b.kind {
                        TemplateButtonKind::QuickReply => ButtonKind::QuickReply,
                        TemplateButtonKind::Url => ButtonKind::Url,
                        TemplateButtonKind::PhoneNumber => ButtonKind::PhoneNumber,
                    },
                    text: b.text,
                    value: b.value,
                })
                .collect(),
            at: Utc::now(),
        });
        Self::template(ctx, &input.name, &input.language, command).await
    }

    /// Records WhatsApp's approval of a pending template (stands in for Meta's review webhook).
    async fn approve_template(
        &self,
        ctx: &Context<'_>,
        name: String,
        language: String,
        provider_template_id: String,
    ) -> async_graphql::Result<String> {
        let command = TemplateCommand::ApproveTemplate {
            provider_template_id,
            at: Utc::now(),
        };
        Self::template(ctx, &name, &language, command).await
    }

    /// Records WhatsApp's rejection of a pending template, with its reason.
    async fn reject_template(
        &self,
        ctx: &Context<'_>,
        name: String,
        language: String,
        reason: String,
    ) -> async_graphql::Result<String> {
        let command = TemplateCommand::RejectTemplate { reason, at: Utc::now() };
        Self::template(ctx, &name, &language, command).await
    }
}
