//! E.164 phone numbers, parsed once at the edge and trusted after.

use std::fmt;

/// A phone number in E.164 form: `+` and 8 to 15 digits, the first not zero.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

/// Why a string is not an E.164 phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an E.164 phone number (8 to 15 digits, optionally after '+')")]
pub struct InvalidPhoneNumber;

impl PhoneNumber {
    /// Parses `+263771234567` or WhatsApp's `wa_id` form `263771234567`. Spaces, dashes and
    /// parentheses are ignored.
    pub fn parse(value: &str) -> Result<Self, InvalidPhoneNumber> {
        let trimmed = value.trim();
        let digits_part = trimmed.strip_prefix('+').unwrap_or(trimmed);
        let mut digits = String::with_capacity(16);
        for c in digits_part.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '(' | ')' | '.' => {}
                _ => return Err(InvalidPhoneNumber),
            }
        }
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(InvalidPhoneNumber);
        }
        Ok(Self(format!("+{digits}")))
    }

    /// The number as `+digits`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Personal data: never printed whole in logs or debug output.
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail: String = self
            .0
            .chars()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        write!(f, "PhoneNumber(+…{tail})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whatsapp_ids_and_formatted_numbers_parse_to_e164() {
        assert_eq!(
            PhoneNumber::parse("263771234567").map(|p| p.to_string()),
            Ok("+263771234567".into())
        );
        assert_eq!(
            PhoneNumber::parse("+1 (415) 555-0100").map(|p| p.to_string()),
            Ok("+14155550100".into())
        );
    }

    #[test]
    fn letters_short_numbers_and_leading_zeros_are_refused() {
        for bad in ["abc", "+12", "0771234567", "+263-77x", "1234567890123456"] {
            assert_eq!(PhoneNumber::parse(bad), Err(InvalidPhoneNumber), "{bad}");
        }
    }

    #[test]
    fn debug_output_hides_the_number() {
        let Ok(p) = PhoneNumber::parse("263771234567") else {
            panic!("valid")
        };
        assert!(!format!("{p:?}").contains("2637712345"));
    }
}
