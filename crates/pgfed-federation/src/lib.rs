//! Answers the statements the proxy hands to pgfed ([`pgfed_proxy::federation`]): SQL/MED DDL
//! goes to `pgfed-catalog`, queries on foreign tables to `pgfed-engine`, both running on the
//! client's own upstream session. It owns the live catalog snapshot (installed by the catalog
//! watcher and, right after DDL, by the session that ran it) and keeps the router's set of
//! foreign table names in step with it. This is the only crate that knows every other one; the
//! proxy stays free of DataFusion and the engine free of the wire protocol.

mod access;
mod cursor;
mod facts;
mod statement;

use std::sync::Arc;

use arc_swap::ArcSwap;
use pgfed_catalog::{Registry, Snapshot};
use pgfed_connector_sdk::Wrapper;
use pgfed_engine::{Engine, EngineConfig, EngineError};
use pgfed_proxy::federation::FederatedSession;
use pgfed_router::{QualifiedName, Router};

/// The connectors pgfed ships.
pub fn builtin_wrappers() -> Vec<Arc<dyn Wrapper>> {
    vec![
        Arc::new(pgfed_connector_postgres::PostgresWrapper),
        Arc::new(pgfed_connector_http::HttpWrapper::default()),
        Arc::new(pgfed_connector_clickhouse::ClickHouseWrapper),
    ]
}

/// Shared by every session: connectors, engine, catalog snapshot, router. Cheap to clone.
#[derive(Clone)]
pub struct Federation {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Bumped whenever a session installs a catalog it changed, and when that change commits or
    /// rolls back: a load that began at another generation may predate the change, and is
    /// dropped rather than installed (it would hide a new foreign table from the router, and its
    /// statements would read the empty shadow table).
    pub generation: std::sync::atomic::AtomicU64,
    /// Sessions whose installed catalog includes changes not yet committed: no load from another
    /// connection can be newer, so none is installed meanwhile.
    pub provisional: std::sync::atomic::AtomicUsize,
    /// The generation when the watcher's current load began.
    pub load_started: std::sync::atomic::AtomicU64,
    /// A watcher keeps the catalog current; without one, sessions load it.
    pub watched: std::sync::atomic::AtomicBool,
    /// The watcher has installed a catalog. Until then sessions load it themselves, or the first
    /// statements after startup would read the empty shadow tables.
    pub watcher_loaded: std::sync::atomic::AtomicBool,
    /// pgfed's service connection, for PUBLIC user mappings (set by [`attach`]).
    pub(crate) service: std::sync::OnceLock<Arc<access::ServiceMappings>>,
    /// When a session last loaded the catalog (without a watcher).
    pub loaded_at: std::sync::Mutex<Option<std::time::Instant>>,
    pub registry: Registry,
    pub engine: Arc<Engine>,
    pub snapshot: ArcSwap<Snapshot>,
    pub router: Arc<Router>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation").field("tables", &self.inner.snapshot.load().tables.len()).finish_non_exhaustive()
    }
}

impl Federation {
    /// `router` is the proxy's ([`pgfed_proxy::Server::router`]): its managed set follows the
    /// catalog.
    pub fn new(
        config: EngineConfig,
        wrappers: Vec<Arc<dyn Wrapper>>,
        router: Arc<Router>,
    ) -> Result<Self, EngineError> {
        let engine = Arc::new(Engine::new(config, wrappers.clone())?);
        Ok(Federation {
            inner: Arc::new(Inner {
                generation: Default::default(),
                provisional: Default::default(),
                load_started: Default::default(),
                watched: std::sync::atomic::AtomicBool::new(false),
                watcher_loaded: std::sync::atomic::AtomicBool::new(false),
                service: std::sync::OnceLock::new(),
                loaded_at: std::sync::Mutex::new(None),
                registry: Registry::new(wrappers),
                engine,
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
                router,
            }),
        })
    }

    /// Makes `snapshot` the catalog every new statement sees, and routes its tables to pgfed.
    pub fn install(&self, snapshot: Arc<Snapshot>) {
        self.inner.install(snapshot)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// A catalog watcher on pgfed's service connection (`conninfo`, libpq style) that installs
    /// every snapshot it loads. Run it with [`pgfed_catalog::Watcher::run`].
    pub fn watcher(&self, conninfo: &str) -> Result<pgfed_catalog::Watcher, String> {
        let inner = self.inner.clone();
        let hook = self.inner.clone();
        self.inner.watched.store(true, std::sync::atomic::Ordering::Relaxed);
        pgfed_catalog::Watcher::from_conninfo(conninfo, move |s| {
            inner.install_loaded(s, inner.load_started.load(std::sync::atomic::Ordering::SeqCst));
            inner.watcher_loaded.store(true, std::sync::atomic::Ordering::SeqCst);
        })
        .map(|w| {
            w.with_load_hook(move || {
                let g = hook.generation.load(std::sync::atomic::Ordering::SeqCst);
                hook.load_started.store(g, std::sync::atomic::Ordering::SeqCst);
            })
        })
        .map_err(|e| e.to_string())
    }
}

/// libpq connection string for pgfed's own service connection (the upstream URL's user).
pub fn service_conninfo(url: &pgfed_config::UpstreamUrl) -> Option<String> {
    let user = url.user.as_deref()?;
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut s = format!("host={} port={} user={}", quote(&url.host), url.port, quote(user));
    if let Some(db) = &url.database {
        s.push_str(&format!(" dbname={}", quote(db)));
    }
    if let Some(pw) = &url.password {
        s.push_str(&format!(" password={}", quote(pw)));
    }
    Some(s)
}

/// Reads and checks the catalog files `[catalog] files` names, without touching the database
/// (what `pgfed check-config` runs): syntax, statement kinds, `${env:..}`/`${file:..}`
/// references, options as the connectors validate them, duplicates, and that the upstream URL
/// names the service user the files are applied with. `None` when no files are configured.
pub fn check_catalog_files(
    config: &pgfed_config::Validated,
) -> Result<Option<pgfed_catalog::Declarations>, pgfed_catalog::DeclareError> {
    if config.config.catalog.files.is_empty() {
        return Ok(None);
    }
    let declarations =
        pgfed_catalog::Declarations::load(&config.config.catalog.files, &|name| std::env::var(name).ok())?;
    declarations.check(&Registry::new(builtin_wrappers()))?;
    if config.upstream.user.is_none() {
        return Err(pgfed_catalog::DeclareError::NoServiceUser);
    }
    Ok(Some(declarations))
}

/// Makes the upstream catalog match the catalog files, at startup and before clients are served:
/// one transaction on pgfed's service connection (the upstream URL's user) creates, alters and
/// drops objects created from the files; objects created with DDL are never touched. Logs each
/// change (names only), or that nothing changed. An error means nothing was applied; pgfed should
/// not start. `None` when no files are configured.
pub async fn apply_catalog_files(
    config: &pgfed_config::Validated,
) -> Result<Option<pgfed_catalog::declare::Changes>, pgfed_catalog::DeclareError> {
    let Some(declarations) = check_catalog_files(config)? else { return Ok(None) };
    let conninfo = service_conninfo(&config.upstream).ok_or(pgfed_catalog::DeclareError::NoServiceUser)?;
    let registry = Registry::new(builtin_wrappers());
    let changes = pgfed_catalog::declare::reconcile_on(
        &conninfo,
        config.config.upstream.connect_timeout,
        &registry,
        &declarations,
    )
    .await?;
    let files = declarations.files.len();
    if changes.is_empty() {
        tracing::info!(
            files,
            declared = declarations.summary(),
            "catalog files: the catalog already matches them; nothing changed"
        );
    }
    for (verb, objects) in [("created", &changes.created), ("altered", &changes.altered), ("dropped", &changes.dropped)]
    {
        for object in objects {
            tracing::info!("catalog files: {verb} {object}");
        }
    }
    if !changes.is_empty() {
        tracing::info!(
            files,
            created = changes.created.len(),
            altered = changes.altered.len(),
            dropped = changes.dropped.len(),
            unchanged = changes.unchanged,
            "catalog files applied"
        );
    }
    Ok(Some(changes))
}

/// Builds the federation for `server` and attaches it. When the upstream URL names a user, a
/// catalog watcher runs on that service connection until `shutdown` (other pgfed instances' DDL
/// reaches this one through it); without one, only DDL run through this instance is seen, which
/// is logged.
pub fn attach(
    server: pgfed_proxy::Server,
    config: &pgfed_config::Validated,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(pgfed_proxy::Server, Federation), EngineError> {
    let fed = Federation::new(EngineConfig::default(), builtin_wrappers(), server.router())?;
    match service_conninfo(&config.upstream) {
        Some(conninfo) => {
            match fed.watcher(&conninfo) {
                Ok(w) => {
                    tokio::spawn(w.run(shutdown));
                }
                Err(e) => tracing::warn!(error = %e, "catalog watcher not started"),
            }
            match access::ServiceMappings::new(&conninfo, config.config.upstream.connect_timeout) {
                Ok(service) => {
                    let service = Arc::new(service);
                    let _ = fed.inner.service.set(service.clone());
                    tokio::spawn(async move { service.refresh_catalog().await });
                }
                Err(e) => tracing::warn!(error = %e, "service connection not configured"),
            }
        }
        None => tracing::warn!(
            "the upstream URL names no user: the catalog is loaded by sessions that run DDL only; \
             add a user to upstream.url so pgfed sees foreign tables defined before it started"
        ),
    }
    let server = server.with_federation(Arc::new(fed.clone()));
    Ok((server, fed))
}

impl Inner {
    /// Installs a snapshot loaded on another connection (watcher, session start) whose load began
    /// at generation `started`, unless a session's own change may be newer.
    pub(crate) fn install_loaded(&self, snapshot: Arc<Snapshot>, started: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.provisional.load(SeqCst) == 0 && self.generation.load(SeqCst) == started {
            self.install(snapshot);
        }
    }

    /// Installs the catalog a session just changed (loaded in its own transaction).
    pub(crate) fn install_own(&self, snapshot: Arc<Snapshot>) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.install(snapshot);
    }

    /// A session's change committed or rolled back.
    pub(crate) fn settle_own(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.generation.fetch_add(1, SeqCst);
        let _ = self.provisional.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
    }

    pub(crate) fn install(&self, snapshot: Arc<Snapshot>) {
        self.router.set_managed(snapshot.tables.values().map(|t| QualifiedName::new(t.schema.clone(), t.name.clone())));
        self.snapshot.store(snapshot);
    }
}

impl pgfed_proxy::federation::Federation for Federation {
    fn claims(&self, sql: &str) -> bool {
        // Any SQL/MED DDL: whether it is pgfed's is decided in the session (objects created in
        // its open transaction count), and handed back when it is Postgres's own. Also in a
        // script after other statements (`CREATE SCHEMA s; IMPORT FOREIGN SCHEMA ... INTO s`);
        // every passthrough statement comes here, so scripts are split only when they may hold
        // such DDL (every kind names SERVER or FOREIGN).
        pgfed_catalog::ddl::parse(sql).is_some()
            || (may_hold_med_ddl(sql)
                && pgfed_catalog::split_statements(sql).iter().skip(1).any(|p| pgfed_catalog::ddl::parse(p).is_some()))
    }

    fn session(&self) -> Box<dyn FederatedSession> {
        Box::new(statement::Session::new(self.inner.clone()))
    }

    fn wants_catalog(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.inner.watched.load(Ordering::Relaxed) && self.inner.watcher_loaded.load(Ordering::SeqCst) {
            return false;
        }
        let at = self.inner.loaded_at.lock().map(|g| *g).unwrap_or(None);
        at.is_none_or(|t| t.elapsed() > UNWATCHED_RELOAD)
    }

    fn load_catalog(&self, session: pgfed_session::Connection) -> futures_util::future::BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let started = inner.generation.load(std::sync::atomic::Ordering::SeqCst);
            match pgfed_catalog::Snapshot::load(&session).await {
                Ok(s) => {
                    inner.install_loaded(Arc::new(s), started);
                    if let Ok(mut at) = inner.loaded_at.lock() {
                        *at = Some(std::time::Instant::now());
                    }
                }
                Err(e) => tracing::debug!(error = %e, "session could not load the catalog"),
            }
        })
    }
}

/// Whether `sql` holds more than one statement and a word SQL/MED DDL always has.
fn may_hold_med_ddl(sql: &str) -> bool {
    let contains = |needle: &[u8]| sql.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle));
    sql.contains(';') && (contains(b"foreign") || contains(b"server"))
}

/// Without a watcher, how old the catalog may get before the next starting session reloads it.
const UNWATCHED_RELOAD: std::time::Duration = std::time::Duration::from_secs(10);
