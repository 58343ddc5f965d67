//! The `WarrantyClaim` aggregate's state and its command handling.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{ClaimCommand, FileClaim};
use super::error::ClaimError;
use super::events::ClaimEvent;
use super::values::ClaimStatus;
use crate::installation::warranty::WarrantyStatus;

/// A claim under one component's warranty.
// `serde(default)`: snapshots taken before a field existed still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct WarrantyClaim {
    filed: bool,
    warranty_id: String,
    customer_id: String,
    status: ClaimStatus,
}

impl WarrantyClaim {
    /// Whether the claim was filed.
    pub fn is_filed(&self) -> bool {
        self.filed
    }

    /// The claim's status.
    pub fn status(&self) -> ClaimStatus {
        self.status
    }

    /// The customer's contact id (notes and resolutions are sealed under their key).
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }

    /// The warranty the claim was filed under (empty before filing).
    pub fn warranty_id(&self) -> &str {
        &self.warranty_id
    }

    fn file(&self, f: FileClaim) -> Result<Option<ClaimEvent>, ClaimError> {
        if self.filed {
            // The first filing stands.
            return Ok(None);
        }
        let terms = match f.warranty {
            Some(terms) if terms.status == WarrantyStatus::Active => terms,
            _ => {
                return Err(ClaimError::WarrantyNotActive {
                    warranty_id: f.warranty_id,
                })
            }
        };
        if !terms.covers(f.at) {
            return Err(ClaimError::OutsideWarrantyPeriod {
                starts_at: terms.starts_at,
                ends_at: terms.ends_at,
            });
        }
        Ok(Some(ClaimEvent::WarrantyClaimFiled {
            warranty_id: terms.warranty_id,
            installation_id: terms.installation_id,
            serial: terms.serial,
            customer_id: terms.customer_id,
            warranty_ends_at: terms.ends_at,
            description: f.description,
            by: f.by,
            at: f.at,
        }))
    }

    /// `Ok(false)` when the claim is already at `to` (a repeat), `Ok(true)` for an allowed move.
    fn may_move(&self, to: ClaimStatus) -> Result<bool, ClaimError> {
        if !self.filed {
            return Err(ClaimError::UnknownClaim);
        }
        if self.status == to {
            return Ok(false);
        }
        if !self.status.may_move_to(to) {
            return Err(ClaimError::ClaimMoveNotAllowed {
                from: self.status.as_str(),
                to: to.as_str(),
            });
        }
        Ok(true)
    }

    /// Decides what a command records: `Ok(None)` for a repeat, an event, or a refusal.
    fn decide(&self, command: ClaimCommand) -> Result<Option<ClaimEvent>, ClaimError> {
        match command {
            ClaimCommand::File(f) => self.file(f),
            ClaimCommand::StartReview { by, at } => Ok(self
                .may_move(ClaimStatus::UnderReview)?
                .then_some(ClaimEvent::WarrantyClaimReviewStarted { by, at })),
            ClaimCommand::Decide { decision, note, by, at } => {
                let status = decision.status();
                Ok(self.may_move(status)?.then_some(ClaimEvent::WarrantyClaimDecided {
                    decision,
                    status,
                    note,
                    by,
                    at,
                }))
            }
            ClaimCommand::Resolve { resolution, by, at } => Ok(self
                .may_move(ClaimStatus::Resolved)?
                .then_some(ClaimEvent::WarrantyClaimResolved { resolution, by, at })),
        }
    }
}

impl Aggregate for WarrantyClaim {
    const TYPE: &'static str = "WarrantyClaim";
    type Command = ClaimCommand;
    type Event = ClaimEvent;
    type Error = ClaimError;
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
            ClaimEvent::WarrantyClaimFiled {
                warranty_id,
                customer_id,
                ..
            } => {
                self.filed = true;
                self.customer_id = customer_id;
                self.warranty_id = warranty_id;
                self.status = ClaimStatus::Submitted;
            }
            ClaimEvent::WarrantyClaimReviewStarted { .. } => self.status = ClaimStatus::UnderReview,
            ClaimEvent::WarrantyClaimDecided { status, .. } => self.status = status,
            ClaimEvent::WarrantyClaimResolved { .. } => self.status = ClaimStatus::Resolved,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::installation::claim::ClaimDecision;
    use crate::installation::warranty::{warranty_local_id, WarrantyTerms};
    use crate::pii::Envelope;
    use chrono::{DateTime, TimeZone, Utc};
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<WarrantyClaim>;

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

    fn terms(status: WarrantyStatus) -> WarrantyTerms {
        WarrantyTerms {
            warranty_id: warranty_local_id("isr_1", "SN-1"),
            installation_id: "isr_1".into(),
            serial: "SN-1".into(),
            customer_id: "ct_1".into(),
            status,
            starts_at: day(2026, 1, 1),
            ends_at: day(2027, 1, 1),
        }
    }

    fn file_at(at: DateTime<Utc>, warranty: Option<WarrantyTerms>) -> ClaimCommand {
        ClaimCommand::File(FileClaim {
            warranty,
            warranty_id: warranty_local_id("isr_1", "SN-1"),
            description: env("broken"),
            by: "ops".into(),
            at,
        })
    }

    fn filed() -> ClaimEvent {
        ClaimEvent::WarrantyClaimFiled {
            warranty_id: "warranty_isr_1/SN-1".into(),
            installation_id: "isr_1".into(),
            serial: "SN-1".into(),
            customer_id: "ct_1".into(),
            warranty_ends_at: day(2027, 1, 1),
            description: env("broken"),
            by: "ops".into(),
            at: day(2026, 6, 1),
        }
    }

    fn review_started() -> ClaimEvent {
        ClaimEvent::WarrantyClaimReviewStarted {
            by: "rev".into(),
            at: day(2026, 6, 2),
        }
    }

    fn decided(decision: ClaimDecision) -> ClaimEvent {
        ClaimEvent::WarrantyClaimDecided {
            decision,
            status: decision.status(),
            note: None,
            by: "rev".into(),
            at: day(2026, 6, 3),
        }
    }

    fn decide(decision: ClaimDecision) -> ClaimCommand {
        ClaimCommand::Decide {
            decision,
            note: None,
            by: "rev".into(),
            at: day(2026, 6, 3),
        }
    }

    fn resolve() -> ClaimCommand {
        ClaimCommand::Resolve {
            resolution: env("fixed"),
            by: "ops".into(),
            at: day(2026, 6, 4),
        }
    }

    fn start_review() -> ClaimCommand {
        ClaimCommand::StartReview {
            by: "rev".into(),
            at: day(2026, 6, 2),
        }
    }

    // File

    #[test]
    fn a_claim_within_an_active_warranty_is_filed_as_submitted() {
        Given::with(())
            .given_no_previous_events()
            .when(file_at(day(2026, 6, 1), Some(terms(WarrantyStatus::Active))))
            .then_expect_events(vec![filed()]);
    }

    #[test]
    fn filing_a_claim_twice_records_nothing() {
        Given::with(())
            .given(vec![filed()])
            .when(file_at(day(2026, 6, 1), Some(terms(WarrantyStatus::Active))))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_claim_after_the_warranty_period_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(file_at(day(2027, 1, 1), Some(terms(WarrantyStatus::Active))))
            .then_expect_error(ClaimError::OutsideWarrantyPeriod {
                starts_at: day(2026, 1, 1),
                ends_at: day(2027, 1, 1),
            });
    }

    #[test]
    fn a_claim_before_the_warranty_started_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(file_at(day(2025, 12, 1), Some(terms(WarrantyStatus::Active))))
            .then_expect_error(ClaimError::OutsideWarrantyPeriod {
                starts_at: day(2026, 1, 1),
                ends_at: day(2027, 1, 1),
            });
    }

    #[test]
    fn a_claim_on_a_voided_warranty_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(file_at(day(2026, 6, 1), Some(terms(WarrantyStatus::Voided))))
            .then_expect_error(ClaimError::WarrantyNotActive {
                warranty_id: "warranty_isr_1/SN-1".into(),
            });
    }

    #[test]
    fn a_claim_on_an_unknown_warranty_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(file_at(day(2026, 6, 1), None))
            .then_expect_error(ClaimError::WarrantyNotActive {
                warranty_id: "warranty_isr_1/SN-1".into(),
            });
    }

    // StartReview

    #[test]
    fn a_submitted_claim_goes_under_review() {
        Given::with(())
            .given(vec![filed()])
            .when(start_review())
            .then_expect_events(vec![review_started()]);
    }

    #[test]
    fn starting_a_review_twice_records_nothing() {
        Given::with(())
            .given(vec![filed(), review_started()])
            .when(start_review())
            .then_expect_events(vec![]);
    }

    #[test]
    fn reviewing_an_unfiled_claim_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(start_review())
            .then_expect_error(ClaimError::UnknownClaim);
    }

    #[test]
    fn reviewing_a_decided_claim_is_refused() {
        Given::with(())
            .given(vec![filed(), review_started(), decided(ClaimDecision::Approved)])
            .when(start_review())
            .then_expect_error(ClaimError::ClaimMoveNotAllowed {
                from: "approved",
                to: "under_review",
            });
    }

    // Decide

    #[test]
    fn a_claim_under_review_is_approved() {
        Given::with(())
            .given(vec![filed(), review_started()])
            .when(decide(ClaimDecision::Approved))
            .then_expect_events(vec![decided(ClaimDecision::Approved)]);
    }

    #[test]
    fn a_claim_under_review_is_rejected() {
        Given::with(())
            .given(vec![filed(), review_started()])
            .when(decide(ClaimDecision::Rejected))
            .then_expect_events(vec![decided(ClaimDecision::Rejected)]);
    }

    #[test]
    fn deciding_the_same_way_twice_records_nothing() {
        Given::with(())
            .given(vec![filed(), review_started(), decided(ClaimDecision::Rejected)])
            .when(decide(ClaimDecision::Rejected))
            .then_expect_events(vec![]);
    }

    #[test]
    fn deciding_a_claim_not_under_review_is_refused() {
        Given::with(())
            .given(vec![filed()])
            .when(decide(ClaimDecision::Approved))
            .then_expect_error(ClaimError::ClaimMoveNotAllowed {
                from: "submitted",
                to: "approved",
            });
    }

    #[test]
    fn reversing_a_decision_is_refused() {
        Given::with(())
            .given(vec![filed(), review_started(), decided(ClaimDecision::Approved)])
            .when(decide(ClaimDecision::Rejected))
            .then_expect_error(ClaimError::ClaimMoveNotAllowed {
                from: "approved",
                to: "rejected",
            });
    }

    #[test]
    fn deciding_an_unfiled_claim_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(decide(ClaimDecision::Approved))
            .then_expect_error(ClaimError::UnknownClaim);
    }

    // Resolve

    #[test]
    fn a_decided_claim_is_resolved() {
        Given::with(())
            .given(vec![filed(), review_started(), decided(ClaimDecision::Approved)])
            .when(resolve())
            .then_expect_events(vec![ClaimEvent::WarrantyClaimResolved {
                resolution: env("fixed"),
                by: "ops".into(),
                at: day(2026, 6, 4),
            }]);
    }

    #[test]
    fn resolving_an_undecided_claim_is_refused() {
        Given::with(())
            .given(vec![filed(), review_started()])
            .when(resolve())
            .then_expect_error(ClaimError::ClaimMoveNotAllowed {
                from: "under_review",
                to: "resolved",
            });
    }

    #[test]
    fn resolving_an_unfiled_claim_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(resolve())
            .then_expect_error(ClaimError::UnknownClaim);
    }

    #[test]
    fn every_event_type_is_listed() {
        for e in [filed(), review_started(), decided(ClaimDecision::Approved)] {
            assert!(ClaimEvent::TYPES.contains(&cqrs_es::DomainEvent::event_type(&e).as_str()));
        }
        assert_eq!(ClaimEvent::TYPES.len(), 4);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::installation::claim::ClaimDecision;
    use crate::installation::warranty::{WarrantyStatus, WarrantyTerms};
    use crate::pii::Envelope;
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use proptest::prelude::*;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap()
    }

    fn env() -> Envelope {
        Envelope {
            enc: "aes256gcm.v1".into(),
            nonce: "n".into(),
            ciphertext: "c".into(),
        }
    }

    fn any_command() -> impl Strategy<Value = ClaimCommand> {
        prop_oneof![
            (-400i64..800, any::<bool>()).prop_map(|(days, active)| ClaimCommand::File(FileClaim {
                warranty: Some(WarrantyTerms {
                    warranty_id: "w".into(),
                    installation_id: "isr_1".into(),
                    serial: "SN".into(),
                    customer_id: "ct_1".into(),
                    status: if active {
                        WarrantyStatus::Active
                    } else {
                        WarrantyStatus::Voided
                    },
                    starts_at: start(),
                    ends_at: start() + Duration::days(365),
                }),
                warranty_id: "w".into(),
                description: env(),
                by: "c".into(),
                at: start() + Duration::days(days),
            })),
            Just(ClaimCommand::StartReview {
                by: "r".into(),
                at: start()
            }),
            prop_oneof![Just(ClaimDecision::Approved), Just(ClaimDecision::Rejected)].prop_map(|decision| {
                ClaimCommand::Decide {
                    decision,
                    note: None,
                    by: "r".into(),
                    at: start(),
                }
            }),
            Just(ClaimCommand::Resolve {
                resolution: env(),
                by: "r".into(),
                at: start()
            }),
        ]
    }

    proptest! {
        /// Whatever is asked in whatever order: a claim is filed only inside an active
        /// warranty's period, every recorded move is an allowed one, and a decision never flips.
        #[test]
        fn claims_follow_the_status_machine_and_the_warranty_period(commands in proptest::collection::vec(any_command(), 0..30)) {
            let mut claim = WarrantyClaim::default();
            let mut decision: Option<ClaimStatus> = None;
            for command in commands {
                let before = claim.status();
                let covered = match &command {
                    ClaimCommand::File(f) => f.warranty.as_ref().map(|t| t.covers(f.at)),
                    _ => None,
                };
                match claim.decide(command) {
                    Ok(Some(event)) => {
                        if let ClaimEvent::WarrantyClaimFiled { .. } = &event {
                            prop_assert!(!claim.is_filed());
                            prop_assert_eq!(covered, Some(true));
                        } else {
                            prop_assert!(claim.is_filed());
                        }
                        claim.apply(event);
                        if claim.status() != ClaimStatus::Submitted {
                            prop_assert!(before.may_move_to(claim.status()));
                        }
                    }
                    Ok(None) => prop_assert_eq!(claim.status(), before),
                    Err(e) => {
                        prop_assert_eq!(claim.status(), before);
                        if covered == Some(true) && !claim.is_filed() {
                            prop_assert!(false, "a covered claim was refused: {e:?}");
                        }
                    }
                }
                if matches!(claim.status(), ClaimStatus::Approved | ClaimStatus::Rejected) {
                    let first = *decision.get_or_insert(claim.status());
                    prop_assert_eq!(first, claim.status());
                }
            }
        }
    }
}
