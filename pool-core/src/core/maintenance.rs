//! Maintenance: reaping (lifetime, idle timeout, leaks, `min_idle`), closing, resizing,
//! reclaiming held connections.

#[allow(clippy::wildcard_imports)]
use super::*;

impl<C, E> State<C, E> {
    /// Closes every idle connection.
    pub(crate) fn drain_idle(&mut self, reason: CloseReason) -> After<C> {
        let mut after = After::none();
        self.drain_idle_into(reason, &mut after);
        after
    }

    fn drain_idle_into(&mut self, reason: CloseReason, after: &mut After<C>) {
        while let Some(idle) = self.idle.pop_back() {
            self.size -= 1;
            self.count_close(reason);
            after.close(idle.conn, reason);
        }
    }

    /// Reclaims connections held for at least `age`: their capacity is released now, and each is
    /// closed when its holder lets go of it.
    pub(crate) fn reclaim(&mut self, age: Duration, now: Instant) -> (usize, After<C>) {
        let mut count = 0;
        for (_, h) in self.held.iter_mut() {
            if !h.reclaimed && now.saturating_duration_since(h.since) >= age {
                h.reclaimed = true;
                count += 1;
            }
        }
        self.reclaimed += count;
        self.stats.closed_leaked += count as u64;
        let mut after = After::none();
        for _ in 0..count {
            after.wake(self.release_capacity());
        }
        (count, after)
    }

    /// Shuts the pool: every waiter gets `Closed`, idle connections are closed.
    pub(crate) fn close(&mut self) -> After<C> {
        self.closed = true;
        // Nobody will wait any more: the sweeper stops when it next looks.
        self.sweep_at = None;
        let mut after = After::none();
        while let Some(wkey) = self.waiters.unlink_front() {
            after.wake(Some(self.give(wkey, Grant::Closed)));
        }
        self.drain_idle_into(CloseReason::Closed, &mut after);
        after
    }

    /// Changes `max_size`: growing serves queued requests, shrinking closes idle connections now
    /// and in-use ones as they come back.
    pub(crate) fn resize(&mut self, max_size: usize) -> After<C> {
        self.limits.max_size = max_size;
        self.limits.min_idle = self.limits.min_idle.min(max_size);
        let mut after = After::none();
        while self.size < max_size {
            let Some(wkey) = self.waiters.unlink_front() else {
                break;
            };
            self.size += 1;
            self.opening += 1;
            after.wake(Some(self.give(wkey, Grant::Permit)));
        }
        while self.size > max_size {
            let Some(idle) = self.idle.pop_back() else {
                break;
            };
            self.size -= 1;
            self.count_close(CloseReason::Resized);
            after.close(idle.conn, CloseReason::Resized);
        }
        after
    }

    /// One reaper pass: closes idle connections past their lifetime or idle timeout (keeping
    /// `min_idle`), reports leaks once each, and reserves capacity to refill `min_idle`.
    /// Returns the connections to close, the leaks to report and the connects to start.
    pub(crate) fn reap(&mut self, now: Instant) -> After<C> {
        let mut after = After::none();
        if self.closed {
            return after;
        }
        for key in self.idle.keys() {
            if self.idle.get(key).is_some_and(|i| i.meta.is_expired(now)) {
                let idle = self.idle.remove(key);
                self.size -= 1;
                self.count_close(CloseReason::Stale);
                after.close(idle.conn, CloseReason::Stale);
            }
        }
        if let Some(timeout) = self.limits.idle_timeout {
            // Oldest-returned first; never below min_idle, so the minimum is not churned.
            while self.idle.len() > self.limits.min_idle {
                let Some(key) = self.idle.front_key() else {
                    break;
                };
                let idle_for = now.saturating_duration_since(
                    self.idle.get(key).expect("front key").meta.last_used,
                );
                if idle_for < timeout {
                    break;
                }
                let idle = self.idle.remove(key);
                self.size -= 1;
                self.count_close(CloseReason::Idle);
                after.close(idle.conn, CloseReason::Idle);
            }
        }
        if let Some(threshold) = self.limits.leak_threshold {
            for (_, h) in self.held.iter_mut() {
                let held_for = now.saturating_duration_since(h.since);
                if !h.leak_warned && held_for >= threshold {
                    h.leak_warned = true;
                    after.leak(Leak {
                        conn_id: h.conn_id,
                        held_for,
                        holder: h.holder,
                    });
                }
            }
        }
        after.set_refill(self.reserve_min_idle(now));
        after
    }

    /// How long until the next reaper pass should run: `interval`, but never after a held
    /// connection crosses the leak threshold, and never more than the threshold itself, so a
    /// leak is reported within one threshold of crossing it (at most a millisecond late for the
    /// connections held now). At least 1 ms.
    pub(crate) fn next_pass(&self, now: Instant, interval: Duration) -> Duration {
        let Some(threshold) = self.limits.leak_threshold else {
            return interval;
        };
        let mut next = interval.min(threshold);
        for (_, h) in self.held.iter() {
            if h.leak_warned || h.reclaimed {
                continue;
            }
            if let Some(due) = h.since.checked_add(threshold) {
                next = next.min(due.saturating_duration_since(now));
            }
        }
        next.max(Duration::from_millis(1))
    }

    /// Reserves capacity for the connects needed to bring idle connections up to `min_idle`.
    pub(crate) fn reserve_min_idle(&mut self, now: Instant) -> usize {
        if self.closed || self.breaker_open(now) {
            return 0;
        }
        let have = self.idle.len() + self.opening;
        let want = self
            .limits
            .min_idle
            .saturating_sub(have)
            .min(self.limits.max_size.saturating_sub(self.size));
        self.size += want;
        self.opening += want;
        want
    }

    /// Who holds what.
    pub(crate) fn held(&self, now: Instant) -> Vec<HeldConn> {
        self.held
            .iter()
            .map(|(_, h)| HeldConn {
                id: h.conn_id,
                held_for: now.saturating_duration_since(h.since),
                thread: h.holder.thread,
                task: h.holder.task,
                location: h.holder.location,
                reclaimed: h.reclaimed,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn reap_closes_expired_and_idle_connections_keeping_min_idle() {
        let t0 = Instant::now();
        let mut st = St::new(Limits {
            min_idle: 1,
            idle_timeout: Some(ms(50)),
            ..limits(4)
        });
        open_idle(&mut st, t0, 1, 3);
        let after = st.reap(t0 + ms(49));
        assert!(after.close_count() == 0 && after.leaks().is_empty());
        assert_eq!(after.refill(), 0);
        let after = st.reap(t0 + ms(50));
        assert_eq!(after.close_count(), 2, "down to min_idle");
        assert!(after.closing().iter().all(|(_, r)| *r == CloseReason::Idle));
        assert_eq!(after.refill(), 0);
        assert_eq!(st.status().idle, 1);
        st.check_invariants();
    }

    #[test]
    fn the_next_pass_comes_no_later_than_the_next_leak() {
        let t0 = Instant::now();
        let interval = ms(60_000);
        let st = St::new(limits(2));
        assert_eq!(
            st.next_pass(t0, interval),
            interval,
            "no threshold: the interval"
        );
        let mut st = St::new(Limits {
            leak_threshold: Some(ms(2_000)),
            ..limits(2)
        });
        assert_eq!(
            st.next_pass(t0, interval),
            ms(2_000),
            "never more than the threshold"
        );
        open_idle(&mut st, t0, 1, 1);
        let _held = take(&mut st, t0 + ms(500));
        assert_eq!(
            st.next_pass(t0 + ms(1_000), interval),
            ms(1_500),
            "when it crosses"
        );
        let after = st.reap(t0 + ms(2_500));
        assert_eq!(after.leaks().len(), 1);
        assert_eq!(
            st.next_pass(t0 + ms(2_500), interval),
            ms(2_000),
            "a warned leak no longer counts"
        );
        assert_eq!(
            st.next_pass(t0 + ms(2_499), Duration::ZERO),
            ms(1),
            "at least 1 ms"
        );
    }

    #[test]
    fn reap_reserves_the_refill_for_min_idle_and_warns_of_a_leak_once() {
        let t0 = Instant::now();
        let mut st = St::new(Limits {
            min_idle: 2,
            leak_threshold: Some(ms(100)),
            ..limits(4)
        });
        open_idle(&mut st, t0, 1, 1);
        let _held = take(&mut st, t0);
        let after = st.reap(t0 + ms(100));
        assert_eq!(
            after.refill(),
            2,
            "nothing idle: two connects to keep min_idle"
        );
        assert_eq!(after.leaks().len(), 1);
        assert_eq!(after.leaks()[0].held_for, ms(100));
        let after = st.reap(t0 + ms(200));
        assert!(after.leaks().is_empty(), "warned once");
        assert_eq!(after.refill(), 0, "already opening");
        assert_eq!(st.status().opening, 2);
        st.check_invariants();
    }

    #[test]
    fn reclaim_releases_capacity_of_connections_held_for_long() {
        let t0 = Instant::now();
        let mut st = St::new(limits(2));
        open_idle(&mut st, t0, 1, 2);
        let (old, old_conn) = take(&mut st, t0);
        let (_young, _c) = take(&mut st, t0 + ms(50));
        let (n, _) = st.reclaim(ms(60), t0 + ms(100));
        assert_eq!(n, 1);
        let s = st.status();
        assert_eq!((s.size, s.in_use, s.reclaimed), (1, 1, 1));
        // The reclaimed one is closed when its holder returns it.
        let id = old_conn.conn;
        let r = st.checkin(old, old_conn, None, t0 + ms(120));
        assert!(matches!(r.after.closing()[..], [(c, CloseReason::Leaked)] if *c == id));
        st.check_invariants();
    }

    #[test]
    fn resize_grants_permits_when_growing_and_reports_the_excess_when_shrinking() {
        let t0 = Instant::now();
        let mut st = St::new(limits(1));
        open_idle(&mut st, t0, 1, 1);
        let (_k, _c) = take(&mut st, t0);
        let Acquire::Wait(w, _) = acquire(&mut st, t0, true) else {
            panic!()
        };
        let after = st.resize(2);
        assert_eq!((after.wake_count(), after.close_count()), (1, 0));
        let (g, _) = st.poll_waiter(w, None, |_| None);
        assert!(matches!(g, Some((Grant::Permit, _))));
        let _ = st.connected(2, t0, None);
        let after = st.resize(1);
        assert_eq!(after.close_count(), 1, "the idle one is closed now");
        let s = st.status();
        assert_eq!((s.max_size, s.size, s.excess), (1, 1, 0));
        st.check_invariants();
    }

    #[test]
    fn close_hands_every_waiter_closed_and_drains_idle() {
        let t0 = Instant::now();
        let mut st = St::new(limits(1));
        assert!(matches!(acquire(&mut st, t0, false), Acquire::Create));
        let Acquire::Wait(w, _) = acquire(&mut st, t0, true) else {
            panic!()
        };
        let after = st.close();
        assert_eq!((after.wake_count(), after.close_count()), (1, 0));
        let (g, _) = st.poll_waiter(w, None, |_| None);
        assert!(matches!(g, Some((Grant::Closed, _))));
        // The connect in flight comes back to a closed pool: closed at once.
        let after = st.connected(1, t0, None);
        assert!(matches!(after.closing()[..], [(1, CloseReason::Closed)]));
        assert_eq!(st.status().size, 0);
    }
}
