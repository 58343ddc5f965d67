//! The feed of the installation process managers (issue 4), written by
//! [`InstallationWorkProjector`] and copied into its own tables by
//! `chronicle_commands::installation::InstallationWorker` (migrations 0073, 0083):
//!
//! - `installation_opening_feed`: a row per `OrderPaid` that lists installable items;
//! - `installation_commissioning_feed`: a row per `InstallationCommissioned`.
//!
//! A rebuild clears the feed; the worker's `installation_openings` and
//! `installation_commissionings` record what it already did, so a replay never opens, pays or
//! notifies twice (decision 0013).

use chronicle_domain::installation::{InstallationEvent, OrderEvent};
use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::contacts::local_id;
use crate::log::StoredEvent;
use crate::runtime::{ProjectionError, Projector};
use crate::shared::{clear_tables, payload};

/// The projector's name (its checkpoint key). Never renamed.
pub const NAME: &str = "installation_work";

const TYPES: &[&str] = &["OrderPaid", "InstallationCommissioned"];

fn handler_error(event: &StoredEvent, reason: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Handler {
        position: event.global_position,
        reason: reason.to_string(),
    }
}

/// Fills the installation process managers' work lists.
#[derive(Debug, Default)]
pub struct InstallationWorkProjector;

impl InstallationWorkProjector {
    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        match event.aggregate_type.as_str() {
            "Order" => {
                let parsed: OrderEvent = payload(event)?;
                if let OrderEvent::OrderPaid {
                    customer_id,
                    installable_items,
                    at,
                    ..
                } = parsed
                {
                    if installable_items.is_empty() {
                        return Ok(());
                    }
                    let items = serde_json::to_value(&installable_items).map_err(|e| handler_error(event, e))?;
                    sqlx::query(
                        "INSERT INTO installation_opening_feed (tenant_id, order_id, customer_id, installable_items,
                                paid_at, position)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (tenant_id, order_id) DO NOTHING",
                    )
                    .bind(&event.tenant_id)
                    .bind(local_id(event))
                    .bind(customer_id)
                    .bind(items)
                    .bind(at)
                    .bind(event.global_position)
                    .execute(&mut *db)
                    .await?;
                }
            }
            "InstallationRecord" => {
                let parsed: InstallationEvent = payload(event)?;
                if let InstallationEvent::InstallationCommissioned {
                    installation_type,
                    customer_id,
                    order_id,
                    system_size_w,
                    components,
                    technicians,
                    at,
                    ..
                } = parsed
                {
                    let components = serde_json::to_value(&components).map_err(|e| handler_error(event, e))?;
                    let technicians = serde_json::to_value(&technicians).map_err(|e| handler_error(event, e))?;
                    sqlx::query(
                        "INSERT INTO installation_commissioning_feed (tenant_id, installation_id, customer_id, order_id,
                                installation_type, system_size_w, components, technicians, commissioned_at,
                                position)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (tenant_id, installation_id) DO NOTHING",
                    )
                    .bind(&event.tenant_id)
                    .bind(local_id(event))
                    .bind(customer_id)
                    .bind(order_id)
                    .bind(installation_type.as_str())
                    .bind(i64::from(system_size_w))
                    .bind(components)
                    .bind(technicians)
                    .bind(at)
                    .bind(event.global_position)
                    .execute(&mut *db)
                    .await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Projector for InstallationWorkProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        TYPES
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            for event in events {
                self.apply_one(tx, event).await?;
            }
            Ok(())
        })
    }

    /// Keeps the work lists (see the module docs).
    /// Clears the feeds; the worker's tables keep the work already done (decision 0013).
    fn reset<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(clear_tables(
            tx,
            &["installation_opening_feed", "installation_commissioning_feed"],
        ))
    }

    fn feeds(&self) -> &'static [&'static str] {
        &["installation_opening_feed", "installation_commissioning_feed"]
    }
}
