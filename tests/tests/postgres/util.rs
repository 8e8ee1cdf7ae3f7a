//! Helpers of the PostgreSQL tests.

use std::time::Duration;

use pool_postgres::tokio_postgres::{self, NoTls};
use pool_postgres::{Manager, Pool};

/// The URL of the machine's server, or `None` (outside CI only) when it is unreachable.
pub(crate) fn url() -> Option<String> {
    let url = pool_tests::pg_url();
    pool_tests::require_server("PostgreSQL (POOL_TEST_PG_URL)", &url).then_some(url)
}

/// A plain driver connection, outside any pool, for checking what the server sees.
pub(crate) async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A pool of at most `max_size` connections whose sessions carry `app` as application_name.
pub(crate) fn pool(url: &str, app: &str, max_size: usize) -> Pool {
    let manager = Manager::from_url(url).expect("url").application_name(app);
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Duration::from_secs(10))
        .build()
        .expect("pool")
}

pub(crate) use pool_tests::free_port;

/// Sessions of `app` the server has.
pub(crate) async fn sessions(admin: &tokio_postgres::Client, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

/// Asserts that `client`'s session is outside any transaction block: `SAVEPOINT` fails with
/// 25P01 exactly then (a check a fresh `BEGIN` without writes cannot hide from, unlike
/// `txid_current_if_assigned()`).
pub(crate) async fn assert_outside_transaction(client: &tokio_postgres::Client, what: &str) {
    let err = client
        .batch_execute("SAVEPOINT pool_probe")
        .await
        .expect_err(what);
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::NO_ACTIVE_SQL_TRANSACTION),
        "{what}: {err}"
    );
}
