//! pgfed's federation engine: plans one SQL statement (Postgres syntax) that touches foreign
//! tables with Apache DataFusion and streams its result as Arrow record batches plus the Postgres
//! type of each column, or fails with an [`EngineError`] carrying a SQLSTATE.
//!
//! Use: one [`Engine`] per process (connector registry, memory pool with spilling, batch size);
//! one [`EngineSession`] per client session ([`Engine::session`]: per-session connector state);
//! per statement, [`EngineSession::prepare`] with a [`StatementContext`] (the client's upstream
//! session, catalog snapshot, user, search_path, TimeZone, statement_timeout,
//! `pgfed.require_pushdown`, cancel token, notice sink) gives a [`Prepared`] with
//! `param_types` (ParameterDescription) and `columns` (RowDescription, with table OID and attnum
//! for columns taken straight from a table); [`Prepared::execute`] with the Bind parameters gives
//! a [`ResultStream`] of batches ending with a command tag. `EXPLAIN [ANALYZE] [VERBOSE]` comes
//! back the same way, as one text column `QUERY PLAN`.
//!
//! How a statement runs: foreign tables are table providers over connectors (filters become
//! SDK quals; the connector says per qual whether it applies it exactly, otherwise DataFusion
//! re-checks). Every other relation is read through the client's own upstream session, and every
//! maximal subtree that reads only such relations goes to Postgres as one SQL query built by
//! DataFusion's unparser (see `local`). What DataFusion itself evaluates differs from Postgres in
//! a few documented ways (docs/design/federation.md §4): text order is byte order (as
//! `COLLATE "C"`); now() is the statement's start, not the transaction's; integer arithmetic is
//! checked as in Postgres (22003) and division by zero fails (22012).

mod clickhouse;
mod collate;
mod context;
mod dynamic;
mod error;
mod foreign;
mod local;
mod params;
mod planner;
mod quals;
mod remote;
mod resolve;
mod semantics;
mod stream;
mod txn;
mod uuid;
mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::prelude::SessionConfig;
use pgfed_connector_sdk::Wrapper;

pub use context::{CatalogAccess, CatalogStore, StatementContext};
pub use error::EngineError;
pub use params::Param;
pub use pgfed_catalog::Privilege;
pub use planner::{OutputColumn, Prepared};
pub use stream::ResultStream;
pub use txn::TxnMode;

/// Engine settings (from pgfed's configuration).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Memory all running federated statements may use for sorts, joins and aggregates before
    /// they spill (FairSpillPool), in bytes.
    pub memory_limit: usize,
    /// Where spill files go; `None`: the OS temporary directory.
    pub spill_dir: Option<PathBuf>,
    /// Rows per Arrow batch.
    pub batch_size: usize,
    /// Parallelism inside one statement.
    pub target_partitions: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { memory_limit: 512 << 20, spill_dir: None, batch_size: 8192, target_partitions: 2 }
    }
}

/// Shared by all sessions.
pub struct Engine {
    wrappers: HashMap<String, Arc<dyn Wrapper>>,
    base: SessionState,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("wrappers", &self.wrappers.keys().collect::<Vec<_>>()).finish()
    }
}

impl Engine {
    /// An engine with these connectors (keyed by [`Wrapper::name`]).
    pub fn new(config: EngineConfig, wrappers: Vec<Arc<dyn Wrapper>>) -> Result<Self, EngineError> {
        let mut disk = DiskManagerBuilder::default();
        if let Some(dir) = &config.spill_dir {
            disk = disk.with_mode(DiskManagerMode::Directories(vec![dir.clone()]));
        }
        let env: Arc<RuntimeEnv> = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(config.memory_limit)))
            .with_disk_manager_builder(disk)
            .build_arc()
            .map_err(EngineError::from)?;
        let mut session_config = SessionConfig::new()
            .with_batch_size(config.batch_size.max(1))
            .with_target_partitions(config.target_partitions.max(1))
            .with_information_schema(false);
        {
            let o = session_config.options_mut();
            o.sql_parser.enable_ident_normalization = true;
            // Postgres reads `1.5` as numeric, not float8.
            o.sql_parser.parse_float_as_decimal = true;
            // Connectors and the encoder speak Utf8.
            o.sql_parser.map_string_types_to_utf8view = false;
            // Join keys go to sources as IN lists (`dynamic.rs`): a remote query with a thousand
            // keys costs far less than shipping the rows that cannot join.
            o.optimizer.hash_join_inlist_pushdown_max_distinct_values = 1000;
            o.execution.parquet.schema_force_view_types = false;
            // The merge phase of a spilling sort reserves this up front (10 MB by default): keep
            // it a fraction of the pool so small limits still spill rather than fail.
            o.execution.sort_spill_reservation_bytes = (config.memory_limit / 8).min(10 << 20);
        }
        let base = SessionStateBuilder::new()
            .with_config(session_config)
            .with_runtime_env(env)
            .with_default_features()
            .build();
        let wrappers = wrappers.into_iter().map(|w| (w.name().to_string(), w)).collect();
        Ok(Engine { wrappers, base })
    }

    /// State for one client session.
    pub fn session(self: &Arc<Self>) -> EngineSession {
        EngineSession {
            engine: self.clone(),
            wrappers: SessionWrappers { instances: Mutex::default(), shared: self.wrappers.clone() },
            collation: tokio::sync::OnceCell::new(),
            txn: Arc::default(),
        }
    }
}

/// One client session's view of the engine: connectors' per-session instances live here.
pub struct EngineSession {
    engine: Arc<Engine>,
    wrappers: SessionWrappers,
    /// The database's default collation, read once per session (it cannot change).
    collation: tokio::sync::OnceCell<String>,
    /// Connector transaction hooks of the client's current transaction block.
    txn: Arc<txn::Transactions>,
}

impl std::fmt::Debug for EngineSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineSession")
    }
}

/// Wrappers as one session uses them ([`Wrapper::for_session`], created on first use).
pub(crate) struct SessionWrappers {
    instances: Mutex<HashMap<String, Arc<dyn Wrapper>>>,
    shared: HashMap<String, Arc<dyn Wrapper>>,
}

impl SessionWrappers {
    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn Wrapper>> {
        if let Ok(map) = self.instances.lock()
            && let Some(w) = map.get(name)
        {
            return Some(w.clone());
        }
        let shared = self.shared.get(name)?.clone();
        let instance = shared.for_session().unwrap_or(shared);
        if let Ok(mut map) = self.instances.lock() {
            map.insert(name.to_string(), instance.clone());
        }
        Some(instance)
    }
}

impl EngineSession {
    /// Parses and plans `sql`. `param_type_oids` are Parse's parameter types (0: unspecified;
    /// fewer than the statement uses is fine).
    pub async fn prepare(
        &self,
        sql: &str,
        param_type_oids: &[u32],
        ctx: StatementContext,
    ) -> Result<Prepared, EngineError> {
        let collation = self
            .collation
            .get_or_try_init(|| async {
                let rows = ctx
                    .session
                    .query_text(
                        // An ICU database's datcollate is only its libc fallback (Postgres 15
                        // has daticulocale, 17 datlocale); read through jsonb so every version
                        // answers.
                        "SELECT CASE WHEN j ->> 'datlocprovider' = 'i' \
                         THEN 'icu:' || coalesce(j ->> 'daticulocale', j ->> 'datlocale', '') \
                         ELSE j ->> 'datcollate' END \
                         FROM (SELECT pg_catalog.to_jsonb(d) AS j FROM pg_catalog.pg_database d \
                         WHERE d.datname = pg_catalog.current_database()) q",
                        &[],
                    )
                    .await?;
                Ok::<_, EngineError>(rows.first().and_then(|r| r.first().cloned().flatten()).unwrap_or_default())
            })
            .await?
            .clone();
        planner::prepare(&self.engine.base, &self.wrappers, sql, param_type_oids, ctx, collation, self.txn.clone())
            .await
    }

    /// Whether a statement of the current transaction block began a remote transaction (a
    /// foreign table was used with [`TxnMode::Block`]). Cheap.
    pub async fn in_remote_transaction(&self) -> bool {
        self.txn.any().await
    }

    /// Call when the client's COMMIT (or an `END`, or a COMMIT PREPARED-less `COMMIT AND CHAIN`)
    /// reaches pgfed, **before** forwarding it upstream: every foreign table used in the block
    /// commits its remote work (`ForeignTable::pre_commit`). On error, do not forward the COMMIT:
    /// answer the client with the error, send `ROLLBACK` upstream instead and call
    /// [`EngineSession::rollback`] (as Postgres aborts a transaction whose pre-commit step
    /// fails). Idempotent; returns at once when no foreign table was used.
    pub async fn pre_commit(&self) -> Result<(), EngineError> {
        self.txn.pre_commit().await
    }

    /// Call after the upstream answered the COMMIT (whether it succeeded or not: by then the
    /// remote work is committed, there is no two-phase commit). Forgets the block's tables.
    /// Idempotent and cheap when nothing was touched.
    pub async fn commit(&self) {
        self.txn.commit().await
    }

    /// Call when the block ends any other way: the client's ROLLBACK (or a COMMIT of a failed
    /// transaction, which Postgres turns into a rollback), a failed [`EngineSession::pre_commit`],
    /// or the session closing mid-transaction. Undoes every remote transaction of the block.
    /// Idempotent and cheap when nothing was touched. `ROLLBACK TO SAVEPOINT` cannot undo remote
    /// work (the SDK has no savepoint hook): the proxy should refuse it after a remote write.
    pub async fn rollback(&self) {
        self.txn.settle().await;
        self.txn.rollback().await
    }
}
