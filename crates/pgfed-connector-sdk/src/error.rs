//! Connector errors, each with the SQLSTATE a client sees. Postgres reserves class HV for foreign
//! data wrapper errors; pgfed uses those codes with the meanings Postgres gives them.

/// An error raised by a connector. Messages must never contain option values: they may be
/// secrets (passwords, tokens), and errors reach clients and logs.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// An option name the wrapper does not know, at some level (HV00D).
    #[error("invalid option \"{name}\" for {level}")]
    InvalidOption { name: String, level: &'static str, hint: String },
    /// A required option is missing (HV00J).
    #[error("option \"{name}\" is required for {level}")]
    MissingOption { name: String, level: &'static str },
    /// An option has a value the wrapper cannot use; `reason` must not quote the value (HV024).
    #[error("invalid value for option \"{name}\": {reason}")]
    InvalidOptionValue { name: String, reason: String },
    /// The source cannot be reached (HV00N).
    #[error("could not connect to {source_name}: {reason}")]
    Unreachable { source_name: String, reason: String },
    /// The remote table does not exist (HV00R).
    #[error("remote table {0} does not exist")]
    TableNotFound(String),
    /// A remote column does not exist (HV005).
    #[error("remote column \"{0}\" does not exist")]
    ColumnNotFound(String),
    /// A remote value does not fit the declared Postgres type (HV004).
    #[error("column \"{column}\": {reason}")]
    DataType { column: String, reason: String },
    /// The remote system reported an error; `code` is its own error code, if any (HV000).
    #[error("{source_name} error{}: {message}", code.as_ref().map(|c| format!(" {c}")).unwrap_or_default())]
    Remote { source_name: String, code: Option<String>, message: String },
    /// The remote system reported an error whose kind has a Postgres SQLSTATE (a syntax error,
    /// an unknown column, memory exhausted, a value out of range): the client gets `sqlstate`,
    /// with the source's own `code` and `message` in the text, so tools that branch on the
    /// SQLSTATE class behave as with Postgres.
    #[error("{source_name} error{}: {message}", code.as_ref().map(|c| format!(" {c}")).unwrap_or_default())]
    RemoteMapped { source_name: String, sqlstate: &'static str, code: Option<String>, message: String },
    /// The operation is not offered by this connector (0A000).
    #[error("{0} is not supported by this foreign data wrapper")]
    NotSupported(String),
    /// The client cancelled the statement (57014).
    #[error("canceling statement due to user request")]
    Cancelled,
    /// statement_timeout passed (57014, with Postgres's wording).
    #[error("canceling statement due to statement timeout")]
    TimedOut,
    /// A bug in the connector or pgfed, not the source's or the user's doing (XX000).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ConnectorError {
    /// The SQLSTATE for the client.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ConnectorError::InvalidOption { .. } => "HV00D",
            ConnectorError::MissingOption { .. } => "HV00J",
            ConnectorError::InvalidOptionValue { .. } => "HV024",
            ConnectorError::Unreachable { .. } => "HV00N",
            ConnectorError::TableNotFound(_) => "HV00R",
            ConnectorError::ColumnNotFound(_) => "HV005",
            ConnectorError::DataType { .. } => "HV004",
            ConnectorError::Remote { .. } => "HV000",
            ConnectorError::RemoteMapped { sqlstate, .. } => sqlstate,
            ConnectorError::NotSupported(_) => "0A000",
            ConnectorError::Cancelled | ConnectorError::TimedOut => "57014",
            ConnectorError::Internal(_) => "XX000",
        }
    }

    /// A hint for the client, where one helps (the valid option names, for example).
    pub fn hint(&self) -> Option<&str> {
        match self {
            ConnectorError::InvalidOption { hint, .. } => Some(hint),
            _ => None,
        }
    }
}
