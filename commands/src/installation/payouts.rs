//! Technician payouts on the write side: approval, the quality bonus and payment, over the
//! `Payout` aggregate (computed by the process manager, [`super::process`]).

use super::*;

impl InstallationService {
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
