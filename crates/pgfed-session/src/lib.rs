//! The client's own upstream Postgres session, as pgfed's catalog and engine use it.
//!
//! A federated statement reads ordinary Postgres tables, checks privileges and runs catalog DDL
//! **in the client's upstream session**, so it sees the client's transaction (uncommitted rows,
//! snapshot), runs with the client's privileges, and Postgres's errors reach the client unchanged.
//! [`UpstreamSession`] is that view: extended-protocol queries with text parameters whose rows
//! stream back in chunks of raw `DataRow` bodies (decoding is the caller's business: the engine
//! decodes binary rows into Arrow, the catalog reads text). Several queries may be open at once
//! (named portals on the one connection, fetched in turns), which is what a DataFusion plan
//! reading two local tables needs. [`Connection`] is the production implementation: a cloneable
//! handle whose requests a [`Driver`] serves on the session's upstream connection while the proxy
//! runs a federated statement. [`TokioPgSession`] (feature `tokio-postgres`) implements the same
//! trait over a connection of its own, for tests and pgfed's service connection.

mod conn;
mod row;
#[cfg(feature = "tokio-postgres")]
mod tokio_pg;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

pub use conn::{Connection, Driver, Finished, channel};
pub use row::DataRow;
#[cfg(feature = "tokio-postgres")]
pub use tokio_pg::TokioPgSession;

/// Result column format, as in Bind's result format codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    Text,
    Binary,
}

/// One column of a result, from RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    pub name: String,
    /// `pg_type.oid`.
    pub type_oid: u32,
    /// `atttypmod` (-1: none).
    pub typmod: i32,
    /// Table OID and column number when the column is a plain table column (else 0).
    pub table_oid: u32,
    pub column_id: i16,
}

/// What went wrong talking to the upstream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Postgres answered with an ErrorResponse. `frame` is the whole message as Postgres sent it,
    /// for forwarding to the client unchanged.
    #[error("{severity}: {message} (SQLSTATE {code})")]
    Server { frame: Bytes, severity: String, code: String, message: String },
    #[error("upstream connection: {0}")]
    Io(String),
    #[error("upstream protocol: {0}")]
    Protocol(String),
    /// The session ended (the statement finished, or the connection closed).
    #[error("upstream session closed")]
    Closed,
}

impl UpstreamError {
    /// The SQLSTATE: Postgres's own for server errors, 08006 (connection failure) or 08P01
    /// (protocol violation) for the others.
    pub fn sqlstate(&self) -> &str {
        match self {
            UpstreamError::Server { code, .. } => code,
            UpstreamError::Io(_) | UpstreamError::Closed => pgfed_wire::sqlstate::CONNECTION_FAILURE,
            UpstreamError::Protocol(_) => pgfed_wire::sqlstate::PROTOCOL_VIOLATION,
        }
    }
}

/// Chunks of rows as the upstream sends them; ends after the last row. Dropping it closes the
/// portal (the rest of the rows are never fetched).
pub type RowChunks = BoxStream<'static, Result<Vec<DataRow>, UpstreamError>>;

/// A running query: its columns and its rows.
pub struct Rows {
    pub fields: Vec<FieldInfo>,
    pub chunks: RowChunks,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows").field("fields", &self.fields).finish_non_exhaustive()
    }
}

impl Rows {
    /// Reads every row as text (the query must have been run with [`ResultFormat::Text`]).
    pub async fn all_text(mut self) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
        use futures_util::StreamExt;
        let mut out = Vec::new();
        while let Some(chunk) = self.chunks.next().await {
            for row in chunk? {
                out.push(row.text_values()?);
            }
        }
        Ok(out)
    }
}

/// The client's upstream session as a federated statement sees it.
///
/// Everything runs inside whatever transaction the client has open; outside one, all queries of
/// one federated statement share one implicit transaction, which ends (commits, or rolls back
/// after an error) when the statement ends. After a server error, the transaction is aborted and
/// every later query fails with that error again, as Postgres would.
#[async_trait]
pub trait UpstreamSession: Send + Sync {
    /// Runs one statement. `params` are text-format values (`None` is NULL) for `$1..$n`, whose
    /// types Postgres infers (write casts, `$1::int8`, where inference needs help).
    async fn query(&self, sql: &str, params: &[Option<String>], format: ResultFormat) -> Result<Rows, UpstreamError>;

    /// Runs one statement for its effect; returns the command tag (`INSERT 0 1`, `CREATE TABLE`).
    async fn execute(&self, sql: &str, params: &[Option<String>]) -> Result<String, UpstreamError>;

    /// Runs a statement and returns its rows as text.
    async fn query_text(
        &self,
        sql: &str,
        params: &[Option<String>],
    ) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
        self.query(sql, params, ResultFormat::Text).await?.all_text().await
    }
}
