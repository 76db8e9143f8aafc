//! Real client programs (tests/clients) through pgfed: psql, pgjdbc, psycopg2/psycopg/asyncpg/
//! SQLAlchemy and node-postgres. Each program asserts its own results; the psql session must
//! also print exactly what it prints against Postgres directly.

use std::time::Duration;

use pgfed_testkit::{TestProxy, repo_root, run_program};

const USER: &str = "pgfed_scram";
const PASSWORD: &str = "pw_scram";
const LIMIT: Duration = Duration::from_secs(300);

async fn run_client(proxy: &TestProxy, cmd: &str, args: &[&str]) {
    let (ok, out, err) = run_program(cmd, args, &proxy.libpq_env(USER, PASSWORD), LIMIT).await;
    assert!(ok, "{cmd} {args:?} failed through pgfed\n--- stdout\n{out}\n--- stderr\n{err}");
    assert!(out.contains("ok: "), "{cmd} printed no checks:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_session_prints_the_same_through_pgfed_as_directly() {
    let proxy = TestProxy::start().await;
    let script = repo_root().join("tests/clients/psql/session.sql");
    let script = script.to_str().unwrap();
    let args = ["-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", script];
    let mut direct_env = proxy.libpq_env(USER, PASSWORD);
    for (k, v) in &mut direct_env {
        if k == "PGPORT" {
            *v = proxy.pg.port.to_string();
        }
    }
    let (_, direct_out, direct_err) = run_program("psql", &args, &direct_env, LIMIT).await;
    let (_, via_out, via_err) = run_program("psql", &args, &proxy.libpq_env(USER, PASSWORD), LIMIT).await;
    assert!(direct_out.lines().count() > 20, "the session printed little:\n{direct_out}");
    assert_eq!(via_out, direct_out, "stdout differs");
    assert_eq!(via_err, direct_err, "stderr differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_prepared_statements_fetch_size_and_metadata() {
    let proxy = TestProxy::start().await;
    let script = repo_root().join("tests/clients/java/run.sh");
    run_client(&proxy, "bash", &[script.to_str().unwrap()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_drivers_and_sqlalchemy_inspector() {
    let proxy = TestProxy::start().await;
    let script = repo_root().join("tests/clients/python/test_clients.py");
    run_client(&proxy, "python3", &[script.to_str().unwrap()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_queries_prepared_statements_and_notifications() {
    let proxy = TestProxy::start().await;
    let script = repo_root().join("tests/clients/node/test.js");
    run_client(&proxy, "node", &[script.to_str().unwrap()]).await;
}
