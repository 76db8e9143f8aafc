//! Sending requests: one reqwest client, rate limiter and response cache per server (shared by
//! every session, kept by the wrapper), retries with backoff on 429 and 5xx honouring
//! Retry-After, a response size cap, and cancel and the statement deadline aborting whatever is
//! in flight (dropping a reqwest future closes its connection).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue, LINK, RETRY_AFTER};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::{Auth, ServerConfig};
use crate::error::{HttpError, Redactor};

/// A retry never waits longer than this, whatever Retry-After says: the API is then reported as
/// refusing.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// Cached response bodies per server, at most.
const CACHE_MAX_BYTES: usize = 64 << 20;

/// A response as a scan needs it.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub body: Bytes,
    /// The `rel="next"` target of the Link header, if any.
    pub next_link: Option<String>,
}

/// Spaces requests `1 / rate` apart across every session of a server.
#[derive(Debug)]
struct Limiter {
    interval: Option<Duration>,
    next: Mutex<Option<Instant>>,
}

/// Cached GET responses of one server: `(credential identity, URL)` → expiry and response. The
/// credential identity holds secrets, so keys are never shown.
#[derive(Default)]
struct Cache {
    entries: HashMap<(Arc<str>, String), (Instant, Arc<Response>)>,
    bytes: usize,
}

/// What all sessions share for one server.
pub(crate) struct ServerState {
    client: reqwest::Client,
    limiter: Limiter,
    cache: Mutex<Cache>,
}

impl ServerState {
    pub fn new(config: &ServerConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(config)?)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("pgfed/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| reason(&e))?;
        let interval = config.rate_limit.map(|r| Duration::from_secs_f64(1.0 / r));
        Ok(ServerState { client, limiter: Limiter { interval, next: Mutex::new(None) }, cache: Mutex::default() })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(config: &ServerConfig) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut tls = if config.tls_verify {
        let mut roots = RootCertStore::empty();
        match &config.ca_file {
            Some(file) => {
                for cert in CertificateDer::pem_file_iter(file).map_err(|e| format!("ca_file: {e}"))? {
                    roots.add(cert.map_err(|e| format!("ca_file: {e}"))?).map_err(|e| format!("ca_file: {e}"))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    // A system certificate rustls cannot use is skipped, as browsers do.
                    let _ = roots.add(cert);
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider))).with_no_client_auth()
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// `tls_verify 'false'`: any certificate is accepted (signatures are still checked).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A reqwest error without its URL (which may hold a secret the user put there), with causes.
fn reason(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(&format!(" ({url})"), "").replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Requests of one statement on one table: the server's shared state, the credentials, and the
/// statement's cancel token and deadline.
#[derive(Clone)]
pub(crate) struct Fetcher {
    pub state: Arc<ServerState>,
    pub config: Arc<ServerConfig>,
    pub auth: Arc<Auth>,
    /// The user mapping's options as one string: the cache key's credential part.
    pub credential: Arc<str>,
    pub redactor: Redactor,
    pub cancel: CancellationToken,
    pub deadline: Option<Instant>,
}

impl Fetcher {
    /// Runs `fut` unless the statement is cancelled or its deadline passes first (then the
    /// future is dropped, which aborts the request).
    async fn guard<T>(&self, fut: impl Future<Output = Result<T, HttpError>>) -> Result<T, HttpError> {
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(HttpError::Cancelled),
            _ = deadline => Err(HttpError::TimedOut),
            r = fut => r,
        }
    }

    async fn wait(&self, duration: Duration) -> Result<(), HttpError> {
        self.guard(async {
            tokio::time::sleep(duration).await;
            Ok(())
        })
        .await
    }

    async fn rate_limit(&self) -> Result<(), HttpError> {
        let Some(interval) = self.state.limiter.interval else { return Ok(()) };
        let slot = {
            let mut next = self.state.limiter.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + interval);
            slot
        };
        self.wait(slot.saturating_duration_since(Instant::now())).await
    }

    /// A GET of a scan, from the cache when the server has `cache_ttl`.
    pub async fn get(&self, url: &Url) -> Result<Arc<Response>, HttpError> {
        let Some(ttl) = self.config.cache_ttl else {
            return self.send(Method::GET, url, None, false).await.map(Arc::new);
        };
        let key = (self.credential.clone(), url.as_str().to_string());
        {
            let mut cache = self.state.cache.lock().unwrap_or_else(|p| p.into_inner());
            match cache.entries.get(&key) {
                Some((expiry, response)) if *expiry > Instant::now() => return Ok(response.clone()),
                Some(_) => {
                    if let Some((_, r)) = cache.entries.remove(&key) {
                        cache.bytes -= r.body.len();
                    }
                }
                None => {}
            }
        }
        let response = Arc::new(self.send(Method::GET, url, None, false).await?);
        let mut cache = self.state.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.bytes + response.body.len() > CACHE_MAX_BYTES {
            let now = Instant::now();
            cache.entries.retain(|_, (expiry, _)| *expiry > now);
            cache.bytes = cache.entries.values().map(|(_, r)| r.body.len()).sum();
            if cache.bytes + response.body.len() > CACHE_MAX_BYTES {
                cache.entries.clear();
                cache.bytes = 0;
            }
        }
        if response.body.len() <= CACHE_MAX_BYTES {
            cache.bytes += response.body.len();
            if let Some((_, old)) = cache.entries.insert(key, (Instant::now() + ttl, response.clone())) {
                cache.bytes -= old.body.len();
            }
        }
        Ok(response)
    }

    /// Forgets the cached responses of these credentials (after a write).
    pub fn invalidate(&self) {
        let mut cache = self.state.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.entries.retain(|(credential, _), _| *credential != self.credential);
        cache.bytes = cache.entries.values().map(|(_, r)| r.body.len()).sum();
    }

    /// Sends a request with retries; `not_found_ok` returns a 404 instead of failing (a write
    /// whose row is gone). Only 429 and 503 (not processed) are retried for POST and PATCH.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<String>,
        not_found_ok: bool,
    ) -> Result<Response, HttpError> {
        let shown = self.redactor.url(url);
        let idempotent = matches!(method, Method::GET | Method::PUT | Method::DELETE | Method::HEAD);
        let mut attempt = 0;
        loop {
            self.rate_limit().await?;
            let result = self.guard(self.once(&method, url, body.clone(), &shown)).await;
            let retry_in = match &result {
                Ok((status, _, retry_after)) => {
                    let retryable = *status == 429 || *status == 503 || (idempotent && *status >= 500);
                    if !retryable || attempt >= self.config.retries {
                        None
                    } else {
                        Some(retry_after.unwrap_or_else(|| backoff(attempt)))
                    }
                }
                Err(HttpError::Connect { .. }) if attempt < self.config.retries => Some(backoff(attempt)),
                Err(HttpError::Timeout { .. } | HttpError::Transport { .. })
                    if idempotent && attempt < self.config.retries =>
                {
                    Some(backoff(attempt))
                }
                Err(_) => None,
            };
            // A wait that the deadline or MAX_RETRY_WAIT would cut short is not started: the
            // answer is the API's refusal.
            let fits =
                |wait: Duration| wait <= MAX_RETRY_WAIT && self.deadline.is_none_or(|d| Instant::now() + wait < d);
            match retry_in {
                Some(wait) if fits(wait) => {
                    attempt += 1;
                    self.wait(wait).await?;
                    continue;
                }
                _ => {}
            }
            let (status, response, _) = result?;
            if (200..300).contains(&status) || (not_found_ok && status == 404) {
                return Ok(response);
            }
            return Err(HttpError::Status {
                method: method.to_string(),
                url: shown,
                status,
                snippet: self.redactor.snippet(&response.body),
            });
        }
    }

    /// One attempt: the status, the response, and the Retry-After delay if given.
    async fn once(
        &self,
        method: &Method,
        url: &Url,
        body: Option<String>,
        shown: &str,
    ) -> Result<(u16, Response, Option<Duration>), HttpError> {
        let mut request = self.state.client.request(method.clone(), url.clone()).timeout(self.config.timeout);
        for (name, value) in &self.config.headers {
            request = request.header(name, value);
        }
        request = request.header(ACCEPT, HeaderValue::from_static("application/json"));
        request = match self.auth.as_ref() {
            Auth::None => request,
            Auth::Bearer(token) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| HttpError::Body {
                    url: shown.to_string(),
                    reason: "the bearer token is not a valid header value".into(),
                })?;
                v.set_sensitive(true);
                request.header(reqwest::header::AUTHORIZATION, v)
            }
            Auth::Basic { user, password } => request.basic_auth(user, password.as_ref()),
            Auth::Header { name, value } => {
                let mut v = HeaderValue::from_str(value).map_err(|_| HttpError::Body {
                    url: shown.to_string(),
                    reason: "header_value is not a valid header value".into(),
                })?;
                v.set_sensitive(true);
                request.header(name, v)
            }
        };
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json")).body(body);
        }
        let transport = |e: reqwest::Error| {
            if e.is_connect() {
                HttpError::Connect { url: shown.to_string(), reason: self.redactor.scrub(&reason(&e)) }
            } else if e.is_timeout() {
                HttpError::Timeout {
                    method: method.to_string(),
                    url: shown.to_string(),
                    seconds: self.config.timeout.as_secs_f64(),
                }
            } else {
                HttpError::Transport {
                    method: method.to_string(),
                    url: shown.to_string(),
                    reason: self.redactor.scrub(&reason(&e)),
                }
            }
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let limit = self.config.max_response_size;
        let too_large = || HttpError::TooLarge { url: shown.to_string(), limit };
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
        let next_link = response
            .headers()
            .get_all(LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_link)
            .map(str::to_string);
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, Response { status, body: body.freeze(), next_link }, retry_after))
    }
}

/// 100 ms, 200 ms, 400 ms, ... up to 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

/// `Retry-After`: delay seconds or an HTTP-date.
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(seconds) = v.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// The target of the `rel="next"` link in one Link header value (RFC 8288).
pub(crate) fn next_link(header: &str) -> Option<&str> {
    // Links are separated by commas outside `<...>`; URLs may contain commas.
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>')? + open;
        let target = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map_or(rest.len(), |i| i + close);
        let params = &rest[close + 1..params_end];
        let is_next = params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim().trim_matches('"').split_ascii_whitespace().any(|r| r.eq_ignore_ascii_case("next"))
            })
        });
        if is_next {
            return Some(target);
        }
        rest = &rest[params_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_and_retry_after_parse() {
        let h = r#"<https://api/x?page=1>; rel="prev", <https://api/x?a=1,2&page=3>; rel="next last""#;
        assert_eq!(next_link(h), Some("https://api/x?a=1,2&page=3"));
        assert_eq!(next_link(r#"<https://api/x?page=1>; rel="prev""#), None);
        assert_eq!(next_link("<a>;rel=next"), Some("a"));
        assert_eq!(retry_after("3"), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = retry_after(&later).expect("date");
        assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30), "{d:?}");
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(retry_after("soon"), None);
    }
}
