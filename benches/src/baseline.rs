//! The "baseline": the smallest pool that is still correct, as a yardstick for ours.
//!
//! [`Baseline`] is what many services write by hand: a `tokio::sync::Semaphore` with one permit
//! per connection and a `parking_lot::Mutex<Vec<C>>` of idle connections. A get takes a permit
//! (FIFO, as tokio's semaphore is fair), then pops a connection; the guard holds the permit and
//! puts the connection back on drop, before the permit is released. [`BlockingBaseline`] is the
//! same for OS threads: a `Mutex<Vec<C>>` and a `Condvar`. Both open every connection up front
//! and have no timeouts, health checks, metrics, resets or replacement of broken connections.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An async pool of the connections given to [`Baseline::new`].
#[derive(Debug)]
pub struct Baseline<C> {
    permits: Arc<Semaphore>,
    idle: Arc<Mutex<Vec<C>>>,
}

impl<C> Clone for Baseline<C> {
    fn clone(&self) -> Self {
        Baseline {
            permits: Arc::clone(&self.permits),
            idle: Arc::clone(&self.idle),
        }
    }
}

impl<C> Baseline<C> {
    /// A pool of `conns` (its size is their number).
    pub fn new(conns: Vec<C>) -> Self {
        Baseline {
            permits: Arc::new(Semaphore::new(conns.len())),
            idle: Arc::new(Mutex::new(conns)),
        }
    }

    /// Takes the idle connections out (to close them at the end of a run, when no guard is
    /// out); the pool must not be used afterwards.
    pub fn take_idle(&self) -> Vec<C> {
        std::mem::take(&mut *self.idle.lock())
    }

    /// Waits (FIFO) for a free connection.
    ///
    /// # Panics
    /// Never: the semaphore is never closed, and a permit guarantees an idle connection.
    pub async fn get(&self) -> BaselineGuard<C> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let conn = self.idle.lock().pop().expect("a permit means a connection");
        BaselineGuard {
            conn: Some(conn),
            idle: Arc::clone(&self.idle),
            _permit: permit,
        }
    }
}

/// A connection of a [`Baseline`]; returns to it on drop.
#[derive(Debug)]
pub struct BaselineGuard<C> {
    conn: Option<C>,
    idle: Arc<Mutex<Vec<C>>>,
    // Dropped after `drop` has put the connection back.
    _permit: OwnedSemaphorePermit,
}

impl<C> Deref for BaselineGuard<C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.conn.as_ref().expect("present until drop")
    }
}

impl<C> DerefMut for BaselineGuard<C> {
    fn deref_mut(&mut self) -> &mut C {
        self.conn.as_mut().expect("present until drop")
    }
}

impl<C> Drop for BaselineGuard<C> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.idle.lock().push(c);
        }
    }
}

/// A blocking pool of the connections given to [`BlockingBaseline::new`].
#[derive(Debug)]
pub struct BlockingBaseline<C> {
    inner: Arc<(Mutex<Vec<C>>, Condvar)>,
}

impl<C> Clone for BlockingBaseline<C> {
    fn clone(&self) -> Self {
        BlockingBaseline {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C> BlockingBaseline<C> {
    /// A pool of `conns`.
    pub fn new(conns: Vec<C>) -> Self {
        BlockingBaseline {
            inner: Arc::new((Mutex::new(conns), Condvar::new())),
        }
    }

    /// Blocks until a connection is free (no FIFO order: whichever thread wakes first).
    pub fn get(&self) -> BlockingBaselineGuard<C> {
        let (idle, freed) = &*self.inner;
        let mut idle = idle.lock();
        let conn = loop {
            match idle.pop() {
                Some(c) => break c,
                None => freed.wait(&mut idle),
            }
        };
        BlockingBaselineGuard {
            conn: Some(conn),
            pool: Arc::clone(&self.inner),
        }
    }
}

/// A connection of a [`BlockingBaseline`]; returns to it on drop.
#[derive(Debug)]
pub struct BlockingBaselineGuard<C> {
    conn: Option<C>,
    pool: Arc<(Mutex<Vec<C>>, Condvar)>,
}

impl<C> Deref for BlockingBaselineGuard<C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.conn.as_ref().expect("present until drop")
    }
}

impl<C> DerefMut for BlockingBaselineGuard<C> {
    fn deref_mut(&mut self) -> &mut C {
        self.conn.as_mut().expect("present until drop")
    }
}

impl<C> Drop for BlockingBaselineGuard<C> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let (idle, freed) = &*self.pool;
            idle.lock().push(c);
            freed.notify_one();
        }
    }
}
