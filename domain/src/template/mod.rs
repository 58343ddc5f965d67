//! The `Template` aggregate: a WhatsApp message template and its approval, the only kind of
//! message a business may send outside the 24-hour customer service window.
//!
//! Stream id: `<tenant>:tpl_<name>_<language>` (the caller builds it), aggregate type
//! `Template`. One stream holds one name and language through all its versions.
//!
//! Rules held here:
//! - a name is `^[a-z0-9_]{1,512}$`, a language a code like `en`, `en_US`, `pt_BR`;
//! - a body is 1 to 1024 characters, not blank; its variables `{{1}}`, `{{2}}`… are numbered
//!   without gaps from 1 (in any order, each usable more than once), and their count travels
//!   in the event;
//! - at most 10 buttons, of which at most 2 URL and 1 phone number buttons; button text 1 to
//!   25 characters; a quick reply has no value, a URL button an http(s) URL, a phone number
//!   button a phone number (stored in E.164);
//! - a header is a text of 1 to 60 characters with at most one variable `{{1}}`, or a media
//!   (image, video, document) named per send; a footer is 1 to 60 characters without variables;
//! - status `pending → approved | rejected`: approval and rejection only from pending, and a
//!   repeat of the decision already made changes nothing; the pending version is sent for
//!   review once (WhatsApp's id recorded); WhatsApp may pause an approved template
//!   (`approved → paused`, reinstated by a new approval) or disable it (`approved | paused →
//!   disabled`); only an approved template is sent;
//! - resubmitting the same template while pending, approved or paused changes nothing; a
//!   changed one is refused (`TemplateLocked`); after a rejection (or once disabled) a changed
//!   template is submitted again as the next version, an unchanged one is refused;
//! - only an approved template renders, with exactly one parameter per variable
//!   ([`Template::render`]).

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::Template;
pub use commands::{SubmitTemplate, TemplateCommand};
pub use error::TemplateError;
pub use events::TemplateEvent;
pub use values::{
    check_body, check_buttons, check_footer, check_header, check_language, check_name, fill, variable_count,
    ButtonKind, HeaderFormat, TemplateButton, TemplateCategory, TemplateHeader, TemplateStatus, MAX_BODY_CHARS,
    MAX_BUTTONS, MAX_BUTTON_TEXT_CHARS, MAX_FOOTER_CHARS, MAX_HEADER_CHARS, MAX_NAME_CHARS, MAX_PHONE_NUMBER_BUTTONS,
    MAX_URL_BUTTONS, MAX_URL_CHARS,
};
