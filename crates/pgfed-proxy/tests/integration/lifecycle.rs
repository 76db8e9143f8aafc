//! Session lifecycle: the connection limit, idle timeouts, graceful shutdown, cancellation (by the
//! client, and by pgfed when a client vanishes), upstream failures and startup parameters.

use std::time::{Duration, Instant};

use pgfed_testkit::{Msg, RawClient, TestProxy, connect, query};
use tokio_postgres::error::SqlState;

use super::support::*;

/// A name no other test (or concurrent run) uses.
fn unique(name: &str) -> String {
    format!("pgfed_lc_{name}_{}", std::process::id())
}

/// Polls `sql` (one bigint column, parameter $1 = `app`) on `admin` until it returns `want`.
async fn poll_count(admin: &tokio_postgres::Client, sql: &str, app: &str, want: i64, secs: u64, what: &str) {
    within(secs, what, async {
        loop {
            let n: i64 = admin.query_one(sql, &[&app]).await.expect("pg_stat_activity").get(0);
            if n == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

const ACTIVE: &str = "select count(*) from pg_stat_activity where application_name = $1 and state = 'active'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refuses_the_third_session_with_53300() {
    let proxy = TestProxy::start_with(|c| c.server.max_connections = 2).await;
    let first = within(10, "first session", proxy.connect("pgfed_trust", None)).await;
    let second = within(10, "second session", proxy.connect("pgfed_trust", None)).await;
    let err = within(10, "third session", connect(&proxy.conninfo("pgfed_trust", None)))
        .await
        .expect_err("the third session is refused");
    let db = err.as_db_error().unwrap_or_else(|| panic!("a server error, got {err}"));
    assert_eq!(db.code(), &SqlState::TOO_MANY_CONNECTIONS);
    assert_eq!(db.message(), "sorry, too many clients already");
    assert_eq!(db.severity(), "FATAL");
    // The two admitted sessions are unaffected.
    for c in [&first, &second] {
        assert_eq!(within(5, "select", c.query_one("select 1::int4", &[])).await.unwrap().get::<_, i32>(0), 1);
    }
    // Once one closes, its slot is free again (the close reaches pgfed asynchronously).
    drop(first);
    let third = within(10, "a session after one closed", async {
        loop {
            match connect(&proxy.conninfo("pgfed_trust", None)).await {
                Ok(c) => return c,
                Err(e) if e.code() == Some(&SqlState::TOO_MANY_CONNECTIONS) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
    })
    .await;
    assert_eq!(within(5, "select", third.query_one("select 1::int4", &[])).await.unwrap().get::<_, i32>(0), 1);
    assert_eq!(within(5, "select", second.query_one("select 1::int4", &[])).await.unwrap().get::<_, i32>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_timeout_closes_an_idle_session_with_57p05() {
    let proxy = TestProxy::start_with(|c| c.server.idle_session_timeout = Duration::from_secs(1)).await;
    let (mut c, _) = ready_raw(&proxy, "pgfed_lc_idle").await;
    let started = Instant::now();
    expect_fatal_then_close(&mut c, "57P05", 5).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "after ~1s idle: {took:?}");
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_timeout_also_applies_to_a_client_stalled_mid_message() {
    // Postgres arms idle_session_timeout while it waits for the next command, however much of it
    // arrived; a client cannot keep a session forever by sending a few bytes and going silent.
    let proxy = TestProxy::start_with(|c| c.server.idle_session_timeout = Duration::from_secs(1)).await;
    let (mut c, _) = ready_raw(&proxy, "pgfed_lc_idle_stalled").await;
    let q = query("select 'never completed'");
    c.send(&q[..q.len() / 2]).await;
    let started = Instant::now();
    expect_fatal_then_close(&mut c, "57P05", 5).await;
    assert!(started.elapsed() < Duration::from_secs(3), "after ~1s: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_timeout_spares_sessions_in_a_transaction_or_running_a_query() {
    let proxy = TestProxy::start_with(|c| c.server.idle_session_timeout = Duration::from_secs(1)).await;
    let (mut c, _) = ready_raw(&proxy, "pgfed_lc_idle_tx").await;
    simple_ok(&mut c, "begin", b'T').await;
    let early = tokio::time::timeout(Duration::from_millis(2500), c.recv()).await;
    assert!(early.is_err(), "nothing arrives while idle inside a transaction: {early:?}");
    // A statement that runs longer than the timeout is not idleness either.
    let msgs = simple_ok(&mut c, "select pg_sleep(1.5)::text || 'done'", b'T').await;
    assert_eq!(first_value(&msgs), "done");
    simple_ok(&mut c, "commit", b'I').await;
    // Back outside the transaction, the timeout applies again.
    expect_fatal_then_close(&mut c, "57P05", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_in_transaction_timeout_closes_with_25p03_and_spares_idle_sessions() {
    let proxy = TestProxy::start_with(|c| c.server.idle_in_transaction_timeout = Duration::from_secs(1)).await;
    let (mut idle, _) = ready_raw(&proxy, "pgfed_lc_idle_in_tx").await;
    let (mut c, _) = ready_raw(&proxy, "pgfed_lc_idle_in_tx").await;
    simple_ok(&mut c, "begin", b'T').await;
    let started = Instant::now();
    expect_fatal_then_close(&mut c, "25P03", 5).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "after ~1s idle: {took:?}");
    // The session idle outside a transaction all along is untouched.
    let msgs = simple_ok(&mut idle, "select 'still here'", b'I').await;
    assert_eq!(first_value(&msgs), "still here");
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_idle_sessions_and_lets_transactions_commit() {
    let mut proxy = TestProxy::start().await;
    let table = unique("shutdown_commit");
    let admin = within(10, "superuser connection", proxy.pg.superuser()).await;
    admin.batch_execute(&format!("drop table if exists {table}")).await.unwrap();
    let (mut idle, _) = ready_raw(&proxy, "pgfed_lc_shutdown").await;
    let (mut tx, _) = ready_raw(&proxy, "pgfed_lc_shutdown").await;
    simple_ok(&mut tx, "begin", b'T').await;
    simple_ok(&mut tx, &format!("create table {table} (x int)"), b'T').await;
    simple_ok(&mut tx, &format!("insert into {table} values (1)"), b'T').await;
    // A statement running outside a transaction when the shutdown begins gets its answer first.
    let busy_app = unique("shutdown_busy");
    let (mut busy, _) = ready_raw(&proxy, &busy_app).await;
    busy.send(&query("select pg_sleep(1)::text || 'finished'")).await;
    poll_count(&admin, ACTIVE, &busy_app, 1, 5, "pg_sleep starting").await;

    let serve = proxy.begin_shutdown();
    let message = expect_fatal_then_close(&mut idle, "57P01", 5).await;
    assert!(message.contains("terminating connection"), "{message}");
    // The listener is gone: new clients are refused.
    let refused = within(5, "connect after shutdown", tokio::net::TcpStream::connect(proxy.addr)).await;
    assert!(refused.is_err(), "new connections are refused after shutdown began");
    let (msgs, status) = busy.until_ready().await;
    assert!(msgs.iter().all(|m| m.tag != b'E'), "the running statement completes: {msgs:?}");
    assert_eq!((first_value(&msgs).as_str(), status), ("finished", b'I'));
    expect_fatal_then_close(&mut busy, "57P01", 5).await;

    // The transaction continues and commits; then its session ends too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!serve.is_finished(), "serve waits for the open transaction");
    let msgs = simple_ok(&mut tx, &format!("insert into {table} values (2) returning x"), b'T').await;
    assert_eq!(first_value(&msgs), "2");
    let msgs = simple_ok(&mut tx, "commit", b'I').await;
    assert!(msgs.iter().any(|m| m.tag == b'C' && m.body.starts_with(b"COMMIT")), "{msgs:?}");
    expect_fatal_then_close(&mut tx, "57P01", 5).await;
    within(10, "the serve task ending", serve).await.expect("serve ends cleanly");

    let n: i64 = admin.query_one(&format!("select count(*) from {table}"), &[]).await.unwrap().get(0);
    assert_eq!(n, 2, "the transaction committed");
    admin.batch_execute(&format!("drop table {table}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_ends_sessions_stuck_in_a_transaction_with_57p01() {
    let mut proxy = TestProxy::start_with(|c| c.server.shutdown_timeout = Duration::from_secs(1)).await;
    let admin = within(10, "superuser connection", proxy.pg.superuser()).await;
    let sleeper_app = unique("shutdown_sleeper");
    let (mut stuck, _) = ready_raw(&proxy, "pgfed_lc_shutdown_stuck").await;
    simple_ok(&mut stuck, "begin", b'T').await;
    // A second session inside a transaction, busy with a long statement.
    let (mut sleeper, _) = ready_raw(&proxy, &sleeper_app).await;
    simple_ok(&mut sleeper, "begin", b'T').await;
    sleeper.send(&query("select pg_sleep(30)")).await;
    poll_count(&admin, ACTIVE, &sleeper_app, 1, 10, "pg_sleep starting").await;

    let started = Instant::now();
    let serve = proxy.begin_shutdown();
    expect_fatal_then_close(&mut stuck, "57P01", 6).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(4), "at the ~1s deadline: {took:?}");
    expect_fatal_then_close(&mut sleeper, "57P01", 6).await;
    within(5, "the serve task ending", serve).await.expect("serve ends cleanly");
    // The busy session's upstream statement does not run on.
    poll_count(&admin, ACTIVE, &sleeper_app, 0, 5, "the upstream pg_sleep ending").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deadline_also_ends_clients_still_in_startup() {
    let mut proxy = TestProxy::start_with(|c| c.server.shutdown_timeout = Duration::from_secs(1)).await;
    // One client stopped halfway through its startup packet, one never answers the password request.
    let mut half_packet = RawClient::connect(proxy.addr).await;
    half_packet.send(&[0, 0, 0, 40]).await;
    let mut no_password = RawClient::connect(proxy.addr).await;
    no_password.startup(&[("user", "pgfed_password"), ("database", proxy.pg.db.as_str())]).await;
    let m = no_password.recv_within(Duration::from_secs(5)).await.expect("a password request");
    assert_eq!(m.tag, b'R');

    let started = Instant::now();
    let serve = proxy.begin_shutdown();
    // Neither is a session yet; nothing should make pgfed wait for them past the deadline.
    within(4, "the serve task ending", serve).await.expect("serve ends cleanly");
    assert!(started.elapsed() < Duration::from_secs(3), "serve ended at {:?}", started.elapsed());
    assert!(half_packet.closed_within(Duration::from_secs(1)).await, "the half-started client is closed");
    assert!(no_password.closed_within(Duration::from_secs(1)).await, "the authenticating client is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_query_cancels_the_upstream_query() {
    let proxy = TestProxy::start().await;
    let app = unique("disconnect");
    let admin = within(10, "superuser connection", proxy.pg.superuser()).await;
    let (mut c, _) = ready_raw(&proxy, &app).await;
    c.send(&query("select pg_sleep(30)")).await;
    poll_count(&admin, ACTIVE, &app, 1, 10, "pg_sleep starting").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(c);
    let started = Instant::now();
    poll_count(&admin, ACTIVE, &app, 0, 5, "the upstream query ending").await;
    assert!(started.elapsed() < Duration::from_secs(3), "cancelled within ~3s: {:?}", started.elapsed());
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_through_pgfed_cancels_the_running_query() {
    let proxy = TestProxy::start().await;
    let app = unique("cancel");
    let admin = within(10, "superuser connection", proxy.pg.superuser()).await;
    let client =
        within(10, "session", connect(&format!("{} application_name={app}", proxy.conninfo("pgfed_trust", None))))
            .await
            .expect("session through pgfed");
    let token = client.cancel_token();
    let started = Instant::now();
    let (result, ()) = within(10, "the cancelled query", async {
        tokio::join!(client.simple_query("select pg_sleep(20)"), async {
            poll_count(&admin, ACTIVE, &app, 1, 5, "pg_sleep starting").await;
            token.cancel_query(tokio_postgres::NoTls).await.expect("cancel request sent");
        })
    })
    .await;
    let err = result.expect_err("the query is cancelled");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "cancelled quickly: {:?}", started.elapsed());
    let row = within(5, "select after cancel", client.query_one("select 1::int4", &[])).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1, "the session is usable after the cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_requests_are_served_when_the_connection_limit_is_reached() {
    let proxy = TestProxy::start_with(|c| c.server.max_connections = 1).await;
    let app = unique("cancel_at_limit");
    let admin = within(10, "superuser connection", proxy.pg.superuser()).await;
    let client =
        within(10, "session", connect(&format!("{} application_name={app}", proxy.conninfo("pgfed_trust", None))))
            .await
            .expect("the only session");
    let token = client.cancel_token();
    let (result, ()) = within(10, "the cancelled query", async {
        tokio::join!(client.simple_query("select pg_sleep(20)"), async {
            poll_count(&admin, ACTIVE, &app, 1, 5, "pg_sleep starting").await;
            token.cancel_query(tokio_postgres::NoTls).await.expect("cancel request sent");
        })
    })
    .await;
    let err = result.expect_err("the query is cancelled although no session slot is free");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
}

/// Sends a CancelRequest to `addr` and waits for the server to close the connection.
async fn send_cancel(addr: std::net::SocketAddr, pid: i32, secret: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect for the cancel request");
    s.write_all(&pgfed_wire::StartupPacket::encode_cancel(pid, secret)).await.expect("send the cancel request");
    within(5, "the cancel connection closing", async {
        let mut sink = [0u8; 64];
        if let Ok(n) = s.read(&mut sink).await {
            assert_eq!(n, 0, "a cancel request gets no answer");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_key_data_carries_the_upstream_pid_and_a_secret_of_pgfeds_own() {
    let proxy = TestProxy::start().await;
    let app = unique("keydata");
    let admin = within(10, "superuser connection", proxy.pg.superuser()).await;
    let (mut c, startup) = ready_raw(&proxy, &app).await;
    let keys: Vec<&Msg> = startup.iter().filter(|m| m.tag == b'K').collect();
    assert_eq!(keys.len(), 1, "exactly one BackendKeyData: {startup:?}");
    assert_eq!(keys[0].body.len(), 8, "pid and a 4-byte secret in protocol 3.0");
    let client_pid = i32::from_be_bytes([keys[0].body[0], keys[0].body[1], keys[0].body[2], keys[0].body[3]]);
    let secret = keys[0].body[4..].to_vec();
    let msgs = simple_ok(&mut c, "select pg_backend_pid()", b'I').await;
    let upstream_pid: i32 = first_value(&msgs).parse().expect("a pid");
    assert_eq!(client_pid, upstream_pid, "the pid is the upstream backend's, as pg_backend_pid() says");

    // The secret is not the upstream's: sent straight to Postgres, the key cancels nothing.
    let upstream: std::net::SocketAddr = format!("{}:{}", proxy.pg.host, proxy.pg.port).parse().unwrap();
    let started = Instant::now();
    c.send(&query("select pg_sleep(2)")).await;
    poll_count(&admin, ACTIVE, &app, 1, 5, "pg_sleep starting").await;
    send_cancel(upstream, client_pid, &secret).await;
    let (msgs, status) = c.until_ready().await;
    assert!(msgs.iter().all(|m| m.tag != b'E'), "Postgres does not accept pgfed's secret: {msgs:?}");
    assert_eq!(status, b'I');
    assert!(started.elapsed() >= Duration::from_millis(1950), "pg_sleep(2) ran to its end");

    // Sent to pgfed, the same key cancels the session's query.
    let started = Instant::now();
    c.send(&query("select pg_sleep(20)")).await;
    poll_count(&admin, ACTIVE, &app, 1, 5, "pg_sleep starting").await;
    send_cancel(proxy.addr, client_pid, &secret).await;
    let (msgs, status) = c.until_ready().await;
    let err = msgs.iter().find(|m| m.tag == b'E').unwrap_or_else(|| panic!("the query is cancelled: {msgs:?}"));
    expect_error(err, "ERROR", "57014");
    assert_eq!(status, b'I');
    assert!(started.elapsed() < Duration::from_secs(5), "cancelled quickly: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_backend_terminated_forwards_its_fatal_and_other_sessions_continue() {
    let proxy = TestProxy::start().await;
    let admin = within(10, "superuser connection", proxy.pg.superuser()).await;
    let other = within(10, "other session", proxy.connect("pgfed_trust", None)).await;
    let (mut c, _) = ready_raw(&proxy, "pgfed_lc_upstream_dies").await;
    let msgs = simple_ok(&mut c, "select pg_backend_pid()", b'I').await;
    let pid: i32 = first_value(&msgs).parse().expect("a pid");
    let killed: bool = admin.query_one("select pg_terminate_backend($1)", &[&pid]).await.unwrap().get(0);
    assert!(killed, "pg_terminate_backend found the session");
    let message = expect_fatal_then_close(&mut c, "57P01", 5).await;
    assert!(message.contains("terminating connection due to administrator command"), "{message}");
    let row = within(5, "other session's select", other.query_one("select 1::int4", &[])).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_gets_08006_quickly_and_the_proxy_continues() {
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxy = TestProxy::start_with(|c| {
        c.upstream.url = format!("postgres://127.0.0.1:{closed_port}/pgfed_test?sslmode=disable")
    })
    .await;
    for attempt in 0..2 {
        let started = Instant::now();
        let err = within(5, "the refused session", connect(&proxy.conninfo("pgfed_trust", None)))
            .await
            .expect_err("no upstream, no session");
        let db = err.as_db_error().unwrap_or_else(|| panic!("attempt {attempt}: a server error, got {err}"));
        assert_eq!(db.code(), &SqlState::CONNECTION_FAILURE, "attempt {attempt}");
        assert_eq!(db.severity(), "FATAL");
        assert!(db.message().contains("could not connect to the upstream server"), "{}", db.message());
        assert!(started.elapsed() < Duration::from_secs(2), "quickly: {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_are_forwarded_to_postgres() {
    let proxy = TestProxy::start().await;
    let app = unique("params");
    let extra = format!(" application_name={app} options='-c search_path=foo,public -c statement_timeout=1234'");
    let show = "select current_setting('application_name'), current_setting('search_path'), \
                current_setting('statement_timeout'), session_user::text";
    let values = |row: tokio_postgres::Row| -> Vec<String> { (0..4).map(|i| row.get::<_, String>(i)).collect() };

    let through = within(10, "session through pgfed", connect(&(proxy.conninfo("pgfed_trust", None) + &extra)))
        .await
        .expect("session through pgfed");
    let via_pgfed = values(within(5, "show", through.query_one(show, &[])).await.unwrap());
    let direct = within(10, "direct session", connect(&(proxy.pg.direct("pgfed_trust", None) + &extra)))
        .await
        .expect("direct session");
    let via_direct = values(within(5, "show", direct.query_one(show, &[])).await.unwrap());

    assert_eq!(via_pgfed[0], app);
    assert!(via_pgfed[1].starts_with("foo,") && via_pgfed[1].ends_with("public"), "{:?}", via_pgfed[1]);
    assert_eq!(via_pgfed[2], "1234ms");
    assert_eq!(via_pgfed[3], "pgfed_trust");
    assert_eq!(via_pgfed, via_direct, "the same settings as a direct connection");
}
