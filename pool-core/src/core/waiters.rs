//! The waiter queue: queueing, direct hand-off to the head waiter, cancellation, expiry (the
//! sweeper), and the bounded queue bypass.

#[allow(clippy::wildcard_imports)]
use super::*;

impl<C, E> State<C, E> {
    /// Makes sure the sweeper will expire a waiter due at `deadline`.
    pub(crate) fn arm_sweeper(&mut self, deadline: Instant) -> Sweeper {
        match self.sweep_at {
            None => {
                self.sweep_at = Some(deadline);
                Sweeper::Spawn
            }
            Some(at) if deadline < at => {
                self.sweep_at = Some(deadline);
                Sweeper::Rearm
            }
            Some(_) => Sweeper::Armed,
        }
    }

    /// When the sweeper should next run; `None` once it has stopped.
    pub(crate) fn sweep_at(&self) -> Option<Instant> {
        self.sweep_at
    }

    /// Expires the queued async waiters whose deadline passed and sets the next sweep (`None`
    /// when no timed waiter is left: the sweeper stops).
    pub(crate) fn sweep(&mut self, now: Instant) -> After<C> {
        let mut after = After::none();
        let mut next: Option<Instant> = None;
        for key in self.waiters.keys() {
            let Some(deadline) = self.waiters.get(key).and_then(|n| n.deadline) else {
                continue;
            };
            if deadline <= now {
                self.waiters.unlink(key);
                after.wake(Some(self.give(key, Grant::Expired)));
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        self.sweep_at = next;
        after.wake(self.renudge());
        after
    }

    /// The sweeper task ended without stopping normally (its runtime shut down).
    pub(crate) fn sweeper_gone(&mut self) {
        self.sweep_at = None;
    }

    /// A private waiter slot, not queued, to receive the outcome of a connect. Returns (key, uid).
    pub(crate) fn register(&mut self, holder: Holder) -> (usize, u64) {
        let uid = self.uid();
        let key = self.waiters.insert_unlinked(Node {
            grant: None,
            cell: None,
            wake: Wake::None,
            holder,
            uid,
            deadline: None,
            queued_at: Instant::now(),
        });
        (key, uid)
    }

    /// Polls a waiter: its grant if one arrived (the waiter is then removed), else stores `wake`.
    /// A grant taken here counts the time from `since` to the hand-over as waiting time
    /// (`None`: a private waiter for a connect, whose time is not queueing) and comes with the
    /// instant of the hand-over. The second value is a request to wake after unlocking (queue
    /// bypass: the next waiter, when idle connections are left).
    pub(crate) fn poll_waiter(
        &mut self,
        key: usize,
        since: Option<Instant>,
        wake: impl FnOnce(&Wake) -> Option<Wake>,
    ) -> Polled<C, E> {
        if self.nudged == Some(key) {
            self.nudged = None;
        }
        let node = self
            .waiters
            .get_mut(key)
            .expect("waiter polled after removal");
        if node.grant.is_some() {
            let Some(grant) = self.waiters.remove(key).grant else {
                unreachable!("checked above")
            };
            // A connection carries the instant it was handed over (its check-in), so the hot
            // hand-off path reads no clock under the lock.
            let at = match &grant {
                Grant::Conn { idle, .. } => idle.meta.last_used,
                _ => Instant::now(),
            };
            if let Some(since) = since {
                self.stats.record_wait(at.saturating_duration_since(since));
            }
            return (Some((grant, at)), None);
        }
        if self.limits.queue_bypass.is_some() && !self.idle.is_empty() {
            // Woken under the queue bypass (or still in time): take an idle connection.
            let holder = node.holder;
            self.remove_node(key);
            let idle = self.idle.pop_back().expect("an idle connection");
            let at = idle.meta.last_used;
            if let Some(since) = since {
                self.stats.record_wait(at.saturating_duration_since(since));
            }
            let key = self.hold(idle.meta.id, holder, at);
            return (Some((Grant::Conn { idle, key }, at)), self.renudge());
        }
        if let Some(w) = wake(&node.wake) {
            node.wake = w;
        }
        (None, None)
    }

    /// [`poll_waiter`](Self::poll_waiter) for a waiter with a grant cell, whose owner found the
    /// cell empty before locking: a grant may have arrived since (the node is gone then).
    pub(crate) fn poll_cell_waiter(
        &mut self,
        key: usize,
        cell: &GrantCell<C, E>,
        wake: impl FnOnce(&Wake) -> Option<Wake>,
    ) -> Polled<C, E> {
        match cell.take() {
            Some(granted) => (Some(granted), None),
            None => {
                let since = self.waiters.get(key).map(|n| n.queued_at);
                self.poll_waiter(key, since, wake)
            }
        }
    }

    /// Removes a waiter that gives up (timeout, cancellation). A grant it had already received is
    /// passed on, so no capacity and no wake-up is lost.
    pub(crate) fn cancel_waiter(&mut self, key: usize, now: Instant) -> After<C> {
        let node = self.remove_node(key);
        self.pass_on(node.grant, now)
    }

    /// [`cancel_waiter`](Self::cancel_waiter) for a waiter with a grant cell: the grant is in the
    /// cell if one arrived (the node is gone then), else the node is still queued.
    pub(crate) fn cancel_cell_waiter(
        &mut self,
        key: usize,
        cell: &GrantCell<C, E>,
        now: Instant,
    ) -> After<C> {
        match cell.take() {
            Some((grant, _)) => self.pass_on(Some(grant), now),
            None => self.cancel_waiter(key, now),
        }
    }

    /// Passes on what a waiter that gave up had received.
    pub(super) fn pass_on(&mut self, grant: Option<Grant<C, E>>, now: Instant) -> After<C> {
        match grant {
            Some(Grant::Conn { idle, key }) => self.checkin(key, idle, None, now).after,
            Some(Grant::Permit) => {
                self.opening -= 1;
                After::waking(self.release_capacity())
            }
            Some(Grant::Failed(_) | Grant::Closed | Grant::Expired) | None => {
                After::waking(self.renudge())
            }
        }
    }

    /// Grants waiter `key` (already unlinked, or never queued) and returns its wake-up, to run
    /// after unlocking.
    pub(super) fn give(&mut self, key: usize, grant: Grant<C, E>) -> Wake {
        let node = self
            .waiters
            .get_mut(key)
            .expect("granting to a removed waiter");
        if node.cell.is_none() {
            node.grant = Some(grant);
            return std::mem::replace(&mut node.wake, Wake::None);
        }
        let mut node = self.remove_node(key);
        let cell = node.cell.take().expect("checked above");
        // A connection carries the instant it was handed over (its check-in), so the hot
        // hand-off path reads no clock under the lock.
        let at = match &grant {
            Grant::Conn { idle, .. } => idle.meta.last_used,
            _ => Instant::now(),
        };
        self.stats
            .record_wait(at.saturating_duration_since(node.queued_at));
        cell.fill((grant, at));
        node.wake
    }

    /// Removes a waiter node (its reference to a grant cell goes with it), forgetting an
    /// outstanding queue-bypass wake-up of it.
    pub(super) fn remove_node(&mut self, key: usize) -> Node<C, E> {
        if self.nudged == Some(key) {
            self.nudged = None;
        }
        self.waiters.remove(key)
    }

    /// Hands an available connection to the head of the queue, or makes it idle (returning its
    /// idle key). Under the queue bypass, a young queue gets it idle and its first waiter that is
    /// not already woken is woken to take it.
    pub(super) fn offer(&mut self, idle: Idle<C>, now: Instant) -> (Option<Wake>, Option<usize>) {
        if self.bypass_open(now) {
            let key = self.idle.push_back(idle);
            return (self.nudge(), Some(key));
        }
        match self.waiters.unlink_front() {
            Some(wkey) => {
                let holder = self.waiters.get(wkey).expect("queued waiter").holder;
                let key = self.hold(idle.meta.id, holder, now);
                (Some(self.give(wkey, Grant::Conn { idle, key })), None)
            }
            None => (None, Some(self.idle.push_back(idle))),
        }
    }

    /// Whether the bounded queue bypass applies now: it is on, requests wait, and the oldest has
    /// waited less than the bypass window.
    pub(super) fn bypass_open(&self, now: Instant) -> bool {
        let Some(window) = self.limits.queue_bypass else {
            return false;
        };
        self.waiters
            .front_key()
            .and_then(|k| self.waiters.get(k))
            .is_some_and(|head| now.saturating_duration_since(head.queued_at) < window)
    }

    /// Wakes the first queued request that is not already woken, so that it takes an idle
    /// connection (queue bypass only), unless such a wake-up is already outstanding.
    pub(super) fn nudge(&mut self) -> Option<Wake> {
        if self.nudged.is_some() {
            return None;
        }
        let mut key = self.waiters.front_key();
        while let Some(k) = key {
            let node = self.waiters.get_mut(k).expect("linked waiter");
            if !matches!(node.wake, Wake::None) {
                self.nudged = Some(k);
                return Some(std::mem::replace(&mut node.wake, Wake::None));
            }
            key = self.waiters.next_key(k);
        }
        None
    }

    /// Under the queue bypass, idle connections and waiting requests may coexist for a moment:
    /// when a request leaves the queue, make sure someone is woken to take them.
    pub(super) fn renudge(&mut self) -> Option<Wake> {
        if self.limits.queue_bypass.is_some() && !self.idle.is_empty() && !self.waiters.is_empty() {
            self.nudge()
        } else {
            None
        }
    }

    /// One unit of capacity was freed: give it to the head of the queue as a permit to connect.
    pub(super) fn release_capacity(&mut self) -> Option<Wake> {
        self.size -= 1;
        if self.closed || self.size >= self.limits.max_size {
            return None;
        }
        let wkey = self.waiters.unlink_front()?;
        self.size += 1;
        self.opening += 1;
        Some(self.give(wkey, Grant::Permit))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn the_sweeper_expires_only_overdue_waiters() {
        let t0 = Instant::now();
        let mut st = St::new(limits(1));
        open_idle(&mut st, t0, 1, 1);
        let _held = take(&mut st, t0);
        let queue = |st: &mut St, after: u64| {
            let d = Some(t0 + ms(after));
            match st.acquire(t0, None, ask(true), || d, || Wake::None, || None) {
                Acquire::Wait(key, _) => {
                    st.arm_sweeper(t0 + ms(after));
                    key
                }
                other => panic!("expected to queue, got {other:?}"),
            }
        };
        let (a, b) = (queue(&mut st, 10), queue(&mut st, 30));
        assert_eq!(st.sweep_at(), Some(t0 + ms(10)));
        assert_eq!(st.sweep(t0 + ms(9)).wake_count(), 0);
        assert_eq!(st.sweep(t0 + ms(10)).wake_count(), 1);
        assert_eq!(st.sweep_at(), Some(t0 + ms(30)), "the next deadline");
        let (g, _) = st.poll_waiter(a, None, |_| None);
        assert!(matches!(g, Some((Grant::Expired, _))));
        assert_eq!(st.status().waiting, 1);
        assert_eq!(st.sweep(t0 + ms(30)).wake_count(), 1);
        assert_eq!(
            st.sweep_at(),
            None,
            "no timed waiter left: the sweeper stops"
        );
        let (g, _) = st.poll_waiter(b, None, |_| None);
        assert!(matches!(g, Some((Grant::Expired, _))));
        st.check_invariants();
    }

    #[test]
    fn a_cancelled_waiter_passes_its_grant_to_the_next() {
        let t0 = Instant::now();
        let mut st = St::new(limits(1));
        open_idle(&mut st, t0, 1, 1);
        let (key, idle) = take(&mut st, t0);
        let Acquire::Wait(first, _) = acquire(&mut st, t0, true) else {
            panic!()
        };
        let Acquire::Wait(second, _) = acquire(&mut st, t0, true) else {
            panic!()
        };
        assert_eq!(st.checkin(key, idle, None, t0).after.wake_count(), 1);
        // The first gives up after its grant arrived: the second gets the connection.
        let after = st.cancel_waiter(first, t0);
        assert!(after.wake_count() == 1 && after.close_count() == 0);
        let (g, _) = st.poll_waiter(second, None, |_| None);
        assert!(matches!(g, Some((Grant::Conn { ref idle, .. }, _)) if idle.conn == 1));
        st.check_invariants();
    }

    #[test]
    fn freed_capacity_goes_to_the_head_as_a_permit() {
        let t0 = Instant::now();
        let mut st = St::new(limits(1));
        assert!(matches!(acquire(&mut st, t0, false), Acquire::Create));
        let Acquire::Wait(w, _) = acquire(&mut st, t0, true) else {
            panic!()
        };
        // The connect is abandoned: its capacity is the waiter's permit.
        assert_eq!(st.permit_unused().wake_count(), 1);
        let (g, _) = st.poll_waiter(w, None, |_| None);
        assert!(matches!(g, Some((Grant::Permit, _))));
        let s = st.status();
        assert_eq!((s.size, s.opening, s.waiting), (1, 1, 0));
    }

    #[test]
    fn the_queue_bypass_holds_only_within_its_window() {
        let t0 = Instant::now();
        let mut st = St::new(Limits {
            queue_bypass: Some(ms(10)),
            ..limits(1)
        });
        open_idle(&mut st, t0, 1, 1);
        let (key, idle) = take(&mut st, t0);
        let Acquire::Wait(_w, _) = acquire(&mut st, t0, true) else {
            panic!()
        };
        // Young queue: the connection goes idle (a newcomer may take it).
        let r = st.checkin(key, idle, None, t0 + ms(5));
        assert!(r.idle_key.is_some());
        let (key, idle) = take(&mut st, t0 + ms(6));
        // Old queue: strict hand-off to the head.
        let r = st.checkin(key, idle, None, t0 + ms(10));
        assert!(r.idle_key.is_none() && r.after.wake_count() == 1);
    }
}
