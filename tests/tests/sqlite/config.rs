//! Malformed configuration and unopenable databases fail with typed errors, promptly.

use pool_core::{BuildError, PoolError};
use pool_sqlite::rusqlite::{ErrorCode, OpenFlags};
use pool_sqlite::{ConfigError, Pool, SqliteManager};

use crate::temp_db;

#[test]
fn malformed_urls_are_typed_errors() {
    let err = |url: &str| SqliteManager::from_url(url).unwrap_err();
    assert_eq!(
        err("mysql://root@127.0.0.1:3306/test"),
        ConfigError::UnsupportedScheme {
            scheme: "mysql".into()
        }
    );
    assert!(matches!(
        err("postgres://postgres@127.0.0.1/test"),
        ConfigError::UnsupportedScheme { .. }
    ));
    assert_eq!(err(""), ConfigError::EmptyPath);
    assert_eq!(err("sqlite://"), ConfigError::EmptyPath);
    assert_eq!(err("sqlite:"), ConfigError::EmptyPath);
    assert_eq!(err("sqlite://bad\0path"), ConfigError::NulByte);
    assert_eq!(
        err("sqlite::memory:?cache=shared"),
        ConfigError::MemoryWithQuery
    );

    assert!(matches!(
        pool_sqlite::pool("mysql://x", 2),
        Err(ConfigError::UnsupportedScheme { .. })
    ));
    assert_eq!(
        pool_sqlite::pool("sqlite::memory:", 0).unwrap_err(),
        ConfigError::Build(BuildError::ZeroMaxSize)
    );
    // Display names the problem (and is not empty for any variant).
    assert!(err("mysql://x").to_string().contains("mysql"));
}

#[test]
fn invalid_flags_are_typed_errors() {
    let err = SqliteManager::new("x.db", OpenFlags::SQLITE_OPEN_URI).unwrap_err();
    assert!(matches!(err, ConfigError::InvalidFlags { .. }), "{err:?}");
    let err = SqliteManager::new(
        "x.db",
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_CREATE,
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::InvalidFlags { .. }), "{err:?}");
    assert_eq!(
        SqliteManager::new("", OpenFlags::default()).unwrap_err(),
        ConfigError::EmptyPath
    );
}

#[test]
fn url_forms_open_the_same_file() {
    let (dir, _) = temp_db();
    let path = dir.path().join("forms.db");
    let plain = pool_sqlite::pool(path.to_str().unwrap(), 1).unwrap();
    plain
        .get_blocking()
        .unwrap()
        .lock()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (5);")
        .unwrap();
    for url in [
        format!("sqlite://{}", path.display()),
        format!("sqlite:{}", path.display()),
        format!("file:{}", path.display()),
        format!("sqlite://{}?mode=ro", path.display()),
    ] {
        let pool = pool_sqlite::pool(&url, 1).unwrap();
        let x: i64 = pool
            .get_blocking()
            .unwrap()
            .lock()
            .query_row("SELECT x FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(x, 5, "{url}");
    }
    // mode=ro really is read-only.
    let ro = pool_sqlite::pool(&format!("sqlite://{}?mode=ro", path.display()), 1).unwrap();
    let err = ro
        .get_blocking()
        .unwrap()
        .lock()
        .execute("INSERT INTO t VALUES (6)", [])
        .unwrap_err();
    assert_eq!(err.sqlite_error_code(), Some(ErrorCode::ReadOnly));
}

#[tokio::test]
async fn unopenable_path_fails_promptly_with_a_typed_error() {
    let (dir, _) = temp_db();
    let missing = dir.path().join("no/such/dir/test.db");
    let pool = pool_sqlite::pool(&format!("sqlite://{}", missing.display()), 2).unwrap();
    let err = pool.get().await.unwrap_err();
    let PoolError::Backend(e) = &err else {
        panic!("expected PoolError::Backend, got {err:?}");
    };
    assert_eq!(e.sqlite_error_code(), Some(ErrorCode::CannotOpen), "{e}");
    // Promptly: one attempt, not retried until the connect timeout.
    assert_eq!(pool.metrics().connect_failures, 1);
    assert_eq!(pool.metrics().timeouts, 0);
    // The error chain names the file once: PoolError's Display does not repeat it.
    assert!(!err.to_string().contains("test.db"), "{err}");
    assert!(e.to_string().contains("test.db"), "{e}");

    // Blocking API: same.
    let err = pool.get_blocking().unwrap_err();
    assert!(
        matches!(&err, PoolError::Backend(e) if e.sqlite_error_code() == Some(ErrorCode::CannotOpen))
            || matches!(err, PoolError::Unavailable { .. }),
        "{err:?}"
    );
}

#[test]
fn read_only_open_of_a_missing_file_fails() {
    let (dir, _) = temp_db();
    let manager = SqliteManager::new(
        dir.path().join("missing.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let pool = Pool::new(manager, 1).unwrap();
    let err = pool.get_blocking().unwrap_err();
    assert_eq!(
        err.backend().and_then(|e| e.sqlite_error_code()),
        Some(ErrorCode::CannotOpen),
        "{err:?}"
    );
    assert_eq!(pool.metrics().connect_failures, 1);
}

#[test]
fn file_that_is_not_a_database_fails_promptly() {
    let (dir, _) = temp_db();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x5a_u8; 8192]).unwrap();
    let pool = pool_sqlite::pool(path.to_str().unwrap(), 1).unwrap();
    let err = pool.get_blocking().unwrap_err();
    assert_eq!(
        err.backend().and_then(|e| e.sqlite_error_code()),
        Some(ErrorCode::NotADatabase),
        "{err:?}"
    );
    assert_eq!(pool.metrics().connect_failures, 1);
}

#[test]
fn debug_output_is_sane() {
    let manager = SqliteManager::from_url("sqlite::memory:")
        .unwrap()
        .init(|_| Ok(()));
    let s = format!("{manager:?}");
    assert!(
        s.contains("SqliteManager") && s.contains("busy_timeout") && s.contains("memdb"),
        "{s}"
    );
    let pool = Pool::new(manager, 1).unwrap();
    let conn = pool.get_blocking().unwrap();
    let s = format!("{:?}", *conn);
    assert!(
        s.contains("SqliteConn") && s.contains("broken: false"),
        "{s}"
    );
}
