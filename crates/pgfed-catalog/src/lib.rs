//! pgfed's SQL/MED catalog.
//!
//! Users define foreign data with Postgres's own DDL sent through pgfed (`CREATE SERVER ... FOREIGN
//! DATA WRAPPER postgres`, `CREATE USER MAPPING`, `CREATE FOREIGN TABLE`, `IMPORT FOREIGN
//! SCHEMA`). This crate parses those statements ([`ddl::parse`]), decides whether they are pgfed's
//! or Postgres's own ([`route`]), validates options against the connector's declared options, and
//! stores the result **in the upstream database** ([`execute_ddl`]), in the client's own session
//! and transaction, so the catalog is durable, transactional, backed up with the database and
//! shared by every pgfed instance in front of it. Each foreign table also gets a shadow table,
//! which is what makes psql `\d`, JDBC metadata, SQLAlchemy inspectors and privileges
//! ([`check_privilege`]) work unchanged; docs/design/catalog.md has the design. [`Snapshot`] is
//! the in-memory view the router and the engine read, loaded with [`Snapshot::load`] and kept
//! current by a [`Watcher`]. [`declare`] reads SQL/MED files named in pgfed.toml and makes the
//! stored catalog match them (declarative definitions for GitOps setups).

pub mod ddl;
pub mod declare;
mod error;
mod lex;
mod load;
mod model;
pub mod quote;
mod registry;
mod store;
mod watch;

pub use declare::{Declarations, DeclareError};
pub use error::CatalogError;
pub use lex::split_statements;
pub use model::{ForeignColumn, ForeignTable, Server, Snapshot};
pub use registry::Registry;
pub use store::{
    NOTIFY_CHANNEL, Privilege, Route, bootstrap, bootstrap_sql, check_privilege, execute_ddl, public_user_mapping,
    refresh_catalog, route, user_mapping, uses_public_mapping,
};
pub use watch::Watcher;
