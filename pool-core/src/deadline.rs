//! Deadlines with saturating arithmetic: `now + Duration::MAX` (or any sum past the clock's
//! range) is "never", not a panic.

use std::time::Duration;

use tokio::time::Instant;

/// An instant by which something must be done, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) const NEVER: Deadline = Deadline(None);

    /// `d` after `now`; never when the sum is past the clock's range (`Duration::MAX`).
    pub(crate) fn after(now: Instant, d: Duration) -> Self {
        Deadline(now.checked_add(d))
    }

    /// The earlier of two deadlines.
    pub(crate) fn min(self, other: Deadline) -> Self {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Deadline(Some(a.min(b))),
            (a, b) => Deadline(a.or(b)),
        }
    }

    /// Whether it has passed at `now`.
    pub(crate) fn passed(self, now: Instant) -> bool {
        self.0.is_some_and(|at| now >= at)
    }

    /// Time left at `now`; `None` for never.
    pub(crate) fn remaining(self, now: Instant) -> Option<Duration> {
        self.0.map(|at| at.saturating_duration_since(now))
    }

    /// Whether waiting `d` from `now` still ends before it.
    pub(crate) fn allows(self, now: Instant, d: Duration) -> bool {
        match (self.0, now.checked_add(d)) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(at), Some(end)) => end < at,
        }
    }

    /// Runs `fut` until it completes or the deadline passes (`None` then).
    pub(crate) async fn bound<F: std::future::Future>(self, fut: F) -> Option<F::Output> {
        match self.0 {
            None => Some(fut.await),
            Some(at) => tokio::time::timeout_at(at, fut).await.ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_is_never_and_never_panics() {
        let now = Instant::now();
        let d = Deadline::after(now, Duration::MAX);
        assert_eq!(d, Deadline::NEVER);
        assert!(!d.passed(now + Duration::from_secs(3600 * 24 * 365)));
        assert_eq!(d.remaining(now), None);
        assert!(d.allows(now, Duration::from_secs(1)));
        assert!(!Deadline::after(now, Duration::from_secs(1)).allows(now, Duration::MAX));
    }

    #[test]
    fn min_prefers_the_earlier_and_ignores_never() {
        let now = Instant::now();
        let a = Deadline::after(now, Duration::from_secs(1));
        let b = Deadline::after(now, Duration::from_secs(2));
        assert_eq!(a.min(b), a);
        assert_eq!(b.min(a), a);
        assert_eq!(Deadline::NEVER.min(b), b);
        assert_eq!(b.min(Deadline::NEVER), b);
        assert_eq!(Deadline::NEVER.min(Deadline::NEVER), Deadline::NEVER);
    }

    #[test]
    fn passed_and_remaining_use_the_given_now() {
        let now = Instant::now();
        let d = Deadline::after(now, Duration::from_millis(10));
        assert!(!d.passed(now));
        assert!(d.passed(now + Duration::from_millis(10)));
        assert_eq!(d.remaining(now), Some(Duration::from_millis(10)));
        assert_eq!(
            d.remaining(now + Duration::from_secs(1)),
            Some(Duration::ZERO)
        );
    }
}
