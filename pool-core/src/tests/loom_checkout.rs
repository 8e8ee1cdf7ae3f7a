//! Checkout racing check-in (and `resize`): the hand-over of a returned connection to a parked
//! thread must never lose the wake-up, nor the capacity.

use super::loom_support::{
    assert_live, assert_one_connect, check_quiescent, check_usable_then_drop, get, model, pool,
    thread,
};
use crate::PoolError;

/// Pool of 1: this thread holds the connection and drops it while another `get_blocking`s. The
/// getter always gets it (a lost wake-up would leave it parked: loom reports a deadlock), whether
/// it finds it at its first look, at its look after yielding (parked with this thread's slot
/// meanwhile) or queued; and it counts as one get, queued at most once.
#[test]
fn loom_checkout_races_checkin() {
    model(|| {
        let (pool, _) = pool(1);
        let held = get(&pool);
        let b = {
            let pool = pool.clone();
            thread::spawn(move || drop(get(&pool)))
        };
        drop(held);
        b.join().unwrap();
        let s = check_quiescent(&pool);
        assert_eq!((s.size, s.idle), (1, 1), "{s:?}");
        let m = pool.metrics();
        assert_eq!(m.gets, 2, "{m:?}");
        assert!(m.waits <= 1, "{m:?}");
        assert_one_connect(&pool);
        check_usable_then_drop(pool);
    });
}

/// Pool of 1, two parked getters and one check-in: the connection passes from the holder to one
/// getter, then from it to the other (FIFO hand-over, each with its own wake-up).
#[test]
fn loom_two_waiters_one_connection() {
    model(|| {
        let (pool, _) = pool(1);
        let held = get(&pool);
        let spawn_getter = |pool: &crate::Pool<_>| {
            let pool = pool.clone();
            thread::spawn(move || drop(get(&pool)))
        };
        let b = spawn_getter(&pool);
        let c = spawn_getter(&pool);
        drop(held);
        b.join().unwrap();
        c.join().unwrap();
        check_quiescent(&pool);
        assert_one_connect(&pool);
        check_usable_then_drop(pool);
    });
}

/// Pool of 1: `try_get` races the check-in. It gets the connection or fails at once (it never
/// waits and never opens one); either way nothing is lost.
#[test]
fn loom_try_get_races_checkin() {
    model(|| {
        let (pool, _) = pool(1);
        let held = get(&pool);
        let b = {
            let pool = pool.clone();
            thread::spawn(move || match pool.try_get() {
                Ok(conn) => assert_live(&pool, &conn),
                Err(PoolError::Timeout { .. }) => {}
                Err(e) => panic!("try_get: {e}"),
            })
        };
        drop(held);
        b.join().unwrap();
        let s = check_quiescent(&pool);
        assert_eq!((s.size, s.idle), (1, 1), "{s:?}");
        check_usable_then_drop(pool);
    });
}

/// Pool of 1, full, one getter parked: growing the pool to 2 while the holder checks in. The
/// getter gets either the returned connection or a permit to open one.
#[test]
fn loom_grow_races_checkin() {
    model(|| {
        let (pool, _) = pool(1);
        let held = get(&pool);
        let b = {
            let pool = pool.clone();
            thread::spawn(move || drop(get(&pool)))
        };
        let a = {
            let pool = pool.clone();
            thread::spawn(move || pool.resize(2).unwrap())
        };
        drop(held);
        a.join().unwrap();
        b.join().unwrap();
        let s = check_quiescent(&pool);
        assert_eq!(s.max_size, 2, "{s:?}");
        check_usable_then_drop(pool);
    });
}

/// Pool of 2, both held, one getter parked: shrinking to 1 while both come back. The first
/// connection back is closed (over the new size), the second goes to the getter.
#[test]
fn loom_shrink_races_checkin() {
    model(|| {
        let (pool, books) = pool(2);
        let x = get(&pool);
        let y = get(&pool);
        let b = {
            let pool = pool.clone();
            thread::spawn(move || drop(get(&pool)))
        };
        let a = thread::spawn(move || drop(x));
        pool.resize(1).unwrap();
        drop(y);
        a.join().unwrap();
        b.join().unwrap();
        let s = check_quiescent(&pool);
        assert_eq!((s.max_size, s.size), (1, 1), "{s:?}");
        assert!(books.closes() >= 1, "nothing was closed after the shrink");
        check_usable_then_drop(pool);
    });
}

/// Pool of 1 with the queue bypass (always within its window here): the holder returns the
/// connection and immediately asks again, overtaking two parked getters. The connection goes idle
/// and a getter is woken each time; nobody is left parked (loom reports a lost wake-up as a
/// deadlock) and no second connection is opened.
#[test]
fn loom_queue_bypass_newcomer_and_two_waiters() {
    model(|| {
        let (pool, _) = super::loom_support::pool_with(1, |b| {
            b.queue_bypass(Some(std::time::Duration::from_secs(3600)))
        });
        let held = get(&pool);
        let spawn_getter = |pool: &crate::Pool<_>| {
            let pool = pool.clone();
            thread::spawn(move || drop(get(&pool)))
        };
        let b = spawn_getter(&pool);
        let c = spawn_getter(&pool);
        drop(held);
        drop(get(&pool));
        b.join().unwrap();
        c.join().unwrap();
        check_quiescent(&pool);
        assert_one_connect(&pool);
        check_usable_then_drop(pool);
    });
}

/// Pool of 1, the per-thread fast path: this thread holds the connection lent from its slot and
/// parks it again while another thread's `get_blocking` is about to queue. Either the parker sees
/// the request and takes the slow path (hand-off), or the request finds the parked connection;
/// never both missed (the getter would park for good: loom reports a deadlock).
#[test]
fn loom_fast_checkin_races_queueing() {
    model(|| {
        let (pool, _) = pool(1);
        drop(get(&pool)); // parked with this thread
        let held = get(&pool); // lent from this thread's slot
        let b = {
            let pool = pool.clone();
            thread::spawn(move || {
                let conn = get(&pool);
                assert_live(&pool, &conn);
            })
        };
        drop(held);
        b.join().unwrap();
        let s = check_quiescent(&pool);
        assert_eq!((s.size, s.idle), (1, 1), "{s:?}");
        assert_one_connect(&pool);
        check_usable_then_drop(pool);
    });
}

/// Pool of 1: this thread's fast checkout of its parked connection races another thread's slow
/// checkout, which moves parked connections back into the core. Exactly one gets it at a time;
/// both get it in turn, and no second connection is opened.
#[test]
fn loom_fast_checkout_races_flush() {
    model(|| {
        let (pool, _) = pool(1);
        drop(get(&pool)); // parked with this thread
        let b = {
            let pool = pool.clone();
            thread::spawn(move || drop(get(&pool)))
        };
        let mine = get(&pool);
        assert_live(&pool, &mine);
        drop(mine);
        b.join().unwrap();
        check_quiescent(&pool);
        assert_one_connect(&pool);
        check_usable_then_drop(pool);
    });
}

/// Pool of 2: one connection parked with this thread, the other idle in the core. Another thread,
/// whose own slot is empty, checks out through the core (which takes parked connections back
/// first) while this thread takes its parked one back itself: they get different connections,
/// nobody waits, and both connections end up back (parked or idle), owned by one slot at most.
#[test]
fn loom_parked_connection_races_another_threads_checkout() {
    model(|| {
        let (pool, _) = pool(2);
        {
            let (a, b) = (get(&pool), get(&pool));
            drop(a); // parked with this thread
            drop(b); // this thread's slot is taken: idle in the core
        }
        let b = {
            let pool = pool.clone();
            thread::spawn(move || {
                let conn = get(&pool);
                assert_live(&pool, &conn);
                *conn
            })
        };
        let mine = get(&pool);
        let theirs = b.join().unwrap();
        assert_ne!(*mine, theirs, "one connection handed out twice");
        drop(mine);
        let s = check_quiescent(&pool);
        assert_eq!((s.size, s.idle), (2, 2), "{s:?}");
        assert_eq!(
            pool.manager().0.connects(),
            2,
            "a third connection was opened"
        );
        check_usable_then_drop(pool);
    });
}

/// Pool of 1 whose every checkout needs a `validate`: `try_get` (which never does I/O) puts the
/// connection back unchecked while the holder's check-in and a queued `get_blocking` race it. The
/// getter always gets the connection (checked on its thread); nothing is lost or handed out
/// twice. (`try_get` may still get it when the check-in happened after `try_get` read the clock:
/// idle time is measured from the request's start, so the connection counts as not idle.)
#[test]
fn loom_try_get_puts_back_a_connection_due_for_a_check() {
    model(|| {
        let (pool, _) = super::loom_support::pool_with(1, |b| {
            b.validate_after_idle(Some(std::time::Duration::ZERO))
        });
        let held = get(&pool);
        let b = {
            let pool = pool.clone();
            thread::spawn(move || drop(get(&pool)))
        };
        drop(held);
        if let Ok(conn) = pool.try_get() {
            assert_live(&pool, &conn);
        }
        b.join().unwrap();
        let s = check_quiescent(&pool);
        assert_eq!((s.size, s.idle), (1, 1), "{s:?}");
        assert_one_connect(&pool);
        check_usable_then_drop(pool);
    });
}
