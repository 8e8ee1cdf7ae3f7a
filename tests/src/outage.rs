//! The outage scenario that every server backend runs against a throwaway server of its own: the
//! server goes down while tasks use the pool, stays down, and comes back. Every call returns
//! within its bound while it is down, and the pool recovers by itself.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pool_core::{Manager, Pool};

const CONNECT: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(2);
/// Every call is bounded by the pool's timeouts; this is the slack on a busy machine.
const BOUND: Duration = Duration::from_secs(6);
const MAX_SIZE: usize = 4;
const TASKS: usize = 6;

/// A throwaway server that a test may stop and start again on the same address.
pub trait Restartable: Send + 'static {
    /// Stops the server (its clients see their connections end).
    fn stop(&mut self);
    /// Starts the stopped server again and waits until it accepts connections.
    fn resume(&mut self);
}

/// Runs the scenario on a pool of `manager` (which must point at `server`), with `ping` as one
/// call: a get and a trivial query, its error as text.
///
/// 1. Server up: calls succeed.
/// 2. The server stops while 6 tasks hammer a pool of 4: the outage is noticed.
/// 3. While it is down every call fails, each within 6 s (the pool's timeouts and some slack),
///    and the pool stays within its size.
/// 4. Once it is back, calls succeed again within 30 s without any manual reset.
///
/// # Panics
/// When any of those steps does not hold (it is a test).
pub async fn survives_a_server_restart<M, S, P, F>(server: S, manager: M, ping: P)
where
    M: Manager,
    S: Restartable,
    P: Fn(Pool<M>) -> F + Clone + Send + 'static,
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    let server = Arc::new(Mutex::new(server));
    let pool = Pool::builder(manager)
        .max_size(MAX_SIZE)
        .connect_timeout(CONNECT)
        .wait_timeout(WAIT)
        .validate_timeout(Duration::from_secs(1))
        .validate_after_idle(Some(Duration::from_millis(200)))
        .build()
        .expect("a valid pool configuration");

    let (ok, err, first) = hammer(&pool, &ping, Duration::from_millis(700)).await;
    assert!(
        ok > 0 && err == 0,
        "server up: {ok} ok, {err} errors, the first: {first:?}"
    );

    // Stop it while the tasks are busy.
    let stopper = {
        let server = server.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tokio::task::spawn_blocking(move || lock(&server).stop())
                .await
                .expect("stopping the server panicked");
        })
    };
    let (_, err, _) = hammer(&pool, &ping, Duration::from_millis(1500)).await;
    stopper.await.expect("the stopper task panicked");
    assert!(err > 0, "the outage must be noticed");

    // While it is down every call fails, within its bound (checked inside `hammer`).
    let (ok, err, _) = hammer(&pool, &ping, Duration::from_secs(2)).await;
    assert_eq!(ok, 0, "no call can succeed while the server is down");
    assert!(err > 0);
    assert!(pool.status().size <= MAX_SIZE);

    {
        let server = server.clone();
        tokio::task::spawn_blocking(move || lock(&server).resume())
            .await
            .expect("restarting the server panicked");
    }
    // The pool recovers by itself (no manual reset): calls succeed again within a bounded time.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = tokio::time::timeout(BOUND, ping(pool.clone())).await;
        if matches!(res, Ok(Ok(()))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pool did not recover: {res:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, err, first) = hammer(&pool, &ping, Duration::from_millis(700)).await;
    assert!(
        ok > 0 && err == 0,
        "after recovery: {ok} ok, {err} errors, the first: {first:?}"
    );
    assert!(pool.status().size <= MAX_SIZE);
}

/// The server, even if a thread panicked while holding it (the test then fails anyway).
fn lock<S>(server: &Mutex<S>) -> MutexGuard<'_, S> {
    server.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs [`TASKS`] tasks calling `ping` in a loop for `run`, returning the (ok, err) counts and
/// the first error; panics if any call took longer than [`BOUND`].
async fn hammer<M, P, F>(pool: &Pool<M>, ping: &P, run: Duration) -> (usize, usize, Option<String>)
where
    M: Manager,
    P: Fn(Pool<M>) -> F + Clone + Send + 'static,
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    let deadline = Instant::now() + run;
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let (pool, ping) = (pool.clone(), ping.clone());
        handles.push(tokio::spawn(async move {
            let (mut ok, mut err, mut first) = (0, 0, None);
            while Instant::now() < deadline {
                let start = Instant::now();
                let res = tokio::time::timeout(Duration::from_secs(30), ping(pool.clone()))
                    .await
                    .expect("a call hung for 30 s");
                let took = start.elapsed();
                assert!(took < BOUND, "a call took {took:?} ({res:?})");
                match res {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        err += 1;
                        first.get_or_insert(e);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (ok, err, first)
        }));
    }
    let mut total = (0, 0, None);
    for h in handles {
        let (ok, err, first) = h.await.expect("task panicked");
        total.0 += ok;
        total.1 += err;
        total.2 = total.2.or(first);
    }
    total
}
