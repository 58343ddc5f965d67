//! Installation records on the write side: opening, the team, the schedule, the work on site
//! (checklist, photos, components), commissioning, activation and decommissioning, over the
//! `InstallationRecord` aggregate.

use super::*;

/// The condition that the installation stream `$4` never recorded the serial `$2` (a claim
/// the log does not back), shared by giving a claim back and taking a stale one over.
const NOT_RECORDED: &str = "NOT EXISTS (SELECT 1 FROM events
                                 WHERE aggregate_type = 'InstallationRecord' AND aggregate_id = $4
                                   AND event_type = 'ComponentInstalled'
                                   AND payload -> 'ComponentInstalled' ->> 'serial' = $2)";

/// How long a serial claim whose installation never recorded the serial holds against other
/// installations (see [`InstallationService::install_component`]).
pub const STALE_SERIAL_CLAIM: std::time::Duration = std::time::Duration::from_secs(600);

impl InstallationService {
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
        self.open_sealed(installation_id, request, site_address, metadata).await
    }

    /// Opens the installation `installation_id` with a site address already sealed under the
    /// customer's key (an order's).
    pub(super) async fn open_sealed(
        &self,
        installation_id: &str,
        request: OpenRequest,
        site_address: Envelope,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
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

    /// Corrects what an installation was opened with: the site address (sealed under the
    /// customer's key; any time before decommissioning) and/or the system size in watts (before
    /// commissioning), with a reason (sealed; not blank, at most [`MAX_TEXT_CHARS`]
    /// characters). The size it already has records nothing.
    pub async fn correct_installation(
        &self,
        installation_id: &str,
        site_address: Option<&str>,
        system_size_w: Option<u32>,
        reason: &str,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let refuse = |e: InstallationError| CommandError::Rejected(DomainError::Installation(e));
        if site_address.is_none() && system_size_w.is_none() {
            return Err(refuse(InstallationError::NothingToCorrect));
        }
        if reason.trim().is_empty() {
            return Err(refuse(InstallationError::Blank { field: "reason" }));
        }
        text(reason, "reason")?;
        if let Some(address) = site_address {
            if address.trim().is_empty() {
                return Err(refuse(InstallationError::Blank { field: "site address" }));
            }
            text(address, "site address")?;
        }
        let customer = self.installation_customer_or_refuse(metadata, installation_id).await?;
        // The address it already has is no change: a retried correction records nothing.
        let site_address = match site_address.map(str::trim) {
            Some(address) if self.current_site_address(metadata, installation_id, &customer).await? != address => {
                Some(self.seal_for(&metadata.tenant_id, &customer, address).await?)
            }
            _ => None,
        };
        // Only the address was asked for, and it is the one it has: a retry, nothing to record.
        if site_address.is_none() && system_size_w.is_none() {
            return Ok(Appended {
                stream: metadata.tenant_id.stream_id(installation_id),
                positions: Vec::new(),
            });
        }
        let reason = self.seal_for(&metadata.tenant_id, &customer, reason.trim()).await?;
        let command = InstallationCommand::CorrectDetails {
            site_address,
            system_size_w,
            reason,
            by: by_of(metadata),
            at: Utc::now(),
        };
        self.isr(installation_id, command, metadata).await
    }

    /// The installation's site address now (opened or corrected last), in the clear; empty when
    /// it has none.
    async fn current_site_address(
        &self,
        metadata: &CommandMetadata,
        installation_id: &str,
        customer: &str,
    ) -> Result<String, CommandError> {
        let sealed: Option<serde_json::Value> = sqlx::query_scalar(
            "SELECT payload::jsonb -> event_type -> 'site_address' FROM events
              WHERE aggregate_type = 'InstallationRecord' AND aggregate_id = $1
                AND event_type IN ('InstallationOpened', 'InstallationDetailsCorrected')
                AND jsonb_typeof(payload::jsonb -> event_type -> 'site_address') = 'object'
              ORDER BY sequence DESC LIMIT 1",
        )
        .bind(metadata.tenant_id.stream_id(installation_id))
        .fetch_optional(self.commands.pool())
        .await?;
        let Some(sealed) = sealed else {
            return Ok(String::new());
        };
        let envelope: Envelope = serde_json::from_value(sealed).map_err(|e| CommandError::Unexpected(Box::new(e)))?;
        let key = self.keys.key_for(&metadata.tenant_id, customer).await?;
        Ok(key
            .open(&metadata.tenant_id, customer, &envelope)
            .map(|a| a.trim().to_string())
            .unwrap_or_default())
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

    /// Records a serialized component installed. A serial is installed on one installation of
    /// a tenant (one component, one active warranty): the write side claims it in
    /// `component_serials` (migration ..88) before the command, and a serial claimed by another
    /// installation is refused with `SERIAL_ON_ANOTHER_INSTALLATION`. A claim whose command
    /// was then refused is given back.
    pub async fn install_component(
        &self,
        installation_id: &str,
        serial: &str,
        kind: &str,
        warranty_months: u32,
        metadata: &CommandMetadata,
    ) -> Result<Appended, CommandError> {
        let tenant = &metadata.tenant_id;
        let serial = serial.trim();
        let pool = self.commands.pool();
        let fresh_claim = if serial.is_empty() {
            false
        } else {
            // One statement that always answers the holder: a conflicting claim is locked and
            // returned (`DO UPDATE` of nothing), `fresh` when this call made it.
            let (holder, fresh): (String, bool) = sqlx::query_as(
                "INSERT INTO component_serials AS c (tenant_id, serial, installation_id) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant_id, serial) DO UPDATE SET serial = c.serial
                 RETURNING c.installation_id, (xmax = 0)",
            )
            .bind(tenant.as_str())
            .bind(serial)
            .bind(installation_id)
            .fetch_one(pool)
            .await?;
            if holder == installation_id {
                fresh
            } else if self
                .take_over_stale_claim(tenant, serial, &holder, installation_id)
                .await?
            {
                true
            } else {
                return Err(CommandError::Rejected(
                    InstallationError::SerialOnAnotherInstallation {
                        serial: serial.to_string(),
                        installation_id: holder,
                    }
                    .into(),
                ));
            }
        };
        let command = InstallationCommand::InstallComponent {
            serial: serial.to_string(),
            kind: kind.to_string(),
            warranty_months,
            by: by_of(metadata),
            at: Utc::now(),
        };
        let outcome = self.isr(installation_id, command, metadata).await;
        if fresh_claim && matches!(outcome, Err(CommandError::Rejected(_) | CommandError::Conflict)) {
            // Nothing was installed by this call: the serial is free again, unless the log
            // holds it on this installation (a concurrent call installed it meanwhile).
            let given_back = sqlx::query(&format!(
                "DELETE FROM component_serials
                  WHERE tenant_id = $1 AND serial = $2 AND installation_id = $3 AND {NOT_RECORDED}"
            ))
            .bind(tenant.as_str())
            .bind(serial)
            .bind(installation_id)
            .bind(tenant.stream_id(installation_id))
            .execute(pool)
            .await;
            if let Err(e) = given_back {
                // The refusal is the answer; a claim left behind is taken over once stale.
                tracing::error!(error = %e, "a serial claim could not be given back");
            }
        }
        outcome
    }

    /// Takes over a claim another installation holds without having recorded the serial, once
    /// the claim is older than [`STALE_SERIAL_CLAIM`] (its command was lost between the claim
    /// and the append: a lost connection, a dropped request). Answers whether it did.
    async fn take_over_stale_claim(
        &self,
        tenant: &TenantId,
        serial: &str,
        holder: &str,
        installation_id: &str,
    ) -> Result<bool, CommandError> {
        let taken = sqlx::query(&format!(
            "UPDATE component_serials SET installation_id = $5, claimed_at = now()
              WHERE tenant_id = $1 AND serial = $2 AND installation_id = $3
                AND claimed_at < now() - make_interval(secs => $6) AND {NOT_RECORDED}"
        ))
        .bind(tenant.as_str())
        .bind(serial)
        .bind(holder)
        .bind(tenant.stream_id(holder))
        .bind(installation_id)
        .bind(STALE_SERIAL_CLAIM.as_secs_f64())
        .execute(self.commands.pool())
        .await?;
        Ok(taken.rows_affected() == 1)
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
}
