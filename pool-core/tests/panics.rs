//! A holder that panics: its connection is discarded (never reused), counted as panicked, and
//! its slot is not lost; from a thread and from a task.

mod common;

use std::time::Duration;

use common::{assert_accounting, assert_invariants, pool, settle};
use pool_core::CloseReason;

#[test]
fn panic_in_a_thread_discards_the_connection() {
    let (pool, fake) = pool(1);
    let p = pool.clone();
    let joined = std::thread::spawn(move || {
        let mut c = p.get_blocking().unwrap();
        c.value = 7; // half-done work
        panic!("holder panics");
    })
    .join();
    assert!(joined.is_err());
    assert_eq!(fake.closes(CloseReason::Panicked), 1);
    assert_eq!(pool.metrics().closed_panicked, 1);
    let s = pool.status();
    assert_eq!((s.size, s.in_use, s.idle), (0, 0, 0), "slot freed: {s:?}");
    let c = pool.get_blocking().unwrap();
    assert_eq!(
        (c.id, c.value),
        (2, 0),
        "a fresh connection, not the panicked one"
    );
    drop(c);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn panic_in_a_task_discards_the_connection_and_serves_the_waiter() {
    let (pool, fake) = pool(1);
    let p = pool.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn(async move {
        let _c = p.get().await.unwrap();
        rx.await.unwrap();
        panic!("holder task panics");
    });
    settle().await;
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.get().await.map(|c| c.id) });
    settle().await;
    assert_eq!(pool.status().waiting, 1);
    tx.send(()).unwrap();
    assert!(holder.await.unwrap_err().is_panic());
    let got = tokio::time::timeout(Duration::from_millis(10), waiter)
        .await
        .expect("the waiter is not stranded")
        .unwrap()
        .unwrap();
    assert_eq!(got, 2);
    assert_eq!(fake.closed_ids(CloseReason::Panicked), vec![1]);
    assert_eq!(pool.metrics().closed_panicked, 1);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[test]
fn panic_while_holding_several_on_many_threads() {
    let (pool, fake) = pool(3);
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let p = pool.clone();
            std::thread::spawn(move || {
                let _c = p.get_blocking().unwrap();
                if i % 2 == 0 {
                    panic!("boom {i}");
                }
            })
        })
        .collect();
    let panicked = threads
        .into_iter()
        .map(|t| t.join())
        .filter(Result::is_err)
        .count();
    assert_eq!(panicked, 3);
    assert_eq!(fake.closes(CloseReason::Panicked), 3);
    let s = pool.status();
    assert_eq!(s.in_use, 0);
    let all: Vec<_> = (0..3).map(|_| pool.get_blocking().unwrap()).collect();
    drop(all);
    assert_invariants(&pool);
    assert_accounting(&pool);
}
