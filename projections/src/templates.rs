//! The `templates` read model: one row per WhatsApp template (name and language) with its
//! latest submitted version and its approval status. Written only by [`TemplatesProjector`];
//! read by [`list`]. Templates are the tenant's text, not personal data: nothing is sealed.

use chronicle_domain::template::TemplateEvent;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};

use crate::contacts::local_id;
use crate::log::StoredEvent;
use crate::page::{after_texts, cursor, BadCursor, Page};
use crate::runtime::{Fold, ProjectionError};
use crate::shared::{begin_for_tenant, payload};

/// The projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "templates";

/// Folds `Template` events into `templates`.
#[derive(Debug, Default)]
pub struct TemplatesProjector;

impl Fold for TemplatesProjector {
    const NAME: &'static str = NAME;
    const EVENT_TYPES: &'static [&'static str] = TemplateEvent::TYPES;
    const AGGREGATES: &'static [&'static str] = &["Template"];
    const TABLES: &'static [&'static str] = &["templates", "template_submission_feed"];
    const FEEDS: &'static [&'static str] = &["template_submission_feed"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let parsed: TemplateEvent = payload(event)?;
        let template_id = local_id(event);
        match parsed {
            TemplateEvent::TemplateSubmitted {
                name,
                language,
                category,
                body,
                buttons,
                variable_count,
                version,
                at,
                header,
                footer,
            } => {
                let decode = |e| ProjectionError::Decode {
                    position: event.global_position,
                    source: e,
                };
                let buttons = serde_json::to_value(&buttons).map_err(decode)?;
                let header = header.map(|h| serde_json::to_value(&h)).transpose().map_err(decode)?;
                // The submission to Meta's review (the sender's feed).
                sqlx::query(
                    "INSERT INTO template_submission_feed (tenant_id, template_id, version, correlation_id, position)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (tenant_id, template_id, version) DO NOTHING",
                )
                .bind(&event.tenant_id)
                .bind(&template_id)
                .bind(i32::try_from(version).unwrap_or(i32::MAX))
                .bind(event.metadata["correlation_id"].as_str().unwrap_or_default())
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
                sqlx::query(
                    "INSERT INTO templates AS t (tenant_id, template_id, name, language, category, body, buttons,
                            variable_count, version, status, submitted_at, last_position, header, footer)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12, $13)
                     ON CONFLICT (tenant_id, template_id) DO UPDATE SET
                            category = EXCLUDED.category, body = EXCLUDED.body, buttons = EXCLUDED.buttons,
                            variable_count = EXCLUDED.variable_count, version = EXCLUDED.version,
                            status = 'pending', provider_template_id = NULL, rejection_reason = NULL,
                            submitted_at = EXCLUDED.submitted_at, decided_at = NULL,
                            last_position = EXCLUDED.last_position, header = EXCLUDED.header,
                            footer = EXCLUDED.footer, status_reason = NULL
                      WHERE t.last_position < EXCLUDED.last_position",
                )
                .bind(&event.tenant_id)
                .bind(&template_id)
                .bind(name)
                .bind(language)
                .bind(category.as_str())
                .bind(body)
                .bind(buttons)
                .bind(i32::try_from(variable_count).unwrap_or(i32::MAX))
                .bind(i32::try_from(version).unwrap_or(i32::MAX))
                .bind(at)
                .bind(event.global_position)
                .bind(header)
                .bind(footer)
                .execute(&mut *db)
                .await?;
            }
            TemplateEvent::TemplateApproved {
                provider_template_id,
                at,
                ..
            } => {
                sqlx::query(
                    "UPDATE templates SET status = 'approved', provider_template_id = $3, decided_at = $4,
                            last_position = $5, status_reason = NULL
                      WHERE tenant_id = $1 AND template_id = $2 AND last_position < $5",
                )
                .bind(&event.tenant_id)
                .bind(&template_id)
                .bind(provider_template_id)
                .bind(at)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
            }
            TemplateEvent::TemplateSentForReview {
                provider_template_id, ..
            } => {
                sqlx::query(
                    "UPDATE templates SET provider_template_id = $3, last_position = $4
                      WHERE tenant_id = $1 AND template_id = $2 AND last_position < $4",
                )
                .bind(&event.tenant_id)
                .bind(&template_id)
                .bind(provider_template_id)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
            }
            TemplateEvent::TemplatePaused { reason, at, .. } | TemplateEvent::TemplateDisabled { reason, at, .. } => {
                let status = if matches!(parsed_kind(&event.event_type), Some("paused")) {
                    "paused"
                } else {
                    "disabled"
                };
                sqlx::query(
                    "UPDATE templates SET status = $3, status_reason = $4, decided_at = $5, last_position = $6
                      WHERE tenant_id = $1 AND template_id = $2 AND last_position < $6",
                )
                .bind(&event.tenant_id)
                .bind(&template_id)
                .bind(status)
                .bind(reason)
                .bind(at)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
            }
            TemplateEvent::TemplateRejected { reason, at, .. } => {
                sqlx::query(
                    "UPDATE templates SET status = 'rejected', rejection_reason = $3, decided_at = $4,
                            last_position = $5
                      WHERE tenant_id = $1 AND template_id = $2 AND last_position < $5",
                )
                .bind(&event.tenant_id)
                .bind(&template_id)
                .bind(reason)
                .bind(at)
                .bind(event.global_position)
                .execute(&mut *db)
                .await?;
            }
        }
        Ok(())
    }
}

/// `paused` for a `TemplatePaused` event.
fn parsed_kind(event_type: &str) -> Option<&'static str> {
    (event_type == "TemplatePaused").then_some("paused")
}

/// One template as dashboards see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TemplateRow {
    pub template_id: String,
    pub name: String,
    pub language: String,
    pub category: String,
    pub body: String,
    /// `[{"kind", "text", "value"}]`.
    pub buttons: Value,
    pub variable_count: i32,
    pub version: i32,
    pub status: String,
    pub provider_template_id: Option<String>,
    pub rejection_reason: Option<String>,
    /// `{"type": "text", "text"}` or `{"type": "media", "format"}`.
    pub header: Option<Value>,
    pub footer: Option<String>,
    /// Why WhatsApp paused or disabled it, while so.
    pub status_reason: Option<String>,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// One tenant's templates by name and language, optionally with one status: `first` (1 to
/// 100) after the cursor `after`.
pub async fn list(
    pool: &PgPool,
    tenant: &chronicle_domain::tenant::TenantId,
    status: Option<&str>,
    first: i64,
    after: Option<&str>,
) -> Result<Result<Page<TemplateRow>, BadCursor>, sqlx::Error> {
    let (after_name, after_language) = match after_texts(after) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let first = first.clamp(1, 100);
    let mut tx = begin_for_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "SELECT template_id, name, language, category, body, buttons, variable_count, version, status,
                provider_template_id, rejection_reason, submitted_at, decided_at, header, footer, status_reason
           FROM templates
          WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
            AND ($3::text IS NULL OR (name, language) > ($3, $4))
          ORDER BY name, language
          LIMIT $5",
    )
    .bind(tenant.as_str())
    .bind(status)
    .bind(after_name)
    .bind(after_language)
    .bind(first + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(TemplateRow {
                template_id: r.try_get("template_id")?,
                name: r.try_get("name")?,
                language: r.try_get("language")?,
                category: r.try_get("category")?,
                body: r.try_get("body")?,
                buttons: r.try_get("buttons")?,
                variable_count: r.try_get("variable_count")?,
                version: r.try_get("version")?,
                status: r.try_get("status")?,
                provider_template_id: r.try_get("provider_template_id")?,
                rejection_reason: r.try_get("rejection_reason")?,
                header: r.try_get("header")?,
                footer: r.try_get("footer")?,
                status_reason: r.try_get("status_reason")?,
                submitted_at: r.try_get("submitted_at")?,
                decided_at: r.try_get("decided_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Ok(Page::from_rows(rows, first, |r| cursor(&r.name, &r.language))))
}
