//! Writes to foreign tables through pgfed (tokio-postgres as the client): command tags,
//! RETURNING rows, parameters typed from the target columns, Postgres's errors.

use std::sync::atomic::{AtomicU32, Ordering};

use pgfed_testkit::{TestPg, TestProxy};
use tokio_postgres::SimpleQueryMessage;

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

#[tokio::test]
async fn insert_update_delete_through_pgfed() {
    let proxy = start().await;
    let c = proxy.connect("postgres", None).await;
    let pg = &proxy.pg;
    let n = format!("wr_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    pg.superuser()
        .await
        .batch_execute(&format!("CREATE TABLE {n}_remote (id serial PRIMARY KEY, name text, day date)"))
        .await
        .expect("remote table");
    c.batch_execute(&format!(
        "CREATE SERVER {n}_srv FOREIGN DATA WRAPPER postgres OPTIONS (host '{}', port '{}', dbname '{}');
         CREATE USER MAPPING FOR PUBLIC SERVER {n}_srv OPTIONS (user 'postgres');
         CREATE FOREIGN TABLE {n} (id int, name text, day date) SERVER {n}_srv OPTIONS (table_name '{n}_remote');",
        pg.host, pg.port, pg.db
    ))
    .await
    .expect("DDL");

    let messages = c
        .simple_query(&format!("INSERT INTO {n} (name, day) VALUES ('a', '2024-05-06'), ('b', NULL) RETURNING id, day"))
        .await
        .expect("insert");
    let mut rows = Vec::new();
    let mut tag = None;
    for m in messages {
        match m {
            SimpleQueryMessage::Row(r) => rows.push((r.get(0).map(str::to_string), r.get(1).map(str::to_string))),
            SimpleQueryMessage::CommandComplete(k) => tag = Some(k),
            _ => {}
        }
    }
    assert_eq!(tag, Some(2));
    assert_eq!(rows, vec![(Some("1".into()), Some("2024-05-06".into())), (Some("2".into()), None)]);

    // Extended protocol: $1 takes the column's type (date), $2 the id's.
    let stmt = c.prepare(&format!("UPDATE {n} SET day = $1 WHERE id = $2")).await.expect("prepare");
    assert_eq!(stmt.params(), &[tokio_postgres::types::Type::DATE, tokio_postgres::types::Type::INT4]);
    assert!(stmt.columns().is_empty(), "no RETURNING: NoData");
    let day = "2025-01-31";
    let updated =
        c.execute(&format!("UPDATE {n} SET day = $1::text::date WHERE id = $2"), &[&day, &2i32]).await.expect("update");
    assert_eq!(updated, 1);
    assert_eq!(c.execute(&format!("DELETE FROM {n} WHERE name = 'a'"), &[]).await.expect("delete"), 1);
    let remote = pg
        .superuser()
        .await
        .query(&format!("SELECT id, name, day::text FROM {n}_remote ORDER BY id"), &[])
        .await
        .expect("remote rows");
    let remote: Vec<(i32, String, String)> = remote.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(remote, vec![(2, "b".to_string(), "2025-01-31".to_string())]);

    // Postgres's own error for a value out of range, and the session goes on.
    let e = c.simple_query(&format!("INSERT INTO {n} (id) VALUES (3000000000)")).await.expect_err("out of range");
    assert_eq!(e.code().map(|c| c.code()), Some("22003"), "{e}");
    assert_eq!(c.execute(&format!("DELETE FROM {n}"), &[]).await.expect("delete all"), 1);
}

/// Remote writes inside BEGIN ... COMMIT/ROLLBACK follow the client's transaction: kept on
/// COMMIT, undone on ROLLBACK (also when a later error aborted the block), and ROLLBACK TO
/// SAVEPOINT is refused once remote work exists.
#[tokio::test]
async fn writes_follow_the_client_transaction() {
    let proxy = start().await;
    let mut c = proxy.connect("postgres", None).await;
    let pg = &proxy.pg;
    let n = format!("wtx_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let direct = pg.superuser().await;
    direct.batch_execute(&format!("CREATE TABLE {n}_remote (id int PRIMARY KEY, v text)")).await.expect("remote");
    c.batch_execute(&format!(
        "CREATE SERVER {n}_srv FOREIGN DATA WRAPPER postgres OPTIONS (host '{}', port '{}', dbname '{}');
         CREATE USER MAPPING FOR PUBLIC SERVER {n}_srv OPTIONS (user 'postgres');
         CREATE FOREIGN TABLE {n} (id int, v text) SERVER {n}_srv OPTIONS (table_name '{n}_remote');",
        pg.host, pg.port, pg.db
    ))
    .await
    .expect("DDL");
    let remote = |sql: String| {
        let direct = &direct;
        async move { direct.query_one(&sql, &[]).await.expect("count").get::<_, i64>(0) }
    };

    // ROLLBACK undoes the remote insert.
    let tx = c.transaction().await.expect("begin");
    tx.execute(&format!("INSERT INTO {n} VALUES (1, 'rolled back')"), &[]).await.expect("insert");
    tx.rollback().await.expect("rollback");
    assert_eq!(remote(format!("SELECT count(*) FROM {n}_remote")).await, 0);

    // COMMIT keeps it, with the upstream's local work in the same block.
    let tx = c.transaction().await.expect("begin");
    tx.execute(&format!("INSERT INTO {n} VALUES (2, 'kept')"), &[]).await.expect("insert");
    tx.commit().await.expect("commit");
    assert_eq!(remote(format!("SELECT count(*) FROM {n}_remote WHERE id = 2")).await, 1);

    // An error later in the block: COMMIT becomes ROLLBACK, remote work included.
    c.batch_execute("BEGIN").await.expect("begin");
    c.batch_execute(&format!("INSERT INTO {n} VALUES (3, 'doomed')")).await.expect("insert");
    let _ = c.batch_execute("SELECT 1/0").await.expect_err("error");
    let msgs = c.simple_query("COMMIT").await.expect("commit of a failed block");
    let tag = msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::CommandComplete(_) => Some(()),
        _ => None,
    });
    assert!(tag.is_some());
    assert_eq!(remote(format!("SELECT count(*) FROM {n}_remote WHERE id = 3")).await, 0);

    // ROLLBACK TO SAVEPOINT cannot undo remote work: refused.
    c.batch_execute("BEGIN; SAVEPOINT s").await.expect("block");
    c.batch_execute(&format!("INSERT INTO {n} VALUES (4, 'x')")).await.expect("insert");
    let e = c.batch_execute("ROLLBACK TO SAVEPOINT s").await.expect_err("refused");
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{e:?}");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(remote(format!("SELECT count(*) FROM {n}_remote WHERE id = 4")).await, 0);
}
