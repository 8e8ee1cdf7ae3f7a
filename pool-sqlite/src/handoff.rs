//! [`SqlitePool::interact`](crate::SqlitePool::interact) on a tokio runtime: the request carries
//! its closure, so a connection granted to it goes straight to a blocking thread, and back to
//! the pool from there as soon as the closure returns.
//!
//! The request is a [`Job`]: the pool's `get` future and the closure. The job is polled on
//! tokio's blocking threads with a waker of its own, never on the caller's task:
//!
//! - its first poll runs on a blocking thread (so the per-thread fast path finds the connection
//!   that thread returned last); if a connection is free, the closure runs right there;
//! - if the request queues, the poll returns and the thread is free again: waiting is as
//!   asynchronous as `Pool::get`'s (the pool's sweeper bounds it, dropping the caller's future
//!   cancels it cleanly);
//! - the grant wakes the job. A wake-up from a thread that is returning a connection at the end
//!   of a job queues the woken job on that thread, which runs it next (no hop at all: the
//!   connection passes from one closure to the next on one thread, as with a blocking pool used
//!   from `spawn_blocking`); any other wake-up spawns a blocking task to poll it.
//!
//! So a connection is held for the closure and at most one hop to a blocking thread, never for
//! the trip back to the caller's task and its next poll, which on a busy runtime can take far
//! longer than a point query.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::conn::panic_message;
use crate::{Error, InteractError, Pool, Pooled};

type GetFuture = Pin<Box<dyn Future<Output = Result<Pooled, Error>> + Send>>;
/// Where a job's result goes.
type Reply<T> = oneshot::Sender<Result<T, InteractError>>;

/// A job, type-erased, to run on the current blocking thread.
trait Run: Send + Sync {
    /// Polls the job's `get`, and runs its closure once it resolves; jobs woken while the
    /// connection is returned go to `next`.
    fn step(self: Arc<Self>, next: &mut VecDeque<Arc<dyn Run>>);

    /// The caller gave up: drops the `get` (a queued request leaves the queue, a grant it
    /// received is passed on). A closure already running finishes.
    fn cancel(&self);
}

thread_local! {
    /// Set while this thread returns a connection at the end of a job: jobs woken meanwhile are
    /// collected here, to run on this thread next.
    static HANDING_OFF: RefCell<Option<Vec<Arc<dyn Run>>>> = const { RefCell::new(None) };
}

/// Runs `f` (returning a connection) collecting the jobs it wakes on this thread.
fn collecting_wakes(f: impl FnOnce()) -> Vec<Arc<dyn Run>> {
    /// Restores the outer collection, also if `f` panics.
    struct Restore(Option<Vec<Arc<dyn Run>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            HANDING_OFF.with(|h| *h.borrow_mut() = self.0.take());
        }
    }
    let outer = Restore(HANDING_OFF.with(|h| h.borrow_mut().replace(Vec::new())));
    f();
    let woken = HANDING_OFF.with(|h| h.borrow_mut().take());
    drop(outer);
    woken.unwrap_or_default()
}

/// Runs `job` and every job it hands a connection to, on this thread.
fn run(job: Arc<dyn Run>) {
    let mut next = VecDeque::new();
    job.step(&mut next);
    while let Some(job) = next.pop_front() {
        job.step(&mut next);
    }
}

/// One `interact` request.
struct Job<F, T> {
    runtime: Handle,
    /// The pool's `get`, until it resolves or the caller gives up.
    get: Mutex<Option<GetFuture>>,
    /// The closure and where its result goes, until it runs.
    work: Mutex<Option<(F, Reply<T>)>>,
}

impl<F, T> Wake for Job<F, T>
where
    F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    T: Send + 'static,
{
    fn wake(self: Arc<Self>) {
        let runtime = self.runtime.clone();
        let job: Arc<dyn Run> = self;
        let job = HANDING_OFF.with(|h| match h.borrow_mut().as_mut() {
            Some(woken) => {
                woken.push(job);
                None
            }
            None => Some(job),
        });
        if let Some(job) = job {
            // A runtime that is shutting down drops the task, and with it the job's last
            // reference but the caller's: the caller sees `Aborted`.
            drop(runtime.spawn_blocking(move || run(job)));
        }
    }
}

impl<F, T> Run for Job<F, T>
where
    F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    T: Send + 'static,
{
    fn step(self: Arc<Self>, next: &mut VecDeque<Arc<dyn Run>>) {
        let got = {
            let mut get = self.get.lock();
            let Some(fut) = get.as_mut() else {
                return; // cancelled, or a stale wake-up after it resolved
            };
            let waker = Waker::from(Arc::clone(&self));
            match fut.as_mut().poll(&mut Context::from_waker(&waker)) {
                Poll::Pending => return,
                Poll::Ready(got) => {
                    *get = None;
                    got
                }
            }
        };
        let Some((f, tx)) = self.work.lock().take() else {
            return;
        };
        let result = match got {
            Err(e) => Err(InteractError::Pool(e)),
            Ok(conn) => {
                // A panic of `f` marks the connection broken (the lock guard sees it); it is
                // returned before the result is sent, and the pool closes it.
                let r = panic::catch_unwind(AssertUnwindSafe(|| f(&mut conn.lock())));
                next.extend(collecting_wakes(|| drop(conn)));
                match r {
                    Ok(r) => r.map_err(InteractError::Sqlite),
                    Err(payload) => Err(InteractError::Panic {
                        message: panic_message(&*payload),
                    }),
                }
            }
        };
        // The caller may have given up meanwhile.
        let _ = tx.send(result);
    }

    fn cancel(&self) {
        let get = self.get.lock().take();
        drop(get);
    }
}

/// Cancels the job if the caller's future is dropped first.
struct CancelOnDrop(Arc<dyn Run>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Gets a connection from `pool` and runs `f` with it on tokio's blocking threads (see the
/// module docs). Must be called on a tokio runtime.
pub(crate) async fn interact<F, T>(
    pool: &Pool,
    runtime: Handle,
    f: F,
    location: &'static std::panic::Location<'static>,
) -> Result<T, InteractError>
where
    F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job = Arc::new(Job {
        runtime: runtime.clone(),
        get: Mutex::new(Some(Box::pin(pool.get_at(location)) as GetFuture)),
        work: Mutex::new(Some((f, tx))),
    });
    let job: Arc<dyn Run> = job;
    let _cancel = CancelOnDrop(Arc::clone(&job));
    drop(runtime.spawn_blocking(move || run(job)));
    rx.await.unwrap_or(Err(InteractError::Aborted))
}
