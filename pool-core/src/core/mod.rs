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
pub(crate) mod list;

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

/// Wakes several requests, after the lock is released.
pub(crate) fn wake_all(wakes: impl IntoIterator<Item = Wake>) {
    for w in wakes {
        w.wake();
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
    /// A waiter that received the connection or a permit.
    pub(crate) wake: Option<Wake>,
    /// The connection, when it must be closed.
    pub(crate) closing: Option<Closing<C>>,
    /// Where it is idle now, for the affinity fast path.
    pub(crate) idle_key: Option<usize>,
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

    // ----- acquisition -----

    fn breaker_open(&self, now: Instant) -> bool {
        self.limits.fail_fast_after > 0
            && self.failures >= self.limits.fail_fast_after
            && self.fail_fast_until.is_some_and(|t| now < t)
    }

    fn take_idle(&mut self, prefer: Option<(usize, u64)>) -> Option<Idle<C>> {
        if let Some((key, id)) = prefer {
            if self.idle.is_linked(key) && self.idle.get(key).is_some_and(|i| i.meta.id == id) {
                return Some(self.idle.remove(key));
            }
        }
        self.idle.pop_back()
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

    /// Starts an acquisition: an idle connection, capacity to open one, or a place in the queue.
    /// `prefer` is the (idle key, connection id) this thread returned last. `cell` gives the
    /// grant cell of an async request (called only if it queues; the cell is shared with its
    /// node then), or `None`.
    pub(crate) fn acquire(
        &mut self,
        now: Instant,
        prefer: Option<(usize, u64)>,
        ask: Ask,
        deadline: impl FnOnce() -> Option<Instant>,
        wake: impl FnOnce() -> Wake,
        cell: impl FnOnce() -> Option<Arc<GrantCell<C, E>>>,
    ) -> Acquire<C, E> {
        let Ask {
            holder,
            may_wait,
            fail_fast,
        } = ask;
        if self.closed {
            return Acquire::Closed;
        }
        if self.waiters.is_empty() || self.bypass_open(now) {
            if let Some(idle) = self.take_idle(prefer) {
                let key = self.hold(idle.meta.id, holder, now);
                return Acquire::Got(idle, key);
            }
        }
        if self.waiters.is_empty() && self.size < self.limits.max_size {
            if fail_fast && self.breaker_open(now) {
                return Acquire::Unavailable(self.failures);
            }
            self.size += 1;
            self.opening += 1;
            return Acquire::Create;
        }
        if !may_wait {
            return Acquire::Full;
        }
        self.stats.waits += 1;
        let uid = self.uid();
        let cell = cell();
        let key = self.waiters.push_back(Node {
            grant: None,
            cell: cell.clone(),
            wake: wake(),
            holder,
            uid,
            deadline: deadline(),
            queued_at: now,
        });
        Acquire::Wait(key, cell)
    }

    /// Makes sure the sweeper will expire a waiter due at `deadline`.
    pub(crate) fn arm_sweeper(&mut self, deadline: Instant) -> Sweeper {
        match self.sweep_at {
            None => {
                self.sweep_at = Some(deadline);
                Sweeper::Spawn
            }
            Some(at) if deadline < at => {
                self.sweep_at = Some(deadline);
                Sweeper::Rearm
            }
            Some(_) => Sweeper::Armed,
        }
    }

    /// When the sweeper should next run; `None` once it has stopped.
    pub(crate) fn sweep_at(&self) -> Option<Instant> {
        self.sweep_at
    }

    /// Expires the queued async waiters whose deadline passed and sets the next sweep (`None`
    /// when no timed waiter is left: the sweeper stops).
    pub(crate) fn sweep(&mut self, now: Instant) -> Vec<Wake> {
        let mut wakes = Vec::new();
        let mut next: Option<Instant> = None;
        for key in self.waiters.keys() {
            let Some(deadline) = self.waiters.get(key).and_then(|n| n.deadline) else {
                continue;
            };
            if deadline <= now {
                self.waiters.unlink(key);
                wakes.push(self.give(key, Grant::Expired));
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        self.sweep_at = next;
        wakes.extend(self.renudge());
        wakes
    }

    /// The sweeper task ended without stopping normally (its runtime shut down).
    pub(crate) fn sweeper_gone(&mut self) {
        self.sweep_at = None;
    }

    fn uid(&mut self) -> u64 {
        self.next_uid += 1;
        self.next_uid
    }

    /// A private waiter slot, not queued, to receive the outcome of a connect. Returns (key, uid).
    pub(crate) fn register(&mut self, holder: Holder) -> (usize, u64) {
        let uid = self.uid();
        let key = self.waiters.insert_unlinked(Node {
            grant: None,
            cell: None,
            wake: Wake::None,
            holder,
            uid,
            deadline: None,
            queued_at: Instant::now(),
        });
        (key, uid)
    }

    /// Polls a waiter: its grant if one arrived (the waiter is then removed), else stores `wake`.
    /// A grant taken here counts the time from `since` to the hand-over as waiting time
    /// (`None`: a private waiter for a connect, whose time is not queueing) and comes with the
    /// instant of the hand-over. The second value is a request to wake after unlocking (queue
    /// bypass: the next waiter, when idle connections are left).
    pub(crate) fn poll_waiter(
        &mut self,
        key: usize,
        since: Option<Instant>,
        wake: impl FnOnce(&Wake) -> Option<Wake>,
    ) -> Polled<C, E> {
        if self.nudged == Some(key) {
            self.nudged = None;
        }
        let node = self
            .waiters
            .get_mut(key)
            .expect("waiter polled after removal");
        if node.grant.is_some() {
            let Some(grant) = self.waiters.remove(key).grant else {
                unreachable!("checked above")
            };
            // A connection carries the instant it was handed over (its check-in), so the hot
            // hand-off path reads no clock under the lock.
            let at = match &grant {
                Grant::Conn { idle, .. } => idle.meta.last_used,
                _ => Instant::now(),
            };
            if let Some(since) = since {
                self.stats.wait_time += at.saturating_duration_since(since);
            }
            return (Some((grant, at)), None);
        }
        if self.limits.queue_bypass.is_some() && !self.idle.is_empty() {
            // Woken under the queue bypass (or still in time): take an idle connection.
            let holder = node.holder;
            self.remove_node(key);
            let idle = self.idle.pop_back().expect("an idle connection");
            let at = idle.meta.last_used;
            if let Some(since) = since {
                self.stats.wait_time += at.saturating_duration_since(since);
            }
            let key = self.hold(idle.meta.id, holder, at);
            return (Some((Grant::Conn { idle, key }, at)), self.renudge());
        }
        if let Some(w) = wake(&node.wake) {
            node.wake = w;
        }
        (None, None)
    }

    /// [`poll_waiter`](Self::poll_waiter) for a waiter with a grant cell, whose owner found the
    /// cell empty before locking: a grant may have arrived since (the node is gone then).
    pub(crate) fn poll_cell_waiter(
        &mut self,
        key: usize,
        cell: &GrantCell<C, E>,
        wake: impl FnOnce(&Wake) -> Option<Wake>,
    ) -> Polled<C, E> {
        match cell.take() {
            Some(granted) => (Some(granted), None),
            None => {
                let since = self.waiters.get(key).map(|n| n.queued_at);
                self.poll_waiter(key, since, wake)
            }
        }
    }

    /// Removes a waiter that gives up (timeout, cancellation). A grant it had already received is
    /// passed on, so no capacity and no wake-up is lost.
    pub(crate) fn cancel_waiter(
        &mut self,
        key: usize,
        now: Instant,
    ) -> (Option<Wake>, Option<Closing<C>>) {
        let node = self.remove_node(key);
        self.pass_on(node.grant, now)
    }

    /// [`cancel_waiter`](Self::cancel_waiter) for a waiter with a grant cell: the grant is in the
    /// cell if one arrived (the node is gone then), else the node is still queued.
    pub(crate) fn cancel_cell_waiter(
        &mut self,
        key: usize,
        cell: &GrantCell<C, E>,
        now: Instant,
    ) -> (Option<Wake>, Option<Closing<C>>) {
        match cell.take() {
            Some((grant, _)) => self.pass_on(Some(grant), now),
            None => self.cancel_waiter(key, now),
        }
    }

    /// Passes on what a waiter that gave up had received.
    fn pass_on(
        &mut self,
        grant: Option<Grant<C, E>>,
        now: Instant,
    ) -> (Option<Wake>, Option<Closing<C>>) {
        match grant {
            Some(Grant::Conn { idle, key }) => {
                let r = self.checkin(key, idle, None, now);
                (r.wake, r.closing)
            }
            Some(Grant::Permit) => {
                self.opening -= 1;
                (self.release_capacity(), None)
            }
            Some(Grant::Failed(_) | Grant::Closed | Grant::Expired) | None => {
                (self.renudge(), None)
            }
        }
    }

    /// Grants waiter `key` (already unlinked, or never queued) and returns its wake-up, to run
    /// after unlocking.
    fn give(&mut self, key: usize, grant: Grant<C, E>) -> Wake {
        let node = self
            .waiters
            .get_mut(key)
            .expect("granting to a removed waiter");
        if node.cell.is_none() {
            node.grant = Some(grant);
            return std::mem::replace(&mut node.wake, Wake::None);
        }
        let mut node = self.remove_node(key);
        let cell = node.cell.take().expect("checked above");
        // A connection carries the instant it was handed over (its check-in), so the hot
        // hand-off path reads no clock under the lock.
        let at = match &grant {
            Grant::Conn { idle, .. } => idle.meta.last_used,
            _ => Instant::now(),
        };
        self.stats.wait_time += at.saturating_duration_since(node.queued_at);
        cell.fill((grant, at));
        node.wake
    }

    /// Removes a waiter node (its reference to a grant cell goes with it), forgetting an
    /// outstanding queue-bypass wake-up of it.
    fn remove_node(&mut self, key: usize) -> Node<C, E> {
        if self.nudged == Some(key) {
            self.nudged = None;
        }
        self.waiters.remove(key)
    }

    /// Hands an available connection to the head of the queue, or makes it idle (returning its
    /// idle key). Under the queue bypass, a young queue gets it idle and its first waiter that is
    /// not already woken is woken to take it.
    fn offer(&mut self, idle: Idle<C>, now: Instant) -> (Option<Wake>, Option<usize>) {
        if self.bypass_open(now) {
            let key = self.idle.push_back(idle);
            return (self.nudge(), Some(key));
        }
        match self.waiters.unlink_front() {
            Some(wkey) => {
                let holder = self.waiters.get(wkey).expect("queued waiter").holder;
                let key = self.hold(idle.meta.id, holder, now);
                (Some(self.give(wkey, Grant::Conn { idle, key })), None)
            }
            None => (None, Some(self.idle.push_back(idle))),
        }
    }

    /// Whether the bounded queue bypass applies now: it is on, requests wait, and the oldest has
    /// waited less than the bypass window.
    fn bypass_open(&self, now: Instant) -> bool {
        let Some(window) = self.limits.queue_bypass else {
            return false;
        };
        self.waiters
            .front_key()
            .and_then(|k| self.waiters.get(k))
            .is_some_and(|head| now.saturating_duration_since(head.queued_at) < window)
    }

    /// Wakes the first queued request that is not already woken, so that it takes an idle
    /// connection (queue bypass only), unless such a wake-up is already outstanding.
    fn nudge(&mut self) -> Option<Wake> {
        if self.nudged.is_some() {
            return None;
        }
        let mut key = self.waiters.front_key();
        while let Some(k) = key {
            let node = self.waiters.get_mut(k).expect("linked waiter");
            if !matches!(node.wake, Wake::None) {
                self.nudged = Some(k);
                return Some(std::mem::replace(&mut node.wake, Wake::None));
            }
            key = self.waiters.next_key(k);
        }
        None
    }

    /// Under the queue bypass, idle connections and waiting requests may coexist for a moment:
    /// when a request leaves the queue, make sure someone is woken to take them.
    fn renudge(&mut self) -> Option<Wake> {
        if self.limits.queue_bypass.is_some() && !self.idle.is_empty() && !self.waiters.is_empty() {
            self.nudge()
        } else {
            None
        }
    }

    /// One unit of capacity was freed: give it to the head of the queue as a permit to connect.
    fn release_capacity(&mut self) -> Option<Wake> {
        self.size -= 1;
        if self.closed || self.size >= self.limits.max_size {
            return None;
        }
        let wkey = self.waiters.unlink_front()?;
        self.size += 1;
        self.opening += 1;
        Some(self.give(wkey, Grant::Permit))
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

    /// A connection comes back from the holder registered under `key`. `discard` says why it must
    /// be closed, if it must.
    pub(crate) fn checkin(
        &mut self,
        key: usize,
        idle: Idle<C>,
        discard: Option<CloseReason>,
        now: Instant,
    ) -> Returned<C> {
        let held = self.held.remove(key);
        let mut out = Returned {
            wake: None,
            closing: None,
            idle_key: None,
        };
        if held.reclaimed {
            self.reclaimed -= 1;
            out.closing = Some((idle.conn, CloseReason::Leaked));
            return out;
        }
        let reason = discard
            .or(self.closed.then_some(CloseReason::Closed))
            .or((self.size > self.limits.max_size).then_some(CloseReason::Resized));
        match reason {
            Some(reason) => {
                self.count_close(reason);
                out.wake = self.release_capacity();
                out.closing = Some((idle.conn, reason));
            }
            None => (out.wake, out.idle_key) = self.offer(idle, now),
        }
        out
    }

    /// The holder under `key` takes its connection out of the pool (detach or manual close).
    pub(crate) fn forget(&mut self, key: usize, closing: bool) -> Option<Wake> {
        let held = self.held.remove(key);
        if held.reclaimed {
            self.reclaimed -= 1;
            return None;
        }
        if closing {
            self.stats.closed_manual += 1;
        }
        self.release_capacity()
    }

    /// Whether the per-thread fast path may run: nobody waits, the pool is open and not over its
    /// size, and no `min_idle` has to be kept warm at checkout.
    pub(crate) fn fast_ok(&self) -> bool {
        !self.closed
            && self.waiters.is_empty()
            && self.size <= self.limits.max_size
            && self.limits.min_idle == 0
    }

    /// Whether the connection held under `key` may be parked with a thread (it stays registered
    /// as held, its slot keeps who has it), instead of being checked in.
    pub(crate) fn park_ok(&self, key: usize) -> bool {
        self.fast_ok() && self.held.get(key).is_some_and(|h| !h.reclaimed)
    }

    /// Whether no connection is idle in the core (parked ones are not counted here).
    pub(crate) fn no_idle(&self) -> bool {
        self.idle.is_empty()
    }

    /// A thread's slot hands back the lease of the connection held under `key`: who has it now,
    /// since when.
    pub(crate) fn relet(&mut self, key: usize, holder: Holder, since: Instant) {
        if let Some(h) = self.held.get_mut(key) {
            h.holder = holder;
            h.since = since;
        }
    }

    /// A check at checkout (expiry, broken, reset, validate) failed for the connection held under
    /// `key`. The request keeps its capacity: it gets another idle connection or opens one.
    pub(crate) fn check_failed(
        &mut self,
        key: usize,
        reason: CloseReason,
        now: Instant,
    ) -> Retake<C> {
        let held = self.held.remove(key);
        if held.reclaimed {
            // Its capacity was released (and its close counted) when it was reclaimed.
            self.reclaimed -= 1;
            return Retake::Restart;
        }
        self.count_close(reason);
        if self.closed {
            self.size -= 1;
            return Retake::Closed;
        }
        if let Some(idle) = self.idle.pop_back() {
            // The failed connection's capacity is freed; the idle one already counts.
            self.size -= 1;
            let key = self.hold(idle.meta.id, held.holder, now);
            return Retake::Got(idle, key);
        }
        self.opening += 1;
        Retake::Create
    }

    // ----- connecting -----

    fn new_meta(&mut self, now: Instant) -> ConnMeta {
        self.next_conn_id += 1;
        // A lifetime past the clock's range (`Duration::MAX`) never expires.
        let expires = self.limits.max_lifetime.and_then(|life| {
            let pct = u64::from(self.limits.jitter_percent);
            let max_cut =
                u64::try_from(life.as_nanos() / 100 * u128::from(pct)).unwrap_or(u64::MAX);
            let cut = if max_cut == 0 {
                0
            } else {
                fastrand::u64(0..=max_cut)
            };
            now.checked_add(life - Duration::from_nanos(cut))
        });
        ConnMeta::new(self.next_conn_id, now, expires, self.limits.check_window)
    }

    fn connect_succeeded(&mut self) {
        self.opening -= 1;
        self.stats.connects += 1;
        self.failures = 0;
        self.fail_fast_until = None;
    }

    /// A connect that `holder` ran itself succeeded; the connection is held under the returned key.
    pub(crate) fn connected_inline(
        &mut self,
        now: Instant,
        holder: Holder,
    ) -> Result<(usize, ConnMeta), ()> {
        self.connect_succeeded();
        if self.closed {
            self.size -= 1;
            self.stats.closed_manual += 1;
            return Err(());
        }
        let meta = self.new_meta(now);
        Ok((self.hold(meta.id, holder, now), meta))
    }

    /// A background connect succeeded: the connection goes to the request that started it when it
    /// still waits (`requester` = (key, uid)), else to the head of the queue, else to idle.
    pub(crate) fn connected(
        &mut self,
        conn: C,
        now: Instant,
        requester: Option<(usize, u64)>,
    ) -> (Option<Wake>, Option<Closing<C>>) {
        self.connect_succeeded();
        if self.closed {
            self.size -= 1;
            self.stats.closed_manual += 1;
            let wake = self
                .live_requester(requester)
                .map(|wkey| self.give(wkey, Grant::Closed));
            return (wake, Some((conn, CloseReason::Closed)));
        }
        let idle = Box::new(Entry {
            conn,
            meta: self.new_meta(now),
            dirty: false,
        });
        if let Some(wkey) = self.live_requester(requester) {
            let holder = self.waiters.get(wkey).expect("live waiter").holder;
            let key = self.hold(idle.meta.id, holder, now);
            return (Some(self.give(wkey, Grant::Conn { idle, key })), None);
        }
        (self.offer(idle, now).0, None)
    }

    fn live_requester(&self, requester: Option<(usize, u64)>) -> Option<usize> {
        let (key, uid) = requester?;
        self.waiters
            .get(key)
            .is_some_and(|n| n.uid == uid && n.grant.is_none())
            .then_some(key)
    }

    /// A connect failed: its capacity goes to the next waiter, the error to the request that
    /// started it (if it still waits). Returns the failure when nobody took it, for logging.
    pub(crate) fn connect_failed(
        &mut self,
        failure: ConnectFailure<E>,
        now: Instant,
        requester: Option<(usize, u64)>,
    ) -> ([Option<Wake>; 2], Option<ConnectFailure<E>>) {
        self.opening -= 1;
        self.stats.connect_failures += 1;
        self.failures = self.failures.saturating_add(1);
        if self.limits.fail_fast_after > 0 && self.failures >= self.limits.fail_fast_after {
            let exp = (self.failures - self.limits.fail_fast_after).min(5);
            self.fail_fast_until = Some(now + Duration::from_millis(100 << exp));
        }
        let w1 = self.release_capacity();
        match self.live_requester(requester) {
            Some(wkey) => ([w1, Some(self.give(wkey, Grant::Failed(failure)))], None),
            None => ([w1, None], Some(failure)),
        }
    }

    /// A reserved unit of capacity was not used (the connect was abandoned before it started).
    pub(crate) fn permit_unused(&mut self) -> Option<Wake> {
        self.opening -= 1;
        self.release_capacity()
    }

    // ----- maintenance -----

    /// Closes every idle connection.
    pub(crate) fn drain_idle(&mut self, reason: CloseReason) -> Vec<Closing<C>> {
        let mut out = Vec::with_capacity(self.idle.len());
        while let Some(idle) = self.idle.pop_back() {
            self.size -= 1;
            self.count_close(reason);
            out.push((idle.conn, reason));
        }
        out
    }

    /// Reclaims connections held for at least `age`: their capacity is released now, and each is
    /// closed when its holder lets go of it.
    pub(crate) fn reclaim(&mut self, age: Duration, now: Instant) -> (usize, Vec<Wake>) {
        let mut count = 0;
        for (_, h) in self.held.iter_mut() {
            if !h.reclaimed && now.saturating_duration_since(h.since) >= age {
                h.reclaimed = true;
                count += 1;
            }
        }
        self.reclaimed += count;
        self.stats.closed_leaked += count as u64;
        let wakes = (0..count).filter_map(|_| self.release_capacity()).collect();
        (count, wakes)
    }

    /// Shuts the pool: every waiter gets `Closed`, idle connections are closed.
    pub(crate) fn close(&mut self) -> (Vec<Wake>, Vec<Closing<C>>) {
        self.closed = true;
        // Nobody will wait any more: the sweeper stops when it next looks.
        self.sweep_at = None;
        let mut wakes = Vec::new();
        while let Some(wkey) = self.waiters.unlink_front() {
            wakes.push(self.give(wkey, Grant::Closed));
        }
        (wakes, self.drain_idle(CloseReason::Closed))
    }

    /// Changes `max_size`: growing serves queued requests, shrinking closes idle connections now
    /// and in-use ones as they come back.
    pub(crate) fn resize(&mut self, max_size: usize) -> (Vec<Wake>, Vec<Closing<C>>) {
        self.limits.max_size = max_size;
        self.limits.min_idle = self.limits.min_idle.min(max_size);
        let mut wakes = Vec::new();
        while self.size < max_size {
            let Some(wkey) = self.waiters.unlink_front() else {
                break;
            };
            self.size += 1;
            self.opening += 1;
            wakes.push(self.give(wkey, Grant::Permit));
        }
        let mut closing = Vec::new();
        while self.size > max_size {
            let Some(idle) = self.idle.pop_back() else {
                break;
            };
            self.size -= 1;
            self.count_close(CloseReason::Resized);
            closing.push((idle.conn, CloseReason::Resized));
        }
        (wakes, closing)
    }

    /// One reaper pass: closes idle connections past their lifetime or idle timeout (keeping
    /// `min_idle`), reports leaks once each, and reserves capacity to refill `min_idle`.
    /// Returns (connections to close, leaks to report, connects to start).
    pub(crate) fn reap(&mut self, now: Instant) -> (Vec<Closing<C>>, Vec<Leak>, usize) {
        let mut closing = Vec::new();
        if self.closed {
            return (closing, Vec::new(), 0);
        }
        for key in self.idle.keys() {
            if self.idle.get(key).is_some_and(|i| i.meta.is_expired(now)) {
                let idle = self.idle.remove(key);
                self.size -= 1;
                self.count_close(CloseReason::Stale);
                closing.push((idle.conn, CloseReason::Stale));
            }
        }
        if let Some(timeout) = self.limits.idle_timeout {
            // Oldest-returned first; never below min_idle, so the minimum is not churned.
            while self.idle.len() > self.limits.min_idle {
                let Some(key) = self.idle.front_key() else {
                    break;
                };
                let idle_for = now.saturating_duration_since(
                    self.idle.get(key).expect("front key").meta.last_used,
                );
                if idle_for < timeout {
                    break;
                }
                let idle = self.idle.remove(key);
                self.size -= 1;
                self.count_close(CloseReason::Idle);
                closing.push((idle.conn, CloseReason::Idle));
            }
        }
        let mut leaks = Vec::new();
        if let Some(threshold) = self.limits.leak_threshold {
            for (_, h) in self.held.iter_mut() {
                let held_for = now.saturating_duration_since(h.since);
                if !h.leak_warned && held_for >= threshold {
                    h.leak_warned = true;
                    leaks.push(Leak {
                        conn_id: h.conn_id,
                        held_for,
                        holder: h.holder,
                    });
                }
            }
        }
        (closing, leaks, self.reserve_min_idle(now))
    }

    /// Reserves capacity for the connects needed to bring idle connections up to `min_idle`.
    pub(crate) fn reserve_min_idle(&mut self, now: Instant) -> usize {
        if self.closed || self.breaker_open(now) {
            return 0;
        }
        let have = self.idle.len() + self.opening;
        let want = self
            .limits
            .min_idle
            .saturating_sub(have)
            .min(self.limits.max_size.saturating_sub(self.size));
        self.size += want;
        self.opening += want;
        want
    }

    /// Who holds what.
    pub(crate) fn held(&self, now: Instant) -> Vec<HeldConn> {
        self.held
            .iter()
            .map(|(_, h)| HeldConn {
                id: h.conn_id,
                held_for: now.saturating_duration_since(h.since),
                thread: h.holder.thread,
                task: h.holder.task,
                location: h.holder.location,
                reclaimed: h.reclaimed,
            })
            .collect()
    }
}
