//! Configuration and connect failures: typed errors, promptly, never a hang or a panic.

use std::time::{Duration, Instant};

use pool_core::{ErrorClass, Manager as _, PoolError};
use pool_mysql::mysql_async::prelude::*;
use pool_mysql::mysql_async::{self, Opts, OptsBuilder};
use pool_mysql::{ConfigError, Manager, Pool};

use crate::util::{free_port, url, TestUser};

const CONNECT: Duration = Duration::from_secs(1);
/// Slack for scheduling on a busy 2-core machine; a correctness bound, not a performance one.
const MARGIN: Duration = Duration::from_secs(3);

fn pool_for(manager: Manager) -> Pool {
    Pool::builder(manager)
        .max_size(2)
        .connect_timeout(CONNECT)
        .wait_timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

async fn get_err(pool: &Pool) -> (pool_mysql::Error, Duration) {
    let start = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(30), pool.get())
        .await
        .expect("get() must not hang");
    (res.expect_err("get() must fail"), start.elapsed())
}

fn server_code(err: &pool_mysql::Error) -> u16 {
    match err.backend() {
        Some(mysql_async::Error::Server(e)) => e.code,
        other => panic!("expected a server error, got {other:?} in {err:?}"),
    }
}

#[tokio::test]
async fn malformed_urls_are_typed_config_errors() {
    for bad in [
        "mysql://root@127.0.0.1:notaport/test",
        "postgres://root@127.0.0.1/test",
        "mysql://root@127.0.0.1/test?no_such_option=1",
        "not a url",
    ] {
        match Manager::from_url(bad) {
            Err(ConfigError::Url(_)) => {}
            other => panic!("{bad}: expected ConfigError::Url, got {other:?}"),
        }
        assert!(matches!(pool_mysql::pool(bad, 2), Err(ConfigError::Url(_))));
    }
    assert!(matches!(
        pool_mysql::pool("mysql://root@127.0.0.1/test", 0),
        Err(ConfigError::Pool(_))
    ));
}

#[tokio::test]
async fn unknown_database_fails_promptly_and_is_final() {
    let Some(url) = url() else { return };
    let opts = OptsBuilder::from_opts(Opts::from_url(&url).unwrap())
        .db_name(Some(pool_tests::unique_name("no_such_db")));
    let pool = pool_for(Manager::new(opts));
    let (err, took) = get_err(&pool).await;
    assert!(took < CONNECT + MARGIN, "took {took:?}");
    assert_eq!(server_code(&err), 1049);
    assert!(!pool.manager().is_retryable(err.backend().unwrap()));
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn tls_required_from_a_server_without_tls_fails_promptly_and_is_final() {
    let Some(url) = url() else { return };
    let mut admin = crate::util::admin(&url).await;
    let have_ssl: Option<(String, String)> = admin
        .query_first("SHOW VARIABLES LIKE 'have_ssl'")
        .await
        .unwrap();
    admin.disconnect().await.unwrap();
    let have_ssl = have_ssl.map(|(_, v)| v).unwrap_or_default();
    assert_ne!(
        have_ssl, "YES",
        "this test needs a server without TLS (the machine's has none)"
    );
    let sep = if url.contains('?') { '&' } else { '?' };
    let pool = pool_for(Manager::from_url(&format!("{url}{sep}require_ssl=true")).unwrap());
    let (err, took) = get_err(&pool).await;
    assert!(took < CONNECT + MARGIN, "took {took:?}");
    // At once, not retried until the connect timeout (which would be a `Timeout`).
    assert!(matches!(err, PoolError::Backend(_)), "{err:?}");
    let driver = err.backend().expect("the driver's error");
    assert!(
        matches!(
            driver,
            mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)
        ),
        "{driver:?}"
    );
    assert!(!pool.manager().is_retryable(driver));
}

#[tokio::test]
async fn wrong_password_fails_promptly_and_is_final() {
    let Some(url) = url() else { return };
    let user = TestUser::create(&url).await;
    let good = pool_for(Manager::new(user.opts()));
    drop(good.get().await.expect("the right password works"));
    let bad = pool_for(Manager::new(user.opts().pass(Some("wrong-password"))));
    let (err, took) = get_err(&bad).await;
    assert!(took < CONNECT + MARGIN, "took {took:?}");
    assert_eq!(server_code(&err), 1045);
    assert!(!bad.manager().is_retryable(err.backend().unwrap()));
    drop((good, bad));
    user.drop_user().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_port_fails_within_the_connect_timeout() {
    let url = format!("mysql://root@127.0.0.1:{}/test", free_port());
    let pool = pool_for(Manager::from_url(&url).unwrap());
    let (err, took) = get_err(&pool).await;
    assert!(took < CONNECT + MARGIN, "took {took:?}: {err:?}");
    // One outage, one kind, whichever variant carried it; the root cause is in the report.
    assert_eq!(err.kind(), pool_mysql::ErrorKind::Unavailable, "{err:?}");
    if let Some(driver) = err.backend() {
        assert_eq!(pool_mysql::classify(driver), ErrorClass::ConnectionLost);
        assert!(pool.manager().is_retryable(driver));
        let line = pool_mysql::Report::new(&err).to_string();
        assert!(line.to_lowercase().contains("refused"), "{line}");
    }
    assert_eq!(
        pool_mysql::classify_pool_error(&err),
        ErrorClass::ConnectionLost
    );
    let (_, took) = get_err(&pool).await;
    assert!(took < CONNECT + MARGIN);
}
