//! Value types of installation system records: installation types, the status machine, the
//! checklist and photo requirements per type, serialized components.

use serde::{Deserialize, Serialize};

/// What is installed. Shared with orders (an installable line item names its type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstallationType {
    Solar,
    Starlink,
    Hybrid,
    CustomFurniture,
}

impl InstallationType {
    /// Every type, in a stable order.
    pub const ALL: [Self; 4] = [Self::Solar, Self::Starlink, Self::Hybrid, Self::CustomFurniture];

    /// The type as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Solar => "solar",
            Self::Starlink => "starlink",
            Self::Hybrid => "hybrid",
            Self::CustomFurniture => "custom_furniture",
        }
    }

    /// From its stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// The checklist of an installation type: every item is required before commissioning.
/// Item ids are contracts (stored in events and read models).
pub fn required_checklist(installation_type: InstallationType) -> &'static [&'static str] {
    match installation_type {
        InstallationType::Solar => &[
            "site_survey",
            "mounting_secured",
            "panels_installed",
            "inverter_installed",
            "dc_wiring_checked",
            "ac_wiring_checked",
            "earthing_tested",
            "system_tested",
            "customer_trained",
        ],
        InstallationType::Starlink => &[
            "site_survey",
            "dish_mounted",
            "cable_routed",
            "router_configured",
            "connectivity_tested",
            "customer_trained",
        ],
        InstallationType::Hybrid => &[
            "site_survey",
            "mounting_secured",
            "panels_installed",
            "inverter_installed",
            "battery_installed",
            "dc_wiring_checked",
            "ac_wiring_checked",
            "earthing_tested",
            "changeover_tested",
            "system_tested",
            "customer_trained",
        ],
        InstallationType::CustomFurniture => &[
            "measurements_verified",
            "assembled",
            "fixed_and_level",
            "finish_inspected",
            "site_cleaned",
            "customer_signoff",
        ],
    }
}

/// The photo kinds an installation type needs before commissioning (other kinds may be
/// attached too). Kinds are contracts.
pub fn photo_requirements(installation_type: InstallationType) -> &'static [&'static str] {
    match installation_type {
        InstallationType::Solar => &["site_before", "panels", "inverter", "wiring", "completed_system"],
        InstallationType::Starlink => &["dish", "router", "speed_test"],
        InstallationType::Hybrid => &[
            "site_before",
            "panels",
            "inverter",
            "battery",
            "wiring",
            "completed_system",
        ],
        InstallationType::CustomFurniture => &["before", "after"],
    }
}

/// Whether `text` is a sha-256 digest in lowercase hex (64 characters of `0-9a-f`).
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An installation's status: `pending → in_progress → commissioned → active → decommissioned`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum InstallationStatus {
    #[default]
    Pending,
    InProgress,
    Commissioned,
    Active,
    Decommissioned,
}

impl InstallationStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::InProgress,
        Self::Commissioned,
        Self::Active,
        Self::Decommissioned,
    ];

    /// The status as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in_progress",
            Self::Commissioned => "commissioned",
            Self::Active => "active",
            Self::Decommissioned => "decommissioned",
        }
    }

    /// From its stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The allowed moves: `pending → in_progress → commissioned → active`, and
    /// `commissioned | active → decommissioned`. Decommissioned is final.
    pub fn may_move_to(self, next: Self) -> bool {
        matches!(
            (self, next),
            (Self::Pending, Self::InProgress)
                | (Self::InProgress, Self::Commissioned)
                | (Self::Commissioned, Self::Active)
                | (Self::Commissioned, Self::Decommissioned)
                | (Self::Active, Self::Decommissioned)
        )
    }

    /// Whether the job may still be staffed and scheduled (before commissioning).
    pub fn before_commissioning(self) -> bool {
        matches!(self, Self::Pending | Self::InProgress)
    }
}

/// A serialized component installed on site; the warranty registered at commissioning runs
/// for `warranty_months` (zero: no warranty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Component {
    pub serial: String,
    /// What it is: `panel`, `inverter`, `battery`, `dish`, `router`, … (free, non-blank).
    pub kind: String,
    pub warranty_months: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_a_checklist_and_photo_requirements_without_duplicates() {
        for t in InstallationType::ALL {
            let items = required_checklist(t);
            let photos = photo_requirements(t);
            assert!(!items.is_empty() && !photos.is_empty());
            let mut unique: Vec<_> = items.to_vec();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), items.len(), "{t:?}");
            assert_eq!(InstallationType::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn a_hybrid_needs_a_battery_installed_and_photographed() {
        assert!(required_checklist(InstallationType::Hybrid).contains(&"battery_installed"));
        assert!(photo_requirements(InstallationType::Hybrid).contains(&"battery"));
        assert!(!required_checklist(InstallationType::Solar).contains(&"battery_installed"));
    }

    #[test]
    fn only_lowercase_64_character_hex_is_a_content_hash() {
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex(&"ab".repeat(31)));
        assert!(!is_sha256_hex(&"zz".repeat(32)));
    }

    #[test]
    fn statuses_only_move_forward_and_decommissioned_is_final() {
        for from in InstallationStatus::ALL {
            assert_eq!(InstallationStatus::parse(from.as_str()), Some(from));
            for to in InstallationStatus::ALL {
                if from.may_move_to(to) {
                    assert!(to > from);
                }
            }
            assert!(!InstallationStatus::Decommissioned.may_move_to(from));
        }
    }
}
