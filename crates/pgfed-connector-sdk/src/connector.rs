//! The traits a connector implements.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::{Field, SchemaRef};
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::{ConnectorError, Estimate, OptionSpec, Options, Pushdown, Qual, ScanRequest, SortKey, SqlQuery, SqlSource};

/// Record batches as the source produces them. Dropping the stream must stop the remote work
/// (close the connection, abort the request, kill the query).
pub type BatchStream = futures_core::stream::BoxStream<'static, Result<RecordBatch, ConnectorError>>;

/// A foreign data wrapper: the `<name>` in `CREATE SERVER s FOREIGN DATA WRAPPER <name>`.
#[async_trait]
pub trait Wrapper: Send + Sync + 'static {
    /// The wrapper's name in DDL, e.g. `postgres`, `clickhouse`, `http`.
    fn name(&self) -> &'static str;

    /// Every option at every level; DDL is validated against these (see
    /// [`crate::validate_options`]) before anything is stored.
    fn options(&self) -> &'static [OptionSpec];

    /// Checks option values that need more than a name check (a URL that must parse, two options
    /// that exclude each other). Called at DDL time; must not contact the source.
    fn check(&self, _request: &OpenRequest) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Opens a table for one statement. May contact the source (to learn the remote schema, for
    /// example); `columns` are the declared ones, with their options.
    async fn open(&self, request: OpenRequest) -> Result<Arc<dyn ForeignTable>, ConnectorError>;

    /// `IMPORT FOREIGN SCHEMA remote [LIMIT TO | EXCEPT (...)] FROM SERVER s INTO local`.
    async fn import_schema(&self, _request: ImportRequest) -> Result<Vec<ImportedTable>, ConnectorError> {
        Err(ConnectorError::NotSupported("IMPORT FOREIGN SCHEMA".into()))
    }

    /// [`Wrapper::import_schema`] with the statement's context: the session user (the default
    /// remote user where a user mapping may omit it), cancel and deadline, and notices (what the
    /// import skipped, and why). Callers should prefer this one; the default ignores `ctx`.
    async fn import_schema_in(
        &self,
        request: ImportRequest,
        _ctx: &ScanContext,
    ) -> Result<Vec<ImportedTable>, ConnectorError> {
        self.import_schema(request).await
    }

    /// An instance for one client session, for wrappers that keep per-session state (remote
    /// connections and transactions, as postgres_fdw keeps one connection per backend and user
    /// mapping). The engine calls it once per client session and uses the result for every
    /// statement of that session; `None` (the default) means the shared instance serves all.
    fn for_session(&self) -> Option<Arc<dyn Wrapper>> {
        None
    }
}

/// Everything the catalog knows about one foreign table, validated.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    /// `schema.table` as the client names it, for messages.
    pub table_name: String,
    pub server: Options,
    /// The user mapping of the session's user (or PUBLIC); empty if none.
    pub user_mapping: Options,
    pub table: Options,
    /// Declared columns: name and Arrow type from the declared Postgres type, nullability from
    /// NOT NULL, and the column's options.
    pub columns: Vec<(Field, Options)>,
}

#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub server: Options,
    pub user_mapping: Options,
    pub remote_schema: String,
    /// `LIMIT TO (...)`: only these tables.
    pub limit_to: Option<Vec<String>>,
    /// `EXCEPT (...)`: all but these.
    pub except: Vec<String>,
}

/// A remote table to be created by IMPORT FOREIGN SCHEMA.
#[derive(Debug, Clone)]
pub struct ImportedTable {
    pub name: String,
    pub columns: Vec<ImportedColumn>,
    /// Table options to store (e.g. the remote name when it differs).
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct ImportedColumn {
    pub name: String,
    /// A Postgres type name as it would appear in CREATE FOREIGN TABLE (`bigint`, `numeric(20,0)`).
    pub pg_type: String,
    pub not_null: bool,
    pub options: Vec<(String, String)>,
}

/// One foreign table, open for one statement.
#[async_trait]
pub trait ForeignTable: Send + Sync {
    /// The columns, as declared.
    fn schema(&self) -> SchemaRef;

    /// Whether the source applies `qual` (see [`Pushdown`]). Claim `Exact` only where the
    /// source's semantics provably equal Postgres's; when unsure, `Inexact`.
    fn pushdown(&self, _qual: &Qual) -> Pushdown {
        Pushdown::Unsupported
    }

    /// Whether the source can return rows in this order (then pgfed does not sort).
    fn accepts_sort(&self, _keys: &[SortKey]) -> bool {
        false
    }

    /// Size guess for a scan, for join planning. `None`: unknown.
    fn estimate(&self, _request: &ScanRequest) -> Option<Estimate> {
        None
    }

    /// What EXPLAIN shows for this scan: the remote query or the requests, secrets removed.
    fn explain(&self, request: &ScanRequest) -> Vec<String> {
        let mut lines = vec![format!("columns: {}", request.columns.join(", "))];
        if !request.quals.is_empty() {
            let quals: Vec<String> = request.quals.iter().map(ToString::to_string).collect();
            lines.push(format!("quals: {}", quals.join(" AND ")));
        }
        if !request.sort.is_empty() {
            let keys: Vec<String> = request.sort.iter().map(ToString::to_string).collect();
            lines.push(format!("sort: {}", keys.join(", ")));
        }
        if let Some(limit) = request.limit {
            lines.push(format!("limit: {limit}"));
        }
        lines
    }

    /// Starts the scan. Batches must have exactly `request.columns`, in that order, with the
    /// declared types. Watch `ctx.cancel` and `ctx.deadline`.
    async fn scan(&self, request: ScanRequest, ctx: ScanContext) -> Result<BatchStream, ConnectorError>;

    /// The SQL capability: `Some` if the source runs SQL and the engine may push whole subtrees
    /// (joins with tables of the same [`SqlSource::identity`], aggregates, ORDER BY, LIMIT) to
    /// it through [`ForeignTable::query`]. `None` (the default): scans only.
    fn sql_source(&self) -> Option<SqlSource> {
        None
    }

    /// Runs a query the engine generated for this table's source (see [`SqlQuery`] for the
    /// placeholder contract), on the connection and transaction a scan of this table would use.
    /// Batches must have `query.schema`. Watch `ctx.cancel` and `ctx.deadline` as in a scan.
    async fn query(&self, _query: SqlQuery, _ctx: ScanContext) -> Result<BatchStream, ConnectorError> {
        Err(ConnectorError::NotSupported("SQL queries".into()))
    }

    /// The column that identifies a row for UPDATE and DELETE, if the table is writable.
    fn row_id_column(&self) -> Option<&str> {
        None
    }

    /// `INSERT`: `rows` has the declared columns. `returning` names the columns to give back.
    async fn insert(
        &self,
        _rows: RecordBatch,
        _returning: &[String],
        _ctx: &ScanContext,
    ) -> Result<WriteResult, ConnectorError> {
        Err(ConnectorError::NotSupported("INSERT".into()))
    }

    /// `UPDATE`: `rows` has the row-id column and the new values of the assigned columns.
    async fn update(
        &self,
        _rows: RecordBatch,
        _returning: &[String],
        _ctx: &ScanContext,
    ) -> Result<WriteResult, ConnectorError> {
        Err(ConnectorError::NotSupported("UPDATE".into()))
    }

    /// `DELETE`: `row_ids` has the row-id column.
    async fn delete(
        &self,
        _row_ids: RecordBatch,
        _returning: &[String],
        _ctx: &ScanContext,
    ) -> Result<WriteResult, ConnectorError> {
        Err(ConnectorError::NotSupported("DELETE".into()))
    }

    /// Transaction hooks, tied to the client's transaction: `begin` before the first use of the
    /// table in a transaction, `pre_commit` before the upstream COMMIT (an error aborts it),
    /// `commit` after it, `rollback` on ROLLBACK or error.
    async fn begin(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn pre_commit(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn commit(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn rollback(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Rows affected by a write, and the RETURNING rows if asked for.
#[derive(Debug)]
pub struct WriteResult {
    pub rows_affected: u64,
    pub returning: Option<RecordBatch>,
}

/// Per-statement context handed to scans and writes.
#[derive(Clone)]
pub struct ScanContext {
    /// Fires on the client's cancel request, statement_timeout or disconnect.
    pub cancel: CancellationToken,
    /// statement_timeout, as an instant.
    pub deadline: Option<Instant>,
    /// Sends notices to the client (Multicorn's `log_to_postgres`).
    pub notices: NoticeSink,
    /// The session's user, as authenticated by the upstream.
    pub user: String,
}

impl std::fmt::Debug for ScanContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanContext")
            .field("deadline", &self.deadline)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Severity of a notice; the client's `client_min_messages` decides what it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeLevel {
    Debug,
    Info,
    Notice,
    Warning,
}

/// A message for the client that does not end the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub level: NoticeLevel,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

/// Where a connector sends notices; the engine delivers them to the client in order.
pub type NoticeSink = Arc<dyn Fn(Notice) + Send + Sync>;
