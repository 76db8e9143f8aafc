//! Keeps a pgfed instance's [`Snapshot`] current: `LISTEN pgfed_catalog` on pgfed's own service
//! connection, reload on every notification (DDL sends one in its transaction, so it arrives on
//! commit), reload every `period` as a backstop (changes made behind pgfed's back, such as a
//! shadow renamed with plain ALTER TABLE, send none), reconnect with exponential backoff when the
//! connection drops.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use pgfed_session::{TokioPgSession, UpstreamError};
use tokio::sync::mpsc;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Config, NoTls, Socket};
use tokio_util::sync::CancellationToken;

use crate::store::NOTIFY_CHANNEL;
use crate::{CatalogError, Snapshot};

/// Why a watcher session ended (for the log; the watcher reconnects).
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("connect or LISTEN: {0}")]
    Connect(#[from] tokio_postgres::Error),
    #[error("loading the catalog: {0}")]
    Load(CatalogError),
    #[error("the connection closed")]
    Closed,
}

/// Publishes a new [`Snapshot`] whenever the catalog changes.
pub struct Watcher<T = NoTls> {
    config: Config,
    tls: T,
    publish: Arc<dyn Fn(Arc<Snapshot>) + Send + Sync>,
    /// Called before each load; with it, every load is published (the receiver decides).
    load_hook: Option<Arc<dyn Fn() + Send + Sync>>,
    period: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl<T> std::fmt::Debug for Watcher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config's Debug redacts the password.
        f.debug_struct("Watcher").field("config", &self.config).field("period", &self.period).finish_non_exhaustive()
    }
}

impl Watcher<NoTls> {
    /// A watcher over a libpq-style connection string or URL, without TLS.
    pub fn from_conninfo(
        conninfo: &str,
        publish: impl Fn(Arc<Snapshot>) + Send + Sync + 'static,
    ) -> Result<Self, tokio_postgres::Error> {
        Ok(Self::new(conninfo.parse()?, NoTls, publish))
    }
}

impl<T> Watcher<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    /// `publish` gets the first snapshot loaded and then every one that differs from the last.
    pub fn new(config: Config, tls: T, publish: impl Fn(Arc<Snapshot>) + Send + Sync + 'static) -> Self {
        Self {
            config,
            tls,
            publish: Arc::new(publish),
            load_hook: None,
            period: Duration::from_secs(60),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// Calls `hook` before every load, and publishes every snapshot loaded, changed or not: for a
    /// receiver that also installs snapshots of its own and must tell a load that began before
    /// its own change from one that began after.
    pub fn with_load_hook(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.load_hook = Some(Arc::new(hook));
        self
    }

    /// The backstop reload interval (default 60 s).
    pub fn with_period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// Reconnect delays: `min` after the first failure, doubling up to `max` (default 250 ms, 30 s).
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// Runs until `shutdown` fires. Cancel-safe: dropping the future closes the connection.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = self.min_backoff;
        let mut last = None;
        loop {
            match self.session(&shutdown, &mut backoff, &mut last).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "catalog watcher: connection lost"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }

    /// One connection's life: Ok when shut down, Err when the connection is lost.
    async fn session(
        &self,
        shutdown: &CancellationToken,
        backoff: &mut Duration,
        last: &mut Option<Arc<Snapshot>>,
    ) -> Result<(), Lost> {
        let (client, mut connection) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            c = self.config.connect(self.tls.clone()) => c?,
        };
        let (tx, mut notified) = mpsc::unbounded_channel();
        // Drives the connection and forwards notifications; when it ends, `tx` drops and the
        // loop below sees the connection is gone.
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message
                    && n.channel() == NOTIFY_CHANNEL
                    && tx.send(()).is_err()
                {
                    break;
                }
            }
        });
        let _abort = AbortOnDrop(driver);
        // LISTEN before the first load, so no commit falls between the two.
        client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")).await?;
        let session = TokioPgSession(client);
        loop {
            if let Some(hook) = &self.load_hook {
                hook();
            }
            match Snapshot::load(&session).await {
                Ok(snapshot) => {
                    *backoff = self.min_backoff;
                    if self.load_hook.is_some() || last.as_deref() != Some(&snapshot) {
                        let snapshot = Arc::new(snapshot);
                        *last = Some(snapshot.clone());
                        (self.publish)(snapshot);
                    }
                }
                Err(CatalogError::Upstream(UpstreamError::Closed | UpstreamError::Io(_))) => return Err(Lost::Closed),
                // The catalog may be fixed later (a bootstrap, a GRANT): keep the connection.
                Err(e) => tracing::warn!(error = %Lost::Load(e), "catalog watcher: reload failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                n = notified.recv() => {
                    if n.is_none() {
                        return Err(Lost::Closed);
                    }
                    // Many commits in a burst need one reload.
                    while notified.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(self.period) => {}
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
