//! The synchronization primitives of the acquisition and check-in paths, switched to loom's
//! model-checked versions in the crate's own tests under `--cfg loom` (like tokio's `src/loom/`;
//! loom is a dev-dependency, so a non-test build under `--cfg loom` keeps the real ones).
//!
//! - `Mutex`: the pool's lock, `parking_lot::Mutex` with one more way in, `lock_spinning`,
//!   for callers that are tokio tasks; under loom a wrapper over `loom::sync::Mutex` with the
//!   same API (a poisoned lock is taken as is, and `lock_spinning` is `lock`).
//! - `SlotMutex`: `parking_lot::Mutex`, for the per-thread fast path's slots and other short,
//!   rarely contended sections; loom's under loom.
//! - `AtomicBool`, `AtomicUsize`: the fast path's flag and parked count (the handshake between
//!   a check-in that parks and a request about to queue, see `crate::fast`); loom's under loom.
//! - `current`, `park_timeout`, `yield_now`, `Thread`: `std::thread`'s; under loom
//!   `loom::thread`'s, but `park_timeout` just parks (loom has no time, so models must never
//!   rely on a timeout firing) and `yield_now` does nothing.
//!
//! Shared ownership stays `std::sync::Arc` (the reaper needs `Weak`, which loom's `Arc` lacks,
//! and no invariant depends on it), and tokio's primitives (spawn, timers, `Notify`) stay tokio's.

#[cfg(not(all(test, loom)))]
pub(crate) use self::spin_mutex::Mutex;
#[cfg(all(test, loom))]
pub(crate) use loom::sync::MutexGuard;
#[cfg(not(all(test, loom)))]
pub(crate) use parking_lot::Mutex as SlotMutex;
#[cfg(not(all(test, loom)))]
pub(crate) use parking_lot::MutexGuard;
#[cfg(not(all(test, loom)))]
pub(crate) use std::thread::{current, park, park_timeout, yield_now, Thread};

#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize};

#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize};

/// Between the write and the read on each side of the fast path's handshake (see `crate::fast`):
/// a `SeqCst` fence under loom, nothing otherwise.
///
/// Both sides write and then read with `SeqCst` accesses, which the C11 model totally orders, so
/// at least one side reads the other's write. Loom models `SeqCst` accesses as `AcqRel` only (its
/// README, "Unsupported features"), under which both reads may miss, and it reported a lost
/// wake-up that cannot happen; it does model `SeqCst` fences, which give the same guarantee. The
/// real build needs no fence: its accesses are `SeqCst` already.
#[inline(always)]
pub(crate) fn handshake_fence() {
    #[cfg(all(test, loom))]
    loom::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

#[cfg(all(test, loom))]
pub(crate) use self::mocked::{
    current, park, park_timeout, yield_now, Mutex, Mutex as SlotMutex, Thread,
};

/// The pool's lock: `parking_lot::Mutex`, plus a bounded spin for tokio tasks.
///
/// When every request queues, the runtime's workers take the pool's lock for every acquisition
/// and check-in, each holding it for a few hundred instructions, and contend for it all the
/// time. `parking_lot` soon falls back to `sched_yield` and parking there, and a worker that
/// yields or parks loses far more than the lock holder needs to finish. `lock_spinning` first
/// spins (reading the lock before trying it) for about as long as a critical section lasts,
/// by at most one caller fewer than the machine has CPUs, so spinners never take every CPU
/// from the lock holder; the rest park as usual. Tasks use it: a runtime has about one worker
/// per CPU. OS threads (the blocking front end) use plain `lock`: they can be many more than the
/// CPUs, and spinning only slowed them (32 threads on 2 CPUs in `core_overhead`).
///
/// Measured with `cargo bench -p pool-benches --bench core_overhead` (the interleaved latency
/// report, tasks holding across a yield): with plain `parking_lot` ours ran at 0.99–1.01× of
/// deadpool in scratch A/B runs, with `lock_spinning` at 1.02–1.05×; `std::sync::Mutex` (which
/// spins before its futex wait) did as well for tasks but made `threads32` 2–4× slower.
#[cfg(not(all(test, loom)))]
mod spin_mutex {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;

    use parking_lot::MutexGuard;

    /// Spin iterations before parking (each a `spin_loop` hint and a load).
    const SPINS: u32 = 100;

    /// At most this many callers spin at once: the CPUs less one (at least one).
    fn max_spinners() -> usize {
        static MAX: OnceLock<usize> = OnceLock::new();
        *MAX.get_or_init(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
        })
    }

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T> {
        lock: parking_lot::Mutex<T>,
        spinners: AtomicUsize,
    }

    impl<T> Mutex<T> {
        pub(crate) const fn new(value: T) -> Self {
            Mutex {
                lock: parking_lot::Mutex::new(value),
                spinners: AtomicUsize::new(0),
            }
        }

        /// Locks, parking at once when contended (after `parking_lot`'s own short spin).
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.lock.lock()
        }

        /// Locks, spinning a while first when contended (for tokio tasks).
        pub(crate) fn lock_spinning(&self) -> MutexGuard<'_, T> {
            if let Some(g) = self.lock.try_lock() {
                return g;
            }
            if self.spinners.fetch_add(1, Ordering::Relaxed) < max_spinners() {
                for _ in 0..SPINS {
                    std::hint::spin_loop();
                    if !self.lock.is_locked() {
                        if let Some(g) = self.lock.try_lock() {
                            self.spinners.fetch_sub(1, Ordering::Relaxed);
                            return g;
                        }
                    }
                }
            }
            self.spinners.fetch_sub(1, Ordering::Relaxed);
            self.lock.lock()
        }
    }
}

#[cfg(all(test, loom))]
mod mocked {
    use std::time::Duration;

    pub(crate) use loom::thread::{current, Thread};

    /// A no-op: every look either side of it locks the pool, where loom tries every
    /// interleaving anyway, while loom's own `yield_now` would always let the other threads
    /// run first and hide a look that still finds nothing.
    pub(crate) fn yield_now() {}

    /// `loom::sync::Mutex` with `parking_lot`'s `.lock()`.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        pub(crate) fn lock_spinning(&self) -> loom::sync::MutexGuard<'_, T> {
            self.lock()
        }

        pub(crate) fn try_lock(&self) -> Option<loom::sync::MutexGuard<'_, T>> {
            match self.0.try_lock() {
                Ok(g) => Some(g),
                Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            }
        }
    }

    /// Loom models no time: parks until unparked (no spurious wake-ups either).
    pub(crate) fn park_timeout(_: Duration) {
        loom::thread::park();
    }

    /// Parks until unparked.
    pub(crate) fn park() {
        loom::thread::park();
    }
}

use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Wakes a thread queued in the blocking front end: raises its flag, then unparks it. The flag
/// lets the thread notice a grant while it yields before parking, and a hand-off to a thread
/// that has not parked yet costs no system call, so short waits avoid a park/unpark round trip.
#[derive(Debug, Clone)]
pub(crate) struct ThreadWaker {
    thread: Thread,
    flag: Arc<std::sync::atomic::AtomicBool>,
}

thread_local! {
    static THIS_THREAD: ThreadWaker = ThreadWaker {
        thread: current(),
        flag: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
}

impl ThreadWaker {
    /// This thread's waker, its flag lowered: taken when the thread queues.
    pub(crate) fn for_this_thread() -> ThreadWaker {
        if cfg!(all(test, loom)) {
            // Loom runs each execution's threads anew on the same OS thread: never cache.
            return ThreadWaker {
                thread: current(),
                flag: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            };
        }
        THIS_THREAD.with(|w| {
            w.flag.store(false, Ordering::Relaxed);
            w.clone()
        })
    }

    /// Whether this thread's flag was raised; lowers it.
    pub(crate) fn take_flag() -> bool {
        THIS_THREAD.with(|w| w.flag.swap(false, Ordering::Acquire))
    }

    /// Raises the flag and unparks the thread.
    pub(crate) fn wake(self) {
        self.flag.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// How often a queued thread yields, watching its flag, before it parks. None under loom, which
/// checks the park/unpark protocol itself.
#[cfg(not(all(test, loom)))]
pub(crate) const YIELDS_BEFORE_PARK: u32 = 16;
#[cfg(all(test, loom))]
pub(crate) const YIELDS_BEFORE_PARK: u32 = 0;

/// How often a blocking request that finds nothing free yields the CPU and looks again before it
/// queues (an adaptive spin, as mutexes do before they sleep).
///
/// With many more threads than CPUs, most connections that are out at a given moment belong to
/// threads that were preempted while holding one; they come back as soon as those threads run
/// again. Queueing at once would close the per-thread fast path for everyone (see `crate::fast`)
/// for as long as the queued thread takes to be scheduled, and under strict FIFO would hand every
/// returned connection to a thread that is not running, so each checkout would cost a context
/// switch. Yielding lets a preempted holder run and return its connection first. No one is
/// overtaken: a request that looks again has not queued yet, and it still cannot take a
/// connection ahead of requests that did (strict FIFO holds for queued requests).
///
/// In scratch runs of `core_overhead`'s sustained report (32 threads on 2 CPUs, pool of 8), 2, 4
/// and 8 looks took the share of gets that queue from 30–90 % to under 0.1 % (1 look: 0.5–3 %),
/// and 4 gave 3.6–5.9× r2d2's throughput. One under loom, so the models cover a look that finds
/// nothing.
#[cfg(not(all(test, loom)))]
pub(crate) const YIELDS_BEFORE_QUEUE: u32 = 4;
#[cfg(all(test, loom))]
pub(crate) const YIELDS_BEFORE_QUEUE: u32 = 1;
