//! The catalog in the upstream database (schema `pgfed`, see sql/bootstrap.sql and
//! docs/design/catalog.md), read and written through the client's own session: in its
//! transaction, with its privileges, under the catalog's row-level security.
//!
//! None of these functions is cancel-safe in the sense of leaving the session clean: dropping the
//! future mid-statement leaves the upstream transaction wherever it got to, and the caller (the
//! proxy) must then end the unit of work with an error, which rolls it back.

mod mapping;
pub(crate) mod server;
pub(crate) mod table;

use pgfed_connector_sdk::{
    ConnectorError, Notice, NoticeLevel, OptionLevel, OptionSpec, Options, ScanContext, validate_options,
};
use pgfed_session::{UpstreamError, UpstreamSession};
use serde_json::{Map, Value};

use crate::ddl::{Ddl, OptionAction, OptionItem};
use crate::model::ForeignTable;
use crate::{CatalogError, Registry, quote};

pub use mapping::{public_user_mapping, user_mapping, uses_public_mapping};

/// The catalog script, run by the first DDL or by an administrator.
pub const BOOTSTRAP_SQL: &str = include_str!("../../sql/bootstrap.sql");

/// What `COMMENT ON SCHEMA pgfed` says once the catalog is complete.
const CATALOG_MARKER: &str = "pgfed catalog, version 1";

/// The notification channel; other pgfed instances reload their snapshot when it fires.
pub const NOTIFY_CHANNEL: &str = "pgfed_catalog";

/// The script that creates pgfed's catalog (for an administrator to run once per database when
/// client roles may not create schemas there).
pub fn bootstrap_sql() -> &'static str {
    BOOTSTRAP_SQL
}

/// Runs the bootstrap script in the session. Idempotent. A role that may not create the schema
/// gets [`CatalogError::BootstrapDenied`] (42501, with a hint naming the script).
pub async fn bootstrap(session: &dyn UpstreamSession) -> Result<(), CatalogError> {
    // The script's `... IF EXISTS` notices are noise for the client whose DDL triggered it;
    // quieten them for the script only (transaction-local, then put back).
    let previous = session
        .query_text("SELECT pg_catalog.current_setting('client_min_messages')", &[])
        .await?
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_else(|| "notice".into());
    session.execute("SELECT pg_catalog.set_config('client_min_messages', 'warning', true)", &[]).await?;
    for statement in crate::lex::split_statements(BOOTSTRAP_SQL) {
        session.execute(statement, &[]).await.map_err(|e| match e {
            UpstreamError::Server { ref code, .. } if code == "42501" => CatalogError::BootstrapDenied(e),
            e => CatalogError::Upstream(e),
        })?;
    }
    session.execute("SELECT pg_catalog.set_config('client_min_messages', $1, true)", &[Some(previous)]).await?;
    Ok(())
}

/// Whether the catalog exists and is complete. A `pgfed` schema carrying another pgfed version's
/// marker is an error; one without a marker counts as absent (a bootstrap that never finished).
pub(crate) async fn catalog_present(session: &dyn UpstreamSession) -> Result<bool, CatalogError> {
    let rows = query(
        session,
        "SELECT pg_catalog.obj_description(n.oid, 'pg_namespace') FROM pg_catalog.pg_namespace n \
         WHERE n.nspname = 'pgfed'",
        &[],
    )
    .await?;
    match rows.first().and_then(|r| r.first()).cloned().flatten() {
        Some(marker) if marker == CATALOG_MARKER => Ok(true),
        Some(marker) if marker.starts_with("pgfed catalog, version ") => Err(CatalogError::CatalogState(format!(
            "schema \"pgfed\" holds a catalog this pgfed cannot use ({marker}; this pgfed needs {CATALOG_MARKER})"
        ))),
        _ => Ok(false),
    }
}

/// Gives a catalog made by an older pgfed the current row-level security policies: when the
/// PUBLIC-mapping read policy is the old one (USAGE holders read the options) and the session's
/// role owns schema `pgfed`, re-runs the (idempotent) bootstrap in one transaction with a short
/// lock timeout, so it never queues the catalog's readers behind a long transaction. `false` when
/// nothing needed doing or could be done.
pub async fn refresh_catalog(session: &dyn UpstreamSession) -> Result<bool, CatalogError> {
    let rows = query(
        session,
        "SELECT pg_catalog.pg_has_role(n.nspowner, 'USAGE')::text, \
         coalesce((SELECT (pg_catalog.pg_get_expr(p.polqual, p.polrelid) LIKE '%usage%')::text \
           FROM pg_catalog.pg_policy p WHERE p.polname = 'mapping_options_read' \
           AND p.polrelid = pg_catalog.to_regclass('pgfed.user_mapping_options')), 'false') \
         FROM pg_catalog.pg_namespace n WHERE n.nspname = 'pgfed'",
        &[],
    )
    .await?;
    let flag = |i: usize| rows.first().and_then(|r| r.get(i).cloned().flatten()).as_deref() == Some("true");
    if !flag(0) || !flag(1) || !catalog_present(session).await? {
        return Ok(false);
    }
    session.execute("BEGIN", &[]).await?;
    let done = async {
        session.execute("SET LOCAL lock_timeout = '2s'", &[]).await?;
        bootstrap(session).await?;
        session.execute("COMMIT", &[]).await?;
        Ok::<_, CatalogError>(())
    }
    .await;
    if done.is_err() {
        let _ = session.execute("ROLLBACK", &[]).await;
    }
    done.map(|()| true)
}

/// Bootstraps the catalog unless it is there already.
pub(crate) async fn ensure_catalog(session: &dyn UpstreamSession) -> Result<(), CatalogError> {
    if !catalog_present(session).await? {
        bootstrap(session).await?;
    }
    Ok(())
}

/// Runs a SQL/MED statement against the catalog and returns its command tag. Option values are
/// validated by the wrapper before anything is stored; notices (`... already exists, skipping`,
/// `drop cascades to ...`) go to `ctx.notices`; every change is followed by
/// `NOTIFY pgfed_catalog` in the same transaction.
///
/// On error the upstream transaction is left aborted, as Postgres leaves it after a failed
/// statement (pgfed raises the same error there), so a client's transaction block cannot commit
/// half of a statement.
pub async fn execute_ddl(
    session: &dyn UpstreamSession,
    registry: &Registry,
    ddl: &Ddl,
    ctx: &ScanContext,
) -> Result<String, CatalogError> {
    let result = match ddl {
        Ddl::CreateServer(c) => server::create(session, registry, c, ctx).await,
        Ddl::AlterServer(a) => server::alter(session, registry, a).await,
        Ddl::DropServer(d) => server::drop(session, d, ctx).await,
        Ddl::ServerGrant(g) => server::grant(session, g).await,
        Ddl::CreateUserMapping(c) => mapping::create(session, registry, c, ctx).await,
        Ddl::AlterUserMapping(a) => mapping::alter(session, registry, a).await,
        Ddl::DropUserMapping(d) => mapping::drop(session, d, ctx).await,
        Ddl::CreateForeignTable(c) => table::create(session, registry, c, ctx).await,
        Ddl::AlterForeignTable(a) => table::alter(session, registry, a, ctx).await,
        Ddl::DropForeignTable(d) => table::drop(session, d, ctx).await,
        Ddl::ImportForeignSchema(i) => table::import(session, registry, i, ctx).await,
    };
    match result {
        Ok(()) => Ok(ddl.command_tag().to_string()),
        Err(e) => {
            abort_transaction(session, &e).await;
            Err(e)
        }
    }
}

/// Where a SQL/MED statement belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// pgfed executes it ([`execute_ddl`]).
    Pgfed,
    /// It is about Postgres's own SQL/MED objects (a postgres_fdw server, say): forward it as is.
    Upstream,
}

/// Decides, in the client's session (so objects created earlier in its open transaction count),
/// whether pgfed or Postgres owns a statement: `CREATE SERVER` naming a wrapper pgfed offers (or
/// one Postgres does not have either, so that the error lists pgfed's), statements naming a server
/// in pgfed's catalog, and ALTER/DROP FOREIGN TABLE naming a pgfed table are pgfed's. A statement
/// naming objects of both kinds is refused (0A000).
pub async fn route(session: &dyn UpstreamSession, registry: &Registry, ddl: &Ddl) -> Result<Route, CatalogError> {
    if let Some(wrapper) = ddl.wrapper() {
        if registry.get(wrapper).is_some() {
            return Ok(Route::Pgfed);
        }
        let postgres_has_it = !query(
            session,
            "SELECT 1::text FROM pg_catalog.pg_foreign_data_wrapper WHERE fdwname = $1",
            &[Some(wrapper.to_string())],
        )
        .await?
        .is_empty();
        return Ok(if postgres_has_it { Route::Upstream } else { Route::Pgfed });
    }
    if !catalog_present(session).await? {
        return Ok(Route::Upstream);
    }
    let mut ours = 0;
    let mut theirs = 0;
    for name in ddl.servers() {
        let rows = query(
            session,
            "SELECT (EXISTS (SELECT 1 FROM pgfed.servers WHERE name = $1))::text, \
             (EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server WHERE srvname = $1))::text",
            &[Some(name.to_string())],
        )
        .await?;
        let row = rows.first();
        if row.is_some_and(|r| flag(r, 0)) {
            ours += 1;
        } else if row.is_some_and(|r| flag(r, 1)) {
            theirs += 1;
        }
    }
    for name in ddl.tables() {
        match table::resolve(session, name).await? {
            Some(rel) if rel.is_shadow => ours += 1,
            Some(_) => theirs += 1,
            None => {}
        }
    }
    match (ours, theirs) {
        (0, _) => Ok(Route::Upstream),
        (_, 0) => Ok(Route::Pgfed),
        _ => Err(CatalogError::NotSupported(format!(
            "{} naming both pgfed objects and Postgres's own foreign objects; use one statement for each",
            ddl.command_tag()
        ))),
    }
}

/// A privilege to check on a foreign table, with the columns the statement reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privilege {
    /// SELECT on these columns (none: on at least one column, as `count(*)` needs).
    Select(Vec<String>),
    /// INSERT into these columns (none: `INSERT ... DEFAULT VALUES`).
    Insert(Vec<String>),
    /// UPDATE of these columns (none: of at least one column).
    Update(Vec<String>),
    Delete,
}

/// Checks a privilege on a foreign table with a statement on its shadow table that touches no
/// row (`SELECT c FROM shadow WHERE false`, `UPDATE shadow SET c = DEFAULT WHERE false`, ...), so
/// Postgres decides with its own rules (GRANT/REVOKE, column privileges, schema USAGE, role
/// membership) and its own 42501 error comes back unchanged. The shadow's guard triggers are
/// row-level, so no trigger fires. Columns a statement reads in WHERE or SET expressions need
/// [`Privilege::Select`] too, as in Postgres.
pub async fn check_privilege(
    session: &dyn UpstreamSession,
    table: &ForeignTable,
    privilege: &Privilege,
) -> Result<(), CatalogError> {
    let shadow = quote::qualified(&table.schema, &table.name);
    let cols = |cols: &[String]| cols.iter().map(|c| quote::ident(c)).collect::<Vec<_>>().join(", ");
    let sql = match privilege {
        Privilege::Select(c) if c.is_empty() => format!("SELECT NULL FROM {shadow} WHERE false"),
        Privilege::Select(c) => format!("SELECT {} FROM {shadow} WHERE false", cols(c)),
        Privilege::Insert(c) if c.is_empty() => format!("INSERT INTO {shadow} SELECT WHERE false"),
        Privilege::Insert(c) => {
            let nulls = vec!["NULL"; c.len()].join(", ");
            format!("INSERT INTO {shadow} ({}) SELECT {nulls} WHERE false", cols(c))
        }
        Privilege::Update(c) if c.is_empty() => {
            let rows = query(
                session,
                "SELECT pg_catalog.has_any_column_privilege($1::oid, 'UPDATE')::text",
                &[Some(table.shadow_oid.to_string())],
            )
            .await?;
            if rows.first().is_some_and(|r| flag(r, 0)) {
                return Ok(());
            }
            return Err(CatalogError::InsufficientPrivilege {
                message: format!("permission denied for table {}", table.name),
                hint: None,
            });
        }
        Privilege::Update(c) => {
            let sets: Vec<String> = c.iter().map(|c| format!("{} = DEFAULT", quote::ident(c))).collect();
            format!("UPDATE {shadow} SET {} WHERE false", sets.join(", "))
        }
        Privilege::Delete => format!("DELETE FROM {shadow} WHERE false"),
    };
    session.execute(&sql, &[]).await?;
    Ok(())
}

// ---- helpers shared by the statement modules ----

pub(crate) async fn query(
    session: &dyn UpstreamSession,
    sql: &str,
    params: &[Option<String>],
) -> Result<Vec<Vec<Option<String>>>, CatalogError> {
    Ok(session.query_text(sql, params).await?)
}

/// Runs a statement; returns the rows it affected (the number at the end of the command tag).
pub(crate) async fn execute(
    session: &dyn UpstreamSession,
    sql: &str,
    params: &[Option<String>],
) -> Result<u64, CatalogError> {
    let tag = session.execute(sql, params).await?;
    Ok(tag.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0))
}

pub(crate) async fn notify(session: &dyn UpstreamSession) -> Result<(), CatalogError> {
    execute(session, &format!("NOTIFY {NOTIFY_CHANNEL}"), &[]).await.map(drop)
}

pub(crate) fn notice(ctx: &ScanContext, message: String, detail: Option<String>) {
    (ctx.notices)(Notice { level: NoticeLevel::Notice, message, detail, hint: None });
}

/// Column `i` of a text row as a boolean (`true`/`t`).
pub(crate) fn flag(row: &[Option<String>], i: usize) -> bool {
    matches!(row.get(i).and_then(Option::as_deref), Some("true" | "t"))
}

pub(crate) fn text(row: &[Option<String>], i: usize) -> Result<String, CatalogError> {
    row.get(i).cloned().flatten().ok_or_else(|| CatalogError::Internal(format!("catalog query: column {i} is NULL")))
}

pub(crate) fn number<T: std::str::FromStr>(row: &[Option<String>], i: usize) -> Result<T, CatalogError> {
    text(row, i)?.parse().map_err(|_| CatalogError::Internal(format!("catalog query: column {i} is not a number")))
}

/// Options as stored: a jsonb object of strings.
pub(crate) fn options_json(options: &[(String, String)]) -> String {
    let map: Map<String, Value> = options.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    Value::Object(map).to_string()
}

pub(crate) fn options_from_json(json: &str) -> Result<Vec<(String, String)>, CatalogError> {
    let map: Map<String, Value> = serde_json::from_str(json).map_err(|_| {
        CatalogError::CatalogState("a pgfed catalog row holds options that are not a JSON object".into())
    })?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// Applies `ADD`/`SET`/`DROP` with Postgres's rules and messages.
pub(crate) fn apply_option_changes(
    mut current: Vec<(String, String)>,
    changes: &[OptionItem],
) -> Result<Vec<(String, String)>, CatalogError> {
    for change in changes {
        let at = current.iter().position(|(k, _)| *k == change.name);
        match (change.action, at) {
            (OptionAction::Add, Some(_)) => {
                return Err(CatalogError::DuplicateObject(format!(
                    "option \"{}\" provided more than once",
                    change.name
                )));
            }
            (OptionAction::Add, None) => {
                current.push((change.name.clone(), change.value.clone().unwrap_or_default()));
            }
            (OptionAction::Set | OptionAction::Drop, None) => {
                return Err(CatalogError::UndefinedObject(format!("option \"{}\" not found", change.name)));
            }
            (OptionAction::Set, Some(i)) => current[i].1 = change.value.clone().unwrap_or_default(),
            (OptionAction::Drop, Some(i)) => {
                current.remove(i);
            }
        }
    }
    Ok(current)
}

pub(crate) fn validate(
    specs: &[OptionSpec],
    level: OptionLevel,
    given: &[(String, String)],
) -> Result<Options, CatalogError> {
    Ok(validate_options(specs, level, given)?)
}

pub(crate) fn options_not_allowed(what: &'static str, items: &[OptionItem]) -> Result<(), CatalogError> {
    match items.first() {
        None => Ok(()),
        Some(first) => Err(CatalogError::Connector(ConnectorError::InvalidOption {
            name: first.name.clone(),
            level: what,
            hint: format!("There are no valid options in this context ({what})."),
        })),
    }
}

/// The session's role: (OID, name).
pub(crate) async fn current_role(session: &dyn UpstreamSession) -> Result<(u32, String), CatalogError> {
    let rows = query(
        session,
        "SELECT r.oid::text, r.rolname::text FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER",
        &[],
    )
    .await?;
    let row = rows.first().ok_or_else(|| CatalogError::Internal("the current role is not in pg_roles".into()))?;
    Ok((number(row, 0)?, text(row, 1)?))
}

/// Leaves the upstream transaction aborted after a pgfed error, as Postgres would after the same
/// error: the statement raises it there too. The literal carries no `$` (written `\x24`), so it
/// cannot end the dollar quote.
async fn abort_transaction(session: &dyn UpstreamSession, error: &CatalogError) {
    if matches!(error, CatalogError::Upstream(_) | CatalogError::BootstrapDenied(_)) {
        return; // Postgres raised it: the transaction is aborted already (or the session is gone).
    }
    let code = error.sqlstate();
    let code = if code.len() == 5 && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        code
    } else {
        "XX000"
    };
    let literal = |s: &str| {
        let mut out = String::from("E'");
        for c in s.chars() {
            match c {
                '\'' => out.push_str("''"),
                '\\' => out.push_str("\\\\"),
                '$' => out.push_str("\\x24"),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    };
    let sql = format!(
        "DO $pgfed$BEGIN RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = {}; END$pgfed$",
        literal(&format!("pgfed: {error}"))
    );
    if let Err(e) = session.execute(&sql, &[]).await
        && e.sqlstate() != code
    {
        tracing::debug!(sqlstate = e.sqlstate(), "aborting the upstream transaction after a catalog error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_script_splits_into_whole_statements() {
        let statements = crate::lex::split_statements(BOOTSTRAP_SQL);
        assert!(statements.len() > 30, "{}", statements.len());
        let function = statements.iter().find(|s| s.contains("FUNCTION pgfed.shadow_guard")).expect("function");
        assert!(function.trim_end().ends_with("$guard$"), "{function}");
        assert!(statements.last().expect("last").ends_with(&format!("'{CATALOG_MARKER}'")));
    }

    fn item(action: OptionAction, name: &str, value: Option<&str>) -> OptionItem {
        OptionItem { action, name: name.into(), value: value.map(str::to_string) }
    }

    #[test]
    fn option_changes_follow_postgres() {
        let current = vec![("a".to_string(), "1".to_string()), ("b".into(), "2".into())];
        let changed = apply_option_changes(
            current.clone(),
            &[
                item(OptionAction::Set, "a", Some("10")),
                item(OptionAction::Drop, "b", None),
                item(OptionAction::Add, "c", Some("3")),
            ],
        )
        .expect("valid");
        assert_eq!(changed, [("a".to_string(), "10".to_string()), ("c".into(), "3".into())]);
        let e = apply_option_changes(current.clone(), &[item(OptionAction::Add, "a", Some("x"))]).expect_err("dup");
        assert_eq!((e.sqlstate(), e.to_string().as_str()), ("42710", "option \"a\" provided more than once"));
        let e = apply_option_changes(current, &[item(OptionAction::Drop, "z", None)]).expect_err("missing");
        assert_eq!((e.sqlstate(), e.to_string().as_str()), ("42704", "option \"z\" not found"));
    }

    #[test]
    fn options_are_stored_as_json_strings() {
        let options = vec![("k".to_string(), "it's \"q\" \\ ü".to_string())];
        assert_eq!(options_from_json(&options_json(&options)).expect("round trip"), options);
        assert!(options_from_json("[1]").is_err());
    }
}
