//! The production [`UpstreamSession`]: a cloneable [`Connection`] handle whose requests a
//! [`Driver`] serves on the client's upstream connection.
//!
//! The driver speaks only the extended protocol and never sends Sync until the proxy ends the
//! unit of work, so everything one federated statement does shares the client's transaction (or
//! one implicit transaction). Each query gets a named statement (closed right after Bind, so the
//! client's unnamed statement and portal are never touched) and a named portal fetched
//! `chunk_rows` rows at a time with Execute + Flush: several queries can be open at once and a
//! consumer that stops early (LIMIT) costs no more than the rows it read. The driver reads every
//! answer completely before writing again, so it can never deadlock with a Postgres whose output
//! buffer is full.

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use pgfed_wire::{ErrorFields, backend};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::{DataRow, FieldInfo, ResultFormat, Rows, UpstreamError, UpstreamSession};

/// Rows fetched per Execute: large enough to amortize the round trip, small enough to bound
/// memory per open query.
const CHUNK_ROWS: i32 = 4096;

struct Chunk {
    rows: Vec<DataRow>,
    done: bool,
}

enum Cmd {
    Query {
        id: u64,
        sql: String,
        params: Vec<Option<String>>,
        format: ResultFormat,
        reply: oneshot::Sender<Result<(Vec<FieldInfo>, Chunk), UpstreamError>>,
    },
    Fetch {
        id: u64,
        reply: oneshot::Sender<Result<Chunk, UpstreamError>>,
    },
    Close {
        id: u64,
    },
    Execute {
        id: u64,
        sql: String,
        params: Vec<Option<String>>,
        reply: oneshot::Sender<Result<String, UpstreamError>>,
    },
}

/// A cloneable handle on the session's upstream connection. Requests wait until a [`Driver`]
/// serves them; outside a unit of work they fail with [`UpstreamError::Closed`] only if the driver
/// is gone.
#[derive(Clone)]
pub struct Connection {
    tx: mpsc::UnboundedSender<Cmd>,
    ids: Arc<AtomicU64>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

/// Serves a [`Connection`]'s requests on the upstream connection, one unit of work at a time.
pub struct Driver {
    rx: mpsc::UnboundedReceiver<Cmd>,
    /// Portals open on the upstream (by request id).
    open: HashSet<u64>,
    /// Portals finished or abandoned, to close with the next batch of messages.
    to_close: Vec<u64>,
    /// CloseComplete messages still to come.
    closes_pending: usize,
    /// The error that aborted this unit; Postgres ignores everything until Sync.
    failed: Option<UpstreamError>,
    /// Something was sent since the last Sync.
    dirty: bool,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("open", &self.open.len()).field("dirty", &self.dirty).finish()
    }
}

/// How a unit of work ended on the upstream.
#[derive(Debug, Default)]
pub struct Finished {
    /// The transaction status from the closing ReadyForQuery; `None` when nothing was sent, so no
    /// Sync was needed and the status is unchanged.
    pub status: Option<u8>,
    /// NoticeResponse, ParameterStatus and NotificationResponse frames the upstream sent while the
    /// driver ran, whole, in order: the client should get them.
    pub side: Vec<Bytes>,
}

/// A connected handle and driver pair, one per client session.
pub fn channel() -> (Connection, Driver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Connection { tx, ids: Arc::new(AtomicU64::new(1)) },
        Driver { rx, open: HashSet::new(), to_close: Vec::new(), closes_pending: 0, failed: None, dirty: false },
    )
}

impl Connection {
    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// Closes the portal when a consumer drops its rows before the end.
struct PortalGuard {
    id: u64,
    tx: mpsc::UnboundedSender<Cmd>,
    done: bool,
}

impl Drop for PortalGuard {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.tx.send(Cmd::Close { id: self.id });
        }
    }
}

#[async_trait]
impl UpstreamSession for Connection {
    async fn query(&self, sql: &str, params: &[Option<String>], format: ResultFormat) -> Result<Rows, UpstreamError> {
        let id = self.next_id();
        let (reply, rx) = oneshot::channel();
        let cmd = Cmd::Query { id, sql: sql.to_string(), params: params.to_vec(), format, reply };
        self.tx.send(cmd).map_err(|_| UpstreamError::Closed)?;
        let (fields, first) = rx.await.map_err(|_| UpstreamError::Closed)??;
        let guard = PortalGuard { id, tx: self.tx.clone(), done: first.done };
        let state = (Some(first.rows), guard);
        let chunks = futures_util::stream::unfold(state, |(pending, mut guard)| async move {
            if let Some(rows) = pending {
                return Some((Ok(rows), (None, guard)));
            }
            if guard.done {
                return None;
            }
            let (reply, rx) = oneshot::channel();
            if guard.tx.send(Cmd::Fetch { id: guard.id, reply }).is_err() {
                guard.done = true;
                return Some((Err(UpstreamError::Closed), (None, guard)));
            }
            match rx.await {
                Ok(Ok(chunk)) => {
                    guard.done = chunk.done;
                    Some((Ok(chunk.rows), (None, guard)))
                }
                Ok(Err(e)) => {
                    guard.done = true;
                    Some((Err(e), (None, guard)))
                }
                Err(_) => {
                    guard.done = true;
                    Some((Err(UpstreamError::Closed), (None, guard)))
                }
            }
        })
        .filter(|c| std::future::ready(!matches!(c, Ok(rows) if rows.is_empty())))
        .boxed();
        Ok(Rows { fields, chunks })
    }

    async fn execute(&self, sql: &str, params: &[Option<String>]) -> Result<String, UpstreamError> {
        let id = self.next_id();
        let (reply, rx) = oneshot::channel();
        let cmd = Cmd::Execute { id, sql: sql.to_string(), params: params.to_vec(), reply };
        self.tx.send(cmd).map_err(|_| UpstreamError::Closed)?;
        rx.await.map_err(|_| UpstreamError::Closed)?
    }
}

/// The upstream connection for the duration of one unit of work.
struct Io<'a, R, W> {
    r: &'a mut R,
    w: &'a mut W,
    buf: &'a mut BytesMut,
    side: Vec<Bytes>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Io<'_, R, W> {
    async fn send(&mut self, out: &[u8]) -> Result<(), UpstreamError> {
        self.w.write_all(out).await.map_err(|e| UpstreamError::Io(e.to_string()))?;
        self.w.flush().await.map_err(|e| UpstreamError::Io(e.to_string()))
    }

    /// The next frame that is not a side message: (tag, body).
    async fn next(&mut self) -> Result<(u8, Bytes), UpstreamError> {
        loop {
            while self.buf.len() < 5 || self.buf.len() < 1 + frame_len(self.buf) {
                if self.buf.len() >= 5 && frame_len(self.buf) < 4 {
                    return Err(UpstreamError::Protocol("invalid message length".into()));
                }
                let n = self.r.read_buf(self.buf).await.map_err(|e| UpstreamError::Io(e.to_string()))?;
                if n == 0 {
                    return Err(UpstreamError::Closed);
                }
            }
            let len = 1 + frame_len(self.buf);
            let frame = self.buf.split_to(len).freeze();
            let tag = frame[0];
            match tag {
                backend::NOTICE_RESPONSE | backend::PARAMETER_STATUS | backend::NOTIFICATION_RESPONSE => {
                    self.side.push(frame)
                }
                _ => return Ok((tag, frame.slice(5..))),
            }
        }
    }
}

fn frame_len(buf: &[u8]) -> usize {
    u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize
}

fn server_error(body: &Bytes) -> UpstreamError {
    let mut frame = BytesMut::with_capacity(body.len() + 5);
    frame.put_u8(backend::ERROR_RESPONSE);
    frame.put_u32(body.len() as u32 + 4);
    frame.put_slice(body);
    let frame = frame.freeze();
    let text =
        |t: u8| ErrorFields::new(&frame).find(|(k, _)| *k == t).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    let severity = ErrorFields::severity(&frame).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
    let (code, message) = (text(b'C').unwrap_or_default(), text(b'M').unwrap_or_default());
    UpstreamError::Server { frame, severity, code, message }
}

fn msg(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let at = out.len();
    out.put_u32(0);
    body(out);
    let len = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn cstr(out: &mut BytesMut, s: &str) {
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

fn stmt_name(id: u64) -> String {
    format!("pgfed_s{id}")
}

fn portal_name(id: u64) -> String {
    format!("pgfed_p{id}")
}

fn write_parse_bind(out: &mut BytesMut, id: u64, sql: &str, params: &[Option<String>], format: ResultFormat) {
    let stmt = stmt_name(id);
    msg(out, b'P', |b| {
        cstr(b, &stmt);
        cstr(b, sql);
        b.put_i16(0);
    });
    msg(out, b'B', |b| {
        cstr(b, &portal_name(id));
        cstr(b, &stmt);
        b.put_i16(0); // all parameters in text format
        b.put_i16(params.len() as i16);
        for p in params {
            match p {
                None => b.put_i32(-1),
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v.as_bytes());
                }
            }
        }
        b.put_i16(1);
        b.put_i16(if format == ResultFormat::Binary { 1 } else { 0 });
    });
}

fn write_execute(out: &mut BytesMut, id: u64, max_rows: i32) {
    msg(out, b'E', |b| {
        cstr(b, &portal_name(id));
        b.put_i32(max_rows);
    });
}

fn write_close(out: &mut BytesMut, kind: u8, name: &str) {
    msg(out, b'C', |b| {
        b.put_u8(kind);
        cstr(b, name);
    });
}

fn parse_row_description(body: &Bytes) -> Result<Vec<FieldInfo>, UpstreamError> {
    let bad = || UpstreamError::Protocol("malformed RowDescription".into());
    let mut b = &body[..];
    if b.len() < 2 {
        return Err(bad());
    }
    let n = b.get_i16();
    let mut fields = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let end = b.iter().position(|&c| c == 0).ok_or_else(bad)?;
        let name = String::from_utf8_lossy(&b[..end]).into_owned();
        b.advance(end + 1);
        if b.len() < 18 {
            return Err(bad());
        }
        let table_oid = b.get_u32();
        let column_id = b.get_i16();
        let type_oid = b.get_u32();
        let _typlen = b.get_i16();
        let typmod = b.get_i32();
        let _format = b.get_i16();
        fields.push(FieldInfo { name, type_oid, typmod, table_oid, column_id });
    }
    Ok(fields)
}

impl Driver {
    /// Serves requests until `until` completes, then ends the unit: closes what is left and, if
    /// anything was sent, sends Sync and reads up to ReadyForQuery. `buf` holds bytes already read
    /// from `r` (the proxy's read buffer) and keeps whatever follows the unit.
    ///
    /// An I/O or protocol error on the connection is returned: the session cannot go on.
    pub async fn serve<R, W>(
        &mut self,
        r: &mut R,
        w: &mut W,
        buf: &mut BytesMut,
        until: impl Future<Output = ()>,
    ) -> Result<Finished, UpstreamError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // A token that never fires: nothing to cancel upstream.
        self.serve_cancellable(r, w, buf, until, &tokio_util::sync::CancellationToken::new(), &|| {}).await
    }

    /// The proxy relayed a ReadyForQuery (the client's own Sync or Query ended the segment this
    /// driver last wrote to): nothing is pending any more, and if the transaction ended
    /// (`status` `I`), the portals opened in it are gone on the upstream.
    pub fn segment_ended(&mut self, status: u8) {
        self.dirty = false;
        self.failed = None;
        self.closes_pending = 0;
        if status == b'I' {
            self.open.clear();
            self.to_close.clear();
        }
    }

    /// [`Driver::serve`], and when `cancel` fires while the upstream works on a request, calls
    /// `cancel_upstream` (once per request) so that Postgres stops it. A cancel that fires while
    /// no request runs sends nothing: it could only hit a later statement.
    pub async fn serve_cancellable<R, W>(
        &mut self,
        r: &mut R,
        w: &mut W,
        buf: &mut BytesMut,
        until: impl Future<Output = ()>,
        cancel: &tokio_util::sync::CancellationToken,
        cancel_upstream: &(dyn Fn() + Sync),
    ) -> Result<Finished, UpstreamError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut io = Io { r, w, buf, side: Vec::new() };
        let mut until = pin!(until);
        loop {
            tokio::select! {
                biased;
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => {
                        let work = self.handle(&mut io, cmd);
                        let mut work = pin!(work);
                        // A cancel that fired before this request began was for earlier work;
                        // this one is cleanup (closing, aborting) and must run.
                        let mut sent = cancel.is_cancelled();
                        loop {
                            tokio::select! {
                                r = &mut work => { r?; break; }
                                () = cancel.cancelled(), if !sent => {
                                    sent = true;
                                    cancel_upstream();
                                }
                            }
                        }
                    }
                    // Every handle is gone: nothing more can arrive.
                    None => break,
                },
                () = &mut until => break,
            }
        }
        // Requests queued before the end are answered, not left hanging.
        while let Ok(cmd) = self.rx.try_recv() {
            self.handle(&mut io, cmd).await?;
        }
        let status = self.sync(&mut io).await?;
        Ok(Finished { status, side: io.side })
    }

    async fn sync<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<'_, R, W>,
    ) -> Result<Option<u8>, UpstreamError> {
        if !self.dirty {
            return Ok(None);
        }
        let mut out = BytesMut::new();
        self.write_pending_closes(&mut out);
        msg(&mut out, b'S', |_| {});
        io.send(&out).await?;
        let status = loop {
            // Anything before ReadyForQuery is CloseComplete; errors were reported when they came.
            let (tag, body) = io.next().await?;
            if tag == backend::READY_FOR_QUERY {
                break body.first().copied().unwrap_or(b'I');
            }
        };
        self.closes_pending = 0;
        self.dirty = false;
        self.failed = None;
        // Portals live until the transaction ends; outside a block, Sync ended it.
        if status == b'I' {
            self.open.clear();
        }
        Ok(Some(status))
    }

    fn write_pending_closes(&mut self, out: &mut BytesMut) {
        if self.failed.is_some() {
            self.to_close.clear();
            return;
        }
        for id in self.to_close.drain(..) {
            if self.open.remove(&id) {
                write_close(out, b'P', &portal_name(id));
                self.closes_pending += 1;
            }
        }
    }

    /// Reads the next frame, skipping CloseComplete messages owed by earlier Close requests.
    async fn next<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<'_, R, W>,
    ) -> Result<(u8, Bytes), UpstreamError> {
        loop {
            let (tag, body) = io.next().await?;
            if tag == b'3' && self.closes_pending > 0 {
                self.closes_pending -= 1;
                continue;
            }
            return Ok((tag, body));
        }
    }

    async fn handle<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<'_, R, W>,
        cmd: Cmd,
    ) -> Result<(), UpstreamError> {
        match cmd {
            Cmd::Close { id } => {
                if self.open.contains(&id) {
                    self.to_close.push(id);
                }
                Ok(())
            }
            Cmd::Query { id, sql, params, format, reply } => {
                let r = self.query(io, id, &sql, &params, format).await;
                finish(r, reply)
            }
            Cmd::Fetch { id, reply } => {
                let r = self.fetch(io, id).await;
                finish(r, reply)
            }
            Cmd::Execute { id, sql, params, reply } => {
                let r = self.execute(io, id, &sql, &params).await;
                finish(r, reply)
            }
        }
    }

    fn begin(&mut self) -> Result<BytesMut, UpstreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut out = BytesMut::new();
        self.write_pending_closes(&mut out);
        self.dirty = true;
        Ok(out)
    }

    async fn query<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<'_, R, W>,
        id: u64,
        sql: &str,
        params: &[Option<String>],
        format: ResultFormat,
    ) -> Result<Reply<(Vec<FieldInfo>, Chunk)>, UpstreamError> {
        let mut out = match self.begin() {
            Ok(out) => out,
            Err(e) => return Ok(Err(e)),
        };
        write_parse_bind(&mut out, id, sql, params, format);
        msg(&mut out, b'D', |b| {
            b.put_u8(b'P');
            cstr(b, &portal_name(id));
        });
        write_execute(&mut out, id, CHUNK_ROWS);
        write_close(&mut out, b'S', &stmt_name(id));
        msg(&mut out, b'H', |_| {});
        io.send(&out).await?;
        self.open.insert(id);
        let mut fields = Vec::new();
        loop {
            let (tag, body) = self.next(io).await?;
            match tag {
                b'1' | b'2' | b'n' => {}
                b'T' => fields = parse_row_description(&body)?,
                backend::ERROR_RESPONSE => return Ok(Err(self.fail(&body))),
                _ => {
                    let chunk = match self.read_rows(io, tag, body).await? {
                        Ok(chunk) => chunk,
                        Err(e) => return Ok(Err(e)),
                    };
                    // The statement's CloseComplete.
                    match self.next(io).await? {
                        (b'3', _) => {}
                        (backend::ERROR_RESPONSE, body) => return Ok(Err(self.fail(&body))),
                        (tag, _) => return Err(unexpected(tag)),
                    }
                    if chunk.done {
                        self.to_close.push(id);
                    }
                    return Ok(Ok((fields, chunk)));
                }
            }
        }
    }

    async fn fetch<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<'_, R, W>,
        id: u64,
    ) -> Result<Reply<Chunk>, UpstreamError> {
        if !self.open.contains(&id) {
            // Its transaction ended (the unit that opened it was synced outside a block).
            return Ok(Err(UpstreamError::Closed));
        }
        let mut out = match self.begin() {
            Ok(out) => out,
            Err(e) => return Ok(Err(e)),
        };
        write_execute(&mut out, id, CHUNK_ROWS);
        msg(&mut out, b'H', |_| {});
        io.send(&out).await?;
        let (tag, body) = self.next(io).await?;
        let chunk = self.read_rows(io, tag, body).await?;
        if let Ok(Chunk { done: true, .. }) = &chunk {
            self.to_close.push(id);
        }
        Ok(chunk)
    }

    /// Reads DataRows up to PortalSuspended or CommandComplete, `tag`/`body` being the first frame.
    async fn read_rows<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<'_, R, W>,
        mut tag: u8,
        mut body: Bytes,
    ) -> Result<Reply<Chunk>, UpstreamError> {
        let mut rows = Vec::new();
        loop {
            match tag {
                b'D' => rows.push(DataRow::new(body)?),
                b's' => return Ok(Ok(Chunk { rows, done: false })),
                b'C' | b'I' => return Ok(Ok(Chunk { rows, done: true })),
                backend::ERROR_RESPONSE => return Ok(Err(self.fail(&body))),
                other => return Err(unexpected(other)),
            }
            (tag, body) = self.next(io).await?;
        }
    }

    async fn execute<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<'_, R, W>,
        id: u64,
        sql: &str,
        params: &[Option<String>],
    ) -> Result<Reply<String>, UpstreamError> {
        let mut out = match self.begin() {
            Ok(out) => out,
            Err(e) => return Ok(Err(e)),
        };
        write_parse_bind(&mut out, id, sql, params, ResultFormat::Text);
        write_execute(&mut out, id, 0);
        write_close(&mut out, b'S', &stmt_name(id));
        write_close(&mut out, b'P', &portal_name(id));
        msg(&mut out, b'H', |_| {});
        io.send(&out).await?;
        let mut tag_text = String::new();
        let mut closes = 0;
        while closes < 2 {
            let (tag, body) = self.next(io).await?;
            match tag {
                b'1' | b'2' | b'D' | b'I' => {}
                b'C' => tag_text = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body)).into_owned(),
                b'3' => closes += 1,
                backend::ERROR_RESPONSE => return Ok(Err(self.fail(&body))),
                other => return Err(unexpected(other)),
            }
        }
        Ok(Ok(tag_text))
    }

    fn fail(&mut self, body: &Bytes) -> UpstreamError {
        let e = server_error(body);
        self.failed = Some(e.clone());
        // Postgres discards everything until Sync, including the closes we had queued.
        self.closes_pending = 0;
        e
    }
}

/// The outer `Result` is the connection's health; the inner one is the request's answer.
type Reply<T> = Result<T, UpstreamError>;

fn finish<T>(r: Result<Reply<T>, UpstreamError>, reply: oneshot::Sender<Reply<T>>) -> Result<(), UpstreamError> {
    match r {
        Ok(answer) => {
            let _ = reply.send(answer);
            Ok(())
        }
        Err(e) => {
            let _ = reply.send(Err(e.clone()));
            Err(e)
        }
    }
}

fn unexpected(tag: u8) -> UpstreamError {
    UpstreamError::Protocol(format!("unexpected message '{}' from the upstream", tag as char))
}
