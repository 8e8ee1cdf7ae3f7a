//! The public handle: [`Pool`].

#[allow(clippy::wildcard_imports)]
use super::*;

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
        let fast = crate::fast::FastPath::new();
        let cells = Stashes::new(fast.slots.len());
        let shared = Arc::new(Shared {
            check_window,
            manager,
            config,
            state: Mutex::new(State::new(limits)),
            uid: NEXT_POOL_UID.fetch_add(1, Ordering::Relaxed),
            handles: AtomicUsize::new(1),
            drained: tokio::sync::Notify::new(),
            sweep_notify: tokio::sync::Notify::new(),
            fast,
            cells,
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
    /// for a connect error that retrying would not heal, [`PoolError::Unavailable`] when the
    /// database cannot be reached, [`PoolError::Closed`]. [`PoolError::kind`] sorts them by what
    /// the caller should do (an outage is always [`ErrorKind::Unavailable`](crate::ErrorKind)).
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
            span: tracing::Span::none(),
        }
    }

    /// [`get`](Pool::get) on behalf of a call made at `location` (what `held()` and leak warnings
    /// name): for backend crates whose own entry points (`interact`) call `get` for the user.
    #[doc(hidden)]
    pub fn get_at(
        &self,
        location: &'static Location<'static>,
    ) -> impl Future<Output = Result<Pooled<M>, PoolError<M::Error>>> + Send + 'static {
        Get {
            holder: Holder::at(location),
            shared: self.shared.clone(),
            wait: self.shared.config.wait_timeout,
            state: GetState::Init,
            span: tracing::Span::none(),
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
        m.gets += self.shared.fast.gets.load(Ordering::Relaxed);
        self.shared.add_holds(&mut m);
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

    /// Closes every idle connection now, however briefly idle (counted in
    /// `Metrics::closed_manual`). Returns how many.
    ///
    /// Use it to shed connections at once (before a failover, after a burst). It is not the
    /// tool for trimming a pool on a timer: called periodically it also closes connections that
    /// were returned a moment ago and makes the next gets reconnect; set
    /// [`Config::idle_timeout`] instead, which closes only those idle longer than it (counted in
    /// `Metrics::closed_idle`) and keeps `min_idle`.
    pub fn close_idle(&self) -> usize {
        let after = self
            .shared
            .with_flushed(|st| st.drain_idle(CloseReason::Manual));
        let n = after.close_count();
        self.shared.run(after);
        n
    }

    /// Reclaims connections checked out for at least `age`, presumed leaked by their holders:
    /// their capacity is released at once for other requests, and each connection is closed
    /// (counted as [`CloseReason::Leaked`]), not reused, when its holder drops it. Returns how
    /// many. (Formerly `close_stale`; "stale" is reserved for connections past `max_lifetime`.)
    pub fn reclaim_held(&self, age: Duration) -> usize {
        let (n, after) = self
            .shared
            .with_flushed(|st| st.reclaim(age, Instant::now()));
        self.shared.run(after);
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
        let after = self.shared.with_flushed(|st| {
            if st.is_closed() {
                return Err(ResizeError::Closed);
            }
            Ok(st.resize(max_size))
        })?;
        self.shared.run(after);
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
        self.shared.get_blocking(Holder::here(), wait)
    }

    /// [`get_blocking`](Pool::get_blocking) on behalf of a call made at `location`: for backend
    /// crates.
    #[doc(hidden)]
    pub fn get_blocking_at(
        &self,
        location: &'static Location<'static>,
    ) -> Result<Pooled<M>, PoolError<M::Error>> {
        let wait = self.shared.config.wait_timeout;
        self.shared.get_blocking(Holder::at(location), wait)
    }
}
