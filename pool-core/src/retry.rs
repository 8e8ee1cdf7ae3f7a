//! Classifying database errors and rerunning a unit of work on the transient ones (oslo.db's
//! exception filters and `wrap_db_retry`).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::{Manager, Pool, PoolError, Pooled};

/// What kind of failure a database error is, across backends. Each backend crate provides a
/// `classify` function mapping its driver's errors to this.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A unique or primary-key constraint was violated. Not retried.
    UniqueViolation,
    /// A deadlock, serialization failure or lock timeout: rerunning the transaction may succeed.
    Deadlock,
    /// The connection was lost (server restart, killed session, network): rerunning with a fresh
    /// connection may succeed.
    ConnectionLost,
    /// Anything else. Not retried.
    Other,
}

impl ErrorClass {
    /// Whether [`retry`] reruns work that failed this way.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorClass::Deadlock | ErrorClass::ConnectionLost)
    }
}

/// How [`retry`] and [`retry_blocking`] rerun work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included. Default: 5.
    pub max_attempts: u32,
    /// Delay before the first rerun; doubles each time. Default: 50 ms.
    pub base_delay: Duration,
    /// Cap of the delay. Default: 2 s.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// A policy with `max_attempts` attempts and the default delays.
    pub fn attempts(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts,
            ..RetryPolicy::default()
        }
    }

    /// Sets the base and maximum delay.
    pub fn delays(mut self, base: Duration, max: Duration) -> Self {
        self.base_delay = base;
        self.max_delay = max;
        self
    }

    /// Whether attempt `attempt` (1-based), which failed with an error of `class`, is rerun,
    /// and after which delay.
    fn rerun_after(&self, attempt: u32, class: ErrorClass) -> Option<Duration> {
        if attempt >= self.max_attempts || !class.is_transient() {
            return None;
        }
        let delay = self.delay(attempt);
        tracing::debug!(
            attempt,
            ?delay,
            ?class,
            "retrying after a transient database error"
        );
        Some(delay)
    }

    /// The delay before rerun `n` (1-based): exponential, capped, with "equal jitter" (between
    /// half and all of the step), so that clients that failed together do not retry together.
    pub fn delay(&self, n: u32) -> Duration {
        let step = self
            .base_delay
            .saturating_mul(1u32 << n.saturating_sub(1).min(20))
            .min(self.max_delay);
        let half = step / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// Runs `op`, rerunning it while it fails with a transient error ([`ErrorClass::is_transient`])
/// and attempts remain, sleeping [`RetryPolicy::delay`] between attempts. Returns the last error
/// otherwise. `op` must be a whole unit of work (a transaction), safe to rerun.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use pool_core::{retry, ErrorClass, RetryPolicy};
/// use std::time::Duration;
///
/// let mut calls = 0;
/// let policy = RetryPolicy::attempts(3).delays(Duration::from_millis(1), Duration::from_millis(2));
/// let out: Result<u32, &str> = retry(
///     &policy,
///     |e: &&str| if *e == "deadlock" { ErrorClass::Deadlock } else { ErrorClass::Other },
///     || {
///         calls += 1;
///         let result = if calls < 3 { Err("deadlock") } else { Ok(7) };
///         async move { result }
///     },
/// )
/// .await;
/// assert_eq!(out, Ok(7));
/// assert_eq!(calls, 3);
/// # }
/// ```
///
/// # Errors
/// The error of the last attempt.
pub async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    classify: impl Fn(&E) -> ErrorClass,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let delay = policy.rerun_after(attempt, classify(&e)).ok_or(e)?;
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

/// The error of a unit of work run by [`Pool::retry`]: no connection could be had, or the work
/// itself failed with the driver's error `E`. `?` converts both into it inside the work.
#[derive(Debug)]
pub enum WorkError<E> {
    /// Getting a connection failed.
    Pool(PoolError<E>),
    /// The work failed with the driver's error.
    Db(E),
}

impl<E> WorkError<E> {
    /// Sorts this error with the backend's `classify` for the driver's errors: a pool that could
    /// not reach the database ([`PoolError::is_unavailable`]) is a lost connection.
    pub fn class(&self, classify: impl Fn(&E) -> ErrorClass) -> ErrorClass {
        match self {
            WorkError::Db(e) => classify(e),
            WorkError::Pool(p) if p.is_unavailable() => ErrorClass::ConnectionLost,
            WorkError::Pool(p) => p.backend().map_or(ErrorClass::Other, classify),
        }
    }

    /// The driver's error behind this one, if there is one.
    pub fn db(&self) -> Option<&E> {
        match self {
            WorkError::Db(e) => Some(e),
            WorkError::Pool(p) => p.backend(),
        }
    }
}

impl<E> From<PoolError<E>> for WorkError<E> {
    fn from(e: PoolError<E>) -> Self {
        WorkError::Pool(e)
    }
}

impl<E: std::error::Error> From<E> for WorkError<E> {
    fn from(e: E) -> Self {
        WorkError::Db(e)
    }
}

impl<E: fmt::Display> fmt::Display for WorkError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkError::Pool(e) => fmt::Display::fmt(e, f),
            WorkError::Db(_) => f.write_str("the database returned an error"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for WorkError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WorkError::Pool(e) => e.source(),
            WorkError::Db(e) => Some(e),
        }
    }
}

impl<M: Manager> Pool<M> {
    /// Runs a unit of work on a fresh connection, and again on another fresh one, with jittered
    /// backoff, while it fails with a transient error (a deadlock, a serialization failure, a
    /// lost connection or a database that cannot be reached, as `classify` sorts the driver's
    /// errors), up to `policy.max_attempts` attempts in all. `work` must redo the whole unit
    /// (begin, …, commit): the failed attempt's transaction was rolled back, and its connection
    /// goes back to the pool (or is closed, if broken) before the next attempt takes one.
    ///
    /// Each backend wraps this with its own `classify` as `retry(&pool, &policy, work)`.
    ///
    /// # Errors
    /// The last attempt's error, or the first one that is not transient.
    pub async fn retry<T, F, Fut>(
        &self,
        policy: &RetryPolicy,
        classify: impl Fn(&M::Error) -> ErrorClass,
        mut work: F,
    ) -> Result<T, WorkError<M::Error>>
    where
        F: FnMut(Pooled<M>) -> Fut,
        Fut: Future<Output = Result<T, WorkError<M::Error>>>,
    {
        let mut attempt = 1;
        loop {
            let out = match self.get().await {
                Ok(conn) => work(conn).await,
                Err(e) => Err(WorkError::Pool(e)),
            };
            match out {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let delay = policy.rerun_after(attempt, e.class(&classify)).ok_or(e)?;
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// [`retry`] for threads: sleeps the thread between attempts.
///
/// # Errors
/// The error of the last attempt.
pub fn retry_blocking<T, E>(
    policy: &RetryPolicy,
    classify: impl Fn(&E) -> ErrorClass,
    mut op: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut attempt = 1;
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) => {
                let delay = policy.rerun_after(attempt, classify(&e)).ok_or(e)?;
                std::thread::sleep(delay);
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy::default().delays(Duration::from_millis(10), Duration::from_millis(40));
        for _ in 0..100 {
            let d1 = p.delay(1);
            assert!(d1 >= Duration::from_millis(5) && d1 <= Duration::from_millis(10));
            let d5 = p.delay(5);
            assert!(d5 >= Duration::from_millis(20) && d5 <= Duration::from_millis(40));
        }
    }

    #[test]
    fn blocking_retry_stops_on_permanent_error() {
        let p = RetryPolicy::attempts(5).delays(Duration::from_millis(1), Duration::from_millis(1));
        let mut calls = 0;
        let r: Result<(), ErrorClass> = retry_blocking(
            &p,
            |e| *e,
            || {
                calls += 1;
                Err(if calls == 1 {
                    ErrorClass::ConnectionLost
                } else {
                    ErrorClass::UniqueViolation
                })
            },
        );
        assert_eq!(r, Err(ErrorClass::UniqueViolation));
        assert_eq!(calls, 2);
    }

    #[test]
    fn blocking_retry_gives_up_after_max_attempts() {
        let p = RetryPolicy::attempts(3).delays(Duration::from_millis(1), Duration::from_millis(1));
        let mut calls = 0;
        let r: Result<(), ErrorClass> = retry_blocking(
            &p,
            |e| *e,
            || {
                calls += 1;
                Err(ErrorClass::Deadlock)
            },
        );
        assert_eq!(r, Err(ErrorClass::Deadlock));
        assert_eq!(calls, 3);
    }
}
