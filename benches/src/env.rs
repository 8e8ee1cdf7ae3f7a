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

/// `url` with any password replaced by `***`, for printing.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
