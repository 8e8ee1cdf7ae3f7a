//! `Config` deserialisation (feature `serde`): human-readable durations, documented defaults for
//! missing fields, unknown fields rejected, and a deserialised config builds a working pool.
#![cfg(feature = "serde")]

mod common;

use std::time::Duration;

use common::Fake;
use pool_core::{BuildError, Builder, Config, Pool};

#[test]
fn durations_are_human_readable_and_missing_fields_take_the_defaults() {
    let cfg: Config = serde_json::from_str(
        r#"{ "max_size": 16, "wait_timeout": "250ms", "idle_timeout": "5m", "max_lifetime": null, "name": "api" }"#,
    )
    .unwrap();
    assert_eq!(cfg.max_size, 16);
    assert_eq!(cfg.wait_timeout, Duration::from_millis(250));
    assert_eq!(cfg.idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(cfg.max_lifetime, None);
    assert_eq!(cfg.name, "api");
    let defaults = Config::default();
    assert_eq!(cfg.connect_timeout, defaults.connect_timeout);
    assert_eq!(cfg.validate_after_idle, defaults.validate_after_idle);
    assert_eq!(cfg.min_idle, defaults.min_idle);
}

#[test]
fn unknown_fields_are_rejected() {
    let err = serde_json::from_str::<Config>(r#"{ "max_sise": 4 }"#).unwrap_err();
    assert!(err.to_string().contains("max_sise"), "{err}");
}

#[test]
fn round_trips_through_serialisation() {
    let mut cfg = Config::default();
    cfg.max_size = 3;
    cfg.leak_threshold = Some(Duration::from_secs(2));
    let text = serde_json::to_string(&cfg).unwrap();
    assert!(text.contains("\"2s\""), "{text}");
    assert_eq!(serde_json::from_str::<Config>(&text).unwrap(), cfg);
}

#[tokio::test]
async fn a_deserialised_config_builds_a_pool_and_bad_values_are_typed_errors() {
    let cfg: Config = serde_json::from_str(r#"{ "max_size": 2, "min_idle": 1 }"#).unwrap();
    let fake = Fake::new();
    let pool: Pool<Fake> = Builder::from_config(fake.clone(), cfg).build().unwrap();
    assert_eq!(pool.status().max_size, 2);
    let conn = pool.get().await.unwrap();
    drop(conn);

    let bad: Config = serde_json::from_str(r#"{ "max_size": 2, "min_idle": 3 }"#).unwrap();
    assert_eq!(
        Builder::from_config(fake, bad).build().unwrap_err(),
        BuildError::MinIdleExceedsMaxSize {
            min_idle: 3,
            max_size: 2
        }
    );
}

#[test]
fn optional_durations_switch_off_with_off_and_forever_means_no_bound() {
    let cfg: Config = serde_json::from_str(
        r#"{ "idle_timeout": "off", "max_lifetime": "off", "wait_timeout": "forever", "leak_threshold": "30s" }"#,
    )
    .unwrap();
    assert_eq!(cfg.idle_timeout, None);
    assert_eq!(cfg.max_lifetime, None);
    assert_eq!(cfg.wait_timeout, Duration::MAX);
    assert_eq!(cfg.leak_threshold, Some(Duration::from_secs(30)));
    let text = serde_json::to_string(&cfg).unwrap();
    assert!(text.contains(r#""idle_timeout":"off""#), "{text}");
    assert!(text.contains(r#""wait_timeout":"forever""#), "{text}");
    assert_eq!(serde_json::from_str::<Config>(&text).unwrap(), cfg);
    let err = serde_json::from_str::<Config>(r#"{ "idle_timeout": "sometimes" }"#).unwrap_err();
    assert!(
        err.to_string().contains("30s"),
        "the error shows the syntax: {err}"
    );
}

/// `Status` and `Metrics` serialize (for a `/status` endpoint or a log line), the wait
/// histogram with them.
#[tokio::test]
async fn status_and_metrics_serialize() {
    let pool = Pool::builder(Fake::new()).max_size(2).build().unwrap();
    let held = pool.get().await.unwrap();
    let status = serde_json::to_value(pool.status()).unwrap();
    assert_eq!(status["in_use"], 1, "{status}");
    assert_eq!(status["max_size"], 2, "{status}");
    let metrics = serde_json::to_value(pool.metrics()).unwrap();
    assert_eq!(metrics["gets"], 1, "{metrics}");
    assert_eq!(metrics["connects"], 1, "{metrics}");
    assert!(metrics["wait_histogram"]["counts"].is_array(), "{metrics}");
    drop(held);
}
