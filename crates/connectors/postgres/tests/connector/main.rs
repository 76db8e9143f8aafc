//! Integration tests against the private test cluster (`scripts/test`, or
//! `eval "$(scripts/pg-test-cluster start DIR)"`): one binary, modules by topic.

mod import;
mod scan;
mod tls;
mod write;
mod xact;

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, TimeUnit};
use futures_util::StreamExt;
use pgfed_connector_postgres::PostgresWrapper;
use pgfed_connector_sdk::{
    ConnectorError, ForeignTable, OpenRequest, OptionLevel, ScanContext, ScanRequest, Wrapper, validate_options,
};
use pgfed_testkit::TestPg;
use tokio_util::sync::CancellationToken;

pub const UUID1: [u8; 16] =
    [0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11];

pub async fn exec(sql: &str) {
    TestPg::from_env().superuser().await.batch_execute(sql).await.expect("setup SQL");
}

pub fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn server_opts(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let pg = TestPg::from_env();
    let mut o = opts(&[("host", &pg.host), ("port", &pg.port.to_string()), ("dbname", &pg.db)]);
    o.extend(opts(extra));
    o
}

pub struct Setup {
    pub server: Vec<(String, String)>,
    pub user_mapping: Vec<(String, String)>,
    pub table: Vec<(String, String)>,
    pub columns: Vec<(Field, Vec<(String, String)>)>,
}

impl Setup {
    pub fn new(table: &str, columns: Vec<(Field, Vec<(String, String)>)>) -> Self {
        Setup {
            server: server_opts(&[]),
            user_mapping: opts(&[("user", "postgres")]),
            table: opts(&[("table_name", table)]),
            columns,
        }
    }

    pub fn request(&self) -> Result<OpenRequest, ConnectorError> {
        let specs = PostgresWrapper.options();
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
        PostgresWrapper.open(self.request()?).await
    }
}

pub fn ctx() -> ScanContext {
    ScanContext { cancel: CancellationToken::new(), deadline: None, notices: Arc::new(|_| {}), user: "postgres".into() }
}

pub async fn scan(table: &dyn ForeignTable, request: ScanRequest) -> Result<Vec<RecordBatch>, ConnectorError> {
    let mut stream = table.scan(request, ctx()).await?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch?);
    }
    Ok(batches)
}

pub async fn scan_one(table: &dyn ForeignTable, request: ScanRequest) -> RecordBatch {
    let declared = table.schema();
    let fields: Vec<Field> =
        request.columns.iter().map(|c| declared.field_with_name(c).expect("declared column").clone()).collect();
    let batches = scan(table, request).await.expect("scan");
    // Every test result fits in one batch.
    assert!(batches.len() <= 1, "{} batches", batches.len());
    batches.first().cloned().unwrap_or_else(|| RecordBatch::new_empty(Arc::new(arrow_schema::Schema::new(fields))))
}

pub fn col(name: &str, data_type: DataType) -> (Field, Vec<(String, String)>) {
    (Field::new(name, data_type, true), vec![])
}

pub fn tz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}
