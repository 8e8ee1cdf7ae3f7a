//! The pool: one core, two front ends (tokio tasks and OS threads).

use std::cell::Cell;
use std::future::Future;
use std::panic::Location;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::{self, ThreadId};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{Builder, Config};
use crate::core::{
    wake_all, Acquire, ConnectFailure, Grant, Holder, Idle, Limits, Retake, State, Wake,
};
use crate::error::{BuildError, Phase, PoolError};
use crate::guard::Pooled;
use crate::manager::{CloseReason, ConnMeta, Manager};
use crate::metrics::{HeldConn, Metrics, Status};
use crate::reaper;

static NEXT_POOL_UID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// (pool uid, idle key, connection id) of the connection this thread returned last.
    static AFFINITY: Cell<(u64, usize, u64)> = const { Cell::new((0, 0, 0)) };
    static THREAD_ID: ThreadId = thread::current().id();
}

impl Holder {
    #[track_caller]
    fn here() -> Holder {
        Holder {
            thread: THREAD_ID.with(|t| *t),
            task: tokio::task::try_id(),
            location: Location::caller(),
        }
    }
}

type StateOf<M> = State<<M as Manager>::Connection, <M as Manager>::Error>;

/// Everything a pool's handles, guards, background connects and reaper share.
pub(crate) struct Shared<M: Manager> {
    pub(crate) manager: M,
    pub(crate) config: Config,
    pub(crate) state: Mutex<StateOf<M>>,
    uid: u64,
    handles: AtomicUsize,
    drained: tokio::sync::Notify,
}

/// Which front end drives an acquisition.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// A tokio task: waits are async, connects run in spawned tasks.
    Async,
    /// An OS thread: waits park the thread, manager futures are driven on it.
    Blocking,
}

/// What the acquisition loop does next.
enum Step<C> {
    Start,
    Check(Idle<C>, usize),
    Connect,
}

/// A connection pool. Cheap to clone: clones share one pool. The pool is closed when the last
/// handle is dropped (connections still checked out are closed when they come back).
///
/// # Example
///
/// ```
/// use pool_core::{Manager, Pool};
///
/// struct Numbers;
/// impl Manager for Numbers {
///     type Connection = u32;
///     type Error = std::io::Error;
///     async fn connect(&self) -> Result<u32, std::io::Error> {
///         Ok(42)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = Pool::builder(Numbers).max_size(4).build().unwrap();
/// let conn = pool.get().await.unwrap();
/// assert_eq!(*conn, 42);
/// assert_eq!(pool.status().in_use, 1);
/// drop(conn);
/// assert_eq!(pool.status().idle, 1);
/// # }
/// ```
pub struct Pool<M: Manager> {
    pub(crate) shared: Arc<Shared<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        Pool {
            shared: self.shared.clone(),
        }
    }
}

impl<M: Manager> Drop for Pool<M> {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.close();
        }
    }
}

impl<M: Manager> std::fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared.config.name)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl<M: Manager> Pool<M> {
    /// A [`Builder`] with every default.
    pub fn builder(manager: M) -> Builder<M> {
        Builder::new(manager)
    }

    /// A pool with the default settings and `max_size`.
    ///
    /// # Errors
    /// [`BuildError::ZeroMaxSize`] when `max_size` is zero.
    pub fn new(manager: M, max_size: usize) -> Result<Self, BuildError> {
        Builder::new(manager).max_size(max_size).build()
    }

    pub(crate) fn from_parts(manager: M, config: Config) -> Self {
        let limits = Limits {
            max_size: config.max_size,
            min_idle: config.min_idle,
            max_lifetime: config.max_lifetime,
            jitter_percent: config.max_lifetime_jitter_percent,
            idle_timeout: config.idle_timeout,
            leak_threshold: config.leak_threshold,
            fail_fast_after: config.fail_fast_after,
        };
        let shared = Arc::new(Shared {
            manager,
            config,
            state: Mutex::new(State::new(limits)),
            uid: NEXT_POOL_UID.fetch_add(1, Ordering::Relaxed),
            handles: AtomicUsize::new(1),
            drained: tokio::sync::Notify::new(),
        });
        reaper::start(&shared);
        Pool { shared }
    }

    pub(crate) fn uid(&self) -> u64 {
        self.shared.uid
    }

    /// Gets a connection, waiting at most the configured `wait_timeout`.
    ///
    /// Served in order: an idle connection (the one this thread returned last, else the most
    /// recently returned), else a new one when below `max_size`, else a place in a FIFO queue.
    /// Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`PoolError::Timeout`] (with the phase and the last connect error), [`PoolError::Backend`]
    /// for a connect error that retrying would not heal, [`PoolError::Unavailable`] while the
    /// database is down, [`PoolError::Closed`].
    ///
    /// # Cancel safety
    /// Dropping the future at any point loses no capacity and no wake-up: a connection or permit
    /// granted to it is passed on, and a connect it started finishes in the background and the
    /// connection goes to the next request or to the idle set.
    #[track_caller]
    pub fn get(&self) -> impl Future<Output = Result<Pooled<M>, PoolError<M::Error>>> + Send + 'static {
        let wait = self.shared.config.wait_timeout;
        self.get_timeout(wait)
    }

    /// Like [`get`](Pool::get) with its own wait timeout; zero means "fail at once unless a
    /// connection is idle or can be opened".
    ///
    /// # Errors
    /// As [`get`](Pool::get).
    ///
    /// # Cancel safety
    /// As [`get`](Pool::get).
    #[track_caller]
    pub fn get_timeout(
        &self,
        wait: Duration,
    ) -> impl Future<Output = Result<Pooled<M>, PoolError<M::Error>>> + Send + 'static {
        let holder = Holder::here();
        let shared = self.shared.clone();
        let span = tracing::debug_span!("pool.get", pool = %shared.config.name);
        async move { shared.acquire(holder, wait, Mode::Async, true).await }.instrument(span)
    }

    /// Gets an idle connection if one is free now; never waits and never opens one. Checks that
    /// need I/O (reset, validate) run on this thread, as in [`get_blocking`](Pool::get_blocking).
    ///
    /// # Errors
    /// [`PoolError::Timeout`] with [`Phase::Wait`] when none is idle, [`PoolError::Closed`].
    #[track_caller]
    pub fn try_get(&self) -> Result<Pooled<M>, PoolError<M::Error>> {
        let holder = Holder::here();
        block_on(self.shared.acquire(holder, Duration::ZERO, Mode::Blocking, false))
    }

    /// Gets a connection for an OS thread, waiting (parked) at most the configured `wait_timeout`.
    ///
    /// The manager's futures are driven on this thread, so use it with managers that need no
    /// runtime (like `pool-sqlite`'s) and not from inside an async task.
    ///
    /// # Errors
    /// As [`get`](Pool::get).
    #[track_caller]
    pub fn get_blocking(&self) -> Result<Pooled<M>, PoolError<M::Error>> {
        let wait = self.shared.config.wait_timeout;
        self.get_blocking_timeout(wait)
    }

    /// Like [`get_blocking`](Pool::get_blocking) with its own wait timeout.
    ///
    /// # Errors
    /// As [`get`](Pool::get).
    #[track_caller]
    pub fn get_blocking_timeout(&self, wait: Duration) -> Result<Pooled<M>, PoolError<M::Error>> {
        let holder = Holder::here();
        let span = tracing::debug_span!("pool.get_blocking", pool = %self.shared.config.name);
        let _enter = span.enter();
        block_on(self.shared.acquire(holder, wait, Mode::Blocking, true))
    }

    /// A consistent snapshot of sizes and the queue.
    pub fn status(&self) -> Status {
        self.shared.state.lock().status()
    }

    /// Cumulative counters.
    pub fn metrics(&self) -> Metrics {
        self.shared.state.lock().stats
    }

    /// Who holds each checked-out connection, since when, and where it was acquired.
    pub fn held(&self) -> Vec<HeldConn> {
        self.shared.state.lock().held(Instant::now())
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// The configuration the pool was built with (`max_size` may since have been resized).
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Closes every idle connection now. Returns how many.
    pub fn close_idle(&self) -> usize {
        let closing = self.shared.state.lock().drain_idle(CloseReason::Manual);
        let n = closing.len();
        self.shared.close_all_conns(closing);
        n
    }

    /// Reclaims connections checked out for at least `age` (leaked holders): their capacity is
    /// released at once for other requests, and each connection is closed, not reused, when its
    /// holder drops it. Returns how many.
    pub fn close_stale(&self, age: Duration) -> usize {
        let (n, wakes) = self.shared.state.lock().reclaim(age, Instant::now());
        wake_all(wakes);
        n
    }

    /// [`close_idle`](Pool::close_idle) and [`close_stale`]`(0)`: every connection is closed or
    /// reclaimed; the pool stays usable and opens new ones on demand. Returns how many.
    ///
    /// [`close_stale`]: Pool::close_stale
    pub fn close_all(&self) -> usize {
        self.close_idle() + self.close_stale(Duration::ZERO)
    }

    /// Shuts the pool down: every waiting request gets [`PoolError::Closed`], so does every later
    /// one; idle connections are closed now, checked-out ones when they come back. Returns how
    /// many were closed now.
    pub fn close(&self) -> usize {
        self.shared.close()
    }

    /// [`close`](Pool::close), then waits (at most `timeout`) for checked-out connections to come
    /// back and be closed. Returns how many connections were closed in all.
    pub async fn close_graceful(&self, timeout: Duration) -> usize {
        let before = self.metrics().closed_total();
        self.close();
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.drained.notified();
            if self.status().size == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        usize::try_from(self.metrics().closed_total() - before).unwrap_or(usize::MAX)
    }

    /// Whether [`close`](Pool::close) was called (or every handle dropped).
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().is_closed()
    }

    /// Changes `max_size` at run time. Growing serves queued requests at once; shrinking closes
    /// idle connections now and checked-out ones as they come back.
    ///
    /// # Errors
    /// [`BuildError::ZeroMaxSize`], [`BuildError::Closed`].
    pub fn resize(&self, max_size: usize) -> Result<(), BuildError> {
        if max_size == 0 {
            return Err(BuildError::ZeroMaxSize);
        }
        let (wakes, closing) = {
            let mut st = self.shared.state.lock();
            if st.is_closed() {
                return Err(BuildError::Closed);
            }
            st.resize(max_size)
        };
        wake_all(wakes);
        self.shared.close_all_conns(closing);
        Ok(())
    }

    /// Waits until at least `min_idle` connections are idle, at most `timeout`. Returns whether
    /// they are.
    pub async fn wait_for_min_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let min = self.shared.config.min_idle;
        loop {
            if self.status().idle >= min {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

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

/// Capacity reserved for one connect. Dropped unused (a cancelled or panicking connect), it
/// gives the capacity back.
struct Reservation<M: Manager> {
    shared: Arc<Shared<M>>,
    armed: bool,
}

impl<M: Manager> Drop for Reservation<M> {
    fn drop(&mut self) {
        if self.armed {
            let wake = self.shared.state.lock().permit_unused();
            if let Some(w) = wake {
                w.wake();
            }
        }
    }
}

/// Waits for the grant of waiter `key` (async front end). Dropped before the grant is taken, it
/// removes the waiter and passes on anything granted to it.
struct WaitGrant<'a, M: Manager> {
    shared: &'a Shared<M>,
    key: usize,
    done: bool,
}

impl<M: Manager> Future for WaitGrant<'_, M> {
    type Output = Grant<M::Connection, M::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let grant = self.shared.state.lock().poll_waiter(self.key, |cur| match cur {
            Wake::Task(w) if w.will_wake(cx.waker()) => None,
            _ => Some(Wake::Task(cx.waker().clone())),
        });
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
    fn preferred(&self) -> Option<(usize, u64)> {
        let (uid, key, id) = AFFINITY.with(Cell::get);
        (uid == self.uid).then_some((key, id))
    }

    fn cancel_waiter(&self, key: usize) {
        let (wake, closing) = self.state.lock().cancel_waiter(key, Instant::now());
        if let Some(w) = wake {
            w.wake();
        }
        if let Some((c, r)) = closing {
            self.close_conn(c, r);
        }
    }

    fn timeout(&self, phase: Phase, start: Instant, last_error: Option<M::Error>) -> PoolError<M::Error> {
        self.state.lock().stats.timeouts += 1;
        PoolError::Timeout {
            phase,
            waited: start.elapsed(),
            last_error,
        }
    }

    /// Waits for the grant of waiter `key` until `deadline`; `None` when the time ran out (the
    /// waiter is then removed).
    async fn wait_grant(
        &self,
        key: usize,
        deadline: Instant,
        mode: Mode,
    ) -> Option<Grant<M::Connection, M::Error>> {
        match mode {
            Mode::Async => {
                let wait = WaitGrant {
                    shared: self,
                    key,
                    done: false,
                };
                tokio::time::timeout_at(deadline, wait).await.ok()
            }
            Mode::Blocking => loop {
                if let Some(g) = self.state.lock().poll_waiter(key, |cur| match cur {
                    Wake::Thread(_) => None,
                    _ => Some(Wake::Thread(thread::current())),
                }) {
                    return Some(g);
                }
                let now = Instant::now();
                if now >= deadline {
                    // A grant may have arrived since the check: cancelling passes it on.
                    self.cancel_waiter(key);
                    return None;
                }
                thread::park_timeout(deadline - now);
            },
        }
    }

    /// The acquisition state machine shared by both front ends.
    async fn acquire(
        self: &Arc<Self>,
        holder: Holder,
        wait: Duration,
        mode: Mode,
        allow_create: bool,
    ) -> Result<Pooled<M>, PoolError<M::Error>> {
        let start = Instant::now();
        let deadline = start + wait;
        let mut last_error: Option<M::Error> = None;
        let mut connect_budget: Option<Instant> = None;
        let mut attempt: u32 = 0;
        let mut first = true;
        let mut step = Step::Start;
        loop {
            step = match step {
                Step::Start => {
                    let now = Instant::now();
                    let decision = {
                        let mut st = self.state.lock();
                        if first {
                            st.stats.gets += 1;
                        }
                        st.acquire(
                            now,
                            self.preferred(),
                            holder,
                            !wait.is_zero() && now < deadline,
                            attempt == 0,
                            || match mode {
                                Mode::Async => Wake::None,
                                Mode::Blocking => Wake::Thread(thread::current()),
                            },
                        )
                    };
                    first = false;
                    match decision {
                        Acquire::Got(idle, key) => Step::Check(idle, key),
                        Acquire::Create if !allow_create => {
                            if let Some(w) = self.state.lock().permit_unused() {
                                w.wake();
                            }
                            return Err(self.timeout(Phase::Wait, start, None));
                        }
                        Acquire::Create => Step::Connect,
                        Acquire::Wait(key) => {
                            let grant = self.wait_grant(key, deadline, mode).await;
                            self.state.lock().stats.wait_time += now.elapsed();
                            match grant {
                                Some(Grant::Conn { idle, key }) => Step::Check(idle, key),
                                Some(Grant::Permit) => Step::Connect,
                                Some(Grant::Closed) => return Err(PoolError::Closed),
                                Some(Grant::Failed(_)) | None => {
                                    let phase = if attempt > 0 { Phase::Connect } else { Phase::Wait };
                                    return Err(self.timeout(phase, start, last_error));
                                }
                            }
                        }
                        Acquire::Full => {
                            let phase = if attempt > 0 { Phase::Connect } else { Phase::Wait };
                            return Err(self.timeout(phase, start, last_error));
                        }
                        Acquire::Unavailable(failures) => {
                            return Err(PoolError::Unavailable { failures })
                        }
                        Acquire::Closed => return Err(PoolError::Closed),
                    }
                }
                Step::Check(idle, key) => match self.check(idle, key, deadline, mode).await {
                    Ok(conn) => return Ok(conn),
                    Err(Retake::Got(idle, key)) => Step::Check(idle, key),
                    Err(Retake::Create) if !allow_create => {
                        if let Some(w) = self.state.lock().permit_unused() {
                            w.wake();
                        }
                        Step::Start
                    }
                    Err(Retake::Create) => Step::Connect,
                    Err(Retake::Restart) => Step::Start,
                    Err(Retake::Closed) => return Err(PoolError::Closed),
                },
                Step::Connect => {
                    let now = Instant::now();
                    let budget =
                        *connect_budget.get_or_insert(now + self.config.connect_timeout);
                    let limit = budget.min(deadline);
                    match self.connect(holder, limit, mode).await {
                        Ok(conn) => return Ok(conn),
                        Err(None) => return Err(PoolError::Closed),
                        Err(Some(ConnectFailure::TimedOut)) => {
                            return Err(self.timeout(Phase::Connect, start, last_error));
                        }
                        Err(Some(ConnectFailure::Error(e))) => {
                            attempt += 1;
                            let delay = backoff(attempt);
                            let retry = self.config.retry_connect
                                && self.manager.is_retryable(&e)
                                && Instant::now() + delay < limit;
                            if !retry {
                                return Err(PoolError::Backend(e));
                            }
                            last_error = Some(e);
                            match mode {
                                Mode::Async => tokio::time::sleep(delay).await,
                                Mode::Blocking => thread::sleep(delay),
                            }
                            Step::Start
                        }
                    }
                }
            };
        }
    }

    /// Checks an idle connection before hand-out: lifetime, idle timeout, broken, then reset (if
    /// dirty) or validate (if idle long enough). On failure the connection is closed and the
    /// request keeps its capacity.
    async fn check(
        self: &Arc<Self>,
        idle: Idle<M::Connection>,
        key: usize,
        deadline: Instant,
        mode: Mode,
    ) -> Result<Pooled<M>, Retake<M::Connection>> {
        let now = Instant::now();
        let Idle { conn, meta, dirty } = idle;
        let idle_for = now.saturating_duration_since(meta.last_used);
        let mut guard = Pooled::new(self.clone(), key, conn, meta, true);
        let cfg = &self.config;
        let mut reason = None;
        {
            let (conn, meta) = guard.inner.as_mut().expect("fresh guard");
            if meta.is_expired(now) {
                reason = Some(CloseReason::Stale);
            } else if cfg.idle_timeout.is_some_and(|t| idle_for >= t) {
                reason = Some(CloseReason::Idle);
            } else if self.manager.is_broken(conn, meta) {
                reason = Some(CloseReason::Broken);
            } else if dirty {
                let limit = cfg.validate_timeout;
                let res = bounded(self.manager.reset(conn), limit, deadline, mode).await;
                if !matches!(res, Some(Ok(()))) {
                    reason = Some(CloseReason::ResetFailed);
                }
            } else if cfg.validate_after_idle.is_some_and(|w| idle_for >= w) {
                let limit = cfg.validate_timeout;
                let res = bounded(self.manager.validate(conn, meta), limit, deadline, mode).await;
                if !matches!(res, Some(Ok(()))) {
                    reason = Some(CloseReason::Invalid);
                }
            }
        }
        match reason {
            None => {
                guard.checking = false;
                Ok(guard)
            }
            Some(reason) => {
                let (conn, meta) = guard.inner.take().expect("fresh guard");
                tracing::debug!(pool = %cfg.name, conn = meta.id, %reason, "connection failed its checkout check");
                let retake = self.state.lock().check_failed(key, reason, Instant::now());
                self.close_conn(conn, reason);
                Err(retake)
            }
        }
    }

    /// Opens a connection with the capacity this request holds. `Err(None)`: the pool closed.
    async fn connect(
        self: &Arc<Self>,
        holder: Holder,
        limit: Instant,
        mode: Mode,
    ) -> Result<Pooled<M>, Option<ConnectFailure<M::Error>>> {
        let reservation = Reservation {
            shared: self.clone(),
            armed: true,
        };
        match mode {
            Mode::Async => {
                let (key, uid) = self.state.lock().register(holder);
                tokio::spawn(self.clone().run_connect(reservation, Some((key, uid))));
                match self.wait_grant(key, limit, mode).await {
                    Some(Grant::Conn { idle, key }) => {
                        Ok(Pooled::new(self.clone(), key, idle.conn, idle.meta, false))
                    }
                    Some(Grant::Failed(f)) => Err(Some(f)),
                    Some(Grant::Closed) => Err(None),
                    Some(Grant::Permit) => unreachable!("permits go to queued waiters only"),
                    None => Err(Some(ConnectFailure::TimedOut)),
                }
            }
            Mode::Blocking => {
                let mut reservation = reservation;
                let result = self.manager.connect().await;
                reservation.armed = false;
                let now = Instant::now();
                match result {
                    Ok(conn) => {
                        let held = self.state.lock().connected_inline(now, holder);
                        match held {
                            Ok((key, meta)) => Ok(Pooled::new(self.clone(), key, conn, meta, false)),
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

    /// A background connect (spawned): the connection goes to `requester` if it still waits, else
    /// to the queue or the idle set; a failure frees the capacity for the next request.
    async fn run_connect(
        self: Arc<Self>,
        mut reservation: Reservation<M>,
        requester: Option<(usize, u64)>,
    ) {
        let result = tokio::time::timeout(self.config.connect_timeout, self.manager.connect()).await;
        reservation.armed = false;
        let now = Instant::now();
        match result {
            Ok(Ok(conn)) => {
                let (wake, closing) = self.state.lock().connected(conn, now, requester);
                if let Some(w) = wake {
                    w.wake();
                }
                if let Some((c, r)) = closing {
                    self.close_conn(c, r);
                }
            }
            Ok(Err(e)) => self.connect_failed(ConnectFailure::Error(e), now, requester),
            Err(_) => self.connect_failed(ConnectFailure::TimedOut, now, requester),
        }
    }

    fn connect_failed(
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

    /// Starts `n` background connects whose capacity is already reserved (min_idle refill).
    pub(crate) fn spawn_refill(self: &Arc<Self>, n: usize, blocking: bool) {
        for _ in 0..n {
            let reservation = Reservation {
                shared: self.clone(),
                armed: true,
            };
            if blocking {
                block_on(self.clone().run_connect_blocking(reservation));
            } else {
                tokio::spawn(self.clone().run_connect(reservation, None));
            }
        }
    }

    async fn run_connect_blocking(self: Arc<Self>, mut reservation: Reservation<M>) {
        let result = self.manager.connect().await;
        reservation.armed = false;
        let now = Instant::now();
        match result {
            Ok(conn) => {
                let (wake, closing) = self.state.lock().connected(conn, now, None);
                if let Some(w) = wake {
                    w.wake();
                }
                if let Some((c, r)) = closing {
                    self.close_conn(c, r);
                }
            }
            Err(e) => self.connect_failed(ConnectFailure::Error(e), now, None),
        }
    }

    /// Check-in from a guard's `Drop`.
    pub(crate) fn checkin(&self, key: usize, mut conn: M::Connection, mut meta: ConnMeta, broken: bool) {
        let now = Instant::now();
        let discard = if thread::panicking() {
            Some(CloseReason::Panicked)
        } else if broken || self.manager.is_broken(&mut conn, &meta) {
            Some(CloseReason::Broken)
        } else if meta.is_expired(now) {
            Some(CloseReason::Stale)
        } else {
            None
        };
        let dirty = discard.is_none() && self.manager.needs_reset(&mut conn);
        meta.uses += 1;
        meta.last_used = now;
        let conn_id = meta.id;
        let (r, closed) = {
            let mut st = self.state.lock();
            let r = st.checkin(key, Idle { conn, meta, dirty }, discard, now);
            (r, st.is_closed())
        };
        if let Some(k) = r.idle_key {
            AFFINITY.with(|a| a.set((self.uid, k, conn_id)));
        }
        if let Some(w) = r.wake {
            w.wake();
        }
        if let Some((c, reason)) = r.closing {
            self.close_conn(c, reason);
        }
        if closed {
            self.drained.notify_waiters();
        }
    }

    /// A holder detaches (`conn` = None) or closes its connection.
    pub(crate) fn forget(&self, key: usize, conn: Option<M::Connection>) {
        let wake = self.state.lock().forget(key, conn.is_some());
        if let Some(w) = wake {
            w.wake();
        }
        if let Some(c) = conn {
            self.close_conn(c, CloseReason::Manual);
        }
        self.drained.notify_waiters();
    }

    pub(crate) fn close_conn(&self, conn: M::Connection, reason: CloseReason) {
        tracing::debug!(pool = %self.config.name, %reason, "closing connection");
        self.manager.close(conn, reason);
    }

    pub(crate) fn close_all_conns(&self, closing: Vec<(M::Connection, CloseReason)>) {
        for (c, r) in closing {
            self.close_conn(c, r);
        }
    }

    pub(crate) fn close(&self) -> usize {
        let (wakes, closing) = self.state.lock().close();
        wake_all(wakes);
        let n = closing.len();
        self.close_all_conns(closing);
        self.drained.notify_waiters();
        n
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().is_closed()
    }

    /// One maintenance pass (reaper): close expired and idle connections, warn about leaks, refill
    /// `min_idle`.
    pub(crate) fn maintain(self: &Arc<Self>, blocking: bool) {
        let (closing, leaks, refill) = self.state.lock().reap(Instant::now());
        self.close_all_conns(closing);
        for leak in leaks {
            tracing::warn!(
                pool = %self.config.name,
                conn = leak.conn_id,
                held_for = ?leak.held_for,
                acquired_at = %leak.holder.location,
                thread = ?leak.holder.thread,
                task = ?leak.holder.task,
                "connection held longer than the leak threshold"
            );
        }
        self.spawn_refill(refill, blocking);
    }
}

/// Runs a manager future bounded by `limit` and the request's deadline (async front end only;
/// the blocking front end runs it to completion).
async fn bounded<F: Future>(fut: F, limit: Duration, deadline: Instant, mode: Mode) -> Option<F::Output> {
    match mode {
        Mode::Async => {
            let until = (Instant::now() + limit).min(deadline);
            tokio::time::timeout_at(until, fut).await.ok()
        }
        Mode::Blocking => Some(fut.await),
    }
}

/// Backoff before connect retry `attempt` (1-based): 25 ms doubling to 1 s, with jitter.
fn backoff(attempt: u32) -> Duration {
    let base = 25u64 << attempt.saturating_sub(1).min(6);
    let ms = base.min(1000);
    Duration::from_millis(ms / 2 + fastrand::u64(0..=ms / 2))
}
