//! Warranty claims, service requests and maintenance contracts on the write side (issue 4).
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

use std::time::Duration;

use chronicle_domain::installation::{
    service_request_local_id, ticket_label, ClaimCommand, ClaimDecision, FileClaim, MaintenanceCommand,
    MaintenanceContract, OpenServiceRequest, Priority, ServiceCommand, ServiceError, ServiceRequest,
    StartMaintenanceContract, WarrantyClaim,
};
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::pii::Envelope;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, EventStore};
use postgres_es::PostgresEventRepository;
use rand::rngs::OsRng;
use sqlx::{PgPool, Row};
use tracing::Instrument;

use crate::dispatch::{Appended, Commands};
use crate::error::{CommandError, DomainError};
use crate::keystore::KeyStore;
use crate::workers::LeaseClaim;

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
    let store = PersistedEventStore::<_, A>::new_event_store(PostgresEventRepository::new(pool.clone()));
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

    /// Takes the tenant's next ticket number (1, 2, 3, …).
    pub async fn next_ticket_number(&self, tenant: &TenantId) -> Result<u64, CommandError> {
        let number: i64 = sqlx::query_scalar(
            "INSERT INTO service_ticket_numbers (tenant_id, last_number) VALUES ($1, 1)
             ON CONFLICT (tenant_id) DO UPDATE SET last_number = service_ticket_numbers.last_number + 1
             RETURNING last_number",
        )
        .bind(tenant.as_str())
        .fetch_one(self.commands.pool())
        .await?;
        u64::try_from(number).map_err(|e| CommandError::Unexpected(Box::new(e)))
    }

    /// The ticket number an opening uses: the one stored under `key` when there is one, else
    /// the next (stored under `key`, the first stored winning a race).
    async fn ticket_for(&self, tenant: &TenantId, key: Option<&str>) -> Result<u64, CommandError> {
        let Some(key) = key else {
            return self.next_ticket_number(tenant).await;
        };
        let stored = |pool: PgPool| async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT ticket_number FROM service_request_keys WHERE tenant_id = $1 AND idempotency_key = $2",
            )
            .bind(tenant.as_str())
            .bind(key)
            .fetch_optional(&pool)
            .await
        };
        let pool = self.commands.pool().clone();
        let number = match stored(pool.clone()).await? {
            Some(number) => number,
            None => {
                let next = self.next_ticket_number(tenant).await?;
                sqlx::query(
                    "INSERT INTO service_request_keys (tenant_id, idempotency_key, ticket_number) VALUES ($1, $2, $3)
                     ON CONFLICT (tenant_id, idempotency_key) DO NOTHING",
                )
                .bind(tenant.as_str())
                .bind(key)
                .bind(i64::try_from(next).map_err(|e| CommandError::Unexpected(Box::new(e)))?)
                .execute(&pool)
                .await?;
                stored(pool).await?.ok_or_else(|| {
                    CommandError::Unexpected(Box::new(std::io::Error::other("an idempotency key was not stored")))
                })?
            }
        };
        u64::try_from(number).map_err(|e| CommandError::Unexpected(Box::new(e)))
    }

    /// Opens a service request under the tenant's next ticket number (or the ticket its
    /// idempotency key already opened).
    pub async fn open_request(
        &self,
        metadata: &CommandMetadata,
        request: NewServiceRequest,
    ) -> Result<OpenedTicket, CommandError> {
        text(&request.description, "the description")?;
        if request.kind.trim().is_empty() || request.customer_id.trim().is_empty() {
            // The aggregate names the blank field; check before spending a ticket number.
            let field = if request.kind.trim().is_empty() {
                "kind"
            } else {
                "customer id"
            };
            return Err(CommandError::Rejected(DomainError::Service(ServiceError::Blank {
                field,
            })));
        }
        let tenant = &metadata.tenant_id;
        if let Some(key) = &request.idempotency_key {
            if key.is_empty() || key.len() > 200 {
                return Err(CommandError::InvalidInput(
                    "an idempotency key is 1 to 200 characters".into(),
                ));
            }
        }
        let description = self.seal(tenant, &request.customer_id, &request.description).await?;
        let number = self.ticket_for(tenant, request.idempotency_key.as_deref()).await?;
        let request_id = service_request_local_id(number);
        self.commands
            .service_request(
                &request_id,
                ServiceCommand::Open(OpenServiceRequest {
                    ticket_number: number,
                    kind: request.kind,
                    priority: request.priority,
                    customer_id: request.customer_id,
                    installation_id: request.installation_id,
                    description,
                    by: actor_id(metadata),
                    at: request.at,
                }),
                metadata,
            )
            .await?;
        Ok(OpenedTicket {
            number,
            request_id,
            ticket: ticket_label(number),
        })
    }

    /// Assigns (or reassigns) a technician to a pending request.
    pub async fn assign_request(
        &self,
        metadata: &CommandMetadata,
        request_id: &str,
        technician_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Appended, CommandError> {
        self.commands
            .service_request(
                request_id,
                ServiceCommand::Assign {
                    technician_id: technician_id.to_string(),
                    by: actor_id(metadata),
                    at,
                },
                metadata,
            )
            .await
    }

    /// Resolves a pending request (the resolution is sealed under the customer's key).
    pub async fn resolve_request(
        &self,
        metadata: &CommandMetadata,
        request_id: &str,
        resolution: &str,
        at: DateTime<Utc>,
    ) -> Result<Appended, CommandError> {
        text(resolution, "the resolution")?;
        let request: ServiceRequest = load(self.commands.pool(), &metadata.tenant_id, request_id).await?;
        if request.ticket_number().is_none() {
            return Err(CommandError::Rejected(DomainError::Service(
                ServiceError::UnknownServiceRequest,
            )));
        }
        let resolution = self
            .seal(&metadata.tenant_id, request.customer_id(), resolution)
            .await?;
        self.commands
            .service_request(
                request_id,
                ServiceCommand::Resolve {
                    resolution,
                    by: actor_id(metadata),
                    at,
                },
                metadata,
            )
            .await
    }

    /// Closes a resolved request.
    pub async fn close_request(
        &self,
        metadata: &CommandMetadata,
        request_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Appended, CommandError> {
        self.commands
            .service_request(
                request_id,
                ServiceCommand::Close {
                    by: actor_id(metadata),
                    at,
                },
                metadata,
            )
            .await
    }

    /// Files claim `claim_id` under the warranty `warranty_id` (checked against the warranty's
    /// terms as they stand in the log).
    pub async fn file_claim(
        &self,
        metadata: &CommandMetadata,
        claim_id: &str,
        warranty_id: &str,
        description: &str,
        at: DateTime<Utc>,
    ) -> Result<Appended, CommandError> {
        text(description, "the description")?;
        let tenant = &metadata.tenant_id;
        let terms = self.commands.load_warranty(tenant, warranty_id).await?.terms();
        let description = match &terms {
            Some(terms) => self.seal(tenant, &terms.customer_id, description).await?,
            // No warranty: the aggregate refuses the claim, so the description is never
            // stored; nothing is sealed for nobody.
            None => Envelope {
                enc: String::new(),
                nonce: String::new(),
                ciphertext: String::new(),
            },
        };
        self.commands
            .claim(
                claim_id,
                ClaimCommand::File(FileClaim {
                    warranty: terms,
                    warranty_id: warranty_id.to_string(),
                    description,
                    by: actor_id(metadata),
                    at,
                }),
                metadata,
            )
            .await
    }

    /// Starts the review of a submitted claim.
    pub async fn review_claim(
        &self,
        metadata: &CommandMetadata,
        claim_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Appended, CommandError> {
        self.commands
            .claim(
                claim_id,
                ClaimCommand::StartReview {
                    by: actor_id(metadata),
                    at,
                },
                metadata,
            )
            .await
    }

    async fn claim_customer(&self, tenant: &TenantId, claim_id: &str) -> Result<Option<String>, CommandError> {
        let claim: WarrantyClaim = load(self.commands.pool(), tenant, claim_id).await?;
        Ok(claim.is_filed().then(|| claim.customer_id().to_string()))
    }

    /// Decides a claim under review, with an optional note (sealed).
    pub async fn decide_claim(
        &self,
        metadata: &CommandMetadata,
        claim_id: &str,
        decision: ClaimDecision,
        note: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Appended, CommandError> {
        let tenant = &metadata.tenant_id;
        let note = match (note, self.claim_customer(tenant, claim_id).await?) {
            (Some(note), Some(customer)) => {
                text(note, "the note")?;
                Some(self.seal(tenant, &customer, note).await?)
            }
            // No claim: the aggregate refuses; nothing to seal.
            _ => None,
        };
        self.commands
            .claim(
                claim_id,
                ClaimCommand::Decide {
                    decision,
                    note,
                    by: actor_id(metadata),
                    at,
                },
                metadata,
            )
            .await
    }

    /// Resolves a decided claim (the resolution is sealed).
    pub async fn resolve_claim(
        &self,
        metadata: &CommandMetadata,
        claim_id: &str,
        resolution: &str,
        at: DateTime<Utc>,
    ) -> Result<Appended, CommandError> {
        text(resolution, "the resolution")?;
        let tenant = &metadata.tenant_id;
        let Some(customer) = self.claim_customer(tenant, claim_id).await? else {
            return Err(CommandError::Rejected(DomainError::Claim(
                chronicle_domain::installation::ClaimError::UnknownClaim,
            )));
        };
        let resolution = self.seal(tenant, &customer, resolution).await?;
        self.commands
            .claim(
                claim_id,
                ClaimCommand::Resolve {
                    resolution,
                    by: actor_id(metadata),
                    at,
                },
                metadata,
            )
            .await
    }

    /// Starts maintenance contract `contract_id`.
    pub async fn start_contract(
        &self,
        metadata: &CommandMetadata,
        contract_id: &str,
        start: StartMaintenanceContract,
    ) -> Result<Appended, CommandError> {
        self.commands
            .maintenance(contract_id, MaintenanceCommand::Start(start), metadata)
            .await
    }

    /// Renews a contract for `term_months` from its current end, under `reference` (a known
    /// reference records nothing).
    pub async fn renew_contract(
        &self,
        metadata: &CommandMetadata,
        contract_id: &str,
        reference: &str,
        term_months: u32,
        at: DateTime<Utc>,
    ) -> Result<Appended, CommandError> {
        self.commands
            .maintenance(
                contract_id,
                MaintenanceCommand::Renew {
                    reference: reference.to_string(),
                    term_months,
                    by: actor_id(metadata),
                    at,
                },
                metadata,
            )
            .await
    }

    /// Switches a contract's automatic renewal on or off.
    pub async fn set_auto_renewal(
        &self,
        metadata: &CommandMetadata,
        contract_id: &str,
        auto_renew: bool,
        at: DateTime<Utc>,
    ) -> Result<Appended, CommandError> {
        self.commands
            .maintenance(
                contract_id,
                MaintenanceCommand::SetAutoRenewal {
                    auto_renew,
                    by: actor_id(metadata),
                    at,
                },
                metadata,
            )
            .await
    }

    /// Cancels a contract, with an optional reason (sealed).
    pub async fn cancel_contract(
        &self,
        metadata: &CommandMetadata,
        contract_id: &str,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Appended, CommandError> {
        let tenant = &metadata.tenant_id;
        let reason = match reason {
            Some(reason) => {
                text(reason, "the reason")?;
                let contract: MaintenanceContract = load(self.commands.pool(), tenant, contract_id).await?;
                if contract.ends_at().is_some() {
                    Some(self.seal(tenant, contract.customer_id(), reason).await?)
                } else {
                    // No contract: the aggregate refuses; nothing to seal.
                    None
                }
            }
            None => None,
        };
        self.commands
            .maintenance(
                contract_id,
                MaintenanceCommand::Cancel {
                    reason,
                    by: actor_id(metadata),
                    at,
                },
                metadata,
            )
            .await
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

/// What one sweeper pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepPass {
    /// Requests checked (a breach recorded, or nothing left to record).
    pub checked: u32,
    /// Contracts renewed automatically (or found renewed already).
    pub renewed: u32,
    /// Rows refused by an aggregate (kept with the reason).
    pub refused: u32,
    /// Rows left for a later pass after a transient failure.
    pub retry: u32,
}

impl SweepPass {
    /// Rows worked.
    pub fn worked(&self) -> u32 {
        self.checked + self.renewed + self.refused + self.retry
    }
}

/// The SLA and auto-renewal sweeper (see the module docs).
#[derive(Clone, Debug)]
pub struct ServiceSweeper {
    pool: PgPool,
    commands: Commands,
}

fn system_metadata(tenant: &str, correlation: String) -> Result<CommandMetadata, CommandError> {
    let tenant_id = TenantId::parse(tenant).map_err(|e| CommandError::InvalidInput(e.to_string()))?;
    Ok(CommandMetadata {
        tenant_id,
        actor: Actor::System {
            component: "service-sweeper".into(),
        },
        causation_id: correlation.clone(),
        correlation_id: correlation,
    })
}

/// The service sweeper's names in `work_leases`.
const SLA_WORKER: &str = "service-sla";
const RENEWAL_WORKER: &str = "maintenance-renewals";

impl ServiceSweeper {
    /// A sweeper over `commands`' pool.
    pub fn new(commands: Commands) -> Self {
        Self {
            pool: commands.pool().clone(),
            commands,
        }
    }

    /// One pass: checks up to `limit` overdue requests and renews up to `limit` due contracts.
    pub async fn run_once(&self, limit: i64) -> Result<SweepPass, CommandError> {
        let mut pass = SweepPass::default();
        self.sweep_sla(limit, &mut pass).await?;
        self.sweep_renewals(limit, &mut pass).await?;
        Ok(pass)
    }

    /// Runs passes until none finds work.
    pub async fn drain(&self) -> Result<SweepPass, CommandError> {
        let mut total = SweepPass::default();
        loop {
            let pass = self.run_once(100).await?;
            total.checked += pass.checked;
            total.renewed += pass.renewed;
            total.refused += pass.refused;
            total.retry += pass.retry;
            if pass.worked() == pass.retry {
                return Ok(total);
            }
        }
    }

    /// Runs until `shutdown` turns true, a pass every `poll` (at once after a full one).
    pub async fn run(self, poll: Duration, shutdown: tokio::sync::watch::Receiver<bool>) {
        crate::workers::poll_until_shutdown("service-sweeper", poll, shutdown, || async {
            let pass = self.run_once(100).await?;
            if pass.worked() > 0 {
                tracing::info!(
                    checked = pass.checked,
                    renewed = pass.renewed,
                    refused = pass.refused,
                    retry = pass.retry,
                    "service sweeper pass"
                );
            }
            Ok(pass.worked() > pass.retry && pass.worked() >= 100)
        })
        .await
    }

    async fn sweep_sla(&self, limit: i64, pass: &mut SweepPass) -> Result<(), CommandError> {
        let rows = LeaseClaim::on_feed(
            SLA_WORKER,
            "service_sla_watch",
            "tenant_id, request_id",
            None,
            "state = 'pending' AND sla_due_at <= now()",
            "sla_due_at",
            "tenant_id, request_id, now() AS db_now",
        )
        .query()
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let tenant: String = row.try_get("tenant_id")?;
            let request_id: String = row.try_get("request_id")?;
            let now: DateTime<Utc> = row.try_get("db_now")?;
            let correlation = format!("sla-sweep:{request_id}");
            let span = tracing::info_span!("service.sla_sweep", tenant.id = %tenant, request.id = %request_id, correlation.id = %correlation);
            let result = async {
                let metadata = system_metadata(&tenant, correlation)?;
                self.commands
                    .service_request(&request_id, ServiceCommand::CheckSla { at: now }, &metadata)
                    .await
            }
            .instrument(span)
            .await;
            // The lease (a minute) covers the time until the projector marks the row done; the
            // check is idempotent.
            let (give_up, error) = match result {
                Ok(_) => {
                    pass.checked += 1;
                    (false, None)
                }
                Err(e @ CommandError::Rejected(DomainError::Service(ServiceError::SlaNotYetDue { .. }))) => {
                    // Cannot happen with the due time copied from the log and the database's
                    // clock; if it does, the row waits for the next pass.
                    pass.retry += 1;
                    (false, Some(e.to_string()))
                }
                Err(e @ CommandError::Rejected(_)) | Err(e @ CommandError::InvalidInput(_)) => {
                    tracing::warn!(tenant.id = %tenant, request.id = %request_id, reason = %e, "SLA check refused");
                    pass.refused += 1;
                    (true, Some(e.to_string()))
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %tenant, request.id = %request_id, reason = %e, "SLA check will be retried");
                    pass.retry += 1;
                    (false, Some(e.to_string()))
                }
            };
            LeaseClaim::record(
                &self.pool,
                SLA_WORKER,
                &[&tenant, &request_id],
                error.as_deref(),
                give_up,
            )
            .await?;
        }
        Ok(())
    }

    async fn sweep_renewals(&self, limit: i64, pass: &mut SweepPass) -> Result<(), CommandError> {
        let rows = LeaseClaim::on_feed(
            RENEWAL_WORKER,
            "maintenance_renewals",
            "tenant_id, contract_id",
            Some("last_position"),
            "auto_renew AND status = 'active' AND ends_at <= now()",
            "ends_at",
            "tenant_id, contract_id, ends_at, now() AS db_now",
        )
        .query()
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let tenant: String = row.try_get("tenant_id")?;
            let contract_id: String = row.try_get("contract_id")?;
            let ends_at: DateTime<Utc> = row.try_get("ends_at")?;
            let now: DateTime<Utc> = row.try_get("db_now")?;
            let reference = format!("auto:{}", ends_at.to_rfc3339());
            let correlation = format!("auto-renewal:{contract_id}:{reference}");
            let span = tracing::info_span!("service.auto_renewal", tenant.id = %tenant, contract.id = %contract_id, correlation.id = %correlation);
            let result = async {
                let metadata = system_metadata(&tenant, correlation)?;
                self.commands
                    .maintenance(
                        &contract_id,
                        MaintenanceCommand::Renew {
                            reference,
                            term_months: AUTO_RENEWAL_MONTHS,
                            by: "service-sweeper".into(),
                            at: now,
                        },
                        &metadata,
                    )
                    .await
            }
            .instrument(span)
            .await;
            let (give_up, error) = match result {
                Ok(_) => {
                    pass.renewed += 1;
                    (false, None)
                }
                Err(e @ CommandError::Rejected(_)) | Err(e @ CommandError::InvalidInput(_)) => {
                    tracing::warn!(tenant.id = %tenant, contract.id = %contract_id, reason = %e, "auto-renewal refused");
                    pass.refused += 1;
                    // Stop retrying until the contract changes (its row's last_position moves).
                    (true, Some(e.to_string()))
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %tenant, contract.id = %contract_id, reason = %e, "auto-renewal will be retried");
                    pass.retry += 1;
                    (false, Some(e.to_string()))
                }
            };
            LeaseClaim::record(
                &self.pool,
                RENEWAL_WORKER,
                &[&tenant, &contract_id],
                error.as_deref(),
                give_up,
            )
            .await?;
        }
        Ok(())
    }
}
