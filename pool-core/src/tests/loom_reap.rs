//! A reaper pass (`Shared::maintain`, called directly: no reaper runs under loom) racing
//! checkouts and check-ins: the books stay balanced and no connection is handed out after the
//! reaper closed it.

use std::time::Duration;

use super::loom_support::{check_quiescent, check_usable_then_drop, get, model, pool_with, thread};

/// Pool of 1 with a 1 ns idle timeout and one idle connection: the reaper closes it while a
/// thread checks out (the checkout's own check also finds it idle too long and opens another)
/// and checks in.
#[test]
fn loom_reap_idle_races_checkout() {
    model(|| {
        let (pool, books) = pool_with(1, |b| b.idle_timeout(Some(Duration::from_nanos(1))));
        drop(get(&pool));
        let c = {
            let pool = pool.clone();
            thread::spawn(move || drop(get(&pool)))
        };
        pool.shared.maintain::<crate::pool::Thread>();
        c.join().unwrap();
        check_quiescent(&pool);
        assert!(books.closes() >= 1, "the idle connection was not closed");
        check_usable_then_drop(pool);
    });
}

/// Pool of 1 with a 1 ns lifetime and `min_idle` 1: two reaper passes (the first refills, on
/// this thread; the second closes the expired refill and refills again) while another thread
/// checks out and in twice. A refilled connection may be handed to the waiting thread, whose
/// check then finds it expired and opens another; an expired one checked in is closed.
#[test]
fn loom_reap_refill_races_checkout() {
    model(|| {
        let (pool, _) = pool_with(1, |b| {
            b.min_idle(1).max_lifetime(Some(Duration::from_nanos(1)))
        });
        let c = {
            let pool = pool.clone();
            thread::spawn(move || {
                drop(get(&pool));
                drop(get(&pool));
            })
        };
        pool.shared.maintain::<crate::pool::Thread>();
        pool.shared.maintain::<crate::pool::Thread>();
        c.join().unwrap();
        check_quiescent(&pool);
        check_usable_then_drop(pool);
    });
}
