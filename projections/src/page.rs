//! The one shape of a paged list: [`Page`] (each row with its opaque cursor, and whether more
//! follow), the one cursor error [`BadCursor`] (answered `BAD_CURSOR` by the API), and the
//! keyset cursors every list gives out: `base64url("<key>|<tail>")`, where the key is a time in
//! microseconds, a position or a score, and the tail the row's id that breaks ties.

use std::fmt::Display;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};

/// A page of a list: each row with its cursor, in the list's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub rows: Vec<(String, T)>,
    pub has_next_page: bool,
}

impl<T> Page<T> {
    /// The page of a keyset query that asked for `first + 1` rows: the first `first`, each
    /// turned into its cursor and row by `each`, and whether the extra row came (a next page).
    pub fn of<R>(
        rows: &[R],
        first: i64,
        each: impl FnMut(&R) -> Result<(String, T), sqlx::Error>,
    ) -> Result<Self, sqlx::Error> {
        let first = usize::try_from(first).unwrap_or(0);
        Ok(Self {
            rows: rows.iter().take(first).map(each).collect::<Result<_, _>>()?,
            has_next_page: rows.len() > first,
        })
    }
}

impl<T> Page<T> {
    /// The page of rows a keyset query read when it asked for `first + 1`: the first `first`,
    /// each with its cursor, and whether the extra row came (a next page).
    pub fn from_rows(mut rows: Vec<T>, first: i64, cursor: impl Fn(&T) -> String) -> Self {
        let first = usize::try_from(first).unwrap_or(0);
        let has_next_page = rows.len() > first;
        rows.truncate(first);
        Self {
            rows: rows.into_iter().map(|row| (cursor(&row), row)).collect(),
            has_next_page,
        }
    }
}

/// Where a page ordered by a time and an id continues: the time and id of a [`time_cursor`],
/// both `None` for the first page (bind them as `$t::timestamptz IS NULL OR (at, id) > ($t, $i)`).
pub fn after_time(after: Option<&str>) -> Result<(Option<DateTime<Utc>>, Option<String>), BadCursor> {
    match after {
        None => Ok((None, None)),
        Some(cursor) => {
            let (micros, id) = read_cursor::<i64, String>(cursor)?;
            let at = DateTime::from_timestamp_micros(micros).ok_or(BadCursor)?;
            Ok((Some(at), Some(id)))
        }
    }
}

/// Where a page ordered by two texts continues (a [`cursor`] of two texts; the first may not
/// contain `|`); both `None` for the first page.
pub fn after_texts(after: Option<&str>) -> Result<(Option<String>, Option<String>), BadCursor> {
    match after {
        None => Ok((None, None)),
        Some(cursor) => {
            let (key, tail) = read_cursor::<String, String>(cursor)?;
            Ok((Some(key), Some(tail)))
        }
    }
}

/// A cursor the list did not give out: not base64url, not UTF-8, or not of the list's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed cursor: pass a cursor this list gave out")]
pub struct BadCursor;

/// The opaque cursor of a text (`base64url(text)`).
pub fn encode(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

/// The text of a cursor made by [`encode`].
pub fn decode(cursor: &str) -> Result<String, BadCursor> {
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| BadCursor)?;
    String::from_utf8(raw).map_err(|_| BadCursor)
}

/// The keyset cursor `base64url("<key>|<tail>")`.
pub fn cursor(key: impl Display, tail: impl Display) -> String {
    encode(&format!("{key}|{tail}"))
}

/// The keyset cursor of a row ordered by a time (in microseconds) and then `tail`.
pub fn time_cursor(at: DateTime<Utc>, tail: impl Display) -> String {
    cursor(at.timestamp_micros(), tail)
}

/// Reads a [`cursor`]: its key and tail, each parsed as the list expects.
pub fn read_cursor<K: FromStr, T: FromStr>(cursor: &str) -> Result<(K, T), BadCursor> {
    let text = decode(cursor)?;
    let (key, tail) = text.split_once('|').ok_or(BadCursor)?;
    Ok((
        key.parse().map_err(|_| BadCursor)?,
        tail.parse().map_err(|_| BadCursor)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_what_they_were_made_of() {
        let at = DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap_or_default();
        let c = time_cursor(at, "ct_1|x");
        assert_eq!(
            read_cursor::<i64, String>(&c),
            Ok((1_790_000_000_123_456, "ct_1|x".to_string()))
        );
        assert_eq!(read_cursor::<i64, i64>(&cursor(5, 7)), Ok((5, 7)));
        assert_eq!(decode(&encode("sr|12")), Ok("sr|12".to_string()));
    }

    #[test]
    fn a_page_keeps_first_rows_and_says_whether_more_came() {
        let cursor_of = |n: &i32| Ok((n.to_string(), *n));
        let page = Page::of(&[1, 2, 3], 2, cursor_of).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.rows, [("1".to_string(), 1), ("2".to_string(), 2)]);
        assert!(page.has_next_page);
        let last = Page::of(&[1, 2], 2, cursor_of).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(last.rows.len(), 2);
        assert!(!last.has_next_page);
    }

    #[test]
    fn anything_else_is_a_bad_cursor() {
        assert_eq!(read_cursor::<i64, String>("not base64!"), Err(BadCursor));
        assert_eq!(read_cursor::<i64, String>(&encode("no separator")), Err(BadCursor));
        assert_eq!(read_cursor::<i64, String>(&encode("x|id")), Err(BadCursor));
        assert_eq!(read_cursor::<i64, i64>(&cursor(1, "y")), Err(BadCursor));
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])), Err(BadCursor));
    }
}
