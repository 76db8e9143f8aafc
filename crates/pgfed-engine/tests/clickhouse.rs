//! Pushdown to ClickHouse checked against Postgres: the same rows in a ClickHouse table (the
//! ClickHouse test server, `scripts/clickhouse-test-server`) and a Postgres table (the private
//! test cluster), the same queries through pgfed and directly in Postgres, the same answers,
//! including where ClickHouse's semantics differ (NaN, NULLs, empty groups, escapes).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgfed_catalog::{ForeignColumn, ForeignTable, Server, Snapshot};
use pgfed_connector_clickhouse::ClickHouseWrapper;
use pgfed_connector_sdk::Wrapper;
use pgfed_encode::PgType;
use pgfed_engine::{CatalogAccess, Engine, EngineConfig, EngineError, Privilege, StatementContext};
use pgfed_session::{TokioPgSession, UpstreamSession};
use pgfed_testkit::TestPg;
use tokio_util::sync::CancellationToken;

/// The ClickHouse test server: url, user, password. Required: scripts/test starts it.
fn ch_env() -> (String, String, String) {
    let url = std::env::var("PGFED_TEST_CH_URL").expect(
        "PGFED_TEST_CH_URL is not set: run scripts/test, or eval \"$(scripts/clickhouse-test-server start DIR)\"",
    );
    let user = std::env::var("PGFED_TEST_CH_USER").unwrap_or_else(|_| "default".into());
    (url, user, std::env::var("PGFED_TEST_CH_PASSWORD").unwrap_or_default())
}

async fn ch(sql: &str) {
    let (url, user, password) = ch_env();
    let client = clickhouse::Client::default().with_url(url).with_user(user).with_password(password);
    let mut cursor = client.query_raw(sql).fetch_bytes("TabSeparated").expect("query");
    cursor.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

struct Mappings;

#[async_trait]
impl CatalogAccess for Mappings {
    async fn user_mapping(
        &self,
        _session: &dyn UpstreamSession,
        _server: &Server,
    ) -> Result<Vec<(String, String)>, EngineError> {
        let (_, user, password) = ch_env();
        Ok(vec![("user".into(), user), ("password".into(), password)])
    }

    async fn check_select(&self, _session: &dyn UpstreamSession, _table: &ForeignTable) -> Result<(), EngineError> {
        Ok(())
    }

    async fn check_privilege(
        &self,
        _session: &dyn UpstreamSession,
        _table: &ForeignTable,
        _privilege: &Privilege,
    ) -> Result<(), EngineError> {
        Ok(())
    }
}

fn column(name: &str, attnum: i16, pg_type: PgType) -> ForeignColumn {
    ForeignColumn {
        name: name.into(),
        attnum,
        pg_type,
        typmod: -1,
        type_name: String::new(),
        not_null: name == "id",
        options: Vec::new(),
    }
}

const REGIONS: [&str; 4] = ["a", "b", "c", "it's \\ odd"];

/// Row `i`: (id, region, v, d, n, ts) as SQL literals for (Postgres, ClickHouse).
fn row(i: i64) -> [(String, String); 6] {
    let region = REGIONS[(i % 4) as usize];
    let pg_text = format!("'{}'", region.replace('\'', "''"));
    let ch_text = pgfed_connector_clickhouse::quote_str(region);
    let v = if i % 13 == 0 {
        ("NULL".to_string(), "NULL".to_string())
    } else if i % 97 == 0 {
        ("'NaN'::float8".to_string(), "nan".to_string())
    } else {
        let v = format!("{}", i as f64 * 0.5);
        (v.clone(), v)
    };
    let d = format!("'2024-01-{:02}'", 1 + i % 28);
    let n = if i % 7 == 0 { "NULL".to_string() } else { (i % 11).to_string() };
    // ts: 2024-01-01 00:00:00 UTC plus i minutes (ClickHouse reads a number as epoch seconds).
    let ts = (format!("to_timestamp({})", 1_704_067_200 + i * 60), (1_704_067_200 + i * 60).to_string());
    [(i.to_string(), i.to_string()), (pg_text, ch_text), v, (d.clone(), d), (n.clone(), n), ts]
}

async fn setup(schema: &str) -> (TokioPgSession, Snapshot) {
    let rows: Vec<[(String, String); 6]> = (1..=2000).map(row).collect();
    let values = |ch: bool| -> String {
        rows.iter()
            .map(|r| {
                let vals: Vec<&str> = r.iter().map(|(p, c)| if ch { c.as_str() } else { p.as_str() }).collect();
                format!("({})", vals.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pg = TestPg::from_env().superuser().await;
    pg.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE TABLE {schema}.items_pg (id int NOT NULL, region text, v float8, d date, n int, ts timestamptz);
         INSERT INTO {schema}.items_pg VALUES {};",
        values(false)
    ))
    .await
    .expect("postgres setup");
    ch(&format!("DROP TABLE IF EXISTS default.{schema}")).await;
    ch(&format!(
        "CREATE TABLE default.{schema} (id Int32, region String, v Nullable(Float64), d Date, n Nullable(Int32), ts DateTime) \
         ENGINE = MergeTree ORDER BY id"
    ))
    .await;
    ch(&format!("INSERT INTO default.{schema} VALUES {}", values(true))).await;
    // A second table on the same server, for joins.
    let words: Vec<String> = (1..=12).map(|i| format!("({i}, 'w{}')", i % 5)).collect();
    ch(&format!("DROP TABLE IF EXISTS default.{schema}_r")).await;
    ch(&format!("CREATE TABLE default.{schema}_r (id Int32, w String) ENGINE = MergeTree ORDER BY id")).await;
    ch(&format!("INSERT INTO default.{schema}_r VALUES {}", words.join(", "))).await;
    pg.batch_execute(&format!(
        "CREATE TABLE {schema}.rtab_pg (id int NOT NULL, w text); INSERT INTO {schema}.rtab_pg VALUES {};",
        words.join(", ")
    ))
    .await
    .expect("postgres rtab");

    let (url, _, _) = ch_env();
    let mut s = Snapshot::default();
    s.servers.insert(
        "ch".into(),
        Server {
            name: "ch".into(),
            wrapper: "clickhouse".into(),
            options: vec![("url".into(), url), ("database".into(), "default".into())],
            owner: "postgres".into(),
        },
    );
    s.tables.insert(
        (schema.into(), "items".into()),
        ForeignTable {
            schema: schema.into(),
            name: "items".into(),
            shadow_oid: 910_000,
            server: "ch".into(),
            options: vec![("table".into(), schema.into())],
            columns: vec![
                column("id", 1, PgType::Int4),
                column("region", 2, PgType::Text),
                column("v", 3, PgType::Float8),
                column("d", 4, PgType::Date),
                column("n", 5, PgType::Int4),
                column("ts", 6, PgType::Timestamptz),
            ],
        },
    );
    s.tables.insert(
        (schema.into(), "rtab".into()),
        ForeignTable {
            schema: schema.into(),
            name: "rtab".into(),
            shadow_oid: 910_001,
            server: "ch".into(),
            options: vec![("table".into(), format!("{schema}_r"))],
            columns: vec![column("id", 1, PgType::Int4), column("w", 2, PgType::Text)],
        },
    );
    pg.batch_execute(&format!("SET search_path = {schema}, public")).await.expect("search_path");
    (TokioPgSession(pg), s)
}

struct Harness {
    engine: Arc<Engine>,
    upstream: Arc<TokioPgSession>,
    catalog: Arc<Snapshot>,
    schema: String,
}

impl Harness {
    async fn new(schema: &str) -> Self {
        let wrappers: Vec<Arc<dyn Wrapper>> = vec![Arc::new(ClickHouseWrapper)];
        let engine = Arc::new(Engine::new(EngineConfig::default(), wrappers).expect("engine"));
        let (upstream, catalog) = setup(schema).await;
        Harness { engine, upstream: Arc::new(upstream), catalog: Arc::new(catalog), schema: schema.into() }
    }

    fn ctx(&self) -> StatementContext {
        StatementContext {
            session: self.upstream.clone(),
            catalog: self.catalog.clone(),
            access: Arc::new(Mappings),
            user: "postgres".into(),
            search_path: vec![self.schema.clone(), "public".into()],
            time_zone: "UTC".into(),
            statement_timeout: None,
            require_pushdown: false,
            cancel: CancellationToken::new(),
            notices: Arc::new(|_| {}),
        }
    }

    async fn run(&self, sql: &str) -> Result<Vec<Vec<String>>, EngineError> {
        let prepared = self.engine.session().prepare(sql, &[], self.ctx()).await?;
        let mut stream = prepared.execute(&[]).await?;
        let mut rows = Vec::new();
        while let Some(batch) = stream.next().await {
            rows.extend(text_rows(&batch?));
        }
        Ok(rows)
    }

    async fn explain(&self, sql: &str) -> String {
        let rows = self.run(&format!("EXPLAIN {sql}")).await.expect("explain");
        rows.into_iter().map(|r| r.join("")).collect::<Vec<_>>().join("\n")
    }

    /// The query over `items_pg` in Postgres, every column cast to text.
    async fn direct(&self, sql: &str) -> Vec<Vec<String>> {
        let pg = TestPg::from_env().superuser().await;
        let sql = sql
            .replace("FROM items", &format!("FROM {}.items_pg", self.schema))
            .replace("JOIN rtab", &format!("JOIN {}.rtab_pg", self.schema));
        let wrapped = format!("SELECT * FROM ({sql}) q");
        let rows = pg.simple_query(&wrapped).await.unwrap_or_else(|e| panic!("{wrapped}: {e}"));
        rows.iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).unwrap_or("NULL").to_string()).collect())
                }
                _ => None,
            })
            .collect()
    }
}

fn text_rows(batch: &RecordBatch) -> Vec<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let fmts: Vec<ArrayFormatter> =
        batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).expect("formatter")).collect();
    (0..batch.num_rows()).map(|r| fmts.iter().map(|f| f.value(r).to_string()).collect()).collect()
}

#[tokio::test]
async fn pushed_queries_give_postgres_answers_on_clickhouse_data() {
    let h = Harness::new("pgfed_ch_push").await;
    // (query, must be one remote query)
    let cases: &[(&str, bool)] = &[
        // NaN is above every number in Postgres: v > 900 keeps the NaN rows.
        ("SELECT id FROM items WHERE v > 900.0 ORDER BY id", true),
        ("SELECT id FROM items WHERE v >= 990.0 AND n IS NOT NULL ORDER BY id DESC LIMIT 5 OFFSET 2", true),
        ("SELECT id FROM items WHERE v < 3.0 OR v IS NULL ORDER BY id LIMIT 20", true),
        // NOT over OR: DataFusion applies De Morgan (exact in three-valued logic), then pushed.
        ("SELECT count(*) FROM items WHERE NOT (v < 3.0 OR n = 2)", true),
        // NOT over IS DISTINCT FROM is not on the list: pgfed's.
        ("SELECT count(*) FROM items WHERE NOT (n IS DISTINCT FROM 3)", false),
        // Text ordering and arithmetic stay in pgfed.
        ("SELECT count(*) FROM items WHERE region > 'b' AND id * 2 > 100", false),
        // Escapes: a quote and a backslash in a text literal.
        ("SELECT count(*) FROM items WHERE region IN ('a', 'it''s \\ odd')", true),
        ("SELECT count(*) FROM items WHERE region = 'it''s \\ odd' AND id BETWEEN 100 AND 400", true),
        // Groups, NULL groups, aggregates of NULLs, HAVING, ORDER BY with NULLS FIRST.
        (
            "SELECT n, count(*), count(v), sum(id), min(d), max(id), count(DISTINCT region) FROM items \
             WHERE d BETWEEN '2024-01-05' AND '2024-01-20' GROUP BY n HAVING count(*) > 3 ORDER BY n NULLS FIRST",
            true,
        ),
        ("SELECT n, sum(n), count(DISTINCT n) FROM items WHERE n IS NULL GROUP BY n", true),
        ("SELECT count(DISTINCT n), count(n), count(*) FROM items WHERE id > 100000", true),
        // Aggregates of no rows are NULL in Postgres, 0 in ClickHouse: computed by pgfed.
        ("SELECT sum(n), min(id), max(d) FROM items WHERE id > 100000", false),
        ("SELECT d, count(*) FROM items GROUP BY d ORDER BY d DESC LIMIT 3", true),
        // date_trunc and extract in the session time zone (UTC here).
        ("SELECT date_trunc('day', ts), count(*), min(id) FROM items GROUP BY date_trunc('day', ts) ORDER BY 1", true),
        (
            "SELECT date_trunc('hour', ts) AS h, date_trunc('week', ts) AS w, date_trunc('month', ts) AS m, count(*) FROM items GROUP BY 1, 2, 3 ORDER BY 1 LIMIT 5",
            true,
        ),
        (
            "SELECT extract(hour FROM ts) AS h, extract(day FROM ts) AS d, count(*) FROM items WHERE extract(year FROM ts) = 2024 GROUP BY 1, 2 ORDER BY 2, 1 LIMIT 6",
            true,
        ),
        // A timestamptz literal against a DateTime column: an instant on both sides.
        (
            "SELECT n, count(*) FROM items WHERE ts >= timestamptz '2024-01-01 05:00:00+00' GROUP BY n ORDER BY n NULLS FIRST",
            true,
        ),
        // Functions with exact equivalents: coalesce, character length, substring from 1.
        (
            "SELECT coalesce(n, -1), count(*) FROM items WHERE length(region) > 1 GROUP BY coalesce(n, -1) ORDER BY 1",
            true,
        ),
        (
            "SELECT substring(region, 1, 4), count(*) FROM items GROUP BY substring(region, 1, 4) HAVING count(*) > 1 ORDER BY 1",
            true,
        ),
        ("SELECT id FROM items WHERE substring(region, 0, 3) = 'i' ORDER BY id LIMIT 3", false),
        // Inner joins of tables of the server are one query; NULL keys (n) match nothing.
        ("SELECT i.id, r.w FROM items i JOIN rtab r ON r.id = i.id WHERE i.n = 3 ORDER BY i.id", true),
        (
            "SELECT r.w, count(*), sum(i.id) FROM items i JOIN rtab r ON r.id = i.n GROUP BY r.w ORDER BY count(*), sum(i.id)",
            true,
        ),
        // Outer joins are pgfed's (ClickHouse fills the missing side with defaults).
        ("SELECT count(*), count(r.w) FROM items i LEFT JOIN rtab r ON r.id = i.n", false),
    ];
    for (sql, pushed) in cases {
        let got = h.run(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        // Arrow prints a UTC timestamp as 2024-01-01T00:00:00Z, Postgres as 2024-01-01 00:00:00+00.
        let got: Vec<Vec<String>> = got
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| match v.strip_suffix('Z') {
                        Some(t) if t.len() == 19 && t.as_bytes()[10] == b'T' => format!("{} {}+00", &t[..10], &t[11..]),
                        _ => v,
                    })
                    .collect()
            })
            .collect();
        let want = h.direct(sql).await;
        assert_eq!(got, want, "{sql}");
        let plan = h.explain(sql).await;
        let remote = plan.lines().filter(|l| l.contains("RemoteQuery")).count();
        // For scripts/check-clickhouse-sql-like checks against current ClickHouse (chDB).
        if let Ok(path) = std::env::var("PGFED_CH_ENGINE_SQL") {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("samples file");
            for line in plan.lines().filter_map(|l| l.split_once("Remote SQL: ").map(|(_, sql)| sql)) {
                writeln!(f, "{line}").expect("write sample");
            }
        }
        assert_eq!(remote >= 1, *pushed, "{sql}:\n{plan}");
        assert!(!plan.contains(&ch_env().2), "the password must not appear: {plan}");
    }
    let plan = h.explain("SELECT id FROM items WHERE v > 900.0 ORDER BY id").await;
    assert!(plan.contains("isNaN(`v`)"), "{plan}");
}
