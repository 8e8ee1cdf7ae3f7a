//! Opening connections: background connects, refills, and what a connect leaves behind.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Capacity reserved for one connect. Dropped unused (a cancelled or panicking connect), it
/// gives the capacity back.
pub(crate) struct Reservation<M: Manager> {
    pub(super) shared: Arc<Shared<M>>,
    pub(super) armed: bool,
}

impl<M: Manager> Drop for Reservation<M> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.permit_unused();
            self.shared.drained.notify_waiters();
        }
    }
}

/// Backoff before connect retry `attempt` (1-based): 25 ms doubling to 1 s, with jitter.
pub(super) fn backoff(attempt: u32) -> Duration {
    let base = 25u64 << attempt.saturating_sub(1).min(6);
    let ms = base.min(1000);
    Duration::from_millis(ms / 2 + fastrand::u64(0..=ms / 2))
}

impl<M: Manager> Shared<M> {
    /// A background connect, bounded by `connect_timeout`: the connection goes to `requester` if
    /// it still waits, else to the queue or the idle set; a failure frees the capacity for the
    /// next request. Spawned as a task, or driven on a refill thread of its own.
    pub(super) async fn run_connect<F: FrontEnd>(
        self: Arc<Self>,
        mut reservation: Reservation<M>,
        requester: Option<(usize, u64)>,
    ) {
        let limit = Deadline::after(Instant::now(), self.config.connect_timeout);
        let result = match F::bound(self.manager.connect(), limit).await {
            Some(r) => r.map_err(ConnectFailure::Error),
            None => Err(ConnectFailure::TimedOut),
        };
        reservation.armed = false;
        let now = Instant::now();
        match result {
            Ok(conn) => {
                let after = self.state.lock().connected(conn, now, requester);
                self.run(after);
            }
            Err(failure) => self.connect_failed(failure, now, requester),
        }
        // A graceful close may be waiting for this connect.
        self.drained.notify_waiters();
    }

    pub(super) fn connect_failed(
        &self,
        failure: ConnectFailure<M::Error>,
        now: Instant,
        requester: Option<(usize, u64)>,
    ) {
        match &failure {
            ConnectFailure::Error(e) => {
                tracing::warn!(pool = %self.config.name, error = %crate::Report::new(e), "connect failed")
            }
            ConnectFailure::TimedOut => tracing::warn!(
                pool = %self.config.name,
                timeout = ?self.config.connect_timeout,
                "connect timed out"
            ),
        }
        let (after, _unclaimed) = self.state.lock().connect_failed(failure, now, requester);
        self.run(after);
    }

    /// Starts `n` background connects whose capacity is already reserved (min_idle refill), the
    /// front end's way (see [`FrontEnd::refill`]). A connect that panics gives its capacity back.
    pub(crate) fn spawn_refill<F: FrontEnd>(self: &Arc<Self>, n: usize) {
        if n == 0 {
            return;
        }
        let reservations: Vec<_> = (0..n)
            .map(|_| Reservation {
                shared: self.clone(),
                armed: true,
            })
            .collect();
        F::refill(self, reservations);
    }
}
