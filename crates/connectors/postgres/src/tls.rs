//! TLS to the remote server, chosen by `sslmode` as libpq reads it.

use pgfed_connector_sdk::{ConnectorError, Options};
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::{CancelToken, Client, Config, NoTls};

/// The TLS settings of a server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Tls {
    /// `sslmode disable`: plain TCP.
    Disable,
}

/// The TLS settings from the server options.
pub(crate) fn parse(server: &Options) -> Result<Tls, ConnectorError> {
    match server.get("sslmode") {
        None | Some("disable") => Ok(Tls::Disable),
        Some(_) => Err(ConnectorError::InvalidOptionValue {
            name: "sslmode".into(),
            reason: "only disable is supported (TLS to the remote server is not implemented yet)".into(),
        }),
    }
}

/// Connects and spawns the task that drives the connection.
pub(crate) async fn connect(config: &Config, tls: &Tls) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
    match tls {
        Tls::Disable => {
            let mut config = config.clone();
            config.ssl_mode(SslMode::Disable);
            let (client, connection) = config.connect(NoTls).await?;
            Ok((client, spawn(connection)))
        }
    }
}

/// Sends a cancel request for the query running on the connection `token` belongs to.
pub(crate) async fn cancel(token: &CancelToken, tls: &Tls) -> Result<(), tokio_postgres::Error> {
    match tls {
        Tls::Disable => token.cancel_query(NoTls).await,
    }
}

fn spawn<F>(connection: F) -> JoinHandle<()>
where
    F: std::future::Future + Send + 'static,
{
    tokio::spawn(async move {
        let _ = connection.await;
    })
}
