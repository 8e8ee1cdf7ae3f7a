//! In-crate test suites that need private access.
//!
//! `loom_*`: models of the pool's concurrency invariants. Under
//! `RUSTFLAGS="--cfg loom"` loom checks every interleaving (see `loom_support`); under a plain
//! `cargo test` each model runs once on real threads, as a smoke test.

mod loom_support;

mod loom_async;
mod loom_cancel;
mod loom_checkout;
mod loom_close;
#[cfg(loom)] // The shared reaper thread also runs under a plain `cargo test`.
mod loom_reap;
