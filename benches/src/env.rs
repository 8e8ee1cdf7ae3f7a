//! Where the live-database benchmarks find their servers.
//!
//! The URLs come from `POOL_BENCH_PG_URL` / `POOL_BENCH_MYSQL_URL`, then the test suite's
//! `POOL_TEST_PG_URL` / `POOL_TEST_MYSQL_URL`, then the machine's defaults (the servers that
//! `scripts/` sets up on 127.0.0.1). Benches are not tests: an unreachable server skips its
//! group with a printed notice instead of failing.

use std::time::Duration;

/// Default PostgreSQL URL: trust authentication, user `postgres`, database `test`.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Default MariaDB/MySQL URL: user `root` without a password, database `test`.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
/// How long a bench or `loadgen` waits for a first connection before it gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

fn first_var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
}

/// The PostgreSQL URL for live benches.
pub fn pg_url() -> String {
    first_var(&["POOL_BENCH_PG_URL", "POOL_TEST_PG_URL"]).unwrap_or_else(|| DEFAULT_PG_URL.into())
}

/// The MariaDB/MySQL URL for live benches.
pub fn mysql_url() -> String {
    first_var(&["POOL_BENCH_MYSQL_URL", "POOL_TEST_MYSQL_URL"])
        .unwrap_or_else(|| DEFAULT_MYSQL_URL.into())
}

/// `url` with every password replaced by `***`, for printing (see
/// [`pool_core::settings::redact_url`]).
pub use pool_core::settings::redact_url as redact;
