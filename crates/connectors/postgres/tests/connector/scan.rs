//! Scans: types, projections, quals, pushdown, ORDER BY and LIMIT, errors, cancel.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field, TimeUnit};
use futures_util::StreamExt;
use pgfed_connector_postgres::PostgresWrapper;
use pgfed_connector_sdk::{
    ConnectorError, ForeignTable, NullsOrder, Operator, Pushdown, Qual, QualValue, ScanRequest, SortKey, Value, Wrapper,
};
use pgfed_testkit::TestPg;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::*;

fn all_types_columns() -> Vec<(Field, Vec<(String, String)>)> {
    vec![
        (Field::new("id", DataType::Int32, false), vec![]),
        col("b", DataType::Boolean),
        col("i2", DataType::Int16),
        col("i4", DataType::Int32),
        col("i8", DataType::Int64),
        col("f4", DataType::Float32),
        col("f8", DataType::Float64),
        col("t", DataType::Utf8),
        (Field::new("mixed", DataType::Utf8, true), opts(&[("column_name", "Mixed \"Case\"")])),
        col("by", DataType::Binary),
        col("d", DataType::Date32),
        col("ts", DataType::Timestamp(TimeUnit::Microsecond, None)),
        col("tz", tz()),
        col("n", DataType::Decimal128(12, 3)),
        col("u", DataType::FixedSizeBinary(16)),
    ]
}

/// Three rows: 1 with values, 2 all NULL, 3 with other values.
async fn types_table(name: &str, same_collation: bool) -> Arc<dyn ForeignTable> {
    exec(&format!(
        "DROP TABLE IF EXISTS {name};
         CREATE TABLE {name} (id int4 PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, t text,
             \"Mixed \"\"Case\"\"\" varchar(20), by bytea, d date, ts timestamp, tz timestamptz, n numeric(12,3), u uuid);
         INSERT INTO {name} VALUES
           (1, true, -32768, 2147483647, -9223372036854775808, 1.5, 2.25, 'it''s', 'Ünïcode', '\\x00ff',
            '2024-02-29', '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.789012+00', -12345.678,
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
           (3, false, 7, -1, 42, -0.25, -1e300, 'zeta', 'x', '', '1969-12-31', '1970-01-01 00:00:00',
            '1999-12-31 23:59:59.999999+00', 0.001, '00000000-0000-0000-0000-000000000000');"
    ))
    .await;
    let mut setup = Setup::new(name, all_types_columns());
    if same_collation {
        setup.server.extend(opts(&[("same_collation", "true")]));
    }
    setup.open().await.expect("open")
}

fn all_columns() -> Vec<String> {
    all_types_columns().iter().map(|(f, _)| f.name().clone()).collect()
}

fn by_id() -> Vec<SortKey> {
    vec![SortKey { column: "id".into(), descending: false, nulls: NullsOrder::Last }]
}

fn q(column: &str, operator: Operator, value: QualValue) -> Qual {
    Qual { column: column.into(), operator, value }
}

fn one(v: Value) -> QualValue {
    QualValue::One(v)
}

async fn ids(table: &dyn ForeignTable, quals: Vec<Qual>) -> Vec<i32> {
    for qual in &quals {
        assert_eq!(table.pushdown(qual), Pushdown::Exact, "{qual}");
    }
    let batch = scan_one(table, ScanRequest { columns: vec!["id".into()], quals, sort: by_id(), limit: None }).await;
    batch.column(0).as_primitive::<Int32Type>().values().to_vec()
}

#[tokio::test]
async fn scans_every_type_with_nulls() {
    let table = types_table("h7_types_all", false).await;
    let request = ScanRequest { columns: all_columns(), sort: by_id(), ..Default::default() };
    let batch = scan_one(table.as_ref(), request).await;
    assert_eq!(batch.num_rows(), 3);
    assert_eq!(batch.schema().fields().len(), 15);
    for (i, field) in batch.schema().fields().iter().enumerate() {
        assert_eq!(field.data_type(), all_types_columns()[i].0.data_type());
        if i > 0 {
            assert!(batch.column(i).is_null(1), "row 2 is NULL in {}", field.name());
        }
    }
    let c = |name: &str| batch.column_by_name(name).expect("column").clone();
    assert_eq!(c("id").as_primitive::<Int32Type>().values().to_vec(), vec![1, 2, 3]);
    assert!(c("b").as_boolean().value(0) && !c("b").as_boolean().value(2));
    assert_eq!(c("i2").as_primitive::<Int16Type>().value(0), i16::MIN);
    assert_eq!(c("i4").as_primitive::<Int32Type>().value(0), i32::MAX);
    assert_eq!(c("i8").as_primitive::<Int64Type>().value(0), i64::MIN);
    assert_eq!(c("f4").as_primitive::<Float32Type>().value(2), -0.25);
    assert_eq!(c("f8").as_primitive::<Float64Type>().value(2), -1e300);
    assert_eq!(c("t").as_string::<i32>().value(0), "it's");
    assert_eq!(c("mixed").as_string::<i32>().value(0), "Ünïcode");
    assert_eq!(c("by").as_binary::<i32>().value(0), &[0u8, 255]);
    assert_eq!(c("by").as_binary::<i32>().value(2), b"");
    assert_eq!(c("d").as_primitive::<Date32Type>().value(0), 19_782);
    assert_eq!(c("d").as_primitive::<Date32Type>().value(2), -1);
    assert_eq!(c("ts").as_primitive::<TimestampMicrosecondType>().value(0), 1_709_210_096_789_012);
    assert_eq!(c("ts").as_primitive::<TimestampMicrosecondType>().value(2), 0);
    assert_eq!(c("tz").as_primitive::<TimestampMicrosecondType>().value(0), 1_709_210_096_789_012);
    assert_eq!(c("tz").as_primitive::<TimestampMicrosecondType>().value(2), 946_684_799_999_999);
    assert_eq!(c("n").as_primitive::<Decimal128Type>().value(0), -12_345_678);
    assert_eq!(c("n").as_primitive::<Decimal128Type>().value(2), 1);
    assert_eq!(c("u").as_fixed_size_binary().value(0), &UUID1);
}

#[tokio::test]
async fn projections_and_zero_columns() {
    let table = types_table("h7_types_proj", false).await;
    let request = ScanRequest { columns: vec!["t".into(), "id".into()], sort: by_id(), ..Default::default() };
    let batch = scan_one(table.as_ref(), request).await;
    let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["t", "id"]);
    assert_eq!(batch.column(1).as_primitive::<Int32Type>().values().to_vec(), vec![1, 2, 3]);
    let batches = scan(table.as_ref(), ScanRequest::default()).await.expect("count(*) scan");
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
    assert!(batches.iter().all(|b| b.num_columns() == 0));
}

#[tokio::test]
async fn every_qual_kind() {
    let table = types_table("h7_types_quals", true).await;
    let t = table.as_ref();
    let cases: Vec<(Qual, Vec<i32>)> = vec![
        (q("i4", Operator::Eq, one(Value::Int(i64::from(i32::MAX)))), vec![1]),
        (q("i8", Operator::NotEq, one(Value::Int(42))), vec![1]),
        (q("i2", Operator::Lt, one(Value::Int(0))), vec![1]),
        (q("i2", Operator::LtEq, one(Value::Int(7))), vec![1, 3]),
        (q("f8", Operator::Gt, one(Value::Float(0.0))), vec![1]),
        (q("f4", Operator::GtEq, one(Value::Float(-0.25))), vec![1, 3]),
        (q("d", Operator::LtEq, one(Value::Date(-1))), vec![3]),
        (q("ts", Operator::Gt, one(Value::Timestamp(0))), vec![1]),
        (q("tz", Operator::Eq, one(Value::TimestampTz(946_684_799_999_999))), vec![3]),
        (q("n", Operator::Gt, one(Value::Numeric("-1".into()))), vec![3]),
        (q("n", Operator::Eq, one(Value::Numeric("-12345.678".into()))), vec![1]),
        (q("u", Operator::Eq, one(Value::Uuid(UUID1))), vec![1]),
        (q("b", Operator::Eq, one(Value::Bool(false))), vec![3]),
        (q("by", Operator::Eq, one(Value::Bytes(vec![]))), vec![3]),
        (q("t", Operator::IsNull, QualValue::None), vec![2]),
        (q("u", Operator::IsNotNull, QualValue::None), vec![1, 3]),
        (q("t", Operator::Eq, one(Value::Text("it's".into()))), vec![1]),
        (q("mixed", Operator::NotEq, one(Value::Text("x".into()))), vec![1]),
        (q("t", Operator::Lt, one(Value::Text("j".into()))), vec![1]),
        (q("t", Operator::Like, one(Value::Text("z%".into()))), vec![3]),
        (q("t", Operator::Like, one(Value::Text("it_s".into()))), vec![1]),
        (q("t", Operator::NotLike, one(Value::Text("z%".into()))), vec![1]),
        (q("t", Operator::ILike, one(Value::Text("IT%".into()))), vec![1]),
        (q("t", Operator::NotILike, one(Value::Text("IT%".into()))), vec![3]),
        (q("i4", Operator::Eq, one(Value::Null)), vec![]),
    ];
    for (qual, expected) in cases {
        assert_eq!(ids(t, vec![qual.clone()]).await, expected, "{qual}");
    }
    // ANDed
    let both = vec![q("i2", Operator::LtEq, one(Value::Int(7))), q("t", Operator::Like, one(Value::Text("z%".into())))];
    assert_eq!(ids(t, both).await, vec![3]);
}

#[tokio::test]
async fn pushdown_matrix() {
    let plain = types_table("h7_types_matrix", false).await;
    let text = |op, v: &str| q("t", op, one(Value::Text(v.into())));
    for qual in
        [text(Operator::Lt, "m"), text(Operator::GtEq, "m"), text(Operator::Like, "a%"), text(Operator::ILike, "a%")]
    {
        assert_eq!(plain.pushdown(&qual), Pushdown::Unsupported, "{qual}: needs same_collation");
    }
    for qual in [
        text(Operator::Eq, "m"),
        text(Operator::NotEq, "m"),
        q("t", Operator::Eq, QualValue::Any(vec![Value::Text("a".into())])),
        q("t", Operator::IsNull, QualValue::None),
        q("i8", Operator::Lt, one(Value::Int(1))),
        q("ts", Operator::Gt, QualValue::All(vec![Value::Timestamp(1)])),
    ] {
        assert_eq!(plain.pushdown(&qual), Pushdown::Exact, "{qual}");
    }
    // Values of another kind than the declared column, LIKE on non-text, unknown columns.
    for qual in [
        q("i4", Operator::Eq, one(Value::Text("1".into()))),
        q("i4", Operator::Eq, one(Value::Float(1.5))),
        q("tz", Operator::Eq, one(Value::Timestamp(0))),
        q("i4", Operator::Like, one(Value::Text("1%".into()))),
        q("nope", Operator::IsNull, QualValue::None),
        q("i4", Operator::Eq, QualValue::Any(vec![Value::Int(1), Value::Text("2".into())])),
    ] {
        assert_eq!(plain.pushdown(&qual), Pushdown::Unsupported, "{qual}");
    }
    let key = |column: &str| SortKey { column: column.into(), descending: false, nulls: NullsOrder::Last };
    assert!(plain.accepts_sort(&[key("i8"), key("ts"), key("n"), key("u")]));
    assert!(!plain.accepts_sort(&[key("i8"), key("t")]));
    let same = types_table("h7_types_matrix2", true).await;
    assert!(same.accepts_sort(&[key("t")]));
    assert_eq!(same.pushdown(&text(Operator::Like, "a%")), Pushdown::Exact);
    // A qual the table refused is not silently sent.
    let e = scan(plain.as_ref(), ScanRequest { quals: vec![text(Operator::Lt, "m")], ..Default::default() })
        .await
        .expect_err("refused qual");
    assert_eq!(e.sqlstate(), "0A000");
}

#[tokio::test]
async fn in_lists() {
    let table = types_table("h7_types_in", false).await;
    let t = table.as_ref();
    let ints = |vs: &[i64]| vs.iter().map(|v| Value::Int(*v)).collect::<Vec<_>>();
    let texts = |vs: &[&str]| vs.iter().map(|v| Value::Text(v.to_string())).collect::<Vec<_>>();
    let cases: Vec<(Qual, Vec<i32>)> = vec![
        (q("i4", Operator::Eq, QualValue::Any(ints(&[2_147_483_647, -1]))), vec![1, 3]),
        (q("i4", Operator::Eq, QualValue::Any(vec![Value::Int(-1), Value::Null])), vec![3]),
        (q("i4", Operator::NotEq, QualValue::All(ints(&[-1]))), vec![1]),
        (q("i4", Operator::NotEq, QualValue::All(vec![Value::Int(-1), Value::Null])), vec![]),
        (q("i4", Operator::Eq, QualValue::Any(vec![])), vec![]),
        // ALL over an empty list is true, even for NULL.
        (q("i4", Operator::NotEq, QualValue::All(vec![])), vec![1, 2, 3]),
        (q("i8", Operator::Gt, QualValue::All(ints(&[0, 10]))), vec![3]),
        (q("t", Operator::Eq, QualValue::Any(texts(&["it's", "zeta", "nope"]))), vec![1, 3]),
        (q("mixed", Operator::NotEq, QualValue::All(texts(&["x"]))), vec![1]),
        (q("n", Operator::Eq, QualValue::Any(vec![Value::Numeric("0.001".into()), Value::Int(5)])), vec![3]),
        (q("u", Operator::Eq, QualValue::Any(vec![Value::Uuid(UUID1), Value::Uuid([0; 16])])), vec![1, 3]),
        (q("d", Operator::Eq, QualValue::Any(vec![Value::Date(-1), Value::Date(19_782)])), vec![1, 3]),
        (q("ts", Operator::Eq, QualValue::Any(vec![Value::Timestamp(0)])), vec![3]),
        (q("by", Operator::Eq, QualValue::Any(vec![Value::Bytes(vec![0, 255])])), vec![1]),
        (q("b", Operator::Eq, QualValue::Any(vec![Value::Bool(true)])), vec![1]),
        (q("f8", Operator::Eq, QualValue::Any(vec![Value::Float(2.25), Value::Float(-1e300)])), vec![1, 3]),
    ];
    for (qual, expected) in cases {
        assert_eq!(ids(t, vec![qual.clone()]).await, expected, "{qual}");
    }
}

#[tokio::test]
async fn order_by_desc_nulls_first_and_limit() {
    let table = types_table("h7_types_order", true).await;
    let t = table.as_ref();
    let sorted = |column: &str, descending, nulls, limit| ScanRequest {
        columns: vec!["id".into()],
        quals: vec![],
        sort: vec![SortKey { column: column.into(), descending, nulls }],
        limit,
    };
    let run = |request: ScanRequest| async move {
        let batch = scan_one(t, request).await;
        batch.column(0).as_primitive::<Int32Type>().values().to_vec()
    };
    assert_eq!(run(sorted("i8", true, NullsOrder::First, None)).await, vec![2, 3, 1]);
    assert_eq!(run(sorted("i8", true, NullsOrder::Last, None)).await, vec![3, 1, 2]);
    assert_eq!(run(sorted("i8", false, NullsOrder::First, None)).await, vec![2, 1, 3]);
    assert_eq!(run(sorted("t", false, NullsOrder::Last, None)).await, vec![1, 3, 2]);
    assert_eq!(run(sorted("i8", true, NullsOrder::First, Some(2))).await, vec![2, 3]);
    assert_eq!(run(sorted("i8", true, NullsOrder::First, Some(0))).await, Vec::<i32>::new());
    let explain = t.explain(&ScanRequest {
        columns: vec!["id".into()],
        quals: vec![q("t", Operator::Eq, one(Value::Text("s3cret-value".into())))],
        sort: vec![SortKey { column: "i8".into(), descending: true, nulls: NullsOrder::First }],
        limit: Some(2),
    });
    assert_eq!(
        explain,
        vec![
            "Remote SQL: SELECT \"id\" FROM \"public\".\"h7_types_order\" WHERE \"t\" = $1 ORDER BY \"i8\" DESC NULLS FIRST \
             LIMIT $2::pg_catalog.int8"
                .to_string()
        ]
    );
}

/// Random nasty strings, i64 and f64 values in Eq quals select exactly the rows a direct
/// `WHERE col = $1` selects: no injection, no escaping error.
#[tokio::test]
async fn random_values_round_trip_in_eq_quals() {
    const NASTY: &[&str] = &[
        "'); drop table x; --",
        "'",
        "''",
        "\\",
        "\\'",
        "%",
        "_",
        "a%b_c",
        "\"",
        "$1",
        "$$",
        "ünï©ødé 🎉",
        "",
        " ",
        "E'\\x41'",
        "line\nbreak\ttab\r",
    ];
    let mut rng = StdRng::seed_from_u64(0x9f3d);
    let pieces = ["'", "\\", "%", "_", "\"", ";", "--", "é", "🎉", "$1", " ", "x", "A", "\n", "/*"];
    let mut strings: Vec<String> = NASTY.iter().map(|s| s.to_string()).collect();
    for _ in 0..60 {
        let len = rng.random_range(0..12);
        let s: String = (0..len)
            .map(|_| {
                if rng.random_bool(0.5) {
                    pieces[rng.random_range(0..pieces.len())].to_string()
                } else {
                    let c: char = rng.random();
                    if c == '\0' { "z".to_string() } else { c.to_string() }
                }
            })
            .collect();
        strings.push(s);
    }
    let mut ints: Vec<i64> = vec![0, -1, i64::MIN, i64::MAX];
    ints.extend((0..30).map(|_| rng.random::<i64>()));
    let mut floats: Vec<f64> = vec![0.0, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, 0.1];
    floats.extend((0..30).map(|_| f64::from_bits(rng.random::<u64>())));

    exec("DROP TABLE IF EXISTS h7_props; CREATE TABLE h7_props (id int4, s text, i int8, f float8);").await;
    let client = TestPg::from_env().superuser().await;
    // Insert about two thirds of the values, so some lookups find nothing.
    for (id, s) in strings.iter().enumerate().filter(|(i, _)| i % 3 != 2) {
        let (i, f) = (ints[id % ints.len()], floats[id % floats.len()]);
        let id = i32::try_from(id).expect("small");
        client.execute("INSERT INTO h7_props VALUES ($1, $2, $3, $4)", &[&id, s, &i, &f]).await.expect("insert");
    }
    let columns = vec![
        (Field::new("id", DataType::Int32, true), vec![]),
        col("s", DataType::Utf8),
        col("i", DataType::Int64),
        col("f", DataType::Float64),
    ];
    let table = Setup::new("h7_props", columns).open().await.expect("open");
    let direct = |sql: &'static str| {
        let client = &client;
        move |p: Box<dyn tokio_postgres::types::ToSql + Sync + Send>| async move {
            let rows =
                client.query(sql, &[p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)]).await.expect("direct");
            rows.iter().map(|r| r.get::<_, i32>(0)).collect::<BTreeSet<i32>>()
        }
    };
    let check = |got: Vec<i32>, want: BTreeSet<i32>, what: String| {
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want, "{what}");
    };
    let by_s = direct("SELECT id FROM h7_props WHERE s = $1");
    for s in &strings {
        let got = ids(table.as_ref(), vec![q("s", Operator::Eq, one(Value::Text(s.clone())))]).await;
        check(got, by_s(Box::new(s.clone())).await, format!("s = {s:?}"));
    }
    let by_i = direct("SELECT id FROM h7_props WHERE i = $1");
    for i in &ints {
        let got = ids(table.as_ref(), vec![q("i", Operator::Eq, one(Value::Int(*i)))]).await;
        check(got, by_i(Box::new(*i)).await, format!("i = {i}"));
    }
    let by_f = direct("SELECT id FROM h7_props WHERE f = $1");
    for f in &floats {
        let got = ids(table.as_ref(), vec![q("f", Operator::Eq, one(Value::Float(*f)))]).await;
        check(got, by_f(Box::new(*f)).await, format!("f = {f:e}"));
    }
    // The whole list at once, as IN.
    let all: Vec<Value> = strings.iter().map(|s| Value::Text(s.clone())).collect();
    let got = ids(table.as_ref(), vec![q("s", Operator::Eq, QualValue::Any(all))]).await;
    let want: BTreeSet<i32> = client
        .query("SELECT id FROM h7_props WHERE s = ANY($1)", &[&strings])
        .await
        .expect("direct any")
        .iter()
        .map(|r| r.get(0))
        .collect();
    check(got, want, "s = ANY(all)".into());
    let count: i64 = client
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename = 'h7_props'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 1, "the table survived the nasty values");
}

#[tokio::test]
async fn option_errors_name_options_never_values() {
    let secret = "pw-Zq9!secret";
    let mut setup = Setup::new("h7_nothing", vec![col("id", DataType::Int32)]);
    setup.user_mapping = opts(&[("user", "postgres"), ("password", secret)]);
    let texts = |e: &ConnectorError| format!("{e} {e:?} {}", e.hint().unwrap_or_default());

    setup.server.push(("hots".into(), secret.into()));
    let e = setup.open().await.err().expect("unknown option");
    assert_eq!(e.sqlstate(), "HV00D");
    assert_eq!(
        e.hint(),
        Some(
            "Valid options in this context are: host, port, dbname, sslmode, sslrootcert, connect_timeout, same_collation, fetch_size, updatable, batch_size"
        )
    );
    assert!(!texts(&e).contains(secret));
    setup.server.pop();

    setup.user_mapping.push(("passwd".into(), secret.into()));
    let e = setup.open().await.err().expect("unknown user mapping option");
    assert_eq!(e.hint(), Some("Valid options in this context are: user, password"));
    setup.user_mapping.pop();

    let mut missing = Setup::new("x", vec![]);
    missing.table = opts(&[("schema_name", "public")]);
    let e = missing.open().await.err().expect("missing table_name");
    assert_eq!(
        (e.sqlstate(), e.to_string().as_str()),
        ("HV00J", "option \"table_name\" is required for foreign table")
    );

    for (name, value) in [("sslmode", "verify-everything"), ("port", "nope"), ("same_collation", "maybe")] {
        let mut bad = Setup::new("x", vec![]);
        bad.server.retain(|(k, _)| k != name);
        bad.server.push((name.into(), value.into()));
        bad.user_mapping = opts(&[("password", secret)]);
        let e = bad.open().await.err().expect("bad value");
        assert_eq!(e.sqlstate(), "HV024", "{e}");
        assert!(e.to_string().contains(name) && !texts(&e).contains(value) && !texts(&e).contains(secret));
        assert_eq!(
            PostgresWrapper.check(&bad.request().expect("names are valid")).map_err(|e| e.sqlstate()),
            Err("HV024")
        );
    }
}

#[tokio::test]
async fn unreachable_servers_and_bad_credentials() {
    let secret = "pw-Unreach4ble";
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut setup = Setup::new("h7_nothing", vec![col("id", DataType::Int32)]);
    setup.server = opts(&[("host", "127.0.0.1"), ("port", &port.to_string()), ("dbname", "x")]);
    setup.user_mapping = opts(&[("user", "postgres"), ("password", secret)]);
    let table = setup.open().await.expect("open does not connect");
    let e = scan(table.as_ref(), ScanRequest::default()).await.expect_err("nothing listens");
    assert_eq!(e.sqlstate(), "HV00N", "{e}");
    assert!(!format!("{e} {e:?}").contains(secret), "{e}");

    let mut setup = Setup::new("h7_nothing", vec![col("id", DataType::Int32)]);
    setup.user_mapping = opts(&[("user", "pgfed_scram"), ("password", secret)]);
    let table = setup.open().await.expect("open");
    let e = scan(table.as_ref(), ScanRequest::default()).await.expect_err("wrong password");
    assert_eq!(e.sqlstate(), "HV00N", "{e}");
    assert!(e.to_string().contains("28P01") && !format!("{e} {e:?}").contains(secret), "{e}");

    // The right password works.
    exec("DROP TABLE IF EXISTS h7_scram; CREATE TABLE h7_scram (id int4); GRANT SELECT ON h7_scram TO pgfed_scram;")
        .await;
    let mut setup = Setup::new("h7_scram", vec![col("id", DataType::Int32)]);
    setup.user_mapping = opts(&[("user", "pgfed_scram"), ("password", "pw_scram")]);
    let table = setup.open().await.expect("open");
    scan(table.as_ref(), ScanRequest { columns: vec!["id".into()], ..Default::default() }).await.expect("scram scan");
}

#[tokio::test]
async fn remote_and_type_errors() {
    exec("DROP TABLE IF EXISTS h7_errs; CREATE TABLE h7_errs (id int4, t text, n numeric); INSERT INTO h7_errs VALUES (1, 'a', 'NaN');")
        .await;
    let missing = Setup::new("h7_no_such_table", vec![col("id", DataType::Int32)]).open().await.expect("open");
    let e = scan(missing.as_ref(), ScanRequest { columns: vec!["id".into()], ..Default::default() })
        .await
        .expect_err("no table");
    assert_eq!(
        (e.sqlstate(), e.to_string()),
        ("HV00R", "remote table \"public\".\"h7_no_such_table\" does not exist".into())
    );

    let columns = vec![col("id", DataType::Int32), col("t", DataType::Int64), col("n", DataType::Decimal128(10, 2))];
    let table = Setup::new("h7_errs", columns).open().await.expect("open");
    let e = scan(table.as_ref(), ScanRequest { columns: vec!["t".into()], ..Default::default() })
        .await
        .expect_err("text is not bigint");
    assert!(matches!(&e, ConnectorError::DataType { column, .. } if column == "t"), "{e}");
    let e = scan(table.as_ref(), ScanRequest { columns: vec!["n".into()], ..Default::default() })
        .await
        .expect_err("NaN does not fit Decimal128");
    assert!(matches!(&e, ConnectorError::DataType { column, .. } if column == "n"), "{e}");
    // A qual on a column whose remote type is not what was declared.
    let e = scan(
        table.as_ref(),
        ScanRequest {
            columns: vec!["id".into()],
            quals: vec![q("t", Operator::Eq, one(Value::Int(1)))],
            ..Default::default()
        },
    )
    .await
    .expect_err("bigint qual on a text column");
    assert_eq!(e.sqlstate(), "HV000", "{e}");
    assert!(matches!(&e, ConnectorError::Remote { code: Some(c), .. } if c == "42883"), "{e}");
    let e = scan(
        table.as_ref(),
        ScanRequest {
            columns: vec!["id".into()],
            quals: vec![q("n", Operator::Eq, one(Value::Numeric("1.5x".into())))],
            ..Default::default()
        },
    )
    .await
    .expect_err("bad numeric text");
    assert!(matches!(&e, ConnectorError::Remote { code: Some(c), .. } if c == "22P02"), "{e}");

    let wrong_text = Setup::new("h7_errs", vec![col("id", DataType::Utf8)]).open().await.expect("open");
    let e = scan(
        wrong_text.as_ref(),
        ScanRequest {
            columns: vec![],
            quals: vec![q("id", Operator::Eq, one(Value::Text("1".into())))],
            ..Default::default()
        },
    )
    .await
    .expect_err("text qual on an int column");
    assert!(matches!(&e, ConnectorError::DataType { column, .. } if column == "id"), "{e}");
}

async fn active_remote_queries(client: &tokio_postgres::Client, marker: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE $1",
            &[&format!("%{marker}%")],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

async fn wait_until_idle(client: &tokio_postgres::Client, marker: &str) {
    let start = Instant::now();
    while active_remote_queries(client, marker).await > 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "remote query still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cancel_mid_scan_stops_quickly_and_cancels_the_remote_query() {
    exec(
        "CREATE OR REPLACE VIEW h7_big AS SELECT a::int8 * 1000 + b AS g
           FROM generate_series(1, 1000000) a, generate_series(1, 1000) b;",
    )
    .await;
    let client = TestPg::from_env().superuser().await;
    let table = Setup::new("h7_big", vec![col("g", DataType::Int64)]).open().await.expect("open");
    let context = ctx();
    let token = context.cancel.clone();
    let mut stream =
        table.scan(ScanRequest { columns: vec!["g".into()], ..Default::default() }, context).await.expect("scan");
    let first = stream.next().await.expect("a batch").expect("ok");
    assert_eq!(first.num_rows(), pgfed_connector_postgres::BATCH_ROWS);
    assert_eq!(active_remote_queries(&client, "h7_big").await, 1);
    token.cancel();
    let started = Instant::now();
    let mut saw_cancel = false;
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            assert!(matches!(e, ConnectorError::Cancelled), "{e}");
            saw_cancel = true;
        }
    }
    assert!(saw_cancel && started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    wait_until_idle(&client, "h7_big").await;

    // Dropping the stream mid-scan stops the remote work too.
    let mut stream =
        table.scan(ScanRequest { columns: vec!["g".into()], ..Default::default() }, ctx()).await.expect("scan");
    stream.next().await.expect("a batch").expect("ok");
    drop(stream);
    wait_until_idle(&client, "h7_big").await;

    // The deadline acts like a cancel, reported as statement timeout.
    let mut context = ctx();
    context.deadline = Some(Instant::now() + Duration::from_millis(300));
    let mut stream =
        table.scan(ScanRequest { columns: vec!["g".into()], ..Default::default() }, context).await.expect("scan");
    let mut result = Ok(());
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            result = Err(e);
        }
    }
    assert!(matches!(result, Err(ConnectorError::TimedOut)), "{result:?}");
    wait_until_idle(&client, "h7_big").await;
}
