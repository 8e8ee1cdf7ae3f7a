//! A query through the pool, with each API.

use pool_sqlite::rusqlite::params;

use crate::{count_items, pool_with_table, temp_db};

#[tokio::test]
async fn query_through_the_pool_async() {
    let (_dir, pool) = pool_with_table(2);
    pool.interact(|c| c.execute("INSERT INTO items (v) VALUES (?1), (?2)", params![1, 2]))
        .await
        .unwrap();

    let conn = pool.get().await.unwrap();
    let sum: i64 = conn
        .interact(|c| c.query_row("SELECT sum(v) FROM items", [], |row| row.get(0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sum, 3);
}

#[test]
fn query_through_the_pool_blocking() {
    let (_dir, pool) = pool_with_table(2);
    {
        let conn = pool.get_blocking().unwrap();
        let c = conn.lock();
        c.execute("INSERT INTO items (v) VALUES (?1)", [40])
            .unwrap();
        assert_eq!(count_items(&c), 1);
    }
    let v: i64 = pool
        .interact_blocking(|c| c.query_row("SELECT v + 2 FROM items", [], |row| row.get(0)))
        .unwrap();
    assert_eq!(v, 42);
}

#[tokio::test]
async fn data_persists_in_the_file_across_pools() {
    let (_dir, url) = temp_db();
    let pool = pool_sqlite::pool(&url, 1).unwrap();
    pool.interact(|c| c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (7)"))
        .await
        .unwrap();
    pool.close();
    assert!(pool.is_closed());

    let again = pool_sqlite::pool(&url, 1).unwrap();
    let x: i64 = again
        .interact(|c| c.query_row("SELECT x FROM t", [], |row| row.get(0)))
        .await
        .unwrap();
    assert_eq!(x, 7);
}

#[tokio::test]
async fn sqlite_errors_are_returned_typed() {
    let (_dir, pool) = pool_with_table(1);
    let err = pool
        .interact(|c| c.execute_batch("SELECT * FROM no_such_table"))
        .await
        .unwrap_err();
    match err {
        pool_sqlite::InteractError::Sqlite(e) => {
            assert!(e.to_string().contains("no_such_table"), "{e}");
        }
        other => panic!("expected a SQLite error, got {other:?}"),
    }
    // The connection is fine afterwards.
    let one: i64 = pool
        .interact(|c| c.query_row("SELECT 1", [], |row| row.get(0)))
        .await
        .unwrap();
    assert_eq!(one, 1);
}

/// `held()` (and so leak warnings) name the line that called `interact`, not pool-sqlite's own
/// `get` inside it, for the async and the blocking form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_names_the_interact_call_site() {
    let (_dir, pool) = pool_with_table(2);
    let p = pool.clone();
    let line = line!() + 1;
    let held = pool.interact(move |_| Ok(p.held())).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].location.file(), held[0].location.line()),
        (file!(), line)
    );

    let p = pool.clone();
    let (held, line) = tokio::task::spawn_blocking(move || {
        let q = p.clone();
        let line = line!() + 1;
        let held = p.interact_blocking(move |_| Ok(q.held())).unwrap();
        (held, line)
    })
    .await
    .unwrap();
    assert_eq!(
        (held[0].location.file(), held[0].location.line()),
        (file!(), line)
    );
}
