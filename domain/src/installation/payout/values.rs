//! Value types of payouts: the tiers, the pure payout function, the status.

use serde::{Deserialize, Serialize};

/// The upper bounds (inclusive, watts) of every tier but the last: a size of exactly 3 000 W
/// is `small`, 3 001 W is `medium`.
pub const TIER_BOUNDARIES_W: [u32; 3] = [3_000, 6_000, 10_000];

/// The largest quality bonus one payout can carry, in minor units (five times the largest tier
/// base): a sanity bound against typos, not a pay policy.
pub const MAX_QUALITY_BONUS_MINOR: u32 = 100_000;

/// A payout tier by system size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayoutTier {
    /// Up to 3 000 W (and every Starlink-sized job): 5 000 minor units.
    Small,
    /// 3 001 to 6 000 W: 8 000.
    Medium,
    /// 6 001 to 10 000 W: 12 000.
    Large,
    /// Above 10 000 W: 20 000.
    Commercial,
}

impl PayoutTier {
    /// Every tier, smallest first.
    pub const ALL: [Self; 4] = [Self::Small, Self::Medium, Self::Large, Self::Commercial];

    /// The tier of a system size.
    pub fn for_size(system_size_w: u32) -> Self {
        match system_size_w {
            0..=3_000 => Self::Small,
            3_001..=6_000 => Self::Medium,
            6_001..=10_000 => Self::Large,
            _ => Self::Commercial,
        }
    }

    /// The tier's base payout, in minor units of the tenant's payout currency.
    pub fn base_minor(self) -> i64 {
        match self {
            Self::Small => 5_000,
            Self::Medium => 8_000,
            Self::Large => 12_000,
            Self::Commercial => 20_000,
        }
    }

    /// The tier as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Small => "small",
            Self::Medium => "medium",
            Self::Large => "large",
            Self::Commercial => "commercial",
        }
    }
}

/// The payout for an installation: the base of the system size's tier
/// ([`PayoutTier::for_size`], [`PayoutTier::base_minor`]) plus the quality bonus, if any,
/// added once. Minor units; never negative, never overflows (`u32` bonus into `i64`).
pub fn payout_for(system_size_w: u32, quality_bonus_minor: Option<u32>) -> i64 {
    PayoutTier::for_size(system_size_w).base_minor() + i64::from(quality_bonus_minor.unwrap_or(0))
}

/// A payout's status: `pending → approved → paid`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    #[default]
    Pending,
    Approved,
    Paid,
}

impl PayoutStatus {
    /// The status as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Paid => "paid",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_tier_amounts_are_the_documented_ones() {
        assert_eq!(payout_for(1, None), 5_000);
        assert_eq!(payout_for(3_000, None), 5_000);
        assert_eq!(payout_for(3_001, None), 8_000);
        assert_eq!(payout_for(6_000, None), 8_000);
        assert_eq!(payout_for(6_001, None), 12_000);
        assert_eq!(payout_for(10_000, None), 12_000);
        assert_eq!(payout_for(10_001, None), 20_000);
        assert_eq!(payout_for(u32::MAX, Some(u32::MAX)), 20_000 + i64::from(u32::MAX));
    }

    /// A size at or next to a tier boundary: `boundary - 1`, `boundary`, `boundary + 1`.
    fn around_a_boundary() -> impl Strategy<Value = u32> {
        (0..TIER_BOUNDARIES_W.len(), -1i64..=1).prop_map(|(i, d)| (i64::from(TIER_BOUNDARIES_W[i]) + d) as u32)
    }

    fn any_size() -> impl Strategy<Value = u32> {
        prop_oneof![around_a_boundary(), 0u32..20_000, any::<u32>()]
    }

    proptest! {
        /// At every boundary ±1 W: the boundary itself pays the lower tier, one watt more pays
        /// the next tier, exactly.
        #[test]
        fn every_boundary_pays_the_exact_tier_amounts(i in 0..TIER_BOUNDARIES_W.len(), bonus in proptest::option::of(0u32..100_000)) {
            let boundary = TIER_BOUNDARIES_W[i];
            let b = i64::from(bonus.unwrap_or(0));
            let lower = PayoutTier::ALL[i];
            let upper = PayoutTier::ALL[i + 1];
            prop_assert_eq!(PayoutTier::for_size(boundary - 1), lower);
            prop_assert_eq!(PayoutTier::for_size(boundary), lower);
            prop_assert_eq!(PayoutTier::for_size(boundary + 1), upper);
            prop_assert_eq!(payout_for(boundary - 1, bonus), lower.base_minor() + b);
            prop_assert_eq!(payout_for(boundary, bonus), lower.base_minor() + b);
            prop_assert_eq!(payout_for(boundary + 1, bonus), upper.base_minor() + b);
            prop_assert!(upper.base_minor() > lower.base_minor());
        }

        /// A bigger system never pays less (whatever the bonus, the same on both sides).
        #[test]
        fn the_payout_is_monotonic_in_system_size(a in any_size(), b in any_size(), bonus in proptest::option::of(any::<u32>())) {
            let (small, big) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(payout_for(small, bonus) <= payout_for(big, bonus));
        }

        /// The bonus is added exactly once: the payout minus the tier's base is the bonus.
        #[test]
        fn the_bonus_is_added_exactly_once(size in any_size(), bonus in any::<u32>()) {
            let base = PayoutTier::for_size(size).base_minor();
            prop_assert_eq!(payout_for(size, None), base);
            prop_assert_eq!(payout_for(size, Some(0)), base);
            prop_assert_eq!(payout_for(size, Some(bonus)) - payout_for(size, None), i64::from(bonus));
        }
    }
}
