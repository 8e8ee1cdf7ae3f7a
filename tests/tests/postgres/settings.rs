//! `Settings`: the whole configuration from a TOML file and from environment variables, the
//! password never in `Debug`, typed errors for what cannot work, and a pool built from it
//! whose sessions carry the settings.

use std::time::Duration;

use pool_postgres::{ConfigError, ResetMode, Settings, TargetRole};

const FILE: &str = r#"
url = "postgres://app:in-url-secret@db.internal:6432/app?pgbouncer=true"
password = "file-secret"
application_name = "orders"
reset_mode = "discard-all"
statement_cache_capacity = 64
target_role = "primary"
max_replication_lag = "off"

[pool]
max_size = 16
wait_timeout = "2s"
idle_timeout = "off"
"#;

#[test]
fn a_toml_file_gives_every_setting_and_debug_hides_both_passwords() {
    let settings: Settings = toml::from_str(FILE).expect("settings file");
    assert_eq!(settings.application_name.as_deref(), Some("orders"));
    assert_eq!(settings.reset_mode, ResetMode::DiscardAll);
    assert_eq!(settings.statement_cache_capacity, Some(64));
    assert_eq!(settings.target_role, Some(TargetRole::ReadWrite));
    assert_eq!(settings.max_replication_lag, None);
    assert_eq!(settings.pool.max_size, 16);
    assert_eq!(settings.pool.wait_timeout, Duration::from_secs(2));
    assert_eq!(settings.pool.idle_timeout, None);

    let debug = format!("{settings:?}");
    assert!(!debug.contains("secret"), "{debug}");
    assert!(debug.contains("orders"), "{debug}");

    let manager = settings.manager().expect("manager");
    assert!(manager.is_pgbouncer(), "the URL's pgbouncer=true is kept");
    let config = manager.config();
    assert_eq!(
        config.get_password(),
        Some(&b"file-secret"[..]),
        "the password on its own overrides the URL's"
    );
    assert_eq!(config.get_application_name(), Some("orders"));
    assert!(!format!("{manager:?}").contains("secret"));
}

#[test]
fn a_file_with_an_unknown_key_or_a_bad_word_is_rejected_with_its_name() {
    let err = toml::from_str::<Settings>("url = \"postgres://h/db\"\napplication = \"x\"\n")
        .expect_err("unknown key");
    assert!(err.to_string().contains("application"), "{err}");
    let err = toml::from_str::<Settings>("reset_mode = \"sometimes\"\n").expect_err("bad mode");
    assert!(err.to_string().contains("sometimes"), "{err}");
    let err = toml::from_str::<Settings>("[pool]\nmax_sise = 3\n").expect_err("pool typo");
    assert!(err.to_string().contains("max_sise"), "{err}");
    let json: Settings = serde_json::from_str(
        r#"{"host": "127.0.0.1", "search_path": ["a", "b"], "pool": {"max_size": 3}}"#,
    )
    .expect("json");
    assert_eq!(json.search_path, ["a", "b"]);
}

#[test]
fn environment_variables_override_and_name_the_bad_one() {
    let mut settings: Settings = toml::from_str(FILE).expect("settings file");
    settings
        .apply_vars(
            "APP_DB_",
            [
                ("APP_DB_PASSWORD", "env-secret"),
                ("APP_DB_RESET_MODE", "rollback"),
                ("APP_DB_TARGET_ROLE", "prefer-standby"),
                ("APP_DB_MAX_REPLICATION_LAG", "5s"),
                ("APP_DB_MAX_SIZE", "4"),
                ("APP_DB_IDLE_TIMEOUT", "10m"),
                ("APP_DB_SOMETHING_ELSE", "ignored"),
                ("OTHER_MAX_SIZE", "99"),
            ],
        )
        .expect("vars");
    assert_eq!(settings.password.as_deref(), Some("env-secret"));
    assert_eq!(settings.reset_mode, ResetMode::Rollback);
    assert_eq!(settings.target_role, Some(TargetRole::PreferStandby));
    assert_eq!(settings.max_replication_lag, Some(Duration::from_secs(5)));
    assert_eq!(settings.pool.max_size, 4);
    assert_eq!(settings.pool.idle_timeout, Some(Duration::from_secs(600)));
    assert!(!format!("{settings:?}").contains("secret"));

    let err = Settings::from_vars("APP_DB_", [("APP_DB_PORT", "http")]).expect_err("bad port");
    match &err {
        ConfigError::Env(e) => assert_eq!(e.var, "APP_DB_PORT"),
        other => panic!("expected an Env error, got {other:?}"),
    }
    let err = Settings::from_vars("APP_DB_", [("APP_DB_WAIT_TIMEOUT", "soon")]).expect_err("pool");
    assert!(err.to_string().contains("APP_DB_WAIT_TIMEOUT"), "{err}");
}

#[test]
fn settings_that_cannot_work_are_typed_errors() {
    let none = Settings::default();
    assert!(matches!(none.manager(), Err(ConfigError::NoServer)));

    let twice = Settings::from_vars(
        "P_",
        [("P_URL", "postgres://h:5433/db"), ("P_PORT", "5432")],
    )
    .unwrap();
    assert!(matches!(
        twice.manager(),
        Err(ConfigError::SetTwice("port"))
    ));

    let bouncer_path = Settings::from_vars(
        "P_",
        [
            ("P_HOST", "h"),
            ("P_PGBOUNCER", "true"),
            ("P_SEARCH_PATH", "app, public"),
        ],
    )
    .unwrap();
    assert_eq!(bouncer_path.search_path, ["app", "public"]);
    assert!(matches!(
        bouncer_path.manager(),
        Err(ConfigError::PgBouncerStartupOptions)
    ));

    let zero = Settings::from_vars("P_", [("P_HOST", "h"), ("P_MAX_SIZE", "0")]).unwrap();
    assert!(matches!(zero.build(), Err(ConfigError::Pool(_))));

    let bad_url =
        Settings::from_vars("P_", [("P_URL", "postgres://u:hunter2@h:notaport/db")]).unwrap();
    let err = bad_url.manager().expect_err("malformed URL");
    assert!(matches!(err, ConfigError::Url(_)), "{err:?}");
    assert!(!format!("{err:?} {err}").contains("hunter2"));
}

/// A pool built from parts (no URL) reaches the server and every session carries the
/// settings: application name, search path, pool size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_built_from_settings_carries_them_into_every_session() {
    let Some(url) = super::util::url() else {
        return;
    };
    let (host, port) = pool_tests::host_port(&url).expect("host and port of POOL_TEST_PG_URL");
    let base: pool_postgres::tokio_postgres::Config = url.parse().expect("url");
    let app = pool_tests::unique_name("settings");
    let mut vars = vec![
        ("T_HOST".to_owned(), host),
        ("T_PORT".to_owned(), port.to_string()),
        ("T_APPLICATION_NAME".to_owned(), app.clone()),
        ("T_SEARCH_PATH".to_owned(), "pg_catalog, public".to_owned()),
        ("T_MAX_SIZE".to_owned(), "2".to_owned()),
        ("T_WAIT_TIMEOUT".to_owned(), "10s".to_owned()),
    ];
    if let Some(user) = base.get_user() {
        vars.push(("T_USER".to_owned(), user.to_owned()));
    }
    if let Some(db) = base.get_dbname() {
        vars.push(("T_DBNAME".to_owned(), db.to_owned()));
    }
    if let Some(pw) = base.get_password() {
        vars.push((
            "T_PASSWORD".to_owned(),
            String::from_utf8_lossy(pw).into_owned(),
        ));
    }
    let pool = Settings::from_vars("T_", vars)
        .expect("vars")
        .build()
        .expect("pool");
    assert_eq!(pool.status().max_size, 2);

    let (a, b) = (
        pool.get().await.expect("first"),
        pool.get().await.expect("second"),
    );
    for client in [&a, &b] {
        let row = client
            .query_one(
                "SELECT current_setting('application_name'), current_setting('search_path')",
                &[],
            )
            .await
            .expect("settings");
        assert_eq!(row.get::<_, String>(0), app);
        assert_eq!(row.get::<_, String>(1), "\"pg_catalog\",\"public\"");
    }
    let third = pool.get_timeout(Duration::from_millis(100)).await;
    assert!(third.is_err(), "max_size 2 from the environment holds");
}
