//! MariaDB/MySQL: ours (pool-mysql) beside mysql_async's own `Pool`.
//!
//! Both run `exec_first`/`exec_drop`, which prepare each statement once per connection
//! (mysql_async's statement cache). mysql_async's pool resets every returned connection by
//! default (`COM_RESET_CONNECTION`, which also drops its prepared statements); that is
//! switched off here so that both pools do the same work per operation. pool-mysql in turn
//! rolls back every used connection at its next checkout by default, so ours also runs as
//! `ours-noreset` (`ResetMode::Off`). The baseline (the 40-line pool) opens its connections up
//! front and neither checks nor resets them.

use std::hint::black_box;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, PoolConstraints, PoolOpts};
use pool_benches::baseline::Baseline;

use crate::runner::{self, Load, RunResult};
use crate::target::{
    build_ours, chain, check_ours, ErrorKind, OpError, PoolState, Target, Timing, BASELINE, OURS,
    OURS_NO_RESET,
};
use crate::BoxError;

const READ: &str = "SELECT val, note FROM pool_loadgen WHERE id = ?";
const WRITE: &str = "UPDATE pool_loadgen SET val = val + 1 WHERE id = ?";

/// The MariaDB/MySQL backend.
pub(crate) struct Mysql {
    opts: Opts,
}

impl Mysql {
    pub(crate) fn new(url: &str) -> Result<Self, BoxError> {
        let opts = Opts::from_url(url).map_err(|e| format!("invalid MySQL URL: {e}"))?;
        Ok(Mysql { opts })
    }

    pub(crate) fn targets() -> &'static [&'static str] {
        &[OURS, OURS_NO_RESET, BASELINE, "mysql_async"]
    }

    /// Creates `pool_loadgen` with `rows` rows unless it has them.
    pub(crate) async fn setup(&self, load: &Load) -> Result<(), BoxError> {
        let mut conn = tokio::time::timeout(
            load.connect_timeout,
            mysql_async::Conn::new(self.opts.clone()),
        )
        .await
        .map_err(|_| format!("no answer within {:?}", load.connect_timeout))?
        .map_err(|e| chain(&e))?;
        conn.query_drop(
            "CREATE TABLE IF NOT EXISTS pool_loadgen (
                 id BIGINT PRIMARY KEY, val BIGINT NOT NULL, note VARCHAR(64) NOT NULL
             ) ENGINE=InnoDB",
        )
        .await?;
        let have: Option<i64> = conn
            .query_first("SELECT count(*) FROM pool_loadgen")
            .await?;
        if have != Some(load.rows) {
            conn.query_drop("DELETE FROM pool_loadgen").await?;
            let mut id = 1;
            while id <= load.rows {
                let end = (id + 999).min(load.rows);
                let values: Vec<String> =
                    (id..=end).map(|i| format!("({i},0,'row {i}')")).collect();
                conn.query_drop(format!(
                    "INSERT INTO pool_loadgen (id, val, note) VALUES {}",
                    values.join(",")
                ))
                .await?;
                id = end + 1;
            }
        }
        conn.disconnect().await?;
        Ok(())
    }

    pub(crate) async fn measure(&self, target: &str, load: &Load) -> Result<RunResult, BoxError> {
        match target {
            OURS | OURS_NO_RESET => {
                let mut manager = pool_mysql::Manager::new(self.opts.clone());
                if target == OURS_NO_RESET {
                    manager = manager.reset_mode(pool_mysql::ResetMode::Off);
                }
                let pool = build_ours(manager, load)?;
                check_ours(&pool, load).await?;
                let res = runner::run_tasks(target, load, Ours(pool.clone())).await;
                pool.close();
                Ok(res)
            }
            BASELINE => {
                let mut conns = Vec::with_capacity(load.pool_size);
                for _ in 0..load.pool_size {
                    conns.push(mysql_async::Conn::new(self.opts.clone()).await?);
                }
                let pool = Baseline::new(conns);
                let res = runner::run_tasks(target, load, BaselinePool(pool.clone())).await;
                // Every guard is gone: close the connections politely.
                for conn in pool.take_idle() {
                    let _ = conn.disconnect().await;
                }
                Ok(res)
            }
            "mysql_async" => {
                let constraints = PoolConstraints::new(0, load.pool_size)
                    .ok_or("invalid mysql_async pool constraints")?;
                // A non-zero `inactive_connection_ttl` keeps up to `max` idle connections: with
                // its default of 0, mysql_async closes every connection returned above `min`.
                let opts = OptsBuilder::from_opts(self.opts.clone()).pool_opts(
                    PoolOpts::default()
                        .with_constraints(constraints)
                        .with_inactive_connection_ttl(std::time::Duration::from_secs(600))
                        .with_reset_connection(false),
                );
                let pool = mysql_async::Pool::new(opts);
                let res = runner::run_tasks(target, load, Peer(pool.clone())).await;
                pool.disconnect().await?;
                Ok(res)
            }
            _ => Err(format!("unknown MySQL target {target}").into()),
        }
    }
}

/// One point read or one small write.
async fn op<Q: Queryable>(c: &mut Q, read: bool, key: i64) -> mysql_async::Result<()> {
    if read {
        let row: Option<(i64, String)> = c.exec_first(READ, (key,)).await?;
        black_box(row);
    } else {
        c.exec_drop(WRITE, (key,)).await?;
    }
    Ok(())
}

fn timed(start: Instant, got: Instant, res: mysql_async::Result<()>) -> Result<Timing, OpError> {
    res.map_err(|e| OpError::new(ErrorKind::Query, &e))?;
    Ok(Timing {
        wait: got - start,
        query: got.elapsed(),
    })
}

struct Ours(pool_mysql::Pool);

impl Target for Ours {
    async fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        let start = Instant::now();
        let mut conn = self.0.get().await.map_err(|e| OpError::from_pool(&e))?;
        let got = Instant::now();
        // Through the wrapper's own `Queryable`: a clean connection then skips the reset.
        let res = op(&mut *conn, read, key).await;
        timed(start, got, res)
    }

    fn pool_state(&self) -> Option<PoolState> {
        Some(PoolState::of(&self.0))
    }
}

struct Peer(mysql_async::Pool);

impl Target for Peer {
    async fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        let start = Instant::now();
        let mut conn = self
            .0
            .get_conn()
            .await
            .map_err(|e| OpError::new(ErrorKind::Connect, &e))?;
        let got = Instant::now();
        let res = op(&mut conn, read, key).await;
        timed(start, got, res)
    }
}

struct BaselinePool(Baseline<mysql_async::Conn>);

impl Target for BaselinePool {
    async fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        let start = Instant::now();
        let mut conn = self.0.get().await;
        let got = Instant::now();
        let res = op(&mut *conn, read, key).await;
        timed(start, got, res)
    }
}
