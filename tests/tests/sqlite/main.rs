//! Integration tests of `pool-sqlite` against real SQLite databases (files in temporary
//! directories, and in-memory databases). No server needed.
//!
//! Run: `cargo test -p pool-tests --test sqlite`.

mod basic;
mod concurrency;
mod config;
mod health;
mod init;
mod memory;
mod retry;
mod runtime;
mod settings;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pool_sqlite::{rusqlite, Pool, SqliteManager};
use tempfile::TempDir;

/// A temporary directory and the URL of a (not yet created) database file in it. Keep the
/// directory alive for as long as the database is used.
pub(crate) fn temp_db() -> (TempDir, String) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let url = format!("sqlite://{}", db_path(&dir).display());
    (dir, url)
}

pub(crate) fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("test.db")
}

/// A manager whose init hook counts the connections it opens.
pub(crate) fn counting_manager(url: &str) -> (SqliteManager, Arc<AtomicUsize>) {
    let opened = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&opened);
    let manager = SqliteManager::from_url(url)
        .expect("valid URL")
        .init(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
    (manager, opened)
}

/// A file-backed pool with a table `items (id INTEGER PRIMARY KEY, v INTEGER)`.
pub(crate) fn pool_with_table(max_size: usize) -> (TempDir, Pool) {
    let (dir, url) = temp_db();
    let pool = pool_sqlite::pool(&url, max_size).expect("build the pool");
    {
        let conn = pool.get_blocking().expect("first connection");
        conn.lock()
            .execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, v INTEGER)")
            .expect("create table");
    }
    (dir, pool)
}

pub(crate) fn count_items(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM items", [], |row| row.get(0))
        .expect("count rows")
}

#[test]
fn pool_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<pool_sqlite::Pool>();
    send_sync::<pool_sqlite::Pooled>();
    send_sync::<pool_sqlite::SqliteConn>();
    send_sync::<pool_sqlite::SqliteManager>();
    send_sync::<pool_sqlite::Error>();
    send_sync::<pool_sqlite::InteractError>();
    send_sync::<pool_sqlite::ConfigError>();
}

#[test]
fn interact_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let pool = pool_sqlite::pool("sqlite::memory:", 1).unwrap();
    let fut = pool.interact(|c| c.execute_batch("SELECT 1"));
    send(&fut);
    let policy = pool_sqlite::RetryPolicy::default();
    let fut = pool_sqlite::retry(&pool, &policy, |c| c.execute_batch("SELECT 1"));
    send(&fut);
    let get = pool.get();
    send(&get);
}
