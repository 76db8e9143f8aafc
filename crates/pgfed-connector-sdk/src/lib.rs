//! The contract between pgfed's federation engine and the connectors that reach foreign data
//! (Postgres, ClickHouse, HTTP APIs, Kafka, Python wrappers).
//!
//! A connector is a [`Wrapper`] (what `CREATE SERVER ... FOREIGN DATA WRAPPER <name>` names): it
//! declares its options, validated at DDL time, and opens [`ForeignTable`]s. A table says, per
//! [`Qual`], whether it applies it exactly, inexactly (pgfed re-checks) or not at all, then scans
//! with the requested columns, quals, sort keys and limit, returning Arrow record batches as a
//! stream. Writes (keyed by a row-id column), transaction hooks tied to the client's transaction,
//! notices to the client, size estimates, IMPORT FOREIGN SCHEMA and an SQL capability (whole
//! subtrees pushed as one generated query, [`SqlSource`]) are optional. Modelled on
//! Multicorn's `ForeignDataWrapper` and Supabase Wrappers, with async streaming and typed errors
//! that carry Postgres's FDW SQLSTATEs. docs/connectors.md explains how to write one.

mod connector;
mod error;
mod options;
mod pushdown;
mod sql;

pub use connector::{
    BatchStream, ForeignTable, ImportRequest, ImportedColumn, ImportedTable, Notice, NoticeLevel, NoticeSink,
    OpenRequest, ScanContext, Wrapper, WriteResult,
};
pub use error::ConnectorError;
pub use options::{OptionLevel, OptionSpec, Options, validate_options};
pub use pushdown::{Estimate, NullsOrder, Operator, Pushdown, Qual, QualValue, ScanRequest, SortKey, Value};
pub use sql::{SqlDialect, SqlQuery, SqlSource};
