//! One deadline per call: the caller's deadline bounds the whole `get` (queueing, checks,
//! connecting); `connect_timeout` and `validate_timeout` bound single operations inside it; the
//! error names the phase that was running and keeps the last driver error. `Duration::MAX` means
//! "forever" everywhere and never panics. `try_get` never blocks. A hot async loop spends tokio's
//! cooperative budget.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{advance, assert_invariants, builder, settle, Behavior, Fake};
use pool_core::{Phase, PoolError};
use tokio::time::Instant;

/// A pool of `n` whose connections are all idle and due for validation.
async fn idle_pool_due_for_validation(fake: &Fake, n: usize) -> pool_core::Pool<Fake> {
    let pool = builder(fake, n)
        .wait_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(1))
        .validate_timeout(Duration::from_secs(1))
        .validate_after_idle(Some(Duration::from_millis(100)))
        .build()
        .unwrap();
    let held: Vec<_> = futures::future::join_all((0..n).map(|_| pool.get()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    drop(held);
    advance(Duration::from_millis(200)).await;
    assert_eq!(pool.status().idle, n);
    pool
}

#[tokio::test(start_paused = true)]
async fn a_get_over_idle_connections_whose_checks_stall_returns_within_its_deadline() {
    let fake = Fake::new();
    let pool = idle_pool_due_for_validation(&fake, 4).await;
    fake.set_validate(Behavior::Never);
    let start = Instant::now();
    let err = pool.get().await.expect_err("every check stalls");
    // One validate_timeout (= the deadline) in all, not one per idle connection.
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(
        matches!(
            err,
            PoolError::Timeout {
                phase: Phase::Validate,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(fake.validate_calls(), 1);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn slow_failing_checks_share_the_callers_deadline_and_keep_the_driver_error() {
    let fake = Fake::new();
    let pool = idle_pool_due_for_validation(&fake, 4).await;
    // Each check fails after 600 ms: the second one is cut at the deadline (1 s).
    fake.set_validate(Behavior::SlowErr(Duration::from_millis(600)));
    let start = Instant::now();
    let err = pool
        .get()
        .await
        .expect_err("the checks outlast the deadline");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    match &err {
        PoolError::Timeout {
            phase: Phase::Validate,
            last_error: Some(e),
            ..
        } => assert_eq!(e.op, "validate"),
        other => panic!("expected a validate timeout with its error, got {other:?}"),
    }
    assert_eq!(fake.validate_calls(), 2);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn a_stalling_reset_is_reported_as_the_reset_phase() {
    let fake = Fake::new();
    let pool = builder(&fake, 2)
        .wait_timeout(Duration::from_millis(500))
        .validate_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for _ in 0..2 {
        let mut c = pool.get().await.unwrap();
        c.dirty = true;
        let mut d = pool.get().await.unwrap();
        d.dirty = true;
        drop((c, d));
    }
    fake.set_reset(Behavior::Never);
    let start = Instant::now();
    let err = pool.get().await.expect_err("the reset stalls");
    // validate_timeout (10 s) bounds one reset; the call's deadline (500 ms) comes first.
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    assert!(
        matches!(
            err,
            PoolError::Timeout {
                phase: Phase::Reset,
                ..
            }
        ),
        "{err:?}"
    );
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn a_queued_get_that_then_connects_stays_within_its_deadline() {
    // The request queues for 800 ms, then gets capacity and connects: the connect has only the
    // 200 ms left, not a fresh connect_timeout.
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .wait_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    fake.set_connect(Behavior::Slow(Duration::from_secs(3)));
    let p = pool.clone();
    let req = tokio::spawn(async move {
        let start = Instant::now();
        (p.get().await.map(|_| ()), start.elapsed())
    });
    settle().await;
    advance(Duration::from_millis(800)).await;
    pooled_close(held);
    let (res, took) = req.await.unwrap();
    assert_eq!(took, Duration::from_secs(1));
    assert!(
        matches!(
            res,
            Err(PoolError::Timeout {
                phase: Phase::Connect,
                ..
            })
        ),
        "{res:?}"
    );
}

fn pooled_close(p: pool_core::Pooled<Fake>) {
    pool_core::Pooled::close(p);
}

#[test]
fn a_blocking_get_over_stalling_checks_times_out_in_the_check_phase() {
    let fake = Fake::new();
    let pool = builder(&fake, 2)
        .wait_timeout(Duration::from_millis(50))
        .validate_timeout(Duration::from_secs(3600))
        .validate_after_idle(Some(Duration::ZERO))
        .build()
        .unwrap();
    let (a, b) = (pool.get_blocking().unwrap(), pool.get_blocking().unwrap());
    drop((a, b));
    fake.set_validate(Behavior::Never);
    let err = pool.get_blocking().expect_err("every check stalls");
    assert!(
        matches!(
            err,
            PoolError::Timeout {
                phase: Phase::Validate,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(fake.validate_calls(), 1);
    assert_eq!(pool.status().idle, 1, "the unchecked one stays idle");
}

#[test]
fn a_blocking_connect_is_bounded_by_connect_timeout() {
    let fake = Fake::new();
    fake.set_connect(Behavior::Never);
    let pool = builder(&fake, 1)
        .wait_timeout(Duration::from_secs(3600))
        .connect_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let err = pool
        .get_blocking()
        .expect_err("the connect never completes");
    assert!(
        matches!(
            err,
            PoolError::Timeout {
                phase: Phase::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    let s = pool.status();
    assert_eq!((s.size, s.opening), (0, 0), "the capacity came back: {s:?}");
}

/// Every duration setting and per-call timeout at `Duration::MAX`.
fn forever(fake: &Fake, max_size: usize) -> pool_core::Builder<Fake> {
    builder(fake, max_size)
        .wait_timeout(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .validate_timeout(Duration::MAX)
        .validate_after_idle(Some(Duration::MAX))
        .max_lifetime(Some(Duration::MAX))
        .max_lifetime_jitter_percent(50)
        .idle_timeout(Some(Duration::MAX))
        .reap_interval(Duration::MAX)
        .leak_threshold(Some(Duration::MAX))
        .queue_bypass(Some(Duration::MAX))
}

#[tokio::test(start_paused = true)]
async fn duration_max_means_forever_for_every_setting_and_call() {
    let fake = Fake::new();
    let pool = forever(&fake, 1).min_idle(1).build().unwrap();
    assert!(pool.wait_for_min_idle(Duration::MAX).await);
    let held = pool.get_timeout(Duration::MAX).await.unwrap();
    // Queued with a wait of MAX, served when the holder returns.
    let p = pool.clone();
    let queued = tokio::spawn(async move { p.get_timeout(Duration::MAX).await.map(|c| c.id) });
    settle().await;
    assert_eq!(pool.status().waiting, 1);
    let id = held.id;
    drop(held);
    assert_eq!(queued.await.unwrap().unwrap(), id);
    // A blocking request queued with a wait of MAX.
    let held = pool.get().await.unwrap();
    let p = pool.clone();
    let thread = std::thread::spawn(move || p.get_blocking_timeout(Duration::MAX).map(|c| c.id));
    while pool.status().waiting == 0 {
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
    drop(held);
    assert_eq!(thread.join().unwrap().unwrap(), id);
    // Years later nothing has expired, idled out or leaked.
    tokio::time::advance(Duration::from_secs(10 * 365 * 24 * 3600)).await;
    settle().await;
    let c = pool.get().await.unwrap();
    assert_eq!(c.id, id);
    assert_eq!(pool.reclaim_held(Duration::MAX), 0);
    drop(c);
    assert_eq!(pool.close_graceful(Duration::MAX).await, 1);
    assert_eq!(fake.connects(), 1);
}

#[test]
fn duration_max_outside_a_runtime_keeps_the_shared_reaper_alive() {
    let fake = Fake::new();
    let forever = forever(&fake, 1).build().unwrap();
    drop(forever.get_blocking_timeout(Duration::MAX).unwrap());
    // Another pool on the shared reaper thread is still maintained.
    let other = Fake::new();
    let pool = builder(&other, 2)
        .idle_timeout(Some(Duration::from_millis(1)))
        .reap_interval(Duration::from_millis(5))
        .build()
        .unwrap();
    drop(pool.get_blocking().unwrap());
    wait_until(|| pool.metrics().closed_idle == 1);
    assert_eq!(forever.status().idle, 1);
}

/// Polls `cond` for up to a minute (a bound for a stuck test, not a timing assertion).
fn wait_until(cond: impl Fn() -> bool) {
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(std::time::Instant::now() < give_up, "condition never held");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn try_get_never_runs_a_check_and_answers_at_once() {
    // The fake's validate sleeps on tokio's timer: run inline on this single-threaded runtime
    // it could never complete. try_get must not run it.
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .validate_after_idle(Some(Duration::ZERO))
        .build()
        .unwrap();
    drop(pool.get().await.unwrap());
    fake.set_validate(Behavior::Slow(Duration::from_millis(1)));
    let err = pool
        .try_get()
        .expect_err("the idle connection needs a check first");
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
    assert_eq!(fake.validate_calls(), 0);
    assert_eq!(pool.status().idle, 1, "left idle, unchecked");
    // The next get checks it.
    let c = pool.get().await.unwrap();
    assert_eq!(fake.validate_calls(), 1);
    drop(c);
    // A dirty connection is left for the next get too (its reset is I/O).
    let pool = builder(&fake, 1).build().unwrap();
    pool.get().await.unwrap().dirty = true;
    assert!(pool.try_get().is_err());
    assert_eq!(fake.reset_calls(), 0);
    assert!(!pool.get().await.unwrap().dirty);
    assert_eq!(fake.reset_calls(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_hot_get_loop_yields_to_other_tasks() {
    // Without spending tokio's budget, a task looping on an always-ready get would never yield
    // on this single-threaded runtime, and the other task would not run until it ends.
    let fake = Fake::new();
    let pool = builder(&fake, 1).build().unwrap();
    drop(pool.get().await.unwrap());
    let other_ran = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let (p, seen2, flag) = (pool.clone(), seen.clone(), other_ran.clone());
    let hot = tokio::spawn(async move {
        let setter = flag.clone();
        tokio::spawn(async move { setter.store(true, Ordering::SeqCst) });
        for i in 1..=10_000u64 {
            drop(p.get().await.unwrap());
            if flag.load(Ordering::SeqCst) {
                seen2.store(i, Ordering::SeqCst);
                return;
            }
        }
    });
    hot.await.unwrap();
    assert!(other_ran.load(Ordering::SeqCst));
    assert!(
        seen.load(Ordering::SeqCst) > 0,
        "the other task ran while the loop was going"
    );
}
