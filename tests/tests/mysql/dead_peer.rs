//! Connections the server killed or the network reset are never handed out (issue 12, item 5),
//! and are caught without a round trip.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_mysql::mysql_async::prelude::*;
use pool_mysql::mysql_async::{Conn, Opts, OptsBuilder};
use pool_mysql::{Manager, Pool};
use tokio::net::{TcpListener, TcpStream};

use crate::util::{admin, url};

const SIZE: usize = 8;

/// A pool whose connections never pass `validate_after_idle` in these tests: only the probe
/// can catch a dead one.
fn pool(opts: Opts) -> Pool {
    Pool::builder(Manager::new(opts))
        .max_size(SIZE)
        .validate_after_idle(Some(Duration::from_secs(3600)))
        .build()
        .unwrap()
}

/// Opens `n` connections at once and returns them to the pool; their server ids.
async fn warm(pool: &Pool, n: usize) -> HashSet<u32> {
    let mut conns = Vec::new();
    for _ in 0..n {
        let mut conn = pool.get().await.unwrap();
        conn.query_drop("SELECT 1").await.unwrap();
        conns.push(conn);
    }
    conns.iter().map(|c| c.id()).collect()
}

/// `calls` get + `SELECT 1` calls from 8 tasks; the errors seen and the server ids used.
async fn hammer(pool: &Pool, calls: usize) -> (Vec<String>, HashSet<u32>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let ids = Arc::new(Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (pool, errors, ids) = (pool.clone(), errors.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..calls / 8 {
                let result = async {
                    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                    ids.lock().unwrap().insert(conn.id());
                    let one: Option<i64> = conn
                        .query_first("SELECT 1")
                        .await
                        .map_err(|e| e.to_string())?;
                    assert_eq!(one, Some(1));
                    Ok::<(), String>(())
                }
                .await;
                if let Err(e) = result {
                    errors.lock().unwrap().push(e);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let errors = errors.lock().unwrap().clone();
    let ids = ids.lock().unwrap().clone();
    (errors, ids)
}

/// Kills `ids` server-side and waits (bounded) until the server has ended those sessions.
async fn kill_all(admin: &mut Conn, ids: &HashSet<u32>) {
    for id in ids {
        admin
            .query_drop(format!("KILL CONNECTION {id}"))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<u32> = admin
            .query("SELECT id FROM information_schema.processlist")
            .await
            .unwrap();
        if !alive.iter().any(|id| ids.contains(id)) {
            return;
        }
        assert!(Instant::now() < deadline, "killed sessions still listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn killed_idle_connections_are_never_handed_out(opts: Opts) {
    let Some(url) = url() else { return };
    let mut admin = admin(&url).await;
    let pool = pool(opts);
    let killed = warm(&pool, SIZE).await;
    assert_eq!(killed.len(), SIZE);
    kill_all(&mut admin, &killed).await;

    let (errors, used) = hammer(&pool, 200).await;
    assert!(
        errors.is_empty(),
        "{} caller-visible errors: {errors:?}",
        errors.len()
    );
    assert!(
        used.is_disjoint(&killed),
        "a killed connection was handed out"
    );
    pool.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_idle_connections_are_never_handed_out_unix_socket() {
    let Some(url) = url() else { return };
    // The default: mysql_async moves a loopback URL to the server's Unix socket.
    killed_idle_connections_are_never_handed_out(Opts::from_url(&url).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_idle_connections_are_never_handed_out_tcp() {
    let Some(url) = url() else { return };
    let opts = OptsBuilder::from_opts(Opts::from_url(&url).unwrap()).prefer_socket(false);
    killed_idle_connections_are_never_handed_out(opts.into()).await;
}

/// A TCP relay on a free loopback port whose connections can all be reset (RST) at once.
struct Relay {
    port: u16,
    reset: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: (String, u16)) -> Relay {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (reset, reset_rx) = tokio::sync::watch::channel(0_u64);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                let mut reset_rx = reset_rx.clone();
                reset_rx.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) =
                        TcpStream::connect((upstream.0.as_str(), upstream.1)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = reset_rx.changed() => {
                            // Both sides get an RST, as from a middlebox that lost its state.
                            let _ = client.set_zero_linger();
                            let _ = server.set_zero_linger();
                        }
                    }
                });
            }
        });
        Relay { port, reset, task }
    }

    fn reset_all(&self) {
        self.reset.send_modify(|n| *n += 1);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.reset_all();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reset_by_the_network_are_never_handed_out() {
    let Some(url) = url() else { return };
    let (host, port) = pool_tests::host_port(&url).expect("a TCP URL");
    let relay = Relay::start((host, port)).await;
    let opts = OptsBuilder::from_opts(Opts::from_url(&url).unwrap())
        .ip_or_hostname("127.0.0.1")
        .tcp_port(relay.port)
        .prefer_socket(false);
    let pool = pool(opts.into());
    for round in 0..3 {
        let before = warm(&pool, 4).await;
        relay.reset_all();
        // Let the RSTs land (loopback delivers them at once; this only yields to the relay).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (errors, used) = hammer(&pool, 40).await;
        assert!(
            errors.is_empty(),
            "round {round}: {} caller-visible errors: {errors:?}",
            errors.len()
        );
        assert!(
            used.is_disjoint(&before),
            "round {round}: a reset connection was handed out"
        );
    }
    pool.close();
}
