//! The optional SQL capability: a table whose source runs SQL says so with
//! [`crate::ForeignTable::sql_source`], and the engine may then send it whole subtrees of a
//! statement (filters, projections, joins of tables of the same source, aggregates, ORDER BY,
//! LIMIT) as one query, unparsed in the source's [`SqlDialect`] and run with
//! [`crate::ForeignTable::query`].

use arrow_schema::SchemaRef;

use crate::Value;

/// The SQL a source speaks, which decides how the engine unparses a pushed subtree and which
/// operators it may contain. New dialects are added as connectors need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SqlDialect {
    /// PostgreSQL: quoted identifiers, `CAST($n AS type)` placeholders bound as parameters,
    /// `NULLS FIRST/LAST` kept. Semantics equal pgfed's reference except text collation
    /// ([`SqlSource::text_ordering`]).
    Postgres,
    /// ClickHouse (reserved for the ClickHouse connector; the engine does not push to it yet).
    ClickHouse,
}

/// What the engine needs to push SQL to a table's source.
///
/// `SELECT c.name, sum(o.amount) FROM orders o JOIN customers c ON c.id = o.customer_id
/// GROUP BY c.name`, with both tables on one server and user mapping (equal [`identity`]), is
/// sent as one query naming [`relation`] and [`columns`] instead of the local names.
///
/// [`identity`]: SqlSource::identity
/// [`relation`]: SqlSource::relation
/// [`columns`]: SqlSource::columns
#[derive(Clone, PartialEq, Eq)]
pub struct SqlSource {
    /// Two tables whose identities are equal can be read by one query on one connection (same
    /// server options and same remote user and credentials). Compared, never displayed: it may
    /// be derived from secrets.
    pub identity: String,
    pub dialect: SqlDialect,
    /// The remote relation: `(schema, name)`; `schema` `None` means the source's default.
    pub relation: (Option<String>, String),
    /// The remote name of each declared column, in declared order (`column_name` option).
    pub columns: Vec<String>,
    /// The source orders and compares text exactly as the client's Postgres does (same
    /// collation): text `ORDER BY`, `<`/`>`, min/max, LIKE and lower/upper may be pushed.
    pub text_ordering: bool,
}

impl std::fmt::Debug for SqlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSource")
            .field("dialect", &self.dialect)
            .field("relation", &self.relation)
            .field("columns", &self.columns)
            .field("text_ordering", &self.text_ordering)
            .finish_non_exhaustive()
    }
}

/// A generated query for [`crate::ForeignTable::query`].
///
/// For [`SqlDialect::Postgres`], every value of the statement is a parameter: `$n` (1-based)
/// appears only as `CAST($n AS <type>)`, where the type is that of `params[n - 1]`'s column
/// (`BIGINT`, `INTEGER`, `SMALLINT`, `DOUBLE PRECISION`, `DECIMAL(p, s)` bound as text inside a
/// `VARCHAR` cast, `VARCHAR`, `BOOLEAN`, `DATE`, `TIMESTAMP`, `TIMESTAMP WITH TIME ZONE`):
/// the connector binds each value in the type the server resolves for its placeholder.
/// Nothing from a value is ever in `sql`.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlQuery {
    pub sql: String,
    pub params: Vec<Value>,
    /// The result columns, by position: names are the engine's, types are what the batches must
    /// have (decode the remote values into these types, or fail).
    pub schema: SchemaRef,
}
