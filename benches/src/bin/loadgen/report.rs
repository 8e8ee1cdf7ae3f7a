//! The human table and the JSON document, the same for every backend.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use pool_benches::{latency_histogram, percentiles, Percentiles};
use serde::Serialize;

use crate::runner::{Mode, RunResult};
use crate::target::{ErrorKind, PoolState, OURS};

/// Everything `--json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) backend: &'static str,
    pub(crate) url: String,
    pub(crate) rows: i64,
    pub(crate) read_ratio: f64,
    /// Rounds per concurrency; each round runs every contender once, in a new shuffled order.
    pub(crate) rounds: usize,
    /// False under `--coop off`.
    pub(crate) coop: bool,
    /// One per target and concurrency, merged over the rounds.
    pub(crate) results: Vec<Summary>,
    /// Per target and concurrency: `ours ÷ target` throughput, round by round, and
    /// `target ÷ ours` p99.
    pub(crate) ratios: Vec<Ratio>,
    /// Every single run, in the order they ran.
    pub(crate) runs: Vec<RunResult>,
    pub(crate) plot: Option<String>,
}

/// Median, extremes, mean and the mean's standard error of values over rounds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
    /// Sample standard deviation ÷ √n (0 for one value).
    pub(crate) se: f64,
}

impl Spread {
    /// The spread of `xs` (all NaN for none; NaN values are left out).
    pub(crate) fn of(xs: &[f64]) -> Self {
        let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return Spread {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                mean: f64::NAN,
                se: f64::NAN,
            };
        }
        v.sort_by(f64::total_cmp);
        // Display only: round counts are small.
        #[allow(clippy::cast_precision_loss)]
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let se = if v.len() > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() / n.sqrt()
        } else {
            0.0
        };
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[v.len() - 1],
            mean,
            se,
        }
    }
}

/// One target at one concurrency, merged over its rounds.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pub(crate) target: String,
    pub(crate) mode: Mode,
    pub(crate) concurrency: usize,
    pub(crate) pool_size: usize,
    pub(crate) rounds: usize,
    /// Measured seconds and operations over all rounds.
    pub(crate) seconds: f64,
    pub(crate) ops: u64,
    /// Successful operations per second, round by round, and their spread.
    pub(crate) ops_per_sec_rounds: Vec<f64>,
    pub(crate) ops_per_sec: Spread,
    /// Latency percentiles of all rounds' operations together.
    pub(crate) wait: Percentiles,
    pub(crate) query: Percentiles,
    pub(crate) total: Percentiles,
    /// The p99 (wait + query) of each round, spread.
    pub(crate) p99_rounds: Spread,
    /// Fairness (the least productive worker's operations ÷ the mean) of each round, spread.
    pub(crate) fairness: Spread,
    pub(crate) errors: BTreeMap<ErrorKind, u64>,
    pub(crate) error_examples: BTreeMap<ErrorKind, String>,
    /// Our pool's status and counters after its last round.
    pub(crate) pool: Option<PoolState>,
    pub(crate) peak_in_use: Option<usize>,
    pub(crate) peak_waiting: Option<usize>,
}

impl Summary {
    /// Merges the runs of one target at one concurrency (at least one).
    pub(crate) fn merge(runs: &[&RunResult]) -> Option<Self> {
        let first = runs.first()?;
        let mut hists = [
            latency_histogram(),
            latency_histogram(),
            latency_histogram(),
        ];
        let mut errors: BTreeMap<ErrorKind, u64> = BTreeMap::new();
        let mut examples = BTreeMap::new();
        for r in runs {
            for (h, o) in hists.iter_mut().zip(&r.hists) {
                // Same settings, auto-resize: adding cannot fail.
                let _ = h.add(o);
            }
            for (k, n) in &r.errors {
                *errors.entry(*k).or_default() += n;
            }
            for (k, m) in &r.error_examples {
                examples.entry(*k).or_insert_with(|| m.clone());
            }
        }
        let rates: Vec<f64> = runs.iter().map(|r| r.ops_per_sec).collect();
        let p99s: Vec<f64> = runs.iter().map(|r| r.total.p99_us).collect();
        let fair: Vec<f64> = runs.iter().map(|r| r.fairness).collect();
        Some(Summary {
            target: first.target.clone(),
            mode: first.mode,
            concurrency: first.concurrency,
            pool_size: first.pool_size,
            rounds: runs.len(),
            seconds: runs.iter().map(|r| r.seconds).sum(),
            ops: runs.iter().map(|r| r.ops).sum(),
            ops_per_sec: Spread::of(&rates),
            ops_per_sec_rounds: rates,
            wait: percentiles(&hists[0]),
            query: percentiles(&hists[1]),
            total: percentiles(&hists[2]),
            p99_rounds: Spread::of(&p99s),
            fairness: Spread::of(&fair),
            errors,
            error_examples: examples,
            pool: runs.last().and_then(|r| r.pool.clone()),
            peak_in_use: runs.iter().filter_map(|r| r.peak_in_use).max(),
            peak_waiting: runs.iter().filter_map(|r| r.peak_waiting).max(),
        })
    }

    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// How one peer compares with ours at one concurrency; above 1 means ours is better.
#[derive(Debug, Serialize)]
pub(crate) struct Ratio {
    pub(crate) target: String,
    pub(crate) concurrency: usize,
    /// Our operations per second divided by the peer's in the same round, over the rounds.
    pub(crate) throughput_ours_over_peer: Spread,
    /// The peer's p99 (wait + query, all rounds) divided by ours.
    pub(crate) p99_peer_over_ours: f64,
}

/// Ratios of every peer summary to ours at the same concurrency, round by round.
pub(crate) fn ratios(results: &[Summary]) -> Vec<Ratio> {
    results
        .iter()
        .filter(|r| r.target != OURS)
        .filter_map(|peer| {
            let ours = results
                .iter()
                .find(|r| r.target == OURS && r.concurrency == peer.concurrency)?;
            let per_round: Vec<f64> = ours
                .ops_per_sec_rounds
                .iter()
                .zip(&peer.ops_per_sec_rounds)
                .map(|(o, p)| div(*o, *p))
                .collect();
            Some(Ratio {
                target: peer.target.clone(),
                concurrency: peer.concurrency,
                throughput_ours_over_peer: Spread::of(&per_round),
                p99_peer_over_ours: div(peer.total.p99_us, ours.total.p99_us),
            })
        })
        .collect()
}

fn div(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

fn ratio_cell(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "–".into()
    }
}

fn num(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}")
    } else {
        "–".into()
    }
}

fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}ms", v / 1_000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Fairness below this in some round marks a row (and a point of the plot) as starved.
pub(crate) const STARVED: f64 = 0.5;

/// The table of one or more concurrencies, ratios to ours, errors and our pool's state.
pub(crate) fn render(report: &Report) -> String {
    let mut out = String::new();
    let first = report.results.first();
    let _ = writeln!(
        out,
        "\nloadgen: {} {}, {} rows, {:.0}% reads, pool size {}, {:?}, {} rounds{}",
        report.backend,
        report.url,
        report.rows,
        report.read_ratio * 100.0,
        first.map_or(0, |r| r.pool_size),
        first.map_or(Mode::Tasks, |r| r.mode),
        report.rounds,
        if report.coop {
            ""
        } else {
            ", coop off (every task loop unconstrained)"
        },
    );
    let _ = writeln!(
        out,
        "each round runs every pool once, in a new shuffled order, after an untimed warm-up;\n\
         ops/s = median over rounds; ours÷it = ours' ops/s ÷ this pool's in the same round: \
         median (min–max) and mean ± standard error; above 1 favours ours;\n\
         latencies in µs over all rounds; wait = getting a connection, query = using it;\n\
         fair = the least productive task's operations ÷ the mean: median (worst round); \
         `!` marks a worst round below {STARVED} (some tasks starved)\n"
    );
    let _ = writeln!(
        out,
        "{:<17} {:>5} {:>9} {:>19} {:>13} │ {:>6} {:>6} {:>7} │ {:>7} {:>7} {:>7} │ {:>7} {:>8} │ {:>12} {:>6}",
        "target",
        "conc",
        "ops/s",
        "ours÷it (min–max)",
        "mean ± s.e.",
        "wait50",
        "wait99",
        "waitmax",
        "query50",
        "query99",
        "qmax",
        "total99",
        "p99 it÷o",
        "fair (worst)",
        "errors"
    );
    let ratios = ratios(&report.results);
    for r in &report.results {
        let ratio = ratios
            .iter()
            .find(|x| x.target == r.target && x.concurrency == r.concurrency);
        let (tp, mean, p99) = match ratio {
            Some(x) => {
                let t = &x.throughput_ours_over_peer;
                (
                    format!("{} ({}–{})", ratio_cell(t.median), num(t.min), num(t.max)),
                    format!("{} ± {}", num(t.mean), num(t.se)),
                    ratio_cell(x.p99_peer_over_ours),
                )
            }
            None => ("1.00×".into(), String::new(), "1.00×".into()),
        };
        let starved = if r.fairness.min < STARVED { "!" } else { " " };
        let _ = writeln!(
            out,
            "{:<17} {:>5} {:>9.0} {:>19} {:>13} │ {:>6} {:>6} {:>7} │ {:>7} {:>7} {:>7} │ {:>7} {:>8} │ {:>4.2} ({:>4.2}){} {:>6}",
            r.target,
            r.concurrency,
            r.ops_per_sec.median,
            tp,
            mean,
            us(r.wait.p50_us),
            us(r.wait.p99_us),
            us(r.wait.max_us),
            us(r.query.p50_us),
            us(r.query.p99_us),
            us(r.query.max_us),
            us(r.total.p99_us),
            p99,
            r.fairness.median,
            r.fairness.min,
            starved,
            r.error_count(),
        );
    }

    let mut errors: BTreeMap<(&str, String), (u64, &str)> = BTreeMap::new();
    for r in &report.results {
        for (kind, n) in &r.errors {
            let example = r.error_examples.get(kind).map_or("", String::as_str);
            let e = errors
                .entry((r.target.as_str(), kind.to_string()))
                .or_insert((0, example));
            e.0 += n;
        }
    }
    if errors.is_empty() {
        let _ = writeln!(out, "\nerrors by kind: none");
    } else {
        let _ = writeln!(out, "\nerrors by kind:");
        for ((target, kind), (n, example)) in &errors {
            let _ = writeln!(out, "  {target:<18} {kind:<20} {n:>8}  e.g. {example}");
        }
    }

    // Our pool's state after its (last) run.
    if let Some((r, st)) = report
        .results
        .iter()
        .rev()
        .find_map(|r| r.pool.as_ref().map(|p| (r, p)))
    {
        let _ = writeln!(
            out,
            "\nour pool after the run at concurrency {}:",
            r.concurrency
        );
        let status: Vec<String> = st.status.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "  status   {}", status.join(", "));
        let _ = writeln!(
            out,
            "  peaks    in_use {}, waiting {} (sampled every 100 ms)",
            r.peak_in_use.unwrap_or(0),
            r.peak_waiting.unwrap_or(0)
        );
        let counters: Vec<String> = st
            .metrics
            .iter()
            .filter(|(k, _)| !k.starts_with("closed_"))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            out,
            "  metrics  {}, wait_time {:.1} ms",
            counters.join(", "),
            st.wait_time_ms
        );
        let closed: Vec<String> = st
            .metrics
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("closed_").map(|k| format!("{k} {v}")))
            .collect();
        let _ = writeln!(out, "  closed   {}", closed.join(", "));
    }
    if let Some(plot) = &report.plot {
        let _ = writeln!(out, "\nplot: {plot}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn spread_of_rounds() {
        let s = Spread::of(&[1.2, 0.8, 1.0, f64::NAN]);
        assert_eq!((s.median, s.min, s.max), (1.0, 0.8, 1.2));
        assert!((s.mean - 1.0).abs() < 1e-12);
        // Sample standard deviation 0.2, over √3.
        assert!((s.se - 0.2 / 3f64.sqrt()).abs() < 1e-12);
        let even = Spread::of(&[1.0, 2.0]);
        assert_eq!(even.median, 1.5);
        let one = Spread::of(&[3.0]);
        assert_eq!((one.median, one.se), (3.0, 0.0));
        assert!(Spread::of(&[]).median.is_nan());
    }
}
