//! Orders, installations and after-sales on the write side (issue 4), one file per area as in
//! the domain (`chronicle_domain::installation`), the read side
//! (`chronicle_projections::installation`) and the API (`api/src/graphql/installation/`):
//!
//! - [`orders`], [`records`], [`payouts`]: [`InstallationService`], one method per command over
//!   the `Order`, `InstallationRecord` and `Payout` aggregates;
//! - [`warranties`], [`claims`], [`service_requests`], [`maintenance`]: warranty registration
//!   ([`InstallationService`]) and [`ServiceDesk`], over `Warranty`, `WarrantyClaim`,
//!   `ServiceRequest` and `MaintenanceContract`;
//! - [`process`]: the process managers ([`InstallationWorker`]) and the sweeper
//!   ([`ServiceSweeper`]).
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
//! (`chronicle_projections::installation::InstallationWorkProjector`) writes a feed from
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
//!
//! # The service desk ([`ServiceDesk`])
//!
//! What GraphQL mutations call. Free text (a claim's description, a note, a resolution, a
//! cancellation reason) is sealed here under the customer's data key before it reaches a
//! command, so it never enters the log in the clear.
//!
//! - Service requests: [`ServiceDesk::open_request`] takes the tenant's next ticket number from
//!   `service_ticket_numbers` (one atomic upsert: unique and sequential per tenant, `SR-000001`,
//!   `SR-000002`, …; inputs are checked first so a refusal spends no number) and opens
//!   `sr_<number>`; with an idempotency key (`service_request_keys`) a retried opening gets the
//!   first ticket and records nothing. Then assign, resolve, close.
//! - Warranty claims: [`ServiceDesk::file_claim`] loads the warranty from the log and files the
//!   claim against its terms as they stand (the `WarrantyClaim` aggregate refuses a claim on an
//!   inactive warranty or outside its period); then review, decide, resolve.
//! - Maintenance contracts: start, renew (from the old end, idempotent by reference), switch
//!   auto-renewal, cancel.
//!
//! # The sweeper ([`ServiceSweeper`])
//!
//! Works the lists the `service_work` projector keeps (migration 0068) with the shared polling
//! loop ([`crate::workers`]), by the database's clock:
//! - SLA: pending requests whose due time has passed get `CheckSla { at: now() }`; the aggregate
//!   records the breach once (a repeat records nothing; a request resolved meanwhile records
//!   nothing), so a crash or two sweepers never flag a request twice.
//! - Auto-renewal: active auto-renewing contracts whose end has passed are renewed for
//!   [`AUTO_RENEWAL_MONTHS`] under the reference `auto:<old end>`, so a repeated pass (the
//!   projector not caught up yet) renews once.

pub mod claims;
pub mod maintenance;
pub mod orders;
pub mod payouts;
pub mod process;
pub mod records;
pub mod service_requests;
pub mod warranties;

pub use process::{
    retry_backoff, InstallationPass, InstallationWorker, InstallationWorkerConfig, ServiceSweeper, SweepPass,
};

use crate::dispatch::{Appended, Commands};
use crate::error::{CommandError, DomainError};
use crate::keystore::KeyStore;
use crate::outbound::{queue, Outgoing};
use crate::workers::{Admission, LeaseClaim};
use chronicle_domain::installation::isr::OpenInstallation;
use chronicle_domain::installation::order::{PlaceOrder, RecordPayment};
use chronicle_domain::installation::payout::ComputePayout;
use chronicle_domain::installation::{installation_type_of, system_size_of, InstallationError};
use chronicle_domain::installation::{
    service_request_local_id, ticket_label, ClaimCommand, ClaimDecision, FileClaim, MaintenanceCommand,
    MaintenanceContract, OpenServiceRequest, Priority, ServiceCommand, ServiceError, ServiceRequest,
    StartMaintenanceContract, WarrantyClaim,
};
use chronicle_domain::installation::{
    warranty_local_id, Component, InstallationCommand, InstallationType, LineItem, OrderCommand, OrderError,
    PaymentProvider, PayoutCommand, RegisterWarranty, WarrantyCommand,
};
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::pii::Envelope;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, EventStore};
use postgres_es::PostgresEventRepository;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use std::time::Duration;
use tracing::Instrument;

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
    let row: Option<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT event_version, payload::jsonb FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_type = $3
          ORDER BY sequence LIMIT 1",
    )
    .bind(aggregate_type)
    .bind(stream)
    .bind(event_type)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(version, mut payload)| {
        chronicle_domain::upcast::upcast(event_type, &version, &mut payload);
        payload[event_type].clone()
    }))
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

/// The site address an order was placed with, sealed under its customer's key (None: no such
/// order, or placed without one).
pub async fn order_site_address(
    pool: &PgPool,
    tenant: &TenantId,
    order_id: &str,
) -> Result<Option<Envelope>, CommandError> {
    let placed = first_payload(pool, "Order", &tenant.stream_id(order_id), "OrderPlaced").await?;
    match placed.map(|p| p["site_address"].clone()) {
        Some(sealed) if !sealed.is_null() => serde_json::from_value(sealed)
            .map(Some)
            .map_err(|e| CommandError::Unexpected(Box::new(e))),
        _ => Ok(None),
    }
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
}

/// The term of an automatic renewal, in months.
pub const AUTO_RENEWAL_MONTHS: u32 = 12;

/// The longest free text accepted (descriptions, notes, resolutions), in characters.
pub const MAX_TEXT_CHARS: usize = 4_000;

/// A service request to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewServiceRequest {
    /// `repair`, `inspection`, `question`, … (free, non-blank).
    pub kind: String,
    pub priority: Priority,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    pub installation_id: Option<String>,
    /// What the customer reports (sealed before it is stored).
    pub description: String,
    /// The caller's key: opening again with it returns the first ticket and records nothing.
    pub idempotency_key: Option<String>,
    pub at: DateTime<Utc>,
}

/// The ticket a request was opened as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedTicket {
    pub number: u64,
    /// The local id of its stream, `sr_<number>`.
    pub request_id: String,
    /// As people say it, `SR-000042`.
    pub ticket: String,
}

/// The write side of claims, service requests and maintenance contracts (see the module docs).
#[derive(Clone, Debug)]
pub struct ServiceDesk {
    commands: Commands,
    keys: KeyStore,
}

fn text(value: &str, field: &str) -> Result<(), CommandError> {
    if value.trim().is_empty() {
        return Err(CommandError::InvalidInput(format!("{field} must not be blank")));
    }
    if value.chars().count() > MAX_TEXT_CHARS {
        return Err(CommandError::InvalidInput(format!(
            "{field} is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(())
}

/// The current state of `<tenant>:<local_id>` of aggregate `A` (default when the stream is
/// empty).
pub(crate) async fn load<A>(pool: &PgPool, tenant: &TenantId, local_id: &str) -> Result<A, CommandError>
where
    A: Aggregate + Default,
    A::Error: Send + Sync + 'static,
{
    let store = PersistedEventStore::<_, A>::new_event_store(PostgresEventRepository::new(pool.clone()))
        .with_upcasters(crate::repository::upcasters());
    let mut context = store
        .load_aggregate(&tenant.stream_id(local_id))
        .await
        .map_err(|e| CommandError::Unexpected(Box::new(e)))?;
    Ok(std::mem::take(context.aggregate()))
}

impl ServiceDesk {
    /// A desk over `commands`, sealing free text with `keys`.
    pub fn new(commands: Commands, keys: KeyStore) -> Self {
        Self { commands, keys }
    }

    async fn seal(&self, tenant: &TenantId, customer_id: &str, plaintext: &str) -> Result<Envelope, CommandError> {
        let key = self.keys.key_for(tenant, customer_id).await?;
        Ok(key.seal(tenant, customer_id, plaintext, &mut OsRng))
    }
}

/// Who a command is recorded as done by: the user id, the API key or the component.
fn actor_id(metadata: &CommandMetadata) -> String {
    match &metadata.actor {
        Actor::User { user_id, .. } => user_id.clone(),
        Actor::ApiKey { key_id } => format!("api_key:{key_id}"),
        Actor::System { component } => component.clone(),
    }
}
