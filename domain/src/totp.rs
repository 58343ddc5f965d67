//! Time-based one-time passwords (RFC 6238, HMAC-SHA1, 30-second steps, 6 digits): the second
//! factor of a user's sign-in (issue 14), as every authenticator app computes it. Pure: the
//! caller brings the secret and the time.

use crate::crypto::hmac_sha1;

/// Seconds per step.
pub const STEP_SECS: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps either side of now a code is accepted at (clock drift between phone and server).
pub const WINDOW: i64 = 1;
/// The secret's length in bytes (160 bits, RFC 4226's recommendation).
pub const SECRET_BYTES: usize = 20;

/// The step a moment (seconds since the epoch) falls in.
pub fn step_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// The code of `secret` at `step` (RFC 4226's dynamic truncation), zero-padded.
pub fn code_at(secret: &[u8], step: i64) -> String {
    let mac = hmac_sha1(secret, &[&step.to_be_bytes()]);
    let offset = usize::from(mac[19] & 0x0f);
    let binary = (u32::from(mac[offset] & 0x7f) << 24)
        | (u32::from(mac[offset + 1]) << 16)
        | (u32::from(mac[offset + 2]) << 8)
        | u32::from(mac[offset + 3]);
    format!("{:0width$}", binary % 10u32.pow(DIGITS), width = DIGITS as usize)
}

/// The step whose code `code` is, within [`WINDOW`] steps of `unix_secs`, and after
/// `last_used_step` (a code is good once: a code seen at sign-in is refused afterwards, and so
/// is any earlier one). Spaces in the code are ignored.
pub fn verify(secret: &[u8], code: &str, unix_secs: i64, last_used_step: Option<i64>) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_of(unix_secs);
    (now - WINDOW..=now + WINDOW)
        .filter(|step| last_used_step.is_none_or(|last| *step > last))
        .find(|step| crate::crypto::constant_time_eq(code_at(secret, *step).as_bytes(), code.as_bytes()))
}

/// RFC 4648 base32 without padding: how authenticator apps take a secret.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URI an authenticator app reads from a QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let escape = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        escape(issuer),
        escape(account),
        base32(secret),
        escape(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 secret.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn codes_match_rfc_6238s_test_vectors() {
        // The RFC gives 8 digits; a 6-digit code is their last six.
        for (time, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at(RFC_SECRET, step_of(time)), eight[2..], "at {time}");
        }
    }

    #[test]
    fn a_code_is_accepted_one_step_either_side_and_only_after_the_last_used_step() {
        let now = 1_234_567_890;
        let step = step_of(now);
        let code = code_at(RFC_SECRET, step);
        assert_eq!(verify(RFC_SECRET, &code, now, None), Some(step));
        assert_eq!(
            verify(RFC_SECRET, &format!("{} {}", &code[..3], &code[3..]), now, None),
            Some(step)
        );
        assert_eq!(verify(RFC_SECRET, &code, now + STEP_SECS, None), Some(step));
        assert_eq!(verify(RFC_SECRET, &code, now - STEP_SECS, None), Some(step));
        assert_eq!(verify(RFC_SECRET, &code, now + 2 * STEP_SECS, None), None);
        // Reused: refused once its step was used, and so is an older code.
        assert_eq!(verify(RFC_SECRET, &code, now, Some(step)), None);
        let previous = code_at(RFC_SECRET, step - 1);
        assert_eq!(verify(RFC_SECRET, &previous, now, Some(step)), None);
        assert_eq!(verify(RFC_SECRET, "12345", now, None), None);
        assert_eq!(verify(RFC_SECRET, "abcdef", now, None), None);
    }

    #[test]
    fn base32_is_rfc_4648s() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(RFC_SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            otpauth_uri("Chronicle (acme)", "amina@example.com", b"foobar"),
            "otpauth://totp/Chronicle%20%28acme%29:amina@example.com?secret=MZXW6YTBOI&issuer=Chronicle%20%28acme%29&algorithm=SHA1&digits=6&period=30"
        );
    }
}
