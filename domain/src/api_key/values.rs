//! Values of API keys: scopes.

use serde::{Deserialize, Serialize};

/// The longest name of a key, in characters.
pub const MAX_KEY_NAME_CHARS: usize = 100;

/// What a key may be used for, beside what its role allows: a key may do something only when
/// its role and one of its scopes both allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ApiKeyScope {
    /// Read the tenant's event log (history by page and the live subscription), personal fields
    /// omitted.
    #[serde(rename = "events:read")]
    EventsRead,
    /// With `events:read`: personal fields of events opened (names, phone numbers, texts).
    #[serde(rename = "events:read_personal")]
    EventsReadPersonal,
    /// Manage the tenant's outgoing webhooks.
    #[serde(rename = "webhooks:manage")]
    WebhooksManage,
    /// Read conversations, messages and media.
    #[serde(rename = "inbox:read")]
    InboxRead,
    /// Send messages, assign and tag conversations.
    #[serde(rename = "inbox:write")]
    InboxWrite,
    /// Read leads and the funnel.
    #[serde(rename = "leads:read")]
    LeadsRead,
    /// Capture and work leads.
    #[serde(rename = "leads:write")]
    LeadsWrite,
    /// Read contacts, templates and calls.
    #[serde(rename = "contacts:read")]
    ContactsRead,
    /// Change contacts' profiles, tags and consent.
    #[serde(rename = "contacts:write")]
    ContactsWrite,
    /// Read campaigns.
    #[serde(rename = "campaigns:read")]
    CampaignsRead,
    /// Read wallets, the ledger and usage.
    #[serde(rename = "wallets:read")]
    WalletsRead,
    /// Read payments and payment requests.
    #[serde(rename = "payments:read")]
    PaymentsRead,
    /// Read orders.
    #[serde(rename = "orders:read")]
    OrdersRead,
    /// Place orders.
    #[serde(rename = "orders:write")]
    OrdersWrite,
    /// Read installations, warranties, service requests and payouts.
    #[serde(rename = "installations:read")]
    InstallationsRead,
}

impl ApiKeyScope {
    /// Every scope, in the order of their names.
    pub const ALL: &'static [ApiKeyScope] = &[
        Self::CampaignsRead,
        Self::ContactsRead,
        Self::ContactsWrite,
        Self::EventsRead,
        Self::EventsReadPersonal,
        Self::InboxRead,
        Self::InboxWrite,
        Self::InstallationsRead,
        Self::LeadsRead,
        Self::LeadsWrite,
        Self::OrdersRead,
        Self::OrdersWrite,
        Self::PaymentsRead,
        Self::WalletsRead,
        Self::WebhooksManage,
    ];

    /// The scope's name, e.g. `events:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EventsRead => "events:read",
            Self::EventsReadPersonal => "events:read_personal",
            Self::WebhooksManage => "webhooks:manage",
            Self::InboxRead => "inbox:read",
            Self::InboxWrite => "inbox:write",
            Self::LeadsRead => "leads:read",
            Self::LeadsWrite => "leads:write",
            Self::ContactsRead => "contacts:read",
            Self::ContactsWrite => "contacts:write",
            Self::CampaignsRead => "campaigns:read",
            Self::WalletsRead => "wallets:read",
            Self::PaymentsRead => "payments:read",
            Self::OrdersRead => "orders:read",
            Self::OrdersWrite => "orders:write",
            Self::InstallationsRead => "installations:read",
        }
    }

    /// The scope named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for ApiKeyScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_is_listed_once_by_name_and_round_trips_through_serde() {
        let names: Vec<&str> = ApiKeyScope::ALL.iter().map(|s| s.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "ALL is in name order, without repeats");
        for scope in ApiKeyScope::ALL {
            let json = serde_json::to_value(scope).unwrap_or_default();
            assert_eq!(json, serde_json::Value::String(scope.as_str().into()));
            assert_eq!(ApiKeyScope::parse(scope.as_str()), Some(*scope));
        }
        assert_eq!(ApiKeyScope::parse("events:write"), None);
    }
}
