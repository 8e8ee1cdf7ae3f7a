//! What every backend driver implements: one operation of the load, through one pool.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use pool_core::{Manager, Pool, PoolError};
use serde::Serialize;

use crate::runner::Load;

/// The name of our pool in every table.
pub(crate) const OURS: &str = "ours";
/// The 40-line pool (`pool_benches::baseline`): a semaphore and a `Mutex<Vec>` of connections
/// opened up front (a `Mutex<Vec>` and a `Condvar` for threads).
pub(crate) const BASELINE: &str = "baseline";
/// Ours with the backend's reset-on-checkout switched off (what the peers do).
pub(crate) const OURS_NO_RESET: &str = "ours-noreset";

/// Time spent getting a connection, then using it, for one operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) wait: Duration,
    pub(crate) query: Duration,
}

/// Why an operation failed, coarse enough to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorKind {
    /// No connection became free within the pool's wait timeout.
    PoolTimeout,
    /// Opening a connection timed out.
    ConnectTimeout,
    /// Opening a connection failed.
    Connect,
    /// The pool fails fast because connects keep failing.
    Unavailable,
    /// The pool was closed.
    PoolClosed,
    /// SQLite's database was locked past its busy timeout.
    Busy,
    /// The statement itself failed.
    Query,
    /// The whole operation exceeded loadgen's own bound.
    OpTimeout,
    /// Anything else (a panicked blocking task, an unknown pool error).
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::PoolTimeout => "pool timeout",
            ErrorKind::ConnectTimeout => "connect timeout",
            ErrorKind::Connect => "connect error",
            ErrorKind::Unavailable => "database unavailable",
            ErrorKind::PoolClosed => "pool closed",
            ErrorKind::Busy => "database busy",
            ErrorKind::Query => "query error",
            ErrorKind::OpTimeout => "operation timeout",
            ErrorKind::Other => "other",
        })
    }
}

/// A failed operation: its kind and the error's text (kept once per kind).
#[derive(Debug)]
pub(crate) struct OpError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

impl OpError {
    pub(crate) fn new(kind: ErrorKind, err: &(dyn Error + 'static)) -> Self {
        OpError {
            kind,
            message: chain(err),
        }
    }

    pub(crate) fn msg(kind: ErrorKind, message: impl Into<String>) -> Self {
        OpError {
            kind,
            message: message.into(),
        }
    }

    /// Classifies an error of our pool.
    pub(crate) fn from_pool<E: Error + 'static>(err: &PoolError<E>) -> Self {
        let kind = match err {
            PoolError::Timeout { phase, .. } => match phase {
                pool_core::Phase::Wait => ErrorKind::PoolTimeout,
                _ => ErrorKind::ConnectTimeout,
            },
            PoolError::Backend(_) => ErrorKind::Connect,
            PoolError::Unavailable { .. } => ErrorKind::Unavailable,
            PoolError::Closed => ErrorKind::PoolClosed,
            _ => ErrorKind::Other,
        };
        OpError::new(kind, err)
    }
}

/// `err` and its sources, joined by ": ".
pub(crate) fn chain(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// One pool under load by tasks: `op` gets a connection, runs one point read (`read`) or one
/// small write on row `key`, and returns the connection.
pub(crate) trait Target: Send + Sync + 'static {
    /// Runs one operation.
    fn op(&self, read: bool, key: i64) -> impl Future<Output = Result<Timing, OpError>> + Send;

    /// Status and counters, for pools that have them (ours).
    fn pool_state(&self) -> Option<PoolState> {
        None
    }
}

/// One pool under load by OS threads (`--threads`).
pub(crate) trait BlockingTarget: Send + Sync + 'static {
    /// Runs one operation on the calling thread.
    fn op(&self, read: bool, key: i64) -> Result<Timing, OpError>;

    /// Status and counters, for pools that have them (ours).
    fn pool_state(&self) -> Option<PoolState> {
        None
    }
}

/// A snapshot of our pool's `status()` and `metrics()`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct PoolState {
    pub(crate) status: BTreeMap<&'static str, usize>,
    pub(crate) metrics: BTreeMap<&'static str, u64>,
    pub(crate) wait_time_ms: f64,
}

impl PoolState {
    pub(crate) fn of<M: Manager>(pool: &Pool<M>) -> Self {
        let s = pool.status();
        let m = pool.metrics();
        PoolState {
            status: BTreeMap::from([
                ("max_size", s.max_size),
                ("size", s.size),
                ("idle", s.idle),
                ("in_use", s.in_use),
                ("opening", s.opening),
                ("waiting", s.waiting),
            ]),
            metrics: BTreeMap::from([
                ("gets", m.gets),
                ("waits", m.waits),
                ("timeouts", m.timeouts),
                ("connects", m.connects),
                ("connect_failures", m.connect_failures),
                ("closed_broken", m.closed_broken),
                ("closed_stale", m.closed_stale),
                ("closed_idle", m.closed_idle),
                ("closed_manual", m.closed_manual),
                ("closed_leaked", m.closed_leaked),
                ("closed_invalid", m.closed_invalid),
                ("closed_reset_failed", m.closed_reset_failed),
                ("closed_panicked", m.closed_panicked),
            ]),
            wait_time_ms: m.wait_time.as_secs_f64() * 1_000.0,
        }
    }

    pub(crate) fn status(&self, key: &str) -> usize {
        self.status.get(key).copied().unwrap_or(0)
    }
}

/// Our pool for `manager`, configured from the load's options.
pub(crate) fn build_ours<M: Manager>(
    manager: M,
    load: &Load,
) -> Result<Pool<M>, pool_core::BuildError> {
    Pool::builder(manager)
        .max_size(load.pool_size)
        .wait_timeout(load.op_timeout)
        .connect_timeout(load.connect_timeout)
        .name("loadgen")
        .build()
}

/// Gets and returns one connection of our pool, bounded by the connect timeout, so that an
/// unreachable database is reported before the load starts.
pub(crate) async fn check_ours<M: Manager>(pool: &Pool<M>, load: &Load) -> Result<(), String> {
    match tokio::time::timeout(load.connect_timeout, pool.get_timeout(load.connect_timeout)).await {
        Ok(Ok(conn)) => {
            drop(conn);
            Ok(())
        }
        Ok(Err(e)) => Err(chain(&e)),
        Err(_) => Err(format!(
            "no connection within {:?} (connect timeout)",
            load.connect_timeout
        )),
    }
}
