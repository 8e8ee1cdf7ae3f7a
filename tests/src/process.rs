//! A database server process that a test started on its own (a throwaway server): waited for
//! until it is ready, stopped with a signal, and killed by pid when dropped, so it goes away even
//! when the test fails.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A running server process of a test.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Signal sent first when dropped (then SIGKILL after 5 s); `None`: SIGKILL at once.
    drop_signal: Option<&'static str>,
}

impl ServerProcess {
    /// Spawns `command` (which logs to `log`) and waits, at most `timeout`, until `ready()` says
    /// the server accepts connections.
    ///
    /// # Panics
    /// When it cannot be spawned, exits early (the panic shows its log) or is not ready in time.
    pub fn start(
        command: &mut Command,
        name: &'static str,
        log: PathBuf,
        drop_signal: Option<&'static str>,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> ServerProcess {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut server = ServerProcess { child, drop_signal };
        let deadline = Instant::now() + timeout;
        while !ready() {
            if let Some(status) = server.child.try_wait().expect("poll the server process") {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("{name} exited with {status}: {log}");
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not start within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// Sends `signal` (e.g. `"TERM"`), waits up to 20 s for the process to exit, then kills it.
    pub fn stop(mut self, signal: &str) {
        self.signal(signal);
        self.reap(Duration::from_secs(20));
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits up to `grace` for the process to exit, then kills it.
    fn reap(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        match self.drop_signal {
            Some(signal) => {
                self.signal(signal);
                self.reap(Duration::from_secs(5));
            }
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}
