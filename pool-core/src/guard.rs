//! The RAII guard of a checked-out connection.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::core::{Entry, Idle};
use crate::manager::{ConnMeta, Manager};
use crate::pool::Shared;

/// A connection checked out of a [`Pool`](crate::Pool).
///
/// Dereferences to the connection. Dropping it returns the connection: synchronously, without
/// I/O (only [`Manager::is_broken`] and [`Manager::needs_reset`] run), so it is safe in any
/// context, also outside a runtime. A connection dropped while its holder panics is closed, not
/// reused. The helpers are associated functions (`Pooled::close(conn)`) so they never shadow the
/// connection's own methods.
pub struct Pooled<M: Manager> {
    pub(crate) shared: Arc<Shared<M>>,
    pub(crate) inner: Option<Idle<M::Connection>>,
    pub(crate) key: usize,
    /// Being checked before hand-out: dropped in this state (cancellation), the connection's
    /// state is unknown and it is closed.
    pub(crate) checking: bool,
    pub(crate) broken: bool,
    /// The thread slot this connection was lent from (the per-thread fast path).
    pub(crate) lease: Option<usize>,
}

impl<M: Manager> Pooled<M> {
    pub(crate) fn new(
        shared: Arc<Shared<M>>,
        key: usize,
        entry: Idle<M::Connection>,
        checking: bool,
    ) -> Self {
        Pooled {
            shared,
            inner: Some(entry),
            key,
            checking,
            broken: false,
            lease: None,
        }
    }

    /// A guard for a connection lent from thread slot `slot` (see `crate::fast`).
    pub(crate) fn leased(
        shared: Arc<Shared<M>>,
        key: usize,
        entry: Idle<M::Connection>,
        slot: usize,
    ) -> Self {
        let mut guard = Self::new(shared, key, entry, false);
        guard.lease = Some(slot);
        guard
    }

    fn entry(&self) -> &Entry<M::Connection> {
        // `inner` is only taken by consuming methods and `Drop`.
        self.inner
            .as_ref()
            .expect("connection present until the guard is consumed")
    }

    fn entry_mut(&mut self) -> &mut Entry<M::Connection> {
        self.inner
            .as_mut()
            .expect("connection present until the guard is consumed")
    }

    /// Facts about this connection: id, age, uses.
    pub fn meta(this: &Self) -> &ConnMeta {
        &this.entry().meta
    }

    /// Closes the connection instead of returning it. Its slot is
    /// freed at once for the next request.
    pub fn close(mut this: Self) {
        if let Some(entry) = this.inner.take() {
            this.shared.forget(this.key, this.lease, Some(entry.conn));
        }
    }

    /// Takes the connection out of the pool for good. Its slot is freed at once; the pool no
    /// longer counts, checks or closes it.
    pub fn detach(mut this: Self) -> M::Connection {
        let entry = this
            .inner
            .take()
            .expect("connection present until the guard is consumed");
        this.shared.forget(this.key, this.lease, None);
        entry.conn
    }

    /// Marks the connection broken: it is closed when dropped instead of being returned.
    pub fn mark_broken(this: &mut Self) {
        this.broken = true;
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        &self.entry().conn
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.entry_mut().conn
    }
}

impl<M: Manager> Drop for Pooled<M> {
    fn drop(&mut self) {
        if let Some(entry) = self.inner.take() {
            self.shared
                .checkin(self.key, entry, self.checking || self.broken, self.lease);
        }
    }
}

impl<M: Manager> fmt::Debug for Pooled<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("meta", &self.inner.as_ref().map(|e| &e.meta))
            .finish_non_exhaustive()
    }
}
