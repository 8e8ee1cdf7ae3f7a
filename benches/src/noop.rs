//! No-op connections and one manager per pool implementation, so that benchmarks measure the
//! pool alone: connecting is instant, checks always pass, nothing is ever broken.
//!
//! Every manager keeps its pool's default checks enabled (deadpool's `recycle`, bb8's and
//! r2d2's `test_on_check_out`, mobc's `check`): they are no-ops here, so what remains is the
//! cost of the pool calling them, which is part of that pool's overhead.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

/// A connection that does nothing; `id` lets a benchmark touch it.
#[derive(Debug)]
pub struct NoopConn {
    /// Creation order, from 0.
    pub id: u64,
}

/// Counts connects; shared by all the no-op managers.
#[derive(Debug, Default)]
pub struct NoopCounter(AtomicU64);

impl NoopCounter {
    fn next(&self) -> NoopConn {
        NoopConn {
            id: self.0.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// How many connections were opened.
    pub fn connects(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Our pool's no-op manager (`pool_core::Manager`, all defaults).
#[derive(Debug, Default)]
pub struct OursNoop(pub NoopCounter);

impl pool_core::BlockingManager for OursNoop {}

impl pool_core::Manager for OursNoop {
    type Connection = NoopConn;
    type Error = Infallible;

    async fn connect(&self) -> Result<NoopConn, Infallible> {
        Ok(self.0.next())
    }
}

/// deadpool's managed no-op manager (`recycle` always succeeds).
#[derive(Debug, Default)]
pub struct DeadpoolNoop(pub NoopCounter);

impl deadpool::managed::Manager for DeadpoolNoop {
    type Type = NoopConn;
    type Error = Infallible;

    async fn create(&self) -> Result<NoopConn, Infallible> {
        Ok(self.0.next())
    }

    async fn recycle(
        &self,
        _conn: &mut NoopConn,
        _metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

/// bb8's no-op manager.
#[derive(Debug, Default)]
pub struct Bb8Noop(pub NoopCounter);

impl bb8::ManageConnection for Bb8Noop {
    type Connection = NoopConn;
    type Error = Infallible;

    async fn connect(&self) -> Result<NoopConn, Infallible> {
        Ok(self.0.next())
    }

    async fn is_valid(&self, _conn: &mut NoopConn) -> Result<(), Infallible> {
        Ok(())
    }

    fn has_broken(&self, _conn: &mut NoopConn) -> bool {
        false
    }
}

/// r2d2's no-op manager (blocking).
#[derive(Debug, Default)]
pub struct R2d2Noop(pub NoopCounter);

impl r2d2::ManageConnection for R2d2Noop {
    type Connection = NoopConn;
    type Error = Infallible;

    fn connect(&self) -> Result<NoopConn, Infallible> {
        Ok(self.0.next())
    }

    fn is_valid(&self, _conn: &mut NoopConn) -> Result<(), Infallible> {
        Ok(())
    }

    fn has_broken(&self, _conn: &mut NoopConn) -> bool {
        false
    }
}

/// mobc's no-op manager (mobc's trait is `#[async_trait]`, so each call boxes a future).
#[derive(Debug, Default)]
pub struct MobcNoop(pub NoopCounter);

#[mobc::async_trait]
impl mobc::Manager for MobcNoop {
    type Connection = NoopConn;
    type Error = Infallible;

    async fn connect(&self) -> Result<NoopConn, Infallible> {
        Ok(self.0.next())
    }

    async fn check(&self, conn: NoopConn) -> Result<NoopConn, Infallible> {
        Ok(conn)
    }
}

/// Our pool of `size` no-op connections with default settings.
///
/// # Panics
/// If `size` is 0 (a benchmark bug).
pub fn ours(size: usize) -> pool_core::Pool<OursNoop> {
    pool_core::Pool::new(OursNoop::default(), size).expect("valid pool size")
}

/// Our pool of `size` no-op connections with the opt-in bounded queue bypass (eventual
/// fairness) over a 1 ms window.
///
/// # Panics
/// If `size` is 0 (a benchmark bug).
pub fn ours_bypass(size: usize) -> pool_core::Pool<OursNoop> {
    pool_core::Pool::builder(OursNoop::default())
        .max_size(size)
        .queue_bypass(Some(std::time::Duration::from_millis(1)))
        .build()
        .expect("valid pool size")
}

/// A deadpool of `size` no-op objects with default settings.
///
/// # Panics
/// If `size` is 0 (a benchmark bug).
pub fn deadpool(size: usize) -> deadpool::managed::Pool<DeadpoolNoop> {
    deadpool::managed::Pool::builder(DeadpoolNoop::default())
        .max_size(size)
        .build()
        .expect("valid pool size")
}

/// A bb8 pool of `size` no-op connections with default settings (needs a tokio runtime).
///
/// # Panics
/// If `size` is 0 (a benchmark bug).
pub async fn bb8(size: usize) -> bb8::Pool<Bb8Noop> {
    let size = u32::try_from(size).expect("pool size fits u32");
    bb8::Pool::builder()
        .max_size(size)
        .build(Bb8Noop::default())
        .await
        .expect("infallible manager")
}

/// An r2d2 pool of `size` no-op connections with default settings (opens them all now).
///
/// # Panics
/// If `size` is 0 (a benchmark bug).
pub fn r2d2(size: usize) -> r2d2::Pool<R2d2Noop> {
    let size = u32::try_from(size).expect("pool size fits u32");
    r2d2::Pool::builder()
        .max_size(size)
        .build(R2d2Noop::default())
        .expect("infallible manager")
}

/// A mobc pool of `size` no-op connections (at most `size` open and idle).
pub fn mobc(size: usize) -> mobc::Pool<MobcNoop> {
    let size = u64::try_from(size).unwrap_or(u64::MAX);
    mobc::Pool::builder()
        .max_open(size)
        .max_idle(size)
        .build(MobcNoop::default())
}

/// The baseline pool of `size` no-op connections (see [`crate::baseline`]).
pub fn baseline(size: usize) -> crate::baseline::Baseline<NoopConn> {
    let counter = NoopCounter::default();
    crate::baseline::Baseline::new((0..size).map(|_| counter.next()).collect())
}

/// The blocking baseline pool (`Mutex<Vec>` + `Condvar`) of `size` no-op connections.
pub fn blocking_baseline(size: usize) -> crate::baseline::BlockingBaseline<NoopConn> {
    let counter = NoopCounter::default();
    crate::baseline::BlockingBaseline::new((0..size).map(|_| counter.next()).collect())
}
