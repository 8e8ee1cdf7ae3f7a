#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)] // Nothing here needs it: the core is a mutex-guarded state machine.
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod core;
mod deadline;
mod error;
#[cfg(feature = "metrics")]
mod export;
mod fast;
mod global;
mod guard;
#[cfg(feature = "tower")]
mod layer;
mod manager;
mod metrics;
mod pool;
mod reaper;
mod report;
mod retry;
mod routing;
mod scope;
pub mod settings;
mod surface;
mod sync;
#[cfg(test)]
mod tests;

pub use config::{Builder, Config};
pub use error::{BuildError, ErrorKind, Phase, PoolError, ResizeError};
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use export::MetricsExporter;
pub use global::{AlreadyConfigured, GlobalPool};
pub use guard::Pooled;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use layer::{ScopeLayer, ScopeService};
pub use manager::{BlockingManager, CloseReason, ConnMeta, Manager};
pub use metrics::{DurationHistogram, HeldConn, Metrics, Status, WaitHistogram};
pub use pool::Pool;
pub use report::Report;
pub use retry::{retry, retry_blocking, ErrorClass, RetryPolicy, WorkError};
pub use routing::{Member, ReadWrite};
pub use scope::{carry_scopes, ScopedConn};
pub use settings::EnvError;
pub use surface::Interact;
