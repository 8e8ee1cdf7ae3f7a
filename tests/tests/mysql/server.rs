//! A throwaway MariaDB server of one test: `mariadb-install-db` in a temporary directory,
//! `mariadbd` on a free loopback port. The `Drop` guard kills it by pid, so it goes away even
//! when the test fails.

use std::process::{Command, Stdio};
use std::time::Duration;

use pool_tests::ServerProcess;

pub(crate) struct MariaServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<ServerProcess>,
}

impl MariaServer {
    /// Initialises and starts a server whose `root` has no password.
    pub(crate) fn start() -> MariaServer {
        let dir = tempfile::Builder::new()
            .prefix("pool-maria-")
            .tempdir()
            .expect("tempdir");
        let out = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb-install-db (install mariadb-server)");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = MariaServer {
            dir,
            port: crate::util::free_port(),
            child: None,
        };
        server.resume();
        server
    }

    /// `mysql://root@127.0.0.1:<port>/mysql`.
    pub(crate) fn url(&self) -> String {
        format!(
            "mysql://root@127.0.0.1:{}/mysql?prefer_socket=false",
            self.port
        )
    }

    /// Starts the (stopped) server again on the same port and waits until it accepts connections.
    pub(crate) fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("server.log")).unwrap();
        let mut command = Command::new("mariadbd");
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", d.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=8M",
                "--max-connections=40",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let port = self.port;
        self.child = Some(ServerProcess::start(
            &mut command,
            "mariadbd",
            d.join("server.log"),
            None,
            Duration::from_secs(60),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        ));
    }

    /// Normal shutdown (SIGTERM), then SIGKILL if it takes too long.
    pub(crate) fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            child.stop("TERM");
        }
    }
}
