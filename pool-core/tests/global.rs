//! `GlobalPool`: typed "not configured" before startup configured it, configured once.

mod common;

use common::Fake;
use pool_core::{GlobalPool, Pool, PoolError};

static DB: GlobalPool<Fake> = GlobalPool::new();

#[tokio::test]
async fn not_configured_then_configured_once_then_usable_from_any_task() {
    assert!(!DB.is_configured());
    assert!(matches!(DB.get().await, Err(PoolError::NotConfigured)));
    assert!(matches!(DB.pool(), Err(PoolError::NotConfigured)));
    let err = DB.get().await.unwrap_err();
    assert!(err.to_string().contains("not configured"), "{err}");

    let fake = Fake::new();
    DB.configure(Pool::new(fake.clone(), 2).unwrap()).unwrap();
    let again = DB.configure(Pool::new(Fake::new(), 5).unwrap());
    let rejected = again.expect_err("configured once");
    assert_eq!(
        rejected.0.config().max_size,
        5,
        "the rejected pool comes back"
    );
    assert_eq!(DB.pool().unwrap().config().max_size, 2);

    let tasks: Vec<_> = (0..8)
        .map(|_| tokio::spawn(async { DB.get().await.map(|_| ()) }))
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(fake.connects() >= 1 && fake.connects() <= 2);
}
