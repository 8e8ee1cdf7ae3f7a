//! Publishing a pool's state through the [`metrics`] facade, under OpenTelemetry's database
//! client metric names.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::{DurationHistogram, Manager, Pool};

/// Publishes a pool's occupancy and counters through the `metrics` facade, so that whatever
/// recorder the program installed (Prometheus, OpenTelemetry, StatsD, …) exports them.
///
/// Names follow OpenTelemetry's semantic conventions for database client connection pools;
/// every series carries the label `db.client.connection.pool.name`:
///
/// | name | kind | value |
/// |---|---|---|
/// | `db.client.connection.count` | gauge, label `db.client.connection.state` = `idle` / `used` | connections idle / checked out |
/// | `db.client.connection.max` | gauge | `max_size` |
/// | `db.client.connection.idle.min` | gauge | `min_idle` |
/// | `db.client.connection.idle.max` | gauge | `max_size` (idle connections are bounded only by it) |
/// | `db.client.connection.pending_requests` | gauge | requests queued for a connection |
/// | `db.client.connection.timeouts` | counter | acquisitions that timed out |
/// | `db.client.connection.creates` | counter | connections opened |
/// | `db.client.connection.create_failures` | counter | connect attempts that failed |
/// | `db.client.connection.closes` | counter | connections closed, any reason |
/// | `db.client.connection.waits` | counter | acquisitions that had to queue |
/// | `db.client.connection.wait_time.total` | gauge (only grows) | seconds spent queueing, in all |
/// | `db.client.connection.wait_time` | histogram, seconds | how long each queued acquisition waited |
/// | `db.client.connection.use_time` | histogram, seconds | how long each checkout was held, hand-out to check-in |
///
/// The two histograms come from [`Metrics::wait_histogram`](crate::Metrics::wait_histogram) and
/// [`Metrics::hold_histogram`](crate::Metrics::hold_histogram), which the pool keeps in
/// power-of-two buckets of microseconds: each `record` passes on what was added since the
/// previous one, every value as its bucket's upper bound (so quantiles read from the recorder
/// are at most twice the true value, as [`DurationHistogram::quantile`](crate::DurationHistogram::quantile)'s).
/// Use one exporter per pool, as it remembers what it passed on.
///
/// The facade's recorders keep the last value of a gauge and the absolute value of a counter,
/// so [`record`](MetricsExporter::record) can run as often as wanted; [`spawn`] runs it on an
/// interval for as long as the pool is open.
///
/// ```
/// # use std::convert::Infallible;
/// # struct Db;
/// # impl pool_core::Manager for Db {
/// #     type Connection = ();
/// #     type Error = Infallible;
/// #     async fn connect(&self) -> Result<(), Infallible> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = pool_core::Pool::new(Db, 8).unwrap();
/// pool_core::MetricsExporter::new("orders").record(&pool); // once, e.g. in a /metrics handler
/// # }
/// ```
///
/// [`spawn`]: MetricsExporter::spawn
#[derive(Debug, Clone)]
pub struct MetricsExporter {
    name: String,
    /// The histograms as of the last `record` (waits, holds), to pass on only what is new.
    sent: Arc<Mutex<(DurationHistogram, DurationHistogram)>>,
}

/// Records into `h` what `now` holds beyond `before`, each value as its bucket's upper bound
/// (the last, open-ended bucket as its lower bound).
fn send_new(h: &metrics::Histogram, now: &DurationHistogram, before: &DurationHistogram) {
    let mut lower = Duration::ZERO;
    for ((upper, n), (_, m)) in now.buckets().zip(before.buckets()) {
        // Counts only grow; a smaller one means another pool's figures: send them all.
        let new = if n >= m { n - m } else { n };
        if new > 0 {
            let at = if upper == Duration::MAX { lower } else { upper };
            h.record_many(at.as_secs_f64(), usize::try_from(new).unwrap_or(usize::MAX));
        }
        lower = upper;
    }
}

const POOL: &str = "db.client.connection.pool.name";

impl MetricsExporter {
    /// An exporter labelling every series with `pool_name`.
    pub fn new(pool_name: impl Into<String>) -> Self {
        MetricsExporter {
            name: pool_name.into(),
            sent: Arc::default(),
        }
    }

    /// Publishes `pool`'s current status and counters.
    // Gauges are f64 in the facade; pool sizes are far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    pub fn record<M: Manager>(&self, pool: &Pool<M>) {
        let s = pool.status();
        let m = pool.metrics();
        let name = self.name.clone();
        let g = |metric: &'static str, v: usize| {
            metrics::gauge!(metric, POOL => name.clone()).set(v as f64);
        };
        metrics::gauge!("db.client.connection.count", POOL => name.clone(), "db.client.connection.state" => "idle")
            .set(s.idle as f64);
        metrics::gauge!("db.client.connection.count", POOL => name.clone(), "db.client.connection.state" => "used")
            .set(s.in_use as f64);
        g("db.client.connection.max", s.max_size);
        g("db.client.connection.idle.min", pool.config().min_idle);
        g("db.client.connection.idle.max", s.max_size);
        g("db.client.connection.pending_requests", s.waiting);
        let c = |metric: &'static str, v: u64| {
            metrics::counter!(metric, POOL => name.clone()).absolute(v);
        };
        c("db.client.connection.timeouts", m.timeouts);
        c("db.client.connection.creates", m.connects);
        c("db.client.connection.create_failures", m.connect_failures);
        c("db.client.connection.closes", m.closed_total());
        c("db.client.connection.waits", m.waits);
        metrics::gauge!("db.client.connection.wait_time.total", POOL => name.clone())
            .set(m.wait_time.as_secs_f64());
        let mut sent = self.sent.lock();
        send_new(
            &metrics::histogram!("db.client.connection.wait_time", POOL => name.clone()),
            &m.wait_histogram,
            &sent.0,
        );
        send_new(
            &metrics::histogram!("db.client.connection.use_time", POOL => name),
            &m.hold_histogram,
            &sent.1,
        );
        *sent = (m.wait_histogram, m.hold_histogram);
    }

    /// Records `pool` every `interval` on a tokio task, until the pool is closed.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn<M: Manager>(
        self,
        pool: Pool<M>,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.record(&pool);
                if pool.is_closed() {
                    break;
                }
            }
        })
    }
}
