//! Talking to ClickHouse: the HTTP client per server and credentials (the `clickhouse` crate on a
//! hyper client of pgfed's own, for the connect timeout and the CA file), the server version and
//! time zone, query ids, cancel by `KILL QUERY`, and ClickHouse exceptions as connector errors.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use clickhouse::Client;
use clickhouse::query::BytesCursor;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pgfed_connector_sdk::{ConnectorError, ScanContext};
use tokio::sync::OnceCell;

/// How long a `KILL QUERY` may take before pgfed gives up on it (the query's request is already
/// dropped by then).
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything needed to reach one server as one user. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct ServerConfig {
    pub url: String,
    pub database: Option<String>,
    pub ca_file: Option<String>,
    pub lz4: bool,
    pub connect_timeout: Duration,
    pub query_timeout: Option<Duration>,
    pub settings: Vec<(String, String)>,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("ca_file", &self.ca_file)
            .field("lz4", &self.lz4)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("settings", &self.settings)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// A stable key of everything that selects the connection, secrets included (compared, never
    /// shown).
    pub(crate) fn identity(&self) -> String {
        format!("clickhouse\u{0}{self:?}\u{0}{:?}", self.password)
    }

    /// The server, for messages: scheme, host and port only.
    pub(crate) fn source_name(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(u) => format!("ClickHouse at {}", u.origin().ascii_serialization()),
            Err(_) => "ClickHouse".into(),
        }
    }
}

/// What pgfed learns from the server once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerInfo {
    /// `SELECT version()`: `18.16.1`, `24.8.4.13`.
    pub version: String,
    /// `(major, minor)` of the version, for version-dependent SQL.
    pub major_minor: (u32, u32),
    /// The server's time zone (`timezone()`): DateTime columns without their own zone use it.
    pub timezone: String,
}

impl ServerInfo {
    /// `mutations_sync` (waiting for ALTER ... UPDATE/DELETE) exists from 19.x on... checked
    /// conservatively: 20.x and later.
    pub(crate) fn has_mutations_sync(&self) -> bool {
        self.major_minor >= (20, 1)
    }
}

/// One server as one user: the HTTP client (with its connection pool) and the server facts.
pub(crate) struct Connection {
    pub config: ServerConfig,
    client: Client,
    info: OnceCell<ServerInfo>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("config", &self.config).finish_non_exhaustive()
    }
}

static CONNECTIONS: LazyLock<Mutex<HashMap<String, Arc<Connection>>>> = LazyLock::new(Default::default);

/// The shared connection for this server and user (HTTP keep-alive pool, server facts).
pub(crate) fn connection(config: &ServerConfig) -> Result<Arc<Connection>, ConnectorError> {
    let key = config.identity();
    let mut map = CONNECTIONS.lock().map_err(|_| ConnectorError::Internal("connection map poisoned".into()))?;
    if let Some(c) = map.get(&key) {
        return Ok(c.clone());
    }
    let conn = Arc::new(Connection { config: config.clone(), client: build_client(config)?, info: OnceCell::new() });
    map.insert(key, conn.clone());
    Ok(conn)
}

fn root_store(config: &ServerConfig) -> Result<rustls::RootCertStore, ConnectorError> {
    let mut roots = rustls::RootCertStore::empty();
    let unreachable = |reason: String| ConnectorError::Unreachable { source_name: config.source_name(), reason };
    match &config.ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| unreachable(format!("cannot read ca_file: {e}")))?;
            for cert in certs {
                let cert = cert.map_err(|e| unreachable(format!("cannot read ca_file: {e}")))?;
                roots.add(cert).map_err(|e| unreachable(format!("bad certificate in ca_file: {e}")))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system certificate rustls cannot use is skipped, as browsers do.
                let _ = roots.add(cert);
            }
        }
    }
    Ok(roots)
}

fn build_client(config: &ServerConfig) -> Result<Client, ConnectorError> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.enforce_http(false);
    let https = if config.url.starts_with("https:") {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectorError::Internal(format!("TLS setup: {e}")))?
            .with_root_certificates(root_store(config)?)
            .with_no_client_auth();
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().wrap_connector(http)
    } else {
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| ConnectorError::Internal(format!("TLS setup: {e}")))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
            .https_or_http()
            .enable_http1()
            .wrap_connector(http)
    };
    // No idle connections are kept: a pooled connection belongs to the runtime whose task drives
    // it, and connections are shared process-wide (a second runtime, as in tests, would find
    // them dead). A request costs a TCP connection; ClickHouse's own keep-alive is 3 s anyway.
    let hyper = HyperClient::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(https);
    let mut client = Client::with_http_client(hyper).with_url(&config.url).with_validation(false);
    if let Some(db) = &config.database {
        client = client.with_database(db);
    }
    if let Some(user) = &config.user {
        client = client.with_user(user);
    }
    if let Some(password) = &config.password {
        client = client.with_password(password);
    }
    client =
        client.with_compression(if config.lz4 { clickhouse::Compression::Lz4 } else { clickhouse::Compression::None });
    for (k, v) in &config.settings {
        client = client.with_setting(k, v);
    }
    if let Some(t) = config.query_timeout {
        client = client.with_setting("max_execution_time", t.as_secs().max(1).to_string());
    }
    Ok(client)
}

/// A new query id: ClickHouse's `KILL QUERY` finds the query by it.
pub(crate) fn query_id() -> String {
    use rand::Rng;
    let n: u128 = rand::rng().random();
    format!("pgfed-{n:032x}")
}

impl Connection {
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The server's version and time zone, asked once per connection.
    pub(crate) async fn info(&self) -> Result<&ServerInfo, ConnectorError> {
        self.info
            .get_or_try_init(|| async {
                let deadline = Instant::now() + self.config.connect_timeout + Duration::from_secs(10);
                let text = self.text("SELECT version(), timezone()", Some(deadline)).await?;
                let mut parts = text.trim_end().split('\t');
                let version = parts.next().unwrap_or_default().to_string();
                let timezone = parts.next().unwrap_or("UTC").to_string();
                let mut nums = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
                let major_minor = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
                Ok(ServerInfo { version, major_minor, timezone })
            })
            .await
    }

    /// Runs a small query and returns its TabSeparated output (catalog lookups, version).
    pub(crate) async fn text(&self, sql: &str, deadline: Option<Instant>) -> Result<String, ConnectorError> {
        let id = query_id();
        let run = async {
            let mut cursor = self
                .client
                .query_raw(sql)
                .with_setting("query_id", id.clone())
                .fetch_bytes("TabSeparated")
                .map_err(|e| self.error(e))?;
            let bytes = cursor.collect().await.map_err(|e| self.error(e))?;
            String::from_utf8(bytes.to_vec()).map_err(|_| ConnectorError::Internal("non-UTF-8 catalog answer".into()))
        };
        match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), run).await {
                Ok(r) => r,
                Err(_) => {
                    self.kill(&id);
                    Err(self.unreachable("timed out waiting for the server"))
                }
            },
            None => run.await,
        }
    }

    /// Starts a query whose rows stream back in `format`.
    pub(crate) fn fetch(&self, sql: &str, id: &str, format: &str) -> Result<BytesCursor, ConnectorError> {
        self.client
            .query_raw(sql)
            .with_setting("query_id", id.to_string())
            .fetch_bytes(format)
            .map_err(|e| self.error(e))
    }

    /// Runs a statement that returns nothing (ALTER, INSERT ... VALUES, KILL), watching cancel
    /// and deadline: on either, the request is dropped and the query killed.
    pub(crate) async fn execute(&self, sql: &str, ctx: &ScanContext) -> Result<(), ConnectorError> {
        let id = query_id();
        let run = self.client.query_raw(sql).with_setting("query_id", id.clone()).execute();
        self.watch(&id, ctx, async { run.await.map_err(|e| self.error(e)) }).await
    }

    /// Runs `work` until it ends, the statement is cancelled or its deadline passes; in the last
    /// two cases the query `id` is killed.
    pub(crate) async fn watch<T>(
        &self,
        id: &str,
        ctx: &ScanContext,
        work: impl std::future::Future<Output = Result<T, ConnectorError>>,
    ) -> Result<T, ConnectorError> {
        let deadline = async {
            match ctx.deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = work => r,
            () = ctx.cancel.cancelled() => {
                self.kill(id);
                Err(ConnectorError::Cancelled)
            }
            () = deadline => {
                self.kill(id);
                Err(ConnectorError::TimedOut)
            }
        }
    }

    /// `KILL QUERY WHERE query_id = '…' ASYNC` on a request of its own, in the background (the
    /// caller has already dropped the query's request).
    pub(crate) fn kill(&self, id: &str) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let sql = format!("KILL QUERY WHERE query_id = {} ASYNC", crate::sql::quote_str(id));
        let client = self.client.clone();
        handle.spawn(async move {
            let _ = tokio::time::timeout(KILL_TIMEOUT, client.query_raw(&sql).execute()).await;
        });
    }

    pub(crate) fn unreachable(&self, reason: &str) -> ConnectorError {
        ConnectorError::Unreachable { source_name: self.config.source_name(), reason: reason.to_string() }
    }

    /// A client error as a connector error; the password is never part of it.
    pub(crate) fn error(&self, e: clickhouse::error::Error) -> ConnectorError {
        let scrub = |s: String| match &self.config.password {
            Some(p) if !p.is_empty() => s.replace(p.as_str(), "********"),
            _ => s,
        };
        match e {
            clickhouse::error::Error::BadResponse(text) => {
                let ex = Exception::parse(&scrub(text));
                ex.into_error(&self.config.source_name())
            }
            clickhouse::error::Error::Network(e) => self.unreachable(&scrub(network_reason(&*e))),
            clickhouse::error::Error::TimedOut => self.unreachable("timed out"),
            other => ConnectorError::Remote {
                source_name: self.config.source_name(),
                code: None,
                message: scrub(other.to_string()),
            },
        }
    }
}

/// The innermost cause of a network error, which says what happened (refused, timed out, TLS).
fn network_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    reason
}

/// A ClickHouse exception: `Code: 60, e.displayText() = DB::Exception: …` (18.x) or
/// `Code: 60. DB::Exception: … (UNKNOWN_TABLE) (version …)` (newer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exception {
    pub code: Option<u32>,
    pub message: String,
}

impl Exception {
    pub(crate) fn parse(text: &str) -> Exception {
        let text = text.trim();
        let code = text
            .find("Code: ")
            .and_then(|i| text[i + 6..].split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|d| d.parse().ok());
        let message = match text.find("DB::Exception: ") {
            Some(i) => {
                let m = &text[i + 15..];
                let m = m.split(", e.what() = ").next().unwrap_or(m);
                let m = m.split(" (version ").next().unwrap_or(m);
                m.trim().to_string()
            }
            None => text.to_string(),
        };
        Exception { code, message }
    }

    /// The SQLSTATE Postgres would use for this kind of failure.
    pub(crate) fn sqlstate(&self) -> &'static str {
        match self.code {
            Some(62) => "42601",                         // SYNTAX_ERROR
            Some(60 | 81) => "42P01",                    // UNKNOWN_TABLE, UNKNOWN_DATABASE
            Some(47 | 16) => "42703",                    // UNKNOWN_IDENTIFIER, NO_SUCH_COLUMN_IN_TABLE
            Some(46) => "42883",                         // UNKNOWN_FUNCTION
            Some(241 | 173) => "53200",                  // MEMORY_LIMIT_EXCEEDED, CANNOT_ALLOCATE_MEMORY
            Some(159 | 394) => "57014",                  // TIMEOUT_EXCEEDED, QUERY_WAS_CANCELLED
            Some(192 | 193 | 516) => "28P01",            // UNKNOWN_USER, WRONG_PASSWORD, AUTHENTICATION_FAILED
            Some(497) => "42501",                        // ACCESS_DENIED
            Some(407 | 69 | 153) => "22003",             // DECIMAL_OVERFLOW, ARGUMENT_OUT_OF_BOUND, ILLEGAL_DIVISION
            Some(6 | 27 | 38 | 41 | 72 | 76) => "22P02", // CANNOT_PARSE_*
            Some(53 | 70 | 43 | 386) => "42804", // TYPE_MISMATCH, CANNOT_CONVERT_TYPE, ILLEGAL_TYPE_OF_ARGUMENT, NO_COMMON_TYPE
            Some(_) => "HV000",
            None => "XX000",
        }
    }

    /// The connector error: authentication has a variant of its own; the rest carries the
    /// mapped SQLSTATE (`RemoteMapped`), or HV000 (`Remote`) where none fits, with the
    /// ClickHouse code and message.
    pub(crate) fn into_error(self, source_name: &str) -> ConnectorError {
        let code = self.code.map(|c| c.to_string());
        match self.sqlstate() {
            "28P01" => ConnectorError::Unreachable {
                source_name: source_name.to_string(),
                reason: format!("authentication failed (code {}): {}", self.code.unwrap_or(0), self.message),
            },
            "57014" if self.code == Some(159) => ConnectorError::RemoteMapped {
                source_name: source_name.to_string(),
                sqlstate: "57014",
                code,
                message: format!("query_timeout exceeded: {}", self.message),
            },
            "HV000" | "XX000" => {
                ConnectorError::Remote { source_name: source_name.to_string(), code, message: self.message }
            }
            sqlstate => ConnectorError::RemoteMapped {
                source_name: source_name.to_string(),
                sqlstate,
                code,
                message: self.message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_of_old_and_new_servers_parse() {
        let old = Exception::parse(
            "Code: 60, e.displayText() = DB::Exception: Table default.nope doesn't exist., e.what() = DB::Exception\n",
        );
        assert_eq!(old, Exception { code: Some(60), message: "Table default.nope doesn't exist.".into() });
        assert_eq!(old.sqlstate(), "42P01");
        let new = Exception::parse(
            "Code: 62. DB::Exception: Syntax error: failed at position 8. (SYNTAX_ERROR) (version 24.8.4.13 (official build))",
        );
        assert_eq!(new.code, Some(62));
        assert_eq!(new.message, "Syntax error: failed at position 8. (SYNTAX_ERROR)");
        assert_eq!(new.sqlstate(), "42601");
        let e = Exception::parse("Code: 193, e.displayText() = DB::Exception: Wrong password for user pgfed")
            .into_error("ClickHouse");
        assert_eq!(e.sqlstate(), "HV00N");
        let e = Exception::parse("Code: 241, e.displayText() = DB::Exception: Memory limit").into_error("ClickHouse");
        assert_eq!(e.sqlstate(), "53200");
        assert!(e.to_string().contains("error 241: Memory limit"), "{e}");
    }

    #[test]
    fn debug_and_identity_keep_the_password_out_of_sight() {
        let c = ServerConfig {
            url: "http://127.0.0.1:8123".into(),
            database: None,
            ca_file: None,
            lz4: false,
            connect_timeout: Duration::from_secs(1),
            query_timeout: None,
            settings: vec![],
            user: Some("u".into()),
            password: Some("hunter2".into()),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.source_name(), "ClickHouse at http://127.0.0.1:8123");
        let mut other = c.clone();
        other.password = Some("x".into());
        assert_ne!(c.identity(), other.identity());
    }
}
