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
//! - cells are recycled without the pool's lock, so queueing allocates nothing in steady state:
//!   the node's reference is dropped when the node is removed, and the request, once done with
//!   its cell (granted, or cancelled under the pool's lock), keeps it in its thread's stash
//!   ([`Stashes`]) only if it is then the cell's only owner (`Arc::get_mut`), which means no node
//!   refers to it and nothing can fill it any more. A request that will likely queue takes its
//!   cell from its thread's stash before it locks the pool (one fewer cache miss under the
//!   lock), one that queues unexpectedly under the lock.

use std::sync::Arc;

use tokio::time::Instant;

use super::Grant;
use crate::sync::{Mutex, SlotMutex};

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

/// Spare cells a thread's stash keeps for reuse; more are dropped.
const STASHED: usize = 16;

/// One stash of spare cells, on a cache line of its own. Only cells that nobody else refers to
/// are put here.
#[derive(Debug)]
#[repr(align(128))]
struct Stash<C, E>(SlotMutex<Vec<Arc<GrantCell<C, E>>>>);

/// A pool's spare cells: one stash per fast-path slot, and a thread uses the stash of its slot.
/// A request usually queues and is granted on the same thread, but a task may move to another
/// worker in between, so a thread whose stash is empty takes a spare from another's before it
/// makes a new cell.
#[derive(Debug)]
pub(crate) struct Stashes<C, E>(Box<[Stash<C, E>]>);

impl<C, E> Stashes<C, E> {
    /// `n` empty stashes.
    pub(crate) fn new(n: usize) -> Self {
        Stashes((0..n).map(|_| Stash(SlotMutex::new(Vec::new()))).collect())
    }

    /// A cell for a request about to queue on the thread of stash `i` (a slot index, below the
    /// number of stashes): a spare (its own, else one of another stash that is not busy), else a
    /// new one.
    pub(crate) fn get(&self, i: usize) -> Arc<GrantCell<C, E>> {
        if let Some(cell) = self.0[i].0.lock().pop() {
            return cell;
        }
        let n = self.0.len();
        (1..n)
            .find_map(|k| self.0[(i + k) % n].0.try_lock()?.pop())
            .unwrap_or_else(|| Arc::new(GrantCell::new()))
    }

    /// Keeps the cell of a request that is done with it in stash `i`, if the request owns it
    /// alone (no node refers to it any more, so nothing can fill it again) and the stash has
    /// room.
    pub(crate) fn put(&self, i: usize, mut cell: Arc<GrantCell<C, E>>) {
        if Arc::get_mut(&mut cell).is_none() {
            return;
        }
        debug_assert!(cell.take().is_none(), "a spare cell holds a grant");
        let mut spares = self.0[i].0.lock();
        if spares.len() < STASHED {
            spares.push(cell);
        }
    }
}
