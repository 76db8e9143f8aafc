//! The production [`UpstreamSession`]: a handle whose requests a driver serves on the client's
//! upstream connection.

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::{ResultFormat, Rows, UpstreamError, UpstreamSession};

enum Cmd {}

/// A cloneable handle on the session's upstream connection.
#[derive(Clone)]
pub struct Connection {
    #[allow(dead_code)]
    tx: mpsc::UnboundedSender<Cmd>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

/// Serves a [`Connection`]'s requests on the upstream connection.
pub struct Driver {
    #[allow(dead_code)]
    rx: mpsc::UnboundedReceiver<Cmd>,
}

/// How a unit of work ended on the upstream.
#[derive(Debug)]
pub struct Finished {
    /// The transaction status from the closing ReadyForQuery.
    pub status: u8,
}

/// A connected handle and driver pair.
pub fn channel() -> (Connection, Driver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Connection { tx }, Driver { rx })
}

#[async_trait]
impl UpstreamSession for Connection {
    async fn query(
        &self,
        _sql: &str,
        _params: &[Option<String>],
        _format: ResultFormat,
    ) -> Result<Rows, UpstreamError> {
        Err(UpstreamError::Closed)
    }

    async fn execute(&self, _sql: &str, _params: &[Option<String>]) -> Result<String, UpstreamError> {
        Err(UpstreamError::Closed)
    }
}
