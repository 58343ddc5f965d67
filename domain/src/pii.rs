//! Personal data in an immutable log (DESIGN.md).
//!
//! The log is never rewritten, yet a person may ask to be forgotten, so personal fields (phone
//! number, name, email, message content, media references, notes about a person) enter event
//! payloads only as [`Envelope`]s: AES-256-GCM ciphertext under the contact's own [`DataKey`].
//! Data keys are stored wrapped by the [`MasterKey`] in a mutable table; erasing a contact
//! destroys its key, after which its envelopes are noise while the hash chain, which covers the
//! ciphertext, still verifies.
//!
//! Identifiers are never derived from personal data in the clear: a contact's id is a keyed
//! hash ([`IdKey::contact_id`]) of the tenant and the phone number (or provider user id).
//!
//! Pure: randomness comes from the caller (`rand::rngs::OsRng` in production).

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::crypto::hmac_sha256;
use crate::tenant::TenantId;

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    #[error("the master key must be 32 bytes, base64-encoded")]
    InvalidMasterKey,
    #[error("a wrapped data key is malformed or was wrapped by another master key")]
    UnwrapFailed,
    #[error("an envelope is malformed, or was sealed under another key or for another contact")]
    OpenFailed,
    #[error("an envelope's plaintext is not valid UTF-8")]
    NotUtf8,
}

/// The master key (from the configuration) that wraps every data key. Never printed.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(redacted)")
    }
}

impl MasterKey {
    /// From 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// From the base64 text of 32 bytes (standard or URL-safe alphabet).
    pub fn from_base64(text: &str) -> Result<Self, PiiError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| PiiError::InvalidMasterKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| PiiError::InvalidMasterKey)?;
        Ok(Self(bytes))
    }

    /// A new random master key.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The key as base64, for writing a generated key to a private file.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }

    /// Wraps a contact's data key for storage, bound to the tenant and contact.
    pub fn wrap(
        &self,
        key: &DataKey,
        tenant: &TenantId,
        contact_id: &str,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let aad = binding(tenant, contact_id);
        // Encryption with a valid key and a 12-byte nonce cannot fail for inputs this small
        // (aes-gcm errors only past 2^36 bytes); an empty result would fail to unwrap loudly.
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &key.0,
                    aad: aad.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// Unwraps a stored data key.
    pub fn unwrap_key(&self, wrapped: &[u8], tenant: &TenantId, contact_id: &str) -> Result<DataKey, PiiError> {
        if wrapped.len() < 12 {
            return Err(PiiError::UnwrapFailed);
        }
        let (nonce, sealed) = wrapped.split_at(12);
        let aad = binding(tenant, contact_id);
        let plain = self
            .cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| PiiError::UnwrapFailed)?;
        let bytes: [u8; 32] = plain.try_into().map_err(|_| PiiError::UnwrapFailed)?;
        Ok(DataKey(bytes))
    }

    /// The key for identifier hashes, derived from the master key.
    pub fn id_key(&self) -> IdKey {
        IdKey(hmac_sha256(&self.0, &[b"chronicle/contact-id/v1"]))
    }
}

/// A contact's data key (AES-256-GCM). Never printed, never stored unwrapped.
#[derive(Clone)]
pub struct DataKey([u8; 32]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(redacted)")
    }
}

fn binding(tenant: &TenantId, contact_id: &str) -> String {
    format!("{tenant}\u{0}{contact_id}")
}

impl DataKey {
    /// A new random data key.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Seals a personal field for the log, bound to its tenant and contact.
    pub fn seal(
        &self,
        tenant: &TenantId,
        contact_id: &str,
        plaintext: &str,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Envelope {
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let aad = binding(tenant, contact_id);
        // See `MasterKey::wrap`: cannot fail for field-sized inputs.
        let sealed = Aes256Gcm::new(&self.0.into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .unwrap_or_default();
        Envelope {
            enc: ENVELOPE_VERSION.to_string(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            ciphertext: URL_SAFE_NO_PAD.encode(sealed),
        }
    }

    /// Opens an envelope sealed under this key for this tenant and contact.
    pub fn open(&self, tenant: &TenantId, contact_id: &str, envelope: &Envelope) -> Result<String, PiiError> {
        if envelope.enc != ENVELOPE_VERSION {
            return Err(PiiError::OpenFailed);
        }
        let nonce = URL_SAFE_NO_PAD
            .decode(&envelope.nonce)
            .map_err(|_| PiiError::OpenFailed)?;
        let sealed = URL_SAFE_NO_PAD
            .decode(&envelope.ciphertext)
            .map_err(|_| PiiError::OpenFailed)?;
        if nonce.len() != 12 {
            return Err(PiiError::OpenFailed);
        }
        let aad = binding(tenant, contact_id);
        let plain = Aes256Gcm::new(&self.0.into())
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| PiiError::OpenFailed)?;
        String::from_utf8(plain).map_err(|_| PiiError::NotUtf8)
    }

    /// Seals bytes (e.g. a media file) bound to their tenant and contact: the 12-byte nonce
    /// followed by ciphertext and tag. Kept outside the log, in a mutable table; destroying the
    /// key turns them into noise like every envelope.
    pub fn seal_bytes(
        &self,
        tenant: &TenantId,
        contact_id: &str,
        plaintext: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let aad = binding(tenant, contact_id);
        // See `MasterKey::wrap`: aes-gcm errors only past 2^36 bytes, far beyond WhatsApp's
        // media limits; an empty result would fail to open loudly.
        let sealed = Aes256Gcm::new(&self.0.into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens bytes sealed by [`DataKey::seal_bytes`] under this key for this tenant and contact.
    pub fn open_bytes(&self, tenant: &TenantId, contact_id: &str, sealed: &[u8]) -> Result<Vec<u8>, PiiError> {
        if sealed.len() < 12 + 16 {
            return Err(PiiError::OpenFailed);
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let aad = binding(tenant, contact_id);
        Aes256Gcm::new(&self.0.into())
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| PiiError::OpenFailed)
    }
}

const ENVELOPE_VERSION: &str = "aes256gcm.v1";

/// A personal field as it stands in an event payload: ciphertext under the contact's data key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The scheme, `aes256gcm.v1`.
    pub enc: String,
    /// The 12-byte nonce, base64url.
    #[serde(rename = "n")]
    pub nonce: String,
    /// Ciphertext and tag, base64url.
    #[serde(rename = "c")]
    pub ciphertext: String,
}

/// In the event contract (`chronicle_projections::contract`) a personal field is never an
/// envelope: it is the opened value (text; a message's `content` is JSON) for a reader allowed
/// personal data, and absent otherwise. Its schema says so: any value, marked
/// `x-chronicle-personal`, and never required (see [`crate::catalogue`]).
impl schemars::JsonSchema for Envelope {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PersonalField".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Personal data: present only for readers allowed personal data (the opened text, or JSON for a message's content); absent when withheld or erased.",
            "x-chronicle-personal": true
        })
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Envelope({} bytes)", self.ciphertext.len())
    }
}

/// The key of identifier hashes (derived from the master key, see [`MasterKey::id_key`]).
#[derive(Clone)]
pub struct IdKey([u8; 32]);

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdKey(redacted)")
    }
}

/// What a contact is identified by on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactHandle<'a> {
    /// An E.164 phone number.
    Phone(&'a crate::phone::PhoneNumber),
    /// A provider's user id, where the provider withholds the number.
    ProviderUser { provider: &'a str, user_id: &'a str },
    /// An e-mail address, already normalized by the caller (trimmed, lower-case), for
    /// prospects known only by e-mail (web forms, lead duplicate detection).
    Email(&'a str),
}

impl IdKey {
    /// A contact's id: `ct_` and 32 hex digits of HMAC-SHA256 over the tenant and the handle.
    /// Stable for a tenant and number, readable by nobody.
    pub fn contact_id(&self, tenant: &TenantId, handle: ContactHandle<'_>) -> String {
        let tenant = tenant.as_str().as_bytes();
        let digest = match handle {
            ContactHandle::Phone(phone) => hmac_sha256(&self.0, &[tenant, &[0], b"phone\0", phone.as_str().as_bytes()]),
            ContactHandle::ProviderUser { provider, user_id } => hmac_sha256(
                &self.0,
                &[tenant, &[0], b"user\0", provider.as_bytes(), &[0], user_id.as_bytes()],
            ),
            ContactHandle::Email(address) => hmac_sha256(&self.0, &[tenant, &[0], b"email\0", address.as_bytes()]),
        };
        format!("ct_{}", hex::encode(&digest[..16]))
    }

    /// The reference of a provider's message id within a tenant: `wm_` and 32 hex digits.
    /// WhatsApp's message ids encode the contact's phone number, so the log keeps this keyed
    /// hash (stable, so duplicates and statuses still match) and only a sealed copy of the id.
    pub fn message_ref(&self, tenant: &TenantId, provider: &str, message_id: &str) -> String {
        let digest = hmac_sha256(
            &self.0,
            &[
                b"message\0",
                tenant.as_str().as_bytes(),
                &[0],
                provider.as_bytes(),
                &[0],
                message_id.as_bytes(),
            ],
        );
        format!("wm_{}", hex::encode(&digest[..16]))
    }

    /// The order id a caller's idempotency key stands for within a tenant: `order_k` and 32 hex
    /// digits of a keyed hash of the tenant and the key, so a retried `placeOrder` finds the
    /// order it placed, and a key built from personal data (a phone number, say) cannot be
    /// recovered from the id by trying candidates.
    pub fn order_id(&self, tenant: &TenantId, idempotency_key: &str) -> String {
        let digest = hmac_sha256(
            &self.0,
            &[b"order\0", tenant.as_str().as_bytes(), &[0], idempotency_key.as_bytes()],
        );
        format!("order_k{}", hex::encode(&digest[..16]))
    }

    /// The reference of a provider's media id within a tenant: `media_` and 32 hex digits, the
    /// local id of the media's stream. Media ids are the provider's handles to personal files,
    /// so the log keeps only this keyed hash.
    pub fn media_ref(&self, tenant: &TenantId, provider: &str, media_id: &str) -> String {
        let digest = hmac_sha256(
            &self.0,
            &[
                b"media\0",
                tenant.as_str().as_bytes(),
                &[0],
                provider.as_bytes(),
                &[0],
                media_id.as_bytes(),
            ],
        );
        format!("media_{}", hex::encode(&digest[..16]))
    }

    /// A tenant-independent keyed hash of a provider's dedupe key, for the webhook inbox (which
    /// receives deliveries before their tenant is known and must not keep phone numbers once
    /// the payload is cleared).
    pub fn dedupe_key(&self, provider: &str, key: &str) -> String {
        hex::encode(hmac_sha256(
            &self.0,
            &[b"dedupe\0", provider.as_bytes(), &[0], key.as_bytes()],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::PhoneNumber;
    use rand::rngs::OsRng;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_sealed_field_opens_only_with_its_key_tenant_and_contact() {
        let key = DataKey::generate(&mut OsRng);
        let acme = tenant("acme");
        let env = key.seal(&acme, "ct_1", "Tendai Moyo", &mut OsRng);
        assert!(!env.ciphertext.contains("Tendai"));
        assert_eq!(key.open(&acme, "ct_1", &env), Ok("Tendai Moyo".to_string()));
        assert_eq!(key.open(&acme, "ct_2", &env), Err(PiiError::OpenFailed));
        assert_eq!(key.open(&tenant("beta"), "ct_1", &env), Err(PiiError::OpenFailed));
        let other = DataKey::generate(&mut OsRng);
        assert_eq!(other.open(&acme, "ct_1", &env), Err(PiiError::OpenFailed));
    }

    #[test]
    fn a_wrapped_data_key_unwraps_only_under_its_master_key() {
        let master = MasterKey::generate(&mut OsRng);
        let key = DataKey::generate(&mut OsRng);
        let acme = tenant("acme");
        let wrapped = master.wrap(&key, &acme, "ct_1", &mut OsRng);
        let Ok(back) = master.unwrap_key(&wrapped, &acme, "ct_1") else {
            panic!("unwraps")
        };
        let env = key.seal(&acme, "ct_1", "hi", &mut OsRng);
        assert_eq!(back.open(&acme, "ct_1", &env), Ok("hi".into()));
        let other = MasterKey::generate(&mut OsRng);
        assert_eq!(
            other.unwrap_key(&wrapped, &acme, "ct_1").map(|_| ()),
            Err(PiiError::UnwrapFailed)
        );
        assert_eq!(
            master.unwrap_key(&wrapped[..5], &acme, "ct_1").map(|_| ()),
            Err(PiiError::UnwrapFailed)
        );
    }

    #[test]
    fn contact_ids_are_stable_per_tenant_and_reveal_no_digits() {
        let ids = MasterKey::from_bytes([7; 32]).id_key();
        let Ok(phone) = PhoneNumber::parse("263771234567") else {
            panic!("valid")
        };
        let a1 = ids.contact_id(&tenant("acme"), ContactHandle::Phone(&phone));
        let a2 = ids.contact_id(&tenant("acme"), ContactHandle::Phone(&phone));
        let b = ids.contact_id(&tenant("beta"), ContactHandle::Phone(&phone));
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert!(a1.starts_with("ct_") && a1.len() == 35);
        assert!(!a1.contains("771234567"));
    }

    #[test]
    fn e_mail_contact_ids_are_stable_distinct_from_phones_and_reveal_nothing() {
        let ids = MasterKey::from_bytes([7; 32]).id_key();
        let a1 = ids.contact_id(&tenant("acme"), ContactHandle::Email("tendai@example.com"));
        let a2 = ids.contact_id(&tenant("acme"), ContactHandle::Email("tendai@example.com"));
        let b = ids.contact_id(&tenant("beta"), ContactHandle::Email("tendai@example.com"));
        let other = ids.contact_id(&tenant("acme"), ContactHandle::Email("rudo@example.com"));
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert_ne!(a1, other);
        assert!(a1.starts_with("ct_") && a1.len() == 35 && !a1.contains("tendai"));
    }

    #[test]
    fn message_refs_are_per_tenant_and_hide_the_provider_id() {
        let ids = MasterKey::from_bytes([7; 32]).id_key();
        let wamid = "wamid.HBgMMjYzNzcxMDAwMDAxFQIAEhgUM0VCMEQ0RkE2QTQ3QjlGMkJDMzYA";
        let a = ids.message_ref(&tenant("acme"), "whatsapp", wamid);
        assert_eq!(a, ids.message_ref(&tenant("acme"), "whatsapp", wamid));
        assert_ne!(a, ids.message_ref(&tenant("beta"), "whatsapp", wamid));
        assert!(a.starts_with("wm_") && a.len() == 35 && !a.contains("HBg"));
        assert_eq!(
            ids.dedupe_key("whatsapp", "message:x"),
            ids.dedupe_key("whatsapp", "message:x")
        );
        assert_ne!(
            ids.dedupe_key("whatsapp", "message:x"),
            ids.dedupe_key("whatsapp", "message:y")
        );
    }

    #[test]
    fn an_idempotency_key_stands_for_one_order_id_per_tenant_under_the_servers_key() {
        let ids = MasterKey::from_bytes([7; 32]).id_key();
        let a = ids.order_id(&tenant("acme"), "cart-42");
        assert_eq!(a, ids.order_id(&tenant("acme"), "cart-42"));
        assert_ne!(a, ids.order_id(&tenant("acme"), "cart-43"));
        assert_ne!(a, ids.order_id(&tenant("beta"), "cart-42"));
        assert_ne!(
            a,
            MasterKey::from_bytes([8; 32])
                .id_key()
                .order_id(&tenant("acme"), "cart-42")
        );
        assert!(a.starts_with("order_k") && a.len() == "order_k".len() + 32);
    }

    #[test]
    fn sealed_bytes_open_only_with_their_key_tenant_and_contact() {
        let key = DataKey::generate(&mut OsRng);
        let acme = tenant("acme");
        let photo: Vec<u8> = (0u8..=255).cycle().take(4096).collect();
        let sealed = key.seal_bytes(&acme, "ct_1", &photo, &mut OsRng);
        assert_ne!(&sealed[12..12 + 64], &photo[..64]);
        assert_eq!(key.open_bytes(&acme, "ct_1", &sealed), Ok(photo.clone()));
        assert_eq!(key.open_bytes(&acme, "ct_2", &sealed), Err(PiiError::OpenFailed));
        assert_eq!(
            key.open_bytes(&tenant("beta"), "ct_1", &sealed),
            Err(PiiError::OpenFailed)
        );
        let other = DataKey::generate(&mut OsRng);
        assert_eq!(other.open_bytes(&acme, "ct_1", &sealed), Err(PiiError::OpenFailed));
        assert_eq!(key.open_bytes(&acme, "ct_1", &sealed[..20]), Err(PiiError::OpenFailed));
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert_eq!(key.open_bytes(&acme, "ct_1", &tampered), Err(PiiError::OpenFailed));
        let empty = key.seal_bytes(&acme, "ct_1", &[], &mut OsRng);
        assert_eq!(key.open_bytes(&acme, "ct_1", &empty), Ok(vec![]));
    }

    #[test]
    fn media_refs_are_per_tenant_and_hide_the_provider_id() {
        let ids = MasterKey::from_bytes([7; 32]).id_key();
        let a = ids.media_ref(&tenant("acme"), "whatsapp", "1234567890");
        assert_eq!(a, ids.media_ref(&tenant("acme"), "whatsapp", "1234567890"));
        assert_ne!(a, ids.media_ref(&tenant("beta"), "whatsapp", "1234567890"));
        assert_ne!(a, ids.message_ref(&tenant("acme"), "whatsapp", "1234567890"));
        assert!(a.starts_with("media_") && a.len() == 38 && !a.contains("1234567890"));
    }

    #[test]
    fn master_keys_parse_from_base64_of_32_bytes_only() {
        let key = MasterKey::generate(&mut OsRng);
        assert!(MasterKey::from_base64(&key.to_base64()).is_ok());
        assert_eq!(
            MasterKey::from_base64("c2hvcnQ=").map(|_| ()),
            Err(PiiError::InvalidMasterKey)
        );
        assert_eq!(
            MasterKey::from_base64("not base64!").map(|_| ()),
            Err(PiiError::InvalidMasterKey)
        );
        assert_eq!(format!("{key:?}"), "MasterKey(redacted)");
    }
}
