//! Checkout and check-in: an idle connection, capacity to open one, or a place in the queue;
//! a returned connection goes to the head of the queue or to the idle set.

#[allow(clippy::wildcard_imports)]
use super::*;

impl<C, E> State<C, E> {
    pub(super) fn breaker_open(&self, now: Instant) -> bool {
        self.limits.fail_fast_after > 0
            && self.failures >= self.limits.fail_fast_after
            && self.fail_fast_until.is_some_and(|t| now < t)
    }

    pub(super) fn take_idle(&mut self, prefer: Option<(usize, u64)>) -> Option<Idle<C>> {
        if let Some((key, id)) = prefer {
            if self.idle.is_linked(key) && self.idle.get(key).is_some_and(|i| i.meta.id == id) {
                return Some(self.idle.remove(key));
            }
        }
        self.idle.pop_back()
    }

    /// Starts an acquisition: an idle connection, capacity to open one, or a place in the queue.
    /// `prefer` is the (idle key, connection id) this thread returned last. `cell` gives the
    /// grant cell of an async request (called only if it queues; the cell is shared with its
    /// node then), or `None`.
    pub(crate) fn acquire(
        &mut self,
        now: Instant,
        prefer: Option<(usize, u64)>,
        ask: Ask,
        deadline: impl FnOnce() -> Option<Instant>,
        wake: impl FnOnce() -> Wake,
        cell: impl FnOnce() -> Option<Arc<GrantCell<C, E>>>,
    ) -> Acquire<C, E> {
        let Ask {
            holder,
            may_wait,
            fail_fast,
        } = ask;
        if self.closed {
            return Acquire::Closed;
        }
        if self.waiters.is_empty() || self.bypass_open(now) {
            if let Some(idle) = self.take_idle(prefer) {
                let key = self.hold(idle.meta.id, holder, now);
                return Acquire::Got(idle, key);
            }
        }
        if self.waiters.is_empty() && self.size < self.limits.max_size {
            if fail_fast && self.breaker_open(now) {
                return Acquire::Unavailable(self.failures);
            }
            self.size += 1;
            self.opening += 1;
            return Acquire::Create;
        }
        if !may_wait {
            return Acquire::Full;
        }
        self.stats.waits += 1;
        let uid = self.uid();
        let cell = cell();
        let key = self.waiters.push_back(Node {
            grant: None,
            cell: cell.clone(),
            wake: wake(),
            holder,
            uid,
            deadline: deadline(),
            queued_at: now,
        });
        Acquire::Wait(key, cell)
    }

    /// A check at checkout (expiry, broken, reset, validate) failed for the connection held under
    /// `key`. The request keeps its capacity: it gets another idle connection or opens one.
    pub(crate) fn check_failed(
        &mut self,
        key: usize,
        reason: CloseReason,
        now: Instant,
    ) -> Retake<C> {
        let held = self.held.remove(key);
        if held.reclaimed {
            // Its capacity was released (and its close counted) when it was reclaimed.
            self.reclaimed -= 1;
            return Retake::Restart;
        }
        self.count_close(reason);
        if self.closed {
            self.size -= 1;
            return Retake::Closed;
        }
        if let Some(idle) = self.idle.pop_back() {
            // The failed connection's capacity is freed; the idle one already counts.
            self.size -= 1;
            let key = self.hold(idle.meta.id, held.holder, now);
            return Retake::Got(idle, key);
        }
        self.opening += 1;
        Retake::Create
    }

    /// A thread's slot hands back the lease of the connection held under `key`: who has it now,
    /// since when.
    pub(crate) fn relet(&mut self, key: usize, holder: Holder, since: Instant) {
        if let Some(h) = self.held.get_mut(key) {
            h.holder = holder;
            h.since = since;
        }
    }

    /// Whether the per-thread fast path may run: nobody waits, the pool is open and not over its
    /// size, and no `min_idle` has to be kept warm at checkout.
    pub(crate) fn fast_ok(&self) -> bool {
        !self.closed
            && self.waiters.is_empty()
            && self.size <= self.limits.max_size
            && self.limits.min_idle == 0
    }

    /// Whether the connection held under `key` may be parked with a thread (it stays registered
    /// as held, its slot keeps who has it), instead of being checked in.
    pub(crate) fn park_ok(&self, key: usize) -> bool {
        self.fast_ok() && self.held.get(key).is_some_and(|h| !h.reclaimed)
    }

    /// Whether no connection is idle in the core (parked ones are not counted here).
    pub(crate) fn no_idle(&self) -> bool {
        self.idle.is_empty()
    }

    /// A connection comes back from the holder registered under `key`. `discard` says why it must
    /// be closed, if it must.
    pub(crate) fn checkin(
        &mut self,
        key: usize,
        idle: Idle<C>,
        discard: Option<CloseReason>,
        now: Instant,
    ) -> Returned<C> {
        let held = self.held.remove(key);
        let mut out = Returned {
            after: After::none(),
            idle_key: None,
        };
        if held.reclaimed {
            self.reclaimed -= 1;
            out.after.close(idle.conn, CloseReason::Leaked);
            return out;
        }
        let reason = discard
            .or(self.closed.then_some(CloseReason::Closed))
            .or((self.size > self.limits.max_size).then_some(CloseReason::Resized));
        match reason {
            Some(reason) => {
                self.count_close(reason);
                out.after.wake(self.release_capacity());
                out.after.close(idle.conn, reason);
            }
            None => {
                let (wake, idle_key) = self.offer(idle, now);
                out.after.wake(wake);
                out.idle_key = idle_key;
            }
        }
        out
    }

    /// Counts the hold time of the connection held under `key`, checked in at `now`: since
    /// `lease` (when it was lent from a fast-path slot) or since the core handed it out.
    pub(crate) fn record_hold(&mut self, key: usize, lease: Option<Instant>, now: Instant) {
        let Some(since) = lease.or_else(|| self.held.get(key).map(|h| h.since)) else {
            return;
        };
        self.stats.record_hold(now.saturating_duration_since(since));
    }

    /// The holder under `key` takes its connection out of the pool (detach or manual close).
    pub(crate) fn forget(&mut self, key: usize, closing: bool) -> After<C> {
        let held = self.held.remove(key);
        if held.reclaimed {
            self.reclaimed -= 1;
            return After::none();
        }
        if closing {
            self.stats.closed_manual += 1;
        }
        After::waking(self.release_capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn idle_first_then_capacity_then_the_queue() {
        let t0 = Instant::now();
        let mut st = St::new(limits(2));
        open_idle(&mut st, t0, 1, 1);
        let (key, idle) = take(&mut st, t0);
        assert_eq!(idle.conn, 1);
        assert!(matches!(acquire(&mut st, t0, false), Acquire::Create));
        assert!(matches!(acquire(&mut st, t0, false), Acquire::Full));
        let Acquire::Wait(wkey, None) = acquire(&mut st, t0, true) else {
            panic!("expected to queue")
        };
        assert_eq!(st.status().waiting, 1);
        // The check-in (its instant recorded by the caller, as `Shared::checkin` does) hands the
        // connection straight to the queued request.
        let mut idle = idle;
        idle.meta.returned(t0 + ms(5), None);
        let r = st.checkin(key, idle, None, t0 + ms(5));
        assert!(r.after.wake_count() == 1 && r.after.close_count() == 0 && r.idle_key.is_none());
        let (granted, _) = st.poll_waiter(wkey, Some(t0), |_| None);
        let (grant, at) = granted.expect("granted");
        assert!(matches!(grant, Grant::Conn { ref idle, .. } if idle.conn == 1));
        assert_eq!(at, t0 + ms(5), "handed over at its check-in");
        assert_eq!(st.stats.wait_time, ms(5));
        st.check_invariants();
    }

    #[test]
    fn the_breaker_fails_fast_until_its_backoff_passes() {
        let t0 = Instant::now();
        let mut st = St::new(Limits {
            fail_fast_after: 2,
            ..limits(4)
        });
        for _ in 0..2 {
            assert!(matches!(acquire(&mut st, t0, false), Acquire::Create));
            let _ = st.connect_failed(ConnectFailure::Error("down".into()), t0, None);
        }
        assert!(matches!(
            acquire(&mut st, t0 + ms(99), false),
            Acquire::Unavailable(2)
        ));
        assert!(matches!(
            acquire(&mut st, t0 + ms(100), false),
            Acquire::Create
        ));
        st.check_invariants();
    }

    #[test]
    fn a_failed_check_keeps_the_requests_capacity() {
        let t0 = Instant::now();
        let mut st = St::new(limits(2));
        open_idle(&mut st, t0, 1, 2);
        let (key, idle) = take(&mut st, t0);
        let _closed_by_the_caller = idle;
        // Another idle connection is there: the request gets it.
        let Retake::Got(next, key2) = st.check_failed(key, CloseReason::Invalid, t0) else {
            panic!("expected the other idle connection")
        };
        assert_eq!(st.stats.closed_invalid, 1);
        assert_eq!(st.status().size, 1);
        // None left: the request keeps the capacity to open one.
        assert!(matches!(
            st.check_failed(key2, CloseReason::Invalid, t0),
            Retake::Create
        ));
        drop(next);
        let s = st.status();
        assert_eq!((s.size, s.opening, s.idle), (1, 1, 0));
        st.check_invariants();
    }

    #[test]
    fn a_checkin_over_max_size_closes_the_connection() {
        let t0 = Instant::now();
        let mut st = St::new(limits(2));
        open_idle(&mut st, t0, 1, 2);
        let (a, ca) = take(&mut st, t0);
        let (_b, _cb) = take(&mut st, t0);
        let after = st.resize(1);
        assert_eq!(after.close_count(), 0);
        assert_eq!(st.status().excess, 1);
        let id = ca.conn;
        let r = st.checkin(a, ca, None, t0);
        assert!(matches!(r.after.closing()[..], [(c, CloseReason::Resized)] if *c == id));
        assert_eq!(st.status().excess, 0);
        st.check_invariants();
    }
}
