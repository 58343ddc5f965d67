//! `application/x-www-form-urlencoded` bodies: Twilio's callbacks, Paynow's callbacks and
//! status answers, and the forms Chronicle posts to Paynow.

/// Decodes an `application/x-www-form-urlencoded` body into its pairs, in order (`+` is a
/// space, `%XX` a byte); `None` when a pair does not decode to UTF-8 or an escape is broken.
pub fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    fn decode(part: &[u8]) -> Option<String> {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = part.get(i + 1..i + 3)?;
                    let text = std::str::from_utf8(hex).ok()?;
                    out.push(u8::from_str_radix(text, 16).ok()?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut halves = pair.splitn(2, |b| *b == b'=');
            let name = decode(halves.next().unwrap_or_default())?;
            let value = decode(halves.next().unwrap_or_default())?;
            Some((name, value))
        })
        .collect()
}

/// Encodes pairs as a form body (requests to Paynow, simulators and tests).
pub fn encode_form(pairs: &[(String, String)]) -> String {
    fn encode(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for b in text.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_plus_signs_and_percent_escapes_in_order() {
        let pairs = parse_form(b"From=%2B263771000001&To=%2B15550001111&Caller+Name=A+B&Empty=");
        assert_eq!(
            pairs,
            Some(vec![
                ("From".into(), "+263771000001".into()),
                ("To".into(), "+15550001111".into()),
                ("Caller Name".into(), "A B".into()),
                ("Empty".into(), String::new()),
            ])
        );
    }

    #[test]
    fn broken_escapes_and_invalid_utf8_are_not_a_form() {
        assert_eq!(parse_form(b"From=%2"), None);
        assert_eq!(parse_form(b"From=%zz"), None);
        assert_eq!(parse_form(b"From=%ff"), None);
    }
}
