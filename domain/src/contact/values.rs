//! Value types of contacts: handles, sources, consent, tags, custom field keys and the
//! set / clear / leave shape of profile changes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::error::ContactError;

/// The most tags one contact may carry.
pub const MAX_TAGS: usize = 50;
/// The longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 50;
/// The most custom fields one contact may carry.
pub const MAX_CUSTOM_FIELDS: usize = 100;
/// The longest custom field key, in characters.
pub const MAX_CUSTOM_FIELD_KEY_CHARS: usize = 40;

/// What the contact's id was made from (the caller hashes it, see [`crate::pii::IdKey::contact_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactHandleKind {
    /// The E.164 phone number.
    Phone,
    /// WhatsApp's business-scoped user id, when the number is withheld.
    ProviderUser,
}

impl ContactHandleKind {
    /// The kind as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::ProviderUser => "provider_user",
        }
    }
}

/// Where a contact first came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactSource {
    /// An inbound WhatsApp message.
    Whatsapp,
    /// A bulk import.
    Import,
    /// Typed in by a user.
    Manual,
    /// A captured lead.
    Lead,
    /// A telephony call.
    Call,
}

impl ContactSource {
    /// The source as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Whatsapp => "whatsapp",
            Self::Import => "import",
            Self::Manual => "manual",
            Self::Lead => "lead",
            Self::Call => "call",
        }
    }
}

/// How a contact gave or withdrew consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentSource {
    /// A keyword sent on WhatsApp (`START`, `STOP`…).
    WhatsappKeyword,
    /// A web form's consent box.
    WebForm,
    /// A bulk import that states consent.
    Import,
    /// An agent recording what the person said.
    Agent,
    /// An integrator through the API.
    Api,
}

impl ConsentSource {
    /// The source as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WhatsappKeyword => "whatsapp_keyword",
            Self::WebForm => "web_form",
            Self::Import => "import",
            Self::Agent => "agent",
            Self::Api => "api",
        }
    }
}

/// A contact's consent to receive messages: never stated, or the last effective opt-in or
/// opt-out with its source and time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Consent {
    /// Neither opted in nor out.
    #[default]
    Unknown,
    OptedIn {
        source: ConsentSource,
        at: DateTime<Utc>,
    },
    OptedOut {
        source: ConsentSource,
        at: DateTime<Utc>,
    },
}

impl Consent {
    /// The status as stored and shown: `unknown`, `opted_in` or `opted_out`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::OptedIn { .. } => "opted_in",
            Self::OptedOut { .. } => "opted_out",
        }
    }

    /// Whether the contact has opted out.
    pub fn is_opted_out(&self) -> bool {
        matches!(self, Self::OptedOut { .. })
    }
}

/// What kind of outbound message a sender means to send, for [`super::Contact::may_receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutboundKind {
    /// A free-form message inside the 24-hour customer service window.
    FreeForm,
    /// An approved template (a notification, a campaign, a follow-up).
    Template,
    /// The one message an opted-out contact still receives: the confirmation of the opt-out.
    OptOutConfirmation,
}

/// A change of one optional profile field: set to a value, or cleared. "Leave it" is the
/// absence of a `FieldChange`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldChange<T> {
    Set(T),
    Cleared,
}

impl<T> FieldChange<T> {
    /// The field's value after the change.
    pub fn into_value(self) -> Option<T> {
        match self {
            Self::Set(value) => Some(value),
            Self::Cleared => None,
        }
    }
}

/// Deserializes a present field (even `null`) as `Some`, so that with `#[serde(default)]` an
/// absent field reads `None` (leave), `null` reads `Some(None)` (clear) and a value reads
/// `Some(Some(v))` (set).
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A tag, normalized: trimmed, lowercase, inner runs of spaces folded to one; 1 to 50
/// characters of letters, digits, `-`, `_` and spaces. `" VIP  Client "` is `vip client`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    /// Normalizes and checks a tag as typed.
    pub fn parse(raw: &str) -> Result<Self, ContactError> {
        let folded = raw.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        let chars = folded.chars().count();
        let allowed = folded
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == ' ');
        if chars == 0 || chars > MAX_TAG_CHARS || !allowed || raw.chars().any(|c| c.is_whitespace() && c != ' ') {
            return Err(ContactError::InvalidTag { tag: raw.to_string() });
        }
        Ok(Self(folded))
    }

    /// The normalized tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalized tag, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A custom field's key: `^[a-z][a-z0-9_]{0,39}$`. Keys are the tenant's vocabulary, not
/// personal data; the values are (sealed in envelopes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct CustomFieldKey(String);

impl CustomFieldKey {
    /// Checks a key as given (no normalization: keys are identifiers).
    pub fn parse(raw: &str) -> Result<Self, ContactError> {
        let bytes = raw.as_bytes();
        let valid = (1..=MAX_CUSTOM_FIELD_KEY_CHARS).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if valid {
            Ok(Self(raw.to_string()))
        } else {
            Err(ContactError::InvalidCustomFieldKey { key: raw.to_string() })
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for CustomFieldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tags_are_trimmed_lowercased_and_their_spaces_folded() {
        assert_eq!(
            Tag::parse("  VIP   Client ").map(Tag::into_string),
            Ok("vip client".into())
        );
        assert_eq!(
            Tag::parse("solar-2026_q1").map(Tag::into_string),
            Ok("solar-2026_q1".into())
        );
        assert_eq!(Tag::parse("Época").map(Tag::into_string), Ok("época".into()));
    }

    #[test]
    fn empty_long_or_punctuated_tags_are_refused() {
        let long = "a".repeat(MAX_TAG_CHARS + 1);
        for bad in [
            "",
            "   ",
            "vip!",
            "a,b",
            "tag\nnext",
            "tab\there",
            "#hot",
            long.as_str(),
        ] {
            assert_eq!(
                Tag::parse(bad),
                Err(ContactError::InvalidTag { tag: bad.to_string() }),
                "{bad:?}"
            );
        }
        assert!(Tag::parse(&"a".repeat(MAX_TAG_CHARS)).is_ok());
    }

    #[test]
    fn custom_field_keys_are_lowercase_identifiers_of_at_most_40_characters() {
        for good in ["a", "roof_type", "kw2", &"k".repeat(40)] {
            assert!(CustomFieldKey::parse(good).is_ok(), "{good:?}");
        }
        for bad in ["", "Roof", "1st", "_x", "roof-type", "roof type", &"k".repeat(41)] {
            assert_eq!(
                CustomFieldKey::parse(bad),
                Err(ContactError::InvalidCustomFieldKey { key: bad.to_string() }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_profile_change_reads_absent_null_and_value_as_leave_clear_and_set() {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default, deserialize_with = "present")]
            name: Option<Option<String>>,
        }
        let read = |json: &str| serde_json::from_str::<Probe>(json).map(|p| p.name).ok();
        assert_eq!(read("{}"), Some(None));
        assert_eq!(read(r#"{"name":null}"#), Some(Some(None)));
        assert_eq!(read(r#"{"name":"x"}"#), Some(Some(Some("x".into()))));
    }

    proptest! {
        #[test]
        fn a_normalized_tag_parses_to_itself(raw in "[A-Za-z0-9 _-]{0,60}") {
            if let Ok(tag) = Tag::parse(&raw) {
                prop_assert_eq!(Tag::parse(tag.as_str()), Ok(tag.clone()));
                prop_assert!(!tag.as_str().starts_with(' ') && !tag.as_str().ends_with(' '));
                prop_assert!(!tag.as_str().contains("  "));
                prop_assert_eq!(tag.as_str().to_lowercase(), tag.as_str());
            }
        }
    }
}
