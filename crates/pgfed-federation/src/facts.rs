//! What a federated statement needs to know about its session, read in one round trip.

use std::time::Duration;

use pgfed_encode::TextSettings;
use pgfed_proxy::federation::FedError;
use pgfed_session::UpstreamSession;

/// The session's state as of this statement.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    pub user: String,
    /// `current_schemas(true)`: the effective search path, implicit schemas included.
    pub search_path: Vec<String>,
    pub time_zone: String,
    pub settings: TextSettings,
    pub statement_timeout: Option<Duration>,
    pub require_pushdown: bool,
}

/// Settings are read rather than tracked from ParameterStatus: Postgres 15 does not report
/// search_path, extra_float_digits, bytea_output or statement_timeout, and `SET LOCAL`,
/// `set_config` and functions with SET clauses change them without a word to the client.
const SQL: &str = concat!(
    "SELECT k, v FROM (",
    " SELECT 0 AS o, n AS i, 'schema' AS k, s::text AS v",
    " FROM unnest(pg_catalog.current_schemas(true)) WITH ORDINALITY AS u(s, n)",
    " UNION ALL SELECT 1, 0, name, setting FROM pg_catalog.pg_settings WHERE name IN",
    " ('TimeZone', 'DateStyle', 'IntervalStyle', 'extra_float_digits', 'bytea_output', 'statement_timeout')",
    " UNION ALL SELECT 2, 0, 'user', current_user::text",
    " UNION ALL SELECT 3, 0, 'require_pushdown', coalesce(pg_catalog.current_setting('pgfed.require_pushdown', true), '')",
    ") f ORDER BY o, i"
);

pub(crate) async fn read(session: &dyn UpstreamSession) -> Result<Facts, FedError> {
    let rows = session.query_text(SQL, &[]).await?;
    let mut facts = Facts {
        user: String::new(),
        search_path: Vec::new(),
        time_zone: "UTC".into(),
        settings: TextSettings::default(),
        statement_timeout: None,
        require_pushdown: false,
    };
    for row in rows {
        let (Some(Some(k)), Some(v)) = (row.first(), row.get(1)) else { continue };
        let v = v.clone().unwrap_or_default();
        match k.as_str() {
            "schema" => facts.search_path.push(v),
            "user" => facts.user = v,
            "require_pushdown" => facts.require_pushdown = parse_bool(&v),
            "statement_timeout" => {
                facts.statement_timeout = v.parse::<u64>().ok().filter(|ms| *ms > 0).map(Duration::from_millis)
            }
            name => {
                if name == "TimeZone" {
                    facts.time_zone = v.clone();
                }
                // A value the encoder cannot follow is reported when a value needs it, not here.
                let _ = facts.settings.set(name, &v);
            }
        }
    }
    Ok(facts)
}

/// Postgres's boolean spellings for a placeholder variable.
fn parse_bool(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "on" | "true" | "yes" | "1" | "t" | "y")
}

#[cfg(test)]
mod tests {
    #[test]
    fn booleans_follow_postgres_spellings() {
        for on in ["on", "TRUE", "yes", "1", " t "] {
            assert!(super::parse_bool(on), "{on}");
        }
        for off in ["off", "", "false", "0", "no"] {
            assert!(!super::parse_bool(off), "{off}");
        }
    }
}
