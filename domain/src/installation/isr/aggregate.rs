//! The `InstallationRecord` aggregate's state and its command handling.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{InstallationCommand, OpenInstallation};
use super::error::InstallationError;
use super::events::InstallationEvent;
use super::values::{
    is_sha256_hex, photo_requirements, required_checklist, Component, InstallationStatus, InstallationType,
};
use crate::pii::Envelope;

/// What an installation was opened with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Opened {
    installation_type: InstallationType,
    customer_id: String,
    order_id: String,
    system_size_w: u32,
}

/// The installation system record of one job.
// `serde(default)`: snapshots taken before a field existed still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct InstallationRecord {
    opened: Option<Opened>,
    status: InstallationStatus,
    technicians: BTreeSet<String>,
    starts_at: Option<DateTime<Utc>>,
    checklist: BTreeSet<String>,
    /// `(kind, sha256)` of every photo attached.
    photos: BTreeSet<(String, String)>,
    /// Components in the order they were installed.
    components: Vec<Component>,
}

fn blank(value: &str, field: &'static str) -> Result<(), InstallationError> {
    if value.trim().is_empty() {
        Err(InstallationError::Blank { field })
    } else {
        Ok(())
    }
}

impl InstallationRecord {
    /// The installation's status.
    pub fn status(&self) -> InstallationStatus {
        self.status
    }

    /// The installation type, once opened.
    pub fn installation_type(&self) -> Option<InstallationType> {
        self.opened.as_ref().map(|o| o.installation_type)
    }

    /// The technicians assigned.
    pub fn technicians(&self) -> &BTreeSet<String> {
        &self.technicians
    }

    /// When the job is scheduled to start, if it is.
    pub fn starts_at(&self) -> Option<DateTime<Utc>> {
        self.starts_at
    }

    /// The required checklist items not yet completed, in checklist order.
    pub fn missing_checklist_items(&self) -> Vec<String> {
        self.installation_type()
            .map(required_checklist)
            .unwrap_or_default()
            .iter()
            .filter(|item| !self.checklist.contains(**item))
            .map(|item| item.to_string())
            .collect()
    }

    /// The required photo kinds not yet attached, in requirement order.
    pub fn missing_photos(&self) -> Vec<String> {
        self.installation_type()
            .map(photo_requirements)
            .unwrap_or_default()
            .iter()
            .filter(|kind| !self.photos.iter().any(|(k, _)| k == **kind))
            .map(|kind| kind.to_string())
            .collect()
    }

    fn opened(&self) -> Result<&Opened, InstallationError> {
        self.opened.as_ref().ok_or(InstallationError::UnknownInstallation)
    }

    fn before_commissioning(&self, action: &'static str) -> Result<&Opened, InstallationError> {
        let opened = self.opened()?;
        if !self.status.before_commissioning() {
            return Err(InstallationError::WorkAlreadyCommissioned {
                action,
                status: self.status.as_str(),
            });
        }
        Ok(opened)
    }

    fn in_progress(&self, action: &'static str) -> Result<&Opened, InstallationError> {
        let opened = self.opened()?;
        if self.status != InstallationStatus::InProgress {
            return Err(InstallationError::NotInProgress {
                action,
                status: self.status.as_str(),
            });
        }
        Ok(opened)
    }

    fn move_to(
        &self,
        to: InstallationStatus,
        reason: Option<Envelope>,
        by: String,
        at: DateTime<Utc>,
    ) -> Result<Option<InstallationEvent>, InstallationError> {
        self.opened()?;
        if self.status == to {
            return Ok(None);
        }
        if !self.status.may_move_to(to) {
            return Err(InstallationError::StatusMoveNotAllowed {
                from: self.status.as_str(),
                to: to.as_str(),
            });
        }
        Ok(Some(InstallationEvent::InstallationStatusChanged {
            from: self.status,
            to,
            reason,
            by,
            at,
        }))
    }

    fn open(&self, open: OpenInstallation) -> Result<Option<InstallationEvent>, InstallationError> {
        if self.opened.is_some() {
            return Ok(None);
        }
        blank(&open.customer_id, "customer id")?;
        blank(&open.order_id, "order id")?;
        if open.system_size_w == 0 {
            return Err(InstallationError::ZeroSystemSize);
        }
        Ok(Some(InstallationEvent::InstallationOpened {
            installation_type: open.installation_type,
            customer_id: open.customer_id,
            order_id: open.order_id,
            site_address: open.site_address,
            system_size_w: open.system_size_w,
            by: open.by,
            at: open.at,
        }))
    }

    fn commission(&self, by: String, at: DateTime<Utc>) -> Result<Option<InstallationEvent>, InstallationError> {
        let opened = self.opened()?;
        if self.status > InstallationStatus::InProgress {
            // Already commissioned: the first outcome stands.
            return Ok(None);
        }
        self.in_progress("commission")?;
        let missing_checklist_items = self.missing_checklist_items();
        let missing_photos = self.missing_photos();
        let no_technician = self.technicians.is_empty();
        if !missing_checklist_items.is_empty() || !missing_photos.is_empty() || no_technician {
            return Err(InstallationError::CommissioningIncomplete {
                missing_checklist_items,
                missing_photos,
                no_technician,
            });
        }
        Ok(Some(InstallationEvent::InstallationCommissioned {
            installation_type: opened.installation_type,
            customer_id: opened.customer_id.clone(),
            order_id: opened.order_id.clone(),
            system_size_w: opened.system_size_w,
            components: self.components.clone(),
            technicians: self.technicians.iter().cloned().collect(),
            by,
            at,
        }))
    }

    fn correct(
        &self,
        site_address: Option<Envelope>,
        system_size_w: Option<u32>,
        reason: Envelope,
        by: String,
        at: DateTime<Utc>,
    ) -> Result<Option<InstallationEvent>, InstallationError> {
        let opened = self.opened()?;
        if site_address.is_none() && system_size_w.is_none() {
            return Err(InstallationError::NothingToCorrect);
        }
        // The size it already has is no change (the write side drops an address it already
        // has before sealing): a repeated correction records nothing.
        let system_size_w = system_size_w.filter(|size| *size != opened.system_size_w);
        if site_address.is_none() && system_size_w.is_none() {
            return Ok(None);
        }
        if self.status == InstallationStatus::Decommissioned {
            return Err(InstallationError::InstallationDecommissioned);
        }
        if let Some(size) = system_size_w {
            if size == 0 {
                return Err(InstallationError::ZeroSystemSize);
            }
            if !self.status.before_commissioning() {
                return Err(InstallationError::SizeFixedAfterCommissioning {
                    status: self.status.as_str(),
                });
            }
        }
        Ok(Some(InstallationEvent::InstallationDetailsCorrected {
            site_address,
            previous_size_w: system_size_w.map(|_| opened.system_size_w),
            system_size_w,
            reason,
            by,
            at,
        }))
    }

    /// Decides what a command records: `Ok(None)` for a repeat, an event, or a refusal.
    fn decide(&self, command: InstallationCommand) -> Result<Option<InstallationEvent>, InstallationError> {
        use InstallationCommand as C;
        use InstallationEvent as E;
        match command {
            C::Open(open) => self.open(open),
            C::AssignTechnician { technician_id, by, at } => {
                blank(&technician_id, "technician id")?;
                self.before_commissioning("assign a technician to")?;
                if self.technicians.contains(&technician_id) {
                    return Ok(None);
                }
                let mut technicians = self.technicians.clone();
                technicians.insert(technician_id.clone());
                Ok(Some(E::TechnicianAssigned {
                    technician_id,
                    technicians: technicians.into_iter().collect(),
                    by,
                    at,
                }))
            }
            C::UnassignTechnician { technician_id, by, at } => {
                blank(&technician_id, "technician id")?;
                self.before_commissioning("unassign a technician from")?;
                if !self.technicians.contains(&technician_id) {
                    return Ok(None);
                }
                let technicians = self
                    .technicians
                    .iter()
                    .filter(|t| **t != technician_id)
                    .cloned()
                    .collect();
                Ok(Some(E::TechnicianUnassigned {
                    technician_id,
                    technicians,
                    by,
                    at,
                }))
            }
            C::Schedule { starts_at, by, at } => {
                self.before_commissioning("schedule")?;
                match self.starts_at {
                    Some(current) if current == starts_at => Ok(None),
                    Some(_) => Err(InstallationError::AlreadyScheduled),
                    None => Ok(Some(E::InstallationScheduled { starts_at, by, at })),
                }
            }
            C::Reschedule {
                starts_at,
                reason,
                by,
                at,
            } => {
                self.before_commissioning("reschedule")?;
                match self.starts_at {
                    None => Err(InstallationError::NotScheduled),
                    Some(current) if current == starts_at => Ok(None),
                    Some(from) => Ok(Some(E::InstallationRescheduled {
                        from,
                        starts_at,
                        reason,
                        by,
                        at,
                    })),
                }
            }
            C::StartWork { by, at } => {
                self.opened()?;
                if self.status == InstallationStatus::Pending && self.technicians.is_empty() {
                    return Err(InstallationError::NoTechnicianAssigned);
                }
                self.move_to(InstallationStatus::InProgress, None, by, at)
            }
            C::CompleteChecklistItem { item, by, at } => {
                blank(&item, "checklist item")?;
                let opened = self.in_progress("complete a checklist item")?;
                let checklist = required_checklist(opened.installation_type);
                if !checklist.contains(&item.as_str()) {
                    return Err(InstallationError::UnknownChecklistItem {
                        item,
                        installation_type: opened.installation_type.as_str(),
                    });
                }
                if self.checklist.contains(&item) {
                    return Ok(None);
                }
                // Both counts are bounded by the checklist's length (a dozen items).
                let completed = u32::try_from(self.checklist.len() + 1).unwrap_or(u32::MAX);
                let required = u32::try_from(checklist.len()).unwrap_or(u32::MAX);
                Ok(Some(E::ChecklistItemCompleted {
                    item,
                    completed,
                    required,
                    by,
                    at,
                }))
            }
            C::AttachPhoto { kind, sha256, by, at } => {
                blank(&kind, "photo kind")?;
                if !is_sha256_hex(&sha256) {
                    return Err(InstallationError::InvalidContentHash);
                }
                self.in_progress("attach a photo to")?;
                if self.photos.contains(&(kind.clone(), sha256.clone())) {
                    return Ok(None);
                }
                Ok(Some(E::PhotoAttached { kind, sha256, by, at }))
            }
            C::InstallComponent {
                serial,
                kind,
                warranty_months,
                by,
                at,
            } => {
                blank(&serial, "serial")?;
                blank(&kind, "component kind")?;
                self.in_progress("install a component in")?;
                if self.components.iter().any(|c| c.serial == serial) {
                    return Ok(None);
                }
                Ok(Some(E::ComponentInstalled {
                    serial,
                    kind,
                    warranty_months,
                    by,
                    at,
                }))
            }
            C::Commission { by, at } => self.commission(by, at),
            C::Activate { by, at } => self.move_to(InstallationStatus::Active, None, by, at),
            C::Decommission { reason, by, at } => self.move_to(InstallationStatus::Decommissioned, reason, by, at),
            C::CorrectDetails {
                site_address,
                system_size_w,
                reason,
                by,
                at,
            } => self.correct(site_address, system_size_w, reason, by, at),
        }
    }
}

impl Aggregate for InstallationRecord {
    const TYPE: &'static str = "InstallationRecord";
    type Command = InstallationCommand;
    type Event = InstallationEvent;
    type Error = InstallationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(event) = self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use InstallationEvent as E;
        match event {
            E::InstallationOpened {
                installation_type,
                customer_id,
                order_id,
                system_size_w,
                ..
            } => {
                self.opened = Some(Opened {
                    installation_type,
                    customer_id,
                    order_id,
                    system_size_w,
                });
                self.status = InstallationStatus::Pending;
            }
            E::TechnicianAssigned { technicians, .. } | E::TechnicianUnassigned { technicians, .. } => {
                self.technicians = technicians.into_iter().collect();
            }
            E::InstallationScheduled { starts_at, .. } | E::InstallationRescheduled { starts_at, .. } => {
                self.starts_at = Some(starts_at);
            }
            E::InstallationStatusChanged { to, .. } => self.status = to,
            E::ChecklistItemCompleted { item, .. } => {
                self.checklist.insert(item);
            }
            E::PhotoAttached { kind, sha256, .. } => {
                self.photos.insert((kind, sha256));
            }
            E::ComponentInstalled {
                serial,
                kind,
                warranty_months,
                ..
            } => self.components.push(Component {
                serial,
                kind,
                warranty_months,
            }),
            E::InstallationCommissioned { .. } => self.status = InstallationStatus::Commissioned,
            E::InstallationDetailsCorrected {
                system_size_w: Some(size),
                ..
            } => {
                if let Some(opened) = self.opened.as_mut() {
                    opened.system_size_w = size;
                }
            }
            E::InstallationDetailsCorrected { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<InstallationRecord>;

    fn env(tag: &str) -> Envelope {
        Envelope {
            enc: "aes256gcm.v1".into(),
            nonce: format!("n-{tag}"),
            ciphertext: format!("c-{tag}"),
        }
    }

    fn at(hour: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap() + Duration::hours(hour)
    }

    fn hash(tag: u8) -> String {
        format!("{tag:02x}").repeat(32)
    }

    fn open_command(t: InstallationType) -> OpenInstallation {
        OpenInstallation {
            installation_type: t,
            customer_id: "ct_1".into(),
            order_id: "ord_1".into(),
            site_address: env("address"),
            system_size_w: 5_000,
            by: "pm".into(),
            at: at(0),
        }
    }

    fn opened(t: InstallationType) -> InstallationEvent {
        InstallationEvent::InstallationOpened {
            installation_type: t,
            customer_id: "ct_1".into(),
            order_id: "ord_1".into(),
            site_address: env("address"),
            system_size_w: 5_000,
            by: "pm".into(),
            at: at(0),
        }
    }

    fn assigned(tech: &str, team: &[&str]) -> InstallationEvent {
        InstallationEvent::TechnicianAssigned {
            technician_id: tech.into(),
            technicians: team.iter().map(|t| t.to_string()).collect(),
            by: "ops".into(),
            at: at(1),
        }
    }

    fn moved(from: InstallationStatus, to: InstallationStatus) -> InstallationEvent {
        InstallationEvent::InstallationStatusChanged {
            from,
            to,
            reason: None,
            by: "ops".into(),
            at: at(2),
        }
    }

    fn item(name: &str, completed: u32, required: u32) -> InstallationEvent {
        InstallationEvent::ChecklistItemCompleted {
            item: name.into(),
            completed,
            required,
            by: "tech-1".into(),
            at: at(3),
        }
    }

    fn photo(kind: &str, tag: u8) -> InstallationEvent {
        InstallationEvent::PhotoAttached {
            kind: kind.into(),
            sha256: hash(tag),
            by: "tech-1".into(),
            at: at(3),
        }
    }

    fn component(serial: &str, kind: &str, months: u32) -> InstallationEvent {
        InstallationEvent::ComponentInstalled {
            serial: serial.into(),
            kind: kind.into(),
            warranty_months: months,
            by: "tech-1".into(),
            at: at(3),
        }
    }

    /// A Starlink job in progress with tech-1 assigned.
    fn starlink_in_progress() -> Vec<InstallationEvent> {
        vec![
            opened(InstallationType::Starlink),
            assigned("tech-1", &["tech-1"]),
            moved(InstallationStatus::Pending, InstallationStatus::InProgress),
        ]
    }

    /// Every Starlink checklist item and photo done, plus a dish.
    fn starlink_complete() -> Vec<InstallationEvent> {
        let mut events = starlink_in_progress();
        let checklist = required_checklist(InstallationType::Starlink);
        for (i, name) in checklist.iter().enumerate() {
            events.push(item(name, i as u32 + 1, checklist.len() as u32));
        }
        for (i, kind) in photo_requirements(InstallationType::Starlink).iter().enumerate() {
            events.push(photo(kind, i as u8));
        }
        events.push(component("SN-DISH-1", "dish", 12));
        events
    }

    fn commissioned() -> Vec<InstallationEvent> {
        let mut events = starlink_complete();
        events.push(InstallationEvent::InstallationCommissioned {
            installation_type: InstallationType::Starlink,
            customer_id: "ct_1".into(),
            order_id: "ord_1".into(),
            system_size_w: 5_000,
            components: vec![],
            technicians: vec!["tech-1".into()],
            by: "ops".into(),
            at: at(4),
        });
        events
    }

    fn cmd_commission() -> InstallationCommand {
        InstallationCommand::Commission {
            by: "ops".into(),
            at: at(4),
        }
    }

    fn incomplete(items: &[&str], photos: &[&str], no_technician: bool) -> InstallationError {
        InstallationError::CommissioningIncomplete {
            missing_checklist_items: items.iter().map(|s| s.to_string()).collect(),
            missing_photos: photos.iter().map(|s| s.to_string()).collect(),
            no_technician,
        }
    }

    // Corrections

    fn correct(address: Option<&str>, size: Option<u32>) -> InstallationCommand {
        InstallationCommand::CorrectDetails {
            site_address: address.map(env),
            system_size_w: size,
            reason: env("reason"),
            by: "ops".into(),
            at: at(3),
        }
    }

    fn corrected(address: Option<&str>, size: Option<(u32, u32)>) -> InstallationEvent {
        InstallationEvent::InstallationDetailsCorrected {
            site_address: address.map(env),
            system_size_w: size.map(|(_, to)| to),
            previous_size_w: size.map(|(from, _)| from),
            reason: env("reason"),
            by: "ops".into(),
            at: at(3),
        }
    }

    #[test]
    fn a_correction_records_the_new_details_with_the_size_it_replaces() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar)])
            .when(correct(Some("new-address"), Some(5_500)))
            .then_expect_events(vec![corrected(Some("new-address"), Some((5_000, 5_500)))]);
        Given::with(())
            .given(vec![opened(InstallationType::Solar)])
            .when(correct(Some("new-address"), None))
            .then_expect_events(vec![corrected(Some("new-address"), None)]);
    }

    #[test]
    fn the_corrected_size_is_the_size_commissioned() {
        let mut events = starlink_complete();
        events.insert(1, corrected(None, Some((5_000, 150))));
        let mut record = InstallationRecord::default();
        for event in events {
            record.apply(event);
        }
        match record.decide(cmd_commission()) {
            Ok(Some(InstallationEvent::InstallationCommissioned { system_size_w, .. })) => {
                assert_eq!(system_size_w, 150)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn correcting_to_the_size_it_has_records_nothing_but_an_address_with_it_is_recorded() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar)])
            .when(correct(None, Some(5_000)))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![opened(InstallationType::Solar)])
            .when(correct(Some("a"), Some(5_000)))
            .then_expect_events(vec![corrected(Some("a"), None)]);
    }

    #[test]
    fn a_correction_naming_nothing_is_refused() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar)])
            .when(correct(None, None))
            .then_expect_error(InstallationError::NothingToCorrect);
    }

    #[test]
    fn a_correction_to_zero_watts_is_refused() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar)])
            .when(correct(Some("a"), Some(0)))
            .then_expect_error(InstallationError::ZeroSystemSize);
    }

    #[test]
    fn a_correction_of_an_unopened_installation_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(correct(Some("a"), None))
            .then_expect_error(InstallationError::UnknownInstallation);
    }

    #[test]
    fn the_size_is_fixed_once_commissioned_but_the_address_may_still_be_corrected() {
        Given::with(())
            .given(commissioned())
            .when(correct(None, Some(6_000)))
            .then_expect_error(InstallationError::SizeFixedAfterCommissioning { status: "commissioned" });
        Given::with(())
            .given(commissioned())
            .when(correct(Some("a"), None))
            .then_expect_events(vec![corrected(Some("a"), None)]);
    }

    #[test]
    fn a_repeated_size_correction_of_a_decommissioned_installation_records_nothing() {
        let mut events = commissioned();
        events.push(moved(
            InstallationStatus::Commissioned,
            InstallationStatus::Decommissioned,
        ));
        Given::with(())
            .given(events)
            .when(correct(None, Some(5_000)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_decommissioned_installation_is_not_corrected() {
        let mut events = commissioned();
        events.push(moved(
            InstallationStatus::Commissioned,
            InstallationStatus::Decommissioned,
        ));
        Given::with(())
            .given(events)
            .when(correct(Some("a"), None))
            .then_expect_error(InstallationError::InstallationDecommissioned);
    }

    // Open

    #[test]
    fn an_installation_opens_pending_with_its_facts() {
        Given::with(())
            .given_no_previous_events()
            .when(InstallationCommand::Open(open_command(InstallationType::Solar)))
            .then_expect_events(vec![opened(InstallationType::Solar)]);
    }

    #[test]
    fn opening_an_installation_twice_records_nothing() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar)])
            .when(InstallationCommand::Open(open_command(InstallationType::Hybrid)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_installation_without_a_customer_is_refused() {
        let mut open = open_command(InstallationType::Solar);
        open.customer_id = " ".into();
        Given::with(())
            .given_no_previous_events()
            .when(InstallationCommand::Open(open))
            .then_expect_error(InstallationError::Blank { field: "customer id" });
    }

    #[test]
    fn an_installation_of_zero_watts_is_refused() {
        let mut open = open_command(InstallationType::Solar);
        open.system_size_w = 0;
        Given::with(())
            .given_no_previous_events()
            .when(InstallationCommand::Open(open))
            .then_expect_error(InstallationError::ZeroSystemSize);
    }

    #[test]
    fn an_installation_never_opened_cannot_be_changed() {
        Given::with(())
            .given_no_previous_events()
            .when(cmd_commission())
            .then_expect_error(InstallationError::UnknownInstallation);
    }

    // Technicians

    #[test]
    fn a_technician_is_assigned_and_the_team_is_carried() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar), assigned("tech-1", &["tech-1"])])
            .when(InstallationCommand::AssignTechnician {
                technician_id: "tech-2".into(),
                by: "ops".into(),
                at: at(1),
            })
            .then_expect_events(vec![assigned("tech-2", &["tech-1", "tech-2"])]);
    }

    #[test]
    fn assigning_a_technician_twice_records_nothing() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar), assigned("tech-1", &["tech-1"])])
            .when(InstallationCommand::AssignTechnician {
                technician_id: "tech-1".into(),
                by: "ops".into(),
                at: at(1),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_blank_technician_is_refused() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar)])
            .when(InstallationCommand::AssignTechnician {
                technician_id: "".into(),
                by: "ops".into(),
                at: at(1),
            })
            .then_expect_error(InstallationError::Blank { field: "technician id" });
    }

    #[test]
    fn a_commissioned_installation_takes_no_new_technician() {
        Given::with(())
            .given(commissioned())
            .when(InstallationCommand::AssignTechnician {
                technician_id: "tech-2".into(),
                by: "ops".into(),
                at: at(5),
            })
            .then_expect_error(InstallationError::WorkAlreadyCommissioned {
                action: "assign a technician to",
                status: "commissioned",
            });
    }

    #[test]
    fn a_technician_is_unassigned_and_the_team_shrinks() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar), assigned("tech-1", &["tech-1"])])
            .when(InstallationCommand::UnassignTechnician {
                technician_id: "tech-1".into(),
                by: "ops".into(),
                at: at(1),
            })
            .then_expect_events(vec![InstallationEvent::TechnicianUnassigned {
                technician_id: "tech-1".into(),
                technicians: vec![],
                by: "ops".into(),
                at: at(1),
            }]);
    }

    #[test]
    fn unassigning_a_technician_not_assigned_records_nothing() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar)])
            .when(InstallationCommand::UnassignTechnician {
                technician_id: "tech-9".into(),
                by: "ops".into(),
                at: at(1),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_commissioned_installation_keeps_its_technicians() {
        Given::with(())
            .given(commissioned())
            .when(InstallationCommand::UnassignTechnician {
                technician_id: "tech-1".into(),
                by: "ops".into(),
                at: at(5),
            })
            .then_expect_error(InstallationError::WorkAlreadyCommissioned {
                action: "unassign a technician from",
                status: "commissioned",
            });
    }

    // Scheduling

    fn scheduled(hour: i64) -> InstallationEvent {
        InstallationEvent::InstallationScheduled {
            starts_at: at(hour),
            by: "ops".into(),
            at: at(1),
        }
    }

    #[test]
    fn a_pending_installation_is_scheduled() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar)])
            .when(InstallationCommand::Schedule {
                starts_at: at(48),
                by: "ops".into(),
                at: at(1),
            })
            .then_expect_events(vec![scheduled(48)]);
    }

    #[test]
    fn scheduling_again_at_the_same_time_records_nothing() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar), scheduled(48)])
            .when(InstallationCommand::Schedule {
                starts_at: at(48),
                by: "ops".into(),
                at: at(1),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn scheduling_a_scheduled_installation_at_another_time_is_refused() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar), scheduled(48)])
            .when(InstallationCommand::Schedule {
                starts_at: at(72),
                by: "ops".into(),
                at: at(1),
            })
            .then_expect_error(InstallationError::AlreadyScheduled);
    }

    #[test]
    fn a_commissioned_installation_cannot_be_scheduled() {
        Given::with(())
            .given(commissioned())
            .when(InstallationCommand::Schedule {
                starts_at: at(72),
                by: "ops".into(),
                at: at(5),
            })
            .then_expect_error(InstallationError::WorkAlreadyCommissioned {
                action: "schedule",
                status: "commissioned",
            });
    }

    #[test]
    fn a_scheduled_installation_is_rescheduled_with_a_reason() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar), scheduled(48)])
            .when(InstallationCommand::Reschedule {
                starts_at: at(72),
                reason: env("rain"),
                by: "ops".into(),
                at: at(2),
            })
            .then_expect_events(vec![InstallationEvent::InstallationRescheduled {
                from: at(48),
                starts_at: at(72),
                reason: env("rain"),
                by: "ops".into(),
                at: at(2),
            }]);
    }

    #[test]
    fn an_unscheduled_installation_cannot_be_rescheduled() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar)])
            .when(InstallationCommand::Reschedule {
                starts_at: at(72),
                reason: env("rain"),
                by: "ops".into(),
                at: at(2),
            })
            .then_expect_error(InstallationError::NotScheduled);
    }

    #[test]
    fn a_commissioned_installation_cannot_be_rescheduled() {
        let mut given = commissioned();
        given.insert(1, scheduled(48));
        Given::with(())
            .given(given)
            .when(InstallationCommand::Reschedule {
                starts_at: at(72),
                reason: env("rain"),
                by: "ops".into(),
                at: at(5),
            })
            .then_expect_error(InstallationError::WorkAlreadyCommissioned {
                action: "reschedule",
                status: "commissioned",
            });
    }

    // Starting the work

    #[test]
    fn work_starts_with_a_technician_assigned() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar), assigned("tech-1", &["tech-1"])])
            .when(InstallationCommand::StartWork {
                by: "ops".into(),
                at: at(2),
            })
            .then_expect_events(vec![moved(InstallationStatus::Pending, InstallationStatus::InProgress)]);
    }

    #[test]
    fn work_without_a_technician_is_refused() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar)])
            .when(InstallationCommand::StartWork {
                by: "ops".into(),
                at: at(2),
            })
            .then_expect_error(InstallationError::NoTechnicianAssigned);
    }

    #[test]
    fn a_commissioned_installation_cannot_start_again() {
        Given::with(())
            .given(commissioned())
            .when(InstallationCommand::StartWork {
                by: "ops".into(),
                at: at(5),
            })
            .then_expect_error(InstallationError::StatusMoveNotAllowed {
                from: "commissioned",
                to: "in_progress",
            });
    }

    // Checklist

    #[test]
    fn a_checklist_item_is_completed_with_the_progress() {
        Given::with(())
            .given(starlink_in_progress())
            .when(InstallationCommand::CompleteChecklistItem {
                item: "dish_mounted".into(),
                by: "tech-1".into(),
                at: at(3),
            })
            .then_expect_events(vec![item("dish_mounted", 1, 6)]);
    }

    #[test]
    fn completing_an_item_twice_records_nothing() {
        let mut given = starlink_in_progress();
        given.push(item("dish_mounted", 1, 6));
        Given::with(())
            .given(given)
            .when(InstallationCommand::CompleteChecklistItem {
                item: "dish_mounted".into(),
                by: "tech-1".into(),
                at: at(3),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_item_not_on_the_types_checklist_is_refused() {
        Given::with(())
            .given(starlink_in_progress())
            .when(InstallationCommand::CompleteChecklistItem {
                item: "panels_installed".into(),
                by: "tech-1".into(),
                at: at(3),
            })
            .then_expect_error(InstallationError::UnknownChecklistItem {
                item: "panels_installed".into(),
                installation_type: "starlink",
            });
    }

    #[test]
    fn a_checklist_item_before_work_starts_is_refused() {
        Given::with(())
            .given(vec![opened(InstallationType::Starlink)])
            .when(InstallationCommand::CompleteChecklistItem {
                item: "dish_mounted".into(),
                by: "tech-1".into(),
                at: at(3),
            })
            .then_expect_error(InstallationError::NotInProgress {
                action: "complete a checklist item",
                status: "pending",
            });
    }

    // Photos

    #[test]
    fn a_photo_is_attached_by_kind_and_content_hash() {
        Given::with(())
            .given(starlink_in_progress())
            .when(InstallationCommand::AttachPhoto {
                kind: "dish".into(),
                sha256: hash(7),
                by: "tech-1".into(),
                at: at(3),
            })
            .then_expect_events(vec![photo("dish", 7)]);
    }

    #[test]
    fn the_same_photo_twice_records_nothing() {
        let mut given = starlink_in_progress();
        given.push(photo("dish", 7));
        Given::with(())
            .given(given)
            .when(InstallationCommand::AttachPhoto {
                kind: "dish".into(),
                sha256: hash(7),
                by: "tech-1".into(),
                at: at(3),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_photo_with_a_malformed_hash_is_refused() {
        Given::with(())
            .given(starlink_in_progress())
            .when(InstallationCommand::AttachPhoto {
                kind: "dish".into(),
                sha256: "not-a-hash".into(),
                by: "tech-1".into(),
                at: at(3),
            })
            .then_expect_error(InstallationError::InvalidContentHash);
    }

    #[test]
    fn a_photo_before_work_starts_is_refused() {
        Given::with(())
            .given(vec![opened(InstallationType::Starlink)])
            .when(InstallationCommand::AttachPhoto {
                kind: "dish".into(),
                sha256: hash(7),
                by: "tech-1".into(),
                at: at(3),
            })
            .then_expect_error(InstallationError::NotInProgress {
                action: "attach a photo to",
                status: "pending",
            });
    }

    // Components

    #[test]
    fn a_serialized_component_is_installed_with_its_warranty() {
        Given::with(())
            .given(starlink_in_progress())
            .when(InstallationCommand::InstallComponent {
                serial: "SN-DISH-1".into(),
                kind: "dish".into(),
                warranty_months: 12,
                by: "tech-1".into(),
                at: at(3),
            })
            .then_expect_events(vec![component("SN-DISH-1", "dish", 12)]);
    }

    #[test]
    fn a_known_serial_records_nothing() {
        let mut given = starlink_in_progress();
        given.push(component("SN-DISH-1", "dish", 12));
        Given::with(())
            .given(given)
            .when(InstallationCommand::InstallComponent {
                serial: "SN-DISH-1".into(),
                kind: "dish".into(),
                warranty_months: 24,
                by: "tech-1".into(),
                at: at(3),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_component_without_a_serial_is_refused() {
        Given::with(())
            .given(starlink_in_progress())
            .when(InstallationCommand::InstallComponent {
                serial: " ".into(),
                kind: "dish".into(),
                warranty_months: 12,
                by: "tech-1".into(),
                at: at(3),
            })
            .then_expect_error(InstallationError::Blank { field: "serial" });
    }

    #[test]
    fn a_component_after_commissioning_is_refused() {
        Given::with(())
            .given(commissioned())
            .when(InstallationCommand::InstallComponent {
                serial: "SN-R-1".into(),
                kind: "router".into(),
                warranty_months: 12,
                by: "tech-1".into(),
                at: at(5),
            })
            .then_expect_error(InstallationError::NotInProgress {
                action: "install a component in",
                status: "commissioned",
            });
    }

    // Commissioning

    #[test]
    fn a_complete_installation_is_commissioned_with_components_size_and_technicians() {
        Given::with(())
            .given(starlink_complete())
            .when(cmd_commission())
            .then_expect_events(vec![InstallationEvent::InstallationCommissioned {
                installation_type: InstallationType::Starlink,
                customer_id: "ct_1".into(),
                order_id: "ord_1".into(),
                system_size_w: 5_000,
                components: vec![Component {
                    serial: "SN-DISH-1".into(),
                    kind: "dish".into(),
                    warranty_months: 12,
                }],
                technicians: vec!["tech-1".into()],
                by: "ops".into(),
                at: at(4),
            }]);
    }

    #[test]
    fn commissioning_twice_records_nothing() {
        Given::with(())
            .given(commissioned())
            .when(cmd_commission())
            .then_expect_events(vec![]);
    }

    #[test]
    fn commissioning_with_a_missing_checklist_item_lists_exactly_that_item() {
        let given: Vec<_> = starlink_complete()
            .into_iter()
            .filter(
                |e| !matches!(e, InstallationEvent::ChecklistItemCompleted { item, .. } if item == "router_configured"),
            )
            .collect();
        Given::with(())
            .given(given)
            .when(cmd_commission())
            .then_expect_error(incomplete(&["router_configured"], &[], false));
    }

    #[test]
    fn commissioning_without_photos_lists_exactly_the_missing_kinds() {
        let given: Vec<_> = starlink_complete()
            .into_iter()
            .filter(|e| !matches!(e, InstallationEvent::PhotoAttached { kind, .. } if kind != "router"))
            .collect();
        Given::with(())
            .given(given)
            .when(cmd_commission())
            .then_expect_error(incomplete(&[], &["dish", "speed_test"], false));
    }

    #[test]
    fn commissioning_without_a_technician_is_refused() {
        let mut given = starlink_complete();
        given.push(InstallationEvent::TechnicianUnassigned {
            technician_id: "tech-1".into(),
            technicians: vec![],
            by: "ops".into(),
            at: at(3),
        });
        Given::with(())
            .given(given)
            .when(cmd_commission())
            .then_expect_error(incomplete(&[], &[], true));
    }

    #[test]
    fn commissioning_with_nothing_done_lists_everything_missing() {
        let mut given = starlink_in_progress();
        given.push(item("site_survey", 1, 6));
        given.push(photo("router", 1));
        given.push(InstallationEvent::TechnicianUnassigned {
            technician_id: "tech-1".into(),
            technicians: vec![],
            by: "ops".into(),
            at: at(3),
        });
        Given::with(())
            .given(given)
            .when(cmd_commission())
            .then_expect_error(incomplete(
                &[
                    "dish_mounted",
                    "cable_routed",
                    "router_configured",
                    "connectivity_tested",
                    "customer_trained",
                ],
                &["dish", "speed_test"],
                true,
            ));
    }

    #[test]
    fn a_pending_installation_cannot_be_commissioned() {
        Given::with(())
            .given(vec![opened(InstallationType::Starlink)])
            .when(cmd_commission())
            .then_expect_error(InstallationError::NotInProgress {
                action: "commission",
                status: "pending",
            });
    }

    // Activation and decommissioning

    #[test]
    fn a_commissioned_installation_is_activated() {
        Given::with(())
            .given(commissioned())
            .when(InstallationCommand::Activate {
                by: "ops".into(),
                at: at(2),
            })
            .then_expect_events(vec![moved(
                InstallationStatus::Commissioned,
                InstallationStatus::Active,
            )]);
    }

    #[test]
    fn an_installation_in_progress_cannot_be_activated() {
        Given::with(())
            .given(starlink_in_progress())
            .when(InstallationCommand::Activate {
                by: "ops".into(),
                at: at(2),
            })
            .then_expect_error(InstallationError::StatusMoveNotAllowed {
                from: "in_progress",
                to: "active",
            });
    }

    #[test]
    fn an_active_installation_is_decommissioned_with_a_reason() {
        let mut given = commissioned();
        given.push(moved(InstallationStatus::Commissioned, InstallationStatus::Active));
        Given::with(())
            .given(given)
            .when(InstallationCommand::Decommission {
                reason: Some(env("moved house")),
                by: "ops".into(),
                at: at(2),
            })
            .then_expect_events(vec![InstallationEvent::InstallationStatusChanged {
                from: InstallationStatus::Active,
                to: InstallationStatus::Decommissioned,
                reason: Some(env("moved house")),
                by: "ops".into(),
                at: at(2),
            }]);
    }

    #[test]
    fn a_pending_installation_cannot_be_decommissioned() {
        Given::with(())
            .given(vec![opened(InstallationType::Solar)])
            .when(InstallationCommand::Decommission {
                reason: None,
                by: "ops".into(),
                at: at(2),
            })
            .then_expect_error(InstallationError::StatusMoveNotAllowed {
                from: "pending",
                to: "decommissioned",
            });
    }

    #[test]
    fn every_event_type_is_listed() {
        let mut events = commissioned();
        events.push(corrected(Some("a"), None));
        for e in &events {
            assert!(InstallationEvent::TYPES.contains(&cqrs_es::DomainEvent::event_type(e).as_str()));
        }
        assert_eq!(InstallationEvent::TYPES.len(), 11);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).single().unwrap()
    }

    /// A small alphabet of commands over a Starlink job: enough to reach every status.
    fn any_command() -> impl Strategy<Value = InstallationCommand> {
        let items = required_checklist(InstallationType::Starlink);
        let photos = photo_requirements(InstallationType::Starlink);
        prop_oneof![
            (0..2usize).prop_map(|t| InstallationCommand::AssignTechnician {
                technician_id: format!("tech-{t}"),
                by: "ops".into(),
                at: at(),
            }),
            (0..2usize).prop_map(|t| InstallationCommand::UnassignTechnician {
                technician_id: format!("tech-{t}"),
                by: "ops".into(),
                at: at(),
            }),
            Just(InstallationCommand::StartWork {
                by: "ops".into(),
                at: at()
            }),
            (0..items.len()).prop_map(move |i| InstallationCommand::CompleteChecklistItem {
                item: items[i].into(),
                by: "t".into(),
                at: at(),
            }),
            (0..photos.len()).prop_map(move |i| InstallationCommand::AttachPhoto {
                kind: photos[i].into(),
                sha256: "0f".repeat(32),
                by: "t".into(),
                at: at(),
            }),
            Just(InstallationCommand::Commission {
                by: "ops".into(),
                at: at()
            }),
            Just(InstallationCommand::Activate {
                by: "ops".into(),
                at: at()
            }),
            Just(InstallationCommand::Decommission {
                reason: None,
                by: "ops".into(),
                at: at()
            }),
            (1..4u32).prop_map(|k| InstallationCommand::CorrectDetails {
                site_address: None,
                system_size_w: Some(k * 500),
                reason: Envelope {
                    enc: "aes256gcm.v1".into(),
                    nonce: "n".into(),
                    ciphertext: "r".into()
                },
                by: "ops".into(),
                at: at(),
            }),
        ]
    }

    /// The reference model: what the record should hold.
    struct Model {
        size: u32,
        status: InstallationStatus,
        technicians: BTreeSet<String>,
        items: BTreeSet<String>,
        photos: BTreeSet<String>,
    }

    impl Model {
        fn complete(&self) -> bool {
            required_checklist(InstallationType::Starlink)
                .iter()
                .all(|i| self.items.contains(*i))
                && photo_requirements(InstallationType::Starlink)
                    .iter()
                    .all(|p| self.photos.contains(*p))
                && !self.technicians.is_empty()
        }

        /// The status the command should lead to, or `None` when it should be refused.
        fn expect(&mut self, command: &InstallationCommand) -> Option<InstallationStatus> {
            use InstallationCommand as C;
            use InstallationStatus as S;
            let staffable = self.status.before_commissioning();
            let working = self.status == S::InProgress;
            match command {
                C::AssignTechnician { technician_id, .. } if staffable => {
                    self.technicians.insert(technician_id.clone());
                }
                C::UnassignTechnician { technician_id, .. } if staffable => {
                    self.technicians.remove(technician_id);
                }
                C::StartWork { .. } if self.status == S::Pending && !self.technicians.is_empty() => {
                    self.status = S::InProgress
                }
                C::StartWork { .. } if self.status == S::InProgress => {}
                C::CompleteChecklistItem { item, .. } if working => {
                    self.items.insert(item.clone());
                }
                C::AttachPhoto { kind, .. } if working => {
                    self.photos.insert(kind.clone());
                }
                C::Commission { .. } if working && self.complete() => self.status = S::Commissioned,
                C::Commission { .. } if self.status > S::InProgress => {}
                C::Activate { .. } if matches!(self.status, S::Commissioned | S::Active) => self.status = S::Active,
                C::Decommission { .. } if self.status >= S::Commissioned => self.status = S::Decommissioned,
                C::CorrectDetails {
                    system_size_w: Some(size),
                    ..
                } if self.status != S::Decommissioned && (staffable || *size == self.size) => self.size = *size,
                _ => return None,
            }
            Some(self.status)
        }
    }

    proptest! {
        /// Whatever is asked in whatever order: the record agrees with the reference model,
        /// every recorded status change is an allowed move, and commissioning happens only
        /// with the checklist, the photos and a technician complete.
        #[test]
        fn the_status_machine_follows_the_reference_model(commands in proptest::collection::vec(any_command(), 0..40)) {
            let mut record = InstallationRecord::default();
            let open = InstallationCommand::Open(OpenInstallation {
                installation_type: InstallationType::Starlink,
                customer_id: "ct_1".into(),
                order_id: "ord_1".into(),
                site_address: Envelope { enc: "aes256gcm.v1".into(), nonce: "n".into(), ciphertext: "c".into() },
                system_size_w: 1_500,
                by: "pm".into(),
                at: at(),
            });
            record.apply(record.decide(open).unwrap().unwrap());
            let mut model = Model {
                size: 1_500,
                status: InstallationStatus::default(),
                technicians: BTreeSet::new(),
                items: BTreeSet::new(),
                photos: BTreeSet::new(),
            };
            for command in commands {
                let before = record.status();
                let expected = model.expect(&command);
                match record.decide(command) {
                    Ok(Some(event)) => {
                        if let InstallationEvent::InstallationStatusChanged { from, to, .. } = &event {
                            prop_assert_eq!(*from, before);
                            prop_assert!(before.may_move_to(*to));
                        }
                        if let InstallationEvent::InstallationCommissioned { system_size_w, .. } = &event {
                            prop_assert_eq!(*system_size_w, model.size, "the size corrected last is commissioned");
                            prop_assert_eq!(before, InstallationStatus::InProgress);
                            prop_assert!(record.missing_checklist_items().is_empty());
                            prop_assert!(record.missing_photos().is_empty());
                            prop_assert!(!record.technicians().is_empty());
                        }
                        record.apply(event);
                    }
                    Ok(None) => prop_assert_eq!(record.status(), before),
                    Err(InstallationError::CommissioningIncomplete { missing_checklist_items, missing_photos, no_technician }) => {
                        prop_assert_eq!(missing_checklist_items, record.missing_checklist_items());
                        prop_assert_eq!(missing_photos, record.missing_photos());
                        prop_assert_eq!(no_technician, record.technicians().is_empty());
                    }
                    Err(_) => {}
                }
                prop_assert_eq!(Some(record.status()).filter(|_| expected.is_some()), expected);
                prop_assert_eq!(record.status(), model.status);
                prop_assert_eq!(record.technicians(), &model.technicians);
            }
        }
    }
}
