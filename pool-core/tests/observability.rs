//! Observability and configuration: exact statistics, leak warnings naming the acquisition
//! site, error `Display` that does not repeat the source, `BuildError` cases.

mod common;

use std::error::Error as _;
use std::time::Duration;

use common::{
    assert_invariants, builder, capture_warnings, pool, settle, Behavior, Fake, FakeError,
};
use pool_core::{BuildError, CloseReason, Config, Phase, Pool, PoolError, Pooled};
use tokio::time::sleep;

#[tokio::test(start_paused = true)]
async fn statistics_are_exact() {
    // bb8 test_state_get_contention / test_statistics_connections_created, and every counter.
    let fake = Fake::new();
    let pool = builder(&fake, 2)
        .validate_after_idle(Some(Duration::from_secs(1)))
        .wait_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let a = pool.get().await.unwrap(); // get 1: connect
    let b = pool.get().await.unwrap(); // get 2: connect
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.get().await.map(|c| c.id) }); // get 3: waits
    settle().await;
    sleep(Duration::from_millis(30)).await;
    drop(a);
    assert_eq!(waiter.await.unwrap().unwrap(), 1); // and dropped it again
    let a = pool.get().await.unwrap(); // get 4: idle
    assert!(pool.get().await.unwrap_err().is_timeout()); // get 5: waits, times out
    let mut b = b;
    b.broken = true;
    drop(b); // closed broken
    fake.script_connect([Behavior::FATAL]);
    assert!(pool.get().await.is_err()); // get 6: connect failure
    let c = pool.get().await.unwrap(); // get 7: connect
    Pooled::close(c); // closed manual
    drop(a);
    sleep(Duration::from_secs(2)).await;
    fake.script_validate([Behavior::FAIL]);
    let d = pool.get().await.unwrap(); // get 8: the idle one fails validation, new connect
    let mut d = d;
    d.dirty = true;
    drop(d);
    fake.script_reset([Behavior::FAIL]);
    let e = pool.get().await.unwrap(); // get 9: reset fails, new connect
    drop(e);
    let m = pool.metrics();
    assert_eq!(m.gets, 9, "{m:?}");
    assert_eq!(m.waits, 2, "{m:?}");
    assert!(m.wait_time >= Duration::from_millis(30), "{m:?}");
    assert_eq!(m.timeouts, 1, "{m:?}");
    assert_eq!(m.connects, fake.connects(), "{m:?}");
    assert_eq!(m.connects, 5, "{m:?}");
    assert_eq!(m.connect_failures, 1, "{m:?}");
    assert_eq!(m.closed_broken, 1, "{m:?}");
    assert_eq!(m.closed_manual, 1, "{m:?}");
    assert_eq!(m.closed_invalid, 1, "{m:?}");
    assert_eq!(m.closed_reset_failed, 1, "{m:?}");
    assert_eq!(m.closed_total(), fake.closes_total());
    assert_eq!(fake.closes(CloseReason::Broken), 1);
    assert_eq!(fake.closes(CloseReason::Manual), 1);
    assert_eq!(fake.closes(CloseReason::Invalid), 1);
    assert_eq!(fake.closes(CloseReason::ResetFailed), 1);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn wait_time_counts_waits_that_time_out() {
    // Metrics::wait_time is the total time spent queueing, including waits that timed out.
    let (pool, _fake) = pool(1);
    let held = pool.get().await.unwrap();
    assert!(pool
        .get_timeout(Duration::from_millis(100))
        .await
        .unwrap_err()
        .is_timeout());
    let m = pool.metrics();
    assert_eq!((m.waits, m.timeouts), (1, 1));
    assert_eq!(m.wait_time, Duration::from_millis(100), "{m:?}");
    // The distribution behind it: one wait, in the 65.5–131 ms bucket.
    assert_eq!(m.wait_histogram.count(), m.waits);
    assert_eq!(
        m.wait_histogram.quantile(0.99),
        Some(Duration::from_micros(131_072))
    );
    // The blocking front end counts it too.
    let p = pool.clone();
    std::thread::spawn(move || {
        assert!(p.get_blocking_timeout(Duration::from_millis(20)).is_err());
    })
    .join()
    .unwrap();
    assert!(pool.metrics().wait_time >= Duration::from_millis(120));
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn leak_warning_names_the_acquisition_site_once() {
    let (logs, _guard) = capture_warnings();
    let fake = Fake::new();
    let pool = builder(&fake, 2)
        .leak_threshold(Some(Duration::from_secs(5)))
        .reap_interval(Duration::from_secs(1))
        .name("leaky")
        .build()
        .unwrap();
    let line = line!() + 1;
    let leaked = pool.get().await.unwrap();
    let short = pool.get().await.unwrap();
    sleep(Duration::from_secs(2)).await;
    drop(short); // held 2 s: no warning
    sleep(Duration::from_secs(10)).await; // many reaper passes past the threshold
    let text = logs.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("leak threshold"))
        .collect();
    assert_eq!(warnings.len(), 1, "exactly one warning, once: {text}");
    let w = warnings[0];
    assert!(w.contains("WARN"), "{w}");
    let site = format!("{}:{line}", file!());
    assert!(w.contains(&site), "the warning names {site}: {w}");
    assert!(w.contains("leaky"), "the pool's name: {w}");
    drop(leaked);
}

#[tokio::test(start_paused = true)]
async fn error_display_does_not_repeat_the_source() {
    let e = FakeError {
        op: "connect",
        call: 1,
        retryable: true,
    };
    let errs: Vec<PoolError<FakeError>> = vec![
        PoolError::Backend(e.clone()),
        PoolError::Timeout {
            phase: Phase::Connect,
            waited: Duration::from_secs(1),
            last_error: Some(e.clone()),
        },
        PoolError::Unavailable {
            failures: 2,
            last_error: Some(e.clone()),
        },
    ];
    for err in &errs {
        let shown = err.to_string();
        assert!(
            !shown.contains(&e.to_string()),
            "Display repeats the source: {shown}"
        );
        let src = err.source().expect("a source");
        assert_eq!(src.to_string(), e.to_string());
        assert!(src.source().is_none());
    }
    let no_source: Vec<PoolError<FakeError>> = vec![
        PoolError::Timeout {
            phase: Phase::Wait,
            waited: Duration::from_millis(5),
            last_error: None,
        },
        PoolError::Unavailable {
            failures: 3,
            last_error: None,
        },
        PoolError::Closed,
        PoolError::NoScope,
        PoolError::ScopeBusy,
        PoolError::NotConfigured,
    ];
    for err in &no_source {
        assert!(err.source().is_none(), "{err:?}");
        assert!(!err.to_string().is_empty());
        assert!(err.backend().is_none());
    }
    assert!(no_source[0].to_string().contains("waiting"));
    assert!(no_source[1].to_string().contains('3'));
    for p in [Phase::Wait, Phase::Connect, Phase::Validate, Phase::Reset] {
        assert!(!p.to_string().is_empty());
    }
}

#[tokio::test]
async fn build_errors() {
    let b = |f: fn(pool_core::Builder<Fake>) -> pool_core::Builder<Fake>| {
        f(Pool::builder(Fake::new()))
            .build()
            .map(|_| ())
            .unwrap_err()
    };
    assert_eq!(b(|b| b.max_size(0)), BuildError::ZeroMaxSize);
    assert_eq!(
        b(|b| b.max_size(2).min_idle(3)),
        BuildError::MinIdleExceedsMaxSize {
            min_idle: 3,
            max_size: 2
        }
    );
    for (name, err) in [
        ("connect_timeout", b(|b| b.connect_timeout(Duration::ZERO))),
        (
            "validate_timeout",
            b(|b| b.validate_timeout(Duration::ZERO)),
        ),
        ("reap_interval", b(|b| b.reap_interval(Duration::ZERO))),
        ("max_lifetime", b(|b| b.max_lifetime(Some(Duration::ZERO)))),
        ("idle_timeout", b(|b| b.idle_timeout(Some(Duration::ZERO)))),
        (
            "leak_threshold",
            b(|b| b.leak_threshold(Some(Duration::ZERO))),
        ),
    ] {
        assert_eq!(err, BuildError::ZeroDuration { name });
        assert!(err.to_string().contains(name), "{err}");
    }
    assert_eq!(
        b(|b| b.max_lifetime_jitter_percent(51)),
        BuildError::OutOfRange {
            name: "max_lifetime_jitter_percent"
        }
    );
    assert!(matches!(
        Pool::new(Fake::new(), 0),
        Err(BuildError::ZeroMaxSize)
    ));
    // Allowed edge values.
    let ok = Pool::builder(Fake::new())
        .max_size(1)
        .min_idle(1)
        .wait_timeout(Duration::ZERO)
        .validate_after_idle(Some(Duration::ZERO))
        .max_lifetime(None)
        .idle_timeout(None)
        .max_lifetime_jitter_percent(50)
        .fail_fast_after(0)
        .build();
    assert!(ok.is_ok());
    // Config::validate is the same check; the defaults are valid and documented.
    let c = Config::default();
    assert!(c.validate().is_ok());
    assert_eq!(c.max_size, 10);
    assert_eq!(c.wait_timeout, Duration::from_secs(30));
    let built = Pool::builder(Fake::new()).build().unwrap();
    assert_eq!(built.config(), &c);
    assert_eq!(
        BuildError::ZeroMaxSize.to_string(),
        "max_size must be at least 1"
    );
}

#[tokio::test(start_paused = true)]
async fn status_and_debug_output() {
    let (pool, _fake) = pool(3);
    let c = pool.get().await.unwrap();
    let s = pool.status();
    assert_eq!(
        (
            s.max_size,
            s.size,
            s.idle,
            s.in_use,
            s.opening,
            s.waiting,
            s.reclaimed
        ),
        (3, 1, 0, 1, 0, 0, 0)
    );
    assert!(format!("{pool:?}").contains("status"));
    assert!(format!("{c:?}").contains("Pooled"));
    for r in [
        CloseReason::Broken,
        CloseReason::Stale,
        CloseReason::Idle,
        CloseReason::Manual,
        CloseReason::Leaked,
        CloseReason::Invalid,
        CloseReason::ResetFailed,
        CloseReason::Panicked,
        CloseReason::Closed,
        CloseReason::Resized,
    ] {
        assert!(!r.to_string().is_empty());
    }
}

/// A leak is reported within a bounded delay of crossing the threshold, however long the reap
/// interval: the reaper's next pass comes no later than the next crossing, and never more than
/// one threshold away.
#[tokio::test(start_paused = true)]
async fn leak_warnings_come_soon_after_the_threshold_not_at_the_reap_interval() {
    let (logs, _guard) = capture_warnings();
    let fake = Fake::new();
    let pool = builder(&fake, 2)
        .leak_threshold(Some(Duration::from_secs(2)))
        .reap_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let warnings = || {
        logs.text()
            .lines()
            .filter(|l| l.contains("leak threshold"))
            .count()
    };
    sleep(Duration::from_millis(100)).await;
    let first = pool.get().await.unwrap();
    sleep(Duration::from_millis(1_950)).await; // held 1.95 s
    assert_eq!(warnings(), 0, "not before the threshold");
    sleep(Duration::from_millis(100)).await; // held 2.05 s
    assert_eq!(
        warnings(),
        1,
        "within 50 ms of crossing, not at the 60 s interval"
    );
    // Taken between passes: reported within one threshold of crossing it.
    let second = pool.get().await.unwrap();
    sleep(Duration::from_secs(4)).await;
    assert_eq!(warnings(), 2, "{}", logs.text());
    drop((first, second));
}

#[tokio::test(start_paused = true)]
async fn hold_times_are_counted_for_every_checkin_fast_path_included() {
    let (pool, _fake) = pool(2);
    let a = pool.get().await.unwrap();
    sleep(Duration::from_millis(10)).await;
    drop(a); // 10 ms, checked in through the core
    let b = pool.get().await.unwrap(); // the per-thread fast path when it is open
    sleep(Duration::from_millis(30)).await;
    drop(b); // 30 ms
    let c = pool.get().await.unwrap();
    let d = pool.get().await.unwrap();
    let p = pool.clone();
    let waiter = tokio::spawn(async move {
        let e = p.get().await.unwrap();
        sleep(Duration::from_millis(5)).await;
        drop(e); // 5 ms, granted from the queue
    });
    settle().await;
    sleep(Duration::from_millis(50)).await;
    drop(c); // 50 ms
    waiter.await.unwrap();
    sleep(Duration::from_millis(1000)).await;
    drop(d); // 1055 ms
    let m = pool.metrics();
    assert_eq!(m.hold_histogram.count(), 5, "{m:?}");
    assert_eq!(
        m.hold_time,
        Duration::from_millis(10 + 30 + 5 + 50 + 1055),
        "{m:?}"
    );
    assert_eq!(
        m.hold_histogram.quantile(0.5),
        Some(Duration::from_micros(32_768)),
        "the median hold (30 ms) lies in the 16.4-32.8 ms bucket"
    );
    assert_eq!(
        m.hold_histogram.quantile(1.0),
        Some(Duration::from_micros(1 << 21)),
        "the longest (1.055 s) in the 1.05-2.1 s bucket"
    );
    // A detached connection is not a check-in: not counted.
    let e = pool.get().await.unwrap();
    drop(pool_core::Pooled::detach(e));
    assert_eq!(pool.metrics().hold_histogram.count(), 5);
}
