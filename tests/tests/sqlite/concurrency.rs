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

    let peak = occupancy.peak.load(Ordering::SeqCst);
    assert!((1..=MAX).contains(&peak), "peak holders {peak}");
    let opened = opened.load(Ordering::SeqCst);
    assert!(
        (1..=MAX).contains(&opened),
        "opened {opened} connections, max {MAX}"
    );
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

    let peak = occupancy.peak.load(Ordering::SeqCst);
    assert!((1..=MAX).contains(&peak), "peak holders {peak}");
    let opened = opened.load(Ordering::SeqCst);
    assert!(
        (1..=MAX).contains(&opened),
        "opened {opened} connections, max {MAX}"
    );
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
                use pool_sqlite::SqlitePool;
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
