//! Connection scopes: one lazily opened connection per unit of work (task or thread), reused at
//! any depth and by nested scopes, released when the scope ends, is dropped, or panics.

mod common;

use std::time::Duration;

use common::{assert_accounting, assert_invariants, pool, Fake};
use pool_core::{carry_scopes, CloseReason, Pool, PoolError, Pooled, ScopedConn};

fn conn_id(c: &ScopedConn<Fake>) -> u64 {
    Pooled::meta(ScopedConn::pooled(c)).id()
}

async fn deep(pool: &Pool<Fake>, depth: u32) -> u64 {
    if depth == 0 {
        let c = pool.scoped().await.unwrap();
        conn_id(&c)
    } else {
        Box::pin(deep(pool, depth - 1)).await
    }
}

#[tokio::test(start_paused = true)]
async fn task_scope_gives_the_same_connection_at_any_depth() {
    let (pool, fake) = pool(3);
    let ids = pool
        .scope(async {
            let a = deep(&pool, 0).await;
            let b = deep(&pool, 5).await;
            // A nested scope of the same pool reuses the outer connection.
            let c = pool.scope(async { deep(&pool, 2).await }).await;
            assert_eq!(pool.status().in_use, 1, "held by the scope between borrows");
            (a, b, c)
        })
        .await;
    assert_eq!(ids.0, ids.1);
    assert_eq!(ids.0, ids.2);
    assert_eq!(fake.connects(), 1);
    let s = pool.status();
    assert_eq!((s.in_use, s.idle), (0, 1), "returned when the scope ended");
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn scope_opens_its_connection_lazily() {
    let (pool, fake) = pool(1);
    pool.scope(async { tokio::task::yield_now().await }).await;
    assert_eq!(fake.connect_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn outside_a_scope_is_no_scope() {
    let (pool, _fake) = pool(1);
    assert!(matches!(pool.scoped().await, Err(PoolError::NoScope)));
    assert!(matches!(pool.scoped_blocking(), Err(PoolError::NoScope)));
    // A scope of another pool is not a scope of this one.
    let (other, _) = common::pool(1);
    other
        .scope(async {
            assert!(matches!(pool.scoped().await, Err(PoolError::NoScope)));
            assert!(other.scoped().await.is_ok());
        })
        .await;
    // A spawned task does not inherit the scope.
    pool.scope(async {
        let p = pool.clone();
        let r = tokio::spawn(async move { p.scoped().await.map(|_| ()) })
            .await
            .unwrap();
        assert!(matches!(r, Err(PoolError::NoScope)));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_second_simultaneous_borrow_is_scope_busy() {
    let (pool, _fake) = pool(2);
    pool.scope(async {
        let first = pool.scoped().await.unwrap();
        assert!(matches!(pool.scoped().await, Err(PoolError::ScopeBusy)));
        let id = conn_id(&first);
        drop(first);
        let again = pool.scoped().await.expect("free again");
        assert_eq!(conn_id(&again), id);
    })
    .await;
    assert_invariants(&pool);
}

/// A task spawned with `carry_scopes` shares the scope's connection; the connection goes back to
/// the pool only when the scope and the carried task have both ended.
#[tokio::test(start_paused = true)]
async fn carried_tasks_share_the_scope_connection_and_keep_it_until_they_end() {
    let (pool, fake) = pool(2);
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (id_tx, id_rx) = tokio::sync::oneshot::channel::<u64>();
    let p = pool.clone();
    let here = pool
        .scope(async {
            let here = conn_id(&pool.scoped().await.unwrap());
            tokio::spawn(carry_scopes(async move {
                let c = p.scoped().await.unwrap();
                id_tx.send(conn_id(&c)).unwrap();
                drop(c);
                // Outlives the scope that spawned it.
                go_rx.await.unwrap();
                let again = p.scoped().await.expect("the carried scope is still usable");
                conn_id(&again)
            }));
            here
        })
        .await;
    assert_eq!(
        id_rx.await.unwrap(),
        here,
        "the carried task used the scope's connection"
    );
    assert_eq!(
        pool.status().in_use,
        1,
        "the scope ended, but a task it was carried into is alive"
    );
    go_tx.send(()).unwrap();
    common::settle().await;
    assert_eq!(
        pool.status().in_use,
        0,
        "returned when the carried task ended"
    );
    assert_eq!(fake.connects(), 1);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

type Borrowed = Result<(), PoolError<common::FakeError>>;

/// Two parts of one scope borrowing at once: the first keeps its borrow across a yield while the
/// second asks.
async fn two_borrows_at_once(pool: &Pool<Fake>) -> (Borrowed, Borrowed) {
    tokio::join!(
        async {
            let c = pool.scoped().await;
            tokio::task::yield_now().await;
            c.map(|_| ())
        },
        async { pool.scoped().await.map(|_| ()) }
    )
}

/// Borrows stay exclusive across carried tasks: a concurrent borrow is `ScopeBusy` at once, and
/// outside any scope `carry_scopes` changes nothing.
#[tokio::test(start_paused = true)]
async fn carried_borrows_are_exclusive_and_carrying_nothing_is_no_scope() {
    let (pool, _fake) = pool(2);
    pool.scope(async {
        let held = pool.scoped().await.unwrap();
        let p = pool.clone();
        let r = tokio::spawn(carry_scopes(async move { p.scoped().await.map(|_| ()) }))
            .await
            .unwrap();
        assert!(matches!(r, Err(PoolError::ScopeBusy)), "{r:?}");
        // Two parts of one scope running at once: the second borrow is refused, not queued.
        let (a, b) = two_borrows_at_once(&pool).await;
        assert!(matches!(a, Err(PoolError::ScopeBusy)) && matches!(b, Err(PoolError::ScopeBusy)));
        drop(held);
        let (a, b) = two_borrows_at_once(&pool).await;
        assert!(a.is_ok(), "{a:?}");
        assert!(matches!(b, Err(PoolError::ScopeBusy)), "{b:?}");
    })
    .await;
    let p = pool.clone();
    let r = tokio::spawn(carry_scopes(async move { p.scoped().await.map(|_| ()) }))
        .await
        .unwrap();
    assert!(matches!(r, Err(PoolError::NoScope)));
    assert_eq!(pool.status().in_use, 0);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn nested_scopes_of_two_pools_each_have_their_own() {
    let (p1, f1) = pool(1);
    let (p2, f2) = pool(1);
    p1.scope(async {
        let a = p1.scoped().await.unwrap();
        p2.scope(async {
            let b = p2.scoped().await.unwrap();
            drop(b);
            // p1's scope is still visible in p2's nested scope.
            assert!(matches!(p1.scoped().await, Err(PoolError::ScopeBusy)));
        })
        .await;
        drop(a);
        assert!(p1.scoped().await.is_ok());
    })
    .await;
    assert_eq!((f1.connects(), f2.connects()), (1, 1));
    assert_eq!((p1.status().idle, p2.status().idle), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_scope_future_midway_releases_the_connection() {
    let (pool, _fake) = pool(1);
    let r = tokio::time::timeout(
        Duration::from_millis(10),
        pool.scope(async {
            let _c = pool.scoped().await.unwrap();
            std::future::pending::<()>().await;
        }),
    )
    .await;
    assert!(r.is_err());
    let s = pool.status();
    assert_eq!((s.in_use, s.idle), (0, 1), "{s:?}");
    // Also when the connection was given back to the scope before the drop.
    let r = tokio::time::timeout(
        Duration::from_millis(10),
        pool.scope(async {
            drop(pool.scoped().await.unwrap());
            std::future::pending::<()>().await;
        }),
    )
    .await;
    assert!(r.is_err());
    assert_eq!(pool.status().in_use, 0);
    assert!(pool.try_get().is_ok());
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn aborting_the_task_of_a_scope_releases_the_connection() {
    let (pool, _fake) = pool(1);
    let p = pool.clone();
    let t = tokio::spawn(async move {
        p.scope(async {
            let _c = p.scoped().await.unwrap();
            std::future::pending::<()>().await;
        })
        .await;
    });
    common::settle().await;
    assert_eq!(pool.status().in_use, 1);
    t.abort();
    assert!(t.await.unwrap_err().is_cancelled());
    assert_eq!(pool.status().in_use, 0);
    assert_invariants(&pool);
}

/// Scopes reuse their pool's slots: a later scope starts empty (the earlier scope's connection
/// went back to the pool), and a borrow that outlives its scope keeps its slot, and its
/// connection, out of reuse until it is dropped.
#[tokio::test(start_paused = true)]
async fn recycled_scope_slots_start_empty_and_escaped_borrows_keep_theirs() {
    let (pool, fake) = pool(2);
    for _ in 0..3 {
        pool.scope(async {
            let c = pool.scoped().await.unwrap();
            assert_eq!(pool.status().in_use, 1);
            drop(c);
        })
        .await;
        let s = pool.status();
        assert_eq!(
            (s.in_use, s.idle),
            (0, 1),
            "returned at the end of each scope: {s:?}"
        );
        // A new scope has no connection until it asks for one.
        pool.scope(async { assert_eq!(pool.status().in_use, 0) })
            .await;
    }
    assert_eq!(fake.connects(), 1);
    // A borrow taken out of its scope.
    let escaped = pool.scope(async { pool.scoped().await.unwrap() }).await;
    let kept = conn_id(&escaped);
    assert_eq!(pool.status().in_use, 1, "held by the escaped borrow");
    // Scopes meanwhile get other slots: another connection, and the escaped one stays put.
    let other = pool
        .scope(async { conn_id(&pool.scoped().await.unwrap()) })
        .await;
    assert_ne!(other, kept);
    assert_eq!(conn_id(&escaped), kept);
    assert_eq!(pool.status().in_use, 1);
    // Dropped, it gives the connection back to its (ended) scope's slot, which returns it.
    drop(escaped);
    let s = pool.status();
    assert_eq!((s.in_use, s.idle, s.size), (0, 2, 2), "{s:?}");
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[tokio::test(start_paused = true)]
async fn a_broken_scoped_connection_is_replaced() {
    let (pool, fake) = pool(2);
    pool.scope(async {
        let mut c = pool.scoped().await.unwrap();
        let first = conn_id(&c);
        ScopedConn::mark_broken(&mut c);
        drop(c);
        assert_eq!(fake.closes(CloseReason::Broken), 1);
        let c = pool.scoped().await.unwrap();
        assert_ne!(conn_id(&c), first);
    })
    .await;
    assert_eq!(pool.status().size, 1);
    assert_invariants(&pool);
    assert_accounting(&pool);
}

#[test]
fn thread_scope_gives_the_same_connection() {
    let (pool, fake) = pool(2);
    let (a, b, c) = pool.scope_blocking(|| {
        let a = conn_id(&pool.scoped_blocking().unwrap());
        let b = conn_id(&pool.scoped_blocking().unwrap());
        let c = pool.scope_blocking(|| conn_id(&pool.scoped_blocking().unwrap()));
        {
            let _held = pool.scoped_blocking().unwrap();
            assert!(matches!(pool.scoped_blocking(), Err(PoolError::ScopeBusy)));
        }
        (a, b, c)
    });
    assert_eq!((a, a), (b, c));
    assert_eq!(fake.connects(), 1);
    assert_eq!(pool.status().idle, 1);
    // Another thread has its own scope and connection.
    let p = pool.clone();
    let mine = pool.scope_blocking(|| {
        let c = pool.scoped_blocking().unwrap();
        let theirs = std::thread::scope(|s| {
            s.spawn(|| p.scope_blocking(|| conn_id(&p.scoped_blocking().unwrap())))
                .join()
                .unwrap()
        });
        assert_ne!(theirs, conn_id(&c));
        conn_id(&c)
    });
    assert!(mine > 0);
    assert_invariants(&pool);
}

#[test]
fn a_panicking_thread_scope_discards_its_connection() {
    let (pool, fake) = pool(1);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.scope_blocking(|| {
            let _c = pool.scoped_blocking().unwrap();
            panic!("unit of work fails");
        })
    }));
    assert!(r.is_err());
    assert_eq!(fake.closes(CloseReason::Panicked), 1);
    assert_eq!(pool.status().size, 0);
    // Also when the connection had been given back to the scope before the panic.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.scope_blocking(|| {
            drop(pool.scoped_blocking().unwrap());
            panic!("later failure");
        })
    }));
    assert!(r.is_err());
    assert_eq!(fake.closes(CloseReason::Panicked), 2);
    let s = pool.status();
    assert_eq!((s.size, s.in_use), (0, 0), "{s:?}");
    // The thread's scope stack is clean: outside any scope again.
    assert!(matches!(pool.scoped_blocking(), Err(PoolError::NoScope)));
    assert!(pool.get_blocking().is_ok());
    assert_invariants(&pool);
    assert_accounting(&pool);
}

/// `held()` names the line that called `scoped` (the user's code), not the library's own `get`
/// inside it, for task scopes and thread scopes alike.
#[tokio::test]
async fn held_names_the_scoped_call_site() {
    let fake = common::Fake::new();
    let pool = common::builder(&fake, 2).build().unwrap();
    let (file, line) = pool
        .scope(async {
            let line = line!() + 1;
            let conn = pool.scoped().await.unwrap();
            let held = pool.held();
            drop(conn);
            (
                held[0].location.file().to_owned(),
                (held[0].location.line(), line),
            )
        })
        .await;
    assert_eq!(file, file!());
    assert_eq!(line.0, line.1, "the scoped() call's line");

    let p = pool.clone();
    let (file, line) = tokio::task::spawn_blocking(move || {
        p.scope_blocking(|| {
            let line = line!() + 1;
            let conn = p.scoped_blocking().unwrap();
            let held = p.held();
            drop(conn);
            (
                held[0].location.file().to_owned(),
                (held[0].location.line(), line),
            )
        })
    })
    .await
    .unwrap();
    assert_eq!(file, file!());
    assert_eq!(line.0, line.1, "the scoped_blocking() call's line");
}
