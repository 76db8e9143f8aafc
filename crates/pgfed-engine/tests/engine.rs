//! The engine against the private test cluster (`eval "$(scripts/pg-test-cluster start DIR)"`):
//! foreign tables are `postgres` connector tables pointing at real tables of the same cluster,
//! local tables are read through a `TokioPgSession`. Each test uses its own schema.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgfed_catalog::{ForeignColumn, ForeignTable, Server, Snapshot};
use pgfed_connector_postgres::PostgresWrapper;
use pgfed_connector_sdk::{Notice, Wrapper};
use pgfed_encode::PgType;
use pgfed_engine::{CatalogAccess, Engine, EngineConfig, EngineError, EngineSession, Param, StatementContext};
use pgfed_session::{TokioPgSession, UpstreamSession};
use pgfed_testkit::TestPg;
use tokio_util::sync::CancellationToken;

/// The user mappings of these tests: the cluster's superuser, as a DBA would configure it.
struct Mappings;

#[async_trait]
impl CatalogAccess for Mappings {
    async fn user_mapping(
        &self,
        _session: &dyn UpstreamSession,
        _server: &Server,
    ) -> Result<Vec<(String, String)>, EngineError> {
        Ok(vec![("user".into(), "postgres".into())])
    }

    async fn check_select(&self, _session: &dyn UpstreamSession, _table: &ForeignTable) -> Result<(), EngineError> {
        Ok(())
    }
}

async fn exec(sql: &str) {
    TestPg::from_env().superuser().await.batch_execute(sql).await.expect("setup SQL");
}

fn engine() -> Arc<Engine> {
    let wrappers: Vec<Arc<dyn Wrapper>> = vec![Arc::new(PostgresWrapper)];
    Arc::new(Engine::new(EngineConfig::default(), wrappers).expect("engine"))
}

fn column(name: &str, attnum: i16, pg_type: PgType, typmod: i32) -> ForeignColumn {
    ForeignColumn {
        name: name.into(),
        attnum,
        pg_type,
        typmod,
        type_name: String::new(),
        not_null: false,
        options: Vec::new(),
    }
}

/// A snapshot with one server pointing at the test cluster and the given foreign tables, each
/// `(local schema, local name, remote table in the same schema, columns)`.
fn snapshot(tables: Vec<(&str, &str, &str, Vec<ForeignColumn>)>) -> Snapshot {
    let pg = TestPg::from_env();
    let mut s = Snapshot::default();
    s.servers.insert(
        "loop".into(),
        Server {
            name: "loop".into(),
            wrapper: "postgres".into(),
            options: vec![
                ("host".into(), pg.host.clone()),
                ("port".into(), pg.port.to_string()),
                ("dbname".into(), pg.db.clone()),
            ],
            owner: "postgres".into(),
        },
    );
    for (i, (schema, name, remote, columns)) in tables.into_iter().enumerate() {
        s.tables.insert(
            (schema.into(), name.into()),
            ForeignTable {
                schema: schema.into(),
                name: name.into(),
                shadow_oid: 900_000 + i as u32,
                server: "loop".into(),
                options: vec![("schema_name".into(), schema.into()), ("table_name".into(), remote.into())],
                columns,
            },
        );
    }
    s
}

struct Harness {
    session: EngineSession,
    upstream: Arc<TokioPgSession>,
    catalog: Arc<Snapshot>,
    notices: Arc<Mutex<Vec<Notice>>>,
}

impl Harness {
    async fn new(schema: &str, catalog: Snapshot) -> Self {
        let client = TestPg::from_env().superuser().await;
        client.batch_execute(&format!("SET search_path = {schema}, public")).await.expect("search_path");
        Harness {
            session: engine().session(),
            upstream: Arc::new(TokioPgSession(client)),
            catalog: Arc::new(catalog),
            notices: Arc::default(),
        }
    }

    fn ctx(&self, schema: &str) -> StatementContext {
        let notices = self.notices.clone();
        StatementContext {
            session: self.upstream.clone(),
            catalog: self.catalog.clone(),
            access: Arc::new(Mappings),
            user: "postgres".into(),
            search_path: vec![schema.into(), "public".into()],
            time_zone: "UTC".into(),
            statement_timeout: None,
            require_pushdown: false,
            cancel: CancellationToken::new(),
            notices: Arc::new(move |n| notices.lock().expect("notices").push(n)),
        }
    }

    async fn run_with(
        &self,
        sql: &str,
        params: &[Param],
        ctx: StatementContext,
    ) -> Result<Vec<Vec<String>>, EngineError> {
        let prepared = self.session.prepare(sql, &[], ctx).await?;
        let mut stream = prepared.execute(params).await?;
        let mut rows = Vec::new();
        while let Some(batch) = stream.next().await {
            rows.extend(text_rows(&batch?));
        }
        Ok(rows)
    }

    async fn run(&self, schema: &str, sql: &str) -> Result<Vec<Vec<String>>, EngineError> {
        self.run_with(sql, &[], self.ctx(schema)).await
    }

    async fn explain(&self, schema: &str, sql: &str) -> String {
        let rows = self.run(schema, &format!("EXPLAIN {sql}")).await.expect("explain");
        rows.into_iter().map(|r| r.join("")).collect::<Vec<_>>().join("\n")
    }
}

fn text_rows(batch: &RecordBatch) -> Vec<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let fmts: Vec<ArrayFormatter> =
        batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).expect("formatter")).collect();
    (0..batch.num_rows()).map(|r| fmts.iter().map(|f| f.value(r).to_string()).collect()).collect()
}

/// The same query run directly in Postgres, every value as text through `::text` casts written
/// by the caller.
async fn direct(sql: &str) -> Vec<Vec<String>> {
    let client = TestPg::from_env().superuser().await;
    client
        .query(sql, &[])
        .await
        .expect("direct query")
        .iter()
        .map(|r| (0..r.len()).map(|i| r.get::<_, Option<String>>(i).unwrap_or_else(|| "NULL".into())).collect())
        .collect()
}

const ORDERS: &str = "
    CREATE TABLE {s}.customers (id int PRIMARY KEY, name text, region text);
    CREATE TABLE {s}.orders_remote (id bigint PRIMARY KEY, customer_id int, amount numeric(10,2), note text);
    INSERT INTO {s}.customers SELECT g, 'customer ' || g, CASE WHEN g % 3 = 0 THEN 'north' ELSE 'south' END
        FROM generate_series(1, 50) g;
    INSERT INTO {s}.orders_remote SELECT g, 1 + g % 60, (g * 7 % 1000) / 4.0, CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g END
        FROM generate_series(1, 400) g;
";

fn orders_columns() -> Vec<ForeignColumn> {
    vec![
        column("id", 1, PgType::Int8, -1),
        column("customer_id", 2, PgType::Int4, -1),
        column("amount", 3, PgType::Numeric, PgType::numeric_typmod(10, 2)),
        column("note", 4, PgType::Text, -1),
    ]
}

async fn orders_setup(schema: &str) -> Harness {
    exec(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};")).await;
    exec(&ORDERS.replace("{s}", schema)).await;
    Harness::new(schema, snapshot(vec![(schema, "orders", "orders_remote", orders_columns())])).await
}

#[tokio::test]
async fn foreign_scan_pushes_filters_and_returns_the_rows() {
    let s = "eng_scan";
    let h = orders_setup(s).await;
    let rows = h
        .run(s, "SELECT id, amount, note FROM orders WHERE customer_id = 7 AND id < 200 ORDER BY id")
        .await
        .expect("query");
    let want = direct(&format!(
        "SELECT id::text, amount::text, coalesce(note, 'NULL') FROM {s}.orders_remote o WHERE customer_id = 7 AND id < 200 ORDER BY o.id"
    ))
    .await;
    assert_eq!(rows, want);
    let plan = h.explain(s, "SELECT id FROM orders WHERE customer_id = 7 AND 200 > id").await;
    assert!(plan.contains("ForeignScan: eng_scan.orders"), "{plan}");
    assert!(plan.contains("customer_id = 7") && plan.contains("id < 200"), "{plan}");
    assert!(!plan.contains("FilterExec"), "filters are exact, pgfed does not re-check: {plan}");
}

#[tokio::test]
async fn cross_source_join_matches_postgres_row_for_row() {
    let s = "eng_join";
    let h = orders_setup(s).await;
    let sql = "SELECT c.name, o.id, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id \
               WHERE c.region = 'north' AND o.amount > 50 ORDER BY o.id";
    let rows = h.run(s, sql).await.expect("join");
    let want = direct(&format!(
        "SELECT c.name, o.id::text, o.amount::text FROM {s}.customers c JOIN {s}.orders_remote o ON o.customer_id = c.id \
         WHERE c.region = 'north' AND o.amount > 50 ORDER BY o.id"
    ))
    .await;
    assert!(!want.is_empty());
    assert_eq!(rows, want);

    let agg = "SELECT c.region, count(*), sum(o.amount) FROM customers c LEFT JOIN orders o ON o.customer_id = c.id \
               GROUP BY c.region ORDER BY c.region";
    let rows = h.run(s, agg).await.expect("aggregate");
    let want = direct(&format!(
        "SELECT c.region, count(*)::text, sum(o.amount)::text FROM {s}.customers c LEFT JOIN {s}.orders_remote o \
         ON o.customer_id = c.id GROUP BY c.region ORDER BY c.region"
    ))
    .await;
    assert_eq!(rows, want);
}
