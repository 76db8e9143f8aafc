//! Options of servers, user mappings, tables and columns, validated against what a wrapper
//! declares, the way Postgres validates an FDW's options at DDL time.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::ConnectorError;

/// Where an option is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionLevel {
    /// `CREATE SERVER ... OPTIONS (...)`
    Server,
    /// `CREATE USER MAPPING ... OPTIONS (...)`
    UserMapping,
    /// `CREATE FOREIGN TABLE ... OPTIONS (...)`
    Table,
    /// `col type OPTIONS (...)` inside CREATE FOREIGN TABLE
    Column,
}

impl OptionLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            OptionLevel::Server => "server",
            OptionLevel::UserMapping => "user mapping",
            OptionLevel::Table => "foreign table",
            OptionLevel::Column => "foreign table column",
        }
    }
}

/// One option a wrapper accepts.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub level: OptionLevel,
    pub name: &'static str,
    pub required: bool,
    /// Never shown in errors, logs, EXPLAIN or `Debug` output (passwords, tokens).
    pub secret: bool,
    /// One line for docs and `\des+`-style listings.
    pub doc: &'static str,
}

impl OptionSpec {
    pub const fn optional(level: OptionLevel, name: &'static str, doc: &'static str) -> Self {
        Self { level, name, required: false, secret: false, doc }
    }

    pub const fn required(level: OptionLevel, name: &'static str, doc: &'static str) -> Self {
        Self { level, name, required: true, secret: false, doc }
    }

    pub const fn secret(level: OptionLevel, name: &'static str, doc: &'static str) -> Self {
        Self { level, name, required: false, secret: true, doc }
    }
}

/// Validated options at one level. `Debug` shows secret values as `********`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Options {
    values: BTreeMap<String, String>,
    secret: Vec<String>,
}

impl Options {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Parses an option; an unparsable value is reported by name only.
    pub fn parse<T: FromStr>(&self, name: &str, expected: &str) -> Result<Option<T>, ConnectorError> {
        self.get(name)
            .map(|v| {
                v.parse().map_err(|_| ConnectorError::InvalidOptionValue {
                    name: name.into(),
                    reason: format!("expected {expected}"),
                })
            })
            .transpose()
    }

    /// A boolean option, accepting what Postgres accepts for booleans.
    pub fn flag(&self, name: &str) -> Result<Option<bool>, ConnectorError> {
        self.get(name)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" | "1" | "t" => Ok(true),
                "false" | "off" | "no" | "0" | "f" => Ok(false),
                _ => Err(ConnectorError::InvalidOptionValue { name: name.into(), reason: "expected a boolean".into() }),
            })
            .transpose()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_secret(&self, name: &str) -> bool {
        self.secret.iter().any(|s| s == name)
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.values.iter().map(|(k, v)| (k, if self.is_secret(k) { "********" } else { v.as_str() })))
            .finish()
    }
}

/// Checks `given` against the wrapper's specs for `level`: unknown names (the error lists the
/// valid ones, as Postgres does), names given twice, and required options missing.
pub fn validate_options(
    specs: &[OptionSpec],
    level: OptionLevel,
    given: &[(String, String)],
) -> Result<Options, ConnectorError> {
    let valid: Vec<&OptionSpec> = specs.iter().filter(|s| s.level == level).collect();
    let mut options = Options::default();
    for (name, value) in given {
        let Some(spec) = valid.iter().find(|s| s.name == name) else {
            let names: Vec<&str> = valid.iter().map(|s| s.name).collect();
            let hint = if names.is_empty() {
                format!("There are no valid options in this context ({}).", level.as_str())
            } else {
                format!("Valid options in this context are: {}", names.join(", "))
            };
            return Err(ConnectorError::InvalidOption { name: name.clone(), level: level.as_str(), hint });
        };
        if options.values.insert(name.clone(), value.clone()).is_some() {
            return Err(ConnectorError::InvalidOptionValue {
                name: name.clone(),
                reason: "provided more than once".into(),
            });
        }
        if spec.secret {
            options.secret.push(name.clone());
        }
    }
    if let Some(missing) = valid.iter().find(|s| s.required && !options.values.contains_key(s.name)) {
        return Err(ConnectorError::MissingOption { name: missing.name.into(), level: level.as_str() });
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[OptionSpec] = &[
        OptionSpec::required(OptionLevel::Server, "host", "host name"),
        OptionSpec::optional(OptionLevel::Server, "port", "port"),
        OptionSpec::optional(OptionLevel::UserMapping, "user", "user name"),
        OptionSpec::secret(OptionLevel::UserMapping, "password", "password"),
    ];

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn unknown_options_list_the_valid_ones_and_never_echo_values() {
        let e = validate_options(SPECS, OptionLevel::Server, &given(&[("host", "h"), ("hots", "s3cret")]))
            .expect_err("unknown");
        assert_eq!(e.sqlstate(), "HV00D");
        assert_eq!(e.hint(), Some("Valid options in this context are: host, port"));
        assert!(!format!("{e} {e:?}").contains("s3cret"));
    }

    #[test]
    fn required_and_duplicate_options_are_errors() {
        let e = validate_options(SPECS, OptionLevel::Server, &given(&[("port", "1")])).expect_err("missing host");
        assert_eq!((e.sqlstate(), e.to_string().as_str()), ("HV00J", "option \"host\" is required for server"));
        let e = validate_options(SPECS, OptionLevel::Server, &given(&[("host", "a"), ("host", "b")]))
            .expect_err("duplicate");
        assert_eq!(e.sqlstate(), "HV024");
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_values_parse_by_name() {
        let o = validate_options(SPECS, OptionLevel::UserMapping, &given(&[("user", "bob"), ("password", "hunter2")]))
            .expect("valid");
        let shown = format!("{o:?}");
        assert!(shown.contains("bob") && !shown.contains("hunter2"), "{shown}");
        assert_eq!(o.get("password"), Some("hunter2"));
        let s = validate_options(SPECS, OptionLevel::Server, &given(&[("host", "h"), ("port", "x1")])).expect("valid");
        let e = s.parse::<u16>("port", "a port number").expect_err("not a number");
        assert_eq!(e.to_string(), "invalid value for option \"port\": expected a port number");
        assert!(!e.to_string().contains("x1"));
    }
}
