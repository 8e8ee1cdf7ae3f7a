//! Check-in: a guard returns its connection (or detaches or closes it).

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::fast::Parked;

impl<M: Manager> Shared<M> {
    /// Check-in from a guard's `Drop`. `lease`: the thread slot the guard's connection was lent
    /// from (the per-thread fast path), which it is parked in again when it is clean and the
    /// fast path is open.
    pub(crate) fn checkin(
        &self,
        key: usize,
        mut entry: Idle<M::Connection>,
        broken: bool,
        lease: Option<usize>,
    ) {
        let now = Instant::now();
        let Entry { conn, meta, dirty } = &mut *entry;
        let discard = if thread::panicking() {
            Some(CloseReason::Panicked)
        } else if broken || self.manager.is_broken(conn, meta) {
            Some(CloseReason::Broken)
        } else if meta.is_expired(now) {
            Some(CloseReason::Stale)
        } else {
            None
        };
        *dirty = discard.is_none() && self.manager.needs_reset(conn);
        meta.returned(now, self.check_window);
        let clean = discard.is_none() && !*dirty;
        let mut hold_recorded = false;
        if let Some(i) = lease {
            if clean && self.fast.open.load(Ordering::Acquire) {
                match self.park(i, key, entry, now) {
                    Parked::Parked => return,
                    Parked::Back(back, recorded) => (entry, hold_recorded) = (back, recorded),
                }
            }
        }
        let (r, closed, conn_id) = {
            let mut st = self.lock_state(tokio::task::try_id().is_some());
            let lease_since = lease.and_then(|i| self.end_lease(&mut st, i, key));
            if !hold_recorded {
                st.record_hold(key, lease_since, now);
            }
            let (key, entry) = if clean && st.park_ok(key) {
                match self.adopt(key, entry) {
                    None => return,
                    Some(back) => back,
                }
            } else {
                (key, entry)
            };
            let conn_id = entry.meta.id;
            let r = st.checkin(key, entry, discard, now);
            self.set_fast(st.fast_ok());
            (r, st.is_closed(), conn_id)
        };
        if let Some(k) = r.idle_key {
            AFFINITY.with(|a| a.set((self.uid, k, conn_id)));
        }
        self.run(r.after);
        if closed {
            self.drained.notify_waiters();
        }
    }

    /// A holder detaches (`conn` = None) or closes its connection.
    pub(crate) fn forget(&self, key: usize, lease: Option<usize>, conn: Option<M::Connection>) {
        let after = {
            let mut st = self.state.lock();
            if let Some(i) = lease {
                self.end_lease(&mut st, i, key);
            }
            st.forget(key, conn.is_some())
        };
        self.run(after);
        if let Some(c) = conn {
            self.close_conn(c, CloseReason::Manual);
        }
        self.drained.notify_waiters();
    }
}
