//! Tenant ids. Every event, stream, read-model row and API call belongs to exactly one tenant,
//! and every stream id begins with `<tenant>:` (the event store holds that as a constraint).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A tenant's id: 2 to 63 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter or
/// digit. The same rule as the `tenants` table's check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// Why a string is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a tenant id is 2 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit; got {0:?}")]
pub struct InvalidTenantId(pub String);

impl TenantId {
    /// Parses a tenant id.
    pub fn parse(value: &str) -> Result<Self, InvalidTenantId> {
        let bytes = value.as_bytes();
        let valid = (2..=63).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
        if valid {
            Ok(Self(value.to_string()))
        } else {
            Err(InvalidTenantId(value.to_string()))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of one of this tenant's streams: `<tenant>:<local>`.
    pub fn stream_id(&self, local: &str) -> String {
        format!("{}:{}", self.0, local)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidTenantId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TenantId> for String {
    fn from(value: TenantId) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_ids_with_dashes_and_digits_are_accepted() {
        assert_eq!(
            TenantId::parse("acme-solar_2").map(|t| t.to_string()),
            Ok("acme-solar_2".into())
        );
    }

    #[test]
    fn ids_with_colons_capitals_or_one_character_are_refused() {
        for bad in ["a", "Acme", "ac:me", "-acme", "", "a b"] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn stream_ids_begin_with_the_tenant() {
        let t = TenantId::parse("acme").map_err(|e| e.to_string());
        assert_eq!(t.map(|t| t.stream_id("ct_1")), Ok("acme:ct_1".to_string()));
    }
}
