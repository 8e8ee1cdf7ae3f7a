#![doc = include_str!("../README.md")]
// None of this crate needs `unsafe`: it only drives mysql_async through its safe API.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings), allow(dead_code))))]

mod conn;
mod error;
mod manager;
mod probe;
mod settings;

pub use conn::ConnWrapper;
pub use error::{classify, classify_pool_error, retry, ConfigError};
pub use manager::{InitFuture, InitHook, Manager, ResetMode};
pub use mysql_async;
pub use settings::Settings;

pool_core::backend_surface!(Manager, mysql_async::Error);

/// Builds a pool of at most `max_size` connections to the database at `url`
/// (`mysql://user:password@host:port/db`), every other setting at its default. The URL is parsed
/// by [`mysql_async::Opts::from_url`]. No connection is opened here.
///
/// # Errors
///
/// [`ConfigError::Url`] when mysql_async rejects `url`, [`ConfigError::Pool`] when `max_size` is 0.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use pool_mysql::mysql_async::prelude::*;
///
/// let pool = pool_mysql::pool("mysql://root@127.0.0.1:3306/test", 8)?;
/// let mut conn = pool.get().await?;
/// let two: Option<i64> = conn.query_first("SELECT 1 + 1").await?;
/// assert_eq!(two, Some(2));
/// # Ok(()) }
/// ```
pub fn pool(url: &str, max_size: usize) -> Result<Pool, ConfigError> {
    let manager = Manager::from_url(url)?;
    Pool::new(manager, max_size).map_err(ConfigError::Pool)
}
