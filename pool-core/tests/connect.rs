//! Connecting: typed errors, retryable vs final errors, backoff within `connect_timeout`, the
//! connect timeout, fail-fast and recovery, failed connects freeing their slot, connects that
//! survive the cancellation of their request.

mod common;

use std::error::Error as _;
use std::time::Duration;

use common::{
    advance, assert_accounting, assert_invariants, builder, settle, Behavior, Fake, FakeError,
};
use pool_core::{ErrorKind, Phase, PoolError};
use tokio::time::Instant;

fn source_of(err: &PoolError<FakeError>) -> &FakeError {
    err.source()
        .expect("the driver error is the source")
        .downcast_ref::<FakeError>()
        .expect("typed as the driver's error")
}

#[tokio::test(start_paused = true)]
async fn final_connect_error_reaches_the_caller_typed_and_at_once() {
    let fake = Fake::new();
    fake.set_connect(Behavior::FATAL);
    let pool = builder(&fake, 2).build().unwrap();
    let start = Instant::now();
    let err = pool.get().await.unwrap_err();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "not retried, not masked as a timeout"
    );
    let PoolError::Backend(e) = &err else {
        panic!("expected Backend, got {err:?}");
    };
    assert_eq!((e.op, e.call, e.retryable), ("connect", 1, false));
    assert_eq!(source_of(&err), e);
    assert_eq!(err.backend(), Some(e));
    assert!(
        !err.to_string().contains("fake backend"),
        "Display repeats the source: {err}"
    );
    assert_eq!(fake.connect_calls(), 1);
    let s = pool.status();
    assert_eq!((s.size, s.opening), (0, 0), "the slot was freed");
    assert_eq!(pool.metrics().connect_failures, 1);
    assert_invariants(&pool);
}

#[test]
fn blocking_connect_error_is_typed_too() {
    let fake = Fake::new();
    fake.script_connect([Behavior::FATAL]);
    let pool = builder(&fake, 1).build().unwrap();
    let err = pool.get_blocking().unwrap_err();
    assert!(
        matches!(&err, PoolError::Backend(e) if e.call == 1),
        "{err:?}"
    );
    assert_eq!(pool.status().size, 0);
    assert!(pool.get_blocking().is_ok(), "the next get connects");
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_are_retried_with_backoff() {
    // bb8 test_conn_fail_once, extended to two failures.
    let fake = Fake::new();
    fake.script_connect([Behavior::FAIL, Behavior::FAIL]);
    let pool = builder(&fake, 2).build().unwrap();
    let start = Instant::now();
    let c = pool.get().await.expect("the third attempt succeeds");
    let took = start.elapsed();
    assert_eq!(fake.connect_calls(), 3);
    // Backoff: 12.5..25 ms, then 25..50 ms.
    assert!(
        took >= Duration::from_millis(12),
        "no backoff between attempts: {took:?}"
    );
    assert!(took <= Duration::from_millis(80), "{took:?}");
    let m = pool.metrics();
    assert_eq!((m.connects, m.connect_failures, m.timeouts), (1, 2, 0));
    drop(c);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn retry_can_be_switched_off() {
    let fake = Fake::new();
    fake.script_connect([Behavior::FAIL]);
    let pool = builder(&fake, 2).retry_connect(false).build().unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(
        matches!(&err, PoolError::Unavailable { failures: 1, last_error: Some(e) } if e.retryable),
        "{err:?}"
    );
    assert_eq!(fake.connect_calls(), 1);
    assert!(pool.get().await.is_ok());
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_within_the_connect_timeout() {
    let fake = Fake::new();
    fake.set_connect(Behavior::FAIL);
    let pool = builder(&fake, 2)
        .connect_timeout(Duration::from_millis(500))
        .wait_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = pool.get().await.unwrap_err();
    let took = start.elapsed();
    assert!(
        took <= Duration::from_millis(500),
        "retried past connect_timeout: {took:?}"
    );
    assert!(
        fake.connect_calls() >= 3,
        "retried: {}",
        fake.connect_calls()
    );
    // Documented: "kept failing until the connect timeout ran out" is Backend with the last error.
    let e = err.backend().expect("the last connect error is kept");
    assert_eq!(e.call, fake.connect_calls(), "it is the last one");
    assert_eq!(pool.metrics().connect_failures, fake.connect_calls());
    assert_eq!(pool.status().size, 0);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn connect_timeout_bounds_a_connect_that_never_finishes() {
    let fake = Fake::new();
    fake.set_connect(Behavior::Never);
    let pool = builder(&fake, 1)
        .connect_timeout(Duration::from_millis(200))
        .wait_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = pool.get().await.unwrap_err();
    let took = start.elapsed();
    match &err {
        PoolError::Timeout {
            phase, last_error, ..
        } => {
            assert_eq!(*phase, Phase::Connect);
            assert!(last_error.is_none());
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(250),
        "{took:?}"
    );
    settle().await;
    let s = pool.status();
    assert_eq!(
        (s.size, s.opening),
        (0, 0),
        "the hung connect gave its slot back: {s:?}"
    );
    assert_eq!(pool.metrics().connect_failures, 1);
    // The database comes back: the pool is usable.
    fake.set_connect(Behavior::Ok);
    assert!(pool.get().await.is_ok());
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn connect_timeout_error_carries_the_last_connect_error() {
    let fake = Fake::new();
    fake.script_connect([Behavior::FAIL, Behavior::Never]);
    let pool = builder(&fake, 1)
        .connect_timeout(Duration::from_secs(1))
        .wait_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(
        start.elapsed() <= Duration::from_millis(1050),
        "{:?}",
        start.elapsed()
    );
    let PoolError::Timeout {
        phase,
        last_error: Some(last),
        ..
    } = &err
    else {
        panic!("expected a timeout with the last error, got {err:?}");
    };
    assert_eq!(*phase, Phase::Connect);
    assert_eq!(last.call, 1);
    assert_eq!(source_of(&err).call, 1);
    let shown = err.to_string();
    assert!(shown.contains("connecting"), "{shown}");
    assert!(
        !shown.contains("fake backend"),
        "Display repeats the source: {shown}"
    );
    assert_eq!(pool.metrics().timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn failed_connect_frees_its_slot_for_the_next_waiter_at_once() {
    // deadpool managed_deadlock::pool_drained.
    let fake = Fake::new();
    fake.script_connect([Behavior::SlowErr(Duration::from_millis(10))]);
    let pool = builder(&fake, 1).retry_connect(false).build().unwrap();
    let p = pool.clone();
    let first = tokio::spawn(async move { p.get().await.map(|_| ()) });
    settle().await;
    let p = pool.clone();
    let second = tokio::spawn(async move {
        let start = Instant::now();
        p.get().await.map(|c| (c.id, start.elapsed()))
    });
    settle().await;
    assert_eq!(pool.status().waiting, 1);
    let err = first.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, PoolError::Unavailable { last_error: Some(e), .. } if e.call == 1),
        "{err:?}"
    );
    let (got, waited) = second.await.unwrap().expect("the waiter connects");
    assert_eq!(got, 1);
    assert!(waited <= Duration::from_millis(10), "{waited:?}");
    assert_eq!(fake.connect_calls(), 2);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_after_consecutive_failures_then_recovery() {
    let fake = Fake::new();
    fake.set_connect(Behavior::FAIL);
    let pool = builder(&fake, 4)
        .retry_connect(false)
        .fail_fast_after(3)
        .build()
        .unwrap();
    for _ in 0..3 {
        // A retryable connect error ends the request as an outage, with the driver's error.
        let err = pool.get().await.unwrap_err();
        assert!(
            matches!(
                err,
                PoolError::Unavailable {
                    failures: 1,
                    last_error: Some(_)
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Unavailable);
    }
    assert_eq!(fake.connect_calls(), 3);
    let start = Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Unavailable {
                failures: 3,
                last_error: None
            }
        ),
        "{err:?}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "fails fast");
    assert_eq!(fake.connect_calls(), 3, "no connect while failing fast");
    assert!(!err.to_string().is_empty());

    // The database comes back; after the fail-fast window a request probes and succeeds.
    fake.set_connect(Behavior::Ok);
    tokio::time::advance(Duration::from_secs(1)).await;
    let c = pool.get().await.expect("recovered");
    assert_eq!(fake.connects(), 1);
    // Fully recovered: no more failing fast.
    let d = pool.get().await.expect("still fine");
    drop((c, d));
    assert_eq!(pool.metrics().connect_failures, 3);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_still_serves_idle_connections() {
    let fake = Fake::new();
    let pool = builder(&fake, 2)
        .retry_connect(false)
        .fail_fast_after(1)
        .build()
        .unwrap();
    let idle = pool.get().await.unwrap();
    let iid = idle.id;
    let busy = pool.get().await.unwrap();
    drop(idle);
    drop(busy);
    pool.close_idle(); // both gone
    let keep = {
        // Re-open one, then make the database fail.
        let c = pool.get().await.unwrap();
        c.id
    };
    assert_ne!(keep, iid);
    let a = pool.get().await.unwrap(); // the idle one
    fake.set_connect(Behavior::FAIL);
    assert!(matches!(
        pool.get().await,
        Err(PoolError::Unavailable {
            last_error: Some(_),
            ..
        })
    ));
    assert!(matches!(
        pool.get().await,
        Err(PoolError::Unavailable {
            last_error: None,
            ..
        })
    ));
    drop(a);
    let b = pool
        .get()
        .await
        .expect("an idle connection needs no connect");
    assert_eq!(b.id, keep);
    drop(b);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn connect_survives_the_cancellation_of_its_request() {
    let fake = Fake::new();
    fake.script_connect([Behavior::Slow(Duration::from_millis(100))]);
    let pool = builder(&fake, 2).build().unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(10), pool.get())
        .await
        .is_err());
    let s = pool.status();
    assert_eq!((s.size, s.opening), (1, 1), "{s:?}");
    advance(Duration::from_millis(100)).await;
    let s = pool.status();
    assert_eq!(
        (s.size, s.idle, s.opening),
        (1, 1, 0),
        "the connection ended up idle: {s:?}"
    );
    let c = pool.get().await.unwrap();
    assert_eq!(c.id, 1);
    assert_eq!(
        fake.connect_calls(),
        1,
        "the cancelled request's connect was not wasted"
    );
    drop(c);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn cancelled_requests_connect_goes_to_the_next_waiter() {
    let fake = Fake::new();
    fake.script_connect([Behavior::Slow(Duration::from_millis(100))]);
    let pool = builder(&fake, 1).build().unwrap();
    let p = pool.clone();
    let starter = tokio::spawn(async move { p.get().await.map(|_| ()) });
    settle().await;
    let p = pool.clone();
    let next = tokio::spawn(async move {
        let start = Instant::now();
        p.get().await.map(|c| (c.id, start.elapsed()))
    });
    settle().await;
    assert_eq!(pool.status().waiting, 1);
    starter.abort();
    let (got, waited) = next.await.unwrap().unwrap();
    assert_eq!(got, 1);
    assert!(waited <= Duration::from_millis(100), "{waited:?}");
    assert_eq!(fake.connect_calls(), 1);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn the_wait_timeout_bounds_a_whole_get_including_its_connect() {
    // One deadline per call: a connect never extends it. The connect goes on in the background
    // and its connection is kept for the next request.
    let fake = Fake::new();
    fake.script_connect([Behavior::Slow(Duration::from_millis(300))]);
    let pool = builder(&fake, 1)
        .wait_timeout(Duration::from_millis(100))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = pool.get().await.expect_err("the connect outlasts the call");
    assert_eq!(start.elapsed(), Duration::from_millis(100));
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
    advance(Duration::from_millis(200)).await;
    assert_eq!(pool.status().idle, 1, "the late connection is kept");
    // A zero wait timeout never queues; the call is then bounded by connect_timeout.
    pool.close_idle();
    fake.script_connect([Behavior::Slow(Duration::from_millis(50))]);
    let start = Instant::now();
    assert!(pool.get_timeout(Duration::ZERO).await.is_ok());
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert_eq!(fake.connect_calls(), 2);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn close_wakes_a_request_whose_connect_is_in_flight() {
    // Pool::close: "every waiting request gets PoolError::Closed". A request waiting for the
    // connect it started is waiting too.
    let fake = Fake::new();
    fake.script_connect([Behavior::Slow(Duration::from_millis(100))]);
    let pool = builder(&fake, 1)
        .connect_timeout(Duration::from_secs(2))
        .wait_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let p = pool.clone();
    let req = tokio::spawn(async move {
        let start = Instant::now();
        (p.get().await.map(|_| ()), start.elapsed())
    });
    settle().await;
    assert_eq!(pool.status().opening, 1);
    pool.close();
    let (res, took) = req.await.unwrap();
    assert!(
        matches!(res, Err(PoolError::Closed)),
        "expected Closed, got {res:?} after {took:?}"
    );
    assert!(took <= Duration::from_millis(100), "{took:?}");
    assert_eq!(
        fake.closes(pool_core::CloseReason::Closed),
        1,
        "the late connection was closed"
    );
    assert_eq!(pool.status().size, 0);
}

/// One outage, one kind: a refused connect (retried until the budget ran out, or not retried), a
/// connect that hangs past its budget, and failing fast all report `ErrorKind::Unavailable`;
/// a refusal retrying cannot heal is `Rejected`, a full pool `Exhausted`.
#[tokio::test(start_paused = true)]
async fn an_outage_has_one_kind_whatever_its_shape() {
    // Refused, retried until the connect budget ran out.
    let fake = Fake::new();
    fake.set_connect(Behavior::FAIL);
    let pool = builder(&fake, 2)
        .connect_timeout(Duration::from_millis(300))
        .fail_fast_after(100)
        .build()
        .unwrap();
    let retried = pool.get().await.unwrap_err();
    assert!(fake.connect_calls() > 1, "it was retried");
    assert_eq!(retried.kind(), ErrorKind::Unavailable, "{retried:?}");
    assert!(retried.is_unavailable());
    assert!(
        retried.source().is_some(),
        "keeps the driver's error: {retried:?}"
    );

    // A connect that never answers: a timeout in the connect phase.
    let fake = Fake::new();
    fake.set_connect(Behavior::Never);
    let pool = builder(&fake, 2)
        .connect_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let hung = pool.get().await.unwrap_err();
    assert!(
        matches!(
            hung,
            PoolError::Timeout {
                phase: Phase::Connect,
                ..
            }
        ),
        "{hung:?}"
    );
    assert_eq!(hung.kind(), ErrorKind::Unavailable);

    // Failing fast after consecutive failures.
    let fake = Fake::new();
    fake.set_connect(Behavior::FAIL);
    let pool = builder(&fake, 2)
        .retry_connect(false)
        .fail_fast_after(1)
        .build()
        .unwrap();
    let _ = pool.get().await.unwrap_err();
    let fast = pool.get().await.unwrap_err();
    assert!(
        matches!(
            fast,
            PoolError::Unavailable {
                last_error: None,
                ..
            }
        ),
        "{fast:?}"
    );
    assert_eq!(fast.kind(), ErrorKind::Unavailable);

    // A refusal retrying will not heal (a wrong password).
    let fake = Fake::new();
    fake.set_connect(Behavior::Err { retryable: false });
    let pool = builder(&fake, 2).build().unwrap();
    let rejected = pool.get().await.unwrap_err();
    assert!(matches!(rejected, PoolError::Backend(_)), "{rejected:?}");
    assert_eq!(rejected.kind(), ErrorKind::Rejected);
    assert!(!rejected.is_unavailable());

    // Every connection busy for the whole wait: not an outage.
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .wait_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    let full = pool.get().await.unwrap_err();
    assert_eq!(full.kind(), ErrorKind::Exhausted, "{full:?}");
    drop(held);
    pool.close();
    assert_eq!(pool.get().await.unwrap_err().kind(), ErrorKind::Closed);
}
