//! A throwaway primary and a streaming replica of their own (`initdb`, `pg_basebackup -R`, free
//! loopback ports, synchronous replication with `remote_apply`), and read/write routing over
//! them with `pool_core::ReadWrite`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pool_core::{Member, ReadWrite};
use pool_postgres::{Manager, Pool};
use pool_tests::ServerProcess;

use crate::server::{bin, command, is_root};

/// A primary and one replica following it synchronously.
pub(crate) struct Cluster {
    dir: tempfile::TempDir,
    pub(crate) primary_port: u16,
    pub(crate) replica_port: u16,
    primary: Option<ServerProcess>,
    replica: Option<ServerProcess>,
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().expect(what);
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_server(
    dir: &Path,
    data: &Path,
    port: u16,
    name: &'static str,
    extra: &[&str],
) -> ServerProcess {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = command(&bin("postgres"));
    cmd.arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "shared_buffers=16MB",
            "-c",
            "max_connections=100",
            "-c",
            "wal_level=replica",
            "-c",
            "max_wal_senders=4",
            "-c",
            "hot_standby=on",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let port = port.to_string();
    ServerProcess::start(
        &mut cmd,
        name,
        log_path,
        Some("QUIT"),
        Duration::from_secs(30),
        || {
            command(&bin("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        },
    )
}

impl Cluster {
    /// Initialises a primary, clones it with `pg_basebackup -R` and starts both; returns once the
    /// replica streams synchronously.
    pub(crate) async fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("pool-pg-cluster-")
            .tempdir()
            .expect("tempdir");
        if is_root() {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir.path()),
                "chown",
            );
        }
        let primary_data = dir.path().join("primary");
        run(
            command(&bin("initdb")).arg("-D").arg(&primary_data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ]),
            "initdb",
        );
        let primary_port = crate::util::free_port();
        let replica_port = crate::util::free_port();
        let mut cluster = Cluster {
            primary: None,
            replica: None,
            primary_port,
            replica_port,
            dir,
        };
        cluster.primary = Some(start_server(
            cluster.dir.path(),
            &primary_data,
            primary_port,
            "primary",
            &[
                "-c",
                "synchronous_standby_names=*",
                "-c",
                "synchronous_commit=remote_apply",
            ],
        ));
        run(
            command(&bin("pg_basebackup"))
                .arg("-D")
                .arg(cluster.replica_data())
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &primary_port.to_string(),
                    "-U",
                    "postgres",
                    "-R",
                    "-X",
                    "stream",
                    "--no-sync",
                ]),
            "pg_basebackup",
        );
        cluster.replica = Some(start_server(
            cluster.dir.path(),
            &cluster.replica_data(),
            replica_port,
            "replica",
            // Once promoted it must not wait for a standby of its own.
            &["-c", "synchronous_standby_names="],
        ));
        let admin = crate::util::admin(&cluster.primary_url()).await;
        let mut streaming = false;
        for _ in 0..300 {
            let row = admin
                .query_opt(
                    "SELECT 1 FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'sync'",
                    &[],
                )
                .await
                .expect("pg_stat_replication");
            if row.is_some() {
                streaming = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(streaming, "the replica did not start streaming within 30 s");
        cluster
    }

    fn replica_data(&self) -> PathBuf {
        self.dir.path().join("replica")
    }

    /// The primary alone.
    pub(crate) fn primary_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.primary_port
        )
    }

    /// The replica alone.
    pub(crate) fn replica_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.replica_port
        )
    }

    /// Both servers, the one that accepts writes wins.
    pub(crate) fn writer_url(&self) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            self.primary_port, self.replica_port
        )
    }

    /// Stops the replica (fast shutdown).
    pub(crate) fn stop_replica(&mut self) {
        if let Some(replica) = self.replica.take() {
            replica.stop("INT");
        }
    }

    /// Stops the primary (fast shutdown).
    pub(crate) fn stop_primary(&mut self) {
        if let Some(primary) = self.primary.take() {
            primary.stop("INT");
        }
    }
}

fn pool(url: &str, max_size: usize) -> Pool {
    Pool::builder(Manager::from_url(url).expect("url"))
        .max_size(max_size)
        .wait_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("pool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replica_writes_to_the_primary_and_reads_fall_back_when_it_stops() {
    let mut cluster = Cluster::start().await;
    let rw = ReadWrite::new(
        pool(&cluster.writer_url(), 4),
        vec![pool(&cluster.replica_url(), 4)],
    )
    .replica_wait(Duration::from_millis(500));

    let writer = rw.get().await.expect("primary");
    writer
        .batch_execute("CREATE TABLE routed (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let in_recovery: bool = writer
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!in_recovery, "writes reach the primary");
    for id in 0..20i32 {
        writer
            .execute(
                "INSERT INTO routed VALUES ($1, $2)",
                &[&id, &format!("v{id}")],
            )
            .await
            .unwrap();
    }
    drop(writer);

    // remote_apply: every acknowledged write is visible on the replica at once.
    for id in 0..20i32 {
        let (reader, member) = rw.get_read().await.expect("a read");
        assert_eq!(member, Member::Replica(0));
        let row = reader
            .query_one(
                "SELECT pg_is_in_recovery(), v FROM routed WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "the read ran on the replica");
        assert_eq!(row.get::<_, String>(1), format!("v{id}"));
    }
    assert_eq!(rw.replica_reads(), 20);

    // The replica goes away: reads keep being served, by the primary, within the budget.
    cluster.stop_replica();
    for id in 0..20i32 {
        let started = std::time::Instant::now();
        let (reader, member) = rw
            .get_read()
            .await
            .expect("a read after the replica stopped");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a read stays within the primary's wait timeout: {:?}",
            started.elapsed()
        );
        assert_eq!(member, Member::Primary);
        let v: String = reader
            .query_one("SELECT v FROM routed WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, format!("v{id}"));
    }
    assert!(rw.fallbacks() >= 20);
    cluster.stop_primary();
}
