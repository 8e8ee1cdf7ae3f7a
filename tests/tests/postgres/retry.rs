//! `pool_postgres::retry`: a unit of work whose connection the server killed reruns on a fresh
//! connection, and a permanent error is returned at once.

use std::sync::atomic::{AtomicUsize, Ordering};

use pool_postgres::tokio_postgres::error::SqlState;
use pool_postgres::{RetryPolicy, WorkError};

use crate::util::{admin, pool, url};

fn policy() -> RetryPolicy {
    RetryPolicy::attempts(3).delays(
        std::time::Duration::from_millis(5),
        std::time::Duration::from_millis(10),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_retried_on_a_fresh_one() {
    let Some(url) = url() else { return };
    let admin = &admin(&url).await;
    let pool = pool(&url, &pool_tests::unique_name("pg_retry"), 2);
    let attempts = &AtomicUsize::new(0);
    let pids = pool_postgres::retry(&pool, &policy(), |client| async move {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            // The server ends this session under the work (a failover, an admin's kill).
            admin
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .await
                .expect("terminate");
            client.query_one("SELECT 1", &[]).await?;
            unreachable!("the killed session answered");
        }
        Ok(pid)
    })
    .await
    .expect("the second attempt succeeds");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    let live: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
            &[&pids],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(live, 1, "the result came from a live, fresh session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_is_returned_at_once() {
    let Some(url) = url() else { return };
    let pool = pool(&url, &pool_tests::unique_name("pg_retry"), 2);
    let attempts = &AtomicUsize::new(0);
    let err = pool_postgres::retry(&pool, &policy(), |client| async move {
        attempts.fetch_add(1, Ordering::SeqCst);
        client
            .batch_execute("SELECT * FROM no_such_table_here")
            .await?;
        Ok(())
    })
    .await
    .unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "not retried");
    let WorkError::Db(db) = &err else {
        panic!("expected the driver's error, got {err:?}")
    };
    assert_eq!(db.code(), Some(&SqlState::UNDEFINED_TABLE));
}
