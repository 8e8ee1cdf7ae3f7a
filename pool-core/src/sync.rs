//! The synchronization primitives of the acquisition and check-in paths, switched to loom's
//! model-checked versions in the crate's own tests under `--cfg loom` (like tokio's `src/loom/`;
//! loom is a dev-dependency, so a non-test build under `--cfg loom` keeps the real ones).
//!
//! - `Mutex`: a wrapper over `std::sync::Mutex` whose `.lock()` returns the guard (a poisoned
//!   lock is taken as is: the state behind it is updated by non-panicking code only); under
//!   loom the same wrapper over `loom::sync::Mutex`.
//!
//! Why std's mutex and not `parking_lot`'s (used elsewhere in the workspace): the pool's lock is
//! held for a few hundred instructions by every acquisition and check-in, and when every request
//! queues, the runtime's workers contend for it all the time. `parking_lot` then falls back to
//! `sched_yield` system calls after a few spins, std's futex mutex spins longer first; the
//! hold-across-yield benchmark (`cargo bench -p pool-benches --bench core_overhead`, latency
//! report) ran about 20 % faster with std's on the same build.
//! - `SlotMutex`: `parking_lot::Mutex`, for the per-thread fast path's slots, which are short
//!   critical sections a few threads at most share; with std's mutex there, the 32-thread
//!   benchmark ran 2.5× slower. Under loom it is loom's, like `Mutex`.
//! - `current`, `park_timeout`, `Thread`: `std::thread`'s; under loom `loom::thread`'s, and
//!   `park_timeout` just parks: loom has no time, so models must never rely on a timeout firing.
//!
//! Shared ownership stays `std::sync::Arc` (the reaper needs `Weak`, which loom's `Arc` lacks,
//! and no invariant depends on it), and tokio's primitives (spawn, timers, `Notify`) stay tokio's.

#[cfg(not(all(test, loom)))]
pub(crate) use self::std_mutex::Mutex;
#[cfg(not(all(test, loom)))]
pub(crate) use parking_lot::Mutex as SlotMutex;
#[cfg(not(all(test, loom)))]
pub(crate) use std::thread::{current, park_timeout, Thread};

#[cfg(all(test, loom))]
pub(crate) use self::mocked::{current, park_timeout, Mutex, Mutex as SlotMutex, Thread};

/// `std::sync::Mutex` with a `.lock()` that returns the guard.
#[cfg(not(all(test, loom)))]
mod std_mutex {
    use std::sync::{MutexGuard, PoisonError};

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) const fn new(value: T) -> Self {
            Mutex(std::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }
}

#[cfg(all(test, loom))]
mod mocked {
    use std::time::Duration;

    pub(crate) use loom::thread::{current, Thread};

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
}

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Wakes a thread queued in the blocking front end: raises its flag, then unparks it. The flag
/// lets the thread notice a grant while it yields before parking, and a hand-off to a thread
/// that has not parked yet costs no system call, so short waits avoid a park/unpark round trip.
#[derive(Debug, Clone)]
pub(crate) struct ThreadWaker {
    thread: Thread,
    flag: Arc<AtomicBool>,
}

thread_local! {
    static THIS_THREAD: ThreadWaker = ThreadWaker {
        thread: current(),
        flag: Arc::new(AtomicBool::new(false)),
    };
}

impl ThreadWaker {
    /// This thread's waker, its flag lowered: taken when the thread queues.
    pub(crate) fn for_this_thread() -> ThreadWaker {
        if cfg!(all(test, loom)) {
            // Loom runs each execution's threads anew on the same OS thread: never cache.
            return ThreadWaker {
                thread: current(),
                flag: Arc::new(AtomicBool::new(false)),
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
