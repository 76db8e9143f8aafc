//! The http connector's benchmark helpers (bench/http.sh):
//!
//! - `http-fixture serve PORT_FILE [ROWS]`: a fixture API on 127.0.0.1:0 (port written to
//!   PORT_FILE) serving ROWS items (default 100000) as `GET /items?page=N&per_page=M` (pages from
//!   1; `category=cK` filters), `GET /items/{id}`; `GET /stats` gives the requests served so far
//!   (`/stats` itself not counted) and `POST /stats/reset` zeroes it. Pages are serialized per
//!   request, as a real API would.
//! - `http-fixture client BASE_URL [PER_PAGE]`: the baseline, a plain async client (reqwest, one
//!   connection, pages in sequence as page-number pagination requires) that fetches every page
//!   and parses each into serde_json values; prints `rows seconds`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

struct Api {
    items: Vec<Value>,
    requests: AtomicU64,
}

fn item(id: u64) -> Value {
    json!({
        "id": id,
        "name": format!("item number {id}"),
        "category": format!("c{}", id % 50),
        "price": format!("{}.{:02}", id % 1000, id % 100).parse::<f64>().unwrap_or(0.0),
        "created_at": format!("2024-{:02}-{:02}T{:02}:{:02}:00Z", 1 + id % 12, 1 + id % 28, id % 24, id % 60),
        "active": !id.is_multiple_of(3),
    })
}

fn reply(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    r
}

fn handle(api: &Api, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/stats" {
        return reply(200, api.requests.load(Ordering::Relaxed).to_string());
    }
    if path == "/stats/reset" {
        api.requests.store(0, Ordering::Relaxed);
        return reply(200, "0".into());
    }
    api.requests.fetch_add(1, Ordering::Relaxed);
    let q: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let num = |k: &str, d: usize| q.get(k).and_then(|v| v.parse::<usize>().ok()).unwrap_or(d);
    if path == "/items" {
        let (page, per) = (num("page", 1).max(1), num("per_page", 100).clamp(1, 1000));
        let rows: Vec<&Value> = match q.get("category") {
            Some(c) => {
                api.items.iter().filter(|i| i["category"] == c.as_str()).skip((page - 1) * per).take(per).collect()
            }
            None => api.items.iter().skip((page - 1) * per).take(per).collect(),
        };
        return reply(200, json!({ "data": rows }).to_string());
    }
    if let Some(id) = path.strip_prefix("/items/").and_then(|s| s.parse::<usize>().ok()) {
        return match id.checked_sub(1).and_then(|i| api.items.get(i)) {
            Some(item) => reply(200, item.to_string()),
            None => reply(404, "{\"error\":\"not found\"}".into()),
        };
    }
    reply(404, "{\"error\":\"not found\"}".into())
}

async fn serve(port_file: &str, rows: u64) -> std::io::Result<()> {
    let api = Arc::new(Api { items: (1..=rows).map(item).collect(), requests: AtomicU64::new(0) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    std::fs::write(port_file, listener.local_addr()?.port().to_string())?;
    loop {
        let (stream, _) = listener.accept().await?;
        let api = api.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let r = handle(&api, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn client(base: &str, per_page: usize) -> Result<(), String> {
    let http = reqwest::Client::builder().build().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut rows = 0usize;
    for page in 1.. {
        let body = http
            .get(format!("{base}/items?page={page}&per_page={per_page}"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        let parsed: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let n = parsed["data"].as_array().map_or(0, Vec::len);
        rows += n;
        if n < per_page {
            break;
        }
    }
    println!("{rows} {:.4}", started.elapsed().as_secs_f64());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match arg(1) {
        Some("serve") => {
            let file = arg(2).ok_or("serve PORT_FILE [ROWS]")?;
            let rows = arg(3).and_then(|r| r.parse().ok()).unwrap_or(100_000);
            serve(file, rows).await.map_err(|e| e.to_string())
        }
        Some("client") => {
            let base = arg(2).ok_or("client BASE_URL [PER_PAGE]")?;
            client(base, arg(3).and_then(|p| p.parse().ok()).unwrap_or(100)).await
        }
        _ => Err("usage: http-fixture serve PORT_FILE [ROWS] | client BASE_URL [PER_PAGE]".into()),
    }
}
