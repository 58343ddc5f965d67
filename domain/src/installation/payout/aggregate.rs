//! The `Payout` aggregate's state and its command handling.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{ComputePayout, PayoutCommand};
use super::error::PayoutError;
use super::events::PayoutEvent;
use super::values::{payout_for, PayoutStatus, PayoutTier, MAX_QUALITY_BONUS_MINOR};
use crate::installation::order::is_currency_code;

/// What a payout was computed as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Computed {
    technician_ids: Vec<String>,
    /// The current quality bonus (`amount - bonus` is the tier base). `serde(default)`:
    /// snapshots from before bonuses could be granted carry none.
    #[serde(default)]
    bonus_minor: i64,
    amount_minor: i64,
    currency: String,
}

/// A technician payout for one installation.
// `serde(default)`: snapshots taken before a field existed still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Payout {
    computed: Option<Computed>,
    status: PayoutStatus,
    paid_reference: Option<String>,
}

impl Payout {
    /// The payout's status.
    pub fn status(&self) -> PayoutStatus {
        self.status
    }

    /// The amount, once computed.
    pub fn amount_minor(&self) -> Option<i64> {
        self.computed.as_ref().map(|c| c.amount_minor)
    }

    fn computed(&self) -> Result<&Computed, PayoutError> {
        self.computed.as_ref().ok_or(PayoutError::UnknownPayout)
    }

    fn compute(&self, c: ComputePayout) -> Result<Option<PayoutEvent>, PayoutError> {
        if self.computed.is_some() {
            return Ok(None);
        }
        if c.installation_id.trim().is_empty() {
            return Err(PayoutError::Blank {
                field: "installation id",
            });
        }
        if c.technician_ids.iter().any(|t| t.trim().is_empty()) {
            return Err(PayoutError::Blank { field: "technician id" });
        }
        if c.technician_ids.is_empty() {
            return Err(PayoutError::NoTechnician);
        }
        if c.system_size_w == 0 {
            return Err(PayoutError::ZeroSystemSize);
        }
        if !is_currency_code(&c.currency) {
            return Err(PayoutError::InvalidCurrency { currency: c.currency });
        }
        let tier = PayoutTier::for_size(c.system_size_w);
        Ok(Some(PayoutEvent::PayoutComputed {
            installation_id: c.installation_id,
            technician_ids: c.technician_ids,
            system_size_w: c.system_size_w,
            tier,
            base_minor: tier.base_minor(),
            bonus_minor: i64::from(c.quality_bonus_minor.unwrap_or(0)),
            amount_minor: payout_for(c.system_size_w, c.quality_bonus_minor),
            currency: c.currency,
            by: c.by,
            at: c.at,
        }))
    }

    fn approve(&self, by: String, at: DateTime<Utc>) -> Result<Option<PayoutEvent>, PayoutError> {
        let computed = self.computed()?;
        if self.status != PayoutStatus::Pending {
            return Ok(None);
        }
        if computed.technician_ids.contains(&by) {
            return Err(PayoutError::SelfApproval { approver: by });
        }
        Ok(Some(PayoutEvent::PayoutApproved { by, at }))
    }

    fn grant_quality_bonus(
        &self,
        amount_minor: u32,
        by: String,
        at: DateTime<Utc>,
    ) -> Result<Option<PayoutEvent>, PayoutError> {
        let computed = self.computed()?;
        if self.status != PayoutStatus::Pending {
            return Err(PayoutError::PayoutNotPending {
                status: self.status.as_str(),
            });
        }
        if by.trim().is_empty() {
            return Err(PayoutError::Blank { field: "granted by" });
        }
        if computed.technician_ids.contains(&by) {
            return Err(PayoutError::SelfGrant { granter: by });
        }
        if amount_minor == 0 || amount_minor > MAX_QUALITY_BONUS_MINOR {
            return Err(PayoutError::QualityBonusOutOfRange {
                amount_minor,
                max: MAX_QUALITY_BONUS_MINOR,
            });
        }
        let bonus_minor = i64::from(amount_minor);
        if bonus_minor == computed.bonus_minor {
            return Ok(None);
        }
        let base_minor = computed.amount_minor - computed.bonus_minor;
        Ok(Some(PayoutEvent::QualityBonusGranted {
            bonus_minor,
            amount_minor: base_minor + bonus_minor,
            by,
            at,
        }))
    }

    fn mark_paid(&self, reference: String, by: String, at: DateTime<Utc>) -> Result<Option<PayoutEvent>, PayoutError> {
        let computed = self.computed()?;
        if reference.trim().is_empty() {
            return Err(PayoutError::Blank { field: "reference" });
        }
        match (self.status, &self.paid_reference) {
            (PayoutStatus::Pending, _) => Err(PayoutError::PaymentRequiresApproval),
            (PayoutStatus::Paid, Some(known)) if *known == reference => Ok(None),
            (PayoutStatus::Paid, known) => Err(PayoutError::AlreadyPaid {
                reference: known.clone().unwrap_or_default(),
            }),
            (PayoutStatus::Approved, _) => Ok(Some(PayoutEvent::PayoutPaid {
                reference,
                amount_minor: computed.amount_minor,
                currency: computed.currency.clone(),
                by,
                at,
            })),
        }
    }

    /// Decides what a command records: `Ok(None)` for a repeat, an event, or a refusal.
    fn decide(&self, command: PayoutCommand) -> Result<Option<PayoutEvent>, PayoutError> {
        match command {
            PayoutCommand::Compute(c) => self.compute(c),
            PayoutCommand::Approve { by, at } => self.approve(by, at),
            PayoutCommand::GrantQualityBonus { amount_minor, by, at } => self.grant_quality_bonus(amount_minor, by, at),
            PayoutCommand::MarkPaid { reference, by, at } => self.mark_paid(reference, by, at),
        }
    }
}

impl Aggregate for Payout {
    const TYPE: &'static str = "Payout";
    type Command = PayoutCommand;
    type Event = PayoutEvent;
    type Error = PayoutError;
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
            PayoutEvent::PayoutComputed {
                technician_ids,
                bonus_minor,
                amount_minor,
                currency,
                ..
            } => {
                self.computed = Some(Computed {
                    technician_ids,
                    bonus_minor,
                    amount_minor,
                    currency,
                });
                self.status = PayoutStatus::Pending;
            }
            PayoutEvent::PayoutApproved { .. } => self.status = PayoutStatus::Approved,
            PayoutEvent::QualityBonusGranted {
                bonus_minor,
                amount_minor,
                ..
            } => {
                if let Some(computed) = self.computed.as_mut() {
                    computed.bonus_minor = bonus_minor;
                    computed.amount_minor = amount_minor;
                }
            }
            PayoutEvent::PayoutPaid { reference, .. } => {
                self.status = PayoutStatus::Paid;
                self.paid_reference = Some(reference);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Payout>;

    fn at(hour: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap() + Duration::hours(hour)
    }

    fn compute(size: u32, bonus: Option<u32>) -> ComputePayout {
        ComputePayout {
            installation_id: "isr_1".into(),
            technician_ids: vec!["tech-1".into(), "tech-2".into()],
            system_size_w: size,
            quality_bonus_minor: bonus,
            currency: "USD".into(),
            by: "pm".into(),
            at: at(0),
        }
    }

    /// A 5 kW job (medium, 8 000) with a 1 500 bonus.
    fn computed() -> PayoutEvent {
        PayoutEvent::PayoutComputed {
            installation_id: "isr_1".into(),
            technician_ids: vec!["tech-1".into(), "tech-2".into()],
            system_size_w: 5_000,
            tier: PayoutTier::Medium,
            base_minor: 8_000,
            bonus_minor: 1_500,
            amount_minor: 9_500,
            currency: "USD".into(),
            by: "pm".into(),
            at: at(0),
        }
    }

    fn approved() -> PayoutEvent {
        PayoutEvent::PayoutApproved {
            by: "finance".into(),
            at: at(1),
        }
    }

    fn paid(reference: &str) -> PayoutEvent {
        PayoutEvent::PayoutPaid {
            reference: reference.into(),
            amount_minor: 9_500,
            currency: "USD".into(),
            by: "finance".into(),
            at: at(2),
        }
    }

    fn mark_paid(reference: &str) -> PayoutCommand {
        PayoutCommand::MarkPaid {
            reference: reference.into(),
            by: "finance".into(),
            at: at(2),
        }
    }

    fn approve(by: &str) -> PayoutCommand {
        PayoutCommand::Approve {
            by: by.into(),
            at: at(1),
        }
    }

    #[test]
    fn a_payout_is_computed_from_the_tier_and_the_bonus() {
        Given::with(())
            .given_no_previous_events()
            .when(PayoutCommand::Compute(compute(5_000, Some(1_500))))
            .then_expect_events(vec![computed()]);
    }

    #[test]
    fn computing_a_payout_twice_records_nothing() {
        Given::with(())
            .given(vec![computed()])
            .when(PayoutCommand::Compute(compute(12_000, None)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_payout_without_technicians_is_refused() {
        let mut c = compute(5_000, None);
        c.technician_ids.clear();
        Given::with(())
            .given_no_previous_events()
            .when(PayoutCommand::Compute(c))
            .then_expect_error(PayoutError::NoTechnician);
    }

    #[test]
    fn a_payout_without_an_installation_is_refused() {
        let mut c = compute(5_000, None);
        c.installation_id = " ".into();
        Given::with(())
            .given_no_previous_events()
            .when(PayoutCommand::Compute(c))
            .then_expect_error(PayoutError::Blank {
                field: "installation id",
            });
    }

    #[test]
    fn a_payout_for_zero_watts_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(PayoutCommand::Compute(compute(0, None)))
            .then_expect_error(PayoutError::ZeroSystemSize);
    }

    #[test]
    fn a_payout_in_an_invalid_currency_is_refused() {
        let mut c = compute(5_000, None);
        c.currency = "dollars".into();
        Given::with(())
            .given_no_previous_events()
            .when(PayoutCommand::Compute(c))
            .then_expect_error(PayoutError::InvalidCurrency {
                currency: "dollars".into(),
            });
    }

    #[test]
    fn a_pending_payout_is_approved() {
        Given::with(())
            .given(vec![computed()])
            .when(approve("finance"))
            .then_expect_events(vec![approved()]);
    }

    #[test]
    fn approving_twice_records_nothing() {
        Given::with(())
            .given(vec![computed(), approved()])
            .when(approve("finance"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_technician_cannot_approve_their_own_payout() {
        Given::with(())
            .given(vec![computed()])
            .when(approve("tech-2"))
            .then_expect_error(PayoutError::SelfApproval {
                approver: "tech-2".into(),
            });
    }

    #[test]
    fn a_payout_never_computed_cannot_be_approved() {
        Given::with(())
            .given_no_previous_events()
            .when(approve("finance"))
            .then_expect_error(PayoutError::UnknownPayout);
    }

    #[test]
    fn an_approved_payout_is_paid_with_its_amount() {
        Given::with(())
            .given(vec![computed(), approved()])
            .when(mark_paid("EFT-1"))
            .then_expect_events(vec![paid("EFT-1")]);
    }

    #[test]
    fn paying_again_under_the_same_reference_records_nothing() {
        Given::with(())
            .given(vec![computed(), approved(), paid("EFT-1")])
            .when(mark_paid("EFT-1"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn paying_a_paid_payout_under_another_reference_is_refused() {
        Given::with(())
            .given(vec![computed(), approved(), paid("EFT-1")])
            .when(mark_paid("EFT-2"))
            .then_expect_error(PayoutError::AlreadyPaid {
                reference: "EFT-1".into(),
            });
    }

    #[test]
    fn a_pending_payout_cannot_be_paid() {
        Given::with(())
            .given(vec![computed()])
            .when(mark_paid("EFT-1"))
            .then_expect_error(PayoutError::PaymentRequiresApproval);
    }

    #[test]
    fn a_payment_without_a_reference_is_refused() {
        Given::with(())
            .given(vec![computed(), approved()])
            .when(mark_paid(""))
            .then_expect_error(PayoutError::Blank { field: "reference" });
    }

    fn grant(amount_minor: u32, by: &str) -> PayoutCommand {
        PayoutCommand::GrantQualityBonus {
            amount_minor,
            by: by.into(),
            at: at(1),
        }
    }

    fn bonus_granted(bonus_minor: i64, amount_minor: i64) -> PayoutEvent {
        PayoutEvent::QualityBonusGranted {
            bonus_minor,
            amount_minor,
            by: "owner".into(),
            at: at(1),
        }
    }

    #[test]
    fn a_quality_bonus_replaces_the_earlier_one_and_carries_the_new_total() {
        // Medium tier (8 000) with a 1 500 bonus: a 2 000 bonus makes it 10 000, not 11 500.
        Given::with(())
            .given(vec![computed()])
            .when(grant(2_000, "owner"))
            .then_expect_events(vec![bonus_granted(2_000, 10_000)]);
    }

    #[test]
    fn a_second_bonus_replaces_the_first_granted_one() {
        Given::with(())
            .given(vec![computed(), bonus_granted(2_000, 10_000)])
            .when(grant(500, "owner"))
            .then_expect_events(vec![bonus_granted(500, 8_500)]);
    }

    #[test]
    fn granting_the_same_bonus_again_records_nothing() {
        Given::with(())
            .given(vec![computed(), bonus_granted(2_000, 10_000)])
            .when(grant(2_000, "owner"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_approved_payout_cannot_get_a_quality_bonus() {
        Given::with(())
            .given(vec![computed(), approved()])
            .when(grant(2_000, "owner"))
            .then_expect_error(PayoutError::PayoutNotPending { status: "approved" });
    }

    #[test]
    fn a_paid_payout_cannot_get_a_quality_bonus() {
        Given::with(())
            .given(vec![computed(), approved(), paid("EFT-1")])
            .when(grant(2_000, "owner"))
            .then_expect_error(PayoutError::PayoutNotPending { status: "paid" });
    }

    #[test]
    fn a_technician_cannot_grant_a_bonus_to_their_own_payout() {
        Given::with(())
            .given(vec![computed()])
            .when(grant(2_000, "tech-1"))
            .then_expect_error(PayoutError::SelfGrant {
                granter: "tech-1".into(),
            });
    }

    #[test]
    fn a_zero_quality_bonus_is_refused() {
        Given::with(())
            .given(vec![computed()])
            .when(grant(0, "owner"))
            .then_expect_error(PayoutError::QualityBonusOutOfRange {
                amount_minor: 0,
                max: MAX_QUALITY_BONUS_MINOR,
            });
    }

    #[test]
    fn a_quality_bonus_above_the_maximum_is_refused() {
        Given::with(())
            .given(vec![computed()])
            .when(grant(MAX_QUALITY_BONUS_MINOR + 1, "owner"))
            .then_expect_error(PayoutError::QualityBonusOutOfRange {
                amount_minor: MAX_QUALITY_BONUS_MINOR + 1,
                max: MAX_QUALITY_BONUS_MINOR,
            });
    }

    #[test]
    fn a_quality_bonus_without_a_granter_is_refused() {
        Given::with(())
            .given(vec![computed()])
            .when(grant(2_000, " "))
            .then_expect_error(PayoutError::Blank { field: "granted by" });
    }

    #[test]
    fn a_payout_never_computed_cannot_get_a_quality_bonus() {
        Given::with(())
            .given_no_previous_events()
            .when(grant(2_000, "owner"))
            .then_expect_error(PayoutError::UnknownPayout);
    }

    #[test]
    fn a_paid_payout_pays_the_total_with_the_granted_bonus() {
        Given::with(())
            .given(vec![computed(), bonus_granted(2_000, 10_000), approved()])
            .when(mark_paid("EFT-1"))
            .then_expect_events(vec![PayoutEvent::PayoutPaid {
                reference: "EFT-1".into(),
                amount_minor: 10_000,
                currency: "USD".into(),
                by: "finance".into(),
                at: at(2),
            }]);
    }

    #[test]
    fn every_event_type_is_listed() {
        for e in [computed(), approved(), bonus_granted(1, 8_001), paid("x")] {
            assert!(PayoutEvent::TYPES.contains(&cqrs_es::DomainEvent::event_type(&e).as_str()));
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn any_command() -> impl Strategy<Value = PayoutCommand> {
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).single().unwrap();
        prop_oneof![
            prop_oneof![Just("finance"), Just("tech-1")]
                .prop_map(move |by| PayoutCommand::Approve { by: by.into(), at }),
            prop_oneof![Just("EFT-1"), Just("EFT-2")].prop_map(move |r| PayoutCommand::MarkPaid {
                reference: r.into(),
                by: "finance".into(),
                at
            }),
            (
                prop_oneof![Just("owner"), Just("tech-1")],
                0u32..=MAX_QUALITY_BONUS_MINOR + 10
            )
                .prop_map(move |(by, amount_minor)| PayoutCommand::GrantQualityBonus {
                    amount_minor,
                    by: by.into(),
                    at
                }),
        ]
    }

    proptest! {
        /// Whatever is asked: the status only moves `pending → approved → paid`, paid only
        /// after an approval, and the amount stays `payout_for(size, bonus)` where the bonus is the
        /// last one granted while pending (a tiny reference model).
        #[test]
        fn the_status_only_moves_forward(size in 1u32..20_000, bonus in proptest::option::of(0u32..5_000), commands in proptest::collection::vec(any_command(), 0..12)) {
            let mut payout = Payout::default();
            let compute = PayoutCommand::Compute(ComputePayout {
                installation_id: "isr_1".into(),
                technician_ids: vec!["tech-1".into()],
                system_size_w: size,
                quality_bonus_minor: bonus,
                currency: "USD".into(),
                by: "pm".into(),
                at: Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).single().unwrap(),
            });
            payout.apply(payout.decide(compute).unwrap().unwrap());
            let mut model_bonus = bonus;
            for command in commands {
                let before = payout.status();
                if let PayoutCommand::GrantQualityBonus { amount_minor, by, .. } = &command {
                    if before == PayoutStatus::Pending
                        && by != "tech-1"
                        && (1..=MAX_QUALITY_BONUS_MINOR).contains(amount_minor)
                    {
                        model_bonus = Some(*amount_minor);
                    }
                }
                if let Ok(Some(event)) = payout.decide(command) {
                    payout.apply(event);
                }
                prop_assert!(payout.status() >= before);
                prop_assert!(payout.status() as u8 <= before as u8 + 1);
                prop_assert_eq!(payout.amount_minor(), Some(payout_for(size, model_bonus)));
            }
        }
    }
}
