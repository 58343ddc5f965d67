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
    "PaymentRequest",
    "Payout",
    "ServiceRequest",
    "Template",
    "Wallet",
    "Warranty",
    "WarrantyClaim",
];

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
            $crate::payment_request::PaymentRequest,
            $crate::installation::Payout,
            $crate::installation::ServiceRequest,
            $crate::template::Template,
            $crate::wallet::Wallet,
            $crate::installation::Warranty,
            $crate::installation::WarrantyClaim
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
    use super::AGGREGATE_TYPES;
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
}
