//! INSERT, UPDATE and DELETE: batching, bind parameters of the declared types, RETURNING, the
//! row-id column, remote errors.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int64Type};
use arrow_array::{ArrayRef, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use pgfed_connector_sdk::{ConnectorError, ForeignTable};

use crate::*;

pub fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns.into_iter().map(|(_, a)| a).collect()).expect("batch")
}

fn decimals(values: Vec<Option<i128>>) -> ArrayRef {
    Arc::new(Decimal128Array::from(values).with_precision_and_scale(12, 2).expect("decimal"))
}

pub async fn remote_rows(sql: &str) -> Vec<String> {
    let client = TestPg::from_env().superuser().await;
    client.query(sql, &[]).await.expect("query").iter().map(|r| r.get::<_, String>(0)).collect()
}

/// `id bigserial PRIMARY KEY, name text, amount numeric(12,2), doc jsonb`, with a statement
/// counter so tests can tell how many INSERT statements ran.
async fn orders(name: &str) {
    exec(&format!(
        "DROP TABLE IF EXISTS {name}; DROP TABLE IF EXISTS {name}_stmts;
         CREATE TABLE {name} (id bigserial PRIMARY KEY, name text NOT NULL DEFAULT 'unnamed',
                              amount numeric(12,2) CHECK (amount >= 0), doc jsonb);
         CREATE TABLE {name}_stmts (n int);
         CREATE OR REPLACE FUNCTION {name}_count() RETURNS trigger LANGUAGE plpgsql AS
           'BEGIN INSERT INTO public.{name}_stmts VALUES (1); RETURN NULL; END';
         CREATE TRIGGER {name}_count AFTER INSERT ON {name} FOR EACH STATEMENT EXECUTE FUNCTION {name}_count();"
    ))
    .await;
}

fn orders_columns() -> Vec<(Field, Vec<(String, String)>)> {
    vec![
        col("id", DataType::Int64),
        col("name", DataType::Utf8),
        col("amount", DataType::Decimal128(12, 2)),
        col("doc", DataType::Utf8),
    ]
}

async fn open(table: &str) -> Arc<dyn ForeignTable> {
    Setup::new(table, orders_columns()).open().await.expect("open")
}

#[tokio::test]
async fn inserts_go_in_multi_row_batches_with_remote_defaults_and_returning() {
    orders("w_ins").await;
    let mut setup = Setup::new("w_ins", orders_columns());
    setup.table.push(("batch_size".into(), "1000".into()));
    let table = setup.open().await.expect("open");
    let n = 2500;
    let names: Vec<Option<String>> = (0..n)
        .map(|i| Some(if i == 7 { "it's'); DROP TABLE w_ins; --".to_string() } else { format!("n{i}") }))
        .collect();
    let amounts: Vec<Option<i128>> =
        (0..n).map(|i| if i % 10 == 0 { None } else { Some(i128::from(i) * 101) }).collect();
    let docs: Vec<Option<String>> = (0..n).map(|i| Some(format!("{{\"i\": {i}, \"q\": \"a\\\"b\"}}"))).collect();
    let rows = batch(vec![
        ("name", Arc::new(StringArray::from(names.clone()))),
        ("amount", decimals(amounts)),
        ("doc", Arc::new(StringArray::from(docs))),
    ]);
    let result = table.insert(rows, &["id".into(), "amount".into()], &ctx()).await.expect("insert");
    assert_eq!(result.rows_affected, 2500);
    let returned = result.returning.expect("RETURNING");
    assert_eq!(returned.num_rows(), 2500);
    // The ids come from the remote sequence (the column was not sent), in row order.
    let ids = returned.column(0).as_primitive::<Int64Type>();
    assert!(ids.values().windows(2).all(|w| w[1] == w[0] + 1), "ids in order");
    assert_eq!(returned.column(1).as_primitive::<Decimal128Type>().value(3), 303);
    // 2500 rows, 1000 per statement: three statements, not 2500 round trips.
    assert_eq!(remote_rows("SELECT count(*)::text FROM w_ins_stmts").await, ["3"]);
    assert_eq!(
        remote_rows("SELECT name || '|' || coalesce(amount::text, 'null') || '|' || (doc->>'q') FROM w_ins WHERE id = (SELECT min(id) + 7 FROM w_ins)").await,
        ["it's'); DROP TABLE w_ins; --|7.07|a\"b"]
    );
    assert_eq!(remote_rows("SELECT count(*)::text FROM w_ins WHERE amount IS NULL").await, ["250"]);

    // A batch without the name column gets the remote default; without RETURNING there is no batch.
    let result =
        table.insert(batch(vec![("amount", decimals(vec![Some(1)]))]), &[], &ctx()).await.expect("insert defaults");
    assert_eq!((result.rows_affected, result.returning.is_none()), (1, true));
    assert_eq!(remote_rows("SELECT name FROM w_ins WHERE amount = 0.01").await, ["unnamed"]);
}

#[tokio::test]
async fn a_failed_insert_leaves_no_rows_and_keeps_the_remote_error() {
    orders("w_fail").await;
    let mut setup = Setup::new("w_fail", orders_columns());
    setup.table.push(("batch_size".into(), "2".into()));
    let table = setup.open().await.expect("open");
    // The fifth row violates the CHECK constraint, in the third statement.
    let amounts = (0..6).map(|i| Some(if i == 4 { -1 } else { i })).collect();
    let e = table.insert(batch(vec![("amount", decimals(amounts))]), &[], &ctx()).await.expect_err("check violation");
    match &e {
        ConnectorError::Remote { code, message, .. } => {
            assert_eq!(code.as_deref(), Some("23514"), "{e}");
            assert!(message.contains("w_fail_amount_check"), "{message}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(remote_rows("SELECT count(*)::text FROM w_fail").await, ["0"]);
    // A value that does not parse as the remote type is the remote server's error too.
    let e = table
        .insert(batch(vec![("doc", Arc::new(StringArray::from(vec!["{not json"])))]), &[], &ctx())
        .await
        .expect_err("bad json");
    assert!(matches!(&e, ConnectorError::Remote { code: Some(c), .. } if c == "22P02"), "{e}");
}

#[tokio::test]
async fn update_and_delete_use_the_remote_primary_key_with_returning() {
    orders("w_upd").await;
    exec("INSERT INTO w_upd (id, name, amount) SELECT g, 'n' || g, g FROM generate_series(1, 5) g").await;
    let table = open("w_upd").await;
    assert_eq!(table.row_id_column(), Some("id"));
    let rows = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![2, 4, 99]))),
        ("name", Arc::new(StringArray::from(vec![Some("two'"), Some("four"), Some("none")]))),
        ("amount", decimals(vec![Some(2000), None, Some(1)])),
    ]);
    let result = table.update(rows, &["id".into(), "name".into(), "amount".into()], &ctx()).await.expect("update");
    // id 99 does not exist remotely: two rows updated, two returned.
    assert_eq!(result.rows_affected, 2);
    let returned = result.returning.expect("RETURNING");
    assert_eq!(returned.column(0).as_primitive::<Int64Type>().values().to_vec(), [2, 4]);
    assert_eq!(returned.column(1).as_string::<i32>().value(0), "two'");
    assert!(returned.column(2).is_null(1));
    assert_eq!(
        remote_rows(
            "SELECT string_agg(id || ':' || name || ':' || coalesce(amount::text, '-'), ',' ORDER BY id) FROM w_upd"
        )
        .await,
        ["1:n1:1.00,2:two':20.00,3:n3:3.00,4:four:-,5:n5:5.00"]
    );

    let result = table
        .delete(batch(vec![("id", Arc::new(Int64Array::from(vec![1, 3, 3, 42])))]), &["name".into()], &ctx())
        .await
        .expect("delete");
    assert_eq!(result.rows_affected, 2);
    let names: Vec<&str> =
        result.returning.as_ref().expect("RETURNING").column(0).as_string::<i32>().iter().flatten().collect();
    assert_eq!(names, ["n1", "n3"]);
    assert_eq!(remote_rows("SELECT string_agg(id::text, ',' ORDER BY id) FROM w_upd").await, ["2,4,5"]);

    // Nothing deleted: zero rows and an empty RETURNING batch of the asked columns.
    let result = table
        .delete(batch(vec![("id", Arc::new(Int64Array::from(vec![77])))]), &["id".into()], &ctx())
        .await
        .expect("delete");
    assert_eq!(result.rows_affected, 0);
    assert_eq!(result.returning.expect("RETURNING").schema().field(0).name(), "id");
}

#[tokio::test]
async fn without_a_remote_key_update_asks_for_the_key_option_which_then_works() {
    exec(
        "DROP VIEW IF EXISTS w_view; DROP TABLE IF EXISTS w_nokey;
         CREATE TABLE w_nokey (code int4, label text); INSERT INTO w_nokey VALUES (1, 'a'), (2, 'b');
         CREATE VIEW w_view AS SELECT code AS c, label FROM w_nokey;",
    )
    .await;
    let columns = || vec![col("code", DataType::Int32), col("label", DataType::Utf8)];
    let table = Setup::new("w_nokey", columns()).open().await.expect("open");
    assert_eq!(table.row_id_column(), None);
    let rows =
        batch(vec![("code", Arc::new(Int32Array::from(vec![1]))), ("label", Arc::new(StringArray::from(vec!["x"])))]);
    let e = table.update(rows.clone(), &[], &ctx()).await.expect_err("no key");
    assert_eq!((e.sqlstate(), e.to_string().as_str()), ("HV00J", "option \"key\" is required for foreign table"));
    let e = table.delete(rows.clone(), &[], &ctx()).await.expect_err("no key");
    assert_eq!(e.sqlstate(), "HV00J");
    // INSERT needs no key.
    table.insert(rows.clone(), &[], &ctx()).await.expect("insert");

    // Through an updatable view, with the key named locally and mapped to a remote column name.
    let mut setup = Setup::new(
        "w_view",
        vec![(Field::new("code", DataType::Int32, true), opts(&[("column_name", "c")])), col("label", DataType::Utf8)],
    );
    setup.table.push(("key".into(), "code".into()));
    let view = setup.open().await.expect("open");
    assert_eq!(view.row_id_column(), Some("code"));
    let result = view.update(rows.clone(), &["code".into()], &ctx()).await.expect("update via key");
    assert_eq!(result.rows_affected, 2, "both rows with code 1 (key must be unique; here it is not)");
    assert_eq!(remote_rows("SELECT string_agg(label, ',' ORDER BY label) FROM w_nokey").await, ["b,x,x"]);

    let mut setup = Setup::new("w_view", columns());
    setup.table.push(("key".into(), "nope".into()));
    assert_eq!(setup.open().await.err().map(|e| e.sqlstate()), Some("HV024"));
}

#[tokio::test]
async fn updatable_false_refuses_writes() {
    orders("w_ro").await;
    let mut setup = Setup::new("w_ro", orders_columns());
    setup.server.push(("updatable".into(), "false".into()));
    let table = setup.open().await.expect("open");
    let rows = batch(vec![("amount", decimals(vec![Some(1)]))]);
    let e = table.insert(rows.clone(), &[], &ctx()).await.expect_err("read-only");
    assert_eq!(e.sqlstate(), "0A000");
    // The table option wins over the server's.
    setup.table.push(("updatable".into(), "true".into()));
    setup.open().await.expect("open").insert(rows, &[], &ctx()).await.expect("insert");
    assert_eq!(remote_rows("SELECT count(*)::text FROM w_ro").await, ["1"]);
}

#[tokio::test]
async fn every_declared_type_round_trips_through_insert() {
    exec(
        "DROP TABLE IF EXISTS w_types;
         CREATE TABLE w_types (id int4 PRIMARY KEY, b bool, i2 int2, i8 int8, f4 float4, f8 float8, t varchar(10),
             n numeric(10,3), by bytea, d date, tm time, ts timestamp, tz timestamptz, iv interval, u uuid, js json);",
    )
    .await;
    let table = Setup::new(
        "w_types",
        vec![
            col("id", DataType::Int32),
            col("b", DataType::Boolean),
            col("i2", DataType::Int16),
            col("i8", DataType::Int64),
            col("f4", DataType::Float32),
            col("f8", DataType::Float64),
            col("t", DataType::Utf8),
            col("n", DataType::Decimal128(10, 3)),
            col("by", DataType::Binary),
            col("d", DataType::Date32),
            col("tm", DataType::Time64(arrow_schema::TimeUnit::Microsecond)),
            col("ts", DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None)),
            col("tz", tz()),
            col("iv", DataType::Interval(arrow_schema::IntervalUnit::MonthDayNano)),
            col("u", DataType::FixedSizeBinary(16)),
            col("js", DataType::Utf8),
        ],
    )
    .open()
    .await
    .expect("open");
    use arrow_array::types::IntervalMonthDayNano;
    use arrow_array::{
        BinaryArray, BooleanArray, Date32Array, FixedSizeBinaryArray, Float32Array, Float64Array, Int16Array,
        IntervalMonthDayNanoArray, Time64MicrosecondArray, TimestampMicrosecondArray,
    };
    let ts = 1_700_000_000_123_456i64;
    let rows = batch(vec![
        ("id", Arc::new(Int32Array::from(vec![1, 2]))),
        ("b", Arc::new(BooleanArray::from(vec![Some(true), None]))),
        ("i2", Arc::new(Int16Array::from(vec![Some(-32768), None]))),
        ("i8", Arc::new(Int64Array::from(vec![Some(i64::MAX), None]))),
        ("f4", Arc::new(Float32Array::from(vec![Some(f32::NAN), None]))),
        ("f8", Arc::new(Float64Array::from(vec![Some(-0.1), Some(f64::INFINITY)]))),
        ("t", Arc::new(StringArray::from(vec![Some("x\\y'\"z"), None]))),
        (
            "n",
            Arc::new(Decimal128Array::from(vec![Some(-1_234_567), None]).with_precision_and_scale(10, 3).expect("d")),
        ),
        ("by", Arc::new(BinaryArray::from(vec![Some(&[0u8, 255, 39][..]), None]))),
        ("d", Arc::new(Date32Array::from(vec![Some(-1), Some(19_000)]))),
        ("tm", Arc::new(Time64MicrosecondArray::from(vec![Some(86_399_999_999), None]))),
        ("ts", Arc::new(TimestampMicrosecondArray::from(vec![Some(ts), None]))),
        ("tz", Arc::new(TimestampMicrosecondArray::from(vec![Some(ts), None]).with_timezone("+00:00"))),
        (
            "iv",
            Arc::new(IntervalMonthDayNanoArray::from(vec![
                Some(IntervalMonthDayNano::new(14, -3, 5_000_001_000)),
                None,
            ])),
        ),
        (
            "u",
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(vec![Some(UUID1), None].into_iter(), 16)
                    .expect("uuid"),
            ),
        ),
        ("js", Arc::new(StringArray::from(vec![Some("{\"a\": [1, 2]}"), None]))),
    ]);
    let columns: Vec<String> = rows.schema().fields().iter().map(|f| f.name().clone()).collect();
    let result = table.insert(rows.clone(), &columns, &ctx()).await.expect("insert");
    let returned = result.returning.expect("RETURNING");
    // What comes back is what went in, value for value (NaN compares equal in Arrow's eq).
    for (i, name) in columns.iter().enumerate() {
        assert_eq!(returned.column(i).to_data(), rows.column(i).to_data(), "column {name}");
    }
    assert_eq!(
        remote_rows("SELECT concat_ws('|', b, i2, i8, f4, f8, t, n, encode(by, 'hex'), d, tm, ts, tz AT TIME ZONE 'UTC', iv, u, js) FROM w_types WHERE id = 1").await,
        ["t|-32768|9223372036854775807|NaN|-0.1|x\\y'\"z|-1234.567|00ff27|1969-12-31|23:59:59.999999|2023-11-14 22:13:20.123456|2023-11-14 22:13:20.123456|1 year 2 mons -3 days +00:00:05.000001|a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|{\"a\": [1, 2]}"]
    );
}
