//! Lead scoring: a pure function from what is known about a lead to a score 0-100 with the
//! reasons that make it up.
//!
//! The score is the sum of the points of each factor that applies, capped at 100:
//!
//! | factor | points | when |
//! |---|---|---|
//! | `high_intent_source` | 35 | a capture came from the calculator (the visitor priced a system) |
//! | `conversational_source` | 15 | best source is WhatsApp, the chatbot or a call |
//! | `inbound_source` | 10 | best source is a web form or an e-mail |
//! | `listed_source` | 5 | best source is an import or manual entry |
//! | `budget_given` | 15 | a budget range was stated |
//! | `system_size_given` | 10 | an estimated system size was stated |
//! | `reachable_by_phone` | 10 | a phone number was given |
//! | `reachable_by_email` | 5 | an e-mail address was given |
//! | `property_type_given` | 5 | the property type was stated |
//! | `interest_stated` | 5 | a product line was named |
//! | `repeated_captures` | 5 per capture after the first, at most 15 | the prospect came back |
//! | `high_priority` | 10 | highest priority stated is `high` |
//! | `urgent_priority` | 15 | highest priority stated is `urgent` |
//!
//! Only the highest-intent source counts (a lead captured manually that then used the
//! calculator is a calculator lead). The facts other than the source add at most 80 and the best
//! other source 15, so without a calculator capture a score stays at most 95 and a calculator
//! lead always outscores the same lead from any other source.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::values::{LeadSource, Priority};

/// The highest score.
pub const MAX_SCORE: u8 = 100;

/// The points added for each capture after the first, and their cap.
const POINTS_PER_REPEAT: u32 = 5;
const MAX_REPEAT_POINTS: u32 = 15;

/// What the score is computed from: presence of facts, never their (personal) content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LeadFacts {
    /// Every source the lead was captured from.
    pub sources: BTreeSet<LeadSource>,
    /// How many captures the lead has (the first and every duplicate attached).
    pub captures: u32,
    /// The highest priority any capture stated.
    pub priority: Priority,
    pub has_phone: bool,
    pub has_email: bool,
    pub has_interest: bool,
    pub has_property_type: bool,
    pub has_system_size: bool,
    pub has_budget: bool,
}

/// One factor that contributes to a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScoreFactor {
    HighIntentSource,
    ConversationalSource,
    InboundSource,
    ListedSource,
    BudgetGiven,
    SystemSizeGiven,
    ReachableByPhone,
    ReachableByEmail,
    PropertyTypeGiven,
    InterestStated,
    RepeatedCaptures,
    HighPriority,
    UrgentPriority,
}

impl ScoreFactor {
    /// The factor as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HighIntentSource => "high_intent_source",
            Self::ConversationalSource => "conversational_source",
            Self::InboundSource => "inbound_source",
            Self::ListedSource => "listed_source",
            Self::BudgetGiven => "budget_given",
            Self::SystemSizeGiven => "system_size_given",
            Self::ReachableByPhone => "reachable_by_phone",
            Self::ReachableByEmail => "reachable_by_email",
            Self::PropertyTypeGiven => "property_type_given",
            Self::InterestStated => "interest_stated",
            Self::RepeatedCaptures => "repeated_captures",
            Self::HighPriority => "high_priority",
            Self::UrgentPriority => "urgent_priority",
        }
    }
}

/// A factor with the points it added, so a projection shows "why" without knowing the weights
/// (and old events keep the weights they were scored with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScoreReason {
    pub factor: ScoreFactor,
    pub points: u8,
}

/// A lead's score and its reasons, in table order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Score {
    /// 0..=100.
    pub value: u8,
    pub reasons: Vec<ScoreReason>,
}

/// The source factor of one source and its points.
fn source_factor(source: LeadSource) -> (ScoreFactor, u8) {
    match source {
        LeadSource::Calculator => (ScoreFactor::HighIntentSource, 35),
        LeadSource::Whatsapp | LeadSource::Chatbot | LeadSource::Call => (ScoreFactor::ConversationalSource, 15),
        LeadSource::WebForm | LeadSource::Email => (ScoreFactor::InboundSource, 10),
        LeadSource::Import | LeadSource::Manual => (ScoreFactor::ListedSource, 5),
    }
}

/// Scores a lead (see the module docs for the table).
pub fn score(facts: &LeadFacts) -> Score {
    let mut reasons = Vec::new();
    let mut add = |factor, points| reasons.push(ScoreReason { factor, points });

    if let Some((factor, points)) = facts.sources.iter().map(|s| source_factor(*s)).max_by_key(|(_, p)| *p) {
        add(factor, points);
    }
    if facts.has_budget {
        add(ScoreFactor::BudgetGiven, 15);
    }
    if facts.has_system_size {
        add(ScoreFactor::SystemSizeGiven, 10);
    }
    if facts.has_phone {
        add(ScoreFactor::ReachableByPhone, 10);
    }
    if facts.has_email {
        add(ScoreFactor::ReachableByEmail, 5);
    }
    if facts.has_property_type {
        add(ScoreFactor::PropertyTypeGiven, 5);
    }
    if facts.has_interest {
        add(ScoreFactor::InterestStated, 5);
    }
    if facts.captures > 1 {
        let points = facts
            .captures
            .saturating_sub(1)
            .saturating_mul(POINTS_PER_REPEAT)
            .min(MAX_REPEAT_POINTS);
        // At most MAX_REPEAT_POINTS (15), so it fits in a u8.
        add(ScoreFactor::RepeatedCaptures, u8::try_from(points).unwrap_or(u8::MAX));
    }
    match facts.priority {
        Priority::High => add(ScoreFactor::HighPriority, 10),
        Priority::Urgent => add(ScoreFactor::UrgentPriority, 15),
        Priority::Low | Priority::Normal => {}
    }

    let total: u32 = reasons.iter().map(|r| u32::from(r.points)).sum();
    let value = u8::try_from(total.min(u32::from(MAX_SCORE))).unwrap_or(MAX_SCORE);
    Score { value, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_source() -> impl Strategy<Value = LeadSource> {
        proptest::sample::select(LeadSource::ALL.to_vec())
    }

    fn any_priority() -> impl Strategy<Value = Priority> {
        proptest::sample::select(Priority::ALL.to_vec())
    }

    prop_compose! {
        fn any_facts()(
            sources in proptest::collection::btree_set(any_source(), 0..4),
            captures in 0u32..u32::MAX,
            priority in any_priority(),
            flags in proptest::array::uniform6(any::<bool>()),
        ) -> LeadFacts {
            LeadFacts {
                sources,
                captures,
                priority,
                has_phone: flags[0],
                has_email: flags[1],
                has_interest: flags[2],
                has_property_type: flags[3],
                has_system_size: flags[4],
                has_budget: flags[5],
            }
        }
    }

    #[test]
    fn a_bare_manual_lead_scores_low_and_says_why() {
        let facts = LeadFacts {
            sources: [LeadSource::Manual].into(),
            captures: 1,
            ..LeadFacts::default()
        };
        assert_eq!(
            score(&facts),
            Score {
                value: 5,
                reasons: vec![ScoreReason {
                    factor: ScoreFactor::ListedSource,
                    points: 5
                }],
            }
        );
    }

    #[test]
    fn a_complete_calculator_lead_scores_the_maximum() {
        let facts = LeadFacts {
            sources: [LeadSource::Calculator].into(),
            captures: 3,
            priority: Priority::Urgent,
            has_phone: true,
            has_email: true,
            has_interest: true,
            has_property_type: true,
            has_system_size: true,
            has_budget: true,
        };
        let s = score(&facts);
        assert_eq!(s.value, MAX_SCORE);
        assert!(s.reasons.contains(&ScoreReason {
            factor: ScoreFactor::RepeatedCaptures,
            points: 10
        }));
    }

    #[test]
    fn only_the_highest_intent_source_counts() {
        let facts = LeadFacts {
            sources: [LeadSource::Manual, LeadSource::Calculator, LeadSource::Whatsapp].into(),
            captures: 1,
            ..LeadFacts::default()
        };
        assert_eq!(
            score(&facts).reasons,
            vec![ScoreReason {
                factor: ScoreFactor::HighIntentSource,
                points: 35
            }]
        );
    }

    proptest! {
        #[test]
        fn a_score_is_always_between_0_and_100_and_sums_its_reasons(facts in any_facts()) {
            let s = score(&facts);
            prop_assert!(s.value <= MAX_SCORE);
            let sum: u32 = s.reasons.iter().map(|r| u32::from(r.points)).sum();
            prop_assert_eq!(u32::from(s.value), sum.min(100));
        }

        #[test]
        fn a_calculator_lead_outscores_the_same_lead_from_a_manual_source(facts in any_facts()) {
            let calculator = LeadFacts { sources: [LeadSource::Calculator].into(), ..facts.clone() };
            let manual = LeadFacts { sources: [LeadSource::Manual].into(), ..facts };
            prop_assert!(score(&calculator).value > score(&manual).value);
        }

        #[test]
        fn a_calculator_lead_outscores_the_same_lead_from_any_other_source(facts in any_facts(), other in any_source()) {
            prop_assume!(other != LeadSource::Calculator);
            let calculator = LeadFacts { sources: [LeadSource::Calculator].into(), ..facts.clone() };
            let rest = LeadFacts { sources: [other].into(), ..facts };
            prop_assert!(score(&calculator).value > score(&rest).value);
        }

        #[test]
        fn more_facts_never_lower_a_score(facts in any_facts(), extra in any_source()) {
            let mut more = facts.clone();
            more.sources.insert(extra);
            more.captures = more.captures.saturating_add(1);
            more.has_phone = true;
            more.has_budget = true;
            prop_assert!(score(&more).value >= score(&facts).value);
        }
    }
}
