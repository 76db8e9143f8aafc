//! `FOREIGN DATA WRAPPER clickhouse`: ClickHouse tables read over HTTP with the `clickhouse`
//! crate, their RowBinary rows decoded into Arrow batches as they stream in, with quals, sort
//! keys and limits pushed down where ClickHouse's semantics equal Postgres's, whole subtrees run
//! through the SQL capability (`SqlDialect::ClickHouse`), INSERT as RowBinary, UPDATE and DELETE
//! as `ALTER TABLE` mutations, IMPORT FOREIGN SCHEMA from `system.columns`, and cancel by
//! `KILL QUERY` on the query id pgfed sets. docs/connectors/clickhouse.md has the options, the
//! type mapping, the exact pushdown matrix and the write semantics.
//!
//! Remote SQL is built by the quoting layer in `sql.rs` (backtick identifiers, escaped string
//! literals, typed literal calls), never from the qual's display form. Every generated query
//! selects a marker byte first in each row, so the text an old server appends to a streaming
//! body when it fails mid-query is recognised as an error, never decoded as rows. The SDK's
//! `ConnectorError` has no variant with a free SQLSTATE, so ClickHouse exceptions become
//! `Remote` (HV000) with the ClickHouse code and the SQLSTATE pgfed maps it to in `code`
//! (`client::Exception::sqlstate`), except authentication failures (HV00N) and cancels (57014).

mod client;
mod decode;
mod import;
mod sql;
mod stream;
mod types;
mod write;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use pgfed_connector_sdk::{
    BatchStream, ConnectorError, Estimate, ForeignTable, ImportRequest, ImportedTable, OpenRequest, OptionLevel,
    OptionSpec, Options, Pushdown, Qual, ScanContext, ScanRequest, SortKey, SqlDialect, SqlQuery, SqlSource, Wrapper,
    WriteResult,
};

use client::{Connection, ServerConfig};
use sql::{Column, TableDef};
pub use sql::{quote_ident, quote_str};
pub use stream::BATCH_ROWS;
use types::ChType;

/// Rows per INSERT request, at most (one request per batch the engine hands over otherwise).
const DEFAULT_BATCH_SIZE: usize = 100_000;

/// How long the remote column types learned at open are reused (per server, user and table).
const COLUMNS_TTL: Duration = Duration::from_secs(10);

const OPTIONS: &[OptionSpec] = &[
    OptionSpec::required(OptionLevel::Server, "url", "HTTP(S) endpoint, e.g. http://127.0.0.1:8123"),
    OptionSpec::optional(OptionLevel::Server, "database", "default database (default: the user's default)"),
    OptionSpec::optional(OptionLevel::Server, "ca_file", "PEM file of trusted roots for https (default: the system's)"),
    OptionSpec::optional(OptionLevel::Server, "compression", "none (the default) or lz4"),
    OptionSpec::optional(OptionLevel::Server, "connect_timeout", "seconds to wait for a connection (default 10)"),
    OptionSpec::optional(
        OptionLevel::Server,
        "query_timeout",
        "seconds a query may run on the server (max_execution_time)",
    ),
    OptionSpec::optional(OptionLevel::Server, "settings", "ClickHouse settings for every query: k=v, comma-separated"),
    OptionSpec::optional(OptionLevel::UserMapping, "user", "ClickHouse user (default: the server's default user)"),
    OptionSpec::secret(OptionLevel::UserMapping, "password", "ClickHouse password"),
    OptionSpec::optional(OptionLevel::Table, "table", "remote table (default: the foreign table's name)"),
    OptionSpec::optional(OptionLevel::Table, "database", "remote database (overrides the server's)"),
    OptionSpec::optional(OptionLevel::Table, "key", "the column that identifies a row for UPDATE and DELETE"),
    OptionSpec::optional(OptionLevel::Table, "batch_size", "rows per INSERT request (default 100000)"),
    OptionSpec::optional(OptionLevel::Column, "column_name", "remote column name (default: the local name)"),
];

fn invalid(name: &str, reason: &str) -> ConnectorError {
    ConnectorError::InvalidOptionValue { name: name.into(), reason: reason.into() }
}

/// `k=v,k2=v2`: names are ClickHouse setting names (letters, digits, `_`), values anything but
/// a comma.
fn parse_settings(text: &str) -> Result<Vec<(String, String)>, ConnectorError> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| invalid("settings", "expected name=value pairs"))?;
            let k = k.trim();
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(invalid("settings", "a setting name may hold letters, digits and _ only"));
            }
            if matches!(k, "query_id" | "database" | "default_format" | "user" | "password" | "readonly") {
                return Err(invalid(
                    "settings",
                    "query_id, database, default_format, user, password and readonly are set by pgfed",
                ));
            }
            Ok((k.to_string(), v.trim().to_string()))
        })
        .collect()
}

fn parse_server(server: &Options, user_mapping: &Options) -> Result<ServerConfig, ConnectorError> {
    let url = server.get("url").ok_or(ConnectorError::MissingOption { name: "url".into(), level: "server" })?;
    let parsed = url::Url::parse(url).map_err(|_| invalid("url", "expected an http:// or https:// URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(invalid("url", "expected an http:// or https:// URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("url", "credentials belong in the user mapping (user, password), not in the URL"));
    }
    if parsed.query().is_some() {
        return Err(invalid("url", "use the database and settings options instead of URL parameters"));
    }
    let lz4 = match server.get("compression").map(str::to_ascii_lowercase).as_deref() {
        None | Some("none") => false,
        Some("lz4") => true,
        Some(_) => return Err(invalid("compression", "expected none or lz4")),
    };
    let seconds = |name: &str| -> Result<Option<Duration>, ConnectorError> {
        match server.parse::<u64>(name, "a whole number of seconds")? {
            Some(0) => Err(invalid(name, "must be positive")),
            s => Ok(s.map(Duration::from_secs)),
        }
    };
    Ok(ServerConfig {
        url: url.trim_end_matches('/').to_string(),
        database: server.get("database").map(str::to_string),
        ca_file: server.get("ca_file").map(str::to_string),
        lz4,
        connect_timeout: seconds("connect_timeout")?.unwrap_or(Duration::from_secs(10)),
        query_timeout: seconds("query_timeout")?,
        settings: parse_settings(server.get("settings").unwrap_or(""))?,
        user: user_mapping.get("user").map(str::to_string),
        password: user_mapping.get("password").map(str::to_string),
    })
}

/// The remote table's name and database, from the options (the table name defaults to the
/// local name's last part).
fn remote_table(request: &OpenRequest, server: &ServerConfig) -> (Option<String>, String) {
    let table = request.table.get("table").map(str::to_string).unwrap_or_else(|| {
        request.table_name.rsplit('.').next().unwrap_or(&request.table_name).trim_matches('"').to_string()
    });
    let database = request.table.get("database").map(str::to_string).or_else(|| server.database.clone());
    (database, table)
}

fn check_request(request: &OpenRequest) -> Result<(), ConnectorError> {
    parse_server(&request.server, &request.user_mapping)?;
    if let Some(key) = request.table.get("key")
        && !request.columns.iter().any(|(f, _)| f.name() == key)
    {
        return Err(invalid("key", "it must name a declared column"));
    }
    match request.table.parse::<usize>("batch_size", "a positive whole number")? {
        Some(0) => Err(invalid("batch_size", "must be positive")),
        _ => Ok(()),
    }
}

type ColumnsKey = (String, Option<String>, String);

/// Remote column types per (connection, database, table), for [`COLUMNS_TTL`].
type RemoteColumns = Arc<Vec<(String, String)>>;

static REMOTE_COLUMNS: LazyLock<Mutex<HashMap<ColumnsKey, (Instant, RemoteColumns)>>> = LazyLock::new(Default::default);

/// `(name, type)` of the remote table's columns, from `system.columns`.
async fn remote_columns(
    conn: &Connection,
    database: &Option<String>,
    table: &str,
) -> Result<Arc<Vec<(String, String)>>, ConnectorError> {
    let key = (conn.config.identity(), database.clone(), table.to_string());
    if let Ok(map) = REMOTE_COLUMNS.lock()
        && let Some((at, cols)) = map.get(&key)
        && at.elapsed() < COLUMNS_TTL
    {
        return Ok(cols.clone());
    }
    let db = match database {
        Some(d) => quote_str(d),
        None => "currentDatabase()".into(),
    };
    let deadline = Instant::now() + conn.config.connect_timeout + Duration::from_secs(30);
    let text = conn
        .text(
            &format!("SELECT name, type FROM system.columns WHERE database = {db} AND table = {}", quote_str(table)),
            Some(deadline),
        )
        .await?;
    let cols: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, t)| (import::unescape_tsv(n), import::unescape_tsv(t)))
        .collect();
    if cols.is_empty() {
        let shown = match database {
            Some(d) => format!("{}.{}", quote_ident(d), quote_ident(table)),
            None => quote_ident(table),
        };
        return Err(ConnectorError::TableNotFound(shown));
    }
    let cols = Arc::new(cols);
    if let Ok(mut map) = REMOTE_COLUMNS.lock() {
        map.insert(key, (Instant::now(), cols.clone()));
    }
    Ok(cols)
}

/// Opens a table: checks every declared column against the remote type (HV005 for a missing
/// column, HV004 for a type that cannot hold every remote value).
async fn open_table(request: OpenRequest) -> Result<Arc<dyn ForeignTable>, ConnectorError> {
    check_request(&request)?;
    let server = parse_server(&request.server, &request.user_mapping)?;
    let conn = client::connection(&server)?;
    let info = conn.info().await?.clone();
    let (database, table) = remote_table(&request, &server);
    let remote = remote_columns(&conn, &database, &table).await?;
    let mut columns = Vec::new();
    for (field, options) in &request.columns {
        let remote_name = options.get("column_name").unwrap_or(field.name()).to_string();
        let (_, type_name) = remote
            .iter()
            .find(|(n, _)| *n == remote_name)
            .ok_or_else(|| ConnectorError::ColumnNotFound(remote_name.clone()))?;
        let ch = ChType::parse(type_name)
            .map_err(|reason| ConnectorError::DataType { column: field.name().clone(), reason })?;
        if !ch.fits(field.data_type(), true) {
            return Err(ConnectorError::DataType {
                column: field.name().clone(),
                reason: format!(
                    "declared type {} cannot hold every value of remote type {type_name}{}",
                    field.data_type(),
                    ch.import_type().map(|(t, _)| format!(" (declare it {t})")).unwrap_or_default()
                ),
            });
        }
        let tz = match ch.base() {
            ChType::DateTime(Some(tz)) | ChType::DateTime64 { tz: Some(tz), .. } => tz.clone(),
            _ => info.timezone.clone(),
        };
        columns.push(Column {
            name: field.name().clone(),
            remote: remote_name,
            data_type: field.data_type().clone(),
            ch,
            tz,
        });
    }
    let fields: Vec<Field> = request.columns.iter().map(|(f, _)| f.clone()).collect();
    let batch_size =
        request.table.parse::<usize>("batch_size", "a positive whole number")?.unwrap_or(DEFAULT_BATCH_SIZE);
    Ok(Arc::new(ClickHouseTable {
        def: TableDef { database, table, columns },
        schema: Arc::new(Schema::new(fields)),
        conn,
        info,
        key: request.table.get("key").map(str::to_string),
        batch_size,
    }))
}

/// The `clickhouse` foreign data wrapper. Connections are HTTP keep-alive pools shared by every
/// session that uses the same server options and credentials.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClickHouseWrapper;

#[async_trait]
impl Wrapper for ClickHouseWrapper {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn check(&self, request: &OpenRequest) -> Result<(), ConnectorError> {
        check_request(request)
    }

    /// Contacts the server: its version and time zone (once per connection) and the table's
    /// column types (cached for a few seconds).
    async fn open(&self, request: OpenRequest) -> Result<Arc<dyn ForeignTable>, ConnectorError> {
        open_table(request).await
    }

    async fn import_schema(&self, request: ImportRequest) -> Result<Vec<ImportedTable>, ConnectorError> {
        import::import(request, None).await
    }

    async fn import_schema_in(
        &self,
        request: ImportRequest,
        ctx: &ScanContext,
    ) -> Result<Vec<ImportedTable>, ConnectorError> {
        import::import(request, Some(ctx)).await
    }
}

/// One ClickHouse table, open for one statement.
pub struct ClickHouseTable {
    def: TableDef,
    schema: SchemaRef,
    conn: Arc<Connection>,
    info: client::ServerInfo,
    key: Option<String>,
    batch_size: usize,
}

impl std::fmt::Debug for ClickHouseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseTable").field("def", &self.def).field("conn", &self.conn).finish_non_exhaustive()
    }
}

impl ClickHouseTable {
    /// The server's version, as `SELECT version()` gave it at open.
    pub fn server_version(&self) -> &str {
        &self.info.version
    }

    fn decoder(&self, columns: &[String]) -> Result<decode::RowDecoder, ConnectorError> {
        let mut fields = Vec::new();
        let mut types = Vec::new();
        for name in columns {
            let c = self.def.column(name)?;
            fields
                .push(self.schema.field_with_name(name).map_err(|e| ConnectorError::Internal(e.to_string()))?.clone());
            types.push(c.ch.clone());
        }
        decode::RowDecoder::new(Arc::new(Schema::new(fields)), types, &self.info.timezone)
            .map_err(|e| ConnectorError::DataType { column: e.column, reason: e.reason })
    }

    pub(crate) async fn scan_rows(
        &self,
        request: &ScanRequest,
        ctx: ScanContext,
    ) -> Result<BatchStream, ConnectorError> {
        let sql = self.def.select(request)?;
        stream::run(self.conn.clone(), &sql, self.decoder(&request.columns)?, ctx)
    }
}

#[async_trait]
impl ForeignTable for ClickHouseTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// `Exact` where the translation in `sql.rs` gives Postgres's answer for every row;
    /// otherwise not pushed (an inexact filter that could drop rows would be a wrong answer).
    fn pushdown(&self, qual: &Qual) -> Pushdown {
        match self.def.qual_sql(qual) {
            Some(_) => Pushdown::Exact,
            None => Pushdown::Unsupported,
        }
    }

    fn accepts_sort(&self, keys: &[SortKey]) -> bool {
        self.def.accepts_sort(keys)
    }

    /// From `system.parts` (active parts' rows), only when it was read at open: planning must
    /// not wait on the network.
    fn estimate(&self, _request: &ScanRequest) -> Option<Estimate> {
        None
    }

    fn explain(&self, request: &ScanRequest) -> Vec<String> {
        match self.def.select(request) {
            Ok(sql) => vec![format!("ClickHouse SQL: {sql}"), format!("ClickHouse server: {}", self.info.version)],
            Err(e) => vec![format!("ClickHouse SQL: unavailable ({e})")],
        }
    }

    async fn scan(&self, request: ScanRequest, ctx: ScanContext) -> Result<BatchStream, ConnectorError> {
        self.scan_rows(&request, ctx).await
    }

    /// Tables with equal server options and credentials share an identity; ClickHouse compares
    /// text by bytes, which is not the client's collation, so `text_ordering` is false.
    fn sql_source(&self) -> Option<SqlSource> {
        Some(SqlSource {
            identity: self.conn.config.identity(),
            dialect: SqlDialect::ClickHouse,
            relation: (self.def.database.clone(), self.def.table.clone()),
            columns: self.def.columns.iter().map(|c| c.remote.clone()).collect(),
            text_ordering: false,
        })
    }

    /// Runs the engine's ClickHouse SQL (values inlined, no parameters). Its result types come
    /// from `DESCRIBE TABLE (<sql>)` (18.16 has no RowBinaryWithNamesAndTypes), and each value
    /// is converted to `query.schema`'s type with range checks; rows stream like a scan's.
    async fn query(&self, query: SqlQuery, ctx: ScanContext) -> Result<BatchStream, ConnectorError> {
        if !query.params.is_empty() {
            return Err(ConnectorError::NotSupported("ClickHouse queries with parameters".into()));
        }
        let describe = format!("DESCRIBE TABLE ({})", query.sql);
        let text = self.conn.watch(&client::query_id(), &ctx, self.conn.text(&describe, ctx.deadline)).await?;
        let types: Vec<ChType> = text
            .lines()
            .filter_map(|l| l.split('\t').nth(1))
            .map(|t| ChType::parse(&import::unescape_tsv(t)))
            .collect::<Result<_, _>>()
            .map_err(|reason| ConnectorError::DataType { column: "?column?".into(), reason })?;
        if types.len() != query.schema.fields().len() {
            return Err(ConnectorError::Internal(format!(
                "the generated query returns {} columns, {} expected",
                types.len(),
                query.schema.fields().len()
            )));
        }
        for (f, t) in query.schema.fields().iter().zip(&types) {
            if !t.fits(f.data_type(), false) {
                return Err(ConnectorError::DataType {
                    column: f.name().clone(),
                    reason: format!("ClickHouse computes {}, which cannot be read as {}", t.name(), f.data_type()),
                });
            }
        }
        let decoder = decode::RowDecoder::new(query.schema.clone(), types, &self.info.timezone)
            .map_err(|e| ConnectorError::DataType { column: e.column, reason: e.reason })?;
        let sql = format!("SELECT {}, * FROM ({})", sql::ROW_MARKER, query.sql);
        stream::run(self.conn.clone(), &sql, decoder, ctx)
    }

    fn row_id_column(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// One `INSERT ... FORMAT RowBinary` request per `batch_size` rows; not transactional (see
    /// docs): rows of earlier requests stay when a later one fails.
    async fn insert(
        &self,
        rows: RecordBatch,
        returning: &[String],
        ctx: &ScanContext,
    ) -> Result<WriteResult, ConnectorError> {
        write::insert(self, rows, returning, ctx).await
    }

    /// `ALTER TABLE ... UPDATE ... WHERE key IN (...)`, waited for.
    async fn update(
        &self,
        rows: RecordBatch,
        returning: &[String],
        ctx: &ScanContext,
    ) -> Result<WriteResult, ConnectorError> {
        write::update(self, rows, returning, ctx).await
    }

    /// `ALTER TABLE ... DELETE WHERE key IN (...)`, waited for.
    async fn delete(
        &self,
        row_ids: RecordBatch,
        returning: &[String],
        ctx: &ScanContext,
    ) -> Result<WriteResult, ConnectorError> {
        write::delete(self, row_ids, returning, ctx).await
    }
}
