//! Every aggregate type of the domain, in one list: [`for_aggregate_type!`] runs code with the
//! aggregate whose `Aggregate::TYPE` (postgres-es's `aggregate_type` column) is a given string.
//!
//! Used where code meets the log's aggregate types as data: the replay tool folds any stream
//! with the domain's own `apply` (`chronicle-replay state`), and the write side answers the
//! same question for its loads. A new aggregate joins [`AGGREGATE_TYPES`] and the macro here;
//! the test below keeps the two in step.

/// The `aggregate_type` of every aggregate, as stored in the log.
pub const AGGREGATE_TYPES: &[&str] = &[
    "ApiKey",
    "AutomationRules",
    "Call",
    "Campaign",
    "Contact",
    "Conversation",
    "InstallationRecord",
    "Lead",
    "MaintenanceContract",
    "Media",
    "Order",
    "Payment",
    "PaymentProviderConfig",
    "PaymentRequest",
    "Payout",
    "ServiceRequest",
    "Template",
    "User",
    "Wallet",
    "Warranty",
    "WarrantyClaim",
    "WebhookEndpoint",
];

/// Every event type of the domain, by aggregate type (each aggregate's `…Event::TYPES`): the
/// catalogue an event-type filter is checked against, and the one integrators read.
pub const EVENT_TYPES: &[(&str, &[&str])] = &[
    ("ApiKey", crate::api_key::ApiKeyEvent::TYPES),
    ("AutomationRules", crate::call::AutomationRulesEvent::TYPES),
    ("Call", crate::call::CallEvent::TYPES),
    ("Campaign", crate::campaign::CampaignEvent::TYPES),
    ("Contact", crate::contact::ContactEvent::TYPES),
    ("Conversation", crate::conversation::ConversationEvent::TYPES),
    ("InstallationRecord", crate::installation::InstallationEvent::TYPES),
    ("Lead", crate::lead::LeadEvent::TYPES),
    ("MaintenanceContract", crate::installation::MaintenanceEvent::TYPES),
    ("Media", crate::media::MediaEvent::TYPES),
    ("Order", crate::installation::OrderEvent::TYPES),
    ("Payment", crate::payment::PaymentEvent::TYPES),
    (
        "PaymentProviderConfig",
        crate::payment_provider::PaymentProviderEvent::TYPES,
    ),
    ("PaymentRequest", crate::payment_request::PaymentRequestEvent::TYPES),
    ("Payout", crate::installation::PayoutEvent::TYPES),
    ("ServiceRequest", crate::installation::ServiceEvent::TYPES),
    ("Template", crate::template::TemplateEvent::TYPES),
    ("User", crate::user::UserEvent::TYPES),
    ("Wallet", crate::wallet::WalletEvent::TYPES),
    ("Warranty", crate::installation::WarrantyEvent::TYPES),
    ("WarrantyClaim", crate::installation::ClaimEvent::TYPES),
    ("WebhookEndpoint", crate::webhook::WebhookEvent::TYPES),
];

/// The aggregate type whose streams hold `event_type`, if it is an event type of the domain.
pub fn aggregate_of_event(event_type: &str) -> Option<&'static str> {
    EVENT_TYPES
        .iter()
        .find(|(_, types)| types.contains(&event_type))
        .map(|(aggregate, _)| *aggregate)
}

/// `for_aggregate_type!(name, A => expression, else fallback)`: evaluates `expression` with the
/// type alias `A` bound to the aggregate whose `TYPE` equals `name` (a `&str`), or `fallback`
/// when no aggregate has that type.
#[macro_export]
macro_rules! for_aggregate_type {
    ($name:expr, $A:ident => $body:expr, else $fallback:expr) => {{
        let name: &str = $name;
        $crate::for_aggregate_type!(@arms name, $A, $body, $fallback;
            $crate::api_key::ApiKey,
            $crate::call::AutomationRules,
            $crate::call::Call,
            $crate::campaign::Campaign,
            $crate::contact::Contact,
            $crate::conversation::Conversation,
            $crate::installation::InstallationRecord,
            $crate::lead::Lead,
            $crate::installation::MaintenanceContract,
            $crate::media::Media,
            $crate::installation::Order,
            $crate::payment::Payment,
            $crate::payment_provider::PaymentProviderConfig,
            $crate::payment_request::PaymentRequest,
            $crate::installation::Payout,
            $crate::installation::ServiceRequest,
            $crate::template::Template,
            $crate::user::User,
            $crate::wallet::Wallet,
            $crate::installation::Warranty,
            $crate::installation::WarrantyClaim,
            $crate::webhook::WebhookEndpoint
        )
    }};
    (@arms $name:ident, $A:ident, $body:expr, $fallback:expr; $($ty:ty),+) => {{
        $(
            if $name == <$ty as $crate::aggregates::__cqrs_es::Aggregate>::TYPE {
                type $A = $ty;
                $body
            } else
        )+
        { $fallback }
    }};
}

#[doc(hidden)]
pub use cqrs_es as __cqrs_es;

#[cfg(test)]
mod tests {
    use super::{AGGREGATE_TYPES, EVENT_TYPES};
    use cqrs_es::Aggregate;

    #[test]
    fn every_listed_type_names_the_aggregate_with_that_type_and_nothing_else_matches() {
        for name in AGGREGATE_TYPES {
            let found: Option<&str> = crate::for_aggregate_type!(name, A => Some(<A as Aggregate>::TYPE), else None);
            assert_eq!(found, Some(*name));
        }
        let none: Option<&str> =
            crate::for_aggregate_type!("NoSuchAggregate", A => Some(<A as Aggregate>::TYPE), else None);
        assert_eq!(none, None);
        let mut sorted = AGGREGATE_TYPES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), AGGREGATE_TYPES.len());
    }

    #[test]
    fn every_aggregate_lists_its_event_types_once_and_no_type_is_in_two_aggregates() {
        let listed: Vec<&str> = EVENT_TYPES.iter().map(|(aggregate, _)| *aggregate).collect();
        assert_eq!(listed, AGGREGATE_TYPES);
        let mut all: Vec<&str> = EVENT_TYPES
            .iter()
            .flat_map(|(_, types)| types.iter().copied())
            .collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "an event type is listed twice");
        assert_eq!(super::aggregate_of_event("ApiKeyRevoked"), Some("ApiKey"));
        assert_eq!(super::aggregate_of_event("NoSuchEvent"), None);
    }
}
