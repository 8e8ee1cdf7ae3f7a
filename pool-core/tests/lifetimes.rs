//! Lifetimes: `max_lifetime` at checkout, check-in and by the reaper (with and without jitter),
//! `idle_timeout` via the reaper keeping `min_idle` without churn, `min_idle` pre-warm and
//! replenish.

mod common;

use std::time::Duration;

use common::{assert_accounting, assert_invariants, builder, Fake};
use pool_core::{CloseReason, Pool};
use tokio::time::sleep;

#[tokio::test(start_paused = true)]
async fn expired_idle_connection_is_replaced_at_checkout() {
    let fake = Fake::new();
    let pool = builder(&fake, 2)
        .max_lifetime(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    drop(pool.get().await.unwrap());
    sleep(Duration::from_secs(10)).await; // the reaper does not run (interval 1 h)
    assert_eq!(pool.status().idle, 1);
    let c = pool.get().await.unwrap();
    assert_eq!(c.id, 2);
    assert_eq!(fake.closed_ids(CloseReason::Stale), vec![1]);
    assert_eq!(pool.metrics().closed_stale, 1);
    drop(c);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn expired_connection_is_closed_when_returned() {
    // bb8 test_max_lifetime_reap_on_drop.
    let fake = Fake::new();
    let pool = builder(&fake, 2)
        .max_lifetime(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let c = pool.get().await.unwrap();
    sleep(Duration::from_secs(11)).await;
    drop(c);
    assert_eq!(
        fake.closes(CloseReason::Stale),
        1,
        "closed at check-in, not kept idle"
    );
    assert_eq!(pool.status().size, 0);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn reaper_closes_expired_idle_connections() {
    let fake = Fake::new();
    let pool = builder(&fake, 5)
        .max_lifetime(Some(Duration::from_secs(5)))
        .reap_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let held: Vec<_> = futures::future::join_all((0..5).map(|_| pool.get())).await;
    let mut held: Vec<_> = held.into_iter().map(Result::unwrap).collect();
    let last = held.pop().unwrap();
    drop(held); // 4 idle, 1 out
    sleep(Duration::from_millis(6500)).await;
    assert_eq!(
        fake.closes(CloseReason::Stale),
        4,
        "closed by the reaper without any get"
    );
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.in_use), (1, 0, 1));
    drop(last); // the checked-out one is closed when it comes back, not twice
    assert_eq!(fake.closes(CloseReason::Stale), 5);
    assert_eq!(pool.metrics().closed_stale, 5);
    assert_eq!(pool.status().size, 0);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn lifetime_jitter_stays_within_its_bounds() {
    let fake = Fake::new();
    let pool = builder(&fake, 20)
        .max_lifetime(Some(Duration::from_secs(100)))
        .max_lifetime_jitter_percent(50)
        .reap_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let held: Vec<_> = futures::future::join_all((0..20).map(|_| pool.get())).await;
    drop(held);
    assert_eq!(pool.status().idle, 20);
    sleep(Duration::from_millis(49_500)).await;
    assert_eq!(
        fake.closes(CloseReason::Stale),
        0,
        "a lifetime was cut by more than 50 %"
    );
    sleep(Duration::from_secs(52)).await;
    assert_eq!(
        fake.closes(CloseReason::Stale),
        20,
        "a lifetime exceeded max_lifetime"
    );
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_keeps_min_idle_without_churn() {
    let fake = Fake::new();
    let pool = builder(&fake, 5)
        .min_idle(2)
        .idle_timeout(Some(Duration::from_secs(10)))
        .reap_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    assert!(pool.wait_for_min_idle(Duration::from_secs(1)).await);
    assert_eq!(fake.connects(), 2);
    let held: Vec<_> = futures::future::join_all((0..5).map(|_| pool.get())).await;
    let held: Vec<_> = held.into_iter().map(Result::unwrap).collect();
    drop(held);
    sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.status().idle, 5);
    let connects = fake.connects();
    sleep(Duration::from_secs(11)).await;
    let s = pool.status();
    assert_eq!((s.size, s.idle), (2, 2), "idle down to min_idle: {s:?}");
    assert_eq!(fake.closes(CloseReason::Idle), 3);
    assert_eq!(pool.metrics().closed_idle, 3);
    // Several more idle timeouts and reaper cycles: the minimum is kept, not churned.
    sleep(Duration::from_secs(60)).await;
    assert_eq!(
        fake.connects(),
        connects,
        "min_idle connections were churned"
    );
    assert_eq!(fake.closes(CloseReason::Idle), 3);
    assert_eq!(pool.status().idle, 2);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_all_idle_without_min_idle() {
    // r2d2 idle_timeout_partial_use: a connection used regularly stays, the others idle out.
    let fake = Fake::new();
    let pool = builder(&fake, 5)
        .idle_timeout(Some(Duration::from_secs(2)))
        .reap_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let held: Vec<_> = futures::future::join_all((0..5).map(|_| pool.get())).await;
    drop(held);
    for _ in 0..20 {
        sleep(Duration::from_millis(250)).await;
        drop(pool.get().await.unwrap());
    }
    let s = pool.status();
    assert_eq!((s.size, s.idle), (1, 1), "{s:?}");
    assert_eq!(fake.closes(CloseReason::Idle), 4);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn min_idle_is_prewarmed_and_replenished() {
    // r2d2/bb8 test_min_idle: min 2 / max 5.
    let fake = Fake::new();
    let pool = builder(&fake, 5)
        .min_idle(2)
        .reap_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    assert!(pool.wait_for_min_idle(Duration::from_secs(1)).await);
    let s = pool.status();
    assert_eq!((s.size, s.idle), (2, 2));
    let held: Vec<_> = futures::future::join_all((0..3).map(|_| pool.get())).await;
    let held: Vec<_> = held.into_iter().map(Result::unwrap).collect();
    sleep(Duration::from_millis(1500)).await; // a reaper pass at least
    let s = pool.status();
    assert_eq!(
        (s.size, s.idle, s.in_use),
        (5, 2, 3),
        "replenished up to max_size: {s:?}"
    );
    drop(held);
    let s = pool.status();
    assert_eq!((s.size, s.idle), (5, 5));
    assert_eq!(fake.connects(), 5);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn min_idle_refill_after_expiry_may_dip_then_recovers() {
    // mysql_async check_absolute_connection_ttl: an absolute TTL closes even below min_idle;
    // the minimum is then refilled.
    let fake = Fake::new();
    let pool = builder(&fake, 4)
        .min_idle(2)
        .max_lifetime(Some(Duration::from_secs(5)))
        .reap_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    assert!(pool.wait_for_min_idle(Duration::from_secs(1)).await);
    sleep(Duration::from_millis(5500)).await;
    assert_eq!(fake.closes(CloseReason::Stale), 2);
    assert!(pool.wait_for_min_idle(Duration::from_secs(2)).await);
    assert_eq!(fake.connects(), 4);
    let s = pool.status();
    assert_eq!((s.size, s.idle), (2, 2), "{s:?}");
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[test]
fn min_idle_is_prewarmed_outside_a_runtime() {
    // Built outside a runtime: the shared reaper thread opens the connections.
    let fake = Fake::new();
    let pool: Pool<_> = builder(&fake, 3).min_idle(2).build().unwrap();
    let start = std::time::Instant::now();
    while pool.status().idle < 2 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = pool.status();
    assert_eq!((s.size, s.idle), (2, 2), "{s:?}");
    assert_eq!(fake.connects(), 2);
    assert_invariants(&pool);
}
