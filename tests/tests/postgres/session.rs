//! Session state a holder changed never reaches the next user (the default `ResetMode::Auto`),
//! and the next user gets the very same connection, cleaned, not a new one.

use std::time::Duration;

use pool_postgres::tokio_postgres::{self, Client};
use pool_postgres::{Manager, Pool};

use crate::util::{admin, url};

fn pool(url: &str) -> Pool {
    let manager = Manager::from_url(url)
        .unwrap()
        .init(|c| Box::pin(async move { c.batch_execute("SET TIME ZONE 'UTC'").await }));
    Pool::builder(manager)
        .max_size(1)
        .wait_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn one<T>(client: &Client, sql: &str) -> T
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Runs `dirty` as one holder, then returns the next holder (checked to be the same backend).
async fn after(pool: &Pool, dirty: &str) -> pool_postgres::Client {
    let pid: i32 = {
        let client = pool.get().await.unwrap();
        client.batch_execute(dirty).await.unwrap();
        one(&client, "SELECT pg_backend_pid()").await
    };
    let client = pool.get().await.unwrap();
    let again: i32 = one(&client, "SELECT pg_backend_pid()").await;
    assert_eq!(pid, again, "the same connection is reused after: {dirty}");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_roles_and_session_objects_do_not_leak() {
    let Some(url) = url() else { return };
    let admin = admin(&url).await;
    let role = pool_tests::unique_name("pool_reader");
    admin
        .batch_execute(&format!("CREATE ROLE {role} NOLOGIN"))
        .await
        .unwrap();
    let pool = pool(&url);

    let c = after(&pool, "SET statement_timeout = '1234ms'").await;
    assert_ne!(one::<String>(&c, "SHOW statement_timeout").await, "1234ms");
    drop(c);

    let c = after(&pool, "SET TIME ZONE 'Asia/Tokyo'").await;
    assert_eq!(
        one::<String>(&c, "SHOW TimeZone").await,
        "UTC",
        "back to what the init hook set"
    );
    drop(c);

    let c = after(&pool, &format!("SET ROLE {role}")).await;
    assert_eq!(
        one::<String>(&c, "SELECT current_user::text").await,
        "postgres"
    );
    drop(c);

    let c = after(&pool, &format!("SET SESSION AUTHORIZATION {role}")).await;
    assert_eq!(
        one::<String>(&c, "SELECT session_user::text").await,
        "postgres"
    );
    assert_eq!(
        one::<String>(&c, "SELECT current_user::text").await,
        "postgres"
    );
    drop(c);

    let c = after(&pool, "SELECT set_config('pool.marker', 'leaked', false)").await;
    let marker: Option<String> = one(&c, "SELECT current_setting('pool.marker', true)").await;
    assert!(marker.as_deref().is_none_or(str::is_empty), "{marker:?}");
    drop(c);

    let c = after(&pool, "CREATE TEMP TABLE pool_scratch (x int)").await;
    let temp: Option<String> = one(&c, "SELECT to_regclass('pg_temp.pool_scratch')::text").await;
    assert_eq!(temp, None);
    drop(c);

    let c = after(&pool, "LISTEN pool_channel").await;
    let listening: i64 = one(&c, "SELECT count(*) FROM pg_listening_channels()").await;
    assert_eq!(listening, 0);
    drop(c);

    let c = after(&pool, "PREPARE pool_p AS SELECT 1").await;
    let prepared: i64 = one(
        &c,
        "SELECT count(*) FROM pg_prepared_statements WHERE name = 'pool_p'",
    )
    .await;
    assert_eq!(prepared, 0);
    drop(c);

    let c = after(
        &pool,
        "BEGIN; DECLARE pool_c CURSOR WITH HOLD FOR SELECT 1; COMMIT",
    )
    .await;
    let cursors: i64 = one(&c, "SELECT count(*) FROM pg_cursors WHERE name = 'pool_c'").await;
    assert_eq!(cursors, 0);
    drop(c);

    // Session-level advisory lock: released for everyone once the holder is gone.
    let key: i64 = 7_700_000 + i64::from(std::process::id() % 100_000);
    let c = after(&pool, &format!("SELECT pg_advisory_lock({key})")).await;
    let held: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1::bigint::oid",
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 0, "the advisory lock was released");
    drop(c);

    // Prepared statements of the cache still work after a reset emptied it.
    {
        let c = pool.get().await.unwrap();
        let s = c.prepare_cached("SELECT $1::int + 1").await.unwrap();
        assert_eq!(c.query_one(&s, &[&1i32]).await.unwrap().get::<_, i32>(0), 2);
        c.batch_execute("SET work_mem = '8MB'").await.unwrap();
    }
    let c = pool.get().await.unwrap();
    let s = c.prepare_cached("SELECT $1::int + 1").await.unwrap();
    assert_eq!(
        c.query_one(&s, &[&41i32]).await.unwrap().get::<_, i32>(0),
        42
    );
    drop(c);
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_statements_cost_no_reset() {
    let Some(url) = url() else { return };
    let admin = admin(&url).await;
    let table = pool_tests::unique_name("pg_session_plain");
    admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, v text)"
        ))
        .await
        .unwrap();
    let pool = pool(&url);
    for i in 0..50i32 {
        let c = pool.get().await.unwrap();
        c.execute(
            &format!("INSERT INTO {table} VALUES ($1, 'a') ON CONFLICT (id) DO UPDATE SET v = 'b'"),
            &[&i],
        )
        .await
        .unwrap();
        c.batch_execute(&format!(
            "BEGIN; SET LOCAL statement_timeout = '5s'; UPDATE {table} SET v = 'c' WHERE id = {i}; COMMIT"
        ))
        .await
        .unwrap();
    }
    assert_eq!(
        pool.manager().resets(),
        0,
        "no ROLLBACK or DISCARD ALL for sessions left clean"
    );
}
