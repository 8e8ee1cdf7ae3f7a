//! `retry` reruns transient failures on a fresh connection and stops on the others.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_sqlite::rusqlite::{self, ffi};
use pool_sqlite::{ErrorClass, InteractError, RetryPolicy};

use crate::pool_with_table;

fn policy() -> RetryPolicy {
    RetryPolicy::attempts(4).delays(Duration::from_millis(1), Duration::from_millis(5))
}

fn busy() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_BUSY), None)
}

#[tokio::test]
async fn transient_errors_are_retried() {
    let (_dir, pool) = pool_with_table(2);
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = Arc::clone(&calls);
    let v = pool_sqlite::retry(&pool, &policy(), move |c| {
        if c2.fetch_add(1, Ordering::SeqCst) < 2 {
            return Err(busy());
        }
        c.execute("INSERT INTO items (v) VALUES (1)", [])?;
        c.query_row("SELECT count(*) FROM items", [], |row| row.get::<_, i64>(0))
    })
    .await
    .unwrap();
    assert_eq!(v, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let (_dir, pool) = pool_with_table(2);
    pool.interact(|c| c.execute("INSERT INTO items (id, v) VALUES (1, 1)", []))
        .await
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = Arc::clone(&calls);
    let err = pool_sqlite::retry(&pool, &policy(), move |c| {
        c2.fetch_add(1, Ordering::SeqCst);
        c.execute("INSERT INTO items (id, v) VALUES (1, 2)", [])
    })
    .await
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::UniqueViolation);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retries_stop_after_max_attempts() {
    let (_dir, pool) = pool_with_table(1);
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = Arc::clone(&calls);
    let err = pool_sqlite::retry(&pool, &policy(), move |_| -> rusqlite::Result<()> {
        c2.fetch_add(1, Ordering::SeqCst);
        Err(busy())
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, InteractError::Sqlite(e) if e.sqlite_error_code() == Some(ffi::ErrorCode::DatabaseBusy))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[test]
fn blocking_retry_recovers_from_a_real_busy_database() {
    let (_dir, pool) = pool_with_table(2);
    let calls = AtomicU32::new(0);
    // Another connection holds the write lock for the first attempt only.
    let blocker = pool.get_blocking().unwrap();
    blocker
        .lock()
        .execute_batch("PRAGMA busy_timeout = 0")
        .unwrap();
    blocker
        .lock()
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO items (v) VALUES (0);")
        .unwrap();
    let blocker = std::cell::RefCell::new(Some(blocker));
    let n = pool_sqlite::retry_blocking(&pool, &policy(), |c| {
        let attempt = calls.fetch_add(1, Ordering::SeqCst);
        c.execute_batch("PRAGMA busy_timeout = 0")?;
        let r = c.execute("INSERT INTO items (v) VALUES (1)", []);
        if attempt == 0 {
            assert_eq!(
                pool_sqlite::classify(r.as_ref().unwrap_err()),
                ErrorClass::Deadlock
            );
            // Let the next attempt through: commit and return the blocking connection.
            if let Some(b) = blocker.borrow_mut().take() {
                b.lock().execute_batch("COMMIT").unwrap();
            }
        }
        r
    })
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
