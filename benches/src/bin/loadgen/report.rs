//! The human table and the JSON document, the same for every backend.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::runner::RunResult;
use crate::target::OURS;

/// Everything `--json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) backend: &'static str,
    pub(crate) url: String,
    pub(crate) rows: i64,
    pub(crate) read_ratio: f64,
    pub(crate) results: Vec<RunResult>,
    /// Per target and concurrency: `ours ÷ target` throughput and `target ÷ ours` p99.
    pub(crate) ratios: Vec<Ratio>,
    pub(crate) plot: Option<String>,
}

/// How one peer compares with ours at one concurrency; above 1 means ours is better.
#[derive(Debug, Serialize)]
pub(crate) struct Ratio {
    pub(crate) target: String,
    pub(crate) concurrency: usize,
    /// Our operations per second divided by the peer's.
    pub(crate) throughput_ours_over_peer: f64,
    /// The peer's p99 (wait + query) divided by ours.
    pub(crate) p99_peer_over_ours: f64,
}

/// Ratios of every peer result to ours at the same concurrency.
pub(crate) fn ratios(results: &[RunResult]) -> Vec<Ratio> {
    results
        .iter()
        .filter(|r| r.target != OURS)
        .filter_map(|peer| {
            let ours = results
                .iter()
                .find(|r| r.target == OURS && r.concurrency == peer.concurrency)?;
            Some(Ratio {
                target: peer.target.clone(),
                concurrency: peer.concurrency,
                throughput_ours_over_peer: div(ours.ops_per_sec, peer.ops_per_sec),
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

fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}ms", v / 1_000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The table of one or more runs, ratios to ours, errors and our pool's state.
pub(crate) fn render(report: &Report) -> String {
    let mut out = String::new();
    let first = report.results.first();
    let _ = writeln!(
        out,
        "\nloadgen: {} {}, {} rows, {:.0}% reads, pool size {}, {:?}",
        report.backend,
        report.url,
        report.rows,
        report.read_ratio * 100.0,
        first.map_or(0, |r| r.pool_size),
        first.map_or(crate::runner::Mode::Tasks, |r| r.mode),
    );
    let _ = writeln!(
        out,
        "latencies in µs; wait = getting a connection, query = using it; ratios > 1 favour ours;\n\
         fair = the least productive task's operations ÷ the mean (near 0: some tasks starved)\n"
    );
    let _ = writeln!(
        out,
        "{:<18} {:>5} {:>10} {:>9} {:>9} │ {:>7} {:>7} {:>7} │ {:>7} {:>7} {:>7} │ {:>7} {:>5} {:>7}",
        "target",
        "conc",
        "ops/s",
        "ours÷it",
        "p99 it÷o",
        "wait50",
        "wait99",
        "waitmax",
        "query50",
        "query99",
        "qmax",
        "total99",
        "fair",
        "errors"
    );
    let ratios = ratios(&report.results);
    for r in &report.results {
        let ratio = ratios
            .iter()
            .find(|x| x.target == r.target && x.concurrency == r.concurrency);
        let (tp, p99) = match ratio {
            Some(x) => (
                ratio_cell(x.throughput_ours_over_peer),
                ratio_cell(x.p99_peer_over_ours),
            ),
            None => ("1.00×".into(), "1.00×".into()),
        };
        let _ = writeln!(
            out,
            "{:<18} {:>5} {:>10.0} {:>9} {:>9} │ {:>7} {:>7} {:>7} │ {:>7} {:>7} {:>7} │ {:>7} {:>5.2} {:>7}",
            r.target,
            r.concurrency,
            r.ops_per_sec,
            tp,
            p99,
            us(r.wait.p50_us),
            us(r.wait.p99_us),
            us(r.wait.max_us),
            us(r.query.p50_us),
            us(r.query.p99_us),
            us(r.query.max_us),
            us(r.total.p99_us),
            r.fairness,
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
