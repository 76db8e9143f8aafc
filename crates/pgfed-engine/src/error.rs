//! Engine errors, each with the SQLSTATE the client gets. Errors from the client's upstream session
//! keep Postgres's own ErrorResponse frame so the proxy forwards it unchanged.

use datafusion::error::DataFusionError;
use pgfed_connector_sdk::ConnectorError;
use pgfed_session::UpstreamError;

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Postgres answered a query pgfed ran in the client's session (a missing table, a missing
    /// privilege, an invalid parameter value): forward `frame` as is.
    #[error(transparent)]
    Upstream(UpstreamError),
    /// A connector failed; its SQLSTATE is class HV (or 57014, 0A000).
    #[error("{table}: {source}")]
    Connector {
        table: String,
        #[source]
        source: ConnectorError,
    },
    /// A catalog read (user mapping, privilege check) failed.
    #[error(transparent)]
    Catalog(std::sync::Arc<pgfed_catalog::CatalogError>),
    /// A construct pgfed does not evaluate (yet), named (0A000).
    #[error("{0} is not supported in statements on foreign tables")]
    Unsupported(String),
    /// `pgfed.require_pushdown` is on and this plan would read a whole remote table (0A000).
    #[error(
        "foreign table {0} would be read in full (no condition or limit is pushed down) and pgfed.require_pushdown is on"
    )]
    PushdownRequired(String),
    /// The SQL does not parse (42601).
    #[error("{0}")]
    Syntax(String),
    /// A name does not resolve, a type does not match, ... (42xxx: the code is chosen by cause).
    #[error("{message}")]
    Plan { code: &'static str, message: String },
    /// A value error at run time (division by zero, overflow, bad cast): Postgres's code.
    #[error("{message}")]
    Data { code: &'static str, message: String },
    /// A parameter count or value that does not fit (08P01 for protocol, 22P02 for values).
    #[error("{message}")]
    Parameter { code: &'static str, message: String },
    /// The client's cancel request (57014).
    #[error("canceling statement due to user request")]
    Cancelled,
    /// statement_timeout passed (57014).
    #[error("canceling statement due to statement timeout")]
    TimedOut,
    /// The memory pool is exhausted even after spilling (53200).
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// A bug in pgfed (XX000).
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// The SQLSTATE for the client.
    pub fn sqlstate(&self) -> &str {
        match self {
            EngineError::Upstream(e) => e.sqlstate(),
            EngineError::Catalog(e) => e.sqlstate(),
            EngineError::Connector { source, .. } => source.sqlstate(),
            EngineError::Unsupported(_) | EngineError::PushdownRequired(_) => "0A000",
            EngineError::Syntax(_) => "42601",
            EngineError::Plan { code, .. } | EngineError::Data { code, .. } | EngineError::Parameter { code, .. } => {
                code
            }
            EngineError::Cancelled | EngineError::TimedOut => "57014",
            EngineError::OutOfMemory(_) => "53200",
            EngineError::Internal(_) => "XX000",
        }
    }

    /// A hint for the client, where one helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            EngineError::Connector { source, .. } => source.hint().map(str::to_string),
            EngineError::PushdownRequired(_) => Some(
                "Add a condition on a column the source can filter on, or a LIMIT, or SET pgfed.require_pushdown = off."
                    .into(),
            ),
            _ => None,
        }
    }

    /// Postgres's ErrorResponse frame, when the error came from the client's upstream session and
    /// must reach the client byte for byte.
    pub fn upstream_frame(&self) -> Option<&bytes::Bytes> {
        match self {
            EngineError::Upstream(UpstreamError::Server { frame, .. }) => Some(frame),
            EngineError::Catalog(c) => match c.as_ref() {
                pgfed_catalog::CatalogError::Upstream(UpstreamError::Server { frame, .. }) => Some(frame),
                _ => None,
            },
            _ => None,
        }
    }

    pub(crate) fn plan(code: &'static str, message: impl Into<String>) -> Self {
        EngineError::Plan { code, message: message.into() }
    }

    /// Wraps the error for transport through DataFusion, which gives it back in `from_datafusion`.
    pub(crate) fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }

    /// Recovers an engine error carried through DataFusion, or classifies DataFusion's own.
    pub(crate) fn from_datafusion(e: DataFusionError) -> Self {
        // Our own errors travel as `External`, possibly wrapped in context or Arrow errors.
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = cur {
            if let Some(engine) = err.downcast_ref::<EngineError>() {
                return engine.clone_shallow();
            }
            cur = err.source();
        }
        let root = e.find_root();
        match root {
            DataFusionError::ResourcesExhausted(m) => EngineError::OutOfMemory(m.clone()),
            DataFusionError::SQL(p, _) => EngineError::Syntax(p.to_string()),
            DataFusionError::NotImplemented(m) => EngineError::Unsupported(first_line(m)),
            DataFusionError::Plan(m) => classify_plan(m),
            DataFusionError::SchemaError(s, _) => {
                let m = s.to_string();
                let code = if m.contains("not found") || m.contains("No field named") { "42703" } else { "42P10" };
                EngineError::plan(code, first_line(&m))
            }
            DataFusionError::ArrowError(a, _) => classify_arrow(&a.to_string()),
            DataFusionError::Execution(m) => classify_execution(m),
            other => EngineError::Internal(first_line(&other.strip_backtrace())),
        }
    }

    /// A copy for errors found by reference inside a DataFusion error chain.
    fn clone_shallow(&self) -> Self {
        match self {
            EngineError::Upstream(u) => EngineError::Upstream(u.clone()),
            EngineError::Catalog(c) => EngineError::Catalog(c.clone()),
            EngineError::Connector { table, source } => {
                EngineError::Connector { table: table.clone(), source: clone_connector_error(source) }
            }
            EngineError::Unsupported(s) => EngineError::Unsupported(s.clone()),
            EngineError::PushdownRequired(s) => EngineError::PushdownRequired(s.clone()),
            EngineError::Syntax(s) => EngineError::Syntax(s.clone()),
            EngineError::Plan { code, message } => EngineError::Plan { code, message: message.clone() },
            EngineError::Data { code, message } => EngineError::Data { code, message: message.clone() },
            EngineError::Parameter { code, message } => EngineError::Parameter { code, message: message.clone() },
            EngineError::Cancelled => EngineError::Cancelled,
            EngineError::TimedOut => EngineError::TimedOut,
            EngineError::OutOfMemory(s) => EngineError::OutOfMemory(s.clone()),
            EngineError::Internal(s) => EngineError::Internal(s.clone()),
        }
    }
}

fn clone_connector_error(e: &ConnectorError) -> ConnectorError {
    match e {
        ConnectorError::InvalidOption { name, level, hint } => {
            ConnectorError::InvalidOption { name: name.clone(), level, hint: hint.clone() }
        }
        ConnectorError::MissingOption { name, level } => ConnectorError::MissingOption { name: name.clone(), level },
        ConnectorError::InvalidOptionValue { name, reason } => {
            ConnectorError::InvalidOptionValue { name: name.clone(), reason: reason.clone() }
        }
        ConnectorError::Unreachable { source_name, reason } => {
            ConnectorError::Unreachable { source_name: source_name.clone(), reason: reason.clone() }
        }
        ConnectorError::TableNotFound(t) => ConnectorError::TableNotFound(t.clone()),
        ConnectorError::ColumnNotFound(c) => ConnectorError::ColumnNotFound(c.clone()),
        ConnectorError::DataType { column, reason } => {
            ConnectorError::DataType { column: column.clone(), reason: reason.clone() }
        }
        ConnectorError::Remote { source_name, code, message } => {
            ConnectorError::Remote { source_name: source_name.clone(), code: code.clone(), message: message.clone() }
        }
        ConnectorError::RemoteMapped { source_name, sqlstate, code, message } => ConnectorError::RemoteMapped {
            source_name: source_name.clone(),
            sqlstate,
            code: code.clone(),
            message: message.clone(),
        },
        ConnectorError::NotSupported(s) => ConnectorError::NotSupported(s.clone()),
        ConnectorError::Cancelled => ConnectorError::Cancelled,
        ConnectorError::TimedOut => ConnectorError::TimedOut,
        ConnectorError::Internal(s) => ConnectorError::Internal(s.clone()),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

fn classify_plan(m: &str) -> EngineError {
    let line = first_line(m);
    let code = if line.contains("table") && line.contains("not found") {
        "42P01"
    } else if line.contains("Invalid function") || line.contains("function") && line.contains("not found") {
        "42883"
    } else if line.contains("No field named") || line.contains("not found") {
        "42703"
    } else if line.contains("Cannot infer common") || line.contains("coerc") || line.contains("type") {
        "42804"
    } else {
        "42601"
    };
    EngineError::plan(code, line)
}

fn classify_arrow(m: &str) -> EngineError {
    let line = first_line(m);
    if line.contains("Divide by zero") {
        EngineError::Data { code: "22012", message: "division by zero".into() }
    } else if line.contains("overflow") {
        EngineError::Data { code: "22003", message: "value out of range: overflow".into() }
    } else if line.contains("Cast error") || line.contains("Parser error") || line.contains("Cannot cast") {
        EngineError::Data { code: "22P02", message: line }
    } else {
        EngineError::Internal(line)
    }
}

fn classify_execution(m: &str) -> EngineError {
    let line = first_line(m);
    if line.contains("Divide by zero") || line.contains("division by zero") {
        EngineError::Data { code: "22012", message: "division by zero".into() }
    } else if line.contains("overflow") {
        EngineError::Data { code: "22003", message: line }
    } else {
        EngineError::Data { code: "22000", message: line }
    }
}

impl From<UpstreamError> for EngineError {
    fn from(e: UpstreamError) -> Self {
        EngineError::Upstream(e)
    }
}

impl From<pgfed_catalog::CatalogError> for EngineError {
    fn from(e: pgfed_catalog::CatalogError) -> Self {
        match e {
            pgfed_catalog::CatalogError::Upstream(u) => EngineError::Upstream(u),
            other => EngineError::Catalog(std::sync::Arc::new(other)),
        }
    }
}

impl From<DataFusionError> for EngineError {
    fn from(e: DataFusionError) -> Self {
        EngineError::from_datafusion(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_survive_a_trip_through_datafusion() {
        let e = EngineError::TimedOut.into_datafusion().context("while scanning");
        let back = EngineError::from(e);
        assert_eq!(back.sqlstate(), "57014");
        assert_eq!(back.to_string(), "canceling statement due to statement timeout");
    }

    #[test]
    fn upstream_frames_are_kept() {
        let frame = bytes::Bytes::from_static(b"E\0\0\0\x05\0");
        let e = EngineError::from(UpstreamError::Server {
            frame: frame.clone(),
            severity: "ERROR".into(),
            code: "42501".into(),
            message: "permission denied for table t".into(),
        });
        let back = EngineError::from(e.into_datafusion());
        assert_eq!(back.sqlstate(), "42501");
        assert_eq!(back.upstream_frame(), Some(&frame));
    }

    #[test]
    fn datafusion_errors_get_postgres_codes() {
        let e = EngineError::from(DataFusionError::ArrowError(
            Box::new(datafusion::arrow::error::ArrowError::DivideByZero),
            None,
        ));
        assert_eq!((e.sqlstate(), e.to_string().as_str()), ("22012", "division by zero"));
        let e = EngineError::from(DataFusionError::NotImplemented("Unsupported ast node in sqltorel: X".into()));
        assert_eq!(e.sqlstate(), "0A000");
    }
}
