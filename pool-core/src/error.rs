//! Errors of the pool and of its configuration.

use std::fmt;
use std::time::Duration;

/// The phase of an acquisition that ran out of time.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a connection to be returned or for capacity to open one.
    Wait,
    /// Opening a new connection (`Manager::connect`).
    Connect,
    /// Checking an idle connection (`Manager::validate`).
    Validate,
    /// Cleaning a dirty connection (`Manager::reset`).
    Reset,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Wait => "waiting for a connection",
            Phase::Connect => "connecting",
            Phase::Validate => "validating a connection",
            Phase::Reset => "resetting a connection",
        })
    }
}

/// Why a connection could not be had.
///
/// `E` is the driver's error. `Display` describes the pool's side only; the driver's error is
/// the [`source`](std::error::Error::source), so error reporters print each once.
#[non_exhaustive]
#[derive(Debug)]
pub enum PoolError<E> {
    /// The acquisition ran out of time in `phase`.
    Timeout {
        /// Which phase ran out of time.
        phase: Phase,
        /// How long the caller waited in all.
        waited: Duration,
        /// The last connect error seen by this request, if any.
        last_error: Option<E>,
    },
    /// Opening a connection failed with a driver error that retrying will not heal
    /// ([`Manager::is_retryable`](crate::Manager::is_retryable) said so: a wrong password, an
    /// unknown database, a bad setting).
    Backend(E),
    /// The database cannot be reached: this request's connects failed with errors worth
    /// retrying (connection refused, reset, the server shutting down) until its connect budget
    /// or deadline ran out (`last_error` is the last of them), or connects keep failing, so the
    /// pool fails fast instead of queueing this request behind a dead server (`last_error` is
    /// `None`). In the fail-fast case, after a backoff (100 ms doubling to 3.2 s) the next
    /// request that needs a connection probes the server again (and the reaper does, when
    /// `min_idle` is set); a successful connect ends the fail-fast period.
    ///
    /// [`PoolError::kind`] sorts this, and a [`PoolError::Timeout`] of a phase that talks to the
    /// server, as [`ErrorKind::Unavailable`]: match on that to treat an outage in one place.
    Unavailable {
        /// Failed connects: this request's attempts, or the pool's consecutive failures when
        /// failing fast.
        failures: u32,
        /// The last connect error of this request, if it made any attempt.
        last_error: Option<E>,
    },
    /// The pool was closed.
    Closed,
    /// `Pool::scoped` was called outside any scope of that pool.
    NoScope,
    /// The scope's connection is already borrowed by another part of the same scope.
    ScopeBusy,
    /// A [`GlobalPool`](crate::GlobalPool) was used before it was configured.
    NotConfigured,
}

/// What a [`PoolError`] means for the caller: one value per way to react, whatever variant
/// and phase carried it. [`PoolError::kind`] returns it.
///
/// ```
/// use pool_core::{ErrorKind, PoolError};
/// fn status_code<E>(e: &PoolError<E>) -> u16 {
///     match e.kind() {
///         ErrorKind::Unavailable => 503, // the database is down or not answering
///         ErrorKind::Exhausted => 503,   // every connection busy for the whole wait
///         ErrorKind::Rejected => 500,    // wrong password, unknown database: fix the config
///         _ => 500,
///     }
/// }
/// let down: PoolError<std::io::Error> = PoolError::Unavailable { failures: 3, last_error: None };
/// assert_eq!(status_code(&down), 503);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The database cannot be reached or does not answer: connects refused or failing
    /// ([`PoolError::Unavailable`]), or a connect, validation or reset that ran out of time or
    /// after which the call's deadline passed ([`PoolError::Timeout`] with a phase other than
    /// [`Phase::Wait`], or with a connect error on record). One outage, one kind.
    Unavailable,
    /// Every connection stayed busy for the whole wait, and no connect failed: the pool is too
    /// small for the load, or connections are held too long.
    Exhausted,
    /// The server refused the connection for a reason retrying will not heal (wrong password,
    /// unknown database): [`PoolError::Backend`].
    Rejected,
    /// The pool was closed.
    Closed,
    /// The pool was used in a way it does not allow: no scope, a busy scope, a global pool not
    /// configured yet.
    Misuse,
}

impl<E> PoolError<E> {
    /// The driver error behind this error, if there is one.
    pub fn backend(&self) -> Option<&E> {
        match self {
            PoolError::Backend(e) => Some(e),
            PoolError::Timeout { last_error, .. } | PoolError::Unavailable { last_error, .. } => {
                last_error.as_ref()
            }
            _ => None,
        }
    }

    /// What this error means for the caller (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            PoolError::Unavailable { .. } => ErrorKind::Unavailable,
            PoolError::Timeout {
                phase: Phase::Wait,
                last_error: None,
                ..
            } => ErrorKind::Exhausted,
            PoolError::Timeout { .. } => ErrorKind::Unavailable,
            PoolError::Backend(_) => ErrorKind::Rejected,
            PoolError::Closed => ErrorKind::Closed,
            PoolError::NoScope | PoolError::ScopeBusy | PoolError::NotConfigured => {
                ErrorKind::Misuse
            }
        }
    }

    /// Whether the database looks down: [`ErrorKind::Unavailable`].
    pub fn is_unavailable(&self) -> bool {
        self.kind() == ErrorKind::Unavailable
    }

    /// Whether this is a [`PoolError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, PoolError::Timeout { .. })
    }
}

impl<E> fmt::Display for PoolError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Timeout {
                phase,
                waited,
                last_error,
            } => {
                write!(f, "timed out {phase} after {waited:?}")?;
                if last_error.is_some() {
                    f.write_str(" (last connect error in source)")?;
                }
                Ok(())
            }
            PoolError::Backend(_) => f.write_str("could not open a database connection"),
            PoolError::Unavailable {
                failures,
                last_error: Some(_),
            } => write!(
                f,
                "database unavailable: {failures} connect attempt(s) failed"
            ),
            PoolError::Unavailable {
                failures,
                last_error: None,
            } => write!(
                f,
                "database unavailable: {failures} consecutive connects failed; failing fast"
            ),
            PoolError::Closed => f.write_str("the pool is closed"),
            PoolError::NoScope => f.write_str("no connection scope of this pool is active"),
            PoolError::ScopeBusy => {
                f.write_str("the scope's connection is already borrowed in this scope")
            }
            PoolError::NotConfigured => {
                f.write_str("the global pool is not configured yet (call `configure` at startup)")
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PoolError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.backend().map(|e| e as _)
    }
}

/// A configuration the pool cannot run with; returned by `Builder::build`.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// `max_size` was zero.
    ZeroMaxSize,
    /// `min_idle` was larger than `max_size`.
    MinIdleExceedsMaxSize {
        /// The requested minimum of idle connections.
        min_idle: usize,
        /// The requested maximum size.
        max_size: usize,
    },
    /// A duration that must be positive was zero.
    ZeroDuration {
        /// The setting's name.
        name: &'static str,
    },
    /// A setting was outside its allowed range.
    OutOfRange {
        /// The setting's name.
        name: &'static str,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroMaxSize => f.write_str("max_size must be at least 1"),
            BuildError::MinIdleExceedsMaxSize { min_idle, max_size } => write!(
                f,
                "min_idle ({min_idle}) must not exceed max_size ({max_size})"
            ),
            BuildError::ZeroDuration { name } => write!(f, "{name} must be greater than zero"),
            BuildError::OutOfRange { name } => write!(f, "{name} is out of its allowed range"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Why `Pool::resize` refused a new size.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResizeError {
    /// The new `max_size` was zero.
    ZeroMaxSize,
    /// The pool is closed.
    Closed,
}

impl fmt::Display for ResizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResizeError::ZeroMaxSize => f.write_str("max_size must be at least 1"),
            ResizeError::Closed => f.write_str("the pool is closed"),
        }
    }
}

impl std::error::Error for ResizeError {}
