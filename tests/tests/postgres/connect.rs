//! The manager opens the sockets itself (to follow the transaction status on the wire): host
//! lists, Unix sockets and session attributes work as with `Config::connect`.

use pool_postgres::tokio_postgres::Config;
use pool_postgres::{Manager, Pool};

use crate::server::PgServer;
use crate::util::{free_port, url};

/// Checks out `pool`'s only connection twice, leaving it inside a transaction the first time:
/// the sniffer must see that (one reset), and nothing else (no reset for clean use).
async fn check_tracked(pool: &Pool) {
    for _ in 0..3 {
        let client = pool.get().await.unwrap();
        client.query_one("SELECT 1", &[]).await.unwrap();
    }
    assert_eq!(pool.manager().resets(), 0, "clean use: no reset");
    pool.get()
        .await
        .unwrap()
        .batch_execute("BEGIN")
        .await
        .unwrap();
    let client = pool.get().await.unwrap();
    assert_eq!(pool.manager().resets(), 1, "left in a transaction: reset");
    client.batch_execute("BEGIN; COMMIT").await.unwrap();
}

#[tokio::test]
async fn host_lists_are_tried_in_order() {
    let Some(url) = url() else { return };
    let base: Config = url.parse().unwrap();
    let mut config = Config::new();
    config
        .user(base.get_user().unwrap_or("postgres"))
        .dbname(base.get_dbname().unwrap_or("test"))
        .connect_timeout(std::time::Duration::from_secs(5))
        .keepalives_idle(std::time::Duration::from_secs(30))
        .target_session_attrs(pool_postgres::tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    if let Some(password) = base.get_password() {
        config.password(password);
    }
    // A dead port first, then the real server.
    let (host, port) = pool_tests::host_port(&url).unwrap();
    config.host("127.0.0.1").port(free_port());
    config.host(&host).port(port);
    let pool = Pool::builder(Manager::with_tls(
        config,
        pool_postgres::tokio_postgres::NoTls,
    ))
    .max_size(1)
    .build()
    .unwrap();
    check_tracked(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_sockets_work_and_are_tracked() {
    let server = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
    let url = format!(
        "host={} port={} user=postgres dbname=postgres",
        server.socket_dir().display(),
        server.port()
    );
    let pool = Pool::builder(Manager::from_url(&url).unwrap())
        .max_size(1)
        .build()
        .unwrap();
    let client = pool.get().await.unwrap();
    let addr: Option<String> = client
        .query_one("SELECT inet_server_addr()::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(addr, None, "a Unix-domain session has no server address");
    drop(client);
    check_tracked(&pool).await;
}

#[tokio::test]
async fn cancel_query_reaches_the_server() {
    let Some(url) = url() else { return };
    let pool = Pool::builder(Manager::from_url(&url).unwrap())
        .max_size(1)
        .build()
        .unwrap();
    let client = pool.get().await.unwrap();
    let cancel = client.cancel_query();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        cancel.await
    });
    let err = client
        .batch_execute("SELECT pg_sleep(30)")
        .await
        .expect_err("cancelled");
    canceller.await.unwrap().expect("cancel request delivered");
    assert_eq!(
        err.code(),
        Some(&pool_postgres::tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    drop(client);
    // The cancelled session is usable again and not left inside a transaction. (Whether it
    // was reset depends on whether its final ReadyForQuery had been read when it came back:
    // the driver reports the error first, so a reset may or may not have been needed.)
    let conn = pool.get().await.unwrap();
    conn.query_one("SELECT 1", &[]).await.unwrap();
    // SAVEPOINT fails with 25P01 exactly when no transaction block is open.
    let err = conn
        .batch_execute("SAVEPOINT probe")
        .await
        .expect_err("the connection came back inside a transaction");
    assert_eq!(
        err.code(),
        Some(&pool_postgres::tokio_postgres::error::SqlState::NO_ACTIVE_SQL_TRANSACTION)
    );
}
