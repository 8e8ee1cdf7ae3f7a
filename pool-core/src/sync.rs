//! The synchronization primitives of the acquisition and check-in paths, switched to loom's
//! model-checked versions in the crate's own tests under `--cfg loom` (like tokio's `src/loom/`;
//! loom is a dev-dependency, so a non-test build under `--cfg loom` keeps the real ones).
//!
//! - `Mutex`: `parking_lot::Mutex` (`.lock()` returns the guard); under loom a wrapper over
//!   `loom::sync::Mutex` with the same API (a poisoned lock is taken as is).
//! - `current`, `park_timeout`, `Thread`: `std::thread`'s; under loom `loom::thread`'s, and
//!   `park_timeout` just parks: loom has no time, so models must never rely on a timeout firing.
//!
//! Shared ownership stays `std::sync::Arc` (the reaper needs `Weak`, which loom's `Arc` lacks,
//! and no invariant depends on it), and tokio's primitives (spawn, timers, `Notify`) stay tokio's.

#[cfg(not(all(test, loom)))]
pub(crate) use parking_lot::Mutex;
#[cfg(not(all(test, loom)))]
pub(crate) use std::thread::{current, park_timeout, Thread};

#[cfg(all(test, loom))]
pub(crate) use self::mocked::{current, park_timeout, Mutex, Thread};

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
    }

    /// Loom models no time: parks until unparked (no spurious wake-ups either).
    pub(crate) fn park_timeout(_: Duration) {
        loom::thread::park();
    }
}
