//! The `pgfed` binary as an operator runs it: flags, environment, config checks, the metrics
//! endpoint, logs, and SIGTERM.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgfed_testkit::{TestPg, connect, conninfo};

const BIN: &str = env!("CARGO_BIN_EXE_pgfed");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(args).env_remove("PGFED_CONFIG").env_remove("PGFED_LISTEN").env_remove("PGFED_UPSTREAM");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn help_documents_the_environment_and_the_config_check() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for needle in ["PGFED_LISTEN", "PGFED_UPSTREAM", "PGFED_METRICS_LISTEN", "check-config", "--config", "sslmode"] {
        assert!(out.contains(needle), "--help lacks {needle}:\n{out}");
    }
}

#[test]
fn check_config_validates_without_starting_and_hides_passwords() {
    let dir = std::env::temp_dir().join(format!("pgfed-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[server]\nlisten = \"127.0.0.1:7000\"\nidle_session_timeout = \"10m\"\n[upstream]\nurl = \"postgres://admin:s3cret@db.example:5433/app?sslmode=require\"\n").unwrap();
    let (code, out, err) = run(&["check-config", "--config", good.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("127.0.0.1:7000") && out.contains("db.example:5433") && out.contains("600s"), "{out}");
    assert!(!out.contains("s3cret") && !err.contains("s3cret"), "password shown:\n{out}{err}");

    // The environment overrides the file, and flags override the environment.
    let (code, out, _) =
        run(&["check-config", "--config", good.to_str().unwrap()], &[("PGFED_LISTEN", "127.0.0.1:7001")]);
    assert_eq!(code, 0);
    assert!(out.contains("127.0.0.1:7001"), "{out}");
    let (_, out, _) = run(
        &["check-config", "--config", good.to_str().unwrap(), "--listen", "127.0.0.1:7002"],
        &[("PGFED_LISTEN", "127.0.0.1:7001")],
    );
    assert!(out.contains("127.0.0.1:7002"), "{out}");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[server]\nmax_conections = 5\n").unwrap();
    let (code, _, err) = run(&["check-config", "--config", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("max_conections"), "error names the unknown key: {err}");

    let (code, _, err) = run(&["check-config"], &[("PGFED_UPSTREAM", "postgres://u:topsecret@h/db?sslmode=sometimes")]);
    assert_eq!(code, 1);
    assert!(err.contains("sslmode") && !err.contains("topsecret"), "{err}");
    let (code, _, err) = run(&["check-config", "--config", "/nonexistent/pgfed.toml"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/pgfed.toml"), "{err}");
}

struct Running {
    child: Child,
    port: u16,
    /// stderr, drained continuously: a child blocked on a full pipe would stop serving.
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    fn start(pg: &TestPg, extra: &[(&str, String)]) -> Self {
        let port = free_port();
        let mut c = Command::new(BIN);
        c.env("PGFED_LISTEN", format!("127.0.0.1:{port}"))
            .env("PGFED_UPSTREAM", pg.upstream_url("disable"))
            .env_remove("PGFED_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let mut pipe = child.stderr.take().unwrap();
        let stderr = Some(std::thread::spawn(move || {
            let mut err = String::new();
            let _ = pipe.read_to_string(&mut err);
            err
        }));
        // Generous: a loaded CI machine may take a while to map a 250 MB debug binary.
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pgfed did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, stderr }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok);
    }

    /// Waits for exit; returns (exit code, stderr).
    fn wait(mut self, limit: Duration) -> (i32, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let err = self.stderr.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default();
                return (status.code().unwrap_or(-1), err);
            }
            assert!(Instant::now() < deadline, "pgfed did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_metrics_logs_json_without_secrets_and_drains_on_sigterm() {
    let pg = TestPg::from_env();
    let metrics_port = free_port();
    let proxy = Running::start(
        &pg,
        &[
            ("PGFED_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}")),
            ("PGFED_LOG_FORMAT", "json".into()),
            ("PGFED_LOG", "debug".into()),
        ],
    );
    let info = conninfo("127.0.0.1", proxy.port, &pg.db, "pgfed_scram", Some("pw_scram"));
    let client = connect(&info).await.unwrap();
    client.batch_execute("select 1; select 2").await.unwrap();
    let err = client.batch_execute("select 1/0").await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "22012");
    let stmt = client.prepare("select $1::int4").await.unwrap();
    client.query_one(&stmt, &[&7i32]).await.unwrap();
    // Two Query messages and one Parse: executing a prepared statement sends no Parse.

    let body = tokio::task::spawn_blocking(move || http_get(metrics_port, "/metrics")).await.unwrap();
    for needle in [
        "pgfed_sessions_total 1",
        "pgfed_sessions_active 1",
        "pgfed_statements_total{route=\"upstream\"} 3",
        "pgfed_route_decisions_total{path=\"scan\"} 3",
        "pgfed_errors_total{class=\"22\",source=\"upstream\"} 1",
        "pgfed_client_bytes_received_total",
        "pgfed_client_bytes_sent_total",
        "pgfed_upstream_connect_seconds_bucket",
    ] {
        assert!(body.contains(needle), "metrics lack {needle}:\n{body}");
    }

    // SIGTERM: the idle session is told 57P01 and closed, and pgfed exits cleanly.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let waiter = tokio::spawn(async move {
        let _ = rx.await;
    });
    proxy.signal("-TERM");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if client.is_closed() {
                return;
            }
            if client.simple_query("select 1").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "idle session was not closed after SIGTERM");
    let _ = tx.send(());
    waiter.await.unwrap();
    let (code, logs) = tokio::task::spawn_blocking(move || proxy.wait(Duration::from_secs(15))).await.unwrap();
    assert_eq!(code, 0, "exit code after SIGTERM; logs:\n{logs}");
    assert!(!logs.contains("pw_scram"), "password leaked into logs");
    let mut saw_session = false;
    for line in logs.lines() {
        let v: serde_json_probe::Value =
            serde_json_probe::parse(line).unwrap_or_else(|| panic!("not a JSON log line: {line}"));
        saw_session |= v.has_key("id") && line.contains("session ended");
    }
    assert!(saw_session, "JSON logs carry the session id:\n{logs}");
    assert!(logs.contains("shutdown complete"), "{logs}");
}

/// Just enough JSON checking for log lines, without a serde_json dependency in the binary crate.
mod serde_json_probe {
    pub struct Value(String);
    impl Value {
        pub fn has_key(&self, k: &str) -> bool {
            self.0.contains(&format!("\"{k}\":"))
        }
    }
    pub fn parse(line: &str) -> Option<Value> {
        let t = line.trim();
        (t.starts_with('{') && t.ends_with('}')).then(|| Value(t.to_string()))
    }
}

/// `[catalog] files`: checked offline by check-config (secrets resolved, never printed), applied
/// at startup, idempotent on the next start, and a broken file stops pgfed with its location.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_files_are_checked_offline_and_applied_at_startup() {
    let pg = TestPg::from_env();
    let db = format!("binary_gitops_{}", std::process::id());
    let admin = pg.superuser().await;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db}")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).await.unwrap();
    let dir = std::env::temp_dir().join(&db);
    std::fs::create_dir_all(dir.join("catalog")).unwrap();
    let url = format!("postgres://postgres:url-secret@{}:{}/{db}?sslmode=disable", pg.host, pg.port);
    let config = dir.join("pgfed.toml");
    std::fs::write(&config, format!("[upstream]\nurl = \"{url}\"\n[catalog]\nfiles = [\"catalog/*.sql\"]\n")).unwrap();
    std::fs::write(
        dir.join("catalog/wh.sql"),
        format!(
            "CREATE SERVER wh FOREIGN DATA WRAPPER postgres OPTIONS (host '{}', port '{}', dbname '{db}');\n\
             CREATE USER MAPPING FOR PUBLIC SERVER wh OPTIONS (user 'postgres', password '${{env:GITOPS_PW}}');\n",
            pg.host, pg.port
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();

    let (code, out, err) = run(&["check-config", "--config", cfg], &[("GITOPS_PW", "env-secret")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("catalog files                = 1 file(s): 1 server, 1 user mapping"), "{out}");
    assert!(!out.contains("env-secret") && !out.contains("url-secret"), "{out}");
    let (code, _, err) = run(&["check-config", "--config", cfg], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("wh.sql:2 (statement 2)") && err.contains("GITOPS_PW is not set"), "{err}");

    let env = [("PGFED_CONFIG", cfg.to_string()), ("GITOPS_PW", "env-secret".into()), ("PGFED_UPSTREAM", url.clone())];
    for expected in ["catalog files: created server \"wh\"", "nothing changed"] {
        let proxy = Running::start(&pg, &env);
        proxy.signal("-TERM");
        let (code, err) = proxy.wait(Duration::from_secs(30));
        assert_eq!(code, 0, "{err}");
        assert!(err.contains(expected), "{expected} not logged:\n{err}");
        assert!(!err.contains("env-secret") && !err.contains("url-secret"), "a secret was logged:\n{err}");
    }

    // A statement that does not parse stops pgfed before it listens, naming the file and line.
    std::fs::write(dir.join("catalog/zz.sql"), "\nCREATE SERVER x FOREIGN DATA WRAPPER;").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = run(&["--config", cfg], &[("GITOPS_PW", "env-secret"), ("PGFED_LISTEN", &listen)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("catalog files") && err.contains("zz.sql:2 (statement 1): syntax error"), "{err}");
    assert!(err.contains("(SQLSTATE 42601)"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
    admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).await.unwrap();
}
