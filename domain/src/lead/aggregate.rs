//! The `Lead` aggregate's state and its command handling.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{Capture, LeadCommand};
use super::error::LeadError;
use super::events::LeadEvent;
use super::scoring::{score, LeadFacts, Score};
use super::values::{LostReason, Money, Stage, MAX_SYSTEM_SIZE_W};
use crate::pii::Envelope;

/// A prospect on its way through the sales pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lead {
    captured: bool,
    stage: Stage,
    contact_id: Option<String>,
    /// References of every capture recorded (the first and the duplicates): the dedupe keys.
    capture_refs: BTreeSet<String>,
    /// What the score is computed from.
    facts: LeadFacts,
    score: Score,
    assignee: Option<String>,
    customer_id: Option<String>,
}

impl Lead {
    /// Whether a lead has been captured in this stream.
    pub fn is_captured(&self) -> bool {
        self.captured
    }

    /// The lead's pipeline stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The lead's current score and its reasons.
    pub fn score(&self) -> &Score {
        &self.score
    }

    /// What the score is computed from.
    pub fn facts(&self) -> &LeadFacts {
        &self.facts
    }

    /// The sales user the lead is assigned to.
    pub fn assignee(&self) -> Option<&str> {
        self.assignee.as_deref()
    }

    /// The contact the lead is about, when known.
    pub fn contact_id(&self) -> Option<&str> {
        self.contact_id.as_deref()
    }

    /// The customer the lead was converted into, once won.
    pub fn customer_id(&self) -> Option<&str> {
        self.customer_id.as_deref()
    }

    fn require_captured(&self) -> Result<(), LeadError> {
        if self.captured {
            Ok(())
        } else {
            Err(LeadError::LeadNotFound)
        }
    }

    fn require_open(&self) -> Result<(), LeadError> {
        self.require_captured()?;
        if self.stage.is_closed() {
            Err(LeadError::LeadClosed { stage: self.stage })
        } else {
            Ok(())
        }
    }

    /// The events of a capture, followed by `LeadScored` when the capture changes the score
    /// (always on the first capture: the default score has no reasons, a captured lead has at
    /// least its source).
    fn with_rescore(&self, event: LeadEvent, at: DateTime<Utc>) -> Vec<LeadEvent> {
        let mut facts = self.facts.clone();
        absorb(&mut facts, &event);
        let new = score(&facts);
        let mut events = vec![event];
        if new != self.score {
            events.push(LeadEvent::LeadScored {
                score: new.value,
                reasons: new.reasons,
                at,
            });
        }
        events
    }

    fn capture(&self, c: Capture) -> Result<Vec<LeadEvent>, LeadError> {
        require_capture_ref(&c)?;
        if self.capture_refs.contains(&c.capture_ref) {
            return Ok(vec![]);
        }
        if self.captured {
            return Err(LeadError::LeadAlreadyCaptured);
        }
        validate_facts(&c)?;
        let at = c.at;
        let event = LeadEvent::LeadCaptured {
            capture_ref: c.capture_ref,
            source: c.source,
            contact_id: c.contact_id,
            name: c.name,
            phone: c.phone,
            email: c.email,
            raw: c.raw,
            interest: c.interest,
            priority: c.priority,
            property_type: c.property_type,
            estimated_system_size_w: c.estimated_system_size_w,
            budget: c.budget,
            stage: Stage::New,
            at,
        };
        Ok(self.with_rescore(event, at))
    }

    fn attach_duplicate(&self, c: Capture) -> Result<Vec<LeadEvent>, LeadError> {
        self.require_captured()?;
        require_capture_ref(&c)?;
        // The first outcome stands, even if the lead has closed since.
        if self.capture_refs.contains(&c.capture_ref) {
            return Ok(vec![]);
        }
        self.require_open()?;
        validate_facts(&c)?;
        let at = c.at;
        let event = LeadEvent::DuplicateCaptureAttached {
            capture_ref: c.capture_ref,
            source: c.source,
            contact_id: c.contact_id,
            name: c.name,
            phone: c.phone,
            email: c.email,
            raw: c.raw,
            interest: c.interest,
            priority: c.priority,
            property_type: c.property_type,
            estimated_system_size_w: c.estimated_system_size_w,
            budget: c.budget,
            captures: self.facts.captures.saturating_add(1),
            at,
        };
        Ok(self.with_rescore(event, at))
    }

    fn assign(&self, user_id: String, at: DateTime<Utc>) -> Result<Vec<LeadEvent>, LeadError> {
        self.require_open()?;
        if user_id.trim().is_empty() {
            return Err(LeadError::MissingUserId);
        }
        if self.assignee.as_deref() == Some(user_id.as_str()) {
            return Ok(vec![]);
        }
        Ok(vec![LeadEvent::LeadAssigned {
            user_id,
            previous_user_id: self.assignee.clone(),
            at,
        }])
    }

    fn unassign(&self, at: DateTime<Utc>) -> Result<Vec<LeadEvent>, LeadError> {
        self.require_open()?;
        Ok(self
            .assignee
            .clone()
            .map(|previous_user_id| LeadEvent::LeadUnassigned { previous_user_id, at })
            .into_iter()
            .collect())
    }

    fn advance(&self, to: Stage, at: DateTime<Utc>) -> Result<Vec<LeadEvent>, LeadError> {
        self.require_open()?;
        let from = self.stage;
        if to.is_closed() {
            return Err(LeadError::AdvanceCannotClose { to });
        }
        if to == from {
            return Ok(vec![]);
        }
        if to.position() < from.position() {
            return Err(LeadError::StageMovesBackward { from, to });
        }
        if from.next() != Some(to) {
            return Err(LeadError::StageSkipped { from, to });
        }
        Ok(vec![LeadEvent::LeadAdvanced { from, to, at }])
    }

    fn mark_lost(
        &self,
        reason: LostReason,
        note: Option<Envelope>,
        at: DateTime<Utc>,
    ) -> Result<Vec<LeadEvent>, LeadError> {
        self.require_open()?;
        if reason == LostReason::Other && note.is_none() {
            return Err(LeadError::LostReasonNeedsNote);
        }
        Ok(vec![LeadEvent::LeadLost {
            from: self.stage,
            reason,
            note,
            at,
        }])
    }

    fn reopen(&self, at: DateTime<Utc>) -> Result<Vec<LeadEvent>, LeadError> {
        self.require_captured()?;
        match self.stage {
            Stage::Lost => Ok(vec![LeadEvent::LeadReopened {
                to: Stage::Contacted,
                at,
            }]),
            Stage::Won => Err(LeadError::LeadClosed { stage: Stage::Won }),
            stage => Err(LeadError::LeadNotLost { stage }),
        }
    }

    fn win(
        &self,
        customer_id: String,
        order_ref: Option<String>,
        value: Option<Money>,
        at: DateTime<Utc>,
    ) -> Result<Vec<LeadEvent>, LeadError> {
        self.require_captured()?;
        // A repeated conversion into the same customer is a retry: the first outcome stands.
        if self.stage == Stage::Won && self.customer_id.as_deref() == Some(customer_id.as_str()) {
            return Ok(vec![]);
        }
        self.require_open()?;
        if customer_id.trim().is_empty() {
            return Err(LeadError::MissingCustomerId);
        }
        if self.stage != Stage::Negotiation {
            return Err(LeadError::StageSkipped {
                from: self.stage,
                to: Stage::Won,
            });
        }
        if value.as_ref().is_some_and(|v| !v.is_valid()) {
            return Err(LeadError::InvalidWinValue);
        }
        Ok(vec![LeadEvent::LeadWon {
            customer_id,
            order_ref,
            value,
            at,
        }])
    }
}

fn require_capture_ref(c: &Capture) -> Result<(), LeadError> {
    if c.capture_ref.trim().is_empty() {
        Err(LeadError::MissingCaptureRef)
    } else {
        Ok(())
    }
}

/// The facts a capture states must be plausible: a well-formed budget, a system size of 1 W to
/// 10 MW.
fn validate_facts(c: &Capture) -> Result<(), LeadError> {
    if c.budget.as_ref().is_some_and(|b| !b.is_valid()) {
        return Err(LeadError::InvalidBudget);
    }
    if let Some(watts) = c.estimated_system_size_w {
        if watts == 0 || watts > MAX_SYSTEM_SIZE_W {
            return Err(LeadError::InvalidSystemSize { watts });
        }
    }
    Ok(())
}

/// Folds a capture event into the scoring facts; other events leave them alone. The one place
/// both `handle` (to rescore) and `apply` learn facts from, so they never disagree.
fn absorb(facts: &mut LeadFacts, event: &LeadEvent) {
    let captures = match event {
        LeadEvent::LeadCaptured { .. } => 1,
        LeadEvent::DuplicateCaptureAttached { captures, .. } => *captures,
        _ => return,
    };
    if let LeadEvent::LeadCaptured {
        source,
        phone,
        email,
        interest,
        priority,
        property_type,
        estimated_system_size_w,
        budget,
        ..
    }
    | LeadEvent::DuplicateCaptureAttached {
        source,
        phone,
        email,
        interest,
        priority,
        property_type,
        estimated_system_size_w,
        budget,
        ..
    } = event
    {
        facts.sources.insert(*source);
        facts.captures = captures;
        facts.priority = facts.priority.max(*priority);
        facts.has_phone |= phone.is_some();
        facts.has_email |= email.is_some();
        facts.has_interest |= interest.as_deref().is_some_and(|i| !i.trim().is_empty());
        facts.has_property_type |= property_type.is_some();
        facts.has_system_size |= estimated_system_size_w.is_some();
        facts.has_budget |= budget.is_some();
    }
}

impl Aggregate for Lead {
    const TYPE: &'static str = "Lead";
    type Command = LeadCommand;
    type Event = LeadEvent;
    type Error = LeadError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = match command {
            LeadCommand::CaptureLead(capture) => self.capture(capture)?,
            LeadCommand::AttachDuplicateCapture(capture) => self.attach_duplicate(capture)?,
            LeadCommand::AssignLead { user_id, at } => self.assign(user_id, at)?,
            LeadCommand::UnassignLead { at } => self.unassign(at)?,
            LeadCommand::AdvanceLead { to, at } => self.advance(to, at)?,
            LeadCommand::MarkLeadLost { reason, note, at } => self.mark_lost(reason, note, at)?,
            LeadCommand::ReopenLead { at } => self.reopen(at)?,
            LeadCommand::WinLead {
                customer_id,
                order_ref,
                value,
                at,
            } => self.win(customer_id, order_ref, value, at)?,
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        absorb(&mut self.facts, &event);
        match event {
            LeadEvent::LeadCaptured {
                capture_ref,
                contact_id,
                stage,
                ..
            } => {
                self.captured = true;
                self.stage = stage;
                self.contact_id = contact_id;
                self.capture_refs.insert(capture_ref);
            }
            LeadEvent::DuplicateCaptureAttached {
                capture_ref,
                contact_id,
                ..
            } => {
                if self.contact_id.is_none() {
                    self.contact_id = contact_id;
                }
                self.capture_refs.insert(capture_ref);
            }
            LeadEvent::LeadScored { score, reasons, .. } => {
                self.score = Score { value: score, reasons };
            }
            LeadEvent::LeadAssigned { user_id, .. } => self.assignee = Some(user_id),
            LeadEvent::LeadUnassigned { .. } => self.assignee = None,
            LeadEvent::LeadAdvanced { to, .. } => self.stage = to,
            LeadEvent::LeadLost { .. } => self.stage = Stage::Lost,
            LeadEvent::LeadReopened { to, .. } => self.stage = to,
            LeadEvent::LeadWon { customer_id, .. } => {
                self.stage = Stage::Won;
                self.customer_id = Some(customer_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::{BudgetRange, LeadSource, Priority, PropertyType, ScoreFactor, ScoreReason};
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use proptest::prelude::*;

    type Given = TestFramework<Lead>;

    fn env(tag: &str) -> Envelope {
        Envelope {
            enc: "aes256gcm.v1".into(),
            nonce: format!("n-{tag}"),
            ciphertext: format!("c-{tag}"),
        }
    }

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 2, hour, 0, 0)
            .single()
            .unwrap_or_default()
    }

    /// A web-form capture with a phone number and nothing else.
    fn capture(capture_ref: &str) -> Capture {
        Capture {
            capture_ref: capture_ref.into(),
            source: LeadSource::WebForm,
            contact_id: Some("ct_a".into()),
            name: Some(env("name")),
            phone: Some(env("phone")),
            email: None,
            raw: env(capture_ref),
            interest: None,
            priority: Priority::Normal,
            property_type: None,
            estimated_system_size_w: None,
            budget: None,
            at: at(8),
        }
    }

    /// A complete calculator capture.
    fn calculator_capture(capture_ref: &str) -> Capture {
        Capture {
            source: LeadSource::Calculator,
            email: Some(env("email")),
            interest: Some("solar".into()),
            priority: Priority::High,
            property_type: Some(PropertyType::Residential),
            estimated_system_size_w: Some(5_000),
            budget: Some(usd(300_000, 600_000)),
            ..capture(capture_ref)
        }
    }

    fn usd(min_minor: i64, max_minor: i64) -> BudgetRange {
        BudgetRange {
            min_minor,
            max_minor,
            currency: "USD".into(),
        }
    }

    fn captured(c: &Capture) -> LeadEvent {
        let c = c.clone();
        LeadEvent::LeadCaptured {
            capture_ref: c.capture_ref,
            source: c.source,
            contact_id: c.contact_id,
            name: c.name,
            phone: c.phone,
            email: c.email,
            raw: c.raw,
            interest: c.interest,
            priority: c.priority,
            property_type: c.property_type,
            estimated_system_size_w: c.estimated_system_size_w,
            budget: c.budget,
            stage: Stage::New,
            at: c.at,
        }
    }

    fn attached(c: &Capture, captures: u32) -> LeadEvent {
        let c = c.clone();
        LeadEvent::DuplicateCaptureAttached {
            capture_ref: c.capture_ref,
            source: c.source,
            contact_id: c.contact_id,
            name: c.name,
            phone: c.phone,
            email: c.email,
            raw: c.raw,
            interest: c.interest,
            priority: c.priority,
            property_type: c.property_type,
            estimated_system_size_w: c.estimated_system_size_w,
            budget: c.budget,
            captures,
            at: c.at,
        }
    }

    fn reason(factor: ScoreFactor, points: u8) -> ScoreReason {
        ScoreReason { factor, points }
    }

    fn scored(score: u8, reasons: Vec<ScoreReason>) -> LeadEvent {
        LeadEvent::LeadScored {
            score,
            reasons,
            at: at(8),
        }
    }

    /// The score of the web-form capture: inbound source and a phone number.
    fn web_form_scored() -> LeadEvent {
        scored(
            20,
            vec![
                reason(ScoreFactor::InboundSource, 10),
                reason(ScoreFactor::ReachableByPhone, 10),
            ],
        )
    }

    /// A lead captured from the web form and moved forward to `stage` (or lost from `new`).
    fn lead_at(stage: Stage) -> Vec<LeadEvent> {
        let mut events = vec![captured(&capture("form-1")), web_form_scored()];
        if stage == Stage::Lost {
            events.push(LeadEvent::LeadLost {
                from: Stage::New,
                reason: LostReason::NoResponse,
                note: None,
                at: at(9),
            });
            return events;
        }
        let mut current = Stage::New;
        while current != stage {
            let Some(next) = current.next() else { break };
            events.push(if next == Stage::Won {
                LeadEvent::LeadWon {
                    customer_id: "cu_1".into(),
                    order_ref: None,
                    value: None,
                    at: at(9),
                }
            } else {
                LeadEvent::LeadAdvanced {
                    from: current,
                    to: next,
                    at: at(9),
                }
            });
            current = next;
        }
        events
    }

    const OPEN_STAGES: [Stage; 5] = [
        Stage::New,
        Stage::Contacted,
        Stage::Qualified,
        Stage::ProposalSent,
        Stage::Negotiation,
    ];

    // ---- CaptureLead -------------------------------------------------------------------

    #[test]
    fn a_new_lead_is_captured_at_stage_new_and_scored() {
        let c = capture("form-1");
        Given::with(())
            .given_no_previous_events()
            .when(LeadCommand::CaptureLead(c.clone()))
            .then_expect_events(vec![captured(&c), web_form_scored()]);
    }

    #[test]
    fn a_calculator_lead_is_scored_as_high_intent() {
        let c = calculator_capture("calc-1");
        Given::with(())
            .given_no_previous_events()
            .when(LeadCommand::CaptureLead(c.clone()))
            .then_expect_events(vec![
                captured(&c),
                scored(
                    95,
                    vec![
                        reason(ScoreFactor::HighIntentSource, 35),
                        reason(ScoreFactor::BudgetGiven, 15),
                        reason(ScoreFactor::SystemSizeGiven, 10),
                        reason(ScoreFactor::ReachableByPhone, 10),
                        reason(ScoreFactor::ReachableByEmail, 5),
                        reason(ScoreFactor::PropertyTypeGiven, 5),
                        reason(ScoreFactor::InterestStated, 5),
                        reason(ScoreFactor::HighPriority, 10),
                    ],
                ),
            ]);
    }

    #[test]
    fn capturing_the_same_reference_again_records_nothing() {
        Given::with(())
            .given(lead_at(Stage::New))
            .when(LeadCommand::CaptureLead(capture("form-1")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_second_capture_in_the_same_stream_is_refused() {
        Given::with(())
            .given(lead_at(Stage::New))
            .when(LeadCommand::CaptureLead(capture("form-2")))
            .then_expect_error(LeadError::LeadAlreadyCaptured);
    }

    #[test]
    fn a_capture_without_a_reference_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(LeadCommand::CaptureLead(capture(" ")))
            .then_expect_error(LeadError::MissingCaptureRef);
    }

    #[test]
    fn a_budget_with_its_minimum_above_its_maximum_is_refused() {
        let c = Capture {
            budget: Some(usd(600_000, 300_000)),
            ..capture("form-1")
        };
        Given::with(())
            .given_no_previous_events()
            .when(LeadCommand::CaptureLead(c))
            .then_expect_error(LeadError::InvalidBudget);
    }

    #[test]
    fn a_budget_in_a_malformed_currency_is_refused() {
        let c = Capture {
            budget: Some(BudgetRange {
                currency: "usd".into(),
                ..usd(1, 2)
            }),
            ..capture("form-1")
        };
        Given::with(())
            .given_no_previous_events()
            .when(LeadCommand::CaptureLead(c))
            .then_expect_error(LeadError::InvalidBudget);
    }

    #[test]
    fn a_system_size_of_zero_watts_is_refused() {
        let c = Capture {
            estimated_system_size_w: Some(0),
            ..capture("form-1")
        };
        Given::with(())
            .given_no_previous_events()
            .when(LeadCommand::CaptureLead(c))
            .then_expect_error(LeadError::InvalidSystemSize { watts: 0 });
    }

    #[test]
    fn a_system_size_above_10_megawatts_is_refused() {
        let c = Capture {
            estimated_system_size_w: Some(MAX_SYSTEM_SIZE_W + 1),
            ..capture("form-1")
        };
        Given::with(())
            .given_no_previous_events()
            .when(LeadCommand::CaptureLead(c))
            .then_expect_error(LeadError::InvalidSystemSize {
                watts: MAX_SYSTEM_SIZE_W + 1,
            });
    }

    #[test]
    fn a_system_size_of_exactly_10_megawatts_is_accepted() {
        let c = Capture {
            estimated_system_size_w: Some(MAX_SYSTEM_SIZE_W),
            ..capture("form-1")
        };
        let events = Given::with(())
            .given_no_previous_events()
            .when(LeadCommand::CaptureLead(c))
            .inspect_result();
        assert!(matches!(
            events.as_deref(),
            Ok([LeadEvent::LeadCaptured { .. }, LeadEvent::LeadScored { .. }])
        ));
    }

    // ---- AttachDuplicateCapture --------------------------------------------------------

    #[test]
    fn a_duplicate_capture_is_attached_to_an_open_lead_and_rescored() {
        let dup = Capture {
            email: Some(env("email")),
            ..calculator_capture("calc-7")
        };
        Given::with(())
            .given(lead_at(Stage::Qualified))
            .when(LeadCommand::AttachDuplicateCapture(dup.clone()))
            .then_expect_events(vec![
                attached(&dup, 2),
                scored(
                    100,
                    vec![
                        reason(ScoreFactor::HighIntentSource, 35),
                        reason(ScoreFactor::BudgetGiven, 15),
                        reason(ScoreFactor::SystemSizeGiven, 10),
                        reason(ScoreFactor::ReachableByPhone, 10),
                        reason(ScoreFactor::ReachableByEmail, 5),
                        reason(ScoreFactor::PropertyTypeGiven, 5),
                        reason(ScoreFactor::InterestStated, 5),
                        reason(ScoreFactor::RepeatedCaptures, 5),
                        reason(ScoreFactor::HighPriority, 10),
                    ],
                ),
            ]);
    }

    #[test]
    fn a_duplicate_that_leaves_the_score_as_it_was_is_attached_without_rescoring() {
        // Three duplicates already: repeated captures are at their 15-point cap.
        let mut history = lead_at(Stage::New);
        for n in 2..=4 {
            history.push(attached(&capture(&format!("form-{n}")), n));
        }
        history.push(scored(
            35,
            vec![
                reason(ScoreFactor::InboundSource, 10),
                reason(ScoreFactor::ReachableByPhone, 10),
                reason(ScoreFactor::RepeatedCaptures, 15),
            ],
        ));
        let dup = capture("form-5");
        Given::with(())
            .given(history)
            .when(LeadCommand::AttachDuplicateCapture(dup.clone()))
            .then_expect_events(vec![attached(&dup, 5)]);
    }

    #[test]
    fn attaching_the_same_reference_again_records_nothing() {
        let mut history = lead_at(Stage::New);
        history.push(attached(&capture("form-2"), 2));
        Given::with(())
            .given(history)
            .when(LeadCommand::AttachDuplicateCapture(capture("form-2")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn attaching_the_first_captures_reference_records_nothing() {
        Given::with(())
            .given(lead_at(Stage::Contacted))
            .when(LeadCommand::AttachDuplicateCapture(capture("form-1")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_retried_duplicate_after_the_lead_was_lost_records_nothing() {
        let mut history = lead_at(Stage::New);
        history.push(attached(&capture("form-2"), 2));
        history.push(LeadEvent::LeadLost {
            from: Stage::New,
            reason: LostReason::NotInterested,
            note: None,
            at: at(10),
        });
        Given::with(())
            .given(history)
            .when(LeadCommand::AttachDuplicateCapture(capture("form-2")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_duplicate_capture_on_a_lost_lead_is_refused() {
        Given::with(())
            .given(lead_at(Stage::Lost))
            .when(LeadCommand::AttachDuplicateCapture(capture("form-2")))
            .then_expect_error(LeadError::LeadClosed { stage: Stage::Lost });
    }

    #[test]
    fn a_duplicate_capture_on_a_won_lead_is_refused() {
        Given::with(())
            .given(lead_at(Stage::Won))
            .when(LeadCommand::AttachDuplicateCapture(capture("form-2")))
            .then_expect_error(LeadError::LeadClosed { stage: Stage::Won });
    }

    #[test]
    fn a_duplicate_capture_for_a_lead_never_captured_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(LeadCommand::AttachDuplicateCapture(capture("form-2")))
            .then_expect_error(LeadError::LeadNotFound);
    }

    #[test]
    fn a_duplicate_capture_without_a_reference_is_refused() {
        Given::with(())
            .given(lead_at(Stage::New))
            .when(LeadCommand::AttachDuplicateCapture(capture("")))
            .then_expect_error(LeadError::MissingCaptureRef);
    }

    #[test]
    fn a_duplicate_capture_with_an_invalid_budget_is_refused() {
        let dup = Capture {
            budget: Some(usd(5, 1)),
            ..capture("form-2")
        };
        Given::with(())
            .given(lead_at(Stage::New))
            .when(LeadCommand::AttachDuplicateCapture(dup))
            .then_expect_error(LeadError::InvalidBudget);
    }

    #[test]
    fn a_duplicate_capture_with_an_absurd_system_size_is_refused() {
        let dup = Capture {
            estimated_system_size_w: Some(u32::MAX),
            ..capture("form-2")
        };
        Given::with(())
            .given(lead_at(Stage::New))
            .when(LeadCommand::AttachDuplicateCapture(dup))
            .then_expect_error(LeadError::InvalidSystemSize { watts: u32::MAX });
    }

    #[test]
    fn a_duplicate_never_lowers_the_priority_the_lead_was_scored_with() {
        let mut lead = Lead::default();
        lead.apply(captured(&calculator_capture("calc-1")));
        let dup = Capture {
            priority: Priority::Low,
            ..capture("form-2")
        };
        lead.apply(attached(&dup, 2));
        assert_eq!(lead.facts().priority, Priority::High);
        assert!(lead.facts().sources.contains(&LeadSource::Calculator));
    }

    // ---- AssignLead / UnassignLead -----------------------------------------------------

    fn assigned(user_id: &str, previous: Option<&str>) -> LeadEvent {
        LeadEvent::LeadAssigned {
            user_id: user_id.into(),
            previous_user_id: previous.map(Into::into),
            at: at(10),
        }
    }

    fn assign(user_id: &str) -> LeadCommand {
        LeadCommand::AssignLead {
            user_id: user_id.into(),
            at: at(10),
        }
    }

    #[test]
    fn a_lead_is_assigned_to_a_sales_user() {
        Given::with(())
            .given(lead_at(Stage::New))
            .when(assign("usr_1"))
            .then_expect_events(vec![assigned("usr_1", None)]);
    }

    #[test]
    fn reassigning_a_lead_records_the_previous_user() {
        Given::with(())
            .given(lead_at(Stage::Contacted))
            .and(vec![assigned("usr_1", None)])
            .when(assign("usr_2"))
            .then_expect_events(vec![assigned("usr_2", Some("usr_1"))]);
    }

    #[test]
    fn reassigning_a_lead_to_the_same_user_records_nothing() {
        Given::with(())
            .given(lead_at(Stage::New))
            .and(vec![assigned("usr_1", None)])
            .when(assign("usr_1"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn assigning_a_closed_lead_is_refused() {
        Given::with(())
            .given(lead_at(Stage::Won))
            .when(assign("usr_1"))
            .then_expect_error(LeadError::LeadClosed { stage: Stage::Won });
    }

    #[test]
    fn assigning_a_lead_never_captured_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(assign("usr_1"))
            .then_expect_error(LeadError::LeadNotFound);
    }

    #[test]
    fn assigning_a_lead_to_nobody_is_refused() {
        Given::with(())
            .given(lead_at(Stage::New))
            .when(assign(" "))
            .then_expect_error(LeadError::MissingUserId);
    }

    #[test]
    fn an_assigned_lead_is_unassigned() {
        Given::with(())
            .given(lead_at(Stage::New))
            .and(vec![assigned("usr_1", None)])
            .when(LeadCommand::UnassignLead { at: at(11) })
            .then_expect_events(vec![LeadEvent::LeadUnassigned {
                previous_user_id: "usr_1".into(),
                at: at(11),
            }]);
    }

    #[test]
    fn unassigning_an_unassigned_lead_records_nothing() {
        Given::with(())
            .given(lead_at(Stage::New))
            .when(LeadCommand::UnassignLead { at: at(11) })
            .then_expect_events(vec![]);
    }

    #[test]
    fn unassigning_a_closed_lead_is_refused() {
        Given::with(())
            .given(lead_at(Stage::New))
            .and(vec![assigned("usr_1", None)])
            .and(vec![LeadEvent::LeadLost {
                from: Stage::New,
                reason: LostReason::BadTiming,
                note: None,
                at: at(11),
            }])
            .when(LeadCommand::UnassignLead { at: at(12) })
            .then_expect_error(LeadError::LeadClosed { stage: Stage::Lost });
    }

    #[test]
    fn unassigning_a_lead_never_captured_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(LeadCommand::UnassignLead { at: at(11) })
            .then_expect_error(LeadError::LeadNotFound);
    }

    // ---- AdvanceLead -------------------------------------------------------------------

    fn advance(to: Stage) -> LeadCommand {
        LeadCommand::AdvanceLead { to, at: at(12) }
    }

    #[test]
    fn a_lead_advances_one_stage_at_a_time_up_to_negotiation() {
        for (from, to) in OPEN_STAGES.iter().zip(OPEN_STAGES.iter().skip(1)) {
            Given::with(())
                .given(lead_at(*from))
                .when(advance(*to))
                .then_expect_events(vec![LeadEvent::LeadAdvanced {
                    from: *from,
                    to: *to,
                    at: at(12),
                }]);
        }
    }

    #[test]
    fn advancing_to_the_current_stage_records_nothing() {
        Given::with(())
            .given(lead_at(Stage::Qualified))
            .when(advance(Stage::Qualified))
            .then_expect_events(vec![]);
    }

    #[test]
    fn skipping_a_stage_is_refused() {
        Given::with(())
            .given(lead_at(Stage::Contacted))
            .when(advance(Stage::ProposalSent))
            .then_expect_error(LeadError::StageSkipped {
                from: Stage::Contacted,
                to: Stage::ProposalSent,
            });
    }

    #[test]
    fn moving_a_lead_backward_is_refused() {
        Given::with(())
            .given(lead_at(Stage::ProposalSent))
            .when(advance(Stage::Contacted))
            .then_expect_error(LeadError::StageMovesBackward {
                from: Stage::ProposalSent,
                to: Stage::Contacted,
            });
    }

    #[test]
    fn advancing_a_lead_to_won_or_lost_is_refused() {
        for to in [Stage::Won, Stage::Lost] {
            Given::with(())
                .given(lead_at(Stage::Negotiation))
                .when(advance(to))
                .then_expect_error(LeadError::AdvanceCannotClose { to });
        }
    }

    #[test]
    fn advancing_a_closed_lead_is_refused() {
        Given::with(())
            .given(lead_at(Stage::Won))
            .when(advance(Stage::Contacted))
            .then_expect_error(LeadError::LeadClosed { stage: Stage::Won });
        Given::with(())
            .given(lead_at(Stage::Lost))
            .when(advance(Stage::Contacted))
            .then_expect_error(LeadError::LeadClosed { stage: Stage::Lost });
    }

    #[test]
    fn advancing_a_lead_never_captured_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(advance(Stage::Contacted))
            .then_expect_error(LeadError::LeadNotFound);
    }

    // ---- MarkLeadLost ------------------------------------------------------------------

    fn mark_lost(reason: LostReason, note: Option<Envelope>) -> LeadCommand {
        LeadCommand::MarkLeadLost {
            reason,
            note,
            at: at(13),
        }
    }

    #[test]
    fn a_lead_can_be_lost_from_every_open_stage() {
        for from in OPEN_STAGES {
            Given::with(())
                .given(lead_at(from))
                .when(mark_lost(LostReason::ChoseCompetitor, Some(env("note"))))
                .then_expect_events(vec![LeadEvent::LeadLost {
                    from,
                    reason: LostReason::ChoseCompetitor,
                    note: Some(env("note")),
                    at: at(13),
                }]);
        }
    }

    #[test]
    fn a_lead_lost_for_another_reason_without_a_note_is_refused() {
        Given::with(())
            .given(lead_at(Stage::Qualified))
            .when(mark_lost(LostReason::Other, None))
            .then_expect_error(LeadError::LostReasonNeedsNote);
    }

    #[test]
    fn losing_a_closed_lead_is_refused() {
        Given::with(())
            .given(lead_at(Stage::Lost))
            .when(mark_lost(LostReason::NoResponse, None))
            .then_expect_error(LeadError::LeadClosed { stage: Stage::Lost });
        Given::with(())
            .given(lead_at(Stage::Won))
            .when(mark_lost(LostReason::NoResponse, None))
            .then_expect_error(LeadError::LeadClosed { stage: Stage::Won });
    }

    #[test]
    fn losing_a_lead_never_captured_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(mark_lost(LostReason::NoResponse, None))
            .then_expect_error(LeadError::LeadNotFound);
    }

    // ---- ReopenLead --------------------------------------------------------------------

    #[test]
    fn a_lost_lead_can_be_reopened_to_contacted() {
        Given::with(())
            .given(lead_at(Stage::Lost))
            .when(LeadCommand::ReopenLead { at: at(14) })
            .then_expect_events(vec![LeadEvent::LeadReopened {
                to: Stage::Contacted,
                at: at(14),
            }]);
    }

    #[test]
    fn a_reopened_lead_takes_duplicates_again_and_moves_on_from_contacted() {
        let mut history = lead_at(Stage::Lost);
        history.push(LeadEvent::LeadReopened {
            to: Stage::Contacted,
            at: at(14),
        });
        Given::with(())
            .given(history.clone())
            .when(advance(Stage::Qualified))
            .then_expect_events(vec![LeadEvent::LeadAdvanced {
                from: Stage::Contacted,
                to: Stage::Qualified,
                at: at(12),
            }]);
        let result = Given::with(())
            .given(history)
            .when(LeadCommand::AttachDuplicateCapture(capture("form-2")))
            .inspect_result();
        assert!(matches!(
            result.as_deref(),
            Ok([LeadEvent::DuplicateCaptureAttached { .. }, ..])
        ));
    }

    #[test]
    fn reopening_an_open_lead_is_refused() {
        Given::with(())
            .given(lead_at(Stage::Negotiation))
            .when(LeadCommand::ReopenLead { at: at(14) })
            .then_expect_error(LeadError::LeadNotLost {
                stage: Stage::Negotiation,
            });
    }

    #[test]
    fn reopening_a_won_lead_is_refused() {
        Given::with(())
            .given(lead_at(Stage::Won))
            .when(LeadCommand::ReopenLead { at: at(14) })
            .then_expect_error(LeadError::LeadClosed { stage: Stage::Won });
    }

    #[test]
    fn reopening_a_lead_never_captured_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(LeadCommand::ReopenLead { at: at(14) })
            .then_expect_error(LeadError::LeadNotFound);
    }

    // ---- WinLead -----------------------------------------------------------------------

    fn win(customer_id: &str, value: Option<Money>) -> LeadCommand {
        LeadCommand::WinLead {
            customer_id: customer_id.into(),
            order_ref: Some("ord_42".into()),
            value,
            at: at(15),
        }
    }

    fn usd_value(amount_minor: i64) -> Money {
        Money {
            amount_minor,
            currency: "USD".into(),
        }
    }

    #[test]
    fn a_lead_in_negotiation_is_won_and_converted_into_its_customer() {
        Given::with(())
            .given(lead_at(Stage::Negotiation))
            .when(win("cu_9", Some(usd_value(450_000))))
            .then_expect_events(vec![LeadEvent::LeadWon {
                customer_id: "cu_9".into(),
                order_ref: Some("ord_42".into()),
                value: Some(usd_value(450_000)),
                at: at(15),
            }]);
    }

    #[test]
    fn winning_again_for_the_same_customer_records_nothing() {
        Given::with(())
            .given(lead_at(Stage::Won))
            .when(win("cu_1", None))
            .then_expect_events(vec![]);
    }

    #[test]
    fn winning_a_won_lead_for_another_customer_is_refused() {
        Given::with(())
            .given(lead_at(Stage::Won))
            .when(win("cu_2", None))
            .then_expect_error(LeadError::LeadClosed { stage: Stage::Won });
    }

    #[test]
    fn winning_a_lost_lead_is_refused() {
        Given::with(())
            .given(lead_at(Stage::Lost))
            .when(win("cu_1", None))
            .then_expect_error(LeadError::LeadClosed { stage: Stage::Lost });
    }

    #[test]
    fn winning_before_negotiation_is_refused() {
        Given::with(())
            .given(lead_at(Stage::ProposalSent))
            .when(win("cu_1", None))
            .then_expect_error(LeadError::StageSkipped {
                from: Stage::ProposalSent,
                to: Stage::Won,
            });
    }

    #[test]
    fn winning_without_a_customer_is_refused() {
        Given::with(())
            .given(lead_at(Stage::Negotiation))
            .when(win("", None))
            .then_expect_error(LeadError::MissingCustomerId);
    }

    #[test]
    fn winning_with_a_negative_value_or_a_malformed_currency_is_refused() {
        Given::with(())
            .given(lead_at(Stage::Negotiation))
            .when(win("cu_1", Some(usd_value(-1))))
            .then_expect_error(LeadError::InvalidWinValue);
        Given::with(())
            .given(lead_at(Stage::Negotiation))
            .when(win(
                "cu_1",
                Some(Money {
                    amount_minor: 1,
                    currency: "Dollars".into(),
                }),
            ))
            .then_expect_error(LeadError::InvalidWinValue);
    }

    #[test]
    fn winning_a_lead_never_captured_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(win("cu_1", None))
            .then_expect_error(LeadError::LeadNotFound);
    }

    // ---- Contracts ---------------------------------------------------------------------

    #[test]
    fn every_event_type_is_listed_and_named_after_its_variant() {
        use cqrs_es::DomainEvent;
        let mut seen: Vec<String> = lead_at(Stage::Won)
            .into_iter()
            .chain(lead_at(Stage::Lost))
            .chain([
                attached(&capture("form-2"), 2),
                assigned("usr_1", None),
                LeadEvent::LeadUnassigned {
                    previous_user_id: "usr_1".into(),
                    at: at(1),
                },
                LeadEvent::LeadReopened {
                    to: Stage::Contacted,
                    at: at(1),
                },
            ])
            .map(|e| {
                let json = serde_json::to_value(&e).unwrap_or_default();
                let tag = json.as_object().and_then(|o| o.keys().next().cloned());
                assert_eq!(tag.as_deref(), Some(e.event_type().as_str()));
                assert_eq!(e.event_version(), "1.0");
                e.event_type()
            })
            .collect();
        seen.sort();
        seen.dedup();
        let mut listed: Vec<String> = LeadEvent::TYPES.iter().map(|t| t.to_string()).collect();
        listed.sort();
        assert_eq!(seen, listed);
    }

    #[test]
    fn error_codes_are_distinct_screaming_snake_case() {
        let errors = [
            LeadError::MissingCaptureRef,
            LeadError::LeadAlreadyCaptured,
            LeadError::LeadNotFound,
            LeadError::LeadClosed { stage: Stage::Won },
            LeadError::InvalidBudget,
            LeadError::InvalidSystemSize { watts: 0 },
            LeadError::MissingUserId,
            LeadError::StageSkipped {
                from: Stage::New,
                to: Stage::Qualified,
            },
            LeadError::StageMovesBackward {
                from: Stage::Qualified,
                to: Stage::New,
            },
            LeadError::AdvanceCannotClose { to: Stage::Won },
            LeadError::LeadNotLost { stage: Stage::New },
            LeadError::LostReasonNeedsNote,
            LeadError::MissingCustomerId,
            LeadError::InvalidWinValue,
        ];
        let mut codes: Vec<&str> = errors.iter().map(LeadError::code).collect();
        assert!(codes
            .iter()
            .all(|c| c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
    }

    #[test]
    fn personal_fields_never_appear_in_clear_in_a_captured_event() {
        let json = serde_json::to_string(&captured(&calculator_capture("calc-1"))).unwrap_or_default();
        // Every personal field is an envelope ({"enc", "n", "c"}); only ids, codes and sizes
        // are in clear.
        for field in ["name", "phone", "email", "raw"] {
            assert!(
                json.contains(&format!("\"{field}\":{{\"enc\"")),
                "{field} is not sealed: {json}"
            );
        }
    }

    // ---- Properties --------------------------------------------------------------------

    /// Runs one command against a live aggregate, as the framework does.
    fn run(rt: &tokio::runtime::Runtime, lead: &mut Lead, command: LeadCommand) -> Result<Vec<LeadEvent>, LeadError> {
        let sink = EventSink::<Lead>::default();
        rt.block_on(async {
            lead.handle(command, &(), &sink).await?;
            Ok(sink.collect().await)
        })
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime builds")
    }

    /// What a pipeline command is expected to do.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Changed,
        Unchanged,
        Refused,
    }

    /// A tiny, independent model of the pipeline and of assignment.
    #[derive(Debug)]
    struct Model {
        stage: Stage,
        assignee: Option<String>,
        customer: Option<String>,
    }

    const ORDER: [Stage; 6] = [
        Stage::New,
        Stage::Contacted,
        Stage::Qualified,
        Stage::ProposalSent,
        Stage::Negotiation,
        Stage::Won,
    ];

    fn index(stage: Stage) -> Option<usize> {
        ORDER.iter().position(|s| *s == stage)
    }

    impl Model {
        fn closed(&self) -> bool {
            self.stage == Stage::Won || self.stage == Stage::Lost
        }

        fn step(&mut self, command: &LeadCommand) -> Outcome {
            match command {
                LeadCommand::AdvanceLead { to, .. } => {
                    if self.closed() || *to == Stage::Won || *to == Stage::Lost {
                        return Outcome::Refused;
                    }
                    match (index(self.stage), index(*to)) {
                        (Some(a), Some(b)) if a == b => Outcome::Unchanged,
                        (Some(a), Some(b)) if b == a + 1 => {
                            self.stage = *to;
                            Outcome::Changed
                        }
                        _ => Outcome::Refused,
                    }
                }
                LeadCommand::MarkLeadLost { reason, note, .. } => {
                    if self.closed() || (*reason == LostReason::Other && note.is_none()) {
                        return Outcome::Refused;
                    }
                    self.stage = Stage::Lost;
                    Outcome::Changed
                }
                LeadCommand::ReopenLead { .. } => {
                    if self.stage != Stage::Lost {
                        return Outcome::Refused;
                    }
                    self.stage = Stage::Contacted;
                    Outcome::Changed
                }
                LeadCommand::WinLead { customer_id, .. } => {
                    if self.stage == Stage::Won && self.customer.as_ref() == Some(customer_id) {
                        return Outcome::Unchanged;
                    }
                    if self.stage != Stage::Negotiation {
                        return Outcome::Refused;
                    }
                    self.stage = Stage::Won;
                    self.customer = Some(customer_id.clone());
                    Outcome::Changed
                }
                LeadCommand::AssignLead { user_id, .. } => {
                    if self.closed() {
                        return Outcome::Refused;
                    }
                    if self.assignee.as_ref() == Some(user_id) {
                        return Outcome::Unchanged;
                    }
                    self.assignee = Some(user_id.clone());
                    Outcome::Changed
                }
                LeadCommand::UnassignLead { .. } => {
                    if self.closed() {
                        return Outcome::Refused;
                    }
                    if self.assignee.take().is_none() {
                        return Outcome::Unchanged;
                    }
                    Outcome::Changed
                }
                LeadCommand::CaptureLead(_) | LeadCommand::AttachDuplicateCapture(_) => Outcome::Refused,
            }
        }
    }

    fn any_stage() -> impl Strategy<Value = Stage> {
        proptest::sample::select(Stage::ALL.to_vec())
    }

    fn any_lost_reason() -> impl Strategy<Value = LostReason> {
        proptest::sample::select(LostReason::ALL.to_vec())
    }

    fn any_pipeline_command() -> impl Strategy<Value = LeadCommand> {
        prop_oneof![
            4 => any_stage().prop_map(|to| LeadCommand::AdvanceLead { to, at: at(12) }),
            1 => (any_lost_reason(), any::<bool>()).prop_map(|(reason, with_note)| LeadCommand::MarkLeadLost {
                reason,
                note: with_note.then(|| env("note")),
                at: at(13),
            }),
            1 => Just(LeadCommand::ReopenLead { at: at(14) }),
            2 => proptest::sample::select(vec!["cu_1", "cu_2"]).prop_map(|c| LeadCommand::WinLead {
                customer_id: c.into(),
                order_ref: None,
                value: None,
                at: at(15),
            }),
            1 => proptest::sample::select(vec!["usr_1", "usr_2"]).prop_map(|u| LeadCommand::AssignLead {
                user_id: u.into(),
                at: at(10),
            }),
            1 => Just(LeadCommand::UnassignLead { at: at(11) }),
        ]
    }

    /// A pipeline command, or `None` for "advance to the next stage", so that random sequences
    /// reach negotiation, won and lost often.
    fn any_step() -> impl Strategy<Value = Option<LeadCommand>> {
        prop_oneof![4 => Just(None), 10 => any_pipeline_command().prop_map(Some)]
    }

    /// Whether a lead may move from `from` to `to` in one recorded step.
    fn allowed_move(from: Stage, to: Stage) -> bool {
        from == to
            || from.next() == Some(to)
            || (to == Stage::Lost && !from.is_closed())
            || (from == Stage::Lost && to == Stage::Contacted)
    }

    proptest! {
        #[test]
        fn the_pipeline_only_moves_as_the_rules_allow(steps in proptest::collection::vec(any_step(), 1..40)) {
            let rt = runtime();
            let mut lead = Lead::default();
            let mut history = Vec::new();
            for event in lead_at(Stage::New) {
                lead.apply(event.clone());
                history.push(event);
            }
            let mut model = Model { stage: Stage::New, assignee: None, customer: None };

            for step in steps {
                let command = step.unwrap_or_else(|| LeadCommand::AdvanceLead {
                    to: model.stage.next().unwrap_or(Stage::Contacted),
                    at: at(12),
                });
                let before = lead.clone();
                let expected = model.step(&command);
                let result = run(&rt, &mut lead, command.clone());
                let outcome = match &result {
                    Err(_) => Outcome::Refused,
                    Ok(events) if events.is_empty() => Outcome::Unchanged,
                    Ok(_) => Outcome::Changed,
                };
                prop_assert_eq!(&outcome, &expected, "{:?} on {:?} gave {:?}", command, before.stage(), result);
                if outcome != Outcome::Changed {
                    prop_assert_eq!(&lead, &before, "a refused or idempotent command changed the lead");
                }
                prop_assert_eq!(lead.stage(), model.stage);
                prop_assert_eq!(lead.assignee(), model.assignee.as_deref());
                prop_assert_eq!(lead.customer_id(), model.customer.as_deref());
                prop_assert!(allowed_move(before.stage(), lead.stage()), "{:?} → {:?}", before.stage(), lead.stage());
                if before.stage() == Stage::Won {
                    prop_assert_eq!(&lead, &before, "a won lead changed");
                }
                if before.stage() == Stage::Lost && outcome == Outcome::Changed {
                    prop_assert!(matches!(command, LeadCommand::ReopenLead { .. }), "a lost lead changed by {:?}", command);
                }
                history.extend(result.unwrap_or_default());
            }

            // Replaying the stream rebuilds the same lead.
            let mut replayed = Lead::default();
            for event in history {
                replayed.apply(event);
            }
            prop_assert_eq!(replayed, lead);
        }
    }

    fn any_capture() -> impl Strategy<Value = Capture> {
        (
            proptest::sample::select(vec!["r1", "r2", "r3", "r4", "r5", "r6"]),
            proptest::sample::select(LeadSource::ALL.to_vec()),
            proptest::sample::select(Priority::ALL.to_vec()),
            proptest::array::uniform4(any::<bool>()),
            proptest::option::of(1u32..=MAX_SYSTEM_SIZE_W),
            proptest::option::of((0i64..1_000_000, 0i64..1_000_000)),
        )
            .prop_map(|(r, source, priority, flags, size, budget)| Capture {
                source,
                priority,
                phone: flags[0].then(|| env("phone")),
                email: flags[1].then(|| env("email")),
                interest: flags[2].then(|| "solar".to_string()),
                property_type: flags[3].then_some(PropertyType::Commercial),
                estimated_system_size_w: size,
                budget: budget.map(|(a, b)| usd(a.min(b), a.max(b))),
                ..capture(r)
            })
    }

    proptest! {
        #[test]
        fn captures_are_idempotent_and_rescored_only_on_change(
            first in any_capture(),
            dups in proptest::collection::vec(any_capture(), 0..12),
        ) {
            let rt = runtime();
            let mut lead = Lead::default();
            let mut refs = std::collections::BTreeSet::new();
            let events = run(&rt, &mut lead, LeadCommand::CaptureLead(first.clone()));
            prop_assert!(matches!(events.as_deref(), Ok([LeadEvent::LeadCaptured { .. }, LeadEvent::LeadScored { .. }])), "capture gave {:?}", events);
            refs.insert(first.capture_ref.clone());

            for dup in dups {
                let before = lead.clone();
                let events = run(&rt, &mut lead, LeadCommand::AttachDuplicateCapture(dup.clone()))
                    .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                if !refs.insert(dup.capture_ref.clone()) {
                    prop_assert!(events.is_empty(), "a repeated reference recorded {:?}", events);
                    prop_assert_eq!(&lead, &before);
                    continue;
                }
                prop_assert!(matches!(events.first(), Some(LeadEvent::DuplicateCaptureAttached { .. })), "attach gave {:?}", events);
                let rescored = events.iter().any(|e| matches!(e, LeadEvent::LeadScored { .. }));
                prop_assert_eq!(rescored, lead.score() != before.score());
                prop_assert_eq!(lead.facts().captures, u32::try_from(refs.len()).unwrap_or(u32::MAX));
                prop_assert!(lead.score().value <= 100);
                prop_assert_eq!(lead.score(), &score(lead.facts()));
                prop_assert!(lead.score().value >= before.score().value, "a new capture lowered the score");
            }
        }
    }
}
