//! Authentication is relayed: Postgres decides, with each method it supports.

use pgfed_testkit::{TestProxy, connect};
use tokio_postgres::error::SqlState;

async fn whoami(proxy: &TestProxy, user: &str, password: Option<&str>) -> Result<String, tokio_postgres::Error> {
    let c = connect(&proxy.conninfo(user, password)).await?;
    Ok(c.query_one("select current_user::text", &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_method_is_relayed_to_postgres() {
    let proxy = TestProxy::start().await;
    for (user, password) in [
        ("pgfed_trust", None),
        ("pgfed_password", Some("pw_cleartext")),
        ("pgfed_md5", Some("pw_md5")),
        ("pgfed_scram", Some("pw_scram")),
    ] {
        assert_eq!(whoami(&proxy, user, password).await.unwrap(), user, "{user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_get_postgres_own_error() {
    let proxy = TestProxy::start().await;
    for user in ["pgfed_password", "pgfed_md5", "pgfed_scram"] {
        let via = whoami(&proxy, user, Some("wrong")).await.unwrap_err();
        let direct = connect(&proxy.pg.direct(user, Some("wrong"))).await.unwrap_err();
        let (via, direct) = (via.as_db_error().unwrap(), direct.as_db_error().unwrap());
        assert_eq!(via.code(), &SqlState::INVALID_PASSWORD, "{user}");
        assert_eq!((via.severity(), via.message()), (direct.severity(), direct.message()), "{user}");
    }
    let err = whoami(&proxy, "no_such_role", None).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code(), &SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_works_with_tls_to_the_upstream() {
    let pg = pgfed_testkit::TestPg::from_env();
    let url = format!("postgres://127.0.0.1:{}/{}?sslmode=require", pg.port, pg.db);
    let proxy = TestProxy::start_with(|c| c.upstream.url = url).await;
    // The upstream offers SCRAM-SHA-256-PLUS over TLS; pgfed hides it because channel binding
    // cannot span two TLS connections, and plain SCRAM succeeds.
    assert_eq!(whoami(&proxy, "pgfed_scram", Some("pw_scram")).await.unwrap(), "pgfed_scram");
}
