//! The trait a backend implements, and the metadata the pool passes to its checks.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Opens, checks, cleans and closes the connections of one database.
///
/// A backend (`pool-postgres`, `pool-mysql`, `pool-sqlite`, or your own) implements this trait;
/// the pool decides *when* each method runs:
///
/// | method | I/O | runs when |
/// |---|---|---|
/// | [`connect`](Manager::connect) | yes | the pool has reserved capacity for a new connection |
/// | [`is_broken`](Manager::is_broken) | **no** | at check-in (inside the guard's `Drop`) and at checkout |
/// | [`needs_reset`](Manager::needs_reset) | **no** | at check-in |
/// | [`reset`](Manager::reset) | yes | at the next checkout of a connection `needs_reset` flagged |
/// | [`validate`](Manager::validate) | yes | at checkout, only when idle longer than `validate_after_idle` |
/// | [`close`](Manager::close) | must not block | a connection leaves the pool for good |
///
/// No method is ever called while the pool's internal lock is held.
///
/// Under the async API (`Pool::get`), `connect` runs in a spawned tokio task, so it survives the
/// cancellation of the request that started it; `validate` and `reset` run in the requesting task.
/// Under the blocking API (`Pool::get_blocking`) all three are driven to completion on the calling
/// thread, so a manager meant for threads must return futures that need no runtime (as
/// `pool-sqlite`'s does); a manager whose futures need a tokio reactor is for the async API only.
pub trait Manager: Send + Sync + 'static {
    /// The connection type.
    type Connection: Send + 'static;
    /// The driver's error type, kept as the `source()` of pool errors.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection.
    ///
    /// The pool bounds it with `connect_timeout`.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// A cheap, synchronous probe: is this connection unusable? It must do no I/O.
    ///
    /// Called at check-in and at checkout. A broken connection is closed, never handed out.
    /// Default: `false`.
    fn is_broken(&self, conn: &mut Self::Connection, meta: &ConnMeta) -> bool {
        let _ = (conn, meta);
        false
    }

    /// A cheap, synchronous probe: does this connection carry session state (an open transaction,
    /// unread results) that must be cleaned before the next user gets it? It must do no I/O.
    ///
    /// Called at check-in. When it returns `true`, [`reset`](Manager::reset) runs before the
    /// connection is handed out again. Default: `false`.
    fn needs_reset(&self, conn: &mut Self::Connection) -> bool {
        let _ = conn;
        false
    }

    /// Cleans session state (`ROLLBACK`, `COM_RESET_CONNECTION`, …).
    ///
    /// Called at the next checkout of a connection that [`needs_reset`](Manager::needs_reset)
    /// flagged, bounded by `validate_timeout`. An error closes the connection and the request goes
    /// on with another one. Default: nothing to do.
    fn reset(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = conn;
        async { Ok(()) }
    }

    /// A round-trip health check (a ping).
    ///
    /// Called at checkout only when the connection has been idle for longer than
    /// `validate_after_idle`, bounded by `validate_timeout`. An error closes the connection and the
    /// request goes on with another one. Default: always healthy.
    fn validate(
        &self,
        conn: &mut Self::Connection,
        meta: &ConnMeta,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = (conn, meta);
        async { Ok(()) }
    }

    /// Whether a failed connect is worth retrying (server down, connection refused) or final (wrong
    /// password, unknown database). Final errors are returned to the caller at once.
    /// Default: `true`.
    fn is_retryable(&self, err: &Self::Error) -> bool {
        let _ = err;
        true
    }

    /// A connection leaves the pool for good. Must not block; it may spawn a task for an
    /// asynchronous goodbye when `tokio::runtime::Handle::try_current()` succeeds.
    /// Default: drops the connection.
    fn close(&self, conn: Self::Connection, reason: CloseReason) {
        let _ = reason;
        drop(conn);
    }
}

/// A [`Manager`] whose futures run to completion on a plain OS thread, without an async runtime
/// (they do their work when polled, or wake the thread that polls them), like `pool-sqlite`'s.
///
/// The thread front end ([`Pool::get_blocking`](crate::Pool::get_blocking), the blocking scopes)
/// drives the manager's futures on the calling thread, so it is only available for managers that
/// implement this marker. A manager whose futures need a tokio reactor (every async driver's)
/// must not implement it: using such a pool from a thread is then a compile error, not a "no
/// reactor" panic at run time.
///
/// ```compile_fail
/// # use pool_core::{Manager, Pool};
/// struct AsyncOnly;
/// impl Manager for AsyncOnly {
///     type Connection = ();
///     type Error = std::io::Error;
///     async fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
/// }
/// let pool = Pool::new(AsyncOnly, 1).unwrap();
/// let _ = pool.get_blocking(); // error: `AsyncOnly` is not a `BlockingManager`
/// ```
pub trait BlockingManager: Manager {}

/// Facts about one pooled connection, passed to the manager's checks.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    pub(crate) id: u64,
    pub(crate) created: Instant,
    pub(crate) last_used: Instant,
    pub(crate) uses: u64,
    pub(crate) expires: Option<Instant>,
    /// From this instant on, a checkout must look at the idle time (idle timeout, validation):
    /// `last_used` plus the shorter window, precomputed so the fast path only compares instants.
    pub(crate) check_at: Option<Instant>,
}

impl ConnMeta {
    pub(crate) fn new(
        id: u64,
        now: Instant,
        expires: Option<Instant>,
        window: Option<Duration>,
    ) -> Self {
        ConnMeta {
            id,
            created: now,
            last_used: now,
            uses: 0,
            expires,
            check_at: window.and_then(|w| now.checked_add(w)),
        }
    }

    /// Records a return to the pool at `now`.
    pub(crate) fn returned(&mut self, now: Instant, window: Option<Duration>) {
        self.uses += 1;
        self.last_used = now;
        self.check_at = window.and_then(|w| now.checked_add(w));
    }

    /// The connection's id, unique within its pool.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Time since the connection was opened.
    pub fn age(&self) -> Duration {
        Instant::now().saturating_duration_since(self.created)
    }

    /// Time since the connection was last returned to the pool (or opened, if never used).
    pub fn idle_for(&self) -> Duration {
        Instant::now().saturating_duration_since(self.last_used)
    }

    /// How many times the connection has been checked out and returned.
    pub fn uses(&self) -> u64 {
        self.uses
    }

    pub(crate) fn is_expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }
}

/// Why the pool closed a connection.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// [`Manager::is_broken`] said so, or its holder marked it broken.
    Broken,
    /// Older than `max_lifetime` (the stale timeout).
    Stale,
    /// Idle for longer than `idle_timeout`.
    Idle,
    /// Closed on request: `Pooled::close` or `Pool::close_idle`.
    Manual,
    /// Reclaimed from a holder by `Pool::reclaim_held`, closed when that holder let go.
    Leaked,
    /// [`Manager::validate`] failed or timed out.
    Invalid,
    /// [`Manager::reset`] failed or timed out.
    ResetFailed,
    /// Its holder panicked, so its state is unknown.
    Panicked,
    /// The pool was closed.
    Closed,
    /// The pool was resized below its current size.
    Resized,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseReason::Broken => "broken",
            CloseReason::Stale => "stale",
            CloseReason::Idle => "idle",
            CloseReason::Manual => "manual",
            CloseReason::Leaked => "leaked",
            CloseReason::Invalid => "invalid",
            CloseReason::ResetFailed => "reset failed",
            CloseReason::Panicked => "panicked",
            CloseReason::Closed => "pool closed",
            CloseReason::Resized => "resized",
        })
    }
}
