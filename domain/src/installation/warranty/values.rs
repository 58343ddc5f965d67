//! Value types of warranties: the stream id convention, the status, the period arithmetic and
//! the terms a claim is checked against.

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};

/// The longest warranty period accepted, in months (25 years: solar panel performance
/// warranties).
pub const MAX_WARRANTY_MONTHS: u32 = 300;

/// The local stream id of the warranty of component `serial` in installation
/// `installation_id`: `warranty_<installation_id>/<serial>`.
pub fn warranty_local_id(installation_id: &str, serial: &str) -> String {
    format!("warranty_{installation_id}/{serial}")
}

/// The end of a warranty period (exclusive): `starts_at` plus `months` calendar months
/// (clamped to the month's last day, e.g. 31 January + 1 month = 28/29 February). `None` when
/// the period is out of range.
pub fn warranty_ends_at(starts_at: DateTime<Utc>, months: u32) -> Option<DateTime<Utc>> {
    if months == 0 || months > MAX_WARRANTY_MONTHS {
        return None;
    }
    starts_at.checked_add_months(Months::new(months))
}

/// A warranty's status: `active` until voided. (Expiry is a matter of time, decided against
/// the period when a claim is filed, not a stored status.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WarrantyStatus {
    #[default]
    Active,
    Voided,
}

impl WarrantyStatus {
    /// The status as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Voided => "voided",
        }
    }
}

/// What a claim is checked against: the warranty's facts at the moment of filing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WarrantyTerms {
    /// The warranty's local id ([`warranty_local_id`]).
    pub warranty_id: String,
    pub installation_id: String,
    pub serial: String,
    pub customer_id: String,
    pub status: WarrantyStatus,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl WarrantyTerms {
    /// Whether the warranty covers a claim made at `at`: active, and `at` in
    /// `[starts_at, ends_at)`.
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        self.status == WarrantyStatus::Active && self.starts_at <= at && at < self.ends_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).single().unwrap()
    }

    #[test]
    fn a_period_ends_the_same_day_months_later_clamped_to_the_month_end() {
        assert_eq!(warranty_ends_at(day(2026, 11, 22), 12), Some(day(2027, 11, 22)));
        assert_eq!(warranty_ends_at(day(2027, 1, 31), 1), Some(day(2027, 2, 28)));
        assert_eq!(warranty_ends_at(day(2026, 1, 1), 0), None);
        assert_eq!(warranty_ends_at(day(2026, 1, 1), MAX_WARRANTY_MONTHS + 1), None);
    }

    #[test]
    fn terms_cover_the_start_but_not_the_end_and_never_a_voided_warranty() {
        let mut terms = WarrantyTerms {
            warranty_id: warranty_local_id("isr_1", "SN-1"),
            installation_id: "isr_1".into(),
            serial: "SN-1".into(),
            customer_id: "ct_1".into(),
            status: WarrantyStatus::Active,
            starts_at: day(2026, 1, 1),
            ends_at: day(2027, 1, 1),
        };
        assert!(terms.covers(day(2026, 1, 1)));
        assert!(terms.covers(day(2026, 12, 31)));
        assert!(!terms.covers(day(2027, 1, 1)));
        assert!(!terms.covers(day(2025, 12, 31)));
        terms.status = WarrantyStatus::Voided;
        assert!(!terms.covers(day(2026, 6, 1)));
        assert_eq!(terms.warranty_id, "warranty_isr_1/SN-1");
    }
}
