//! A throwaway PgBouncer of one test: an ini file in a temporary directory, transaction pooling
//! on a free loopback port in front of the machine's PostgreSQL, run as the `postgres` system
//! user when the tests run as root (PgBouncer refuses to run as root). The `Drop` guard kills it
//! by pid, so it goes away even when the test fails.
//!
//! `scripts/services.sh` installs PgBouncer (`/usr/sbin/pgbouncer`, Debian package `pgbouncer`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::ServerProcess;

/// Where Debian installs PgBouncer.
pub const PGBOUNCER_BIN: &str = "/usr/sbin/pgbouncer";

/// A running PgBouncer in transaction pooling mode.
#[derive(Debug)]
pub struct PgBouncer {
    dir: tempfile::TempDir,
    port: u16,
    db: String,
    _process: ServerProcess,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgBouncer {
    /// Starts PgBouncer in front of the PostgreSQL server at `host:port`, exposing its database
    /// `db` under the same name, with at most `pool_size` server connections and `pool_mode =
    /// transaction`. Clients log in as `postgres` or `root` without a password
    /// (`auth_type = trust`; the server must trust them too, as the machine's does on
    /// 127.0.0.1).
    ///
    /// # Panics
    /// When PgBouncer is not installed, cannot start, or does not accept connections within
    /// 15 s (its log is in the message).
    pub fn start(host: &str, port: u16, db: &str, pool_size: usize) -> PgBouncer {
        assert!(
            Path::new(PGBOUNCER_BIN).exists(),
            "{PGBOUNCER_BIN} is missing: run scripts/services.sh (installs the Debian package pgbouncer)"
        );
        let dir = tempfile::Builder::new()
            .prefix("pool-pgbouncer-")
            .tempdir()
            .expect("tempdir");
        let listen_port = crate::free_port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(
            dir.path().join("userlist.txt"),
            "\"postgres\" \"\"\n\"root\" \"\"\n",
        )
        .expect("write userlist.txt");
        let mut ini = String::new();
        let _ = writeln!(ini, "[databases]");
        let _ = writeln!(ini, "{db} = host={host} port={port} dbname={db}");
        let _ = writeln!(ini, "[pgbouncer]");
        let _ = writeln!(ini, "listen_addr = 127.0.0.1");
        let _ = writeln!(ini, "listen_port = {listen_port}");
        // No Unix socket: nothing outside the temporary directory, and only TCP on loopback.
        let _ = writeln!(ini, "unix_socket_dir =");
        let _ = writeln!(ini, "auth_type = trust");
        let _ = writeln!(ini, "auth_file = {}", path("userlist.txt"));
        let _ = writeln!(ini, "pool_mode = transaction");
        let _ = writeln!(ini, "default_pool_size = {pool_size}");
        let _ = writeln!(ini, "min_pool_size = 0");
        let _ = writeln!(ini, "reserve_pool_size = 0");
        let _ = writeln!(ini, "max_client_conn = 500");
        let _ = writeln!(ini, "logfile = {}", path("pgbouncer.log"));
        let _ = writeln!(ini, "pidfile = {}", path("pgbouncer.pid"));
        let _ = writeln!(ini, "log_connections = 0");
        let _ = writeln!(ini, "log_disconnections = 0");
        std::fs::write(dir.path().join("pgbouncer.ini"), ini).expect("write pgbouncer.ini");

        let mut command = if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown")
                .success();
            assert!(ok, "chown of PgBouncer's directory failed");
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                PGBOUNCER_BIN,
            ]);
            c
        } else {
            Command::new(PGBOUNCER_BIN)
        };
        command
            .arg(path("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = ServerProcess::start(
            &mut command,
            "pgbouncer",
            dir.path().join("pgbouncer.log"),
            // SIGINT: PgBouncer's safe shutdown; SIGKILL after 5 s.
            Some("INT"),
            Duration::from_secs(15),
            || {
                std::net::TcpStream::connect_timeout(
                    &std::net::SocketAddr::from(([127, 0, 0, 1], listen_port)),
                    Duration::from_millis(500),
                )
                .is_ok()
            },
        );
        PgBouncer {
            dir,
            port: listen_port,
            db: db.to_owned(),
            _process: process,
        }
    }

    /// The loopback port PgBouncer listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://<user>@127.0.0.1:<port>/<db>`.
    pub fn url(&self, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{}", self.port, self.db)
    }

    /// PgBouncer's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}
