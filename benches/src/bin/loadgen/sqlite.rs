//! SQLite: ours (pool-sqlite) beside deadpool-sqlite and r2d2_sqlite on one database file.
//!
//! Tasks mode: each pool as async code uses it, the statement on tokio's blocking threads. Ours
//! through `SqlitePool::interact` (the request carries its closure: a granted connection goes
//! straight to a blocking thread and back to the pool from there); deadpool-sqlite through
//! `Object::interact` (the connection is returned once the task runs again); r2d2 has no async
//! API, so its whole get + statement runs in `spawn_blocking` (a waiting request holds a
//! blocking thread); the baseline (the 40-line pool) gets a connection on the task and moves
//! its guard into `spawn_blocking`. Threads mode (`--threads`): ours through `get_blocking()`,
//! r2d2 through `get()` and the baseline's `Mutex<Vec>` + `Condvar`, each on the calling OS
//! thread.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use pool_benches::baseline::{Baseline, BlockingBaseline};
use pool_sqlite::InteractError;
use rusqlite::{Connection, ErrorCode};

use crate::runner::{self, Load, RunResult};
use crate::target::{
    build_ours, check_ours, BlockingTarget, ErrorKind, OpError, PoolState, Target, Timing,
    BASELINE, OURS,
};
use crate::BoxError;

const READ: &str = "SELECT val, note FROM pool_loadgen WHERE id = ?1";
const WRITE: &str = "UPDATE pool_loadgen SET val = val + 1 WHERE id = ?1";
/// What pool-sqlite sets on each connection by default (besides its 5 s busy timeout, which is
/// rusqlite's default too), set on the peers' connections as well so all do the same work.
const PRAGMAS: &str = "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

fn ours_manager(path: &Path) -> Result<pool_sqlite::SqliteManager, BoxError> {
    Ok(pool_sqlite::SqliteManager::new(
        path,
        rusqlite::OpenFlags::default(),
    )?)
}

/// The SQLite backend: a database file (ours or created in a temp dir).
pub(crate) struct Sqlite {
    path: PathBuf,
    /// Deleted when loadgen ends.
    _tmp: Option<tempfile::TempDir>,
}

impl Sqlite {
    /// `None`: a fresh file in a new temp dir; else the path after `sqlite://` or `sqlite:`,
    /// relative to `here` (the caller's directory) unless absolute.
    pub(crate) fn new(url: Option<&str>, here: &Path) -> Result<Self, BoxError> {
        match url {
            None => {
                let tmp = tempfile::Builder::new().prefix("loadgen-").tempdir()?;
                Ok(Sqlite {
                    path: tmp.path().join("loadgen.sqlite3"),
                    _tmp: Some(tmp),
                })
            }
            Some(url) => {
                let path = url
                    .strip_prefix("sqlite://")
                    .or_else(|| url.strip_prefix("sqlite:"))
                    .unwrap_or(url);
                if path.is_empty() || path.contains(":memory:") {
                    return Err("a SQLite URL needs a file path (sqlite:///tmp/x.sqlite3): \
                                an in-memory database is private to one connection"
                        .into());
                }
                Ok(Sqlite {
                    path: here.join(path),
                    _tmp: None,
                })
            }
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    /// Ours first, then the peers that can run in this mode.
    pub(crate) fn targets(threads: bool) -> &'static [&'static str] {
        if threads {
            &[OURS, BASELINE, "r2d2_sqlite"]
        } else {
            &[OURS, BASELINE, "deadpool-sqlite", "r2d2_sqlite"]
        }
    }

    /// Creates the table with `rows` rows (if it does not have them), in WAL mode.
    pub(crate) async fn setup(&self, load: &Load) -> Result<(), BoxError> {
        let path = self.path.clone();
        let rows = load.rows;
        tokio::task::spawn_blocking(move || setup(&path, rows))
            .await
            .map_err(|e| format!("setup task failed: {e}"))?
            .map_err(|e| format!("cannot prepare SQLite database: {e}").into())
    }

    pub(crate) async fn measure(&self, target: &str, load: &Load) -> Result<RunResult, BoxError> {
        let path = self.path.as_path();
        match (target, load.mode) {
            (OURS, runner::Mode::Tasks) => {
                let pool = build_ours(ours_manager(path)?, load)?;
                check_ours(&pool, load).await?;
                let res = runner::run_tasks(target, load, OursAsync(pool.clone())).await;
                pool.close();
                Ok(res)
            }
            (OURS, runner::Mode::Threads) => {
                let pool = build_ours(ours_manager(path)?, load)?;
                check_ours(&pool, load).await?;
                let res = tokio::task::block_in_place(|| {
                    runner::run_threads(target, load, OursBlocking(pool.clone()))
                });
                pool.close();
                Ok(res)
            }
            (BASELINE, mode) => {
                let size = load.pool_size;
                let path = path.to_owned();
                let conns = tokio::task::spawn_blocking(move || {
                    (0..size)
                        .map(|_| {
                            let c = Connection::open(&path)?;
                            c.execute_batch(PRAGMAS)?;
                            Ok(c)
                        })
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .await??;
                Ok(if mode == runner::Mode::Tasks {
                    runner::run_tasks(target, load, BaselineAsync(Baseline::new(conns))).await
                } else {
                    let pool = BaselineBlocking(BlockingBaseline::new(conns));
                    tokio::task::block_in_place(|| runner::run_threads(target, load, pool))
                })
            }
            ("deadpool-sqlite", runner::Mode::Tasks) => {
                let pool = deadpool_sqlite::Config::new(path)
                    .builder(deadpool_sqlite::Runtime::Tokio1)?
                    .max_size(load.pool_size)
                    .post_create(deadpool_sqlite::Hook::async_fn(|conn, _| {
                        Box::pin(async move {
                            conn.interact(|c| c.execute_batch(PRAGMAS))
                                .await
                                .map_err(|e| deadpool_sqlite::HookError::message(e.to_string()))?
                                .map_err(deadpool_sqlite::HookError::Backend)
                        })
                    }))
                    .build()?;
                Ok(runner::run_tasks(target, load, Deadpool(pool)).await)
            }
            ("r2d2_sqlite", mode) => {
                let manager = r2d2_sqlite::SqliteConnectionManager::file(path)
                    .with_init(|c| c.execute_batch(PRAGMAS));
                let size = u32::try_from(load.pool_size)?;
                let timeout = load.op_timeout;
                let pool = tokio::task::block_in_place(|| {
                    r2d2::Pool::builder()
                        .max_size(size)
                        .connection_timeout(timeout)
                        // Like ours and deadpool: no per-checkout probe.
                        .test_on_check_out(false)
                        .build(manager)
                })?;
                Ok(if mode == runner::Mode::Tasks {
                    runner::run_tasks(target, load, R2d2(pool)).await
                } else {
                    tokio::task::block_in_place(|| runner::run_threads(target, load, R2d2(pool)))
                })
            }
            _ => Err(format!("{target} cannot run in {:?} mode", load.mode).into()),
        }
    }
}

fn setup(path: &Path, rows: i64) -> rusqlite::Result<()> {
    let mut c = Connection::open(path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS pool_loadgen (
             id INTEGER PRIMARY KEY, val INTEGER NOT NULL, note TEXT NOT NULL)",
    )?;
    let have: i64 = c.query_row("SELECT count(*) FROM pool_loadgen", [], |r| r.get(0))?;
    if have != rows {
        let tx = c.transaction()?;
        tx.execute("DELETE FROM pool_loadgen", [])?;
        {
            let mut ins =
                tx.prepare("INSERT INTO pool_loadgen (id, val, note) VALUES (?1, 0, ?2)")?;
            for id in 1..=rows {
                ins.execute(rusqlite::params![id, format!("row {id}")])?;
            }
        }
        tx.commit()?;
    }
    Ok(())
}

/// One point read or one small write, with a per-connection statement cache.
fn op(c: &Connection, read: bool, key: i64) -> rusqlite::Result<()> {
    if read {
        let mut st = c.prepare_cached(READ)?;
        let row: (i64, String) = st.query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))?;
        black_box(row);
    } else {
        black_box(c.prepare_cached(WRITE)?.execute([key])?);
    }
    Ok(())
}

fn query_error(e: &rusqlite::Error) -> OpError {
    let kind = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ErrorKind::Busy,
        _ => ErrorKind::Query,
    };
    OpError::new(kind, e)
}

fn timed(start: Instant, got: Instant, res: rusqlite::Result<()>) -> Result<Timing, OpError> {
    res.map_err(|e| query_error(&e))?;
    Ok(Timing {
        wait: got - start,
        query: got.elapsed(),
    })
}

struct OursAsync(pool_sqlite::Pool);

impl Target for OursAsync {
    async fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        let start = Instant::now();
        // Timed on the blocking thread, as r2d2's: waiting ends when the closure starts.
        let r = self
            .0
            .interact(move |c| Ok(timed(start, Instant::now(), op(c, read, key))))
            .await;
        match r {
            Ok(timing) => timing,
            Err(InteractError::Pool(e)) => Err(OpError::from_pool(&e)),
            Err(e) => Err(OpError::new(ErrorKind::Other, &e)),
        }
    }

    fn pool_state(&self) -> Option<PoolState> {
        Some(PoolState::of(&self.0))
    }
}

struct OursBlocking(pool_sqlite::Pool);

impl BlockingTarget for OursBlocking {
    fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        let start = Instant::now();
        let conn = self.0.get_blocking().map_err(|e| OpError::from_pool(&e))?;
        let got = Instant::now();
        let res = op(&conn.lock(), read, key);
        timed(start, got, res)
    }

    fn pool_state(&self) -> Option<PoolState> {
        Some(PoolState::of(&self.0))
    }
}

struct Deadpool(deadpool_sqlite::Pool);

impl Target for Deadpool {
    async fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        let start = Instant::now();
        let conn = self.0.get().await.map_err(|e| {
            let kind = match &e {
                deadpool_sqlite::PoolError::Timeout(_) => ErrorKind::PoolTimeout,
                deadpool_sqlite::PoolError::Backend(_) => ErrorKind::Connect,
                deadpool_sqlite::PoolError::Closed => ErrorKind::PoolClosed,
                _ => ErrorKind::Other,
            };
            OpError::new(kind, &e)
        })?;
        let got = Instant::now();
        let res = conn
            .interact(move |c| op(c, read, key))
            .await
            .map_err(|e| OpError::msg(ErrorKind::Other, e.to_string()))?;
        timed(start, got, res)
    }
}

#[derive(Clone)]
struct R2d2(r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>);

impl R2d2 {
    fn run(&self, start: Instant, read: bool, key: i64) -> Result<Timing, OpError> {
        let conn = self
            .0
            .get()
            .map_err(|e| OpError::new(ErrorKind::PoolTimeout, &e))?;
        let got = Instant::now();
        let res = op(&conn, read, key);
        timed(start, got, res)
    }
}

impl Target for R2d2 {
    async fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        let start = Instant::now();
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.run(start, read, key))
            .await
            .map_err(|e| OpError::new(ErrorKind::Other, &e))?
    }
}

impl BlockingTarget for R2d2 {
    fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        self.run(Instant::now(), read, key)
    }
}

struct BaselineAsync(Baseline<Connection>);

impl Target for BaselineAsync {
    async fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        let start = Instant::now();
        let conn = self.0.get().await;
        // Timed on the blocking thread, as ours and r2d2's.
        tokio::task::spawn_blocking(move || timed(start, Instant::now(), op(&conn, read, key)))
            .await
            .map_err(|e| OpError::new(ErrorKind::Other, &e))?
    }
}

struct BaselineBlocking(BlockingBaseline<Connection>);

impl BlockingTarget for BaselineBlocking {
    fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        let start = Instant::now();
        let conn = self.0.get();
        let got = Instant::now();
        let res = op(&conn, read, key);
        timed(start, got, res)
    }
}
