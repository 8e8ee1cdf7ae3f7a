//! A throwaway PostgreSQL server of one test: `initdb` in a temporary directory, `postgres` on a
//! free loopback port, run as the `postgres` user when the tests run as root (PostgreSQL refuses
//! to run as root). The `Drop` guard kills it by pid, so it goes away even when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pool_tests::ServerProcess;

const BIN: &str = "/usr/lib/postgresql/15/bin";
/// The superuser's password on a throwaway server (host connections use scram-sha-256).
pub(crate) const PASSWORD: &str = "right-password";

pub(crate) struct PgServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<ServerProcess>,
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args…`, as the `postgres` user when we are root.
pub(crate) fn command(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            program,
        ]);
        c
    } else {
        Command::new(program)
    }
}

pub(crate) fn bin(name: &str) -> String {
    let path = Path::new(BIN).join(name);
    assert!(
        path.exists(),
        "{} is missing: install PostgreSQL 15",
        path.display()
    );
    path.display().to_string()
}

impl PgServer {
    /// Initialises and starts a server; the superuser `postgres` has [`PASSWORD`].
    pub(crate) fn start() -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("pool-pg-")
            .tempdir()
            .expect("tempdir");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown")
                .success();
            assert!(ok, "chown of the throwaway server's directory failed");
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if is_root() {
            let _ = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&pwfile)
                .status();
        }
        let out = command(&bin("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = PgServer {
            dir,
            port: crate::util::free_port(),
            child: None,
        };
        server.resume();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `postgres://postgres:<password>@127.0.0.1:<port>/postgres`.
    pub(crate) fn url_with(&self, password: &str, db: &str) -> String {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// The directory of the server's Unix-domain socket (local connections are trusted).
    pub(crate) fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's port (TCP, and the number in the Unix socket's name).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Starts the (stopped) server again on the same port and waits until it accepts connections.
    pub(crate) fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let mut cmd = command(&bin("postgres"));
        cmd.arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "max_connections=30",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let port = self.port.to_string();
        self.child = Some(ServerProcess::start(
            &mut cmd,
            "postgres",
            self.dir.path().join("server.log"),
            // Immediate shutdown (takes the backends down too), then SIGKILL if it lingers.
            Some("QUIT"),
            Duration::from_secs(30),
            || {
                command(&bin("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-p", &port])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            },
        ));
    }

    /// Fast shutdown (SIGINT): clients are disconnected, the server exits.
    pub(crate) fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            child.stop("INT");
        }
    }
}
