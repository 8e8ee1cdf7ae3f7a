//! Shared helpers of the live-database integration tests (`tests/tests/<backend>/main.rs`).
//!
//! Server URLs come from the environment, with defaults for the machine's own servers
//! (`scripts/services.sh` sets them up):
//!
//! | variable | default |
//! |---|---|
//! | `POOL_TEST_PG_URL` | `postgres://postgres@127.0.0.1:5432/test` |
//! | `POOL_TEST_MYSQL_URL` | `mysql://root@127.0.0.1:3306/test` |
//!
//! A test calls [`require_server`] first: when the server cannot be reached it fails with a clear
//! message under CI (`CI=true`), and outside CI it tells the caller to skip (returns `false`,
//! printing why), so a laptop without MariaDB can still run the other tests.

mod diagnostics;
pub mod outage;
mod pgbouncer;
mod process;

pub use diagnostics::{error_chain, LogCapture};
pub use pgbouncer::{PgBouncer, PGBOUNCER_BIN};
pub use process::ServerProcess;

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Default of `POOL_TEST_PG_URL`.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Default of `POOL_TEST_MYSQL_URL`.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// The PostgreSQL URL of the tests: `POOL_TEST_PG_URL`, else [`DEFAULT_PG_URL`].
pub fn pg_url() -> String {
    env_or("POOL_TEST_PG_URL", DEFAULT_PG_URL)
}

/// The MariaDB/MySQL URL of the tests: `POOL_TEST_MYSQL_URL`, else [`DEFAULT_MYSQL_URL`].
pub fn mysql_url() -> String {
    env_or("POOL_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
}

fn env_or(var: &str, default: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => default.to_owned(),
    }
}

/// Whether the tests run under CI (`CI` set to anything but empty, `0` or `false`).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "FALSE" | "False"))
}

/// `host:port` of a `scheme://[user[:password]@]host[:port][/db][?query]` URL; the port defaults
/// by scheme (postgres 5432, mysql/mariadb 3306). `None` if the URL has no host (e.g. a Unix
/// socket URL).
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let default_port = match scheme {
        "postgres" | "postgresql" => 5432,
        "mysql" | "mariadb" => 3306,
        _ => return None,
    };
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some((host.to_owned(), port))
}

/// Is the server of `url` accepting TCP connections (within 3 s)?
///
/// - reachable: `true`;
/// - unreachable under CI: **panics** with a message naming the server, the URL, the variable
///   that sets it and `scripts/services.sh`;
/// - unreachable outside CI: prints why on stderr and returns `false` (the caller returns early).
///
/// `what` names the server in messages, e.g. `"PostgreSQL (POOL_TEST_PG_URL)"`.
///
/// # Panics
/// Under CI when the server is unreachable or the URL has no TCP host.
pub fn require_server(what: &str, url: &str) -> bool {
    let problem = match host_port(url) {
        None => format!("cannot find host:port in {url:?}"),
        Some((host, port)) => match reachable(&host, port) {
            Ok(()) => return true,
            Err(e) => format!("{host}:{port} is unreachable: {e}"),
        },
    };
    let msg = format!(
        "{what}: {problem}. Start the servers with `scripts/services.sh` or point the variable \
         at a running server."
    );
    assert!(
        !is_ci(),
        "{msg} (CI=true: a missing server fails the test suite)"
    );
    eprintln!("skipping: {msg}");
    false
}

fn reachable(host: &str, port: u16) -> std::io::Result<()> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A name unique within this process run, for tables and databases tests create:
/// `<prefix>_<pid>_<n>`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A loopback port nobody listens on (bound, then released), for a throwaway server to listen
/// on.
///
/// It is picked below Linux's ephemeral range (32768–60999 by default): a port the kernel hands
/// out for `bind(0)` is also what it uses as the local port of outgoing connections, and the
/// tests open many, so such a port can be taken between this check and the server's `bind`.
/// Ports are tried from a per-process random start, each bound once to check it is free.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = u64::from(std::process::id()) * 7919 % 10_000;
    for _ in 0..10_000 {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 10_000;
        let port = 20_000 + u16::try_from(offset).expect("below 10 000");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port() {
        assert_eq!(host_port(DEFAULT_PG_URL), Some(("127.0.0.1".into(), 5432)));
        assert_eq!(
            host_port(DEFAULT_MYSQL_URL),
            Some(("127.0.0.1".into(), 3306))
        );
        assert_eq!(
            host_port("postgresql://u:p@db.example:6543?sslmode=disable"),
            Some(("db.example".into(), 6543))
        );
        assert_eq!(host_port("mysql://[::1]/test"), Some(("::1".into(), 3306)));
        assert_eq!(
            host_port("mysql://[::1]:3307/test"),
            Some(("::1".into(), 3307))
        );
        assert_eq!(host_port("postgres:///test?host=/run/postgresql"), None);
        assert_eq!(host_port("sqlite://x.db"), None);
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
    }
}
