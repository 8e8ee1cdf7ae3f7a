//! The OS-thread front end: `get_blocking`, parking for a grant, driving manager futures.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Drives a future on this thread: polls it once with a no-op waker (managers built for threads
/// complete at once, and waiting parks inside), and blocks on it only if it is really pending.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => pollster::block_on(fut),
    }
}

/// Drives a future on this thread until it completes or `limit` passes (`None` then): polls it
/// once with a no-op waker (managers built for threads complete at once), then parks between
/// polls. A future that blocks inside a poll cannot be cut short.
pub(crate) fn block_on_until<F: Future>(fut: F, limit: Deadline) -> Option<F::Output> {
    struct Unpark(thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut fut = pin!(fut);
    if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return Some(out);
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        match limit.remaining(Instant::now()) {
            Some(left) if left.is_zero() => return None,
            Some(left) => thread::park_timeout(left),
            None => thread::park(),
        }
    }
}

impl<M: Manager> Shared<M> {
    /// The blocking front end: the fast path inline, the rest driven on this thread.
    pub(super) fn get_blocking(
        self: &Arc<Self>,
        holder: Holder,
        wait: Duration,
    ) -> Result<Pooled<M>, PoolError<M::Error>> {
        let now = Instant::now();
        let decided = match self.take_parked(holder, now) {
            Some(Ok(conn)) => return Ok(conn),
            Some(Err(checked)) => self.after_check(checked)?,
            None => match self.look(holder, wait, now)? {
                Ok(conn) => return Ok(conn),
                Err(step) => step,
            },
        };
        let step = match self.check_step(decided)? {
            Ok(conn) => return Ok(conn),
            Err(next) => next,
        };
        let span = tracing::debug_span!("pool.get_blocking", pool = %self.config.name);
        let _enter = span.enter();
        block_on(self.acquire::<Thread>(holder, wait, now, step))
    }

    /// The blocking front end's first locked attempt, when nothing was parked for this thread.
    /// While nothing is free, it yields and looks again a few times before queueing (see
    /// `sync::YIELDS_BEFORE_QUEUE`); a look may find a connection parked meanwhile.
    pub(super) fn look(
        self: &Arc<Self>,
        holder: Holder,
        wait: Duration,
        start: Instant,
    ) -> Result<Handed<M>, PoolError<M::Error>> {
        let deadline = Deadline::after(start, wait);
        let mut looks = if wait.is_zero() {
            0
        } else {
            sync::YIELDS_BEFORE_QUEUE
        };
        let mut at = start;
        loop {
            let ask = Ask {
                holder,
                may_wait: looks == 0 && !deadline.passed(at),
                fail_fast: true,
            };
            let count = if looks == 0 {
                Count::Yes
            } else {
                Count::UnlessFull
            };
            let d = self.begin(ask, at, None, None, false, count);
            if looks == 0 || !matches!(d, Acquire::Full) {
                return self.decide(d, at, start, &mut None).map(Err);
            }
            looks -= 1;
            sync::yield_now();
            at = Instant::now();
            match self.take_parked(holder, at) {
                Some(Ok(conn)) => return Ok(Ok(conn)),
                Some(Err(checked)) => return self.after_check(checked).map(Err),
                None => {}
            }
        }
    }
}

/// The OS-thread front end: waits park the thread (with the deadline), manager futures are
/// polled on it and abandoned at their limit, connects run inline, refills run on a thread of
/// their own.
#[derive(Debug)]
pub(crate) struct Thread;

impl FrontEnd for Thread {
    const TASK: bool = false;

    async fn wait_grant<M: Manager>(
        shared: &Shared<M>,
        key: usize,
        since: Option<Instant>,
        deadline: Deadline,
    ) -> Option<GrantOf<M>> {
        loop {
            // A short turn comes soon: yield (watching the flag) before parking.
            #[allow(clippy::reversed_empty_ranges)] // zero under loom
            for _ in 0..sync::YIELDS_BEFORE_PARK {
                if ThreadWaker::take_flag() {
                    break;
                }
                thread::yield_now();
            }
            let (grant, next) = shared
                .state
                .lock()
                .poll_waiter(key, since, |cur| match cur {
                    Wake::Thread(_) => None,
                    _ => Some(Wake::Thread(ThreadWaker::for_this_thread())),
                });
            if let Some(w) = next {
                w.wake();
            }
            if grant.is_some() {
                return grant;
            }
            let now = Instant::now();
            match deadline.remaining(now) {
                Some(left) if left.is_zero() => {
                    // A grant may have arrived since the check: cancelling passes it on.
                    shared.cancel_waiter(key);
                    return None;
                }
                Some(left) => sync::park_timeout(left),
                None => sync::park(),
            }
        }
    }

    async fn bound<T: Future + Send>(fut: T, limit: Deadline) -> Option<T::Output> {
        block_on_until(fut, limit)
    }

    async fn sleep(d: Duration) {
        thread::sleep(d);
    }

    async fn connect<M: Manager>(
        shared: &Arc<Shared<M>>,
        holder: Holder,
        limit: Deadline,
    ) -> Result<Pooled<M>, Option<ConnectFailure<M::Error>>> {
        let reservation = Reservation {
            shared: shared.clone(),
            armed: true,
        };

        let mut reservation = reservation;
        // Abandoned at `limit` (the reservation gives the capacity back).
        let Some(result) = block_on_until(shared.manager.connect(), limit) else {
            drop(reservation);
            shared.state.lock().stats.connect_failures += 1;
            return Err(Some(ConnectFailure::TimedOut));
        };
        reservation.armed = false;
        let now = Instant::now();
        match result {
            Ok(conn) => {
                let held = shared.state.lock().connected_inline(now, holder);
                match held {
                    Ok((key, meta)) => {
                        let entry = Box::new(Entry {
                            conn,
                            meta,
                            dirty: false,
                        });
                        Ok(Pooled::new(shared.clone(), key, entry, false))
                    }
                    Err(()) => {
                        shared.close_conn(conn, CloseReason::Closed);
                        Err(None)
                    }
                }
            }
            Err(e) => {
                tracing::warn!(pool = %shared.config.name, error = %crate::Report::new(&e), "connect failed");
                let (wakes, failure) =
                    shared
                        .state
                        .lock()
                        .connect_failed(ConnectFailure::Error(e), now, None);
                shared.run(wakes);
                Err(failure)
            }
        }
    }

    /// Refill connects run one after the other on a thread of their own, so that a slow or
    /// panicking connect never holds up the shared reaper thread (the maintenance of other
    /// pools).
    fn refill<M: Manager>(shared: &Arc<Shared<M>>, reservations: Vec<Reservation<M>>) {
        let name = shared.config.name.clone();
        let shared = shared.clone();
        let refill = move || {
            for r in reservations {
                block_on(shared.clone().run_connect::<Thread>(r, None));
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
            tracing::error!(pool = %name, error = %e, "cannot start a refill thread");
        }
    }
}
