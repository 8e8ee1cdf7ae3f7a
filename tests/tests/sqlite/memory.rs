//! In-memory databases: one per pool, shared by that pool's connections.

use std::time::Duration;

use pool_sqlite::{Pool, SqliteManager};

#[tokio::test]
async fn pooled_connections_share_one_memory_database() {
    let pool = pool_sqlite::pool("sqlite::memory:", 3).unwrap();
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    assert_eq!(pool.status().size, 2, "two distinct connections");

    a.interact(|c| c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (42);"))
        .await
        .unwrap()
        .unwrap();
    let x: i64 = b
        .interact(|c| c.query_row("SELECT x FROM t", [], |row| row.get(0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(x, 42);
}

#[tokio::test]
async fn two_pools_do_not_share_their_memory_databases() {
    for url in ["sqlite::memory:", ":memory:", "sqlite://:memory:"] {
        let one = pool_sqlite::pool(url, 2).unwrap();
        let two = pool_sqlite::pool(url, 2).unwrap();
        assert_ne!(one.manager().filename(), two.manager().filename());
        one.interact(|c| c.execute_batch("CREATE TABLE only_in_one (x)"))
            .await
            .unwrap();
        let err = two
            .interact(|c| c.execute_batch("SELECT * FROM only_in_one"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no such table"), "{url}: {err}");
        one.interact(|c| c.execute_batch("SELECT * FROM only_in_one"))
            .await
            .unwrap();
    }
}

#[test]
fn memory_database_outlives_closed_connections() {
    let pool = pool_sqlite::pool("sqlite::memory:", 2).unwrap();
    pool.interact_blocking(|c| c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);"))
        .unwrap();
    assert!(pool.close_idle() >= 1);
    assert_eq!(pool.status().size, 0, "no connection left open by the pool");
    let n: i64 = pool
        .interact_blocking(|c| c.query_row("SELECT count(*) FROM t", [], |row| row.get(0)))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn memory_writers_wait_for_each_other() {
    // With a shared cache, the second writer would fail at once with SQLITE_LOCKED; the memdb
    // VFS honours busy_timeout, so it waits for the first writer's commit.
    let manager = SqliteManager::from_url(":memory:")
        .unwrap()
        .busy_timeout(Duration::from_secs(10));
    let pool = Pool::new(manager, 2).unwrap();
    pool.interact_blocking(|c| c.execute_batch("CREATE TABLE t (x)"))
        .unwrap();

    let first = pool.get_blocking().unwrap();
    first
        .lock()
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
        .unwrap();
    let p = pool.clone();
    let second = std::thread::spawn(move || {
        p.interact_blocking(|c| c.execute("INSERT INTO t VALUES (2)", []))
    });
    std::thread::sleep(Duration::from_millis(100));
    first.lock().execute_batch("COMMIT").unwrap();
    drop(first);
    assert_eq!(second.join().unwrap().unwrap(), 1);
    let n: i64 = pool
        .interact_blocking(|c| c.query_row("SELECT count(*) FROM t", [], |row| row.get(0)))
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn clones_of_a_manager_share_its_memory_database() {
    let manager = SqliteManager::from_url("sqlite::memory:").unwrap();
    let one = Pool::new(manager.clone(), 1).unwrap();
    let two = Pool::new(manager, 1).unwrap();
    one.interact_blocking(|c| c.execute_batch("CREATE TABLE shared (x)"))
        .unwrap();
    two.interact_blocking(|c| c.execute_batch("SELECT * FROM shared"))
        .unwrap();
}
