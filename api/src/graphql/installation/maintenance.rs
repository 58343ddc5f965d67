//! Maintenance contracts: `maintenanceContracts(status, customerId)`; start, renew, switch
//! auto-renewal of and cancel a contract.

use super::*;

/// A maintenance contract's status (lapsed: `endsAt` in the past).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ContractStatus {
    /// Not cancelled (it may still have lapsed: compare `endsAt`).
    Active,
    /// Cancelled: no longer renewed or changed.
    Cancelled,
}

impl ContractStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A maintenance contract (read model: a moment behind the log).
#[derive(SimpleObject)]
pub struct MaintenanceContract {
    /// The contract's id, `mc_…`.
    pub id: String,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// The installation maintained (`isr_…`); null when the contract names none.
    pub installation_id: Option<String>,
    /// Start of the first term (RFC 3339).
    pub starts_at: DateTime<Utc>,
    /// End of the current term (RFC 3339); each renewal moves it forward from the old end.
    pub ends_at: DateTime<Utc>,
    /// The length of the first term in calendar months (renewals may use other terms).
    pub term_months: i32,
    /// Integer minor units.
    pub annual_value_minor: i64,
    /// ISO 4217 currency code of `annualValueMinor` (e.g. `USD`).
    pub currency: String,
    /// Whether the contract renews itself for 12 months once `endsAt` passes (always false once
    /// cancelled).
    pub auto_renew: bool,
    /// `ACTIVE` or `CANCELLED`.
    pub status: ContractStatus,
    /// How many renewals were recorded.
    pub renewals: i32,
    /// The reference of the latest renewal (an invoice or payment reference, or
    /// `auto:<old end>` for an automatic one); null if never renewed.
    pub last_renewal_reference: Option<String>,
    /// When the latest renewal was recorded (RFC 3339); null if never renewed.
    pub renewed_at: Option<DateTime<Utc>>,
    /// When the contract was cancelled (RFC 3339); null unless cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl From<MaintenanceContractRow> for MaintenanceContract {
    fn from(r: MaintenanceContractRow) -> Self {
        Self {
            id: r.contract_id,
            customer_id: r.customer_id,
            installation_id: r.installation_id,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            term_months: r.term_months,
            annual_value_minor: r.annual_value_minor,
            currency: r.currency,
            auto_renew: r.auto_renew,
            status: if r.status == "cancelled" {
                ContractStatus::Cancelled
            } else {
                ContractStatus::Active
            },
            renewals: r.renewals,
            last_renewal_reference: r.last_renewal_reference,
            renewed_at: r.renewed_at,
            cancelled_at: r.cancelled_at,
        }
    }
}

/// A maintenance contract to start.
#[derive(InputObject)]
pub struct StartMaintenanceContractInput {
    /// The caller's id for the contract (`mc_` then 1 to 100 of `A-Za-z0-9_-`, else
    /// `BAD_CONTRACT_ID`): repeating a start with it records nothing. Generated when absent.
    pub contract_id: Option<String>,
    /// The customer's contact id (`ct_…`, not blank).
    pub customer_id: String,
    /// The installation maintained (`isr_…`), if any; not blank when given.
    pub installation_id: Option<String>,
    /// Start of the first term (RFC 3339); may be in the past or the future.
    pub starts_at: DateTime<Utc>,
    /// The first term in calendar months, 1 to 60 (default 12); the contract ends this many
    /// months after `startsAt`.
    #[graphql(default = 12)]
    pub term_months: i32,
    /// The annual value in integer minor units of `currency` (0 or more).
    pub annual_value_minor: i64,
    /// ISO 4217 code: three uppercase letters (else `INVALID_CURRENCY`).
    pub currency: String,
    /// Whether the contract renews itself for 12 months when its end passes (default false).
    #[graphql(default = false)]
    pub auto_renew: bool,
}

#[derive(Default)]
pub struct MaintenanceQuery;

#[Object]
impl MaintenanceQuery {
    /// The caller's tenant's maintenance contracts, ending soonest first, a page at a time.
    /// Readable by everyone but integrators (`FORBIDDEN`).
    async fn maintenance_contracts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only contracts with this status; null for every status.")] status: Option<ContractStatus>,
        #[graphql(desc = "Only contracts of this customer's contact id (`ct_…`); null for every customer.")]
        customer_id: Option<String>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page (opaque); null for the first page.")]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, MaintenanceContract>> {
        let caller = allowed(ctx, Permission::ReadAfterSales, "read maintenance contracts").gql()?;
        let first = page_size(first, 100).gql()?;
        let page = read::list_maintenance_contracts(
            pool(ctx).gql()?,
            &caller.tenant,
            status.map(ContractStatus::as_str),
            customer_id.as_deref(),
            first,
            after.as_deref(),
        )
        .await;
        connection(after.is_some(), page, MaintenanceContract::from)
    }
}

#[derive(Default)]
pub struct MaintenanceMutation;

#[Object]
impl MaintenanceMutation {
    /// Starts a maintenance contract.
    ///
    /// Owners, admins and finance (else `FORBIDDEN`). Refused with `BAD_CONTRACT_ID`,
    /// `BAD_TERM` (negative term), `INVALID_TERM` (not 1 to 60 months), `NEGATIVE_VALUE`,
    /// `INVALID_CURRENCY` or `BLANK_FIELD`. Answers the contract's id.
    async fn start_maintenance_contract(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contract's facts: customer, start, term, value, currency, auto-renewal.")]
        input: StartMaintenanceContractInput,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::RunMaintenanceContracts, "start maintenance contracts").gql()?;
            let id = local_id("mc_", input.contract_id, "BAD_CONTRACT_ID").gql()?;
            let metadata = metadata(ctx, caller);
            let start = StartMaintenanceContract {
                customer_id: input.customer_id,
                installation_id: input.installation_id,
                starts_at: input.starts_at,
                term_months: months(input.term_months).gql()?,
                annual_value_minor: input.annual_value_minor,
                currency: input.currency,
                auto_renew: input.auto_renew,
                by: caller.user_id.clone(),
                at: Utc::now(),
            };
            desk(ctx).gql()?.start_contract(&metadata, &id, start).await.gql()?;
            Ok(Receipt::new(id))
        })
        .await
    }

    /// Renews a contract for `termMonths` from its current end, under `reference` (an invoice
    /// or payment reference): repeating a reference records nothing.
    ///
    /// Owners, admins and finance (else `FORBIDDEN`). Refused with `BAD_CONTRACT_ID`,
    /// `UNKNOWN_CONTRACT`, `CONTRACT_CANCELLED`, `BLANK_FIELD` (blank reference), `BAD_TERM` or
    /// `INVALID_TERM`. Answers the contract's id.
    async fn renew_maintenance_contract(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contract's id (`mc_…`).")] contract_id: String,
        #[graphql(desc = "The renewal's invoice or payment reference (not blank): one renewal per reference.")]
        reference: String,
        #[graphql(default = 12, desc = "The renewal term in calendar months, 1 to 60 (default 12).")] term_months: i32,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::RunMaintenanceContracts, "renew maintenance contracts").gql()?;
            let id = self::contract_id(contract_id).gql()?;
            desk(ctx)
                .gql()?
                .renew_contract(
                    &metadata(ctx, caller),
                    &id,
                    &reference,
                    months(term_months).gql()?,
                    Utc::now(),
                )
                .await
                .gql()?;
            Ok(Receipt::new(id))
        })
        .await
    }

    /// Switches a contract's automatic renewal on or off.
    ///
    /// The current setting again records nothing. Owners, admins and finance (else
    /// `FORBIDDEN`); refused with `BAD_CONTRACT_ID`, `UNKNOWN_CONTRACT` or `CONTRACT_CANCELLED`.
    /// Answers the contract's id.
    async fn set_maintenance_auto_renewal(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contract's id (`mc_…`).")] contract_id: String,
        #[graphql(desc = "true: renew for 12 months each time the end passes; false: let it lapse.")] auto_renew: bool,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::RunMaintenanceContracts, "change maintenance contracts").gql()?;
            let id = self::contract_id(contract_id).gql()?;
            desk(ctx)
                .gql()?
                .set_auto_renewal(&metadata(ctx, caller), &id, auto_renew, Utc::now())
                .await
                .gql()?;
            Ok(Receipt::new(id))
        })
        .await
    }

    /// Cancels a contract, with an optional reason (sealed).
    ///
    /// Also switches auto-renewal off; cancelling again records nothing. Owners, admins and
    /// finance (else `FORBIDDEN`); refused with `BAD_CONTRACT_ID`, `UNKNOWN_CONTRACT` or
    /// `INVALID_INPUT` (blank or over-long reason). Answers the contract's id.
    async fn cancel_maintenance_contract(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contract's id (`mc_…`).")] contract_id: String,
        #[graphql(desc = "Why (sealed; 1 to 4000 characters, not blank); null for no reason.")] reason: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::RunMaintenanceContracts, "cancel maintenance contracts").gql()?;
            let id = self::contract_id(contract_id).gql()?;
            desk(ctx)
                .gql()?
                .cancel_contract(&metadata(ctx, caller), &id, reason.as_deref(), Utc::now())
                .await
                .gql()?;
            Ok(Receipt::new(id))
        })
        .await
    }
}
