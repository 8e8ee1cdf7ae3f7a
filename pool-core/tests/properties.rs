//! Property tests: random sequences of operations against a pool with a fake manager. After every
//! operation the invariants hold, the pool's size never grows past `max_size` (a shrink may leave
//! it above until holders return, never growing), and the live connections (connects - closes -
//! detached) are exactly those the pool accounts for, so they never exceed `max_size` except for
//! reclaimed ones still in their holders' hands.
//!
//! Requests also queue in tasks of their own (`Queue`) and are cancelled while they wait
//! (`Abort`), possibly after a connection or a permit was granted to them but before they ran:
//! the grant must be passed on, and the grant cells the pool recycles must never carry one
//! waiter's grant to another.

mod common;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use common::{detach, settle, Behavior, Fake};
use pool_core::{Pool, Pooled};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Get {
        wait_ms: u64,
    },
    Queue {
        wait_ms: u64,
    },
    Abort(usize),
    /// Drops a held connection, then at once (before the request it went to can run) aborts a
    /// queued request.
    DropAbort(usize, usize),
    /// Drops a held connection, then at once queues another request (which would be handed the
    /// grant cell of the request the connection went to, were cells recycled too early).
    DropQueue(usize),
    TryGet,
    Drop(usize),
    MarkBroken(usize),
    Dirty(usize),
    Close(usize),
    Detach(usize),
    CloseIdle,
    CloseStale {
        secs: u64,
    },
    CloseAll,
    Resize(usize),
    Advance {
        ms: u64,
    },
    AllBroken(bool),
    FailNextConnect,
    FailNextValidate,
    FailNextReset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..3).prop_map(|w| Op::Get { wait_ms: w * 5 }),
        3 => prop_oneof![Just(20u64), Just(60_000)].prop_map(|wait_ms| Op::Queue { wait_ms }),
        2 => any::<usize>().prop_map(Op::Abort),
        2 => any::<(usize, usize)>().prop_map(|(i, j)| Op::DropAbort(i, j)),
        2 => any::<usize>().prop_map(Op::DropQueue),
        2 => Just(Op::TryGet),
        5 => any::<usize>().prop_map(Op::Drop),
        1 => any::<usize>().prop_map(Op::MarkBroken),
        1 => any::<usize>().prop_map(Op::Dirty),
        1 => any::<usize>().prop_map(Op::Close),
        1 => any::<usize>().prop_map(Op::Detach),
        1 => Just(Op::CloseIdle),
        1 => (0u64..20).prop_map(|secs| Op::CloseStale { secs }),
        1 => Just(Op::CloseAll),
        1 => (1usize..=4).prop_map(Op::Resize),
        3 => prop_oneof![Just(10u64), Just(1_500), Just(6_000), Just(25_000)]
            .prop_map(|ms| Op::Advance { ms }),
        1 => any::<bool>().prop_map(Op::AllBroken),
        1 => Just(Op::FailNextConnect),
        1 => Just(Op::FailNextValidate),
        1 => Just(Op::FailNextReset),
    ]
}

/// Starts a request: polled once here (it queues now, before any woken task runs), then left
/// to a task of its own, which leaves the connection in `got`. `None` if it finished at once.
async fn queue(
    pool: &Pool<Fake>,
    wait_ms: u64,
    got: &Arc<Mutex<Vec<Pooled<Fake>>>>,
    held: &mut Vec<Pooled<Fake>>,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut get = Box::pin(pool.get_timeout(Duration::from_millis(wait_ms)));
    match std::future::poll_fn(|cx| Poll::Ready(get.as_mut().poll(cx))).await {
        Poll::Ready(res) => {
            held.extend(res.ok());
            None
        }
        Poll::Pending => {
            let got = got.clone();
            Some(tokio::spawn(async move {
                if let Ok(c) = get.await {
                    got.lock().unwrap().push(c);
                }
            }))
        }
    }
}

fn run(ops: &[Op], min_idle: usize, bypass: Option<Duration>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let fake = Fake::new();
        let pool: Pool<Fake> = Pool::builder(fake.clone())
            .max_size(3)
            .min_idle(min_idle)
            .wait_timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(1))
            .validate_timeout(Duration::from_millis(100))
            .validate_after_idle(Some(Duration::from_secs(1)))
            .max_lifetime(Some(Duration::from_secs(30)))
            .max_lifetime_jitter_percent(0)
            .idle_timeout(Some(Duration::from_secs(20)))
            .reap_interval(Duration::from_secs(5))
            .retry_connect(false)
            .fail_fast_after(0)
            .queue_bypass(bypass)
            .build()
            .unwrap();
        settle().await;
        let mut held: Vec<Pooled<Fake>> = Vec::new();
        // Queued requests: their tasks, and where those that got a connection leave it.
        let mut queued: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        let got: Arc<Mutex<Vec<Pooled<Fake>>>> = Arc::default();
        let mut allowed = pool.status().max_size;
        for (step, op) in ops.iter().enumerate() {
            let pick = |i: usize, len: usize| i % len;
            match op {
                Op::Get { wait_ms } => {
                    if let Ok(c) = pool.get_timeout(Duration::from_millis(*wait_ms)).await {
                        held.push(c);
                    }
                }
                Op::Queue { wait_ms } => {
                    queued.extend(queue(&pool, *wait_ms, &got, &mut held).await);
                }
                Op::DropQueue(i) if !held.is_empty() => {
                    drop(held.swap_remove(pick(*i, held.len())));
                    queued.extend(queue(&pool, 60_000, &got, &mut held).await);
                }
                Op::Abort(i) if !queued.is_empty() => {
                    let i = pick(*i, queued.len());
                    queued.swap_remove(i).abort();
                }
                Op::DropAbort(i, j) if !held.is_empty() && !queued.is_empty() => {
                    drop(held.swap_remove(pick(*i, held.len())));
                    queued.swap_remove(pick(*j, queued.len())).abort();
                }
                Op::Abort(_) | Op::DropAbort(..) | Op::DropQueue(_) => {}
                Op::TryGet => {
                    if let Ok(c) = pool.try_get() {
                        held.push(c);
                    }
                }
                Op::Drop(i) if !held.is_empty() => {
                    let i = pick(*i, held.len());
                    drop(held.swap_remove(i));
                }
                Op::MarkBroken(i) if !held.is_empty() => {
                    let i = pick(*i, held.len());
                    Pooled::mark_broken(&mut held[i]);
                }
                Op::Dirty(i) if !held.is_empty() => {
                    let i = pick(*i, held.len());
                    held[i].dirty = true;
                }
                Op::Close(i) if !held.is_empty() => {
                    let i = pick(*i, held.len());
                    Pooled::close(held.swap_remove(i));
                }
                Op::Detach(i) if !held.is_empty() => {
                    let i = pick(*i, held.len());
                    drop(detach(held.swap_remove(i)));
                }
                Op::Drop(_) | Op::MarkBroken(_) | Op::Dirty(_) | Op::Close(_) | Op::Detach(_) => {}
                Op::CloseIdle => {
                    pool.close_idle();
                }
                Op::CloseStale { secs } => {
                    pool.reclaim_held(Duration::from_secs(*secs));
                }
                Op::CloseAll => {
                    pool.close_all();
                }
                Op::Resize(n) => {
                    pool.resize(*n).unwrap();
                    allowed = (*n).max(pool.status().size);
                }
                Op::Advance { ms } => tokio::time::sleep(Duration::from_millis(*ms)).await,
                Op::AllBroken(on) => fake.set_all_broken(*on),
                Op::FailNextConnect => fake.script_connect([Behavior::FATAL]),
                Op::FailNextValidate => fake.script_validate([Behavior::FAIL]),
                Op::FailNextReset => fake.script_reset([Behavior::FAIL]),
            }
            settle().await;
            held.append(&mut got.lock().unwrap());
            queued.retain(|t| !t.is_finished());
            let s = pool.status();
            let ctx = format!("after step {step} {op:?}: {s:?}");
            prop_assert_eq!(s.idle + s.in_use + s.opening, s.size, "{}", ctx);
            // Also under the queue bypass: once woken requests have run, none waits while a
            // connection is idle (nothing is stranded).
            prop_assert!(s.waiting == 0 || s.idle == 0, "{}", ctx);
            if s.size <= s.max_size {
                allowed = s.max_size;
            }
            prop_assert!(s.size <= allowed, "size grew past max_size: {}", ctx);
            prop_assert_eq!(fake.silent_drops(), 0, "{}", ctx);
            let live = fake.live();
            prop_assert!(
                live <= (allowed + s.reclaimed) as u64,
                "{} live connections: {}",
                live,
                ctx
            );
            if s.opening == 0 {
                prop_assert_eq!(
                    live,
                    (s.size + s.reclaimed) as u64,
                    "live connections disagree with the pool's count: {}",
                    ctx
                );
            }
            prop_assert_eq!(s.in_use + s.reclaimed, held.len(), "{}", ctx);
        }
        // Everything back: nothing in use, and max_size gets succeed again.
        fake.set_all_broken(false);
        fake.set_connect(Behavior::Ok);
        fake.set_validate(Behavior::Ok);
        fake.set_reset(Behavior::Ok);
        for t in queued {
            t.abort();
        }
        settle().await;
        drop(held);
        drop(got.lock().unwrap().drain(..));
        settle().await;
        let s = pool.status();
        prop_assert_eq!((s.in_use, s.reclaimed, s.waiting), (0, 0, 0), "{:?}", s);
        let max = s.max_size;
        let mut again = Vec::new();
        for _ in 0..max {
            match pool.get_timeout(Duration::from_millis(10)).await {
                Ok(c) => again.push(c),
                Err(e) => {
                    return Err(TestCaseError::fail(format!(
                        "slot lost: {e:?} with {:?}",
                        pool.status()
                    )))
                }
            }
        }
        drop(again);
        pool.close();
        prop_assert_eq!(fake.live(), 0);
        prop_assert_eq!(fake.silent_drops(), 0);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_keep_the_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        run(&ops, 0, None)?;
    }

    #[test]
    fn random_operations_keep_the_invariants_with_min_idle(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        run(&ops, 1, None)?;
    }

    #[test]
    fn random_operations_keep_the_invariants_with_the_queue_bypass(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        run(&ops, 1, Some(Duration::from_secs(1)))?;
    }
}
