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

/// The values a histogram series received since the last snapshot, by name.
fn histogram_values(
    snapshotter: &metrics_util::debugging::Snapshotter,
) -> std::collections::HashMap<String, Vec<f64>> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Histogram(v) => Some((
                key.key().name().to_owned(),
                v.into_iter().map(|f| f.into_inner()).collect(),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn wait_and_use_time_histograms_pass_on_what_is_new() {
    use std::time::Duration;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let exporter = MetricsExporter::new("orders");
    let (pool, _fake) = pool(1);
    let held = pool.get().await.unwrap();
    let p = pool.clone();
    let waiter = tokio::spawn(async move { drop(p.get().await.unwrap()) });
    common::settle().await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    drop(held); // held 3 ms; the waiter waited 3 ms and holds for no time
    waiter.await.unwrap();
    metrics::with_local_recorder(&recorder, || exporter.record(&pool));
    let first = histogram_values(&snapshotter);
    // 3 ms lies in the 2.05-4.10 ms bucket, passed on as its upper bound.
    assert_eq!(first["db.client.connection.wait_time"], vec![0.004_096]);
    let mut uses = first["db.client.connection.use_time"].clone();
    uses.sort_by(f64::total_cmp);
    assert_eq!(uses, vec![0.000_001, 0.004_096]);

    // A second record passes on only the new hold.
    let c = pool.get().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(c);
    metrics::with_local_recorder(&recorder, || exporter.record(&pool));
    let second = histogram_values(&snapshotter);
    assert_eq!(
        second
            .get("db.client.connection.wait_time")
            .map(Vec::len)
            .unwrap_or(0),
        0,
        "{second:?}"
    );
    assert_eq!(second["db.client.connection.use_time"], vec![0.131_072]);
}
