#![doc = include_str!("../README.md")]
// None of this crate needs `unsafe`: it only drives tokio-postgres through its safe API.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings), allow(dead_code))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bouncer;
mod client;
mod connect;
mod error;
mod manager;
mod role;
mod session;
mod sniff;

pub use bouncer::{QueryRef, ToQuery};
pub use client::ClientWrapper;
pub use error::{classify, classify_pool_error, retry, ConfigError};
pub use manager::{InitFuture, InitHook, Manager, ResetMode};
pub use role::TargetRole;
pub use tokio_postgres;

#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub use tokio_postgres_rustls;

/// A pool of PostgreSQL connections.
pub type Pool = pool_core::Pool<Manager>;

/// A connection checked out of a [`Pool`]; derefs to [`ClientWrapper`] and from there to
/// [`tokio_postgres::Client`]. Dropping it returns the connection to the pool.
pub type Client = pool_core::Pooled<Manager>;

/// One handle over a primary pool and read-replica pools (see [`pool_core::ReadWrite`]).
pub type ReadWritePool = pool_core::ReadWrite<Manager>;

/// The error of [`Pool::get`] and friends: the pool's own error around a driver error.
pub type Error = pool_core::PoolError<tokio_postgres::Error>;

/// Builds a pool of at most `max_size` connections to the database at `url`, with every other
/// setting at its default (no TLS; see [`Manager`] and [`pool_core::Builder`] for the rest).
///
/// `url` is parsed by tokio-postgres itself, so both URLs
/// (`postgres://user:password@host:port/dbname?application_name=app`) and key/value strings
/// (`host=localhost user=postgres`) work. No connection is opened here.
///
/// # Errors
///
/// [`ConfigError::Url`] when tokio-postgres cannot parse `url`, [`ConfigError::Pool`] when
/// `max_size` is zero.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = pool_postgres::pool("postgres://postgres@127.0.0.1:5432/test", 8)?;
/// let client = pool.get().await?;
/// let row = client.query_one("SELECT 1 + 1", &[]).await?;
/// assert_eq!(row.get::<_, i32>(0), 2);
/// # Ok(()) }
/// ```
pub fn pool(url: &str, max_size: usize) -> Result<Pool, ConfigError> {
    let manager = Manager::from_url(url)?;
    Pool::new(manager, max_size).map_err(ConfigError::Pool)
}
