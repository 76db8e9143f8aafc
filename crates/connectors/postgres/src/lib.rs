//! `FOREIGN DATA WRAPPER postgres`: scans a table of a remote PostgreSQL server, with
//! postgres_fdw's option names. See docs/connectors/postgres.md for the options, the type
//! mapping and the exact pushdown matrix.
//!
//! The remote SELECT is built from always-quoted identifiers and `$n` placeholders; every qual
//! value and the LIMIT travel as binary bind parameters ([`quote_ident`], `sql.rs`). Rows stream
//! from `query_raw` and are converted to Arrow batches of up to [`BATCH_ROWS`] rows as they
//! arrive. One connection per scan for now (pooling is the next step).

mod decode;
mod sql;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use arrow_schema::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use pgfed_connector_sdk::{
    BatchStream, ConnectorError, ForeignTable, OpenRequest, OptionLevel, OptionSpec, Options, Pushdown, Qual,
    ScanContext, ScanRequest, SortKey, Wrapper,
};

pub use sql::quote_ident;
use sql::{Column, TableDef, qual_param_type};

/// Rows per record batch, at most.
pub const BATCH_ROWS: usize = 8192;

const OPTIONS: &[OptionSpec] = &[
    OptionSpec::required(OptionLevel::Server, "host", "remote host name, IP address or Unix socket directory"),
    OptionSpec::optional(OptionLevel::Server, "port", "remote port (default 5432)"),
    OptionSpec::optional(OptionLevel::Server, "dbname", "remote database (default: the user name)"),
    OptionSpec::optional(OptionLevel::Server, "sslmode", "disable (the default; TLS is not implemented yet)"),
    OptionSpec::optional(OptionLevel::Server, "connect_timeout", "seconds to wait for a connection (default 10)"),
    OptionSpec::optional(
        OptionLevel::Server,
        "same_collation",
        "true if the remote text collation equals the local one: text ordering and LIKE are pushed down",
    ),
    OptionSpec::optional(OptionLevel::UserMapping, "user", "remote user (default: the session's user)"),
    OptionSpec::secret(OptionLevel::UserMapping, "password", "remote password"),
    OptionSpec::optional(OptionLevel::Table, "schema_name", "remote schema (default public)"),
    OptionSpec::required(OptionLevel::Table, "table_name", "remote table or view"),
    OptionSpec::optional(OptionLevel::Column, "column_name", "remote column name (default: the local name)"),
];

/// The `postgres` foreign data wrapper.
#[derive(Debug, Default, Clone, Copy)]
pub struct PostgresWrapper;

/// Where and how to connect; `Debug` never shows the password.
#[derive(Clone)]
pub(crate) struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub dbname: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// How errors name the server (never with credentials).
    pub(crate) fn source_name(&self) -> String {
        format!("remote postgres server {}:{}", self.host, self.port)
    }
}

fn parse_server(server: &Options, user_mapping: &Options) -> Result<(ServerConfig, bool), ConnectorError> {
    let host = server
        .get("host")
        .ok_or(ConnectorError::MissingOption { name: "host".into(), level: OptionLevel::Server.as_str() })?;
    let port = server.parse::<u16>("port", "a port number")?.unwrap_or(5432);
    if let Some(mode) = server.get("sslmode")
        && mode != "disable"
    {
        return Err(ConnectorError::InvalidOptionValue {
            name: "sslmode".into(),
            reason: "only disable is supported (TLS to the remote server is not implemented yet)".into(),
        });
    }
    let timeout = server.parse::<u64>("connect_timeout", "a whole number of seconds")?.unwrap_or(10);
    let same_collation = server.flag("same_collation")?.unwrap_or(false);
    let config = ServerConfig {
        host: host.to_string(),
        port,
        dbname: server.get("dbname").map(str::to_string),
        user: user_mapping.get("user").map(str::to_string),
        password: user_mapping.get("password").map(str::to_string),
        connect_timeout: Duration::from_secs(timeout.max(1)),
    };
    Ok((config, same_collation))
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

#[async_trait]
impl Wrapper for PostgresWrapper {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn check(&self, request: &OpenRequest) -> Result<(), ConnectorError> {
        let (_, same_collation) = parse_server(&request.server, &request.user_mapping)?;
        table_def(request, same_collation).map(drop)
    }

    /// Validates the options; does not contact the server (the scan connects).
    async fn open(&self, request: OpenRequest) -> Result<Arc<dyn ForeignTable>, ConnectorError> {
        let (server, same_collation) = parse_server(&request.server, &request.user_mapping)?;
        let def = table_def(&request, same_collation)?;
        let fields: Vec<Field> = request.columns.iter().map(|(f, _)| f.clone()).collect();
        Ok(Arc::new(PostgresTable { server, def, schema: Arc::new(Schema::new(fields)) }))
    }
}

/// One remote table, open for one statement.
#[derive(Debug)]
pub struct PostgresTable {
    server: ServerConfig,
    def: TableDef,
    schema: SchemaRef,
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
        let table = format!("{}.{}", quote_ident(&self.def.schema), quote_ident(&self.def.table));
        stream::scan(&self.server, table, query, ctx).await
    }
}
