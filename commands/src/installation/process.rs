//! The area's process managers and sweeper: the installation worker (a paid order opens its
//! installation; a commissioned one computes its payout, registers its warranties and tells the
//! customer) and the service sweeper (SLA breaches, automatic renewals). See the module docs of
//! [`super`].

use super::*;

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
#[derive(sqlx::FromRow)]
struct OpeningRow {
    #[sqlx(rename = "tenant_id")]
    tenant: String,
    order_id: String,
    customer_id: String,
    #[sqlx(rename = "installable_items")]
    items: serde_json::Value,
    attempts: i32,
    event_position: i64,
}

/// A claimed row of `installation_commissionings`.
#[derive(sqlx::FromRow)]
struct CommissioningRow {
    #[sqlx(rename = "tenant_id")]
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
        let mut rows: Vec<OpeningRow> = LeaseClaim::new(
            "installation_openings",
            "tenant_id, order_id",
            "state = 'new'",
            "event_position",
            "tenant_id, order_id, customer_id, installable_items, attempts, event_position",
        )
        .fetch(&self.pool, self.config.batch_size)
        .await?;
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
        // The order's site address, as sealed when it was placed (the same customer's key).
        match order_site_address(&self.pool, &metadata.tenant_id, &row.order_id).await? {
            Some(sealed) => {
                self.service
                    .open_sealed(&installation_id, request, sealed, &metadata)
                    .await?
            }
            None => {
                self.service
                    .open_installation_as(&installation_id, request, &metadata)
                    .await?
            }
        };
        Ok(installation_id)
    }

    async fn claim_commissionings(&self) -> Result<Vec<CommissioningRow>, CommandError> {
        let mut rows: Vec<CommissioningRow> = LeaseClaim::new(
            "installation_commissionings",
            "tenant_id, installation_id",
            "(payout_state = 'new' OR warranty_state = 'new' OR notify_state = 'new')",
            "event_position",
            "tenant_id, installation_id, customer_id, order_id, system_size_w, components, technicians, payout_state, warranty_state, notify_state, commissioned_at, attempts, event_position",
        )
        .fetch(&self.pool, self.config.batch_size)
        .await?;
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
                header: None,
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

    /// Registers the row's warranties (see [`InstallationService::register_warranties`]).
    async fn register_warranties(
        &self,
        row: &CommissioningRow,
        metadata: &CommandMetadata,
    ) -> Result<usize, CommandError> {
        let components: Vec<Component> =
            serde_json::from_value(row.components.clone()).map_err(|e| CommandError::InvalidInput(e.to_string()))?;
        self.service
            .register_warranties(
                &row.installation_id,
                &row.customer_id,
                &components,
                row.commissioned_at,
                metadata,
            )
            .await
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

fn sweeper_metadata(tenant: &str, correlation: String) -> Result<CommandMetadata, CommandError> {
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
                let metadata = sweeper_metadata(&tenant, correlation)?;
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
                let metadata = sweeper_metadata(&tenant, correlation)?;
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
