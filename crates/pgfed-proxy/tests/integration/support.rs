//! Helpers shared by the raw-protocol tests.

use std::future::Future;
use std::time::Duration;

use pgfed_testkit::{Msg, RawClient, TestProxy, query};

/// Awaits `fut`, failing the test if it takes longer than `secs`.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs}s"))
}

/// Another session through the same pgfed: a fresh tokio-postgres connection runs `select 1`.
pub async fn other_session_works(proxy: &TestProxy) {
    within(15, "a fresh session's select 1", async {
        let client = proxy.connect("pgfed_trust", None).await;
        let row = client.query_one("select 1::int4", &[]).await.expect("select 1 through pgfed");
        assert_eq!(row.get::<_, i32>(0), 1);
    })
    .await;
}

/// A raw session as pgfed_trust, past its first ReadyForQuery.
pub async fn ready_raw(proxy: &TestProxy, app: &str) -> (RawClient, Vec<Msg>) {
    let mut c = RawClient::connect(proxy.addr).await;
    c.startup(&[("user", "pgfed_trust"), ("database", proxy.pg.db.as_str()), ("application_name", app)]).await;
    let (msgs, status) = c.until_ready().await;
    assert_eq!(status, b'I', "startup ends idle: {msgs:?}");
    assert!(msgs.iter().all(|m| m.tag != b'E'), "no error during startup: {msgs:?}");
    (c, msgs)
}

/// Text values of every DataRow in `msgs`.
pub fn rows(msgs: &[Msg]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(|m| {
            let b = &m.body;
            let n = u16::from_be_bytes([b[0], b[1]]) as usize;
            let mut at = 2;
            (0..n)
                .map(|_| {
                    let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                    at += 4;
                    if len < 0 {
                        return None;
                    }
                    let v = String::from_utf8_lossy(&b[at..at + len as usize]).into_owned();
                    at += len as usize;
                    Some(v)
                })
                .collect()
        })
        .collect()
}

pub fn first_value(msgs: &[Msg]) -> String {
    rows(msgs).first().and_then(|r| r.first().cloned()).flatten().unwrap_or_else(|| panic!("a value in {msgs:?}"))
}

/// Asserts that `m` is an ErrorResponse with this severity and SQLSTATE, and returns its message.
pub fn expect_error(m: &Msg, severity: &str, code: &str) -> String {
    assert_eq!(m.tag, b'E', "expected an ErrorResponse, got {m:?}");
    assert_eq!(m.field(b'S').as_deref(), Some(severity), "severity of {m:?}");
    assert_eq!(m.field(b'C').as_deref(), Some(code), "SQLSTATE of {:?}", m.field(b'M'));
    m.field(b'M').unwrap_or_default()
}

/// Reads the next message, which must be a FATAL with `code`, then expects the close.
pub async fn expect_fatal_then_close(c: &mut RawClient, code: &str, secs: u64) -> String {
    let m = c.recv_within(Duration::from_secs(secs)).await.unwrap_or_else(|| panic!("a FATAL {code} before the close"));
    let message = expect_error(&m, "FATAL", code);
    let next = c.recv_within(Duration::from_secs(5)).await;
    assert!(next.is_none(), "the connection closes right after the FATAL, got {next:?}");
    message
}

/// Sends a simple Query and reads up to its ReadyForQuery.
pub async fn simple(c: &mut RawClient, sql: &str) -> (Vec<Msg>, u8) {
    c.send(&query(sql)).await;
    c.until_ready().await
}

/// Sends a simple Query and reads up to its ReadyForQuery, which must carry `status`.
pub async fn simple_ok(c: &mut RawClient, sql: &str, status: u8) -> Vec<Msg> {
    c.send(&query(sql)).await;
    let (msgs, got) = c.until_ready().await;
    assert!(msgs.iter().all(|m| m.tag != b'E'), "{sql}: {msgs:?}");
    assert_eq!(char::from(got), char::from(status), "transaction status after {sql}");
    msgs
}
