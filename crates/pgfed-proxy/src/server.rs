//! The accept loop and what all sessions share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pgfed_config::{Config, Validated};
use pgfed_router::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::cancel::CancelRegistry;
use crate::federation::Federation;
use crate::metrics::Metrics;
use crate::tls::{self, TlsError};
use crate::upstream::Upstream;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("TLS setup failed: {0}")]
    Tls(#[from] TlsError),
}

/// State shared by every session.
pub(crate) struct Shared {
    pub config: Config,
    pub upstream: Arc<Upstream>,
    pub tls_acceptor: Option<TlsAcceptor>,
    pub router: Arc<Router>,
    pub cancels: Arc<CancelRegistry>,
    /// One permit per session past startup; `max_connections` of them.
    pub limit: Arc<Semaphore>,
    pub metrics: Metrics,
    /// Answers statements on foreign data; without one, everything is relayed.
    pub federation: Option<Arc<dyn Federation>>,
}

/// Shutdown phases as sessions see them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Signals {
    /// Finish what you are doing: sessions close at their next idle point.
    pub graceful: CancellationToken,
    /// The deadline passed: close now.
    pub force: CancellationToken,
}

/// A configured proxy, ready to serve a listener.
pub struct Server {
    shared: Arc<Shared>,
}

/// How long sessions get, after the shutdown deadline, to deliver their last message.
const FORCE_GRACE: Duration = Duration::from_secs(10);

impl Server {
    /// Builds TLS settings and shared state. Fails on unreadable certificates, not later.
    pub fn new(config: &Validated) -> Result<Self, ServerError> {
        let upstream = Upstream::new(config.upstream.clone(), config.config.upstream.connect_timeout)?;
        let tls_acceptor = match &config.config.server.tls {
            Some(t) => Some(TlsAcceptor::from(tls::server_config(&t.cert_file, &t.key_file)?)),
            None => None,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                config: config.config.clone(),
                upstream: Arc::new(upstream),
                tls_acceptor,
                router: Arc::new(Router::new()),
                cancels: Arc::new(CancelRegistry::default()),
                limit: Arc::new(Semaphore::new(config.config.server.max_connections)),
                metrics: Metrics::new(),
                federation: None,
            }),
        })
    }

    /// Lets `federation` answer the statements that are pgfed's (see [`Federation`]). Call before
    /// [`Server::serve`].
    pub fn with_federation(mut self, federation: Arc<dyn Federation>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.federation = Some(federation);
        }
        self
    }

    /// The router every session consults; the catalog updates its managed set.
    pub fn router(&self) -> Arc<Router> {
        self.shared.router.clone()
    }

    /// Accepts clients on `listener` until `shutdown` fires, then stops accepting, lets sessions
    /// finish (each closes at its next idle point) until `server.shutdown_timeout`, ends the rest
    /// with 57P01, and returns once every session is gone.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let signals = Signals::default();
        let next_id = AtomicU64::new(1);
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, upstream = %self.shared.upstream.url, "pgfed listening");
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        tracker.spawn(crate::session::run(self.shared.clone(), tcp, peer, id, signals.clone()));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        drop(listener);
        tracker.close();
        let open = tracker.len();
        info!(
            open_sessions = open,
            deadline_s = self.shared.config.server.shutdown_timeout.as_secs_f64(),
            "shutting down"
        );
        signals.graceful.cancel();
        if tokio::time::timeout(self.shared.config.server.shutdown_timeout, tracker.wait()).await.is_err() {
            warn!(open_sessions = tracker.len(), "shutdown deadline passed; terminating remaining sessions");
            signals.force.cancel();
            if tokio::time::timeout(FORCE_GRACE, tracker.wait()).await.is_err() {
                warn!(open_sessions = tracker.len(), "sessions still open after the grace period; exiting anyway");
            }
        }
        info!("shutdown complete");
    }
}
