//! Runs a load against one [`Target`] (tasks) or [`BlockingTarget`] (threads) and records it.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pool_benches::{latency_histogram, nanos, percentiles, Percentiles};
use serde::Serialize;

use crate::target::{BlockingTarget, ErrorKind, OpError, PoolState, Target, Timing};

/// Tasks on the tokio runtime, or OS threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    Tasks,
    Threads,
}

/// The shape of one run.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub(crate) mode: Mode,
    pub(crate) concurrency: usize,
    pub(crate) pool_size: usize,
    /// Measured time (after the warm-up).
    pub(crate) duration: Duration,
    /// Unmeasured time before it: connections open, caches fill.
    pub(crate) warmup: Duration,
    pub(crate) read_ratio: f64,
    pub(crate) rows: i64,
    /// Bound of one operation (and our pool's wait timeout).
    pub(crate) op_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// Draw a progress bar (stderr is a terminal and output is not JSON-only).
    pub(crate) progress: bool,
    /// Run each task's loop under tokio's cooperative budget (`--coop on`, the default), or
    /// under `tokio::task::coop::unconstrained` (`--coop off`).
    pub(crate) coop: bool,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunResult {
    pub(crate) target: String,
    pub(crate) mode: Mode,
    pub(crate) concurrency: usize,
    pub(crate) pool_size: usize,
    pub(crate) seconds: f64,
    pub(crate) ops: u64,
    pub(crate) ops_per_sec: f64,
    /// Getting a connection.
    pub(crate) wait: Percentiles,
    /// Using it (the statement, plus the hop to a blocking thread where there is one).
    pub(crate) query: Percentiles,
    /// Both.
    pub(crate) total: Percentiles,
    pub(crate) errors: BTreeMap<ErrorKind, u64>,
    pub(crate) error_examples: BTreeMap<ErrorKind, String>,
    /// Our pool's status and counters at the end of the run.
    pub(crate) pool: Option<PoolState>,
    /// Largest `in_use` / `waiting` seen by the progress sampler (every 100 ms).
    pub(crate) peak_in_use: Option<usize>,
    pub(crate) peak_waiting: Option<usize>,
    /// Fairness: the least productive worker's successful operations divided by the mean
    /// (1 = every worker got the same share; near 0 = some workers starved).
    pub(crate) fairness: f64,
    /// The histograms behind `wait`, `query` and `total` (ns), to merge rounds.
    #[serde(skip)]
    pub(crate) hists: [Histogram<u64>; 3],
}

impl RunResult {
    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One worker's records, merged at the end.
struct Recorder {
    wait: Histogram<u64>,
    query: Histogram<u64>,
    total: Histogram<u64>,
    errors: BTreeMap<ErrorKind, u64>,
    examples: BTreeMap<ErrorKind, String>,
    /// Successful operations of this worker.
    done: u64,
    /// `done` of each merged worker.
    per_worker: Vec<u64>,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            wait: latency_histogram(),
            query: latency_histogram(),
            total: latency_histogram(),
            errors: BTreeMap::new(),
            examples: BTreeMap::new(),
            done: 0,
            per_worker: Vec::new(),
        }
    }

    fn record(&mut self, res: Result<Timing, OpError>) {
        match res {
            Ok(t) => {
                self.done += 1;
                // Auto-resizing histograms accept any u64.
                let _ = self.wait.record(nanos(t.wait));
                let _ = self.query.record(nanos(t.query));
                let _ = self.total.record(nanos(t.wait + t.query));
            }
            Err(e) => {
                *self.errors.entry(e.kind).or_default() += 1;
                self.examples.entry(e.kind).or_insert(e.message);
            }
        }
    }

    fn merge(&mut self, other: Recorder) {
        // Same settings, auto-resize: adding cannot fail.
        let _ = self.wait.add(&other.wait);
        let _ = self.query.add(&other.query);
        let _ = self.total.add(&other.total);
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        for (k, m) in other.examples {
            self.examples.entry(k).or_insert(m);
        }
        self.per_worker.push(other.done);
    }
}

/// State shared by the workers of one run.
struct Shared {
    start: Instant,
    measure_from: Instant,
    deadline: Instant,
    read_ratio: f64,
    rows: i64,
    /// Operations finished inside the measured window (for the progress line).
    ops: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn new(load: &Load) -> Arc<Self> {
        let start = Instant::now();
        Arc::new(Shared {
            start,
            measure_from: start + load.warmup,
            deadline: start + load.warmup + load.duration,
            read_ratio: load.read_ratio,
            rows: load.rows.max(1),
            ops: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    fn next(&self, rng: &mut fastrand::Rng) -> (bool, i64) {
        (rng.f64() < self.read_ratio, rng.i64(1..=self.rows))
    }

    /// Records `res` if the operation started in the measured window.
    fn finish(&self, rec: &mut Recorder, started: Instant, res: Result<Timing, OpError>) -> bool {
        let failed = res.is_err();
        if started >= self.measure_from {
            if failed {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            self.ops.fetch_add(1, Ordering::Relaxed);
            rec.record(res);
        }
        failed
    }
}

/// The progress bar of one run, and the pool-status sampler behind it.
struct Progress {
    bar: ProgressBar,
    last: (Instant, u64),
    peak_in_use: Option<usize>,
    peak_waiting: Option<usize>,
}

impl Progress {
    fn new(label: &str, load: &Load) -> Self {
        let total_ms = u64::try_from((load.warmup + load.duration).as_millis()).unwrap_or(0);
        let target = if load.progress && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total_ms), target);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>16} [{bar:30.cyan/blue}] {elapsed:>3} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{label} ×{}", load.concurrency));
        Progress {
            bar,
            last: (Instant::now(), 0),
            peak_in_use: None,
            peak_waiting: None,
        }
    }

    fn tick(&mut self, shared: &Shared, state: Option<PoolState>) {
        let now = Instant::now();
        let ops = shared.ops.load(Ordering::Relaxed);
        let dt = now.duration_since(self.last.0).as_secs_f64();
        let rate = if dt > 0.0 {
            // Display only.
            #[allow(clippy::cast_precision_loss)]
            let r = (ops - self.last.1) as f64 / dt;
            r
        } else {
            0.0
        };
        self.last = (now, ops);
        let pos = u64::try_from(now.duration_since(shared.start).as_millis()).unwrap_or(0);
        self.bar.set_position(pos);
        let phase = if now < shared.measure_from {
            "warming up"
        } else {
            ""
        };
        let mut msg = format!(
            "{rate:>9.0} ops/s  {} errors {phase}",
            shared.errors.load(Ordering::Relaxed)
        );
        if let Some(st) = state {
            let (in_use, waiting) = (st.status("in_use"), st.status("waiting"));
            self.peak_in_use = Some(self.peak_in_use.unwrap_or(0).max(in_use));
            self.peak_waiting = Some(self.peak_waiting.unwrap_or(0).max(waiting));
            msg.push_str(&format!("  in use {in_use}, waiting {waiting}"));
        }
        self.bar.set_message(msg);
    }
}

const TICK: Duration = Duration::from_millis(100);

/// Runs `load.concurrency` tasks against `target` and summarises them.
pub(crate) async fn run_tasks<T: Target>(label: &str, load: &Load, target: T) -> RunResult {
    let target = Arc::new(target);
    let shared = Shared::new(load);
    let op_timeout = load.op_timeout;
    let mut handles = Vec::with_capacity(load.concurrency);
    for i in 0..load.concurrency {
        let (target, shared) = (Arc::clone(&target), Arc::clone(&shared));
        let coop = load.coop;
        handles.push(tokio::spawn(pool_benches::with_coop(coop, async move {
            let mut rng = fastrand::Rng::with_seed(0x5eed + i as u64);
            let mut rec = Recorder::new();
            loop {
                let started = Instant::now();
                if started >= shared.deadline {
                    break;
                }
                let (read, key) = shared.next(&mut rng);
                let res = match tokio::time::timeout(op_timeout, target.op(read, key)).await {
                    Ok(r) => r,
                    Err(_) => Err(OpError::msg(
                        ErrorKind::OpTimeout,
                        format!("operation took longer than {op_timeout:?}"),
                    )),
                };
                if shared.finish(&mut rec, started, res) {
                    // Do not spin on a failing database.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            rec
        })));
    }

    let mut progress = Progress::new(label, load);
    let mut ticker = tokio::time::interval(TICK);
    while Instant::now() < shared.deadline {
        ticker.tick().await;
        progress.tick(&shared, target.pool_state());
    }
    let mut rec = Recorder::new();
    for h in handles {
        match h.await {
            Ok(r) => rec.merge(r),
            Err(e) => rec.record(Err(OpError::msg(
                ErrorKind::Other,
                format!("worker task failed: {e}"),
            ))),
        }
    }
    progress.bar.finish_and_clear();
    summarise(label, load, &shared, rec, progress, target.pool_state())
}

/// Runs `load.concurrency` OS threads against `target` and summarises them. Blocks the
/// calling thread: call it through `tokio::task::block_in_place` or `spawn_blocking`.
pub(crate) fn run_threads<T: BlockingTarget>(label: &str, load: &Load, target: T) -> RunResult {
    let shared = Shared::new(load);
    let mut progress = Progress::new(label, load);
    let mut rec = Recorder::new();
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(load.concurrency);
        for i in 0..load.concurrency {
            let (target, shared) = (&target, &shared);
            handles.push(s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(0x5eed + i as u64);
                let mut rec = Recorder::new();
                loop {
                    let started = Instant::now();
                    if started >= shared.deadline {
                        break;
                    }
                    let (read, key) = shared.next(&mut rng);
                    let res = target.op(read, key);
                    if shared.finish(&mut rec, started, res) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                rec
            }));
        }
        while Instant::now() < shared.deadline {
            std::thread::sleep(TICK);
            progress.tick(&shared, target.pool_state());
        }
        for h in handles {
            match h.join() {
                Ok(r) => rec.merge(r),
                Err(_) => rec.record(Err(OpError::msg(
                    ErrorKind::Other,
                    "worker thread panicked",
                ))),
            }
        }
    });
    progress.bar.finish_and_clear();
    summarise(label, load, &shared, rec, progress, target.pool_state())
}

fn summarise(
    label: &str,
    load: &Load,
    shared: &Shared,
    rec: Recorder,
    progress: Progress,
    pool: Option<PoolState>,
) -> RunResult {
    let seconds = load.duration.as_secs_f64();
    let ops = shared.ops.load(Ordering::Relaxed);
    // Display only.
    #[allow(clippy::cast_precision_loss)]
    let ops_per_sec = if seconds > 0.0 {
        (ops - rec.errors.values().sum::<u64>()) as f64 / seconds
    } else {
        0.0
    };
    let fairness = match (rec.per_worker.iter().min(), rec.per_worker.len()) {
        (Some(&min), n) if n > 0 => {
            // Display only.
            #[allow(clippy::cast_precision_loss)]
            let mean = rec.per_worker.iter().sum::<u64>() as f64 / n as f64;
            #[allow(clippy::cast_precision_loss)]
            let min = min as f64;
            if mean > 0.0 {
                min / mean
            } else {
                0.0
            }
        }
        _ => 0.0,
    };
    RunResult {
        target: label.to_owned(),
        mode: load.mode,
        concurrency: load.concurrency,
        pool_size: load.pool_size,
        seconds,
        ops,
        ops_per_sec,
        wait: percentiles(&rec.wait),
        query: percentiles(&rec.query),
        total: percentiles(&rec.total),
        hists: [rec.wait, rec.query, rec.total],
        errors: rec.errors,
        error_examples: rec.examples,
        pool,
        peak_in_use: progress.peak_in_use,
        peak_waiting: progress.peak_waiting,
        fairness,
    }
}
