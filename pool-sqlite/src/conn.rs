//! The pooled connection: a `rusqlite::Connection` behind a mutex, usable from threads (`lock`)
//! and from async code (`interact`, on tokio's blocking threads).

use std::any::Any;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use rusqlite::Connection;

/// Why [`SqliteConn::interact`] or one of the pool helpers ([`SqlitePool`](crate::SqlitePool),
/// [`retry`](crate::retry)) failed.
///
/// `Display` never repeats the inner error: the transparent variants show the inner error's own
/// message and source chain.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum InteractError {
    /// The closure panicked. The connection was marked broken (the pool closes it when it is
    /// returned); the pool itself is unaffected.
    #[error("the closure run on the SQLite connection panicked: {message}")]
    Panic {
        /// The panic message, when the payload was a string.
        message: String,
    },
    /// The blocking task was cancelled before it ran: the tokio runtime is shutting down.
    #[error("the blocking task was cancelled (the tokio runtime is shutting down)")]
    Aborted,
    /// The closure's own SQLite error (pool helpers only; [`SqliteConn::interact`] returns the
    /// closure's result untouched).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// No connection could be had from the pool (pool helpers only).
    #[error(transparent)]
    Pool(#[from] crate::Error),
}

impl InteractError {
    /// Classifies this error for [`pool_core::retry`]: SQLite errors by [`classify`](crate::classify),
    /// failed connects by their driver error, everything else (timeouts, panics) as
    /// [`Other`](pool_core::ErrorClass::Other).
    pub fn class(&self) -> pool_core::ErrorClass {
        match self {
            InteractError::Sqlite(e) => crate::classify(e),
            InteractError::Pool(e) if e.is_unavailable() => pool_core::ErrorClass::ConnectionLost,
            InteractError::Pool(e) => e
                .backend()
                .map_or(pool_core::ErrorClass::Other, crate::classify),
            _ => pool_core::ErrorClass::Other,
        }
    }
}

/// A failure of the blocking task itself (not of the work it ran).
#[derive(Debug)]
pub(crate) enum TaskFailure {
    Panicked(String),
    Cancelled,
}

impl From<TaskFailure> for InteractError {
    fn from(failure: TaskFailure) -> Self {
        match failure {
            TaskFailure::Panicked(message) => InteractError::Panic { message },
            TaskFailure::Cancelled => InteractError::Aborted,
        }
    }
}

impl From<TaskFailure> for rusqlite::Error {
    /// Manager futures must fail with a driver error: a panic in the init hook, or a runtime
    /// shutting down under a connect, becomes a generic `SQLITE_ERROR` carrying the reason.
    fn from(failure: TaskFailure) -> Self {
        let (code, message) = match failure {
            TaskFailure::Panicked(msg) => (
                rusqlite::ffi::SQLITE_ERROR,
                format!("pool-sqlite: panicked while opening or checking a connection: {msg}"),
            ),
            TaskFailure::Cancelled => (
                rusqlite::ffi::SQLITE_ABORT,
                "pool-sqlite: blocking task cancelled (tokio runtime shutting down)".to_owned(),
            ),
        };
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some(message))
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

/// Runs blocking work without blocking an async runtime: on tokio's blocking thread pool when
/// called inside a runtime, inline otherwise (a plain thread using the blocking API). Panics of
/// `f` are caught in both cases.
pub(crate) async fn run_blocking<T, F>(f: F) -> Result<T, TaskFailure>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.spawn_blocking(f).await.map_err(|e| {
            if e.is_panic() {
                TaskFailure::Panicked(panic_message(&*e.into_panic()))
            } else {
                TaskFailure::Cancelled
            }
        }),
        Err(_) => panic::catch_unwind(AssertUnwindSafe(f))
            .map_err(|payload| TaskFailure::Panicked(panic_message(&*payload))),
    }
}

/// A pooled SQLite connection: a [`rusqlite::Connection`] behind a mutex, plus a "broken" flag.
///
/// - From threads (blocking API): [`lock`](SqliteConn::lock) it and use the connection directly.
/// - From async code: [`interact`](SqliteConn::interact) runs a closure on tokio's blocking
///   threads, so the runtime never waits on SQLite.
///
/// The pool closes the connection instead of reusing it when a closure panicked, a thread
/// panicked while holding the lock, an `interact` was cancelled while its closure still runs, or
/// a statement was left stepping (leaked half-read). A connection returned inside an open
/// transaction is rolled back before its next use.
pub struct SqliteConn {
    conn: Arc<Mutex<Connection>>,
    broken: AtomicBool,
}

impl SqliteConn {
    pub(crate) fn new(conn: Connection) -> Self {
        SqliteConn {
            conn: Arc::new(Mutex::new(conn)),
            broken: AtomicBool::new(false),
        }
    }

    /// Locks the connection for direct, blocking use (threads).
    ///
    /// The lock is free whenever you hold the pooled connection, unless an `interact` future was
    /// dropped while its closure still runs; then this waits for that closure. Do not call it on
    /// an async runtime's threads: use [`interact`](SqliteConn::interact) there.
    pub fn lock(&self) -> SqliteGuard<'_> {
        SqliteGuard {
            guard: self.conn.lock(),
            broken: &self.broken,
        }
    }

    /// Locks the connection if no closure is running on it.
    pub fn try_lock(&self) -> Option<SqliteGuard<'_>> {
        self.conn.try_lock().map(|guard| SqliteGuard {
            guard,
            broken: &self.broken,
        })
    }

    /// Runs `f` with the connection on tokio's blocking thread pool and returns its result,
    /// without blocking the async runtime. Outside a tokio runtime `f` runs inline.
    ///
    /// # Errors
    /// [`InteractError::Panic`] if `f` panicked: the connection is then marked broken and the
    /// pool closes it when it is returned. [`InteractError::Aborted`] if the runtime shut down
    /// before `f` ran. Errors of `f` itself are in its result `R`.
    ///
    /// # Cancel safety
    /// `f` cannot be stopped once started. If this future is dropped, `f` runs to completion in
    /// the background and the connection, returned meanwhile, is closed instead of reused (its
    /// state is unknown).
    pub async fn interact<F, R>(&self, f: F) -> Result<R, InteractError>
    where
        F: FnOnce(&mut Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let result = run_blocking(move || {
            let mut guard = conn.lock();
            f(&mut guard)
        })
        .await;
        result.map_err(|failure| {
            self.broken.store(true, Ordering::Release);
            InteractError::from(failure)
        })
    }

    /// No I/O: marked broken, still in use by an orphaned closure (a cancelled `interact`, a
    /// check still running after a timeout), or with a statement left stepping (a leaked,
    /// half-read `Rows`/`Statement`: it keeps its read transaction, so the next user would read
    /// an old snapshot, although `is_autocommit()` is true; rusqlite cannot reset a statement it
    /// does not own, so the connection is closed).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
            || Arc::strong_count(&self.conn) > 1
            || self.conn.try_lock().is_none_or(|c| c.is_busy())
    }

    /// No I/O: inside a transaction (or locked, so unknown).
    pub(crate) fn needs_reset(&self) -> bool {
        self.conn.try_lock().is_none_or(|c| !c.is_autocommit())
    }

    pub(crate) fn shared(&self) -> Arc<Mutex<Connection>> {
        Arc::clone(&self.conn)
    }
}

impl fmt::Debug for SqliteConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SqliteConn");
        match self.conn.try_lock() {
            Some(c) => d
                .field("path", &c.path())
                .field("autocommit", &c.is_autocommit()),
            None => d.field("locked", &true),
        };
        d.field("broken", &self.broken.load(Ordering::Relaxed))
            .finish()
    }
}

/// The locked connection, from [`SqliteConn::lock`]. Dereferences to [`rusqlite::Connection`].
///
/// Dropped while the thread panics, it marks the connection broken, so the pool closes it
/// instead of handing out a connection in an unknown state (a mutex poisoning equivalent).
pub struct SqliteGuard<'a> {
    guard: MutexGuard<'a, Connection>,
    broken: &'a AtomicBool,
}

impl Deref for SqliteGuard<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.guard
    }
}

impl DerefMut for SqliteGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.guard
    }
}

impl Drop for SqliteGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.broken.store(true, Ordering::Release);
        }
    }
}

impl fmt::Debug for SqliteGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteGuard")
            .field("path", &self.guard.path())
            .field("autocommit", &self.guard.is_autocommit())
            .finish()
    }
}
