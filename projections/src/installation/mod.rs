//! Orders, installations and after-sales on the read side (issue 4), one file per area as in
//! the domain (`chronicle_domain::installation`), the write side
//! (`chronicle_commands::installation`) and the API (`api/src/graphql/installation/`):
//! [`orders`], [`records`], [`payouts`], [`warranties`], [`claims`], [`service_requests`],
//! [`maintenance`], and [`process`] (the process managers' feeds).
//!
//! No personal data is projected in the clear (the site address is opened with the customer's
//! data key; descriptions, notes and resolutions stay sealed in the log). Every upsert is
//! guarded by the row's `last_position` (or is a pure function of the event), so a batch applied
//! twice changes nothing; queries run in a transaction scoped to one tenant
//! (`shared::begin_for_tenant`).

pub mod claims;
pub mod maintenance;
pub mod orders;
pub mod payouts;
pub mod process;
pub mod records;
pub mod service_requests;
pub mod warranties;

pub use claims::*;
pub use maintenance::*;
pub use orders::*;
pub use payouts::*;
pub use process::*;
pub use records::*;
pub use service_requests::*;
pub use warranties::*;

use chronicle_domain::installation::{
    required_checklist, ticket_label, ClaimEvent, InstallationEvent, InstallationStatus, MaintenanceEvent, OrderEvent,
    PayoutEvent, ServiceEvent, WarrantyEvent,
};
use chronicle_domain::pii::MasterKey;
use chronicle_domain::tenant::TenantId;
use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::contacts::{data_key, local_id, tenant_of, KeyCache};
use crate::log::StoredEvent;
use crate::page::{after_time, cursor, read_cursor, time_cursor, BadCursor, Page};
use crate::runtime::{Fold, ProjectionError, Projector};
use crate::shared::{all_tenants, begin_for_tenant, payload};

/// The `orders` projector's name. Never renamed.
pub const ORDERS_NAME: &str = "orders";
/// The `installations` projector's name (installations and their timeline). Never renamed.
pub const INSTALLATIONS_NAME: &str = "installations";
/// The `payouts` projector's name. Never renamed.
pub const PAYOUTS_NAME: &str = "payouts";

/// The `warranties` projector's name (warranties and their claims). Never renamed.
pub const WARRANTIES_NAME: &str = "warranties";
/// The `service` projector's name (service requests and maintenance contracts). Never renamed.
pub const SERVICE_NAME: &str = "service";
/// The `service_work` projector's name (the sweepers' work lists). Never renamed.
pub const SERVICE_WORK_NAME: &str = "service_work";

/// The event types read by both projectors.
const EVENT_TYPES: &[&str] = &[
    "ServiceRequestOpened",
    "ServiceRequestAssigned",
    "ServiceSlaBreached",
    "ServiceRequestResolved",
    "ServiceRequestClosed",
    "MaintenanceContractStarted",
    "MaintenanceContractRenewed",
    "MaintenanceAutoRenewalChanged",
    "MaintenanceContractCancelled",
];

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn to_json<T: Serialize>(event: &StoredEvent, value: &T) -> Result<serde_json::Value, ProjectionError> {
    serde_json::to_value(value).map_err(|e| ProjectionError::Handler {
        position: event.global_position,
        reason: e.to_string(),
    })
}

fn json_column<T: serde::de::DeserializeOwned>(r: &PgRow, column: &str) -> Result<T, sqlx::Error> {
    let value: serde_json::Value = r.try_get(column)?;
    serde_json::from_value(value).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: Box::new(e),
    })
}

/// `(micros, id)` of a cursor; no cursor starts at the top.
pub(crate) fn decode_time_cursor(cursor: Option<&str>) -> Result<(i64, String), BadCursor> {
    let Some(cursor) = cursor else {
        return Ok((i64::MAX, String::new()));
    };
    read_cursor(cursor)
}
