//! What can go wrong talking to an API, and the SQLSTATE each gets. Messages carry the HTTP
//! status and a short snippet of the body, with every secret of the user mapping scrubbed, and
//! URLs with their secrets redacted; never a header.

use pgfed_connector_sdk::ConnectorError;

/// How many characters of a response body an error shows.
pub(crate) const SNIPPET_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The API answered with an error status (after any retries).
    #[error("{method} {url}{}", snippet_suffix(.snippet))]
    Status { method: String, url: String, status: u16, snippet: String },
    /// No connection could be made (DNS, refused, TLS handshake).
    #[error("{url}: {reason}")]
    Connect { url: String, reason: String },
    /// The request or its body took longer than the server's `timeout`.
    #[error("{method} {url} timed out after {seconds} s (server option timeout)")]
    Timeout { method: String, url: String, seconds: f64 },
    /// The connection broke while the response was read.
    #[error("{method} {url}: {reason}")]
    Transport { method: String, url: String, reason: String },
    #[error("{url}: the response is larger than max_response_size ({limit} bytes)")]
    TooLarge { url: String, limit: u64 },
    /// The body is not the JSON the table's options describe.
    #[error("{url}: {reason}")]
    Body { url: String, reason: String },
    #[error("more than {max_pages} pages from {url}; raise max_pages or add a LIMIT")]
    TooManyPages { url: String, max_pages: u32 },
    /// A next link pointing at another origin would get the credentials: refused.
    #[error("{url}: the next page link leads to another host ({origin}), which is refused")]
    ForeignLink { url: String, origin: String },
    #[error("canceling statement due to user request")]
    Cancelled,
    #[error("canceling statement due to statement timeout")]
    TimedOut,
}

fn snippet_suffix(snippet: &str) -> String {
    if snippet.is_empty() { String::new() } else { format!(": {snippet}") }
}

impl From<HttpError> for ConnectorError {
    fn from(e: HttpError) -> Self {
        let source_name = "HTTP API".to_string();
        match e {
            HttpError::Cancelled => ConnectorError::Cancelled,
            HttpError::TimedOut => ConnectorError::TimedOut,
            HttpError::Connect { .. } => ConnectorError::Unreachable { source_name, reason: e.to_string() },
            // The API refused the credentials: Postgres's class for authorization failures.
            HttpError::Status { status: status @ (401 | 403), .. } => ConnectorError::RemoteMapped {
                source_name,
                sqlstate: "28000",
                code: Some(format!("HTTP {status}")),
                message: e.to_string(),
            },
            HttpError::Status { status, .. } => {
                ConnectorError::Remote { source_name, code: Some(format!("HTTP {status}")), message: e.to_string() }
            }
            _ => ConnectorError::Remote { source_name, code: None, message: e.to_string() },
        }
    }
}

/// Scrubs secrets (and their percent-encoded forms) from text that may be shown.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").finish_non_exhaustive()
    }
}

impl Redactor {
    pub fn new(secrets: Vec<String>) -> Self {
        let mut all: Vec<String> = Vec::new();
        for s in secrets.into_iter().filter(|s| !s.is_empty()) {
            let encoded = percent_encoding::utf8_percent_encode(&s, percent_encoding::NON_ALPHANUMERIC).to_string();
            let form: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
            all.extend([s, encoded, form]);
        }
        // Longest first, so a secret containing another is removed whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Redactor { secrets: all }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "********");
            }
        }
        out
    }

    /// A URL for messages and EXPLAIN: the password of its user info replaced, then scrubbed.
    pub fn url(&self, url: &url::Url) -> String {
        let mut u = url.clone();
        if u.password().is_some() {
            let _ = u.set_password(Some("********"));
        }
        self.scrub(u.as_str())
    }

    /// The start of a body, one line, for an error message.
    pub fn snippet(&self, body: &[u8]) -> String {
        // Scrub before cutting, so no prefix of a secret survives at the cut.
        let text = String::from_utf8_lossy(&body[..body.len().min(64 << 10)]);
        let one_line: String = self.scrub(&text).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let one_line = one_line.trim();
        let mut cut: String = one_line.chars().take(SNIPPET_CHARS).collect();
        if cut.len() < one_line.len() {
            cut.push('…');
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_messages() {
        let r = Redactor::new(vec!["s3cr/et".into()]);
        assert_eq!(r.scrub("token s3cr/et and s3cr%2Fet"), "token ******** and ********");
        let u = url::Url::parse("http://bob:pw@h/x?key=s3cr%2Fet").expect("url");
        assert_eq!(r.url(&u), "http://bob:********@h/x?key=********");
        let e: ConnectorError = HttpError::Status {
            method: "GET".into(),
            url: "http://h/".into(),
            status: 401,
            snippet: r.snippet(b"{\"error\": \"bad token s3cr/et\"}\n"),
        }
        .into();
        assert_eq!(e.sqlstate(), "28000");
        assert!(e.to_string().contains("HTTP 401") && !e.to_string().contains("s3cr"), "{e}");
    }
}
