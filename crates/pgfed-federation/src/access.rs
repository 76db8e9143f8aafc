//! User mappings and privileges for the engine ([`pgfed_engine::CatalogAccess`]).
//!
//! A role's own mapping is read in its own session, where row-level security shows it only to
//! that role. A PUBLIC mapping's options are readable only by the server's owner (as in
//! `pg_user_mappings`), so for the other roles with USAGE on the server pgfed reads them on its
//! service connection: the role uses the mapping without being able to read its password.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pgfed_catalog::{ForeignTable, Privilege, Server};
use pgfed_engine::{CatalogAccess, CatalogStore, EngineError};
use pgfed_session::{TokioPgSession, UpstreamSession};

/// pgfed's service connection for reading PUBLIC mappings, connected on first use and again
/// after it fails.
pub(crate) struct ServiceMappings {
    config: tokio_postgres::Config,
    client: tokio::sync::Mutex<Option<Arc<TokioPgSession>>>,
}

impl ServiceMappings {
    pub(crate) fn new(conninfo: &str, connect_timeout: Duration) -> Result<Self, tokio_postgres::Error> {
        let mut config: tokio_postgres::Config = conninfo.parse()?;
        config.connect_timeout(connect_timeout).application_name("pgfed service");
        Ok(Self { config, client: tokio::sync::Mutex::new(None) })
    }

    async fn session(&self) -> Result<Arc<TokioPgSession>, EngineError> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| !c.0.is_closed()) {
            return Ok(c.clone());
        }
        let (client, connection) = self.config.connect(tokio_postgres::NoTls).await.map_err(|e| EngineError::Plan {
            code: "08001",
            message: format!("pgfed's service connection (for a PUBLIC user mapping): {e}"),
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "service connection ended");
            }
        });
        let session = Arc::new(TokioPgSession(client));
        *guard = Some(session.clone());
        Ok(session)
    }

    /// Re-runs the catalog's bootstrap when the service role owns it (current policies for a
    /// catalog an older pgfed made).
    pub(crate) async fn refresh_catalog(&self) {
        match self.session().await {
            Ok(s) => match pgfed_catalog::refresh_catalog(s.as_ref()).await {
                Ok(true) => tracing::info!("catalog policies refreshed on the service connection"),
                Ok(false) => tracing::debug!("the service role does not own the catalog (or there is none)"),
                Err(e) => tracing::warn!(error = %e, "could not refresh the catalog's policies"),
            },
            Err(e) => tracing::warn!(error = %e, "service connection"),
        }
    }

    async fn public(&self, server: &str) -> Result<Vec<(String, String)>, EngineError> {
        let session = self.session().await?;
        match pgfed_catalog::public_user_mapping(session.as_ref(), server).await {
            Ok(o) => Ok(o),
            Err(e) => {
                // A broken connection is replaced next time.
                *self.client.lock().await = None;
                Err(e.into())
            }
        }
    }
}

/// The engine's catalog access as the proxy uses it.
pub(crate) struct FederationAccess {
    pub(crate) service: Option<Arc<ServiceMappings>>,
}

#[async_trait]
impl CatalogAccess for FederationAccess {
    async fn user_mapping(
        &self,
        session: &dyn UpstreamSession,
        server: &Server,
    ) -> Result<Vec<(String, String)>, EngineError> {
        let own = CatalogStore.user_mapping(session, server).await?;
        if !own.is_empty() || !pgfed_catalog::uses_public_mapping(session, &server.name).await? {
            return Ok(own);
        }
        match &self.service {
            Some(service) => service.public(&server.name).await,
            None => Err(EngineError::Plan {
                code: "42501",
                message: format!(
                    "the PUBLIC user mapping for server \"{}\" can be read only by the server's owner and by pgfed's \
                     service connection, and pgfed has none: put a user in upstream.url, or create a mapping for \
                     this role",
                    server.name
                ),
            }),
        }
    }

    async fn check_select(&self, session: &dyn UpstreamSession, table: &ForeignTable) -> Result<(), EngineError> {
        CatalogStore.check_select(session, table).await
    }

    async fn check_privilege(
        &self,
        session: &dyn UpstreamSession,
        table: &ForeignTable,
        privilege: &Privilege,
    ) -> Result<(), EngineError> {
        CatalogStore.check_privilege(session, table, privilege).await
    }
}
