//! A configure-once pool reachable from anywhere: the process-wide session factory that web
//! services usually keep (configure at startup, use in any handler).

use std::fmt;
use std::sync::OnceLock;

use crate::{Manager, Pool, PoolError, Pooled};

/// A pool configured once at startup and then used from anywhere, e.g. from a `static`.
///
/// Before [`configure`](GlobalPool::configure) every use fails with the typed error
/// [`PoolError::NotConfigured`]; configuring twice is refused ([`AlreadyConfigured`]), so no
/// part of the program can swap the pool under another's feet. Each backend crate has one
/// (`pool_postgres::global()`, …); a program with several databases declares its own statics.
///
/// ```
/// # use std::convert::Infallible;
/// # struct Db;
/// # impl pool_core::Manager for Db {
/// #     type Connection = ();
/// #     type Error = Infallible;
/// #     async fn connect(&self) -> Result<(), Infallible> { Ok(()) }
/// # }
/// use pool_core::{GlobalPool, Pool, PoolError};
///
/// static DB: GlobalPool<Db> = GlobalPool::new();
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// assert!(matches!(DB.get().await, Err(PoolError::NotConfigured)));
/// DB.configure(Pool::new(Db, 8)?)?;
/// let _conn = DB.get().await?;
/// assert!(DB.configure(Pool::new(Db, 8)?).is_err(), "configured once");
/// # Ok(()) }
/// ```
pub struct GlobalPool<M: Manager> {
    cell: OnceLock<Pool<M>>,
}

impl<M: Manager> GlobalPool<M> {
    /// An empty slot, for a `static`.
    pub const fn new() -> Self {
        GlobalPool {
            cell: OnceLock::new(),
        }
    }

    /// Installs `pool`. Call it once, at startup.
    ///
    /// # Errors
    /// [`AlreadyConfigured`] (carrying `pool` back) when a pool is installed already.
    pub fn configure(&self, pool: Pool<M>) -> Result<(), AlreadyConfigured<M>> {
        self.cell.set(pool).map_err(AlreadyConfigured)
    }

    /// Whether a pool is installed.
    pub fn is_configured(&self) -> bool {
        self.cell.get().is_some()
    }

    /// The installed pool.
    ///
    /// # Errors
    /// [`PoolError::NotConfigured`] before [`configure`](GlobalPool::configure).
    pub fn pool(&self) -> Result<&Pool<M>, PoolError<M::Error>> {
        self.cell.get().ok_or(PoolError::NotConfigured)
    }

    /// A connection from the installed pool, as [`Pool::get`].
    ///
    /// # Errors
    /// [`PoolError::NotConfigured`] before [`configure`](GlobalPool::configure), else as
    /// [`Pool::get`].
    ///
    /// # Cancel safety
    /// As [`Pool::get`].
    pub async fn get(&self) -> Result<Pooled<M>, PoolError<M::Error>> {
        self.pool()?.get().await
    }
}

impl<M: Manager> Default for GlobalPool<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Manager> fmt::Debug for GlobalPool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalPool")
            .field("configured", &self.is_configured())
            .finish_non_exhaustive()
    }
}

/// [`GlobalPool::configure`] was called on a configured pool; the rejected pool is inside.
pub struct AlreadyConfigured<M: Manager>(pub Pool<M>);

impl<M: Manager> fmt::Debug for AlreadyConfigured<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AlreadyConfigured")
    }
}

impl<M: Manager> fmt::Display for AlreadyConfigured<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the global pool is configured already")
    }
}

impl<M: Manager> std::error::Error for AlreadyConfigured<M> {}
