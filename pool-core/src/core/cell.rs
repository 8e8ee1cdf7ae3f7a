//! The grant cell of a queued async request: a direct hand-off that the woken request picks up
//! without taking the pool's lock.
//!
//! When a `Pool::get` future queues, its waiter node and the future share a [`GrantCell`]. Whoever
//! grants the waiter (a check-in, a freed unit of capacity, the sweeper, `close`) does so under
//! the pool's lock: it removes the node and puts the grant into the cell, then wakes the task
//! after unlocking. The woken request takes the grant out of the cell, under the cell's own
//! lock, which nobody else wants by then, instead of locking the pool a second time to take it
//! out of its node: one contended acquisition of the pool's lock less for every queued request.
//!
//! The rules (checked by the loom models in `crate::tests::loom_async` and `loom_cancel`, and
//! by the property test `pool-core/tests/properties.rs`, which cancels requests right after a
//! grant and queues new ones while granted cells are still held):
//! - a cell is filled at most once per registration, under the pool's lock, while its node is
//!   queued; the node is removed in the same critical section;
//! - the owner may look into the cell at any time; an empty cell seen *under the pool's lock*
//!   means the node is still queued (so `poll` and `drop` look again under the lock before they
//!   touch the node, and a grant that raced a cancellation is passed on there);
//! - cells are recycled by the pool, so queueing allocates nothing in steady state: the node's
//!   reference goes to a short list of spare cells when the node is removed, and a spare is
//!   reused only once its reference count shows that its previous owner has let go of it.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;

use super::Grant;
use crate::sync::Mutex;

/// What a queued async request receives, with the instant of the hand-over.
pub(crate) type Granted<C, E> = (Grant<C, E>, Instant);

/// The cell shared by a queued async request and its waiter node.
#[derive(Debug)]
pub(crate) struct GrantCell<C, E> {
    slot: Mutex<Option<Granted<C, E>>>,
}

impl<C, E> GrantCell<C, E> {
    fn new() -> Self {
        GrantCell {
            slot: Mutex::new(None),
        }
    }

    /// Takes the grant if one arrived.
    pub(crate) fn take(&self) -> Option<Granted<C, E>> {
        self.slot.lock().take()
    }

    /// Hands a grant over (under the pool's lock, while removing the node).
    pub(crate) fn fill(&self, granted: Granted<C, E>) {
        let old = self.slot.lock().replace(granted);
        debug_assert!(old.is_none(), "a grant cell filled twice");
    }
}

/// Spare cells kept for reuse; more are dropped (their owners free them).
const SPARE_CELLS: usize = 64;

/// How many spares a request looks at before it makes a new cell.
const SPARES_LOOKED_AT: usize = 3;

/// The pool's spare cells, oldest first.
#[derive(Debug)]
pub(crate) struct Spares<C, E>(VecDeque<Arc<GrantCell<C, E>>>);

impl<C, E> Spares<C, E> {
    pub(crate) fn new() -> Self {
        Spares(VecDeque::new())
    }

    /// A cell for a request about to queue: a spare whose last owner has let go of it (it is
    /// empty then: the owner took the grant or passed it on), else a new one. Looks at the
    /// oldest few spares; one still held (its owner was granted but has not run yet, or keeps a
    /// finished request alive) goes to the back, so that it does not block the others.
    pub(crate) fn get(&mut self) -> Arc<GrantCell<C, E>> {
        for _ in 0..SPARES_LOOKED_AT {
            let Some(cell) = self.0.pop_front() else {
                break;
            };
            // Only the spare list holds it: nobody else can reach it any more, so it is ours.
            // (Loads only, no `Arc::get_mut` compare-and-swap: this runs under the pool's lock.
            // The cell's own lock orders its contents between its previous owner and the next.)
            if Arc::strong_count(&cell) == 1 && Arc::weak_count(&cell) == 0 {
                debug_assert!(cell.take().is_none(), "a spare cell holds a grant");
                return cell;
            }
            self.0.push_back(cell);
        }
        Arc::new(GrantCell::new())
    }

    /// Keeps the reference of a removed node for reuse.
    pub(crate) fn put(&mut self, cell: Arc<GrantCell<C, E>>) {
        if self.0.len() < SPARE_CELLS {
            self.0.push_back(cell);
        }
    }
}
