//! The pool: one core (`crate::core`), two front ends (tokio tasks and OS threads).
//!
//! - `mod.rs` (this file): [`Shared`], the state every handle, guard, background connect and
//!   reaper shares, and the small helpers around its lock;
//! - `handle.rs`: the public handle, [`Pool`];
//! - `acquire.rs`: the acquisition step machine, one for both front ends, and the checkout checks;
//! - `tasks.rs`: the tokio-task front end (the `Get` future, waiting in a task, the sweeper);
//! - `threads.rs`: the OS-thread front end (`get_blocking`, parking, driving manager futures);
//! - `connect.rs`: opening connections (in the background or inline) and refilling `min_idle`;
//! - `checkin.rs`: returning connections (the guard's `Drop`).

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
    Acquire, After, Ask, ConnectFailure, Entry, Grant, Holder, Idle, Limits, More, Retake, State,
    Sweeper, Wake,
};
use crate::deadline::Deadline;
use crate::error::{BuildError, Phase, PoolError, ResizeError};
use crate::guard::Pooled;
use crate::manager::{BlockingManager, CloseReason, Manager};
use crate::metrics::{HeldConn, Metrics, Status};
use crate::reaper;

mod acquire;
mod checkin;
mod connect;
mod handle;
mod tasks;
mod threads;

pub(crate) use acquire::Checked;
pub use handle::Pool;
pub(crate) use tasks::Task;
pub(crate) use threads::{block_on, Thread};

#[allow(clippy::wildcard_imports)]
use acquire::*;
#[allow(clippy::wildcard_imports)]
use connect::*;
#[allow(clippy::wildcard_imports)]
use tasks::*;

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

    /// A holder acquiring for a call made at `location` (a scope's `scoped`, whose own
    /// `get` runs inside the library).
    fn at(location: &'static Location<'static>) -> Holder {
        Holder {
            location,
            ..Holder::here()
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
    /// The per-thread fast path (see `crate::fast`).
    pub(crate) fast: crate::fast::FastPath<M::Connection>,
    /// Task and thread scopes' slots for reuse (see `crate::scope`).
    pub(crate) scope_slots: crate::scope::Spares<M>,
    /// Spare grant cells, one stash per fast-path slot (see `crate::core::cell`).
    cells: Stashes<M::Connection, M::Error>,
}

/// A grant with the instant it was handed over.
type GrantOf<M> = (
    Grant<<M as Manager>::Connection, <M as Manager>::Error>,
    Instant,
);

/// A queued request's cell, shared with its waiter node.
type CellOf<M> = Arc<GrantCell<<M as Manager>::Connection, <M as Manager>::Error>>;

/// A front end: how one kind of caller (a tokio task, an OS thread) waits for a grant, bounds a
/// manager future, sleeps between connect retries, connects and refills `min_idle`. The step
/// machine (`acquire.rs`) is one, generic over it; `tasks.rs` ([`Task`]) and `threads.rs`
/// ([`Thread`]) implement it.
pub(crate) trait FrontEnd: Sized + 'static {
    /// Whether the caller is a tokio task: its own poll stores its waker when it queues (a thread
    /// is unparked instead).
    const TASK: bool;

    /// Waits for the grant of waiter `key` until `deadline`; `None` when the time ran out (the
    /// waiter is then removed, anything granted to it meanwhile passed on). `since`: when the
    /// request queued (its waiting time is counted), `None` for a connect.
    fn wait_grant<M: Manager>(
        shared: &Shared<M>,
        key: usize,
        since: Option<Instant>,
        deadline: Deadline,
    ) -> impl Future<Output = Option<GrantOf<M>>> + Send;

    /// Runs a manager future until it completes or `limit` passes (`None` then).
    fn bound<T: Future + Send>(
        fut: T,
        limit: Deadline,
    ) -> impl Future<Output = Option<T::Output>> + Send;

    /// Sleeps `d` (a backoff between connect attempts).
    fn sleep(d: Duration) -> impl Future<Output = ()> + Send;

    /// Opens a connection with the capacity this request holds, by `limit`. `Err(None)`: the
    /// pool closed.
    fn connect<M: Manager>(
        shared: &Arc<Shared<M>>,
        holder: Holder,
        limit: Deadline,
    ) -> impl Future<Output = Result<Pooled<M>, Option<ConnectFailure<M::Error>>>> + Send;

    /// Starts background connects with reserved capacity (`min_idle` refill).
    fn refill<M: Manager>(shared: &Arc<Shared<M>>, reservations: Vec<Reservation<M>>);
}

impl<M: Manager> Shared<M> {
    fn preferred(&self) -> Option<(usize, u64)> {
        let (uid, key, id) = AFFINITY.with(Cell::get);
        (uid == self.uid).then_some((key, id))
    }

    fn cancel_waiter(&self, key: usize) {
        let after = self.state.lock().cancel_waiter(key, Instant::now());
        self.run(after);
    }

    /// Carries out what a core operation left to do, once the lock is released (the one place
    /// that does): wakes requests, closes connections, warns of leaks. A refill is started by
    /// [`maintain`](Self::maintain), the only operation that reserves one, before this runs.
    pub(crate) fn run(&self, after: After<M::Connection>) {
        if after.is_empty() {
            return;
        }
        let ([a, b], close_one, more) = after.split();
        let More {
            wakes: more_wakes,
            closing: more_closing,
            leaks,
            refill,
        } = more.map_or_else(More::default, |m| *m);
        debug_assert_eq!(refill, 0, "a refill is started by `maintain`");
        for w in a.into_iter().chain(b).chain(more_wakes) {
            w.wake();
        }
        for (c, r) in close_one.into_iter().chain(more_closing) {
            self.close_conn(c, r);
        }
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

    /// Gives back capacity reserved for a connect that will not run.
    fn permit_unused(&self) {
        let after = self.state.lock().permit_unused();
        self.run(after);
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

    /// Locks the pool's state; `spin`: the caller is a tokio task (see `crate::sync::Mutex`).
    fn lock_state(&self, spin: bool) -> crate::sync::MutexGuard<'_, StateOf<M>> {
        if spin {
            self.state.lock_spinning()
        } else {
            self.state.lock()
        }
    }

    /// A consistent snapshot of sizes and the queue; parked connections count as idle.
    pub(crate) fn status(&self) -> Status {
        let st = self.state.lock();
        let mut s = st.status();
        let parked = self.fast.parked.load(Ordering::SeqCst);
        s.idle += parked;
        s.in_use = s.in_use.saturating_sub(parked);
        s
    }

    pub(crate) fn close_conn(&self, conn: M::Connection, reason: CloseReason) {
        tracing::debug!(pool = %self.config.name, %reason, "closing connection");
        self.manager.close(conn, reason);
    }

    pub(crate) fn close(&self) -> usize {
        let after = self.with_flushed(State::close);
        self.sweep_notify.notify_one();
        let n = after.close_count();
        self.run(after);
        self.drained.notify_waiters();
        n
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().is_closed()
    }

    /// One maintenance pass (reaper): close expired and idle connections, warn about leaks, refill
    /// `min_idle`. Returns when the next pass should run (`State::next_pass`: sooner than
    /// `reap_interval` when a held connection is about to cross the leak threshold).
    pub(crate) fn maintain<F: FrontEnd>(self: &Arc<Self>) -> Duration {
        let interval = self.config.reap_interval;
        let (mut after, next) = self.with_flushed(|st| {
            let now = Instant::now();
            (st.reap(now), st.next_pass(now, interval))
        });
        // The reserved capacity goes into `Reservation`s first: a manager's `close` that panics
        // below must not leak it.
        self.spawn_refill::<F>(after.take_refill());
        self.run(after);
        next
    }
}
