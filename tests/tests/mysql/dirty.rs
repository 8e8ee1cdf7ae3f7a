//! A connection returned inside a transaction must reach its next user clean.

use pool_mysql::mysql_async::prelude::*;
use pool_mysql::mysql_async::Conn;
use pool_mysql::{Manager, Pool, ResetMode};

use crate::util::{admin, url};

/// A new InnoDB table `<prefix>_…` with one `INT` column; returns its name.
async fn create_table(admin: &mut Conn, prefix: &str) -> String {
    let table = pool_tests::unique_name(prefix);
    admin
        .query_drop(format!("CREATE TABLE {table} (id INT) ENGINE=InnoDB"))
        .await
        .unwrap();
    table
}

async fn check_no_leak(mode: ResetMode, how: &str) {
    let Some(url) = url() else { return };
    let mut admin = admin(&url).await;
    let table = create_table(&mut admin, "my_dirty").await;
    let pool = Pool::builder(Manager::from_url(&url).unwrap().reset_mode(mode))
        .max_size(1)
        .build()
        .unwrap();

    let id = {
        let mut conn = pool.get().await.unwrap();
        let insert = format!("INSERT INTO {table} VALUES (1)");
        match how {
            "begin" => {
                conn.query_drop("BEGIN").await.unwrap();
                conn.query_drop(&insert).await.unwrap();
            }
            "autocommit" => {
                conn.query_drop("SET autocommit = 0").await.unwrap();
                conn.query_drop(&insert).await.unwrap();
            }
            "unread" => {
                // The BEGIN sits in a result the holder never reads.
                conn.query_drop(&insert).await.unwrap();
                conn.query_drop(format!("DELETE FROM {table}"))
                    .await
                    .unwrap();
                let result = conn
                    .query_iter(format!("SELECT 1; BEGIN; {insert}"))
                    .await
                    .unwrap();
                drop(result);
            }
            _ => unreachable!(),
        }
        conn.id()
    };

    let mut conn = pool.get().await.unwrap();
    assert_eq!(
        conn.id(),
        id,
        "max_size 1: the very same connection comes back"
    );
    let n: Option<i64> = conn
        .query_first(format!("SELECT COUNT(*) FROM {table}"))
        .await
        .unwrap();
    assert_eq!(n, Some(0), "the uncommitted insert must be gone ({how})");
    let (in_tx, autocommit): (i64, i64) = conn
        .query_first("SELECT @@in_transaction, @@autocommit")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (in_tx, autocommit),
        (0, 1),
        "the next user must not be inside a transaction"
    );
    let seen: Option<i64> = admin
        .query_first(format!("SELECT COUNT(*) FROM {table}"))
        .await
        .unwrap();
    assert_eq!(seen, Some(0));
    drop(conn);
    admin
        .query_drop(format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn begin_does_not_leak() {
    check_no_leak(ResetMode::Rollback, "begin").await;
}

#[tokio::test]
async fn autocommit_off_does_not_leak() {
    check_no_leak(ResetMode::Rollback, "autocommit").await;
}

#[tokio::test]
async fn begin_in_an_unread_result_does_not_leak() {
    check_no_leak(ResetMode::Rollback, "unread").await;
}

#[tokio::test]
async fn reset_connection_mode_does_not_leak_and_reapplies_init() {
    check_no_leak(ResetMode::ResetConnection, "begin").await;
    check_no_leak(ResetMode::ResetConnection, "autocommit").await;
    let Some(url) = url() else { return };
    let manager = Manager::from_url(&url)
        .unwrap()
        .time_zone("+05:00")
        .reset_mode(ResetMode::ResetConnection);
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    {
        let mut conn = pool.get().await.unwrap();
        conn.query_drop("SET @leftover = 1, time_zone = '+01:00'")
            .await
            .unwrap();
    }
    let mut conn = pool.get().await.unwrap();
    let row: (Option<i64>, String) = conn
        .query_first("SELECT @leftover, @@SESSION.time_zone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row, (None, "+05:00".to_owned()));
}

/// How many `ROLLBACK`s this session has run (MariaDB and MySQL count them per session).
async fn rollbacks(conn: &mut pool_mysql::PooledConn) -> u64 {
    let row: Option<(String, u64)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Com_rollback'")
        .await
        .unwrap();
    row.expect("Com_rollback is a session status variable").1
}

#[tokio::test]
async fn only_connections_that_may_be_dirty_are_rolled_back_in_rollback_mode() {
    let Some(url) = url() else { return };
    let mut admin = admin(&url).await;
    let table = create_table(&mut admin, "my_clean").await;
    let pool = Pool::builder(
        Manager::from_url(&url)
            .unwrap()
            .reset_mode(ResetMode::Rollback),
    )
    .max_size(1)
    .build()
    .unwrap();
    let (mut id, before) = {
        let mut conn = pool.get().await.unwrap();
        (conn.id(), rollbacks(&mut conn).await)
    };
    // Each step: what the holder does, and whether the pool must roll back after it.
    type Step = Box<
        dyn for<'a> Fn(
            &'a mut pool_mysql::PooledConn,
            &'a str,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>,
    >;
    let steps: Vec<(&str, bool, Step)> = vec![
        (
            "autocommit statements",
            false,
            Box::new(|c, t| {
                Box::pin(async move {
                    c.query_drop(format!("INSERT INTO {t} VALUES (1)"))
                        .await
                        .unwrap();
                    c.exec_drop(format!("DELETE FROM {t} WHERE id = ?"), (1,))
                        .await
                        .unwrap();
                    let n: Option<i64> = c
                        .exec_first(format!("SELECT COUNT(*) FROM {t}"), ())
                        .await
                        .unwrap();
                    assert_eq!(n, Some(0));
                })
            }),
        ),
        (
            "a committed transaction",
            false,
            Box::new(|c, t| {
                Box::pin(async move {
                    c.query_drop("BEGIN").await.unwrap();
                    c.query_drop(format!("INSERT INTO {t} VALUES (2)"))
                        .await
                        .unwrap();
                    c.query_drop("COMMIT").await.unwrap();
                })
            }),
        ),
        (
            "an open transaction",
            true,
            Box::new(|c, _| Box::pin(async move { c.query_drop("BEGIN").await.unwrap() })),
        ),
        (
            "the raw connection",
            true,
            Box::new(|c, _| {
                Box::pin(async move { c.conn_mut().query_drop("SELECT 1").await.unwrap() })
            }),
        ),
        (
            "a failed statement",
            true,
            Box::new(|c, _| {
                Box::pin(async move {
                    c.query_drop("SELECT * FROM no_such_table_here")
                        .await
                        .unwrap_err();
                })
            }),
        ),
        (
            "an unread result",
            true,
            Box::new(|c, _| {
                Box::pin(async move {
                    drop(c.query_iter("SELECT 1").await.unwrap());
                })
            }),
        ),
        (
            "a query that was cancelled",
            true,
            Box::new(|c, _| {
                Box::pin(async move {
                    // The first row arrives at once, the second after the sleep: the call is
                    // dropped while it reads the rows, after a clean reply.
                    c.query_drop("DO 1").await.unwrap();
                    let slow = c.query_drop("SELECT 1 UNION ALL SELECT SLEEP(0.5)");
                    tokio::time::timeout(std::time::Duration::from_millis(100), slow)
                        .await
                        .unwrap_err();
                })
            }),
        ),
    ];
    let mut expected = before;
    for (what, rollback, step) in &steps {
        {
            let mut conn = pool.get().await.unwrap();
            step(&mut conn, &table).await;
        }
        let mut conn = pool.get().await.unwrap();
        if conn.id() == id {
            expected += u64::from(*rollback);
            assert_eq!(
                rollbacks(&mut conn).await,
                expected,
                "after {what}, the pool must {}roll back",
                if *rollback { "" } else { "not " }
            );
        } else {
            // mysql_async marks a connection whose command was cancelled as broken (it cannot
            // tell where in the reply the socket stands): the pool closes it and opens another.
            assert_eq!(
                *what, "a query that was cancelled",
                "connection lost after {what}"
            );
            id = conn.id();
            expected = rollbacks(&mut conn).await;
        }
        let state: (i64, i64) = conn
            .query_first("SELECT @@in_transaction, @@autocommit")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state, (0, 1), "after {what}");
    }
    drop(pool);
    admin
        .query_drop(format!("DROP TABLE {table}"))
        .await
        .unwrap();
}
