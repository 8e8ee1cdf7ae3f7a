//! `MetricsExporter`: what a recorder installed behind the `metrics` facade receives.
#![cfg(feature = "metrics")]

mod common;

use common::pool;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use pool_core::MetricsExporter;

/// A recorded series: name, labels, value.
type Series = (String, Vec<(String, String)>, DebugValue);

#[tokio::test(start_paused = true)]
async fn occupancy_and_counters_reach_the_recorder_under_otel_names() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (pool, _fake) = pool(3);
    let held = pool.get().await.unwrap();
    drop(pool.get().await.unwrap());
    let _second = pool.get().await.unwrap();

    metrics::with_local_recorder(&recorder, || MetricsExporter::new("orders").record(&pool));

    let values: Vec<Series> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let k = key.key();
            let labels = k
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (k.name().to_owned(), labels, value)
        })
        .collect();
    let find = |name: &str, state: Option<&str>| {
        values
            .iter()
            .find(|(n, labels, _)| {
                n == name
                    && labels
                        .iter()
                        .any(|(k, v)| k == "db.client.connection.pool.name" && v == "orders")
                    && state.is_none_or(|s| {
                        labels
                            .iter()
                            .any(|(k, v)| k == "db.client.connection.state" && v == s)
                    })
            })
            .map(|(_, _, v)| v)
            .unwrap_or_else(|| panic!("{name} {state:?} not recorded: {values:?}"))
    };
    let gauge = |v: &DebugValue| match v {
        DebugValue::Gauge(g) => g.into_inner(),
        other => panic!("not a gauge: {other:?}"),
    };
    let counter = |v: &DebugValue| match v {
        DebugValue::Counter(c) => *c,
        other => panic!("not a counter: {other:?}"),
    };
    assert_eq!(gauge(find("db.client.connection.count", Some("used"))), 2.0);
    assert_eq!(gauge(find("db.client.connection.count", Some("idle"))), 0.0);
    assert_eq!(gauge(find("db.client.connection.max", None)), 3.0);
    assert_eq!(
        gauge(find("db.client.connection.pending_requests", None)),
        0.0
    );
    assert_eq!(counter(find("db.client.connection.creates", None)), 2);
    assert_eq!(counter(find("db.client.connection.timeouts", None)), 0);
    drop(held);
}
