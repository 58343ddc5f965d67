//! Campaigns: the read models (`campaigns` with the counts every event carries, and
//! `campaign_recipients` with each recipient's status; written by [`CampaignsProjector`], read
//! by [`list`], [`campaign`] and [`recipients`]) and the campaign runner's feed
//! (`campaign_run_feed`, `campaign_outcome_feed`, `campaign_messages`; written by
//! [`CampaignWorkProjector`], copied into the runner's own tables and worked by
//! `chronicle_commands::campaigns::CampaignRunner`).
//!
//! Counts are copied from the events, never recounted. Recipients are contact ids (keyed
//! hashes); nothing here is personal data in the clear.

use chronicle_domain::campaign::{CampaignEvent, RecipientCounts, RecipientStatus, MESSAGE_KEY_PREFIX};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

use crate::log::StoredEvent;
use crate::page::{decode, encode, read_cursor, time_cursor, BadCursor, Page};
use crate::runtime::{Fold, ProjectionError};
use crate::shared::{begin_for_tenant, payload};

/// The read models' projector name (its checkpoint key). Never renamed.
pub const NAME: &str = "campaigns";

/// The work lists' projector name. Never renamed.
pub const WORK_NAME: &str = "campaign_work";

fn parse(event: &StoredEvent) -> Result<CampaignEvent, ProjectionError> {
    payload(event)
}

/// The campaign id of a campaign stream (`<tenant>:campaign_<id>`).
fn campaign_id(event: &StoredEvent) -> String {
    let local = event
        .aggregate_id
        .strip_prefix(&format!("{}:", event.tenant_id))
        .unwrap_or(&event.aggregate_id);
    local.strip_prefix("campaign_").unwrap_or(local).to_string()
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// What an event changes on its `campaigns` row besides the counts.
#[derive(Default)]
struct Change<'a> {
    status: Option<&'a str>,
    start_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    unit_price: Option<i64>,
    reserved: Option<i64>,
    reservation: Option<String>,
    released: Option<i64>,
    batches: Option<i32>,
}

/// Folds `Campaign` events into `campaigns` and `campaign_recipients`.
#[derive(Debug, Default)]
pub struct CampaignsProjector;

impl CampaignsProjector {
    async fn update(
        db: &mut PgConnection,
        event: &StoredEvent,
        counts: RecipientCounts,
        change: Change<'_>,
    ) -> Result<(), ProjectionError> {
        sqlx::query(
            "UPDATE campaigns SET status = coalesce($3, status), start_at = coalesce($4, start_at),
                    started_at = coalesce($5, started_at), finished_at = coalesce($6, finished_at),
                    unit_price = coalesce($7, unit_price), reserved = coalesce($8, reserved),
                    reservation = coalesce($9, reservation), released = coalesce($10, released),
                    batches = greatest(batches, coalesce($11, 0)),
                    total = $12, pending = $13, queued = $14, sent = $15, delivered = $16, read = $17,
                    failed = $18, cancelled = $19, charged = $20, refunded = $21, last_position = $22
              WHERE tenant_id = $1 AND campaign_id = $2 AND last_position < $22",
        )
        .bind(&event.tenant_id)
        .bind(campaign_id(event))
        .bind(change.status)
        .bind(change.start_at)
        .bind(change.started_at)
        .bind(change.finished_at)
        .bind(change.unit_price)
        .bind(change.reserved)
        .bind(change.reservation)
        .bind(change.released)
        .bind(change.batches)
        .bind(int(counts.total))
        .bind(int(counts.pending))
        .bind(int(counts.queued))
        .bind(int(counts.sent))
        .bind(int(counts.delivered))
        .bind(int(counts.read))
        .bind(int(counts.failed))
        .bind(int(counts.cancelled))
        .bind(counts.charged)
        .bind(counts.refunded)
        .bind(event.global_position)
        .execute(&mut *db)
        .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn recipients(
        db: &mut PgConnection,
        event: &StoredEvent,
        recipients: &[String],
        status: RecipientStatus,
        batch: Option<i32>,
        reason: Option<&str>,
        refunded: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<(), ProjectionError> {
        sqlx::query(
            "UPDATE campaign_recipients SET status = $4, batch = coalesce($5, batch), reason = coalesce($6, reason),
                    refunded = coalesce($7, refunded), updated_at = $8, last_position = $9
              WHERE tenant_id = $1 AND campaign_id = $2 AND recipient = ANY($3) AND last_position < $9",
        )
        .bind(&event.tenant_id)
        .bind(campaign_id(event))
        .bind(recipients)
        .bind(status.as_str())
        .bind(batch)
        .bind(reason)
        .bind(refunded)
        .bind(at)
        .bind(event.global_position)
        .execute(&mut *db)
        .await?;
        Ok(())
    }

    async fn apply_event(db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let parsed = parse(event)?;
        let counts = parsed.counts();
        match parsed {
            CampaignEvent::CampaignCreated {
                name,
                template_name,
                language,
                variables,
                segment,
                recipients,
                created_by,
                at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO campaigns (tenant_id, campaign_id, name, template_name, language, variables, segment,
                            status, created_by, created_at, total, pending, last_position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'draft', $8, $9, $10, $10, $11)
                     ON CONFLICT (tenant_id, campaign_id) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(campaign_id(event))
                .bind(name)
                .bind(template_name)
                .bind(language)
                .bind(serde_json::json!(variables))
                .bind(segment)
                .bind(created_by)
                .bind(at)
                .bind(int(counts.total))
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
                let positions: Vec<i32> = (0..recipients.len())
                    .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
                    .collect();
                sqlx::query(
                    "INSERT INTO campaign_recipients (tenant_id, campaign_id, recipient, position, updated_at, last_position)
                     SELECT $1, $2, r, p, $5, $6 FROM unnest($3::text[], $4::int[]) AS t(r, p)
                     ON CONFLICT (tenant_id, campaign_id, recipient) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(campaign_id(event))
                .bind(&recipients)
                .bind(&positions)
                .bind(at)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
            }
            CampaignEvent::CampaignScheduled {
                start_at,
                unit_price,
                reserved,
                reservation,
                ..
            } => {
                let change = Change {
                    status: Some("scheduled"),
                    start_at: Some(start_at),
                    unit_price: Some(unit_price),
                    reserved: Some(reserved),
                    reservation,
                    ..Change::default()
                };
                Self::update(db, event, counts, change).await?;
            }
            CampaignEvent::CampaignStarted { at, .. } => {
                let change = Change {
                    status: Some("running"),
                    started_at: Some(at),
                    ..Change::default()
                };
                Self::update(db, event, counts, change).await?;
            }
            CampaignEvent::CampaignBatchStarted {
                batch, recipients, at, ..
            } => {
                let batch = i32::try_from(batch).unwrap_or(i32::MAX);
                Self::recipients(
                    db,
                    event,
                    &recipients,
                    RecipientStatus::Queued,
                    Some(batch),
                    None,
                    None,
                    at,
                )
                .await?;
                let change = Change {
                    batches: Some(batch),
                    ..Change::default()
                };
                Self::update(db, event, counts, change).await?;
            }
            CampaignEvent::CampaignBatchDispatched { .. } => {
                Self::update(db, event, counts, Change::default()).await?;
            }
            CampaignEvent::CampaignRecipientSent { recipient, at, .. } => {
                Self::recipients(db, event, &[recipient], RecipientStatus::Sent, None, None, None, at).await?;
                Self::update(db, event, counts, Change::default()).await?;
            }
            CampaignEvent::CampaignRecipientDelivered { recipient, at, .. } => {
                Self::recipients(
                    db,
                    event,
                    &[recipient],
                    RecipientStatus::Delivered,
                    None,
                    None,
                    None,
                    at,
                )
                .await?;
                Self::update(db, event, counts, Change::default()).await?;
            }
            CampaignEvent::CampaignRecipientRead { recipient, at, .. } => {
                Self::recipients(db, event, &[recipient], RecipientStatus::Read, None, None, None, at).await?;
                Self::update(db, event, counts, Change::default()).await?;
            }
            CampaignEvent::CampaignRecipientFailed {
                recipient,
                reason,
                refund,
                at,
                ..
            } => {
                let refunded = refund.map_or(0, |r| r.amount);
                Self::recipients(
                    db,
                    event,
                    &[recipient],
                    RecipientStatus::Failed,
                    None,
                    Some(&reason),
                    Some(refunded),
                    at,
                )
                .await?;
                Self::update(db, event, counts, Change::default()).await?;
            }
            CampaignEvent::CampaignPaused { .. } => {
                let change = Change {
                    status: Some("paused"),
                    ..Change::default()
                };
                Self::update(db, event, counts, change).await?;
            }
            CampaignEvent::CampaignResumed { status, .. } => {
                let change = Change {
                    status: Some(status.as_str()),
                    ..Change::default()
                };
                Self::update(db, event, counts, change).await?;
            }
            CampaignEvent::CampaignCancelled { released, at, .. } => {
                sqlx::query(
                    "UPDATE campaign_recipients SET status = 'cancelled', updated_at = $3, last_position = $4
                      WHERE tenant_id = $1 AND campaign_id = $2 AND status = 'pending' AND last_position < $4",
                )
                .bind(&event.tenant_id)
                .bind(campaign_id(event))
                .bind(at)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
                let change = Change {
                    status: Some("cancelled"),
                    finished_at: Some(at),
                    released: Some(released),
                    ..Change::default()
                };
                Self::update(db, event, counts, change).await?;
            }
            CampaignEvent::CampaignCompleted { released, at, .. } => {
                let change = Change {
                    status: Some("completed"),
                    finished_at: Some(at),
                    released: Some(released),
                    ..Change::default()
                };
                Self::update(db, event, counts, change).await?;
            }
        }
        Ok(())
    }
}

impl Fold for CampaignsProjector {
    const NAME: &'static str = NAME;
    const EVENT_TYPES: &'static [&'static str] = CampaignEvent::TYPES;
    const AGGREGATES: &'static [&'static str] = &["Campaign"];
    const TABLES: &'static [&'static str] = &["campaign_recipients", "campaigns"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        Self::apply_event(db, event).await
    }
}

/// The campaign runner's feed (see the module docs and migrations `..55`, `..83`): a
/// `campaign_run_feed` row per scheduled campaign with its status and latest event; the
/// outcomes of campaign messages in `campaign_outcome_feed`; and `campaign_messages`, which
/// message belongs to which recipient. The runner copies the feeds into its own
/// `campaign_runs` and `campaign_outcomes`.
#[derive(Debug, Default)]
pub struct CampaignWorkProjector;

const WORK_TYPES: &[&str] = &[
    "CampaignCreated",
    "CampaignScheduled",
    "CampaignStarted",
    "CampaignBatchStarted",
    "CampaignBatchDispatched",
    "CampaignRecipientSent",
    "CampaignRecipientDelivered",
    "CampaignRecipientRead",
    "CampaignRecipientFailed",
    "CampaignPaused",
    "CampaignResumed",
    "CampaignCancelled",
    "CampaignCompleted",
    "OutboundMessageSent",
    "OutboundMessageFailed",
    "DeliveryStatusRecorded",
];

/// The time in an event body's `at` (the event's recording time if absent).
fn body_at(event: &StoredEvent, body: &serde_json::Value) -> DateTime<Utc> {
    body["at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(event.recorded_at)
}

/// A provider failure as a reason: `<code>: <title>`.
fn failure_reason(body: &serde_json::Value, code: &str, title: &str) -> String {
    match (body[code].as_i64(), body[title].as_str()) {
        (Some(code), Some(title)) => format!("{code}: {title}"),
        (Some(code), None) => code.to_string(),
        (None, Some(title)) if !title.trim().is_empty() => title.to_string(),
        _ => "failed".to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn add_outcome(
    db: &mut PgConnection,
    event: &StoredEvent,
    campaign_id: &str,
    recipient: &str,
    outcome: &str,
    reason: Option<String>,
    at: DateTime<Utc>,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO campaign_outcome_feed (tenant_id, campaign_id, recipient, outcome, reason, at, position)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, campaign_id, recipient, outcome) DO NOTHING",
    )
    .bind(&event.tenant_id)
    .bind(campaign_id)
    .bind(recipient)
    .bind(outcome)
    .bind(reason)
    .bind(at)
    .bind(event.global_position)
    .execute(&mut *db)
    .await?;
    Ok(())
}

impl CampaignWorkProjector {
    async fn campaign_event(db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let parsed = parse(event)?;
        let id = campaign_id(event);
        let status = match &parsed {
            CampaignEvent::CampaignScheduled { start_at, .. } => {
                sqlx::query(
                    "INSERT INTO campaign_run_feed (tenant_id, campaign_id, status, start_at, position, status_position)
                     VALUES ($1, $2, 'scheduled', $3, $4, $4)
                     ON CONFLICT (tenant_id, campaign_id) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&id)
                .bind(start_at)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
                return Ok(());
            }
            CampaignEvent::CampaignStarted { .. } => Some("running"),
            CampaignEvent::CampaignPaused { .. } => Some("paused"),
            CampaignEvent::CampaignResumed { status, .. } => Some(status.as_str()),
            CampaignEvent::CampaignCancelled { .. } => Some("cancelled"),
            CampaignEvent::CampaignCompleted { .. } => Some("completed"),
            _ => None,
        };
        // Every event moves the row (the runner's copy turns busy again); a status change is
        // worked at once, other events leave the rate-limit time standing.
        sqlx::query(
            "UPDATE campaign_run_feed SET status = coalesce($3, status), position = $4,
                    status_position = CASE WHEN $3::text IS NULL THEN status_position ELSE $4 END
              WHERE tenant_id = $1 AND campaign_id = $2 AND position < $4",
        )
        .bind(&event.tenant_id)
        .bind(&id)
        .bind(status)
        .bind(event.global_position)
        .execute(&mut *db)
        .await?;
        Ok(())
    }

    async fn conversation_event(db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let body = &event.payload[event.event_type.as_str()];
        let at = body_at(event, body);
        if event.event_type == "DeliveryStatusRecorded" {
            let Some(message_ref) = body["message_ref"].as_str() else {
                return Ok(());
            };
            let outcome = match body["status"].as_str() {
                Some(s @ ("delivered" | "read" | "failed")) => s,
                _ => return Ok(()),
            };
            let owner: Option<(String, String)> = sqlx::query_as(
                "SELECT campaign_id, recipient FROM campaign_messages WHERE tenant_id = $1 AND message_ref = $2",
            )
            .bind(&event.tenant_id)
            .bind(message_ref)
            .fetch_optional(&mut *db)
            .await?;
            if let Some((campaign_id, recipient)) = owner {
                let reason = (outcome == "failed").then(|| failure_reason(body, "error_code", "error_title"));
                add_outcome(db, event, &campaign_id, &recipient, outcome, reason, at).await?;
            }
            return Ok(());
        }
        let key = body["idempotency_key"].as_str().unwrap_or_default();
        let Some((campaign_id, recipient)) = key.strip_prefix(MESSAGE_KEY_PREFIX).and_then(|k| k.split_once(':'))
        else {
            return Ok(());
        };
        if event.event_type == "OutboundMessageSent" {
            if let Some(message_ref) = body["message_ref"].as_str() {
                sqlx::query(
                    "INSERT INTO campaign_messages (tenant_id, message_ref, campaign_id, recipient)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, message_ref) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(message_ref)
                .bind(campaign_id)
                .bind(recipient)
                .execute(&mut *db)
                .await?;
            }
            add_outcome(db, event, campaign_id, recipient, "sent", None, at).await?;
        } else {
            let reason = failure_reason(body, "code", "title");
            add_outcome(db, event, campaign_id, recipient, "failed", Some(reason), at).await?;
        }
        Ok(())
    }
}

impl Fold for CampaignWorkProjector {
    const NAME: &'static str = WORK_NAME;
    const EVENT_TYPES: &'static [&'static str] = WORK_TYPES;
    const AGGREGATES: &'static [&'static str] = &["Campaign", "Conversation"];
    /// Clears the feeds and the message lookup; the runner's `campaign_runs` and
    /// `campaign_outcomes` keep the work already done, so a rebuild never repeats an effect
    /// (decision 0013).
    const TABLES: &'static [&'static str] = &["campaign_run_feed", "campaign_outcome_feed", "campaign_messages"];
    const FEEDS: &'static [&'static str] = &["campaign_run_feed", "campaign_outcome_feed"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        match event.aggregate_type.as_str() {
            "Campaign" => Self::campaign_event(db, event).await,
            _ => Self::conversation_event(db, event).await,
        }
    }
}

/// A campaign as dashboards see it. Amounts in milli-tokens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CampaignRow {
    pub campaign_id: String,
    pub name: String,
    pub template_name: String,
    pub language: String,
    pub variables: Vec<String>,
    pub segment: String,
    pub status: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub start_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub unit_price: i64,
    pub reserved: i64,
    pub reservation: Option<String>,
    pub charged: i64,
    pub refunded: i64,
    pub released: i64,
    pub batches: i32,
    pub total: i32,
    pub pending: i32,
    pub queued: i32,
    pub sent: i32,
    pub delivered: i32,
    pub read: i32,
    pub failed: i32,
    pub cancelled: i32,
}

const CAMPAIGN_COLUMNS: &str = "campaign_id, name, template_name, language, variables, segment, status, created_by,
    created_at, start_at, started_at, finished_at, unit_price, reserved, reservation, charged, refunded, released,
    batches, total, pending, queued, sent, delivered, read, failed, cancelled";

fn campaign_row(r: &sqlx::postgres::PgRow) -> Result<CampaignRow, sqlx::Error> {
    let variables: serde_json::Value = r.try_get("variables")?;
    Ok(CampaignRow {
        campaign_id: r.try_get("campaign_id")?,
        name: r.try_get("name")?,
        template_name: r.try_get("template_name")?,
        language: r.try_get("language")?,
        variables: serde_json::from_value(variables).unwrap_or_default(),
        segment: r.try_get("segment")?,
        status: r.try_get("status")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        start_at: r.try_get("start_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        unit_price: r.try_get("unit_price")?,
        reserved: r.try_get("reserved")?,
        reservation: r.try_get("reservation")?,
        charged: r.try_get("charged")?,
        refunded: r.try_get("refunded")?,
        released: r.try_get("released")?,
        batches: r.try_get("batches")?,
        total: r.try_get("total")?,
        pending: r.try_get("pending")?,
        queued: r.try_get("queued")?,
        sent: r.try_get("sent")?,
        delivered: r.try_get("delivered")?,
        read: r.try_get("read")?,
        failed: r.try_get("failed")?,
        cancelled: r.try_get("cancelled")?,
    })
}

/// One tenant's campaigns, newest first, after a cursor.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    status: Option<&str>,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<CampaignRow>, BadCursor>, sqlx::Error> {
    let after = match after.map(read_cursor::<i64, String>).transpose() {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let (after_micros, after_id) = after.unwrap_or((i64::MAX, String::new()));
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(&format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns
          WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
            AND ((extract(epoch FROM created_at) * 1000000)::bigint, campaign_id)
                < ($3::bigint, CASE WHEN $4 = '' THEN chr(1114111) ELSE $4 END)
          ORDER BY created_at DESC, campaign_id DESC
          LIMIT $5"
    ))
    .bind(tenant.as_str())
    .bind(status)
    .bind(after_micros)
    .bind(&after_id)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Page::of(&rows, first, |r| {
        let row = campaign_row(r)?;
        let cursor = time_cursor(row.created_at, &row.campaign_id);
        Ok((cursor, row))
    })?))
}

/// One campaign of the tenant.
pub async fn campaign(pool: &PgPool, tenant: &TenantId, campaign_id: &str) -> Result<Option<CampaignRow>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let row = sqlx::query(&format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE tenant_id = $1 AND campaign_id = $2"
    ))
    .bind(tenant.as_str())
    .bind(campaign_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.as_ref().map(campaign_row).transpose()
}

/// One recipient of a campaign.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecipientRow {
    pub recipient: String,
    pub position: i32,
    pub status: String,
    pub batch: Option<i32>,
    pub reason: Option<String>,
    /// Milli-tokens refunded for a failed recipient.
    pub refunded: i64,
    pub updated_at: DateTime<Utc>,
}

/// A campaign's recipients in sending order (optionally of one status), after a cursor.
pub async fn recipients(
    pool: &PgPool,
    tenant: &TenantId,
    campaign_id: &str,
    status: Option<&str>,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<RecipientRow>, BadCursor>, sqlx::Error> {
    let after: i32 = match after {
        None => -1,
        Some(cursor) => match decode(cursor).ok().and_then(|text| text.parse().ok()) {
            Some(position) => position,
            None => return Ok(Err(BadCursor)),
        },
    };
    let first = first.clamp(1, 500);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT recipient, position, status, batch, reason, refunded, updated_at FROM campaign_recipients
          WHERE tenant_id = $1 AND campaign_id = $2 AND ($3::text IS NULL OR status = $3) AND position > $4
          ORDER BY position
          LIMIT $5",
    )
    .bind(tenant.as_str())
    .bind(campaign_id)
    .bind(status)
    .bind(after)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Page::of(&rows, first, |r| {
        let row = RecipientRow {
            recipient: r.try_get("recipient")?,
            position: r.try_get("position")?,
            status: r.try_get("status")?,
            batch: r.try_get("batch")?,
            reason: r.try_get("reason")?,
            refunded: r.try_get("refunded")?,
            updated_at: r.try_get("updated_at")?,
        };
        Ok((encode(&row.position.to_string()), row))
    })?))
}

/// Resolves a segment from the `contacts` read model: the tenant's contacts carrying every tag
/// of `tags`, not erased and not opted out, oldest first, at most `limit`.
pub async fn segment_by_tags(
    pool: &PgPool,
    tenant: &TenantId,
    tags: &[String],
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT contact_id FROM contacts
          WHERE tenant_id = $1 AND tags @> $2::text[] AND erased_at IS NULL AND consent_status <> 'opted_out'
          ORDER BY created_at, contact_id
          LIMIT $3",
    )
    .bind(tenant.as_str())
    .bind(tags)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids)
}
