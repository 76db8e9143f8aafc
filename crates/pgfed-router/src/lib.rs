//! Decides, for every Query and Parse, whether the upstream Postgres answers the statement or pgfed
//! does (because it names a foreign table that pgfed manages).
//!
//! Almost all traffic never names a managed table, so the decision must cost next to nothing for
//! it: a case-insensitive multi-pattern scan (Aho-Corasick) over the statement text looks for any
//! managed table name first, and only text that contains one pays for a full sqlparser parse, whose
//! table references are then resolved against the managed set. With no managed tables the scan is
//! skipped entirely. The set is swapped atomically (`arc-swap`), so the catalog can change it while
//! sessions route without locks.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use aho_corasick::AhoCorasick;
use arc_swap::ArcSwap;
use sqlparser::ast::{CopySource, ObjectName, ObjectNamePart, Statement, visit_relations};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// A schema-qualified table name, as Postgres stores it (unquoted identifiers folded to lower
/// case).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self { schema: schema.into(), name: name.into() }
    }
}

/// Where a statement goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Forwarded to the upstream Postgres unchanged.
    Upstream,
    /// Names at least one managed (foreign) table; pgfed plans and answers it.
    Pgfed { tables: Vec<QualifiedName> },
}

/// How a decision was reached, for metrics: the cheap path must stay the common one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// No managed table name occurs in the text; no parse.
    Scan,
    /// The text mentioned a managed name, so it was parsed.
    Parsed,
    /// The text mentioned a managed name but does not parse; Postgres gets it and reports the
    /// error in its own words.
    Unparsable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub route: Route,
    pub path: Path,
}

/// The set of managed tables and the prefilter built from it.
#[derive(Debug, Default)]
struct Managed {
    tables: HashSet<QualifiedName>,
    /// Every schema holding a managed table, for [`Router::route_any_schema`].
    schemas: Vec<String>,
    /// Matches any managed table's bare name, ASCII case-insensitively. `None` when there are no
    /// tables, or the automaton could not be built (then every statement is parsed).
    prefilter: Option<AhoCorasick>,
}

/// See the crate doc. Cheap to share: `route` takes `&self`.
#[derive(Debug, Default)]
pub struct Router {
    managed: ArcSwap<Managed>,
}

/// Postgres's default `search_path` once `$user` has no schema of its own.
pub const DEFAULT_SEARCH_PATH: &[&str] = &["public"];

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the managed set (called by the catalog whenever foreign tables change).
    pub fn set_managed(&self, tables: impl IntoIterator<Item = QualifiedName>) {
        let tables: HashSet<QualifiedName> = tables.into_iter().collect();
        let names: HashSet<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        let prefilter = if names.is_empty() {
            None
        } else {
            // Building only fails for absurd pattern sizes; parsing everything is slow but correct.
            AhoCorasick::builder().ascii_case_insensitive(true).build(names).ok()
        };
        let mut schemas: Vec<String> = tables.iter().map(|t| t.schema.clone()).collect();
        schemas.sort();
        schemas.dedup();
        self.managed.store(Arc::new(Managed { tables, schemas, prefilter }));
    }

    /// Routes with every schema that holds a managed table on the search path: an unqualified
    /// name matching a managed table anywhere is a candidate. For a proxy that does not know the
    /// session's search_path; whoever answers the statement resolves names exactly and hands back
    /// statements that turn out not to touch managed tables.
    pub fn route_any_schema(&self, sql: &[u8]) -> Decision {
        let managed = self.managed.load();
        let schemas: Vec<&str> = managed.schemas.iter().map(String::as_str).collect();
        Self::route_in(&managed, sql, &schemas)
    }

    /// Routes one statement text (which may hold several statements). `search_path` resolves
    /// unqualified names, in order.
    pub fn route(&self, sql: &[u8], search_path: &[&str]) -> Decision {
        let managed = self.managed.load();
        Self::route_in(&managed, sql, search_path)
    }

    fn route_in(managed: &Managed, sql: &[u8], search_path: &[&str]) -> Decision {
        if managed.tables.is_empty() {
            return Decision { route: Route::Upstream, path: Path::Scan };
        }
        if let Some(pf) = &managed.prefilter
            && !pf.is_match(sql)
        {
            return Decision { route: Route::Upstream, path: Path::Scan };
        }
        let text = String::from_utf8_lossy(sql);
        let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, &text) else {
            // Text naming a managed table that sqlparser cannot read (`TABLE t`, `FROM t*`, newer
            // syntax). Forwarded, it could read the empty shadow table and answer wrongly; pgfed
            // takes it, refuses what it cannot plan and hands back what does not read tables.
            return Decision { route: Route::Pgfed { tables: Vec::new() }, path: Path::Unparsable };
        };
        let mut found: Vec<QualifiedName> = Vec::new();
        // sqlparser reads `FROM ONLY t` as table `only` aliased `t`: pgfed must look closer.
        let mut only = false;
        let _ = visit_relations(&statements, |rel: &ObjectName| {
            only |= matches!(rel.0.as_slice(), [part] if part.as_ident().is_some_and(|i| i.quote_style.is_none() && i.value.eq_ignore_ascii_case("only")));
            if let Some(t) = resolve(rel, &managed.tables, search_path)
                && !found.contains(&t)
            {
                found.push(t);
            }
            ControlFlow::<()>::Continue(())
        });
        // visit_relations does not see COPY's table.
        for statement in &statements {
            if let Statement::Copy { source: CopySource::Table { table_name, .. }, .. } = statement
                && let Some(t) = resolve(table_name, &managed.tables, search_path)
                && !found.contains(&t)
            {
                found.push(t);
            }
        }
        let route = if found.is_empty() && !only { Route::Upstream } else { Route::Pgfed { tables: found } };
        Decision { route, path: Path::Parsed }
    }
}

/// Folds an identifier the way Postgres does: unquoted to lower case, quoted as written.
fn fold(part: &ObjectNamePart) -> Option<String> {
    let ident = part.as_ident()?;
    Some(if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() })
}

fn resolve(rel: &ObjectName, managed: &HashSet<QualifiedName>, search_path: &[&str]) -> Option<QualifiedName> {
    let parts: Vec<String> = rel.0.iter().map(fold).collect::<Option<_>>()?;
    match parts.as_slice() {
        [name] => {
            search_path.iter().map(|schema| QualifiedName::new(*schema, name.clone())).find(|q| managed.contains(q))
        }
        // database.schema.table: Postgres only accepts the current database, which pgfed cannot
        // see here; the schema and table decide.
        [.., schema, name] => {
            let q = QualifiedName::new(schema.clone(), name.clone());
            managed.contains(&q).then_some(q)
        }
        [] => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let r = Router::new();
        r.set_managed([QualifiedName::new("public", "events"), QualifiedName::new("ch", "Hits")]);
        r
    }

    fn route(r: &Router, sql: &str) -> Decision {
        r.route(sql.as_bytes(), DEFAULT_SEARCH_PATH)
    }

    #[test]
    fn without_managed_tables_nothing_is_parsed() {
        let d = Router::new().route(b"select * from events", DEFAULT_SEARCH_PATH);
        assert_eq!(d, Decision { route: Route::Upstream, path: Path::Scan });
    }

    #[test]
    fn text_without_a_managed_name_skips_the_parser() {
        let d = route(&router(), "SELECT abalance FROM pgbench_accounts WHERE aid = $1");
        assert_eq!(d.path, Path::Scan);
        assert_eq!(d.route, Route::Upstream);
    }

    #[test]
    fn finds_managed_tables_in_joins_subqueries_ctes_and_inserts() {
        let r = router();
        for sql in [
            "select * from EVENTS",
            "select * from public.events e join users u on u.id = e.uid",
            "select * from users where id in (select uid from events)",
            "with x as (select * from events) select count(*) from x",
            "insert into archive select * from events",
            r#"select * from ch."Hits""#,
        ] {
            let d = route(&r, sql);
            assert!(matches!(d.route, Route::Pgfed { .. }), "{sql}: {d:?}");
            assert_eq!(d.path, Path::Parsed);
        }
    }

    #[test]
    fn name_in_text_but_not_as_a_table_stays_upstream() {
        let r = router();
        assert_eq!(route(&r, "select 'events' as events_col").route, Route::Upstream);
        // Quoted identifiers keep their case: ch.hits is not ch."Hits".
        assert_eq!(route(&r, "select * from ch.hits").route, Route::Upstream);
        // Not on the search path.
        assert_eq!(route(&r, "select * from Hits").route, Route::Upstream);
        assert_eq!(route(&r, "select * from other.events").route, Route::Upstream);
    }

    #[test]
    fn unparsable_text_naming_a_managed_table_comes_to_pgfed() {
        // Forwarded, `TABLE events` would read the empty shadow table.
        for sql in ["selec * frm events", "TABLE events", "select count(*) from events*"] {
            let d = route(&router(), sql);
            assert_eq!(d, Decision { route: Route::Pgfed { tables: Vec::new() }, path: Path::Unparsable }, "{sql}");
        }
        assert_eq!(route(&router(), "selec * frm nothing_managed").route, Route::Upstream);
    }

    #[test]
    fn only_and_copy_are_looked_at() {
        assert!(matches!(route(&router(), "select count(*) from only events").route, Route::Pgfed { .. }));
        let copy = route(&router(), "copy events to stdout");
        assert_eq!(copy.route, Route::Pgfed { tables: vec![QualifiedName::new("public", "events")] });
        assert_eq!(route(&router(), "copy other_table to stdout").route, Route::Upstream);
    }
}
