//! Outbound media and interactive messages: what an agent can send besides a text or a
//! template, and WhatsApp's rules for them (Cloud API limits), checked before anything is
//! sealed, charged or recorded.
//!
//! Both are free-form messages: like a text they are allowed only inside the 24-hour customer
//! service window and never to an opted-out contact (the aggregate enforces both). Their
//! content is personal (a caption, a link, the choices offered to one customer), so the
//! conversation's events carry it sealed; the clear forms below exist only on the way in (the
//! API) and on the way out (the sender).

use serde::{Deserialize, Serialize};

use super::error::ConversationError;
use crate::media::MediaKind;
use crate::pii::Envelope;

/// The longest caption WhatsApp accepts on an image, a video or a document.
pub const MAX_CAPTION_CHARS: usize = 1024;
/// The longest document file name accepted.
pub const MAX_FILENAME_CHARS: usize = 240;
/// The longest media link accepted.
pub const MAX_LINK_CHARS: usize = 2048;
/// Reply buttons per message.
pub const MAX_BUTTONS: usize = 3;
/// Rows of a list message, all sections together; sections per list.
pub const MAX_LIST_ROWS: usize = 10;
pub const MAX_LIST_SECTIONS: usize = 10;

/// Where the file of an outbound media message comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum MediaSource {
    /// A public http(s) link WhatsApp downloads the file from (sealed).
    Link { url: Envelope },
    /// A file uploaded through Chronicle (`uploadMedia`), stored sealed in `media_blobs` under
    /// `media_ref`; the sender uploads it to WhatsApp before sending.
    Upload { media_ref: String },
}

/// The MIME types WhatsApp accepts for a kind of media, and its largest file in bytes.
pub fn accepted_types(kind: MediaKind) -> (&'static [&'static str], u64) {
    const MB: u64 = 1024 * 1024;
    match kind {
        MediaKind::Image => (&["image/jpeg", "image/png"], 5 * MB),
        MediaKind::Audio => (
            &["audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"],
            16 * MB,
        ),
        MediaKind::Video => (&["video/mp4", "video/3gpp"], 16 * MB),
        MediaKind::Sticker => (&["image/webp"], 500 * 1024),
        MediaKind::Document => (
            &[
                "text/plain",
                "application/pdf",
                "application/msword",
                "application/vnd.ms-excel",
                "application/vnd.ms-powerpoint",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            ],
            100 * MB,
        ),
    }
}

/// The kinds a file of `mime_type` can be sent as (empty: WhatsApp accepts it as none).
/// Parameters (`; codecs=opus`) and case are ignored.
pub fn kinds_for(mime_type: &str) -> Vec<MediaKind> {
    let mime = essence(mime_type);
    [
        MediaKind::Image,
        MediaKind::Audio,
        MediaKind::Video,
        MediaKind::Sticker,
        MediaKind::Document,
    ]
    .into_iter()
    .filter(|kind| accepted_types(*kind).0.contains(&mime.as_str()))
    .collect()
}

/// A MIME type without its parameters, lowercase.
pub fn essence(mime_type: &str) -> String {
    mime_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Refuses a file WhatsApp would not take as `kind`: a MIME type it does not accept for that
/// kind (`MEDIA_TYPE_NOT_SUPPORTED`) or a file over the kind's limit (`MEDIA_TOO_LARGE`).
pub fn check_file(kind: MediaKind, mime_type: &str, size: u64) -> Result<(), ConversationError> {
    let (types, max) = accepted_types(kind);
    let mime = essence(mime_type);
    if !types.contains(&mime.as_str()) {
        return Err(ConversationError::MediaTypeNotSupported {
            kind: kind.as_str(),
            mime_type: mime,
        });
    }
    if size > max {
        return Err(ConversationError::MediaTooLarge {
            kind: kind.as_str(),
            max_bytes: max,
        });
    }
    Ok(())
}

/// An outbound media message as the caller gives it, in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaMessage {
    pub kind: MediaKind,
    /// A link, or the media ref of an upload (exactly one).
    pub link: Option<String>,
    pub media_ref: Option<String>,
    /// Image, video and document only.
    pub caption: Option<String>,
    /// Documents only: the name the customer sees.
    pub filename: Option<String>,
}

impl MediaMessage {
    /// WhatsApp's rules for a media message: one source (`MEDIA_SOURCE`), an http(s) link
    /// (`BAD_MEDIA_LINK`), a caption only on images, videos and documents and at most 1024
    /// characters (`CAPTION_NOT_ALLOWED`, `TEXT_TOO_LONG`), a file name on documents only
    /// (`FILENAME_NOT_ALLOWED`). Blank captions and file names count as none.
    pub fn check(&self) -> Result<(), ConversationError> {
        let link = self.link.as_deref().map(str::trim).filter(|l| !l.is_empty());
        let upload = self.media_ref.as_deref().map(str::trim).filter(|r| !r.is_empty());
        match (link, upload) {
            (Some(_), Some(_)) | (None, None) => return Err(ConversationError::MediaSource),
            (Some(link), None) => check_link(link)?,
            (None, Some(_)) => {}
        }
        if let Some(caption) = present(&self.caption) {
            if matches!(self.kind, MediaKind::Audio | MediaKind::Sticker) {
                return Err(ConversationError::CaptionNotAllowed {
                    kind: self.kind.as_str(),
                });
            }
            too_long("caption", caption, MAX_CAPTION_CHARS)?;
        }
        if let Some(filename) = present(&self.filename) {
            if self.kind != MediaKind::Document {
                return Err(ConversationError::FilenameNotAllowed {
                    kind: self.kind.as_str(),
                });
            }
            too_long("filename", filename, MAX_FILENAME_CHARS)?;
        }
        Ok(())
    }
}

/// An `http://` or `https://` link with a host, no spaces, at most 2048 characters.
pub fn check_link(link: &str) -> Result<(), ConversationError> {
    let rest = link
        .strip_prefix("https://")
        .or_else(|| link.strip_prefix("http://"))
        .ok_or(ConversationError::BadMediaLink)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || link.chars().any(char::is_whitespace) || link.chars().count() > MAX_LINK_CHARS {
        return Err(ConversationError::BadMediaLink);
    }
    Ok(())
}

/// The text if it is not blank.
pub fn present(text: &Option<String>) -> Option<&str> {
    text.as_deref().map(str::trim).filter(|t| !t.is_empty())
}

fn too_long(field: &'static str, text: &str, max: usize) -> Result<(), ConversationError> {
    if text.chars().count() > max {
        Err(ConversationError::TextTooLong { field, max })
    } else {
        Ok(())
    }
}

fn required(field: &'static str, text: &str, max: usize) -> Result<(), ConversationError> {
    if text.trim().is_empty() {
        return Err(ConversationError::Blank { field });
    }
    too_long(field, text, max)
}

/// A reply button: the id comes back with the customer's tap, the title is what they see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReplyButton {
    pub id: String,
    pub title: String,
}

/// A row of a list message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListRow {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A section of a list message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListSection {
    /// Required when the list has more than one section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub rows: Vec<ListRow>,
}

/// What the customer can choose from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Choices {
    /// One to three reply buttons under the message.
    Buttons { buttons: Vec<ReplyButton> },
    /// A button (`button`: its label) that opens a list of up to ten rows in sections.
    List { button: String, sections: Vec<ListSection> },
}

/// An interactive message: a body with choices, an optional text header and footer. Sealed as
/// JSON in the log (`OutboundBody::Interactive`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Interactive {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
    pub choices: Choices,
}

/// Whether `kind` is `button` or `list`, as WhatsApp names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InteractiveKind {
    Button,
    List,
}

impl InteractiveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Button => "button",
            Self::List => "list",
        }
    }
}

impl Interactive {
    /// `button` or `list`.
    pub fn kind(&self) -> InteractiveKind {
        match self.choices {
            Choices::Buttons { .. } => InteractiveKind::Button,
            Choices::List { .. } => InteractiveKind::List,
        }
    }

    /// WhatsApp's rules: a body of 1 to 1024 characters, a header and a footer of at most 60;
    /// 1 to 3 buttons (`NO_CHOICES`, `TOO_MANY_BUTTONS`) with titles of at most 20 and ids of at
    /// most 256 characters, titles and ids unique (`DUPLICATE_CHOICE`); a list with a button
    /// label of at most 20, 1 to 10 sections and 1 to 10 rows in all (`TOO_MANY_LIST_ROWS`),
    /// every section with rows, titled (at most 24) when there are several, rows with titles of
    /// at most 24, descriptions of at most 72 and ids of at most 200 characters, ids unique.
    /// Blank required texts are `BLANK_FIELD`, long ones `TEXT_TOO_LONG`.
    pub fn check(&self) -> Result<(), ConversationError> {
        required("body", &self.body, 1024)?;
        if let Some(header) = present(&self.header) {
            too_long("header", header, 60)?;
        }
        if let Some(footer) = present(&self.footer) {
            too_long("footer", footer, 60)?;
        }
        match &self.choices {
            Choices::Buttons { buttons } => {
                if buttons.is_empty() {
                    return Err(ConversationError::NoChoices);
                }
                if buttons.len() > MAX_BUTTONS {
                    return Err(ConversationError::TooManyButtons { max: MAX_BUTTONS });
                }
                for button in buttons {
                    required("button id", &button.id, 256)?;
                    required("button title", &button.title, 20)?;
                }
                unique("button id", buttons.iter().map(|b| b.id.trim()))?;
                unique("button title", buttons.iter().map(|b| b.title.trim()))?;
            }
            Choices::List { button, sections } => {
                required("list button", button, 20)?;
                if sections.is_empty() || sections.iter().all(|s| s.rows.is_empty()) {
                    return Err(ConversationError::NoChoices);
                }
                let rows: usize = sections.iter().map(|s| s.rows.len()).sum();
                if sections.len() > MAX_LIST_SECTIONS || rows > MAX_LIST_ROWS {
                    return Err(ConversationError::TooManyListRows { max: MAX_LIST_ROWS });
                }
                for section in sections {
                    if section.rows.is_empty() {
                        return Err(ConversationError::NoChoices);
                    }
                    match present(&section.title) {
                        Some(title) => too_long("section title", title, 24)?,
                        None if sections.len() > 1 => return Err(ConversationError::Blank { field: "section title" }),
                        None => {}
                    }
                    for row in &section.rows {
                        required("row id", &row.id, 200)?;
                        required("row title", &row.title, 24)?;
                        if let Some(description) = present(&row.description) {
                            too_long("row description", description, 72)?;
                        }
                    }
                }
                unique(
                    "row id",
                    sections.iter().flat_map(|s| s.rows.iter().map(|r| r.id.trim())),
                )?;
            }
        }
        Ok(())
    }
}

fn unique<'a>(what: &'static str, items: impl Iterator<Item = &'a str>) -> Result<(), ConversationError> {
    let mut seen = std::collections::BTreeSet::new();
    for item in items {
        if !seen.insert(item) {
            return Err(ConversationError::DuplicateChoice {
                what,
                value: item.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buttons(n: usize) -> Interactive {
        Interactive {
            header: None,
            body: "Which day suits you?".into(),
            footer: None,
            choices: Choices::Buttons {
                buttons: (0..n)
                    .map(|i| ReplyButton {
                        id: format!("b{i}"),
                        title: format!("Day {i}"),
                    })
                    .collect(),
            },
        }
    }

    fn list(rows: usize, sections: usize) -> Interactive {
        Interactive {
            header: Some("Kits".into()),
            body: "Pick a kit".into(),
            footer: Some("Prices include VAT".into()),
            choices: Choices::List {
                button: "See kits".into(),
                sections: (0..sections)
                    .map(|s| ListSection {
                        title: Some(format!("Section {s}")),
                        rows: (0..rows)
                            .map(|r| ListRow {
                                id: format!("s{s}r{r}"),
                                title: format!("Kit {s}.{r}"),
                                description: None,
                            })
                            .collect(),
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn one_to_three_buttons_pass_and_others_are_refused_by_rule() {
        assert_eq!(buttons(1).check(), Ok(()));
        assert_eq!(buttons(3).check(), Ok(()));
        assert_eq!(buttons(0).check(), Err(ConversationError::NoChoices));
        assert_eq!(buttons(4).check(), Err(ConversationError::TooManyButtons { max: 3 }));
        let mut twice = buttons(2);
        if let Choices::Buttons { buttons } = &mut twice.choices {
            buttons[1].id = "b0".into();
        }
        assert_eq!(twice.check().map_err(|e| e.code()), Err("DUPLICATE_CHOICE"));
        let mut long = buttons(1);
        if let Choices::Buttons { buttons } = &mut long.choices {
            buttons[0].title = "x".repeat(21);
        }
        assert_eq!(
            long.check(),
            Err(ConversationError::TextTooLong {
                field: "button title",
                max: 20
            })
        );
        let mut blank = buttons(1);
        blank.body = "  ".into();
        assert_eq!(blank.check(), Err(ConversationError::Blank { field: "body" }));
    }

    #[test]
    fn lists_hold_at_most_ten_rows_and_name_their_sections_when_several() {
        assert_eq!(list(10, 1).check(), Ok(()));
        assert_eq!(list(5, 2).check(), Ok(()));
        assert_eq!(list(6, 2).check(), Err(ConversationError::TooManyListRows { max: 10 }));
        assert_eq!(list(0, 1).check(), Err(ConversationError::NoChoices));
        let mut untitled = list(2, 2);
        if let Choices::List { sections, .. } = &mut untitled.choices {
            sections[1].title = None;
        }
        assert_eq!(
            untitled.check(),
            Err(ConversationError::Blank { field: "section title" })
        );
        let mut one_untitled = list(2, 1);
        if let Choices::List { sections, .. } = &mut one_untitled.choices {
            sections[0].title = None;
        }
        assert_eq!(one_untitled.check(), Ok(()));
    }

    #[test]
    fn media_messages_follow_whatsapps_rules() {
        let image = MediaMessage {
            kind: MediaKind::Image,
            link: Some("https://cdn.example.com/kit.jpg".into()),
            media_ref: None,
            caption: Some("Your kit".into()),
            filename: None,
        };
        assert_eq!(image.check(), Ok(()));
        let both = MediaMessage {
            media_ref: Some("media_x".into()),
            ..image.clone()
        };
        assert_eq!(both.check(), Err(ConversationError::MediaSource));
        let neither = MediaMessage {
            link: None,
            ..image.clone()
        };
        assert_eq!(neither.check(), Err(ConversationError::MediaSource));
        for bad in ["ftp://x/y", "https://", "javascript:alert(1)", "https://a b"] {
            let linked = MediaMessage {
                link: Some(bad.into()),
                ..image.clone()
            };
            assert_eq!(linked.check(), Err(ConversationError::BadMediaLink), "{bad}");
        }
        let audio = MediaMessage {
            kind: MediaKind::Audio,
            ..image.clone()
        };
        assert_eq!(audio.check().map_err(|e| e.code()), Err("CAPTION_NOT_ALLOWED"));
        let named = MediaMessage {
            filename: Some("kit.jpg".into()),
            ..image.clone()
        };
        assert_eq!(named.check().map_err(|e| e.code()), Err("FILENAME_NOT_ALLOWED"));
        let document = MediaMessage {
            kind: MediaKind::Document,
            filename: Some("quote.pdf".into()),
            ..image
        };
        assert_eq!(document.check(), Ok(()));
    }

    #[test]
    fn files_are_checked_against_the_kinds_types_and_size() {
        assert_eq!(check_file(MediaKind::Image, "image/JPEG", 1000), Ok(()));
        assert_eq!(check_file(MediaKind::Audio, "audio/ogg; codecs=opus", 1000), Ok(()));
        assert_eq!(
            check_file(MediaKind::Image, "application/pdf", 10).map_err(|e| e.code()),
            Err("MEDIA_TYPE_NOT_SUPPORTED")
        );
        assert_eq!(
            check_file(MediaKind::Image, "image/png", 5 * 1024 * 1024 + 1).map_err(|e| e.code()),
            Err("MEDIA_TOO_LARGE")
        );
        assert_eq!(kinds_for("image/png"), vec![MediaKind::Image]);
        assert!(kinds_for("application/x-msdownload").is_empty());
    }
}
