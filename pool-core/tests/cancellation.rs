//! The randomized cancellation matrix (deadpool `managed_cancellation` style): for every
//! combination of connect / validate / reset behaving Ok, Err, Slow or Never, tasks loop
//! `timeout(random, pool.get())`, hold briefly, and are finally aborted. Throughout, a sampler
//! checks the invariants (`size <= max_size` among them); afterwards, with a healthy manager, the
//! pool must serve `max_size` concurrent gets again (no slot lost) and account for every
//! connection.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{assert_accounting, assert_invariants, builder, settle, Behavior, Fake};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Ok,
    Err,
    Slow,
    Never,
}

const KINDS: [Kind; 4] = [Kind::Ok, Kind::Err, Kind::Slow, Kind::Never];
const MAX: usize = 2;
const TASKS: usize = 8;
const ITERATIONS: usize = 25;

fn behavior(k: Kind) -> Behavior {
    match k {
        Kind::Ok => Behavior::Ok,
        Kind::Err => Behavior::FAIL,
        Kind::Slow => Behavior::Slow(Duration::from_millis(4)),
        Kind::Never => Behavior::Never,
    }
}

fn run_combo(connect: Kind, validate: Kind, reset: Kind, seed: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let ctx = format!("connect {connect:?}, validate {validate:?}, reset {reset:?}, seed {seed}");
    let ctx = ctx.as_str();
    rt.block_on(async {
        let fake = Fake::new();
        // Each method mixes its behaviour with successes at random (seeded), then keeps it.
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut mix = |k: Kind| -> Vec<Behavior> {
            (0..300)
                .map(|_| {
                    if rng.bool() {
                        behavior(k)
                    } else {
                        Behavior::Ok
                    }
                })
                .collect()
        };
        let (c, v, r) = (mix(connect), mix(validate), mix(reset));
        fake.set_connect(behavior(connect));
        fake.script_connect(c);
        fake.set_validate(behavior(validate));
        fake.script_validate(v);
        fake.set_reset(behavior(reset));
        fake.script_reset(r);
        let tasks_n = rng.usize(1..=TASKS);
        let pool = builder(&fake, MAX)
            .wait_timeout(Duration::from_millis(20))
            .connect_timeout(Duration::from_millis(30))
            .validate_timeout(Duration::from_millis(10))
            .validate_after_idle(Some(Duration::ZERO))
            .fail_fast_after(3)
            .build()
            .unwrap();

        // The sampler: status invariants every millisecond of (virtual) time.
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let pool = pool.clone();
            let stop = stop.clone();
            let ctx = ctx.to_owned();
            tokio::spawn(async move {
                let mut samples = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let s = pool.status();
                    assert!(s.size <= s.max_size, "{ctx}: size > max_size: {s:?}");
                    assert_eq!(s.idle + s.in_use + s.opening, s.size, "{ctx}: {s:?}");
                    assert!(s.waiting == 0 || s.idle == 0, "{ctx}: {s:?}");
                    samples += 1;
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
                samples
            })
        };

        let mut tasks = Vec::new();
        for t in 0..tasks_n {
            let pool = pool.clone();
            let mut rng = fastrand::Rng::with_seed(seed * 1000 + t as u64);
            tasks.push(tokio::spawn(async move {
                for _ in 0..ITERATIONS {
                    let limit = Duration::from_micros(rng.u64(0..15_000));
                    if let Ok(Ok(mut c)) = tokio::time::timeout(limit, pool.get()).await {
                        c.dirty = rng.bool();
                        tokio::time::sleep(Duration::from_micros(rng.u64(0..3_000))).await;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }

        // Heal the backend and let in-flight connects, checks and the fail-fast window end.
        fake.set_connect(Behavior::Ok);
        fake.set_validate(Behavior::Ok);
        fake.set_reset(Behavior::Ok);
        tokio::time::sleep(Duration::from_secs(5)).await;
        settle().await;
        assert_invariants(&pool);
        assert_accounting(&pool);
        let s = pool.status();
        assert_eq!((s.in_use, s.waiting, s.opening), (0, 0, 0), "{ctx}: {s:?}");

        // No slot lost: max_size concurrent gets succeed.
        let all = futures::future::join_all((0..MAX).map(|_| pool.get())).await;
        for r in &all {
            assert!(r.is_ok(), "{ctx}: {r:?}");
        }
        assert_eq!(pool.status().in_use, MAX, "{ctx}");
        drop(all);

        stop.store(true, Ordering::Relaxed);
        let samples = sampler.await.expect("the sampler saw no violation");
        assert!(samples > 50, "{ctx}: sampled {samples} times");
        assert_invariants(&pool);
        assert_accounting(&pool);
        assert_eq!(fake.silent_drops(), 0, "{ctx}");
    });
}

fn run_row(connect: Kind, row: u64) {
    let mut seed = row * 100;
    for validate in KINDS {
        for reset in KINDS {
            seed += 1;
            run_combo(connect, validate, reset, seed);
        }
    }
}

#[test]
fn cancellation_matrix_connect_ok() {
    run_row(Kind::Ok, 1);
}

#[test]
fn cancellation_matrix_connect_err() {
    run_row(Kind::Err, 2);
}

#[test]
fn cancellation_matrix_connect_slow() {
    run_row(Kind::Slow, 3);
}

#[test]
fn cancellation_matrix_connect_never() {
    run_row(Kind::Never, 4);
}
