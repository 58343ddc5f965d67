//! Orders and installations on the write side (issue 4): the services over the `Order`,
//! `InstallationRecord` and `Payout` aggregates, and the installation process managers.
//!
//! # Services ([`InstallationService`])
//!
//! One method per command, with fresh ids `order_<uuid>`, `isr_<uuid>` (and `payout_<uuid>`
//! from the process manager). Free text that may name a person (site addresses, reasons) is
//! sealed under the customer's data key before it reaches the log; the customer of an order or
//! installation is read from its own stream's first event, never from a read model.
//!
//! # Process managers ([`InstallationWorker`])
//!
//! Both follow the call follow-up pattern: a projector
//! (`chronicle_projections::installation_work::InstallationWorkProjector`) writes a feed from
//! the events, this worker copies it into its own work lists ([`Admission`]), claims their rows (`FOR UPDATE SKIP LOCKED`, a lease) and sends
//! commands; every step is idempotent, and a transient failure is retried after
//! [`retry_backoff`].
//!
//! - `OrderPaid` with installable items → `installation_openings` → one installation per order,
//!   stream `isr_<uuid>` derived from the tenant and the order id ([`installation_id_for_order`]),
//!   so a second run (or a replayed row) opens nothing new. The type is
//!   [`installation_type_of`] the items, the size [`system_size_of`] them (domain rules); the site address is
//!   not on the order, so it is opened empty (sealed) for operations to complete.
//! - `InstallationCommissioned` → `installation_commissionings` → the payout (`Compute` on
//!   `payout_<uuid>` derived from the installation id, [`payout_id_for`]; `payout_for` decides
//!   the amount, in the order's currency), a warranty per installed component with a warranty
//!   period (`Register` on `warranty_local_id(installation, serial)`: one stream per component,
//!   so re-registering records nothing; components of zero months have none), and the customer's
//!   notification: the configured template queued on the customer's conversation under the key
//!   `installation-commissioned:<installation id>`. A customer without a conversation, opted
//!   out, or a template not approved is recorded as `skipped` with the refusal's code; it never
//!   fails the process.

use std::time::Duration;

use chronicle_domain::installation::isr::OpenInstallation;
use chronicle_domain::installation::order::{PlaceOrder, RecordPayment};
use chronicle_domain::installation::payout::ComputePayout;
use chronicle_domain::installation::{installation_type_of, system_size_of, InstallationError};
use chronicle_domain::installation::{
    warranty_local_id, Component, InstallationCommand, InstallationType, LineItem, OrderCommand, OrderError,
    PaymentProvider, PayoutCommand, RegisterWarranty, WarrantyCommand,
};
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::pii::Envelope;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use tracing::Instrument;

use crate::dispatch::{Appended, Commands};
use crate::error::{CommandError, DomainError};
use crate::keystore::KeyStore;
use crate::outbound::{queue, Outgoing};
use crate::workers::{Admission, LeaseClaim};

/// The actor of the process managers' commands.
pub const COMPONENT: &str = "installation-pm";

/// The idempotency keys of commissioning notifications begin with this.
pub const NOTIFY_KEY_PREFIX: &str = "installation-commissioned:";

/// Who a command is by, as the aggregates record it: the user id, else the actor.
pub fn by_of(metadata: &CommandMetadata) -> String {
    match &metadata.actor {
        Actor::User { user_id, .. } => user_id.clone(),
        other => other.to_string(),
    }
}

/// A uuid derived from `parts` (sha-256, shaped as a version-4 uuid): the same parts always give
/// the same id, so a process manager that runs twice addresses the same stream.
fn derived_uuid(parts: &[&str]) -> uuid::Uuid {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The installation the process manager opens for a paid order: `isr_<uuid>`, one per order.
pub fn installation_id_for_order(tenant: &TenantId, order_id: &str) -> String {
    format!("isr_{}", derived_uuid(&["installation", tenant.as_str(), order_id]))
}

/// The payout the process manager computes for a commissioned installation: `payout_<uuid>`.
pub fn payout_id_for(tenant: &TenantId, installation_id: &str) -> String {
    format!("payout_{}", derived_uuid(&["payout", tenant.as_str(), installation_id]))
}

/// What opening an installation by hand needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    pub installation_type: InstallationType,
    pub customer_id: String,
    pub order_id: String,
    /// In the clear; sealed under the customer's data key here.
    pub site_address: String,
    pub system_size_w: u32,
}

/// The first event's payload of a stream, as stored (`{"<EventType>": {...}}`).
async fn first_payload(
    pool: &PgPool,
    aggregate_type: &str,
    stream: &str,
    event_type: &str,
) -> Result<Option<serde_json::Value>, CommandError> {
    let payload: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT payload::jsonb FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_type = $3
          ORDER BY sequence LIMIT 1",
    )
    .bind(aggregate_type)
    .bind(stream)
    .bind(event_type)
    .fetch_optional(pool)
    .await?;
    Ok(payload.map(|p| p[event_type].clone()))
}

/// The customer and currency of an order, from its `OrderPlaced` (None: no such order).
pub async fn order_facts(
    pool: &PgPool,
    tenant: &TenantId,
    order_id: &str,
) -> Result<Option<(String, String)>, CommandError> {
    let placed = first_payload(pool, "Order", &tenant.stream_id(order_id), "OrderPlaced").await?;
    Ok(placed.and_then(|p| {
        Some((
            p["customer_id"].as_str()?.to_string(),
            p["currency"].as_str()?.to_string(),
        ))
    }))
}

/// The customer of an installation, from its `InstallationOpened` (None: no such installation).
pub async fn installation_customer(
    pool: &PgPool,
    tenant: &TenantId,
    installation_id: &str,
) -> Result<Option<String>, CommandError> {
    let opened = first_payload(
        pool,
        "InstallationRecord",
        &tenant.stream_id(installation_id),
        "InstallationOpened",
    )
    .await?;
    Ok(opened.and_then(|p| p["customer_id"].as_str().map(str::to_string)))
}

/// The write side of orders, installations and payouts.
#[derive(Clone, Debug)]
pub struct InstallationService {
    commands: Commands,
    keys: KeyStore,
}

impl InstallationService {
    /// A service appending through `commands`, sealing with `keys`.
    pub fn new(commands: Commands, keys: KeyStore) -> Self {
        Self { commands, keys }
    }

    /// The dispatcher.
    pub fn commands(&self) -> &Commands {
        &self.commands
    }

    async fn seal_for(&self, tenant: &TenantId, customer_id: &str, plain: &str) -> Result<Envelope, CommandError> {
        let key = self.keys.key_for(tenant, customer_id).await?;
        Ok(key.seal(tenant, customer_id, plain, &mut OsRng))
    }

    async fn installation_customer_or_refuse(
        &self,
        metadata: &CommandMetadata,
        id: &str,
    ) -> Result<String, CommandError> {
        installation_customer(self.commands.pool(), &metadata.tenant_id, id)
            .await?
            .ok_or(CommandError::Rejected(DomainError::Installation(
                InstallationError::UnknownInstallation,
            )))
    }

    /// Places an order for `customer_id` (a contact id); returns its id `order_<uuid>`.
    pub async fn place_order(
        &self,
        customer_id: &str,
        items: Vec<LineItem>,
        metadata: &CommandMetadata,
    ) -> Result<String, CommandError> {
        let order_id = format!("order_{}", uuid::Uuid::new_v4());
        let command = OrderCommand::Place(PlaceOrder {
            customer_id: customer_id.to_string(),
            items,
            by: by_of(metadata),
            at: Utc::now(),
        });
        self.commands.order(&order_id, command, metadata).await?;
        Ok(order_id)
    }

    /// Records a confirmed payment on an order (once per provider and reference). The payment
    /// callbacks verify and confirm before calling this; by hand it is for cash.
    pub async fn record_payment(
        &self,
        order_id: &str,
        provider: PaymentProvider,
        reference: &str,
        amount_minor: i64,
        currency: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = OrderCommand::RecordPayment(RecordPayment {
            provider,
            reference: reference.to_string(),
            amount_minor,
            currency: currency.to_string(),
            at: Utc::now(),
        });
        self.commands.order(order_id, command, metadata).await
    }

    /// Marks a paid order fulfilled.
    pub async fn fulfil_order(&self, order_id: &str, metadata: &CommandMetadata) -> Result<Appended, CommandError> {
        let command = OrderCommand::Fulfil {
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.commands.order(order_id, command, metadata).await
    }

    /// Cancels an order not yet fulfilled; the reason is sealed under the customer's key.
    pub async fn cancel_order(
        &self,
        order_id: &str,
        reason: Option<&str>,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let tenant = &metadata.tenant_id;
        let Some((customer_id, _)) = order_facts(self.commands.pool(), tenant, order_id).await? else {
            return Err(CommandError::Rejected(DomainError::Order(OrderError::UnknownOrder)));
        };
        let reason = match reason.map(str::trim).filter(|r| !r.is_empty()) {
            Some(text) => Some(self.seal_for(tenant, &customer_id, text).await?),
            None => None,
        };
        let command = OrderCommand::Cancel {
            reason,
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.commands.order(order_id, command, metadata).await
    }

    /// Opens an installation by hand; returns its id `isr_<uuid>`.
    pub async fn open_installation(
        &self,
        request: OpenRequest,
        metadata: &CommandMetadata,
    ) -> Result<String, CommandError> {
        let installation_id = format!("isr_{}", uuid::Uuid::new_v4());
        self.open_installation_as(&installation_id, request, metadata).await?;
        Ok(installation_id)
    }

    /// Opens the installation `installation_id` (a repeat records nothing).
    pub async fn open_installation_as(
        &self,
        installation_id: &str,
        request: OpenRequest,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        if request.customer_id.trim().is_empty() {
            return Err(CommandError::Rejected(DomainError::Installation(
                InstallationError::Blank { field: "customer id" },
            )));
        }
        let site_address = self
            .seal_for(&metadata.tenant_id, &request.customer_id, &request.site_address)
            .await?;
        let command = InstallationCommand::Open(OpenInstallation {
            installation_type: request.installation_type,
            customer_id: request.customer_id,
            order_id: request.order_id,
            site_address,
            system_size_w: request.system_size_w,
            by: by_of(metadata),
            at: Utc::now(),
        });
        self.commands.installation(installation_id, command, metadata).await
    }

    async fn isr(
        &self,
        installation_id: &str,
        command: InstallationCommand,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        self.commands.installation(installation_id, command, metadata).await
    }

    /// The technicians assigned to an installation now, from its own stream (empty for an
    /// unknown installation).
    pub async fn team(&self, tenant: &TenantId, installation_id: &str) -> Result<Vec<String>, CommandError> {
        let latest: Option<serde_json::Value> = sqlx::query_scalar(
            "SELECT payload::jsonb -> event_type -> 'technicians' FROM events
              WHERE aggregate_type = 'InstallationRecord' AND aggregate_id = $1
                AND event_type IN ('TechnicianAssigned', 'TechnicianUnassigned')
              ORDER BY sequence DESC LIMIT 1",
        )
        .bind(tenant.stream_id(installation_id))
        .fetch_optional(self.commands.pool())
        .await?;
        match latest {
            Some(team) => serde_json::from_value(team).map_err(|e| CommandError::Unexpected(Box::new(e))),
            None => Ok(Vec::new()),
        }
    }

    /// Assigns a technician (by user id).
    pub async fn assign_technician(
        &self,
        installation_id: &str,
        technician_id: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = InstallationCommand::AssignTechnician {
            technician_id: technician_id.to_string(),
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.isr(installation_id, command, metadata).await
    }

    /// Unassigns a technician.
    pub async fn unassign_technician(
        &self,
        installation_id: &str,
        technician_id: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = InstallationCommand::UnassignTechnician {
            technician_id: technician_id.to_string(),
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.isr(installation_id, command, metadata).await
    }

    /// Schedules the job for the first time.
    pub async fn schedule(
        &self,
        installation_id: &str,
        starts_at: DateTime<Utc>,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = InstallationCommand::Schedule {
            starts_at,
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.isr(installation_id, command, metadata).await
    }

    /// Moves a scheduled job; the reason is sealed under the customer's key.
    pub async fn reschedule(
        &self,
        installation_id: &str,
        starts_at: DateTime<Utc>,
        reason: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let customer = self.installation_customer_or_refuse(metadata, installation_id).await?;
        let reason = self.seal_for(&metadata.tenant_id, &customer, reason).await?;
        let command = InstallationCommand::Reschedule {
            starts_at,
            reason,
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.isr(installation_id, command, metadata).await
    }

    /// Starts the work on site.
    pub async fn start_work(
        &self,
        installation_id: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = InstallationCommand::StartWork {
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.isr(installation_id, command, metadata).await
    }

    /// Ticks an item of the type's checklist.
    pub async fn complete_checklist_item(
        &self,
        installation_id: &str,
        item: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = InstallationCommand::CompleteChecklistItem {
            item: item.to_string(),
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.isr(installation_id, command, metadata).await
    }

    /// Attaches a photo by kind and the sha-256 (lowercase hex) of its content.
    pub async fn attach_photo(
        &self,
        installation_id: &str,
        kind: &str,
        sha256: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = InstallationCommand::AttachPhoto {
            kind: kind.to_string(),
            sha256: sha256.to_string(),
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.isr(installation_id, command, metadata).await
    }

    /// Records a serialized component installed.
    pub async fn install_component(
        &self,
        installation_id: &str,
        serial: &str,
        kind: &str,
        warranty_months: u32,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = InstallationCommand::InstallComponent {
            serial: serial.to_string(),
            kind: kind.to_string(),
            warranty_months,
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.isr(installation_id, command, metadata).await
    }

    /// Commissions; refused with what is missing (`CommissioningIncomplete`).
    pub async fn commission(
        &self,
        installation_id: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = InstallationCommand::Commission {
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.isr(installation_id, command, metadata).await
    }

    /// Activates a commissioned installation.
    pub async fn activate(&self, installation_id: &str, metadata: &CommandMetadata) -> Result<Appended, CommandError> {
        let command = InstallationCommand::Activate {
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.isr(installation_id, command, metadata).await
    }

    /// Decommissions; the reason is sealed under the customer's key.
    pub async fn decommission(
        &self,
        installation_id: &str,
        reason: Option<&str>,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let reason = match reason.map(str::trim).filter(|r| !r.is_empty()) {
            Some(text) => {
                let customer = self.installation_customer_or_refuse(metadata, installation_id).await?;
                Some(self.seal_for(&metadata.tenant_id, &customer, text).await?)
            }
            None => None,
        };
        let command = InstallationCommand::Decommission {
            reason,
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.isr(installation_id, command, metadata).await
    }

    /// Approves a pending payout (not by a technician it pays).
    pub async fn approve_payout(&self, payout_id: &str, metadata: &CommandMetadata) -> Result<Appended, CommandError> {
        let command = PayoutCommand::Approve {
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.commands.payout(payout_id, command, metadata).await
    }

    /// Grants (or replaces) the quality bonus of a pending payout (not by a technician it pays);
    /// the payout's total becomes its tier base plus `amount_minor`.
    pub async fn grant_quality_bonus(
        &self,
        payout_id: &str,
        amount_minor: u32,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = PayoutCommand::GrantQualityBonus {
            amount_minor,
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.commands.payout(payout_id, command, metadata).await
    }

    /// Records that an approved payout was paid under finance's reference.
    pub async fn mark_payout_paid(
        &self,
        payout_id: &str,
        reference: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = PayoutCommand::MarkPaid {
            reference: reference.to_string(),
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.commands.payout(payout_id, command, metadata).await
    }
}

/// The delay before a transient failure is retried: 2^attempts seconds, at most ten minutes.
pub fn retry_backoff(attempts: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(attempts.min(10)).min(600))
}

/// How the process managers pay and notify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationWorkerConfig {
    /// The payout currency when the installation's order is not in the log (opened by hand with
    /// an order id of another system); otherwise the order's currency.
    pub default_currency: String,
    /// The template that tells the customer the installation is commissioned (no parameters).
    pub template_name: String,
    pub language: String,
    /// Rows per claim.
    pub batch_size: i64,
}

impl Default for InstallationWorkerConfig {
    fn default() -> Self {
        Self {
            default_currency: "USD".into(),
            template_name: "installation_commissioned".into(),
            language: "en_US".into(),
            batch_size: 100,
        }
    }
}

/// What one pass of the installation process managers did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstallationPass {
    /// Installations opened for paid orders (a repeat that opened nothing new counts too).
    pub opened: usize,
    /// Payouts computed.
    pub payouts: usize,
    /// Warranties registered (one per component with a warranty period).
    pub warranties: usize,
    /// Commissioning notifications queued.
    pub notified: usize,
    /// Commissioning notifications skipped (no conversation, opted out, template not approved).
    pub skipped: usize,
    /// Rows refused by an aggregate (kept with the reason).
    pub refused: usize,
    /// Rows left for a later pass after a transient failure.
    pub retry: usize,
}

impl InstallationPass {
    /// Rows worked in the pass.
    pub fn worked(&self) -> usize {
        self.opened + self.payouts + self.warranties + self.notified + self.skipped + self.refused + self.retry
    }

    fn add(&mut self, other: InstallationPass) {
        self.opened += other.opened;
        self.payouts += other.payouts;
        self.warranties += other.warranties;
        self.notified += other.notified;
        self.skipped += other.skipped;
        self.refused += other.refused;
        self.retry += other.retry;
    }
}

/// A claimed row of `installation_openings`.
struct OpeningRow {
    tenant: String,
    order_id: String,
    customer_id: String,
    items: serde_json::Value,
    attempts: i32,
    event_position: i64,
}

/// A claimed row of `installation_commissionings`.
struct CommissioningRow {
    tenant: String,
    installation_id: String,
    customer_id: String,
    order_id: String,
    system_size_w: i64,
    components: serde_json::Value,
    technicians: serde_json::Value,
    payout_state: String,
    warranty_state: String,
    notify_state: String,
    commissioned_at: DateTime<Utc>,
    attempts: i32,
    event_position: i64,
}

fn system_metadata(tenant: &str, correlation_id: String, position: i64) -> Result<CommandMetadata, CommandError> {
    Ok(CommandMetadata {
        tenant_id: TenantId::parse(tenant).map_err(|e| CommandError::InvalidInput(e.to_string()))?,
        actor: Actor::System {
            component: COMPONENT.into(),
        },
        correlation_id,
        causation_id: format!("event:{position}"),
    })
}

/// The installation process managers' worker (see the module docs).
#[derive(Clone, Debug)]
pub struct InstallationWorker {
    pool: PgPool,
    service: InstallationService,
    keys: KeyStore,
    config: InstallationWorkerConfig,
    /// Paid orders, then commissioned installations, from the projector's feed.
    admissions: [Admission; 2],
}

impl InstallationWorker {
    /// A worker over `commands`' pool, sealing with `keys`, with the default configuration.
    pub fn new(commands: Commands, keys: KeyStore) -> Self {
        Self::with_config(commands, keys, InstallationWorkerConfig::default())
    }

    /// A worker with its configuration.
    pub fn with_config(commands: Commands, keys: KeyStore, config: InstallationWorkerConfig) -> Self {
        Self {
            pool: commands.pool().clone(),
            service: InstallationService::new(commands, keys.clone()),
            keys,
            config,
            admissions: [
                Admission::new(
                    "installation_opening_feed",
                    "INSERT INTO installation_openings (tenant_id, order_id, customer_id, installable_items, paid_at,
                                                        event_position)
                     SELECT tenant_id, order_id, customer_id, installable_items, paid_at, position
                       FROM new ORDER BY position
                     ON CONFLICT (tenant_id, order_id) DO NOTHING",
                ),
                Admission::new(
                    "installation_commissioning_feed",
                    "INSERT INTO installation_commissionings (tenant_id, installation_id, customer_id, order_id,
                            installation_type, system_size_w, components, technicians, commissioned_at, event_position)
                     SELECT tenant_id, installation_id, customer_id, order_id, installation_type, system_size_w,
                            components, technicians, commissioned_at, position
                       FROM new ORDER BY position
                     ON CONFLICT (tenant_id, installation_id) DO NOTHING",
                ),
            ],
        }
    }

    /// Works every ready row until none is left; returns the totals.
    pub async fn drain(&self) -> Result<InstallationPass, CommandError> {
        let mut total = InstallationPass::default();
        loop {
            let pass = self.run_once().await?;
            total.add(pass);
            if pass.worked() == pass.retry {
                return Ok(total);
            }
        }
    }

    /// Runs passes until `shutdown` turns true (the shared polling loop).
    pub async fn run(self, poll: Duration, shutdown: tokio::sync::watch::Receiver<bool>) {
        crate::workers::poll_until_shutdown("installation-pm", poll, shutdown, || async {
            let pass = self.run_once().await?;
            if pass.worked() > 0 {
                tracing::info!(
                    opened = pass.opened,
                    payouts = pass.payouts,
                    warranties = pass.warranties,
                    notified = pass.notified,
                    skipped = pass.skipped,
                    refused = pass.refused,
                    retry = pass.retry,
                    "installation process managers pass"
                );
            }
            Ok(pass.worked() > pass.retry && pass.worked() as i64 >= self.config.batch_size)
        })
        .await
    }

    /// One pass: copies what the feed gained, opens installations for paid orders, then works
    /// commissioned installations.
    pub async fn run_once(&self) -> Result<InstallationPass, CommandError> {
        for admission in &self.admissions {
            admission.run(&self.pool).await?;
        }
        let mut pass = InstallationPass::default();
        for row in self.claim_openings().await? {
            let span = tracing::info_span!("installation.open", tenant.id = %row.tenant, order.id = %row.order_id, correlation.id = %format!("order-paid:{}", row.order_id));
            let result = self.open(&row).instrument(span).await;
            match result {
                Ok(installation_id) => {
                    pass.opened += 1;
                    sqlx::query(
                        "UPDATE installation_openings SET state = 'done', installation_id = $3, done_at = now(),
                                last_error = NULL, not_before = now()
                          WHERE tenant_id = $1 AND order_id = $2",
                    )
                    .bind(&row.tenant)
                    .bind(&row.order_id)
                    .bind(installation_id)
                    .execute(&self.pool)
                    .await?;
                }
                Err(e @ CommandError::Rejected(_)) | Err(e @ CommandError::InvalidInput(_)) => {
                    tracing::warn!(tenant.id = %row.tenant, order.id = %row.order_id, reason = %e, "opening the installation was refused");
                    pass.refused += 1;
                    sqlx::query(
                        "UPDATE installation_openings SET state = 'refused', last_error = $3, done_at = now(),
                                not_before = now()
                          WHERE tenant_id = $1 AND order_id = $2",
                    )
                    .bind(&row.tenant)
                    .bind(&row.order_id)
                    .bind(e.to_string())
                    .execute(&self.pool)
                    .await?;
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %row.tenant, order.id = %row.order_id, reason = %e, "opening the installation will be retried");
                    pass.retry += 1;
                    sqlx::query(
                        "UPDATE installation_openings
                            SET last_error = $3, not_before = now() + make_interval(secs => $4)
                          WHERE tenant_id = $1 AND order_id = $2",
                    )
                    .bind(&row.tenant)
                    .bind(&row.order_id)
                    .bind(e.to_string())
                    .bind(retry_backoff(u32::try_from(row.attempts).unwrap_or(0)).as_secs_f64())
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
        for row in self.claim_commissionings().await? {
            let span = tracing::info_span!("installation.commissioned", tenant.id = %row.tenant, installation.id = %row.installation_id, correlation.id = %format!("installation-commissioned:{}", row.installation_id));
            self.commissioned(&row, &mut pass).instrument(span).await?;
        }
        Ok(pass)
    }

    async fn claim_openings(&self) -> Result<Vec<OpeningRow>, CommandError> {
        let rows = LeaseClaim::new(
            "installation_openings",
            "tenant_id, order_id",
            "state = 'new'",
            "event_position",
            "tenant_id, order_id, customer_id, installable_items, attempts, event_position",
        )
        .query()
        .bind(self.config.batch_size)
        .fetch_all(&self.pool)
        .await?;
        let mut rows: Vec<OpeningRow> = rows
            .into_iter()
            .map(|r| OpeningRow {
                tenant: r.get("tenant_id"),
                order_id: r.get("order_id"),
                customer_id: r.get("customer_id"),
                items: r.get("installable_items"),
                attempts: r.get("attempts"),
                event_position: r.get("event_position"),
            })
            .collect();
        rows.sort_by_key(|r| r.event_position);
        Ok(rows)
    }

    /// Opens the order's installation (derived id: a repeat records nothing).
    async fn open(&self, row: &OpeningRow) -> Result<String, CommandError> {
        let metadata = system_metadata(&row.tenant, format!("order-paid:{}", row.order_id), row.event_position)?;
        let items: Vec<LineItem> =
            serde_json::from_value(row.items.clone()).map_err(|e| CommandError::InvalidInput(e.to_string()))?;
        let installation_type = installation_type_of(&items)
            .ok_or_else(|| CommandError::InvalidInput("the order has no installable item".into()))?;
        let installation_id = installation_id_for_order(&metadata.tenant_id, &row.order_id);
        let request = OpenRequest {
            installation_type,
            customer_id: row.customer_id.clone(),
            order_id: row.order_id.clone(),
            site_address: String::new(),
            system_size_w: system_size_of(&items, installation_type),
        };
        self.service
            .open_installation_as(&installation_id, request, &metadata)
            .await?;
        Ok(installation_id)
    }

    async fn claim_commissionings(&self) -> Result<Vec<CommissioningRow>, CommandError> {
        let rows = LeaseClaim::new(
            "installation_commissionings",
            "tenant_id, installation_id",
            "(payout_state = 'new' OR warranty_state = 'new' OR notify_state = 'new')",
            "event_position",
            "tenant_id, installation_id, customer_id, order_id, system_size_w, components, technicians, payout_state, warranty_state, notify_state, commissioned_at, attempts, event_position",
        )
        .query()
        .bind(self.config.batch_size)
        .fetch_all(&self.pool)
        .await?;
        let mut rows: Vec<CommissioningRow> = rows
            .into_iter()
            .map(|r| CommissioningRow {
                tenant: r.get("tenant_id"),
                installation_id: r.get("installation_id"),
                customer_id: r.get("customer_id"),
                order_id: r.get("order_id"),
                system_size_w: r.get("system_size_w"),
                components: r.get("components"),
                technicians: r.get("technicians"),
                payout_state: r.get("payout_state"),
                warranty_state: r.get("warranty_state"),
                notify_state: r.get("notify_state"),
                commissioned_at: r.get("commissioned_at"),
                attempts: r.get("attempts"),
                event_position: r.get("event_position"),
            })
            .collect();
        rows.sort_by_key(|r| r.event_position);
        Ok(rows)
    }

    /// Sets `assignments` on the row (`$3`: an optional text).
    async fn set(&self, row: &CommissioningRow, assignments: &str, text: Option<String>) -> Result<(), CommandError> {
        sqlx::query(&format!(
            "UPDATE installation_commissionings SET {assignments} WHERE tenant_id = $1 AND installation_id = $2"
        ))
        .bind(&row.tenant)
        .bind(&row.installation_id)
        .bind(text)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Works the steps of a commissioned installation still to do; a transient failure of any
    /// step leaves the row for a later pass (after [`retry_backoff`]), the others keep their
    /// outcome.
    async fn commissioned(&self, row: &CommissioningRow, pass: &mut InstallationPass) -> Result<(), CommandError> {
        let metadata = system_metadata(
            &row.tenant,
            format!("installation-commissioned:{}", row.installation_id),
            row.event_position,
        )?;
        let mut transient: Option<CommandError> = None;
        if row.payout_state == "new" {
            match self.compute_payout(row, &metadata).await {
                Ok(payout_id) => {
                    pass.payouts += 1;
                    self.set(row, "payout_state = 'done', payout_id = $3", Some(payout_id))
                        .await?;
                }
                Err(e @ CommandError::Rejected(_)) | Err(e @ CommandError::InvalidInput(_)) => {
                    tracing::warn!(reason = %e, "the payout was refused");
                    pass.refused += 1;
                    self.set(row, "payout_state = 'refused', last_error = $3", Some(e.to_string()))
                        .await?;
                }
                Err(e) => transient = Some(e),
            }
        }
        if row.warranty_state == "new" {
            match self.register_warranties(row, &metadata).await {
                Ok(registered) => {
                    pass.warranties += registered;
                    self.set(row, "warranty_state = 'done', last_error = $3", None).await?;
                }
                Err(e @ CommandError::Rejected(_)) | Err(e @ CommandError::InvalidInput(_)) => {
                    tracing::warn!(reason = %e, "a warranty was refused");
                    pass.refused += 1;
                    self.set(row, "warranty_state = 'refused', last_error = $3", Some(e.to_string()))
                        .await?;
                }
                Err(e) => transient = transient.or(Some(e)),
            }
        }
        if row.notify_state == "new" {
            let key = format!("{NOTIFY_KEY_PREFIX}{}", row.installation_id);
            let outgoing = Outgoing::Template {
                name: self.config.template_name.clone(),
                language: self.config.language.clone(),
                parameters: Vec::new(),
            };
            match queue(
                self.service.commands(),
                &self.keys,
                &row.customer_id,
                &key,
                outgoing,
                &metadata,
            )
            .await
            {
                Ok(_) => {
                    pass.notified += 1;
                    self.set(row, "notify_state = 'queued', notify_reason = $3", None)
                        .await?;
                }
                Err(CommandError::Rejected(DomainError::Conversation(e))) => {
                    tracing::info!(reason = e.code(), "the commissioning notification was skipped");
                    pass.skipped += 1;
                    self.set(
                        row,
                        "notify_state = 'skipped', notify_reason = $3",
                        Some(e.code().to_string()),
                    )
                    .await?;
                }
                Err(e) => transient = transient.or(Some(e)),
            }
        }
        match transient {
            None => self.set(row, "not_before = now(), last_error = $3", None).await,
            Some(e) => {
                tracing::warn!(reason = %e, "a commissioning step will be retried");
                pass.retry += 1;
                let attempts = u32::try_from(row.attempts).unwrap_or(0);
                sqlx::query(
                    "UPDATE installation_commissionings
                        SET last_error = $3, not_before = now() + make_interval(secs => $4)
                      WHERE tenant_id = $1 AND installation_id = $2",
                )
                .bind(&row.tenant)
                .bind(&row.installation_id)
                .bind(e.to_string())
                .bind(retry_backoff(attempts).as_secs_f64())
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    }

    /// Registers a warranty for every component with a warranty period (one stream per
    /// component: a repeat records nothing); returns how many were sent.
    async fn register_warranties(
        &self,
        row: &CommissioningRow,
        metadata: &CommandMetadata,
    ) -> Result<usize, CommandError> {
        let components: Vec<Component> =
            serde_json::from_value(row.components.clone()).map_err(|e| CommandError::InvalidInput(e.to_string()))?;
        let mut registered = 0;
        for component in components.into_iter().filter(|c| c.warranty_months > 0) {
            let command = WarrantyCommand::Register(RegisterWarranty {
                installation_id: row.installation_id.clone(),
                serial: component.serial.clone(),
                kind: component.kind,
                customer_id: row.customer_id.clone(),
                warranty_months: component.warranty_months,
                starts_at: row.commissioned_at,
                by: by_of(metadata),
                at: row.commissioned_at,
            });
            let local_id = warranty_local_id(&row.installation_id, &component.serial);
            self.service.commands().warranty(&local_id, command, metadata).await?;
            registered += 1;
        }
        Ok(registered)
    }

    /// Computes the installation's payout (derived id: computed once).
    async fn compute_payout(&self, row: &CommissioningRow, metadata: &CommandMetadata) -> Result<String, CommandError> {
        let tenant = &metadata.tenant_id;
        let payout_id = payout_id_for(tenant, &row.installation_id);
        let technician_ids: Vec<String> =
            serde_json::from_value(row.technicians.clone()).map_err(|e| CommandError::InvalidInput(e.to_string()))?;
        let currency = order_facts(&self.pool, tenant, &row.order_id)
            .await?
            .map(|(_, currency)| currency)
            .unwrap_or_else(|| self.config.default_currency.clone());
        let command = PayoutCommand::Compute(ComputePayout {
            installation_id: row.installation_id.clone(),
            technician_ids,
            system_size_w: u32::try_from(row.system_size_w).unwrap_or(0),
            quality_bonus_minor: None,
            currency,
            by: by_of(metadata),
            at: Utc::now(),
        });
        self.service.commands().payout(&payout_id, command, metadata).await?;
        Ok(payout_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_per_tenant_and_order() {
        let acme = TenantId::parse("acme").unwrap_or_else(|e| panic!("{e}"));
        let other = TenantId::parse("other").unwrap_or_else(|e| panic!("{e}"));
        let a = installation_id_for_order(&acme, "order_1");
        assert_eq!(a, installation_id_for_order(&acme, "order_1"));
        assert_ne!(a, installation_id_for_order(&acme, "order_2"));
        assert_ne!(a, installation_id_for_order(&other, "order_1"));
        assert!(a.starts_with("isr_") && uuid::Uuid::parse_str(&a[4..]).is_ok());
        assert!(payout_id_for(&acme, &a).starts_with("payout_"));
    }

    #[test]
    fn the_retry_backoff_grows_and_is_capped() {
        assert_eq!(retry_backoff(0), Duration::from_secs(1));
        assert_eq!(retry_backoff(3), Duration::from_secs(8));
        assert_eq!(retry_backoff(40), Duration::from_secs(600));
    }
}
