//! TLS to the remote server: sslmode and sslrootcert as libpq reads them.

use arrow_schema::DataType;
use pgfed_connector_sdk::ScanRequest;

use crate::*;

async fn ssl_connections(user: &str) -> (i64, i64) {
    let client = TestPg::from_env().superuser().await;
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
               FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE a.usename = $1 AND a.application_name = 'pgfed'",
            &[&user],
        )
        .await
        .expect("pg_stat_ssl");
    (row.get(0), row.get(1))
}

fn setup(host: &str, tls: &[(&str, &str)]) -> Setup {
    let pg = TestPg::from_env();
    let mut s = Setup::new("t_tls", vec![col("id", DataType::Int32)]);
    s.server = opts(&[("host", host), ("port", &pg.port.to_string()), ("dbname", &pg.db)]);
    s.server.extend(opts(tls));
    s.user_mapping = opts(&[("user", "pgfed_md5"), ("password", "pw_md5")]);
    s
}

async fn rows(s: &Setup) -> Result<usize, ConnectorError> {
    let table = s.open().await?;
    let batches = scan(table.as_ref(), ScanRequest { columns: vec!["id".into()], ..Default::default() }).await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

#[tokio::test]
async fn sslmodes_encrypt_and_verify_like_libpq() {
    exec(
        "DROP TABLE IF EXISTS t_tls; CREATE TABLE t_tls (id int4); INSERT INTO t_tls VALUES (1), (2);
          GRANT SELECT ON t_tls TO pgfed_md5;",
    )
    .await;
    let ca = std::env::var("PGFED_TEST_PG_CA").expect("PGFED_TEST_PG_CA");
    assert_eq!(rows(&setup("127.0.0.1", &[("sslmode", "require")])).await.expect("require"), 2);
    assert_eq!(rows(&setup("127.0.0.1", &[("sslmode", "prefer")])).await.expect("prefer"), 2);
    assert_eq!(
        rows(&setup("localhost", &[("sslmode", "verify-full"), ("sslrootcert", &ca)])).await.expect("verify-full"),
        2
    );
    assert_eq!(
        rows(&setup("127.0.0.1", &[("sslmode", "verify-ca"), ("sslrootcert", &ca)])).await.expect("verify-ca"),
        2
    );
    // Every pooled connection of this user is encrypted; with sslmode disable one is not.
    let (ssl, plain) = ssl_connections("pgfed_md5").await;
    assert!(ssl >= 1 && plain == 0, "{ssl} encrypted, {plain} plain");
    assert_eq!(rows(&setup("127.0.0.1", &[("sslmode", "disable")])).await.expect("disable"), 2);
    assert_eq!(ssl_connections("pgfed_md5").await.1, 1);

    // A certificate that does not chain to the given root fails, as does a missing root file.
    let other_root = pgfed_testkit::TestCert::generate().ca_file;
    let e = rows(&setup("127.0.0.1", &[("sslmode", "verify-ca"), ("sslrootcert", &other_root.display().to_string())]))
        .await
        .expect_err("unknown issuer");
    assert_eq!(e.sqlstate(), "HV00N", "{e}");
    let e = rows(&setup("127.0.0.1", &[("sslmode", "verify-full"), ("sslrootcert", "/nonexistent/root.pem")]))
        .await
        .expect_err("no root file");
    assert_eq!(e.sqlstate(), "HV00N", "{e}");
    // require with a root file verifies the chain (libpq does the same).
    let e = rows(&setup("127.0.0.1", &[("sslmode", "require"), ("sslrootcert", &other_root.display().to_string())]))
        .await
        .expect_err("require with a root verifies");
    assert_eq!(e.sqlstate(), "HV00N", "{e}");
}
