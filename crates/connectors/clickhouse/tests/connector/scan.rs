//! Scans: every type, quals with Postgres's semantics, sort and limit, streaming, generated
//! queries, cancel, errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use pgfed_connector_clickhouse::ClickHouseWrapper;
use pgfed_connector_sdk::{
    ConnectorError, ImportRequest, NullsOrder, Operator, OptionLevel, Pushdown, Qual, QualValue, ScanRequest, SortKey,
    SqlQuery, Value, Wrapper, validate_options,
};

use crate::*;

fn q(column: &str, operator: Operator, value: QualValue) -> Qual {
    Qual { column: column.into(), operator, value }
}

fn one(v: Value) -> QualValue {
    QualValue::One(v)
}

#[tokio::test]
async fn every_type_reads_into_its_declared_type() {
    if env().is_none() {
        return;
    }
    table(
        "types",
        "id Int32, i8 Int8, u8 UInt8, u16 UInt16, u32 UInt32, i64 Int64, u64 UInt64, f32 Float32, f64 Float64,
         d Decimal(12, 3), s String, fs FixedString(4), dt Date, ts DateTime, tsb DateTime('Asia/Tokyo'), u UUID,
         e Enum8('red' = 1, 'green' = -2), ns Nullable(String), lc LowCardinality(String), arr Array(Nullable(Int32)),
         tup Tuple(UInt8, String)",
        "(1, -128, 255, 65535, 4294967295, -9223372036854775808, 18446744073709551615, 1.5, -2.25, -12345.678,
          'it\\'s \\\\ ünï', 'ab', '2024-02-29', '2024-02-29 12:34:56', '2024-02-29 12:34:56', '61f0c404-5cb3-11e7-907b-a6006ad3dba0',
          'green', NULL, 'x', [1, NULL, 3], (7, 'q'))",
    )
    .await;
    let columns = vec![
        col("id", DataType::Int32),
        col("i8", DataType::Int16),
        col("u8", DataType::Boolean),
        col("u16", DataType::Int32),
        col("u32", DataType::Int64),
        col("i64", DataType::Int64),
        col("u64", DataType::Decimal128(20, 0)),
        col("f32", DataType::Float32),
        col("f64", DataType::Float64),
        col("d", DataType::Decimal128(12, 3)),
        col("s", DataType::Utf8),
        col("fs", DataType::Utf8),
        col("dt", DataType::Date32),
        col("ts", tz()),
        (Field::new("tsb", DataType::Timestamp(TimeUnit::Microsecond, None), true), vec![]),
        col("u", DataType::FixedSizeBinary(16)),
        col("e", DataType::Utf8),
        col("ns", DataType::Utf8),
        col("lc", DataType::Utf8),
        col("arr", DataType::List(Arc::new(Field::new("item", DataType::Int32, true)))),
        col("tup", DataType::Utf8),
    ];
    let names: Vec<String> = columns.iter().map(|(f, _)| f.name().clone()).collect();
    let t = Setup::new("types", columns).open().await.expect("open");
    let b = scan_all(t.as_ref(), ScanRequest { columns: names, ..Default::default() }).await.expect("scan");
    assert_eq!(b.num_rows(), 1);
    assert_eq!(b.column(1).as_primitive::<arrow_array::types::Int16Type>().value(0), -128);
    assert!(b.column(2).as_boolean().value(0));
    assert_eq!(b.column(4).as_primitive::<Int64Type>().value(0), 4_294_967_295);
    assert_eq!(b.column(5).as_primitive::<Int64Type>().value(0), i64::MIN);
    assert_eq!(b.column(6).as_primitive::<Decimal128Type>().value(0), 18_446_744_073_709_551_615);
    assert_eq!(b.column(8).as_primitive::<Float64Type>().value(0), -2.25);
    assert_eq!(b.column(9).as_primitive::<Decimal128Type>().value(0), -12_345_678);
    assert_eq!(b.column(10).as_string::<i32>().value(0), "it's \\ ünï");
    assert_eq!(b.column(11).as_string::<i32>().value(0), "ab");
    assert_eq!(b.column(12).as_primitive::<Date32Type>().value(0), 19_782);
    let ts = b.column(13).as_primitive::<TimestampMicrosecondType>().value(0);
    assert_eq!(ts, 1_709_210_096_000_000);
    // The Tokyo column's wall clock reads 12:34:56 as written.
    assert_eq!(b.column(14).as_primitive::<TimestampMicrosecondType>().value(0), ts);
    assert_eq!(b.column(16).as_string::<i32>().value(0), "green");
    assert!(b.column(17).is_null(0));
    let arr = b.column(19).as_list::<i32>().value(0);
    assert_eq!(arr.len(), 3);
    assert!(arr.is_null(1));
    assert_eq!(b.column(20).as_string::<i32>().value(0), "[7, \"q\"]");
}

#[tokio::test]
async fn declared_types_that_do_not_fit_fail_at_open() {
    if env().is_none() {
        return;
    }
    table("misfit", "id Int64, s String", "").await;
    let e = Setup::new("misfit", vec![col("id", DataType::Int32)]).open().await.err().expect("Int64 into int4");
    assert_eq!(e.sqlstate(), "HV004", "{e}");
    assert!(e.to_string().contains("Int64"), "{e}");
    let e = Setup::new("misfit", vec![col("nope", DataType::Int32)]).open().await.err().expect("missing column");
    assert_eq!(e.sqlstate(), "HV005", "{e}");
    let e = Setup::new("no_such_table", vec![col("id", DataType::Int64)]).open().await.err().expect("missing table");
    assert_eq!(e.sqlstate(), "HV00R", "{e}");
}

/// Rows: id, i (Nullable Int32), f (Float64 with NaN), s (Nullable String with quotes,
/// backslashes, unicode and LIKE wildcards).
async fn qual_table(name: &str) -> Arc<dyn pgfed_connector_sdk::ForeignTable> {
    table(
        name,
        "id Int32, i Nullable(Int32), f Float64, s Nullable(String), d Date",
        "(1, 10, 1.5, 'it\\'s', '2024-01-01'), (2, NULL, nan, 'back\\\\slash', '1970-01-01'),
         (3, -5, 100.5, '100%', '2099-12-31'), (4, 2147483647, -inf, 'a_b', '2024-01-02'),
         (5, 0, 100.0, NULL, '2024-01-01'), (6, 7, inf, 'ünïcödé', '2000-02-29'), (7, 8, -0., 'axb', '2024-01-01')",
    )
    .await;
    Setup::new(
        name,
        vec![
            col("id", DataType::Int32),
            col("i", DataType::Int32),
            col("f", DataType::Float64),
            col("s", DataType::Utf8),
            col("d", DataType::Date32),
        ],
    )
    .open()
    .await
    .expect("open")
}

async fn ids(t: &dyn pgfed_connector_sdk::ForeignTable, quals: Vec<Qual>) -> Vec<i32> {
    for qual in &quals {
        assert_eq!(t.pushdown(qual), Pushdown::Exact, "{qual}");
    }
    let b = scan_all(
        t,
        ScanRequest {
            columns: vec!["id".into()],
            quals,
            sort: vec![SortKey { column: "id".into(), descending: false, nulls: NullsOrder::Last }],
            limit: None,
        },
    )
    .await
    .expect("scan");
    b.column(0).as_primitive::<Int32Type>().values().to_vec()
}

#[tokio::test]
async fn quals_give_postgres_answers() {
    if env().is_none() {
        return;
    }
    let t = qual_table("quals_q").await;
    let t = t.as_ref();
    use Operator::*;
    assert_eq!(ids(t, vec![q("i", Gt, one(Value::Int(7)))]).await, vec![1, 4, 7]);
    assert_eq!(ids(t, vec![q("i", NotEq, one(Value::Int(10)))]).await, vec![3, 4, 5, 6, 7]);
    assert_eq!(ids(t, vec![q("i", Lt, one(Value::Int(1 << 40)))]).await, vec![1, 3, 4, 5, 6, 7]);
    assert_eq!(ids(t, vec![q("i", Eq, one(Value::Null))]).await, Vec::<i32>::new());
    assert_eq!(ids(t, vec![q("i", IsNull, QualValue::None)]).await, vec![2]);
    assert_eq!(
        ids(t, vec![q("i", Eq, QualValue::Any(vec![Value::Int(10), Value::Null, Value::Int(-5)]))]).await,
        vec![1, 3]
    );
    assert_eq!(
        ids(t, vec![q("i", NotEq, QualValue::All(vec![Value::Int(10), Value::Int(0)]))]).await,
        vec![3, 4, 6, 7]
    );
    assert_eq!(ids(t, vec![q("i", NotEq, QualValue::All(vec![Value::Int(10), Value::Null]))]).await, Vec::<i32>::new());
    assert_eq!(ids(t, vec![q("i", NotEq, QualValue::All(vec![]))]).await, vec![1, 2, 3, 4, 5, 6, 7]);
    // NaN is above every number in Postgres, and equal to itself.
    assert_eq!(ids(t, vec![q("f", Gt, one(Value::Float(100.0)))]).await, vec![2, 3, 6]);
    assert_eq!(ids(t, vec![q("f", GtEq, one(Value::Float(f64::INFINITY)))]).await, vec![2, 6]);
    assert_eq!(ids(t, vec![q("f", Eq, one(Value::Float(f64::NAN)))]).await, vec![2]);
    assert_eq!(ids(t, vec![q("f", Eq, one(Value::Float(0.0)))]).await, vec![7]);
    assert_eq!(ids(t, vec![q("f", Lt, one(Value::Float(1.5)))]).await, vec![4, 7]);
    assert_eq!(ids(t, vec![q("s", Eq, one(Value::Text("it's".into())))]).await, vec![1]);
    assert_eq!(ids(t, vec![q("s", Eq, one(Value::Text("back\\slash".into())))]).await, vec![2]);
    assert_eq!(ids(t, vec![q("s", Eq, one(Value::Text("ünïcödé".into())))]).await, vec![6]);
    assert_eq!(ids(t, vec![q("s", NotEq, one(Value::Text("it's".into())))]).await, vec![2, 3, 4, 6, 7]);
    assert_eq!(ids(t, vec![q("s", Like, one(Value::Text("%\\%".into())))]).await, vec![3]);
    assert_eq!(ids(t, vec![q("s", Like, one(Value::Text("a\\_b".into())))]).await, vec![4]);
    assert_eq!(ids(t, vec![q("s", Like, one(Value::Text("a_b".into())))]).await, vec![4, 7]);
    assert_eq!(ids(t, vec![q("s", Like, one(Value::Text("back\\\\%".into())))]).await, vec![2]);
    assert_eq!(ids(t, vec![q("s", Like, one(Value::Text("ü_ï%".into())))]).await, vec![6]);
    assert_eq!(ids(t, vec![q("s", NotLike, one(Value::Text("%a%".into())))]).await, vec![1, 3, 6]);
    assert_eq!(
        ids(t, vec![q("s", Eq, QualValue::Any(vec![Value::Text("100%".into()), Value::Text("x'".into())]))]).await,
        vec![3]
    );
    assert_eq!(ids(t, vec![q("d", Eq, one(Value::Date(19_723)))]).await, vec![1, 5, 7]);
    assert_eq!(ids(t, vec![q("d", Gt, one(Value::Date(-3650)))]).await, vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(ids(t, vec![q("d", Eq, QualValue::Any(vec![Value::Date(0), Value::Date(11_016)]))]).await, vec![2, 6]);
    assert_eq!(
        ids(t, vec![q("i", GtEq, one(Value::Int(0))), q("s", IsNotNull, QualValue::None)]).await,
        vec![1, 4, 6, 7]
    );
    // Not pushed: text ordering, ILIKE.
    assert_eq!(t.pushdown(&q("s", Lt, one(Value::Text("m".into())))), Pushdown::Unsupported);
    assert_eq!(t.pushdown(&q("s", ILike, one(Value::Text("A%".into())))), Pushdown::Unsupported);
    assert!(!t.accepts_sort(&[SortKey { column: "s".into(), descending: false, nulls: NullsOrder::Last }]));
    assert!(!t.accepts_sort(&[SortKey { column: "f".into(), descending: false, nulls: NullsOrder::Last }]));
}

#[tokio::test]
async fn sort_keeps_nulls_order_and_limit_stops_early() {
    if env().is_none() {
        return;
    }
    let t = qual_table("quals_sort").await;
    for (descending, nulls, expected) in [
        (false, NullsOrder::Last, vec![3, 5, 6, 7, 1, 4, 2]),
        (false, NullsOrder::First, vec![2, 3, 5, 6, 7, 1, 4]),
        (true, NullsOrder::First, vec![2, 4, 1, 7, 6, 5, 3]),
        (true, NullsOrder::Last, vec![4, 1, 7, 6, 5, 3, 2]),
    ] {
        let sort = vec![SortKey { column: "i".into(), descending, nulls }];
        assert!(t.accepts_sort(&sort));
        let b = scan_all(t.as_ref(), ScanRequest { columns: vec!["id".into()], sort, ..Default::default() })
            .await
            .expect("scan");
        assert_eq!(b.column(0).as_primitive::<Int32Type>().values().to_vec(), expected);
    }
    let b = scan_all(
        t.as_ref(),
        ScanRequest {
            columns: vec![],
            sort: vec![SortKey { column: "i".into(), descending: true, nulls: NullsOrder::Last }],
            limit: Some(3),
            ..Default::default()
        },
    )
    .await
    .expect("scan");
    assert_eq!((b.num_rows(), b.num_columns()), (3, 0));
    assert!(
        t.explain(&ScanRequest { columns: vec!["id".into()], ..Default::default() })[0]
            .starts_with("ClickHouse SQL: SELECT")
    );
}

#[tokio::test]
async fn a_million_rows_stream_in_bounded_batches() {
    if env().is_none() {
        return;
    }
    table("million", "n UInt64, s String", "").await;
    ch("INSERT INTO pgfed_test.million SELECT number, toString(number) FROM system.numbers LIMIT 1000000").await;
    let t = Setup::new("million", vec![col("n", DataType::Decimal128(20, 0)), col("s", DataType::Utf8)])
        .open()
        .await
        .expect("open");
    let started = Instant::now();
    let mut stream =
        t.scan(ScanRequest { columns: vec!["n".into(), "s".into()], ..Default::default() }, ctx()).await.expect("scan");
    let mut rows = 0usize;
    let mut sum: i128 = 0;
    let mut first = None;
    use futures_util::StreamExt;
    while let Some(b) = stream.next().await {
        let b = b.expect("batch");
        first.get_or_insert(started.elapsed());
        assert!(b.num_rows() <= 8192);
        rows += b.num_rows();
        sum += b.column(0).as_primitive::<Decimal128Type>().values().iter().sum::<i128>();
    }
    assert_eq!(rows, 1_000_000);
    assert_eq!(sum, 999_999 * 1_000_000 / 2);
    assert!(first.expect("rows") < started.elapsed() / 2, "first batch came at the end");
}

fn query(sql: &str, fields: Vec<Field>) -> SqlQuery {
    SqlQuery { sql: sql.into(), params: vec![], schema: Arc::new(Schema::new(fields)) }
}

#[tokio::test]
async fn generated_queries_run_and_decode_into_the_engine_schema() {
    if env().is_none() {
        return;
    }
    let t = qual_table("quals_query").await;
    let source = t.sql_source().expect("sql source");
    assert_eq!(source.relation, (Some("pgfed_test".into()), "quals_query".into()));
    assert!(!source.text_ordering);
    let q = query(
        "SELECT `d`, count() AS `c`, sum(`i`) AS `s` FROM `pgfed_test`.`quals_query` GROUP BY `d` ORDER BY `d` ASC",
        vec![
            Field::new("d", DataType::Date32, true),
            Field::new("c", DataType::Int64, false),
            Field::new("s", DataType::Int64, true),
        ],
    );
    let b = collect(t.query(q, ctx()).await.expect("query")).await.expect("rows");
    let b = &b[0];
    assert_eq!(b.num_rows(), 5);
    assert_eq!(b.column(1).as_primitive::<Int64Type>().values().to_vec(), vec![1, 1, 3, 1, 1]);
    // A syntax error is ClickHouse's, with its code and the SQLSTATE pgfed maps it to.
    let r = match t.query(query("SELEC 1", vec![Field::new("x", DataType::Int64, true)]), ctx()).await {
        Ok(s) => collect(s).await.map(drop),
        Err(e) => Err(e),
    };
    let e = r.expect_err("syntax error");
    assert_eq!(e.sqlstate(), "42601", "{e}");
    assert!(e.to_string().contains("error 62: ") && e.to_string().contains("Syntax error"), "{e}");
}

#[tokio::test]
async fn cancel_and_timeout_kill_the_clickhouse_query() {
    if env().is_none() {
        return;
    }
    let t = qual_table("quals_cancel").await;
    let sql =
        "SELECT count() AS c FROM system.numbers AS a CROSS JOIN system.numbers AS b WHERE a.number + b.number = 99991";
    let mut c = ctx();
    c.deadline = Some(Instant::now() + Duration::from_millis(500));
    let started = Instant::now();
    let r = collect(t.query(query(sql, vec![Field::new("c", DataType::Int64, false)]), c).await.expect("query")).await;
    assert!(matches!(r, Err(ConnectorError::TimedOut)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let c = ctx();
    let cancel = c.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let r = collect(t.query(query(sql, vec![Field::new("c", DataType::Int64, false)]), c).await.expect("query")).await;
    assert!(matches!(r, Err(ConnectorError::Cancelled)), "{r:?}");
    // The queries are gone from the server, not just from pgfed.
    let probe =
        "SELECT count() FROM system.processes WHERE query LIKE '%99991%' AND query NOT LIKE '%system.processes%'";
    let mut left = String::new();
    for _ in 0..50 {
        left = ch(probe).await;
        if left.trim() == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left.trim(), "0", "query still running");
}

#[tokio::test]
async fn server_down_or_bad_password_fails_clearly() {
    if env().is_none() {
        return;
    }
    let mut s = Setup::new("quals", vec![col("id", DataType::Int32)]);
    s.server = opts(&[("url", "http://127.0.0.1:9"), ("connect_timeout", "2")]);
    let started = Instant::now();
    let e = s.open().await.err().expect("down");
    assert_eq!(e.sqlstate(), "HV00N", "{e}");
    assert!(started.elapsed() < Duration::from_secs(4));
    let mut s = Setup::new("quals", vec![col("id", DataType::Int32)]);
    s.user_mapping = opts(&[("user", "pgfed"), ("password", "wrong-secret")]);
    let e = s.open().await.err().expect("bad password");
    assert_eq!(e.sqlstate(), "HV00N", "{e}");
    assert!(!format!("{e} {e:?}").contains("wrong-secret"));
}

#[tokio::test]
async fn options_are_checked_without_echoing_values() {
    let specs = ClickHouseWrapper.options();
    let server = |pairs: &[(&str, &str)]| validate_options(specs, OptionLevel::Server, &opts(pairs)).expect("names");
    let request = |s| pgfed_connector_sdk::OpenRequest {
        table_name: "t".into(),
        server: s,
        user_mapping: Default::default(),
        table: Default::default(),
        columns: vec![],
    };
    for bad in [
        vec![("url", "ftp://x")],
        vec![("url", "http://u:secretpw@h:8123")],
        vec![("url", "http://h"), ("compression", "zstd9")],
        vec![("url", "http://h"), ("settings", "max_threads")],
        vec![("url", "http://h"), ("settings", "query_id=x")],
    ] {
        let e = ClickHouseWrapper.check(&request(server(&bad))).expect_err("invalid");
        assert_eq!(e.sqlstate(), "HV024", "{e}");
        assert!(!e.to_string().contains("secretpw"));
    }
    ClickHouseWrapper
        .check(&request(server(&[("url", "https://h:8443"), ("settings", "max_threads=2, join_use_nulls=1")])))
        .expect("valid");
}

#[tokio::test]
async fn tls_with_the_test_ca() {
    let Ok(https) = std::env::var("PGFED_TEST_CH_HTTPS_URL") else {
        return;
    };
    if env().is_none() {
        return;
    }
    qual_table("quals_tls").await;
    let mut s = Setup::new("quals_tls", vec![col("id", DataType::Int32)]);
    s.server = opts(&[
        ("url", &https),
        ("database", "pgfed_test"),
        ("ca_file", &std::env::var("PGFED_TEST_CH_CA").expect("CA")),
    ]);
    let t = s.open().await.expect("open over TLS");
    let b = scan_all(t.as_ref(), ScanRequest { columns: vec!["id".into()], ..Default::default() }).await.expect("scan");
    assert_eq!(b.num_rows(), 7);
    // Without the CA the certificate is not trusted.
    s.server.retain(|(k, _)| k != "ca_file");
    let e = s.open().await.err().expect("untrusted");
    assert_eq!(e.sqlstate(), "HV00N", "{e}");
}

#[tokio::test]
async fn import_foreign_schema_maps_types() {
    if env().is_none() {
        return;
    }
    ch("CREATE DATABASE IF NOT EXISTS pgfed_import").await;
    ch("DROP TABLE IF EXISTS pgfed_import.events").await;
    ch("CREATE TABLE pgfed_import.events (id UInt64, name Nullable(String), at DateTime, tags Array(String), d Decimal(10, 2))
        ENGINE = MergeTree ORDER BY id")
    .await;
    let s = Setup::new("x", vec![]);
    let specs = ClickHouseWrapper.options();
    let request = ImportRequest {
        server: validate_options(specs, OptionLevel::Server, &s.server).expect("server"),
        user_mapping: validate_options(specs, OptionLevel::UserMapping, &s.user_mapping).expect("um"),
        remote_schema: "pgfed_import".into(),
        limit_to: None,
        except: vec![],
    };
    let tables = ClickHouseWrapper.import_schema_in(request.clone(), &ctx()).await.expect("import");
    assert_eq!(tables.len(), 1);
    let types: Vec<(String, String, bool)> =
        tables[0].columns.iter().map(|c| (c.name.clone(), c.pg_type.clone(), c.not_null)).collect();
    assert_eq!(
        types,
        vec![
            ("id".into(), "numeric(20,0)".into(), true),
            ("name".into(), "text".into(), false),
            ("at".into(), "timestamp(0) with time zone".into(), true),
            ("tags".into(), "text[]".into(), true),
            ("d".into(), "numeric(10,2)".into(), true),
        ]
    );
    let e = ClickHouseWrapper
        .import_schema(ImportRequest { remote_schema: "no_such_db".into(), ..request })
        .await
        .expect_err("missing database");
    assert!(e.to_string().contains("is not present on foreign server"), "{e}");
}
