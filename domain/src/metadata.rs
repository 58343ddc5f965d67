//! The metadata every command carries and cqrs-es stores beside each of its events: tenant,
//! actor, correlation id and causation id (DOMAIN.md). Request context lives here, never in
//! payloads. The event store's trigger takes `tenant_id` from it.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::tenant::TenantId;

/// Who asked for a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Actor {
    /// A person, by user id, with their role.
    User { user_id: String, role: String },
    /// An integrator's API key, by key id.
    ApiKey { key_id: String },
    /// Chronicle itself: an inbound webhook, a process manager, a fixture loader.
    System { component: String },
}

impl Actor {
    /// Who acted, by id: the user id, the API key id, or the component's name.
    pub fn id(&self) -> &str {
        match self {
            Actor::User { user_id, .. } => user_id,
            Actor::ApiKey { key_id } => key_id,
            Actor::System { component } => component,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User { user_id, role } => write!(f, "user:{user_id}:{role}"),
            Actor::ApiKey { key_id } => write!(f, "api_key:{key_id}"),
            Actor::System { component } => write!(f, "system:{component}"),
        }
    }
}

/// The metadata of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMetadata {
    pub tenant_id: TenantId,
    pub actor: Actor,
    /// Shared by everything done for one request or delivery.
    pub correlation_id: String,
    /// What caused this command: a request id, an inbox row, an event.
    pub causation_id: String,
}

/// Metadata keys as stored in the `metadata` column.
pub mod keys {
    pub const TENANT_ID: &str = "tenant_id";
    pub const ACTOR: &str = "actor";
    pub const CORRELATION_ID: &str = "correlation_id";
    pub const CAUSATION_ID: &str = "causation_id";
}

impl CommandMetadata {
    /// The map cqrs-es stores with each event.
    pub fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            (keys::TENANT_ID.to_string(), self.tenant_id.to_string()),
            (keys::ACTOR.to_string(), self.actor.to_string()),
            (keys::CORRELATION_ID.to_string(), self.correlation_id.clone()),
            (keys::CAUSATION_ID.to_string(), self.causation_id.clone()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_map_carries_tenant_actor_correlation_and_causation() {
        let Ok(tenant_id) = TenantId::parse("acme") else {
            panic!("valid tenant")
        };
        let map = CommandMetadata {
            tenant_id,
            actor: Actor::System {
                component: "whatsapp-webhook".into(),
            },
            correlation_id: "corr-1".into(),
            causation_id: "inbox-7".into(),
        }
        .to_map();
        assert_eq!(map.get("tenant_id").map(String::as_str), Some("acme"));
        assert_eq!(map.get("actor").map(String::as_str), Some("system:whatsapp-webhook"));
        assert_eq!(map.get("correlation_id").map(String::as_str), Some("corr-1"));
        assert_eq!(map.get("causation_id").map(String::as_str), Some("inbox-7"));
    }
}
