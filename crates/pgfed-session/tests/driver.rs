//! The driver against a real Postgres 15 (the private cluster `scripts/test` starts).

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;
use pgfed_session::{Connection, Driver, ResultFormat, UpstreamError, UpstreamSession, channel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests with scripts/test"))
}

/// A trust-authenticated raw connection, after its first ReadyForQuery.
async fn raw() -> (TcpStream, BytesMut) {
    let addr = format!("{}:{}", env("PGFED_TEST_PG_HOST"), env("PGFED_TEST_PG_PORT"));
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut body = BytesMut::new();
    body.put_u32(196608);
    let db = env("PGFED_TEST_PG_DB");
    for (k, v) in [("user", "pgfed_trust"), ("database", db.as_str())] {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut msg = BytesMut::new();
    msg.put_u32(body.len() as u32 + 4);
    msg.put_slice(&body);
    s.write_all(&msg).await.expect("startup");
    let mut buf = BytesMut::new();
    loop {
        while buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() < len + 1 {
                break;
            }
            let frame = buf.split_to(len + 1);
            assert_ne!(frame[0], b'E', "startup failed: {:?}", String::from_utf8_lossy(&frame));
            if frame[0] == b'Z' {
                return (s, buf);
            }
        }
        assert!(s.read_buf(&mut buf).await.expect("read") > 0, "closed during startup");
    }
}

/// Runs `work` with a connection served by a driver, then ends the unit.
async fn unit<F, Fut, T>(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    driver: &mut Driver,
    conn: Connection,
    work: F,
) -> (T, pgfed_session::Finished)
where
    F: FnOnce(Connection) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let (r, w) = stream.split();
    let (mut r, mut w) = (r, w);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let serve = driver.serve(&mut r, &mut w, buf, async {
        let _ = done_rx.await;
    });
    let work = async move {
        let out = work(conn).await;
        let _ = done_tx.send(());
        out
    };
    let (finished, out) = tokio::join!(serve, work);
    (out, finished.expect("upstream healthy"))
}

async fn simple(stream: &mut TcpStream, buf: &mut BytesMut, sql: &str) -> u8 {
    let mut m = BytesMut::new();
    m.put_u8(b'Q');
    m.put_u32(sql.len() as u32 + 5);
    m.put_slice(sql.as_bytes());
    m.put_u8(0);
    stream.write_all(&m).await.expect("write");
    loop {
        while buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() < len + 1 {
                break;
            }
            let frame = buf.split_to(len + 1);
            if frame[0] == b'Z' {
                return frame[5];
            }
        }
        assert!(stream.read_buf(buf).await.expect("read") > 0);
    }
}

#[tokio::test]
async fn rows_stream_in_chunks_and_two_queries_interleave() {
    let (mut s, mut buf) = raw().await;
    let (conn, mut driver) = channel();
    let (sums, finished) = unit(&mut s, &mut buf, &mut driver, conn, |c| async move {
        let a = c.query("select g from generate_series(1, 10000) g", &[], ResultFormat::Text).await.expect("a");
        let two = [Some("2".to_string())];
        let b = c.query("select g * $1::int from generate_series(1, 9000) g", &two, ResultFormat::Text);
        let b = b.await.expect("b");
        assert_eq!(a.fields[0].name, "g");
        assert_eq!(a.fields[0].type_oid, 23);
        // Pull from both alternately: two portals open on one connection.
        let (mut ca, mut cb) = (a.chunks, b.chunks);
        let (mut sum, mut chunks) = (0i64, 0);
        loop {
            let (na, nb) = (ca.next().await, cb.next().await);
            if na.is_none() && nb.is_none() {
                break;
            }
            for rows in [na, nb].into_iter().flatten() {
                chunks += 1;
                for r in rows.expect("rows") {
                    let v: i64 = std::str::from_utf8(r.get(0).expect("value")).expect("utf8").parse().expect("int");
                    sum += v;
                }
            }
        }
        (sum, chunks)
    })
    .await;
    assert_eq!(sums.0, (1..=10000i64).sum::<i64>() + 2 * (1..=9000i64).sum::<i64>());
    assert!(sums.1 >= 5, "rows arrive in several chunks, got {}", sums.1);
    assert_eq!(finished.status, Some(b'I'));
    // The connection is usable afterwards, outside any transaction.
    assert_eq!(simple(&mut s, &mut buf, "select 1").await, b'I');
}

#[tokio::test]
async fn an_abandoned_query_is_closed_and_binary_rows_come_back() {
    let (mut s, mut buf) = raw().await;
    let (conn, mut driver) = channel();
    let (first, finished) = unit(&mut s, &mut buf, &mut driver, conn, |c| async move {
        let rows = c.query("select g::int8 from generate_series(1, 1000000) g", &[], ResultFormat::Binary);
        let mut rows = rows.await.expect("query");
        let chunk = rows.chunks.next().await.expect("a chunk").expect("rows");
        drop(rows);
        // Closing the first portal does not disturb the next query.
        let n = c.query_text("select count(*)::text from pg_cursors", &[]).await.expect("count");
        (i64::from_be_bytes(chunk[0].get(0).expect("v").try_into().expect("8 bytes")), n)
    })
    .await;
    assert_eq!(first.0, 1);
    // Only the portal running the count itself: the abandoned one was closed first.
    assert_eq!(first.1, vec![vec![Some("1".to_string())]]);
    assert_eq!(finished.status, Some(b'I'));
}

#[tokio::test]
async fn a_unit_runs_inside_the_client_transaction_and_sees_its_rows() {
    let (mut s, mut buf) = raw().await;
    let t = format!("driver_tx_{}", std::process::id());
    assert_eq!(
        simple(&mut s, &mut buf, &format!("begin; create temp table {t}(x int); insert into {t} values (41)")).await,
        b'T'
    );
    let (conn, mut driver) = channel();
    let sql = format!("select (x + 1)::text from {t}");
    let ((v, tag), finished) = unit(&mut s, &mut buf, &mut driver, conn.clone(), |c| async move {
        let tag = c.execute(&format!("insert into {t} values ($1)"), &[Some("1".into())]).await.expect("insert");
        (c.query_text(&sql, &[]).await.expect("select"), tag)
    })
    .await;
    assert_eq!(tag, "INSERT 0 1");
    assert_eq!(v, vec![vec![Some("42".to_string())], vec![Some("2".to_string())]]);
    assert_eq!(finished.status, Some(b'T'), "still in the client's transaction");
    assert_eq!(simple(&mut s, &mut buf, "rollback").await, b'I');
}

#[tokio::test]
async fn an_error_aborts_the_unit_and_passes_through_unchanged() {
    let (mut s, mut buf) = raw().await;
    let (conn, mut driver) = channel();
    let ((first, second), finished) = unit(&mut s, &mut buf, &mut driver, conn, |c| async move {
        let first = c.query_text("select 1/0", &[]).await;
        let second = c.query_text("select 1", &[]).await;
        (first, second)
    })
    .await;
    let Err(UpstreamError::Server { code, message, frame, .. }) = first else { panic!("expected a server error") };
    assert_eq!(code, "22012");
    assert_eq!(message, "division by zero");
    assert_eq!(frame[0], b'E');
    assert!(matches!(second, Err(UpstreamError::Server { .. })), "later queries get the same error");
    assert_eq!(finished.status, Some(b'I'));
    assert_eq!(simple(&mut s, &mut buf, "select 1").await, b'I');
}

#[tokio::test]
async fn an_idle_unit_sends_nothing() {
    let (mut s, mut buf) = raw().await;
    let (conn, mut driver) = channel();
    let ((), finished) = unit(&mut s, &mut buf, &mut driver, conn, |_c| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
    })
    .await;
    assert_eq!(finished.status, None);
    assert_eq!(simple(&mut s, &mut buf, "select 1").await, b'I');
}
