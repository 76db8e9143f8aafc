//! One session's statements: catalog DDL and federated queries.

use std::sync::Arc;

use arrow_schema::{Field, Schema};
use async_trait::async_trait;
use futures_util::StreamExt;
use pgfed_catalog::ddl::Ddl;
use pgfed_catalog::{CatalogError, Snapshot};
use pgfed_connector_sdk::{Notice, NoticeLevel, NoticeSink, ScanContext};
use pgfed_encode::ColumnSpec;
use pgfed_engine::{EngineError, EngineSession, OutputColumn, Param, Prepared, StatementContext, TxnMode};
use pgfed_proxy::federation::{
    CommandTag, Execution, FedError, FederatedSession, ResultColumns, Statement, UnitContext,
};
use pgfed_session::UpstreamSession;
use pgfed_wire::{PgError, Severity};

use crate::Inner;
use crate::cursor;
use crate::facts;

pub(crate) struct Session {
    inner: Arc<Inner>,
    txn: Arc<SessionTxn>,
    cursors: cursor::SharedCursors,
    /// This session installed a catalog with changes its transaction has not committed yet.
    own_change: Arc<std::sync::atomic::AtomicBool>,
}

impl Session {
    fn settle_own_change(&self) {
        if self.own_change.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.inner.settle_own();
        }
    }
}

/// Installs a catalog a session changed; counted as provisional until its transaction ends.
fn install_own(inner: &Inner, own_change: &std::sync::atomic::AtomicBool, snapshot: Snapshot) {
    if !own_change.swap(true, std::sync::atomic::Ordering::SeqCst) {
        inner.provisional.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    inner.install_own(Arc::new(snapshot));
}

/// The session's engine state and whether its transaction block has remote work to settle.
struct SessionTxn {
    engine: EngineSession,
    /// Mirrors [`EngineSession::in_remote_transaction`] after each statement, for the proxy's
    /// synchronous routing of COMMIT/ROLLBACK.
    remote: std::sync::atomic::AtomicBool,
}

impl SessionTxn {
    async fn refresh(&self) {
        let open = self.engine.in_remote_transaction().await;
        self.remote.store(open, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Session {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        let engine = inner.engine.session();
        Session {
            inner,
            txn: Arc::new(SessionTxn { engine, remote: std::sync::atomic::AtomicBool::new(false) }),
            cursors: Default::default(),
            own_change: Default::default(),
        }
    }
}

/// How a transaction-control statement ends a block with remote work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnEnd {
    Commit,
    Rollback,
}

/// Classifies COMMIT/END/ROLLBACK/ABORT (also `... AND CHAIN`); refuses what cannot settle remote
/// work: ROLLBACK TO SAVEPOINT (connectors have no savepoints) and PREPARE TRANSACTION.
fn txn_end(sql: &str) -> Option<Result<TxnEnd, FedError>> {
    let words: Vec<String> = sql
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty())
        .take(3)
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let refuse = |what: &str| {
        Some(Err(FedError::Pg(
            PgError::error(
                "0A000",
                format!("{what} is not supported after a foreign table was used in the transaction"),
            )
            .with_hint("Commit or roll back the whole transaction."),
        )))
    };
    match words.first().map(String::as_str)? {
        "commit" | "end" => Some(Ok(TxnEnd::Commit)),
        "abort" => Some(Ok(TxnEnd::Rollback)),
        "rollback" => match words.get(1).map(String::as_str) {
            Some("to") => refuse("ROLLBACK TO SAVEPOINT"),
            Some("prepared") => refuse("ROLLBACK PREPARED"),
            _ => Some(Ok(TxnEnd::Rollback)),
        },
        "prepare" if words.get(1).is_some_and(|w| w == "transaction") => refuse("PREPARE TRANSACTION"),
        _ => None,
    }
}

/// The client's COMMIT or ROLLBACK of a block in which foreign tables were used.
struct TxnStatement {
    sql: String,
    end: TxnEnd,
    txn: Arc<SessionTxn>,
}

#[async_trait]
impl Statement for TxnStatement {
    fn param_types(&self) -> Vec<u32> {
        Vec::new()
    }

    fn columns(&self) -> Option<ResultColumns> {
        None
    }

    async fn execute(
        &self,
        _params: Vec<pgfed_proxy::federation::Param>,
        ctx: &UnitContext,
    ) -> Result<Execution, FedError> {
        let engine = &self.txn.engine;
        let result = match self.end {
            // COMMIT of a failed block: Postgres rolls back (and says ROLLBACK).
            TxnEnd::Commit if ctx.status == b'E' => {
                let tag = ctx.session.execute(&self.sql, &[]).await;
                engine.rollback().await;
                tag.map_err(FedError::from)
            }
            TxnEnd::Commit => match engine.pre_commit().await {
                Ok(()) => {
                    let tag = ctx.session.execute(&self.sql, &[]).await;
                    // The remote work is committed whatever the upstream says: no two-phase commit.
                    engine.commit().await;
                    tag.map_err(FedError::from)
                }
                Err(e) => {
                    let _ = ctx.session.execute("ROLLBACK", &[]).await;
                    engine.rollback().await;
                    Err(engine_error(e))
                }
            },
            TxnEnd::Rollback => {
                let tag = ctx.session.execute(&self.sql, &[]).await;
                engine.rollback().await;
                tag.map_err(FedError::from)
            }
        };
        self.txn.refresh().await;
        let tag = result?;
        Ok(no_rows(CommandTag::Fixed(tag)))
    }
}

/// An engine or catalog error as the client gets it: Postgres's own frame when it came from the
/// upstream, else pgfed's error with the SQLSTATE the error names.
pub(crate) fn engine_error(e: EngineError) -> FedError {
    if let Some(frame) = e.upstream_frame() {
        return FedError::Upstream(frame.clone());
    }
    let mut err = PgError::error(e.sqlstate().to_string(), e.to_string());
    if let Some(h) = e.hint() {
        err = err.with_hint(h);
    }
    FedError::Pg(err)
}

pub(crate) fn catalog_error(e: CatalogError) -> FedError {
    if let Some(frame) = e.upstream_frame() {
        return FedError::Upstream(frame.clone());
    }
    let mut err = PgError::error(e.sqlstate().to_string(), e.to_string());
    if let Some(d) = e.detail() {
        err = err.with_detail(d);
    }
    if let Some(h) = e.hint() {
        err = err.with_hint(h);
    }
    FedError::Pg(err)
}

/// Connector notices (Multicorn's log_to_postgres) for the client. DEBUG ones are dropped:
/// pgfed does not follow client_min_messages yet, and Postgres hides DEBUG by default.
fn notices(queue: &pgfed_proxy::federation::NoticeQueue) -> NoticeSink {
    let queue = queue.clone();
    Arc::new(move |n: Notice| {
        let (severity, code) = match n.level {
            NoticeLevel::Debug => return,
            NoticeLevel::Info => (Severity::Info, "00000"),
            NoticeLevel::Notice => (Severity::Notice, "00000"),
            NoticeLevel::Warning => (Severity::Warning, "01000"),
        };
        let mut e = PgError::new(severity, code, n.message);
        e.detail = n.detail;
        e.hint = n.hint;
        if let Ok(mut q) = queue.lock() {
            q.push(e);
        }
    })
}

/// The context catalog DDL and imports run with.
fn scan_context(ctx: &UnitContext) -> ScanContext {
    ScanContext { cancel: ctx.cancel.clone(), deadline: None, notices: notices(&ctx.notices), user: ctx.user.clone() }
}

/// The answer of a statement that returns no rows, only its tag.
fn no_rows(tag: CommandTag) -> Execution {
    Execution { columns: None, settings: Default::default(), rows: futures_util::stream::empty().boxed(), tag }
}

#[async_trait]
impl FederatedSession for Session {
    fn in_remote_transaction(&self) -> bool {
        self.txn.remote.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn abandon(&self) {
        self.txn.engine.rollback().await;
        self.settle_own_change();
    }

    async fn prepare(&self, sql: &str, param_types: &[u32], ctx: &UnitContext) -> Result<Arc<dyn Statement>, FedError> {
        if let Some(end) = txn_end(sql) {
            if !self.in_remote_transaction() {
                return Err(FedError::NotMine);
            }
            return Ok(Arc::new(TxnStatement { sql: sql.to_string(), end: end?, txn: self.txn.clone() }));
        }
        let parts = pgfed_catalog::split_statements(sql);
        if parts.len() > 1 && parts.iter().any(|p| pgfed_catalog::ddl::parse(p).is_some()) {
            return self.script(&parts, ctx).await;
        }
        if let Some(parsed) = pgfed_catalog::ddl::parse(sql) {
            let ddl = parsed.map_err(catalog_error)?;
            let route = pgfed_catalog::route(&ctx.session, &self.inner.registry, &ddl).await.map_err(catalog_error)?;
            return match route {
                pgfed_catalog::Route::Pgfed => Ok(Arc::new(Script {
                    inner: self.inner.clone(),
                    steps: vec![Step::Ddl(ddl, sql.to_string())],
                    own_change: self.own_change.clone(),
                })),
                pgfed_catalog::Route::Upstream => Err(FedError::NotMine),
            };
        }
        if let Some(cursor) = cursor::parse(sql) {
            return self.cursor_statement(cursor?, sql, param_types, ctx).await;
        }
        Ok(Arc::new(self.prepare_query(sql, param_types, ctx).await?))
    }

    fn claims_statement(&self, sql: &str) -> bool {
        cursor::names_cursor(sql, &self.cursors)
    }

    fn transaction_ended(&self) {
        self.cursors.close(None);
        self.settle_own_change();
    }

    fn cursor_columns(&self, name: &str) -> Option<ResultColumns> {
        self.cursors.columns(name)
    }
}

impl Session {
    /// Plans a query (or EXPLAIN, or a write) on foreign tables.
    async fn prepare_query(
        &self,
        sql: &str,
        param_types: &[u32],
        ctx: &UnitContext,
    ) -> Result<QueryStatement, FedError> {
        let facts = facts::read(&ctx.session).await?;
        // The router matched a name in any schema; with the session's real search path the
        // statement may touch no foreign table at all.
        let path: Vec<&str> = facts.search_path.iter().map(String::as_str).collect();
        let decision = self.inner.router.route(sql.as_bytes(), &path);
        match decision.route {
            pgfed_router::Route::Upstream => return Err(FedError::NotMine),
            // Text sqlparser cannot read but that names a foreign table: reads and writes are
            // refused below (the engine cannot parse them either); anything else is Postgres's.
            _ if decision.path == pgfed_router::Path::Unparsable && !reads_or_writes(sql) => {
                return Err(FedError::NotMine);
            }
            pgfed_router::Route::Pgfed { tables }
                if tables.is_empty() && decision.path == pgfed_router::Path::Parsed =>
            {
                return Err(FedError::Pg(PgError::error(
                    "0A000",
                    "FROM ONLY is not supported in statements on foreign tables",
                )));
            }
            _ => {}
        }
        let sctx = StatementContext {
            session: Arc::new(ctx.session.clone()),
            catalog: self.inner.snapshot.load_full(),
            access: Arc::new(crate::access::FederationAccess { service: self.inner.service.get().cloned() }),
            user: facts.user.clone(),
            search_path: facts.search_path.clone(),
            time_zone: facts.time_zone.clone(),
            statement_timeout: facts.statement_timeout,
            require_pushdown: facts.require_pushdown,
            cancel: ctx.cancel.clone(),
            notices: notices(&ctx.notices),
        };
        let prepared = self.txn.engine.prepare(sql, param_types, sctx).await.map_err(engine_error)?;
        Ok(QueryStatement { prepared, settings: facts.settings, txn: self.txn.clone() })
    }

    async fn cursor_statement(
        &self,
        statement: cursor::CursorStatement,
        sql: &str,
        param_types: &[u32],
        ctx: &UnitContext,
    ) -> Result<Arc<dyn Statement>, FedError> {
        use cursor::CursorStatement as C;
        match statement {
            C::Declare { name, query } => {
                let query = self.prepare_query(&query, param_types, ctx).await?;
                Ok(Arc::new(DeclareStatement { name, query, cursors: self.cursors.clone() }))
            }
            C::Fetch { name, count } if self.cursors.contains(&name) => {
                Ok(Arc::new(FetchStatement { name, count, cursors: self.cursors.clone() }))
            }
            C::Close { name: Some(name) } if self.cursors.contains(&name) => {
                Ok(Arc::new(CloseStatement { name: Some(name), sql: sql.to_string(), cursors: self.cursors.clone() }))
            }
            C::Close { name: None } if !self.cursors.is_empty() => {
                Ok(Arc::new(CloseStatement { name: None, sql: sql.to_string(), cursors: self.cursors.clone() }))
            }
            _ => Err(FedError::NotMine),
        }
    }
}

/// `DECLARE name CURSOR FOR <query on foreign tables>`: runs the query and keeps its stream.
struct DeclareStatement {
    name: String,
    query: QueryStatement,
    cursors: cursor::SharedCursors,
}

#[async_trait]
impl Statement for DeclareStatement {
    fn param_types(&self) -> Vec<u32> {
        self.query.param_types()
    }

    fn columns(&self) -> Option<ResultColumns> {
        None
    }

    async fn execute(
        &self,
        params: Vec<pgfed_proxy::federation::Param>,
        ctx: &UnitContext,
    ) -> Result<Execution, FedError> {
        if ctx.status == b'I' {
            return Err(FedError::Pg(PgError::error("25P01", "DECLARE CURSOR can only be used in transaction blocks")));
        }
        let exec = self.query.execute(params, ctx).await?;
        let columns = exec
            .columns
            .ok_or_else(|| FedError::Pg(PgError::error("42P11", "cursor can only scan a query that returns rows")))?;
        self.cursors.insert(
            self.name.clone(),
            cursor::Cursor { columns, settings: exec.settings, rows: exec.rows, held: None },
        )?;
        Ok(no_rows(CommandTag::Fixed("DECLARE CURSOR".into())))
    }
}

/// `FETCH [n | ALL] FROM name` of a cursor over foreign tables.
struct FetchStatement {
    name: String,
    count: Option<u64>,
    cursors: cursor::SharedCursors,
}

#[async_trait]
impl Statement for FetchStatement {
    fn param_types(&self) -> Vec<u32> {
        Vec::new()
    }

    fn columns(&self) -> Option<ResultColumns> {
        self.cursors.columns(&self.name)
    }

    async fn execute(
        &self,
        _params: Vec<pgfed_proxy::federation::Param>,
        _ctx: &UnitContext,
    ) -> Result<Execution, FedError> {
        let mut c = self.cursors.take(&self.name)?;
        let fetched = cursor::fetch(&mut c, self.count).await;
        let (columns, settings) = (c.columns.clone(), c.settings.clone());
        self.cursors.put_back(&self.name, c);
        let (batches, n) = fetched?;
        Ok(Execution {
            columns: Some(columns),
            settings,
            rows: futures_util::stream::iter(batches.into_iter().map(Ok)).boxed(),
            tag: CommandTag::Fixed(format!("FETCH {n}")),
        })
    }
}

/// `CLOSE name | ALL`. CLOSE ALL also closes the upstream's own cursors.
struct CloseStatement {
    name: Option<String>,
    sql: String,
    cursors: cursor::SharedCursors,
}

#[async_trait]
impl Statement for CloseStatement {
    fn param_types(&self) -> Vec<u32> {
        Vec::new()
    }

    fn columns(&self) -> Option<ResultColumns> {
        None
    }

    async fn execute(
        &self,
        _params: Vec<pgfed_proxy::federation::Param>,
        ctx: &UnitContext,
    ) -> Result<Execution, FedError> {
        self.cursors.close(self.name.as_deref());
        if self.name.is_none() {
            ctx.session.execute(&self.sql, &[]).await?;
        }
        Ok(no_rows(CommandTag::Fixed("CLOSE CURSOR".into())))
    }
}

impl Session {
    /// SQL/MED DDL, alone or in a simple Query among other statements (a migration script): each
    /// statement runs in order in the same (implicit or explicit) transaction. Statements that
    /// return rows are refused: their rows could not be sent alongside pgfed's answers.
    async fn script(&self, parts: &[&str], ctx: &UnitContext) -> Result<Arc<dyn Statement>, FedError> {
        let mut steps = Vec::with_capacity(parts.len());
        let mut any_pgfed = false;
        for part in parts {
            match pgfed_catalog::ddl::parse(part) {
                Some(parsed) => {
                    let ddl = parsed.map_err(catalog_error)?;
                    // Routed again when it runs: objects made by earlier steps count then.
                    let route = pgfed_catalog::route(&ctx.session, &self.inner.registry, &ddl).await;
                    any_pgfed |= matches!(route, Ok(pgfed_catalog::Route::Pgfed));
                    steps.push(Step::Ddl(ddl, part.to_string()));
                }
                None if returns_rows(part) => {
                    return Err(FedError::Pg(
                        PgError::error(
                            "0A000",
                            "a query string with SQL/MED DDL may not also hold statements that return rows",
                        )
                        .with_hint("Send the query on its own."),
                    ));
                }
                None => steps.push(Step::Upstream(part.to_string())),
            }
        }
        if !any_pgfed {
            return Err(FedError::NotMine);
        }
        Ok(Arc::new(Script { inner: self.inner.clone(), steps, own_change: self.own_change.clone() }))
    }
}

/// Whether a statement (by its first keyword) reads or writes tables.
fn reads_or_writes(sql: &str) -> bool {
    let first = sql.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("").to_ascii_lowercase();
    matches!(
        first.as_str(),
        "select"
            | "with"
            | "values"
            | "table"
            | "insert"
            | "update"
            | "delete"
            | "merge"
            | "copy"
            | "declare"
            | "explain"
    )
}

/// Whether a statement (by its first keyword) may return rows.
fn returns_rows(sql: &str) -> bool {
    let first = sql.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("").to_ascii_lowercase();
    matches!(first.as_str(), "select" | "with" | "values" | "table" | "show" | "explain" | "fetch")
        || sql.to_ascii_lowercase().contains("returning")
}

enum Step {
    /// SQL/MED DDL, and its text (for Postgres, if it turns out to be about Postgres's own objects).
    Ddl(Ddl, String),
    /// Postgres's own statement, run in the client's session.
    Upstream(String),
}

/// SQL/MED DDL statements, each routed again when it runs (objects made by earlier steps, or in
/// the transaction since Parse, count), and any ordinary statements between them, in order.
struct Script {
    inner: Arc<Inner>,
    steps: Vec<Step>,
    own_change: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl Statement for Script {
    fn param_types(&self) -> Vec<u32> {
        Vec::new()
    }

    fn columns(&self) -> Option<ResultColumns> {
        None
    }

    async fn execute(
        &self,
        _params: Vec<pgfed_proxy::federation::Param>,
        ctx: &UnitContext,
    ) -> Result<Execution, FedError> {
        let scan = scan_context(ctx);
        let mut tags = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let tag = match step {
                Step::Ddl(ddl, text) => {
                    match pgfed_catalog::route(&ctx.session, &self.inner.registry, ddl).await.map_err(catalog_error)? {
                        pgfed_catalog::Route::Pgfed => {
                            pgfed_catalog::execute_ddl(&ctx.session, &self.inner.registry, ddl, &scan)
                                .await
                                .map_err(catalog_error)?
                        }
                        pgfed_catalog::Route::Upstream => ctx.session.execute(text, &[]).await?,
                    }
                }
                Step::Upstream(sql) => ctx.session.execute(sql, &[]).await?,
            };
            tags.push(tag);
        }
        let snapshot = Snapshot::load(&ctx.session).await.map_err(catalog_error)?;
        install_own(&self.inner, &self.own_change, snapshot);
        Ok(no_rows(CommandTag::Many(tags)))
    }
}

/// A query (or EXPLAIN) planned by the engine.
struct QueryStatement {
    prepared: Prepared,
    settings: pgfed_encode::TextSettings,
    txn: Arc<SessionTxn>,
}

fn specs(columns: &[OutputColumn]) -> Vec<ColumnSpec> {
    columns
        .iter()
        .map(|c| ColumnSpec {
            pg_type: Some(c.pg_type.clone()),
            typmod: c.typmod,
            table_oid: c.table_oid,
            column_attr: c.attnum,
        })
        .collect()
}

#[async_trait]
impl Statement for QueryStatement {
    fn param_types(&self) -> Vec<u32> {
        self.prepared.param_types.iter().map(|t| t.oid()).collect()
    }

    fn columns(&self) -> Option<ResultColumns> {
        if !self.prepared.returns_rows() {
            return None;
        }
        let fields: Vec<Field> = self
            .prepared
            .columns
            .iter()
            .map(|c| Field::new(c.name.clone(), c.pg_type.arrow_type(c.typmod), true))
            .collect();
        Some(ResultColumns { schema: Arc::new(Schema::new(fields)), specs: specs(&self.prepared.columns) })
    }

    async fn execute(
        &self,
        params: Vec<pgfed_proxy::federation::Param>,
        ctx: &UnitContext,
    ) -> Result<Execution, FedError> {
        let params: Vec<Param> = params
            .into_iter()
            .map(|p| match p.value {
                None => Param::Null,
                Some(v) if p.binary => Param::Binary(v),
                Some(v) => Param::Text(String::from_utf8_lossy(&v).into_owned()),
            })
            .collect();
        // Inside a block, remote work joins one remote transaction per table, settled when the
        // client's COMMIT/ROLLBACK passes (TxnStatement); otherwise the statement is its own.
        let mode = if ctx.status == b'T' { TxnMode::Block } else { TxnMode::Autocommit };
        let executed = self.prepared.execute_in(&params, &ctx.cancel, mode).await;
        if mode == TxnMode::Block {
            self.txn.refresh().await;
        }
        let mut stream = executed.map_err(engine_error)?;
        if self.prepared.is_write() {
            // The tag counts rows written, known at the end: run the write to completion, then
            // send the RETURNING rows (held in memory) and the tag.
            let mut batches = Vec::new();
            while let Some(b) = stream.next().await {
                batches.push(b.map_err(engine_error)?);
            }
            let columns = self.columns().map(|c| ResultColumns { schema: stream.schema(), specs: c.specs });
            return Ok(Execution {
                columns,
                settings: self.settings.clone(),
                rows: futures_util::stream::iter(batches.into_iter().map(Ok)).boxed(),
                tag: CommandTag::Fixed(stream.command_tag()),
            });
        }
        let schema = stream.schema();
        // Output names follow the plan; types and origins follow the prepared description.
        let columns = ResultColumns { schema, specs: specs(&self.prepared.columns) };
        let rows = futures_util::stream::unfold(Some(stream), |state| async move {
            let mut stream = state?;
            match stream.next().await {
                Some(Ok(batch)) => Some((Ok(batch), Some(stream))),
                Some(Err(e)) => Some((Err(engine_error(e)), None)),
                None => None,
            }
        })
        .boxed();
        Ok(Execution { columns: Some(columns), settings: self.settings.clone(), rows, tag: CommandTag::Select })
    }
}
