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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Metrics {
    /// Acquisitions started.
    pub gets: u64,
    /// Acquisitions that had to queue.
    pub waits: u64,
    /// Total time spent queueing.
    pub wait_time: Duration,
    /// How long each queued acquisition waited (the distribution behind `wait_time`), for
    /// percentiles of acquire time: `metrics.wait_histogram.quantile(0.99)`.
    pub wait_histogram: DurationHistogram,
    /// Total time connections were held: from hand-out to check-in, over every check-in.
    pub hold_time: Duration,
    /// How long each checkout was held, hand-out to check-in (the distribution behind
    /// `hold_time`), fast-path checkouts included: `metrics.hold_histogram.quantile(0.99)`.
    /// Connections detached or closed by their holder are not counted.
    pub hold_histogram: DurationHistogram,
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

/// Buckets of [`DurationHistogram`]: bucket 0 holds durations under 1 µs, bucket `i` those of
/// `2^(i-1)` to `2^i` µs, the last one everything longer (over about 18 minutes).
const WAIT_BUCKETS: usize = 31;

/// A distribution of durations (how long queued acquisitions waited, how long checkouts were
/// held), in power-of-two buckets of microseconds: recorded where the wait or hold ends, under a
/// lock the pool holds there anyway, with no allocation and no atomic, so it costs a few
/// instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DurationHistogram {
    counts: [u64; WAIT_BUCKETS],
}

/// The name [`DurationHistogram`] had when it only counted waits.
pub type WaitHistogram = DurationHistogram;

impl DurationHistogram {
    /// Counts one duration.
    pub(crate) fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let bucket = (64 - micros.leading_zeros()) as usize;
        self.counts[bucket.min(WAIT_BUCKETS - 1)] += 1;
    }

    /// Adds `other`'s counts to these.
    pub(crate) fn merge(&mut self, other: &DurationHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound of the bucket that holds the `q`-quantile (`q` in `0.0..=1.0`, e.g. 0.99
    /// for p99), or `None` when nothing was recorded. Bounds are powers of two of microseconds,
    /// so the answer is within a factor of two above the true value.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        // The rank of the q-quantile, 1-based, within 1..=total.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Self::upper_bound(i));
            }
        }
        None
    }

    /// Each bucket's upper bound and count, shortest first (empty buckets included).
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, n)| (Self::upper_bound(i), *n))
    }

    fn upper_bound(bucket: usize) -> Duration {
        if bucket + 1 == WAIT_BUCKETS {
            Duration::MAX
        } else {
            Duration::from_micros(1 << bucket)
        }
    }
}

impl Metrics {
    /// Counts a queued acquisition's wait in `wait_time` and `wait_histogram`.
    pub(crate) fn record_wait(&mut self, wait: Duration) {
        self.wait_time += wait;
        self.wait_histogram.record(wait);
    }

    /// Counts a checkout's hold time in `hold_time` and `hold_histogram`.
    pub(crate) fn record_hold(&mut self, held: Duration) {
        self.hold_time += held;
        self.hold_histogram.record(held);
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_histogram_buckets_and_quantiles() {
        let mut h = DurationHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        h.record(Duration::from_nanos(300)); // < 1 µs
        for _ in 0..97 {
            h.record(Duration::from_micros(3)); // 2–4 µs
        }
        h.record(Duration::from_millis(100)); // 65.5–131 ms
        h.record(Duration::from_secs(100_000)); // the last bucket
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile(0.0), Some(Duration::from_micros(1)));
        assert_eq!(h.quantile(0.5), Some(Duration::from_micros(4)));
        assert_eq!(h.quantile(0.98), Some(Duration::from_micros(4)));
        assert_eq!(h.quantile(0.99), Some(Duration::from_micros(131_072)));
        assert_eq!(h.quantile(1.0), Some(Duration::MAX));
        let buckets: Vec<_> = h.buckets().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            buckets,
            vec![
                (Duration::from_micros(1), 1),
                (Duration::from_micros(4), 97),
                (Duration::from_micros(131_072), 1),
                (Duration::MAX, 1),
            ]
        );
        let mut m = Metrics::default();
        m.record_wait(Duration::from_millis(2));
        m.record_wait(Duration::from_millis(3));
        assert_eq!(m.wait_time, Duration::from_millis(5));
        assert_eq!(m.wait_histogram.count(), 2);
    }
}
