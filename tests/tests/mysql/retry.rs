//! `pool_mysql::retry`: a unit of work whose connection the server killed reruns on a fresh
//! connection, and a permanent error is returned at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pool_mysql::mysql_async::prelude::*;
use pool_mysql::{Manager, Pool, RetryPolicy, WorkError};

use crate::util::{admin, url};

fn policy() -> RetryPolicy {
    RetryPolicy::attempts(3).delays(Duration::from_millis(5), Duration::from_millis(10))
}

fn pool(url: &str) -> Pool {
    Pool::builder(Manager::from_url(url).unwrap())
        .max_size(2)
        .wait_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_retried_on_a_fresh_one() {
    let Some(url) = url() else { return };
    let admin = &tokio::sync::Mutex::new(admin(&url).await);
    let pool = pool(&url);
    let attempts = &AtomicUsize::new(0);
    let ids = pool_mysql::retry(&pool, &policy(), |mut conn| async move {
        let id: u64 = conn
            .query_first("SELECT CONNECTION_ID()")
            .await?
            .expect("a row");
        if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            admin
                .lock()
                .await
                .query_drop(format!("KILL CONNECTION {id}"))
                .await
                .expect("kill");
            conn.query_drop("SELECT 1").await?;
            unreachable!("the killed session answered");
        }
        Ok(id)
    })
    .await
    .expect("the second attempt succeeds");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    let live: Option<u64> = admin
        .lock()
        .await
        .exec_first(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ?",
            (ids,),
        )
        .await
        .unwrap();
    assert_eq!(
        live,
        Some(ids),
        "the result came from a live, fresh session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_is_returned_at_once() {
    let Some(url) = url() else { return };
    let pool = pool(&url);
    let attempts = &AtomicUsize::new(0);
    let err = pool_mysql::retry(&pool, &policy(), |mut conn| async move {
        attempts.fetch_add(1, Ordering::SeqCst);
        conn.query_drop("SELECT * FROM no_such_table_here").await?;
        Ok(())
    })
    .await
    .unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "not retried");
    let WorkError::Db(pool_mysql::mysql_async::Error::Server(e)) = &err else {
        panic!("expected the server's error, got {err:?}")
    };
    assert_eq!(e.code, 1146, "{e:?}");
}
