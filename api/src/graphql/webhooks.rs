//! Webhook endpoints (issue 13): `webhooks`, `webhookDeliveries`, `createWebhook`,
//! `rotateWebhookSecret`, `disableWebhook`, `enableWebhook`, `deleteWebhook`, `testWebhook`,
//! `redeliverWebhook`. Owners, admins and integrators (an API key needs `webhooks:manage`).
//! Delivery itself is [`crate::webhooks`].

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, InputObject, Object, SimpleObject};
use chronicle_commands::webhooks::{self as store, DeliveryRow, EndpointRow, LogPoint, NewEndpoint};
use chronicle_domain::aggregates::aggregate_of_event;
use chronicle_projections::contract::Contract;
use chronicle_projections::log::{self, Cursor, LogFilter};
use chronicle_projections::page::{self, Page};
use chrono::{DateTime, Utc};

use super::receipt::{receipt, Receipt};
use super::{allowed, commands, keys, metadata, page_size, pool};
use crate::auth::Caller;
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;
use crate::webhooks::{check_target, event_body, Dispatcher, Outcome};

/// A webhook endpoint: where the tenant's events are delivered.
#[derive(SimpleObject, Clone, Debug)]
pub struct Webhook {
    /// `whk_…`.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The event types delivered; empty: every type.
    pub event_types: Vec<String>,
    /// What it is for.
    pub description: Option<String>,
    /// Whether deliveries run.
    pub enabled: bool,
    /// Why it was disabled (by a person, or after persistent failure).
    pub disabled_reason: Option<String>,
    /// Failed attempts in a row at the event it is stuck on (0 when delivering well).
    pub failures: i32,
    /// When the next attempt is due, after a failure.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The log cursor of the last event delivered (its checkpoint).
    pub delivered_through: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Who created it.
    pub created_by: String,
}

impl From<EndpointRow> for Webhook {
    fn from(row: EndpointRow) -> Self {
        Self {
            delivered_through: Cursor::new(row.cursor.tx_id, row.cursor.position).to_string(),
            id: row.endpoint_id,
            url: row.url,
            event_types: row.event_types,
            description: row.description,
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            failures: row.failures,
            next_attempt_at: row.next_attempt_at,
            created_at: row.created_at,
            created_by: row.created_by,
        }
    }
}

/// One attempt to deliver to an endpoint.
#[derive(SimpleObject, Clone, Debug, Default)]
pub struct WebhookDelivery {
    /// The attempt's number in the delivery log (what `after` pages by).
    pub id: i64,
    /// The `webhook-id` header: the same on every attempt of one event.
    pub message_id: String,
    /// The event type delivered (`webhook.test` for a test).
    pub event_type: String,
    /// The event's log position; null for a test.
    pub event_position: Option<i64>,
    /// The event's cursor; null for a test.
    pub event_cursor: Option<String>,
    /// The attempt's number for this event (1 for the first).
    pub attempt: i32,
    /// Whether a person asked for it (`testWebhook`, `redeliverWebhook`).
    pub manual: bool,
    /// The receiver's HTTP status; null when there was no answer.
    pub status_code: Option<i32>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub latency_ms: i32,
    /// Whether the receiver answered 2xx.
    pub succeeded: bool,
    /// When it was made.
    pub at: Option<DateTime<Utc>>,
}

impl From<DeliveryRow> for WebhookDelivery {
    fn from(row: DeliveryRow) -> Self {
        Self {
            id: row.delivery_id,
            message_id: row.message_id,
            event_type: row.event_type,
            event_position: row.event_position,
            event_cursor: row.event_cursor,
            attempt: row.attempt,
            manual: row.manual,
            status_code: row.status_code,
            error: row.error,
            latency_ms: row.latency_ms,
            succeeded: row.succeeded,
            at: Some(row.at),
        }
    }
}

impl WebhookDelivery {
    fn of(outcome: &Outcome, message_id: String, event_type: String, event: Option<(i64, String)>) -> Self {
        let (event_position, event_cursor) = event.unzip();
        Self {
            id: 0,
            message_id,
            event_type,
            event_position,
            event_cursor,
            attempt: 1,
            manual: true,
            status_code: outcome.status_code.map(i32::from),
            error: outcome.error.clone(),
            latency_ms: outcome.latency_ms,
            succeeded: outcome.succeeded(),
            at: Some(Utc::now()),
        }
    }
}

/// What `createWebhook` asks for.
#[derive(InputObject)]
pub struct CreateWebhookInput {
    /// The receiver: an `https://` (or `http://`) URL on a public address.
    pub url: String,
    /// Only these event types (names from `eventTypes`); empty or absent: every type.
    pub event_types: Option<Vec<String>>,
    /// What it is for (at most 200 characters).
    pub description: Option<String>,
}

fn dispatcher<'a>(ctx: &'a Context<'_>) -> Result<&'a Dispatcher, ApiError> {
    ctx.data::<Dispatcher>()
        .map_err(|_| ApiError::Unavailable("no webhook dispatcher in the schema".into()))
}

fn manager<'a>(ctx: &'a Context<'_>) -> Result<&'a Caller, ApiError> {
    allowed(ctx, Permission::ManageWebhooks, "manage webhooks")
}

/// A manager who may also read the events an endpoint receives (creating one, or sending an
/// event again, is reading the log: a key needs `events:read` beside `webhooks:manage`).
fn reading_manager<'a>(ctx: &'a Context<'_>) -> Result<&'a Caller, ApiError> {
    let caller = manager(ctx)?;
    allowed(ctx, Permission::ReadEventStream, "read the events a webhook receives")?;
    Ok(caller)
}

async fn endpoint_of(ctx: &Context<'_>, caller: &Caller, id: &str) -> Result<EndpointRow, ApiError> {
    store::endpoint(pool(ctx)?, &caller.tenant, id.trim())
        .await?
        .ok_or_else(|| ApiError::bad_request("UNKNOWN_WEBHOOK", format!("there is no webhook {:?}", id.trim())))
}

/// The webhook queries.
#[derive(Default)]
pub struct WebhooksQuery;

#[Object]
impl WebhooksQuery {
    /// The tenant's webhook endpoints, newest first. Owners, admins and integrators (else
    /// `FORBIDDEN`; an API key needs `webhooks:manage`).
    async fn webhooks(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, desc = "Page size: 1 to 200, default 50 (`PAGE_TOO_LARGE` above 200).")] first: i32,
        #[graphql(desc = "The `cursor` of the last endpoint of the previous page; null for the newest.")] after: Option<
            String,
        >,
    ) -> async_graphql::Result<Connection<String, Webhook>> {
        let caller = manager(ctx).gql()?;
        let limit = page_size(first, 200).gql()?;
        let before = match page::after_time(after.as_deref()) {
            Ok((Some(at), Some(id))) => Some((at, id)),
            Ok(_) => None,
            Err(e) => return Err(ApiError::bad_request("BAD_CURSOR", e.to_string())).gql(),
        };
        let rows = store::endpoints(pool(ctx).gql()?, &caller.tenant, before, limit + 1)
            .await
            .map_err(ApiError::from)
            .gql()?;
        let page = Page::from_rows(rows, limit, |row| page::time_cursor(row.created_at, &row.endpoint_id));
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        connection.edges.extend(
            page.rows
                .into_iter()
                .map(|(cursor, row)| Edge::new(cursor, Webhook::from(row))),
        );
        Ok(connection)
    }

    /// An endpoint's delivery log, newest attempt first: every attempt with its status code,
    /// error and latency. Owners, admins and integrators; `UNKNOWN_WEBHOOK` for an endpoint
    /// the tenant does not have.
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint's id (`whk_…`).")] webhook_id: String,
        #[graphql(default = 50, desc = "Page size: 1 to 500, default 50 (`PAGE_TOO_LARGE` above 500).")] first: i32,
        #[graphql(desc = "The `cursor` of the last attempt of the previous page; null for the newest.")] after: Option<
            String,
        >,
    ) -> async_graphql::Result<Connection<String, WebhookDelivery>> {
        let caller = manager(ctx).gql()?;
        let limit = page_size(first, 500).gql()?;
        let endpoint = endpoint_of(ctx, caller, &webhook_id).await.gql()?;
        let before = match &after {
            None => None,
            Some(cursor) => Some(
                page::decode(cursor)
                    .ok()
                    .and_then(|text| text.parse::<i64>().ok())
                    .ok_or_else(|| {
                        ApiError::bad_request("BAD_CURSOR", "malformed cursor: pass a cursor this list gave out")
                    })
                    .gql()?,
            ),
        };
        let rows = store::deliveries(
            pool(ctx).gql()?,
            &caller.tenant,
            &endpoint.endpoint_id,
            before,
            limit + 1,
        )
        .await
        .map_err(ApiError::from)
        .gql()?;
        let page = Page::from_rows(rows, limit, |row| page::encode(&row.delivery_id.to_string()));
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        connection.edges.extend(
            page.rows
                .into_iter()
                .map(|(cursor, row)| Edge::new(cursor, WebhookDelivery::from(row))),
        );
        Ok(connection)
    }
}

/// The webhook mutations.
#[derive(Default)]
pub struct WebhooksMutation;

#[Object]
impl WebhooksMutation {
    /// Creates an endpoint that receives the tenant's events from its creation on (its own
    /// `WebhookEndpointCreated` first, when it takes every type), and answers its
    /// signing secret this once (the receipt's `secret`, `whsec_…`; `id` is the endpoint's).
    /// Owners, admins and integrators (else `FORBIDDEN`; an API key needs `webhooks:manage`).
    /// Refused, with nothing stored, with `INVALID_WEBHOOK_URL`, `WEBHOOK_TARGET_REFUSED` (a
    /// private or loopback address outside development), `UNKNOWN_EVENT_TYPE` or
    /// `DESCRIPTION_TOO_LONG`.
    async fn create_webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The receiver's URL, the event types it wants and a description.")] input: CreateWebhookInput,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = reading_manager(ctx).gql()?;
            let event_types: Vec<String> = input
                .event_types
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    let t = t.trim().to_string();
                    if aggregate_of_event(&t).is_some() {
                        Ok(t)
                    } else {
                        Err(ApiError::bad_request(
                            "UNKNOWN_EVENT_TYPE",
                            format!("{t:?} is not an event type (the `eventTypes` query lists them)"),
                        ))
                    }
                })
                .collect::<Result<_, _>>()
                .gql()?;
            let url = input.url.trim().to_string();
            chronicle_domain::webhook::check_url(&url)
                .map_err(|e| ApiError::bad_request("INVALID_WEBHOOK_URL", e.to_string()))
                .gql()?;
            check_target(&url, dispatcher(ctx).gql()?.settings().allow_private)
                .await
                .map_err(|why| ApiError::bad_request("WEBHOOK_TARGET_REFUSED", format!("{url} is refused: {why}")))
                .gql()?;
            let pool = pool(ctx).gql()?;
            let head = log::head(pool, &LogFilter::tenant(caller.tenant.as_str()))
                .await
                .map_err(ApiError::from)
                .gql()?
                .unwrap_or(Cursor::START);
            let (id, secret, _) = commands(ctx)
                .gql()?
                .create_webhook(
                    keys(ctx).gql()?.master(),
                    NewEndpoint {
                        url,
                        event_types,
                        description: input.description,
                        start_after: LogPoint {
                            tx_id: head.tx_id,
                            position: head.position,
                        },
                    },
                    &metadata(ctx, caller),
                )
                .await
                .map_err(ApiError::from)
                .gql()?;
            let mut answer = Receipt::new(id);
            answer.secret = Some(secret);
            Ok(answer)
        })
        .await
    }

    /// Replaces an endpoint's secret and answers the new one this once (the receipt's
    /// `secret`). Until the grace period ends, deliveries carry signatures under both, so the
    /// receiver can switch without losing a message. `UNKNOWN_WEBHOOK`, `GRACE_IN_THE_PAST`.
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint's id (`whk_…`).")] id: String,
        #[graphql(default = 24, desc = "Hours the previous secret still signs: 0 to 720, default 24.")]
        grace_hours: i32,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = manager(ctx).gql()?;
            if !(0..=720).contains(&grace_hours) {
                return Err(ApiError::bad_request("BAD_GRACE", "graceHours is 0 to 720")).gql();
            }
            let until = Utc::now() + chrono::Duration::hours(i64::from(grace_hours));
            let (secret, _) = commands(ctx)
                .gql()?
                .rotate_webhook_secret(keys(ctx).gql()?.master(), id.trim(), until, &metadata(ctx, caller))
                .await
                .map_err(ApiError::from)
                .gql()?;
            let mut answer = Receipt::new(id.trim());
            answer.secret = Some(secret);
            Ok(answer)
        })
        .await
    }

    /// Stops deliveries to an endpoint (they resume where they stopped when it is enabled).
    /// Disabling a disabled endpoint changes nothing. `UNKNOWN_WEBHOOK`.
    async fn disable_webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint's id (`whk_…`).")] id: String,
        #[graphql(desc = "Why, for the audit history.")] reason: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = manager(ctx).gql()?;
            let reason = reason.unwrap_or_else(|| "disabled by a person".into());
            commands(ctx)
                .gql()?
                .disable_webhook(id.trim(), &reason, false, &metadata(ctx, caller))
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(Receipt::new(id.trim()))
        })
        .await
    }

    /// Resumes deliveries from the endpoint's checkpoint (the event it was stuck on comes
    /// first), its failures forgotten. `UNKNOWN_WEBHOOK`.
    async fn enable_webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint's id (`whk_…`).")] id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = manager(ctx).gql()?;
            commands(ctx)
                .gql()?
                .enable_webhook(id.trim(), &metadata(ctx, caller))
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(Receipt::new(id.trim()))
        })
        .await
    }

    /// Deletes an endpoint: nothing more is delivered to it. `UNKNOWN_WEBHOOK`.
    async fn delete_webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint's id (`whk_…`).")] id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = manager(ctx).gql()?;
            commands(ctx)
                .gql()?
                .delete_webhook(id.trim(), &metadata(ctx, caller))
                .await
                .map_err(ApiError::from)
                .gql()?;
            Ok(Receipt::new(id.trim()))
        })
        .await
    }

    /// Sends a test message (`"type": "webhook.test"`) to the endpoint now, signed like every
    /// delivery, and answers how it went (the receipt's `delivery`; also in the delivery log).
    /// `UNKNOWN_WEBHOOK`.
    async fn test_webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint's id (`whk_…`).")] id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = manager(ctx).gql()?;
            let endpoint = endpoint_of(ctx, caller, &id).await.gql()?;
            let now = Utc::now();
            let body = serde_json::to_vec(&serde_json::json!({
                "type": "webhook.test",
                "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "data": {"webhookId": endpoint.endpoint_id, "message": "A test message from Chronicle."},
            }))
            .unwrap_or_default();
            let message_id = format!("msg_{}_test_{}", endpoint.endpoint_id, uuid::Uuid::new_v4().simple());
            let outcome = dispatcher(ctx)
                .gql()?
                .send_now(&endpoint, &message_id, "webhook.test", None, &body)
                .await
                .map_err(ApiError::from)
                .gql()?;
            let mut answer = Receipt::new(endpoint.endpoint_id.clone());
            answer.delivery = Some(WebhookDelivery::of(&outcome, message_id, "webhook.test".into(), None));
            Ok(answer)
        })
        .await
    }

    /// Sends one of the tenant's events to the endpoint again, now (a manual redelivery, with
    /// the event's usual `webhook-id`), and answers how it went (the receipt's `delivery`).
    /// The endpoint's checkpoint does not move. `UNKNOWN_WEBHOOK`, `UNKNOWN_EVENT` (no event of
    /// the tenant at that position).
    async fn redeliver_webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint's id (`whk_…`).")] id: String,
        #[graphql(desc = "The event's `position` (from the delivery log or the event log).")] position: i64,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = reading_manager(ctx).gql()?;
            let endpoint = endpoint_of(ctx, caller, &id).await.gql()?;
            let pool = pool(ctx).gql()?;
            let event = log::event_at(pool, caller.tenant.as_str(), position)
                .await
                .map_err(ApiError::from)
                .gql()?
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "UNKNOWN_EVENT",
                        format!("the tenant has no event at position {position}"),
                    )
                })
                .gql()?;
            if !endpoint.event_types.is_empty() && !endpoint.event_types.contains(&event.event_type) {
                return Err(ApiError::bad_request(
                    "UNKNOWN_EVENT",
                    format!(
                        "the event at position {position} is a {}, which this webhook does not take",
                        event.event_type
                    ),
                ))
                .gql();
            }
            let point = LogPoint {
                tx_id: event.cursor.tx_id,
                position: event.cursor.position,
            };
            let mut contract = Contract::new(pool.clone(), caller.tenant.clone(), None, false);
            let shaped = contract.shape(event).await.map_err(ApiError::from).gql()?;
            let message_id = format!("msg_{}_{}", endpoint.endpoint_id, shaped.position);
            let outcome = dispatcher(ctx)
                .gql()?
                .send_now(
                    &endpoint,
                    &message_id,
                    &shaped.event_type,
                    Some((point, shaped.cursor.clone())),
                    &event_body(&shaped),
                )
                .await
                .map_err(ApiError::from)
                .gql()?;
            let mut answer = Receipt::new(endpoint.endpoint_id.clone());
            answer.delivery = Some(WebhookDelivery::of(
                &outcome,
                message_id,
                shaped.event_type,
                Some((shaped.position, shaped.cursor)),
            ));
            Ok(answer)
        })
        .await
    }
}
