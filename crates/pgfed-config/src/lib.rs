//! pgfed's configuration: the TOML file (`config/pgfed.toml` documents every field), the
//! environment overrides (`PGFED_LISTEN`, `PGFED_UPSTREAM`) and validation. Unknown keys are
//! errors, so a typo never silently falls back to a default. Secrets (the upstream URL's
//! password) are kept out of `Debug` and `Display`; the catalog files (`[catalog]`) reference
//! theirs through environment variables or files, so none is in the configuration at all.

mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use upstream::{SslMode, UpstreamUrl};

/// Default listen address for clients.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6432";
/// Default upstream Postgres.
pub const DEFAULT_UPSTREAM: &str = "postgres://127.0.0.1:5432/postgres?sslmode=prefer";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid listen address {value:?}: expected host:port, e.g. 127.0.0.1:6432")]
    Listen { value: String },
    #[error("invalid upstream URL: {0}")]
    Upstream(String),
    #[error("invalid setting {field}: {message}")]
    Invalid { field: &'static str, message: String },
}

/// The whole configuration. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub catalog: CatalogConfig,
}

/// The client-facing side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// host:port to accept clients on. Default `127.0.0.1:6432`; `PGFED_LISTEN` overrides.
    pub listen: String,
    /// Sessions served at once; further clients get SQLSTATE 53300. Default 1000.
    pub max_connections: usize,
    /// Largest message a client may send, in bytes. Default 256 MiB.
    pub max_message_bytes: usize,
    /// Time a client has to finish TLS negotiation, startup and authentication. Default 60s.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// Close sessions idle outside a transaction for this long (57P05). Default 0 = never.
    #[serde(with = "humantime_serde")]
    pub idle_session_timeout: Duration,
    /// Close sessions idle inside a transaction for this long (25P03). Default 0 = never.
    #[serde(with = "humantime_serde")]
    pub idle_in_transaction_timeout: Duration,
    /// After SIGTERM/SIGINT, how long sessions may take to finish before they get 57P01.
    /// Default 30s.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// TLS for clients. Absent: SSLRequest is answered 'N'.
    pub tls: Option<TlsConfig>,
}

/// A certificate chain and its private key, both PEM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The upstream Postgres.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// postgres:// URL: host, port, default database, sslmode, sslrootcert. `PGFED_UPSTREAM`
    /// overrides. Default `postgres://127.0.0.1:5432/postgres?sslmode=prefer`.
    pub url: String,
    /// TCP connect plus TLS handshake limit. Default 10s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

/// Declarative catalog definitions (GitOps): SQL/MED files pgfed applies to the upstream catalog
/// at startup. docs/configuration.md, "Catalog files".
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Files of `CREATE SERVER`, `CREATE USER MAPPING`, `CREATE FOREIGN TABLE`, `IMPORT FOREIGN
    /// SCHEMA` and `GRANT USAGE ON FOREIGN SERVER` statements; `*` and `?` allowed in the file
    /// name (`catalog/*.sql`). Relative paths are relative to the config file's directory. Each
    /// pattern must match a file. Default empty: no files, nothing applied (objects created from
    /// files earlier are kept).
    pub files: Vec<PathBuf>,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// host:port serving `/metrics`. Absent: no endpoint. `PGFED_METRICS_LISTEN` overrides.
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `pgfed_proxy=debug`. Default `info`; `PGFED_LOG`
    /// overrides.
    pub level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            max_connections: 1000,
            max_message_bytes: 256 << 20,
            startup_timeout: Duration::from_secs(60),
            idle_session_timeout: Duration::ZERO,
            idle_in_transaction_timeout: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self { url: DEFAULT_UPSTREAM.into(), connect_timeout: Duration::from_secs(10) }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

/// A configuration that passed validation, with addresses and the upstream URL parsed.
#[derive(Debug, Clone)]
pub struct Validated {
    pub config: Config,
    pub listen: SocketAddr,
    pub upstream: UpstreamUrl,
    pub metrics_listen: Option<SocketAddr>,
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut config = Self::from_toml(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })?;
        // A deployment keeps the catalog files beside pgfed.toml, wherever pgfed is started from.
        if let Some(dir) = path.parent() {
            for file in &mut config.catalog.files {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
        }
        Ok(config)
    }

    /// Parses TOML text; the error is toml's message, which names the line and the key.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks every field and parses what needs parsing.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        let listen = parse_addr(&self.server.listen)?;
        let metrics_listen = self.metrics.listen.as_deref().map(parse_addr).transpose()?;
        let upstream = UpstreamUrl::parse(&self.upstream.url).map_err(ConfigError::Upstream)?;
        if self.server.max_connections == 0 {
            return Err(ConfigError::Invalid { field: "server.max_connections", message: "must be at least 1".into() });
        }
        if self.server.max_message_bytes < 1024 || self.server.max_message_bytes > (1 << 30) {
            return Err(ConfigError::Invalid {
                field: "server.max_message_bytes",
                message: "must be between 1024 and 1073741824 (Postgres's own limit)".into(),
            });
        }
        if self.server.startup_timeout.is_zero() {
            return Err(ConfigError::Invalid { field: "server.startup_timeout", message: "must be above 0".into() });
        }
        if self.upstream.connect_timeout.is_zero() {
            return Err(ConfigError::Invalid { field: "upstream.connect_timeout", message: "must be above 0".into() });
        }
        if self.catalog.files.iter().any(|f| f.as_os_str().is_empty()) {
            return Err(ConfigError::Invalid { field: "catalog.files", message: "an empty path".into() });
        }
        if let Some(tls) = &self.server.tls {
            for (field, p) in [("server.tls.cert_file", &tls.cert_file), ("server.tls.key_file", &tls.key_file)] {
                if !p.is_file() {
                    return Err(ConfigError::Invalid {
                        field,
                        message: format!("{} is not a readable file", p.display()),
                    });
                }
            }
        }
        Ok(Validated { config: self, listen, upstream, metrics_listen })
    }
}

fn parse_addr(value: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    value.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| ConfigError::Listen { value: value.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_documented_defaults() {
        let v = Config::from_toml("").expect("empty is valid").validate().expect("defaults valid");
        assert_eq!(v.listen.to_string(), "127.0.0.1:6432");
        assert_eq!(v.upstream.host, "127.0.0.1");
        assert_eq!(v.upstream.port, 5432);
        assert_eq!(v.upstream.sslmode, SslMode::Prefer);
        assert_eq!(v.config.server.max_connections, 1000);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = Config::from_toml("[server]\nlisten_addr = \"x\"\n").expect_err("unknown key");
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn durations_and_sections_parse() {
        let c = Config::from_toml(
            "[server]\nidle_session_timeout = \"5m\"\nshutdown_timeout = \"2s\"\n[metrics]\nlisten = \"127.0.0.1:9187\"\n[log]\nformat = \"json\"\n",
        )
        .expect("valid");
        assert_eq!(c.server.idle_session_timeout, Duration::from_secs(300));
        assert_eq!(c.log.format, LogFormat::Json);
        let v = c.validate().expect("valid");
        assert_eq!(v.metrics_listen.map(|a| a.port()), Some(9187));
    }

    #[test]
    fn catalog_files_are_relative_to_the_config_file() {
        let dir = std::env::temp_dir().join(format!("pgfed-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("pgfed.toml");
        std::fs::write(&path, "[catalog]\nfiles = [\"catalog/*.sql\", \"/abs/x.sql\"]\n").expect("write");
        let c = Config::from_file(&path).expect("valid");
        assert_eq!(c.catalog.files, [dir.join("catalog/*.sql"), PathBuf::from("/abs/x.sql")]);
        std::fs::remove_dir_all(&dir).ok();
        let e = Config::from_toml("[catalog]\nfile = []\n").expect_err("unknown key");
        assert!(e.contains("file"), "{e}");
        assert!(Config::from_toml("").expect("empty").catalog.files.is_empty());
    }

    #[test]
    fn bad_values_are_rejected_with_the_field_name() {
        let mut c = Config::default();
        c.server.max_connections = 0;
        let e = c.validate().expect_err("zero connections").to_string();
        assert!(e.contains("server.max_connections"), "{e}");
        let mut c = Config::default();
        c.server.listen = "nonsense".into();
        assert!(matches!(c.validate(), Err(ConfigError::Listen { .. })));
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// config/pgfed.toml documents every setting with its default; keep it valid and in step.
    #[test]
    fn the_example_config_is_valid_and_shows_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pgfed.toml");
        let c = Config::from_file(&path).expect("config/pgfed.toml parses");
        let d = Config::default();
        assert_eq!(c.server.listen, d.server.listen);
        assert_eq!(c.server.max_connections, d.server.max_connections);
        assert_eq!(c.server.max_message_bytes, d.server.max_message_bytes);
        assert_eq!(c.server.startup_timeout, d.server.startup_timeout);
        assert_eq!(c.server.idle_session_timeout, d.server.idle_session_timeout);
        assert_eq!(c.server.idle_in_transaction_timeout, d.server.idle_in_transaction_timeout);
        assert_eq!(c.server.shutdown_timeout, d.server.shutdown_timeout);
        assert_eq!(c.upstream.url, d.upstream.url);
        assert_eq!(c.upstream.connect_timeout, d.upstream.connect_timeout);
        assert_eq!(c.log.level, d.log.level);
        assert_eq!(c.catalog.files, d.catalog.files);
        c.validate().expect("valid");
    }
}
