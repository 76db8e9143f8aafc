//! Scans: every pagination style, quals into paths and parameters (and the exact requests they
//! make), LIMIT, types, EXPLAIN.

use arrow_schema::DataType;
use pgfed_connector_sdk::{ForeignTable, Operator, Pushdown, Qual, QualValue, ScanRequest, Value};

use crate::*;

fn q(column: &str, operator: Operator, value: QualValue) -> Qual {
    Qual { column: column.into(), operator, value }
}

fn ids(batches: &[arrow_array::RecordBatch]) -> Vec<i64> {
    column_text(batches, 0).iter().map(|s| s.parse().expect("id")).collect()
}

async fn all_ids(table: &dyn ForeignTable) -> Vec<i64> {
    ids(&scan(table, ScanRequest { columns: columns(&["id", "name"]), ..Default::default() }).await.expect("scan"))
}

#[tokio::test]
async fn page_number_pagination_reads_every_page_and_stops_at_an_empty_one() {
    let api = Api::start().await;
    let t = Setup::new(
        &api,
        &[
            ("path", "/v1/page/users"),
            ("rows", "items"),
            ("pagination", "page"),
            ("page_size_param", "per_page"),
            ("page_size", "50"),
        ],
        user_columns(),
    )
    .open()
    .await
    .expect("open");
    assert_eq!(all_ids(t.as_ref()).await, (1..=USERS).collect::<Vec<_>>());
    let expected: Vec<String> = (1..=6).map(|p| format!("GET /v1/page/users?per_page=50&page={p}")).collect();
    assert_eq!(api.take_log(), expected);
}

#[tokio::test]
async fn offset_pagination_stops_at_a_short_page() {
    let api = Api::start().await;
    let t = Setup::new(
        &api,
        &[("path", "/v1/offset/users"), ("pagination", "offset"), ("page_size_param", "limit"), ("page_size", "100")],
        user_columns(),
    )
    .open()
    .await
    .expect("open");
    assert_eq!(all_ids(t.as_ref()).await, (1..=USERS).collect::<Vec<_>>());
    assert_eq!(
        api.take_log(),
        [
            "GET /v1/offset/users?limit=100&offset=0",
            "GET /v1/offset/users?limit=100&offset=100",
            "GET /v1/offset/users?limit=100&offset=200"
        ]
    );
}

#[tokio::test]
async fn cursor_next_link_and_link_header_pagination() {
    let api = Api::start().await;
    let cursor = Setup::new(
        &api,
        &[
            ("path", "/v1/cursor/users"),
            ("rows", "results"),
            ("pagination", "cursor"),
            ("cursor_path", "meta.next_cursor"),
        ],
        user_columns(),
    )
    .open()
    .await
    .expect("open");
    assert_eq!(all_ids(cursor.as_ref()).await, (1..=USERS).collect::<Vec<_>>());
    let mut expected = vec!["GET /v1/cursor/users".to_string()];
    expected.extend((1..7).map(|i| format!("GET /v1/cursor/users?cursor={}", i * 40)));
    assert_eq!(api.take_log(), expected);

    let next = Setup::new(
        &api,
        &[("path", "/v1/next/users"), ("rows", "data"), ("pagination", "next_link"), ("next_path", "links.next")],
        user_columns(),
    )
    .open()
    .await
    .expect("open");
    assert_eq!(all_ids(next.as_ref()).await, (1..=USERS).collect::<Vec<_>>());
    let mut expected = vec!["GET /v1/next/users".to_string()];
    expected.extend((1..5).map(|i| format!("GET /v1/next/users?after={}", i * 60)));
    assert_eq!(api.take_log(), expected);

    let link = Setup::new(&api, &[("path", "/v1/link/users"), ("pagination", "link_header")], user_columns())
        .open()
        .await
        .expect("open");
    assert_eq!(all_ids(link.as_ref()).await, (1..=USERS).collect::<Vec<_>>());
    assert_eq!(api.take_log(), ["GET /v1/link/users", "GET /v1/link/users?p=1", "GET /v1/link/users?p=2"]);
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused_and_max_pages_is_an_error() {
    let api = Api::start().await;
    let t =
        Setup::new(&api, &[("path", "/v1/evil/users"), ("rows", "data"), ("pagination", "next_link")], user_columns())
            .open()
            .await
            .expect("open");
    let e =
        scan(t.as_ref(), ScanRequest { columns: columns(&["id"]), ..Default::default() }).await.expect_err("refused");
    assert_eq!(e.sqlstate(), "HV000");
    assert!(e.to_string().contains("another host"), "{e}");

    let t = Setup::new(
        &api,
        &[("path", "/v1/page/users"), ("rows", "items"), ("pagination", "page"), ("max_pages", "2")],
        user_columns(),
    )
    .open()
    .await
    .expect("open");
    let e =
        scan(t.as_ref(), ScanRequest { columns: columns(&["id"]), ..Default::default() }).await.expect_err("too many");
    assert!(e.to_string().contains("more than 2 pages"), "{e}");
}

#[tokio::test]
async fn equality_and_in_fill_path_placeholders_one_request_per_value() {
    let api = Api::start().await;
    let t = Setup::new(&api, &[("path", "/v1/users/{id}")], user_columns()).open().await.expect("open");
    let eq = q("id", Operator::Eq, QualValue::One(Value::Int(7)));
    assert_eq!(t.pushdown(&eq), Pushdown::Inexact);
    assert_eq!(t.pushdown(&q("id", Operator::Gt, QualValue::One(Value::Int(7)))), Pushdown::Unsupported);
    assert_eq!(t.pushdown(&q("name", Operator::Eq, QualValue::One(Value::Text("x".into())))), Pushdown::Unsupported);
    let b = scan(t.as_ref(), ScanRequest { columns: columns(&["id", "city"]), quals: vec![eq], ..Default::default() })
        .await
        .expect("scan");
    assert_eq!((column_text(&b, 0), column_text(&b, 1)), (vec!["7".to_string()], vec!["Lima".to_string()]));
    assert_eq!(api.take_log(), ["GET /v1/users/7"]);

    // IN: one request per value; two conditions on the column intersect.
    let inq = q("id", Operator::Eq, QualValue::Any(vec![Value::Int(3), Value::Int(5), Value::Int(9)]));
    let also = q("id", Operator::Eq, QualValue::Any(vec![Value::Int(5), Value::Int(3)]));
    let b = scan(t.as_ref(), ScanRequest { columns: columns(&["id"]), quals: vec![inq, also], ..Default::default() })
        .await
        .expect("scan");
    assert_eq!(ids(&b), vec![3, 5]);
    assert_eq!(api.take_log(), ["GET /v1/users/3", "GET /v1/users/5"]);

    // Contradictory conditions make no request at all.
    let a = q("id", Operator::Eq, QualValue::One(Value::Int(1)));
    let b2 = q("id", Operator::Eq, QualValue::One(Value::Int(2)));
    let b = scan(t.as_ref(), ScanRequest { columns: columns(&["id"]), quals: vec![a, b2], ..Default::default() })
        .await
        .expect("scan");
    assert_eq!(rows(&b), 0);
    assert!(api.take_log().is_empty());

    // Without a condition on the placeholder there is no request to make; EXPLAIN shows the
    // template (a join may supply the key at run time).
    let e = scan(t.as_ref(), ScanRequest { columns: columns(&["id"]), ..Default::default() }).await.expect_err("no id");
    assert_eq!(e.sqlstate(), "0A000");
    let lines = t.explain(&ScanRequest { columns: columns(&["id"]), ..Default::default() });
    assert_eq!(lines, [format!("GET {}/v1/users/{{id}}", api.base_url())]);
}

#[tokio::test]
async fn placeholder_values_are_percent_encoded_and_fill_rows_without_the_field() {
    let api = Api::start().await;
    let t = Setup::new(
        &api,
        &[("path", "/v1/users/{user_id}/posts")],
        vec![col("user_id", DataType::Int64), col("post_id", DataType::Int64), col("title", DataType::Utf8)],
    )
    .open()
    .await
    .expect("open");
    let b = scan(
        t.as_ref(),
        ScanRequest {
            columns: columns(&["user_id", "post_id"]),
            quals: vec![q("user_id", Operator::Eq, QualValue::Any(vec![Value::Int(6), Value::Int(7)]))],
            ..Default::default()
        },
    )
    .await
    .expect("scan");
    assert_eq!(column_text(&b, 0), ["6", "6", "7", "7", "7"]);
    assert_eq!(column_text(&b, 1), ["61", "62", "71", "72", "73"]);
    assert_eq!(api.take_log(), ["GET /v1/users/6/posts", "GET /v1/users/7/posts"]);

    // A text value can never add a path segment or a query; the 404 for it means no row.
    let t = Setup::new(&api, &[("path", "/v1/users/{name}")], vec![col("name", DataType::Utf8)])
        .open()
        .await
        .expect("open");
    let b = scan(
        t.as_ref(),
        ScanRequest {
            columns: columns(&["name"]),
            quals: vec![q("name", Operator::Eq, QualValue::One(Value::Text("../x?y=1 #z".into())))],
            ..Default::default()
        },
    )
    .await
    .expect("404 is no row");
    assert_eq!(rows(&b), 0);
    assert_eq!(api.take_log(), ["GET /v1/users/..%2Fx%3Fy%3D1%20%23z"]);
}

#[tokio::test]
async fn params_ranges_fields_and_comma_lists_narrow_the_request() {
    let api = Api::start().await;
    let mut columns_def = user_columns();
    columns_def[0].1 = opts(&[("param", "id")]);
    columns_def[2].1 = opts(&[("param", "status")]);
    columns_def[4].1 = opts(&[("param_gte", "since")]);
    let t = Setup::new(
        &api,
        &[("path", "/v1/plain/users?sort=id"), ("rows", "data"), ("fields_param", "fields"), ("in_style", "comma")],
        columns_def,
    )
    .open()
    .await
    .expect("open");
    // created_at >= 2024-01-10T00:00:00Z, as microseconds.
    let since = 1_704_844_800_000_000;
    let quals = vec![
        q("status", Operator::Eq, QualValue::One(Value::Text("inactive".into()))),
        q("created_at", Operator::GtEq, QualValue::One(Value::TimestampTz(since))),
        q("id", Operator::Eq, QualValue::Any(vec![Value::Int(3), Value::Int(300), Value::Int(222), Value::Int(224)])),
    ];
    for qual in &quals {
        assert_eq!(t.pushdown(qual), Pushdown::Inexact, "{qual}");
    }
    let b = scan(t.as_ref(), ScanRequest { columns: columns(&["id", "city"]), quals, ..Default::default() })
        .await
        .expect("scan");
    // 3 is too early, 224 is active, 300 does not exist.
    assert_eq!(ids(&b), vec![222]);
    assert_eq!(
        api.take_log(),
        [
            "GET /v1/plain/users?sort=id&id=3%2C300%2C222%2C224&status=inactive&since=2024-01-10T00%3A00%3A00Z&fields=id%2Cprofile"
        ]
    );
    // Strict lower bound: the inclusive parameter (a superset); an upper bound without a
    // parameter is not pushed.
    assert_eq!(
        t.pushdown(&q("created_at", Operator::Gt, QualValue::One(Value::TimestampTz(since)))),
        Pushdown::Inexact
    );
    assert_eq!(
        t.pushdown(&q("created_at", Operator::Lt, QualValue::One(Value::TimestampTz(since)))),
        Pushdown::Unsupported
    );
}

#[tokio::test]
async fn an_exact_column_lets_the_limit_stop_paging() {
    let api = Api::start().await;
    let mut columns_def = user_columns();
    columns_def[2].1 = opts(&[("param", "status"), ("exact", "true")]);
    let t = Setup::new(
        &api,
        &[
            ("path", "/v1/page/users"),
            ("rows", "items"),
            ("pagination", "page"),
            ("page_size_param", "per_page"),
            ("page_size", "50"),
        ],
        columns_def,
    )
    .open()
    .await
    .expect("open");
    let active = q("status", Operator::Eq, QualValue::One(Value::Text("active".into())));
    assert_eq!(t.pushdown(&active), Pushdown::Exact);
    // LIMIT 60: pages of 50, two requests.
    let b = scan(
        t.as_ref(),
        ScanRequest { columns: columns(&["id"]), quals: vec![active.clone()], limit: Some(60), ..Default::default() },
    )
    .await
    .expect("scan");
    assert_eq!(rows(&b), 60);
    assert_eq!(
        api.take_log(),
        ["GET /v1/page/users?status=active&per_page=50&page=1", "GET /v1/page/users?status=active&per_page=50&page=2"]
    );
    // LIMIT 5: the page size shrinks to it, one request.
    let b =
        scan(t.as_ref(), ScanRequest { columns: vec![], quals: vec![active], limit: Some(5), ..Default::default() })
            .await
            .expect("scan");
    assert_eq!(rows(&b), 5);
    assert_eq!(api.take_log(), ["GET /v1/page/users?status=active&per_page=5&page=1"]);
}

#[tokio::test]
async fn dropping_a_scan_early_costs_at_most_one_more_page() {
    use futures_util::StreamExt;
    let api = Api::start().await;
    let t = Setup::new(
        &api,
        &[
            ("path", "/v1/page/users"),
            ("rows", "items"),
            ("pagination", "page"),
            ("page_size_param", "per_page"),
            ("page_size", "10"),
        ],
        user_columns(),
    )
    .open()
    .await
    .expect("open");
    let mut stream =
        t.scan(ScanRequest { columns: columns(&["id"]), ..Default::default() }, ctx()).await.expect("scan");
    let first = stream.next().await.expect("a batch").expect("ok");
    assert_eq!(first.num_rows(), 10);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(stream);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(api.take_log(), ["GET /v1/page/users?per_page=10&page=1", "GET /v1/page/users?per_page=10&page=2"]);
}

#[tokio::test]
async fn json_values_convert_to_declared_types_exactly() {
    let api = Api::start().await;
    let t = Setup::new(
        &api,
        &[("path", "/v1/typed")],
        vec![
            col("i2", DataType::Int16),
            col("i4", DataType::Int32),
            col("i8", DataType::Int64),
            col("f4", DataType::Float32),
            col("f8", DataType::Float64),
            col("n", DataType::Decimal128(38, 9)),
            col("b", DataType::Boolean),
            col("d", DataType::Date32),
            col("ts", tz()),
            col("ep", tz()),
            col_with("j", DataType::Utf8, &[("json", "true")]),
            col("t", DataType::Utf8),
        ],
    )
    .open()
    .await
    .expect("open");
    let names = ["i2", "i4", "i8", "f4", "f8", "n", "b", "d", "ts", "ep", "j", "t"];
    let b = scan(t.as_ref(), ScanRequest { columns: columns(&names), ..Default::default() }).await.expect("scan");
    let got: Vec<Vec<String>> = (0..names.len()).map(|i| column_text(&b, i)).collect();
    let expected = [
        ["7", "NULL"],
        ["42", "1"],
        ["9007199254740993", "2"],
        ["1.5", "NULL"],
        ["2.25", "1e300"],
        // serde_json in the test server wrote the f64 nearest the literal; every digit it
        // wrote arrives (no float in between).
        ["12345678901234567000.000000000", "0.500000000"],
        ["true", "false"],
        ["19782", "NULL"],
        ["1709200800000000", "0"],
        ["1700000000500000", "0"],
        ["{\"a\":[1,2]}", "\"s\""],
        ["5", "x"],
    ];
    for (i, name) in names.iter().enumerate() {
        let want: Vec<String> = expected[i].iter().map(|s| s.to_string()).collect();
        let got = &got[i];
        if *name == "f8" {
            assert_eq!(got[0], "2.25");
            assert_eq!(got[1].parse::<f64>().expect("float"), 1e300);
        } else {
            assert_eq!(got, &want, "column {name}");
        }
    }
}

#[tokio::test]
async fn a_value_that_does_not_convert_names_column_and_row_unless_lenient() {
    let api = Api::start().await;
    let strict = Setup::new(&api, &[("path", "/v1/bad")], vec![col("id", DataType::Int32), col("n", DataType::Int32)])
        .open()
        .await
        .expect("open");
    let e = scan(strict.as_ref(), ScanRequest { columns: columns(&["id", "n"]), ..Default::default() })
        .await
        .expect_err("bad value");
    assert_eq!(e.sqlstate(), "HV004");
    assert_eq!(e.to_string(), "column \"n\": row 3 (page 1, item 3): invalid input for type integer: \"three\"");
    let lenient = Setup::new(
        &api,
        &[("path", "/v1/bad")],
        vec![col("id", DataType::Int32), col_with("n", DataType::Int32, &[("lenient", "true")])],
    )
    .open()
    .await
    .expect("open");
    let b = scan(lenient.as_ref(), ScanRequest { columns: columns(&["n"]), ..Default::default() }).await.expect("scan");
    assert_eq!(column_text(&b, 0), ["1", "2", "NULL", "4"]);
}

#[tokio::test]
async fn explain_shows_request_urls_with_secrets_redacted() {
    let api = Api::start().await;
    let mut columns_def = user_columns();
    columns_def[2].1 = opts(&[("param", "status")]);
    let mut setup = Setup::new(
        &api,
        &[
            ("path", "/v1/page/users"),
            ("rows", "items"),
            ("pagination", "page"),
            ("page_size_param", "per_page"),
            ("page_size", "50"),
        ],
        columns_def,
    );
    setup.server = opts(&[("base_url", &format!("http://robot:hunter2@{}/", api.addr))]);
    setup.user_mapping = opts(&[("header_name", "X-Api-Key"), ("header_value", "k3y")]);
    let t = setup.open().await.expect("open");
    let lines = t.explain(&ScanRequest {
        columns: columns(&["id"]),
        quals: vec![q(
            "status",
            Operator::Eq,
            QualValue::Any(vec![Value::Text("active".into()), Value::Text("k3y".into())]),
        )],
        limit: None,
        ..Default::default()
    });
    let addr = api.addr;
    assert_eq!(
        lines,
        [
            format!("GET http://robot:********@{addr}/v1/page/users?status=active&per_page=50&page=1"),
            format!("GET http://robot:********@{addr}/v1/page/users?status=********&per_page=50&page=1"),
            "pagination: page parameter \"page\", at most 10000 pages".to_string(),
        ]
    );
    assert!(api.take_log().is_empty(), "EXPLAIN makes no request");
}
