//! Failures: retries on 5xx and 429 with Retry-After, error statuses and snippets without
//! secrets, cancel and deadline, timeouts, size caps, the shared rate limiter and the cache.

use std::time::{Duration, Instant};

use arrow_schema::DataType;
use pgfed_connector_http::HttpWrapper;
use pgfed_connector_sdk::{ForeignTable, ScanRequest};

use crate::*;

fn id_table(api: &Api, path: &str) -> Setup {
    Setup::new(api, &[("path", path)], vec![col("id", DataType::Int64)])
}

fn id_scan() -> ScanRequest {
    ScanRequest { columns: columns(&["id"]), ..Default::default() }
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let api = Api::start().await;
    api.fail("/v1/slow", vec![failure(500, None, "boom"), failure(502, None, "")]);
    let t = id_table(&api, "/v1/slow").open().await.expect("open");
    let started = Instant::now();
    let b = scan(t.as_ref(), id_scan()).await.expect("third attempt succeeds");
    assert_eq!(rows(&b), 1);
    // Backoff 100 ms then 200 ms.
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    assert_eq!(api.take_log(), ["GET /v1/slow"; 3]);

    // More failures than retries: the status and the body's start reach the client.
    api.fail("/v1/slow", vec![failure(503, None, "{\"error\": \"down for maintenance\"}"); 3]);
    let e = scan(t.as_ref(), id_scan()).await.expect_err("gave up");
    assert_eq!(e.sqlstate(), "HV000");
    let addr = api.addr;
    assert_eq!(
        e.to_string(),
        format!("HTTP API error HTTP 503: GET http://{addr}/v1/slow: {{\"error\": \"down for maintenance\"}}")
    );
    assert_eq!(api.take_log().len(), 3);
}

#[tokio::test]
async fn too_many_requests_waits_as_retry_after_says() {
    let api = Api::start().await;
    api.fail("/v1/slow", vec![failure(429, Some("1"), "slow down")]);
    let t = id_table(&api, "/v1/slow").open().await.expect("open");
    let started = Instant::now();
    scan(t.as_ref(), id_scan()).await.expect("after waiting");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(950) && waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(api.take_log().len(), 2);

    // An HTTP-date two seconds ahead (whole seconds: at least one second of wait).
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    api.fail("/v1/slow", vec![failure(429, Some(&date), "")]);
    let started = Instant::now();
    scan(t.as_ref(), id_scan()).await.expect("after waiting");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(4), "{waited:?}");

    // A Retry-After past the statement deadline is not waited for: the 429 is the answer.
    api.fail("/v1/slow", vec![failure(429, Some("30"), "quota")]);
    let mut c = ctx();
    c.deadline = Some(Instant::now() + Duration::from_secs(5));
    let started = Instant::now();
    let e = scan_with(t.as_ref(), id_scan(), c).await.expect_err("429");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(e.to_string().contains("HTTP 429") && e.to_string().ends_with(": quota"), "{e}");
}

#[tokio::test]
async fn credentials_never_appear_in_errors() {
    let api = Api::start().await;
    let mut setup = id_table(&api, "/v1/slow");
    setup.user_mapping = opts(&[("bearer_token", "wrong-s3cret-token")]);
    let t = setup.open().await.expect("open");
    let e = scan(t.as_ref(), id_scan()).await.expect_err("401");
    let text = format!("{e} {e:?}");
    assert!(text.contains("HTTP 401") && text.contains("invalid credentials: Bearer ********"), "{text}");
    assert!(!text.contains("wrong-s3cret"), "{text}");

    let mut setup = id_table(&api, "/v1/slow");
    setup.user_mapping = opts(&[("bearer_token", TOKEN)]);
    let t = setup.open().await.expect("open");
    assert_eq!(rows(&scan(t.as_ref(), id_scan()).await.expect("authorized")), 1);
}

#[tokio::test]
async fn cancel_and_the_deadline_abort_a_request_in_flight() {
    let api = Api::start().await;
    api.delay("/v1/slow", Duration::from_secs(30));
    let t = id_table(&api, "/v1/slow").open().await.expect("open");
    let c = ctx();
    let cancel = c.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let e = scan_with(t.as_ref(), id_scan(), c).await.expect_err("cancelled");
    assert_eq!((e.sqlstate(), e.to_string().as_str()), ("57014", "canceling statement due to user request"));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    let mut c = ctx();
    c.deadline = Some(Instant::now() + Duration::from_millis(300));
    let e = scan_with(t.as_ref(), id_scan(), c).await.expect_err("timed out");
    assert_eq!((e.sqlstate(), e.to_string().as_str()), ("57014", "canceling statement due to statement timeout"));

    // The server's own timeout: retried (idempotent GET), then reported.
    let mut setup = id_table(&api, "/v1/slow");
    setup.server.extend(opts(&[("timeout", "0.2"), ("retries", "1")]));
    let t = setup.open().await.expect("open");
    api.take_log();
    let e = scan(t.as_ref(), id_scan()).await.expect_err("timeout");
    assert_eq!(e.sqlstate(), "HV000");
    assert!(e.to_string().contains("timed out after 0.2 s"), "{e}");
    assert_eq!(api.take_log().len(), 2);
}

#[tokio::test]
async fn oversized_bad_and_unreachable_responses_are_errors() {
    let api = Api::start().await;
    let mut setup = Setup::new(
        &api,
        &[("path", "/v1/big"), ("rows", "data")],
        vec![col_with("x", DataType::Utf8, &[("path", "$")])],
    );
    setup.server.extend(opts(&[("max_response_size", "50000")]));
    let t = setup.open().await.expect("open");
    let e =
        scan(t.as_ref(), ScanRequest { columns: columns(&["x"]), ..Default::default() }).await.expect_err("too big");
    assert!(e.to_string().contains("larger than max_response_size (50000 bytes)"), "{e}");

    let t = id_table(&api, "/v1/notjson").open().await.expect("open");
    let e = scan(t.as_ref(), id_scan()).await.expect_err("not json");
    assert!(e.to_string().contains("not JSON") && e.to_string().contains("<html>oops</html>"), "{e}");

    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let mut setup = id_table(&api, "/v1/slow");
    setup.server = opts(&[("base_url", &format!("http://127.0.0.1:{port}")), ("retries", "0")]);
    let t = setup.open().await.expect("open");
    let e = scan(t.as_ref(), id_scan()).await.expect_err("refused");
    assert_eq!(e.sqlstate(), "HV00N", "{e}");
}

#[tokio::test]
async fn the_rate_limit_is_shared_by_every_session_of_a_server() {
    let api = Api::start().await;
    let wrapper = HttpWrapper::default();
    let mut setup = id_table(&api, "/v1/slow");
    setup.server.extend(opts(&[("rate_limit", "10")]));
    // Two tables opened separately, as two sessions would, scanning at the same time.
    let a = setup.open_with(&wrapper).await.expect("open");
    let b = setup.open_with(&wrapper).await.expect("open");
    let started = Instant::now();
    let run = |t: std::sync::Arc<dyn ForeignTable>| async move {
        for _ in 0..5 {
            scan(t.as_ref(), id_scan()).await.expect("scan");
        }
    };
    tokio::join!(run(a), run(b));
    // 10 requests at 10 per second: the last starts about 0.9 s after the first.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(850) && elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(api.take_log().len(), 10);

    // Another wrapper instance (another process) has its own limiter.
    let c = setup.open().await.expect("open");
    let started = Instant::now();
    scan(c.as_ref(), id_scan()).await.expect("scan");
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn the_cache_serves_repeated_requests_per_credential() {
    let api = Api::start().await;
    let wrapper = HttpWrapper::default();
    let mut setup = id_table(&api, "/v1/slow");
    setup.server.extend(opts(&[("cache_ttl", "60")]));
    let t = setup.open_with(&wrapper).await.expect("open");
    for _ in 0..3 {
        assert_eq!(rows(&scan(t.as_ref(), id_scan()).await.expect("scan")), 1);
    }
    assert_eq!(api.take_log().len(), 1);
    // Other credentials do not share cached answers.
    setup.user_mapping = opts(&[("bearer_token", TOKEN)]);
    let other = setup.open_with(&wrapper).await.expect("open");
    scan(other.as_ref(), id_scan()).await.expect("scan");
    assert_eq!(api.take_log().len(), 1);
}
