//! The `Warranty` aggregate's state and its command handling.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{RegisterWarranty, WarrantyCommand};
use super::error::WarrantyError;
use super::events::WarrantyEvent;
use super::values::{warranty_ends_at, warranty_local_id, WarrantyStatus, WarrantyTerms, MAX_WARRANTY_MONTHS};

/// What a warranty was registered with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Registered {
    installation_id: String,
    serial: String,
    customer_id: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

/// The warranty of one installed component.
// `serde(default)`: snapshots taken before a field existed still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Warranty {
    registered: Option<Registered>,
    status: WarrantyStatus,
}

fn blank(value: &str, field: &'static str) -> Result<(), WarrantyError> {
    if value.trim().is_empty() {
        Err(WarrantyError::Blank { field })
    } else {
        Ok(())
    }
}

impl Warranty {
    /// Whether the warranty was registered.
    pub fn is_registered(&self) -> bool {
        self.registered.is_some()
    }

    /// The warranty's status.
    pub fn status(&self) -> WarrantyStatus {
        self.status
    }

    /// The terms a claim is checked against, once registered.
    pub fn terms(&self) -> Option<WarrantyTerms> {
        self.registered.as_ref().map(|r| WarrantyTerms {
            warranty_id: warranty_local_id(&r.installation_id, &r.serial),
            installation_id: r.installation_id.clone(),
            serial: r.serial.clone(),
            customer_id: r.customer_id.clone(),
            status: self.status,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
        })
    }

    fn register(&self, r: RegisterWarranty) -> Result<Option<WarrantyEvent>, WarrantyError> {
        if self.registered.is_some() {
            // The first registration stands.
            return Ok(None);
        }
        blank(&r.installation_id, "installation id")?;
        blank(&r.serial, "serial")?;
        blank(&r.kind, "component kind")?;
        blank(&r.customer_id, "customer id")?;
        let ends_at = warranty_ends_at(r.starts_at, r.warranty_months).ok_or(WarrantyError::InvalidWarrantyPeriod {
            months: r.warranty_months,
            max: MAX_WARRANTY_MONTHS,
        })?;
        Ok(Some(WarrantyEvent::WarrantyRegistered {
            installation_id: r.installation_id,
            serial: r.serial,
            kind: r.kind,
            customer_id: r.customer_id,
            warranty_months: r.warranty_months,
            starts_at: r.starts_at,
            ends_at,
            by: r.by,
            at: r.at,
        }))
    }

    /// Decides what a command records: `Ok(None)` for a repeat, an event, or a refusal.
    fn decide(&self, command: WarrantyCommand) -> Result<Option<WarrantyEvent>, WarrantyError> {
        match command {
            WarrantyCommand::Register(r) => self.register(r),
            WarrantyCommand::Void { reason, by, at } => {
                if self.registered.is_none() {
                    return Err(WarrantyError::UnknownWarranty);
                }
                if self.status == WarrantyStatus::Voided {
                    return Ok(None);
                }
                Ok(Some(WarrantyEvent::WarrantyVoided { reason, by, at }))
            }
        }
    }
}

impl Aggregate for Warranty {
    const TYPE: &'static str = "Warranty";
    type Command = WarrantyCommand;
    type Event = WarrantyEvent;
    type Error = WarrantyError;
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
        match event {
            WarrantyEvent::WarrantyRegistered {
                installation_id,
                serial,
                customer_id,
                starts_at,
                ends_at,
                ..
            } => {
                self.registered = Some(Registered {
                    installation_id,
                    serial,
                    customer_id,
                    starts_at,
                    ends_at,
                });
                self.status = WarrantyStatus::Active;
            }
            WarrantyEvent::WarrantyVoided { .. } => self.status = WarrantyStatus::Voided,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::Envelope;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Warranty>;

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 10, 0, 0).single().unwrap()
    }

    fn env(tag: &str) -> Envelope {
        Envelope {
            enc: "aes256gcm.v1".into(),
            nonce: format!("n-{tag}"),
            ciphertext: format!("c-{tag}"),
        }
    }

    fn register(months: u32) -> RegisterWarranty {
        RegisterWarranty {
            installation_id: "isr_1".into(),
            serial: "SN-INV-1".into(),
            kind: "inverter".into(),
            customer_id: "ct_1".into(),
            warranty_months: months,
            starts_at: day(2026, 11, 1),
            by: "pm".into(),
            at: day(2026, 11, 1),
        }
    }

    fn registered() -> WarrantyEvent {
        WarrantyEvent::WarrantyRegistered {
            installation_id: "isr_1".into(),
            serial: "SN-INV-1".into(),
            kind: "inverter".into(),
            customer_id: "ct_1".into(),
            warranty_months: 24,
            starts_at: day(2026, 11, 1),
            ends_at: day(2028, 11, 1),
            by: "pm".into(),
            at: day(2026, 11, 1),
        }
    }

    fn voided() -> WarrantyEvent {
        WarrantyEvent::WarrantyVoided {
            reason: env("why"),
            by: "ops".into(),
            at: day(2027, 1, 1),
        }
    }

    fn void() -> WarrantyCommand {
        WarrantyCommand::Void {
            reason: env("why"),
            by: "ops".into(),
            at: day(2027, 1, 1),
        }
    }

    #[test]
    fn a_warranty_is_registered_active_with_its_derived_end() {
        Given::with(())
            .given_no_previous_events()
            .when(WarrantyCommand::Register(register(24)))
            .then_expect_events(vec![registered()]);
    }

    #[test]
    fn registering_the_same_warranty_twice_records_nothing() {
        Given::with(())
            .given(vec![registered()])
            .when(WarrantyCommand::Register(register(60)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_warranty_of_zero_months_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(WarrantyCommand::Register(register(0)))
            .then_expect_error(WarrantyError::InvalidWarrantyPeriod {
                months: 0,
                max: MAX_WARRANTY_MONTHS,
            });
    }

    #[test]
    fn a_warranty_longer_than_the_maximum_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(WarrantyCommand::Register(register(MAX_WARRANTY_MONTHS + 1)))
            .then_expect_error(WarrantyError::InvalidWarrantyPeriod {
                months: MAX_WARRANTY_MONTHS + 1,
                max: MAX_WARRANTY_MONTHS,
            });
    }

    #[test]
    fn a_warranty_without_a_serial_is_refused() {
        let mut r = register(12);
        r.serial = " ".into();
        Given::with(())
            .given_no_previous_events()
            .when(WarrantyCommand::Register(r))
            .then_expect_error(WarrantyError::Blank { field: "serial" });
    }

    #[test]
    fn a_warranty_without_an_installation_kind_or_customer_is_refused() {
        for (field, edit) in [
            (
                "installation id",
                (|r: &mut RegisterWarranty| r.installation_id.clear()) as fn(&mut RegisterWarranty),
            ),
            ("component kind", |r: &mut RegisterWarranty| r.kind.clear()),
            ("customer id", |r: &mut RegisterWarranty| r.customer_id.clear()),
        ] {
            let mut r = register(12);
            edit(&mut r);
            Given::with(())
                .given_no_previous_events()
                .when(WarrantyCommand::Register(r))
                .then_expect_error(WarrantyError::Blank { field });
        }
    }

    #[test]
    fn an_active_warranty_can_be_voided() {
        Given::with(())
            .given(vec![registered()])
            .when(void())
            .then_expect_events(vec![voided()]);
    }

    #[test]
    fn voiding_a_voided_warranty_records_nothing() {
        Given::with(())
            .given(vec![registered(), voided()])
            .when(void())
            .then_expect_events(vec![]);
    }

    #[test]
    fn voiding_an_unregistered_warranty_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(void())
            .then_expect_error(WarrantyError::UnknownWarranty);
    }

    #[test]
    fn the_terms_follow_registration_and_voiding() {
        let mut w = Warranty::default();
        assert_eq!(w.terms(), None);
        w.apply(registered());
        let terms = w.terms().unwrap();
        assert_eq!(terms.warranty_id, "warranty_isr_1/SN-INV-1");
        assert_eq!(terms.ends_at, day(2028, 11, 1));
        assert!(terms.covers(day(2027, 6, 1)));
        w.apply(voided());
        assert!(!w.terms().unwrap().covers(day(2027, 6, 1)));
    }

    #[test]
    fn every_event_type_is_listed() {
        for e in [registered(), voided()] {
            assert!(WarrantyEvent::TYPES.contains(&cqrs_es::DomainEvent::event_type(&e).as_str()));
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::pii::Envelope;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn any_command() -> impl Strategy<Value = WarrantyCommand> {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap();
        prop_oneof![
            (0..400u32, 0..2000i64).prop_map(move |(months, days)| WarrantyCommand::Register(RegisterWarranty {
                installation_id: "isr_1".into(),
                serial: "SN".into(),
                kind: "panel".into(),
                customer_id: "ct_1".into(),
                warranty_months: months,
                starts_at: start + Duration::days(days),
                by: "pm".into(),
                at: start,
            })),
            Just(WarrantyCommand::Void {
                reason: Envelope {
                    enc: "aes256gcm.v1".into(),
                    nonce: "n".into(),
                    ciphertext: "c".into()
                },
                by: "ops".into(),
                at: start,
            }),
        ]
    }

    proptest! {
        /// Whatever is asked: the first valid registration stands (its end is after its start,
        /// within the maximum period), a voided warranty stays voided, and nothing but the first
        /// registration and the first void is ever recorded.
        #[test]
        fn the_first_registration_stands_and_voiding_is_final(commands in proptest::collection::vec(any_command(), 0..20)) {
            let mut w = Warranty::default();
            let mut first: Option<WarrantyTerms> = None;
            let mut recorded = 0;
            for command in commands {
                let was_voided = w.status() == WarrantyStatus::Voided && w.is_registered();
                if let Ok(Some(event)) = w.decide(command) {
                    recorded += 1;
                    w.apply(event);
                }
                if let Some(terms) = w.terms() {
                    prop_assert!(terms.starts_at < terms.ends_at);
                    prop_assert!(terms.ends_at <= terms.starts_at + Duration::days(31 * i64::from(MAX_WARRANTY_MONTHS)));
                    let first = first.get_or_insert_with(|| terms.clone());
                    prop_assert_eq!((first.starts_at, first.ends_at), (terms.starts_at, terms.ends_at));
                }
                if was_voided {
                    prop_assert_eq!(w.status(), WarrantyStatus::Voided);
                }
                prop_assert!(recorded <= 2);
            }
        }
    }
}
