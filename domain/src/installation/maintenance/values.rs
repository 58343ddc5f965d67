//! Value types of maintenance contracts: the status and the term arithmetic.

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};

/// The longest term of a start or a renewal, in months.
pub const MAX_TERM_MONTHS: u32 = 60;

/// The end of a term of `months` from `from` (calendar months, clamped to the month's last
/// day). `None` when the term is out of range.
pub fn contract_end(from: DateTime<Utc>, months: u32) -> Option<DateTime<Utc>> {
    if months == 0 || months > MAX_TERM_MONTHS {
        return None;
    }
    from.checked_add_months(Months::new(months))
}

/// A contract's status: `active` until cancelled (lapsing is a matter of time: its end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractStatus {
    #[default]
    Active,
    Cancelled,
}

impl ContractStatus {
    /// The status as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_term_ends_the_same_day_months_later_and_only_in_range() {
        let from = Utc.with_ymd_and_hms(2026, 3, 31, 0, 0, 0).single().unwrap();
        assert_eq!(
            contract_end(from, 12),
            Utc.with_ymd_and_hms(2027, 3, 31, 0, 0, 0).single()
        );
        assert_eq!(
            contract_end(from, 1),
            Utc.with_ymd_and_hms(2026, 4, 30, 0, 0, 0).single()
        );
        assert_eq!(contract_end(from, 0), None);
        assert_eq!(contract_end(from, MAX_TERM_MONTHS + 1), None);
        assert_eq!(ContractStatus::Cancelled.as_str(), "cancelled");
    }
}
