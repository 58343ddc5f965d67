//! The feeds of the area's process managers and sweepers (decision 0013): the
//! `installation_work` projector ([`InstallationWorkProjector`]: `installation_opening_feed`,
//! `installation_commissioning_feed`) and the `service_work` projector
//! ([`ServiceWorkProjector`]: `service_sla_watch`, `maintenance_renewals`, which the sweeper
//! leases in `work_leases`). Written only here, cleared on a rebuild.

use super::*;

/// The projector's name (its checkpoint key). Never renamed.
pub const INSTALLATION_WORK_NAME: &str = "installation_work";

const TYPES: &[&str] = &["OrderPaid", "InstallationCommissioned"];

fn handler_error(event: &StoredEvent, reason: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Handler {
        position: event.global_position,
        reason: reason.to_string(),
    }
}

/// Feeds the installation process managers (`installation_opening_feed`,
/// `installation_commissioning_feed`).
#[derive(Debug, Default)]
pub struct InstallationWorkProjector;

impl Fold for InstallationWorkProjector {
    const NAME: &'static str = INSTALLATION_WORK_NAME;
    const EVENT_TYPES: &'static [&'static str] = TYPES;
    /// Clears the feeds; the worker's tables keep the work already done (decision 0013).
    const TABLES: &'static [&'static str] = &["installation_opening_feed", "installation_commissioning_feed"];
    const FEEDS: &'static [&'static str] = &["installation_opening_feed", "installation_commissioning_feed"];

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

/// Folds `ServiceRequest` and `MaintenanceContract` events into the sweepers' work lists
/// `service_sla_watch` and `maintenance_renewals` (migration 0068).
#[derive(Debug, Default)]
pub struct ServiceWorkProjector;

impl Fold for ServiceWorkProjector {
    const NAME: &'static str = SERVICE_WORK_NAME;
    const EVENT_TYPES: &'static [&'static str] = EVENT_TYPES;
    const TABLES: &'static [&'static str] = &["service_sla_watch", "maintenance_renewals"];

    async fn apply_one(&self, db: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let id = local_id(event);
        let tenant = &event.tenant_id;
        let position = event.global_position;
        if event.aggregate_type == "ServiceRequest" {
            match payload::<ServiceEvent>(event)? {
                ServiceEvent::ServiceRequestOpened { sla_due_at, .. } => {
                    sqlx::query(
                        "INSERT INTO service_sla_watch (tenant_id, request_id, sla_due_at, event_position)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, request_id) DO NOTHING",
                    )
                    .bind(tenant)
                    .bind(&id)
                    .bind(sla_due_at)
                    .bind(position)
                    .execute(&mut *db)
                    .await?;
                }
                // Decided: breached once, or resolved (in time or with the breach first).
                ServiceEvent::ServiceSlaBreached { .. } | ServiceEvent::ServiceRequestResolved { .. } => {
                    sqlx::query("UPDATE service_sla_watch SET state = 'done' WHERE tenant_id = $1 AND request_id = $2")
                        .bind(tenant)
                        .bind(&id)
                        .execute(&mut *db)
                        .await?;
                }
                ServiceEvent::ServiceRequestAssigned { .. } | ServiceEvent::ServiceRequestClosed { .. } => {}
            }
            return Ok(());
        }
        if event.aggregate_type != "MaintenanceContract" {
            return Ok(());
        }
        let assignments = match payload::<MaintenanceEvent>(event)? {
            MaintenanceEvent::MaintenanceContractStarted {
                ends_at, auto_renew, ..
            } => {
                sqlx::query(
                    "INSERT INTO maintenance_renewals (tenant_id, contract_id, ends_at, auto_renew, status, last_position)
                     VALUES ($1, $2, $3, $4, 'active', $5) ON CONFLICT (tenant_id, contract_id) DO NOTHING",
                )
                .bind(tenant)
                .bind(&id)
                .bind(ends_at)
                .bind(auto_renew)
                .bind(position)
                .execute(&mut *db)
                .await?;
                return Ok(());
            }
            MaintenanceEvent::MaintenanceContractRenewed { ends_at, .. } => (Some(ends_at), None, "active"),
            MaintenanceEvent::MaintenanceAutoRenewalChanged { auto_renew, .. } => (None, Some(auto_renew), "active"),
            MaintenanceEvent::MaintenanceContractCancelled { .. } => (None, Some(false), "cancelled"),
        };
        sqlx::query(
            "UPDATE maintenance_renewals
                SET ends_at = coalesce($4, ends_at), auto_renew = coalesce($5, auto_renew), status = $6,
                    last_position = $3
              WHERE tenant_id = $1 AND contract_id = $2 AND last_position < $3",
        )
        .bind(tenant)
        .bind(&id)
        .bind(position)
        .bind(assignments.0)
        .bind(assignments.1)
        .bind(assignments.2)
        .execute(&mut *db)
        .await?;
        Ok(())
    }
}
