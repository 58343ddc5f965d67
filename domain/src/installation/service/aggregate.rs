//! The `ServiceRequest` aggregate's state and its command handling.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{OpenServiceRequest, ServiceCommand};
use super::error::ServiceError;
use super::events::ServiceEvent;
use super::values::{sla_due_at, ServiceStatus};

/// A service ticket.
// `serde(default)`: snapshots taken before a field existed still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct ServiceRequest {
    ticket_number: Option<u64>,
    customer_id: String,
    status: ServiceStatus,
    sla_due_at: Option<DateTime<Utc>>,
    technician_id: Option<String>,
    breached: bool,
}

fn blank(value: &str, field: &'static str) -> Result<(), ServiceError> {
    if value.trim().is_empty() {
        Err(ServiceError::Blank { field })
    } else {
        Ok(())
    }
}

impl ServiceRequest {
    /// The ticket number, once opened.
    pub fn ticket_number(&self) -> Option<u64> {
        self.ticket_number
    }

    /// The customer's contact id (personal fields of the request are sealed under their key).
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }

    /// The request's status.
    pub fn status(&self) -> ServiceStatus {
        self.status
    }

    /// When the SLA is due, once opened.
    pub fn sla_due_at(&self) -> Option<DateTime<Utc>> {
        self.sla_due_at
    }

    /// Whether the SLA was breached.
    pub fn breached(&self) -> bool {
        self.breached
    }

    /// The technician assigned, if any.
    pub fn technician_id(&self) -> Option<&str> {
        self.technician_id.as_deref()
    }

    fn due(&self) -> Result<DateTime<Utc>, ServiceError> {
        self.sla_due_at.ok_or(ServiceError::UnknownServiceRequest)
    }

    /// `Ok(false)` when the request is already at `to` (a repeat), `Ok(true)` for an allowed move.
    fn may_move(&self, to: ServiceStatus) -> Result<bool, ServiceError> {
        self.due()?;
        if self.status == to {
            return Ok(false);
        }
        if !self.status.may_move_to(to) {
            return Err(ServiceError::ServiceMoveNotAllowed {
                from: self.status.as_str(),
                to: to.as_str(),
            });
        }
        Ok(true)
    }

    fn open(&self, o: OpenServiceRequest) -> Result<Vec<ServiceEvent>, ServiceError> {
        if self.ticket_number.is_some() {
            return Ok(vec![]);
        }
        if o.ticket_number == 0 {
            return Err(ServiceError::ZeroTicketNumber);
        }
        blank(&o.kind, "kind")?;
        blank(&o.customer_id, "customer id")?;
        if let Some(installation_id) = &o.installation_id {
            blank(installation_id, "installation id")?;
        }
        Ok(vec![ServiceEvent::ServiceRequestOpened {
            ticket_number: o.ticket_number,
            kind: o.kind.trim().to_string(),
            priority: o.priority,
            customer_id: o.customer_id,
            installation_id: o.installation_id,
            description: o.description,
            sla_due_at: sla_due_at(o.at, o.priority),
            by: o.by,
            at: o.at,
        }])
    }

    /// Decides what a command records: nothing for a repeat, events, or a refusal.
    fn decide(&self, command: ServiceCommand) -> Result<Vec<ServiceEvent>, ServiceError> {
        use ServiceEvent as E;
        match command {
            ServiceCommand::Open(o) => self.open(o),
            ServiceCommand::Assign { technician_id, by, at } => {
                blank(&technician_id, "technician id")?;
                self.due()?;
                if !self.status.is_pending() {
                    return Err(ServiceError::ServiceMoveNotAllowed {
                        from: self.status.as_str(),
                        to: ServiceStatus::Assigned.as_str(),
                    });
                }
                if self.technician_id.as_deref() == Some(technician_id.as_str()) {
                    return Ok(vec![]);
                }
                Ok(vec![E::ServiceRequestAssigned {
                    technician_id,
                    previous: self.technician_id.clone(),
                    by,
                    at,
                }])
            }
            ServiceCommand::Resolve { resolution, by, at } => {
                if !self.may_move(ServiceStatus::Resolved)? {
                    return Ok(vec![]);
                }
                let due = self.due()?;
                let mut events = vec![];
                let late = !self.breached && at >= due;
                if late {
                    events.push(E::ServiceSlaBreached { sla_due_at: due, at });
                }
                events.push(E::ServiceRequestResolved {
                    resolution,
                    breached: self.breached || late,
                    by,
                    at,
                });
                Ok(events)
            }
            ServiceCommand::Close { by, at } => Ok(if self.may_move(ServiceStatus::Closed)? {
                vec![E::ServiceRequestClosed { by, at }]
            } else {
                vec![]
            }),
            ServiceCommand::CheckSla { at } => {
                let due = self.due()?;
                if self.breached || !self.status.is_pending() {
                    // Decided already: breached once, or resolved in time.
                    return Ok(vec![]);
                }
                if at < due {
                    return Err(ServiceError::SlaNotYetDue { sla_due_at: due });
                }
                Ok(vec![E::ServiceSlaBreached { sla_due_at: due, at }])
            }
        }
    }
}

impl Aggregate for ServiceRequest {
    const TYPE: &'static str = "ServiceRequest";
    type Command = ServiceCommand;
    type Event = ServiceEvent;
    type Error = ServiceError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ServiceEvent::ServiceRequestOpened {
                ticket_number,
                customer_id,
                sla_due_at,
                ..
            } => {
                self.ticket_number = Some(ticket_number);
                self.customer_id = customer_id;
                self.sla_due_at = Some(sla_due_at);
                self.status = ServiceStatus::Open;
            }
            ServiceEvent::ServiceRequestAssigned { technician_id, .. } => {
                self.technician_id = Some(technician_id);
                self.status = ServiceStatus::Assigned;
            }
            ServiceEvent::ServiceSlaBreached { .. } => self.breached = true,
            ServiceEvent::ServiceRequestResolved { .. } => self.status = ServiceStatus::Resolved,
            ServiceEvent::ServiceRequestClosed { .. } => self.status = ServiceStatus::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::installation::service::Priority;
    use crate::pii::Envelope;
    use chrono::{Duration, TimeZone};
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<ServiceRequest>;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).single().unwrap()
    }

    fn env(tag: &str) -> Envelope {
        Envelope {
            enc: "aes256gcm.v1".into(),
            nonce: format!("n-{tag}"),
            ciphertext: format!("c-{tag}"),
        }
    }

    fn open_command() -> OpenServiceRequest {
        OpenServiceRequest {
            ticket_number: 7,
            kind: "repair".into(),
            priority: Priority::Urgent,
            customer_id: "ct_1".into(),
            installation_id: Some("isr_1".into()),
            description: env("desc"),
            by: "agent".into(),
            at: t0(),
        }
    }

    fn opened() -> ServiceEvent {
        ServiceEvent::ServiceRequestOpened {
            ticket_number: 7,
            kind: "repair".into(),
            priority: Priority::Urgent,
            customer_id: "ct_1".into(),
            installation_id: Some("isr_1".into()),
            description: env("desc"),
            sla_due_at: t0() + Duration::hours(4),
            by: "agent".into(),
            at: t0(),
        }
    }

    fn assigned(tech: &str, previous: Option<&str>) -> ServiceEvent {
        ServiceEvent::ServiceRequestAssigned {
            technician_id: tech.into(),
            previous: previous.map(str::to_string),
            by: "ops".into(),
            at: t0() + Duration::hours(1),
        }
    }

    fn assign(tech: &str) -> ServiceCommand {
        ServiceCommand::Assign {
            technician_id: tech.into(),
            by: "ops".into(),
            at: t0() + Duration::hours(1),
        }
    }

    fn resolve(hours: i64) -> ServiceCommand {
        ServiceCommand::Resolve {
            resolution: env("fixed"),
            by: "tech-1".into(),
            at: t0() + Duration::hours(hours),
        }
    }

    fn resolved(hours: i64, breached: bool) -> ServiceEvent {
        ServiceEvent::ServiceRequestResolved {
            resolution: env("fixed"),
            breached,
            by: "tech-1".into(),
            at: t0() + Duration::hours(hours),
        }
    }

    fn breached(hours: i64) -> ServiceEvent {
        ServiceEvent::ServiceSlaBreached {
            sla_due_at: t0() + Duration::hours(4),
            at: t0() + Duration::hours(hours),
        }
    }

    fn close() -> ServiceCommand {
        ServiceCommand::Close {
            by: "ops".into(),
            at: t0() + Duration::hours(9),
        }
    }

    fn check(hours: i64) -> ServiceCommand {
        ServiceCommand::CheckSla {
            at: t0() + Duration::hours(hours),
        }
    }

    // Open

    #[test]
    fn a_request_opens_with_its_sla_due_time() {
        Given::with(())
            .given_no_previous_events()
            .when(ServiceCommand::Open(open_command()))
            .then_expect_events(vec![opened()]);
    }

    #[test]
    fn opening_a_request_twice_records_nothing() {
        Given::with(())
            .given(vec![opened()])
            .when(ServiceCommand::Open(open_command()))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_request_without_a_ticket_number_is_refused() {
        let mut o = open_command();
        o.ticket_number = 0;
        Given::with(())
            .given_no_previous_events()
            .when(ServiceCommand::Open(o))
            .then_expect_error(ServiceError::ZeroTicketNumber);
    }

    #[test]
    fn a_request_without_a_kind_customer_or_named_installation_is_refused() {
        for (field, edit) in [
            (
                "kind",
                (|o: &mut OpenServiceRequest| o.kind = " ".into()) as fn(&mut OpenServiceRequest),
            ),
            ("customer id", |o: &mut OpenServiceRequest| o.customer_id.clear()),
            ("installation id", |o: &mut OpenServiceRequest| {
                o.installation_id = Some(String::new())
            }),
        ] {
            let mut o = open_command();
            edit(&mut o);
            Given::with(())
                .given_no_previous_events()
                .when(ServiceCommand::Open(o))
                .then_expect_error(ServiceError::Blank { field });
        }
    }

    // Assign

    #[test]
    fn an_open_request_is_assigned_to_a_technician() {
        Given::with(())
            .given(vec![opened()])
            .when(assign("tech-1"))
            .then_expect_events(vec![assigned("tech-1", None)]);
    }

    #[test]
    fn an_assigned_request_is_reassigned_naming_the_previous_technician() {
        Given::with(())
            .given(vec![opened(), assigned("tech-1", None)])
            .when(assign("tech-2"))
            .then_expect_events(vec![assigned("tech-2", Some("tech-1"))]);
    }

    #[test]
    fn assigning_the_same_technician_again_records_nothing() {
        Given::with(())
            .given(vec![opened(), assigned("tech-1", None)])
            .when(assign("tech-1"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn assigning_a_resolved_request_is_refused() {
        Given::with(())
            .given(vec![opened(), resolved(2, false)])
            .when(assign("tech-1"))
            .then_expect_error(ServiceError::ServiceMoveNotAllowed {
                from: "resolved",
                to: "assigned",
            });
    }

    #[test]
    fn assigning_an_unknown_request_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(assign("tech-1"))
            .then_expect_error(ServiceError::UnknownServiceRequest);
    }

    #[test]
    fn assigning_a_blank_technician_is_refused() {
        Given::with(())
            .given(vec![opened()])
            .when(assign(""))
            .then_expect_error(ServiceError::Blank { field: "technician id" });
    }

    // Resolve

    #[test]
    fn a_request_resolved_in_time_is_not_breached() {
        Given::with(())
            .given(vec![opened(), assigned("tech-1", None)])
            .when(resolve(2))
            .then_expect_events(vec![resolved(2, false)]);
    }

    #[test]
    fn a_request_resolved_after_its_due_time_records_the_breach_first() {
        Given::with(())
            .given(vec![opened(), assigned("tech-1", None)])
            .when(resolve(6))
            .then_expect_events(vec![breached(6), resolved(6, true)]);
    }

    #[test]
    fn a_request_already_breached_is_resolved_without_a_second_breach() {
        Given::with(())
            .given(vec![opened(), breached(5)])
            .when(resolve(6))
            .then_expect_events(vec![resolved(6, true)]);
    }

    #[test]
    fn resolving_twice_records_nothing() {
        Given::with(())
            .given(vec![opened(), resolved(2, false)])
            .when(resolve(3))
            .then_expect_events(vec![]);
    }

    #[test]
    fn resolving_a_closed_request_is_refused() {
        Given::with(())
            .given(vec![
                opened(),
                resolved(2, false),
                ServiceEvent::ServiceRequestClosed {
                    by: "ops".into(),
                    at: t0() + Duration::hours(9),
                },
            ])
            .when(resolve(10))
            .then_expect_error(ServiceError::ServiceMoveNotAllowed {
                from: "closed",
                to: "resolved",
            });
    }

    #[test]
    fn resolving_an_unknown_request_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(resolve(1))
            .then_expect_error(ServiceError::UnknownServiceRequest);
    }

    // Close

    #[test]
    fn a_resolved_request_is_closed() {
        Given::with(())
            .given(vec![opened(), resolved(2, false)])
            .when(close())
            .then_expect_events(vec![ServiceEvent::ServiceRequestClosed {
                by: "ops".into(),
                at: t0() + Duration::hours(9),
            }]);
    }

    #[test]
    fn closing_an_unresolved_request_is_refused() {
        Given::with(())
            .given(vec![opened(), assigned("tech-1", None)])
            .when(close())
            .then_expect_error(ServiceError::ServiceMoveNotAllowed {
                from: "assigned",
                to: "closed",
            });
    }

    #[test]
    fn closing_an_unknown_request_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(close())
            .then_expect_error(ServiceError::UnknownServiceRequest);
    }

    // CheckSla

    #[test]
    fn a_pending_request_past_its_due_time_is_breached() {
        Given::with(())
            .given(vec![opened(), assigned("tech-1", None)])
            .when(check(4))
            .then_expect_events(vec![breached(4)]);
    }

    #[test]
    fn a_breach_is_recorded_once() {
        Given::with(())
            .given(vec![opened(), breached(4)])
            .when(check(5))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_request_resolved_in_time_is_never_breached() {
        Given::with(())
            .given(vec![opened(), resolved(2, false)])
            .when(check(10))
            .then_expect_events(vec![]);
    }

    #[test]
    fn checking_before_the_due_time_is_refused() {
        Given::with(())
            .given(vec![opened()])
            .when(check(3))
            .then_expect_error(ServiceError::SlaNotYetDue {
                sla_due_at: t0() + Duration::hours(4),
            });
    }

    #[test]
    fn checking_an_unknown_request_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(check(3))
            .then_expect_error(ServiceError::UnknownServiceRequest);
    }

    #[test]
    fn every_event_type_is_listed() {
        for e in [
            opened(),
            assigned("t", None),
            breached(5),
            resolved(5, true),
            close_event(),
        ] {
            assert!(ServiceEvent::TYPES.contains(&cqrs_es::DomainEvent::event_type(&e).as_str()));
        }
        assert_eq!(ServiceEvent::TYPES.len(), 5);
    }

    fn close_event() -> ServiceEvent {
        ServiceEvent::ServiceRequestClosed {
            by: "o".into(),
            at: t0(),
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::installation::service::{OpenServiceRequest, Priority};
    use crate::pii::Envelope;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).single().unwrap()
    }

    fn env() -> Envelope {
        Envelope {
            enc: "aes256gcm.v1".into(),
            nonce: "n".into(),
            ciphertext: "c".into(),
        }
    }

    /// Commands at increasing times: each carries a step in minutes added to the clock.
    fn any_command() -> impl Strategy<Value = (i64, u8, u8)> {
        (0..600i64, 0..4u8, 0..3u8)
    }

    fn command(kind: u8, tech: u8, at: DateTime<Utc>) -> ServiceCommand {
        match kind {
            0 => ServiceCommand::Assign {
                technician_id: format!("tech-{tech}"),
                by: "ops".into(),
                at,
            },
            1 => ServiceCommand::Resolve {
                resolution: env(),
                by: "t".into(),
                at,
            },
            2 => ServiceCommand::Close { by: "ops".into(), at },
            _ => ServiceCommand::CheckSla { at },
        }
    }

    proptest! {
        /// Whatever is asked as time passes: the due time is the opening plus the priority's
        /// SLA; a breach is recorded at most once, only at or after the due time and never
        /// after a resolution in time; every recorded move is allowed; and the breach flag
        /// agrees with the reference (resolved or checked at or after the due time while
        /// pending).
        #[test]
        fn the_sla_is_breached_once_by_log_time(priority in 0..4usize, steps in proptest::collection::vec(any_command(), 0..30)) {
            let priority = Priority::ALL[priority];
            let mut sr = ServiceRequest::default();
            let events = sr.decide(ServiceCommand::Open(OpenServiceRequest {
                ticket_number: 1,
                kind: "repair".into(),
                priority,
                customer_id: "ct_1".into(),
                installation_id: None,
                description: env(),
                by: "a".into(),
                at: t0(),
            })).unwrap();
            for e in events { sr.apply(e); }
            let due = t0() + priority.sla();
            prop_assert_eq!(sr.sla_due_at(), Some(due));
            let mut now = t0();
            let mut breaches = 0;
            let mut model_breached = false;
            for (minutes, kind, tech) in steps {
                now += Duration::minutes(minutes);
                let pending = sr.status().is_pending();
                if pending && now >= due && (kind == 1 || kind == 3) {
                    model_breached = true;
                }
                let before = sr.status();
                if let Ok(events) = sr.decide(command(kind, tech, now)) {
                    for event in events {
                        if let ServiceEvent::ServiceSlaBreached { at, .. } = &event {
                            breaches += 1;
                            prop_assert!(*at >= due);
                            prop_assert!(before.is_pending());
                        }
                        sr.apply(event);
                    }
                    if sr.status() != before {
                        prop_assert!(before.may_move_to(sr.status()));
                    }
                }
                prop_assert!(breaches <= 1);
                prop_assert_eq!(sr.breached(), model_breached);
            }
        }
    }
}
