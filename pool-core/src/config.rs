//! Pool configuration: [`Config`] (plain data, serde-ready) and [`Builder`].

use std::time::Duration;

use crate::error::BuildError;
use crate::manager::Manager;
use crate::pool::Pool;

/// Every setting of a pool, with documented defaults.
///
/// Build one directly, deserialize it (feature `serde`, durations written as `"30s"`,
/// `"250ms"`, `"forever"`, and optional ones `"off"`), read it from the environment
/// ([`Config::from_env`]), or use the [`Builder`] setters. [`Builder::build`] checks it.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct Config {
    /// Most connections open at once, counting those being opened. Default: 10. Zero is rejected.
    pub max_size: usize,
    /// Idle connections kept open (pre-warmed at build, replenished by the reaper). Default: 0.
    /// Must not exceed `max_size`.
    ///
    /// A cost to know: with `min_idle > 0` a returned connection always goes back to the shared
    /// idle set (so the reaper can count it), which turns off the per-thread fast path (a thread
    /// taking back the connection it returned, without the pool lock): every get then takes the
    /// pool lock. Keep it 0 unless cold-start latency matters more.
    pub min_idle: usize,
    /// The deadline of one acquisition as a whole: queueing for a connection, checking idle ones
    /// (`reset`, `validate`) and connecting. Default: 30 s. `connect_timeout` and
    /// `validate_timeout` bound single operations inside it and never extend it. Zero means
    /// "never queue": a request succeeds only with an idle connection or one it can open (the
    /// call is then bounded by `connect_timeout`). `Duration::MAX` means no deadline.
    #[cfg_attr(feature = "serde", serde(with = "crate::settings::duration"))]
    pub wait_timeout: Duration,
    /// Bound of one request's connect attempts (retries included), inside the request's
    /// `wait_timeout`; also bounds each background connect (`min_idle` refill, a connect whose
    /// request gave up). Default: 5 s. `Duration::MAX`: unbounded.
    #[cfg_attr(feature = "serde", serde(with = "crate::settings::duration"))]
    pub connect_timeout: Duration,
    /// Bound of one `validate` or `reset`, inside the request's `wait_timeout`. Default: 5 s.
    #[cfg_attr(feature = "serde", serde(with = "crate::settings::duration"))]
    pub validate_timeout: Duration,
    /// Validate (ping) a connection at checkout when it has been idle at least this long.
    /// `Some(Duration::ZERO)` validates every checkout; `None` never. Default: `Some(1 s)`.
    #[cfg_attr(feature = "serde", serde(with = "crate::settings::optional_duration"))]
    pub validate_after_idle: Option<Duration>,
    /// Stale timeout: a connection older than this is closed at checkout, check-in or by the
    /// reaper. `None` disables it. Default: `Some(30 min)`.
    #[cfg_attr(feature = "serde", serde(with = "crate::settings::optional_duration"))]
    pub max_lifetime: Option<Duration>,
    /// Up to this percentage of `max_lifetime` is subtracted at random from each connection's
    /// lifetime, so a fleet does not reconnect at once. Default: 10. At most 50.
    pub max_lifetime_jitter_percent: u8,
    /// A connection idle for longer than this is closed (keeping `min_idle`). `None` disables it.
    /// Default: `Some(10 min)`.
    #[cfg_attr(feature = "serde", serde(with = "crate::settings::optional_duration"))]
    pub idle_timeout: Option<Duration>,
    /// How often the background reaper runs. Default: 30 s. `Duration::MAX`: once, at build.
    #[cfg_attr(feature = "serde", serde(with = "crate::settings::duration"))]
    pub reap_interval: Duration,
    /// Log one warning for a connection held longer than this. `None` disables it. Default: `None`.
    #[cfg_attr(feature = "serde", serde(with = "crate::settings::optional_duration"))]
    pub leak_threshold: Option<Duration>,
    /// Retry a failed connect with backoff, within `connect_timeout`, when the manager says the
    /// error is retryable. Default: `true`.
    pub retry_connect: bool,
    /// After this many consecutive failed connects, requests that would need a new connection fail
    /// fast with `PoolError::Unavailable` until a probe connect succeeds. Zero disables it.
    /// Default: 3.
    pub fail_fast_after: u32,
    /// Bounded queue bypass ("eventual fairness", as in `parking_lot`): while the longest
    /// waiting request has waited less than this, a returned connection is made idle and that
    /// request is woken to take it, and a newcomer may take it first. Once the oldest request has
    /// waited this long, connections are handed to waiting requests in strict FIFO order again.
    /// It trades a bounded amount of fairness for throughput when there are many more threads
    /// than cores (blocking gets already look again a few times before they queue, see
    /// [`Pool::get_blocking`](crate::Pool::get_blocking), which covers most of that case).
    /// `None` (the default): strict FIFO, no request ever overtakes a waiting one.
    #[cfg_attr(feature = "serde", serde(with = "crate::settings::optional_duration"))]
    pub queue_bypass: Option<Duration>,
    /// A name for logs and traces. Default: empty.
    pub name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_size: 10,
            min_idle: 0,
            wait_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            validate_timeout: Duration::from_secs(5),
            validate_after_idle: Some(Duration::from_secs(1)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            max_lifetime_jitter_percent: 10,
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            reap_interval: Duration::from_secs(30),
            leak_threshold: None,
            retry_connect: true,
            fail_fast_after: 3,
            queue_bypass: None,
            name: String::new(),
        }
    }
}

impl Config {
    /// Checks the settings against each other.
    ///
    /// # Errors
    /// A [`BuildError`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.max_size == 0 {
            return Err(BuildError::ZeroMaxSize);
        }
        if self.min_idle > self.max_size {
            return Err(BuildError::MinIdleExceedsMaxSize {
                min_idle: self.min_idle,
                max_size: self.max_size,
            });
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("validate_timeout", self.validate_timeout),
            ("reap_interval", self.reap_interval),
        ] {
            if d.is_zero() {
                return Err(BuildError::ZeroDuration { name });
            }
        }
        for (name, d) in [
            ("max_lifetime", self.max_lifetime),
            ("idle_timeout", self.idle_timeout),
            ("leak_threshold", self.leak_threshold),
            ("queue_bypass", self.queue_bypass),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                return Err(BuildError::ZeroDuration { name });
            }
        }
        if self.max_lifetime_jitter_percent > 50 {
            return Err(BuildError::OutOfRange {
                name: "max_lifetime_jitter_percent",
            });
        }
        Ok(())
    }
}

/// Builds a [`Pool`]. Setters never panic; [`build`](Builder::build) checks the result.
///
/// ```
/// # use pool_core::{Manager, Pool};
/// # struct M;
/// # impl Manager for M {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     async fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
/// # }
/// use std::time::Duration;
///
/// let pool = Pool::builder(M)
///     .max_size(16)
///     .wait_timeout(Duration::from_secs(2))
///     .idle_timeout(Some(Duration::from_secs(300)))
///     .build()
///     .unwrap();
/// assert_eq!(pool.status().max_size, 16);
///
/// // Bad combinations are typed errors, not panics.
/// assert!(Pool::builder(M).max_size(0).build().is_err());
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until build() is called"]
pub struct Builder<M> {
    manager: M,
    config: Config,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$name = value;
                self
            }
        )*
    };
}

impl<M: Manager> Builder<M> {
    /// A builder with the default [`Config`].
    pub fn new(manager: M) -> Self {
        Builder {
            manager,
            config: Config::default(),
        }
    }

    /// A builder starting from `config`.
    pub fn from_config(manager: M, config: Config) -> Self {
        Builder { manager, config }
    }

    setters! {
        /// See [`Config::max_size`].
        max_size: usize;
        /// See [`Config::min_idle`].
        min_idle: usize;
        /// See [`Config::wait_timeout`].
        wait_timeout: Duration;
        /// See [`Config::connect_timeout`].
        connect_timeout: Duration;
        /// See [`Config::validate_timeout`].
        validate_timeout: Duration;
        /// See [`Config::validate_after_idle`].
        validate_after_idle: Option<Duration>;
        /// See [`Config::max_lifetime`].
        max_lifetime: Option<Duration>;
        /// See [`Config::max_lifetime_jitter_percent`].
        max_lifetime_jitter_percent: u8;
        /// See [`Config::idle_timeout`].
        idle_timeout: Option<Duration>;
        /// See [`Config::reap_interval`].
        reap_interval: Duration;
        /// See [`Config::leak_threshold`].
        leak_threshold: Option<Duration>;
        /// See [`Config::retry_connect`].
        retry_connect: bool;
        /// See [`Config::fail_fast_after`].
        fail_fast_after: u32;
        /// See [`Config::queue_bypass`].
        queue_bypass: Option<Duration>;
    }

    /// See [`Config::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Builds the pool. It opens no connection itself; `min_idle` connections are opened in the
    /// background (by a tokio task when called inside a runtime, else by the shared reaper
    /// thread). Use [`Pool::wait_for_min_idle`] to wait for them.
    ///
    /// # Errors
    /// [`BuildError`] when the configuration is invalid.
    pub fn build(self) -> Result<Pool<M>, BuildError> {
        self.config.validate()?;
        Ok(Pool::from_parts(self.manager, self.config))
    }
}
