//! One client session from accept to close: negotiation (TLS, cancel, startup), the upstream
//! connection, the authentication relay, then the transparent [`relay`](crate::relay).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use pgfed_wire::message::{self, ErrorFields};
use pgfed_wire::{FrameScanner, ProtocolVersion, Scanned, StartupPacket, StartupParams, backend, frontend};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{Instrument, debug, info, warn};

use crate::cancel::Registration;
use crate::error::SessionError;
use crate::relay::{Ending, Relay};
use crate::server::{Shared, Signals};
use crate::stream::{ClientStream, MaybeTls, UpstreamStream};
use crate::tls::ALPN_POSTGRESQL;
use crate::upstream::UpstreamKey;

/// What the first packets of a connection asked for.
enum Opening {
    Cancel { pid: i32, secret: Vec<u8> },
    Startup { stream: ClientStream, version: ProtocolVersion, params: StartupParams, leftover: BytesMut },
}

/// Runs a connection to its end. Never panics on client or upstream input; errors are logged and,
/// where the protocol allows, reported to the client.
pub(crate) async fn run(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, id: u64, signals: Signals) {
    let span = tracing::info_span!("session", id, %peer);
    async move {
        let _ = tcp.set_nodelay(true);
        let started = Instant::now();
        let opened = tokio::select! {
            opened = tokio::time::timeout(shared.config.server.startup_timeout, negotiate(&shared, tcp)) => opened,
            // Past the shutdown deadline nobody waits for a startup packet.
            _ = signals.force.cancelled() => return debug!("closed during negotiation: shutting down"),
        };
        let (mut client, version, params, leftover) = match opened {
            Ok(Ok(Opening::Startup { stream, version, params, leftover })) => (stream, version, params, leftover),
            Ok(Ok(Opening::Cancel { pid, secret })) => return handle_cancel(&shared, pid, &secret).await,
            Ok(Err(e)) => return debug!(error = %e, "connection closed during negotiation"),
            // The client never finished its startup packet; like Postgres, close without a word.
            Err(_) => return debug!("startup packet not received in time"),
        };
        let param = |name: &[u8]| {
            params.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let user = param(b"user").unwrap_or_default();
        let database = param(b"database").or_else(|| shared.upstream.url.database.clone()).unwrap_or_else(|| user.clone());
        if version.major != 3 {
            return refuse(&shared, &mut client, SessionError::UnsupportedVersion(version)).await;
        }
        let Ok(_permit) = shared.limit.clone().try_acquire_owned() else {
            shared.metrics.sessions_rejected_limit.increment(1);
            return refuse(&shared, &mut client, SessionError::TooManyClients).await;
        };
        let remaining = shared.config.server.startup_timeout.saturating_sub(started.elapsed());
        let setup = tokio::select! {
            setup = tokio::time::timeout(remaining, establish(&shared, &mut client, version, params, leftover)) => match setup {
                Ok(result) => result,
                Err(_) => Err(SessionError::StartupTimeout),
            },
            _ = signals.force.cancelled() => Err(SessionError::ShuttingDown),
        };
        let (upstream, upstream_buf, client_buf, key, registration, status) = match setup {
            Ok(parts) => parts,
            Err(e) => return refuse(&shared, &mut client, e).await,
        };
        shared.metrics.sessions_total.increment(1);
        shared.metrics.sessions_active.increment(1.0);
        let local_cancel = registration.as_ref().map(|r| r.local.clone()).unwrap_or_default();
        let who = crate::relay::Who { user, database, local_cancel };
        let relay = Relay::new(&shared, client, client_buf, upstream, upstream_buf, key, status, who);
        let (ending, stats) = relay.run(&signals).await;
        shared.metrics.sessions_active.decrement(1.0);
        drop(registration);
        let secs = started.elapsed().as_secs_f64();
        match &ending {
            Ending::Error(e) => warn!(error = %e, duration_s = secs, bytes_in = stats.bytes_in, bytes_out = stats.bytes_out, "session ended"),
            other => info!(reason = other.describe(), duration_s = secs, bytes_in = stats.bytes_in, bytes_out = stats.bytes_out, "session ended"),
        }
    }
    .instrument(span)
    .await
}

/// Sends the error for `e` (if the client can be told) and closes.
async fn refuse(shared: &Shared, client: &mut ClientStream, e: SessionError) {
    match e.client_error() {
        Some(err) => {
            shared.metrics.error(&err.code, "pgfed");
            info!(error = %e, "session refused");
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                client.write_all(&err.to_frame()).await?;
                client.flush().await?;
                client.shutdown().await
            })
            .await;
        }
        None => debug!(error = %e, "session ended during startup"),
    }
}

/// Reads packets until a StartupMessage or CancelRequest, doing TLS on the way.
async fn negotiate(shared: &Shared, tcp: TcpStream) -> Result<Opening, SessionError> {
    // libpq 17's direct TLS sends a TLS ClientHello (record type 0x16) instead of SSLRequest.
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await.map_err(SessionError::ClientIo)?;
    if n == 0 {
        return Err(SessionError::ClientGone);
    }
    let mut stream = ClientStream::Plain(tcp);
    if first[0] == 0x16 {
        stream = match (&shared.tls_acceptor, stream) {
            (Some(acceptor), MaybeTls::Plain(tcp)) => {
                let tls = acceptor.accept(tcp).await.map_err(SessionError::ClientTls)?;
                // Postgres insists on ALPN for direct TLS, so that a TLS connection meant for
                // another protocol is never taken for Postgres.
                if tls.get_ref().1.alpn_protocol() != Some(ALPN_POSTGRESQL) {
                    return Err(SessionError::Protocol("direct TLS connection without ALPN \"postgresql\"".into()));
                }
                MaybeTls::Tls(Box::new(tls))
            }
            _ => return Err(SessionError::Protocol("direct TLS requested but TLS is not configured".into())),
        };
    }
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let Some((packet, used)) = StartupPacket::decode(&buf)? else {
            if read_some(&mut stream, &mut buf).await? == 0 {
                return Err(SessionError::ClientGone);
            }
            continue;
        };
        buf.advance(used);
        match packet {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest if stream.is_tls() => {
                return Err(SessionError::Protocol("encryption requested on an encrypted connection".into()));
            }
            StartupPacket::SslRequest => {
                // Bytes that arrived with the SSLRequest were sent before encryption started; a
                // man in the middle could have injected them (CVE-2021-23214), so refuse them.
                if !buf.is_empty() {
                    return Err(SessionError::Protocol("received unencrypted data after SSL request".into()));
                }
                let MaybeTls::Plain(mut tcp) = stream else {
                    return Err(SessionError::Protocol("encryption requested twice".into()));
                };
                match &shared.tls_acceptor {
                    Some(acceptor) => {
                        tcp.write_all(b"S").await.map_err(SessionError::ClientIo)?;
                        let tls = acceptor.accept(tcp).await.map_err(SessionError::ClientTls)?;
                        stream = MaybeTls::Tls(Box::new(tls));
                    }
                    None => {
                        tcp.write_all(b"N").await.map_err(SessionError::ClientIo)?;
                        stream = MaybeTls::Plain(tcp);
                    }
                }
            }
            StartupPacket::GssEncRequest => {
                if !buf.is_empty() {
                    return Err(SessionError::Protocol(
                        "received unencrypted data after GSSAPI encryption request".into(),
                    ));
                }
                stream.write_all(b"N").await.map_err(SessionError::ClientIo)?;
            }
            StartupPacket::CancelRequest { pid, secret } => return Ok(Opening::Cancel { pid, secret }),
            StartupPacket::Startup { version, params } => {
                return Ok(Opening::Startup { stream, version, params, leftover: buf });
            }
        }
    }
}

async fn read_some<S: AsyncRead + Unpin>(s: &mut S, buf: &mut BytesMut) -> Result<usize, SessionError> {
    buf.reserve(4096);
    s.read_buf(buf).await.map_err(SessionError::ClientIo)
}

async fn handle_cancel(shared: &Arc<Shared>, pid: i32, secret: &[u8]) {
    match shared.cancels.lookup(pid, secret) {
        Some(Some(key)) => {
            info!(pid, "cancel request forwarded");
            shared.metrics.cancel_requests.increment(1);
            shared.upstream.clone().cancel(key).await;
        }
        Some(None) => {
            info!(pid, "cancel request for a statement pgfed runs");
            shared.metrics.cancel_requests.increment(1);
        }
        // Postgres ignores unknown keys silently, so that keys cannot be probed.
        None => debug!(pid, "cancel request with an unknown key ignored"),
    }
}

type Established = (UpstreamStream, BytesMut, BytesMut, Option<UpstreamKey>, Option<Registration>, u8);

/// Connects upstream, sends the client's startup parameters and relays authentication until the
/// upstream's first ReadyForQuery.
async fn establish(
    shared: &Arc<Shared>,
    client: &mut ClientStream,
    version: ProtocolVersion,
    mut params: StartupParams,
    client_buf: BytesMut,
) -> Result<Established, SessionError> {
    let param =
        |name: &[u8]| params.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    info!(
        user = param(b"user"),
        database = param(b"database"),
        application_name = param(b"application_name"),
        tls = client.is_tls(),
        "session starting"
    );
    if !params.iter().any(|(k, _)| k == b"database")
        && let Some(db) = &shared.upstream.url.database
    {
        params.push((b"database".to_vec(), db.clone().into_bytes()));
    }
    let (mut upstream, took) =
        shared.upstream.connect().await.inspect_err(|_| shared.metrics.upstream_connect_failures.increment(1))?;
    shared.metrics.upstream_connect_seconds.record(took.as_secs_f64());
    info!(took_ms = took.as_secs_f64() * 1000.0, upstream_tls = upstream.is_tls(), "upstream connected");
    upstream.write_all(&StartupPacket::encode_startup(version, &params)).await.map_err(SessionError::UpstreamIo)?;
    upstream.flush().await.map_err(SessionError::UpstreamIo)?;
    let mut auth = AuthRelay {
        client,
        client_buf,
        upstream_buf: BytesMut::with_capacity(8192),
        max: shared.config.server.max_message_bytes,
    };
    let mut upstream_key = None;
    let mut registration = None;
    let mut pending: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let frame = auth.upstream_frame(&mut upstream).await?;
        match frame[0] {
            backend::AUTHENTICATION => {
                let code = message::auth_code(&frame)
                    .ok_or_else(|| SessionError::UpstreamProtocol("short authentication message".into()))?;
                match code {
                    // SCRAM channel binding binds to the TLS certificate of each leg, which differ
                    // across a proxy; hide the -PLUS mechanisms so clients use plain SCRAM.
                    10 => match message::filter_sasl_mechanisms(&frame, |m| m.ends_with(b"-PLUS")) {
                        Some(filtered) => pending.extend_from_slice(&filtered),
                        None => return Err(SessionError::UpstreamProtocol("malformed AuthenticationSASL".into())),
                    },
                    _ => pending.extend_from_slice(&frame),
                }
                // Cleartext, MD5, GSS, SSPI, SASL and SASL-continue all wait for a response.
                if matches!(code, 3 | 5 | 7 | 8 | 9 | 10 | 11) {
                    auth.client.write_all(&pending).await.map_err(SessionError::ClientIo)?;
                    auth.client.flush().await.map_err(SessionError::ClientIo)?;
                    pending.clear();
                    let answer = auth.client_frame().await?;
                    if answer[0] != frontend::PASSWORD {
                        return Err(SessionError::Protocol(format!(
                            "expected a password or SASL response, got message type '{}'",
                            char::from(answer[0])
                        )));
                    }
                    upstream.write_all(&answer).await.map_err(SessionError::UpstreamIo)?;
                    upstream.flush().await.map_err(SessionError::UpstreamIo)?;
                }
            }
            backend::BACKEND_KEY_DATA => {
                let (pid, secret) = message::parse_backend_key_data(&frame)
                    .ok_or_else(|| SessionError::UpstreamProtocol("short BackendKeyData".into()))?;
                let key = UpstreamKey { pid, secret };
                let reg = shared.cancels.register(key.clone());
                pending.extend_from_slice(&message::backend_key_data(reg.pid, &reg.secret));
                upstream_key = Some(key);
                registration = Some(reg);
            }
            backend::READY_FOR_QUERY => {
                pending.extend_from_slice(&frame);
                auth.client.write_all(&pending).await.map_err(SessionError::ClientIo)?;
                auth.client.flush().await.map_err(SessionError::ClientIo)?;
                let status = frame.get(5).copied().unwrap_or(b'I');
                let AuthRelay { client_buf, upstream_buf, .. } = auth;
                return Ok((upstream, upstream_buf, client_buf, upstream_key, registration, status));
            }
            backend::ERROR_RESPONSE => {
                if let Some(code) = ErrorFields::sqlstate(&frame) {
                    shared.metrics.error(code, "upstream");
                }
                pending.extend_from_slice(&frame);
                let _ = auth.client.write_all(&pending).await;
                let _ = auth.client.flush().await;
                return Err(SessionError::UpstreamRefused);
            }
            backend::PARAMETER_STATUS | backend::NOTICE_RESPONSE | backend::NEGOTIATE_PROTOCOL_VERSION => {
                pending.extend_from_slice(&frame)
            }
            other => {
                return Err(SessionError::UpstreamProtocol(format!(
                    "unexpected message type '{}' during startup",
                    char::from(other)
                )));
            }
        }
    }
}

/// Buffers for reading whole frames from both sides during authentication.
struct AuthRelay<'a> {
    client: &'a mut ClientStream,
    client_buf: BytesMut,
    upstream_buf: BytesMut,
    max: usize,
}

impl AuthRelay<'_> {
    async fn client_frame(&mut self) -> Result<BytesMut, SessionError> {
        let max = self.max;
        read_frame(self.client, &mut self.client_buf, max, SessionError::ClientIo, SessionError::ClientGone)
            .await?
            .map_err(SessionError::ClientFrame)
    }

    async fn upstream_frame(&mut self, upstream: &mut UpstreamStream) -> Result<BytesMut, SessionError> {
        read_frame(upstream, &mut self.upstream_buf, 1 << 30, SessionError::UpstreamIo, SessionError::UpstreamClosed)
            .await?
            .map_err(|e| SessionError::UpstreamProtocol(e.to_string()))
    }
}

/// Reads one whole frame. The outer error is I/O, the inner one framing.
async fn read_frame<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    max: usize,
    io_err: fn(std::io::Error) -> SessionError,
    eof: SessionError,
) -> Result<Result<BytesMut, pgfed_wire::FrameError>, SessionError> {
    let mut scanner = FrameScanner::new(max);
    loop {
        match scanner.next(buf, |_| true) {
            Ok(Scanned::Whole { frame_len, .. }) => return Ok(Ok(buf.split_to(frame_len))),
            Ok(Scanned::NeedMore { need }) => {
                buf.reserve(need.saturating_sub(buf.len()).max(4096));
                if s.read_buf(buf).await.map_err(io_err)? == 0 {
                    return Err(eof);
                }
            }
            Ok(Scanned::Pass { .. } | Scanned::Header { .. }) => {
                // Unreachable with an inspect-everything scanner; treat as a framing failure.
                return Ok(Err(pgfed_wire::FrameError::InvalidLength { tag: 0, len: -1 }));
            }
            Err(e) => return Ok(Err(e)),
        }
    }
}
