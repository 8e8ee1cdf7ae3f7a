//! Cancellation during a hand-over: an async request that gives up after the connection was
//! granted to it (into its grant cell, `crate::core::cell`) must pass the connection on, so no
//! capacity and no wake-up is lost.
//!
//! The async front end needs a runtime for its timeout and its background connects: the model
//! enters a current-thread runtime, polls `Pool::get_timeout`'s future by hand with a no-op
//! waker, drops it, then lets the runtime run the tasks the request spawned (`yield_now` under
//! `block_on`; no timer ever fires). Loom threads are coroutines of one OS thread, so only one
//! model thread may use the runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::loom_support::{
    assert_live, assert_one_connect, check_quiescent, check_usable_then_drop, get, model, pool,
    thread, Counting, LONG,
};
use crate::Pool;

fn runtime() -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap(),
    )
}

/// One async request: polled up to `polls` times with a no-op waker (the first poll queues it
/// unless a connection is idle), then cancelled; then the runtime runs what the request spawned.
/// Returns whether it got a connection.
fn get_async_then_cancel(
    pool: &Pool<Counting>,
    rt: &tokio::runtime::Runtime,
    polls: usize,
) -> bool {
    let _ctx = rt.enter();
    let mut fut = Box::pin(pool.get_timeout(LONG));
    for _ in 0..polls {
        if let Poll::Ready(res) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            let conn = res.expect("get");
            assert_live(pool, &conn);
            return true;
        }
    }
    drop::<Pin<Box<_>>>(fut); // cancels the request
                              // A permit granted before the cancellation may have started a connect in a spawned task:
                              // the runtime runs it now, as a live one would (its connection goes to the next request).
    rt.block_on(tokio::task::yield_now());
    false
}

/// Pool of 1: an async request queues, the holder checks in (granting it the connection) and the
/// request is cancelled, before or after the grant. Afterwards the connection is idle.
#[test]
fn loom_cancel_during_handover() {
    model(|| {
        let rt = runtime();
        let (pool, _) = pool(1);
        let held = get(&pool);
        let b = {
            let (pool, rt) = (pool.clone(), rt.clone());
            thread::spawn(move || get_async_then_cancel(&pool, &rt, 2))
        };
        drop(held);
        b.join().unwrap();
        let s = check_quiescent(&pool);
        assert_eq!((s.size, s.idle), (1, 1), "{s:?}");
        check_usable_then_drop(pool);
        drop(rt);
    });
}

/// Pool of 1: an async request and a parked thread both wait; the holder checks in while the
/// async request is cancelled. Whichever of them the connection is granted to, the thread gets
/// it: a grant dropped with the cancelled request would leave it parked (a loom deadlock).
#[test]
fn loom_cancelled_waiter_passes_grant_on() {
    model(|| {
        let rt = runtime();
        let (pool, _) = pool(1);
        let held = get(&pool);
        let b = {
            let (pool, rt) = (pool.clone(), rt.clone());
            thread::spawn(move || get_async_then_cancel(&pool, &rt, 1))
        };
        let c = {
            let pool = pool.clone();
            thread::spawn(move || drop(get(&pool)))
        };
        drop(held);
        b.join().unwrap();
        c.join().unwrap();
        check_quiescent(&pool);
        assert_one_connect(&pool);
        check_usable_then_drop(pool);
        drop(rt);
    });
}

/// Pool of 1: `reclaim_held(0)` reclaims the held connection and grants its capacity, as a permit
/// to connect, to the head of the queue: an async request that is being cancelled, or a parked
/// thread. A permit dropped with the cancelled request would leave the thread parked.
#[test]
fn loom_cancelled_waiter_passes_permit_on() {
    model(|| {
        let rt = runtime();
        let (pool, books) = pool(1);
        let held = get(&pool);
        let b = {
            let (pool, rt) = (pool.clone(), rt.clone());
            thread::spawn(move || get_async_then_cancel(&pool, &rt, 1))
        };
        let c = {
            let pool = pool.clone();
            thread::spawn(move || drop(get(&pool)))
        };
        assert_eq!(pool.reclaim_held(std::time::Duration::ZERO), 1);
        drop(held);
        b.join().unwrap();
        c.join().unwrap();
        check_quiescent(&pool);
        assert_eq!(books.closed()[0].1, crate::CloseReason::Leaked);
        check_usable_then_drop(pool);
        drop(rt);
    });
}
