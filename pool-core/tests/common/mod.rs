//! Shared test support: a scriptable fake [`Manager`] (a "remote control" for the backend), the
//! pool invariants, and small helpers (log capture, letting spawned tasks run).
//!
//! Every integration-test file includes this module and uses a different part of it.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_core::{Builder, CloseReason, ConnMeta, Manager, Pool, Pooled, Status};

/// What one call of `connect`, `validate` or `reset` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Succeeds at once.
    Ok,
    /// Fails at once with a [`FakeError`]; `retryable` is what `is_retryable` says about it.
    Err { retryable: bool },
    /// Sleeps (tokio time inside a runtime, else the thread), then succeeds.
    Slow(Duration),
    /// Sleeps, then fails with a retryable error.
    SlowErr(Duration),
    /// Never completes.
    Never,
}

impl Behavior {
    /// A retryable failure.
    pub const FAIL: Behavior = Behavior::Err { retryable: true };
    /// A final failure.
    pub const FATAL: Behavior = Behavior::Err { retryable: false };
}

/// The fake driver's error. Its `Display` is distinctive so tests can check it is not repeated
/// by the pool's own messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeError {
    /// Which call failed: "connect", "validate", "reset".
    pub op: &'static str,
    /// The 1-based number of that call.
    pub call: u64,
    pub retryable: bool,
}

impl fmt::Display for FakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fake backend said no to {} #{}", self.op, self.call)
    }
}

impl std::error::Error for FakeError {}

/// One method's script: behaviours consumed one per call, then the default.
#[derive(Debug)]
struct Script {
    queue: VecDeque<Behavior>,
    default: Behavior,
}

impl Script {
    fn new() -> Self {
        Script {
            queue: VecDeque::new(),
            default: Behavior::Ok,
        }
    }

    fn next(&mut self) -> Behavior {
        self.queue.pop_front().unwrap_or(self.default)
    }
}

/// The remote control: shared between the test and the manager inside the pool.
#[derive(Debug)]
pub struct Ctl {
    connect: Mutex<Script>,
    validate: Mutex<Script>,
    reset: Mutex<Script>,
    /// Calls of `connect` (started).
    pub connect_calls: AtomicU64,
    /// Successful connects (connections created).
    pub connects: AtomicU64,
    pub validate_calls: AtomicU64,
    pub reset_calls: AtomicU64,
    pub is_broken_calls: AtomicU64,
    /// `is_broken` answers true from this call number on (1-based); 0 = never.
    pub broken_from_call: AtomicU64,
    /// `is_broken` answers true for every connection while set.
    pub all_broken: AtomicBool,
    /// Connections closed through `Manager::close`, by reason.
    closes: Mutex<HashMap<CloseReason, u64>>,
    /// (connection id, reason) of every close, in order.
    pub closed_ids: Mutex<Vec<(u64, CloseReason)>>,
    /// Connections dropped without `Manager::close` and without being detached: must stay 0.
    pub silent_drops: AtomicU64,
    /// Connections taken out of the pool with `Pooled::detach` (via [`detach`]).
    pub detached: AtomicU64,
    next_id: AtomicU64,
}

/// A fake connection: an id, and flags the test flips through the guard.
#[derive(Debug)]
pub struct Conn {
    /// 1-based, in creation order (the manager's own numbering, not the pool's `ConnMeta::id`).
    pub id: u64,
    /// `needs_reset` answers this; a successful `reset` clears it.
    pub dirty: bool,
    /// `is_broken` answers true while set.
    pub broken: bool,
    /// Scratch value tests may use.
    pub value: u64,
    closed: bool,
    detached: bool,
    ctl: Arc<Ctl>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.closed && !self.detached {
            self.ctl.silent_drops.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The fake manager.
#[derive(Debug, Clone)]
pub struct Fake {
    pub ctl: Arc<Ctl>,
}

impl Default for Fake {
    fn default() -> Self {
        Fake::new()
    }
}

async fn act(b: Behavior, op: &'static str, call: u64) -> Result<(), FakeError> {
    let err = |retryable| FakeError {
        op,
        call,
        retryable,
    };
    match b {
        Behavior::Ok => Ok(()),
        Behavior::Err { retryable } => Err(err(retryable)),
        Behavior::Slow(d) => {
            sleep(d).await;
            Ok(())
        }
        Behavior::SlowErr(d) => {
            sleep(d).await;
            Err(err(true))
        }
        Behavior::Never => std::future::pending().await,
    }
}

async fn sleep(d: Duration) {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::time::sleep(d).await;
    } else {
        std::thread::sleep(d);
    }
}

impl Fake {
    pub fn new() -> Self {
        Fake {
            ctl: Arc::new(Ctl {
                connect: Mutex::new(Script::new()),
                validate: Mutex::new(Script::new()),
                reset: Mutex::new(Script::new()),
                connect_calls: AtomicU64::new(0),
                connects: AtomicU64::new(0),
                validate_calls: AtomicU64::new(0),
                reset_calls: AtomicU64::new(0),
                is_broken_calls: AtomicU64::new(0),
                broken_from_call: AtomicU64::new(0),
                all_broken: AtomicBool::new(false),
                closes: Mutex::new(HashMap::new()),
                closed_ids: Mutex::new(Vec::new()),
                silent_drops: AtomicU64::new(0),
                detached: AtomicU64::new(0),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// Queues behaviours for the next `connect` calls.
    pub fn script_connect(&self, steps: impl IntoIterator<Item = Behavior>) {
        self.ctl.connect.lock().unwrap().queue.extend(steps);
    }
    /// What `connect` does once the script is used up.
    pub fn set_connect(&self, b: Behavior) {
        let mut s = self.ctl.connect.lock().unwrap();
        s.queue.clear();
        s.default = b;
    }
    pub fn script_validate(&self, steps: impl IntoIterator<Item = Behavior>) {
        self.ctl.validate.lock().unwrap().queue.extend(steps);
    }
    pub fn set_validate(&self, b: Behavior) {
        let mut s = self.ctl.validate.lock().unwrap();
        s.queue.clear();
        s.default = b;
    }
    pub fn script_reset(&self, steps: impl IntoIterator<Item = Behavior>) {
        self.ctl.reset.lock().unwrap().queue.extend(steps);
    }
    pub fn set_reset(&self, b: Behavior) {
        let mut s = self.ctl.reset.lock().unwrap();
        s.queue.clear();
        s.default = b;
    }
    /// Every connection is broken (or not) from now on.
    pub fn set_all_broken(&self, on: bool) {
        self.ctl.all_broken.store(on, Ordering::SeqCst);
    }
    /// `is_broken` answers true from its `n`-th call on (counting the calls made so far).
    pub fn broken_after_calls(&self, n: u64) {
        let now = self.ctl.is_broken_calls.load(Ordering::SeqCst);
        self.ctl.broken_from_call.store(now + n, Ordering::SeqCst);
    }

    pub fn connect_calls(&self) -> u64 {
        self.ctl.connect_calls.load(Ordering::SeqCst)
    }
    pub fn connects(&self) -> u64 {
        self.ctl.connects.load(Ordering::SeqCst)
    }
    pub fn validate_calls(&self) -> u64 {
        self.ctl.validate_calls.load(Ordering::SeqCst)
    }
    pub fn reset_calls(&self) -> u64 {
        self.ctl.reset_calls.load(Ordering::SeqCst)
    }
    pub fn detached(&self) -> u64 {
        self.ctl.detached.load(Ordering::SeqCst)
    }
    /// Closes with this reason so far.
    pub fn closes(&self, reason: CloseReason) -> u64 {
        self.ctl
            .closes
            .lock()
            .unwrap()
            .get(&reason)
            .copied()
            .unwrap_or(0)
    }
    /// Closes of any reason so far.
    pub fn closes_total(&self) -> u64 {
        self.ctl.closes.lock().unwrap().values().sum()
    }
    /// Connections created and neither closed nor detached.
    pub fn live(&self) -> u64 {
        self.connects() - self.closes_total() - self.detached()
    }
    pub fn silent_drops(&self) -> u64 {
        self.ctl.silent_drops.load(Ordering::SeqCst)
    }
    /// Ids of the connections closed with `reason`, in order.
    pub fn closed_ids(&self, reason: CloseReason) -> Vec<u64> {
        self.ctl
            .closed_ids
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r)| *r == reason)
            .map(|(id, _)| *id)
            .collect()
    }
}

impl pool_core::BlockingManager for Fake {}

impl Manager for Fake {
    type Connection = Conn;
    type Error = FakeError;

    async fn connect(&self) -> Result<Conn, FakeError> {
        let call = self.ctl.connect_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let b = self.ctl.connect.lock().unwrap().next();
        act(b, "connect", call).await?;
        self.ctl.connects.fetch_add(1, Ordering::SeqCst);
        Ok(Conn {
            id: self.ctl.next_id.fetch_add(1, Ordering::SeqCst) + 1,
            dirty: false,
            broken: false,
            value: 0,
            closed: false,
            detached: false,
            ctl: self.ctl.clone(),
        })
    }

    fn is_broken(&self, conn: &mut Conn, _meta: &ConnMeta) -> bool {
        let call = self.ctl.is_broken_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let from = self.ctl.broken_from_call.load(Ordering::SeqCst);
        conn.broken || self.ctl.all_broken.load(Ordering::SeqCst) || (from > 0 && call >= from)
    }

    fn needs_reset(&self, conn: &mut Conn) -> bool {
        conn.dirty
    }

    async fn reset(&self, conn: &mut Conn) -> Result<(), FakeError> {
        let call = self.ctl.reset_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let b = self.ctl.reset.lock().unwrap().next();
        act(b, "reset", call).await?;
        conn.dirty = false;
        Ok(())
    }

    async fn validate(&self, _conn: &mut Conn, _meta: &ConnMeta) -> Result<(), FakeError> {
        let call = self.ctl.validate_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let b = self.ctl.validate.lock().unwrap().next();
        act(b, "validate", call).await
    }

    fn is_retryable(&self, err: &FakeError) -> bool {
        err.retryable
    }

    fn close(&self, mut conn: Conn, reason: CloseReason) {
        conn.closed = true;
        *self.ctl.closes.lock().unwrap().entry(reason).or_insert(0) += 1;
        self.ctl.closed_ids.lock().unwrap().push((conn.id, reason));
    }
}

/// A builder with deterministic settings: no lifetime, idle timeout or validation unless a test
/// asks for them, no jitter, no fail-fast, a long reap interval.
pub fn builder(fake: &Fake, max_size: usize) -> Builder<Fake> {
    Pool::builder(fake.clone())
        .max_size(max_size)
        .wait_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .validate_timeout(Duration::from_secs(1))
        .validate_after_idle(None)
        .max_lifetime(None)
        .max_lifetime_jitter_percent(0)
        .idle_timeout(None)
        .reap_interval(Duration::from_secs(3600))
        .fail_fast_after(0)
}

/// A pool built with [`builder`].
pub fn pool(max_size: usize) -> (Pool<Fake>, Fake) {
    let fake = Fake::new();
    let pool = builder(&fake, max_size).build().expect("valid config");
    (pool, fake)
}

/// Takes the connection out of the pool and records it as detached.
pub fn detach(p: Pooled<Fake>) -> Conn {
    let mut c = Pooled::detach(p);
    c.detached = true;
    c.ctl.detached.fetch_add(1, Ordering::SeqCst);
    c
}

/// The fake's id of a pooled connection.
pub fn id(p: &Pooled<Fake>) -> u64 {
    p.id
}

/// The structural invariants of `status`, allowing `size > max_size` (after a shrink).
#[track_caller]
pub fn check_status_shrinking(s: &Status) {
    assert_eq!(
        s.idle + s.in_use + s.opening,
        s.size,
        "idle + in_use + opening != size: {s:?}"
    );
    assert!(
        s.waiting == 0 || s.idle == 0,
        "requests wait while connections are idle: {s:?}"
    );
    // The documented bound: any excess over max_size after a shrink is reported as such.
    assert!(
        s.size <= s.max_size + s.excess,
        "size > max_size + excess: {s:?}"
    );
    assert_eq!(s.excess, s.size.saturating_sub(s.max_size), "{s:?}");
}

/// The structural invariants of `status`.
#[track_caller]
pub fn check_status(s: &Status) {
    check_status_shrinking(s);
    assert!(s.size <= s.max_size, "size > max_size: {s:?}");
}

/// The pool's invariants (no shrink in progress).
#[track_caller]
pub fn assert_invariants(pool: &Pool<Fake>) {
    let s = pool.status();
    check_status(&s);
    assert_eq!(
        pool.manager().silent_drops(),
        0,
        "a connection was dropped without Manager::close"
    );
}

/// The pool's invariants while a shrink may be in progress.
#[track_caller]
pub fn assert_invariants_shrinking(pool: &Pool<Fake>) {
    check_status_shrinking(&pool.status());
    assert_eq!(pool.manager().silent_drops(), 0);
}

/// At a quiescent point (no connect in flight, nothing being handed over), the connections the
/// manager created and did not close are exactly those the pool accounts for: idle, in use, and
/// reclaimed ones their holders still have.
#[track_caller]
pub fn assert_accounting(pool: &Pool<Fake>) {
    let s = pool.status();
    let fake = pool.manager();
    assert_eq!(s.opening, 0, "not quiescent: {s:?}");
    assert_eq!(
        fake.live(),
        (s.size - s.opening + s.reclaimed) as u64,
        "live connections (connects {} - closes {} - detached {}) disagree with {s:?}",
        fake.connects(),
        fake.closes_total(),
        fake.detached()
    );
}

/// Lets spawned tasks run (current-thread runtime) without advancing the clock.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Advances paused time by `d` in small steps, letting tasks (reaper, connects) run at each.
pub async fn advance(d: Duration) {
    let step = Duration::from_millis(10).min(d);
    let mut left = d;
    while !left.is_zero() {
        let s = step.min(left);
        tokio::time::advance(s).await;
        settle().await;
        left -= s;
    }
}

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
pub struct LogBuf(pub Arc<Mutex<Vec<u8>>>);

impl LogBuf {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

/// Captures `tracing` events at WARN and above on this thread until the guard is dropped.
pub fn capture_warnings() -> (LogBuf, tracing::subscriber::DefaultGuard) {
    let buf = LogBuf::default();
    let sub = tracing_subscriber::fmt()
        .with_writer(buf.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    (buf, tracing::subscriber::set_default(sub))
}
