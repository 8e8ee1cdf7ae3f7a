//! PostgreSQL: ours (pool-postgres) beside deadpool-postgres and bb8-postgres.
//!
//! Every pool runs the same statements with `query_typed` (one round trip, no named prepared
//! statement), so no pool gains from a statement cache the others lack. Checkout checks are
//! each pool's cheap one: ours validates only after 1 s idle, deadpool's `Fast` recycling
//! looks at `is_closed()`, and bb8's per-checkout `SELECT` round trip is switched off.
//!
//! The baseline (the 40-line pool) opens its 8 clients up front and checks nothing.
//!
//! pool-postgres rolls back every used connection at its next checkout by default (one round
//! trip per operation that no peer makes), so ours also runs as `ours-noreset`
//! (`ResetMode::Off`).

use std::hint::black_box;
use std::str::FromStr;
use std::time::Instant;

use pool_benches::baseline::Baseline;
use tokio_postgres::types::Type;
use tokio_postgres::NoTls;
use tokio_postgres::SimpleQueryMessage;

use crate::runner::{self, Load, RunResult};
use crate::target::{
    build_ours, chain, check_ours, ErrorKind, OpError, PoolState, Target, Timing, BASELINE, OURS,
    OURS_NO_RESET,
};
use crate::BoxError;

const READ: &str = "SELECT val, note FROM pool_loadgen WHERE id = $1";
const WRITE: &str = "UPDATE pool_loadgen SET val = val + 1 WHERE id = $1";

/// The PostgreSQL backend.
pub(crate) struct Postgres {
    config: tokio_postgres::Config,
}

impl Postgres {
    pub(crate) fn new(url: &str, load: &Load) -> Result<Self, BoxError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(load.connect_timeout);
        }
        Ok(Postgres { config })
    }

    pub(crate) fn targets() -> &'static [&'static str] {
        &[
            OURS,
            OURS_NO_RESET,
            BASELINE,
            "deadpool-postgres",
            "bb8-postgres",
        ]
    }

    /// Creates `pool_loadgen` with `rows` rows unless it has them.
    pub(crate) async fn setup(&self, load: &Load) -> Result<(), BoxError> {
        let connect = self.config.connect(NoTls);
        let (client, conn) = tokio::time::timeout(load.connect_timeout, connect)
            .await
            .map_err(|_| format!("no answer within {:?}", load.connect_timeout))?
            .map_err(|e| chain(&e))?;
        let task = tokio::spawn(conn);
        // Simple-protocol statements only: the set-up works through PgBouncer in transaction
        // mode too (the measured operations use `query_typed`, one unnamed statement each).
        let scalar = |rows: Vec<SimpleQueryMessage>| {
            rows.into_iter().find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
        };
        let read_only = scalar(client.simple_query("SHOW transaction_read_only").await?)
            .is_some_and(|v| v == "on");
        if read_only {
            // A replica (or a read-only primary): reads only, on the table the primary has.
            if load.read_ratio < 1.0 {
                return Err(
                    "the server is read-only (a replica?): run with --read-ratio 1, after one run against the primary created pool_loadgen".into(),
                );
            }
            let have = scalar(
                client
                    .simple_query("SELECT count(*) FROM pool_loadgen")
                    .await
                    .map_err(|e| format!("pool_loadgen is missing on this read-only server (run loadgen against the primary first): {}", chain(&e)))?,
            );
            if have.as_deref() != Some(load.rows.to_string().as_str()) {
                return Err(format!(
                    "pool_loadgen on this read-only server has {have:?} rows, not {}: run loadgen against the primary with the same --rows first",
                    load.rows
                )
                .into());
            }
            drop(client);
            task.abort();
            return Ok(());
        }
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS pool_loadgen (
                     id BIGINT PRIMARY KEY, val BIGINT NOT NULL, note TEXT NOT NULL)",
            )
            .await?;
        let have = scalar(
            client
                .simple_query("SELECT count(*) FROM pool_loadgen")
                .await?,
        );
        if have.as_deref() != Some(load.rows.to_string().as_str()) {
            client
                .batch_execute(&format!(
                    "TRUNCATE pool_loadgen;
                     INSERT INTO pool_loadgen (id, val, note)
                     SELECT g, 0, 'row ' || g FROM generate_series(1::bigint, {}) g;
                     ANALYZE pool_loadgen",
                    load.rows
                ))
                .await?;
        }
        drop(client);
        task.abort();
        Ok(())
    }

    pub(crate) async fn measure(&self, target: &str, load: &Load) -> Result<RunResult, BoxError> {
        match target {
            OURS | OURS_NO_RESET => {
                let mut manager = pool_postgres::Manager::new(self.config.clone());
                if target == OURS_NO_RESET {
                    manager = manager.reset_mode(pool_postgres::ResetMode::Off);
                }
                let pool = build_ours(manager, load)?;
                check_ours(&pool, load).await?;
                let res = runner::run_tasks(target, load, Ours(pool.clone())).await;
                pool.close();
                Ok(res)
            }
            BASELINE => {
                let mut clients = Vec::with_capacity(load.pool_size);
                for _ in 0..load.pool_size {
                    let (client, conn) = self.config.connect(NoTls).await?;
                    // Ends when the client is dropped with the pool.
                    tokio::spawn(conn);
                    clients.push(client);
                }
                Ok(runner::run_tasks(target, load, BaselinePool(Baseline::new(clients))).await)
            }
            "deadpool-postgres" => {
                let manager = deadpool_postgres::Manager::new(self.config.clone(), NoTls);
                let pool = deadpool_postgres::Pool::builder(manager)
                    .max_size(load.pool_size)
                    .build()?;
                Ok(runner::run_tasks(target, load, Deadpool(pool)).await)
            }
            "bb8-postgres" => {
                let manager =
                    bb8_postgres::PostgresConnectionManager::new(self.config.clone(), NoTls);
                let pool = bb8::Pool::builder()
                    .max_size(u32::try_from(load.pool_size)?)
                    .connection_timeout(load.op_timeout)
                    .test_on_check_out(false)
                    .build(manager)
                    .await?;
                Ok(runner::run_tasks(target, load, Bb8(pool)).await)
            }
            _ => Err(format!("unknown PostgreSQL target {target}").into()),
        }
    }
}

/// One point read or one small write.
async fn op(c: &tokio_postgres::Client, read: bool, key: i64) -> Result<(), tokio_postgres::Error> {
    if read {
        let rows = c.query_typed(READ, &[(&key, Type::INT8)]).await?;
        if let Some(row) = rows.first() {
            black_box((row.get::<_, i64>(0), row.get::<_, &str>(1)));
        }
    } else {
        black_box(c.query_typed(WRITE, &[(&key, Type::INT8)]).await?);
    }
    Ok(())
}

fn timed(
    start: Instant,
    got: Instant,
    res: Result<(), tokio_postgres::Error>,
) -> Result<Timing, OpError> {
    res.map_err(|e| OpError::new(ErrorKind::Query, &e))?;
    Ok(Timing {
        wait: got - start,
        query: got.elapsed(),
    })
}

struct Ours(pool_postgres::Pool);

impl Target for Ours {
    async fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        let start = Instant::now();
        let conn = self.0.get().await.map_err(|e| OpError::from_pool(&e))?;
        let got = Instant::now();
        let res = op(&conn, read, key).await;
        timed(start, got, res)
    }

    fn pool_state(&self) -> Option<PoolState> {
        Some(PoolState::of(&self.0))
    }
}

struct Deadpool(deadpool_postgres::Pool);

impl Target for Deadpool {
    async fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        let start = Instant::now();
        let conn = self.0.get().await.map_err(|e| {
            let kind = match &e {
                deadpool_postgres::PoolError::Timeout(_) => ErrorKind::PoolTimeout,
                deadpool_postgres::PoolError::Backend(_) => ErrorKind::Connect,
                deadpool_postgres::PoolError::Closed => ErrorKind::PoolClosed,
                _ => ErrorKind::Other,
            };
            OpError::new(kind, &e)
        })?;
        let got = Instant::now();
        let res = op(&conn, read, key).await;
        timed(start, got, res)
    }
}

struct Bb8(bb8::Pool<bb8_postgres::PostgresConnectionManager<NoTls>>);

impl Target for Bb8 {
    async fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        let start = Instant::now();
        let conn = self.0.get().await.map_err(|e| {
            let kind = match &e {
                bb8::RunError::TimedOut => ErrorKind::PoolTimeout,
                bb8::RunError::User(_) => ErrorKind::Connect,
            };
            OpError::new(kind, &e)
        })?;
        let got = Instant::now();
        let res = op(&conn, read, key).await;
        timed(start, got, res)
    }
}

struct BaselinePool(Baseline<tokio_postgres::Client>);

impl Target for BaselinePool {
    async fn op(&self, read: bool, key: i64) -> Result<Timing, OpError> {
        let start = Instant::now();
        let conn = self.0.get().await;
        let got = Instant::now();
        let res = op(&conn, read, key).await;
        timed(start, got, res)
    }
}
