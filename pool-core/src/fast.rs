//! The per-thread fast path: a connection parked with the thread that returned it, taken back by
//! that thread without the pool lock.
//!
//! Each pool has a few slots, and each thread maps to one of them. A slot *owns* at most one
//! connection, which stays registered as held in the core while the slot owns it: either
//! *parked* in the slot (idle, counted by [`FastPath::parked`]) or *lent* from it to a guard (the
//! slot records who has it). A checkout takes the parked connection of its thread's slot, and the
//! guard's drop parks it there again: two uncontended locks of a slot no other thread normally
//! touches, instead of two round trips through the pool's lock and its lists.
//!
//! The fast path runs only while [`FastPath::open`] is raised: nobody waits, the pool is open and
//! not over its size, and no `min_idle` is kept (see `State::fast_ok`). The flag is written under
//! the pool lock only. Strict FIFO and "no idle connection while a request waits" hold because a
//! request that is about to queue lowers the flag and then, if any connection is parked, moves
//! every parked connection back into the core (`flush`), while a check-in that parks raises the
//! parked count and then reads the flag again, taking its connection back to the slow path when
//! the flag fell. Both pairs are `SeqCst`, so at least one side sees the other (a Dekker
//! handshake; the slot lock orders the rest). The loom models check it with the flag and the
//! count as loom atomics and a `SeqCst` fence between each write and read (see
//! `sync::handshake_fence`: loom models `SeqCst` accesses as `AcqRel` only). Maintenance
//! (`held`, the reaper, `close_*`, `resize`, `close`) flushes first, so the core is the whole
//! truth whenever it is inspected.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use crate::core::{After, Entry, Holder, Idle, State};
use crate::guard::Pooled;
use crate::manager::Manager;
use crate::pool::Shared;
use crate::sync::SlotMutex;

/// A slot's contents.
#[derive(Debug)]
pub(crate) struct SlotCell<C> {
    /// The core's held key of the connection this slot owns (parked here or lent from here).
    owner: Option<usize>,
    /// The owned connection while it is parked here.
    parked: Option<Idle<C>>,
    /// Who has the lent connection, and since when.
    lease: Option<(Holder, Instant)>,
    /// Hold times of the connections lent from here and given back here (merged into
    /// `Metrics` when they are read), so the fast path's check-in records them under the slot's
    /// lock instead of the pool's.
    holds: Holds,
}

/// Hold times recorded in a slot.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    pub(crate) total: std::time::Duration,
    pub(crate) histogram: crate::metrics::DurationHistogram,
}

impl Holds {
    fn record(&mut self, since: Instant, now: Instant) {
        let d = now.saturating_duration_since(since);
        self.total += d;
        self.histogram.record(d);
    }
}

/// What [`Shared::park`] did with a returned connection.
pub(crate) enum Parked<C> {
    /// Parked in the slot.
    Parked,
    /// Not parked: back for the usual check-in, with whether its hold time was recorded.
    Back(Idle<C>, bool),
}

/// One slot, on a cache line of its own.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Slot<C>(SlotMutex<SlotCell<C>>);

/// The fast path's state, in one place: the slots, how many connections are parked in them,
/// whether the fast path is open (written under the pool lock only), and how many checkouts it
/// served.
#[derive(Debug)]
pub(crate) struct FastPath<C> {
    pub(crate) slots: Box<[Slot<C>]>,
    pub(crate) parked: crate::sync::AtomicUsize,
    pub(crate) open: crate::sync::AtomicBool,
    pub(crate) gets: std::sync::atomic::AtomicU64,
}

impl<C> FastPath<C> {
    /// A closed fast path with empty slots.
    pub(crate) fn new() -> Self {
        FastPath {
            slots: slots(),
            parked: crate::sync::AtomicUsize::new(0),
            open: crate::sync::AtomicBool::new(false),
            gets: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// The slots of a pool: a power of two, about four per CPU, at most 64.
fn slots<C>() -> Box<[Slot<C>]> {
    let cpus = std::thread::available_parallelism().map_or(4, std::num::NonZeroUsize::get);
    let n = (cpus * 4).next_power_of_two().clamp(4, 64);
    (0..n)
        .map(|_| {
            Slot(SlotMutex::new(SlotCell {
                owner: None,
                parked: None,
                lease: None,
                holds: Holds::default(),
            }))
        })
        .collect()
}

#[cfg(not(all(test, loom)))]
static NEXT_THREAD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(not(all(test, loom)))]
thread_local! {
    /// This thread's number, for its slot in every pool.
    static THREAD_NUMBER: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

// Loom runs a model's threads on the OS thread of its test: number them per loom thread, from 0
// in each execution (a counter per OS thread, as tests run side by side), so that they map to
// distinct slots as real threads do.
#[cfg(all(test, loom))]
std::thread_local! {
    static LOOM_NEXT_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(all(test, loom))]
loom::thread_local! {
    static THREAD_NUMBER: usize = LOOM_NEXT_THREAD.with(|n| {
        let v = n.get();
        n.set(v + 1);
        v
    });
}

/// Numbers threads from 0 again (at the start of each loom execution).
#[cfg(all(test, loom))]
pub(crate) fn reset_thread_numbers() {
    LOOM_NEXT_THREAD.with(|n| n.set(0));
}

/// What moving parked connections back into the core left to do after unlocking.
pub(crate) type Flushed<C> = After<C>;

impl<M: Manager> Shared<M> {
    /// This thread's slot in this pool.
    pub(crate) fn slot_index(&self) -> usize {
        THREAD_NUMBER.with(|n| *n) & (self.fast.slots.len() - 1)
    }

    /// The checkout fast path: the connection parked in this thread's slot, if the fast path is
    /// open and it passes the synchronous checks; `None` to go the usual way. A parked
    /// connection that needs more than the synchronous checks is handed back to the core and
    /// checked the usual way (the `Err` of [`Shared::check_sync`]).
    #[inline]
    pub(crate) fn take_parked(
        self: &Arc<Self>,
        holder: Holder,
        now: Instant,
    ) -> Option<Result<Pooled<M>, crate::pool::Checked<M>>> {
        if !self.fast.open.load(Ordering::Acquire) || self.fast.parked.load(Ordering::Relaxed) == 0
        {
            return None;
        }
        let i = self.slot_index();
        let (mut entry, key) = {
            let mut cell = self.fast.slots[i].0.try_lock()?;
            let entry = cell.parked.take()?;
            cell.lease = Some((holder, now));
            (entry, cell.owner.expect("a parked connection has an owner"))
        };
        self.fast.parked.fetch_sub(1, Ordering::Relaxed);
        self.fast.gets.fetch_add(1, Ordering::Relaxed);
        let Entry { conn, meta, .. } = &mut *entry;
        let clean = !meta.is_expired(now)
            && meta.check_at.is_none_or(|at| now < at)
            && !self.manager.is_broken(conn, meta);
        if clean {
            return Some(Ok(Pooled::leased(self.clone(), key, entry, i)));
        }
        // Something is due (expiry, idle checks, broken): back to the core's books, then the
        // usual checks decide.
        {
            let mut st = self.state.lock();
            self.end_lease(&mut st, i, key);
            st.relet(key, holder, now);
        }
        Some(self.check_sync(entry, key, now))
    }

    /// The held keys the slots own (tests: a connection is owned by one slot at most).
    #[cfg(test)]
    pub(crate) fn slot_owners(&self) -> Vec<usize> {
        self.fast
            .slots
            .iter()
            .filter_map(|s| s.0.lock().owner)
            .collect()
    }

    /// The check-in fast path for a guard lent from slot `i`: parks the (clean) connection there
    /// again. Returns it when it must be checked in the usual way instead.
    pub(crate) fn park(
        &self,
        i: usize,
        key: usize,
        entry: Idle<M::Connection>,
        now: Instant,
    ) -> Parked<M::Connection> {
        {
            let mut cell = self.fast.slots[i].0.lock();
            if cell.owner != Some(key) {
                // The lease was handed back to the core meanwhile (a flush): the usual way.
                return Parked::Back(entry, false);
            }
            if let Some((_, since)) = cell.lease.take() {
                cell.holds.record(since, now);
            }
            cell.parked = Some(entry);
            self.fast.parked.fetch_add(1, Ordering::SeqCst);
        }
        crate::sync::handshake_fence();
        if self.fast.open.load(Ordering::SeqCst) {
            return Parked::Parked;
        }
        // A request is about to queue (or the pool changed) meanwhile: take the connection back
        // for the usual check-in, unless a flush or a checkout already took it.
        let mut cell = self.fast.slots[i].0.lock();
        if cell.owner != Some(key) {
            return Parked::Parked;
        }
        let Some(entry) = cell.parked.take() else {
            return Parked::Parked;
        };
        self.fast.parked.fetch_sub(1, Ordering::Relaxed);
        Parked::Back(entry, true)
    }

    /// Under the pool lock: slot `i` gives up the connection held under `key`, if it still owns
    /// it (it is lent: the caller has it).
    /// Returns when the lease began, if it was still the slot's (else a flush moved it into the
    /// core's books).
    pub(crate) fn end_lease(
        &self,
        _st: &mut State<M::Connection, M::Error>,
        i: usize,
        key: usize,
    ) -> Option<Instant> {
        let mut cell = self.fast.slots[i].0.lock();
        if cell.owner == Some(key) {
            cell.owner = None;
            return cell.lease.take().map(|(_, since)| since);
        }
        None
    }

    /// The hold times the slots recorded, added to `m`.
    pub(crate) fn add_holds(&self, m: &mut crate::metrics::Metrics) {
        for slot in self.fast.slots.iter() {
            let cell = slot.0.lock();
            m.hold_time += cell.holds.total;
            m.hold_histogram.merge(&cell.holds.histogram);
        }
    }

    /// Under the pool lock, at a slow check-in that may park: makes this thread's slot own the
    /// connection held under `key`, parked. A connection parked there before (returned earlier by
    /// this thread) is returned with its key, to be checked in to the core instead, so the slot
    /// keeps the one this thread returned last. Returns the connection to check in, if any.
    pub(crate) fn adopt(
        &self,
        key: usize,
        entry: Idle<M::Connection>,
    ) -> Option<(usize, Idle<M::Connection>)> {
        let Some(mut cell) = self.fast.slots[self.slot_index()].0.try_lock() else {
            return Some((key, entry));
        };
        let out = match cell.owner {
            None => {
                self.fast.parked.fetch_add(1, Ordering::SeqCst);
                None
            }
            Some(old) => match cell.parked.take() {
                Some(prev) => Some((old, prev)),
                // Lent out: the slot stays with that one.
                None => return Some((key, entry)),
            },
        };
        cell.owner = Some(key);
        cell.parked = Some(entry);
        cell.lease = None;
        drop(cell);
        self.fast.open.store(true, Ordering::SeqCst);
        out
    }

    /// Under the pool lock: sets the fast-path flag, skipping the store (a full barrier) when it
    /// is already set so. Every write of the flag is made under the pool lock, so the last one
    /// is visible here; and if it already reads `false`, a check-in that parks and then reads the
    /// flag either reads that `false` or raised the parked count before it was written, which
    /// the caller's `SeqCst` load of the count then sees (the Dekker handshake above holds).
    pub(crate) fn set_fast(&self, ok: bool) {
        if self.fast.open.load(Ordering::Relaxed) != ok {
            self.fast.open.store(ok, Ordering::SeqCst);
        }
    }

    /// Under the pool lock, before a request may queue: lowers the fast-path flag and, if any
    /// connection is parked, moves them all back into the core.
    pub(crate) fn before_queue(
        &self,
        st: &mut State<M::Connection, M::Error>,
        now: Instant,
    ) -> Flushed<M::Connection> {
        self.set_fast(false);
        crate::sync::handshake_fence();
        if self.fast.parked.load(Ordering::SeqCst) == 0 {
            return After::none();
        }
        self.flush(st, now)
    }

    /// Under the pool lock: every slot gives up what it owns. Parked connections are checked in
    /// to the core (idle, or handed to a waiter); lent ones become plain held connections, with
    /// their lease recorded in the core.
    pub(crate) fn flush(
        &self,
        st: &mut State<M::Connection, M::Error>,
        now: Instant,
    ) -> Flushed<M::Connection> {
        let mut out = After::none();
        for slot in self.fast.slots.iter() {
            let mut cell = slot.0.lock();
            let Some(key) = cell.owner.take() else {
                continue;
            };
            if let Some(entry) = cell.parked.take() {
                self.fast.parked.fetch_sub(1, Ordering::Relaxed);
                drop(cell);
                let r = st.checkin(key, entry, None, now);
                out.merge(r.after);
            } else if let Some((holder, since)) = cell.lease.take() {
                st.relet(key, holder, since);
            }
        }
        out
    }

    /// Locks the pool with the fast path closed and everything the slots own moved back into the
    /// core, for maintenance and inspection; `then` runs under the lock, what the flush left
    /// runs after it, and the fast path reopens if the core allows.
    pub(crate) fn with_flushed<R>(
        &self,
        then: impl FnOnce(&mut State<M::Connection, M::Error>) -> R,
    ) -> R {
        let (r, flushed) = {
            let mut st = self.state.lock();
            self.fast.open.store(false, Ordering::SeqCst);
            let flushed = self.flush(&mut st, Instant::now());
            let r = then(&mut st);
            self.set_fast(st.fast_ok());
            (r, flushed)
        };
        self.after_flush(flushed);
        r
    }

    /// Runs what a flush left to do, after unlocking.
    pub(crate) fn after_flush(&self, flushed: Flushed<M::Connection>) {
        self.run(flushed);
    }
}
