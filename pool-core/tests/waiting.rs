//! Waiting: wait timeouts (configured, zero, per call, blocking), FIFO order without barging,
//! cancelled waiters that do not swallow a release, many waiters without a lost wake-up.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_accounting, assert_invariants, builder, id, pool, settle, Fake};
use pool_core::{Phase, PoolError};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn wait_timeout_is_the_configured_one() {
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .wait_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let _held = pool.get().await.unwrap();
    let start = Instant::now();
    let err = pool.get().await.unwrap_err();
    let took = start.elapsed();
    match err {
        PoolError::Timeout {
            phase,
            waited,
            last_error,
        } => {
            assert_eq!(phase, Phase::Wait);
            assert!(last_error.is_none());
            assert!(waited >= Duration::from_millis(300), "{waited:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(350),
        "{took:?}"
    );
    assert_eq!(
        pool.status().waiting,
        0,
        "the timed-out waiter left the queue"
    );
    assert_eq!(pool.metrics().timeouts, 1);
    assert_eq!(pool.metrics().waits, 1);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn zero_wait_timeout_fails_at_once_but_may_connect() {
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .wait_timeout(Duration::ZERO)
        .build()
        .unwrap();
    // Capacity free: zero means "no waiting", not "no connecting".
    let held = pool.get().await.expect("may open a connection");
    let start = Instant::now();
    let err = pool.get().await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(
        matches!(
            err,
            PoolError::Timeout {
                phase: Phase::Wait,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(pool.metrics().waits, 0, "it never queued");
    drop(held);
    assert!(
        pool.get().await.is_ok(),
        "an idle connection is served at once"
    );
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn per_call_wait_timeout_overrides_the_configured_one() {
    let (pool, _fake) = pool(1); // configured: 5 s
    let held = pool.get().await.unwrap();
    let start = Instant::now();
    let err = pool
        .get_timeout(Duration::from_millis(40))
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(40) && took < Duration::from_millis(60),
        "{took:?}"
    );
    let start = Instant::now();
    assert!(pool
        .get_timeout(Duration::ZERO)
        .await
        .unwrap_err()
        .is_timeout());
    assert_eq!(start.elapsed(), Duration::ZERO);

    // Succeeds when the holder returns within the timeout (r2d2 get_timeout).
    let p = pool.clone();
    let returner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        drop(p);
    });
    let c = pool.get_timeout(Duration::from_millis(100)).await.unwrap();
    returner.await.unwrap();
    drop(c);
    assert_invariants(&pool);
}

#[test]
fn blocking_wait_timeout_with_real_time() {
    let (pool, _fake) = pool(1);
    let held = pool.get_blocking().unwrap();
    let start = std::time::Instant::now();
    let err = pool
        .get_blocking_timeout(Duration::from_millis(30))
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(
            err,
            PoolError::Timeout {
                phase: Phase::Wait,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(took >= Duration::from_millis(30), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(pool.status().waiting, 0);

    // A holder on another thread returns within the timeout: the parked thread is woken.
    let hid = id(&held);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
    });
    let c = pool.get_blocking_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(id(&c), hid);
    t.join().unwrap();
    drop(c);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_fifo_order_without_barging() {
    let (pool, _fake) = pool(1);
    let held = pool.get().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let p = pool.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let c = p.get().await.unwrap();
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(c);
        }));
        settle().await; // queue in order 0..5
    }
    assert_eq!(pool.status().waiting, 5);
    drop(held);
    // A newcomer arriving after the release queues behind them: it must be last.
    let p = pool.clone();
    let o = order.clone();
    let late = tokio::spawn(async move {
        let _c = p.get().await.unwrap();
        o.lock().unwrap().push(99);
    });
    for t in tasks {
        t.await.unwrap();
    }
    late.await.unwrap();
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 99]);
    assert_invariants(&pool);
}

/// Waits (bounded) until `n` requests are queued.
fn until_waiting(pool: &pool_core::Pool<Fake>, n: usize) {
    let start = std::time::Instant::now();
    while pool.status().waiting != n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            pool.status()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn queued_threads_are_served_in_fifo_order_and_a_late_thread_that_looks_again_comes_last() {
    let (pool, _fake) = pool(1);
    let held = pool.get_blocking().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let spawn = |i: usize| {
        let (p, order) = (pool.clone(), order.clone());
        std::thread::spawn(move || {
            let c = p.get_blocking().unwrap();
            order.lock().unwrap().push(i);
            std::thread::sleep(Duration::from_millis(1));
            drop(c);
        })
    };
    let mut threads = Vec::new();
    for i in 0..4 {
        threads.push(spawn(i));
        until_waiting(&pool, i + 1); // queue in order 0..4
    }
    // A late thread starts while the connection is returned: it looks again (yielding) before
    // it queues, and may find the connection free in between, but never ahead of the queue.
    threads.push(spawn(99));
    drop(held);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 99]);
    let m = pool.metrics();
    assert_eq!(m.gets, 6, "{m:?}");
    assert!(m.waits >= 4, "{m:?}");
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiter_does_not_swallow_a_release() {
    // mobc test_requests_skip_canceled / qp test_abort_acquire.
    let (pool, _fake) = pool(1);
    let held = pool.get().await.unwrap();
    let p = pool.clone();
    let first = tokio::spawn(async move { p.get().await.map(|c| id(&c)) });
    settle().await;
    let p = pool.clone();
    let second = tokio::spawn(async move { p.get().await.map(|c| id(&c)) });
    settle().await;
    assert_eq!(pool.status().waiting, 2);
    first.abort();
    settle().await;
    assert_eq!(
        pool.status().waiting,
        1,
        "the aborted waiter left the queue"
    );
    let hid = id(&held);
    drop(held);
    let got = tokio::time::timeout(Duration::from_millis(10), second)
        .await
        .expect("the release reached the live waiter")
        .unwrap()
        .unwrap();
    assert_eq!(got, hid);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn waiter_cancelled_after_its_grant_passes_the_connection_on() {
    // The release grants the connection to the head waiter, which is dropped before it runs.
    let (pool, _fake) = pool(1);
    let held = pool.get().await.unwrap();
    let mut first = Box::pin(pool.get());
    assert!(futures::poll!(first.as_mut()).is_pending());
    let p = pool.clone();
    let second = tokio::spawn(async move { p.get().await.map(|c| id(&c)) });
    settle().await;
    assert_eq!(pool.status().waiting, 2);
    let hid = id(&held);
    drop(held); // granted to `first`
    drop(first); // which never takes it
    let got = tokio::time::timeout(Duration::from_millis(10), second)
        .await
        .expect("the grant was passed on")
        .unwrap()
        .unwrap();
    assert_eq!(got, hid);
    assert_eq!(pool.status().in_use, 0);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn outer_timeout_on_get_does_not_poison_the_pool() {
    // bb8 test_timeout_caller.
    let (pool, _fake) = pool(1);
    let held = pool.get().await.unwrap();
    for _ in 0..10 {
        assert!(tokio::time::timeout(Duration::from_millis(5), pool.get())
            .await
            .is_err());
    }
    assert_eq!(pool.status().waiting, 0);
    drop(held);
    let c = tokio::time::timeout(Duration::from_millis(5), pool.get())
        .await
        .expect("not poisoned")
        .unwrap();
    drop(c);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn twenty_thousand_waiters_on_a_pool_of_three() {
    // bb8 test_lots_of_waiters: no lost wake-up.
    let fake = Fake::new();
    let pool = builder(&fake, 3)
        .wait_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut tasks = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = p.get().await?;
            c.value += 1;
            tokio::task::yield_now().await;
            Ok::<_, PoolError<common::FakeError>>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("every waiter is served");
    }
    assert_eq!(fake.connects(), 3);
    let m = pool.metrics();
    assert_eq!(m.gets, 20_000);
    assert_eq!(m.timeouts, 0);
    let mut total = 0;
    let held: Vec<_> = (0..3).map(|_| pool.try_get().unwrap()).collect();
    for c in &held {
        total += c.value;
    }
    assert_eq!(total, 20_000);
    drop(held);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[test]
fn many_threads_share_a_small_pool() {
    let (pool, fake) = pool(2);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let p = pool.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let mut c = p.get_blocking().unwrap();
                    c.value += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = pool.status();
    assert_eq!((s.in_use, s.waiting, s.opening), (0, 0, 0), "{s:?}");
    assert_eq!(s.size as u64, fake.connects());
    let all: Vec<_> = (0..s.size).map(|_| pool.try_get().unwrap()).collect();
    assert_eq!(all.iter().map(|c| c.value).sum::<u64>(), 400);
    assert!(fake.connects() <= 2);
    drop(all);
    assert_invariants(&pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_and_threads_share_one_pool() {
    let (pool, fake) = pool(2);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let mut c = p.get().await.unwrap();
                c.value += 1;
                tokio::task::yield_now().await;
            }
        }));
    }
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let p = pool.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let mut c = p.get_blocking().unwrap();
                    c.value += 1;
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
    let s = pool.status();
    assert_eq!((s.in_use, s.waiting, s.opening), (0, 0, 0), "{s:?}");
    assert_eq!(s.size as u64, fake.connects());
    let all: Vec<_> = (0..s.size).map(|_| pool.try_get().unwrap()).collect();
    assert_eq!(all.iter().map(|c| c.value).sum::<u64>(), 300);
    assert!(fake.connects() <= 2);
    drop(all);
    assert_invariants(&pool);
}
