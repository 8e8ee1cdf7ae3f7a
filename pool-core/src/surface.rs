//! What a backend crate offers its users beside its manager: the pool's names, so that a
//! service depends on the backend crate alone, and one-call work on a connection.

use std::future::Future;
use std::panic::Location;

use crate::{Manager, Pool};

/// A backend whose connections run a closure handed to them ([`Pool::interact`]), e.g. a
/// blocking driver that runs it on a blocking thread.
pub trait Interact: Manager + Sized {
    /// What the closure is given.
    type Target;
    /// The closure's own error.
    type Failure;
    /// The error of [`Pool::interact`]: the pool's, or the closure's.
    type InteractError;

    /// Gets a connection of `pool` (a handle of its own) and runs `f` with it (see
    /// [`Pool::interact`]); the connection is acquired on behalf of the call at `location`.
    fn interact<F, T>(
        pool: Pool<Self>,
        f: F,
        location: &'static Location<'static>,
    ) -> impl Future<Output = Result<T, Self::InteractError>> + Send + 'static
    where
        F: FnOnce(&mut Self::Target) -> Result<T, Self::Failure> + Send + 'static,
        T: Send + 'static;

    /// Gets a connection of `pool`, parking the thread, and runs `f` with it on this thread.
    ///
    /// # Errors
    /// The pool's error, or the one `f` returned.
    fn interact_blocking<F, T>(
        pool: &Pool<Self>,
        f: F,
        location: &'static Location<'static>,
    ) -> Result<T, Self::InteractError>
    where
        F: FnOnce(&mut Self::Target) -> Result<T, Self::Failure>;
}

impl<M: Interact> Pool<M> {
    /// Gets a connection and runs `f` with it, as the backend does it (pool-sqlite: on tokio's
    /// blocking threads, the connection handed straight to the thread that runs `f`). An
    /// inherent method: nothing to import.
    ///
    /// # Errors
    /// The backend's error: no connection could be had, or `f` failed.
    ///
    /// # Cancel safety
    /// The backend's (pool-sqlite: `f` finishes in the background, the connection goes back).
    ///
    /// `held()` and leak warnings name the line that called `interact`.
    #[track_caller]
    pub fn interact<F, T>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<T, M::InteractError>> + Send + 'static
    where
        F: FnOnce(&mut M::Target) -> Result<T, M::Failure> + Send + 'static,
        T: Send + 'static,
    {
        M::interact(self.clone(), f, Location::caller())
    }

    /// Gets a connection, parking the thread, and runs `f` with it on this thread.
    ///
    /// # Errors
    /// The backend's error: no connection could be had, or `f` failed.
    #[track_caller]
    pub fn interact_blocking<F, T>(&self, f: F) -> Result<T, M::InteractError>
    where
        F: FnOnce(&mut M::Target) -> Result<T, M::Failure>,
    {
        M::interact_blocking(self, f, Location::caller())
    }
}

/// Declares, in a backend crate, the names its users need so that they depend on the backend
/// alone: the pool-core types they name (`Config`, `Builder`, `PoolError`, `Phase`, `Status`,
/// `Metrics`, `RetryPolicy`, `Report`, …, and `ScopeLayer` / `MetricsExporter` behind the
/// backend's own `tower` / `metrics` features), and the same aliases in every backend:
///
/// | name | what |
/// |---|---|
/// | `Pool` | `pool_core::Pool<Manager>` |
/// | `PooledConn` | a checked-out connection (`pool_core::Pooled<Manager>`) |
/// | `ScopedConn` | a borrow of the current scope's connection |
/// | `Error` | `pool_core::PoolError<driver error>` |
/// | `ReadWritePool` | a primary pool with read replicas |
/// | `global()` | the process-wide pool of this backend, configured once at startup |
///
/// `backend_surface!(Manager, DriverError);` in the backend's `lib.rs`.
#[macro_export]
macro_rules! backend_surface {
    ($manager:ty, $error:ty) => {
        #[cfg(feature = "metrics")]
        pub use $crate::MetricsExporter;
        pub use $crate::{
            carry_scopes, AlreadyConfigured, BuildError, Builder, CloseReason, Config, ConnMeta,
            DurationHistogram, EnvError, ErrorClass, ErrorKind, GlobalPool, HeldConn, Member,
            Metrics, Phase, PoolError, Report, ResizeError, RetryPolicy, Status, WaitHistogram,
        };
        #[cfg(feature = "tower")]
        pub use $crate::{ScopeLayer, ScopeService};

        /// A pool of this backend's connections.
        pub type Pool = $crate::Pool<$manager>;
        /// A connection checked out of a [`Pool`]; dropping it returns the connection.
        pub type PooledConn = $crate::Pooled<$manager>;
        /// A borrow of the current scope's connection ([`Pool::scoped`](pool_core::Pool::scoped)).
        pub type ScopedConn = $crate::ScopedConn<$manager>;
        /// The error of [`Pool::get`](pool_core::Pool::get) and friends.
        pub type Error = $crate::PoolError<$error>;
        /// The error of a unit of work run by `retry`: no connection, or the driver's error.
        pub type WorkError = $crate::WorkError<$error>;
        /// One handle over a primary pool and read-replica pools.
        pub type ReadWritePool = $crate::ReadWrite<$manager>;

        /// The process-wide pool of this backend: configure it once at startup
        /// (`global().configure(pool)`), then use it anywhere; before that every use fails
        /// with `PoolError::NotConfigured`.
        pub fn global() -> &'static $crate::GlobalPool<$manager> {
            static GLOBAL: $crate::GlobalPool<$manager> = $crate::GlobalPool::new();
            &GLOBAL
        }
    };
}
