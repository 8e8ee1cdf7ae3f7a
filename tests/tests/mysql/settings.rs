//! `Settings`: the whole configuration from a TOML file and from environment variables, the
//! password never in `Debug`, and a pool built from it whose sessions carry the settings
//! (a password given on its own, `time_zone`, `sql_mode`, the pool's size).

use std::time::Duration;

use pool_mysql::mysql_async::prelude::*;
use pool_mysql::{ConfigError, ResetMode, Settings};

#[test]
fn a_toml_file_and_the_environment_give_every_setting_and_debug_hides_passwords() {
    let mut settings: Settings = toml::from_str(
        r#"
        url = "mysql://app:url-secret@db.internal:3307/app"
        sql_mode = "STRICT_ALL_TABLES"
        time_zone = "+00:00"
        reset_mode = "reset-connection"
        [pool]
        max_size = 12
        max_lifetime = "off"
        "#,
    )
    .expect("settings file");
    assert_eq!(settings.reset_mode, ResetMode::ResetConnection);
    assert_eq!(settings.pool.max_size, 12);
    assert_eq!(settings.pool.max_lifetime, None);
    settings
        .apply_vars(
            "APP_DB_",
            [
                ("APP_DB_PASSWORD", "env-secret"),
                ("APP_DB_RESET_MODE", "rollback"),
                ("APP_DB_WAIT_TIMEOUT", "750ms"),
            ],
        )
        .expect("vars");
    assert_eq!(settings.reset_mode, ResetMode::Rollback);
    assert_eq!(settings.pool.wait_timeout, Duration::from_millis(750));
    let debug = format!("{settings:?}");
    assert!(!debug.contains("secret"), "{debug}");
    let manager = settings.manager().expect("manager");
    assert_eq!(manager.opts().pass(), Some("env-secret"));
    assert_eq!(manager.opts().tcp_port(), 3307);
    assert!(!format!("{manager:?}").contains("secret"));

    let err = toml::from_str::<Settings>("sql_mod = \"x\"\n").expect_err("unknown key");
    assert!(err.to_string().contains("sql_mod"), "{err}");
    let err = toml::from_str::<Settings>("reset_mode = \"auto\"\n").expect_err("bad word");
    assert!(err.to_string().contains("session, rollback"), "{err}");
    let err = Settings::from_vars("M_", [("M_RESET_MODE", "never")]).expect_err("bad var");
    assert!(
        matches!(&err, ConfigError::Env(e) if e.var == "M_RESET_MODE"),
        "{err:?}"
    );
    assert!(matches!(
        Settings::default().manager(),
        Err(ConfigError::NoServer)
    ));
    let err = Settings::from_vars("M_", [("M_URL", "mysql://u:hunter2@h:port/db")])
        .unwrap()
        .manager()
        .expect_err("malformed URL");
    assert!(matches!(err, ConfigError::Url(_)), "{err:?}");
    assert!(!format!("{err:?} {err}").contains("hunter2"));
}

/// The URL without its password and the password on its own (as a secret would come), with
/// session settings: every pooled session carries them, and a wrong password is the driver's
/// access-denied error, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_built_from_settings_carries_them_into_every_session() {
    let Some(url) = super::util::url() else {
        return;
    };
    let user = super::util::TestUser::create(&url).await;
    let opts = user.opts();
    let opts = pool_mysql::mysql_async::Opts::from(opts);
    let host = opts.ip_or_hostname().to_string();
    let vars = |password: &str| {
        vec![
            ("T_HOST".to_owned(), host.clone()),
            ("T_PORT".to_owned(), opts.tcp_port().to_string()),
            ("T_USER".to_owned(), user.name.clone()),
            ("T_PASSWORD".to_owned(), password.to_owned()),
            (
                "T_DBNAME".to_owned(),
                opts.db_name().unwrap_or("test").to_owned(),
            ),
            ("T_TIME_ZONE".to_owned(), "+03:00".to_owned()),
            ("T_SQL_MODE".to_owned(), "ANSI_QUOTES".to_owned()),
            ("T_MAX_SIZE".to_owned(), "2".to_owned()),
            ("T_WAIT_TIMEOUT".to_owned(), "10s".to_owned()),
        ]
    };
    let pool = Settings::from_vars("T_", vars(&user.password))
        .expect("vars")
        .build()
        .expect("pool");
    assert_eq!(pool.status().max_size, 2);
    let (mut a, mut b) = (
        pool.get().await.expect("first"),
        pool.get().await.expect("second"),
    );
    for conn in [&mut a, &mut b] {
        let (zone, mode): (String, String) = conn
            .query_first("SELECT @@session.time_zone, @@session.sql_mode")
            .await
            .expect("session settings")
            .expect("a row");
        assert_eq!(zone, "+03:00");
        assert!(mode.contains("ANSI_QUOTES"), "{mode}");
    }
    assert!(
        pool.get_timeout(Duration::from_millis(100)).await.is_err(),
        "max_size 2 from the environment holds"
    );
    drop((a, b));
    pool.close();

    let wrong = Settings::from_vars("T_", vars("not-the-password"))
        .expect("vars")
        .build()
        .expect("pool");
    let err = wrong.get().await.expect_err("wrong password");
    let report = pool_mysql::Report::new(&err).to_string();
    assert!(!format!("{err:?} {report}").contains("not-the-password"));
    assert!(report.contains("Access denied"), "{report}");
    wrong.close();
    user.drop_user().await;
}
