//! Connecting: the outcome of a connect (a new connection to its requester, the queue or the
//! idle set; a failure to the fail-fast breaker), and capacity reserved but unused.

#[allow(clippy::wildcard_imports)]
use super::*;

impl<C, E> State<C, E> {
    pub(super) fn new_meta(&mut self, now: Instant) -> ConnMeta {
        self.next_conn_id += 1;
        // A lifetime past the clock's range (`Duration::MAX`) never expires.
        let expires = self.limits.max_lifetime.and_then(|life| {
            let pct = u64::from(self.limits.jitter_percent);
            let max_cut =
                u64::try_from(life.as_nanos() / 100 * u128::from(pct)).unwrap_or(u64::MAX);
            let cut = if max_cut == 0 {
                0
            } else {
                fastrand::u64(0..=max_cut)
            };
            now.checked_add(life - Duration::from_nanos(cut))
        });
        ConnMeta::new(self.next_conn_id, now, expires, self.limits.check_window)
    }

    pub(super) fn connect_succeeded(&mut self) {
        self.opening -= 1;
        self.stats.connects += 1;
        self.failures = 0;
        self.fail_fast_until = None;
    }

    /// A connect that `holder` ran itself succeeded; the connection is held under the returned key.
    pub(crate) fn connected_inline(
        &mut self,
        now: Instant,
        holder: Holder,
    ) -> Result<(usize, ConnMeta), ()> {
        self.connect_succeeded();
        if self.closed {
            self.size -= 1;
            self.stats.closed_manual += 1;
            return Err(());
        }
        let meta = self.new_meta(now);
        Ok((self.hold(meta.id, holder, now), meta))
    }

    /// A background connect succeeded: the connection goes to the request that started it when it
    /// still waits (`requester` = (key, uid)), else to the head of the queue, else to idle.
    pub(crate) fn connected(
        &mut self,
        conn: C,
        now: Instant,
        requester: Option<(usize, u64)>,
    ) -> After<C> {
        self.connect_succeeded();
        if self.closed {
            self.size -= 1;
            self.stats.closed_manual += 1;
            let mut after = After::waking(
                self.live_requester(requester)
                    .map(|wkey| self.give(wkey, Grant::Closed)),
            );
            after.close(conn, CloseReason::Closed);
            return after;
        }
        let idle = Box::new(Entry {
            conn,
            meta: self.new_meta(now),
            dirty: false,
        });
        if let Some(wkey) = self.live_requester(requester) {
            let holder = self.waiters.get(wkey).expect("live waiter").holder;
            let key = self.hold(idle.meta.id, holder, now);
            return After::waking(Some(self.give(wkey, Grant::Conn { idle, key })));
        }
        After::waking(self.offer(idle, now).0)
    }

    pub(super) fn live_requester(&self, requester: Option<(usize, u64)>) -> Option<usize> {
        let (key, uid) = requester?;
        self.waiters
            .get(key)
            .is_some_and(|n| n.uid == uid && n.grant.is_none())
            .then_some(key)
    }

    /// A connect failed: its capacity goes to the next waiter, the error to the request that
    /// started it (if it still waits). Returns the failure when nobody took it, for logging.
    pub(crate) fn connect_failed(
        &mut self,
        failure: ConnectFailure<E>,
        now: Instant,
        requester: Option<(usize, u64)>,
    ) -> (After<C>, Option<ConnectFailure<E>>) {
        self.opening -= 1;
        self.stats.connect_failures += 1;
        self.failures = self.failures.saturating_add(1);
        if self.limits.fail_fast_after > 0 && self.failures >= self.limits.fail_fast_after {
            let exp = (self.failures - self.limits.fail_fast_after).min(5);
            self.fail_fast_until = Some(now + Duration::from_millis(100 << exp));
        }
        let mut after = After::waking(self.release_capacity());
        match self.live_requester(requester) {
            Some(wkey) => {
                after.wake(Some(self.give(wkey, Grant::Failed(failure))));
                (after, None)
            }
            None => (after, Some(failure)),
        }
    }

    /// A reserved unit of capacity was not used (the connect was abandoned before it started).
    pub(crate) fn permit_unused(&mut self) -> After<C> {
        self.opening -= 1;
        After::waking(self.release_capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn lifetimes_are_computed_from_now_and_max_means_never() {
        let t0 = Instant::now();
        let mut st = St::new(Limits {
            max_lifetime: Some(ms(100)),
            check_window: Some(ms(10)),
            ..limits(1)
        });
        let meta = st.new_meta(t0);
        assert_eq!(meta.expires, Some(t0 + ms(100)));
        assert_eq!(meta.check_at, Some(t0 + ms(10)));
        assert!(!meta.is_expired(t0 + ms(99)) && meta.is_expired(t0 + ms(100)));
        let mut st = St::new(Limits {
            max_lifetime: Some(Duration::MAX),
            jitter_percent: 50,
            check_window: Some(Duration::MAX),
            ..limits(1)
        });
        let meta = st.new_meta(t0);
        assert_eq!((meta.expires, meta.check_at), (None, None));
    }

    #[test]
    fn a_new_connection_goes_to_its_requester_else_the_queue_else_idle() {
        let t0 = Instant::now();
        let mut st = St::new(limits(2));
        // A requester that still waits gets it.
        assert!(matches!(acquire(&mut st, t0, false), Acquire::Create));
        let (rkey, uid) = st.register(holder());
        let after = st.connected(7, t0, Some((rkey, uid)));
        assert_eq!(after.wake_count(), 1);
        let (g, _) = st.poll_waiter(rkey, None, |_| None);
        let Some((Grant::Conn { key: held, idle }, _)) = g else {
            panic!("the requester gets it")
        };
        // Its requester gone, the next one goes to the head of the queue.
        assert!(matches!(acquire(&mut st, t0, false), Acquire::Create));
        let Acquire::Wait(w, _) = acquire(&mut st, t0, true) else {
            panic!()
        };
        assert_eq!(st.connected(8, t0, Some((rkey, uid))).wake_count(), 1);
        let (g, _) = st.poll_waiter(w, None, |_| None);
        assert!(matches!(g, Some((Grant::Conn { ref idle, .. }, _)) if idle.conn == 8));
        // Nobody waits: idle.
        let r = st.checkin(held, idle, None, t0);
        assert!(r.idle_key.is_some());
        st.check_invariants();
    }

    #[test]
    fn a_success_closes_the_breaker() {
        let t0 = Instant::now();
        let mut st = St::new(Limits {
            fail_fast_after: 1,
            ..limits(2)
        });
        assert!(matches!(acquire(&mut st, t0, false), Acquire::Create));
        let _ = st.connect_failed(ConnectFailure::TimedOut, t0, None);
        assert!(matches!(
            acquire(&mut st, t0, false),
            Acquire::Unavailable(1)
        ));
        // A retry (not failing fast) probes and succeeds.
        let retry = Ask {
            fail_fast: false,
            ..ask(false)
        };
        assert!(matches!(
            st.acquire(t0, None, retry, || None, || Wake::None, || None),
            Acquire::Create
        ));
        let _ = st.connected(1, t0, None);
        assert!(matches!(acquire(&mut st, t0, false), Acquire::Got(..)));
        assert_eq!((st.stats.connects, st.stats.connect_failures), (1, 1));
    }
}
