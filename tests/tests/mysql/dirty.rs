//! A connection returned inside a transaction must reach its next user clean.

use pool_mysql::mysql_async::prelude::*;
use pool_mysql::{Manager, Pool, ResetMode};

use crate::util::{admin, url};

async fn check_no_leak(mode: ResetMode, how: &str) {
    let Some(url) = url() else { return };
    let table = pool_tests::unique_name("my_dirty");
    let mut admin = admin(&url).await;
    admin
        .query_drop(format!("CREATE TABLE {table} (id INT) ENGINE=InnoDB"))
        .await
        .unwrap();
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
