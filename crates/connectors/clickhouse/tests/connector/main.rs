//! Integration tests against a real ClickHouse (`scripts/test`, or
//! `eval "$(scripts/clickhouse-test-server start DIR)"`): one binary, modules by topic. Without
//! PGFED_TEST_CH_URL the tests fail under CI=true and are skipped (with a message) otherwise.

mod scan;
mod write;

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use futures_util::StreamExt;
use pgfed_connector_clickhouse::ClickHouseWrapper;
use pgfed_connector_sdk::{
    ConnectorError, ForeignTable, OpenRequest, OptionLevel, ScanContext, ScanRequest, Wrapper, validate_options,
};
use tokio_util::sync::CancellationToken;

/// The test server's coordinates, or `None` (skip) outside CI.
pub fn env() -> Option<(String, String, String)> {
    match std::env::var("PGFED_TEST_CH_URL") {
        Ok(url) => Some((
            url,
            std::env::var("PGFED_TEST_CH_USER").unwrap_or_else(|_| "default".into()),
            std::env::var("PGFED_TEST_CH_PASSWORD").unwrap_or_default(),
        )),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PGFED_TEST_CH_URL is not set: run scripts/test (it starts scripts/clickhouse-test-server)")
        }
        Err(_) => {
            eprintln!("skipped: PGFED_TEST_CH_URL is not set (run scripts/test or scripts/clickhouse-test-server)");
            None
        }
    }
}

/// Runs SQL on the test server directly (setup and checks).
pub async fn ch(sql: &str) -> String {
    let (url, user, password) = env().expect("ClickHouse test server");
    let client = clickhouse::Client::default()
        .with_url(url)
        .with_user(user)
        .with_password(password)
        // 18.16 needs it for LowCardinality columns; newer servers ignore it.
        .with_setting("allow_experimental_low_cardinality_type", "1");
    let mut cursor = client.query_raw(sql).fetch_bytes("TabSeparated").expect("query");
    let bytes = cursor.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    String::from_utf8(bytes.to_vec()).expect("utf8")
}

pub fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub struct Setup {
    pub server: Vec<(String, String)>,
    pub user_mapping: Vec<(String, String)>,
    pub table: Vec<(String, String)>,
    pub columns: Vec<(Field, Vec<(String, String)>)>,
}

impl Setup {
    pub fn new(table: &str, columns: Vec<(Field, Vec<(String, String)>)>) -> Self {
        let (url, user, password) = env().expect("ClickHouse test server");
        Setup {
            server: opts(&[("url", &url), ("database", "pgfed_test")]),
            user_mapping: opts(&[("user", &user), ("password", &password)]),
            table: opts(&[("table", table)]),
            columns,
        }
    }

    pub fn request(&self) -> Result<OpenRequest, ConnectorError> {
        let specs = ClickHouseWrapper.options();
        Ok(OpenRequest {
            table_name: "local_table".into(),
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

    pub async fn open(&self) -> Result<Arc<dyn ForeignTable>, ConnectorError> {
        ClickHouseWrapper.open(self.request()?).await
    }
}

pub fn ctx() -> ScanContext {
    ScanContext { cancel: CancellationToken::new(), deadline: None, notices: Arc::new(|_| {}), user: "postgres".into() }
}

pub async fn collect(mut stream: pgfed_connector_sdk::BatchStream) -> Result<Vec<RecordBatch>, ConnectorError> {
    let mut batches = Vec::new();
    while let Some(b) = stream.next().await {
        batches.push(b?);
    }
    Ok(batches)
}

/// All rows of a scan in one batch.
pub async fn scan_all(table: &dyn ForeignTable, request: ScanRequest) -> Result<RecordBatch, ConnectorError> {
    let declared = table.schema();
    let fields: Vec<Field> =
        request.columns.iter().map(|c| declared.field_with_name(c).expect("declared column").clone()).collect();
    let schema = Arc::new(Schema::new(fields));
    let batches = collect(table.scan(request, ctx()).await?).await?;
    Ok(arrow_select::concat::concat_batches(&schema, &batches).expect("concat"))
}

pub fn col(name: &str, data_type: DataType) -> (Field, Vec<(String, String)>) {
    (Field::new(name, data_type, true), vec![])
}

pub fn tz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A fresh table in database pgfed_test (dropped first).
pub async fn table(name: &str, ddl: &str, rows: &str) {
    ch("CREATE DATABASE IF NOT EXISTS pgfed_test").await;
    ch(&format!("DROP TABLE IF EXISTS pgfed_test.{name}")).await;
    ch(&format!("CREATE TABLE pgfed_test.{name} ({ddl}) ENGINE = MergeTree ORDER BY tuple()")).await;
    if !rows.is_empty() {
        ch(&format!("INSERT INTO pgfed_test.{name} VALUES {rows}")).await;
    }
}
