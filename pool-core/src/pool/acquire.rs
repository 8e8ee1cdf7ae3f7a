//! The acquisition step machine shared by both front ends, and the checkout checks.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What the acquisition loop does next.
pub(super) enum Step<M: Manager> {
    /// Ask the core for an idle connection, capacity, or a place in the queue.
    Start,
    /// Queued under this waiter key since this instant.
    Wait(usize, Instant),
    /// Check this idle connection (held under `key`) before hand-out.
    Check(Idle<M::Connection>, usize, Instant),
    /// Run the I/O check (`reset` or `validate`, named by the failure reason) on this guard.
    Io(Pooled<M>, CloseReason),
    /// Open a connection with the capacity this request holds.
    Connect,
}

/// A connection handed out, or the step the acquisition goes on with.
pub(super) type Handed<M> = Result<Pooled<M>, Step<M>>;

/// Why the synchronous part of a checkout check did not hand the connection out.
pub(crate) enum Checked<M: Manager> {
    /// An I/O check is due.
    Io(Pooled<M>, CloseReason),
    /// The connection failed; what the request holds now.
    Failed(Retake<M::Connection>),
}

/// Whether [`Shared::begin`] counts its request in [`Metrics::gets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Count {
    Yes,
    /// A later step of a request that was counted already.
    No,
    /// A look of the blocking front end that is retried if it finds nothing free (counted by the
    /// look that decides).
    UnlessFull,
}

/// The deadline of a whole call that started at `start` with wait timeout `wait`. A zero wait
/// never queues; the call is then bounded by `connect_timeout`.
pub(super) fn call_deadline(start: Instant, wait: Duration, config: &Config) -> Deadline {
    if wait.is_zero() {
        Deadline::after(start, config.connect_timeout)
    } else {
        Deadline::after(start, wait)
    }
}

impl<M: Manager> Shared<M> {
    /// [`Pool::try_get`]: synchronous checks only, no I/O, no wait.
    pub(super) fn try_get(
        self: &Arc<Self>,
        holder: Holder,
    ) -> Result<Pooled<M>, PoolError<M::Error>> {
        let now = Instant::now();
        let mut checked = match self.take_parked(holder, now) {
            Some(Ok(conn)) => return Ok(conn),
            Some(Err(checked)) => checked,
            None => {
                let ask = Ask {
                    holder,
                    may_wait: false,
                    fail_fast: true,
                };
                match self.begin(ask, now, None, None, false, Count::Yes) {
                    Acquire::Got(idle, key) => match self.check_sync(idle, key, now) {
                        Ok(conn) => return Ok(conn),
                        Err(checked) => checked,
                    },
                    Acquire::Create => {
                        self.permit_unused();
                        return Err(self.timeout(Phase::Wait, now, None));
                    }
                    Acquire::Wait(key, _) => {
                        // Not asked to wait; never happens, but give the place back.
                        self.cancel_waiter(key);
                        return Err(self.timeout(Phase::Wait, now, None));
                    }
                    Acquire::Full | Acquire::Unavailable(_) => {
                        return Err(self.timeout(Phase::Wait, now, None));
                    }
                    Acquire::Closed => return Err(PoolError::Closed),
                }
            }
        };
        loop {
            let retake = match checked {
                Checked::Io(guard, _) => {
                    self.put_back(guard);
                    return Err(self.timeout(Phase::Wait, now, None));
                }
                Checked::Failed(retake) => retake,
            };
            checked = match retake {
                Retake::Got(idle, key) => match self.check_sync(idle, key, Instant::now()) {
                    Ok(conn) => return Ok(conn),
                    Err(c) => c,
                },
                Retake::Create => {
                    self.permit_unused();
                    return Err(self.timeout(Phase::Wait, now, None));
                }
                Retake::Restart => return Err(self.timeout(Phase::Wait, now, None)),
                Retake::Closed => return Err(PoolError::Closed),
            };
        }
    }

    /// Asks the core for a connection: the locked part of every acquisition.
    /// `waker`: the task to wake when queued (async front end; the acquisition's own poll
    /// replaces a no-op one), or `None` to unpark this thread. `expire_after`: the pool's sweeper
    /// expires the waiter after this long (else the caller bounds its own wait). `cell`: a queued
    /// request receives its grant in a cell it shares with its node (`Get`), else in its node.
    /// `count`: whether this counts as a get in the metrics.
    pub(super) fn begin(
        self: &Arc<Self>,
        ask: Ask,
        now: Instant,
        waker: Option<&Waker>,
        expire_after: Option<Duration>,
        cell: bool,
        count: Count,
    ) -> Acquire<M::Connection, M::Error> {
        let mut refill = 0;
        let mut sweeper = Sweeper::Armed;
        let mut flushed = After::none();
        // A request that will likely queue (the fast path is closed, and not for `min_idle`)
        // takes its grant cell before locking; one that queues unexpectedly takes it under the
        // lock. Either way from this thread's stash: no allocation in steady state.
        let mut spare =
            (cell && self.config.min_idle == 0 && !self.fast.open.load(Ordering::Relaxed))
                .then(|| self.take_cell());
        let decision = {
            let mut st = self.lock_state(waker.is_some());
            if st.no_idle() {
                // About to connect or queue: close the fast path, and take back parked
                // connections first (see `crate::fast`).
                flushed = self.before_queue(&mut st, now);
            }
            let d = st.acquire(
                now,
                self.preferred(),
                ask,
                || expire_after.and_then(|d| now.checked_add(d)),
                || match waker {
                    Some(w) => Wake::Task(w.clone()),
                    None => Wake::Thread(ThreadWaker::for_this_thread()),
                },
                || cell.then(|| spare.take().unwrap_or_else(|| self.take_cell())),
            );
            if count == Count::Yes || count == Count::UnlessFull && !matches!(d, Acquire::Full) {
                st.stats.gets += 1;
            }
            // Keep min_idle warm as checkouts drain the idle set (HikariCP-style), without
            // waiting for the reaper.
            if waker.is_some() && st.limits.min_idle > 0 && matches!(d, Acquire::Got(..)) {
                refill = st.reserve_min_idle(now);
            }
            if let (Acquire::Wait(..), Some(at)) =
                (&d, expire_after.and_then(|d| now.checked_add(d)))
            {
                sweeper = st.arm_sweeper(at);
            }
            self.set_fast(st.fast_ok());
            d
        };
        if let Some(unused) = spare {
            self.keep_cell(unused);
        }
        self.after_flush(flushed);
        match sweeper {
            Sweeper::Armed => {}
            Sweeper::Rearm => self.sweep_notify.notify_one(),
            Sweeper::Spawn => {
                tokio::spawn(self.clone().sweeper());
            }
        }
        if refill > 0 {
            self.spawn_refill::<Task>(refill);
        }
        decision
    }

    /// The next step for a core decision, or the error that ends the acquisition.
    pub(super) fn decide(
        &self,
        decision: Acquire<M::Connection, M::Error>,
        now: Instant,
        start: Instant,
        last_error: &mut Option<M::Error>,
    ) -> Result<Step<M>, PoolError<M::Error>> {
        match decision {
            Acquire::Got(idle, key) => Ok(Step::Check(idle, key, now)),
            Acquire::Create => Ok(Step::Connect),
            Acquire::Wait(key, _) => Ok(Step::Wait(key, now)),
            Acquire::Full => {
                let phase = if last_error.is_some() {
                    Phase::Connect
                } else {
                    Phase::Wait
                };
                Err(self.timeout(phase, start, last_error.take()))
            }
            Acquire::Unavailable(failures) => Err(PoolError::Unavailable {
                failures,
                last_error: None,
            }),
            Acquire::Closed => Err(PoolError::Closed),
        }
    }

    /// The next step for what a waiter was granted.
    pub(super) fn granted(
        &self,
        grant: Option<Grant<M::Connection, M::Error>>,
        woke: Instant,
        start: Instant,
        last_error: &mut Option<M::Error>,
    ) -> Result<Step<M>, PoolError<M::Error>> {
        match grant {
            Some(Grant::Conn { idle, key }) => Ok(Step::Check(idle, key, woke)),
            Some(Grant::Permit) => Ok(Step::Connect),
            Some(Grant::Closed) => Err(PoolError::Closed),
            Some(Grant::Failed(_) | Grant::Expired) | None => {
                Err(self.timeout(Phase::Wait, start, last_error.take()))
            }
        }
    }

    /// The next step after a failed checkout check.
    pub(super) fn retake(
        &self,
        retake: Retake<M::Connection>,
    ) -> Result<Step<M>, PoolError<M::Error>> {
        match retake {
            Retake::Got(idle, key) => Ok(Step::Check(idle, key, Instant::now())),
            Retake::Create => Ok(Step::Connect),
            Retake::Restart => Ok(Step::Start),
            Retake::Closed => Err(PoolError::Closed),
        }
    }

    /// The acquisition state machine shared by both front ends, from `step` on. The fast path
    /// (an idle connection needing no I/O) never gets here: see [`Get`] and `get_blocking`.
    ///
    /// One deadline bounds the whole call (see [`call_deadline`]): queueing, checks and
    /// connecting. `validate_timeout` and `connect_timeout` bound single operations inside it and
    /// never extend it. When it passes, the error names the phase that was running and keeps the
    /// last driver error seen.
    pub(super) async fn acquire<F: FrontEnd>(
        self: &Arc<Self>,
        holder: Holder,
        wait: Duration,
        start: Instant,
        mut step: Step<M>,
    ) -> Result<Pooled<M>, PoolError<M::Error>> {
        let deadline = call_deadline(start, wait, &self.config);
        let mut last_error: Option<M::Error> = None;
        let mut connect_budget: Option<Deadline> = None;
        let mut attempt: u32 = 0;
        loop {
            step = match step {
                Step::Start => {
                    let now = Instant::now();
                    if deadline.passed(now) {
                        let phase = if last_error.is_some() {
                            Phase::Connect
                        } else {
                            Phase::Wait
                        };
                        return Err(self.timeout(phase, start, last_error));
                    }
                    // A task's own poll stores its waker; a thread is unparked.
                    let waker = F::TASK.then(Waker::noop);
                    let ask = Ask {
                        holder,
                        may_wait: !wait.is_zero(),
                        fail_fast: attempt == 0,
                    };
                    let d = self.begin(ask, now, waker, None, false, Count::No);
                    self.decide(d, now, start, &mut last_error)?
                }
                Step::Wait(key, since) => {
                    let (grant, woke) = match F::wait_grant(self, key, Some(since), deadline).await
                    {
                        Some((g, woke)) => (Some(g), woke),
                        None => {
                            let now = Instant::now();
                            self.state.lock().stats.record_wait(now - since);
                            (None, now)
                        }
                    };
                    // Queued: the phase is `Wait` even after failed connects (their error is kept).
                    if grant.is_none() {
                        return Err(self.timeout(Phase::Wait, start, last_error));
                    }
                    self.granted(grant, woke, start, &mut last_error)?
                }
                check @ Step::Check(..) => match self.check_step(check)? {
                    Ok(conn) => return Ok(conn),
                    Err(next) => next,
                },
                Step::Io(guard, kind) => {
                    let now = Instant::now();
                    let phase = if kind == CloseReason::ResetFailed {
                        Phase::Reset
                    } else {
                        Phase::Validate
                    };
                    if deadline.passed(now) {
                        self.put_back(guard);
                        return Err(self.timeout(phase, start, last_error));
                    }
                    let limit = Deadline::after(now, self.config.validate_timeout).min(deadline);
                    match Box::pin(self.check_io::<F>(guard, kind, limit)).await {
                        Ok(conn) => return Ok(conn),
                        Err((retake, err)) => {
                            if err.is_some() {
                                last_error = err;
                            }
                            if deadline.passed(Instant::now()) {
                                self.abandon(retake);
                                return Err(self.timeout(phase, start, last_error));
                            }
                            self.retake(retake)?
                        }
                    }
                }
                Step::Connect => {
                    let now = Instant::now();
                    if deadline.passed(now) {
                        self.permit_unused();
                        return Err(self.timeout(Phase::Connect, start, last_error));
                    }
                    // One connect budget for this request's attempts and retries, inside the
                    // call's deadline.
                    let limit = connect_budget
                        .get_or_insert(Deadline::after(now, self.config.connect_timeout))
                        .min(deadline);
                    match Box::pin(F::connect(self, holder, limit)).await {
                        Ok(conn) => return Ok(conn),
                        Err(None) => return Err(PoolError::Closed),
                        Err(Some(ConnectFailure::TimedOut)) => {
                            return Err(self.timeout(Phase::Connect, start, last_error));
                        }
                        Err(Some(ConnectFailure::Error(e))) => {
                            attempt += 1;
                            let delay = backoff(attempt);
                            if !self.manager.is_retryable(&e) {
                                return Err(PoolError::Backend(e));
                            }
                            if !(self.config.retry_connect && limit.allows(Instant::now(), delay)) {
                                // An outage, not a refusal: the same shape as failing fast.
                                return Err(PoolError::Unavailable {
                                    failures: attempt,
                                    last_error: Some(e),
                                });
                            }
                            last_error = Some(e);
                            F::sleep(delay).await;
                            Step::Start
                        }
                    }
                }
            };
        }
    }

    /// Puts a connection taken for a check back without checking it (its idle time and dirty flag
    /// are kept, so the next checkout checks it): the call ran out of time, or `try_get` does
    /// no I/O.
    pub(super) fn put_back(&self, mut guard: Pooled<M>) {
        let Some(entry) = guard.inner.take() else {
            return;
        };
        debug_assert!(guard.lease.is_none(), "a checked connection is not leased");
        let r = self
            .state
            .lock()
            .checkin(guard.key, entry, None, Instant::now());
        self.run(r.after);
    }

    /// Gives back what a request that ends holds after a failed check.
    pub(super) fn abandon(self: &Arc<Self>, retake: Retake<M::Connection>) {
        match retake {
            Retake::Got(idle, key) => self.put_back(Pooled::new(self.clone(), key, idle, true)),
            Retake::Create => self.permit_unused(),
            Retake::Restart | Retake::Closed => {}
        }
    }

    /// The synchronous part of the checkout check: lifetime, idle timeout, broken. Hands the
    /// connection out when no I/O check (reset if dirty, validate if idle long enough) is due.
    pub(crate) fn check_sync(
        self: &Arc<Self>,
        idle: Idle<M::Connection>,
        key: usize,
        now: Instant,
    ) -> Result<Pooled<M>, Checked<M>> {
        // Only a connection idle past the shorter window needs its idle time looked at.
        let idle_for = idle
            .meta
            .check_at
            .filter(|at| now >= *at)
            .map(|_| now.saturating_duration_since(idle.meta.last_used));
        let dirty = idle.dirty;
        let mut guard = Pooled::new(self.clone(), key, idle, true);
        let cfg = &self.config;
        let entry = guard.inner.as_mut().expect("fresh guard");
        let (conn, meta) = (&mut entry.conn, &entry.meta);
        let reason = if meta.is_expired(now) {
            CloseReason::Stale
        } else if idle_for.is_some_and(|d| cfg.idle_timeout.is_some_and(|t| d >= t)) {
            CloseReason::Idle
        } else if self.manager.is_broken(conn, meta) {
            CloseReason::Broken
        } else if dirty {
            return Err(Checked::Io(guard, CloseReason::ResetFailed));
        } else if idle_for.is_some_and(|d| cfg.validate_after_idle.is_some_and(|w| d >= w)) {
            return Err(Checked::Io(guard, CloseReason::Invalid));
        } else {
            guard.checking = false;
            return Ok(guard);
        };
        Err(Checked::Failed(self.fail_check(guard, reason)))
    }

    /// Runs the synchronous part of a `Check` step: the connection, or the step to go on with.
    /// Other steps pass through.
    pub(super) fn check_step(
        self: &Arc<Self>,
        step: Step<M>,
    ) -> Result<Handed<M>, PoolError<M::Error>> {
        let Step::Check(idle, key, now) = step else {
            return Ok(Err(step));
        };
        Ok(match self.check_sync(idle, key, now) {
            Ok(conn) => Ok(conn),
            Err(checked) => Err(self.after_check(checked)?),
        })
    }

    /// The step after a connection did not pass the synchronous checks.
    pub(super) fn after_check(&self, checked: Checked<M>) -> Result<Step<M>, PoolError<M::Error>> {
        match checked {
            Checked::Io(guard, kind) => Ok(Step::Io(guard, kind)),
            Checked::Failed(r) => self.retake(r),
        }
    }

    /// Runs the I/O check due on `guard`: `reset` (when `kind` is `ResetFailed`) or `validate`,
    /// bounded by `limit`. A failure closes the connection and returns what the request holds
    /// then, with the driver's error (`None` when the check timed out).
    pub(super) async fn check_io<F: FrontEnd>(
        self: &Arc<Self>,
        mut guard: Pooled<M>,
        kind: CloseReason,
        limit: Deadline,
    ) -> Result<Pooled<M>, (Retake<M::Connection>, Option<M::Error>)> {
        let entry = guard.inner.as_mut().expect("fresh guard");
        let (conn, meta) = (&mut entry.conn, &entry.meta);
        let res = if kind == CloseReason::ResetFailed {
            F::bound(self.manager.reset(conn), limit).await
        } else {
            F::bound(self.manager.validate(conn, meta), limit).await
        };
        match res {
            Some(Ok(())) => {
                guard.checking = false;
                Ok(guard)
            }
            Some(Err(e)) => Err((self.fail_check(guard, kind), Some(e))),
            None => Err((self.fail_check(guard, kind), None)),
        }
    }

    /// Closes a connection that failed its checkout check; the request keeps its capacity.
    pub(super) fn fail_check(
        &self,
        mut guard: Pooled<M>,
        reason: CloseReason,
    ) -> Retake<M::Connection> {
        let entry = guard.inner.take().expect("fresh guard");
        tracing::debug!(pool = %self.config.name, conn = entry.meta.id, %reason, "connection failed its checkout check");
        let retake = self
            .state
            .lock()
            .check_failed(guard.key, reason, Instant::now());
        self.close_conn(entry.conn, reason);
        retake
    }
}
