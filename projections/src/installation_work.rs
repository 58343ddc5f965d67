//! The work lists of the installation process managers (issue 4), written by
//! [`InstallationWorkProjector`] and worked by
//! `chronicle_commands::installations::InstallationWorker` (migration 0073):
//!
//! - `installation_openings`: a row per `OrderPaid` that lists installable items;
//! - `installation_commissionings`: a row per `InstallationCommissioned`.
//!
//! Rows are inserted once (`ON CONFLICT DO NOTHING`) and never deleted by a rebuild: their states
//! record what the worker already did, so a replay never opens, pays or notifies twice.

use chronicle_domain::installation::{InstallationEvent, OrderEvent};
use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::contacts::local_id;
use crate::log::StoredEvent;
use crate::runtime::{ProjectionError, Projector};
use crate::shared::payload;

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
                        "INSERT INTO installation_openings (tenant_id, order_id, customer_id, installable_items,
                                paid_at, event_position)
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
                        "INSERT INTO installation_commissionings (tenant_id, installation_id, customer_id, order_id,
                                installation_type, system_size_w, components, technicians, commissioned_at,
                                event_position)
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
    fn reset<'a>(&'a self, _tx: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move { Ok(()) })
    }
}
