//! Value types of automation rules: the call follow-up rule and the checks of its fields.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::call::CallOutcome;

/// The local part of a tenant's automation stream id; the caller prefixes the tenant
/// (`TenantId::stream_id`).
pub const AUTOMATION_STREAM_LOCAL_ID: &str = "automation";

/// The shortest delay between a call's end and its follow-up, in minutes.
pub const MIN_FOLLOW_UP_DELAY_MINUTES: u32 = 1;

/// The longest delay between a call's end and its follow-up, in minutes (7 days).
pub const MAX_FOLLOW_UP_DELAY_MINUTES: u32 = 7 * 24 * 60;

/// A tenant's rule for following calls up on WhatsApp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CallFollowUpRule {
    pub enabled: bool,
    /// Minutes between the call's end and the follow-up.
    pub delay_minutes: u32,
    /// The call outcomes the rule applies to.
    pub outcomes: BTreeSet<CallOutcome>,
    /// The approved WhatsApp template to send.
    pub template_name: String,
    /// The template's language code, e.g. `en_US`.
    pub language: String,
}

/// Whether a name is a WhatsApp template name: 1 to 512 of `a-z`, `0-9` and `_`.
pub fn is_valid_template_name(name: &str) -> bool {
    (1..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether a code is a WhatsApp template language code: 2 or 3 lowercase letters, optionally
/// `_` and a 2-letter uppercase region (`en`, `en_US`, `pt_BR`, `fil`).
pub fn is_valid_language(code: &str) -> bool {
    let (language, region) = match code.split_once('_') {
        Some((language, region)) => (language, Some(region)),
        None => (code, None),
    };
    (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_lowercase())
        && region.is_none_or(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names_are_lowercase_digits_and_underscores_up_to_512() {
        for good in ["missed_call_follow_up", "a", "thanks_2", &"x".repeat(512)] {
            assert!(is_valid_template_name(good), "{good}");
        }
        for bad in ["", "Missed", "missed-call", "missed call", "é", &"x".repeat(513)] {
            assert!(!is_valid_template_name(bad), "{bad}");
        }
    }

    #[test]
    fn language_codes_are_a_language_and_an_optional_region() {
        for good in ["en", "en_US", "pt_BR", "fil", "zh_HK"] {
            assert!(is_valid_language(good), "{good}");
        }
        for bad in ["", "e", "EN", "en_us", "en-US", "english", "en_USA", "en_", "_US"] {
            assert!(!is_valid_language(bad), "{bad}");
        }
    }
}
