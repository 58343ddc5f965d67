//! The `AutomationRules` aggregate's state and its command handling.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::AutomationRulesCommand;
use super::error::AutomationRulesError;
use super::events::AutomationRulesEvent;
use super::values::{
    is_valid_language, is_valid_template_name, CallFollowUpRule, MAX_FOLLOW_UP_DELAY_MINUTES,
    MIN_FOLLOW_UP_DELAY_MINUTES,
};
use crate::call::{CallOutcome, PlannedFollowUp};

/// A tenant's automation rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AutomationRules {
    /// The call follow-up rule's revision: 0 before it was ever set.
    version: u32,
    call_follow_up: Option<CallFollowUpRule>,
}

impl AutomationRules {
    /// The call follow-up rule's current version (0 before it was ever set).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The call follow-up rule, enabled or not, once set.
    pub fn call_follow_up_rule(&self) -> Option<&CallFollowUpRule> {
        self.call_follow_up.as_ref()
    }

    /// The follow-up the rule decides for a call that ended at `ended_at` with `outcome`:
    /// `None` when there is no rule, it is disabled, or it does not name the outcome.
    pub fn follow_up_for(&self, outcome: CallOutcome, ended_at: DateTime<Utc>) -> Option<PlannedFollowUp> {
        let rule = self.call_follow_up.as_ref()?;
        if !rule.enabled || !rule.outcomes.contains(&outcome) {
            return None;
        }
        Some(PlannedFollowUp {
            rule_version: self.version,
            template_name: rule.template_name.clone(),
            language: rule.language.clone(),
            due_at: ended_at + Duration::minutes(i64::from(rule.delay_minutes)),
        })
    }

    fn decide(&self, command: AutomationRulesCommand) -> Result<Option<AutomationRulesEvent>, AutomationRulesError> {
        match command {
            AutomationRulesCommand::SetCallFollowUpRule {
                enabled,
                delay_minutes,
                outcomes,
                template_name,
                language,
                at,
            } => self.set(
                CallFollowUpRule {
                    enabled,
                    delay_minutes,
                    outcomes,
                    template_name,
                    language,
                },
                at,
            ),
            AutomationRulesCommand::DisableCallFollowUpRule { at } => {
                Ok(self.call_follow_up.as_ref().filter(|rule| rule.enabled).map(|_| {
                    AutomationRulesEvent::CallFollowUpRuleDisabled {
                        version: self.version.saturating_add(1),
                        at,
                    }
                }))
            }
        }
    }

    fn set(
        &self,
        rule: CallFollowUpRule,
        at: DateTime<Utc>,
    ) -> Result<Option<AutomationRulesEvent>, AutomationRulesError> {
        if !(MIN_FOLLOW_UP_DELAY_MINUTES..=MAX_FOLLOW_UP_DELAY_MINUTES).contains(&rule.delay_minutes) {
            return Err(AutomationRulesError::InvalidDelay {
                delay_minutes: i64::from(rule.delay_minutes),
            });
        }
        if rule.outcomes.is_empty() {
            return Err(AutomationRulesError::NoOutcomes);
        }
        if !is_valid_template_name(&rule.template_name) {
            return Err(AutomationRulesError::InvalidTemplateName {
                template_name: rule.template_name,
            });
        }
        if !is_valid_language(&rule.language) {
            return Err(AutomationRulesError::InvalidLanguage {
                language: rule.language,
            });
        }
        if self.call_follow_up.as_ref() == Some(&rule) {
            return Ok(None);
        }
        Ok(Some(AutomationRulesEvent::CallFollowUpRuleSet {
            version: self.version.saturating_add(1),
            enabled: rule.enabled,
            delay_minutes: rule.delay_minutes,
            outcomes: rule.outcomes,
            template_name: rule.template_name,
            language: rule.language,
            at,
        }))
    }
}

impl Aggregate for AutomationRules {
    const TYPE: &'static str = "AutomationRules";
    type Command = AutomationRulesCommand;
    type Event = AutomationRulesEvent;
    type Error = AutomationRulesError;
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
            AutomationRulesEvent::CallFollowUpRuleSet {
                version,
                enabled,
                delay_minutes,
                outcomes,
                template_name,
                language,
                ..
            } => {
                self.version = version;
                self.call_follow_up = Some(CallFollowUpRule {
                    enabled,
                    delay_minutes,
                    outcomes,
                    template_name,
                    language,
                });
            }
            AutomationRulesEvent::CallFollowUpRuleDisabled { version, .. } => {
                self.version = version;
                if let Some(rule) = self.call_follow_up.as_mut() {
                    rule.enabled = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use cqrs_es::DomainEvent;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    type Given = TestFramework<AutomationRules>;

    fn outcomes(list: &[CallOutcome]) -> BTreeSet<CallOutcome> {
        list.iter().copied().collect()
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).single().unwrap_or_default() + Duration::minutes(minutes)
    }

    fn set_rule(
        enabled: bool,
        delay_minutes: u32,
        outcome_list: &[CallOutcome],
        template: &str,
    ) -> AutomationRulesCommand {
        AutomationRulesCommand::SetCallFollowUpRule {
            enabled,
            delay_minutes,
            outcomes: outcomes(outcome_list),
            template_name: template.into(),
            language: "en_US".into(),
            at: at(0),
        }
    }

    fn rule_set(
        version: u32,
        enabled: bool,
        delay_minutes: u32,
        outcome_list: &[CallOutcome],
        template: &str,
    ) -> AutomationRulesEvent {
        AutomationRulesEvent::CallFollowUpRuleSet {
            version,
            enabled,
            delay_minutes,
            outcomes: outcomes(outcome_list),
            template_name: template.into(),
            language: "en_US".into(),
            at: at(0),
        }
    }

    const MISSED: &[CallOutcome] = &[CallOutcome::NoAnswer, CallOutcome::Busy];

    // --- SetCallFollowUpRule ---

    #[test]
    fn a_first_rule_is_set_as_version_one() {
        Given::with(())
            .given_no_previous_events()
            .when(set_rule(true, 15, MISSED, "missed_call"))
            .then_expect_events(vec![rule_set(1, true, 15, MISSED, "missed_call")]);
    }

    #[test]
    fn a_changed_rule_gets_the_next_version() {
        Given::with(())
            .given(vec![rule_set(1, true, 15, MISSED, "missed_call")])
            .when(set_rule(true, 30, MISSED, "missed_call"))
            .then_expect_events(vec![rule_set(2, true, 30, MISSED, "missed_call")]);
    }

    #[test]
    fn setting_the_rule_in_force_again_changes_nothing() {
        Given::with(())
            .given(vec![rule_set(1, true, 15, MISSED, "missed_call")])
            .when(set_rule(true, 15, MISSED, "missed_call"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn setting_a_disabled_rule_enabled_again_is_a_new_version() {
        Given::with(())
            .given(vec![
                rule_set(1, true, 15, MISSED, "missed_call"),
                AutomationRulesEvent::CallFollowUpRuleDisabled { version: 2, at: at(0) },
            ])
            .when(set_rule(true, 15, MISSED, "missed_call"))
            .then_expect_events(vec![rule_set(3, true, 15, MISSED, "missed_call")]);
    }

    #[test]
    fn a_delay_of_a_minute_or_a_week_is_accepted() {
        Given::with(())
            .given_no_previous_events()
            .when(set_rule(true, 1, MISSED, "missed_call"))
            .then_expect_events(vec![rule_set(1, true, 1, MISSED, "missed_call")]);
        Given::with(())
            .given_no_previous_events()
            .when(set_rule(true, 10_080, MISSED, "missed_call"))
            .then_expect_events(vec![rule_set(1, true, 10_080, MISSED, "missed_call")]);
    }

    #[test]
    fn a_delay_of_zero_or_more_than_a_week_is_refused() {
        for delay_minutes in [0, 10_081] {
            Given::with(())
                .given_no_previous_events()
                .when(set_rule(true, delay_minutes, MISSED, "missed_call"))
                .then_expect_error(AutomationRulesError::InvalidDelay {
                    delay_minutes: i64::from(delay_minutes),
                });
        }
    }

    #[test]
    fn a_rule_without_outcomes_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(set_rule(true, 15, &[], "missed_call"))
            .then_expect_error(AutomationRulesError::NoOutcomes);
    }

    #[test]
    fn a_rule_with_an_invalid_template_name_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(set_rule(true, 15, MISSED, "Missed Call"))
            .then_expect_error(AutomationRulesError::InvalidTemplateName {
                template_name: "Missed Call".into(),
            });
    }

    #[test]
    fn a_rule_with_an_invalid_language_is_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(AutomationRulesCommand::SetCallFollowUpRule {
                enabled: true,
                delay_minutes: 15,
                outcomes: outcomes(MISSED),
                template_name: "missed_call".into(),
                language: "english".into(),
                at: at(0),
            })
            .then_expect_error(AutomationRulesError::InvalidLanguage {
                language: "english".into(),
            });
    }

    // --- DisableCallFollowUpRule ---

    #[test]
    fn an_enabled_rule_is_disabled_as_a_new_version() {
        Given::with(())
            .given(vec![rule_set(1, true, 15, MISSED, "missed_call")])
            .when(AutomationRulesCommand::DisableCallFollowUpRule { at: at(5) })
            .then_expect_events(vec![AutomationRulesEvent::CallFollowUpRuleDisabled {
                version: 2,
                at: at(5),
            }]);
    }

    #[test]
    fn disabling_a_rule_that_is_not_enabled_changes_nothing() {
        Given::with(())
            .given(vec![rule_set(1, false, 15, MISSED, "missed_call")])
            .when(AutomationRulesCommand::DisableCallFollowUpRule { at: at(5) })
            .then_expect_events(vec![]);
        Given::with(())
            .given_no_previous_events()
            .when(AutomationRulesCommand::DisableCallFollowUpRule { at: at(5) })
            .then_expect_events(vec![]);
    }

    // --- follow_up_for ---

    fn rules(events: Vec<AutomationRulesEvent>) -> AutomationRules {
        let mut state = AutomationRules::default();
        for event in events {
            state.apply(event);
        }
        state
    }

    #[test]
    fn an_enabled_rule_plans_a_follow_up_its_delay_after_a_matching_call() {
        let state = rules(vec![rule_set(1, true, 15, MISSED, "missed_call")]);
        assert_eq!(
            state.follow_up_for(CallOutcome::NoAnswer, at(100)),
            Some(PlannedFollowUp {
                rule_version: 1,
                template_name: "missed_call".into(),
                language: "en_US".into(),
                due_at: at(115),
            })
        );
    }

    #[test]
    fn no_follow_up_is_planned_for_an_outcome_the_rule_does_not_name() {
        let state = rules(vec![rule_set(1, true, 15, MISSED, "missed_call")]);
        assert_eq!(state.follow_up_for(CallOutcome::Completed, at(100)), None);
    }

    #[test]
    fn no_follow_up_is_planned_without_an_enabled_rule() {
        assert_eq!(
            AutomationRules::default().follow_up_for(CallOutcome::NoAnswer, at(0)),
            None
        );
        let disabled = rules(vec![
            rule_set(1, true, 15, MISSED, "missed_call"),
            AutomationRulesEvent::CallFollowUpRuleDisabled { version: 2, at: at(1) },
        ]);
        assert_eq!(disabled.follow_up_for(CallOutcome::NoAnswer, at(0)), None);
        assert_eq!(disabled.version(), 2);
        assert_eq!(disabled.call_follow_up_rule().map(|r| r.delay_minutes), Some(15));
    }

    #[test]
    fn every_event_type_is_listed_and_versioned() {
        let events = [
            rule_set(1, true, 15, MISSED, "missed_call"),
            AutomationRulesEvent::CallFollowUpRuleDisabled { version: 2, at: at(1) },
        ];
        let types: Vec<String> = events.iter().map(DomainEvent::event_type).collect();
        assert_eq!(types, AutomationRulesEvent::TYPES);
        assert!(events.iter().all(|e| e.event_version() == "1.0"));
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(
            AutomationRulesError::InvalidDelay { delay_minutes: 0 }.code(),
            "INVALID_DELAY"
        );
        assert_eq!(AutomationRulesError::NoOutcomes.code(), "NO_OUTCOMES");
        assert_eq!(
            AutomationRulesError::InvalidTemplateName {
                template_name: String::new()
            }
            .code(),
            "INVALID_TEMPLATE_NAME"
        );
        assert_eq!(
            AutomationRulesError::InvalidLanguage {
                language: String::new()
            }
            .code(),
            "INVALID_LANGUAGE"
        );
    }

    // --- Properties over random command sequences ---

    fn any_command() -> impl Strategy<Value = AutomationRulesCommand> {
        let set = (
            any::<bool>(),
            prop_oneof![Just(0u32), Just(15), Just(60), Just(10_080), Just(10_081)],
            proptest::sample::subsequence(CallOutcome::ALL.to_vec(), 0..3),
            prop_oneof![Just("missed_call"), Just("thanks"), Just("Bad Name")],
        )
            .prop_map(|(enabled, delay_minutes, list, template)| set_rule(enabled, delay_minutes, &list, template));
        prop_oneof![
            3 => set,
            1 => Just(AutomationRulesCommand::DisableCallFollowUpRule { at: at(0) }),
        ]
    }

    /// The reference model: the last valid rule set, disabled by a later disable, and the
    /// number of changes.
    #[derive(Default)]
    struct Model {
        version: u32,
        rule: Option<CallFollowUpRule>,
    }

    impl Model {
        fn run(&mut self, command: &AutomationRulesCommand) {
            match command {
                AutomationRulesCommand::SetCallFollowUpRule {
                    enabled,
                    delay_minutes,
                    outcomes,
                    template_name,
                    ..
                } => {
                    let valid = (1..=10_080).contains(delay_minutes)
                        && !outcomes.is_empty()
                        && template_name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
                    let rule = CallFollowUpRule {
                        enabled: *enabled,
                        delay_minutes: *delay_minutes,
                        outcomes: outcomes.clone(),
                        template_name: template_name.clone(),
                        language: "en_US".into(),
                    };
                    if valid && self.rule.as_ref() != Some(&rule) {
                        self.version += 1;
                        self.rule = Some(rule);
                    }
                }
                AutomationRulesCommand::DisableCallFollowUpRule { .. } => {
                    if let Some(rule) = self.rule.as_mut().filter(|r| r.enabled) {
                        rule.enabled = false;
                        self.version += 1;
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn rules_follow_the_reference_model_and_versions_count_changes(
            commands in proptest::collection::vec(any_command(), 1..30)
        ) {
            let mut state = AutomationRules::default();
            let mut model = Model::default();
            for command in &commands {
                let before = state.version();
                if let Ok(Some(event)) = state.decide(command.clone()) {
                    state.apply(event);
                    prop_assert_eq!(state.version(), before + 1);
                } else {
                    prop_assert_eq!(state.version(), before);
                }
                model.run(command);
                prop_assert_eq!(state.version(), model.version);
                prop_assert_eq!(state.call_follow_up_rule(), model.rule.as_ref());
                for outcome in CallOutcome::ALL {
                    let planned = state.follow_up_for(outcome, at(0));
                    let expected = model.rule.as_ref().filter(|r| r.enabled && r.outcomes.contains(&outcome));
                    prop_assert_eq!(planned.is_some(), expected.is_some());
                    if let (Some(planned), Some(rule)) = (planned, expected) {
                        prop_assert_eq!(planned.due_at, at(i64::from(rule.delay_minutes)));
                        prop_assert_eq!(planned.rule_version, model.version);
                    }
                }
            }
        }
    }
}
