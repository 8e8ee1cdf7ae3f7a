//! Configuration errors, error classification and retries.

use std::future::Future;

use mysql_async::{DriverError, Error};
use pool_core::{ErrorClass, PoolError, RetryPolicy};

/// A configuration that cannot be used. It never contains the password.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// mysql_async could not parse the URL (the driver's error is the `source`).
    #[error("invalid MySQL connection URL")]
    Url(#[source] mysql_async::UrlError),
    /// The pool settings were rejected.
    #[error("invalid pool settings")]
    Pool(#[source] pool_core::BuildError),
    /// An environment variable read by [`Settings::from_env`](crate::Settings::from_env) has a
    /// value that does not fit its setting (the error names the variable).
    #[error(transparent)]
    Env(#[from] pool_core::EnvError),
    /// [`Settings`](crate::Settings) names no server: neither `url` nor `host` is set.
    #[error("no MySQL server given: set `url` or `host`")]
    NoServer,
}

/// Sorts a driver error into the classes [`pool_core::retry`] acts on.
///
/// | class | MySQL / MariaDB |
/// |---|---|
/// | `UniqueViolation` | 1062 `ER_DUP_ENTRY`, 1586 `ER_DUP_ENTRY_WITH_KEY_NAME` |
/// | `Deadlock` | 1213 `ER_LOCK_DEADLOCK`, 1205 `ER_LOCK_WAIT_TIMEOUT` |
/// | `ConnectionLost` | an I/O error, the driver's `ConnectionClosed`, 2006 gone away, 2013 lost, 1053 shutdown in progress, 1927 connection killed, 4031 inactivity disconnect |
/// | `Other` | everything else |
pub fn classify(err: &Error) -> ErrorClass {
    match err {
        Error::Server(e) => match e.code {
            1062 | 1586 => ErrorClass::UniqueViolation,
            1213 | 1205 => ErrorClass::Deadlock,
            2006 | 2013 | 1053 | 1927 | 4031 => ErrorClass::ConnectionLost,
            _ => ErrorClass::Other,
        },
        Error::Io(_) | Error::Driver(DriverError::ConnectionClosed) => ErrorClass::ConnectionLost,
        _ => ErrorClass::Other,
    }
}

/// [`classify`] for the pool's error: the driver error inside it decides; a pool that fails fast
/// because the database is down ([`PoolError::Unavailable`]) counts as `ConnectionLost`.
pub fn classify_pool_error(err: &PoolError<Error>) -> ErrorClass {
    match err {
        PoolError::Unavailable { .. } => ErrorClass::ConnectionLost,
        other => other.backend().map_or(ErrorClass::Other, classify),
    }
}

/// Runs a unit of work on a fresh pooled connection, and again on another fresh one, with
/// jittered backoff, while it fails with a deadlock, a lock wait timeout, a lost connection or a
/// database that cannot be reached ([`classify`]), up to `policy.max_attempts` attempts in all.
/// The same shape in every backend: `retry(&pool, &policy, |conn| …)`.
///
/// `work` must redo the whole unit, since the failed attempt was rolled back. Inside it, `?`
/// turns both a driver error and a pool error into [`WorkError`](crate::WorkError).
///
/// # Errors
///
/// The last attempt's error, or the first one that is not transient.
///
/// ```no_run
/// # async fn demo(pool: pool_mysql::Pool) -> Result<(), Box<dyn std::error::Error>> {
/// use pool_mysql::mysql_async::prelude::*;
///
/// let policy = pool_mysql::RetryPolicy::default();
/// pool_mysql::retry(&pool, &policy, |mut conn| async move {
///     conn.query_drop("UPDATE account SET n = n + 1 WHERE id = 1").await?;
///     Ok(())
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn retry<T, F, Fut>(
    pool: &crate::Pool,
    policy: &RetryPolicy,
    work: F,
) -> Result<T, crate::WorkError>
where
    F: FnMut(crate::PooledConn) -> Fut,
    Fut: Future<Output = Result<T, crate::WorkError>>,
{
    pool.retry(policy, classify, work).await
}
