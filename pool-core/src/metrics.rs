//! Point-in-time status and cumulative counters.

use std::thread::ThreadId;
use std::time::Duration;

/// A snapshot of the pool's occupancy, taken under its lock (so its fields agree with each other),
/// but it may be out of date by the time you read it.
///
/// `idle + in_use + opening == size` and `size <= max_size + excess` always hold; `excess` is zero
/// (so `size <= max_size`) except after `Pool::resize` shrank the pool below the connections then
/// checked out, until they come back and are closed. Connections reclaimed by
/// `Pool::reclaim_held` but not yet given back by their holders are counted in `reclaimed`, not
/// in `size`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// The configured maximum.
    pub max_size: usize,
    /// Connections counted against `max_size`: idle, in use, or being opened.
    pub size: usize,
    /// Connections idle in the pool.
    pub idle: usize,
    /// Connections checked out (including ones being checked before hand-out).
    pub in_use: usize,
    /// Connections being opened.
    pub opening: usize,
    /// Requests queued for a connection.
    pub waiting: usize,
    /// Connections reclaimed by `reclaim_held` whose holders still have them.
    pub reclaimed: usize,
    /// Connections over `max_size` after a shrinking `resize`: they are closed, not reused, as
    /// their holders return them. Zero otherwise.
    pub excess: usize,
}

/// Cumulative counters since the pool was built.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metrics {
    /// Acquisitions started.
    pub gets: u64,
    /// Acquisitions that had to queue.
    pub waits: u64,
    /// Total time spent queueing.
    pub wait_time: Duration,
    /// Acquisitions that timed out.
    pub timeouts: u64,
    /// Connections opened.
    pub connects: u64,
    /// Connect attempts that failed or timed out.
    pub connect_failures: u64,
    /// Connections closed because they were broken (or their holder said so).
    pub closed_broken: u64,
    /// Connections closed because they were older than `max_lifetime`.
    pub closed_stale: u64,
    /// Connections closed because they were idle longer than `idle_timeout`.
    pub closed_idle: u64,
    /// Connections closed on request (`Pooled::close`, `close_idle`, `close`, `resize`).
    pub closed_manual: u64,
    /// Connections reclaimed from their holders by `reclaim_held`.
    pub closed_leaked: u64,
    /// Connections closed because validation failed.
    pub closed_invalid: u64,
    /// Connections closed because resetting them failed.
    pub closed_reset_failed: u64,
    /// Connections closed because their holder panicked.
    pub closed_panicked: u64,
}

impl Metrics {
    /// All connections closed, whatever the reason.
    pub fn closed_total(&self) -> u64 {
        self.closed_broken
            + self.closed_stale
            + self.closed_idle
            + self.closed_manual
            + self.closed_leaked
            + self.closed_invalid
            + self.closed_reset_failed
            + self.closed_panicked
    }
}

/// Who holds a checked-out connection, since when and where it was acquired.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct HeldConn {
    /// The connection's id.
    pub id: u64,
    /// How long it has been held.
    pub held_for: Duration,
    /// The thread that acquired it.
    pub thread: ThreadId,
    /// The tokio task that acquired it, if any.
    pub task: Option<tokio::task::Id>,
    /// Where `get` was called.
    pub location: &'static std::panic::Location<'static>,
    /// Whether `reclaim_held` reclaimed it.
    pub reclaimed: bool,
}
