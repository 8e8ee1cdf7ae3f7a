//! PgBouncer-safe mode (`Manager::pgbouncer`), through a real PgBouncer in transaction pooling
//! mode started by each test on a free loopback port, and over the plain server.
//!
//! The workload checks every result against what the query must return: each task owns the rows
//! keyed by its id and checks the values it wrote, and the other queries return their own
//! parameters (`SELECT $1::int8 * 2, $2::text`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pool_postgres::tokio_postgres::error::SqlState;
use pool_postgres::tokio_postgres::types::ToSql;
use pool_postgres::{ConfigError, Manager, Pool};
use pool_tests::PgBouncer;

use crate::util::{admin, url};

/// Concurrent tasks of the workload.
const TASKS: usize = 64;
/// Requests (checkouts, each with its own transaction) per task.
const REQUESTS_PER_TASK: usize = 30;
/// PgBouncer's server connections (`default_pool_size`).
const BOUNCER_SERVERS: usize = 4;
/// The pool's connections to PgBouncer: more than its server connections.
const POOL_SIZE: usize = 16;

const UPSERT: &str = "INSERT INTO {t} (task, k, v, note) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (task, k) DO UPDATE SET v = EXCLUDED.v, note = EXCLUDED.note";
const SELECT_ONE: &str = "SELECT v, note FROM {t} WHERE task = $1 AND k = $2";
const SELECT_ALL: &str = "SELECT k, v, note FROM {t} WHERE task = $1 ORDER BY k";
const DELETE_ONE: &str = "DELETE FROM {t} WHERE task = $1 AND k = $2";
const ECHO: &str = "SELECT $1::int8 * 2, $2::text";
const ECHO_PREPARED: &str = "SELECT $2::text || '!', $1::int4 + 1";

/// What a workload saw.
#[derive(Debug, Default)]
struct Outcome {
    requests: u64,
    queries: u64,
    errors: u64,
    wrong: u64,
    /// The first few problems, for the failure message.
    problems: Vec<String>,
    /// Each task's rows as it knows them: (task, k) -> (v, note).
    rows: BTreeMap<(i32, i32), (i64, String)>,
}

impl Outcome {
    fn problem(&mut self, wrong: bool, what: String) {
        if wrong {
            self.wrong += 1;
        } else {
            self.errors += 1;
        }
        if self.problems.len() < 10 {
            self.problems.push(what);
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.requests += other.requests;
        self.queries += other.queries;
        self.errors += other.errors;
        self.wrong += other.wrong;
        for p in other.problems {
            if self.problems.len() < 10 {
                self.problems.push(p);
            }
        }
        self.rows.extend(other.rows);
    }
}

fn sql(template: &str, table: &str) -> String {
    template.replace("{t}", table)
}

/// One request of task `id`: a checkout, a transaction (or, for one kind, autocommit
/// statements), every answer checked. Returns `Err` with the driver's error, or a description
/// of a wrong result through `out`.
async fn request(
    pool: &Pool,
    table: &str,
    id: i32,
    r: usize,
    mine: &mut BTreeMap<i32, (i64, String)>,
    out: &mut Outcome,
) -> Result<(), pool_postgres::tokio_postgres::Error> {
    let mut client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            out.problem(false, format!("task {id} get: {e:?}"));
            return Ok(());
        }
    };
    let r_i = i64::try_from(r).unwrap();
    let k = i32::try_from(r % 5).unwrap();
    let kind = (r + usize::try_from(id).unwrap()) % 5;
    let mut check = |ok: bool, what: String| {
        if !ok {
            out.problem(true, format!("task {id} request {r}: {what}"));
        }
    };
    match kind {
        // A write and its read-back, in one transaction; prepared statement + SQL text.
        0 | 1 => {
            let v = i64::from(id) * 1_000_000 + r_i;
            let note = format!("t{id}-r{r}");
            client.batch_execute("BEGIN").await?;
            let upsert = client.prepare_cached(&sql(UPSERT, table)).await?;
            let n = client.execute(&upsert, &[&id, &k, &v, &note]).await?;
            check(n == 1, format!("upsert modified {n} rows"));
            let row = client
                .query_one(&sql(SELECT_ONE, table), &[&id, &k])
                .await?;
            let (got_v, got_note): (i64, String) = (row.get(0), row.get(1));
            check(
                got_v == v && got_note == note,
                format!("read back ({got_v}, {got_note}), wrote ({v}, {note})"),
            );
            // Every third write is rolled back instead: the old value must stay.
            if r % 3 == 0 {
                client.batch_execute("ROLLBACK").await?;
            } else {
                client.batch_execute("COMMIT").await?;
                mine.insert(k, (v, note));
            }
            out.queries += 5;
        }
        // All of the task's rows, and parameter echoes, inside a transaction.
        2 => {
            client.batch_execute("BEGIN").await?;
            let all = client.prepare_cached(&sql(SELECT_ALL, table)).await?;
            let rows = client.query(&all, &[&id]).await?;
            let got: BTreeMap<i32, (i64, String)> = rows
                .iter()
                .map(|row| (row.get(0), (row.get(1), row.get(2))))
                .collect();
            check(got == *mine, format!("own rows {got:?}, expected {mine:?}"));
            let x = i64::from(id) * 100_000 + r_i;
            let s = format!("{id}:{r}");
            let rows = client.query(ECHO, &[&x, &s]).await?;
            check(
                rows.len() == 1,
                format!("echo returned {} rows", rows.len()),
            );
            if let Some(row) = rows.first() {
                let (a, b): (i64, String) = (row.get(0), row.get(1));
                check(
                    a == 2 * x && b == s,
                    format!("echo ({a}, {b}) for ({x}, {s})"),
                );
            }
            client.batch_execute("COMMIT").await?;
            out.queries += 4;
        }
        // Autocommit statements, no explicit transaction: a prepared echo, a read, a delete.
        3 => {
            let echo = client.prepare_cached(ECHO_PREPARED).await?;
            let x = id * 1000 + i32::try_from(r).unwrap();
            let s = format!("p{id}-{r}");
            let row = client.query_one(&echo, &[&x, &s]).await?;
            let (a, b): (String, i32) = (row.get(0), row.get(1));
            check(
                a == format!("{s}!") && b == x + 1,
                format!("prepared echo ({a}, {b}) for ({x}, {s})"),
            );
            let got = client
                .query_opt(&sql(SELECT_ONE, table), &[&id, &k])
                .await?
                .map(|row| (row.get::<_, i64>(0), row.get::<_, String>(1)));
            check(
                got.as_ref() == mine.get(&k),
                format!("row {k}: {got:?}, expected {:?}", mine.get(&k)),
            );
            if r % 7 == 3 {
                let n = client.execute(&sql(DELETE_ONE, table), &[&id, &k]).await?;
                let expected = u64::from(mine.remove(&k).is_some());
                check(
                    n == expected,
                    format!("delete of {k} modified {n} rows, expected {expected}"),
                );
                out.queries += 1;
            }
            out.queries += 2;
        }
        // The driver's own `Transaction` with SQL text (named statements inside a transaction,
        // closed before its end): documented as safe behind PgBouncer.
        _ => {
            let tx = client.transaction().await?;
            let x = i64::from(id) * 10 + r_i;
            let s = format!("tx{id}");
            let row = tx.query_one(ECHO, &[&x, &s]).await?;
            let (a, b): (i64, String) = (row.get(0), row.get(1));
            check(
                a == 2 * x && b == s,
                format!("tx echo ({a}, {b}) for ({x}, {s})"),
            );
            let n: i64 = tx
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE task = $1"),
                    &[&id],
                )
                .await?
                .get(0);
            check(
                n == i64::try_from(mine.len()).unwrap(),
                format!("tx count {n}, expected {}", mine.len()),
            );
            tx.commit().await?;
            out.queries += 4;
        }
    }
    Ok(())
}

/// Runs `tasks` tasks of `per_task` requests each against `pool`.
async fn workload(pool: &Pool, table: &str, tasks: usize, per_task: usize) -> Outcome {
    let mut handles = Vec::new();
    for id in 0..tasks {
        let pool = pool.clone();
        let table = table.to_owned();
        handles.push(tokio::spawn(async move {
            let id = i32::try_from(id).unwrap();
            let mut out = Outcome::default();
            let mut mine = BTreeMap::new();
            for r in 0..per_task {
                out.requests += 1;
                if let Err(e) = request(&pool, &table, id, r, &mut mine, &mut out).await {
                    let code = e.code().map(|c| c.code().to_owned());
                    out.problem(false, format!("task {id} request {r}: {code:?} {e}"));
                    // The write may or may not have committed: ask the database.
                    mine = own_rows(&pool, &table, id).await;
                }
            }
            out.rows = mine.into_iter().map(|(k, v)| ((id, k), v)).collect();
            out
        }));
    }
    let mut all = Outcome::default();
    for h in handles {
        all.merge(h.await.expect("task panicked"));
    }
    all
}

async fn own_rows(pool: &Pool, table: &str, id: i32) -> BTreeMap<i32, (i64, String)> {
    let client = pool.get().await.expect("get after an error");
    client
        .query(&sql(SELECT_ALL, table), &[&id])
        .await
        .expect("read own rows after an error")
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect()
}

async fn create_table(url: &str) -> String {
    let table = pool_tests::unique_name("pg_bouncer");
    admin(url)
        .await
        .batch_execute(&format!(
            "CREATE TABLE {table} (task int4, k int4, v int8 NOT NULL, note text NOT NULL, \
             PRIMARY KEY (task, k))"
        ))
        .await
        .unwrap();
    table
}

/// The table as the server has it, compared with what the tasks know they committed.
async fn assert_table(url: &str, table: &str, expected: &BTreeMap<(i32, i32), (i64, String)>) {
    let admin = admin(url).await;
    let got: BTreeMap<(i32, i32), (i64, String)> = admin
        .query(&format!("SELECT task, k, v, note FROM {table}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| ((row.get(0), row.get(1)), (row.get(2), row.get(3))))
        .collect();
    assert_eq!(
        &got, expected,
        "the table holds exactly the committed writes"
    );
    admin
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

fn bouncer_pool(url: &str, pgbouncer: bool) -> Pool {
    let manager = Manager::from_url(url)
        .expect("url")
        .application_name("pool-bouncer-test")
        .pgbouncer(pgbouncer);
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .wait_timeout(Duration::from_secs(30))
        .build()
        .expect("pool")
}

fn pg_host_port(url: &str) -> (String, u16) {
    pool_tests::host_port(url).expect("POOL_TEST_PG_URL has a TCP host")
}

/// The issue-12 scenario: 64 tasks through PgBouncer (transaction pooling, 4 server
/// connections) with a pool of 16, prepared statements and SQL text with parameters, a
/// transaction per request, mixed reads and writes, every result checked: 0 errors, 0 wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_mode_through_pgbouncer_is_never_wrong() {
    let Some(url) = url() else { return };
    let (host, port) = pg_host_port(&url);
    let bouncer = PgBouncer::start(&host, port, "test", BOUNCER_SERVERS);
    let table = create_table(&url).await;
    // The flag from the URL, as a user would set it.
    let pool_url = format!("{}?pgbouncer=true", bouncer.url("postgres"));
    let manager = Manager::from_url(&pool_url)
        .expect("url")
        .application_name("pool-bouncer-test");
    assert!(
        manager.is_pgbouncer(),
        "pgbouncer=true in the URL turns the mode on"
    );
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .wait_timeout(Duration::from_secs(30))
        .build()
        .expect("pool");

    let started = Instant::now();
    let out = workload(&pool, &table, TASKS, REQUESTS_PER_TASK).await;
    let elapsed = started.elapsed();
    eprintln!(
        "pgbouncer mode through PgBouncer: {} requests ({} queries) by {TASKS} tasks, pool {POOL_SIZE}, \
         {BOUNCER_SERVERS} server connections: {} errors, {} wrong results, {elapsed:?}",
        out.requests, out.queries, out.errors, out.wrong
    );
    assert_eq!(
        out.requests,
        u64::try_from(TASKS * REQUESTS_PER_TASK).unwrap()
    );
    assert!(
        out.errors == 0 && out.wrong == 0,
        "{} errors, {} wrong results: {:#?}\nPgBouncer log:\n{}",
        out.errors,
        out.wrong,
        out.problems,
        bouncer.log()
    );
    assert!(pool.status().size <= POOL_SIZE);
    drop(pool);
    assert_table(&url, &table, &out.rows).await;
}

/// The control: the driver's named statements (`prepare_cached`, `query(&str)`), i.e. the
/// wrapper without PgBouncer mode, through the same kind of PgBouncer go wrong (errors such as
/// "prepared statement "s0" does not exist", or another statement's rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_statements_through_pgbouncer_go_wrong() {
    let Some(url) = url() else { return };
    let (host, port) = pg_host_port(&url);
    let bouncer = PgBouncer::start(&host, port, "test", BOUNCER_SERVERS);
    let pool = bouncer_pool(&bouncer.url("postgres"), false);
    let mut handles = Vec::new();
    for id in 0..TASKS {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            let mut bad = 0u64;
            for r in 0..10i64 {
                // The confusion named statements cause can also cost PgBouncer its client
                // connections: a failed get counts as going wrong too.
                let Ok(client) = pool.get().await else {
                    bad += 1;
                    continue;
                };
                let x = i64::try_from(id).unwrap() * 1000 + r;
                let s = format!("{id}:{r}");
                // Different statements per task, so that recycled names point elsewhere.
                let text = format!("SELECT $1::int8 * 2, $2::text, {} AS tag", id % 8);
                let result = async {
                    let statement = client.prepare_cached(&text).await?;
                    let a = client.query_one(&statement, &[&x, &s]).await?;
                    let b = client.query_one(ECHO, &[&x, &s]).await?;
                    Ok::<_, pool_postgres::tokio_postgres::Error>((a, b))
                }
                .await;
                match result {
                    Ok((a, b)) => {
                        let ok_a = a.len() == 3
                            && a.get::<_, i64>(0) == 2 * x
                            && a.get::<_, String>(1) == s
                            && a.get::<_, i32>(2) == i32::try_from(id % 8).unwrap();
                        let ok_b = b.len() == 2
                            && b.try_get::<_, i64>(0).ok() == Some(2 * x)
                            && b.try_get::<_, String>(1).ok() == Some(s);
                        bad += u64::from(!ok_a) + u64::from(!ok_b);
                    }
                    Err(_) => bad += 1,
                }
            }
            bad
        }));
    }
    let mut bad = 0;
    for h in handles {
        bad += h.await.expect("task panicked");
    }
    eprintln!(
        "named statements through PgBouncer: {bad} failed or wrong of {} requests",
        TASKS * 10
    );
    assert!(
        bad > 0,
        "named statements through PgBouncer in transaction mode were expected to fail"
    );
}

/// PgBouncer mode over the plain server (no PgBouncer) gives the same right answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_mode_over_the_plain_server() {
    let Some(url) = url() else { return };
    let table = create_table(&url).await;
    let pool = bouncer_pool(&url, true);
    let out = workload(&pool, &table, 16, 20).await;
    assert!(
        out.errors == 0 && out.wrong == 0,
        "{} errors, {} wrong: {:#?}",
        out.errors,
        out.wrong,
        out.problems
    );
    drop(pool);
    assert_table(&url, &table, &out.rows).await;
}

/// What the mode does at its edges: a statement the wrapper did not prepare is refused
/// (SQLSTATE 26000) instead of being bound by name; a wrong parameter count is the driver's
/// error; handles work inside a transaction; no named statement is left on the server.
#[tokio::test]
async fn pgbouncer_mode_edges() {
    let Some(url) = url() else { return };
    let pool = bouncer_pool(&url, true);
    let client = pool.get().await.unwrap();
    assert!(client.is_pgbouncer());

    // A statement from the driver's own `prepare` (through Deref) is refused.
    let raw = pool_postgres::tokio_postgres::Client::prepare(&client, "SELECT 1")
        .await
        .unwrap();
    let err = client.query(&raw, &[]).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_SQL_STATEMENT_NAME),
        "{err}"
    );
    drop(raw);

    // Wrong parameter count: the driver's error, nothing bound.
    let err = client.query(ECHO, &[&1i64]).await.unwrap_err();
    assert!(err.to_string().contains("parameters"), "{err}");

    // The shadowing `prepare` gives a usable handle, also inside a transaction (learned there,
    // without BEGIN/COMMIT of its own), and the transaction stays the holder's.
    client.batch_execute("BEGIN").await.unwrap();
    let handle = client
        .prepare("SELECT $1::int4 * 3, current_setting('transaction_isolation')")
        .await
        .unwrap();
    let row = client.query_one(&handle, &[&7i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 21);
    let in_tx: bool = client
        .query_one("SELECT now() <> statement_timestamp() OR true", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_tx);
    client.batch_execute("ROLLBACK").await.unwrap();

    // `execute_raw` and `query_raw` take the same path.
    let n = client
        .execute_raw(
            "SELECT $1::int8 * 2, $2::text",
            [
                &5i64 as &(dyn pool_postgres::tokio_postgres::types::ToSql + Sync),
                &"x",
            ],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);

    // The scalar helpers take the same path.
    let v: Vec<i64> = client
        .query_scalar("SELECT g * $1::int8 FROM generate_series(1, 3) g", &[&2i64])
        .await
        .unwrap();
    assert_eq!(v, [2, 4, 6]);
    let one: String = client
        .query_one_scalar("SELECT $1::text || 'b'", &[&"a"])
        .await
        .unwrap();
    assert_eq!(one, "ab");
    let none: Option<i32> = client
        .query_opt_scalar("SELECT 1 WHERE $1::bool", &[&false])
        .await
        .unwrap();
    assert_eq!(none, None);
    assert!(client
        .query_one_scalar::<i32, _>("SELECT 1, 2", &[])
        .await
        .is_err());

    // No named statement is left on the server connection: every one was closed or
    // deallocated before its transaction ended.
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "named statements left on the server");
}

/// A dirty connection behind PgBouncer is cleaned like one to the server: the holder's open
/// transaction does not reach the next user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_mode_returns_a_clean_session() {
    let Some(url) = url() else { return };
    let (host, port) = pg_host_port(&url);
    let bouncer = PgBouncer::start(&host, port, "test", 2);
    let table = create_table(&url).await;
    let manager = Manager::from_url(&bouncer.url("postgres"))
        .unwrap()
        .pgbouncer(true);
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    {
        let client = pool.get().await.unwrap();
        client
            .batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1, 1, 1, 'x')"))
            .await
            .unwrap();
    }
    let client = pool.get().await.unwrap();
    assert_eq!(
        pool.manager().resets(),
        1,
        "the open transaction was rolled back"
    );
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the previous holder's insert was rolled back");
    drop(client);
    drop(pool);
    assert_table(&url, &table, &BTreeMap::new()).await;
}

/// Startup `options` (`search_path`) cannot go through PgBouncer: a typed error from the URL.
#[test]
fn search_path_behind_pgbouncer_is_a_config_error() {
    let err = Manager::from_url(
        "postgres://postgres@127.0.0.1:6432/test?pgbouncer=true&options=-c%20search_path%3Dapp",
    )
    .unwrap_err();
    assert!(
        matches!(err, ConfigError::PgBouncerStartupOptions),
        "{err:?}"
    );
    assert!(err.to_string().contains("ALTER ROLE"), "{err}");
    let err =
        Manager::from_url("postgres://postgres@127.0.0.1/test?pgbouncer=perhaps").unwrap_err();
    assert!(matches!(err, ConfigError::PgBouncerFlag), "{err:?}");
    let manager = Manager::from_url("postgres://postgres@127.0.0.1/test?pgbouncer=false").unwrap();
    assert!(!manager.is_pgbouncer());
}

/// A TLS connector that is never asked for TLS (`sslmode=disable`): the connection is opened by
/// the driver, so the wrapper cannot see the transaction status on the wire and the first use of
/// a SQL text probes with a savepoint whether the holder's transaction is open.
#[derive(Clone, Copy)]
struct UnsniffedNoTls;

impl pool_postgres::tokio_postgres::tls::MakeTlsConnect<pool_postgres::tokio_postgres::Socket>
    for UnsniffedNoTls
{
    type Stream = pool_postgres::tokio_postgres::tls::NoTlsStream;
    type TlsConnect = pool_postgres::tokio_postgres::NoTls;
    type Error = pool_postgres::tokio_postgres::tls::NoTlsError;

    fn make_tls_connect(&mut self, _domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(pool_postgres::tokio_postgres::NoTls)
    }
}

/// The same workload when the transaction status is not sniffed (a connection the driver
/// opened, as with TLS today), through PgBouncer and over the plain server: the savepoint probe
/// decides whether the describing step needs its own transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_mode_without_sniffing() {
    let Some(url) = url() else { return };
    let (host, port) = pg_host_port(&url);
    let bouncer = PgBouncer::start(&host, port, "test", BOUNCER_SERVERS);
    for target in [bouncer.url("postgres"), url.clone()] {
        let table = create_table(&url).await;
        let config = format!("{target}?sslmode=disable")
            .parse::<pool_postgres::tokio_postgres::Config>()
            .unwrap();
        let manager = Manager::with_tls(config, UnsniffedNoTls).pgbouncer(true);
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let out = workload(&pool, &table, 32, 15).await;
        assert!(
            out.errors == 0 && out.wrong == 0,
            "{target}: {} errors, {} wrong: {:#?}",
            out.errors,
            out.wrong,
            out.problems
        );
        drop(pool);
        assert_table(&url, &table, &out.rows).await;
    }
}

/// First uses of new SQL texts pipelined on one connection (several futures of one client at
/// once) take turns describing them, and every answer is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_mode_pipelined_first_uses() {
    let Some(url) = url() else { return };
    let (host, port) = pg_host_port(&url);
    let bouncer = PgBouncer::start(&host, port, "test", 2);
    let pool = bouncer_pool(&bouncer.url("postgres"), true);
    for round in 0..20i64 {
        let client = pool.get().await.unwrap();
        let texts: Vec<String> = (0..4)
            .map(|i| format!("SELECT $1::int8 + {i}, $2::text /* round {round} */"))
            .collect();
        let statement = format!("SELECT $1::int8 * {round}");
        let params: [[&(dyn ToSql + Sync); 2]; 4] = [
            [&round, &"a"],
            [&round, &"b"],
            [&round, &"c"],
            [&round, &"d"],
        ];
        let (a, b, c, d, e) = tokio::join!(
            client.query_one(&texts[0], &params[0]),
            client.query_one(&texts[1], &params[1]),
            client.query_opt(&texts[2], &params[2]),
            client.query(&texts[3], &params[3]),
            client.prepare_cached(&statement),
        );
        let (a, b, c, d, e) = (
            a.unwrap(),
            b.unwrap(),
            c.unwrap().unwrap(),
            d.unwrap(),
            e.unwrap(),
        );
        assert_eq!(
            (a.get::<_, i64>(0), a.get::<_, String>(1)),
            (round, "a".into())
        );
        assert_eq!(
            (b.get::<_, i64>(0), b.get::<_, String>(1)),
            (round + 1, "b".into())
        );
        assert_eq!(
            (c.get::<_, i64>(0), c.get::<_, String>(1)),
            (round + 2, "c".into())
        );
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].get::<_, i64>(0), d[0].get::<_, String>(1)),
            (round + 3, "d".into())
        );
        let row = client.query_one(&e, &[&7i64]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 7 * round);
    }
}
