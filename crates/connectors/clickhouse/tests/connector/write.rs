//! Writes: INSERT as RowBinary with RETURNING, UPDATE and DELETE as waited-for mutations.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int64Type};
use arrow_array::{ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use pgfed_connector_sdk::ScanRequest;

use crate::*;

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let schema =
        Schema::new(columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect::<Vec<_>>());
    RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, a)| a).collect()).expect("batch")
}

#[tokio::test]
async fn insert_update_delete_round_trip() {
    if env().is_none() {
        return;
    }
    table("writes", "id Int64, name Nullable(String), amount Decimal(10, 2)", "").await;
    let mut setup = Setup::new(
        "writes",
        vec![col("id", DataType::Int64), col("name", DataType::Utf8), col("amount", DataType::Decimal128(10, 2))],
    );
    setup.table.push(("key".into(), "id".into()));
    let t = setup.open().await.expect("open");
    assert_eq!(t.row_id_column(), Some("id"));
    let amounts = Decimal128Array::from(vec![Some(150), None, Some(-1)]).with_precision_and_scale(10, 2).expect("dec");
    let rows = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        ("name", Arc::new(StringArray::from(vec![Some("it's \\"), None, Some("ü")]))),
        ("amount", Arc::new(amounts)),
    ]);
    // A NULL into a non-Nullable ClickHouse column is refused, not turned into 0.
    let e = t.insert(rows.clone(), &[], &ctx()).await.expect_err("NULL amount");
    assert_eq!(e.sqlstate(), "HV004", "{e}");
    let amounts = Decimal128Array::from(vec![150, 0, -1]).with_precision_and_scale(10, 2).expect("dec");
    let rows = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        ("name", Arc::new(StringArray::from(vec![Some("it's \\"), None, Some("ü")]))),
        ("amount", Arc::new(amounts)),
    ]);
    let all: Vec<String> = vec!["id".into(), "name".into(), "amount".into()];
    let r = t.insert(rows, &all, &ctx()).await.expect("insert");
    assert_eq!(r.rows_affected, 3);
    let back = r.returning.expect("returning");
    assert_eq!(back.column(1).as_string::<i32>().value(0), "it's \\");
    assert_eq!(
        ch("SELECT id, name, amount FROM pgfed_test.writes ORDER BY id").await,
        "1\tit\\'s \\\\\t1.50\n2\t\\N\t0.00\n3\tü\t-0.01\n"
    );

    let update = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![2, 3, 99])) as ArrayRef),
        ("name", Arc::new(StringArray::from(vec![Some("two"), Some("x'y"), None]))),
    ]);
    let r = t.update(update, &all, &ctx()).await.expect("update");
    assert_eq!(r.rows_affected, 2);
    assert_eq!(r.returning.expect("returning").num_rows(), 2);
    assert_eq!(ch("SELECT id, name FROM pgfed_test.writes ORDER BY id").await, "1\tit\\'s \\\\\n2\ttwo\n3\tx\\'y\n");

    let r = t
        .delete(batch(vec![("id", Arc::new(Int64Array::from(vec![1, 3])) as ArrayRef)]), &all, &ctx())
        .await
        .expect("delete");
    assert_eq!(r.rows_affected, 2);
    let gone = r.returning.expect("returning");
    assert_eq!(gone.column(0).as_primitive::<Int64Type>().values().to_vec().len(), 2);
    let left = scan_all(t.as_ref(), ScanRequest { columns: vec!["id".into(), "amount".into()], ..Default::default() })
        .await
        .expect("scan");
    assert_eq!(left.num_rows(), 1);
    assert_eq!(left.column(1).as_primitive::<Decimal128Type>().value(0), 0);
}

#[tokio::test]
async fn writes_without_key_or_out_of_range_fail_clearly() {
    if env().is_none() {
        return;
    }
    table("writes2", "id Int8, s String", "").await;
    let t =
        Setup::new("writes2", vec![col("id", DataType::Int16), col("s", DataType::Utf8)]).open().await.expect("open");
    let rows = batch(vec![("id", Arc::new(arrow_array::Int16Array::from(vec![300])) as ArrayRef)]);
    let e = t.insert(rows, &[], &ctx()).await.expect_err("300 into Int8");
    assert_eq!(e.sqlstate(), "HV004", "{e}");
    let e = t
        .delete(batch(vec![("id", Arc::new(arrow_array::Int16Array::from(vec![1])) as ArrayRef)]), &[], &ctx())
        .await
        .expect_err("no key");
    assert_eq!(e.sqlstate(), "HV00J", "{e}");
    assert_eq!(ch("SELECT count() FROM pgfed_test.writes2").await.trim(), "0");
}
