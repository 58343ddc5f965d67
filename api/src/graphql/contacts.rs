//! Contacts and templates: the `contacts` connection (search by name or phone, by tag), one
//! `contact`, `templates` by status, and their mutations. Reads: owner, admin, agent, auditor.
//! Contact changes: owner, admin, agent; erasure: owner and admin. Templates are submitted and
//! their review recorded (standing in for Meta's review webhook) by owner and admin.
//!
//! Mutations answer with the id of what they changed; the read models catch up a moment later
//! (projections are asynchronous).

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object, SimpleObject};
use chronicle_commands::contacts::{ConsentKeyword, ContactService};
use chronicle_commands::keystore::KeyStore;
use chronicle_domain::contact::{ConsentSource, ContactCommand, Tag};
use chronicle_domain::template::{
    ButtonKind, HeaderFormat, SubmitTemplate, TemplateButton, TemplateCategory, TemplateCommand, TemplateHeader,
};
use chronicle_projections::contacts::{self as read, ContactFilter, ContactRow};
use chronicle_projections::templates::{self as template_read, TemplateRow};
use chrono::{DateTime, Utc};

use super::receipt::{receipt, Receipt};
use super::{allowed, caller, commands, connection, connection_with, metadata, page_size, pool, require, Counted};
use crate::auth::Caller;
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

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
    require(caller.may(Permission::ReadContacts), caller, "read contacts")?;
    Ok(caller)
}

/// A contact's consent status.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ConsentStatus {
    /// Neither opted in nor out (consent never stated); does not block messages.
    Unknown,
    /// The last consent given was an opt-in.
    OptedIn,
    /// The contact opted out: they receive nothing but the confirmation of the opt-out.
    OptedOut,
}

/// A contact.
#[derive(SimpleObject)]
pub struct Contact {
    /// The contact's id: `ct_` and 32 hex digits (a keyed hash of its phone number or handle).
    pub id: String,
    /// `phone`, or `provider_user` when WhatsApp withheld the number.
    pub handle_kind: String,
    /// E.164 (`+263771234567`); null when WhatsApp withheld the number, and after erasure.
    pub phone: Option<String>,
    /// The contact's name (e.g. their WhatsApp profile name, or one a user set); null when
    /// unknown or cleared, and after erasure.
    pub name: Option<String>,
    /// The contact's e-mail address, as entered; null when unknown or cleared, and after erasure.
    pub email: Option<String>,
    /// Where the contact first came from: whatsapp, import, manual, lead, call.
    pub source: String,
    /// The contact's tags, normalized (lower-case, inner spaces folded), in the order added.
    pub tags: Vec<String>,
    /// Custom fields as a JSON object of key to string value; `{}` after erasure.
    pub custom_fields: async_graphql::Json<serde_json::Value>,
    /// The contact's consent to receive messages.
    pub consent: ConsentStatus,
    /// How the last consent was given or withdrawn: `whatsapp_keyword`, `web_form`, `import`,
    /// `agent` or `api`; null when consent was never stated.
    pub consent_source: Option<String>,
    /// When the last opt-in or opt-out was given (RFC 3339); null when consent was never
    /// stated.
    pub consent_at: Option<DateTime<Utc>>,
    /// The last inbound message's time (RFC 3339); null when the contact never wrote.
    pub last_contact_at: Option<DateTime<Utc>>,
    /// Whether the contact was erased (every personal field is then empty).
    pub erased: bool,
    /// When the contact was first registered (RFC 3339).
    pub created_at: DateTime<Utc>,
    /// When the contact's last change was recorded (RFC 3339); inbound messages do not count.
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
    /// Submitted and waiting for WhatsApp's review; it cannot be changed meanwhile.
    Pending,
    /// Approved by WhatsApp: it can be sent. It cannot be changed.
    Approved,
    /// Rejected by WhatsApp (see `rejectionReason`); it may be submitted again, changed.
    Rejected,
    /// Paused by WhatsApp (its quality fell; see `statusReason`): not sent until WhatsApp
    /// reinstates it.
    Paused,
    /// Disabled by WhatsApp (see `statusReason`): never sent again; it may be submitted again,
    /// changed.
    Disabled,
}

impl TemplateStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Paused => "paused",
            Self::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "approved" => Self::Approved,
            "rejected" => Self::Rejected,
            "paused" => Self::Paused,
            "disabled" => Self::Disabled,
            _ => Self::Pending,
        }
    }
}

/// WhatsApp's template categories.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TemplateCategoryInput {
    /// Promotions, offers, announcements.
    Marketing,
    /// Updates about something the customer asked for or bought (orders, appointments).
    Utility,
    /// One-time passcodes.
    Authentication,
}

/// What a template button does.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TemplateButtonKind {
    /// Sends its text back as a reply; has no value.
    QuickReply,
    /// Opens the `http://` or `https://` URL in its value; at most 2 per template.
    Url,
    /// Dials the business phone number in its value (stored in E.164); at most 1 per template.
    PhoneNumber,
}

/// A template button.
#[derive(InputObject)]
pub struct TemplateButtonInput {
    /// What the button does.
    pub kind: TemplateButtonKind,
    /// The button's label: 1 to 25 characters after trimming (else `INVALID_BUTTON_TEXT`).
    pub text: String,
    /// The URL or the phone number; none for a quick reply (a value that does not fit the kind
    /// gets `INVALID_BUTTON_VALUE`).
    pub value: Option<String>,
}

/// A template to submit for review.
#[derive(InputObject)]
pub struct SubmitTemplateInput {
    /// `^[a-z0-9_]{1,512}$` (else `INVALID_TEMPLATE_NAME`).
    pub name: String,
    /// e.g. `en`, `en_US`: `^[a-z]{2,3}(_[A-Z]{2})?$` (else `INVALID_LANGUAGE`).
    pub language: String,
    /// WhatsApp's category for the template.
    pub category: TemplateCategoryInput,
    /// The body, 1 to 1024 characters, not blank (else `INVALID_BODY`), with variables `{{1}}`,
    /// `{{2}}`… numbered from 1 without gaps (else `VARIABLES_NOT_CONTIGUOUS`).
    pub body: String,
    /// At most 10 buttons (`TOO_MANY_BUTTONS`), of which at most 2 URL and 1 phone number
    /// buttons (`TOO_MANY_BUTTONS_OF_KIND`); default none.
    #[graphql(default)]
    pub buttons: Vec<TemplateButtonInput>,
    /// A header: a text of 1 to 60 characters with at most one variable `{{1}}` (filled per
    /// send), or a media whose file each send links (else `INVALID_HEADER`); default none.
    pub header: Option<TemplateHeaderInput>,
    /// A footer of 1 to 60 characters without variables (else `INVALID_FOOTER`); default none.
    pub footer: Option<String>,
}

/// A template's header: give exactly one of `text` and `media`.
#[derive(InputObject, Debug, Clone)]
pub struct TemplateHeaderInput {
    /// A text header, at most 60 characters, at most one variable `{{1}}`.
    pub text: Option<String>,
    /// A media header: the kind of file each send links.
    pub media: Option<TemplateHeaderMedia>,
}

/// The file a media header shows.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TemplateHeaderMedia {
    /// A JPEG or PNG image.
    Image,
    /// An MP4 video.
    Video,
    /// A PDF document.
    Document,
}

/// A WhatsApp message template and its review.
#[derive(SimpleObject)]
pub struct Template {
    /// The template's id: `tpl_<name>_<language>`.
    pub id: String,
    /// The template's name (`^[a-z0-9_]{1,512}$`).
    pub name: String,
    /// The language code, e.g. `en`, `en_US`.
    pub language: String,
    /// WhatsApp's category: `marketing`, `utility` or `authentication`.
    pub category: String,
    /// The latest submitted body, with variables `{{1}}`, `{{2}}`…
    pub body: String,
    /// `[{kind, text, value}]`: kind is `quick_reply`, `url` or `phone_number`; value is the URL
    /// or the E.164 number, null for a quick reply.
    pub buttons: async_graphql::Json<serde_json::Value>,
    /// How many distinct variables the body has (`{{1}}` … `{{n}}`).
    pub variable_count: i32,
    /// The submitted version: 1, plus one per resubmission after a rejection.
    pub version: i32,
    /// Where the latest version's review stands.
    pub status: TemplateStatus,
    /// WhatsApp's id of the template, once WhatsApp took the latest version for review; null
    /// before.
    pub provider_template_id: Option<String>,
    /// Why WhatsApp rejected it; null unless REJECTED.
    pub rejection_reason: Option<String>,
    /// Why WhatsApp paused or disabled it, when it said; null otherwise.
    pub status_reason: Option<String>,
    /// The header: `{type: "text", text}` or `{type: "media", format}` (image, video,
    /// document); null when none.
    pub header: Option<async_graphql::Json<serde_json::Value>>,
    /// The footer; null when none.
    pub footer: Option<String>,
    /// When the latest version was submitted (RFC 3339).
    pub submitted_at: DateTime<Utc>,
    /// When the latest version was approved or rejected (RFC 3339); null while PENDING.
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
            status_reason: row.status_reason,
            header: row.header.map(async_graphql::Json),
            footer: row.footer,
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
    /// The caller's tenant's contacts, newest first (erased ones included, their personal fields
    /// empty): `search` matches a substring of the name (any case) or of the phone number
    /// (digits), `tag` a tag. Readable by owner, admin, agent and auditor (others get
    /// `FORBIDDEN`); a malformed `tag` gets `INVALID_TAG`, a malformed `after` `BAD_CURSOR`.
    async fn contacts(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "A substring of the name (case-insensitive) or, by its digits, of the phone number; blank: no search."
        )]
        search: Option<String>,
        #[graphql(desc = "Only contacts carrying this tag (normalized like `tagContact`'s).")] tag: Option<String>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page; absent: the first page.")] after: Option<
            String,
        >,
    ) -> async_graphql::Result<Connection<String, Contact, Counted>> {
        let caller = reader(ctx).gql()?;
        let first = page_size(first, 100).gql()?;
        let tag = tag
            .map(|t| Tag::parse(&t).map(Tag::into_string))
            .transpose()
            .map_err(|e| ApiError::bad_request("INVALID_TAG", e.to_string()))
            .gql()?;
        let filter = ContactFilter { search, tag };
        let pool = pool(ctx).gql()?;
        let page = read::list(pool, &caller.tenant, &filter, first, after.as_deref()).await;
        let (pool, tenant) = (pool.clone(), caller.tenant.clone());
        let count = Counted::new(async move { read::count(&pool, &tenant, &filter).await });
        connection_with(after.is_some(), page, Contact::from, count)
    }

    /// One contact of the caller's tenant; null when there is none with this id (or it is not
    /// projected yet). Readable by owner, admin, agent and auditor (others get `FORBIDDEN`).
    async fn contact(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contact's id (`ct_` and 32 hex digits).")] id: String,
    ) -> async_graphql::Result<Option<Contact>> {
        let caller = reader(ctx).gql()?;
        let row = read::get(pool(ctx).gql()?, &caller.tenant, &id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(Contact::from))
    }

    /// The caller's tenant's templates ordered by name and language, optionally with one status,
    /// a page at a time. Readable by owner, admin, agent and auditor (others get `FORBIDDEN`).
    async fn templates(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only templates in this status; absent: every template.")] status: Option<TemplateStatus>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page (opaque); null for the first page.")]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Template>> {
        let caller = reader(ctx).gql()?;
        let first = page_size(first, 100).gql()?;
        let page = template_read::list(
            pool(ctx).gql()?,
            &caller.tenant,
            status.map(TemplateStatus::as_str),
            first,
            after.as_deref(),
        )
        .await;
        connection(after.is_some(), page, Template::from)
    }
}

#[derive(Default)]
pub struct ContactsMutation;

impl ContactsMutation {
    /// Runs a contact command for a caller allowed to change contacts.
    async fn change(ctx: &Context<'_>, contact_id: String, command: ContactCommand) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::WriteContacts, "change contacts").gql()?;
            contacts_service(ctx)
                .gql()?
                .run(&contact_id, command, &metadata(ctx, caller))
                .await
                .gql()?;
            Ok(Receipt::new(contact_id))
        })
        .await
    }

    async fn consent(ctx: &Context<'_>, contact_id: String, keyword: ConsentKeyword) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::WriteContacts, "change contacts").gql()?;
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
            Ok(Receipt::new(contact_id))
        })
        .await
    }

    async fn template(
        ctx: &Context<'_>,
        name: &str,
        language: &str,
        command: TemplateCommand,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageMessagingSettings, "manage templates").gql()?;
            let id = template_id(name, language);
            commands(ctx)
                .gql()?
                .template(&id, command, &metadata(ctx, caller))
                .await
                .gql()?;
            Ok(Receipt::new(id))
        })
        .await
    }
}

#[Object]
impl ContactsMutation {
    /// Adds a tag to a contact (normalized: trimmed, lowercase); a tag already there changes
    /// nothing. Returns the contact's id. Owner, admin and agent (others get `FORBIDDEN`).
    /// Refusals: `INVALID_TAG`, `TOO_MANY_TAGS` (over 50), `CONTACT_NOT_REGISTERED`,
    /// `CONTACT_ERASED`, `CONFLICT`.
    async fn tag_contact(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contact's id (`ct_` and 32 hex digits).")] contact_id: String,
        #[graphql(
            desc = "1 to 50 characters of letters, digits, `-`, `_` and spaces; trimmed, lower-cased, inner spaces folded."
        )]
        tag: String,
    ) -> async_graphql::Result<Receipt> {
        Self::change(ctx, contact_id, ContactCommand::TagContact { tag }).await
    }

    /// Removes a tag from a contact; a tag not there changes nothing. Returns the contact's id.
    /// Owner, admin and agent (others get `FORBIDDEN`). Refusals: `INVALID_TAG`,
    /// `CONTACT_NOT_REGISTERED`, `CONTACT_ERASED`, `CONFLICT`.
    async fn untag_contact(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contact's id (`ct_` and 32 hex digits).")] contact_id: String,
        #[graphql(desc = "The tag, normalized like `tagContact`'s.")] tag: String,
    ) -> async_graphql::Result<Receipt> {
        Self::change(ctx, contact_id, ContactCommand::UntagContact { tag }).await
    }

    /// Sets a custom field (`^[a-z][a-z0-9_]{0,39}$`); the value is sealed in the log. Returns
    /// the contact's id. Owner, admin and agent (others get `FORBIDDEN`). Refusals:
    /// `INVALID_CUSTOM_FIELD_KEY`, `TOO_MANY_CUSTOM_FIELDS` (over 100), `CONTACT_NOT_REGISTERED`,
    /// `CONTACT_ERASED`, `CONFLICT`.
    async fn set_custom_field(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contact's id (`ct_` and 32 hex digits).")] contact_id: String,
        #[graphql(desc = "The field's key: a lower-case letter, then up to 39 of a-z, 0-9 and `_`.")] key: String,
        #[graphql(desc = "The field's value (personal data: stored sealed).")] value: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::WriteContacts, "change contacts").gql()?;
            contacts_service(ctx)
                .gql()?
                .set_custom_field(&contact_id, &key, &value, &metadata(ctx, caller))
                .await
                .gql()?;
            Ok(Receipt::new(contact_id))
        })
        .await
    }

    /// Removes a custom field; a field not there changes nothing. Returns the contact's id.
    /// Owner, admin and agent (others get `FORBIDDEN`). Refusals: `INVALID_CUSTOM_FIELD_KEY`,
    /// `CONTACT_NOT_REGISTERED`, `CONTACT_ERASED`, `CONFLICT`.
    async fn remove_custom_field(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contact's id (`ct_` and 32 hex digits).")] contact_id: String,
        #[graphql(desc = "The field's key: a lower-case letter, then up to 39 of a-z, 0-9 and `_`.")] key: String,
    ) -> async_graphql::Result<Receipt> {
        Self::change(ctx, contact_id, ContactCommand::RemoveCustomField { key }).await
    }

    /// Records that the contact opted in (source `agent`); an opted-in contact changes nothing.
    /// Returns the contact's id. Owner, admin and agent (others get `FORBIDDEN`). Refusals:
    /// `CONTACT_NOT_REGISTERED`, `CONTACT_ERASED`, `CONFLICT`.
    async fn opt_in(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contact's id (`ct_` and 32 hex digits).")] contact_id: String,
    ) -> async_graphql::Result<Receipt> {
        Self::consent(ctx, contact_id, ConsentKeyword::OptIn).await
    }

    /// Records that the contact opted out (source `agent`); an opted-out contact changes
    /// nothing. Returns the contact's id. Owner, admin and agent (others get `FORBIDDEN`).
    /// Refusals: `CONTACT_NOT_REGISTERED`, `CONTACT_ERASED`, `CONFLICT`.
    async fn opt_out(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contact's id (`ct_` and 32 hex digits).")] contact_id: String,
    ) -> async_graphql::Result<Receipt> {
        Self::consent(ctx, contact_id, ConsentKeyword::OptOut).await
    }

    /// Sets (a value), clears (`null`) or leaves (absent) the name and email. Returns the
    /// contact's id. Owner, admin and agent (others get `FORBIDDEN`). Refusals:
    /// `CONTACT_NOT_REGISTERED`, `CONTACT_ERASED`, `CONFLICT`.
    async fn update_contact_profile(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contact's id (`ct_` and 32 hex digits).")] contact_id: String,
        #[graphql(
            default,
            desc = "The new name (trimmed; blank clears it); `null` clears it; absent leaves it."
        )]
        name: MaybeUndefined<String>,
        #[graphql(
            default,
            desc = "The new e-mail address (trimmed, not validated; blank clears it); `null` clears it; absent leaves it."
        )]
        email: MaybeUndefined<String>,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::WriteContacts, "change contacts").gql()?;
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
            Ok(Receipt::new(contact_id))
        })
        .await
    }

    /// Erases a contact (GDPR): the log keeps that it happened, the contact's data key is
    /// destroyed and the read models forget the person. Owner and admin only (others get
    /// `FORBIDDEN`). Erasing again changes nothing; an id never registered is recorded as erased
    /// too. Returns the contact's id; may be refused with `CONFLICT`.
    async fn erase_contact(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contact's id (`ct_` and 32 hex digits).")] contact_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::EraseContacts, "erase contacts").gql()?;
            contacts_service(ctx)
                .gql()?
                .erase(&contact_id, &caller.user_id, &metadata(ctx, caller))
                .await
                .gql()?;
            Ok(Receipt::new(contact_id))
        })
        .await
    }

    /// Submits a template for WhatsApp's review (PENDING): the WhatsApp sender submits it to the
    /// tenant's WhatsApp Business Account (`POST /{waba-id}/message_templates`), records
    /// WhatsApp's id (`providerTemplateId`), and WhatsApp's decision arrives by webhook
    /// (APPROVED, REJECTED with its reason, later PAUSED or DISABLED); in development mode the
    /// sandbox decides. Returns the template's id, `tpl_<name>_<language>`. A rejected or
    /// disabled template may be submitted again only changed (`UNCHANGED_SINCE_REJECTION`); a
    /// pending, approved or paused one only unchanged, which changes nothing (`TEMPLATE_LOCKED`
    /// otherwise). Owner and admin only (others get `FORBIDDEN`); the input's rules add their
    /// own refusals (`INVALID_INPUT` for a header with both or neither of text and media), and
    /// `CONFLICT`.
    async fn submit_template(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The template: name, language, category, body and buttons.")] input: SubmitTemplateInput,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
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
                header: match input.header {
                    None => None,
                    Some(TemplateHeaderInput {
                        text: Some(text),
                        media: None,
                    }) => Some(TemplateHeader::Text { text }),
                    Some(TemplateHeaderInput {
                        text: None,
                        media: Some(media),
                    }) => Some(TemplateHeader::Media {
                        format: match media {
                            TemplateHeaderMedia::Image => HeaderFormat::Image,
                            TemplateHeaderMedia::Video => HeaderFormat::Video,
                            TemplateHeaderMedia::Document => HeaderFormat::Document,
                        },
                    }),
                    Some(_) => {
                        return Err(ApiError::bad_request(
                            "INVALID_INPUT",
                            "a header is a `text` or a `media`, not both and not neither",
                        ))
                        .gql()
                    }
                },
                footer: input.footer,
            });
            Self::template(ctx, &input.name, &input.language, command).await
        })
        .await
    }

    /// Records WhatsApp's approval of a pending template (stands in for Meta's review webhook);
    /// approving an approved one changes nothing. Returns the template's id. Owner and admin
    /// only (others get `FORBIDDEN`). Refusals: `TEMPLATE_NOT_SUBMITTED`, `TEMPLATE_NOT_PENDING`,
    /// `MISSING_PROVIDER_TEMPLATE_ID`, `CONFLICT`.
    async fn approve_template(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The template's name, as submitted.")] name: String,
        #[graphql(desc = "The template's language code, as submitted.")] language: String,
        #[graphql(desc = "WhatsApp's id of the approved template; not blank.")] provider_template_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let command = TemplateCommand::ApproveTemplate {
                provider_template_id,
                at: Utc::now(),
            };
            Self::template(ctx, &name, &language, command).await
        })
        .await
    }

    /// Records WhatsApp's rejection of a pending template, with its reason; rejecting a rejected
    /// one changes nothing. Returns the template's id. Owner and admin only (others get
    /// `FORBIDDEN`). Refusals: `TEMPLATE_NOT_SUBMITTED`, `TEMPLATE_NOT_PENDING`, `CONFLICT`.
    async fn reject_template(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The template's name, as submitted.")] name: String,
        #[graphql(desc = "The template's language code, as submitted.")] language: String,
        #[graphql(desc = "Why WhatsApp rejected it, shown as `rejectionReason`.")] reason: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let command = TemplateCommand::RejectTemplate { reason, at: Utc::now() };
            Self::template(ctx, &name, &language, command).await
        })
        .await
    }
}
