//! Remote transactions tied to the client's (begin / pre_commit / commit / rollback), cursor
//! scans inside them, and connection reuse.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::Int64Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_schema::DataType;
use futures_util::StreamExt;
use pgfed_connector_postgres::PostgresWrapper;
use pgfed_connector_sdk::{ConnectorError, ForeignTable, ScanRequest, Wrapper};

use crate::write::{batch, remote_rows};
use crate::*;

async fn items(name: &str, rows: i64) {
    exec(&format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int8 PRIMARY KEY);
         INSERT INTO {name} SELECT generate_series(1, {rows});
         GRANT ALL ON {name} TO pgfed_trust, pgfed_password;"
    ))
    .await;
}

fn setup(table: &str) -> Setup {
    Setup::new(table, vec![col("id", DataType::Int64)])
}

async fn open_in(wrapper: &Arc<dyn Wrapper>, setup: &Setup) -> Arc<dyn ForeignTable> {
    wrapper.open(setup.request().expect("options")).await.expect("open")
}

fn ids(n: impl IntoIterator<Item = i64>) -> arrow_array::RecordBatch {
    batch(vec![("id", Arc::new(Int64Array::from(n.into_iter().collect::<Vec<_>>())))])
}

async fn count(table: &dyn ForeignTable) -> usize {
    let batches = scan(table, ScanRequest { columns: vec!["id".into()], ..Default::default() }).await.expect("scan");
    batches.iter().map(|b| b.num_rows()).sum()
}

fn session() -> Arc<dyn Wrapper> {
    PostgresWrapper.for_session().expect("a per-session wrapper")
}

#[tokio::test]
async fn remote_work_is_one_transaction_across_statements_committed_at_pre_commit() {
    items("x_commit", 3).await;
    let wrapper = session();
    let s = setup("x_commit");
    // Statement 1 of the client's transaction.
    let t1 = open_in(&wrapper, &s).await;
    t1.begin().await.expect("begin");
    t1.insert(ids([10, 11]), &[], &ctx()).await.expect("insert");
    // Statement 2 opens the table again and sees the uncommitted rows; nobody else does.
    let t2 = open_in(&wrapper, &s).await;
    t2.delete(ids([1]), &[], &ctx()).await.expect("delete");
    assert_eq!(count(t2.as_ref()).await, 4);
    assert_eq!(remote_rows("SELECT count(*)::text FROM x_commit").await, ["3"]);
    t1.pre_commit().await.expect("pre_commit");
    // A second table's pre_commit finds nothing left to do.
    t2.pre_commit().await.expect("pre_commit again");
    t1.commit().await.expect("commit");
    t2.commit().await.expect("commit");
    assert_eq!(remote_rows("SELECT string_agg(id::text, ',' ORDER BY id) FROM x_commit").await, ["2,3,10,11"]);
}

#[tokio::test]
async fn rollback_undoes_remote_writes() {
    items("x_rollback", 3).await;
    let wrapper = session();
    let t = open_in(&wrapper, &setup("x_rollback")).await;
    t.begin().await.expect("begin");
    t.insert(ids([7]), &[], &ctx()).await.expect("insert");
    t.delete(ids([1, 2, 3]), &[], &ctx()).await.expect("delete");
    assert_eq!(count(t.as_ref()).await, 1);
    t.rollback().await.expect("rollback");
    assert_eq!(remote_rows("SELECT string_agg(id::text, ',' ORDER BY id) FROM x_rollback").await, ["1,2,3"]);
    // After the transaction, writes autocommit again.
    t.insert(ids([8]), &[], &ctx()).await.expect("insert");
    assert_eq!(remote_rows("SELECT count(*)::text FROM x_rollback").await, ["4"]);
}

#[tokio::test]
async fn statements_of_a_transaction_share_one_repeatable_read_snapshot() {
    items("x_snapshot", 5).await;
    let wrapper = session();
    let s = setup("x_snapshot");
    let t1 = open_in(&wrapper, &s).await;
    t1.begin().await.expect("begin");
    assert_eq!(count(t1.as_ref()).await, 5);
    exec("INSERT INTO x_snapshot VALUES (100)").await;
    let t2 = open_in(&wrapper, &s).await;
    assert_eq!(count(t2.as_ref()).await, 5, "same snapshot as the first statement");
    t2.pre_commit().await.expect("pre_commit");
    t2.commit().await.expect("commit");
    assert_eq!(count(open_in(&wrapper, &s).await.as_ref()).await, 6);
}

#[tokio::test]
async fn a_failing_remote_commit_fails_pre_commit() {
    exec(
        "DROP TABLE IF EXISTS x_deferred;
         CREATE TABLE x_deferred (id int8 PRIMARY KEY, v int8 UNIQUE DEFERRABLE INITIALLY DEFERRED);",
    )
    .await;
    let wrapper = session();
    let s = Setup::new("x_deferred", vec![col("id", DataType::Int64), col("v", DataType::Int64)]);
    let t = open_in(&wrapper, &s).await;
    t.begin().await.expect("begin");
    let rows =
        batch(vec![("id", Arc::new(Int64Array::from(vec![1, 2]))), ("v", Arc::new(Int64Array::from(vec![5, 5])))]);
    t.insert(rows, &[], &ctx()).await.expect("deferred: no error yet");
    let e = t.pre_commit().await.expect_err("unique violation at COMMIT");
    assert!(matches!(&e, ConnectorError::Remote { code: Some(c), .. } if c == "23505"), "{e}");
    t.rollback().await.expect("rollback");
    assert_eq!(remote_rows("SELECT count(*)::text FROM x_deferred").await, ["0"]);
    // The session goes on.
    t.insert(batch(vec![("id", Arc::new(Int64Array::from(vec![3])))]), &[], &ctx()).await.expect("insert");
    assert_eq!(remote_rows("SELECT count(*)::text FROM x_deferred").await, ["1"]);
}

#[tokio::test]
async fn interleaved_scans_inside_a_transaction_share_the_connection_without_deadlock() {
    items("x_interleave", 1000).await;
    let wrapper = session();
    let mut s = setup("x_interleave");
    s.table.push(("fetch_size".into(), "100".into()));
    let a = open_in(&wrapper, &s).await;
    let b = open_in(&wrapper, &s).await;
    a.begin().await.expect("begin");
    let request = || ScanRequest { columns: vec!["id".into()], ..Default::default() };
    let work = async {
        let mut sa = a.scan(request(), ctx()).await.expect("scan a");
        let first = sa.next().await.expect("a batch").expect("ok");
        assert_eq!(first.num_rows(), 100, "one FETCH per batch");
        // Drain the other scan completely while the first is mid-way (a hash join's build side).
        let mut sb = b.scan(request(), ctx()).await.expect("scan b");
        let mut nb = 0;
        while let Some(batch) = sb.next().await {
            nb += batch.expect("ok").num_rows();
        }
        let mut na = first.num_rows();
        let mut last = first.column(0).as_primitive::<Int64Type>().value(99);
        while let Some(batch) = sa.next().await {
            let batch = batch.expect("ok");
            let ids = batch.column(0).as_primitive::<Int64Type>();
            assert!(ids.value(0) > last);
            last = ids.value(ids.len() - 1);
            na += batch.num_rows();
        }
        (na, nb)
    };
    let (na, nb) = tokio::time::timeout(Duration::from_secs(20), work).await.expect("no deadlock");
    assert_eq!((na, nb), (1000, 1000));
    // A scan dropped early closes its cursor; the transaction goes on.
    let mut sc = a.scan(request(), ctx()).await.expect("scan c");
    sc.next().await.expect("a batch").expect("ok");
    drop(sc);
    assert_eq!(count(b.as_ref()).await, 1000);
    a.pre_commit().await.expect("pre_commit");
}

#[tokio::test]
async fn a_cancelled_cursor_scan_fails_the_statement_and_rollback_recovers() {
    items("x_cancel", 10).await;
    exec(
        "CREATE OR REPLACE VIEW x_slow AS SELECT g::int8 AS id FROM generate_series(1, 1000000) g
           WHERE pg_catalog.pg_sleep(0.001) IS NOT NULL;",
    )
    .await;
    let wrapper = session();
    let slow = open_in(&wrapper, &setup("x_slow")).await;
    slow.begin().await.expect("begin");
    let mut context = ctx();
    context.deadline = Some(Instant::now() + Duration::from_millis(300));
    let started = Instant::now();
    let result = async {
        let mut stream = slow.scan(ScanRequest { columns: vec!["id".into()], ..Default::default() }, context).await?;
        while let Some(batch) = stream.next().await {
            batch?;
        }
        Ok::<_, ConnectorError>(())
    }
    .await;
    assert!(matches!(result, Err(ConnectorError::TimedOut)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    slow.rollback().await.expect("rollback");
    // The next transaction works on the same session.
    let t = open_in(&wrapper, &setup("x_cancel")).await;
    t.begin().await.expect("begin");
    assert_eq!(count(t.as_ref()).await, 10);
    t.pre_commit().await.expect("pre_commit");
}

async fn connections_of(user: &str) -> i64 {
    let client = TestPg::from_env().superuser().await;
    client
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND application_name = 'pgfed'", &[&user])
        .await
        .expect("pg_stat_activity")
        .get(0)
}

async fn wait_for_connections(user: &str, expected: i64) {
    let start = Instant::now();
    while connections_of(user).await != expected {
        assert!(start.elapsed() < Duration::from_secs(5), "{user}: {} connections", connections_of(user).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_session_reuses_one_connection_across_statements_and_closes_it_at_the_end() {
    items("x_reuse", 3).await;
    let wrapper = session();
    let mut s = setup("x_reuse");
    s.user_mapping = opts(&[("user", "pgfed_trust")]);
    for i in 0..5 {
        let t = open_in(&wrapper, &s).await;
        assert_eq!(count(t.as_ref()).await, 3 + i);
        t.insert(ids([100 + i as i64]), &[], &ctx()).await.expect("insert");
        t.begin().await.expect("begin");
        assert_eq!(count(t.as_ref()).await, 4 + i);
        t.pre_commit().await.expect("pre_commit");
    }
    assert_eq!(connections_of("pgfed_trust").await, 1);
    drop(wrapper);
    wait_for_connections("pgfed_trust", 0).await;
}

#[tokio::test]
async fn the_shared_instance_pools_connections_across_statements() {
    items("x_shared", 2).await;
    let mut s = setup("x_shared");
    s.user_mapping = opts(&[("user", "pgfed_password"), ("password", "pw_cleartext")]);
    for _ in 0..5 {
        let t = s.open().await.expect("open");
        assert_eq!(count(t.as_ref()).await, 2);
    }
    assert_eq!(connections_of("pgfed_password").await, 1);
}
