//! The hook through which pgfed answers statements itself.
//!
//! The proxy owns the protocol (which frames belong to pgfed, the extended-protocol state of
//! pgfed's statements and portals, encoding rows, transaction status); a [`Federation`] owns the
//! meaning (catalog DDL, planning and running federated queries). The binary wires the real one
//! (`pgfed-federation`: catalog, DataFusion engine, connectors); the proxy never links DataFusion.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use pgfed_encode::{ColumnSpec, TextSettings};
use pgfed_session::{Connection, UpstreamError};
use pgfed_wire::{PgError, sqlstate};
use tokio_util::sync::CancellationToken;

/// What a federated statement may use of its session while it runs.
#[derive(Debug, Clone)]
pub struct UnitContext {
    /// The client's upstream session (its transaction, its privileges).
    pub session: Connection,
    /// Transaction status when the unit started: `I`, `T` or `E`.
    pub status: u8,
    /// Fires on the client's CancelRequest or disconnect.
    pub cancel: CancellationToken,
    /// The user and database from the client's startup message.
    pub user: String,
    pub database: String,
    /// Notices for the client (NOTICE, WARNING, INFO severities): the proxy sends them ahead of
    /// the output it flushes next. Session-wide, so a statement prepared earlier can still use it.
    pub notices: NoticeQueue,
}

/// Where notices for the client wait; see [`UnitContext::notices`].
pub type NoticeQueue = Arc<std::sync::Mutex<Vec<PgError>>>;

/// Why a statement could not be answered.
#[derive(Debug)]
pub enum FedError {
    /// pgfed's own error, with its SQLSTATE.
    Pg(PgError),
    /// An ErrorResponse from the upstream, forwarded byte for byte.
    Upstream(Bytes),
    /// On closer look the statement touches no foreign data (the router's name match was a local
    /// table of the same name, say): the upstream should answer it unchanged. Only valid from
    /// [`Federation::prepare`].
    NotMine,
}

impl From<PgError> for FedError {
    fn from(e: PgError) -> Self {
        FedError::Pg(e)
    }
}

impl From<UpstreamError> for FedError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Server { frame, .. } => FedError::Upstream(frame),
            other => FedError::Pg(PgError::error(sqlstate::CONNECTION_FAILURE, other.to_string())),
        }
    }
}

/// The result columns of a statement: the Arrow schema its batches have and how each column is
/// described to the client.
#[derive(Debug, Clone)]
pub struct ResultColumns {
    pub schema: SchemaRef,
    /// One per column (see [`pgfed_encode::BatchEncoder::new`]).
    pub specs: Vec<ColumnSpec>,
}

/// One parameter value from Bind.
#[derive(Debug, Clone)]
pub struct Param {
    /// `None` is NULL.
    pub value: Option<Bytes>,
    pub binary: bool,
}

/// A running statement.
pub struct Execution {
    /// `None`: the statement returns no rows (DDL, a write without RETURNING).
    pub columns: Option<ResultColumns>,
    /// How values are written as text for this session (DateStyle, TimeZone, ...).
    pub settings: TextSettings,
    pub rows: BoxStream<'static, Result<RecordBatch, FedError>>,
    /// The CommandComplete tag, given the number of rows sent.
    pub tag: CommandTag,
}

impl std::fmt::Debug for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution").field("columns", &self.columns).field("tag", &self.tag).finish_non_exhaustive()
    }
}

/// The CommandComplete tag of a statement.
#[derive(Debug, Clone)]
pub enum CommandTag {
    /// `SELECT n`, with n the rows sent.
    Select,
    /// A fixed tag (`CREATE SERVER`, `INSERT 0 5`).
    Fixed(String),
    /// One tag per statement of a simple Query holding several statements without rows (a DDL
    /// script); each becomes its own CommandComplete, as Postgres sends them.
    Many(Vec<String>),
}

impl CommandTag {
    pub fn render(&self, rows: u64) -> String {
        match self {
            CommandTag::Select => format!("SELECT {rows}"),
            CommandTag::Fixed(t) => t.clone(),
            CommandTag::Many(tags) => tags.last().cloned().unwrap_or_default(),
        }
    }

    /// Every CommandComplete tag to send.
    pub fn all(&self, rows: u64) -> Vec<String> {
        match self {
            CommandTag::Many(tags) => tags.clone(),
            other => vec![other.render(rows)],
        }
    }
}

/// A statement pgfed planned (from Parse, or a simple Query).
#[async_trait]
pub trait Statement: Send + Sync {
    /// Parameter type OIDs for ParameterDescription.
    fn param_types(&self) -> Vec<u32>;

    /// Result columns for RowDescription; `None` for NoData.
    fn columns(&self) -> Option<ResultColumns>;

    /// Runs the statement with these parameter values.
    async fn execute(&self, params: Vec<Param>, ctx: &UnitContext) -> Result<Execution, FedError>;
}

/// Answers the statements that are pgfed's; see the module doc. One per server.
pub trait Federation: Send + Sync + 'static {
    /// Cheap and synchronous: whether this statement text may be pgfed's beyond what the router
    /// knows (SQL/MED DDL). Called for Query/Parse texts the router sends upstream. A claimed
    /// statement that turns out not to be pgfed's is handed back ([`FedError::NotMine`]).
    fn claims(&self, sql: &str) -> bool;

    /// State for one client session, made when it first needs pgfed.
    fn session(&self) -> Box<dyn FederatedSession>;

    /// Whether a starting session should load the catalog for everyone ([`Self::load_catalog`]):
    /// true for a federation without a service connection of its own whose catalog is missing or
    /// stale. Cheap.
    fn wants_catalog(&self) -> bool {
        false
    }

    /// Loads the catalog through a session's upstream connection (before its first statement).
    /// Failures (a role that may not read the catalog) are the federation's to log.
    fn load_catalog(&self, _session: Connection) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// One client session's side of the federation.
#[async_trait]
pub trait FederatedSession: Send + Sync {
    /// Whether the client's transaction block holds remote work that its COMMIT or ROLLBACK must
    /// settle: while true, the proxy hands transaction-control statements to [`Self::prepare`].
    /// Cheap and synchronous.
    fn in_remote_transaction(&self) -> bool {
        false
    }

    /// The session ends (whatever the transaction status): undo remote work still open.
    async fn abandon(&self) {}

    /// Whether a statement the router would send upstream is this session's (a FETCH or CLOSE of
    /// one of its cursors). Cheap and synchronous.
    fn claims_statement(&self, _sql: &str) -> bool {
        false
    }

    /// The client's transaction ended (ReadyForQuery `I`): cursors and the like are gone.
    fn transaction_ended(&self) {}

    /// The result columns of one of this session's SQL cursors: in Postgres a cursor is also a
    /// protocol portal, and clients (psycopg) Describe it by name.
    fn cursor_columns(&self, _name: &str) -> Option<ResultColumns> {
        None
    }

    /// Plans one statement. `param_types` are Parse's (0: unspecified).
    async fn prepare(&self, sql: &str, param_types: &[u32], ctx: &UnitContext) -> Result<Arc<dyn Statement>, FedError>;
}

/// Whether a statement text starts with a transaction-control keyword that ends a block
/// (COMMIT, END, ROLLBACK, ABORT, PREPARE TRANSACTION). Such statements are allowed in an aborted
/// transaction.
pub fn ends_transaction(sql: &[u8]) -> bool {
    let text = String::from_utf8_lossy(sql);
    let first = text
        .trim_start_matches(|c: char| c.is_whitespace() || c == ';')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(first.as_str(), "commit" | "end" | "rollback" | "abort" | "prepare")
}
