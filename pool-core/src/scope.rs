//! Per-task and per-thread connection scopes: within one unit of work, every part of the code
//! that asks a pool for "the connection" gets the same one, opened lazily and released when the
//! unit ends (a connection per thread, task or request).

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::error::PoolError;
use crate::guard::Pooled;
use crate::manager::{BlockingManager, Manager};
use crate::pool::{Pool, Shared};

/// A scope's slot of one pool, under the pool's uid.
type Entry = (u64, Arc<dyn Any + Send + Sync>);

/// The scopes a task is in, innermost last: two pools' scopes fit without allocating.
type Entries = SmallVec<[Entry; 2]>;

tokio::task_local! {
    static TASK_SCOPES: Entries;
}

thread_local! {
    static THREAD_SCOPES: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// One scope's connection of one pool.
struct Slot<M: Manager> {
    conn: Mutex<Option<Pooled<M>>>,
    busy: AtomicBool,
}

/// Spare slots kept per pool; more are freed.
const SPARE_SLOTS: usize = 64;

/// A pool's slots for reuse, so that a scope allocates nothing in steady state.
pub(crate) struct Spares<M: Manager>(Mutex<Vec<Arc<Slot<M>>>>);

impl<M: Manager> Default for Spares<M> {
    fn default() -> Self {
        Spares(Mutex::new(Vec::new()))
    }
}

impl<M: Manager> Slot<M> {
    /// An empty slot for a new scope of the pool behind `shared`.
    fn new_in(shared: &Shared<M>) -> Arc<Slot<M>> {
        shared.scope_slots.0.lock().pop().unwrap_or_else(|| {
            Arc::new(Slot {
                conn: Mutex::new(None),
                busy: AtomicBool::new(false),
            })
        })
    }

    /// The scope ended: its connection goes back to the pool, and the slot to the spares unless
    /// a borrow that outlived the scope still holds it (it then frees the slot when dropped).
    fn retire(slot: Arc<Slot<M>>, shared: &Shared<M>) {
        if Arc::strong_count(&slot) != 1 || Arc::weak_count(&slot) != 0 {
            return;
        }
        // Nobody else can reach it any more: empty it, outside the spares' lock.
        drop(slot.conn.lock().take());
        slot.busy.store(false, Ordering::Release);
        let mut spares = shared.scope_slots.0.lock();
        if spares.len() < SPARE_SLOTS {
            spares.push(slot);
        }
    }
}

/// Retires a scope's slot when the scope ends, also when its future is dropped.
struct Retire<'a, M: Manager> {
    slot: Option<Arc<Slot<M>>>,
    shared: &'a Shared<M>,
}

impl<M: Manager> Drop for Retire<'_, M> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            Slot::retire(slot, self.shared);
        }
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
    /// future is dropped; a nested scope of the same pool reuses the outer connection. In steady
    /// state a scope allocates nothing: the pool recycles its slots.
    ///
    /// # Spawned work and concurrent borrows
    /// - **Spawned work.** A task scope belongs to the task that runs [`Pool::scope`]: a task
    ///   spawned from inside it is another task, outside the scope ([`PoolError::NoScope`]), unless
    ///   its future is wrapped in [`carry_scopes`], which carries every scope the spawning task is
    ///   in. Carried work shares the scope's connection (one transaction, one session), and the
    ///   connection goes back to the pool when the scope *and* every task it was carried into have
    ///   ended. A thread scope belongs to its thread.
    /// - **Concurrent borrows.** A scope has one connection, and a borrow of it is exclusive: while
    ///   one part of the scope (or a task it was carried into) has it, another borrow fails at once
    ///   with [`PoolError::ScopeBusy`], as SQLAlchemy's `AsyncSession` refuses concurrent use. It
    ///   never waits: the first borrow may belong to the very code that asks again, and waiting
    ///   would deadlock it. Work that wants parallel queries takes independent connections with
    ///   [`Pool::get`] (outside the scope's session and transaction).
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
        let current = TASK_SCOPES.try_with(Clone::clone).unwrap_or_default();
        if current.iter().any(|(id, _)| *id == uid) {
            return fut.await;
        }
        let slot = Slot::new_in(&self.shared);
        let mut entries = current;
        entries.push((uid, slot.clone()));
        // Declared first, dropped last: after the task-local future and its entries are gone.
        let _retire = Retire {
            slot: Some(slot),
            shared: &self.shared,
        };
        let out = TASK_SCOPES.scope(entries, fut).await;
        out
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
    ///
    /// `held()` and leak warnings name the line that called `scoped` first in the scope (the one
    /// that opened the connection).
    #[track_caller]
    pub fn scoped(&self) -> impl Future<Output = Result<ScopedConn<M>, PoolError<M::Error>>> + '_ {
        let location = Location::caller();
        async move {
            let uid = self.uid();
            let slot = TASK_SCOPES
                .try_with(|v| find::<M>(v, uid))
                .ok()
                .flatten()
                .ok_or(PoolError::NoScope)?;
            self.borrow(slot, |pool| pool.get_at(location)).await
        }
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

/// Carries the connection scopes the current task is in (of every pool) into `fut`, so that work
/// spawned from inside a scope shares the scope's connection:
/// `tokio::spawn(pool_core::carry_scopes(async move { … }))`. Outside any scope `fut` runs as
/// it is. The scope's connection is returned to the pool when the scope and every future it was
/// carried into have ended; borrows stay exclusive (see [`Pool::scope`]: a borrow while
/// another is alive is [`PoolError::ScopeBusy`]).
///
/// ```
/// # use pool_core::{Manager, Pool, Pooled, ScopedConn};
/// # struct M;
/// # impl Manager for M {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     async fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = Pool::new(M, 4).unwrap();
/// pool.scope(async {
///     let here = Pooled::meta(ScopedConn::pooled(&pool.scoped().await.unwrap())).id();
///     let p = pool.clone();
///     let there = tokio::spawn(pool_core::carry_scopes(async move {
///         Pooled::meta(ScopedConn::pooled(&p.scoped().await.unwrap())).id()
///     }))
///     .await
///     .unwrap();
///     assert_eq!(here, there); // the spawned task used the scope's connection
/// })
/// .await;
/// # }
/// ```
pub fn carry_scopes<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let entries = TASK_SCOPES.try_with(Clone::clone).ok();
    async move {
        match entries {
            Some(entries) => TASK_SCOPES.scope(entries, fut).await,
            None => fut.await,
        }
    }
}

/// Thread scopes: only for managers whose futures run on a plain thread.
impl<M: BlockingManager> Pool<M> {
    /// Runs `f` in a connection scope of this pool on this thread (a thread scope); see
    /// [`scope`](Pool::scope). The connection is returned when `f` returns, and discarded when it
    /// panics.
    pub fn scope_blocking<T>(&self, f: impl FnOnce() -> T) -> T {
        let uid = self.uid();
        let nested = THREAD_SCOPES.with(|s| s.borrow().iter().any(|(id, _)| *id == uid));
        if nested {
            return f();
        }
        let slot = Slot::new_in(&self.shared);
        THREAD_SCOPES.with(|s| s.borrow_mut().push((uid, slot.clone())));
        /// Ends the thread scope, also when `f` panics: removes its entry, then retires the
        /// slot (which returns the connection to the pool), both outside the RefCell borrow.
        struct Pop<'a, M: Manager>(Retire<'a, M>, u64);
        impl<M: Manager> Drop for Pop<'_, M> {
            fn drop(&mut self) {
                let uid = self.1;
                let entry = THREAD_SCOPES.with(|s| {
                    let mut s = s.borrow_mut();
                    let i = s.iter().rposition(|(id, _)| *id == uid)?;
                    Some(s.remove(i))
                });
                drop(entry);
                if let Some(slot) = self.0.slot.take() {
                    Slot::retire(slot, self.0.shared);
                }
            }
        }
        let _pop = Pop(
            Retire {
                slot: Some(slot),
                shared: &self.shared,
            },
            uid,
        );
        f()
    }

    /// The current thread scope's connection, opened on first use.
    ///
    /// # Errors
    /// As [`scoped`](Pool::scoped), with the errors of [`get_blocking`](Pool::get_blocking).
    #[track_caller]
    pub fn scoped_blocking(&self) -> Result<ScopedConn<M>, PoolError<M::Error>> {
        let location = Location::caller();
        let uid = self.uid();
        let slot = THREAD_SCOPES
            .with(|s| find::<M>(&s.borrow(), uid))
            .ok_or(PoolError::NoScope)?;
        crate::pool::block_on(self.borrow(slot, |pool| {
            std::future::ready(pool.get_blocking_at(location))
        }))
    }
}
