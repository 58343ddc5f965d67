//! Technician payouts: `payouts` with totals; `approvePayout`, `grantQualityBonus`,
//! `markPayoutPaid`.

use super::*;

/// Where a payout stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PayoutStatus {
    /// Computed at commissioning, awaiting approval; a quality bonus may still be granted.
    Pending,
    /// Approved by someone it does not pay; awaiting payment.
    Approved,
    /// Paid under finance's reference; final.
    Paid,
}

impl PayoutStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Paid => "paid",
        }
    }

    pub(super) fn parse(name: &str) -> Self {
        match name {
            "approved" => Self::Approved,
            "paid" => Self::Paid,
            _ => Self::Pending,
        }
    }
}

/// A technician payout.
#[derive(SimpleObject)]
pub struct Payout {
    /// The payout id, `payout_<uuid>` (one per installation).
    pub id: String,
    /// The commissioned installation it pays for (`isr_…`).
    pub installation_id: String,
    /// User ids of the technicians it pays (the team at commissioning).
    pub technician_ids: Vec<String>,
    /// The installation's system size in watts, which decides the tier.
    pub system_size_w: i64,
    /// small, medium, large, commercial.
    pub tier: String,
    /// The tier's base amount in minor units of `currency`: small 5000, medium 8000, large 12000,
    /// commercial 20000.
    pub base_minor: i64,
    /// The quality bonus in minor units of `currency`; 0 when none was granted.
    pub bonus_minor: i64,
    /// What is paid: `baseMinor + bonusMinor`, in minor units of `currency`.
    pub amount_minor: i64,
    /// ISO 4217 code: the installation's order's currency (a configured default when the order is
    /// not in the log).
    pub currency: String,
    /// Where the payout stands.
    pub status: PayoutStatus,
    /// When it was computed, after commissioning (RFC 3339, UTC).
    pub computed_at: DateTime<Utc>,
    /// When it was approved (RFC 3339, UTC); null while pending.
    pub approved_at: Option<DateTime<Utc>>,
    /// The user id of who approved it; null while pending.
    pub approved_by: Option<String>,
    /// When it was marked paid (RFC 3339, UTC); null until then.
    pub paid_at: Option<DateTime<Utc>>,
    /// Finance's reference for the payment; null until paid.
    pub paid_reference: Option<String>,
}

impl Payout {
    fn from_row(row: PayoutRow) -> Self {
        Self {
            id: row.payout_id,
            installation_id: row.installation_id,
            technician_ids: row.technician_ids,
            system_size_w: row.system_size_w,
            tier: row.tier,
            base_minor: row.base_minor,
            bonus_minor: row.bonus_minor,
            amount_minor: row.amount_minor,
            currency: row.currency,
            status: PayoutStatus::parse(&row.status),
            computed_at: row.computed_at,
            approved_at: row.approved_at,
            approved_by: row.approved_by,
            paid_at: row.paid_at,
            paid_reference: row.paid_reference,
        }
    }
}

/// The count and total of payouts with a status, per currency.
#[derive(SimpleObject)]
pub struct PayoutTotal {
    /// The status totalled.
    pub status: PayoutStatus,
    /// The ISO 4217 currency totalled.
    pub currency: String,
    /// How many payouts have this status and currency (all of them, not only the page listed).
    pub count: i64,
    /// The sum of their `amountMinor`, in minor units of `currency`.
    pub total_minor: i64,
}

/// What a page of payouts adds to its connection.
#[derive(SimpleObject)]
pub struct PayoutTotals {
    /// Counts and totals per status and currency, over every payout the filter keeps (not only
    /// this page).
    pub totals: Vec<PayoutTotal>,
}

#[derive(Default)]
pub struct PayoutsQuery;

#[Object]
impl PayoutsQuery {
    /// Payouts (of one status, or all), latest computed first, a page at a time, with their
    /// counts and totals per status and currency (`totals`, over every payout, not only the
    /// page). Owner, admin, finance, auditor; a technician reads the payouts that pay them (list
    /// and totals), no one else's.
    async fn payouts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only payouts with this status, in the list and the totals; every status when null.")] status: Option<PayoutStatus>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page (opaque); null for the first page.")]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Payout, PayoutTotals>> {
        // A technician sees their own payouts (narrowed by the permission table); the other
        // roles that read payouts see every one.
        let caller = allowed(ctx, Permission::ReadPayouts, "read payouts").gql()?;
        let technician = (caller.role == Role::Technician).then_some(caller.user_id.as_str());
        let first = page_size(first, 100).gql()?;
        let pool = pool(ctx).gql()?;
        let status = status.map(PayoutStatus::as_str);
        let page = read::list_payouts(pool, &caller.tenant, status, technician, first, after.as_deref()).await;
        let totals = read::payout_totals(pool, &caller.tenant, status, technician)
            .await
            .map_err(ApiError::from)
            .gql()?;
        let totals = PayoutTotals {
            totals: totals
                .into_iter()
                .map(|t| PayoutTotal {
                    status: PayoutStatus::parse(&t.status),
                    currency: t.currency,
                    count: t.count,
                    total_minor: t.total_minor,
                })
                .collect(),
        };
        connection_with(after.is_some(), page, Payout::from_row, totals)
    }
}

#[derive(Default)]
pub struct PayoutsMutation;

#[Object]
impl PayoutsMutation {
    /// Approves a pending payout (not by a technician it pays). Owner, admin, finance.
    /// Refusals: `SELF_APPROVAL`, `UNKNOWN_PAYOUT`. An approved or paid payout is left as it is.
    /// Returns a receipt.
    async fn approve_payout(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The payout (`payout_…`).")] payout_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::HandleMoney, "approve payouts").gql()?;
            answer(
                service(ctx)
                    .gql()?
                    .approve_payout(&payout_id, &metadata(ctx, caller))
                    .await,
            )?;
            Ok(Receipt::new(payout_id))
        })
        .await
    }

    /// Grants (or replaces) the quality bonus of a pending payout, in minor units of its
    /// currency (owner and admin; not a technician it pays). Refused once approved
    /// (`PAYOUT_NOT_PENDING`), for zero or above the maximum of 100000
    /// (`QUALITY_BONUS_OUT_OF_RANGE`); also `SELF_GRANT`, `UNKNOWN_PAYOUT`, `INVALID_INPUT`
    /// (negative). The same bonus again changes nothing. Returns a receipt.
    async fn grant_quality_bonus(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The payout (`payout_…`).")] payout_id: String,
        #[graphql(
            desc = "The bonus in minor units of the payout's currency, 1 to 100000; it replaces any earlier bonus."
        )]
        amount_minor: i64,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::GrantQualityBonuses, "grant quality bonuses").gql()?;
            let amount_minor = non_negative_i64(amount_minor, "amountMinor").gql()?;
            answer(
                service(ctx)
                    .gql()?
                    .grant_quality_bonus(&payout_id, amount_minor, &metadata(ctx, caller))
                    .await,
            )?;
            Ok(Receipt::new(payout_id))
        })
        .await
    }

    /// Records that an approved payout was paid under finance's reference. Owner, admin,
    /// finance. Refusals: `PAYMENT_REQUIRES_APPROVAL`, `ALREADY_PAID` (under another reference),
    /// `BLANK_FIELD`, `UNKNOWN_PAYOUT`. The same reference again changes nothing. Returns a receipt.
    async fn mark_payout_paid(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The payout (`payout_…`).")] payout_id: String,
        #[graphql(desc = "Finance's reference for the payment (a bank or mobile-money transaction); not blank.")]
        reference: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::HandleMoney, "pay payouts").gql()?;
            answer(
                service(ctx)
                    .gql()?
                    .mark_payout_paid(&payout_id, &reference, &metadata(ctx, caller))
                    .await,
            )?;
            Ok(Receipt::new(payout_id))
        })
        .await
    }
}
