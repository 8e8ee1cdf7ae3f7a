//! Threads without a runtime work inline; async code never blocks its runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use pool_core::Pooled;
use pool_sqlite::{Pool, SqliteManager};

use crate::{count_items, temp_db};

/// A manager whose init hook records the thread each connection was opened on.
fn recording_manager(url: &str) -> (SqliteManager, Arc<Mutex<Vec<ThreadId>>>) {
    let threads = Arc::new(Mutex::new(Vec::new()));
    let t = Arc::clone(&threads);
    let manager = SqliteManager::from_url(url).unwrap().init(move |_| {
        t.lock().unwrap().push(std::thread::current().id());
        Ok(())
    });
    (manager, threads)
}

#[test]
fn plain_threads_use_the_blocking_api_without_a_runtime() {
    let (_dir, url) = temp_db();
    let (manager, threads) = recording_manager(&url);
    let pool = Pool::new(manager, 2).unwrap();
    let worker = std::thread::spawn({
        let pool = pool.clone();
        move || {
            assert!(
                tokio::runtime::Handle::try_current().is_err(),
                "no runtime here"
            );
            let conn = pool.get_blocking().unwrap();
            let c = conn.lock();
            c.execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, v INTEGER)")
                .unwrap();
            c.execute("INSERT INTO items (v) VALUES (1)", []).unwrap();
            drop(c);
            drop(conn);
            let n = pool.interact_blocking(|c| Ok(count_items(c))).unwrap();
            assert_eq!(n, 1);
            std::thread::current().id()
        }
    });
    let worker_id = worker.join().unwrap();
    // The connection was opened inline, on the calling thread.
    assert_eq!(*threads.lock().unwrap(), vec![worker_id]);
}

#[test]
fn async_connects_run_on_blocking_threads() {
    let (_dir, url) = temp_db();
    let (manager, threads) = recording_manager(&url);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime_thread = std::thread::current().id();
    rt.block_on(async {
        let pool = Pool::new(manager, 1).unwrap();
        pool.interact(|c| c.execute_batch("SELECT 1"))
            .await
            .unwrap();
    });
    let opened_on = threads.lock().unwrap().clone();
    assert_eq!(opened_on.len(), 1);
    assert_ne!(
        opened_on[0], runtime_thread,
        "connect must not run on the runtime's thread"
    );
}

/// On a single-threaded runtime, the closure waits for a message that only another task of the
/// same runtime sends. If `interact` (or the connect) blocked the runtime's only thread, that
/// task could never run: the closure would give up after 10 s and the test would fail.
#[test]
fn interact_does_not_block_a_current_thread_runtime() {
    let (_dir, url) = temp_db();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, rx) = mpsc::channel::<u32>();
        let rx = Arc::new(Mutex::new(rx));
        let hook_rx = Arc::clone(&rx);
        // The init hook itself waits for the ticker, so the connect is checked too.
        let manager = SqliteManager::from_url(&url).unwrap().init(move |_| {
            hook_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10))
                .map(drop)
                .map_err(|_| pool_sqlite::rusqlite::Error::InvalidQuery)
        });
        let pool = Pool::new(manager, 1).unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) && tx.send(n).is_ok() {
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });

        let conn = pool.get().await.expect("the connect saw a tick");
        for _ in 0..3 {
            let rx = Arc::clone(&rx);
            let got = conn
                .interact(move |_| {
                    rx.lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(10))
                        .is_ok()
                })
                .await
                .unwrap();
            assert!(got, "the ticker task must run while the closure blocks");
        }
        stop.store(true, Ordering::SeqCst);
        ticker.await.unwrap();
        drop(conn);
    });
}

#[tokio::test(flavor = "current_thread")]
async fn reset_and_validate_work_on_a_current_thread_runtime() {
    // Validate at every checkout: a dirty connection is rolled back (reset) and pinged
    // (validate) before reuse, both through spawn_blocking on a single-threaded runtime.
    let (dir, url) = temp_db();
    let manager = SqliteManager::from_url(&url).unwrap();
    let pool = Pool::builder(manager)
        .max_size(1)
        .validate_after_idle(Some(Duration::ZERO))
        .build()
        .unwrap();
    pool.interact(|c| c.execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, v INTEGER)"))
        .await
        .unwrap();
    let conn = pool.get().await.unwrap();
    let id = Pooled::meta(&conn).id();
    conn.interact(|c| c.execute_batch("BEGIN; INSERT INTO items (v) VALUES (1);"))
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    let conn = pool.get().await.unwrap();
    assert_eq!(Pooled::meta(&conn).id(), id, "reset, validated and reused");
    let (autocommit, n) = conn
        .interact(|c| (c.is_autocommit(), count_items(c)))
        .await
        .unwrap();
    assert!(autocommit);
    assert_eq!(n, 0);
    assert_eq!(
        pool.metrics().closed_invalid + pool.metrics().closed_reset_failed,
        0
    );
    drop(dir);
}
