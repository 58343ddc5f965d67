//! Warranties on the write side: one per installed component with a warranty period,
//! registered when its installation is commissioned (by the process manager,
//! [`super::process`]), over the `Warranty` aggregate. Claims against them are in
//! [`super::claims`].

use super::*;

impl InstallationService {
    /// Registers a warranty for every component of a commissioned installation that has a
    /// warranty period, from the commissioning time (one stream per component: a repeat records
    /// nothing); returns how many were sent.
    pub async fn register_warranties(
        &self,
        installation_id: &str,
        customer_id: &str,
        components: &[Component],
        commissioned_at: DateTime<Utc>,
        metadata: &CommandMetadata,
    ) -> Result<usize, CommandError> {
        let mut registered = 0;
        for component in components.iter().filter(|c| c.warranty_months > 0) {
            let command = WarrantyCommand::Register(RegisterWarranty {
                installation_id: installation_id.to_string(),
                serial: component.serial.clone(),
                kind: component.kind.clone(),
                customer_id: customer_id.to_string(),
                warranty_months: component.warranty_months,
                starts_at: commissioned_at,
                by: by_of(metadata),
                at: commissioned_at,
            });
            let local_id = warranty_local_id(installation_id, &component.serial);
            self.commands().warranty(&local_id, command, metadata).await?;
            registered += 1;
        }
        Ok(registered)
    }
}
