//! Value types of templates and the rules of their parts: name, language, body and its
//! `{{n}}` variables, buttons; and filling the variables in.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::error::TemplateError;
use crate::phone::PhoneNumber;

/// The longest template name, in characters (WhatsApp's limit).
pub const MAX_NAME_CHARS: usize = 512;
/// The longest body, in characters (WhatsApp's limit).
pub const MAX_BODY_CHARS: usize = 1024;
/// The most buttons of one template.
pub const MAX_BUTTONS: usize = 10;
/// The longest button text, in characters.
pub const MAX_BUTTON_TEXT_CHARS: usize = 25;
/// The most URL buttons of one template.
pub const MAX_URL_BUTTONS: usize = 2;
/// The most phone number buttons of one template.
pub const MAX_PHONE_NUMBER_BUTTONS: usize = 1;
/// The longest URL of a URL button.
pub const MAX_URL_CHARS: usize = 2000;

/// WhatsApp's template categories (they decide the price and the review).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TemplateCategory {
    Marketing,
    Utility,
    Authentication,
}

impl TemplateCategory {
    /// The category as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Marketing => "marketing",
            Self::Utility => "utility",
            Self::Authentication => "authentication",
        }
    }
}

/// A template's status: `pending → approved | rejected`; WhatsApp may then pause an approved
/// template (`approved → paused`, and back to approved when it reinstates it) or disable it
/// (`approved | paused → disabled`). Only an approved template is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TemplateStatus {
    Pending,
    Approved,
    Rejected,
    Paused,
    Disabled,
}

impl TemplateStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Paused => "paused",
            Self::Disabled => "disabled",
        }
    }

    /// From its stored name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "pending" => Some(Self::Pending),
            "approved" => Some(Self::Approved),
            "rejected" => Some(Self::Rejected),
            "paused" => Some(Self::Paused),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// The longest header text and footer, in characters (WhatsApp's limits).
pub const MAX_HEADER_CHARS: usize = 60;
pub const MAX_FOOTER_CHARS: usize = 60;

/// The media a media header shows (chosen per send).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeaderFormat {
    Image,
    Video,
    Document,
}

impl HeaderFormat {
    /// The format as stored and shown (WhatsApp's in lowercase).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Document => "document",
        }
    }
}

/// A template's header: a text (at most 60 characters, at most one variable `{{1}}`, filled
/// per send) or a media whose file each send names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TemplateHeader {
    Text { text: String },
    Media { format: HeaderFormat },
}

impl TemplateHeader {
    /// What a send must give for the header: `None` (nothing), or what it names.
    pub fn parameter(&self) -> Option<&'static str> {
        match self {
            Self::Text { text } if variable_count(text).unwrap_or(0) == 1 => Some("a text for {{1}}"),
            Self::Text { .. } => None,
            Self::Media { format } => Some(match format {
                HeaderFormat::Image => "an image link",
                HeaderFormat::Video => "a video link",
                HeaderFormat::Document => "a document link",
            }),
        }
    }
}

/// Checks a header: a text of 1 to 60 characters with at most one variable, `{{1}}`
/// ([`TemplateError::InvalidHeader`]); a media header has nothing to check. Returns it
/// trimmed.
pub fn check_header(header: Option<TemplateHeader>) -> Result<Option<TemplateHeader>, TemplateError> {
    match header {
        Some(TemplateHeader::Text { text }) => {
            let text = text.trim().to_string();
            let chars = text.chars().count();
            if chars == 0 || chars > MAX_HEADER_CHARS {
                return Err(TemplateError::InvalidHeader {
                    reason: format!("a header text is 1 to {MAX_HEADER_CHARS} characters; got {chars}"),
                });
            }
            match variable_count(&text) {
                Ok(0 | 1) => Ok(Some(TemplateHeader::Text { text })),
                _ => Err(TemplateError::InvalidHeader {
                    reason: "a header text has at most one variable, {{1}}".into(),
                }),
            }
        }
        other => Ok(other),
    }
}

/// Checks a footer: 1 to 60 characters, no variables ([`TemplateError::InvalidFooter`]); a
/// blank footer is none. Returns it trimmed.
pub fn check_footer(footer: Option<String>) -> Result<Option<String>, TemplateError> {
    let Some(footer) = footer.map(|f| f.trim().to_string()).filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    if footer.chars().count() > MAX_FOOTER_CHARS || variable_count(&footer).unwrap_or(1) > 0 {
        return Err(TemplateError::InvalidFooter);
    }
    Ok(Some(footer))
}

/// What a button does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ButtonKind {
    /// Sends its text back as a reply; has no value.
    QuickReply,
    /// Opens the URL in `value` (`https://…` or `http://…`).
    Url,
    /// Dials the business number in `value` (stored in E.164).
    PhoneNumber,
}

impl ButtonKind {
    /// The kind as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QuickReply => "quick_reply",
            Self::Url => "url",
            Self::PhoneNumber => "phone_number",
        }
    }
}

/// A template button. The phone number is the business's, not a person's: no envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TemplateButton {
    pub kind: ButtonKind,
    pub text: String,
    pub value: Option<String>,
}

/// Checks a template name: `^[a-z0-9_]{1,512}$`.
pub fn check_name(name: &str) -> Result<(), TemplateError> {
    let valid = (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(TemplateError::InvalidTemplateName { name: name.to_string() })
    }
}

/// Checks a language code as WhatsApp writes them: `en`, `fil`, `en_US`, `pt_BR`
/// (`^[a-z]{2,3}(_[A-Z]{2})?$`).
pub fn check_language(language: &str) -> Result<(), TemplateError> {
    let (base, region) = match language.split_once('_') {
        Some((base, region)) => (base, Some(region)),
        None => (language, None),
    };
    let valid = (2..=3).contains(&base.len())
        && base.bytes().all(|b| b.is_ascii_lowercase())
        && region.is_none_or(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()));
    if valid {
        Ok(())
    } else {
        Err(TemplateError::InvalidLanguage {
            language: language.to_string(),
        })
    }
}

/// A piece of a body: text, or a `{{digits}}` placeholder (the digits as written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'a> {
    Text(&'a str),
    Variable(&'a str),
}

/// Splits a body into text and `{{digits}}` placeholders. Anything else between braces
/// (`{{name}}`, `{{ 1 }}`) is text.
fn segments(body: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    let bytes = body.as_bytes();
    while i < bytes.len() {
        if bytes[i..].starts_with(b"{{") {
            let digits = bytes[i + 2..].iter().take_while(|b| b.is_ascii_digit()).count();
            let close = i + 2 + digits;
            if digits > 0 && bytes[close..].starts_with(b"}}") {
                if text_start < i {
                    out.push(Segment::Text(&body[text_start..i]));
                }
                out.push(Segment::Variable(&body[i + 2..close]));
                i = close + 2;
                text_start = i;
                continue;
            }
        }
        i += 1;
    }
    if text_start < bytes.len() {
        out.push(Segment::Text(&body[text_start..]));
    }
    out
}

/// The number of a placeholder's digits, if canonical (`1`, `12`; not `0` nor `01`).
fn number(digits: &str) -> Option<usize> {
    if digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// Checks a body (1 to 1024 characters, not blank) and its variables (`{{1}}`, `{{2}}`…
/// numbered without gaps from 1, in any order, each usable more than once). Returns how many
/// distinct variables it has.
pub fn check_body(body: &str) -> Result<usize, TemplateError> {
    let chars = body.chars().count();
    if chars == 0 || chars > MAX_BODY_CHARS || body.trim().is_empty() {
        return Err(TemplateError::InvalidBody { chars });
    }
    variable_count(body)
}

/// The number of distinct variables of a body, if they are numbered `{{1}}`…`{{n}}` without
/// gaps; [`TemplateError::VariablesNotContiguous`] otherwise.
pub fn variable_count(body: &str) -> Result<usize, TemplateError> {
    let mut found: Vec<&str> = Vec::new();
    for segment in segments(body) {
        if let Segment::Variable(digits) = segment {
            if !found.contains(&digits) {
                found.push(digits);
            }
        }
    }
    let numbers: Option<BTreeSet<usize>> = found.iter().map(|d| number(d)).collect();
    match numbers {
        // Distinct numbers from 1 whose largest is their count are exactly 1..=count.
        Some(numbers) if numbers.iter().next_back().is_none_or(|max| *max == numbers.len()) => Ok(numbers.len()),
        _ => Err(TemplateError::VariablesNotContiguous {
            found: found.into_iter().map(str::to_string).collect(),
        }),
    }
}

/// Fills a body's `{{n}}` with `params[n - 1]`, in one pass: a parameter that itself contains
/// `{{1}}` is not expanded again. The body must have been accepted by [`check_body`].
pub fn fill(body: &str, params: &[String]) -> Result<String, TemplateError> {
    let expected = variable_count(body)?;
    if params.len() != expected {
        return Err(TemplateError::WrongParameterCount {
            expected,
            got: params.len(),
        });
    }
    let mut out = String::with_capacity(body.len() + params.iter().map(String::len).sum::<usize>());
    for segment in segments(body) {
        match segment {
            Segment::Text(text) => out.push_str(text),
            Segment::Variable(digits) => {
                // variable_count accepted the body, so every number is in 1..=params.len().
                let param = number(digits).and_then(|n| params.get(n.wrapping_sub(1)));
                out.push_str(param.map_or(digits, String::as_str));
            }
        }
    }
    Ok(out)
}

/// Checks buttons and returns them normalized (text and value trimmed, phone numbers in
/// E.164): at most 10, of which at most 2 URL and 1 phone number buttons; text 1 to 25
/// characters; a quick reply has no value, a URL button an `http(s)://` URL, a phone number
/// button a phone number.
pub fn check_buttons(buttons: Vec<TemplateButton>) -> Result<Vec<TemplateButton>, TemplateError> {
    if buttons.len() > MAX_BUTTONS {
        return Err(TemplateError::TooManyButtons { count: buttons.len() });
    }
    for (kind, max) in [
        (ButtonKind::Url, MAX_URL_BUTTONS),
        (ButtonKind::PhoneNumber, MAX_PHONE_NUMBER_BUTTONS),
    ] {
        if buttons.iter().filter(|b| b.kind == kind).count() > max {
            return Err(TemplateError::TooManyButtonsOfKind { kind, max });
        }
    }
    buttons
        .into_iter()
        .enumerate()
        .map(|(index, button)| {
            let text = button.text.trim().to_string();
            if text.is_empty() || text.chars().count() > MAX_BUTTON_TEXT_CHARS {
                return Err(TemplateError::InvalidButtonText { index });
            }
            let value = button.value.as_deref().map(str::trim);
            let value = match (button.kind, value) {
                (ButtonKind::QuickReply, None) => None,
                (ButtonKind::Url, Some(url)) if is_url(url) => Some(url.to_string()),
                (ButtonKind::PhoneNumber, Some(phone)) => Some(
                    PhoneNumber::parse(phone)
                        .map_err(|_| TemplateError::InvalidButtonValue { index })?
                        .to_string(),
                ),
                _ => return Err(TemplateError::InvalidButtonValue { index }),
            };
            Ok(TemplateButton {
                kind: button.kind,
                text,
                value,
            })
        })
        .collect()
}

fn is_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && url.chars().count() <= MAX_URL_CHARS
        && !url.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn button(kind: ButtonKind, text: &str, value: Option<&str>) -> TemplateButton {
        TemplateButton {
            kind,
            text: text.into(),
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn names_are_lowercase_letters_digits_and_underscores() {
        assert_eq!(check_name("order_update_2"), Ok(()));
        assert_eq!(check_name(&"a".repeat(MAX_NAME_CHARS)), Ok(()));
        for bad in [
            "",
            "Order",
            "order-update",
            "order update",
            "é",
            &"a".repeat(MAX_NAME_CHARS + 1),
        ] {
            assert_eq!(
                check_name(bad),
                Err(TemplateError::InvalidTemplateName { name: bad.into() }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn languages_are_a_code_with_an_optional_region() {
        for good in ["en", "fil", "en_US", "pt_BR", "zh_CN"] {
            assert_eq!(check_language(good), Ok(()), "{good}");
        }
        for bad in ["", "e", "EN", "en_us", "en-US", "en_USA", "english", "en_", "_US"] {
            assert_eq!(
                check_language(bad),
                Err(TemplateError::InvalidLanguage { language: bad.into() }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_body_counts_its_distinct_variables() {
        assert_eq!(check_body("Hello"), Ok(0));
        assert_eq!(check_body("Hi {{1}}, your {{2}} is ready, {{1}}"), Ok(2));
        assert_eq!(check_body("{{2}} then {{1}}"), Ok(2));
        assert_eq!(check_body("{{name}} and {{ 1 }} are text"), Ok(0));
        assert_eq!(check_body("{{{1}}}"), Ok(1));
    }

    #[test]
    fn a_body_with_gaps_zero_or_padded_numbers_is_refused() {
        for (body, found) in [
            ("Hi {{1}}, {{3}}", vec!["1", "3"]),
            ("Hi {{2}}", vec!["2"]),
            ("Hi {{0}}", vec!["0"]),
            ("Hi {{01}}", vec!["01"]),
            ("Hi {{99999999999999999999999}}", vec!["99999999999999999999999"]),
        ] {
            assert_eq!(
                check_body(body),
                Err(TemplateError::VariablesNotContiguous {
                    found: found.into_iter().map(String::from).collect()
                }),
                "{body}"
            );
        }
    }

    #[test]
    fn an_empty_blank_or_long_body_is_refused() {
        let long = "a".repeat(MAX_BODY_CHARS + 1);
        assert_eq!(check_body(""), Err(TemplateError::InvalidBody { chars: 0 }));
        assert_eq!(check_body("  \n"), Err(TemplateError::InvalidBody { chars: 3 }));
        assert_eq!(
            check_body(&long),
            Err(TemplateError::InvalidBody {
                chars: MAX_BODY_CHARS + 1
            })
        );
        assert_eq!(check_body(&"é".repeat(MAX_BODY_CHARS)), Ok(0));
    }

    #[test]
    fn filling_replaces_each_variable_once_and_checks_the_count() {
        let params = ["Tendai".to_string(), "{{1}}".to_string()];
        assert_eq!(
            fill("Hi {{1}}, code {{2}}. Bye {{1}}", &params),
            Ok("Hi Tendai, code {{1}}. Bye Tendai".to_string())
        );
        assert_eq!(
            fill("Hi {{1}}", &params),
            Err(TemplateError::WrongParameterCount { expected: 1, got: 2 })
        );
    }

    #[test]
    fn buttons_are_trimmed_and_phone_numbers_normalized() {
        let buttons = vec![
            button(ButtonKind::QuickReply, " Yes ", None),
            button(ButtonKind::Url, "Track", Some("https://acme.example/t/1")),
            button(ButtonKind::PhoneNumber, "Call us", Some("263 77 123 4567")),
        ];
        assert_eq!(
            check_buttons(buttons),
            Ok(vec![
                button(ButtonKind::QuickReply, "Yes", None),
                button(ButtonKind::Url, "Track", Some("https://acme.example/t/1")),
                button(ButtonKind::PhoneNumber, "Call us", Some("+263771234567")),
            ])
        );
    }

    #[test]
    fn more_than_ten_buttons_are_refused() {
        let buttons = vec![button(ButtonKind::QuickReply, "Yes", None); MAX_BUTTONS + 1];
        assert_eq!(check_buttons(buttons), Err(TemplateError::TooManyButtons { count: 11 }));
    }

    #[test]
    fn a_third_url_button_or_a_second_phone_button_is_refused() {
        let url = button(ButtonKind::Url, "Go", Some("https://a.example"));
        assert_eq!(
            check_buttons(vec![url.clone(), url.clone(), url]),
            Err(TemplateError::TooManyButtonsOfKind {
                kind: ButtonKind::Url,
                max: MAX_URL_BUTTONS
            })
        );
        let phone = button(ButtonKind::PhoneNumber, "Call", Some("+263771234567"));
        assert_eq!(
            check_buttons(vec![phone.clone(), phone]),
            Err(TemplateError::TooManyButtonsOfKind {
                kind: ButtonKind::PhoneNumber,
                max: MAX_PHONE_NUMBER_BUTTONS
            })
        );
    }

    #[test]
    fn an_empty_or_long_button_text_is_refused() {
        for text in ["", "  ", &"x".repeat(MAX_BUTTON_TEXT_CHARS + 1)] {
            assert_eq!(
                check_buttons(vec![
                    button(ButtonKind::QuickReply, "Ok", None),
                    button(ButtonKind::QuickReply, text, None)
                ]),
                Err(TemplateError::InvalidButtonText { index: 1 }),
                "{text:?}"
            );
        }
        assert!(check_buttons(vec![button(ButtonKind::QuickReply, &"x".repeat(25), None)]).is_ok());
    }

    #[test]
    fn a_button_value_that_does_not_fit_its_kind_is_refused() {
        for bad in [
            button(ButtonKind::QuickReply, "Yes", Some("payload")),
            button(ButtonKind::Url, "Go", None),
            button(ButtonKind::Url, "Go", Some("ftp://a.example")),
            button(ButtonKind::Url, "Go", Some("https://a b.example")),
            button(ButtonKind::Url, "Go", Some("https://")),
            button(ButtonKind::PhoneNumber, "Call", None),
            button(ButtonKind::PhoneNumber, "Call", Some("call me")),
        ] {
            assert_eq!(
                check_buttons(vec![bad.clone()]),
                Err(TemplateError::InvalidButtonValue { index: 0 }),
                "{bad:?}"
            );
        }
    }

    /// A generated body piece: text without digits (braces allowed), a canonical variable, or
    /// a zero-padded one.
    #[derive(Debug, Clone)]
    enum Piece {
        Text(String),
        Var(usize),
        Padded(usize),
    }

    fn any_piece() -> impl Strategy<Value = Piece> {
        prop_oneof![
            4 => "[a-z ,.!{}\n]{1,8}".prop_map(Piece::Text),
            4 => (0usize..7).prop_map(Piece::Var),
            1 => (0usize..7).prop_map(Piece::Padded),
        ]
    }

    fn body_of(pieces: &[Piece]) -> String {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Var(n) => format!("{{{{{n}}}}}"),
                Piece::Padded(n) => format!("{{{{0{n}}}}}"),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn a_body_is_accepted_exactly_when_its_variables_are_contiguous(pieces in proptest::collection::vec(any_piece(), 1..20)) {
            let body = body_of(&pieces);
            prop_assume!(!body.trim().is_empty());
            let numbers: BTreeSet<usize> = pieces.iter().filter_map(|p| match p { Piece::Var(n) => Some(*n), _ => None }).collect();
            let padded = pieces.iter().any(|p| matches!(p, Piece::Padded(_)));
            let contiguous = !padded && numbers.iter().copied().eq(1..=numbers.len());
            let counted = check_body(&body);
            prop_assert_eq!(counted.is_ok(), contiguous, "{:?} -> {:?}", body, counted);
            if let Ok(count) = counted {
                prop_assert_eq!(count, numbers.len());
                let params: Vec<String> = (0..count).map(|i| "xyz".repeat(i + 1)).collect();
                let rendered = fill(&body, &params);
                let expected: String = pieces.iter().map(|p| match p {
                    Piece::Text(t) => t.clone(),
                    Piece::Var(n) => params[n - 1].clone(),
                    Piece::Padded(_) => unreachable!("refused above"),
                }).collect();
                prop_assert_eq!(rendered.as_ref(), Ok(&expected));
                prop_assert_eq!(variable_count(&expected), Ok(0), "no {{{{n}}}} left in {:?}", expected);
                prop_assert_eq!(
                    fill(&body, &params[..count.saturating_sub(1)]).is_err(),
                    count > 0
                );
            }
        }
    }
}
