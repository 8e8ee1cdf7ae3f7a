//! Per-connection initialisation: pragmas, busy timeout and the init hook.

use std::sync::atomic::Ordering;
use std::time::Duration;

use pool_core::PoolError;
use pool_sqlite::rusqlite::{self, Connection};
use pool_sqlite::{ErrorClass, InteractError, Pool, SqliteManager, Synchronous};

use crate::{counting_manager, temp_db};

#[derive(Debug, PartialEq)]
struct Pragmas {
    foreign_keys: i64,
    journal_mode: String,
    busy_timeout: i64,
    synchronous: i64,
}

fn pragmas(c: &Connection) -> Pragmas {
    let get_i = |name: &str| -> i64 {
        c.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .unwrap()
    };
    Pragmas {
        foreign_keys: get_i("foreign_keys"),
        journal_mode: c
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap(),
        busy_timeout: get_i("busy_timeout"),
        synchronous: get_i("synchronous"),
    }
}

#[test]
fn defaults_are_applied_to_every_connection() {
    let (_dir, url) = temp_db();
    let pool = pool_sqlite::pool(&url, 3).unwrap();
    // Hold three connections at once, so three distinct connections are checked.
    let conns: Vec<_> = (0..3).map(|_| pool.get_blocking().unwrap()).collect();
    assert_eq!(pool.status().size, 3);
    for conn in &conns {
        assert_eq!(
            pragmas(&conn.lock()),
            Pragmas {
                foreign_keys: 1,
                journal_mode: "wal".into(),
                busy_timeout: 5000,
                synchronous: Synchronous::Normal.as_number(),
            }
        );
    }
}

#[test]
fn settings_are_applied() {
    let (_dir, url) = temp_db();
    let manager = SqliteManager::from_url(&url)
        .unwrap()
        .busy_timeout(Duration::from_millis(1234))
        .foreign_keys(false)
        .wal(false)
        .synchronous(Synchronous::Full);
    let pool = Pool::new(manager, 2).unwrap();
    let conn = pool.get_blocking().unwrap();
    assert_eq!(
        pragmas(&conn.lock()),
        Pragmas {
            foreign_keys: 0,
            journal_mode: "delete".into(),
            busy_timeout: 1234,
            synchronous: 2,
        }
    );
}

#[tokio::test]
async fn foreign_keys_are_enforced_and_errors_classified() {
    let (_dir, url) = temp_db();
    let pool = pool_sqlite::pool(&url, 2).unwrap();
    pool.interact(|c| {
        c.execute_batch(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL REFERENCES parent (id));
             CREATE TABLE uniq (name TEXT UNIQUE);
             INSERT INTO uniq VALUES ('a');",
        )
    })
    .await
    .unwrap();

    let err = pool
        .interact(|c| c.execute("INSERT INTO child (id, parent) VALUES (1, 99)", []))
        .await
        .unwrap_err();
    let InteractError::Sqlite(e) = &err else {
        panic!("expected a SQLite error, got {err:?}");
    };
    assert_eq!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ConstraintViolation)
    );
    assert_eq!(
        pool_sqlite::classify(e),
        ErrorClass::Other,
        "a foreign key violation"
    );

    let err = pool
        .interact(|c| c.execute("INSERT INTO uniq VALUES ('a')", []))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::UniqueViolation, "{err:?}");
    let err = pool
        .interact(|c| c.execute("INSERT INTO parent (id) VALUES (1), (1)", []))
        .await
        .unwrap_err();
    assert_eq!(
        err.class(),
        ErrorClass::UniqueViolation,
        "primary key: {err:?}"
    );
}

#[test]
fn busy_database_is_a_deadlock_class_error() {
    let (_dir, url) = temp_db();
    let manager = SqliteManager::from_url(&url)
        .unwrap()
        .busy_timeout(Duration::from_millis(50));
    let pool = Pool::new(manager, 2).unwrap();
    let a = pool.get_blocking().unwrap();
    let b = pool.get_blocking().unwrap();
    a.lock().execute_batch("CREATE TABLE t (x)").unwrap();
    a.lock()
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
        .unwrap();
    let err = b
        .lock()
        .execute("INSERT INTO t VALUES (2)", [])
        .unwrap_err();
    assert_eq!(pool_sqlite::classify(&err), ErrorClass::Deadlock, "{err:?}");
    a.lock().execute_batch("COMMIT").unwrap();
    b.lock().execute("INSERT INTO t VALUES (2)", []).unwrap();
}

#[tokio::test]
async fn init_hook_runs_once_per_connection() {
    let (_dir, url) = temp_db();
    let (manager, opened) = counting_manager(&url);
    let manager = {
        // A second hook replaces the first: keep counting and set a per-connection pragma.
        let counter = opened.clone();
        manager.init(move |c| {
            counter.fetch_add(1, Ordering::SeqCst);
            c.execute_batch("PRAGMA cache_size = -1234")
        })
    };
    let pool = Pool::new(manager, 3).unwrap();

    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(pool.get().await.unwrap());
    }
    assert_eq!(opened.load(Ordering::SeqCst), 3);
    for conn in &conns {
        let cache: i64 = conn
            .interact(|c| c.query_row("PRAGMA cache_size", [], |row| row.get(0)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cache, -1234);
    }
    drop(conns);

    // Reusing connections does not run the hook again.
    for _ in 0..20 {
        pool.interact(|c| c.execute_batch("SELECT 1"))
            .await
            .unwrap();
    }
    assert_eq!(opened.load(Ordering::SeqCst), 3);
    assert_eq!(pool.metrics().connects, 3);
}

#[tokio::test]
async fn failing_init_hook_fails_the_connect_without_retries() {
    let (_dir, url) = temp_db();
    let manager = SqliteManager::from_url(&url)
        .unwrap()
        .init(|c| c.execute_batch("PRAGMA this is not sql"));
    let pool = Pool::new(manager, 2).unwrap();
    let err = pool.get().await.unwrap_err();
    let PoolError::Backend(e) = &err else {
        panic!("expected the hook's SQLite error, got {err:?}");
    };
    assert!(e.to_string().contains("syntax error"), "{e}");
    assert_eq!(
        pool.metrics().connect_failures,
        1,
        "a syntax error is not retried"
    );
}

#[test]
fn panicking_init_hook_is_a_connect_error() {
    let (_dir, url) = temp_db();
    let manager = SqliteManager::from_url(&url)
        .unwrap()
        .init(|_| panic!("hook exploded"));
    let pool = Pool::new(manager, 2).unwrap();
    let err = pool.get_blocking().unwrap_err();
    let e = err.backend().expect("a driver error");
    assert!(e.to_string().contains("hook exploded"), "{e}");
    assert_eq!(pool.metrics().connect_failures, 1);
}
