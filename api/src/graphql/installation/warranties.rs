//! Warranties: `warranties(filter)` (registered by the process manager when an installation is
//! commissioned; no mutation registers one by hand).

use super::*;

/// A warranty's status. Expiry is not a status: a warranty past `endsAt` stays `ACTIVE`, and
/// claims are checked against its period when filed.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum WarrantyStatus {
    /// Registered and not voided: claims may be filed within its period.
    Active,
    /// Voided: no claim can be filed under it any more.
    Voided,
}

impl WarrantyStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Voided => "voided",
        }
    }

    pub(super) fn parse(s: &str) -> Self {
        if s == "voided" {
            Self::Voided
        } else {
            Self::Active
        }
    }
}

/// The warranty of one installed component, registered when its installation is
/// commissioned (read model: a moment behind the log).
#[derive(SimpleObject)]
pub struct Warranty {
    /// `warranty_<installation id>/<serial>`.
    pub id: String,
    /// The installation the component was installed in (`isr_…`).
    pub installation_id: String,
    /// The component's serial number.
    pub serial: String,
    /// What the component is, as recorded at installation (`panel`, `inverter`, `battery`, …).
    pub kind: String,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// The length of the warranty period in calendar months (1 to 300).
    pub warranty_months: i32,
    /// Start of the period (RFC 3339, UTC): the installation's commissioning time.
    pub starts_at: DateTime<Utc>,
    /// Exclusive end of the period: `startsAt` plus `warrantyMonths` calendar months (RFC 3339).
    pub ends_at: DateTime<Utc>,
    /// `ACTIVE` or `VOIDED` (an expired warranty is still `ACTIVE`: compare `endsAt`).
    pub status: WarrantyStatus,
    /// When the warranty was registered (RFC 3339).
    pub registered_at: DateTime<Utc>,
    /// When it was voided (RFC 3339); null while it is active.
    pub voided_at: Option<DateTime<Utc>>,
    /// Claims filed under it.
    pub claims: i32,
}

impl From<WarrantyRow> for Warranty {
    fn from(r: WarrantyRow) -> Self {
        Self {
            id: r.warranty_id,
            installation_id: r.installation_id,
            serial: r.serial,
            kind: r.kind,
            customer_id: r.customer_id,
            warranty_months: r.warranty_months,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            status: WarrantyStatus::parse(&r.status),
            registered_at: r.registered_at,
            voided_at: r.voided_at,
            claims: r.claims,
        }
    }
}

/// Which warranties to list: every field is optional, and all given must match.
#[derive(InputObject, Default)]
pub struct WarrantyFilterInput {
    /// Only warranties of this installation (`isr_…`, exact match).
    pub installation_id: Option<String>,
    /// Only warranties of this customer's contact id (`ct_…`, exact match).
    pub customer_id: Option<String>,
    /// Only warranties of components with this serial number (exact match).
    pub serial: Option<String>,
    /// Only warranties with this status.
    pub status: Option<WarrantyStatus>,
    /// Only warranties whose period ends before this time.
    pub ends_before: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct WarrantiesQuery;

#[Object]
impl WarrantiesQuery {
    /// The caller's tenant's warranties, ending soonest first, a page at a time. Readable by
    /// owners, admins, agents, technicians, finance and auditors; integrators get `FORBIDDEN`.
    async fn warranties(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which warranties to list; null lists every warranty.")] filter: Option<WarrantyFilterInput>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page (opaque); null for the first page.")]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Warranty>> {
        let caller = allowed(ctx, Permission::ReadAfterSales, "read warranties").gql()?;
        let first = page_size(first, 100).gql()?;
        let filter = filter.unwrap_or_default();
        let filter = WarrantyFilter {
            installation_id: filter.installation_id,
            customer_id: filter.customer_id,
            serial: filter.serial,
            status: filter.status.map(|s| s.as_str().to_string()),
            ends_before: filter.ends_before,
        };
        let page = read::list_warranties(pool(ctx).gql()?, &caller.tenant, &filter, first, after.as_deref()).await;
        connection(after.is_some(), page, Warranty::from)
    }
}
