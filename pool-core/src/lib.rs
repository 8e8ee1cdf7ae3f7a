#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)] // Nothing here needs it: the core is a mutex-guarded state machine.
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings))))]

mod config;
mod core;
mod deadline;
mod error;
mod fast;
mod guard;
mod manager;
mod metrics;
mod pool;
mod reaper;
mod retry;
mod scope;
mod sync;
#[cfg(test)]
mod tests;

pub use config::{Builder, Config};
pub use error::{BuildError, Phase, PoolError, ResizeError};
pub use guard::Pooled;
pub use manager::{BlockingManager, CloseReason, ConnMeta, Manager};
pub use metrics::{HeldConn, Metrics, Status};
pub use pool::Pool;
pub use retry::{retry, retry_blocking, ErrorClass, RetryPolicy};
pub use scope::ScopedConn;
