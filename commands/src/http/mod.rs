//! The one home of the write side's HTTP plumbing: form bodies ([`form`]), retry pacing
//! ([`backoff_delay`], [`is_retryable`]) and the Graph API client ([`GraphApi`]) shared by the
//! WhatsApp sender and the media fetcher.

pub mod form;

use std::fmt;
use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};

/// The delay before attempt `attempts + 1`: `first` after the first attempt, doubled per
/// attempt after that, never more than `max`.
pub fn backoff_delay(first: Duration, max: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    first.saturating_mul(1u32 << doublings).min(max)
}

/// Whether a refused answer may be tried again: a server error or 429 Too Many Requests. Any
/// other 4xx is a refusal.
pub fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// A `multipart/form-data` body and its Content-Type: text `fields`, then one file part
/// (`name`, file name, MIME type, bytes), under a random boundary. Quotes and line breaks in
/// names and values are replaced, so no part can break out of its headers.
pub fn multipart_body(fields: &[(&str, &str)], file: (&str, &str, &str, &[u8])) -> (String, Vec<u8>) {
    let clean = |s: &str| s.replace(['"', '\r', '\n'], "_");
    let boundary = format!("chronicle-{:032x}", rand::random::<u128>());
    let mut body = Vec::with_capacity(file.3.len() + 512);
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{value}\r\n",
                clean(name)
            )
            .as_bytes(),
        );
    }
    let (name, filename, mime_type, bytes) = file;
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
            clean(name),
            clean(filename),
            clean(mime_type)
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Meta's Graph API: one HTTP client with the request and connect timeouts, the base URL and
/// the system user's access token (sent as a Bearer token, never printed).
#[derive(Clone)]
pub struct GraphApi {
    base_url: String,
    access_token: String,
    http: reqwest::Client,
}

impl fmt::Debug for GraphApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphApi")
            .field("base_url", &self.base_url)
            .field("access_token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl GraphApi {
    /// A client of `base_url` (e.g. `https://graph.facebook.com/v21.0`; a trailing slash is
    /// ignored) whose requests time out after `timeout`.
    pub fn new(base_url: &str, access_token: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            access_token: access_token.to_string(),
            http,
        })
    }

    /// The URL of `path` (without a leading slash) under the base URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base_url)
    }

    /// An authenticated GET of an absolute URL (a media download URL the API handed out).
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.http.get(url).bearer_auth(&self.access_token)
    }

    /// An authenticated `multipart/form-data` POST to `path` under the base URL (see
    /// [`multipart_body`]).
    pub fn post_multipart(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        file: (&str, &str, &str, &[u8]),
    ) -> RequestBuilder {
        let (content_type, body) = multipart_body(fields, file);
        self.http
            .post(self.url(path))
            .bearer_auth(&self.access_token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
    }

    /// An authenticated POST of a JSON body to `path` under the base URL.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> RequestBuilder {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.access_token)
            .json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let (first, max) = (Duration::from_secs(2), Duration::from_secs(10));
        assert_eq!(backoff_delay(first, max, 0), Duration::from_secs(2));
        assert_eq!(backoff_delay(first, max, 1), Duration::from_secs(2));
        assert_eq!(backoff_delay(first, max, 2), Duration::from_secs(4));
        assert_eq!(backoff_delay(first, max, 4), Duration::from_secs(10));
        assert_eq!(backoff_delay(first, max, u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn only_server_errors_and_rate_limits_are_retried() {
        assert!(is_retryable(StatusCode::BAD_GATEWAY));
        assert!(is_retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_retryable(StatusCode::BAD_REQUEST));
        assert!(!is_retryable(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn urls_join_the_base_once_and_the_token_is_never_printed() {
        let graph = GraphApi::new("http://127.0.0.1:9/v21.0/", "secret-token", Duration::from_secs(1)).unwrap();
        assert_eq!(graph.url("123/messages"), "http://127.0.0.1:9/v21.0/123/messages");
        assert!(!format!("{graph:?}").contains("secret-token"));
    }
}
