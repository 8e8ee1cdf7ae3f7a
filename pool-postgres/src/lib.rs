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
mod settings;
mod sniff;
#[cfg(feature = "rustls")]
mod tls;

pub use bouncer::{QueryRef, ToQuery};
pub use client::ClientWrapper;
pub use error::{classify, classify_pool_error, retry, ConfigError};
pub use manager::{InitFuture, InitHook, Manager, ResetMode};
pub use role::TargetRole;
pub use settings::Settings;
pub use tokio_postgres;

#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub use tokio_postgres_rustls;

pool_core::backend_surface!(Manager, tokio_postgres::Error);

/// A connection checked out of a [`Pool`] (the name before [`PooledConn`]; it shadows
/// `tokio_postgres::Client`, so prefer [`PooledConn`]). Derefs to [`ClientWrapper`] and from
/// there to [`tokio_postgres::Client`].
pub type Client = PooledConn;

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
