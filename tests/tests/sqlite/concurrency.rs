//! Many threads and many tasks share a small pool: the size limit holds and every operation
//! completes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pool_sqlite::Pool;

use crate::{count_items, counting_manager, temp_db};

const MAX: usize = 4;

/// Counts holders of a pooled connection and remembers the most at once.
#[derive(Default)]
struct Occupancy {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Occupancy {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    /// Checks that at least one and at most `MAX` held a connection at once, and that between
    /// one and `MAX` connections were opened; returns how many were.
    fn check_peaks(&self, opened: &AtomicUsize) -> usize {
        let peak = self.peak.load(Ordering::SeqCst);
        assert!((1..=MAX).contains(&peak), "peak holders {peak}");
        let opened = opened.load(Ordering::SeqCst);
        assert!(
            (1..=MAX).contains(&opened),
            "opened {opened} connections, max {MAX}"
        );
        opened
    }
}

fn setup() -> (tempfile::TempDir, Pool, Arc<AtomicUsize>) {
    let (dir, url) = temp_db();
    let (manager, opened) = counting_manager(&url);
    let pool = Pool::new(manager, MAX).unwrap();
    pool.get_blocking()
        .unwrap()
        .lock()
        .execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, v INTEGER)")
        .unwrap();
    (dir, pool, opened)
}

fn check_status(pool: &Pool) {
    let status = pool.status();
    assert!(
        status.size <= MAX,
        "pool size {} above max {MAX}: {status:?}",
        status.size
    );
    assert!(status.in_use <= MAX, "{status:?}");
}

#[test]
fn many_threads_respect_max_size() {
    const THREADS: usize = 16;
    const ROUNDS: usize = 25;
    let (_dir, pool, opened) = setup();
    let occupancy = Arc::new(Occupancy::default());

    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            let occupancy = Arc::clone(&occupancy);
            std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    let conn = pool.get_blocking().expect("get a connection");
                    occupancy.enter();
                    check_status(&pool);
                    {
                        let c = conn.lock();
                        c.execute("INSERT INTO items (v) VALUES (?1)", [(t * 1000 + i) as i64])
                            .expect("insert");
                    }
                    std::thread::yield_now();
                    occupancy.leave();
                    drop(conn);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker thread panicked");
    }

    let opened = occupancy.check_peaks(&opened);
    assert_eq!(pool.metrics().connects, opened as u64);
    let conn = pool.get_blocking().unwrap();
    assert_eq!(count_items(&conn.lock()), (THREADS * ROUNDS) as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_respect_max_size() {
    const TASKS: usize = 64;
    const ROUNDS: usize = 10;
    let (_dir, pool, opened) = setup();
    let occupancy = Arc::new(Occupancy::default());

    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let pool = pool.clone();
            let occupancy = Arc::clone(&occupancy);
            tokio::spawn(async move {
                for i in 0..ROUNDS {
                    let conn = pool.get().await.expect("get a connection");
                    occupancy.enter();
                    check_status(&pool);
                    conn.interact(move |c| {
                        c.execute("INSERT INTO items (v) VALUES (?1)", [(t * 1000 + i) as i64])
                    })
                    .await
                    .expect("no panic")
                    .expect("insert");
                    occupancy.leave();
                    drop(conn);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task panicked");
    }

    occupancy.check_peaks(&opened);
    let conn = pool.get().await.unwrap();
    let n = conn.interact(|c| count_items(c)).await.unwrap();
    assert_eq!(n, (TASKS * ROUNDS) as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_and_tasks_share_one_pool() {
    let (_dir, pool, opened) = setup();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let conn = pool.get_blocking().unwrap();
                    conn.lock()
                        .execute("INSERT INTO items (v) VALUES (1)", [])
                        .unwrap();
                }
            })
        })
        .collect();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    pool.interact(|c| c.execute("INSERT INTO items (v) VALUES (2)", []))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(opened.load(Ordering::SeqCst) <= MAX);
    let conn = pool.get().await.unwrap();
    let n = conn.interact(|c| count_items(c)).await.unwrap();
    assert_eq!(n, 4 * 20 + 8 * 20);
}

/// `SqlitePool::interact` hands each connection from one closure to the next queued one: many
/// more requests than connections all run, never more closures at once than connections, and
/// every connection is back in the pool by the time its request completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pool_interacts_hand_connections_on() {
    const TASKS: usize = 64;
    const ROUNDS: usize = 10;
    let (_dir, pool, opened) = setup();
    let occupancy = Arc::new(Occupancy::default());

    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let pool = pool.clone();
            let occupancy = Arc::clone(&occupancy);
            tokio::spawn(async move {
                for i in 0..ROUNDS {
                    let occ = Arc::clone(&occupancy);
                    pool.interact(move |c| {
                        occ.enter();
                        let r =
                            c.execute("INSERT INTO items (v) VALUES (?1)", [(t * 1000 + i) as i64]);
                        occ.leave();
                        r
                    })
                    .await
                    .expect("insert");
                    check_status(&pool);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task panicked");
    }

    occupancy.check_peaks(&opened);
    let s = pool.status();
    assert_eq!((s.in_use, s.waiting), (0, 0), "{s:?}");
    let n = pool.interact(|c| Ok(count_items(c))).await.unwrap();
    assert_eq!(n, (TASKS * ROUNDS) as i64);
    assert_eq!(
        pool.status().in_use,
        0,
        "returned before interact completes"
    );
}

/// A queued `SqlitePool::interact` waits without holding a thread and within the wait timeout;
/// dropped while queued, it leaves the queue and its closure never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_pool_interact_times_out_or_cancels_cleanly() {
    use pool_sqlite::InteractError;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;
    let (dir, url) = temp_db();
    let pool = Pool::builder(pool_sqlite::SqliteManager::from_url(&url).unwrap())
        .max_size(1)
        .wait_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();

    let ran = Arc::new(AtomicBool::new(false));
    let r = {
        let ran = Arc::clone(&ran);
        pool.interact(move |_| {
            ran.store(true, Ordering::SeqCst);
            Ok(())
        })
        .await
    };
    match r {
        Err(InteractError::Pool(pool_core::PoolError::Timeout { waited, .. })) => {
            assert!(waited >= Duration::from_millis(200), "{waited:?}");
        }
        other => panic!("expected a wait timeout, got {other:?}"),
    }
    assert_eq!(pool.status().waiting, 0);

    let fut = {
        let ran = Arc::clone(&ran);
        pool.interact(move |_| {
            ran.store(true, Ordering::SeqCst);
            Ok(())
        })
    };
    let queued = tokio::spawn(fut);
    for _ in 0..1000 {
        if pool.status().waiting == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(pool.status().waiting, 1);
    queued.abort();
    assert!(queued.await.unwrap_err().is_cancelled());
    assert_eq!(
        pool.status().waiting,
        0,
        "the cancelled request left the queue"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!ran.load(Ordering::SeqCst), "no closure ran");
    let s = pool.status();
    assert_eq!((s.idle, s.in_use), (1, 0), "{s:?}");
    assert_eq!(
        pool.interact(|c| c.query_row("SELECT 7", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap(),
        7
    );
    drop(dir);
}
