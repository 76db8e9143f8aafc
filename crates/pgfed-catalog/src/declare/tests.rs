use std::path::Path;

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "CH_PASSWORD" => Some("s3cr3t'pw".into()),
        "HOST" => Some("db.internal".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Declarations, DeclareError> {
    let mut d = Declarations::default();
    d.add_file(Path::new("catalog/main.sql"), text, &env)?;
    Ok(d)
}

fn registry() -> Registry {
    Registry::new([std::sync::Arc::new(pgfed_connector_postgres::PostgresWrapper) as _])
}

const FILE: &str = "-- the warehouse
CREATE SERVER wh FOREIGN DATA WRAPPER postgres OPTIONS (host '${env:HOST}', dbname 'wh');
CREATE USER MAPPING FOR PUBLIC SERVER wh OPTIONS (user 'reader', password '${env:CH_PASSWORD}');
GRANT USAGE ON FOREIGN SERVER wh TO PUBLIC;

CREATE FOREIGN TABLE sales.orders (id int NOT NULL, note text OPTIONS (column_name 'remark'))
    SERVER wh OPTIONS (table_name 'orders');
IMPORT FOREIGN SCHEMA public LIMIT TO (a, b) FROM SERVER wh INTO staging;
";

#[test]
fn a_file_declares_objects_with_references_expanded() {
    let d = parse(FILE).expect("valid file");
    assert_eq!(d.servers.len(), 1);
    assert_eq!(d.servers[0].1.options[0].value.as_deref(), Some("db.internal"));
    assert_eq!(d.mappings[0].1.options[1].value.as_deref(), Some("s3cr3t'pw"));
    assert_eq!((d.grants.len(), d.tables.len(), d.imports.len()), (1, 1, 1));
    let at = &d.tables[0].0;
    assert_eq!((at.line, at.statement), (6, 4));
    assert_eq!(at.to_string(), "catalog/main.sql:6 (statement 4)");
    d.check(&registry()).expect("checks pass");
    assert_eq!(d.summary(), "1 server, 1 user mapping, 1 foreign table, 1 IMPORT FOREIGN SCHEMA, 1 GRANT");
    // Debug never shows an option value.
    let debug = format!("{d:?}");
    assert!(!debug.contains("s3cr3t") && !debug.contains("db.internal"), "{debug}");
}

#[test]
fn a_missing_variable_names_the_variable_and_the_statement_not_a_value() {
    let e = parse(
        "CREATE SERVER s FOREIGN DATA WRAPPER postgres OPTIONS (host 'h');\n\
                   CREATE USER MAPPING FOR PUBLIC SERVER s OPTIONS (user 'u', password '${env:NOPE_PW}');",
    )
    .expect_err("unset variable");
    assert_eq!(
        e.to_string(),
        "catalog/main.sql:2 (statement 2): option \"password\": environment variable NOPE_PW is not set"
    );
}

#[test]
fn references_expand_only_inside_values_and_can_be_escaped() {
    let dir = Path::new(".");
    assert_eq!(expand("pre-${env:HOST}-$x-$${env:HOST}", dir, &env).expect("ok"), "pre-db.internal-$x-${env:HOST}");
    assert!(expand("${HOST}", dir, &env).expect_err("unknown").contains("unknown reference"));
    assert!(expand("${env:HOST", dir, &env).expect_err("unterminated").contains("closing"));
    assert!(expand("${env:1X}", dir, &env).expect_err("bad name").contains("not a valid"));
    let tmp = std::env::temp_dir().join(format!("pgfed-declare-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    std::fs::write(tmp.join("pw"), "from file\n").expect("write");
    assert_eq!(expand("${file:pw}", &tmp, &env).expect("file"), "from file");
    let e = expand("${file:missing}", &tmp, &env).expect_err("missing file");
    assert!(e.contains("missing"), "{e}");
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn a_syntax_error_gives_the_line_and_sqlstate() {
    let e = parse("CREATE SERVER a FOREIGN DATA WRAPPER postgres;\n\nCREATE SERVER b\n  FOREIGN DATA WRAPPER postgres OPTIONS (host);")
        .expect_err("syntax");
    let message = e.to_string();
    assert!(message.starts_with("catalog/main.sql:4 (statement 2): syntax error"), "{message}");
    assert!(message.ends_with("(SQLSTATE 42601)"), "{message}");
    assert_eq!(e.sqlstate(), Some("42601"));
}

#[test]
fn alter_drop_and_other_sql_are_refused() {
    for sql in [
        "ALTER SERVER s OPTIONS (SET host 'x')",
        "DROP FOREIGN TABLE t",
        "REVOKE USAGE ON FOREIGN SERVER s FROM PUBLIC",
    ] {
        let e = parse(sql).expect_err(sql);
        assert_eq!(e.sqlstate(), Some("0A000"), "{e}");
        assert!(e.to_string().contains("in a catalog file"), "{e}");
    }
    let e = parse("CREATE TABLE t (a int)").expect_err("plain SQL");
    assert!(e.to_string().contains("SQL/MED declarations only"), "{e}");
}

#[test]
fn checks_find_bad_options_duplicates_and_unknown_wrappers() {
    let e = parse("CREATE SERVER s FOREIGN DATA WRAPPER postgres OPTIONS (hots 'x');")
        .expect("parses")
        .check(&registry())
        .expect_err("bad option");
    let message = e.to_string();
    assert!(message.contains("hots") && message.contains("HINT"), "{message}");
    assert!(message.starts_with("catalog/main.sql:1 (statement 1)"), "{message}");

    let e =
        parse("CREATE SERVER s FOREIGN DATA WRAPPER nope;").expect("parses").check(&registry()).expect_err("wrapper");
    assert_eq!(e.sqlstate(), Some("42704"));

    let e = parse(
        "CREATE SERVER s FOREIGN DATA WRAPPER postgres OPTIONS (host 'h');\n\
         CREATE SERVER s FOREIGN DATA WRAPPER postgres OPTIONS (host 'h');",
    )
    .expect("parses")
    .check(&registry())
    .expect_err("duplicate");
    assert_eq!(
        e.to_string(),
        "catalog/main.sql:2 (statement 2): server \"s\" is declared twice (first at catalog/main.sql:1 (statement 1))"
    );

    let e = parse(
        "CREATE SERVER s FOREIGN DATA WRAPPER postgres OPTIONS (host 'h');\n\
         CREATE FOREIGN TABLE t (a int OPTIONS (colname 'x')) SERVER s OPTIONS (table_name 't');",
    )
    .expect("parses")
    .check(&registry())
    .expect_err("column option");
    assert!(e.to_string().contains("colname"), "{e}");

    let e =
        parse("GRANT USAGE ON FOREIGN SERVER other TO PUBLIC;").expect("parses").check(&registry()).expect_err("grant");
    assert!(e.to_string().contains("not declared in the catalog files"), "{e}");
}

#[test]
fn wildcards_match_file_names_like_a_shell() {
    assert!(wildcard_match("*.sql", "a.sql"));
    assert!(wildcard_match("a?c*.sql", "abc-1.sql"));
    assert!(!wildcard_match("*.sql", "a.sql.bak"));
    assert!(!wildcard_match("*.sql", ".hidden.sql"));
    assert!(wildcard_match("**", "x"));
}

#[test]
fn patterns_expand_in_order_and_must_match() {
    let tmp = std::env::temp_dir().join(format!("pgfed-patterns-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("sub")).expect("tmp dir");
    for f in ["b.sql", "a.sql", "c.txt"] {
        std::fs::write(tmp.join(f), "").expect("write");
    }
    let files = expand_patterns(&[tmp.join("*.sql"), tmp.join("a.sql")]).expect("matches");
    assert_eq!(files, [tmp.join("a.sql"), tmp.join("b.sql")]);
    let e = expand_patterns(&[tmp.join("*.psql")]).expect_err("no match");
    assert!(e.to_string().contains("matches no file"), "{e}");
    let e = expand_patterns(&[tmp.join("*").join("x.sql")]).expect_err("wildcard dir");
    assert!(e.to_string().contains("file name only"), "{e}");
    std::fs::remove_dir_all(&tmp).ok();
}
