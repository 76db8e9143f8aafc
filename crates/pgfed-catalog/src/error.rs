//! Catalog errors, each with the SQLSTATE, detail and hint the client gets. Messages follow
//! Postgres's own wording for the same situation (`server "x" does not exist`), and never contain
//! an option value.

use pgfed_connector_sdk::ConnectorError;
use pgfed_session::UpstreamError;

/// Errors of catalog DDL, privilege checks and loading.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// An error from the upstream Postgres, forwarded unchanged (its frame is in the variant).
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Creating schema `pgfed` was refused (42501): the upstream's message, with a hint that an
    /// administrator can run the bootstrap script.
    #[error("{}", upstream_message(.0))]
    BootstrapDenied(UpstreamError),
    /// Malformed SQL/MED DDL (42601); `position` counts characters from 1, as Postgres's does.
    #[error("{message}")]
    Syntax { message: String, position: Option<u32> },
    /// A server, user mapping, role or option that does not exist (42704).
    #[error("{0}")]
    UndefinedObject(String),
    /// `CREATE SERVER ... FOREIGN DATA WRAPPER w` naming a wrapper neither pgfed nor Postgres has
    /// (42704); the hint lists pgfed's.
    #[error("foreign-data wrapper \"{name}\" does not exist")]
    UnknownWrapper { name: String, known: Vec<&'static str> },
    /// A column that does not exist (42703).
    #[error("{0}")]
    UndefinedColumn(String),
    /// A relation that does not exist (42P01).
    #[error("{0}")]
    UndefinedTable(String),
    /// A schema that does not exist, or no schema to create in (3F000).
    #[error("{0}")]
    InvalidSchemaName(String),
    /// A server, user mapping or option that already exists (42710).
    #[error("{0}")]
    DuplicateObject(String),
    /// A relation that already exists (42P07).
    #[error("{0}")]
    DuplicateTable(String),
    /// The object is not what the statement needs (42809): `"t" is not a foreign table`.
    #[error("{message}")]
    WrongObjectType { message: String, hint: Option<String> },
    /// DROP without CASCADE while other objects depend on it (2BP01).
    #[error("{message}")]
    DependentObjects { message: String, detail: String },
    /// 42501, from pgfed's own checks (Postgres's own 42501 arrives as `Upstream`).
    #[error("{message}")]
    InsufficientPrivilege { message: String, hint: Option<String> },
    /// An invalid privilege for a foreign server in GRANT/REVOKE (0LP01).
    #[error("{0}")]
    InvalidGrant(String),
    /// Valid Postgres that pgfed does not implement (0A000), naming the feature.
    #[error("{0}")]
    NotSupported(String),
    /// From the connector: option validation (HV00D, HV00J, HV024), IMPORT FOREIGN SCHEMA, ...
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The `pgfed` schema exists but is not a catalog this pgfed can use (55000).
    #[error("{0}")]
    CatalogState(String),
    /// Something pgfed's own queries returned that cannot be (XX000).
    #[error("internal error: {0}")]
    Internal(String),
}

fn upstream_message(e: &UpstreamError) -> String {
    match e {
        UpstreamError::Server { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

impl CatalogError {
    /// The SQLSTATE for the client.
    pub fn sqlstate(&self) -> &str {
        match self {
            CatalogError::Upstream(e) => e.sqlstate(),
            CatalogError::BootstrapDenied(_) | CatalogError::InsufficientPrivilege { .. } => "42501",
            CatalogError::Syntax { .. } => "42601",
            CatalogError::UndefinedObject(_) | CatalogError::UnknownWrapper { .. } => "42704",
            CatalogError::UndefinedColumn(_) => "42703",
            CatalogError::UndefinedTable(_) => "42P01",
            CatalogError::InvalidSchemaName(_) => "3F000",
            CatalogError::DuplicateObject(_) => "42710",
            CatalogError::DuplicateTable(_) => "42P07",
            CatalogError::WrongObjectType { .. } => "42809",
            CatalogError::DependentObjects { .. } => "2BP01",
            CatalogError::InvalidGrant(_) => "0LP01",
            CatalogError::NotSupported(_) => "0A000",
            CatalogError::Connector(e) => e.sqlstate(),
            CatalogError::CatalogState(_) => "55000",
            CatalogError::Internal(_) => "XX000",
        }
    }

    /// The DETAIL field, if any.
    pub fn detail(&self) -> Option<&str> {
        match self {
            CatalogError::DependentObjects { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// The HINT field, if any.
    pub fn hint(&self) -> Option<String> {
        match self {
            CatalogError::UnknownWrapper { known, .. } => {
                Some(format!("The foreign data wrappers pgfed offers are: {}.", known.join(", ")))
            }
            CatalogError::BootstrapDenied(_) => Some(BOOTSTRAP_HINT.to_string()),
            CatalogError::WrongObjectType { hint, .. } | CatalogError::InsufficientPrivilege { hint, .. } => {
                hint.clone()
            }
            CatalogError::DependentObjects { .. } => {
                Some("Use DROP ... CASCADE to drop the dependent objects too.".to_string())
            }
            CatalogError::Connector(e) => e.hint().map(str::to_string),
            _ => None,
        }
    }

    /// The cursor position (characters from 1) for syntax errors.
    pub fn position(&self) -> Option<u32> {
        match self {
            CatalogError::Syntax { position, .. } => *position,
            _ => None,
        }
    }

    /// The ErrorResponse as Postgres sent it, when the error is the upstream's own (forward it
    /// unchanged).
    pub fn upstream_frame(&self) -> Option<&bytes::Bytes> {
        match self {
            CatalogError::Upstream(UpstreamError::Server { frame, .. }) => Some(frame),
            _ => None,
        }
    }
}

const BOOTSTRAP_HINT: &str = "pgfed keeps its catalog in schema \"pgfed\", which this role may not create. \
An administrator (the database owner, say) can create it once with the script `pgfed_catalog::bootstrap_sql()` \
returns (crates/pgfed-catalog/sql/bootstrap.sql), then GRANT INSERT ON pgfed.servers to the roles that may \
create servers.";
