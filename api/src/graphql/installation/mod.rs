//! Orders, installations and payouts (issue 4): `orders`, `order`, `installations` (filtered
//! by status, type, technician and scheduled period), `installation` with its checklist progress
//! and `timeline`, `technicianCalendar`, `payouts` with totals, `installationCounts`, and one
//! mutation per command.
//!
//! Roles: orders are read by owner, admin, agent, finance, auditor and placed, cancelled and
//! fulfilled by owner, admin, agent; cash payments are recorded by owner, admin, finance.
//! Installations are read by every role but integrator; opened, staffed, scheduled and
//! decommissioned by owner and admin; the field work (start, checklist, photos, components,
//! commissioning, activation) is done by owner, admin and the technicians assigned to it. Payouts are read by owner,
//! admin, finance, auditor and approved and paid by owner, admin, finance.
//!
//! A refused commissioning answers `COMMISSIONING_INCOMPLETE` with `extensions`
//! `missingChecklistItems`, `missingPhotos` and `noTechnician`: exactly what is missing.
//! Mutations answer with an id or `true`; the read models catch up a moment later.
//!
//! After sales: warranties and their claims, service requests with their SLA, maintenance
//! contracts.
//!
//! Queries: `warranties(filter)`, `warrantyClaims(status, warrantyId)`,
//! `serviceRequests(status, priority, breached, first, after)` (a connection, newest ticket
//! first), `maintenanceContracts(status, customerId)`. Mutations: file, review, decide and
//! resolve a warranty claim; open, assign, resolve and close a service request; start, renew,
//! switch auto-renewal of and cancel a maintenance contract.
//!
//! Every resolver takes the tenant from the caller only. Roles: everyone but integrators reads;
//! owners, admins and agents file claims, open and close requests; owners and admins review and
//! decide claims and assign requests; technicians (and owners, admins) resolve requests;
//! owners, admins and finance run maintenance contracts. Refusals carry the domain rule's code
//! in `extensions.code` (e.g. `OUTSIDE_WARRANTY_PERIOD`).
//!
//! One file per area, as in the domain (`chronicle_domain::installation`), the write side
//! (`chronicle_commands::installation`) and the read side (`chronicle_projections::installation`);
//! [`InstallationQuery`] and [`InstallationMutation`] merge them into the schema's roots.

pub mod claims;
pub mod maintenance;
pub mod orders;
pub mod payouts;
pub mod records;
pub mod service_requests;
pub mod warranties;

pub use claims::*;
pub use maintenance::*;
pub use orders::*;
pub use payouts::*;
pub use records::*;
pub use service_requests::*;
pub use warranties::*;

use async_graphql::connection::Connection;
use async_graphql::{ComplexObject, Context, Enum, ErrorExtensions, InputObject, MergedObject, Object, SimpleObject};
use chronicle_commands::dispatch::Commands;
use chronicle_commands::error::{CommandError, DomainError};
use chronicle_commands::installation::{InstallationService, NewServiceRequest, OpenRequest, ServiceDesk};
use chronicle_commands::keystore::KeyStore;
use chronicle_domain::installation::{
    photo_requirements, required_checklist, ClaimDecision, InstallationError, InstallationStatus as DomainStatus,
    InstallationType as DomainType, LineItem, PaymentProvider, Priority as DomainPriority, StartMaintenanceContract,
};
use chronicle_projections::installation::{
    self as read, CalendarDay as CalendarRow, ClaimRow, InstallationFilter as ReadFilter, InstallationRow,
    MaintenanceContractRow, OrderRow, PayoutRow, ServiceFilter, ServiceRequestRow, WarrantyFilter, WarrantyRow,
};
use chrono::{DateTime, NaiveDate, Utc};

use super::receipt::{receipt, Receipt, ServiceTicket};
use super::{allowed, caller, commands, connection, connection_with, metadata, page_size, pool, require, Counted};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, IntoGraphql};
use crate::permissions::Permission;

/// Every query of the area.
#[derive(MergedObject, Default)]
pub struct InstallationQuery(
    orders::OrdersQuery,
    records::RecordsQuery,
    payouts::PayoutsQuery,
    warranties::WarrantiesQuery,
    claims::ClaimsQuery,
    service_requests::ServiceRequestsQuery,
    maintenance::MaintenanceQuery,
);

/// Every mutation of the area.
#[derive(MergedObject, Default)]
pub struct InstallationMutation(
    orders::OrdersMutation,
    records::RecordsMutation,
    payouts::PayoutsMutation,
    claims::ClaimsMutation,
    service_requests::ServiceRequestsMutation,
    maintenance::MaintenanceMutation,
);

/// Field work: owner and admin on any installation, a technician only on an installation they
/// are assigned to (read from the installation's own stream, not a read model).
async fn require_field_work(
    ctx: &Context<'_>,
    caller: &Caller,
    installation_id: &str,
    what: &str,
) -> Result<InstallationService, ApiError> {
    require(caller.may(Permission::WorkInstallations), caller, what)?;
    let service = service(ctx)?;
    if caller.role == Role::Technician {
        let team = service.team(&caller.tenant, installation_id).await?;
        if !team.contains(&caller.user_id) {
            return Err(ApiError::Forbidden(format!(
                "a technician can only {what} on an installation they are assigned to"
            )));
        }
    }
    Ok(service)
}

fn service(ctx: &Context<'_>) -> Result<InstallationService, ApiError> {
    let keys = ctx
        .data::<KeyStore>()
        .map_err(|_| ApiError::Unavailable("no key store in the schema".into()))?;
    Ok(InstallationService::new(commands(ctx)?.clone(), keys.clone()))
}

/// Maps a command's outcome: a refused commissioning lists what is missing in `extensions`;
/// everything else as every resolver does.
fn answer<T>(result: Result<T, CommandError>) -> async_graphql::Result<T> {
    match result {
        Err(CommandError::Rejected(DomainError::Installation(InstallationError::CommissioningIncomplete {
            missing_checklist_items,
            missing_photos,
            no_technician,
        }))) => {
            let error = ApiError::Command(CommandError::Rejected(DomainError::Installation(
                InstallationError::CommissioningIncomplete {
                    missing_checklist_items: missing_checklist_items.clone(),
                    missing_photos: missing_photos.clone(),
                    no_technician,
                },
            )));
            Err(error.extend().extend_with(|_, ext| {
                ext.set("missingChecklistItems", missing_checklist_items.clone());
                ext.set("missingPhotos", missing_photos.clone());
                ext.set("noTechnician", no_technician);
            }))
        }
        other => other.gql(),
    }
}

fn non_negative(value: i32, field: &'static str) -> Result<u32, ApiError> {
    u32::try_from(value).map_err(|_| ApiError::bad_request("INVALID_INPUT", format!("{field} must not be negative")))
}

fn non_negative_i64(value: i64, field: &'static str) -> Result<u32, ApiError> {
    u32::try_from(value)
        .map_err(|_| ApiError::bad_request("INVALID_INPUT", format!("{field} must be between 0 and {}", u32::MAX)))
}

fn desk(ctx: &Context<'_>) -> Result<ServiceDesk, ApiError> {
    let commands = ctx
        .data::<Commands>()
        .map_err(|_| ApiError::Unavailable("no command dispatcher in the schema".into()))?;
    let keys = ctx
        .data::<KeyStore>()
        .map_err(|_| ApiError::Unavailable("no key store in the schema".into()))?;
    Ok(ServiceDesk::new(commands.clone(), keys.clone()))
}

/// A caller-chosen id: `<prefix>` then 1 to 100 of `A-Za-z0-9_-`; a fresh one when absent.
fn local_id(prefix: &'static str, given: Option<String>, code: &'static str) -> Result<String, ApiError> {
    let Some(id) = given else {
        return Ok(format!("{prefix}{}", uuid::Uuid::new_v4().simple()));
    };
    let valid = id.strip_prefix(prefix).is_some_and(|rest| {
        (1..=100).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if valid {
        Ok(id)
    } else {
        Err(ApiError::bad_request(
            code,
            format!("an id is {prefix} and 1 to 100 of A-Z, a-z, 0-9, _ and -"),
        ))
    }
}

/// A request id: `sr_` and a ticket number.
fn request_id(id: &str) -> Result<String, ApiError> {
    match id.strip_prefix("sr_").map(str::parse::<u64>) {
        Some(Ok(n)) if n > 0 => Ok(id.to_string()),
        _ => Err(ApiError::bad_request(
            "BAD_SERVICE_REQUEST_ID",
            "a service request id is sr_ and its ticket number",
        )),
    }
}

fn claim_id(id: String) -> Result<String, ApiError> {
    local_id("claim_", Some(id), "BAD_CLAIM_ID")
}

fn contract_id(id: String) -> Result<String, ApiError> {
    local_id("mc_", Some(id), "BAD_CONTRACT_ID")
}

fn months(value: i32) -> Result<u32, ApiError> {
    u32::try_from(value).map_err(|_| ApiError::bad_request("BAD_TERM", "a term is a positive number of months"))
}
