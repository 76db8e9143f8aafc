//! The http connector against a real HTTP server started in this process on 127.0.0.1:0 (hyper),
//! serving fixture data in every pagination style, with injected failures and delays; each
//! test asserts the exact requests the server saw. `e2e` goes through pgfed itself and needs
//! the private test cluster (`eval "$(scripts/pg-test-cluster start DIR)"`). One binary.

mod e2e;
mod robust;
mod scan;
mod write;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, TimeUnit};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pgfed_connector_http::HttpWrapper;
use pgfed_connector_sdk::{
    ConnectorError, ForeignTable, OpenRequest, OptionLevel, ScanContext, ScanRequest, Wrapper, validate_options,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Users in the fixture.
pub const USERS: i64 = 250;
/// The bearer token the server accepts (when a request sends one).
pub const TOKEN: &str = "tok-s3cret-42";

/// A failure to inject: status, Retry-After, body.
#[derive(Clone)]
pub struct Failure {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

#[derive(Default)]
struct State {
    log: Vec<String>,
    /// Path → failures served (in order) before normal answers.
    failures: HashMap<String, VecDeque<Failure>>,
    /// Path → delay before answering.
    delays: HashMap<String, Duration>,
    /// Writable collection /v1/items.
    items: Vec<Value>,
    next_item: i64,
}

/// The fixture API.
pub struct Api {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

pub fn user(id: i64) -> Value {
    let cities = ["Oslo", "Lima", "Pune"];
    json!({
        "id": id,
        "name": format!("user{id}"),
        "status": if id % 3 == 0 { "inactive" } else { "active" },
        "score": serde_json::from_str::<Value>(&format!("{id}.25")).expect("number"),
        "created_at": format!("2024-01-{:02}T{:02}:00:00Z", 1 + id / 24, id % 24),
        "profile": {"city": cities[(id % 3) as usize], "tags": [format!("t{}", id % 5)]},
    })
}

fn users() -> Vec<Value> {
    (1..=USERS).map(user).collect()
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect()
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    r.headers_mut().insert("content-type", "application/json".parse().expect("header"));
    r
}

/// The users a list request selects: `status` (comma list), `id` (comma list), `since` (ISO,
/// created_at >= since), then `fields`.
fn select(q: &HashMap<String, String>) -> Vec<Value> {
    let mut rows = users();
    if let Some(s) = q.get("status") {
        let wanted: Vec<&str> = s.split(',').collect();
        rows.retain(|u| wanted.contains(&u["status"].as_str().unwrap_or("")));
    }
    if let Some(ids) = q.get("id") {
        let wanted: Vec<String> = ids.split(',').map(str::to_string).collect();
        rows.retain(|u| wanted.contains(&u["id"].to_string()));
    }
    if let Some(since) = q.get("since") {
        rows.retain(|u| u["created_at"].as_str().unwrap_or("") >= since.as_str());
    }
    if let Some(fields) = q.get("fields") {
        let keep: Vec<&str> = fields.split(',').collect();
        for u in &mut rows {
            if let Value::Object(m) = u {
                m.retain(|k, _| keep.contains(&k.as_str()));
            }
        }
    }
    rows
}

fn num(q: &HashMap<String, String>, name: &str, default: usize) -> usize {
    q.get(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn handle(state: Arc<Mutex<State>>, addr: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let target = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let (failure, delay) = {
        let mut s = state.lock().expect("state");
        s.log.push(format!("{method} {target}"));
        let failure = s.failures.get_mut(&path).and_then(VecDeque::pop_front);
        (failure, s.delays.get(&path).copied())
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if let Some(f) = failure {
        let mut r = Response::new(Full::new(Bytes::from(f.body)));
        *r.status_mut() = hyper::StatusCode::from_u16(f.status).expect("status");
        if let Some(ra) = f.retry_after {
            r.headers_mut().insert("retry-after", ra.parse().expect("header"));
        }
        return r;
    }
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    if let Some(auth) = auth.filter(|a| *a != format!("Bearer {TOKEN}")) {
        // A careless API echoing the credential: pgfed must not show it.
        return reply(401, json!({"error": format!("invalid credentials: {auth}")}));
    }
    let q = query(&req);
    let base = format!("http://{addr}");
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["v1", "plain", "users"]) => reply(200, json!({"data": select(&q), "count": select(&q).len()})),
        ("GET", ["v1", "page", "users"]) => {
            let (page, per) = (num(&q, "page", 1), num(&q, "per_page", 50));
            let rows: Vec<Value> = select(&q).into_iter().skip((page.max(1) - 1) * per).take(per).collect();
            reply(200, json!({"items": rows}))
        }
        ("GET", ["v1", "offset", "users"]) => {
            let (offset, limit) = (num(&q, "offset", 0), num(&q, "limit", 50));
            reply(200, json!(select(&q).into_iter().skip(offset).take(limit).collect::<Vec<_>>()))
        }
        ("GET", ["v1", "cursor", "users"]) => {
            let start = num(&q, "cursor", 0);
            let all = select(&q);
            let rows: Vec<Value> = all.iter().skip(start).take(40).cloned().collect();
            let next = if start + 40 < all.len() { json!(format!("{}", start + 40)) } else { Value::Null };
            reply(200, json!({"results": rows, "meta": {"next_cursor": next}}))
        }
        ("GET", ["v1", "next", "users"]) => {
            let after = num(&q, "after", 0);
            let all = select(&q);
            let rows: Vec<Value> = all.iter().skip(after).take(60).cloned().collect();
            // Relative links, as many APIs give them.
            let next = if after + 60 < all.len() {
                json!(format!("/v1/next/users?after={}", after + 60))
            } else {
                Value::Null
            };
            reply(200, json!({"data": rows, "links": {"next": next}}))
        }
        ("GET", ["v1", "link", "users"]) => {
            let p = num(&q, "p", 0);
            let all = select(&q);
            let rows: Vec<Value> = all.iter().skip(p * 100).take(100).cloned().collect();
            let mut r = reply(200, json!(rows));
            if (p + 1) * 100 < all.len() {
                let link = format!(
                    "<{base}/v1/link/users?p=0>; rel=\"first\", <{base}/v1/link/users?p={}>; rel=\"next\"",
                    p + 1
                );
                r.headers_mut().insert("link", link.parse().expect("header"));
            }
            r
        }
        ("GET", ["v1", "evil", "users"]) => {
            reply(200, json!({"data": [user(1)], "next": "http://example.invalid/steal"}))
        }
        ("GET", ["v1", "users", id]) => match id.parse::<i64>() {
            Ok(n) if (1..=USERS).contains(&n) => reply(200, user(n)),
            _ => reply(404, json!({"error": "no such user"})),
        },
        ("GET", ["v1", "users", id, "posts"]) => {
            let n: i64 = id.parse().unwrap_or(0);
            reply(
                200,
                json!(
                    (1..=(n % 4))
                        .map(|p| json!({"post_id": n * 10 + p, "title": format!("post {p}")}))
                        .collect::<Vec<_>>()
                ),
            )
        }
        ("GET", ["v1", "typed"]) => reply(
            200,
            json!([
                {"i2": 7, "i4": "42", "i8": 9007199254740993i64, "f4": 1.5, "f8": "2.25", "n": 12345678901234567890.123456789f64,
                 "b": true, "d": "2024-02-29", "ts": "2024-02-29T12:00:00+02:00", "ep": 1700000000.5, "j": {"a": [1, 2]}, "t": 5},
                {"i2": null, "i4": 1, "i8": 2, "f4": null, "f8": 1e300, "n": "0.5", "b": "no", "d": null, "ts": 0, "ep": 0, "j": "s", "t": "x"}
            ]),
        ),
        ("GET", ["v1", "bad"]) => {
            reply(200, json!([{"id": 1, "n": 1}, {"id": 2, "n": 2}, {"id": 3, "n": "three"}, {"id": 4, "n": 4}]))
        }
        ("GET", ["v1", "big"]) => reply(200, json!({"data": vec!["x".repeat(1000); 100]})),
        ("GET", ["v1", "slow"]) => reply(200, json!([{"id": 1}])),
        ("GET", ["v1", "notjson"]) => Response::new(Full::new(Bytes::from_static(b"<html>oops</html>"))),
        ("GET", ["v1", "items"]) => reply(200, json!(state.lock().expect("state").items.clone())),
        ("POST", ["v1", "items"]) => {
            let Ok(mut item) = serde_json::from_slice::<Value>(&body) else {
                return reply(400, json!({"error": "bad json"}));
            };
            let mut s = state.lock().expect("state");
            s.next_item += 1;
            item["id"] = json!(s.next_item);
            item["created_at"] = json!("2024-05-01T00:00:00Z");
            s.items.push(item.clone());
            reply(201, json!({"item": item}))
        }
        ("PATCH" | "PUT", ["v1", "items", id]) => {
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                return reply(400, json!({"error": "bad json"}));
            };
            let mut s = state.lock().expect("state");
            match s.items.iter_mut().find(|i| i["id"].as_i64().is_some_and(|n| n.to_string() == **id)) {
                Some(item) => {
                    if method == "PUT" {
                        let id = item["id"].clone();
                        *item = patch;
                        item["id"] = id;
                    } else if let (Value::Object(m), Value::Object(p)) = (&mut *item, patch) {
                        m.extend(p);
                    }
                    reply(200, json!({"item": item.clone()}))
                }
                None => reply(404, json!({"error": "gone"})),
            }
        }
        ("DELETE", ["v1", "items", id]) => {
            let mut s = state.lock().expect("state");
            let before = s.items.len();
            s.items.retain(|i| i["id"].as_i64().is_none_or(|n| n.to_string() != **id));
            if s.items.len() < before {
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = hyper::StatusCode::NO_CONTENT;
                r
            } else {
                reply(404, json!({"error": "gone"}))
            }
        }
        _ => reply(404, json!({"error": "not found"})),
    }
}

impl Api {
    pub async fn start() -> Arc<Api> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(state, addr, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Arc::new(Api { addr, state })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests seen so far, as `METHOD /path?query`, and forgets them.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().expect("state").log)
    }

    pub fn fail(&self, path: &str, failures: Vec<Failure>) {
        self.state.lock().expect("state").failures.insert(path.to_string(), failures.into());
    }

    pub fn delay(&self, path: &str, delay: Duration) {
        self.state.lock().expect("state").delays.insert(path.to_string(), delay);
    }

    pub fn items(&self) -> Vec<Value> {
        self.state.lock().expect("state").items.clone()
    }
}

pub fn failure(status: u16, retry_after: Option<&str>, body: &str) -> Failure {
    Failure { status, retry_after: retry_after.map(str::to_string), body: body.to_string() }
}

pub fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A table definition to open through a wrapper.
pub struct Setup {
    pub server: Vec<(String, String)>,
    pub user_mapping: Vec<(String, String)>,
    pub table: Vec<(String, String)>,
    pub columns: Vec<(Field, Vec<(String, String)>)>,
}

impl Setup {
    pub fn new(api: &Api, table: &[(&str, &str)], columns: Vec<(Field, Vec<(String, String)>)>) -> Self {
        Setup { server: opts(&[("base_url", &api.base_url())]), user_mapping: vec![], table: opts(table), columns }
    }

    pub fn request(&self) -> Result<OpenRequest, ConnectorError> {
        let specs = HttpWrapper::default().options();
        Ok(OpenRequest {
            table_name: "api_table".into(),
            server: validate_options(specs, OptionLevel::Server, &self.server)?,
            user_mapping: validate_options(specs, OptionLevel::UserMapping, &self.user_mapping)?,
            table: validate_options(specs, OptionLevel::Table, &self.table)?,
            columns: self
                .columns
                .iter()
                .map(|(f, o)| Ok((f.clone(), validate_options(specs, OptionLevel::Column, o)?)))
                .collect::<Result<_, ConnectorError>>()?,
        })
    }

    pub async fn open_with(&self, wrapper: &HttpWrapper) -> Result<Arc<dyn ForeignTable>, ConnectorError> {
        let request = self.request()?;
        wrapper.check(&request)?;
        wrapper.open(request).await
    }

    pub async fn open(&self) -> Result<Arc<dyn ForeignTable>, ConnectorError> {
        self.open_with(&HttpWrapper::default()).await
    }
}

pub fn ctx() -> ScanContext {
    ScanContext { cancel: CancellationToken::new(), deadline: None, notices: Arc::new(|_| {}), user: "postgres".into() }
}

pub async fn scan_with(
    table: &dyn ForeignTable,
    request: ScanRequest,
    ctx: ScanContext,
) -> Result<Vec<RecordBatch>, ConnectorError> {
    let mut stream = table.scan(request, ctx).await?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch?);
    }
    Ok(batches)
}

pub async fn scan(table: &dyn ForeignTable, request: ScanRequest) -> Result<Vec<RecordBatch>, ConnectorError> {
    scan_with(table, request, ctx()).await
}

pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Every value of column `i` as text (NULL as "NULL"; times as microseconds, dates as days),
/// across batches.
pub fn column_text(batches: &[RecordBatch], i: usize) -> Vec<String> {
    batches.iter().flat_map(|b| (0..b.num_rows()).map(move |r| value_text(b.column(i).as_ref(), r))).collect()
}

fn value_text(array: &dyn arrow_array::Array, r: usize) -> String {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    if array.is_null(r) {
        return "NULL".into();
    }
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(r).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(r).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(r).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(r).to_string(),
        DataType::Float32 => array.as_primitive::<Float32Type>().value(r).to_string(),
        DataType::Float64 => array.as_primitive::<Float64Type>().value(r).to_string(),
        DataType::Boolean => array.as_boolean().value(r).to_string(),
        DataType::Date32 => array.as_primitive::<Date32Type>().value(r).to_string(),
        DataType::Decimal128(..) => array.as_primitive::<Decimal128Type>().value_as_string(r),
        DataType::Timestamp(..) => array.as_primitive::<TimestampMicrosecondType>().value(r).to_string(),
        other => format!("<{other}>"),
    }
}

pub fn col(name: &str, data_type: DataType) -> (Field, Vec<(String, String)>) {
    (Field::new(name, data_type, true), vec![])
}

pub fn col_with(name: &str, data_type: DataType, options: &[(&str, &str)]) -> (Field, Vec<(String, String)>) {
    (Field::new(name, data_type, true), opts(options))
}

pub fn tz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The standard user columns: id, name, status, score numeric(10,2), created_at, city.
pub fn user_columns() -> Vec<(Field, Vec<(String, String)>)> {
    vec![
        col("id", DataType::Int64),
        col("name", DataType::Utf8),
        col("status", DataType::Utf8),
        col("score", DataType::Decimal128(10, 2)),
        col("created_at", tz()),
        col_with("city", DataType::Utf8, &[("path", "profile.city")]),
    ]
}

pub fn columns(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}
