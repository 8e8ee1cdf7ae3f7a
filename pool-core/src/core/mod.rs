//! The pool's bookkeeping: synchronous, bounded, I/O-free operations on [`State`], each taking
//! `now` and returning what the caller must do after unlocking (wake a waiter, close a
//! connection, open one). No manager method and no `.await` ever runs under the lock.
//!
//! Invariants (checked by `State::check_invariants` in tests):
//! - `idle.len() + in_use + opening == size <= max_size` (after a shrink, `size` may exceed the
//!   new `max_size` until in-use connections come back);
//! - waiters are queued only while no connection is idle;
//! - capacity freed while requests wait goes to the head of the queue (FIFO, no barging).

pub(crate) mod cell;
mod checkout;
mod connecting;
pub(crate) mod list;
mod maintenance;
mod waiters;

use std::panic::Location;
use std::sync::Arc;
use std::task::Waker;
use std::thread::ThreadId;
use std::time::Duration;

use slab::Slab;
use tokio::time::Instant;

use crate::manager::{CloseReason, ConnMeta};
use crate::metrics::{HeldConn, Metrics, Status};
use crate::sync::ThreadWaker;
use cell::{GrantCell, Granted};
use list::List;

/// How to wake a queued request.
#[derive(Debug)]
pub(crate) enum Wake {
    None,
    Thread(ThreadWaker),
    Task(Waker),
}

impl Wake {
    pub(crate) fn wake(self) {
        match self {
            Wake::None => {}
            Wake::Thread(t) => t.wake(),
            Wake::Task(w) => w.wake(),
        }
    }
}

/// One acquisition attempt's terms.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask {
    /// Who asks.
    pub(crate) holder: Holder,
    /// Whether it may queue when nothing is free.
    pub(crate) may_wait: bool,
    /// Whether it fails fast while connects keep failing (retries do not).
    pub(crate) fail_fast: bool,
}

/// Who asked for a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Holder {
    pub(crate) thread: ThreadId,
    pub(crate) task: Option<tokio::task::Id>,
    pub(crate) location: &'static Location<'static>,
}

/// A connection with its metadata, boxed once when opened so that checkouts and check-ins move
/// a pointer, not the connection.
pub(crate) type Idle<C> = Box<Entry<C>>;

/// A connection with its metadata.
#[derive(Debug)]
pub(crate) struct Entry<C> {
    pub(crate) conn: C,
    pub(crate) meta: ConnMeta,
    /// `Manager::needs_reset` said so at check-in.
    pub(crate) dirty: bool,
}

/// Why a connect attempt failed.
#[derive(Debug)]
pub(crate) enum ConnectFailure<E> {
    Error(E),
    TimedOut,
}

/// What a queued request receives.
#[derive(Debug)]
pub(crate) enum Grant<C, E> {
    /// A connection, already registered as held by the request under `key`.
    Conn { idle: Idle<C>, key: usize },
    /// Capacity: the request must open a connection (size and opening already count it).
    Permit,
    /// The connect this request started failed (its capacity is already released).
    Failed(ConnectFailure<E>),
    /// The pool was closed.
    Closed,
    /// The waiter's deadline passed (expired by the sweeper).
    Expired,
}

#[derive(Debug)]
struct Node<C, E> {
    /// The grant, for a waiter without a cell; it stays stored (unlinked) until taken.
    grant: Option<Grant<C, E>>,
    /// The owner's grant cell (async `Pool::get`): a grant goes there, the node is removed at
    /// once, and the time from `queued_at` to the hand-over counts as waiting time.
    cell: Option<Arc<GrantCell<C, E>>>,
    wake: Wake,
    holder: Holder,
    uid: u64,
    /// When the pool's sweeper expires this waiter (async requests); `None` for threads, which
    /// time out by themselves, and for connect requesters.
    deadline: Option<Instant>,
    /// When it queued (for the bounded queue bypass).
    queued_at: Instant,
}

#[derive(Debug)]
struct Held {
    conn_id: u64,
    since: Instant,
    holder: Holder,
    reclaimed: bool,
    leak_warned: bool,
}

/// The result of [`State::acquire`].
#[derive(Debug)]
pub(crate) enum Acquire<C, E> {
    /// An idle connection, registered as held under `key`.
    Got(Idle<C>, usize),
    /// Capacity reserved: open a connection.
    Create,
    /// Queued under this waiter key, with the grant cell asked for.
    Wait(usize, Option<Arc<GrantCell<C, E>>>),
    /// Nothing free and the caller may not wait.
    Full,
    /// Connects keep failing: fail fast.
    Unavailable(u32),
    /// The pool is closed.
    Closed,
}

/// What [`State::arm_sweeper`] asks of the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sweeper {
    /// A sweeper runs and wakes in time.
    Armed,
    /// A sweeper runs but must wake earlier: notify it.
    Rearm,
    /// No sweeper runs: spawn one.
    Spawn,
}

/// The result of [`State::check_failed`].
#[derive(Debug)]
pub(crate) enum Retake<C> {
    /// Another idle connection, held under `key`.
    Got(Idle<C>, usize),
    /// The capacity was kept: open a connection.
    Create,
    /// The capacity was reclaimed meanwhile: start the acquisition again.
    Restart,
    /// The pool is closed.
    Closed,
}

/// A connection to close after unlocking.
pub(crate) type Closing<C> = (C, CloseReason);

/// What polling a waiter yields: its grant with the instant of the hand-over, if one arrived, and
/// a request to wake after unlocking.
pub(crate) type Polled<C, E> = (Option<Granted<C, E>>, Option<Wake>);

/// What a check-in leaves to do after unlocking.
#[derive(Debug)]
pub(crate) struct Returned<C> {
    /// Waking the waiter that received the connection or a permit, closing the connection.
    pub(crate) after: After<C>,
    /// Where it is idle now, for the affinity fast path.
    pub(crate) idle_key: Option<usize>,
}

/// What a `State` operation leaves to do once the lock is released: wake requests, close
/// connections, warn of leaks, start connects for `min_idle`. Every operation with such work
/// returns one (check-in inside [`Returned`], waiter polls inside [`Polled`]), and one function
/// of the pool (`Shared::run`) carries it out, never under the lock.
///
/// The first two wake-ups and the first connection to close are stored inline: check-in,
/// cancellation and connect outcomes (the hot and warm paths) never allocate. Everything else
/// (more wake-ups or closes, leaks, refills: operations over many waiters or connections, such
/// as close, resize, reap, sweep, reclaim) goes into one boxed [`More`], so the common value is
/// small: it is built and moved on every check-in and every queueing, and an empty one is
/// skipped at once.
#[must_use = "run it once the lock is released"]
#[derive(Debug)]
pub(crate) struct After<C> {
    wakes: [Option<Wake>; 2],
    close_one: Option<Closing<C>>,
    more: Option<Box<More<C>>>,
}

/// An [`After`] taken apart: its inline wake-ups, its inline close, and the rest if any.
pub(crate) type Split<C> = ([Option<Wake>; 2], Option<Closing<C>>, Option<Box<More<C>>>);

/// The rare part of an [`After`].
#[derive(Debug)]
pub(crate) struct More<C> {
    /// Wake-ups after the inline two.
    pub(crate) wakes: Vec<Wake>,
    /// Connections to close after the inline one.
    pub(crate) closing: Vec<Closing<C>>,
    /// Connections held past the leak threshold, to warn about.
    pub(crate) leaks: Vec<Leak>,
    /// Capacity reserved for connects that bring idle connections up to `min_idle`.
    pub(crate) refill: usize,
}

impl<C> Default for More<C> {
    fn default() -> Self {
        More {
            wakes: Vec::new(),
            closing: Vec::new(),
            leaks: Vec::new(),
            refill: 0,
        }
    }
}

impl<C> Default for After<C> {
    fn default() -> Self {
        After {
            wakes: [None, None],
            close_one: None,
            more: None,
        }
    }
}

impl<C> After<C> {
    /// Nothing to do.
    pub(crate) fn none() -> Self {
        After::default()
    }

    /// Just this wake-up, if any.
    pub(crate) fn waking(wake: Option<Wake>) -> Self {
        After {
            wakes: [wake, None],
            close_one: None,
            more: None,
        }
    }

    /// Whether there is nothing to do.
    pub(crate) fn is_empty(&self) -> bool {
        self.wakes[0].is_none()
            && self.wakes[1].is_none()
            && self.close_one.is_none()
            && self.more.is_none()
    }

    fn more(&mut self) -> &mut More<C> {
        self.more.get_or_insert_with(Box::default)
    }

    /// Adds a wake-up (`None` adds nothing).
    pub(crate) fn wake(&mut self, wake: Option<Wake>) {
        let Some(w) = wake else { return };
        match self.wakes.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(w),
            None => self.more().wakes.push(w),
        }
    }

    /// Adds a connection to close.
    pub(crate) fn close(&mut self, conn: C, reason: CloseReason) {
        if self.close_one.is_none() {
            self.close_one = Some((conn, reason));
        } else {
            self.more().closing.push((conn, reason));
        }
    }

    /// Adds a leaked connection to warn about.
    pub(crate) fn leak(&mut self, leak: Leak) {
        self.more().leaks.push(leak);
    }

    /// Sets the capacity reserved for `min_idle` connects.
    pub(crate) fn set_refill(&mut self, n: usize) {
        if n > 0 || self.more.is_some() {
            self.more().refill = n;
        }
    }

    /// Takes the capacity reserved for `min_idle` connects out.
    pub(crate) fn take_refill(&mut self) -> usize {
        self.more
            .as_mut()
            .map_or(0, |m| std::mem::take(&mut m.refill))
    }

    /// The leaks to warn about (tests).
    #[cfg(test)]
    pub(crate) fn leaks(&self) -> &[Leak] {
        self.more.as_ref().map_or(&[], |m| &m.leaks)
    }

    /// The capacity reserved for `min_idle` connects (tests).
    #[cfg(test)]
    pub(crate) fn refill(&self) -> usize {
        self.more.as_ref().map_or(0, |m| m.refill)
    }

    /// How many wake-ups it holds.
    #[cfg(test)]
    pub(crate) fn wake_count(&self) -> usize {
        self.wakes.iter().flatten().count() + self.more.as_ref().map_or(0, |m| m.wakes.len())
    }

    /// How many connections it closes.
    pub(crate) fn close_count(&self) -> usize {
        usize::from(self.close_one.is_some()) + self.more.as_ref().map_or(0, |m| m.closing.len())
    }

    /// Adds everything `other` has to do, in its order.
    pub(crate) fn merge(&mut self, other: After<C>) {
        let ([a, b], close_one, more) = other.split();
        let More {
            wakes,
            closing,
            leaks,
            refill,
        } = more.map_or_else(More::default, |m| *m);
        for w in [a, b].into_iter().flatten().chain(wakes) {
            self.wake(Some(w));
        }
        for (c, r) in close_one.into_iter().chain(closing) {
            self.close(c, r);
        }
        if !leaks.is_empty() || refill > 0 {
            let more = self.more();
            more.leaks.extend(leaks);
            more.refill += refill;
        }
    }

    /// The common case, split off: the inline wake-ups and close, and the rest if any.
    pub(crate) fn split(self) -> Split<C> {
        (self.wakes, self.close_one, self.more)
    }

    /// The connections to close (for tests that look at them).
    #[cfg(test)]
    pub(crate) fn closing(&self) -> Vec<&Closing<C>> {
        self.close_one
            .iter()
            .chain(self.more.iter().flat_map(|m| m.closing.iter()))
            .collect()
    }
}

/// Settings the state needs.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_size: usize,
    pub(crate) min_idle: usize,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) jitter_percent: u8,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) leak_threshold: Option<Duration>,
    pub(crate) fail_fast_after: u32,
    /// The shorter of `idle_timeout` and `validate_after_idle`: after this long idle, a checkout
    /// must look at the idle time.
    pub(crate) check_window: Option<Duration>,
    /// Bounded queue bypass: while the oldest waiter has waited less than this, a returned
    /// connection goes to the idle set (the oldest waiter is woken to take it) and a newcomer may
    /// take it first. `None`: strict FIFO hand-off.
    pub(crate) queue_bypass: Option<Duration>,
}

/// Everything behind the pool's lock.
#[derive(Debug)]
pub(crate) struct State<C, E> {
    pub(crate) limits: Limits,
    idle: List<Idle<C>>,
    size: usize,
    opening: usize,
    held: Slab<Held>,
    reclaimed: usize,
    waiters: List<Node<C, E>>,
    closed: bool,
    pub(crate) stats: Metrics,
    failures: u32,
    fail_fast_until: Option<Instant>,
    /// The instant the waiters' sweeper task sleeps until; `None` when no sweeper runs.
    sweep_at: Option<Instant>,
    /// Queue bypass: the waiter woken to take an idle connection that has not polled yet. At
    /// most one such wake-up is outstanding: waking more would only make them race each other
    /// (and, on a busy machine, cost a context switch per check-in).
    nudged: Option<usize>,
    next_uid: u64,
    next_conn_id: u64,
}

/// A leaked connection to warn about.
#[derive(Debug)]
pub(crate) struct Leak {
    pub(crate) conn_id: u64,
    pub(crate) held_for: Duration,
    pub(crate) holder: Holder,
}

impl<C, E> State<C, E> {
    pub(crate) fn new(limits: Limits) -> Self {
        State {
            limits,
            idle: List::new(),
            size: 0,
            opening: 0,
            held: Slab::new(),
            reclaimed: 0,
            waiters: List::new(),
            closed: false,
            stats: Metrics::default(),
            failures: 0,
            fail_fast_until: None,
            sweep_at: None,
            nudged: None,
            next_uid: 0,
            next_conn_id: 0,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn status(&self) -> Status {
        Status {
            max_size: self.limits.max_size,
            size: self.size,
            idle: self.idle.len(),
            in_use: self.held.len() - self.reclaimed,
            opening: self.opening,
            waiting: self.waiters.len(),
            reclaimed: self.reclaimed,
            excess: self.size.saturating_sub(self.limits.max_size),
        }
    }

    /// Panics (tests only) if an invariant is broken.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let s = self.status();
        assert_eq!(
            s.idle + s.in_use + s.opening,
            s.size,
            "idle + in_use + opening != size: {s:?}"
        );
        assert!(
            s.waiting == 0 || s.idle == 0 || self.limits.queue_bypass.is_some(),
            "requests wait while connections are idle: {s:?}"
        );
    }

    fn hold(&mut self, conn_id: u64, holder: Holder, now: Instant) -> usize {
        self.held.insert(Held {
            conn_id,
            since: now,
            holder,
            reclaimed: false,
            leak_warned: false,
        })
    }

    fn uid(&mut self) -> u64 {
        self.next_uid += 1;
        self.next_uid
    }

    fn count_close(&mut self, reason: CloseReason) {
        let s = &mut self.stats;
        match reason {
            CloseReason::Broken => s.closed_broken += 1,
            CloseReason::Stale => s.closed_stale += 1,
            CloseReason::Idle => s.closed_idle += 1,
            CloseReason::Leaked => {} // counted when reclaimed
            CloseReason::Invalid => s.closed_invalid += 1,
            CloseReason::ResetFailed => s.closed_reset_failed += 1,
            CloseReason::Panicked => s.closed_panicked += 1,
            _ => s.closed_manual += 1,
        }
    }
}

/// Helpers for the unit tests of `core/*`: a `State` driven with explicit instants.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub(crate) type St = State<u32, String>;

    /// Limits with nothing timed: no lifetime, idle timeout, validation window, fail-fast or
    /// bypass.
    pub(crate) fn limits(max_size: usize) -> Limits {
        Limits {
            max_size,
            min_idle: 0,
            max_lifetime: None,
            jitter_percent: 0,
            idle_timeout: None,
            leak_threshold: None,
            fail_fast_after: 0,
            check_window: None,
            queue_bypass: None,
        }
    }

    #[track_caller]
    pub(crate) fn holder() -> Holder {
        Holder {
            thread: std::thread::current().id(),
            task: None,
            location: Location::caller(),
        }
    }

    pub(crate) fn ask(may_wait: bool) -> Ask {
        Ask {
            holder: holder(),
            may_wait,
            fail_fast: true,
        }
    }

    /// `acquire` for a thread-style waiter (no cell, no sweeper deadline).
    pub(crate) fn acquire(st: &mut St, now: Instant, may_wait: bool) -> Acquire<u32, String> {
        st.acquire(now, None, ask(may_wait), || None, || Wake::None, || None)
    }

    /// Opens `n` connections (ids from `first`) and leaves them idle.
    pub(crate) fn open_idle(st: &mut St, now: Instant, first: u32, n: u32) {
        for _ in 0..n {
            assert!(matches!(acquire(st, now, false), Acquire::Create));
        }
        for c in first..first + n {
            let after = st.connected(c, now, None);
            assert!(after.wake_count() == 0 && after.close_count() == 0);
        }
    }

    /// Takes an idle connection: (its key, the connection).
    #[track_caller]
    pub(crate) fn take(st: &mut St, now: Instant) -> (usize, Idle<u32>) {
        match acquire(st, now, false) {
            Acquire::Got(idle, key) => (key, idle),
            other => panic!("expected an idle connection, got {other:?}"),
        }
    }

    pub(crate) fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
}
