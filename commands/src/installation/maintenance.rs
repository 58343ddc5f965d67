//! Maintenance contracts on the write side: starting, renewing (from the old end, idempotent by
//! reference), switching auto-renewal and cancelling, over the `MaintenanceContract` aggregate;
//! lapsed auto-renewing contracts are renewed by the sweeper ([`super::process`]).

use super::*;

impl ServiceDesk {
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
