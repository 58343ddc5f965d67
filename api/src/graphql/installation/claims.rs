//! Warranty claims: `warrantyClaims(status, warrantyId)`; file, review, decide and resolve a
//! claim.

use super::*;

/// A claim's status: `SUBMITTED → UNDER_REVIEW → APPROVED | REJECTED → RESOLVED`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ClaimStatus {
    /// Filed, waiting for a review to start.
    Submitted,
    /// A review has started; waiting for the decision.
    UnderReview,
    /// The review approved the claim; waiting for its resolution.
    Approved,
    /// The review rejected the claim; waiting for its resolution.
    Rejected,
    /// Resolved after the decision (final).
    Resolved,
}

impl ClaimStatus {
    const ALL: [Self; 5] = [
        Self::Submitted,
        Self::UnderReview,
        Self::Approved,
        Self::Rejected,
        Self::Resolved,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::UnderReview => "under_review",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Resolved => "resolved",
        }
    }

    pub(super) fn parse(s: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or(Self::Submitted)
    }
}

/// A review's decision.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ClaimDecisionInput {
    /// Approve the claim (it moves to `APPROVED`).
    Approved,
    /// Reject the claim (it moves to `REJECTED`).
    Rejected,
}

/// A warranty claim (its description, notes and resolution stay sealed; read model: a moment
/// behind the log).
#[derive(SimpleObject)]
pub struct WarrantyClaim {
    /// The claim's id, `claim_…`.
    pub id: String,
    /// The warranty it was filed under (`warranty_<installation id>/<serial>`).
    pub warranty_id: String,
    /// The installation of the component (`isr_…`).
    pub installation_id: String,
    /// The component's serial number.
    pub serial: String,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// The exclusive end of the warranty's period when the claim was filed (RFC 3339).
    pub warranty_ends_at: DateTime<Utc>,
    /// Where the claim stands.
    pub status: ClaimStatus,
    /// When the claim was filed (RFC 3339).
    pub filed_at: DateTime<Utc>,
    /// Who filed it: a user id, `api_key:<key id>` or a system component.
    pub filed_by: String,
    /// When the review started (RFC 3339); null while `SUBMITTED`.
    pub review_started_at: Option<DateTime<Utc>>,
    /// When it was approved or rejected (RFC 3339); null until decided.
    pub decided_at: Option<DateTime<Utc>>,
    /// Who decided it (as `filedBy`); null until decided.
    pub decided_by: Option<String>,
    /// When it was resolved (RFC 3339); null until resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

impl From<ClaimRow> for WarrantyClaim {
    fn from(r: ClaimRow) -> Self {
        Self {
            id: r.claim_id,
            warranty_id: r.warranty_id,
            installation_id: r.installation_id,
            serial: r.serial,
            customer_id: r.customer_id,
            warranty_ends_at: r.warranty_ends_at,
            status: ClaimStatus::parse(&r.status),
            filed_at: r.filed_at,
            filed_by: r.filed_by,
            review_started_at: r.review_started_at,
            decided_at: r.decided_at,
            decided_by: r.decided_by,
            resolved_at: r.resolved_at,
        }
    }
}

/// A claim to file.
#[derive(InputObject)]
pub struct FileWarrantyClaimInput {
    /// The warranty to claim under (`warranty_<installation id>/<serial>`).
    pub warranty_id: String,
    /// What is wrong (sealed before it is stored; 1 to 4000 characters, not blank).
    pub description: String,
    /// The caller's id for the claim (`claim_` then 1 to 100 of `A-Za-z0-9_-`, else
    /// `BAD_CLAIM_ID`): repeating a filing with it records nothing. Generated when absent.
    pub claim_id: Option<String>,
}

#[derive(Default)]
pub struct ClaimsQuery;

#[Object]
impl ClaimsQuery {
    /// The caller's tenant's warranty claims, latest filed first, a page at a time. Readable by
    /// everyone but integrators (`FORBIDDEN`).
    async fn warranty_claims(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only claims with this status; null for every status.")] status: Option<ClaimStatus>,
        #[graphql(
            desc = "Only claims under this warranty (`warranty_<installation id>/<serial>`); null for all warranties."
        )]
        warranty_id: Option<String>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page (opaque); null for the first page.")]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, WarrantyClaim>> {
        let caller = allowed(ctx, Permission::ReadAfterSales, "read warranty claims").gql()?;
        let first = page_size(first, 100).gql()?;
        let page = read::list_claims(
            pool(ctx).gql()?,
            &caller.tenant,
            status.map(ClaimStatus::as_str),
            warranty_id.as_deref(),
            first,
            after.as_deref(),
        )
        .await;
        connection(after.is_some(), page, WarrantyClaim::from)
    }
}

#[derive(Default)]
pub struct ClaimsMutation;

#[Object]
impl ClaimsMutation {
    /// Files a claim under a warranty: refused with `WARRANTY_NOT_ACTIVE` or
    /// `OUTSIDE_WARRANTY_PERIOD` when the warranty does not cover it now.
    ///
    /// Owners, admins and agents (else `FORBIDDEN`). `WARRANTY_NOT_ACTIVE` also answers an
    /// unknown warranty id; other refusals: `BAD_CLAIM_ID`, `INVALID_INPUT` (blank or over-long
    /// description). Answers the claim's id; the claim starts `SUBMITTED`.
    async fn file_warranty_claim(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The warranty, the description and optionally the claim's own id.")]
        input: FileWarrantyClaimInput,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::FrontDesk, "file warranty claims").gql()?;
            let id = local_id("claim_", input.claim_id, "BAD_CLAIM_ID").gql()?;
            desk(ctx)
                .gql()?
                .file_claim(
                    &metadata(ctx, caller),
                    &id,
                    &input.warranty_id,
                    &input.description,
                    Utc::now(),
                )
                .await
                .gql()?;
            Ok(Receipt::new(id))
        })
        .await
    }

    /// Starts the review of a submitted claim (`SUBMITTED → UNDER_REVIEW`; a claim already under
    /// review records nothing). Owners and admins (else `FORBIDDEN`); refused with
    /// `BAD_CLAIM_ID`, `UNKNOWN_CLAIM` or `CLAIM_MOVE_NOT_ALLOWED`. Answers the claim's id.
    async fn start_warranty_claim_review(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The claim's id (`claim_…`).")] claim_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageAfterSales, "review warranty claims").gql()?;
            let id = self::claim_id(claim_id).gql()?;
            desk(ctx)
                .gql()?
                .review_claim(&metadata(ctx, caller), &id, Utc::now())
                .await
                .gql()?;
            Ok(Receipt::new(id))
        })
        .await
    }

    /// Decides a claim under review, with an optional note (sealed).
    ///
    /// Owners and admins (else `FORBIDDEN`). Repeating the same decision records nothing;
    /// refused with `BAD_CLAIM_ID`, `UNKNOWN_CLAIM`, `CLAIM_MOVE_NOT_ALLOWED` (not under review)
    /// or `INVALID_INPUT` (blank or over-long note). Answers the claim's id.
    async fn decide_warranty_claim(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The claim's id (`claim_…`).")] claim_id: String,
        #[graphql(desc = "Approve or reject.")] decision: ClaimDecisionInput,
        #[graphql(desc = "Why, for the record (sealed; 1 to 4000 characters, not blank); null for no note.")]
        note: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageAfterSales, "decide warranty claims").gql()?;
            let id = self::claim_id(claim_id).gql()?;
            let decision = match decision {
                ClaimDecisionInput::Approved => ClaimDecision::Approved,
                ClaimDecisionInput::Rejected => ClaimDecision::Rejected,
            };
            desk(ctx)
                .gql()?
                .decide_claim(&metadata(ctx, caller), &id, decision, note.as_deref(), Utc::now())
                .await
                .gql()?;
            Ok(Receipt::new(id))
        })
        .await
    }

    /// Resolves a decided claim (the resolution is sealed).
    ///
    /// `APPROVED | REJECTED → RESOLVED`; an already resolved claim records nothing. Owners and
    /// admins (else `FORBIDDEN`); refused with `BAD_CLAIM_ID`, `UNKNOWN_CLAIM`,
    /// `CLAIM_MOVE_NOT_ALLOWED` (not decided yet) or `INVALID_INPUT`. Answers the claim's id.
    async fn resolve_warranty_claim(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The claim's id (`claim_…`).")] claim_id: String,
        #[graphql(desc = "What was done (sealed; 1 to 4000 characters, not blank).")] resolution: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageAfterSales, "resolve warranty claims").gql()?;
            let id = self::claim_id(claim_id).gql()?;
            desk(ctx)
                .gql()?
                .resolve_claim(&metadata(ctx, caller), &id, &resolution, Utc::now())
                .await
                .gql()?;
            Ok(Receipt::new(id))
        })
        .await
    }
}
