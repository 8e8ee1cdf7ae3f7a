//! `loadgen`: a short, realistic load through our pool, then through its peers, side by side.
//!
//! With no arguments it creates a SQLite database of 10 000 rows in a temp dir and runs 90 %
//! point reads and 10 % small writes from 32 tasks through a pool of 8: ours, the 40-line
//! baseline pool, deadpool-sqlite and r2d2_sqlite, in 5 rounds of 0.8 s each (each round runs
//! every pool once in a new shuffled order, each run after an untimed warm-up). It prints ops/s,
//! each peer's ratio to ours round by round (median, min–max, mean ± standard error), wait and
//! query percentiles, fairness, errors by kind, and our pool's status and counters.
//!
//! ```text
//! cargo run --release -p pool-benches --bin loadgen
//! cargo run --release -p pool-benches --bin loadgen -- --url postgres://postgres@127.0.0.1/test
//! cargo run --release -p pool-benches --bin loadgen -- --url mysql://root@127.0.0.1/test --sweep
//! ```

mod mysql;
mod plot;
mod postgres;
mod report;
mod runner;
mod sqlite;
mod target;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::report::{Report, Summary};
use crate::runner::{Load, Mode, RunResult};

/// Errors that end loadgen with a message.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Load generator: our pool beside deadpool, bb8, r2d2 and mysql_async on the same work.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
struct Cli {
    /// Database: postgres://…, mysql://… or sqlite://PATH. Default: a new SQLite file in a temp dir.
    #[arg(long)]
    url: Option<String>,

    /// Concurrent tasks (threads with --threads).
    #[arg(short, long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,

    /// Connections per pool.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pool_size: u32,

    /// Measured seconds per pool (and per concurrency with --sweep), split over --rounds rounds.
    /// Default 4, or 1 per point with --sweep.
    #[arg(short, long, value_parser = parse_secs)]
    duration: Option<f64>,

    /// Rounds: each runs every pool once, in a new shuffled order (fixed seed). Default 5, or 3
    /// with --sweep.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    rounds: Option<u32>,

    /// `off`: run every pool's task loop under `tokio::task::coop::unconstrained`, so that no
    /// pool is made to yield by tokio's cooperative budget (a control: a lead that comes from
    /// not yielding shows up as a change between `on` and `off`).
    #[arg(long, value_enum, default_value_t = Coop::On)]
    coop: Coop,

    /// Fraction of operations that are point reads; the rest are one-row updates.
    #[arg(long, default_value_t = 0.9, value_parser = parse_ratio)]
    read_ratio: f64,

    /// Rows in the table `pool_loadgen` (created if needed).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    rows: u32,

    /// OS threads and blocking gets instead of tasks (SQLite only: ours vs r2d2_sqlite).
    #[arg(long)]
    threads: bool,

    /// Run concurrencies 1, 2, 4, … up to --max-concurrency and plot throughput and p99 (SVG).
    #[arg(long)]
    sweep: bool,

    /// Largest concurrency of --sweep.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_concurrency: u32,

    /// Where --sweep writes its plot, relative to the directory loadgen was started from
    /// (`scripts/loadgen.sh` passes its caller's). Default: `loadgen-<backend>-sweep.svg` there.
    #[arg(long)]
    plot: Option<PathBuf>,

    /// Print one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,

    /// Measure our pool only.
    #[arg(long)]
    no_peers: bool,

    /// Seconds to wait for the database before giving up.
    #[arg(long, default_value_t = 5.0, value_parser = parse_secs)]
    connect_timeout: f64,
}

/// `--coop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Coop {
    On,
    Off,
}

/// The directory the user ran the command from: `LOADGEN_CALLER_DIR` (set by
/// `scripts/loadgen.sh`, which changes to the repository), else the current directory.
fn caller_dir() -> PathBuf {
    std::env::var_os("LOADGEN_CALLER_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default()
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err(format!("`{s}` must be a number of seconds in (0, 86400]"))
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` must be between 0 and 1"))
    }
}

/// The database under load.
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(Box<postgres::Postgres>),
    Mysql(mysql::Mysql),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
            Backend::Mysql(_) => "mysql",
        }
    }

    fn targets(&self, mode: Mode) -> &'static [&'static str] {
        match self {
            Backend::Sqlite(_) => sqlite::Sqlite::targets(mode == Mode::Threads),
            Backend::Postgres(_) => postgres::Postgres::targets(),
            Backend::Mysql(_) => mysql::Mysql::targets(),
        }
    }

    async fn setup(&self, load: &Load) -> Result<(), BoxError> {
        match self {
            Backend::Sqlite(b) => b.setup(load).await,
            Backend::Postgres(b) => b.setup(load).await,
            Backend::Mysql(b) => b.setup(load).await,
        }
    }

    async fn measure(&self, target: &str, load: &Load) -> Result<RunResult, BoxError> {
        match self {
            Backend::Sqlite(b) => b.measure(target, load).await,
            Backend::Postgres(b) => b.measure(target, load).await,
            Backend::Mysql(b) => b.measure(target, load).await,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Blocking tasks (SQLite statements) may still hold the runtime; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The URL in the message is already masked; this also masks a password that a
            // driver's own error text might echo.
            eprintln!(
                "loadgen: error: {}",
                pool_benches::env::redact(&e.to_string())
            );
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    let mode = if cli.threads {
        Mode::Threads
    } else {
        Mode::Tasks
    };
    let duration = cli.duration.unwrap_or(if cli.sweep { 1.0 } else { 4.0 });
    let rounds = cli
        .rounds
        .map_or(if cli.sweep { 3 } else { 5 }, |r| r as usize);
    // Display only: rounds are few.
    #[allow(clippy::cast_precision_loss)]
    let per_run = duration / rounds as f64;
    let mut load = Load {
        mode,
        concurrency: cli.concurrency as usize,
        pool_size: cli.pool_size as usize,
        duration: Duration::from_secs_f64(per_run),
        warmup: Duration::from_secs_f64((per_run * 0.1).clamp(0.1, 0.5)),
        read_ratio: cli.read_ratio,
        rows: i64::from(cli.rows),
        op_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs_f64(cli.connect_timeout),
        progress: true,
        coop: cli.coop == Coop::On,
    };
    let here = caller_dir();

    let url = cli.url.as_deref().map(str::trim);
    let backend = match url {
        None => Backend::Sqlite(sqlite::Sqlite::new(None, &here)?),
        Some(u) if u.starts_with("sqlite:") => {
            Backend::Sqlite(sqlite::Sqlite::new(Some(u), &here)?)
        }
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            Backend::Postgres(Box::new(postgres::Postgres::new(u, &load)?))
        }
        Some(u) if u.starts_with("mysql://") || u.starts_with("mariadb://") => {
            let u = u.replacen("mariadb://", "mysql://", 1);
            Backend::Mysql(mysql::Mysql::new(&u)?)
        }
        Some(u) => {
            return Err(format!(
                "unsupported URL `{}`: use postgres://…, mysql://… or sqlite://PATH",
                pool_benches::env::redact(u)
            )
            .into())
        }
    };
    if mode == Mode::Threads && !matches!(backend, Backend::Sqlite(_)) {
        return Err("--threads is for SQLite only (its drivers are blocking)".into());
    }
    let shown_url = match (&backend, url) {
        (Backend::Sqlite(s), _) => s.describe(),
        (_, Some(u)) => pool_benches::env::redact(u),
        (_, None) => String::new(),
    };

    backend.setup(&load).await.map_err(|e| {
        format!(
            "cannot reach or prepare {} ({shown_url}): {e}",
            backend.name()
        )
    })?;

    let targets: Vec<&str> = if cli.no_peers {
        backend.targets(mode)[..1].to_vec()
    } else {
        backend.targets(mode).to_vec()
    };
    let concurrencies: Vec<usize> = if cli.sweep {
        let max = cli.max_concurrency as usize;
        let mut v: Vec<usize> = std::iter::successors(Some(1usize), |c| Some(c * 2))
            .take_while(|&c| c <= max)
            .collect();
        if v.last() != Some(&max) {
            v.push(max);
        }
        v
    } else {
        vec![load.concurrency]
    };

    let mut runs: Vec<RunResult> = Vec::new();
    let mut results = Vec::new();
    // A fixed seed: the same orders every run.
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut order: Vec<usize> = (0..targets.len()).collect();
    for &concurrency in &concurrencies {
        load.concurrency = concurrency;
        let mut by_target: Vec<Vec<RunResult>> = targets.iter().map(|_| Vec::new()).collect();
        for round in 1..=rounds {
            // Each round runs the pools in a new order, so that none always runs first or right
            // after the same neighbour; each run starts with its untimed warm-up.
            rng.shuffle(&mut order);
            for &i in &order {
                let target = targets[i];
                let res = backend
                    .measure(target, &load)
                    .await
                    .map_err(|e| format!("{target} on {} ({shown_url}): {e}", backend.name()))?;
                eprintln!(
                    "round {round}/{rounds} {target:>16} ×{concurrency:<4} {:>10.0} ops/s  p99 {:.0} µs  fair {:.2}  {} errors",
                    res.ops_per_sec,
                    res.total.p99_us,
                    res.fairness,
                    res.error_count()
                );
                by_target[i].push(res);
            }
        }
        for rs in by_target {
            let refs: Vec<&RunResult> = rs.iter().collect();
            results.extend(Summary::merge(&refs));
            runs.extend(rs);
        }
    }

    let plot = if cli.sweep {
        let path = here.join(
            cli.plot
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("loadgen-{}-sweep.svg", backend.name()))),
        );
        let title = format!(
            "{} — pool of {}, {:.0}% reads, {:?}, {rounds} rounds{}",
            backend.name(),
            load.pool_size,
            load.read_ratio * 100.0,
            mode,
            if load.coop { "" } else { ", coop off" }
        );
        plot::write_svg(&path, &title, &results)
            .map_err(|e| format!("cannot write the plot {}: {e}", path.display()))?;
        let full = std::fs::canonicalize(&path).unwrap_or(path);
        eprintln!("loadgen: wrote the plot to {}", full.display());
        Some(full.display().to_string())
    } else {
        None
    };

    let report = Report {
        backend: backend.name(),
        url: shown_url,
        rows: load.rows,
        read_ratio: load.read_ratio,
        rounds,
        coop: load.coop,
        ratios: report::ratios(&results),
        results,
        runs,
        plot,
    };
    let mut stdout = std::io::stdout().lock();
    if cli.json {
        serde_json::to_writer_pretty(&mut stdout, &report)?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", report::render(&report))?;
    }
    Ok(())
}
