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

pub(crate) fn run(cmd: &mut Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().expect(what);
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn start_server(
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

/// A URL over both servers with a role the driver does not know itself.
fn both(cluster: &Cluster, attrs: &str) -> String {
    format!(
        "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs={attrs}",
        cluster.primary_port, cluster.replica_port
    )
}

async fn in_recovery(pool: &Pool) -> bool {
    pool.get()
        .await
        .expect("a connection")
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_standby_and_prefer_standby_pick_the_right_server_and_lag_is_bounded() {
    let mut cluster = Cluster::start().await;
    assert!(!in_recovery(&pool(&both(&cluster, "primary"), 1)).await);
    assert!(in_recovery(&pool(&both(&cluster, "standby"), 1)).await);
    assert!(in_recovery(&pool(&both(&cluster, "prefer-standby"), 1)).await);

    // Replay paused on the replica while the primary commits (without waiting for it): the lag
    // grows past the bound, and a pool bounded to 1 s refuses the replica's connections.
    let primary_admin = crate::util::admin(&cluster.primary_url()).await;
    // A replayed transaction first, so that the replica has a replay timestamp to measure from.
    primary_admin
        .batch_execute("CREATE TABLE lagging (x int)")
        .await
        .unwrap();
    let replica_admin = crate::util::admin(&cluster.replica_url()).await;
    replica_admin
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    primary_admin
        .batch_execute("SET synchronous_commit = local; INSERT INTO lagging VALUES (1)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let bounded = |lag| {
        Pool::builder(
            Manager::from_url(&cluster.replica_url())
                .unwrap()
                .max_replication_lag(lag),
        )
        .max_size(1)
        .wait_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
    };
    let strict = bounded(Duration::from_secs(1));
    let err = strict.get().await.expect_err("a replica 1.5 s behind");
    assert!(
        pool_core::Report::new(&err)
            .to_string()
            .contains("replication lag"),
        "{}",
        pool_core::Report::new(&err)
    );
    let rw = ReadWrite::new(pool(&cluster.primary_url(), 2), vec![strict])
        .replica_wait(Duration::from_millis(300));
    let (_conn, member) = rw.get_read().await.expect("the primary serves the read");
    assert_eq!(member, Member::Primary);
    assert!(
        bounded(Duration::from_secs(60)).get().await.is_ok(),
        "a looser bound accepts it"
    );

    // Replay resumes: the replica is usable again.
    replica_admin
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    let mut caught_up = false;
    for _ in 0..50 {
        if bounded(Duration::from_secs(1)).get().await.is_ok() {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(caught_up, "the replica catches up within 5 s");

    // With the replica gone, prefer-standby takes the primary.
    cluster.stop_replica();
    assert!(!in_recovery(&pool(&both(&cluster, "prefer-standby"), 1)).await);
    cluster.stop_primary();
}

/// What the load of [`failover_under_load`] saw.
#[derive(Default)]
struct Tally {
    /// Ids whose INSERT was acknowledged, with when.
    acked: Vec<(i64, std::time::Instant)>,
    write_errors: u64,
    reads: u64,
    read_errors: u64,
    /// The longest any call took.
    slowest: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_load_a_demoted_primary_is_left_and_writes_resume_on_the_promoted_replica() {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let mut cluster = Cluster::start().await;
    const WAIT: Duration = Duration::from_secs(2);
    let writer = Pool::builder(Manager::from_url(&both(&cluster, "primary")).unwrap())
        .max_size(8)
        .wait_timeout(WAIT)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let reader = Pool::builder(Manager::from_url(&cluster.replica_url()).unwrap())
        .max_size(8)
        .wait_timeout(WAIT)
        .build()
        .unwrap();
    let rw = ReadWrite::new(writer, vec![reader]).replica_wait(Duration::from_millis(500));
    rw.get()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE ledger (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        .await
        .unwrap();

    let next_id = Arc::new(AtomicI64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    for task in 0..64 {
        let (rw, next_id, stop, tally) = (rw.clone(), next_id.clone(), stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 10_000 {
                n += 1;
                let started = Instant::now();
                if task % 4 == 0 {
                    let ok = match rw.get_read().await {
                        Ok((conn, _)) => conn
                            .query_one("SELECT count(*) FROM ledger", &[])
                            .await
                            .is_ok(),
                        Err(_) => false,
                    };
                    let mut t = tally.lock().unwrap();
                    t.reads += 1;
                    t.read_errors += u64::from(!ok);
                    t.slowest = t.slowest.max(started.elapsed());
                } else {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let ok = match rw.get().await {
                        Ok(conn) => conn
                            .execute("INSERT INTO ledger (id) VALUES ($1)", &[&id])
                            .await
                            .is_ok(),
                        Err(_) => false,
                    };
                    let mut t = tally.lock().unwrap();
                    if ok {
                        t.acked.push((id, Instant::now()));
                    } else {
                        t.write_errors += 1;
                    }
                    t.slowest = t.slowest.max(started.elapsed());
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Demote the primary (its sessions turn read-only), then promote the replica.
    let old = crate::util::admin(&cluster.primary_url()).await;
    old.batch_execute("ALTER SYSTEM SET default_transaction_read_only = on")
        .await
        .unwrap();
    old.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    let demoted_at = Instant::now();
    let new = crate::util::admin(&cluster.replica_url()).await;
    let promoted: bool = new
        .query_one("SELECT pg_promote(true, 30)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(promoted, "pg_promote");
    let promoted_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let t = std::mem::take(&mut *tally.lock().unwrap());
    let first_after = t
        .acked
        .iter()
        .filter(|(_, at)| *at > promoted_at)
        .map(|(_, at)| at.duration_since(promoted_at))
        .min()
        .expect("writes succeed again after the promotion");
    let acked_after_demotion = t.acked.iter().filter(|(_, at)| *at > demoted_at).count();
    eprintln!(
        "failover: {} writes acknowledged ({} after the demotion), {} write errors; {} reads, \
         {} read errors; writes resumed {:?} after the promotion (promotion took {:?}); slowest call {:?}",
        t.acked.len(),
        acked_after_demotion,
        t.write_errors,
        t.reads,
        t.read_errors,
        first_after,
        promoted_at.duration_since(demoted_at),
        t.slowest
    );
    assert!(
        first_after <= Duration::from_secs(2),
        "writes resume within 2 s of the promotion: {first_after:?}"
    );
    assert!(
        t.slowest <= WAIT + Duration::from_secs(1),
        "every call is bounded by its deadline: {:?}",
        t.slowest
    );
    assert_eq!(
        t.read_errors, 0,
        "reads keep being served through the switch"
    );
    // Every acknowledged write is on the new primary (synchronous replication, remote_apply).
    let ids: Vec<i64> = t.acked.iter().map(|(id, _)| *id).collect();
    let found: i64 = new
        .query_one("SELECT count(*) FROM ledger WHERE id = ANY($1)", &[&ids])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        found,
        i64::try_from(ids.len()).unwrap(),
        "no acknowledged write lost"
    );
    cluster.stop_primary();
    cluster.stop_replica();
}
