//! Through pgfed itself: DDL for an `http` server and tables, a filtered paginated list, a
//! lookup by id joined to a local table, EXPLAIN with the request URLs, and errors with their
//! SQLSTATEs. Needs the private test cluster.

use std::sync::atomic::{AtomicU32, Ordering};

use pgfed_testkit::{TestPg, TestProxy};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::*;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn start() -> TestProxy {
    TestProxy::start_server(
        |c| {
            let pg = TestPg::from_env();
            c.upstream.url = format!("postgres://postgres@{}:{}/{}?sslmode=disable", pg.host, pg.port, pg.db);
        },
        |server, v, shutdown| pgfed_federation::attach(server, v, shutdown).expect("federation").0,
    )
    .await
}

async fn text_rows(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect()
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

#[tokio::test]
async fn an_api_is_queried_joined_and_explained_through_pgfed() {
    let api = Api::start().await;
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let n = unique("api");
    c.batch_execute(&format!(
        "CREATE SERVER {n}_srv FOREIGN DATA WRAPPER http OPTIONS (base_url '{base}/v1', rate_limit '200');
         CREATE USER MAPPING FOR PUBLIC SERVER {n}_srv OPTIONS (bearer_token '{TOKEN}');
         CREATE FOREIGN TABLE {n}_users (
             id bigint OPTIONS (param 'id'),
             name text,
             status text OPTIONS (param 'status'),
             score numeric(10, 2),
             created_at timestamptz OPTIONS (param_gte 'since'),
             city text OPTIONS (path 'profile.city')
         ) SERVER {n}_srv OPTIONS (path '/page/users', rows 'items', pagination 'page',
                                   page_size_param 'per_page', page_size '50', in_style 'comma');
         CREATE FOREIGN TABLE {n}_user (id bigint NOT NULL, name text, city text OPTIONS (path 'profile.city'))
             SERVER {n}_srv OPTIONS (path '/users/{{id}}');
         CREATE TABLE {n}_orders (order_id int, user_id bigint);
         INSERT INTO {n}_orders VALUES (1, 3), (2, 7), (3, 3), (4, 400);",
        base = api.base_url()
    ))
    .await
    .expect("DDL through pgfed");

    // A filtered, paginated list: the filter travels as a parameter, pgfed re-checks it.
    let got = text_rows(
        &c,
        &format!("SELECT count(*), sum(score), min(created_at) FROM {n}_users WHERE status = 'inactive'"),
    )
    .await;
    // Ids 3, 6, ..., 249: 83 users; sum of (id + 0.25).
    let ids: Vec<i64> = (1..=USERS).filter(|i| i % 3 == 0).collect();
    let sum: f64 = ids.iter().map(|i| *i as f64 + 0.25).sum();
    assert_eq!(got, [[Some("83".into()), Some(format!("{sum:.2}")), Some("2024-01-01 03:00:00+00".into())]]);
    assert_eq!(
        api.take_log(),
        [
            "GET /v1/page/users?status=inactive&per_page=50&page=1",
            "GET /v1/page/users?status=inactive&per_page=50&page=2"
        ]
    );

    // A range condition fills `since`; the rows are re-checked (> is strict, since is >=). Four
    // values: DataFusion turns shorter IN lists into ORs, which the engine does not push.
    let got = text_rows(
        &c,
        &format!("SELECT id FROM {n}_users WHERE created_at > '2024-01-11 08:00:00+00' AND id IN (248, 250, 5, 9) ORDER BY id"),
    )
    .await;
    // 248 was created exactly at the bound: the API returns it (since is >=), pgfed drops it.
    assert_eq!(got, [[Some("250".into())]]);
    assert_eq!(
        api.take_log(),
        ["GET /v1/page/users?id=248%2C250%2C5%2C9&since=2024-01-11T08%3A00%3A00Z&per_page=50&page=1"]
    );

    // A lookup by id joined to a local table: the engine hands the join keys of the local side
    // to the scan at run time, one request per distinct id; 400 does not exist (404: no row).
    let sql = format!(
        "SELECT o.order_id, u.name, u.city FROM {n}_orders o JOIN {n}_user u ON u.id = o.user_id ORDER BY o.order_id"
    );
    let got = text_rows(&c, &sql).await;
    let row =
        |o: &str, name: &str, city: &str| vec![Some(o.to_string()), Some(name.to_string()), Some(city.to_string())];
    assert_eq!(got, [row("1", "user3", "Oslo"), row("2", "user7", "Lima"), row("3", "user3", "Oslo")]);
    let mut log = api.take_log();
    log.sort();
    assert_eq!(log, ["GET /v1/users/3", "GET /v1/users/400", "GET /v1/users/7"]);

    // EXPLAIN shows the URLs it would fetch (and fetches nothing); the token is nowhere.
    let explain = |sql: String| {
        let c = &c;
        async move {
            let plan: Vec<String> = text_rows(c, &format!("EXPLAIN {sql}"))
                .await
                .into_iter()
                .filter_map(|r| r.into_iter().next().flatten())
                .collect();
            plan.join("\n")
        }
    };
    let text = explain(sql).await;
    assert!(text.contains(&format!("GET {}/v1/users/{{id}}", api.base_url())), "{text}");
    assert!(text.contains("join keys: at run time"), "{text}");
    let text = explain(format!("SELECT name FROM {n}_user WHERE id IN (3, 7, 11, 12)")).await;
    for id in [3, 7, 11, 12] {
        assert!(text.contains(&format!("GET {}/v1/users/{id}", api.base_url())), "{text}");
    }
    let text = explain(format!("SELECT name FROM {n}_users WHERE status = 'active' LIMIT 3")).await;
    assert!(text.contains(&format!("GET {}/v1/page/users?status=active&per_page=50&page=1", api.base_url())), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(api.take_log().is_empty());

    // A lookup table scanned without its id: 0A000; an API error: HV000 with the status.
    let e = c.simple_query(&format!("SELECT * FROM {n}_user")).await.expect_err("needs an id");
    assert_eq!(code(&e), "0A000", "{e}");
    c.batch_execute(&format!("CREATE FOREIGN TABLE {n}_nope (id int) SERVER {n}_srv OPTIONS (path '/nope')"))
        .await
        .expect("DDL");
    let e = c.simple_query(&format!("SELECT * FROM {n}_nope")).await.expect_err("404");
    assert_eq!(code(&e), "HV000", "{e}");
    assert!(e.as_db_error().is_some_and(|d| d.message().contains("HTTP 404")), "{e:?}");
}

#[tokio::test]
async fn writes_through_pgfed_become_requests() {
    let api = Api::start().await;
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let n = unique("items");
    c.batch_execute(&format!(
        "CREATE SERVER {n}_srv FOREIGN DATA WRAPPER http OPTIONS (base_url '{base}');
         CREATE FOREIGN TABLE {n} (id bigint, name text, price numeric(10, 2), city text OPTIONS (path 'address.city'))
             SERVER {n}_srv OPTIONS (path '/v1/items', writable 'true', row_path '/v1/items/{{id}}', response_row 'item');",
        base = api.base_url()
    ))
    .await
    .expect("DDL through pgfed");
    let got = text_rows(&c, &format!("INSERT INTO {n} (name, price, city) VALUES ('lamp', 9.99, 'Oslo'), ('desk', 120, 'Lima') RETURNING id, name"))
        .await;
    assert_eq!(got, [[Some("1".into()), Some("lamp".into())], [Some("2".into()), Some("desk".into())]]);
    let changed =
        c.execute(&format!("UPDATE {n} SET price = price * 2 WHERE city = 'Lima'"), &[]).await.expect("update");
    assert_eq!(changed, 1);
    assert_eq!(api.items()[1]["price"], serde_json::json!(240.0));
    let gone = c.execute(&format!("DELETE FROM {n} WHERE id = 1"), &[]).await.expect("delete");
    assert_eq!(gone, 1);
    assert_eq!(api.items().len(), 1);
    let log = api.take_log();
    assert_eq!(
        log,
        [
            "POST /v1/items",
            "POST /v1/items",
            "GET /v1/items",
            "PATCH /v1/items/2",
            "GET /v1/items",
            "DELETE /v1/items/1"
        ],
        "{log:?}"
    );
}
