//! `ScopeLayer`: each request of a tower service runs in its own connection scope.
#![cfg(feature = "tower")]

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{assert_invariants, id, pool, Fake};
use pool_core::{Pool, PoolError, ScopeLayer, ScopedConn};
use tower_layer::Layer;
use tower_service::Service;

/// A handler: `Some(n)` borrows the request's connection twice, `n` ms apart, and answers its id
/// twice; `None` does not touch the database.
#[derive(Clone)]
struct Handler(Pool<Fake>);

impl Service<Option<u64>> for Handler {
    type Response = Option<(u64, u64)>;
    type Error = PoolError<common::FakeError>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Option<u64>) -> Self::Future {
        let pool = self.0.clone();
        Box::pin(async move {
            let Some(ms) = req else { return Ok(None) };
            let first = id(ScopedConn::pooled(&pool.scoped().await?));
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let second = id(ScopedConn::pooled(&pool.scoped().await?));
            Ok(Some((first, second)))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn each_request_has_its_own_connection_for_its_whole_length() {
    let (pool, fake) = pool(4);
    let service = ScopeLayer::new(pool.clone()).layer(Handler(pool.clone()));
    let mut calls = Vec::new();
    for _ in 0..4 {
        let mut s = service.clone();
        calls.push(tokio::spawn(async move { s.call(Some(10)).await }));
    }
    let mut ids = Vec::new();
    for call in calls {
        let (a, b) = call.await.unwrap().unwrap().unwrap();
        assert_eq!(
            a, b,
            "one connection per request, however often it is borrowed"
        );
        ids.push(a);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "concurrent requests never share a connection");
    assert_eq!(fake.connects(), 4);
    assert_eq!(pool.status().in_use, 0, "every connection went back");
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_never_touches_the_database_takes_no_connection() {
    let (pool, fake) = pool(1);
    let mut service = ScopeLayer::new(pool.clone()).layer(Handler(pool.clone()));
    assert_eq!(service.call(None).await.unwrap(), None);
    assert_eq!(fake.connects(), 0);
    assert_eq!(pool.status().size, 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_request_returns_its_connection() {
    let (pool, _fake) = pool(1);
    let mut service = ScopeLayer::new(pool.clone()).layer(Handler(pool.clone()));
    // The client hangs up while the handler holds the connection.
    let cancelled = tokio::time::timeout(Duration::from_millis(5), service.call(Some(1_000))).await;
    assert!(cancelled.is_err());
    assert_eq!(pool.status().in_use, 0);
    // The single connection serves the next request at once.
    let (a, b) = service.call(Some(1)).await.unwrap().unwrap();
    assert_eq!(a, b);
    assert_invariants(&pool);
}

#[tokio::test(start_paused = true)]
async fn spawned_work_is_outside_the_request_scope() {
    let (pool, _fake) = pool(2);
    let inner = pool.clone();
    let handler = tower_service_fn(move || {
        let pool = inner.clone();
        async move {
            let here = pool.scoped().await.is_ok();
            let p = pool.clone();
            let spawned = tokio::spawn(async move { p.scoped().await.map(|_| ()) })
                .await
                .unwrap();
            Ok::<_, Infallible>((here, matches!(spawned, Err(PoolError::NoScope))))
        }
    });
    let mut service = ScopeLayer::new(pool.clone()).layer(handler);
    assert_eq!(service.call(()).await.unwrap(), (true, true));
}

/// A minimal `service_fn` (the `tower` crate is not a dependency).
fn tower_service_fn<F, Fut>(f: F) -> FnService<F>
where
    F: FnMut() -> Fut,
{
    FnService(f)
}

#[derive(Clone)]
struct FnService<F>(F);

impl<F, Fut, T> Service<()> for FnService<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Infallible>> + Send + 'static,
{
    type Response = T;
    type Error = Infallible;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Fut {
        (self.0)()
    }
}
