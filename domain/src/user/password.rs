//! The password rule (issue 14): at least [`MIN_PASSWORD_CHARS`] characters, at most
//! [`MAX_PASSWORD_CHARS`], not one of the common passwords of the breach corpora, not the
//! user's e-mail address or its local part, and not one character repeated. Following NIST SP
//! 800-63B: length and a blocklist, no composition rules (which make passwords worse).

use super::UserError;

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The longest: long enough for any passphrase, short enough to bound hashing work.
pub const MAX_PASSWORD_CHARS: usize = 256;

const COMMON: &str = include_str!("common_passwords.txt");

/// Whether `password` is on the common list (ignoring case).
pub fn is_common(password: &str) -> bool {
    let lowered = password.to_lowercase();
    COMMON
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .any(|common| common == lowered)
}

/// Checks a new password of the user with `email` against the rule.
pub fn check_password(password: &str, email: &str) -> Result<(), UserError> {
    let weak = |reason: &str| {
        Err(UserError::WeakPassword {
            reason: reason.to_string(),
        })
    };
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return weak(&format!("it must be at least {MIN_PASSWORD_CHARS} characters"));
    }
    if chars > MAX_PASSWORD_CHARS {
        return weak(&format!("it must be at most {MAX_PASSWORD_CHARS} characters"));
    }
    if is_common(password) {
        return weak("it is one of the most common passwords");
    }
    let lowered = password.to_lowercase();
    let email = email.trim().to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    if lowered == email || (!local.is_empty() && lowered == local) {
        return weak("it must not be your e-mail address");
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 3 {
        return weak("it must use more than two different characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_long_common_email_and_repetitive_passwords_are_refused_and_a_passphrase_is_not() {
        let email = "amina.k@example.com";
        for bad in [
            "short",
            "123456789",
            "Password123",
            "QWERTYUIOP",
            "amina.k@example.com",
            "Amina.K@Example.com",
            "aaaaaaaaaaaa",
            "abababababab",
        ] {
            assert!(
                matches!(check_password(bad, email), Err(UserError::WeakPassword { .. })),
                "{bad} was accepted"
            );
        }
        assert!(check_password(&"x y".repeat(100), email).is_err());
        assert_eq!(check_password("correct horse battery staple", email), Ok(()));
        assert_eq!(check_password("Tz8#mKp2vQ", email), Ok(()));
    }

    #[test]
    fn the_list_is_lower_case_and_every_entry_is_long_enough_to_matter() {
        let entries: Vec<&str> = COMMON
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(entries.len() > 150, "{}", entries.len());
        for entry in entries {
            assert_eq!(entry, entry.to_lowercase());
            assert!(
                entry.chars().count() >= MIN_PASSWORD_CHARS,
                "{entry} is shorter than the rule"
            );
        }
    }
}
