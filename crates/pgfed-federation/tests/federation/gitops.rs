//! Catalog files (`[catalog] files`): applied to a real upstream with
//! `pgfed_federation::apply_catalog_files`, then used through pgfed. The files describe every
//! file-managed object of a database, so each test gets a database of its own (tests run in
//! parallel on one cluster); the foreign servers point back at that database.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use pgfed_config::{Config, Validated};
use pgfed_testkit::{TestPg, TestProxy};
use tokio_postgres::{Client, SimpleQueryMessage};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn rows(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect()
}

/// A database of its own, a directory for the catalog files, and the config naming both.
struct Site {
    pg: TestPg,
    db: String,
    dir: PathBuf,
}

impl Site {
    async fn new() -> Self {
        let pg = TestPg::from_env();
        let db = unique("gitops");
        pg.superuser().await.batch_execute(&format!("CREATE DATABASE {db}")).await.expect("create database");
        let dir = std::env::temp_dir().join(&db);
        std::fs::create_dir_all(dir.join("catalog")).expect("catalog dir");
        Site { pg, db, dir }
    }

    /// A superuser connection to the site's database, straight to Postgres.
    async fn direct(&self) -> Client {
        let info = pgfed_testkit::conninfo(&self.pg.host, self.pg.port, &self.db, "postgres", None);
        pgfed_testkit::connect(&info).await.expect("direct connection")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@{}:{}/{}?sslmode=disable", self.pg.host, self.pg.port, self.db)
    }

    /// Drops the site's database (8 MB each; the disk is shared).
    async fn finish(self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db);
        self.pg.superuser().await.batch_execute(&sql).await.expect("drop database");
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join("catalog").join(name), text).expect("write catalog file");
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.join("catalog").join(name)).expect("remove catalog file");
    }

    fn config(&self) -> Validated {
        let mut c = Config::default();
        c.upstream.url = self.url();
        c.catalog.files = vec![self.dir.join("catalog/*.sql")];
        c.validate().expect("valid config")
    }

    async fn apply(&self) -> Result<pgfed_catalog::declare::Changes, pgfed_catalog::DeclareError> {
        pgfed_federation::apply_catalog_files(&self.config()).await.map(|c| c.expect("files configured"))
    }

    /// pgfed in front of the site's database.
    async fn proxy(&self) -> (TestProxy, Client) {
        let url = self.url();
        let mut proxy = TestProxy::start_server(
            |c| c.upstream.url = url,
            |server, v, shutdown| pgfed_federation::attach(server, v, shutdown).expect("federation").0,
        )
        .await;
        proxy.pg.db = self.db.clone();
        let client = proxy.connect("postgres", None).await;
        (proxy, client)
    }

    fn server_sql(&self, name: &str) -> String {
        format!(
            "CREATE SERVER {name} FOREIGN DATA WRAPPER postgres OPTIONS (host '{}', port '{}', dbname '{}');\n",
            self.pg.host, self.pg.port, self.db
        )
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

async fn one(c: &Client, sql: &str) -> String {
    rows(c, sql).await.first().and_then(|r| r.first().cloned().flatten()).unwrap_or_else(|| panic!("{sql}: no value"))
}

/// The rows of `sql` once pgfed's watcher has installed the catalog that gives `expected` (until
/// then the statement may reach the empty shadow table, or fail); the last answer after 5 s.
async fn eventually(c: &Client, sql: &str, expected: &[Vec<Option<String>>]) -> Vec<Vec<Option<String>>> {
    for _ in 0..100 {
        if let Ok(messages) = c.simple_query(sql).await {
            let got: Vec<Vec<Option<String>>> = messages
                .into_iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
                    _ => None,
                })
                .collect();
            if got == expected {
                return got;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    rows(c, sql).await
}

fn text_rows(rows: &[&[Option<&str>]]) -> Vec<Vec<Option<String>>> {
    rows.iter().map(|r| r.iter().map(|v| v.map(str::to_string)).collect()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn catalog_files_create_then_change_nothing_then_alter_and_drop_only_their_objects() {
    let site = Site::new().await;
    let direct = site.direct().await;
    direct
        .batch_execute(
            "CREATE TABLE remote_orders (id int PRIMARY KEY, name text, amount numeric(10,2));
             INSERT INTO remote_orders SELECT g, 'o' || g, g * 2.5 FROM generate_series(1, 40) g;
             CREATE TABLE remote_items (id int);
             INSERT INTO remote_items SELECT generate_series(1, 7);
             CREATE TABLE local_tags (id int, tag text);
             INSERT INTO local_tags VALUES (1, 'one'), (2, 'two'), (3, 'three');
             CREATE SCHEMA sales;",
        )
        .await
        .expect("remote data");
    // A server a user created with DDL through pgfed, before the files existed.
    let (_proxy, via) = site.proxy().await;
    via.batch_execute(&site.server_sql("user_made")).await.expect("user DDL");

    let declared = format!(
        "{}CREATE USER MAPPING FOR PUBLIC SERVER wh OPTIONS (user 'postgres');
         GRANT USAGE ON FOREIGN SERVER wh TO PUBLIC;
         CREATE FOREIGN TABLE sales.orders (id int NOT NULL, name text, amount numeric(10,2))
             SERVER wh OPTIONS (table_name 'remote_orders');",
        site.server_sql("wh")
    );
    site.write("10-warehouse.sql", &declared);
    site.write(
        "20-items.sql",
        "CREATE FOREIGN TABLE items (id integer) SERVER wh OPTIONS (table_name 'remote_items');",
    );

    let changes = site.apply().await.expect("first apply");
    assert_eq!(
        sorted(changes.created.clone()),
        [
            "foreign table public.items",
            "foreign table sales.orders",
            "server \"wh\"",
            "user mapping for public on server \"wh\""
        ]
    );
    assert_eq!(changes.altered, ["USAGE on server \"wh\": granted to public"]);
    assert!(changes.dropped.is_empty());
    let sources = rows(&direct, "SELECT source FROM pgfed.declared_tables ORDER BY 1").await;
    assert!(sources[0][0].as_deref().is_some_and(|s| s.contains("10-warehouse.sql:") && s.ends_with("(statement 4)")));

    // A federated query through pgfed sees the declared tables (the watcher installs them).
    let joined = "SELECT o.id::text, o.name, t.tag FROM sales.orders o JOIN local_tags t ON t.id = o.id ORDER BY 1";
    let expected = text_rows(&[
        &[Some("1"), Some("o1"), Some("one")],
        &[Some("2"), Some("o2"), Some("two")],
        &[Some("3"), Some("o3"), Some("three")],
    ]);
    assert_eq!(eventually(&via, joined, &expected).await, expected);
    assert_eq!(one(&via, "SELECT count(*)::text FROM items").await, "7");

    // Applying the same files again changes nothing.
    let again = site.apply().await.expect("second apply");
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(again.unchanged, 4);

    // Edit: an option, a column added, a column's type, a default; items no longer declared.
    site.write(
        "10-warehouse.sql",
        &declared
            .replace(
                "(id int NOT NULL, name text, amount numeric(10,2))",
                "(id int NOT NULL, name varchar(20), amount numeric(10,2) DEFAULT 0, note text)",
            )
            .replace("OPTIONS (user 'postgres')", "OPTIONS (user 'postgres', password 'unused')")
            .replace("GRANT USAGE ON FOREIGN SERVER wh TO PUBLIC;", ""),
    );
    site.remove("20-items.sql");
    direct.batch_execute("ALTER TABLE remote_orders ADD COLUMN note text").await.expect("remote column");
    let changes = site.apply().await.expect("apply the edit");
    assert!(changes.created.is_empty(), "{changes:?}");
    assert_eq!(changes.dropped, ["foreign table public.items"]);
    let altered = changes.altered.join(" | ");
    for needle in [
        "user mapping for public on server \"wh\" (options password)",
        "USAGE on server \"wh\": revoked from public",
        "foreign table sales.orders (",
        "column note added",
        "column name type",
        "column amount default",
    ] {
        assert!(altered.contains(needle), "{needle} not in {altered}");
    }
    assert!(!altered.contains("unused"), "an option value reached the change list: {altered}");
    let columns = rows(
        &direct,
        "SELECT column_name::text, data_type::text, coalesce(column_default, '-')::text FROM information_schema.columns \
         WHERE table_schema = 'sales' AND table_name = 'orders' ORDER BY column_name",
    )
    .await;
    let columns: Vec<String> =
        columns.iter().map(|r| r.iter().map(|v| v.clone().unwrap_or_default()).collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(columns, ["amount numeric 0", "id integer -", "name character varying -", "note text -"]);
    assert_eq!(one(&direct, "SELECT (to_regclass('public.items') IS NULL)::text").await, "true");
    let expected = text_rows(&[&[Some("o2"), None]]);
    assert_eq!(eventually(&via, "SELECT name, note FROM sales.orders WHERE id = 2", &expected).await, expected);
    assert!(site.apply().await.expect("third apply").is_empty());

    // A declaration clashing with an object created with DDL fails, and nothing is applied.
    site.write(
        "30-clash.sql",
        &format!(
            "{}CREATE FOREIGN TABLE clash_t (id int) SERVER wh OPTIONS (table_name 'remote_items');",
            site.server_sql("user_made")
        ),
    );
    let e = site.apply().await.expect_err("clash");
    assert_eq!(e.sqlstate(), Some("42710"), "{e}");
    let message = e.to_string();
    assert!(
        message.contains("30-clash.sql:1 (statement 1): server \"user_made\"")
            && message.contains("not created from the catalog files"),
        "{message}"
    );
    assert_eq!(one(&direct, "SELECT (to_regclass('public.clash_t') IS NULL)::text").await, "true");
    site.remove("30-clash.sql");

    // A table created with DDL on a file-managed server blocks dropping that server.
    via.batch_execute("CREATE FOREIGN TABLE by_hand (id int) SERVER wh OPTIONS (table_name 'remote_items')")
        .await
        .expect("user table on the managed server");
    site.write("10-warehouse.sql", "");
    let e = site.apply().await.expect_err("dependent table");
    assert_eq!(e.sqlstate(), Some("2BP01"), "{e}");
    assert!(e.to_string().contains("no longer declared") && e.to_string().contains("by_hand"), "{e}");
    assert_eq!(one(&direct, "SELECT count(*)::text FROM pgfed.declared_tables").await, "1", "rolled back");
    via.batch_execute("DROP FOREIGN TABLE by_hand").await.expect("drop the user table");

    // Files declaring nothing drop everything created from files, and only that.
    let changes = site.apply().await.expect("empty files");
    assert_eq!(
        sorted(changes.dropped),
        ["foreign table sales.orders", "server \"wh\"", "user mapping for public on server \"wh\""]
    );
    assert_eq!(one(&direct, "SELECT string_agg(name, ',') FROM pgfed.servers").await, "user_made");
    drop(via);
    site.finish().await;
}

#[tokio::test]
async fn import_foreign_schema_in_a_file_follows_the_remote_schema() {
    let site = Site::new().await;
    let direct = site.direct().await;
    direct
        .batch_execute(
            "CREATE SCHEMA upstream_src; CREATE SCHEMA mirror;
             CREATE TABLE upstream_src.a (id int, v text); CREATE TABLE upstream_src.b (id bigint);
             CREATE TABLE upstream_src.skipped (x int);
             INSERT INTO upstream_src.a VALUES (1, 'x'), (2, 'y');",
        )
        .await
        .expect("remote schema");
    site.write(
        "catalog.sql",
        &format!(
            "{}CREATE USER MAPPING FOR CURRENT_USER SERVER src OPTIONS (user 'postgres');
             IMPORT FOREIGN SCHEMA upstream_src EXCEPT (skipped) FROM SERVER src INTO mirror;",
            site.server_sql("src")
        ),
    );
    let changes = site.apply().await.expect("apply");
    assert_eq!(
        sorted(changes.created),
        [
            "foreign table mirror.a",
            "foreign table mirror.b",
            "server \"src\"",
            "user mapping for postgres on server \"src\""
        ]
    );
    assert!(site.apply().await.expect("again").is_empty());

    direct
        .batch_execute("ALTER TABLE upstream_src.a ADD COLUMN w int; DROP TABLE upstream_src.b; CREATE TABLE upstream_src.c (id int);")
        .await
        .expect("remote change");
    let changes = site.apply().await.expect("follow the remote");
    assert_eq!(changes.created, ["foreign table mirror.c"]);
    assert_eq!(changes.dropped, ["foreign table mirror.b"]);
    assert_eq!(changes.altered.len(), 1, "{:?}", changes.altered);
    assert!(changes.altered[0].starts_with("foreign table mirror.a (column w added"), "{:?}", changes.altered);
    let (_proxy, via) = site.proxy().await;
    let expected = text_rows(&[&[Some("x"), None], &[Some("y"), None]]);
    assert_eq!(eventually(&via, "SELECT v, w::text AS w FROM mirror.a ORDER BY v", &expected).await, expected);
    site.finish().await;
}

#[tokio::test]
async fn secrets_come_from_the_environment_or_files_and_errors_name_only_the_reference() {
    let site = Site::new().await;
    let direct = site.direct().await;
    direct.batch_execute("CREATE TABLE remote_t (id int); INSERT INTO remote_t VALUES (5);").await.expect("data");
    std::fs::write(site.dir.join("catalog/pw.secret"), "file-s3cret\n").expect("secret file");
    // PGFED_TEST_PG_DB is set in every test run (the test cluster's database).
    let file = format!(
        "CREATE SERVER s FOREIGN DATA WRAPPER postgres
             OPTIONS (host '{}', port '{}', dbname '${{env:PGFED_TEST_PG_DB}}');
         CREATE USER MAPPING FOR PUBLIC SERVER s OPTIONS (user 'postgres', password '${{file:pw.secret}}');",
        site.pg.host, site.pg.port
    );
    site.write("main.sql", &file);
    site.apply().await.expect("apply");
    assert_eq!(
        one(&direct, "SELECT options->>'dbname' FROM pgfed.servers WHERE name = 's'").await,
        site.pg.db,
        "the variable's value is stored"
    );
    assert_eq!(
        one(&direct, "SELECT options->>'password' FROM pgfed.user_mapping_options WHERE server = 's'").await,
        "file-s3cret"
    );

    // A missing variable fails before anything is applied, naming the variable and the statement.
    site.write("main.sql", &file.replace("PGFED_TEST_PG_DB", "PGFED_GITOPS_SURELY_UNSET"));
    let e = site.apply().await.expect_err("missing variable");
    let message = e.to_string();
    assert!(message.contains("main.sql:1 (statement 1)"), "{message}");
    assert!(
        message.ends_with("option \"dbname\": environment variable PGFED_GITOPS_SURELY_UNSET is not set"),
        "{message}"
    );

    // A statement that does not parse: the file, its line and the catalog's 42601.
    site.write("main.sql", &format!("{file}\n\nCREATE FOREIGN TABLE t (id int) SERVER s OPTIONS (table_name);"));
    let e = site.apply().await.expect_err("syntax");
    let message = e.to_string();
    assert!(message.contains("main.sql:5 (statement 3): syntax error"), "{message}");
    assert!(message.contains("(SQLSTATE 42601)"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");

    // An option the connector rejects: its own SQLSTATE and the list of valid options.
    site.write("main.sql", &file.replace("password '", "passwd '"));
    let e = site.apply().await.expect_err("bad option");
    let message = e.to_string();
    assert!(message.contains("main.sql:3 (statement 2)") && message.contains("passwd"), "{message}");
    assert!(message.contains("HINT") && !message.contains("s3cret"), "{message}");

    // Nothing of the failed runs was applied.
    assert_eq!(one(&direct, "SELECT count(*)::text FROM pgfed.declared_servers").await, "1");
    site.finish().await;
}

#[tokio::test]
async fn catalog_files_need_the_service_user() {
    let site = Site::new().await;
    site.write("x.sql", "");
    let mut c = Config::default();
    c.upstream.url = format!("postgres://{}:{}/{}?sslmode=disable", site.pg.host, site.pg.port, site.db);
    c.catalog.files = vec![site.dir.join("catalog/*.sql")];
    let e = pgfed_federation::apply_catalog_files(&c.validate().expect("valid")).await.expect_err("no user");
    assert!(e.to_string().contains("names no user"), "{e}");
    let missing = Path::new("/nonexistent/pgfed/*.sql").to_path_buf();
    let mut c = Config::default();
    c.upstream.url = site.url();
    c.catalog.files = vec![missing];
    let e = pgfed_federation::apply_catalog_files(&c.validate().expect("valid")).await.expect_err("no files");
    assert!(e.to_string().contains("/nonexistent/pgfed"), "{e}");
    site.finish().await;
}

/// Managed Postgres: the service role is no superuser. An administrator ran the bootstrap and
/// granted what the files need; the role's own objects are compared through row-level security.
#[tokio::test]
async fn a_service_role_without_superuser_applies_the_files() {
    let site = Site::new().await;
    let direct = site.direct().await;
    direct.batch_execute(pgfed_catalog::bootstrap_sql()).await.expect("bootstrap as administrator");
    direct
        .batch_execute(
            "GRANT INSERT ON pgfed.servers TO pgfed_trust;
             GRANT INSERT, DELETE ON pgfed.declared_servers, pgfed.declared_user_mappings, pgfed.declared_tables
               TO pgfed_trust;
             CREATE SCHEMA feeds AUTHORIZATION pgfed_trust;
             CREATE TABLE remote_feed (id int, title text); INSERT INTO remote_feed VALUES (1, 'a'), (2, 'b');
             GRANT SELECT ON remote_feed TO pgfed_trust;",
        )
        .await
        .expect("grants");
    site.write(
        "feeds.sql",
        &format!(
            "{}CREATE USER MAPPING FOR CURRENT_USER SERVER feed OPTIONS (user 'pgfed_trust');
             CREATE FOREIGN TABLE feeds.items (id int, title text) SERVER feed OPTIONS (table_name 'remote_feed');",
            site.server_sql("feed")
        ),
    );
    let mut c = Config::default();
    c.upstream.url = site.url().replace("postgres://postgres@", "postgres://pgfed_trust@");
    c.catalog.files = vec![site.dir.join("catalog/*.sql")];
    let config = c.validate().expect("valid");
    let changes = pgfed_federation::apply_catalog_files(&config).await.expect("apply").expect("files");
    assert_eq!(changes.created.len(), 3, "{changes:?}");
    let again = pgfed_federation::apply_catalog_files(&config).await.expect("again").expect("files");
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(
        rows(&direct, "SELECT owner::text, (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'feeds.items'::regclass) FROM pgfed.servers").await,
        [[Some("pgfed_trust".to_string()), Some("pgfed_trust".to_string())]]
    );
    // A role without the grants gets Postgres's own error, with the place.
    site.write("feeds.sql", "CREATE SERVER other FOREIGN DATA WRAPPER postgres OPTIONS (host 'h');");
    let mut c = Config::default();
    c.upstream.url = site.url().replace("postgres://postgres@", "postgres://pgfed_md5:pw_md5@");
    c.catalog.files = vec![site.dir.join("catalog/*.sql")];
    let e = pgfed_federation::apply_catalog_files(&c.validate().expect("valid")).await.expect_err("no privilege");
    assert_eq!(e.sqlstate(), Some("42501"), "{e}");
    assert!(e.to_string().contains("permission denied"), "{e}");
    assert_eq!(e.to_string().matches("SQLSTATE").count(), 1, "{e}");
    assert!(!e.to_string().contains("pw_md5"), "{e}");
    site.finish().await;
}
