//! Health: `is_broken` at check-in and checkout, broken returns that do not starve waiters,
//! `validate` only after `validate_after_idle` and transparent replacement on failure, dirty
//! connections reset at the next checkout and closed when the reset fails.

mod common;

use std::time::Duration;

use common::{assert_accounting, assert_invariants, builder, pool, settle, Behavior, Fake};
use pool_core::{CloseReason, PoolError, Pooled};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn broken_connection_is_closed_on_return() {
    let (pool, fake) = pool(2);
    let mut c = pool.get().await.unwrap();
    c.broken = true;
    drop(c);
    assert_eq!(fake.closes(CloseReason::Broken), 1);
    assert_eq!(pool.metrics().closed_broken, 1);
    let s = pool.status();
    assert_eq!((s.size, s.idle), (0, 0));
    let mut c = pool.get().await.unwrap();
    assert_eq!(c.id, 2);
    Pooled::mark_broken(&mut c);
    drop(c);
    assert_eq!(fake.closes(CloseReason::Broken), 2);
    assert_eq!(pool.status().size, 0);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn broken_while_idle_is_caught_at_checkout() {
    let (pool, fake) = pool(2);
    let c = pool.get().await.unwrap();
    drop(c);
    fake.broken_after_calls(1); // the next is_broken call (the checkout's) says broken
    let c = pool.get().await.unwrap();
    assert_eq!(c.id, 2, "a fresh connection replaced the broken idle one");
    assert_eq!(fake.closed_ids(CloseReason::Broken), vec![1]);
    fake.ctl
        .broken_from_call
        .store(0, std::sync::atomic::Ordering::SeqCst);
    drop(c);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn broken_returns_do_not_starve_waiters() {
    // bb8 #167 (test_broken_connections_dont_starve_pool): 10 tasks, max 5, the first 5 returns
    // are broken; no task may time out.
    let fake = Fake::new();
    let pool = builder(&fake, 5)
        .wait_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..10u64 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = p.get().await?;
            tokio::time::sleep(Duration::from_millis(10)).await;
            if i < 5 {
                c.broken = true;
            }
            Ok::<_, PoolError<common::FakeError>>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("no waiter starved");
    }
    assert_eq!(fake.closes(CloseReason::Broken), 5);
    assert_eq!(pool.metrics().timeouts, 0);
    assert_eq!(pool.status().size, 5);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn validate_runs_only_after_validate_after_idle() {
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .validate_after_idle(Some(Duration::from_secs(1)))
        .build()
        .unwrap();
    drop(pool.get().await.unwrap()); // fresh: no validate
    assert_eq!(fake.validate_calls(), 0);
    for _ in 0..5 {
        tokio::time::advance(Duration::from_millis(500)).await;
        drop(pool.get().await.unwrap()); // idle 500 ms < 1 s
    }
    assert_eq!(
        fake.validate_calls(),
        0,
        "validated within the bypass window"
    );
    tokio::time::advance(Duration::from_millis(1000)).await;
    drop(pool.get().await.unwrap());
    assert_eq!(fake.validate_calls(), 1);
    tokio::time::advance(Duration::from_millis(1500)).await;
    drop(pool.get().await.unwrap());
    assert_eq!(fake.validate_calls(), 2);
    assert_eq!(fake.connects(), 1);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn validate_zero_checks_every_reuse_and_none_never() {
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .validate_after_idle(Some(Duration::ZERO))
        .build()
        .unwrap();
    drop(pool.get().await.unwrap());
    for _ in 0..3 {
        drop(pool.get().await.unwrap());
    }
    assert_eq!(fake.validate_calls(), 3);

    let (pool, fake) = common::pool(1); // validate_after_idle: None
    drop(pool.get().await.unwrap());
    tokio::time::advance(Duration::from_secs(3600)).await;
    drop(pool.get().await.unwrap());
    assert_eq!(fake.validate_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn failed_validation_is_replaced_transparently() {
    // bb8 test_retry / test_now_invalid.
    let fake = Fake::new();
    let pool = builder(&fake, 2)
        .validate_after_idle(Some(Duration::ZERO))
        .build()
        .unwrap();
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    drop(a);
    drop(b);
    fake.script_validate([Behavior::FAIL, Behavior::FAIL]);
    let c = pool.get().await.expect("transparent replacement");
    assert_eq!(
        c.id, 3,
        "both idle connections failed validation; a new one was opened"
    );
    assert_eq!(fake.closes(CloseReason::Invalid), 2);
    assert_eq!(pool.metrics().closed_invalid, 2);
    assert_eq!(fake.validate_calls(), 2);
    drop(c);
    let s = pool.status();
    assert_eq!((s.size, s.idle), (1, 1));
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn hung_validation_is_bounded_by_validate_timeout() {
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .validate_after_idle(Some(Duration::ZERO))
        .validate_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    drop(pool.get().await.unwrap());
    fake.script_validate([Behavior::Never]);
    let start = Instant::now();
    let c = pool
        .get()
        .await
        .expect("replaced after the validate timeout");
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(c.id, 2);
    assert_eq!(fake.closes(CloseReason::Invalid), 1);
    drop(c);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn dirty_connection_is_reset_at_next_checkout() {
    let (pool, fake) = pool(1);
    let mut c = pool.get().await.unwrap();
    c.dirty = true; // e.g. a transaction left open
    drop(c);
    assert_eq!(
        fake.reset_calls(),
        0,
        "reset is not I/O in Drop: it waits for the checkout"
    );
    let c = pool.get().await.unwrap();
    assert_eq!(fake.reset_calls(), 1);
    assert_eq!(c.id, 1);
    assert!(!c.dirty, "cleaned before hand-out");
    drop(c);
    drop(pool.get().await.unwrap());
    assert_eq!(fake.reset_calls(), 1, "a clean connection is not reset");
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn reset_runs_instead_of_validate() {
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .validate_after_idle(Some(Duration::ZERO))
        .build()
        .unwrap();
    let mut c = pool.get().await.unwrap();
    c.dirty = true;
    drop(c);
    drop(pool.get().await.unwrap());
    assert_eq!((fake.reset_calls(), fake.validate_calls()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn failed_reset_closes_the_connection() {
    let (pool, fake) = pool(1);
    let mut c = pool.get().await.unwrap();
    c.dirty = true;
    drop(c);
    fake.script_reset([Behavior::FAIL]);
    let c = pool.get().await.expect("a fresh connection replaces it");
    assert_eq!(c.id, 2);
    assert_eq!(fake.closed_ids(CloseReason::ResetFailed), vec![1]);
    assert_eq!(pool.metrics().closed_reset_failed, 1);
    drop(c);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn hung_reset_is_bounded_and_closed() {
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .validate_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let mut c = pool.get().await.unwrap();
    c.dirty = true;
    drop(c);
    fake.script_reset([Behavior::Never]);
    let start = Instant::now();
    let c = pool.get().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert_eq!(c.id, 2);
    assert_eq!(fake.closes(CloseReason::ResetFailed), 1);
    drop(c);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn cancelled_during_validation_closes_the_connection_and_keeps_the_slot() {
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .validate_after_idle(Some(Duration::ZERO))
        .build()
        .unwrap();
    drop(pool.get().await.unwrap());
    fake.script_validate([Behavior::Slow(Duration::from_millis(100))]);
    assert!(tokio::time::timeout(Duration::from_millis(10), pool.get())
        .await
        .is_err());
    settle().await;
    // Its state is unknown: closed, and the slot is free again.
    assert_eq!(fake.closes_total(), 1);
    let s = pool.status();
    assert_eq!((s.size, s.in_use), (0, 0), "{s:?}");
    assert!(pool.get().await.is_ok());
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn slow_validation_does_not_block_other_requests() {
    // r2d2 test_issue_2_unlocked_during_is_valid: no lock is held during manager calls.
    let fake = Fake::new();
    let pool = builder(&fake, 2)
        .validate_after_idle(Some(Duration::ZERO))
        .build()
        .unwrap();
    drop(pool.get().await.unwrap());
    fake.script_validate([Behavior::Slow(Duration::from_millis(500))]);
    let p = pool.clone();
    let slow = tokio::spawn(async move { p.get().await.map(|c| c.id) });
    settle().await;
    let start = Instant::now();
    let other = pool.get().await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(other.id, 2);
    assert_eq!(slow.await.unwrap().unwrap(), 1);
    drop(other);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn failed_check_that_moves_on_to_another_idle_connection_frees_the_slot() {
    // A checkout check fails and the request takes the next idle connection: the failed one's
    // capacity must be released, or the pool shrinks for good.
    let fake = Fake::new();
    let pool = builder(&fake, 2)
        .validate_after_idle(Some(Duration::ZERO))
        .wait_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    drop(a);
    drop(b);
    fake.script_validate([Behavior::FAIL]); // the first idle one checked fails
    let c = pool.get().await.unwrap();
    assert_eq!(fake.closes(CloseReason::Invalid), 1);
    let s = pool.status();
    assert_eq!(
        (s.size, s.in_use, s.idle),
        (1, 1, 0),
        "one connection is left: {s:?}"
    );
    // max_size 2 and one connection exists: a second one can be opened.
    let d = pool.get().await.expect("capacity for a second connection");
    drop((c, d));
    assert_invariants(&pool);
    assert_accounting(&pool);
}
