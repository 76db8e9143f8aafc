//! The catalog against the private Postgres 15 cluster (see docs/testing.md), through
//! `TokioPgSession` standing in for the client's upstream session. Every test uses its own
//! servers, schemas and roles, so tests run in parallel on one cluster.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::SinkExt;
use pgfed_catalog::ddl::{self, Ddl};
use pgfed_catalog::{
    CatalogError, Privilege, Registry, Route, Snapshot, Watcher, bootstrap, bootstrap_sql, check_privilege,
    execute_ddl, quote, route, user_mapping,
};
use pgfed_connector_postgres::PostgresWrapper;
use pgfed_connector_sdk::{Notice, ScanContext, Wrapper};
use pgfed_encode::PgType;
use pgfed_session::{TokioPgSession, UpstreamSession};
use pgfed_testkit::TestPg;
use tokio_util::sync::CancellationToken;

static COUNTER: AtomicU32 = AtomicU32::new(0);
static BOOTSTRAPPED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// A name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
    format!("{prefix}_{}_{n}_{}", std::process::id(), nanos % 100_000)
}

fn registry() -> Registry {
    Registry::new([Arc::new(PostgresWrapper) as Arc<dyn Wrapper>])
}

struct Notices(Arc<Mutex<Vec<Notice>>>);

impl Notices {
    fn messages(&self) -> Vec<String> {
        self.0.lock().expect("lock").iter().map(|n| n.message.clone()).collect()
    }
}

fn context(user: &str) -> (ScanContext, Notices) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let ctx = ScanContext {
        cancel: CancellationToken::new(),
        deadline: None,
        notices: Arc::new(move |n| sink.lock().expect("lock").push(n)),
        user: user.to_string(),
    };
    (ctx, Notices(seen))
}

/// The cluster, with the catalog bootstrapped once per test binary (by the superuser, as an
/// administrator would).
async fn pg() -> TestPg {
    let pg = TestPg::from_env();
    BOOTSTRAPPED
        .get_or_init(|| async {
            let s = TokioPgSession(pg.superuser().await);
            // In one transaction, so the script's advisory lock serializes concurrent runs.
            s.0.batch_execute("BEGIN").await.expect("begin");
            bootstrap(&s).await.expect("bootstrap");
            s.0.batch_execute("COMMIT").await.expect("commit");
        })
        .await;
    pg
}

async fn superuser(pg: &TestPg) -> TokioPgSession {
    TokioPgSession(pg.superuser().await)
}

/// A superuser connection acting as `role` (SET ROLE: privileges, RLS and current_user are the
/// role's).
async fn as_role(pg: &TestPg, role: &str) -> TokioPgSession {
    let client = pg.superuser().await;
    client.batch_execute(&format!("SET ROLE {}", quote::ident(role))).await.expect("set role");
    TokioPgSession(client)
}

async fn sql(s: &TokioPgSession, sql: &str) {
    s.0.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn new_role(pg: &TestPg, prefix: &str) -> String {
    let role = unique(prefix);
    sql(&superuser(pg).await, &format!("CREATE ROLE {} NOLOGIN", quote::ident(&role))).await;
    role
}

fn parse(text: &str) -> Ddl {
    match ddl::parse(text) {
        Some(Ok(d)) => d,
        other => panic!("{text}: {other:?}"),
    }
}

/// Runs one DDL statement as the proxy does outside a transaction block: one transaction that
/// commits on success and rolls back on error.
async fn run_with(s: &TokioPgSession, text: &str, registry: &Registry) -> (Result<String, CatalogError>, Notices) {
    let user = s.query_text("SELECT current_user::text", &[]).await.expect("current_user")[0][0].clone();
    let (ctx, notices) = context(&user.unwrap_or_default());
    let ddl = parse(text);
    sql(s, "BEGIN").await;
    let result = execute_ddl(s, registry, &ddl, &ctx).await;
    sql(s, if result.is_ok() { "COMMIT" } else { "ROLLBACK" }).await;
    (result, notices)
}

async fn run(s: &TokioPgSession, text: &str) -> Result<String, CatalogError> {
    run_with(s, text, &registry()).await.0
}

async fn run_ok(s: &TokioPgSession, text: &str) -> String {
    run(s, text).await.unwrap_or_else(|e| panic!("{text}: {e} ({})", e.sqlstate()))
}

async fn run_err(s: &TokioPgSession, text: &str) -> CatalogError {
    match run(s, text).await {
        Ok(tag) => panic!("{text}: expected an error, got {tag}"),
        Err(e) => e,
    }
}

async fn load(pg: &TestPg) -> Snapshot {
    Snapshot::load(&superuser(pg).await).await.expect("load")
}

async fn one(s: &TokioPgSession, query: &str) -> Option<String> {
    let rows = s.query_text(query, &[]).await.unwrap_or_else(|e| panic!("{query}: {e}"));
    rows.into_iter().next().and_then(|r| r.into_iter().next().flatten())
}

fn server_sql(name: &str) -> String {
    format!("CREATE SERVER {name} FOREIGN DATA WRAPPER postgres OPTIONS (host 'localhost', port '5432')")
}

#[tokio::test]
async fn server_ddl_round_trips_and_persists() {
    let pg = pg().await;
    let s = superuser(&pg).await;
    let srv = unique("srv");
    assert_eq!(run_ok(&s, &server_sql(&srv)).await, "CREATE SERVER");
    let e = run_err(&s, &server_sql(&srv)).await;
    assert_eq!((e.sqlstate(), e.to_string()), ("42710", format!("server \"{srv}\" already exists")));
    let (r, notices) =
        run_with(&s, &server_sql(&srv).replace("CREATE SERVER", "CREATE SERVER IF NOT EXISTS"), &registry()).await;
    assert_eq!(r.expect("if not exists"), "CREATE SERVER");
    assert_eq!(notices.messages(), [format!("server \"{srv}\" already exists, skipping")]);

    // A new session sees it.
    let snapshot = load(&pg).await;
    let server = snapshot.server(&srv).expect("server loaded");
    assert_eq!(server.wrapper, "postgres");
    assert_eq!(server.owner, "postgres");
    assert_eq!(server.options, [("host".to_string(), "localhost".to_string()), ("port".into(), "5432".into())]);

    // Option changes follow Postgres's ADD/SET/DROP rules and are validated as a whole.
    let e = run_err(&s, &format!("ALTER SERVER {srv} OPTIONS (DROP host)")).await;
    assert_eq!((e.sqlstate(), e.to_string()), ("HV00J", "option \"host\" is required for server".to_string()));
    let e = run_err(&s, &format!("ALTER SERVER {srv} OPTIONS (SET nosuch 'x')")).await;
    assert_eq!((e.sqlstate(), e.to_string()), ("42704", "option \"nosuch\" not found".to_string()));
    let e = run_err(&s, &format!("ALTER SERVER {srv} OPTIONS (ADD port '1')")).await;
    assert_eq!(e.sqlstate(), "42710");
    run_ok(&s, &format!("ALTER SERVER {srv} VERSION '2' OPTIONS (SET port '5433', ADD dbname 'd')")).await;
    let server = load(&pg).await.servers.remove(&srv).expect("server");
    assert_eq!(
        server.options,
        [("dbname".to_string(), "d".to_string()), ("host".into(), "localhost".into()), ("port".into(), "5433".into())]
    );
    assert_eq!(
        one(&s, &format!("SELECT server_version FROM pgfed.servers WHERE name = '{srv}'")).await.as_deref(),
        Some("2")
    );

    let renamed = unique("srv");
    run_ok(&s, &format!("ALTER SERVER {srv} RENAME TO {renamed}")).await;
    let role = new_role(&pg, "owner").await;
    sql(&s, &format!("GRANT INSERT ON pgfed.servers TO {role}")).await;
    assert_eq!(run_ok(&s, &format!("ALTER SERVER {renamed} OWNER TO {role}")).await, "ALTER SERVER");
    let snapshot = load(&pg).await;
    assert!(snapshot.server(&srv).is_none());
    assert_eq!(snapshot.server(&renamed).expect("renamed").owner, role);

    assert_eq!(run_ok(&s, &format!("DROP SERVER {renamed}")).await, "DROP SERVER");
    let e = run_err(&s, &format!("DROP SERVER {renamed}")).await;
    assert_eq!((e.sqlstate(), e.to_string()), ("42704", format!("server \"{renamed}\" does not exist")));
    let (r, notices) = run_with(&s, &format!("DROP SERVER IF EXISTS {renamed}"), &registry()).await;
    r.expect("if exists");
    assert_eq!(notices.messages(), [format!("server \"{renamed}\" does not exist, skipping")]);
    assert!(load(&pg).await.server(&renamed).is_none());
}

#[tokio::test]
async fn unknown_wrappers_and_options_are_refused_listing_the_valid_ones() {
    let pg = pg().await;
    let s = superuser(&pg).await;
    let srv = unique("srv");
    let ddl = parse(&format!("CREATE SERVER {srv} FOREIGN DATA WRAPPER nosuch"));
    // Neither pgfed nor Postgres has it: pgfed answers, listing its wrappers.
    assert_eq!(route(&s, &registry(), &ddl).await.expect("route"), Route::Pgfed);
    let e = run_err(&s, &format!("CREATE SERVER {srv} FOREIGN DATA WRAPPER nosuch")).await;
    assert_eq!((e.sqlstate(), e.to_string().as_str()), ("42704", "foreign-data wrapper \"nosuch\" does not exist"));
    assert_eq!(e.hint().as_deref(), Some("The foreign data wrappers pgfed offers are: postgres."));

    let e = run_err(&s, &format!("CREATE SERVER {srv} FOREIGN DATA WRAPPER postgres OPTIONS (hots 'h')")).await;
    assert_eq!((e.sqlstate(), e.to_string().as_str()), ("HV00D", "invalid option \"hots\" for server"));
    let hint = e.hint().expect("hint");
    assert!(hint.starts_with("Valid options in this context are: host, port, dbname"), "{hint}");
    let e = run_err(&s, &format!("CREATE SERVER {srv} FOREIGN DATA WRAPPER postgres OPTIONS (port '1')")).await;
    assert_eq!((e.sqlstate(), e.to_string().as_str()), ("HV00J", "option \"host\" is required for server"));

    run_ok(&s, &server_sql(&srv)).await;
    let secret = "S3cr3t-value-never-shown";
    let e = run_err(
        &s,
        &format!("CREATE USER MAPPING FOR CURRENT_USER SERVER {srv} OPTIONS (user 'u', passwd '{secret}')"),
    )
    .await;
    assert_eq!(e.sqlstate(), "HV00D");
    let shown = format!("{e} {e:?} {:?}", e.hint());
    assert!(shown.contains("user, password") && !shown.contains(secret), "{shown}");
    let e = run_err(
        &s,
        &format!(
            "CREATE FOREIGN TABLE {} (a int OPTIONS (colname 'x')) SERVER {srv} OPTIONS (table_name 't')",
            unique("t")
        ),
    )
    .await;
    assert_eq!(
        (e.sqlstate(), e.to_string().as_str()),
        ("HV00D", "invalid option \"colname\" for foreign table column")
    );
    assert_eq!(e.hint().as_deref(), Some("Valid options in this context are: column_name"));
    run_ok(&s, &format!("DROP SERVER {srv}")).await;
}

#[tokio::test]
async fn foreign_tables_round_trip_and_are_visible_as_ordinary_tables() {
    let pg = pg().await;
    let s = superuser(&pg).await;
    let (srv, sch) = (unique("srv"), unique("sch"));
    sql(&s, &format!("CREATE SCHEMA {sch}")).await;
    run_ok(&s, &server_sql(&srv)).await;
    let tag = run_ok(
        &s,
        &format!(
            "CREATE FOREIGN TABLE {sch}.ft (id bigint OPTIONS (column_name 'ID') NOT NULL, amount numeric(12,2), \
             note text DEFAULT 'n/a', tags text[], at timestamp with time zone) \
             SERVER {srv} OPTIONS (table_name 'remote_t')"
        ),
    )
    .await;
    assert_eq!(tag, "CREATE FOREIGN TABLE");

    // What psql, JDBC and SQLAlchemy read: an ordinary table with the columns, and the comment.
    let columns = s
        .query_text(
            "SELECT column_name::text, data_type::text, is_nullable::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = 'ft' ORDER BY ordinal_position",
            &[Some(sch.clone())],
        )
        .await
        .expect("columns");
    let columns: Vec<Vec<String>> =
        columns.into_iter().map(|r| r.into_iter().map(Option::unwrap_or_default).collect()).collect();
    assert_eq!(
        columns,
        [
            ["id", "bigint", "NO"],
            ["amount", "numeric", "YES"],
            ["note", "text", "YES"],
            ["tags", "ARRAY", "YES"],
            ["at", "timestamp with time zone", "YES"],
        ]
    );
    let shadow = format!("{sch}.ft");
    assert_eq!(
        one(&s, &format!("SELECT relkind::text FROM pg_class WHERE oid = '{shadow}'::regclass")).await.as_deref(),
        Some("r")
    );
    assert_eq!(
        one(&s, &format!("SELECT obj_description('{shadow}'::regclass, 'pg_class')")).await,
        Some(format!("pgfed foreign table on server {srv} (postgres)"))
    );
    let oid: u32 =
        one(&s, &format!("SELECT '{shadow}'::regclass::oid::text")).await.expect("oid").parse().expect("oid");

    let snapshot = load(&pg).await;
    let table = snapshot.lookup(Some(&sch), "ft", &[]).expect("table loaded");
    assert_eq!((table.shadow_oid, table.server.as_str()), (oid, srv.as_str()));
    assert_eq!(table.options, [("table_name".to_string(), "remote_t".to_string())]);
    let types: Vec<(&str, &PgType, &str, bool)> =
        table.columns.iter().map(|c| (c.name.as_str(), &c.pg_type, c.type_name.as_str(), c.not_null)).collect();
    assert_eq!(
        types,
        [
            ("id", &PgType::Int8, "bigint", true),
            ("amount", &PgType::Numeric, "numeric(12,2)", false),
            ("note", &PgType::Text, "text", false),
            ("tags", &PgType::Array(Box::new(PgType::Text)), "text[]", false),
            ("at", &PgType::Timestamptz, "timestamp with time zone", false),
        ]
    );
    assert_eq!(table.columns[1].typmod, ((12 << 16) | 2) + 4);
    assert_eq!(table.columns.iter().map(|c| c.attnum).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(table.columns[0].options, [("column_name".to_string(), "ID".to_string())]);
    assert_eq!(
        one(&s, &format!("SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = {oid}")).await.as_deref(),
        Some("'n/a'::text")
    );

    run_ok(
        &s,
        &format!(
            "ALTER FOREIGN TABLE {sch}.ft OPTIONS (SET table_name 'r2'), ALTER COLUMN amount OPTIONS (ADD column_name \
             'AMT'), ADD COLUMN extra int OPTIONS (column_name 'X')"
        ),
    )
    .await;
    run_ok(&s, &format!("ALTER FOREIGN TABLE {sch}.ft RENAME COLUMN note TO remark")).await;
    run_ok(&s, &format!("ALTER FOREIGN TABLE {sch}.ft DROP COLUMN tags")).await;
    assert_eq!(run_ok(&s, &format!("ALTER FOREIGN TABLE {sch}.ft RENAME TO ft2")).await, "ALTER FOREIGN TABLE");
    let snapshot = load(&pg).await;
    assert!(snapshot.lookup(Some(&sch), "ft", &[]).is_none());
    let table = snapshot.lookup(None, "ft2", std::slice::from_ref(&sch)).expect("renamed table");
    assert_eq!(table.shadow_oid, oid);
    assert_eq!(table.options, [("table_name".to_string(), "r2".to_string())]);
    type Column<'a> = (&'a str, i16, &'a [(String, String)]);
    let cols: Vec<Column<'_>> =
        table.columns.iter().map(|c| (c.name.as_str(), c.attnum, c.options.as_slice())).collect();
    assert_eq!(
        cols,
        [
            ("id", 1, &[("column_name".to_string(), "ID".to_string())][..]),
            ("amount", 2, &[("column_name".to_string(), "AMT".to_string())][..]),
            ("remark", 3, &[][..]),
            ("at", 5, &[][..]),
            ("extra", 6, &[("column_name".to_string(), "X".to_string())][..]),
        ]
    );

    // A type pgfed cannot carry is refused, and the change is undone.
    let e = run_err(&s, &format!("ALTER FOREIGN TABLE {sch}.ft2 ALTER COLUMN extra TYPE oid")).await;
    assert_eq!(
        (e.sqlstate(), e.to_string()),
        ("0A000", "column \"extra\" of foreign table \"ft2\" has type oid, which pgfed does not support".to_string())
    );
    assert_eq!(
        one(
            &s,
            &format!(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = {oid} AND attname = 'extra'"
            )
        )
        .await
        .as_deref(),
        Some("integer")
    );
    let e = run_err(&s, &format!("ALTER FOREIGN TABLE {sch}.ft2 ENABLE TRIGGER ALL")).await;
    assert_eq!(e.sqlstate(), "0A000");
    assert!(e.to_string().contains("ENABLE TRIGGER ALL"), "{e}");

    assert_eq!(run_ok(&s, &format!("DROP FOREIGN TABLE {sch}.ft2")).await, "DROP FOREIGN TABLE");
    assert!(load(&pg).await.lookup(Some(&sch), "ft2", &[]).is_none());
    assert_eq!(one(&s, &format!("SELECT to_regclass('{sch}.ft2')::text")).await, None);
    let e = run_err(&s, &format!("DROP FOREIGN TABLE {sch}.ft2")).await;
    assert_eq!((e.sqlstate(), e.to_string().as_str()), ("42P01", "foreign table \"ft2\" does not exist"));
    let (r, notices) = run_with(&s, &format!("DROP FOREIGN TABLE IF EXISTS {sch}.ft2"), &registry()).await;
    r.expect("if exists");
    assert_eq!(notices.messages(), ["foreign table \"ft2\" does not exist, skipping"]);
    // An ordinary table is not a foreign table.
    sql(&s, &format!("CREATE TABLE {sch}.plain (a int)")).await;
    let e = run_err(&s, &format!("DROP FOREIGN TABLE {sch}.plain")).await;
    assert_eq!((e.sqlstate(), e.to_string().as_str()), ("42809", "\"plain\" is not a foreign table"));
    run_ok(&s, &format!("DROP SERVER {srv}")).await;
}

#[tokio::test]
async fn an_unsupported_type_rolls_back_the_whole_statement() {
    let pg = pg().await;
    let s = superuser(&pg).await;
    let (srv, sch) = (unique("srv"), unique("sch"));
    sql(&s, &format!("CREATE SCHEMA {sch}; CREATE DOMAIN {sch}.posint AS int CHECK (VALUE > 0)")).await;
    run_ok(&s, &server_sql(&srv)).await;
    let (ctx, _) = context("postgres");
    for (column, ty) in [("p", "point"), ("d", &format!("{sch}.posint")[..])] {
        sql(&s, "BEGIN").await;
        let ddl = parse(&format!(
            "CREATE FOREIGN TABLE {sch}.bad (a int, {column} {ty}) SERVER {srv} OPTIONS (table_name 't')"
        ));
        let e = execute_ddl(&s, &registry(), &ddl, &ctx).await.expect_err("unsupported type");
        assert_eq!(e.sqlstate(), "0A000");
        assert!(e.to_string().contains(&format!("column \"{column}\" of foreign table \"bad\"")), "{e}");
        // The client's transaction is aborted, as after any failed statement in Postgres.
        let after = s.query_text("SELECT 1::text", &[]).await.expect_err("transaction aborted");
        assert_eq!(after.sqlstate(), "25P02");
        sql(&s, "ROLLBACK").await;
        assert_eq!(one(&s, &format!("SELECT to_regclass('{sch}.bad')::text")).await, None);
    }
    run_ok(&s, &format!("DROP SERVER {srv}")).await;
}

#[tokio::test]
async fn ddl_in_a_rolled_back_transaction_leaves_nothing() {
    let pg = pg().await;
    let s = superuser(&pg).await;
    let (srv, sch) = (unique("srv"), unique("sch"));
    sql(&s, &format!("CREATE SCHEMA {sch}")).await;
    let (ctx, _) = context("postgres");
    sql(&s, "BEGIN").await;
    for text in [
        server_sql(&srv),
        format!("CREATE USER MAPPING FOR CURRENT_USER SERVER {srv} OPTIONS (user 'u')"),
        format!("CREATE FOREIGN TABLE {sch}.t (a int) SERVER {srv} OPTIONS (table_name 't')"),
    ] {
        execute_ddl(&s, &registry(), &parse(&text), &ctx).await.unwrap_or_else(|e| panic!("{text}: {e}"));
    }
    // Visible inside the transaction ...
    assert!(Snapshot::load(&s).await.expect("load").server(&srv).is_some());
    sql(&s, "ROLLBACK").await;
    // ... and gone after it.
    let snapshot = load(&pg).await;
    assert!(snapshot.server(&srv).is_none());
    assert!(snapshot.lookup(Some(&sch), "t", &[]).is_none());
    assert_eq!(one(&s, &format!("SELECT to_regclass('{sch}.t')::text")).await, None);
    assert_eq!(
        one(&s, &format!("SELECT count(*)::text FROM pgfed.user_mappings WHERE server = '{srv}'")).await.as_deref(),
        Some("0")
    );
}

#[tokio::test]
async fn direct_writes_to_a_shadow_table_fail() {
    let pg = pg().await;
    let s = superuser(&pg).await;
    let (srv, sch) = (unique("srv"), unique("sch"));
    sql(&s, &format!("CREATE SCHEMA {sch}")).await;
    run_ok(&s, &server_sql(&srv)).await;
    run_ok(&s, &format!("CREATE FOREIGN TABLE {sch}.ft (id int, v text) SERVER {srv} OPTIONS (table_name 't')")).await;
    for (statement, verb) in
        [(format!("INSERT INTO {sch}.ft VALUES (1, 'x')"), "insert into"), (format!("TRUNCATE {sch}.ft"), "truncate")]
    {
        let e = s.0.batch_execute(&statement).await.expect_err("refused");
        let db = e.as_db_error().expect("db error");
        assert_eq!(db.code().code(), "42809", "{statement}");
        assert_eq!(db.message(), format!("cannot {verb} foreign table \"ft\" outside pgfed"));
        assert_eq!(db.hint(), Some("Connect through pgfed to read or write it."));
    }
    // COPY FROM fires the row trigger too.
    let copy = s.0.copy_in::<_, bytes::Bytes>(format!("COPY {sch}.ft FROM STDIN").as_str()).await.expect("copy starts");
    let mut copy = std::pin::pin!(copy);
    let copied = async {
        copy.send(bytes::Bytes::from_static(b"1\tx\n")).await?;
        copy.as_mut().finish().await
    }
    .await;
    assert_eq!(copied.expect_err("copy refused").as_db_error().expect("db error").code().code(), "42809");
    // A direct read sees an empty table (the rows live in the foreign source).
    assert_eq!(one(&s, &format!("SELECT count(*)::text FROM {sch}.ft")).await.as_deref(), Some("0"));
    run_ok(&s, &format!("DROP SERVER {srv} CASCADE")).await;
}

#[tokio::test]
async fn privileges_are_postgres_grants_on_the_shadow_table() {
    let pg = pg().await;
    let s = superuser(&pg).await;
    let (srv, sch) = (unique("srv"), unique("sch"));
    let role = new_role(&pg, "reader").await;
    sql(&s, &format!("CREATE SCHEMA {sch}")).await;
    run_ok(&s, &server_sql(&srv)).await;
    run_ok(&s, &format!("CREATE FOREIGN TABLE {sch}.ft (id int, secret text) SERVER {srv} OPTIONS (table_name 't')"))
        .await;
    let table = load(&pg).await.lookup(Some(&sch), "ft", &[]).expect("table").clone();
    let r = as_role(&pg, &role).await;
    let check = |p: Privilege| {
        let (r, table) = (&r, &table);
        async move { check_privilege(r, table, &p).await }
    };
    let denied = |result: Result<(), CatalogError>, message: &str| {
        let e = result.expect_err("denied");
        assert_eq!(e.sqlstate(), "42501");
        assert_eq!(e.to_string(), format!("ERROR: {message} (SQLSTATE 42501)"));
        assert!(e.upstream_frame().is_some(), "Postgres's own error, forwarded");
    };
    denied(check(Privilege::Select(vec![])).await, &format!("permission denied for schema {sch}"));
    sql(&s, &format!("GRANT USAGE ON SCHEMA {sch} TO {role}")).await;
    denied(check(Privilege::Select(vec![])).await, "permission denied for table ft");
    sql(&s, &format!("GRANT SELECT (id) ON {sch}.ft TO {role}")).await;
    check(Privilege::Select(vec![])).await.expect("a column grant allows count(*)");
    check(Privilege::Select(vec!["id".into()])).await.expect("granted column");
    denied(check(Privilege::Select(vec!["id".into(), "secret".into()])).await, "permission denied for table ft");
    denied(check(Privilege::Insert(vec!["id".into()])).await, "permission denied for table ft");
    denied(check(Privilege::Update(vec!["secret".into()])).await, "permission denied for table ft");
    denied(check(Privilege::Delete).await, "permission denied for table ft");
    let e = check(Privilege::Update(vec![])).await.expect_err("no column may be updated");
    assert_eq!((e.sqlstate(), e.to_string().as_str()), ("42501", "permission denied for table ft"));
    sql(&s, &format!("GRANT INSERT, DELETE, UPDATE (secret) ON {sch}.ft TO {role}")).await;
    check(Privilege::Insert(vec!["id".into()])).await.expect("insert");
    check(Privilege::Insert(vec![])).await.expect("insert default values");
    check(Privilege::Update(vec!["secret".into()])).await.expect("update");
    check(Privilege::Update(vec![])).await.expect("update some column");
    denied(check(Privilege::Update(vec!["id".into()])).await, "permission denied for table ft");
    check(Privilege::Delete).await.expect("delete");
    sql(&s, &format!("REVOKE SELECT ON {sch}.ft FROM {role}")).await;
    denied(check(Privilege::Select(vec!["id".into()])).await, "permission denied for table ft");
    run_ok(&s, &format!("DROP SERVER {srv} CASCADE")).await;
}

#[tokio::test]
async fn user_mapping_secrets_stay_with_their_role() {
    let pg = pg().await;
    let s = superuser(&pg).await;
    let srv = unique("srv");
    let (a, b, c) = (new_role(&pg, "a").await, new_role(&pg, "b").await, new_role(&pg, "c").await);
    run_ok(&s, &server_sql(&srv)).await;
    assert_eq!(run_ok(&s, &format!("GRANT USAGE ON FOREIGN SERVER {srv} TO {a}, {b}")).await, "GRANT");
    let sa = as_role(&pg, &a).await;
    let sb = as_role(&pg, &b).await;
    let secret = "secret-of-a";
    assert_eq!(
        run_ok(
            &sa,
            &format!("CREATE USER MAPPING FOR CURRENT_USER SERVER {srv} OPTIONS (user 'ua', password '{secret}')")
        )
        .await,
        "CREATE USER MAPPING"
    );
    assert_eq!(
        user_mapping(&sa, &srv).await.expect("own mapping"),
        [("password".to_string(), secret.to_string()), ("user".into(), "ua".into())]
    );
    // b sees that a has a mapping, never its options, through pgfed or directly.
    assert!(user_mapping(&sb, &srv).await.expect("no mapping").is_empty());
    assert_eq!(
        one(&sb, &format!("SELECT count(*)::text FROM pgfed.user_mappings WHERE server = '{srv}'")).await.as_deref(),
        Some("1")
    );
    assert_eq!(one(&sb, "SELECT string_agg(options::text, ',') FROM pgfed.user_mapping_options").await, None);
    let e = run_err(&sb, &format!("ALTER USER MAPPING FOR {a} SERVER {srv} OPTIONS (SET password 'x')")).await;
    assert_eq!((e.sqlstate(), e.to_string()), ("42501", format!("must be owner of foreign server {srv}")));
    // Directly in SQL, b can neither overwrite a's options nor plant a mapping for a.
    sql(&sb, &format!("UPDATE pgfed.user_mapping_options SET options = '{{}}' WHERE server = '{srv}'")).await;
    let planted =
        sb.0.batch_execute(&format!("INSERT INTO pgfed.user_mappings (server, umuser) VALUES ('{srv}', '{a}')"))
            .await
            .expect_err("row-level security");
    assert_eq!(planted.as_db_error().expect("db").code().code(), "42501");

    // A PUBLIC mapping serves the roles without one of their own, but only the server's owner
    // (and pgfed's service connection, `public_user_mapping`) reads its options.
    run_ok(&s, &format!("CREATE USER MAPPING FOR PUBLIC SERVER {srv} OPTIONS (user 'shared')")).await;
    assert!(user_mapping(&sb, &srv).await.expect("public").is_empty());
    assert!(pgfed_catalog::uses_public_mapping(&sb, &srv).await.expect("uses public"));
    assert!(!pgfed_catalog::uses_public_mapping(&sa, &srv).await.expect("has its own"));
    assert_eq!(
        pgfed_catalog::public_user_mapping(&s, &srv).await.expect("service reads it"),
        [("user".to_string(), "shared".to_string())]
    );
    assert_eq!(user_mapping(&sa, &srv).await.expect("own").len(), 2);
    let e = run_err(&s, &format!("CREATE USER MAPPING FOR PUBLIC SERVER {srv}")).await;
    assert_eq!(
        (e.sqlstate(), e.to_string()),
        ("42710", format!("user mapping for \"public\" already exists for server \"{srv}\""))
    );

    // Errors about a mapping never echo a value.
    let e = run_err(
        &sa,
        &format!(
            "ALTER USER MAPPING FOR CURRENT_USER SERVER {srv} OPTIONS (SET password 'new-secret', ADD pw 'zz-secret')"
        ),
    )
    .await;
    let shown = format!("{e} {e:?} {:?}", e.hint());
    assert!(e.sqlstate() == "HV00D" && !shown.contains("secret"), "{shown}");
    run_ok(&sa, &format!("ALTER USER MAPPING FOR USER SERVER {srv} OPTIONS (SET password 'rotated')")).await;
    assert_eq!(user_mapping(&sa, &srv).await.expect("own")[0], ("password".to_string(), "rotated".to_string()));

    // Without USAGE on the server, no mapping of one's own.
    let sc = as_role(&pg, &c).await;
    let e = run_err(&sc, &format!("CREATE USER MAPPING FOR CURRENT_USER SERVER {srv} OPTIONS (user 'x')")).await;
    assert_eq!((e.sqlstate(), e.to_string()), ("42501", format!("permission denied for foreign server {srv}")));
    assert!(user_mapping(&sc, &srv).await.expect("none readable").is_empty());

    assert_eq!(run_ok(&sa, &format!("DROP USER MAPPING FOR CURRENT_USER SERVER {srv}")).await, "DROP USER MAPPING");
    assert!(user_mapping(&sa, &srv).await.expect("public, unreadable").is_empty());
    assert!(pgfed_catalog::uses_public_mapping(&sa, &srv).await.expect("now uses public"));
    let e = run_err(&sa, &format!("DROP USER MAPPING FOR CURRENT_USER SERVER {srv}")).await;
    assert_eq!(
        (e.sqlstate(), e.to_string()),
        ("42704", format!("user mapping for \"{a}\" does not exist for server \"{srv}\""))
    );
    let (r, notices) = run_with(&sa, &format!("DROP USER MAPPING IF EXISTS FOR {a} SERVER {srv}"), &registry()).await;
    r.expect("if exists");
    assert_eq!(notices.messages(), [format!("user mapping for \"{a}\" does not exist for server \"{srv}\", skipping")]);
    run_ok(&s, &format!("DROP SERVER {srv} CASCADE")).await;
}

#[tokio::test]
async fn non_superusers_use_the_catalog_once_an_administrator_grants_it() {
    let pg = pg().await;
    let s = superuser(&pg).await;
    let (srv, sch) = (unique("srv"), unique("sch"));
    let (owner, other) = (new_role(&pg, "owner").await, new_role(&pg, "other").await);
    sql(&s, &format!("CREATE SCHEMA {sch}; GRANT USAGE, CREATE ON SCHEMA {sch} TO {other}")).await;
    let so = as_role(&pg, &owner).await;
    let sx = as_role(&pg, &other).await;

    let e = run_err(&sx, &server_sql(&srv)).await;
    assert_eq!(
        (e.sqlstate(), e.to_string().as_str()),
        ("42501", "permission denied for foreign-data wrapper postgres")
    );
    assert!(e.hint().expect("hint").contains("GRANT INSERT ON pgfed.servers"));
    sql(&s, &format!("GRANT INSERT ON pgfed.servers TO {owner}")).await;
    run_ok(&so, &server_sql(&srv)).await;
    assert_eq!(load(&pg).await.server(&srv).expect("server").owner, owner);

    let e = run_err(&sx, &format!("ALTER SERVER {srv} OPTIONS (SET port '1')")).await;
    assert_eq!((e.sqlstate(), e.to_string()), ("42501", format!("must be owner of foreign server {srv}")));
    assert_eq!(run_err(&sx, &format!("DROP SERVER {srv}")).await.sqlstate(), "42501");
    // Nor directly: row-level security hides the row from UPDATE and refuses a forged owner.
    sql(&sx, &format!("UPDATE pgfed.servers SET options = '{{}}' WHERE name = '{srv}'")).await;
    assert_eq!(load(&pg).await.server(&srv).expect("server").options.len(), 2);

    let create_table = format!("CREATE FOREIGN TABLE {sch}.t (a int) SERVER {srv} OPTIONS (table_name 't')");
    let e = run_err(&sx, &create_table).await;
    assert_eq!((e.sqlstate(), e.to_string()), ("42501", format!("permission denied for foreign server {srv}")));
    run_ok(&so, &format!("GRANT USAGE ON FOREIGN SERVER {srv} TO {other}")).await;
    run_ok(&sx, &create_table).await;
    run_ok(&sx, &format!("CREATE USER MAPPING FOR CURRENT_USER SERVER {srv} OPTIONS (user 'x')")).await;
    assert_eq!(
        one(&s, &format!("SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = '{sch}.t'::regclass")).await,
        Some(other.clone())
    );

    let e = run_err(&so, &format!("DROP SERVER {srv}")).await;
    assert_eq!(
        (e.sqlstate(), e.to_string()),
        ("2BP01", format!("cannot drop server {srv} because other objects depend on it"))
    );
    assert_eq!(
        e.detail().expect("detail"),
        format!(
            "user mapping for {other} on server {srv} depends on server {srv}\nforeign table t depends on server {srv}"
        )
    );
    // CASCADE drops dependent tables as DROP TABLE would: their owner's privilege is needed.
    let e = run_err(&so, &format!("DROP SERVER {srv} CASCADE")).await;
    assert_eq!(e.sqlstate(), "42501");
    run_ok(&sx, &format!("DROP FOREIGN TABLE {sch}.t")).await;
    let e = run_err(&sx, &format!("REVOKE USAGE ON FOREIGN SERVER {srv} FROM {other}")).await;
    assert_eq!(e.sqlstate(), "42501");
    run_ok(&so, &format!("REVOKE USAGE ON FOREIGN SERVER {srv} FROM {other}")).await;
    assert_eq!(run_err(&sx, &create_table).await.sqlstate(), "42501");
    let (r, notices) = run_with(&so, &format!("DROP SERVER {srv} CASCADE"), &registry()).await;
    r.expect("cascade");
    assert_eq!(notices.messages(), [format!("drop cascades to user mapping for {other} on server {srv}")]);
    assert_eq!(
        one(&s, &format!("SELECT count(*)::text FROM pgfed.user_mappings WHERE server = '{srv}'")).await.as_deref(),
        Some("0")
    );
}

#[tokio::test]
async fn import_foreign_schema_creates_tables_from_the_remote_catalog() {
    let pg = pg().await;
    let s = superuser(&pg).await;
    let (srv, remote, local) = (unique("srv"), unique("remote"), unique("local"));
    sql(
        &s,
        &format!(
            "CREATE SCHEMA {remote}; CREATE SCHEMA {local};
             CREATE TABLE {remote}.a (id int PRIMARY KEY, name text NOT NULL);
             CREATE TABLE {remote}.b (x numeric(10,2), at timestamptz);
             CREATE TABLE {remote}.c (t varchar(7))"
        ),
    )
    .await;
    run_ok(
        &s,
        &format!(
            "CREATE SERVER {srv} FOREIGN DATA WRAPPER postgres OPTIONS (host '{}', port '{}', dbname '{}')",
            pg.host, pg.port, pg.db
        ),
    )
    .await;
    run_ok(&s, &format!("CREATE USER MAPPING FOR CURRENT_USER SERVER {srv} OPTIONS (user 'postgres')")).await;
    let tag =
        run_ok(&s, &format!("IMPORT FOREIGN SCHEMA {remote} LIMIT TO (a, b) FROM SERVER {srv} INTO {local}")).await;
    assert_eq!(tag, "IMPORT FOREIGN SCHEMA");
    let snapshot = load(&pg).await;
    let a = snapshot.lookup(Some(&local), "a", &[]).expect("a imported");
    let cols: Vec<(&str, &str, bool)> =
        a.columns.iter().map(|c| (c.name.as_str(), c.type_name.as_str(), c.not_null)).collect();
    assert_eq!(cols, [("id", "integer", true), ("name", "text", true)]);
    assert!(a.options.contains(&("table_name".to_string(), "a".to_string())), "{:?}", a.options);
    let b = snapshot.lookup(Some(&local), "b", &[]).expect("b imported");
    assert_eq!(b.columns[0].type_name, "numeric(10,2)");
    assert!(snapshot.lookup(Some(&local), "c", &[]).is_none());

    run_ok(&s, &format!("IMPORT FOREIGN SCHEMA {remote} EXCEPT (a, b) FROM SERVER {srv} INTO {local}")).await;
    let c = load(&pg).await.lookup(Some(&local), "c", &[]).expect("c imported").clone();
    assert_eq!(c.columns[0].type_name, "character varying(7)");
    assert_eq!(
        one(&s, &format!("SELECT obj_description('{local}.c'::regclass, 'pg_class')")).await,
        Some(format!("pgfed foreign table on server {srv} (postgres)"))
    );

    let e = run_err(&s, &format!("IMPORT FOREIGN SCHEMA {remote} LIMIT TO (a) FROM SERVER {srv} INTO {local}")).await;
    assert_eq!(e.sqlstate(), "42P07");
    let e = run_err(&s, &format!("IMPORT FOREIGN SCHEMA {remote} FROM SERVER {srv} INTO nosuch_schema_x")).await;
    assert_eq!((e.sqlstate(), e.to_string().as_str()), ("3F000", "schema \"nosuch_schema_x\" does not exist"));
    let e = run_err(
        &s,
        &format!("IMPORT FOREIGN SCHEMA {remote} FROM SERVER {srv} INTO {local} OPTIONS (import_default 'true')"),
    )
    .await;
    assert_eq!(e.sqlstate(), "HV00D");
    run_ok(&s, &format!("DROP SERVER {srv} CASCADE")).await;
    assert!(load(&pg).await.lookup(Some(&local), "a", &[]).is_none());
}

#[tokio::test]
async fn route_leaves_postgres_own_foreign_objects_alone() {
    let pg = pg().await;
    let s = superuser(&pg).await;
    let (real, ours, sch) = (unique("real"), unique("ours"), unique("sch"));
    sql(
        &s,
        &format!(
            "CREATE EXTENSION IF NOT EXISTS postgres_fdw; CREATE SCHEMA {sch};
             CREATE SERVER {real} FOREIGN DATA WRAPPER postgres_fdw;
             CREATE FOREIGN TABLE {sch}.real_ft (a int) SERVER {real}"
        ),
    )
    .await;
    run_ok(&s, &server_sql(&ours)).await;
    run_ok(&s, &format!("CREATE FOREIGN TABLE {sch}.ours_ft (a int) SERVER {ours} OPTIONS (table_name 't')")).await;
    let reg = registry();
    let routed = |text: String| {
        let (s, reg) = (&s, &reg);
        async move { route(s, reg, &parse(&text)).await }
    };
    for text in [
        format!("CREATE SERVER {} FOREIGN DATA WRAPPER postgres_fdw", unique("x")),
        format!("CREATE USER MAPPING FOR CURRENT_USER SERVER {real}"),
        format!("CREATE FOREIGN TABLE {sch}.t (a int) SERVER {real}"),
        format!("ALTER FOREIGN TABLE {sch}.real_ft OPTIONS (ADD table_name 'x')"),
        format!("DROP FOREIGN TABLE {sch}.real_ft"),
        format!("DROP SERVER {real}"),
        format!("DROP SERVER IF EXISTS {}", unique("nosuch")),
    ] {
        assert_eq!(routed(text.clone()).await.expect("route"), Route::Upstream, "{text}");
    }
    for text in [
        format!("CREATE SERVER {} FOREIGN DATA WRAPPER postgres", unique("x")),
        format!("CREATE SERVER {} FOREIGN DATA WRAPPER nosuch", unique("x")),
        format!("CREATE USER MAPPING FOR CURRENT_USER SERVER {ours}"),
        format!("CREATE FOREIGN TABLE {sch}.t (a int) SERVER {ours}"),
        format!("GRANT USAGE ON FOREIGN SERVER {ours} TO PUBLIC"),
        format!("ALTER FOREIGN TABLE {sch}.ours_ft RENAME TO x"),
        format!("DROP FOREIGN TABLE IF EXISTS {sch}.ours_ft, {sch}.gone"),
        format!("IMPORT FOREIGN SCHEMA x FROM SERVER {ours} INTO {sch}"),
    ] {
        assert_eq!(routed(text.clone()).await.expect("route"), Route::Pgfed, "{text}");
    }
    let e = routed(format!("DROP SERVER {ours}, {real}")).await.expect_err("mixed");
    assert_eq!(e.sqlstate(), "0A000");
    let e = routed(format!("DROP FOREIGN TABLE {sch}.ours_ft, {sch}.real_ft")).await.expect_err("mixed");
    assert_eq!(e.sqlstate(), "0A000");

    // A server created earlier in the client's open transaction counts.
    let fresh = unique("fresh");
    let (ctx, _) = context("postgres");
    sql(&s, "BEGIN").await;
    execute_ddl(&s, &reg, &parse(&server_sql(&fresh)), &ctx).await.expect("create");
    assert_eq!(routed(format!("CREATE FOREIGN TABLE t (a int) SERVER {fresh}")).await.expect("route"), Route::Pgfed);
    sql(&s, "ROLLBACK").await;

    // pgfed's servers share Postgres's namespace.
    let e = run_err(&s, &server_sql(&real)).await;
    assert_eq!((e.sqlstate(), e.to_string()), ("42710", format!("server \"{real}\" already exists")));
    run_ok(&s, &format!("DROP SERVER {ours} CASCADE")).await;
    sql(&s, &format!("DROP SERVER {real} CASCADE")).await;
}

#[tokio::test]
async fn a_role_that_may_not_create_the_catalog_is_told_how_to_get_it() {
    let pg = TestPg::from_env();
    let db = unique("catalogdb");
    let admin = superuser(&pg).await;
    sql(&admin, &format!("CREATE DATABASE {db}")).await;
    let conninfo = pgfed_testkit::conninfo(&pg.host, pg.port, &db, "postgres", None);
    {
        let client = pgfed_testkit::connect(&conninfo).await.expect("connect");
        client.batch_execute("SET ROLE pgfed_trust").await.expect("set role");
        let s = TokioPgSession(client);
        assert_eq!(Snapshot::load(&s).await.expect("empty"), Snapshot::default());
        let e = run_err(&s, &server_sql(&unique("srv"))).await;
        assert_eq!(e.sqlstate(), "42501");
        assert!(e.to_string().starts_with("permission denied for database"), "{e}");
        assert!(e.hint().expect("hint").contains("bootstrap"), "{:?}", e.hint());

        // An administrator runs the script (here: as one statement list), then grants.
        let admin_db = TokioPgSession(pgfed_testkit::connect(&conninfo).await.expect("connect"));
        admin_db.0.batch_execute(bootstrap_sql()).await.expect("bootstrap script runs as is in psql");
        bootstrap(&admin_db).await.expect("bootstrap is idempotent");
        sql(&admin_db, "GRANT INSERT ON pgfed.servers TO pgfed_trust").await;
        let srv = unique("srv");
        run_ok(&s, &server_sql(&srv)).await;
        assert_eq!(Snapshot::load(&s).await.expect("load").server(&srv).expect("server").owner, "pgfed_trust");
    }
    // Let the connections close before dropping the database.
    sql(&admin, &format!("DROP DATABASE {db} WITH (FORCE)")).await;
}

#[tokio::test]
async fn load_skips_shadows_changed_behind_pgfeds_back() {
    let pg = pg().await;
    let s = superuser(&pg).await;
    let (srv, sch) = (unique("srv"), unique("sch"));
    sql(&s, &format!("CREATE SCHEMA {sch}")).await;
    run_ok(&s, &server_sql(&srv)).await;
    for t in ["dropped", "unguarded", "retyped", "kept"] {
        run_ok(&s, &format!("CREATE FOREIGN TABLE {sch}.{t} (a int) SERVER {srv} OPTIONS (table_name 't')")).await;
    }
    sql(
        &s,
        &format!(
            "DROP TABLE {sch}.dropped; DROP TRIGGER pgfed_shadow_guard ON {sch}.unguarded;
             ALTER TABLE {sch}.retyped ALTER COLUMN a TYPE point USING NULL"
        ),
    )
    .await;
    let snapshot = load(&pg).await;
    let mut names: Vec<&str> =
        snapshot.tables.keys().filter(|(schema, _)| *schema == sch).map(|(_, n)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, ["kept"]);
    run_ok(&s, &format!("DROP SERVER {srv} CASCADE")).await;
}

#[tokio::test]
async fn the_watcher_publishes_changes_and_reconnects() {
    let pg = pg().await;
    let s = superuser(&pg).await;
    let app = unique("watcher");
    let conninfo = format!("{} application_name={app}", pg.direct("postgres", None));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = Watcher::from_conninfo(&conninfo, move |snapshot| {
        let _ = tx.send(snapshot);
    })
    .expect("conninfo")
    .with_period(Duration::from_secs(3600))
    .with_backoff(Duration::from_millis(50), Duration::from_millis(200));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(watcher.run(shutdown.clone()));
    let mut wait_for = async |pred: &dyn Fn(&Snapshot) -> bool| {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let snapshot = rx.recv().await.expect("watcher alive");
                if pred(&snapshot) {
                    return;
                }
            }
        })
        .await
        .expect("snapshot in time");
    };
    wait_for(&|_| true).await;
    let srv = unique("srv");
    run_ok(&s, &server_sql(&srv)).await;
    wait_for(&|snap| snap.server(&srv).is_some()).await;

    // Kill the watcher's connection: it reconnects and still sees the next change.
    let killed = one(
        &s,
        &format!(
            "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity WHERE application_name = '{app}'"
        ),
    )
    .await;
    assert_eq!(killed.as_deref(), Some("1"));
    run_ok(&s, &format!("DROP SERVER {srv}")).await;
    wait_for(&|snap| snap.server(&srv).is_none()).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops").expect("no panic");
}
