//! The server goes down while tasks use the pool, stays down, and comes back: every call returns
//! within its bound while it is down, and the pool recovers by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_mysql::mysql_async::prelude::*;
use pool_mysql::{Manager, Pool};

use crate::server::MariaServer;

const CONNECT: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(2);
/// Every call is bounded by the pool's timeouts; this is the slack on a busy machine.
const BOUND: Duration = Duration::from_secs(6);

/// Runs `tasks` tasks doing get + query in a loop for `run`, returning (ok, err) counts; panics if
/// any call took longer than [`BOUND`].
async fn hammer(pool: &Pool, tasks: usize, run: Duration) -> (usize, usize) {
    let deadline = Instant::now() + run;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            let (mut ok, mut err) = (0, 0);
            while Instant::now() < deadline {
                let start = Instant::now();
                let res = tokio::time::timeout(Duration::from_secs(30), async {
                    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                    conn.query_drop("SELECT 1")
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>(())
                })
                .await
                .expect("a call hung for 30 s");
                let took = start.elapsed();
                assert!(took < BOUND, "a call took {took:?} ({res:?})");
                match res {
                    Ok(()) => ok += 1,
                    Err(_) => {
                        err += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (ok, err)
        }));
    }
    let mut total = (0, 0);
    for h in handles {
        let (ok, err) = h.await.expect("task panicked");
        total.0 += ok;
        total.1 += err;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_survives_a_server_restart() {
    let server = tokio::task::spawn_blocking(MariaServer::start)
        .await
        .unwrap();
    let server = Arc::new(parking_lot_free::Mutex::new(server));
    let url = server.lock().url();
    let pool = Pool::builder(Manager::from_url(&url).unwrap())
        .max_size(4)
        .connect_timeout(CONNECT)
        .wait_timeout(WAIT)
        .validate_timeout(Duration::from_secs(1))
        .validate_after_idle(Some(Duration::from_millis(200)))
        .build()
        .unwrap();

    let (ok, err) = hammer(&pool, 6, Duration::from_millis(700)).await;
    assert!(ok > 0 && err == 0, "server up: {ok} ok, {err} errors");

    // Stop it while the tasks are busy.
    let stopper = {
        let server = server.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tokio::task::spawn_blocking(move || server.lock().stop())
                .await
                .unwrap();
        })
    };
    let (_, err) = hammer(&pool, 6, Duration::from_millis(1500)).await;
    stopper.await.unwrap();
    assert!(err > 0, "the outage must be noticed");

    // While it is down every call fails, within its bound (checked inside `hammer`).
    let (ok, err) = hammer(&pool, 6, Duration::from_secs(2)).await;
    assert_eq!(ok, 0, "no call can succeed while the server is down");
    assert!(err > 0);
    assert!(pool.status().size <= 4);

    {
        let server = server.clone();
        tokio::task::spawn_blocking(move || server.lock().resume())
            .await
            .unwrap();
    }
    // The pool recovers by itself (no manual reset): calls succeed again within a bounded time.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = tokio::time::timeout(BOUND, async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            conn.query_drop("SELECT 1").await.map_err(|e| e.to_string())
        })
        .await;
        if matches!(res, Ok(Ok(_))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pool did not recover: {res:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, err) = hammer(&pool, 6, Duration::from_millis(700)).await;
    assert!(ok > 0 && err == 0, "after recovery: {ok} ok, {err} errors");
    assert!(pool.status().size <= 4);
}

/// A poison-free std mutex wrapper (the tests crate has no parking_lot).
mod parking_lot_free {
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(std::sync::Mutex::new(value))
        }
        pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}
