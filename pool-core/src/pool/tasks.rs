//! The tokio-task front end: the `Get` future, waiting for a grant in a task, the sweeper.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) type SlowGet<M> =
    Pin<Box<dyn Future<Output = Result<Pooled<M>, PoolError<<M as Manager>::Error>>> + Send>>;

/// The future of [`Pool::get`]. Its fast path (an idle connection that needs no I/O check)
/// completes in the first poll without allocating, and so does queueing: the waiter lives in the
/// pool's queue and needs no timer of its own (the pool's sweeper task expires overdue waiters).
/// Only connecting and I/O checks run in a boxed slow path.
///
/// A queued request receives its grant in a [`GrantCell`] it shares with its waiter node, and
/// picks it up without the pool's lock (see `crate::core::cell`).
pub(super) struct Get<M: Manager> {
    pub(super) shared: Arc<Shared<M>>,
    pub(super) holder: Holder,
    pub(super) wait: Duration,
    pub(super) state: GetState<M>,
    /// The `pool.get` span: opened at the first poll and entered on every poll, so that it
    /// covers the whole acquisition (queueing, checks, connecting), also when the connection is
    /// there at once. Disabled (and nearly free) unless a subscriber wants debug spans.
    pub(super) span: tracing::Span,
}

impl<M: Manager> Drop for Get<M> {
    fn drop(&mut self) {
        if let GetState::Waiting { key, cell, .. } =
            std::mem::replace(&mut self.state, GetState::Done)
        {
            // Under the lock: removes the node, or passes on a grant that arrived.
            let after =
                self.shared
                    .state
                    .lock_spinning()
                    .cancel_cell_waiter(key, &cell, Instant::now());
            self.shared.keep_cell(cell);
            self.shared.run(after);
        }
    }
}

pub(super) enum GetState<M: Manager> {
    Init,
    Waiting {
        key: usize,
        start: Instant,
        cell: CellOf<M>,
    },
    Slow(SlowGet<M>),
    Done,
}

impl<M: Manager> Future for Get<M> {
    type Output = Result<Pooled<M>, PoolError<M::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if matches!(this.state, GetState::Init) && this.span.is_none() {
            this.span = tracing::debug_span!(
                "pool.get",
                pool = %this.shared.config.name,
                conn = tracing::field::Empty,
                queued = tracing::field::Empty,
            );
        }
        // Taken out while entered, so that the state machine can borrow `this` (and record
        // `queued` on it); a disabled span is a `None`, so this is two word moves.
        let span = std::mem::replace(&mut this.span, tracing::Span::none());
        let out = {
            let _entered = span.enter();
            let out = this.poll_state(cx, &span);
            if let Poll::Ready(out) = &out {
                match out {
                    Ok(conn) => {
                        span.record("conn", Pooled::meta(conn).id());
                    }
                    Err(e) => tracing::debug!(error = %e, "pool.get failed"),
                }
            }
            out
        };
        this.span = span;
        out
    }
}

impl<M: Manager> Get<M> {
    /// One poll of the state machine (inside the `pool.get` span).
    fn poll_state(
        &mut self,
        cx: &mut Context<'_>,
        span: &tracing::Span,
    ) -> Poll<Result<Pooled<M>, PoolError<M::Error>>> {
        let this = self;
        match std::mem::replace(&mut this.state, GetState::Done) {
            GetState::Init => {
                // Spend tokio's cooperative budget even when the connection is there at once, so
                // a task looping on `get` yields in time and no other task starves. Checked before
                // anything is taken: a task out of budget holds nothing while it yields. Out of
                // budget, `poll_proceed` defers the wake-up to the end of the worker's tick, as
                // tokio's own primitives do: a worker whose tasks have all run out empties its
                // queue and steals from the other, which spreads tasks over the workers. (Waking
                // the task at once kept each worker's share of tasks fixed: measured, 16 tasks on
                // 2 workers, fairness 0.75-0.85 that way, 0.90-0.91 this way.)
                let Poll::Ready(coop) = tokio::task::coop::poll_proceed(cx) else {
                    this.state = GetState::Init;
                    return Poll::Pending;
                };
                let out = this.start(cx, span);
                if out.is_ready() {
                    coop.made_progress();
                }
                out
            }
            GetState::Waiting { key, start, cell } => this.poll_waiting(cx, key, start, cell),
            GetState::Slow(mut fut) => match fut.as_mut().poll(cx) {
                Poll::Ready(out) => Poll::Ready(out),
                Poll::Pending => {
                    this.state = GetState::Slow(fut);
                    Poll::Pending
                }
            },
            GetState::Done => panic!("`Pool::get` future polled after completion"),
        }
    }
}

impl<M: Manager> Get<M> {
    /// The first poll: an idle connection (the fast path), capacity to connect, or a place in
    /// the queue (with this task's waker and deadline).
    pub(super) fn start(
        &mut self,
        cx: &mut Context<'_>,
        span: &tracing::Span,
    ) -> Poll<Result<Pooled<M>, PoolError<M::Error>>> {
        let shared = &self.shared;
        let now = Instant::now();
        let decided = match shared.take_parked(self.holder, now) {
            // The per-thread fast path: the connection this thread parked, without the pool lock.
            Some(Ok(conn)) => return Poll::Ready(Ok(conn)),
            Some(Err(checked)) => shared.after_check(checked),
            None => {
                let wait = self.wait;
                let ask = Ask {
                    holder: self.holder,
                    may_wait: !wait.is_zero(),
                    fail_fast: true,
                };
                let waker = Some(cx.waker());
                let decided = match shared.begin(ask, now, waker, Some(wait), true, Count::Yes) {
                    // An idle connection from the core that passes the synchronous checks,
                    // handed out without going through the step machine.
                    Acquire::Got(idle, key) => match shared.check_sync(idle, key, now) {
                        Ok(conn) => return Poll::Ready(Ok(conn)),
                        Err(checked) => shared.after_check(checked),
                    },
                    Acquire::Wait(key, Some(cell)) => {
                        span.record("queued", true);
                        // The waker is stored with the waiter: nothing more to do until woken.
                        self.state = GetState::Waiting {
                            key,
                            start: now,
                            cell,
                        };
                        return Poll::Pending;
                    }
                    d => shared.decide(d, now, now, &mut None),
                };
                decided
            }
        };
        match decided {
            Err(e) => Poll::Ready(Err(e)),
            Ok(step) => self.continue_with(cx, step, now),
        }
    }

    /// A later poll while queued: takes the grant if one arrived.
    pub(super) fn poll_waiting(
        &mut self,
        cx: &mut Context<'_>,
        key: usize,
        start: Instant,
        cell: CellOf<M>,
    ) -> Poll<Result<Pooled<M>, PoolError<M::Error>>> {
        let shared = &self.shared;
        // Granted: the grant is in the cell, taken without the lock. Else lock to look again (a
        // grant may arrive meanwhile) and store this task's waker.
        let (grant, next) = match cell.take() {
            Some(granted) => (Some(granted), None),
            None => {
                shared
                    .state
                    .lock_spinning()
                    .poll_cell_waiter(key, &cell, task_wake(cx.waker()))
            }
        };
        if let Some(w) = next {
            w.wake();
        }
        match grant {
            None => {
                self.state = GetState::Waiting { key, start, cell };
                Poll::Pending
            }
            Some((grant, woke)) => {
                shared.keep_cell(cell);
                match shared.granted(Some(grant), woke, start, &mut None) {
                    Ok(step) => self.continue_with(cx, step, start),
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
        }
    }

    /// Goes on from `step`: hands out a connection that passes the synchronous checks, else
    /// continues in the boxed slow path.
    pub(super) fn continue_with(
        &mut self,
        cx: &mut Context<'_>,
        step: Step<M>,
        start: Instant,
    ) -> Poll<Result<Pooled<M>, PoolError<M::Error>>> {
        let shared = &self.shared;
        let step = match shared.check_step(step) {
            Ok(Ok(conn)) => return Poll::Ready(Ok(conn)),
            Ok(Err(next)) => next,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let mut fut = shared.clone().slow(self.holder, self.wait, start, step);
        match fut.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(out),
            Poll::Pending => {
                self.state = GetState::Slow(fut);
                Poll::Pending
            }
        }
    }
}

/// Stores this task's waker with a queued request, unless the stored one already wakes it.
pub(super) fn task_wake(waker: &Waker) -> impl FnOnce(&Wake) -> Option<Wake> + '_ {
    |cur| match cur {
        Wake::Task(w) if w.will_wake(waker) => None,
        _ => Some(Wake::Task(waker.clone())),
    }
}

/// Waits for the grant of waiter `key` (async front end). Dropped before the grant is taken, it
/// removes the waiter and passes on anything granted to it.
pub(super) struct WaitGrant<'a, M: Manager> {
    pub(super) shared: &'a Shared<M>,
    pub(super) key: usize,
    pub(super) since: Option<Instant>,
    pub(super) done: bool,
}

impl<M: Manager> Future for WaitGrant<'_, M> {
    type Output = (Grant<M::Connection, M::Error>, Instant);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (grant, next) =
            self.shared
                .state
                .lock()
                .poll_waiter(self.key, self.since, task_wake(cx.waker()));
        if let Some(w) = next {
            w.wake();
        }
        match grant {
            Some(g) => {
                self.done = true;
                Poll::Ready(g)
            }
            None => Poll::Pending,
        }
    }
}

impl<M: Manager> Drop for WaitGrant<'_, M> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.cancel_waiter(self.key);
        }
    }
}

impl<M: Manager> Shared<M> {
    /// The owned, boxed slow path of [`Get`].
    pub(super) fn slow(
        self: Arc<Self>,
        holder: Holder,
        wait: Duration,
        start: Instant,
        step: Step<M>,
    ) -> SlowGet<M> {
        Box::pin(async move { self.acquire::<Task>(holder, wait, start, step).await })
    }

    /// Expires queued async requests whose wait timeout passed. One task per pool while such
    /// requests wait, instead of a timer per request; it stops when none is left.
    pub(super) async fn sweeper(self: Arc<Self>) {
        /// Lets the next waiter start a new sweeper if this one is dropped by its runtime.
        struct Gone<'a, M: Manager>(&'a Shared<M>);
        impl<M: Manager> Drop for Gone<'_, M> {
            fn drop(&mut self) {
                self.0.state.lock().sweeper_gone();
            }
        }
        let gone = Gone(&self);
        loop {
            let Some(at) = self.state.lock().sweep_at() else {
                break;
            };
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = self.sweep_notify.notified() => continue,
            }
            let now = Instant::now();
            let (after, next) = {
                let mut st = self.state.lock();
                let after = st.sweep(now);
                (after, st.sweep_at())
            };
            self.run(after);
            if next.is_none() {
                break;
            }
        }
        std::mem::forget(gone);
    }

    /// A grant cell for an async request that queues, from this thread's stash.
    pub(super) fn take_cell(&self) -> CellOf<M> {
        self.cells.get(self.slot_index())
    }

    /// Keeps the cell of an async request that is done with it in this thread's stash, if no
    /// waiter node refers to it any more (see `crate::core::cell`). Called without the pool
    /// lock (the stash's lock is only ever taken inside the pool's, never around it).
    pub(super) fn keep_cell(&self, cell: CellOf<M>) {
        self.cells.put(self.slot_index(), cell);
    }
}

/// The tokio-task front end: waits are async and bounded by tokio's timer, connects run in
/// spawned tasks (so they survive the request's cancellation), refills are spawned tasks.
#[derive(Debug)]
pub(crate) struct Task;

impl FrontEnd for Task {
    const TASK: bool = true;

    async fn wait_grant<M: Manager>(
        shared: &Shared<M>,
        key: usize,
        since: Option<Instant>,
        deadline: Deadline,
    ) -> Option<GrantOf<M>> {
        let wait = WaitGrant {
            shared,
            key,
            since,
            done: false,
        };
        deadline.bound(wait).await
    }

    async fn bound<T: Future + Send>(fut: T, limit: Deadline) -> Option<T::Output> {
        limit.bound(fut).await
    }

    async fn sleep(d: Duration) {
        Box::pin(tokio::time::sleep(d)).await;
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

        let (key, uid) = shared.state.lock().register(holder);
        tokio::spawn(
            shared
                .clone()
                .run_connect::<Task>(reservation, Some((key, uid))),
        );
        match Task::wait_grant(shared, key, None, limit)
            .await
            .map(|(g, _)| g)
        {
            Some(Grant::Conn { idle, key }) => Ok(Pooled::new(shared.clone(), key, idle, false)),
            Some(Grant::Failed(f)) => Err(Some(f)),
            Some(Grant::Closed) => Err(None),
            Some(Grant::Permit | Grant::Expired) => {
                unreachable!("permits and expiry go to queued waiters only")
            }
            None => Err(Some(ConnectFailure::TimedOut)),
        }
    }

    fn refill<M: Manager>(_shared: &Arc<Shared<M>>, reservations: Vec<Reservation<M>>) {
        for r in reservations {
            let shared = r.shared.clone();
            tokio::spawn(shared.run_connect::<Task>(r, None));
        }
    }
}
