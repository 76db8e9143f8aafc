//! pgfed's SQL/MED catalog.
//!
//! Users define foreign data with Postgres's own DDL sent through pgfed (`CREATE SERVER ... FOREIGN
//! DATA WRAPPER postgres`, `CREATE USER MAPPING`, `CREATE FOREIGN TABLE`, `IMPORT FOREIGN
//! SCHEMA`). This crate parses those statements, validates options against the connector's
//! declared options, and stores the result **in the upstream database**, in the client's own
//! session and transaction, so the catalog is durable, transactional, backed up with the database
//! and shared by every pgfed instance in front of it. Each foreign table also gets a shadow table
//! (see docs/design/catalog.md), which is what makes psql `\d`, JDBC metadata, SQLAlchemy
//! inspectors and privileges work unchanged. [`Snapshot`] is the in-memory view the router and the
//! engine read.

mod model;

pub use model::{ForeignColumn, ForeignTable, Server, Snapshot};

/// Errors of catalog DDL and loading. Each carries the SQLSTATE the client gets.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// An error from the upstream Postgres, forwarded unchanged.
    #[error(transparent)]
    Upstream(#[from] pgfed_session::UpstreamError),
}
