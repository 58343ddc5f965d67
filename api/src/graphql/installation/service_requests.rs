//! Service requests: `serviceRequests(status, priority, breached, first, after)` (a connection,
//! newest ticket first); open, assign, resolve and close a request.

use super::*;

/// A service request's priority (its SLA: urgent 4 h, high 8 h, normal 24 h, low 72 h).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ServicePriority {
    /// Due 4 hours after opening.
    Urgent,
    /// Due 8 hours after opening.
    High,
    /// Due 24 hours after opening.
    Normal,
    /// Due 72 hours after opening.
    Low,
}

impl ServicePriority {
    pub(super) fn domain(self) -> DomainPriority {
        match self {
            Self::Urgent => DomainPriority::Urgent,
            Self::High => DomainPriority::High,
            Self::Normal => DomainPriority::Normal,
            Self::Low => DomainPriority::Low,
        }
    }

    pub(super) fn parse(s: &str) -> Self {
        match DomainPriority::parse(s) {
            Some(DomainPriority::Urgent) => Self::Urgent,
            Some(DomainPriority::High) => Self::High,
            Some(DomainPriority::Low) => Self::Low,
            _ => Self::Normal,
        }
    }
}

/// A service request's status: `OPEN → ASSIGNED → RESOLVED → CLOSED` (`OPEN → RESOLVED` too).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ServiceStatus {
    /// Opened, no technician assigned yet (the SLA runs).
    Open,
    /// A technician is assigned (the SLA runs).
    Assigned,
    /// Resolved; waiting to be closed (the SLA no longer runs).
    Resolved,
    /// Closed (final).
    Closed,
}

impl ServiceStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Assigned => "assigned",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
        }
    }

    pub(super) fn parse(s: &str) -> Self {
        [Self::Open, Self::Assigned, Self::Resolved, Self::Closed]
            .into_iter()
            .find(|x| x.as_str() == s)
            .unwrap_or(Self::Open)
    }
}

/// A service ticket (its description and resolution stay sealed; read model: a moment behind
/// the log).
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ServiceRequest {
    /// `sr_<ticket number>`.
    pub id: String,
    /// The tenant's sequential ticket number (1, 2, 3, …).
    pub ticket_number: i64,
    /// `SR-000042`.
    pub ticket: String,
    /// What kind of request it is, as given when opened (`repair`, `inspection`, `question`, …).
    pub kind: String,
    /// The priority, which set the SLA due time.
    pub priority: ServicePriority,
    /// Where the request stands.
    pub status: ServiceStatus,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// The installation concerned (`isr_…`); null when none was given.
    pub installation_id: Option<String>,
    /// The user id of the technician assigned last; null until one is assigned.
    pub technician_id: Option<String>,
    /// When the request was opened (RFC 3339).
    pub opened_at: DateTime<Utc>,
    /// Opened plus the priority's SLA.
    pub sla_due_at: DateTime<Utc>,
    /// Whether the SLA was breached (decided once, in the log: by the SLA sweeper shortly after
    /// `slaDueAt` passes on a pending request, or when it is resolved late).
    pub breached: bool,
    /// When the breach was recorded (RFC 3339); null unless `breached`.
    pub breached_at: Option<DateTime<Utc>>,
    /// When a technician was last assigned (RFC 3339); null until assigned.
    pub assigned_at: Option<DateTime<Utc>>,
    /// When the request was resolved (RFC 3339); null until resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// When the request was closed (RFC 3339); null until closed.
    pub closed_at: Option<DateTime<Utc>>,
}

impl From<ServiceRequestRow> for ServiceRequest {
    fn from(r: ServiceRequestRow) -> Self {
        Self {
            id: r.request_id,
            ticket_number: r.ticket_number,
            ticket: r.ticket,
            kind: r.kind,
            priority: ServicePriority::parse(&r.priority),
            status: ServiceStatus::parse(&r.status),
            customer_id: r.customer_id,
            installation_id: r.installation_id,
            technician_id: r.technician_id,
            opened_at: r.opened_at,
            sla_due_at: r.sla_due_at,
            breached: r.breached,
            breached_at: r.breached_at,
            assigned_at: r.assigned_at,
            resolved_at: r.resolved_at,
            closed_at: r.closed_at,
        }
    }
}

/// A service request to open.
#[derive(InputObject)]
pub struct OpenServiceRequestInput {
    /// `repair`, `inspection`, `question`, … (free text, not blank).
    pub kind: String,
    /// The priority: sets the SLA due time (urgent 4 h, high 8 h, normal 24 h, low 72 h).
    pub priority: ServicePriority,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// The installation concerned (`isr_…`), if any; not blank when given.
    pub installation_id: Option<String>,
    /// What the customer reports (sealed before it is stored; 1 to 4000 characters, not blank).
    pub description: String,
    /// The caller's key (1 to 200 bytes): opening again with it returns the first ticket.
    pub idempotency_key: Option<String>,
}

/// A page of the caller's tenant's service requests matching `filter` (the `serviceRequests`
/// list, and a customer's service history).
pub(crate) async fn service_requests_page(
    ctx: &Context<'_>,
    filter: ServiceFilter,
    first: i32,
    after: Option<String>,
) -> async_graphql::Result<Connection<String, ServiceRequest, Counted>> {
    let caller = allowed(ctx, Permission::ReadAfterSales, "read service requests").gql()?;
    let first = page_size(first, 100).gql()?;
    let pool = pool(ctx).gql()?;
    let page = read::list_service_requests(pool, &caller.tenant, &filter, first, after.as_deref()).await;
    let (pool, tenant) = (pool.clone(), caller.tenant.clone());
    let count = Counted::new(async move { read::count_service_requests(&pool, &tenant, &filter).await });
    connection_with(after.is_some(), page, ServiceRequest::from, count)
}

#[derive(Default)]
pub struct ServiceRequestsQuery;

#[Object]
impl ServiceRequestsQuery {
    /// The caller's tenant's service requests, newest ticket first. Readable by everyone but
    /// integrators (`FORBIDDEN`); a malformed `after` is `BAD_CURSOR`.
    async fn service_requests(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only requests with this status; null for every status.")] status: Option<ServiceStatus>,
        #[graphql(desc = "Only requests with this priority; null for every priority.")] priority: Option<
            ServicePriority,
        >,
        #[graphql(desc = "true: only requests whose SLA breach was recorded; false: only the others; null: both.")]
        breached: Option<bool>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(desc = "The `cursor` of the last edge of the previous page (opaque); null for the first page.")]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, ServiceRequest, Counted>> {
        let filter = ServiceFilter {
            status: status.map(|s| s.as_str().to_string()),
            priority: priority.map(|p| p.domain().as_str().to_string()),
            breached,
            customer: None,
        };
        service_requests_page(ctx, filter, first, after).await
    }
}

#[derive(Default)]
pub struct ServiceRequestsMutation;

#[Object]
impl ServiceRequestsMutation {
    /// Opens a service request under the tenant's next ticket number; its SLA runs from now.
    ///
    /// Owners, admins and agents (else `FORBIDDEN`). Refused with `BLANK_FIELD` (blank kind,
    /// customer or installation id) or `INVALID_INPUT` (blank or over-long description, bad
    /// idempotency key). Answers the ticket; the request starts `OPEN`.
    async fn open_service_request(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "What to open: kind, priority, customer, description, optional installation and idempotency key."
        )]
        input: OpenServiceRequestInput,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::FrontDesk, "open service requests").gql()?;
            let opened = desk(ctx)
                .gql()?
                .open_request(
                    &metadata(ctx, caller),
                    NewServiceRequest {
                        kind: input.kind,
                        priority: input.priority.domain(),
                        customer_id: input.customer_id,
                        installation_id: input.installation_id,
                        description: input.description,
                        idempotency_key: input.idempotency_key,
                        at: Utc::now(),
                    },
                )
                .await
                .gql()?;
            let mut answer = Receipt::new(opened.request_id);
            answer.ticket = Some(ServiceTicket {
                number: i64::try_from(opened.number).unwrap_or(i64::MAX),
                label: opened.ticket,
            });
            Ok(answer)
        })
        .await
    }

    /// Assigns (or reassigns) a technician to a pending request.
    ///
    /// The request becomes `ASSIGNED`; the same technician again records nothing. Owners and
    /// admins (else `FORBIDDEN`); refused with `BAD_SERVICE_REQUEST_ID`,
    /// `UNKNOWN_SERVICE_REQUEST`, `BLANK_FIELD` or `SERVICE_MOVE_NOT_ALLOWED` (resolved or
    /// closed). Answers the request's id.
    async fn assign_service_request(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The request's id, `sr_<ticket number>`.")] request_id: String,
        #[graphql(
            desc = "The technician's user id (`usr_…`): an active user whose role resolves service requests (owner, admin, technician), else `UNKNOWN_USER`, `USER_DEACTIVATED`, `USER_NOT_ACTIVE` or `ROLE_NOT_ALLOWED`."
        )]
        technician_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageAfterSales, "assign service requests").gql()?;
            let id = self::request_id(&request_id).gql()?;
            let technician_id = crate::graphql::assignee(
                ctx,
                caller,
                &technician_id,
                Permission::ResolveServiceRequests,
                "resolve service requests",
            )
            .await
            .gql()?
            .user_id;
            desk(ctx)
                .gql()?
                .assign_request(&metadata(ctx, caller), &id, &technician_id, Utc::now())
                .await
                .gql()?;
            Ok(Receipt::new(id))
        })
        .await
    }

    /// Resolves a pending request (after its due time the breach is recorded first).
    ///
    /// `OPEN | ASSIGNED → RESOLVED`; an already resolved request records nothing. Owners,
    /// admins and technicians (else `FORBIDDEN`); refused with `BAD_SERVICE_REQUEST_ID`,
    /// `UNKNOWN_SERVICE_REQUEST`, `SERVICE_MOVE_NOT_ALLOWED` (closed) or `INVALID_INPUT`.
    /// Answers the request's id.
    async fn resolve_service_request(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The request's id, `sr_<ticket number>`.")] request_id: String,
        #[graphql(desc = "What was done (sealed; 1 to 4000 characters, not blank).")] resolution: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ResolveServiceRequests, "resolve service requests").gql()?;
            let id = self::request_id(&request_id).gql()?;
            desk(ctx)
                .gql()?
                .resolve_request(&metadata(ctx, caller), &id, &resolution, Utc::now())
                .await
                .gql()?;
            Ok(Receipt::new(id))
        })
        .await
    }

    /// Closes a resolved request.
    ///
    /// `RESOLVED → CLOSED`; an already closed request records nothing. Owners, admins and
    /// agents (else `FORBIDDEN`); refused with `BAD_SERVICE_REQUEST_ID`,
    /// `UNKNOWN_SERVICE_REQUEST` or `SERVICE_MOVE_NOT_ALLOWED` (not resolved yet). Answers the
    /// request's id.
    async fn close_service_request(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The request's id, `sr_<ticket number>`.")] request_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::FrontDesk, "close service requests").gql()?;
            let id = self::request_id(&request_id).gql()?;
            desk(ctx)
                .gql()?
                .close_request(&metadata(ctx, caller), &id, Utc::now())
                .await
                .gql()?;
            Ok(Receipt::new(id))
        })
        .await
    }
}

#[async_graphql::ComplexObject]
impl ServiceRequest {
    /// The technician assigned last, with their name from the user directory; null until one
    /// is assigned.
    async fn assigned_technician(
        &self,
        ctx: &async_graphql::Context<'_>,
    ) -> async_graphql::Result<Option<crate::graphql::users::AssignedUser>> {
        match &self.technician_id {
            Some(id) => Ok(crate::graphql::users::assigned(ctx, std::slice::from_ref(id))
                .await?
                .pop()),
            None => Ok(None),
        }
    }
}
