//! Maintenance: resize, close, close_graceful, close_idle, reclaim_held, close_all, dropping the
//! pool, `Pooled::close` and `Pooled::detach`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    assert_accounting, assert_invariants, assert_invariants_shrinking, builder, detach, pool,
    settle, Behavior, Fake,
};
use pool_core::{CloseReason, PoolError, Pooled, ResizeError};
use tokio::time::{sleep, Instant};

#[tokio::test(start_paused = true)]
async fn resize_shrink_closes_idle_now_and_in_use_on_return() {
    let (pool, fake) = pool(4);
    let held: Vec<_> = futures::future::join_all((0..4).map(|_| pool.get())).await;
    let mut held: Vec<_> = held.into_iter().map(Result::unwrap).collect();
    drop(held.pop()); // 1 idle, 3 out
    pool.resize(1).unwrap();
    assert_eq!(
        fake.closes(CloseReason::Resized),
        1,
        "the idle one is closed now"
    );
    let s = pool.status();
    assert_eq!((s.max_size, s.size, s.idle, s.in_use), (1, 3, 0, 3));
    assert_eq!(
        s.excess, 2,
        "the excess over the new max is reported: {s:?}"
    );
    assert_invariants_shrinking(&pool);
    drop(held.pop());
    assert_eq!(fake.closes(CloseReason::Resized), 2);
    assert_eq!(pool.status().excess, 1);
    drop(held.pop());
    assert_eq!(fake.closes(CloseReason::Resized), 3);
    drop(held.pop()); // size is back at max_size: kept
    assert_eq!(fake.closes(CloseReason::Resized), 3);
    let s = pool.status();
    assert_eq!((s.size, s.idle), (1, 1));
    assert_eq!(
        pool.metrics().closed_manual,
        3,
        "resized closes are counted as manual"
    );
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn resize_grow_serves_a_waiter_at_once() {
    // deadpool resize_pool_grow_concurrent.
    let (pool, fake) = pool(1);
    let held = pool.get().await.unwrap();
    let p = pool.clone();
    let waiter = tokio::spawn(async move {
        let start = Instant::now();
        p.get().await.map(|c| (c.id, start.elapsed()))
    });
    settle().await;
    assert_eq!(pool.status().waiting, 1);
    pool.resize(2).unwrap();
    let (id, waited) = waiter.await.unwrap().unwrap();
    assert_eq!(id, 2);
    assert_eq!(waited, Duration::ZERO);
    assert_eq!(fake.connects(), 2);
    drop(held);
    let s = pool.status();
    assert_eq!((s.max_size, s.size, s.idle), (2, 2, 2));
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn resize_down_then_up_reuses_existing() {
    // deadpool test_grow_reuse_existing (#380): no overflow, first return discards, second keeps.
    let (pool, fake) = pool(2);
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    pool.resize(1).unwrap();
    pool.resize(1).unwrap();
    drop(a);
    assert_eq!(fake.closes(CloseReason::Resized), 1);
    drop(b);
    assert_eq!(fake.closes(CloseReason::Resized), 1);
    pool.resize(2).unwrap();
    let s = pool.status();
    assert_eq!((s.max_size, s.size, s.idle), (2, 1, 1));
    let c = pool.get().await.unwrap();
    let d = pool.get().await.unwrap();
    assert_eq!(fake.connects(), 3);
    drop((c, d));
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn resize_rejects_zero_and_a_closed_pool() {
    let (pool, _fake) = pool(2);
    assert_eq!(pool.resize(0), Err(ResizeError::ZeroMaxSize));
    assert_eq!(pool.status().max_size, 2);
    pool.close();
    assert_eq!(pool.resize(3), Err(ResizeError::Closed));
    assert_eq!(pool.status().max_size, 2);
}

#[tokio::test(start_paused = true)]
async fn close_fails_waiters_and_later_requests() {
    // deadpool managed::closing.
    let (pool, fake) = pool(2);
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    drop(b); // 1 idle, 1 out
    let closed_now = pool.close();
    assert_eq!(closed_now, 1, "the idle one");
    assert!(pool.is_closed());
    assert_eq!(fake.closes(CloseReason::Closed), 1);
    assert!(matches!(pool.get().await, Err(PoolError::Closed)));
    assert!(matches!(pool.try_get(), Err(PoolError::Closed)));
    let p = pool.clone();
    let blocking = tokio::task::spawn_blocking(move || p.get_blocking().map(|_| ()));
    assert!(matches!(blocking.await.unwrap(), Err(PoolError::Closed)));
    assert_eq!(pool.status().size, 1, "the held connection still counts");
    drop(a);
    assert_eq!(fake.closes(CloseReason::Closed), 2);
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.in_use, s.waiting), (0, 0, 0, 0));
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn close_gives_every_queued_waiter_closed() {
    let (pool, _fake) = pool(1);
    let held = pool.get().await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..3 {
        let p = pool.clone();
        waiters.push(tokio::spawn(async move {
            let start = Instant::now();
            (p.get().await.map(|_| ()), start.elapsed())
        }));
    }
    settle().await;
    assert_eq!(pool.status().waiting, 3);
    assert_eq!(pool.close(), 0, "nothing idle");
    for w in waiters {
        let (r, waited) = w.await.unwrap();
        assert!(matches!(r, Err(PoolError::Closed)), "{r:?}");
        assert_eq!(waited, Duration::ZERO);
    }
    drop(held);
    assert_eq!(pool.status().size, 0);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn close_graceful_waits_for_a_holder() {
    let (pool, fake) = pool(3);
    let held: Vec<_> = futures::future::join_all((0..3).map(|_| pool.get())).await;
    let mut held: Vec<_> = held.into_iter().map(Result::unwrap).collect();
    let out = held.pop().unwrap();
    drop(held); // 2 idle, 1 out
    let returner = tokio::spawn(async move {
        sleep(Duration::from_millis(50)).await;
        drop(out);
    });
    let start = Instant::now();
    let n = pool.close_graceful(Duration::from_secs(10)).await;
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert_eq!(n, 3);
    returner.await.unwrap();
    assert_eq!(fake.closes(CloseReason::Closed), 3);
    assert_eq!(pool.status().size, 0);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn close_graceful_gives_up_after_its_timeout() {
    let (pool, fake) = pool(2);
    let out = pool.get().await.unwrap();
    let start = Instant::now();
    let n = pool.close_graceful(Duration::from_millis(200)).await;
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(n, 0);
    drop(out);
    assert_eq!(fake.closes(CloseReason::Closed), 1);
}

#[tokio::test(start_paused = true)]
async fn close_graceful_returns_when_an_inflight_connect_lands() {
    let fake = Fake::new();
    fake.script_connect([Behavior::Slow(Duration::from_millis(100))]);
    let pool = builder(&fake, 2).build().unwrap();
    let p = pool.clone();
    let req = tokio::spawn(async move { p.get().await.map(|_| ()) });
    settle().await;
    assert_eq!(pool.status().opening, 1);
    let start = Instant::now();
    let n = pool.close_graceful(Duration::from_secs(10)).await;
    let took = start.elapsed();
    assert!(matches!(req.await.unwrap(), Err(PoolError::Closed)));
    assert_eq!(fake.closes(CloseReason::Closed), 1);
    assert_eq!(pool.status().size, 0);
    assert_eq!(n, 1);
    assert!(
        took <= Duration::from_millis(100),
        "close_graceful waited {took:?} although nothing was left after 100 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn close_idle_closes_only_idle_ones() {
    let (pool, fake) = pool(3);
    let held: Vec<_> = futures::future::join_all((0..3).map(|_| pool.get())).await;
    let mut held: Vec<_> = held.into_iter().map(Result::unwrap).collect();
    let out = held.pop().unwrap();
    drop(held);
    assert_eq!(pool.close_idle(), 2);
    assert_eq!(fake.closes(CloseReason::Manual), 2);
    assert_eq!(pool.metrics().closed_manual, 2);
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.in_use), (1, 0, 1));
    drop(out);
    assert_eq!(pool.status().idle, 1, "the in-use one comes back normally");
    assert!(!pool.is_closed());
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn reclaim_held_reclaims_leaked_connections() {
    let (pool, fake) = pool(2);
    let old = pool.get().await.unwrap();
    sleep(Duration::from_secs(60)).await;
    let young = pool.get().await.unwrap();
    sleep(Duration::from_secs(1)).await;
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.get().await.map(|c| c.id) });
    settle().await;
    assert_eq!(pool.status().waiting, 1);
    assert_eq!(pool.reclaim_held(Duration::from_secs(30)), 1);
    // Capacity released at once: the waiter opens a new connection.
    assert_eq!(waiter.await.unwrap().unwrap(), 3);
    let s = pool.status();
    assert_eq!((s.size, s.reclaimed, s.in_use), (2, 1, 1), "{s:?}");
    assert_invariants(&pool);
    let held = pool.held();
    assert_eq!(held.iter().filter(|h| h.reclaimed).count(), 1);
    assert_eq!(pool.metrics().closed_leaked, 1);
    assert_accounting(&pool);
    // The leaked connection is closed, not reused, when its holder drops it.
    assert_eq!(fake.closes(CloseReason::Leaked), 0);
    drop(old);
    assert_eq!(fake.closed_ids(CloseReason::Leaked), vec![1]);
    let s = pool.status();
    assert_eq!((s.size, s.reclaimed, s.idle), (2, 0, 1), "{s:?}");
    assert_eq!(pool.metrics().closed_leaked, 1, "counted once");
    drop(young);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn close_all_keeps_the_pool_usable() {
    let (pool, fake) = pool(3);
    let held: Vec<_> = futures::future::join_all((0..3).map(|_| pool.get())).await;
    let mut held: Vec<_> = held.into_iter().map(Result::unwrap).collect();
    let out = held.pop().unwrap();
    drop(held);
    assert_eq!(pool.close_all(), 3);
    assert!(!pool.is_closed());
    let s = pool.status();
    assert_eq!((s.size, s.reclaimed), (0, 1));
    let fresh: Vec<_> = futures::future::join_all((0..3).map(|_| pool.get())).await;
    assert!(
        fresh.iter().all(Result::is_ok),
        "a full pool of new connections"
    );
    assert_eq!(fake.connects(), 6);
    drop(out);
    assert_eq!(fake.closes(CloseReason::Leaked), 1);
    drop(fresh);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_pool_closes_everything_and_frees_it() {
    // r2d2/bb8 conns_drop_on_pool_drop: the reaper holds only a Weak.
    let fake = Fake::new();
    let pool = builder(&fake, 4)
        .min_idle(1)
        .reap_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let held: Vec<_> = futures::future::join_all((0..4).map(|_| pool.get())).await;
    let mut held: Vec<_> = held.into_iter().map(Result::unwrap).collect();
    let out = held.pop().unwrap();
    drop(held);
    sleep(Duration::from_millis(250)).await; // reaper passes
    let clone = pool.clone();
    drop(pool);
    assert_eq!(fake.closes_total(), 0, "a clone still holds the pool");
    drop(clone);
    assert_eq!(
        fake.closes(CloseReason::Closed),
        3,
        "idle ones closed at once"
    );
    drop(out);
    assert_eq!(
        fake.closes(CloseReason::Closed),
        4,
        "the checked-out one when it came back"
    );
    sleep(Duration::from_millis(500)).await; // the reaper task notices and ends
    assert_eq!(fake.silent_drops(), 0);
    assert_eq!(
        Arc::strong_count(&fake.ctl),
        1,
        "the pool (and its manager) was freed: nothing but a Weak was left"
    );
}

#[tokio::test(start_paused = true)]
async fn pooled_close_frees_the_slot_for_a_waiter() {
    let (pool, fake) = pool(1);
    let c = pool.get().await.unwrap();
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.get().await.map(|c| c.id) });
    settle().await;
    Pooled::close(c);
    assert_eq!(fake.closed_ids(CloseReason::Manual), vec![1]);
    assert_eq!(waiter.await.unwrap().unwrap(), 2);
    assert_eq!(pool.metrics().closed_manual, 1);
    let s = pool.status();
    assert_eq!((s.size, s.idle), (1, 1));
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn pooled_detach_frees_the_slot_and_the_pool_forgets_it() {
    let (pool, fake) = pool(1);
    let c = pool.get().await.unwrap();
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.get().await.map(|c| c.id) });
    settle().await;
    let mine = detach(c);
    assert_eq!(mine.id, 1);
    assert_eq!(waiter.await.unwrap().unwrap(), 2);
    assert_eq!(
        fake.closes_total(),
        0,
        "the pool does not close a detached connection"
    );
    assert_eq!(pool.status().size, 1);
    assert_accounting(&pool);
    pool.close();
    assert_eq!(fake.closes_total(), 1);
    assert_eq!(fake.closed_ids(CloseReason::Closed), vec![2]);
    drop(mine);
    assert_invariants(&pool);
}
