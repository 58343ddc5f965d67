//! The `leads` read model and the lead funnel. Written only by [`LeadsProjector`]; read by
//! [`list`], [`get`] and [`funnel`].
//!
//! - `leads`: one row per lead: stage, source (of its first capture), score and reasons,
//!   assignee, the prospect's name, phone and e-mail (opened from their envelopes with the
//!   contact's data key; empty once the key is erased), the capture facts, the number of
//!   captures, the customer it was won as, or why it was lost.
//! - `lead_stage_transitions`: every move of a lead into a stage (its capture into `new`, each
//!   advance, loss, reopening and win) with the lead's source and the move's time, so the funnel
//!   of any period and source is one grouped query ([`funnel`]).
//!
//! Idempotent: row updates are guarded by the last applied global position, and transitions
//! are keyed by their event's position.

use std::collections::{BTreeMap, HashMap};

use chronicle_domain::lead::{LeadEvent, Stage};
use chronicle_domain::pii::{DataKey, Envelope, MasterKey};
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool, Row};

use crate::log::StoredEvent;
use crate::page::{cursor, read_cursor, BadCursor, Page};
use crate::runtime::{ProjectionError, Projector};
use crate::shared::{all_tenants, begin_for_tenant, clear_person, erased_contact, payload, with_erasure};

/// The projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "leads";

/// Folds `Lead` events into `leads` and `lead_stage_transitions`.
pub struct LeadsProjector {
    master: MasterKey,
}

use crate::shared::KeyCache;

impl LeadsProjector {
    /// A projector opening envelopes with data keys unwrapped by `master`.
    pub fn new(master: MasterKey) -> Self {
        Self { master }
    }

    async fn key(
        &self,
        db: &mut PgConnection,
        cache: &mut KeyCache,
        tenant: &TenantId,
        contact_id: &str,
    ) -> Result<Option<DataKey>, ProjectionError> {
        crate::shared::data_key(db, &self.master, cache, tenant, contact_id).await
    }

    /// Opens the envelopes of one event, sealed for `contact_id`.
    async fn opener(
        &self,
        db: &mut PgConnection,
        cache: &mut KeyCache,
        tenant: &TenantId,
        contact_id: Option<&str>,
    ) -> Result<impl Fn(&Envelope) -> Option<String>, ProjectionError> {
        let key = match contact_id {
            Some(c) => self.key(db, cache, tenant, c).await?,
            None => None,
        };
        let (tenant, contact) = (tenant.clone(), contact_id.unwrap_or_default().to_string());
        Ok(move |e: &Envelope| key.as_ref().and_then(|k| k.open(&tenant, &contact, e).ok()))
    }

    async fn apply_one(
        &self,
        db: &mut PgConnection,
        keys: &mut KeyCache,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let handler_error = |reason: String| ProjectionError::Handler {
            position: event.global_position,
            reason,
        };
        let parsed: LeadEvent = payload(event)?;
        let tenant = TenantId::parse(&event.tenant_id).map_err(|e| handler_error(e.to_string()))?;
        let lead_id = event
            .aggregate_id
            .strip_prefix(&format!("{}:", event.tenant_id))
            .unwrap_or(&event.aggregate_id)
            .to_string();
        let pos = event.global_position;
        let t = tenant.as_str();
        match parsed {
            LeadEvent::LeadCaptured {
                source,
                contact_id,
                name,
                phone,
                email,
                interest,
                priority,
                property_type,
                estimated_system_size_w,
                budget,
                stage,
                at,
                ..
            } => {
                let open = self.opener(db, keys, &tenant, contact_id.as_deref()).await?;
                sqlx::query(
                    "INSERT INTO leads (tenant_id, lead_id, contact_id, stage, source, name, phone, email, interest, priority,
                            property_type, system_size_w, budget_min, budget_max, budget_currency, captures,
                            created_at, updated_at, last_position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 1, $16, $16, $17)
                     ON CONFLICT (tenant_id, lead_id) DO NOTHING",
                )
                .bind(t)
                .bind(&lead_id)
                .bind(&contact_id)
                .bind(stage.as_str())
                .bind(source.as_str())
                .bind(name.as_ref().and_then(&open))
                .bind(phone.as_ref().and_then(&open))
                .bind(email.as_ref().and_then(&open))
                .bind(&interest)
                .bind(priority.as_str())
                .bind(property_type.map(|p| p.as_str()))
                .bind(estimated_system_size_w.and_then(|w| i32::try_from(w).ok()))
                .bind(budget.as_ref().map(|b| b.min_minor))
                .bind(budget.as_ref().map(|b| b.max_minor))
                .bind(budget.as_ref().map(|b| b.currency.clone()))
                .bind(at)
                .bind(pos)
                .execute(&mut *db)
                .await?;
                transition(db, t, pos, &lead_id, None, stage, at).await?;
            }
            LeadEvent::DuplicateCaptureAttached {
                contact_id,
                name,
                phone,
                email,
                interest,
                priority,
                property_type,
                estimated_system_size_w,
                budget,
                captures,
                at,
                ..
            } => {
                let open = self.opener(db, keys, &tenant, contact_id.as_deref()).await?;
                // The capture's details may be another contact's (another number, attached by
                // its e-mail): the row records whose they are, so that contact's erasure clears
                // them too.
                sqlx::query(
                    "UPDATE leads SET
                            name = coalesce($3, name), phone = coalesce($4, phone), email = coalesce($5, email),
                            detail_contacts = CASE WHEN $16::text IS NOT NULL AND $16 IS DISTINCT FROM contact_id
                                                     AND NOT ($16 = ANY(detail_contacts))
                                                     AND ($3::text IS NOT NULL OR $4::text IS NOT NULL OR $5::text IS NOT NULL)
                                                   THEN array_append(detail_contacts, $16) ELSE detail_contacts END,
                            interest = coalesce($6, interest),
                            priority = CASE WHEN array_position(ARRAY['low','normal','high','urgent'], $7)
                                               > array_position(ARRAY['low','normal','high','urgent'], priority)
                                            THEN $7 ELSE priority END,
                            property_type = coalesce($8, property_type), system_size_w = coalesce($9, system_size_w),
                            budget_min = coalesce($10, budget_min), budget_max = coalesce($11, budget_max),
                            budget_currency = coalesce($12, budget_currency),
                            captures = $13, updated_at = $14, last_position = $15
                      WHERE tenant_id = $1 AND lead_id = $2 AND last_position < $15",
                )
                .bind(t)
                .bind(&lead_id)
                .bind(name.as_ref().and_then(&open))
                .bind(phone.as_ref().and_then(&open))
                .bind(email.as_ref().and_then(&open))
                .bind(&interest)
                .bind(priority.as_str())
                .bind(property_type.map(|p| p.as_str()))
                .bind(estimated_system_size_w.and_then(|w| i32::try_from(w).ok()))
                .bind(budget.as_ref().map(|b| b.min_minor))
                .bind(budget.as_ref().map(|b| b.max_minor))
                .bind(budget.as_ref().map(|b| b.currency.clone()))
                .bind(i32::try_from(captures).unwrap_or(i32::MAX))
                .bind(at)
                .bind(pos)
                .bind(contact_id.as_deref())
                .execute(&mut *db)
                .await?;
            }
            LeadEvent::LeadScored { score, reasons, at } => {
                let reasons = serde_json::to_value(&reasons).map_err(|e| handler_error(e.to_string()))?;
                update(db, t, &lead_id, pos, at, "score = $5, score_reasons = $6", |q| {
                    q.bind(i32::from(score)).bind(reasons)
                })
                .await?;
            }
            LeadEvent::LeadAssigned { user_id, at, .. } => {
                update(db, t, &lead_id, pos, at, "assignee = $5", |q| q.bind(user_id)).await?;
            }
            LeadEvent::LeadUnassigned { at, .. } => {
                update(db, t, &lead_id, pos, at, "assignee = NULL", |q| q).await?;
            }
            LeadEvent::LeadAdvanced { from, to, at } => {
                update(db, t, &lead_id, pos, at, "stage = $5", |q| q.bind(to.as_str())).await?;
                transition(db, t, pos, &lead_id, Some(from), to, at).await?;
            }
            LeadEvent::LeadLost { from, reason, note, at } => {
                let contact_id: Option<String> =
                    sqlx::query_scalar("SELECT contact_id FROM leads WHERE tenant_id = $1 AND lead_id = $2")
                        .bind(t)
                        .bind(&lead_id)
                        .fetch_optional(&mut *db)
                        .await?
                        .flatten();
                let open = self.opener(db, keys, &tenant, contact_id.as_deref()).await?;
                let note = note.as_ref().and_then(&open);
                update(
                    db,
                    t,
                    &lead_id,
                    pos,
                    at,
                    "stage = 'lost', lost_reason = $5, lost_note = $6",
                    |q| q.bind(reason.as_str()).bind(note),
                )
                .await?;
                transition(db, t, pos, &lead_id, Some(from), Stage::Lost, at).await?;
            }
            LeadEvent::LeadReopened { to, at } => {
                update(
                    db,
                    t,
                    &lead_id,
                    pos,
                    at,
                    "stage = $5, lost_reason = NULL, lost_note = NULL",
                    |q| q.bind(to.as_str()),
                )
                .await?;
                transition(db, t, pos, &lead_id, Some(Stage::Lost), to, at).await?;
            }
            LeadEvent::LeadWon {
                customer_id,
                order_ref,
                value,
                at,
            } => {
                update(
                    db,
                    t,
                    &lead_id,
                    pos,
                    at,
                    "stage = 'won', customer_id = $5, won_order_ref = $6, won_value_minor = $7, won_currency = $8",
                    |q| {
                        q.bind(customer_id)
                            .bind(order_ref)
                            .bind(value.as_ref().map(|v| v.amount_minor))
                            .bind(value.map(|v| v.currency))
                    },
                )
                .await?;
                transition(db, t, pos, &lead_id, Some(Stage::Negotiation), Stage::Won, at).await?;
            }
        }
        Ok(())
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Updates a lead's row with `set` (binds from `$5`), guarded by the event's position.
async fn update(
    db: &mut PgConnection,
    tenant: &str,
    lead_id: &str,
    position: i64,
    at: DateTime<Utc>,
    set: &str,
    bind: impl for<'q> FnOnce(Query<'q>) -> Query<'q>,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE leads SET {set}, updated_at = greatest(updated_at, $3), last_position = $4
          WHERE tenant_id = $1 AND lead_id = $2 AND last_position < $4"
    );
    let query = sqlx::query(&sql)
        .bind(tenant.to_string())
        .bind(lead_id.to_string())
        .bind(at)
        .bind(position);
    bind(query).execute(&mut *db).await.map(|_| ())
}

/// Records a move into a stage, with the lead's source; a repeat inserts nothing.
async fn transition(
    db: &mut PgConnection,
    tenant: &str,
    position: i64,
    lead_id: &str,
    from: Option<Stage>,
    to: Stage,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO lead_stage_transitions (tenant_id, position, lead_id, source, from_stage, to_stage, at, day)
         SELECT $1, $2, $3, l.source, $4, $5, $6, ($6 AT TIME ZONE 'UTC')::date
           FROM leads l WHERE l.tenant_id = $1 AND l.lead_id = $3
         ON CONFLICT (tenant_id, position) DO NOTHING",
    )
    .bind(tenant)
    .bind(position)
    .bind(lead_id)
    .bind(from.map(Stage::as_str))
    .bind(to.as_str())
    .bind(at)
    .execute(&mut *db)
    .await
    .map(|_| ())
}

/// The event types read: LeadEvent::TYPES's and the contact's erasure.
static TYPES_READ: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| with_erasure(LeadEvent::TYPES));

impl Projector for LeadsProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        TYPES_READ.as_slice()
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [&'a StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            all_tenants(tx).await?;
            let mut keys = HashMap::new();
            for event in events {
                if let Some((tenant, contact_id)) = erased_contact(event) {
                    clear_person(
                        tx,
                        &tenant,
                        &contact_id,
                        &["UPDATE leads SET name = NULL, phone = NULL, email = NULL
                            WHERE tenant_id = $1 AND (contact_id = $2 OR $2 = ANY(detail_contacts))"],
                    )
                    .await?;
                } else if event.aggregate_type == "Lead" {
                    self.apply_one(tx, &mut keys, event).await?;
                }
            }
            Ok(())
        })
    }

    fn tables(&self) -> &'static [&'static str] {
        &["leads", "lead_stage_transitions"]
    }
}

/// One lead as dashboards see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LeadRow {
    pub lead_id: String,
    pub contact_id: Option<String>,
    pub stage: String,
    pub source: String,
    pub score: i32,
    /// `[{"factor": …, "points": …}]`.
    pub score_reasons: serde_json::Value,
    pub assignee: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub interest: Option<String>,
    pub priority: String,
    pub property_type: Option<String>,
    pub system_size_w: Option<i32>,
    pub budget_min: Option<i64>,
    pub budget_max: Option<i64>,
    pub budget_currency: Option<String>,
    pub captures: i32,
    pub customer_id: Option<String>,
    pub won_order_ref: Option<String>,
    pub won_value_minor: Option<i64>,
    pub won_currency: Option<String>,
    pub lost_reason: Option<String>,
    pub lost_note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "lead_id, contact_id, stage, source, score, score_reasons, assignee, name, phone, email, interest,
    priority, property_type, system_size_w, budget_min, budget_max, budget_currency, captures, customer_id,
    won_order_ref, won_value_minor, won_currency, lost_reason, lost_note, created_at, updated_at";

fn row(r: &sqlx::postgres::PgRow) -> Result<LeadRow, sqlx::Error> {
    Ok(LeadRow {
        lead_id: r.try_get("lead_id")?,
        contact_id: r.try_get("contact_id")?,
        stage: r.try_get("stage")?,
        source: r.try_get("source")?,
        score: r.try_get("score")?,
        score_reasons: r.try_get("score_reasons")?,
        assignee: r.try_get("assignee")?,
        name: r.try_get("name")?,
        phone: r.try_get("phone")?,
        email: r.try_get("email")?,
        interest: r.try_get("interest")?,
        priority: r.try_get("priority")?,
        property_type: r.try_get("property_type")?,
        system_size_w: r.try_get("system_size_w")?,
        budget_min: r.try_get("budget_min")?,
        budget_max: r.try_get("budget_max")?,
        budget_currency: r.try_get("budget_currency")?,
        captures: r.try_get("captures")?,
        customer_id: r.try_get("customer_id")?,
        won_order_ref: r.try_get("won_order_ref")?,
        won_value_minor: r.try_get("won_value_minor")?,
        won_currency: r.try_get("won_currency")?,
        lost_reason: r.try_get("lost_reason")?,
        lost_note: r.try_get("lost_note")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// One lead of the caller's tenant.
pub async fn get(pool: &PgPool, tenant: &TenantId, lead_id: &str) -> Result<Option<LeadRow>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let found = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM leads WHERE tenant_id = $1 AND lead_id = $2"
    ))
    .bind(tenant.as_str())
    .bind(lead_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    found.as_ref().map(row).transpose()
}

/// Filters of [`list`]; `None` means any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadFilter {
    pub stage: Option<String>,
    pub source: Option<String>,
    pub assignee: Option<String>,
    pub score_min: Option<i32>,
    pub score_max: Option<i32>,
    /// Created at or after.
    pub created_from: Option<DateTime<Utc>>,
    /// Created before.
    pub created_to: Option<DateTime<Utc>>,
}

/// What [`list`] sorts by (ties broken by lead id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortField {
    #[default]
    CreatedAt,
    UpdatedAt,
    Score,
}

impl SortField {
    /// The sort key as a bigint (timestamps in microseconds): fixed SQL, never caller text.
    fn key_sql(self) -> &'static str {
        match self {
            Self::CreatedAt => "(extract(epoch FROM created_at) * 1000000)::bigint",
            Self::UpdatedAt => "(extract(epoch FROM updated_at) * 1000000)::bigint",
            Self::Score => "score::bigint",
        }
    }
}

/// The conditions of a [`LeadFilter`] ($1 the tenant, $2 to $8 the filter's fields in order),
/// shared by [`list`] and [`count`].
const FILTERS: &str = "tenant_id = $1
            AND ($2::text IS NULL OR stage = $2)
            AND ($3::text IS NULL OR source = $3)
            AND ($4::text IS NULL OR assignee = $4)
            AND ($5::int IS NULL OR score >= $5)
            AND ($6::int IS NULL OR score <= $6)
            AND ($7::timestamptz IS NULL OR created_at >= $7)
            AND ($8::timestamptz IS NULL OR created_at < $8)";

/// Lists one tenant's leads, filtered and sorted, after a page cursor. The tenant is always a
/// bound parameter, behind row-level security.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &LeadFilter,
    sort: SortField,
    descending: bool,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<LeadRow>, BadCursor>, sqlx::Error> {
    let after = match after.map(read_cursor::<i64, String>).transpose() {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let key = sort.key_sql();
    let (cmp, order) = if descending { ("<", "DESC") } else { (">", "ASC") };
    let sql = format!(
        "SELECT {COLUMNS}, {key} AS sort_key FROM leads
          WHERE {FILTERS}
            AND ($9::bigint IS NULL OR ({key}, lead_id) {cmp} ($9, $10::text))
          ORDER BY {key} {order}, lead_id {order}
          LIMIT $11"
    );
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(&filter.stage)
        .bind(&filter.source)
        .bind(&filter.assignee)
        .bind(filter.score_min)
        .bind(filter.score_max)
        .bind(filter.created_from)
        .bind(filter.created_to)
        .bind(after.as_ref().map(|a| a.0))
        .bind(after.as_ref().map(|a| a.1.clone()))
        .bind(first + 1)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(Page::of(
        &rows,
        first,
        |r| -> Result<(String, LeadRow), sqlx::Error> {
            let key: i64 = r.try_get("sort_key")?;
            let lead = row(r)?;
            Ok((cursor(key, &lead.lead_id), lead))
        },
    )?))
}

/// How many of one tenant's leads [`list`] holds with `filter` (every page together).
pub async fn count(pool: &PgPool, tenant: &TenantId, filter: &LeadFilter) -> Result<i64, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let n = sqlx::query_scalar(&format!("SELECT count(*) FROM leads WHERE {FILTERS}"))
        .bind(tenant.as_str())
        .bind(&filter.stage)
        .bind(&filter.source)
        .bind(&filter.assignee)
        .bind(filter.score_min)
        .bind(filter.score_max)
        .bind(filter.created_from)
        .bind(filter.created_to)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// The figures of one stage in a period.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StageFigures {
    pub stage: Stage,
    /// Moves into the stage in the period (captures into `new`, reopenings into `contacted`).
    pub entered: i64,
    /// Moves out of the stage to the next one (`negotiation` → `won`) in the period.
    pub advanced: i64,
    /// Moves out of the stage to `lost` in the period.
    pub lost: i64,
    /// `advanced / entered`, when anything entered.
    pub conversion: Option<f64>,
}

/// The funnel of one source (or of every source, `source: None`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceFunnel {
    pub source: Option<String>,
    /// The pipeline's stages in order (`new` … `won`, then `lost`).
    pub stages: Vec<StageFigures>,
}

fn figures(counts: &BTreeMap<(Option<String>, String), i64>) -> Vec<StageFigures> {
    Stage::ALL
        .into_iter()
        .map(|stage| {
            let entered: i64 = counts
                .iter()
                .filter(|((_, to), _)| to == stage.as_str())
                .map(|(_, n)| n)
                .sum();
            let moved = |to: Option<Stage>| {
                to.and_then(|to| counts.get(&(Some(stage.as_str().to_string()), to.as_str().to_string())))
                    .copied()
                    .unwrap_or(0)
            };
            let advanced = moved(stage.next());
            let lost = if stage.is_closed() { 0 } else { moved(Some(Stage::Lost)) };
            StageFigures {
                stage,
                entered,
                advanced,
                lost,
                conversion: (entered > 0 && !stage.is_closed()).then(|| advanced as f64 / entered as f64),
            }
        })
        .collect()
}

/// The funnel of a tenant's leads for moves at or after `from` and before `to`: every source
/// (first) and each source with moves, optionally one source only.
pub async fn funnel(
    pool: &PgPool,
    tenant: &TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    source: Option<&str>,
) -> Result<Vec<SourceFunnel>, sqlx::Error> {
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT source, from_stage, to_stage, count(*) AS moves FROM lead_stage_transitions
          WHERE tenant_id = $1 AND at >= $2 AND at < $3 AND ($4::text IS NULL OR source = $4)
          GROUP BY source, from_stage, to_stage",
    )
    .bind(tenant.as_str())
    .bind(from)
    .bind(to)
    .bind(source)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut all: BTreeMap<(Option<String>, String), i64> = BTreeMap::new();
    let mut per_source: BTreeMap<String, BTreeMap<(Option<String>, String), i64>> = BTreeMap::new();
    for r in &rows {
        let (src, from_stage, to_stage, moves): (String, Option<String>, String, i64) = (
            r.try_get("source")?,
            r.try_get("from_stage")?,
            r.try_get("to_stage")?,
            r.try_get("moves")?,
        );
        *all.entry((from_stage.clone(), to_stage.clone())).or_default() += moves;
        *per_source
            .entry(src)
            .or_default()
            .entry((from_stage, to_stage))
            .or_default() += moves;
    }
    let mut out = vec![SourceFunnel {
        source: None,
        stages: figures(&all),
    }];
    out.extend(per_source.into_iter().map(|(src, counts)| SourceFunnel {
        source: Some(src),
        stages: figures(&counts),
    }));
    Ok(out)
}
