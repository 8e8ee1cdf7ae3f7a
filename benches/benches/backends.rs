//! Real servers: the same tiny statement through our backends, the peers' pools, and
//! dedicated connections without any pool (the ceiling).
//!
//! - `postgres/tasksN/<x>`: `SELECT 1`, prepared once per connection, at 8 and 64 tasks on 8
//!   connections: ours (pool-postgres, default `ResetMode::Auto` and `ours_noreset`),
//!   deadpool-postgres, bb8-postgres (statement prepared at connect) and `dedicated`: 8
//!   tokio-postgres clients, task `i` always using client `i % 8` behind a mutex (exclusive
//!   use, as from a pool, but without one).
//! - `postgres_tls/tasksN/<x>`: the same statement over TLS: ours over TLS, ours over
//!   plaintext, dedicated TLS connections (the server's certificate is not verified: loopback
//!   measurement only).
//! - `mysql/tasksN/<x>`: the same with mysql_async: ours (pool-mysql, default
//!   `ResetMode::Session` and `ours_noreset`), mysql_async's own `Pool` with reset on return off
//!   (`mysql_async`, like `ours_noreset`) and on (`mysql_async_reset`, its default) and
//!   dedicated `Conn`s.
//! - `sqlite/tasks8/<x>` and `sqlite/threads4/<x>`: a point read on a 10 000-row table: ours
//!   (`get` + `interact`, the one-call `SqlitePool::interact`, `get_blocking` + `lock`),
//!   deadpool-sqlite, r2d2_sqlite, and (tasks only) `dedicated`: one connection per task, no
//!   pool, each read on `spawn_blocking` (the ceiling from async code that does not block the
//!   runtime), and `dedicated_inline`, the same connections read inline on the runtime's
//!   workers (blocking them: not a contender, the cost of the read itself, for scale).
//!
//! After the criterion groups, each group also prints an *interleaved* report: the
//! contenders run in turn, round after round, and each is given as a ratio to ours within the
//! same round (criterion runs them minutes apart, and on a shared machine the drift between
//! those minutes is larger than the differences between pools). `POOL_BENCH_ROUNDS` sets the
//! number of rounds (default 9, 0 turns the report off).
//!
//! `POOL_BENCH_COOP=off` runs every task's loop under `tokio::task::coop::unconstrained` (a
//! control: a lead that comes from not yielding to tokio's cooperative budget shows up as a
//! change between the two).
//!
//! Servers come from `POOL_BENCH_PG_URL` / `POOL_BENCH_MYSQL_URL` (or the `POOL_TEST_*`
//! variables, or the machine's defaults). An unreachable server skips its group with a notice.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use mysql_async::prelude::Queryable;
use pool_benches::env;
use tokio::runtime::Runtime;
use tokio::sync::Mutex;
use tokio_postgres::NoTls;

const CONNS: usize = 8;
const TASKS: [usize; 2] = [8, 64];
const ROWS: i64 = 10_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn share(iters: u64, n: usize, i: usize) -> u64 {
    let n = n as u64;
    iters / n + u64::from((i as u64) < iters % n)
}

/// False under the `POOL_BENCH_COOP=off` control.
fn coop() -> bool {
    static COOP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *COOP.get_or_init(|| !pool_benches::coop_off_from_env())
}

/// Spawns `tasks` tasks; task `i` runs `work(i, its share of iters)`; times them all.
async fn spread<F, Fut>(tasks: usize, iters: u64, work: F) -> Duration
where
    F: Fn(usize, u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            tokio::spawn(pool_benches::with_coop(
                coop(),
                work(i, share(iters, tasks, i)),
            ))
        })
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
    start.elapsed()
}

/// One contender of a live-server group: `run(tasks, iters)` spreads `iters` operations over
/// `tasks` tasks and times them.
struct Variant {
    name: &'static str,
    run: Box<dyn Fn(usize, u64) -> Timed>,
}

/// A timed run of a [`Variant`].
type Timed = Pin<Box<dyn Future<Output = Duration> + Send>>;

fn variant<F, Fut>(name: &'static str, run: F) -> Variant
where
    F: Fn(usize, u64) -> Fut + 'static,
    Fut: Future<Output = Duration> + Send + 'static,
{
    Variant {
        name,
        run: Box::new(move |tasks, iters| Box::pin(run(tasks, iters))),
    }
}

/// A [`Variant`] whose tasks each hold a clone of `$pool` and run `$op` (which names that clone
/// `$p`) once per operation.
macro_rules! pooled {
    ($name:expr, $pool:expr, |$p:ident| $op:expr) => {{
        let pool = $pool.clone();
        variant($name, move |tasks, iters| {
            let pool = pool.clone();
            spread(tasks, iters, move |_, n| {
                let $p = pool.clone();
                async move {
                    for _ in 0..n {
                        $op;
                    }
                }
            })
        })
    }};
}

/// The criterion group `{group}/{unit}{tasks}` (`unit`: tasks or threads), one benchmark per
/// variant.
fn criterion_group_of(
    c: &mut Criterion,
    rt: &Runtime,
    group: &str,
    unit: &str,
    tasks: usize,
    variants: &[Variant],
) {
    let mut g = c.benchmark_group(format!("{group}/{unit}{tasks}"));
    g.throughput(Throughput::Elements(1));
    for v in variants {
        g.bench_function(v.name, |b| {
            b.to_async(rt).iter_custom(|iters| (v.run)(tasks, iters));
        });
    }
    g.finish();
}

/// The criterion groups of `group`, one per (unit, count, variants), then their interleaved
/// reports.
fn bench_group(c: &mut Criterion, rt: &Runtime, group: &str, runs: &[(&str, usize, &[Variant])]) {
    for &(unit, n, variants) in runs {
        criterion_group_of(c, rt, group, unit, n, variants);
    }
    for &(unit, n, variants) in runs {
        interleaved(rt, group, unit, n, variants);
    }
}

/// How many rounds the interleaved report of `group` runs: `POOL_BENCH_ROUNDS` (default 9);
/// none under `--test`/`--list`, or when a criterion filter (the first positional argument)
/// names another group.
fn interleaved_rounds(group: &str) -> usize {
    const WITH_VALUE: &[&str] = &[
        "--measurement-time",
        "--warm-up-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--output-format",
        "--color",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--plotting-backend",
        "--format",
        "--logfile",
    ];
    let mut args = std::env::args().skip(1);
    let mut filter = None;
    while let Some(a) = args.next() {
        if a == "--test" || a == "--list" {
            return 0;
        }
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') && filter.is_none() {
            filter = Some(a);
        }
    }
    if filter.is_some_and(|f| !group.contains(&f) && !f.contains(group)) {
        return 0;
    }
    std::env::var("POOL_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9)
}

/// Runs the variants in turn, round after round, and prints each one's median time per
/// operation and `ours ÷ this`: ours' throughput divided by this contender's, taken within each
/// round (the median, the mean with its standard error, min and max over rounds; above 1 means
/// ours was faster). Criterion measures one contender after the other, minutes apart; on a
/// shared machine that drift is larger than the differences between pools, while the
/// contenders of one round here ran seconds apart, each round in a new order and each contender
/// after an untimed tenth of its run. The first round only warms up and sizes the rounds (about
/// 0.8 s per contender each).
fn interleaved(rt: &Runtime, group: &str, unit: &str, tasks: usize, variants: &[Variant]) {
    let rounds = interleaved_rounds(group);
    if rounds == 0 || variants.is_empty() {
        return;
    }
    let per_op = |d: Duration, n: u64| d.as_secs_f64() / n as f64;
    let mut ops = Vec::with_capacity(variants.len());
    for v in variants {
        let probe = 400;
        let took = rt.block_on((v.run)(tasks, probe));
        let n = (0.8 / per_op(took, probe)).clamp(200.0, 500_000.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        ops.push(n as u64);
    }
    let mut times = vec![Vec::with_capacity(rounds); variants.len()];
    // A fixed seed: the same orders every run.
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut order: Vec<usize> = (0..variants.len()).collect();
    for _ in 0..rounds {
        // Each round runs the contenders in a new random order, so that none always runs first
        // or right after the same neighbour (whose server processes, just busy, then idle, can
        // slow the next one's start). Each first runs a tenth of its operations untimed.
        rng.shuffle(&mut order);
        for &i in &order {
            rt.block_on((variants[i].run)(tasks, (ops[i] / 10).max(1)));
            times[i].push(per_op(
                rt.block_on((variants[i].run)(tasks, ops[i])),
                ops[i],
            ));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    println!(
        "\n{group}/{unit}{tasks}, interleaved: {rounds} rounds, {CONNS} connections{}",
        if unit == "tasks" { ", 2 workers" } else { "" }
    );
    println!(
        "{:<20} {:>12} {:>12} {:>15} {:>16}",
        "contender", "µs/op (med)", "ours ÷ this", "mean ± s.e.", "(min … max)"
    );
    for (v, t) in variants.iter().zip(&times) {
        let ratios: Vec<f64> = t.iter().zip(&times[0]).map(|(x, o)| x / o).collect();
        let (mean, se) = mean_se(&ratios);
        let (m, _, _) = median(t.clone());
        let (r, lo, hi) = median(ratios);
        println!(
            "{:<20} {:>12.2} {:>12.3} {:>8.3} ± {:.3} {:>7.3} … {:.3}",
            v.name,
            m * 1e6,
            r,
            mean,
            se,
            lo,
            hi
        );
    }
}

/// The mean of `xs` and its standard error (the sample standard deviation over √n; 0 for a
/// single value): with rounds as noisy as a shared machine makes them, a ratio within about two
/// standard errors of a target does not tell either way.
#[allow(clippy::cast_precision_loss)]
fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

fn skip(group: &str, url: &str, why: &dyn std::fmt::Display) {
    println!(
        "\nnotice: skipping the {group} benches: cannot use {} ({why})\n",
        env::redact(url)
    );
}

// ---------------------------------------------------------------- PostgreSQL

/// bb8-postgres's manager, plus `SELECT 1` prepared once per connection.
struct Bb8Prepared(bb8_postgres::PostgresConnectionManager<NoTls>);

impl bb8::ManageConnection for Bb8Prepared {
    type Connection = (tokio_postgres::Client, tokio_postgres::Statement);
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let client = self.0.connect().await?;
        let stmt = client.prepare("SELECT 1").await?;
        Ok((client, stmt))
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        self.0.is_valid(&mut conn.0).await
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        self.0.has_broken(&mut conn.0)
    }
}

async fn pg_dedicated(
    config: &tokio_postgres::Config,
) -> Result<
    Vec<Arc<Mutex<(tokio_postgres::Client, tokio_postgres::Statement)>>>,
    tokio_postgres::Error,
> {
    let mut out = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        let (client, conn) = config.connect(NoTls).await?;
        tokio::spawn(conn);
        let stmt = client.prepare("SELECT 1").await?;
        out.push(Arc::new(Mutex::new((client, stmt))));
    }
    Ok(out)
}

fn bench_postgres(c: &mut Criterion) {
    let url = env::pg_url();
    let rt = runtime();
    let mut config = match tokio_postgres::Config::from_str(&url) {
        Ok(c) => c,
        Err(e) => return skip("postgres", &url, &e),
    };
    config.connect_timeout(env::CONNECT_TIMEOUT);
    let dedicated = match rt.block_on(async {
        tokio::time::timeout(env::CONNECT_TIMEOUT * 2, pg_dedicated(&config)).await
    }) {
        Ok(Ok(d)) => Arc::new(d),
        Ok(Err(e)) => return skip("postgres", &url, &e),
        Err(_) => return skip("postgres", &url, &"timed out"),
    };

    let ours_pool = |reset: pool_postgres::ResetMode| {
        pool_postgres::Pool::builder(pool_postgres::Manager::new(config.clone()).reset_mode(reset))
            .max_size(CONNS)
            .build()
            .expect("pool config")
    };
    let ours = ours_pool(pool_postgres::ResetMode::default());
    let ours_noreset = ours_pool(pool_postgres::ResetMode::Off);
    let dead =
        deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(config.clone(), NoTls))
            .max_size(CONNS)
            .build()
            .expect("pool config");
    let bb8 = rt
        .block_on(
            bb8::Pool::builder()
                .max_size(u32::try_from(CONNS).expect("small"))
                .test_on_check_out(false)
                .build(Bb8Prepared(bb8_postgres::PostgresConnectionManager::new(
                    config.clone(),
                    NoTls,
                ))),
        )
        .expect("bb8 pool");

    macro_rules! cached_select {
        ($name:expr, $pool:expr) => {
            pooled!($name, $pool, |pool| {
                let client = pool.get().await.expect("get");
                let stmt = client.prepare_cached("SELECT 1").await.expect("prepare");
                let row = client.query_one(&stmt, &[]).await.expect("query");
                black_box(row.get::<_, i32>(0));
            })
        };
    }
    let variants = [
        cached_select!("ours", ours),
        cached_select!("ours_noreset", ours_noreset),
        cached_select!("deadpool-postgres", dead),
        pooled!("bb8-postgres", bb8, |pool| {
            let conn = pool.get().await.expect("get");
            let row = conn.0.query_one(&conn.1, &[]).await.expect("query");
            black_box(row.get::<_, i32>(0));
        }),
        variant("dedicated", move |tasks, iters| {
            let dedicated = Arc::clone(&dedicated);
            spread(tasks, iters, move |i, n| {
                let conn = Arc::clone(&dedicated[i % CONNS]);
                async move {
                    for _ in 0..n {
                        let conn = conn.lock().await;
                        let row = conn.0.query_one(&conn.1, &[]).await.expect("query");
                        black_box(row.get::<_, i32>(0));
                    }
                }
            })
        }),
    ];
    let runs = TASKS.map(|tasks| ("tasks", tasks, &variants[..]));
    bench_group(c, &rt, "postgres", &runs);
    println!("postgres: our pool after the runs: {:?}", ours.metrics());
}

// ---------------------------------------------------------------- PostgreSQL over TLS

/// Accepts any server certificate: the TLS group measures the cost of TLS on loopback against
/// the machine's server (Debian's default `ssl = on` with its snake-oil certificate), it is no
/// client to copy.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn loopback_tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// `postgres_tls/tasksN/<x>`: the `postgres` group's statement over TLS (`sslmode=require`):
/// ours over TLS (the session followed above TLS, so a clean connection costs no round trip),
/// ours over plaintext, and dedicated TLS connections. Skipped when the server has no TLS.
fn bench_postgres_tls(c: &mut Criterion) {
    let url = env::pg_url();
    let rt = runtime();
    let mut plain = match tokio_postgres::Config::from_str(&url) {
        Ok(c) => c,
        Err(e) => return skip("postgres_tls", &url, &e),
    };
    plain.connect_timeout(env::CONNECT_TIMEOUT);
    let mut tls = plain.clone();
    tls.ssl_mode(tokio_postgres::config::SslMode::Require);
    let dedicated = match rt.block_on(async {
        let mut out = Vec::with_capacity(CONNS);
        for _ in 0..CONNS {
            let (client, conn) = tls.connect(loopback_tls()).await?;
            tokio::spawn(conn);
            let stmt = client.prepare("SELECT 1").await?;
            out.push(Arc::new(Mutex::new((client, stmt))));
        }
        Ok::<_, tokio_postgres::Error>(out)
    }) {
        Ok(d) => Arc::new(d),
        Err(e) => return skip("postgres_tls", &url, &e),
    };
    let ours_tls = pool_postgres::Pool::builder(pool_postgres::Manager::with_tls(
        tls.clone(),
        loopback_tls(),
    ))
    .max_size(CONNS)
    .build()
    .expect("pool config");
    let ours_plain = pool_postgres::Pool::builder(pool_postgres::Manager::new(plain.clone()))
        .max_size(CONNS)
        .build()
        .expect("pool config");
    macro_rules! cached_select {
        ($name:expr, $pool:expr) => {
            pooled!($name, $pool, |pool| {
                let client = pool.get().await.expect("get");
                let stmt = client.prepare_cached("SELECT 1").await.expect("prepare");
                let row = client.query_one(&stmt, &[]).await.expect("query");
                black_box(row.get::<_, i32>(0));
            })
        };
    }
    let variants = [
        cached_select!("ours_tls", ours_tls),
        cached_select!("ours_plaintext", ours_plain),
        variant("dedicated_tls", move |tasks, iters| {
            let dedicated = Arc::clone(&dedicated);
            spread(tasks, iters, move |i, n| {
                let conn = Arc::clone(&dedicated[i % CONNS]);
                async move {
                    for _ in 0..n {
                        let conn = conn.lock().await;
                        let row = conn.0.query_one(&conn.1, &[]).await.expect("query");
                        black_box(row.get::<_, i32>(0));
                    }
                }
            })
        }),
    ];
    let runs = TASKS.map(|tasks| ("tasks", tasks, &variants[..]));
    bench_group(c, &rt, "postgres_tls", &runs);
    println!(
        "postgres_tls: our TLS pool after the runs: {:?} (resets: {})",
        ours_tls.metrics(),
        ours_tls.manager().resets()
    );
}

// ---------------------------------------------------------------- MariaDB / MySQL

async fn select_one<Q: Queryable>(q: &mut Q) {
    let v: Option<i64> = q.exec_first("SELECT 1", ()).await.expect("query");
    black_box(v);
}

/// mysql_async's own pool of at most [`CONNS`], statement cache kept across uses.
///
/// `inactive_connection_ttl` must be non-zero: with its default of 0, mysql_async keeps no more
/// than the constraints' *minimum* idle and closes every other connection returned to it, so a
/// `(0, 8)` pool opens a new server connection for every `get_conn` (measured: 32 000 server
/// connections for 16 000 gets).
fn mysql_async_pool(opts: &mysql_async::Opts, reset: bool) -> mysql_async::Pool {
    mysql_async::Pool::new(
        mysql_async::OptsBuilder::from_opts(opts.clone()).pool_opts(
            mysql_async::PoolOpts::default()
                .with_constraints(mysql_async::PoolConstraints::new(0, CONNS).expect("valid"))
                .with_inactive_connection_ttl(Duration::from_secs(600))
                .with_reset_connection(reset),
        ),
    )
}

fn bench_mysql(c: &mut Criterion) {
    let url = env::mysql_url();
    let rt = runtime();
    let opts = match mysql_async::Opts::from_url(&url) {
        Ok(o) => o,
        Err(e) => return skip("mysql", &url, &e),
    };
    let dedicated = match rt.block_on(async {
        tokio::time::timeout(env::CONNECT_TIMEOUT * 2, async {
            let mut out = Vec::with_capacity(CONNS);
            for _ in 0..CONNS {
                let mut conn = mysql_async::Conn::new(opts.clone()).await?;
                conn.prep("SELECT 1").await?;
                out.push(Arc::new(Mutex::new(conn)));
            }
            Ok::<_, mysql_async::Error>(out)
        })
        .await
    }) {
        Ok(Ok(d)) => Arc::new(d),
        Ok(Err(e)) => return skip("mysql", &url, &e),
        Err(_) => return skip("mysql", &url, &"timed out"),
    };
    let ours_pool = |reset: pool_mysql::ResetMode| {
        pool_mysql::Pool::builder(pool_mysql::Manager::new(opts.clone()).reset_mode(reset))
            .max_size(CONNS)
            .build()
            .expect("pool config")
    };
    let ours = ours_pool(pool_mysql::ResetMode::default());
    let ours_noreset = ours_pool(pool_mysql::ResetMode::Off);
    let peer = mysql_async_pool(&opts, false);
    let peer_reset = mysql_async_pool(&opts, true);

    let variants = [
        pooled!("ours", ours, |pool| {
            let mut conn = pool.get().await.expect("get");
            select_one(&mut *conn).await;
        }),
        pooled!("ours_noreset", ours_noreset, |pool| {
            let mut conn = pool.get().await.expect("get");
            select_one(&mut *conn).await;
        }),
        pooled!("mysql_async", peer, |pool| {
            select_one(&mut pool.get_conn().await.expect("get")).await;
        }),
        pooled!("mysql_async_reset", peer_reset, |pool| {
            select_one(&mut pool.get_conn().await.expect("get")).await;
        }),
        variant("dedicated", move |tasks, iters| {
            let dedicated = Arc::clone(&dedicated);
            spread(tasks, iters, move |i, n| {
                let conn = Arc::clone(&dedicated[i % CONNS]);
                async move {
                    for _ in 0..n {
                        select_one(&mut *conn.lock().await).await;
                    }
                }
            })
        }),
    ];
    let runs = TASKS.map(|tasks| ("tasks", tasks, &variants[..]));
    bench_group(c, &rt, "mysql", &runs);
    println!("mysql: our pool after the runs: {:?}", ours.metrics());
    drop(variants);
    rt.block_on(async {
        let _ = peer.disconnect().await;
        let _ = peer_reset.disconnect().await;
    });
}

// ---------------------------------------------------------------- SQLite

const READ: &str = "SELECT val, note FROM bench_kv WHERE id = ?1";
const PRAGMAS: &str = "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

fn read(c: &rusqlite::Connection, key: i64) {
    let mut st = c.prepare_cached(READ).expect("prepare");
    let row: (i64, String) = st
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("row");
    black_box(row);
}

fn sqlite_setup(path: &std::path::Path) -> rusqlite::Result<()> {
    let mut c = rusqlite::Connection::open(path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.execute_batch(
        "CREATE TABLE bench_kv (id INTEGER PRIMARY KEY, val INTEGER NOT NULL, note TEXT NOT NULL)",
    )?;
    let tx = c.transaction()?;
    {
        let mut ins = tx.prepare("INSERT INTO bench_kv VALUES (?1, 0, ?2)")?;
        for id in 1..=ROWS {
            ins.execute(rusqlite::params![id, format!("row {id}")])?;
        }
    }
    tx.commit()
}

fn bench_sqlite(c: &mut Criterion) {
    let rt = runtime();
    // deadpool-sqlite closes connections with `spawn_blocking` when its pool is dropped.
    let _enter = rt.enter();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.sqlite3");
    if let Err(e) = sqlite_setup(&path) {
        return skip("sqlite", &path.display().to_string(), &e);
    }
    let manager = pool_sqlite::SqliteManager::new(&path, rusqlite::OpenFlags::default())
        .expect("sqlite manager");
    let ours = pool_sqlite::Pool::builder(manager)
        .max_size(CONNS)
        .build()
        .expect("pool config");
    let dead = deadpool_sqlite::Config::new(&path)
        .builder(deadpool_sqlite::Runtime::Tokio1)
        .expect("config")
        .max_size(CONNS)
        .post_create(deadpool_sqlite::Hook::async_fn(|conn, _| {
            Box::pin(async move {
                conn.interact(|c| c.execute_batch(PRAGMAS))
                    .await
                    .map_err(|e| deadpool_sqlite::HookError::message(e.to_string()))?
                    .map_err(deadpool_sqlite::HookError::Backend)
            })
        }))
        .build()
        .expect("deadpool-sqlite");
    let r2d2 = r2d2::Pool::builder()
        .max_size(u32::try_from(CONNS).expect("small"))
        .test_on_check_out(false)
        .build(
            r2d2_sqlite::SqliteConnectionManager::file(&path)
                .with_init(|c| c.execute_batch(PRAGMAS)),
        )
        .expect("r2d2 pool");
    let key = |i: u64| i64::try_from(i % ROWS as u64).unwrap_or(0) + 1;
    // The ceiling from async code without blocking the runtime: one connection per task, opened
    // up front, each read on `spawn_blocking` (as every pool here runs it), no pool.
    let tasks = 8;
    let dedicated: Arc<Vec<Arc<std::sync::Mutex<rusqlite::Connection>>>> = Arc::new(
        (0..tasks)
            .map(|_| {
                let c = rusqlite::Connection::open(&path).expect("sqlite connection");
                c.execute_batch(PRAGMAS).expect("pragmas");
                Arc::new(std::sync::Mutex::new(c))
            })
            .collect(),
    );

    let dedicated_inline = Arc::clone(&dedicated);

    // Tasks: each operation a point read through the pool's way of running blocking work.
    let variants = [
        sqlite_tasks("ours", &ours, move |pool, i| async move {
            let conn = pool.get().await.expect("get");
            let k = key(i);
            conn.interact(move |c| read(c, k)).await.expect("interact");
        }),
        sqlite_tasks("ours_pool_interact", &ours, move |pool, i| async move {
            let k = key(i);
            pool.interact(move |c| {
                read(c, k);
                Ok(())
            })
            .await
            .expect("interact");
        }),
        sqlite_tasks("deadpool-sqlite", &dead, move |pool, i| async move {
            let conn = pool.get().await.expect("get");
            let k = key(i);
            conn.interact(move |c| read(c, k)).await.expect("interact");
        }),
        sqlite_tasks("r2d2_sqlite", &r2d2, move |pool, i| async move {
            tokio::task::spawn_blocking(move || read(&pool.get().expect("get"), key(i)))
                .await
                .expect("blocking task");
        }),
        variant("dedicated", move |tasks, iters| {
            let dedicated = Arc::clone(&dedicated);
            spread(tasks, iters, move |t, n| {
                let conn = Arc::clone(&dedicated[t % dedicated.len()]);
                async move {
                    for i in 0..n {
                        let conn = Arc::clone(&conn);
                        tokio::task::spawn_blocking(move || {
                            read(&conn.lock().expect("not poisoned"), key(i));
                        })
                        .await
                        .expect("blocking task");
                    }
                }
            })
        }),
        // Not a contender for async code (it blocks the runtime's workers): the cost of the
        // read itself, for scale.
        variant("dedicated_inline", move |tasks, iters| {
            let dedicated = Arc::clone(&dedicated_inline);
            spread(tasks, iters, move |t, n| {
                let conn = Arc::clone(&dedicated[t % dedicated.len()]);
                async move {
                    for i in 0..n {
                        read(&conn.lock().expect("not poisoned"), key(i));
                    }
                }
            })
        }),
    ];

    // Threads: blocking gets from plain OS threads (the future only starts and joins them).
    let threads = 4;
    let thread_variants = [
        sqlite_threads("ours", &ours, move |pool, i| {
            let conn = pool.get_blocking().expect("get");
            read(&conn.lock(), key(i));
        }),
        sqlite_threads("r2d2_sqlite", &r2d2, move |pool, i| {
            read(&pool.get().expect("get"), key(i));
        }),
    ];

    let runs = [
        ("tasks", tasks, &variants[..]),
        ("threads", threads, &thread_variants[..]),
    ];
    bench_group(c, &rt, "sqlite", &runs);
}

/// A SQLite [`Variant`] on tasks: each task runs `op(its pool clone, i)` for its share of `i`.
fn sqlite_tasks<P, F, Fut>(name: &'static str, pool: &P, op: F) -> Variant
where
    P: Clone + Send + 'static,
    F: Fn(P, u64) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let pool = pool.clone();
    variant(name, move |tasks, iters| {
        let pool = pool.clone();
        spread(tasks, iters, move |_, n| {
            let pool = pool.clone();
            async move {
                for i in 0..n {
                    op(pool.clone(), i).await;
                }
            }
        })
    })
}

/// A SQLite [`Variant`] on OS threads: each thread runs `op(&pool, i)` for its share of `i`.
fn sqlite_threads<P, F>(name: &'static str, pool: &P, op: F) -> Variant
where
    P: Sync + Send + Clone + 'static,
    F: Fn(&P, u64) + Copy + Send + Sync + 'static,
{
    let pool = pool.clone();
    variant(name, move |threads, iters| {
        let pool = pool.clone();
        async move {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..threads {
                    let pool = &pool;
                    s.spawn(move || {
                        for i in 0..share(iters, threads, t) {
                            op(pool, i);
                        }
                    });
                }
            });
            start.elapsed()
        }
    })
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    targets = bench_postgres, bench_postgres_tls, bench_mysql, bench_sqlite
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
