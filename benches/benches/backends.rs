//! Real servers: the same tiny statement through our backends, the peers' pools, and
//! dedicated connections without any pool (the ceiling).
//!
//! - `postgres/tasksN/<x>`: `SELECT 1`, prepared once per connection, at 8 and 64 tasks on 8
//!   connections: ours (pool-postgres, default `ResetMode::Rollback` and `ours_noreset`),
//!   deadpool-postgres, bb8-postgres (statement prepared at connect) and `dedicated`: 8
//!   tokio-postgres clients, task `i` always using client `i % 8` behind a mutex (exclusive
//!   use, as from a pool, but without one).
//! - `mysql/tasksN/<x>`: the same with mysql_async: ours (pool-mysql, `ours_noreset`),
//!   mysql_async's own `Pool` (reset on return off, so its statement cache survives) and
//!   dedicated `Conn`s.
//! - `sqlite/tasks8/<x>` and `sqlite/threads4/<x>`: a point read on a 10 000-row table: ours
//!   (`interact` / `get_blocking` + `lock`), deadpool-sqlite, r2d2_sqlite.
//!
//! Servers come from `POOL_BENCH_PG_URL` / `POOL_BENCH_MYSQL_URL` (or the `POOL_TEST_*`
//! variables, or the machine's defaults). An unreachable server skips its group with a notice.

use std::future::Future;
use std::hint::black_box;
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

/// Spawns `tasks` tasks; task `i` runs `work(i, its share of iters)`; times them all.
async fn spread<F, Fut>(tasks: usize, iters: u64, work: F) -> Duration
where
    F: Fn(usize, u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|i| tokio::spawn(work(i, share(iters, tasks, i))))
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
    start.elapsed()
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
        Ok(Ok(d)) => d,
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

    for tasks in TASKS {
        let mut g = c.benchmark_group(format!("postgres/tasks{tasks}"));
        g.throughput(Throughput::Elements(1));
        for (name, pool) in [("ours", &ours), ("ours_noreset", &ours_noreset)] {
            g.bench_function(name, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    spread(tasks, iters, |_, n| {
                        let pool = pool.clone();
                        async move {
                            for _ in 0..n {
                                let client = pool.get().await.expect("get");
                                let stmt =
                                    client.prepare_cached("SELECT 1").await.expect("prepare");
                                let row = client.query_one(&stmt, &[]).await.expect("query");
                                black_box(row.get::<_, i32>(0));
                            }
                        }
                    })
                })
            });
        }
        g.bench_function("deadpool-postgres", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                spread(tasks, iters, |_, n| {
                    let pool = dead.clone();
                    async move {
                        for _ in 0..n {
                            let client = pool.get().await.expect("get");
                            let stmt = client.prepare_cached("SELECT 1").await.expect("prepare");
                            let row = client.query_one(&stmt, &[]).await.expect("query");
                            black_box(row.get::<_, i32>(0));
                        }
                    }
                })
            })
        });
        g.bench_function("bb8-postgres", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                spread(tasks, iters, |_, n| {
                    let pool = bb8.clone();
                    async move {
                        for _ in 0..n {
                            let conn = pool.get().await.expect("get");
                            let row = conn.0.query_one(&conn.1, &[]).await.expect("query");
                            black_box(row.get::<_, i32>(0));
                        }
                    }
                })
            })
        });
        g.bench_function("dedicated", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                spread(tasks, iters, |i, n| {
                    let conn = Arc::clone(&dedicated[i % CONNS]);
                    async move {
                        for _ in 0..n {
                            let conn = conn.lock().await;
                            let row = conn.0.query_one(&conn.1, &[]).await.expect("query");
                            black_box(row.get::<_, i32>(0));
                        }
                    }
                })
            })
        });
        g.finish();
    }
    println!("postgres: our pool after the runs: {:?}", ours.metrics());
}

// ---------------------------------------------------------------- MariaDB / MySQL

async fn select_one<Q: Queryable>(q: &mut Q) {
    let v: Option<i64> = q.exec_first("SELECT 1", ()).await.expect("query");
    black_box(v);
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
        Ok(Ok(d)) => d,
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
    let peer = mysql_async::Pool::new(
        mysql_async::OptsBuilder::from_opts(opts.clone()).pool_opts(
            mysql_async::PoolOpts::default()
                .with_constraints(mysql_async::PoolConstraints::new(0, CONNS).expect("valid"))
                .with_reset_connection(false),
        ),
    );

    for tasks in TASKS {
        let mut g = c.benchmark_group(format!("mysql/tasks{tasks}"));
        g.throughput(Throughput::Elements(1));
        for (name, pool) in [("ours", &ours), ("ours_noreset", &ours_noreset)] {
            g.bench_function(name, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    spread(tasks, iters, |_, n| {
                        let pool = pool.clone();
                        async move {
                            for _ in 0..n {
                                let mut conn = pool.get().await.expect("get");
                                select_one(conn.conn_mut()).await;
                            }
                        }
                    })
                })
            });
        }
        g.bench_function("mysql_async", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                spread(tasks, iters, |_, n| {
                    let pool = peer.clone();
                    async move {
                        for _ in 0..n {
                            let mut conn = pool.get_conn().await.expect("get");
                            select_one(&mut conn).await;
                        }
                    }
                })
            })
        });
        g.bench_function("dedicated", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                spread(tasks, iters, |i, n| {
                    let conn = Arc::clone(&dedicated[i % CONNS]);
                    async move {
                        for _ in 0..n {
                            select_one(&mut *conn.lock().await).await;
                        }
                    }
                })
            })
        });
        g.finish();
    }
    println!("mysql: our pool after the runs: {:?}", ours.metrics());
    rt.block_on(async {
        let _ = peer.disconnect().await;
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

    let tasks = 8;
    let mut g = c.benchmark_group(format!("sqlite/tasks{tasks}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("ours", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            spread(tasks, iters, |_, n| {
                let pool = ours.clone();
                async move {
                    for i in 0..n {
                        let conn = pool.get().await.expect("get");
                        let k = key(i);
                        conn.interact(move |c| read(c, k)).await.expect("interact");
                    }
                }
            })
        })
    });
    g.bench_function("deadpool-sqlite", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            spread(tasks, iters, |_, n| {
                let pool = dead.clone();
                async move {
                    for i in 0..n {
                        let conn = pool.get().await.expect("get");
                        let k = key(i);
                        conn.interact(move |c| read(c, k)).await.expect("interact");
                    }
                }
            })
        })
    });
    g.bench_function("r2d2_sqlite", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            spread(tasks, iters, |_, n| {
                let pool = r2d2.clone();
                async move {
                    for i in 0..n {
                        let pool = pool.clone();
                        tokio::task::spawn_blocking(move || {
                            read(&pool.get().expect("get"), key(i))
                        })
                        .await
                        .expect("blocking task");
                    }
                }
            })
        })
    });
    g.finish();

    let threads = 4;
    let mut g = c.benchmark_group(format!("sqlite/threads{threads}"));
    g.throughput(Throughput::Elements(1));
    let run_threads = |iters: u64, f: &(dyn Fn(i64) + Sync)| {
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                s.spawn(move || {
                    for i in 0..share(iters, threads, t) {
                        f(key(i));
                    }
                });
            }
        });
        start.elapsed()
    };
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            run_threads(iters, &|k| {
                let conn = ours.get_blocking().expect("get");
                read(&conn.lock(), k);
            })
        })
    });
    g.bench_function("r2d2_sqlite", |b| {
        b.iter_custom(|iters| run_threads(iters, &|k| read(&r2d2.get().expect("get"), k)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    targets = bench_postgres, bench_mysql, bench_sqlite
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
