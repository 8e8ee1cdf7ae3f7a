//! Opening connections: background connects, refills, and what a connect leaves behind.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Capacity reserved for one connect. Dropped unused (a cancelled or panicking connect), it
/// gives the capacity back.
pub(super) struct Reservation<M: Manager> {
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
    /// Opens a connection with the capacity this request holds. `Err(None)`: the pool closed.
    pub(super) async fn connect(
        self: &Arc<Self>,
        holder: Holder,
        limit: Deadline,
        mode: Mode,
    ) -> Result<Pooled<M>, Option<ConnectFailure<M::Error>>> {
        let reservation = Reservation {
            shared: self.clone(),
            armed: true,
        };
        match mode {
            Mode::Async => {
                let (key, uid) = self.state.lock().register(holder);
                tokio::spawn(
                    self.clone()
                        .run_connect(reservation, Some((key, uid)), Mode::Async),
                );
                match self
                    .wait_grant(key, None, limit, mode)
                    .await
                    .map(|(g, _)| g)
                {
                    Some(Grant::Conn { idle, key }) => {
                        Ok(Pooled::new(self.clone(), key, idle, false))
                    }
                    Some(Grant::Failed(f)) => Err(Some(f)),
                    Some(Grant::Closed) => Err(None),
                    Some(Grant::Permit | Grant::Expired) => {
                        unreachable!("permits and expiry go to queued waiters only")
                    }
                    None => Err(Some(ConnectFailure::TimedOut)),
                }
            }
            Mode::Blocking => {
                let mut reservation = reservation;
                // Abandoned at `limit` (the reservation gives the capacity back).
                let Some(result) = block_on_until(self.manager.connect(), limit) else {
                    drop(reservation);
                    self.state.lock().stats.connect_failures += 1;
                    return Err(Some(ConnectFailure::TimedOut));
                };
                reservation.armed = false;
                let now = Instant::now();
                match result {
                    Ok(conn) => {
                        let held = self.state.lock().connected_inline(now, holder);
                        match held {
                            Ok((key, meta)) => {
                                let entry = Box::new(Entry {
                                    conn,
                                    meta,
                                    dirty: false,
                                });
                                Ok(Pooled::new(self.clone(), key, entry, false))
                            }
                            Err(()) => {
                                self.close_conn(conn, CloseReason::Closed);
                                Err(None)
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(pool = %self.config.name, error = %e, "connect failed");
                        let (wakes, failure) =
                            self.state
                                .lock()
                                .connect_failed(ConnectFailure::Error(e), now, None);
                        wake_all(wakes.into_iter().flatten());
                        Err(failure)
                    }
                }
            }
        }
    }

    /// A background connect, bounded by `connect_timeout`: the connection goes to `requester` if
    /// it still waits, else to the queue or the idle set; a failure frees the capacity for the
    /// next request. Spawned as a task, or driven on a refill thread of its own.
    pub(super) async fn run_connect(
        self: Arc<Self>,
        mut reservation: Reservation<M>,
        requester: Option<(usize, u64)>,
        mode: Mode,
    ) {
        let limit = Deadline::after(Instant::now(), self.config.connect_timeout);
        let result = match bounded(self.manager.connect(), limit, mode).await {
            Some(r) => r.map_err(ConnectFailure::Error),
            None => Err(ConnectFailure::TimedOut),
        };
        reservation.armed = false;
        let now = Instant::now();
        match result {
            Ok(conn) => {
                let (wake, closing) = self.state.lock().connected(conn, now, requester);
                self.after_unlock(wake, closing);
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
                tracing::warn!(pool = %self.config.name, error = %e, "connect failed")
            }
            ConnectFailure::TimedOut => tracing::warn!(
                pool = %self.config.name,
                timeout = ?self.config.connect_timeout,
                "connect timed out"
            ),
        }
        let (wakes, _unclaimed) = self.state.lock().connect_failed(failure, now, requester);
        wake_all(wakes.into_iter().flatten());
    }

    /// Starts `n` background connects whose capacity is already reserved (min_idle refill): as
    /// tokio tasks, or (`blocking`, from the shared reaper thread) one after the other on a
    /// thread of their own, so that a slow or panicking connect never holds up the reaper of
    /// other pools. A connect that panics gives its capacity back.
    pub(crate) fn spawn_refill(self: &Arc<Self>, n: usize, blocking: bool) {
        if n == 0 {
            return;
        }
        let reservations: Vec<_> = (0..n)
            .map(|_| Reservation {
                shared: self.clone(),
                armed: true,
            })
            .collect();
        if !blocking {
            for r in reservations {
                tokio::spawn(self.clone().run_connect(r, None, Mode::Async));
            }
            return;
        }
        let shared = self.clone();
        let refill = move || {
            for r in reservations {
                block_on(shared.clone().run_connect(r, None, Mode::Blocking));
            }
        };
        // Loom models no extra OS threads: refill inline there.
        if cfg!(all(test, loom)) {
            refill();
            return;
        }
        let spawned = thread::Builder::new()
            .name("pool-refill".into())
            .spawn(refill);
        if let Err(e) = spawned {
            // The closure (and its reservations, which give the capacity back) is dropped.
            tracing::error!(pool = %self.config.name, error = %e, "cannot start a refill thread");
        }
    }
}
