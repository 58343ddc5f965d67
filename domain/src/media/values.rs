//! Value types of the `Media` aggregate.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::error::MediaError;

/// Retryable failed attempts after which a fetch is given up.
pub const MAX_FETCH_ATTEMPTS: u32 = 5;

/// The failure code of bytes whose sha-256 is not the one WhatsApp announced.
pub const CHECKSUM_MISMATCH: &str = "checksum_mismatch";

/// The kind of a WhatsApp media message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Audio,
    Video,
    Document,
    Sticker,
}

impl MediaKind {
    /// From WhatsApp's `type` field (`voice` is audio); `None` for kinds without media.
    pub fn from_whatsapp(kind: &str) -> Option<Self> {
        match kind {
            "image" => Some(Self::Image),
            "audio" | "voice" => Some(Self::Audio),
            "video" => Some(Self::Video),
            "document" => Some(Self::Document),
            "sticker" => Some(Self::Sticker),
            _ => None,
        }
    }

    /// The snake_case name, as stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Document => "document",
            Self::Sticker => "sticker",
        }
    }
}

/// Where a media fetch stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaStatus {
    /// No fetch requested on this stream.
    #[default]
    Unknown,
    /// Requested, not fetched yet (possibly after retryable failures).
    Requested,
    /// The bytes are stored.
    Stored,
    /// A failure that is not retried ended the fetch.
    Failed,
    /// Retryable failures reached [`MAX_FETCH_ATTEMPTS`].
    GaveUp,
}

impl MediaStatus {
    /// The snake_case name, as read models store it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Requested => "requested",
            Self::Stored => "stored",
            Self::Failed => "failed",
            Self::GaveUp => "gave_up",
        }
    }

    /// Whether nothing follows.
    pub fn is_settled(&self) -> bool {
        matches!(self, Self::Stored | Self::Failed | Self::GaveUp)
    }
}

/// A sha-256 as 64 lowercase hex digits, from hex (any case) or base64 (standard or URL-safe)
/// of the 32 bytes, the forms WhatsApp uses.
pub fn normalize_sha256(text: &str) -> Result<String, MediaError> {
    let text = text.trim();
    if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(text.to_ascii_lowercase());
    }
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .map_err(|_| MediaError::InvalidSha256)?;
    if bytes.len() != 32 {
        return Err(MediaError::InvalidSha256);
    }
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_sha256_normalizes_from_hex_or_base64_to_lowercase_hex() {
        assert_eq!(normalize_sha256(&HEX.to_uppercase()), Ok(HEX.to_string()));
        let raw = hex::decode(HEX).unwrap_or_default();
        assert_eq!(normalize_sha256(&STANDARD.encode(&raw)), Ok(HEX.to_string()));
        assert_eq!(normalize_sha256(&URL_SAFE_NO_PAD.encode(&raw)), Ok(HEX.to_string()));
    }

    #[test]
    fn a_sha256_of_the_wrong_length_or_alphabet_is_refused() {
        assert_eq!(normalize_sha256("abc"), Err(MediaError::InvalidSha256));
        assert_eq!(normalize_sha256(&"z".repeat(64)), Err(MediaError::InvalidSha256));
        assert_eq!(
            normalize_sha256(&STANDARD.encode([1u8; 16])),
            Err(MediaError::InvalidSha256)
        );
    }

    #[test]
    fn media_kinds_come_from_whatsapp_types_with_media_only() {
        assert_eq!(MediaKind::from_whatsapp("voice"), Some(MediaKind::Audio));
        assert_eq!(MediaKind::from_whatsapp("sticker"), Some(MediaKind::Sticker));
        assert_eq!(MediaKind::from_whatsapp("text"), None);
        assert_eq!(MediaKind::Document.as_str(), "document");
    }
}
