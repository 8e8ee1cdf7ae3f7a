//! Shared pieces of the loom models.
//!
//! Run them with (release: loom explores thousands of interleavings):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target-loom \
//!     cargo test -p pool-core --release --lib loom
//! ```
//!
//! The models are small enough to explore exhaustively too (no `LOOM_MAX_PREEMPTIONS`, a few
//! seconds); add `--config 'profile.release.package.pool-core.overflow-checks=true'` so that a
//! counter released twice panics instead of wrapping.
//!
//! Under `--cfg loom` the pool's lock and the blocking front end's park/unpark are loom's (see
//! `crate::sync`), so loom explores every interleaving of lock acquisitions and wake-ups, and
//! reports a lost wake-up as a deadlock (every thread parked). Loom models no time: models use
//! long wait timeouts that never fire, and no reaper runs (models call `Shared::maintain`).
//!
//! Loom runs all model threads as coroutines of one OS thread, so the manager below can keep its
//! books in plain std atomics and a std mutex (never held across a loom operation).
//!
//! Without `--cfg loom`, [`model`] runs a model once and [`thread`] is `std::thread`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use crate::{Builder, CloseReason, Manager, Pool, Pooled, Status};

#[cfg(loom)]
pub(super) use loom::thread;

/// Runs the model under loom, which explores every interleaving (with thread numbers for the
/// per-thread fast path starting from 0 in each execution).
#[cfg(loom)]
pub(super) fn model(f: impl Fn() + Sync + Send + 'static) {
    loom::model(move || {
        crate::fast::reset_thread_numbers();
        f();
    });
}
#[cfg(not(loom))]
pub(super) use std::thread;

/// Runs the model once (loom's `model` explores every interleaving).
#[cfg(not(loom))]
pub(super) fn model(f: impl Fn()) {
    f();
}

/// Long enough never to expire during a model.
pub(super) const LONG: Duration = Duration::from_secs(3600);

/// What the manager saw.
#[derive(Debug, Default)]
pub(super) struct Books {
    connects: AtomicU64,
    closed: StdMutex<Vec<(u64, CloseReason)>>,
}

impl Books {
    pub(super) fn connects(&self) -> u64 {
        self.connects.load(Ordering::SeqCst)
    }

    pub(super) fn closed(&self) -> Vec<(u64, CloseReason)> {
        self.closed.lock().unwrap().clone()
    }

    pub(super) fn closes(&self) -> u64 {
        self.closed.lock().unwrap().len() as u64
    }

    pub(super) fn is_closed(&self, id: u64) -> bool {
        self.closed.lock().unwrap().iter().any(|(c, _)| *c == id)
    }
}

/// Connections are their ids (1, 2, …); connects complete at once; closes are recorded, and a
/// second close of one connection panics.
#[derive(Debug)]
pub(super) struct Counting(pub(super) Arc<Books>);

impl crate::BlockingManager for Counting {}

impl Manager for Counting {
    type Connection = u64;
    type Error = std::io::Error;

    fn connect(&self) -> impl Future<Output = Result<u64, std::io::Error>> + Send {
        let id = self.0.connects.fetch_add(1, Ordering::SeqCst) + 1;
        std::future::ready(Ok(id))
    }

    fn close(&self, conn: u64, reason: CloseReason) {
        let mut closed = self.0.closed.lock().unwrap();
        assert!(
            closed.iter().all(|(c, _)| *c != conn),
            "connection {conn} closed twice (now {reason}): {closed:?}"
        );
        closed.push((conn, reason));
    }
}

/// A pool of `max_size` with no timers that could fire during a model.
pub(super) fn pool(max_size: usize) -> (Pool<Counting>, Arc<Books>) {
    pool_with(max_size, |b| b)
}

/// Like [`pool`], with more settings.
pub(super) fn pool_with(
    max_size: usize,
    f: impl FnOnce(Builder<Counting>) -> Builder<Counting>,
) -> (Pool<Counting>, Arc<Books>) {
    let books = Arc::new(Books::default());
    let builder = Pool::builder(Counting(books.clone()))
        .max_size(max_size)
        .wait_timeout(LONG)
        .connect_timeout(LONG)
        .validate_after_idle(None)
        .max_lifetime(None)
        .max_lifetime_jitter_percent(0)
        .idle_timeout(None)
        .fail_fast_after(0);
    (f(builder).build().expect("valid config"), books)
}

/// Gets a connection on this (model) thread, parking while the pool is full.
#[track_caller]
pub(super) fn get(pool: &Pool<Counting>) -> Pooled<Counting> {
    let conn = pool.get_blocking_timeout(LONG).expect("get_blocking");
    assert_live(pool, &conn);
    conn
}

/// The manager opened exactly one connection.
#[track_caller]
pub(super) fn assert_one_connect(pool: &Pool<Counting>) {
    assert_eq!(
        pool.manager().0.connects(),
        1,
        "a second connection was opened"
    );
}

/// A connection handed out must not have been closed.
#[track_caller]
pub(super) fn assert_live(pool: &Pool<Counting>, conn: &Pooled<Counting>) {
    assert!(
        !pool.manager().0.is_closed(**conn),
        "connection {} handed out after it was closed: {:?}",
        **conn,
        pool.manager().0.closed()
    );
}

/// The core's invariants, plus: nothing waits, nothing is reclaimed, `size <= max_size`, and
/// every connection the manager opened is either counted in `size` or was closed exactly once.
#[track_caller]
pub(super) fn check_quiescent(pool: &Pool<Counting>) -> Status {
    // Each connection a slot owns is owned by that slot alone.
    let mut owners = pool.shared.slot_owners();
    let owned = owners.len();
    owners.sort_unstable();
    owners.dedup();
    assert_eq!(owners.len(), owned, "a connection owned by two slots");
    // Connections parked with threads (the fast path) go back to the core first.
    let s = pool.shared.with_flushed(|st| {
        st.check_invariants();
        st.status()
    });
    assert!(s.size <= s.max_size, "size > max_size: {s:?}");
    assert_eq!(s.waiting, 0, "a request still waits: {s:?}");
    assert_eq!(
        s.reclaimed, 0,
        "a reclaimed connection was never returned: {s:?}"
    );
    assert_eq!(s.opening, 0, "a connect never finished: {s:?}");
    let books = &pool.manager().0;
    assert_eq!(
        books.connects(),
        books.closes() + s.size as u64,
        "opened != closed + size: {s:?}, closed {:?}",
        books.closed()
    );
    s
}

/// After a model: the pool still serves a request (no capacity was lost), and dropping the last
/// handle closes every connection exactly once.
#[track_caller]
pub(super) fn check_usable_then_drop(pool: Pool<Counting>) {
    check_quiescent(&pool);
    {
        let conn = pool.try_get().or_else(|_| pool.get_blocking_timeout(LONG));
        let conn = conn.expect("capacity lost: the pool can no longer serve a request");
        assert_live(&pool, &conn);
    }
    check_quiescent(&pool);
    let books = pool.manager().0.clone();
    drop(pool);
    assert_eq!(
        books.connects(),
        books.closes(),
        "a connection was never closed"
    );
}
