//! Queries, per-connection init, concurrency, and connections the server closes while idle.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_mysql::mysql_async::prelude::*;
use pool_mysql::{Manager, Pool};
use tokio::sync::Mutex;

use crate::util::{admin, url, TestUser};

#[tokio::test]
async fn one_line_pool_runs_a_query() {
    let Some(url) = url() else { return };
    let pool = pool_mysql::pool(&url, 2).expect("pool");
    let mut conn = pool.get().await.expect("get");
    let two: Option<i64> = conn.query_first("SELECT 1 + 1").await.expect("query");
    assert_eq!(two, Some(2));
}

#[tokio::test]
async fn sql_mode_time_zone_and_init_hook_apply_to_every_connection() {
    let Some(url) = url() else { return };
    let manager = Manager::from_url(&url)
        .unwrap()
        .sql_mode("STRICT_ALL_TABLES,NO_ZERO_DATE")
        .time_zone("+03:00")
        .init(|conn| Box::pin(async move { conn.query_drop("SET @pool_init = 'it''s me'").await }));
    let pool = Pool::builder(manager).max_size(2).build().unwrap();
    let mut a = pool.get().await.unwrap();
    let mut b = pool.get().await.unwrap();
    for conn in [&mut a, &mut b] {
        let row: (String, String, String) = conn
            .query_first("SELECT @@SESSION.sql_mode, @@SESSION.time_zone, @pool_init")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.0, "STRICT_ALL_TABLES,NO_ZERO_DATE");
        assert_eq!(row.1, "+03:00");
        assert_eq!(row.2, "it's me");
    }
    assert_ne!(a.id(), b.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_never_exceed_max_size_on_the_server() {
    let Some(url) = url() else { return };
    let user = TestUser::create(&url).await;
    let pool = Pool::builder(Manager::new(user.opts()))
        .max_size(4)
        .wait_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let admin = Arc::new(Mutex::new(admin(&url).await));
    let peak = Arc::new(AtomicI64::new(0));
    let user = Arc::new(user);
    let mut tasks = Vec::new();
    for i in 0..24i64 {
        let (pool, admin, peak, user) = (pool.clone(), admin.clone(), peak.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let mut conn = pool.get().await.expect("get");
                let got: Option<i64> = conn.exec_first("SELECT ?", (i,)).await.expect("query");
                assert_eq!(got, Some(i));
                let seen = user.sessions(&mut *admin.lock().await).await;
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
    drop(pool);
    Arc::try_unwrap(user).ok().unwrap().drop_user().await;
}

#[tokio::test]
async fn connection_killed_while_idle_is_replaced_silently() {
    let Some(url) = url() else { return };
    let pool = Pool::builder(Manager::from_url(&url).unwrap())
        .max_size(1)
        .validate_after_idle(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    let first = pool.get().await.unwrap().id();
    let mut admin = admin(&url).await;
    admin.query_drop(format!("KILL {first}")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut conn = pool.get().await.expect("a fresh connection, no error");
    let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    assert_ne!(first, conn.id());
    // Caught at checkout by the dead-peer probe (no round trip), else (a connection whose socket
    // could not be told apart while other tests opened theirs) by the ping at checkout.
    let metrics = pool.metrics();
    assert!(
        metrics.closed_broken + metrics.closed_invalid + metrics.closed_reset_failed >= 1,
        "{metrics:?}"
    );
}

#[tokio::test]
async fn server_side_wait_timeout_is_handled() {
    let Some(url) = url() else { return };
    let manager = Manager::from_url(&url).unwrap().init(|conn| {
        Box::pin(async move { conn.query_drop("SET SESSION wait_timeout = 1").await })
    });
    let pool = Pool::builder(manager)
        .max_size(1)
        .validate_after_idle(Some(Duration::from_millis(500)))
        .build()
        .unwrap();
    let first = pool.get().await.unwrap().id();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut conn = pool
        .get()
        .await
        .expect("no error after the server expired the session");
    let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    assert_ne!(first, conn.id());
}
