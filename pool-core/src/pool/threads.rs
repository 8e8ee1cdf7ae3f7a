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
        allow_create: bool,
    ) -> Result<Pooled<M>, PoolError<M::Error>> {
        let now = Instant::now();
        let decided = match self.take_parked(holder, now) {
            Some(Ok(conn)) => return Ok(conn),
            Some(Err(checked)) => self.after_check(checked, allow_create)?,
            None => match self.look(holder, wait, now, allow_create)? {
                Ok(conn) => return Ok(conn),
                Err(step) => step,
            },
        };
        let step = match self.check_step(decided, allow_create)? {
            Ok(conn) => return Ok(conn),
            Err(next) => next,
        };
        let span = tracing::debug_span!("pool.get_blocking", pool = %self.config.name);
        let _enter = span.enter();
        block_on(self.acquire(holder, wait, Mode::Blocking, allow_create, now, step))
    }

    /// The blocking front end's first locked attempt, when nothing was parked for this thread.
    /// While nothing is free, it yields and looks again a few times before queueing (see
    /// `sync::YIELDS_BEFORE_QUEUE`); a look may find a connection parked meanwhile.
    pub(super) fn look(
        self: &Arc<Self>,
        holder: Holder,
        wait: Duration,
        start: Instant,
        allow_create: bool,
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
                return self.decide(d, at, start, allow_create, &mut None).map(Err);
            }
            looks -= 1;
            sync::yield_now();
            at = Instant::now();
            match self.take_parked(holder, at) {
                Some(Ok(conn)) => return Ok(Ok(conn)),
                Some(Err(checked)) => return self.after_check(checked, allow_create).map(Err),
                None => {}
            }
        }
    }
}
