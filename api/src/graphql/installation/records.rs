//! Installation records: `installations`, `installation` (with its checklist progress and
//! `timeline`), `technicianCalendar`, `installationCounts`; opening, staffing, scheduling, the
//! field work, commissioning, activation and decommissioning.

use super::*;

/// What is installed.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum InstallationType {
    /// A solar PV system: panels and an inverter.
    Solar,
    /// A Starlink satellite internet kit: dish and router.
    Starlink,
    /// Solar with battery storage: panels, inverter, battery and changeover.
    Hybrid,
    /// Custom furniture, assembled and fitted on site.
    CustomFurniture,
}

impl InstallationType {
    pub(super) fn domain(self) -> DomainType {
        match self {
            Self::Solar => DomainType::Solar,
            Self::Starlink => DomainType::Starlink,
            Self::Hybrid => DomainType::Hybrid,
            Self::CustomFurniture => DomainType::CustomFurniture,
        }
    }

    pub(super) fn parse(name: &str) -> Self {
        match DomainType::parse(name) {
            Some(DomainType::Starlink) => Self::Starlink,
            Some(DomainType::Hybrid) => Self::Hybrid,
            Some(DomainType::CustomFurniture) => Self::CustomFurniture,
            _ => Self::Solar,
        }
    }
}

/// Where an installation stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum InstallationStatus {
    /// Opened; work not started yet (staffing and scheduling happen now).
    Pending,
    /// Work started on site; checklist items, photos and components are recorded now.
    InProgress,
    /// Every required checklist item and photo done, with a technician; the payout and warranties
    /// follow.
    Commissioned,
    /// Activated after commissioning: in service.
    Active,
    /// Taken out of service after commissioning or activation; final.
    Decommissioned,
}

impl InstallationStatus {
    pub(super) fn domain(self) -> DomainStatus {
        match self {
            Self::Pending => DomainStatus::Pending,
            Self::InProgress => DomainStatus::InProgress,
            Self::Commissioned => DomainStatus::Commissioned,
            Self::Active => DomainStatus::Active,
            Self::Decommissioned => DomainStatus::Decommissioned,
        }
    }

    pub(super) fn parse(name: &str) -> Self {
        match DomainStatus::parse(name) {
            Some(DomainStatus::InProgress) => Self::InProgress,
            Some(DomainStatus::Commissioned) => Self::Commissioned,
            Some(DomainStatus::Active) => Self::Active,
            Some(DomainStatus::Decommissioned) => Self::Decommissioned,
            _ => Self::Pending,
        }
    }
}

/// Checklist progress: `done` of `required`, and what is still missing.
#[derive(SimpleObject)]
pub struct ChecklistProgress {
    /// How many of the required checklist items are completed.
    pub done: i32,
    /// How many items the installation type's checklist has (every one is required for
    /// commissioning).
    pub required: i32,
    /// Completed items, in the order completed.
    pub completed_items: Vec<String>,
    /// Required items not completed yet, in checklist order.
    pub missing_items: Vec<String>,
}

/// A photo attached to an installation (the content is stored elsewhere, named by its hash).
#[derive(SimpleObject)]
pub struct InstallationPhoto {
    /// What the photo shows (`site_before`, `panels`, `dish`…; required kinds not attached yet are
    /// in `Installation.missingPhotos`).
    pub kind: String,
    /// The SHA-256 of the photo's content, 64 lowercase hex characters.
    pub sha256: String,
    /// When the photo was attached (RFC 3339, UTC).
    pub at: DateTime<Utc>,
}

/// A serialized component installed.
#[derive(SimpleObject)]
pub struct InstalledComponent {
    /// The component's serial number (unique within the installation).
    pub serial: String,
    /// What it is: `panel`, `inverter`, `battery`, `dish`, `router`… (free text).
    pub kind: String,
    /// The warranty period in months, registered at commissioning; 0 means no warranty.
    pub warranty_months: i64,
    /// When the component was recorded (RFC 3339, UTC).
    pub at: DateTime<Utc>,
}

/// One event of an installation's history.
#[derive(SimpleObject)]
pub struct TimelineEntry {
    /// The event's position in the installation's event stream (ascending).
    pub sequence: i64,
    /// The event's type: `InstallationOpened`, `TechnicianAssigned`, `InstallationStatusChanged`,
    /// `PhotoAttached`…
    pub event_type: String,
    /// When it happened (RFC 3339, UTC).
    pub at: DateTime<Utc>,
    /// `user:<id>:<role>` or `system:<component>`.
    pub actor: String,
    /// A human summary; personal data (reasons, addresses) is never shown here.
    pub summary: String,
}

/// An installation system record.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Installation {
    /// The installation id, `isr_<uuid>`.
    pub id: String,
    /// The order it was opened for (when opened by hand, the order id given, possibly of another
    /// system).
    pub order_id: String,
    /// The customer's contact id (`ct_…`).
    pub customer_id: String,
    /// What is installed; it decides the checklist and the required photos.
    #[graphql(name = "type")]
    pub installation_type: InstallationType,
    /// Where the installation stands.
    pub status: InstallationStatus,
    /// The system size in watts (above zero); it decides the payout tier. Opened from an order:
    /// the watts its SKUs name, else the type's nominal size.
    pub system_size_w: i64,
    /// Absent when not recorded yet or after the customer was erased.
    pub site_address: Option<String>,
    /// User ids of the technicians assigned now, sorted.
    pub technicians: Vec<String>,
    /// When the job is scheduled to start (RFC 3339, UTC); null until scheduled.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Progress on the installation type's checklist.
    pub checklist: ChecklistProgress,
    /// The photos attached, in the order attached.
    pub photos: Vec<InstallationPhoto>,
    /// Required photo kinds not attached yet.
    pub missing_photos: Vec<String>,
    /// The serialized components installed, in the order recorded.
    pub components: Vec<InstalledComponent>,
    /// When the installation was opened (RFC 3339, UTC).
    pub opened_at: DateTime<Utc>,
    /// When work started on site (RFC 3339, UTC); null before.
    pub started_at: Option<DateTime<Utc>>,
    /// When it was commissioned (RFC 3339, UTC); null before.
    pub commissioned_at: Option<DateTime<Utc>>,
    /// When it was activated (RFC 3339, UTC); null before.
    pub activated_at: Option<DateTime<Utc>>,
    /// When it was decommissioned (RFC 3339, UTC); null unless decommissioned.
    pub decommissioned_at: Option<DateTime<Utc>>,
    /// When the record last changed (RFC 3339, UTC).
    pub updated_at: DateTime<Utc>,
}

impl Installation {
    pub(crate) fn from_row(row: InstallationRow) -> Self {
        let domain_type = DomainType::parse(&row.installation_type);
        let missing_items = domain_type
            .map(required_checklist)
            .unwrap_or_default()
            .iter()
            .filter(|item| !row.checklist_done.iter().any(|d| d == **item))
            .map(|item| item.to_string())
            .collect();
        let missing_photos = domain_type
            .map(photo_requirements)
            .unwrap_or_default()
            .iter()
            .filter(|kind| !row.photos.iter().any(|p| p.kind == **kind))
            .map(|kind| kind.to_string())
            .collect();
        Self {
            id: row.installation_id,
            order_id: row.order_id,
            customer_id: row.customer_id,
            installation_type: InstallationType::parse(&row.installation_type),
            status: InstallationStatus::parse(&row.status),
            system_size_w: row.system_size_w,
            site_address: row.site_address,
            technicians: row.technicians,
            scheduled_at: row.scheduled_at,
            checklist: ChecklistProgress {
                done: i32::try_from(row.checklist_done.len()).unwrap_or(i32::MAX),
                required: row.checklist_required,
                completed_items: row.checklist_done,
                missing_items,
            },
            photos: row
                .photos
                .into_iter()
                .map(|p| InstallationPhoto {
                    kind: p.kind,
                    sha256: p.sha256,
                    at: p.at,
                })
                .collect(),
            missing_photos,
            components: row
                .components
                .into_iter()
                .map(|c| InstalledComponent {
                    serial: c.serial,
                    kind: c.kind,
                    warranty_months: i64::from(c.warranty_months),
                    at: c.at,
                })
                .collect(),
            opened_at: row.opened_at,
            started_at: row.started_at,
            commissioned_at: row.commissioned_at,
            activated_at: row.activated_at,
            decommissioned_at: row.decommissioned_at,
            updated_at: row.updated_at,
        }
    }
}

#[ComplexObject]
impl Installation {
    /// The technicians assigned now, with their names from the user directory, sorted by id.
    async fn assigned_technicians(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<crate::graphql::users::AssignedUser>> {
        crate::graphql::users::assigned(ctx, &self.technicians).await
    }

    /// Every event of the installation, in order, with time, actor and a summary.
    async fn timeline(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TimelineEntry>> {
        let caller = caller(ctx).gql()?;
        let entries = read::timeline(pool(ctx).gql()?, &caller.tenant, &self.id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(entries
            .into_iter()
            .map(|e| TimelineEntry {
                sequence: e.sequence,
                event_type: e.event_type,
                at: e.at,
                actor: e.actor,
                summary: e.summary,
            })
            .collect())
    }
}

/// A technician's installations on one day (UTC).
#[derive(SimpleObject)]
pub struct CalendarDay {
    /// The technician's user id.
    pub technician: String,
    /// The day, in UTC (`YYYY-MM-DD`).
    pub day: NaiveDate,
    /// The technician's installations scheduled to start that day, in start order.
    pub installations: Vec<Installation>,
}

impl CalendarDay {
    fn from_row(row: CalendarRow) -> Self {
        Self {
            technician: row.technician,
            day: row.day,
            installations: row.installations.into_iter().map(Installation::from_row).collect(),
        }
    }
}

/// How many installations have a type and status.
#[derive(SimpleObject)]
pub struct InstallationCount {
    /// The installation type counted.
    #[graphql(name = "type")]
    pub installation_type: InstallationType,
    /// The status counted.
    pub status: InstallationStatus,
    /// How many of the tenant's installations have this type and status (above zero).
    pub count: i64,
}

/// An installation opened by hand.
#[derive(InputObject)]
pub struct OpenInstallationInput {
    /// What is installed.
    #[graphql(name = "type")]
    pub installation_type: InstallationType,
    /// The customer's contact id (`ct_…`); not blank.
    pub customer_id: String,
    /// The order it belongs to (it may be another system's id); not blank.
    pub order_id: String,
    /// The site's address, sealed under the customer's data key; empty (the default) leaves it
    /// unrecorded.
    #[graphql(default)]
    pub site_address: String,
    /// The system size in watts: above zero (`ZERO_SYSTEM_SIZE`; negative or above 4294967295:
    /// `INVALID_INPUT`).
    pub system_size_w: i64,
}

/// A page of the caller's tenant's installations matching `filter` (the `installations` list,
/// and a customer's).
pub(crate) async fn installations_page(
    ctx: &Context<'_>,
    filter: ReadFilter,
    first: i32,
    after: Option<String>,
) -> async_graphql::Result<Connection<String, Installation, Counted>> {
    let caller = allowed(ctx, Permission::ReadInstallations, "read installations").gql()?;
    let first = page_size(first, 100).gql()?;
    let pool = pool(ctx).gql()?;
    let page = read::list_installations(pool, &caller.tenant, &filter, first, after.as_deref()).await;
    let (pool, tenant) = (pool.clone(), caller.tenant.clone());
    let count = Counted::new(async move { read::count_installations(&pool, &tenant, &filter).await });
    connection_with(after.is_some(), page, Installation::from_row, count)
}

#[derive(Default)]
pub struct RecordsQuery;

#[Object]
impl RecordsQuery {
    /// The tenant's installations, latest opened first; `from`/`to` keep those scheduled in
    /// `[from, to)`. Every role but integrator.
    #[allow(clippy::too_many_arguments)]
    async fn installations(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only installations with this status; all when null.")] status: Option<InstallationStatus>,
        #[graphql(name = "type", desc = "Only installations of this type; every type when null.")]
        installation_type: Option<InstallationType>,
        #[graphql(desc = "Only installations this technician (a user id) is assigned to.")] technician: Option<String>,
        #[graphql(
            desc = "Only installations scheduled at or after this time (RFC 3339); unscheduled ones are left out."
        )]
        from: Option<DateTime<Utc>>,
        #[graphql(desc = "Only installations scheduled before this time (RFC 3339); unscheduled ones are left out.")]
        to: Option<DateTime<Utc>>,
        #[graphql(default = 20, desc = "Page size: 1 to 100, default 20 (`PAGE_TOO_LARGE` above 100).")] first: i32,
        #[graphql(
            desc = "The cursor of the last edge of the previous page; a malformed one is refused with `BAD_CURSOR`."
        )]
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Installation, Counted>> {
        let filter = ReadFilter {
            status: status.map(|s| s.domain().as_str().to_string()),
            installation_type: installation_type.map(|t| t.domain().as_str().to_string()),
            technician,
            from,
            to,
            customer: None,
        };
        installations_page(ctx, filter, first, after).await
    }

    /// One installation of the tenant, with checklist progress and timeline; null when it has
    /// none with this id. Every role but integrator.
    async fn installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation id (`isr_…`).")] id: String,
    ) -> async_graphql::Result<Option<Installation>> {
        let caller = allowed(ctx, Permission::ReadInstallations, "read installations").gql()?;
        let row = read::installation(pool(ctx).gql()?, &caller.tenant, &id)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(row.map(Installation::from_row))
    }

    /// A technician's calendar (every technician's without `technician`): per technician and
    /// day, the installations scheduled in `[from, to)` (at most 93 days), ordered by technician
    /// and day. Every role but integrator.
    async fn technician_calendar(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A technician's user id; every technician's calendar when null.")] technician: Option<String>,
        #[graphql(desc = "The start of the period, inclusive (RFC 3339).")] from: DateTime<Utc>,
        #[graphql(
            desc = "The end of the period, exclusive (RFC 3339): after `from` and at most 93 days later (`INVALID_PERIOD` otherwise)."
        )]
        to: DateTime<Utc>,
    ) -> async_graphql::Result<Vec<CalendarDay>> {
        let caller = allowed(ctx, Permission::ReadInstallations, "read calendars").gql()?;
        if to <= from || to - from > chrono::Duration::days(93) {
            return Err(ApiError::bad_request(
                "INVALID_PERIOD",
                "`to` must be after `from`, at most 93 days later",
            ))
            .gql();
        }
        let days = read::technician_calendar(pool(ctx).gql()?, &caller.tenant, technician.as_deref(), from, to)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(days.into_iter().map(CalendarDay::from_row).collect())
    }

    /// Installations per type and status (pairs that occur), for dashboards. Every role but
    /// integrator.
    async fn installation_counts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<InstallationCount>> {
        let caller = allowed(ctx, Permission::ReadInstallations, "read installations").gql()?;
        let counts = read::installation_counts(pool(ctx).gql()?, &caller.tenant)
            .await
            .map_err(ApiError::from)
            .gql()?;
        Ok(counts
            .into_iter()
            .map(|c| InstallationCount {
                installation_type: InstallationType::parse(&c.installation_type),
                status: InstallationStatus::parse(&c.status),
                count: c.count,
            })
            .collect())
    }
}

#[derive(Default)]
pub struct RecordsMutation;

#[Object]
impl RecordsMutation {
    /// Opens an installation by hand (a paid order opens one by itself); returns its id
    /// (`isr_<uuid>`). Owner, admin. Refusals: `BLANK_FIELD`, `ZERO_SYSTEM_SIZE`,
    /// `INVALID_INPUT` (a negative size, or a customer whose data was erased).
    async fn open_installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What the installation is opened with.")] input: OpenInstallationInput,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageInstallations, "open installations").gql()?;
            let request = OpenRequest {
                installation_type: input.installation_type.domain(),
                customer_id: input.customer_id,
                order_id: input.order_id,
                site_address: input.site_address,
                system_size_w: non_negative_i64(input.system_size_w, "systemSizeW").gql()?,
            };
            answer(
                service(ctx)
                    .gql()?
                    .open_installation(request, &metadata(ctx, caller))
                    .await,
            )
            .map(Receipt::new)
        })
        .await
    }

    /// Assigns a technician (by user id), before commissioning only. Owner, admin. Refusals:
    /// `WORK_ALREADY_COMMISSIONED`, `UNKNOWN_INSTALLATION`, `BLANK_FIELD`. Assigning again
    /// changes nothing. Returns a receipt.
    async fn assign_technician(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(
            desc = "The technician's user id (`usr_…`): an active user whose role does field work (owner, admin, technician), else `UNKNOWN_USER`, `USER_DEACTIVATED`, `USER_NOT_ACTIVE` or `ROLE_NOT_ALLOWED`."
        )]
        technician_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageInstallations, "assign technicians").gql()?;
            let technician_id = crate::graphql::assignee(
                ctx,
                caller,
                &technician_id,
                Permission::WorkInstallations,
                "install systems",
            )
            .await
            .gql()?
            .user_id;
            answer(
                service(ctx)
                    .gql()?
                    .assign_technician(&installation_id, &technician_id, &metadata(ctx, caller))
                    .await,
            )?;
            Ok(Receipt::new(installation_id))
        })
        .await
    }

    /// Unassigns a technician, before commissioning only. Owner, admin. Refusals:
    /// `WORK_ALREADY_COMMISSIONED`, `UNKNOWN_INSTALLATION`, `BLANK_FIELD`. A technician not
    /// assigned changes nothing. Returns a receipt.
    async fn unassign_technician(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(desc = "The technician's user id; not blank.")] technician_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageInstallations, "unassign technicians").gql()?;
            answer(
                service(ctx)
                    .gql()?
                    .unassign_technician(&installation_id, &technician_id, &metadata(ctx, caller))
                    .await,
            )?;
            Ok(Receipt::new(installation_id))
        })
        .await
    }

    /// Schedules the job for the first time. Owner, admin. Refusals: `ALREADY_SCHEDULED` (set
    /// for another time: reschedule instead), `WORK_ALREADY_COMMISSIONED`,
    /// `UNKNOWN_INSTALLATION`. The same time again changes nothing. Returns a receipt.
    async fn schedule_installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(desc = "When the job starts (RFC 3339).")] starts_at: DateTime<Utc>,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageInstallations, "schedule installations").gql()?;
            answer(
                service(ctx)
                    .gql()?
                    .schedule(&installation_id, starts_at, &metadata(ctx, caller))
                    .await,
            )?;
            Ok(Receipt::new(installation_id))
        })
        .await
    }

    /// Moves a scheduled job, with a reason (stored sealed). Owner, admin. Refusals:
    /// `NOT_SCHEDULED`, `WORK_ALREADY_COMMISSIONED`, `UNKNOWN_INSTALLATION`, `INVALID_INPUT`
    /// (the customer's data was erased). The current time again changes nothing. Returns a receipt.
    async fn reschedule_installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(desc = "The new start time (RFC 3339).")] starts_at: DateTime<Utc>,
        #[graphql(
            desc = "Why it moved, sealed under the customer's data key; the timeline only says a reason was recorded."
        )]
        reason: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageInstallations, "reschedule installations").gql()?;
            answer(
                service(ctx)
                    .gql()?
                    .reschedule(&installation_id, starts_at, &reason, &metadata(ctx, caller))
                    .await,
            )?;
            Ok(Receipt::new(installation_id))
        })
        .await
    }

    /// Corrects what an installation was opened with (an order's made-up size, a missing or
    /// wrong site address), with a reason; the timeline records the change. Owner, admin.
    /// Refusals: `NOTHING_TO_CORRECT` (neither given), `ZERO_SYSTEM_SIZE`,
    /// `SIZE_FIXED_AFTER_COMMISSIONING` (the payout was computed from it),
    /// `INSTALLATION_DECOMMISSIONED`, `BLANK_FIELD` (a blank reason or address),
    /// `UNKNOWN_INSTALLATION`, `INVALID_INPUT` (a negative size, text over 4,000 characters, the
    /// customer's data erased). The size it already has changes nothing. Returns a receipt.
    async fn correct_installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(desc = "The site address, sealed under the customer's data key. Correctable until decommissioning.")]
        site_address: Option<String>,
        #[graphql(
            desc = "The system size in watts, above zero. Correctable before commissioning: the payout tier and warranties are decided from it then."
        )]
        system_size_w: Option<i64>,
        #[graphql(desc = "Why (not blank), sealed under the customer's data key.")] reason: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageInstallations, "correct installations").gql()?;
            let system_size_w = system_size_w
                .map(|w| non_negative_i64(w, "system size"))
                .transpose()
                .gql()?;
            answer(
                service(ctx)
                    .gql()?
                    .correct_installation(
                        &installation_id,
                        site_address.as_deref(),
                        system_size_w,
                        &reason,
                        &metadata(ctx, caller),
                    )
                    .await,
            )?;
            Ok(Receipt::new(installation_id))
        })
        .await
    }

    /// Starts the work on site (needs a technician): `pending → in_progress`. Owner, admin, or a
    /// technician assigned to it (`FORBIDDEN` otherwise). Refusals: `NO_TECHNICIAN_ASSIGNED`,
    /// `STATUS_MOVE_NOT_ALLOWED`, `UNKNOWN_INSTALLATION`. Already in progress: nothing changes.
    /// Returns a receipt.
    async fn start_installation_work(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = caller(ctx).gql()?;
            let service = require_field_work(ctx, caller, &installation_id, "start installation work")
                .await
                .gql()?;
            answer(service.start_work(&installation_id, &metadata(ctx, caller)).await)?;
            Ok(Receipt::new(installation_id))
        })
        .await
    }

    /// Ticks an item of the type's checklist, while in progress. Owner, admin, or a technician
    /// assigned to it (`FORBIDDEN` otherwise). Refusals: `UNKNOWN_CHECKLIST_ITEM`,
    /// `NOT_IN_PROGRESS`, `BLANK_FIELD`, `UNKNOWN_INSTALLATION`. An item already ticked changes
    /// nothing. Returns a receipt.
    async fn complete_checklist_item(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(
            desc = "An item id of the type's checklist, e.g. `site_survey` (the open ones are in `checklist.missingItems`)."
        )]
        item: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = caller(ctx).gql()?;
            let service = require_field_work(ctx, caller, &installation_id, "complete checklist items")
                .await
                .gql()?;
            answer(
                service
                    .complete_checklist_item(&installation_id, &item, &metadata(ctx, caller))
                    .await,
            )?;
            Ok(Receipt::new(installation_id))
        })
        .await
    }

    /// Attaches a photo by kind and the sha-256 (lowercase hex) of its content, while in
    /// progress. Owner, admin, or a technician assigned to it (`FORBIDDEN` otherwise). Refusals:
    /// `INVALID_CONTENT_HASH`, `NOT_IN_PROGRESS`, `BLANK_FIELD`, `UNKNOWN_INSTALLATION`. The same
    /// kind and hash again changes nothing. Returns a receipt.
    async fn attach_installation_photo(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(
            desc = "What the photo shows, e.g. `site_before` (required kinds not attached yet are in `missingPhotos`); not blank."
        )]
        kind: String,
        #[graphql(
            desc = "The SHA-256 of the photo's content, 64 lowercase hex characters (`INVALID_CONTENT_HASH` otherwise)."
        )]
        sha256: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = caller(ctx).gql()?;
            let service = require_field_work(ctx, caller, &installation_id, "attach photos")
                .await
                .gql()?;
            answer(
                service
                    .attach_photo(&installation_id, &kind, &sha256, &metadata(ctx, caller))
                    .await,
            )?;
            Ok(Receipt::new(installation_id))
        })
        .await
    }

    /// Records a serialized component installed, with its warranty period in months, while in
    /// progress. Owner, admin, or a technician assigned to it (`FORBIDDEN` otherwise). Refusals:
    /// `NOT_IN_PROGRESS`, `BLANK_FIELD`, `UNKNOWN_INSTALLATION`, `INVALID_INPUT` (negative
    /// months), `SERIAL_ON_ANOTHER_INSTALLATION` (the serial is installed on another of the
    /// tenant's installations). A serial already recorded here changes nothing. Returns a
    /// receipt.
    async fn install_component(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(desc = "The component's serial number; not blank.")] serial: String,
        #[graphql(desc = "What it is (`panel`, `inverter`, `battery`, `dish`, `router`…); not blank.")] kind: String,
        #[graphql(
            default = 0,
            desc = "The warranty period in months, registered at commissioning; default 0 (no warranty), not negative."
        )]
        warranty_months: i32,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = caller(ctx).gql()?;
            let months = non_negative(warranty_months, "warrantyMonths").gql()?;
            let service = require_field_work(ctx, caller, &installation_id, "install components")
                .await
                .gql()?;
            answer(
                service
                    .install_component(&installation_id, &serial, &kind, months, &metadata(ctx, caller))
                    .await,
            )?;
            Ok(Receipt::new(installation_id))
        })
        .await
    }

    /// Commissions; refused with `COMMISSIONING_INCOMPLETE` listing what is missing.
    /// `in_progress → commissioned`; the payout, the components' warranties and the customer's
    /// notification follow. Owner, admin, or a technician assigned to it (`FORBIDDEN` otherwise).
    /// Also `NOT_IN_PROGRESS`, `UNKNOWN_INSTALLATION`. Already commissioned: nothing changes.
    /// Returns a receipt.
    async fn commission_installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = caller(ctx).gql()?;
            let service = require_field_work(ctx, caller, &installation_id, "commission installations")
                .await
                .gql()?;
            answer(service.commission(&installation_id, &metadata(ctx, caller)).await)?;
            Ok(Receipt::new(installation_id))
        })
        .await
    }

    /// Activates a commissioned installation: `commissioned → active`. Owner, admin, or a
    /// technician assigned to it (`FORBIDDEN` otherwise). Refusals: `STATUS_MOVE_NOT_ALLOWED`,
    /// `UNKNOWN_INSTALLATION`. Already active: nothing changes. Returns a receipt.
    async fn activate_installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = caller(ctx).gql()?;
            let service = require_field_work(ctx, caller, &installation_id, "activate installations")
                .await
                .gql()?;
            answer(service.activate(&installation_id, &metadata(ctx, caller)).await)?;
            Ok(Receipt::new(installation_id))
        })
        .await
    }

    /// Decommissions (the reason is stored sealed): `commissioned | active → decommissioned`,
    /// final. Owner, admin. Refusals: `STATUS_MOVE_NOT_ALLOWED`, `UNKNOWN_INSTALLATION`,
    /// `INVALID_INPUT` (a reason for a customer whose data was erased). Already decommissioned:
    /// nothing changes. Returns a receipt.
    async fn decommission_installation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The installation (`isr_…`).")] installation_id: String,
        #[graphql(desc = "Why, optional free text sealed under the customer's data key.")] reason: Option<String>,
    ) -> async_graphql::Result<Receipt> {
        receipt(async move {
            let caller = allowed(ctx, Permission::ManageInstallations, "decommission installations").gql()?;
            answer(
                service(ctx)
                    .gql()?
                    .decommission(&installation_id, reason.as_deref(), &metadata(ctx, caller))
                    .await,
            )?;
            Ok(Receipt::new(installation_id))
        })
        .await
    }
}
