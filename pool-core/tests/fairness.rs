//! The opt-in bounded queue bypass (`Builder::queue_bypass`): while the oldest waiting request is
//! young, a returned connection goes idle and a newcomer may take it first; once the oldest has
//! waited the window out, hand-off is strict FIFO again. No connection is ever stranded idle
//! while requests wait, also when a woken request gives up.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{builder, id, settle, Fake};
use pool_core::{PoolError, Status};

/// Sizes add up; idle connections may coexist with waiters for a moment under the bypass.
#[track_caller]
fn check_sizes(s: &Status) {
    assert_eq!(s.idle + s.in_use + s.opening, s.size, "{s:?}");
    assert!(s.size <= s.max_size, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_may_take_a_returned_connection_while_the_queue_is_young() {
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .queue_bypass(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    let first = id(&held);
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.get().await.map(|c| id(&c)) });
    settle().await;
    assert_eq!(pool.status().waiting, 1);

    drop(held); // made idle; the waiter is woken but has not run yet
    let status = pool.status();
    assert_eq!((status.idle, status.waiting), (1, 1));
    check_sizes(&status);
    let newcomer = pool
        .try_get()
        .expect("the newcomer overtakes a young queue");
    assert_eq!(id(&newcomer), first);
    drop(newcomer);

    // The woken waiter still gets the connection, with no further release.
    assert_eq!(waiter.await.unwrap().unwrap(), first);
    check_sizes(&pool.status());
    assert_eq!(pool.metrics().connects, 1);
}

#[tokio::test(start_paused = true)]
async fn an_old_queue_gets_strict_fifo_hand_off() {
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .queue_bypass(Some(Duration::from_millis(10)))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.get().await.map(|c| id(&c)) });
    settle().await;
    tokio::time::advance(Duration::from_millis(20)).await;

    drop(held); // the waiter has waited past the window: handed over directly
    assert_eq!(pool.status().idle, 0);
    assert!(matches!(pool.try_get(), Err(PoolError::Timeout { .. })));
    assert!(waiter.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_woken_request_that_gives_up_passes_the_connection_on() {
    let fake = Fake::new();
    let pool = builder(&fake, 1)
        .queue_bypass(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    let p1 = pool.clone();
    let first = tokio::spawn(async move { p1.get().await.map(|c| id(&c)) });
    settle().await;
    let p2 = pool.clone();
    let second = tokio::spawn(async move { p2.get().await.map(|c| id(&c)) });
    settle().await;
    assert_eq!(pool.status().waiting, 2);

    drop(held); // idle, and the first waiter is woken...
    first.abort(); // ...but gives up before it runs
    assert!(first.await.unwrap_err().is_cancelled());
    let got = tokio::time::timeout(Duration::from_secs(1), second)
        .await
        .expect("the second waiter is woken to take the idle connection")
        .unwrap();
    assert!(got.is_ok());
    check_sizes(&pool.status());
    assert_eq!(pool.status().waiting, 0);
}

#[test]
fn many_threads_all_complete_and_sizes_hold() {
    let fake = Fake::new();
    let pool = Arc::new(
        builder(&fake, 4)
            .queue_bypass(Some(Duration::from_millis(1)))
            .build()
            .unwrap(),
    );
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    let conn = pool.get_blocking().expect("every get is served");
                    check_sizes(&pool.status());
                    drop(conn);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = pool.status();
    check_sizes(&s);
    assert_eq!((s.waiting, s.in_use), (0, 0));
    assert!(pool.metrics().connects <= 4);
    assert_eq!(pool.metrics().gets, 16 * 2_000);
}
