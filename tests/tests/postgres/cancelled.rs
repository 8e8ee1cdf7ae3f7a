//! Cancelled requests: a request queued by a future that was dropped before the connection task
//! wrote it, or a statement still running on the server, never reaches the next user.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pool_postgres::{Manager, Pool};

use crate::util::{admin, url};

/// Polls `fut` exactly once (so tokio-postgres queues its request), then drops it.
fn poll_once_and_drop<F: Future>(fut: F) -> bool {
    let mut fut = pin!(fut);
    matches!(
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop())),
        Poll::Pending
    )
}

async fn queued_then_dropped(rounds: i32) {
    let Some(url) = url() else { return };
    let table = pool_tests::unique_name("pg_cancelled");
    let admin = admin(&url).await;
    admin
        .batch_execute(&format!("CREATE TABLE {table} (id int)"))
        .await
        .unwrap();
    let pool = Pool::builder(Manager::from_url(&url).unwrap())
        .max_size(1)
        .wait_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut queued = 0;
    for i in 0..rounds {
        {
            let client = pool.get().await.unwrap();
            let sql = format!("BEGIN; INSERT INTO {table} VALUES ({i})");
            queued += i32::from(poll_once_and_drop(client.batch_execute(&sql)));
            // The guard goes back to the pool right away, before the connection task ran.
        }
        let client = pool.get().await.unwrap();
        crate::util::assert_outside_transaction(
            &client,
            &format!("round {i}: the next user is inside the previous holder's transaction"),
        )
        .await;
        // The next user's own transaction commits only its own row.
        client
            .batch_execute(&format!(
                "BEGIN; INSERT INTO {table} VALUES ({}); COMMIT",
                100_000 + i
            ))
            .await
            .unwrap();
    }
    assert!(queued > 0, "the scenario must really leave requests queued");
    let leaked: i64 = admin
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE id < 100000"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let own: i64 = admin
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE id >= 100000"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        leaked, 0,
        "an abandoned holder's uncommitted insert was committed by another user"
    );
    assert_eq!(
        own,
        i64::from(rounds),
        "every confirmed write of the next users is there"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_queued_by_a_dropped_future_never_reaches_the_next_user_current_thread() {
    queued_then_dropped(100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_queued_by_a_dropped_future_never_reaches_the_next_user_multi_thread() {
    queued_then_dropped(100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_still_running_is_cancelled_before_the_next_user_gets_the_connection() {
    let Some(url) = url() else { return };
    let pool = Pool::builder(Manager::from_url(&url).unwrap())
        .max_size(1)
        .wait_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let pid: i32 = {
        let client = pool.get().await.unwrap();
        let pid = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        // Give up on a long statement: it keeps running on the server.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(200),
            client.batch_execute("SELECT pg_sleep(3)"),
        )
        .await;
        assert!(gave_up.is_err());
        pid
    };
    // One deadline of 1 s covers the clean-up: without the cancel, the ROLLBACK would wait for
    // the rest of the 3 s sleep and the get would time out.
    let client = pool
        .get()
        .await
        .expect("the next get is served within its 1 s deadline");
    let again: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pid, again, "the same connection, cleaned");
    crate::util::assert_outside_transaction(&client, "after the cancelled statement").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_connections_cost_no_round_trip_at_checkout() {
    let Some(url) = url() else { return };
    let pool = Pool::builder(Manager::from_url(&url).unwrap())
        .max_size(2)
        .build()
        .unwrap();
    for _ in 0..200 {
        let client = pool.get().await.unwrap();
        client.query_one("SELECT 1", &[]).await.unwrap();
        client
            .batch_execute("BEGIN; SELECT 1; COMMIT")
            .await
            .unwrap();
    }
    let resets = pool.manager().resets();
    assert!(
        resets <= 2,
        "clean sessions are handed out without a ROLLBACK: {resets} resets in 200 cycles"
    );
}
