//! Value types of leads: sources, pipeline stages, priorities, property types, budgets, money
//! and the reasons a lead is lost. Every enum has `as_str()` (snake_case, the form stored in read
//! models and shown in GraphQL) and `parse()` (its inverse).

use serde::{Deserialize, Serialize};

/// The largest estimated system size accepted, in watts (10 MW). Anything above is a typo (a
/// size entered in watts where kW was meant, twice over), not a lead.
pub const MAX_SYSTEM_SIZE_W: u32 = 10_000_000;

/// Where a lead came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeadSource {
    /// An inbound WhatsApp conversation.
    Whatsapp,
    /// A website form (contact, service or quote request).
    WebForm,
    /// The website chatbot.
    Chatbot,
    /// The solar (or other) calculator: the visitor priced a system, a high-intent signal.
    Calculator,
    /// A phone call.
    Call,
    /// An e-mail.
    Email,
    /// A bulk import (spreadsheet, another CRM).
    Import,
    /// Entered by hand by a user.
    Manual,
}

impl LeadSource {
    /// Every source, in declaration order.
    pub const ALL: [Self; 8] = [
        Self::Whatsapp,
        Self::WebForm,
        Self::Chatbot,
        Self::Calculator,
        Self::Call,
        Self::Email,
        Self::Import,
        Self::Manual,
    ];

    /// The source as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Whatsapp => "whatsapp",
            Self::WebForm => "web_form",
            Self::Chatbot => "chatbot",
            Self::Calculator => "calculator",
            Self::Call => "call",
            Self::Email => "email",
            Self::Import => "import",
            Self::Manual => "manual",
        }
    }

    /// The inverse of [`Self::as_str`].
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// A lead's stage in the sales pipeline:
/// `new → contacted → qualified → proposal_sent → negotiation → won | lost`.
/// `won` and `lost` are closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    #[default]
    New,
    Contacted,
    Qualified,
    ProposalSent,
    Negotiation,
    Won,
    Lost,
}

impl Stage {
    /// Every stage, in pipeline order (`lost` last).
    pub const ALL: [Self; 7] = [
        Self::New,
        Self::Contacted,
        Self::Qualified,
        Self::ProposalSent,
        Self::Negotiation,
        Self::Won,
        Self::Lost,
    ];

    /// The stage as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Contacted => "contacted",
            Self::Qualified => "qualified",
            Self::ProposalSent => "proposal_sent",
            Self::Negotiation => "negotiation",
            Self::Won => "won",
            Self::Lost => "lost",
        }
    }

    /// The inverse of [`Self::as_str`].
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether the lead is closed (`won` or `lost`).
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Won | Self::Lost)
    }

    /// The one stage a lead may move forward to from here (`negotiation` → `won`); `None` for
    /// closed stages.
    pub fn next(self) -> Option<Self> {
        match self {
            Self::New => Some(Self::Contacted),
            Self::Contacted => Some(Self::Qualified),
            Self::Qualified => Some(Self::ProposalSent),
            Self::ProposalSent => Some(Self::Negotiation),
            Self::Negotiation => Some(Self::Won),
            Self::Won | Self::Lost => None,
        }
    }

    /// The position along the pipeline (`new` = 0 … `won` = 5); `lost` stands beside it.
    pub fn position(self) -> Option<u8> {
        match self {
            Self::New => Some(0),
            Self::Contacted => Some(1),
            Self::Qualified => Some(2),
            Self::ProposalSent => Some(3),
            Self::Negotiation => Some(4),
            Self::Won => Some(5),
            Self::Lost => None,
        }
    }
}

/// How urgently a lead should be worked. Ordered: `low < normal < high < urgent`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    /// Every priority, lowest first.
    pub const ALL: [Self; 4] = [Self::Low, Self::Normal, Self::High, Self::Urgent];

    /// The priority as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Urgent => "urgent",
        }
    }

    /// The inverse of [`Self::as_str`].
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }
}

/// The kind of property an installation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PropertyType {
    Residential,
    Commercial,
    Agricultural,
    Industrial,
}

impl PropertyType {
    /// Every property type.
    pub const ALL: [Self; 4] = [
        Self::Residential,
        Self::Commercial,
        Self::Agricultural,
        Self::Industrial,
    ];

    /// The property type as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Residential => "residential",
            Self::Commercial => "commercial",
            Self::Agricultural => "agricultural",
            Self::Industrial => "industrial",
        }
    }

    /// The inverse of [`Self::as_str`].
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }
}

/// Whether `code` has the shape of an ISO 4217 currency code: three ASCII capital letters.
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// The budget a prospect states, in integer minor units of one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BudgetRange {
    pub min_minor: i64,
    pub max_minor: i64,
    /// ISO 4217, e.g. `USD`, `ZAR`.
    pub currency: String,
}

impl BudgetRange {
    /// Whether the range is well formed: `0 ≤ min ≤ max` and an ISO currency code.
    pub fn is_valid(&self) -> bool {
        self.min_minor >= 0 && self.min_minor <= self.max_minor && is_currency_code(&self.currency)
    }
}

/// An amount of money in integer minor units of one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Money {
    pub amount_minor: i64,
    /// ISO 4217, e.g. `USD`, `ZAR`.
    pub currency: String,
}

impl Money {
    /// Whether the amount is non-negative and the currency an ISO code.
    pub fn is_valid(&self) -> bool {
        self.amount_minor >= 0 && is_currency_code(&self.currency)
    }
}

/// Why a lead was lost: a code, never free text (free text about a person is personal data and
/// travels as the optional sealed note beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LostReason {
    /// The prospect never answered.
    NoResponse,
    /// The price was too high for them.
    PriceTooHigh,
    /// They have no budget.
    NoBudget,
    /// They bought from a competitor.
    ChoseCompetitor,
    /// They are not interested (any more).
    NotInterested,
    /// Not now; maybe later.
    BadTiming,
    /// The site is outside the area served.
    OutOfServiceArea,
    /// The site or need does not fit what is sold.
    NotAFit,
    /// Anything else; a note is required to say what.
    Other,
}

impl LostReason {
    /// Every reason.
    pub const ALL: [Self; 9] = [
        Self::NoResponse,
        Self::PriceTooHigh,
        Self::NoBudget,
        Self::ChoseCompetitor,
        Self::NotInterested,
        Self::BadTiming,
        Self::OutOfServiceArea,
        Self::NotAFit,
        Self::Other,
    ];

    /// The reason as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoResponse => "no_response",
            Self::PriceTooHigh => "price_too_high",
            Self::NoBudget => "no_budget",
            Self::ChoseCompetitor => "chose_competitor",
            Self::NotInterested => "not_interested",
            Self::BadTiming => "bad_timing",
            Self::OutOfServiceArea => "out_of_service_area",
            Self::NotAFit => "not_a_fit",
            Self::Other => "other",
        }
    }

    /// The inverse of [`Self::as_str`].
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_enum_round_trips_through_as_str_and_serde() {
        for s in LeadSource::ALL {
            assert_eq!(LeadSource::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).ok(), Some(serde_json::json!(s.as_str())));
        }
        for s in Stage::ALL {
            assert_eq!(Stage::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).ok(), Some(serde_json::json!(s.as_str())));
        }
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_value(p).ok(), Some(serde_json::json!(p.as_str())));
        }
        for p in PropertyType::ALL {
            assert_eq!(PropertyType::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_value(p).ok(), Some(serde_json::json!(p.as_str())));
        }
        for r in LostReason::ALL {
            assert_eq!(LostReason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).ok(), Some(serde_json::json!(r.as_str())));
        }
        assert_eq!(LeadSource::parse("website"), None);
    }

    #[test]
    fn the_pipeline_runs_one_stage_at_a_time_to_won() {
        let mut stage = Stage::New;
        let mut walked = vec![stage];
        while let Some(next) = stage.next() {
            stage = next;
            walked.push(stage);
        }
        assert_eq!(&walked[..], &Stage::ALL[..6]);
        assert!(Stage::Won.is_closed() && Stage::Lost.is_closed());
        assert!(!Stage::Negotiation.is_closed());
    }

    #[test]
    fn a_budget_needs_min_below_max_and_an_iso_currency() {
        let budget = |min, max, cur: &str| BudgetRange {
            min_minor: min,
            max_minor: max,
            currency: cur.into(),
        };
        assert!(budget(0, 0, "USD").is_valid());
        assert!(budget(100, 500, "ZAR").is_valid());
        assert!(!budget(500, 100, "USD").is_valid());
        assert!(!budget(-1, 100, "USD").is_valid());
        assert!(!budget(1, 100, "usd").is_valid());
        assert!(!budget(1, 100, "US").is_valid());
        assert!(!budget(1, 100, "USDT").is_valid());
    }

    #[test]
    fn money_is_non_negative_in_an_iso_currency() {
        let money = |amount_minor, cur: &str| Money {
            amount_minor,
            currency: cur.into(),
        };
        assert!(money(0, "USD").is_valid());
        assert!(!money(-5, "USD").is_valid());
        assert!(!money(5, "$").is_valid());
    }

    proptest! {
        #[test]
        fn currency_codes_are_exactly_three_capital_letters(code in "\\PC{0,5}") {
            let expected = code.chars().count() == 3 && code.chars().all(|c| c.is_ascii_uppercase());
            prop_assert_eq!(is_currency_code(&code), expected);
        }
    }
}
