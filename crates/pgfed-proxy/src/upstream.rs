//! Connections to the upstream Postgres: opening one (TCP, then TLS as sslmode says) and sending
//! a CancelRequest for a session's running query.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgfed_config::{SslMode, UpstreamUrl};
use pgfed_wire::StartupPacket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::SessionError;
use crate::stream::{MaybeTls, UpstreamStream};
use crate::tls;

/// Everything needed to reach the upstream; shared by all sessions.
pub(crate) struct Upstream {
    pub url: UpstreamUrl,
    pub connect_timeout: Duration,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
}

/// The upstream's own cancel key for one session.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamKey {
    pub pid: i32,
    pub secret: Vec<u8>,
}

impl Upstream {
    pub(crate) fn new(url: UpstreamUrl, connect_timeout: Duration) -> Result<Self, tls::TlsError> {
        let tls = match tls::upstream_config(&url)? {
            Some(cfg) => Some((TlsConnector::from(cfg), tls::server_name(&url.host)?)),
            None => None,
        };
        Ok(Self { url, connect_timeout, tls })
    }

    /// Opens a connection, negotiating TLS per sslmode. Returns it with the time it took.
    pub(crate) async fn connect(&self) -> Result<(UpstreamStream, Duration), SessionError> {
        let start = Instant::now();
        let addr = self.url.address();
        let fail = |reason: String| SessionError::UpstreamConnect { addr: addr.clone(), reason };
        let stream = tokio::time::timeout(self.connect_timeout, self.open())
            .await
            .map_err(|_| fail(format!("timed out after {:?}", self.connect_timeout)))?
            .map_err(fail)?;
        Ok((stream, start.elapsed()))
    }

    async fn open(&self) -> Result<UpstreamStream, String> {
        let mut tcp = TcpStream::connect(self.url.address()).await.map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let Some((connector, name)) = &self.tls else { return Ok(MaybeTls::Plain(tcp)) };
        tcp.write_all(&StartupPacket::encode_ssl_request()).await.map_err(|e| e.to_string())?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).await.map_err(|e| format!("reading the SSLRequest answer: {e}"))?;
        match answer[0] {
            b'S' => {
                let tls = connector.connect(name.clone(), tcp).await.map_err(|e| format!("TLS handshake: {e}"))?;
                Ok(MaybeTls::Tls(Box::new(tls)))
            }
            b'N' if self.url.sslmode == SslMode::Prefer => Ok(MaybeTls::Plain(tcp)),
            b'N' => {
                Err(format!("the server does not support TLS, but sslmode={} requires it", self.url.sslmode.as_str()))
            }
            other => Err(format!("unexpected answer {other:#04x} to SSLRequest")),
        }
    }

    /// Asks the upstream to cancel whatever the session with `key` is running. Best effort, as
    /// in Postgres: the caller learns nothing about the outcome.
    pub(crate) async fn cancel(self: Arc<Self>, key: UpstreamKey) {
        let packet = StartupPacket::encode_cancel(key.pid, &key.secret);
        let attempt = async {
            let mut stream = self.open().await?;
            stream.write_all(&packet).await.map_err(|e| e.to_string())?;
            stream.flush().await.map_err(|e| e.to_string())?;
            // Postgres closes the connection once it has processed the request; waiting for that
            // makes sure the request was not lost in a reset.
            let mut sink = [0u8; 16];
            let _ = stream.read(&mut sink).await;
            Ok::<_, String>(())
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(())) => tracing::debug!(upstream_pid = key.pid, "cancel request sent upstream"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not send cancel request upstream"),
            Err(_) => tracing::warn!("cancel request to upstream timed out"),
        }
    }
}
