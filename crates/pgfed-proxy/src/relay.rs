//! The transparent relay between a client and its upstream session.
//!
//! One task drives both directions with a single `select!`, so a write that blocks in one
//! direction never stops reading in the other (Postgres stops reading while its output is full;
//! a proxy that blocked on writing to it would deadlock with a pipelining client). Each direction
//! is a [`Pipe`]: bytes are read into a buffer, the frame scanner walks their headers, and scanned
//! bytes are handed to the writer as a frozen slice of that same buffer, so rows are never copied
//! or decoded. Only Query/Parse (routing) and ReadyForQuery/ErrorResponse (session state, metrics)
//! are looked inside. Buffers are bounded: when a peer does not read, the other side is not read
//! either, and back-pressure reaches the producer.
//!
//! Session state tracked here: the transaction status from ReadyForQuery, and how many
//! ReadyForQuery the client still expects (one per Query, Sync and FunctionCall). From them follow
//! "idle" (idle timeouts, graceful shutdown) and "busy" (cancel the upstream query when the client
//! vanishes).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use pgfed_router::Route;
use pgfed_wire::message::{self, ErrorFields};
use pgfed_wire::{FrameScanner, PgError, Scanned, backend, frontend, sqlstate};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;
use tracing::debug;

use crate::error::SessionError;
use crate::local::{ClientSide, LocalCancel, LocalState, UnitEnd, UnitFailure};
use crate::server::{Shared, Signals};
use crate::stream::{ClientStream, UpstreamStream};
use crate::upstream::UpstreamKey;

/// Read size; also the size below which a buffer keeps reading while output is pending.
const READ_CHUNK: usize = 64 * 1024;
const HIGH_WATER: usize = 256 * 1024;
/// How long pgfed's own closing message may take to reach a client.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the relay stopped.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client's connection closed or failed without Terminate.
    ClientGone,
    /// The upstream closed after sending a FATAL error, which the client has.
    UpstreamTerminated,
    Shutdown,
    IdleSessionTimeout,
    IdleInTransactionTimeout,
    Error(SessionError),
}

impl Ending {
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Ending::ClientTerminated => "client terminated",
            Ending::ClientGone => "client disconnected",
            Ending::UpstreamTerminated => "upstream terminated the session",
            Ending::Shutdown => "pgfed shutting down",
            Ending::IdleSessionTimeout => "idle session timeout",
            Ending::IdleInTransactionTimeout => "idle in transaction timeout",
            Ending::Error(_) => "error",
        }
    }

    /// The FATAL error pgfed sends the client for this ending, if any.
    fn farewell(&self) -> Option<PgError> {
        match self {
            Ending::ClientTerminated | Ending::ClientGone | Ending::UpstreamTerminated => None,
            Ending::Shutdown => {
                Some(PgError::fatal(sqlstate::ADMIN_SHUTDOWN, "terminating connection due to administrator command"))
            }
            Ending::IdleSessionTimeout => Some(PgError::fatal(
                sqlstate::IDLE_SESSION_TIMEOUT,
                "terminating connection due to idle-session timeout",
            )),
            Ending::IdleInTransactionTimeout => Some(PgError::fatal(
                sqlstate::IDLE_IN_TRANSACTION_TIMEOUT,
                "terminating connection due to idle-in-transaction timeout",
            )),
            Ending::Error(e) => e.client_error(),
        }
    }
}

/// Byte counts for the session log line.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// One direction of the relay.
struct Pipe {
    /// Bytes read from the source. `[..ready]` is scanned and may be forwarded.
    buf: BytesMut,
    ready: usize,
    /// Bytes being written to the sink: a frozen prefix split off `buf`.
    out: Bytes,
    scanner: FrameScanner,
    /// Bytes needed past `ready` before the scanner can decide anything more.
    need: usize,
    /// A write completed but the sink may still hold it (TLS).
    unflushed: bool,
    sink_needs_flush: bool,
}

impl Pipe {
    fn new(buf: BytesMut, max_frame: usize, sink_needs_flush: bool) -> Self {
        Self {
            buf,
            ready: 0,
            out: Bytes::new(),
            scanner: FrameScanner::new(max_frame),
            need: 5,
            unflushed: false,
            sink_needs_flush,
        }
    }

    /// Keep reading while under the high-water mark, or past it only to complete a frame that must
    /// be inspected whole (and only once everything before it has been handed to the writer).
    fn wants_read(&self) -> bool {
        self.buf.len() < HIGH_WATER || (self.ready == 0 && self.buf.len() < self.need)
    }

    fn reserve(&mut self) {
        let spare = self.buf.capacity() - self.buf.len();
        if spare < READ_CHUNK / 4 {
            let want = (self.need + self.ready).saturating_sub(self.buf.len());
            self.buf.reserve(READ_CHUNK.max(want));
        }
    }

    /// Moves scanned bytes to the writer once it is free.
    fn promote(&mut self) {
        if self.out.is_empty() && self.ready > 0 {
            self.out = self.buf.split_to(self.ready).freeze();
            self.ready = 0;
        }
    }

    fn has_output(&self) -> bool {
        !self.out.is_empty() || self.unflushed
    }

    /// Accounts for a [`write_or_flush`] that returned `n`.
    fn wrote(&mut self, n: usize) {
        if self.out.is_empty() {
            self.unflushed = false;
            return;
        }
        self.out.advance(n);
        if self.out.is_empty() && self.sink_needs_flush {
            self.unflushed = true;
        }
    }

    fn drained(&self) -> bool {
        self.out.is_empty() && self.ready == 0 && !self.unflushed
    }
}

/// What the relay knows about the session's protocol state.
#[derive(Debug)]
struct State {
    /// ReadyForQuery messages the client is still owed.
    outstanding: u32,
    /// Extended-protocol messages sent since the last Sync.
    unsynced: bool,
    /// Syncs since the last Query or Execute: the ones Postgres skips if that command starts a
    /// COPY IN.
    syncs_since_command: u32,
    /// The client is sending COPY data.
    in_copy_in: bool,
    /// Last ReadyForQuery status: b'I', b'T' or b'E'.
    status: u8,
    terminated: bool,
    /// Frames seen from the client; a change means the client is active.
    client_frames: u64,
    /// The last error forwarded from upstream was FATAL.
    upstream_fatal: bool,
    /// Answers still due for extended-protocol messages of the current (unsynced) segment: one
    /// closing message each for Parse, Bind, Close, Describe and Execute.
    pending_ext: u32,
    /// An ErrorResponse arrived in the current segment: Postgres ignores messages until Sync.
    segment_error: bool,
    /// A Flush was sent so that the upstream answers the segment before pgfed's statement.
    flush_sent: bool,
}

impl State {
    /// Counts the closing answers of the current segment's extended messages. Only frames that
    /// arrive once every earlier ReadyForQuery is in belong to that segment.
    fn on_upstream_tag(&mut self, tag: u8) {
        if self.outstanding > 0 {
            return;
        }
        match tag {
            b'1' | b'2' | b'3' | b'C' | b'I' | b's' | b'n' | b'T' => {
                self.pending_ext = self.pending_ext.saturating_sub(1)
            }
            backend::ERROR_RESPONSE => {
                self.pending_ext = 0;
                self.segment_error = true;
            }
            _ => {}
        }
    }

    fn idle(&self) -> bool {
        self.outstanding == 0 && !self.unsynced
    }

    /// Counts the ReadyForQuery a client frame will earn, as Postgres will process it.
    fn on_client_frame(&mut self, tag: u8) {
        match tag {
            frontend::QUERY => {
                self.outstanding += 1;
                self.syncs_since_command = 0;
            }
            frontend::EXECUTE => {
                self.unsynced = true;
                self.pending_ext += 1;
                self.syncs_since_command = 0;
            }
            // Postgres ignores Sync during COPY IN; clients send another after CopyDone.
            frontend::SYNC if self.in_copy_in => {}
            frontend::SYNC => {
                self.outstanding += 1;
                self.unsynced = false;
                self.syncs_since_command += 1;
            }
            frontend::FUNCTION_CALL => self.outstanding += 1,
            frontend::COPY_DATA | frontend::COPY_DONE | frontend::COPY_FAIL => {
                if !self.in_copy_in {
                    // The COPY started before Postgres read the Syncs the client pipelined after
                    // its Execute, so Postgres ignored them: they earn no ReadyForQuery.
                    self.outstanding = self.outstanding.saturating_sub(self.syncs_since_command);
                    self.syncs_since_command = 0;
                }
                self.in_copy_in = tag == frontend::COPY_DATA;
            }
            frontend::PARSE | frontend::BIND | frontend::DESCRIBE | frontend::CLOSE => {
                self.unsynced = true;
                self.pending_ext += 1;
            }
            frontend::FLUSH => self.unsynced = true,
            frontend::TERMINATE => self.terminated = true,
            // Anything else is Postgres's to accept or reject.
            _ => {}
        }
    }
}

/// Who the session is, for statements pgfed answers itself.
pub(crate) struct Who {
    pub user: String,
    pub database: String,
    pub local_cancel: Arc<LocalCancel>,
}

pub(crate) struct Relay<'a> {
    shared: &'a Shared,
    who: Who,
    /// pgfed's statements and portals; created at the first one.
    local: Option<LocalState>,
    /// The client buffer stops at a frame pgfed must answer.
    pending_local: bool,
    /// The next Query/Parse was handed back by pgfed: forward it without routing.
    bypass_next: bool,
    client_r: ReadHalf<ClientStream>,
    client_w: WriteHalf<ClientStream>,
    up_r: ReadHalf<UpstreamStream>,
    up_w: WriteHalf<UpstreamStream>,
    c2u: Pipe,
    u2c: Pipe,
    state: State,
    key: Option<UpstreamKey>,
    stats: Stats,
}

impl<'a> Relay<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: &'a Shared,
        client: ClientStream,
        client_buf: BytesMut,
        upstream: UpstreamStream,
        upstream_buf: BytesMut,
        key: Option<UpstreamKey>,
        status: u8,
        who: Who,
    ) -> Self {
        let max = shared.config.server.max_message_bytes;
        let (client_flush, up_flush) = (client.needs_flush(), upstream.needs_flush());
        let (client_r, client_w) = tokio::io::split(client);
        let (up_r, up_w) = tokio::io::split(upstream);
        Self {
            shared,
            who,
            local: None,
            pending_local: false,
            bypass_next: false,
            client_r,
            client_w,
            up_r,
            up_w,
            c2u: Pipe::new(client_buf, max, up_flush),
            // The upstream is trusted to frame correctly; no size limit on what it sends.
            u2c: Pipe::new(upstream_buf, usize::MAX, client_flush),
            state: State {
                outstanding: 0,
                unsynced: false,
                syncs_since_command: 0,
                in_copy_in: false,
                status,
                terminated: false,
                client_frames: 0,
                upstream_fatal: false,
                pending_ext: 0,
                segment_error: false,
                flush_sent: false,
            },
            key,
            stats: Stats::default(),
        }
    }

    /// Relays until either side ends the session, then closes both. Cancel-safe only in the sense
    /// that dropping it drops both connections.
    pub(crate) async fn run(mut self, signals: &Signals) -> (Ending, Stats) {
        let ending = self.relay(signals).await;
        if let Some(local) = self.local.take() {
            local.abandon().await;
        }
        self.finish(&ending).await;
        (ending, self.stats)
    }

    async fn relay(&mut self, signals: &Signals) -> Ending {
        let server = &self.shared.config.server;
        let (idle_session, idle_in_tx) = (server.idle_session_timeout, server.idle_in_transaction_timeout);
        let mut graceful = pin!(signals.graceful.cancelled());
        let mut force = pin!(signals.force.cancelled());
        let mut idle_timer = pin!(tokio::time::sleep(Duration::from_secs(3600)));
        let mut idle_armed = false;
        let mut shutting_down = signals.graceful.is_cancelled();
        if let Some(fed) = self.shared.federation.clone()
            && fed.wants_catalog()
        {
            let local = self.local.get_or_insert_with(|| LocalState::new(self.who.local_cancel.clone()));
            let r =
                local.run_background(&mut self.up_r, &mut self.up_w, &mut self.u2c.buf, |c| fed.load_catalog(c)).await;
            if let Err(e) = r {
                return Ending::Error(e);
            }
        }
        // Data that arrived with the startup exchange.
        if let Err(e) = self.scan_client() {
            return Ending::Error(e);
        }
        if let Err(e) = self.scan_upstream() {
            return Ending::Error(e);
        }
        loop {
            self.c2u.promote();
            self.u2c.promote();
            if self.pending_local
                && let Err(ending) = self.flush_segment().await
            {
                return ending;
            }
            if self.pending_local && self.ready_for_local() {
                if let Err(ending) = self.run_local().await {
                    return ending;
                }
                idle_armed = false;
                continue;
            }
            if self.state.terminated && self.c2u.drained() {
                return Ending::ClientTerminated;
            }
            if shutting_down && self.state.idle() && self.state.status == b'I' && self.u2c.drained() {
                return Ending::Shutdown;
            }
            // Like Postgres, the clock runs while waiting for the next complete message: bytes of
            // an unfinished one do not reset it.
            if !idle_armed && self.state.idle() {
                let limit = if self.state.status == b'I' { idle_session } else { idle_in_tx };
                if !limit.is_zero() {
                    idle_timer.as_mut().reset(Instant::now() + limit);
                    idle_armed = true;
                }
            }
            self.c2u.reserve();
            self.u2c.reserve();
            let c2u_read = self.c2u.wants_read() && !self.state.terminated && !self.pending_local;
            let u2c_read = self.u2c.wants_read();
            tokio::select! {
                biased;
                _ = &mut force => return Ending::Shutdown,
                r = write_or_flush(&mut self.client_w, &self.u2c.out), if self.u2c.has_output() => match r {
                    Ok(n) => { self.stats.bytes_out += n as u64; self.shared.metrics.client_bytes_out.increment(n as u64); self.u2c.wrote(n) }
                    Err(_) => return Ending::ClientGone,
                },
                r = write_or_flush(&mut self.up_w, &self.c2u.out), if self.c2u.has_output() => match r {
                    Ok(n) => self.c2u.wrote(n),
                    Err(e) => return Ending::Error(SessionError::UpstreamIo(e)),
                },
                r = self.up_r.read_buf(&mut self.u2c.buf), if u2c_read => match r {
                    Ok(0) if self.state.upstream_fatal => return Ending::UpstreamTerminated,
                    Ok(0) => return Ending::Error(SessionError::UpstreamClosed),
                    Ok(_) => if let Err(e) = self.scan_upstream() { return Ending::Error(e) },
                    Err(e) => return Ending::Error(SessionError::UpstreamIo(e)),
                },
                r = self.client_r.read_buf(&mut self.c2u.buf), if c2u_read => match r {
                    Ok(0) | Err(_) => return Ending::ClientGone,
                    Ok(n) => {
                        self.stats.bytes_in += n as u64;
                        self.shared.metrics.client_bytes_in.increment(n as u64);
                        let frames = self.state.client_frames;
                        if let Err(e) = self.scan_client() { return Ending::Error(e) }
                        if self.state.client_frames != frames {
                            idle_armed = false;
                        }
                    }
                },
                _ = &mut graceful, if !shutting_down => shutting_down = true,
                _ = &mut idle_timer, if idle_armed => {
                    idle_armed = false;
                    if self.state.idle() {
                        return if self.state.status == b'I' { Ending::IdleSessionTimeout } else { Ending::IdleInTransactionTimeout };
                    }
                }
            }
        }
    }

    /// Scans newly read client bytes: routes Query/Parse, counts what will earn a ReadyForQuery,
    /// and stops at the first frame pgfed must answer itself.
    fn scan_client(&mut self) -> Result<(), SessionError> {
        if self.pending_local {
            return Ok(());
        }
        let owns = self.local.as_ref().is_some_and(LocalState::owns_any);
        let pipe = &mut self.c2u;
        loop {
            let pos = pipe.ready;
            let inspect = |t: u8| {
                t == frontend::QUERY
                    || t == frontend::PARSE
                    || (owns && matches!(t, frontend::BIND | frontend::DESCRIBE | frontend::EXECUTE | frontend::CLOSE))
            };
            match pipe.scanner.next(&pipe.buf[pos..], inspect)? {
                Scanned::Pass { len } => pipe.ready += len,
                Scanned::Header { tag, .. } => {
                    self.state.client_frames += 1;
                    self.state.on_client_frame(tag);
                }
                Scanned::Whole { tag, frame_len } => {
                    let frame = &pipe.buf[pos..pos + frame_len];
                    let local = match tag {
                        frontend::QUERY | frontend::PARSE => {
                            let (text, name) = if tag == frontend::QUERY {
                                (message::query_text(frame), None)
                            } else {
                                (message::parse_query_text(frame), pgfed_wire::extended::bind_names_of_parse(frame))
                            };
                            // A malformed body is Postgres's to reject, with its own message.
                            let routed = !std::mem::take(&mut self.bypass_next)
                                && text.is_some_and(|t| {
                                    route(self.shared, t)
                                        || self.local.as_ref().is_some_and(|l| l.claims_transaction_end(t))
                                });
                            if !routed && let Some(l) = self.local.as_mut() {
                                match name {
                                    None => l.on_simple_query(),
                                    Some(n) => {
                                        if l.parse_goes_upstream(n) {
                                            // Reusing the name of one of pgfed's statements.
                                            self.pending_local = true;
                                            return Ok(());
                                        }
                                    }
                                }
                            }
                            routed
                        }
                        _ => self.local.as_mut().is_some_and(|l| l.claims_frame(tag, frame)),
                    };
                    if local {
                        self.pending_local = true;
                        return Ok(());
                    }
                    self.state.client_frames += 1;
                    self.state.on_client_frame(tag);
                    pipe.ready += frame_len;
                }
                Scanned::NeedMore { need } => {
                    pipe.need = need;
                    return Ok(());
                }
            }
        }
    }

    /// Everything before the pending local frame has been forwarded and answered (for an
    /// unsynced segment: the Flush pgfed sent made the upstream answer it).
    fn ready_for_local(&self) -> bool {
        self.c2u.ready == 0
            && self.c2u.out.is_empty()
            && !self.c2u.unflushed
            && self.state.outstanding == 0
            && (!self.state.unsynced || (self.state.flush_sent && self.state.pending_ext == 0))
            && self.u2c.drained()
            && self.u2c.scanner.at_boundary()
    }

    /// Ordinary extended messages precede pgfed's in one segment (pgjdbc sends BEGIN that way):
    /// ask the upstream to answer them now, without ending the segment.
    async fn flush_segment(&mut self) -> Result<(), Ending> {
        if self.state.flush_sent
            || !self.state.unsynced
            || self.c2u.ready != 0
            || !self.c2u.out.is_empty()
            || self.c2u.unflushed
        {
            return Ok(());
        }
        self.state.flush_sent = true;
        let flush = [frontend::FLUSH, 0, 0, 0, 4];
        self.up_w.write_all(&flush).await.map_err(|e| Ending::Error(SessionError::UpstreamIo(e)))?;
        self.up_w.flush().await.map_err(|e| Ending::Error(SessionError::UpstreamIo(e)))
    }

    /// Runs a unit of pgfed's own (see `local.rs`), then resumes relaying.
    async fn run_local(&mut self) -> Result<(), Ending> {
        self.pending_local = false;
        let Some(fed) = self.shared.federation.clone() else {
            // Nothing can claim frames without a federation; resume relaying.
            return Ok(());
        };
        self.state.client_frames += 1;
        let local = self.local.get_or_insert_with(|| LocalState::new(self.who.local_cancel.clone()));
        let shared = self.shared;
        let key = self.key.clone();
        let claims = |sql: &[u8]| route(shared, sql);
        let client = ClientSide {
            r: &mut self.client_r,
            w: &mut self.client_w,
            buf: &mut self.c2u.buf,
            scanner: &mut self.c2u.scanner,
            bytes_in: &mut self.stats.bytes_in,
            bytes_out: &mut self.stats.bytes_out,
        };
        self.shared.metrics.statements_pgfed.increment(1);
        let result = crate::local::run_unit(
            &fed,
            local,
            client,
            &mut self.up_r,
            &mut self.up_w,
            &mut self.u2c.buf,
            self.state.status,
            self.state.segment_error,
            &self.who.user,
            &self.who.database,
            &claims,
            &|| {
                if let Some(key) = key.clone() {
                    tokio::spawn(Arc::clone(&shared.upstream).cancel(key));
                }
            },
        )
        .await;
        let (end, side) = match result {
            Ok(r) => r,
            Err(UnitFailure::ClientGone) => return Err(Ending::ClientGone),
            Err(UnitFailure::Session(e)) => return Err(Ending::Error(e)),
        };
        let mut out = Vec::new();
        for frame in &side {
            out.extend_from_slice(frame);
        }
        match end {
            UnitEnd::Synced(status) => {
                out.extend_from_slice(&message::ready_for_query(status));
                self.state.status = status;
                self.state.unsynced = false;
                self.state.pending_ext = 0;
                self.state.segment_error = false;
                self.state.flush_sent = false;
                if status == b'I' {
                    local.on_ready(status);
                }
            }
            UnitEnd::Handover { answered, bounce } => {
                self.state.unsynced |= answered;
                self.bypass_next = bounce;
                // Later ordinary messages of the segment need their own Flush before pgfed's.
                self.state.flush_sent = false;
            }
        }
        if !out.is_empty() {
            self.stats.bytes_out += out.len() as u64;
            self.client_w.write_all(&out).await.map_err(|_| Ending::ClientGone)?;
            self.client_w.flush().await.map_err(|_| Ending::ClientGone)?;
        }
        // Frames after the unit were not scanned yet.
        self.c2u.need = 5;
        self.scan_client().map_err(Ending::Error)
    }

    /// Scans newly read upstream bytes for ReadyForQuery and errors.
    fn scan_upstream(&mut self) -> Result<(), SessionError> {
        let pipe = &mut self.u2c;
        loop {
            let pos = pipe.ready;
            let scanned = pipe
                .scanner
                .next(&pipe.buf[pos..], |t| t == backend::READY_FOR_QUERY || t == backend::ERROR_RESPONSE)
                .map_err(|e| SessionError::UpstreamProtocol(e.to_string()))?;
            match scanned {
                Scanned::Pass { len } => pipe.ready += len,
                Scanned::Header { tag, .. } => self.state.on_upstream_tag(tag),
                Scanned::Whole { tag, frame_len } => {
                    let frame = &pipe.buf[pos..pos + frame_len];
                    if tag == backend::READY_FOR_QUERY {
                        self.state.status = frame.get(5).copied().unwrap_or(b'I');
                        self.state.outstanding = self.state.outstanding.saturating_sub(1);
                        // A segment ended.
                        self.state.pending_ext = 0;
                        self.state.segment_error = false;
                        self.state.flush_sent = false;
                        if let Some(l) = self.local.as_mut() {
                            l.on_ready(self.state.status);
                        }
                    } else {
                        self.state.on_upstream_tag(tag);
                        if let Some(code) = ErrorFields::sqlstate(frame) {
                            self.shared.metrics.error(code, "upstream");
                        }
                        self.state.upstream_fatal = matches!(ErrorFields::severity(frame), Some(b"FATAL" | b"PANIC"));
                    }
                    pipe.ready += frame_len;
                }
                Scanned::NeedMore { need } => {
                    pipe.need = need;
                    return Ok(());
                }
            }
        }
    }

    /// Closes the session in the way its ending calls for.
    async fn finish(&mut self, ending: &Ending) {
        let busy = !self.state.idle();
        match ending {
            Ending::ClientTerminated => {
                let _ = self.up_w.shutdown().await;
                return;
            }
            Ending::ClientGone => {
                // The client will never read the answer; stop the upstream from computing it.
                if busy {
                    self.cancel_upstream("client disconnected mid-query");
                }
                return;
            }
            _ => {}
        }
        if busy
            && !matches!(
                ending,
                Ending::UpstreamTerminated | Ending::Error(SessionError::UpstreamClosed | SessionError::UpstreamIo(_))
            )
        {
            self.cancel_upstream(ending.describe());
        }
        let farewell = ending.farewell();
        if let Some(err) = &farewell {
            self.shared.metrics.error(&err.code, "pgfed");
        }
        let u2c = &mut self.u2c;
        let at_boundary = u2c.scanner.at_boundary();
        let pending_out = std::mem::take(&mut u2c.out);
        let pending_ready = u2c.buf.split_to(u2c.ready);
        let client_w = &mut self.client_w;
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
            client_w.write_all(&pending_out).await?;
            client_w.write_all(&pending_ready).await?;
            // pgfed's message may only start where a frame starts.
            if let (Some(err), true) = (farewell, at_boundary) {
                client_w.write_all(&err.to_frame()).await?;
            }
            client_w.flush().await?;
            client_w.shutdown().await
        })
        .await;
        // Tell Postgres the session is over rather than leaving it to notice a reset.
        let _ = tokio::time::timeout(
            FAREWELL_TIMEOUT,
            terminate(&mut self.up_w, self.c2u.out.is_empty() && self.c2u.ready == 0 && self.c2u.scanner.at_boundary()),
        )
        .await;
    }

    fn cancel_upstream(&self, why: &str) {
        if let Some(key) = self.key.clone() {
            debug!(reason = why, "cancelling the upstream query");
            tokio::spawn(Arc::clone(&self.shared.upstream).cancel(key));
        }
    }
}

/// Whether pgfed answers this Query/Parse text: the router's candidates (foreign tables by name)
/// and the federation's own claims (its DDL).
fn route(shared: &Shared, text: &[u8]) -> bool {
    let decision = shared.router.route_any_schema(text);
    shared.metrics.route_path(decision.path);
    let routed = match decision.route {
        Route::Pgfed { .. } => true,
        Route::Upstream => {
            shared.federation.as_ref().is_some_and(|f| std::str::from_utf8(text).is_ok_and(|t| f.claims(t)))
        }
    };
    if !routed {
        shared.metrics.statements_upstream.increment(1);
    }
    routed
}

/// Writes some of `out`, or flushes when it is empty. Cancel-safe: `write` either took bytes or
/// did not, and `flush` may be repeated.
async fn write_or_flush<W: AsyncWrite + Unpin>(w: &mut W, out: &[u8]) -> std::io::Result<usize> {
    if out.is_empty() { w.flush().await.map(|()| 0) } else { w.write(out).await }
}

/// Sends Terminate when everything forwarded so far ends on a frame boundary; otherwise only
/// closes (a Terminate inside a frame would be read as part of it).
async fn terminate<W: AsyncWrite + Unpin>(w: &mut W, at_boundary: bool) -> std::io::Result<()> {
    if at_boundary {
        w.write_all(&[frontend::TERMINATE, 0, 0, 0, 4]).await?;
    }
    w.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            outstanding: 0,
            unsynced: false,
            syncs_since_command: 0,
            in_copy_in: false,
            status: b'I',
            terminated: false,
            client_frames: 0,
            upstream_fatal: false,
            pending_ext: 0,
            segment_error: false,
            flush_sent: false,
        }
    }

    /// Feeds client tags, then as many ReadyForQuery as Postgres would send; the session must end
    /// idle with nothing outstanding.
    fn settles(tags: &[u8], z_from_postgres: u32) -> State {
        let mut s = state();
        for &t in tags {
            s.on_client_frame(t);
        }
        s.outstanding = s.outstanding.saturating_sub(z_from_postgres);
        s
    }

    #[test]
    fn simple_and_extended_queries_owe_one_ready_each() {
        assert!(settles(b"QQ", 2).idle());
        assert!(settles(b"PBDESPBES", 2).idle());
        assert!(!settles(b"PBE", 0).idle(), "unsynced extended messages keep the session busy");
        assert!(!settles(b"QQ", 1).idle());
        assert!(settles(b"F", 1).idle());
    }

    #[test]
    fn copy_in_through_extended_protocol_skips_the_ignored_sync() {
        // libpq: Parse/Bind/Describe/Execute/Sync, data, CopyDone, Sync. Postgres ignores the first
        // Sync (it arrives in COPY IN mode) and sends one ReadyForQuery.
        assert!(settles(b"PBDESddcS", 1).idle());
        assert!(settles(b"PBDESfS", 1).idle());
        // Syncs and Flushes during the data phase are ignored too.
        assert!(settles(b"PBDESdSdHdcS", 1).idle());
    }

    #[test]
    fn copy_in_through_simple_query_owes_one_ready() {
        assert!(settles(b"Qddc", 1).idle());
        // An earlier, answered extended query does not confuse the count.
        assert!(settles(b"PBESQddc", 2).idle());
        assert!(settles(b"Qf", 1).idle());
    }
}
