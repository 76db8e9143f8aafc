//! `FOREIGN DATA WRAPPER postgres`: a table of a remote PostgreSQL server, with postgres_fdw's
//! option names: scans with pushdown, INSERT/UPDATE/DELETE with RETURNING, IMPORT FOREIGN
//! SCHEMA, and remote transactions tied to the client's. See docs/connectors/postgres.md for the
//! options, the type mapping, the pushdown matrix and the write and transaction semantics.
//!
//! Remote SQL is built from always-quoted identifiers and `$n` placeholders; every value travels
//! as a bind parameter ([`quote_ident`], `sql.rs`, `write.rs`). Rows stream from the server and
//! become Arrow batches of up to [`BATCH_ROWS`] rows as they arrive (`stream.rs`). Connections
//! are pooled per server and remote user, and pinned to the client's transaction between the
//! `begin` and `pre_commit`/`rollback` hooks (`conn.rs`). [`PostgresWrapper`] is the shared
//! instance; [`Wrapper::for_session`] gives each client session its own connections, as
//! postgres_fdw keeps one per backend and user mapping.

mod conn;
mod decode;
mod import;
mod sql;
mod stream;
mod tls;
mod write;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use pgfed_connector_sdk::{
    BatchStream, ConnectorError, ForeignTable, ImportRequest, ImportedTable, Notice, NoticeLevel, OpenRequest,
    OptionLevel, OptionSpec, Options, Pushdown, Qual, ScanContext, ScanRequest, SortKey, SqlDialect, SqlQuery,
    SqlSource, Wrapper, WriteResult,
};

use conn::{Pool, ServerConfig, Session};
pub use sql::quote_ident;
use sql::{Column, RemoteQuery, TableDef, qual_param_type};

/// Rows per record batch, at most.
pub const BATCH_ROWS: usize = 8192;

/// Rows per FETCH when a scan runs inside the client's transaction (postgres_fdw's
/// `fetch_size`; its default is 100, pgfed's batches are larger).
const DEFAULT_FETCH_SIZE: u32 = 1000;

/// Rows per remote INSERT (postgres_fdw's `batch_size`, whose default is 1: one row per
/// statement); the 65535-parameter limit caps it further.
const DEFAULT_BATCH_SIZE: u32 = 1000;

const OPTIONS: &[OptionSpec] = &[
    OptionSpec::required(OptionLevel::Server, "host", "remote host name, IP address or Unix socket directory"),
    OptionSpec::optional(OptionLevel::Server, "port", "remote port (default 5432)"),
    OptionSpec::optional(OptionLevel::Server, "dbname", "remote database (default: the user name)"),
    OptionSpec::optional(
        OptionLevel::Server,
        "sslmode",
        "disable (the default), prefer, require, verify-ca or verify-full, as libpq reads them",
    ),
    OptionSpec::optional(
        OptionLevel::Server,
        "sslrootcert",
        "PEM file of trusted root certificates for verify-ca/verify-full (default, or 'system': the system's)",
    ),
    OptionSpec::optional(OptionLevel::Server, "connect_timeout", "seconds to wait for a connection (default 10)"),
    OptionSpec::optional(
        OptionLevel::Server,
        "same_collation",
        "true if the remote text collation equals the local one: text ordering and LIKE are pushed down",
    ),
    OptionSpec::optional(OptionLevel::Server, "fetch_size", "rows per FETCH inside a transaction (default 1000)"),
    OptionSpec::optional(OptionLevel::UserMapping, "user", "remote user (default: the session's user)"),
    OptionSpec::secret(OptionLevel::UserMapping, "password", "remote password"),
    OptionSpec::optional(OptionLevel::Table, "schema_name", "remote schema (default public)"),
    OptionSpec::required(OptionLevel::Table, "table_name", "remote table or view"),
    OptionSpec::optional(
        OptionLevel::Table,
        "fetch_size",
        "rows per FETCH inside a transaction (overrides the server's)",
    ),
    OptionSpec::optional(
        OptionLevel::Table,
        "key",
        "the column that identifies a row for UPDATE and DELETE (default: the remote primary key)",
    ),
    OptionSpec::optional(OptionLevel::Server, "updatable", "false refuses INSERT, UPDATE and DELETE (default true)"),
    OptionSpec::optional(OptionLevel::Table, "updatable", "overrides the server's updatable"),
    OptionSpec::optional(OptionLevel::Server, "batch_size", "rows per remote INSERT statement (default 1000)"),
    OptionSpec::optional(OptionLevel::Table, "batch_size", "overrides the server's batch_size"),
    OptionSpec::optional(OptionLevel::Column, "column_name", "remote column name (default: the local name)"),
];

/// Idle connections of the shared instance, reused across statements and sessions that
/// connect with the same server options, user and password.
static SHARED_POOL: LazyLock<Arc<Pool>> = LazyLock::new(|| Arc::new(Pool::default()));

/// The `postgres` foreign data wrapper, shared instance: a table opened through it keeps its
/// own transaction state; idle connections go to a process-wide pool.
#[derive(Debug, Default, Clone, Copy)]
pub struct PostgresWrapper;

/// The `postgres` foreign data wrapper for one client session ([`Wrapper::for_session`]): its
/// connections and remote transactions belong to the session and close with it.
pub struct PostgresSessionWrapper {
    session: Arc<Session>,
}

impl std::fmt::Debug for PostgresSessionWrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSessionWrapper").finish_non_exhaustive()
    }
}

/// Server-level settings that are not about connecting.
#[derive(Debug, Clone, Copy)]
struct ServerSettings {
    same_collation: bool,
    fetch_size: u32,
    batch_size: u32,
    updatable: bool,
}

fn parse_server(server: &Options, user_mapping: &Options) -> Result<(ServerConfig, ServerSettings), ConnectorError> {
    let host = server
        .get("host")
        .ok_or(ConnectorError::MissingOption { name: "host".into(), level: OptionLevel::Server.as_str() })?;
    let port = server.parse::<u16>("port", "a port number")?.unwrap_or(5432);
    let tls = tls::parse(server)?;
    let timeout = server.parse::<u64>("connect_timeout", "a whole number of seconds")?.unwrap_or(10);
    let same_collation = server.flag("same_collation")?.unwrap_or(false);
    let fetch_size = fetch_size(server)?.unwrap_or(DEFAULT_FETCH_SIZE);
    let batch_size = batch_size(server)?.unwrap_or(DEFAULT_BATCH_SIZE);
    let updatable = server.flag("updatable")?.unwrap_or(true);
    let config = ServerConfig {
        host: host.to_string(),
        port,
        dbname: server.get("dbname").map(str::to_string),
        user: user_mapping.get("user").map(str::to_string),
        password: user_mapping.get("password").map(str::to_string),
        connect_timeout: Duration::from_secs(timeout.max(1)),
        tls,
    };
    Ok((config, ServerSettings { same_collation, fetch_size, batch_size, updatable }))
}

fn positive(options: &Options, name: &str) -> Result<Option<u32>, ConnectorError> {
    match options.parse::<u32>(name, "a positive whole number")? {
        Some(0) => Err(ConnectorError::InvalidOptionValue { name: name.into(), reason: "must be positive".into() }),
        n => Ok(n),
    }
}

fn fetch_size(options: &Options) -> Result<Option<u32>, ConnectorError> {
    positive(options, "fetch_size")
}

fn batch_size(options: &Options) -> Result<Option<u32>, ConnectorError> {
    positive(options, "batch_size")
}

/// The table's write settings: `(updatable, batch_size, key option)`.
fn table_write_settings(
    request: &OpenRequest,
    def: &TableDef,
    settings: ServerSettings,
) -> Result<(bool, u32, Option<String>), ConnectorError> {
    let updatable = request.table.flag("updatable")?.unwrap_or(settings.updatable);
    let batch_size = batch_size(&request.table)?.unwrap_or(settings.batch_size);
    let key = match request.table.get("key") {
        Some(name) if def.column(name).is_err() => {
            return Err(ConnectorError::InvalidOptionValue {
                name: "key".into(),
                reason: "it must name a declared column".into(),
            });
        }
        key => key.map(str::to_string),
    };
    Ok((updatable, batch_size, key))
}

fn table_def(request: &OpenRequest, same_collation: bool) -> Result<TableDef, ConnectorError> {
    let table = request
        .table
        .get("table_name")
        .ok_or(ConnectorError::MissingOption { name: "table_name".into(), level: OptionLevel::Table.as_str() })?;
    let columns = request
        .columns
        .iter()
        .map(|(field, options)| Column {
            name: field.name().clone(),
            remote: options.get("column_name").unwrap_or(field.name()).to_string(),
            data_type: field.data_type().clone(),
            nullable: field.is_nullable(),
        })
        .collect();
    Ok(TableDef {
        schema: request.table.get("schema_name").unwrap_or("public").to_string(),
        table: table.to_string(),
        columns,
        same_collation,
    })
}

/// What both wrapper types share; `session` is `None` for the shared instance.
///
/// Without a `key` option, the row-id column is the declared column mapped to the remote primary
/// key (or another single-column unique key on a NOT NULL column), which takes one catalog query
/// (cached for a minute) when the user mapping names the remote user; a session-user mapping
/// needs `key`.
async fn open_table(
    request: OpenRequest,
    session: Option<Arc<Session>>,
) -> Result<Arc<dyn ForeignTable>, ConnectorError> {
    let (server, settings) = parse_server(&request.server, &request.user_mapping)?;
    let def = table_def(&request, settings.same_collation)?;
    let fetch_size = fetch_size(&request.table)?.unwrap_or(settings.fetch_size);
    let (updatable, batch_size, key) = table_write_settings(&request, &def, settings)?;
    let fields: Vec<Field> = request.columns.iter().map(|(f, _)| f.clone()).collect();
    let session = session.unwrap_or_else(|| Arc::new(Session::new(SHARED_POOL.clone())));
    // A failed lookup does not fail the open: a scan reports the same failure in its place, and
    // UPDATE or DELETE report it instead of asking for `key`.
    let (row_id, row_id_error) = match (key, &server.user) {
        (Some(key), _) => (Some(key), None),
        (None, Some(user)) if updatable => {
            let never = tokio_util::sync::CancellationToken::new();
            match import::unique_keys(&session.pool, &server.key(user), &def.schema, &def.table, &never).await {
                Ok(keys) => (
                    keys.iter().find_map(|k| def.columns.iter().find(|c| &c.remote == k).map(|c| c.name.clone())),
                    None,
                ),
                Err(e) => (None, Some(e)),
            }
        }
        _ => (None, None),
    };
    Ok(Arc::new(PostgresTable {
        server,
        def,
        schema: Arc::new(Schema::new(fields)),
        session,
        fetch_size,
        batch_size,
        updatable,
        row_id,
        row_id_error: std::sync::Mutex::new(row_id_error),
    }))
}

fn check_request(request: &OpenRequest) -> Result<(), ConnectorError> {
    let (_, settings) = parse_server(&request.server, &request.user_mapping)?;
    fetch_size(&request.table)?;
    let def = table_def(request, settings.same_collation)?;
    table_write_settings(request, &def, settings).map(drop)
}

/// IMPORT FOREIGN SCHEMA; `ctx` gives the default remote user and takes the notices. Without
/// one, a column that would be left out is an error rather than a silent omission.
async fn import_schema(
    pool: &Pool,
    request: ImportRequest,
    ctx: Option<&ScanContext>,
) -> Result<Vec<ImportedTable>, ConnectorError> {
    let (server, _) = parse_server(&request.server, &request.user_mapping)?;
    let user = match (&server.user, ctx) {
        (Some(user), _) => user.clone(),
        (None, Some(ctx)) => ctx.user.clone(),
        (None, None) => {
            return Err(ConnectorError::MissingOption {
                name: "user".into(),
                level: OptionLevel::UserMapping.as_str(),
            });
        }
    };
    let key = server.key(&user);
    let never = tokio_util::sync::CancellationToken::new();
    let (cancel, deadline) = ctx.map_or((&never, None), |c| (&c.cancel, c.deadline));
    let (tables, skipped) = import::import(pool, &key, &request, cancel, deadline).await?;
    let Some(ctx) = ctx else {
        if let Some(s) = skipped.first() {
            return Err(ConnectorError::DataType {
                column: format!("{}.{}", s.table, s.column),
                reason: format!(
                    "remote type {} cannot be imported; leave the table out with EXCEPT or declare it by hand",
                    s.remote_type
                ),
            });
        }
        return Ok(tables);
    };
    let mut by_table: Vec<(&str, Vec<String>)> = Vec::new();
    for s in &skipped {
        let entry = format!("\"{}\" ({})", s.column, s.remote_type);
        match by_table.last_mut() {
            Some((t, cols)) if *t == s.table => cols.push(entry),
            _ => by_table.push((&s.table, vec![entry])),
        }
    }
    for (table, columns) in by_table {
        (ctx.notices)(Notice {
            level: NoticeLevel::Warning,
            message: format!(
                "foreign table \"{table}\" imported without {} column(s) of unsupported types",
                columns.len()
            ),
            detail: Some(format!("Skipped: {}.", columns.join(", "))),
            hint: Some("pgfed cannot hold these remote types; cast them in a remote view to import them.".into()),
        });
    }
    Ok(tables)
}

#[async_trait]
impl Wrapper for PostgresWrapper {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn check(&self, request: &OpenRequest) -> Result<(), ConnectorError> {
        check_request(request)
    }

    /// Validates the options; contacts the server only to find the row-id column (`open_table`).
    async fn open(&self, request: OpenRequest) -> Result<Arc<dyn ForeignTable>, ConnectorError> {
        open_table(request, None).await
    }

    async fn import_schema(&self, request: ImportRequest) -> Result<Vec<ImportedTable>, ConnectorError> {
        import_schema(&SHARED_POOL, request, None).await
    }

    async fn import_schema_in(
        &self,
        request: ImportRequest,
        ctx: &ScanContext,
    ) -> Result<Vec<ImportedTable>, ConnectorError> {
        import_schema(&SHARED_POOL, request, Some(ctx)).await
    }

    fn for_session(&self) -> Option<Arc<dyn Wrapper>> {
        Some(Arc::new(PostgresSessionWrapper { session: Arc::new(Session::new(Arc::new(Pool::default()))) }))
    }
}

#[async_trait]
impl Wrapper for PostgresSessionWrapper {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn check(&self, request: &OpenRequest) -> Result<(), ConnectorError> {
        check_request(request)
    }

    async fn open(&self, request: OpenRequest) -> Result<Arc<dyn ForeignTable>, ConnectorError> {
        open_table(request, Some(self.session.clone())).await
    }

    async fn import_schema(&self, request: ImportRequest) -> Result<Vec<ImportedTable>, ConnectorError> {
        import_schema(&self.session.pool, request, None).await
    }

    async fn import_schema_in(
        &self,
        request: ImportRequest,
        ctx: &ScanContext,
    ) -> Result<Vec<ImportedTable>, ConnectorError> {
        import_schema(&self.session.pool, request, Some(ctx)).await
    }

    fn for_session(&self) -> Option<Arc<dyn Wrapper>> {
        PostgresWrapper.for_session()
    }
}

/// One remote table, open for one statement.
pub struct PostgresTable {
    server: ServerConfig,
    def: TableDef,
    schema: SchemaRef,
    session: Arc<Session>,
    fetch_size: u32,
    batch_size: u32,
    updatable: bool,
    /// The local column that identifies a remote row (`key`, or the detected unique key).
    row_id: Option<String>,
    /// Why the remote key could not be looked up, for the first UPDATE or DELETE.
    row_id_error: std::sync::Mutex<Option<ConnectorError>>,
}

impl std::fmt::Debug for PostgresTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTable").field("server", &self.server).field("def", &self.def).finish_non_exhaustive()
    }
}

impl PostgresTable {
    fn remote_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.def.schema), quote_ident(&self.def.table))
    }

    fn errors(&self) -> conn::Errors {
        let mut errors = self.server.errors(self.remote_name());
        errors.relation = Some(self.def.table.clone());
        errors
    }

    /// `updatable 'false'` refuses writes, as postgres_fdw does (it uses 55000; the SDK's
    /// closest is 0A000).
    fn check_updatable(&self, what: &str) -> Result<(), ConnectorError> {
        if self.updatable {
            Ok(())
        } else {
            Err(ConnectorError::NotSupported(format!("{what} on {} (updatable is false)", self.remote_name())))
        }
    }

    /// The row-id column for UPDATE and DELETE. Without one the fix is the table option `key`,
    /// so the error names it (HV00J, "option \"key\" is required for foreign table").
    fn row_id(&self) -> Result<&str, ConnectorError> {
        if let Some(key) = self.row_id.as_deref() {
            return Ok(key);
        }
        if let Some(e) = self.row_id_error.lock().ok().and_then(|mut e| e.take()) {
            return Err(e);
        }
        Err(ConnectorError::MissingOption { name: "key".into(), level: OptionLevel::Table.as_str() })
    }

    async fn write(
        &self,
        statements: Vec<write::WriteStatement>,
        returning: &[String],
        ctx: &ScanContext,
    ) -> Result<WriteResult, ConnectorError> {
        let empty_returning = if returning.is_empty() {
            None
        } else {
            Some(returning.iter().map(|n| self.def.column(n).cloned()).collect::<Result<Vec<_>, _>>()?)
        };
        let key = self.server.key(&ctx.user);
        let errors = self.errors();
        write::run(&self.session, &key, &errors, statements, empty_returning, &ctx.cancel, ctx.deadline).await
    }
}

#[async_trait]
impl ForeignTable for PostgresTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// `Exact` where the remote evaluates the qual as the local server would; see the matrix in
    /// docs/connectors/postgres.md. Text ordering and LIKE depend on the collation, so they are
    /// pushed only with `same_collation 'true'`; `Inexact` would not be safe either, since a
    /// different collation can drop rows as well as add them.
    fn pushdown(&self, qual: &Qual) -> Pushdown {
        match self.def.column(&qual.column) {
            Ok(column) if qual_param_type(column, qual, self.def.same_collation).is_ok() => Pushdown::Exact,
            _ => Pushdown::Unsupported,
        }
    }

    fn accepts_sort(&self, keys: &[SortKey]) -> bool {
        self.def.accepts_sort(keys)
    }

    /// The remote query with `$n` placeholders; values are never shown.
    fn explain(&self, request: &ScanRequest) -> Vec<String> {
        match self.def.build(request) {
            Ok(query) => vec![format!("Remote SQL: {}", query.sql)],
            Err(e) => vec![format!("Remote SQL: unavailable ({e})")],
        }
    }

    async fn scan(&self, request: ScanRequest, ctx: ScanContext) -> Result<BatchStream, ConnectorError> {
        let query = self.def.build(&request)?;
        let key = self.server.key(&ctx.user);
        let errors = self.errors();
        stream::scan(self.session.clone(), key, errors, query, self.fetch_size, ctx).await
    }

    /// Tables with equal server options, remote user and password share connections and the
    /// remote transaction, so one query may join them. Text ordering is exact only with
    /// `same_collation 'true'`.
    fn sql_source(&self) -> Option<SqlSource> {
        Some(SqlSource {
            identity: format!("{:?}\u{0}{:?}\u{0}{:?}", self.server, self.server.connect_timeout, self.server.password),
            dialect: SqlDialect::Postgres,
            relation: (Some(self.def.schema.clone()), self.def.table.clone()),
            columns: self.def.columns.iter().map(|c| c.remote.clone()).collect(),
            text_ordering: self.def.same_collation,
        })
    }

    /// Runs as a scan does (pooled or transaction-pinned connection, cursor inside a
    /// transaction, cancel and deadline), with values bound in the types the query's casts give.
    async fn query(&self, query: SqlQuery, ctx: ScanContext) -> Result<BatchStream, ConnectorError> {
        let key = self.server.key(&ctx.user);
        let errors = self.errors();
        stream::scan(self.session.clone(), key, errors, RemoteQuery::generated(query), self.fetch_size, ctx).await
    }

    fn row_id_column(&self) -> Option<&str> {
        self.row_id.as_deref()
    }

    /// Multi-row INSERTs of `batch_size` rows; only the batch's columns are sent, so remote
    /// defaults fill the rest.
    async fn insert(
        &self,
        rows: RecordBatch,
        returning: &[String],
        ctx: &ScanContext,
    ) -> Result<WriteResult, ConnectorError> {
        self.check_updatable("INSERT")?;
        let statements = self.def.insert(&rows, returning, self.batch_size as usize)?;
        self.write(statements, returning, ctx).await
    }

    async fn update(
        &self,
        rows: RecordBatch,
        returning: &[String],
        ctx: &ScanContext,
    ) -> Result<WriteResult, ConnectorError> {
        self.check_updatable("UPDATE")?;
        let statement = self.def.update(self.row_id()?, &rows, returning)?;
        self.write(vec![statement], returning, ctx).await
    }

    async fn delete(
        &self,
        row_ids: RecordBatch,
        returning: &[String],
        ctx: &ScanContext,
    ) -> Result<WriteResult, ConnectorError> {
        self.check_updatable("DELETE")?;
        let statement = self.def.delete(self.row_id()?, &row_ids, returning)?;
        self.write(vec![statement], returning, ctx).await
    }

    /// The remote transaction opens at the first use of each connection after this.
    async fn begin(&self) -> Result<(), ConnectorError> {
        self.session.begin().await;
        Ok(())
    }

    /// Commits the remote transactions (all of the session's, so a second table's call finds
    /// nothing left); a failure aborts the client's transaction.
    async fn pre_commit(&self) -> Result<(), ConnectorError> {
        let table = self.remote_name();
        self.session.pre_commit(|key| key.server.errors(table.clone())).await
    }

    async fn commit(&self) -> Result<(), ConnectorError> {
        self.session.commit().await;
        Ok(())
    }

    async fn rollback(&self) -> Result<(), ConnectorError> {
        self.session.rollback().await;
        Ok(())
    }
}
