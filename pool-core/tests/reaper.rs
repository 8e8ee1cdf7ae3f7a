//! The reaper cannot die and is not shared by failure: a panic in one pool's maintenance (its
//! manager's `close`, a refill connect) never stops the maintenance of that pool's next pass or
//! of any other pool.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{advance, builder, Fake};
use pool_core::{BlockingManager, CloseReason, Manager, Pool};

/// Connects once, then panics on every connect; its `close` panics on the first call.
#[derive(Debug, Default, Clone)]
struct Panicky(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    connects: AtomicU64,
    closes: AtomicU64,
}

impl Manager for Panicky {
    type Connection = u64;
    type Error = std::io::Error;

    async fn connect(&self) -> Result<u64, std::io::Error> {
        let n = self.0.connects.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(n <= 2, "Panicky refuses connect #{n}");
        Ok(n)
    }

    fn close(&self, _conn: u64, _reason: CloseReason) {
        let n = self.0.closes.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(n != 1, "Panicky refuses its first close");
    }
}

impl BlockingManager for Panicky {}

/// Polls `cond` for up to a minute (a bound for a stuck test, not a timing assertion).
fn wait_until(cond: impl Fn() -> bool) {
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(std::time::Instant::now() < give_up, "condition never held");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn the_shared_reaper_survives_a_panicking_pool() {
    // Built outside a runtime: both pools are maintained by the shared reaper thread.
    let panicky = Panicky::default();
    let bad = Pool::builder(panicky.clone())
        .max_size(2)
        .min_idle(1)
        .max_lifetime(Some(Duration::from_millis(1)))
        .max_lifetime_jitter_percent(0)
        .reap_interval(Duration::from_millis(2))
        .build()
        .unwrap();
    // Its refill connects, its close panics, then its refill connects panic, pass after pass.
    wait_until(|| panicky.0.connects.load(Ordering::SeqCst) >= 4);
    assert!(panicky.0.closes.load(Ordering::SeqCst) >= 1);
    // Another pool is still maintained: its idle connection is closed for idling.
    let fake = Fake::new();
    let good = builder(&fake, 2)
        .idle_timeout(Some(Duration::from_millis(1)))
        .reap_interval(Duration::from_millis(2))
        .build()
        .unwrap();
    drop(good.get_blocking().unwrap());
    wait_until(|| good.metrics().closed_idle == 1);
    // The panicking pool lost no capacity: every refill that panicked gave its slot back.
    let s = bad.status();
    assert!(s.size <= s.max_size, "{s:?}");
    assert_eq!(s.in_use, 0, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_pools_reaper_task_survives_a_panic_in_its_pass() {
    let panicky = Panicky::default();
    let pool = Pool::builder(panicky.clone())
        .max_size(2)
        .max_lifetime(Some(Duration::from_millis(50)))
        .max_lifetime_jitter_percent(0)
        .idle_timeout(None)
        .reap_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    drop(a);
    // The first pass closes `a` (expired): the manager's close panics.
    advance(Duration::from_millis(110)).await;
    assert_eq!(panicky.0.closes.load(Ordering::SeqCst), 1);
    drop(b); // expired: closed at check-in
    assert_eq!(panicky.0.closes.load(Ordering::SeqCst), 2);
    // The reaper task still runs: it keeps passing (nothing left to close, but the pool's
    // maintenance goes on; a new connection is reaped when it expires).
    assert_eq!(pool.status().size, 0);
    let _ = panicky.0.connects.swap(0, Ordering::SeqCst);
    let c = pool.get().await.unwrap();
    drop(c);
    advance(Duration::from_millis(210)).await;
    assert_eq!(panicky.0.closes.load(Ordering::SeqCst), 3);
    assert_eq!(pool.metrics().closed_stale, 3);
}
