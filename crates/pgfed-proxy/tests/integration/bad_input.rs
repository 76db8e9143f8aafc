//! Malformed, hostile and misbehaving clients. Each case checks what that client sees and that
//! another session through the same pgfed still works afterwards.

use std::time::{Duration, Instant};

use pgfed_testkit::{RawClient, TestCert, TestProxy, frame, query};
use pgfed_wire::{ProtocolVersion, StartupPacket};
use tokio::io::AsyncReadExt;

use super::support::*;

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

/// Reads everything until the peer closes; panics if it stays open for `secs`.
async fn bytes_until_closed(c: &mut RawClient, secs: u64) -> Vec<u8> {
    let mut got = Vec::new();
    within(secs, "the connection closing", async {
        let mut chunk = [0u8; 4096];
        loop {
            match c.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    got
}

/// What a refused pre-startup connection may have received: nothing, or an ErrorResponse.
fn assert_nothing_but_an_error(bytes: &[u8], case: &str) {
    assert!(
        bytes.is_empty() || bytes[0] == b'E',
        "{case}: expected no answer or an ErrorResponse, got {:?}",
        String::from_utf8_lossy(bytes)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_startup_closes_without_disturbing_other_sessions() {
    let proxy = TestProxy::start().await;
    for garbage in
        [&b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"[..], b"\x16\x03\x01\x00\x05hello", b"\xff\xff\xff\xff"]
    {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(garbage).await;
        let got = bytes_until_closed(&mut c, 5).await;
        assert_nothing_but_an_error(&got, &format!("{garbage:?}"));
    }
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_packet_with_invalid_length_is_closed() {
    let proxy = TestProxy::start().await;
    for len in [0i32, 4, 7, 10_001, 1 << 20, i32::MAX, -1] {
        let mut c = RawClient::connect(proxy.addr).await;
        let mut pkt = len.to_be_bytes().to_vec();
        pkt.extend_from_slice(&0x0003_0000u32.to_be_bytes());
        c.send(&pkt).await;
        let got = bytes_until_closed(&mut c, 5).await;
        assert_nothing_but_an_error(&got, &format!("length {len}"));
    }
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_version_2_is_refused_with_0a000() {
    let proxy = TestProxy::start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    let params =
        [(b"user".to_vec(), b"pgfed_trust".to_vec()), (b"database".to_vec(), proxy.pg.db.clone().into_bytes())];
    c.send(&StartupPacket::encode_startup(ProtocolVersion { major: 2, minor: 0 }, &params)).await;
    let m = c.recv_within(Duration::from_secs(5)).await.expect("an ErrorResponse before the close");
    let message = expect_error(&m, "FATAL", "0A000");
    assert!(message.contains("unsupported frontend protocol"), "{message}");
    assert!(c.recv_within(Duration::from_secs(5)).await.is_none(), "closed after the error");
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_3_99_is_negotiated_down_by_postgres_and_the_session_works() {
    let proxy = TestProxy::start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    let params =
        [(b"user".to_vec(), b"pgfed_trust".to_vec()), (b"database".to_vec(), proxy.pg.db.clone().into_bytes())];
    c.send(&StartupPacket::encode_startup(ProtocolVersion { major: 3, minor: 99 }, &params)).await;
    let (msgs, status) = c.until_ready().await;
    assert_eq!(status, b'I');
    let v = msgs.iter().find(|m| m.tag == b'v').unwrap_or_else(|| panic!("NegotiateProtocolVersion in {msgs:?}"));
    // Postgres sends its newest version whole (3 << 16 | minor); Postgres 15 offers 3.0.
    let newest = u32::from_be_bytes([v.body[0], v.body[1], v.body[2], v.body[3]]);
    assert_eq!(newest & 0xffff, 0, "Postgres 15 offers minor version 0, got {newest:#x}");
    let unrecognized = u32::from_be_bytes([v.body[4], v.body[5], v.body[6], v.body[7]]);
    assert_eq!(unrecognized, 0, "no protocol options were sent");
    let (msgs, status) = simple(&mut c, "select 6 * 7").await;
    assert_eq!((first_value(&msgs).as_str(), status), ("42", b'I'));
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_message_then_close_leaves_the_proxy_working() {
    let proxy = TestProxy::start().await;
    let (mut c, _) = ready_raw(&proxy, "pgfed_bad_truncated_close").await;
    let q = query("select 'never completed'");
    c.send(&q[..q.len() / 2]).await;
    drop(c);
    other_session_works(&proxy).await;
    // Also a half header (tag and part of the length).
    let (mut c, _) = ready_raw(&proxy, "pgfed_bad_truncated_close").await;
    c.send(&q[..3]).await;
    drop(c);
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_message_waits_for_the_rest_without_a_timeout() {
    let proxy = TestProxy::start().await;
    let (mut c, _) = ready_raw(&proxy, "pgfed_bad_truncated_wait").await;
    let q = query("select 'half' || 'way'");
    c.send(&q[..q.len() / 2]).await;
    let early = tokio::time::timeout(Duration::from_millis(1500), c.recv()).await;
    assert!(early.is_err(), "nothing arrives and the session stays open while the message is incomplete: {early:?}");
    c.send(&q[q.len() / 2..]).await;
    let (msgs, status) = c.until_ready().await;
    assert_eq!((first_value(&msgs).as_str(), status), ("halfway", b'I'));
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_length_below_four_is_fatal_08p01_then_closed() {
    let proxy = TestProxy::start().await;
    for len in [3i32, 0, -1] {
        let (mut c, _) = ready_raw(&proxy, "pgfed_bad_short_len").await;
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&len.to_be_bytes());
        c.send(&msg).await;
        let m = c.recv_within(Duration::from_secs(5)).await.unwrap_or_else(|| panic!("an error for length {len}"));
        expect_error(&m, "FATAL", "08P01");
        assert!(c.closed_within(Duration::from_secs(5)).await, "closed after length {len}");
    }
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_fatal_08p01_naming_the_limit() {
    let proxy = TestProxy::start_with(|c| c.server.max_message_bytes = 4096).await;
    // Under the limit: a 3 kB query goes through.
    let (mut c, _) = ready_raw(&proxy, "pgfed_bad_oversized").await;
    let (msgs, status) = simple(&mut c, &format!("select length('{}')", "x".repeat(3000))).await;
    assert_eq!((first_value(&msgs).as_str(), status), ("3000", b'I'));
    // Over it: 10 kB.
    c.send(&query(&format!("select length('{}')", "x".repeat(10_000)))).await;
    let m = c.recv_within(Duration::from_secs(5)).await.expect("an error for the oversized message");
    let message = expect_error(&m, "FATAL", "08P01");
    assert!(message.contains("4096"), "the message names the limit: {message}");
    assert!(c.closed_within(Duration::from_secs(5)).await, "closed after the oversized message");
    // The limit holds during authentication too: a 10 kB password message.
    let mut c = RawClient::connect(proxy.addr).await;
    c.startup(&[("user", "pgfed_password"), ("database", proxy.pg.db.as_str())]).await;
    let m = c.recv_within(Duration::from_secs(5)).await.expect("a password request");
    assert_eq!(m.tag, b'R');
    let mut password = vec![b'x'; 10_000];
    password.push(0);
    c.send(&frame(b'p', &password)).await;
    let m = c.recv_within(Duration::from_secs(5)).await.expect("an error for the oversized password message");
    let message = expect_error(&m, "FATAL", "08P01");
    assert!(message.contains("4096"), "the message names the limit: {message}");
    assert!(c.closed_within(Duration::from_secs(5)).await, "closed after the oversized password message");
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_frontend_message_type_is_refused_by_postgres_with_08p01() {
    let proxy = TestProxy::start().await;
    let (mut c, _) = ready_raw(&proxy, "pgfed_bad_unknown_tag").await;
    c.send(&frame(b'z', b"abc")).await;
    let m = c.recv_within(Duration::from_secs(5)).await.expect("Postgres's error");
    let message = expect_error(&m, "FATAL", "08P01");
    assert!(message.contains("invalid frontend message type"), "{message}");
    assert!(c.closed_within(Duration::from_secs(5)).await, "closed after the FATAL");
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unencrypted_data_right_after_an_encryption_request_is_refused() {
    let cert = TestCert::generate();
    let plain = TestProxy::start().await;
    let tls = TestProxy::start_with(|c| {
        c.server.tls =
            Some(pgfed_config::TlsConfig { cert_file: cert.cert_file.clone(), key_file: cert.key_file.clone() })
    })
    .await;
    for (proxy, request) in [(&plain, SSL_REQUEST), (&tls, SSL_REQUEST), (&plain, GSSENC_REQUEST)] {
        let mut c = RawClient::connect(proxy.addr).await;
        let params = [(b"user".to_vec(), b"pgfed_trust".to_vec())];
        let mut pkt = request.to_vec();
        pkt.extend(StartupPacket::encode_startup(ProtocolVersion { major: 3, minor: 0 }, &params));
        c.send(&pkt).await;
        let got = bytes_until_closed(&mut c, 5).await;
        // Postgres answers the SSLRequest and then reports the error; pgfed may also close at once.
        // Never 'S' (a handshake over injected data) and never an authentication message.
        let after_answer = if got.first() == Some(&b'N') { &got[1..] } else { &got[..] };
        assert_nothing_but_an_error(after_answer, "encryption request followed by plaintext");
        other_session_works(proxy).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_request_without_tls_is_answered_n_and_startup_continues_in_plain_text() {
    let proxy = TestProxy::start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&SSL_REQUEST).await;
    let answer = within(5, "the SSLRequest answer", c.recv_byte()).await;
    assert_eq!(answer, Some(b'N'));
    c.startup(&[("user", "pgfed_trust"), ("database", proxy.pg.db.as_str())]).await;
    let (_, status) = c.until_ready().await;
    assert_eq!(status, b'I');
    let (msgs, _) = simple(&mut c, "select 'plain'").await;
    assert_eq!(first_value(&msgs), "plain");
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gssenc_request_is_answered_n_and_startup_continues() {
    let proxy = TestProxy::start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&GSSENC_REQUEST).await;
    let answer = within(5, "the GSSENCRequest answer", c.recv_byte()).await;
    assert_eq!(answer, Some(b'N'));
    c.startup(&[("user", "pgfed_trust"), ("database", proxy.pg.db.as_str())]).await;
    let (_, status) = c.until_ready().await;
    assert_eq!(status, b'I');
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_finishes_its_startup_packet_is_closed_after_startup_timeout() {
    let proxy = TestProxy::start_with(|c| c.server.startup_timeout = Duration::from_secs(1)).await;
    let mut c = RawClient::connect(proxy.addr).await;
    let started = Instant::now();
    c.send(&[0, 0, 0, 40]).await;
    let got = bytes_until_closed(&mut c, 4).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "closed by the timeout, not at once ({took:?})");
    assert!(took <= Duration::from_secs(3), "closed within ~3s ({took:?})");
    assert_nothing_but_an_error(&got, "incomplete startup packet");
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_answers_the_password_request_gets_08p01_after_startup_timeout() {
    let proxy = TestProxy::start_with(|c| c.server.startup_timeout = Duration::from_secs(1)).await;
    let mut c = RawClient::connect(proxy.addr).await;
    let started = Instant::now();
    c.startup(&[("user", "pgfed_password"), ("database", proxy.pg.db.as_str())]).await;
    let m = c.recv_within(Duration::from_secs(5)).await.expect("a password request");
    assert_eq!((m.tag, &m.body[..4]), (b'R', &3i32.to_be_bytes()[..]), "AuthenticationCleartextPassword");
    let m = c.recv_within(Duration::from_secs(5)).await.expect("the timeout error");
    let took = started.elapsed();
    expect_error(&m, "FATAL", "08P01");
    assert!(took >= Duration::from_millis(900) && took <= Duration::from_secs(3), "{took:?}");
    assert!(c.closed_within(Duration::from_secs(5)).await);
    other_session_works(&proxy).await;
}

/// Resident set size of this process (pgfed runs in-process), in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_a_huge_result_does_not_slow_other_sessions() {
    let proxy = TestProxy::start().await;
    let app = format!("pgfed_bad_nonreader_{}", std::process::id());
    let admin = within(10, "superuser connection", proxy.pg.superuser()).await;
    let other = within(10, "second session", proxy.connect("pgfed_trust", None)).await;
    let rss_before = rss_bytes();

    let (mut hog, _) = ready_raw(&proxy, &app).await;
    // About 200 MB of rows that the client never reads.
    hog.send(&query("select repeat('x', 1000) from generate_series(1, 200000)")).await;

    // Back-pressure reaches Postgres: its backend blocks writing to pgfed, and stays blocked.
    let waiting = "select count(*) from pg_stat_activity where application_name = $1 and state = 'active' \
                   and wait_event = 'ClientWrite'";
    within(15, "the upstream backend blocking on ClientWrite", async {
        while admin.query_one(waiting, &[&app]).await.unwrap().get::<_, i64>(0) != 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still: i64 = admin.query_one(waiting, &[&app]).await.unwrap().get(0);
    assert_eq!(still, 1, "pgfed must not drain the whole result into memory");

    // Other sessions keep normal latency, on an existing and on a new connection.
    for _ in 0..5 {
        let t = Instant::now();
        let row = within(5, "select 1 beside the hog", other.query_one("select 1::int4", &[])).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
        assert!(t.elapsed() < Duration::from_secs(1), "select 1 took {:?}", t.elapsed());
    }
    let t = Instant::now();
    other_session_works(&proxy).await;
    assert!(t.elapsed() < Duration::from_secs(2), "a new session took {:?}", t.elapsed());

    // pgfed holds a bounded buffer, not the ~200 MB result. The process also runs other tests, so
    // the margin is wide; the ClientWrite check above is the precise one.
    if let (Some(before), Some(after)) = (rss_before, rss_bytes()) {
        let grew = after.saturating_sub(before);
        assert!(grew < 160 << 20, "process memory grew by {} MiB", grew >> 20);
    }

    // Closing the hog frees it: its upstream backend goes away.
    drop(hog);
    let alive = "select count(*) from pg_stat_activity where application_name = $1";
    within(5, "the hog's upstream backend ending", async {
        while admin.query_one(alive, &[&app]).await.unwrap().get::<_, i64>(0) != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_with_a_wrong_key_is_ignored() {
    let proxy = TestProxy::start().await;
    let app = format!("pgfed_bad_wrong_cancel_{}", std::process::id());
    let admin = within(10, "superuser connection", proxy.pg.superuser()).await;
    let (mut c, startup) = ready_raw(&proxy, &app).await;
    let k = startup.iter().find(|m| m.tag == b'K').expect("BackendKeyData");
    let pid = i32::from_be_bytes([k.body[0], k.body[1], k.body[2], k.body[3]]);
    let secret = k.body[4..].to_vec();
    let started = Instant::now();
    c.send(&query("select pg_sleep(2)")).await;
    // Only a running query can be cancelled: wait until it runs.
    let active = "select count(*) from pg_stat_activity where application_name = $1 and state = 'active'";
    within(5, "pg_sleep starting", async {
        while admin.query_one(active, &[&app]).await.unwrap().get::<_, i64>(0) != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut wrong_secret = secret.clone();
    wrong_secret[0] ^= 0x5a;
    for (p, s) in [(pid, wrong_secret), (pid.wrapping_add(1), secret.clone()), (pid, secret[..3].to_vec())] {
        let mut cancel = RawClient::connect(proxy.addr).await;
        cancel.send(&StartupPacket::encode_cancel(p, &s)).await;
        let got = bytes_until_closed(&mut cancel, 5).await;
        assert!(got.is_empty(), "a cancel request gets no answer: {got:?}");
    }
    let (msgs, status) = c.until_ready().await;
    assert!(msgs.iter().all(|m| m.tag != b'E'), "the query was not cancelled: {msgs:?}");
    assert!(msgs.iter().any(|m| m.tag == b'C'), "the query completed: {msgs:?}");
    assert_eq!(status, b'I');
    assert!(started.elapsed() >= Duration::from_millis(1950), "pg_sleep(2) ran to its end");
    other_session_works(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_sent_in_the_same_packet_as_the_startup_is_answered() {
    let proxy = TestProxy::start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    let params =
        [(b"user".to_vec(), b"pgfed_trust".to_vec()), (b"database".to_vec(), proxy.pg.db.clone().into_bytes())];
    let mut pkt = StartupPacket::encode_startup(ProtocolVersion { major: 3, minor: 0 }, &params);
    pkt.extend(query("select 'eager'"));
    c.send(&pkt).await;
    let (_, status) = c.until_ready().await;
    assert_eq!(status, b'I');
    let (msgs, status) = c.until_ready().await;
    assert_eq!((first_value(&msgs).as_str(), status), ("eager", b'I'));
    other_session_works(&proxy).await;
}
