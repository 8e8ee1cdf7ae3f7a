//! Queries, the statement cache, concurrency, and connections the server closes while idle.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_postgres::tokio_postgres::SimpleQueryMessage;
use pool_postgres::{Manager, Pool};

use crate::util::{admin, pool, sessions, url};

#[tokio::test]
async fn one_line_pool_runs_a_query() {
    let Some(url) = url() else { return };
    let pool = pool_postgres::pool(&url, 2).expect("pool");
    let client = pool.get().await.expect("get");
    let row = client.query_one("SELECT 1 + 1", &[]).await.expect("query");
    assert_eq!(row.get::<_, i32>(0), 2);
}

#[tokio::test]
async fn application_name_search_path_and_init_hook_apply_to_every_connection() {
    let Some(url) = url() else { return };
    let app = pool_tests::unique_name("pg_init");
    let manager = Manager::from_url(&url)
        .unwrap()
        .application_name(&app)
        .search_path(["my schema", "public"])
        .init(|client| {
            Box::pin(async move {
                client
                    .batch_execute("SET statement_timeout = '4321ms'")
                    .await
            })
        });
    let pool = Pool::builder(manager).max_size(2).build().unwrap();
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    for client in [&a, &b] {
        let row = client
            .query_one(
                "SELECT current_setting('application_name'), current_setting('search_path'), \
                 current_setting('statement_timeout')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), app);
        assert_eq!(row.get::<_, String>(1), r#""my schema","public""#);
        assert_eq!(row.get::<_, String>(2), "4321ms");
    }
}

#[tokio::test]
async fn prepare_cached_reuses_statements_and_can_be_turned_off() {
    let Some(url) = url() else { return };
    let pool = pool(&url, &pool_tests::unique_name("pg_cache"), 1);
    let client = pool.get().await.unwrap();
    let s1 = client.prepare_cached("SELECT $1::int + 1").await.unwrap();
    let s2 = client.prepare_cached("SELECT $1::int + 1").await.unwrap();
    assert_eq!(
        prepared(&client).await,
        1,
        "the second call must reuse the statement"
    );
    assert_eq!(client.statement_cache_len(), 1);
    let row = client.query_one(&s2, &[&41i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    drop((s1, s2));

    let manager = Manager::from_url(&url).unwrap().statement_cache_capacity(0);
    let uncached = Pool::builder(manager).max_size(1).build().unwrap();
    let client = uncached.get().await.unwrap();
    let s1 = client.prepare_cached("SELECT 1").await.unwrap();
    let s2 = client.prepare_cached("SELECT 1").await.unwrap();
    assert_eq!(
        prepared(&client).await,
        2,
        "with the cache off every call prepares"
    );
    drop((s1, s2));
    assert_eq!(client.statement_cache_len(), 0);
}

/// Prepared statements of this session (counted with the simple protocol, which prepares none).
async fn prepared(client: &pool_postgres::Client) -> i64 {
    let rows = client
        .simple_query("SELECT count(*) FROM pg_prepared_statements")
        .await
        .unwrap();
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(|v| v.parse().unwrap()),
            _ => None,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_never_exceed_max_size_on_the_server() {
    let Some(url) = url() else { return };
    let app = pool_tests::unique_name("pg_conc");
    let pool = pool(&url, &app, 4);
    let admin = Arc::new(admin(&url).await);
    let peak = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (pool, admin, peak, app) = (pool.clone(), admin.clone(), peak.clone(), app.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let client = pool.get().await.expect("get");
                let row = client
                    .query_one("SELECT $1::int", &[&i])
                    .await
                    .expect("query");
                assert_eq!(row.get::<_, i32>(0), i);
                let seen = sessions(&admin, &app).await;
                peak.fetch_max(seen, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        (1..=4).contains(&peak),
        "server saw {peak} sessions of a pool of 4"
    );
    assert!(pool.status().size <= 4);
}

async fn pid(client: &pool_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn connection_terminated_while_idle_is_replaced_silently() {
    let Some(url) = url() else { return };
    let app = pool_tests::unique_name("pg_kill");
    // No validation at checkout: the broken flag (the connection task ended) alone must do.
    let manager = Manager::from_url(&url).unwrap().application_name(&app);
    let pool = Pool::builder(manager)
        .max_size(1)
        .validate_after_idle(None)
        .build()
        .unwrap();
    let admin = admin(&url).await;
    let first = {
        let client = pool.get().await.unwrap();
        pid(&client).await
    };
    let killed: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&first])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    // Let the server's FATAL message reach the connection task.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = pool.get().await.expect("a fresh connection, no error");
    let second = pid(&client).await;
    assert_ne!(first, second);
    assert!(pool.metrics().closed_broken >= 1);
}

#[tokio::test]
async fn server_side_idle_session_timeout_is_handled() {
    let Some(url) = url() else { return };
    let manager = Manager::from_url(&url).unwrap().init(|client| {
        Box::pin(async move {
            client
                .batch_execute("SET idle_session_timeout = '300ms'")
                .await
        })
    });
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let first = {
        let client = pool.get().await.unwrap();
        pid(&client).await
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let client = pool
        .get()
        .await
        .expect("no error after the server expired the session");
    assert_ne!(first, pid(&client).await);
}
