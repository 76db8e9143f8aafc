//! What one statement runs with: the session facts the proxy hands in, and the per-execution
//! state (cancel token, deadline) that scans read.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pgfed_catalog::{ForeignTable, Privilege, Server, Snapshot};
use pgfed_connector_sdk::{NoticeSink, ScanContext};
use pgfed_session::UpstreamSession;
use tokio_util::sync::CancellationToken;

use crate::EngineError;

/// Catalog reads the engine needs per statement that go through the client's session. The
/// catalog crate implements them (`user_mapping`, `check_privilege`); the proxy wires that
/// implementation in. Kept as a trait so the engine does not depend on how the catalog stores
/// secrets or checks privileges.
#[async_trait]
pub trait CatalogAccess: Send + Sync {
    /// The options of the user mapping for the session's user (or PUBLIC) on `server`, as given
    /// in DDL; empty when there is none.
    async fn user_mapping(
        &self,
        session: &dyn UpstreamSession,
        server: &Server,
    ) -> Result<Vec<(String, String)>, EngineError>;

    /// Fails with Postgres's own 42501 when the session's user may not SELECT from `table`.
    async fn check_select(&self, session: &dyn UpstreamSession, table: &ForeignTable) -> Result<(), EngineError>;

    /// Fails with Postgres's own 42501 when the session's user lacks `privilege` on `table`
    /// (INSERT/UPDATE of the listed columns, DELETE, SELECT of the columns a write reads in its
    /// WHERE, SET or RETURNING). Called before any row is written.
    async fn check_privilege(
        &self,
        session: &dyn UpstreamSession,
        table: &ForeignTable,
        privilege: &Privilege,
    ) -> Result<(), EngineError>;
}

/// [`CatalogAccess`] through pgfed-catalog's own functions (`user_mapping`, `check_privilege`
/// on the shadow table): what the proxy uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct CatalogStore;

#[async_trait]
impl CatalogAccess for CatalogStore {
    async fn user_mapping(
        &self,
        session: &dyn UpstreamSession,
        server: &Server,
    ) -> Result<Vec<(String, String)>, EngineError> {
        Ok(pgfed_catalog::user_mapping(session, &server.name).await?)
    }

    async fn check_select(&self, session: &dyn UpstreamSession, table: &ForeignTable) -> Result<(), EngineError> {
        Ok(pgfed_catalog::check_privilege(session, table, &pgfed_catalog::Privilege::Select(Vec::new())).await?)
    }

    async fn check_privilege(
        &self,
        session: &dyn UpstreamSession,
        table: &ForeignTable,
        privilege: &Privilege,
    ) -> Result<(), EngineError> {
        Ok(pgfed_catalog::check_privilege(session, table, privilege).await?)
    }
}

/// Everything one statement needs from the client's session.
#[derive(Clone)]
pub struct StatementContext {
    /// The client's own upstream session: local tables, parameter parsing, catalog reads.
    pub session: Arc<dyn UpstreamSession>,
    pub catalog: Arc<Snapshot>,
    pub access: Arc<dyn CatalogAccess>,
    /// The session's user, as authenticated by the upstream.
    pub user: String,
    /// `current_schemas(true)`, for unqualified foreign table names.
    pub search_path: Vec<String>,
    /// The session's `TimeZone` (an IANA name or a fixed offset like `+02:00`).
    pub time_zone: String,
    pub statement_timeout: Option<Duration>,
    /// `pgfed.require_pushdown`.
    pub require_pushdown: bool,
    /// Fires on the client's cancel request or disconnect.
    pub cancel: CancellationToken,
    pub notices: NoticeSink,
}

impl std::fmt::Debug for StatementContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatementContext")
            .field("user", &self.user)
            .field("search_path", &self.search_path)
            .field("time_zone", &self.time_zone)
            .field("statement_timeout", &self.statement_timeout)
            .field("require_pushdown", &self.require_pushdown)
            .finish_non_exhaustive()
    }
}

/// Per-execution state shared by the plan's scans. A prepared statement keeps one and resets it
/// at each execution.
pub(crate) struct Runtime {
    pub user: String,
    pub notices: NoticeSink,
    pub require_pushdown: bool,
    pub session: Arc<dyn UpstreamSession>,
    /// The plan joins outside the subtrees sent to Postgres, so the join order needs Postgres's
    /// estimates of its local subtrees (one EXPLAIN each); set before physical planning.
    pub wants_estimates: std::sync::atomic::AtomicBool,
    run: Mutex<Run>,
}

#[derive(Clone)]
struct Run {
    cancel: CancellationToken,
    deadline: Option<Instant>,
}

impl Runtime {
    pub(crate) fn new(ctx: &StatementContext) -> Self {
        Runtime {
            user: ctx.user.clone(),
            notices: ctx.notices.clone(),
            require_pushdown: ctx.require_pushdown,
            session: ctx.session.clone(),
            wants_estimates: std::sync::atomic::AtomicBool::new(false),
            run: Mutex::new(Run { cancel: ctx.cancel.child_token(), deadline: None }),
        }
    }

    /// Starts an execution: a fresh token under the client's, and the deadline.
    pub(crate) fn start(&self, parent: &CancellationToken, timeout: Option<Duration>) -> CancellationToken {
        let run = Run { cancel: parent.child_token(), deadline: timeout.map(|t| Instant::now() + t) };
        let token = run.cancel.clone();
        if let Ok(mut r) = self.run.lock() {
            *r = run;
        }
        token
    }

    pub(crate) fn scan_context(&self) -> ScanContext {
        let run =
            self.run.lock().map(|r| r.clone()).unwrap_or(Run { cancel: CancellationToken::new(), deadline: None });
        ScanContext {
            cancel: run.cancel,
            deadline: run.deadline,
            notices: self.notices.clone(),
            user: self.user.clone(),
        }
    }
}
