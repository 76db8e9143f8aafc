//! Writes: INSERT as POST with a nested body and RETURNING from the answer, UPDATE as PATCH or
//! PUT and DELETE on the row path, 404 as "no row", and tables that are not writable.

use std::sync::Arc;

use arrow_array::{ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde_json::json;

use crate::*;

fn item_setup(api: &Api, extra: &[(&str, &str)]) -> Setup {
    let mut table =
        vec![("path", "/v1/items"), ("writable", "true"), ("row_path", "/v1/items/{id}"), ("response_row", "item")];
    table.extend_from_slice(extra);
    Setup::new(
        api,
        &table,
        vec![
            col("id", DataType::Int64),
            col("name", DataType::Utf8),
            col("price", DataType::Decimal128(10, 2)),
            col_with("city", DataType::Utf8, &[("path", "address.city")]),
            col("created_at", tz()),
        ],
    )
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns.into_iter().map(|(_, a)| a).collect()).expect("batch")
}

fn price(values: &[Option<i128>]) -> ArrayRef {
    Arc::new(Decimal128Array::from(values.to_vec()).with_precision_and_scale(10, 2).expect("decimal"))
}

#[tokio::test]
async fn insert_posts_each_row_and_returns_what_the_api_answered() {
    let api = Api::start().await;
    let t = item_setup(&api, &[]).open().await.expect("open");
    assert_eq!(t.row_id_column(), Some("id"));
    let rows = batch(vec![
        ("name", Arc::new(StringArray::from(vec![Some("lamp"), Some("desk \"oak\"")])) as ArrayRef),
        ("price", price(&[Some(999), None])),
        ("city", Arc::new(StringArray::from(vec![Some("Oslo"), Some("Lima")]))),
    ]);
    let result =
        t.insert(rows, &columns(&["id", "name", "price", "city", "created_at"]), &ctx()).await.expect("insert");
    assert_eq!(result.rows_affected, 2);
    let returned = result.returning.expect("returning");
    assert_eq!(column_text(std::slice::from_ref(&returned), 0), ["1", "2"]);
    assert_eq!(column_text(std::slice::from_ref(&returned), 2), ["9.99", "NULL"]);
    assert_eq!(column_text(std::slice::from_ref(&returned), 4), ["1714521600000000"; 2]);
    assert_eq!(
        api.items(),
        [
            json!({"name": "lamp", "price": 9.99, "address": {"city": "Oslo"}, "id": 1, "created_at": "2024-05-01T00:00:00Z"}),
            json!({"name": "desk \"oak\"", "price": null, "address": {"city": "Lima"}, "id": 2, "created_at": "2024-05-01T00:00:00Z"}),
        ]
    );
    assert_eq!(api.take_log(), ["POST /v1/items", "POST /v1/items"]);
}

#[tokio::test]
async fn update_patches_and_delete_deletes_on_the_row_path() {
    let api = Api::start().await;
    let t = item_setup(&api, &[]).open().await.expect("open");
    let rows = batch(vec![("name", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef)]);
    t.insert(rows, &[], &ctx()).await.expect("insert");
    api.take_log();

    let changes = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![2, 99])) as ArrayRef),
        ("name", Arc::new(StringArray::from(vec!["b2", "ghost"]))),
    ]);
    let result = t.update(changes, &columns(&["id", "name"]), &ctx()).await.expect("update");
    // 99 does not exist: not affected, no row returned.
    assert_eq!(result.rows_affected, 1);
    let returned = result.returning.expect("returning");
    assert_eq!(
        (column_text(std::slice::from_ref(&returned), 0), column_text(&[returned], 1)),
        (vec!["2".into()], vec!["b2".into()])
    );
    assert_eq!(api.take_log(), ["PATCH /v1/items/2", "PATCH /v1/items/99"]);
    assert_eq!(api.items()[1]["name"], "b2");

    let put = item_setup(&api, &[("update_method", "PUT")]).open().await.expect("open");
    let changes = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
        ("name", Arc::new(StringArray::from(vec!["whole"]))),
    ]);
    put.update(changes, &[], &ctx()).await.expect("put");
    assert_eq!(api.items()[0], json!({"name": "whole", "id": 1}));
    assert_eq!(api.take_log(), ["PUT /v1/items/1"]);

    let ids = batch(vec![("id", Arc::new(Int64Array::from(vec![1, 7])) as ArrayRef)]);
    let e = t.delete(ids.clone(), &columns(&["id"]), &ctx()).await.expect_err("no body to return");
    assert_eq!(e.sqlstate(), "0A000");
    api.take_log();
    // Item 1 went with the refused RETURNING (the API acted before pgfed saw the empty answer).
    let result = t.delete(ids, &[], &ctx()).await.expect("delete");
    assert_eq!(result.rows_affected, 0);
    let ids = batch(vec![("id", Arc::new(Int64Array::from(vec![2])) as ArrayRef)]);
    assert_eq!(t.delete(ids, &[], &ctx()).await.expect("delete").rows_affected, 1);
    assert!(api.items().is_empty());
    assert_eq!(api.take_log(), ["DELETE /v1/items/1", "DELETE /v1/items/7", "DELETE /v1/items/2"]);
}

#[tokio::test]
async fn tables_are_read_only_unless_declared_writable() {
    let api = Api::start().await;
    let t = Setup::new(&api, &[("path", "/v1/items")], vec![col("id", DataType::Int64)]).open().await.expect("open");
    assert_eq!(t.row_id_column(), None);
    let rows = batch(vec![("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]);
    let e = t.insert(rows, &[], &ctx()).await.expect_err("read-only");
    assert_eq!(e.sqlstate(), "0A000");
    assert!(api.take_log().is_empty());

    // Option errors name the option, never its value.
    let e = Setup::new(&api, &[("path", "/v1/items/{nope}")], vec![col("id", DataType::Int64)])
        .open()
        .await
        .err()
        .expect("bad");
    assert_eq!(
        (e.sqlstate(), e.to_string().as_str()),
        ("HV024", "invalid value for option \"path\": a {placeholder} must name a declared column")
    );
    let e = Setup::new(
        &api,
        &[("path", "/v1/items"), ("writable", "true"), ("row_path", "/v1/items")],
        vec![col("id", DataType::Int64)],
    )
    .open()
    .await
    .err()
    .expect("bad");
    assert_eq!(e.sqlstate(), "HV024");
}
