//! Background maintenance: a tokio task per pool built inside a runtime, else one shared thread
//! for every pool built outside one (never a thread per pool). Both hold only `Weak` references,
//! so dropping the last `Pool` handle ends them.
//!
//! One pool's failure is its own: a panic in a pass is caught and logged (the pool is reaped
//! again at its next interval), and the shared thread does no I/O itself (refill connects run on
//! threads of their own, see `Shared::spawn_refill`), so a slow connect never holds up the
//! maintenance of other pools.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::manager::Manager;
use crate::pool::{FrontEnd, Shared, Task, Thread};

pub(crate) fn start<M: Manager>(shared: &Arc<Shared<M>>) {
    // Under loom no reaper runs (neither its thread nor its task is modelled): models call
    // `Shared::maintain` themselves.
    if cfg!(all(test, loom)) {
        return;
    }
    let weak = Arc::downgrade(shared);
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move {
                loop {
                    let interval = {
                        let Some(shared) = weak.upgrade() else { break };
                        if shared.is_closed() {
                            break;
                        }
                        maintain_caught::<Task, _>(&shared)
                    };
                    tokio::time::sleep(interval).await;
                }
            });
        }
        Err(_) => Reaper::global().register(Box::new(weak)),
    }
}

/// A pool as the shared reaper thread sees it.
trait Reap: Send {
    /// Runs one pass; `None` when the pool is gone, else the time to the next pass.
    fn reap(&self) -> Option<Duration>;
}

impl<M: Manager> Reap for Weak<Shared<M>> {
    fn reap(&self) -> Option<Duration> {
        let shared = self.upgrade()?;
        if shared.is_closed() {
            return None;
        }
        Some(maintain_caught::<Thread, _>(&shared))
    }
}

/// One maintenance pass; a panic in it (a manager's `close`, a subscriber) is logged, not spread.
/// Returns the time to the next pass.
fn maintain_caught<F: FrontEnd, M: Manager>(shared: &Arc<Shared<M>>) -> Duration {
    catch_unwind(AssertUnwindSafe(|| shared.maintain::<F>())).unwrap_or_else(|_| {
        tracing::error!(pool = %shared.config.name, "a maintenance pass panicked; the next one runs at the next interval");
        shared.config.reap_interval
    })
}

struct Entry {
    pool: Box<dyn Reap>,
    /// `None`: never (an interval past the clock's range).
    due: Option<Instant>,
}

struct Reaper {
    entries: Mutex<Vec<Entry>>,
    changed: Condvar,
}

impl Reaper {
    fn global() -> &'static Reaper {
        static REAPER: OnceLock<Reaper> = OnceLock::new();
        REAPER.get_or_init(|| {
            std::thread::Builder::new()
                .name("pool-reaper".into())
                .spawn(|| Reaper::global().run())
                .map_err(|e| tracing::error!(error = %e, "cannot start the pool reaper thread"))
                .ok();
            Reaper {
                entries: Mutex::new(Vec::new()),
                changed: Condvar::new(),
            }
        })
    }

    fn register(&self, pool: Box<dyn Reap>) {
        self.entries.lock().push(Entry {
            pool,
            due: Some(Instant::now()),
        });
        self.changed.notify_one();
    }

    fn run(&self) {
        let mut entries = self.entries.lock();
        loop {
            let now = Instant::now();
            let mut i = 0;
            while i < entries.len() {
                if entries[i].due.is_some_and(|due| due <= now) {
                    // Pools are reaped without the registry lock, so a reap may register a pool.
                    let entry = entries.swap_remove(i);
                    drop(entries);
                    // A panic here (a `Weak` upgrade's drop closing the pool, say) drops this
                    // pool's entry only; the thread goes on with the others.
                    let next =
                        catch_unwind(AssertUnwindSafe(|| entry.pool.reap())).unwrap_or_else(|_| {
                            tracing::error!(
                                "a pool's maintenance panicked; it is no longer reaped"
                            );
                            None
                        });
                    entries = self.entries.lock();
                    if let Some(interval) = next {
                        entries.push(Entry {
                            pool: entry.pool,
                            due: Instant::now().checked_add(interval),
                        });
                    }
                } else {
                    i += 1;
                }
            }
            let next_due = entries.iter().filter_map(|e| e.due).min();
            match next_due {
                Some(due) => {
                    self.changed.wait_until(&mut entries, due);
                }
                None => self.changed.wait(&mut entries),
            }
        }
    }
}
