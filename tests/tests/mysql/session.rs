//! The next user of a connection never inherits its session state (issue 12, item 4), a clean
//! connection pays no round trip, and a cancelled statement does not block the next user
//! (item 6).

use std::time::Duration;

use pool_mysql::mysql_async::prelude::*;
use pool_mysql::{Manager, Pool, PooledConn};

use crate::util::{admin, url};

fn pool(url: &str) -> Pool {
    Pool::builder(Manager::from_url(url).unwrap())
        .max_size(1)
        .build()
        .unwrap()
}

/// `Com_select` of this session: a `COM_RESET_CONNECTION` sets the session's status counters
/// back to 0 on MariaDB and MySQL, so it shows whether a reset ran in between.
async fn selects(conn: &mut PooledConn) -> u64 {
    let row: Option<(String, u64)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Com_select'")
        .await
        .unwrap();
    row.unwrap().1
}

/// What the next user sees of the session, with the connection id.
async fn next_user_sees(pool: &Pool) -> (u32, String) {
    let mut conn = pool.get().await.unwrap();
    let row: (Option<i64>, String, String, i64, i64, Option<String>) = conn
        .query_first(
            "SELECT @x, @@session.sql_mode, @@session.time_zone, @@autocommit, \
             @@in_transaction, DATABASE()",
        )
        .await
        .unwrap()
        .unwrap();
    let temp: Vec<String> = conn.query("SHOW TABLES LIKE 'pool_tmp'").await.unwrap();
    let lock: Option<i64> = conn
        .query_first("SELECT IS_USED_LOCK('pool_lock') IS NOT NULL")
        .await
        .unwrap();
    (conn.id(), format!("{row:?} temp={temp:?} lock={lock:?}"))
}

#[tokio::test]
async fn the_next_user_never_inherits_session_state() {
    let Some(url) = url() else { return };
    let pool = pool(&url);
    let (id, clean) = next_user_sees(&pool).await;
    let steps: &[(&str, &[&str])] = &[
        ("a user variable", &["SET @x = 42"]),
        ("a user variable set in a SELECT", &["SELECT @x := 42"]),
        ("sql_mode", &["SET SESSION sql_mode = 'ANSI_QUOTES'"]),
        ("time_zone", &["SET time_zone = '+07:00'"]),
        ("autocommit", &["SET autocommit = 0"]),
        (
            "a temporary table",
            &["CREATE TEMPORARY TABLE pool_tmp (a INT)"],
        ),
        ("a named lock", &["SELECT GET_LOCK('pool_lock', 0)"]),
        (
            "a named lock taken with DO",
            &["DO GET_LOCK('pool_lock', 0)"],
        ),
        ("an open transaction", &["BEGIN", "SELECT 1"]),
        ("the default database", &["USE mysql"]),
        ("several statements in one text", &["SELECT 1; SET @x = 7"]),
    ];
    for (what, statements) in steps {
        {
            let mut conn = pool.get().await.unwrap();
            assert_eq!(conn.id(), id);
            for sql in *statements {
                // Multi-statement texts have several results: read them all.
                conn.query_iter(*sql)
                    .await
                    .unwrap()
                    .drop_result()
                    .await
                    .unwrap();
                // (query_iter marks the connection dirty: run the tracked path too.)
            }
        }
        assert_eq!(
            next_user_sees(&pool).await,
            (id, clean.clone()),
            "after {what} (query_iter)"
        );
        {
            let mut conn = pool.get().await.unwrap();
            for sql in *statements {
                if sql.contains(';') {
                    conn.query_iter(*sql)
                        .await
                        .unwrap()
                        .drop_result()
                        .await
                        .unwrap();
                } else {
                    conn.query_drop(*sql).await.unwrap();
                }
            }
        }
        assert_eq!(
            next_user_sees(&pool).await,
            (id, clean.clone()),
            "after {what}"
        );
    }
    // Prepared statements: the wrapper cannot read their text.
    {
        let mut conn = pool.get().await.unwrap();
        conn.exec_drop("SET @x = ?", (5,)).await.unwrap();
        let _: Option<i64> = conn
            .exec_first("SELECT GET_LOCK(?, 0)", ("pool_lock",))
            .await
            .unwrap();
    }
    assert_eq!(
        next_user_sees(&pool).await,
        (id, clean.clone()),
        "after prepared statements"
    );
    // An admin session must be able to take the lock the holders took and left.
    let mut admin = admin(&url).await;
    let got: Option<i64> = admin
        .query_first("SELECT GET_LOCK('pool_lock', 0)")
        .await
        .unwrap();
    assert_eq!(got, Some(1), "the named lock survived the reset");
    admin.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_clean_connection_is_not_reset() {
    let Some(url) = url() else { return };
    let pool = pool(&url);
    let (id, before) = {
        let mut conn = pool.get().await.unwrap();
        (conn.id(), selects(&mut conn).await)
    };
    {
        let mut conn = pool.get().await.unwrap();
        let _: Vec<i64> = conn.query("SELECT 1").await.unwrap();
        conn.query_drop("BEGIN").await.unwrap();
        conn.query_drop("SELECT 2").await.unwrap();
        conn.query_drop("COMMIT").await.unwrap();
    }
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), id);
    // No reset in between: the counter went on from where it was (2 SELECTs and the SHOW).
    assert!(
        selects(&mut conn).await >= before + 2,
        "a clean connection was reset"
    );
    drop(conn);
    {
        let mut conn = pool.get().await.unwrap();
        conn.query_drop("SET @x = 1").await.unwrap();
    }
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), id);
    assert!(
        selects(&mut conn).await <= 1,
        "a changed session was not reset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_statement_does_not_block_the_next_user() {
    let Some(url) = url() else { return };
    let pool = Pool::builder(Manager::from_url(&url).unwrap())
        .max_size(1)
        .wait_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let id = {
        let mut conn = pool.get().await.unwrap();
        let id = conn.id();
        let slow = conn.query_drop("SELECT SLEEP(3)");
        tokio::time::timeout(Duration::from_millis(200), slow)
            .await
            .unwrap_err();
        id
    };
    // Within the 1 s wait timeout: not behind the 3 s statement.
    let mut conn = pool
        .get()
        .await
        .expect("the next get answers within the wait timeout");
    let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    drop(conn);
    // And the server stopped the statement (KILL QUERY), rather than run it for nobody.
    let mut admin = admin(&url).await;
    let mut still_running = true;
    for _ in 0..100 {
        let n: Option<i64> = admin
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.processlist WHERE id = ? AND info LIKE 'SELECT SLEEP%'",
                (id,),
            )
            .await
            .unwrap();
        if n == Some(0) {
            still_running = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !still_running,
        "the cancelled statement still runs on the server"
    );
    admin.disconnect().await.unwrap();
}
