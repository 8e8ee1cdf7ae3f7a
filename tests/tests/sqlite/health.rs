//! Connections come back dirty, broken or still busy: the next user never notices.

use std::time::Duration;

use pool_core::Pooled;
use pool_sqlite::InteractError;

use crate::{count_items, pool_with_table};

#[tokio::test]
async fn dirty_transaction_is_rolled_back_before_reuse() {
    // One connection, so the next user gets that very connection.
    let (_dir, pool) = pool_with_table(1);

    let conn = pool.get().await.unwrap();
    let first_id = Pooled::meta(&conn).id();
    conn.interact(|c| c.execute_batch("BEGIN; INSERT INTO items (v) VALUES (1);"))
        .await
        .unwrap()
        .unwrap();
    let in_tx = conn.interact(|c| c.is_autocommit()).await.unwrap();
    assert!(!in_tx, "the write must be inside an open transaction");
    drop(conn); // no COMMIT

    let conn = pool.get().await.unwrap();
    assert_eq!(
        Pooled::meta(&conn).id(),
        first_id,
        "same connection, reset and reused"
    );
    let (autocommit, rows) = conn
        .interact(|c| (c.is_autocommit(), count_items(c)))
        .await
        .unwrap();
    assert!(
        autocommit,
        "the next user must not be inside the old transaction"
    );
    assert_eq!(rows, 0, "the uncommitted write must be gone");
    drop(conn);
    assert_eq!(pool.metrics().closed_reset_failed, 0);
}

#[test]
fn dirty_transaction_is_rolled_back_before_reuse_blocking() {
    let (_dir, pool) = pool_with_table(1);
    let first_id = {
        let conn = pool.get_blocking().unwrap();
        let mut c = conn.lock();
        let tx = c.transaction().unwrap();
        tx.execute("INSERT INTO items (v) VALUES (1)", []).unwrap();
        // Leak the transaction object: nothing rolls it back but the pool.
        std::mem::forget(tx);
        assert!(!c.is_autocommit());
        drop(c);
        Pooled::meta(&conn).id()
    };
    let conn = pool.get_blocking().unwrap();
    assert_eq!(Pooled::meta(&conn).id(), first_id);
    let c = conn.lock();
    assert!(c.is_autocommit());
    assert_eq!(count_items(&c), 0);
}

#[tokio::test]
async fn panic_in_interact_is_isolated() {
    let (_dir, pool) = pool_with_table(1);

    let conn = pool.get().await.unwrap();
    let first_id = Pooled::meta(&conn).id();
    let err = conn
        .interact(|c| -> () {
            c.execute_batch("BEGIN; INSERT INTO items (v) VALUES (1);")
                .unwrap();
            panic!("boom in interact");
        })
        .await
        .unwrap_err();
    match &err {
        InteractError::Panic { message } => {
            assert!(message.contains("boom in interact"), "{message}")
        }
        other => panic!("expected InteractError::Panic, got {other:?}"),
    }
    drop(conn);
    assert_eq!(
        pool.metrics().closed_broken,
        1,
        "the connection is discarded"
    );

    // The pool goes on with a new connection that never saw the half-done transaction.
    let conn = pool.get().await.unwrap();
    assert_ne!(Pooled::meta(&conn).id(), first_id);
    let (autocommit, rows) = conn
        .interact(|c| (c.is_autocommit(), count_items(c)))
        .await
        .unwrap();
    assert!(autocommit);
    assert_eq!(rows, 0);
    drop(conn);

    // Through the pool helper as well.
    let err = pool
        .interact(|_| -> pool_sqlite::rusqlite::Result<()> { panic!("second boom") })
        .await
        .unwrap_err();
    assert!(matches!(err, InteractError::Panic { .. }), "{err:?}");
    let one: i64 = pool
        .interact(|c| c.query_row("SELECT 1", [], |row| row.get(0)))
        .await
        .unwrap();
    assert_eq!(one, 1);
    assert_eq!(pool.metrics().closed_broken, 2);
    assert_eq!(pool.status().size, 1);
}

#[test]
fn thread_panicking_with_the_lock_discards_the_connection() {
    let (_dir, pool) = pool_with_table(1);
    let first_id = {
        let conn = pool.get_blocking().unwrap();
        Pooled::meta(&conn).id()
    };
    let p = pool.clone();
    let joined = std::thread::spawn(move || {
        let conn = p.get_blocking().unwrap();
        let c = conn.lock();
        c.execute_batch("BEGIN; INSERT INTO items (v) VALUES (1);")
            .unwrap();
        panic!("thread dies holding the connection");
    })
    .join();
    assert!(joined.is_err());

    let conn = pool.get_blocking().unwrap();
    assert_ne!(
        Pooled::meta(&conn).id(),
        first_id,
        "the panicked connection is not reused"
    );
    let c = conn.lock();
    assert!(c.is_autocommit());
    assert_eq!(count_items(&c), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_interact_connection_is_not_reused_while_busy() {
    let (_dir, pool) = pool_with_table(1);
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();

    let conn = pool.get().await.unwrap();
    let first_id = Pooled::meta(&conn).id();
    let mut fut = Box::pin(conn.interact(move |c| {
        c.execute_batch("BEGIN; INSERT INTO items (v) VALUES (1);")
            .unwrap();
        started_tx.send(()).unwrap();
        // Blocks until the test lets it go (bounded, so a bug cannot hang the suite).
        let _ = release_rx.recv_timeout(Duration::from_secs(10));
        c.execute_batch("COMMIT").unwrap();
    }));
    tokio::select! {
        _ = &mut fut => panic!("the closure cannot finish before it is released"),
        started = started_rx => started.unwrap(),
    }
    // Cancel the interact while its closure runs, and return the connection.
    drop(fut);
    drop(conn);

    // The pool must not hand the still-busy connection to the next user.
    let next = pool.get().await.unwrap();
    assert_ne!(Pooled::meta(&next).id(), first_id);
    assert_eq!(pool.metrics().closed_broken, 1);
    release_tx.send(()).unwrap();
    drop(next);

    // The orphaned closure finishes in the background; its committed row shows up.
    let mut rows = 0;
    for _ in 0..1000 {
        rows = pool.interact(|c| Ok(count_items(c))).await.unwrap();
        if rows == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_pool_interact_finishes_and_returns_the_connection_for_reuse() {
    let (_dir, pool) = pool_with_table(1);
    let first_id = Pooled::meta(&pool.get().await.unwrap()).id();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let mut fut = Box::pin(pool.interact(move |c| {
        c.execute_batch("BEGIN; INSERT INTO items (v) VALUES (1);")?;
        started_tx.send(()).unwrap();
        // Blocks until the test lets it go (bounded, so a bug cannot hang the suite).
        let _ = release_rx.recv_timeout(Duration::from_secs(10));
        c.execute_batch("COMMIT")
    }));
    tokio::select! {
        _ = &mut fut => panic!("the closure cannot finish before it is released"),
        started = started_rx => started.unwrap(),
    }
    drop(fut);
    assert_eq!(
        pool.status().in_use,
        1,
        "the closure still holds the connection"
    );
    release_tx.send(()).unwrap();

    // The closure finishes in the background and hands the connection back itself: the same
    // connection is reused, nothing is closed, and its committed row is there.
    let mut rows = 0;
    for _ in 0..1000 {
        if pool.status().in_use == 0 {
            let conn = pool.get().await.unwrap();
            assert_eq!(Pooled::meta(&conn).id(), first_id);
            rows = conn.interact(|c| count_items(c)).await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rows, 1);
    assert_eq!(pool.metrics().closed_total(), 0);
}

#[test]
fn a_statement_left_stepping_never_reaches_the_next_user() {
    // A leaked, half-read statement keeps its read transaction (its snapshot) open although
    // `is_autocommit()` is true: the next user of that connection would read stale data.
    let (dir, pool) = pool_with_table(1);
    {
        let conn = pool.get_blocking().unwrap();
        let c = conn.lock();
        c.execute_batch("INSERT INTO items (v) VALUES (1), (2)")
            .unwrap();
        let mut stmt = c.prepare("SELECT v FROM items ORDER BY id").unwrap();
        let mut rows = stmt.query([]).unwrap();
        assert!(rows.next().unwrap().is_some());
        std::mem::forget(rows);
        std::mem::forget(stmt);
        assert!(c.is_autocommit() && c.is_busy());
    }
    // Another writer commits meanwhile (WAL: it does not wait for the old snapshot).
    let other = pool_sqlite::rusqlite::Connection::open(crate::db_path(&dir)).unwrap();
    other.execute("UPDATE items SET v = 42", []).unwrap();
    let conn = pool.get_blocking().unwrap();
    let c = conn.lock();
    assert!(
        !c.is_busy(),
        "the next user got a connection with a busy statement"
    );
    let max: i64 = c
        .query_row("SELECT MAX(v) FROM items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(max, 42, "the next user read a stale snapshot");
    drop(c);
    assert!(pool.metrics().closed_broken >= 1);
}
