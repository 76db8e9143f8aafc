//! Remote connections: how they are made, pooled and tied to the client's transaction.
//!
//! - [`Pool`]: idle connections by [`ConnKey`] (server options plus the effective remote user and
//!   password, the analogue of postgres_fdw's user mapping). A connection is returned to its
//!   pool only when it is idle outside any remote transaction; one that errored mid-stream is
//!   closed instead.
//! - [`Session`]: the transaction state of one client session (or, for the shared wrapper
//!   instance, of one opened table). Between `begin` and `pre_commit`/`rollback` every use of a
//!   key goes to one pinned connection whose remote transaction is opened at first use
//!   (`START TRANSACTION ISOLATION LEVEL REPEATABLE READ`, as postgres_fdw does), so later
//!   statements see earlier writes and one snapshot. Outside that, each scan or write leases a
//!   connection of its own from the pool.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgfed_connector_sdk::ConnectorError;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::tls::{self, Tls};

/// Idle connections kept per key; more are closed when returned.
const MAX_IDLE_PER_KEY: usize = 4;
/// Idle connections older than this are closed instead of reused (the server or a firewall may
/// have dropped them).
const MAX_IDLE_TIME: Duration = Duration::from_secs(300);
/// How long cleanup (ROLLBACK, a cancel request) may take before the connection is dropped.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to connect; `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub dbname: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    pub tls: Tls,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// How errors name the server (never with credentials).
    pub(crate) fn source_name(&self) -> String {
        format!("remote postgres server {}:{}", self.host, self.port)
    }

    /// The key of the connections this server gives `session_user` (the user mapping's `user`
    /// wins over the session's user, as in postgres_fdw).
    pub(crate) fn key(&self, session_user: &str) -> ConnKey {
        ConnKey { user: self.user.clone().unwrap_or_else(|| session_user.to_string()), server: self.clone() }
    }

    pub(crate) fn errors(&self, table: String) -> Errors {
        Errors { source_name: self.source_name(), table, relation: None, redact: Redactor(self.password.clone()) }
    }
}

/// Which connections are interchangeable: same server options, same remote user and password.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct ConnKey {
    pub server: ServerConfig,
    pub user: String,
}

/// Removes the password from any text that could reach a client or a log.
#[derive(Clone)]
pub(crate) struct Redactor(Option<String>);

impl Redactor {
    pub(crate) fn clean(&self, text: &str) -> String {
        match &self.0 {
            Some(p) if !p.is_empty() => text.replace(p.as_str(), "********"),
            _ => text.to_string(),
        }
    }
}

/// Maps a tokio-postgres error: a server error keeps its SQLSTATE and message; anything else
/// (socket, protocol, closed connection) means the server could not be reached.
#[derive(Clone)]
pub(crate) struct Errors {
    pub source_name: String,
    /// The remote table, for HV00R.
    pub table: String,
    /// The remote table's bare name: a 42P01 naming it is HV00R; one naming another relation
    /// (a remote trigger's, say) is the remote error as it is.
    pub relation: Option<String>,
    pub redact: Redactor,
}

impl Errors {
    pub(crate) fn connect(&self, e: &tokio_postgres::Error) -> ConnectorError {
        let reason = match e.as_db_error() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => e.to_string(),
        };
        ConnectorError::Unreachable { source_name: self.source_name.clone(), reason: self.redact.clean(&reason) }
    }

    pub(crate) fn remote(&self, e: &tokio_postgres::Error) -> ConnectorError {
        match e.as_db_error() {
            Some(db)
                if db.code().code() == "42P01"
                    && self.relation.as_ref().is_some_and(|r| {
                        db.message().contains(&format!("\"{r}\"")) || db.message().contains(&format!(".{r}\""))
                    }) =>
            {
                ConnectorError::TableNotFound(self.table.clone())
            }
            Some(db) => self.server_error(db.code().code(), db.message()),
            None => ConnectorError::Unreachable {
                source_name: self.source_name.clone(),
                reason: self.redact.clean(&e.to_string()),
            },
        }
    }

    pub(crate) fn server_error(&self, code: &str, message: &str) -> ConnectorError {
        ConnectorError::Remote {
            source_name: self.source_name.clone(),
            code: Some(code.to_string()),
            message: self.redact.clean(message),
        }
    }
}

async fn deadline_passed(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Runs `f` unless the statement is cancelled or its deadline passes first.
pub(crate) async fn watched<F: Future>(
    cancel: &CancellationToken,
    deadline: Option<Instant>,
    f: F,
) -> Result<F::Output, ConnectorError> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(ConnectorError::Cancelled),
        () = deadline_passed(deadline) => Err(ConnectorError::TimedOut),
        out = f => Ok(out),
    }
}

/// One remote connection and the task driving it. Dropping it closes the connection politely
/// (Terminate) once no request is pending; [`RemoteConn::kill`] cancels what runs and closes.
pub(crate) struct RemoteConn {
    pub client: Client,
    task: JoinHandle<()>,
    tls: Tls,
    idle_since: Instant,
    /// Came from the pool: the server may have closed it meanwhile, so a first request that
    /// finds it closed is retried once on a new connection.
    pub reused: bool,
}

impl RemoteConn {
    pub(crate) async fn connect(
        key: &ConnKey,
        errors: &Errors,
        cancel: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Result<RemoteConn, ConnectorError> {
        let server = &key.server;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&server.host)
            .port(server.port)
            .user(&key.user)
            .application_name("pgfed")
            .connect_timeout(server.connect_timeout)
            // As postgres_fdw: values travel in binary, but casts and defaults evaluated remotely
            // must not depend on the remote role's settings, and no remote search_path may
            // capture an unqualified name.
            .options("-c search_path=pg_catalog -c timezone=UTC -c datestyle=ISO -c intervalstyle=postgres");
        if let Some(db) = &server.dbname {
            config.dbname(db);
        }
        if let Some(password) = &server.password {
            config.password(password);
        }
        let (client, task) =
            watched(cancel, deadline, tls::connect(&config, &server.tls)).await?.map_err(|e| match e {
                tls::ConnectError::Postgres(e) => errors.connect(&e),
                tls::ConnectError::Setup(reason) => {
                    ConnectorError::Unreachable { source_name: errors.source_name.clone(), reason }
                }
            })?;
        Ok(RemoteConn { client, task, tls: server.tls.clone(), idle_since: Instant::now(), reused: false })
    }

    pub(crate) fn tls(&self) -> &Tls {
        &self.tls
    }

    /// Asks the server to cancel whatever runs, then drops the connection at once.
    pub(crate) async fn kill(self) {
        let token = self.client.cancel_token();
        let _ = tokio::time::timeout(CLEANUP_TIMEOUT, tls::cancel(&token, &self.tls)).await;
        self.task.abort();
    }

    /// As [`RemoteConn::kill`], for code that cannot wait (a `Drop`).
    pub(crate) fn kill_in_background(self) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(self.kill());
            }
            Err(_) => self.task.abort(),
        }
    }
}

/// Idle connections by key, and by tokio runtime: a connection's task runs on the runtime that
/// made it and ends with it (tests run one runtime each; production has one).
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<(ConnKey, tokio::runtime::Id), Vec<RemoteConn>>>,
    /// Unique keys of remote tables (`import::unique_keys`), with when they were read.
    keys: Mutex<HashMap<TableId, (Vec<String>, Instant)>>,
}

/// A remote table: whose connections, schema, name.
type TableId = (ConnKey, String, String);

/// How long a remote table's unique keys are trusted without asking again.
const KEYS_TTL: Duration = Duration::from_secs(60);

fn runtime_id() -> Option<tokio::runtime::Id> {
    tokio::runtime::Handle::try_current().ok().map(|h| h.id())
}

impl Pool {
    /// An idle connection for `key`, or a new one.
    pub(crate) async fn get(
        &self,
        key: &ConnKey,
        errors: &Errors,
        cancel: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Result<RemoteConn, ConnectorError> {
        let Some(runtime) = runtime_id() else {
            return RemoteConn::connect(key, errors, cancel, deadline).await;
        };
        let slot = (key.clone(), runtime);
        loop {
            let conn = match self.idle.lock() {
                Ok(mut idle) => idle.get_mut(&slot).and_then(Vec::pop),
                Err(_) => None,
            };
            match conn {
                Some(mut c) if !c.client.is_closed() && c.idle_since.elapsed() < MAX_IDLE_TIME => {
                    c.reused = true;
                    return Ok(c);
                }
                Some(_) => continue,
                None => return RemoteConn::connect(key, errors, cancel, deadline).await,
            }
        }
    }

    pub(crate) fn cached_keys(&self, key: &ConnKey, schema: &str, table: &str) -> Option<Vec<String>> {
        let keys = self.keys.lock().ok()?;
        let (columns, at) = keys.get(&(key.clone(), schema.to_string(), table.to_string()))?;
        (at.elapsed() < KEYS_TTL).then(|| columns.clone())
    }

    pub(crate) fn cache_keys(&self, key: &ConnKey, schema: &str, table: &str, columns: Vec<String>) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.retain(|_, (_, at)| at.elapsed() < KEYS_TTL);
            keys.insert((key.clone(), schema.to_string(), table.to_string()), (columns, Instant::now()));
        }
    }

    /// Takes back a connection that is idle and outside any transaction.
    pub(crate) fn put(&self, key: ConnKey, mut conn: RemoteConn) {
        let Some(runtime) = runtime_id() else { return };
        if conn.client.is_closed() {
            return;
        }
        conn.idle_since = Instant::now();
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry((key, runtime)).or_default();
            if list.len() < MAX_IDLE_PER_KEY {
                list.push(conn);
            }
        }
    }
}

/// A connection pinned to the client's transaction.
pub(crate) struct XactConn {
    pub conn: RemoteConn,
    /// The remote transaction is open (`START TRANSACTION` was sent and succeeded).
    pub began: bool,
    /// Cursor names are unique per connection.
    pub next_cursor: u64,
}

type Pinned = Arc<tokio::sync::Mutex<Option<XactConn>>>;

/// The transaction state of one session (see the module doc).
pub(crate) struct Session {
    pub pool: Arc<Pool>,
    xact: tokio::sync::Mutex<Xact>,
}

#[derive(Default)]
struct Xact {
    /// `begin` was called and neither `pre_commit` nor `rollback` yet.
    active: bool,
    pinned: HashMap<ConnKey, Pinned>,
}

/// A connection to use for one scan or write.
pub(crate) enum Lease {
    /// Outside a transaction: this connection is the caller's alone; give it back with
    /// [`Session::release`] when idle, or kill it.
    Own(Box<RemoteConn>),
    /// Inside the client's transaction: lock it per request (never across a wait for the
    /// consumer, so two scans on it cannot deadlock); the remote transaction is open.
    Pinned(Pinned),
}

impl Session {
    pub(crate) fn new(pool: Arc<Pool>) -> Self {
        Session { pool, xact: tokio::sync::Mutex::new(Xact::default()) }
    }

    pub(crate) async fn lease(
        &self,
        key: &ConnKey,
        errors: &Errors,
        cancel: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Result<Lease, ConnectorError> {
        let mut xact = self.xact.lock().await;
        if !xact.active {
            drop(xact);
            return Ok(Lease::Own(Box::new(self.pool.get(key, errors, cancel, deadline).await?)));
        }
        let pinned = xact.pinned.entry(key.clone()).or_default().clone();
        let mut slot = pinned.lock().await;
        drop(xact);
        if slot.is_none() {
            let conn = self.pool.get(key, errors, cancel, deadline).await?;
            *slot = Some(XactConn { conn, began: false, next_cursor: 0 });
        }
        if let Some(x) = slot.as_mut()
            && !x.began
        {
            watched(cancel, deadline, x.conn.client.batch_execute("START TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
                .await?
                .map_err(|e| errors.remote(&e))?;
            x.began = true;
        }
        drop(slot);
        Ok(Lease::Pinned(pinned))
    }

    /// Returns an own connection to the pool (it must be idle, outside a transaction).
    pub(crate) fn release(&self, key: ConnKey, conn: RemoteConn) {
        self.pool.put(key, conn);
    }

    pub(crate) async fn begin(&self) {
        self.xact.lock().await.active = true;
    }

    /// Commits every remote transaction of the session. The first failure is returned (the
    /// client's transaction then aborts); every pinned connection is released either way.
    pub(crate) async fn pre_commit(&self, errors: impl Fn(&ConnKey) -> Errors) -> Result<(), ConnectorError> {
        let pinned = {
            let mut xact = self.xact.lock().await;
            xact.active = false;
            std::mem::take(&mut xact.pinned)
        };
        let mut first_error = None;
        for (key, slot) in pinned {
            let Some(x) = slot.lock().await.take() else { continue };
            if !x.began {
                self.pool.put(key, x.conn);
                continue;
            }
            match x.conn.client.batch_execute("COMMIT").await {
                Ok(()) => self.pool.put(key, x.conn),
                Err(e) => {
                    first_error.get_or_insert_with(|| errors(&key).remote(&e));
                    x.conn.kill().await;
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Ends the transaction state after the client's COMMIT (normally `pre_commit` did it all).
    pub(crate) async fn commit(&self) {
        let mut xact = self.xact.lock().await;
        xact.active = false;
        xact.pinned.clear();
    }

    /// Rolls back every remote transaction; a connection that does not answer in time is
    /// cancelled and closed rather than reused.
    pub(crate) async fn rollback(&self) {
        let pinned = {
            let mut xact = self.xact.lock().await;
            xact.active = false;
            std::mem::take(&mut xact.pinned)
        };
        for (key, slot) in pinned {
            let Ok(mut slot) = tokio::time::timeout(CLEANUP_TIMEOUT, slot.lock_owned()).await else {
                continue;
            };
            let Some(x) = slot.take() else { continue };
            if !x.began {
                self.pool.put(key, x.conn);
                continue;
            }
            match tokio::time::timeout(CLEANUP_TIMEOUT, x.conn.client.batch_execute("ROLLBACK")).await {
                Ok(Ok(())) => self.pool.put(key, x.conn),
                _ => x.conn.kill().await,
            }
        }
    }
}
