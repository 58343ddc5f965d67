//! Warranty claims on the write side: filing against the warranty's terms as they stand in the
//! log, reviewing, deciding and resolving, over the `WarrantyClaim` aggregate.

use super::*;

impl ServiceDesk {
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
}
