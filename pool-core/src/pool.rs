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

use crate::sync::{self, Mutex, ThreadWaker};
use tokio::time::Instant;

use crate::config::{Builder, Config};
use crate::core::cell::{GrantCell, Stashes};
use crate::core::{
    wake_all, Acquire, Ask, ConnectFailure, Entry, Grant, Holder, Idle, Limits, Retake, State,
    Sweeper, Wake,
};
use crate::deadline::Deadline;
use crate::error::{BuildError, Phase, PoolError, ResizeError};
use crate::guard::Pooled;
use crate::manager::{BlockingManager, CloseReason, Manager};
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
    /// `Limits::check_window`, for check-in.
    check_window: Option<Duration>,
    handles: AtomicUsize,
    drained: tokio::sync::Notify,
    /// Wakes the waiters' sweeper when a waiter with an earlier deadline queues.
    sweep_notify: tokio::sync::Notify,
    /// The per-thread fast path (see `crate::fast`): the slots, how many connections are parked
    /// in them, whether the fast path is open, and how many checkouts it served.
    pub(crate) slots: Box<[crate::fast::Slot<M::Connection>]>,
    pub(crate) parked: sync::AtomicUsize,
    pub(crate) fast: sync::AtomicBool,
    pub(crate) fast_gets: AtomicU64,
    /// Task and thread scopes' slots for reuse (see `crate::scope`).
    pub(crate) scope_slots: crate::scope::Spares<M>,
    /// Spare grant cells, one stash per fast-path slot (see `crate::core::cell`).
    cells: Stashes<M::Connection, M::Error>,
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
enum Step<M: Manager> {
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
type Handed<M> = Result<Pooled<M>, Step<M>>;

/// Why the synchronous part of a checkout check did not hand the connection out.
pub(crate) enum Checked<M: Manager> {
    /// An I/O check is due.
    Io(Pooled<M>, CloseReason),
    /// The connection failed; what the request holds now.
    Failed(Retake<M::Connection>),
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
            check_window: match (config.idle_timeout, config.validate_after_idle) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            queue_bypass: config.queue_bypass,
        };
        let check_window = limits.check_window;
        let slots = crate::fast::slots();
        let cells = Stashes::new(slots.len());
        let shared = Arc::new(Shared {
            check_window,
            manager,
            config,
            state: Mutex::new(State::new(limits)),
            uid: NEXT_POOL_UID.fetch_add(1, Ordering::Relaxed),
            handles: AtomicUsize::new(1),
            drained: tokio::sync::Notify::new(),
            sweep_notify: tokio::sync::Notify::new(),
            slots,
            cells,
            parked: sync::AtomicUsize::new(0),
            fast: sync::AtomicBool::new(false),
            fast_gets: AtomicU64::new(0),
            scope_slots: crate::scope::Spares::default(),
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
    /// `wait_timeout` is the deadline of the whole call: queueing, checking idle connections and
    /// connecting. Inside it, `validate_timeout` bounds each `reset`/`validate` and
    /// `connect_timeout` bounds this request's connect attempts (retries included); neither ever
    /// extends the call. When the deadline passes, the [`PoolError::Timeout`] names the phase
    /// that was running ([`Phase`]) and carries the last driver error this request saw.
    /// `Duration::MAX` means no deadline.
    ///
    /// # Panics
    /// When polled outside a tokio runtime (it needs tokio's timer and spawns connects).
    ///
    /// # Cancel safety
    /// Dropping the future at any point loses no capacity and no wake-up: a connection or permit
    /// granted to it is passed on, and a connect it started finishes in the background and the
    /// connection goes to the next request or to the idle set.
    #[track_caller]
    pub fn get(
        &self,
    ) -> impl Future<Output = Result<Pooled<M>, PoolError<M::Error>>> + Send + 'static {
        let wait = self.shared.config.wait_timeout;
        self.get_timeout(wait)
    }

    /// Like [`get`](Pool::get) with its own deadline `wait` for the whole call. Zero means "never
    /// queue": the call succeeds only with an idle connection or one it can open, and is then
    /// bounded by `connect_timeout`. `Duration::MAX` means no deadline.
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
        Get {
            holder: Holder::here(),
            shared: self.shared.clone(),
            wait,
            state: GetState::Init,
        }
    }

    /// Gets an idle connection if one is ready now. It never waits, never opens a connection and
    /// never does I/O, so it answers at once in any context (also inside an async task). A
    /// connection that fails the synchronous checks (expired, idle too long, broken) is closed
    /// and the next idle one is tried; one that needs an I/O check first (a `reset` or a
    /// `validate`) is left idle, unchecked, for the next [`get`](Pool::get), and this call fails.
    ///
    /// # Errors
    /// [`PoolError::Timeout`] with [`Phase::Wait`] when no connection is ready,
    /// [`PoolError::Closed`].
    #[track_caller]
    pub fn try_get(&self) -> Result<Pooled<M>, PoolError<M::Error>> {
        self.shared.try_get(Holder::here())
    }

    /// A consistent snapshot of sizes and the queue.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Cumulative counters.
    pub fn metrics(&self) -> Metrics {
        let mut m = self.shared.state.lock().stats;
        m.gets += self.shared.fast_gets.load(Ordering::Relaxed);
        m
    }

    /// Who holds each checked-out connection, since when, and where it was acquired.
    pub fn held(&self) -> Vec<HeldConn> {
        self.shared.with_flushed(|st| st.held(Instant::now()))
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
        let closing = self
            .shared
            .with_flushed(|st| st.drain_idle(CloseReason::Manual));
        let n = closing.len();
        self.shared.close_all_conns(closing);
        n
    }

    /// Reclaims connections checked out for at least `age`, presumed leaked by their holders:
    /// their capacity is released at once for other requests, and each connection is closed
    /// (counted as [`CloseReason::Leaked`]), not reused, when its holder drops it. Returns how
    /// many. (Formerly `close_stale`; "stale" is reserved for connections past `max_lifetime`.)
    pub fn reclaim_held(&self, age: Duration) -> usize {
        let (n, wakes) = self
            .shared
            .with_flushed(|st| st.reclaim(age, Instant::now()));
        wake_all(wakes);
        n
    }

    /// [`close_idle`](Pool::close_idle) and [`reclaim_held`]`(0)`: every connection is closed or
    /// reclaimed; the pool stays usable and opens new ones on demand. Returns how many.
    ///
    /// [`reclaim_held`]: Pool::reclaim_held
    pub fn close_all(&self) -> usize {
        self.close_idle() + self.reclaim_held(Duration::ZERO)
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
        let deadline = Deadline::after(Instant::now(), timeout);
        loop {
            let notified = self.shared.drained.notified();
            let now = Instant::now();
            if self.status().size == 0 || deadline.passed(now) {
                break;
            }
            // Check-ins notify; connects finishing after the close are caught by the short cap.
            let cap = Deadline::after(now, Duration::from_millis(10)).min(deadline);
            let _ = cap.bound(notified).await;
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
    /// [`ResizeError::ZeroMaxSize`], [`ResizeError::Closed`].
    pub fn resize(&self, max_size: usize) -> Result<(), ResizeError> {
        if max_size == 0 {
            return Err(ResizeError::ZeroMaxSize);
        }
        let (wakes, closing) = self.shared.with_flushed(|st| {
            if st.is_closed() {
                return Err(ResizeError::Closed);
            }
            Ok(st.resize(max_size))
        })?;
        wake_all(wakes);
        self.shared.close_all_conns(closing);
        Ok(())
    }

    /// Waits until at least `min_idle` connections are idle, at most `timeout`. Returns whether
    /// they are.
    pub async fn wait_for_min_idle(&self, timeout: Duration) -> bool {
        let deadline = Deadline::after(Instant::now(), timeout);
        let min = self.shared.config.min_idle;
        loop {
            if self.status().idle >= min {
                return true;
            }
            if deadline.passed(Instant::now()) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The thread front end: only for managers whose futures run on a plain thread.
impl<M: BlockingManager> Pool<M> {
    /// Gets a connection for an OS thread, waiting (parked) at most the configured `wait_timeout`.
    ///
    /// When nothing is free, it first yields the CPU and looks again a few times before it
    /// queues: with more threads than CPUs, the connections that are out mostly belong to
    /// preempted threads that return them as soon as they run, and a thread that looks again
    /// takes one without a trip through the queue. It never takes one ahead of a request that
    /// has queued. `Metrics::waits` and `wait_time` count queued requests and their time in
    /// the queue only.
    ///
    /// The manager's futures are driven on this thread, so it needs a [`BlockingManager`] (one
    /// whose futures need no runtime, like `pool-sqlite`'s). Do not call it from inside an async
    /// task: it blocks the worker thread.
    ///
    /// The call's deadline is `wait_timeout` (queueing, checks and connecting), and
    /// `connect_timeout` and `validate_timeout` bound each connect and check inside it; a
    /// manager future that blocks inside a poll (a blocking driver call) cannot be cut short
    /// and is judged when it returns.
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
        self.shared.get_blocking(Holder::here(), wait, true)
    }
}

type SlowGet<M> =
    Pin<Box<dyn Future<Output = Result<Pooled<M>, PoolError<<M as Manager>::Error>>> + Send>>;

/// The future of [`Pool::get`]. Its fast path (an idle connection that needs no I/O check)
/// completes in the first poll without allocating, and so does queueing: the waiter lives in the
/// pool's queue and needs no timer of its own (the pool's sweeper task expires overdue waiters).
/// Only connecting and I/O checks run in a boxed slow path.
///
/// A queued request receives its grant in a [`GrantCell`] it shares with its waiter node, and
/// picks it up without the pool's lock (see `crate::core::cell`).
struct Get<M: Manager> {
    shared: Arc<Shared<M>>,
    holder: Holder,
    wait: Duration,
    state: GetState<M>,
}

impl<M: Manager> Drop for Get<M> {
    fn drop(&mut self) {
        if let GetState::Waiting { key, cell, .. } =
            std::mem::replace(&mut self.state, GetState::Done)
        {
            // Under the lock: removes the node, or passes on a grant that arrived.
            let (wake, closing) =
                self.shared
                    .state
                    .lock_spinning()
                    .cancel_cell_waiter(key, &cell, Instant::now());
            self.shared.keep_cell(cell);
            self.shared.after_unlock(wake, closing);
        }
    }
}

/// A queued request's cell, shared with its waiter node.
type CellOf<M> = Arc<GrantCell<<M as Manager>::Connection, <M as Manager>::Error>>;

enum GetState<M: Manager> {
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
        match std::mem::replace(&mut this.state, GetState::Done) {
            GetState::Init => {
                // Spend tokio's cooperative budget even when the connection is there at once, so
                // a task looping on `get` yields in time and no other task starves. Checked before
                // anything is taken: a task out of budget holds nothing while it yields. It wakes
                // itself at once rather than through `poll_proceed`'s deferred wake-up: the
                // worker then queues it behind the others (measured: per-task fairness 0.8 -> 0.95+
                // with 256 tasks on 2 workers, where deferred wake-ups let some tasks run 3x as
                // often as others).
                if !tokio::task::coop::has_budget_remaining() {
                    cx.waker().wake_by_ref();
                    this.state = GetState::Init;
                    return Poll::Pending;
                }
                let Poll::Ready(coop) = tokio::task::coop::poll_proceed(cx) else {
                    this.state = GetState::Init;
                    return Poll::Pending;
                };
                let out = this.start(cx);
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
    fn start(&mut self, cx: &mut Context<'_>) -> Poll<Result<Pooled<M>, PoolError<M::Error>>> {
        let shared = &self.shared;
        let now = Instant::now();
        let (decided, _span) = match shared.take_parked(self.holder, now) {
            // The per-thread fast path: the connection this thread parked, without the pool lock.
            Some(Ok(conn)) => return Poll::Ready(Ok(conn)),
            Some(Err(checked)) => (shared.after_check(checked, true), None),
            None => {
                let span = tracing::debug_span!("pool.get", pool = %shared.config.name).entered();
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
                        Err(checked) => shared.after_check(checked, true),
                    },
                    Acquire::Wait(key, Some(cell)) => {
                        // The waker is stored with the waiter: nothing more to do until woken.
                        self.state = GetState::Waiting {
                            key,
                            start: now,
                            cell,
                        };
                        return Poll::Pending;
                    }
                    d => shared.decide(d, now, now, true, &mut None),
                };
                (decided, Some(span))
            }
        };
        match decided {
            Err(e) => Poll::Ready(Err(e)),
            Ok(step) => self.continue_with(cx, step, now),
        }
    }

    /// A later poll while queued: takes the grant if one arrived.
    fn poll_waiting(
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
        shared.after_unlock(next, None);
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
    fn continue_with(
        &mut self,
        cx: &mut Context<'_>,
        step: Step<M>,
        start: Instant,
    ) -> Poll<Result<Pooled<M>, PoolError<M::Error>>> {
        let shared = &self.shared;
        let step = match shared.check_step(step, true) {
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

/// Whether [`Shared::begin`] counts its request in [`Metrics::gets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    Yes,
    /// A later step of a request that was counted already.
    No,
    /// A look of the blocking front end that is retried if it finds nothing free (counted by the
    /// look that decides).
    UnlessFull,
}

impl<M: Manager> Shared<M> {
    /// [`Pool::try_get`]: synchronous checks only, no I/O, no wait.
    fn try_get(self: &Arc<Self>, holder: Holder) -> Result<Pooled<M>, PoolError<M::Error>> {
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

    /// The blocking front end: the fast path inline, the rest driven on this thread.
    fn get_blocking(
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
    fn look(
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

/// Stores this task's waker with a queued request, unless the stored one already wakes it.
fn task_wake(waker: &Waker) -> impl FnOnce(&Wake) -> Option<Wake> + '_ {
    |cur| match cur {
        Wake::Task(w) if w.will_wake(waker) => None,
        _ => Some(Wake::Task(waker.clone())),
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
            self.shared.permit_unused();
            self.shared.drained.notify_waiters();
        }
    }
}

/// Waits for the grant of waiter `key` (async front end). Dropped before the grant is taken, it
/// removes the waiter and passes on anything granted to it.
struct WaitGrant<'a, M: Manager> {
    shared: &'a Shared<M>,
    key: usize,
    since: Option<Instant>,
    done: bool,
}

impl<M: Manager> Future for WaitGrant<'_, M> {
    type Output = (Grant<M::Connection, M::Error>, Instant);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (grant, next) =
            self.shared
                .state
                .lock()
                .poll_waiter(self.key, self.since, task_wake(cx.waker()));
        self.shared.after_unlock(next, None);
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
        self.after_unlock(wake, closing);
    }

    /// What a core operation left to do once the lock is released: wake a request, close a
    /// connection.
    fn after_unlock(&self, wake: Option<Wake>, closing: Option<(M::Connection, CloseReason)>) {
        if let Some(w) = wake {
            w.wake();
        }
        if let Some((c, r)) = closing {
            self.close_conn(c, r);
        }
    }

    /// Gives back capacity reserved for a connect that will not run.
    fn permit_unused(&self) {
        let wake = self.state.lock().permit_unused();
        self.after_unlock(wake, None);
    }

    fn timeout(
        &self,
        phase: Phase,
        start: Instant,
        last_error: Option<M::Error>,
    ) -> PoolError<M::Error> {
        self.state.lock().stats.timeouts += 1;
        PoolError::Timeout {
            phase,
            waited: start.elapsed(),
            last_error,
        }
    }

    /// Waits for the grant of waiter `key` until `deadline`; `None` when the time ran out (the
    /// waiter is then removed).
    /// `since`: when the request queued (its waiting time is counted), `None` for a connect.
    async fn wait_grant(
        &self,
        key: usize,
        since: Option<Instant>,
        deadline: Deadline,
        mode: Mode,
    ) -> Option<(Grant<M::Connection, M::Error>, Instant)> {
        match mode {
            Mode::Async => {
                let wait = WaitGrant {
                    shared: self,
                    key,
                    since,
                    done: false,
                };
                deadline.bound(wait).await
            }
            Mode::Blocking => loop {
                // A short turn comes soon: yield (watching the flag) before parking.
                #[allow(clippy::reversed_empty_ranges)] // zero under loom
                for _ in 0..sync::YIELDS_BEFORE_PARK {
                    if ThreadWaker::take_flag() {
                        break;
                    }
                    thread::yield_now();
                }
                let (grant, next) = self.state.lock().poll_waiter(key, since, |cur| match cur {
                    Wake::Thread(_) => None,
                    _ => Some(Wake::Thread(ThreadWaker::for_this_thread())),
                });
                self.after_unlock(next, None);
                if grant.is_some() {
                    return grant;
                }
                let now = Instant::now();
                match deadline.remaining(now) {
                    Some(left) if left.is_zero() => {
                        // A grant may have arrived since the check: cancelling passes it on.
                        self.cancel_waiter(key);
                        return None;
                    }
                    Some(left) => sync::park_timeout(left),
                    None => sync::park(),
                }
            },
        }
    }

    /// Asks the core for a connection: the locked part of every acquisition.
    /// `waker`: the task to wake when queued (async front end; the acquisition's own poll
    /// replaces a no-op one), or `None` to unpark this thread. `expire_after`: the pool's sweeper
    /// expires the waiter after this long (else the caller bounds its own wait). `cell`: a queued
    /// request receives its grant in a cell it shares with its node (`Get`), else in its node.
    /// `count`: whether this counts as a get in the metrics.
    fn begin(
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
        let mut flushed = Vec::new();
        // A request that will likely queue (the fast path is closed, and not for `min_idle`)
        // takes its grant cell before locking; one that queues unexpectedly takes it under the
        // lock. Either way from this thread's stash: no allocation in steady state.
        let mut spare = (cell && self.config.min_idle == 0 && !self.fast.load(Ordering::Relaxed))
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
            self.spawn_refill(refill, false);
        }
        decision
    }

    /// The next step for a core decision, or the error that ends the acquisition.
    fn decide(
        &self,
        decision: Acquire<M::Connection, M::Error>,
        now: Instant,
        start: Instant,
        allow_create: bool,
        last_error: &mut Option<M::Error>,
    ) -> Result<Step<M>, PoolError<M::Error>> {
        match decision {
            Acquire::Got(idle, key) => Ok(Step::Check(idle, key, now)),
            Acquire::Create if !allow_create => {
                self.permit_unused();
                Err(self.timeout(Phase::Wait, start, None))
            }
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
            Acquire::Unavailable(failures) => Err(PoolError::Unavailable { failures }),
            Acquire::Closed => Err(PoolError::Closed),
        }
    }

    /// The next step for what a waiter was granted.
    fn granted(
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
    fn retake(
        &self,
        retake: Retake<M::Connection>,
        allow_create: bool,
    ) -> Result<Step<M>, PoolError<M::Error>> {
        match retake {
            Retake::Got(idle, key) => Ok(Step::Check(idle, key, Instant::now())),
            Retake::Create if !allow_create => {
                self.permit_unused();
                Ok(Step::Start)
            }
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
    async fn acquire(
        self: &Arc<Self>,
        holder: Holder,
        wait: Duration,
        mode: Mode,
        allow_create: bool,
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
                    let waker = match mode {
                        Mode::Async => Some(Waker::noop()),
                        Mode::Blocking => None,
                    };
                    let ask = Ask {
                        holder,
                        may_wait: !wait.is_zero(),
                        fail_fast: attempt == 0,
                    };
                    let d = self.begin(ask, now, waker, None, false, Count::No);
                    self.decide(d, now, start, allow_create, &mut last_error)?
                }
                Step::Wait(key, since) => {
                    let (grant, woke) =
                        match self.wait_grant(key, Some(since), deadline, mode).await {
                            Some((g, woke)) => (Some(g), woke),
                            None => {
                                let now = Instant::now();
                                self.state.lock().stats.wait_time += now - since;
                                (None, now)
                            }
                        };
                    // Queued: the phase is `Wait` even after failed connects (their error is kept).
                    if grant.is_none() {
                        return Err(self.timeout(Phase::Wait, start, last_error));
                    }
                    self.granted(grant, woke, start, &mut last_error)?
                }
                check @ Step::Check(..) => match self.check_step(check, allow_create)? {
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
                    match Box::pin(self.check_io(guard, kind, limit, mode)).await {
                        Ok(conn) => return Ok(conn),
                        Err((retake, err)) => {
                            if err.is_some() {
                                last_error = err;
                            }
                            if deadline.passed(Instant::now()) {
                                self.abandon(retake);
                                return Err(self.timeout(phase, start, last_error));
                            }
                            self.retake(retake, allow_create)?
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
                    match Box::pin(self.connect(holder, limit, mode)).await {
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
                                && limit.allows(Instant::now(), delay);
                            if !retry {
                                return Err(PoolError::Backend(e));
                            }
                            last_error = Some(e);
                            match mode {
                                Mode::Async => Box::pin(tokio::time::sleep(delay)).await,
                                Mode::Blocking => thread::sleep(delay),
                            }
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
    fn put_back(&self, mut guard: Pooled<M>) {
        let Some(entry) = guard.inner.take() else {
            return;
        };
        debug_assert!(guard.lease.is_none(), "a checked connection is not leased");
        let r = self
            .state
            .lock()
            .checkin(guard.key, entry, None, Instant::now());
        self.after_unlock(r.wake, r.closing);
    }

    /// Gives back what a request that ends holds after a failed check.
    fn abandon(self: &Arc<Self>, retake: Retake<M::Connection>) {
        match retake {
            Retake::Got(idle, key) => self.put_back(Pooled::new(self.clone(), key, idle, true)),
            Retake::Create => self.permit_unused(),
            Retake::Restart | Retake::Closed => {}
        }
    }

    /// The owned, boxed slow path of [`Get`].
    fn slow(
        self: Arc<Self>,
        holder: Holder,
        wait: Duration,
        start: Instant,
        step: Step<M>,
    ) -> SlowGet<M> {
        Box::pin(async move {
            self.acquire(holder, wait, Mode::Async, true, start, step)
                .await
        })
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
    fn check_step(
        self: &Arc<Self>,
        step: Step<M>,
        allow_create: bool,
    ) -> Result<Handed<M>, PoolError<M::Error>> {
        let Step::Check(idle, key, now) = step else {
            return Ok(Err(step));
        };
        Ok(match self.check_sync(idle, key, now) {
            Ok(conn) => Ok(conn),
            Err(checked) => Err(self.after_check(checked, allow_create)?),
        })
    }

    /// The step after a connection did not pass the synchronous checks.
    fn after_check(
        &self,
        checked: Checked<M>,
        allow_create: bool,
    ) -> Result<Step<M>, PoolError<M::Error>> {
        match checked {
            Checked::Io(guard, kind) => Ok(Step::Io(guard, kind)),
            Checked::Failed(r) => self.retake(r, allow_create),
        }
    }

    /// Runs the I/O check due on `guard`: `reset` (when `kind` is `ResetFailed`) or `validate`,
    /// bounded by `limit`. A failure closes the connection and returns what the request holds
    /// then, with the driver's error (`None` when the check timed out).
    async fn check_io(
        self: &Arc<Self>,
        mut guard: Pooled<M>,
        kind: CloseReason,
        limit: Deadline,
        mode: Mode,
    ) -> Result<Pooled<M>, (Retake<M::Connection>, Option<M::Error>)> {
        let entry = guard.inner.as_mut().expect("fresh guard");
        let (conn, meta) = (&mut entry.conn, &entry.meta);
        let res = if kind == CloseReason::ResetFailed {
            bounded(self.manager.reset(conn), limit, mode).await
        } else {
            bounded(self.manager.validate(conn, meta), limit, mode).await
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
    fn fail_check(&self, mut guard: Pooled<M>, reason: CloseReason) -> Retake<M::Connection> {
        let entry = guard.inner.take().expect("fresh guard");
        tracing::debug!(pool = %self.config.name, conn = entry.meta.id, %reason, "connection failed its checkout check");
        let retake = self
            .state
            .lock()
            .check_failed(guard.key, reason, Instant::now());
        self.close_conn(entry.conn, reason);
        retake
    }

    /// Opens a connection with the capacity this request holds. `Err(None)`: the pool closed.
    async fn connect(
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
    async fn run_connect(
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

    /// Expires queued async requests whose wait timeout passed. One task per pool while such
    /// requests wait, instead of a timer per request; it stops when none is left.
    async fn sweeper(self: Arc<Self>) {
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
            let (wakes, next) = {
                let mut st = self.state.lock();
                let wakes = st.sweep(now);
                (wakes, st.sweep_at())
            };
            wake_all(wakes);
            if next.is_none() {
                break;
            }
        }
        std::mem::forget(gone);
    }

    /// A grant cell for an async request that queues, from this thread's stash.
    fn take_cell(&self) -> CellOf<M> {
        self.cells.get(self.slot_index())
    }

    /// Keeps the cell of an async request that is done with it in this thread's stash, if no
    /// waiter node refers to it any more (see `crate::core::cell`). Called without the pool
    /// lock (the stash's lock is only ever taken inside the pool's, never around it).
    fn keep_cell(&self, cell: CellOf<M>) {
        self.cells.put(self.slot_index(), cell);
    }

    /// Locks the pool's state; `spin`: the caller is a tokio task (see `crate::sync::Mutex`).
    fn lock_state(&self, spin: bool) -> crate::sync::MutexGuard<'_, StateOf<M>> {
        if spin {
            self.state.lock_spinning()
        } else {
            self.state.lock()
        }
    }

    /// Check-in from a guard's `Drop`. `lease`: the thread slot the guard's connection was lent
    /// from (the per-thread fast path), which it is parked in again when it is clean and the
    /// fast path is open.
    pub(crate) fn checkin(
        &self,
        key: usize,
        mut entry: Idle<M::Connection>,
        broken: bool,
        lease: Option<usize>,
    ) {
        let now = Instant::now();
        let Entry { conn, meta, dirty } = &mut *entry;
        let discard = if thread::panicking() {
            Some(CloseReason::Panicked)
        } else if broken || self.manager.is_broken(conn, meta) {
            Some(CloseReason::Broken)
        } else if meta.is_expired(now) {
            Some(CloseReason::Stale)
        } else {
            None
        };
        *dirty = discard.is_none() && self.manager.needs_reset(conn);
        meta.returned(now, self.check_window);
        let clean = discard.is_none() && !*dirty;
        if let Some(i) = lease {
            if clean && self.fast.load(Ordering::Acquire) {
                match self.park(i, key, entry) {
                    None => return,
                    Some(back) => entry = back,
                }
            }
        }
        let (r, closed, conn_id) = {
            let mut st = self.lock_state(tokio::task::try_id().is_some());
            if let Some(i) = lease {
                self.end_lease(&mut st, i, key);
            }
            let (key, entry) = if clean && st.park_ok(key) {
                match self.adopt(key, entry) {
                    None => return,
                    Some(back) => back,
                }
            } else {
                (key, entry)
            };
            let conn_id = entry.meta.id;
            let r = st.checkin(key, entry, discard, now);
            self.set_fast(st.fast_ok());
            (r, st.is_closed(), conn_id)
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
    pub(crate) fn forget(&self, key: usize, lease: Option<usize>, conn: Option<M::Connection>) {
        let wake = {
            let mut st = self.state.lock();
            if let Some(i) = lease {
                self.end_lease(&mut st, i, key);
            }
            st.forget(key, conn.is_some())
        };
        if let Some(w) = wake {
            w.wake();
        }
        if let Some(c) = conn {
            self.close_conn(c, CloseReason::Manual);
        }
        self.drained.notify_waiters();
    }

    /// A consistent snapshot of sizes and the queue; parked connections count as idle.
    pub(crate) fn status(&self) -> Status {
        let st = self.state.lock();
        let mut s = st.status();
        let parked = self.parked.load(Ordering::SeqCst);
        s.idle += parked;
        s.in_use = s.in_use.saturating_sub(parked);
        s
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
        let (wakes, closing) = self.with_flushed(State::close);
        wake_all(wakes);
        self.sweep_notify.notify_one();
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
        let (closing, leaks, refill) = self.with_flushed(|st| st.reap(Instant::now()));
        // The reserved capacity goes into `Reservation`s first: a manager's `close` that panics
        // below must not leak it.
        self.spawn_refill(refill, blocking);
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
    }
}

/// Runs a manager future bounded by `limit`. On a thread the future is polled there, parking
/// between polls until `limit`; a driver that blocks inside a poll cannot be cut short.
async fn bounded<F: Future>(fut: F, limit: Deadline, mode: Mode) -> Option<F::Output> {
    match mode {
        Mode::Async => limit.bound(fut).await,
        Mode::Blocking => block_on_until(fut, limit),
    }
}

/// The deadline of a whole call that started at `start` with wait timeout `wait`. A zero wait
/// never queues; the call is then bounded by `connect_timeout`.
fn call_deadline(start: Instant, wait: Duration, config: &Config) -> Deadline {
    if wait.is_zero() {
        Deadline::after(start, config.connect_timeout)
    } else {
        Deadline::after(start, wait)
    }
}

/// Backoff before connect retry `attempt` (1-based): 25 ms doubling to 1 s, with jitter.
fn backoff(attempt: u32) -> Duration {
    let base = 25u64 << attempt.saturating_sub(1).min(6);
    let ms = base.min(1000);
    Duration::from_millis(ms / 2 + fastrand::u64(0..=ms / 2))
}
