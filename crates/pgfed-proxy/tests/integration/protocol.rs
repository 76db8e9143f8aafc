//! The relay is transparent: every protocol feature behaves through pgfed as it does directly.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt, TryStreamExt};
use pgfed_testkit::{RawClient, TestCert, TestProxy, connect, frame, query};
use tokio_postgres::AsyncMessage;
use tokio_postgres::error::SqlState;

const USER: &str = "pgfed_trust";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_binary_parameters_round_trip_every_type() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect(USER, None).await;
    let bytes: Vec<u8> = (0..=255u8).collect();
    let text = "it's \"quoted\" — ünïcödé \\ %";
    let row = c
        .query_one(
            "select $1::int4 + 1, $2::int8 * 2, $3::float8, $4::text, $5::bytea, $6::bool, $7::text is null, $8::text::numeric::text",
            &[&41i32, &(i64::MAX / 2), &1.5f64, &text, &bytes, &true, &None::<&str>, &"12345678901234567890.0123"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, i64>(1), i64::MAX - 1);
    assert_eq!(row.get::<_, f64>(2), 1.5);
    assert_eq!(row.get::<_, &str>(3), text);
    assert_eq!(row.get::<_, Vec<u8>>(4), bytes);
    assert!(row.get::<_, bool>(5));
    assert!(row.get::<_, bool>(6));
    assert_eq!(row.get::<_, &str>(7), "12345678901234567890.0123");
    // Named prepared statements, executed many times.
    let stmt = c.prepare("select $1::int4 * $1::int4").await.unwrap();
    for i in 0..50i32 {
        assert_eq!(c.query_one(&stmt, &[&i]).await.unwrap().get::<_, i32>(0), i * i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_on_one_connection_all_answer_in_order() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect(USER, None).await;
    let stmt = c.prepare("select $1::int4, pg_backend_pid()").await.unwrap();
    // tokio-postgres writes all of these before reading any answer.
    let futures = (0..500i32).map(|i| {
        let c = &c;
        let stmt = &stmt;
        async move { c.query_one(stmt, &[&i]).await.map(|r| r.get::<_, i32>(0)) }
    });
    let results = futures_util::future::join_all(futures).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), i as i32);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_stream_through_unchanged() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect(USER, None).await;
    c.batch_execute("create temp table copy_t (id int, payload text)").await.unwrap();
    let sink = c.copy_in("copy copy_t from stdin").await.unwrap();
    let mut sink = std::pin::pin!(sink);
    let mut expected = String::new();
    for chunk in 0..100 {
        let mut data = String::new();
        for i in 0..1000 {
            let id = chunk * 1000 + i;
            data.push_str(&format!("{id}\trow {id} \\\\ tab\\there\n"));
        }
        expected.push_str(&data);
        sink.send(bytes::Bytes::from(data)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 100_000);
    let out: Vec<bytes::Bytes> =
        c.copy_out("copy (select * from copy_t order by id) to stdout").await.unwrap().try_collect().await.unwrap();
    let out: Vec<u8> = out.concat();
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    // A COPY that fails mid-stream reports the error and leaves the session usable.
    let sink = c.copy_in("copy copy_t from stdin").await.unwrap();
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from_static(b"1\tok\nnot-a-number\tbad\n")).await.unwrap();
    let err = sink.finish().await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_TEXT_REPRESENTATION));
    assert_eq!(c.query_one("select count(*) from copy_t", &[]).await.unwrap().get::<_, i64>(0), 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_and_roll_back_with_savepoints() {
    let proxy = TestProxy::start().await;
    let mut c = proxy.connect(USER, None).await;
    c.batch_execute("drop table if exists tx_t; create table tx_t (id int primary key)").await.unwrap();
    {
        let tx = c.transaction().await.unwrap();
        tx.execute("insert into tx_t values (1)", &[]).await.unwrap();
        tx.rollback().await.unwrap();
    }
    {
        let mut tx = c.transaction().await.unwrap();
        tx.execute("insert into tx_t values (2)", &[]).await.unwrap();
        let sp = tx.savepoint("sp").await.unwrap();
        sp.execute("insert into tx_t values (3)", &[]).await.unwrap();
        sp.rollback().await.unwrap();
        tx.commit().await.unwrap();
    }
    // An error aborts the transaction; statements are refused until ROLLBACK, as in Postgres.
    c.batch_execute("begin").await.unwrap();
    assert!(c.batch_execute("select 1/0").await.is_err());
    let err = c.batch_execute("select 1").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    c.batch_execute("rollback").await.unwrap();
    let ids: Vec<i32> =
        c.query("select id from tx_t order by id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![2]);
    c.batch_execute("drop table tx_t").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_arrive_with_every_field_postgres_sent() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect(USER, None).await;
    let err = c.batch_execute("select * fromm nowhere").await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code(), &SqlState::SYNTAX_ERROR);
    assert_eq!(db.severity(), "ERROR");
    assert!(matches!(db.position(), Some(tokio_postgres::error::ErrorPosition::Original(10))), "{:?}", db.position());
    c.batch_execute(
        "create temp table uniq_t (id int constraint uniq_t_pk primary key); insert into uniq_t values (1)",
    )
    .await
    .unwrap();
    let err = c.execute("insert into uniq_t values ($1)", &[&1i32]).await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code(), &SqlState::UNIQUE_VIOLATION);
    assert_eq!(db.detail(), Some("Key (id)=(1) already exists."));
    assert_eq!(db.constraint(), Some("uniq_t_pk"));
    assert_eq!(db.table(), Some("uniq_t"));
    assert!(db.schema().is_some_and(|s| s.starts_with("pg_temp")));
    assert!(db.routine().is_some(), "internal routine field forwarded");
    let err = c
        .batch_execute(
            "do $$ begin raise exception 'custom' using errcode = 'P0001', hint = 'try again', detail = 'd'; end $$",
        )
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!((db.message(), db.hint(), db.detail()), ("custom", Some("try again"), Some("d")));
    assert!(db.where_().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_and_notifications_reach_the_client() {
    let proxy = TestProxy::start().await;
    let (client, mut conn) = tokio_postgres::connect(&proxy.conninfo(USER, None), tokio_postgres::NoTls).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(msg)) = stream.next().await {
            let _ = tx.send(msg);
        }
    });
    client.batch_execute("do $$ begin raise notice 'hello %', 42; raise warning 'careful'; end $$").await.unwrap();
    let mut seen = Vec::new();
    while let Ok(Some(AsyncMessage::Notice(n))) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
        seen.push((n.severity().to_string(), n.message().to_string()));
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, vec![("NOTICE".into(), "hello 42".into()), ("WARNING".into(), "careful".into())]);

    client.batch_execute("listen pgfed_chan").await.unwrap();
    let other = proxy.connect(USER, None).await;
    other.batch_execute("notify pgfed_chan, 'payload 1'; select pg_notify('pgfed_chan', 'payload 2')").await.unwrap();
    let mut payloads = Vec::new();
    while payloads.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(AsyncMessage::Notification(n))) => {
                assert_eq!(n.channel(), "pgfed_chan");
                payloads.push(n.payload().to_string());
            }
            Ok(Some(_)) => {}
            other => panic!("notification not received: {other:?}"),
        }
    }
    assert_eq!(payloads, vec!["payload 1", "payload 2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_with_row_limit_suspends_the_portal_and_resumes() {
    let proxy = TestProxy::start().await;
    let mut c = proxy.connect(USER, None).await;
    let tx = c.transaction().await.unwrap();
    let stmt = tx.prepare("select g from generate_series(1, $1::int4) g").await.unwrap();
    let portal = tx.bind(&stmt, &[&1005i32]).await.unwrap();
    let mut total = 0i64;
    let mut batches = 0;
    loop {
        let rows = tx.query_portal(&portal, 100).await.unwrap();
        if rows.is_empty() {
            break;
        }
        batches += 1;
        total += rows.iter().map(|r| i64::from(r.get::<_, i32>(0))).sum::<i64>();
    }
    assert_eq!(batches, 11);
    assert_eq!(total, 1005 * 1006 / 2);
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_and_many_rows_stream_through() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect(USER, None).await;
    // One 20 MB value: larger than every relay buffer.
    let row = c.query_one("select repeat('ab', 10000000)", &[]).await.unwrap();
    let v: &str = row.get(0);
    assert_eq!(v.len(), 20_000_000);
    assert!(v.starts_with("abab") && v.ends_with("abab"));
    // Also upward: a 5 MB parameter.
    let big = "z".repeat(5_000_000);
    let n: i32 = c.query_one("select length($1::text)", &[&big]).await.unwrap().get(0);
    assert_eq!(n, 5_000_000);
    let rows = c.simple_query("select g, md5(g::text) from generate_series(1, 200000) g").await.unwrap();
    let count = rows.iter().filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))).count();
    assert_eq!(count, 200_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_messages_are_relayed() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect(USER, None).await;
    let oid: u32 = c.query_one("select 'int4abs'::regproc::oid", &[]).await.unwrap().get(0);
    let mut raw = RawClient::connect(proxy.addr).await;
    raw.startup(&[("user", USER), ("database", &proxy.pg.db)]).await;
    raw.until_ready().await;
    // FunctionCall: oid, 1 format code (text), 1 argument "-7", text result.
    let mut body = oid.to_be_bytes().to_vec();
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&2i32.to_be_bytes());
    body.extend_from_slice(b"-7");
    body.extend_from_slice(&0i16.to_be_bytes());
    raw.send(&frame(b'F', &body)).await;
    let (msgs, status) = raw.until_ready().await;
    assert_eq!(status, b'I');
    let v = msgs.iter().find(|m| m.tag == b'V').expect("FunctionCallResponse");
    assert_eq!(&v.body[4..], b"7");
    raw.send(&query("select 1")).await;
    let (msgs, _) = raw.until_ready().await;
    assert!(msgs.iter().any(|m| m.tag == b'D'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_verify_full_encrypts_the_upstream_leg() {
    let pg = pgfed_testkit::TestPg::from_env();
    let url = format!("postgres://localhost:{}/{}?sslmode=verify-full&sslrootcert={}", pg.port, pg.db, pg.ca.display());
    let proxy = TestProxy::start_with(|c| c.upstream.url = url).await;
    let c = proxy.connect(USER, None).await;
    let ssl: bool = c.query_one("select ssl from pg_stat_ssl where pid = pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(ssl, "upstream leg uses TLS");

    // A CA that did not sign the server's certificate: the session is refused with 08006.
    let wrong = TestCert::generate();
    let url = format!(
        "postgres://localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
        pg.port,
        pg.db,
        wrong.ca_file.display()
    );
    let proxy = TestProxy::start_with(|c| c.upstream.url = url).await;
    let err = connect(&proxy.conninfo(USER, None)).await.unwrap_err();
    let db = err.as_db_error().expect("a FATAL from pgfed");
    assert_eq!(db.code(), &SqlState::CONNECTION_FAILURE);
    assert!(db.detail().unwrap_or_default().contains("TLS"), "{db:?}");

    // sslmode=require encrypts without verification.
    let url = format!("postgres://127.0.0.1:{}/{}?sslmode=require", pg.port, pg.db);
    let proxy = TestProxy::start_with(|c| c.upstream.url = url).await;
    let c = proxy.connect(USER, None).await;
    let ssl: bool = c.query_one("select ssl from pg_stat_ssl where pid = pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(ssl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tls_is_verified_by_psql_and_plain_still_works() {
    let cert = TestCert::generate();
    let tls = pgfed_config::TlsConfig { cert_file: cert.cert_file.clone(), key_file: cert.key_file.clone() };
    let proxy = TestProxy::start_with(|c| c.server.tls = Some(tls)).await;
    let port = proxy.addr.port().to_string();
    let db = proxy.pg.db.clone();
    for (mode, extra) in
        [("verify-full", format!("sslrootcert={}", cert.ca_file.display())), ("disable", String::new())]
    {
        let conninfo = format!("host=localhost port={port} dbname={db} user={USER} sslmode={mode} {extra}");
        let (ok, out, err) = pgfed_testkit::run_program(
            "psql",
            &["-X", "-At", "-d", &conninfo, "-c", "select 'tls-ok'"],
            &[],
            Duration::from_secs(30),
        )
        .await;
        assert!(ok, "psql sslmode={mode}: {err}");
        assert_eq!(out.trim(), "tls-ok");
    }
    // The certificate must be checked: a different CA fails verification on the client.
    let other = TestCert::generate();
    let conninfo = format!(
        "host=localhost port={port} dbname={db} user={USER} sslmode=verify-full sslrootcert={}",
        other.ca_file.display()
    );
    let (ok, _, err) = pgfed_testkit::run_program(
        "psql",
        &["-X", "-At", "-d", &conninfo, "-c", "select 1"],
        &[],
        Duration::from_secs(30),
    )
    .await;
    // OpenSSL finds the impostor CA by name and rejects the signature ("EVP lib") or the chain.
    assert!(!ok && err.contains("SSL error"), "{err}");
}

/// A client that keeps writing a long pipeline while the answers pile up must not deadlock:
/// Postgres stops reading while its output is full, so a proxy that blocked writing to it without
/// reading from it would hang here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_pipeline_written_while_answers_pile_up_does_not_deadlock() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = TestProxy::start().await;
    let mut raw = RawClient::connect(proxy.addr).await;
    raw.startup(&[("user", USER), ("database", &proxy.pg.db)]).await;
    raw.until_ready().await;
    let (mut rd, mut wr) = tokio::io::split(raw.stream);
    const N: usize = 3000;
    // 3000 queries of ~8 kB each (24 MB up), each answering 20 kB (60 MB down).
    let padding = format!("/* {} */", "p".repeat(8000));
    let writer = tokio::spawn(async move {
        let q = query(&format!("select repeat('x', 20000) {padding}"));
        for _ in 0..N {
            wr.write_all(&q).await.unwrap();
        }
        wr
    });
    let reader = tokio::spawn(async move {
        let (mut ready, mut pending, mut buf) = (0usize, Vec::<u8>::new(), vec![0u8; 1 << 16]);
        while ready < N {
            let n = rd.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed after {ready} answers");
            pending.extend_from_slice(&buf[..n]);
            let mut pos = 0;
            while pending.len() - pos >= 5 {
                let len = u32::from_be_bytes([pending[pos + 1], pending[pos + 2], pending[pos + 3], pending[pos + 4]])
                    as usize;
                if pending.len() - pos < len + 1 {
                    break;
                }
                match pending[pos] {
                    b'Z' => ready += 1,
                    b'E' => panic!("error in the pipeline"),
                    _ => {}
                }
                pos += len + 1;
            }
            pending.drain(..pos);
        }
        ready
    });
    let done =
        tokio::time::timeout(Duration::from_secs(120), async { (writer.await.unwrap(), reader.await.unwrap()) }).await;
    let (_, ready) = done.expect("pipeline completed without deadlock");
    assert_eq!(ready, N);
}

/// libpq 17's `sslnegotiation=direct`: TLS from the first byte, ALPN "postgresql" required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_negotiation_with_alpn_is_accepted_and_without_alpn_refused() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cert = TestCert::generate();
    let tls = pgfed_config::TlsConfig { cert_file: cert.cert_file.clone(), key_file: cert.key_file.clone() };
    let proxy = TestProxy::start_with(|c| c.server.tls = Some(tls)).await;
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(&cert.ca_file).unwrap();
    use rustls_pki_types::pem::PemObject;
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = |alpn: Vec<Vec<u8>>| {
        let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        c.alpn_protocols = alpn;
        tokio_rustls::TlsConnector::from(Arc::new(c))
    };
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();

    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut tls = config(vec![b"postgresql".to_vec()]).connect(name.clone(), tcp).await.unwrap();
    let startup = pgfed_wire::StartupPacket::encode_startup(
        pgfed_wire::ProtocolVersion { major: 3, minor: 0 },
        &[(b"user".to_vec(), USER.as_bytes().to_vec()), (b"database".to_vec(), proxy.pg.db.as_bytes().to_vec())],
    );
    tls.write_all(&startup).await.unwrap();
    tls.write_all(&query("select 'direct'")).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(6).any(|w| w == b"direct") {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before the answer");
        got.extend_from_slice(&buf[..n]);
    }

    // Without ALPN the connection is not taken for Postgres.
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let refused = match config(vec![]).connect(name, tcp).await {
        Err(_) => true,
        Ok(mut tls) => {
            let _ = tls.write_all(&startup).await;
            matches!(tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
        }
    };
    assert!(refused, "direct TLS without ALPN must be refused");
}

/// Postgres ignores Sync during COPY IN and libpq sends another after CopyDone; pgfed must still
/// see the session as idle afterwards (here: the idle timeout fires).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_is_idle_again_after_an_extended_protocol_copy() {
    let proxy = TestProxy::start_with(|c| c.server.idle_session_timeout = Duration::from_secs(1)).await;
    let mut raw = RawClient::connect(proxy.addr).await;
    raw.startup(&[("user", USER), ("database", &proxy.pg.db)]).await;
    raw.until_ready().await;
    raw.send(&query("create temp table ext_copy (a int)")).await;
    raw.until_ready().await;
    let mut msgs = Vec::new();
    msgs.extend(frame(b'P', b"\0copy ext_copy from stdin\0\0\0"));
    msgs.extend(frame(b'B', b"\0\0\0\0\0\0\0\0"));
    msgs.extend(frame(b'E', b"\0\0\0\0\0"));
    msgs.extend(frame(b'S', b""));
    raw.send(&msgs).await;
    loop {
        let m = raw.recv_within(Duration::from_secs(10)).await.expect("CopyInResponse");
        assert_ne!(m.tag, b'E', "error: {:?}", m.field(b'M'));
        if m.tag == b'G' {
            break;
        }
    }
    let mut copy = frame(b'd', b"1\n2\n3\n");
    copy.extend(frame(b'c', b""));
    copy.extend(frame(b'S', b""));
    raw.send(&copy).await;
    let (msgs, status) = raw.until_ready().await;
    assert_eq!(status, b'I');
    assert!(msgs.iter().any(|m| m.tag == b'C' && m.body.starts_with(b"COPY 3")), "{msgs:?}");
    let started = std::time::Instant::now();
    let m = raw.recv_within(Duration::from_secs(5)).await.expect("idle timeout error");
    assert_eq!((m.tag, m.field(b'C').as_deref()), (b'E', Some("57P05")));
    assert!(started.elapsed() < Duration::from_secs(3));
}
