//! `close` while requests wait, and `reclaim_held` racing the holder's check-in.

use std::time::Duration;

use super::loom_support::{
    assert_live, check_quiescent, check_usable_then_drop, get, model, pool, thread, LONG,
};
use crate::{CloseReason, PoolError};

/// After the pool closed and every connection came back: nothing is left open.
fn check_closed_and_drained(pool: &crate::Pool<super::loom_support::Counting>) {
    let s = check_quiescent(pool);
    assert_eq!(s.size, 0, "connections left after close: {s:?}");
    let books = &pool.manager().0;
    assert_eq!(
        books.connects(),
        books.closes(),
        "a connection was never closed"
    );
    assert!(matches!(pool.try_get(), Err(PoolError::Closed)));
}

/// Pool of 1, full: a thread parks in `get_blocking` while the holder closes the pool and then
/// drops its connection. The waiter gets `Closed` (never the connection), and the drop closes
/// the connection.
#[test]
fn loom_close_while_waiting() {
    model(|| {
        let (pool, books) = pool(1);
        let held = get(&pool);
        let id = *held;
        let b = {
            let pool = pool.clone();
            thread::spawn(move || match pool.get_blocking_timeout(LONG) {
                Err(PoolError::Closed) => {}
                Ok(conn) => panic!("got connection {} from a closed pool", *conn),
                Err(e) => panic!("expected Closed, got {e}"),
            })
        };
        assert_eq!(pool.close(), 0, "nothing was idle");
        drop(held);
        b.join().unwrap();
        assert_eq!(books.closed(), vec![(id, CloseReason::Closed)]);
        check_closed_and_drained(&pool);
    });
}

/// Pool of 1: the holder checks in and then closes the pool while a thread gets. The getter
/// gets the connection (then its drop closes it) or `Closed`.
#[test]
fn loom_close_races_handover() {
    model(|| {
        let (pool, _) = pool(1);
        let held = get(&pool);
        let b = {
            let pool = pool.clone();
            thread::spawn(move || match pool.get_blocking_timeout(LONG) {
                Ok(conn) => assert_live(&pool, &conn),
                Err(PoolError::Closed) => {}
                Err(e) => panic!("expected a connection or Closed, got {e}"),
            })
        };
        drop(held);
        pool.close();
        b.join().unwrap();
        check_closed_and_drained(&pool);
    });
}

/// Pool of 1: `reclaim_held(0)` races the holder's check-in while a third thread waits. The
/// capacity is released exactly once: by the reclaim (the connection is then closed as leaked
/// when it comes back) or by the check-in (it is then idle or handed over), never both.
#[test]
fn loom_reclaim_held_races_checkin() {
    model(|| {
        let (pool, books) = pool(1);
        let held = get(&pool);
        let id = *held;
        let a = thread::spawn(move || drop(held));
        let b = {
            let pool = pool.clone();
            thread::spawn(move || drop(get(&pool)))
        };
        let reclaimed = pool.reclaim_held(Duration::ZERO);
        a.join().unwrap();
        b.join().unwrap();
        check_quiescent(&pool);
        let leaked: Vec<_> = books
            .closed()
            .into_iter()
            .filter(|(_, r)| *r == CloseReason::Leaked)
            .collect();
        // It reclaimed the holder's connection or, after the check-in, the getter's (the same
        // one or a new one); each reclaimed connection is closed once, as leaked, when it
        // comes back.
        assert!(reclaimed <= 1);
        assert_eq!(leaked.len(), reclaimed, "{leaked:?}");
        if reclaimed == 1 && books.connects() == 2 {
            assert_eq!(
                leaked[0].0, id,
                "the reclaimed slot was reopened, yet {id} not reclaimed"
            );
        }
        check_usable_then_drop(pool);
    });
}
