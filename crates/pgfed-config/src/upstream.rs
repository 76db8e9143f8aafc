//! The upstream URL: `postgres://[user[:password]@]host[:port][/database][?sslmode=..&sslrootcert=..]`.

use std::fmt;
use std::path::PathBuf;

/// libpq's sslmode values, with libpq's meaning (`allow` is treated as `prefer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS if the server offers it, without verifying the certificate.
    Prefer,
    /// TLS required, certificate not verified.
    Require,
    /// TLS required, certificate chain verified against `sslrootcert` (or the system roots).
    VerifyCa,
    /// As verify-ca, and the host name must match the certificate.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

const VALID_PARAMS: &str = "sslmode, sslrootcert";

/// A parsed upstream URL. `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub host: String,
    pub port: u16,
    /// Used when a client's startup message names no database (and later for pgfed's own
    /// connections).
    pub database: Option<String>,
    /// For pgfed's own connections (catalog, later issues); client sessions authenticate as
    /// themselves.
    pub user: Option<String>,
    pub password: Option<String>,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
}

impl UpstreamUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let url =
            url::Url::parse(s).map_err(|e| format!("{e} (expected postgres://host:port/database?sslmode=...)"))?;
        if url.scheme() != "postgres" && url.scheme() != "postgresql" {
            return Err(format!("scheme must be postgres:// or postgresql://, not {}://", url.scheme()));
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err("a host is required".into()),
        };
        let decode = |v: &str| {
            percent_decode(v).ok_or_else(|| "user name and password must be valid percent-encoded UTF-8".to_string())
        };
        let user = (!url.username().is_empty()).then(|| decode(url.username())).transpose()?;
        let password = url.password().map(decode).transpose()?;
        let database = url.path().trim_start_matches('/');
        let database = (!database.is_empty()).then(|| decode(database)).transpose()?;
        let mut sslmode = SslMode::Prefer;
        let mut sslrootcert = None;
        for (k, v) in url.query_pairs() {
            match &*k {
                "sslmode" => {
                    sslmode = SslMode::parse(&v).ok_or_else(|| {
                        format!("invalid sslmode {v:?}; valid: disable, allow, prefer, require, verify-ca, verify-full")
                    })?
                }
                "sslrootcert" => sslrootcert = Some(PathBuf::from(&*v)),
                other => return Err(format!("unknown parameter {other:?}; valid parameters: {VALID_PARAMS}")),
            }
        }
        Ok(Self { host, port: url.port().unwrap_or(5432), database, user, password, sslmode, sslrootcert })
    }

    /// host:port, suitable for connecting.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}")?;
            if self.password.is_some() {
                write!(f, ":********")?;
            }
            write!(f, "@")?;
        }
        write!(f, "{}/{}?sslmode={}", self.address(), self.database.as_deref().unwrap_or(""), self.sslmode.as_str())?;
        if let Some(p) = &self.sslrootcert {
            write!(f, "&sslrootcert={}", p.display())?;
        }
        Ok(())
    }
}

impl fmt::Debug for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpstreamUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_part() {
        let u = UpstreamUrl::parse(
            "postgresql://al%40ice:s3cr%3At@db.internal:6543/my%20db?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        )
        .expect("valid");
        assert_eq!(u.host, "db.internal");
        assert_eq!(u.port, 6543);
        assert_eq!(u.user.as_deref(), Some("al@ice"));
        assert_eq!(u.password.as_deref(), Some("s3cr:t"));
        assert_eq!(u.database.as_deref(), Some("my db"));
        assert_eq!(u.sslmode, SslMode::VerifyFull);
        assert_eq!(u.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn never_shows_the_password() {
        let u = UpstreamUrl::parse("postgres://bob:hunter2@h/db").expect("valid");
        assert!(!format!("{u} {u:?}").contains("hunter2"));
    }

    #[test]
    fn rejects_unknown_parameters_listing_valid_ones() {
        let e = UpstreamUrl::parse("postgres://h/db?sslmod=require").expect_err("typo");
        assert!(e.contains("sslmod") && e.contains("sslmode, sslrootcert"), "{e}");
        assert!(UpstreamUrl::parse("mysql://h/db").is_err());
        assert!(UpstreamUrl::parse("postgres://h/db?sslmode=maybe").is_err());
    }

    #[test]
    fn defaults_port_and_handles_ipv6() {
        let u = UpstreamUrl::parse("postgres://[::1]/").expect("valid");
        assert_eq!(u.address(), "[::1]:5432");
        assert_eq!(u.database, None);
    }
}
