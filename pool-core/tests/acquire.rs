//! Acquire and release: reuse without spurious connects, MRU and per-thread affinity, `try_get`,
//! `max_size` concurrent holders, `held()` tracking, and `Send`/`Sync` of the public types.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{assert_accounting, assert_invariants, id, pool, Fake};
use pool_core::{Phase, Pool, PoolError, Pooled, ScopedConn};

#[tokio::test(start_paused = true)]
async fn max_size_concurrent_holders_succeed() {
    let (pool, fake) = pool(5);
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(pool.get().await.unwrap());
    }
    let s = pool.status();
    assert_eq!((s.size, s.in_use, s.idle), (5, 5, 0));
    assert_eq!(fake.connects(), 5);
    // The sixth cannot be had.
    let err = pool
        .get_timeout(Duration::from_millis(10))
        .await
        .unwrap_err();
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
    assert_eq!(fake.connect_calls(), 5, "no connect beyond max_size");
    drop(held);
    assert_eq!(pool.status().idle, 5);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn acquire_release_reuses_without_extra_connects() {
    // bb8 test_reuse_on_drop: get/drop/get/get opens only 2 connections.
    let (pool, fake) = pool(2);
    let a = pool.get().await.unwrap();
    let first = id(&a);
    drop(a);
    let b = pool.get().await.unwrap();
    assert_eq!(id(&b), first, "the returned connection is reused");
    let c = pool.get().await.unwrap();
    assert_ne!(id(&c), first);
    assert_eq!(fake.connects(), 2);
    drop((b, c));
    for _ in 0..50 {
        let x = pool.get().await.unwrap();
        let y = pool.get().await.unwrap();
        drop((x, y));
    }
    assert_eq!(fake.connects(), 2, "no spurious connects on reuse");
    assert_eq!(pool.metrics().connects, 2);
    assert_eq!(pool.status().idle, 2);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn most_recently_returned_is_reused_first() {
    let (pool, _fake) = pool(3);
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let c = pool.get().await.unwrap();
    let (ia, ib, ic) = (id(&a), id(&b), id(&c));
    // Return order a, c, b: MRU is b, then c, then a.
    drop(a);
    drop(c);
    drop(b);
    // One task: the affinity slot names b (returned last), which is also the MRU.
    let x = pool.get().await.unwrap();
    assert_eq!(id(&x), ib);
    let y = pool.get().await.unwrap();
    assert_eq!(id(&y), ic);
    let z = pool.get().await.unwrap();
    assert_eq!(id(&z), ia);
    drop((x, y, z));
    assert_invariants(&pool);
}

#[test]
fn a_thread_gets_back_the_connection_it_returned() {
    // Built outside a runtime: the blocking front end only (the shared reaper thread).
    let (pool, fake) = pool(2);
    let barrier = Arc::new(Barrier::new(2));
    let run = |order: usize| {
        let pool = pool.clone();
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            let c = pool.get_blocking().unwrap();
            let mine = id(&c);
            barrier.wait(); // both hold one
                            // Thread 0 returns first, thread 1 second: the MRU is thread 1's connection.
            if order == 1 {
                barrier.wait();
            }
            drop(c);
            if order == 0 {
                barrier.wait();
            }
            barrier.wait(); // both returned
            let again = pool.get_blocking().unwrap();
            let got = id(&again);
            drop(again);
            (mine, got)
        })
    };
    let t0 = run(0);
    let t1 = run(1);
    let (m0, g0) = t0.join().unwrap();
    let (m1, g1) = t1.join().unwrap();
    assert_ne!(m0, m1);
    assert_eq!(
        g0, m0,
        "thread 0 gets back its own connection, not the MRU one"
    );
    assert_eq!(g1, m1);
    assert_eq!(fake.connects(), 2);
    assert_invariants(&pool);
}

#[test]
fn affinity_falls_back_when_own_connection_is_taken() {
    let (pool, fake) = pool(2);
    let a = pool.get_blocking().unwrap();
    let b = pool.get_blocking().unwrap();
    let ia = id(&a);
    let ib = id(&b);
    drop(b);
    drop(a); // this thread's affinity: a (parked with this thread); b is the shared MRU
    let p = pool.clone();
    // Another thread takes both (b, the shared MRU, first, unless the reaper's pass put a back
    // among the shared idle ones meanwhile): a request never waits or connects while a
    // connection is parked with another thread.
    let (first, second) = std::thread::spawn(move || {
        let x = p.get_blocking().unwrap();
        let y = p.get_blocking().unwrap();
        let (ix, iy) = (id(&x), id(&y));
        drop(common::detach(y)); // out of the pool for good
        drop(x);
        (ix, iy)
    })
    .join()
    .unwrap();
    let mut both = [first, second];
    both.sort_unstable();
    let mut expected = [ia, ib];
    expected.sort_unstable();
    assert_eq!(both, expected);
    assert_eq!(fake.connects(), 2, "nothing was opened while a was parked");
    // Whatever this thread's affinity names may be gone: it gets the one left, no stale entry.
    let c = pool.get_blocking().unwrap();
    assert_eq!(id(&c), first);
    drop(c);
    assert_eq!(fake.detached(), 1);
    assert_eq!(
        pool.status().size,
        1,
        "the detached connection's slot was freed"
    );
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn try_get_never_waits_nor_connects() {
    let (pool, fake) = pool(2);
    // Empty pool: try_get does not open a connection.
    let err = pool.try_get().unwrap_err();
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
    assert_eq!(fake.connect_calls(), 0);
    assert_eq!(pool.status().size, 0);
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let ia = id(&a);
    assert!(pool.try_get().is_err());
    drop(a);
    let again = pool.try_get().expect("an idle connection is free");
    assert_eq!(id(&again), ia);
    assert!(pool.try_get().is_err());
    drop((again, b));
    assert_eq!(fake.connects(), 2);
    assert_eq!(pool.metrics().gets, 6);
    assert_eq!(pool.metrics().timeouts, 3);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn try_get_does_not_barge_past_waiters() {
    let (pool, _fake) = pool(1);
    let held = pool.get().await.unwrap();
    let p = pool.clone();
    let waiter = tokio::spawn(async move { id(&p.get().await.unwrap()) });
    common::settle().await;
    assert_eq!(pool.status().waiting, 1);
    let hid = id(&held);
    drop(held); // handed to the waiter, not left idle for try_get
    assert!(pool.try_get().is_err());
    assert_eq!(waiter.await.unwrap(), hid);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn held_reports_holder_task_and_location() {
    let (pool, _fake) = pool(3);
    let p = pool.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let c = p.get().await.unwrap();
        let me = tokio::task::id();
        rx.await.unwrap();
        drop(c);
        me
    });
    common::settle().await;
    let here = pool.get().await.unwrap();
    tokio::time::advance(Duration::from_secs(3)).await;
    let held = pool.held();
    assert_eq!(held.len(), 2);
    for h in &held {
        assert_eq!(
            h.location.file(),
            file!(),
            "acquired here: {:?}",
            h.location
        );
        assert_eq!(h.thread, std::thread::current().id());
        assert!(!h.reclaimed);
        assert!(h.held_for >= Duration::from_secs(3));
    }
    let here_id = Pooled::meta(&here).id();
    let mine = held.iter().find(|h| h.id == here_id).expect("listed");
    // The test body runs in `block_on`, not in a task.
    assert_eq!(mine.task, None);
    let theirs = held.iter().find(|h| h.id != here_id).expect("listed");
    tx.send(()).unwrap();
    let task_id = task.await.unwrap();
    assert_eq!(
        theirs.task,
        Some(task_id),
        "the spawned task is named as holder"
    );
    let held = pool.held();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id, here_id);
    drop(here);
    assert!(pool.held().is_empty());

    // From a thread: no task, that thread's id, the line of this file.
    let p = pool.clone();
    let (thread_id, seen) = std::thread::spawn(move || {
        let c = p.get_blocking().unwrap();
        let seen = p.held();
        drop(c);
        (std::thread::current().id(), seen)
    })
    .join()
    .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].thread, thread_id);
    assert_eq!(seen[0].task, None);
    assert_eq!(seen[0].location.file(), file!());
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn conn_meta_counts_uses_and_ages() {
    let (pool, _fake) = pool(1);
    let c = pool.get().await.unwrap();
    assert_eq!(Pooled::meta(&c).uses(), 0);
    let first = Pooled::meta(&c).id();
    drop(c);
    tokio::time::advance(Duration::from_secs(2)).await;
    let c = pool.get().await.unwrap();
    let m = Pooled::meta(&c);
    assert_eq!(m.id(), first);
    assert_eq!(m.uses(), 1);
    assert!(m.age() >= Duration::from_secs(2));
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send_static<T: Send + 'static>(_: &T) {}
    send_sync::<Pool<Fake>>();
    send_sync::<Pooled<Fake>>();
    send_sync::<ScopedConn<Fake>>();
    send_sync::<PoolError<common::FakeError>>();
    send_sync::<pool_core::BuildError>();
    send_sync::<pool_core::Status>();
    send_sync::<pool_core::Metrics>();
    send_sync::<pool_core::HeldConn>();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (pool, _fake) = pool(1);
        // The futures can be spawned on a multi-threaded runtime.
        send_static(&pool.get());
        send_static(&pool.get_timeout(Duration::ZERO));
        let p = pool.clone();
        let scoped = async move { p.scope(async { drop(p.scoped().await) }).await };
        send_static(&scoped);
        let p = pool.clone();
        send_static(&async move { p.close_graceful(Duration::ZERO).await });
    });
}
