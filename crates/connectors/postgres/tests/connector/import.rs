//! IMPORT FOREIGN SCHEMA: tables and views with their declared types, NOT NULL, options,
//! LIMIT TO / EXCEPT, and columns of types pgfed cannot hold.

use std::sync::{Arc, Mutex};

use pgfed_connector_postgres::PostgresWrapper;
use pgfed_connector_sdk::{
    ImportRequest, ImportedTable, Notice, NoticeLevel, OptionLevel, ScanContext, Wrapper, validate_options,
};
use tokio_util::sync::CancellationToken;

use crate::*;

fn request(schema: &str, limit_to: Option<&[&str]>, except: &[&str]) -> ImportRequest {
    let specs = PostgresWrapper.options();
    ImportRequest {
        server: validate_options(specs, OptionLevel::Server, &server_opts(&[])).expect("server options"),
        user_mapping: validate_options(specs, OptionLevel::UserMapping, &opts(&[("user", "postgres")]))
            .expect("user mapping options"),
        remote_schema: schema.into(),
        limit_to: limit_to.map(|names| names.iter().map(|n| n.to_string()).collect()),
        except: except.iter().map(|n| n.to_string()).collect(),
    }
}

fn ctx_collecting() -> (ScanContext, Arc<Mutex<Vec<Notice>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let ctx = ScanContext {
        cancel: CancellationToken::new(),
        deadline: None,
        notices: Arc::new(move |n| sink.lock().expect("notices").push(n)),
        user: "postgres".into(),
    };
    (ctx, notices)
}

fn names(tables: &[ImportedTable]) -> Vec<&str> {
    tables.iter().map(|t| t.name.as_str()).collect()
}

fn columns(table: &ImportedTable) -> Vec<(&str, &str, bool)> {
    table.columns.iter().map(|c| (c.name.as_str(), c.pg_type.as_str(), c.not_null)).collect()
}

fn option<'a>(options: &'a [(String, String)], name: &str) -> Option<&'a str> {
    options.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn setup(schema: &str) {
    let sql = "DROP SCHEMA IF EXISTS imp_src CASCADE; CREATE SCHEMA imp_src;
         CREATE DOMAIN imp_src.money12 AS numeric(12,2) CHECK (VALUE >= 0);
         CREATE TABLE imp_src.orders (
             id integer PRIMARY KEY, amount numeric(12,2) NOT NULL, name character varying(20),
             code char(3), at timestamp with time zone, day date, t time, span interval, big bigint,
             small smallint, r real, d double precision, ok boolean, raw bytea, u uuid, j jsonb, js json,
             price imp_src.money12, free numeric, plain text NOT NULL DEFAULT '', ts timestamp(3));
         CREATE TABLE imp_src.\"Odd \"\"Name\"\"\" (\"Id\" int, spot point, tags text[]);
         CREATE VIEW imp_src.big_orders AS SELECT id, amount FROM imp_src.orders WHERE amount > 100;
         CREATE TABLE imp_src.parted (k int NOT NULL, v text) PARTITION BY RANGE (k);
         CREATE TABLE imp_src.parted_1 PARTITION OF imp_src.parted FOR VALUES FROM (0) TO (10);
         CREATE TABLE imp_src.empty ();
         CREATE SEQUENCE imp_src.not_a_table;";
    exec(&sql.replace("imp_src", schema)).await;
}

#[tokio::test]
async fn imports_tables_views_and_types_with_postgres_fdw_options() {
    setup("imp_0").await;
    let (ctx, notices) = ctx_collecting();
    let tables = PostgresWrapper.import_schema_in(request("imp_0", None, &[]), &ctx).await.expect("import");
    // Partitions are left out (their parent is imported), as are sequences.
    assert_eq!(names(&tables), ["Odd \"Name\"", "big_orders", "empty", "orders", "parted"]);
    let orders = &tables[3];
    assert_eq!(
        columns(orders),
        [
            ("id", "integer", true),
            ("amount", "numeric(12,2)", true),
            ("name", "character varying(20)", false),
            ("code", "character(3)", false),
            ("at", "timestamp with time zone", false),
            ("day", "date", false),
            ("t", "time without time zone", false),
            ("span", "interval", false),
            ("big", "bigint", false),
            ("small", "smallint", false),
            ("r", "real", false),
            ("d", "double precision", false),
            ("ok", "boolean", false),
            ("raw", "bytea", false),
            ("u", "uuid", false),
            ("j", "jsonb", false),
            ("js", "json", false),
            // A domain is declared as its base type.
            ("price", "numeric(12,2)", false),
            ("free", "numeric", false),
            ("plain", "text", true),
            ("ts", "timestamp(3) without time zone", false),
        ]
    );
    assert_eq!(option(&orders.options, "schema_name"), Some("imp_0"));
    assert_eq!(option(&orders.options, "table_name"), Some("orders"));
    assert!(orders.columns.iter().all(|c| option(&c.options, "column_name") == Some(c.name.as_str())));
    assert_eq!(columns(&tables[1]), [("id", "integer", false), ("amount", "numeric(12,2)", false)]);
    assert_eq!(columns(&tables[4]), [("k", "integer", true), ("v", "text", false)]);
    assert!(tables[2].columns.is_empty());

    // The odd table is imported without its point and array columns, and says so.
    let odd = &tables[0];
    assert_eq!(columns(odd), [("Id", "integer", false)]);
    assert_eq!(option(&odd.options, "table_name"), Some("Odd \"Name\""));
    let notices = notices.lock().expect("notices").clone();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].level, NoticeLevel::Warning);
    assert!(notices[0].message.contains("Odd \"Name\""), "{}", notices[0].message);
    let detail = notices[0].detail.as_deref().unwrap_or_default();
    assert!(detail.contains("\"spot\" (point)") && detail.contains("\"tags\" (text[])"), "{detail}");
}

#[tokio::test]
async fn limit_to_and_except_choose_tables() {
    setup("imp_1").await;
    let (ctx, _) = ctx_collecting();
    let some = PostgresWrapper
        .import_schema_in(request("imp_1", Some(&["orders", "big_orders", "missing", "parted_1"]), &[]), &ctx)
        .await
        .expect("import LIMIT TO");
    assert_eq!(names(&some), ["big_orders", "orders"]);
    let rest = PostgresWrapper
        .import_schema_in(request("imp_1", None, &["orders", "Odd \"Name\""]), &ctx)
        .await
        .expect("import EXCEPT");
    assert_eq!(names(&rest), ["big_orders", "empty", "parted"]);
    let none = PostgresWrapper.import_schema_in(request("imp_1", Some(&[]), &[]), &ctx).await.expect("empty");
    assert!(none.is_empty());
}

#[tokio::test]
async fn without_a_context_unsupported_columns_are_an_error_not_a_silent_omission() {
    setup("imp_2").await;
    let e = PostgresWrapper.import_schema(request("imp_2", None, &[])).await.expect_err("point column");
    assert_eq!(e.sqlstate(), "HV004");
    assert!(e.to_string().contains("Odd \"Name\".spot") && e.to_string().contains("EXCEPT"), "{e}");
    let tables = PostgresWrapper.import_schema(request("imp_2", None, &["Odd \"Name\""])).await.expect("import EXCEPT");
    assert_eq!(names(&tables), ["big_orders", "empty", "orders", "parted"]);
}

#[tokio::test]
async fn a_missing_schema_or_server_is_an_error() {
    let (ctx, _) = ctx_collecting();
    let e = PostgresWrapper.import_schema_in(request("imp_nowhere", None, &[]), &ctx).await.expect_err("no schema");
    assert_eq!(e.sqlstate(), "HV000");
    assert!(e.to_string().contains("schema \"imp_nowhere\" is not present on foreign server"), "{e}");
    let mut r = request("public", None, &[]);
    let specs = PostgresWrapper.options();
    r.server =
        validate_options(specs, OptionLevel::Server, &opts(&[("host", "127.0.0.1"), ("port", "1")])).expect("options");
    let e = PostgresWrapper.import_schema_in(r, &ctx).await.expect_err("unreachable");
    assert_eq!(e.sqlstate(), "HV00N");
}

#[tokio::test]
async fn the_session_user_is_the_default_remote_user() {
    setup("imp_4").await;
    let (mut ctx, _) = ctx_collecting();
    let mut r = request("imp_4", Some(&["orders"]), &[]);
    r.user_mapping = validate_options(PostgresWrapper.options(), OptionLevel::UserMapping, &[]).expect("empty");
    let e = PostgresWrapper.import_schema(r.clone()).await.expect_err("no user without a context");
    assert_eq!(e.sqlstate(), "HV00J");
    let tables = PostgresWrapper.import_schema_in(r.clone(), &ctx).await.expect("as postgres");
    assert_eq!(names(&tables), ["orders"]);
    ctx.user = "pgfed_no_such_role".into();
    let e = PostgresWrapper.import_schema_in(r, &ctx).await.expect_err("unknown role");
    assert_eq!(e.sqlstate(), "HV00N");
}
