//! A tower [`Layer`] that gives every request its own connection scope.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::{Manager, Pool};

/// Runs every request of the wrapped service inside a connection scope of a pool
/// ([`Pool::scope`]): code at any depth of the handler gets the request's connection with
/// [`Pool::scoped`], the connection is opened on first use (a request that never touches the
/// database takes none), and it goes back to the pool when the response future completes or is
/// dropped (a client that hangs up cancels it).
///
/// With axum: `Router::new().route(…).layer(ScopeLayer::new(pool.clone()))`.
///
/// What the scope covers: the handler's future. A response body streamed after the handler
/// returned runs outside it, and so does work the handler `tokio::spawn`s (a spawned task is
/// another task: it opens its own scope with `pool.scope(..)` or takes a connection with
/// `pool.get()`).
///
/// ```
/// # use std::convert::Infallible;
/// # struct Db;
/// # impl pool_core::Manager for Db {
/// #     type Connection = ();
/// #     type Error = Infallible;
/// #     async fn connect(&self) -> Result<(), Infallible> { Ok(()) }
/// # }
/// use std::task::{Context, Poll};
/// use pool_core::{Pool, ScopeLayer};
/// use tower_layer::Layer;
/// use tower_service::Service;
///
/// // A service whose handler uses the request's scope.
/// #[derive(Clone)]
/// struct Handler(Pool<Db>);
/// impl Service<u32> for Handler {
///     type Response = u64;
///     type Error = Infallible;
///     type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, Infallible>> + Send>>;
///     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
///         Poll::Ready(Ok(()))
///     }
///     fn call(&mut self, _req: u32) -> Self::Future {
///         let pool = self.0.clone();
///         Box::pin(async move {
///             let conn = pool.scoped().await.expect("inside the request's scope");
///             Ok(pool_core::Pooled::meta(pool_core::ScopedConn::pooled(&conn)).id())
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = Pool::new(Db, 4).unwrap();
/// let mut service = ScopeLayer::new(pool.clone()).layer(Handler(pool.clone()));
/// let id = service.call(1).await.unwrap();
/// assert_eq!(pool.status().in_use, 0, "returned when the request ended");
/// # let _ = id;
/// # }
/// ```
pub struct ScopeLayer<M: Manager> {
    pool: Pool<M>,
}

impl<M: Manager> ScopeLayer<M> {
    /// A layer opening scopes of `pool`.
    pub fn new(pool: Pool<M>) -> Self {
        ScopeLayer { pool }
    }
}

impl<M: Manager> Clone for ScopeLayer<M> {
    fn clone(&self) -> Self {
        ScopeLayer {
            pool: self.pool.clone(),
        }
    }
}

impl<M: Manager> fmt::Debug for ScopeLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeLayer").finish_non_exhaustive()
    }
}

impl<M: Manager, S> Layer<S> for ScopeLayer<M> {
    type Service = ScopeService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        ScopeService {
            inner,
            pool: self.pool.clone(),
        }
    }
}

/// The service [`ScopeLayer`] makes: the inner service, each call inside a scope.
pub struct ScopeService<S, M: Manager> {
    inner: S,
    pool: Pool<M>,
}

impl<S: Clone, M: Manager> Clone for ScopeService<S, M> {
    fn clone(&self) -> Self {
        ScopeService {
            inner: self.inner.clone(),
            pool: self.pool.clone(),
        }
    }
}

impl<S, M: Manager> fmt::Debug for ScopeService<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeService").finish_non_exhaustive()
    }
}

impl<S, M, R> Service<R> for ScopeService<S, M>
where
    S: Service<R>,
    S::Future: Send + 'static,
    M: Manager,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let response = self.inner.call(request);
        let pool = self.pool.clone();
        Box::pin(async move { pool.scope(response).await })
    }
}
