//! Per-task and per-thread connection scopes: within one unit of work, every part of the code
//! that asks a pool for "the connection" gets the same one, opened lazily and released when the
//! unit ends (the seeds' connection-per-thread/greenlet/request).

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::PoolError;
use crate::guard::Pooled;
use crate::manager::Manager;
use crate::pool::Pool;

type Entry = (u64, Arc<dyn Any + Send + Sync>);

tokio::task_local! {
    static TASK_SCOPES: Vec<Entry>;
}

thread_local! {
    static THREAD_SCOPES: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// One scope's connection of one pool.
struct Slot<M: Manager> {
    conn: Mutex<Option<Pooled<M>>>,
    busy: AtomicBool,
}

impl<M: Manager> Slot<M> {
    fn entry(uid: u64) -> Entry {
        let slot: Arc<Slot<M>> = Arc::new(Slot {
            conn: Mutex::new(None),
            busy: AtomicBool::new(false),
        });
        (uid, slot)
    }
}

fn find<M: Manager>(entries: &[Entry], uid: u64) -> Option<Arc<Slot<M>>> {
    let (_, any) = entries.iter().find(|(id, _)| *id == uid)?;
    any.clone().downcast::<Slot<M>>().ok()
}

/// The scope's connection, borrowed exclusively until dropped. Dereferences to the connection.
///
/// Dropping it gives the connection back to the scope (not to the pool); the scope returns it
/// to the pool when it ends.
pub struct ScopedConn<M: Manager> {
    slot: Arc<Slot<M>>,
    conn: Option<Pooled<M>>,
}

impl<M: Manager> ScopedConn<M> {
    /// The pooled guard behind this borrow, e.g. for [`Pooled::meta`].
    pub fn pooled(this: &Self) -> &Pooled<M> {
        this.conn.as_ref().expect("present until dropped")
    }

    /// Marks the connection broken: when this borrow ends it is closed, and the scope's next
    /// borrow opens a fresh one.
    pub fn mark_broken(this: &mut Self) {
        if let Some(p) = this.conn.as_mut() {
            Pooled::mark_broken(p);
        }
    }
}

impl<M: Manager> Deref for ScopedConn<M> {
    type Target = M::Connection;
    fn deref(&self) -> &M::Connection {
        Self::pooled(self)
    }
}

impl<M: Manager> DerefMut for ScopedConn<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl<M: Manager> Drop for ScopedConn<M> {
    fn drop(&mut self) {
        if let Some(p) = self.conn.take() {
            // A broken connection, or one whose borrower panicked, goes back to the pool (which
            // closes it), not to the scope.
            if !p.broken && !std::thread::panicking() {
                *self.slot.conn.lock() = Some(p);
            }
        }
        self.slot.busy.store(false, Ordering::Release);
    }
}

impl<M: Manager> fmt::Debug for ScopedConn<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedConn")
            .field("conn", &self.conn)
            .finish()
    }
}

/// Clears the busy flag if a borrow is abandoned before it is handed out.
struct Borrow<'a>(&'a AtomicBool);

impl Drop for Borrow<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<M: Manager> Pool<M> {
    /// Runs `fut` in a connection scope of this pool (a task scope): code at any depth inside it
    /// gets the scope's connection from [`scoped`](Pool::scoped) without it being passed down.
    /// The connection is opened on first use and returned when the scope ends, also when the
    /// future is dropped; a nested scope of the same pool reuses the outer connection.
    ///
    /// ```
    /// # use pool_core::{Manager, Pool, Pooled};
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     async fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = Pool::new(M, 4).unwrap();
    /// async fn deep_inside(pool: &Pool<M>) -> u64 {
    ///     let conn = pool.scoped().await.unwrap();
    ///     Pooled::meta(pool_core::ScopedConn::pooled(&conn)).id()
    /// }
    /// pool.scope(async {
    ///     let a = deep_inside(&pool).await;
    ///     let b = deep_inside(&pool).await;
    ///     assert_eq!(a, b); // the same connection throughout the scope
    /// })
    /// .await;
    /// assert!(pool.scoped().await.is_err()); // outside any scope
    /// # }
    /// ```
    pub async fn scope<F: Future>(&self, fut: F) -> F::Output {
        let uid = self.uid();
        let current = TASK_SCOPES.try_with(|v| v.clone()).unwrap_or_default();
        if current.iter().any(|(id, _)| *id == uid) {
            return fut.await;
        }
        let mut entries = current;
        entries.push(Slot::<M>::entry(uid));
        TASK_SCOPES.scope(entries, fut).await
    }

    /// The current task scope's connection, opened on first use.
    ///
    /// # Errors
    /// [`PoolError::NoScope`] outside a [`scope`](Pool::scope) of this pool,
    /// [`PoolError::ScopeBusy`] while another borrow of the scope's connection is alive, else
    /// the errors of [`get`](Pool::get).
    ///
    /// # Cancel safety
    /// Cancelling it leaves the scope usable; a connection being acquired is passed on.
    pub async fn scoped(&self) -> Result<ScopedConn<M>, PoolError<M::Error>> {
        let uid = self.uid();
        let slot = TASK_SCOPES
            .try_with(|v| find::<M>(v, uid))
            .ok()
            .flatten()
            .ok_or(PoolError::NoScope)?;
        self.borrow(slot, |pool| pool.get()).await
    }

    /// Runs `f` in a connection scope of this pool on this thread (a thread scope); see
    /// [`scope`](Pool::scope). The connection is returned when `f` returns, and discarded when it
    /// panics.
    pub fn scope_blocking<T>(&self, f: impl FnOnce() -> T) -> T {
        let uid = self.uid();
        let nested = THREAD_SCOPES.with(|s| s.borrow().iter().any(|(id, _)| *id == uid));
        if nested {
            return f();
        }
        THREAD_SCOPES.with(|s| s.borrow_mut().push(Slot::<M>::entry(uid)));
        struct Pop(u64);
        impl Drop for Pop {
            fn drop(&mut self) {
                let entry = THREAD_SCOPES.with(|s| {
                    let mut s = s.borrow_mut();
                    let i = s.iter().rposition(|(id, _)| *id == self.0)?;
                    Some(s.remove(i))
                });
                // The connection goes back to the pool here, outside the RefCell borrow.
                drop(entry);
            }
        }
        let _pop = Pop(uid);
        f()
    }

    /// The current thread scope's connection, opened on first use.
    ///
    /// # Errors
    /// As [`scoped`](Pool::scoped), with the errors of [`get_blocking`](Pool::get_blocking).
    pub fn scoped_blocking(&self) -> Result<ScopedConn<M>, PoolError<M::Error>> {
        let uid = self.uid();
        let slot = THREAD_SCOPES
            .with(|s| find::<M>(&s.borrow(), uid))
            .ok_or(PoolError::NoScope)?;
        crate::pool::block_on(self.borrow(slot, |pool| std::future::ready(pool.get_blocking())))
    }

    async fn borrow<F, Fut>(
        &self,
        slot: Arc<Slot<M>>,
        get: F,
    ) -> Result<ScopedConn<M>, PoolError<M::Error>>
    where
        F: FnOnce(&Self) -> Fut,
        Fut: Future<Output = Result<Pooled<M>, PoolError<M::Error>>>,
    {
        if slot.busy.swap(true, Ordering::AcqRel) {
            return Err(PoolError::ScopeBusy);
        }
        let borrow = Borrow(&slot.busy);
        let existing = slot.conn.lock().take();
        let conn = match existing {
            Some(c) => c,
            None => get(self).await?,
        };
        std::mem::forget(borrow);
        Ok(ScopedConn {
            slot,
            conn: Some(conn),
        })
    }
}
