//! Configuration errors, error classification and retries.

use std::future::Future;

use pool_core::{ErrorClass, PoolError, RetryPolicy};
use tokio_postgres::error::SqlState;

/// A configuration that cannot be used. It never contains the password.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// tokio-postgres could not parse the connection string (the driver's error is the `source`).
    #[error("invalid PostgreSQL connection string")]
    Url(#[source] tokio_postgres::Error),
    /// The pool settings were rejected.
    #[error("invalid pool settings")]
    Pool(#[source] pool_core::BuildError),
    /// The `pgbouncer` parameter of the connection string is not `true`/`false` (or `1`/`0`,
    /// `yes`/`no`, `on`/`off`).
    #[error("invalid `pgbouncer` parameter: expected true or false")]
    PgBouncerFlag,
    /// PgBouncer mode with startup `options` (e.g. `-c search_path=…`): PgBouncer refuses them
    /// (SQLSTATE 08P01), and a session `SET` would leak between its clients. Set the parameter
    /// on the role or database instead (`ALTER ROLE app SET search_path = app, public`), or in
    /// PgBouncer's `[databases]` entry (`connect_query`), or qualify names with their schema.
    #[error(
        "startup `options` (e.g. search_path) cannot be used behind PgBouncer: set them with \
         ALTER ROLE/ALTER DATABASE … SET, or PgBouncer's connect_query"
    )]
    PgBouncerStartupOptions,
    /// An environment variable read by [`Settings::from_env`](crate::Settings::from_env) has a
    /// value that does not fit its setting (the error names the variable).
    #[error(transparent)]
    Env(#[from] pool_core::EnvError),
    /// [`Settings`](crate::Settings) names no server: neither `url` nor `host` is set.
    #[error("no PostgreSQL server given: set `url` or `host`")]
    NoServer,
    /// [`Settings`](crate::Settings) sets `host` or `port` both in `url` and on its own (hosts
    /// and ports are lists in PostgreSQL connection strings, so one cannot override the
    /// other).
    #[error("`{0}` is given both in `url` and on its own: keep one")]
    SetTwice(&'static str),
    /// The TLS settings cannot be used: the CA file cannot be read or holds no certificate
    /// rustls accepts, or no rustls `CryptoProvider` is installed (feature `rustls`).
    #[error("TLS settings: {0}")]
    Tls(String),
}

/// Sorts a driver error into the classes [`pool_core::retry`] acts on.
///
/// | class | PostgreSQL |
/// |---|---|
/// | `UniqueViolation` | SQLSTATE `23505` |
/// | `Deadlock` | `40P01` deadlock detected, `40001` serialization failure |
/// | `ConnectionLost` | the connection is closed, an I/O error, class `08` (connection exception), `57P01` admin shutdown, `57P02` crash shutdown, `57P03` cannot connect now |
/// | `Other` | everything else |
pub fn classify(err: &tokio_postgres::Error) -> ErrorClass {
    if let Some(code) = err.code() {
        return if *code == SqlState::UNIQUE_VIOLATION {
            ErrorClass::UniqueViolation
        } else if *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
        {
            ErrorClass::Deadlock
        } else if code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
        {
            ErrorClass::ConnectionLost
        } else {
            ErrorClass::Other
        };
    }
    if err.is_closed() || has_io_source(err) {
        ErrorClass::ConnectionLost
    } else {
        ErrorClass::Other
    }
}

fn has_io_source(err: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// [`classify`] for the pool's error: the driver error inside it decides; a pool that fails fast
/// because the database is down ([`PoolError::Unavailable`]) counts as `ConnectionLost`.
pub fn classify_pool_error(err: &PoolError<tokio_postgres::Error>) -> ErrorClass {
    match err {
        PoolError::Unavailable { .. } => ErrorClass::ConnectionLost,
        other => other.backend().map_or(ErrorClass::Other, classify),
    }
}

/// Runs a unit of work on a fresh pooled connection, and again on another fresh one, with
/// jittered backoff, while it fails with a deadlock, a serialization failure, a lost connection
/// or a database that cannot be reached ([`classify`]), up to `policy.max_attempts` attempts in
/// all. The same shape in every backend: `retry(&pool, &policy, |conn| …)`.
///
/// `work` must redo the whole unit (begin, …, commit), since the failed attempt was rolled back.
/// Inside it, `?` turns both a driver error and a pool error into [`WorkError`](crate::WorkError).
///
/// # Errors
///
/// The last attempt's error, or the first one that is not transient.
///
/// ```no_run
/// # async fn demo(pool: pool_postgres::Pool) -> Result<(), Box<dyn std::error::Error>> {
/// let policy = pool_postgres::RetryPolicy::default();
/// let n: i64 = pool_postgres::retry(&pool, &policy, |client| async move {
///     client
///         .batch_execute("BEGIN; UPDATE account SET n = n + 1 WHERE id = 1; COMMIT")
///         .await?;
///     Ok(client.query_one("SELECT n FROM account WHERE id = 1", &[]).await?.get(0))
/// })
/// .await?;
/// # let _ = n; Ok(()) }
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
