//! Why a session ended early, and what the client is told about it.
//!
//! Each variant names a situation; [`SessionError::client_error`] turns it into the
//! ErrorResponse a client sees (with the SQLSTATE Postgres would use), or `None` when the client
//! already has its answer (the upstream's own error was forwarded) or cannot be told (it is gone).

use pgfed_wire::{FrameError, PgError, ProtocolVersion, StartupError, sqlstate};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client connection: {0}")]
    ClientIo(#[source] std::io::Error),
    #[error("client closed the connection")]
    ClientGone,
    #[error("TLS handshake with the client failed: {0}")]
    ClientTls(#[source] std::io::Error),
    #[error("invalid startup packet: {0}")]
    Startup(#[from] StartupError),
    #[error("{0}")]
    ClientFrame(#[from] FrameError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("unsupported frontend protocol {0}: server supports 3.0 to 3.0")]
    UnsupportedVersion(ProtocolVersion),
    #[error("sorry, too many clients already")]
    TooManyClients,
    #[error("timeout during startup and authentication")]
    StartupTimeout,
    #[error("pgfed is shutting down")]
    ShuttingDown,
    #[error("could not connect to the upstream server at {addr}: {reason}")]
    UpstreamConnect { addr: String, reason: String },
    #[error("upstream connection lost: {0}")]
    UpstreamIo(#[source] std::io::Error),
    #[error("upstream server closed the connection unexpectedly")]
    UpstreamClosed,
    #[error("invalid message from the upstream server: {0}")]
    UpstreamProtocol(String),
    /// The upstream sent an ErrorResponse during startup (bad password, unknown database...);
    /// it was forwarded unchanged.
    #[error("upstream refused the session (its error was forwarded)")]
    UpstreamRefused,
    /// The upstream connection failed while pgfed ran a statement of its own on it.
    #[error("upstream connection failed during a federated statement: {0}")]
    Federation(String),
}

impl SessionError {
    /// The error the client should receive, if any.
    pub fn client_error(&self) -> Option<PgError> {
        use SessionError::*;
        Some(match self {
            ClientIo(_) | ClientGone | ClientTls(_) | UpstreamRefused => return None,
            // Postgres closes silently on an unparsable startup packet; a client speaking some
            // other protocol would not understand an ErrorResponse anyway.
            Startup(_) => return None,
            ClientFrame(e) => PgError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()),
            Protocol(m) => PgError::fatal(sqlstate::PROTOCOL_VIOLATION, m.clone()),
            UnsupportedVersion(_) => PgError::fatal(sqlstate::FEATURE_NOT_SUPPORTED, self.to_string()),
            TooManyClients => PgError::fatal(sqlstate::TOO_MANY_CONNECTIONS, self.to_string()),
            StartupTimeout => PgError::fatal(sqlstate::PROTOCOL_VIOLATION, "canceling authentication due to timeout"),
            ShuttingDown => {
                PgError::fatal(sqlstate::ADMIN_SHUTDOWN, "terminating connection due to administrator command")
            }
            UpstreamConnect { .. } => {
                PgError::fatal(sqlstate::CONNECTION_FAILURE, "could not connect to the upstream server")
                    .with_detail(self.to_string())
            }
            UpstreamIo(_) | UpstreamClosed => {
                PgError::fatal(sqlstate::CONNECTION_FAILURE, "upstream server closed the connection unexpectedly")
                    .with_detail(self.to_string())
                    .with_hint("The upstream Postgres may have restarted or terminated this session; reconnect.")
            }
            UpstreamProtocol(_) => PgError::fatal(sqlstate::PROTOCOL_VIOLATION, self.to_string()),
            Federation(_) => PgError::fatal(sqlstate::CONNECTION_FAILURE, self.to_string()),
        })
    }
}
