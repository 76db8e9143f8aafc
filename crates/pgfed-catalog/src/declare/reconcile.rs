//! Makes the stored catalog match the declarations, in one upstream transaction on pgfed's
//! service connection: creates what is missing, alters what differs, drops what the files no
//! longer declare among the objects created from them (`pgfed.declared_*`). Objects created
//! with DDL are never changed: one that clashes with a declaration is an error.
//!
//! Every change goes through [`crate::execute_ddl`] with a statement built here, so the files
//! get exactly the validation, privileges, shadow tables and notifications of DDL sent through
//! pgfed. Only a foreign table's server, which DDL cannot change, is updated directly (then
//! checked by an `ALTER FOREIGN TABLE` with the new server's connector).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Display;
use std::sync::Arc;

use pgfed_connector_sdk::{ScanContext, Wrapper};
use pgfed_session::UpstreamSession;
use tokio_util::sync::CancellationToken;

use super::{Declarations, DeclareError, Location};
use crate::ddl::{
    AlterForeignTable, AlterServer, AlterServerAction, AlterTableAction, AlterUserMapping, CreateForeignTable,
    CreateServer, CreateUserMapping, Ddl, DropForeignTable, DropServer, DropUserMapping, OptionAction, OptionItem,
    QualifiedName, RoleSpec, ServerGrant, option_pairs,
};
use crate::store::server::resolve_role;
use crate::store::table::{column_options_from_json, column_sql, import_definitions};
use crate::store::{current_role, execute, flag, number, options_from_json, query, text};
use crate::{CatalogError, Registry, quote};

/// What a run changed, one line per object (names only, never option values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub created: Vec<String>,
    pub altered: Vec<String>,
    pub dropped: Vec<String>,
    /// Declared objects that already matched.
    pub unchanged: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.altered.is_empty() && self.dropped.is_empty()
    }
}

/// Applies `decl` in one transaction on `session` (which must not be in one): all of it or, on
/// the first error, nothing. Concurrent runs (several pgfed instances starting together)
/// serialize on an advisory lock, so the second finds nothing to do. Not cancel-safe: dropping
/// the future mid-run leaves the transaction open on the session; drop the session with it.
pub async fn reconcile(
    session: &dyn UpstreamSession,
    registry: &Registry,
    decl: &Declarations,
) -> Result<Changes, DeclareError> {
    let begin = |e: pgfed_session::UpstreamError| DeclareError::Apply {
        at: "catalog files".into(),
        what: "starting the transaction".into(),
        error: Box::new(e.into()),
    };
    session.execute("BEGIN", &[]).await.map_err(begin)?;
    let result = async {
        let (_, user) = current_role(session).await.map_err(|e| general("reading the service role", e))?;
        let ctx = ScanContext {
            cancel: CancellationToken::new(),
            deadline: None,
            notices: Arc::new(|n| tracing::debug!(message = n.message, "catalog files")),
            user,
        };
        let mut run = Run { session, registry, ctx, changes: Changes::default() };
        run.apply(decl).await.map(|()| run.changes)
    }
    .await;
    match result {
        Ok(changes) => {
            session.execute("COMMIT", &[]).await.map_err(|e| general("committing", e.into()))?;
            Ok(changes)
        }
        Err(e) => {
            if let Err(rollback) = session.execute("ROLLBACK", &[]).await {
                tracing::debug!(error = %rollback, "catalog files: rollback after an error");
            }
            Err(e)
        }
    }
}

/// [`reconcile`] on a connection of its own (pgfed's service connection, a libpq-style
/// `conninfo`), closed afterwards. Without TLS, like the catalog watcher's.
pub async fn reconcile_on(
    conninfo: &str,
    connect_timeout: std::time::Duration,
    registry: &Registry,
    decl: &Declarations,
) -> Result<Changes, DeclareError> {
    let mut config: tokio_postgres::Config = conninfo.parse().map_err(DeclareError::Connect)?;
    config.connect_timeout(connect_timeout).application_name("pgfed catalog files");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(DeclareError::Connect)?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "catalog files: service connection ended");
        }
    });
    let session = pgfed_session::TokioPgSession(client);
    let result = reconcile(&session, registry, decl).await;
    // Dropping the client ends the connection task.
    drop(session);
    if let Err(e) = driver.await {
        tracing::debug!(error = %e, "catalog files: connection task");
    }
    result
}

fn general(what: &str, error: CatalogError) -> DeclareError {
    DeclareError::Apply { at: "catalog files".into(), what: what.into(), error: Box::new(error) }
}

fn failed(at: impl Display, what: &str, error: CatalogError) -> DeclareError {
    DeclareError::Apply { at: at.to_string(), what: what.to_string(), error: Box::new(error) }
}

/// Where a stored object was declared, for errors about dropping it.
fn previously(source: &str) -> String {
    format!("{source} (no longer declared)")
}

/// The `ADD`/`SET`/`DROP` items that turn `current` into `desired` (compared by name).
fn option_diff(current: &[(String, String)], desired: &[(String, String)]) -> Vec<OptionItem> {
    let current: BTreeMap<&str, &str> = current.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let wanted: BTreeMap<&str, &str> = desired.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let item = |action, name: &str, value: Option<&str>| OptionItem {
        action,
        name: name.to_string(),
        value: value.map(str::to_string),
    };
    let mut out = Vec::new();
    for (name, value) in &wanted {
        match current.get(name) {
            None => out.push(item(OptionAction::Add, name, Some(value))),
            Some(v) if v != value => out.push(item(OptionAction::Set, name, Some(value))),
            Some(_) => {}
        }
    }
    for name in current.keys().filter(|n| !wanted.contains_key(*n)) {
        out.push(item(OptionAction::Drop, name, None));
    }
    out
}

fn names(items: &[OptionItem]) -> String {
    items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
}

fn opt(row: &[Option<String>], i: usize) -> Option<String> {
    row.get(i).cloned().flatten()
}

/// A column as Postgres resolved it: type OID and modifier, NOT NULL, default expression.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResolvedColumn {
    attnum: i16,
    type_oid: u32,
    typmod: i32,
    not_null: bool,
    default: Option<String>,
}

const PROBE: &str = "pgfed_declared_probe";

struct Run<'a> {
    session: &'a dyn UpstreamSession,
    registry: &'a Registry,
    ctx: ScanContext,
    changes: Changes,
}

impl Run<'_> {
    async fn ddl(&self, ddl: Ddl) -> Result<(), CatalogError> {
        crate::execute_ddl(self.session, self.registry, &ddl, &self.ctx).await.map(drop)
    }

    async fn apply(&mut self, decl: &Declarations) -> Result<(), DeclareError> {
        let s = self.session;
        let prepare = async {
            execute(s, "SELECT pg_catalog.pg_advisory_xact_lock(7307463, 2)::text", &[]).await?;
            crate::store::ensure_catalog(s).await?;
            // A catalog bootstrapped before the declared_* tables existed: the script is
            // idempotent and adds them.
            let rows = query(s, "SELECT (pg_catalog.to_regclass('pgfed.declared_tables') IS NULL)::text", &[]).await?;
            if rows.first().is_some_and(|r| flag(r, 0)) {
                crate::bootstrap(s).await?;
            }
            // Declared tables whose shadow was dropped behind pgfed's back are gone; those whose
            // shadow lost its guard trigger are ordinary tables again (docs/design/catalog.md §3).
            execute(
                s,
                "DELETE FROM pgfed.foreign_tables t WHERE t.shadow IN (SELECT d.shadow FROM pgfed.declared_tables d) \
                 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.shadow::oid)",
                &[],
            )
            .await?;
            execute(
                s,
                &format!(
                    "DELETE FROM pgfed.declared_tables d WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g \
                     WHERE g.tgrelid = d.shadow::oid AND g.tgname = '{}')",
                    crate::store::table::GUARD_TRIGGER
                ),
                &[],
            )
            .await?;
            Ok::<_, CatalogError>(())
        };
        prepare.await.map_err(|e| general("preparing the catalog", e))?;
        let kept_servers = self.servers(decl).await?;
        let kept_mappings = self.mappings(decl).await?;
        let kept_tables = self.tables(decl).await?;
        self.drop_undeclared(&kept_servers, &kept_mappings, &kept_tables).await
    }

    // ---- servers and GRANT USAGE ----

    /// Creates and alters the declared servers; returns their names.
    async fn servers(&mut self, decl: &Declarations) -> Result<HashSet<String>, DeclareError> {
        let s = self.session;
        let rows = query(
            s,
            "SELECT s.name, s.wrapper, s.server_type, s.server_version, s.options::text, d.source \
             FROM pgfed.declared_servers d JOIN pgfed.servers s ON s.name = d.name",
            &[],
        )
        .await
        .map_err(|e| general("reading the declared servers", e))?;
        let mut managed = HashMap::new();
        for row in &rows {
            managed.insert(opt(row, 0).unwrap_or_default(), row.clone());
        }
        let mut kept = HashSet::new();
        for (at, c) in &decl.servers {
            let what = format!("server \"{}\"", c.name);
            let fail = |e| failed(at, &what, e);
            kept.insert(c.name.clone());
            match managed.get(&c.name) {
                Some(row) => {
                    let wrapper = text(row, 1).map_err(fail)?;
                    if wrapper != c.wrapper {
                        return Err(fail(CatalogError::NotSupported(format!(
                            "changing the wrapper of server \"{}\" from {wrapper} to {}; declare a server with \
                             another name instead",
                            c.name, c.wrapper
                        ))));
                    }
                    let mut changed = Vec::new();
                    if opt(row, 2) != c.server_type {
                        execute(
                            s,
                            "UPDATE pgfed.servers SET server_type = $2 WHERE name = $1",
                            &[Some(c.name.clone()), c.server_type.clone()],
                        )
                        .await
                        .map_err(fail)?;
                        changed.push("type".to_string());
                    }
                    let current = options_from_json(&text(row, 4).map_err(fail)?).map_err(fail)?;
                    let items = option_diff(&current, &option_pairs(&c.options));
                    let version = (opt(row, 3) != c.version).then(|| c.version.clone());
                    if version.is_some() {
                        changed.push("version".into());
                    }
                    if !items.is_empty() {
                        changed.push(format!("options {}", names(&items)));
                    }
                    if !items.is_empty() || version.is_some() {
                        let action = AlterServerAction::Change { version, options: items };
                        self.ddl(Ddl::AlterServer(AlterServer { name: c.name.clone(), action })).await.map_err(fail)?;
                    }
                    self.record(changed, &what);
                }
                None => {
                    let exists = query(s, "SELECT 1::text FROM pgfed.servers WHERE name = $1", &[Some(c.name.clone())])
                        .await
                        .map_err(fail)?;
                    if !exists.is_empty() {
                        return Err(fail(not_declared(&what, "DROP SERVER")));
                    }
                    let create = CreateServer { if_not_exists: false, ..c.clone() };
                    self.ddl(Ddl::CreateServer(create)).await.map_err(fail)?;
                    execute(
                        s,
                        "INSERT INTO pgfed.declared_servers (name, source) VALUES ($1, $2)",
                        &[Some(c.name.clone()), Some(at.to_string())],
                    )
                    .await
                    .map_err(fail)?;
                    self.changes.created.push(what.clone());
                }
            }
            self.grants(decl, at, &c.name).await?;
        }
        Ok(kept)
    }

    /// Makes USAGE on a declared server exactly what the files' GRANT statements give.
    async fn grants(&mut self, decl: &Declarations, at: &Location, server: &str) -> Result<(), DeclareError> {
        let s = self.session;
        let what = format!("USAGE on server \"{server}\"");
        let mut wanted: BTreeMap<u32, RoleSpec> = BTreeMap::new();
        for (grant_at, g) in decl.grants.iter().filter(|(_, g)| g.servers.iter().any(|n| n == server)) {
            for spec in &g.roles {
                let (oid, name) = resolve_role(s, spec).await.map_err(|e| failed(grant_at, &what, e))?;
                wanted.insert(oid, if oid == 0 { RoleSpec::Public } else { RoleSpec::Named(name) });
            }
        }
        // Grantees that no longer exist cannot be revoked by name and grant nothing.
        let rows = query(
            s,
            "SELECT u::oid::text, CASE WHEN u::oid = 0 THEN 'public' ELSE pg_catalog.pg_get_userbyid(u::oid)::text END \
             FROM pgfed.servers s, pg_catalog.unnest(s.usage) u WHERE s.name = $1 \
             AND (u::oid = 0 OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = u::oid))",
            &[Some(server.to_string())],
        )
        .await
        .map_err(|e| failed(at, &what, e))?;
        let mut current: BTreeMap<u32, RoleSpec> = BTreeMap::new();
        for row in &rows {
            let oid: u32 = number(row, 0).map_err(|e| failed(at, &what, e))?;
            let name = text(row, 1).map_err(|e| failed(at, &what, e))?;
            current.insert(oid, if oid == 0 { RoleSpec::Public } else { RoleSpec::Named(name) });
        }
        let add: Vec<RoleSpec> =
            wanted.iter().filter(|(o, _)| !current.contains_key(o)).map(|(_, r)| r.clone()).collect();
        let remove: Vec<RoleSpec> =
            current.iter().filter(|(o, _)| !wanted.contains_key(o)).map(|(_, r)| r.clone()).collect();
        for (grant, roles) in [(true, add), (false, remove)] {
            if roles.is_empty() {
                continue;
            }
            let listed = roles.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            let g = ServerGrant { grant, servers: vec![server.to_string()], roles, unsupported: vec![] };
            self.ddl(Ddl::ServerGrant(g)).await.map_err(|e| failed(at, &what, e))?;
            let verb = if grant { "granted to" } else { "revoked from" };
            self.changes.altered.push(format!("{what}: {verb} {listed}"));
        }
        Ok(())
    }

    fn record(&mut self, changed: Vec<String>, what: &str) {
        if changed.is_empty() {
            self.changes.unchanged += 1;
        } else {
            self.changes.altered.push(format!("{what} ({})", changed.join("; ")));
        }
    }

    // ---- user mappings ----

    /// Creates and alters the declared mappings; returns their (server, role OID).
    async fn mappings(&mut self, decl: &Declarations) -> Result<HashSet<(String, u32)>, DeclareError> {
        let s = self.session;
        // The options sub-select is NULL when row-level security hides them from the service role.
        let rows = query(
            s,
            "SELECT d.server, d.umuser::oid::text, d.source, \
             (SELECT o.options::text FROM pgfed.user_mapping_options o \
              WHERE o.server = d.server AND o.umuser::oid = d.umuser::oid) \
             FROM pgfed.declared_user_mappings d",
            &[],
        )
        .await
        .map_err(|e| general("reading the declared user mappings", e))?;
        let mut managed: HashMap<(String, u32), Option<String>> = HashMap::new();
        for row in &rows {
            let oid = number(row, 1).map_err(|e| general("reading the declared user mappings", e))?;
            managed.insert((opt(row, 0).unwrap_or_default(), oid), opt(row, 3));
        }
        let mut kept: HashMap<(String, u32), &Location> = HashMap::new();
        for (at, m) in &decl.mappings {
            let (oid, role) = resolve_role(s, &m.user)
                .await
                .map_err(|e| failed(at, &format!("user mapping for {} on server \"{}\"", m.user, m.server), e))?;
            let what =
                format!("user mapping for {} on server \"{}\"", if oid == 0 { "public" } else { &role }, m.server);
            let fail = |e| failed(at, &what, e);
            let key = (m.server.clone(), oid);
            if let Some(first) = kept.insert(key.clone(), at) {
                return Err(DeclareError::Duplicate { at: at.clone(), what, first: first.clone() });
            }
            let spec = if oid == 0 { RoleSpec::Public } else { RoleSpec::Named(role) };
            let desired = option_pairs(&m.options);
            match managed.get(&key) {
                Some(Some(stored)) => {
                    let items = option_diff(&options_from_json(stored).map_err(fail)?, &desired);
                    if items.is_empty() {
                        self.changes.unchanged += 1;
                    } else {
                        let changed = format!("options {}", names(&items));
                        let alter = AlterUserMapping { user: spec, server: m.server.clone(), options: items };
                        self.ddl(Ddl::AlterUserMapping(alter)).await.map_err(fail)?;
                        self.record(vec![changed], &what);
                    }
                }
                Some(None) => {
                    // Options the service role may not read cannot be compared: replace them.
                    let drop = DropUserMapping { if_exists: false, user: spec.clone(), server: m.server.clone() };
                    self.ddl(Ddl::DropUserMapping(drop)).await.map_err(fail)?;
                    self.create_mapping(at, m, spec, oid).await.map_err(fail)?;
                    self.record(vec!["re-created: its options are not readable by the service role".into()], &what);
                }
                None => {
                    let exists = query(
                        s,
                        "SELECT 1::text FROM pgfed.user_mappings WHERE server = $1 AND umuser::oid = $2::oid",
                        &[Some(m.server.clone()), Some(oid.to_string())],
                    )
                    .await
                    .map_err(fail)?;
                    if !exists.is_empty() {
                        return Err(fail(not_declared(&what, "DROP USER MAPPING")));
                    }
                    self.create_mapping(at, m, spec, oid).await.map_err(fail)?;
                    self.changes.created.push(what.clone());
                }
            }
        }
        Ok(kept.into_keys().collect())
    }

    async fn create_mapping(
        &self,
        at: &Location,
        m: &CreateUserMapping,
        user: RoleSpec,
        oid: u32,
    ) -> Result<(), CatalogError> {
        let create = CreateUserMapping { if_not_exists: false, user, ..m.clone() };
        self.ddl(Ddl::CreateUserMapping(create)).await?;
        execute(
            self.session,
            "INSERT INTO pgfed.declared_user_mappings (server, umuser, source) VALUES ($1, $2::oid::regrole, $3)",
            &[Some(m.server.clone()), Some(oid.to_string()), Some(at.to_string())],
        )
        .await
        .map(drop)
    }

    // ---- foreign tables and IMPORT FOREIGN SCHEMA ----

    /// Creates and alters the declared tables (IMPORT FOREIGN SCHEMA: the tables the source
    /// has now); returns their shadows' OIDs.
    async fn tables(&mut self, decl: &Declarations) -> Result<HashSet<u32>, DeclareError> {
        let s = self.session;
        let mut desired: Vec<(String, CreateForeignTable)> = Vec::new();
        let default_schema = query(s, "SELECT pg_catalog.current_schema()::text", &[])
            .await
            .map_err(|e| general("reading current_schema()", e))?
            .first()
            .and_then(|r| opt(r, 0));
        for (at, t) in &decl.tables {
            let mut t = t.clone();
            if t.table.schema.is_none() {
                t.table.schema = default_schema.clone();
            }
            desired.push((at.to_string(), t));
        }
        for (at, i) in &decl.imports {
            let what = format!("IMPORT FOREIGN SCHEMA {} FROM SERVER {}", i.remote_schema, i.server);
            let tables = import_definitions(s, self.registry, i, &self.ctx).await.map_err(|e| failed(at, &what, e))?;
            desired.extend(tables.into_iter().map(|t| (format!("{at}, {what}"), t)));
        }
        let rows = query(
            s,
            "SELECT c.oid::text, n.nspname::text, c.relname::text, t.server, t.options::text, \
             t.column_options::text, d.source FROM pgfed.declared_tables d \
             JOIN pgfed.foreign_tables t ON t.shadow = d.shadow \
             JOIN pg_catalog.pg_class c ON c.oid = d.shadow::oid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
            &[],
        )
        .await
        .map_err(|e| general("reading the declared foreign tables", e))?;
        let mut managed: HashMap<(String, String), Vec<Option<String>>> = HashMap::new();
        for row in rows {
            managed.insert((opt(&row, 1).unwrap_or_default(), opt(&row, 2).unwrap_or_default()), row);
        }
        let mut kept: HashMap<(String, String), String> = HashMap::new();
        let mut oids = HashSet::new();
        for (at, t) in &desired {
            let schema = t.table.schema.clone().unwrap_or_default();
            let what = format!("foreign table {}.{}", schema, t.table.name);
            let fail = |e| failed(at, &what, e);
            let key = (schema.clone(), t.table.name.clone());
            if let Some(first) = kept.insert(key.clone(), at.clone()) {
                return Err(failed(
                    at,
                    &what,
                    CatalogError::DuplicateTable(format!("{what} is declared twice (first at {first})")),
                ));
            }
            let wrapper = self.server_wrapper(&t.server).await.map_err(fail)?;
            super::check_table(t, wrapper.as_ref().map(|w| w.options())).map_err(fail)?;
            match managed.get(&key) {
                Some(row) => {
                    let oid: u32 = number(row, 0).map_err(fail)?;
                    oids.insert(oid);
                    let changed = self.alter_table(oid, &schema, t, row).await.map_err(fail)?;
                    self.record(changed, &what);
                }
                None => {
                    let exists = query(
                        s,
                        "SELECT 1::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
                         ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                        &[Some(schema.clone()), Some(t.table.name.clone())],
                    )
                    .await
                    .map_err(fail)?;
                    if !exists.is_empty() {
                        return Err(fail(CatalogError::DuplicateTable(format!(
                            "relation \"{}\" already exists and was not created from the catalog files; drop it, \
                             or remove it from the files",
                            t.table.name
                        ))));
                    }
                    let create = CreateForeignTable { if_not_exists: false, ..t.clone() };
                    self.ddl(Ddl::CreateForeignTable(create)).await.map_err(fail)?;
                    let rows = query(
                        s,
                        "INSERT INTO pgfed.declared_tables (shadow, source) \
                         SELECT c.oid::regclass, $3 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
                         ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 RETURNING shadow::oid::text",
                        &[Some(schema.clone()), Some(t.table.name.clone()), Some(at.clone())],
                    )
                    .await
                    .map_err(fail)?;
                    let row =
                        rows.first().ok_or_else(|| fail(CatalogError::Internal("new shadow not found".into())))?;
                    oids.insert(number(row, 0).map_err(fail)?);
                    self.changes.created.push(what.clone());
                }
            }
        }
        Ok(oids)
    }

    /// The wrapper of a server, if the server exists and pgfed offers its wrapper.
    async fn server_wrapper(&self, server: &str) -> Result<Option<Arc<dyn Wrapper>>, CatalogError> {
        let rows =
            query(self.session, "SELECT wrapper FROM pgfed.servers WHERE name = $1", &[Some(server.into())]).await?;
        Ok(rows.first().and_then(|r| opt(r, 0)).and_then(|w| self.registry.get(&w).cloned()))
    }

    /// Brings a declared table that exists to its declaration; returns what changed.
    async fn alter_table(
        &self,
        oid: u32,
        schema: &str,
        t: &CreateForeignTable,
        row: &[Option<String>],
    ) -> Result<Vec<String>, CatalogError> {
        let s = self.session;
        let mut changed = Vec::new();
        let mut actions = Vec::new();
        let server = text(row, 3)?;
        let server_changed = server != t.server;
        if server_changed {
            // DDL cannot move a table to another server; the ALTER below re-checks everything with
            // the new server's connector.
            let rows = query(s, "SELECT wrapper FROM pgfed.servers WHERE name = $1", &[Some(t.server.clone())]).await?;
            let wrapper = rows
                .first()
                .and_then(|r| opt(r, 0))
                .ok_or_else(|| CatalogError::UndefinedObject(format!("server \"{}\" does not exist", t.server)))?;
            execute(
                s,
                "UPDATE pgfed.foreign_tables SET server = $2 WHERE shadow::oid = $1::oid",
                &[Some(oid.to_string()), Some(t.server.clone())],
            )
            .await?;
            let comment = format!("pgfed foreign table on server {} ({wrapper})", t.server);
            let shadow = quote::qualified(schema, &t.table.name);
            execute(s, &format!("COMMENT ON TABLE {shadow} IS {}", quote::literal(&comment)), &[]).await?;
            changed.push(format!("server {server} -> {}", t.server));
        }
        let items = option_diff(&options_from_json(&text(row, 4)?)?, &option_pairs(&t.options));
        if !items.is_empty() {
            changed.push(format!("options {}", names(&items)));
            actions.push(AlterTableAction::Options(items));
        }
        let current = self.resolved_columns(oid).await?;
        let wanted = self.probe(t).await?;
        let stored_options = column_options_from_json(&text(row, 5)?)?;
        for name in current.keys().filter(|n| !wanted.contains_key(*n)) {
            actions.push(AlterTableAction::DropColumn { if_exists: false, column: name.clone(), cascade: false });
            changed.push(format!("column {name} dropped"));
        }
        for c in &t.columns {
            let Some(want) = wanted.get(&c.name) else { continue };
            let add = AlterTableAction::AddColumn { if_not_exists: false, column: c.clone() };
            let Some(have) = current.get(&c.name) else {
                actions.push(add);
                changed.push(format!("column {} added", c.name));
                continue;
            };
            if (have.type_oid, have.typmod) != (want.type_oid, want.typmod) {
                // The shadow is empty, but Postgres still wants a cast between the types.
                actions.push(AlterTableAction::DropColumn { if_exists: false, column: c.name.clone(), cascade: false });
                actions.push(add);
                changed.push(format!("column {} type", c.name));
                continue;
            }
            if have.not_null != want.not_null {
                let column = c.name.clone();
                actions.push(if want.not_null {
                    AlterTableAction::SetNotNull { column }
                } else {
                    AlterTableAction::DropNotNull { column }
                });
                changed.push(format!("column {} NOT NULL", c.name));
            }
            if have.default != want.default {
                let column = c.name.clone();
                actions.push(match &c.default {
                    Some(default) => AlterTableAction::SetDefault { column, default: default.clone() },
                    None => AlterTableAction::DropDefault { column },
                });
                changed.push(format!("column {} default", c.name));
            }
            let stored = stored_options.get(&have.attnum).cloned().unwrap_or_default();
            let items = option_diff(&stored, &option_pairs(&c.options));
            if !items.is_empty() {
                changed.push(format!("column {} options {}", c.name, names(&items)));
                actions.push(AlterTableAction::ColumnOptions { column: c.name.clone(), options: items });
            }
        }
        if !actions.is_empty() || server_changed {
            let table = QualifiedName { schema: Some(schema.to_string()), name: t.table.name.clone() };
            self.ddl(Ddl::AlterForeignTable(AlterForeignTable { if_exists: false, table, actions })).await?;
        }
        Ok(changed)
    }

    /// A relation's columns by name, as Postgres resolved them.
    async fn resolved_columns(&self, oid: u32) -> Result<BTreeMap<String, ResolvedColumn>, CatalogError> {
        let rows = query(
            self.session,
            "SELECT a.attname::text, a.attnum::text, a.atttypid::oid::text, a.atttypmod::text, a.attnotnull::text, \
             pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attribute a \
             LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[Some(oid.to_string())],
        )
        .await?;
        let mut out = BTreeMap::new();
        for row in &rows {
            let column = ResolvedColumn {
                attnum: number(row, 1)?,
                type_oid: number(row, 2)?,
                typmod: number(row, 3)?,
                not_null: flag(row, 4),
                default: opt(row, 5),
            };
            out.insert(text(row, 0)?, column);
        }
        Ok(out)
    }

    /// The declared columns as Postgres resolves them, through a temporary table created with the
    /// same column definitions as the shadow would be: types, modifiers and defaults compare
    /// exactly, however the file spells them (`int` and `integer`).
    async fn probe(&self, t: &CreateForeignTable) -> Result<BTreeMap<String, ResolvedColumn>, CatalogError> {
        let s = self.session;
        let columns: Vec<String> = t.columns.iter().map(column_sql).collect();
        execute(s, &format!("CREATE TEMPORARY TABLE {PROBE} ({}) ON COMMIT DROP", columns.join(", ")), &[]).await?;
        let rows = query(s, &format!("SELECT 'pg_temp.{PROBE}'::regclass::oid::text"), &[]).await?;
        let oid = number(rows.first().ok_or_else(|| CatalogError::Internal("probe table not found".into()))?, 0)?;
        let resolved = self.resolved_columns(oid).await;
        execute(s, &format!("DROP TABLE pg_temp.{PROBE}"), &[]).await?;
        resolved
    }

    // ---- drops ----

    /// Drops the objects created from the files that they no longer declare: tables, then user
    /// mappings, then servers. A server that objects created with DDL still depend on is not
    /// dropped: Postgres's 2BP01 names them.
    async fn drop_undeclared(
        &mut self,
        servers: &HashSet<String>,
        mappings: &HashSet<(String, u32)>,
        tables: &HashSet<u32>,
    ) -> Result<(), DeclareError> {
        let s = self.session;
        let rows = query(
            s,
            "SELECT c.oid::text, n.nspname::text, c.relname::text, d.source FROM pgfed.declared_tables d \
             JOIN pg_catalog.pg_class c ON c.oid = d.shadow::oid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ORDER BY 2, 3",
            &[],
        )
        .await
        .map_err(|e| general("reading the declared foreign tables", e))?;
        for row in rows {
            let oid: u32 = number(&row, 0).map_err(|e| general("reading the declared foreign tables", e))?;
            if tables.contains(&oid) {
                continue;
            }
            let (schema, name, source) = (opt(&row, 1), opt(&row, 2).unwrap_or_default(), opt(&row, 3));
            let what = format!("foreign table {}.{name}", schema.clone().unwrap_or_default());
            let table = QualifiedName { schema, name };
            let drop = DropForeignTable { if_exists: false, tables: vec![table], cascade: false };
            self.ddl(Ddl::DropForeignTable(drop))
                .await
                .map_err(|e| failed(previously(&source.unwrap_or_default()), &format!("dropping {what}"), e))?;
            self.changes.dropped.push(what);
        }
        let rows = query(
            s,
            "SELECT d.server, d.umuser::oid::text, \
             CASE WHEN d.umuser::oid = 0 THEN 'public' ELSE pg_catalog.pg_get_userbyid(d.umuser::oid)::text END, \
             d.source FROM pgfed.declared_user_mappings d ORDER BY 1, 3",
            &[],
        )
        .await
        .map_err(|e| general("reading the declared user mappings", e))?;
        for row in rows {
            let server = opt(&row, 0).unwrap_or_default();
            let oid: u32 = number(&row, 1).map_err(|e| general("reading the declared user mappings", e))?;
            if mappings.contains(&(server.clone(), oid)) {
                continue;
            }
            let role = opt(&row, 2).unwrap_or_default();
            let what = format!("user mapping for {role} on server \"{server}\"");
            let user = if oid == 0 { RoleSpec::Public } else { RoleSpec::Named(role) };
            let drop = DropUserMapping { if_exists: false, user, server };
            self.ddl(Ddl::DropUserMapping(drop))
                .await
                .map_err(|e| failed(previously(&opt(&row, 3).unwrap_or_default()), &format!("dropping {what}"), e))?;
            self.changes.dropped.push(what);
        }
        let rows = query(s, "SELECT d.name, d.source FROM pgfed.declared_servers d ORDER BY 1", &[])
            .await
            .map_err(|e| general("reading the declared servers", e))?;
        for row in rows {
            let name = opt(&row, 0).unwrap_or_default();
            if servers.contains(&name) {
                continue;
            }
            let what = format!("server \"{name}\"");
            let drop = DropServer { if_exists: false, names: vec![name], cascade: false };
            self.ddl(Ddl::DropServer(drop))
                .await
                .map_err(|e| failed(previously(&opt(&row, 1).unwrap_or_default()), &format!("dropping {what}"), e))?;
            self.changes.dropped.push(what);
        }
        Ok(())
    }
}

/// A declared object that exists but was created with DDL (or by another tool).
fn not_declared(what: &str, drop: &str) -> CatalogError {
    CatalogError::DuplicateObject(format!(
        "{what} already exists and was not created from the catalog files; pgfed does not take over objects created \
         with DDL: {drop} it first, or remove it from the files"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_diffs_set_add_and_drop_by_name() {
        let pairs = |p: &[(&str, &str)]| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let items =
            option_diff(&pairs(&[("a", "1"), ("b", "2"), ("c", "3")]), &pairs(&[("c", "3"), ("a", "9"), ("d", "4")]));
        let got: Vec<(OptionAction, &str, Option<&str>)> =
            items.iter().map(|i| (i.action, i.name.as_str(), i.value.as_deref())).collect();
        assert_eq!(
            got,
            [(OptionAction::Set, "a", Some("9")), (OptionAction::Add, "d", Some("4")), (OptionAction::Drop, "b", None)]
        );
        assert!(option_diff(&pairs(&[("x", "1")]), &pairs(&[("x", "1")])).is_empty());
    }
}
