//! The `pool.get` span. Alone in its test binary: tracing caches whether a callsite is enabled
//! process-wide, and a test on another thread without a subscriber could make it cache "never"
//! while this one installs its thread's subscriber.

mod common;

use std::time::Duration;

use common::{pool, settle};
use tokio::time::sleep;

/// What a subscriber saw of `pool.get` spans: for each, its fields and how often it was
/// entered, and whether it closed.
#[derive(Default, Debug, Clone)]
struct GetSpan {
    fields: Vec<(String, String)>,
    enters: u32,
    closed: bool,
}

#[derive(Default, Clone)]
struct SpanLog(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u64, GetSpan>>>);

struct FieldText<'a>(&'a mut Vec<(String, String)>);

impl tracing::field::Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanLog {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() == "pool.get" {
            let mut s = GetSpan::default();
            attrs.record(&mut FieldText(&mut s.fields));
            self.0.lock().unwrap().insert(id.into_u64(), s);
        }
    }
    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(s) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut FieldText(&mut s.fields));
        }
    }
    fn on_enter(&self, id: &tracing::span::Id, _: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(s) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            s.enters += 1;
        }
    }
    fn on_close(&self, id: tracing::span::Id, _: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(s) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            s.closed = true;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_get_span_covers_the_whole_wait_and_fast_gets_too() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let log = SpanLog::default();
    let subscriber = tracing_subscriber::registry()
        .with(log.clone())
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    let _default = tracing::subscriber::set_default(subscriber);

    let (pool, _fake) = pool(1);
    let first = pool.get().await.unwrap(); // connects
    let id = first.id;
    drop(first);
    let again = pool.get().await.unwrap(); // idle (or the per-thread fast path)
    let p = pool.clone();
    let queued = tokio::spawn(async move { p.get().await.map(|c| c.id) });
    settle().await;
    // The queued request's span is open while it waits.
    {
        let spans = log.0.lock().unwrap();
        let open: Vec<_> = spans.values().filter(|s| !s.closed).collect();
        assert_eq!(open.len(), 1, "{spans:?}");
        assert!(
            open[0]
                .fields
                .iter()
                .any(|(k, v)| k == "queued" && v == "true"),
            "{open:?}"
        );
    }
    sleep(Duration::from_millis(20)).await;
    drop(again);
    assert_eq!(queued.await.unwrap().unwrap(), id);
    let spans = log.0.lock().unwrap();
    assert_eq!(
        spans.len(),
        3,
        "one span per get, the fast one included: {spans:?}"
    );
    for s in spans.values() {
        assert!(s.closed, "{spans:?}");
        assert!(
            s.fields
                .iter()
                .any(|(k, v)| k == "conn" && *v == id.to_string()),
            "every span names the connection it got: {spans:?}"
        );
        assert!(s.fields.iter().any(|(k, _)| k == "pool"), "{s:?}");
    }
    // The queued get was entered on its first poll and again when its grant arrived.
    let waited = spans
        .values()
        .find(|s| s.fields.iter().any(|(k, _)| k == "queued"))
        .expect("the queued get's span");
    assert!(waited.enters >= 2, "{waited:?}");
}
