#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)] // rusqlite wraps the C library; nothing here needs unsafe.
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings))))]

mod config;
mod conn;
mod error;
mod handoff;
mod manager;
mod settings;

use std::future::Future;
use std::panic::Location;
use std::sync::Arc;

pub use config::{ConfigError, InitHook, Synchronous};
pub use conn::{InteractError, SqliteConn, SqliteGuard};
pub use error::classify;
pub use manager::SqliteManager;
pub use rusqlite;
pub use settings::Settings;

pool_core::backend_surface!(SqliteManager, rusqlite::Error);

/// The manager, under the name every backend uses.
pub type Manager = SqliteManager;
/// A connection checked out of a [`Pool`] (the name before [`PooledConn`]).
pub type Pooled = PooledConn;

/// A pool of at most `max_size` connections to the database `url` (see
/// [`SqliteManager::from_url`] for the accepted forms), with default settings.
///
/// For other settings use [`Pool::builder`](pool_core::Pool::builder) with a
/// [`SqliteManager`]. The pool opens connections lazily: a database that cannot be opened is
/// reported by the first `get`.
///
/// # Errors
/// [`ConfigError`] for a malformed URL or a zero `max_size` ([`ConfigError::Build`]).
pub fn pool(url: &str, max_size: usize) -> Result<Pool, ConfigError> {
    Ok(Pool::new(SqliteManager::from_url(url)?, max_size)?)
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Pool {}
}

/// One-call helpers on a [`Pool`]: get a connection, run a closure with it, return it.
///
/// Implemented for [`Pool`] only. `pool.interact(..)` and `pool.interact_blocking(..)` need no
/// import (they are inherent methods of the pool through [`pool_core::Interact`]); this trait
/// remains for code that names it.
pub trait SqlitePool: sealed::Sealed {
    /// Gets a connection (waiting asynchronously) and runs `f` with it on tokio's blocking
    /// threads; see [`SqliteConn::interact`].
    ///
    /// # Errors
    /// [`InteractError::Pool`] if no connection could be had, [`InteractError::Sqlite`] for
    /// the error `f` returned, [`InteractError::Panic`] if `f` panicked (the connection is then
    /// closed, the pool goes on).
    ///
    /// The request carries `f`: a connection granted to it goes straight to a blocking thread
    /// (often the one that returned it, which then runs `f` without any hop), and goes back to
    /// the pool from there as soon as `f` returns, before this future completes. It is never
    /// held while this task waits to be polled. Waiting for a connection occupies no thread,
    /// and is bounded by the pool's `wait_timeout` as for [`Pool::get`](pool_core::Pool::get).
    ///
    /// # Cancel safety
    /// Dropping the future while `f` runs lets `f` finish in the background; the connection is
    /// then returned as after any other call (a transaction `f` left open is rolled back).
    fn interact<F, T>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<T, InteractError>> + Send + 'static
    where
        F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static;

    /// Gets a connection (parking the thread) and runs `f` with it on the calling thread.
    /// For threads, not for async code.
    ///
    /// # Errors
    /// [`InteractError::Pool`] if no connection could be had, [`InteractError::Sqlite`] for
    /// the error `f` returned.
    ///
    /// # Panics
    /// A panic of `f` propagates; the connection is closed, not reused.
    fn interact_blocking<F, T>(&self, f: F) -> Result<T, InteractError>
    where
        F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>;
}

/// `interact` on a pool handle of its own (the future borrows nothing).
async fn interact_owned<F, T>(
    pool: Pool,
    f: F,
    location: &'static Location<'static>,
) -> Result<T, InteractError>
where
    F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => handoff::interact(&pool, runtime, f, location).await,
        // No runtime: `get` cannot wait; `f` runs inline, as `SqliteConn::interact`'s.
        Err(_) => {
            let conn = pool.get_at(location).await?;
            Ok(conn.interact(f).await??)
        }
    }
}

impl pool_core::Interact for SqliteManager {
    type Target = rusqlite::Connection;
    type Failure = rusqlite::Error;
    type InteractError = InteractError;

    fn interact<F, T>(
        pool: Pool,
        f: F,
        location: &'static Location<'static>,
    ) -> impl Future<Output = Result<T, InteractError>> + Send + 'static
    where
        F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        interact_owned(pool, f, location)
    }

    fn interact_blocking<F, T>(
        pool: &Pool,
        f: F,
        location: &'static Location<'static>,
    ) -> Result<T, InteractError>
    where
        F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>,
    {
        let conn = pool.get_blocking_at(location)?;
        let mut guard = conn.lock();
        Ok(f(&mut guard)?)
    }
}

impl SqlitePool for Pool {
    #[track_caller]
    fn interact<F, T>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<T, InteractError>> + Send + 'static
    where
        F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        interact_owned(self.clone(), f, Location::caller())
    }

    #[track_caller]
    fn interact_blocking<F, T>(&self, f: F) -> Result<T, InteractError>
    where
        F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>,
    {
        <SqliteManager as pool_core::Interact>::interact_blocking(self, f, Location::caller())
    }
}

/// Runs `f` on a pooled connection, rerunning it with jittered backoff while it fails with a
/// transient error (`SQLITE_BUSY`, `SQLITE_LOCKED`, I/O errors: see [`classify`] and
/// [`InteractError::class`]), as `policy` allows. Each attempt gets a connection from the pool.
///
/// `f` should be one transaction, so a failed attempt leaves nothing behind (a transaction it
/// leaves open is rolled back by the pool anyway).
///
/// ```
/// use pool_sqlite::{retry, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = pool_sqlite::pool("sqlite::memory:", 4)?;
/// let n: i64 = retry(&pool, &RetryPolicy::default(), |conn| {
///     conn.query_row("SELECT 6 * 7", [], |row| row.get(0))
/// })
/// .await?;
/// assert_eq!(n, 42);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// The last attempt's error, or the first non-transient one.
///
/// # Cancel safety
/// As [`SqlitePool::interact`].
pub async fn retry<F, T>(pool: &Pool, policy: &RetryPolicy, f: F) -> Result<T, InteractError>
where
    F: Fn(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + Sync + 'static,
    T: Send + 'static,
{
    let f = Arc::new(f);
    pool_core::retry(policy, InteractError::class, || {
        let f = Arc::clone(&f);
        pool.interact(move |conn| f(conn))
    })
    .await
}

/// The blocking [`retry`]: runs `f` on a pooled connection on the calling thread, rerunning it
/// while it fails with a transient error, as `policy` allows.
///
/// # Errors
/// The last attempt's error, or the first non-transient one.
///
/// # Panics
/// A panic of `f` propagates; that connection is closed, not reused.
pub fn retry_blocking<F, T>(pool: &Pool, policy: &RetryPolicy, mut f: F) -> Result<T, InteractError>
where
    F: FnMut(&mut rusqlite::Connection) -> rusqlite::Result<T>,
{
    pool_core::retry_blocking(policy, InteractError::class, || {
        pool.interact_blocking(&mut f)
    })
}
