//! `Settings`: the whole configuration from a TOML file and from environment variables, typed
//! errors for what cannot work, and a pool built from it whose connections carry every
//! setting.

use std::time::Duration;

use pool_sqlite::{ConfigError, Settings, Synchronous};

use crate::temp_db;

#[test]
fn a_file_and_the_environment_configure_every_connection() {
    let (_dir, url) = temp_db();
    let mut settings: Settings = toml::from_str(&format!(
        r#"
        url = "{url}"
        busy_timeout = "1500ms"
        foreign_keys = false
        wal = false
        synchronous = "extra"
        [pool]
        max_size = 3
        idle_timeout = "off"
        "#
    ))
    .expect("settings file");
    assert_eq!(settings.synchronous, Synchronous::Extra);
    assert_eq!(settings.pool.idle_timeout, None);
    settings
        .apply_vars(
            "APP_DB_",
            [("APP_DB_SYNCHRONOUS", "FULL"), ("APP_DB_MAX_SIZE", "2")],
        )
        .expect("vars");
    let pool = settings.build().expect("pool");
    assert_eq!(pool.status().max_size, 2);
    let (busy, fk, journal, sync) = pool
        .interact_blocking(|conn| {
            let busy: i64 = conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?;
            let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
            let journal: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            Ok((busy, fk, journal, sync))
        })
        .expect("pragmas");
    assert_eq!(busy, 1500);
    assert_eq!(fk, 0);
    assert_ne!(journal.to_ascii_lowercase(), "wal");
    assert_eq!(sync, Synchronous::Full.as_number());

    let defaults = Settings::from_vars("D_", [("D_URL", url.as_str())])
        .expect("vars")
        .build()
        .expect("pool");
    let (fk, journal): (i64, String) = defaults
        .interact_blocking(|conn| {
            Ok((
                conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?,
                conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
            ))
        })
        .expect("pragmas");
    assert_eq!((fk, journal.to_ascii_lowercase().as_str()), (1, "wal"));
}

#[test]
fn settings_that_cannot_work_are_typed_errors() {
    assert_eq!(
        Settings::default().manager().unwrap_err(),
        ConfigError::EmptyPath
    );
    let err = Settings::from_vars("S_", [("S_URL", "postgres://h/db")])
        .unwrap()
        .build()
        .unwrap_err();
    assert!(
        matches!(err, ConfigError::UnsupportedScheme { .. }),
        "{err:?}"
    );
    let err = Settings::from_vars("S_", [("S_WAL", "perhaps")]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Env(e) if e.var == "S_WAL"),
        "{err:?}"
    );
    let err = Settings::from_vars("S_", [("S_BUSY_TIMEOUT", "soon")]).unwrap_err();
    assert!(err.to_string().contains("S_BUSY_TIMEOUT"), "{err}");
    let err = toml::from_str::<Settings>("synchronous = \"sometimes\"\n").unwrap_err();
    assert!(
        err.to_string().contains("off, normal, full or extra"),
        "{err}"
    );
    let err = toml::from_str::<Settings>("journal = \"wal\"\n").unwrap_err();
    assert!(err.to_string().contains("journal"), "{err}");
    let zero = Settings::from_vars("S_", [("S_URL", "sqlite::memory:"), ("S_MAX_SIZE", "0")])
        .unwrap()
        .build();
    assert!(matches!(zero, Err(ConfigError::Build(_))));
    let json: Settings =
        serde_json::from_str(r#"{"url": "sqlite::memory:", "busy_timeout": "forever"}"#)
            .expect("json");
    assert_eq!(json.busy_timeout, Duration::MAX);
    // "forever" reaches SQLite as its largest timeout, not as a panic.
    let busy: i64 = json
        .build()
        .expect("pool")
        .interact_blocking(|conn| conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0)))
        .expect("busy_timeout");
    assert_eq!(busy, i64::from(i32::MAX));
}
