//! Refusals of the `Contact` aggregate, named after the rule they enforce.

use super::values::{MAX_CUSTOM_FIELDS, MAX_TAGS};

/// Why a contact command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    /// A contact is registered under the keyed-hash id the caller made.
    #[error("a contact id is required")]
    MissingContactId,
    /// A contact's stream holds one contact; registering another id on it is refused.
    #[error("this stream holds another contact than {contact_id}")]
    ContactIdMismatch { contact_id: String },
    /// A contact is reached through a phone number or a provider user id, and carries the one
    /// its id was made from.
    #[error("a contact needs a phone number or a provider user id, including the one its id was made from")]
    ContactNeedsAHandle,
    /// Profile, tags, custom fields and consent belong to a registered contact.
    #[error("the contact is not registered")]
    ContactNotRegistered,
    /// Tags are 1 to 50 characters of letters, digits, '-', '_' and spaces.
    #[error("a tag is 1 to 50 characters of letters, digits, '-', '_' and spaces; got {tag:?}")]
    InvalidTag { tag: String },
    /// A contact carries at most 50 tags.
    #[error("a contact carries at most {max} tags", max = MAX_TAGS)]
    TooManyTags,
    /// Custom field keys are `^[a-z][a-z0-9_]{0,39}$`.
    #[error("a custom field key is a lowercase letter then up to 39 of a-z, 0-9 and '_'; got {key:?}")]
    InvalidCustomFieldKey { key: String },
    /// A contact carries at most 100 custom fields.
    #[error("a contact carries at most {max} custom fields", max = MAX_CUSTOM_FIELDS)]
    TooManyCustomFields,
    /// An opted-out contact receives nothing but the confirmation of the opt-out.
    #[error("the contact opted out and receives nothing but the opt-out confirmation")]
    ContactOptedOut,
    /// An erased contact is gone: every command but a repeated erasure is refused.
    #[error("the contact was erased")]
    ContactErased,
    /// An erasure records who asked for it.
    #[error("an erasure needs the id of who requested it")]
    ErasureNeedsARequester,
}

impl ContactError {
    /// The stable code shown to API callers (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingContactId => "MISSING_CONTACT_ID",
            Self::ContactIdMismatch { .. } => "CONTACT_ID_MISMATCH",
            Self::ContactNeedsAHandle => "CONTACT_NEEDS_A_HANDLE",
            Self::ContactNotRegistered => "CONTACT_NOT_REGISTERED",
            Self::InvalidTag { .. } => "INVALID_TAG",
            Self::TooManyTags => "TOO_MANY_TAGS",
            Self::InvalidCustomFieldKey { .. } => "INVALID_CUSTOM_FIELD_KEY",
            Self::TooManyCustomFields => "TOO_MANY_CUSTOM_FIELDS",
            Self::ContactOptedOut => "CONTACT_OPTED_OUT",
            Self::ContactErased => "CONTACT_ERASED",
            Self::ErasureNeedsARequester => "ERASURE_NEEDS_A_REQUESTER",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_screaming_snake_case_and_distinct() {
        let all = [
            ContactError::MissingContactId,
            ContactError::ContactIdMismatch {
                contact_id: "ct_1".into(),
            },
            ContactError::ContactNeedsAHandle,
            ContactError::ContactNotRegistered,
            ContactError::InvalidTag { tag: "!".into() },
            ContactError::TooManyTags,
            ContactError::InvalidCustomFieldKey { key: "X".into() },
            ContactError::TooManyCustomFields,
            ContactError::ContactOptedOut,
            ContactError::ContactErased,
            ContactError::ErasureNeedsARequester,
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(ContactError::code).collect();
        assert_eq!(codes.len(), all.len());
        assert!(codes
            .iter()
            .all(|c| c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_')));
    }
}
