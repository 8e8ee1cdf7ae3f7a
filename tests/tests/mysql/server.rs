//! A throwaway MariaDB server of one test: `mariadb-install-db` in a temporary directory,
//! `mariadbd` on a free loopback port. The `Drop` guard kills it by pid, so it goes away even
//! when the test fails.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct MariaServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
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
        let child = Command::new("mariadbd")
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
            .stderr(log)
            .spawn()
            .expect("spawn mariadbd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(d.join("server.log")).unwrap_or_default();
                panic!("mariadbd exited with {status}: {log}");
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Normal shutdown (SIGTERM), then SIGKILL if it takes too long.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for MariaServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
