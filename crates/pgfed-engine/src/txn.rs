//! Connector transaction hooks (`begin`, `pre_commit`, `commit`, `rollback`) tied to the client's
//! transaction.
//!
//! Inside a client transaction block every foreign table a statement uses gets `begin` before
//! its first use, and the table is remembered until the block ends; the proxy then calls
//! [`crate::EngineSession::pre_commit`] and [`crate::EngineSession::commit`] around the upstream
//! COMMIT, or [`crate::EngineSession::rollback`]. Outside a block (autocommit) a write runs its own
//! begin / pre_commit / commit around the statement ([`Hooks`]), so a write of several batches is
//! all or nothing; reads there use no hooks (each scan is on its own).

use std::sync::Arc;

use pgfed_connector_sdk::ForeignTable as SdkTable;

use crate::EngineError;

/// A foreign table instance of a statement, with its name for errors.
#[derive(Clone)]
pub(crate) struct Touched {
    pub name: String,
    pub table: Arc<dyn SdkTable>,
}

impl Touched {
    fn same(&self, other: &Arc<dyn SdkTable>) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.table), Arc::as_ptr(other))
    }

    fn error(&self, source: pgfed_connector_sdk::ConnectorError) -> EngineError {
        EngineError::Connector { table: self.name.clone(), source }
    }
}

/// How a statement relates to the client's transaction, from the transaction status at its
/// start (ReadyForQuery before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnMode {
    /// Status `I`: the statement is its own transaction. A write begins and commits the remote
    /// transactions itself (rolled back on error, cancel or drop).
    Autocommit,
    /// Status `T`: inside `BEGIN ... COMMIT/ROLLBACK`. Tables are begun at first use; the proxy
    /// ends them with `pre_commit`/`commit` or `rollback` on the [`crate::EngineSession`].
    Block,
}

/// Tables begun in the client's current transaction block, and autocommit writes dropped
/// before their end whose rollback is still due.
#[derive(Default)]
pub(crate) struct Transactions {
    touched: tokio::sync::Mutex<Vec<Touched>>,
    /// Filled synchronously by [`Hooks`]' drop, so the next statement always sees it.
    pending: std::sync::Mutex<Vec<Touched>>,
    /// Serializes settling with the start of the next statement.
    gate: tokio::sync::Mutex<()>,
}

impl Transactions {
    /// Rolls back what dropped writes left open. Every execution calls it first, so a late
    /// rollback never reaches into the next statement's remote transaction.
    pub(crate) async fn settle(&self) {
        let _gate = self.gate.lock().await;
        let pending = self.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
        rollback_all(pending).await;
    }

    /// `begin` on each table not begun yet in this block.
    pub(crate) async fn begin_if_needed(&self, tables: &[Touched]) -> Result<(), EngineError> {
        let mut touched = self.touched.lock().await;
        for t in tables {
            if touched.iter().any(|x| x.same(&t.table)) {
                continue;
            }
            t.table.begin().await.map_err(|e| t.error(e))?;
            touched.push(t.clone());
        }
        Ok(())
    }

    pub(crate) async fn any(&self) -> bool {
        !self.touched.lock().await.is_empty()
    }

    /// `pre_commit` on every table of the block, stopping at the first failure (the client's
    /// COMMIT must then fail and [`Transactions::rollback`] undo the rest).
    pub(crate) async fn pre_commit(&self) -> Result<(), EngineError> {
        let touched = self.touched.lock().await.clone();
        for t in &touched {
            t.table.pre_commit().await.map_err(|e| t.error(e))?;
        }
        Ok(())
    }

    /// `commit` on every table, then forgets them. Failures are logged: the transaction is
    /// committed by then.
    pub(crate) async fn commit(&self) {
        let touched = std::mem::take(&mut *self.touched.lock().await);
        for t in touched {
            if let Err(e) = t.table.commit().await {
                tracing::warn!(table = %t.name, error = %e, "connector commit hook failed");
            }
        }
    }

    /// `rollback` on every table, then forgets them. Failures are logged.
    pub(crate) async fn rollback(&self) {
        let touched = std::mem::take(&mut *self.touched.lock().await);
        rollback_all(touched).await;
    }
}

async fn rollback_all(tables: Vec<Touched>) {
    for t in tables {
        if let Err(e) = t.table.rollback().await {
            tracing::warn!(table = %t.name, error = %e, "connector rollback hook failed");
        }
    }
}

/// The hooks of one autocommit write: begun at the start, committed by [`Hooks::commit`];
/// dropped before that (error, cancel, a client that went away) they roll back.
pub(crate) struct Hooks {
    txn: Arc<Transactions>,
    tables: Vec<Touched>,
    open: bool,
}

impl Hooks {
    pub(crate) async fn begin(txn: Arc<Transactions>, tables: Vec<Touched>) -> Result<Hooks, EngineError> {
        let mut hooks = Hooks { txn, tables: Vec::new(), open: true };
        for t in tables {
            if hooks.tables.iter().any(|x| x.same(&t.table)) {
                continue;
            }
            // Pushed first so that a failing begin is rolled back with the others.
            hooks.tables.push(t.clone());
            t.table.begin().await.map_err(|e| t.error(e))?;
        }
        Ok(hooks)
    }

    /// pre_commit then commit on every table; on a pre_commit failure everything rolls back.
    pub(crate) async fn commit(mut self) -> Result<(), EngineError> {
        for t in &self.tables {
            if let Err(e) = t.table.pre_commit().await {
                let err = t.error(e);
                self.open = false;
                rollback_all(std::mem::take(&mut self.tables)).await;
                return Err(err);
            }
        }
        self.open = false;
        for t in std::mem::take(&mut self.tables) {
            if let Err(e) = t.table.commit().await {
                tracing::warn!(table = %t.name, error = %e, "connector commit hook failed");
            }
        }
        Ok(())
    }

    pub(crate) async fn rollback(mut self) {
        self.open = false;
        rollback_all(std::mem::take(&mut self.tables)).await;
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        if !self.open || self.tables.is_empty() {
            return;
        }
        let tables = std::mem::take(&mut self.tables);
        if let Ok(mut pending) = self.txn.pending.lock() {
            pending.extend(tables);
        }
        // Roll back now rather than at the next statement, so remote locks go at once.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let txn = self.txn.clone();
            handle.spawn(async move { txn.settle().await });
        }
    }
}
