//! Real client programs (tests/clients/federation) against foreign tables through pgfed: pgjdbc,
//! psycopg2, psycopg 3, asyncpg, SQLAlchemy 2.x and 1.4, psql. The Rust side builds the objects
//! (as `postgres`, through pgfed) and grants them to the client role; each program asserts its own
//! results, printing `ok: ...` per check and exiting non-zero on the first failure. Every
//! federated answer is compared with the same query on the remote table, read directly.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pgfed_testkit::{TestPg, TestProxy, repo_root, run_program};

/// The client role the programs log in as (SCRAM, so authentication is relayed for real).
const USER: &str = "pgfed_scram";
const PASSWORD: &str = "pw_scram";
const LIMIT: Duration = Duration::from_secs(300);
/// Rows in the remote table: enough for pgjdbc's fetchSize to take many round trips.
const ROWS: i32 = 10_000;

static NEXT: AtomicU32 = AtomicU32::new(0);

async fn start() -> TestProxy {
    TestProxy::start_server(
        |c| {
            let pg = TestPg::from_env();
            c.upstream.url = format!("postgres://postgres@{}:{}/{}?sslmode=disable", pg.host, pg.port, pg.db);
        },
        |server, v, shutdown| pgfed_federation::attach(server, v, shutdown).expect("federation").0,
    )
    .await
}

/// A schema of its own per test with:
/// - `items_remote`: the remote table (every type the Postgres connector carries), made directly;
/// - `items`: a foreign table over it on server `<schema>_srv`, with a PUBLIC user mapping;
/// - `tags`: a local table to join with;
/// - `slow`: a foreign table over a view whose every row sleeps, for cancel tests;
///
/// all readable by [`USER`]: SELECT on the tables, USAGE on the schema and on the server.
struct Fixture {
    schema: String,
}

impl Fixture {
    async fn new(proxy: &TestProxy) -> Self {
        let schema = format!("fedcl_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let pg = &proxy.pg;
        let direct = pg.superuser().await;
        direct
            .batch_execute(&format!(
                "CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.items_remote (
                     id int4 PRIMARY KEY, big int8, name text, code varchar(20), amount numeric(12,2),
                     ratio float8, flag bool, day date, ts timestamp, tstz timestamptz, uid uuid, doc jsonb);
                 INSERT INTO {schema}.items_remote
                   SELECT g, g::int8 * 1000000007, CASE WHEN g % 97 = 0 THEN NULL ELSE 'name ' || g END,
                          'c' || (g % 100), round(g * 1.37, 2), g / 7.0, g % 2 = 0,
                          date '2024-01-01' + g % 400, timestamp '2024-01-01 00:00:00.123456' + g * interval '61 seconds',
                          timestamptz '2024-03-30 12:00:00+00' + g * interval '17 minutes',
                          md5(g::text)::uuid, jsonb_build_object('g', g, 'even', g % 2 = 0, 's', 'ü' || g)
                   FROM generate_series(1, {ROWS}) g;
                 CREATE TABLE {schema}.tags (id int4, tag text);
                 INSERT INTO {schema}.tags SELECT g * 37, 'tag ' || g FROM generate_series(1, 400) g;
                 INSERT INTO {schema}.tags VALUES (NULL, 'no id'), (999999, 'no match');
                 CREATE VIEW {schema}.slow_v AS
                   SELECT g AS id, pg_sleep(0.01)::text AS s FROM generate_series(1, 100000) g;
                 GRANT USAGE ON SCHEMA {schema} TO {USER};
                 GRANT SELECT ON {schema}.items_remote, {schema}.tags TO {USER};"
            ))
            .await
            .expect("remote and local tables");
        let via = proxy.connect("postgres", None).await;
        via.batch_execute(&format!(
            "CREATE SERVER {schema}_srv FOREIGN DATA WRAPPER postgres OPTIONS (host '{}', port '{}', dbname '{}');
             CREATE USER MAPPING FOR PUBLIC SERVER {schema}_srv OPTIONS (user 'postgres');
             CREATE FOREIGN TABLE {schema}.items (
                 id int4 NOT NULL, big int8, name text, code varchar(20), amount numeric(12,2), ratio float8,
                 flag bool, day date, ts timestamp, tstz timestamptz, uid uuid, doc jsonb)
               SERVER {schema}_srv OPTIONS (schema_name '{schema}', table_name 'items_remote');
             CREATE FOREIGN TABLE {schema}.slow (id int4, s text)
               SERVER {schema}_srv OPTIONS (schema_name '{schema}', table_name 'slow_v');
             GRANT USAGE ON FOREIGN SERVER {schema}_srv TO {USER};
             GRANT SELECT ON {schema}.items, {schema}.slow TO {USER};",
            pg.host, pg.port, pg.db
        ))
        .await
        .expect("federation objects through pgfed");
        Fixture { schema }
    }

    /// What the programs read to find the objects.
    fn env(&self) -> Vec<(String, String)> {
        [
            ("PGFED_FED_SCHEMA", self.schema.clone()),
            ("PGFED_FED_TABLE", "items".into()),
            ("PGFED_FED_REMOTE", "items_remote".into()),
            ("PGFED_FED_LOCAL", "tags".into()),
            ("PGFED_FED_SLOW", "slow".into()),
            ("PGFED_FED_ROWS", ROWS.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Drops everything; only when the test passed, so a failure leaves the objects to look at.
    async fn drop(self, proxy: &TestProxy) {
        let via = proxy.connect("postgres", None).await;
        via.batch_execute(&format!("DROP SERVER {}_srv CASCADE", self.schema)).await.expect("drop server");
        let direct = proxy.pg.superuser().await;
        direct.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema)).await.expect("drop schema");
    }
}

fn program(rel: &str) -> String {
    repo_root().join("tests/clients/federation").join(rel).to_str().expect("utf-8 path").to_string()
}

/// Runs a client program through pgfed as [`USER`] with the fixture's names in its environment.
async fn run_client(proxy: &TestProxy, f: &Fixture, cmd: &str, args: &[&str]) -> String {
    let mut env = proxy.libpq_env(USER, PASSWORD);
    env.extend(f.env());
    let (ok, out, err) = run_program(cmd, args, &env, LIMIT).await;
    assert!(ok, "{cmd} {args:?} failed through pgfed\n--- stdout\n{out}\n--- stderr\n{err}");
    assert!(out.contains("ok: "), "{cmd} printed no checks:\n{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_metadata_prepared_statements_fetch_size_cancel_on_foreign_tables() {
    let proxy = start().await;
    let f = Fixture::new(&proxy).await;
    run_client(&proxy, &f, "bash", &[&program("run.sh")]).await;
    f.drop(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_drivers_and_sqlalchemy_2_inspector_on_foreign_tables() {
    let proxy = start().await;
    let f = Fixture::new(&proxy).await;
    let out = run_client(&proxy, &f, "python3", &[&program("test_federation.py")]).await;
    assert!(out.contains("ok: sqlalchemy 2."), "{out}");
    f.drop(&proxy).await;
}

/// The interpreter of the SQLAlchemy 1.4 virtualenv scripts/setup makes (in PGFED_SQLALCHEMY14_VENV,
/// default ~/.cache/pgfed-venvs/sqlalchemy14).
fn sqlalchemy14_python() -> String {
    let venv = std::env::var("PGFED_SQLALCHEMY14_VENV").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/pgfed-venvs/sqlalchemy14")
    });
    venv.join("bin/python").to_str().expect("utf-8 path").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_1_4_inspector_lists_foreign_tables() {
    let proxy = start().await;
    let f = Fixture::new(&proxy).await;
    let python = sqlalchemy14_python();
    let out = run_client(&proxy, &f, &python, &[&program("test_federation.py"), "--sqlalchemy-only"]).await;
    assert!(out.contains("ok: sqlalchemy 1.4"), "{out}");
    f.drop(&proxy).await;
}

/// Runs a psql script directly against Postgres with `src` = the remote table and through pgfed
/// with `src` = the foreign table; both must print exactly the same, on stdout and on stderr.
async fn psql_same_both_ways(proxy: &TestProxy, f: &Fixture, script: &str) -> String {
    let script = program(script);
    let run = |port: u16, src: &'static str| {
        let mut env = proxy.libpq_env(USER, PASSWORD);
        for (k, v) in &mut env {
            if k == "PGPORT" {
                *v = port.to_string();
            }
        }
        let vars = [format!("schema={}", f.schema), format!("src={src}")];
        let script = script.clone();
        async move {
            let args = ["-X", "-q", "-v", "ON_ERROR_STOP=0", "-v", &vars[0], "-v", &vars[1], "-f", &script];
            run_program("psql", &args, &env, LIMIT).await
        }
    };
    let (_, direct_out, direct_err) = run(proxy.pg.port, "items_remote").await;
    let (_, via_out, via_err) = run(proxy.addr.port(), "items").await;
    assert!(
        via_out == direct_out && via_err == direct_err,
        "psql {script} through pgfed printed something else than directly\nstdout: {}\nstderr: {}",
        difference(&via_out, &direct_out),
        difference(&via_err, &direct_err)
    );
    direct_out
}

/// psql's `\d` and `\dt` read the shadow, so they print exactly what a direct session prints; a
/// federated query prints what the same query on the remote table prints directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describes_and_queries_a_foreign_table_as_postgres_would() {
    let proxy = start().await;
    let f = Fixture::new(&proxy).await;
    let out = psql_same_both_ways(&proxy, &f, "session.sql").await;
    assert!(out.contains("Column") && out.contains("items_remote"), "{out}");
    assert!(out.lines().count() > 40, "the session printed little:\n{out}");
    f.drop(&proxy).await;
}

/// Reads pgfed may not answer yet (uuid expressions) and other ways a client reads a table than
/// `SELECT ... FROM`: `FROM ONLY`, `TABLE`, psql's
/// `\copy` (COPY TO STDOUT), `COPY (query)` and a cursor. Passed to Postgres unchanged they would
/// read the empty shadow table: each must give the foreign table's rows or be refused with an
/// error, never another answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_reads_of_a_foreign_table_are_answered_or_refused_never_wrong() {
    let proxy = start().await;
    let f = Fixture::new(&proxy).await;
    let s = &f.schema;
    let via = proxy.connect(USER, Some(PASSWORD)).await;
    let direct = tokio_postgres::connect(&proxy.pg.direct(USER, Some(PASSWORD)), tokio_postgres::NoTls)
        .await
        .map(|(c, conn)| {
            tokio::spawn(conn);
            c
        })
        .expect("direct connection");
    let reads = [
        ("SELECT count(*) FROM ONLY {t}", "SELECT count(*) FROM ONLY {s}.items_remote"),
        ("TABLE {t} ORDER BY id LIMIT 3", "TABLE {s}.items_remote ORDER BY id LIMIT 3"),
        ("SELECT count(*) FROM {t}*", "SELECT count(*) FROM {s}.items_remote*"),
        // uuid in expressions (not yet evaluated by pgfed: refused, never wrong).
        (
            "SELECT id, uid FROM {t} WHERE uid = md5('1234')::uuid",
            "SELECT id, uid FROM {s}.items_remote WHERE uid = md5('1234')::uuid",
        ),
        ("COPY {t} TO STDOUT", "COPY {s}.items_remote TO STDOUT"),
        (
            "COPY (SELECT id FROM {t} WHERE id <= 3) TO STDOUT",
            "COPY (SELECT id FROM {s}.items_remote WHERE id <= 3) TO STDOUT",
        ),
        (
            "BEGIN; DECLARE c CURSOR FOR SELECT id FROM {t} WHERE id <= 5 ORDER BY id; FETCH ALL FROM c; COMMIT",
            "BEGIN; DECLARE c CURSOR FOR SELECT id FROM {s}.items_remote WHERE id <= 5 ORDER BY id; FETCH ALL FROM c; COMMIT",
        ),
    ];
    let rows = |r: Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>| {
        r.map(|msgs| {
            msgs.into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect::<Vec<_>>())
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
    };
    async fn copy_out(c: &tokio_postgres::Client, sql: &str) -> Result<Vec<u8>, tokio_postgres::Error> {
        use futures_util::TryStreamExt;
        let chunks: Vec<bytes::Bytes> = c.copy_out(sql).await?.try_collect().await?;
        Ok(chunks.concat())
    }
    for (through, own) in reads {
        let through = through.replace("{t}", &format!("{s}.items")).replace("{s}", s);
        let own = own.replace("{s}", s);
        if through.starts_with("COPY") {
            let expected = copy_out(&direct, &own).await.expect("direct COPY");
            match copy_out(&via, &through).await {
                Ok(got) => assert_eq!(got, expected, "{through}"),
                Err(e) => {
                    let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
                    assert!(matches!(code.as_str(), "0A000" | "42601"), "{through}: refused with {code}: {e:?}");
                }
            }
            continue;
        }
        let expected = rows(direct.simple_query(&own).await).expect("direct answer");
        match rows(via.simple_query(&through).await) {
            Ok(got) => assert_eq!(got, expected, "{through}"),
            Err(e) => {
                let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
                assert!(matches!(code.as_str(), "0A000" | "42601"), "{through}: refused with {code}: {e:?}");
                let _ = via.simple_query("ROLLBACK").await;
            }
        }
    }
    f.drop(&proxy).await;
}

/// The first line where two outputs part, with a little context, for a readable failure.
fn difference(via: &str, direct: &str) -> String {
    if via == direct {
        return "same".into();
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (via.lines().collect(), direct.lines().collect());
    let at = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let from = at.saturating_sub(3);
    let show = |lines: &[&str]| lines.iter().skip(from).take(at - from + 6).copied().collect::<Vec<_>>().join("\n");
    format!("first difference at line {}\n--- through pgfed\n{}\n--- direct\n{}", at + 1, show(&a), show(&b))
}
