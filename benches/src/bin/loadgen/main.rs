//! `loadgen`: a short, realistic load through our pool, then through its peers, side by side.
//!
//! With no arguments it creates a SQLite database of 10 000 rows in a temp dir, runs 90 %
//! point reads and 10 % small writes from 32 tasks through a pool of 8 for 6 s, then the same
//! load through deadpool-sqlite and r2d2_sqlite for 3 s each, and prints ops/s, wait and query
//! percentiles, errors by kind, our pool's status and counters, and each peer's ratio to ours.
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

use crate::report::Report;
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

    /// Measured seconds for our pool; each peer gets half. Default 6, or 2 per point with --sweep.
    #[arg(short, long, value_parser = parse_secs)]
    duration: Option<f64>,

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

    /// Where --sweep writes its plot. Default: `loadgen-<backend>-sweep.svg` in the current directory.
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
            eprintln!("loadgen: error: {e}");
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
    let duration = cli.duration.unwrap_or(if cli.sweep { 2.0 } else { 6.0 });
    let mut load = Load {
        mode,
        concurrency: cli.concurrency as usize,
        pool_size: cli.pool_size as usize,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64((duration * 0.1).min(0.5)),
        read_ratio: cli.read_ratio,
        rows: i64::from(cli.rows),
        op_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs_f64(cli.connect_timeout),
        progress: true,
    };

    let url = cli.url.as_deref().map(str::trim);
    let backend = match url {
        None => Backend::Sqlite(sqlite::Sqlite::new(None)?),
        Some(u) if u.starts_with("sqlite:") => Backend::Sqlite(sqlite::Sqlite::new(Some(u))?),
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

    let mut results = Vec::new();
    for &concurrency in &concurrencies {
        for (i, &target) in targets.iter().enumerate() {
            load.concurrency = concurrency;
            load.duration = Duration::from_secs_f64(if i == 0 { duration } else { duration / 2.0 });
            load.warmup = Duration::from_secs_f64((load.duration.as_secs_f64() * 0.1).min(0.5));
            let res = backend
                .measure(target, &load)
                .await
                .map_err(|e| format!("{target} on {} ({shown_url}): {e}", backend.name()))?;
            eprintln!(
                "{target:>18} ×{concurrency:<4} {:>10.0} ops/s  p99 {:.0} µs  {} errors",
                res.ops_per_sec,
                res.total.p99_us,
                res.error_count()
            );
            results.push(res);
        }
    }

    let plot = if cli.sweep {
        let path = cli
            .plot
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("loadgen-{}-sweep.svg", backend.name())));
        let title = format!(
            "{} — pool of {}, {:.0}% reads, {:?}",
            backend.name(),
            load.pool_size,
            load.read_ratio * 100.0,
            mode
        );
        plot::write_svg(&path, &title, &results)
            .map_err(|e| format!("cannot write the plot {}: {e}", path.display()))?;
        Some(path.display().to_string())
    } else {
        None
    };

    let report = Report {
        backend: backend.name(),
        url: shown_url,
        rows: load.rows,
        read_ratio: load.read_ratio,
        ratios: report::ratios(&results),
        results,
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
