//! Access: JWT (HS256) access tokens carrying tenant, user and role, and API keys for programs
//! (`chr_…`, `chronicle_commands::api_keys`) carrying tenant, role and scopes. The tenant of
//! every query, mutation and subscription comes from the credential, never from an argument.

use chronicle_commands::api_keys::KeyCredential;
use chronicle_domain::api_key::ApiKeyScope;
use chronicle_domain::tenant::TenantId;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::permissions::Permission;

/// The roles of DOMAIN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Agent,
    Technician,
    Finance,
    Auditor,
    Integrator,
}

impl Role {
    /// Parses a role name.
    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Technician => "technician",
            Role::Finance => "finance",
            Role::Auditor => "auditor",
            Role::Integrator => "integrator",
        }
    }
}

/// The `iss` of every access token, checked on the way in.
pub const ISSUER: &str = "chronicle";
/// The `aud` of every access token: this API.
pub const AUDIENCE: &str = "chronicle-api";

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub tenant: String,
    pub role: Role,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Always [`ISSUER`].
    pub iss: String,
    /// Always [`AUDIENCE`].
    pub aud: String,
}

/// The keys access tokens are signed and checked with. The current key signs; during a
/// rotation the previous key is still accepted until `previous_until`, so tokens signed before
/// the rotation run out rather than fail. A token names its key in the header's `kid`: the
/// first 16 hex digits of a SHA-256 of the key, so the id says nothing of the key and needs no
/// configuration of its own.
#[derive(Clone)]
pub struct TokenKeys {
    current: SigningKey,
    previous: Option<(SigningKey, chrono::DateTime<chrono::Utc>)>,
}

/// A key with its `kid`, computed once (every request compares it).
#[derive(Clone)]
struct SigningKey {
    secret: String,
    kid: String,
}

impl SigningKey {
    fn new(secret: &str) -> Self {
        Self {
            secret: secret.to_string(),
            kid: key_id(secret),
        }
    }
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("current", &self.current.kid)
            .field("previous", &self.previous.as_ref().map(|(k, until)| (&k.kid, until)))
            .finish()
    }
}

impl TokenKeys {
    /// One key, no rotation under way.
    pub fn new(current: &str) -> Self {
        Self {
            current: SigningKey::new(current),
            previous: None,
        }
    }

    /// The previous key, still accepted until `until`.
    pub fn with_previous(mut self, previous: &str, until: chrono::DateTime<chrono::Utc>) -> Self {
        self.previous = Some((SigningKey::new(previous), until));
        self
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> &str {
        &self.current.secret
    }

    /// The key named `kid`, if it is accepted at `now`.
    fn accepted(&self, kid: &str, now: chrono::DateTime<chrono::Utc>) -> Option<&str> {
        if self.current.kid == kid {
            return Some(&self.current.secret);
        }
        self.previous
            .as_ref()
            .filter(|(key, until)| key.kid == kid && now < *until)
            .map(|(key, _)| key.secret.as_str())
    }
}

/// The `kid` of a signing key.
pub fn key_id(secret: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest([b"chronicle/jwt-kid/v1:".as_slice(), secret.as_bytes()].concat());
    hex::encode(&digest[..8])
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    /// The user's id, or the API key's id (`key_…`) for a program.
    pub user_id: String,
    pub role: Role,
    /// When the credential expires, seconds since the epoch: long-lived operations
    /// (subscriptions) end then.
    pub expires_at: i64,
    /// Set when the caller presented an API key: its scopes bound what the role allows.
    pub key: Option<KeyAccess>,
}

/// What an API key adds to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAccess {
    /// `key_…`: the actor `api_key:<id>` of the commands the key runs.
    pub key_id: String,
    pub scopes: Vec<ApiKeyScope>,
}

impl Caller {
    /// Whether the caller may do what `permission` names: their role holds it
    /// ([`crate::permissions::TABLE`]) and, for an API key, one of its scopes grants it
    /// ([`Permission::key_scopes`]).
    pub fn may(&self, permission: Permission) -> bool {
        self.role.may(permission)
            && self
                .key
                .as_ref()
                .is_none_or(|key| permission.key_scopes().iter().any(|scope| key.scopes.contains(scope)))
    }

    /// Whether the caller holds `scope`: always for a person (their role decides), for a key
    /// only when it was issued with it.
    pub fn has_scope(&self, scope: ApiKeyScope) -> bool {
        self.key.as_ref().is_none_or(|key| key.scopes.contains(&scope))
    }

    /// The caller of an API key that [`chronicle_commands::api_keys::authenticate`] accepted.
    pub fn of_key(credential: KeyCredential) -> Result<Self, ApiError> {
        let role = Role::parse(&credential.role)
            .ok_or_else(|| ApiError::Unauthenticated("the API key is not valid".into()))?;
        // A key without expiry lasts as long as it is not revoked; open subscriptions watch
        // for the revocation.
        let expires_at = credential.expires_at.map_or(i64::MAX, |t| t.timestamp());
        Ok(Self {
            tenant: credential.tenant,
            user_id: credential.key_id.clone(),
            role,
            expires_at,
            key: Some(KeyAccess {
                key_id: credential.key_id,
                scopes: credential.scopes,
            }),
        })
    }
}

/// Mints a token for a user of a tenant, valid for `ttl`, signed with `secret` (named in the
/// header's `kid`).
pub fn mint(
    secret: &str,
    tenant: &TenantId,
    user_id: &str,
    role: Role,
    ttl: chrono::Duration,
) -> Result<String, ApiError> {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: user_id.to_string(),
        tenant: tenant.to_string(),
        role,
        iat: now,
        exp: now + ttl.num_seconds(),
        iss: ISSUER.to_string(),
        aud: AUDIENCE.to_string(),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key_id(secret));
    encode(&header, &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| ApiError::Unexpected(Box::new(e)))
}

/// Verifies a token (its key, signature, algorithm, issuer, audience and expiry) and returns
/// its caller.
pub fn verify(keys: &TokenKeys, token: &str) -> Result<Caller, ApiError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| ApiError::Unauthenticated(token_refusal(e.kind()).into()))?;
    let kid = header
        .kid
        .ok_or_else(|| ApiError::Unauthenticated("the access token does not name its key (kid)".into()))?;
    let secret = keys.accepted(&kid, chrono::Utc::now()).ok_or_else(|| {
        ApiError::Unauthenticated("the access token is signed with a key that is not accepted (any more)".into())
    })?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let data = decode::<Claims>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation)
        .map_err(|e| ApiError::Unauthenticated(token_refusal(e.kind()).into()))?;
    let tenant = TenantId::parse(&data.claims.tenant)
        .map_err(|_| ApiError::Unauthenticated("the token's tenant is not a tenant id".into()))?;
    Ok(Caller {
        tenant,
        user_id: data.claims.sub,
        role: data.claims.role,
        expires_at: data.claims.exp,
        key: None,
    })
}

/// Why a token was refused, in words (never the JWT library's type names).
fn token_refusal(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => "the access token has expired",
        ErrorKind::InvalidSignature => "the access token's signature is not valid",
        ErrorKind::ImmatureSignature => "the access token is not valid yet",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "the access token is not signed with HS256",
        ErrorKind::MissingRequiredClaim(_) => "the access token lacks a required claim (exp, sub, iss, aud)",
        ErrorKind::InvalidIssuer => "the access token was not issued by Chronicle",
        ErrorKind::InvalidAudience => "the access token is not meant for this API",
        _ => "the access token is not a valid token",
    }
}

/// The token of an `Authorization: Bearer …` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_minted_token_verifies_to_its_tenant_user_and_role() {
        let token = mint(SECRET, &acme(), "u1", Role::Agent, chrono::Duration::hours(1)).unwrap_or_default();
        let caller = verify(&TokenKeys::new(SECRET), &token).ok();
        let now = chrono::Utc::now().timestamp();
        assert_eq!(
            caller.map(|c| (
                c.tenant,
                c.user_id,
                c.role,
                (now + 3500..=now + 3600).contains(&c.expires_at)
            )),
            Some((acme(), "u1".to_string(), Role::Agent, true))
        );
    }

    #[test]
    fn expired_forged_and_garbage_tokens_are_refused() {
        let expired = mint(SECRET, &acme(), "u1", Role::Agent, chrono::Duration::hours(-1)).unwrap_or_default();
        let keys = TokenKeys::new(SECRET);
        assert!(verify(&keys, &expired).is_err());
        let other = mint(
            "another-secret-another-secret-xx",
            &acme(),
            "u1",
            Role::Owner,
            chrono::Duration::hours(1),
        )
        .unwrap_or_default();
        assert!(verify(&keys, &other).is_err());
        assert!(verify(&keys, "not.a.token").is_err());
        // Right key, wrong issuer or audience, or no key id: refused.
        let now = chrono::Utc::now().timestamp();
        let claims = |iss: &str, aud: &str| Claims {
            sub: "u1".into(),
            tenant: "acme".into(),
            role: Role::Owner,
            exp: now + 60,
            iat: now,
            iss: iss.into(),
            aud: aud.into(),
        };
        let signed = |claims: &Claims, kid: Option<String>| {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = kid;
            encode(&header, claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap_or_default()
        };
        let kid = Some(key_id(SECRET));
        assert!(verify(&keys, &signed(&claims(ISSUER, AUDIENCE), kid.clone())).is_ok());
        for (token, why) in [
            (
                signed(&claims("someone-else", AUDIENCE), kid.clone()),
                "issued by Chronicle",
            ),
            (
                signed(&claims(ISSUER, "another-api"), kid.clone()),
                "meant for this API",
            ),
            (signed(&claims(ISSUER, AUDIENCE), None), "kid"),
        ] {
            let refused = verify(&keys, &token).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(refused.contains(why), "{refused}");
        }
    }

    #[test]
    fn after_a_rotation_the_previous_key_is_accepted_until_its_grace_ends() {
        const NEW: &str = "fedcba9876543210fedcba9876543210";
        let old_token = mint(SECRET, &acme(), "u1", Role::Agent, chrono::Duration::hours(1)).unwrap_or_default();
        let new_token = mint(NEW, &acme(), "u1", Role::Agent, chrono::Duration::hours(1)).unwrap_or_default();
        let now = chrono::Utc::now();
        let rotating = TokenKeys::new(NEW).with_previous(SECRET, now + chrono::Duration::minutes(10));
        assert!(verify(&rotating, &old_token).is_ok());
        assert!(verify(&rotating, &new_token).is_ok());
        let over = TokenKeys::new(NEW).with_previous(SECRET, now - chrono::Duration::seconds(1));
        assert!(verify(&over, &old_token).is_err());
        assert!(verify(&over, &new_token).is_ok());
        assert!(verify(&TokenKeys::new(SECRET), &new_token).is_err());
        assert_ne!(key_id(SECRET), key_id(NEW));
        assert_eq!(key_id(SECRET).len(), 16);
    }

    #[test]
    fn only_owners_admins_and_agents_work_leads_and_auditors_only_read_them() {
        use Role::*;
        let all = [Owner, Admin, Agent, Technician, Finance, Auditor, Integrator];
        let readers: Vec<Role> = all.into_iter().filter(|r| r.may(Permission::ReadLeads)).collect();
        let workers: Vec<Role> = all.into_iter().filter(|r| r.may(Permission::WorkLeads)).collect();
        let managers: Vec<Role> = all.into_iter().filter(|r| r.may(Permission::ManageLeads)).collect();
        assert_eq!(readers, vec![Owner, Admin, Agent, Auditor]);
        assert_eq!(workers, vec![Owner, Admin, Agent]);
        assert_eq!(managers, vec![Owner, Admin]);
    }

    #[test]
    fn bearer_headers_are_read_case_insensitively() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }
}
