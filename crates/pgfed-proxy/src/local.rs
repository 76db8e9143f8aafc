//! Units of work pgfed answers itself.
//!
//! The relay stops at the first frame that is pgfed's (a routed Query or Parse, or a Bind,
//! Describe, Execute or Close naming one of pgfed's statements or portals), lets everything
//! before it finish, then hands the session here. A unit is one simple Query, or a run of
//! extended-protocol messages up to Sync. While it runs, a [`Driver`] serves the statement's
//! queries on the client's upstream connection (so local tables, privilege checks and catalog
//! DDL run in the client's own transaction); when it ends with Sync, the driver syncs the
//! upstream and the client gets ReadyForQuery with the upstream's transaction status.
//!
//! One pipeline segment (messages up to a Sync) may mix pgfed's statements with ordinary ones,
//! and all of it shares one implicit transaction, as in Postgres. A unit that meets an ordinary
//! frame before Sync ends without Sync: the relay forwards the rest and the client's Sync, whose
//! ReadyForQuery then comes from the upstream. Ordinary messages before pgfed's (pgjdbc sends
//! BEGIN that way) are answered first: the relay sends the upstream a Flush and counts their
//! closing answers before the unit starts. If one of them failed, Postgres ignores the rest of
//! the segment, and the unit skips pgfed's messages up to Sync too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::RecordBatch;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use pgfed_encode::{BatchEncoder, TextSettings};
use pgfed_session::{Connection, Driver, UpstreamSession};
use pgfed_wire::extended::{self, Bind, Execute, Parse, Target, reply};
use pgfed_wire::{FrameScanner, PgError, Scanned, frontend, message, sqlstate};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::error::SessionError;
use crate::federation::{
    CommandTag, Execution, FedError, FederatedSession, Federation, Param, ResultColumns, Statement, UnitContext,
};

/// Output is written to the client once this much is buffered.
const FLUSH_AT: usize = 64 * 1024;

/// The session's cancel hook for local statements: the cancel path fires whatever token is
/// current.
#[derive(Default)]
pub(crate) struct LocalCancel {
    token: Mutex<Option<CancellationToken>>,
}

impl LocalCancel {
    /// Cancels the running local statement; false when none runs.
    pub(crate) fn cancel(&self) -> bool {
        match self.token.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    fn arm(&self) -> CancellationToken {
        let t = CancellationToken::new();
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(t.clone());
        t
    }

    fn disarm(&self) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// A portal over one of pgfed's statements.
struct Portal {
    statement: Arc<dyn Statement>,
    params: Vec<Param>,
    result_formats: Vec<i16>,
    running: Option<Running>,
    /// The statement ran to completion; executing again returns no rows.
    done: bool,
}

struct Running {
    encoder: Option<BatchEncoder>,
    rows: BoxStream<'static, Result<RecordBatch, FedError>>,
    /// Rows of a batch not yet sent (after a row-limited Execute).
    held: Option<(RecordBatch, usize)>,
    sent: u64,
    tag: CommandTag,
}

/// pgfed's half of the session: its statements and portals, and the upstream driver.
pub(crate) struct LocalState {
    conn: Connection,
    driver: Driver,
    statements: HashMap<String, Arc<dyn Statement>>,
    portals: HashMap<String, Portal>,
    pub(crate) cancel: Arc<LocalCancel>,
    fed: Option<Box<dyn FederatedSession>>,
    notices: crate::federation::NoticeQueue,
}

impl LocalState {
    pub(crate) fn new(cancel: Arc<LocalCancel>) -> Self {
        let (conn, driver) = pgfed_session::channel();
        Self {
            conn,
            driver,
            statements: HashMap::new(),
            portals: HashMap::new(),
            cancel,
            fed: None,
            notices: Default::default(),
        }
    }

    /// Runs `work` with this session's upstream connection served, outside any client exchange
    /// (the catalog load at session start). The upstream's ReadyForQuery stays with the driver.
    pub(crate) async fn run_background<UR, UW>(
        &mut self,
        up_r: &mut UR,
        up_w: &mut UW,
        up_buf: &mut BytesMut,
        work: impl FnOnce(Connection) -> futures_util::future::BoxFuture<'static, ()>,
    ) -> Result<(), SessionError>
    where
        UR: AsyncRead + Unpin,
        UW: AsyncWrite + Unpin,
    {
        let job = work(self.conn.clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let body = async move {
            job.await;
            let _ = done_tx.send(());
        };
        let serve = self.driver.serve(up_r, up_w, up_buf, async {
            let _ = done_rx.await;
        });
        let (served, ()) = tokio::join!(serve, body);
        served.map(|_| ()).map_err(|e| SessionError::Federation(e.to_string()))
    }

    /// Whether extended-protocol frames must be looked at (pgfed owns some name).
    pub(crate) fn owns_any(&self) -> bool {
        // A federated session may own SQL cursors, which are portals too.
        !self.statements.is_empty() || !self.portals.is_empty() || self.fed.is_some()
    }

    /// Whether a Bind/Describe/Execute/Close frame names something pgfed owns. Frames that take a
    /// name away from pgfed (an ordinary Parse or Bind reusing the unnamed statement or portal)
    /// release it here.
    pub(crate) fn claims_frame(&mut self, tag: u8, frame: &[u8]) -> bool {
        match tag {
            frontend::BIND => match extended::bind_names(frame) {
                Some((portal, statement)) => {
                    if self.statements.contains_key(statement) {
                        return true;
                    }
                    if portal.is_empty() {
                        self.portals.remove("");
                        false
                    } else {
                        self.portals.contains_key(portal)
                    }
                }
                None => false,
            },
            frontend::DESCRIBE | frontend::CLOSE => match Target::read(frame) {
                Some(Target { kind: b'S', name }) => self.statements.contains_key(name),
                Some(Target { name, .. }) => {
                    self.portals.contains_key(name)
                        || (tag == frontend::DESCRIBE
                            && self.fed.as_ref().is_some_and(|f| f.cursor_columns(name).is_some()))
                }
                None => false,
            },
            frontend::EXECUTE => Execute::read(frame).is_some_and(|e| self.portals.contains_key(e.portal)),
            _ => false,
        }
    }

    /// An ordinary Parse of `name` goes upstream: pgfed's statement of that name, if any, is
    /// replaced there (unnamed) or the Parse must fail as a duplicate (named; returns true so that
    /// pgfed answers it).
    pub(crate) fn parse_goes_upstream(&mut self, name: &str) -> bool {
        if name.is_empty() {
            self.statements.remove("");
            false
        } else {
            self.statements.contains_key(name)
        }
    }

    /// Whether an ordinary transaction-control statement must come to pgfed because the block
    /// holds remote work.
    pub(crate) fn claims_transaction_end(&self, text: &[u8]) -> bool {
        self.fed.as_ref().is_some_and(|f| {
            (f.in_remote_transaction() && crate::federation::ends_transaction(text))
                || std::str::from_utf8(text).is_ok_and(|t| f.claims_statement(t))
        })
    }

    /// The session ends: remote work still open is undone.
    pub(crate) async fn abandon(self) {
        // Portals (and their streams) go first: they may hold the remote transactions.
        drop(self.portals);
        if let Some(f) = &self.fed {
            f.abandon().await;
        }
    }

    /// A simple Query destroys the unnamed statement and portal, as in Postgres.
    pub(crate) fn on_simple_query(&mut self) {
        self.statements.remove("");
        self.portals.remove("");
    }

    /// A ReadyForQuery reached the client: the segment ended, and with status `I` the
    /// transaction too (portals are gone).
    pub(crate) fn on_ready(&mut self, status: u8) {
        if status == b'I' {
            self.portals.clear();
            if let Some(f) = &self.fed {
                f.transaction_ended();
            }
        }
        self.driver.segment_ended(status);
    }
}

/// How a unit ended.
pub(crate) enum UnitEnd {
    /// Answered through ReadyForQuery, whose status is this.
    Synced(u8),
    /// Stopped at a frame that is not pgfed's; the relay continues from it. `answered`: some
    /// extended messages were answered (so the upstream's pipeline segment is open). `bounce`:
    /// the first frame left is one pgfed looked at and handed back, which the relay must forward
    /// without claiming it again.
    Handover { answered: bool, bounce: bool },
}

/// What the unit needs of the relay's client side.
pub(crate) struct ClientSide<'a, R, W> {
    pub r: &'a mut R,
    pub w: &'a mut W,
    pub buf: &'a mut BytesMut,
    pub scanner: &'a mut FrameScanner,
    pub bytes_in: &'a mut u64,
    pub bytes_out: &'a mut u64,
}

/// Why the unit stopped the session.
pub(crate) enum UnitFailure {
    ClientGone,
    Session(SessionError),
}

/// Classifies the frame at the start of the client buffer for the unit loop.
enum Next {
    Frame(Bytes),
    /// Not pgfed's: leave it for the relay.
    Foreign,
}

/// Runs one unit. `first_is_pgfed` says the relay already decided the first frame is pgfed's.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_unit<CR, CW, UR, UW>(
    fed: &Arc<dyn Federation>,
    local: &mut LocalState,
    client: ClientSide<'_, CR, CW>,
    up_r: &mut UR,
    up_w: &mut UW,
    up_buf: &mut BytesMut,
    status: u8,
    segment_failed: bool,
    user: &str,
    database: &str,
    router_claims: &(dyn Fn(&[u8]) -> bool + Sync),
    cancel_upstream: &(dyn Fn() + Sync),
) -> Result<(UnitEnd, Vec<Bytes>), UnitFailure>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let cancel = local.cancel.arm();
    let ctx = UnitContext {
        session: local.conn.clone(),
        status,
        cancel: cancel.clone(),
        user: user.to_string(),
        database: database.to_string(),
        notices: local.notices.clone(),
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let fed: &dyn FederatedSession = &**local.fed.get_or_insert_with(|| fed.session());
    let LocalState { driver, statements, portals, .. } = local;
    let mut unit = Unit { fed, statements, portals, ctx, out: BytesMut::new(), failed: false, answered: false, client };
    let body = async {
        let r = if segment_failed { unit.skip_to_sync().await } else { unit.run(router_claims).await };
        // Whatever happened, the driver must stop serving so that the upstream is synced.
        drop(done_tx);
        r
    };
    let serve = driver.serve_cancellable(
        up_r,
        up_w,
        up_buf,
        async {
            let _ = done_rx.await;
        },
        &cancel,
        cancel_upstream,
    );
    let (served, body) = tokio::join!(serve, body);
    local.cancel.disarm();
    let finished = served.map_err(|e| UnitFailure::Session(SessionError::Federation(e.to_string())))?;
    let end = body?;
    Ok((
        match end {
            // A unit that never touched the upstream leaves its status as it was.
            UnitEnd::Synced(_) => UnitEnd::Synced(finished.status.unwrap_or(status)),
            other => other,
        },
        finished.side,
    ))
}

struct Unit<'a, 'c, CR, CW> {
    fed: &'a dyn FederatedSession,
    statements: &'a mut HashMap<String, Arc<dyn Statement>>,
    portals: &'a mut HashMap<String, Portal>,
    ctx: UnitContext,
    out: BytesMut,
    /// An error was sent; skip to Sync, as Postgres does.
    failed: bool,
    /// Some message of this unit was answered.
    answered: bool,
    client: ClientSide<'c, CR, CW>,
}

impl<CR: AsyncRead + Unpin, CW: AsyncWrite + Unpin> Unit<'_, '_, CR, CW> {
    async fn run(&mut self, router_claims: &(dyn Fn(&[u8]) -> bool + Sync)) -> Result<UnitEnd, UnitFailure> {
        let mut first = true;
        loop {
            let next = self.next_frame(first, router_claims).await?;
            first = false;
            let frame = match next {
                Next::Frame(f) => f,
                Next::Foreign => {
                    self.flush().await?;
                    return Ok(UnitEnd::Handover { answered: self.answered, bounce: false });
                }
            };
            let tag = frame[0];
            if self.failed && tag != frontend::SYNC {
                continue;
            }
            let r = match tag {
                frontend::QUERY => {
                    if self.simple_query(&frame).await {
                        return self.bounce(frame).await;
                    }
                    // The upstream's ReadyForQuery status is the driver's; the relay writes it.
                    return self.finish_unit().await;
                }
                frontend::PARSE => match self.parse(&frame).await {
                    Err(FedError::NotMine) => return self.bounce(frame).await,
                    other => other,
                },
                frontend::BIND => self.bind(&frame),
                frontend::DESCRIBE => self.describe(&frame),
                frontend::EXECUTE => self.execute(&frame).await,
                frontend::CLOSE => self.close(&frame),
                frontend::FLUSH => {
                    self.flush().await?;
                    Ok(())
                }
                frontend::SYNC => return self.finish_unit().await,
                _ => Ok(()),
            };
            self.answered = true;
            if let Err(e) = r {
                self.fail(e).await?;
            }
            if self.out.len() >= FLUSH_AT {
                self.flush().await?;
            }
        }
    }

    /// Puts `frame` back at the front of the client buffer for the relay to forward.
    async fn bounce(&mut self, frame: Bytes) -> Result<UnitEnd, UnitFailure> {
        let rest = self.client.buf.split();
        self.client.buf.extend_from_slice(&frame);
        self.client.buf.unsplit(rest);
        self.flush().await?;
        Ok(UnitEnd::Handover { answered: self.answered, bounce: true })
    }

    async fn finish_unit(&mut self) -> Result<UnitEnd, UnitFailure> {
        // An error must abort the transaction, as any error would in Postgres: a block goes to the
        // failed state, and an implicit transaction must not commit what the statement did first.
        if self.failed {
            let _ = self.ctx.session.execute(ABORT_SQL, &[]).await;
        }
        self.flush().await?;
        Ok(UnitEnd::Synced(self.ctx.status))
    }

    /// An ordinary message earlier in this segment failed: Postgres ignores everything up to
    /// Sync, and so does pgfed. The relay forwards the Sync; the upstream answers it.
    async fn skip_to_sync(&mut self) -> Result<UnitEnd, UnitFailure> {
        while self.peek_tag().await? != frontend::SYNC {
            let _ = self.take_frame().await?;
        }
        Ok(UnitEnd::Handover { answered: true, bounce: false })
    }

    async fn fail(&mut self, e: FedError) -> Result<(), UnitFailure> {
        match e {
            FedError::Pg(e) => e.to_frame_into(&mut self.out),
            FedError::Upstream(frame) => self.out.extend_from_slice(&frame),
            FedError::NotMine => PgError::error(sqlstate::INTERNAL_ERROR, "statement is not pgfed's after all")
                .to_frame_into(&mut self.out),
        }
        self.failed = true;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), UnitFailure> {
        let notices: Vec<PgError> =
            std::mem::take(&mut *self.ctx.notices.lock().unwrap_or_else(PoisonError::into_inner));
        if self.out.is_empty() && notices.is_empty() {
            return Ok(());
        }
        let mut framed = BytesMut::new();
        for n in &notices {
            n.to_frame_into(&mut framed);
        }
        framed.unsplit(self.out.split());
        let out = framed.freeze();
        *self.client.bytes_out += out.len() as u64;
        self.client.w.write_all(&out).await.map_err(|_| UnitFailure::ClientGone)?;
        self.client.w.flush().await.map_err(|_| UnitFailure::ClientGone)
    }

    /// Waits until the buffer starts with a whole frame; returns its tag.
    async fn peek_tag(&mut self) -> Result<u8, UnitFailure> {
        Ok(self.peek_len().await?.0)
    }

    async fn peek_len(&mut self) -> Result<(u8, usize), UnitFailure> {
        loop {
            match self.client.scanner.next(self.client.buf, |_| true) {
                Ok(Scanned::Whole { tag, frame_len }) => return Ok((tag, frame_len)),
                Ok(Scanned::NeedMore { need }) => {
                    // Output first: a client may wait for it before sending more.
                    self.flush().await?;
                    if self.client.buf.capacity() - self.client.buf.len() < need {
                        self.client.buf.reserve(need.max(8192));
                    }
                    match self.client.r.read_buf(self.client.buf).await {
                        Ok(0) | Err(_) => return Err(UnitFailure::ClientGone),
                        Ok(n) => *self.client.bytes_in += n as u64,
                    }
                }
                Ok(Scanned::Pass { .. } | Scanned::Header { .. }) => {
                    return Err(UnitFailure::Session(SessionError::Federation("frame scanner out of step".into())));
                }
                Err(e) => return Err(UnitFailure::Session(SessionError::from(e))),
            }
        }
    }

    async fn take_frame(&mut self) -> Result<Bytes, UnitFailure> {
        let (_, len) = self.peek_len().await?;
        Ok(self.client.buf.split_to(len).freeze())
    }

    /// The next frame if it is pgfed's to answer (or Sync/Flush, which end or flush the unit).
    async fn next_frame(
        &mut self,
        first: bool,
        router_claims: &(dyn Fn(&[u8]) -> bool + Sync),
    ) -> Result<Next, UnitFailure> {
        let (tag, len) = self.peek_len().await?;
        let frame = &self.client.buf[..len];
        let mine = first
            || self.failed
            || match tag {
                frontend::SYNC | frontend::FLUSH => true,
                frontend::PARSE => match Parse::read(frame) {
                    Some(p) => {
                        router_claims(p.query.as_bytes())
                            || self.statements.contains_key(p.name)
                            || (self.fed.in_remote_transaction()
                                && crate::federation::ends_transaction(p.query.as_bytes()))
                            || self.fed.claims_statement(p.query)
                    }
                    // Malformed: Postgres will say so.
                    None => false,
                },
                frontend::BIND => match extended::bind_names(frame) {
                    Some((portal, stmt)) => self.statements.contains_key(stmt) || self.portals.contains_key(portal),
                    None => false,
                },
                frontend::DESCRIBE | frontend::CLOSE => match Target::read(frame) {
                    Some(Target { kind: b'S', name }) => self.statements.contains_key(name),
                    Some(Target { name, .. }) => {
                        self.portals.contains_key(name)
                            || (tag == frontend::DESCRIBE && self.fed.cursor_columns(name).is_some())
                    }
                    None => false,
                },
                frontend::EXECUTE => Execute::read(frame).is_some_and(|e| self.portals.contains_key(e.portal)),
                _ => false,
            };
        if !mine {
            return Ok(Next::Foreign);
        }
        Ok(Next::Frame(self.take_frame().await?))
    }

    fn aborted(&self) -> Option<FedError> {
        (self.ctx.status == b'E').then(|| {
            FedError::Pg(PgError::error(
                sqlstate::IN_FAILED_SQL_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ))
        })
    }

    /// Answers a simple Query; true if it turned out not to be pgfed's.
    async fn simple_query(&mut self, frame: &[u8]) -> bool {
        let Some(sql) = message::query_text(frame).and_then(|t| std::str::from_utf8(t).ok()) else {
            let e = FedError::Pg(PgError::error(sqlstate::PROTOCOL_VIOLATION, "invalid Query message"));
            let _ = self.fail(e).await;
            return false;
        };
        if !crate::federation::ends_transaction(sql.as_bytes())
            && let Some(e) = self.aborted()
        {
            let _ = self.fail(e).await;
            return false;
        }
        let statement = match self.fed.prepare(sql, &[], &self.ctx).await {
            Ok(s) => s,
            Err(FedError::NotMine) => return true,
            Err(e) => {
                let _ = self.fail(e).await;
                return false;
            }
        };
        let mut portal =
            Portal { statement, params: Vec::new(), result_formats: Vec::new(), running: None, done: false };
        if let Err(e) = self.run_portal(&mut portal, 0, true).await {
            let _ = self.fail(e).await;
        }
        false
    }

    async fn parse(&mut self, frame: &[u8]) -> Result<(), FedError> {
        let p = Parse::read(frame).ok_or_else(|| protocol("invalid Parse message"))?;
        if !p.name.is_empty() && self.statements.contains_key(p.name) {
            return Err(FedError::Pg(PgError::error(
                sqlstate::DUPLICATE_PREPARED_STATEMENT,
                format!("prepared statement \"{}\" already exists", p.name),
            )));
        }
        if !crate::federation::ends_transaction(p.query.as_bytes())
            && let Some(e) = self.aborted()
        {
            return Err(e);
        }
        let statement = self.fed.prepare(p.query, &p.param_types, &self.ctx).await?;
        self.statements.insert(p.name.to_string(), statement);
        reply::parse_complete(&mut self.out);
        Ok(())
    }

    fn bind(&mut self, frame: &[u8]) -> Result<(), FedError> {
        let b = Bind::read(frame).ok_or_else(|| protocol("invalid Bind message"))?;
        let statement = self.statements.get(b.statement).cloned().ok_or_else(|| {
            FedError::Pg(PgError::error(
                sqlstate::UNDEFINED_PREPARED_STATEMENT,
                format!("prepared statement \"{}\" does not exist", b.statement),
            ))
        })?;
        if !b.portal.is_empty() && self.portals.contains_key(b.portal) {
            return Err(FedError::Pg(PgError::error(
                sqlstate::DUPLICATE_CURSOR,
                format!("portal \"{}\" already exists", b.portal),
            )));
        }
        let expected = statement.param_types().len();
        if b.params.len() != expected {
            return Err(FedError::Pg(PgError::error(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "bind message supplies {} parameters, but prepared statement \"{}\" requires {expected}",
                    b.params.len(),
                    b.statement
                ),
            )));
        }
        let params = b
            .params
            .iter()
            .enumerate()
            .map(|(i, v)| Param { value: v.map(Bytes::copy_from_slice), binary: b.param_format(i) == 1 })
            .collect();
        if let Some(cols) = statement.columns() {
            // Reject bad format codes now, as Postgres does at Bind.
            pgfed_encode::Format::resolve(&b.result_formats, cols.schema.fields().len())
                .map_err(|e| FedError::Pg(PgError::error(sqlstate::PROTOCOL_VIOLATION, e.to_string())))?;
        }
        self.portals.insert(
            b.portal.to_string(),
            Portal { statement, params, result_formats: b.result_formats, running: None, done: false },
        );
        reply::bind_complete(&mut self.out);
        Ok(())
    }

    fn describe(&mut self, frame: &[u8]) -> Result<(), FedError> {
        let t = Target::read(frame).ok_or_else(|| protocol("invalid Describe message"))?;
        if t.kind == b'S' {
            let s = self.statements.get(t.name).ok_or_else(|| {
                FedError::Pg(PgError::error(
                    sqlstate::UNDEFINED_PREPARED_STATEMENT,
                    format!("prepared statement \"{}\" does not exist", t.name),
                ))
            })?;
            reply::parameter_description(&mut self.out, &s.param_types());
            write_description(&mut self.out, s.columns(), &[])?;
        } else if let Some(p) = self.portals.get(t.name) {
            write_description(&mut self.out, p.statement.columns(), &p.result_formats)?;
        } else {
            let cols = self.fed.cursor_columns(t.name).ok_or_else(|| undefined_portal(t.name))?;
            // A SQL cursor's rows come back in text, as FETCH sends them.
            write_description(&mut self.out, Some(cols), &[])?;
        }
        Ok(())
    }

    async fn execute(&mut self, frame: &[u8]) -> Result<(), FedError> {
        let e = Execute::read(frame).ok_or_else(|| protocol("invalid Execute message"))?;
        let name = e.portal.to_string();
        let mut portal = self.portals.remove(&name).ok_or_else(|| undefined_portal(&name))?;
        let r = self.run_portal(&mut portal, e.max_rows.max(0) as u64, false).await;
        // An unnamed portal lives on until the next Bind or the end of the transaction.
        self.portals.insert(name, portal);
        r
    }

    fn close(&mut self, frame: &[u8]) -> Result<(), FedError> {
        let t = Target::read(frame).ok_or_else(|| protocol("invalid Close message"))?;
        if t.kind == b'S' {
            self.statements.remove(t.name);
        } else {
            self.portals.remove(t.name);
        }
        reply::close_complete(&mut self.out);
        Ok(())
    }

    /// Sends up to `max_rows` rows (0: all) of a portal, starting it if needed. `describe` adds
    /// the RowDescription (simple Query).
    async fn run_portal(&mut self, portal: &mut Portal, max_rows: u64, describe: bool) -> Result<(), FedError> {
        if portal.done {
            reply::command_complete(&mut self.out, &CommandTag::Select.render(0));
            return Ok(());
        }
        if portal.running.is_none() {
            let exec = portal.statement.execute(std::mem::take(&mut portal.params), &self.ctx).await?;
            portal.running = Some(start(exec, &portal.result_formats)?);
        }
        let Some(run) = portal.running.as_mut() else { return Ok(()) };
        if describe && let Some(enc) = &run.encoder {
            enc.write_row_description(&mut self.out);
        }
        let mut budget = if max_rows == 0 { u64::MAX } else { max_rows };
        loop {
            let (batch, offset) = match run.held.take() {
                Some(h) => h,
                None => match run.rows.next().await {
                    Some(Ok(b)) => (b, 0),
                    Some(Err(e)) => {
                        portal.running = None;
                        portal.done = true;
                        return Err(e);
                    }
                    None => break,
                },
            };
            let available = (batch.num_rows() - offset) as u64;
            if available == 0 {
                continue;
            }
            if budget == 0 {
                run.held = Some((batch, offset));
                reply::portal_suspended(&mut self.out);
                return Ok(());
            }
            let take = available.min(budget) as usize;
            let slice = batch.slice(offset, take);
            if let Some(enc) = &run.encoder {
                enc.write_data_rows(&slice, &mut self.out)
                    .map_err(|e| FedError::Pg(PgError::error(sqlstate::DATA_EXCEPTION, e.to_string())))?;
            }
            run.sent += take as u64;
            budget -= take as u64;
            if offset + take < batch.num_rows() {
                run.held = Some((batch, offset + take));
            }
            if self.out.len() >= FLUSH_AT {
                self.flush()
                    .await
                    .map_err(|_| FedError::Pg(PgError::error(sqlstate::CONNECTION_FAILURE, "client gone")))?;
            }
        }
        for tag in run.tag.all(run.sent) {
            reply::command_complete(&mut self.out, &tag);
        }
        portal.running = None;
        portal.done = true;
        Ok(())
    }
}

/// Turns an execution into a running portal with its encoder.
fn start(exec: Execution, result_formats: &[i16]) -> Result<Running, FedError> {
    let encoder = match &exec.columns {
        Some(cols) => Some(encoder(cols, result_formats, exec.settings.clone())?),
        None => None,
    };
    Ok(Running { encoder, rows: exec.rows, held: None, sent: 0, tag: exec.tag })
}

fn encoder(cols: &ResultColumns, formats: &[i16], settings: TextSettings) -> Result<BatchEncoder, FedError> {
    BatchEncoder::new(cols.schema.clone(), &cols.specs, formats, settings)
        .map_err(|e| FedError::Pg(PgError::error(sqlstate::FEATURE_NOT_SUPPORTED, e.to_string())))
}

fn write_description(out: &mut BytesMut, cols: Option<ResultColumns>, formats: &[i16]) -> Result<(), FedError> {
    match cols {
        Some(cols) => encoder(&cols, formats, TextSettings::default())?.write_row_description(out),
        None => reply::no_data(out),
    }
    Ok(())
}

fn protocol(msg: &str) -> FedError {
    FedError::Pg(PgError::error(sqlstate::PROTOCOL_VIOLATION, msg))
}

fn undefined_portal(name: &str) -> FedError {
    FedError::Pg(PgError::error(sqlstate::UNDEFINED_CURSOR, format!("portal \"{name}\" does not exist")))
}

/// Puts the upstream transaction block into the aborted state after an error of pgfed's own, so
/// the client's transaction behaves as if Postgres had raised it.
const ABORT_SQL: &str =
    "DO $$BEGIN RAISE EXCEPTION 'pgfed: transaction aborted by an earlier error' USING ERRCODE = '25P02'; END$$";
