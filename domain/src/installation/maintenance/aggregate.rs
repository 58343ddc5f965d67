//! The `MaintenanceContract` aggregate's state and its command handling.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{MaintenanceCommand, StartMaintenanceContract};
use super::error::MaintenanceError;
use super::events::MaintenanceEvent;
use super::values::{contract_end, ContractStatus, MAX_TERM_MONTHS};
use crate::installation::order::is_currency_code;

/// A maintenance contract.
// `serde(default)`: snapshots taken before a field existed still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct MaintenanceContract {
    ends_at: Option<DateTime<Utc>>,
    customer_id: String,
    status: ContractStatus,
    auto_renew: bool,
    /// Every renewal reference seen.
    references: BTreeSet<String>,
}

fn blank(value: &str, field: &'static str) -> Result<(), MaintenanceError> {
    if value.trim().is_empty() {
        Err(MaintenanceError::Blank { field })
    } else {
        Ok(())
    }
}

fn end(from: DateTime<Utc>, months: u32) -> Result<DateTime<Utc>, MaintenanceError> {
    contract_end(from, months).ok_or(MaintenanceError::InvalidTerm {
        months,
        max: MAX_TERM_MONTHS,
    })
}

impl MaintenanceContract {
    /// The end of the current term, once started.
    pub fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.ends_at
    }

    /// The customer's contact id (a cancellation reason is sealed under their key).
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }

    /// The contract's status.
    pub fn status(&self) -> ContractStatus {
        self.status
    }

    /// Whether the contract renews automatically.
    pub fn auto_renew(&self) -> bool {
        self.auto_renew
    }

    /// How many renewals were recorded.
    pub fn renewals(&self) -> usize {
        self.references.len()
    }

    fn started(&self) -> Result<DateTime<Utc>, MaintenanceError> {
        self.ends_at.ok_or(MaintenanceError::UnknownContract)
    }

    fn start(&self, s: StartMaintenanceContract) -> Result<Option<MaintenanceEvent>, MaintenanceError> {
        if self.ends_at.is_some() {
            return Ok(None);
        }
        blank(&s.customer_id, "customer id")?;
        if let Some(installation_id) = &s.installation_id {
            blank(installation_id, "installation id")?;
        }
        if s.annual_value_minor < 0 {
            return Err(MaintenanceError::NegativeValue);
        }
        if !is_currency_code(&s.currency) {
            return Err(MaintenanceError::InvalidCurrency { currency: s.currency });
        }
        let ends_at = end(s.starts_at, s.term_months)?;
        Ok(Some(MaintenanceEvent::MaintenanceContractStarted {
            customer_id: s.customer_id,
            installation_id: s.installation_id,
            starts_at: s.starts_at,
            ends_at,
            term_months: s.term_months,
            annual_value_minor: s.annual_value_minor,
            currency: s.currency,
            auto_renew: s.auto_renew,
            by: s.by,
            at: s.at,
        }))
    }

    /// Decides what a command records: `Ok(None)` for a repeat, an event, or a refusal.
    fn decide(&self, command: MaintenanceCommand) -> Result<Option<MaintenanceEvent>, MaintenanceError> {
        use MaintenanceCommand as C;
        use MaintenanceEvent as E;
        match command {
            C::Start(s) => self.start(s),
            C::Renew {
                reference,
                term_months,
                by,
                at,
            } => {
                let previous_ends_at = self.started()?;
                blank(&reference, "reference")?;
                if self.references.contains(&reference) {
                    // The first renewal under a reference stands.
                    return Ok(None);
                }
                if self.status == ContractStatus::Cancelled {
                    return Err(MaintenanceError::ContractCancelled);
                }
                let ends_at = end(previous_ends_at, term_months)?;
                // Bounded by the number of events in one stream.
                let renewals = u32::try_from(self.references.len() + 1).unwrap_or(u32::MAX);
                Ok(Some(E::MaintenanceContractRenewed {
                    reference,
                    term_months,
                    previous_ends_at,
                    ends_at,
                    renewals,
                    by,
                    at,
                }))
            }
            C::SetAutoRenewal { auto_renew, by, at } => {
                self.started()?;
                if self.status == ContractStatus::Cancelled {
                    return Err(MaintenanceError::ContractCancelled);
                }
                if self.auto_renew == auto_renew {
                    return Ok(None);
                }
                Ok(Some(E::MaintenanceAutoRenewalChanged { auto_renew, by, at }))
            }
            C::Cancel { reason, by, at } => {
                self.started()?;
                if self.status == ContractStatus::Cancelled {
                    return Ok(None);
                }
                Ok(Some(E::MaintenanceContractCancelled { reason, by, at }))
            }
        }
    }
}

impl Aggregate for MaintenanceContract {
    const TYPE: &'static str = "MaintenanceContract";
    type Command = MaintenanceCommand;
    type Event = MaintenanceEvent;
    type Error = MaintenanceError;
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
            MaintenanceEvent::MaintenanceContractStarted {
                customer_id,
                ends_at,
                auto_renew,
                ..
            } => {
                self.ends_at = Some(ends_at);
                self.customer_id = customer_id;
                self.auto_renew = auto_renew;
                self.status = ContractStatus::Active;
            }
            MaintenanceEvent::MaintenanceContractRenewed { reference, ends_at, .. } => {
                self.references.insert(reference);
                self.ends_at = Some(ends_at);
            }
            MaintenanceEvent::MaintenanceAutoRenewalChanged { auto_renew, .. } => self.auto_renew = auto_renew,
            MaintenanceEvent::MaintenanceContractCancelled { .. } => {
                self.status = ContractStatus::Cancelled;
                self.auto_renew = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<MaintenanceContract>;

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).single().unwrap()
    }

    fn start_command() -> StartMaintenanceContract {
        StartMaintenanceContract {
            customer_id: "ct_1".into(),
            installation_id: Some("isr_1".into()),
            starts_at: day(2026, 1, 1),
            term_months: 12,
            annual_value_minor: 120_000,
            currency: "USD".into(),
            auto_renew: true,
            by: "sales".into(),
            at: day(2025, 12, 20),
        }
    }

    fn started() -> MaintenanceEvent {
        MaintenanceEvent::MaintenanceContractStarted {
            customer_id: "ct_1".into(),
            installation_id: Some("isr_1".into()),
            starts_at: day(2026, 1, 1),
            ends_at: day(2027, 1, 1),
            term_months: 12,
            annual_value_minor: 120_000,
            currency: "USD".into(),
            auto_renew: true,
            by: "sales".into(),
            at: day(2025, 12, 20),
        }
    }

    fn renew(reference: &str, months: u32) -> MaintenanceCommand {
        MaintenanceCommand::Renew {
            reference: reference.into(),
            term_months: months,
            by: "finance".into(),
            at: day(2026, 11, 1),
        }
    }

    fn renewed(reference: &str, from: DateTime<Utc>, to: DateTime<Utc>, renewals: u32) -> MaintenanceEvent {
        MaintenanceEvent::MaintenanceContractRenewed {
            reference: reference.into(),
            term_months: 12,
            previous_ends_at: from,
            ends_at: to,
            renewals,
            by: "finance".into(),
            at: day(2026, 11, 1),
        }
    }

    fn cancelled() -> MaintenanceEvent {
        MaintenanceEvent::MaintenanceContractCancelled {
            reason: None,
            by: "ops".into(),
            at: day(2026, 5, 1),
        }
    }

    fn cancel() -> MaintenanceCommand {
        MaintenanceCommand::Cancel {
            reason: None,
            by: "ops".into(),
            at: day(2026, 5, 1),
        }
    }

    fn set_auto(auto_renew: bool) -> MaintenanceCommand {
        MaintenanceCommand::SetAutoRenewal {
            auto_renew,
            by: "ops".into(),
            at: day(2026, 2, 1),
        }
    }

    // Start

    #[test]
    fn a_contract_starts_with_its_derived_end() {
        Given::with(())
            .given_no_previous_events()
            .when(MaintenanceCommand::Start(start_command()))
            .then_expect_events(vec![started()]);
    }

    #[test]
    fn starting_a_contract_twice_records_nothing() {
        Given::with(())
            .given(vec![started()])
            .when(MaintenanceCommand::Start(start_command()))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_contract_with_a_zero_term_is_refused() {
        let mut s = start_command();
        s.term_months = 0;
        Given::with(())
            .given_no_previous_events()
            .when(MaintenanceCommand::Start(s))
            .then_expect_error(MaintenanceError::InvalidTerm {
                months: 0,
                max: MAX_TERM_MONTHS,
            });
    }

    #[test]
    fn a_contract_with_a_negative_value_is_refused() {
        let mut s = start_command();
        s.annual_value_minor = -1;
        Given::with(())
            .given_no_previous_events()
            .when(MaintenanceCommand::Start(s))
            .then_expect_error(MaintenanceError::NegativeValue);
    }

    #[test]
    fn a_contract_in_an_unknown_currency_is_refused() {
        let mut s = start_command();
        s.currency = "dollars".into();
        Given::with(())
            .given_no_previous_events()
            .when(MaintenanceCommand::Start(s))
            .then_expect_error(MaintenanceError::InvalidCurrency {
                currency: "dollars".into(),
            });
    }

    #[test]
    fn a_contract_without_a_customer_is_refused() {
        let mut s = start_command();
        s.customer_id = "".into();
        Given::with(())
            .given_no_previous_events()
            .when(MaintenanceCommand::Start(s))
            .then_expect_error(MaintenanceError::Blank { field: "customer id" });
    }

    // Renew

    #[test]
    fn a_renewal_extends_from_the_old_end() {
        Given::with(())
            .given(vec![started()])
            .when(renew("inv-1", 12))
            .then_expect_events(vec![renewed("inv-1", day(2027, 1, 1), day(2028, 1, 1), 1)]);
    }

    #[test]
    fn a_second_renewal_extends_from_the_first_renewals_end() {
        Given::with(())
            .given(vec![started(), renewed("inv-1", day(2027, 1, 1), day(2028, 1, 1), 1)])
            .when(renew("inv-2", 12))
            .then_expect_events(vec![renewed("inv-2", day(2028, 1, 1), day(2029, 1, 1), 2)]);
    }

    #[test]
    fn renewing_under_a_known_reference_records_nothing() {
        Given::with(())
            .given(vec![started(), renewed("inv-1", day(2027, 1, 1), day(2028, 1, 1), 1)])
            .when(renew("inv-1", 24))
            .then_expect_events(vec![]);
    }

    #[test]
    fn renewing_a_cancelled_contract_is_refused() {
        Given::with(())
            .given(vec![started(), cancelled()])
            .when(renew("inv-1", 12))
            .then_expect_error(MaintenanceError::ContractCancelled);
    }

    #[test]
    fn renewing_for_too_long_a_term_is_refused() {
        Given::with(())
            .given(vec![started()])
            .when(renew("inv-1", MAX_TERM_MONTHS + 1))
            .then_expect_error(MaintenanceError::InvalidTerm {
                months: MAX_TERM_MONTHS + 1,
                max: MAX_TERM_MONTHS,
            });
    }

    #[test]
    fn renewing_without_a_reference_is_refused() {
        Given::with(())
            .given(vec![started()])
            .when(renew(" ", 12))
            .then_expect_error(MaintenanceError::Blank { field: "reference" });
    }

    #[test]
    fn renewing_an_unknown_contract_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(renew("inv-1", 12))
            .then_expect_error(MaintenanceError::UnknownContract);
    }

    // SetAutoRenewal

    #[test]
    fn auto_renewal_is_switched_off() {
        Given::with(())
            .given(vec![started()])
            .when(set_auto(false))
            .then_expect_events(vec![MaintenanceEvent::MaintenanceAutoRenewalChanged {
                auto_renew: false,
                by: "ops".into(),
                at: day(2026, 2, 1),
            }]);
    }

    #[test]
    fn setting_auto_renewal_to_what_it_is_records_nothing() {
        Given::with(())
            .given(vec![started()])
            .when(set_auto(true))
            .then_expect_events(vec![]);
    }

    #[test]
    fn switching_auto_renewal_on_a_cancelled_contract_is_refused() {
        Given::with(())
            .given(vec![started(), cancelled()])
            .when(set_auto(true))
            .then_expect_error(MaintenanceError::ContractCancelled);
    }

    #[test]
    fn switching_auto_renewal_on_an_unknown_contract_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(set_auto(true))
            .then_expect_error(MaintenanceError::UnknownContract);
    }

    // Cancel

    #[test]
    fn an_active_contract_is_cancelled() {
        Given::with(())
            .given(vec![started()])
            .when(cancel())
            .then_expect_events(vec![cancelled()]);
    }

    #[test]
    fn cancelling_twice_records_nothing() {
        Given::with(())
            .given(vec![started(), cancelled()])
            .when(cancel())
            .then_expect_events(vec![]);
    }

    #[test]
    fn cancelling_an_unknown_contract_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(cancel())
            .then_expect_error(MaintenanceError::UnknownContract);
    }

    #[test]
    fn every_event_type_is_listed() {
        for e in [started(), cancelled()] {
            assert!(MaintenanceEvent::TYPES.contains(&cqrs_es::DomainEvent::event_type(&e).as_str()));
        }
        assert_eq!(MaintenanceEvent::TYPES.len(), 4);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use chrono::{Months, TimeZone};
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).single().unwrap()
    }

    fn any_command() -> impl Strategy<Value = MaintenanceCommand> {
        prop_oneof![
            4 => (0..5u8, 0..30u32).prop_map(|(r, months)| MaintenanceCommand::Renew {
                reference: format!("ref-{r}"),
                term_months: months,
                by: "f".into(),
                at: t0(),
            }),
            1 => any::<bool>().prop_map(|auto_renew| MaintenanceCommand::SetAutoRenewal { auto_renew, by: "o".into(), at: t0() }),
            1 => Just(MaintenanceCommand::Cancel { reason: None, by: "o".into(), at: t0() }),
        ]
    }

    proptest! {
        /// Whatever is asked: the end is the start plus the sum of the accepted terms (each
        /// renewal extends from the old end, a known reference never extends twice), and
        /// nothing is renewed after cancellation.
        #[test]
        fn renewals_extend_from_the_old_end_once_per_reference(commands in proptest::collection::vec(any_command(), 0..30)) {
            let mut c = MaintenanceContract::default();
            let start = MaintenanceCommand::Start(StartMaintenanceContract {
                customer_id: "ct_1".into(),
                installation_id: None,
                starts_at: t0(),
                term_months: 12,
                annual_value_minor: 0,
                currency: "EUR".into(),
                auto_renew: false,
                by: "s".into(),
                at: t0(),
            });
            c.apply(c.decide(start).unwrap().unwrap());
            let mut model_months = 12u32;
            let mut seen = BTreeSet::new();
            let mut cancelled = false;
            for command in commands {
                match &command {
                    MaintenanceCommand::Renew { reference, term_months, .. }
                        if !seen.contains(reference) && !cancelled && (1..=MAX_TERM_MONTHS).contains(term_months) =>
                    {
                        seen.insert(reference.clone());
                        model_months += term_months;
                    }
                    MaintenanceCommand::Cancel { .. } => cancelled = true,
                    _ => {}
                }
                if let Ok(Some(event)) = c.decide(command) {
                    c.apply(event);
                }
                prop_assert_eq!(c.ends_at(), t0().checked_add_months(Months::new(model_months)));
                prop_assert_eq!(c.renewals(), seen.len());
                prop_assert_eq!(c.status() == ContractStatus::Cancelled, cancelled);
            }
        }
    }
}
