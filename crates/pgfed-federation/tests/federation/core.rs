//! pgfed end to end: a real Postgres 15 (the private cluster `scripts/test` starts), pgfed in
//! process on port 0 with its federation attached, and tokio-postgres as the client. The foreign
//! `postgres` server points back at the same cluster, so every federated answer can be compared
//! with the same query run directly in Postgres.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pgfed_testkit::{TestPg, TestProxy};
use tokio_postgres::{Client, SimpleQueryMessage};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A unique name per test (tests share the cluster and run in parallel).
fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn start() -> TestProxy {
    TestProxy::start_server(
        |c| {
            let pg = TestPg::from_env();
            // A service user lets the catalog watcher run, as in production.
            c.upstream.url = format!("postgres://postgres@{}:{}/{}?sslmode=disable", pg.host, pg.port, pg.db);
        },
        |server, v, shutdown| pgfed_federation::attach(server, v, shutdown).expect("federation").0,
    )
    .await
}

/// A remote table `<name>_remote` with `rows` rows, a foreign table `<name>` over it on server
/// `<name>_srv`, and a local table `<name>_local`; all made through pgfed as `postgres`.
struct Fixture {
    name: String,
}

impl Fixture {
    async fn new(pg: &TestPg, via: &Client, rows: i32) -> Self {
        let name = unique("fx");
        let direct = pg.superuser().await;
        direct
            .batch_execute(&format!(
                "CREATE TABLE {name}_remote (id int PRIMARY KEY, name text, value float8, note text);
                 INSERT INTO {name}_remote SELECT g, 'n' || g, g * 1.5, CASE WHEN g % 7 = 0 THEN NULL ELSE 'x' || (g % 10) END
                   FROM generate_series(1, {rows}) g;
                 CREATE TABLE {name}_local (id int, tag text);
                 INSERT INTO {name}_local SELECT g * 10, 't' || g FROM generate_series(1, 50) g;"
            ))
            .await
            .expect("fixture data");
        via.batch_execute(&format!(
            "CREATE SERVER {name}_srv FOREIGN DATA WRAPPER postgres OPTIONS (host '{}', port '{}', dbname '{}');
             CREATE USER MAPPING FOR PUBLIC SERVER {name}_srv OPTIONS (user 'postgres');
             CREATE FOREIGN TABLE {name} (id int NOT NULL, name text, value float8, note text)
               SERVER {name}_srv OPTIONS (table_name '{name}_remote');",
            pg.host, pg.port, pg.db
        ))
        .await
        .expect("DDL through pgfed");
        Fixture { name }
    }
}

/// Rows as text, for comparing a federated answer with Postgres's own.
async fn rows(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect()
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

#[tokio::test]
async fn federated_answers_equal_postgres_own() {
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 2000).await;
    let direct = proxy.pg.superuser().await;
    let n = &f.name;
    // Each query through pgfed on the foreign table, and directly on the table behind it.
    let queries = [
        "SELECT id, name, value FROM {t} WHERE value > 2990 ORDER BY id",
        "SELECT count(*), sum(id), min(name), max(value) FROM {t}",
        "SELECT l.tag, r.name FROM {n}_local l JOIN {t} r ON r.id = l.id WHERE l.id <= 200 ORDER BY l.id",
        "SELECT note, count(*) FROM {t} GROUP BY note ORDER BY note NULLS FIRST",
        "SELECT id FROM {t} WHERE note IS NULL AND id < 50 ORDER BY id",
        "SELECT id FROM {t} WHERE id IN (3, 5, 8) OR name = 'n1999' ORDER BY id",
        "SELECT id FROM {t} WHERE id NOT IN (1, 2, 3) AND id < 6 ORDER BY 1",
        "SELECT coalesce(note, '-') AS n, count(*) FILTER (WHERE id % 2 = 0) FROM {t} GROUP BY 1 ORDER BY 1",
        "SELECT id, sum(value) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM {t} WHERE id <= 5 ORDER BY id",
        "WITH x AS (SELECT id FROM {t} WHERE id BETWEEN 10 AND 12) SELECT * FROM x ORDER BY id DESC",
        "SELECT id::text || '-' || name FROM {t} WHERE name ILIKE 'N19%' ORDER BY id LIMIT 3",
        "SELECT CASE WHEN id < 3 THEN 'low' ELSE 'high' END, count(*) FROM {t} WHERE id < 6 GROUP BY 1 ORDER BY 1",
        "SELECT l.id, r.id FROM {n}_local l LEFT JOIN {t} r ON r.id = l.id * 100 ORDER BY l.id LIMIT 30",
    ];
    for q in queries {
        let via = q.replace("{t}", n).replace("{n}", n);
        let own = q.replace("{t}", &format!("{n}_remote")).replace("{n}", n);
        assert_eq!(rows(&c, &via).await, rows(&direct, &own).await, "{via}");
    }
}

#[tokio::test]
async fn ddl_persists_and_a_new_instance_sees_it() {
    let first = start().await;
    let c = first.connect("postgres", None).await;
    let f = Fixture::new(&first.pg, &c, 10).await;
    drop(c);
    drop(first);
    let second = start().await;
    let c = second.connect("postgres", None).await;
    // The watcher loads the catalog at start; give it a moment.
    let mut last = None;
    for _ in 0..50 {
        match c.query_one(&format!("SELECT count(*) FROM {}", f.name), &[]).await {
            Ok(r) if r.get::<_, i64>(0) == 10 => return,
            other => last = Some(format!("{other:?}")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("second instance never answered from the foreign table: {last:?}");
}

#[tokio::test]
async fn catalog_objects_are_visible_to_catalog_queries() {
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 1).await;
    let cols = rows(
        &c,
        &format!(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = '{}' ORDER BY ordinal_position",
            f.name
        ),
    )
    .await;
    let expect = |a: &str, b: &str, n: &str| vec![Some(a.to_string()), Some(b.to_string()), Some(n.to_string())];
    assert_eq!(
        cols,
        vec![
            expect("id", "integer", "NO"),
            expect("name", "text", "YES"),
            expect("value", "double precision", "YES"),
            expect("note", "text", "YES")
        ]
    );
    let kind = rows(&c, &format!("SELECT relkind::text FROM pg_class WHERE relname = '{}'", f.name)).await;
    assert_eq!(kind, vec![vec![Some("r".to_string())]], "listed as a table by JDBC and SQLAlchemy");
}

#[tokio::test]
async fn a_federated_join_sees_the_transaction_s_uncommitted_rows() {
    let proxy = start().await;
    let mut c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 100).await;
    let n = &f.name;
    let tx = c.transaction().await.expect("begin");
    tx.execute(&format!("INSERT INTO {n}_local VALUES (7, 'mine')"), &[]).await.expect("insert");
    let got = tx
        .query(&format!("SELECT l.tag, r.name FROM {n}_local l JOIN {n} r USING (id) WHERE l.id < 10"), &[])
        .await
        .expect("join");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].get::<_, String>(0), "mine");
    assert_eq!(got[0].get::<_, String>(1), "n7");
    tx.rollback().await.expect("rollback");
    let after = c
        .query(&format!("SELECT count(*) FROM {n}_local l JOIN {n} r USING (id) WHERE l.id < 10"), &[])
        .await
        .expect("after");
    assert_eq!(after[0].get::<_, i64>(0), 0);
}

#[tokio::test]
async fn extended_protocol_with_parameters_and_prepared_statements() {
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 300).await;
    let stmt = c
        .prepare(&format!("SELECT id, name, value FROM {} WHERE id >= $1 AND name <> $2 ORDER BY id LIMIT $3", f.name))
        .await
        .expect("prepare");
    assert_eq!(
        stmt.params(),
        &[tokio_postgres::types::Type::INT4, tokio_postgres::types::Type::TEXT, tokio_postgres::types::Type::INT8]
    );
    assert_eq!(stmt.columns()[2].type_(), &tokio_postgres::types::Type::FLOAT8);
    for start in [1i32, 100, 299] {
        let got = c.query(&stmt, &[&start, &"n100", &3i64]).await.expect("execute");
        let ids: Vec<i32> = got.iter().map(|r| r.get(0)).collect();
        let want: Vec<i32> = (start..=300).filter(|i| *i != 100).take(3).collect();
        assert_eq!(ids, want);
        assert_eq!(got[0].get::<_, f64>(2), f64::from(ids[0]) * 1.5);
    }
}

#[tokio::test]
async fn row_limited_execute_suspends_the_portal() {
    let proxy = start().await;
    let mut c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 1000).await;
    let tx = c.transaction().await.expect("begin");
    let stmt = tx.prepare(&format!("SELECT id FROM {} ORDER BY id", f.name)).await.expect("prepare");
    let portal = tx.bind(&stmt, &[]).await.expect("bind");
    let mut seen = Vec::new();
    loop {
        let chunk = tx.query_portal(&portal, 300).await.expect("fetch");
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() <= 300);
        seen.extend(chunk.iter().map(|r| r.get::<_, i32>(0)));
    }
    assert_eq!(seen, (1..=1000).collect::<Vec<i32>>());
    tx.commit().await.expect("commit");
}

#[tokio::test]
async fn errors_keep_their_sqlstate_and_the_session_goes_on() {
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 10).await;
    let n = &f.name;
    // A missing local table: Postgres's own error, unchanged.
    let e = c.query(&format!("SELECT * FROM {n} JOIN no_such_table_x USING (id)"), &[]).await.expect_err("42P01");
    assert_eq!(code(&e), "42P01", "{e}");
    // Division by zero evaluated by pgfed.
    let e = c.query(&format!("SELECT 1 / (id - id) FROM {n}"), &[]).await.expect_err("22012");
    assert_eq!(code(&e), "22012", "{e}");
    // An aborted transaction refuses federated statements as Postgres refuses any.
    c.batch_execute("BEGIN").await.expect("begin");
    let _ = c.batch_execute("SELECT 1/0").await;
    let e = c.query(&format!("SELECT * FROM {n}"), &[]).await.expect_err("25P02");
    assert_eq!(code(&e), "25P02");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    // A pgfed error inside a transaction aborts it.
    c.batch_execute("BEGIN").await.expect("begin");
    let _ = c.query(&format!("SELECT 1 / (id - id) FROM {n}"), &[]).await.expect_err("22012");
    let e = c.batch_execute("SELECT 1").await.expect_err("aborted");
    assert_eq!(code(&e), "25P02");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(c.query_one(&format!("SELECT count(*) FROM {n}"), &[]).await.expect("usable").get::<_, i64>(0), 10);
}

#[tokio::test]
async fn privileges_on_the_shadow_decide_who_reads() {
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 5).await;
    let n = &f.name;
    let direct = proxy.pg.superuser().await;
    // A PUBLIC user mapping is usable by roles with USAGE on the server (docs/design/catalog.md).
    c.batch_execute(&format!("GRANT USAGE ON FOREIGN SERVER {n}_srv TO pgfed_trust")).await.expect("usage");
    let _ = direct;
    let user = proxy.connect("pgfed_trust", None).await;
    let e = user.query(&format!("SELECT * FROM {n}"), &[]).await.expect_err("no grant");
    assert_eq!(code(&e), "42501", "{e}");
    c.batch_execute(&format!("GRANT SELECT ON {n} TO pgfed_trust")).await.expect("grant");
    let got = user.query(&format!("SELECT count(*) FROM {n}"), &[]).await.expect("granted");
    assert_eq!(got[0].get::<_, i64>(0), 5);
    // The PUBLIC mapping's secret is the server owner's to read: pgfed_trust uses the mapping
    // (above) but sees no options of it, directly or through pgfed.
    c.batch_execute(&format!("ALTER USER MAPPING FOR PUBLIC SERVER {n}_srv OPTIONS (ADD password 'sekret-{n}')"))
        .await
        .expect("password");
    let seen = user
        .query("SELECT options::text FROM pgfed.user_mapping_options WHERE server = $1", &[&format!("{n}_srv")])
        .await
        .expect("read options");
    assert!(seen.is_empty(), "a USAGE holder reads the PUBLIC mapping's options: {seen:?}");
    let seen = c
        .query("SELECT options::text FROM pgfed.user_mapping_options WHERE server = $1", &[&format!("{n}_srv")])
        .await
        .expect("owner reads options");
    assert_eq!(seen.len(), 1, "the server's owner reads them");
    let got = user.query(&format!("SELECT count(*) FROM {n}"), &[]).await.expect("still usable");
    assert_eq!(got[0].get::<_, i64>(0), 5);
}

#[tokio::test]
async fn require_pushdown_refuses_full_remote_reads() {
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 5).await;
    let n = &f.name;
    c.batch_execute("SET pgfed.require_pushdown = on").await.expect("set");
    let e = c.query(&format!("SELECT * FROM {n}"), &[]).await.expect_err("full scan");
    assert_eq!(code(&e), "0A000", "{e:?}");
    let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
    assert!(msg.contains(n.as_str()), "{msg}");
    let filtered = c.query(&format!("SELECT * FROM {n} WHERE id = 2"), &[]).await;
    assert_eq!(filtered.map(|r| r.len()).map_err(|e| format!("{e:?}")), Ok(1));
    c.batch_execute("RESET pgfed.require_pushdown").await.expect("reset");
    assert_eq!(c.query(&format!("SELECT * FROM {n}"), &[]).await.expect("allowed").len(), 5);
}

#[tokio::test]
async fn explain_shows_the_remote_query() {
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 5).await;
    let plan: Vec<String> = rows(&c, &format!("EXPLAIN SELECT name FROM {} WHERE id = 3", f.name))
        .await
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    let text = plan.join("\n");
    assert!(text.contains("Remote SQL"), "{text}");
    assert!(text.contains(&format!("{}_remote", f.name)), "{text}");
    assert!(!text.to_lowercase().contains("password"), "{text}");
}

#[tokio::test]
async fn a_name_that_resolves_to_a_local_table_goes_upstream() {
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 5).await;
    let schema = unique("other");
    // Same name as the foreign table, in a schema that comes first on this session's path.
    c.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.{} (x int); INSERT INTO {schema}.{} VALUES (42);
         SET search_path = {schema}, public",
        f.name, f.name
    ))
    .await
    .expect("setup");
    let got = c.query(&format!("SELECT x FROM {}", f.name), &[]).await.expect("local table");
    assert_eq!(got[0].get::<_, i32>(0), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_a_federated_statement() {
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 5).await;
    let direct = proxy.pg.superuser().await;
    let slow = format!("{}_slow", f.name);
    direct
        .batch_execute(&format!(
            "CREATE VIEW {slow}_v AS SELECT g AS id, pg_sleep(0.01)::text AS s FROM generate_series(1, 100000) g"
        ))
        .await
        .expect("slow view");
    c.batch_execute(&format!(
        "CREATE FOREIGN TABLE {slow} (id int, s text) SERVER {}_srv OPTIONS (table_name '{slow}_v')",
        f.name
    ))
    .await
    .expect("foreign slow");
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let started = std::time::Instant::now();
    let e = match c.query(&format!("SELECT count(s) FROM {slow}"), &[]).await {
        Ok(rows) => panic!(
            "not cancelled after {:?}: count = {:?}",
            started.elapsed(),
            rows.first().map(|r| r.get::<_, i64>(0))
        ),
        Err(e) => e,
    };
    assert_eq!(code(&e), "57014", "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    canceller.await.expect("join").expect("cancel sent");
    assert_eq!(c.query_one("SELECT 1", &[]).await.expect("usable").get::<_, i32>(0), 1);
}

#[tokio::test]
async fn statement_timeout_stops_a_federated_statement() {
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 5).await;
    let direct = proxy.pg.superuser().await;
    let slow = format!("{}_slow", f.name);
    direct
        .batch_execute(&format!(
            "CREATE VIEW {slow}_v AS SELECT g AS id, pg_sleep(0.01)::text AS s FROM generate_series(1, 100000) g"
        ))
        .await
        .expect("slow view");
    c.batch_execute(&format!(
        "CREATE FOREIGN TABLE {slow} (id int, s text) SERVER {}_srv OPTIONS (table_name '{slow}_v'); SET statement_timeout = '300ms'",
        f.name
    ))
    .await
    .expect("foreign slow");
    let started = std::time::Instant::now();
    let e = c.query(&format!("SELECT count(s) FROM {slow}"), &[]).await.expect_err("timeout");
    assert_eq!(code(&e), "57014", "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn unsupported_sql_names_the_construct() {
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 5).await;
    let e = c.query(&format!("SELECT * FROM {} TABLESAMPLE SYSTEM (10)", f.name), &[]).await.expect_err("unsupported");
    assert!(matches!(code(&e).as_str(), "0A000" | "42601"), "{e}");
}

#[tokio::test]
async fn a_script_with_schema_ddl_before_sql_med_ddl_runs_in_order() {
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let f = Fixture::new(&proxy.pg, &c, 5).await;
    let n = &f.name;
    // One simple Query: Postgres's own DDL first, then pgfed's (a migration script).
    c.batch_execute(&format!(
        "CREATE SCHEMA {n}_imp; IMPORT FOREIGN SCHEMA public LIMIT TO ({n}_remote) FROM SERVER {n}_srv INTO {n}_imp"
    ))
    .await
    .expect("script");
    let got = c.query_one(&format!("SELECT count(*) FROM {n}_imp.{n}_remote"), &[]).await.expect("imported");
    assert_eq!(got.get::<_, i64>(0), 5);
}
