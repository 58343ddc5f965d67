//! Refusals of the `InstallationRecord` aggregate, named after the rule they enforce.

/// Why an installation command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallationError {
    /// Only an opened installation can be changed.
    #[error("no such installation")]
    UnknownInstallation,
    /// Ids, kinds, serials and items must not be blank.
    #[error("{field} must not be blank")]
    Blank { field: &'static str },
    /// A system size is more than zero watts.
    #[error("the system size must be more than zero watts")]
    ZeroSystemSize,
    /// Staffing and scheduling happen before commissioning.
    #[error("cannot {action} an installation that is {status}")]
    WorkAlreadyCommissioned { action: &'static str, status: &'static str },
    /// A first schedule is set once; a different time is a reschedule.
    #[error("the installation is already scheduled; reschedule it with a reason")]
    AlreadyScheduled,
    /// Only a scheduled installation can be rescheduled.
    #[error("the installation is not scheduled yet")]
    NotScheduled,
    /// Work starts with at least one technician assigned.
    #[error("assign a technician before starting the work")]
    NoTechnicianAssigned,
    /// Checklist, photos, components and commissioning happen while in progress.
    #[error("cannot {action} while the installation is {status}")]
    NotInProgress { action: &'static str, status: &'static str },
    /// Only items of the type's checklist can be completed.
    #[error("{item} is not on the {installation_type} checklist")]
    UnknownChecklistItem {
        item: String,
        installation_type: &'static str,
    },
    /// A photo names its content by sha-256, 64 lowercase hex characters.
    #[error("a photo's content hash must be 64 lowercase hex characters (sha-256)")]
    InvalidContentHash,
    /// Commissioning needs every required checklist item, photo and a technician; this lists
    /// exactly what is missing.
    #[error("commissioning incomplete: {}", missing(.missing_checklist_items, .missing_photos, *.no_technician))]
    CommissioningIncomplete {
        missing_checklist_items: Vec<String>,
        missing_photos: Vec<String>,
        no_technician: bool,
    },
    /// Status moves follow `pending → in_progress → commissioned → active → decommissioned`.
    #[error("an installation cannot move from {from} to {to}")]
    StatusMoveNotAllowed { from: &'static str, to: &'static str },
    /// A correction changes the site address, the system size, or both.
    #[error("a correction names a new site address or a new system size")]
    NothingToCorrect,
    /// The payout and warranties are decided from the size at commissioning: it is corrected
    /// before.
    #[error(
        "the system size of an installation that is {status} cannot be corrected: its payout was computed from it"
    )]
    SizeFixedAfterCommissioning { status: &'static str },
    /// A decommissioned installation is final.
    #[error("a decommissioned installation cannot be corrected")]
    InstallationDecommissioned,
    /// A serial number is installed on one installation of a tenant (checked by the write side:
    /// one component, one warranty).
    #[error("serial {serial} is already installed on {installation_id}")]
    SerialOnAnotherInstallation { serial: String, installation_id: String },
}

impl InstallationError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownInstallation => "UNKNOWN_INSTALLATION",
            Self::Blank { .. } => "BLANK_FIELD",
            Self::ZeroSystemSize => "ZERO_SYSTEM_SIZE",
            Self::WorkAlreadyCommissioned { .. } => "WORK_ALREADY_COMMISSIONED",
            Self::AlreadyScheduled => "ALREADY_SCHEDULED",
            Self::NotScheduled => "NOT_SCHEDULED",
            Self::NoTechnicianAssigned => "NO_TECHNICIAN_ASSIGNED",
            Self::NotInProgress { .. } => "NOT_IN_PROGRESS",
            Self::UnknownChecklistItem { .. } => "UNKNOWN_CHECKLIST_ITEM",
            Self::InvalidContentHash => "INVALID_CONTENT_HASH",
            Self::CommissioningIncomplete { .. } => "COMMISSIONING_INCOMPLETE",
            Self::StatusMoveNotAllowed { .. } => "STATUS_MOVE_NOT_ALLOWED",
            Self::SerialOnAnotherInstallation { .. } => "SERIAL_ON_ANOTHER_INSTALLATION",
            Self::NothingToCorrect => "NOTHING_TO_CORRECT",
            Self::SizeFixedAfterCommissioning { .. } => "SIZE_FIXED_AFTER_COMMISSIONING",
            Self::InstallationDecommissioned => "INSTALLATION_DECOMMISSIONED",
        }
    }
}

/// What commissioning still misses, in words: "checklist items a, b; photos x; no technician".
fn missing(checklist: &[String], photos: &[String], no_technician: bool) -> String {
    let mut parts = Vec::new();
    if !checklist.is_empty() {
        parts.push(format!("checklist items {}", checklist.join(", ")));
    }
    if !photos.is_empty() {
        parts.push(format!("photos {}", photos.join(", ")));
    }
    if no_technician {
        parts.push("no technician assigned".to_string());
    }
    if parts.is_empty() {
        parts.push("nothing named".to_string());
    }
    parts.join("; ")
}
