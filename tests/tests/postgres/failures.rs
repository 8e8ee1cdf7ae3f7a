//! Configuration and connect failures: typed errors, promptly, never a hang or a panic.

use std::time::{Duration, Instant};

use pool_core::{ErrorClass, Manager as _};
use pool_postgres::tokio_postgres::error::SqlState;
use pool_postgres::{ConfigError, Manager, Pool};

use crate::server::{PgServer, PASSWORD};
use crate::util::{free_port, url};

const CONNECT: Duration = Duration::from_secs(1);
/// Slack for scheduling on a busy 2-core machine; a correctness bound, not a performance one.
const MARGIN: Duration = Duration::from_secs(3);

fn pool_for(url: &str) -> Pool {
    Pool::builder(Manager::from_url(url).expect("url"))
        .max_size(2)
        .connect_timeout(CONNECT)
        .wait_timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

async fn get_err(pool: &Pool) -> (pool_postgres::Error, Duration) {
    let start = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(30), pool.get())
        .await
        .expect("get() must not hang");
    (res.expect_err("get() must fail"), start.elapsed())
}

#[tokio::test]
async fn malformed_urls_are_typed_config_errors() {
    for bad in [
        "postgres://postgres@127.0.0.1:notaport/test",
        "postgres://[::1/test",
        "postgresql://h/db?sslmode=sometimes",
        "host=localhost port",
    ] {
        match Manager::from_url(bad) {
            Err(ConfigError::Url(_)) => {}
            other => panic!("{bad}: expected ConfigError::Url, got {other:?}"),
        }
        assert!(matches!(
            pool_postgres::pool(bad, 2),
            Err(ConfigError::Url(_))
        ));
    }
    assert!(matches!(
        pool_postgres::pool("postgres://postgres@127.0.0.1/test", 0),
        Err(ConfigError::Pool(_))
    ));
}

#[tokio::test]
async fn unknown_database_fails_promptly_and_is_final() {
    let Some(url) = url() else { return };
    let (base, _) = url.rsplit_once('/').unwrap();
    let pool = pool_for(&format!("{base}/{}", pool_tests::unique_name("no_such_db")));
    let (err, took) = get_err(&pool).await;
    assert!(took < CONNECT + MARGIN, "took {took:?}");
    let driver = err
        .backend()
        .unwrap_or_else(|| panic!("a driver error, got {err:?}"));
    assert_eq!(driver.code(), Some(&SqlState::INVALID_CATALOG_NAME));
    assert!(!pool.manager().is_retryable(driver));
    assert_eq!(err.kind(), pool_postgres::ErrorKind::Rejected, "{err:?}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the driver error is the source"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_port_fails_within_the_connect_timeout() {
    let pool = pool_for(&format!(
        "postgres://postgres@127.0.0.1:{}/test",
        free_port()
    ));
    let (err, took) = get_err(&pool).await;
    assert!(took < CONNECT + MARGIN, "took {took:?}: {err:?}");
    // One outage, one kind, whichever variant carried it; the root cause is in the report.
    assert_eq!(err.kind(), pool_postgres::ErrorKind::Unavailable, "{err:?}");
    if let Some(driver) = err.backend() {
        assert_eq!(pool_postgres::classify(driver), ErrorClass::ConnectionLost);
        assert!(pool.manager().is_retryable(driver));
        let line = pool_postgres::Report::new(&err).to_string();
        assert!(line.to_lowercase().contains("refused"), "{line}");
    }
    assert_eq!(
        pool_postgres::classify_pool_error(&err),
        ErrorClass::ConnectionLost
    );
    // The pool stays usable: a second call fails the same way, not with a panic.
    let (_, took) = get_err(&pool).await;
    assert!(took < CONNECT + MARGIN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_promptly_and_is_final() {
    let server = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
    let good = pool_for(&server.url_with(PASSWORD, "postgres"));
    let client = good.get().await.expect("the right password works");
    client.simple_query("SELECT 1").await.unwrap();

    let bad = pool_for(&server.url_with("wrong-password", "postgres"));
    let (err, took) = get_err(&bad).await;
    assert!(took < CONNECT + MARGIN, "took {took:?}");
    let driver = err
        .backend()
        .unwrap_or_else(|| panic!("a driver error, got {err:?}"));
    assert_eq!(driver.code(), Some(&SqlState::INVALID_PASSWORD));
    assert!(!bad.manager().is_retryable(driver));
    drop(client);
    drop(server);
}

/// Errors that retrying cannot heal fail the `get` at once, not after the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_fail_at_once_with_their_cause() {
    let Some(url) = url() else { return };
    let sep = if url.contains('?') { '&' } else { '?' };
    for (what, url, expect) in [
        (
            "sslmode=require without a TLS connector",
            format!("{url}{sep}sslmode=require"),
            "TLS",
        ),
        (
            "no host of the wanted role",
            format!("{url}{sep}target_session_attrs=read-only"),
            "read only",
        ),
        (
            "an unknown setting in the startup options",
            format!("{url}{sep}options=-c%20pool_no_such_setting%3D1"),
            "pool_no_such_setting",
        ),
    ] {
        let manager = Manager::from_url(&url).expect(what);
        let pool = Pool::builder(manager)
            .max_size(1)
            .connect_timeout(Duration::from_secs(20))
            .wait_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let (err, took) = get_err(&pool).await;
        let text = pool_core::Report::new(&err).to_string();
        assert!(
            took < Duration::from_secs(5),
            "{what}: failed only after {took:?} of a 20 s connect budget: {text}"
        );
        assert!(
            text.to_lowercase().contains(&expect.to_lowercase()),
            "{what}: the cause is named: {text}"
        );
        let driver = err.backend().expect("the driver's error is kept");
        assert!(!pool.manager().is_retryable(driver), "{what}: final");
    }
}
