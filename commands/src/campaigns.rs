//! Campaigns on the write side: the commands people give ([`CampaignService`]) and the
//! campaign runner, a process manager ([`CampaignRunner`]).
//!
//! # Scheduling pays first ([`CampaignService::schedule`])
//!
//! The price is the tenant's price list entry for `broadcast_recipient` (no entry or 0: the
//! campaign is free and nothing is reserved). A priced campaign reserves recipients × unit
//! price on the tenant's MAIN wallet (purpose `broadcast_recipient`, expiring
//! [`CampaignConfig::reservation_days`] after the start) BEFORE `ScheduleCampaign` records it;
//! an insufficient balance is refused with `INSUFFICIENT_BALANCE` (required and available) and
//! the campaign stays a draft. The wallet remembers a refused reference forever, so each
//! attempt reserves under the next `campaign:<id>:reserve:<n>` not refused yet; a retry after
//! a crash finds its reservation made and reuses it. A reservation the campaign did not take
//! (it was scheduled differently meanwhile) is released again.
//!
//! # The runner ([`CampaignRunner`])
//!
//! The `campaign_work` projector (`chronicle_projections::campaigns`) feeds the runner's two
//! work lists, which the runner copies from the feeds into its own tables ([`Admission`]):
//! `campaign_runs` (one row per scheduled campaign, busy after every Campaign event) and
//! `campaign_outcomes` (the sender's `OutboundMessageSent` / `OutboundMessageFailed` of every
//! message keyed `campaign:<id>:<recipient>`, and the delivery statuses of those messages). A
//! pass of the runner:
//!
//! 1. records each new outcome on its campaign (`RecordRecipientOutcome`; late or repeated ones
//!    change nothing) and refunds a failed recipient on the main wallet (reference
//!    `refund:recipient_failed:<campaign>:<recipient>`, against its batch's capture, so the
//!    ledger line names the campaign and the recipient);
//! 2. works each busy campaign, loaded from the log: starts it when due; runs the next batch of
//!    [`CampaignConfig::recipients_per_second`] recipients once per [`CampaignConfig::tick`]
//!    (`RunBatch`), then dispatches it: captures the batch's charge from the reservation
//!    (`campaign:<id>:batch:<n>`), queues the template for every recipient on their
//!    conversation through [`crate::outbound::queue`] (idempotency key
//!    `campaign:<id>:<recipient>`; a contact with no conversation, opted out, or a template not
//!    approved fails that recipient with the refusal's code and is refunded at once), and marks
//!    the batch dispatched; settles a finished campaign (every batch captured, the rest of the
//!    reservation released under `campaign:<id>:release`, so captured + released = reserved).
//!
//! Every step is idempotent (the aggregates remember references, keys and outcomes), so a crash
//! anywhere repeats work without repeating effects. Rows are claimed with `FOR UPDATE SKIP
//! LOCKED` and a one-minute lease, so several runners never work one row at once.

use std::time::Duration;

use chronicle_domain::campaign::{
    campaign_local_id, message_key, reservation_reference, Campaign, CampaignCommand, CampaignError, CampaignStatus,
    NewCampaign, RecipientOutcome, RecipientStatus,
};
use chronicle_domain::metadata::{Actor, CommandMetadata};
use chronicle_domain::tenant::TenantId;
use chronicle_domain::wallet::WalletError;
use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateContext, EventStore};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use tokio::sync::watch;
use tracing::Instrument;

use crate::contacts::unknown_contacts;
use crate::dispatch::{Appended, Commands};
use crate::error::{CommandError, DomainError};
use crate::keystore::KeyStore;
use crate::metering::{features, Metering};
use crate::outbound::{queue, require_sendable_template, Outgoing};
use crate::wallets::{WalletService, MAIN_WALLET};
use crate::workers::{Admission, LeaseClaim};

/// How the runner paces campaigns and how long reservations hold.
#[derive(Debug, Clone)]
pub struct CampaignConfig {
    /// Recipients per batch; one batch per [`CampaignConfig::tick`] per campaign.
    pub recipients_per_second: u32,
    /// The pause between two batches of one campaign (1 s: the rate is per second).
    pub tick: Duration,
    /// A campaign's reservation expires this many days after its start (or scheduling).
    pub reservation_days: i64,
}

impl Default for CampaignConfig {
    fn default() -> Self {
        Self {
            recipients_per_second: 20,
            tick: Duration::from_secs(1),
            reservation_days: 30,
        }
    }
}

fn refused(error: CampaignError) -> CommandError {
    CommandError::Rejected(DomainError::Campaign(error))
}

/// Loads the campaign `campaign_id` of `tenant` from the log (a default, uncreated state when
/// it has no events).
pub async fn load_campaign(pool: &PgPool, tenant: &TenantId, campaign_id: &str) -> Result<Campaign, CommandError> {
    let stream = tenant.stream_id(&campaign_local_id(campaign_id));
    // From the latest snapshot (the dispatcher snapshots campaigns every 100 events), so a
    // campaign with many outcomes loads in flat time.
    let store = PersistedEventStore::<_, Campaign>::new_snapshot_store(PostgresEventRepository::new(pool.clone()), 100)
        .with_upcasters(crate::repository::upcasters());
    let mut context = store
        .load_aggregate(&stream)
        .await
        .map_err(|e| CommandError::Unexpected(Box::new(e)))?;
    Ok(std::mem::take(context.aggregate()))
}

/// Campaign commands from people (GraphQL), with the wallet work they need.
#[derive(Debug, Clone)]
pub struct CampaignService {
    commands: Commands,
    keys: KeyStore,
    wallets: WalletService,
    config: CampaignConfig,
}

impl CampaignService {
    /// A service over `commands`, sealing template parameters with `keys`.
    pub fn new(commands: Commands, keys: KeyStore, config: CampaignConfig) -> Self {
        Self {
            wallets: WalletService::new(commands.clone()),
            commands,
            keys,
            config,
        }
    }

    /// The campaign's current state, from the log.
    pub async fn load(&self, tenant: &TenantId, campaign_id: &str) -> Result<Campaign, CommandError> {
        load_campaign(self.commands.pool(), tenant, campaign_id).await
    }

    /// Creates a draft (the recipients resolved by the caller). Refused before anything is
    /// recorded, after the aggregate's own refusals, when a recipient is not a contact of the
    /// tenant (`UNKNOWN_CONTACTS`, naming the first ones) or the template cannot be sent as
    /// named ([`require_sendable_template`]: `UNKNOWN_TEMPLATE`, also for a malformed name,
    /// `TEMPLATE_NOT_APPROVED`, `WRONG_PARAMETER_COUNT` for the variables).
    pub async fn create(&self, new: NewCampaign, metadata: &CommandMetadata) -> Result<Appended, CommandError> {
        let tenant = &metadata.tenant_id;
        // The campaign's own refusals first (blank fields, no or too many recipients, the id
        // taken by another campaign), decided on its present state without recording; a repeat
        // of a creation records nothing and needs no check.
        let mut scratch = self.load(tenant, &new.campaign_id).await?;
        let sink = cqrs_es::event_sink::EventSink::default();
        cqrs_es::Aggregate::handle(&mut scratch, CampaignCommand::CreateCampaign(new.clone()), &(), &sink)
            .await
            .map_err(refused)?;
        if !sink.collect().await.is_empty() {
            let mut unknown = unknown_contacts(self.commands.pool(), tenant, &new.recipients).await?;
            unknown.sort();
            unknown.dedup();
            if !unknown.is_empty() {
                return Err(refused(CampaignError::UnknownContacts {
                    count: unknown.len(),
                    ids: unknown.into_iter().take(5).collect(),
                }));
            }
            require_sendable_template(
                &self.commands,
                tenant,
                &new.template_name,
                &new.language,
                &new.variables,
            )
            .await?;
        }
        let local = campaign_local_id(&new.campaign_id);
        self.commands
            .campaign(&local, CampaignCommand::CreateCampaign(new), metadata)
            .await
    }

    /// Prices, reserves and schedules a draft (see the module docs). Answers the campaign
    /// after the command.
    pub async fn schedule(
        &self,
        campaign_id: &str,
        start_at: DateTime<Utc>,
        metadata: &CommandMetadata,
    ) -> Result<Campaign, CommandError> {
        let tenant = &metadata.tenant_id;
        let campaign = self.load(tenant, campaign_id).await?;
        if campaign.campaign_id().is_none() {
            return Err(refused(CampaignError::UnknownCampaign));
        }
        // The template may have been paused or disabled since the draft was made.
        if let Some(definition) = campaign.definition() {
            if campaign.status() == CampaignStatus::Draft {
                require_sendable_template(
                    &self.commands,
                    tenant,
                    &definition.template_name,
                    &definition.language,
                    &definition.variables,
                )
                .await?;
            }
        }
        let price = Metering::new(self.commands.clone())
            .price_of(tenant, features::BROADCAST_RECIPIENT)
            .await?
            .unwrap_or(0);
        let required = campaign
            .required_reservation(price)
            .ok_or_else(|| refused(CampaignError::AmountTooLarge))?;
        let now = Utc::now();
        let mut fresh = None;
        let reservation = if required <= 0 {
            None
        } else if campaign.status() != CampaignStatus::Draft {
            // A repeat: the domain compares it with the first schedule.
            campaign.reservation().map(|(r, _)| r.to_string())
        } else {
            self.wallets.ensure_main(metadata).await?;
            let wallet = self.wallets.load(tenant, MAIN_WALLET).await?;
            let reference = (1..=10_000u32)
                .map(|attempt| reservation_reference(campaign_id, attempt))
                .find(|r| !matches!(wallet.outcome(r), Some(Err(_))))
                .ok_or_else(|| CommandError::InvalidInput("too many refused scheduling attempts".into()))?;
            let expires_at = start_at.max(now) + chrono::Duration::days(self.config.reservation_days);
            self.wallets
                .reserve(
                    MAIN_WALLET,
                    &reference,
                    required,
                    expires_at,
                    features::BROADCAST_RECIPIENT,
                    metadata,
                )
                .await?;
            fresh = Some(reference.clone());
            Some(reference)
        };
        let command = CampaignCommand::ScheduleCampaign {
            start_at,
            unit_price: price,
            reservation,
            at: now,
        };
        let local = campaign_local_id(campaign_id);
        if let Err(e) = self.commands.campaign(&local, command, metadata).await {
            if let Some(reference) = fresh {
                self.release_unused(campaign_id, &reference, metadata).await;
            }
            return Err(e);
        }
        self.load(tenant, campaign_id).await
    }

    /// Releases a reservation made for a schedule the campaign refused, unless the campaign
    /// holds it after all (a concurrent identical schedule). Failures are logged: the
    /// reservation expires anyway.
    async fn release_unused(&self, campaign_id: &str, reference: &str, metadata: &CommandMetadata) {
        let holds = match self.load(&metadata.tenant_id, campaign_id).await {
            Ok(c) => c.reservation().is_some_and(|(r, _)| r == reference),
            Err(_) => true,
        };
        if !holds {
            let release = format!("{reference}:release");
            if let Err(e) = self.wallets.release(MAIN_WALLET, &release, reference, metadata).await {
                tracing::warn!(error = %e, "an unused campaign reservation could not be released; it will expire");
            }
        }
    }

    /// Pauses a scheduled or running campaign.
    pub async fn pause(
        &self,
        campaign_id: &str,
        by: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = CampaignCommand::PauseCampaign {
            by: by.to_string(),
            at: Utc::now(),
        };
        self.commands
            .campaign(&campaign_local_id(campaign_id), command, metadata)
            .await
    }

    /// Resumes a paused campaign.
    pub async fn resume(
        &self,
        campaign_id: &str,
        by: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let command = CampaignCommand::ResumeCampaign {
            by: by.to_string(),
            at: Utc::now(),
        };
        self.commands
            .campaign(&campaign_local_id(campaign_id), command, metadata)
            .await
    }

    /// Cancels a campaign and settles it at once (the rest of the reservation released); if
    /// settling fails, the runner settles it later.
    pub async fn cancel(&self, campaign_id: &str, by: &str, metadata: &CommandMetadata) -> Result<(), CommandError> {
        let command = CampaignCommand::CancelCampaign {
            by: by.to_string(),
            at: Utc::now(),
        };
        self.commands
            .campaign(&campaign_local_id(campaign_id), command, metadata)
            .await?;
        let runner = CampaignRunner::new(self.commands.clone(), self.keys.clone(), self.config.clone());
        if let Err(e) = runner.settle(campaign_id, metadata).await {
            tracing::warn!(error = %e, "a cancelled campaign could not be settled yet; the runner will");
        }
        Ok(())
    }
}

/// What one pass of the runner did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunnerPass {
    /// Outcomes recorded on campaigns.
    pub outcomes: usize,
    /// Campaigns started.
    pub started: usize,
    /// Batches run and dispatched.
    pub batches: usize,
    /// Messages queued on conversations.
    pub queued: usize,
    /// Recipients failed at dispatch (no conversation, opted out, template not approved).
    pub failed: usize,
    /// Finished campaigns settled.
    pub settled: usize,
    /// Campaigns with nothing to do until they change.
    pub idle: usize,
    /// Rows refused by an aggregate (kept with the reason).
    pub refused: usize,
    /// Rows left for a later pass after a transient failure.
    pub retry: usize,
}

impl RunnerPass {
    /// Rows worked in the pass.
    pub fn worked(&self) -> usize {
        self.outcomes + self.started + self.batches + self.settled + self.idle + self.refused + self.retry
    }

    fn add(&mut self, other: RunnerPass) {
        self.outcomes += other.outcomes;
        self.started += other.started;
        self.batches += other.batches;
        self.queued += other.queued;
        self.failed += other.failed;
        self.settled += other.settled;
        self.idle += other.idle;
        self.refused += other.refused;
        self.retry += other.retry;
    }
}

/// A claimed `campaign_runs` row.
#[derive(sqlx::FromRow)]
struct RunRow {
    #[sqlx(rename = "tenant_id")]
    tenant: String,
    campaign_id: String,
    last_position: i64,
}

/// A claimed `campaign_outcomes` row.
#[derive(sqlx::FromRow)]
struct OutcomeRow {
    #[sqlx(rename = "tenant_id")]
    tenant: String,
    campaign_id: String,
    recipient: String,
    outcome: String,
    reason: Option<String>,
    at: DateTime<Utc>,
    event_position: i64,
}

/// What a campaign needs next after a step.
enum Next {
    /// Nothing until the campaign changes.
    Idle,
    /// Look again at this time.
    At(DateTime<Utc>),
}

/// The campaign runner (see the module docs).
#[derive(Debug, Clone)]
pub struct CampaignRunner {
    pool: PgPool,
    commands: Commands,
    keys: KeyStore,
    wallets: WalletService,
    config: CampaignConfig,
    /// Campaign outcomes, then campaigns, from the projector's feeds.
    admissions: [Admission; 2],
}

fn metadata(tenant: &str, campaign_id: &str, position: i64) -> Result<CommandMetadata, CommandError> {
    Ok(CommandMetadata {
        tenant_id: TenantId::parse(tenant).map_err(|e| CommandError::InvalidInput(e.to_string()))?,
        actor: Actor::System {
            component: "campaign-runner".into(),
        },
        correlation_id: format!("campaign:{campaign_id}"),
        causation_id: format!("event:{position}"),
    })
}

impl CampaignRunner {
    /// A runner over `commands`' pool, sealing template parameters with `keys`.
    pub fn new(commands: Commands, keys: KeyStore, config: CampaignConfig) -> Self {
        Self {
            pool: commands.pool().clone(),
            wallets: WalletService::new(commands.clone()),
            commands,
            keys,
            config,
            admissions: [
                Admission::new(
                    "campaign_outcome_feed",
                    "INSERT INTO campaign_outcomes (tenant_id, campaign_id, recipient, outcome, reason, at, event_position)
                     SELECT tenant_id, campaign_id, recipient, outcome, reason, at, position FROM new ORDER BY position
                     ON CONFLICT (tenant_id, campaign_id, recipient, outcome) DO NOTHING",
                ),
                // A campaign with a new event is busy again; a status change is worked at once,
                // other events leave its rate-limit time standing.
                Admission::new(
                    "campaign_run_feed",
                    "INSERT INTO campaign_runs (tenant_id, campaign_id, status, start_at, last_position)
                     SELECT tenant_id, campaign_id, status, start_at, position FROM new ORDER BY position
                     ON CONFLICT (tenant_id, campaign_id) DO UPDATE
                        SET idle = false, status = excluded.status, last_position = excluded.last_position,
                            not_before = CASE WHEN (SELECT n.status_position FROM new n
                                                     WHERE n.tenant_id = excluded.tenant_id
                                                       AND n.campaign_id = excluded.campaign_id)
                                                   > campaign_runs.last_position
                                              THEN now() ELSE campaign_runs.not_before END
                      WHERE campaign_runs.last_position < excluded.last_position",
                ),
            ],
        }
    }

    /// Runs passes until `shutdown` turns true, waiting `poll` when idle.
    pub async fn run(self, poll: Duration, shutdown: watch::Receiver<bool>) {
        crate::workers::poll_until_shutdown("campaign-runner", poll, shutdown, || async {
            let pass = self.run_once(100).await?;
            if pass.worked() > pass.idle {
                tracing::info!(
                    outcomes = pass.outcomes,
                    started = pass.started,
                    batches = pass.batches,
                    queued = pass.queued,
                    failed = pass.failed,
                    settled = pass.settled,
                    refused = pass.refused,
                    retry = pass.retry,
                    "campaigns worked"
                );
            }
            Ok(pass.worked() > pass.idle + pass.retry)
        })
        .await;
    }

    /// Works every ready row until none is left (rows waiting for their next tick stay);
    /// returns the totals.
    pub async fn drain(&self) -> Result<RunnerPass, CommandError> {
        let mut total = RunnerPass::default();
        loop {
            let pass = self.run_once(100).await?;
            total.add(pass);
            if pass.worked() == pass.retry {
                return Ok(total);
            }
        }
    }

    /// One pass: copies what the feeds gained, then outcomes first, then campaigns (up to
    /// `limit` rows each).
    pub async fn run_once(&self, limit: i64) -> Result<RunnerPass, CommandError> {
        for admission in &self.admissions {
            admission.run(&self.pool).await?;
        }
        let mut pass = RunnerPass::default();
        for row in self.claim_outcomes(limit).await? {
            let span = tracing::info_span!("campaign.outcome", tenant.id = %row.tenant, campaign.id = %row.campaign_id, correlation.id = %format!("campaign:{}", row.campaign_id));
            match self.record_outcome(&row).instrument(span).await {
                Ok(()) => {
                    pass.outcomes += 1;
                    self.finish_outcome(&row, "done", None).await?;
                }
                Err(e @ (CommandError::Rejected(_) | CommandError::InvalidInput(_))) => {
                    tracing::warn!(tenant.id = %row.tenant, campaign.id = %row.campaign_id, reason = %e, "campaign outcome refused");
                    pass.refused += 1;
                    self.finish_outcome(&row, "refused", Some(e.to_string())).await?;
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %row.tenant, campaign.id = %row.campaign_id, reason = %e, "campaign outcome will be retried");
                    pass.retry += 1;
                    self.finish_outcome(&row, "new", Some(e.to_string())).await?;
                }
            }
        }
        for row in self.claim_runs(limit).await? {
            let span = tracing::info_span!("campaign.run", tenant.id = %row.tenant, campaign.id = %row.campaign_id, correlation.id = %format!("campaign:{}", row.campaign_id));
            let mut step = RunnerPass::default();
            match self.step(&row, &mut step).instrument(span).await {
                Ok(Next::Idle) => {
                    step.idle += usize::from(step.worked() == 0);
                    pass.add(step);
                    // Idle only if nothing happened to the campaign since the claim.
                    sqlx::query(
                        "UPDATE campaign_runs SET idle = (last_position = $3), not_before = now(), last_error = NULL
                          WHERE tenant_id = $1 AND campaign_id = $2",
                    )
                    .bind(&row.tenant)
                    .bind(&row.campaign_id)
                    .bind(row.last_position)
                    .execute(&self.pool)
                    .await?;
                }
                Ok(Next::At(at)) => {
                    pass.add(step);
                    self.release_run(&row, at, None).await?;
                }
                Err(e @ (CommandError::Rejected(_) | CommandError::InvalidInput(_))) => {
                    tracing::warn!(tenant.id = %row.tenant, campaign.id = %row.campaign_id, reason = %e, "campaign step refused; retried later");
                    pass.add(step);
                    pass.refused += 1;
                    self.release_run(&row, Utc::now() + chrono::Duration::seconds(60), Some(e.to_string()))
                        .await?;
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %row.tenant, campaign.id = %row.campaign_id, reason = %e, "campaign step will be retried");
                    pass.add(step);
                    pass.retry += 1;
                    // The lease (a minute) spaces the retry; the steps are idempotent.
                    sqlx::query("UPDATE campaign_runs SET last_error = $3 WHERE tenant_id = $1 AND campaign_id = $2")
                        .bind(&row.tenant)
                        .bind(&row.campaign_id)
                        .bind(e.to_string())
                        .execute(&self.pool)
                        .await?;
                }
            }
        }
        Ok(pass)
    }

    async fn claim_outcomes(&self, limit: i64) -> Result<Vec<OutcomeRow>, CommandError> {
        let mut rows: Vec<OutcomeRow> = LeaseClaim::new(
            "campaign_outcomes",
            "tenant_id, campaign_id, recipient, outcome",
            "state = 'new'",
            "event_position",
            "tenant_id, campaign_id, recipient, outcome, reason, at, event_position",
        )
        .fetch(&self.pool, limit)
        .await?;
        rows.sort_by_key(|r| r.event_position);
        Ok(rows)
    }

    async fn finish_outcome(&self, row: &OutcomeRow, state: &str, error: Option<String>) -> Result<(), CommandError> {
        let not_before = if state == "new" { "not_before" } else { "now()" };
        sqlx::query(&format!(
            "UPDATE campaign_outcomes SET state = $5, last_error = $6, not_before = {not_before}
              WHERE tenant_id = $1 AND campaign_id = $2 AND recipient = $3 AND outcome = $4"
        ))
        .bind(&row.tenant)
        .bind(&row.campaign_id)
        .bind(&row.recipient)
        .bind(&row.outcome)
        .bind(state)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_runs(&self, limit: i64) -> Result<Vec<RunRow>, CommandError> {
        Ok(LeaseClaim::new(
            "campaign_runs",
            "tenant_id, campaign_id",
            "NOT idle",
            "not_before",
            "tenant_id, campaign_id, last_position",
        )
        .fetch(&self.pool, limit)
        .await?)
    }

    async fn release_run(&self, row: &RunRow, at: DateTime<Utc>, error: Option<String>) -> Result<(), CommandError> {
        sqlx::query(
            "UPDATE campaign_runs SET not_before = $3, last_error = $4 WHERE tenant_id = $1 AND campaign_id = $2",
        )
        .bind(&row.tenant)
        .bind(&row.campaign_id)
        .bind(at)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records one outcome on its campaign; refunds a failed recipient.
    async fn record_outcome(&self, row: &OutcomeRow) -> Result<(), CommandError> {
        let metadata = metadata(&row.tenant, &row.campaign_id, row.event_position)?;
        let outcome = match row.outcome.as_str() {
            "sent" => RecipientOutcome::Sent,
            "delivered" => RecipientOutcome::Delivered,
            "read" => RecipientOutcome::Read,
            "failed" => RecipientOutcome::Failed {
                reason: row
                    .reason
                    .clone()
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| "failed".into()),
            },
            other => {
                return Err(CommandError::InvalidInput(format!(
                    "unknown campaign outcome {other:?}"
                )))
            }
        };
        let failed = matches!(outcome, RecipientOutcome::Failed { .. });
        let command = CampaignCommand::RecordRecipientOutcome {
            recipient: row.recipient.clone(),
            outcome,
            at: row.at,
        };
        self.commands
            .campaign(&campaign_local_id(&row.campaign_id), command, &metadata)
            .await?;
        if failed {
            let campaign = load_campaign(&self.pool, &metadata.tenant_id, &row.campaign_id).await?;
            self.refund(&campaign, &row.recipient, &metadata).await?;
        }
        Ok(())
    }

    /// Refunds a failed recipient's charge (once: the refund reference is remembered).
    async fn refund(
        &self,
        campaign: &Campaign,
        recipient: &str,
        metadata: &CommandMetadata,
    ) -> Result<(), CommandError> {
        if let Some(due) = campaign.refund_of(recipient) {
            self.wallets
                .refund(MAIN_WALLET, &due.reference, &due.capture, due.amount, metadata)
                .await?;
        }
        Ok(())
    }

    /// Does what the campaign needs next.
    async fn step(&self, row: &RunRow, pass: &mut RunnerPass) -> Result<Next, CommandError> {
        let metadata = metadata(&row.tenant, &row.campaign_id, row.last_position)?;
        let local = campaign_local_id(&row.campaign_id);
        let mut campaign = load_campaign(&self.pool, &metadata.tenant_id, &row.campaign_id).await?;
        let now = Utc::now();
        match campaign.status() {
            CampaignStatus::Draft => Ok(Next::Idle),
            CampaignStatus::Scheduled => match campaign.start_at() {
                Some(start_at) if start_at > now => Ok(Next::At(start_at)),
                _ => {
                    self.commands
                        .campaign(&local, CampaignCommand::StartCampaign { at: now }, &metadata)
                        .await?;
                    pass.started += 1;
                    Ok(Next::At(now))
                }
            },
            CampaignStatus::Running => {
                if campaign.batch_in_flight().is_none() {
                    if campaign.counts().pending == 0 {
                        // Waiting for the sender's outcomes.
                        return Ok(Next::Idle);
                    }
                    let size = self.config.recipients_per_second.max(1);
                    self.commands
                        .campaign(&local, CampaignCommand::RunBatch { size, at: now }, &metadata)
                        .await?;
                    campaign = load_campaign(&self.pool, &metadata.tenant_id, &row.campaign_id).await?;
                }
                self.dispatch(&campaign, &metadata, pass).await?;
                let tick = chrono::Duration::from_std(self.config.tick).unwrap_or(chrono::Duration::seconds(1));
                Ok(Next::At(now + tick))
            }
            CampaignStatus::Paused => {
                self.dispatch(&campaign, &metadata, pass).await?;
                Ok(Next::Idle)
            }
            CampaignStatus::Completed | CampaignStatus::Cancelled => {
                self.settle(&row.campaign_id, &metadata).await?;
                pass.settled += 1;
                Ok(Next::Idle)
            }
        }
    }

    /// Dispatches the batch in flight, if any: captures its charge, queues every queued
    /// recipient's message, fails (and refunds) those their conversation refuses, and marks
    /// the batch dispatched.
    async fn dispatch(
        &self,
        campaign: &Campaign,
        metadata: &CommandMetadata,
        pass: &mut RunnerPass,
    ) -> Result<(), CommandError> {
        let (Some(campaign_id), Some(definition)) = (campaign.campaign_id(), campaign.definition()) else {
            return Ok(());
        };
        let Some((batch, recipients)) = campaign.batch_in_flight() else {
            return Ok(());
        };
        self.capture(campaign, batch, metadata).await?;
        let local = campaign_local_id(campaign_id);
        for recipient in recipients {
            match campaign.recipient_status(recipient) {
                Some(RecipientStatus::Queued) => {}
                Some(RecipientStatus::Failed) => {
                    // Failed on an earlier try of this dispatch: make sure it was refunded.
                    self.refund(campaign, recipient, metadata).await?;
                    continue;
                }
                _ => continue,
            }
            let outgoing = Outgoing::Template {
                name: definition.template_name.clone(),
                language: definition.language.clone(),
                parameters: definition.variables.clone(),
                header: None,
            };
            let key = message_key(campaign_id, recipient);
            match queue(&self.commands, &self.keys, recipient, &key, outgoing, metadata).await {
                Ok(_) => pass.queued += 1,
                Err(e @ (CommandError::Rejected(_) | CommandError::InvalidInput(_))) => {
                    tracing::info!(reason = %e, "a campaign recipient cannot be sent the template; failed and refunded");
                    let command = CampaignCommand::RecordRecipientOutcome {
                        recipient: recipient.clone(),
                        outcome: RecipientOutcome::Failed {
                            reason: format!("{}: {e}", e.code()),
                        },
                        at: Utc::now(),
                    };
                    self.commands.campaign(&local, command, metadata).await?;
                    let after = load_campaign(&self.pool, &metadata.tenant_id, campaign_id).await?;
                    self.refund(&after, recipient, metadata).await?;
                    pass.failed += 1;
                }
                Err(e) => return Err(e),
            }
        }
        self.commands
            .campaign(
                &local,
                CampaignCommand::MarkBatchDispatched { batch, at: Utc::now() },
                metadata,
            )
            .await?;
        pass.batches += 1;
        Ok(())
    }

    /// Captures batch `batch`'s charge from the reservation (once: the capture reference is
    /// remembered).
    async fn capture(&self, campaign: &Campaign, batch: u32, metadata: &CommandMetadata) -> Result<(), CommandError> {
        let Some((reservation, _)) = campaign.reservation() else {
            return Ok(());
        };
        let captures = campaign.captures();
        let Some((_, Some(capture), charged)) = captures.iter().find(|(n, _, _)| *n == batch) else {
            return Ok(());
        };
        self.wallets
            .capture(MAIN_WALLET, capture, reservation, *charged, metadata)
            .await?;
        Ok(())
    }

    /// Settles a finished campaign: dispatches a batch left in flight, confirms every batch's
    /// capture, and releases what is left of the reservation.
    pub async fn settle(&self, campaign_id: &str, metadata: &CommandMetadata) -> Result<(), CommandError> {
        let mut campaign = load_campaign(&self.pool, &metadata.tenant_id, campaign_id).await?;
        if campaign.batch_in_flight().is_some() {
            let mut pass = RunnerPass::default();
            self.dispatch(&campaign, metadata, &mut pass).await?;
            campaign = load_campaign(&self.pool, &metadata.tenant_id, campaign_id).await?;
        }
        for (batch, _, _) in campaign.captures() {
            self.capture(&campaign, batch, metadata).await?;
        }
        if let (Some((release, _)), Some((reservation, _))) = (campaign.release_due(), campaign.reservation()) {
            match self.wallets.release(MAIN_WALLET, &release, reservation, metadata).await {
                // Expired meanwhile: the wallet returned the rest already.
                Ok(_) | Err(CommandError::Rejected(DomainError::Wallet(WalletError::ReservationClosed { .. }))) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
