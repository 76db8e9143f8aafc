//! Test support shared by pgfed's integration tests.
//!
//! - [`TestPg`]: the private Postgres cluster that `scripts/test` starts (see docs/testing.md);
//!   tests fail with a message naming `scripts/test` when it is missing, never skip silently.
//! - [`TestProxy`]: a real pgfed on 127.0.0.1 port 0, in-process, in front of that cluster.
//! - [`RawClient`]: speaks the wire protocol byte by byte, for malformed and edge-case input.
//! - [`TestCert`]: a throwaway CA and server certificate for TLS tests.

#![allow(clippy::unwrap_used)] // Test support: a panic is the right failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use pgfed_config::{Config, Validated};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Coordinates of the private test cluster, from the environment `scripts/test` sets.
#[derive(Debug, Clone)]
pub struct TestPg {
    pub host: String,
    pub port: u16,
    pub db: String,
    pub ca: PathBuf,
    pub dir: PathBuf,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: integration tests need the private Postgres cluster. Run them with scripts/test (see docs/testing.md).")
    })
}

impl TestPg {
    pub fn from_env() -> Self {
        Self {
            host: env("PGFED_TEST_PG_HOST"),
            port: env("PGFED_TEST_PG_PORT").parse().expect("PGFED_TEST_PG_PORT is a port"),
            db: env("PGFED_TEST_PG_DB"),
            ca: env("PGFED_TEST_PG_CA").into(),
            dir: env("PGFED_TEST_PG_DIR").into(),
        }
    }

    /// The upstream URL pgfed should use for this cluster.
    pub fn upstream_url(&self, sslmode: &str) -> String {
        format!("postgres://{}:{}/{}?sslmode={sslmode}", self.host, self.port, self.db)
    }

    /// A direct (not proxied) connection string.
    pub fn direct(&self, user: &str, password: Option<&str>) -> String {
        conninfo(&self.host, self.port, &self.db, user, password)
    }

    /// Connects directly as the superuser, for setup and for checking what the upstream sees.
    pub async fn superuser(&self) -> tokio_postgres::Client {
        connect(&self.direct("postgres", None)).await.expect("direct superuser connection")
    }
}

/// libpq-style connection string.
pub fn conninfo(host: &str, port: u16, db: &str, user: &str, password: Option<&str>) -> String {
    let mut s = format!("host={host} port={port} dbname={db} user={user} sslmode=disable connect_timeout=10");
    if let Some(p) = password {
        s.push_str(&format!(" password={p}"));
    }
    s
}

/// Connects with tokio-postgres (no TLS) and drives the connection in the background.
pub async fn connect(conninfo: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A pgfed running in-process on 127.0.0.1 port 0. Dropping it shuts it down.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub pg: TestPg,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    /// Starts pgfed in front of the test cluster with default settings (upstream sslmode=disable).
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts pgfed after `tweak` adjusted the configuration (upstream URL preset).
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_server(tweak, |server, _, _| server).await
    }

    /// Like [`TestProxy::start_with`], and `build` may change the server before it serves (attach
    /// a federation, say); it gets the validated configuration and the shutdown token.
    pub async fn start_server(
        tweak: impl FnOnce(&mut Config),
        build: impl FnOnce(pgfed_proxy::Server, &Validated, CancellationToken) -> pgfed_proxy::Server,
    ) -> Self {
        let pg = TestPg::from_env();
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".into();
        config.upstream.url = pg.upstream_url("disable");
        tweak(&mut config);
        let validated: Validated = config.validate().expect("test configuration is valid");
        let shutdown = CancellationToken::new();
        let server = build(pgfed_proxy::Server::new(&validated).expect("server builds"), &validated, shutdown.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(server.serve(listener, shutdown.clone()));
        Self { addr, pg, shutdown, task: Some(task) }
    }

    pub fn conninfo(&self, user: &str, password: Option<&str>) -> String {
        conninfo("127.0.0.1", self.addr.port(), &self.pg.db, user, password)
    }

    /// Connects through pgfed as `user`.
    pub async fn connect(&self, user: &str, password: Option<&str>) -> tokio_postgres::Client {
        connect(&self.conninfo(user, password)).await.expect("connection through pgfed")
    }

    /// Starts a graceful shutdown and returns a handle to wait for its end.
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        self.shutdown.cancel();
        self.task.take().expect("shutdown started once")
    }

    /// Environment for a libpq-based client program pointed at this proxy.
    pub fn libpq_env(&self, user: &str, password: &str) -> Vec<(String, String)> {
        vec![
            ("PGHOST".into(), "127.0.0.1".into()),
            ("PGPORT".into(), self.addr.port().to_string()),
            ("PGUSER".into(), user.into()),
            ("PGPASSWORD".into(), password.into()),
            ("PGDATABASE".into(), self.pg.db.clone()),
            ("PGSSLMODE".into(), "disable".into()),
        ]
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A byte-level protocol client for malformed and edge-case input.
pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
}

/// One backend message: tag and body.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// Field `f` of an ErrorResponse/NoticeResponse.
    pub fn field(&self, f: u8) -> Option<String> {
        let mut rest = &self.body[..];
        while let Some((&t, r)) = rest.split_first() {
            if t == 0 {
                break;
            }
            let end = r.iter().position(|&b| b == 0)?;
            if t == f {
                return Some(String::from_utf8_lossy(&r[..end]).into_owned());
            }
            rest = &r[end + 1..];
        }
        None
    }
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Self { stream, buf: BytesMut::new() }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Sends a StartupMessage for protocol 3.0 with the given parameters.
    pub async fn startup(&mut self, params: &[(&str, &str)]) {
        let params: Vec<(Vec<u8>, Vec<u8>)> =
            params.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
        let pkt =
            pgfed_wire::StartupPacket::encode_startup(pgfed_wire::ProtocolVersion { major: 3, minor: 0 }, &params);
        self.send(&pkt).await;
    }

    /// Reads the next message, or `None` if the connection closed. Panics after `timeout`.
    pub async fn recv_within(&mut self, timeout: Duration) -> Option<Msg> {
        tokio::time::timeout(timeout, self.recv()).await.expect("a message or a close within the timeout")
    }

    pub async fn recv(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    let body = self.buf.split_to(len - 4).to_vec();
                    return Some(Msg { tag, body });
                }
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads until ReadyForQuery, returning everything before it and the status byte.
    pub async fn until_ready(&mut self) -> (Vec<Msg>, u8) {
        let mut msgs = Vec::new();
        loop {
            let m = self.recv_within(Duration::from_secs(30)).await.expect("connection open until ReadyForQuery");
            if m.tag == b'Z' {
                return (msgs, m.body[0]);
            }
            msgs.push(m);
        }
    }

    /// Reads a single raw byte (answers to SSLRequest/GSSENCRequest).
    pub async fn recv_byte(&mut self) -> Option<u8> {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b).await {
            Ok(1) => Some(b[0]),
            _ => None,
        }
    }

    /// True when the peer closes the connection within `timeout` (reading and discarding).
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            let mut sink = [0u8; 4096];
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}

/// Builds a frontend message.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A simple Query message.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    frame(b'Q', &body)
}

/// A throwaway CA and a server certificate for localhost/127.0.0.1, written to a temp dir.
pub struct TestCert {
    pub dir: PathBuf,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCert {
    pub fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("pgfed-cert-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct subjects: a leaf whose subject equals its issuer looks self-signed to OpenSSL.
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "pgfed test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (ca_file, cert_file, key_file) = (dir.join("ca.crt"), dir.join("server.crt"), dir.join("server.key"));
        std::fs::write(&ca_file, ca.pem()).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Self { dir, ca_file, cert_file, key_file }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Runs an external client program, returning (success, stdout, stderr).
pub async fn run_program(
    cmd: &str,
    args: &[&str],
    env: &[(String, String)],
    timeout: Duration,
) -> (bool, String, String) {
    let mut c = tokio::process::Command::new(cmd);
    c.args(args).kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = tokio::time::timeout(timeout, c.output())
        .await
        .unwrap_or_else(|_| panic!("{cmd} {args:?} did not finish within {timeout:?}"))
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e} (scripts/setup installs the test clients)"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The repository root, for paths to client programs.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}
